//! The local API the `peapod` CLI talks to: HTTP/1.1 on a root-only unix socket, with
//! Kubernetes API paths and objects, so what the CLI prints with `-o json` is what kubectl
//! would print for the same pod.
//!
//! - `GET /api/v1/pods`: a v1 PodList of every static pod, with status.
//! - `GET /api/v1/namespaces/{ns}/pods`: those of one namespace.
//! - `GET /api/v1/namespaces/{ns}/pods/{name}`: one v1 Pod, or a v1 Status NotFound.
//! - `GET /api/v1/events`, `GET /api/v1/namespaces/{ns}/events`: a v1 EventList, oldest
//!   first; `?fieldSelector=involvedObject.name=NAME` keeps one pod's.
//! - `GET /peapod/v1/manifest-errors`: the manifest directory's errors, one string each.

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use tracing::warn;

use super::Shared;
use crate::cli::status::ApiStatus;

/// Serves the API on `socket` (mode 0600) until the process ends.
pub async fn serve(shared: Arc<Shared>, socket: &Path) -> std::io::Result<()> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "local API: accept");
                    continue;
                }
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(route(&shared, &req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(())
}

fn reply(code: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn status(s: ApiStatus) -> Response<Full<Bytes>> {
    let code = StatusCode::from_u16(s.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    reply(code, serde_json::to_value(s).unwrap_or_default())
}

fn pod_json(p: &Pod) -> serde_json::Value {
    let mut v = serde_json::to_value(p).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("apiVersion".into(), "v1".into());
        o.insert("kind".into(), "Pod".into());
    }
    v
}

fn pod_list(pods: &[Pod]) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "PodList",
        "metadata": {"resourceVersion": ""},
        "items": pods.iter().map(pod_json).collect::<Vec<_>>(),
    })
}

fn event_list(shared: &Shared, ns: Option<&str>, query: Option<&str>) -> Response<Full<Bytes>> {
    // kubectl describe asks with fieldSelector=involvedObject.name=NAME,...; only the name
    // selector is honoured, the rest of a selector is ignored.
    let name = query.into_iter().flat_map(|q| q.split('&')).find_map(|kv| {
        let v = kv.strip_prefix("fieldSelector=")?;
        let v = percent_decode(v);
        v.split(',')
            .find_map(|sel| sel.strip_prefix("involvedObject.name=").map(str::to_string))
    });
    let items: Vec<serde_json::Value> = shared
        .events(ns, name.as_deref())
        .iter()
        .map(|e| {
            let mut v = serde_json::to_value(e).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("apiVersion".into(), "v1".into());
                o.insert("kind".into(), "Event".into());
            }
            v
        })
        .collect();
    reply(
        StatusCode::OK,
        json!({"apiVersion": "v1", "kind": "EventList", "metadata": {"resourceVersion": ""}, "items": items}),
    )
}

/// `%XX` escapes of a query value decoded (`+` is a space in a form-encoded query).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (hex, b[i]) {
            (Some(v), _) => {
                out.push(v);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, c) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn route<B>(shared: &Shared, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET {
        return status(ApiStatus::failure(
            405,
            "MethodNotAllowed",
            format!("{} is not supported on {}", req.method(), req.uri().path()),
        ));
    }
    let parts: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api", "v1", "pods"] => reply(StatusCode::OK, pod_list(&shared.pods())),
        ["api", "v1", "namespaces", ns, "pods"] => {
            let pods: Vec<Pod> = shared
                .pods()
                .into_iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some(*ns))
                .collect();
            reply(StatusCode::OK, pod_list(&pods))
        }
        ["api", "v1", "namespaces", ns, "pods", name] => match shared.pod(ns, name) {
            Some(p) => reply(StatusCode::OK, pod_json(&p)),
            None => status(ApiStatus::pod_not_found(name)),
        },
        ["api", "v1", "events"] => event_list(shared, None, req.uri().query()),
        ["api", "v1", "namespaces", ns, "events"] => {
            event_list(shared, Some(ns), req.uri().query())
        }
        ["peapod", "v1", "manifest-errors"] => {
            reply(StatusCode::OK, json!(shared.manifest_errors()))
        }
        _ => status(ApiStatus::failure(
            404,
            "NotFound",
            format!(
                "the server could not find the requested resource ({})",
                req.uri().path()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(
            super::percent_decode("involvedObject.name%3Dweb%2CinvolvedObject.namespace%3Ddefault"),
            "involvedObject.name=web,involvedObject.namespace=default"
        );
        assert_eq!(super::percent_decode("a+b%2"), "a b%2");
        assert_eq!(super::percent_decode("%zz%41"), "%zzA");
    }
}
