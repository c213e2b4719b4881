//! End to end: the real server on 127.0.0.1, a fake backend whose exec runs host processes,
//! and real clients: moby/spdystream from Go (integration/go/spdy_client, the SPDY library
//! of client-go, kubelet and crictl), the Python `websockets` package
//! (integration/py/stream_ws_client.py), tokio-tungstenite, and crictl when there is one
//! ($CRICTL or on PATH). A client whose toolchain is missing here prints SKIP and its test
//! passes without running.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::*;
use crate::api::{ExecResponse, PortForwardResponse, VersionRequest, VersionResponse};

/// What the fake backend saw.
#[derive(Default)]
struct Log(Mutex<Vec<String>>);

impl Log {
    fn push(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    fn has(&self, s: &str) -> bool {
        self.0.lock().unwrap().iter().any(|e| e == s)
    }
    fn find(&self, prefix: &str) -> Option<String> {
        let v = self.0.lock().unwrap();
        v.iter().find(|e| e.starts_with(prefix)).cloned()
    }
}

/// Records "exec dropped" when an exec future is dropped before it resolved.
struct DropWatch(Arc<Log>, bool);

impl Drop for DropWatch {
    fn drop(&mut self) {
        if !self.1 {
            self.0.push("exec dropped");
        }
    }
}

struct Fake {
    log: Arc<Log>,
}

/// exec runs `cmd` on the host; attach copies stdin to stdout; port_forward connects to the
/// port on 127.0.0.1.
impl Backend for Fake {
    fn exec(
        &self,
        _container_id: String,
        cmd: Vec<String>,
        io: StreamIo,
    ) -> BoxFuture<'static, Result<i32, BackendError>> {
        let log = self.log.clone();
        Box::pin(async move {
            use std::process::Stdio;
            let mut watch = DropWatch(log.clone(), false);
            let pipe = |b: bool| if b { Stdio::piped() } else { Stdio::null() };
            let mut child = tokio::process::Command::new(&cmd[0])
                .args(&cmd[1..])
                .stdin(pipe(io.stdin.is_some()))
                .stdout(pipe(io.stdout.is_some()))
                .stderr(pipe(io.stderr.is_some()))
                .kill_on_drop(true)
                .spawn()?;
            log.push(format!("pid {}", child.id().unwrap()));
            let (mut cin, mut cout, mut cerr) =
                (child.stdin.take(), child.stdout.take(), child.stderr.take());
            let StreamIo {
                stdin,
                stdout,
                stderr,
                resize,
                ..
            } = io;
            let stdin_pump = async move {
                if let (Some(mut from), Some(mut to)) = (stdin, cin.take()) {
                    let _ = tokio::io::copy(&mut from, &mut to).await;
                }
            };
            let out = async move {
                if let (Some(mut from), Some(mut to)) = (cout.take(), stdout) {
                    let _ = tokio::io::copy(&mut from, &mut to).await;
                    let _ = to.shutdown().await;
                }
            };
            let err = async move {
                if let (Some(mut from), Some(mut to)) = (cerr.take(), stderr) {
                    let _ = tokio::io::copy(&mut from, &mut to).await;
                    let _ = to.shutdown().await;
                }
            };
            let sizes = {
                let log = log.clone();
                async move {
                    if let Some(mut rx) = resize {
                        while let Some(s) = rx.recv().await {
                            log.push(format!("resize {}x{}", s.width, s.height));
                        }
                    }
                }
            };
            let main = async {
                let (_, _, st) = tokio::join!(out, err, child.wait());
                st
            };
            tokio::pin!(main, stdin_pump, sizes);
            let (mut stdin_done, mut sizes_done) = (false, false);
            let status = loop {
                tokio::select! {
                    st = &mut main => break st?,
                    _ = &mut stdin_pump, if !stdin_done => stdin_done = true,
                    _ = &mut sizes, if !sizes_done => sizes_done = true,
                }
            };
            watch.1 = true;
            Ok(status.code().unwrap_or(128))
        })
    }

    fn attach(&self, _id: String, io: StreamIo) -> BoxFuture<'static, Result<(), BackendError>> {
        Box::pin(async move {
            if let (Some(mut i), Some(mut o)) = (io.stdin, io.stdout) {
                tokio::io::copy(&mut i, &mut o).await?;
                o.shutdown().await?;
            }
            Ok(())
        })
    }

    fn port_forward(
        &self,
        _pod: String,
        port: u16,
    ) -> BoxFuture<'static, Result<Box<dyn AsyncReadWrite>, BackendError>> {
        Box::pin(async move {
            let s = TcpStream::connect(("127.0.0.1", port)).await?;
            Ok(Box::new(s) as Box<dyn AsyncReadWrite>)
        })
    }
}

async fn server() -> (Server, Arc<Log>) {
    let log = Arc::new(Log::default());
    let s = Server::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Fake { log: log.clone() }),
    )
    .await
    .unwrap();
    (s, log)
}

fn exec_req(cmd: &[&str], stdin: bool, stdout: bool, stderr: bool, tty: bool) -> ExecRequest {
    ExecRequest {
        container_id: "c1".into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        stdin,
        stdout,
        stderr,
        tty,
    }
}

/// A TCP service on 127.0.0.1 that answers each connection's first read with
/// "echo:" + what it read, then closes.
async fn echo_service() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = c.read(&mut buf).await.unwrap_or(0);
                let _ = c.write_all(b"echo:").await;
                let _ = c.write_all(&buf[..n]).await;
            });
        }
    });
    port
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

fn target_dir() -> PathBuf {
    // target/debug/deps/peapod-HASH
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn clients_dir() -> PathBuf {
    let d = target_dir().join("streaming-clients");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// integration/go/spdy_client, built offline in GOPATH mode against Debian's
/// golang-github-docker-spdystream-dev (hack/deps.sh installs it). None after SKIP.
fn go_client() -> Option<&'static Path> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        let spdystream = Path::new("/usr/share/gocode/src/github.com/moby/spdystream");
        if !spdystream.is_dir() || crate::config::find_in_path("go").is_none() {
            eprintln!("SKIP: no Go toolchain or moby/spdystream (hack/deps.sh installs them)");
            return None;
        }
        let dir = clients_dir();
        let bin = dir.join("spdy_client");
        let out = std::process::Command::new("go")
            .args(["build", "-o"])
            .arg(&bin)
            .arg(".")
            .current_dir(workspace().join("integration/go/spdy_client"))
            .env("GO111MODULE", "off")
            .env("GOPATH", "/usr/share/gocode")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "")
            .env("GOCACHE", dir.join("go-cache"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "go build integration/go/spdy_client: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(bin)
    })
    .as_deref()
}

/// A venv with `websockets` under the target dir (pip from PyPI, once). None after SKIP.
fn python() -> Option<&'static Path> {
    static PY: OnceLock<Option<PathBuf>> = OnceLock::new();
    PY.get_or_init(|| {
        let venv = clients_dir().join("venv");
        let py = venv.join("bin/python");
        let stamp = venv.join("websockets.ok");
        if stamp.exists() {
            return Some(py);
        }
        let run = |c: &mut std::process::Command| c.output().map(|o| (o.status.success(), o));
        match run(std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv))
        {
            Ok((true, _)) => {}
            other => {
                eprintln!("SKIP: python3 -m venv failed: {other:?}");
                return None;
            }
        }
        match run(std::process::Command::new(&py).args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            "websockets",
        ])) {
            Ok((true, _)) => {
                std::fs::write(&stamp, "").unwrap();
                Some(py)
            }
            Ok((false, o)) => {
                eprintln!(
                    "SKIP: pip could not install websockets (no package registry?): {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                None
            }
            Err(e) => {
                eprintln!("SKIP: pip: {e}");
                None
            }
        }
    })
    .as_deref()
}

/// Runs a client and parses the JSON line it prints.
async fn run_json(prog: &Path, args: &[&str]) -> serde_json::Value {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(prog).args(args).output(),
    )
    .await
    .expect("client finishes within 60 s")
    .unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        prog.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    })
}

async fn go_exec(
    url: &str,
    protocols: &str,
    streams: &str,
    stdin: &str,
) -> Option<serde_json::Value> {
    let go = go_client()?;
    Some(run_json(go, &["exec", url, protocols, streams, stdin]).await)
}

const ALL: &str = "v4.channel.k8s.io,v3.channel.k8s.io,v2.channel.k8s.io,channel.k8s.io";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_exec_v4_reports_the_exit_code_like_kubelet() {
    let (srv, _) = server().await;
    let cmd = ["/bin/sh", "-c", "cat; echo err >&2; exit 3"];
    let url = srv
        .get_exec(&exec_req(&cmd, true, true, true, false))
        .unwrap();
    let Some(r) = go_exec(&url, ALL, "error,stdin,stdout,stderr", "text:hello\n").await else {
        return;
    };
    assert_eq!(r["protocol"], "v4.channel.k8s.io", "{r}");
    assert_eq!(r["stdout"], "hello\n", "{r}");
    assert_eq!(r["stderr"], "err\n", "{r}");
    assert_eq!(
        r["error"],
        r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [/bin/sh -c cat; echo err >&2; exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
    );
    // Success, and the token was single-use.
    let url2 = srv
        .get_exec(&exec_req(&["true"], false, true, false, false))
        .unwrap();
    let r = go_exec(&url2, ALL, "error,stdout", "0").await.unwrap();
    assert_eq!(r["error"], r#"{"metadata":{},"status":"Success"}"#);
    let r = go_exec(&url2, ALL, "error,stdout", "0").await.unwrap();
    assert_eq!(r["status"], 404, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_exec_older_versions_write_text_errors() {
    let (srv, _) = server().await;
    for (proto, streams) in [
        ("v3.channel.k8s.io", "error,stdout"),
        ("v2.channel.k8s.io", "error,stdout"),
        ("channel.k8s.io", "error,stdout"),
    ] {
        let url = srv
            .get_exec(&exec_req(
                &["/bin/sh", "-c", "echo x; exit 2"],
                false,
                true,
                false,
                false,
            ))
            .unwrap();
        let Some(r) = go_exec(&url, proto, streams, "0").await else {
            return;
        };
        assert_eq!(r["protocol"], proto, "{r}");
        assert_eq!(r["stdout"], "x\n");
        assert_eq!(
            r["error"],
            "command terminated with non-zero exit code: error executing command [/bin/sh -c \
             echo x; exit 2], exit code 2"
        );
    }
    let url = srv
        .get_exec(&exec_req(&["true"], false, true, false, false))
        .unwrap();
    let r = go_exec(&url, "v3.channel.k8s.io", "error,stdout", "0")
        .await
        .unwrap();
    assert_eq!(r["error"], "", "success writes nothing before v4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_exec_moves_megabytes_both_ways() {
    // Far past the 64 KiB windows: spdystream sends no WINDOW_UPDATE, and must not stall.
    let (srv, _) = server().await;
    let n = 3_000_000;
    let url = srv
        .get_exec(&exec_req(&["cat"], true, true, false, false))
        .unwrap();
    let Some(r) = go_exec(&url, ALL, "error,stdin,stdout", &n.to_string()).await else {
        return;
    };
    let pattern: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
    assert_eq!(r["stdout_len"], n, "{r}");
    assert_eq!(r["stdout_sha"], hex::encode(sha2::Sha256::digest(&pattern)));
    assert_eq!(r["error"], r#"{"metadata":{},"status":"Success"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_exec_with_a_tty_gets_resize_events() {
    let (srv, log) = server().await;
    let url = srv
        .get_exec(&exec_req(&["cat"], true, true, false, true))
        .unwrap();
    let Some(r) = go_exec(&url, ALL, "error,stdin,stdout,resize", "text:typed\n").await else {
        return;
    };
    assert_eq!(r["stdout"], "typed\n", "{r}");
    assert!(log.has("resize 80x24"), "{:?}", log.0.lock().unwrap());
    assert!(log.has("resize 100x30"), "{:?}", log.0.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_negotiation_failure_is_forbidden() {
    let (srv, _) = server().await;
    let url = srv
        .get_exec(&exec_req(&["true"], false, true, false, false))
        .unwrap();
    let Some(r) = go_exec(&url, "v9.channel.k8s.io", "error", "0").await else {
        return;
    };
    assert_eq!(r["status"], 403, "{r}");
    assert!(
        r["body"]
            .as_str()
            .unwrap()
            .contains("unable to negotiate protocol"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_port_forward_pumps_bytes_and_reports_errors() {
    let (srv, _) = server().await;
    let Some(go) = go_client() else { return };
    let port = echo_service().await;
    let pf = PortForwardRequest {
        pod_sandbox_id: "pod1".into(),
        port: vec![],
    };
    let url = srv.get_port_forward(&pf).unwrap();
    let r = run_json(go, &["portforward", &url, &port.to_string(), "hello"]).await;
    assert_eq!(r["protocol"], "portforward.k8s.io", "{r}");
    assert_eq!(r["data"], "echo:hello", "{r}");
    assert_eq!(r["error"], "", "{r}");

    let dead = closed_port().await;
    let url = srv.get_port_forward(&pf).unwrap();
    let r = run_json(go, &["portforward", &url, &dead.to_string(), "x"]).await;
    let err: serde_json::Value = serde_json::from_str(r["error"].as_str().unwrap()).unwrap();
    assert_eq!(err["closeConnection"], true, "{r}");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!("error forwarding port {dead} to pod pod1: ")),
        "{msg}"
    );
}

fn hex_text(v: &serde_json::Value) -> String {
    String::from_utf8(hex::decode(v.as_str().unwrap()).unwrap()).unwrap()
}

/// A channel's messages, concatenated.
fn channel(r: &serde_json::Value, ch: u8) -> String {
    r["channels"][ch.to_string()]
        .as_array()
        .map(|m| m.iter().map(hex_text).collect())
        .unwrap_or_default()
}

fn ws_url(http: &str) -> String {
    http.replacen("http://", "ws://", 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_exec_v5_with_python_websockets() {
    let (srv, _) = server().await;
    let Some(py) = python() else { return };
    let script = workspace().join("integration/py/stream_ws_client.py");
    let script = script.to_str().unwrap();
    let cmd = ["/bin/sh", "-c", "cat; echo oops >&2; exit 7"];
    let url = ws_url(
        &srv.get_exec(&exec_req(&cmd, true, true, true, false))
            .unwrap(),
    );
    let r = run_json(py, &[script, "exec", &url, "v5.channel.k8s.io", "hi\n"]).await;
    assert_eq!(r["protocol"], "v5.channel.k8s.io", "{r}");
    assert_eq!(
        r["first"],
        serde_json::json!([1, 0]),
        "an empty stdout message first"
    );
    assert_eq!(channel(&r, 1), "hi\n", "the close signal ended stdin: {r}");
    assert_eq!(channel(&r, 2), "oops\n");
    assert_eq!(
        channel(&r, 3),
        r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [/bin/sh -c cat; echo oops >&2; exit 7], exit code 7","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"7"}]}}"#
    );
    assert_eq!(r["close_code"], 1000);

    // base64 before v4: text frames, a plain-text error.
    let url = ws_url(
        &srv.get_exec(&exec_req(
            &["/bin/sh", "-c", "echo out; exit 1"],
            false,
            true,
            false,
            false,
        ))
        .unwrap(),
    );
    let r = run_json(py, &[script, "exec", &url, "base64.channel.k8s.io", ""]).await;
    assert_eq!(r["protocol"], "base64.channel.k8s.io", "{r}");
    assert_eq!(channel(&r, 1), "out\n");
    assert_eq!(
        channel(&r, 3),
        "command terminated with non-zero exit code: error executing command [/bin/sh -c echo \
         out; exit 1], exit code 1"
    );

    // A subprotocol the server does not speak.
    let url = ws_url(
        &srv.get_exec(&exec_req(&["true"], false, true, false, false))
            .unwrap(),
    );
    let r = run_json(py, &[script, "exec", &url, "v9.channel.k8s.io", ""]).await;
    assert_eq!(r["status"], 403, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_port_forward_with_python_websockets() {
    let (srv, _) = server().await;
    let Some(py) = python() else { return };
    let script = workspace().join("integration/py/stream_ws_client.py");
    let port = echo_service().await;
    let pf = PortForwardRequest {
        pod_sandbox_id: "pod1".into(),
        port: vec![],
    };
    let url = format!(
        "{}?port={port}",
        ws_url(&srv.get_port_forward(&pf).unwrap())
    );
    let r = run_json(
        py,
        &[
            script.to_str().unwrap(),
            "portforward",
            &url,
            "v4.channel.k8s.io",
            "ping",
        ],
    )
    .await;
    assert_eq!(r["protocol"], "v4.channel.k8s.io", "{r}");
    let le = hex::encode(port.to_le_bytes());
    let data = r["channels"]["0"].as_array().unwrap();
    assert_eq!(
        data[0],
        le.as_str(),
        "the data channel starts with the port: {r}"
    );
    assert_eq!(
        r["channels"]["1"][0],
        le.as_str(),
        "so does the error channel: {r}"
    );
    let echoed: String = data[1..].iter().map(hex_text).collect();
    assert_eq!(echoed, "echo:ping");
    assert_eq!(
        r["channels"]["1"].as_array().unwrap().len(),
        1,
        "no error: {r}"
    );
}

async fn ws_connect(url: &str, proto: &str) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let mut req = ws_url(url).into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", proto.parse().unwrap());
    let tcp = TcpStream::connect(req.uri().authority().unwrap().as_str())
        .await
        .unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], proto);
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_attach_and_exec_with_tungstenite() {
    let (srv, _) = server().await;
    let req = AttachRequest {
        container_id: "c1".into(),
        stdin: true,
        stdout: true,
        ..Default::default()
    };
    let mut ws = ws_connect(&srv.get_attach(&req).unwrap(), "v5.channel.k8s.io").await;
    ws.send(Message::binary(b"\0attached".to_vec()))
        .await
        .unwrap();
    ws.send(Message::binary(vec![255, 0])).await.unwrap();
    let mut got: Vec<(u8, Vec<u8>)> = Vec::new();
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Binary(b) = m {
            got.push((b[0], b[1..].to_vec()));
        }
    }
    assert_eq!(
        got,
        vec![
            (1, vec![]),
            (1, b"attached".to_vec()),
            (3, br#"{"metadata":{},"status":"Success"}"#.to_vec())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_ends_the_process() {
    let (srv, log) = server().await;
    let cmd = ["/bin/sh", "-c", "echo started; exec sleep 600"];
    let url = srv
        .get_exec(&exec_req(&cmd, true, true, false, false))
        .unwrap();
    let mut ws = ws_connect(&url, "v4.channel.k8s.io").await;
    let mut out = Vec::new();
    while !out.ends_with(b"started\n") {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) if b[0] == 1 => out.extend_from_slice(&b[1..]),
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    let pid: i32 = log.find("pid ").unwrap()[4..].parse().unwrap();
    drop(ws);
    let gone = async {
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Gone, or a zombie waiting for tokio's reaper: either way the process ended.
            if log.has("exec dropped") && (stat.is_empty() || stat.contains(") Z ")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), gone)
        .await
        .expect("the backend future is dropped and the process killed");
}

/// One raw HTTP/1.1 request; the whole response (the server closes or it is read to the end
/// of the headers plus `Content-Length`).
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if n == 0 {
            return text;
        }
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn bad_tokens_and_requests_get_http_errors() {
    let (srv, _) = server().await;
    let addr = srv.local_addr();
    let get = |path: &str, extra: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n")
    };
    let r = raw(addr, &get("/exec/bogus", "")).await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    assert!(r.contains("unknown, already used, or expired"), "{r}");
    let r = raw(addr, &get("/nothing/here", "")).await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    // An exec token is not an attach token (and is used up by trying).
    let url = srv
        .get_exec(&exec_req(&["true"], false, true, false, false))
        .unwrap();
    let path = url.split_once(&addr.to_string()).unwrap().1.to_string();
    let r = raw(addr, &get(&path.replace("/exec/", "/attach/"), "")).await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    // A valid token without upgrade headers.
    let url = srv
        .get_exec(&exec_req(&["true"], false, true, false, false))
        .unwrap();
    let path = url.split_once(&addr.to_string()).unwrap().1.to_string();
    let r = raw(addr, &get(&path, "")).await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(r.contains("missing upgrade headers"), "{r}");
    let r = raw(addr, &get(&path, "")).await;
    assert!(
        r.starts_with("HTTP/1.1 404"),
        "the failed attempt used the token: {r}"
    );
    // Port forward over WebSocket needs ports.
    let pf = srv
        .get_port_forward(&PortForwardRequest {
            pod_sandbox_id: "p".into(),
            port: vec![],
        })
        .unwrap();
    let path = pf.split_once(&addr.to_string()).unwrap().1.to_string();
    let ws = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let r = raw(addr, &get(&path, ws)).await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(r.contains("\"port\" is required"), "{r}");
    let r = raw(
        addr,
        "PUT /exec/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
}

#[tokio::test]
async fn requests_are_validated_like_kubelet() {
    let (srv, _) = server().await;
    let bad = |e: Result<String, RequestError>| match e {
        Err(RequestError::Invalid(m)) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        bad(srv.get_exec(&exec_req(&["sh"], true, true, true, true))),
        "tty and stderr cannot both be true"
    );
    assert_eq!(
        bad(srv.get_exec(&exec_req(&["sh"], false, false, false, false))),
        "one of stdin, stdout, or stderr must be set"
    );
    assert_eq!(
        bad(srv.get_exec(&exec_req(&[], false, true, false, false))),
        "cmd: is required"
    );
    let mut r = exec_req(&["sh"], false, true, false, false);
    r.container_id.clear();
    assert_eq!(bad(srv.get_exec(&r)), "container_id: is required");
    assert_eq!(
        bad(srv.get_attach(&AttachRequest::default())),
        "container_id: is required"
    );
    assert_eq!(
        bad(srv.get_port_forward(&PortForwardRequest::default())),
        "pod_sandbox_id: is required"
    );
    let url = srv
        .get_exec(&exec_req(&["sh"], false, true, false, false))
        .unwrap();
    let prefix = format!("http://127.0.0.1:{}/exec/", srv.local_addr().port());
    assert!(url.starts_with(&prefix), "{url}");
    assert_eq!(url.len(), prefix.len() + 22);
    assert_eq!(
        url_host("0.0.0.0:10010".parse().unwrap()),
        "127.0.0.1:10010"
    );
    assert_eq!(url_host("[::]:1".parse().unwrap()), "[::1]:1");
}

#[tokio::test]
async fn garbage_after_a_spdy_upgrade_gets_goaway_and_the_server_lives_on() {
    let (srv, _) = server().await;
    let addr = srv.local_addr();
    let url = srv
        .get_exec(&exec_req(&["true"], false, true, false, false))
        .unwrap();
    let path = url.split_once(&addr.to_string()).unwrap().1.to_string();
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
             X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        c.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head
        .to_ascii_lowercase()
        .contains("x-stream-protocol-version: v4.channel.k8s.io"));
    // A control frame of SPDY version 2.
    c.write_all(&[0x80, 0x02, 0x00, 0x01, 0, 0, 0, 4, 1, 2, 3, 4])
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rest,
        [0x80, 0x03, 0x00, 0x07, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1],
        "GOAWAY PROTOCOL_ERROR, then the connection closes"
    );
    let r = raw(
        addr,
        "GET /exec/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
}

/// $CRICTL, else crictl on PATH.
fn crictl() -> Option<PathBuf> {
    std::env::var_os("CRICTL")
        .map(PathBuf::from)
        .or_else(|| crate::config::find_in_path("crictl"))
        .filter(|p| p.is_file())
}

/// A CRI endpoint with just what `crictl exec` and `port-forward` need: Version (the
/// connection check), Exec and PortForward answered by `srv`; anything else is UNIMPLEMENTED, naming the method.
#[derive(Clone)]
struct MiniCri(Arc<Server>);

impl tonic::server::NamedService for MiniCri {
    const NAME: &'static str = "runtime.v1.RuntimeService";
}

impl tower::Service<hyper::Request<tonic::body::Body>> for MiniCri {
    type Response = hyper::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: hyper::Request<tonic::body::Body>) -> Self::Future {
        use tonic::{Request, Response, Status};
        let srv = self.0.clone();
        Box::pin(async move {
            let status = |e: RequestError| Status::invalid_argument(e.to_string());
            Ok(match req.uri().path() {
                "/runtime.v1.RuntimeService/Version" => {
                    let svc = tower::service_fn(|_: Request<VersionRequest>| async {
                        Ok::<_, Status>(Response::new(VersionResponse {
                            version: "0.1.0".into(),
                            runtime_name: "peapod-streaming-test".into(),
                            runtime_version: "0".into(),
                            runtime_api_version: "v1".into(),
                        }))
                    });
                    tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
                        .unary(svc, req)
                        .await
                }
                "/runtime.v1.RuntimeService/Exec" => {
                    let svc = tower::service_fn(move |r: Request<ExecRequest>| {
                        let url = srv.get_exec(r.get_ref()).map_err(status);
                        async move { Ok(Response::new(ExecResponse { url: url? })) }
                    });
                    tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
                        .unary(svc, req)
                        .await
                }
                "/runtime.v1.RuntimeService/PortForward" => {
                    let svc = tower::service_fn(move |r: Request<PortForwardRequest>| {
                        let url = srv.get_port_forward(r.get_ref()).map_err(status);
                        async move { Ok(Response::new(PortForwardResponse { url: url? })) }
                    });
                    tonic::server::Grpc::new(tonic_prost::ProstCodec::default())
                        .unary(svc, req)
                        .await
                }
                other => Status::unimplemented(other.to_string()).into_http(),
            })
        })
    }
}

/// crictl's exec and port-forward (client-go's SPDY executor and port forwarder, as vendored
/// in cri-tools) against the server; SKIP where there is no crictl ($CRICTL or on PATH).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crictl_exec_and_port_forward() {
    let Some(crictl) = crictl() else {
        eprintln!("SKIP: no crictl ($CRICTL or on PATH)");
        return;
    };
    let (srv, _) = server().await;
    let dir = clients_dir().join(format!("cri-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("cri.sock");
    let _ = std::fs::remove_file(&sock);
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let cri = MiniCri(Arc::new(srv));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(cri)
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );
    let endpoint = format!("unix://{}", sock.display());
    let run = |args: &[&str], stdin: &'static [u8]| {
        let mut c = tokio::process::Command::new(&crictl);
        c.args(["--runtime-endpoint", &endpoint, "--timeout", "20s"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        async move {
            let mut child = c.spawn().unwrap();
            let mut i = child.stdin.take().unwrap();
            i.write_all(stdin).await.unwrap();
            drop(i);
            tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
                .await
                .expect("crictl finishes")
                .unwrap()
        }
    };
    let out = run(
        &[
            "exec",
            "-i",
            "c1",
            "/bin/sh",
            "-c",
            "cat; echo to-stderr >&2; exit 5",
        ],
        b"piped in\n",
    )
    .await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(stdout, "piped in\n", "stderr: {stderr}");
    assert!(stderr.contains("to-stderr"), "{stderr}");
    // client-go read the exit code from the v4 Status: "command terminated with exit code 5"
    // is its CodeExitError; crictl 1.26 then exits 1 (later ones pass the code on).
    assert!(
        stderr.contains("command terminated with exit code 5"),
        "{stderr}"
    );
    assert_ne!(out.status.code(), Some(0));
    let out = run(
        &[
            "exec",
            "c1",
            "/bin/sh",
            "-c",
            "head -c 200000 /dev/zero | tr '\\0' y",
        ],
        b"",
    )
    .await;
    assert_eq!(
        out.stdout.len(),
        200_000,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.iter().all(|&b| b == b'y'));
    assert_eq!(out.status.code(), Some(0));

    // crictl port-forward: client-go's SPDY port forwarder, one stream pair per connection.
    let port = echo_service().await;
    let local = closed_port().await;
    let mut pf = tokio::process::Command::new(&crictl)
        .args(["--runtime-endpoint", &endpoint, "port-forward", "pod1"])
        .arg(format!("{local}:{port}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(pf.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line),
    )
    .await
    .expect("crictl port-forward starts")
    .unwrap();
    assert!(line.contains("Forwarding from"), "{line}");
    for text in ["first", "second"] {
        let mut c = TcpStream::connect(("127.0.0.1", local)).await.unwrap();
        c.write_all(text.as_bytes()).await.unwrap();
        let mut reply = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut reply))
            .await
            .expect("the forwarded connection ends")
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&reply), format!("echo:{text}"));
    }
    let _ = pf.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spdy_client_that_disconnects_ends_the_process() {
    use super::spdy::{Decoder, Encoder, Frame, Headers};
    let (srv, log) = server().await;
    let cmd = ["/bin/sh", "-c", "echo started; exec sleep 600"];
    let url = srv
        .get_exec(&exec_req(&cmd, false, true, false, false))
        .unwrap();
    let path = url
        .split_once(&srv.local_addr().to_string())
        .unwrap()
        .1
        .to_string();
    let mut c = TcpStream::connect(srv.local_addr()).await.unwrap();
    c.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
             X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut enc = Encoder::new();
    let mut out = bytes::BytesMut::new();
    for (id, t) in [(1, "error"), (3, "stdout")] {
        enc.encode(
            &Frame::SynStream {
                stream_id: id,
                associated_to: 0,
                priority: 0,
                fin: false,
                unidirectional: false,
                headers: Headers::from_pairs([("streamType", t)]),
            },
            &mut out,
        );
    }
    c.write_all(&out).await.unwrap();
    // Skip the 101 response, then read frames until stdout says "started".
    let mut buf = bytes::BytesMut::new();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        c.read_buf(&mut buf).await.unwrap();
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let _ = buf.split_to(end);
    let mut dec = Decoder::new();
    let mut stdout = Vec::new();
    while !stdout.ends_with(b"started\n") {
        match dec.decode(&mut buf).unwrap() {
            Some(Frame::Data {
                stream_id: 3, data, ..
            }) => stdout.extend_from_slice(&data),
            Some(_) => {}
            None => {
                assert!(c.read_buf(&mut buf).await.unwrap() > 0, "EOF before output");
            }
        }
    }
    let pid: i32 = log.find("pid ").unwrap()[4..].parse().unwrap();
    drop(c);
    let gone = async {
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if log.has("exec dropped") && (stat.is_empty() || stat.contains(") Z ")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), gone)
        .await
        .expect("the backend future is dropped and the process killed");
}
