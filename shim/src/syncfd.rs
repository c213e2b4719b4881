//! The sync pipe on fd 3, through which the shim reports to the daemon that started it.
//!
//! Protocol: the daemon passes the write end of a pipe as fd 3 and reads the other end to EOF.
//! The shim writes exactly one line and closes fd 3:
//! - `pause`: `ready` once set up, or `error <message>`;
//! - `monitor`: `created <pid>` (the container init's host PID) once `runtime create`
//!   succeeded, or `error <message>`.
//!
//! Messages are kept to one line (newlines become spaces). If fd 3 is not open (the shim run by
//! hand), reports are skipped. Write errors (the daemon gave up reading) are ignored: the shim's
//! exit status and the exit file remain.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::sys;

/// The descriptor number the daemon puts the sync pipe on.
pub const SYNC_FD: i32 = 3;

/// fd 3, if it was open when the shim started.
pub struct SyncPipe(Option<OwnedFd>);

impl SyncPipe {
    /// Takes ownership of fd 3 if it is open, and marks it close-on-exec so that the runtime
    /// (and through it the container) never inherits it: the daemon would otherwise not see EOF.
    pub fn take() -> SyncPipe {
        if !sys::fd_is_open(SYNC_FD) {
            return SyncPipe(None);
        }
        let _ = sys::set_cloexec(SYNC_FD, true);
        // SAFETY: fd 3 is open, was inherited from the parent, and no other object owns it.
        SyncPipe(Some(unsafe { OwnedFd::from_raw_fd(SYNC_FD) }))
    }

    /// Writes `ready`.
    pub fn ready(self) {
        self.send("ready");
    }

    /// Writes `created <pid>`.
    pub fn created(self, pid: i32) {
        self.send(&format!("created {pid}"));
    }

    /// Writes `error <msg>`.
    pub fn error(self, msg: &str) {
        self.send(&format!("error {}", one_line(msg)));
    }

    /// Writes one line and closes fd 3.
    fn send(self, line: &str) {
        if let Some(fd) = self.0 {
            let mut buf = Vec::with_capacity(line.len() + 1);
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            let _ = sys::write_all(fd.as_raw_fd(), &buf);
        }
    }
}

/// Makes a message fit on one line of the protocol: line breaks become spaces, and surrounding
/// whitespace goes.
pub fn one_line(msg: &str) -> String {
    msg.trim()
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_flattens_breaks() {
        assert_eq!(one_line("a\nb\r\nc\n"), "a b  c");
        assert_eq!(one_line("  plain "), "plain");
    }
}
