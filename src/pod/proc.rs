//! Process identity and exit waiting. A PID alone can be reused, so a process peapod tracks is
//! identified by PID plus its start time (field 22 of /proc/PID/stat, in clock ticks since boot).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Start time of `pid` in clock ticks since boot, or None when it no longer runs. A zombie counts
/// as gone: it has exited, only its parent has not collected it (PID 1 here may never do so).
pub fn start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `rest` starts at field 3 (state); start time is field 22.
    fields.nth(18)?.parse().ok()
}

/// The wait status of a zombie that nobody has reaped yet (field 52 of /proc/PID/stat), e.g.
/// a pause a restarted daemon watches but PID 1 collects; for logs.
pub fn zombie_status(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    if fields.next()? != "Z" {
        return None;
    }
    // `rest` starts at field 3; exit_code is field 52.
    fields.nth(48)?.parse().ok()
}

/// True when the process `pid` that started at `start` is still running.
pub fn is_alive(pid: i32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// Waits until `pid` exits, without polling: a pidfd becomes readable at exit. Reaps the process
/// if it is our child (a monitor or pause started by this daemon); after a daemon restart it is
/// not, and its new parent reaps it.
pub async fn wait_exit(pid: i32) -> std::io::Result<()> {
    // SAFETY: pidfd_open takes a PID and flags and returns a new fd or -1; no memory is shared.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        // ESRCH: already gone (and reaped): that is an exit too.
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(e);
    }
    // SAFETY: fd was just returned by pidfd_open and is owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: `owned` is a valid pidfd that the AsyncFd owns and nobody else closes.
    let afd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    let guard = afd.readable().await?;
    drop(guard);
    let _ = nix::sys::wait::waitpid(
        nix::unistd::Pid::from_raw(pid),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    );
    let _ = afd.get_ref().as_raw_fd();
    Ok(())
}

/// Nanoseconds since the epoch, the unit of every CRI timestamp.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_identified() {
        let me = std::process::id() as i32;
        let st = start_time(me).expect("own start time");
        assert!(is_alive(me, st));
        assert!(
            !is_alive(me, st + 1),
            "a different start time is another process"
        );
        assert!(start_time(-1).is_none());
    }

    #[tokio::test]
    #[allow(clippy::zombie_processes)] // wait_exit is what reaps it
    async fn wait_exit_returns_when_child_exits() {
        let child = std::process::Command::new("sleep")
            .arg("0.1")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let st = start_time(pid).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), wait_exit(pid))
            .await
            .expect("exit noticed")
            .unwrap();
        assert!(!is_alive(pid, st));
    }
}
