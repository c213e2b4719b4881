//! The pod engine both front doors share: sandboxes (a pause process holding the pod's
//! namespaces, a pod cgroup) and containers (an OCI bundle run by a runtime handler under a
//! per-container monitor), with their records persisted so a daemon restart loses nothing.

pub mod attach;
pub mod container;
pub mod error;
pub mod events;
pub mod exec;
pub mod failpoint;
pub mod infra;
pub mod monitor;
pub mod network;
pub mod pause;
pub mod portforward;
pub mod proc;
pub mod record;
pub mod recover;
pub mod sandbox;
pub mod stats;
pub mod sweep;
pub mod table;
pub mod undo;
pub mod update;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::api;
use crate::cgroups::Cgroups;
use crate::config::Config;
use crate::image::ImageStore;
use crate::oci::runtime::Runtimes;
use crate::oci::spec::HostLimits;
pub use error::{EngineError, Result};
pub use record::{ContainerRecord, ContainerState, SandboxRecord, SandboxState};

/// A pod sandbox: its CRI config (immutable) and its record (changes under the lock).
pub struct Sandbox {
    pub config: api::PodSandboxConfig,
    rec: Mutex<SandboxRecord>,
    /// Serialises lifecycle operations (stop, remove) on this sandbox.
    op: tokio::sync::Mutex<()>,
}

impl Sandbox {
    pub fn record(&self) -> SandboxRecord {
        self.rec.lock().unwrap().clone()
    }
    pub fn id(&self) -> String {
        self.rec.lock().unwrap().id.clone()
    }
}

/// A container: its CRI config (immutable) and its record, plus an exit signal for waiters.
pub struct Container {
    pub config: api::ContainerConfig,
    rec: Mutex<ContainerRecord>,
    /// Becomes true when the monitor reports the exit; StopContainer waits on it.
    exited: tokio::sync::watch::Sender<bool>,
    op: tokio::sync::Mutex<()>,
    /// Resources set by UpdateContainerResources since creation (persisted beside the
    /// record as `resources.pb`); None: those of the config.
    resources: Mutex<Option<api::LinuxContainerResources>>,
}

impl Container {
    pub fn record(&self) -> ContainerRecord {
        self.rec.lock().unwrap().clone()
    }

    /// The container's resources as they are now: the last update, else the config's.
    pub fn resources(&self) -> Option<api::LinuxContainerResources> {
        self.resources
            .lock()
            .unwrap()
            .clone()
            .or_else(|| self.config.linux.as_ref().and_then(|l| l.resources.clone()))
    }
}

/// The engine's directories. Persistent records live under the root dir; namespaces, bundles
/// and exit files under the state dir, which a reboot wipes along with every process.
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
    pub state: PathBuf,
}

impl Paths {
    pub fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.root.join("sandboxes").join(id)
    }
    pub fn sandbox_state_dir(&self, id: &str) -> PathBuf {
        self.state.join("sandboxes").join(id)
    }
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }
    /// The OCI bundle: config.json, init.pid, the runtime log and the monitor's exit file.
    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.state.join("containers").join(id)
    }
}

/// What [`Engine::counts`] finds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub sandboxes_ready: i64,
    pub sandboxes_not_ready: i64,
    pub containers_created: i64,
    pub containers_running: i64,
    pub containers_exited: i64,
    pub containers_unknown: i64,
    pub monitors: i64,
}

/// Oldest first: by creation time, then ID.
fn sort_by_creation(v: &mut [(Arc<Container>, ContainerRecord)]) {
    v.sort_by(|a, b| (a.1.created_at, &a.1.id).cmp(&(b.1.created_at, &b.1.id)));
}

pub struct Engine {
    pub cfg: Arc<Config>,
    pub paths: Paths,
    pub cgroups: Cgroups,
    pub runtimes: Runtimes,
    pub images: Arc<ImageStore>,
    shim: PathBuf,
    host: HostLimits,
    sandboxes: table::Table<Sandbox>,
    containers: table::Table<Container>,
    /// Reserved names (sandbox and container names share one map, with a kind prefix).
    names: Mutex<HashMap<String, String>>,
    events: events::Events,
    /// The pod network's driver.
    pub net: network::PodNetworks,
    /// The previous CPU sample of each container and pod, for the stats RPCs' CPU rate.
    cpu_rates: stats::CpuRates,
}

impl Engine {
    /// Builds the engine from its config and recovers every sandbox and container on disk.
    pub async fn new(cfg: Config) -> Result<Arc<Self>> {
        let cgroups = Cgroups::detect(cfg.cgroup_driver, &cfg.cgroup_parent)?;
        let runtimes = Runtimes::from_config(&cfg, cgroups.unified)?;
        let paths = Paths {
            root: cfg.root_dir.clone(),
            state: cfg.state_dir.clone(),
        };
        for d in [
            paths.root.join("sandboxes"),
            paths.root.join("containers"),
            paths.state.join("sandboxes"),
            paths.state.join("containers"),
        ] {
            std::fs::create_dir_all(&d)
                .map_err(EngineError::io(format!("creating {}", d.display())))?;
        }
        let images = Arc::new(ImageStore::open(&paths.root.join("images"))?);
        let net = network::PodNetworks::start(&cfg.network, &paths.root).await;
        let engine = Arc::new(Engine {
            net,
            shim: cfg.shim(),
            host: host_limits(cfg.pids_limit),
            events: events::Events::new(cfg.event_buffer),
            cfg: Arc::new(cfg),
            paths,
            cgroups,
            runtimes,
            images,
            sandboxes: table::Table::default(),
            containers: table::Table::default(),
            names: Mutex::new(HashMap::new()),
            cpu_rates: stats::CpuRates::default(),
        });
        // Before anyone can subscribe to events: recovery reconciles, it does not report.
        let started = std::time::Instant::now();
        recover::recover(&engine).await;
        let m = crate::metrics::global();
        m.recovery_duration.set(started.elapsed().as_secs_f64());
        let found = engine.counts();
        crate::metrics::Metrics::set_states(
            &m.recovered,
            &[
                ("sandbox", found.sandboxes_ready + found.sandboxes_not_ready),
                (
                    "container",
                    found.containers_created
                        + found.containers_running
                        + found.containers_exited
                        + found.containers_unknown,
                ),
            ],
        );
        Ok(engine)
    }

    pub fn shim(&self) -> &std::path::Path {
        &self.shim
    }

    fn reserve_name(&self, kind: &'static str, name: &str, id: &str) -> Result<()> {
        let key = format!("{kind}/{name}");
        let mut names = self.names.lock().unwrap();
        if let Some(owner) = names.get(&key) {
            return Err(EngineError::AlreadyExists {
                kind,
                name: name.to_string(),
                id: owner.clone(),
            });
        }
        names.insert(key, id.to_string());
        Ok(())
    }

    fn release_name(&self, kind: &'static str, name: &str) {
        self.names.lock().unwrap().remove(&format!("{kind}/{name}"));
    }

    /// Finds a sandbox by full ID or unique ID prefix (crictl shows truncated IDs).
    pub fn sandbox(&self, id: &str) -> Result<Arc<Sandbox>> {
        find(&self.sandboxes.read(), id).ok_or_else(|| EngineError::NotFound {
            kind: "pod sandbox",
            id: id.to_string(),
        })
    }

    pub fn container(&self, id: &str) -> Result<Arc<Container>> {
        find(&self.containers.read(), id).ok_or_else(|| EngineError::NotFound {
            kind: "container",
            id: id.to_string(),
        })
    }

    pub fn sandboxes(&self) -> Vec<Arc<Sandbox>> {
        self.sandboxes.read().values().cloned().collect()
    }

    pub fn containers(&self) -> Vec<Arc<Container>> {
        self.containers.read().values().cloned().collect()
    }

    /// What `f` makes of each sandbox and its record as they are now, None left out, in the
    /// map's order. The record is lent under its lock rather than copied: listing every pod
    /// on each call of a poller (kubelet's relist) must not copy every record.
    pub fn map_sandboxes<T>(
        &self,
        mut f: impl FnMut(&Sandbox, &SandboxRecord) -> Option<T>,
    ) -> Vec<T> {
        let map = self.sandboxes.read();
        let mut out = Vec::with_capacity(map.len());
        for sb in map.values() {
            if let Some(v) = f(sb, &sb.rec.lock().unwrap()) {
                out.push(v);
            }
        }
        out
    }

    /// As [`map_sandboxes`](Self::map_sandboxes), for containers.
    pub fn map_containers<T>(
        &self,
        mut f: impl FnMut(&Container, &ContainerRecord) -> Option<T>,
    ) -> Vec<T> {
        let map = self.containers.read();
        let mut out = Vec::with_capacity(map.len());
        for c in map.values() {
            if let Some(v) = f(c, &c.rec.lock().unwrap()) {
                out.push(v);
            }
        }
        out
    }

    /// How many sandboxes and containers are in each state, and how many monitors live: the
    /// gauges of the metrics endpoint.
    pub fn counts(&self) -> Counts {
        let alive = |pid: i32| {
            pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        };
        let mut c = Counts::default();
        self.map_sandboxes(|_, r| {
            match r.state {
                SandboxState::Ready => c.sandboxes_ready += 1,
                SandboxState::NotReady => c.sandboxes_not_ready += 1,
            }
            if r.infra.as_ref().is_some_and(|i| alive(i.monitor_pid)) {
                c.monitors += 1;
            }
            None::<()>
        });
        self.map_containers(|_, r| {
            match r.state() {
                ContainerState::Created => c.containers_created += 1,
                ContainerState::Running => c.containers_running += 1,
                ContainerState::Exited => c.containers_exited += 1,
                ContainerState::Unknown => c.containers_unknown += 1,
            }
            // A monitor outlives its container's exit only briefly; count only live ones.
            if matches!(r.state(), ContainerState::Created | ContainerState::Running)
                && alive(r.monitor_pid)
            {
                c.monitors += 1;
            }
            None::<()>
        });
        c
    }

    /// Layers some container still uses (its rootfs lowers), to keep from garbage collection.
    pub fn layers_in_use(&self) -> std::collections::HashSet<String> {
        let mut used: std::collections::HashSet<String> = self
            .containers
            .read()
            .values()
            .flat_map(|c| c.rec.lock().unwrap().image_chain_ids.clone())
            .collect();
        // Image-based sandboxes' infra containers use their image's layers too.
        for sb in self.sandboxes.read().values() {
            if let Some(infra) = &sb.rec.lock().unwrap().infra {
                used.extend(infra.image_chain_ids.iter().cloned());
            }
        }
        used
    }

    /// The containers of sandbox `sandbox_id` with their records as they are now, oldest
    /// first (by creation time, then ID).
    pub fn pod_containers(&self, sandbox_id: &str) -> Vec<(Arc<Container>, ContainerRecord)> {
        let mut v: Vec<_> = self
            .sandbox_containers(sandbox_id)
            .into_iter()
            .map(|c| {
                let r = c.record();
                (c, r)
            })
            .collect();
        sort_by_creation(&mut v);
        v
    }

    fn sandbox_containers(&self, sandbox_id: &str) -> Vec<Arc<Container>> {
        self.containers
            .read()
            .values()
            .filter(|c| c.rec.lock().unwrap().sandbox_id == sandbox_id)
            .cloned()
            .collect()
    }
}

fn find<T>(map: &HashMap<String, Arc<T>>, id: &str) -> Option<Arc<T>> {
    if id.is_empty() {
        return None;
    }
    if let Some(v) = map.get(id) {
        return Some(v.clone());
    }
    let mut hits = map.iter().filter(|(k, _)| k.starts_with(id));
    match (hits.next(), hits.next()) {
        (Some((_, v)), None) => Some(v.clone()),
        _ => None,
    }
}

/// What this host lets containers have: without CAP_SYS_RESOURCE, root can neither lower
/// oom_score_adj below its own nor raise an rlimit past its hard limit, so requests are clamped
/// to these (containerd's restrict_oom_score_adj) instead of failing in the runtime.
fn host_limits(pids_limit: i64) -> HostLimits {
    let privileged = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false);
    let own_oom = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let nofile_hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, hard)| hard)
        .unwrap_or(1024);
    HostLimits {
        min_oom_score_adj: if privileged { -1000 } else { own_oom },
        nofile_hard: if privileged {
            nofile_hard.max(1_048_576)
        } else {
            nofile_hard
        },
        pids_limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_by_unique_prefix() {
        let mut m = HashMap::new();
        m.insert("abc123".to_string(), Arc::new(1));
        m.insert("abd456".to_string(), Arc::new(2));
        assert_eq!(*find(&m, "abc123").unwrap(), 1);
        assert_eq!(*find(&m, "abd").unwrap(), 2);
        assert!(find(&m, "ab").is_none(), "ambiguous prefix");
        assert!(find(&m, "").is_none());
        assert!(find(&m, "zz").is_none());
    }
}
