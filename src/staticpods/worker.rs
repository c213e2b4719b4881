//! One pod's worker: kubelet's `syncPod` loop. Each round observes the engine, asks the pure
//! core for a plan (`kubelet::actions::compute_pod_actions`), carries it out step by step
//! (`execute.rs`), then computes and publishes the pod's status. It wakes on the pod's
//! container events, on a command from the manager (new spec, deletion), when a back-off
//! ends, when a probe is due or has an outcome, and at least every few seconds.
//!
//! Probes run as tasks of their own (`prober.rs`), one at a time per (container, kind) as
//! kubelet's prober workers; their outcomes come back to this loop, which alone owns the
//! pod's probe state, so the plan and the status always see one consistent set of results.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tracing::{debug, info, warn, Instrument};

use super::events::EventType;
use super::execute::Executor;
use super::observe::observe;
use super::{prober, Objects, Shared};
use crate::kubelet::actions::compute_pod_actions;
use crate::kubelet::backoff::Backoff;
use crate::kubelet::clock::Now;
use crate::kubelet::handler::probe_action;
use crate::kubelet::probe::{
    DueProbe, ProbeKind, ProbeResult, ProbeResults, ProbeSchedule, WorkerKey,
};
use crate::kubelet::runtime::{ContainerState, PodRuntimeStatus, SandboxState};
use crate::kubelet::status::{pod_status, ReasonCache, StatusInput};
use crate::manifest::ObjectKey;

/// What the manager tells a worker.
pub enum Command {
    /// The manifest's ConfigMaps and Secrets changed (the pod itself did not: a changed pod
    /// has a new UID and gets a new worker once this one is gone).
    Objects(Arc<Objects>),
    /// The pod left its manifest: stop it gracefully and remove it.
    Delete,
}

/// How long a worker sleeps at most between rounds: exits arrive as events, this catches
/// anything missed and keeps the published status fresh.
const RESYNC: Duration = Duration::from_secs(5);

pub async fn run(
    shared: Arc<Shared>,
    key: ObjectKey,
    pod: Pod,
    objects: Arc<Objects>,
    cmds: mpsc::Receiver<Command>,
) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let span = tracing::info_span!("static_pod", pod = %key, uid = %uid);
    run_inner(shared, key, pod, objects, cmds, uid)
        .instrument(span)
        .await
}

async fn run_inner(
    shared: Arc<Shared>,
    key: ObjectKey,
    mut pod: Pod,
    mut objects: Arc<Objects>,
    mut cmds: mpsc::Receiver<Command>,
    uid: String,
) {
    let mut events = shared.engine.subscribe_events();
    let mut backoff = Backoff::container_restart();
    let mut reasons = ReasonCache::new();
    let mut probes = ProbeResults::new();
    let mut schedule = ProbeSchedule::for_pod(&pod).unwrap_or_else(|e| {
        // Validation refuses such a pod; should one get here, it runs unprobed.
        warn!(error = %e, "probe spec: the pod's probes are not run");
        ProbeSchedule::default()
    });
    let (probe_tx, mut probe_rx) = mpsc::channel::<ProbeDone>(16);
    let mut probing: HashSet<WorkerKey> = HashSet::new();
    let mut status: Option<PodStatus> = None;
    let mut exec = Executor::new(shared.clone(), uid.clone());
    let mut cmds_open = true;
    loop {
        let now = shared.clock.now();
        let rt = observe(&shared.engine, &uid);
        let terminal = status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        for due in schedule.due(&pod, &rt, terminal, &mut probes, now) {
            if probing.insert(due.key.clone()) {
                start_probe(&shared, &pod, &rt, due, probe_tx.clone());
            }
        }
        let plan = compute_pod_actions(&pod, &rt, &probes, &backoff, now);
        reasons.record_backoffs(&plan);
        for b in &plan.backing_off {
            shared.event(
                &pod,
                Some(&b.name),
                EventType::Warning,
                "BackOff",
                b.message.clone(),
            );
        }
        let acted = !plan.is_noop();
        let mut progressed = true;
        let rt = if acted {
            plan.record_backoff(&mut backoff, now);
            progressed = exec.execute(&pod, &objects, &rt, &plan, &mut reasons).await;
            let after = observe(&shared.engine, &uid);
            // A plan that changed nothing (killing a pod that is already down, as kubelet
            // plans for a finished pod under Never) is not repeated until something wakes
            // the loop.
            progressed &= after != rt;
            after
        } else {
            rt
        };
        let now = shared.clock.now();
        let st = pod_status(&StatusInput {
            pod: &pod,
            runtime: &rt,
            probes: &probes,
            reasons: &reasons,
            previous: status.as_ref(),
            now,
        });
        let mut st = st;
        if let Some(ip) = shared.host_ips.first() {
            st.host_ip = Some(ip.clone());
            st.host_ips = Some(
                shared
                    .host_ips
                    .iter()
                    .map(|ip| k8s_openapi::api::core::v1::HostIP { ip: ip.clone() })
                    .collect(),
            );
        }
        status = Some(st.clone());
        let mut shown = pod.clone();
        shown.status = Some(st);
        shared.publish(&key, &uid, shown);

        if pod.metadata.deletion_timestamp.is_some() {
            let running = rt
                .containers
                .iter()
                .any(|c| matches!(c.state, ContainerState::Running | ContainerState::Created))
                || rt.sandboxes.iter().any(|s| s.state == SandboxState::Ready);
            if !running {
                exec.remove_all(&rt).await;
                shared.unpublish(&key, &uid);
                info!("static pod removed");
                return;
            }
        }
        if !acted {
            exec.collect_garbage(&rt).await;
        }
        if acted && progressed {
            // The next step of the plan (the next init container, the containers after a new
            // sandbox) follows at once; after a failed step the loop waits for a wake-up.
            continue;
        }
        let now = shared.clock.now();
        let probe_wait = schedule
            .next_due_excluding(|k| probing.contains(k))
            .map(|due| due.saturating_since(now.mono));
        let wake = plan
            .backing_off
            .iter()
            .map(|b| b.remaining + Duration::from_millis(10))
            .chain(probe_wait)
            .fold(RESYNC, Duration::min);
        let ours = |sandbox_id: &str| rt.sandboxes.iter().any(|s| s.id == sandbox_id);
        let deadline = tokio::time::sleep(wake);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                cmd = cmds.recv(), if cmds_open => {
                    match cmd {
                        Some(Command::Objects(o)) => objects = o,
                        Some(Command::Delete) | None => {
                            cmds_open = false;
                            if pod.metadata.deletion_timestamp.is_none() {
                                info!("static pod deleted from its manifest: stopping it");
                                pod.metadata.deletion_timestamp =
                                    Some(Time(shared.clock.now().wall));
                            }
                        }
                    }
                    break;
                }
                Some(done) = probe_rx.recv() => {
                    probing.remove(&done.key);
                    record_probe(&shared, &pod, &mut schedule, &mut probes, done, shared.clock.now());
                    break;
                }
                ev = events.next() => match ev {
                    Some(Ok(e)) if !ours(&e.sandbox_id) => continue,
                    Some(Ok(_)) => break,
                    // Lagged or ended: a fresh subscription, and a round to catch up.
                    Some(Err(_)) | None => {
                        events = shared.engine.subscribe_events();
                        break;
                    }
                },
                _ = &mut deadline => break,
            }
        }
    }
}

/// A probe's outcome, sent back to the pod's loop.
struct ProbeDone {
    key: WorkerKey,
    container_id: String,
    outcome: prober::Outcome,
}

/// Runs one due probe on a task of its own; its outcome goes to `tx`.
fn start_probe(
    shared: &Arc<Shared>,
    pod: &Pod,
    rt: &PodRuntimeStatus,
    due: DueProbe,
    tx: mpsc::Sender<ProbeDone>,
) {
    let (name, kind) = &due.key;
    let spec = pod.spec.as_ref();
    let container = spec
        .into_iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .find(|c| &c.name == name);
    let pod_ip = rt
        .pod_ips()
        .into_iter()
        .next()
        .unwrap_or_else(|| "127.0.0.1".into());
    let action = container
        .and_then(|c| kind.of(c).map(|p| probe_action(p, c, &pod_ip)))
        .unwrap_or(Err(crate::kubelet::handler::HandlerError::Missing));
    let engine = shared.engine.clone();
    tokio::spawn(async move {
        let outcome = match action {
            Ok(a) => prober::run(&engine, &due.container_id, &a, due.timeout).await,
            Err(e) => prober::Outcome {
                result: ProbeResult::Unknown,
                message: e.to_string(),
            },
        };
        let _ = tx
            .send(ProbeDone {
                key: due.key,
                container_id: due.container_id,
                outcome,
            })
            .await;
    });
}

/// Counts a probe's outcome; a failure is an Unhealthy event each time, as kubelet's prober
/// records one per failed probe, not only at the threshold.
fn record_probe(
    shared: &Shared,
    pod: &Pod,
    schedule: &mut ProbeSchedule,
    probes: &mut ProbeResults,
    done: ProbeDone,
    now: Now,
) {
    let (name, kind) = &done.key;
    match done.outcome.result {
        ProbeResult::Failure => shared.event(
            pod,
            Some(name),
            EventType::Warning,
            "Unhealthy",
            format!(
                "{} probe failed: {}",
                kind.name(),
                done.outcome.message.trim_end()
            ),
        ),
        ProbeResult::Unknown => {
            warn!(container = %name, probe = kind.name(), error = %done.outcome.message, "probe errored")
        }
        ProbeResult::Success => {}
    }
    if let Some(r) = schedule.record(
        &done.key,
        &done.container_id,
        done.outcome.result,
        probes,
        now.mono,
    ) {
        debug!(container = %name, probe = kind.name(), result = ?r, "probe result changed");
        if *kind == ProbeKind::Readiness {
            info!(container = %name, ready = (r == ProbeResult::Success), "readiness changed");
        }
    }
}
