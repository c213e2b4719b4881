//! Sandbox lifecycle: run (pause + namespaces + cgroup + pod files), stop, remove.
//!
//! The infra process holding the namespaces is the built-in pause, or with `sandbox_image`
//! configured a container of that image (see `infra.rs`); from its PID on, both are the same.
//!
//! Each step of run registers its undo; a failure anywhere undoes everything in reverse, so a
//! failed RunPodSandbox leaves no pause, mount, namespace file, cgroup or record behind.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags};
use tracing::{info, instrument, warn};

use super::events::ContainerEventKind;
use super::failpoint;
use super::infra::InfraArgs;
use super::network::PodNetArgs;
use super::pause::{self, PauseNamespaces};
use super::proc::{self, now_ns};
use super::record::{self, SandboxNamespaces, SandboxRecord, SandboxState, RECORD_VERSION};
use super::undo::Undo;
use super::{Engine, EngineError, Result, Sandbox};
use crate::api::{self, NamespaceMode};
use crate::fsutil::{atomic_write_opts, new_id};

/// The default /etc/hosts of a pod with its own network, as containerd writes it.
const DEFAULT_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// The unique name kubelet's RunPodSandbox retries collide on, as containerd builds it.
pub fn sandbox_name(md: &api::PodSandboxMetadata) -> String {
    format!("{}_{}_{}_{}", md.name, md.namespace, md.uid, md.attempt)
}

/// The namespaces a pod gets from its config's namespace options.
pub fn namespaces_of(config: &api::PodSandboxConfig) -> SandboxNamespaces {
    let opts = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref());
    let mode = |m: i32| NamespaceMode::try_from(m).unwrap_or(NamespaceMode::Pod);
    match opts {
        // No options: every mode is POD (the enum's zero), so the pod shares one PID namespace.
        None => SandboxNamespaces {
            pod_pid: true,
            ..Default::default()
        },
        Some(o) => SandboxNamespaces {
            host_network: mode(o.network) == NamespaceMode::Node,
            host_ipc: mode(o.ipc) == NamespaceMode::Node,
            host_pid: mode(o.pid) == NamespaceMode::Node,
            pod_pid: mode(o.pid) == NamespaceMode::Pod,
        },
    }
}

/// resolv.conf from the pod's DNSConfig, or the host's when none is given.
fn resolv_conf(dns: Option<&api::DnsConfig>) -> std::io::Result<Vec<u8>> {
    let Some(dns) = dns else {
        return std::fs::read("/etc/resolv.conf").or_else(|_| Ok(Vec::new()));
    };
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for s in &dns.servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Ok(out.into_bytes())
}

/// The checks of a RunPodSandbox request before anything is made; its metadata when it passes.
pub fn validate(config: &api::PodSandboxConfig) -> Result<&api::PodSandboxMetadata> {
    let md = config
        .metadata
        .as_ref()
        .ok_or_else(|| EngineError::invalid("config.metadata", "is required"))?;
    if md.name.is_empty() {
        return Err(EngineError::invalid(
            "config.metadata.name",
            "must not be empty",
        ));
    }
    if md.namespace.is_empty() {
        return Err(EngineError::invalid(
            "config.metadata.namespace",
            "must not be empty",
        ));
    }
    if config.hostname.contains('\0') || config.hostname.len() > 64 {
        return Err(EngineError::invalid(
            "config.hostname",
            "must be at most 64 bytes with no NUL",
        ));
    }
    if !config.log_directory.is_empty() && !crate::fsutil::is_clean_absolute(&config.log_directory)
    {
        return Err(EngineError::invalid(
            "config.log_directory",
            "must be an absolute path without '..'",
        ));
    }
    if let Some(dns) = &config.dns_config {
        for (i, v) in dns
            .servers
            .iter()
            .chain(&dns.searches)
            .chain(&dns.options)
            .enumerate()
        {
            if v.contains(['\n', '\r', '\0']) {
                return Err(EngineError::invalid(
                    format!("config.dns_config[{i}]"),
                    "must not contain line breaks",
                ));
            }
        }
    }
    if let Some(l) = &config.linux {
        let ns = namespaces_of(config);
        let sysctls = l.sysctls.clone().into_iter().collect();
        crate::oci::spec::validate_sysctls(&sysctls, ns.host_network, ns.host_ipc)?;
    }
    Ok(md)
}

impl Engine {
    #[instrument(skip_all, fields(pod = tracing::field::Empty, sandbox_id = tracing::field::Empty))]
    pub async fn run_sandbox(
        self: &Arc<Self>,
        config: api::PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String> {
        let md = validate(&config)?;
        let name = sandbox_name(md);
        let runtime = self.runtimes.get(runtime_handler).map_err(|_| {
            EngineError::invalid(
                "runtime_handler",
                format!("no runtime handler {runtime_handler:?} is configured"),
            )
        })?;
        // A retry of a RunPodSandbox that was answered late or not at all (client timeout,
        // daemon restart) gets the pod that was made for it, not a second one.
        if let Some(existing) = self.retried_sandbox(&name, &config, &runtime.name) {
            info!(sandbox_id = %existing, pod = %name, "RunPodSandbox retried: the pod exists");
            return Ok(existing);
        }
        let started = std::time::Instant::now();
        let id = new_id();
        tracing::Span::current().record("pod", name.as_str());
        tracing::Span::current().record("sandbox_id", id.as_str());
        let mut undo = Undo::new();
        self.reserve_name("sandbox", &name, &id)?;
        {
            let me = self.clone();
            let name = name.clone();
            undo.push("release name", move || me.release_name("sandbox", &name));
        }
        let ns = namespaces_of(&config);
        let ports = &config.port_mappings;
        if !ns.host_network {
            self.net.validate(ports)?;
        }

        let dir = self.paths.sandbox_dir(&id);
        std::fs::create_dir_all(&dir).map_err(EngineError::io("creating sandbox dir"))?;
        {
            let dir = dir.clone();
            undo.push("remove sandbox dir", move || {
                let _ = super::sweep::remove_dir(&dir);
            });
        }
        failpoint::hit("sandbox.dir");
        let hostname = if ns.host_network || config.hostname.is_empty() {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            config.hostname.clone()
        };
        let cgroup = self.cgroups.pod_cgroup(
            config
                .linux
                .as_ref()
                .map(|l| l.cgroup_parent.as_str())
                .unwrap_or(""),
            &id,
        );
        let pause_cgroup = self.cgroups.child_path(&cgroup.path, &id);
        let shm_dir = (!ns.host_ipc).then(|| dir.join("shm"));

        // The intent: before the first mount, process or cgroup exists, the record names them
        // (every other path derives from the ID), so that recovery after a crash anywhere
        // below can undo exactly what was made.
        let mut rec = SandboxRecord {
            version: RECORD_VERSION,
            id: id.clone(),
            name: name.clone(),
            runtime_handler: runtime.name.clone(),
            created_at: now_ns(),
            hostname: hostname.clone(),
            namespaces: ns,
            pause_pid: 0,
            pause_start: 0,
            cgroup: cgroup.clone(),
            pause_cgroup: pause_cgroup.clone(),
            shm: shm_dir.clone(),
            state: SandboxState::NotReady,
            infra: None,
            network: if ns.host_network {
                String::new()
            } else {
                self.net.driver_name().to_string()
            },
            ips: Vec::new(),
            creating: true,
        };
        let config_saved =
            record::save_config(&dir, &config).map_err(EngineError::io("saving sandbox config"))?;
        record::save_intent(&dir, &rec).map_err(EngineError::io("saving sandbox intent"))?;
        failpoint::hit("sandbox.intent");

        // Pod files (hostname, hosts, resolv.conf) containers bind-mount.
        let hosts = if ns.host_network {
            std::fs::read("/etc/hosts").unwrap_or_default()
        } else {
            DEFAULT_HOSTS.as_bytes().to_vec()
        };
        let resolv = resolv_conf(config.dns_config.as_ref())
            .map_err(EngineError::io("reading resolv.conf"))?;
        for (file, data) in [
            ("hostname", format!("{hostname}\n").into_bytes()),
            ("hosts", hosts),
            ("resolv.conf", resolv),
        ] {
            // Not fsync'd: these only matter while the pod's processes live, and a crash that
            // could lose them ends those anyway.
            atomic_write_opts(&dir.join(file), &data, false)
                .map_err(EngineError::io(format!("writing {file}")))?;
        }

        // The pod's /dev/shm: a tmpfs of its own unless the pod shares the host's IPC.
        let shm = if let Some(shm) = shm_dir {
            std::fs::create_dir_all(&shm).map_err(EngineError::io("creating shm dir"))?;
            let opts = format!("mode=1777,size={}", self.cfg.shm_size);
            nix::mount::mount(
                Some("shm"),
                &shm,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some(opts.as_str()),
            )
            .map_err(|e| EngineError::io("mounting the pod's /dev/shm")(e.into()))?;
            let s = shm.clone();
            undo.push("unmount shm", move || unmount(&s));
            failpoint::hit("sandbox.shm");
            Some(shm)
        } else {
            None
        };

        // The pod cgroup and the infra's leaf in it. Its undo is registered first so that it
        // runs last, once the infra process is gone (rmdir refuses a cgroup with a process).
        {
            let cg = self.cgroups.clone();
            let (leaf, pod) = (pause_cgroup.clone(), cgroup.clone());
            undo.push("remove pod cgroup", move || {
                let _ = cg.kill_and_remove_tree(&leaf);
                if pod.owned {
                    let _ = cg.kill_and_remove_tree(&pod.path);
                }
            });
        }

        // The infra process, in its new namespaces.
        let pause_ns = PauseNamespaces {
            net: !ns.host_network,
            ipc: !ns.host_ipc,
            uts: !ns.host_network,
            pid: ns.pod_pid,
        };
        let ns_dir = self.paths.sandbox_state_dir(&id).join("ns");
        let (pid, infra) = if self.cfg.sandbox_image.is_empty() {
            // The built-in pause: cloned straight into its namespaces.
            let hn = (!config.hostname.is_empty()).then_some(config.hostname.as_str());
            // With cgroupfs the pause starts in its cgroup; with systemd it is placed.
            let join = self.cgroups.open_join(&pause_cgroup).transpose()?;
            let (pid, rd) = pause::clone_pause(
                &self.shim,
                pause_ns,
                hn,
                (&id, &self.paths.state),
                join.as_ref(),
            )?;
            undo.push("kill pause", move || pause::kill_and_reap(pid));
            failpoint::hit("sandbox.pause");
            // Placing a task costs an RCU grace period or more: done while the pause execs and
            // sets itself up, not after.
            let placing = join.is_none().then(|| {
                let (cg, leaf) = (self.cgroups.clone(), pause_cgroup.clone());
                tokio::task::spawn_blocking(move || cg.place(&leaf, pid))
            });
            let ready = pause::wait_ready(rd, Duration::from_secs(10)).await;
            drop(join);
            let placed = match placing {
                Some(placing) => placing
                    .await
                    .map_err(|e| EngineError::io("placing the pause")(std::io::Error::other(e)))?,
                None => Ok(()),
            };
            ready?;
            placed?;
            tracing::debug!(pid, cgroup = %pause_cgroup, "pause ready in its cgroup");
            failpoint::hit("sandbox.placed");
            (pid, None)
        } else {
            // A container of the sandbox image; the runtime puts it in the leaf.
            let (pid, infra) = self
                .start_infra(
                    &InfraArgs {
                        id: &id,
                        config: &config,
                        ns,
                        hostname: &hostname,
                        shm: shm.as_deref(),
                        ns_dir: &ns_dir,
                        cgroups_path: &pause_cgroup,
                        runtime,
                    },
                    &mut undo,
                )
                .await?;
            tracing::debug!(pid, image = %infra.image_ref, "infra container running");
            (pid, Some(infra))
        };
        let pause_start = proc::start_time(pid).unwrap_or(0);

        // Pin the namespaces so they outlive the infra and containers join them by path.
        pause::pin(pid, pause_ns, &ns_dir)?;
        {
            let d = ns_dir.clone();
            undo.push("unpin namespaces", move || {
                pause::unpin_all(&d);
                if let Some(p) = d.parent() {
                    let _ = std::fs::remove_dir(p);
                }
            });
        }

        tracing::debug!("namespaces pinned");
        failpoint::hit("sandbox.pinned");

        // The pod's network, in the pinned namespace. Undone by hand below: teardown is async.
        let netns = ns_dir.join("net");
        if !rec.network.is_empty() {
            let ips = self
                .net
                .setup(&PodNetArgs {
                    id: &id,
                    name: &md.name,
                    namespace: &md.namespace,
                    uid: &md.uid,
                    netns: &netns,
                    ports,
                })
                .await;
            match ips {
                Ok(ips) => rec.ips = ips,
                Err(e) => {
                    self.teardown_network(&rec.network, &id, Some(&netns)).await;
                    return Err(e.into());
                }
            }
            tracing::debug!(ips = ?rec.ips, "pod network set up");
            failpoint::hit("sandbox.network");
        }
        rec.created_at = now_ns();
        rec.pause_pid = pid;
        rec.pause_start = pause_start;
        rec.shm = shm;
        rec.state = SandboxState::Ready;
        rec.infra = infra;
        rec.creating = false;
        let saved = match config_saved.wait().await {
            Ok(()) => record::save(&dir, &rec).map_err(EngineError::io("saving sandbox record")),
            Err(e) => Err(EngineError::io("saving sandbox config")(e)),
        };
        if let Err(e) = saved {
            self.teardown_network(&rec.network, &id, Some(&netns)).await;
            return Err(e);
        }
        failpoint::hit("sandbox.recorded");
        let sb = Arc::new(Sandbox {
            config,
            rec: Mutex::new(rec),
            op: tokio::sync::Mutex::new(()),
        });
        self.sandboxes.insert(id.clone(), sb.clone());
        undo.commit();
        if let Some(infra) = &sb.record().infra {
            self.reap_infra_monitor(infra);
        }
        self.publish_sandbox(ContainerEventKind::Created, &sb, false);
        self.publish_sandbox(ContainerEventKind::Started, &sb, false);
        self.watch_pause(sb);
        info!("pod sandbox ready");
        crate::metrics::global()
            .sandbox_start
            .observe(started.elapsed().as_secs_f64());
        Ok(id)
    }

    /// Marks the sandbox NOTREADY when its pause exits (killed, OOM, or by StopPodSandbox).
    pub(super) fn watch_pause(self: &Arc<Self>, sb: Arc<Sandbox>) {
        let (pid, start) = {
            let r = sb.rec.lock().unwrap();
            (r.pause_pid, r.pause_start)
        };
        let dir = self.paths.sandbox_dir(&sb.id());
        let engine = self.clone();
        tokio::spawn(async move {
            if let Err(e) = proc::wait_exit(pid).await {
                warn!(pid, error = %e, "cannot watch pause; polling");
                while proc::is_alive(pid, start) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            let status = proc::zombie_status(pid);
            let res = record::update(&sb.rec, &dir, |r| {
                let changed = r.state != SandboxState::NotReady;
                r.state = SandboxState::NotReady;
                changed
            });
            match res {
                Ok(Some(rec)) => {
                    info!(sandbox_id = %rec.id, pid, ?status, "pause exited: sandbox not ready");
                    engine.publish_sandbox(ContainerEventKind::Stopped, &sb, false);
                }
                Ok(None) => {}
                Err(e) => warn!(error = %e, "saving sandbox record"),
            }
        });
    }

    /// Stops every container (forcibly, as containerd does: kubelet has already stopped them
    /// gracefully), then the pause, and releases the namespaces and the pod's /dev/shm.
    /// Idempotent.
    #[instrument(skip(self), fields(sandbox_id = %id))]
    pub async fn stop_sandbox(self: &Arc<Self>, id: &str) -> Result<()> {
        let sb = self.sandbox(id)?;
        let _op = sb.op.lock().await;
        let id = sb.id();
        for c in self.sandbox_containers(&id) {
            self.stop_container_inner(&c, 0).await?;
        }
        let rec = sb.record();
        if proc::is_alive(rec.pause_pid, rec.pause_start) {
            let p = nix::unistd::Pid::from_raw(rec.pause_pid);
            let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
            let _ =
                tokio::time::timeout(Duration::from_secs(10), proc::wait_exit(rec.pause_pid)).await;
        }
        failpoint::hit("sandbox.stopping");
        let ns_dir = self.paths.sandbox_state_dir(&id).join("ns");
        // A pod with addresses always names its driver.
        if !rec.network.is_empty() {
            // Before the namespace goes: CNI plugins and the built-in driver get it by path.
            self.net
                .disconnect(&rec.network, &id, Some(&ns_dir.join("net")))
                .await?;
            record::update(&sb.rec, &self.paths.sandbox_dir(&id), |r| {
                let had = !r.ips.is_empty();
                r.ips.clear();
                had
            })
            .map_err(EngineError::io("saving sandbox record"))?;
        }
        pause::unpin_all(&ns_dir);
        let _ = std::fs::remove_dir(self.paths.sandbox_state_dir(&id));
        if let Some(shm) = &rec.shm {
            unmount(shm);
        }
        let changed = record::update(&sb.rec, &self.paths.sandbox_dir(&id), |r| {
            let changed = r.state != SandboxState::NotReady;
            r.state = SandboxState::NotReady;
            changed
        })
        .map_err(EngineError::io("saving sandbox record"))?;
        // Once per stop: the pause watcher publishes it instead if it saw the exit first.
        if changed.is_some() {
            self.publish_sandbox(ContainerEventKind::Stopped, &sb, false);
        }
        info!("pod sandbox stopped");
        Ok(())
    }

    /// Stops the sandbox if needed, removes its containers, cgroups, files and record.
    /// Removing an unknown sandbox succeeds (CRI: RemovePodSandbox is idempotent).
    #[instrument(skip(self), fields(sandbox_id = %id))]
    pub async fn remove_sandbox(self: &Arc<Self>, id: &str) -> Result<()> {
        let sb = match self.sandbox(id) {
            Ok(sb) => sb,
            Err(EngineError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if sb.record().creating {
            // Left by a crash in RunPodSandbox that start-up could not undo: undo it now.
            let _op = sb.op.lock().await;
            let rec = sb.record();
            let shims = super::sweep::shim_processes(&self.paths.state);
            self.undo_sandbox(&rec.id, Some(&rec), &shims).await?;
            self.sandboxes.remove(&rec.id);
            self.release_name("sandbox", &rec.name);
            info!("unfinished pod sandbox removed");
            return Ok(());
        }
        self.stop_sandbox(id).await?;
        let _op = sb.op.lock().await;
        let rec = sb.record();
        // Stop only disconnected the network: what it left to finish in the background is
        // done before the pod is reported removed.
        self.net.teardown(&rec.network, &rec.id, None).await?;
        for c in self.sandbox_containers(&rec.id) {
            self.remove_container(&c.record().id).await?;
        }
        failpoint::hit("sandbox.removing");
        if let Some(infra) = &rec.infra {
            // Before the sandbox dir goes: its rootfs is mounted there.
            self.remove_infra(&rec, infra).await?;
        }
        // Whatever still runs in the pod's cgroups is a leftover of peapod's (a container a
        // crash made it forget): killed, so that the pod can always be removed.
        self.cgroups.kill_and_remove_tree(&rec.pause_cgroup)?;
        if rec.cgroup.owned {
            self.cgroups.kill_and_remove_tree(&rec.cgroup.path)?;
        }
        if let Some(shm) = &rec.shm {
            unmount(shm);
        }
        // The record goes last: until then a crash leaves a sandbox that recovery knows and a
        // retried RemovePodSandbox finishes.
        let state_dir = self.paths.sandbox_state_dir(&rec.id);
        super::sweep::remove_dir(&state_dir).map_err(EngineError::io("removing sandbox state"))?;
        let dir = self.paths.sandbox_dir(&rec.id);
        super::sweep::unmount_all_under(&dir).map_err(EngineError::io("unmounting"))?;
        std::fs::remove_file(dir.join(record::RECORD_FILE))
            .or_else(ignore_not_found)
            .map_err(EngineError::io("removing the sandbox record"))?;
        std::fs::remove_dir_all(&dir)
            .or_else(ignore_not_found)
            .map_err(EngineError::io(format!("removing {}", dir.display())))?;
        self.sandboxes.remove(&rec.id);
        self.release_name("sandbox", &rec.name);
        self.publish_sandbox(ContainerEventKind::Deleted, &sb, true);
        info!("pod sandbox removed");
        Ok(())
    }

    /// Best-effort undo of a pod's network on a failed RunPodSandbox (the error that made it
    /// fail is the one reported; what this cannot undo, start-up or removal retries).
    pub(super) async fn teardown_network(&self, driver: &str, id: &str, netns: Option<&Path>) {
        if let Err(e) = self.net.teardown(driver, id, netns).await {
            warn!(error = %e, "undoing the pod network");
        }
    }

    /// The sandbox a retried RunPodSandbox asked for: the ready pod of that name, made from the
    /// same config with the same handler. Any other holder of the name is left to
    /// `reserve_name`, which reports it as ALREADY_EXISTS.
    fn retried_sandbox(
        &self,
        name: &str,
        config: &api::PodSandboxConfig,
        handler: &str,
    ) -> Option<String> {
        let owner = self
            .names
            .lock()
            .unwrap()
            .get(&format!("sandbox/{name}"))
            .cloned()?;
        let sb = self.sandboxes.read().get(&owner).cloned()?;
        let rec = sb.record();
        (rec.state == SandboxState::Ready && rec.runtime_handler == handler && sb.config == *config)
            .then_some(owner)
    }

    /// Paths a container of this sandbox joins or mounts.
    pub(super) fn sandbox_view(&self, sb: &Sandbox) -> crate::oci::spec::SandboxView {
        let rec = sb.record();
        let dir = self.paths.sandbox_dir(&rec.id);
        let ns_dir = self.paths.sandbox_state_dir(&rec.id).join("ns");
        let ns = rec.namespaces;
        // The network namespace is pinned; the others are the pause's own (pause.rs PINNED).
        let pinned = |host: bool, kind: &str| (!host).then(|| ns_dir.join(kind));
        let pause = |own: bool, kind: &str| {
            own.then(|| PathBuf::from(format!("/proc/{}/ns/{kind}", rec.pause_pid)))
        };
        let linux = sb.config.linux.as_ref();
        crate::oci::spec::SandboxView {
            id: rec.id.clone(),
            hostname: rec.hostname.clone(),
            net_ns: pinned(ns.host_network, "net"),
            ipc_ns: pause(!ns.host_ipc, "ipc"),
            uts_ns: pause(!ns.host_network, "uts"),
            pid_ns: pause(ns.pod_pid, "pid"),
            hostname_file: Some(dir.join("hostname")),
            hosts_file: Some(dir.join("hosts")),
            resolv_conf: Some(dir.join("resolv.conf")),
            shm: rec.shm.clone().or_else(|| Some(PathBuf::from("/dev/shm"))),
            sysctls: linux
                .map(|l| l.sysctls.clone().into_iter().collect())
                .unwrap_or_default(),
            privileged: linux
                .and_then(|l| l.security_context.as_ref())
                .is_some_and(|s| s.privileged),
        }
    }
}

pub(super) fn ignore_not_found(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// Unmounts a mount peapod made; not mounted is fine.
pub(super) fn unmount(p: &Path) {
    match nix::mount::umount2(p, MntFlags::empty()) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(nix::Error::EBUSY) => {
            let _ = nix::mount::umount2(p, MntFlags::MNT_DETACH);
        }
        Err(e) => warn!(path = %p.display(), error = %e, "unmount"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ns: Option<api::NamespaceOption>) -> api::PodSandboxConfig {
        api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: "web".into(),
                uid: "u1".into(),
                namespace: "default".into(),
                attempt: 2,
            }),
            linux: Some(api::LinuxPodSandboxConfig {
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: ns,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn names_and_namespaces() {
        let c = cfg(None);
        assert_eq!(
            sandbox_name(c.metadata.as_ref().unwrap()),
            "web_default_u1_2"
        );
        let ns = namespaces_of(&c);
        assert!(ns.pod_pid && !ns.host_network && !ns.host_ipc && !ns.host_pid);
        let c = cfg(Some(api::NamespaceOption {
            network: NamespaceMode::Node as i32,
            pid: NamespaceMode::Container as i32,
            ipc: NamespaceMode::Pod as i32,
            ..Default::default()
        }));
        let ns = namespaces_of(&c);
        assert!(ns.host_network && !ns.host_ipc && !ns.pod_pid && !ns.host_pid);
        let c = cfg(Some(api::NamespaceOption {
            pid: NamespaceMode::Pod as i32,
            ..Default::default()
        }));
        assert!(namespaces_of(&c).pod_pid);
    }

    #[test]
    fn validation_names_fields() {
        let mut c = cfg(None);
        c.metadata.as_mut().unwrap().name.clear();
        let e = validate(&c).unwrap_err().to_string();
        assert!(e.contains("config.metadata.name"), "{e}");
        let mut c = cfg(None);
        c.dns_config = Some(api::DnsConfig {
            servers: vec!["1.1.1.1\nnameserver 6.6.6.6".into()],
            ..Default::default()
        });
        assert!(validate(&c).unwrap_err().to_string().contains("dns_config"));
        let mut c = cfg(None);
        c.log_directory = "var/log/pods".into();
        assert!(validate(&c)
            .unwrap_err()
            .to_string()
            .contains("log_directory"));
    }

    #[test]
    fn resolv_conf_from_dns_config() {
        let r = resolv_conf(Some(&api::DnsConfig {
            servers: vec!["10.0.0.10".into()],
            searches: vec!["ns.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }))
        .unwrap();
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.0.0.10\noptions ndots:5\n"
        );
    }
}
