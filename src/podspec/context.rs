//! What the translation needs to know besides the Pod: the node, the pod's runtime facts and
//! the host paths. The caller gathers it (reads resolv.conf, looks up ConfigMaps, learns pod
//! IPs from the sandbox status); the functions of this module only read it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};

/// CPU and memory of the node, as kubelet's node status reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeResources {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

/// How cgroup parents are spelled, as kubelet's `--cgroup-driver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupDriver {
    /// `/kubepods/burstable/pod<uid>`.
    #[default]
    Cgroupfs,
    /// `kubepods-burstable-pod<uid with _>.slice`.
    Systemd,
}

/// Host paths, kubelet's layout under roots the caller picks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Root of the pod log directories (kubelet: `/var/log/pods`).
    pub log_root: PathBuf,
    /// The pod's own directory (kubelet: `/var/lib/kubelet/pods/<uid>`); volumes live under
    /// `volumes/<plugin>/<name>`, termination-log files under `containers/<name>/`.
    pub pod_dir: PathBuf,
    /// Root of Localhost seccomp profiles (kubelet: `/var/lib/kubelet/seccomp`).
    pub seccomp_root: PathBuf,
    /// The pod's managed hosts file, bound at `/etc/hosts` unless a volume mount takes that
    /// path (kubelet's `makeMounts`); None leaves `/etc/hosts` to the engine.
    pub etc_hosts: Option<PathBuf>,
}

/// Everything besides the Pod that the translation reads.
#[derive(Debug, Clone)]
pub struct Context {
    pub node_name: String,
    /// The node's addresses, the first being `status.hostIP`.
    pub host_ips: Vec<String>,
    /// The pod's addresses once the sandbox has them (`status.podIP`, `status.podIPs`).
    pub pod_ips: Vec<String>,
    /// The restart count of the container being made (its CRI attempt).
    pub restart_count: u32,
    /// ConfigMaps of the pod's namespace, by name.
    pub config_maps: BTreeMap<String, ConfigMap>,
    /// Secrets of the pod's namespace, by name.
    pub secrets: BTreeMap<String, Secret>,
    /// What the node offers pods (kubelet's allocatable): the default of an unset limit for
    /// the downward API, and the admission budget.
    pub allocatable: NodeResources,
    /// The machine's memory, for the Burstable oom_score_adj formula.
    pub memory_capacity: i64,
    /// The node's resolv.conf contents; None is kubelet's `--resolv-conf=""` (DNS lookups
    /// pointed at the local host).
    pub resolv_conf: Option<String>,
    /// kubelet's `--cluster-dns`; empty on a node without cluster DNS (ClusterFirst then
    /// falls back to Default).
    pub cluster_dns: Vec<String>,
    /// kubelet's `--cluster-domain` (empty: none).
    pub cluster_domain: String,
    /// kubelet's `seccompDefault`: RuntimeDefault instead of Unconfined when a pod names none.
    pub seccomp_default: bool,
    /// cgroup v2 with `singleProcessOOMKill` off: ask for `memory.oom.group`, kubelet's
    /// default on cgroup v2.
    pub oom_group: bool,
    /// Huge page sizes the host has (`2MB`, `1GB`), each limited to 0 unless requested.
    pub hugepage_sizes: Vec<String>,
    /// Root of the pod cgroups (kubelet: `kubepods`).
    pub cgroup_root: String,
    pub cgroup_driver: CgroupDriver,
    pub paths: Paths,
}

impl Default for Context {
    fn default() -> Self {
        Context {
            node_name: String::new(),
            host_ips: Vec::new(),
            pod_ips: Vec::new(),
            restart_count: 0,
            config_maps: BTreeMap::new(),
            secrets: BTreeMap::new(),
            allocatable: NodeResources {
                cpu_millis: 0,
                memory_bytes: 0,
            },
            memory_capacity: 0,
            resolv_conf: Some(String::new()),
            cluster_dns: Vec::new(),
            cluster_domain: String::new(),
            seccomp_default: false,
            oom_group: false,
            hugepage_sizes: Vec::new(),
            cgroup_root: "kubepods".into(),
            cgroup_driver: CgroupDriver::Cgroupfs,
            paths: Paths {
                log_root: PathBuf::from("/var/log/pods"),
                pod_dir: PathBuf::new(),
                seccomp_root: PathBuf::from("/var/lib/kubelet/seccomp"),
                etc_hosts: None,
            },
        }
    }
}
