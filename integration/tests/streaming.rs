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
