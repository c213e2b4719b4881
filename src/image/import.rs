//! Importing images from files: an OCI image layout (a directory with `oci-layout`,
//! `index.json` and `blobs/`, or a tar of one, as `skopeo copy oci-archive:` or
//! `ctr images export` write) or a docker-archive (`docker save`: `manifest.json`, a config
//! JSON and one tar per layer; docker 25+ writes both forms in one tar and the OCI one wins).
//!
//! Tars are read in one pass and never extracted by name: files under `blobs/sha256/` go
//! straight into the store through [`ImageStore::write_blob`], which verifies them against the
//! digest in their name; other large files (docker-archive layer tars) are stored under the
//! digest computed while writing them; small files (JSON documents) are kept in memory. Every
//! image found then goes through the same steps as a registry pull will: manifest → config →
//! layers unpacked bottom-up with their diff IDs checked → [`ImageStore::add_image`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{
    Descriptor, DescriptorBuilder, Digest, ImageConfiguration, ImageIndex, ImageManifest,
    ImageManifestBuilder, MediaType,
};
use serde::Deserialize;

use super::digest::sha256;
use super::platform::pick_platform;
use super::store::{check_layer_count, parse_digest, sha256_hex, MAX_JSON_BLOB};
use super::unpack::clean_path;
use super::{ImageError, ImageRecord, ImageStore, IoContext};

/// Annotations naming an image in an OCI index, in order of preference. containerd writes the
/// full name in the first; the OCI spec's ref.name is often only a tag (`latest`), so it is
/// used only when it looks like a full reference.
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Files of a tar up to this size are kept in memory; larger ones go to the blob store.
const SMALL_FILE: u64 = 1 << 20;
/// Bound on all in-memory files of one archive together.
const MAX_SMALL_TOTAL: u64 = 64 << 20;
/// Symlink hops followed when looking a file up in a tar (docker-archive dedups layers so).
const MAX_LINK_HOPS: usize = 16;

/// Imports every image in the OCI layout or docker-archive at `path` (a directory or a tar)
/// into `store` and returns their records. `name` tags the image (only allowed when the
/// archive holds a single image) and takes precedence over names inside the archive. From a
/// multi-platform index only the manifest for this host (linux/<arch>) is imported.
pub fn import(
    store: &ImageStore,
    path: &Path,
    name: Option<&str>,
) -> Result<Vec<ImageRecord>, ImageError> {
    let meta = std::fs::metadata(path).at(path)?;
    let source = if meta.is_dir() {
        Source::Dir(path.to_path_buf())
    } else {
        let file = File::open(path).at(path)?;
        Source::scan_tar(store, BufReader::new(file), path)?
    };
    if let Some(n) = name {
        super::Reference::parse(n)?; // fail before unpacking anything
    }
    if source.read_small("oci-layout")?.is_some() {
        import_oci(store, &source, name)
    } else if let Some(m) = source.read_small("manifest.json")? {
        import_docker(store, &source, &m, name)
    } else {
        Err(ImageError::format(
            path.display().to_string(),
            "neither an OCI image layout (oci-layout, index.json) nor a docker-archive \
             (manifest.json)",
        ))
    }
}

// ---- OCI image layout ----

fn import_oci(
    store: &ImageStore,
    src: &Source,
    name: Option<&str>,
) -> Result<Vec<ImageRecord>, ImageError> {
    let index_json = src
        .read_small("index.json")?
        .ok_or_else(|| ImageError::format(src.describe(), "OCI layout without index.json"))?;
    let index: ImageIndex = parse_json("index.json", &index_json)?;
    let tops = index.manifests();
    if tops.is_empty() {
        return Err(ImageError::format(
            src.describe(),
            "index.json lists no images",
        ));
    }
    if name.is_some() && tops.len() > 1 {
        return Err(ImageError::format(
            src.describe(),
            format!(
                "holds {} images; a name can only be given for one",
                tops.len()
            ),
        ));
    }
    let mut out = Vec::new();
    for top in tops {
        let Some(manifest_desc) = resolve_platform(store, src, top)? else {
            continue;
        };
        let bytes = src.blob_bytes(store, &manifest_desc)?;
        let manifest: ImageManifest =
            parse_json(&format!("manifest {}", manifest_desc.digest()), &bytes)?;
        let image_name = name
            .map(str::to_string)
            .or_else(|| name_from_annotations(top));
        let config = src.blob_bytes(store, manifest.config())?;
        let mut parent: Option<String> = None;
        let diff_ids = diff_ids(&config, manifest.layers().len())?;
        for (layer, diff) in manifest.layers().iter().zip(&diff_ids) {
            let blob = src.blob(store, layer)?;
            parent =
                Some(store.unpack_layer(parent.as_deref(), diff, &blob, layer.media_type())?);
        }
        // The digest the image is known by is the top-level one: for a multi-platform image
        // that is the index, which is what `name@digest` refers to in a registry.
        let rec = store.add_image(top.digest(), &manifest, &config, image_name.as_deref())?;
        tracing::info!(id = %rec.id, tags = ?rec.repo_tags, "image imported");
        out.push(rec);
    }
    if out.is_empty() {
        return Err(ImageError::format(
            src.describe(),
            "index.json lists no image manifests",
        ));
    }
    Ok(out)
}

/// Follows a top-level descriptor to the image manifest for this host: itself if it is a
/// manifest, the matching entry if it is an index (nested indexes are followed). `None` for
/// descriptors that are not images (artifacts, attestations).
fn resolve_platform(
    store: &ImageStore,
    src: &Source,
    desc: &Descriptor,
) -> Result<Option<Descriptor>, ImageError> {
    let mut desc = desc.clone();
    for _ in 0..4 {
        let mt = desc.media_type().as_ref().to_string();
        if mt == MediaType::ImageManifest.as_ref() || mt == DOCKER_MANIFEST {
            return Ok(Some(desc));
        }
        if mt != MediaType::ImageIndex.as_ref() && mt != DOCKER_MANIFEST_LIST {
            tracing::warn!(digest = %desc.digest(), media_type = %mt, "skipping non-image entry");
            return Ok(None);
        }
        let bytes = src.blob_bytes(store, &desc)?;
        let index: ImageIndex = parse_json(&format!("index {}", desc.digest()), &bytes)?;
        desc = pick_platform(&index)
            .map_err(|reason| ImageError::format(format!("index {}", desc.digest()), reason))?;
    }
    Err(ImageError::format(
        format!("index {}", desc.digest()),
        "indexes nested too deeply",
    ))
}

fn name_from_annotations(desc: &Descriptor) -> Option<String> {
    let ann = desc.annotations().as_ref()?;
    if let Some(n) = ann.get(ANNOTATION_CONTAINERD_NAME) {
        return Some(n.clone());
    }
    ann.get(ANNOTATION_REF_NAME)
        .filter(|n| n.contains('/') || n.contains(':'))
        .cloned()
}

// ---- docker-archive ----

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn import_docker(
    store: &ImageStore,
    src: &Source,
    manifest_json: &[u8],
    name: Option<&str>,
) -> Result<Vec<ImageRecord>, ImageError> {
    let entries: Vec<DockerEntry> = parse_json("manifest.json", manifest_json)?;
    if entries.is_empty() {
        return Err(ImageError::format(
            src.describe(),
            "manifest.json lists no images",
        ));
    }
    if name.is_some() && entries.len() > 1 {
        return Err(ImageError::format(
            src.describe(),
            format!(
                "holds {} images; a name can only be given for one",
                entries.len()
            ),
        ));
    }
    let mut out = Vec::new();
    for entry in entries {
        let config = src.file_bytes(store, &entry.config)?;
        let diff_ids = diff_ids(&config, entry.layers.len())?;
        let mut parent: Option<String> = None;
        let mut descs = Vec::new();
        for (layer, diff) in entry.layers.iter().zip(&diff_ids) {
            let (digest, path, size) = src.file_blob(store, layer)?;
            let media_type = if is_gzip(&path)? {
                MediaType::ImageLayerGzip
            } else {
                MediaType::ImageLayer
            };
            parent = Some(store.unpack_layer(parent.as_deref(), diff, &path, &media_type)?);
            descs.push(descriptor(media_type, digest, size)?);
        }
        // docker save has no registry manifest, so one is made, as containerd does on import;
        // it is stored like any other blob and its digest becomes the image's repo digest.
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(descriptor(
                MediaType::ImageConfig,
                parse_digest(&sha256(&config))?,
                config.len() as u64,
            )?)
            .layers(descs)
            .build()
            .map_err(|e| ImageError::format("manifest", e))?;
        let manifest_bytes = manifest
            .to_string()
            .map_err(|e| ImageError::format("manifest", e))?
            .into_bytes();
        let manifest_digest = parse_digest(&sha256(&manifest_bytes))?;
        store.write_blob(&manifest_digest, &manifest_bytes[..])?;

        let names: Vec<String> = match name {
            Some(n) => vec![n.to_string()],
            None => entry.repo_tags.unwrap_or_default(),
        };
        let mut rec = store.add_image(
            &manifest_digest,
            &manifest,
            &config,
            names.first().map(String::as_str),
        )?;
        for n in names.iter().skip(1) {
            rec = store.add_image(&manifest_digest, &manifest, &config, Some(n))?;
        }
        tracing::info!(id = %rec.id, tags = ?rec.repo_tags, "image imported");
        out.push(rec);
    }
    Ok(out)
}

fn descriptor(media_type: MediaType, digest: Digest, size: u64) -> Result<Descriptor, ImageError> {
    DescriptorBuilder::default()
        .media_type(media_type)
        .digest(digest)
        .size(size)
        .build()
        .map_err(|e| ImageError::format("descriptor", e))
}

fn is_gzip(path: &Path) -> Result<bool, ImageError> {
    let mut magic = [0u8; 2];
    let mut f = File::open(path).at(path)?;
    let n = f.read(&mut magic).at(path)?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
}

/// The diff IDs of an image config, checked against the number of layers.
fn diff_ids(config: &[u8], layers: usize) -> Result<Vec<String>, ImageError> {
    check_layer_count(&format!("image config {}", sha256(config)), layers)?;
    let parsed: ImageConfiguration = parse_json("image config", config)?;
    let ids = parsed.rootfs().diff_ids().clone();
    if ids.len() != layers {
        return Err(ImageError::format(
            format!("image config {}", sha256(config)),
            format!("lists {} diff IDs for {layers} layers", ids.len()),
        ));
    }
    for id in &ids {
        sha256_hex(id)?;
    }
    Ok(ids)
}

fn parse_json<T: serde::de::DeserializeOwned>(what: &str, data: &[u8]) -> Result<T, ImageError> {
    serde_json::from_slice(data).map_err(|e| ImageError::format(what, e))
}

// ---- where the files come from ----

/// An import source: a directory on disk, or a tar already scanned into the store and memory.
enum Source {
    Dir(PathBuf),
    Tar {
        path: PathBuf,
        /// Small files by cleaned archive path.
        small: HashMap<String, Vec<u8>>,
        /// Large files by cleaned archive path, already in the blob store.
        large: HashMap<String, (Digest, u64)>,
        /// Symlinks and hard links: archive path → cleaned target archive path.
        links: HashMap<String, String>,
    },
}

impl Source {
    /// Reads a tar once: verified blobs into the store, other big files into the store by their
    /// computed digest, small files into memory.
    fn scan_tar(store: &ImageStore, reader: impl Read, path: &Path) -> Result<Source, ImageError> {
        let what = path.display().to_string();
        let mut small = HashMap::new();
        let mut large = HashMap::new();
        let mut links = HashMap::new();
        let mut small_total = 0u64;
        let mut archive = tar::Archive::new(reader);
        for entry in archive
            .entries()
            .map_err(|e| ImageError::format(&what, e))?
        {
            let mut entry = entry.map_err(|e| ImageError::format(&what, e))?;
            let Ok(comps) = clean_path(&entry.path_bytes()) else {
                continue; // a name climbing out of the archive cannot be referenced anyway
            };
            let name = join(&comps);
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                let Some(target) = entry.link_name_bytes() else {
                    continue;
                };
                let mut full = if kind.is_symlink() && !target.starts_with(b"/") {
                    // Relative to the link's directory.
                    let mut dir = comps
                        .iter()
                        .map(|c| c.as_encoded_bytes())
                        .collect::<Vec<_>>();
                    dir.pop();
                    dir.join(&b'/')
                } else {
                    Vec::new()
                };
                full.push(b'/');
                full.extend_from_slice(&target);
                if let Ok(t) = clean_path(&full) {
                    links.insert(name, join(&t));
                }
                continue;
            }
            if !(kind.is_file() || kind.is_contiguous()) {
                continue;
            }
            let size = entry.size();
            if let Some(digest) = blob_name_digest(&name) {
                store.write_blob(&digest, &mut entry)?;
                large.insert(name, (digest, size));
            } else if size <= SMALL_FILE {
                small_total += size;
                if small_total > MAX_SMALL_TOTAL {
                    return Err(ImageError::format(
                        &what,
                        "too many small files for an image archive",
                    ));
                }
                let mut buf = Vec::with_capacity(size as usize);
                entry
                    .read_to_end(&mut buf)
                    .map_err(|e| ImageError::format(&what, e))?;
                small.insert(name, buf);
            } else {
                let (digest, _, size) = store.write_blob_unverified(&mut entry)?;
                large.insert(name, (digest, size));
            }
        }
        Ok(Source::Tar {
            path: path.to_path_buf(),
            small,
            large,
            links,
        })
    }

    fn describe(&self) -> String {
        match self {
            Source::Dir(p) | Source::Tar { path: p, .. } => p.display().to_string(),
        }
    }

    /// Follows tar links to the name that holds the content.
    fn resolve<'a>(&'a self, name: &'a str) -> &'a str {
        let Source::Tar { links, .. } = self else {
            return name;
        };
        let mut cur = name;
        for _ in 0..MAX_LINK_HOPS {
            match links.get(cur) {
                Some(next) => cur = next,
                None => break,
            }
        }
        cur
    }

    /// A small file of the source by its path in the layout, `None` when absent.
    fn read_small(&self, name: &str) -> Result<Option<Vec<u8>>, ImageError> {
        match self {
            Source::Dir(root) => {
                let path = dir_path(root, name)?;
                match File::open(&path) {
                    Ok(f) => {
                        let mut buf = Vec::new();
                        f.take(MAX_JSON_BLOB + 1).read_to_end(&mut buf).at(&path)?;
                        if buf.len() as u64 > MAX_JSON_BLOB {
                            return Err(ImageError::format(
                                path.display().to_string(),
                                "too large",
                            ));
                        }
                        Ok(Some(buf))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e).at(&path),
                }
            }
            Source::Tar { small, .. } => Ok(small.get(self.resolve(name)).cloned()),
        }
    }

    /// The stored, verified blob a descriptor points at (copied in from a directory source),
    /// with its size checked against the descriptor.
    fn blob(&self, store: &ImageStore, desc: &Descriptor) -> Result<PathBuf, ImageError> {
        let digest = desc.digest();
        let hex = sha256_hex(digest.as_ref())?;
        let path = match self {
            Source::Dir(root) => {
                if !store.has_blob(digest) {
                    let src = root.join("blobs/sha256").join(hex);
                    let f = File::open(&src).at(&src)?;
                    store.write_blob(digest, BufReader::new(f))?;
                }
                store.blob_path(digest)?
            }
            Source::Tar { .. } => store.blob_path(digest).map_err(|_| {
                ImageError::format(self.describe(), format!("blob {digest} is missing"))
            })?,
        };
        let actual = std::fs::metadata(&path).at(&path)?.len();
        if actual != desc.size() {
            return Err(ImageError::format(
                format!("blob {digest}"),
                format!("size is {actual}, the descriptor says {}", desc.size()),
            ));
        }
        Ok(path)
    }

    fn blob_bytes(&self, store: &ImageStore, desc: &Descriptor) -> Result<Vec<u8>, ImageError> {
        self.blob(store, desc)?;
        store.read_blob(desc.digest())
    }

    /// A file named in a docker manifest.json, as a stored blob: `(digest, path, size)`.
    fn file_blob(
        &self,
        store: &ImageStore,
        name: &str,
    ) -> Result<(Digest, PathBuf, u64), ImageError> {
        match self {
            Source::Dir(root) => {
                let path = dir_path(root, name)?;
                let f = File::open(&path).at(&path)?;
                store.write_blob_unverified(BufReader::new(f))
            }
            Source::Tar { small, large, .. } => {
                let key = self.resolve(&clean_name(name)?).to_string();
                if let Some((digest, size)) = large.get(&key) {
                    return Ok((digest.clone(), store.blob_path(digest)?, *size));
                }
                match small.get(&key) {
                    Some(bytes) => store.write_blob_unverified(&bytes[..]),
                    None => Err(ImageError::format(
                        self.describe(),
                        format!("{name} is missing"),
                    )),
                }
            }
        }
    }

    /// A file named in a docker manifest.json, read into memory (the config).
    fn file_bytes(&self, store: &ImageStore, name: &str) -> Result<Vec<u8>, ImageError> {
        if let Source::Tar { large, .. } = self {
            if let Some((digest, _)) = large.get(self.resolve(&clean_name(name)?)) {
                return store.read_blob(digest);
            }
        }
        self.read_small(&clean_name(name)?)?
            .ok_or_else(|| ImageError::format(self.describe(), format!("{name} is missing")))
    }
}

/// `blobs/sha256/<hex>` → its digest.
fn blob_name_digest(name: &str) -> Option<Digest> {
    let hex = name.strip_prefix("blobs/sha256/")?;
    let d = format!("sha256:{hex}");
    sha256_hex(&d).ok()?;
    parse_digest(&d).ok()
}

fn join(comps: &[std::ffi::OsString]) -> String {
    comps
        .iter()
        .map(|c| c.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// A relative name from a manifest, cleaned; `..` out of the layout is refused.
fn clean_name(name: &str) -> Result<String, ImageError> {
    clean_path(name.as_bytes())
        .map(|c| join(&c))
        .map_err(|reason| ImageError::UnsafePath {
            entry: name.to_string(),
            reason: reason.to_string(),
        })
}

fn dir_path(root: &Path, name: &str) -> Result<PathBuf, ImageError> {
    Ok(root.join(clean_name(name)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::digest::chain_id;
    use crate::image::{is_mounted, mount_rootfs, unmount_rootfs, xattr};
    use std::io::Write;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use crate::fsutil::TempDir;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// Runs hack/fixtures.py into `out`; false (with a message) when it cannot run here.
    fn fixtures(out: &Path) -> bool {
        if !Path::new("/bin/busybox").exists() {
            eprintln!("skipping: /bin/busybox missing (apt-get install -y busybox-static)");
            return false;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/fixtures.py");
        match std::process::Command::new("python3")
            .arg(&script)
            .arg(out)
            .output()
        {
            Ok(o) if o.status.success() => true,
            Ok(o) => panic!("fixtures.py failed: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => {
                eprintln!("skipping: cannot run python3: {e}");
                false
            }
        }
    }

    /// (manifest digest, config digest) of a fixture, read straight from its layout.
    fn fixture_digests(layout: &Path) -> (String, String) {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let manifest = index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        let m: serde_json::Value = serde_json::from_slice(
            &std::fs::read(layout.join("blobs/sha256").join(&manifest[7..])).unwrap(),
        )
        .unwrap();
        (
            manifest,
            m["config"]["digest"].as_str().unwrap().to_string(),
        )
    }

    fn import_whiteout(tmp: &TempDir) -> Option<(ImageStore, ImageRecord)> {
        if !is_root() {
            eprintln!("skipping: whiteouts need root (mknod, trusted.* xattrs)");
            return None;
        }
        let fx = tmp.0.join("fixtures");
        if !fixtures(&fx) {
            return None;
        }
        let store = ImageStore::open(&tmp.0.join("store")).unwrap();
        let recs = import(&store, &fx.join("busybox-whiteout.tar"), None).unwrap();
        assert_eq!(recs.len(), 1);
        Some((store, recs.into_iter().next().unwrap()))
    }

    #[test]
    fn fixture_whiteout_image_imports() {
        let tmp = TempDir::new("whiteout");
        let Some((store, rec)) = import_whiteout(&tmp) else {
            return;
        };
        let fx = tmp.0.join("fixtures");
        let (manifest, config) = fixture_digests(&fx.join("busybox-whiteout"));
        assert_eq!(rec.id, config);
        assert_eq!(rec.config_digest, config);
        assert_eq!(rec.repo_tags, ["peapod.test/busybox-whiteout:latest"]);
        assert_eq!(
            rec.repo_digests,
            [format!("peapod.test/busybox-whiteout@{manifest}")]
        );
        assert_eq!(rec.chain_ids.len(), 3);
        assert_eq!(
            store.get("peapod.test/busybox-whiteout").unwrap().id,
            rec.id
        );
        assert_eq!(store.get(&rec.id[7..19]).unwrap().id, rec.id);

        let dirs = store.layer_dirs(&rec);
        assert_eq!(dirs.len(), 3);
        let (top, mid, base) = (&dirs[0], &dirs[1], &dirs[2]);
        // The base layer: busybox, its applets as hard links, users, sticky /tmp.
        let bb = std::fs::metadata(base.join("bin/busybox")).unwrap();
        assert_eq!(bb.mode() & 0o7777, 0o755);
        let sh = std::fs::metadata(base.join("bin/sh")).unwrap();
        assert_eq!(sh.ino(), bb.ino(), "applets are hard links to busybox");
        assert!(bb.nlink() > 100);
        assert_eq!(
            std::fs::metadata(base.join("tmp")).unwrap().mode() & 0o7777,
            0o1777
        );
        assert_eq!(
            std::fs::metadata(base.join("home/app")).unwrap().uid(),
            1000
        );
        assert!(std::fs::read_to_string(base.join("etc/passwd"))
            .unwrap()
            .contains("app:x:1000:1000"));
        assert_eq!(
            std::fs::metadata(base.join("etc/passwd")).unwrap().mtime(),
            1_700_000_000
        );
        assert_eq!(std::fs::read(mid.join("data/a")).unwrap(), b"a\n");
        // The top layer: the whiteout is a 0/0 character device, the opaque dir has its xattr
        // and no `.wh.` names are left.
        let vi = std::fs::symlink_metadata(top.join("bin/vi")).unwrap();
        assert!(vi.file_type().is_char_device());
        assert_eq!(vi.rdev(), 0);
        assert_eq!((vi.uid(), vi.gid()), (0, 0));
        assert!(!top.join("bin/.wh.vi").exists());
        assert_eq!(
            xattr::lget(&top.join("data"), b"trusted.overlay.opaque").unwrap(),
            Some(b"y".to_vec())
        );
        assert!(!top.join("data/.wh..wh..opq").exists());
        assert_eq!(std::fs::read(top.join("data/b")).unwrap(), b"b\n");

        // Chain IDs follow the config's diff IDs.
        let diffs = rec.config.rootfs().diff_ids();
        assert_eq!(rec.chain_ids[0], diffs[0]);
        assert_eq!(rec.chain_ids[1], chain_id(Some(&diffs[0]), &diffs[1]));

        // Importing the directory form of the plain busybox image shares the base layer, and
        // an explicit name is added as a tag.
        let plain = import(&store, &fx.join("busybox"), Some("example.com/bb:1")).unwrap();
        assert_eq!(plain[0].repo_tags, ["example.com/bb:1"]);
        assert_eq!(plain[0].chain_ids[0], rec.chain_ids[0]);
        assert_eq!(store.list().len(), 2);
        // Re-importing is idempotent and keeps the earlier tag.
        let again = import(&store, &fx.join("busybox.tar"), None).unwrap();
        assert_eq!(again[0].id, plain[0].id);
        assert_eq!(
            again[0].repo_tags,
            ["example.com/bb:1", "peapod.test/busybox:latest"]
        );
        let user = import(&store, &fx.join("busybox-user"), None).unwrap();
        assert_eq!(
            user[0].config.config().as_ref().unwrap().user().as_deref(),
            Some("app")
        );
        let entry = import(&store, &fx.join("busybox-entry.tar"), None).unwrap();
        let cfg = entry[0].config.config().as_ref().unwrap();
        assert_eq!(cfg.working_dir().as_deref(), Some("/work"));
        assert_eq!(
            cfg.entrypoint().as_ref().unwrap(),
            &vec!["/bin/echo".to_string(), "entry".to_string()]
        );
        assert!(store.layer_dirs(&entry[0])[0].join("work").is_dir());
    }

    #[test]
    fn fixture_whiteout_rootfs_mounts() {
        let tmp = TempDir::new("mount");
        let Some((store, rec)) = import_whiteout(&tmp) else {
            return;
        };
        let upper = tmp.0.join("ctr/upper");
        let work = tmp.0.join("ctr/work");
        let rootfs = tmp.0.join("ctr/rootfs");
        mount_rootfs(&store.layer_dirs(&rec), &upper, &work, &rootfs).unwrap();
        let checks = || {
            assert!(is_mounted(&rootfs).unwrap());
            assert!(rootfs.join("bin/busybox").exists());
            assert!(rootfs.join("bin/sh").exists());
            assert!(
                std::fs::symlink_metadata(rootfs.join("bin/vi")).is_err(),
                "/bin/vi is whited out"
            );
            let mut data: Vec<String> = std::fs::read_dir(rootfs.join("data"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            data.sort();
            assert_eq!(data, ["b"], "/data is opaque");
            std::fs::write(rootfs.join("tmp/new"), b"x").unwrap();
            assert_eq!(std::fs::read(upper.join("tmp/new")).unwrap(), b"x");
            std::fs::remove_file(rootfs.join("etc/passwd")).unwrap();
            // The layers are untouched: the deletion is a whiteout in the upper dir.
            for dir in store.layer_dirs(&rec) {
                assert!(!dir.join("tmp/new").exists());
            }
            assert!(store.layer_dirs(&rec)[2].join("etc/passwd").exists());
        };
        let res = std::panic::catch_unwind(checks);
        unmount_rootfs(&rootfs).unwrap();
        unmount_rootfs(&rootfs).unwrap(); // idempotent
        assert!(!is_mounted(&rootfs).unwrap());
        if let Err(p) = res {
            std::panic::resume_unwind(p);
        }
    }

    /// A docker-archive in the classic `docker save` form, built in memory: `<id>/layer.tar`
    /// files (the second one a symlink to the first, as docker dedups), a config JSON and
    /// manifest.json with two RepoTags.
    fn docker_archive() -> (Vec<u8>, String) {
        let mut lb = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        lb.append_data(&mut h, "hello", &b"hi\n"[..]).unwrap();
        let layer = lb.into_inner().unwrap();
        let diff = sha256(&layer);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/hello"]},
            "rootfs": {"type": "layers", "diff_ids": [diff, diff]},
        }))
        .unwrap();
        let config_name = format!("{}.json", &sha256(&config)[7..]);
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": config_name,
            "RepoTags": ["hello:1", "example.com/hello:2"],
            "Layers": ["aaa/layer.tar", "bbb/layer.tar"],
        }]))
        .unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, data).unwrap();
        };
        add("aaa/layer.tar", &layer);
        add(&config_name, &config);
        add("manifest.json", &manifest);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "bbb/layer.tar", "../aaa/layer.tar")
            .unwrap();
        (b.into_inner().unwrap(), sha256(&config))
    }

    #[test]
    fn docker_archive_imports() {
        let tmp = TempDir::new("docker");
        let (archive, config_digest) = docker_archive();
        let path = tmp.0.join("hello.tar");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&archive)
            .unwrap();
        let store = ImageStore::open(&tmp.0.join("store")).unwrap();
        let recs = import(&store, &path, None).unwrap();
        assert_eq!(recs.len(), 1);
        let rec = &recs[0];
        assert_eq!(rec.id, config_digest);
        assert_eq!(
            rec.repo_tags,
            ["docker.io/library/hello:1", "example.com/hello:2"]
        );
        assert_eq!(rec.chain_ids.len(), 2);
        let dirs = store.layer_dirs(rec);
        assert_eq!(std::fs::read(dirs[0].join("hello")).unwrap(), b"hi\n");
        // The synthesised manifest is stored and is what the repo digest names.
        let md = parse_digest(&rec.manifest_digest).unwrap();
        let m: ImageManifest = serde_json::from_slice(&store.read_blob(&md).unwrap()).unwrap();
        assert_eq!(m.config().digest().as_ref(), config_digest);
        assert!(rec
            .repo_digests
            .contains(&format!("docker.io/library/hello@{}", rec.manifest_digest)));
        assert_eq!(store.get("hello:1").unwrap().id, rec.id);
    }

    /// An OCI layout tar whose blob content does not match its name is refused.
    #[test]
    fn tampered_oci_blob_is_rejected() {
        let tmp = TempDir::new("tamper");
        let claimed = sha256(b"the real thing");
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [
            (
                "oci-layout".to_string(),
                &br#"{"imageLayoutVersion":"1.0.0"}"#[..],
            ),
            (
                format!("blobs/sha256/{}", &claimed[7..]),
                &b"something else"[..],
            ),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, data).unwrap();
        }
        let path = tmp.0.join("bad.tar");
        std::fs::write(&path, b.into_inner().unwrap()).unwrap();
        let store = ImageStore::open(&tmp.0.join("store")).unwrap();
        match import(&store, &path, None) {
            Err(ImageError::DigestMismatch { expected, actual }) => {
                assert_eq!(expected, claimed);
                assert_eq!(actual, sha256(b"something else"));
            }
            other => panic!("{other:?}"),
        }
        assert!(store.list().is_empty());
    }

    #[test]
    fn unknown_formats_and_bad_names_are_refused() {
        let tmp = TempDir::new("unknown");
        let store = ImageStore::open(&tmp.0.join("store")).unwrap();
        std::fs::create_dir_all(tmp.0.join("empty")).unwrap();
        assert!(matches!(
            import(&store, &tmp.0.join("empty"), None),
            Err(ImageError::Format { .. })
        ));
        assert!(matches!(
            import(&store, &tmp.0.join("empty"), Some("Bad Name")),
            Err(ImageError::InvalidReference { .. })
        ));
        assert!(matches!(
            import(&store, &tmp.0.join("missing"), None),
            Err(ImageError::Io { .. })
        ));
    }
}
