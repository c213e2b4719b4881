//! The daemon's side of the per-container monitor (`peapod-shim monitor`): start it, learn the
//! container's PID from its sync pipe, and read the exit file it leaves.
//!
//! Protocol: the monitor gets the write end of a pipe on fd 3 and writes one line, `created <pid>`
//! once the OCI runtime has created the container, or `error <message>`, then closes it. When the
//! container exits it writes `exit` atomically (JSON, see [`ExitInfo`]) and exits itself, so the
//! daemon learns of the exit from the monitor's pidfd, even across daemon restarts.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::fcntl::OFlag;

use crate::oci::runtime::OciRuntime;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("starting monitor {shim}: {source}")]
    Spawn {
        shim: PathBuf,
        source: std::io::Error,
    },
    #[error("creating container {id}: {message}")]
    Create { id: String, message: String },
    #[error("monitor for {id}: {reason}")]
    Protocol { id: String, reason: String },
}

/// What the monitor records when the container exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct ExitInfo {
    pub pid: i32,
    /// The exit status, or 128+N for death by signal N.
    pub exit_code: i32,
    pub signal: i32,
    pub finished_at_ns: i64,
}

pub fn read_exit_file(path: &Path) -> Option<ExitInfo> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(text.trim()).ok()
}

pub struct MonitorArgs<'a> {
    pub shim: &'a Path,
    pub id: &'a str,
    pub bundle: &'a Path,
    pub runtime: &'a OciRuntime,
    pub exit_file: &'a Path,
    pub runtime_log: &'a Path,
    pub log_path: Option<&'a Path>,
    pub tty: bool,
    pub stdin: bool,
}

/// A started monitor with its container created (not yet started).
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub monitor_pid: i32,
    pub init_pid: i32,
}

/// Starts a monitor, which runs `<runtime> create`; returns once the container exists.
pub async fn spawn(a: &MonitorArgs<'_>) -> Result<Started, MonitorError> {
    let spawn_err = |source| MonitorError::Spawn {
        shim: a.shim.to_owned(),
        source,
    };
    let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .map_err(|e| spawn_err(e.into()))?;
    nix::fcntl::fcntl(
        wr.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(OFlag::empty()),
    )
    .map_err(|e| spawn_err(e.into()))?;
    let mut cmd = std::process::Command::new(a.shim);
    cmd.arg0("peapod-shim")
        .arg("monitor")
        .arg("--id")
        .arg(a.id)
        .arg("--bundle")
        .arg(a.bundle)
        .arg("--runtime")
        .arg(&a.runtime.path);
    for g in &a.runtime.global_args {
        cmd.arg("--runtime-arg").arg(g);
    }
    cmd.arg("--exit-file")
        .arg(a.exit_file)
        .arg("--runtime-log")
        .arg(a.runtime_log);
    if let Some(l) = a.log_path {
        cmd.arg("--log-path").arg(l);
    }
    if a.tty {
        cmd.arg("--tty");
    }
    if a.stdin {
        cmd.arg("--stdin");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    let wr_fd = wr.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and only calls dup2/fcntl,
    // which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if wr_fd == 3 {
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(wr_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(spawn_err)?;
    drop(wr);
    let monitor_pid = child.id() as i32;
    // The Child handle is dropped without wait: the exit watcher reaps the monitor by PID.
    drop(child);
    let fail = |e: MonitorError| {
        // A monitor that failed exits by itself; make sure, and reap it.
        crate::pod::pause::kill_and_reap(monitor_pid);
        e
    };
    let text = crate::pod::pause::read_sync_pipe(rd, Duration::from_secs(60))
        .await
        .map_err(|e| {
            fail(MonitorError::Protocol {
                id: a.id.to_string(),
                reason: e.to_string(),
            })
        })?;
    let line = text.trim();
    if let Some(pid) = line.strip_prefix("created ") {
        let init_pid = pid.trim().parse::<i32>().map_err(|_| {
            fail(MonitorError::Protocol {
                id: a.id.to_string(),
                reason: format!("bad report {line:?}"),
            })
        })?;
        return Ok(Started {
            monitor_pid,
            init_pid,
        });
    }
    let message = match line.strip_prefix("error ") {
        Some(m) => m.to_string(),
        None if line.is_empty() => "monitor exited without a report".to_string(),
        None => format!("unexpected report {line:?}"),
    };
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(monitor_pid), None);
    Err(MonitorError::Create {
        id: a.id.to_string(),
        message,
    })
}

/// Asks a monitor to reopen its log file (after kubelet rotated it).
pub fn reopen_log(monitor_pid: i32) -> nix::Result<()> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor_pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_file_parses() {
        let d = std::env::temp_dir().join(format!("peapod-exit-{}", crate::fsutil::new_id()));
        std::fs::write(
            &d,
            "{\"pid\":12,\"exit_code\":137,\"signal\":9,\"finished_at_ns\":1700000000000000001}\n",
        )
        .unwrap();
        let e = read_exit_file(&d).unwrap();
        assert_eq!((e.pid, e.exit_code, e.signal), (12, 137, 9));
        assert_eq!(e.finished_at_ns, 1_700_000_000_000_000_001);
        std::fs::write(&d, "{\"pid\":").unwrap();
        assert!(read_exit_file(&d).is_none(), "a torn file is not an exit");
        std::fs::remove_file(&d).unwrap();
    }
}
