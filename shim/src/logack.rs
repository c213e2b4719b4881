//! The log-reopen acknowledgement: how the daemon learns that a SIGUSR1 was acted on, and
//! whether the log file could be opened again.
//!
//! `<bundle>/log-reopened` holds one line and is replaced atomically (`log-reopened.tmp`, then
//! rename), so a reader sees one whole state or the one before it:
//!
//! ```text
//! <seq> reopening
//! <seq> ok
//! <seq> error <message>
//! ```
//!
//! The monitor writes `0 ok` before it creates the container. Each batch of SIGUSR1s it reads
//! from its signalfd is served by one reopen, with the next sequence number: first
//! `<seq> reopening`, *then* the log path is opened, then `<seq> ok` or `<seq> error <message>`
//! (one line; the old file stays in use on error).
//!
//! The daemon reads the file (sequence S), sends SIGUSR1 and waits for `ok` or `error` with a
//! sequence above S. Why `reopening` is written before the open: the caller renamed the log
//! before it read S. A later `<seq> reopening` (seq > S) was therefore written after that
//! rename, and the open that follows it sees the caller's rename. Without that first step, a
//! reopen already under way for an earlier signal (its open done before the rename, its
//! acknowledgement written after the read) would pass for the caller's own. And a signal is
//! never answered too early when signals coalesce: the caller's SIGUSR1 stays pending until
//! the monitor reads it, which is after the caller read S; the reopen serving that batch then
//! writes its `reopening` later still, so one reopen after both renames serves both callers.
//!
//! Not fsynced: only a live daemon waiting for it reads the file, and it lives in the state
//! directory, which a reboot empties anyway.

use std::io;
use std::path::{Path, PathBuf};

use crate::crilog::CriLog;
use crate::exitfile;

/// The file's name in the bundle directory.
pub const FILE: &str = "log-reopened";

/// One state of the acknowledgement file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State<'a> {
    Reopening,
    Ok,
    Error(&'a str),
}

/// The file's one line (with its newline); an error message is kept to one line.
pub fn encode(seq: u64, state: State) -> String {
    match state {
        State::Reopening => format!("{seq} reopening\n"),
        State::Ok => format!("{seq} ok\n"),
        State::Error(msg) => format!("{seq} error {}\n", msg.replace(['\n', '\r'], " ")),
    }
}

/// The monitor's acknowledgement file and the last sequence number it used.
pub struct ReopenAck {
    path: PathBuf,
    seq: u64,
}

impl ReopenAck {
    /// Writes `0 ok` in `bundle`: from then on the daemon may wait for acknowledgements.
    pub fn start(bundle: &Path) -> io::Result<ReopenAck> {
        let ack = ReopenAck {
            path: bundle.join(FILE),
            seq: 0,
        };
        exitfile::replace(&ack.path, encode(0, State::Ok).as_bytes())?;
        Ok(ack)
    }

    /// Reopens `log` under the next sequence number, announcing it before and acknowledging
    /// it after (see the module docs for why in that order).
    pub fn reopen(&mut self, log: &mut CriLog) {
        self.seq += 1;
        self.write(State::Reopening);
        match log.reopen() {
            Ok(()) => self.write(State::Ok),
            Err(msg) => self.write(State::Error(&msg)),
        }
    }

    /// Best effort: a failed write leaves the daemon to time out, which it reports.
    fn write(&self, state: State) {
        let line = encode(self.seq, state);
        if let Err(e) = exitfile::replace(&self.path, line.as_bytes()) {
            eprintln!("peapod-shim monitor: writing {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("peapod-shim-logack-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn read(ack: &ReopenAck) -> String {
        std::fs::read_to_string(&ack.path).unwrap()
    }

    /// The content of each record in a CRI log file.
    fn contents(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| l.splitn(4, ' ').nth(3).unwrap().to_owned())
            .collect()
    }

    #[test]
    fn encodes_one_line() {
        assert_eq!(encode(0, State::Ok), "0 ok\n");
        assert_eq!(encode(7, State::Reopening), "7 reopening\n");
        assert_eq!(
            encode(u64::MAX, State::Error("opening log /x: gone\nreally\r")),
            "18446744073709551615 error opening log /x: gone really \n"
        );
    }

    #[test]
    fn start_writes_sequence_zero() {
        let d = tmpdir("start");
        std::fs::write(d.join(FILE), "41 ok\n").unwrap(); // a leftover is replaced
        let ack = ReopenAck::start(&d).unwrap();
        assert_eq!(ack.path, d.join(FILE));
        assert_eq!(read(&ack), "0 ok\n");
        assert!(!d.join(format!("{FILE}.tmp")).exists());
        assert!(ReopenAck::start(&d.join("missing")).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn each_reopen_takes_the_next_sequence() {
        let d = tmpdir("seq");
        let log_path = d.join("ctr.log");
        let mut log = CriLog::open(Some(log_path.clone()));
        let mut ack = ReopenAck::start(&d).unwrap();
        let ts = crate::crilog::format_timestamp(0, 0);
        for seq in 1..=3 {
            // Queued before the rotation: written to the rotated file, by the reopen.
            log.record(
                &ts,
                "stdout",
                crate::crilog::Tag::Full,
                format!("{seq}").as_bytes(),
            );
            std::fs::rename(&log_path, d.join(format!("ctr.log.{seq}"))).unwrap();
            ack.reopen(&mut log);
            assert_eq!(read(&ack), format!("{seq} ok\n"));
            assert!(log_path.exists(), "reopen {seq} made no new file");
            assert_eq!(
                contents(&d.join(format!("ctr.log.{seq}"))),
                [seq.to_string()]
            );
        }
        assert!(contents(&log_path).is_empty());
        assert!(!d.join(format!("{FILE}.tmp")).exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failed_reopen_is_reported_and_the_old_file_kept() {
        let d = tmpdir("fail");
        let logs = d.join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let log_path = logs.join("ctr.log");
        let mut log = CriLog::open(Some(log_path.clone()));
        let mut ack = ReopenAck::start(&d).unwrap();
        let ts = crate::crilog::format_timestamp(0, 0);
        log.record(&ts, "stdout", crate::crilog::Tag::Full, b"before");
        // The log's directory is moved away: the reopen cannot create the file again.
        std::fs::rename(&logs, d.join("logs.old")).unwrap();
        ack.reopen(&mut log);
        let text = read(&ack);
        let want = format!("1 error opening log {}: ", log_path.display());
        assert!(text.starts_with(&want), "{text:?}");
        assert!(
            text.ends_with('\n') && text.lines().count() == 1,
            "{text:?}"
        );
        // Records keep going to the old file; the next reopen succeeds once the dir is back.
        log.record(&ts, "stdout", crate::crilog::Tag::Full, b"after");
        log.flush();
        std::fs::rename(d.join("logs.old"), &logs).unwrap();
        ack.reopen(&mut log);
        assert_eq!(read(&ack), "2 ok\n");
        assert_eq!(contents(&log_path), ["before", "after"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_reopen_is_announced_before_the_open() {
        let d = tmpdir("order");
        let log_path = d.join("ctr.log");
        let mut log = CriLog::open(Some(log_path.clone()));
        let mut ack = ReopenAck::start(&d).unwrap();
        // The new "file" is a FIFO: opening it for writing blocks until a reader comes, which
        // holds the reopen in the middle of its open.
        std::fs::rename(&log_path, d.join("ctr.log.1")).unwrap();
        let c = std::ffi::CString::new(log_path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path; mkfifo touches nothing else.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let ack_path = ack.path.clone();
        let reopen = std::thread::spawn(move || {
            ack.reopen(&mut log);
            ack
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(&ack_path).unwrap() != "1 reopening\n" {
            assert!(std::time::Instant::now() < deadline, "no announcement");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !reopen.is_finished(),
            "the open did not wait for the FIFO's reader"
        );
        assert_eq!(std::fs::read_to_string(&ack_path).unwrap(), "1 reopening\n");
        let reader = std::fs::File::open(&log_path).unwrap();
        let ack = reopen.join().unwrap();
        assert_eq!(read(&ack), "1 ok\n");
        drop(reader);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn no_log_path_reopens_trivially() {
        let d = tmpdir("nolog");
        let mut log = CriLog::open(None);
        let mut ack = ReopenAck::start(&d).unwrap();
        ack.reopen(&mut log);
        assert_eq!(read(&ack), "1 ok\n");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
