//! Container lifecycle: create (rootfs + spec + monitor), start, stop, remove, and the exit
//! watcher that turns a monitor's exit file into the container's final status.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use tracing::{info, instrument, warn};

use super::events::ContainerEventKind as Event;
use super::failpoint;
use super::monitor::{self, MonitorArgs};
use super::proc::{self, now_ns};
use super::record::{self, ContainerRecord, ContainerState, SandboxState, RECORD_VERSION};
use super::sandbox::ignore_not_found;
use super::undo::Undo;
use super::{Container, Engine, EngineError, Result};
use crate::api;
use crate::fsutil::new_id;
use crate::oci::spec::{generate, SpecInput};

/// How long a container gets to die after SIGKILL before StopContainer gives up.
const KILL_WAIT: Duration = Duration::from_secs(30);

/// The container's unique name within the node, as containerd builds it.
pub fn container_name(c: &api::ContainerMetadata, s: &api::PodSandboxMetadata) -> String {
    format!(
        "{}_{}_{}_{}_{}",
        c.name, s.name, s.namespace, s.uid, c.attempt
    )
}

/// The signal number for a CRI stop signal or an image's StopSignal ("SIGINT", "2", "INT").
pub fn parse_signal(s: &str) -> Option<i32> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok().map(|sig| sig as i32);
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>().ok().map(|sig| sig as i32)
}

/// The number of a CRI `Signal` (its proto names are `SIGNAL_SIGQUIT` and so on).
pub fn cri_signal(s: api::Signal) -> Option<i32> {
    parse_signal(s.as_str_name().strip_prefix("SIGNAL_")?)
}

/// The CRI log path: the sandbox's log directory joined with the container's relative path,
/// refusing anything that would climb out of the directory.
fn log_path(dir: &str, rel: &str) -> Result<Option<PathBuf>> {
    if dir.is_empty() || rel.is_empty() {
        return Ok(None);
    }
    let relp = Path::new(rel);
    if relp.is_absolute()
        || relp
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(EngineError::invalid(
            "config.log_path",
            format!("{rel:?} must be a relative path without '..'"),
        ));
    }
    Ok(Some(Path::new(dir).join(relp)))
}

impl Engine {
    #[instrument(skip_all, fields(sandbox_id = %sandbox_id, container_id = tracing::field::Empty))]
    pub async fn create_container(
        self: &Arc<Self>,
        sandbox_id: &str,
        config: api::ContainerConfig,
    ) -> Result<String> {
        let sb = self.sandbox(sandbox_id)?;
        let sbrec = sb.record();
        if sbrec.state != SandboxState::Ready {
            return Err(EngineError::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                sbrec.id
            )));
        }
        let md = config
            .metadata
            .as_ref()
            .filter(|m| !m.name.is_empty())
            .ok_or_else(|| EngineError::invalid("config.metadata.name", "is required"))?;
        let image_ref = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .filter(|i| !i.is_empty())
            .ok_or_else(|| EngineError::invalid("config.image.image", "is required"))?;
        let sbmd = sb.config.metadata.clone().unwrap_or_default();
        let name = container_name(md, &sbmd);
        let log = log_path(&sb.config.log_directory, &config.log_path)?;
        let image = self.images.get(&image_ref)?;
        let runtime = self.runtimes.get(&sbrec.runtime_handler)?;

        // A retry of a CreateContainer that was answered late or not at all gets the
        // container made for it.
        if let Some(existing) = self.retried_container(&name, &sbrec.id, &config) {
            info!(container_id = %existing, "CreateContainer retried: the container exists");
            return Ok(existing);
        }
        let id = new_id();
        tracing::Span::current().record("container_id", id.as_str());
        let mut undo = Undo::new();
        self.reserve_name("container", &name, &id)?;
        {
            let me = self.clone();
            let name = name.clone();
            undo.push("release name", move || me.release_name("container", &name));
        }

        // The rootfs: an overlay of the image's layers with a private upper dir.
        let dir = self.paths.container_dir(&id);
        let bundle = self.paths.bundle_dir(&id);
        for d in [&dir, &bundle] {
            std::fs::create_dir_all(d)
                .map_err(EngineError::io(format!("creating {}", d.display())))?;
            let d = d.clone();
            undo.push("remove container dir", move || {
                let _ = super::sweep::remove_dir(&d);
            });
        }
        failpoint::hit("container.dir");
        let rootfs = dir.join("rootfs");
        let image_config = image.config.config().clone().unwrap_or_default();
        let cgroup_path = self.cgroups.child_path(&sbrec.cgroup.path, &id);
        let stop_signal = config
            .stop_signal
            .try_into()
            .ok()
            .filter(|s: &api::Signal| *s != api::Signal::RuntimeDefault)
            .and_then(cri_signal)
            .or_else(|| image_config.stop_signal().as_deref().and_then(parse_signal))
            .unwrap_or(libc::SIGTERM);
        // The intent, before the first mount, cgroup or monitor: recovery after a crash below
        // undoes what the record names (the rootfs, the cgroup, the runtime's container and
        // the monitor, found by this ID).
        let mut rec = ContainerRecord {
            version: RECORD_VERSION,
            id: id.clone(),
            name: name.clone(),
            sandbox_id: sbrec.id.clone(),
            runtime_handler: runtime.name.clone(),
            image_ref,
            image_id: image.id.clone(),
            image_chain_ids: image.chain_ids.clone(),
            log_path: log.clone(),
            rootfs: rootfs.clone(),
            cgroup_path: cgroup_path.clone(),
            stop_signal,
            created_at: now_ns(),
            monitor_pid: 0,
            monitor_start: 0,
            pid: 0,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            unknown: false,
            creating: true,
        };
        let config_saved = record::save_config(&dir, &config)
            .map_err(EngineError::io("saving container config"))?;
        record::save_intent(&dir, &rec).map_err(EngineError::io("saving container intent"))?;
        failpoint::hit("container.intent");
        let lowers = self.images.layer_dirs(&image);
        crate::image::snapshot::mount_rootfs(
            &lowers,
            &dir.join("upper"),
            &dir.join("work"),
            &rootfs,
        )?;
        {
            let r = rootfs.clone();
            undo.push("unmount rootfs", move || {
                let _ = crate::image::snapshot::unmount_rootfs(&r);
            });
        }

        tracing::debug!("rootfs mounted");
        failpoint::hit("container.rootfs");
        // The OCI spec.
        let view = self.sandbox_view(&sb);
        let target_pid_ns = self.target_pid_ns(&config)?;
        let spec = generate(&SpecInput {
            id: &id,
            config: &config,
            image: &image_config,
            rootfs: &rootfs,
            sandbox: &view,
            cgroups_path: cgroup_path.clone(),
            target_pid_ns,
            host: &self.host,
        })?;
        let spec_json = serde_json::to_vec(&spec)
            .map_err(|e| EngineError::io("encoding config.json")(e.into()))?;
        crate::fsutil::atomic_write_opts(&bundle.join("config.json"), &spec_json, false)
            .map_err(EngineError::io("writing config.json"))?;
        if let Some(l) = &log {
            if let Some(parent) = l.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(EngineError::io("creating the log directory"))?;
            }
        }

        tracing::debug!("bundle written");
        failpoint::hit("container.bundle");
        // Registered before the monitor starts so that it runs after the runtime's delete.
        {
            let (cg, path) = (self.cgroups.clone(), cgroup_path.clone());
            undo.push("remove the container's cgroup", move || {
                let _ = cg.kill_and_remove_tree(&path);
            });
        }
        // The monitor runs `<runtime> create` and stays as the container's parent.
        let exit_file = bundle.join("exit");
        let started = monitor::spawn(&MonitorArgs {
            shim: &self.shim,
            id: &id,
            bundle: &bundle,
            runtime,
            exit_file: &exit_file,
            runtime_log: &bundle.join("runtime.log"),
            log_path: log.as_deref(),
            tty: config.tty,
            stdin: config.stdin,
            stdin_once: config.stdin_once,
        })
        .await?;
        tracing::debug!(pid = started.init_pid, "runtime created the container");
        {
            let rt = runtime.clone();
            let id = id.clone();
            let mp = started.monitor_pid;
            undo.push("delete the runtime's container", move || {
                // Undo runs synchronously; the runtime CLI is a plain child process.
                let _ = std::process::Command::new(&rt.path)
                    .args(&rt.global_args)
                    .args(["delete", "--force", &id])
                    .output();
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(mp), None);
            });
        }
        failpoint::hit("container.monitor");
        rec.created_at = now_ns();
        rec.monitor_pid = started.monitor_pid;
        rec.monitor_start = proc::start_time(started.monitor_pid).unwrap_or(0);
        rec.pid = started.init_pid;
        rec.creating = false;
        config_saved
            .wait()
            .await
            .map_err(EngineError::io("saving container config"))?;
        record::save(&dir, &rec).map_err(EngineError::io("saving container record"))?;
        failpoint::hit("container.recorded");
        let c = Arc::new(Container {
            config,
            rec: Mutex::new(rec),
            exited: tokio::sync::watch::channel(false).0,
            op: tokio::sync::Mutex::new(()),
            resources: Mutex::new(None),
        });
        self.publish(Event::Created, &c);
        self.containers.insert(id.clone(), c.clone());
        undo.commit();
        self.watch_container(c);
        info!("container created");
        Ok(id)
    }

    /// The container a retried CreateContainer asked for: the not yet started container of that
    /// name in the same sandbox, made from the same config.
    fn retried_container(
        &self,
        name: &str,
        sandbox_id: &str,
        config: &api::ContainerConfig,
    ) -> Option<String> {
        let owner = self
            .names
            .lock()
            .unwrap()
            .get(&format!("container/{name}"))
            .cloned()?;
        let c = self.containers.read().get(&owner).cloned()?;
        let rec = c.record();
        (rec.sandbox_id == sandbox_id
            && rec.state() == ContainerState::Created
            && c.config == *config)
            .then_some(owner)
    }

    fn target_pid_ns(&self, config: &api::ContainerConfig) -> Result<Option<PathBuf>> {
        let Some(opts) = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
        else {
            return Ok(None);
        };
        if opts.pid != api::NamespaceMode::Target as i32 {
            return Ok(None);
        }
        let target = self.container(&opts.target_id).map_err(|_| {
            EngineError::invalid(
                "config.linux.security_context.namespace_options.target_id",
                format!("no container {:?}", opts.target_id),
            )
        })?;
        let r = target.record();
        if r.state() != ContainerState::Running {
            return Err(EngineError::invalid(
                "config.linux.security_context.namespace_options.target_id",
                "the target container is not running",
            ));
        }
        Ok(Some(PathBuf::from(format!("/proc/{}/ns/pid", r.pid))))
    }

    /// Waits for the monitor to exit, then records the container's exit from the exit file.
    pub(super) fn watch_container(self: &Arc<Self>, c: Arc<Container>) {
        let me = self.clone();
        tokio::spawn(async move {
            let (id, mpid, mstart) = {
                let r = c.rec.lock().unwrap();
                (r.id.clone(), r.monitor_pid, r.monitor_start)
            };
            if let Err(e) = proc::wait_exit(mpid).await {
                warn!(container_id = %id, error = %e, "cannot watch the monitor; polling");
                while proc::is_alive(mpid, mstart) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            // Boxed: the task waits for the whole life of the container, and an inline
            // exit-recording state (runtime kill, file reads) would make every waiting task
            // that much bigger.
            Box::pin(me.record_exit(&c)).await;
        });
    }

    /// Turns the exit file into the container's final status (or UNKNOWN-proofing when the
    /// monitor died without one: the container is killed so it cannot run untracked).
    pub(super) async fn record_exit(&self, c: &Arc<Container>) {
        let (id, cgroup, handler) = {
            let r = c.rec.lock().unwrap();
            (
                r.id.clone(),
                r.cgroup_path.clone(),
                r.runtime_handler.clone(),
            )
        };
        self.events.start_done(&id).await;
        let exit = monitor::read_exit_file(&self.paths.bundle_dir(&id).join("exit"));
        let oom = exit.is_some() && self.cgroups.oom_killed(&cgroup);
        if exit.is_none() {
            warn!(container_id = %id, "monitor exited without an exit file; killing the container");
            if let Ok(rt) = self.runtimes.get(&handler) {
                let _ = rt.kill(&id, libc::SIGKILL, true).await;
            }
        }
        let res = record::update(&c.rec, &self.paths.container_dir(&id), |r| {
            if r.finished_at > 0 {
                return false;
            }
            match exit {
                Some(e) => r.mark_exited(e.exit_code, e.finished_at_ns, oom),
                None => {
                    r.mark_exited(255, now_ns(), false);
                    r.message =
                        "the container monitor exited without recording an exit status".into();
                }
            }
            true
        });
        if matches!(res, Ok(Some(_))) {
            self.publish(Event::Stopped, c);
        }
        match res {
            Ok(Some(rec)) => {
                info!(container_id = %id, exit_code = rec.exit_code, reason = %rec.reason, "container exited")
            }
            Ok(None) => {}
            Err(e) => warn!(container_id = %id, error = %e, "saving container record"),
        }
        c.exited.send_replace(true);
    }

    #[instrument(skip(self), fields(container_id = %id))]
    pub async fn start_container(self: &Arc<Self>, id: &str) -> Result<()> {
        let c = self.container(id)?;
        let _op = c.op.lock().await;
        let rec = c.record();
        if rec.state() != ContainerState::Created {
            return Err(EngineError::FailedPrecondition(format!(
                "container {} is not in created state",
                rec.id
            )));
        }
        let sb = self.sandbox(&rec.sandbox_id)?;
        if sb.record().state != SandboxState::Ready {
            return Err(EngineError::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                rec.sandbox_id
            )));
        }
        let rt = self.runtimes.get(&rec.runtime_handler)?;
        let _starting = self.events.starting(&rec.id);
        let started = std::time::Instant::now();
        if let Err(e) = rt.start(&rec.id).await {
            // The container can never run now: make the runtime kill it so the monitor reports.
            let _ = rt.delete(&rec.id, true).await;
            let _ = record::update(&c.rec, &self.paths.container_dir(&rec.id), |r| {
                r.message = e.to_string();
                true
            });
            return Err(e.into());
        }
        crate::metrics::global()
            .container_start
            .observe(started.elapsed().as_secs_f64());
        failpoint::hit("container.started");
        // Not waited for on disk: a power loss before the fsync also ends the container, and
        // recovery records a created container without its monitor as exited, as it would
        // the started one.
        record::update_deferred(&c.rec, &self.paths.container_dir(&rec.id), |r| {
            r.started_at = now_ns();
            true
        })
        .map_err(EngineError::io("saving container record"))?;
        self.publish(Event::Started, &c);
        info!("container started");
        Ok(())
    }

    /// CRI StopContainer: the stop signal, `timeout` seconds of grace, then SIGKILL.
    #[instrument(skip(self), fields(container_id = %id))]
    pub async fn stop_container(self: &Arc<Self>, id: &str, timeout: i64) -> Result<()> {
        let c = self.container(id)?;
        let _op = c.op.lock().await;
        self.stop_container_inner(&c, timeout).await
    }

    pub(super) async fn stop_container_inner(
        &self,
        c: &Arc<Container>,
        timeout: i64,
    ) -> Result<()> {
        let rec = c.record();
        if rec.state() != ContainerState::Running {
            return Ok(());
        }
        let mut exited = c.exited.subscribe();
        let pid = nix::unistd::Pid::from_raw(rec.pid);
        if timeout > 0 {
            let sig = Signal::try_from(rec.stop_signal).unwrap_or(Signal::SIGTERM);
            info!(signal = %sig, timeout, "stopping container");
            if nix::sys::signal::kill(pid, sig).is_ok() {
                let grace = Duration::from_secs(timeout as u64);
                if tokio::time::timeout(grace, exited.wait_for(|e| *e))
                    .await
                    .is_ok()
                {
                    return Ok(());
                }
            }
        }
        info!("killing container");
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        let waited = tokio::time::timeout(KILL_WAIT, exited.wait_for(|e| *e)).await;
        match waited {
            Ok(_) => Ok(()),
            Err(_) => Err(EngineError::FailedPrecondition(format!(
                "container {} did not exit {KILL_WAIT:?} after SIGKILL",
                rec.id
            ))),
        }
    }

    /// Removes a container, forcibly stopping it first when it still runs. Unknown IDs succeed.
    #[instrument(skip(self), fields(container_id = %id))]
    pub async fn remove_container(self: &Arc<Self>, id: &str) -> Result<()> {
        let c = match self.container(id) {
            Ok(c) => c,
            Err(EngineError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let _op = c.op.lock().await;
        if c.record().creating {
            // Left by a crash in CreateContainer that start-up could not undo: undo it now.
            let rec = c.record();
            let shims = super::sweep::shim_processes(&self.paths.state);
            self.undo_container(&rec.id, Some(&rec), &shims).await?;
            self.containers.remove(&rec.id);
            self.release_name("container", &rec.name);
            self.publish(Event::Deleted, &c);
            info!("unfinished container removed");
            return Ok(());
        }
        self.stop_container_inner(&c, 0).await?;
        let rec = c.record();
        let rt = self.runtimes.get(&rec.runtime_handler)?;
        // Also ends a created-but-never-started container; its monitor then exits.
        rt.delete(&rec.id, true).await?;
        failpoint::hit("container.removing");
        if proc::is_alive(rec.monitor_pid, rec.monitor_start) {
            let mut exited = c.exited.subscribe();
            let _ = tokio::time::timeout(Duration::from_secs(10), exited.wait_for(|e| *e)).await;
        }
        // What the runtime left in the cgroup (a process it lost track of) must not make the
        // removal fail forever.
        self.cgroups.kill_and_remove_tree(&rec.cgroup_path)?;
        crate::image::snapshot::unmount_rootfs(&rec.rootfs)?;
        let bundle = self.paths.bundle_dir(&rec.id);
        super::sweep::remove_dir(&bundle).map_err(EngineError::io("removing the bundle"))?;
        // The record goes before the rest of the directory but after every resource it names:
        // a crash before this leaves a container that recovery knows and a retried remove
        // finishes; after it, only files that the start-up sweep deletes.
        let dir = self.paths.container_dir(&rec.id);
        super::sweep::unmount_all_under(&dir).map_err(EngineError::io("unmounting"))?;
        std::fs::remove_file(dir.join(record::RECORD_FILE))
            .or_else(ignore_not_found)
            .map_err(EngineError::io("removing the container record"))?;
        std::fs::remove_dir_all(&dir)
            .or_else(ignore_not_found)
            .map_err(EngineError::io(format!("removing {}", dir.display())))?;
        self.containers.remove(&rec.id);
        self.release_name("container", &rec.name);
        self.publish(Event::Deleted, &c);
        info!("container removed");
        Ok(())
    }

    /// Has the container's monitor reopen its log file (CRI ReopenContainerLog) and returns
    /// once it has: the kubelet renames the log, calls this, then expects the new file (and
    /// renames the old one back on error).
    pub async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let rec = self.container(id)?.record();
        if rec.state() != ContainerState::Running {
            return Err(EngineError::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        let bundle = self.paths.bundle_dir(&rec.id);
        monitor::reopen_log(&rec.id, rec.monitor_pid, rec.monitor_start, &bundle)
            .await
            .map_err(|e| match e {
                // The log's directory is gone, or the container ended meanwhile.
                monitor::MonitorError::LogReopen { .. } => {
                    EngineError::FailedPrecondition(e.to_string())
                }
                e => e.into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_like_docker() {
        assert_eq!(parse_signal("SIGTERM"), Some(15));
        assert_eq!(parse_signal("int"), Some(2));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("SIGRTMAX+1"), None);
        assert_eq!(parse_signal(""), None);
        assert_eq!(cri_signal(api::Signal::Sigquit), Some(3));
        assert_eq!(cri_signal(api::Signal::RuntimeDefault), None);
    }

    #[test]
    fn log_paths_cannot_escape() {
        assert_eq!(
            log_path("/var/log/pods/x", "c/0.log").unwrap(),
            Some(PathBuf::from("/var/log/pods/x/c/0.log"))
        );
        assert_eq!(log_path("", "c/0.log").unwrap(), None);
        for bad in ["../../etc/passwd", "/etc/shadow", "a/../../b"] {
            let e = log_path("/var/log/pods/x", bad).unwrap_err().to_string();
            assert!(e.contains("config.log_path"), "{e}");
        }
    }

    #[test]
    fn names_follow_containerd() {
        let c = api::ContainerMetadata {
            name: "app".into(),
            attempt: 1,
        };
        let s = api::PodSandboxMetadata {
            name: "web".into(),
            uid: "u".into(),
            namespace: "ns".into(),
            attempt: 0,
        };
        assert_eq!(container_name(&c, &s), "app_web_ns_u_1");
    }
}
