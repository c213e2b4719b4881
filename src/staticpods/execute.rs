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

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use tracing::{info, warn};

use super::events::EventType;
use super::{prober, Objects, Shared};
use crate::kubelet::actions::grace_period;
use crate::kubelet::backoff::Backoff;
use crate::kubelet::handler::hook_action;
use crate::kubelet::plan::{ContainerKind, ContainerStart, KillReason, PodActions};
use crate::kubelet::probe::ProbeResult;
use crate::kubelet::runtime::{container_hash, ContainerState, PodRuntimeStatus, SandboxState};
use crate::kubelet::status::ReasonCache;
use crate::manifest::ObjectKey;
use crate::podspec::{self, keys, VolumeKind};

pub struct Executor {
    shared: Arc<Shared>,
    uid: String,
    /// kubelet's image pull back-off, per image: ErrImagePull, then ImagePullBackOff until
    /// the delay (10 s doubling to 5 min) has passed.
    pull_backoff: std::sync::Mutex<Backoff<String>>,
}

impl Executor {
    pub fn new(shared: Arc<Shared>, uid: String) -> Self {
        Executor {
            shared,
            uid,
            pull_backoff: std::sync::Mutex::new(Backoff::image_pull()),
        }
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
        ctx.cgroup_root = kubepods(&self.shared.engine);
        ctx
    }

    /// Carries out `plan`; false when a step failed (a pull, a config, a create), so that
    /// the caller waits before the next round rather than retrying at once, and the failure
    /// stays visible in the status meanwhile (ErrImagePull before ImagePullBackOff).
    pub async fn execute(
        &mut self,
        pod: &Pod,
        objects: &Objects,
        rt: &PodRuntimeStatus,
        plan: &PodActions,
        reasons: &mut ReasonCache,
    ) -> bool {
        let engine = &self.shared.engine;
        if let Some(why) = &plan.kill_pod {
            info!(reason = ?why, "killing the pod");
            if let crate::kubelet::plan::KillPodReason::SandboxChanged(_) = why {
                self.shared.event(
                    pod,
                    None,
                    EventType::Normal,
                    "SandboxChanged",
                    "Pod sandbox changed, it will be killed and re-created.".into(),
                );
            }
            self.kill_pod(pod, rt, plan).await;
            if plan.create_sandbox.is_none() {
                return true;
            }
        } else {
            self.stop_planned(pod, rt, plan).await;
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
                    return false;
                }
            }
        }
        if sandbox_id.is_empty() {
            return true;
        }
        let rt = rt_now.as_ref().unwrap_or(rt);
        let mut ok = true;
        for s in plan.starts() {
            ok &= self.start(pod, objects, rt, &sandbox_id, s, reasons).await;
        }
        ok
    }

    /// Stops every container of the pod: app containers together, then sidecars one at a
    /// time in reverse order (kubelet's killContainersWithSyncResult with sidecars), then its
    /// sandboxes. Each container gets its preStop hook and its own grace period.
    async fn kill_pod(&self, pod: &Pod, rt: &PodRuntimeStatus, plan: &PodActions) {
        let engine = &self.shared.engine;
        let done = self.stop_planned(pod, rt, plan).await;
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
        let mut i = 0;
        while i < rest.len() {
            let group = order(&rest[i].name);
            let batch: Vec<_> = rest[i..]
                .iter()
                .take_while(|c| order(&c.name) == group)
                .collect();
            i += batch.len();
            let kills = batch.iter().map(|c| {
                let grace = find_container(pod, &c.name)
                    .map(|ct| grace_period(pod, ct, KillReason::PodTerminating))
                    .unwrap_or(30);
                let running = c.state == ContainerState::Running;
                self.kill_container(pod, rt, &c.id, &c.name, running, grace, None)
            });
            futures_util::future::join_all(kills).await;
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

    /// Stops the containers the plan kills, together; returns their IDs.
    async fn stop_planned(
        &self,
        pod: &Pod,
        rt: &PodRuntimeStatus,
        plan: &PodActions,
    ) -> std::collections::HashSet<String> {
        let kills = plan.containers_to_kill.iter().map(|k| {
            info!(container = %k.name, reason = ?k.reason, "killing container");
            let running = rt
                .containers
                .iter()
                .any(|c| c.id == k.id && c.state == ContainerState::Running);
            let message = (!k.message.is_empty()).then(|| k.message.clone());
            self.kill_container(
                pod,
                rt,
                &k.id,
                &k.name,
                running,
                k.grace_period_seconds,
                message,
            )
        });
        futures_util::future::join_all(kills).await;
        plan.containers_to_kill
            .iter()
            .map(|k| k.id.clone())
            .collect()
    }

    /// kubelet's killContainer: a Killing event, the preStop hook of a running container,
    /// then the stop signal with what is left of the grace period (the hook and the signal
    /// share one budget, kubernetes#115817), at least 2 s as kubelet's minimum.
    #[allow(clippy::too_many_arguments)]
    async fn kill_container(
        &self,
        pod: &Pod,
        rt: &PodRuntimeStatus,
        id: &str,
        name: &str,
        running: bool,
        grace: i64,
        message: Option<String>,
    ) {
        const MIN_GRACE: i64 = 2;
        let message = match message {
            Some(m) => format!("{m}, will be restarted"),
            None => format!("Stopping container {name}"),
        };
        self.shared
            .event(pod, Some(name), EventType::Normal, "Killing", message);
        let mut grace = grace.max(0);
        let pre_stop = find_container(pod, name)
            .and_then(|c| c.lifecycle.as_ref()?.pre_stop.as_ref().map(|h| (c, h)));
        if let (Some((c, hook)), true) = (pre_stop, running && grace > 0) {
            let started = Instant::now();
            let budget = Duration::from_secs(grace as u64);
            match self.run_hook(rt, id, c, hook, budget).await {
                Ok(()) => {}
                Err(msg) => {
                    warn!(container = %name, error = %msg, "preStop hook failed");
                    self.shared.event(
                        pod,
                        Some(name),
                        EventType::Warning,
                        "FailedPreStopHook",
                        format!("PreStopHook failed: {msg}"),
                    );
                }
            }
            let spent = started.elapsed().as_secs() as i64;
            grace = (grace - spent).max(MIN_GRACE);
        }
        if let Err(e) = self.shared.engine.stop_container(id, grace).await {
            warn!(container = %name, error = %e, "stopping container");
        }
    }

    /// Runs a lifecycle hook of `c` in (or against) the container `id`, within `budget`.
    async fn run_hook(
        &self,
        rt: &PodRuntimeStatus,
        id: &str,
        c: &Container,
        hook: &k8s_openapi::api::core::v1::LifecycleHandler,
        budget: Duration,
    ) -> Result<(), String> {
        let pod_ip = rt
            .pod_ips()
            .into_iter()
            .next()
            .unwrap_or_else(|| "127.0.0.1".into());
        let action = hook_action(hook, c, &pod_ip).map_err(|e| e.to_string())?;
        let out = prober::run(&self.shared.engine, id, &action, budget).await;
        match out.result {
            ProbeResult::Success => Ok(()),
            _ => Err(out.message),
        }
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
        // kubelet's pod cgroup under its QoS tier (`<parent>/kubepods/burstable/pod<uid>`),
        // below the engine's own cgroup parent. With the systemd driver a slice cannot be
        // made without systemd, so the pod goes in the engine's configured slice.
        if self.shared.engine.cfg.cgroup_driver == crate::config::CgroupDriver::Systemd {
            if let Some(l) = cfg.linux.as_mut() {
                l.cgroup_parent.clear();
            }
        }
        // Marks the sandbox as this door's, so that a restarted daemon tears down the pods
        // whose manifests went meanwhile and never those of another door.
        cfg.labels
            .insert(super::orphans::SOURCE_LABEL.into(), "true".into());
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
                VolumeKind::Tmpfs { size_bytes } => {
                    std::fs::create_dir_all(&v.host_path).map_err(io)?;
                    // Already there when a sandbox is re-created or a restarted daemon adopts
                    // the pod: its contents are kept, as kubelet keeps a memory emptyDir for
                    // the pod's lifetime. The pod directory, made before, is the intent that
                    // the teardown and the orphan sweep unmount from.
                    if !crate::image::is_mounted(&v.host_path).unwrap_or(false) {
                        let mut opts = String::from("mode=0777");
                        if let Some(n) = size_bytes {
                            opts.push_str(&format!(",size={n}"));
                        }
                        nix::mount::mount(
                            Some("tmpfs"),
                            &v.host_path,
                            Some("tmpfs"),
                            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
                            Some(opts.as_str()),
                        )
                        .map_err(|e| {
                            format!(
                                "volume {}: mounting a tmpfs on {}: {e}",
                                v.name,
                                v.host_path.display()
                            )
                        })?;
                    }
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
    ) -> bool {
        let spec = pod.spec.clone().unwrap_or_default();
        let c = match s.kind {
            ContainerKind::App => spec.containers.get(s.index),
            ContainerKind::Init | ContainerKind::Sidecar => {
                spec.init_containers.as_deref().and_then(|i| i.get(s.index))
            }
        };
        let Some(c) = c else {
            return false;
        };
        let engine = &self.shared.engine;
        if let Err((reason, message)) = self.ensure_image(pod, objects, c).await {
            return self.start_failed(pod, c, reasons, reason, &message, reason);
        }
        let mut ctx = self.context(pod, objects, rt);
        ctx.restart_count = s.restart_count;
        let plan = match podspec::container_config(pod, c, &ctx) {
            Ok(p) => p,
            Err(e) => {
                let e = e.to_string();
                return self.start_failed(pod, c, reasons, "CreateContainerConfigError", &e, &e);
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
                let e = e.to_string();
                return self.start_failed(pod, c, reasons, "CreateContainerError", &e, &e);
            }
        };
        let ev = |kind, reason: &str, message: String| {
            self.shared.event(pod, Some(&c.name), kind, reason, message)
        };
        ev(
            EventType::Normal,
            "Created",
            format!("Created container {}", c.name),
        );
        if let Err(e) = engine.start_container(&id).await {
            let e = e.to_string();
            return self.start_failed(pod, c, reasons, "RunContainerError", &e, &e);
        }
        ev(
            EventType::Normal,
            "Started",
            format!("Started container {}", c.name),
        );
        reasons.clear(&c.name);
        info!(container = %c.name, container_id = %id, restart_count = s.restart_count, "container started");
        // postStart runs before the round ends, so the status published after it is the
        // first to show the container running (kubelet's startContainer step 4). A failed
        // hook kills the container, and the restart policy decides what follows.
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let rt_now = super::observe::observe(engine, &self.uid);
            // Bounded by the pod's grace period: kubelet gives a hook no timeout of its own,
            // but a hook that never ends must not hold the pod's loop forever.
            let budget =
                Duration::from_secs(grace_period(pod, c, KillReason::Unknown).max(1) as u64);
            if let Err(msg) = self.run_hook(&rt_now, &id, c, hook, budget).await {
                warn!(container = %c.name, error = %msg, "postStart hook failed");
                ev(
                    EventType::Warning,
                    "FailedPostStartHook",
                    format!("PostStartHook failed: {msg}"),
                );
                let grace = grace_period(pod, c, KillReason::Unknown);
                self.kill_container(
                    pod,
                    &rt_now,
                    &id,
                    &c.name,
                    true,
                    grace,
                    Some(format!("FailedPostStartHook: container {}", c.name)),
                )
                .await;
                reasons.set(&c.name, "PostStartHookError", &msg);
            }
        }
        true
    }

    /// A step of starting `c` failed: the log line, kubelet's `Failed` warning event
    /// ("Error: <shown>"), and `reason` with `message` for the status while the container
    /// waits. Always false, for [`Self::start`] to return.
    fn start_failed(
        &self,
        pod: &Pod,
        c: &Container,
        reasons: &mut ReasonCache,
        reason: &str,
        message: &str,
        shown: &str,
    ) -> bool {
        warn!(container = %c.name, reason, error = %message, "starting the container failed");
        self.shared.event(
            pod,
            Some(&c.name),
            EventType::Warning,
            "Failed",
            format!("Error: {shown}"),
        );
        reasons.set(&c.name, reason, message);
        false
    }

    /// The image of `c`, pulled as its imagePullPolicy says (kubelet's defaults: Always for
    /// `:latest` or no tag, else IfNotPresent). Errors are (reason, message) for the status.
    async fn ensure_image(
        &self,
        pod: &Pod,
        objects: &Objects,
        c: &Container,
    ) -> Result<(), (&'static str, String)> {
        let image = c.image.clone().unwrap_or_default();
        let policy = c
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| default_pull_policy(&image).into());
        let present = self.shared.engine.images.get(&image).is_ok();
        let ev = |kind, reason: &str, message: String| {
            self.shared.event(pod, Some(&c.name), kind, reason, message)
        };
        let already = || {
            ev(
                EventType::Normal,
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
            )
        };
        match policy.as_str() {
            "Never" if present => {
                already();
                Ok(())
            }
            "Never" => Err((
                "ErrImageNeverPull",
                format!("Container image \"{image}\" is not present with pull policy of Never"),
            )),
            "IfNotPresent" if present => {
                already();
                Ok(())
            }
            _ => {
                let now = self.shared.clock.now().mono;
                if self
                    .pull_backoff
                    .lock()
                    .unwrap()
                    .in_backoff_since_update(&image, now)
                    .is_some()
                {
                    let msg = format!("Back-off pulling image \"{image}\"");
                    ev(EventType::Normal, "BackOff", msg.clone());
                    return Err(("ImagePullBackOff", msg));
                }
                ev(
                    EventType::Normal,
                    "Pulling",
                    format!("Pulling image \"{image}\""),
                );
                let started = Instant::now();
                match self.pull(pod, objects, &image).await {
                    Ok(()) => {
                        self.pull_backoff.lock().unwrap().reset(&image);
                        ev(
                            EventType::Normal,
                            "Pulled",
                            format!(
                                "Successfully pulled image \"{image}\" in {:.3}s",
                                started.elapsed().as_secs_f64()
                            ),
                        );
                        Ok(())
                    }
                    Err(err) => {
                        let now = self.shared.clock.now().mono;
                        self.pull_backoff.lock().unwrap().next(&image, now, now);
                        let msg = format!("Failed to pull image \"{image}\": {err}");
                        ev(EventType::Warning, "Failed", msg.clone());
                        Err(("ErrImagePull", msg))
                    }
                }
            }
        }
    }

    /// Pulls `image` with the pod's imagePullSecrets that match its registry, one after the
    /// other as kubelet does, or anonymously when none match.
    async fn pull(&self, pod: &Pod, objects: &Objects, image: &str) -> Result<(), String> {
        let e = &self.shared.engine;
        let parsed = crate::image::Reference::parse(image).map_err(|e| e.to_string())?;
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let secrets: BTreeMap<String, _> = objects
            .secrets
            .iter()
            .filter(|(k, _)| k.namespace == ns)
            .map(|(k, v)| (k.name.clone(), v.clone()))
            .collect();
        let (creds, warnings) =
            podspec::pull_credentials(pod, &secrets, parsed.domain(), parsed.path());
        for w in warnings {
            self.shared.event(
                pod,
                None,
                EventType::Warning,
                "FailedToRetrieveImagePullSecret",
                w,
            );
        }
        if creds.is_empty() {
            return crate::image::pull(e.images.clone(), &e.cfg.registry, image, None)
                .await
                .map(|_| ())
                .map_err(|err| err.to_string());
        }
        let mut last = String::new();
        for auth in &creds {
            match crate::image::pull(e.images.clone(), &e.cfg.registry, image, Some(auth)).await {
                Ok(_) => return Ok(()),
                Err(err) => last = err.to_string(),
            }
        }
        Err(last)
    }

    /// Removes the dead container instances the GC names (`kubelet::gc`), with their log
    /// files, as kubelet's container GC does.
    pub async fn collect_garbage(&self, rt: &PodRuntimeStatus) {
        let evict = crate::kubelet::gc::evictable(rt);
        if evict.is_empty() {
            return;
        }
        let log_dir = rt
            .latest_sandbox()
            .and_then(|s| sandbox_log_dir(&self.shared.engine, &s.id));
        for e in evict {
            if let Err(err) = self.shared.engine.remove_container(&e.id).await {
                warn!(container = %e.name, container_id = %e.id, error = %err, "removing a dead container");
                continue;
            }
            info!(container = %e.name, container_id = %e.id, attempt = e.attempt, "removed a dead container");
            if let Some(dir) = &log_dir {
                let _ = std::fs::remove_file(dir.join(&e.name).join(format!("{}.log", e.attempt)));
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
        remove_pod_cgroup(&self.shared.engine, &self.uid);
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

/// The root of the static pods' cgroups: kubelet's `kubepods`, below the engine's parent.
fn kubepods(engine: &crate::pod::Engine) -> String {
    format!(
        "{}/kubepods",
        engine.cgroups.default_parent().trim_end_matches('/')
    )
}

/// The cgroups a pod of UID `uid` can have: kubelet's pod cgroup in each QoS tier.
pub fn pod_cgroups(engine: &crate::pod::Engine, uid: &str) -> [String; 3] {
    let root = kubepods(engine);
    [
        format!("{root}/pod{uid}"),
        format!("{root}/burstable/pod{uid}"),
        format!("{root}/besteffort/pod{uid}"),
    ]
}

/// Removes the pod's cgroup (the engine does not own a cgroup parent it was given, as
/// containerd does not own kubelet's), then the QoS tiers and `kubepods` once empty.
pub fn remove_pod_cgroup(engine: &crate::pod::Engine, uid: &str) {
    if engine.cfg.cgroup_driver == crate::config::CgroupDriver::Systemd {
        return;
    }
    for path in pod_cgroups(engine, uid) {
        if let Err(e) = engine.cgroups.remove_tree(&path) {
            warn!(cgroup = %path, error = %e, "removing the pod's cgroup");
        }
    }
    let root = kubepods(engine);
    for tier in ["burstable", "besteffort"] {
        engine.cgroups.remove_if_empty(&format!("{root}/{tier}"));
    }
    engine.cgroups.remove_if_empty(&root);
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
