//! Runs a resolved probe or hook action ([`crate::kubelet::handler::Action`]) against a
//! container, as kubelet's probers do (`pkg/probe/{exec,http,tcp,grpc}`):
//! - exec through the engine's exec, killed at the timeout (a timeout is a failure);
//! - httpGet on a fresh connection each time (kubelet disables keep-alive), HTTPS without
//!   certificate checks, `User-Agent: kube-probe/<version>`, status 200-399 succeeds;
//! - tcpSocket: the connect alone;
//! - grpc: grpc.health.v1 Check over plaintext HTTP/2, SERVING succeeds.
//!
//! Output kept for messages is bounded (kubelet reads at most 10 KiB of an HTTP body and
//! 10 KiB of exec output for a probe).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::kubelet::handler::{Action, HttpGet};
use crate::kubelet::probe::ProbeResult;
use crate::pod::{Engine, EngineError};

/// kubelet's probe User-Agent names its version; this is the API version peapod follows.
const USER_AGENT: &str = "kube-probe/1.33";
/// How much of a body or an exec's output a message keeps.
const MAX_OUTPUT: usize = 10 * 1024;

/// What a probe found: the result, and a message for events and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub result: ProbeResult,
    pub message: String,
}

impl Outcome {
    fn success(message: impl Into<String>) -> Self {
        Outcome {
            result: ProbeResult::Success,
            message: message.into(),
        }
    }
    fn failure(message: impl Into<String>) -> Self {
        Outcome {
            result: ProbeResult::Failure,
            message: message.into(),
        }
    }
    /// A prober error: kubelet throws the result away.
    fn unknown(message: impl Into<String>) -> Self {
        Outcome {
            result: ProbeResult::Unknown,
            message: message.into(),
        }
    }
}

/// Runs `action` against the container `container_id`, bounded by `timeout`.
pub async fn run(
    engine: &Arc<Engine>,
    container_id: &str,
    action: &Action,
    timeout: Duration,
) -> Outcome {
    match action {
        Action::Exec(cmd) => exec(engine, container_id, cmd, timeout).await,
        Action::Http(h) => bounded(timeout, http(h), || {
            format!(
                "Get \"{}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                h.url()
            )
        })
        .await,
        Action::Tcp { host, port } => bounded(timeout, tcp(host, *port), || {
            format!("dial tcp {}: i/o timeout", join(host, *port))
        })
        .await,
        Action::Grpc {
            host,
            port,
            service,
        } => bounded(timeout, grpc(host, *port, service), || {
            format!(
                "timeout: health rpc did not complete within {}s",
                timeout.as_secs()
            )
        })
        .await,
        Action::Sleep(d) => {
            tokio::time::sleep(*d).await;
            Outcome::success("")
        }
    }
}

async fn bounded(
    timeout: Duration,
    f: impl std::future::Future<Output = Outcome>,
    timed_out: impl FnOnce() -> String,
) -> Outcome {
    match tokio::time::timeout(timeout, f).await {
        Ok(o) => o,
        Err(_) => Outcome::failure(timed_out()),
    }
}

fn join(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// An I/O error as Go prints it, which is what users of kubelet's probe messages know:
/// "connection refused", not "Connection refused (os error 111)".
fn io_msg(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

fn truncate(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(MAX_OUTPUT)]).into_owned()
}

async fn exec(engine: &Arc<Engine>, id: &str, cmd: &[String], timeout: Duration) -> Outcome {
    match engine.exec_sync(id, cmd, Some(timeout)).await {
        Ok(out) => {
            let mut text = out.stdout;
            text.extend_from_slice(&out.stderr);
            let text = truncate(&text);
            if out.exit_code == 0 {
                Outcome::success(text)
            } else if text.is_empty() {
                Outcome::failure(format!("command {cmd:?} exited with {}", out.exit_code))
            } else {
                Outcome::failure(text)
            }
        }
        Err(EngineError::DeadlineExceeded(_)) => Outcome::failure(format!(
            "command {cmd:?} timed out after {}s",
            timeout.as_secs()
        )),
        Err(e) => Outcome::unknown(e.to_string()),
    }
}

async fn tcp(host: &str, port: u16) -> Outcome {
    match TcpStream::connect(join(host, port)).await {
        Ok(_) => Outcome::success(""),
        Err(e) => Outcome::failure(format!(
            "dial tcp {}: connect: {}",
            join(host, port),
            io_msg(&e)
        )),
    }
}

async fn http(h: &HttpGet) -> Outcome {
    let url = h.url();
    let stream = match TcpStream::connect(join(&h.host, h.port)).await {
        Ok(s) => s,
        Err(e) => {
            return Outcome::failure(format!(
                "Get \"{url}\": dial tcp {}: connect: {}",
                join(&h.host, h.port),
                io_msg(&e)
            ))
        }
    };
    let _ = stream.set_nodelay(true);
    let res = if h.https {
        let server = match rustls::pki_types::ServerName::try_from(virtual_host(h)) {
            Ok(n) => n,
            Err(e) => return Outcome::failure(format!("Get \"{url}\": {e}")),
        };
        match tls_connector().connect(server, stream).await {
            Ok(tls) => get(h, tls).await,
            Err(e) => return Outcome::failure(format!("Get \"{url}\": {e}")),
        }
    } else {
        get(h, stream).await
    };
    match res {
        Ok((status, body)) => {
            let body = truncate(&body);
            if (200..400).contains(&status) {
                Outcome::success(body)
            } else {
                Outcome::failure(format!("HTTP probe failed with statuscode: {status}"))
            }
        }
        Err(e) => Outcome::failure(format!("Get \"{url}\": {e}")),
    }
}

/// The host the request names: a `Host` header given in the probe, else host:port.
fn virtual_host(h: &HttpGet) -> String {
    h.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.split(':').next().unwrap_or(v).to_string())
        .unwrap_or_else(|| h.host.clone())
}

async fn get<S>(h: &HttpGet, io: S) -> Result<(u16, Vec<u8>), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let mut req = hyper::Request::get(&h.path);
    let given = |name: &str| h.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !given("host") {
        req = req.header(hyper::header::HOST, join(&h.host, h.port));
    }
    if !given("user-agent") {
        req = req.header(hyper::header::USER_AGENT, USER_AGENT);
    }
    if !given("accept") {
        req = req.header(hyper::header::ACCEPT, "*/*");
    }
    req = req.header(hyper::header::CONNECTION, "close");
    for (n, v) in &h.headers {
        req = req.header(n.as_str(), v.as_str());
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    // Only the start of the body matters for a message; the rest is not read.
    let mut body = res.into_body();
    let mut kept = Vec::new();
    while kept.len() < MAX_OUTPUT {
        match body.frame().await {
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    kept.extend_from_slice(d);
                }
            }
            Some(Err(e)) => return Err(e.to_string()),
            None => break,
        }
    }
    driver.abort();
    Ok((status, kept))
}

/// TLS without certificate checks, as kubelet's prober (`InsecureSkipVerify: true`).
fn tls_connector() -> tokio_rustls::TlsConnector {
    use std::sync::OnceLock;
    static CONNECTOR: OnceLock<tokio_rustls::TlsConnector> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
                .with_no_client_auth();
            tokio_rustls::TlsConnector::from(Arc::new(cfg))
        })
        .clone()
}

#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn grpc(host: &str, port: u16, service: &str) -> Outcome {
    use crate::health::health_check_response::ServingStatus;
    use crate::health::health_client::HealthClient;
    use crate::health::HealthCheckRequest;
    let addr = format!("http://{}", join(host, port));
    let channel = match tonic::transport::Endpoint::from_shared(addr)
        .and_then(|e| e.user_agent(USER_AGENT))
    {
        Ok(e) => e,
        Err(e) => return Outcome::unknown(e.to_string()),
    };
    let channel = match channel.connect().await {
        Ok(c) => c,
        Err(e) => {
            return Outcome::failure(format!(
                "timeout: failed to connect service \"{}\": {e}",
                join(host, port)
            ))
        }
    };
    let mut client = HealthClient::new(channel);
    let req = HealthCheckRequest {
        service: service.to_string(),
    };
    match client.check(req).await {
        Ok(r) => {
            let st = r.into_inner().status();
            if st == ServingStatus::Serving {
                Outcome::success("")
            } else {
                Outcome::failure(format!(
                    "service unhealthy (responded with \"{}\")",
                    st.as_str_name()
                ))
            }
        }
        Err(s) => Outcome::failure(format!(
            "rpc error: code = {:?} desc = {}",
            s.code(),
            s.message()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::health_check_response::ServingStatus;
    use crate::health::health_server::{Health, HealthServer};
    use crate::health::{HealthCheckRequest, HealthCheckResponse};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn http_get(port: u16, path: &str) -> HttpGet {
        HttpGet {
            https: false,
            host: "127.0.0.1".into(),
            port,
            path: path.into(),
            headers: vec![("X-Probe".into(), "yes".into())],
        }
    }

    /// A one-request HTTP server answering `status`, handing back the request it read.
    async fn serve_once(status: u16) -> (u16, tokio::task::JoinHandle<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok");
            s.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&got).into_owned()
        });
        (port, task)
    }

    #[tokio::test]
    async fn http_probes_send_kubelets_headers_and_judge_the_status() {
        let (port, req) = serve_once(204).await;
        let o = http(&http_get(port, "/healthz?x=1")).await;
        assert_eq!(o.result, ProbeResult::Success, "{o:?}");
        let req = req.await.unwrap().to_ascii_lowercase();
        assert!(req.starts_with("get /healthz?x=1 http/1.1\r\n"), "{req}");
        assert!(req.contains("user-agent: kube-probe/1.33"), "{req}");
        assert!(req.contains("x-probe: yes"), "{req}");
        assert!(req.contains(&format!("host: 127.0.0.1:{port}")), "{req}");

        let (port, _) = serve_once(503).await;
        let o = http(&http_get(port, "/")).await;
        assert_eq!(o.result, ProbeResult::Failure);
        assert_eq!(o.message, "HTTP probe failed with statuscode: 503");
    }

    #[tokio::test]
    async fn refused_connections_fail_and_silent_servers_time_out() {
        // A port just freed: nothing listens on it.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let o = tcp("127.0.0.1", port).await;
        assert_eq!(o.result, ProbeResult::Failure);
        assert!(o.message.contains("connection refused"), "{o:?}");
        let o = http(&http_get(port, "/")).await;
        assert_eq!(o.result, ProbeResult::Failure);

        // Accepts and never answers.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let _hold = tokio::spawn(async move {
            let _c = l.accept().await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let h = http_get(port, "/");
        let o = bounded(Duration::from_millis(200), http(&h), || "timed out".into()).await;
        assert_eq!(o.result, ProbeResult::Failure);
        assert_eq!(o.message, "timed out");

        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(tcp("127.0.0.1", port).await.result, ProbeResult::Success);
    }

    struct Fixed(ServingStatus);

    #[tonic::async_trait]
    impl Health for Fixed {
        async fn check(
            &self,
            req: tonic::Request<HealthCheckRequest>,
        ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
            if req.get_ref().service == "missing" {
                return Err(tonic::Status::not_found("unknown service"));
            }
            Ok(tonic::Response::new(HealthCheckResponse {
                status: self.0 as i32,
            }))
        }
    }

    async fn health_server(st: ServingStatus) -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(l);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(HealthServer::new(Fixed(st)))
                .serve_with_incoming(incoming),
        );
        port
    }

    #[tokio::test]
    async fn grpc_probes_call_the_health_service() {
        let port = health_server(ServingStatus::Serving).await;
        assert_eq!(
            grpc("127.0.0.1", port, "").await.result,
            ProbeResult::Success
        );
        let o = grpc("127.0.0.1", port, "missing").await;
        assert_eq!(o.result, ProbeResult::Failure);
        assert!(o.message.contains("NotFound"), "{o:?}");
        let port = health_server(ServingStatus::NotServing).await;
        let o = grpc("127.0.0.1", port, "").await;
        assert_eq!(o.result, ProbeResult::Failure);
        assert_eq!(
            o.message,
            "service unhealthy (responded with \"NOT_SERVING\")"
        );
    }
}
