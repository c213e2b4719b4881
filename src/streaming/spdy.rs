//! SPDY/3.1 framing: the frames, their wire form, and the zlib-compressed name/value header
//! blocks with the protocol's preset dictionary. The multiplexer on top is [`session`].
//!
//! Only what Kubernetes' streaming protocols use is given meaning (kubelet, crictl and
//! client-go speak SPDY through moby/spdystream), but every frame type of SPDY/3 parses, so
//! a peer sending one we ignore is not a protocol error.
//!
//! Wire form (all integers big-endian):
//!
//! ```text
//! control: |1| version(15) | type(16) | flags(8) | length(24) | payload
//! data:    |0| stream id(31)          | flags(8) | length(24) | payload
//! ```
//!
//! Memory is bounded: a control frame may be at most [`MAX_CONTROL_FRAME`] bytes and its
//! header block may inflate to at most [`MAX_HEADER_BLOCK`]; a DATA frame, whose length may
//! reach 16 MiB, is handed on in pieces of at most [`DATA_CHUNK`] bytes as they arrive (only
//! the last piece carries the frame's FIN), so the decoder never holds a whole one.

pub mod session;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// The protocol version in every control frame (SPDY/3 and SPDY/3.1 both say 3).
pub const VERSION: u16 = 3;

/// Control frame types.
pub mod kind {
    pub const SYN_STREAM: u16 = 1;
    pub const SYN_REPLY: u16 = 2;
    pub const RST_STREAM: u16 = 3;
    pub const SETTINGS: u16 = 4;
    pub const PING: u16 = 6;
    pub const GOAWAY: u16 = 7;
    pub const HEADERS: u16 = 8;
    pub const WINDOW_UPDATE: u16 = 9;
}

/// FLAG_FIN on DATA, SYN_STREAM, SYN_REPLY and HEADERS: the sender's last frame on the stream.
pub const FLAG_FIN: u8 = 0x01;
/// FLAG_UNIDIRECTIONAL on SYN_STREAM: the receiver may not send on the stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// FLAG_SETTINGS_CLEAR_SETTINGS on SETTINGS.
pub const FLAG_CLEAR_SETTINGS: u8 = 0x01;

/// SETTINGS_INITIAL_WINDOW_SIZE: the sender's initial per-stream receive window.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;
/// SETTINGS_MAX_CONCURRENT_STREAMS.
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u32 = 4;

/// RST_STREAM status codes.
pub mod rst {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const CANCEL: u32 = 5;
    pub const INTERNAL_ERROR: u32 = 6;
    pub const FLOW_CONTROL_ERROR: u32 = 7;
    pub const STREAM_IN_USE: u32 = 8;
    pub const STREAM_ALREADY_CLOSED: u32 = 9;
}

/// GOAWAY status codes.
pub mod goaway {
    pub const OK: u32 = 0;
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INTERNAL_ERROR: u32 = 11;
}

/// Both windows of SPDY/3.1 (each stream's and the session's) start at 64 KiB.
pub const DEFAULT_WINDOW: u32 = 64 * 1024;
/// Largest window a WINDOW_UPDATE may produce (2^31 - 1).
pub const MAX_WINDOW: i64 = 0x7fff_ffff;
/// Largest control frame accepted (a SYN_STREAM's compressed headers are a few hundred bytes).
pub const MAX_CONTROL_FRAME: usize = 64 * 1024;
/// Largest inflated header block accepted.
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// Largest piece of DATA payload the decoder hands on at once.
pub const DATA_CHUNK: usize = 32 * 1024;
/// Largest name/value pair count accepted in one header block.
const MAX_HEADER_PAIRS: u32 = 1024;

/// A stream's or frame's name/value headers, names lowercase as SPDY requires. A value holding
/// several values joins them with NUL, as on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// The value of `name` (compared case-insensitively), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn from_pairs<const N: usize>(pairs: [(&str, &str); N]) -> Self {
        Headers(
            pairs
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
                .collect(),
        )
    }
}

/// One SPDY/3.1 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A DATA frame, or (from the decoder) a piece of one: see the module docs.
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        clear: bool,
        /// (flags, id, value) per entry.
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    /// A control frame type SPDY/3 defines but this peer gives no meaning (CREDENTIAL, the
    /// old NOOP) or a future one: the spec says to ignore it.
    Unknown {
        kind: u16,
    },
}

/// Why a byte sequence is not SPDY/3.1. Any of these ends the session with GOAWAY.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("control frame type {kind} of {len} bytes is larger than {MAX_CONTROL_FRAME}")]
    TooLarge { kind: u16, len: usize },
    #[error("control frame type {kind}: {reason}")]
    Malformed { kind: u16, reason: &'static str },
    #[error("header block: {0}")]
    HeaderBlock(String),
}

fn malformed(kind: u16, reason: &'static str) -> FrameError {
    FrameError::Malformed { kind, reason }
}

/// The SPDY/3 zlib dictionary (SPDY Protocol draft 3, section 2.6.10.1): 1423 bytes whose
/// Adler-32 is 0xe3c6a7c2 (checked by a test). Header names are lowercase, so the entries
/// are those too.
#[rustfmt::skip]
pub(crate) const DICTIONARY: &[u8] = b"\
    \0\0\0\x07options\0\0\0\x04head\0\0\0\x04post\0\0\0\x03put\0\0\0\x06delete\
    \0\0\0\x05trace\0\0\0\x06accept\0\0\0\x0eaccept-charset\0\0\0\x0faccept-encoding\
    \0\0\0\x0faccept-language\0\0\0\x0daccept-ranges\0\0\0\x03age\0\0\0\x05allow\
    \0\0\0\x0dauthorization\0\0\0\x0dcache-control\0\0\0\x0aconnection\
    \0\0\0\x0ccontent-base\0\0\0\x10content-encoding\0\0\0\x10content-language\
    \0\0\0\x0econtent-length\0\0\0\x10content-location\0\0\0\x0bcontent-md5\
    \0\0\0\x0dcontent-range\0\0\0\x0ccontent-type\0\0\0\x04date\0\0\0\x04etag\
    \0\0\0\x06expect\0\0\0\x07expires\0\0\0\x04from\0\0\0\x04host\0\0\0\x08if-match\
    \0\0\0\x11if-modified-since\0\0\0\x0dif-none-match\0\0\0\x08if-range\
    \0\0\0\x13if-unmodified-since\0\0\0\x0dlast-modified\0\0\0\x08location\
    \0\0\0\x0cmax-forwards\0\0\0\x06pragma\0\0\0\x12proxy-authenticate\
    \0\0\0\x13proxy-authorization\0\0\0\x05range\0\0\0\x07referer\0\0\0\x0bretry-after\
    \0\0\0\x06server\0\0\0\x02te\0\0\0\x07trailer\0\0\0\x11transfer-encoding\
    \0\0\0\x07upgrade\0\0\0\x0auser-agent\0\0\0\x04vary\0\0\0\x03via\0\0\0\x07warning\
    \0\0\0\x10www-authenticate\0\0\0\x06method\0\0\0\x03get\0\0\0\x06status\
    \0\0\0\x06200 OK\0\0\0\x07version\0\0\0\x08HTTP/1.1\0\0\0\x03url\0\0\0\x06public\
    \0\0\0\x0aset-cookie\0\0\0\x0akeep-alive\0\0\0\x06origin\
    100101201202205206300302303304305306307402405406407408409410411412413414415416417502\
    504505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Re\
    quest401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Impl\
    emented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00\
    :00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,imag\
    e/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivate\
    max-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

/// Decodes frames from a byte stream, inflating header blocks with the session's one zlib
/// stream for that direction.
pub struct Decoder {
    inflate: Decompress,
    /// The DATA frame whose payload is still arriving: (stream id, bytes left, fin flag).
    data: Option<(u32, usize, bool)>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            inflate: Decompress::new(true),
            data: None,
        }
    }

    /// Takes the next frame (or DATA piece) out of `buf`, or None when more bytes are needed.
    /// After an error the session is unusable (the zlib stream may be out of step).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if let Some((stream_id, left, fin)) = self.data {
            if left == 0 || !buf.is_empty() {
                let n = left.min(buf.len()).min(DATA_CHUNK);
                let data = buf.split_to(n).freeze();
                let left = left - n;
                self.data = (left > 0).then_some((stream_id, left, fin));
                return Ok(Some(Frame::Data {
                    stream_id,
                    fin: fin && left == 0,
                    data,
                }));
            }
            return Ok(None);
        }
        if buf.len() < 8 {
            return Ok(None);
        }
        let word = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let flags = buf[4];
        let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
        if word & 0x8000_0000 == 0 {
            buf.advance(8);
            self.data = Some((word & 0x7fff_ffff, len, flags & FLAG_FIN != 0));
            return self.decode(buf);
        }
        let version = ((word >> 16) & 0x7fff) as u16;
        let kind = (word & 0xffff) as u16;
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        if len > MAX_CONTROL_FRAME {
            return Err(FrameError::TooLarge { kind, len });
        }
        if buf.len() < 8 + len {
            buf.reserve(8 + len - buf.len());
            return Ok(None);
        }
        buf.advance(8);
        let payload = buf.split_to(len).freeze();
        self.control(kind, flags, payload).map(Some)
    }

    fn control(&mut self, kind: u16, flags: u8, mut p: Bytes) -> Result<Frame, FrameError> {
        let fin = flags & FLAG_FIN != 0;
        let need = |p: &Bytes, n: usize| {
            if p.len() < n {
                Err(malformed(kind, "payload too short"))
            } else {
                Ok(())
            }
        };
        Ok(match kind {
            kind::SYN_STREAM => {
                need(&p, 10)?;
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let associated_to = p.get_u32() & 0x7fff_ffff;
                let priority = p.get_u8() >> 5;
                let _slot = p.get_u8();
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    headers: self.headers(&p)?,
                }
            }
            kind::SYN_REPLY | kind::HEADERS => {
                need(&p, 4)?;
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let headers = self.headers(&p)?;
                if kind == kind::SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        fin,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        fin,
                        headers,
                    }
                }
            }
            kind::RST_STREAM => {
                need(&p, 8)?;
                Frame::RstStream {
                    stream_id: p.get_u32() & 0x7fff_ffff,
                    status: p.get_u32(),
                }
            }
            kind::SETTINGS => {
                need(&p, 4)?;
                let n = p.get_u32() as usize;
                if p.len() != n.saturating_mul(8) {
                    return Err(malformed(kind, "entry count does not match the length"));
                }
                let entries = (0..n)
                    .map(|_| {
                        let w = p.get_u32();
                        ((w >> 24) as u8, w & 0x00ff_ffff, p.get_u32())
                    })
                    .collect();
                Frame::Settings {
                    clear: flags & FLAG_CLEAR_SETTINGS != 0,
                    entries,
                }
            }
            kind::PING => {
                need(&p, 4)?;
                Frame::Ping { id: p.get_u32() }
            }
            kind::GOAWAY => {
                // SPDY/2 peers send no status; SPDY/3 does.
                need(&p, 4)?;
                let last_good_stream_id = p.get_u32() & 0x7fff_ffff;
                let status = if p.len() >= 4 { p.get_u32() } else { 0 };
                Frame::GoAway {
                    last_good_stream_id,
                    status,
                }
            }
            kind::WINDOW_UPDATE => {
                need(&p, 8)?;
                Frame::WindowUpdate {
                    stream_id: p.get_u32() & 0x7fff_ffff,
                    delta: p.get_u32() & 0x7fff_ffff,
                }
            }
            other => Frame::Unknown { kind: other },
        })
    }

    fn headers(&mut self, compressed: &[u8]) -> Result<Headers, FrameError> {
        let block = inflate_block(&mut self.inflate, compressed)?;
        parse_header_block(&block)
    }
}

/// Inflates one header block with the session's zlib stream; the peer ends each block with a
/// sync flush, so everything it holds comes out now.
fn inflate_block(z: &mut Decompress, input: &[u8]) -> Result<Vec<u8>, FrameError> {
    let err = |e: String| FrameError::HeaderBlock(e);
    let mut out = Vec::with_capacity(512);
    let mut pos = 0;
    loop {
        if out.len() == out.capacity() {
            if out.len() >= MAX_HEADER_BLOCK {
                return Err(err(format!(
                    "inflates to more than {MAX_HEADER_BLOCK} bytes"
                )));
            }
            out.reserve(out.len().min(MAX_HEADER_BLOCK - out.len()).max(512));
        }
        let (in0, out0) = (z.total_in(), out.len());
        match z.decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync) {
            Ok(_) => {}
            Err(e) if e.needs_dictionary().is_some() => {
                z.set_dictionary(DICTIONARY)
                    .map_err(|e| err(format!("setting the dictionary: {e}")))?;
            }
            Err(e) => return Err(err(e.to_string())),
        }
        let consumed = (z.total_in() - in0) as usize;
        pos += consumed;
        let full = out.len() == out.capacity();
        if pos >= input.len() && !full {
            return Ok(out);
        }
        if consumed == 0 && out.len() == out0 && !full {
            return Err(err("truncated compressed data".into()));
        }
    }
}

/// Parses an inflated name/value block: a 32-bit pair count, then per pair a 32-bit length
/// and the name, a 32-bit length and the value.
pub fn parse_header_block(mut b: &[u8]) -> Result<Headers, FrameError> {
    let bad = |r: &str| FrameError::HeaderBlock(r.to_string());
    let take = |b: &mut &[u8]| -> Result<Vec<u8>, FrameError> {
        if b.len() < 4 {
            return Err(bad("truncated"));
        }
        let n = b.get_u32() as usize;
        if b.len() < n {
            return Err(bad("truncated"));
        }
        let v = b[..n].to_vec();
        b.advance(n);
        Ok(v)
    };
    if b.len() < 4 {
        return Err(bad("truncated"));
    }
    let count = b.get_u32();
    if count > MAX_HEADER_PAIRS {
        return Err(bad("too many pairs"));
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let name = String::from_utf8(take(&mut b)?).map_err(|_| bad("name is not UTF-8"))?;
        let value = String::from_utf8(take(&mut b)?).map_err(|_| bad("value is not UTF-8"))?;
        if name.is_empty() {
            return Err(bad("empty name"));
        }
        out.push((name.to_ascii_lowercase(), value));
    }
    if !b.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(Headers(out))
}

/// The uncompressed name/value block of `h`: names lowercased, as SPDY requires (Go's
/// framer rejects others).
pub fn header_block(h: &Headers) -> Vec<u8> {
    let mut b = Vec::new();
    b.put_u32(h.0.len() as u32);
    for (name, value) in &h.0 {
        b.put_u32(name.len() as u32);
        b.extend(name.bytes().map(|c| c.to_ascii_lowercase()));
        b.put_u32(value.len() as u32);
        b.extend_from_slice(value.as_bytes());
    }
    b
}

/// Encodes frames, deflating header blocks with the session's one zlib stream for that
/// direction.
pub struct Encoder {
    deflate: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    pub fn new() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(DICTIONARY)
            .expect("a fresh zlib stream accepts a dictionary");
        Encoder { deflate }
    }

    /// Appends the wire form of `f` to `out`. DATA payloads must be shorter than 2^24 bytes
    /// (the session sends at most [`DATA_CHUNK`] at once).
    pub fn encode(&mut self, f: &Frame, out: &mut BytesMut) {
        match f {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                assert!(data.len() < 1 << 24, "DATA payload too large");
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(u32::from(if *fin { FLAG_FIN } else { 0 }) << 24 | data.len() as u32);
                out.extend_from_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                fin,
                unidirectional,
                headers,
            } => {
                let hb = self.compress(headers);
                let mut flags = if *fin { FLAG_FIN } else { 0 };
                if *unidirectional {
                    flags |= FLAG_UNIDIRECTIONAL;
                }
                control_header(out, kind::SYN_STREAM, flags, 10 + hb.len());
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(associated_to & 0x7fff_ffff);
                out.put_u8((priority & 0x7) << 5);
                out.put_u8(0);
                out.extend_from_slice(&hb);
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            }
            | Frame::Headers {
                stream_id,
                fin,
                headers,
            } => {
                let k = if matches!(f, Frame::SynReply { .. }) {
                    kind::SYN_REPLY
                } else {
                    kind::HEADERS
                };
                let hb = self.compress(headers);
                control_header(out, k, if *fin { FLAG_FIN } else { 0 }, 4 + hb.len());
                out.put_u32(stream_id & 0x7fff_ffff);
                out.extend_from_slice(&hb);
            }
            Frame::RstStream { stream_id, status } => {
                control_header(out, kind::RST_STREAM, 0, 8);
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::Settings { clear, entries } => {
                let flags = if *clear { FLAG_CLEAR_SETTINGS } else { 0 };
                control_header(out, kind::SETTINGS, flags, 4 + 8 * entries.len());
                out.put_u32(entries.len() as u32);
                for (flags, id, value) in entries {
                    out.put_u32(u32::from(*flags) << 24 | (id & 0x00ff_ffff));
                    out.put_u32(*value);
                }
            }
            Frame::Ping { id } => {
                control_header(out, kind::PING, 0, 4);
                out.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control_header(out, kind::GOAWAY, 0, 8);
                out.put_u32(last_good_stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control_header(out, kind::WINDOW_UPDATE, 0, 8);
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(delta & 0x7fff_ffff);
            }
            Frame::Unknown { kind } => control_header(out, *kind, 0, 0),
        }
    }

    fn compress(&mut self, h: &Headers) -> Vec<u8> {
        let input = header_block(h);
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&input[pos..], &mut out, FlushCompress::Sync)
                .expect("deflate into a growable buffer cannot fail");
            pos += (self.deflate.total_in() - before) as usize;
            // Done once all input is in and the flush fit (output space was left over).
            if pos >= input.len() && out.len() < out.capacity() {
                return out;
            }
        }
    }
}

fn control_header(out: &mut BytesMut, kind: u16, flags: u8, len: usize) {
    out.put_u32(0x8000_0000 | u32::from(VERSION) << 16 | u32::from(kind));
    out.put_u32(u32::from(flags) << 24 | len as u32);
}

#[cfg(test)]
mod tests;
