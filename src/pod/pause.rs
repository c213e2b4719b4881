//! The pod's infra process: `peapod-shim pause`, started straight in its new namespaces, and the
//! bind mounts that pin those namespaces to files so they outlive any process.
//!
//! The pause is cloned by the daemon (not run through the OCI runtime): one raw `clone` with the
//! namespace flags, then `execve` of the shim. That keeps sandbox start to a few milliseconds,
//! makes the pause a direct child of the daemon (so it is reaped), and with CLONE_NEWPID makes it
//! PID 1 of the pod's PID namespace without an intermediate process.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use tokio::io::AsyncReadExt;

use crate::cgroups::Join;

/// Which namespaces the pause gets of its own; `false` means it stays in the host's.
#[derive(Debug, Clone, Copy, Default)]
pub struct PauseNamespaces {
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
    pub pid: bool,
}

impl PauseNamespaces {
    fn clone_flags(self) -> libc::c_int {
        let mut f = 0;
        if self.net {
            f |= libc::CLONE_NEWNET;
        }
        if self.ipc {
            f |= libc::CLONE_NEWIPC;
        }
        if self.uts {
            f |= libc::CLONE_NEWUTS;
        }
        if self.pid {
            f |= libc::CLONE_NEWPID;
        }
        f
    }
}

/// The kernel's `struct clone_args` (clone3(2)), up to `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error("preparing the pause process: {0}")]
    Prepare(String),
    #[error("clone of the pause process failed: {0}")]
    Clone(nix::Error),
    #[error("pause process failed during setup: {0}")]
    Setup(String),
    #[error("pause process did not report ready within {0:?}")]
    Timeout(Duration),
    #[error("pinning namespace {what} at {path}: {source}")]
    Pin {
        what: &'static str,
        path: PathBuf,
        source: nix::Error,
    },
    #[error("io on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Starts `shim pause` in fresh namespaces: clone and exec; returns the PID and the sync pipe,
/// to be read with [`wait_ready`]. The caller kills and reaps the child if it gives up on it.
/// `join` ([`crate::cgroups::Cgroups::open_join`]): the cgroup the child is in from its first
/// instruction, cloned into (v2) and joining the v1 hierarchies itself before it execs.
pub(crate) fn clone_pause(
    shim: &Path,
    ns: PauseNamespaces,
    hostname: Option<&str>,
    identity: (&str, &Path),
    join: Option<&Join>,
) -> Result<(i32, OwnedFd), PauseError> {
    // Everything the child touches is prepared before clone: after clone, in a copy of a
    // multi-threaded process, only async-signal-safe calls are allowed (dup2, execve, _exit).
    let prog = CString::new(shim.as_os_str().as_bytes())
        .map_err(|_| PauseError::Prepare("shim path has a NUL byte".into()))?;
    let mut args = vec![
        CString::new("peapod-shim").unwrap(),
        CString::new("pause").unwrap(),
    ];
    if let Some(h) = hostname.filter(|_| ns.uts) {
        args.push(CString::new("--hostname").unwrap());
        args.push(
            CString::new(h).map_err(|_| PauseError::Prepare("hostname has a NUL byte".into()))?,
        );
    }
    if ns.net {
        args.push(CString::new("--lo-up").unwrap());
    }
    // Who the pause belongs to, for the start-up sweep of a restarted daemon (sweep.rs).
    let (id, state_dir) = identity;
    args.push(CString::new("--id").unwrap());
    args.push(CString::new(id).map_err(|_| PauseError::Prepare("ID has a NUL byte".into()))?);
    args.push(CString::new("--state-dir").unwrap());
    args.push(
        CString::new(state_dir.as_os_str().as_bytes())
            .map_err(|_| PauseError::Prepare("state dir has a NUL byte".into()))?,
    );
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let devnull = nix::fcntl::open(
        "/dev/null",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| PauseError::Prepare(format!("open /dev/null: {e}")))?;
    let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .map_err(|e| PauseError::Prepare(format!("pipe: {e}")))?;
    // The child's end must block: the pause writes one short line with a plain write(2).
    nix::fcntl::fcntl(
        wr.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(OFlag::empty()),
    )
    .map_err(|e| PauseError::Prepare(format!("fcntl: {e}")))?;
    let wr_fd = wr.as_raw_fd();
    let tasks: Vec<libc::c_int> = join
        .map(|j| j.tasks.iter().map(|f| f.as_raw_fd()).collect())
        .unwrap_or_default();
    let into = join.and_then(|j| j.into.as_ref());
    const JOIN_FAILED: &[u8] = b"error cannot join its cgroup (writing 0 to its tasks file)\n";

    let flags = ns.clone_flags() as u64;
    // SAFETY: a fork-like raw clone (no CLONE_VM, null stack: the child runs on a copy of this
    // stack). The child branch below calls only async-signal-safe functions and never returns.
    let plain_clone = || unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD as u64) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    // `procs`: the v2 `cgroup.procs` the child writes "0" to, where clone3 could not put it in.
    let (pid, procs) = match into {
        None => (plain_clone(), -1),
        Some((dir, procs)) => {
            // clone3 into the v2 cgroup: the child starts there, with no migration to wait for.
            let args = CloneArgs {
                flags: flags | CLONE_INTO_CGROUP,
                exit_signal: libc::SIGCHLD as u64,
                cgroup: dir.as_raw_fd() as u64,
                ..Default::default()
            };
            // SAFETY: as the plain clone: fork-like (no CLONE_VM, no stack given).
            let pid = unsafe {
                libc::syscall(
                    libc::SYS_clone3,
                    &args as *const CloneArgs,
                    std::mem::size_of::<CloneArgs>(),
                )
            };
            if pid < 0 && matches!(nix::Error::last(), nix::Error::ENOSYS | nix::Error::E2BIG) {
                // A kernel before 5.7.
                (plain_clone(), procs.as_raw_fd())
            } else {
                (pid, -1)
            }
        }
    };
    if pid == 0 {
        // SAFETY: the child of clone: only write/dup2/fcntl/execve/_exit, all
        // async-signal-safe, on memory prepared before the clone.
        unsafe {
            for &fd in tasks.iter().chain((procs >= 0).then_some(&procs)) {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    libc::write(wr_fd, JOIN_FAILED.as_ptr().cast(), JOIN_FAILED.len());
                    libc::_exit(126);
                }
            }
            libc::dup2(devnull, 0);
            libc::dup2(devnull, 1);
            libc::dup2(devnull, 2);
            if wr_fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0);
            } else {
                libc::dup2(wr_fd, 3);
            }
            libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    let _ = nix::unistd::close(devnull);
    if pid < 0 {
        return Err(PauseError::Clone(nix::Error::last()));
    }
    drop(wr);
    Ok((pid as i32, rd))
}

/// Reads the child's one-line report on the sync pipe: `ready` or `error <message>`.
pub(crate) async fn wait_ready(rd: OwnedFd, limit: Duration) -> Result<(), PauseError> {
    let msg = read_sync_pipe(rd, limit).await?;
    let line = msg.trim();
    if line == "ready" {
        Ok(())
    } else if let Some(e) = line.strip_prefix("error ") {
        Err(PauseError::Setup(e.to_string()))
    } else if line.is_empty() {
        Err(PauseError::Setup(
            "exited before reporting ready (could it exec the shim?)".into(),
        ))
    } else {
        Err(PauseError::Setup(format!("unexpected report {line:?}")))
    }
}

/// Reads a sync pipe to EOF (the writer closes it after its report), bounded in time.
pub(crate) async fn read_sync_pipe(rd: OwnedFd, limit: Duration) -> Result<String, PauseError> {
    let mut rx =
        tokio::net::unix::pipe::Receiver::from_owned_fd(rd).map_err(|e| PauseError::Io {
            path: PathBuf::from("sync pipe"),
            source: e,
        })?;
    let mut buf = String::new();
    match tokio::time::timeout(limit, rx.read_to_string(&mut buf)).await {
        Err(_) => Err(PauseError::Timeout(limit)),
        Ok(Err(e)) => Err(PauseError::Io {
            path: PathBuf::from("sync pipe"),
            source: e,
        }),
        Ok(Ok(_)) => Ok(buf),
    }
}

/// SIGKILLs and reaps a direct child. Used on failure paths only.
pub fn kill_and_reap(pid: i32) {
    let p = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(p, None);
}

/// Whether the pause owns a namespace kind.
type Owns = fn(PauseNamespaces) -> bool;

/// The namespace kinds peapod pins, with their /proc/PID/ns names: only the network
/// namespace, which must outlive the pause (the network is torn down in it after the pod
/// stopped, and port-forward enters it). Containers join the pod's IPC and UTS namespaces
/// through the pause's /proc entries, as containerd does: a container is only made while the
/// sandbox is ready (its pause alive), and each pin was a mount in the host's table, which
/// every runtime `create` reads whole.
pub const PINNED: [(&str, Owns); 1] = [("net", |n| n.net)];

/// Every kind an earlier peapod pinned too: [`unpin_all`] removes them all, so a pod made by
/// one that pinned IPC and UTS leaves nothing behind.
const EVER_PINNED: [&str; 3] = ["net", "ipc", "uts"];

/// Bind-mounts `/proc/PID/ns/KIND` on `dir/KIND` for each [`PINNED`] namespace the pause
/// owns, so containers join by path and the namespace survives the pause. On error, what was
/// pinned is undone.
pub fn pin(pid: i32, ns: PauseNamespaces, dir: &Path) -> Result<Vec<PathBuf>, PauseError> {
    std::fs::create_dir_all(dir).map_err(|source| PauseError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut pinned = Vec::new();
    for (kind, wanted) in PINNED {
        if !wanted(ns) {
            continue;
        }
        let target = dir.join(kind);
        let res = std::fs::File::create(&target)
            .map_err(|source| PauseError::Io {
                path: target.clone(),
                source,
            })
            .and_then(|_| {
                let src = format!("/proc/{pid}/ns/{kind}");
                nix::mount::mount(
                    Some(src.as_str()),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|source| PauseError::Pin {
                    what: kind,
                    path: target.clone(),
                    source,
                })
            });
        if let Err(e) = res {
            let _ = std::fs::remove_file(&target);
            unpin_all(dir);
            return Err(e);
        }
        pinned.push(target);
    }
    Ok(pinned)
}

/// Undoes [`pin`]: unmounts and removes every pinned namespace file in `dir`, then `dir`.
/// Idempotent: missing files and mounts are fine.
pub fn unpin_all(dir: &Path) {
    for kind in EVER_PINNED {
        let target = dir.join(kind);
        if target.exists() {
            if let Err(e) = nix::mount::umount2(&target, MntFlags::MNT_DETACH) {
                if e != nix::Error::EINVAL && e != nix::Error::ENOENT {
                    tracing::warn!(path = %target.display(), error = %e, "unmounting pinned namespace");
                }
            }
            let _ = std::fs::remove_file(&target);
        }
    }
    let _ = std::fs::remove_dir(dir);
}
