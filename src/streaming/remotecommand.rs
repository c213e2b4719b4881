//! Exec and attach: Kubernetes' remote-command protocol over SPDY/3.1 or WebSocket, as
//! kubelet's server (k8s.io/kubelet/pkg/cri/streaming/remotecommand) speaks it.
//!
//! SPDY: after the upgrade (`X-Stream-Protocol-Version` v5/v4/v3/v2/`channel.k8s.io`), the
//! client opens one stream per channel, named by its `streamType` header: `error`, `stdin`,
//! `stdout`, `stderr`, and `resize` (v3+, with a tty). The server waits (up to
//! [`STREAM_CREATION_TIMEOUT`]) until every stream the request implies has arrived, runs the
//! backend, then writes the outcome on the error stream, ends every stream and says GOAWAY.
//!
//! WebSocket: channels 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize, framed as in
//! [`super::websocket`]; an empty message on the lowest output channel tells the client the
//! streams are ready, and the outcome goes on channel 3 before the close.
//!
//! The outcome: from v4 on, a JSON `metav1.Status` (exit codes in it); before, plain text and
//! only on failure.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use hyper::{Request, Response};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::server::{self, Body};
use super::spdy::rst;
use super::spdy::session::{RecvStream, SendStream, Session};
use super::websocket::{self, ChannelReader, ChannelWriter, Framing, CLOSE_CHANNEL};
use super::{Backend, BackendError, BoxFuture, StreamIo, TermSize};

/// kubelet's DefaultStreamCreationTimeout.
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a finished session waits for the client to close its side.
pub const LINGER: Duration = Duration::from_secs(5);

pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";
pub const V3: &str = "v3.channel.k8s.io";
pub const V2: &str = "v2.channel.k8s.io";
pub const V1: &str = "channel.k8s.io";

/// SPDY versions, newest first (v5 is v4 on SPDY: its close signal is WebSocket's).
pub const SPDY_PROTOCOLS: &[&str] = &[V5, V4, V3, V2, V1];
/// WebSocket subprotocols, as kubelet's plus v5.
pub const WS_PROTOCOLS: &[&str] = &[
    V5,
    V4,
    "v4.base64.channel.k8s.io",
    V1,
    "base64.channel.k8s.io",
];

/// Which channels the request asked for.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// What to run once the streams are up.
pub enum Call {
    Exec {
        container_id: String,
        cmd: Vec<String>,
        backend: Arc<dyn Backend>,
    },
    Attach {
        container_id: String,
        backend: Arc<dyn Backend>,
    },
}

/// How it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    ExitCode {
        cmd: Vec<String>,
        code: i32,
    },
    /// The backend failed; the text already says what was being done.
    Failed(String),
}

impl Call {
    async fn run(self, io: StreamIo) -> Outcome {
        match self {
            Call::Exec {
                container_id,
                cmd,
                backend,
            } => match backend.exec(container_id, cmd.clone(), io).await {
                Ok(0) => Outcome::Success,
                Ok(code) => Outcome::ExitCode { cmd, code },
                Err(e) => Outcome::Failed(format!("error executing command in container: {e}")),
            },
            Call::Attach {
                container_id,
                backend,
            } => match backend.attach(container_id, io).await {
                Ok(()) => Outcome::Success,
                Err(BackendError(e)) => {
                    Outcome::Failed(format!("error attaching to container: {e}"))
                }
            },
        }
    }
}

/// `metav1.Status` as kubelet marshals it (field order and omissions included).
#[derive(Serialize)]
struct Status<'a> {
    metadata: Empty,
    status: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct Details<'a> {
    causes: Vec<Cause<'a>>,
}

#[derive(Serialize)]
struct Cause<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    message: &'a str,
}

/// Go's `%v` of a `[]string`: `[sh -c exit 3]`.
fn go_list(v: &[String]) -> String {
    format!("[{}]", v.join(" "))
}

impl Outcome {
    /// The human-readable message (kubelet's `StatusError.Error()`); None for success.
    pub fn message(&self) -> Option<String> {
        match self {
            Outcome::Success => None,
            Outcome::ExitCode { cmd, code } => Some(format!(
                "command terminated with non-zero exit code: error executing command {}, exit \
                 code {code}",
                go_list(cmd)
            )),
            Outcome::Failed(e) => Some(format!("Internal error occurred: {e}")),
        }
    }

    /// The v4+ error-stream payload.
    pub fn status_json(&self) -> String {
        let message = self.message().unwrap_or_default();
        let code_text;
        let status = match self {
            Outcome::Success => Status {
                metadata: Empty {},
                status: "Success",
                message: "",
                reason: "",
                details: None,
                code: None,
            },
            Outcome::ExitCode { code, .. } => {
                code_text = code.to_string();
                Status {
                    metadata: Empty {},
                    status: "Failure",
                    message: &message,
                    reason: "NonZeroExitCode",
                    details: Some(Details {
                        causes: vec![Cause {
                            reason: "ExitCode",
                            message: &code_text,
                        }],
                    }),
                    code: None,
                }
            }
            Outcome::Failed(e) => Status {
                metadata: Empty {},
                status: "Failure",
                message: &message,
                reason: "InternalError",
                details: Some(Details {
                    causes: vec![Cause {
                        reason: "",
                        message: e,
                    }],
                }),
                code: Some(500),
            },
        };
        serde_json::to_string(&status).expect("a Status serializes")
    }

    /// What goes on the error stream for `protocol`; None: nothing (pre-v4 success).
    fn payload(&self, protocol: &str) -> Option<String> {
        if protocol.starts_with("v4.") || protocol.starts_with("v5.") {
            Some(self.status_json())
        } else {
            self.message()
        }
    }
}

/// The response to an exec or attach request, and what runs on the upgraded connection.
pub fn upgrade(
    req: Request<hyper::body::Incoming>,
    ws: bool,
    opts: Options,
    call: Call,
) -> (Response<Body>, Option<BoxFuture<'static, ()>>) {
    let handshake = if ws {
        server::ws_handshake(&req, WS_PROTOCOLS)
    } else {
        server::spdy_handshake(&req, SPDY_PROTOCOLS, V1)
    };
    match handshake {
        Err(resp) => (resp, None),
        Ok((resp, protocol)) => {
            let run: BoxFuture<'static, ()> = Box::pin(async move {
                let Some(io) = server::upgraded(req).await else {
                    return;
                };
                if ws {
                    serve_ws(io, protocol, opts, call).await
                } else {
                    serve_spdy(io, protocol, opts, call).await
                }
            });
            (resp, Some(run))
        }
    }
}

/// The streams of one exec/attach over SPDY.
#[derive(Default)]
struct SpdyStreams {
    error: Option<SendStream>,
    stdin: Option<(RecvStream, SendStream)>,
    stdout: Option<SendStream>,
    stderr: Option<SendStream>,
    resize: Option<RecvStream>,
}

/// Serves one exec/attach over an upgraded SPDY connection.
pub async fn serve_spdy<T>(io: T, protocol: &'static str, opts: Options, call: Call)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (session, mut acceptor, driver) = Session::new(io);
    let resizing = opts.tty && protocol != V2 && protocol != V1;
    let expected = 1
        + usize::from(opts.stdin)
        + usize::from(opts.stdout)
        + usize::from(opts.stderr)
        + usize::from(resizing);
    let app = async {
        let mut s = SpdyStreams::default();
        let wait = async {
            let mut received = 0;
            while received < expected {
                let Some(inc) = acceptor.accept().await else {
                    return false;
                };
                let kind = inc.headers.get("streamtype").unwrap_or("").to_string();
                let stream = inc.stream;
                let taken = match kind.as_str() {
                    "error" => s.error.is_some(),
                    "stdin" => s.stdin.is_some(),
                    "stdout" => s.stdout.is_some(),
                    "stderr" => s.stderr.is_some(),
                    "resize" if resizing => s.resize.is_some(),
                    _ => {
                        tracing::debug!(stream_type = %kind, "unexpected stream type");
                        stream.reset(rst::REFUSED_STREAM);
                        continue;
                    }
                };
                if taken {
                    stream.reset(rst::STREAM_IN_USE);
                    continue;
                }
                stream.reply();
                let (r, w) = stream.into_split();
                match kind.as_str() {
                    "error" => s.error = Some(w),
                    "stdin" => s.stdin = Some((r, w)),
                    "stdout" => s.stdout = Some(w),
                    "stderr" => s.stderr = Some(w),
                    _ => s.resize = Some(r),
                }
                received += 1;
            }
            true
        };
        match tokio::time::timeout(STREAM_CREATION_TIMEOUT, wait).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(_) => {
                tracing::warn!("timed out waiting for the client to create streams");
                session.close();
                return;
            }
        }
        // Streams opened from now on are refused.
        drop(acceptor);
        let (stdin, stdin_end) = match s.stdin.take() {
            Some((r, mut w)) => {
                if protocol == V1 {
                    // kubelet closes its side of stdin at once in v1.
                    let _ = w.shutdown().await;
                }
                (Some(r), Some(w))
            }
            None => (None, None),
        };
        let (resize, pump) = match s.resize.take() {
            Some(r) => {
                let (tx, rx) = mpsc::channel(8);
                (Some(rx), Some(resize_pump(r, tx)))
            }
            None => (None, None),
        };
        let io = StreamIo {
            tty: opts.tty,
            stdin: stdin.map(|r| Box::new(r) as _),
            stdout: s.stdout.take().map(|w| Box::new(w) as _),
            stderr: s.stderr.take().map(|w| Box::new(w) as _),
            resize,
        };
        let outcome = run_with(call.run(io), pump).await;
        if let (Some(mut err), Some(text)) = (s.error.take(), outcome.payload(protocol)) {
            let _ = err.write_all(text.as_bytes()).await;
            let _ = err.shutdown().await;
        }
        drop(s);
        drop(stdin_end);
        session.close();
    };
    tokio::pin!(driver);
    tokio::select! {
        // The client went away (or broke the protocol): the backend's future is dropped.
        _ = &mut driver => {}
        _ = app => {
            let _ = tokio::time::timeout(LINGER, driver).await;
        }
    }
}

/// Runs the backend, with the resize pump beside it if there is one.
async fn run_with(
    backend: impl std::future::Future<Output = Outcome>,
    pump: Option<impl std::future::Future<Output = ()>>,
) -> Outcome {
    match pump {
        None => backend.await,
        Some(pump) => {
            tokio::pin!(backend, pump);
            let mut pumping = true;
            loop {
                tokio::select! {
                    o = &mut backend => return o,
                    _ = &mut pump, if pumping => pumping = false,
                }
            }
        }
    }
}

/// Parses the resize stream's concatenated JSON objects into `tx`; ends with the stream, on
/// bad JSON, or when the backend drops its receiver.
async fn resize_pump(mut r: RecvStream, tx: mpsc::Sender<TermSize>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<TermSize>();
        let mut used = 0;
        loop {
            match it.next() {
                Some(Ok(size)) => {
                    used = it.byte_offset();
                    if !send_size(&tx, size) {
                        return;
                    }
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(_)) => return,
                None => break,
            }
        }
        buf.drain(..used);
        if buf.len() > 4096 || tx.is_closed() {
            return;
        }
    }
}

/// Hands a size to the backend without waiting; false once the backend stopped listening.
fn send_size(tx: &mpsc::Sender<TermSize>, size: TermSize) -> bool {
    match tx.try_send(size) {
        Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;

/// Serves one exec/attach over an upgraded WebSocket connection.
pub async fn serve_ws<T>(io: T, protocol: &'static str, opts: Options, call: Call)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let framing = Framing::of(protocol);
    let ws = websocket::accept(io).await;
    let (sink, stream) = ws.split();
    let (out_tx, out_rx) = mpsc::channel(16);
    // The client learns the streams are ready from an empty message on the first output.
    let first = if opts.stdout {
        STDOUT
    } else if opts.stderr {
        STDERR
    } else {
        ERROR
    };
    let _ = out_tx.try_send(framing.encode(first, &[]));
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(8);
    let (resize_tx, resize_rx) = mpsc::channel::<TermSize>(8);
    let mut stdin_tx = opts.stdin.then_some(stdin_tx);
    let resize_tx = opts.tty.then_some(resize_tx);
    let reader = websocket::read_all(stream, framing, move |ch, data| {
        let stdin = match ch {
            STDIN => stdin_tx.clone(),
            RESIZE => {
                if let Some(tx) = &resize_tx {
                    for size in serde_json::Deserializer::from_slice(&data).into_iter() {
                        match size {
                            Ok(size) => {
                                send_size(tx, size);
                            }
                            Err(_) => break,
                        }
                    }
                }
                None
            }
            CLOSE_CHANNEL if framing.close_signal => {
                if data.first() == Some(&STDIN) {
                    stdin_tx = None;
                }
                None
            }
            _ => None,
        };
        async move {
            if let Some(tx) = stdin {
                let _ = tx.send(data).await;
            }
        }
    });
    let io = StreamIo {
        tty: opts.tty,
        stdin: opts
            .stdin
            .then(|| Box::new(ChannelReader::new(stdin_rx)) as _),
        stdout: opts
            .stdout
            .then(|| Box::new(ChannelWriter::new(out_tx.clone(), framing, STDOUT)) as _),
        stderr: opts
            .stderr
            .then(|| Box::new(ChannelWriter::new(out_tx.clone(), framing, STDERR)) as _),
        resize: opts.tty.then_some(resize_rx),
    };
    let app = async move {
        let outcome = call.run(io).await;
        if let Some(text) = outcome.payload(protocol) {
            let _ = out_tx.send(framing.encode(ERROR, text.as_bytes())).await;
        }
        // Dropping the last sender lets the writer close the WebSocket.
    };
    let work = async { tokio::join!(app, websocket::write_all(sink, out_rx)) };
    tokio::pin!(reader, work);
    tokio::select! {
        // The client closed or lost the connection: the backend's future is dropped.
        _ = &mut reader => {}
        _ = &mut work => {
            let _ = tokio::time::timeout(LINGER, reader).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_status_is_what_kubelet_writes() {
        assert_eq!(
            Outcome::Success.status_json(),
            r#"{"metadata":{},"status":"Success"}"#
        );
        let exit = Outcome::ExitCode {
            cmd: vec!["sh".into(), "-c".into(), "exit 3".into()],
            code: 3,
        };
        assert_eq!(
            exit.status_json(),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
        let failed =
            Outcome::Failed("error executing command in container: no such container".into());
        assert_eq!(
            failed.status_json(),
            r#"{"metadata":{},"status":"Failure","message":"Internal error occurred: error executing command in container: no such container","reason":"InternalError","details":{"causes":[{"message":"error executing command in container: no such container"}]},"code":500}"#
        );
    }

    #[test]
    fn older_versions_get_text_and_only_on_failure() {
        let exit = Outcome::ExitCode {
            cmd: vec!["false".into()],
            code: 1,
        };
        assert_eq!(Outcome::Success.payload(V3), None);
        assert_eq!(Outcome::Success.payload(V1), None);
        assert_eq!(
            exit.payload(V2).unwrap(),
            "command terminated with non-zero exit code: error executing command [false], exit \
             code 1"
        );
        assert!(exit.payload(V4).unwrap().starts_with('{'));
        assert!(exit.payload(V5).unwrap().starts_with('{'));
        assert!(exit
            .payload("v4.base64.channel.k8s.io")
            .unwrap()
            .starts_with('{'));
        assert_eq!(exit.payload("base64.channel.k8s.io"), exit.message());
    }
}
