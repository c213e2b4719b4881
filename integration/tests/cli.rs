//! The `peapod` CLI as a user drives it against a real daemon: logs (previous, tail,
//! timestamps, follow, container choice), describe, events, manifest warnings, and apply /
//! delete, which never need the user to know the manifest directory, and exec.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use peapod_integration::staticpod::*;
use peapod_integration::*;
use serde_json::Value;

/// Polls `peapod ARGS` until its stdout satisfies `f`; the last stdout.
async fn wait_cli(d: &Daemon, args: &[&str], f: impl Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        let (ok, out, err) = d.cli(args);
        if ok && f(&out) {
            return out;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "peapod {args:?}: {out:?} {err:?}\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The CLI's exit code (`d.cli` gives success only; kubectl's scripts test for 1).
fn cli_code(d: &Daemon, args: &[&str]) -> Option<i32> {
    // d.cli writes the config file the binary reads.
    let _ = d.cli(&["get", "pods"]);
    std::process::Command::new(bin_dir().join("peapod"))
        .arg("--config")
        .arg(d.root.parent().unwrap().join("peapod.toml"))
        .args(args)
        .output()
        .unwrap()
        .status
        .code()
}

/// The CLI's exit code and stdout, with `input` on its stdin.
fn cli_stdin(d: &Daemon, args: &[&str], input: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let _ = d.cli(&["get", "pods"]);
    let mut child = std::process::Command::new(bin_dir().join("peapod"))
        .arg("--config")
        .arg(d.root.parent().unwrap().join("peapod.toml"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A user's file, outside the manifest directory.
fn user_file(d: &Daemon, name: &str, yaml: &str) -> PathBuf {
    let dir = d.root.parent().unwrap().join("user");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, yaml).unwrap();
    p
}

/// `count` prints three lines naming its instance; the first instance then fails, so it is
/// restarted (at once the first time), and the second keeps running, so that "current" and
/// "previous" stay the same while the test reads them. `side` keeps running, so the pod has
/// two containers.
const ECHO: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: echo}
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 1
  volumes: [{name: w, emptyDir: {}}]
  containers:
  - name: count
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "n=$(cat /w/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /w/n; echo one; echo two; echo instance-$n; if [ $n = 1 ]; then sleep 2; exit 1; fi; exec sleep 3000"]
    volumeMounts: [{name: w, mountPath: /w}]
  - name: side
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3000"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn logs_of_current_and_previous_instances() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    write_manifest(&d, "echo.yaml", ECHO);
    wait_pod(&d, "echo", Duration::from_secs(60), |v| {
        let s = status_of(v, "count");
        s["restartCount"].as_i64() >= Some(1) && s["state"]["running"].is_object()
    })
    .await;

    // Two containers: the API server's error, exit 1.
    let (ok, _, err) = d.cli(&["logs", "echo"]);
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "Error from server (BadRequest): a container name must be specified for pod echo, \
         choose one of: [count side]"
    );
    assert_eq!(cli_code(&d, &["logs", "echo"]), Some(1));
    let (ok, _, err) = d.cli(&["logs", "echo", "-c", "nosuch"]);
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "Error from server (BadRequest): container nosuch is not valid for pod echo"
    );

    // The instance before the restart, whole.
    let (ok, prev, err) = d.cli(&["logs", "echo", "-c", "count", "--previous"]);
    assert!(ok, "{err}");
    assert_eq!(prev, "one\ntwo\ninstance-1\n");
    // The running one (it has printed its lines when its status says running, or soon).
    let cur = wait_cli(&d, &["logs", "echo", "-c", "count"], |o| {
        o.contains("\ninstance-")
    })
    .await;
    assert!(cur.starts_with("one\ntwo\ninstance-"), "{cur:?}");
    assert_ne!(
        cur, prev,
        "the current instance printed the previous one's log"
    );
    let (ok, tail, _) = d.cli(&["logs", "echo", "-c", "count", "-p", "--tail", "1"]);
    assert!(ok);
    assert_eq!(tail, "instance-1\n");
    let (ok, ts, _) = d.cli(&["logs", "echo", "-c", "count", "-p", "--timestamps"]);
    assert!(ok);
    let lines: Vec<&str> = ts.lines().collect();
    assert_eq!(lines.len(), 3, "{ts}");
    for (l, text) in lines.iter().zip(["one", "two", "instance-1"]) {
        let (stamp, rest) = l.split_once(' ').unwrap();
        assert_eq!(rest, text, "{l}");
        assert!(
            stamp.len() >= 20 && stamp.as_bytes()[10] == b'T' && stamp.ends_with('Z'),
            "not RFC3339: {l}"
        );
    }
    // The other container has no previous instance: kubelet's wording.
    let (ok, _, err) = d.cli(&["logs", "echo", "-c", "side", "-p"]);
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "Error from server (BadRequest): previous terminated container \"side\" in pod \"echo\" not found"
    );
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_describe_events_and_manifest_warnings() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    write_manifest(
        &d,
        "once.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: once, labels: {app: once}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo start; sleep 3; echo end"]
    readinessProbe:
      exec: {command: [cat, /etc/hostname]}
      periodSeconds: 1
"#,
    );
    wait_pod(&d, "once", Duration::from_secs(60), |v| {
        status_of(v, "app")["state"]["running"].is_object()
    })
    .await;
    // Follow returns once the container instance has exited and its log is drained.
    let t0 = Instant::now();
    let (ok, out, err) = d.cli(&["logs", "-f", "once"]);
    assert!(ok, "{err}");
    assert_eq!(out, "start\nend\n");
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    let v = wait_pod(&d, "once", Duration::from_secs(20), |v| {
        status_of(v, "app")["restartCount"].as_i64() >= Some(1)
    })
    .await;
    assert_eq!(
        status_of(&v, "app")["lastState"]["terminated"]["exitCode"],
        0
    );
    let (ok, out, _) = d.cli(&["logs", "once", "-p", "--tail", "1"]);
    assert!(ok);
    assert_eq!(out, "end\n");

    let (ok, desc, err) = d.cli(&["describe", "pod", "once"]);
    assert!(ok, "{err}");
    for want in [
        "Name:         once\n",
        "Namespace:    default\n",
        "Labels:       app=once\n",
        "Status:       Running\n",
        "\nContainers:\n  app:\n",
        "    Image:         peapod.test/busybox:latest\n",
        "    Last State:     Terminated\n      Reason:       Completed\n      Exit Code:    0\n",
        "    Readiness:      exec [cat /etc/hostname] delay=0s timeout=1s period=1s #success=1 #failure=3\n",
        "\nConditions:\n  Type ",
        "\nEvents:\n  Type    Reason ",
        "kubelet  Started container app\n",
    ] {
        assert!(desc.contains(want), "missing {want:?} in:\n{desc}");
    }

    let (ok, ev, _) = d.cli(&["get", "events"]);
    assert!(ok);
    let lines: Vec<&str> = ev.lines().collect();
    assert!(lines[0].starts_with("LAST SEEN   TYPE     REASON "), "{ev}");
    let created = lines
        .iter()
        .position(|l| l.contains("Created") && l.contains("pod/once"));
    let started = lines
        .iter()
        .position(|l| l.contains("Started") && l.contains("pod/once"));
    assert!(created.is_some() && started > created, "{ev}");
    let (ok, all, _) = d.cli(&["get", "events", "-A"]);
    assert!(ok && all.starts_with("NAMESPACE   LAST SEEN"), "{all}");
    let (ok, json, _) = d.cli(&["get", "events", "-o", "json"]);
    assert!(ok);
    let list: Value = serde_json::from_str(&json).unwrap();
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == "Started" && e["involvedObject"]["name"] == "once"),
        "{json}"
    );

    // A manifest that does not parse: each of its errors is a warning of `get pods`.
    write_manifest(
        &d,
        "broken.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: broken}\nspec: {containers: [{name: a, image: x}], bogus: 1}\n",
    );
    let t0 = Instant::now();
    loop {
        let (ok, out, err) = d.cli(&["get", "pods"]);
        assert!(ok, "{err}");
        if let Some(w) = err.lines().find(|l| l.starts_with("Warning: ")) {
            assert!(w.contains("broken.yaml") && w.contains("bogus"), "{w}");
            assert!(out.contains("once"), "{out}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "no warning: {err:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.cleanup().await;
}

const WEB: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3000"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn apply_and_delete_without_knowing_the_manifest_directory() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let file = user_file(&d, "web.yaml", WEB);
    let f = file.to_str().unwrap();
    let (ok, out, err) = d.cli(&["apply", "-f", f]);
    assert!(ok, "{err}");
    assert_eq!(out, "pod/web created\n");
    wait_pod(&d, "web", Duration::from_secs(60), |v| {
        v["status"]["phase"] == "Running" && status_of(v, "app")["ready"] == true
    })
    .await;
    let (ok, out, err) = d.cli(&["apply", "-f", f]);
    assert!(ok, "{err}");
    assert_eq!(out, "pod/web unchanged\n");

    // exec: the command's streams and exit code; stdin with -i, a terminal with -t.
    let (ok, out, err) = d.cli(&[
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert!(!ok);
    assert_eq!(out, "out\n");
    assert_eq!(err, "err\ncommand terminated with exit code 3\n");
    assert_eq!(
        cli_code(&d, &["exec", "web", "--", "sh", "-c", "exit 3"]),
        Some(3)
    );
    let (code, out) = cli_stdin(
        &d,
        &["exec", "-i", "web", "--", "tr", "a-z", "A-Z"],
        "hello\n",
    );
    assert_eq!((code, out.as_str()), (Some(0), "HELLO\n"));
    let (ok, out, err) = d.cli(&[
        "exec",
        "-t",
        "web",
        "--",
        "sh",
        "-c",
        "test -t 1 && echo tty",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, "tty\r\n");
    // -it on a real terminal (util-linux `script` gives the CLI one): raw mode, the remote
    // pty echoes what is typed, and the exit code comes back.
    if std::path::Path::new("/usr/bin/script").exists() {
        let cmd = format!(
            "{} --config {} exec -it web -- sh -c 'read x; echo got-$x; exit 4'",
            bin_dir().join("peapod").display(),
            d.root.parent().unwrap().join("peapod.toml").display()
        );
        let mut child = std::process::Command::new("/usr/bin/script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Typed once the remote shell reads (a terminal's input before raw mode is lost).
        tokio::time::sleep(Duration::from_secs(1)).await;
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"abc\r").unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(4), "{text:?}");
        assert!(text.contains("got-abc\r\n"), "{text:?}");
    }
    let (ok, _, err) = d.cli(&["exec", "web", "-c", "nosuch", "--", "true"]);
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "Error from server (BadRequest): container nosuch is not valid for pod web"
    );

    // A bad file is refused with the parser's message, and nothing is written.
    let bad = user_file(
        &d,
        "bad.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec: {containers: [{name: a}]}\n",
    );
    let (ok, _, err) = d.cli(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.starts_with(
            "Error from server (Invalid): bad.yaml: document 1: spec.containers[0].image"
        ),
        "{err}"
    );
    assert!(!d.manifests().join("bad.yaml").exists());

    // delete pod NAME returns once the pod is gone, and leaves no manifest.
    let t0 = Instant::now();
    let (ok, out, err) = d.cli(&["delete", "pod", "web"]);
    assert!(ok, "{err}");
    assert_eq!(out, "pod \"web\" deleted\n");
    assert!(t0.elapsed() < Duration::from_secs(32), "{:?}", t0.elapsed());
    assert!(pod_json(&d, "web").is_none(), "the pod outlived its delete");
    let left: Vec<_> = std::fs::read_dir(d.manifests())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // NotFound, as kubectl words it, exit code 1.
    let (ok, _, err) = d.cli(&["delete", "pod", "web"]);
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "Error from server (NotFound): pods \"web\" not found"
    );
    assert_eq!(cli_code(&d, &["delete", "pod", "web"]), Some(1));
    assert_eq!(cli_code(&d, &["get", "pod", "web"]), Some(1));

    // A file of several objects: apply lists each, delete -f removes each.
    let both = user_file(
        &d,
        "both.yaml",
        &format!(
            "{WEB}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: conf}}\ndata: {{a: b}}\n"
        ),
    );
    let b = both.to_str().unwrap();
    let (ok, out, err) = d.cli(&["apply", "-f", b]);
    assert!(ok, "{err}");
    assert_eq!(out, "pod/web created\nconfigmap/conf created\n");
    wait_pod(&d, "web", Duration::from_secs(60), |v| {
        v["status"]["phase"] == "Running"
    })
    .await;
    let (ok, out, err) = d.cli(&["delete", "-f", b]);
    assert!(ok, "{err}");
    assert_eq!(out, "pod \"web\" deleted\nconfigmap \"conf\" deleted\n");
    assert!(pod_json(&d, "web").is_none());
    assert!(!d.manifests().join("both.yaml").exists());
    let (ok, _, err) = d.cli(&["delete", "-f", b]);
    assert!(!ok);
    assert!(
        err.contains("Error from server (NotFound): error when deleting \"")
            && err.contains("pods \"web\" not found"),
        "{err}"
    );
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn top_pods_shows_cpu_and_memory_as_kubectl() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    // A busy container held to 200m, and an idle one.
    write_manifest(
        &d,
        "busy.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: busy}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: spin
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "exec dd if=/dev/zero of=/dev/null"]
    resources: {limits: {cpu: 200m, memory: 64Mi}}
  - name: idle
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3000"]
"#,
    );
    wait_pod(&d, "busy", Duration::from_secs(30), |v| {
        status_of(v, "spin")["state"]["running"].is_object()
            && status_of(v, "idle")["state"]["running"].is_object()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, out, err) = d.cli(&["top", "pods", "--containers"]);
    assert!(ok, "{err}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"],
        "{out}"
    );
    let row = |name: &str| lines.iter().find(|l| l.get(1) == Some(&name)).cloned();
    let spin = row("spin").unwrap_or_else(|| panic!("{out}"));
    let millis: u64 = spin[2].trim_end_matches('m').parse().unwrap();
    // Held to 200m by its limit; sampled over 200 ms, so loosely.
    assert!((50..=400).contains(&millis), "{out}");
    assert!(spin[3].ends_with("Mi"), "{out}");
    let idle = row("idle").unwrap_or_else(|| panic!("{out}"));
    assert_eq!(idle[2], "0m", "{out}");
    let (ok, out, _) = d.cli(&["top", "pods"]);
    assert!(
        ok && out.lines().nth(1).is_some_and(|l| l.starts_with("busy ")),
        "{out}"
    );
    let (ok, _, err) = d.cli(&["top", "pods", "-n", "nothing-here"]);
    assert!(ok);
    assert_eq!(err.trim(), "No resources found in nothing-here namespace.");
    d.cleanup().await;
}
