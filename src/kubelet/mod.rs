//! The decision core of standalone static pods: kubelet's pod lifecycle as pure functions.
//!
//! Nothing here does I/O. The manifest door feeds a snapshot of what the engine reports
//! ([`runtime`]), the probe results ([`probe`]) and the back-off state ([`backoff`]) into
//! [`actions::compute_pod_actions`], which returns a plan ([`plan`]) for an executor to carry
//! out, and into [`status::pod_status`], which says what a user sees. The structure follows
//! kubelet's `pkg/kubelet/kuberuntime` (computePodActions, computeInitContainerActions),
//! `prober/` and `status/generate.go`; each rule cites the kubelet behaviour it reproduces.

pub mod actions;
pub mod backoff;
pub mod clock;
pub mod conditions;
pub mod gc;
pub mod handler;
pub mod phase;
pub mod plan;
pub mod probe;
pub mod restart;
pub mod runtime;
pub mod sandbox;
pub mod status;

#[cfg(test)]
mod testutil;
