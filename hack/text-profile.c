// LD_PRELOAD for hack/text-profile.sh: in each `peapod daemon` process: its text mapping is registered with
// userfaultfd (async write-protect mode), which turns fault-around off for it, and its PTEs
// are dropped once; from then on a text page is present only if it was executed or read.
// Every second the present pages are written to $PEAPOD_TEXT_PROFILE_DIR/pages.<pid> (file
// page numbers), which hack/text-order.py turns into the linker's symbol order.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <unistd.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <linux/userfaultfd.h>
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

static uintptr_t tstart, tend, toff;
static unsigned char *seen;
static const char *dir;

static void *dumper(void *arg) {
  (void)arg;
  size_t np = (tend - tstart) / 4096;
  seen = calloc(np, 1);
  uint64_t *buf = malloc(np * 8);
  char out[256]; snprintf(out, sizeof out, "%s/pages.%d", dir, getpid());
  int pm = open("/proc/self/pagemap", O_RDONLY);
  for (;;) {
    sleep(1);
    if (pread(pm, buf, np * 8, (tstart / 4096) * 8) != (ssize_t)(np * 8)) continue;
    for (size_t p = 0; p < np; p++) if (buf[p] >> 63) seen[p] = 1;
    char tmp[300]; snprintf(tmp, sizeof tmp, "%s.tmp", out);
    FILE *f = fopen(tmp, "w");
    if (!f) continue;
    for (size_t p = 0; p < np; p++) if (seen[p]) fprintf(f, "%zu\n", toff / 4096 + p);
    fclose(f);
    rename(tmp, out);
  }
  return 0;
}

__attribute__((constructor)) static void init(void) {
  char exe[4096]; ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return;
  exe[n] = 0;
  const char *b = strrchr(exe, '/'); b = b ? b + 1 : exe;
  dir = getenv("PEAPOD_TEXT_PROFILE_DIR");
  if (!dir || strcmp(b, "peapod") != 0) return;
  int fd = open("/proc/self/cmdline", O_RDONLY); char cmd[4096]; ssize_t c = read(fd, cmd, sizeof cmd - 1); close(fd);
  int daemon = 0;
  for (ssize_t i = 0; i < c; i += strlen(cmd + i) + 1) if (strcmp(cmd + i, "daemon") == 0) daemon = 1;
  if (!daemon) return;
  FILE *f = fopen("/proc/self/maps", "r"); if (!f) return;
  char line[8192];
  while (fgets(line, sizeof line, f)) {
    unsigned long s, e, o; char perm[8]; char path[4096] = "";
    if (sscanf(line, "%lx-%lx %7s %lx %*s %*s %4095s", &s, &e, perm, &o, path) >= 4 && strcmp(path, exe) == 0 && perm[2] == 'x') {
      tstart = s; tend = e; toff = o;
    }
  }
  fclose(f);
  if (!tstart) return;
  int u = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (u < 0) { perror("text-profile: userfaultfd"); return; }
  struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC };
  if (ioctl(u, UFFDIO_API, &api)) { perror("text-profile: UFFDIO_API"); return; }
  struct uffdio_register r = { .range = { tstart, tend - tstart }, .mode = UFFDIO_REGISTER_MODE_WP };
  if (ioctl(u, UFFDIO_REGISTER, &r)) { perror("text-profile: UFFDIO_REGISTER"); return; }
  if (madvise((void *)tstart, tend - tstart, MADV_DONTNEED)) perror("text-profile: MADV_DONTNEED");
  fprintf(stderr, "text-profile: tracking %lx-%lx\n", (unsigned long)tstart, (unsigned long)tend);
  pthread_t t; pthread_attr_t a; pthread_attr_init(&a); pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  pthread_create(&t, &a, dumper, 0);
}
