//! Static pods as a user drives them: manifests written into a daemon's manifest directory,
//! pods read back through the `peapod` CLI.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Daemon;

/// `peapod get pod NAME -o json`, when the pod is there.
pub fn pod_json(d: &Daemon, name: &str) -> Option<Value> {
    let (ok, out, _) = d.cli(&["get", "pod", name, "-o", "json"]);
    ok.then(|| serde_json::from_str(&out).ok()).flatten()
}

/// Polls until `f` holds for the pod's JSON, or panics after `limit` with the last one.
pub async fn wait_pod(
    d: &Daemon,
    name: &str,
    limit: Duration,
    f: impl Fn(&Value) -> bool,
) -> Value {
    let t0 = Instant::now();
    let mut last = Value::Null;
    while t0.elapsed() < limit {
        if let Some(v) = pod_json(d, name) {
            if f(&v) {
                return v;
            }
            last = v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "pod {name}: condition not met in {limit:?}; last status:\n{}\n--- daemon log ---\n{}",
        serde_json::to_string_pretty(&last["status"]).unwrap_or_default(),
        d.log_text()
    );
}

/// Waits until the pod is gone from the API.
pub async fn wait_gone(d: &Daemon, name: &str, limit: Duration) {
    let t0 = Instant::now();
    while pod_json(d, name).is_some() {
        assert!(
            t0.elapsed() < limit,
            "pod {name} still there after {limit:?}\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status of container `name` (app containers, then init containers).
pub fn status_of<'a>(v: &'a Value, name: &str) -> &'a Value {
    let find = |key: &str| {
        v["status"][key]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == name))
    };
    find("containerStatuses")
        .or_else(|| find("initContainerStatuses"))
        .unwrap_or(&Value::Null)
}

/// The state of container `name`.
pub fn container_state<'a>(v: &'a Value, name: &str) -> &'a Value {
    &status_of(v, name)["state"]
}

/// The pod condition `kind`'s status ("True", "False"), if present.
pub fn condition<'a>(v: &'a Value, kind: &str) -> Option<&'a str> {
    v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?["status"]
        .as_str()
}

/// A one-container pod `name` (container `c`, the busybox fixture) running `sh -c CMD`, with
/// a 1 s grace period.
pub fn shell_pod(name: &str, cmd: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "{cmd}"]
"#
    )
}

/// Writes a manifest aside and renames it in, as an editor or `peapod apply` does: the
/// daemon never reads half a file.
pub fn write_manifest(d: &Daemon, file: &str, yaml: &str) {
    let dir = d.manifests();
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, yaml).unwrap();
    std::fs::rename(&tmp, dir.join(file)).unwrap();
}

/// The pod's events from the local API, oldest first, as (reason, message) pairs.
pub async fn pod_events(d: &Daemon, name: &str) -> Vec<(String, String)> {
    let path =
        format!("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3D{name}");
    let body = peapod::cli::client::get(&d.state.join("api.sock"), &path)
        .await
        .expect("GET events");
    let v: Value = serde_json::from_slice(&body).expect("an EventList");
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_string(),
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}
