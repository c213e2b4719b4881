//! The engine's records of sandboxes and containers, their state machines and their checkpoints.
//!
//! Container states, derived from timestamps (never stored as a separate field, so they cannot
//! disagree with them), as containerd's store does:
//!
//! ```text
//!   CreateContainer        StartContainer         exit (monitor's exit file)
//!  ─────────────▶ CREATED ───────────────▶ RUNNING ──────────────────────▶ EXITED
//!                    │                                                       ▲
//!                    └──────────── killed / removed before start ───────────┘
//! ```
//! UNKNOWN is reported when the monitor is gone without an exit file.
//!
//! A checkpoint is `<dir>/record.json` (versioned JSON, written atomically) plus `config.pb`, the
//! CRI config as protobuf exactly as received, written once at creation.

use std::path::{Path, PathBuf};

use prost::Message;
use serde::{Deserialize, Serialize};

use crate::cgroups::PodCgroup;
use crate::fsutil::{atomic_write, atomic_write_syncing, Syncing};

pub const RECORD_VERSION: u32 = 1;
pub const RECORD_FILE: &str = "record.json";
pub const CONFIG_FILE: &str = "config.pb";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    Ready,
    NotReady,
}

/// How the pod's namespaces were made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxNamespaces {
    pub host_network: bool,
    pub host_ipc: bool,
    pub host_pid: bool,
    /// The pod has one PID namespace for all containers (NamespaceMode POD).
    pub pod_pid: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub version: u32,
    pub id: String,
    pub name: String,
    pub runtime_handler: String,
    pub created_at: i64,
    pub hostname: String,
    pub namespaces: SandboxNamespaces,
    pub pause_pid: i32,
    pub pause_start: u64,
    pub cgroup: PodCgroup,
    pub pause_cgroup: String,
    /// The pod's /dev/shm tmpfs, mounted by peapod (None with host IPC).
    pub shm: Option<PathBuf>,
    pub state: SandboxState,
    /// Set when the infra process (`pause_pid`) is a container of the configured sandbox image
    /// rather than the built-in pause. Absent in records of built-in sandboxes (and in records
    /// written before sandbox images existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infra: Option<InfraContainer>,
    /// The network driver that sets (or set) up the pod's network (`pod/network.rs`: "builtin"
    /// or "cni"); empty for host-network pods and loopback-only ones. Named in the intent,
    /// before any of the network exists, so that recovery knows what to undo.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network: String,
    /// The pod's addresses, IPv4 first; empty once its network is torn down.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<std::net::IpAddr>,
    /// The record is an intent: RunPodSandbox wrote it before making the first resource and
    /// has not finished. Start-up recovery undoes such a sandbox (its ID was never reported).
    #[serde(default, skip_serializing_if = "is_false")]
    pub creating: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The sandbox's infra container: the configured sandbox image run by the OCI runtime under a
/// per-container monitor, with the sandbox's ID as its runtime container ID and its bundle in
/// `<state_dir>/sandboxes/<id>/bundle`. Its init process is the record's `pause_pid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfraContainer {
    /// The image as configured, and the store's image ID.
    pub image_ref: String,
    pub image_id: String,
    /// The image's layers, lowest first: the rootfs' lower directories.
    #[serde(default)]
    pub image_chain_ids: Vec<String>,
    /// The overlay rootfs (`<root_dir>/sandboxes/<id>/rootfs`).
    pub rootfs: PathBuf,
    pub monitor_pid: i32,
    pub monitor_start: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub version: u32,
    pub id: String,
    pub name: String,
    pub sandbox_id: String,
    pub runtime_handler: String,
    /// The image as the request named it, and the store's image ID.
    pub image_ref: String,
    pub image_id: String,
    /// The image's layers, lowest first: kept from garbage collection while this container
    /// exists, even when its image has been removed.
    #[serde(default)]
    pub image_chain_ids: Vec<String>,
    pub log_path: Option<PathBuf>,
    pub rootfs: PathBuf,
    pub cgroup_path: String,
    pub stop_signal: i32,
    pub created_at: i64,
    pub monitor_pid: i32,
    pub monitor_start: u64,
    pub pid: i32,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    /// Set when the monitor vanished without an exit file: the state is unknowable.
    #[serde(default)]
    pub unknown: bool,
    /// The record is an intent: CreateContainer wrote it before making the first resource and
    /// has not finished. Start-up recovery undoes such a container (its ID was never reported).
    #[serde(default, skip_serializing_if = "is_false")]
    pub creating: bool,
}

impl ContainerRecord {
    pub fn state(&self) -> ContainerState {
        if self.unknown {
            ContainerState::Unknown
        } else if self.finished_at > 0 {
            ContainerState::Exited
        } else if self.started_at > 0 {
            ContainerState::Running
        } else {
            ContainerState::Created
        }
    }

    /// Records the exit, with the CRI reason kubelet expects.
    pub fn mark_exited(&mut self, exit_code: i32, finished_at: i64, oom: bool) {
        self.finished_at = finished_at.max(1);
        self.exit_code = exit_code;
        self.reason = if oom {
            "OOMKilled"
        } else if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
        .to_string();
    }
}

/// Writes a record atomically (fsync'd: it lives on persistent storage).
pub fn save<T: Serialize>(dir: &Path, rec: &T) -> std::io::Result<()> {
    save_opts(dir, rec, true)
}

/// Writes an intent record: atomically, without fsync. An intent only has to outlive the
/// daemon process, which the page cache does; after a power loss every resource it names is
/// gone too, and a directory without a record is swept at start-up.
pub fn save_intent<T: Serialize>(dir: &Path, rec: &T) -> std::io::Result<()> {
    save_opts(dir, rec, false)
}

fn save_opts<T: Serialize>(dir: &Path, rec: &T, sync: bool) -> std::io::Result<()> {
    let data = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
    crate::fsutil::atomic_write_opts(&dir.join(RECORD_FILE), &data, sync)
}

/// Changes a record and saves it under its lock, so that concurrent updates (an exit watcher
/// and an RPC) reach the disk in the order they were made. `f` returns false when it changed
/// nothing; then nothing is written and None returned.
pub fn update<T: Serialize + Clone>(
    m: &std::sync::Mutex<T>,
    dir: &Path,
    f: impl FnOnce(&mut T) -> bool,
) -> std::io::Result<Option<T>> {
    update_with(m, dir, f, save)
}

/// As [`update`], but returns once the record is in place, before it is on disk: its fsync
/// runs afterwards (a failure is logged). For a change a power loss may undo because the
/// loss undoes what it records too (a start: the container dies with the host).
pub fn update_deferred<T: Serialize + Clone>(
    m: &std::sync::Mutex<T>,
    dir: &Path,
    f: impl FnOnce(&mut T) -> bool,
) -> std::io::Result<Option<T>> {
    update_with(m, dir, f, save_deferred)
}

fn update_with<T: Serialize + Clone>(
    m: &std::sync::Mutex<T>,
    dir: &Path,
    f: impl FnOnce(&mut T) -> bool,
    write: impl FnOnce(&Path, &T) -> std::io::Result<()>,
) -> std::io::Result<Option<T>> {
    let mut guard = m.lock().unwrap();
    let mut next = guard.clone();
    if !f(&mut next) {
        return Ok(None);
    }
    write(dir, &next)?;
    *guard = next.clone();
    super::table::changed();
    Ok(Some(next))
}

/// Writes a record atomically; its fsync runs on a blocking thread, a failure logged.
fn save_deferred<T: Serialize>(dir: &Path, rec: &T) -> std::io::Result<()> {
    let data = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
    let path = dir.join(RECORD_FILE);
    let syncing = atomic_write_syncing(&path, &data)?;
    tokio::spawn(async move {
        if let Err(e) = syncing.wait().await {
            tracing::warn!(path = %path.display(), error = %e, "fsync of a record failed");
        }
    });
    Ok(())
}

pub fn load<T: for<'de> Deserialize<'de>>(dir: &Path) -> std::io::Result<T> {
    let data = std::fs::read(dir.join(RECORD_FILE))?;
    serde_json::from_slice(&data)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The layers used by every container recorded under `containers_dir`, read from disk (for
/// tools that run beside the daemon).
pub fn layers_in_use(containers_dir: &Path) -> std::collections::HashSet<String> {
    std::fs::read_dir(containers_dir)
        .map(|it| {
            it.flatten()
                .filter_map(|e| load::<ContainerRecord>(&e.path()).ok())
                .flat_map(|r| r.image_chain_ids)
                .collect()
        })
        .unwrap_or_default()
}

/// The layers the infra containers of every sandbox recorded under `sandboxes_dir` use, read
/// from disk (for tools that run beside the daemon, as [`layers_in_use`] for containers).
pub fn infra_layers_in_use(sandboxes_dir: &Path) -> std::collections::HashSet<String> {
    std::fs::read_dir(sandboxes_dir)
        .map(|it| {
            it.flatten()
                .filter_map(|e| load::<SandboxRecord>(&e.path()).ok())
                .filter_map(|r| r.infra)
                .flat_map(|i| i.image_chain_ids)
                .collect()
        })
        .unwrap_or_default()
}

/// Writes an object's CRI config atomically, its fsync running beside what the caller does
/// next: wait for it before saving the record that makes the object real (recovery needs
/// both), so that the fsync overlaps making the object instead of delaying it.
pub fn save_config<M: Message>(dir: &Path, cfg: &M) -> std::io::Result<Syncing> {
    atomic_write_syncing(&dir.join(CONFIG_FILE), &cfg.encode_to_vec())
}

/// Writes a protobuf message as `dir/name`, atomically and durably.
pub fn save_named<M: Message>(dir: &Path, name: &str, msg: &M) -> std::io::Result<()> {
    atomic_write(&dir.join(name), &msg.encode_to_vec())
}

pub fn load_named<M: Message + Default>(dir: &Path, name: &str) -> std::io::Result<M> {
    let data = std::fs::read(dir.join(name))?;
    M::decode(data.as_slice()).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

pub fn load_config<M: Message + Default>(dir: &Path) -> std::io::Result<M> {
    let data = std::fs::read(dir.join(CONFIG_FILE))?;
    M::decode(data.as_slice()).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctr() -> ContainerRecord {
        ContainerRecord {
            version: RECORD_VERSION,
            id: "c".into(),
            name: "n".into(),
            sandbox_id: "s".into(),
            runtime_handler: "runc".into(),
            image_ref: "busybox".into(),
            image_id: "sha256:x".into(),
            image_chain_ids: Vec::new(),
            log_path: None,
            rootfs: PathBuf::from("/r"),
            cgroup_path: "/peapod/s/c".into(),
            stop_signal: 15,
            created_at: 1,
            monitor_pid: 0,
            monitor_start: 0,
            pid: 0,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            unknown: false,
            creating: false,
        }
    }

    #[test]
    fn state_follows_timestamps() {
        let mut c = ctr();
        assert_eq!(c.state(), ContainerState::Created);
        c.started_at = 5;
        assert_eq!(c.state(), ContainerState::Running);
        c.mark_exited(0, 9, false);
        assert_eq!(
            (c.state(), c.reason.as_str()),
            (ContainerState::Exited, "Completed")
        );
        c.mark_exited(137, 9, true);
        assert_eq!(c.reason, "OOMKilled");
        c.mark_exited(2, 9, false);
        assert_eq!(c.reason, "Error");
        c.unknown = true;
        assert_eq!(c.state(), ContainerState::Unknown);
    }

    /// A sandbox record as peapod wrote it before sandbox images existed.
    const OLD_SANDBOX: &str = r#"{"version":1,"id":"s1","name":"web_default_u_0","runtime_handler":"runc","created_at":5,"hostname":"web","namespaces":{"host_network":false,"host_ipc":false,"host_pid":false,"pod_pid":true},"pause_pid":42,"pause_start":7,"cgroup":{"path":"/peapod/s1","owned":true},"pause_cgroup":"/peapod/s1/s1","shm":"/x/shm","state":"Ready"}"#;

    #[test]
    fn old_sandbox_records_load_as_built_in() {
        let d = std::env::temp_dir().join(format!("peapod-rec-{}", crate::fsutil::new_id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(RECORD_FILE), OLD_SANDBOX).unwrap();
        let mut r: SandboxRecord = load(&d).unwrap();
        assert_eq!((r.pause_pid, r.infra.as_ref()), (42, None));
        // A built-in record is written as before: no infra key.
        save(&d, &r).unwrap();
        let text = std::fs::read_to_string(d.join(RECORD_FILE)).unwrap();
        assert!(!text.contains("infra"), "{text}");
        r.infra = Some(InfraContainer {
            image_ref: "peapod.test/pause:latest".into(),
            image_id: "sha256:ab".into(),
            image_chain_ids: vec!["sha256:cd".into()],
            rootfs: PathBuf::from("/x/rootfs"),
            monitor_pid: 40,
            monitor_start: 6,
        });
        save(&d, &r).unwrap();
        let back: SandboxRecord = load(&d).unwrap();
        assert_eq!(back.infra, r.infra);
        let sandboxes = d
            .parent()
            .unwrap()
            .join(format!("sb-{}", crate::fsutil::new_id()));
        std::fs::create_dir_all(&sandboxes).unwrap();
        std::fs::rename(&d, sandboxes.join("s1")).unwrap();
        assert_eq!(
            infra_layers_in_use(&sandboxes),
            ["sha256:cd".to_string()].into_iter().collect()
        );
        std::fs::remove_dir_all(sandboxes).unwrap();
    }

    #[tokio::test]
    async fn a_deferred_update_is_on_file_when_it_returns() {
        let d = std::env::temp_dir().join(format!("peapod-rec-{}", crate::fsutil::new_id()));
        std::fs::create_dir_all(&d).unwrap();
        let m = std::sync::Mutex::new(ctr());
        save(&d, &*m.lock().unwrap()).unwrap();
        let out = update_deferred(&m, &d, |r| {
            r.started_at = 7;
            true
        })
        .unwrap();
        assert_eq!(out.map(|r| r.started_at), Some(7));
        assert_eq!(m.lock().unwrap().started_at, 7);
        let back: ContainerRecord = load(&d).unwrap();
        assert_eq!(back.state(), ContainerState::Running);
        // No change, no write.
        assert!(update_deferred(&m, &d, |_| false).unwrap().is_none());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[tokio::test]
    async fn checkpoint_round_trips() {
        let d = std::env::temp_dir().join(format!("peapod-rec-{}", crate::fsutil::new_id()));
        std::fs::create_dir_all(&d).unwrap();
        let mut c = ctr();
        c.exit_code = 3;
        save(&d, &c).unwrap();
        let back: ContainerRecord = load(&d).unwrap();
        assert_eq!(back.exit_code, 3);
        let cfg = crate::api::ContainerConfig {
            working_dir: "/w".into(),
            ..Default::default()
        };
        save_config(&d, &cfg).unwrap().wait().await.unwrap();
        let back: crate::api::ContainerConfig = load_config(&d).unwrap();
        assert_eq!(back.working_dir, "/w");
        std::fs::remove_dir_all(d).unwrap();
    }
}
