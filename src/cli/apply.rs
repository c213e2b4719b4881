//! `peapod apply -f FILE`, `peapod delete -f FILE` and `peapod delete pod NAME`: the daemon
//! edits its manifest directory; the CLI prints kubectl's lines and, as kubectl's default
//! `--wait`, returns from a delete once the pod is gone.

// The error of a request is the API's Status, made once per request and sent as it is:
// its size (a few strings) costs nothing worth boxing it for.
#![allow(clippy::result_large_err)]

use std::path::Path;
use std::time::{Duration, Instant};

use hyper::Method;

use super::client::{self, ClientError};
use super::status::ApiStatus;
use crate::manifest::{self, Object};
use crate::staticpods::manifests::{Action, Applied};

/// kubectl's line for one applied object: `pod/web created`.
pub fn applied_line(a: &Applied) -> String {
    let verb = match a.action {
        Action::Created => "created",
        Action::Configured => "configured",
        Action::Unchanged => "unchanged",
    };
    format!("{}/{} {verb}", a.kind, a.name)
}

/// kubectl's line for a deleted object: `pod "web" deleted`.
pub fn deleted_line(kind: &str, name: &str) -> String {
    format!("{kind} \"{name}\" deleted")
}

/// Why the CLI could not do it.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("error: the path \"{path}\" cannot be read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("error: {0}")]
    Invalid(String),
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("error: timed out waiting for the condition on pods/{0}")]
    Timeout(String),
    /// Some objects failed; their errors were printed already.
    #[error("")]
    Partial,
}

fn file_name(path: &Path) -> Result<String, ApplyError> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| ApplyError::Invalid(format!("{}: not a file", path.display())))
}

fn read(path: &Path) -> Result<Vec<u8>, ApplyError> {
    std::fs::read(path).map_err(|source| ApplyError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// `apply -f FILE`: the file becomes the daemon's manifest of the same name.
pub async fn apply(socket: &Path, path: &Path) -> Result<Vec<String>, ApplyError> {
    let body = read(path)?;
    let name = file_name(path)?;
    let out = client::send(
        socket,
        Method::PUT,
        &format!("/peapod/v1/manifests/{}", escape(&name)),
        body,
    )
    .await?;
    let applied: Vec<Applied> =
        serde_json::from_slice(&out).map_err(|e| ClientError::Http(e.to_string()))?;
    Ok(applied.iter().map(applied_line).collect())
}

/// `%`-escapes what may not stand in a path segment.
fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The pod's grace period, as the API has it (30 s when unset).
async fn grace_period(socket: &Path, ns: &str, name: &str) -> Option<i64> {
    let body = client::get(socket, &format!("/api/v1/namespaces/{ns}/pods/{name}"))
        .await
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    Some(
        v["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(30),
    )
}

/// Waits until the pod is gone from the API, at most `limit`.
async fn wait_gone(socket: &Path, ns: &str, name: &str, limit: Duration) -> Result<(), ApplyError> {
    let t0 = Instant::now();
    loop {
        match client::get(socket, &format!("/api/v1/namespaces/{ns}/pods/{name}")).await {
            Err(ClientError::Api(s)) if s.code == 404 => return Ok(()),
            Err(e @ ClientError::Connect { .. }) => return Err(e.into()),
            _ => {}
        }
        if t0.elapsed() > limit {
            return Err(ApplyError::Timeout(name.to_string()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deletes one object by API resource (`pods`, `configmaps`, `secrets`); for a pod, its grace
/// period (read before the delete, bounding the wait), if it was running.
async fn delete_one(
    socket: &Path,
    resource: &str,
    ns: &str,
    name: &str,
) -> Result<Option<i64>, ClientError> {
    let grace = if resource == "pods" {
        grace_period(socket, ns, name).await
    } else {
        None
    };
    client::send(
        socket,
        Method::DELETE,
        &format!("/api/v1/namespaces/{ns}/{resource}/{name}"),
        Vec::new(),
    )
    .await?;
    Ok(grace)
}

/// `delete pod NAME`: `pod "NAME" deleted`, printed once the request is taken, and returns
/// once the pod has stopped and is gone (bounded by its grace period plus 30 s).
pub async fn delete_pod(socket: &Path, ns: &str, name: &str) -> Result<(), ApplyError> {
    let grace = delete_one(socket, "pods", ns, name).await?;
    println!("{}", deleted_line("pod", name));
    if let Some(g) = grace {
        wait_gone(socket, ns, name, Duration::from_secs(g.max(0) as u64 + 30)).await?;
    }
    Ok(())
}

/// `delete -f FILE`: every object the file defines is deleted by kind and name, as kubectl
/// does; a missing one is kubectl's NotFound line, the others still go.
pub async fn delete_file(socket: &Path, path: &Path) -> Result<(), ApplyError> {
    let body = read(path)?;
    let docs = manifest::load(path, &body).map_err(|errs| {
        ApplyError::Invalid(
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let mut failed = false;
    let mut waits = Vec::new();
    for d in &docs {
        let m = d.object.metadata();
        let (ns, name) = (
            m.namespace.as_deref().unwrap_or("default"),
            m.name.as_deref().unwrap_or_default(),
        );
        let (resource, kind) = match &d.object {
            Object::Pod(_) => ("pods", "pod"),
            Object::ConfigMap(_) => ("configmaps", "configmap"),
            Object::Secret(_) => ("secrets", "secret"),
        };
        match delete_one(socket, resource, ns, name).await {
            Ok(grace) => {
                println!("{}", deleted_line(kind, name));
                if let Some(g) = grace {
                    waits.push((ns.to_string(), name.to_string(), g));
                }
            }
            Err(ClientError::Api(s)) => {
                failed = true;
                eprintln!("{}", not_deleted_line(&s, &path.display().to_string()));
            }
            Err(e) => return Err(e.into()),
        }
    }
    for (ns, name, g) in waits {
        wait_gone(
            socket,
            &ns,
            &name,
            Duration::from_secs(g.max(0) as u64 + 30),
        )
        .await?;
    }
    if failed {
        return Err(ApplyError::Partial);
    }
    Ok(())
}

/// kubectl's line for an object of a file that could not be deleted.
pub fn not_deleted_line(s: &ApiStatus, file: &str) -> String {
    let mut s = s.clone();
    s.message = format!("error when deleting \"{file}\": {}", s.message);
    s.kubectl_line()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_as_kubectl() {
        let a = |kind: &str, action| Applied {
            kind: kind.into(),
            namespace: "default".into(),
            name: "web".into(),
            action,
        };
        assert_eq!(applied_line(&a("pod", Action::Created)), "pod/web created");
        assert_eq!(
            applied_line(&a("configmap", Action::Configured)),
            "configmap/web configured"
        );
        assert_eq!(
            applied_line(&a("secret", Action::Unchanged)),
            "secret/web unchanged"
        );
        assert_eq!(deleted_line("pod", "web"), "pod \"web\" deleted");
        assert_eq!(
            not_deleted_line(&ApiStatus::pod_not_found("web"), "web.yaml"),
            "Error from server (NotFound): error when deleting \"web.yaml\": pods \"web\" not found"
        );
        assert_eq!(escape("a b/c.yaml"), "a%20b%2Fc.yaml");
    }
}
