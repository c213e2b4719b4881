//! The exec route's daemon side: the command runs in the container through the engine's
//! interactive exec, its streams carried over the upgraded API connection in the frames of
//! `crate::cli::exec`.

// The error of a request is the API's Status, made once per request and sent as it is:
// its size (a few strings) costs nothing worth boxing it for.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::debug;

use super::Shared;
use crate::cli::exec::{self, ExecOptions, Frames};
use crate::cli::logs;
use crate::cli::status::ApiStatus;
use crate::pod::exec::ExecIo;

/// The engine's ID of the container the exec runs in, once checked that it runs.
pub fn target(
    shared: &Shared,
    ns: &str,
    name: &str,
    opts: &ExecOptions,
) -> Result<String, ApiStatus> {
    let pod = shared
        .pod(ns, name)
        .ok_or_else(|| ApiStatus::pod_not_found(name))?;
    let container = logs::pick_container(&pod, opts.container.as_deref())?;
    let st = logs::container_status(&pod, &container);
    let running = st
        .and_then(|s| s.state.as_ref())
        .is_some_and(|s| s.running.is_some());
    let id = st
        .and_then(|s| s.container_id.as_deref())
        .and_then(|id| id.split_once("://").map(|(_, id)| id.to_string()));
    match id {
        Some(id) if running => Ok(id),
        _ => Err(ApiStatus::bad_request(format!(
            "container {container} is not running in pod {name}"
        ))),
    }
}

/// Bytes written by the command, as frames of `channel` to the connection's writer.
fn pump(
    channel: u8,
    from: impl AsyncRead + Send + Unpin + 'static,
    to: mpsc::Sender<Vec<u8>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut from = from;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if to.send(exec::encode(channel, &buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// Runs the exec over the connection once it is upgraded.
pub async fn run(shared: Arc<Shared>, id: String, opts: ExecOptions, upgrade: OnUpgrade) {
    let Ok(upgraded) = upgrade.await else { return };
    let (mut rd, mut wr) = tokio::io::split(TokioIo::new(upgraded));
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(16);
    let writer = tokio::spawn(async move {
        while let Some(f) = out_rx.recv().await {
            if wr.write_all(&f).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let (stdout_w, stdout_r) = tokio::io::duplex(64 * 1024);
    let (stderr_w, stderr_r) = tokio::io::duplex(64 * 1024);
    let pumps = [
        pump(exec::STDOUT, stdout_r, out_tx.clone()),
        pump(exec::STDERR, stderr_r, out_tx.clone()),
    ];
    let (stdin_w, stdin_r) = tokio::io::duplex(64 * 1024);
    let (resize_tx, resize_rx) = mpsc::channel(4);
    // The client's frames: stdin until its empty frame, resizes; the connection closing
    // before the command ended means the client is gone.
    let (gone_tx, gone_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let mut stdin_w = Some(stdin_w);
        let mut frames = Frames::default();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let Ok(got) = frames.push(&buf[..n]) else {
                break;
            };
            for (ch, data) in got {
                match ch {
                    exec::STDIN if data.is_empty() => stdin_w = None,
                    exec::STDIN => {
                        if let Some(w) = stdin_w.as_mut() {
                            let _ = w.write_all(&data).await;
                        }
                    }
                    exec::RESIZE => {
                        if let Some(size) = exec::parse_resize(&data) {
                            let _ = resize_tx.try_send(size);
                        }
                    }
                    _ => {}
                }
            }
        }
        let _ = gone_tx.send(());
    });
    let io = ExecIo {
        stdin: opts
            .stdin
            .then(|| Box::new(stdin_r) as Box<dyn AsyncRead + Send + Unpin>),
        stdout: Some(Box::new(stdout_w)),
        // A terminal has one output stream, as kubectl's -t.
        stderr: (!opts.tty)
            .then(|| Box::new(stderr_w) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>),
        resize: opts.tty.then_some(resize_rx),
    };
    let command = opts.command.clone();
    let code = tokio::select! {
        r = shared.engine.exec_streams(&id, &command, opts.tty, io) => match r {
            Ok(code) => code,
            Err(e) => {
                let _ = out_tx.send(exec::encode(exec::STDERR, format!("error: {e}\n").as_bytes())).await;
                // kubectl's code for an exec that could not run.
                126
            }
        },
        _ = gone_rx => {
            // Dropping the exec kills the command.
            debug!(container_id = %id, "exec client went away");
            reader.abort();
            return;
        }
    };
    // Everything the command wrote goes out before its exit code.
    for p in pumps {
        let _ = p.await;
    }
    let _ = out_tx
        .send(exec::encode(exec::EXIT, &code.to_be_bytes()))
        .await;
    drop(out_tx);
    let _ = writer.await;
    reader.abort();
}
