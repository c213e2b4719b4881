//! Attach: connects a client to a running container's main process through its monitor.
//!
//! The monitor holds the container's stdin (pipe or pty master) and reads its output, and
//! serves both on `<bundle>/attach.sock` (see the shim's `attach.rs`; the framing is
//! `attachproto.rs`, compiled here from the shim's own file). The daemon only relays, so
//! attach works after a daemon restart, and a client sees the same bytes the CRI log records.
//! The session ends when the container's output ends (the monitor closes the socket); dropping
//! the future detaches, which the monitor sees as a closed connection.

#[path = "../../shim/src/attachproto.rs"]
#[allow(dead_code)] // the monitor's half (SOCKET's siblings it never sends) is unused here
mod proto;

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tracing::{debug, instrument};

use super::exec::ExecIo;
use super::record::ContainerState;
use super::{Engine, EngineError, Result};

impl Engine {
    /// Attaches `io` to container `id`'s main process until the container exits (its output
    /// drained) or the future is dropped. stdin goes to the container only if it was created
    /// with `stdin`; with a tty, stdout carries everything and resizes apply.
    #[instrument(skip(self, io), fields(container_id = %id))]
    pub async fn attach(&self, id: &str, io: ExecIo) -> Result<()> {
        let c = self.container(id)?;
        let rec = c.record();
        if rec.state() != ContainerState::Running {
            return Err(EngineError::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        let sock = connect(&self.paths.bundle_dir(&rec.id))
            .await
            .map_err(|e| {
                EngineError::FailedPrecondition(format!(
                    "container {}: its monitor does not serve attach ({e})",
                    rec.id
                ))
            })?;
        debug!(tty = c.config.tty, stdin = c.config.stdin, "attached");
        relay(sock, io).await;
        debug!("attach ended");
        Ok(())
    }
}

/// Connects to `dir/attach.sock`; a path too long for a socket address is reached through
/// `/proc/self/fd/N/` of the directory.
async fn connect(dir: &Path) -> io::Result<UnixStream> {
    let path = dir.join(proto::SOCKET);
    if path.as_os_str().len() <= proto::SUN_PATH_MAX {
        return UnixStream::connect(&path).await;
    }
    let d = std::fs::File::open(dir)?;
    let short = format!("/proc/self/fd/{}/{}", d.as_raw_fd(), proto::SOCKET);
    let s = UnixStream::connect(short).await;
    drop(d);
    s
}

/// Copies frames from the monitor to the client's stdout/stderr until the monitor closes,
/// while the client's stdin and resizes go the other way.
async fn relay(sock: UnixStream, mut io: ExecIo) {
    let (mut rd, mut wr) = sock.into_split();
    let mut stdin = io.stdin.take();
    let mut resize = io.resize.take();
    let to_monitor = async move {
        let mut buf = vec![0u8; 32 * 1024];
        let mut frame = Vec::with_capacity(buf.len() + proto::HEADER);
        loop {
            frame.clear();
            tokio::select! {
                r = async { stdin.as_mut().unwrap().read(&mut buf).await }, if stdin.is_some() => {
                    match r {
                        Ok(n) if n > 0 => proto::encode_into(&mut frame, proto::STDIN, &buf[..n]),
                        _ => {
                            stdin = None;
                            proto::encode_into(&mut frame, proto::STDIN_CLOSE, b"");
                        }
                    }
                }
                s = async { resize.as_mut().unwrap().recv().await }, if resize.is_some() => {
                    match s {
                        Some((cols, rows)) => proto::encode_into(
                            &mut frame,
                            proto::RESIZE,
                            &proto::resize_payload(cols, rows),
                        ),
                        None => resize = None,
                    }
                }
                else => {
                    // Nothing more to send; keep the write half open (closing it would look
                    // like a detach to nobody, but there is no need to).
                    std::future::pending::<()>().await;
                }
            }
            if !frame.is_empty() && wr.write_all(&frame).await.is_err() {
                return;
            }
        }
    };
    let mut stdout = io.stdout.take();
    let mut stderr = io.stderr.take();
    let from_monitor = async {
        let mut dec = proto::Decoder::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut chunks: Vec<(u8, Vec<u8>)> = Vec::new();
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            dec.feed(&buf[..n]);
            if dec.frames(|k, p| chunks.push((k, p.to_vec()))).is_err() {
                break;
            }
            for (kind, data) in chunks.drain(..) {
                let out = match kind {
                    proto::STDOUT => &mut stdout,
                    proto::STDERR => &mut stderr,
                    _ => continue,
                };
                if let Some(w) = out {
                    // A client that closed one of its streams still gets the other.
                    if w.write_all(&data).await.is_err() || w.flush().await.is_err() {
                        *out = None;
                    }
                }
            }
        }
    };
    {
        tokio::pin!(to_monitor);
        tokio::pin!(from_monitor);
        tokio::select! {
            _ = &mut from_monitor => {}
            _ = &mut to_monitor => {
                // Only a failed write to the monitor ends this side: it is gone too.
                (&mut from_monitor).await;
            }
        }
    }
    for w in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
        let _ = w.shutdown().await;
    }
}
