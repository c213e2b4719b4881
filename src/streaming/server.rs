//! HTTP/1.1 front of the streaming server: routes `/exec/<token>`, `/attach/<token>` and
//! `/portforward/<token>` (GET or POST, as kubelet's), takes the token, and upgrades the
//! connection to SPDY/3.1 or WebSocket, whichever the client asks for.
//!
//! Every connection is one task, upgraded protocol included, owned by the listener's task:
//! dropping the [`super::Server`] aborts them all.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::tokens::{Pending, Tokens};
use super::{portforward, remotecommand, Backend, BoxFuture};

/// Connections served at once; more are closed as they arrive.
const MAX_CONNECTIONS: usize = 256;
/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) type Body = Full<Bytes>;

/// Aborts a task when dropped.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) fn spawn(
    listener: TcpListener,
    tokens: Arc<Tokens>,
    backend: Arc<dyn Backend>,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "streaming server: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if conns.len() >= MAX_CONNECTIONS {
                tracing::warn!(%peer, "streaming server: too many connections; closing one");
                continue;
            }
            let _ = tcp.set_nodelay(true);
            conns.spawn(connection(tcp, tokens.clone(), backend.clone()));
        }
    }))
}

/// The protocol an upgrade response promised, run once hyper hands the connection over.
type Upgraded = BoxFuture<'static, ()>;
type Slot = Arc<Mutex<Option<Upgraded>>>;

async fn connection(tcp: tokio::net::TcpStream, tokens: Arc<Tokens>, backend: Arc<dyn Backend>) {
    let slot: Slot = Arc::new(Mutex::new(None));
    let svc = {
        let slot = slot.clone();
        hyper::service::service_fn(move |req| {
            let resp = route(req, &tokens, &backend, &slot);
            async move { Ok::<_, Infallible>(resp) }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(tcp), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "streaming connection");
    }
    let upgraded = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(run) = upgraded {
        run.await;
    }
}

fn route(
    req: Request<hyper::body::Incoming>,
    tokens: &Tokens,
    backend: &Arc<dyn Backend>,
    slot: &Slot,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (kind, token) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !matches!(kind, "exec" | "attach" | "portforward") || token.is_empty() || token.contains('/')
    {
        return text(StatusCode::NOT_FOUND, "404 page not found\n");
    }
    if req.method() != Method::GET && req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and POST\n");
    }
    let pending = match (kind, tokens.take(token)) {
        (k, Some(p)) if k == kind_of(&p) => p,
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                "streaming token not found: it is unknown, already used, or expired \
                 (tokens are valid for one minute after the RPC that issued them)\n",
            )
        }
    };
    let ws = is_websocket(req.headers());
    let backend = backend.clone();
    let (resp, run): (Response<Body>, Option<Upgraded>) = match pending {
        Pending::Exec(r) => {
            let opts = remotecommand::Options {
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                tty: r.tty,
            };
            let call = remotecommand::Call::Exec {
                container_id: r.container_id,
                cmd: r.cmd,
                backend,
            };
            remotecommand::upgrade(req, ws, opts, call)
        }
        Pending::Attach(r) => {
            let opts = remotecommand::Options {
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                tty: r.tty,
            };
            let call = remotecommand::Call::Attach {
                container_id: r.container_id,
                backend,
            };
            remotecommand::upgrade(req, ws, opts, call)
        }
        Pending::PortForward(r) => portforward::upgrade(req, ws, r, backend),
    };
    if let Some(run) = run {
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(run);
    }
    resp
}

fn kind_of(p: &Pending) -> &'static str {
    match p {
        Pending::Exec(_) => "exec",
        Pending::Attach(_) => "attach",
        Pending::PortForward(_) => "portforward",
    }
}

pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Whether `name` lists `token` (comma-separated, case-insensitive), as in
/// `Connection: keep-alive, Upgrade`.
fn has_token(h: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Every value of a header that may be repeated or comma-separated, in order.
pub(crate) fn list(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

pub(crate) fn is_websocket(h: &HeaderMap) -> bool {
    has_token(h, header::UPGRADE, "websocket") && has_token(h, header::CONNECTION, "upgrade")
}

/// The first protocol the client offers that the server supports (the client lists its
/// preference first); None when they share none.
pub(crate) fn negotiate<'a>(offered: &[String], supported: &[&'a str]) -> Option<&'a str> {
    offered
        .iter()
        .find_map(|o| supported.iter().find(|s| **s == o.as_str()).copied())
}

pub(crate) const SPDY: &str = "SPDY/3.1";
pub(crate) const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
const ACCEPTED_HEADER: &str = "x-accepted-stream-protocol-versions";

/// The SPDY/3.1 upgrade with `X-Stream-Protocol-Version` negotiation, as kubelet's
/// (apimachinery's httpstream): no version offered falls back to `fallback`, an offer with
/// nothing in common is 403 Forbidden listing what the server accepts. Returns the 101
/// response and the protocol chosen, or the error response.
// The error is the response to send, made once per request: boxing it buys nothing.
#[allow(clippy::result_large_err)]
pub(crate) fn spdy_handshake(
    req: &Request<hyper::body::Incoming>,
    supported: &[&'static str],
    fallback: &'static str,
) -> Result<(Response<Body>, &'static str), Response<Body>> {
    let h = req.headers();
    if !has_token(h, header::CONNECTION, "upgrade") || !has_token(h, header::UPGRADE, SPDY) {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request \
             (want Connection: Upgrade and Upgrade: SPDY/3.1, or a WebSocket upgrade)\n",
        ));
    }
    let offered = list(h, PROTOCOL_HEADER);
    let chosen = if offered.is_empty() {
        fallback
    } else {
        match negotiate(&offered, supported) {
            Some(p) => p,
            None => {
                let mut r = text(
                    StatusCode::FORBIDDEN,
                    format!(
                        "unable to upgrade: unable to negotiate protocol: client supports \
                         {offered:?}, server accepts {supported:?}\n"
                    ),
                );
                for p in supported {
                    r.headers_mut()
                        .append(ACCEPTED_HEADER, HeaderValue::from_static(p));
                }
                return Err(r);
            }
        }
    };
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hm = r.headers_mut();
    hm.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    hm.insert(header::UPGRADE, HeaderValue::from_static(SPDY));
    if !offered.is_empty() {
        hm.insert(PROTOCOL_HEADER, HeaderValue::from_static(chosen));
    }
    Ok((r, chosen))
}

/// The WebSocket upgrade (RFC 6455) with subprotocol negotiation: none offered selects ""
/// (the plain `channel.k8s.io` framing, as kubelet); an offer with nothing in common is 403.
#[allow(clippy::result_large_err)]
pub(crate) fn ws_handshake(
    req: &Request<hyper::body::Incoming>,
    supported: &[&'static str],
) -> Result<(Response<Body>, &'static str), Response<Body>> {
    let h = req.headers();
    let version_ok = h
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    if !version_ok {
        let mut r = text(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported WebSocket version (want 13)\n",
        );
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Err(r);
    }
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n"));
    };
    let offered = list(h, "sec-websocket-protocol");
    let chosen = if offered.is_empty() {
        ""
    } else {
        match negotiate(&offered, supported) {
            Some(p) => p,
            None => {
                return Err(text(
                    StatusCode::FORBIDDEN,
                    format!(
                        "requested protocol(s) are not supported: {offered:?}; supports \
                         {supported:?}\n"
                    ),
                ))
            }
        }
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hm = r.headers_mut();
    hm.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    hm.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    hm.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    if !chosen.is_empty() {
        hm.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(chosen),
        );
    }
    Ok((r, chosen))
}

/// The upgraded connection, once hyper has sent the 101 response.
pub(crate) async fn upgraded(
    req: Request<hyper::body::Incoming>,
) -> Option<TokioIo<hyper::upgrade::Upgraded>> {
    match hyper::upgrade::on(req).await {
        Ok(u) => Some(TokioIo::new(u)),
        Err(e) => {
            tracing::debug!(error = %e, "streaming upgrade failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_takes_the_clients_first_supported_choice() {
        let sup = ["v4.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io"];
        let offer = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            negotiate(&offer(&["v5.channel.k8s.io", "v3.channel.k8s.io"]), &sup),
            Some("v3.channel.k8s.io")
        );
        assert_eq!(
            negotiate(&offer(&["channel.k8s.io", "v4.channel.k8s.io"]), &sup),
            Some("channel.k8s.io"),
            "the client's order wins"
        );
        assert_eq!(negotiate(&offer(&["v9.channel.k8s.io"]), &sup), None);
        assert_eq!(negotiate(&[], &sup), None);
    }

    #[test]
    fn header_lists_split_on_commas_and_repeat() {
        let mut h = HeaderMap::new();
        h.append(
            PROTOCOL_HEADER,
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        h.append(
            PROTOCOL_HEADER,
            HeaderValue::from_static(" v3.channel.k8s.io , v2.channel.k8s.io"),
        );
        assert_eq!(
            list(&h, PROTOCOL_HEADER),
            [
                "v4.channel.k8s.io",
                "v3.channel.k8s.io",
                "v2.channel.k8s.io"
            ]
        );
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        assert!(is_websocket(&h));
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(!is_websocket(&h));
        assert!(has_token(&h, header::UPGRADE, SPDY));
    }
}
