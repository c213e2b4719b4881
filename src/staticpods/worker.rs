//! One pod's worker: kubelet's `syncPod` loop. Each round observes the engine, asks the pure
//! core for a plan (`kubelet::actions::compute_pod_actions`), carries it out step by step
//! (`execute.rs`), then computes and publishes the pod's status. It wakes on the pod's
//! container events, on a command from the manager (new spec, deletion), when a back-off
//! ends, and at least every few seconds.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tracing::{info, Instrument};

use super::execute::Executor;
use super::observe::observe;
use super::{Objects, Shared};
use crate::kubelet::actions::compute_pod_actions;
use crate::kubelet::backoff::Backoff;
use crate::kubelet::probe::ProbeResults;
use crate::kubelet::runtime::{ContainerState, SandboxState};
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
    let probes = ProbeResults::new();
    let mut status: Option<PodStatus> = None;
    let mut exec = Executor::new(shared.clone(), uid.clone());
    let mut cmds_open = true;
    loop {
        let now = shared.clock.now();
        let rt = observe(&shared.engine, &uid);
        let plan = compute_pod_actions(&pod, &rt, &probes, &backoff, now);
        reasons.record_backoffs(&plan);
        let acted = !plan.is_noop();
        let rt = if acted {
            plan.record_backoff(&mut backoff, now);
            exec.execute(&pod, &objects, &rt, &plan, &mut reasons).await;
            observe(&shared.engine, &uid)
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
        if acted {
            // The next step of the plan (the next init container, the containers after a new
            // sandbox) follows at once.
            continue;
        }
        let wake = plan
            .backing_off
            .iter()
            .map(|b| b.remaining)
            .min()
            .map_or(RESYNC, |r| r.min(RESYNC) + Duration::from_millis(10));
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
