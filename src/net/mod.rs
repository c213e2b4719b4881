//! The built-in pod network: a Linux bridge, a veth pair per pod, addresses from a pod CIDR,
//! egress masquerade and hostPort DNAT, all done in-process over netlink.
//!
//! ```text
//!   host                                       pod netns (pinned file, opened by path)
//!   peapod0 (bridge, 10.88.0.1/16, fixed MAC)
//!     └─ ppXXXXXXXXXXXXX (veth, hairpin) ═══════ eth0 10.88.0.N/16, default via 10.88.0.1
//!   table inet peapod: masquerade, hostports DNAT (nft.rs)           lo up
//!   <ipam_dir>/10.88.0.N  ← pod ID  (ipam.rs)
//! ```
//!
//! - **No state to find things**: the host veth name is derived from the pod ID
//!   ([`host_veth_name`]), a pod's addresses are the IPAM files naming it, its DNAT rules are
//!   those whose comment names it. Teardown and crash recovery work from the pod ID alone.
//! - **Idempotent**: [`BuiltinNetwork::setup`] retried for the same pod gets the same addresses
//!   and replaces what an earlier attempt left; [`BuiltinNetwork::teardown`] tolerates any part
//!   being gone; [`BuiltinNetwork::reconcile`] rebuilds the rules from the live pods.
//! - **Cheap**: one rtnetlink socket on the host is reused for every pod, requests go several
//!   to a datagram (`netlink.rs`), the pod's namespace gets one short-lived thread that opens
//!   its own socket there (a socket stays in the namespace it was made in), and nf_tables
//!   changes are one atomic batch. No process is launched.
//!
//! The engine wires it: `setup` in RunPodSandbox after the namespaces are pinned, `teardown` in
//! StopPodSandbox and in the undo of a failed or crashed RunPodSandbox, `reconcile` at start-up.

pub mod cni;
pub mod error;
mod ipam;
mod link;
mod netlink;
mod nft;
mod ports;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use sha2::Digest;

pub use self::error::{KernelError, NetError};
pub use self::ipam::gateway;
use self::link::Link;
use self::netlink::{Batch, NlSocket};
use self::nft::{Nft, Txn};
pub use self::ports::{validate_port_mappings, HostPort, Proto};
use crate::api::PortMapping;

/// The name of the pod's interface inside its namespace.
pub const POD_INTERFACE: &str = "eth0";
/// Host veth names: this prefix and 13 hex digits (15 characters, the kernel's limit).
pub const VETH_PREFIX: &str = "pp";
const DEFAULT_MTU: u32 = 1500;
const NETLINK_ROUTE: isize = 0;
const NETLINK_NETFILTER: isize = 12;

/// The CIDRs tried, in order, when none is configured: the first that overlaps no route of
/// the host. 10.88.0.0/16 is podman's default.
pub const CIDR_CANDIDATES: [&str; 16] = [
    "10.88.0.0/16",
    "10.89.0.0/16",
    "10.90.0.0/16",
    "10.91.0.0/16",
    "10.92.0.0/16",
    "10.93.0.0/16",
    "10.94.0.0/16",
    "10.95.0.0/16",
    "172.20.0.0/16",
    "172.21.0.0/16",
    "172.22.0.0/16",
    "172.23.0.0/16",
    "172.24.0.0/16",
    "172.25.0.0/16",
    "192.168.200.0/24",
    "192.168.201.0/24",
];

#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The bridge's name (default `peapod0`).
    pub bridge: String,
    /// The pods' IPv4 CIDR; None picks one: the network of the bridge's address when the bridge
    /// exists, else the first of [`CIDR_CANDIDATES`] clear of the host's routes.
    pub ipv4_cidr: Option<Ipv4Net>,
    /// An IPv6 CIDR makes the pods dual stack.
    pub ipv6_cidr: Option<Ipv6Net>,
    /// The MTU of the bridge and the veths; None takes that of the host's default-route link.
    pub mtu: Option<u32>,
    /// Where the address files live (persistent: under the root dir).
    pub ipam_dir: PathBuf,
    /// The name of the nftables table (`inet <name>`), default `peapod`.
    pub nft_table: String,
    /// Turn on the host-wide forwarding switches (net.ipv4.ip_forward, and for IPv6
    /// net.ipv6.conf.all.forwarding) that pods' traffic to other hosts needs. Off, only the
    /// bridge's own IPv4 forwarding is turned on: enough for pods, the host and hairpin, not
    /// for egress to other links. Note that IPv6 forwarding makes the host ignore router
    /// advertisements on links with accept_ra=1.
    pub host_forwarding: bool,
}

impl NetConfig {
    pub fn new(ipam_dir: impl Into<PathBuf>) -> Self {
        NetConfig {
            bridge: "peapod0".into(),
            ipv4_cidr: None,
            ipv6_cidr: None,
            mtu: None,
            ipam_dir: ipam_dir.into(),
            nft_table: "peapod".into(),
            host_forwarding: true,
        }
    }
}

/// What a pod got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    /// IPv4 first, then IPv6.
    pub ips: Vec<IpAddr>,
    /// Its interface in the pod's namespace (`eth0`).
    pub interface: String,
    /// The host end of its veth pair, a port of the bridge.
    pub host_veth: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ranges {
    v4: Option<Ipv4Net>,
    v6: Option<Ipv6Net>,
}

impl Ranges {
    fn nets(&self) -> Vec<IpNet> {
        self.v4
            .map(IpNet::V4)
            .into_iter()
            .chain(self.v6.map(IpNet::V6))
            .collect()
    }
}

/// The pod network. Cheap to share: the methods take `&self`.
pub struct BuiltinNetwork {
    inner: Arc<Inner>,
}

struct Inner {
    bridge: String,
    mtu: u32,
    ranges: RwLock<Ranges>,
    /// Gateway addresses known to be on the bridge.
    gateways: Mutex<HashSet<IpNet>>,
    /// The host's rtnetlink socket, for every pod.
    rt: Mutex<NlSocket>,
    /// The nf_tables socket; its lock also serializes the read-check-write of port rules.
    nf: Mutex<NlSocket>,
    ipam: ipam::Ipam,
    nft: Nft,
    /// Pods whose veth and addresses [`BuiltinNetwork::disconnect`] is releasing in the
    /// background; each entry is flagged done (and removed) when that ends.
    releasing: Mutex<HashMap<String, Arc<Release>>>,
}

/// A background release's completion.
#[derive(Default)]
struct Release {
    done: Mutex<bool>,
    cv: Condvar,
}

impl Release {
    fn wait(&self) {
        let mut done = self.done.lock().unwrap();
        while !*done {
            done = self.cv.wait(done).unwrap();
        }
    }

    fn finish(&self) {
        *self.done.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

/// The host veth of a pod: `pp` and the first 13 hex digits of its ID (a 64-hex CRI ID), or
/// of the SHA-256 of any other ID, so it is always a valid, deterministic interface name.
pub fn host_veth_name(pod_id: &str) -> String {
    let head = pod_id.get(..13).unwrap_or("");
    if head.len() == 13
        && head
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        format!("{VETH_PREFIX}{head}")
    } else {
        let h = hex::encode(sha2::Sha256::digest(pod_id.as_bytes()));
        format!("{VETH_PREFIX}{}", &h[..13])
    }
}

/// Whether `name` has the form of a host veth of ours.
pub fn is_host_veth_name(name: &str) -> bool {
    name.len() == VETH_PREFIX.len() + 13
        && name.starts_with(VETH_PREFIX)
        && name[VETH_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The first candidate that overlaps none of `routes` (default routes aside).
pub fn choose_cidr(candidates: &[Ipv4Net], routes: &[IpNet]) -> Option<Ipv4Net> {
    candidates.iter().copied().find(|c| {
        routes.iter().all(|r| match r {
            IpNet::V4(r) => {
                r.prefix_len() == 0 || !(c.contains(&r.network()) || r.contains(&c.network()))
            }
            IpNet::V6(_) => true,
        })
    })
}

/// Parses a CRI pod CIDR: one CIDR, or an IPv4 and an IPv6 one separated by a comma.
fn parse_pod_cidr(s: &str) -> Result<Ranges, NetError> {
    let mut r = Ranges { v4: None, v6: None };
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let net: IpNet = part
            .parse()
            .map_err(|_| NetError::Config(format!("pod CIDR {part:?} is not a CIDR")))?;
        check_range(net)?;
        match net.trunc() {
            IpNet::V4(n) if r.v4.is_none() => r.v4 = Some(n),
            IpNet::V6(n) if r.v6.is_none() => r.v6 = Some(n),
            _ => {
                return Err(NetError::Config(format!(
                    "pod CIDR {s:?} has two CIDRs of one family"
                )))
            }
        }
    }
    Ok(r)
}

fn check_range(net: IpNet) -> Result<(), NetError> {
    if ipam::host_range(net.trunc()).is_none()
        || net.addr().is_loopback()
        || net.addr().is_multicast()
    {
        return Err(NetError::Config(format!(
            "{net} cannot hold a gateway and pods"
        )));
    }
    Ok(())
}

fn write_sysctl(path: &str, value: &str) -> Result<(), NetError> {
    std::fs::write(path, value).map_err(NetError::io("setting sysctl", path))
}

/// Runs `f` on a new thread that has joined the network namespace pinned at `netns`; the
/// thread ends with `f`, so nothing of the daemon stays in the pod's namespace.
fn in_netns<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> Result<T, NetError> + Send + 'static,
) -> Result<T, NetError> {
    let path = netns.to_owned();
    std::thread::Builder::new()
        .name("peapod-netns".into())
        .spawn(move || {
            let ns = File::open(&path).map_err(|source| NetError::Netns {
                path: path.clone(),
                source,
            })?;
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                NetError::Netns {
                    path: path.clone(),
                    source: e.into(),
                }
            })?;
            f()
        })
        .map_err(|e| NetError::Internal(format!("spawning a thread: {e}")))?
        .join()
        .map_err(|_| NetError::Internal("network namespace thread panicked".into()))?
}

fn random_mac() -> [u8; 6] {
    let mut m = [0u8; 6];
    getrandom::fill(&mut m).expect("the kernel's random source is unavailable");
    m[0] = (m[0] & 0xfe) | 0x02; // unicast, locally administered
    m
}

/// The address `gw` of `net` with `net`'s prefix: what the bridge holds.
fn with_prefix(ip: IpAddr, net: IpNet) -> IpNet {
    IpNet::new(ip, net.prefix_len()).expect("prefix of a valid net")
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NetError> + Send + 'static,
) -> Result<T, NetError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NetError::Internal(e.to_string()))?
}

impl BuiltinNetwork {
    /// Opens the network: creates the bridge (with its gateway addresses, forwarding and
    /// route_localnet) and the nftables table when missing, and reads the IPAM directory.
    /// Idempotent: run at every daemon start.
    pub async fn new(cfg: NetConfig) -> Result<Self, NetError> {
        blocking(move || Inner::open(cfg).map(|i| BuiltinNetwork { inner: Arc::new(i) })).await
    }

    /// Connects a pod: its veth pair (the peer in the namespace at `netns`, as `eth0`), its
    /// addresses and default routes, and DNAT for the mappings with a host port. Retried with
    /// the same pod ID it returns the same addresses. On error nothing of it is left.
    pub async fn setup(
        &self,
        pod_id: &str,
        netns: &Path,
        ports: &[PortMapping],
    ) -> Result<PodNetwork, NetError> {
        let inner = self.inner.clone();
        let (pod, netns, ports) = (pod_id.to_string(), netns.to_owned(), ports.to_vec());
        blocking(move || inner.setup(&pod, &netns, &ports)).await
    }

    /// Disconnects a pod: its DNAT rules, its veth pair and its addresses, all before it
    /// returns (after any background release of the pod's, which it waits for). Idempotent,
    /// and any part may already be gone (a half-made setup, a crash). `netns`, when still
    /// there, is only used if the host end of the pair has vanished.
    pub async fn teardown(&self, pod_id: &str, netns: Option<&Path>) -> Result<(), NetError> {
        let inner = self.inner.clone();
        let (pod, netns) = (pod_id.to_string(), netns.map(Path::to_owned));
        blocking(move || inner.teardown(&pod, netns.as_deref())).await
    }

    /// Disconnects a pod as StopPodSandbox needs it: its DNAT rules go before this returns,
    /// so no traffic reaches it; its veth pair and then its addresses are released in the
    /// background. Deleting a veth waits out RCU grace periods in the kernel (15-35 ms here,
    /// against well under a millisecond for everything else), and nothing a client does
    /// next needs it gone: the addresses stay allocated until the veth is, so no new pod can
    /// get one that is still on a link. [`BuiltinNetwork::teardown`] waits for the release;
    /// a crash before it ends leaves a veth and addresses of a pod that no longer holds a
    /// network, which [`BuiltinNetwork::reconcile`] frees at start-up.
    pub async fn disconnect(&self, pod_id: &str, netns: Option<&Path>) -> Result<(), NetError> {
        let inner = self.inner.clone();
        let (pod, netns) = (pod_id.to_string(), netns.map(Path::to_owned));
        let release = blocking({
            let inner = inner.clone();
            let pod = pod.clone();
            move || inner.disconnect(&pod)
        })
        .await?;
        if let Some(release) = release {
            tokio::task::spawn_blocking(move || {
                let r = NlSocket::open(NETLINK_ROUTE)
                    .map_err(NetError::netlink("opening rtnetlink"))
                    .and_then(|mut rt| inner.release(&pod, netns.as_deref(), &mut rt));
                if let Err(e) = r {
                    tracing::warn!(sandbox_id = %pod, error = %e, "releasing the pod's veth and addresses");
                }
                inner.releasing.lock().unwrap().remove(&pod);
                release.finish();
            });
        }
        Ok(())
    }

    /// At daemon start, with the pods that are alive and their port mappings: frees the
    /// addresses and deletes the host veths (ours by name, on our bridge) of every other pod,
    /// and rebuilds the nftables table from the live pods.
    pub async fn reconcile(&self, live: &[(String, Vec<PortMapping>)]) -> Result<(), NetError> {
        let inner = self.inner.clone();
        let live = live.to_vec();
        blocking(move || inner.reconcile(&live)).await
    }

    /// Sets the pod CIDR (CRI UpdateRuntimeConfig's `pod_cidr`: one CIDR, or an IPv4 and an
    /// IPv6 one separated by a comma; empty changes nothing). Only new allocations use it;
    /// its gateway is added to the bridge at the next setup. A family it does not name keeps
    /// its current CIDR.
    pub fn set_pod_cidr(&self, cidr: &str) -> Result<(), NetError> {
        let r = parse_pod_cidr(cidr)?;
        let mut cur = self.inner.ranges.write().unwrap();
        if r.v4.is_some() {
            cur.v4 = r.v4;
        }
        if r.v6.is_some() {
            cur.v6 = r.v6;
        }
        Ok(())
    }

    /// The CIDRs new pods get addresses from.
    pub fn pod_cidrs(&self) -> (Option<Ipv4Net>, Option<Ipv6Net>) {
        let r = self.inner.ranges.read().unwrap();
        (r.v4, r.v6)
    }

    pub fn mtu(&self) -> u32 {
        self.inner.mtu
    }

    pub fn bridge(&self) -> &str {
        &self.inner.bridge
    }

    /// The host ports mapped now, with the pod holding each, read from the nftables table.
    pub async fn port_mappings(&self) -> Result<Vec<(String, HostPort)>, NetError> {
        let inner = self.inner.clone();
        blocking(move || {
            inner
                .mapped_ports()
                .map(|(_, v)| v.into_iter().map(|(_, p, h)| (p, h)).collect())
        })
        .await
    }

    /// The addresses the IPAM directory gives `pod_id`.
    pub fn pod_ips(&self, pod_id: &str) -> Vec<IpAddr> {
        self.inner.ipam.addresses(pod_id)
    }

    /// Deletes the nftables table and the bridge (with any veth still on it). For uninstalling
    /// and for tests; the IPAM directory is left to the caller.
    pub async fn remove(&self) -> Result<(), NetError> {
        let inner = self.inner.clone();
        blocking(move || inner.remove()).await
    }
}

impl Inner {
    fn open(cfg: NetConfig) -> Result<Self, NetError> {
        if cfg.bridge.is_empty() || cfg.bridge.len() > 15 || cfg.bridge.contains(['/', ' ']) {
            return Err(NetError::Config(format!(
                "bridge name {:?} is not an interface name",
                cfg.bridge
            )));
        }
        if cfg.nft_table.is_empty() || cfg.nft_table.len() > 255 {
            return Err(NetError::Config(format!(
                "nftables table name {:?} is empty or too long",
                cfg.nft_table
            )));
        }
        if let Some(n) = cfg.ipv4_cidr {
            check_range(IpNet::V4(n))?;
        }
        if let Some(n) = cfg.ipv6_cidr {
            check_range(IpNet::V6(n))?;
        }
        let mut rt =
            NlSocket::open(NETLINK_ROUTE).map_err(NetError::netlink("opening rtnetlink"))?;
        let existing = link::get_link(&mut rt, &cfg.bridge).map_err(NetError::netlink(format!(
            "looking up bridge {}",
            cfg.bridge
        )))?;
        let v4 = match cfg.ipv4_cidr {
            Some(n) => n.trunc(),
            None => Self::pick_v4(&mut rt, existing.as_ref())?,
        };
        let mtu = match cfg.mtu {
            Some(m) => m,
            None => Self::default_route_mtu(&mut rt)?.unwrap_or(DEFAULT_MTU),
        };
        let inner = Inner {
            bridge: cfg.bridge.clone(),
            mtu,
            ranges: RwLock::new(Ranges {
                v4: Some(v4),
                v6: cfg.ipv6_cidr.map(|n| n.trunc()),
            }),
            gateways: Mutex::new(HashSet::new()),
            rt: Mutex::new(rt),
            nf: Mutex::new(
                NlSocket::open(NETLINK_NETFILTER)
                    .map_err(NetError::netlink("opening nfnetlink"))?,
            ),
            ipam: ipam::Ipam::open(&cfg.ipam_dir)?,
            nft: Nft {
                table: cfg.nft_table.clone(),
                bridge: cfg.bridge.clone(),
            },
            releasing: Mutex::new(HashMap::new()),
        };
        let ranges = *inner.ranges.read().unwrap();
        inner.bridge_index(&ranges)?;
        let br = &cfg.bridge;
        write_sysctl(&format!("/proc/sys/net/ipv4/conf/{br}/forwarding"), "1")?;
        write_sysctl(&format!("/proc/sys/net/ipv4/conf/{br}/route_localnet"), "1")?;
        if cfg.host_forwarding {
            write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
            if ranges.v6.is_some() {
                write_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")?;
            }
        }
        {
            let mut nf = inner.nf.lock().unwrap();
            let mut t = Txn::begin(&mut nf);
            inner.nft.push_skeleton(&mut t);
            t.commit()
                .map_err(|(op, e)| NetError::Netlink { op, source: e })?;
        }
        tracing::info!(bridge = %inner.bridge, cidr = %v4, ipv6 = ?ranges.v6, mtu, table = %inner.nft.table, "pod network ready");
        Ok(inner)
    }

    /// The network of the bridge's gateway address when it has one, else the first candidate
    /// clear of the host's IPv4 routes (those on the bridge aside).
    fn pick_v4(rt: &mut NlSocket, bridge: Option<&Link>) -> Result<Ipv4Net, NetError> {
        if let Some(b) = bridge {
            let addrs = link::dump_addrs(rt, b.index)
                .map_err(NetError::netlink("listing the bridge's addresses"))?;
            for a in addrs {
                if let IpNet::V4(n) = a {
                    if IpAddr::V4(n.addr()) == gateway(IpNet::V4(n.trunc())) {
                        return Ok(n.trunc());
                    }
                }
            }
        }
        let routes: Vec<IpNet> = link::dump_routes(rt, false)
            .map_err(NetError::netlink("listing the host's routes"))?
            .into_iter()
            .filter(|r| bridge.is_none_or(|b| r.oif != Some(b.index)))
            .map(|r| r.dst)
            .collect();
        let candidates: Vec<Ipv4Net> = CIDR_CANDIDATES.iter().map(|c| c.parse().unwrap()).collect();
        choose_cidr(&candidates, &routes).ok_or_else(|| {
            NetError::Config(
                "every candidate pod CIDR overlaps a route of the host; configure one".into(),
            )
        })
    }

    /// The MTU of the link the host's IPv4 default route uses.
    fn default_route_mtu(rt: &mut NlSocket) -> Result<Option<u32>, NetError> {
        let routes =
            link::dump_routes(rt, false).map_err(NetError::netlink("listing the host's routes"))?;
        let Some(oif) = routes
            .iter()
            .filter(|r| r.dst.prefix_len() == 0 && r.table == 254)
            .find_map(|r| r.oif)
        else {
            return Ok(None);
        };
        Ok(link::get_link_by_index(rt, oif)
            .map_err(NetError::netlink("looking up the default route's link"))?
            .and_then(|l| l.mtu))
    }

    /// The bridge's index, creating the bridge if it is missing and adding any gateway address
    /// of `ranges` it lacks.
    fn bridge_index(&self, ranges: &Ranges) -> Result<u32, NetError> {
        let mut rt = self.rt.lock().unwrap();
        let br = &self.bridge;
        let mut link = link::get_link(&mut rt, br)
            .map_err(NetError::netlink(format!("looking up bridge {br}")))?;
        if link.is_none() {
            let mut b = Batch::default();
            link::push_new_bridge(&mut b, &mut rt, br, self.mtu, random_mac());
            match rt.exchange(b).map(|mut r| r.pop().unwrap()) {
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.is(libc::EEXIST) => {}
                Ok(Err(e)) | Err(e) => {
                    return Err(NetError::netlink(format!("creating bridge {br}"))(e))
                }
            }
            self.gateways.lock().unwrap().clear();
            link = link::get_link(&mut rt, br)
                .map_err(NetError::netlink(format!("looking up bridge {br}")))?;
        }
        let link = link.ok_or_else(|| NetError::Config(format!("bridge {br} vanished")))?;
        let wanted: Vec<IpNet> = ranges
            .nets()
            .into_iter()
            .map(|n| with_prefix(gateway(n), n))
            .collect();
        let mut known = self.gateways.lock().unwrap();
        if wanted.iter().any(|w| !known.contains(w)) {
            let have = link::dump_addrs(&mut rt, link.index)
                .map_err(NetError::netlink(format!("listing the addresses of {br}")))?;
            let mut b = Batch::default();
            let mut adding = Vec::new();
            for w in &wanted {
                if !have.contains(w) {
                    link::push_add_addr(&mut b, &mut rt, link.index, *w);
                    adding.push(*w);
                }
            }
            if !b.is_empty() {
                let replies = rt
                    .exchange(b)
                    .map_err(NetError::netlink(format!("adding addresses to {br}")))?;
                for (r, w) in replies.into_iter().zip(&adding) {
                    match r {
                        Ok(_) => {}
                        Err(e) if e.is(libc::EEXIST) => {}
                        Err(e) => return Err(NetError::netlink(format!("adding {w} to {br}"))(e)),
                    }
                }
            }
            known.extend(wanted);
        }
        if !link.up {
            let mut b = Batch::default();
            link::push_set_up(&mut b, &mut rt, link.index, None);
            if let Some(Err(e)) = rt
                .exchange(b)
                .map_err(NetError::netlink(format!("setting {br} up")))?
                .pop()
            {
                return Err(NetError::netlink(format!("setting {br} up"))(e));
            }
        }
        Ok(link.index)
    }

    fn setup(
        &self,
        pod: &str,
        netns: &Path,
        ports: &[PortMapping],
    ) -> Result<PodNetwork, NetError> {
        let hostports = validate_port_mappings(ports)?;
        let t0 = std::time::Instant::now();
        let veth = host_veth_name(pod);
        let res = self.try_setup(pod, netns, &veth, &hostports);
        match res {
            Ok(ips) => {
                tracing::debug!(pod, veth, ?ips, elapsed = ?t0.elapsed(), "pod network set up");
                Ok(PodNetwork {
                    ips,
                    interface: POD_INTERFACE.into(),
                    host_veth: veth,
                })
            }
            Err(e) => {
                // Undo: whatever this or an earlier attempt made for the pod.
                if let Err(u) = self.teardown(pod, None) {
                    tracing::warn!(pod, error = %u, "undoing a failed network setup");
                }
                Err(e)
            }
        }
    }

    fn try_setup(
        &self,
        pod: &str,
        netns: &Path,
        veth: &str,
        hostports: &[HostPort],
    ) -> Result<Vec<IpAddr>, NetError> {
        let ns = File::open(netns).map_err(|source| NetError::Netns {
            path: netns.to_owned(),
            source,
        })?;
        let ranges = *self.ranges.read().unwrap();
        let bridge = self.bridge_index(&ranges)?;
        let nets = ranges.nets();
        let mut addrs = Vec::new();
        for n in &nets {
            let ip = self.ipam.allocate(pod, *n)?;
            addrs.push((with_prefix(ip, *n), gateway(*n)));
        }
        crate::failpoint::hit("net.address");
        self.create_veth(veth, bridge, &ns)?;
        crate::failpoint::hit("net.veth");
        drop(ns);
        in_netns(netns, move || configure_pod_side(&addrs))?;
        crate::failpoint::hit("net.configured");
        let ips = self.ipam.addresses(pod);
        let ips: Vec<IpAddr> = ips
            .into_iter()
            .filter(|ip| nets.iter().any(|n| n.contains(ip)))
            .collect();
        if !hostports.is_empty() {
            self.add_port_rules(pod, &ips, hostports)?;
        }
        Ok(ips)
    }

    /// Creates the pod's veth pair, replacing one an earlier attempt left.
    fn create_veth(&self, veth: &str, bridge: u32, ns: &File) -> Result<(), NetError> {
        let mut rt = self.rt.lock().unwrap();
        for attempt in 0..2 {
            let mut b = Batch::default();
            link::push_new_veth(
                &mut b,
                &mut rt,
                veth,
                POD_INTERFACE,
                bridge,
                self.mtu,
                ns.as_raw_fd(),
            );
            link::push_hairpin(&mut b, &mut rt, veth);
            let replies = rt
                .exchange(b)
                .map_err(NetError::netlink(format!("creating veth {veth}")))?;
            match &replies[0] {
                Err(e) if e.is(libc::EEXIST) && attempt == 0 => {
                    let mut d = Batch::default();
                    link::push_del_link(&mut d, &mut rt, veth);
                    rt.exchange(d)
                        .map_err(NetError::netlink(format!("deleting stale veth {veth}")))?;
                    continue;
                }
                Err(e) => {
                    return Err(NetError::netlink(format!(
                        "creating veth {veth} with peer {POD_INTERFACE} in the pod's namespace"
                    ))(e.clone()))
                }
                Ok(_) => {}
            }
            if let Err(e) = &replies[1] {
                return Err(
                    NetError::netlink(format!("setting hairpin mode on {veth}"))(e.clone()),
                );
            }
            return Ok(());
        }
        unreachable!("the second attempt returns")
    }

    /// All the port rules now in the table: the rules' handles with their pods and mappings,
    /// and whether the table is there at all.
    #[allow(clippy::type_complexity)]
    fn mapped_ports(&self) -> Result<(bool, Vec<(u64, String, HostPort)>), NetError> {
        let mut nf = self.nf.lock().unwrap();
        self.mapped_ports_locked(&mut nf)
    }

    #[allow(clippy::type_complexity)]
    fn mapped_ports_locked(
        &self,
        nf: &mut NlSocket,
    ) -> Result<(bool, Vec<(u64, String, HostPort)>), NetError> {
        let listed = match self.nft.list_chain(nf, nft::HOSTPORTS) {
            Ok(l) => l,
            Err(e) => return Err(NetError::netlink("listing the hostports rules")(e)),
        };
        let present = !listed.is_empty() || self.table_exists(nf)?;
        Ok((
            present,
            listed
                .into_iter()
                .filter_map(|l| {
                    let (pod, hp) = ports::parse_tag(l.comment.as_deref()?)?;
                    Some((l.handle, pod, hp))
                })
                .collect(),
        ))
    }

    fn table_exists(&self, nf: &mut NlSocket) -> Result<bool, NetError> {
        // An empty dump of the chain does not tell an empty chain from a missing table.
        match self.nft.chain_exists(nf) {
            Ok(b) => Ok(b),
            Err(e) => Err(NetError::netlink("looking up the hostports chain")(e)),
        }
    }

    /// Adds the DNAT rules of `pod`, replacing its earlier ones, unless another pod holds one
    /// of its host ports. Atomic: on error the table is as it was.
    fn add_port_rules(
        &self,
        pod: &str,
        ips: &[IpAddr],
        hostports: &[HostPort],
    ) -> Result<(), NetError> {
        let rules = nft::pod_rules(pod, &self.with_gateways(ips), hostports).map_err(|hp| {
            NetError::Config(format!(
                "host port {}/{} on {} needs an address of that family, and the pod has none",
                hp.proto,
                hp.host_port,
                hp.host_ip.map(|i| i.to_string()).unwrap_or_default()
            ))
        })?;
        let mut nf = self.nf.lock().unwrap();
        let (present, mapped) = self.mapped_ports_locked(&mut nf)?;
        let existing: Vec<(String, HostPort)> =
            mapped.iter().map(|(_, p, h)| (p.clone(), *h)).collect();
        if let Some((hp, holder)) = ports::find_conflict(pod, hostports, &existing) {
            return Err(NetError::PortConflict {
                protocol: hp.proto.name(),
                host_ip: hp.host_ip,
                host_port: hp.host_port,
                holder: holder.to_string(),
            });
        }
        let old_hairpin = if present {
            self.pod_rules_in(&mut nf, nft::HAIRPIN, pod)?
        } else {
            Vec::new()
        };
        let mut t = Txn::begin(&mut nf);
        if !present {
            self.nft.push_skeleton(&mut t);
        }
        for (handle, p, _) in &mapped {
            if p == pod {
                t.delete_rule(&self.nft.table, nft::HOSTPORTS, *handle);
            }
        }
        for handle in old_hairpin {
            t.delete_rule(&self.nft.table, nft::HAIRPIN, handle);
        }
        for r in &rules {
            t.add_rule(&self.nft.table, r);
        }
        t.commit()
            .map_err(|(op, e)| NetError::Netlink { op, source: e })
    }

    /// Each address with the gateway of the current CIDR holding it.
    fn with_gateways(&self, ips: &[IpAddr]) -> Vec<(IpAddr, Option<IpAddr>)> {
        let nets = self.ranges.read().unwrap().nets();
        ips.iter()
            .map(|ip| {
                (
                    *ip,
                    nets.iter().find(|n| n.contains(ip)).map(|n| gateway(*n)),
                )
            })
            .collect()
    }

    /// The handles of `pod`'s rules in `chain`.
    fn pod_rules_in(
        &self,
        nf: &mut NlSocket,
        chain: &'static str,
        pod: &str,
    ) -> Result<Vec<u64>, NetError> {
        let listed = self
            .nft
            .list_chain(nf, chain)
            .map_err(NetError::netlink(format!("listing the {chain} rules")))?;
        Ok(listed
            .into_iter()
            .filter(|l| l.comment.as_deref().and_then(nft::tag_pod) == Some(pod))
            .map(|l| l.handle)
            .collect())
    }

    fn remove_port_rules(&self, pod: &str) -> Result<(), NetError> {
        let mut nf = self.nf.lock().unwrap();
        let mut t_rules = Vec::new();
        for chain in [nft::HOSTPORTS, nft::HAIRPIN] {
            for h in self.pod_rules_in(&mut nf, chain, pod)? {
                t_rules.push((chain, h));
            }
        }
        let mut t = Txn::begin(&mut nf);
        for (chain, h) in t_rules {
            t.delete_rule(&self.nft.table, chain, h);
        }
        t.commit()
            .map_err(|(op, e)| NetError::Netlink { op, source: e })
    }

    /// Everything of `pod`'s network, now.
    fn teardown(&self, pod: &str, netns: Option<&Path>) -> Result<(), NetError> {
        self.wait_released(pod);
        let rules = self.remove_port_rules(pod);
        let mut rt = self.rt.lock().unwrap();
        let released = self.release(pod, netns, &mut rt);
        rules.and(released)
    }

    /// The synchronous part of a disconnect: the pod's rules removed, its release registered.
    /// None when a release of the pod is already under way.
    fn disconnect(&self, pod: &str) -> Result<Option<Arc<Release>>, NetError> {
        self.remove_port_rules(pod)?;
        let mut releasing = self.releasing.lock().unwrap();
        if releasing.contains_key(pod) {
            return Ok(None);
        }
        let r = Arc::new(Release::default());
        releasing.insert(pod.to_string(), r.clone());
        Ok(Some(r))
    }

    fn wait_released(&self, pod: &str) {
        let pending = self.releasing.lock().unwrap().get(pod).cloned();
        if let Some(r) = pending {
            r.wait();
        }
    }

    /// Deletes the pod's veth pair, then frees its addresses (also when the deletion failed:
    /// the error is returned, and the pair, if still there, is a stale veth that start-up
    /// deletes).
    fn release(&self, pod: &str, netns: Option<&Path>, rt: &mut NlSocket) -> Result<(), NetError> {
        let mut first: Option<NetError> = None;
        let mut keep = |r: Result<(), NetError>| {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        };
        let veth = host_veth_name(pod);
        let gone = {
            let mut b = Batch::default();
            link::push_del_link(&mut b, rt, &veth);
            match rt.exchange(b).map(|mut r| r.pop().unwrap()) {
                Ok(Ok(_)) => false,
                Ok(Err(e)) if e.is(libc::ENODEV) => true,
                Ok(Err(e)) | Err(e) => {
                    keep(Err(NetError::netlink(format!("deleting veth {veth}"))(e)));
                    false
                }
            }
        };
        crate::failpoint::hit("net.veth_deleted");
        if gone {
            if let Some(ns) = netns.filter(|p| p.exists()) {
                keep(
                    in_netns(ns, || {
                        let mut rt = NlSocket::open(NETLINK_ROUTE)
                            .map_err(NetError::netlink("opening rtnetlink in the pod"))?;
                        let mut b = Batch::default();
                        link::push_del_link(&mut b, &mut rt, POD_INTERFACE);
                        match rt.exchange(b).map(|mut r| r.pop().unwrap()) {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err(e)) if e.is(libc::ENODEV) => Ok(()),
                            Ok(Err(e)) | Err(e) => Err(NetError::netlink(format!(
                                "deleting {POD_INTERFACE} in the pod"
                            ))(e)),
                        }
                    })
                    // Unpinned meanwhile (a background release races the sandbox's unpinning):
                    // the namespace and whatever was in it are gone with it.
                    .or_else(|e| match e {
                        NetError::Netns { ref source, .. }
                            if source.kind() == std::io::ErrorKind::NotFound =>
                        {
                            Ok(())
                        }
                        e => Err(e),
                    }),
                );
            }
        }
        keep(self.ipam.release(pod));
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn reconcile(&self, live: &[(String, Vec<PortMapping>)]) -> Result<(), NetError> {
        let ids: HashSet<&str> = live.iter().map(|(id, _)| id.as_str()).collect();
        let freed = self.ipam.reconcile(&ids)?;
        if !freed.is_empty() {
            tracing::info!(pods = ?freed, "freed the addresses of pods that are gone");
        }
        let ranges = *self.ranges.read().unwrap();
        let bridge = self.bridge_index(&ranges)?;
        {
            let veths: HashSet<String> = ids.iter().map(|id| host_veth_name(id)).collect();
            let mut rt = self.rt.lock().unwrap();
            let links = link::dump_links(&mut rt).map_err(NetError::netlink("listing links"))?;
            let mut b = Batch::default();
            let mut names = Vec::new();
            for l in links {
                if l.master == Some(bridge)
                    && is_host_veth_name(&l.name)
                    && !veths.contains(&l.name)
                {
                    link::push_del_link(&mut b, &mut rt, &l.name);
                    names.push(l.name);
                }
            }
            if !b.is_empty() {
                tracing::info!(veths = ?names, "deleting the veths of pods that are gone");
                for (r, n) in rt
                    .exchange(b)
                    .map_err(NetError::netlink("deleting stale veths"))?
                    .into_iter()
                    .zip(&names)
                {
                    match r {
                        Ok(_) => {}
                        Err(e) if e.is(libc::ENODEV) => {}
                        Err(e) => return Err(NetError::netlink(format!("deleting veth {n}"))(e)),
                    }
                }
            }
        }
        // The table, rebuilt in one transaction from the live pods.
        let mut rules = Vec::new();
        let mut taken: Vec<(String, HostPort)> = Vec::new();
        for (id, ports) in live {
            let hostports = match validate_port_mappings(ports) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(pod = %id, error = %e, "not mapping the ports of a live pod");
                    continue;
                }
            };
            let ips = self.ipam.addresses(id);
            if ips.is_empty() || hostports.is_empty() {
                continue;
            }
            let mut keep = Vec::new();
            for hp in hostports {
                if let Some((_, holder)) = ports::find_conflict(id, &[hp], &taken) {
                    tracing::warn!(pod = %id, holder, port = hp.host_port, "host port already mapped; skipped");
                    continue;
                }
                taken.push((id.clone(), hp));
                keep.push(hp);
            }
            keep.retain(|hp| {
                let ok = ips.iter().any(|ip| hp.covers_family(ip.is_ipv6()));
                if !ok {
                    tracing::warn!(pod = %id, port = hp.host_port, "no address of the host IP's family; skipped");
                }
                ok
            });
            if let Ok(r) = nft::pod_rules(id, &self.with_gateways(&ips), &keep) {
                rules.extend(r);
            }
        }
        let mut nf = self.nf.lock().unwrap();
        let mut t = Txn::begin(&mut nf);
        // add + delete + add: the delete cannot fail for a missing table.
        t.add_table(&self.nft.table);
        t.delete_table(&self.nft.table);
        self.nft.push_skeleton(&mut t);
        for r in &rules {
            t.add_rule(&self.nft.table, r);
        }
        t.commit()
            .map_err(|(op, e)| NetError::Netlink { op, source: e })
    }

    fn remove(&self) -> Result<(), NetError> {
        {
            let mut nf = self.nf.lock().unwrap();
            let mut t = Txn::begin(&mut nf);
            t.add_table(&self.nft.table);
            t.delete_table(&self.nft.table);
            t.commit()
                .map_err(|(op, e)| NetError::Netlink { op, source: e })?;
        }
        let mut rt = self.rt.lock().unwrap();
        let mut b = Batch::default();
        link::push_del_link(&mut b, &mut rt, &self.bridge);
        match rt.exchange(b).map(|mut r| r.pop().unwrap()) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.is(libc::ENODEV) => {}
            Ok(Err(e)) | Err(e) => {
                return Err(NetError::netlink(format!(
                    "deleting bridge {}",
                    self.bridge
                ))(e))
            }
        }
        self.gateways.lock().unwrap().clear();
        Ok(())
    }
}

/// Inside the pod's namespace: loopback up, then the addresses of eth0 and the default routes
/// via the gateways. Two round trips on a socket of the namespace.
fn configure_pod_side(addrs: &[(IpNet, IpAddr)]) -> Result<(), NetError> {
    let mut rt =
        NlSocket::open(NETLINK_ROUTE).map_err(NetError::netlink("opening rtnetlink in the pod"))?;
    let mut b = Batch::default();
    link::push_set_up(&mut b, &mut rt, 1, None); // lo is always index 1
    let r = rt
        .exchange(b)
        .map_err(NetError::netlink("setting lo up in the pod"))?;
    if let Some(Err(e)) = r.into_iter().next() {
        return Err(NetError::netlink("setting lo up in the pod")(e));
    }
    let eth0 = link::get_link(&mut rt, POD_INTERFACE)
        .map_err(NetError::netlink(format!(
            "looking up {POD_INTERFACE} in the pod"
        )))?
        .ok_or_else(|| {
            NetError::Config(format!("{POD_INTERFACE} missing in the pod's namespace"))
        })?;
    let mut b = Batch::default();
    let mut what = Vec::new();
    if !eth0.up {
        link::push_set_up(&mut b, &mut rt, eth0.index, None);
        what.push(format!("setting {POD_INTERFACE} up in the pod"));
    }
    for (a, _) in addrs {
        link::push_add_addr(&mut b, &mut rt, eth0.index, *a);
        what.push(format!("adding {a} to {POD_INTERFACE} in the pod"));
    }
    for (_, gw) in addrs {
        link::push_default_route(&mut b, &mut rt, eth0.index, *gw);
        what.push(format!("adding the default route via {gw} in the pod"));
    }
    let replies = rt
        .exchange(b)
        .map_err(NetError::netlink("configuring the pod's interface"))?;
    for (r, w) in replies.into_iter().zip(what) {
        match r {
            Ok(_) => {}
            Err(e) if e.is(libc::EEXIST) => {}
            Err(e) => return Err(NetError::netlink(w)(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_are_deterministic_and_fit() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(host_veth_name(id), "pp0123456789abc");
        assert_eq!(host_veth_name(id), host_veth_name(id));
        for other in [
            "my-pod",
            "0123456789ABCDEF0123",
            "",
            "x".repeat(128).as_str(),
        ] {
            let n = host_veth_name(other);
            assert_eq!(n.len(), 15, "{n}");
            assert!(is_host_veth_name(&n), "{n}");
            assert_eq!(n, host_veth_name(other));
        }
        assert_ne!(host_veth_name("a"), host_veth_name("b"));
        assert!(is_host_veth_name("pp0123456789abc"));
        assert!(!is_host_veth_name("pp0123456789ab"));
        assert!(!is_host_veth_name("peapod0"));
        assert!(!is_host_veth_name("pp0123456789abZ"));
    }

    #[test]
    fn cidr_choice_skips_overlapping_routes_but_not_default_ones() {
        let c: Vec<Ipv4Net> = CIDR_CANDIDATES.iter().map(|c| c.parse().unwrap()).collect();
        let r = |v: &[&str]| v.iter().map(|s| s.parse().unwrap()).collect::<Vec<IpNet>>();
        assert_eq!(choose_cidr(&c, &[]), Some("10.88.0.0/16".parse().unwrap()));
        // The host's default route and its own LAN.
        assert_eq!(
            choose_cidr(&c, &r(&["0.0.0.0/0", "192.0.2.0/24", "::/0"])),
            Some("10.88.0.0/16".parse().unwrap())
        );
        // A route inside the candidate, and one containing the next.
        assert_eq!(
            choose_cidr(&c, &r(&["10.88.5.0/24", "10.88.0.0/15"])),
            Some("10.90.0.0/16".parse().unwrap())
        );
        // All of 10/8 routed elsewhere.
        assert_eq!(
            choose_cidr(&c, &r(&["10.0.0.0/8"])),
            Some("172.20.0.0/16".parse().unwrap())
        );
        assert_eq!(
            choose_cidr(&c, &r(&["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"])),
            None
        );
    }

    #[test]
    fn pod_cidrs_parse_one_or_two_families() {
        let r = parse_pod_cidr("10.1.0.0/16").unwrap();
        assert_eq!((r.v4, r.v6), (Some("10.1.0.0/16".parse().unwrap()), None));
        let r = parse_pod_cidr("10.1.2.3/16, fd00:1::/64").unwrap();
        assert_eq!(
            r.v4,
            Some("10.1.0.0/16".parse().unwrap()),
            "truncated to the network"
        );
        assert_eq!(r.v6, Some("fd00:1::/64".parse().unwrap()));
        assert_eq!(parse_pod_cidr("").unwrap(), Ranges { v4: None, v6: None });
        assert!(parse_pod_cidr("10.1.0.0/16,10.2.0.0/16").is_err());
        assert!(parse_pod_cidr("banana").is_err());
        assert!(parse_pod_cidr("10.0.0.0/31").is_err());
        assert!(parse_pod_cidr("127.0.0.0/8").is_err());
    }
}
