//! The pod status a user reads, as pure functions: kubelet's `generateAPIPodStatus` and
//! `convertToAPIContainerStatuses` (`pkg/kubelet/kubelet_pods.go`), the prober's
//! `UpdatePodStatus` (ready and started), the phase ([`super::phase`]) and the conditions
//! ([`super::conditions`]).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus as ApiStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::clock::Now;
use super::conditions;
use super::phase::{is_terminal, pod_phase};
use super::plan::PodActions;
use super::probe::{ProbeKind, ProbeResult, ProbeResults};
use super::restart::{
    app_containers, init_containers, is_restartable_init_container, should_container_be_restarted,
};
use super::runtime::{ContainerState, ContainerStatus, PodRuntimeStatus};
use super::sandbox::pod_sandbox_changed;

/// Waiting reasons kubelet reports.
pub const CONTAINER_CREATING: &str = "ContainerCreating";
/// An init container has not finished yet.
pub const POD_INITIALIZING: &str = "PodInitializing";
/// The container waits out its restart back-off.
pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
/// The image pull failed.
pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
/// The image pull waits out its back-off.
pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
/// The container's config (env from a missing ConfigMap, ...) could not be made.
pub const CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";
/// The engine refused to create the container.
pub const CREATE_CONTAINER_ERROR: &str = "CreateContainerError";
/// The engine failed to start the container.
pub const RUN_CONTAINER_ERROR: &str = "RunContainerError";

/// Why a container failed to start last time: kubelet's `ReasonCache`, one per pod, set from
/// the results of a sync (a back-off, an image pull error) and cleared by a successful start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReasonCache {
    map: HashMap<String, (String, String)>,
}

impl ReasonCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records why `container` did not start.
    pub fn set(&mut self, container: &str, reason: &str, message: &str) {
        self.map.insert(
            container.to_string(),
            (reason.to_string(), message.to_string()),
        );
    }

    /// Forgets `container`'s reason (it started).
    pub fn clear(&mut self, container: &str) {
        self.map.remove(container);
    }

    /// The reason and message recorded for `container`.
    pub fn get(&self, container: &str) -> Option<(&str, &str)> {
        self.map
            .get(container)
            .map(|(r, m)| (r.as_str(), m.as_str()))
    }

    /// Records the CrashLoopBackOff of every container the plan holds back.
    pub fn record_backoffs(&mut self, plan: &PodActions) {
        for b in &plan.backing_off {
            self.set(&b.name, CRASH_LOOP_BACK_OFF, &b.message);
        }
    }
}

/// Everything the status is computed from.
#[derive(Clone, Copy, Debug)]
pub struct StatusInput<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// What the engine reports.
    pub runtime: &'a PodRuntimeStatus,
    /// The published probe results.
    pub probes: &'a ProbeResults,
    /// Why containers failed to start.
    pub reasons: &'a ReasonCache,
    /// The status computed last time, for start time, transition times and to keep a
    /// terminal phase terminal.
    pub previous: Option<&'a PodStatus>,
    /// The time.
    pub now: Now,
}

/// The pod's status.
pub fn pod_status(input: &StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let previous = input.previous;
    let old_init = previous
        .and_then(|p| p.init_container_statuses.as_deref())
        .unwrap_or(&[]);
    let old_apps = previous
        .and_then(|p| p.container_statuses.as_deref())
        .unwrap_or(&[]);
    let init = container_statuses(input, init_containers(pod), true, old_init);
    let apps = container_statuses(input, app_containers(pod), false, old_apps);

    // kubelet's HasAnyActiveRegularContainerStarted: an app container is running now.
    let has_initialized = app_containers(pod).iter().any(|c| {
        input
            .runtime
            .latest(&c.name)
            .is_some_and(|s| s.state == ContainerState::Running)
    });
    let mut phase = pod_phase(pod, &init, &apps, has_initialized, false);
    // A pod never leaves a terminal phase (the status manager refuses the transition).
    if let Some(old) = previous.and_then(|p| p.phase.as_deref()) {
        if is_terminal(old) && !is_terminal(phase) {
            phase = if old == super::phase::SUCCEEDED {
                super::phase::SUCCEEDED
            } else {
                super::phase::FAILED
            };
        }
    }

    let sandbox_ok = pod_sandbox_changed(pod, input.runtime).change.is_none();
    let containers_ready = conditions::containers_ready(pod, &init, &apps, phase);
    let ready = conditions::ready(pod, &containers_ready, &[]);
    let mut conds = vec![
        conditions::ready_to_start_containers(sandbox_ok),
        conditions::initialized(pod, &init, &apps, phase),
        ready,
        containers_ready,
        conditions::pod_scheduled(),
    ];
    let old_conds = previous
        .and_then(|p| p.conditions.as_deref())
        .unwrap_or(&[]);
    for c in &mut conds {
        c.last_transition_time = Some(transition_time(c, old_conds, input.now));
    }

    let ips = input.runtime.pod_ips();
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conds),
        pod_ip: ips.first().cloned(),
        pod_ips: (!ips.is_empty()).then(|| ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        start_time: Some(
            previous
                .and_then(|p| p.start_time.clone())
                .unwrap_or(Time(input.now.wall)),
        ),
        init_container_statuses: (!init.is_empty()).then_some(init),
        container_statuses: Some(apps),
        qos_class: pod
            .spec
            .as_ref()
            .and_then(|s| crate::podspec::qos_class(s).ok())
            .map(|q| q.as_str().to_string()),
        ..Default::default()
    }
}

// The status manager keeps a condition's transition time while its status does not change.
fn transition_time(c: &PodCondition, old: &[PodCondition], now: Now) -> Time {
    old.iter()
        .find(|o| o.type_ == c.type_ && o.status == c.status)
        .and_then(|o| o.last_transition_time.clone())
        .unwrap_or(Time(now.wall))
}

/// kubelet's `convertToAPIContainerStatuses` for one list of containers (`init` says which),
/// with ready and started set as the prober does.
pub fn container_statuses(
    input: &StatusInput<'_>,
    containers: &[Container],
    init: bool,
    old: &[ApiStatus],
) -> Vec<ApiStatus> {
    let pod = input.pod;
    let has_init = !init_containers(pod).is_empty();
    let default_reason = if has_init {
        POD_INITIALIZING
    } else {
        CONTAINER_CREATING
    };
    containers
        .iter()
        .map(|c| {
            let instances = input.runtime.instances(&c.name);
            let old_status = old.iter().find(|o| o.name == c.name);
            let mut status = match instances.first() {
                Some(latest) => convert(latest, old_status),
                None => ApiStatus {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    state: Some(waiting(default_reason, None)),
                    ..Default::default()
                },
            };
            if let Some(previous) = instances.get(1) {
                status.last_state = convert(previous, None).state;
            }
            override_waiting(input, c, init, &mut status);
            set_ready_and_started(input, c, init, &mut status);
            status
        })
        .collect()
}

// A container that will be restarted and failed to start last time shows why as a waiting
// reason (CrashLoopBackOff, ErrImagePull, ...); its termination moves to lastState.
fn override_waiting(input: &StatusInput<'_>, c: &Container, init: bool, status: &mut ApiStatus) {
    let latest = input.runtime.latest(&c.name);
    if init && latest.is_some_and(|s| s.state == ContainerState::Exited && s.exit_code == 0) {
        return;
    }
    if !should_container_be_restarted(c, input.pod, input.runtime) {
        return;
    }
    let Some((reason, message)) = input.reasons.get(&c.name) else {
        return;
    };
    if status
        .state
        .as_ref()
        .is_some_and(|s| s.terminated.is_some())
    {
        status.last_state = status.state.take();
    }
    status.state = Some(waiting(reason, Some(message)));
}

// The prober's UpdatePodStatus: started once running and the startup probe succeeded (or
// there is none); ready once started, running and readiness succeeded (or there is none).
// A completed regular init container is ready.
fn set_ready_and_started(
    input: &StatusInput<'_>,
    c: &Container,
    init: bool,
    status: &mut ApiStatus,
) {
    let running = status.state.as_ref().is_some_and(|s| s.running.is_some());
    let id = input
        .runtime
        .latest(&c.name)
        .map(|s| s.id.as_str())
        .unwrap_or("");
    let started = running
        && match input.probes.get(id, ProbeKind::Startup) {
            Some(r) => r == ProbeResult::Success,
            None => c.startup_probe.is_none(),
        };
    status.started = Some(started);
    if init && !is_restartable_init_container(c) {
        status.ready = status
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 0);
        return;
    }
    status.ready = started
        && match input.probes.get(id, ProbeKind::Readiness) {
            Some(ProbeResult::Success) => true,
            _ => c.readiness_probe.is_none(),
        };
}

fn waiting(reason: &str, message: Option<&str>) -> ApiState {
    ApiState {
        waiting: Some(ContainerStateWaiting {
            reason: (!reason.is_empty()).then(|| reason.to_string()),
            message: message.filter(|m| !m.is_empty()).map(str::to_string),
        }),
        ..Default::default()
    }
}

/// The engine's ID as the API shows it.
pub fn container_id(id: &str) -> String {
    format!("peapod://{id}")
}

// kubelet's convertContainerStatus.
fn convert(s: &ContainerStatus, old: Option<&ApiStatus>) -> ApiStatus {
    let mut restart_count = i32::try_from(s.attempt).unwrap_or(i32::MAX);
    let cid = container_id(&s.id);
    let state = match s.state {
        ContainerState::Running => ApiState {
            running: Some(ContainerStateRunning {
                started_at: s.started_at.map(Time),
            }),
            ..Default::default()
        },
        // Created but not running: waiting to run, with no reason of its own.
        ContainerState::Created => waiting("", None),
        ContainerState::Exited => ApiState {
            terminated: Some(ContainerStateTerminated {
                exit_code: s.exit_code,
                reason: Some(termination_reason(s)),
                message: (!s.message.is_empty()).then(|| s.message.clone()),
                signal: s.signal,
                started_at: s.started_at.map(Time),
                finished_at: s.finished_at.map(Time),
                container_id: Some(cid.clone()),
            }),
            ..Default::default()
        },
        // Lost while it was running: it ran and is gone, which is not "never ran".
        ContainerState::Unknown if old.is_some_and(was_running) => {
            restart_count = old.map_or(0, |o| o.restart_count.saturating_add(1));
            ApiState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 137,
                    reason: Some("ContainerStatusUnknown".into()),
                    message: Some(
                        "The container could not be located when the pod was terminated".into(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            }
        }
        ContainerState::Unknown => waiting("", None),
    };
    ApiStatus {
        name: s.name.clone(),
        image: s.image.clone(),
        image_id: s.image_ref.clone(),
        container_id: Some(cid),
        restart_count,
        state: Some(state),
        ..Default::default()
    }
}

fn was_running(old: &ApiStatus) -> bool {
    old.state.as_ref().is_some_and(|s| s.running.is_some())
}

// The engine's reason when it gave one, else what containerd reports: Completed for exit 0,
// Error otherwise.
fn termination_reason(s: &ContainerStatus) -> String {
    if !s.reason.is_empty() {
        return s.reason.clone();
    }
    if s.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
    .to_string()
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
