//! The streaming server for Exec, Attach and PortForward: the CRI RPCs only hand out a URL
//! (`get_exec` and friends), and the client (kubelet, crictl) then connects there and speaks
//! Kubernetes' remote-command or port-forward protocol, over SPDY/3.1 or WebSocket.
//!
//! ```text
//!  CRI Exec ──▶ Server::get_exec ──▶ tokens (single use, 1 min) ──▶ http://127.0.0.1:P/exec/T
//!  client ──HTTP/1.1 upgrade──▶ server.rs ──▶ remotecommand.rs ─┬─ spdy/ (SPDY/3.1 session)
//!                                        └──▶ portforward.rs  ──┴─ websocket.rs (channels)
//!                                                   │
//!                                                   ▼
//!                                  Backend (the engine: exec, attach, port_forward)
//! ```
//!
//! The protocol side lives here; what runs is behind [`Backend`], implemented by the engine.
//! Like kubelet's server (k8s.io/kubelet/pkg/cri/streaming), which containerd and CRI-O embed,
//! it has no authentication besides the tokens, so it listens on loopback by default.

mod portforward;
mod remotecommand;
mod server;
pub mod spdy;
mod tokens;
mod websocket;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::api::{AttachRequest, ExecRequest, PortForwardRequest};
use tokens::{Pending, SystemClock, Tokens};

pub use tokens::{MAX_TOKENS, TOKEN_TTL};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A bidirectional byte stream (a forwarded port's connection).
pub trait AsyncReadWrite: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncReadWrite for T {}

/// A terminal size from the client's resize stream (JSON `{"Width":80,"Height":24}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct TermSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// The client's end of an exec or attach: each present only if the request asked for it.
pub struct StreamIo {
    /// Whether the process gets a terminal (then stdout carries both output streams and
    /// `stderr` is None).
    pub tty: bool,
    /// What the client types or pipes; EOF when the client closes its stdin.
    pub stdin: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub stdout: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    pub stderr: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Terminal sizes, with tty only (not every protocol version carries them). Events may
    /// be dropped when the backend does not keep up; the first is the initial size.
    pub resize: Option<tokio::sync::mpsc::Receiver<TermSize>>,
}

/// Why the backend could not do what was asked; the client sees the message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

impl From<std::io::Error> for BackendError {
    fn from(e: std::io::Error) -> Self {
        BackendError(e.to_string())
    }
}

/// What the streaming server needs from the runtime (implemented by the engine).
///
/// The server drops a returned future before it resolves when the client goes away (closes
/// or loses the connection): dropping an exec future must end the process it started, as
/// kubelet's runtimes do; dropping an attach future detaches; dropping a port-forward
/// connection closes it.
pub trait Backend: Send + Sync + 'static {
    /// Runs `cmd` in container `container_id` with `io`; resolves to the exit code once the
    /// process has ended and its output is written (stdout and stderr dropped or shut down).
    fn exec(
        &self,
        container_id: String,
        cmd: Vec<String>,
        io: StreamIo,
    ) -> BoxFuture<'static, Result<i32, BackendError>>;

    /// Connects `io` to the running container's main process until it exits or the client
    /// detaches. As kubelet does, the container's exit code is not reported to the client.
    fn attach(
        &self,
        container_id: String,
        io: StreamIo,
    ) -> BoxFuture<'static, Result<(), BackendError>>;

    /// Connects to localhost:`port` inside the pod's network namespace.
    fn port_forward(
        &self,
        pod_sandbox_id: String,
        port: u16,
    ) -> BoxFuture<'static, Result<Box<dyn AsyncReadWrite>, BackendError>>;
}

/// A request the streaming server cannot take; maps to a gRPC status in `cri`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    /// INVALID_ARGUMENT.
    #[error("{0}")]
    Invalid(&'static str),
    /// RESOURCE_EXHAUSTED.
    #[error(transparent)]
    TooMany(#[from] tokens::TooMany),
}

/// The running streaming server. Dropping it stops listening and ends every connection.
pub struct Server {
    addr: SocketAddr,
    tokens: Arc<Tokens>,
    _task: server::AbortOnDrop,
}

impl Server {
    /// Listens on `addr` (port 0: any free port) and serves until dropped.
    pub async fn start(addr: SocketAddr, backend: Arc<dyn Backend>) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let tokens = Arc::new(Tokens::new(Box::new(SystemClock)));
        let task = server::spawn(listener, tokens.clone(), backend);
        tracing::info!(%addr, "serving exec/attach/port-forward streams");
        Ok(Server {
            addr,
            tokens,
            _task: task,
        })
    }

    /// The address listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL for an Exec RPC.
    pub fn get_exec(&self, req: &ExecRequest) -> Result<String, RequestError> {
        if req.container_id.is_empty() {
            return Err(RequestError::Invalid("container_id: is required"));
        }
        if req.cmd.is_empty() {
            return Err(RequestError::Invalid("cmd: is required"));
        }
        check_streams(req.stdin, req.stdout, req.stderr, req.tty)?;
        self.url("exec", Pending::Exec(req.clone()))
    }

    /// The URL for an Attach RPC.
    pub fn get_attach(&self, req: &AttachRequest) -> Result<String, RequestError> {
        if req.container_id.is_empty() {
            return Err(RequestError::Invalid("container_id: is required"));
        }
        check_streams(req.stdin, req.stdout, req.stderr, req.tty)?;
        self.url("attach", Pending::Attach(req.clone()))
    }

    /// The URL for a PortForward RPC.
    pub fn get_port_forward(&self, req: &PortForwardRequest) -> Result<String, RequestError> {
        if req.pod_sandbox_id.is_empty() {
            return Err(RequestError::Invalid("pod_sandbox_id: is required"));
        }
        if req.port.iter().any(|&p| !(1..=65535).contains(&p)) {
            return Err(RequestError::Invalid("port: must be between 1 and 65535"));
        }
        self.url("portforward", Pending::PortForward(req.clone()))
    }

    fn url(&self, kind: &str, req: Pending) -> Result<String, RequestError> {
        let token = self.tokens.insert(req)?;
        Ok(format!("http://{}/{kind}/{token}", url_host(self.addr)))
    }
}

/// The same checks kubelet's server makes (its error texts, too).
fn check_streams(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Result<(), RequestError> {
    if tty && stderr {
        // With a terminal both outputs arrive on one stream.
        return Err(RequestError::Invalid("tty and stderr cannot both be true"));
    }
    if !stdin && !stdout && !stderr {
        return Err(RequestError::Invalid(
            "one of stdin, stdout, or stderr must be set",
        ));
    }
    Ok(())
}

/// Where clients connect: the listening address, with an unspecified one (0.0.0.0, ::)
/// replaced by loopback, which the node's kubelet and crictl can always reach.
fn url_host(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port()).to_string()
}
