//! The Kubernetes CRI container log format, as read by the kubelet (`kubectl logs`).
//!
//! One record per line: `<timestamp> <stream> <tag> <content>\n`, where the timestamp is
//! RFC3339Nano in UTC with exactly 9 fractional digits (`2026-11-22T20:06:29.123456789Z`), the
//! stream `stdout` or `stderr`, and the tag `F` for a full line (the newline that ended it is not
//! part of the content) or `P` for a partial piece of a longer line. A line longer than
//! [`MAX_RECORD`] bytes becomes `P` records of exactly that size followed by a final `F`.
//!
//! [`LineSplitter`] (pure, one per stream) keeps an unfinished line until its newline arrives;
//! [`CriLog`] owns the log file (O_APPEND, mode 0640, parent directory made by the daemon) and
//! reopens it on request (SIGUSR1, for log rotation). Write errors drop the record but never
//! stop the caller from draining the container's pipes: a stuck log must not block a container.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Largest content of one record (the kubelet's and containerd's 16 KiB).
pub const MAX_RECORD: usize = 16 * 1024;

/// Length of a formatted timestamp: `YYYY-MM-DDTHH:MM:SS.NNNNNNNNNZ`.
pub const TIMESTAMP_LEN: usize = 30;

/// Record tag: the record ends a line (`F`) or is a piece of a longer one (`P`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    Full,
    Partial,
}

impl Tag {
    fn letter(self) -> u8 {
        match self {
            Tag::Full => b'F',
            Tag::Partial => b'P',
        }
    }
}

/// Formats seconds + nanoseconds since the Unix epoch as RFC3339 in UTC with 9 fractional
/// digits. Years outside 0..=9999 are clamped (they cannot occur on a sane clock).
pub fn format_timestamp(secs: i64, nanos: u32) -> [u8; TIMESTAMP_LEN] {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (y, m, d) = if y < 0 {
        (0, 1, 1)
    } else if y > 9999 {
        (9999, 12, 31)
    } else {
        (y, m, d)
    };
    let mut out = *b"0000-00-00T00:00:00.000000000Z";
    put_digits(&mut out[0..4], y as u64);
    put_digits(&mut out[5..7], m as u64);
    put_digits(&mut out[8..10], d as u64);
    put_digits(&mut out[11..13], (sod / 3600) as u64);
    put_digits(&mut out[14..16], (sod / 60 % 60) as u64);
    put_digits(&mut out[17..19], (sod % 60) as u64);
    put_digits(&mut out[20..29], u64::from(nanos.min(999_999_999)));
    out
}

/// Writes `v` as decimal, zero-padded to fill `dst` exactly.
fn put_digits(dst: &mut [u8], mut v: u64) {
    for b in dst.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// (year, month, day) of a day count since 1970-01-01, proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of the 400-year era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Cuts one stream's bytes into CRI records, keeping an unfinished line between reads.
pub struct LineSplitter {
    /// The current line's bytes not yet emitted; never longer than `max`.
    buf: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    /// A splitter making records of at most `max` content bytes.
    pub fn new(max: usize) -> LineSplitter {
        assert!(max > 0);
        LineSplitter {
            buf: Vec::new(),
            max,
        }
    }

    /// Feeds bytes read from the stream; `emit` gets each finished record, in order.
    pub fn feed(&mut self, mut data: &[u8], emit: &mut impl FnMut(Tag, &[u8])) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let line = &data[..i];
                    if self.buf.is_empty() && line.len() <= self.max {
                        // The common case: a whole short line inside one read, no copy.
                        emit(Tag::Full, line);
                    } else {
                        self.push(line, emit);
                        emit(Tag::Full, &self.buf);
                        self.reset();
                    }
                    data = &data[i + 1..];
                }
                None => {
                    self.push(data, emit);
                    data = &[];
                }
            }
        }
    }

    /// End of the stream: a remaining unfinished line becomes a full record.
    pub fn finish(&mut self, emit: &mut impl FnMut(Tag, &[u8])) {
        if !self.buf.is_empty() {
            emit(Tag::Full, &self.buf);
            self.reset();
        }
    }

    /// Empties the line buffer, giving back a large one: after one long line a monitor
    /// should not hold 16 KiB per stream for the rest of the container's life.
    fn reset(&mut self) {
        if self.buf.capacity() > 4096 {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }

    /// Appends line bytes (no newline among them). A piece becomes a `P` record only once
    /// `max` bytes are held *and* more bytes of the same line follow, so a line of exactly
    /// `max` bytes is still one `F` record.
    fn push(&mut self, mut seg: &[u8], emit: &mut impl FnMut(Tag, &[u8])) {
        while !seg.is_empty() {
            if self.buf.len() == self.max {
                emit(Tag::Partial, &self.buf);
                self.buf.clear();
            }
            if self.buf.is_empty() && seg.len() > self.max {
                // More than a record's worth with more to come: a partial, straight from input.
                emit(Tag::Partial, &seg[..self.max]);
                seg = &seg[self.max..];
                continue;
            }
            let take = (self.max - self.buf.len()).min(seg.len());
            self.buf.extend_from_slice(&seg[..take]);
            seg = &seg[take..];
        }
    }
}

/// Opens (creating) a log file for appending, mode 0640; std always adds O_CLOEXEC.
fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

/// Appends one formatted record to `out`.
pub fn format_record(out: &mut Vec<u8>, ts: &[u8], stream: &str, tag: Tag, content: &[u8]) {
    out.reserve(ts.len() + stream.len() + content.len() + 5);
    out.extend_from_slice(ts);
    out.push(b' ');
    out.extend_from_slice(stream.as_bytes());
    out.push(b' ');
    out.push(tag.letter());
    out.push(b' ');
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// The container's CRI log file. Records are gathered in a buffer and written with one
/// append per batch (one read of a pipe), so lines of different streams never interleave.
pub struct CriLog {
    path: Option<PathBuf>,
    file: Option<File>,
    pending: Vec<u8>,
    /// An error was already reported on stderr (say it once, not once per record).
    warned: bool,
}

impl CriLog {
    /// Opens the log at `path`; `None` discards everything. A failed open is reported on
    /// stderr and records are dropped until a successful [`CriLog::reopen`].
    pub fn open(path: Option<PathBuf>) -> CriLog {
        let mut log = CriLog {
            path,
            file: None,
            pending: Vec::new(),
            warned: false,
        };
        log.file = log.open_file();
        log
    }

    fn open_file(&mut self) -> Option<File> {
        let path = self.path.as_ref()?;
        match open_append(path) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("peapod-shim: opening log {}: {e}", path.display());
                None
            }
        }
    }

    /// Opens the log path again (after the kubelet rotated the file away). Queued records are
    /// written first, to the file they were read for. If the open fails, the old file is kept,
    /// so nothing is lost that could still be written somewhere, and the reason is returned.
    pub fn reopen(&mut self) -> Result<(), String> {
        self.flush();
        let Some(path) = &self.path else {
            return Ok(());
        };
        match open_append(path) {
            Ok(f) => {
                self.file = Some(f);
                self.warned = false;
                Ok(())
            }
            Err(e) => {
                let msg = format!("opening log {}: {e}", path.display());
                eprintln!("peapod-shim: {msg}");
                Err(msg)
            }
        }
    }

    /// Queues one record; it is written by the next [`CriLog::flush`].
    pub fn record(&mut self, ts: &[u8], stream: &str, tag: Tag, content: &[u8]) {
        if self.file.is_some() {
            format_record(&mut self.pending, ts, stream, tag, content);
        }
    }

    /// Writes the queued records (write_all loops over short writes); on error they are
    /// dropped.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if let Some(f) = self.file.as_mut() {
            if let Err(e) = f.write_all(&self.pending) {
                if !self.warned {
                    eprintln!("peapod-shim: writing log: {e} (records dropped)");
                    self.warned = true;
                }
            }
        }
        self.pending.clear();
        // Do not keep a large buffer around after a burst: RSS of idle monitors matters.
        if self.pending.capacity() > 4 * MAX_RECORD {
            self.pending = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64, nanos: u32) -> String {
        String::from_utf8(format_timestamp(secs, nanos).to_vec()).unwrap()
    }

    #[test]
    fn timestamps() {
        assert_eq!(ts(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(ts(951_782_400, 1), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(
            ts(1_700_000_000, 123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            ts(1_709_210_096, 500_000_000),
            "2024-02-29T12:34:56.500000000Z"
        );
        assert_eq!(
            ts(1_583_020_799, 999_999_999),
            "2020-02-29T23:59:59.999999999Z"
        );
        assert_eq!(
            ts(1_795_377_989, 123_456_789),
            "2026-11-22T20:06:29.123456789Z"
        );
        assert_eq!(ts(4_102_444_799, 0), "2099-12-31T23:59:59.000000000Z");
        assert_eq!(ts(253_402_300_799, 0), "9999-12-31T23:59:59.000000000Z");
        assert_eq!(ts(-1, 0), "1969-12-31T23:59:59.000000000Z");
    }

    /// Feeds `chunks` one by one (then EOF) and returns the records as (tag, text).
    fn split(max: usize, chunks: &[&str]) -> Vec<(char, String)> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut emit = |t: Tag, c: &[u8]| {
            out.push((t.letter() as char, String::from_utf8(c.to_vec()).unwrap()))
        };
        for c in chunks {
            s.feed(c.as_bytes(), &mut emit);
        }
        s.finish(&mut emit);
        out
    }

    fn recs(list: &[(char, &str)]) -> Vec<(char, String)> {
        list.iter().map(|(t, s)| (*t, s.to_string())).collect()
    }

    #[test]
    fn whole_lines() {
        assert_eq!(
            split(16, &["a\nbb\n\nccc\n"]),
            recs(&[('F', "a"), ('F', "bb"), ('F', ""), ('F', "ccc")])
        );
    }

    #[test]
    fn partial_lines_are_kept_until_newline() {
        assert_eq!(
            split(16, &["he", "llo", " wor", "ld\nnext"]),
            recs(&[('F', "hello world"), ('F', "next")])
        );
        assert_eq!(split(16, &["x", "\n"]), recs(&[('F', "x")]));
        assert_eq!(split(16, &[]), recs(&[]));
    }

    #[test]
    fn long_lines_become_partials() {
        // Exactly max: one F, even when the newline comes in a later read.
        assert_eq!(split(4, &["abcd\n"]), recs(&[('F', "abcd")]));
        assert_eq!(split(4, &["abcd", "\n"]), recs(&[('F', "abcd")]));
        assert_eq!(split(4, &["abcd"]), recs(&[('F', "abcd")]));
        // One more than max.
        assert_eq!(split(4, &["abcde\n"]), recs(&[('P', "abcd"), ('F', "e")]));
        assert_eq!(
            split(4, &["abcd", "e\n"]),
            recs(&[('P', "abcd"), ('F', "e")])
        );
        // Several pieces, split across reads at odd places, then EOF without newline.
        assert_eq!(
            split(4, &["ab", "cdefghij", "klmn\nop", "qrstu"]),
            recs(&[
                ('P', "abcd"),
                ('P', "efgh"),
                ('P', "ijkl"),
                ('F', "mn"),
                ('P', "opqr"),
                ('F', "stu"),
            ])
        );
        assert_eq!(
            split(4, &["abcdefgh\n"]),
            recs(&[('P', "abcd"), ('F', "efgh")])
        );
    }

    #[test]
    fn real_size_split() {
        let line = "x".repeat(MAX_RECORD * 2 + 10) + "\n";
        let out = split(MAX_RECORD, &[&line]);
        let tags: Vec<(char, usize)> = out.iter().map(|(t, s)| (*t, s.len())).collect();
        assert_eq!(tags, vec![('P', MAX_RECORD), ('P', MAX_RECORD), ('F', 10)]);
    }

    #[test]
    fn record_format() {
        let mut out = Vec::new();
        let ts = format_timestamp(1_795_377_989, 123_456_789);
        format_record(&mut out, &ts, "stdout", Tag::Full, b"hello");
        format_record(&mut out, &ts, "stderr", Tag::Partial, b"");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-11-22T20:06:29.123456789Z stdout F hello\n\
             2026-11-22T20:06:29.123456789Z stderr P \n"
        );
    }

    #[test]
    fn reopen_follows_a_rename_and_keeps_the_old_file_on_error() {
        let d = std::env::temp_dir().join(format!("peapod-shim-crilog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("logs")).unwrap();
        let path = d.join("logs/ctr.log");
        let mut log = CriLog::open(Some(path.clone()));
        let ts = format_timestamp(0, 0);
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        log.record(&ts, "stdout", Tag::Full, b"one");
        std::fs::rename(&path, d.join("logs/ctr.log.1")).unwrap();
        // The queued record belongs to the file it was read for: the rotated one.
        log.reopen().unwrap();
        log.record(&ts, "stderr", Tag::Full, b"two");
        log.flush();
        assert_eq!(
            read(&d.join("logs/ctr.log.1")),
            format!("{} stdout F one\n", "1970-01-01T00:00:00.000000000Z")
        );
        assert_eq!(read(&path), "1970-01-01T00:00:00.000000000Z stderr F two\n");
        // The directory is gone: an error, and the current file stays in use.
        std::fs::rename(d.join("logs"), d.join("moved")).unwrap();
        let err = log.reopen().unwrap_err();
        assert!(
            err.starts_with(&format!("opening log {}: ", path.display())),
            "{err}"
        );
        log.record(&ts, "stdout", Tag::Full, b"three");
        log.flush();
        assert!(read(&d.join("moved/ctr.log")).ends_with(" stdout F three\n"));
        assert!(CriLog::open(None).reopen().is_ok());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
