//! Exec and PortForward through the daemon's streaming server, end to end: the CRI RPC hands
//! out a URL, a real WebSocket client (tokio-tungstenite) speaks Kubernetes' channel protocol
//! to it, and the command runs in the container through runc exec (with a pty for tty), the
//! connection is made inside the pod's network namespace.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use peapod::api::*;
use peapod_integration::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tonic::Code;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn connect(url: &str, proto: &str) -> Ws {
    let url = url.replacen("http://", "ws://", 1);
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", proto.parse().unwrap());
    let addr = req.uri().authority().unwrap().as_str().to_string();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    assert_eq!(
        resp.headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap().to_string()),
        Some(proto.to_string())
    );
    ws
}

/// Every channel's bytes until the server closes, in order of arrival.
async fn collect(ws: &mut Ws) -> std::collections::HashMap<u8, Vec<u8>> {
    let mut out: std::collections::HashMap<u8, Vec<u8>> = Default::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the stream did not end");
        match msg {
            Some(Ok(Message::Binary(b))) if !b.is_empty() => {
                out.entry(b[0]).or_default().extend_from_slice(&b[1..]);
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return out,
            _ => {}
        }
    }
}

fn text(b: Option<&Vec<u8>>) -> String {
    b.map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_and_port_forward_over_websocket() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let logs = d.root.parent().unwrap().join("logs");
    let mut rt = d.rt().await;
    let (pod, ids) = run_pod(
        &mut rt,
        pod_config("stream", &logs),
        vec![
            container_config("app", BUSYBOX, &["sleep", "1000"]),
            container_config(
                "srv",
                BUSYBOX,
                &[
                    "sh",
                    "-c",
                    "while true; do echo pong | nc -l -p 18080; done",
                ],
            ),
        ],
    )
    .await;
    let id = &ids[0];

    // Exec with stdin, stdout and stderr apart, and the exit code on the error channel.
    let url = rt
        .exec(ExecRequest {
            container_id: id.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "cat; echo oops >&2; exit 3".into(),
            ],
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        })
        .await
        .expect("Exec")
        .into_inner()
        .url;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let mut ws = connect(&url, "v5.channel.k8s.io").await;
    ws.send(Message::Binary(b"\x00hello from stdin\n".to_vec().into()))
        .await
        .unwrap();
    // v5: close our stdin.
    ws.send(Message::Binary(vec![255, 0].into())).await.unwrap();
    let got = collect(&mut ws).await;
    assert_eq!(text(got.get(&1)), "hello from stdin\n");
    assert_eq!(text(got.get(&2)), "oops\n");
    let status = text(got.get(&3));
    assert!(
        status.contains("NonZeroExitCode") && status.contains("\"3\""),
        "{status}"
    );
    // The token was single use.
    let ws_url = url.replacen("http://", "ws://", 1);
    let req = ws_url.as_str().into_client_request().unwrap();
    let addr = req.uri().authority().unwrap().as_str().to_string();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let reuse = tokio_tungstenite::client_async(req, tcp).await;
    assert!(reuse.is_err(), "a used token was accepted again");

    // A tty exec sees the client's terminal size.
    let url = rt
        .exec(ExecRequest {
            container_id: id.clone(),
            cmd: vec!["sh".into(), "-c".into(), "sleep 0.5; stty size".into()],
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        })
        .await
        .expect("Exec tty")
        .into_inner()
        .url;
    let mut ws = connect(&url, "v4.channel.k8s.io").await;
    let mut resize = vec![4u8];
    resize.extend_from_slice(br#"{"Width":123,"Height":45}"#);
    ws.send(Message::Binary(resize.into())).await.unwrap();
    let got = collect(&mut ws).await;
    assert!(text(got.get(&1)).contains("45 123"), "tty exec got {got:?}");
    assert!(
        text(got.get(&3)).contains("Success"),
        "{}",
        text(got.get(&3))
    );

    // Exec refuses containers that do not run.
    let e = rt
        .exec(ExecRequest {
            container_id: "no-such".into(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Port forward reaches a server that listens only inside the pod.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        std::net::TcpStream::connect("127.0.0.1:18080").is_err(),
        "the pod's port is open on the host"
    );
    let url = rt
        .port_forward(PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![18080],
        })
        .await
        .expect("PortForward")
        .into_inner()
        .url;
    let mut ws = connect(&format!("{url}?port=18080"), "v4.channel.k8s.io").await;
    ws.send(Message::Binary(b"\x00ping\n".to_vec().into()))
        .await
        .unwrap();
    let got = collect(&mut ws).await;
    // Each channel starts with the port, two bytes little-endian.
    let data = got.get(&0).cloned().unwrap_or_default();
    assert!(
        data.len() >= 2 && data[..2] == 18080u16.to_le_bytes(),
        "{data:?}"
    );
    assert_eq!(String::from_utf8_lossy(&data[2..]), "pong\n");
    d.cleanup().await;
}

/// Reads the WebSocket until channel `chan` has received `needle` (or 20 s pass); returns what
/// that channel got.
async fn read_until(ws: &mut Ws, chan: u8, needle: &str) -> String {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&got).contains(needle) {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) if b.first() == Some(&chan) => {
                got.extend_from_slice(&b[1..]);
            }
            Ok(Some(Ok(_))) => {}
            other => panic!(
                "waiting for {needle:?} on channel {chan}: got {:?} then {other:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

async fn attach_url(rt: &mut Rt, id: &str, tty: bool) -> String {
    rt.attach(AttachRequest {
        container_id: id.to_string(),
        stdin: true,
        stdout: true,
        stderr: !tty,
        tty,
    })
    .await
    .expect("Attach")
    .into_inner()
    .url
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_over_websocket_survives_a_daemon_restart() {
    if !require_root() {
        return;
    }
    let mut d = Daemon::start().await;
    let logs = d.root.parent().unwrap().join("logs");
    let mut rt = d.rt().await;
    let mut cat = container_config("cat", BUSYBOX, &["cat"]);
    cat.stdin = true;
    let mut tty = container_config("tty", BUSYBOX, &["sh"]);
    tty.stdin = true;
    tty.tty = true;
    let mut once = container_config("once", BUSYBOX, &["sh", "-c", "cat; echo done-reading"]);
    once.stdin = true;
    once.stdin_once = true;
    let (pod, ids) = run_pod(&mut rt, pod_config("attach", &logs), vec![cat, tty, once]).await;
    let log_dir = logs.clone();

    // What is typed comes back from cat, and goes to the CRI log too.
    let mut ws = connect(
        &attach_url(&mut rt, &ids[0], false).await,
        "v5.channel.k8s.io",
    )
    .await;
    ws.send(Message::Binary(b"\x00hello attach\n".to_vec().into()))
        .await
        .unwrap();
    read_until(&mut ws, 1, "hello attach\n").await;
    wait_log(&log_dir.join("cat/0.log"), Duration::from_secs(5), |l| {
        l.iter().any(|l| l == "hello attach")
    })
    .await;
    // Detaching (the client goes away) leaves the container running with its stdin open.
    drop(ws);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        container_status(&mut rt, &ids[0]).await.state,
        ContainerState::ContainerRunning as i32
    );

    // After a kill -9 of the daemon, the monitor still serves attach.
    d.kill();
    d.spawn().await;
    let mut rt = d.rt().await;
    let mut ws = connect(
        &attach_url(&mut rt, &ids[0], false).await,
        "v4.channel.k8s.io",
    )
    .await;
    ws.send(Message::Binary(b"\x00after restart\n".to_vec().into()))
        .await
        .unwrap();
    read_until(&mut ws, 1, "after restart\n").await;
    drop(ws);

    // A tty attach: the resize reaches the container's terminal.
    let mut ws = connect(
        &attach_url(&mut rt, &ids[1], true).await,
        "v5.channel.k8s.io",
    )
    .await;
    let mut resize = vec![4u8];
    resize.extend_from_slice(br#"{"Width":99,"Height":33}"#);
    ws.send(Message::Binary(resize.into())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    ws.send(Message::Binary(b"\x00stty size\n".to_vec().into()))
        .await
        .unwrap();
    read_until(&mut ws, 1, "33 99").await;
    drop(ws);

    // stdin_once: when the first attach closes its stdin, the container's stdin closes.
    let mut ws = connect(
        &attach_url(&mut rt, &ids[2], false).await,
        "v5.channel.k8s.io",
    )
    .await;
    ws.send(Message::Binary(b"\x00only once\n".to_vec().into()))
        .await
        .unwrap();
    ws.send(Message::Binary(vec![255, 0].into())).await.unwrap();
    let out = read_until(&mut ws, 1, "done-reading").await;
    assert!(out.starts_with("only once\n"), "{out:?}");
    // The container exited: the attach ends (collect fails if it does not), and a new one is
    // refused.
    collect(&mut ws).await;
    wait_exited(&mut rt, &ids[2], Duration::from_secs(10)).await;
    let e = rt
        .attach(AttachRequest {
            container_id: ids[2].clone(),
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let _ = pod;
    d.cleanup().await;
}

/// RSS (KiB), open fds and threads of a process.
fn footprint(pid: u32) -> (u64, usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (field("VmRSS:"), fds, field("Threads:") as usize)
}

/// One failing request: connects, sends a terminal size, and expects the stream to end with an
/// error on the error channel.
async fn failing_tty_stream(url: String) {
    let mut ws = connect(&url, "v4.channel.k8s.io").await;
    let mut resize = vec![4u8];
    resize.extend_from_slice(br#"{"Width":80,"Height":24}"#);
    let _ = ws.send(Message::Binary(resize.into())).await;
    let got = collect(&mut ws).await;
    let err = text(got.get(&3));
    assert!(err.contains("not running"), "{got:?}");
}

/// CVE-2022-23471 (containerd): a tty exec that failed to start leaked its resize goroutine,
/// so a client could grow the daemon's memory without bound. Here 10,000 failing tty requests
/// (half exec, half attach, each sending a resize; PEAPOD_TTY_FAILURES overrides the count)
/// must leave the daemon's memory, fds and threads flat. The URLs are handed out while their
/// container runs, which is then stopped, so each request fails inside the backend, after the
/// streaming server has set up the tty's resize stream.
#[tokio::test(flavor = "multi_thread")]
async fn failing_tty_requests_leave_the_daemon_flat() {
    if !require_root() {
        return;
    }
    let total: usize = std::env::var("PEAPOD_TTY_FAILURES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let d = Daemon::start().await;
    let logs = d.root.parent().unwrap().join("logs");
    let mut rt = d.rt().await;
    let pod_cfg = pod_config("tty-fail", &logs);
    let (pod, _) = run_pod(&mut rt, pod_cfg.clone(), vec![]).await;
    // Each round stays under the streaming server's 1000 outstanding tokens.
    const ROUND: usize = 800;
    let rounds = total.div_ceil(ROUND).max(2);
    let mut before = None;
    let started = std::time::Instant::now();
    for round in 0..rounds {
        let mut cfg = container_config(&format!("victim-{round}"), BUSYBOX, &["sleep", "1000"]);
        cfg.tty = true;
        cfg.stdin = true;
        let id = rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(cfg),
                sandbox_config: Some(pod_cfg.clone()),
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
        let mut urls = Vec::with_capacity(ROUND);
        for i in 0..ROUND {
            let url = if i % 2 == 0 {
                rt.exec(ExecRequest {
                    container_id: id.clone(),
                    cmd: vec!["sh".into()],
                    stdin: true,
                    stdout: true,
                    tty: true,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .url
            } else {
                attach_url(&mut rt, &id, true).await
            };
            urls.push(url);
        }
        rt.stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in urls.chunks(ROUND / 8) {
            let chunk = chunk.to_vec();
            tasks.spawn(async move {
                for url in chunk {
                    failing_tty_stream(url).await;
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        rt.remove_container(RemoveContainerRequest { container_id: id })
            .await
            .unwrap();
        if round == 0 {
            // The first round warms allocator pools and buffers up; measure from there.
            tokio::time::sleep(Duration::from_millis(300)).await;
            before = Some(footprint(d.pid().unwrap()));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss0, fds0, threads0) = before.unwrap();
    let (rss1, fds1, threads1) = footprint(d.pid().unwrap());
    eprintln!(
        "{} failing tty requests in {:.1?}: RSS {rss0} -> {rss1} KiB, fds {fds0} -> {fds1}, \
         threads {threads0} -> {threads1}",
        (rounds - 1) * ROUND,
        started.elapsed()
    );
    assert!(
        rss1 <= rss0 + 4096,
        "RSS grew from {rss0} to {rss1} KiB over the failing requests"
    );
    assert!(fds1 <= fds0 + 2, "fds grew from {fds0} to {fds1}");
    assert!(
        threads1 <= threads0 + 2,
        "threads grew from {threads0} to {threads1}"
    );
    d.cleanup().await;
}
