//! The manifest door: standalone static pods. A small kubelet over the same pod engine as the
//! CRI door, speaking to it in-process in the CRI vocabulary.
//!
//! ```text
//!  manifest dir ──inotify + resync──▶ manager (source.rs): desired pods by namespace/name
//!        │                                  │ one worker per pod UID
//!        ▼                                  ▼
//!  manifest::scan (parse, validate)   worker.rs: observe → kubelet::compute_pod_actions
//!                                      → execute.rs (engine: RunPodSandbox, CreateContainer…)
//!                                      → kubelet::status::pod_status → the store
//!  local API (api.rs) ◀── the store: v1 Pods with status, manifest errors
//! ```
//!
//! Identity is namespace/name; the UID is derived from the manifest's content, so an edited
//! pod is a new UID: the old worker tears its pod down gracefully before the new one starts
//! (kubernetes#109596). The engine knows each pod's UID from its sandbox's metadata, so a
//! restarted daemon's workers find the pods they ran and adopt them as they are.

pub mod api;
pub mod events;
mod execute;
mod logs;
pub mod manifests;
mod metrics;
mod observe;
mod orphans;
pub mod prober;
mod remote_exec;
mod source;
mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::kubelet::clock::{Clock, RealClock};
use crate::manifest::ObjectKey;
use crate::pod::Engine;
use crate::podspec::NodeResources;

pub use execute::default_pull_policy;

/// The ConfigMaps and Secrets of the manifest directory.
#[derive(Default)]
pub struct Objects {
    pub config_maps: BTreeMap<ObjectKey, ConfigMap>,
    pub secrets: BTreeMap<ObjectKey, Secret>,
}

/// What every worker shares.
pub struct Shared {
    pub engine: Arc<Engine>,
    pub clock: Box<dyn Clock>,
    pub node_name: String,
    pub host_ips: Vec<String>,
    pub allocatable: NodeResources,
    /// Per-pod directories (volumes, termination logs): `<root>/static-pods/<uid>`.
    pub pods_dir: PathBuf,
    /// Container logs: `<log_root>/<ns>_<name>_<uid>/<container>/<n>.log`, as kubelet.
    pub log_root: PathBuf,
    /// The watched manifest directory, which `peapod apply` and `delete` edit.
    pub manifest_dir: PathBuf,
    store: RwLock<Store>,
    events: std::sync::Mutex<events::EventLog>,
}

#[derive(Default)]
struct Store {
    /// The pods as last published, with their status.
    pods: BTreeMap<ObjectKey, (String, Pod)>,
    /// Manifest errors of the last scan, one line each (file, document, field, reason).
    errors: Vec<String>,
}

impl Shared {
    fn publish(&self, key: &ObjectKey, uid: &str, pod: Pod) {
        let mut s = self.store.write().unwrap();
        // A newer pod of the same name (an edited manifest) is not replaced by the old one
        // still shutting down; it shows once the old one is gone.
        match s.pods.get(key) {
            Some((u, _)) if u != uid && pod.metadata.deletion_timestamp.is_some() => {}
            _ => {
                s.pods.insert(key.clone(), (uid.to_string(), pod));
            }
        }
    }

    fn unpublish(&self, key: &ObjectKey, uid: &str) {
        let mut s = self.store.write().unwrap();
        if s.pods.get(key).is_some_and(|(u, _)| u == uid) {
            s.pods.remove(key);
        }
    }

    /// Every pod, sorted by namespace and name.
    pub fn pods(&self) -> Vec<Pod> {
        let s = self.store.read().unwrap();
        s.pods.values().map(|(_, p)| p.clone()).collect()
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        let s = self.store.read().unwrap();
        s.pods
            .get(&ObjectKey::new(namespace, name))
            .map(|(_, p)| p.clone())
    }

    /// Records an event about `pod` (or one of its containers, by `container`).
    pub fn event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        kind: events::EventType,
        reason: &str,
        message: String,
    ) {
        let ev = events::NewEvent {
            pod,
            field_path: container.map(|c| events::container_field_path(pod, c)),
            kind,
            reason,
            message,
        };
        let now = Time(self.clock.now().wall);
        self.events.lock().unwrap().record(ev, &self.node_name, now);
    }

    /// The events of `namespace` (all when `None`), of the pod `name` only when given.
    pub fn events(&self, namespace: Option<&str>, name: Option<&str>) -> Vec<Event> {
        self.events.lock().unwrap().list(namespace, name)
    }

    pub fn manifest_errors(&self) -> Vec<String> {
        self.store.read().unwrap().errors.clone()
    }
}

/// Where the static pods come from and live.
#[derive(Debug, Clone)]
pub struct StaticPodsConfig {
    pub manifest_dir: PathBuf,
    pub pods_dir: PathBuf,
    pub log_root: PathBuf,
    pub node_name: String,
}

/// Starts the manager: watches the manifest directory and runs a worker per pod.
pub fn start(engine: Arc<Engine>, cfg: StaticPodsConfig) -> Arc<Shared> {
    let shared = Arc::new(Shared {
        engine,
        clock: Box::new(RealClock::new()),
        node_name: cfg.node_name.clone(),
        host_ips: host_ips(),
        allocatable: node_resources(),
        pods_dir: cfg.pods_dir.clone(),
        log_root: cfg.log_root.clone(),
        manifest_dir: cfg.manifest_dir.clone(),
        store: RwLock::new(Store::default()),
        events: Default::default(),
    });
    tokio::spawn(source::run(shared.clone(), cfg.manifest_dir));
    shared
}

/// The node's address, as kubelet reports it in status.hostIP and the downward API: the source
/// address the kernel picks for a route out of the node. A UDP connect only chooses the route;
/// nothing is sent. None on a node with no route out (an empty list, as kubelet without one).
fn host_ips() -> Vec<String> {
    let probe = |bind: &str, to: &str| {
        let s = std::net::UdpSocket::bind(bind).ok()?;
        s.connect(to).ok()?;
        let ip = s.local_addr().ok()?.ip();
        (!ip.is_unspecified() && !ip.is_loopback()).then(|| ip.to_string())
    };
    // Documentation addresses (RFC 5737, RFC 3849): never a real peer.
    [
        probe("0.0.0.0:0", "192.0.2.1:9"),
        probe("[::]:0", "[2001:db8::1]:9"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The node's CPUs and memory, for admission and resourceFieldRef defaults.
fn node_resources() -> NodeResources {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    NodeResources {
        cpu_millis: cpus * 1000,
        memory_bytes: mem,
    }
}
