//! The plan [`super::actions::compute_pod_actions`] returns: kubelet's `podActions`.

use std::time::Duration;

use super::backoff::{Backoff, BackoffKey};
use super::clock::{Instant, Now};
use super::sandbox::SandboxChange;

/// Which list of the spec a container comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerKind {
    /// A regular init container: runs to completion, one at a time.
    Init,
    /// A native sidecar: an init container with restartPolicy Always, kept running.
    Sidecar,
    /// A container of `spec.containers`.
    App,
}

/// Why a container is to be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartReason {
    /// No instance exists yet (in this sandbox, for init containers after a re-creation).
    FirstStart,
    /// The newest instance exited and the restart policy says restart.
    Restart,
    /// The newest instance was created but never started (the start failed).
    NotStarted,
    /// The newest instance's state is unknown: it is killed first, then started.
    Unknown,
    /// It is killed now for a probe failure or a spec change and started again.
    Replaced,
}

/// A container to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerStart {
    /// The container's name.
    pub name: String,
    /// Its index in `initContainers` or `containers`.
    pub index: usize,
    /// Which list it is in.
    pub kind: ContainerKind,
    /// Why it starts.
    pub reason: StartReason,
    /// The restartCount (CRI attempt) of the new instance: the newest one's + 1, or 0.
    pub restart_count: u32,
    /// When an exited instance exists, the back-off step to record before starting
    /// (kubelet's `doBackOff` calls `Next(key, finishedAt)` right before the start).
    pub backoff_step: Option<BackoffStep>,
}

/// A back-off step the executor records with [`PodActions::record_backoff`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackoffStep {
    /// The entry's key.
    pub key: BackoffKey,
    /// When the exited instance finished, on the monotonic clock.
    pub event: Instant,
}

/// Why a container is to be killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillReason {
    /// Its liveness probe failed.
    LivenessFailed,
    /// Its startup probe failed.
    StartupFailed,
    /// Its spec hash no longer matches (the image changed).
    SpecChanged,
    /// Its state is unknown; killed to be sure there are never two instances.
    Unknown,
    /// The pod is being deleted.
    PodTerminating,
}

/// A container to kill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerKill {
    /// The container's name.
    pub name: String,
    /// The instance to kill.
    pub id: String,
    /// Which list it is in.
    pub kind: ContainerKind,
    /// Why.
    pub reason: KillReason,
    /// kubelet's message for the Killing event.
    pub message: String,
    /// The grace period between the stop signal and SIGKILL (kubelet's
    /// setTerminationGracePeriod, at least 2 s).
    pub grace_period_seconds: i64,
}

/// A container that would start but is still in back-off (CrashLoopBackOff).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackingOff {
    /// The container's name.
    pub name: String,
    /// Which list it is in.
    pub kind: ContainerKind,
    /// The current back-off delay (shown in the message).
    pub delay: Duration,
    /// How long until it may start.
    pub remaining: Duration,
    /// kubelet's message: "back-off 40s restarting failed container=NAME pod=NAME_NS(UID)".
    pub message: String,
}

/// Why the whole pod is killed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KillPodReason {
    /// The sandbox must be replaced (kubelet's "Pod sandbox changed, it will be killed and
    /// re-created").
    SandboxChanged(SandboxChange),
    /// A regular init container failed under restartPolicy Never.
    InitContainerFailed(String),
    /// Every app container is done and none is to be restarted.
    Completed,
    /// The pod is being deleted.
    Terminating,
}

/// How a finished pod ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodOutcome {
    /// Every app container exited 0.
    Succeeded,
    /// A container failed and will not be restarted.
    Failed,
}

/// A new sandbox to create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateSandbox {
    /// Its attempt number.
    pub attempt: u32,
}

/// What to do for one pod, in the order kubelet's SyncPod does it: kill the pod (its
/// containers then its sandbox) or the listed containers, create the sandbox, start the init
/// containers in order, then the app containers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodActions {
    /// Kill every container and the sandbox first.
    pub kill_pod: Option<KillPodReason>,
    /// Create a sandbox (after the kill).
    pub create_sandbox: Option<CreateSandbox>,
    /// The current sandbox, empty when there is none.
    pub sandbox_id: String,
    /// Init containers to start, in spec order: native sidecars to (re)start and at most one
    /// regular init container, the next one.
    pub init_containers_to_start: Vec<ContainerStart>,
    /// App containers to start.
    pub containers_to_start: Vec<ContainerStart>,
    /// Containers to kill (when the whole pod is not killed, or the pod is terminating).
    pub containers_to_kill: Vec<ContainerKill>,
    /// Containers that would start but wait for their back-off.
    pub backing_off: Vec<BackingOff>,
    /// Set when the pod has finished for good (restartPolicy Never/OnFailure).
    pub done: Option<PodOutcome>,
}

impl PodActions {
    /// The regular init container to start, if any.
    pub fn next_init_container(&self) -> Option<&ContainerStart> {
        self.init_containers_to_start
            .iter()
            .find(|c| c.kind == ContainerKind::Init)
    }

    /// The native sidecars to (re)start, in spec order.
    pub fn sidecars_to_start(&self) -> impl Iterator<Item = &ContainerStart> {
        self.init_containers_to_start
            .iter()
            .filter(|c| c.kind == ContainerKind::Sidecar)
    }

    /// Every start of the plan, init containers first.
    pub fn starts(&self) -> impl Iterator<Item = &ContainerStart> {
        self.init_containers_to_start
            .iter()
            .chain(self.containers_to_start.iter())
    }

    /// Records the back-off steps of the starts, as kubelet does right before starting.
    pub fn record_backoff(&self, backoff: &mut Backoff, now: Now) {
        for step in self.starts().filter_map(|s| s.backoff_step.as_ref()) {
            backoff.next(&step.key, step.event, now.mono);
        }
    }

    /// Whether the plan does nothing.
    pub fn is_noop(&self) -> bool {
        self.kill_pod.is_none()
            && self.create_sandbox.is_none()
            && self.init_containers_to_start.is_empty()
            && self.containers_to_start.is_empty()
            && self.containers_to_kill.is_empty()
    }
}
