//! The CLI's side of the local API: one HTTP/1.1 request on the daemon's unix socket.

use std::path::Path;

use http_body_util::{BodyExt, Full};
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
    send(socket, hyper::Method::GET, path, Vec::new()).await
}

/// One request with `body`; the body of a 2xx answer, or the API's error Status.
pub async fn send(
    socket: &Path,
    method: hyper::Method,
    path: &str,
    body: Vec<u8>,
) -> Result<Vec<u8>, ClientError> {
    let resp = request(socket, method, path, body).await?;
    resp.into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))
        .map(|b| b.to_bytes().to_vec())
}

/// GET `path`, handing each chunk of a 2xx answer's body to `out` as it arrives (a followed
/// log); the API's error Status otherwise.
pub async fn get_streamed(
    socket: &Path,
    path: &str,
    mut out: impl FnMut(&[u8]),
) -> Result<(), ClientError> {
    let mut body = request(socket, hyper::Method::GET, path, Vec::new())
        .await?
        .into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ClientError::Http(e.to_string()))?;
        if let Some(data) = frame.data_ref() {
            out(data);
        }
    }
    Ok(())
}

/// Sends the request; a 2xx answer with its body still to read, or the API's error.
async fn request(
    socket: &Path,
    method: hyper::Method,
    path: &str,
    body: Vec<u8>,
) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
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
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "peapod")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let code = resp.status();
    if code.is_success() {
        return Ok(resp);
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
        .to_bytes()
        .to_vec();
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
