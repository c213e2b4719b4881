//! The CLI's side of the local API: one HTTP/1.1 GET on the daemon's unix socket.

use std::path::Path;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use super::status::ApiStatus;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the peapod daemon at {socket}: {source} (is `peapod daemon` running, and are you root?)")]
    Connect {
        socket: String,
        source: std::io::Error,
    },
    #[error("talking to the peapod daemon: {0}")]
    Http(String),
    /// The API's answer was an error Status.
    #[error("{}", .0.kubectl_line())]
    Api(ApiStatus),
}

/// GET `path` (with its query); the body of a 2xx answer.
pub async fn get(socket: &Path, path: &str) -> Result<Vec<u8>, ClientError> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            socket: socket.display().to_string(),
            source,
        })?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, "peapod")
        .body(Empty::<Bytes>::new())
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let code = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
        .to_bytes()
        .to_vec();
    if code.is_success() {
        return Ok(body);
    }
    Err(ClientError::Api(
        serde_json::from_slice(&body).unwrap_or_else(|_| {
            ApiStatus::failure(
                code.as_u16(),
                "",
                format!("{code}: {}", String::from_utf8_lossy(&body)),
            )
        }),
    ))
}
