//! The one place engine errors become gRPC statuses: kubelet and crictl act on the code
//! (NotFound means "already gone", AlreadyExists "a retry raced"), so it must be precise.

use tonic::{Code, Status};

use crate::image::ImageError;
use crate::oci::spec::SpecError;
use crate::pod::events::Lagged;
use crate::pod::network::NetworkError;
use crate::pod::EngineError;

pub fn to_status(e: EngineError) -> Status {
    let code = match &e {
        EngineError::NotFound { .. } => Code::NotFound,
        EngineError::AlreadyExists { .. } => Code::AlreadyExists,
        EngineError::InvalidArgument { .. } => Code::InvalidArgument,
        EngineError::FailedPrecondition(_) => Code::FailedPrecondition,
        EngineError::DeadlineExceeded(_) => Code::DeadlineExceeded,
        EngineError::Spec(s) => spec_code(s),
        EngineError::Image(i) => image_code(i),
        EngineError::Runtime(crate::oci::runtime::RuntimeError::UnknownHandler(_)) => {
            Code::InvalidArgument
        }
        EngineError::Network(n) => network_code(n),
        _ => Code::Internal,
    };
    if code == Code::Internal {
        tracing::error!(error = %e, "request failed");
    }
    Status::new(code, e.to_string())
}

fn spec_code(e: &SpecError) -> Code {
    match e {
        SpecError::InvalidArgument { .. } => Code::InvalidArgument,
        SpecError::NotFound { .. } => Code::NotFound,
        SpecError::FailedPrecondition { .. } => Code::FailedPrecondition,
        _ => Code::Internal,
    }
}

fn network_code(e: &NetworkError) -> Code {
    match e {
        NetworkError::Invalid(_) => Code::InvalidArgument,
        NetworkError::Conflict(_) => Code::FailedPrecondition,
        NetworkError::NotReady(_) => Code::Unavailable,
        _ => Code::Internal,
    }
}

fn image_code(e: &ImageError) -> Code {
    match e {
        ImageError::NotFound { .. } => Code::NotFound,
        ImageError::InvalidReference { .. } | ImageError::Ambiguous { .. } => Code::InvalidArgument,
        ImageError::Unauthorized { .. } => Code::Unauthenticated,
        ImageError::Registry { .. } => Code::Unavailable,
        ImageError::DigestMismatch { .. } => Code::DataLoss,
        ImageError::Format { .. } => Code::FailedPrecondition,
        _ => Code::Internal,
    }
}

/// The end of an event stream whose subscriber fell behind and was dropped: the buffer it had
/// is exhausted, and the client must relist and subscribe again.
pub fn lagged(e: &Lagged) -> Status {
    Status::resource_exhausted(format!("{e}; list again and resubscribe"))
}

/// A required request field that is missing or empty.
pub fn missing(field: &str) -> Status {
    Status::invalid_argument(format!("{field}: is required"))
}

pub fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not supported by peapod yet"))
}
