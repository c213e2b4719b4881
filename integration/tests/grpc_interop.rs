//! gRPC clients on unix sockets that send the socket's path as :authority (grpc-go before
//! kubelet 1.26, crictl and critest 1.26, grpc-java, grpc-python) must be served, not reset.
//! The request is written as raw HTTP/2 frames, since no Rust client will send such a header.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
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

/// An HPACK literal without indexing, with an indexed name (index < 15) or a literal name.
fn literal(out: &mut Vec<u8>, name_index: u8, name: &str, value: &str) {
    if name_index == 0 {
        out.push(0x00);
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
    } else {
        out.push(name_index);
    }
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
}

/// Sends one unary Version call with `authority` and returns the frame types the server sent
/// on stream 1 (1 = HEADERS, 0 = DATA, 3 = RST_STREAM).
fn version_call(socket: &std::path::Path, authority: &str) -> Vec<u8> {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    s.write_all(&frame(0x4, 0, 0, &[])).unwrap(); // SETTINGS
    let mut h = vec![0x83, 0x86]; // :method POST, :scheme http
    literal(&mut h, 4, "", "/runtime.v1.RuntimeService/Version");
    literal(&mut h, 1, "", authority);
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
async fn socket_path_authority_is_served() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let sock = d.socket.clone();
    for authority in [sock.to_string_lossy().into_owned(), "localhost".to_string()] {
        let path = sock.clone();
        let a = authority.clone();
        let seen = tokio::task::spawn_blocking(move || version_call(&path, &a))
            .await
            .unwrap();
        assert!(
            !seen.contains(&0x3),
            "stream reset for :authority {authority:?}: {seen:?}"
        );
        assert_eq!(
            seen.first(),
            Some(&0x1),
            "no response headers for {authority:?}: {seen:?}"
        );
        assert!(
            seen.contains(&0x0),
            "no response message for {authority:?}: {seen:?}"
        );
    }
    d.cleanup().await;
}
