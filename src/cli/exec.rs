//! `peapod exec POD [-c C] [-i] [-t] -- CMD ARGS...`: the daemon runs the command in the
//! container itself (the engine's interactive exec, as CRI Exec's streaming server does) and
//! the local API's connection is upgraded to carry the streams. On a root-only local socket
//! there is no need for SPDY or WebSocket: each message is a frame of one channel byte, a
//! big-endian u32 length and the bytes.
//!
//! Channels: to the daemon stdin (an empty frame closes it) and terminal resizes (columns and
//! rows, u16 each); from the daemon stdout, stderr and, last, the exit code (i32). The
//! connection closing early means the other side went away: the daemon then kills the command.

// The error of a request is the API's Status, made once per request and sent as it is:
// its size (a few strings) costs nothing worth boxing it for.
#![allow(clippy::result_large_err)]

use std::path::Path;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::ClientError;
use super::status::ApiStatus;

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const EXIT: u8 = 3;
pub const RESIZE: u8 = 4;

/// The `Upgrade` protocol name of the exec connection.
pub const PROTOCOL: &str = "peapod-exec";

/// The largest frame accepted: more is a broken peer, not data.
const MAX_FRAME: usize = 1 << 20;

/// One frame on the wire.
pub fn encode(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(5 + data.len());
    f.push(channel);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}

/// Frames out of a byte stream, however it was cut.
#[derive(Default)]
pub struct Frames {
    buf: Vec<u8>,
}

impl Frames {
    /// Adds bytes read; the frames now complete, or an error for a frame too large.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            if self.buf.len() < 5 {
                return Ok(out);
            }
            let len =
                u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
            if len > MAX_FRAME {
                return Err(format!("exec stream: frame of {len} bytes"));
            }
            if self.buf.len() < 5 + len {
                return Ok(out);
            }
            let data = self.buf[5..5 + len].to_vec();
            out.push((self.buf[0], data));
            self.buf.drain(..5 + len);
        }
    }
}

/// A resize frame's payload.
pub fn resize(cols: u16, rows: u16) -> Vec<u8> {
    let mut v = cols.to_be_bytes().to_vec();
    v.extend_from_slice(&rows.to_be_bytes());
    v
}

pub fn parse_resize(data: &[u8]) -> Option<(u16, u16)> {
    (data.len() == 4).then(|| {
        (
            u16::from_be_bytes([data[0], data[1]]),
            u16::from_be_bytes([data[2], data[3]]),
        )
    })
}

/// The exec request's query, kubectl's: `container=C&command=a&command=b&stdin=true&tty=true`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    pub container: Option<String>,
    pub command: Vec<String>,
    pub stdin: bool,
    pub tty: bool,
}

/// `%`-escapes everything but unreserved characters.
pub fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl ExecOptions {
    pub fn to_query(&self) -> String {
        let mut q: Vec<String> = Vec::new();
        if let Some(c) = &self.container {
            q.push(format!("container={}", escape(c)));
        }
        q.extend(
            self.command
                .iter()
                .map(|a| format!("command={}", escape(a))),
        );
        if self.stdin {
            q.push("stdin=true".into());
        }
        if self.tty {
            q.push("tty=true".into());
        }
        q.join("&")
    }

    /// Reads the query; `decode` undoes the `%`-escapes of one value.
    pub fn from_query(
        query: Option<&str>,
        decode: impl Fn(&str) -> String,
    ) -> Result<ExecOptions, ApiStatus> {
        let mut o = ExecOptions::default();
        for kv in query
            .unwrap_or_default()
            .split('&')
            .filter(|s| !s.is_empty())
        {
            let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
            let v = decode(v);
            match k {
                "container" => o.container = Some(v).filter(|c| !c.is_empty()),
                "command" => o.command.push(v),
                "stdin" => o.stdin = v == "true" || v == "1",
                "tty" => o.tty = v == "true" || v == "1",
                // kubectl always asks for stdout and stderr.
                "stdout" | "stderr" => {}
                _ => {
                    return Err(ApiStatus::bad_request(format!(
                        "unsupported exec option {k:?}"
                    )))
                }
            }
        }
        if o.command.is_empty() {
            return Err(ApiStatus::bad_request(
                "you must specify at least 1 command",
            ));
        }
        Ok(o)
    }
}

/// The terminal's size (columns, rows), when stdout is one.
fn terminal_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct passed, which lives across the
    // call; fd 1 is only read.
    let r = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some((ws.ws_col, ws.ws_row))
}

/// The terminal in raw mode while it lives (a `-t` exec: the remote pty does the echo and
/// line editing), restored when dropped.
struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    fn enable() -> RawTerminal {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(&stdin) else {
            return RawTerminal(None);
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        if tcsetattr(&stdin, SetArg::TCSANOW, &raw).is_err() {
            return RawTerminal(None);
        }
        RawTerminal(Some(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

/// Runs the exec; the command's exit code.
pub async fn exec(
    socket: &Path,
    namespace: &str,
    pod: &str,
    opts: &ExecOptions,
) -> Result<i32, ClientError> {
    let http = |e: &dyn std::fmt::Display| ClientError::Http(e.to_string());
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            socket: socket.display().to_string(),
            source,
        })?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http(&e))?;
    tokio::spawn(conn.with_upgrades());
    let req = hyper::Request::post(format!(
        "/api/v1/namespaces/{namespace}/pods/{pod}/exec?{}",
        opts.to_query()
    ))
    .header(hyper::header::HOST, "peapod")
    .header(hyper::header::CONNECTION, "Upgrade")
    .header(hyper::header::UPGRADE, PROTOCOL)
    .body(Empty::<Bytes>::new())
    .map_err(|e| http(&e))?;
    let resp = send.send_request(req).await.map_err(|e| http(&e))?;
    if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        let code = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| http(&e))?
            .to_bytes();
        return Err(ClientError::Api(
            serde_json::from_slice(&body).unwrap_or_else(|_| {
                ApiStatus::failure(code.as_u16(), "", String::from_utf8_lossy(&body))
            }),
        ));
    }
    let upgraded = hyper::upgrade::on(resp).await.map_err(|e| http(&e))?;
    let (mut rd, wr) = tokio::io::split(TokioIo::new(upgraded));
    let wr = std::sync::Arc::new(tokio::sync::Mutex::new(wr));

    let _raw = (opts.tty && opts.stdin && std::io::IsTerminal::is_terminal(&std::io::stdin()))
        .then(RawTerminal::enable);
    let mut tasks = Vec::new();
    if opts.tty {
        let wr = wr.clone();
        tasks.push(tokio::spawn(async move {
            let mut winch =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
            loop {
                if let Some((c, r)) = terminal_size() {
                    let f = encode(RESIZE, &resize(c, r));
                    if wr.lock().await.write_all(&f).await.is_err() {
                        return;
                    }
                }
                match winch.as_mut() {
                    Some(w) => {
                        if w.recv().await.is_none() {
                            return;
                        }
                    }
                    None => return,
                }
            }
        }));
    }
    if opts.stdin {
        // stdin is read on a thread of its own: a blocking read that never returns (a
        // terminal no one types in) must not hold up the end of the exec.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        std::thread::spawn(move || {
            use std::io::Read;
            let mut stdin = std::io::stdin();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = stdin.read(&mut buf).unwrap_or(0);
                if tx.blocking_send(buf[..n].to_vec()).is_err() || n == 0 {
                    return;
                }
            }
        });
        let wr = wr.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(data) = rx.recv().await {
                let f = encode(STDIN, &data);
                if wr.lock().await.write_all(&f).await.is_err() || data.is_empty() {
                    return;
                }
            }
        }));
    }
    let mut frames = Frames::default();
    let mut buf = vec![0u8; 32 * 1024];
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let code = 'read: loop {
        let n = rd.read(&mut buf).await.map_err(|e| http(&e))?;
        if n == 0 {
            break 'read None;
        }
        for (ch, data) in frames.push(&buf[..n]).map_err(|e| http(&e))? {
            match ch {
                STDOUT => {
                    let _ = std::io::Write::write_all(&mut out, &data);
                    let _ = std::io::Write::flush(&mut out);
                }
                STDERR => {
                    let _ = std::io::Write::write_all(&mut err, &data);
                }
                EXIT if data.len() == 4 => {
                    break 'read Some(i32::from_be_bytes([data[0], data[1], data[2], data[3]]));
                }
                _ => {}
            }
        }
    };
    for t in tasks {
        t.abort();
    }
    code.ok_or_else(|| {
        ClientError::Http("the exec connection closed before the command ended".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_cut() {
        let mut wire = encode(STDOUT, b"hello");
        wire.extend(encode(STDIN, b""));
        wire.extend(encode(EXIT, &3i32.to_be_bytes()));
        for cut in 0..wire.len() {
            let mut f = Frames::default();
            let mut got = f.push(&wire[..cut]).unwrap();
            got.extend(f.push(&wire[cut..]).unwrap());
            assert_eq!(
                got,
                [
                    (STDOUT, b"hello".to_vec()),
                    (STDIN, vec![]),
                    (EXIT, vec![0, 0, 0, 3])
                ],
                "cut at {cut}"
            );
        }
        assert!(Frames::default().push(&[1, 0xff, 0, 0, 0]).is_err());
        assert_eq!(parse_resize(&resize(80, 24)), Some((80, 24)));
    }

    #[test]
    fn query_round_trips() {
        let o = ExecOptions {
            container: Some("app".into()),
            command: vec!["sh".into(), "-c".into(), "echo a+b & exit 3".into()],
            stdin: true,
            tty: false,
        };
        let q = o.to_query();
        assert_eq!(
            q,
            "container=app&command=sh&command=-c&command=echo%20a%2Bb%20%26%20exit%203&stdin=true"
        );
        let decode = |v: &str| {
            let mut out = Vec::new();
            let b = v.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' {
                    out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                    i += 3;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).unwrap()
        };
        assert_eq!(ExecOptions::from_query(Some(&q), decode).unwrap(), o);
        assert_eq!(
            ExecOptions::from_query(Some("container=a"), decode)
                .unwrap_err()
                .message,
            "you must specify at least 1 command"
        );
    }
}
