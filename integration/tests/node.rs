//! What a node operator relies on besides the CRI: systemd's readiness protocol, journald-friendly
//! JSON logs, the config tooling (`peapod config default|check`, the effective config in
//! `crictl info`) and the Prometheus endpoint, scraped over HTTP and parsed as Prometheus does.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use http_body_util::BodyExt;
use peapod::api::*;
use peapod_integration::*;

/// The next datagram on `sock`, or None after `limit`.
fn recv(sock: &UnixDatagram, limit: Duration) -> Option<String> {
    sock.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Type=notify as systemd runs it: READY=1 only once the CRI socket answers (recovery done),
/// STOPPING=1 on SIGTERM, and the socket's address never reaches the monitors, whose
/// READY=1 would speak for the daemon. And `--log-format json`: every line is one object.
#[tokio::test(flavor = "multi_thread")]
async fn notify_ready_and_stopping_with_json_logs() {
    if !require_root() {
        return;
    }
    let mut d = Daemon::start().await;
    // The same daemon restarted as systemd starts a Type=notify unit.
    let notify_dir = d.root.parent().unwrap().join("notify");
    std::fs::create_dir_all(&notify_dir).unwrap();
    let notify_path = notify_dir.join("notify.sock");
    let sock = UnixDatagram::bind(&notify_path).unwrap();
    let mut rt = d.rt().await;
    let (pod, ids) = run_pod(
        &mut rt,
        pod_config("notified", &d.root.join("logs")),
        vec![container_config("sleep", BUSYBOX, &["sleep", "3600"])],
    )
    .await;
    d.kill();
    std::fs::write(&d.log, "").unwrap();
    d.env
        .push(("NOTIFY_SOCKET".into(), notify_path.display().to_string()));
    d.args
        .extend(["--log-format".to_string(), "json".to_string()]);

    // READY=1 arrives, and at that moment the socket already answers.
    let socket = d.socket.clone();
    let watcher = std::thread::spawn(move || {
        let msg = recv(&sock, Duration::from_secs(60));
        let answered = std::os::unix::net::UnixStream::connect(&socket).is_ok();
        (msg, answered, sock)
    });
    d.spawn().await;
    let (msg, answered, sock) = watcher.join().unwrap();
    let msg = msg.expect("READY=1 within a minute");
    assert!(msg.contains("READY=1"), "{msg:?}");
    assert!(
        msg.contains(&format!("MAINPID={}", d.pid().unwrap())),
        "{msg:?}"
    );
    assert!(answered, "READY=1 was sent before the CRI socket answered");
    // Recovery ran before it: the pod made before the restart is there.
    let mut rt = d.rt().await;
    assert_eq!(sandbox_status(&mut rt, &pod).await.state, 0, "ready");

    // A container started now: its monitor is the daemon's child and must not have
    // NOTIFY_SOCKET.
    let id = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config("second", BUSYBOX, &["sleep", "3600"])),
            sandbox_config: Some(pod_config("notified", &d.root.join("logs"))),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    rt.start_container(StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    let shims = d.shim_processes();
    assert!(!shims.is_empty(), "no monitors found");
    for (pid, cmd) in &shims {
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&env).contains("NOTIFY_SOCKET"),
            "monitor {pid} ({cmd}) inherited NOTIFY_SOCKET"
        );
    }

    // STOPPING=1 on SIGTERM, and the daemon ends by itself; pods keep running.
    let pid = d.pid().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGTERM).unwrap();
    let msg = recv(&sock, Duration::from_secs(30)).expect("STOPPING=1");
    assert!(msg.contains("STOPPING=1"), "{msg:?}");
    assert!(d.wait_exit(Duration::from_secs(30)), "daemon did not exit");

    // JSON logs: every line of this run is one object with a level, a target and fields.
    let log = std::fs::read_to_string(&d.log).unwrap();
    let mut lines = 0;
    let mut spans = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["level"].is_string() && v["target"].is_string(), "{line}");
        assert!(v["fields"].is_object(), "{line}");
        if v["span"]["container_id"].is_string() || v["span"]["sandbox_id"].is_string() {
            spans += 1;
        }
        lines += 1;
    }
    assert!(lines > 5, "too few log lines: {log}");
    assert!(spans > 0, "no line carries its span's IDs: {log}");

    d.env.clear();
    d.args.clear();
    d.spawn().await;
    let mut rt = d.rt().await;
    for c in ids.iter().chain([&id]) {
        assert_eq!(
            container_status(&mut rt, c).await.state,
            ContainerState::ContainerRunning as i32,
            "a daemon stop must leave containers running"
        );
    }
    d.cleanup().await;
}

fn peapod(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin_dir().join("peapod"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `peapod config default` is a config `config check` accepts and the daemon runs with;
/// `config check` names the line and key of every error; the daemon refuses a file with an
/// unknown key rather than ignoring it; Status verbose shows the effective config.
#[tokio::test(flavor = "multi_thread")]
async fn config_default_check_and_the_effective_config() {
    if !require_root() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("peapod-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (code, default, _) = peapod(&["config", "default"]);
    assert_eq!(code, 0);
    assert!(default.lines().filter(|l| l.starts_with('#')).count() > 20);
    let file = dir.join("default.toml");
    std::fs::write(&file, &default).unwrap();
    let (code, out, _) = peapod(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("{}: ok", file.display()).as_str())
    );

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "socket = \"/run/x.sock\"\nsockt = \"/typo\"\n[network]\nmode = \"bridge\"\n\
         pod_cidr = \"10.1.0.0/99\"\n[static_pods]\nmanifests = \"/etc/x\"\n",
    )
    .unwrap();
    let (code, out, _) = peapod(&["config", "check", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let b = bad.display();
    for want in [
        format!("{b}:2: sockt: unknown field"),
        format!("{b}:4: network.mode: unknown variant `bridge`"),
        format!("{b}:7: static_pods.manifests: unknown field"),
    ] {
        assert!(out.contains(&want), "{want:?} missing from:\n{out}");
    }
    // Once the keys are right, the values are checked, each at its line.
    std::fs::write(
        &bad,
        "root_dir = \"var/lib\"\n[network]\npod_cidr = \"10.1.0.0/99\"\n",
    )
    .unwrap();
    let (code, out, _) = peapod(&["config", "check", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!("{b}:1: root_dir: must be absolute")),
        "{out}"
    );
    assert!(out.contains(&format!("{b}:3: network.pod_cidr:")), "{out}");

    // The daemon itself: an unknown key stops it with the key and line named.
    std::fs::write(&bad, "socket = \"/run/x.sock\"\n\nsockt = 1\n").unwrap();
    let (code, _, err) = peapod(&["--config", bad.to_str().unwrap(), "daemon"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sockt") && err.contains("line 3"), "{err}");

    // The effective config of a running daemon, as crictl info shows it.
    let d = Daemon::start_with("pids_limit = 77\n").await;
    let mut rt = d.rt().await;
    let s = rt
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let cfg: serde_json::Value = serde_json::from_str(&s.info["config"]).unwrap();
    assert_eq!(cfg["pids_limit"], 77, "{cfg}");
    assert_eq!(cfg["static_pods"]["node_name"], "peapod-it", "{cfg}");
    if let Some(crictl) = crictl() {
        let out = Command::new(crictl)
            .arg("--runtime-endpoint")
            .arg(format!("unix://{}", d.socket.display()))
            .arg("info")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(info["config"]["pids_limit"], 77, "{info}");
        assert_eq!(info["config"]["socket"], d.socket.to_str().unwrap());
    } else {
        eprintln!("skipped: crictl info (no crictl here)");
    }
    d.cleanup().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// GET /metrics with a real HTTP client; the body parsed by a Prometheus text-format parser.
async fn scrape(addr: &str) -> (String, prometheus_parse::Scrape) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("/metrics")
        .header("host", addr)
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    (text, scrape)
}

fn sample<'a>(
    s: &'a prometheus_parse::Scrape,
    metric: &str,
    labels: &[(&str, &str)],
) -> Option<&'a prometheus_parse::Sample> {
    s.samples.iter().find(|x| {
        x.metric == metric
            && labels
                .iter()
                .all(|(k, v)| x.labels.get(k).is_some_and(|l| l == *v))
    })
}

fn scalar(s: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    use prometheus_parse::Value;
    match sample(s, metric, labels).map(|x| &x.value) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        other => panic!("{metric}{labels:?}: {other:?}"),
    }
}

/// The metrics endpoint, off by default and on 127.0.0.1 when only a port is given: RPC
/// counts, failures by code, latency, pod starts, objects by state, monitors, pulls and
/// start-up recovery, each changing with what the daemon did.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_endpoint_counts_what_the_daemon_did() {
    if !require_root() {
        return;
    }
    // Off unless asked for: no "serving metrics" line, nothing listening.
    let d = Daemon::start().await;
    assert!(!d.log_text().contains("serving metrics"));
    d.cleanup().await;

    let reg = Registry::start();
    // An image none of whose blobs the daemon has: the pull downloads all of them.
    let image = format!("{}/metrics/random:1", reg.addr);
    let layout = std::env::temp_dir().join(format!("peapod-metrics-{}", std::process::id()));
    let (_, layer_size) = layout::random_image(&layout, 256 << 10);
    reg.push_layout(&layout, "metrics/random:1");
    let _ = std::fs::remove_dir_all(&layout);
    let mut d = Daemon::start_with("metrics_address = \":0\"\n").await;
    let addr_of = |log: &str| {
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("serving metrics"))
            .expect("a serving metrics line");
        let at = line.find("address=").unwrap() + "address=".len();
        line[at..].split_whitespace().next().unwrap().to_string()
    };
    let addr = addr_of(&d.log_text());
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    let mut img = d.img().await;
    img.pull_image(PullImageRequest {
        image: Some(ImageSpec {
            image: image.clone(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut rt = d.rt().await;
    let (pod, _) = run_pod(
        &mut rt,
        pod_config("scraped", &d.root.join("logs")),
        vec![
            container_config("a", BUSYBOX, &["sleep", "3600"]),
            container_config("b", BUSYBOX, &["sleep", "3600"]),
        ],
    )
    .await;
    let err = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: "nonexistent".into(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    let (text, s) = scrape(&addr).await;
    let rps = [
        ("service", "runtime.v1.RuntimeService"),
        ("method", "RunPodSandbox"),
    ];
    assert_eq!(
        scalar(&s, "peapod_grpc_requests_total", &rps),
        1.0,
        "{text}"
    );
    assert_eq!(
        scalar(
            &s,
            "peapod_grpc_requests_total",
            &[("method", "StartContainer")]
        ),
        2.0
    );
    assert_eq!(
        scalar(
            &s,
            "peapod_grpc_errors_total",
            &[("method", "PodSandboxStatus"), ("code", "NotFound")]
        ),
        1.0,
        "{text}"
    );
    assert!(
        sample(
            &s,
            "peapod_grpc_errors_total",
            &[("method", "RunPodSandbox")]
        )
        .is_none(),
        "a call that succeeded counted as an error: {text}"
    );
    match &sample(&s, "peapod_grpc_request_duration_seconds", &rps)
        .expect("RPC latency")
        .value
    {
        prometheus_parse::Value::Histogram(buckets) => {
            assert_eq!(buckets.last().unwrap().count, 1.0, "{buckets:?}")
        }
        v => panic!("not a histogram: {v:?}"),
    }
    assert!(
        text.contains("peapod_pod_sandbox_start_duration_seconds_count 1"),
        "{text}"
    );
    assert!(
        text.contains("peapod_container_start_duration_seconds_count 2"),
        "{text}"
    );
    assert_eq!(scalar(&s, "peapod_sandboxes", &[("state", "ready")]), 1.0);
    assert_eq!(
        scalar(&s, "peapod_containers", &[("state", "running")]),
        2.0
    );
    assert_eq!(scalar(&s, "peapod_monitors", &[]), 2.0, "{text}");
    assert_eq!(
        scalar(&s, "peapod_image_pulls_total", &[("result", "success")]),
        1.0
    );
    let pulled = scalar(&s, "peapod_image_pull_bytes_total", &[]);
    assert!(
        pulled > layer_size as f64,
        "the layer alone is {layer_size} bytes: {pulled}"
    );
    assert!(text.contains("peapod_image_pull_duration_seconds_count 1"));
    let recovery = scalar(&s, "peapod_recovery_duration_seconds", &[]);
    assert!(recovery > 0.0 && recovery < 60.0, "{recovery}");

    // Stopped pod: the gauges follow; a restarted daemon recovers it and says so.
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    let (_, s) = scrape(&addr).await;
    assert_eq!(scalar(&s, "peapod_sandboxes", &[("state", "ready")]), 0.0);
    assert_eq!(
        scalar(&s, "peapod_sandboxes", &[("state", "notready")]),
        1.0
    );
    assert_eq!(scalar(&s, "peapod_containers", &[("state", "exited")]), 2.0);
    assert_eq!(scalar(&s, "peapod_monitors", &[]), 0.0);
    d.kill();
    d.spawn().await;
    let addr = addr_of(&d.log_text());
    let (text, s) = scrape(&addr).await;
    assert_eq!(
        scalar(&s, "peapod_recovered_objects", &[("state", "sandbox")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        scalar(&s, "peapod_recovered_objects", &[("state", "container")]),
        2.0
    );
    // Only /metrics is served.
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(
            hyper::Request::get("/debug")
                .header("host", &addr)
                .body(http_body_util::Empty::<hyper::body::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    d.cleanup().await;
}
