//! Probes and lifecycle hooks of static pods, as a user sees them through the CLI: readiness
//! drives Ready, a liveness failure restarts the container, a startup probe holds liveness
//! off, httpGet and tcpSocket probes find ports by name, preStop runs before the stop signal
//! and shares the grace period with it, postStart runs before the container shows running,
//! and a native sidecar is started (and its startup probe passed) before the next init
//! container.

use std::time::{Duration, Instant};

use peapod_integration::staticpod::*;
use peapod_integration::*;
use serde_json::Value;

fn ready(v: &Value, name: &str) -> bool {
    status_of(v, name)["ready"] == true
}

fn restarts(v: &Value, name: &str) -> i64 {
    status_of(v, name)["restartCount"].as_i64().unwrap_or(0)
}

fn has_event(events: &[(String, String)], reason: &str, message_start: &str) -> bool {
    events
        .iter()
        .any(|(r, m)| r == reason && m.starts_with(message_start))
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_drives_ready_both_ways() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    write_manifest(
        &d,
        "ready.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: ready}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "sleep 2; touch /tmp/ready; sleep 4; rm /tmp/ready; exec sleep 3000"]
    readinessProbe:
      exec: {command: ["test", "-f", "/tmp/ready"]}
      periodSeconds: 1
      failureThreshold: 1
"#,
    );
    // Running but not ready until the file appears.
    let v = wait_pod(&d, "ready", Duration::from_secs(30), |v| {
        container_state(v, "app")["running"].is_object()
    })
    .await;
    assert!(!ready(&v, "app"), "ready before its probe passed: {v:#}");
    assert_eq!(condition(&v, "Ready"), Some("False"));
    let v = wait_pod(&d, "ready", Duration::from_secs(15), |v| ready(v, "app")).await;
    assert_eq!(condition(&v, "Ready"), Some("True"), "{:#}", v["status"]);
    assert_eq!(condition(&v, "ContainersReady"), Some("True"));
    let (_, table, _) = d.cli(&["get", "pods"]);
    assert!(
        table.lines().nth(1).is_some_and(|l| l.contains(" 1/1 ")),
        "{table}"
    );
    // And back to not ready when the probe fails again; the container is not restarted.
    let v = wait_pod(&d, "ready", Duration::from_secs(15), |v| !ready(v, "app")).await;
    assert_eq!(condition(&v, "Ready"), Some("False"));
    assert_eq!(restarts(&v, "app"), 0, "readiness must never restart");
    let events = pod_events(&d, "ready").await;
    assert!(
        has_event(&events, "Unhealthy", "Readiness probe failed"),
        "{events:?}"
    );
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_liveness_failure_restarts_the_container() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    write_manifest(
        &d,
        "live.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "touch /tmp/healthy; sleep 3; rm /tmp/healthy; exec sleep 3000"]
    livenessProbe:
      exec: {command: ["test", "-f", "/tmp/healthy"]}
      periodSeconds: 1
      failureThreshold: 2
"#,
    );
    let first = wait_pod(&d, "live", Duration::from_secs(30), |v| {
        container_state(v, "app")["running"].is_object()
    })
    .await;
    let first_id = status_of(&first, "app")["containerID"].clone();
    let v = wait_pod(&d, "live", Duration::from_secs(30), |v| {
        restarts(v, "app") >= 1 && container_state(v, "app")["running"].is_object()
    })
    .await;
    let cs = status_of(&v, "app");
    assert_ne!(cs["containerID"], first_id, "the same instance: {cs:#}");
    assert!(
        cs["lastState"]["terminated"]["exitCode"].as_i64().is_some(),
        "{cs:#}"
    );
    let events = pod_events(&d, "live").await;
    assert!(
        has_event(&events, "Unhealthy", "Liveness probe failed"),
        "{events:?}"
    );
    assert!(
        has_event(
            &events,
            "Killing",
            "Container app failed liveness probe, will be restarted"
        ),
        "{events:?}"
    );
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_startup_probe_holds_liveness_off() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    // Liveness would fail at once until the file exists; only the startup probe keeps the
    // container from being killed during its slow start.
    write_manifest(
        &d,
        "slow.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: slow}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "sleep 4; touch /tmp/started; exec sleep 3000"]
    startupProbe:
      exec: {command: ["test", "-f", "/tmp/started"]}
      periodSeconds: 1
      failureThreshold: 30
    livenessProbe:
      exec: {command: ["test", "-f", "/tmp/started"]}
      periodSeconds: 1
      failureThreshold: 1
"#,
    );
    let v = wait_pod(&d, "slow", Duration::from_secs(30), |v| {
        container_state(v, "app")["running"].is_object()
    })
    .await;
    assert_eq!(status_of(&v, "app")["started"], false, "{v:#}");
    let v = wait_pod(&d, "slow", Duration::from_secs(20), |v| {
        status_of(v, "app")["started"] == true
    })
    .await;
    assert_eq!(restarts(&v, "app"), 0, "{:#}", v["status"]);
    // Liveness now runs, and passes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let v = pod_json(&d, "slow").unwrap();
    assert_eq!(restarts(&v, "app"), 0, "{:#}", v["status"]);
    let events = pod_events(&d, "slow").await;
    assert!(
        !has_event(&events, "Unhealthy", "Liveness probe failed"),
        "liveness ran before startup passed: {events:?}"
    );
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_get_and_tcp_socket_probes_find_ports_by_name() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    if d.net.mode != "builtin" {
        println!("skipped: httpGet and tcpSocket probes need the pod network");
        d.cleanup().await;
        return;
    }
    write_manifest(
        &d,
        "http.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: http}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      httpGet: {path: /index.html, port: http}
      periodSeconds: 1
    livenessProbe:
      tcpSocket: {port: http}
      periodSeconds: 1
      failureThreshold: 1
  - name: missing
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && exec httpd -f -p 8081 -h /www"]
    ports: [{name: alt, containerPort: 8081}]
    readinessProbe:
      httpGet: {path: /missing, port: alt}
      periodSeconds: 1
      failureThreshold: 1
"#,
    );
    let v = wait_pod(&d, "http", Duration::from_secs(30), |v| ready(v, "web")).await;
    assert!(!ready(&v, "missing"), "{:#}", v["status"]);
    assert_eq!(condition(&v, "Ready"), Some("False"));
    // Liveness over TCP keeps passing: no restart.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let v = pod_json(&d, "http").unwrap();
    assert_eq!(restarts(&v, "web"), 0, "{:#}", v["status"]);
    let events = pod_events(&d, "http").await;
    assert!(
        has_event(
            &events,
            "Unhealthy",
            "Readiness probe failed: HTTP probe failed with statuscode: 404"
        ),
        "{events:?}"
    );
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pre_stop_runs_before_the_signal_and_the_grace_period_ends_in_sigkill() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let out = d.root.parent().unwrap().join("hook-out");
    std::fs::create_dir_all(&out).unwrap();
    write_manifest(
        &d,
        "hooks.yaml",
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: hooks}}
spec:
  terminationGracePeriodSeconds: 4
  volumes:
  - name: out
    hostPath: {{path: {out:?}, type: Directory}}
  containers:
  - name: app
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    # Ignores SIGTERM: only SIGKILL at the end of the grace period ends it.
    command: ["sh", "-c", "trap 'echo term >> /out/log' TERM; echo up >> /out/log; while true; do sleep 1; done"]
    volumeMounts: [{{name: out, mountPath: /out}}]
    lifecycle:
      postStart:
        exec: {{command: ["sh", "-c", "echo poststart > /out/post"]}}
      preStop:
        exec: {{command: ["sh", "-c", "echo prestop >> /out/log; sleep 1"]}}
"#
        ),
    );
    wait_pod(&d, "hooks", Duration::from_secs(30), |v| {
        container_state(v, "app")["running"].is_object()
    })
    .await;
    // Shown running only once postStart has finished.
    assert_eq!(
        std::fs::read_to_string(out.join("post")).unwrap_or_default(),
        "poststart\n"
    );
    let t0 = Instant::now();
    std::fs::remove_file(d.manifests().join("hooks.yaml")).unwrap();
    wait_gone(&d, "hooks", Duration::from_secs(30)).await;
    let took = t0.elapsed();
    let log = std::fs::read_to_string(out.join("log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.first(), Some(&"up"), "{log}");
    let pre = lines.iter().position(|l| *l == "prestop");
    let term = lines.iter().position(|l| *l == "term");
    assert!(pre.is_some() && term.is_some(), "{log}");
    assert!(pre < term, "SIGTERM before preStop: {log}");
    // preStop (1 s) and the signal share the 4 s: killed at about 4 s, not 1 + 4.
    assert!(
        took >= Duration::from_millis(3500) && took < Duration::from_secs(8),
        "teardown took {took:?}"
    );
    let events = pod_events(&d, "hooks").await;
    assert!(
        has_event(&events, "Killing", "Stopping container app"),
        "{events:?}"
    );
    assert_eq!(d.leftovers(), Vec::<String>::new());
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_post_start_hook_kills_and_restarts_the_container() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    write_manifest(
        &d,
        "post.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: post}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3000"]
    lifecycle:
      postStart:
        exec: {command: ["sh", "-c", "echo nope; exit 7"]}
"#,
    );
    let v = wait_pod(&d, "post", Duration::from_secs(30), |v| {
        restarts(v, "app") >= 1
    })
    .await;
    let cs = status_of(&v, "app");
    assert!(cs["lastState"]["terminated"].is_object(), "{cs:#}");
    let events = pod_events(&d, "post").await;
    assert!(
        has_event(&events, "FailedPostStartHook", "PostStartHook failed: nope"),
        "{events:?}"
    );
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_native_sidecar_starts_before_the_next_init_container() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    // Under Never a failed init container fails the pod: `check` passes only if the sidecar
    // is running and its startup probe has passed when it starts.
    write_manifest(
        &d,
        "side.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: side}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  volumes:
  - name: work
    emptyDir: {}
  initContainers:
  - name: proxy
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    restartPolicy: Always
    command: ["sh", "-c", "sleep 2; touch /work/proxy-up; exec sleep 3000"]
    volumeMounts: [{name: work, mountPath: /work}]
    startupProbe:
      exec: {command: ["test", "-f", "/work/proxy-up"]}
      periodSeconds: 1
      failureThreshold: 30
  - name: check
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["test", "-f", "/work/proxy-up"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: app
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3000"]
"#,
    );
    let v = wait_pod(&d, "side", Duration::from_secs(40), |v| {
        container_state(v, "app")["running"].is_object() || v["status"]["phase"] == "Failed"
    })
    .await;
    assert_eq!(v["status"]["phase"], "Running", "{:#}", v["status"]);
    assert_eq!(
        container_state(&v, "check")["terminated"]["exitCode"],
        0,
        "{:#}",
        v["status"]
    );
    assert!(
        container_state(&v, "proxy")["running"].is_object(),
        "{:#}",
        v["status"]
    );
    let (_, table, _) = d.cli(&["get", "pods"]);
    assert!(
        table.lines().nth(1).is_some_and(|l| l.contains(" 2/2 ")),
        "{table}"
    );
    d.cleanup().await;
}
