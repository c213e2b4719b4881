//! Start-up reconciliation. The invariant: while the daemon is down, pods and containers keep
//! running; a restarted daemon reloads every record, checks each pause and monitor against what
//! runs (PID plus start time), re-attaches exit watchers to live monitors and records the exits
//! that happened meanwhile from the monitors' exit files.
//!
//! A kill -9 at any instant loses nothing reported and leaks nothing, because every sandbox and
//! container is recorded as an intent (`creating`) before its first resource exists:
//! - a finished record is recovered as above;
//! - an intent, a record without its config, or a directory without a readable record is
//!   undone in reverse (monitor and pause killed, the runtime's container force-deleted, the
//!   cgroups emptied and removed, mounts unmounted, files deleted): its ID was never reported;
//! - what cannot be undone stays registered (a sandbox NOTREADY, a container UNKNOWN, with the
//!   reason) so that RemovePodSandbox / RemoveContainer can finish it; nothing is skipped;
//! - then orphans are swept: peapod-shim processes, runtime state, state directories, mounts
//!   and pod cgroups of this daemon's that no record owns.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::{error, info, warn};

use super::monitor;
use super::proc;
use super::record::{self, ContainerRecord, ContainerState, SandboxRecord, SandboxState};
use super::sweep::{self, ShimKind, ShimProc};
use super::{Container, Engine, EngineError, Result, Sandbox};
use crate::api;
use crate::config::CgroupDriver;

/// How long a monitor gets to exit by itself once its container is gone.
const MONITOR_EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

pub(super) async fn recover(engine: &Arc<Engine>) {
    let t0 = std::time::Instant::now();
    let shims = sweep::shim_processes(&engine.paths.state);
    let mut undone = 0;
    let mut n_sb = 0;
    for dir in subdirs(&engine.paths.root.join("sandboxes")) {
        let Some(id) = dir_id(&dir) else {
            warn!(dir = %dir.display(), "not a sandbox directory of peapod's; left alone");
            continue;
        };
        let rec = record::load::<SandboxRecord>(&dir);
        let config = record::load_config::<api::PodSandboxConfig>(&dir);
        let (mut rec, config) = match (rec, config) {
            (Ok(rec), Ok(config)) if !rec.creating && rec.id == id => (rec, config),
            (rec, config) => {
                let why = match (&rec, &config) {
                    (Ok(r), _) if r.creating => "RunPodSandbox did not finish".to_string(),
                    (Ok(_), Err(e)) => format!("its config is unreadable ({e})"),
                    (Err(e), _) => format!("its record is unreadable ({e})"),
                    _ => "its record names another ID".to_string(),
                };
                let rec = rec.ok().filter(|r| r.id == id);
                match engine.undo_sandbox(&id, rec.as_ref(), &shims).await {
                    Ok(()) => {
                        info!(sandbox_id = %id, why, "undid an unfinished sandbox");
                        undone += 1;
                    }
                    Err(e) => match rec {
                        Some(mut rec) => {
                            warn!(sandbox_id = %id, why, error = %e,
                                "cannot undo an unfinished sandbox: kept NOTREADY for RemovePodSandbox");
                            rec.state = SandboxState::NotReady;
                            rec.creating = true;
                            engine.register_sandbox(rec, config.unwrap_or_default());
                            n_sb += 1;
                        }
                        None => error!(sandbox_id = %id, why, error = %e,
                            "cannot undo a sandbox without a readable record: left on disk"),
                    },
                }
                continue;
            }
        };
        let alive = proc::is_alive(rec.pause_pid, rec.pause_start);
        if rec.state == SandboxState::Ready && !alive {
            info!(sandbox_id = %rec.id, "pause gone while the daemon was down: sandbox not ready");
            rec.state = SandboxState::NotReady;
            let _ = record::save(&dir, &rec);
        }
        let ready = rec.state == SandboxState::Ready;
        let sb = engine.register_sandbox(rec, config);
        if ready {
            engine.watch_pause(sb);
        }
        n_sb += 1;
    }

    let mut n_ctr = 0;
    for dir in subdirs(&engine.paths.root.join("containers")) {
        let Some(id) = dir_id(&dir) else {
            warn!(dir = %dir.display(), "not a container directory of peapod's; left alone");
            continue;
        };
        let rec = record::load::<ContainerRecord>(&dir);
        let config = record::load_config::<api::ContainerConfig>(&dir);
        let has_sandbox = |r: &ContainerRecord| engine.sandboxes.read().contains_key(&r.sandbox_id);
        let (rec, config) = match (rec, config) {
            (Ok(rec), Ok(config)) if !rec.creating && rec.id == id && has_sandbox(&rec) => {
                (rec, config)
            }
            (rec, config) => {
                let why = match (&rec, &config) {
                    (Ok(r), _) if r.creating => "CreateContainer did not finish".to_string(),
                    (Ok(_), Err(e)) => format!("its config is unreadable ({e})"),
                    (Err(e), _) => format!("its record is unreadable ({e})"),
                    (Ok(r), _) if r.id != id => "its record names another ID".to_string(),
                    (Ok(r), _) => format!("its pod sandbox {} is gone", r.sandbox_id),
                };
                let rec = rec.ok().filter(|r| r.id == id);
                match engine.undo_container(&id, rec.as_ref(), &shims).await {
                    Ok(()) => {
                        info!(container_id = %id, why, "undid an unfinished container");
                        undone += 1;
                    }
                    Err(e) => match rec {
                        Some(mut rec) => {
                            warn!(container_id = %id, why, error = %e,
                                "cannot undo an unfinished container: kept UNKNOWN for RemoveContainer");
                            rec.unknown = true;
                            rec.creating = true;
                            rec.message = format!("{why}; undoing it failed: {e}");
                            engine.register_container(rec, config.unwrap_or_default(), true);
                            n_ctr += 1;
                        }
                        None => error!(container_id = %id, why, error = %e,
                            "cannot undo a container without a readable record: left on disk"),
                    },
                }
                continue;
            }
        };
        let done = rec.state() == ContainerState::Exited;
        let monitor_alive = proc::is_alive(rec.monitor_pid, rec.monitor_start);
        let c = engine.register_container(rec.clone(), config, done);
        // Recovery reconciles, it does not report: an exit it finds (that happened while the
        // daemon was down) gets no CONTAINER_STOPPED event. containerd does the same: its
        // loadContainer (internal/cri/server/restart.go) writes such an exit into the status
        // it loads and emits nothing; only the exit monitors it starts for running tasks emit
        // events, for exits after the restart, as the watchers started here do. The kubelet
        // loses its event stream when the runtime restarts, and its evented PLEG relists on
        // that error, which shows the exit. (record_exit below publishes, but nobody can have
        // subscribed before Engine::new returns.)
        if !done {
            if monitor_alive {
                if rec.state() == ContainerState::Created {
                    engine.finish_start_if_running(&c).await;
                }
                engine.watch_container(c);
            } else if monitor::read_exit_file(&engine.paths.bundle_dir(&rec.id).join("exit"))
                .is_some()
                || !engine.paths.bundle_dir(&rec.id).exists()
            {
                // Exited while we were away (or the host rebooted and /run is empty).
                record_lost(engine, &c).await;
            } else {
                engine.record_exit(&c).await;
            }
        }
        n_ctr += 1;
    }
    // Pods that still hold a network keep it (a running pod's is never renumbered or made
    // again); every other address, veth, rule and CNI attachment is released.
    let live: Vec<(String, Vec<api::PortMapping>)> = engine
        .sandboxes()
        .iter()
        .filter(|sb| !sb.record().ips.is_empty())
        .map(|sb| (sb.id(), sb.config.port_mappings.clone()))
        .collect();
    engine.net.reconcile(&live).await;
    let swept = engine.sweep_orphans(&shims).await;
    info!(
        sandboxes = n_sb,
        containers = n_ctr,
        undone,
        swept,
        ms = t0.elapsed().as_millis() as u64,
        "recovered state from disk"
    );
}

/// The ID a record directory is named after, when it is one peapod could have made.
fn dir_id(dir: &Path) -> Option<String> {
    let id = dir.file_name()?.to_str()?;
    crate::fsutil::is_safe_id(id).then(|| id.to_string())
}

impl Engine {
    fn register_sandbox(&self, rec: SandboxRecord, config: api::PodSandboxConfig) -> Arc<Sandbox> {
        let _ = self.reserve_name("sandbox", &rec.name, &rec.id);
        let id = rec.id.clone();
        let sb = Arc::new(Sandbox {
            config,
            rec: Mutex::new(rec),
            op: tokio::sync::Mutex::new(()),
        });
        self.sandboxes.insert(id, sb.clone());
        sb
    }

    fn register_container(
        &self,
        rec: ContainerRecord,
        config: api::ContainerConfig,
        exited: bool,
    ) -> Arc<Container> {
        let _ = self.reserve_name("container", &rec.name, &rec.id);
        let id = rec.id.clone();
        let c = Arc::new(Container {
            config,
            rec: Mutex::new(rec),
            exited: tokio::sync::watch::channel(exited).0,
            op: tokio::sync::Mutex::new(()),
            resources: Mutex::new(
                record::load_named(
                    &self.paths.container_dir(&id),
                    super::update::RESOURCES_FILE,
                )
                .ok(),
            ),
        });
        self.containers.insert(id, c.clone());
        c
    }

    /// A container recorded as created whose StartContainer ran the runtime's start but did
    /// not record it (a crash in between) is running: the record is brought forward, since the
    /// container's process is real and kubelet's retried start would otherwise fail.
    async fn finish_start_if_running(&self, c: &Arc<Container>) {
        let (id, handler) = {
            let r = c.rec.lock().unwrap();
            (r.id.clone(), r.runtime_handler.clone())
        };
        let Ok(rt) = self.runtimes.get(&handler) else {
            return;
        };
        if matches!(
            rt.status(&id).await.as_deref(),
            Ok("running") | Ok("stopped")
        ) {
            info!(container_id = %id, "StartContainer had started the container: recorded as started");
            let _ = record::update(&c.rec, &self.paths.container_dir(&id), |r| {
                r.started_at = proc::now_ns();
                true
            });
        }
    }

    /// Force-deletes the runtime's container `id` in every handler that has state for it.
    async fn delete_runtime_state(&self, id: &str) -> Result<()> {
        for name in self
            .runtimes
            .names()
            .map(str::to_string)
            .collect::<Vec<_>>()
        {
            let rt = self.runtimes.get(&name)?;
            if rt.state_root().is_none_or(|r| r.join(id).exists()) {
                rt.delete(id, true).await?;
            }
        }
        Ok(())
    }

    /// Undoes a sandbox that was never reported, or finishes the removal of one, in reverse
    /// order of RunPodSandbox: its pause (or infra monitor and container), its cgroups, its
    /// mounts and pinned namespaces, its files. Idempotent.
    pub(super) async fn undo_sandbox(
        &self,
        id: &str,
        rec: Option<&SandboxRecord>,
        shims: &[ShimProc],
    ) -> Result<()> {
        let infra_bundle = self.infra_bundle(id);
        let infra_monitors: Vec<ShimProc> = shims
            .iter()
            .filter(|p| {
                p.id == id
                    && p.kind == ShimKind::Monitor
                    && p.bundle.as_deref() == Some(infra_bundle.as_path())
            })
            .cloned()
            .collect();
        // An infra container first (through its monitor, as an app container), then the pause:
        // the init of the pod's PID namespace goes last.
        self.end_container(id, rec.map(|r| r.pause_cgroup.as_str()), &infra_monitors)
            .await?;
        for p in shims
            .iter()
            .filter(|p| p.id == id && p.kind == ShimKind::Pause)
        {
            sweep::kill(p);
        }
        if let Some(r) = rec {
            if proc::is_alive(r.pause_pid, r.pause_start) {
                super::pause::kill_and_reap(r.pause_pid);
            }
        }
        match rec {
            Some(r) => {
                self.cgroups.kill_and_remove_tree(&r.pause_cgroup)?;
                if r.cgroup.owned {
                    self.cgroups.kill_and_remove_tree(&r.cgroup.path)?;
                }
            }
            None if self.cgroups.driver == CgroupDriver::Cgroupfs => {
                // Without a record only the cgroup peapod itself would have made is known.
                let pod = self.cgroups.pod_cgroup("", id);
                self.cgroups.kill_and_remove_tree(&pod.path)?;
            }
            None => {}
        }
        // The network, while its pinned namespace is still there. Without a record, the
        // driver running now is the one that could have made it.
        let netns = self.paths.sandbox_state_dir(id).join("ns/net");
        let driver = rec.map_or(self.net.driver_name(), |r| r.network.as_str());
        self.net
            .teardown(driver, id, netns.exists().then_some(netns.as_path()))
            .await?;
        if driver != super::network::CNI {
            // A CNI attachment made under an earlier config, if any (a no-op without one).
            self.net.teardown(super::network::CNI, id, None).await?;
        }
        sweep::remove_dir(&self.paths.sandbox_state_dir(id))
            .map_err(EngineError::io("removing the sandbox's state"))?;
        remove_record_dir(&self.paths.sandbox_dir(id))
    }

    /// Undoes a container that was never reported, or finishes the removal of one, in reverse
    /// order of CreateContainer: its monitor and the runtime's container, its cgroup, its
    /// rootfs mount, its bundle and files. Idempotent.
    pub(super) async fn undo_container(
        &self,
        id: &str,
        rec: Option<&ContainerRecord>,
        shims: &[ShimProc],
    ) -> Result<()> {
        let bundle = self.paths.bundle_dir(id);
        let mut monitors: Vec<ShimProc> = shims
            .iter()
            .filter(|p| {
                p.kind == ShimKind::Monitor
                    && p.id == id
                    && p.bundle.as_deref() == Some(bundle.as_path())
            })
            .cloned()
            .collect();
        if let Some(r) = rec.filter(|r| proc::is_alive(r.monitor_pid, r.monitor_start)) {
            monitors.push(ShimProc {
                pid: r.monitor_pid,
                start: r.monitor_start,
                kind: ShimKind::Monitor,
                id: id.to_string(),
                bundle: Some(bundle.clone()),
            });
        }
        let cgroup = rec.map(|r| r.cgroup_path.as_str());
        self.end_container(id, cgroup, &monitors).await?;
        sweep::remove_dir(&bundle).map_err(EngineError::io("removing the bundle"))?;
        remove_record_dir(&self.paths.container_dir(id))
    }

    /// Ends a container that has (or may have) a monitor: the container's processes first, so
    /// that the monitor, their parent and a subreaper, reaps them, writes the exit file and
    /// exits by itself; only a monitor still there after that is killed, with its process
    /// group (an OCI runtime `create` it runs), and then whatever that left. Killing the
    /// monitor first would hand the container's processes to PID 1: one that never reaps them
    /// (as here) leaves zombies in the pod's PID namespace, and the pause, its init, can then
    /// never finish exiting while the namespace refuses new processes (ENOMEM in runc).
    async fn end_container(
        &self,
        id: &str,
        cgroup: Option<&str>,
        monitors: &[ShimProc],
    ) -> Result<()> {
        self.delete_runtime_state(id).await?;
        if let Some(cg) = cgroup {
            self.cgroups.kill_and_remove_tree(cg)?;
        }
        let deadline = std::time::Instant::now() + MONITOR_EXIT_WAIT;
        while monitors.iter().any(|m| proc::is_alive(m.pid, m.start))
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        if monitors.iter().any(|m| proc::is_alive(m.pid, m.start)) {
            for m in monitors {
                kill_monitor(m);
            }
            // A `create` that the monitor ran may have finished meanwhile.
            self.delete_runtime_state(id).await?;
            if let Some(cg) = cgroup {
                self.cgroups.kill_and_remove_tree(cg)?;
            }
        }
        Ok(())
    }

    /// Sweeps what no record owns: this daemon's peapod-shim processes, the runtimes' state,
    /// state directories, mounts and pod cgroups. Returns how many things it removed.
    async fn sweep_orphans(&self, shims: &[ShimProc]) -> usize {
        let known: HashSet<String> = self
            .sandboxes
            .read()
            .keys()
            .chain(self.containers.read().keys())
            .cloned()
            .collect();
        let mut swept = 0;
        for p in shims.iter().filter(|p| !known.contains(&p.id)) {
            if proc::is_alive(p.pid, p.start) {
                warn!(pid = p.pid, id = %p.id, kind = ?p.kind, "ending an orphaned peapod-shim");
                match p.kind {
                    ShimKind::Pause => sweep::kill(p),
                    ShimKind::Monitor => {
                        if let Err(e) = self
                            .end_container(&p.id, None, std::slice::from_ref(p))
                            .await
                        {
                            warn!(id = %p.id, error = %e, "ending an orphaned monitor's container");
                        }
                    }
                }
                swept += 1;
            }
        }
        for name in self
            .runtimes
            .names()
            .map(str::to_string)
            .collect::<Vec<_>>()
        {
            let Ok(rt) = self.runtimes.get(&name) else {
                continue;
            };
            let Some(root) = rt.state_root() else {
                continue;
            };
            for d in subdirs(&root) {
                let Some(id) = dir_id(&d).filter(|id| !known.contains(id)) else {
                    continue;
                };
                warn!(container_id = %id, runtime = %name, "deleting an orphaned runtime container");
                if let Err(e) = rt.delete(&id, true).await {
                    warn!(container_id = %id, error = %e, "deleting an orphaned runtime container");
                }
                swept += 1;
            }
        }
        for kind in ["sandboxes", "containers"] {
            for base in [self.paths.state.join(kind), self.paths.root.join(kind)] {
                for (id, mounts) in sweep::mounts_by_id(&base) {
                    if !known.contains(&id) {
                        for m in mounts {
                            warn!(mount = %m.display(), "unmounting an orphaned mount");
                            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
                            swept += 1;
                        }
                    }
                }
            }
            for d in subdirs(&self.paths.state.join(kind)) {
                if dir_id(&d).is_none_or(|id| !known.contains(&id)) {
                    warn!(dir = %d.display(), "removing an orphaned state directory");
                    if let Err(e) = sweep::remove_dir(&d) {
                        warn!(dir = %d.display(), error = %e, "removing an orphaned state directory");
                    }
                    swept += 1;
                }
            }
        }
        if self.cgroups.driver == CgroupDriver::Cgroupfs {
            let parent = self
                .cgroups
                .default_parent()
                .trim_end_matches('/')
                .to_string();
            for child in self.cgroups.children(&parent) {
                // Only cgroups named as the engine names a pod's (its sandbox ID): the
                // parent also holds what a front door made there (the manifest door's
                // kubepods tree), which is that door's to reconcile.
                if crate::fsutil::is_generated_id(&child) && !known.contains(&child) {
                    let path = format!("{parent}/{child}");
                    warn!(cgroup = %path, "removing an orphaned pod cgroup");
                    if let Err(e) = self.cgroups.kill_and_remove_tree(&path) {
                        warn!(cgroup = %path, error = %e, "removing an orphaned pod cgroup");
                    }
                    swept += 1;
                }
            }
        }
        swept
    }
}

/// Kills a monitor and its process group: the monitor is a session leader, and an OCI runtime
/// `create` it may be running is in its group (it would otherwise finish and leave a container
/// nobody watches).
fn kill_monitor(p: &ShimProc) {
    if !proc::is_alive(p.pid, p.start) {
        return;
    }
    if nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(p.pid)))
        .is_ok_and(|g| g.as_raw() == p.pid)
    {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(p.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    sweep::kill(p);
}

/// Removes a record directory: every mount under it first, then the record, then the rest.
fn remove_record_dir(dir: &Path) -> Result<()> {
    sweep::unmount_all_under(dir).map_err(EngineError::io("unmounting"))?;
    match std::fs::remove_file(dir.join(record::RECORD_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(EngineError::io(format!("removing {}", dir.display()))(e))
        }
        _ => {}
    }
    sweep::remove_dir(dir).map_err(EngineError::io("removing the record directory"))
}

/// Records the exit of a container whose monitor is gone: from its exit file when there is one,
/// else (after a reboot) as an exit with status 255 and reason Unknown, as containerd reports.
async fn record_lost(engine: &Arc<Engine>, c: &Arc<Container>) {
    let id = c.rec.lock().unwrap().id.clone();
    if let Some(e) = monitor::read_exit_file(&engine.paths.bundle_dir(&id).join("exit")) {
        let _ = record::update(&c.rec, &engine.paths.container_dir(&id), |r| {
            r.mark_exited(e.exit_code, e.finished_at_ns, false);
            true
        });
    } else {
        let _ = record::update(&c.rec, &engine.paths.container_dir(&id), |r| {
            r.mark_exited(255, proc::now_ns(), false);
            r.reason = "Unknown".into();
            r.message = "the container's state was lost (host reboot?)".into();
            true
        });
    }
    c.exited.send_replace(true);
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}
