//! Static pods as a user runs them: manifests written into the daemon's manifest directory,
//! watched through the `peapod` CLI, removed by deleting the file.

use std::time::{Duration, Instant};

use peapod::api::*;
use peapod_integration::staticpod::*;
use peapod_integration::*;
use serde_json::Value;

const WEB: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  terminationGracePeriodSeconds: 2
  volumes:
  - name: work
    emptyDir: {}
  initContainers:
  - name: init
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo from-init > /work/msg"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: app
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "cat /work/msg; echo pod=$POD_NAME; exec sleep 3000"]
    env:
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    volumeMounts: [{name: work, mountPath: /work}]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_runs_its_pod_and_deleting_it_removes_everything() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let t0 = Instant::now();
    write_manifest(&d, "web.yaml", WEB);
    let v = wait_pod(&d, "web", Duration::from_secs(60), |v| {
        container_state(v, "app")["running"].is_object()
    })
    .await;
    println!(
        "manifest written -> app container running: {:?}",
        t0.elapsed()
    );
    assert_eq!(v["kind"], "Pod");
    assert_eq!(v["metadata"]["namespace"], "default");
    assert_eq!(v["spec"]["nodeName"], "peapod-it");
    let uid = v["metadata"]["uid"].as_str().unwrap().to_string();
    assert_eq!(v["status"]["phase"], "Running", "{:#}", v["status"]);
    // The node's address, where it has a route out (the VM's guest has none).
    let (ok, routes) = sh("ip", &["route", "show", "default"]);
    if ok && !routes.trim().is_empty() {
        let ip = v["status"]["hostIP"].as_str().unwrap_or_default();
        let (_, addrs) = sh("ip", &["-o", "addr"]);
        assert!(
            !ip.is_empty() && addrs.contains(&format!(" {ip}/")),
            "hostIP {ip:?} is not an address of this node:\n{addrs}"
        );
        assert_eq!(v["status"]["hostIPs"][0]["ip"], ip);
    }
    // The init container ran to completion first, and wrote what the app reads.
    let init = &v["status"]["initContainerStatuses"][0];
    assert_eq!(init["state"]["terminated"]["exitCode"], 0, "{init:#}");
    assert_eq!(
        init["state"]["terminated"]["reason"], "Completed",
        "{init:#}"
    );

    // The table, as kubectl prints it.
    let (ok, out, err) = d.cli(&["get", "pods"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&cols[..4], ["web", "1/1", "Running", "0"], "{out}");
    assert!(
        lines[0].starts_with("NAME   READY   STATUS    RESTARTS   AGE"),
        "{out}"
    );
    let (ok, wide, _) = d.cli(&["get", "pods", "-o", "wide"]);
    assert!(ok && wide.contains("peapod-it"), "{wide}");

    // The app's log: what the init container wrote, and the downward API value.
    let log = d
        .root
        .parent()
        .unwrap()
        .join(format!("pod-logs/default_web_{uid}/app/0.log"));
    let t1 = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("from-init") && text.contains("pod=web") {
            break;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(10),
            "{}: {text:?}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // An unknown pod is kubectl's NotFound.
    let (ok, _, err) = d.cli(&["get", "pod", "nosuch"]);
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "Error from server (NotFound): pods \"nosuch\" not found"
    );

    // Deleting the file stops and removes the pod, and leaves nothing.
    std::fs::remove_file(d.manifests().join("web.yaml")).unwrap();
    let t2 = Instant::now();
    while pod_json(&d, "web").is_some() {
        assert!(
            t2.elapsed() < Duration::from_secs(30),
            "the pod outlived its manifest by 30 s\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ok, out, err) = d.cli(&["get", "pods"]);
    assert!(ok && out.is_empty(), "{out}");
    assert_eq!(err.trim(), "No resources found in default namespace.");
    let mut rt = d.rt().await;
    let pods = rt
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(pods.is_empty(), "{pods:?}");
    assert_eq!(d.leftovers(), Vec::<String>::new());
    assert!(
        !d.root.join("static-pods").join(&uid).exists(),
        "the pod's volume directory is left"
    );
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_container_restarts_under_on_failure_with_back_off() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    write_manifest(
        &d,
        "job.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: job}
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 1
  containers:
  - name: work
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo run; exit 3"]
"#,
    );
    // The first exit restarts at once, the second waits out 10 s: CrashLoopBackOff.
    let v = wait_pod(&d, "job", Duration::from_secs(30), |v| {
        container_state(v, "work")["waiting"]["reason"] == "CrashLoopBackOff"
    })
    .await;
    let cs = &v["status"]["containerStatuses"][0];
    assert!(cs["restartCount"].as_i64().unwrap() >= 1, "{cs:#}");
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3, "{cs:#}");
    let msg = cs["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        msg.starts_with("back-off 10s restarting failed container=work"),
        "{msg}"
    );
    assert_eq!(v["status"]["phase"], "Running", "{:#}", v["status"]);
    let (_, out, _) = d.cli(&["get", "pods"]);
    assert!(out.contains("CrashLoopBackOff"), "{out}");
    // After the back-off it runs again.
    let before = cs["restartCount"].as_i64().unwrap();
    let v = wait_pod(&d, "job", Duration::from_secs(20), |v| {
        v["status"]["containerStatuses"][0]["restartCount"].as_i64() > Some(before)
            && container_state(v, "work")["waiting"].is_object()
    })
    .await;
    // Container GC: of three or more instances, the engine keeps the newest dead one only
    // (kubelet's MaxPerPodContainer 1), and its log; older logs go with their instances.
    assert!(v["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(2));
    let t0 = Instant::now();
    let uid = v["metadata"]["uid"].as_str().unwrap().to_string();
    let logs = d
        .root
        .parent()
        .unwrap()
        .join(format!("pod-logs/default_job_{uid}/work"));
    let mut rt = d.rt().await;
    loop {
        let all = rt
            .list_containers(ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .containers;
        let files = std::fs::read_dir(&logs).map_or(0, |r| r.count());
        if all.len() == 1 && files == 1 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "dead instances piled up: {} containers, {files} log files",
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_daemon_adopts_running_static_pods() {
    if !require_root() {
        return;
    }
    let mut d = Daemon::start().await;
    write_manifest(
        &d,
        "keep.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: keep, namespace: edge}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3000"]
"#,
    );
    let v = wait_pod_ns(&d, "edge", "keep").await;
    let id = v["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .to_string();
    d.kill();
    d.spawn().await;
    let v = wait_pod_ns(&d, "edge", "keep").await;
    let cs = &v["status"]["containerStatuses"][0];
    assert_eq!(cs["containerID"], id.as_str(), "the container was replaced");
    assert_eq!(cs["restartCount"], 0, "{cs:#}");
    let (ok, out, _) = d.cli(&["get", "pods", "-A"]);
    assert!(ok && out.contains("edge") && out.contains("keep"), "{out}");
    // A clean shutdown (SIGTERM, as a service manager stops it) leaves the pod running too.
    let pid = d.pid().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(
        d.wait_exit(Duration::from_secs(20)),
        "the daemon ignored SIGTERM"
    );
    d.spawn().await;
    let v = wait_pod_ns(&d, "edge", "keep").await;
    let cs = &v["status"]["containerStatuses"][0];
    assert_eq!(
        cs["containerID"],
        id.as_str(),
        "replaced after a clean shutdown"
    );
    assert_eq!(cs["restartCount"], 0, "{cs:#}");
    d.cleanup().await;
}

async fn wait_pod_ns(d: &Daemon, ns: &str, name: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let (ok, out, _) = d.cli(&["get", "pod", name, "-n", ns, "-o", "json"]);
        if ok {
            let v: Value = serde_json::from_str(&out).unwrap();
            if container_state(&v, "c")["running"].is_object() {
                return v;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{ns}/{name} not running\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_errors_back_off_and_pull_secrets_from_the_directory_authenticate() {
    if !require_root() {
        return;
    }
    let reg = Registry::start_auth(Some(("tester", "s3cret")));
    reg.push("busybox", "private/busybox:1");
    let d = Daemon::start().await;
    let image = format!("{}/private/busybox:1", reg.addr);
    // No credentials: ErrImagePull, then ImagePullBackOff while the back-off lasts.
    write_manifest(
        &d,
        "anon.yaml",
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: anon}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    command: ["sleep", "3000"]
"#
        ),
    );
    // ErrImagePull lasts until the next round (a resync, 5 s at most), which a slow poller
    // can miss: either reason will do here, and the Failed event below is ErrImagePull's.
    let v = wait_pod(&d, "anon", Duration::from_secs(20), |v| {
        let reason = &container_state(v, "c")["waiting"]["reason"];
        reason == "ErrImagePull" || reason == "ImagePullBackOff"
    })
    .await;
    assert_eq!(v["status"]["phase"], "Pending");
    wait_pod(&d, "anon", Duration::from_secs(20), |v| {
        container_state(v, "c")["waiting"]["reason"] == "ImagePullBackOff"
    })
    .await;
    let events = pod_events(&d, "anon").await;
    let has = |reason: &str, start: &str| {
        events
            .iter()
            .any(|(r, m)| r == reason && m.starts_with(start))
    };
    assert!(has("Failed", "Failed to pull image"), "{events:?}");
    assert!(has("BackOff", "Back-off pulling image"), "{events:?}");

    // A dockerconfigjson Secret beside the pod: the pull authenticates.
    write_manifest(
        &d,
        "private.yaml",
        &format!(
            r#"
apiVersion: v1
kind: Secret
metadata: {{name: regcred}}
type: kubernetes.io/dockerconfigjson
stringData:
  .dockerconfigjson: '{{"auths": {{"{addr}": {{"username": "tester", "password": "s3cret"}}}}}}'
---
apiVersion: v1
kind: Pod
metadata: {{name: private}}
spec:
  terminationGracePeriodSeconds: 1
  imagePullSecrets: [{{name: regcred}}]
  containers:
  - name: c
    image: {image}
    command: ["sleep", "3000"]
"#,
            addr = reg.addr
        ),
    );
    wait_pod(&d, "private", Duration::from_secs(30), |v| {
        container_state(v, "c")["running"].is_object()
    })
    .await;
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_init_container_under_never_fails_the_pod() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    write_manifest(
        &d,
        "fail.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: fail}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: setup
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "exit 4"]
  containers:
  - name: app
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3000"]
"#,
    );
    let v = wait_pod(&d, "fail", Duration::from_secs(30), |v| {
        v["status"]["phase"] == "Failed"
    })
    .await;
    let init = status_of(&v, "setup");
    assert_eq!(init["state"]["terminated"]["exitCode"], 4, "{init:#}");
    assert_eq!(init["restartCount"], 0, "{init:#}");
    // The app container never ran.
    let app = status_of(&v, "app");
    assert!(
        app["state"]["running"].is_null() && app["state"]["terminated"].is_null(),
        "{app:#}"
    );
    let (_, table, _) = d.cli(&["get", "pods"]);
    assert!(table.contains("Init:Error"), "{table}");
    // A finished pod still answers to its manifest's removal at once.
    std::fs::remove_file(d.manifests().join("fail.yaml")).unwrap();
    wait_gone(&d, "fail", Duration::from_secs(10)).await;
    assert_eq!(d.leftovers(), Vec::<String>::new());
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn config_maps_secrets_and_the_downward_api_reach_env_and_files() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let out = d.root.parent().unwrap().join("cfg-out");
    std::fs::create_dir_all(&out).unwrap();
    write_manifest(
        &d,
        "cfg.yaml",
        &format!(
            r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings}}
data:
  mode: fast
  app.conf: "threads=4\n"
---
apiVersion: v1
kind: Secret
metadata: {{name: creds}}
stringData:
  password: hunter2
---
apiVersion: v1
kind: Pod
metadata:
  name: cfg
  labels: {{tier: edge}}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: conf
    configMap: {{name: settings, items: [{{key: app.conf, path: app.conf}}]}}
  - name: secret
    secret: {{secretName: creds, defaultMode: 0400}}
  - name: info
    downwardAPI:
      items:
      - path: labels
        fieldRef: {{fieldPath: metadata.labels}}
  - name: out
    hostPath: {{path: {out:?}, type: Directory}}
  containers:
  - name: app
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo \"$MODE $PASSWORD $NS $GREETING\" > /out/env; cat /conf/app.conf /secret/password /info/labels > /out/files; stat -c %a /secret/..data/password > /out/mode; exec sleep 3000"]
    env:
    - name: MODE
      valueFrom: {{configMapKeyRef: {{name: settings, key: mode}}}}
    - name: PASSWORD
      valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}
    - name: NS
      valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}
    - name: GREETING
      value: "hi-$(MODE)"
    volumeMounts:
    - {{name: conf, mountPath: /conf}}
    - {{name: secret, mountPath: /secret}}
    - {{name: info, mountPath: /info}}
    - {{name: out, mountPath: /out}}
"#
        ),
    );
    wait_pod(&d, "cfg", Duration::from_secs(30), |v| {
        container_state(v, "app")["running"].is_object()
    })
    .await;
    let t0 = Instant::now();
    while !out.join("mode").exists() {
        assert!(t0.elapsed() < Duration::from_secs(10), "{}", d.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let env = std::fs::read_to_string(out.join("env")).unwrap();
    assert_eq!(env, "fast hunter2 default hi-fast\n");
    let files = std::fs::read_to_string(out.join("files")).unwrap();
    assert_eq!(files, "threads=4\nhunter2tier=\"edge\"");
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_manifest_replaces_its_pod_and_a_broken_one_harms_no_other() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let pod = shell_pod;
    write_manifest(&d, "a.yaml", &pod("a", "exec sleep 3000"));
    write_manifest(&d, "b.yaml", &pod("b", "exec sleep 3000"));
    let a = wait_pod(&d, "a", Duration::from_secs(30), |v| {
        container_state(v, "c")["running"].is_object()
    })
    .await;
    let b = wait_pod(&d, "b", Duration::from_secs(30), |v| {
        container_state(v, "c")["running"].is_object()
    })
    .await;
    let old_uid = a["metadata"]["uid"].as_str().unwrap().to_string();
    let b_id = status_of(&b, "c")["containerID"].clone();

    // Edited: a new UID, the old pod stopped and removed before the new one runs.
    write_manifest(&d, "a.yaml", &pod("a", "echo v2; exec sleep 3000"));
    let a2 = wait_pod(&d, "a", Duration::from_secs(30), |v| {
        v["metadata"]["uid"] != old_uid.as_str() && container_state(v, "c")["running"].is_object()
    })
    .await;
    assert_eq!(status_of(&a2, "c")["restartCount"], 0);
    let mut rt = d.rt().await;
    let sandboxes = rt
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    let uids: Vec<_> = sandboxes
        .iter()
        .filter_map(|s| s.metadata.as_ref())
        .map(|m| m.uid.clone())
        .collect();
    assert!(
        !uids.contains(&old_uid),
        "the old pod's sandbox is left: {uids:?}"
    );
    assert!(!d.root.join("static-pods").join(&old_uid).exists());

    // Broken: reported with the file and field; the pods keep running untouched.
    write_manifest(
        &d,
        "b.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec:\n  containers:\n  - name: c\n    image: x\n    bogusField: 1\n",
    );
    let t0 = Instant::now();
    let errors = loop {
        let body =
            peapod::cli::client::get(&d.state.join("api.sock"), "/peapod/v1/manifest-errors")
                .await
                .unwrap();
        let errors: Vec<String> = serde_json::from_slice(&body).unwrap();
        if !errors.is_empty() {
            break errors;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "no manifest error reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        errors[0].contains("b.yaml") && errors[0].contains("bogusField"),
        "{errors:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b2 = pod_json(&d, "b").expect("pod b is gone after a bad edit");
    assert_eq!(status_of(&b2, "c")["containerID"], b_id);
    let a3 = pod_json(&d, "a").unwrap();
    assert_eq!(a3["metadata"]["uid"], a2["metadata"]["uid"]);
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifests_changed_while_the_daemon_was_down_are_reconciled_at_restart() {
    if !require_root() {
        return;
    }
    let mut d = Daemon::start().await;
    let pod = shell_pod;
    write_manifest(&d, "gone.yaml", &pod("gone", "exec sleep 3000"));
    write_manifest(&d, "edit.yaml", &pod("edit", "exec sleep 3000"));
    let running = |v: &Value| container_state(v, "c")["running"].is_object();
    let gone = wait_pod(&d, "gone", Duration::from_secs(30), running).await;
    let edit = wait_pod(&d, "edit", Duration::from_secs(30), running).await;
    let gone_uid = gone["metadata"]["uid"].as_str().unwrap().to_string();
    let old_uid = edit["metadata"]["uid"].as_str().unwrap().to_string();
    // A pod of the CRI door, which the manifest door must never touch.
    let mut rt = d.rt().await;
    let logs = d.root.parent().unwrap().join("cri-logs");
    let (cri_pod, _) = run_pod(
        &mut rt,
        pod_config("cri", &logs),
        vec![container_config("c", BUSYBOX, &["sleep", "3000"])],
    )
    .await;
    // A pod directory a crash left without a sandbox.
    let stray = d.root.join("static-pods").join("0123456789abcdef");
    std::fs::create_dir_all(stray.join("volumes")).unwrap();

    d.kill();
    std::fs::remove_file(d.manifests().join("gone.yaml")).unwrap();
    write_manifest(&d, "edit.yaml", &pod("edit", "echo v2; exec sleep 3000"));
    d.spawn().await;

    wait_pod(&d, "edit", Duration::from_secs(30), |v| {
        v["metadata"]["uid"] != old_uid.as_str() && running(v)
    })
    .await;
    let mut rt = d.rt().await;
    let t0 = Instant::now();
    loop {
        let items = rt
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
        let uids: Vec<String> = items
            .iter()
            .filter_map(|s| s.metadata.as_ref())
            .map(|m| m.uid.clone())
            .collect();
        let left = uids.contains(&gone_uid) || uids.contains(&old_uid);
        let dirs_left = [&gone_uid, &old_uid]
            .iter()
            .any(|u| d.root.join("static-pods").join(u).exists())
            || stray.exists();
        if !left && !dirs_left {
            assert!(
                items.iter().any(|s| s.id == cri_pod),
                "the CRI door's pod was removed"
            );
            assert_eq!(items.len(), 2, "{uids:?}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "left after restart: sandboxes {uids:?}, dirs left {dirs_left}\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pod_json(&d, "gone").is_none());
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_run_in_kubelets_qos_cgroups_and_leave_none_behind() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let pod = |name: &str, resources: &str| {
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
    command: ["sleep", "3000"]
    resources: {resources}
"#
        )
    };
    let lim = "{requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: 100m, memory: 64Mi}}";
    write_manifest(&d, "g.yaml", &pod("guaranteed", lim));
    write_manifest(
        &d,
        "b.yaml",
        &pod(
            "burstable",
            "{requests: {memory: 32Mi}, limits: {memory: 64Mi}}",
        ),
    );
    write_manifest(&d, "be.yaml", &pod("besteffort", "{}"));
    let mounts = cgroup_mounts();
    for (name, class, tier) in [
        ("guaranteed", "Guaranteed", ""),
        ("burstable", "Burstable", "burstable/"),
        ("besteffort", "BestEffort", "besteffort/"),
    ] {
        let v = wait_pod(&d, name, Duration::from_secs(30), |v| {
            container_state(v, "c")["running"].is_object()
        })
        .await;
        assert_eq!(v["status"]["qosClass"], class);
        let uid = v["metadata"]["uid"].as_str().unwrap();
        let cid = status_of(&v, "c")["containerID"].as_str().unwrap();
        let cid = cid.rsplit("://").next().unwrap();
        let rel = format!(
            "{}/kubepods/{tier}pod{uid}",
            d.cgroup_parent.trim_start_matches('/')
        );
        assert!(
            mounts.iter().any(|m| m.join(&rel).join(cid).is_dir()),
            "{name}: no container cgroup under {rel}"
        );
        if name == "guaranteed" {
            // The container's memory limit, in its cgroup below the pod's.
            let limit = mounts.iter().find_map(|m| {
                let dir = m.join(&rel).join(cid);
                std::fs::read_to_string(dir.join("memory.max"))
                    .or_else(|_| std::fs::read_to_string(dir.join("memory.limit_in_bytes")))
                    .ok()
            });
            assert_eq!(limit.as_deref().map(str::trim), Some("67108864"));
        }
    }
    for f in ["g.yaml", "b.yaml", "be.yaml"] {
        std::fs::remove_file(d.manifests().join(f)).unwrap();
    }
    for name in ["guaranteed", "burstable", "besteffort"] {
        wait_gone(&d, name, Duration::from_secs(20)).await;
    }
    // The pod cgroups, the tiers and kubepods itself go with the last pod.
    assert_eq!(d.leftovers(), Vec::<String>::new());
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_empty_dir_is_a_bounded_tmpfs_unmounted_with_its_pod() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let out = d.root.parent().unwrap().join("tmpfs-out");
    std::fs::create_dir_all(&out).unwrap();
    write_manifest(
        &d,
        "mem.yaml",
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: mem}}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: cache
    emptyDir: {{medium: Memory, sizeLimit: 8Mi}}
  - name: out
    hostPath: {{path: {out:?}, type: Directory}}
  containers:
  - name: c
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "grep ' /cache ' /proc/mounts > /out/mount; dd if=/dev/zero of=/cache/big bs=1M count=9 2>/dev/null; echo $? > /out/dd; exec sleep 3000"]
    volumeMounts:
    - {{name: cache, mountPath: /cache}}
    - {{name: out, mountPath: /out}}
"#
        ),
    );
    let v = wait_pod(&d, "mem", Duration::from_secs(30), |v| {
        container_state(v, "c")["running"].is_object()
    })
    .await;
    let uid = v["metadata"]["uid"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    while !out.join("dd").exists() {
        assert!(t0.elapsed() < Duration::from_secs(10), "{}", d.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mount = std::fs::read_to_string(out.join("mount")).unwrap();
    assert!(
        mount.starts_with("tmpfs /cache tmpfs") && mount.contains("size=8192k"),
        "{mount}"
    );
    // 9 MiB do not fit in 8.
    assert_ne!(std::fs::read_to_string(out.join("dd")).unwrap().trim(), "0");
    std::fs::remove_file(d.manifests().join("mem.yaml")).unwrap();
    wait_gone(&d, "mem", Duration::from_secs(20)).await;
    let pod_dir = d.root.join("static-pods").join(&uid);
    assert!(
        mounts_under(&d.root).is_empty(),
        "{:?}",
        mounts_under(&d.root)
    );
    assert!(!pod_dir.exists());
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_asking_more_than_the_node_has_is_rejected_out_of_cpu() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    write_manifest(
        &d,
        "big.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: big}
spec:
  containers:
  - name: c
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3000"]
    resources: {requests: {cpu: "4096"}}
"#,
    );
    let v = wait_pod(&d, "big", Duration::from_secs(20), |v| {
        v["status"]["phase"] == "Failed"
    })
    .await;
    assert_eq!(v["status"]["reason"], "OutOfcpu", "{:#}", v["status"]);
    let msg = v["status"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with(
            "Pod was rejected: Node didn't have enough resource: cpu, requested: 4096000"
        ),
        "{msg}"
    );
    let (_, table, _) = d.cli(&["get", "pods"]);
    assert!(table.contains("OutOfcpu"), "{table}");
    // Nothing was started for it.
    let mut rt = d.rt().await;
    let pods = rt
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(pods.is_empty(), "{pods:?}");
    // A fixed manifest is a new pod, admitted afresh.
    write_manifest(
        &d,
        "big.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: big}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: peapod.test/busybox:latest\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '3000']\n    resources: {requests: {cpu: 10m}}\n",
    );
    wait_pod(&d, "big", Duration::from_secs(30), |v| {
        container_state(v, "c")["running"].is_object()
    })
    .await;
    d.cleanup().await;
}
