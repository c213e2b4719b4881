//! The attachment cache: one file per (pod, network) at `<cache_dir>/<pod id>/<network>.json`
//! holding the config list ADD used, its runtime arguments and the final result. It is
//! written before the first plugin runs (no result yet: a crash mid-ADD still leaves what DEL
//! needs) and again with the result, each time crash-safely (temp file, fsync, rename, fsync of
//! the directory), so DEL works after a reboot or a change of the conf dir, as libcni's cache
//! lets containerd and CRI-O do.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CapabilityArgs, PodArgs};

/// The `kind` of an entry, for the format to change later.
pub const KIND: &str = "peapodCniCacheV1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub kind: String,
    pub network_name: String,
    pub pod: PodArgs,
    pub if_name: String,
    /// The netns path given to ADD.
    pub netns: PathBuf,
    /// CNI_ARGS as given to ADD.
    pub cni_args: String,
    pub capability_args: CapabilityArgs,
    /// The conf file the config list came from (for messages only).
    pub conf_file: PathBuf,
    /// The config list exactly as ADD used it.
    pub config: Value,
    /// The final result; none while ADD runs (or when it was cut short by a crash).
    #[serde(default)]
    pub result: Option<Value>,
}

pub fn entry_path(cache_dir: &Path, pod_id: &str, network: &str) -> PathBuf {
    cache_dir.join(pod_id).join(format!("{network}.json"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Writes `entry` crash-safely; creates (and makes durable) the pod's directory first.
pub fn write(cache_dir: &Path, entry: &Entry) -> io::Result<()> {
    let dir = cache_dir.join(&entry.pod.id);
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir)?;
        sync_dir(cache_dir)?;
    }
    let data = serde_json::to_vec_pretty(entry).map_err(io::Error::other)?;
    crate::fsutil::atomic_write(
        &entry_path(cache_dir, &entry.pod.id, &entry.network_name),
        &data,
    )?;
    // The rename itself is durable only once the directory is.
    sync_dir(&dir)
}

/// Reads an entry: `Ok(None)` when there is none; `Err` with the reason when it does not parse.
pub fn read(path: &Path) -> io::Result<Option<Result<Entry, String>>> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(
        serde_json::from_slice::<Entry>(&data)
            .map_err(|e| e.to_string())
            .and_then(|e| {
                if e.kind == KIND {
                    Ok(e)
                } else {
                    Err(format!("unknown cache entry kind {:?}", e.kind))
                }
            }),
    ))
}

/// The entry files of one pod (any network), sorted; none when the pod has no directory.
pub fn pod_entries(cache_dir: &Path, pod_id: &str) -> io::Result<Vec<PathBuf>> {
    let it = match std::fs::read_dir(cache_dir.join(pod_id)) {
        Ok(it) => it,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in it {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        // Hidden names are atomic_write's temporary files.
        if name.ends_with(".json") && !name.starts_with('.') {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Removes an entry (gone already is fine), then its pod's directory once empty.
pub fn remove(cache_dir: &Path, path: &Path) -> io::Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(dir)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Leftover temporary files of a crashed write go with it.
    if let Ok(it) = std::fs::read_dir(dir) {
        for e in it.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => sync_dir(cache_dir),
        Err(_) => Ok(()), // other networks' entries remain
    }
}

/// The pods that have at least one entry, sorted.
pub fn pods(cache_dir: &Path) -> Vec<String> {
    let Ok(it) = std::fs::read_dir(cache_dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = it
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|id| crate::fsutil::is_safe_id(id))
        .filter(|id| pod_entries(cache_dir, id).is_ok_and(|v| !v.is_empty()))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::TempDir;

    fn entry(pod: &str, net: &str) -> Entry {
        Entry {
            kind: KIND.into(),
            network_name: net.into(),
            pod: PodArgs {
                id: pod.into(),
                name: "web".into(),
                namespace: "default".into(),
                uid: "u-1".into(),
            },
            if_name: "eth0".into(),
            netns: "/run/peapod/sandboxes/x/ns/net".into(),
            cni_args: "IgnoreUnknown=1".into(),
            capability_args: CapabilityArgs::default(),
            conf_file: "/etc/cni/net.d/10-x.conflist".into(),
            config: serde_json::json!({"cniVersion": "1.0.0", "name": net, "plugins": [{"type": "bridge"}]}),
            result: None,
        }
    }

    #[test]
    fn entries_round_trip_and_list_their_pods() {
        let d = TempDir::new("cni-cache");
        let mut e = entry("pod1", "net-a");
        write(&d.0, &e).unwrap();
        let p = entry_path(&d.0, "pod1", "net-a");
        assert_eq!(read(&p).unwrap().unwrap().unwrap(), e);
        e.result = Some(serde_json::json!({"cniVersion": "1.0.0", "ips": []}));
        write(&d.0, &e).unwrap();
        assert_eq!(read(&p).unwrap().unwrap().unwrap(), e);
        write(&d.0, &entry("pod1", "net-b")).unwrap();
        write(&d.0, &entry("pod2", "net-a")).unwrap();
        assert_eq!(pods(&d.0), ["pod1", "pod2"]);
        assert_eq!(
            pod_entries(&d.0, "pod1").unwrap(),
            [p.clone(), entry_path(&d.0, "pod1", "net-b")]
        );
        // Only the entries: no temporary file is left beside them.
        let names: Vec<_> = std::fs::read_dir(d.0.join("pod1"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");

        remove(&d.0, &p).unwrap();
        assert!(read(&p).unwrap().is_none());
        assert_eq!(pods(&d.0), ["pod1", "pod2"]);
        remove(&d.0, &entry_path(&d.0, "pod1", "net-b")).unwrap();
        assert!(!d.0.join("pod1").exists(), "an empty pod dir is removed");
        assert_eq!(pods(&d.0), ["pod2"]);
        // Again: nothing to do.
        remove(&d.0, &p).unwrap();
    }

    #[test]
    fn a_missing_cache_dir_has_no_pods() {
        let d = TempDir::new("cni-cache");
        assert!(pods(&d.0.join("absent")).is_empty());
        assert!(pod_entries(&d.0, "nope").unwrap().is_empty());
    }

    #[test]
    fn a_corrupt_entry_is_reported() {
        let d = TempDir::new("cni-cache");
        std::fs::create_dir_all(d.0.join("pod1")).unwrap();
        let p = entry_path(&d.0, "pod1", "n");
        std::fs::write(&p, b"{\"kind\":").unwrap();
        assert!(read(&p).unwrap().unwrap().is_err());
        let mut e = serde_json::to_value(entry("pod1", "n")).unwrap();
        e["kind"] = "other".into();
        std::fs::write(&p, e.to_string()).unwrap();
        let err = read(&p).unwrap().unwrap().unwrap_err();
        assert!(err.contains("kind"), "{err}");
        // Hidden and non-JSON files are no entries; unsafe directory names are no pods.
        std::fs::write(d.0.join("pod1/.n.json.1.0.tmp"), b"x").unwrap();
        assert_eq!(pod_entries(&d.0, "pod1").unwrap(), [p]);
        std::fs::create_dir_all(d.0.join("bad id")).unwrap();
        std::fs::write(d.0.join("bad id/n.json"), b"{}").unwrap();
        assert_eq!(pods(&d.0), ["pod1"]);
    }
}
