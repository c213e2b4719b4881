//! peapod: a single-node pod runtime.
//!
//! Data flows one way: a front door (the CRI server in [`cri`]) calls the pod engine in [`pod`],
//! which drives the OS adapters ([`oci`], [`cgroups`], [`image`], [`net`]). Adapters never call back up.

/// The CRI `runtime.v1` protocol, generated at build time from `proto/api.proto`.
#[allow(clippy::all, missing_docs)]
pub mod api {
    tonic::include_proto!("runtime.v1");
    pub use crate::cri::list::{ListContainersResponse, ListPodSandboxResponse};
}

/// grpc.health.v1, generated from `proto/health.proto`: the service gRPC probes call.
#[allow(clippy::all, missing_docs)]
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}

pub mod cgroups;
pub mod cli;
pub mod config;
pub mod cri;
pub mod failpoint;
pub mod fsutil;
pub mod image;
pub mod kubelet;
pub mod manifest;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod oci;
pub mod pod;
pub mod podspec;
pub mod staticpods;
pub mod streaming;
