#!/usr/bin/env bash
# Installs what `make vm-test` needs on a Debian host, from Debian's packages only. Idempotent:
# skips apt entirely when everything is already there. (hack/deps.sh installs what the tests
# themselves need; the guest runs the host's own binaries, so it needs nothing more.)
#   qemu-system-x86  the VM (TCG; KVM only when a probe boot proves it works)
#   crun             the guest's default OCI runtime handler on pure cgroup v2
#   kmod             depmod, for the guest kernel's modules.dep
#   cpio             the initramfs archive
#   busybox-static   the initramfs userland
set -euo pipefail
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v crun >/dev/null || need+=(crun)
command -v depmod >/dev/null || [ -x /usr/sbin/depmod ] || [ -x /sbin/depmod ] || need+=(kmod)
command -v cpio >/dev/null || need+=(cpio)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  echo "hack/vm/deps.sh: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
