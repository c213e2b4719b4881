//! Daemon configuration: embedded defaults, optionally overridden by a TOML file and flags.
//!
//! Every field has a default so `peapod daemon` runs with no config at all.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub mod check;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing config {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("config {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// A value that parses but cannot work: its dotted key and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// How container cgroups are named and created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    /// Plain paths under /sys/fs/cgroup, created by peapod and the OCI runtime.
    #[default]
    Cgroupfs,
    /// Transient systemd units (`slice:prefix:name`), for hosts where systemd owns the tree.
    Systemd,
}

impl CgroupDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupDriver::Cgroupfs => "cgroupfs",
            CgroupDriver::Systemd => "systemd",
        }
    }
}

/// One CRI runtime handler: a name kubelet puts in RuntimeClass, and the OCI runtime binary.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuntimeHandler {
    /// Path or bare name (looked up in PATH) of an OCI runtime CLI (runc, crun, youki).
    pub path: String,
    /// Extra global arguments placed before the subcommand.
    #[serde(default)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The CRI gRPC socket.
    pub socket: PathBuf,
    /// Persistent data: images, sandbox and container records.
    pub root_dir: PathBuf,
    /// Volatile state: namespaces, exit files, runtime state. Lost on reboot, by design.
    pub state_dir: PathBuf,
    pub cgroup_driver: CgroupDriver,
    /// Parent of the pod cgroups peapod creates when kubelet gives none.
    pub cgroup_parent: String,
    /// The handler used when a RunPodSandboxRequest names none. Empty: the first one that works.
    pub default_runtime: String,
    /// Handlers by name. Empty: runc, crun and youki, whichever are installed.
    pub runtimes: BTreeMap<String, RuntimeHandler>,
    /// The per-container monitor / pause binary. Empty: `peapod-shim` beside this executable.
    pub shim_path: PathBuf,
    /// Default pids limit for every container (0 = none), as CRI-O's pids_limit.
    pub pids_limit: i64,
    /// Grace period in seconds when StopPodSandbox stops containers that are still running.
    pub stop_timeout_secs: u64,
    /// Size of the per-pod /dev/shm tmpfs.
    pub shm_size: String,
    /// The pod sandbox (infra) image, as containerd's `sandbox_image`: each sandbox's infra
    /// process is a container of it, pulled when absent. Empty: the built-in pause, which needs
    /// no image.
    pub sandbox_image: String,
    /// Registry mirrors and per-host settings for image pulls.
    pub registry: crate::image::RegistryConfig,
    /// The IP address the Exec/Attach/PortForward streaming server listens on (containerd's
    /// `stream_server_address`). It authenticates nothing but its one-minute single-use
    /// tokens, so it stays on loopback unless a remote kubelet must reach it.
    pub stream_server_address: String,
    /// Its TCP port (containerd's `stream_server_port`, a string there, so a string or a
    /// number here); 0 picks a free port at each start.
    #[serde(deserialize_with = "port_number_or_string")]
    pub stream_server_port: u16,
    /// How many container events a GetContainerEvents subscriber may fall behind by before it
    /// is dropped (its stream ends with an error; it then relists and subscribes again).
    pub event_buffer: usize,
    /// The Prometheus metrics endpoint (`HOST:PORT`, or `:PORT` for 127.0.0.1). Empty: off.
    pub metrics_address: String,
    /// The pod network.
    pub network: NetworkConfig,
    /// Static pods: the manifest directory and the local API.
    pub static_pods: StaticPodsSection,
}

/// `[static_pods]`: the manifest door.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticPodsSection {
    /// The manifest directory (created if missing); empty turns static pods off.
    pub manifest_dir: PathBuf,
    /// The local API the `peapod` CLI uses (root only).
    pub api_socket: PathBuf,
    /// Container logs of static pods, `<dir>/<ns>_<name>_<uid>/<container>/<n>.log` as
    /// kubelet lays them out.
    pub log_dir: PathBuf,
    /// The node name pods see (spec.nodeName); empty: the host name.
    pub node_name: String,
}

impl Default for StaticPodsSection {
    fn default() -> Self {
        StaticPodsSection {
            manifest_dir: PathBuf::from("/etc/peapod/manifests"),
            api_socket: PathBuf::from("/run/peapod/api.sock"),
            log_dir: PathBuf::from("/var/log/pods"),
            node_name: String::new(),
        }
    }
}

/// Which network pods (other than hostNetwork ones) get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// CNI when `cni_conf_dir` holds a network config, else the built-in bridge.
    #[default]
    Auto,
    /// The built-in bridge network (`src/net`).
    Builtin,
    /// CNI plugins; without a config pods cannot start (NetworkReady is false).
    Cni,
    /// Only loopback in each pod's namespace.
    None,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Auto => "auto",
            NetworkMode::Builtin => "builtin",
            NetworkMode::Cni => "cni",
            NetworkMode::None => "none",
        }
    }
}

/// `[network]`: the pod network's settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    pub mode: NetworkMode,
    /// Built-in: the bridge's name.
    pub bridge: String,
    /// Built-in: the pods' IPv4 CIDR. Empty: a private /16 clear of the host's routes (the
    /// bridge's own network once it exists). CRI UpdateRuntimeConfig can set it too.
    pub pod_cidr: String,
    /// Built-in: an IPv6 CIDR makes pods dual stack.
    pub pod_cidr_v6: String,
    /// Built-in: MTU of the bridge and veths; 0 takes the host's default-route link's.
    pub mtu: u32,
    /// Built-in: the nftables table (`inet NAME`) holding masquerade and hostPort rules. peapod
    /// rebuilds it at start-up and touches no other table.
    pub nft_table: String,
    /// Built-in: turn on net.ipv4.ip_forward (and IPv6 forwarding with a v6 CIDR), which
    /// egress to other hosts needs.
    pub host_forwarding: bool,
    /// CNI: where network configs are looked for (the first `.conflist`/`.conf`/`.json`).
    pub cni_conf_dir: PathBuf,
    /// CNI: where plugin binaries are looked for, in order.
    pub cni_bin_dirs: Vec<PathBuf>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            mode: NetworkMode::Auto,
            bridge: "peapod0".into(),
            pod_cidr: String::new(),
            pod_cidr_v6: String::new(),
            mtu: 0,
            nft_table: "peapod".into(),
            host_forwarding: true,
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            cni_bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
        }
    }
}

/// A port given as `10010` or, as containerd writes it, `"10010"`.
fn port_number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        Number(u16),
        Text(String),
    }
    match Port::deserialize(d)? {
        Port::Number(n) => Ok(n),
        Port::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("not a port number: {t:?}"))),
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: PathBuf::from("/run/peapod/peapod.sock"),
            root_dir: PathBuf::from("/var/lib/peapod"),
            state_dir: PathBuf::from("/run/peapod"),
            cgroup_driver: CgroupDriver::Cgroupfs,
            cgroup_parent: "/peapod".into(),
            default_runtime: String::new(),
            runtimes: BTreeMap::new(),
            shim_path: PathBuf::new(),
            pids_limit: 0,
            stop_timeout_secs: 10,
            shm_size: "64m".into(),
            sandbox_image: String::new(),
            registry: crate::image::RegistryConfig::default(),
            stream_server_address: "127.0.0.1".into(),
            stream_server_port: 0,
            event_buffer: crate::pod::events::DEFAULT_BUFFER,
            metrics_address: String::new(),
            network: NetworkConfig::default(),
            static_pods: StaticPodsSection::default(),
        }
    }
}

impl Config {
    /// Reads a TOML file over the embedded defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        // The default parent is a cgroupfs path; systemd needs a slice.
        if cfg.cgroup_driver == CgroupDriver::Systemd && cfg.cgroup_parent == "/peapod" {
            cfg.cgroup_parent = "peapod.slice".into();
        }
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        match self.problems().into_iter().next() {
            None => Ok(()),
            Some(p) => Err(ConfigError::Invalid {
                path: path.to_owned(),
                reason: p.to_string(),
            }),
        }
    }

    /// Every value that parses but cannot work, with the key it is at.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |key: &str, reason: String| {
            out.push(Problem {
                key: key.to_string(),
                reason,
            })
        };
        for (name, dir) in [("root_dir", &self.root_dir), ("state_dir", &self.state_dir)] {
            if !dir.is_absolute() {
                bad(name, format!("must be absolute: {}", dir.display()));
            }
        }
        if self.cgroup_driver == CgroupDriver::Cgroupfs && !self.cgroup_parent.starts_with('/') {
            bad(
                "cgroup_parent",
                format!(
                    "must be an absolute cgroup path with the cgroupfs driver: {}",
                    self.cgroup_parent
                ),
            );
        }
        if self.cgroup_driver == CgroupDriver::Systemd && !self.cgroup_parent.ends_with(".slice") {
            bad(
                "cgroup_parent",
                format!(
                    "must be a systemd slice (NAME.slice) with the systemd driver: {}",
                    self.cgroup_parent
                ),
            );
        }
        if self.event_buffer == 0 {
            bad("event_buffer", "must be at least 1".into());
        }
        if !self.sandbox_image.is_empty() {
            if let Err(e) = crate::image::reference::normalize(&self.sandbox_image) {
                bad("sandbox_image", e.to_string());
            }
        }
        if self
            .stream_server_address
            .parse::<std::net::IpAddr>()
            .is_err()
        {
            bad(
                "stream_server_address",
                format!("must be an IP address: {:?}", self.stream_server_address),
            );
        }
        if let Err(e) = self.metrics_addr() {
            bad("metrics_address", e);
        }
        if let Err(e) = self.registry.validate() {
            // The registry's own message starts with its key (`registry.hosts."h:5000": ...`).
            match e.split_once(": ") {
                Some((key, reason)) => bad(key, reason.to_string()),
                None => bad("registry", e),
            }
        }
        let n = &self.network;
        if !n.pod_cidr.is_empty() && n.pod_cidr.parse::<ipnet::Ipv4Net>().is_err() {
            bad(
                "network.pod_cidr",
                format!("must be an IPv4 CIDR: {:?}", n.pod_cidr),
            );
        }
        if !n.pod_cidr_v6.is_empty() && n.pod_cidr_v6.parse::<ipnet::Ipv6Net>().is_err() {
            bad(
                "network.pod_cidr_v6",
                format!("must be an IPv6 CIDR: {:?}", n.pod_cidr_v6),
            );
        }
        if n.bridge.is_empty() || n.bridge.len() > 15 || n.bridge.contains(['/', ' ']) {
            bad(
                "network.bridge",
                format!(
                    "must be an interface name of 1 to 15 characters: {:?}",
                    n.bridge
                ),
            );
        }
        if n.nft_table.is_empty()
            || !n
                .nft_table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            bad(
                "network.nft_table",
                format!("must be a plain name: {:?}", n.nft_table),
            );
        }
        for name in self.runtimes.keys() {
            if !crate::fsutil::is_safe_id(name) {
                bad(
                    &format!("runtimes.{name:?}"),
                    format!("runtime handler name {name:?} is not a plain name"),
                );
            }
        }
        if !self.default_runtime.is_empty()
            && !self.runtimes.is_empty()
            && !self.runtimes.contains_key(&self.default_runtime)
        {
            bad(
                "default_runtime",
                format!("{:?} is not among runtimes", self.default_runtime),
            );
        }
        out
    }

    /// Where the metrics endpoint listens: `HOST:PORT`, or `:PORT` for 127.0.0.1; None when
    /// `metrics_address` is empty (the endpoint is off).
    pub fn metrics_addr(&self) -> Result<Option<std::net::SocketAddr>, String> {
        let a = self.metrics_address.trim();
        if a.is_empty() {
            return Ok(None);
        }
        let full = match a.strip_prefix(':') {
            Some(port) => format!("127.0.0.1:{port}"),
            None => a.to_string(),
        };
        full.parse()
            .map(Some)
            .map_err(|_| format!("must be HOST:PORT or :PORT with an IP address for HOST: {a:?}"))
    }

    /// Where the streaming server listens (validated at load).
    pub fn stream_server_addr(&self) -> std::net::SocketAddr {
        let ip = self
            .stream_server_address
            .parse()
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        std::net::SocketAddr::new(ip, self.stream_server_port)
    }

    /// Shim binary: configured, else beside the running executable, else from PATH.
    pub fn shim(&self) -> PathBuf {
        if !self.shim_path.as_os_str().is_empty() {
            return self.shim_path.clone();
        }
        if let Ok(exe) = std::env::current_exe() {
            let beside = exe.with_file_name("peapod-shim");
            if beside.exists() {
                return beside;
            }
        }
        find_in_path("peapod-shim").unwrap_or_else(|| PathBuf::from("peapod-shim"))
    }
}

/// Looks a bare program name up in PATH (and the sbin dirs, which root's PATH may lack).
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.exists().then_some(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain([
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file() {
        let c = Config::parse("", Path::new("x.toml")).unwrap();
        assert_eq!(c.socket, PathBuf::from("/run/peapod/peapod.sock"));
        assert_eq!(c.cgroup_driver, CgroupDriver::Cgroupfs);
        assert!(c.runtimes.is_empty());
        assert_eq!(c.sandbox_image, "", "the built-in pause by default");
        assert_eq!(
            c.stream_server_addr(),
            "127.0.0.1:0".parse().unwrap(),
            "streams on loopback, any free port"
        );
        assert_eq!(c.event_buffer, 1024);
    }

    #[test]
    fn stream_server_keys_as_containerd_writes_them() {
        let c = Config::parse(
            "stream_server_address = \"0.0.0.0\"\nstream_server_port = \"10010\"",
            Path::new("p.toml"),
        )
        .unwrap();
        assert_eq!(c.stream_server_addr(), "0.0.0.0:10010".parse().unwrap());
        let c = Config::parse(
            "stream_server_address = \"::1\"\nstream_server_port = 10011",
            Path::new("p.toml"),
        )
        .unwrap();
        assert_eq!(c.stream_server_addr(), "[::1]:10011".parse().unwrap());
        let e =
            Config::parse("stream_server_address = \"node1\"", Path::new("p.toml")).unwrap_err();
        assert!(e.to_string().contains("stream_server_address"), "{e}");
        let e = Config::parse("stream_server_port = \"x\"", Path::new("p.toml")).unwrap_err();
        assert!(e.to_string().contains("not a port number"), "{e}");
        let e = Config::parse("stream_server_port = 70000", Path::new("p.toml")).unwrap_err();
        assert!(e.to_string().contains("stream_server_port"), "{e}");
    }

    #[test]
    fn sandbox_image_is_a_reference() {
        let c = Config::parse(
            "sandbox_image = \"registry.k8s.io/pause:3.10\"",
            Path::new("p.toml"),
        )
        .unwrap();
        assert_eq!(c.sandbox_image, "registry.k8s.io/pause:3.10");
        let e = Config::parse("sandbox_image = \"Not A Ref\"", Path::new("p.toml")).unwrap_err();
        assert!(e.to_string().contains("sandbox_image"), "{e}");
    }

    #[test]
    fn handlers_and_driver_parse() {
        let c = Config::parse(
            r#"
            cgroup_driver = "systemd"
            cgroup_parent = "peapod.slice"
            default_runtime = "crun"
            [runtimes.crun]
            path = "/usr/bin/crun"
            [runtimes.runc]
            path = "runc"
            args = ["--debug"]
            "#,
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(c.cgroup_driver, CgroupDriver::Systemd);
        assert_eq!(c.runtimes["runc"].args, vec!["--debug"]);
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let e = Config::parse("root_dir = \"rel\"", Path::new("/etc/p.toml")).unwrap_err();
        assert!(e.to_string().contains("root_dir: must be absolute"), "{e}");
        let e = Config::parse("bogus = 1", Path::new("/etc/p.toml")).unwrap_err();
        assert!(e.to_string().contains("/etc/p.toml"), "{e}");
        let e = Config::parse(
            "default_runtime = \"kata\"\n[runtimes.runc]\npath = \"runc\"",
            Path::new("p.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("kata"), "{e}");
        let e =
            Config::parse("[runtimes.\"../x\"]\npath = \"runc\"", Path::new("p.toml")).unwrap_err();
        assert!(e.to_string().contains("not a plain name"), "{e}");
        let c = Config::parse("cgroup_driver = \"systemd\"", Path::new("p.toml")).unwrap();
        assert_eq!(c.cgroup_parent, "peapod.slice");
        let e = Config::parse(
            "cgroup_driver = \"systemd\"\ncgroup_parent = \"/kubepods\"",
            Path::new("p.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("slice"), "{e}");
        let e = Config::parse("event_buffer = 0", Path::new("p.toml")).unwrap_err();
        assert!(e.to_string().contains("event_buffer"), "{e}");
    }
}
