//! Pod conditions as pure functions: kubelet's `pkg/kubelet/status/generate.go`, plus
//! PodScheduled (kubelet sets it True when missing) and PodReadyToStartContainers.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition};

use super::phase::{FAILED, SUCCEEDED};
use super::restart::{app_containers, init_containers, is_restartable_init_container};

/// Condition types.
pub const POD_SCHEDULED: &str = "PodScheduled";
/// The sandbox is ready and has its network.
pub const POD_READY_TO_START_CONTAINERS: &str = "PodReadyToStartContainers";
/// Every init container has completed (sidecars: started).
pub const INITIALIZED: &str = "Initialized";
/// Every container (and sidecar) is ready.
pub const CONTAINERS_READY: &str = "ContainersReady";
/// The pod can serve: ContainersReady and every readiness gate.
pub const READY: &str = "Ready";

/// Reasons kubelet uses.
pub const UNKNOWN_CONTAINER_STATUSES: &str = "UnknownContainerStatuses";
/// Some container is not ready.
pub const CONTAINERS_NOT_READY: &str = "ContainersNotReady";
/// Some init container has not completed.
pub const CONTAINERS_NOT_INITIALIZED: &str = "ContainersNotInitialized";
/// Some readiness gate is not satisfied.
pub const READINESS_GATES_NOT_READY: &str = "ReadinessGatesNotReady";
/// The pod succeeded.
pub const POD_COMPLETED: &str = "PodCompleted";
/// The pod failed.
pub const POD_FAILED: &str = "PodFailed";

fn condition(
    type_: &str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.map(str::to_string),
        message,
        ..Default::default()
    }
}

fn find<'a>(statuses: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

// Go prints a []string as "[a b]"; kubelet's messages embed the lists that way.
fn go_list(names: &[String]) -> String {
    format!("[{}]", names.join(" "))
}

/// PodScheduled: always True on a node that runs the pod itself.
pub fn pod_scheduled() -> PodCondition {
    condition(POD_SCHEDULED, true, None, None)
}

/// PodReadyToStartContainers: True once the sandbox needs no re-creation.
pub fn ready_to_start_containers(sandbox_ok: bool) -> PodCondition {
    condition(POD_READY_TO_START_CONTAINERS, sandbox_ok, None, None)
}

/// kubelet's `HasAnyRegularContainerStarted`: an app container runs or has terminated.
pub fn has_any_regular_container_started(pod: &Pod, apps: &[ContainerStatus]) -> bool {
    app_containers(pod).iter().any(|c| {
        find(apps, &c.name)
            .and_then(|s| s.state.as_ref())
            .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
    })
}

/// kubelet's `GeneratePodInitializedCondition`.
pub fn initialized(
    pod: &Pod,
    init: &[ContainerStatus],
    apps: &[ContainerStatus],
    phase: &str,
) -> PodCondition {
    let inits = init_containers(pod);
    if inits.is_empty() {
        return condition(INITIALIZED, true, None, None);
    }
    let mut unknown = Vec::new();
    let mut incomplete = Vec::new();
    for c in inits {
        let Some(s) = find(init, &c.name) else {
            unknown.push(c.name.clone());
            continue;
        };
        if is_restartable_init_container(c) {
            if s.started != Some(true) {
                incomplete.push(c.name.clone());
            }
            continue;
        }
        let completed = s
            .state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .is_some_and(|t| t.reason.as_deref() == Some("Completed"));
        if !completed {
            incomplete.push(c.name.clone());
        }
    }
    if phase == SUCCEEDED && unknown.is_empty() {
        return condition(INITIALIZED, true, Some(POD_COMPLETED), None);
    }
    // An app container that started means initialization finished once, even if a
    // sidecar is restarting now.
    if has_any_regular_container_started(pod, apps) {
        return condition(INITIALIZED, true, None, None);
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!(
            "containers with unknown status: {}",
            go_list(&unknown)
        ));
    }
    if !incomplete.is_empty() {
        messages.push(format!(
            "containers with incomplete status: {}",
            go_list(&incomplete)
        ));
    }
    if messages.is_empty() {
        return condition(INITIALIZED, true, None, None);
    }
    condition(
        INITIALIZED,
        false,
        Some(CONTAINERS_NOT_INITIALIZED),
        Some(messages.join(", ")),
    )
}

/// kubelet's `GenerateContainersReadyCondition`: sidecars and app containers must be ready.
pub fn containers_ready(
    pod: &Pod,
    init: &[ContainerStatus],
    apps: &[ContainerStatus],
    phase: &str,
) -> PodCondition {
    let mut unknown = Vec::new();
    let mut unready = Vec::new();
    let sidecars = init_containers(pod)
        .iter()
        .filter(|c| is_restartable_init_container(c))
        .map(|c| (c, init));
    let regular = app_containers(pod).iter().map(|c| (c, apps));
    for (c, statuses) in sidecars.chain(regular) {
        match find(statuses, &c.name) {
            Some(s) if !s.ready => unready.push(c.name.clone()),
            Some(_) => {}
            None => unknown.push(c.name.clone()),
        }
    }
    if phase == SUCCEEDED && unknown.is_empty() {
        return condition(CONTAINERS_READY, false, Some(POD_COMPLETED), None);
    }
    if phase == FAILED {
        return condition(CONTAINERS_READY, false, Some(POD_FAILED), None);
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!(
            "containers with unknown status: {}",
            go_list(&unknown)
        ));
    }
    if !unready.is_empty() {
        messages.push(format!(
            "containers with unready status: {}",
            go_list(&unready)
        ));
    }
    if messages.is_empty() {
        return condition(CONTAINERS_READY, true, None, None);
    }
    condition(
        CONTAINERS_READY,
        false,
        Some(CONTAINERS_NOT_READY),
        Some(messages.join(", ")),
    )
}

/// kubelet's `GeneratePodReadyCondition`: ContainersReady, then every readiness gate must
/// name a True condition among `conditions` (a static pod has no other writer of
/// conditions, so a gate is never satisfied).
pub fn ready(
    pod: &Pod,
    containers_ready: &PodCondition,
    conditions: &[PodCondition],
) -> PodCondition {
    if containers_ready.status != "True" {
        return PodCondition {
            type_: READY.into(),
            ..containers_ready.clone()
        };
    }
    let gates = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_deref())
        .unwrap_or(&[]);
    let mut messages = Vec::new();
    for gate in gates {
        match conditions.iter().find(|c| c.type_ == gate.condition_type) {
            None => messages.push(format!(
                "corresponding condition of pod readiness gate \"{}\" does not exist.",
                gate.condition_type
            )),
            Some(c) if c.status != "True" => messages.push(format!(
                "the status of pod readiness gate \"{}\" is not \"True\", but {}",
                gate.condition_type, c.status
            )),
            Some(_) => {}
        }
    }
    if messages.is_empty() {
        return condition(READY, true, None, None);
    }
    condition(
        READY,
        false,
        Some(READINESS_GATES_NOT_READY),
        Some(messages.join(", ")),
    )
}
