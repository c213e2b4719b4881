//! The pod phase: kubelet's `getPhase` (`pkg/kubelet/kubelet_pods.go`), computed from the
//! API container statuses as kubelet computes it.
//!
//! CrashLoopBackOff is not a phase: a container waiting to restart after a termination counts
//! as stopped, so a crash-looping pod under Always stays Running.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::restart::{
    app_containers, init_containers, is_restartable_init_container, restart_policy, RestartPolicy,
};

/// Pending: accepted, not every container has started.
pub const PENDING: &str = "Pending";
/// Running: bound, every container created, at least one running or restarting.
pub const RUNNING: &str = "Running";
/// Succeeded: every container terminated in success and will not be restarted.
pub const SUCCEEDED: &str = "Succeeded";
/// Failed: every container terminated, at least one in failure, and none will be restarted.
pub const FAILED: &str = "Failed";

/// Whether `phase` is Succeeded or Failed.
pub fn is_terminal(phase: &str) -> bool {
    phase == SUCCEEDED || phase == FAILED
}

fn find<'a>(statuses: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

/// kubelet's `getPhase`. `init` and `apps` are the API statuses of the init and app
/// containers; `has_initialized` is whether an app container runs (kubelet's
/// `HasAnyActiveRegularContainerStarted`), which keeps a pod whose sidecar restarts Running.
/// `terminal` is whether the pod is known to be over (deleted and stopped): its containers
/// will not be restarted whatever the policy.
pub fn pod_phase(
    pod: &Pod,
    init: &[ContainerStatus],
    apps: &[ContainerStatus],
    has_initialized: bool,
    terminal: bool,
) -> &'static str {
    let mut pending_init = 0;
    let mut pending_sidecars = 0;
    let mut failed_init = 0;
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);

    for c in init_containers(pod) {
        let status = find(init, &c.name);
        let state = status.and_then(|s| s.state.as_ref());
        let last_terminated = status
            .and_then(|s| s.last_state.as_ref())
            .and_then(|l| l.terminated.as_ref());
        if is_restartable_init_container(c) {
            match state {
                None if status.is_none() => unknown += 1,
                Some(st) if st.running.is_some() => {
                    if status.and_then(|s| s.started) != Some(true) {
                        pending_sidecars += 1;
                    }
                    running += 1;
                }
                // A terminated sidecar does not count for the phase.
                Some(st) if st.terminated.is_some() => {}
                Some(st) if st.waiting.is_some() => {
                    if last_terminated.is_none() {
                        pending_sidecars += 1;
                        waiting += 1;
                    }
                }
                _ => {
                    pending_sidecars += 1;
                    unknown += 1;
                }
            }
            continue;
        }
        match state {
            Some(st) if st.running.is_some() => pending_init += 1,
            Some(st) if st.terminated.is_some() => {
                if st.terminated.as_ref().is_some_and(|t| t.exit_code != 0) {
                    failed_init += 1;
                }
            }
            Some(st) if st.waiting.is_some() => match last_terminated {
                Some(t) if t.exit_code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            },
            _ => pending_init += 1,
        }
    }

    for c in app_containers(pod) {
        let Some(status) = find(apps, &c.name) else {
            unknown += 1;
            continue;
        };
        let last_terminated = status
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref());
        match status.state.as_ref() {
            Some(st) if st.running.is_some() => running += 1,
            Some(st) if st.terminated.is_some() => {
                stopped += 1;
                if st.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
                    succeeded += 1;
                }
            }
            Some(st) if st.waiting.is_some() => {
                if last_terminated.is_some() {
                    stopped += 1;
                } else {
                    waiting += 1;
                }
            }
            _ => unknown += 1,
        }
    }

    let policy = restart_policy(pod);
    if failed_init > 0 && policy == RestartPolicy::Never {
        return FAILED;
    }
    if pending_init > 0 || (pending_sidecars > 0 && !has_initialized) || waiting > 0 {
        return PENDING;
    }
    if running > 0 && unknown == 0 {
        return RUNNING;
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if terminal {
            return if stopped == succeeded {
                SUCCEEDED
            } else {
                FAILED
            };
        }
        return match policy {
            // Every container is restarting.
            RestartPolicy::Always => RUNNING,
            _ if stopped == succeeded => SUCCEEDED,
            RestartPolicy::Never => FAILED,
            // OnFailure with a failure: restarting.
            RestartPolicy::OnFailure => RUNNING,
        };
    }
    PENDING
}
