//! Static pods whose manifests went while the daemon was down (deleted, or edited into a new
//! UID): kubelet's housekeeping kills runtime pods it does not know, and so does the manager
//! here, on every scan. The manifest door marks each sandbox it makes with [`SOURCE_LABEL`],
//! so pods that another door (a kubelet over CRI) made are never touched. A pod directory
//! (`<root>/static-pods/<uid>`) with no sandbox and no worker, left by a crash between its
//! creation and its sandbox's, or between a sandbox's removal and its own, goes too, and so
//! does a pod cgroup (`kubepods/<tier>/pod<uid>`) that no pod of this door claims.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::{info, warn};

use super::execute::Executor;
use super::observe::observe;
use super::Shared;
use crate::kubelet::runtime::ContainerState;
use crate::manifest::ObjectKey;
use crate::podspec::keys;

/// The label the manifest door puts on its sandboxes.
pub const SOURCE_LABEL: &str = "peapod.io/static-pod";

/// The static pods (by UID, with their namespace/name when a sandbox names them) that the
/// engine or the pods directory holds and `known` does not claim.
pub fn find(shared: &Shared, known: impl Fn(&str) -> bool) -> BTreeMap<String, ObjectKey> {
    let mut out = BTreeMap::new();
    for sb in shared.engine.sandboxes() {
        if !sb.config.labels.contains_key(SOURCE_LABEL) {
            continue;
        }
        let md = sb.config.metadata.clone().unwrap_or_default();
        if md.uid.is_empty() || known(&md.uid) {
            continue;
        }
        out.insert(md.uid.clone(), ObjectKey::new(&md.namespace, &md.name));
    }
    for entry in std::fs::read_dir(&shared.pods_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(uid) = entry.file_name().into_string() else {
            continue;
        };
        // Only the names this door makes (hex UIDs): nothing else in the directory is ours
        // to remove.
        if uid.is_empty() || !uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            continue;
        }
        if !known(&uid) {
            out.entry(uid.clone())
                .or_insert_with(|| ObjectKey::new("", &uid));
        }
    }
    // Pod cgroups a crash left behind (the sandbox's own leaf is the engine's to recover).
    if shared.engine.cfg.cgroup_driver == crate::config::CgroupDriver::Cgroupfs {
        let root = format!(
            "{}/kubepods",
            shared.engine.cgroups.default_parent().trim_end_matches('/')
        );
        for parent in [
            root.clone(),
            format!("{root}/burstable"),
            format!("{root}/besteffort"),
        ] {
            for child in shared.engine.cgroups.children(&parent) {
                let Some(uid) = child.strip_prefix("pod") else {
                    continue;
                };
                if !uid.is_empty() && !known(uid) {
                    out.entry(uid.to_string())
                        .or_insert_with(|| ObjectKey::new("", uid));
                }
            }
        }
    }
    out
}

/// Stops the orphan `uid` (each running container with its pod's grace period, as its
/// annotations recorded it) and removes its sandboxes and directory.
pub async fn reap(shared: Arc<Shared>, uid: String) {
    let rt = observe(&shared.engine, &uid);
    let mut stops = Vec::new();
    for sb in &rt.sandboxes {
        for (c, r) in shared.engine.pod_containers(&sb.id) {
            let running = rt.containers.iter().any(|s| {
                s.id == r.id && matches!(s.state, ContainerState::Running | ContainerState::Created)
            });
            if !running {
                continue;
            }
            let grace = c
                .config
                .annotations
                .get(keys::POD_TERMINATION_GRACE_PERIOD)
                .and_then(|g| g.parse::<i64>().ok())
                .unwrap_or(30);
            let engine = shared.engine.clone();
            let id = r.id.clone();
            stops.push(async move {
                if let Err(e) = engine.stop_container(&id, grace).await {
                    warn!(container_id = %id, error = %e, "stopping an orphaned static pod's container");
                }
            });
        }
    }
    if !rt.sandboxes.is_empty() {
        info!(uid = %uid, "static pod no longer in any manifest: stopping it");
    }
    futures_util::future::join_all(stops).await;
    Executor::new(shared, uid).remove_all(&rt).await;
}
