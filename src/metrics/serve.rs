//! The `/metrics` endpoint: plain HTTP/1.1 on `metrics_address`, as Prometheus scrapes it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::pod::Engine;

#[derive(Debug, thiserror::Error)]
#[error("metrics endpoint on {addr}: {source}")]
pub struct ServeError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Binds `addr` and serves scrapes on a task of its own until the process ends. The counts
/// of sandboxes, containers and monitors are taken from `engine` at each scrape.
pub async fn serve(addr: SocketAddr, engine: Arc<Engine>) -> Result<SocketAddr, ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError { addr, source })?;
    tracing::info!(address = %bound, "serving metrics");
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a metrics connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let engine = engine.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let engine = engine.clone();
                    async move { Ok::<_, Infallible>(answer(&engine, &req)) }
                });
                // A scraper that hangs up mid-answer is no concern of ours.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(bound)
}

fn answer<B>(engine: &Engine, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "only /metrics is served here\n");
    }
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
    }
    refresh(engine);
    let m = super::global();
    let openmetrics = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let (body, ctype) = if openmetrics {
        (
            m.encode_openmetrics(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (m.encode_text(), "text/plain; version=0.0.4; charset=utf-8")
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, ctype.parse().unwrap());
    r
}

fn plain(code: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = code;
    r
}

/// The gauges that are counts of what the engine holds, taken now.
fn refresh(engine: &Engine) {
    let m = super::global();
    let c = engine.counts();
    super::Metrics::set_states(
        &m.sandboxes,
        &[
            ("ready", c.sandboxes_ready),
            ("notready", c.sandboxes_not_ready),
        ],
    );
    super::Metrics::set_states(
        &m.containers,
        &[
            ("created", c.containers_created),
            ("running", c.containers_running),
            ("exited", c.containers_exited),
            ("unknown", c.containers_unknown),
        ],
    );
    m.monitors.set(c.monitors);
}
