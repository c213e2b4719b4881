//! Restart-policy rules shared by the plan and the status, from kubelet's
//! `pkg/kubelet/container/helpers.go` (ShouldContainerBeRestarted) and
//! `kuberuntime/kuberuntime_container.go` (isInitContainerFailed, containerSucceeded).

use k8s_openapi::api::core::v1::{Container, Pod};

use super::runtime::{ContainerState, PodRuntimeStatus};

/// A pod's `spec.restartPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart every exited container (the API default).
    Always,
    /// Restart containers that exited non-zero.
    OnFailure,
    /// Never restart.
    Never,
}

/// The pod's restart policy; absent or unrecognised is `Always`, the API server's default.
pub fn restart_policy(pod: &Pod) -> RestartPolicy {
    match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
        Some("OnFailure") => RestartPolicy::OnFailure,
        Some("Never") => RestartPolicy::Never,
        _ => RestartPolicy::Always,
    }
}

/// kubelet's `shouldRestartOnFailure`: anything but Never.
pub fn should_restart_on_failure(pod: &Pod) -> bool {
    restart_policy(pod) != RestartPolicy::Never
}

/// A native sidecar: an init container with `restartPolicy: Always` (`IsRestartableInitContainer`).
pub fn is_restartable_init_container(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Whether the pod is being deleted (a deletion timestamp is set).
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// kubelet's `ShouldContainerBeRestarted`: whether a container that is not running should be
/// (re)started. A deleted pod restarts nothing; a container never seen, or created but not
/// started, or in an unknown state, is started; an exited one follows the restart policy.
pub fn should_container_be_restarted(
    container: &Container,
    pod: &Pod,
    status: &PodRuntimeStatus,
) -> bool {
    if is_terminating(pod) {
        return false;
    }
    let Some(latest) = status.latest(&container.name) else {
        return true;
    };
    match latest.state {
        ContainerState::Running => false,
        ContainerState::Unknown | ContainerState::Created => true,
        ContainerState::Exited => match restart_policy(pod) {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => latest.exit_code != 0,
            RestartPolicy::Always => true,
        },
    }
}

/// kubelet's `isInitContainerFailed`: OOM-killed, exited non-zero, or unknown.
pub fn is_init_container_failed(state: ContainerState, exit_code: i32, reason: &str) -> bool {
    reason == "OOMKilled"
        || (state == ContainerState::Exited && exit_code != 0)
        || state == ContainerState::Unknown
}

/// kubelet's `containerSucceeded`: the newest instance exited 0.
pub fn container_succeeded(container: &Container, status: &PodRuntimeStatus) -> bool {
    status
        .latest(&container.name)
        .is_some_and(|c| c.state == ContainerState::Exited && c.exit_code == 0)
}

/// The pod's init containers, none when the spec has none.
pub fn init_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[])
}

/// The pod's app containers, none when there is no spec.
pub fn app_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[])
}
