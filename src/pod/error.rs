//! The pod engine's error type. Every variant keeps its context (which pod, which field); the
//! CRI layer maps them to gRPC codes in one place (`cri::status`).

use crate::cgroups::CgroupError;
use crate::image::ImageError;
use crate::oci::runtime::RuntimeError;
use crate::oci::spec::SpecError;
use crate::pod::monitor::MonitorError;
use crate::pod::network::NetworkError;
use crate::pod::pause::PauseError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} name {name:?} is already reserved for {id}")]
    AlreadyExists {
        kind: &'static str,
        name: String,
        id: String,
    },
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Pause(#[from] PauseError),
    #[error(transparent)]
    Monitor(#[from] MonitorError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl EngineError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        EngineError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| EngineError::Io { what, source }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
