//! What the engine holds of one pod, in the lifecycle core's vocabulary: kubelet's
//! `GetPodStatus`. Sandboxes and containers are found by the pod UID label that the pod's
//! CRI configs carry, so a restarted daemon finds (adopts) the pods it ran before.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use crate::kubelet::runtime::{
    ContainerState, ContainerStatus, PodRuntimeStatus, SandboxState, SandboxStatus,
};
use crate::pod::{self, Engine};
use crate::podspec::keys;

fn ts(ns: i64) -> Option<Timestamp> {
    (ns > 0).then(|| Timestamp::from_nanosecond(i128::from(ns)).ok())?
}

/// The sandboxes (and their containers) labelled with pod UID `uid`.
pub fn observe(engine: &Arc<Engine>, uid: &str) -> PodRuntimeStatus {
    let mut out = PodRuntimeStatus::default();
    for sb in engine.sandboxes() {
        let md = sb.config.metadata.clone().unwrap_or_default();
        if md.uid != uid {
            continue;
        }
        let rec = sb.record();
        if rec.creating {
            continue;
        }
        let ips: Vec<String> = rec.ips.iter().map(|i| i.to_string()).collect();
        out.sandboxes.push(SandboxStatus {
            id: rec.id.clone(),
            pod_uid: md.uid.clone(),
            attempt: md.attempt,
            state: match rec.state {
                pod::SandboxState::Ready => SandboxState::Ready,
                pod::SandboxState::NotReady => SandboxState::NotReady,
            },
            ip: ips.first().cloned(),
            additional_ips: ips.iter().skip(1).cloned().collect(),
            host_network: rec.namespaces.host_network,
            created_at: ts(rec.created_at).unwrap_or(Timestamp::UNIX_EPOCH),
        });
        for (c, r) in engine.pod_containers(&rec.id) {
            if r.creating {
                continue;
            }
            let cmd = c.config.metadata.clone().unwrap_or_default();
            let hash = c
                .config
                .annotations
                .get(keys::CONTAINER_HASH)
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .unwrap_or(0);
            let state = match r.state() {
                pod::ContainerState::Created => ContainerState::Created,
                pod::ContainerState::Running => ContainerState::Running,
                pod::ContainerState::Exited => ContainerState::Exited,
                pod::ContainerState::Unknown => ContainerState::Unknown,
            };
            out.containers.push(ContainerStatus {
                id: r.id.clone(),
                name: cmd.name,
                attempt: cmd.attempt,
                state,
                exit_code: r.exit_code,
                signal: None,
                created_at: ts(r.created_at).unwrap_or(Timestamp::UNIX_EPOCH),
                started_at: ts(r.started_at),
                finished_at: ts(r.finished_at),
                reason: r.reason.clone(),
                message: r.message.clone(),
                image: c
                    .config
                    .image
                    .as_ref()
                    .map(|i| i.image.clone())
                    .unwrap_or_default(),
                image_ref: r.image_ref.clone(),
                hash,
            });
        }
    }
    out
}
