//! Garbage collection of the image store: after images were removed, frees the unpacked layers
//! and the blobs that no image record (and no running container) needs any more.
//!
//! What is kept:
//! - every layer in the chain of an image record, every chain ID the caller says is in use
//!   (layers of containers whose image was removed), and the layers below those;
//! - the config, the manifests (every repo digest and the record's manifest digest; for an index
//!   the child manifests present in the store) and the layer blobs those manifests name;
//! - whatever a pull in this process is working with (see [`Protection`]): content it has
//!   fetched or unpacked but not yet recorded.
//!
//! Layers are renamed to `layers/.trash-*` first and deleted afterwards, so a crash mid-delete
//! leaves a trash directory (removed by the next run or by [`ImageStore::open`]), never a
//! half-deleted layer under its real name. Blobs are single files and are unlinked directly.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex, MutexGuard};

use super::store::parse_digest;
use super::{ImageError, ImageRecord, ImageStore, IoContext};
use crate::fsutil::{disk_usage, DiskUsage};

/// What one collection freed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Unpacked layer directories removed.
    pub layers_removed: usize,
    /// Blobs (manifests, configs, compressed layers) removed.
    pub blobs_removed: usize,
    /// Disk space released, in bytes (allocated blocks, hard links counted once).
    pub bytes_freed: u64,
}

/// Removes the layers and blobs no image record references, keeping the layers named in
/// `in_use_chain_ids` (and their parents). Safe to run while pulls are under way in this
/// process: their content is protected until their image is recorded. Not safe against an
/// [`import`](super::import) running at the same time, nor against another process using the
/// same store.
pub fn gc(store: &ImageStore, in_use_chain_ids: &HashSet<String>) -> Result<GcStats, ImageError> {
    let mut stats = GcStats::default();
    // Trash from an interrupted run is deleted along with this run's.
    let mut trash = store.trash_dirs()?;
    {
        // Held while deciding and unlinking, so a pull cannot protect (and then rely on) a
        // blob or layer this run has already judged unreferenced.
        let active = active();
        let protected: HashSet<&String> = active
            .get(store.root())
            .map(|keys| keys.keys().collect())
            .unwrap_or_default();
        let records = store.list();

        let mut keep_layers: HashSet<String> = records
            .iter()
            .flat_map(|r| r.chain_ids.iter().cloned())
            .chain(in_use_chain_ids.iter().cloned())
            .chain(protected.iter().map(|s| s.to_string()))
            .collect();
        // A layer's parents are its lower directories: keep them with it.
        let mut stack: Vec<String> = keep_layers.iter().cloned().collect();
        while let Some(chain) = stack.pop() {
            if let Some(parent) = store.layer_parent(&chain) {
                if keep_layers.insert(parent.clone()) {
                    stack.push(parent);
                }
            }
        }
        let mut keep_blobs = referenced_blobs(store, &records);
        keep_blobs.extend(protected.iter().map(|s| s.to_string()));

        for chain in store.list_layers()? {
            if keep_layers.contains(&chain) {
                continue;
            }
            if let Some(path) = store.trash_layer(&chain)? {
                tracing::info!(layer = %chain, "gc: removing layer");
                stats.layers_removed += 1;
                trash.push(path);
            }
        }
        for (digest, _) in store.list_blobs()? {
            if keep_blobs.contains(&digest) {
                continue;
            }
            tracing::debug!(%digest, "gc: removing blob");
            stats.bytes_freed += store.remove_blob(&digest)?;
            stats.blobs_removed += 1;
        }
    }
    for path in trash {
        stats.bytes_freed += disk_usage(&path, None).at(&path)?.bytes;
        store.remove_trash(&path)?;
    }
    if stats != GcStats::default() {
        tracing::info!(
            layers = stats.layers_removed,
            blobs = stats.blobs_removed,
            bytes = stats.bytes_freed,
            "image gc done"
        );
    }
    Ok(stats)
}

/// Disk usage of the store's root (blobs, layers, records), for CRI's ImageFsInfo. Walks the
/// whole tree: callers polling it often should cache the answer.
pub fn usage(store: &ImageStore) -> Result<DiskUsage, ImageError> {
    disk_usage(store.root(), None).at(store.root())
}

/// Digests of every blob reachable from the image records: configs, manifests and indexes (by
/// repo digest and manifest digest), the child manifests of indexes, and the configs and
/// layers those manifests name.
fn referenced_blobs(store: &ImageStore, records: &[ImageRecord]) -> HashSet<String> {
    let mut keep = HashSet::new();
    let mut manifests: Vec<String> = Vec::new();
    for rec in records {
        keep.insert(rec.config_digest.clone());
        manifests.push(rec.manifest_digest.clone());
        manifests.extend(
            rec.repo_digests
                .iter()
                .filter_map(|d| d.rsplit_once('@').map(|(_, d)| d.to_string())),
        );
    }
    while let Some(m) = manifests.pop() {
        if !keep.insert(m.clone()) {
            continue;
        }
        let Ok(digest) = parse_digest(&m) else {
            continue;
        };
        let Ok(bytes) = store.read_blob(&digest) else {
            continue; // not in the store: nothing below it is known
        };
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let digests_of = |v: Option<&serde_json::Value>| -> Vec<String> {
            v.and_then(|v| v.as_array())
                .into_iter()
                .flatten()
                .filter_map(|d| d.get("digest")?.as_str().map(str::to_string))
                .collect()
        };
        // An index names manifests; a manifest names a config and layers.
        manifests.extend(digests_of(doc.get("manifests")));
        if let Some(c) = doc
            .get("config")
            .and_then(|c| c.get("digest"))
            .and_then(|d| d.as_str())
        {
            keep.insert(c.to_string());
        }
        keep.extend(digests_of(doc.get("layers")));
    }
    keep
}

// ---- protection of content that pulls are working with ----

/// Store root → protected digest or chain ID → number of holders.
type Active = HashMap<PathBuf, HashMap<String, usize>>;

static ACTIVE: LazyLock<Mutex<Active>> = LazyLock::new(Default::default);

fn active() -> MutexGuard<'static, Active> {
    // Every update is a single counter change, so a poisoned map is still consistent.
    ACTIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Digests and chain IDs a pull uses before its image is recorded, hidden from [`gc`] while
/// this value lives. Add a key *before* checking whether the store has it: a collection then
/// either ran before (and the check sees the content gone) or waits until after.
#[derive(Debug)]
pub(crate) struct Protection {
    root: PathBuf,
    keys: Vec<String>,
}

impl Protection {
    pub(crate) fn new(store: &ImageStore) -> Self {
        Protection {
            root: store.root().to_path_buf(),
            keys: Vec::new(),
        }
    }

    /// Protects `key` (a `sha256:` digest or chain ID) until this value is dropped.
    pub(crate) fn add(&mut self, key: &str) {
        if self.keys.iter().any(|k| k == key) {
            return;
        }
        *active()
            .entry(self.root.clone())
            .or_default()
            .entry(key.to_string())
            .or_default() += 1;
        self.keys.push(key.to_string());
    }
}

impl Drop for Protection {
    fn drop(&mut self) {
        let mut active = active();
        if let Some(keys) = active.get_mut(&self.root) {
            for k in &self.keys {
                if let Some(n) = keys.get_mut(k) {
                    *n -= 1;
                    if *n == 0 {
                        keys.remove(k);
                    }
                }
            }
            if keys.is_empty() {
                active.remove(&self.root);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::digest::sha256;
    use crate::image::store::parse_digest;
    use oci_spec::image::{DescriptorBuilder, ImageManifest, ImageManifestBuilder, MediaType};
    use std::fs;
    use std::io::Write;

    use crate::fsutil::TempDir;

    fn gzip_layer(file: &str, content: &[u8]) -> (Vec<u8>, String) {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, file, content).unwrap();
        let tar = b.into_inner().unwrap();
        let diff = sha256(&tar);
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&tar).unwrap();
        (e.finish().unwrap(), diff)
    }

    /// Stores an image of one layer per file, as a pull would (manifest blob included), and
    /// records it under `name`.
    fn image(
        store: &ImageStore,
        files: &[(&str, &[u8])],
        name: &str,
    ) -> (ImageRecord, Vec<String>) {
        let mut parent: Option<String> = None;
        let (mut diff_ids, mut descs, mut blobs) = (Vec::new(), Vec::new(), Vec::new());
        for (f, content) in files {
            let (gz, diff) = gzip_layer(f, content);
            let d = parse_digest(&sha256(&gz)).unwrap();
            let path = store.write_blob(&d, &gz[..]).unwrap();
            parent = Some(
                store
                    .unpack_layer(parent.as_deref(), &diff, &path, &MediaType::ImageLayerGzip)
                    .unwrap(),
            );
            diff_ids.push(diff);
            blobs.push(d.to_string());
            descs.push(
                DescriptorBuilder::default()
                    .media_type(MediaType::ImageLayerGzip)
                    .digest(d)
                    .size(gz.len() as u64)
                    .build()
                    .unwrap(),
            );
        }
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": {"Labels": {"n": name}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let manifest: ImageManifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(
                DescriptorBuilder::default()
                    .media_type(MediaType::ImageConfig)
                    .digest(parse_digest(&sha256(&config)).unwrap())
                    .size(config.len() as u64)
                    .build()
                    .unwrap(),
            )
            .layers(descs)
            .build()
            .unwrap();
        let mbytes = manifest.to_string().unwrap().into_bytes();
        let md = parse_digest(&sha256(&mbytes)).unwrap();
        store.write_blob(&md, &mbytes[..]).unwrap();
        blobs.push(md.to_string());
        blobs.push(sha256(&config));
        let rec = store
            .add_image(&md, &manifest, &config, Some(name))
            .unwrap();
        (rec, blobs)
    }

    #[test]
    fn removes_what_no_image_uses() {
        let dir = TempDir::new("collect");
        let store = ImageStore::open(&dir.0).unwrap();
        let base: (&str, &[u8]) = ("base", b"shared base layer");
        let (a, a_blobs) = image(&store, &[base, ("a", b"only in a")], "example.com/a:1");
        let (b, b_blobs) = image(&store, &[base, ("b", b"only in b")], "example.com/b:1");
        let (c, c_blobs) = image(&store, &[("c", b"only in c")], "example.com/c:1");
        assert_eq!(a.chain_ids[0], b.chain_ids[0], "shared base");
        // A stray blob nobody references, and trash left by an interrupted collection.
        let stray = store.write_blob_unverified(&b"stray"[..]).unwrap().0;
        fs::create_dir_all(dir.0.join("layers/.trash-old/diff")).unwrap();

        // Nothing removed yet: only the stray blob and the old trash go.
        let s = gc(&store, &HashSet::new()).unwrap();
        assert_eq!((s.layers_removed, s.blobs_removed), (0, 1), "{s:?}");
        assert!(!store.has_blob(&stray));
        assert!(store.trash_dirs().unwrap().is_empty());

        // Remove a and c; c's layer is still used by a container.
        store.remove("example.com/a:1").unwrap();
        store.remove("example.com/c:1").unwrap();
        let in_use: HashSet<String> = [c.chain_ids[0].clone()].into();
        let s = gc(&store, &in_use).unwrap();
        assert_eq!(s.layers_removed, 1, "a's own layer: {s:?}");
        // a: its own layer blob, manifest, config; c: manifest, config, layer blob.
        assert_eq!(s.blobs_removed, 6, "{s:?}");
        assert!(s.bytes_freed > 0);

        assert!(
            !store.has_layer(&a.chain_ids[1]),
            "a's unique layer is gone"
        );
        assert!(store.has_layer(&a.chain_ids[0]), "the shared base stays");
        assert!(store.has_layer(&c.chain_ids[0]), "the in-use layer stays");
        for blob in &b_blobs {
            assert!(store.has_blob(&parse_digest(blob).unwrap()), "b's {blob}");
        }
        assert!(
            store.has_blob(&parse_digest(&a_blobs[0]).unwrap()),
            "the shared base layer's blob stays"
        );
        for blob in a_blobs[1..].iter().chain(&c_blobs) {
            assert!(!store.has_blob(&parse_digest(blob).unwrap()), "{blob}");
        }
        // b still mounts.
        for d in store.layer_dirs(&store.get("example.com/b:1").unwrap()) {
            assert!(d.is_dir());
        }
        assert!(store.trash_dirs().unwrap().is_empty());

        // Once the container is gone, its layer goes too; the next run has nothing to do.
        let s = gc(&store, &HashSet::new()).unwrap();
        assert_eq!(s.layers_removed, 1);
        assert!(!store.has_layer(&c.chain_ids[0]));
        assert_eq!(gc(&store, &HashSet::new()).unwrap(), GcStats::default());
    }

    #[test]
    fn in_use_layers_keep_their_parents_and_protection_works() {
        let dir = TempDir::new("parents");
        let store = ImageStore::open(&dir.0).unwrap();
        let (a, a_blobs) = image(&store, &[("x", b"1"), ("y", b"2")], "example.com/a:1");
        store.remove(&a.id).unwrap();
        // Only the top layer is named in use: its parent is its lower dir and stays too. A
        // pull in progress protects the blob it is working with.
        let in_use: HashSet<String> = [a.chain_ids[1].clone()].into();
        let mut p = Protection::new(&store);
        p.add(&a_blobs[0]);
        let s = gc(&store, &in_use).unwrap();
        assert_eq!((s.layers_removed, s.blobs_removed), (0, 3), "{s:?}");
        assert!(store.has_layer(&a.chain_ids[0]));
        assert!(store.has_blob(&parse_digest(&a_blobs[0]).unwrap()));
        assert!(!store.has_blob(&parse_digest(&a_blobs[1]).unwrap()));
        drop(p);

        // A protected chain ID keeps its layer and the layers below.
        let mut p = Protection::new(&store);
        p.add(&a.chain_ids[1]);
        p.add(&a.chain_ids[1]);
        let s = gc(&store, &HashSet::new()).unwrap();
        assert_eq!((s.layers_removed, s.blobs_removed), (0, 1), "{s:?}");
        drop(p);
        let s = gc(&store, &HashSet::new()).unwrap();
        assert_eq!(s.layers_removed, 2, "{s:?}");
        assert!(store.list_layers().unwrap().is_empty());
        assert!(store.list_blobs().unwrap().is_empty());
        assert!(active().get(store.root()).is_none(), "protection released");
        let u = usage(&store).unwrap();
        assert!(u.inodes >= 5 && u.bytes > 0, "{u:?}");
    }
}
