//! The local API the `peapod` CLI talks to: HTTP/1.1 on a root-only unix socket, with
//! Kubernetes API paths and objects, so what the CLI prints with `-o json` is what kubectl
//! would print for the same pod.
//!
//! - `GET /api/v1/pods`: a v1 PodList of every static pod, with status.
//! - `GET /api/v1/namespaces/{ns}/pods`: those of one namespace.
//! - `GET /api/v1/namespaces/{ns}/pods/{name}`: one v1 Pod, or a v1 Status NotFound.
//! - `GET /api/v1/events`, `GET /api/v1/namespaces/{ns}/events`: a v1 EventList, oldest
//!   first; `?fieldSelector=involvedObject.name=NAME` keeps one pod's.
//! - `GET /api/v1/namespaces/{ns}/pods/{name}/log?container=C&previous=true&follow=true&
//!   tailLines=N&timestamps=true`: a container's log as `text/plain`, streamed with follow.
//! - `POST /api/v1/namespaces/{ns}/pods/{name}/exec?container=C&command=..&stdin=true&
//!   tty=true`, upgraded to `peapod-exec`: runs the command, its streams on the connection.
//! - `GET /apis/metrics.k8s.io/v1beta1[/namespaces/{ns}]/pods`: PodMetrics (CPU over a
//!   200 ms window, memory working set) of the pods with running containers.
//! - `GET /peapod/v1/manifest-errors`: the manifest directory's errors, one string each.
//! - `PUT /peapod/v1/manifests/{file}`: the body becomes that manifest once the parser accepts
//!   it (422 otherwise); answers what happened to each object (created/configured/unchanged).
//! - `DELETE /peapod/v1/manifests/{file}`: removes that manifest; answers the objects it held.
//! - `DELETE /api/v1/namespaces/{ns}/{pods|configmaps|secrets}/{name}`: removes the object
//!   from the manifest that defines it (the file goes when nothing else is in it).

// The error of a request is the API's Status, made once per request and sent as it is:
// its size (a few strings) costs nothing worth boxing it for.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use tracing::warn;

use super::logs::{pod_logs, Logs};
use super::manifests::{self, Kind};
use super::remote_exec;
use super::Shared;
use crate::cli::logs::LogOptions;
use crate::cli::status::ApiStatus;

/// Every answer's body: a whole one, or a stream (followed logs).
type Body = UnsyncBoxBody<Bytes, Infallible>;

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
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(route(shared, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Ok(())
}

fn with_type(body: Body, code: StatusCode, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

fn reply(code: StatusCode, body: serde_json::Value) -> Response<Body> {
    let body = Full::new(Bytes::from(body.to_string())).boxed_unsync();
    with_type(body, code, "application/json")
}

fn status(s: ApiStatus) -> Response<Body> {
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

fn event_list(shared: &Shared, ns: Option<&str>, query: Option<&str>) -> Response<Body> {
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

/// A pod's log, as `text/plain`: whole, or streamed while the container runs.
async fn log(shared: Arc<Shared>, ns: &str, name: &str, query: Option<&str>) -> Response<Body> {
    let query = query.map(percent_decode);
    let opts = match LogOptions::from_query(query.as_deref()) {
        Ok(o) => o,
        Err(e) => return status(e),
    };
    let body = match pod_logs(shared, ns, name, opts).await {
        Err(e) => return status(e),
        Ok(Logs::Whole(text)) => Full::new(Bytes::from(text)).boxed_unsync(),
        Ok(Logs::Follow(rx)) => {
            let frames = futures_util::stream::unfold(rx, |mut rx| async move {
                let chunk = rx.recv().await?;
                Some((Ok::<_, Infallible>(Frame::data(chunk)), rx))
            });
            StreamBody::new(frames).boxed_unsync()
        }
    };
    with_type(body, StatusCode::OK, "text/plain")
}

/// Runs a manifest directory edit off the async workers (it reads and fsyncs files).
async fn edit<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiStatus> + Send + 'static,
) -> Result<T, ApiStatus> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ApiStatus::internal(e.to_string())))
}

/// `PUT /peapod/v1/manifests/{file}`: the body, checked, becomes that manifest.
async fn put_manifest(shared: Arc<Shared>, file: String, body: Incoming) -> Response<Body> {
    let limit = crate::manifest::dir::MAX_MANIFEST_BYTES as usize;
    let bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return status(ApiStatus::failure(
                413,
                "RequestEntityTooLarge",
                format!("reading the manifest: {e}"),
            ))
        }
    };
    let dir = shared.manifest_dir.clone();
    match edit(move || manifests::apply(&dir, &file, &bytes)).await {
        Ok(applied) => reply(StatusCode::OK, json!(applied)),
        Err(e) => status(e),
    }
}

/// `DELETE /api/v1/namespaces/{ns}/{pods|configmaps|secrets}/{name}`: the object leaves its
/// manifest; a pod then stops gracefully and goes once it has.
async fn delete_object(
    shared: Arc<Shared>,
    kind: Kind,
    ns: String,
    name: String,
) -> Response<Body> {
    let dir = shared.manifest_dir.clone();
    let (n, nm) = (ns.clone(), name.clone());
    let res = edit(move || manifests::delete_object(&dir, kind, &n, &nm)).await;
    let pod = shared.pod(&ns, &name).filter(|_| kind == Kind::Pod);
    match (res, pod) {
        (Ok(_), Some(p)) => reply(StatusCode::OK, pod_json(&p)),
        (Ok(_), None) => reply(
            StatusCode::OK,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success",
                   "details": {"name": name, "kind": kind.resource()}}),
        ),
        // In no manifest but still shown: either already going (deleting it again is no
        // error, as with the API server), or kept from a manifest that no longer parses (the
        // manager keeps such a file's pods), which only fixing that file changes.
        (Err(e), Some(p)) if e.code == 404 => {
            if p.metadata.deletion_timestamp.is_some() {
                reply(StatusCode::OK, pod_json(&p))
            } else {
                status(ApiStatus::failure(
                    409,
                    "Conflict",
                    format!(
                        "pods \"{name}\" is defined by a manifest that does not parse \
                         (see peapod get pods): fix or remove that file"
                    ),
                ))
            }
        }
        (Err(e), _) => status(e),
    }
}

/// `POST .../pods/{name}/exec?container=C&command=..&stdin=true&tty=true` with `Upgrade:
/// peapod-exec`: 101, then the exec's streams on the connection.
fn exec(shared: Arc<Shared>, ns: &str, name: &str, mut req: Request<Incoming>) -> Response<Body> {
    let upgrade = req
        .headers()
        .get(hyper::header::UPGRADE)
        .and_then(|v| v.to_str().ok());
    if upgrade != Some(crate::cli::exec::PROTOCOL) {
        return status(ApiStatus::bad_request(format!(
            "exec needs the connection upgraded to {}",
            crate::cli::exec::PROTOCOL
        )));
    }
    let opts = match crate::cli::exec::ExecOptions::from_query(req.uri().query(), percent_decode) {
        Ok(o) => o,
        Err(e) => return status(e),
    };
    let id = match remote_exec::target(&shared, ns, name, &opts) {
        Ok(id) => id,
        Err(e) => return status(e),
    };
    tokio::spawn(remote_exec::run(
        shared,
        id,
        opts,
        hyper::upgrade::on(&mut req),
    ));
    let mut r = Response::new(Full::new(Bytes::new()).boxed_unsync());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    r.headers_mut().insert(
        hyper::header::UPGRADE,
        hyper::header::HeaderValue::from_static(crate::cli::exec::PROTOCOL),
    );
    r
}

async fn route(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let method = req.method().clone();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (&method, parts.as_slice()) {
        (&Method::GET, ["api", "v1", "namespaces", ns, "pods", name, "log"]) => {
            return log(shared, ns, name, query.as_deref()).await;
        }
        (&Method::GET, ["apis", "metrics.k8s.io", "v1beta1", "pods"]) => {
            return reply(
                StatusCode::OK,
                super::metrics::pod_metrics(&shared, None).await,
            );
        }
        (&Method::GET, ["apis", "metrics.k8s.io", "v1beta1", "namespaces", ns, "pods"]) => {
            let ns = ns.to_string();
            return reply(
                StatusCode::OK,
                super::metrics::pod_metrics(&shared, Some(&ns)).await,
            );
        }
        (&Method::POST, ["api", "v1", "namespaces", ns, "pods", name, "exec"]) => {
            return exec(shared, ns, name, req);
        }
        (&Method::PUT, ["peapod", "v1", "manifests", file]) => {
            let file = percent_decode(file);
            return put_manifest(shared, file, req.into_body()).await;
        }
        (&Method::DELETE, ["peapod", "v1", "manifests", file]) => {
            let (dir, file) = (shared.manifest_dir.clone(), percent_decode(file));
            return match edit(move || manifests::delete_file(&dir, &file)).await {
                Ok(gone) => reply(StatusCode::OK, json!(gone)),
                Err(e) => status(e),
            };
        }
        (&Method::DELETE, ["api", "v1", "namespaces", ns, resource, name]) => {
            if let Some(kind) = Kind::from_resource(resource) {
                return delete_object(shared, kind, ns.to_string(), name.to_string()).await;
            }
        }
        _ => {}
    }
    if req.method() != Method::GET {
        return status(ApiStatus::failure(
            405,
            "MethodNotAllowed",
            format!("{} is not supported on {}", req.method(), req.uri().path()),
        ));
    }
    let shared = &*shared;
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
        ["api", "v1", "events"] => event_list(shared, None, query.as_deref()),
        ["api", "v1", "namespaces", ns, "events"] => event_list(shared, Some(ns), query.as_deref()),
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
