//! Whether the pod needs a new sandbox: kubelet's `PodSandboxChanged`
//! (`pkg/kubelet/kuberuntime/util/util.go`).

use k8s_openapi::api::core::v1::Pod;

use super::runtime::{PodRuntimeStatus, SandboxState};

/// Why a new sandbox is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxChange {
    /// The pod has no sandbox yet.
    None,
    /// More than one sandbox is ready: kubelet keeps none of them.
    SeveralReady,
    /// The newest sandbox is not ready (stopped or dead).
    NotReady,
    /// The sandbox's network namespace mode differs from the spec's hostNetwork.
    NetworkChanged,
    /// The sandbox has no IP although the pod is not on the host network.
    NoIp,
    /// The sandbox belongs to another UID: the manifest changed, so the pod is a new one.
    PodChanged,
}

/// The decision of [`pod_sandbox_changed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxDecision {
    /// Why a new sandbox is needed, `None` when the current one is kept.
    pub change: Option<SandboxChange>,
    /// The attempt of the sandbox to create, or of the current one when kept.
    pub attempt: u32,
    /// The current sandbox's ID, empty when there is none.
    pub sandbox_id: String,
}

/// Whether the pod's spec asks for the host network.
pub fn is_host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// kubelet's rules: no sandbox → create attempt 0; several ready, the newest not ready, the
/// network mode changed or no IP without host network → create the next attempt. One rule is
/// peapod's own: a sandbox made for another UID (an older version of the manifest) is
/// replaced, because static pods are identified by namespace/name and their UID by content.
pub fn pod_sandbox_changed(pod: &Pod, status: &PodRuntimeStatus) -> SandboxDecision {
    let Some(latest) = status.latest_sandbox() else {
        return SandboxDecision {
            change: Some(SandboxChange::None),
            attempt: 0,
            sandbox_id: String::new(),
        };
    };
    let next = latest.attempt.saturating_add(1);
    let change = |change| SandboxDecision {
        change: Some(change),
        attempt: next,
        sandbox_id: latest.id.clone(),
    };
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    if latest.pod_uid != uid {
        return change(SandboxChange::PodChanged);
    }
    let ready = status
        .sandboxes
        .iter()
        .filter(|s| s.state == SandboxState::Ready)
        .count();
    if ready > 1 {
        return change(SandboxChange::SeveralReady);
    }
    if latest.state != SandboxState::Ready {
        return change(SandboxChange::NotReady);
    }
    if latest.host_network != is_host_network(pod) {
        return change(SandboxChange::NetworkChanged);
    }
    if !latest.host_network && latest.ip.as_deref().unwrap_or("").is_empty() {
        return change(SandboxChange::NoIp);
    }
    SandboxDecision {
        change: None,
        attempt: latest.attempt,
        sandbox_id: latest.id.clone(),
    }
}
