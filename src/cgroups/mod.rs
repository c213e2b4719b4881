//! Pod and container cgroups over libcgroups, for cgroup v1 (and hybrid) and v2.
//!
//! Layout, as containerd's: the pod cgroup is kubelet's `cgroup_parent` when given (kubelet owns
//! it) or `<config.cgroup_parent>/<sandbox id>` (peapod owns it). The pause goes in the leaf
//! `<pod>/<sandbox id>`, each container in `<pod>/<container id>` made by the OCI runtime.
//! With the systemd driver the paths are `slice:peapod:<id>` and systemd makes the units.
//!
//! peapod only ever removes directories it created or that the OCI runtime created for it, and
//! only with rmdir, which the kernel refuses while a process is inside.
//!
//! `stats.rs` reads a cgroup's usage counters for the CRI stats RPCs.

mod stats;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libcgroups::common::{CgroupConfig, CgroupManager, CgroupSetup};

use crate::config::CgroupDriver;
pub use stats::{CgroupStats, CpuStat, MemoryStat, PidsStat};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("detecting the cgroup layout: {0}")]
    Detect(String),
    #[error("cgroup {path}: {reason}")]
    Manager { path: String, reason: String },
    #[error("removing cgroup {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cgroup {path} still holds processes after SIGKILL: {procs}")]
    Busy { path: String, procs: String },
}

/// The pod cgroup chosen for a sandbox, and whether peapod made it (and so must remove it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodCgroup {
    pub path: String,
    pub owned: bool,
}

#[derive(Debug, Clone)]
pub struct Cgroups {
    pub driver: CgroupDriver,
    pub unified: bool,
    default_parent: String,
    root: PathBuf,
    /// The v1 hierarchies (one mount per controller set), read once at start-up.
    v1_mounts: Vec<PathBuf>,
    /// Every cgroup mount under `root` (v1 hierarchies, the unified one), read once at
    /// start-up: they do not move while the daemon runs, and mountinfo grows with the pods
    /// (five lines each), so reading it on each removal made teardown slower at scale.
    hierarchies: Vec<PathBuf>,
    /// The v1 hierarchy of each controller (`memory` → /sys/fs/cgroup/memory).
    v1_controllers: std::collections::HashMap<String, PathBuf>,
}

impl Cgroups {
    pub fn detect(driver: CgroupDriver, default_parent: &str) -> Result<Self, CgroupError> {
        let setup = libcgroups::common::get_cgroup_setup()
            .map_err(|e| CgroupError::Detect(e.to_string()))?;
        let unified = matches!(setup, CgroupSetup::Unified);
        let root = PathBuf::from("/sys/fs/cgroup");
        let hierarchies = hierarchy_mounts(&root);
        let v1_mounts = if unified {
            Vec::new()
        } else {
            hierarchies
                .iter()
                .filter(|m| m.parent() == Some(root.as_path()))
                .cloned()
                .collect()
        };
        let v1_controllers = if unified {
            Default::default()
        } else {
            let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            stats::v1_controller_mounts(&info, &root)
        };
        Ok(Cgroups {
            driver,
            unified,
            default_parent: default_parent.to_string(),
            root,
            v1_mounts,
            hierarchies,
            v1_controllers,
        })
    }

    /// "v1" or "v2", for logs and Status.
    pub fn version(&self) -> &'static str {
        if self.unified {
            "v2"
        } else {
            "v1"
        }
    }

    pub fn pod_cgroup(&self, requested: &str, sandbox_id: &str) -> PodCgroup {
        if !requested.is_empty() {
            return PodCgroup {
                path: requested.to_string(),
                owned: false,
            };
        }
        let path = match self.driver {
            CgroupDriver::Cgroupfs => {
                format!("{}/{sandbox_id}", self.default_parent.trim_end_matches('/'))
            }
            // A slice cannot be made without systemd; pods share the configured slice.
            CgroupDriver::Systemd => self.default_parent.clone(),
        };
        PodCgroup {
            path,
            owned: self.driver == CgroupDriver::Cgroupfs,
        }
    }

    /// The `linux.cgroupsPath` of a container (or the pause leaf) in `pod`.
    pub fn child_path(&self, pod: &str, id: &str) -> String {
        match self.driver {
            CgroupDriver::Cgroupfs => format!("{}/{id}", pod.trim_end_matches('/')),
            CgroupDriver::Systemd => format!("{pod}:peapod:{id}"),
        }
    }

    /// Creates the pause leaf and moves `pid` into it, through libcgroups' manager: for the
    /// systemd driver, which makes the unit. With cgroupfs the pause starts in its cgroup
    /// instead ([`Cgroups::open_join`]).
    pub fn place(&self, cgroup_path: &str, pid: i32) -> Result<(), CgroupError> {
        let err = |reason: String| CgroupError::Manager {
            path: cgroup_path.to_string(),
            reason,
        };
        let mgr = libcgroups::common::create_cgroup_manager(CgroupConfig {
            cgroup_path: PathBuf::from(cgroup_path),
            systemd_cgroup: self.driver == CgroupDriver::Systemd,
            container_name: String::new(),
        })
        .map_err(|e| err(e.to_string()))?;
        mgr.add_task(nix::unistd::Pid::from_raw(pid))
            .map_err(|e| err(e.to_string()))
    }

    /// For a new process to be in `cgroup_path` from its first instruction, with the cgroupfs
    /// driver: the cgroup made in every hierarchy and opened (close-on-exec) for the child to
    /// join (see [`Join`]). Moving a process the usual way, the daemon writing its PID to
    /// `cgroup.procs`, takes the global threadgroup lock, whose RCU grace period cost a
    /// millisecond or more per hierarchy. None where [`Cgroups::place`] is the way (systemd).
    pub fn open_join(&self, cgroup_path: &str) -> Option<Result<Join, CgroupError>> {
        if self.driver != CgroupDriver::Cgroupfs {
            return None;
        }
        let rel = cgroup_path.trim_start_matches('/');
        let res = if self.unified {
            self.make_v2(rel).and_then(|dir| {
                Ok(Join {
                    tasks: Vec::new(),
                    into: Some(open_v2_leaf(&dir)?),
                })
            })
        } else {
            // The hierarchies do not move: joined from the list read at start-up (libcgroups'
            // v1 manager re-read mountinfo for each of its twelve controllers on every call).
            let mut join = Join::default();
            self.v1_mounts
                .iter()
                .try_for_each(|mount| self.open_v1(mount, rel, &mut join))
                .map(|()| join)
        };
        Some(res.map_err(|e| CgroupError::Manager {
            path: cgroup_path.to_string(),
            reason: e.to_string(),
        }))
    }

    fn open_v1(&self, mount: &Path, rel: &str, join: &mut Join) -> std::io::Result<()> {
        let dir = mount.join(rel);
        std::fs::create_dir_all(&dir)?;
        if mount.ends_with("cpuset") {
            inherit_cpuset(mount, rel)?;
        }
        let tasks = dir.join("tasks");
        if tasks.exists() {
            let f = std::fs::OpenOptions::new().write(true).open(tasks)?;
            join.tasks.push(f.into());
        } else {
            // A hybrid host's cgroup2 mount: no `tasks` there.
            join.into = Some(open_v2_leaf(&dir)?);
        }
        Ok(())
    }

    /// The cgroup v2 path made as libcgroups' manager makes it before adding a task: every
    /// available controller enabled in the root and each directory above the leaf.
    fn make_v2(&self, rel: &str) -> std::io::Result<PathBuf> {
        let leaf = self.root.join(rel);
        if leaf.is_dir() {
            return Ok(leaf);
        }
        let controllers = std::fs::read_to_string(self.root.join("cgroup.controllers"))?;
        let enable = |dir: &Path| {
            for c in controllers.split_whitespace() {
                // Best effort, as libcgroups does: a limit needing a controller that could
                // not be enabled fails when it is applied.
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
            }
        };
        let mut dir = self.root.clone();
        enable(&dir);
        let mut parts = Path::new(rel).components().peekable();
        while let Some(part) = parts.next() {
            dir.push(part);
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            if parts.peek().is_some() {
                enable(&dir);
            }
        }
        Ok(dir)
    }

    /// Removes the cgroup directory `path` (a cgroupfs path) and everything below it in every
    /// mounted hierarchy, deepest first. Only rmdir: a cgroup with a live process stays, and the
    /// error says so. Missing directories are fine, so this is idempotent.
    pub fn remove_tree(&self, path: &str) -> Result<(), CgroupError> {
        if self.driver == CgroupDriver::Systemd || path.trim_matches('/').is_empty() {
            return Ok(());
        }
        for mount in &self.hierarchies {
            let dir = mount.join(path.trim_start_matches('/'));
            if dir.is_dir() {
                rmdir_tree(&dir)?;
            }
        }
        Ok(())
    }

    /// Kills every process in the cgroup `path` and below (cgroup.kill on v2, SIGKILL of each
    /// member on v1), then removes it as [`remove_tree`](Self::remove_tree) does, retrying
    /// while the kernel still tears the processes down. Only for cgroups peapod owns (a pod's,
    /// the pause's leaf, a container's): whatever is left in one is a leftover of peapod's own,
    /// and leaving it would make the removal fail forever. Bounded: after `KILL_WAIT` the error
    /// names what is still there.
    pub fn kill_and_remove_tree(&self, path: &str) -> Result<(), CgroupError> {
        if self.driver == CgroupDriver::Systemd || path.trim_matches('/').is_empty() {
            return Ok(());
        }
        const KILL_WAIT: Duration = Duration::from_secs(5);
        let deadline = std::time::Instant::now() + KILL_WAIT;
        loop {
            let mut members = Vec::new();
            for mount in &self.hierarchies {
                let dir = mount.join(path.trim_start_matches('/'));
                if !dir.is_dir() {
                    continue;
                }
                // v2 (5.14+) kills the whole subtree at once; the members are still listed
                // until they are gone, and on v1 they get SIGKILL one by one below.
                let _ = std::fs::write(dir.join("cgroup.kill"), "1");
                collect_procs(&dir, &mut members);
            }
            members.sort_unstable();
            members.dedup();
            for pid in &members {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            if members.is_empty() || std::time::Instant::now() >= deadline {
                match self.remove_tree(path) {
                    Ok(()) => return Ok(()),
                    Err(e) if members.is_empty() && std::time::Instant::now() < deadline => {
                        // A task that just died may hold the directory a moment longer.
                        tracing::debug!(error = %e, "cgroup not yet removable");
                    }
                    Err(e) if members.is_empty() => return Err(e),
                    Err(_) => {
                        return Err(CgroupError::Busy {
                            path: path.to_string(),
                            procs: describe_procs(&members),
                        })
                    }
                }
            } else if !members.is_empty() {
                tracing::debug!(
                    cgroup = path,
                    n = members.len(),
                    "killing leftover processes"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Removes the cgroup directory `path` in every hierarchy if it is empty (no child, no
    /// process), leaving it otherwise: for shared parents such as kubelet's QoS tiers, which
    /// another pod may be creating a child in at this moment.
    pub fn remove_if_empty(&self, path: &str) {
        if self.driver == CgroupDriver::Systemd || path.trim_matches('/').is_empty() {
            return;
        }
        for mount in &self.hierarchies {
            let _ = std::fs::remove_dir(mount.join(path.trim_start_matches('/')));
        }
    }

    /// The sub-cgroups directly below `path` (a cgroupfs path) in any hierarchy, by name.
    pub fn children(&self, path: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .hierarchies
            .iter()
            .filter_map(|m| std::fs::read_dir(m.join(path.trim_start_matches('/'))).ok())
            .flat_map(|it| {
                it.flatten()
                    .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The default parent of pod cgroups peapod owns.
    pub fn default_parent(&self) -> &str {
        &self.default_parent
    }

    /// True when the memory controller counted an OOM kill in the cgroup at `path`.
    pub fn oom_killed(&self, path: &str) -> bool {
        let rel = path.trim_start_matches('/');
        let (file, key) = if self.unified {
            (self.root.join(rel).join("memory.events"), "oom_kill")
        } else {
            (
                self.root
                    .join("memory")
                    .join(rel)
                    .join("memory.oom_control"),
                "oom_kill",
            )
        };
        std::fs::read_to_string(file)
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    let mut it = l.split_whitespace();
                    (it.next() == Some(key))
                        .then(|| it.next().and_then(|v| v.parse::<u64>().ok()))
                        .flatten()
                })
            })
            .is_some_and(|n| n > 0)
    }
}

/// A cgroup opened for a new process to join as it starts ([`Cgroups::open_join`]).
#[derive(Debug, Default)]
pub struct Join {
    /// cgroup v1 `tasks` files: the child writes "0" to each before it execs. A thread moving
    /// itself is the one migration the kernel makes without the threadgroup lock.
    pub tasks: Vec<OwnedFd>,
    /// The cgroup v2 leaf: its directory, for clone3's CLONE_INTO_CGROUP (no migration at
    /// all), and its `cgroup.procs`, for the child to write "0" to where clone3 is missing.
    pub into: Option<(OwnedFd, OwnedFd)>,
}

fn open_v2_leaf(dir: &Path) -> std::io::Result<(OwnedFd, OwnedFd)> {
    use std::os::unix::fs::OpenOptionsExt;
    let d = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)?;
    let procs = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"))?;
    Ok((d.into(), procs.into()))
}

/// Copies cpuset.cpus and cpuset.mems down from the nearest ancestor that has them, into each
/// directory on the way to `rel` that has none yet.
fn inherit_cpuset(mount: &Path, rel: &str) -> std::io::Result<()> {
    let mut dir = mount.to_path_buf();
    for part in Path::new(rel).components() {
        let parent = dir.clone();
        dir.push(part);
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let cur = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
            if cur.trim().is_empty() {
                let up = std::fs::read_to_string(parent.join(f))?;
                std::fs::write(dir.join(f), up.trim())?;
            }
        }
    }
    Ok(())
}

/// Every cgroup hierarchy mounted under `root` (each v1 controller dir, or the v2 root itself).
fn hierarchy_mounts(root: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let fstype = post.split_whitespace().next()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            let mnt = PathBuf::from(pre.split_whitespace().nth(4)?);
            mnt.starts_with(root).then_some(mnt)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Every PID in `dir`'s cgroup.procs and in those of its descendants.
fn collect_procs(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_procs(&e.path(), out);
            }
        }
    }
}

/// `PID (comm)` for each PID, for an error a person can act on.
fn describe_procs(pids: &[i32]) -> String {
    pids.iter()
        .map(|p| {
            let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            format!("{p} ({})", comm.trim())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn rmdir_tree(dir: &Path) -> Result<(), CgroupError> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path())?;
            }
        }
    }
    // The kernel may still be tearing down a just-exited task: retry EBUSY briefly.
    let mut tries = 0;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_owned(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cg(driver: CgroupDriver, parent: &str) -> Cgroups {
        Cgroups {
            driver,
            unified: false,
            default_parent: parent.into(),
            root: PathBuf::from("/sys/fs/cgroup"),
            v1_mounts: Vec::new(),
            hierarchies: Vec::new(),
            v1_controllers: Default::default(),
        }
    }

    #[test]
    fn pod_cgroup_from_kubelet_is_not_owned() {
        let c = cg(CgroupDriver::Cgroupfs, "/peapod");
        let p = c.pod_cgroup("/kubepods/besteffort/pod123", "abc");
        assert_eq!(p.path, "/kubepods/besteffort/pod123");
        assert!(!p.owned);
        let p = c.pod_cgroup("", "abc");
        assert_eq!(p.path, "/peapod/abc");
        assert!(p.owned);
        assert_eq!(c.child_path(&p.path, "ctr"), "/peapod/abc/ctr");
    }

    #[test]
    fn systemd_paths() {
        let c = cg(CgroupDriver::Systemd, "peapod.slice");
        let p = c.pod_cgroup("kubepods-pod1.slice", "abc");
        assert_eq!(
            c.child_path(&p.path, "ctr"),
            "kubepods-pod1.slice:peapod:ctr"
        );
        assert!(!c.pod_cgroup("", "abc").owned);
    }
}
