//! The console socket for `--tty` containers (runc's `--console-socket`).
//!
//! With `"terminal": true` runc creates the container's pty itself and hands the master end to
//! whoever listens on the socket given with `--console-socket PATH`: runc connects during
//! `create` and sends the master fd with SCM_RIGHTS (and the pty's name as data), then exits.
//! The monitor binds the socket before starting `runc create`, and once `create` has exited
//! picks the already-queued connection up (non-blocking accept: no connection means runc never
//! sent one). The socket file is removed when the [`ConsoleSocket`] is dropped.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use crate::sys;

/// A listening console socket; removed from the filesystem on drop.
pub struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Listens on `<exit-file>.console.sock`, or, if that path is too long for a unix socket,
    /// on `<temp dir>/peapod-shim-<pid>.console.sock`.
    pub fn bind(exit_file: &Path) -> io::Result<ConsoleSocket> {
        let path = socket_path(exit_file, &std::env::temp_dir(), std::process::id());
        // A stale socket from an earlier, crashed attempt would make bind fail.
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        let sock = ConsoleSocket { path, listener };
        // Only root (runc) needs to connect.
        std::fs::set_permissions(&sock.path, std::fs::Permissions::from_mode(0o600))?;
        sock.listener.set_nonblocking(true)?;
        Ok(sock)
    }

    /// The path to pass as `--console-socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// After `runtime create` exited successfully: the pty master it sent (close-on-exec).
    pub fn take_master(&self) -> io::Result<OwnedFd> {
        let (conn, _) = self.listener.accept().map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::other("the runtime did not connect to the console socket")
            } else {
                e
            }
        })?;
        // The accepted socket is blocking; runc's message is already queued (it has exited).
        sys::recv_fd(conn.as_raw_fd())
    }
}

/// Where the console socket goes: beside the exit file if the path fits a unix socket address,
/// else in `tmp`, named after the monitor's PID.
fn socket_path(exit_file: &Path, tmp: &Path, pid: u32) -> PathBuf {
    let mut name = exit_file.as_os_str().to_owned();
    name.push(".console.sock");
    if name.len() <= crate::attachproto::SUN_PATH_MAX {
        PathBuf::from(name)
    } else {
        tmp.join(format!("peapod-shim-{pid}.console.sock"))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_beside_exit_file_or_in_tmp() {
        let tmp = Path::new("/tmp");
        assert_eq!(
            socket_path(Path::new("/run/p/c1/exit"), tmp, 7),
            PathBuf::from("/run/p/c1/exit.console.sock")
        );
        // 94 + 13 = 107 bytes: still fits.
        let fits = format!("/{}", "a".repeat(93));
        assert_eq!(
            socket_path(Path::new(&fits), tmp, 7),
            PathBuf::from(format!("{fits}.console.sock"))
        );
        let long = format!("/{}", "a".repeat(94));
        assert_eq!(
            socket_path(Path::new(&long), tmp, 7),
            PathBuf::from("/tmp/peapod-shim-7.console.sock")
        );
    }
}
