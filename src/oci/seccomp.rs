//! Seccomp profiles for containers: choosing a profile from the CRI security context, the
//! runtime default profile (a port of containerd's `contrib/seccomp/seccomp_default.go`) and
//! loading node-local profiles.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

use crate::api::security_profile::ProfileType;
use crate::api::{LinuxContainerSecurityContext, SecurityProfile};
use crate::oci::spec::SpecError;

/// Largest node-local profile file we load.
const MAX_PROFILE_FILE: u64 = 4 << 20;

/// Errno returned for syscalls outside the allow-list (EPERM).
pub const DEFAULT_ERRNO: u32 = libc::EPERM as u32;

/// Syscalls the runtime default profile always allows (containerd's list, all arches).
pub const DEFAULT_ALLOWED_SYSCALLS: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socket",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// `personality(2)` arguments the default profile allows: PER_LINUX, PER_LINUX32,
/// UNAME26, UNAME26|PER_LINUX32 and the query value 0xffffffff.
const ALLOWED_PERSONALITIES: &[u64] = &[0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

/// Syscalls the default profile adds for the build architecture.
#[cfg(target_arch = "x86_64")]
const ARCH_SYSCALLS: &[&str] = &["arch_prctl", "modify_ldt"];
#[cfg(target_arch = "aarch64")]
const ARCH_SYSCALLS: &[&str] = &[
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCH_SYSCALLS: &[&str] = &[];

/// The seccomp architectures of the default profile for the build architecture.
fn arches() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchArm, Arch::ScmpArchAarch64]
    } else {
        Vec::new()
    }
}

/// Syscalls unlocked by each capability in the bounding set (containerd's table).
const CAP_SYSCALLS: &[(Capability, &[&str])] = &[
    (Capability::DacReadSearch, &["open_by_handle_at"]),
    (
        Capability::SysAdmin,
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (
        Capability::SysModule,
        &["delete_module", "init_module", "finit_module"],
    ),
    (Capability::SysPacct, &["acct"]),
    (
        Capability::SysPtrace,
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    (Capability::SysRawio, &["iopl", "ioperm"]),
    (
        Capability::SysTime,
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    (Capability::SysTtyConfig, &["vhangup"]),
    (Capability::Syslog, &["syslog"]),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
];

/// Namespace flags a non-CAP_SYS_ADMIN `clone` must not carry.
const CLONE_NS_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

fn allow(names: &[&str]) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.iter().map(|n| n.to_string()).collect());
    s.set_action(LinuxSeccompAction::ScmpActAllow);
    s
}

fn allow_if_arg(name: &str, index: usize, value: u64, op: LinuxSeccompOperator) -> LinuxSyscall {
    // The builder cannot fail: every field is given (and all have defaults).
    let arg = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .value_two(0u64)
        .op(op)
        .build()
        .unwrap_or_default();
    let mut s = allow(&[name]);
    s.set_args(Some(vec![arg]));
    s
}

/// True when the running kernel is at least `major.minor` (unknown → assume yes).
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return true;
    };
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (maj, min) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (maj, min) >= (major, minor)
}

/// The runtime default profile (containerd's `seccomp.DefaultProfile`): deny with EPERM by
/// default, allow the common syscalls, and unlock privileged syscalls per capability in the
/// container's bounding set. Without CAP_SYS_ADMIN, `clone` may not create namespaces and
/// `clone3` fails with ENOSYS so libcs fall back to `clone`.
pub fn default_profile(bounding: &Capabilities) -> LinuxSeccomp {
    let mut syscalls = vec![allow(DEFAULT_ALLOWED_SYSCALLS)];
    for p in ALLOWED_PERSONALITIES {
        syscalls.push(allow_if_arg(
            "personality",
            0,
            *p,
            LinuxSeccompOperator::ScmpCmpEq,
        ));
    }
    if kernel_at_least(4, 8) {
        // Since 4.8 seccomp cannot be bypassed with ptrace.
        syscalls.push(allow(&["ptrace"]));
    }
    if !ARCH_SYSCALLS.is_empty() {
        syscalls.push(allow(ARCH_SYSCALLS));
    }
    for (cap, names) in CAP_SYSCALLS {
        if bounding.contains(cap) {
            syscalls.push(allow(names));
        }
    }
    if !bounding.contains(&Capability::SysAdmin) {
        // MaskedEq with valueTwo 0: allowed only when (flags & CLONE_NS_FLAGS) == 0.
        syscalls.push(allow_if_arg(
            "clone",
            0,
            CLONE_NS_FLAGS,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
        ));
        let mut clone3 = LinuxSyscall::default();
        clone3.set_names(vec!["clone3".to_string()]);
        clone3.set_action(LinuxSeccompAction::ScmpActErrno);
        clone3.set_errno_ret(Some(libc::ENOSYS as u32));
        syscalls.push(clone3);
    }
    let mut s = LinuxSeccomp::default();
    s.set_default_action(LinuxSeccompAction::ScmpActErrno);
    s.set_default_errno_ret(Some(DEFAULT_ERRNO));
    s.set_architectures(Some(arches()));
    s.set_syscalls(Some(syscalls));
    s
}

/// Which seccomp profile a container asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeccompChoice {
    /// No filter.
    Unconfined,
    /// [`default_profile`].
    RuntimeDefault,
    /// A JSON `LinuxSeccomp` file on the node.
    Localhost(PathBuf),
}

/// Field path of the container's seccomp settings in CRI errors.
const SC: &str = "config.linux.security_context";

/// Picks the profile from the `seccomp` field, falling back to the deprecated
/// `seccomp_profile_path` string (`""`/`"unconfined"` → unconfined, `"runtime/default"` or
/// `"docker/default"` → default, `"localhost/<abs path>"` → file), as containerd does.
pub fn choose(
    seccomp: Option<&SecurityProfile>,
    deprecated_path: &str,
) -> Result<SeccompChoice, SpecError> {
    let invalid = |field: String, reason: String| SpecError::InvalidArgument { field, reason };
    if let Some(sp) = seccomp {
        let field = format!("{SC}.seccomp");
        let ty = ProfileType::try_from(sp.profile_type).map_err(|_| {
            invalid(
                format!("{field}.profile_type"),
                format!("unknown profile type {}", sp.profile_type),
            )
        })?;
        if ty != ProfileType::Localhost && !sp.localhost_ref.is_empty() {
            return Err(invalid(
                format!("{field}.localhost_ref"),
                "localhost_ref must only be set if profile_type is Localhost".into(),
            ));
        }
        return match ty {
            ProfileType::Unconfined => Ok(SeccompChoice::Unconfined),
            ProfileType::RuntimeDefault => Ok(SeccompChoice::RuntimeDefault),
            ProfileType::Localhost => {
                // containerd trims a stray "localhost/" prefix here too.
                let r = sp
                    .localhost_ref
                    .strip_prefix("localhost/")
                    .unwrap_or(&sp.localhost_ref);
                localhost_path(r)
                    .map_err(|reason| invalid(format!("{field}.localhost_ref"), reason))
            }
        };
    }
    let field = format!("{SC}.seccomp_profile_path");
    match deprecated_path {
        "" | "unconfined" => Ok(SeccompChoice::Unconfined),
        "runtime/default" | "docker/default" => Ok(SeccompChoice::RuntimeDefault),
        p => match p.strip_prefix("localhost/") {
            Some(r) => localhost_path(r).map_err(|reason| invalid(field, reason)),
            None => Err(invalid(field, format!("invalid seccomp profile {p:?}"))),
        },
    }
}

fn localhost_path(r: &str) -> Result<SeccompChoice, String> {
    if !crate::fsutil::is_clean_absolute(r) {
        return Err(format!(
            "seccomp profile path {r:?} must be absolute and must not contain '..'"
        ));
    }
    Ok(SeccompChoice::Localhost(PathBuf::from(r)))
}

/// Loads a node-local profile: a JSON document in the OCI `linux.seccomp` format (what
/// containerd's `seccomp.WithProfile` accepts). A missing file is `NotFound`, a bad document
/// `InvalidArgument`.
pub fn load_profile(path: &Path) -> Result<LinuxSeccomp, SpecError> {
    use std::io::Read;
    let field = format!("{SC}.seccomp.localhost_ref");
    let file = std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            SpecError::NotFound {
                what: format!("seccomp profile {}", path.display()),
            }
        } else {
            SpecError::Io {
                context: format!("opening seccomp profile {}", path.display()),
                source: e,
            }
        }
    })?;
    let mut buf = Vec::new();
    file.take(MAX_PROFILE_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| SpecError::Io {
            context: format!("reading seccomp profile {}", path.display()),
            source: e,
        })?;
    if buf.len() as u64 > MAX_PROFILE_FILE {
        return Err(SpecError::InvalidArgument {
            field,
            reason: format!("seccomp profile {} is too large", path.display()),
        });
    }
    serde_json::from_slice(&buf).map_err(|e| SpecError::InvalidArgument {
        field,
        reason: format!("seccomp profile {} is not valid: {e}", path.display()),
    })
}

/// The `linux.seccomp` of a container: `None` when privileged or unconfined, else the
/// default profile (given the final bounding capabilities) or the loaded file.
pub fn for_container(
    sc: Option<&LinuxContainerSecurityContext>,
    privileged: bool,
    bounding: &Capabilities,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    if privileged {
        return Ok(None);
    }
    #[allow(deprecated)]
    let deprecated = sc.map(|s| s.seccomp_profile_path.as_str()).unwrap_or("");
    match choose(sc.and_then(|s| s.seccomp.as_ref()), deprecated)? {
        SeccompChoice::Unconfined => Ok(None),
        SeccompChoice::RuntimeDefault => Ok(Some(default_profile(bounding))),
        SeccompChoice::Localhost(p) => load_profile(&p).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &LinuxSeccomp) -> Vec<(String, LinuxSeccompAction, bool)> {
        p.syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .flat_map(|s| {
                let has_args = s.args().as_ref().is_some_and(|a| !a.is_empty());
                s.names()
                    .iter()
                    .map(move |n| (n.clone(), s.action(), has_args))
            })
            .collect()
    }

    fn allowed_unconditionally(p: &LinuxSeccomp, name: &str) -> bool {
        names(p)
            .iter()
            .any(|(n, a, args)| n == name && *a == LinuxSeccompAction::ScmpActAllow && !args)
    }

    #[test]
    fn default_profile_shape() {
        let caps: Capabilities = [Capability::Chown, Capability::NetBindService].into();
        let p = default_profile(&caps);
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        for n in [
            "read",
            "write",
            "openat",
            "execve",
            "futex",
            "io_uring_setup",
        ] {
            assert!(allowed_unconditionally(&p, n), "{n} not allowed");
        }
        for n in [
            "mount",
            "unshare",
            "setns",
            "bpf",
            "reboot",
            "init_module",
            "chroot",
        ] {
            assert!(!allowed_unconditionally(&p, n), "{n} allowed without caps");
        }
        // clone only without namespace flags; clone3 → ENOSYS.
        let clone = p
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .find(|s| s.names() == &["clone"])
            .unwrap();
        let arg = clone.args().as_ref().unwrap()[0];
        assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(arg.value(), 0x7E02_0000);
        let clone3 = p
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .find(|s| s.names() == &["clone3"])
            .unwrap();
        assert_eq!(clone3.action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3.errno_ret(), Some(38));
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                json["architectures"],
                serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
            );
            assert!(allowed_unconditionally(&p, "arch_prctl"));
        }
        // personality: five argument-filtered rules.
        assert_eq!(
            names(&p)
                .iter()
                .filter(|(n, _, a)| n == "personality" && *a)
                .count(),
            5
        );
    }

    #[test]
    fn capabilities_unlock_syscalls() {
        let caps: Capabilities = [Capability::SysAdmin, Capability::SysPtrace].into();
        let p = default_profile(&caps);
        for n in [
            "mount", "unshare", "setns", "clone", "clone3", "ptrace", "kcmp",
        ] {
            assert!(allowed_unconditionally(&p, n), "{n} not allowed with caps");
        }
        assert!(!names(&p)
            .iter()
            .any(|(n, a, _)| n == "clone3" && *a == LinuxSeccompAction::ScmpActErrno));
        assert!(!allowed_unconditionally(&p, "reboot"));
    }

    #[test]
    fn choice_from_cri() {
        use SeccompChoice::*;
        let sp = |t: ProfileType, r: &str| SecurityProfile {
            profile_type: t as i32,
            localhost_ref: r.into(),
        };
        let ok: &[(Option<SecurityProfile>, &str, SeccompChoice)] = &[
            (None, "", Unconfined),
            (None, "unconfined", Unconfined),
            (None, "runtime/default", RuntimeDefault),
            (None, "docker/default", RuntimeDefault),
            // kubelet's deprecated form: "localhost/" + an absolute path
            (
                None,
                "localhost//etc/p.json",
                Localhost("/etc/p.json".into()),
            ),
            (
                Some(sp(ProfileType::RuntimeDefault, "")),
                "unconfined",
                RuntimeDefault,
            ),
            (
                Some(sp(ProfileType::Unconfined, "")),
                "runtime/default",
                Unconfined,
            ),
            (
                Some(sp(ProfileType::Localhost, "/p.json")),
                "",
                Localhost("/p.json".into()),
            ),
            (
                Some(sp(ProfileType::Localhost, "localhost//p.json")),
                "",
                Localhost("/p.json".into()),
            ),
        ];
        for (s, d, want) in ok {
            assert_eq!(&choose(s.as_ref(), d).unwrap(), want, "{s:?} {d:?}");
        }
        let bad: &[(Option<SecurityProfile>, &str, &str)] = &[
            (
                None,
                "bogus",
                "config.linux.security_context.seccomp_profile_path",
            ),
            (
                None,
                "localhost/rel.json",
                "config.linux.security_context.seccomp_profile_path",
            ),
            (
                Some(sp(ProfileType::Localhost, "rel.json")),
                "",
                "config.linux.security_context.seccomp.localhost_ref",
            ),
            (
                Some(sp(ProfileType::Localhost, "/a/../etc/x")),
                "",
                "config.linux.security_context.seccomp.localhost_ref",
            ),
            (
                Some(sp(ProfileType::RuntimeDefault, "/x")),
                "",
                "config.linux.security_context.seccomp.localhost_ref",
            ),
            (
                Some(SecurityProfile {
                    profile_type: 9,
                    localhost_ref: String::new(),
                }),
                "",
                "config.linux.security_context.seccomp.profile_type",
            ),
        ];
        for (s, d, f) in bad {
            match choose(s.as_ref(), d) {
                Err(SpecError::InvalidArgument { field, .. }) => assert_eq!(&field, f),
                other => panic!("{s:?} {d:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn localhost_profiles() {
        let dir = std::env::temp_dir().join(format!("peapod-seccomp-{}", crate::fsutil::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        std::fs::write(
            &good,
            r#"{"defaultAction":"SCMP_ACT_LOG","architectures":["SCMP_ARCH_X86_64"],
               "syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}],"comment":"ignored"}"#,
        )
        .unwrap();
        let p = load_profile(&good).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActLog);
        assert_eq!(p.syscalls().as_ref().unwrap()[0].names(), &["read"]);

        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"defaultAction":"SCMP_ACT_NOPE"}"#).unwrap();
        assert!(matches!(
            load_profile(&bad),
            Err(SpecError::InvalidArgument { .. })
        ));
        assert!(matches!(
            load_profile(&dir.join("missing.json")),
            Err(SpecError::NotFound { .. })
        ));

        // Through the security context; privileged wins over everything.
        let sc = LinuxContainerSecurityContext {
            seccomp: Some(SecurityProfile {
                profile_type: ProfileType::Localhost as i32,
                localhost_ref: good.display().to_string(),
            }),
            ..Default::default()
        };
        let caps = Capabilities::new();
        assert!(for_container(Some(&sc), false, &caps).unwrap().is_some());
        assert!(for_container(Some(&sc), true, &caps).unwrap().is_none());
        assert!(for_container(None, false, &caps).unwrap().is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
