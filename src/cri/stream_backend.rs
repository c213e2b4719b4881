//! The streaming server's [`Backend`] over the pod engine: exec through the engine's
//! `exec_streams`, attach through its `attach` (the monitor serves the container's stdio),
//! port forwarding through its `port_forward`.

use std::sync::Arc;

use crate::pod::exec::ExecIo;
use crate::pod::Engine;
use crate::streaming::{AsyncReadWrite, Backend, BackendError, BoxFuture, StreamIo};

pub struct EngineBackend(pub Arc<Engine>);

fn exec_io(io: StreamIo) -> ExecIo {
    let resize = io.resize.map(|mut rx| {
        let (tx, out) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            while let Some(s) = rx.recv().await {
                if tx.send((s.width, s.height)).await.is_err() {
                    break;
                }
            }
        });
        out
    });
    ExecIo {
        stdin: io.stdin,
        stdout: io.stdout,
        stderr: io.stderr,
        resize,
    }
}

impl Backend for EngineBackend {
    fn exec(
        &self,
        container_id: String,
        cmd: Vec<String>,
        io: StreamIo,
    ) -> BoxFuture<'static, Result<i32, BackendError>> {
        let engine = self.0.clone();
        Box::pin(async move {
            let tty = io.tty;
            engine
                .exec_streams(&container_id, &cmd, tty, exec_io(io))
                .await
                .map_err(|e| BackendError(e.to_string()))
        })
    }

    fn attach(
        &self,
        container_id: String,
        io: StreamIo,
    ) -> BoxFuture<'static, Result<(), BackendError>> {
        let engine = self.0.clone();
        Box::pin(async move {
            engine
                .attach(&container_id, exec_io(io))
                .await
                .map_err(|e| BackendError(e.to_string()))
        })
    }

    fn port_forward(
        &self,
        pod_sandbox_id: String,
        port: u16,
    ) -> BoxFuture<'static, Result<Box<dyn AsyncReadWrite>, BackendError>> {
        let engine = self.0.clone();
        Box::pin(async move {
            let s = engine
                .port_forward(&pod_sandbox_id, port)
                .await
                .map_err(|e| BackendError(e.to_string()))?;
            Ok(Box::new(s) as Box<dyn AsyncReadWrite>)
        })
    }
}
