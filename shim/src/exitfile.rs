//! The exit file: how a container's end reaches the daemon, even across a daemon restart.
//!
//! Written once by the monitor after it reaped the container's init, atomically (`<file>.tmp`,
//! fsync, rename, fsync of the directory), as one JSON object on one line:
//!
//! ```text
//! {"pid":1234,"exit_code":0,"signal":0,"finished_at_ns":1700000000123456789}
//! ```
//!
//! `exit_code` follows conmon: the exit status if the process exited, 128 + the signal number
//! if a signal killed it; `signal` is that signal number (0 if none); `finished_at_ns` is
//! CLOCK_REALTIME in nanoseconds since the Unix epoch, taken when the process was reaped.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// How a process ended, in the exit file's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    pub exit_code: i32,
    pub signal: i32,
}

/// Decodes a raw `waitpid` status. `None` for statuses that are not an end (stopped,
/// continued).
pub fn decode_wait_status(status: libc::c_int) -> Option<Exit> {
    if libc::WIFEXITED(status) {
        Some(Exit {
            exit_code: libc::WEXITSTATUS(status),
            signal: 0,
        })
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        Some(Exit {
            exit_code: 128 + sig,
            signal: sig,
        })
    } else {
        None
    }
}

/// The exit file's one line (with its newline).
pub fn encode(pid: i32, exit: Exit, finished_at_ns: u128) -> String {
    format!(
        "{{\"pid\":{pid},\"exit_code\":{},\"signal\":{},\"finished_at_ns\":{finished_at_ns}}}\n",
        exit.exit_code, exit.signal
    )
}

/// `<path>.tmp`.
fn tmp_path(path: &Path) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(".tmp");
    PathBuf::from(s)
}

/// Replaces `path` with `contents` atomically and durably: readers see the old state or the
/// whole new file, never a part of it, and so does anyone after a crash.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_then_rename(path, contents, true)?;
    // Make the rename itself durable; the file is in place either way, so failures here are
    // not worth reporting as a failed write.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Replaces `path` with `contents` atomically for readers, but without fsync: for files that
/// only a live reader cares about (the log-reopen acknowledgement, `logack.rs`).
pub fn replace(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_then_rename(path, contents, false)
}

/// Writes `<path>.tmp` (fsynced if `sync`) and renames it over `path`; no `.tmp` is left on
/// error.
fn write_then_rename(path: &Path, contents: &[u8], sync: bool) -> io::Result<()> {
    let tmp = tmp_path(path);
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(contents)?;
        if sync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_exit_and_signal() {
        // Raw statuses as the kernel encodes them: exit code in bits 8..16, signal in 0..7,
        // core-dump flag 0x80.
        assert_eq!(
            decode_wait_status(0),
            Some(Exit {
                exit_code: 0,
                signal: 0
            })
        );
        assert_eq!(
            decode_wait_status(3 << 8),
            Some(Exit {
                exit_code: 3,
                signal: 0
            })
        );
        assert_eq!(
            decode_wait_status(255 << 8),
            Some(Exit {
                exit_code: 255,
                signal: 0
            })
        );
        assert_eq!(
            decode_wait_status(libc::SIGKILL),
            Some(Exit {
                exit_code: 137,
                signal: 9
            })
        );
        assert_eq!(
            decode_wait_status(libc::SIGSEGV | 0x80),
            Some(Exit {
                exit_code: 139,
                signal: 11
            })
        );
        // Stopped by SIGSTOP (0x7f marker) and continued (0xffff): not an end.
        assert_eq!(decode_wait_status((libc::SIGSTOP << 8) | 0x7f), None);
        assert_eq!(decode_wait_status(0xffff), None);
    }

    #[test]
    fn encodes_one_json_line() {
        let e = Exit {
            exit_code: 137,
            signal: 9,
        };
        assert_eq!(
            encode(1234, e, 1_700_000_000_123_456_789),
            "{\"pid\":1234,\"exit_code\":137,\"signal\":9,\"finished_at_ns\":1700000000123456789}\n"
        );
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = std::env::temp_dir().join(format!("peapod-shim-exitfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("exit");
        write_atomic(&p, b"one\n").unwrap();
        write_atomic(&p, b"two\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two\n");
        assert!(!tmp_path(&p).exists());
        assert!(write_atomic(&dir.join("missing/exit"), b"x").is_err());
        replace(&p, b"three\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"three\n");
        assert!(!tmp_path(&p).exists());
        assert!(replace(&dir.join("missing/exit"), b"x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
