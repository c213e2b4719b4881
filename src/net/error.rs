//! The built-in network's error type: every variant names what it was doing (which request,
//! which file, which port mapping), so the engine can map it to a CRI code without parsing text.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

/// An error number from the kernel (a netlink NACK or a failed socket call), with the extended
/// ACK message the kernel attached to it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelError {
    pub errno: i32,
    pub message: Option<String>,
}

impl KernelError {
    pub fn from_io(e: &std::io::Error) -> Self {
        KernelError {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
            message: e.raw_os_error().is_none().then(|| e.to_string()),
        }
    }

    pub fn is(&self, errno: i32) -> bool {
        self.errno == errno
    }
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", nix::errno::Errno::from_raw(self.errno).desc())?;
        if let Some(m) = &self.message {
            write!(f, " ({m})")?;
        }
        Ok(())
    }
}

impl std::error::Error for KernelError {}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A CRI PortMapping that cannot be set up; `field` is the proto field name.
    #[error("port_mappings[{index}].{field}: {reason}")]
    InvalidPortMapping {
        index: usize,
        field: &'static str,
        reason: String,
    },
    /// Another pod already maps this host port.
    #[error("host port {protocol}/{host_port}{} is already mapped by pod {holder}",
        host_ip.map(|ip| format!(" on {ip}")).unwrap_or_default())]
    PortConflict {
        protocol: &'static str,
        host_ip: Option<IpAddr>,
        host_port: u16,
        holder: String,
    },
    #[error("network configuration: {0}")]
    Config(String),
    #[error("no free address left in {cidr}")]
    Exhausted { cidr: String },
    /// A netlink request (rtnetlink or nf_tables) the kernel refused.
    #[error("{op}: {source}")]
    Netlink { op: String, source: KernelError },
    #[error("network namespace {path}: {source}")]
    Netns {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("network task: {0}")]
    Internal(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl NetError {
    pub(crate) fn netlink(op: impl Into<String>) -> impl FnOnce(KernelError) -> Self {
        let op = op.into();
        move |source| NetError::Netlink { op, source }
    }

    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| NetError::Io { what, path, source }
    }
}
