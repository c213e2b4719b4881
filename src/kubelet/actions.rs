//! `compute_pod_actions`: kubelet's `computePodActions` and `computeInitContainerActions`
//! (`pkg/kubelet/kuberuntime/kuberuntime_manager.go`, `kuberuntime_container.go`), with the
//! back-off check of `SyncPod`'s start helper (`doBackOff`) folded into the plan.
//!
//! Pure: the same pod, snapshot, probe results, back-off and time always give the same plan.

use k8s_openapi::api::core::v1::{Container, Pod};

use super::backoff::{go_duration, Backoff, BackoffKey};
use super::clock::Now;
use super::plan::{
    BackingOff, BackoffStep, ContainerKill, ContainerKind, ContainerStart, CreateSandbox,
    KillPodReason, KillReason, PodActions, PodOutcome, StartReason,
};
use super::probe::{ProbeKind, ProbeResult, ProbeResults};
use super::restart::{
    app_containers, container_succeeded, init_containers, is_init_container_failed,
    is_restartable_init_container, is_terminating, restart_policy, should_container_be_restarted,
    should_restart_on_failure, RestartPolicy,
};
use super::runtime::{container_hash, ContainerState, ContainerStatus, PodRuntimeStatus};
use super::sandbox::{pod_sandbox_changed, SandboxChange};

/// The API server's default terminationGracePeriodSeconds; static pods are defaulted as
/// API objects are, so an absent field means 30.
pub const DEFAULT_TERMINATION_GRACE_PERIOD: i64 = 30;
/// kubelet's `minimumGracePeriodInSeconds`: every kill gives at least this much.
pub const MINIMUM_GRACE_PERIOD: i64 = 2;

/// The plan for `pod` given what the engine reports, the probe results, the back-off state
/// and the time.
pub fn compute_pod_actions(
    pod: &Pod,
    status: &PodRuntimeStatus,
    probes: &ProbeResults,
    backoff: &Backoff,
    now: Now,
) -> PodActions {
    let cx = Cx {
        pod,
        probes,
        backoff,
        now,
    };
    let mut plan = if is_terminating(pod) {
        terminating_actions(&cx, status)
    } else {
        running_actions(&cx, status)
    };
    cx.apply_backoff(&mut plan);
    plan
}

struct Cx<'a> {
    pod: &'a Pod,
    probes: &'a ProbeResults,
    backoff: &'a Backoff,
    now: Now,
}

fn running_actions(cx: &Cx<'_>, status: &PodRuntimeStatus) -> PodActions {
    let pod = cx.pod;
    let decision = pod_sandbox_changed(pod, status);
    let mut plan = PodActions {
        sandbox_id: decision.sandbox_id.clone(),
        ..PodActions::default()
    };
    if let Some(change) = decision.change {
        plan.kill_pod =
            (change != SandboxChange::None).then_some(KillPodReason::SandboxChanged(change));
        // A new UID is a new pod: nothing the old one ran counts for it.
        let empty = PodRuntimeStatus::default();
        let seen = if change == SandboxChange::PodChanged {
            &empty
        } else {
            status
        };
        sandbox_actions(cx, seen, decision.attempt, &mut plan);
        return plan;
    }

    let initialized = init_container_actions(cx, status, &mut plan);
    if plan.kill_pod.is_some() || !initialized {
        return plan;
    }

    let restart = should_restart_on_failure(pod);
    let mut keep = 0;
    for (idx, c) in app_containers(pod).iter().enumerate() {
        let latest = status.latest(&c.name);
        match latest {
            Some(s) if s.state == ContainerState::Running => {
                let Some((reason, message)) = cx.kill_reason(c, s, ContainerKind::App) else {
                    keep += 1;
                    continue;
                };
                // A changed spec restarts regardless of the policy; a failed probe per policy.
                let restart = restart || reason == KillReason::SpecChanged;
                let message = if restart {
                    format!("{message}, will be restarted")
                } else {
                    message
                };
                plan.containers_to_kill
                    .push(cx.kill(c, s, ContainerKind::App, reason, message));
                if restart {
                    plan.containers_to_start.push(cx.start(
                        c,
                        idx,
                        ContainerKind::App,
                        StartReason::Replaced,
                        status,
                    ));
                }
            }
            _ => {
                if !should_container_be_restarted(c, pod, status) {
                    continue;
                }
                let reason = start_reason(latest);
                if let Some(s) = latest.filter(|s| s.state == ContainerState::Unknown) {
                    let message = unknown_message("Container");
                    plan.containers_to_kill.push(cx.kill(
                        c,
                        s,
                        ContainerKind::App,
                        KillReason::Unknown,
                        message,
                    ));
                }
                plan.containers_to_start
                    .push(cx.start(c, idx, ContainerKind::App, reason, status));
            }
        }
    }

    if keep == 0 && plan.containers_to_start.is_empty() {
        // Every app container is done: kill the pod; sidecars must not keep it alive.
        plan.kill_pod = Some(KillPodReason::Completed);
        plan.init_containers_to_start.clear();
        plan.done = Some(completed_outcome(pod, status));
    }
    plan
}

/// The sandbox must be (re)created: everything restarts from the first init container,
/// unless the pod has nothing left to run.
fn sandbox_actions(cx: &Cx<'_>, status: &PodRuntimeStatus, attempt: u32, plan: &mut PodActions) {
    let pod = cx.pod;
    if !should_restart_on_failure(pod) && attempt != 0 && !status.containers.is_empty() {
        // restartPolicy Never and the pod already ran: no new sandbox, the pod is over.
        plan.done = Some(completed_outcome(pod, status));
        return;
    }
    let to_start: Vec<usize> = app_containers(pod)
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            !(restart_policy(pod) == RestartPolicy::OnFailure && container_succeeded(c, status))
        })
        .map(|(i, _)| i)
        .collect();
    if to_start.is_empty() && has_any_regular_container_created(pod, status) {
        // OnFailure and every app container succeeded: nothing to re-create.
        plan.done = Some(PodOutcome::Succeeded);
        return;
    }
    plan.create_sandbox = Some(CreateSandbox { attempt });
    if let Some(first) = init_containers(pod).first() {
        plan.init_containers_to_start.push(cx.start(
            first,
            0,
            init_kind(first),
            StartReason::FirstStart,
            status,
        ));
        return;
    }
    for idx in to_start {
        if let Some(c) = app_containers(pod).get(idx) {
            let reason = if status.latest(&c.name).is_some() {
                StartReason::Restart
            } else {
                StartReason::FirstStart
            };
            plan.containers_to_start
                .push(cx.start(c, idx, ContainerKind::App, reason, status));
        }
    }
}

/// kubelet's `computeInitContainerActions`: returns whether the pod is initialized.
///
/// The init containers are walked from the last to the first: completed ones may have been
/// removed from the engine, so the furthest one with a status says how far initialization
/// got. Before it, only native sidecars still matter (kept running, restarted when exited).
fn init_container_actions(cx: &Cx<'_>, status: &PodRuntimeStatus, plan: &mut PodActions) -> bool {
    let pod = cx.pod;
    let inits = init_containers(pod);
    if inits.is_empty() {
        return true;
    }
    // A created or running app container means initialization finished once already.
    let mut initialized = app_containers(pod).iter().any(|c| {
        status
            .latest(&c.name)
            .is_some_and(|s| matches!(s.state, ContainerState::Created | ContainerState::Running))
    });
    let mut previously_initialized = initialized;
    let restart_on_failure = should_restart_on_failure(pod);
    let mut starts: Vec<(usize, StartReason)> = Vec::new();
    let last = inits.len() - 1;

    for i in (0..inits.len()).rev() {
        let c = &inits[i];
        let sidecar = is_restartable_init_container(c);
        let kind = init_kind(c);
        let Some(s) = status.latest(&c.name) else {
            if previously_initialized && sidecar {
                starts.push((i, StartReason::FirstStart));
            }
            continue;
        };
        if previously_initialized && !sidecar {
            continue;
        }
        match s.state {
            // Created but not started: the start failed; start it again.
            ContainerState::Created => starts.push((i, StartReason::NotStarted)),
            ContainerState::Running if sidecar => {
                'sidecar: {
                    if c.startup_probe.is_some() {
                        match cx.probes.get(&s.id, ProbeKind::Startup) {
                            // Not probed yet: the next init container waits for it.
                            None | Some(ProbeResult::Unknown) => break 'sidecar,
                            Some(ProbeResult::Failure) => {
                                let message =
                                    format!("Init container {} failed startup probe", c.name);
                                plan.containers_to_kill.push(cx.kill(
                                    c,
                                    s,
                                    kind,
                                    KillReason::StartupFailed,
                                    message,
                                ));
                                starts.push((i, StartReason::Replaced));
                                break 'sidecar;
                            }
                            Some(ProbeResult::Success) => {}
                        }
                    }
                    // Started: the next init container may go.
                    if i == last {
                        initialized = true;
                    } else if !previously_initialized {
                        // This one is started for the first time: the next one may go.
                        starts.push((i + 1, StartReason::FirstStart));
                    }
                    if s.hash != container_hash(c) {
                        let message = format!("Init container {} definition changed", c.name);
                        plan.containers_to_kill.push(cx.kill(
                            c,
                            s,
                            kind,
                            KillReason::SpecChanged,
                            message,
                        ));
                        starts.push((i, StartReason::Replaced));
                        break 'sidecar;
                    }
                    // Liveness does not gate the next init container, it only restarts this one.
                    if c.liveness_probe.is_some()
                        && cx.probes.get(&s.id, ProbeKind::Liveness) == Some(ProbeResult::Failure)
                    {
                        let message = format!("Init container {} failed liveness probe", c.name);
                        plan.containers_to_kill.push(cx.kill(
                            c,
                            s,
                            kind,
                            KillReason::LivenessFailed,
                            message,
                        ));
                        starts.push((i, StartReason::Replaced));
                    }
                }
            }
            // A regular init container running: wait for it to finish.
            ContainerState::Running => {}
            ContainerState::Exited if sidecar => starts.push((i, StartReason::Restart)),
            ContainerState::Exited => {
                if is_init_container_failed(s.state, s.exit_code, &s.reason) {
                    if !restart_on_failure {
                        plan.kill_pod = Some(KillPodReason::InitContainerFailed(c.name.clone()));
                        plan.init_containers_to_start.clear();
                        plan.done = Some(PodOutcome::Failed);
                        return false;
                    }
                    starts.push((i, StartReason::Restart));
                } else if i == last {
                    initialized = true;
                } else {
                    starts.push((i + 1, StartReason::FirstStart));
                }
            }
            ContainerState::Unknown => {
                if !sidecar && !restart_on_failure {
                    plan.kill_pod = Some(KillPodReason::InitContainerFailed(c.name.clone()));
                    plan.init_containers_to_start.clear();
                    plan.done = Some(PodOutcome::Failed);
                    return false;
                }
                let message = unknown_message("Init container");
                plan.containers_to_kill
                    .push(cx.kill(c, s, kind, KillReason::Unknown, message));
                starts.push((i, StartReason::Unknown));
            }
        }
        previously_initialized = true;
    }
    if !previously_initialized {
        // Nothing has run yet: start the first one.
        starts.push((0, StartReason::FirstStart));
    }
    starts.reverse();
    for (i, reason) in starts {
        if let Some(c) = inits.get(i) {
            let start = cx.start(c, i, init_kind(c), reason, status);
            plan.init_containers_to_start.push(start);
        }
    }
    initialized
}

/// A pod being deleted: kill what runs, app containers first, then sidecars in reverse
/// order (kubelet's termination ordering), then the sandbox; start nothing.
fn terminating_actions(cx: &Cx<'_>, status: &PodRuntimeStatus) -> PodActions {
    let pod = cx.pod;
    let mut plan = PodActions {
        sandbox_id: status
            .latest_sandbox()
            .map(|s| s.id.clone())
            .unwrap_or_default(),
        ..PodActions::default()
    };
    let running = |c: &Container| {
        status.latest(&c.name).filter(|s| {
            matches!(
                s.state,
                ContainerState::Running | ContainerState::Unknown | ContainerState::Created
            )
        })
    };
    for c in app_containers(pod) {
        if let Some(s) = running(c) {
            let message = format!("Stopping container {}", c.name);
            plan.containers_to_kill.push(cx.kill(
                c,
                s,
                ContainerKind::App,
                KillReason::PodTerminating,
                message,
            ));
        }
    }
    for c in init_containers(pod).iter().rev() {
        if let Some(s) = running(c) {
            let message = format!("Stopping container {}", c.name);
            let kind = init_kind(c);
            plan.containers_to_kill
                .push(cx.kill(c, s, kind, KillReason::PodTerminating, message));
        }
    }
    let sandbox_ready = status
        .latest_sandbox()
        .is_some_and(|s| s.state == super::runtime::SandboxState::Ready);
    if sandbox_ready || !plan.containers_to_kill.is_empty() {
        plan.kill_pod = Some(KillPodReason::Terminating);
    }
    plan
}

impl Cx<'_> {
    /// Why a running container must be killed, if it must (changed spec, liveness failure,
    /// startup failure, checked in that order as kubelet does).
    fn kill_reason(
        &self,
        c: &Container,
        s: &ContainerStatus,
        kind: ContainerKind,
    ) -> Option<(KillReason, String)> {
        let what = if kind == ContainerKind::App {
            "Container"
        } else {
            "Init container"
        };
        if s.hash != container_hash(c) {
            return Some((
                KillReason::SpecChanged,
                format!("{what} {} definition changed", c.name),
            ));
        }
        if self.probes.get(&s.id, ProbeKind::Liveness) == Some(ProbeResult::Failure) {
            return Some((
                KillReason::LivenessFailed,
                format!("{what} {} failed liveness probe", c.name),
            ));
        }
        if self.probes.get(&s.id, ProbeKind::Startup) == Some(ProbeResult::Failure) {
            return Some((
                KillReason::StartupFailed,
                format!("{what} {} failed startup probe", c.name),
            ));
        }
        None
    }

    fn kill(
        &self,
        c: &Container,
        s: &ContainerStatus,
        kind: ContainerKind,
        reason: KillReason,
        message: String,
    ) -> ContainerKill {
        ContainerKill {
            name: c.name.clone(),
            id: s.id.clone(),
            kind,
            reason,
            message,
            grace_period_seconds: grace_period(self.pod, c, reason),
        }
    }

    fn start(
        &self,
        c: &Container,
        index: usize,
        kind: ContainerKind,
        reason: StartReason,
        status: &PodRuntimeStatus,
    ) -> ContainerStart {
        let restart_count = status
            .latest(&c.name)
            .map_or(0, |s| s.attempt.saturating_add(1));
        let backoff_step = status
            .latest_exited(&c.name)
            .and_then(|s| s.finished_at)
            .map(|t| BackoffStep {
                key: self.backoff_key(c),
                event: self.now.instant_of(t),
            });
        ContainerStart {
            name: c.name.clone(),
            index,
            kind,
            reason,
            restart_count,
            backoff_step,
        }
    }

    fn backoff_key(&self, c: &Container) -> BackoffKey {
        BackoffKey::new(
            self.pod.metadata.uid.clone().unwrap_or_default(),
            c.name.clone(),
        )
    }

    /// kubelet's `doBackOff`: a start whose newest exited instance finished less than the
    /// key's delay ago waits (CrashLoopBackOff) instead.
    fn apply_backoff(&self, plan: &mut PodActions) {
        let mut waiting = Vec::new();
        for list in [
            &mut plan.init_containers_to_start,
            &mut plan.containers_to_start,
        ] {
            list.retain(|start| {
                let Some(step) = &start.backoff_step else {
                    return true;
                };
                match self
                    .backoff
                    .in_backoff_since(&step.key, step.event, self.now.mono)
                {
                    None => true,
                    Some(remaining) => {
                        let delay = self.backoff.delay(&step.key).unwrap_or(remaining);
                        waiting.push(BackingOff {
                            name: start.name.clone(),
                            kind: start.kind,
                            delay,
                            remaining,
                            message: crash_loop_message(self.pod, &start.name, delay),
                        });
                        false
                    }
                }
            });
        }
        plan.backing_off = waiting;
    }
}

/// kubelet's CrashLoopBackOff message: `back-off 40s restarting failed container=NAME
/// pod=NAME_NAMESPACE(UID)` (the pod as kubelet's `format.Pod` prints it).
pub fn crash_loop_message(pod: &Pod, container: &str, delay: std::time::Duration) -> String {
    format!(
        "back-off {} restarting failed container={container} pod={}",
        go_duration(delay),
        format_pod(pod)
    )
}

/// kubelet's `format.Pod`: `name_namespace(uid)`.
pub fn format_pod(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or(""),
        m.namespace.as_deref().unwrap_or("default"),
        m.uid.as_deref().unwrap_or("")
    )
}

/// kubelet's `setTerminationGracePeriod` and `killContainer`'s minimum: the pod's deletion
/// grace period if set, else the probe's own for a probe kill, else the pod's
/// terminationGracePeriodSeconds (default 30); never less than 2 s.
pub fn grace_period(pod: &Pod, c: &Container, reason: KillReason) -> i64 {
    let probe_period = match reason {
        KillReason::LivenessFailed => c.liveness_probe.as_ref(),
        KillReason::StartupFailed => c.startup_probe.as_ref(),
        _ => None,
    }
    .and_then(|p| p.termination_grace_period_seconds);
    let period = pod
        .metadata
        .deletion_grace_period_seconds
        .or(probe_period)
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(DEFAULT_TERMINATION_GRACE_PERIOD);
    period.max(MINIMUM_GRACE_PERIOD)
}

fn init_kind(c: &Container) -> ContainerKind {
    if is_restartable_init_container(c) {
        ContainerKind::Sidecar
    } else {
        ContainerKind::Init
    }
}

fn start_reason(latest: Option<&ContainerStatus>) -> StartReason {
    match latest.map(|s| s.state) {
        None => StartReason::FirstStart,
        Some(ContainerState::Created) => StartReason::NotStarted,
        Some(ContainerState::Unknown) => StartReason::Unknown,
        Some(_) => StartReason::Restart,
    }
}

fn unknown_message(what: &str) -> String {
    format!("{what} is in \"unknown\" state, try killing it before restart")
}

/// kubelet's `hasAnyRegularContainerCreated`: an app container was created, runs or exited.
fn has_any_regular_container_created(pod: &Pod, status: &PodRuntimeStatus) -> bool {
    app_containers(pod).iter().any(|c| {
        status.latest(&c.name).is_some_and(|s| {
            matches!(
                s.state,
                ContainerState::Created | ContainerState::Running | ContainerState::Exited
            )
        })
    })
}

/// How a pod whose containers are all done ended: Succeeded when every app container's
/// newest instance exited 0, Failed otherwise (getPhase for a non-Always pod).
fn completed_outcome(pod: &Pod, status: &PodRuntimeStatus) -> PodOutcome {
    let failed_init = init_containers(pod).iter().any(|c| {
        !is_restartable_init_container(c)
            && status
                .latest(&c.name)
                .is_some_and(|s| is_init_container_failed(s.state, s.exit_code, &s.reason))
    });
    let all_succeeded = app_containers(pod)
        .iter()
        .all(|c| container_succeeded(c, status));
    if all_succeeded && !failed_init {
        PodOutcome::Succeeded
    } else {
        PodOutcome::Failed
    }
}

#[cfg(test)]
#[path = "actions_tests.rs"]
mod tests;
