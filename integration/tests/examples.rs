//! The manifests in examples/ run as their comments say. Each is applied as a user would
//! (its busybox image swapped for the test fixture, which has the same applets), then held to
//! what the comment promises.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use peapod::api::*;
use peapod_integration::staticpod::*;
use peapod_integration::*;
use serde_json::Value;

fn example(name: &str) -> String {
    let path = workspace().join("examples").join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("image: busybox:1.36", "image: peapod.test/busybox:latest")
}

fn log_file(d: &Daemon, pod: &Value, container: &str) -> PathBuf {
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let name = pod["metadata"]["name"].as_str().unwrap();
    let n = status_of(pod, container)["restartCount"]
        .as_i64()
        .unwrap_or(0);
    d.root
        .parent()
        .unwrap()
        .join(format!("pod-logs/default_{name}_{uid}/{container}/{n}.log"))
}

async fn wait_log_text(path: &PathBuf, wanted: &[&str]) -> String {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if wanted.iter().all(|w| text.contains(w)) {
            return text;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "{}: {text:?} lacks {wanted:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pods_row(d: &Daemon, name: &str) -> Vec<String> {
    let (_, out, _) = d.cli(&["get", "pods"]);
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn web_probes_example() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    if d.net.mode != "builtin" {
        println!("skipped: the example's httpGet probe needs the pod network");
        d.cleanup().await;
        return;
    }
    write_manifest(&d, "web-probes.yaml", &example("web-probes.yaml"));
    let v = wait_pod(&d, "web", Duration::from_secs(30), |v| {
        status_of(v, "httpd")["ready"] == true
    })
    .await;
    assert_eq!(&pods_row(&d, "web")[..3], ["web", "1/1", "Running"]);
    // Deleting the page makes it unready, without a restart.
    let id = status_of(&v, "httpd")["containerID"].as_str().unwrap();
    let id = id.rsplit("://").next().unwrap().to_string();
    let mut rt = d.rt().await;
    rt.exec_sync(ExecSyncRequest {
        container_id: id,
        cmd: vec!["rm".into(), "/www/index.html".into()],
        timeout: 5,
    })
    .await
    .unwrap();
    let v = wait_pod(&d, "web", Duration::from_secs(15), |v| {
        status_of(v, "httpd")["ready"] == false
    })
    .await;
    assert_eq!(status_of(&v, "httpd")["restartCount"], 0);
    assert_eq!(pods_row(&d, "web")[1], "0/1");
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn init_sidecar_example() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    write_manifest(&d, "init-sidecar.yaml", &example("init-sidecar.yaml"));
    let v = wait_pod(&d, "tail", Duration::from_secs(30), |v| {
        container_state(v, "app")["running"].is_object()
    })
    .await;
    assert_eq!(
        container_state(&v, "setup")["terminated"]["exitCode"],
        0,
        "{:#}",
        v["status"]
    );
    assert!(container_state(&v, "shipper")["running"].is_object());
    assert_eq!(&pods_row(&d, "tail")[..3], ["tail", "2/2", "Running"]);
    wait_log_text(&log_file(&d, &v, "shipper"), &["hello from setup"]).await;
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn job_example() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    write_manifest(&d, "job.yaml", &example("job.yaml"));
    let v = wait_pod(&d, "job", Duration::from_secs(40), |v| {
        v["status"]["phase"] == "Succeeded"
    })
    .await;
    let cs = status_of(&v, "work");
    assert_eq!(cs["restartCount"], 1, "{cs:#}");
    assert_eq!(cs["state"]["terminated"]["exitCode"], 0, "{cs:#}");
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1, "{cs:#}");
    assert_eq!(&pods_row(&d, "job")[..4], ["job", "0/1", "Completed", "1"]);
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn config_example() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    write_manifest(&d, "config.yaml", &example("config.yaml"));
    let v = wait_pod(&d, "settings", Duration::from_secs(30), |v| {
        container_state(v, "app")["running"].is_object()
    })
    .await;
    wait_log_text(
        &log_file(&d, &v, "app"),
        &[
            "mode=fast user=admin",
            "threads=4",
            "cache=on",
            "password-ok",
        ],
    )
    .await;
    d.cleanup().await;
}
