//! The on-disk image store: verified blobs, unpacked layers and image records, plus an
//! in-memory index of the records so lookups never touch the disk. See the module docs of
//! [`crate::image`] for the layout.
//!
//! Crash safety: a blob only gets its content-addressed name after its digest was checked, a
//! layer directory only gets its final name after it was completely unpacked, verified against
//! its diff ID and synced, and records are replaced with [`atomic_write`]. Whatever a crash
//! leaves behind is a temporary name that [`ImageStore::open`] removes.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use oci_spec::image::{Digest, DigestAlgorithm, ImageConfiguration, ImageManifest, MediaType};
use serde::{Deserialize, Serialize};

use super::decompress::decompressed;
use super::digest::{chain_id, sha256, HashingReader, HashingWriter};
use super::reference::Reference;
use super::unpack::unpack;
use super::{read_full, ImageError, IoContext};
use crate::fsutil::{atomic_write, new_id};

const BLOBS: &str = "blobs/sha256";
const INGEST: &str = "ingest";
const LAYERS: &str = "layers";
const IMAGES: &str = "images";
const COMPLETE: &str = ".complete";
const LAYER_META: &str = "layer.json";
const TMP_PREFIX: &str = ".tmp-";
/// Layers being deleted: renamed out of their content-addressed name first, so a crash in the
/// middle of a long delete never leaves a half-deleted layer under a name that says complete.
const TRASH_PREFIX: &str = ".trash-";
/// Refuses an image of more than [`MAX_LAYERS`] layers; `what` names it in the error.
pub(crate) fn check_layer_count(what: &str, layers: usize) -> Result<(), ImageError> {
    if layers > MAX_LAYERS {
        return Err(ImageError::format(
            what,
            format!("{layers} layers; at most {MAX_LAYERS} accepted"),
        ));
    }
    Ok(())
}

/// Shortest ID prefix accepted by [`ImageStore::get`], as docker's truncated IDs.
const MIN_ID_PREFIX: usize = 12;
/// Largest manifest, index or config read into memory.
pub(crate) const MAX_JSON_BLOB: u64 = 16 << 20;
/// Most layers an image may have: overlayfs stacks at most 500 lower layers (the kernel's
/// OVL_MAX_STACK), so an image with more can never run, while each layer costs a download, an
/// unpack and a directory. A manifest listing thousands is refused before any of that.
pub(crate) const MAX_LAYERS: usize = 500;

/// Buffer size of blob files read and written: few syscalls, little memory per layer.
const READ_BUF: usize = 128 << 10;

/// One image: what CRI's ListImages/ImageStatus report and what CreateContainer needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `sha256:<config digest hex>`, the image ID as docker and containerd's CRI report it.
    pub id: String,
    /// Normalised `repository:tag` names (`docker.io/library/busybox:latest`).
    pub repo_tags: Vec<String>,
    /// `repository@sha256:...` names: the manifest (or index) digest per repository.
    pub repo_digests: Vec<String>,
    /// Config plus compressed layer sizes, in bytes.
    pub size: u64,
    /// Digest of the config blob (equal to `id`).
    pub config_digest: String,
    /// Digest of the manifest (or index) the image was last added from.
    pub manifest_digest: String,
    /// Chain IDs of the layers, lowest first; each names a directory under `layers/`.
    pub chain_ids: Vec<String>,
    /// The parsed image config: user, env, entrypoint, cmd, working dir, ...
    pub config: ImageConfiguration,
}

/// What `layers/<chain>/layer.json` says about a layer, for a later garbage collector and for
/// humans looking at the store.
#[derive(Debug, Serialize, Deserialize)]
struct LayerMeta {
    chain_id: String,
    diff_id: String,
    parent: Option<String>,
}

/// The image store rooted at one directory. All methods are synchronous and do blocking I/O.
#[derive(Debug)]
pub struct ImageStore {
    root: PathBuf,
    /// Image ID → record. Writers hold the write lock across their disk writes, which also
    /// serialises the read-modify-write of tags moving between records.
    index: RwLock<BTreeMap<String, ImageRecord>>,
    /// Modification time of `images/` when the index was last loaded: another process (the
    /// `peapod image import` CLI beside a running daemon) changes it, and reads then reload.
    loaded: std::sync::Mutex<Option<std::time::SystemTime>>,
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`, removes leftovers of interrupted writes
    /// (ingest files, half-unpacked layers, temp records) and loads the image records.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        for dir in [BLOBS, INGEST, LAYERS, IMAGES] {
            fs::create_dir_all(root.join(dir)).at(root.join(dir))?;
        }
        let store = ImageStore {
            root: root.to_path_buf(),
            index: RwLock::new(BTreeMap::new()),
            loaded: std::sync::Mutex::new(None),
        };
        store.clean_leftovers()?;
        store.refresh()?;
        Ok(store)
    }

    fn images_mtime(&self) -> Option<std::time::SystemTime> {
        fs::metadata(self.root.join(IMAGES))
            .and_then(|m| m.modified())
            .ok()
    }

    /// Reloads the image records when `images/` changed since they were loaded (a record
    /// written or removed by this or another process). One stat when nothing changed.
    fn refresh(&self) -> Result<(), ImageError> {
        let now = self.images_mtime();
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if now.is_some() && *loaded == now {
            return Ok(());
        }
        let mut index = self.write_index();
        *index = self.load_records()?;
        *loaded = now;
        Ok(())
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn clean_leftovers(&self) -> Result<(), ImageError> {
        let ingest = self.root.join(INGEST);
        for entry in fs::read_dir(&ingest).at(&ingest)? {
            let path = entry.at(&ingest)?.path();
            remove_any(&path)?;
        }
        let layers = self.root.join(LAYERS);
        for entry in fs::read_dir(&layers).at(&layers)? {
            let path = entry.at(&layers)?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with(TMP_PREFIX)
                || name.starts_with(TRASH_PREFIX)
                || !path.join(COMPLETE).exists()
            {
                tracing::info!(path = %path.display(), "removing incomplete layer");
                remove_any(&path)?;
            }
        }
        let images = self.root.join(IMAGES);
        for entry in fs::read_dir(&images).at(&images)? {
            let path = entry.at(&images)?.path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                remove_any(&path)?; // atomic_write's temp file
            }
        }
        Ok(())
    }

    fn load_records(&self) -> Result<BTreeMap<String, ImageRecord>, ImageError> {
        let images = self.root.join(IMAGES);
        let mut out = BTreeMap::new();
        for entry in fs::read_dir(&images).at(&images)? {
            let path = entry.at(&images)?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let data = fs::read(&path).at(&path)?;
            match serde_json::from_slice::<ImageRecord>(&data) {
                Ok(rec) => {
                    out.insert(rec.id.clone(), rec);
                }
                // One bad record must not take the node's other images down with it.
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping unreadable image record")
                }
            }
        }
        Ok(out)
    }

    fn read_index(&self) -> RwLockReadGuard<'_, BTreeMap<String, ImageRecord>> {
        // A panic while holding the lock cannot leave a half-updated map (each update is one
        // insert or remove), so a poisoned lock is still usable.
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_index(&self) -> RwLockWriteGuard<'_, BTreeMap<String, ImageRecord>> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    // ---- blobs ----

    /// Where the blob `digest` lives if present, `NotFound` otherwise.
    pub fn blob_path(&self, digest: &Digest) -> Result<PathBuf, ImageError> {
        let path = self.blob_location(digest)?;
        if path.exists() {
            Ok(path)
        } else {
            Err(ImageError::NotFound {
                reference: digest.to_string(),
            })
        }
    }

    /// True when the blob is in the store (and therefore verified).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_location(digest).is_ok_and(|p| p.exists())
    }

    fn blob_location(&self, digest: &Digest) -> Result<PathBuf, ImageError> {
        if *digest.algorithm() != DigestAlgorithm::Sha256 {
            return Err(ImageError::format(
                format!("digest {digest}"),
                "only sha256 content is supported",
            ));
        }
        Ok(self.root.join(BLOBS).join(digest.digest()))
    }

    /// Stores the content of `reader` as blob `expected`, hashing it while it is written to a
    /// temporary file in `ingest/`; it is renamed into `blobs/` only if the digest matches.
    /// Idempotent: a blob already present is not read again (present means verified).
    pub fn write_blob(&self, expected: &Digest, reader: impl Read) -> Result<PathBuf, ImageError> {
        let dest = self.blob_location(expected)?;
        if dest.exists() {
            return Ok(dest);
        }
        let (actual, tmp, _) = self.ingest(reader)?;
        if actual != expected.as_ref() {
            let _ = fs::remove_file(&tmp);
            return Err(ImageError::DigestMismatch {
                expected: expected.to_string(),
                actual,
            });
        }
        fs::rename(&tmp, &dest).at(&dest)?;
        Ok(dest)
    }

    /// Stores content whose digest is not known in advance (docker-archive layers) under the
    /// digest computed while writing it. Returns `(digest, path, size)`.
    pub fn write_blob_unverified(
        &self,
        reader: impl Read,
    ) -> Result<(Digest, PathBuf, u64), ImageError> {
        let (actual, tmp, size) = self.ingest(reader)?;
        let digest = parse_digest(&actual)?;
        let dest = self.blob_location(&digest)?;
        fs::rename(&tmp, &dest).at(&dest)?;
        Ok((digest, dest, size))
    }

    /// Copies `reader` into a fresh file in `ingest/`, fsynced; returns its digest and size.
    fn ingest(&self, mut reader: impl Read) -> Result<(String, PathBuf, u64), ImageError> {
        let tmp = self.root.join(INGEST).join(&new_id()[..24]);
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .at(&tmp)?;
        let mut w = HashingWriter::new(file);
        let res = copy_in_large_writes(&mut reader, &mut w).and_then(|_| w.inner.sync_all());
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(e).at(&tmp);
        }
        Ok((w.digest(), tmp, w.count))
    }

    /// Reads a small blob (manifest, index, config) into memory.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(digest)?;
        let f = File::open(&path).at(&path)?;
        let mut buf = Vec::new();
        f.take(MAX_JSON_BLOB + 1).read_to_end(&mut buf).at(&path)?;
        if buf.len() as u64 > MAX_JSON_BLOB {
            return Err(ImageError::format(
                format!("blob {digest}"),
                format!("larger than {MAX_JSON_BLOB} bytes"),
            ));
        }
        Ok(buf)
    }

    // ---- layers ----

    /// `layers/<chain hex>` for a chain ID.
    pub fn layer_dir(&self, chain_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.root.join(LAYERS).join(sha256_hex(chain_id)?))
    }

    /// True when the layer `chain_id` is completely unpacked.
    pub fn has_layer(&self, chain_id: &str) -> bool {
        self.layer_dir(chain_id)
            .is_ok_and(|d| d.join(COMPLETE).exists())
    }

    /// Unpacks the layer blob at `blob` (a gzip- or zstd-compressed or plain tar; the content is
    /// sniffed, `media_type` only names the layer in errors) on top of `parent_chain`, checks
    /// that the uncompressed stream hashes to `diff_id`, and returns the layer's chain ID. A
    /// layer that is already unpacked is not unpacked again, so images sharing a base share its
    /// directory.
    pub fn unpack_layer(
        &self,
        parent_chain: Option<&str>,
        diff_id: &str,
        blob: &Path,
        media_type: &MediaType,
    ) -> Result<String, ImageError> {
        sha256_hex(diff_id)?;
        if let Some(p) = parent_chain {
            if !self.has_layer(p) {
                return Err(ImageError::format(
                    format!("layer {diff_id}"),
                    format!("parent layer {p} is not unpacked"),
                ));
            }
        }
        let chain = chain_id(parent_chain, diff_id);
        if self.has_layer(&chain) {
            return Ok(chain);
        }
        let layer = self.prepare_stored_layer(parent_chain, diff_id, blob, media_type)?;
        self.commit_layer(layer)
    }

    /// [`prepare_layer`](Self::prepare_layer) of the blob file at `blob`.
    pub fn prepare_stored_layer(
        &self,
        parent_chain: Option<&str>,
        diff_id: &str,
        blob: &Path,
        media_type: &MediaType,
    ) -> Result<PreparedLayer, ImageError> {
        let file = BufReader::with_capacity(READ_BUF, File::open(blob).at(blob)?);
        self.prepare_layer(parent_chain, diff_id, file, media_type)
    }

    /// The first half of [`unpack_layer`](Self::unpack_layer), for a blob still being
    /// downloaded: unpacks the layer blob read from `compressed` into a temporary directory and
    /// checks its diff ID, but gives it no name yet. Neither the parent nor an existing copy of
    /// the layer is looked at: the layer's content does not depend on them, and
    /// [`commit_layer`](Self::commit_layer) checks both.
    pub fn prepare_layer(
        &self,
        parent_chain: Option<&str>,
        diff_id: &str,
        compressed: impl BufRead,
        media_type: &MediaType,
    ) -> Result<PreparedLayer, ImageError> {
        sha256_hex(diff_id)?;
        let chain = chain_id(parent_chain, diff_id);
        let tmp = self.root.join(LAYERS).join(format!(
            "{TMP_PREFIX}{}-{}",
            sha256_hex(&chain)?,
            &new_id()[..8]
        ));
        // From here on, an error drops `layer`, which removes the temporary directory.
        let layer = PreparedLayer {
            tmp: Some(tmp.clone()),
            dest: self.layer_dir(&chain)?,
            chain,
            parent: parent_chain.map(str::to_string),
        };
        self.unpack_into(
            &tmp,
            &layer.chain,
            parent_chain,
            diff_id,
            compressed,
            media_type,
        )?;
        Ok(layer)
    }

    /// Syncs a prepared layer and gives it its chain-ID name, which says "complete". Refused
    /// while its parent is not complete: the store never holds a complete layer above an
    /// incomplete one. Returns the chain ID.
    pub fn commit_layer(&self, mut layer: PreparedLayer) -> Result<String, ImageError> {
        if let Some(p) = &layer.parent {
            if !self.has_layer(p) {
                return Err(ImageError::format(
                    format!("layer {}", layer.chain),
                    format!("parent layer {p} is not unpacked"),
                ));
            }
        }
        let Some(tmp) = layer.tmp.take() else {
            return Err(ImageError::format(
                format!("layer {}", layer.chain),
                "already committed",
            ));
        };
        let res = sync_and_mark_complete(&tmp).and_then(|()| {
            let dest = &layer.dest;
            match fs::rename(&tmp, dest) {
                Ok(()) => Ok(()),
                // Someone else finished the same layer first: theirs is as good as ours.
                Err(_) if dest.join(COMPLETE).exists() => remove_any(&tmp),
                Err(e) => Err(e).at(dest),
            }
        });
        if res.is_err() {
            let _ = remove_any(&tmp);
        }
        res.map(|()| layer.chain.clone())
    }

    fn unpack_into(
        &self,
        tmp: &Path,
        chain: &str,
        parent: Option<&str>,
        diff_id: &str,
        compressed: impl BufRead,
        media_type: &MediaType,
    ) -> Result<(), ImageError> {
        let diff = tmp.join("diff");
        fs::create_dir(tmp).at(tmp)?;
        fs::create_dir(&diff).at(&diff)?;

        let what = format!("layer {diff_id} ({media_type})");
        let started = Instant::now();
        let decompressed = decompressed(compressed).map_err(|e| ImageError::format(&what, e))?;
        // The tar reader's many small reads (headers, small files) are served from this buffer
        // instead of each being a call into the decompressor; file content is read past it.
        let mut tar = BufReader::with_capacity(READ_BUF, HashingReader::new(decompressed));
        let stats = unpack(&mut tar, &diff)?;
        let (actual, size) = tar
            .into_inner()
            .finish()
            .map_err(|e| ImageError::format(&what, e))?;
        if actual != diff_id {
            return Err(ImageError::DigestMismatch {
                expected: diff_id.to_string(),
                actual,
            });
        }

        let meta = LayerMeta {
            chain_id: chain.to_string(),
            diff_id: diff_id.to_string(),
            parent: parent.map(str::to_string),
        };
        let meta_path = tmp.join(LAYER_META);
        let json =
            serde_json::to_vec_pretty(&meta).map_err(|e| ImageError::format("layer.json", e))?;
        fs::write(&meta_path, json).at(&meta_path)?;
        tracing::debug!(
            layer = %chain,
            entries = stats.entries,
            skipped = stats.skipped,
            bytes = size,
            secs = started.elapsed().as_secs_f32(),
            "layer unpacked"
        );
        Ok(())
    }

    /// The layer content directories of an image, topmost first: the order overlayfs wants in
    /// `lowerdir=`. `add_image` checked they exist; only [`super::gc`] removes layers, and
    /// never those of an image record.
    pub fn layer_dirs(&self, rec: &ImageRecord) -> Vec<PathBuf> {
        rec.chain_ids
            .iter()
            .rev()
            .filter_map(|c| self.layer_dir(c).ok())
            .map(|d| d.join("diff"))
            .collect()
    }

    // ---- images ----

    /// Records the image described by `manifest` and `config` (the config blob's bytes), whose
    /// layers must already be unpacked. `manifest_digest` is the digest the image is known by
    /// in a registry (the index digest for a multi-platform image). `name`, when given, becomes
    /// a repo tag (normalised; moved away from any other image that had it) and a repo digest.
    /// Adding an image that exists merges the names.
    pub fn add_image(
        &self,
        manifest_digest: &Digest,
        manifest: &ImageManifest,
        config: &[u8],
        name: Option<&str>,
    ) -> Result<ImageRecord, ImageError> {
        let config_digest = sha256(config);
        if config_digest != manifest.config().digest().as_ref() {
            return Err(ImageError::DigestMismatch {
                expected: manifest.config().digest().to_string(),
                actual: config_digest,
            });
        }
        self.write_blob(manifest.config().digest(), config)?;
        let parsed: ImageConfiguration = serde_json::from_slice(config)
            .map_err(|e| ImageError::format(format!("image config {config_digest}"), e))?;
        let diff_ids = parsed.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(ImageError::format(
                format!("image {config_digest}"),
                format!(
                    "config lists {} diff IDs but the manifest {} layers",
                    diff_ids.len(),
                    manifest.layers().len()
                ),
            ));
        }
        let mut chain_ids = Vec::with_capacity(diff_ids.len());
        for diff in diff_ids {
            let chain = chain_id(chain_ids.last().map(String::as_str), diff);
            if !self.has_layer(&chain) {
                return Err(ImageError::format(
                    format!("image {config_digest}"),
                    format!("layer {chain} (diff {diff}) is not unpacked"),
                ));
            }
            chain_ids.push(chain);
        }
        let (tag, repo_digest) = match name {
            None => (None, None),
            Some(n) => {
                let r = Reference::parse(n)?;
                if let Some(d) = r.digest() {
                    if d != manifest_digest.as_ref() {
                        return Err(ImageError::DigestMismatch {
                            expected: d.to_string(),
                            actual: manifest_digest.to_string(),
                        });
                    }
                }
                (
                    r.tagged(),
                    Some(format!("{}@{manifest_digest}", r.repository())),
                )
            }
        };
        let size =
            manifest.config().size() + manifest.layers().iter().map(|l| l.size()).sum::<u64>();

        let mut index = self.write_index();
        let mut rec = index.get(&config_digest).cloned().unwrap_or(ImageRecord {
            id: config_digest.clone(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            size,
            config_digest: config_digest.clone(),
            manifest_digest: manifest_digest.to_string(),
            chain_ids,
            config: parsed,
        });
        rec.manifest_digest = manifest_digest.to_string();
        if let Some(d) = repo_digest {
            if !rec.repo_digests.contains(&d) {
                rec.repo_digests.push(d);
            }
        }
        if let Some(t) = tag {
            // Take the tag from its previous owner first: a crash in between leaves the tag
            // on no image rather than on two.
            let owners: Vec<String> = index
                .values()
                .filter(|o| o.id != rec.id && o.repo_tags.contains(&t))
                .map(|o| o.id.clone())
                .collect();
            for id in owners {
                let mut old = index[&id].clone();
                old.repo_tags.retain(|x| x != &t);
                self.persist(&old)?;
                index.insert(id, old);
            }
            if !rec.repo_tags.contains(&t) {
                rec.repo_tags.push(t);
            }
        }
        self.persist(&rec)?;
        index.insert(rec.id.clone(), rec.clone());
        Ok(rec)
    }

    fn persist(&self, rec: &ImageRecord) -> Result<(), ImageError> {
        let path = self.record_path(&rec.id)?;
        let json = serde_json::to_vec_pretty(rec)
            .map_err(|e| ImageError::format(format!("image record {}", rec.id), e))?;
        atomic_write(&path, &json).at(&path)
    }

    fn record_path(&self, id: &str) -> Result<PathBuf, ImageError> {
        Ok(self
            .root
            .join(IMAGES)
            .join(format!("{}.json", sha256_hex(id)?)))
    }

    /// All images, ordered by ID.
    pub fn list(&self) -> Vec<ImageRecord> {
        if let Err(e) = self.refresh() {
            tracing::warn!(error = %e, "reloading image records");
        }
        self.read_index().values().cloned().collect()
    }

    /// Finds an image by full ID (`sha256:<hex>` or the bare hex), by tag (normalised, so
    /// `busybox` finds `docker.io/library/busybox:latest`), by repo digest
    /// (`name@sha256:<manifest>`), or by a unique ID prefix of at least 12 hex digits.
    pub fn get(&self, reference: &str) -> Result<ImageRecord, ImageError> {
        self.refresh()?;
        let index = self.read_index();
        let not_found = || ImageError::NotFound {
            reference: reference.to_string(),
        };
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        let is_hex = !hex.is_empty() && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if is_hex && hex.len() == 64 {
            return index
                .get(&format!("sha256:{hex}"))
                .cloned()
                .ok_or_else(not_found);
        }
        if let Ok(r) = Reference::parse(reference) {
            // `name:tag@digest` is found by its digest, as in docker: the tag is informational.
            let hit = match (r.digested(), r.tagged()) {
                (Some(d), _) => index.values().find(|i| i.repo_digests.contains(&d)),
                (None, Some(t)) => index.values().find(|i| i.repo_tags.contains(&t)),
                (None, None) => None,
            };
            if let Some(rec) = hit {
                return Ok(rec.clone());
            }
        }
        if is_hex && hex.len() >= MIN_ID_PREFIX {
            let prefix = format!("sha256:{hex}");
            let mut hits = index
                .range(prefix.clone()..)
                .take_while(|(id, _)| id.starts_with(&prefix));
            return match (hits.next(), hits.next()) {
                (Some((_, rec)), None) => Ok(rec.clone()),
                (Some(_), Some(_)) => Err(ImageError::Ambiguous {
                    reference: reference.to_string(),
                }),
                (None, _) => Err(not_found()),
            };
        }
        Err(not_found())
    }

    /// Removes the image `reference` resolves to (see [`get`](Self::get)) with all its names.
    /// Its blobs and layers stay until [`super::gc`] runs: a running container may still use
    /// the layers as its lower directories, and the collector is told which.
    pub fn remove(&self, reference: &str) -> Result<ImageRecord, ImageError> {
        let rec = self.get(reference)?;
        let mut index = self.write_index();
        let path = self.record_path(&rec.id)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(&path),
        }
        index.remove(&rec.id);
        Ok(rec)
    }

    // ---- garbage collection support (see `super::gc`) ----

    /// Every blob in the store: `(sha256:<hex>, size in bytes)`.
    pub fn list_blobs(&self) -> Result<Vec<(String, u64)>, ImageError> {
        let dir = self.root.join(BLOBS);
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
            if sha256_hex(&digest).is_err() {
                continue;
            }
            let size = entry.metadata().at(entry.path())?.len();
            out.push((digest, size));
        }
        Ok(out)
    }

    /// Deletes the blob `digest`; returns the bytes freed (0 if it was not there).
    pub fn remove_blob(&self, digest: &str) -> Result<u64, ImageError> {
        let path = self.root.join(BLOBS).join(sha256_hex(digest)?);
        let size = match fs::symlink_metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e).at(&path),
        };
        match fs::remove_file(&path) {
            Ok(()) => Ok(size),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e).at(&path),
        }
    }

    /// The chain IDs of all completely unpacked layers.
    pub fn list_layers(&self) -> Result<Vec<String>, ImageError> {
        let dir = self.root.join(LAYERS);
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).at(&dir)? {
            let path = entry.at(&dir)?.path();
            let chain = format!(
                "sha256:{}",
                path.file_name().unwrap_or_default().to_string_lossy()
            );
            if sha256_hex(&chain).is_ok() && path.join(COMPLETE).exists() {
                out.push(chain);
            }
        }
        Ok(out)
    }

    /// The chain ID of the layer below `chain_id`, from its `layer.json` (`None` for a bottom
    /// layer, or when the layer or its metadata is missing).
    pub fn layer_parent(&self, chain_id: &str) -> Option<String> {
        let path = self.layer_dir(chain_id).ok()?.join(LAYER_META);
        let data = fs::read(&path).ok()?;
        serde_json::from_slice::<LayerMeta>(&data).ok()?.parent
    }

    /// Takes the layer `chain_id` out of use by renaming it to a `.trash-*` name (which
    /// [`open`](Self::open) deletes should the caller crash before it does); returns the new
    /// path, or `None` if the layer was not there. Delete it with [`remove_trash`](Self::remove_trash).
    pub fn trash_layer(&self, chain_id: &str) -> Result<Option<PathBuf>, ImageError> {
        let dir = self.layer_dir(chain_id)?;
        let trash = self.root.join(LAYERS).join(format!(
            "{TRASH_PREFIX}{}-{}",
            sha256_hex(chain_id)?,
            &new_id()[..8]
        ));
        match fs::rename(&dir, &trash) {
            Ok(()) => Ok(Some(trash)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at(&dir),
        }
    }

    /// The `.trash-*` directories left in `layers/` (by a collector that has not finished).
    pub fn trash_dirs(&self) -> Result<Vec<PathBuf>, ImageError> {
        let dir = self.root.join(LAYERS);
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).at(&dir)? {
            let path = entry.at(&dir)?.path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(TRASH_PREFIX))
            {
                out.push(path);
            }
        }
        Ok(out)
    }

    /// Deletes a directory returned by [`trash_layer`](Self::trash_layer) or
    /// [`trash_dirs`](Self::trash_dirs); anything else is refused.
    pub fn remove_trash(&self, path: &Path) -> Result<(), ImageError> {
        let ok = path.parent() == Some(&self.root.join(LAYERS))
            && path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(TRASH_PREFIX));
        if !ok {
            return Err(ImageError::format(
                path.display().to_string(),
                "not a trashed layer of this store",
            ));
        }
        remove_any(path)
    }
}

/// A layer unpacked into a temporary directory of the store by [`ImageStore::prepare_layer`]
/// and verified, waiting for [`ImageStore::commit_layer`]. Dropped uncommitted, it removes its
/// directory (blocking I/O).
#[derive(Debug)]
pub struct PreparedLayer {
    /// The temporary directory; None once committed.
    tmp: Option<PathBuf>,
    dest: PathBuf,
    chain: String,
    parent: Option<String>,
}

impl Drop for PreparedLayer {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            if let Err(e) = remove_any(&tmp) {
                tracing::warn!(error = %e, "removing an uncommitted layer");
            }
        }
    }
}

/// Puts a prepared layer's files on disk and writes its `.complete` marker, the last step
/// before its directory gets the name that says "complete". One syncfs covers the thousands
/// of files a layer may hold; done here rather than when the layer was unpacked, it also
/// covers, in one go, the layers above that were unpacked meanwhile and wait for this one.
fn sync_and_mark_complete(tmp: &Path) -> Result<(), ImageError> {
    let started = Instant::now();
    let dir = File::open(tmp).at(tmp)?;
    // SAFETY: syncfs only reads the descriptor, which `dir` keeps open across the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error()).at(tmp);
    }
    let complete = tmp.join(COMPLETE);
    fs::write(&complete, b"").at(&complete)?;
    tracing::debug!(dir = %tmp.display(), secs = started.elapsed().as_secs_f32(), "layer synced");
    Ok(())
}

/// Copies `reader` to `w` in writes of [`READ_BUF`] bytes whatever the sizes `reader` hands
/// out (a download's chunks range from a few KiB up): fewer syscalls and hash updates.
fn copy_in_large_writes(reader: &mut impl Read, w: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = read_full(reader, &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        w.write_all(&buf[..n])?;
    }
}

/// The hex part of a `sha256:<64 hex>` string, which is then safe as a file name.
pub(crate) fn sha256_hex(digest: &str) -> Result<&str, ImageError> {
    match digest.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
            Ok(h)
        }
        _ => Err(ImageError::format(
            format!("digest {digest:?}"),
            "expected sha256:<64 lower-case hex digits>",
        )),
    }
}

pub(crate) fn parse_digest(s: &str) -> Result<Digest, ImageError> {
    s.parse::<Digest>()
        .map_err(|e| ImageError::format(format!("digest {s:?}"), e))
}

fn remove_any(path: &Path) -> Result<(), ImageError> {
    let res = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    res.at(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{DescriptorBuilder, ImageManifestBuilder};

    use crate::fsutil::TempDir;

    /// A one-file layer tar, its diff ID, and a gzip of it.
    fn layer(file: &str, content: &[u8]) -> (Vec<u8>, String) {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, file, content).unwrap();
        let tar = b.into_inner().unwrap();
        let diff = sha256(&tar);
        (tar, diff)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// Stores layers and config of a fake image; returns (manifest digest, manifest, config).
    fn fake_image(
        store: &ImageStore,
        files: &[(&str, &[u8])],
        label: &str,
    ) -> (Digest, ImageManifest, Vec<u8>) {
        let mut parent: Option<String> = None;
        let mut diff_ids = Vec::new();
        let mut descs = Vec::new();
        for (name, content) in files {
            let (tar, diff) = layer(name, content);
            let gz = gzip(&tar);
            let d = parse_digest(&sha256(&gz)).unwrap();
            let path = store.write_blob(&d, &gz[..]).unwrap();
            let chain = store
                .unpack_layer(parent.as_deref(), &diff, &path, &MediaType::ImageLayerGzip)
                .unwrap();
            parent = Some(chain);
            diff_ids.push(diff);
            descs.push(
                DescriptorBuilder::default()
                    .media_type(MediaType::ImageLayerGzip)
                    .digest(d)
                    .size(gz.len() as u64)
                    .build()
                    .unwrap(),
            );
        }
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Labels": {"x": label}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config = serde_json::to_vec(&config).unwrap();
        let manifest = ImageManifestBuilder::default()
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
        let mdigest = parse_digest(&sha256(manifest.to_string().unwrap().as_bytes())).unwrap();
        (mdigest, manifest, config)
    }

    #[test]
    fn store_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ImageStore>();
    }

    #[test]
    fn blobs_are_verified_and_idempotent() {
        let dir = TempDir::new("blobs");
        let store = ImageStore::open(&dir.0).unwrap();
        let good = parse_digest(&sha256(b"hello")).unwrap();
        let p = store.write_blob(&good, &b"hello"[..]).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"hello");
        assert_eq!(store.blob_path(&good).unwrap(), p);
        // Present: not read again, even if the reader would now fail.
        store.write_blob(&good, &b"garbage"[..]).unwrap();

        let wrong = parse_digest(&sha256(b"expected")).unwrap();
        match store.write_blob(&wrong, &b"actual"[..]) {
            Err(ImageError::DigestMismatch { expected, actual }) => {
                assert_eq!(expected, wrong.to_string());
                assert_eq!(actual, sha256(b"actual"));
            }
            other => panic!("{other:?}"),
        }
        assert!(!store.has_blob(&wrong));
        assert_eq!(
            fs::read_dir(dir.0.join(INGEST)).unwrap().count(),
            0,
            "ingest not cleaned"
        );
    }

    #[test]
    fn open_removes_leftovers_and_keeps_records() {
        let dir = TempDir::new("reopen");
        let store = ImageStore::open(&dir.0).unwrap();
        let (md, m, c) = fake_image(&store, &[("a", b"1")], "x");
        let rec = store
            .add_image(&md, &m, &c, Some("example.com/a:1"))
            .unwrap();
        drop(store);
        fs::write(dir.0.join(INGEST).join("partial"), b"x").unwrap();
        fs::create_dir_all(dir.0.join(LAYERS).join(".tmp-abc/diff")).unwrap();
        fs::create_dir_all(dir.0.join(LAYERS).join("f".repeat(64)).join("diff")).unwrap();
        fs::write(dir.0.join(IMAGES).join(".x.json.tmp"), b"{").unwrap();
        let store = ImageStore::open(&dir.0).unwrap();
        assert_eq!(fs::read_dir(dir.0.join(INGEST)).unwrap().count(), 0);
        assert!(!dir.0.join(LAYERS).join(".tmp-abc").exists());
        assert!(!dir.0.join(LAYERS).join("f".repeat(64)).exists());
        assert!(!dir.0.join(IMAGES).join(".x.json.tmp").exists());
        assert_eq!(store.get("example.com/a:1").unwrap(), rec);
        assert_eq!(store.layer_dirs(&rec).len(), 1);
        assert_eq!(fs::read(store.layer_dirs(&rec)[0].join("a")).unwrap(), b"1");
    }

    #[test]
    fn layer_count_is_bounded() {
        check_layer_count("image x", MAX_LAYERS).unwrap();
        let e = check_layer_count("image x", 20_000)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("image x") && e.contains("20000 layers; at most 500"),
            "{e}"
        );
    }

    #[test]
    fn layers_chain_and_diff_ids_are_checked() {
        let dir = TempDir::new("layers");
        let store = ImageStore::open(&dir.0).unwrap();
        let (tar, diff) = layer("f", b"data");
        let d = parse_digest(&sha256(&tar)).unwrap();
        let path = store.write_blob(&d, &tar[..]).unwrap();
        // A plain (uncompressed) tar: its blob digest is its diff ID.
        let c1 = store
            .unpack_layer(None, &diff, &path, &MediaType::ImageLayer)
            .unwrap();
        assert_eq!(c1, diff);
        let c2 = store
            .unpack_layer(Some(&c1), &diff, &path, &MediaType::ImageLayer)
            .unwrap();
        assert_eq!(c2, chain_id(Some(&c1), &diff));
        assert!(store.layer_dir(&c2).unwrap().join(LAYER_META).exists());

        let wrong = sha256(b"not this");
        match store.unpack_layer(None, &wrong, &path, &MediaType::ImageLayer) {
            Err(ImageError::DigestMismatch { expected, actual }) => {
                assert_eq!(expected, wrong);
                assert_eq!(actual, diff);
            }
            other => panic!("{other:?}"),
        }
        assert!(!store.has_layer(&wrong));
        let leftovers: Vec<_> = fs::read_dir(dir.0.join(LAYERS))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(TMP_PREFIX)
            })
            .collect();
        assert!(leftovers.is_empty(), "temp layer dir left behind");
        assert!(
            store
                .unpack_layer(Some(&wrong), &diff, &path, &MediaType::ImageLayer)
                .is_err(),
            "a missing parent must be refused"
        );
    }

    #[test]
    fn zstd_layers_unpack() {
        let dir = TempDir::new("zstd");
        let store = ImageStore::open(&dir.0).unwrap();
        let (tar, diff) = layer("g", b"other");
        // Two frames, as parallel compressors write them.
        let mut z = zstd::stream::encode_all(&tar[..100], 3).unwrap();
        z.extend(zstd::stream::encode_all(&tar[100..], 3).unwrap());
        let d = parse_digest(&sha256(&z)).unwrap();
        let path = store.write_blob(&d, &z[..]).unwrap();
        let chain = store
            .unpack_layer(None, &diff, &path, &MediaType::ImageLayerZstd)
            .unwrap();
        let dir = store.layer_dir(&chain).unwrap().join("diff");
        assert_eq!(fs::read(dir.join("g")).unwrap(), b"other");
        // Corrupt zstd fails cleanly and leaves no temp layer.
        let mut bad = z.clone();
        let n = bad.len();
        bad.truncate(n / 2);
        let (_, diff2) = layer("h", b"x");
        let d2 = parse_digest(&sha256(&bad)).unwrap();
        let path2 = store.write_blob(&d2, &bad[..]).unwrap();
        assert!(store
            .unpack_layer(None, &diff2, &path2, &MediaType::ImageLayerZstd)
            .is_err());
        assert!(!store.has_layer(&diff2));
    }

    #[test]
    fn tags_move_and_lookups_resolve() {
        let dir = TempDir::new("tags");
        let store = ImageStore::open(&dir.0).unwrap();
        let (md1, m1, c1) = fake_image(&store, &[("a", b"1")], "one");
        let (md2, m2, c2) = fake_image(&store, &[("a", b"1"), ("b", b"2")], "two");

        let one = store.add_image(&md1, &m1, &c1, Some("busybox")).unwrap();
        assert_eq!(one.id, sha256(&c1));
        assert_eq!(one.repo_tags, ["docker.io/library/busybox:latest"]);
        assert_eq!(
            one.repo_digests,
            [format!("docker.io/library/busybox@{md1}")]
        );
        assert_eq!(one.chain_ids.len(), 1);

        // Same image, new tag: the tag is added.
        let one = store.add_image(&md1, &m1, &c1, Some("busybox:v1")).unwrap();
        assert_eq!(one.repo_tags.len(), 2);
        assert_eq!(store.list().len(), 1);

        // Another image takes `latest`.
        let two = store
            .add_image(&md2, &m2, &c2, Some("docker.io/library/busybox:latest"))
            .unwrap();
        assert_eq!(two.repo_tags, ["docker.io/library/busybox:latest"]);
        assert_eq!(
            store.get(&one.id).unwrap().repo_tags,
            ["docker.io/library/busybox:v1"]
        );
        assert_eq!(
            two.chain_ids[0], one.chain_ids[0],
            "the shared base layer is shared"
        );
        let dirs = store.layer_dirs(&two);
        assert_eq!(dirs.len(), 2);
        assert!(dirs[0].join("b").exists(), "topmost first");
        assert!(dirs[1].join("a").exists());

        // Lookups.
        assert_eq!(store.get("busybox").unwrap().id, two.id);
        assert_eq!(store.get("busybox:v1").unwrap().id, one.id);
        assert_eq!(store.get(&one.id).unwrap().id, one.id);
        assert_eq!(store.get(&one.id[7..]).unwrap().id, one.id);
        assert_eq!(store.get(&one.id[7..19]).unwrap().id, one.id);
        assert_eq!(store.get(&format!("busybox@{md1}")).unwrap().id, one.id);
        assert_eq!(
            store.get(&format!("busybox:whatever@{md2}")).unwrap().id,
            two.id
        );
        assert!(matches!(
            store.get("nope"),
            Err(ImageError::NotFound { .. })
        ));
        assert!(
            matches!(store.get(&one.id[7..15]), Err(ImageError::NotFound { .. })),
            "prefix too short"
        );

        // A name with a digest that is not the manifest's is refused.
        assert!(matches!(
            store.add_image(&md1, &m1, &c1, Some(&format!("busybox@{md2}"))),
            Err(ImageError::DigestMismatch { .. })
        ));
        // A config that is not the manifest's is refused.
        assert!(matches!(
            store.add_image(&md1, &m1, &c2, None),
            Err(ImageError::DigestMismatch { .. })
        ));

        // Removal by tag, then the record is gone from disk and from a reopened store.
        store.remove("busybox:v1").unwrap();
        assert!(matches!(
            store.get(&one.id),
            Err(ImageError::NotFound { .. })
        ));
        let reopened = ImageStore::open(&dir.0).unwrap();
        assert_eq!(reopened.list(), vec![two]);
    }

    #[test]
    fn ambiguous_prefixes_are_refused() {
        let dir = TempDir::new("ambig");
        let store = ImageStore::open(&dir.0).unwrap();
        // Two fake records sharing a 12-digit prefix, written straight into the index.
        let (md, m, c) = fake_image(&store, &[("a", b"1")], "x");
        let rec = store.add_image(&md, &m, &c, None).unwrap();
        let mut other = rec.clone();
        other.id = format!("{}{}", &rec.id[..19], "0".repeat(71 - 19));
        // Bring the index up to date with disk first, or the next read would reload it.
        store.refresh().unwrap();
        store.write_index().insert(other.id.clone(), other);
        assert!(matches!(
            store.get(&rec.id[7..19]),
            Err(ImageError::Ambiguous { .. })
        ));
        assert_eq!(store.get(&rec.id[7..30]).unwrap().id, rec.id);
    }
}
