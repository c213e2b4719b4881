//! A CNI client (spec 1.0, with 1.1's STATUS and GC where the config and plugin speak 1.1):
//! loads the node's network configuration list, runs its plugins for a pod's pinned network
//! namespace, and caches what each attachment needs to be undone.
//!
//! - [`CniNetwork::load`] reads the first config of the conf dir (containerd's choice); none
//!   means the caller uses its built-in network.
//! - [`CniNetwork::add`] runs ADD through the list, each plugin getting the previous one's
//!   result as `prevResult` and, in `runtimeConfig`, the capability arguments it declares. The
//!   attachment is cached (config, arguments, result) before the first plugin runs and again
//!   with the result. A failed ADD is undone with DEL before the error is returned.
//! - [`CniNetwork::del`] undoes an attachment from its cache entry alone, with the config ADD
//!   used, the plugins in reverse order and the cached result as `prevResult`; a pod without an
//!   entry has nothing to undo. A netns that is gone is passed as an empty `CNI_NETNS`.
//! - [`CniNetwork::check`], [`CniNetwork::status`] and [`CniNetwork::gc`] for CHECK (0.4.0 and
//!   later), STATUS and GC (1.1.0).
//!
//! Every plugin run is bounded by [`CniConfig::exec_timeout`]; a plugin still running then is
//! killed with its process group. Nothing here is wired into the pod engine: the engine calls
//! `add` after pinning a pod's netns, `del` before unpinning it (and on recovery for each of
//! [`CniNetwork::cached_pods`] it no longer knows).

mod cache;
mod config;
mod exec;
mod result;

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use config::SUPPORTED_VERSIONS;
use config::{NetworkList, Plugin, Version, V0_3_0, V0_4_0, V1_1_0};
pub use result::{CniResult, Dns, Interface, IpConfig, IpNet, PluginError, Route};

pub const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";
/// Where plugins are looked for, in order: the upstream default, then Debian's.
pub const DEFAULT_BIN_DIRS: &[&str] = &["/opt/cni/bin", "/usr/lib/cni"];
/// On persistent storage: DEL must find the entry after a reboot.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/peapod/cni";
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_IF_NAME: &str = "eth0";

/// Where the client finds configs and plugins and keeps its cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniConfig {
    pub conf_dir: PathBuf,
    /// Searched in order for each plugin binary; also CNI_PATH.
    pub bin_dirs: Vec<PathBuf>,
    pub cache_dir: PathBuf,
    /// The pod's interface (CNI_IFNAME).
    pub if_name: String,
    /// The bound of one plugin run.
    pub exec_timeout: Duration,
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: DEFAULT_CONF_DIR.into(),
            bin_dirs: DEFAULT_BIN_DIRS.iter().map(PathBuf::from).collect(),
            cache_dir: DEFAULT_CACHE_DIR.into(),
            if_name: DEFAULT_IF_NAME.into(),
            exec_timeout: DEFAULT_EXEC_TIMEOUT,
        }
    }
}

/// The pod an attachment is for. `id` is the sandbox ID: CNI_CONTAINERID and the cache key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodArgs {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

impl PodArgs {
    /// CNI_ARGS as kubelet's runtimes pass it. Values with `;` or `=` cannot be carried (the
    /// format has no escapes), nor can an ID that is no safe file name.
    pub fn cni_args(&self) -> Result<String, CniError> {
        if !crate::fsutil::is_safe_id(&self.id) {
            return Err(CniError::InvalidArgument(format!(
                "pod id {:?} is not a safe ID",
                self.id
            )));
        }
        let pairs = [
            ("K8S_POD_NAMESPACE", &self.namespace),
            ("K8S_POD_NAME", &self.name),
            ("K8S_POD_INFRA_CONTAINER_ID", &self.id),
            ("K8S_POD_UID", &self.uid),
        ];
        let mut s = String::from("IgnoreUnknown=1");
        for (k, v) in pairs {
            if v.contains([';', '=', '\0']) {
                return Err(CniError::InvalidArgument(format!(
                    "{k} {v:?}: ';', '=' and NUL cannot be passed in CNI_ARGS"
                )));
            }
            s.push(';');
            s.push_str(k);
            s.push('=');
            s.push_str(v);
        }
        Ok(s)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

/// One `portMappings` entry, as the portmap plugin reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    /// Empty: every host address.
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// The `bandwidth` capability: rates in bits per second, bursts in bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    pub ingress_rate: u64,
    pub ingress_burst: u64,
    pub egress_rate: u64,
    pub egress_burst: u64,
}

/// One range of an `ipRanges` set, as host-local reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpRange {
    pub subnet: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub range_start: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub range_end: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
}

/// Capability arguments: each reaches, in `runtimeConfig`, only the plugins whose
/// `capabilities` declare it. `portMappings` is always passed to those (empty when the pod
/// maps no port, as containerd does); `bandwidth` and `ipRanges` only when set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapabilityArgs {
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
    /// A list of range sets (one per address family, usually).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_ranges: Vec<Vec<IpRange>>,
    /// Any other capability by its name (`dns`, `mac`, `ips`, `cgroupPath`, ...).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl CapabilityArgs {
    /// The `runtimeConfig` for a plugin declaring `declared`.
    fn runtime_config(&self, declared: &BTreeSet<String>) -> Map<String, Value> {
        let mut rc = Map::new();
        for cap in declared {
            let v = match cap.as_str() {
                "portMappings" => Some(to_json(&self.port_mappings)),
                "bandwidth" => self.bandwidth.as_ref().map(to_json),
                "ipRanges" => (!self.ip_ranges.is_empty()).then(|| to_json(&self.ip_ranges)),
                other => self.extra.get(other).cloned(),
            };
            if let Some(v) = v {
                rc.insert(cap.clone(), v);
            }
        }
        rc
    }
}

/// The capability types serialize infallibly (no maps with non-string keys).
fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("capability arguments serialize")
}

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// A config file (or cached config) that does not parse; `field` is empty for the whole
    /// file (bad JSON).
    #[error("{}", describe_config(file, field, msg))]
    Config {
        file: PathBuf,
        field: String,
        msg: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("network {network}: plugin {plugin:?} not found in {dirs}")]
    PluginNotFound {
        network: String,
        plugin: String,
        dirs: String,
    },
    /// The plugin failed and said why (its error object).
    #[error("network {network}: plugin {plugin} {command}: {error}")]
    Plugin {
        network: String,
        plugin: String,
        command: &'static str,
        /// Boxed: it is the largest part, and errors travel by value.
        error: Box<PluginError>,
        stderr: String,
    },
    /// The plugin failed without an error object; `output` is its stderr, else its stdout.
    #[error("network {network}: plugin {plugin} {command} failed ({status}): {output}")]
    PluginFailed {
        network: String,
        plugin: String,
        command: &'static str,
        status: String,
        output: String,
    },
    #[error(
        "network {network}: plugin {plugin} {command} still ran after {timeout:?} and was killed"
    )]
    Timeout {
        network: String,
        plugin: String,
        command: &'static str,
        timeout: Duration,
    },
    /// Exit 0 with output that is no valid result (or version reply).
    #[error("network {network}: plugin {plugin} {command}: bad output: {msg}")]
    BadOutput {
        network: String,
        plugin: String,
        command: &'static str,
        msg: String,
    },
    #[error("network {network}: config version {version} has no {command} command")]
    NotSupported {
        network: String,
        command: &'static str,
        version: String,
    },
    #[error("pod {pod} has no completed attachment to network {network}")]
    NotAttached { pod: String, network: String },
    #[error("cache entry {}: {msg}", path.display())]
    Cache { path: PathBuf, msg: String },
}

fn describe_config(file: &Path, field: &str, msg: &str) -> String {
    if field.is_empty() {
        format!("{}: {msg}", file.display())
    } else {
        format!("{}: field `{field}`: {msg}", file.display())
    }
}

impl CniError {
    /// The plugin's own error, when it gave one.
    pub fn plugin_error(&self) -> Option<&PluginError> {
        match self {
            CniError::Plugin { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The plugin's name, for errors a plugin run caused.
    pub fn plugin(&self) -> Option<&str> {
        match self {
            CniError::PluginNotFound { plugin, .. }
            | CniError::Plugin { plugin, .. }
            | CniError::PluginFailed { plugin, .. }
            | CniError::Timeout { plugin, .. }
            | CniError::BadOutput { plugin, .. } => Some(plugin),
            _ => None,
        }
    }

    /// The spec's code 11: the caller may try again later.
    pub fn is_try_again(&self) -> bool {
        self.plugin_error().is_some_and(|e| e.code == 11)
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CniError + '_ {
    move |source| CniError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// True when `path` is a network namespace file (a pinned bind mount or /proc/PID/ns/net):
/// an nsfs inode, not the empty file left once the pin is unmounted.
pub fn is_netns(path: &Path) -> bool {
    const NSFS_MAGIC: u64 = 0x6e73_6673;
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 as u64 == NSFS_MAGIC)
}

/// One attachment's per-call arguments.
struct Attachment<'a> {
    pod_id: &'a str,
    /// Empty when the netns is gone (DEL only).
    netns: OsString,
    if_name: &'a str,
    cni_args: &'a str,
    caps: &'a CapabilityArgs,
}

/// The config a plugin gets on stdin: its own object with the list's `name` and
/// `cniVersion`, `prevResult` when given, `runtimeConfig` from the capability arguments it
/// declares (as libcni builds it), and `extra` keys (GC's valid attachments).
fn plugin_conf(
    list: &NetworkList,
    plugin: &Plugin,
    prev: Option<&Value>,
    caps: Option<&CapabilityArgs>,
    extra: &[(&str, Value)],
) -> Value {
    let mut conf = plugin.conf.clone();
    conf.insert("name".into(), list.name.clone().into());
    conf.insert("cniVersion".into(), list.cni_version.clone().into());
    if let Some(p) = prev {
        conf.insert("prevResult".into(), p.clone());
    }
    if let Some(caps) = caps {
        let rc = caps.runtime_config(&plugin.capabilities);
        if !rc.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(rc));
        }
    }
    for (k, v) in extra {
        conf.insert((*k).into(), v.clone());
    }
    Value::Object(conf)
}

fn describe_status(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => s.to_string(),
    }
}

/// Runs one plugin command; its stdout on success.
async fn call(
    cfg: &CniConfig,
    list: &NetworkList,
    plugin: &Plugin,
    command: &'static str,
    att: Option<&Attachment<'_>>,
    prev: Option<&Value>,
    extra: &[(&str, Value)],
) -> Result<Vec<u8>, CniError> {
    let bin =
        exec::find_plugin(&plugin.kind, &cfg.bin_dirs).ok_or_else(|| CniError::PluginNotFound {
            network: list.name.clone(),
            plugin: plugin.kind.clone(),
            dirs: std::env::join_paths(&cfg.bin_dirs)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
        })?;
    let env = exec::PluginEnv {
        command,
        container_id: att.map(|a| a.pod_id.to_string()),
        netns: att.map(|a| a.netns.clone()),
        if_name: att.map(|a| a.if_name.to_string()),
        args: att.map(|a| a.cni_args.to_string()),
        path: exec::cni_path(&cfg.bin_dirs),
    };
    let stdin = if command == "VERSION" {
        serde_json::json!({ "cniVersion": list.cni_version })
    } else {
        plugin_conf(list, plugin, prev, att.map(|a| a.caps), extra)
    };
    let stdin = serde_json::to_vec(&stdin).expect("a JSON value serializes");
    let t0 = Instant::now();
    let out = exec::run(&bin, &env, &stdin, cfg.exec_timeout).await;
    tracing::debug!(
        network = %list.name,
        plugin = %plugin.kind,
        command,
        pod = att.map(|a| a.pod_id).unwrap_or(""),
        elapsed_ms = t0.elapsed().as_millis() as u64,
        "CNI plugin ran"
    );
    let out = match out {
        Ok(o) => o,
        Err(exec::RunError::Spawn(e)) => return Err(io_err(&bin)(e)),
        Err(exec::RunError::Timeout) => {
            return Err(CniError::Timeout {
                network: list.name.clone(),
                plugin: plugin.kind.clone(),
                command,
                timeout: cfg.exec_timeout,
            })
        }
    };
    if out.status.success() {
        return Ok(out.stdout);
    }
    if let Some(error) = result::parse_error(&out.stdout) {
        return Err(CniError::Plugin {
            network: list.name.clone(),
            plugin: plugin.kind.clone(),
            command,
            error: Box::new(error),
            stderr: out.stderr,
        });
    }
    let output = if out.stderr.is_empty() {
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    } else {
        out.stderr
    };
    Err(CniError::PluginFailed {
        network: list.name.clone(),
        plugin: plugin.kind.clone(),
        command,
        status: describe_status(out.status),
        output,
    })
}

/// Whether a plugin takes 1.1 commands: the list runs at 1.1.0 or later and the plugin's
/// VERSION reply lists such a version. A plugin whose VERSION fails takes none.
async fn speaks_1_1(
    cfg: &CniConfig,
    list: &NetworkList,
    plugin: &Plugin,
) -> Result<bool, CniError> {
    if !Version::at_least(&list.cni_version, V1_1_0) {
        return Ok(false);
    }
    let out = match call(cfg, list, plugin, "VERSION", None, None, &[]).await {
        Ok(o) => o,
        Err(e @ (CniError::PluginNotFound { .. } | CniError::Timeout { .. })) => return Err(e),
        Err(e) => {
            tracing::debug!("{e}: taken as no 1.1 support");
            return Ok(false);
        }
    };
    let v: Value = serde_json::from_slice(&out).map_err(|e| CniError::BadOutput {
        network: list.name.clone(),
        plugin: plugin.kind.clone(),
        command: "VERSION",
        msg: e.to_string(),
    })?;
    Ok(v["supportedVersions"].as_array().is_some_and(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .any(|s| Version::at_least(s, V1_1_0))
    }))
}

/// DEL through the list in reverse order (`prevResult` from 0.4.0 on).
async fn run_del(
    cfg: &CniConfig,
    list: &NetworkList,
    att: &Attachment<'_>,
    prev: Option<&Value>,
) -> Result<(), CniError> {
    let prev = prev.filter(|_| Version::at_least(&list.cni_version, V0_4_0));
    for plugin in list.plugins.iter().rev() {
        call(cfg, list, plugin, "DEL", Some(att), prev, &[]).await?;
    }
    Ok(())
}

/// Undoes one cached attachment and removes its entry. `netns` overrides the cached path; a
/// path that is no netns any more is passed as empty.
async fn del_entry(
    cfg: &CniConfig,
    path: &Path,
    entry: &cache::Entry,
    netns: Option<&Path>,
) -> Result<(), CniError> {
    let list = config::parse_list(&entry.config, path)?;
    let ns = netns.unwrap_or(&entry.netns);
    let att = Attachment {
        pod_id: &entry.pod.id,
        netns: if is_netns(ns) {
            ns.as_os_str().to_owned()
        } else {
            OsString::new()
        },
        if_name: &entry.if_name,
        cni_args: &entry.cni_args,
        caps: &entry.capability_args,
    };
    run_del(cfg, &list, &att, entry.result.as_ref()).await?;
    cache::remove(&cfg.cache_dir, path).map_err(io_err(path))
}

/// Reads a cache entry; a corrupt one is an error naming it.
fn read_entry(path: &Path) -> Result<Option<cache::Entry>, CniError> {
    match cache::read(path).map_err(io_err(path))? {
        None => Ok(None),
        Some(Ok(e)) => Ok(Some(e)),
        Some(Err(msg)) => Err(CniError::Cache {
            path: path.to_path_buf(),
            msg,
        }),
    }
}

/// A loaded network configuration list, ready to attach pods.
#[derive(Debug, Clone)]
pub struct CniNetwork {
    list: NetworkList,
    cfg: CniConfig,
}

impl CniNetwork {
    /// The first config of `cfg.conf_dir` in lexical order; `None` when it has none (or the
    /// directory is missing). A config that does not parse is an error naming file and field.
    pub fn load(cfg: &CniConfig) -> Result<Option<CniNetwork>, CniError> {
        Ok(config::load_dir(&cfg.conf_dir)?.map(|list| CniNetwork {
            list,
            cfg: cfg.clone(),
        }))
    }

    /// One config file (`.conflist`, or a single-plugin `.conf`/`.json`).
    pub fn load_file(cfg: &CniConfig, file: &Path) -> Result<CniNetwork, CniError> {
        Ok(CniNetwork {
            list: config::load_file(file)?,
            cfg: cfg.clone(),
        })
    }

    pub fn name(&self) -> &str {
        &self.list.name
    }

    /// The version the list runs at.
    pub fn cni_version(&self) -> &str {
        &self.list.cni_version
    }

    pub fn conf_file(&self) -> &Path {
        &self.list.source
    }

    /// The plugins' types, in ADD order.
    pub fn plugin_types(&self) -> Vec<&str> {
        self.list.plugins.iter().map(|p| p.kind.as_str()).collect()
    }

    pub fn config(&self) -> &CniConfig {
        &self.cfg
    }

    /// Attaches the pod whose netns is pinned at `netns`. The attachment is in the cache from
    /// before the first plugin runs until [`del`](Self::del) undoes it. An attachment of the
    /// same pod to this network that is still cached (a repeated ADD, or one a crash cut short)
    /// is undone first. A failed ADD is undone with DEL; if that fails too, the entry stays for
    /// `del` to retry.
    pub async fn add(
        &self,
        pod: &PodArgs,
        netns: &Path,
        caps: &CapabilityArgs,
    ) -> Result<CniResult, CniError> {
        let cni_args = pod.cni_args()?;
        if !is_netns(netns) {
            return Err(CniError::InvalidArgument(format!(
                "{} is not a network namespace",
                netns.display()
            )));
        }
        let cfg = &self.cfg;
        let list = &self.list;
        let path = cache::entry_path(&cfg.cache_dir, &pod.id, &list.name);
        match read_entry(&path) {
            Ok(None) => {}
            Ok(Some(old)) => {
                tracing::warn!(pod = %pod.id, network = %list.name, "undoing the cached attachment before ADD");
                del_entry(cfg, &path, &old, None).await?;
            }
            Err(e) => {
                tracing::warn!("{e}: removed");
                cache::remove(&cfg.cache_dir, &path).map_err(io_err(&path))?;
            }
        }
        let mut entry = cache::Entry {
            kind: cache::KIND.into(),
            network_name: list.name.clone(),
            pod: pod.clone(),
            if_name: cfg.if_name.clone(),
            netns: netns.to_path_buf(),
            cni_args,
            capability_args: caps.clone(),
            conf_file: list.source.clone(),
            config: list.raw.clone(),
            result: None,
        };
        cache::write(&cfg.cache_dir, &entry).map_err(io_err(&path))?;
        let att = Attachment {
            pod_id: &pod.id,
            netns: netns.as_os_str().to_owned(),
            if_name: &cfg.if_name,
            cni_args: &entry.cni_args,
            caps,
        };
        let chained = Version::at_least(&list.cni_version, V0_3_0);
        let mut prev: Option<(Value, CniResult)> = None;
        let mut failure = None;
        for plugin in &list.plugins {
            let prev_raw = prev.as_ref().map(|(v, _)| v).filter(|_| chained);
            match call(cfg, list, plugin, "ADD", Some(&att), prev_raw, &[]).await {
                Ok(out) => {
                    let bad = |msg: String| CniError::BadOutput {
                        network: list.name.clone(),
                        plugin: plugin.kind.clone(),
                        command: "ADD",
                        msg,
                    };
                    let parsed = serde_json::from_slice::<Value>(&out)
                        .map_err(|e| {
                            if out.iter().all(u8::is_ascii_whitespace) {
                                bad("no result".into())
                            } else {
                                bad(format!("invalid JSON: {e}"))
                            }
                        })
                        .and_then(|raw| {
                            result::parse_result(&list.cni_version, &cfg.if_name, &raw)
                                .map(|r| (raw, r))
                                .map_err(bad)
                        });
                    match parsed {
                        Ok(p) => prev = Some(p),
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let failure = match (failure, prev) {
            (None, Some((raw, result))) => {
                entry.result = Some(raw);
                match cache::write(&cfg.cache_dir, &entry) {
                    Ok(()) => return Ok(result),
                    // Not durable, so not done: undone below, with the result as prevResult.
                    Err(e) => io_err(&path)(e),
                }
            }
            (Some(e), p) => {
                entry.result = p.map(|(raw, _)| raw);
                e
            }
            (None, None) => unreachable!("a list has at least one plugin"),
        };
        // Undo what the plugins before the failure did (DEL must tolerate the rest).
        match run_del(cfg, list, &att, entry.result.as_ref()).await {
            Ok(()) => {
                if let Err(e) = cache::remove(&cfg.cache_dir, &path) {
                    tracing::warn!(pod = %pod.id, "removing the CNI cache entry {}: {e}", path.display());
                }
            }
            Err(e) => {
                tracing::warn!(pod = %pod.id, "undoing a failed CNI ADD: {e}; the cache entry stays for DEL");
            }
        }
        Err(failure)
    }

    /// Undoes every cached attachment of the pod (any network), each from its cache entry: the
    /// config ADD used, whatever the conf dir holds now. `netns` is the pod's netns path, or
    /// `None` for the one ADD was given; one that is gone is passed as empty. No entry: nothing
    /// to do, so DEL twice is fine. An entry that does not parse is logged and removed (nothing
    /// could undo it). On an error the entry stays, for a retry.
    pub async fn del(cfg: &CniConfig, pod_id: &str, netns: Option<&Path>) -> Result<(), CniError> {
        if !crate::fsutil::is_safe_id(pod_id) {
            return Err(CniError::InvalidArgument(format!(
                "pod id {pod_id:?} is not a safe ID"
            )));
        }
        let entries = cache::pod_entries(&cfg.cache_dir, pod_id)
            .map_err(io_err(&cfg.cache_dir.join(pod_id)))?;
        for path in entries {
            match read_entry(&path) {
                Ok(None) => {}
                Ok(Some(entry)) => del_entry(cfg, &path, &entry, netns).await?,
                Err(e) => {
                    tracing::warn!("{e}: removed, nothing can be undone from it");
                    cache::remove(&cfg.cache_dir, &path).map_err(io_err(&path))?;
                }
            }
        }
        Ok(())
    }

    /// CHECK of the pod's attachment to this network, with the config and result of its cache
    /// entry, the plugins in ADD order. Config versions before 0.4.0 have no CHECK; a list
    /// with `disableCheck` passes without running anything.
    pub async fn check(&self, pod_id: &str, netns: &Path) -> Result<(), CniError> {
        let cfg = &self.cfg;
        if !crate::fsutil::is_safe_id(pod_id) {
            return Err(CniError::InvalidArgument(format!(
                "pod id {pod_id:?} is not a safe ID"
            )));
        }
        let path = cache::entry_path(&cfg.cache_dir, pod_id, &self.list.name);
        let not_attached = || CniError::NotAttached {
            pod: pod_id.into(),
            network: self.list.name.clone(),
        };
        let entry = read_entry(&path)?.ok_or_else(not_attached)?;
        let list = config::parse_list(&entry.config, &path)?;
        if !Version::at_least(&list.cni_version, V0_4_0) {
            return Err(CniError::NotSupported {
                network: list.name,
                command: "CHECK",
                version: list.cni_version,
            });
        }
        if list.disable_check {
            return Ok(());
        }
        let result = entry.result.as_ref().ok_or_else(not_attached)?;
        if !is_netns(netns) {
            return Err(CniError::InvalidArgument(format!(
                "{} is not a network namespace",
                netns.display()
            )));
        }
        let att = Attachment {
            pod_id,
            netns: netns.as_os_str().to_owned(),
            if_name: &entry.if_name,
            cni_args: &entry.cni_args,
            caps: &entry.capability_args,
        };
        for plugin in &list.plugins {
            call(cfg, &list, plugin, "CHECK", Some(&att), Some(result), &[]).await?;
        }
        Ok(())
    }

    /// STATUS (1.1): whether the network can take ADDs. Runs for each plugin that speaks 1.1
    /// when the list does; the others (and lists before 1.1.0) count as ready.
    pub async fn status(&self) -> Result<(), CniError> {
        for plugin in &self.list.plugins {
            if speaks_1_1(&self.cfg, &self.list, plugin).await? {
                call(&self.cfg, &self.list, plugin, "STATUS", None, None, &[]).await?;
            }
        }
        Ok(())
    }

    /// Garbage collection: DEL of each cached attachment to this network whose pod is not in
    /// `valid_pods` (which must include pods being set up), then (1.1, unless `disableGC`) GC
    /// for each plugin that speaks 1.1, with the remaining attachments as
    /// `cni.dev/valid-attachments`. Goes on past errors; returns the first.
    pub async fn gc(&self, valid_pods: &[String]) -> Result<(), CniError> {
        let cfg = &self.cfg;
        let valid: HashSet<&str> = valid_pods.iter().map(String::as_str).collect();
        let mut first_err = None;
        let mut attachments = Vec::new();
        for pod in cache::pods(&cfg.cache_dir) {
            let path = cache::entry_path(&cfg.cache_dir, &pod, &self.list.name);
            let r = match read_entry(&path) {
                Ok(None) => Ok(()),
                Ok(Some(entry)) if valid.contains(pod.as_str()) => {
                    attachments.push(serde_json::json!({
                        "containerID": pod,
                        "ifname": entry.if_name,
                    }));
                    Ok(())
                }
                Ok(Some(entry)) => del_entry(cfg, &path, &entry, None).await,
                Err(e) if !valid.contains(pod.as_str()) => {
                    tracing::warn!("{e}: removed");
                    cache::remove(&cfg.cache_dir, &path).map_err(io_err(&path))
                }
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        if Version::at_least(&self.list.cni_version, V1_1_0) && !self.list.disable_gc {
            let extra = [("cni.dev/valid-attachments", Value::Array(attachments))];
            for plugin in &self.list.plugins {
                let r = match speaks_1_1(cfg, &self.list, plugin).await {
                    Ok(true) => call(cfg, &self.list, plugin, "GC", None, None, &extra)
                        .await
                        .map(drop),
                    Ok(false) => Ok(()),
                    Err(e) => Err(e),
                };
                if let Err(e) = r {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The pods with a cached attachment (to any network), for recovery: what was set up (or
    /// was being set up when the daemon stopped) and still needs a `del` once the pod goes.
    pub fn cached_pods(cache_dir: &Path) -> Vec<String> {
        cache::pods(cache_dir)
    }

    /// The cached result of the pod's first completed attachment (networks in name order),
    /// for its IPs after a restart; `None` when there is none.
    pub fn cached_result(cache_dir: &Path, pod_id: &str) -> Result<Option<CniResult>, CniError> {
        if !crate::fsutil::is_safe_id(pod_id) {
            return Ok(None);
        }
        let entries =
            cache::pod_entries(cache_dir, pod_id).map_err(io_err(&cache_dir.join(pod_id)))?;
        for path in entries {
            let Some(entry) = read_entry(&path)? else {
                continue;
            };
            let Some(raw) = &entry.result else {
                continue;
            };
            let list = config::parse_list(&entry.config, &path)?;
            return result::parse_result(&list.cni_version, &entry.if_name, raw)
                .map(Some)
                .map_err(|msg| CniError::Cache {
                    path: path.clone(),
                    msg,
                });
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
