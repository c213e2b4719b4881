//! Port forwarding (CRI PortForward through the streaming server): a TCP connection to
//! localhost:PORT made inside the pod's network namespace, never on the host.
//!
//! The socket is created on a short-lived thread that joins the pod's pinned network
//! namespace (setns affects only the calling thread); a socket keeps the namespace it was made
//! in, so the connection is then used from the daemon's runtime like any other. The thread
//! exits afterwards, so no thread of the daemon is left in a pod's namespace.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

use tracing::instrument;

use super::record::SandboxState;
use super::{Engine, EngineError, Result};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Engine {
    #[instrument(skip(self), fields(sandbox_id = %id))]
    pub async fn port_forward(&self, id: &str, port: u16) -> Result<tokio::net::TcpStream> {
        if port == 0 {
            return Err(EngineError::invalid("port", "must be 1 to 65535"));
        }
        let sb = self.sandbox(id)?;
        let rec = sb.record();
        if rec.state != SandboxState::Ready {
            return Err(EngineError::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                rec.id
            )));
        }
        // A pod on the host's network has its ports on the host's loopback.
        let netns = (!rec.namespaces.host_network)
            .then(|| self.paths.sandbox_state_dir(&rec.id).join("ns").join("net"));
        let stream = tokio::task::spawn_blocking(move || -> std::io::Result<TcpStream> {
            let connect = move || -> std::io::Result<TcpStream> {
                if let Some(ns) = &netns {
                    let f = std::fs::File::open(ns)?;
                    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(std::io::Error::from)?;
                }
                TcpStream::connect_timeout(
                    &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                    CONNECT_TIMEOUT,
                )
            };
            // A thread of its own: it dies with the namespace it joined.
            std::thread::spawn(connect)
                .join()
                .map_err(|_| std::io::Error::other("port-forward thread panicked"))?
        })
        .await
        .map_err(|e| EngineError::io("port forward")(std::io::Error::other(e)))?
        .map_err(|e| {
            EngineError::FailedPrecondition(format!(
                "connecting to port {port} in pod sandbox {}: {e}",
                rec.id
            ))
        })?;
        stream
            .set_nonblocking(true)
            .map_err(EngineError::io("port forward socket"))?;
        tokio::net::TcpStream::from_std(stream).map_err(EngineError::io("port forward socket"))
    }
}
