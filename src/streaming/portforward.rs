//! PortForward, as kubelet's server (k8s.io/kubelet/pkg/cri/streaming/portforward) speaks it.
//!
//! SPDY (`portforward.k8s.io`): for each forwarded connection the client opens an `error`
//! and a `data` stream, both with headers `port` and `requestID`; once both are there the
//! backend connects to the port inside the pod and bytes flow both ways on the data stream.
//! A failure is reported on the error stream as kubelet does, JSON
//! `{"closeConnection":..,"message":..}`; a pair incomplete after
//! [`STREAM_CREATION_TIMEOUT`] gets a plain timeout message.
//!
//! WebSocket (`v4.channel.k8s.io`, `v4.base64.channel.k8s.io`, or none): the ports come from
//! the URL query (`?port=80&port=443` or `?port=80,443`), else from the CRI request. Port
//! number i gets channels 2i (data) and 2i+1 (error); the first message on each carries the
//! port as 2 bytes little-endian. One connection per port; when every port's connection
//! has ended the WebSocket is closed.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::remotecommand::{LINGER, STREAM_CREATION_TIMEOUT};
use super::server::{self, Body};
use super::spdy::rst;
use super::spdy::session::{Session, Stream};
use super::websocket::{self, ChannelWriter, Framing};
use super::{AsyncReadWrite, Backend, BackendError, BoxFuture};
use crate::api::PortForwardRequest;

pub const PROTOCOL: &str = "portforward.k8s.io";
const WS_PROTOCOLS: &[&str] = &["v4.channel.k8s.io", "v4.base64.channel.k8s.io"];
/// Forwarded connections (stream pairs) open at once over one SPDY session.
const MAX_PAIRS: usize = 128;
/// Ports one WebSocket request may forward.
const MAX_WS_PORTS: usize = 32;

/// The response to a port-forward request, and what runs on the upgraded connection.
pub fn upgrade(
    req: Request<hyper::body::Incoming>,
    ws: bool,
    pf: PortForwardRequest,
    backend: Arc<dyn Backend>,
) -> (Response<Body>, Option<BoxFuture<'static, ()>>) {
    let pod = pf.pod_sandbox_id.clone();
    if !ws {
        return match server::spdy_handshake(&req, &[PROTOCOL], PROTOCOL) {
            Err(resp) => (resp, None),
            Ok((resp, _)) => (
                resp,
                Some(Box::pin(async move {
                    if let Some(io) = server::upgraded(req).await {
                        serve_spdy(io, pod, backend).await;
                    }
                })),
            ),
        };
    }
    let ports = match query_ports(req.uri().query()) {
        Ok(p) if p.is_empty() => pf
            .port
            .iter()
            .filter_map(|&p| u16::try_from(p).ok())
            .collect(),
        Ok(p) => p,
        Err(e) => return (server::text(StatusCode::BAD_REQUEST, e + "\n"), None),
    };
    if ports.is_empty() {
        return (
            server::text(
                StatusCode::BAD_REQUEST,
                "query parameter \"port\" is required\n",
            ),
            None,
        );
    }
    if ports.len() > MAX_WS_PORTS {
        return (
            server::text(
                StatusCode::BAD_REQUEST,
                format!("at most {MAX_WS_PORTS} ports per request\n"),
            ),
            None,
        );
    }
    match server::ws_handshake(&req, WS_PROTOCOLS) {
        Err(resp) => (resp, None),
        Ok((resp, protocol)) => (
            resp,
            Some(Box::pin(async move {
                if let Some(io) = server::upgraded(req).await {
                    serve_ws(io, protocol, pod, ports, backend).await;
                }
            })),
        ),
    }
}

/// The `port` query parameters: repeated and/or comma-separated, each 1..=65535.
fn query_ports(query: Option<&str>) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != "port" {
            continue;
        }
        if v.is_empty() {
            return Err("query parameter \"port\" cannot be empty".into());
        }
        for p in v.split(',').flat_map(|p| p.split("%2C")) {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => ports.push(n),
                _ => return Err(format!("unable to parse {p:?} as a port")),
            }
        }
    }
    Ok(ports)
}

/// A parsed `port` header (kubelet's checks).
fn stream_port(h: &super::spdy::Headers) -> Result<u16, String> {
    let p = h.get("port").unwrap_or("");
    if p.is_empty() {
        return Err("\"port\" header is required".into());
    }
    match p.parse::<u16>() {
        Ok(0) => Err(format!("port {p:?} must be > 0")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("unable to parse {p:?} as a port")),
    }
}

#[derive(Default)]
struct Pair {
    error: Option<Stream>,
    data: Option<Stream>,
    port: u16,
    deadline: Option<Instant>,
}

/// Serves port forwarding over an upgraded SPDY connection until the client closes it.
pub async fn serve_spdy<T>(io: T, pod: String, backend: Arc<dyn Backend>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (_session, mut acceptor, driver) = Session::new(io);
    let app = async {
        let mut pairs: HashMap<String, Pair> = HashMap::new();
        let mut forwards = JoinSet::new();
        loop {
            let next_deadline = pairs.values().filter_map(|p| p.deadline).min();
            let incoming = tokio::select! {
                inc = acceptor.accept() => match inc {
                    Some(inc) => inc,
                    None => return,
                },
                Some(_) = forwards.join_next(), if !forwards.is_empty() => continue,
                _ = tokio::time::sleep_until(next_deadline.unwrap_or_else(Instant::now)),
                    if next_deadline.is_some() => {
                    expire(&mut pairs).await;
                    continue;
                }
            };
            let h = &incoming.headers;
            let kind = h.get("streamtype").unwrap_or("").to_string();
            let port = match stream_port(h) {
                Ok(p) if kind == "error" || kind == "data" => p,
                Ok(_) => {
                    tracing::debug!(stream_type = %kind, "port-forward: invalid stream type");
                    incoming.stream.reset(rst::CANCEL);
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "port-forward: bad stream");
                    incoming.stream.reset(rst::CANCEL);
                    continue;
                }
            };
            let id = match h.get("requestid") {
                Some(id) if !id.is_empty() => id.to_string(),
                // Clients before request IDs open error then data with consecutive IDs.
                _ if kind == "error" => incoming.stream.id().to_string(),
                _ => incoming.stream.id().saturating_sub(2).to_string(),
            };
            if !pairs.contains_key(&id) && pairs.len() + forwards.len() >= MAX_PAIRS {
                incoming.stream.reset(rst::REFUSED_STREAM);
                continue;
            }
            incoming.stream.reply();
            let pair = pairs.entry(id.clone()).or_insert_with(|| Pair {
                port,
                deadline: Some(Instant::now() + STREAM_CREATION_TIMEOUT),
                ..Pair::default()
            });
            let slot = if kind == "error" {
                &mut pair.error
            } else {
                &mut pair.data
            };
            if slot.is_some() {
                let msg = format!(
                    "error processing stream for request {id}: {kind} stream already assigned"
                );
                tracing::debug!("{msg}");
                incoming.stream.reset(rst::STREAM_IN_USE);
                if let Some(e) = pair.error.as_mut() {
                    let _ = e.write_all(msg.as_bytes()).await;
                }
                continue;
            }
            *slot = Some(incoming.stream);
            if pair.error.is_some() && pair.data.is_some() {
                let p = pairs.remove(&id).expect("just seen");
                let (Some(error), Some(data)) = (p.error, p.data) else {
                    unreachable!("both present");
                };
                forwards.spawn(forward(
                    backend.clone(),
                    pod.clone(),
                    p.port,
                    id,
                    error,
                    data,
                ));
            }
        }
    };
    tokio::pin!(driver);
    tokio::select! {
        _ = &mut driver => {}
        _ = app => {
            let _ = tokio::time::timeout(LINGER, driver).await;
        }
    }
}

/// Ends the pairs whose second stream never came.
async fn expire(pairs: &mut HashMap<String, Pair>) {
    let now = Instant::now();
    let late: Vec<String> = pairs
        .iter()
        .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now))
        .map(|(id, _)| id.clone())
        .collect();
    for id in late {
        let p = pairs.remove(&id).expect("listed");
        tracing::debug!(request = %id, "port-forward: timed out waiting for streams");
        if let Some(mut e) = p.error {
            let _ = e
                .write_all(format!("(request={id}) timed out waiting for streams").as_bytes())
                .await;
            let _ = e.shutdown().await;
        }
    }
}

/// kubelet's error-stream message for a port-forward failure.
#[derive(serde::Serialize)]
struct ErrResponse {
    #[serde(rename = "closeConnection", skip_serializing_if = "std::ops::Not::not")]
    close_connection: bool,
    message: String,
}

/// One forwarded connection over a stream pair.
async fn forward(
    backend: Arc<dyn Backend>,
    pod: String,
    port: u16,
    id: String,
    mut error: Stream,
    data: Stream,
) {
    let result = match backend.port_forward(pod.clone(), port).await {
        Err(e) => Err((true, e.to_string())),
        Ok(conn) => {
            let (mut from_client, mut to_client) = data.into_split();
            pump(conn, &mut from_client, &mut to_client)
                .await
                .map_err(|e| {
                    // The target resetting or not reading is that connection's end, not the
                    // whole forward's (kubelet keeps the connection in both cases).
                    let keep = matches!(
                        e.kind(),
                        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                    );
                    (!keep, e.to_string())
                })
        }
    };
    if let Err((close_connection, e)) = result {
        let message = format!("error forwarding port {port} to pod {pod}: {e}");
        tracing::debug!(request = %id, "{message}");
        let mut json = serde_json::to_string(&ErrResponse {
            close_connection,
            message,
        })
        .expect("serializes");
        json.push('\n');
        let _ = error.write_all(json.as_bytes()).await;
    }
    let _ = error.shutdown().await;
}

/// Copies both ways until the target's side ends (its output delivered, then FIN), the
/// client's input having been passed on until then; an error in either direction ends both.
async fn pump<R, W>(
    conn: Box<dyn AsyncReadWrite>,
    from_client: &mut R,
    to_client: &mut W,
) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(conn);
    let up = async {
        tokio::io::copy(from_client, &mut cw).await?;
        cw.shutdown().await
    };
    let down = async {
        tokio::io::copy(&mut cr, to_client).await?;
        to_client.shutdown().await
    };
    tokio::pin!(up, down);
    let mut up_done = false;
    loop {
        tokio::select! {
            r = &mut up, if !up_done => {
                r?;
                up_done = true;
            }
            r = &mut down => return r,
        }
    }
}

/// Serves port forwarding over an upgraded WebSocket connection.
pub async fn serve_ws<T>(
    io: T,
    protocol: &'static str,
    pod: String,
    ports: Vec<u16>,
    backend: Arc<dyn Backend>,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let framing = Framing::of(protocol);
    let ws = websocket::accept(io).await;
    let (sink, stream) = ws.split();
    // Room for the port announcements (two per port) before the writer runs.
    let (out_tx, out_rx) = mpsc::channel(16 + 2 * ports.len());
    let mut inputs = Vec::new();
    let mut forwards = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        let (data_ch, err_ch) = ((2 * i) as u8, (2 * i + 1) as u8);
        for ch in [data_ch, err_ch] {
            let _ = out_tx.try_send(framing.encode(ch, &port.to_le_bytes()));
        }
        let (tx, rx) = mpsc::channel::<Bytes>(8);
        inputs.push(tx);
        let out = out_tx.clone();
        let backend = backend.clone();
        let pod = pod.clone();
        forwards.push(async move {
            let mut to_client = ChannelWriter::new(out.clone(), framing, data_ch);
            let mut from_client = websocket::ChannelReader::new(rx);
            let result = match backend.port_forward(pod.clone(), port).await {
                Err(BackendError(e)) => Err(e),
                Ok(conn) => pump(conn, &mut from_client, &mut to_client)
                    .await
                    .map_err(|e| e.to_string()),
            };
            if let Err(e) = result {
                let msg = format!("error forwarding port {port} to pod {pod}: {e}");
                tracing::debug!("{msg}");
                let _ = out.send(framing.encode(err_ch, msg.as_bytes())).await;
            }
        });
    }
    drop(out_tx);
    let reader = websocket::read_all(stream, framing, |ch, data| {
        let tx = ch
            .is_multiple_of(2)
            .then(|| inputs.get(usize::from(ch / 2)).cloned())
            .flatten();
        async move {
            if let Some(tx) = tx {
                let _ = tx.send(data).await;
            }
        }
    });
    let work = async {
        tokio::join!(
            futures_util::future::join_all(forwards),
            websocket::write_all(sink, out_rx)
        )
    };
    tokio::pin!(reader, work);
    tokio::select! {
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
    fn ports_come_from_the_query() {
        assert_eq!(query_ports(Some("port=80")), Ok(vec![80]));
        assert_eq!(
            query_ports(Some("port=80&port=443,8080&x=1")),
            Ok(vec![80, 443, 8080])
        );
        assert_eq!(query_ports(Some("port=80%2C81")), Ok(vec![80, 81]));
        assert_eq!(query_ports(None), Ok(vec![]));
        assert!(query_ports(Some("port=")).is_err());
        assert!(query_ports(Some("port=0")).is_err());
        assert!(query_ports(Some("port=70000")).is_err());
        assert!(query_ports(Some("port=http")).is_err());
    }

    #[test]
    fn stream_headers_are_checked_like_kubelet() {
        use super::super::spdy::Headers;
        assert_eq!(
            stream_port(&Headers::from_pairs([("port", "8080")])),
            Ok(8080)
        );
        assert!(stream_port(&Headers::default()).is_err());
        assert!(stream_port(&Headers::from_pairs([("port", "0")])).is_err());
        assert!(stream_port(&Headers::from_pairs([("port", "x")])).is_err());
    }

    #[test]
    fn error_response_is_kubelets_json() {
        let r = ErrResponse {
            close_connection: true,
            message: "boom".into(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"closeConnection":true,"message":"boom"}"#
        );
        let r = ErrResponse {
            close_connection: false,
            message: "reset".into(),
        };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"message":"reset"}"#);
    }
}
