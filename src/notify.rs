//! systemd's readiness protocol (`sd_notify`): one datagram of `KEY=VALUE` lines to the socket
//! named by `$NOTIFY_SOCKET`, written here rather than linked from libsystemd, which is a C
//! library and a dependency on systemd's presence for a few bytes on a socket.
//!
//! The variable is taken out of the environment at start-up, before any thread exists, so the
//! OCI runtime, the monitors and the containers never inherit it: a container's process that
//! wrote `READY=1` or `MAINPID=` to it would speak for the daemon.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;

/// Where notifications go, if anywhere.
#[derive(Debug, Clone)]
pub struct Notifier {
    addr: Option<String>,
}

impl Notifier {
    /// Takes `$NOTIFY_SOCKET` out of the environment. Call it before any thread is started:
    /// changing the environment is not thread-safe.
    pub fn from_env() -> Self {
        let addr = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|a| !a.is_empty());
        if addr.is_some() {
            std::env::remove_var("NOTIFY_SOCKET");
        }
        Notifier { addr }
    }

    /// Whether a service manager is listening.
    pub fn enabled(&self) -> bool {
        self.addr.is_some()
    }

    /// `READY=1`: the CRI socket answers and start-up recovery is done.
    pub fn ready(&self) {
        self.send(&format!(
            "READY=1\nMAINPID={}\nSTATUS=serving CRI",
            std::process::id()
        ));
    }

    /// `STOPPING=1`: the daemon is shutting down (its pods keep running).
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=shutting down; pods keep running");
    }

    /// Sends one notification; a failure is logged, never fatal (systemd times the unit out).
    pub fn send(&self, msg: &str) {
        let Some(addr) = &self.addr else { return };
        if let Err(e) = send_to(addr, msg) {
            tracing::warn!(socket = %addr, error = %e, "notifying the service manager");
        }
    }
}

fn send_to(addr: &str, msg: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let target = socket_addr(addr)?;
    sock.send_to_addr(msg.as_bytes(), &target)?;
    Ok(())
}

/// A filesystem path, or `@name` for an abstract socket (as systemd allows).
fn socket_addr(addr: &str) -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    match addr.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None if addr.starts_with('/') => SocketAddr::from_pathname(Path::new(addr)),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("NOTIFY_SOCKET must be an absolute path or @name: {addr:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_and_stopping_reach_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("peapod-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            addr: Some(path.to_str().unwrap().to_string()),
        };
        n.ready();
        n.stopping();
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).unwrap();
        let first = std::str::from_utf8(&buf[..len]).unwrap();
        assert!(first.starts_with("READY=1\n"), "{first}");
        assert!(first.contains(&format!("MAINPID={}", std::process::id())));
        let len = listener.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..len])
            .unwrap()
            .starts_with("STOPPING=1\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn abstract_names_and_bad_addresses() {
        let name = format!("peapod-notify-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        send_to(&format!("@{name}"), "READY=1").unwrap();
        let mut buf = [0u8; 16];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
        assert!(send_to("relative/path", "READY=1").is_err());
        // No listener: an error to log, not a panic.
        let off = Notifier {
            addr: Some("/nonexistent/notify".into()),
        };
        off.ready();
        assert!(!Notifier { addr: None }.enabled());
    }
}
