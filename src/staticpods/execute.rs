//! Carries out a plan of the lifecycle core against the engine, in kubelet's order
//! (`kuberuntime_manager.go` SyncPod): kill the pod if asked, kill containers, create the
//! sandbox, then start the sidecars and the next init container, then app containers. The
//! engine is called in-process with the same CRI messages kubelet would send over the socket.
//! A step that fails leaves a reason on the container (ErrImagePull,
//! CreateContainerConfigError, RunContainerError) for the status, and the next round
//! retries under back-off.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod};
use tracing::{info, warn};

use super::{Objects, Shared};
use crate::kubelet::actions::grace_period;
use crate::kubelet::plan::{ContainerKind, ContainerStart, KillReason, PodActions};
use crate::kubelet::runtime::{container_hash, ContainerState, PodRuntimeStatus, SandboxState};
use crate::kubelet::status::ReasonCache;
use crate::manifest::ObjectKey;
use crate::podspec::{self, keys, VolumeKind};

pub struct Executor {
    shared: Arc<Shared>,
    uid: String,
}

impl Executor {
    pub fn new(shared: Arc<Shared>, uid: String) -> Self {
        Executor { shared, uid }
    }

    /// The pod's own directory: volumes, termination logs.
    fn pod_dir(&self) -> PathBuf {
        self.shared.pods_dir.join(&self.uid)
    }

    fn context(&self, pod: &Pod, objects: &Objects, rt: &PodRuntimeStatus) -> podspec::Context {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        fn pick<T: Clone>(m: &BTreeMap<ObjectKey, T>, ns: &str) -> BTreeMap<String, T> {
            m.iter()
                .filter(|(k, _)| k.namespace == ns)
                .map(|(k, v)| (k.name.clone(), v.clone()))
                .collect()
        }
        let mut ctx = podspec::Context {
            node_name: self.shared.node_name.clone(),
            host_ips: self.shared.host_ips.clone(),
            pod_ips: rt.pod_ips(),
            config_maps: pick(&objects.config_maps, &ns),
            secrets: pick(&objects.secrets, &ns),
            allocatable: self.shared.allocatable,
            memory_capacity: self.shared.allocatable.memory_bytes,
            resolv_conf: std::fs::read_to_string("/etc/resolv.conf").ok(),
            ..podspec::Context::default()
        };
        ctx.paths.pod_dir = self.pod_dir();
        ctx.paths.log_root = self.shared.log_root.clone();
        ctx
    }

    pub async fn execute(
        &mut self,
        pod: &Pod,
        objects: &Objects,
        rt: &PodRuntimeStatus,
        plan: &PodActions,
        reasons: &mut ReasonCache,
    ) {
        let engine = &self.shared.engine;
        if let Some(why) = &plan.kill_pod {
            info!(reason = ?why, "killing the pod");
            self.kill_pod(pod, rt, plan).await;
            if plan.create_sandbox.is_none() {
                return;
            }
        } else {
            self.stop_planned(plan).await;
        }
        let mut sandbox_id = plan.sandbox_id.clone();
        let mut rt_now = None;
        if let Some(create) = &plan.create_sandbox {
            match self.create_sandbox(pod, objects, rt, create.attempt).await {
                Ok(id) => {
                    sandbox_id = id;
                    rt_now = Some(super::observe::observe(engine, &self.uid));
                }
                Err(e) => {
                    warn!(error = %e, "creating the pod sandbox");
                    return;
                }
            }
        }
        if sandbox_id.is_empty() {
            return;
        }
        let rt = rt_now.as_ref().unwrap_or(rt);
        for s in plan.starts() {
            self.start(pod, objects, rt, &sandbox_id, s, reasons).await;
        }
    }

    /// Stops every container of the pod (app containers first, then sidecars in reverse
    /// order, as kubelet's killContainersWithSyncResult with sidecars), then its sandboxes.
    async fn kill_pod(&self, pod: &Pod, rt: &PodRuntimeStatus, plan: &PodActions) {
        let engine = &self.shared.engine;
        let done = self.stop_planned(plan).await;
        let spec = pod.spec.clone().unwrap_or_default();
        let order = |name: &str| -> usize {
            if spec.containers.iter().any(|c| c.name == name) {
                0
            } else {
                // Sidecars after app containers, the last declared first.
                let n = spec.init_containers.as_deref().unwrap_or(&[]);
                1 + n.len() - n.iter().position(|c| c.name == name).unwrap_or(0)
            }
        };
        let mut rest: Vec<_> = rt
            .containers
            .iter()
            .filter(|c| matches!(c.state, ContainerState::Running | ContainerState::Created))
            .filter(|c| !done.contains(&c.id))
            .collect();
        rest.sort_by_key(|c| order(&c.name));
        for c in rest {
            let grace = find_container(pod, &c.name)
                .map(|ct| grace_period(pod, ct, KillReason::PodTerminating))
                .unwrap_or(30);
            if let Err(e) = engine.stop_container(&c.id, grace).await {
                warn!(container = %c.name, error = %e, "stopping container");
            }
        }
        for s in rt
            .sandboxes
            .iter()
            .filter(|s| s.state == SandboxState::Ready)
        {
            if let Err(e) = engine.stop_sandbox(&s.id).await {
                warn!(sandbox_id = %s.id, error = %e, "stopping the pod sandbox");
            }
        }
    }

    /// Stops the containers the plan kills, in its order; returns their IDs.
    async fn stop_planned(&self, plan: &PodActions) -> std::collections::HashSet<String> {
        let mut done = std::collections::HashSet::new();
        for k in &plan.containers_to_kill {
            info!(container = %k.name, reason = ?k.reason, "killing container");
            if let Err(e) = self
                .shared
                .engine
                .stop_container(&k.id, k.grace_period_seconds)
                .await
            {
                warn!(container = %k.name, error = %e, "stopping container");
            }
            done.insert(k.id.clone());
        }
        done
    }

    async fn create_sandbox(
        &self,
        pod: &Pod,
        objects: &Objects,
        rt: &PodRuntimeStatus,
        attempt: u32,
    ) -> Result<String, String> {
        let ctx = self.context(pod, objects, rt);
        let mut cfg =
            podspec::sandbox_config(pod, &self.uid, attempt, &ctx).map_err(|e| e.to_string())?;
        // The engine's own cgroup parent holds the pod (QoS-class parents are not made yet).
        if let Some(l) = cfg.linux.as_mut() {
            l.cgroup_parent.clear();
        }
        std::fs::create_dir_all(&cfg.log_directory)
            .map_err(|e| format!("creating {}: {e}", cfg.log_directory))?;
        self.prepare_volumes(pod, &ctx)?;
        let id = self
            .shared
            .engine
            .run_sandbox(cfg, "")
            .await
            .map_err(|e| e.to_string())?;
        info!(sandbox_id = %id, attempt, "pod sandbox created");
        Ok(id)
    }

    /// Makes each volume's host side: emptyDir directories, the files of configMap, secret,
    /// downwardAPI and projected volumes, and hostPath checks.
    fn prepare_volumes(&self, pod: &Pod, ctx: &podspec::Context) -> Result<(), String> {
        let plans = podspec::volume_plan(pod, ctx).map_err(|e| e.to_string())?;
        for v in plans {
            let io =
                |e: std::io::Error| format!("volume {}: {}: {e}", v.name, v.host_path.display());
            match &v.kind {
                VolumeKind::EmptyDir => {
                    std::fs::create_dir_all(&v.host_path).map_err(io)?;
                    std::fs::set_permissions(&v.host_path, std::fs::Permissions::from_mode(0o777))
                        .map_err(io)?;
                }
                VolumeKind::Tmpfs { .. } => {
                    return Err(format!(
                        "volume {}: emptyDir medium Memory is not supported yet",
                        v.name
                    ))
                }
                VolumeKind::HostPath { check } => {
                    let ft = std::fs::metadata(&v.host_path).ok().map(|m| file_type(&m));
                    match check.check(&v.host_path, ft) {
                        Ok(podspec::HostPathAction::CreateDirectory) => {
                            std::fs::create_dir_all(&v.host_path).map_err(io)?
                        }
                        Ok(podspec::HostPathAction::CreateFile) => {
                            if let Some(p) = v.host_path.parent() {
                                std::fs::create_dir_all(p).map_err(io)?;
                            }
                            std::fs::OpenOptions::new()
                                .create(true)
                                .append(true)
                                .open(&v.host_path)
                                .map_err(io)?;
                        }
                        Ok(_) => {}
                        Err(e) => return Err(format!("volume {}: {e}", v.name)),
                    }
                }
                VolumeKind::Files { files } => {
                    std::fs::create_dir_all(&v.host_path).map_err(io)?;
                    for f in files {
                        let path = v.host_path.join(&f.path);
                        if let Some(p) = path.parent() {
                            std::fs::create_dir_all(p).map_err(io)?;
                        }
                        crate::fsutil::atomic_write(&path, &f.data).map_err(io)?;
                        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))
                            .map_err(io)?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn start(
        &self,
        pod: &Pod,
        objects: &Objects,
        rt: &PodRuntimeStatus,
        sandbox_id: &str,
        s: &ContainerStart,
        reasons: &mut ReasonCache,
    ) {
        let spec = pod.spec.clone().unwrap_or_default();
        let c = match s.kind {
            ContainerKind::App => spec.containers.get(s.index),
            ContainerKind::Init | ContainerKind::Sidecar => {
                spec.init_containers.as_deref().and_then(|i| i.get(s.index))
            }
        };
        let Some(c) = c else {
            return;
        };
        let engine = &self.shared.engine;
        if let Err(e) = self.ensure_image(c).await {
            warn!(container = %c.name, error = %e.1, "pulling the image");
            reasons.set(&c.name, e.0, &e.1);
            return;
        }
        let mut ctx = self.context(pod, objects, rt);
        ctx.restart_count = s.restart_count;
        let plan = match podspec::container_config(pod, c, &ctx) {
            Ok(p) => p,
            Err(e) => {
                warn!(container = %c.name, error = %e, "container config");
                reasons.set(&c.name, "CreateContainerConfigError", &e.to_string());
                return;
            }
        };
        if let Some(p) = plan.termination_log.parent() {
            let _ = std::fs::create_dir_all(p);
        }
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&plan.termination_log);
        for sp in &plan.sub_paths {
            let _ = std::fs::create_dir_all(sp.volume_root.join(&sp.sub_path));
        }
        let mut config = plan.config;
        config.annotations.insert(
            keys::CONTAINER_HASH.into(),
            format!("{:x}", container_hash(c)),
        );
        if let Some(log_dir) = sandbox_log_dir(engine, sandbox_id) {
            if let Some(parent) = log_dir.join(&config.log_path).parent() {
                let _ = std::fs::create_dir_all(parent);
            }
        }
        let id = match engine.create_container(sandbox_id, config).await {
            Ok(id) => id,
            Err(e) => {
                warn!(container = %c.name, error = %e, "creating container");
                reasons.set(&c.name, "CreateContainerError", &e.to_string());
                return;
            }
        };
        if let Err(e) = engine.start_container(&id).await {
            warn!(container = %c.name, error = %e, "starting container");
            reasons.set(&c.name, "RunContainerError", &e.to_string());
            return;
        }
        reasons.clear(&c.name);
        info!(container = %c.name, container_id = %id, restart_count = s.restart_count, "container started");
    }

    /// The image of `c`, pulled as its imagePullPolicy says (kubelet's defaults: Always for
    /// `:latest` or no tag, else IfNotPresent). Errors are (reason, message) for the status.
    async fn ensure_image(&self, c: &Container) -> Result<(), (&'static str, String)> {
        let image = c.image.clone().unwrap_or_default();
        let policy = c
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| default_pull_policy(&image).into());
        let present = self.shared.engine.images.get(&image).is_ok();
        match policy.as_str() {
            "Never" if present => Ok(()),
            "Never" => Err((
                "ErrImageNeverPull",
                format!("Container image \"{image}\" is not present with pull policy of Never"),
            )),
            "IfNotPresent" if present => Ok(()),
            _ => {
                let e = &self.shared.engine;
                crate::image::pull(e.images.clone(), &e.cfg.registry, &image, None)
                    .await
                    .map(|_| ())
                    .map_err(|err| ("ErrImagePull", err.to_string()))
            }
        }
    }

    /// Removes every sandbox of the pod (with its containers) and the pod's directory.
    pub async fn remove_all(&self, rt: &PodRuntimeStatus) {
        for s in &rt.sandboxes {
            if let Err(e) = self.shared.engine.remove_sandbox(&s.id).await {
                warn!(sandbox_id = %s.id, error = %e, "removing the pod sandbox");
            }
        }
        let dir = self.pod_dir();
        if let Err(e) = crate::pod::sweep::unmount_all_under(&dir) {
            warn!(error = %e, "unmounting the pod's volumes");
        }
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(error = %e, dir = %dir.display(), "removing the pod's directory");
            }
        }
    }
}

fn sandbox_log_dir(engine: &Arc<crate::pod::Engine>, id: &str) -> Option<PathBuf> {
    let sb = engine.sandbox(id).ok()?;
    (!sb.config.log_directory.is_empty()).then(|| PathBuf::from(&sb.config.log_directory))
}

/// kubelet's defaulting (pkg/apis/core/v1/defaults.go): Always for `:latest` or an untagged
/// image without a digest, else IfNotPresent.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => "Always",
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn file_type(m: &std::fs::Metadata) -> podspec::FileType {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_dir() {
        podspec::FileType::Directory
    } else if t.is_socket() {
        podspec::FileType::Socket
    } else if t.is_char_device() {
        podspec::FileType::CharDevice
    } else if t.is_block_device() {
        podspec::FileType::BlockDevice
    } else {
        podspec::FileType::File
    }
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::default_pull_policy;

    #[test]
    fn pull_policy_defaults_as_kubelet() {
        for (image, want) in [
            ("busybox", "Always"),
            ("busybox:latest", "Always"),
            ("busybox:1.36", "IfNotPresent"),
            ("127.0.0.1:5000/busybox", "Always"),
            ("127.0.0.1:5000/busybox:1", "IfNotPresent"),
            ("busybox@sha256:abcd", "IfNotPresent"),
        ] {
            assert_eq!(default_pull_policy(image), want, "{image}");
        }
    }
}
