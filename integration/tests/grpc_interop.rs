//! Every gRPC client on the unix socket is served, whatever it sends as :authority: the socket's
//! path raw (grpc-java; grpc-go with a dialer, as kubelet and crictl 1.26 did), %-encoded, or
//! %-encoded without its leading slash (Python grpcio), `localhost` (grpc-go's unix:// targets)
//! or nothing. peapod's h2 treats an :authority that does not parse as absent (third_party/h2).
//!
//! The spellings are sent byte for byte as raw HTTP/2 frames, since no Rust client sends them.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use peapod_integration::*;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an N-bit prefix, `flags` in the first byte's high bits (RFC 7541 5.1).
fn hpack_int(out: &mut Vec<u8>, bits: u32, flags: u8, mut value: usize) {
    let max = (1usize << bits) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// An HPACK string literal, not Huffman-coded: exactly these bytes on the wire.
fn hpack_str(out: &mut Vec<u8>, s: &str) {
    hpack_int(out, 7, 0, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// An HPACK literal without indexing, with an indexed name (static table index < 15) or, for
/// index 0, a literal name.
fn literal(out: &mut Vec<u8>, name_index: u8, name: &str, value: &str) {
    if name_index == 0 {
        out.push(0x00);
        hpack_str(out, name);
    } else {
        hpack_int(out, 4, 0, name_index as usize);
    }
    hpack_str(out, value);
}

/// Sends one unary Version call with `authority` (None: no :authority at all) and returns the
/// frame types the server sent on stream 1 (1 = HEADERS, 0 = DATA, 3 = RST_STREAM).
fn version_call(socket: &Path, authority: Option<&str>) -> Vec<u8> {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    s.write_all(&frame(0x4, 0, 0, &[])).unwrap(); // SETTINGS
    let mut h = vec![0x83, 0x86]; // :method POST, :scheme http
    literal(&mut h, 4, "", "/runtime.v1.RuntimeService/Version");
    if let Some(a) = authority {
        literal(&mut h, 1, "", a);
    }
    literal(&mut h, 0, "content-type", "application/grpc");
    literal(&mut h, 0, "te", "trailers");
    // HEADERS with END_HEADERS, then an empty VersionRequest (uncompressed, length 0).
    s.write_all(&frame(0x1, 0x4, 1, &h)).unwrap();
    s.write_all(&frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0])).unwrap(); // DATA, END_STREAM
    let mut seen = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            if kind == 0x4 && flags & 0x1 == 0 {
                s.write_all(&frame(0x4, 0x1, 0, &[])).unwrap(); // SETTINGS ack
            }
            if stream == 1 {
                seen.push(kind);
                // RST_STREAM, or HEADERS/DATA with END_STREAM: the call is over.
                if kind == 0x3 || (flags & 0x1 != 0 && (kind == 0x0 || kind == 0x1)) {
                    return seen;
                }
            }
            buf.drain(..9 + len);
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return seen,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_authority_spelling_is_served() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let path = d.socket.to_str().unwrap().to_string();
    let relative = path.trim_start_matches('/').to_string();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("the socket's path (grpc-java)", Some(path.clone())),
        ("the path %-encoded", Some(path.replace('/', "%2F"))),
        (
            "the path %-encoded without its leading slash (grpcio)",
            Some(relative.replace('/', "%2F")),
        ),
        (
            "grpcio's spelling of the default socket",
            Some("run%2Fpeapod%2Fpeapod.sock".into()),
        ),
        ("the path without its leading slash", Some(relative.clone())),
        ("localhost (grpc-go on unix://)", Some("localhost".into())),
        ("empty", Some(String::new())),
        ("no :authority", None),
    ];
    for (what, authority) in cases {
        let socket = d.socket.clone();
        let a = authority.clone();
        let seen = tokio::task::spawn_blocking(move || version_call(&socket, a.as_deref()))
            .await
            .unwrap();
        let show = format!("{what}: {authority:?}");
        assert!(!seen.contains(&0x3), "stream reset for {show}: {seen:?}");
        assert_eq!(
            seen.first(),
            Some(&0x1),
            "no response headers for {show}: {seen:?}"
        );
        assert!(
            seen.contains(&0x0),
            "no response message for {show}: {seen:?}"
        );
    }
    d.cleanup().await;
}
