//! Every gRPC client on the unix socket is served, whatever it sends as :authority: the socket's
//! path raw (grpc-java; grpc-go with a dialer, as kubelet and crictl 1.26 did), %-encoded, or
//! %-encoded without its leading slash (Python grpcio), `localhost` (grpc-go's unix:// targets)
//! or nothing. peapod's h2 treats an :authority that does not parse as absent (third_party/h2).
//!
//! The spellings are sent byte for byte as raw HTTP/2 frames, since no Rust client sends them;
//! then real clients run: Python grpcio (a venv under the target dir, from PyPI), grpc-go
//! (Debian's golang-google-grpc-dev, built in GOPATH mode) and crictl when the build saw one.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use peapod::api::*;
use peapod_integration::*;
use sha2::{Digest, Sha256};

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an N-bit prefix, `flags` in the first byte's high bits (RFC 7541 5.1).
fn hpack_int(out: &mut Vec<u8>, bits: u32, flags: u8, mut value: usize) {
    let max = (1usize << bits) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// An HPACK string literal, not Huffman-coded: exactly these bytes on the wire.
fn hpack_str(out: &mut Vec<u8>, s: &str) {
    hpack_int(out, 7, 0, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// An HPACK literal without indexing, with an indexed name (static table index < 15) or, for
/// index 0, a literal name.
fn literal(out: &mut Vec<u8>, name_index: u8, name: &str, value: &str) {
    if name_index == 0 {
        out.push(0x00);
        hpack_str(out, name);
    } else {
        hpack_int(out, 4, 0, name_index as usize);
    }
    hpack_str(out, value);
}

/// Sends one unary Version call with `authority` (None: no :authority at all) and returns the
/// frame types the server sent on stream 1 (1 = HEADERS, 0 = DATA, 3 = RST_STREAM).
fn version_call(socket: &Path, authority: Option<&str>) -> Vec<u8> {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    s.write_all(&frame(0x4, 0, 0, &[])).unwrap(); // SETTINGS
    let mut h = vec![0x83, 0x86]; // :method POST, :scheme http
    literal(&mut h, 4, "", "/runtime.v1.RuntimeService/Version");
    if let Some(a) = authority {
        literal(&mut h, 1, "", a);
    }
    literal(&mut h, 0, "content-type", "application/grpc");
    literal(&mut h, 0, "te", "trailers");
    // HEADERS with END_HEADERS, then an empty VersionRequest (uncompressed, length 0).
    s.write_all(&frame(0x1, 0x4, 1, &h)).unwrap();
    s.write_all(&frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0])).unwrap(); // DATA, END_STREAM
    let mut seen = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            if kind == 0x4 && flags & 0x1 == 0 {
                s.write_all(&frame(0x4, 0x1, 0, &[])).unwrap(); // SETTINGS ack
            }
            if stream == 1 {
                seen.push(kind);
                // RST_STREAM, or HEADERS/DATA with END_STREAM: the call is over.
                if kind == 0x3 || (flags & 0x1 != 0 && (kind == 0x0 || kind == 0x1)) {
                    return seen;
                }
            }
            buf.drain(..9 + len);
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return seen,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_authority_spelling_is_served() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let path = d.socket.to_str().unwrap().to_string();
    let relative = path.trim_start_matches('/').to_string();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("the socket's path (grpc-java)", Some(path.clone())),
        ("the path %-encoded", Some(path.replace('/', "%2F"))),
        (
            "the path %-encoded without its leading slash (grpcio)",
            Some(relative.replace('/', "%2F")),
        ),
        (
            "grpcio's spelling of the default socket",
            Some("run%2Fpeapod%2Fpeapod.sock".into()),
        ),
        ("the path without its leading slash", Some(relative.clone())),
        ("localhost (grpc-go on unix://)", Some("localhost".into())),
        ("empty", Some(String::new())),
        ("no :authority", None),
    ];
    for (what, authority) in cases {
        let socket = d.socket.clone();
        let a = authority.clone();
        let seen = tokio::task::spawn_blocking(move || version_call(&socket, a.as_deref()))
            .await
            .unwrap();
        let show = format!("{what}: {authority:?}");
        assert!(!seen.contains(&0x3), "stream reset for {show}: {seen:?}");
        assert_eq!(
            seen.first(),
            Some(&0x1),
            "no response headers for {show}: {seen:?}"
        );
        assert!(
            seen.contains(&0x0),
            "no response message for {show}: {seen:?}"
        );
    }
    d.cleanup().await;
}

/// Where the tests keep the clients they build: beside the binaries' debug dir.
fn clients_dir() -> PathBuf {
    bin_dir().parent().unwrap().join("grpc-clients")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A venv with grpcio and the CRI API compiled by its grpc_tools.protoc.
struct Grpcio {
    python: PathBuf,
    generated: PathBuf,
}

/// The grpcio venv under the target dir: made once (pip from PyPI), then reused while its
/// stamp (the packages and the proto's hash) matches. None, after printing SKIP, when pip
/// cannot reach the package index.
fn grpcio_venv() -> Option<Grpcio> {
    let dir = clients_dir().join("python");
    let venv = dir.join("venv");
    let generated = dir.join("generated");
    let python = venv.join("bin/python");
    let stamp = dir.join("stamp");
    let proto = workspace().join("proto/api.proto");
    const PACKAGES: [&str; 2] = ["grpcio", "grpcio-tools"];
    let want = format!(
        "{}\n{}\n",
        PACKAGES.join(" "),
        hex::encode(Sha256::digest(std::fs::read(&proto).unwrap()))
    );
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        return Some(Grpcio { python, generated });
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&generated).unwrap();
    let out = run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    assert!(out.status.success(), "python3 -m venv: {}", text(&out));
    let out = run(Command::new(&python)
        .args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
        .args(PACKAGES));
    if !out.status.success() {
        let why = text(&out);
        let offline = [
            "NewConnectionError",
            "Failed to establish a new connection",
            "Temporary failure in name resolution",
            "Network is unreachable",
            "ConnectTimeout",
            "ReadTimeout",
            "ProxyError",
            "No matching distribution found",
        ]
        .iter()
        .any(|s| why.contains(s));
        assert!(offline, "pip install {}: {why}", PACKAGES.join(" "));
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!(
            "SKIP: pip cannot reach the package index to install {}; this test did not run:\n{why}",
            PACKAGES.join(" ")
        );
        return None;
    }
    let out = run(Command::new(&python)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(proto.parent().unwrap())
        .arg(format!("--python_out={}", generated.display()))
        .arg(format!("--grpc_python_out={}", generated.display()))
        .arg(&proto));
    assert!(out.status.success(), "grpc_tools.protoc: {}", text(&out));
    std::fs::write(&stamp, want).unwrap();
    Some(Grpcio { python, generated })
}

/// Python grpcio with default channel options on unix://SOCKET: Version, then a pod run,
/// stopped and removed (integration/py/cri_client.py).
#[tokio::test(flavor = "multi_thread")]
async fn python_grpcio_client_runs_a_pod() {
    if !require_root() {
        return;
    }
    let Some(py) = tokio::task::spawn_blocking(grpcio_venv).await.unwrap() else {
        return;
    };
    let d = Daemon::start().await;
    let logs = d.root.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut cmd = Command::new(&py.python);
    cmd.arg(workspace().join("integration/py/cri_client.py"))
        .arg(&py.generated)
        .arg(&d.socket)
        .arg(&logs);
    let out = tokio::task::spawn_blocking(move || run(&mut cmd))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "cri_client.py failed: {}\n--- daemon log ---\n{}",
        text(&out),
        d.log_text()
    );
    let calls: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    eprintln!("grpcio: {calls:?}");
    let names: Vec<&str> = calls.iter().map(|c| c["call"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "Version",
            "RunPodSandbox",
            "PodSandboxStatus",
            "StopPodSandbox",
            "PodSandboxStatus",
            "RemovePodSandbox",
            "ListPodSandbox"
        ]
    );
    assert_eq!(calls[0]["runtime_name"], "peapod", "{}", calls[0]);
    assert_eq!(calls[0]["runtime_api_version"], "v1", "{}", calls[0]);
    let pod = calls[1]["pod_sandbox_id"].as_str().unwrap();
    assert!(!pod.is_empty());
    assert_eq!(calls[2]["id"], pod);
    assert_eq!(calls[2]["state"], "SANDBOX_READY");
    assert_eq!(calls[4]["state"], "SANDBOX_NOTREADY");
    assert_eq!(calls[6]["ids"], serde_json::json!([]));
    d.cleanup().await;
}

/// integration/go/cri_client.go, built with Debian's Go and grpc-go in GOPATH mode (offline;
/// the build cache under the target dir makes rebuilds quick).
fn go_client() -> PathBuf {
    let dir = clients_dir().join("go");
    let bin = dir.join("cri_client");
    let out = run(Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(workspace().join("integration/go"))
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GOCACHE", dir.join("cache")));
    assert!(
        out.status.success(),
        "go build integration/go (Debian packages golang-go and golang-google-grpc-dev; \
         hack/deps.sh installs them): {}",
        text(&out)
    );
    bin
}

/// grpc-go with default dial options, on a unix:// target and on the bare path with a context
/// dialer: each Version call is answered. Shows the :authority each way sends.
#[tokio::test(flavor = "multi_thread")]
async fn grpc_go_client_calls_version() {
    if !require_root() {
        return;
    }
    let bin = tokio::task::spawn_blocking(go_client).await.unwrap();
    let d = Daemon::start().await;
    for mode in ["unix", "dialer"] {
        let mut cmd = Command::new(&bin);
        cmd.arg(mode).arg(&d.socket);
        let out = tokio::task::spawn_blocking(move || run(&mut cmd))
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "grpc-go {mode}: {}\n--- daemon log ---\n{}",
            text(&out),
            d.log_text()
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let mut lines = stdout.lines();
        let authority = lines.next().unwrap_or_default();
        eprintln!("grpc-go {mode}: sends {authority}");
        let fields: Vec<(&str, &str)> = lines.filter_map(|l| l.split_once('=')).collect();
        let field = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        assert!(authority.starts_with("authority"), "{stdout}");
        assert_eq!(field("runtime_name"), Some("peapod"), "{mode}: {stdout}");
        assert_eq!(field("runtime_api_version"), Some("v1"), "{mode}: {stdout}");
    }
    d.cleanup().await;
}

/// `crictl version` and `crictl pods`, when there is a crictl ($CRICTL or on PATH). Debian has
/// no crictl package, so where the build saw none (integration/build.rs) the test is ignored.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(peapod_crictl),
    ignore = "SKIP: no crictl ($CRICTL or on PATH) when this was built"
)]
async fn crictl_version_and_pods() {
    if !require_root() {
        return;
    }
    let crictl = crictl().expect("no crictl: set $CRICTL or put crictl on PATH");
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let (pod, _) = run_pod(&mut rt, pod_config("crictl", &logs), vec![]).await;
    let endpoint = format!("unix://{}", d.socket.display());
    let crictl_run = |args: &'static [&'static str]| {
        let mut cmd = Command::new(&crictl);
        cmd.args(["--runtime-endpoint", &endpoint, "--timeout", "30s"])
            .args(args);
        async move {
            let out = tokio::task::spawn_blocking(move || run(&mut cmd))
                .await
                .unwrap();
            assert!(out.status.success(), "crictl {args:?}: {}", text(&out));
            String::from_utf8(out.stdout).unwrap()
        }
    };
    let version = crictl_run(&["version"]).await;
    eprintln!("crictl version:\n{version}");
    assert!(
        version
            .lines()
            .any(|l| l.split_whitespace().eq(["RuntimeName:", "peapod"])),
        "{version}"
    );
    let pods = crictl_run(&["pods"]).await;
    eprintln!("crictl pods:\n{pods}");
    let row = pods
        .lines()
        .find(|l| pod.starts_with(l.split_whitespace().next().unwrap_or("-")))
        .unwrap_or_else(|| panic!("pod {pod} not listed:\n{pods}"));
    assert!(row.contains("crictl") && row.contains("Ready"), "{row}");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    d.cleanup().await;
}
