//! Probe state: kubelet's prober workers (`pkg/kubelet/prober/worker.go`) and results
//! (`prober/results/`), without the probing itself.
//!
//! One [`ProbeWorker`] per (container, kind), gathered per pod in a [`ProbeSchedule`]. The
//! runner that executes exec/http/tcp/grpc probes asks the schedule which workers are due,
//! runs them, and hands each outcome back with [`ProbeSchedule::record`]; the schedule counts
//! consecutive outcomes against the thresholds and publishes a result into [`ProbeResults`]
//! only when a threshold is reached, as kubelet's worker does.
//!
//! Kubelet's rules reproduced here:
//! - defaults: initialDelaySeconds 0, periodSeconds 10, timeoutSeconds 1, successThreshold 1,
//!   failureThreshold 3 (`SetDefaults_Probe`); liveness and startup need successThreshold 1;
//! - initial results per new container instance: readiness Failure, liveness Success,
//!   startup Unknown;
//! - liveness and readiness are not run until the container has started (the startup
//!   result is Success, or there is no startup probe); startup is not run once it has;
//! - nothing runs before initialDelaySeconds after the container started;
//! - a liveness or startup failure at threshold puts the worker on hold until a new container
//!   instance appears (kubernetes#21751), and resets the run;
//! - a container that is not running publishes Failure; the worker stops when the pod is
//!   terminal or the container exited under restartPolicy Never; a pod being deleted
//!   publishes Success for liveness and startup and stops them.
//!
//! One difference, by design: kubelet's worker ticks every period from when it was created
//! (with a random initial delay after a kubelet restart), so the first probe after
//! initialDelaySeconds lands on the next tick. Here the first probe is due exactly
//! initialDelaySeconds after the container's start, then one period after each probe.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};

use super::clock::{Instant, Now};
use super::restart::{
    app_containers, init_containers, is_restartable_init_container, restart_policy, RestartPolicy,
};
use super::runtime::{ContainerState, PodRuntimeStatus};

/// The three kinds of probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    /// startupProbe: holds the others off until the container has started.
    Startup,
    /// livenessProbe: a failure restarts the container.
    Liveness,
    /// readinessProbe: drives ready, ContainersReady and Ready.
    Readiness,
}

impl ProbeKind {
    /// The kind as kubelet names it in events ("Liveness probe failed: ...").
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }

    /// The container's probe of this kind.
    pub fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Startup => c.startup_probe.as_ref(),
            ProbeKind::Liveness => c.liveness_probe.as_ref(),
            ProbeKind::Readiness => c.readiness_probe.as_ref(),
        }
    }

    /// The value published for a new container instance (worker.go `initialValue`).
    pub fn initial_result(self) -> ProbeResult {
        match self {
            ProbeKind::Readiness => ProbeResult::Failure,
            ProbeKind::Liveness => ProbeResult::Success,
            ProbeKind::Startup => ProbeResult::Unknown,
        }
    }
}

/// A published probe result (`results.Result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// Not probed yet (startup only).
    Unknown,
    /// Succeeded successThreshold times in a row.
    Success,
    /// Failed failureThreshold times in a row, or the container is not running.
    Failure,
}

/// A probe's timing and thresholds with kubelet's defaults applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    /// initialDelaySeconds (default 0).
    pub initial_delay: Duration,
    /// periodSeconds (default 10).
    pub period: Duration,
    /// timeoutSeconds (default 1).
    pub timeout: Duration,
    /// successThreshold (default 1; 1 for liveness and startup).
    pub success_threshold: u32,
    /// failureThreshold (default 3).
    pub failure_threshold: u32,
    /// The probe's terminationGracePeriodSeconds, for a kill caused by this probe.
    pub termination_grace_period: Option<i64>,
}

/// A probe field out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeSpecError {
    /// A field below its minimum.
    #[error("{kind} probe: {field} must be at least {min}, got {value}")]
    TooSmall {
        /// Which probe.
        kind: &'static str,
        /// The field's API name.
        field: &'static str,
        /// The least value allowed.
        min: i32,
        /// The value given.
        value: i32,
    },
    /// successThreshold other than 1 on a liveness or startup probe.
    #[error("{kind} probe: successThreshold must be 1, got {value}")]
    SuccessThresholdNotOne {
        /// Which probe.
        kind: &'static str,
        /// The value given.
        value: i32,
    },
}

impl ProbeSpec {
    /// The spec of `probe` as a probe of `kind`, with defaults, checked as the API validates.
    pub fn from_probe(kind: ProbeKind, probe: &Probe) -> Result<Self, ProbeSpecError> {
        let field = |name: &'static str, v: Option<i32>, default: i32, min: i32| {
            let value = v.unwrap_or(default);
            if value < min {
                return Err(ProbeSpecError::TooSmall {
                    kind: kind.name(),
                    field: name,
                    min,
                    value,
                });
            }
            Ok(u32::try_from(value).unwrap_or(0))
        };
        let initial = field("initialDelaySeconds", probe.initial_delay_seconds, 0, 0)?;
        let period = field("periodSeconds", probe.period_seconds, 10, 1)?;
        let timeout = field("timeoutSeconds", probe.timeout_seconds, 1, 1)?;
        let success = field("successThreshold", probe.success_threshold, 1, 1)?;
        let failure = field("failureThreshold", probe.failure_threshold, 3, 1)?;
        if kind != ProbeKind::Readiness && success != 1 {
            return Err(ProbeSpecError::SuccessThresholdNotOne {
                kind: kind.name(),
                value: probe.success_threshold.unwrap_or(1),
            });
        }
        Ok(ProbeSpec {
            initial_delay: Duration::from_secs(initial.into()),
            period: Duration::from_secs(period.into()),
            timeout: Duration::from_secs(timeout.into()),
            success_threshold: success,
            failure_threshold: failure,
            // kubelet honours a probe-level grace period only for liveness and startup.
            termination_grace_period: match kind {
                ProbeKind::Readiness => None,
                _ => probe.termination_grace_period_seconds,
            },
        })
    }
}

/// Published results, keyed by container ID and kind as kubelet's results managers are, so
/// a new instance of a container never inherits the results of the previous one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeResults {
    map: HashMap<(String, ProbeKind), ProbeResult>,
}

impl ProbeResults {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The result for the container instance `id`, if one was published.
    pub fn get(&self, id: &str, kind: ProbeKind) -> Option<ProbeResult> {
        self.map.get(&(id.to_string(), kind)).copied()
    }

    /// Publishes `result`; returns whether it changed (kubelet sends updates only on change).
    pub fn set(&mut self, id: &str, kind: ProbeKind, result: ProbeResult) -> bool {
        self.map.insert((id.to_string(), kind), result) != Some(result)
    }

    /// Forgets the result of `id` for `kind`.
    pub fn remove(&mut self, id: &str, kind: ProbeKind) {
        self.map.remove(&(id.to_string(), kind));
    }
}

/// What a worker wants now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Run the probe now, with this timeout.
    Probe(Duration),
    /// Nothing to do now.
    Wait,
    /// The worker is done for good (kubelet's worker returning false).
    Stop,
}

/// One prober worker: the state of one probe of one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeWorker {
    kind: ProbeKind,
    spec: ProbeSpec,
    container_id: Option<String>,
    started_at: Option<Instant>,
    last_result: Option<ProbeResult>,
    result_run: u32,
    on_hold: bool,
    last_probe: Option<Instant>,
    stopped: bool,
}

/// What a worker needs to know about its container and pod at one moment.
#[derive(Clone, Copy, Debug)]
pub struct WorkerInput<'a> {
    /// The newest instance's ID, `None` while there is none.
    pub container_id: Option<&'a str>,
    /// The newest instance's state.
    pub state: ContainerState,
    /// When the running instance started, on the monotonic clock.
    pub started_at: Option<Instant>,
    /// Whether the container counts as started (startup succeeded or there is no startup probe).
    pub started: bool,
    /// Whether the pod's phase is Succeeded or Failed.
    pub pod_terminal: bool,
    /// Whether the pod is being deleted.
    pub pod_deleting: bool,
    /// The pod's restart policy.
    pub restart_policy: RestartPolicy,
}

impl ProbeWorker {
    /// A worker for a probe of `kind` with `spec`.
    pub fn new(kind: ProbeKind, spec: ProbeSpec) -> Self {
        ProbeWorker {
            kind,
            spec,
            container_id: None,
            started_at: None,
            last_result: None,
            result_run: 0,
            on_hold: false,
            last_probe: None,
            stopped: false,
        }
    }

    /// The probe's spec.
    pub fn spec(&self) -> &ProbeSpec {
        &self.spec
    }

    /// Whether the worker has stopped for good.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// The first half of kubelet's `doProbe`: follows the container, publishes what does
    /// not need a probe, and says whether a probe is to run now.
    pub fn step(
        &mut self,
        input: &WorkerInput<'_>,
        results: &mut ProbeResults,
        now: Instant,
    ) -> Step {
        if self.stopped {
            return Step::Stop;
        }
        if input.pod_terminal {
            return self.stop();
        }
        let Some(id) = input.container_id else {
            return Step::Wait;
        };
        if self.container_id.as_deref() != Some(id) {
            // A new instance: forget the old one's result and counts and resume probing.
            if let Some(old) = self.container_id.take() {
                results.remove(&old, self.kind);
            }
            self.container_id = Some(id.to_string());
            results.set(id, self.kind, self.kind.initial_result());
            self.on_hold = false;
            self.last_result = None;
            self.result_run = 0;
            self.last_probe = None;
            self.started_at = None;
        }
        if self.on_hold {
            return Step::Wait;
        }
        if input.state != ContainerState::Running {
            results.set(id, self.kind, ProbeResult::Failure);
            let will_restart = input.state != ContainerState::Exited
                || input.restart_policy != RestartPolicy::Never;
            return if will_restart {
                Step::Wait
            } else {
                self.stop()
            };
        }
        if input.pod_deleting && self.kind != ProbeKind::Readiness {
            results.set(id, self.kind, ProbeResult::Success);
            return self.stop();
        }
        if self.started_at.is_none() {
            self.started_at = input.started_at.or(Some(now));
        }
        // Startup stops once the container has started; the others wait for it.
        if input.started == (self.kind == ProbeKind::Startup) {
            return Step::Wait;
        }
        match self.due_at() {
            Some(due) if due <= now => Step::Probe(self.spec.timeout),
            _ => Step::Wait,
        }
    }

    /// When the next probe is due, `None` while the worker has no running container to time.
    pub fn due_at(&self) -> Option<Instant> {
        if self.stopped || self.on_hold {
            return None;
        }
        match self.last_probe {
            Some(last) => Some(last.plus(self.spec.period)),
            None => self.started_at.map(|s| s.plus(self.spec.initial_delay)),
        }
    }

    /// The second half of `doProbe`: counts the outcome of a probe of `container_id` and
    /// publishes a result when its threshold is reached. Returns the published result when
    /// it changed. An outcome for another instance than the worker's is ignored.
    pub fn record(
        &mut self,
        container_id: &str,
        outcome: ProbeResult,
        results: &mut ProbeResults,
        now: Instant,
    ) -> Option<ProbeResult> {
        if self.stopped || self.container_id.as_deref() != Some(container_id) {
            return None;
        }
        self.last_probe = Some(now);
        if outcome == ProbeResult::Unknown {
            // A prober error: kubelet throws the result away.
            return None;
        }
        if self.last_result == Some(outcome) {
            self.result_run = self.result_run.saturating_add(1);
        } else {
            self.last_result = Some(outcome);
            self.result_run = 1;
        }
        let threshold = match outcome {
            ProbeResult::Failure => self.spec.failure_threshold,
            _ => self.spec.success_threshold,
        };
        if self.result_run < threshold {
            return None;
        }
        let changed = results.set(container_id, self.kind, outcome);
        if self.kind != ProbeKind::Readiness && outcome == ProbeResult::Failure {
            // The container will be restarted: stop probing it until a new instance appears.
            self.on_hold = true;
            self.result_run = 0;
        }
        changed.then_some(outcome)
    }

    fn stop(&mut self) -> Step {
        self.stopped = true;
        Step::Stop
    }
}

/// Identifies a worker: container name and probe kind.
pub type WorkerKey = (String, ProbeKind);

/// The workers of one pod.
#[derive(Clone, Debug, Default)]
pub struct ProbeSchedule {
    workers: BTreeMap<WorkerKey, ProbeWorker>,
}

impl ProbeSchedule {
    /// Workers for every probe of the pod's app containers and native sidecars (kubelet's
    /// prober `AddPod`: regular init containers are not probed).
    pub fn for_pod(pod: &Pod) -> Result<Self, ProbeSpecError> {
        let mut workers = BTreeMap::new();
        let sidecars = init_containers(pod)
            .iter()
            .filter(|c| is_restartable_init_container(c));
        for c in sidecars.chain(app_containers(pod)) {
            for kind in [
                ProbeKind::Startup,
                ProbeKind::Liveness,
                ProbeKind::Readiness,
            ] {
                if let Some(p) = kind.of(c) {
                    let spec = ProbeSpec::from_probe(kind, p)?;
                    workers.insert((c.name.clone(), kind), ProbeWorker::new(kind, spec));
                }
            }
        }
        Ok(ProbeSchedule { workers })
    }

    /// The worker of `key`.
    pub fn worker(&self, key: &WorkerKey) -> Option<&ProbeWorker> {
        self.workers.get(key)
    }

    /// Steps every worker against the engine's snapshot; returns the probes to run now, each
    /// with the container instance to probe and the timeout. Stopped workers are dropped.
    pub fn due(
        &mut self,
        pod: &Pod,
        status: &PodRuntimeStatus,
        pod_terminal: bool,
        results: &mut ProbeResults,
        now: Now,
    ) -> Vec<DueProbe> {
        let policy = restart_policy(pod);
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let mut due = Vec::new();
        let mut names: Vec<String> = self.workers.keys().map(|(n, _)| n.clone()).collect();
        names.dedup();
        for name in names {
            let latest = status.latest(&name);
            let started = latest.is_some_and(|c| {
                c.state == ContainerState::Running && self.is_started(&name, &c.id, results)
            });
            for kind in [
                ProbeKind::Startup,
                ProbeKind::Liveness,
                ProbeKind::Readiness,
            ] {
                let key = (name.clone(), kind);
                let Some(worker) = self.workers.get_mut(&key) else {
                    continue;
                };
                let input = WorkerInput {
                    container_id: latest.map(|c| c.id.as_str()),
                    state: latest.map_or(ContainerState::Unknown, |c| c.state),
                    started_at: latest.and_then(|c| c.started_at).map(|t| now.instant_of(t)),
                    started,
                    pod_terminal,
                    pod_deleting: deleting,
                    restart_policy: policy,
                };
                match worker.step(&input, results, now.mono) {
                    Step::Probe(timeout) => due.push(DueProbe {
                        key,
                        container_id: latest.map(|c| c.id.clone()).unwrap_or_default(),
                        timeout,
                    }),
                    Step::Wait => {}
                    Step::Stop => {
                        self.workers.remove(&key);
                    }
                }
            }
        }
        due
    }

    /// Hands back the outcome of a probe [`Self::due`] asked for; returns the published
    /// result when it changed.
    pub fn record(
        &mut self,
        key: &WorkerKey,
        container_id: &str,
        outcome: ProbeResult,
        results: &mut ProbeResults,
        now: Instant,
    ) -> Option<ProbeResult> {
        self.workers
            .get_mut(key)?
            .record(container_id, outcome, results, now)
    }

    /// The earliest instant a worker is due, for the runner's next wake-up.
    pub fn next_due(&self) -> Option<Instant> {
        self.next_due_excluding(|_| false)
    }

    /// [`Self::next_due`] over the workers `busy` does not name: a worker whose probe is still
    /// running stays due until its outcome is recorded, and must not wake the runner.
    pub fn next_due_excluding(&self, busy: impl Fn(&WorkerKey) -> bool) -> Option<Instant> {
        self.workers
            .iter()
            .filter(|(k, _)| !busy(k))
            .filter_map(|(_, w)| w.due_at())
            .min()
    }

    /// Whether the instance `id` of `name` counts as started (prober `isContainerStarted`
    /// for a running container): its startup result is Success, or it has no startup probe.
    pub fn is_started(&self, name: &str, id: &str, results: &ProbeResults) -> bool {
        match results.get(id, ProbeKind::Startup) {
            Some(r) => r == ProbeResult::Success,
            None => !self
                .workers
                .contains_key(&(name.to_string(), ProbeKind::Startup)),
        }
    }

    /// Whether `name` has a worker of `kind`.
    pub fn has_worker(&self, name: &str, kind: ProbeKind) -> bool {
        self.workers.contains_key(&(name.to_string(), kind))
    }
}

/// A probe to run now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueProbe {
    /// The worker.
    pub key: WorkerKey,
    /// The container instance to probe.
    pub container_id: String,
    /// How long the probe may take (timeoutSeconds).
    pub timeout: Duration,
}

#[cfg(test)]
#[path = "probe_tests.rs"]
mod tests;
