//! Pulling images from OCI / Docker registries (distribution API v2) into the [`ImageStore`].
//!
//! A pull resolves the reference (normalised as containerd does: `busybox` is
//! `docker.io/library/busybox:latest`) against the endpoints [`RegistryConfig::endpoints`] lists
//! (mirrors first), follows an index or manifest list to the manifest for linux/<host arch>,
//! fetches the config, downloads the missing layers (a few at a time) straight into the store's
//! `ingest/` while unpacking them as they arrive ([`layer`]), and finally records the image
//! under the name as asked, never under a mirror's.
//!
//! Trust: every manifest, config and layer is checked against its digest before it is used or
//! gets its name in the store (in memory for manifests and configs, by the store while it
//! writes a blob); a layer's uncompressed content is checked against the config's diff ID while
//! it is unpacked, and its directory is named only once both checks passed. Manifests and the
//! config stay in memory until all layers are in place, so a pull that fails leaves no manifest
//! or config behind; layer blobs that were downloaded completely before the failure stay
//! (verified), for the next attempt.
//!
//! Sharing: within a process, a blob or layer is downloaded / unpacked by one pull at a time
//! (an async lock per digest and per chain ID); a second pull waiting on the lock then finds it
//! in the store. Content already in the store is never fetched again, and a pull by digest whose
//! manifest, config and layers are all present makes no request at all.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::sync::{Arc, LazyLock, Mutex, Once, Weak};
use std::time::{Duration, Instant};

use oci_client::client::{
    BlobResponse, Certificate, CertificateEncoding, ClientConfig, ClientProtocol,
};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;
use oci_spec::image::{Descriptor, Digest, ImageConfiguration, ImageIndex, ImageManifest};
use serde::Deserialize;

use super::platform::pick_platform;
use tokio::sync::{OwnedMutexGuard, Semaphore};
use tokio::task::JoinSet;
use tokio_stream::StreamExt;

use layer::LayerJob;
use order::BottomUp;

use super::digest::{chain_id, sha256};
use super::gc::Protection;
use super::reference::Reference;
use super::registry::{Endpoint, RegistryConfig, Scheme};
use super::store::{check_layer_count, parse_digest, MAX_JSON_BLOB};
use super::{ImageError, ImageRecord, ImageStore, IoContext};

mod layer;
mod order;
mod pipe;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// What a manifest request accepts: the two image manifest formats and their index forms.
const ACCEPT_MANIFESTS: &[&str] = &[
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];
const IMAGE_CONFIGS: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];
/// Layers downloaded and unpacked at the same time by one pull. Each is a connection, a blob
/// writer and an unpacker with a few chunks in flight (see [`pipe`]), so this bounds a pull's
/// threads and memory; the unpackers keep two or three cores busy.
const PARALLEL_LAYERS: usize = 3;
/// Indexes pointing at indexes, followed at most this deep.
const MAX_INDEX_DEPTH: usize = 4;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest silence of a connection in the middle of a response.
const READ_TIMEOUT: Duration = Duration::from_secs(120);
const USER_AGENT: &str = concat!("peapod/", env!("CARGO_PKG_VERSION"));

/// Credentials for one pull, as CRI's `AuthConfig` carries them. Empty strings are unset.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PullAuth {
    pub username: String,
    pub password: String,
    /// An OAuth2 refresh token (docker's `identitytoken`). Sent as the password of HTTP basic
    /// authentication with `username` (or `<token>`), which registries that issue such tokens
    /// (Azure, Harbor) accept at their token endpoint.
    pub identity_token: String,
    /// A bearer token sent as is with every request.
    pub registry_token: String,
}

impl fmt::Debug for PullAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |s: &str| if s.is_empty() { "" } else { "<redacted>" };
        f.debug_struct("PullAuth")
            .field("username", &self.username)
            .field("password", &set(&self.password))
            .field("identity_token", &set(&self.identity_token))
            .field("registry_token", &set(&self.registry_token))
            .finish()
    }
}

impl PullAuth {
    /// Username and password from a CRI `AuthConfig.auth` (docker config.json's `auth`):
    /// base64 of `username:password`.
    pub fn from_basic_auth(auth: &str) -> Result<PullAuth, ImageError> {
        use base64::Engine as _;
        let bad = |reason: &str| ImageError::format("auth", reason);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad("not base64"))?;
        let text = String::from_utf8(raw).map_err(|_| bad("not UTF-8"))?;
        let (user, pass) = text
            .split_once(':')
            .ok_or_else(|| bad("not username:password"))?;
        Ok(PullAuth {
            username: user.to_string(),
            password: pass.to_string(),
            ..Default::default()
        })
    }

    fn registry_auth(&self) -> RegistryAuth {
        if !self.registry_token.is_empty() {
            RegistryAuth::Bearer(self.registry_token.clone())
        } else if !self.identity_token.is_empty() {
            let user = if self.username.is_empty() {
                "<token>"
            } else {
                &self.username
            };
            RegistryAuth::Basic(user.to_string(), self.identity_token.clone())
        } else if !self.username.is_empty() || !self.password.is_empty() {
            RegistryAuth::Basic(self.username.clone(), self.password.clone())
        } else {
            RegistryAuth::Anonymous
        }
    }
}

/// Pulls `reference` into `store` and returns its record, named by the normalised reference
/// (`docker.io/library/busybox:latest` plus the repo digest `docker.io/library/busybox@sha256:…`
/// for a tag; the repo digest alone for a digest). `auth` is used with every endpoint tried.
///
/// Errors: [`ImageError::InvalidReference`]; [`ImageError::NotFound`] when no endpoint knows
/// the repository, tag or digest; [`ImageError::Unauthorized`] when credentials are missing or
/// refused; [`ImageError::DigestMismatch`] when content does not match its digest;
/// [`ImageError::Format`] for manifests that are not a linux/<arch> container image;
/// [`ImageError::Registry`] for everything else on the wire. When every endpoint fails, the
/// error is the last endpoint's, unless that is a plain [`ImageError::Registry`] error and an
/// earlier endpoint gave a more telling one.
pub async fn pull(
    store: Arc<ImageStore>,
    cfg: &RegistryConfig,
    reference: &str,
    auth: Option<&PullAuth>,
) -> Result<ImageRecord, ImageError> {
    let started = Instant::now();
    let parsed = Reference::parse(reference)?;
    let endpoints = cfg.endpoints(parsed.domain())?;
    let mut p = Puller {
        protection: Protection::new(&store),
        store,
        name: parsed.to_string(),
        reference: parsed,
        endpoints,
        auth: auth.map_or(RegistryAuth::Anonymous, PullAuth::registry_auth),
        remote: None,
        fetched_top: None,
        manifests: Vec::new(),
        downloaded: 0,
    };
    tracing::info!(image = %p.name, "pulling image");
    let res = p.run().await;
    crate::metrics::global().image_pull(res.is_ok(), p.downloaded, started.elapsed());
    let rec = res?;
    tracing::info!(
        image = %p.name,
        id = %rec.id,
        from = %p.remote.as_ref().map_or("local store".to_string(), |r| r.endpoint.to_string()),
        downloaded_bytes = p.downloaded,
        secs = started.elapsed().as_secs_f32(),
        "image pulled"
    );
    Ok(rec)
}

/// The state of one pull.
struct Puller {
    store: Arc<ImageStore>,
    reference: Reference,
    /// The normalised reference: the name the image is recorded under.
    name: String,
    endpoints: Vec<Endpoint>,
    auth: RegistryAuth,
    /// The endpoint that served the top manifest, once one was needed.
    remote: Option<Arc<Remote>>,
    /// The top manifest as that endpoint served it, with its digest.
    fetched_top: Option<(String, Arc<Vec<u8>>)>,
    /// Manifests and indexes walked, stored just before the image is recorded.
    manifests: Vec<(Digest, Arc<Vec<u8>>)>,
    protection: Protection,
    downloaded: u64,
}

/// A parsed manifest document.
pub enum Doc {
    /// An image manifest.
    Image(Box<ImageManifest>),
    /// An index (or Docker manifest list).
    Index(Box<ImageIndex>),
}

impl Puller {
    async fn run(&mut self) -> Result<ImageRecord, ImageError> {
        // 1. The top manifest (or index): by digest from the store if present, else remote.
        let top_digest = match self.reference.digest() {
            Some(d) => parse_digest(d)?,
            None => {
                self.connect().await?;
                let (digest, _) = self.fetched_top.as_ref().expect("connect sets fetched_top");
                parse_digest(digest)?
            }
        };
        self.protection.add(top_digest.as_ref());
        let mut digest = top_digest.clone();
        let mut bytes = self.manifest(&digest).await?;

        // 2. Down to the image manifest for this platform.
        let mut depth = 0;
        let manifest = loop {
            self.manifests.push((digest.clone(), bytes.clone()));
            match parse_manifest(&bytes, &digest)? {
                Doc::Image(m) => break *m,
                Doc::Index(index) => {
                    depth += 1;
                    if depth > MAX_INDEX_DEPTH {
                        return Err(ImageError::format(
                            format!("index {top_digest}"),
                            "indexes nested too deeply",
                        ));
                    }
                    let child = pick_platform(&index).map_err(|reason| {
                        ImageError::format(format!("{} (index {digest})", self.name), reason)
                    })?;
                    check_small(&child, "manifest")?;
                    digest = child.digest().clone();
                    self.protection.add(digest.as_ref());
                    bytes = self.manifest(&digest).await?;
                }
            }
        };

        // 3. The config, which lists the layers' diff IDs.
        let config_desc = manifest.config().clone();
        let media_type = config_desc.media_type().to_string();
        if !IMAGE_CONFIGS.contains(&media_type.as_str()) {
            return Err(ImageError::format(
                format!("{} (manifest {digest})", self.name),
                format!("not a container image: config media type {media_type}"),
            ));
        }
        check_small(&config_desc, "config")?;
        check_layer_count(
            &format!("{} (manifest {digest})", self.name),
            manifest.layers().len(),
        )?;
        self.protection.add(config_desc.digest().as_ref());
        let config = self.small_blob(&config_desc).await?;
        let parsed: ImageConfiguration = serde_json::from_slice(&config)
            .map_err(|e| ImageError::format(format!("image config {}", config_desc.digest()), e))?;
        let diff_ids = parsed.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(ImageError::format(
                format!("image {}", config_desc.digest()),
                format!(
                    "config lists {} diff IDs but manifest {digest} {} layers",
                    diff_ids.len(),
                    manifest.layers().len()
                ),
            ));
        }

        // 4. Layers: download the missing ones in parallel, unpack bottom-up.
        let mut chains = Vec::with_capacity(diff_ids.len());
        for (layer, diff) in manifest.layers().iter().zip(diff_ids) {
            check_layer_type(layer)?;
            let chain = chain_id(chains.last().map(String::as_str), diff);
            // Protected before the presence checks below: see `Protection`.
            self.protection.add(&chain);
            self.protection.add(layer.digest().as_ref());
            chains.push(chain);
        }
        let missing: Vec<bool> = chains.iter().map(|c| !self.store.has_layer(c)).collect();
        if missing.iter().any(|m| *m) {
            self.fetch_and_unpack(&manifest, diff_ids, &chains, &missing)
                .await?;
        }

        // 5. Record the image; manifests become blobs now that everything else is in place.
        let store = self.store.clone();
        let manifests = std::mem::take(&mut self.manifests);
        let name = self.name.clone();
        let config = config.clone();
        blocking(move || {
            for (d, b) in &manifests {
                store.write_blob(d, &b[..])?;
            }
            store.add_image(&top_digest, &manifest, &config, Some(&name))
        })
        .await
    }

    /// Puts the missing layers into the store: each downloaded and unpacked at the same time,
    /// up to [`PARALLEL_LAYERS`] of them at once, named bottom-up (see [`layer`]).
    async fn fetch_and_unpack(
        &mut self,
        manifest: &ImageManifest,
        diff_ids: &[String],
        chains: &[String],
        missing: &[bool],
    ) -> Result<(), ImageError> {
        let remote = self.connect().await?;
        let limit = Arc::new(Semaphore::new(PARALLEL_LAYERS));
        let order = BottomUp::new(missing.iter().map(|m| !m).collect());
        let mut jobs: VecDeque<LayerJob> = manifest
            .layers()
            .iter()
            .enumerate()
            .filter(|(i, _)| missing[*i])
            .map(|(i, desc)| LayerJob {
                index: i,
                desc: desc.clone(),
                parent: i.checked_sub(1).map(|p| chains[p].clone()),
                diff_id: diff_ids[i].clone(),
                chain: chains[i].clone(),
            })
            .collect();
        // Dropped with the pull, which aborts the tasks still running.
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                // Permits are taken here, in layer order, so the bottom layers (which the
                // others wait for) start first.
                permit = limit.clone().acquire_owned(), if !jobs.is_empty() => {
                    let permit = permit.map_err(|e| ImageError::format("layer downloads", e))?;
                    let job = jobs.pop_front().expect("not empty");
                    tasks.spawn(layer::fetch(
                        self.store.clone(),
                        remote.clone(),
                        job,
                        permit,
                        order.clone(),
                    ));
                }
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    self.downloaded += done.map_err(|e| ImageError::format("layer task", e))??;
                }
                else => break,
            }
        }
        Ok(())
    }

    /// Finds the first endpoint that serves the top manifest, and keeps it for the rest of the
    /// pull. Connection problems, refusals and unknown names make it try the next one.
    async fn connect(&mut self) -> Result<Arc<Remote>, ImageError> {
        if let Some(r) = &self.remote {
            return Ok(r.clone());
        }
        let mut errors = Vec::new();
        for ep in &self.endpoints {
            let attempt = async {
                let remote = Remote::new(ep, &self.reference, self.auth.clone())?;
                remote.login().await?;
                let bytes = remote.manifest(None, &self.name).await?;
                Ok::<_, ImageError>((remote, bytes))
            };
            match attempt.await {
                Ok((remote, bytes)) => {
                    let remote = Arc::new(remote);
                    self.remote = Some(remote.clone());
                    self.fetched_top = Some((sha256(&bytes), Arc::new(bytes)));
                    return Ok(remote);
                }
                Err(e) => {
                    if self.endpoints.len() > 1 {
                        tracing::warn!(image = %self.name, endpoint = %ep, error = %e, "pull from endpoint failed");
                    }
                    errors.push(e);
                }
            }
        }
        Err(pick_error(errors, self.reference.domain()))
    }

    /// A manifest or index by digest: from the store, from memory (the top manifest fetched
    /// while connecting, or another pull's), or from the registry.
    async fn manifest(&mut self, digest: &Digest) -> Result<Arc<Vec<u8>>, ImageError> {
        let k = key(&self.store, "blob", digest.as_ref());
        let _lock = lock_key(k.clone()).await;
        if let Some(b) = self.local_small(&k, digest).await? {
            return Ok(b);
        }
        let remote = self.connect().await?;
        let bytes = match &self.fetched_top {
            Some((d, top)) if d == digest.as_ref() => top.clone(),
            _ => Arc::new(remote.manifest(Some(digest), &self.name).await?),
        };
        verify(digest, &bytes)?;
        if bytes.len() as u64 > MAX_JSON_BLOB {
            return Err(ImageError::format(
                format!("manifest {digest}"),
                format!("larger than {MAX_JSON_BLOB} bytes"),
            ));
        }
        remember(&k, &bytes);
        Ok(bytes)
    }

    /// A small blob (the config) by descriptor, kept in memory.
    async fn small_blob(&mut self, desc: &Descriptor) -> Result<Arc<Vec<u8>>, ImageError> {
        let k = key(&self.store, "blob", desc.digest().as_ref());
        let _lock = lock_key(k.clone()).await;
        if let Some(b) = self.local_small(&k, desc.digest()).await? {
            return Ok(b);
        }
        let remote = self.connect().await?;
        let mut stream = remote.blob_stream(desc).await?;
        let mut buf = Vec::with_capacity(desc.size() as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| remote.stream_error(e, desc))?;
            buf.extend_from_slice(&chunk);
            if buf.len() as u64 > desc.size() {
                return Err(remote.too_long(desc));
            }
        }
        if buf.len() as u64 != desc.size() {
            return Err(remote.wrong_size(desc, buf.len() as u64));
        }
        verify(desc.digest(), &buf)?;
        self.downloaded += buf.len() as u64;
        let bytes = Arc::new(buf);
        remember(&k, &bytes);
        Ok(bytes)
    }

    /// A small blob from the store or from another pull's memory.
    async fn local_small(
        &self,
        k: &str,
        digest: &Digest,
    ) -> Result<Option<Arc<Vec<u8>>>, ImageError> {
        if let Some(b) = recall(k) {
            return Ok(Some(b));
        }
        if self.store.has_blob(digest) {
            let store = self.store.clone();
            let d = digest.clone();
            return Ok(Some(Arc::new(blocking(move || store.read_blob(&d)).await?)));
        }
        Ok(None)
    }
}

// ---- one endpoint ----

/// A registry client bound to one endpoint and one repository.
struct Remote {
    endpoint: Endpoint,
    client: oci_client::Client,
    /// The repository and tag or digest as asked, addressed to this endpoint.
    reference: oci_client::Reference,
    auth: RegistryAuth,
    /// Manifests are fetched with this client, configured as `client` is: see
    /// [`Remote::manifest`].
    http: reqwest::Client,
    /// The bearer token `login` got, sent with manifest requests.
    token: Mutex<Option<String>>,
}

impl Remote {
    fn new(endpoint: &Endpoint, r: &Reference, auth: RegistryAuth) -> Result<Remote, ImageError> {
        init_tls();
        let mut extra_roots = Vec::new();
        let mut http = reqwest::Client::builder()
            .danger_accept_invalid_certs(endpoint.skip_verify)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(USER_AGENT);
        if let Some(path) = &endpoint.ca_file {
            let pem = std::fs::read(path).at(path)?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| ImageError::format(format!("CA file {}", path.display()), e))?;
            http = http.tls_certs_merge([cert]);
            extra_roots.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem,
            });
        }
        let http = http.build().map_err(|e| ImageError::Registry {
            registry: endpoint.host.clone(),
            reason: format!("setting up the HTTP client: {}", error_chain(&e)),
        })?;
        let config = ClientConfig {
            protocol: match endpoint.scheme {
                Scheme::Http => ClientProtocol::Http,
                Scheme::Https => ClientProtocol::Https,
            },
            accept_invalid_certificates: endpoint.skip_verify,
            extra_root_certificates: extra_roots,
            // Platforms are chosen here, from the raw index.
            platform_resolver: None,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: USER_AGENT,
            ..Default::default()
        };
        let client = oci_client::Client::try_from(config).map_err(|e| ImageError::Registry {
            registry: endpoint.host.clone(),
            reason: format!("setting up the HTTP client: {}", error_chain(&e)),
        })?;
        // A mirror is addressed with the upstream registry as the reference's registry, which
        // the client sends along as `ns=`; the registry itself by its API host.
        let registry = if endpoint.mirror {
            r.domain()
        } else {
            &endpoint.host
        };
        let mut reference = match (r.digest(), r.tag()) {
            (Some(d), _) => oci_client::Reference::with_digest(
                registry.to_string(),
                r.path().to_string(),
                d.to_string(),
            ),
            (None, t) => oci_client::Reference::with_tag(
                registry.to_string(),
                r.path().to_string(),
                t.unwrap_or("latest").to_string(),
            ),
        };
        if endpoint.mirror {
            reference.set_mirror_registry(endpoint.host.clone());
        }
        Ok(Remote {
            endpoint: endpoint.clone(),
            client,
            reference,
            auth,
            http,
            token: Mutex::new(None),
        })
    }

    /// Authenticates (basic, or a bearer token from the registry's token service), so that
    /// refused credentials are reported as such rather than as a bare 401 later.
    async fn login(&self) -> Result<(), ImageError> {
        let token = self
            .client
            .auth(&self.reference, &self.auth, RegistryOperation::Pull)
            .await
            .map_err(|e| self.error(e, "authenticating", None))?;
        *self.token.lock().unwrap() = token;
        Ok(())
    }

    /// The manifest `digest`, or the one the reference names, read up to [`MAX_JSON_BLOB`]
    /// bytes. oci-client's manifest request reads the whole body into memory however long it
    /// is, so a registry that never ends its answer grew the daemon until it died; this GET is
    /// made as oci-client makes it (URL, Accept, the token from `login` or basic credentials)
    /// and gives up past the limit. A body served for a tag is checked against the registry's
    /// Docker-Content-Digest header; one asked by digest is checked by the caller.
    async fn manifest(&self, digest: Option<&Digest>, name: &str) -> Result<Vec<u8>, ImageError> {
        let r = &self.reference;
        let what = format!("fetching manifest {}", digest.map_or(name, |d| d.as_ref()));
        let url = format!(
            "{}://{}/v2/{}/manifests/{}{}",
            match self.endpoint.scheme {
                Scheme::Http => "http",
                Scheme::Https => "https",
            },
            r.resolve_registry(),
            r.repository(),
            digest
                .map(|d| d.as_ref())
                .or(r.digest())
                .or(r.tag())
                .unwrap_or("latest"),
            r.namespace()
                .map(|ns| format!("?ns={ns}"))
                .unwrap_or_default(),
        );
        let mut req = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, ACCEPT_MANIFESTS.join(", "));
        let token = self.token.lock().unwrap().clone();
        req = match (token, &self.auth) {
            (Some(t), _) => req.bearer_auth(t),
            (None, RegistryAuth::Basic(u, p)) => req.basic_auth(u, Some(p)),
            (None, _) => req,
        };
        let failed = |e: reqwest::Error| self.error(e.into(), &what, Some(name));
        let mut res = req.send().await.map_err(failed)?;
        let status = res.status();
        let header_digest = res
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // An error's body is only read for its message.
        let limit = if status.is_success() {
            MAX_JSON_BLOB as usize
        } else {
            64 << 10
        };
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > limit {
                if status.is_success() {
                    return Err(ImageError::Registry {
                        registry: self.endpoint.host.clone(),
                        reason: format!("{what}: the manifest is larger than {limit} bytes"),
                    });
                }
                body.extend_from_slice(&chunk[..limit - body.len()]);
                break;
            }
            body.extend_from_slice(&chunk);
        }
        if status != reqwest::StatusCode::OK {
            return Err(self.error(response_error(status, &body, &url), &what, Some(name)));
        }
        if let (None, Some(h)) = (digest, header_digest) {
            if h.starts_with("sha256:") && h != sha256(&body) {
                return Err(ImageError::DigestMismatch {
                    expected: h,
                    actual: sha256(&body),
                });
            }
        }
        Ok(body)
    }

    /// A blob's content, streamed; the caller checks its digest (every caller does: the store
    /// before a layer blob gets its name, [`verify`] for a config). It is asked for as the
    /// range `bytes=0-`, the whole blob, because oci-client checks the digest of a plain 200
    /// answer itself as it streams: a second SHA-256 pass over every layer on the async
    /// threads, ~10% of a pull's CPU with SHA-NI and far more without, while a ranged (206)
    /// answer is left to the caller. A registry that ignores ranges answers 200 and the blob
    /// is checked twice, as before. An empty blob has no satisfiable range: asked plainly.
    async fn blob_stream(
        &self,
        desc: &Descriptor,
    ) -> Result<oci_client::client::SizedStream, ImageError> {
        let oci_desc = OciDescriptor {
            media_type: desc.media_type().to_string(),
            digest: desc.digest().to_string(),
            size: desc.size() as i64,
            urls: desc.urls().clone(),
            ..Default::default()
        };
        let failed = |e| self.error(e, &format!("fetching blob {}", desc.digest()), None);
        if desc.size() == 0 {
            return self
                .client
                .pull_blob_stream(&self.reference, &oci_desc)
                .await
                .map_err(failed);
        }
        match self
            .client
            .pull_blob_stream_partial(&self.reference, &oci_desc, 0, None)
            .await
        {
            Ok(BlobResponse::Full(s) | BlobResponse::Partial(s)) => Ok(s),
            Err(e) => Err(failed(e)),
        }
    }

    /// An error in the middle of a blob download: the connection, or (at its end) a digest
    /// that does not match.
    fn stream_error(&self, e: io::Error, desc: &Descriptor) -> ImageError {
        if let Some(DigestError::VerificationError { actual, .. }) =
            e.get_ref().and_then(|i| i.downcast_ref::<DigestError>())
        {
            return ImageError::DigestMismatch {
                expected: desc.digest().to_string(),
                actual: actual.clone(),
            };
        }
        ImageError::Registry {
            registry: self.endpoint.host.clone(),
            reason: format!("downloading blob {}: {}", desc.digest(), error_chain(&e)),
        }
    }

    fn too_long(&self, desc: &Descriptor) -> ImageError {
        ImageError::Registry {
            registry: self.endpoint.host.clone(),
            reason: format!(
                "blob {} is longer than the {} bytes its descriptor gives",
                desc.digest(),
                desc.size()
            ),
        }
    }

    fn wrong_size(&self, desc: &Descriptor, received: u64) -> ImageError {
        ImageError::Registry {
            registry: self.endpoint.host.clone(),
            reason: format!(
                "blob {} is {received} bytes, not the {} bytes its descriptor gives",
                desc.digest(),
                desc.size()
            ),
        }
    }

    /// Sorts a client error into the crate's kinds. `not_found` is the reference to report
    /// when the registry says the thing asked for does not exist (manifests: the image is not
    /// there; blobs: the registry is broken, a plain registry error).
    fn error(&self, e: OciDistributionError, what: &str, not_found: Option<&str>) -> ImageError {
        let registry = self.endpoint.host.clone();
        let unauthorized = |reason: String| ImageError::Unauthorized {
            registry: registry.clone(),
            reason: format!("{what}: {reason}"),
        };
        let missing = |detail: String| match not_found {
            Some(r) => ImageError::NotFound {
                reference: r.to_string(),
            },
            None => ImageError::Registry {
                registry: registry.clone(),
                reason: format!("{what}: not found ({detail})"),
            },
        };
        match e {
            OciDistributionError::AuthenticationFailure(reason) => {
                unauthorized(format!("token request refused: {}", reason.trim()))
            }
            OciDistributionError::UnauthorizedError { url } => unauthorized(format!(
                "{url} answered 401 ({})",
                if self.auth == RegistryAuth::Anonymous {
                    "credentials required"
                } else {
                    "credentials refused"
                }
            )),
            OciDistributionError::RegistryError { envelope, url } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                let text = format!("{url}: {envelope}");
                if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    unauthorized(text)
                } else if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    missing(text)
                } else {
                    ImageError::Registry {
                        registry,
                        reason: format!("{what}: {text}"),
                    }
                }
            }
            OciDistributionError::ServerError { code, url, message } => match code {
                401 | 403 => unauthorized(format!("{url} answered {code}: {}", message.trim())),
                404 => missing(format!("{url} answered 404")),
                _ => ImageError::Registry {
                    registry,
                    reason: format!("{what}: {url} answered {code}: {}", message.trim()),
                },
            },
            OciDistributionError::ImageManifestNotFoundError(detail) => missing(detail),
            OciDistributionError::DigestError(DigestError::VerificationError {
                expected,
                actual,
            }) => ImageError::DigestMismatch { expected, actual },
            other => ImageError::Registry {
                registry,
                reason: format!("{what}: {}", error_chain(&other)),
            },
        }
    }
}

/// The client error for a registry's answer other than 200, as oci-client classifies them.
fn response_error(status: reqwest::StatusCode, body: &[u8], url: &str) -> OciDistributionError {
    let url = url.to_string();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return OciDistributionError::UnauthorizedError { url };
    }
    if status.is_success() {
        return OciDistributionError::SpecViolationError(format!(
            "expected HTTP status 200 OK, got {status}"
        ));
    }
    if status.is_client_error() {
        if let Ok(envelope) = serde_json::from_slice(body) {
            return OciDistributionError::RegistryError { envelope, url };
        }
    }
    OciDistributionError::ServerError {
        code: status.as_u16(),
        url,
        message: String::from_utf8_lossy(body).into_owned(),
    }
}

/// Installs the TLS crypto provider the registry client's HTTP stack needs (once per process).
pub(crate) fn init_tls() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err: some other part of the process installed one first, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// An error and its sources, `: `-joined (reqwest's own message omits the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// The error to report when every endpoint failed (see [`pull`]).
fn pick_error(mut errors: Vec<ImageError>, registry: &str) -> ImageError {
    let Some(last) = errors.pop() else {
        return ImageError::Registry {
            registry: registry.to_string(),
            reason: "no endpoints to pull from (registry.mirrors fallback = false and no \
                     endpoints)"
                .into(),
        };
    };
    if matches!(last, ImageError::Registry { .. }) {
        if let Some(i) = errors
            .iter()
            .position(|e| !matches!(e, ImageError::Registry { .. }))
        {
            return errors.swap_remove(i);
        }
    }
    last
}

// ---- manifests ----

/// Decodes a registry's manifest response (`digest` names it in errors): an image manifest or
/// an index, told apart by media type or, without one, by the fields present.
pub fn parse_manifest(bytes: &[u8], digest: &Digest) -> Result<Doc, ImageError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let what = || format!("manifest {digest}");
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| ImageError::format(what(), e))?;
    if probe.schema_version == Some(1) {
        return Err(ImageError::format(
            what(),
            "Docker image manifest schema 1 is not supported; push the image again with a \
             current client",
        ));
    }
    let is_index = match probe.media_type.as_deref() {
        Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) => {
            return Err(ImageError::format(
                what(),
                format!("unsupported media type {other}"),
            ))
        }
        None if probe.manifests.is_some() => true,
        None if probe.config.is_some() => false,
        None => {
            return Err(ImageError::format(
                what(),
                "neither a manifest nor an index",
            ))
        }
    };
    if is_index {
        serde_json::from_slice(bytes)
            .map(|i| Doc::Index(Box::new(i)))
            .map_err(|e| ImageError::format(format!("index {digest}"), e))
    } else {
        serde_json::from_slice(bytes)
            .map(|m| Doc::Image(Box::new(m)))
            .map_err(|e| ImageError::format(what(), e))
    }
}

fn check_small(desc: &Descriptor, what: &str) -> Result<(), ImageError> {
    if desc.size() > MAX_JSON_BLOB {
        return Err(ImageError::format(
            format!("{what} {}", desc.digest()),
            format!("{} bytes; at most {MAX_JSON_BLOB} accepted", desc.size()),
        ));
    }
    Ok(())
}

fn check_layer_type(layer: &Descriptor) -> Result<(), ImageError> {
    let mt = layer.media_type().to_string();
    if LAYER_TYPES.contains(&mt.as_str()) {
        return Ok(());
    }
    let reason = if mt.contains("+encrypted") {
        format!("encrypted layers ({mt}) are not supported")
    } else {
        format!("not a container image layer: media type {mt}")
    };
    Err(ImageError::format(
        format!("layer {}", layer.digest()),
        reason,
    ))
}

fn verify(digest: &Digest, bytes: &[u8]) -> Result<(), ImageError> {
    let actual = sha256(bytes);
    if actual != digest.as_ref() {
        return Err(ImageError::DigestMismatch {
            expected: digest.to_string(),
            actual,
        });
    }
    Ok(())
}

// ---- process-wide sharing between pulls ----

/// `<store root>#<kind>:<digest or chain ID>`: locks and memory are per store, and a layer's
/// chain ID (which can equal its blob's digest) does not share a lock with the blob.
fn key(store: &ImageStore, kind: &str, id: &str) -> String {
    format!("{}#{kind}:{id}", store.root().display())
}

static LOCKS: LazyLock<Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Default::default);

/// Serialises work on one blob or layer across the pulls of this process.
async fn lock_key(k: String) -> OwnedMutexGuard<()> {
    let m = {
        let mut map = LOCKS.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        match map.get(&k).and_then(Weak::upgrade) {
            Some(m) => m,
            None => {
                let m = Arc::new(tokio::sync::Mutex::new(()));
                map.insert(k, Arc::downgrade(&m));
                m
            }
        }
    };
    m.lock_owned().await
}

/// Manifests and configs pulls hold in memory, shared with concurrent pulls of the same image
/// (they are stored only when a pull completes). Entries live as long as some pull holds them.
static SMALL: LazyLock<Mutex<HashMap<String, Weak<Vec<u8>>>>> = LazyLock::new(Default::default);

fn remember(k: &str, bytes: &Arc<Vec<u8>>) {
    let mut map = SMALL.lock().unwrap_or_else(|e| e.into_inner());
    map.retain(|_, w| w.strong_count() > 0);
    map.insert(k.to_string(), Arc::downgrade(bytes));
}

fn recall(k: &str) -> Option<Arc<Vec<u8>>> {
    let map = SMALL.lock().unwrap_or_else(|e| e.into_inner());
    map.get(k).and_then(Weak::upgrade)
}

/// Runs a blocking store call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ImageError::format("image store task", e))?
}

#[cfg(test)]
mod tests {
    //! Pulls from a real registry (Debian's docker-registry, distribution 2.x) on 127.0.0.1,
    //! filled by the test with oci-client's push; skipped when it cannot be had. The cut-off
    //! download test uses a tiny in-process HTTP server instead and always runs.

    use super::*;
    use crate::image::platform::host_arch;
    use std::io::{BufRead, Write};
    use std::net::TcpStream;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::OnceLock;

    use oci_client::Reference as OciRef;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::task::JoinHandle;

    /// The request line and headers of one HTTP/1.1 request, for the fake registries below;
    /// None when the client hangs up first.
    async fn read_head(sock: &mut tokio::net::TcpStream) -> Option<String> {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if sock.read(&mut byte).await.unwrap_or(0) == 0 {
                return None;
            }
            head.push(byte[0]);
        }
        Some(String::from_utf8_lossy(&head).into_owned())
    }

    const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

    // ---- fixtures ----

    use crate::fsutil::TempDir;

    fn new_store(dir: &TempDir) -> Arc<ImageStore> {
        Arc::new(ImageStore::open(&dir.0.join("store")).unwrap())
    }

    /// A layer blob of `files`, compressed as `media_type` says; returns (blob, diff ID).
    fn layer(files: Files, media_type: &str) -> (Vec<u8>, String) {
        let mut b = tar::Builder::new(Vec::new());
        for (name, content) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(1_700_000_000);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, *content).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let diff = sha256(&tar);
        let blob = if media_type.ends_with("gzip") {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&tar).unwrap();
            e.finish().unwrap()
        } else if media_type.ends_with("zstd") {
            zstd::stream::encode_all(&tar[..], 3).unwrap()
        } else {
            tar
        };
        (blob, diff)
    }

    /// Files of one layer: (path, content).
    type Files<'a> = &'a [(&'a str, &'a [u8])];

    /// An image to push: its blobs (config last) and its manifest.
    struct TestImage {
        blobs: Vec<Vec<u8>>,
        manifest: Vec<u8>,
        media_type: &'static str,
    }

    impl TestImage {
        /// One layer per entry of `layers`; `docker` gives Docker schema 2 media types.
        fn new(layers: &[(Files, &str)], arch: &str, docker: bool) -> TestImage {
            let mut blobs = Vec::new();
            let mut diff_ids = Vec::new();
            let mut descs = Vec::new();
            for (files, mt) in layers {
                let (blob, diff) = layer(files, mt);
                descs.push(serde_json::json!({
                    "mediaType": mt, "digest": sha256(&blob), "size": blob.len(),
                }));
                diff_ids.push(diff);
                blobs.push(blob);
            }
            let config = serde_json::to_vec(&serde_json::json!({
                "architecture": arch, "os": "linux",
                "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }))
            .unwrap();
            let (mt, config_mt) = if docker {
                (
                    DOCKER_MANIFEST,
                    "application/vnd.docker.container.image.v1+json",
                )
            } else {
                (OCI_MANIFEST, "application/vnd.oci.image.config.v1+json")
            };
            let manifest = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2, "mediaType": mt,
                "config": {"mediaType": config_mt, "digest": sha256(&config), "size": config.len()},
                "layers": descs,
            }))
            .unwrap();
            blobs.push(config);
            TestImage {
                blobs,
                manifest,
                media_type: mt,
            }
        }

        fn digest(&self) -> String {
            sha256(&self.manifest)
        }

        fn layer_digests(&self) -> Vec<String> {
            self.blobs[..self.blobs.len() - 1]
                .iter()
                .map(|b| sha256(b))
                .collect()
        }

        fn config_digest(&self) -> String {
            sha256(self.blobs.last().unwrap())
        }
    }

    // ---- the registry ----

    /// docker-registry can run here: root, and the binary installed (installing it if need be).
    fn registry_available() -> bool {
        static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
        let res = AVAILABLE.get_or_init(|| {
            if !nix::unistd::geteuid().is_root() {
                return Err("not root".into());
            }
            for (bin, pkg) in [
                ("/usr/bin/docker-registry", "docker-registry"),
                ("/usr/bin/htpasswd", "apache2-utils"),
            ] {
                if !Path::new(bin).exists() {
                    let _ = Command::new("apt-get")
                        .args(["install", "-y", "-q", pkg])
                        .env("DEBIAN_FRONTEND", "noninteractive")
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
                if !Path::new(bin).exists() {
                    return Err(format!(
                        "{bin} is missing (apt-get install -y {pkg} failed)"
                    ));
                }
            }
            Ok(())
        });
        match res {
            Ok(()) => true,
            Err(why) => {
                eprintln!("skipping registry test: {why}");
                false
            }
        }
    }

    /// A docker-registry on 127.0.0.1:<free port>, storage in a temp dir, killed on drop.
    struct Registry {
        child: Child,
        port: u16,
        dir: TempDir,
        user: Option<(String, String)>,
    }

    impl Drop for Registry {
        fn drop(&mut self) {
            let _ = self.child.kill(); // SIGKILL to this PID only
            let _ = self.child.wait();
        }
    }

    impl Registry {
        fn start(user: Option<(&str, &str)>) -> Registry {
            let mut dir = TempDir::new("registry");
            let mut auth = String::new();
            if let Some((u, p)) = user {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", u, p])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "htpasswd: {out:?}");
                std::fs::write(dir.0.join("htpasswd"), &out.stdout).unwrap();
                auth = format!(
                    "auth:\n  htpasswd:\n    realm: peapod-test\n    path: {}\n",
                    dir.0.join("htpasswd").display()
                );
            }
            for _ in 0..5 {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                let config = dir.0.join("config.yml");
                std::fs::write(
                    &config,
                    format!(
                        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    \
                         rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: \
                         127.0.0.1:{port}\n{auth}",
                        dir.0.join("data").display()
                    ),
                )
                .unwrap();
                let log = std::fs::File::create(dir.0.join("registry.log")).unwrap();
                let child = Command::new("/usr/bin/docker-registry")
                    .arg("serve")
                    .arg(&config)
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .unwrap();
                let mut reg = Registry {
                    child,
                    port,
                    dir,
                    user: user.map(|(u, p)| (u.to_string(), p.to_string())),
                };
                for _ in 0..100 {
                    if reg.answers() {
                        return reg;
                    }
                    if reg.child.try_wait().unwrap().is_some() {
                        break; // port taken meanwhile: try another
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = reg.child.kill();
                let _ = reg.child.wait();
                dir = std::mem::replace(&mut reg.dir, TempDir(PathBuf::new()));
            }
            panic!("docker-registry did not start");
        }

        fn answers(&self) -> bool {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
                return false;
            };
            let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
            let mut line = String::new();
            let _ = std::io::BufReader::new(s).read_line(&mut line);
            line.starts_with("HTTP/1.")
        }

        fn host(&self) -> String {
            format!("127.0.0.1:{}", self.port)
        }

        fn auth(&self) -> RegistryAuth {
            match &self.user {
                Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
                None => RegistryAuth::Anonymous,
            }
        }

        fn client(&self) -> oci_client::Client {
            init_tls();
            oci_client::Client::try_from(ClientConfig {
                protocol: ClientProtocol::Http,
                ..Default::default()
            })
            .unwrap()
        }

        /// Pushes the image's blobs and its manifest as `repo:tag` (or by digest only).
        async fn push(&self, repo: &str, tag: Option<&str>, image: &TestImage) {
            let client = self.client();
            let r = OciRef::with_tag(self.host(), repo.into(), "x".into());
            client
                .store_auth_if_needed(&self.host(), &self.auth())
                .await;
            for blob in &image.blobs {
                client
                    .push_blob(&r, blob.clone(), &sha256(blob))
                    .await
                    .unwrap();
            }
            self.push_manifest(repo, tag, &image.manifest, image.media_type)
                .await;
        }

        async fn push_manifest(&self, repo: &str, tag: Option<&str>, body: &[u8], mt: &str) {
            let client = self.client();
            client
                .store_auth_if_needed(&self.host(), &self.auth())
                .await;
            let r = match tag {
                Some(t) => OciRef::with_tag(self.host(), repo.into(), t.into()),
                None => OciRef::with_digest(self.host(), repo.into(), sha256(body)),
            };
            client
                .push_manifest_raw(&r, body.to_vec(), mt.parse().unwrap())
                .await
                .unwrap_or_else(|e| panic!("pushing manifest {repo}: {e}"));
        }

        /// GET requests whose path contains `needle`, from the access log.
        fn gets(&self, needle: &str) -> usize {
            // The access log line is written after the response went out.
            std::thread::sleep(Duration::from_millis(300));
            let log = std::fs::read_to_string(self.dir.0.join("registry.log")).unwrap();
            log.lines()
                .filter(|l| l.contains("\"GET /v2/") && l.contains(needle))
                .count()
        }

        /// Where the registry keeps a blob's content.
        fn blob_file(&self, digest: &str) -> PathBuf {
            let hex = digest.strip_prefix("sha256:").unwrap();
            self.dir.0.join(format!(
                "data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
                &hex[..2]
            ))
        }
    }

    fn layer_file(store: &ImageStore, rec: &ImageRecord, path: &str) -> Option<Vec<u8>> {
        store
            .layer_dirs(rec)
            .iter()
            .find_map(|d| std::fs::read(d.join(path)).ok())
    }

    fn assert_store_empty(store: &ImageStore) {
        assert!(store.list().is_empty(), "records: {:?}", store.list());
        assert!(store.list_blobs().unwrap().is_empty(), "blobs left");
        assert!(store.list_layers().unwrap().is_empty(), "layers left");
        let ingest = store.root().join("ingest");
        assert_eq!(
            std::fs::read_dir(&ingest).unwrap().count(),
            0,
            "ingest not cleaned"
        );
        let tmp_layers = std::fs::read_dir(store.root().join("layers"))
            .unwrap()
            .count();
        assert_eq!(tmp_layers, 0, "temporary layer directories left");
    }

    fn three_layer_image() -> TestImage {
        TestImage::new(
            &[
                (&[("etc/gzip.txt", b"from a gzip layer")], GZIP),
                (&[("etc/plain.txt", b"from a plain tar layer")], TAR),
                (&[("etc/zstd.txt", b"from a zstd layer")], ZSTD),
            ],
            host_arch(),
            false,
        )
    }

    // ---- tests ----

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pull_by_tag_and_digest_and_again() {
        if !registry_available() {
            return;
        }
        let reg = Registry::start(None);
        let image = three_layer_image();
        reg.push("test/app", Some("v1"), &image).await;
        let dir = TempDir::new("tag");
        let store = new_store(&dir);
        let cfg = RegistryConfig::default(); // 127.0.0.1 is plain HTTP by default
        let name = format!("{}/test/app", reg.host());

        let rec = pull(store.clone(), &cfg, &format!("{name}:v1"), None)
            .await
            .unwrap();
        assert_eq!(rec.repo_tags, [format!("{name}:v1")]);
        assert_eq!(rec.repo_digests, [format!("{name}@{}", image.digest())]);
        assert_eq!(rec.id, image.config_digest());
        assert_eq!(rec.chain_ids.len(), 3);
        assert_eq!(
            rec.config.config().as_ref().unwrap().cmd(),
            &Some(vec!["sh".to_string()])
        );
        for (path, want) in [
            ("etc/gzip.txt", &b"from a gzip layer"[..]),
            ("etc/plain.txt", b"from a plain tar layer"),
            ("etc/zstd.txt", b"from a zstd layer"),
        ] {
            assert_eq!(
                layer_file(&store, &rec, path).as_deref(),
                Some(want),
                "{path}"
            );
        }
        // Manifest, config and layer blobs are all in the store.
        for d in image
            .layer_digests()
            .iter()
            .chain([&image.config_digest(), &image.digest()])
        {
            assert!(store.has_blob(&parse_digest(d).unwrap()), "{d}");
        }
        let blob_gets = reg.gets("/v2/test/app/blobs/");
        assert_eq!(blob_gets, 4, "config + 3 layers");

        // Again by tag: only the manifest is asked for.
        let again = pull(store.clone(), &cfg, &format!("{name}:v1"), None)
            .await
            .unwrap();
        assert_eq!(again, rec);
        assert_eq!(
            reg.gets("/v2/test/app/blobs/"),
            blob_gets,
            "nothing downloaded"
        );

        // By digest, with everything present: no request at all, and only the digest is added.
        let all = reg.gets("/v2/test/app/");
        let by_digest = format!("{name}@{}", image.digest());
        let rec2 = pull(store.clone(), &cfg, &by_digest, None).await.unwrap();
        assert_eq!(
            reg.gets("/v2/test/app/"),
            all,
            "no request for a local digest"
        );
        assert_eq!(rec2.repo_tags, rec.repo_tags);
        assert_eq!(rec2.repo_digests, rec.repo_digests);

        // The same manifest under another tag: the tag is added to the same image.
        reg.push_manifest("test/app", Some("v2"), &image.manifest, image.media_type)
            .await;
        let rec3 = pull(store.clone(), &cfg, &format!("{name}:v2"), None)
            .await
            .unwrap();
        assert_eq!(rec3.id, rec.id);
        assert_eq!(rec3.repo_tags, [format!("{name}:v1"), format!("{name}:v2")]);
        assert_eq!(store.list().len(), 1);

        // A fresh store pulled by digest: downloads, records the repo digest only.
        let dir2 = TempDir::new("digest");
        let store2 = new_store(&dir2);
        let rec4 = pull(store2.clone(), &cfg, &by_digest, None).await.unwrap();
        assert!(rec4.repo_tags.is_empty(), "{:?}", rec4.repo_tags);
        assert_eq!(rec4.repo_digests, [by_digest.as_str()]);
        assert!(layer_file(&store2, &rec4, "etc/zstd.txt").is_some());

        // Unknown tag and repository: NotFound, named as asked.
        for missing in [
            format!("{name}:nope"),
            format!("{}/test/nothing:v1", reg.host()),
        ] {
            match pull(store.clone(), &cfg, &missing, None).await {
                Err(ImageError::NotFound { reference }) => assert_eq!(reference, missing),
                other => panic!("{missing}: {other:?}"),
            }
        }
        // A digest the registry does not have.
        let absent = format!("{name}@{}", sha256(b"absent"));
        assert!(
            matches!(
                pull(store.clone(), &cfg, &absent, None).await,
                Err(ImageError::NotFound { .. })
            ),
            "absent digest"
        );
        assert!(matches!(
            pull(store.clone(), &cfg, "Not/A/Reference", None).await,
            Err(ImageError::InvalidReference { .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pull_through_a_mirror() {
        if !registry_available() {
            return;
        }
        let reg = Registry::start(None);
        let image = TestImage::new(&[(&[("hello", b"mirrored")], GZIP)], host_arch(), false);
        reg.push("library/mirrored", Some("1.0"), &image).await;
        // A dead mirror first (nothing listens there), then the live one; no fallback to the
        // real docker.io, so the test never leaves this machine.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_port = dead.local_addr().unwrap().port();
        drop(dead);
        let cfg: RegistryConfig = toml::from_str(&format!(
            r#"
            [mirrors."docker.io"]
            endpoints = ["http://127.0.0.1:{dead_port}", "http://{}"]
            fallback = false
            "#,
            reg.host()
        ))
        .unwrap();
        cfg.validate().unwrap();
        let dir = TempDir::new("mirror");
        let store = new_store(&dir);
        let rec = pull(store.clone(), &cfg, "docker.io/library/mirrored:1.0", None)
            .await
            .unwrap();
        assert_eq!(rec.repo_tags, ["docker.io/library/mirrored:1.0"]);
        assert_eq!(
            rec.repo_digests,
            [format!("docker.io/library/mirrored@{}", image.digest())]
        );
        assert_eq!(
            layer_file(&store, &rec, "hello").as_deref(),
            Some(&b"mirrored"[..])
        );
        // The short name is the same image; the mirror was told the upstream registry.
        let short = pull(store.clone(), &cfg, "mirrored:1.0", None)
            .await
            .unwrap();
        assert_eq!(short.id, rec.id);
        assert_eq!(reg.gets("?ns=docker.io"), reg.gets("/v2/library/mirrored/"));
        assert!(store.get("docker.io/library/mirrored:1.0").is_ok());

        // Nothing there: every endpoint fails, NotFound (the dead mirror's connection error is
        // the less telling one).
        match pull(store.clone(), &cfg, "library/absent:1", None).await {
            Err(ImageError::NotFound { reference }) => {
                assert_eq!(reference, "docker.io/library/absent:1")
            }
            other => panic!("{other:?}"),
        }
        // Only the dead endpoint: a Registry error naming it.
        let cfg: RegistryConfig = toml::from_str(&format!(
            "[mirrors.\"docker.io\"]\nendpoints = [\"http://127.0.0.1:{dead_port}\"]\nfallback = false"
        ))
        .unwrap();
        match pull(store.clone(), &cfg, "mirrored:1.0", None).await {
            Err(ImageError::Registry { registry, reason }) => {
                eprintln!("dead mirror: {reason}");
                assert_eq!(registry, format!("127.0.0.1:{dead_port}"));
                assert!(reason.contains("onnect"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn index_picks_the_host_platform_and_docker_manifests_work() {
        if !registry_available() {
            return;
        }
        let reg = Registry::start(None);
        let other_arch = if host_arch() == "arm64" {
            "amd64"
        } else {
            "arm64"
        };
        let mine = TestImage::new(
            &[(&[("arch", host_arch().as_bytes())], GZIP)],
            host_arch(),
            false,
        );
        let theirs = TestImage::new(
            &[(&[("arch", other_arch.as_bytes())], GZIP)],
            other_arch,
            false,
        );
        reg.push("multi", None, &mine).await;
        reg.push("multi", None, &theirs).await;
        let entry = |img: &TestImage, arch: &str| {
            serde_json::json!({
                "mediaType": OCI_MANIFEST, "digest": img.digest(), "size": img.manifest.len(),
                "platform": {"os": "linux", "architecture": arch},
            })
        };
        // Listed with the other platform first, so a "take the first" bug shows.
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [entry(&theirs, other_arch), entry(&mine, host_arch())],
        }))
        .unwrap();
        reg.push_manifest("multi", Some("latest"), &index, OCI_INDEX)
            .await;

        let dir = TempDir::new("index");
        let store = new_store(&dir);
        let cfg = RegistryConfig::default();
        let name = format!("{}/multi", reg.host());
        let rec = pull(store.clone(), &cfg, &name, None).await.unwrap();
        assert_eq!(rec.repo_tags, [format!("{name}:latest")]);
        // The repo digest is the index's, as in containerd.
        assert_eq!(rec.repo_digests, [format!("{name}@{}", sha256(&index))]);
        assert_eq!(rec.id, mine.config_digest());
        assert_eq!(
            layer_file(&store, &rec, "arch").as_deref(),
            Some(host_arch().as_bytes())
        );
        assert!(store.has_blob(&parse_digest(&sha256(&index)).unwrap()));
        assert!(store.has_blob(&parse_digest(&mine.digest()).unwrap()));
        assert!(!store.has_blob(&parse_digest(&theirs.config_digest()).unwrap()));

        // An index without this platform.
        let foreign = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [entry(&theirs, other_arch)],
        }))
        .unwrap();
        reg.push_manifest("multi", Some("foreign"), &foreign, OCI_INDEX)
            .await;
        match pull(store.clone(), &cfg, &format!("{name}:foreign"), None).await {
            Err(ImageError::Format { reason, .. }) => {
                assert!(
                    reason.contains(&format!("no manifest for linux/{}", host_arch())),
                    "{reason}"
                );
                assert!(reason.contains(other_arch), "{reason}");
            }
            other => panic!("{other:?}"),
        }

        // Docker schema 2, with a Docker manifest list around it.
        let docker = TestImage::new(
            &[
                (&[("docker.txt", b"docker gzip")], DOCKER_GZIP),
                (
                    &[("plain.txt", b"docker tar")],
                    "application/vnd.docker.image.rootfs.diff.tar",
                ),
            ],
            host_arch(),
            true,
        );
        reg.push("docker", Some("v1"), &docker).await;
        let dname = format!("{}/docker", reg.host());
        let rec = pull(store.clone(), &cfg, &format!("{dname}:v1"), None)
            .await
            .unwrap();
        assert_eq!(
            layer_file(&store, &rec, "docker.txt").as_deref(),
            Some(&b"docker gzip"[..])
        );
        assert_eq!(
            layer_file(&store, &rec, "plain.txt").as_deref(),
            Some(&b"docker tar"[..])
        );
        let list = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST,
            "manifests": [{
                "mediaType": DOCKER_MANIFEST, "digest": docker.digest(), "size": docker.manifest.len(),
                "platform": {"os": "linux", "architecture": host_arch()},
            }],
        }))
        .unwrap();
        reg.push_manifest("docker", Some("list"), &list, DOCKER_MANIFEST_LIST)
            .await;
        let rec2 = pull(store.clone(), &cfg, &format!("{dname}:list"), None)
            .await
            .unwrap();
        assert_eq!(rec2.id, rec.id);
        assert!(rec2
            .repo_digests
            .contains(&format!("{dname}@{}", sha256(&list))));

        // The collector finds everything referenced (indexes lead to their child manifests),
        // and once the images are removed, frees it all.
        let none = std::collections::HashSet::new();
        assert_eq!(
            crate::image::gc(&store, &none).unwrap(),
            crate::image::GcStats::default()
        );
        for r in store.list() {
            store.remove(&r.id).unwrap();
        }
        let stats = crate::image::gc(&store, &none).unwrap();
        assert_eq!(stats.layers_removed, 3, "{stats:?}");
        assert_store_empty(&store);
    }

    #[test]
    fn pull_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let dir = TempDir::new("send");
        let store = new_store(&dir);
        let cfg = RegistryConfig::default();
        let fut = pull(store, &cfg, "busybox", None);
        assert_send(&fut);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_pulls_download_each_blob_once() {
        if !registry_available() {
            return;
        }
        let reg = Registry::start(None);
        // Layers big enough that the pulls overlap.
        let big = |seed: u8| -> Vec<u8> {
            (0..4 << 20u32)
                .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
                .collect()
        };
        let (base, a_top, b_top) = (big(1), big(2), big(3));
        let a = TestImage::new(
            &[(&[("base", &base)], GZIP), (&[("a", &a_top)], TAR)],
            host_arch(),
            false,
        );
        let b = TestImage::new(
            &[(&[("base", &base)], GZIP), (&[("b", &b_top)], ZSTD)],
            host_arch(),
            false,
        );
        reg.push("con/a", Some("v1"), &a).await;
        reg.push("con/b", Some("v1"), &b).await;
        let cfg = RegistryConfig::default();
        let (na, nb) = (
            format!("{}/con/a:v1", reg.host()),
            format!("{}/con/b:v1", reg.host()),
        );

        // The same image twice at once.
        let dir = TempDir::new("concurrent");
        let store = new_store(&dir);
        let (r1, r2) = tokio::join!(
            pull(store.clone(), &cfg, &na, None),
            pull(store.clone(), &cfg, &na, None)
        );
        let (r1, r2) = (r1.unwrap(), r2.unwrap());
        assert_eq!(r1.id, r2.id);
        for d in a.layer_digests().iter().chain([&a.config_digest()]) {
            assert_eq!(reg.gets(&format!("blobs/{d}")), 1, "{d} downloaded once");
        }
        assert_eq!(layer_file(&store, &r1, "a").unwrap(), a_top);
        assert_eq!(store.list().len(), 1);

        // Two images sharing their base layer, at once, into a fresh store.
        let dir2 = TempDir::new("concurrent2");
        let store2 = new_store(&dir2);
        let base_digest = a.layer_digests()[0].clone();
        assert_eq!(base_digest, b.layer_digests()[0]);
        let before = reg.gets(&format!("blobs/{base_digest}"));
        let (ra, rb) = tokio::join!(
            pull(store2.clone(), &cfg, &na, None),
            pull(store2.clone(), &cfg, &nb, None)
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(reg.gets(&format!("blobs/{base_digest}")), before + 1);
        assert_eq!(ra.chain_ids[0], rb.chain_ids[0]);
        assert_eq!(layer_file(&store2, &rb, "b").unwrap(), b_top);
        assert_eq!(layer_file(&store2, &rb, "base").unwrap(), base);
        assert_eq!(store2.list_layers().unwrap().len(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn basic_auth() {
        if !registry_available() {
            return;
        }
        let reg = Registry::start(Some(("peapod", "s3cret")));
        let image = TestImage::new(&[(&[("private", b"data")], GZIP)], host_arch(), false);
        reg.push("private/app", Some("v1"), &image).await;
        let cfg = RegistryConfig::default();
        let name = format!("{}/private/app:v1", reg.host());
        let dir = TempDir::new("auth");
        let store = new_store(&dir);

        for (auth, why) in [
            (None, "no credentials"),
            (
                Some(PullAuth {
                    username: "peapod".into(),
                    password: "wrong".into(),
                    ..Default::default()
                }),
                "wrong password",
            ),
            (
                Some(PullAuth {
                    username: "nobody".into(),
                    password: "s3cret".into(),
                    ..Default::default()
                }),
                "wrong user",
            ),
        ] {
            match pull(store.clone(), &cfg, &name, auth.as_ref()).await {
                Err(ImageError::Unauthorized { registry, reason }) => {
                    eprintln!(
                        "{why}: {}",
                        ImageError::Unauthorized {
                            registry: registry.clone(),
                            reason: reason.clone()
                        }
                    );
                    assert_eq!(registry, reg.host(), "{why}");
                    assert!(reason.contains("401"), "{why}: {reason}");
                }
                other => panic!("{why}: {other:?}"),
            }
        }
        assert_store_empty(&store);

        let good = PullAuth::from_basic_auth("cGVhcG9kOnMzY3JldA==").unwrap(); // peapod:s3cret
        assert_eq!(good.username, "peapod");
        assert!(!format!("{good:?}").contains("s3cret"), "Debug redacts");
        let rec = pull(store.clone(), &cfg, &name, Some(&good)).await.unwrap();
        assert_eq!(
            layer_file(&store, &rec, "private").as_deref(),
            Some(&b"data"[..])
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tampered_content_is_refused_and_nothing_is_stored() {
        if !registry_available() {
            return;
        }
        let reg = Registry::start(None);
        let cfg = RegistryConfig::default();
        let dir = TempDir::new("tamper");
        let store = new_store(&dir);

        // A layer blob changed in the registry's storage (same length, one byte flipped).
        let image = TestImage::new(&[(&[("f", &[7u8; 10000][..])], GZIP)], host_arch(), false);
        reg.push("tamper/blob", Some("v1"), &image).await;
        let layer_digest = image.layer_digests()[0].clone();
        let file = reg.blob_file(&layer_digest);
        let mut data = std::fs::read(&file).unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        std::fs::write(&file, &data).unwrap();
        match pull(
            store.clone(),
            &cfg,
            &format!("{}/tamper/blob:v1", reg.host()),
            None,
        )
        .await
        {
            Err(ImageError::DigestMismatch { expected, actual }) => {
                assert_eq!(expected, layer_digest);
                assert_eq!(actual, sha256(&data));
            }
            other => panic!("{other:?}"),
        }
        assert_store_empty(&store);

        // A manifest whose config names a diff ID its layer does not have.
        let (blob, _) = layer(&[("g", b"real content")], GZIP);
        let wrong_diff = sha256(b"some other tar");
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": host_arch(), "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [wrong_diff]},
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": IMAGE_CONFIGS[0], "digest": sha256(&config), "size": config.len()},
            "layers": [{"mediaType": GZIP, "digest": sha256(&blob), "size": blob.len()}],
        }))
        .unwrap();
        let bad = TestImage {
            blobs: vec![blob.clone(), config],
            manifest,
            media_type: OCI_MANIFEST,
        };
        reg.push("tamper/diff", Some("v1"), &bad).await;
        match pull(
            store.clone(),
            &cfg,
            &format!("{}/tamper/diff:v1", reg.host()),
            None,
        )
        .await
        {
            Err(ImageError::DigestMismatch { expected, .. }) => assert_eq!(expected, wrong_diff),
            other => panic!("{other:?}"),
        }
        // The verified layer blob may stay for a retry; no layer, record, manifest or config.
        assert!(store.list().is_empty());
        assert!(store.list_layers().unwrap().is_empty());
        let blobs: Vec<String> = store
            .list_blobs()
            .unwrap()
            .into_iter()
            .map(|b| b.0)
            .collect();
        assert!(blobs.iter().all(|b| *b == sha256(&blob)), "{blobs:?}");

        // Pulled by a digest the registry serves different content for: the manifest blob in
        // the registry is rewritten (same length), so the registry's answer does not hash to
        // the digest asked for.
        let good = TestImage::new(&[(&[("h", b"fine")], GZIP)], host_arch(), false);
        reg.push("tamper/manifest", Some("v1"), &good).await;
        let mfile = reg.blob_file(&good.digest());
        let mut m = std::fs::read(&mfile).unwrap();
        let pos = m.iter().position(|&c| c == b'2').unwrap(); // "schemaVersion":2 → 3
        m[pos] = b'3';
        std::fs::write(&mfile, &m).unwrap();
        let dir2 = TempDir::new("tamper2");
        let store2 = new_store(&dir2);
        let by_digest = format!("{}/tamper/manifest@{}", reg.host(), good.digest());
        match pull(store2.clone(), &cfg, &by_digest, None).await {
            Err(ImageError::DigestMismatch { expected, .. }) => assert_eq!(expected, good.digest()),
            other => panic!("{other:?}"),
        }
        assert_store_empty(&store2);
    }

    /// A registry that cuts the connection in the middle of a layer download.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cut_off_download_leaves_nothing() {
        let image = TestImage::new(
            &[(&[("big", &vec![1u8; 1 << 20][..])], TAR)],
            host_arch(),
            false,
        );
        let layer_digest = image.layer_digests()[0].clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = Arc::new(image.blobs.clone());
        let manifest = Arc::new(image.manifest.clone());
        let server = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (served, manifest) = (served.clone(), manifest.clone());
                tokio::spawn(async move {
                    let Some(head) = read_head(&mut sock).await else {
                        return;
                    };
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    let (body, cut, ctype): (Vec<u8>, bool, &str) = if path == "/v2/" {
                        (b"{}".to_vec(), false, "application/json")
                    } else if path.contains("/manifests/") {
                        (manifest.to_vec(), false, OCI_MANIFEST)
                    } else if let Some(b) = served.iter().find(|b| path.ends_with(&sha256(b))) {
                        let is_layer = path.ends_with(&sha256(&served[0]));
                        (b.clone(), is_layer, "application/octet-stream")
                    } else {
                        (Vec::new(), false, "text/plain")
                    };
                    let status = if body.is_empty() {
                        "404 Not Found"
                    } else {
                        "200 OK"
                    };
                    let header = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(header.as_bytes()).await;
                    let n = if cut { body.len() / 2 } else { body.len() };
                    let _ = sock.write_all(&body[..n]).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        let dir = TempDir::new("cut");
        let store = new_store(&dir);
        let name = format!("127.0.0.1:{port}/cut/app:v1");
        match pull(store.clone(), &RegistryConfig::default(), &name, None).await {
            Err(ImageError::Registry { registry, reason }) => {
                eprintln!("cut off: {reason}");
                assert_eq!(registry, format!("127.0.0.1:{port}"));
                assert!(reason.contains(&layer_digest), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        server.abort();
        assert_store_empty(&store);
    }

    /// What a fake registry answers for one path: a body with its true length, a chunked
    /// body that never ends, or a body's true length and only its first `n` bytes, after which
    /// the connection is closed (`Cut`) or held open without a word more (`Stall`).
    enum Answer {
        Body(Vec<u8>),
        Endless,
        Cut(Vec<u8>, usize),
        Stall(Vec<u8>, usize),
    }

    /// A 200 announcing all of `body`, and its first `n` bytes.
    async fn send_prefix(sock: &mut tokio::net::TcpStream, body: &[u8], n: usize) {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = sock.write_all(head.as_bytes()).await;
        let _ = sock.write_all(&body[..n]).await;
    }

    /// A registry on 127.0.0.1 answering each request path (without its query) with `answer`,
    /// 404 for None, `/v2/` open to all; one answer per connection. Returns its port.
    async fn fake_registry(
        answer: impl Fn(&str) -> Option<Answer> + Send + Sync + 'static,
    ) -> (u16, JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = Arc::new(answer);
        let server = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let Some(head) = read_head(&mut sock).await else {
                        return;
                    };
                    let target = head.split(' ').nth(1).unwrap_or("");
                    let path = target.split('?').next().unwrap_or("");
                    let found = if path == "/v2/" {
                        Some(Answer::Body(b"{}".to_vec()))
                    } else {
                        answer(path)
                    };
                    match found {
                        None => {
                            let _ = sock
                                .write_all(
                                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\
                                      Connection: close\r\n\r\n",
                                )
                                .await;
                        }
                        Some(Answer::Body(b)) => {
                            let head = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                b.len()
                            );
                            let _ = sock.write_all(head.as_bytes()).await;
                            let _ = sock.write_all(&b).await;
                        }
                        Some(Answer::Endless) => {
                            let _ = sock
                                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                                .await;
                            let chunk = [&b"10000\r\n"[..], &[b' '; 0x10000], b"\r\n"].concat();
                            while sock.write_all(&chunk).await.is_ok() {}
                        }
                        Some(Answer::Cut(b, n)) => send_prefix(&mut sock, &b, n).await,
                        Some(Answer::Stall(b, n)) => {
                            send_prefix(&mut sock, &b, n).await;
                            tokio::time::sleep(Duration::from_secs(600)).await;
                        }
                    }
                    let _ = sock.shutdown().await;
                });
            }
        });
        (port, server)
    }

    /// A manifest streamed without end: the pull fails once the manifest passes the limit
    /// rather than growing without bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn endless_manifest_is_cut_off() {
        let (port, server) =
            fake_registry(|p| p.contains("/manifests/").then_some(Answer::Endless)).await;
        let dir = TempDir::new("endless");
        let store = new_store(&dir);
        let name = format!("127.0.0.1:{port}/endless/app:v1");
        let cfg = RegistryConfig::default();
        let pulling = pull(store.clone(), &cfg, &name, None);
        match tokio::time::timeout(Duration::from_secs(60), pulling)
            .await
            .expect("the pull did not end")
        {
            Err(ImageError::Registry { reason, .. }) => {
                assert!(reason.contains("larger than 16777216 bytes"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        server.abort();
        assert_store_empty(&store);
    }

    /// A layer blob shorter than its descriptor (which claims 1000 bytes more) is refused,
    /// although its digest matches.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blob_shorter_than_its_descriptor_is_refused() {
        let image = TestImage::new(&[(&[("f", b"data")], TAR)], host_arch(), false);
        let mut m: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
        let real = m["layers"][0]["size"].as_u64().unwrap();
        m["layers"][0]["size"] = (real + 1000).into();
        let manifest = serde_json::to_vec(&m).unwrap();
        let blobs = image.blobs.clone();
        let (port, server) = fake_registry(move |p| {
            if p.contains("/manifests/") {
                return Some(Answer::Body(manifest.clone()));
            }
            blobs
                .iter()
                .find(|b| p.ends_with(&sha256(b)))
                .map(|b| Answer::Body(b.clone()))
        })
        .await;
        let dir = TempDir::new("short");
        let store = new_store(&dir);
        let name = format!("127.0.0.1:{port}/short/app:v1");
        match pull(store.clone(), &RegistryConfig::default(), &name, None).await {
            Err(ImageError::Registry { reason, .. }) => assert!(
                reason.contains(&format!("is {real} bytes, not the {} bytes", real + 1000)),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        server.abort();
        assert_store_empty(&store);
    }

    /// `n` bytes that compress badly, different for each `seed`.
    fn noise(n: u32, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
            .collect()
    }

    /// Serves `image` from a fake registry, its blobs as `blob(digest, content)` says; returns
    /// the port, the server and a count of the blob requests.
    async fn serve(
        image: &TestImage,
        blob: impl Fn(&str, &[u8]) -> Answer + Send + Sync + 'static,
    ) -> (u16, JoinHandle<()>, Arc<std::sync::atomic::AtomicUsize>) {
        let gets = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (manifest, blobs, counter) =
            (image.manifest.clone(), image.blobs.clone(), gets.clone());
        let (port, server) = fake_registry(move |p| {
            if p.contains("/manifests/") {
                return Some(Answer::Body(manifest.clone()));
            }
            let b = blobs.iter().find(|b| p.ends_with(&sha256(b)))?;
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Some(blob(&sha256(b), b))
        })
        .await;
        (port, server, gets)
    }

    /// Names in `ingest/` and the temporary names in `layers/`.
    fn temporaries(store: &ImageStore) -> Vec<String> {
        let names = |dir: &str| {
            std::fs::read_dir(store.root().join(dir))
                .unwrap()
                .map(|e| format!("{dir}/{}", e.unwrap().file_name().to_string_lossy()))
                .collect::<Vec<_>>()
        };
        let mut out = names("ingest");
        out.extend(names("layers").into_iter().filter(|n| n.contains("/.tmp-")));
        out
    }

    /// Waits until a failed or cancelled pull's temporaries are gone: its consumers and the
    /// layers it had unpacked clean up on blocking threads of their own.
    async fn wait_no_temporaries(store: &ImageStore) {
        for _ in 0..200 {
            if temporaries(store).is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("temporaries left: {:?}", temporaries(store));
    }

    /// The bottom layer's blob is corrupted on the way (same length, one byte flipped) while
    /// the layers above unpack fine and wait for it: the pull reports the digest, not the
    /// decompressor's complaint, and leaves no layer and no temporary.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_corrupted_layer_fails_a_parallel_pull_and_leaves_no_layer() {
        let data = noise(1 << 20, 1);
        let image = TestImage::new(
            &[
                (&[("bottom", &data)], GZIP),
                (&[("mid", b"m")], GZIP),
                (&[("top", b"t")], ZSTD),
            ],
            host_arch(),
            false,
        );
        let digests = image.layer_digests();
        let mut tampered = image.blobs[0].clone();
        let mid = tampered.len() / 2;
        tampered[mid] ^= 0xff;
        let (bad, served) = (digests[0].clone(), tampered.clone());
        let (port, server, _) = serve(&image, move |d, b| {
            Answer::Body(if d == bad { served.clone() } else { b.to_vec() })
        })
        .await;
        let dir = TempDir::new("corrupt");
        let store = new_store(&dir);
        let name = format!("127.0.0.1:{port}/corrupt/app:v1");
        match pull(store.clone(), &RegistryConfig::default(), &name, None).await {
            Err(ImageError::DigestMismatch { expected, actual }) => {
                assert_eq!(expected, digests[0]);
                assert_eq!(actual, sha256(&tampered));
            }
            other => panic!("{other:?}"),
        }
        server.abort();
        wait_no_temporaries(&store).await;
        assert!(store.list_layers().unwrap().is_empty(), "no layer named");
        assert!(store.list().is_empty());
        for (blob, _) in store.list_blobs().unwrap() {
            assert!(
                digests[1..].contains(&blob),
                "only verified blobs stay: {blob}"
            );
        }
    }

    /// A layer cut off in the middle of its download, whatever its compression: the unpacker
    /// sees the stream fail (not end), and nothing is left.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_layer_cut_off_mid_download_leaves_nothing() {
        let data = noise(256 << 10, 2);
        for mt in [GZIP, ZSTD, TAR] {
            let image = TestImage::new(&[(&[("f", &data)], mt)], host_arch(), false);
            let layer = image.layer_digests()[0].clone();
            let (port, server, _) = serve(&image, move |d, b| {
                if d == layer {
                    Answer::Cut(b.to_vec(), b.len() / 2)
                } else {
                    Answer::Body(b.to_vec())
                }
            })
            .await;
            let dir = TempDir::new("cut2");
            let store = new_store(&dir);
            let name = format!("127.0.0.1:{port}/cut/app:v1");
            match pull(store.clone(), &RegistryConfig::default(), &name, None).await {
                Err(ImageError::Registry { reason, .. }) => {
                    assert!(reason.contains(&image.layer_digests()[0]), "{mt}: {reason}")
                }
                other => panic!("{mt}: {other:?}"),
            }
            server.abort();
            wait_no_temporaries(&store).await;
            assert_store_empty(&store);
        }
    }

    /// A pull dropped while its bottom layer is half downloaded (and the top one unpacked and
    /// waiting for it) stops, and its temporaries go.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_pull_leaves_no_temporaries() {
        let data = noise(1 << 20, 3);
        let image = TestImage::new(
            &[(&[("bottom", &data)], GZIP), (&[("top", b"t")], TAR)],
            host_arch(),
            false,
        );
        let bottom = image.layer_digests()[0].clone();
        let (port, server, _) = serve(&image, move |d, b| {
            if d == bottom {
                Answer::Stall(b.to_vec(), b.len() / 2)
            } else {
                Answer::Body(b.to_vec())
            }
        })
        .await;
        let dir = TempDir::new("cancel");
        let store = new_store(&dir);
        let name = format!("127.0.0.1:{port}/cancel/app:v1");
        let task = {
            let store = store.clone();
            tokio::spawn(async move { pull(store, &RegistryConfig::default(), &name, None).await })
        };
        // Both layers' directories and the bottom blob's ingest file exist.
        let mut started = false;
        for _ in 0..400 {
            let t = temporaries(&store);
            let layers = t.iter().filter(|n| n.starts_with("layers/")).count();
            if layers == 2 && t.iter().any(|n| n.starts_with("ingest/")) {
                started = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(
            started,
            "the pull never got going: {:?}",
            temporaries(&store)
        );
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        wait_no_temporaries(&store).await;
        assert!(store.list_layers().unwrap().is_empty());
        server.abort();
    }

    /// Layers present are skipped, layers whose blob is present are unpacked from it, and
    /// only the missing blob is downloaded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn layers_are_unpacked_from_blobs_already_in_the_store() {
        let image = three_layer_image();
        let (port, server, gets) = serve(&image, |_, b| Answer::Body(b.to_vec())).await;
        let dir = TempDir::new("present");
        let store = new_store(&dir);
        let cfg = RegistryConfig::default();
        let name = format!("127.0.0.1:{port}/present/app:v1");
        let rec = pull(store.clone(), &cfg, &name, None).await.unwrap();
        let fetched = gets.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(fetched, 4, "3 layers and the config");

        // Layer 0 stays; layers 1 and 2 go, and so does layer 2's blob.
        for chain in &rec.chain_ids[1..] {
            let trash = store.trash_layer(chain).unwrap().unwrap();
            store.remove_trash(&trash).unwrap();
        }
        store.remove_blob(&image.layer_digests()[2]).unwrap();
        let again = pull(store.clone(), &cfg, &name, None).await.unwrap();
        assert_eq!(again.chain_ids, rec.chain_ids);
        assert_eq!(
            gets.load(std::sync::atomic::Ordering::SeqCst),
            fetched + 1,
            "only layer 2's blob"
        );
        for (path, want) in [
            ("etc/gzip.txt", &b"from a gzip layer"[..]),
            ("etc/plain.txt", b"from a plain tar layer"),
            ("etc/zstd.txt", b"from a zstd layer"),
        ] {
            assert_eq!(layer_file(&store, &again, path).as_deref(), Some(want));
        }
        assert!(temporaries(&store).is_empty());
        server.abort();
    }

    #[test]
    fn manifests_are_classified() {
        let d = parse_digest(&sha256(b"x")).unwrap();
        let schema1 = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(matches!(
            parse_manifest(schema1, &d),
            Err(ImageError::Format { reason, .. }) if reason.contains("schema 1")
        ));
        let artifact =
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.artifact.manifest.v1+json"}"#;
        assert!(parse_manifest(artifact, &d).is_err());
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(parse_manifest(index, &d), Ok(Doc::Index(_))));
        let encrypted = oci_spec::image::DescriptorBuilder::default()
            .media_type("application/vnd.oci.image.layer.v1.tar+gzip+encrypted")
            .digest(d.clone())
            .size(1u64)
            .build()
            .unwrap();
        assert!(matches!(
            check_layer_type(&encrypted),
            Err(ImageError::Format { reason, .. }) if reason.contains("encrypted")
        ));
        assert!(PullAuth::from_basic_auth("!!").is_err());
        assert_eq!(
            PullAuth {
                registry_token: "t".into(),
                ..Default::default()
            }
            .registry_auth(),
            RegistryAuth::Bearer("t".into())
        );
        assert_eq!(PullAuth::default().registry_auth(), RegistryAuth::Anonymous);
    }
}
