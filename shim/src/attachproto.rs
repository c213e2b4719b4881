//! The attach protocol between a container's monitor and an attach client (the daemon).
//!
//! The monitor listens on `<bundle>/attach.sock` (mode 0600, root only). Each side sends
//! frames: one kind byte, a 4-byte big-endian payload length, then the payload.
//! - monitor → client: [`STDOUT`] and [`STDERR`] carry the container's output, the same bytes
//!   that go to the CRI log (with a tty, everything is `STDOUT`). When the container has exited
//!   and its output is drained, the monitor closes the connection.
//! - client → monitor: [`STDIN`] bytes for the container's stdin; [`STDIN_CLOSE`] (empty) says
//!   this client's stdin ended; [`RESIZE`] (4 bytes: columns, rows, each u16 big-endian) sets
//!   the tty's size.
//!
//! Pure code, no I/O: the daemon compiles this same file (via `#[path]`) so both ends share one
//! definition.

/// Name of the monitor's attach socket inside the bundle directory.
pub const SOCKET: &str = "attach.sock";

/// Longest path that fits in `sockaddr_un.sun_path` with its terminating NUL: a longer
/// `<bundle>/attach.sock` is reached through `/proc/self/fd/N/` of the bundle directory.
pub const SUN_PATH_MAX: usize = 107;

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const STDIN_CLOSE: u8 = 3;
pub const RESIZE: u8 = 4;

/// Bytes before the payload.
pub const HEADER: usize = 5;

/// Largest payload accepted: a frame announcing more is a protocol error (it bounds what one
/// frame can make the reader buffer).
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// The header of a frame of `kind` carrying `len` bytes.
pub fn header(kind: u8, len: usize) -> [u8; HEADER] {
    let l = (len as u32).to_be_bytes();
    [kind, l[0], l[1], l[2], l[3]]
}

/// A whole frame of `kind` carrying `payload`, appended to `out`.
pub fn encode_into(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.extend_from_slice(&header(kind, payload.len()));
    out.extend_from_slice(payload);
}

/// The payload of a [`RESIZE`] frame.
pub fn resize_payload(cols: u16, rows: u16) -> [u8; 4] {
    let c = cols.to_be_bytes();
    let r = rows.to_be_bytes();
    [c[0], c[1], r[0], r[1]]
}

/// (columns, rows) of a [`RESIZE`] payload; `None` if it is not 4 bytes.
pub fn parse_resize(payload: &[u8]) -> Option<(u16, u16)> {
    match payload {
        [c0, c1, r0, r1] => Some((
            u16::from_be_bytes([*c0, *c1]),
            u16::from_be_bytes([*r0, *r1]),
        )),
        _ => None,
    }
}

/// Why a byte stream is not a valid frame sequence.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The length field exceeds [`MAX_PAYLOAD`].
    TooLong(usize),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLong(n) => {
                write!(f, "frame of {n} bytes exceeds the limit of {MAX_PAYLOAD}")
            }
        }
    }
}

/// Splits a byte stream into frames; keeps an unfinished frame until the rest arrives.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Adds bytes read from the peer.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Calls `f(kind, payload)` for each whole frame buffered, in order, and drops them.
    /// Unknown kinds are passed on too: the caller decides what to ignore.
    pub fn frames(&mut self, mut f: impl FnMut(u8, &[u8])) -> Result<(), FrameError> {
        let mut at = 0;
        let result = loop {
            let rest = &self.buf[at..];
            if rest.len() < HEADER {
                break Ok(());
            }
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            if len > MAX_PAYLOAD {
                break Err(FrameError::TooLong(len));
            }
            if rest.len() < HEADER + len {
                break Ok(());
            }
            f(rest[0], &rest[HEADER..HEADER + len]);
            at += HEADER + len;
        };
        self.buf.drain(..at);
        if self.buf.is_empty() && self.buf.capacity() > 2 * (HEADER + MAX_PAYLOAD) {
            self.buf = Vec::new();
        }
        result
    }

    /// Bytes of an unfinished frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(d: &mut Decoder) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        d.frames(|k, p| out.push((k, p.to_vec()))).unwrap();
        out
    }

    #[test]
    fn frames_round_trip_in_pieces() {
        let mut wire = Vec::new();
        encode_into(&mut wire, STDOUT, b"hello");
        encode_into(&mut wire, STDIN_CLOSE, b"");
        encode_into(&mut wire, RESIZE, &resize_payload(80, 24));
        // Fed one byte at a time: nothing is lost or duplicated at frame boundaries.
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in &wire {
            d.feed(std::slice::from_ref(b));
            got.extend(all(&mut d));
        }
        assert_eq!(
            got,
            vec![
                (STDOUT, b"hello".to_vec()),
                (STDIN_CLOSE, vec![]),
                (RESIZE, vec![0, 80, 0, 24]),
            ]
        );
        assert_eq!(d.pending(), 0);
        assert_eq!(parse_resize(&got[2].1), Some((80, 24)));
        assert_eq!(parse_resize(b"abc"), None);
    }

    #[test]
    fn an_oversized_frame_is_an_error() {
        let mut d = Decoder::default();
        d.feed(&header(STDIN, MAX_PAYLOAD + 1));
        assert_eq!(
            d.frames(|_, _| panic!("no frame expected")),
            Err(FrameError::TooLong(MAX_PAYLOAD + 1))
        );
        let mut d = Decoder::default();
        d.feed(&header(STDIN, MAX_PAYLOAD));
        d.feed(&[7; 10]);
        assert!(all(&mut d).is_empty());
        assert_eq!(d.pending(), HEADER + 10);
    }
}
