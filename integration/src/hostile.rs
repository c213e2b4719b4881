//! Hostile input for the CVE regression tests: layer tars with entries a well-behaved tool
//! never writes (names with `..`, absolute names, links out of the tree), OCI layouts built
//! from them for [`crate::Registry::push_layout`], and a registry on 127.0.0.1 that lies about
//! sizes or never ends its responses.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The OCI architecture name of this host.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A tar stream written header by header, with names and link targets stored byte for byte:
/// the `tar` crate's own setters refuse `..`, which is exactly what these layers need.
#[derive(Default)]
pub struct RawTar {
    out: Vec<u8>,
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar::default()
    }

    fn entry(&mut self, name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8], mode: u32) {
        assert!(name.len() < 100 && link.len() < 100, "names must fit ustar");
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.out.extend_from_slice(h.as_bytes());
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
    }

    pub fn file(mut self, name: &str, data: &[u8], mode: u32) -> Self {
        self.entry(name.as_bytes(), tar::EntryType::Regular, b"", data, mode);
        self
    }

    pub fn dir(mut self, name: &str, mode: u32) -> Self {
        self.entry(name.as_bytes(), tar::EntryType::Directory, b"", b"", mode);
        self
    }

    pub fn symlink(mut self, name: &str, target: &str, mode: u32) -> Self {
        self.entry(
            name.as_bytes(),
            tar::EntryType::Symlink,
            target.as_bytes(),
            b"",
            mode,
        );
        self
    }

    pub fn hardlink(mut self, name: &str, target: &str) -> Self {
        self.entry(
            name.as_bytes(),
            tar::EntryType::Link,
            target.as_bytes(),
            b"",
            0o644,
        );
        self
    }

    /// The archive, with its two zero blocks.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend(std::iter::repeat_n(0u8, 1024));
        self.out
    }
}

/// One layer of an image: its blob as served, media type and diff ID (the digest of the
/// uncompressed tar).
#[derive(Clone)]
pub struct Layer {
    pub media_type: String,
    pub blob: Vec<u8>,
    pub diff_id: String,
}

impl Layer {
    /// An uncompressed tar layer.
    pub fn tar(tar: Vec<u8>) -> Layer {
        Layer {
            media_type: MT_LAYER_TAR.into(),
            diff_id: sha256(&tar),
            blob: tar,
        }
    }
}

/// The busybox fixture's layer (hack/fixtures.py), to put hostile layers on top of a shell.
pub fn busybox_layer() -> Layer {
    let dir = crate::fixtures().join("busybox");
    let blob = |d: &str| std::fs::read(dir.join("blobs/sha256").join(&d[7..])).unwrap();
    let index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap())
        .expect("index.json");
    let manifest: Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let config: Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let desc = &manifest["layers"][0];
    Layer {
        media_type: desc["mediaType"].as_str().unwrap().into(),
        blob: blob(desc["digest"].as_str().unwrap()),
        diff_id: config["rootfs"]["diff_ids"][0].as_str().unwrap().into(),
    }
}

/// An image config: `runtime` is its `config` object (Env, WorkingDir, Volumes, ...).
pub fn config_json(runtime: Value, layers: &[Layer]) -> Vec<u8> {
    let mut rt = json!({"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]});
    if let (Some(base), Some(extra)) = (rt.as_object_mut(), runtime.as_object()) {
        base.extend(extra.clone());
    }
    serde_json::to_vec(&json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": rt,
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>()},
    }))
    .unwrap()
}

/// An image manifest over a config blob and layers.
pub fn manifest_json(config: &[u8], layers: &[Layer]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": sha256(config), "size": config.len()},
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type, "digest": sha256(&l.blob), "size": l.blob.len(),
        })).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// Writes an OCI image layout (what hack/push.py reads) of one image into `dir`.
pub fn write_layout(dir: &Path, config: &[u8], layers: &[Layer]) -> PathBuf {
    let manifest = manifest_json(config, layers);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        std::fs::write(blobs.join(&sha256(data)[7..]), data).unwrap();
    };
    put(config);
    put(&manifest);
    for l in layers {
        put(&l.blob);
    }
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [{"mediaType": MT_MANIFEST, "digest": sha256(&manifest), "size": manifest.len()}],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    dir.to_path_buf()
}

/// How the hostile registry answers one path.
#[derive(Clone)]
pub enum Reply {
    /// 200 with this body and a true Content-Length.
    Body { ctype: String, body: Vec<u8> },
    /// 200 announcing `content_length`, then sending `body` (longer or shorter) and closing.
    Lying {
        ctype: String,
        body: Vec<u8>,
        content_length: u64,
    },
    /// 200, chunked, starting with `prefix` and then never ending.
    Endless { ctype: String, prefix: Vec<u8> },
    /// 200 announcing `content_length`, then sending forever without regard to it.
    EndlessSized { ctype: String, content_length: u64 },
}

impl Reply {
    pub fn json(body: Vec<u8>, ctype: &str) -> Reply {
        Reply::Body {
            ctype: ctype.into(),
            body,
        }
    }
}

/// A registry on 127.0.0.1 that serves fixed replies per path (the query string ignored),
/// `/v2/` open to anonymous clients, 404 for the rest. `sent` counts the body bytes it wrote.
pub struct HostileRegistry {
    pub addr: String,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    pub sent: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl HostileRegistry {
    pub async fn start() -> HostileRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let sent = Arc::new(AtomicU64::new(0));
        let (r, s) = (routes.clone(), sent.clone());
        let task = tokio::spawn(async move {
            // Connection tasks live in the set, so aborting this task ends them all.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                conns.spawn(serve(stream, r.clone(), s.clone()));
                while conns.try_join_next().is_some() {}
            }
        });
        HostileRegistry {
            addr,
            routes,
            sent,
            task,
        }
    }

    pub fn route(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_string(), reply);
    }

    /// Serves `repo:tag` with this manifest, and each blob by digest under the repository.
    pub fn image(&self, repo: &str, tag: &str, manifest: Reply, blobs: Vec<(String, Reply)>) {
        self.route(&format!("/v2/{repo}/manifests/{tag}"), manifest);
        for (digest, reply) in blobs {
            self.route(&format!("/v2/{repo}/blobs/{digest}"), reply);
        }
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut s: TcpStream, routes: Arc<Mutex<HashMap<String, Reply>>>, sent: Arc<AtomicU64>) {
    let mut buf = Vec::new();
    loop {
        // One request head (requests here have no body).
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 64 << 10 {
                return;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let mut first = head.split_whitespace();
        let method = first.next().unwrap_or("").to_string();
        let target = first.next().unwrap_or("/");
        let path = target.split('?').next().unwrap_or("/").to_string();
        let head_only = method == "HEAD";
        let reply = if path == "/v2/" || path == "/v2" {
            Some(Reply::json(b"{}".to_vec(), "application/json"))
        } else {
            routes.lock().unwrap().get(&path).cloned()
        };
        let ok = match reply {
            None => {
                let body = br#"{"errors":[{"code":"NAME_UNKNOWN","message":"not here"}]}"#;
                respond(
                    &mut s,
                    "404 Not Found",
                    "application/json",
                    Some(body.len() as u64),
                    &[body],
                    head_only,
                )
                .await
            }
            Some(Reply::Body { ctype, body }) => {
                let n = body.len() as u64;
                let r = respond(&mut s, "200 OK", &ctype, Some(n), &[&body], head_only).await;
                sent.fetch_add(n, Ordering::Relaxed);
                r
            }
            Some(Reply::Lying {
                ctype,
                body,
                content_length,
            }) => {
                let _ = respond(
                    &mut s,
                    "200 OK",
                    &ctype,
                    Some(content_length),
                    &[&body],
                    head_only,
                )
                .await;
                sent.fetch_add(body.len() as u64, Ordering::Relaxed);
                false
            }
            Some(Reply::Endless { ctype, prefix }) => {
                if respond(&mut s, "200 OK", &ctype, None, &[], true).await && !head_only {
                    let filler = vec![b' '; 64 << 10];
                    let mut first = Some(prefix);
                    loop {
                        let data = first.take().unwrap_or_else(|| filler.clone());
                        let chunk =
                            [format!("{:x}\r\n", data.len()).as_bytes(), &data, b"\r\n"].concat();
                        if s.write_all(&chunk).await.is_err() {
                            break;
                        }
                        sent.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                }
                false
            }
            Some(Reply::EndlessSized {
                ctype,
                content_length,
            }) => {
                if respond(&mut s, "200 OK", &ctype, Some(content_length), &[], true).await
                    && !head_only
                {
                    let filler = vec![b' '; 64 << 10];
                    while s.write_all(&filler).await.is_ok() {
                        sent.fetch_add(filler.len() as u64, Ordering::Relaxed);
                    }
                }
                false
            }
        };
        if !ok {
            return;
        }
    }
}

/// Writes a response head (chunked when `length` is None) and, unless `head_only`, `body`.
async fn respond(
    s: &mut TcpStream,
    status: &str,
    ctype: &str,
    length: Option<u64>,
    body: &[&[u8]],
    head_only: bool,
) -> bool {
    let length = match length {
        Some(n) => format!("Content-Length: {n}\r\n"),
        None => "Transfer-Encoding: chunked\r\n".into(),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n{length}\
         Docker-Distribution-Api-Version: registry/2.0\r\n\r\n"
    );
    if s.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    if !head_only {
        for b in body {
            if s.write_all(b).await.is_err() {
                return false;
            }
        }
    }
    true
}

/// A status line of `/proc/PID/status` in kB (VmRSS, VmHWM).
pub fn proc_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A fresh host directory outside every daemon directory, removed when dropped: where the
/// attacks aim, holding a canary file.
pub struct HostTarget {
    pub dir: PathBuf,
}

impl HostTarget {
    pub fn new(tag: &str) -> HostTarget {
        let dir = std::env::temp_dir().join(format!(
            "peapod-cve-{tag}-{}",
            &peapod::fsutil::new_id()[..8]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("canary"), b"original\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("canary"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        HostTarget { dir }
    }

    /// What is in the directory, sorted, as "name mode nlink size".
    pub fn snapshot(&self) -> Vec<String> {
        use std::os::unix::fs::MetadataExt;
        let mut out: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .map(|e| {
                let m = std::fs::symlink_metadata(e.path()).unwrap();
                format!(
                    "{} {:o} {} {}",
                    e.file_name().to_string_lossy(),
                    m.mode(),
                    m.nlink(),
                    m.len()
                )
            })
            .collect();
        out.sort();
        let m = std::fs::symlink_metadata(&self.dir).unwrap();
        out.push(format!(". {:o}", m.mode()));
        out.push(format!(
            "canary content {:?}",
            std::fs::read_to_string(self.dir.join("canary")).unwrap_or_default()
        ));
        out
    }
}

impl Drop for HostTarget {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
