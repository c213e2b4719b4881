//! The pod network as the engine uses it: one driver chosen at start-up (`[network] mode`:
//! the built-in bridge of `crate::net`, CNI plugins, or loopback only), set up in
//! RunPodSandbox once the pod's network namespace is pinned, disconnected in StopPodSandbox
//! (the built-in driver's veth deletion finishing in the background), torn down for good in
//! RemovePodSandbox, and reconciled at start-up.
//!
//! Crash consistency needs no state of its own here: everything a pod's network consists of
//! is found again from the sandbox ID (the built-in driver's veth name, address files and rule
//! comments; the CNI cache entry written before the first plugin runs), and the sandbox's
//! `creating` record, written before any of it exists, names the ID. So undoing a pod's
//! network is always `teardown(id)`, which succeeds for a network never or half made.

use std::net::IpAddr;
use std::path::Path;

use tracing::{info, warn};

use crate::api;
use crate::config::{NetworkConfig, NetworkMode};
use crate::net::cni::{self, CniConfig, CniNetwork};
use crate::net::{BuiltinNetwork, NetConfig};

/// Which driver a sandbox's network was made by, as its record keeps it.
pub const BUILTIN: &str = "builtin";
pub const CNI: &str = "cni";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The request itself is wrong (a port mapping).
    #[error("{0}")]
    Invalid(String),
    /// A host port another pod holds.
    #[error("{0}")]
    Conflict(String),
    /// The network cannot take pods (not configured, failed to start).
    #[error("pod network not ready: {0}")]
    NotReady(String),
    #[error("setting up the pod network: {0}")]
    Setup(String),
    #[error("tearing down the pod network: {0}")]
    Teardown(String),
}

enum Driver {
    Builtin(BuiltinNetwork),
    Cni(Box<CniNetwork>),
    /// Loopback only, by configuration.
    Loopback,
    /// Configured, but it could not start: pods needing it fail with this reason.
    Broken(String),
}

pub struct PodNetworks {
    driver: Driver,
    cni: CniConfig,
}

/// What a pod's network is set up for.
pub struct PodNetArgs<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
    pub netns: &'a Path,
    pub ports: &'a [api::PortMapping],
}

impl PodNetworks {
    /// Starts the configured driver. A driver that cannot start does not stop the daemon:
    /// NetworkReady reports why, and pods that need it fail with that reason.
    pub async fn start(cfg: &NetworkConfig, root_dir: &Path) -> PodNetworks {
        let cni = CniConfig {
            conf_dir: cfg.cni_conf_dir.clone(),
            bin_dirs: cfg.cni_bin_dirs.clone(),
            cache_dir: root_dir.join("cni"),
            ..CniConfig::default()
        };
        let driver = match Self::choose(cfg, &cni) {
            Ok(Some(net)) => Driver::Cni(Box::new(net)),
            Ok(None) if cfg.mode == NetworkMode::None => Driver::Loopback,
            Ok(None) => match BuiltinNetwork::new(builtin_config(cfg, root_dir)).await {
                Ok(n) => Driver::Builtin(n),
                Err(e) => Driver::Broken(format!("built-in network: {e}")),
            },
            Err(reason) => Driver::Broken(reason),
        };
        let nets = PodNetworks { driver, cni };
        match &nets.driver {
            Driver::Builtin(n) => info!(
                mode = cfg.mode.as_str(),
                bridge = n.bridge(),
                cidrs = ?n.pod_cidrs(),
                mtu = n.mtu(),
                "pod network: built-in bridge"
            ),
            Driver::Cni(n) => info!(
                mode = cfg.mode.as_str(),
                network = n.name(),
                file = %n.conf_file().display(),
                "pod network: CNI"
            ),
            Driver::Loopback => info!("pod network: none (loopback only)"),
            Driver::Broken(reason) => warn!(%reason, "pod network not ready"),
        }
        nets
    }

    /// CNI's network when the mode picks CNI; `None` for the built-in one (or none).
    fn choose(cfg: &NetworkConfig, cni: &CniConfig) -> Result<Option<CniNetwork>, String> {
        match cfg.mode {
            NetworkMode::Builtin | NetworkMode::None => Ok(None),
            NetworkMode::Auto => CniNetwork::load(cni).map_err(|e| format!("CNI config: {e}")),
            NetworkMode::Cni => match CniNetwork::load(cni) {
                Ok(Some(n)) => Ok(Some(n)),
                Ok(None) => Err(format!(
                    "no CNI network config in {}",
                    cni.conf_dir.display()
                )),
                Err(e) => Err(format!("CNI config: {e}")),
            },
        }
    }

    /// NetworkReady, and why not.
    pub fn ready(&self) -> Result<(), String> {
        match &self.driver {
            Driver::Broken(reason) => Err(reason.clone()),
            _ => Ok(()),
        }
    }

    /// The name a sandbox record keeps for the driver that sets its network up ("" = none).
    pub fn driver_name(&self) -> &'static str {
        match self.driver {
            Driver::Builtin(_) => BUILTIN,
            Driver::Cni(_) => CNI,
            Driver::Loopback | Driver::Broken(_) => "",
        }
    }

    /// Checks a pod's port mappings before anything is made (INVALID_ARGUMENT naming the
    /// mapping and field).
    pub fn validate(&self, ports: &[api::PortMapping]) -> Result<(), NetworkError> {
        crate::net::validate_port_mappings(ports)
            .map(|_| ())
            .map_err(|e| NetworkError::Invalid(e.to_string()))
    }

    /// Sets the pod's network up; returns its addresses (IPv4 first).
    pub async fn setup(&self, a: &PodNetArgs<'_>) -> Result<Vec<IpAddr>, NetworkError> {
        match &self.driver {
            Driver::Builtin(n) => n
                .setup(a.id, a.netns, a.ports)
                .await
                .map(|p| p.ips)
                .map_err(|e| match e {
                    crate::net::NetError::InvalidPortMapping { .. } => {
                        NetworkError::Invalid(e.to_string())
                    }
                    crate::net::NetError::PortConflict { .. } => {
                        NetworkError::Conflict(e.to_string())
                    }
                    e => NetworkError::Setup(e.to_string()),
                }),
            Driver::Cni(n) => {
                let pod = cni::PodArgs {
                    id: a.id.to_string(),
                    name: a.name.to_string(),
                    namespace: a.namespace.to_string(),
                    uid: a.uid.to_string(),
                };
                let caps = cni::CapabilityArgs {
                    port_mappings: cni_ports(a.ports),
                    ..Default::default()
                };
                n.add(&pod, a.netns, &caps)
                    .await
                    .map(|r| r.ips)
                    .map_err(|e| NetworkError::Setup(e.to_string()))
            }
            Driver::Loopback => Ok(Vec::new()),
            Driver::Broken(reason) => Err(NetworkError::NotReady(reason.clone())),
        }
    }

    /// Undoes whatever of pod `id`'s network exists; idempotent. `driver` is what the
    /// sandbox record says made it (so a CNI pod is deleted from the CNI cache even if the
    /// daemon now runs the built-in network, and the other way round as far as possible).
    pub async fn teardown(
        &self,
        driver: &str,
        id: &str,
        netns: Option<&Path>,
    ) -> Result<(), NetworkError> {
        let err = |e: String| NetworkError::Teardown(e);
        match (driver, &self.driver) {
            ("", _) => Ok(()),
            (CNI, _) => CniNetwork::del(&self.cni, id, netns)
                .await
                .map_err(|e| err(e.to_string())),
            (BUILTIN, Driver::Builtin(n)) => {
                n.teardown(id, netns).await.map_err(|e| err(e.to_string()))
            }
            (BUILTIN, _) => {
                warn!(
                    sandbox_id = id,
                    "the built-in network is not running: its veth and address stay"
                );
                Ok(())
            }
            (other, _) => Err(err(format!("unknown network driver {other:?}"))),
        }
    }

    /// Disconnects pod `id` for StopPodSandbox: as `teardown`, except that the built-in
    /// driver deletes the veth pair and frees the addresses in the background (see
    /// `BuiltinNetwork::disconnect`); a `teardown` later waits for that.
    pub async fn disconnect(
        &self,
        driver: &str,
        id: &str,
        netns: Option<&Path>,
    ) -> Result<(), NetworkError> {
        match (driver, &self.driver) {
            (BUILTIN, Driver::Builtin(n)) => n
                .disconnect(id, netns)
                .await
                .map_err(|e| NetworkError::Teardown(e.to_string())),
            _ => self.teardown(driver, id, netns).await,
        }
    }

    /// At start-up: the live pods (ID, port mappings) keep their network; the built-in
    /// driver frees every other address and veth and rebuilds its rules, CNI deletes cached
    /// attachments of pods that are gone.
    pub async fn reconcile(&self, live: &[(String, Vec<api::PortMapping>)]) {
        if let Driver::Builtin(n) = &self.driver {
            if let Err(e) = n.reconcile(live).await {
                warn!(error = %e, "reconciling the built-in network");
            }
        }
        for id in CniNetwork::cached_pods(&self.cni.cache_dir) {
            if live.iter().any(|(l, _)| *l == id) {
                continue;
            }
            match CniNetwork::del(&self.cni, &id, None).await {
                Ok(()) => info!(sandbox_id = %id, "deleted the CNI attachment of a gone pod"),
                Err(e) => warn!(sandbox_id = %id, error = %e, "deleting a stale CNI attachment"),
            }
        }
    }

    /// CRI UpdateRuntimeConfig's pod CIDR (built-in network only; new pods).
    pub fn set_pod_cidr(&self, cidr: &str) -> Result<(), NetworkError> {
        match &self.driver {
            Driver::Builtin(n) => n
                .set_pod_cidr(cidr)
                .map_err(|e| NetworkError::Invalid(e.to_string())),
            _ => Ok(()),
        }
    }
}

fn builtin_config(cfg: &NetworkConfig, root_dir: &Path) -> NetConfig {
    let mut n = NetConfig::new(root_dir.join("net/ipam"));
    n.bridge = cfg.bridge.clone();
    n.ipv4_cidr = cfg.pod_cidr.parse().ok();
    n.ipv6_cidr = cfg.pod_cidr_v6.parse().ok();
    n.mtu = (cfg.mtu > 0).then_some(cfg.mtu);
    n.nft_table = cfg.nft_table.clone();
    n.host_forwarding = cfg.host_forwarding;
    n
}

/// CRI port mappings in the portmap plugin's form (validated before).
fn cni_ports(ports: &[api::PortMapping]) -> Vec<cni::PortMapping> {
    ports
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| cni::PortMapping {
            host_port: p.host_port as u16,
            container_port: p.container_port as u16,
            protocol: match api::Protocol::try_from(p.protocol) {
                Ok(api::Protocol::Udp) => cni::Protocol::Udp,
                Ok(api::Protocol::Sctp) => cni::Protocol::Sctp,
                _ => cni::Protocol::Tcp,
            },
            host_ip: p.host_ip.clone(),
        })
        .collect()
}
