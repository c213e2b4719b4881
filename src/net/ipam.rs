//! Pod addresses, persisted the way CNI's host-local plugin does: one file per allocated
//! address in one directory, named by the address and holding the pod ID.
//!
//! A file is created with O_EXCL, so two allocations can never get the same address, and the
//! directory is the whole state: after a crash it is read back as it is. A file without a pod
//! ID (a crash between create and write) belongs to no pod and is reclaimed by
//! [`Ipam::reconcile`]. Files are not fsync'd: they only have to outlive the daemon, and after
//! a reboot no pod of the previous boot is alive, so reconcile frees them all anyway.
//!
//! The directory is the truth; the in-memory index only saves reading it on every call.
//! Addresses are handed out round-robin after the last one given, as host-local does, so an
//! address just released is not reused at once by the next pod.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ipnet::IpNet;

use super::error::NetError;

pub(crate) struct Ipam {
    dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Address → owning pod ID ("" for a file without one).
    owner: HashMap<IpAddr, String>,
    /// The last address handed out, per family (v4 false, v6 true).
    last: HashMap<bool, IpAddr>,
}

/// The first and last address a pod may get in `net`: the network address and the gateway
/// (the first address) are never given, nor the IPv4 broadcast address.
pub(crate) fn host_range(net: IpNet) -> Option<(u128, u128)> {
    let (first, last) = match net {
        IpNet::V4(n) => {
            let first = u32::from(n.network()) as u128;
            let last = u32::from(n.broadcast()) as u128;
            (first, if n.prefix_len() >= 31 { last } else { last - 1 })
        }
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    };
    // network (+0) and gateway (+1) are reserved
    let lo = first.checked_add(2)?;
    (lo <= last).then_some((lo, last))
}

/// The gateway of `net`: its first address, which the bridge holds.
pub fn gateway(net: IpNet) -> IpAddr {
    to_ip(net, ip_num(net.network()) + 1)
}

fn ip_num(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn to_ip(net: IpNet, n: u128) -> IpAddr {
    match net {
        IpNet::V4(_) => IpAddr::V4((n as u32).into()),
        IpNet::V6(_) => IpAddr::V6(n.into()),
    }
}

/// The next free address of `net` after `after` (wrapping around to the start of the
/// range), or None when every address is taken. Pure: the allocation policy in one place.
pub(crate) fn next_free(
    net: IpNet,
    used: &HashSet<IpAddr>,
    after: Option<IpAddr>,
) -> Option<IpAddr> {
    let (lo, hi) = host_range(net)?;
    let size = hi - lo + 1;
    let start = match after {
        Some(a) if net.contains(&a) => {
            let n = ip_num(a);
            if n >= lo && n < hi {
                n + 1
            } else {
                lo
            }
        }
        _ => lo,
    };
    // At most one step per used address before a free one, unless the range is full.
    let tries = size.min(used.len() as u128 + 1);
    let mut n = start;
    for _ in 0..tries {
        let ip = to_ip(net, n);
        if !used.contains(&ip) {
            return Some(ip);
        }
        n = if n == hi { lo } else { n + 1 };
    }
    None
}

impl Ipam {
    /// Opens (creating) the directory and reads what is allocated.
    pub(crate) fn open(dir: &Path) -> Result<Self, NetError> {
        std::fs::create_dir_all(dir).map_err(NetError::io("creating IPAM directory", dir))?;
        let ipam = Ipam {
            dir: dir.to_owned(),
            state: Mutex::new(State::default()),
        };
        let owner = ipam.scan()?;
        let mut st = ipam.state.lock().unwrap();
        for ip in owner.keys() {
            let v6 = ip.is_ipv6();
            let cur = st.last.get(&v6).copied();
            if cur.is_none_or(|c| ip_num(c) < ip_num(*ip)) {
                st.last.insert(v6, *ip);
            }
        }
        st.owner = owner;
        drop(st);
        Ok(ipam)
    }

    fn scan(&self) -> Result<HashMap<IpAddr, String>, NetError> {
        let mut out = HashMap::new();
        let rd = std::fs::read_dir(&self.dir)
            .map_err(NetError::io("reading IPAM directory", &self.dir))?;
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(ip) = name.to_str().and_then(|s| s.parse::<IpAddr>().ok()) else {
                continue;
            };
            let owner = std::fs::read_to_string(e.path()).unwrap_or_default();
            out.insert(ip, owner.trim().to_string());
        }
        Ok(out)
    }

    fn path(&self, ip: IpAddr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    /// An address of `net` for `pod`: the one it already has there (a retried setup), else a
    /// new one reserved on disk.
    pub(crate) fn allocate(&self, pod: &str, net: IpNet) -> Result<IpAddr, NetError> {
        let mut st = self.state.lock().unwrap();
        if let Some(ip) = st
            .owner
            .iter()
            .filter(|(ip, o)| o.as_str() == pod && net.contains(*ip))
            .map(|(ip, _)| *ip)
            .min()
        {
            return Ok(ip);
        }
        let mut used: HashSet<IpAddr> = st.owner.keys().copied().collect();
        let v6 = net.addr().is_ipv6();
        loop {
            let last = st.last.get(&v6).copied();
            let Some(ip) = next_free(net, &used, last) else {
                return Err(NetError::Exhausted {
                    cidr: net.to_string(),
                });
            };
            let path = self.path(ip);
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    if let Err(e) = f.write_all(pod.as_bytes()) {
                        let _ = std::fs::remove_file(&path);
                        return Err(NetError::io("writing IPAM file", &path)(e));
                    }
                    st.owner.insert(ip, pod.to_string());
                    st.last.insert(v6, ip);
                    return Ok(ip);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // Taken behind the index's back: learn it and go on.
                    let o = std::fs::read_to_string(&path).unwrap_or_default();
                    st.owner.insert(ip, o.trim().to_string());
                    used.insert(ip);
                }
                Err(e) => return Err(NetError::io("creating IPAM file", &path)(e)),
            }
        }
    }

    /// The addresses `pod` holds, lowest first per family, IPv4 first.
    pub(crate) fn addresses(&self, pod: &str) -> Vec<IpAddr> {
        let st = self.state.lock().unwrap();
        let mut v: Vec<IpAddr> = st
            .owner
            .iter()
            .filter(|(_, o)| o.as_str() == pod)
            .map(|(ip, _)| *ip)
            .collect();
        v.sort_by_key(|ip| (ip.is_ipv6(), ip_num(*ip)));
        v
    }

    /// Frees every address of `pod`. Idempotent.
    pub(crate) fn release(&self, pod: &str) -> Result<(), NetError> {
        let mut st = self.state.lock().unwrap();
        let mine: Vec<IpAddr> = st
            .owner
            .iter()
            .filter(|(_, o)| o.as_str() == pod)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in mine {
            self.remove_if_owned(ip, pod)?;
            st.owner.remove(&ip);
        }
        Ok(())
    }

    /// Removes the file of `ip` if it still names `pod` (it may have been reclaimed and given
    /// to another pod since the index was read).
    fn remove_if_owned(&self, ip: IpAddr, pod: &str) -> Result<(), NetError> {
        let path = self.path(ip);
        match std::fs::read_to_string(&path) {
            Ok(o) if o.trim() == pod => match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(NetError::io("removing IPAM file", &path)(e)),
            },
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(NetError::io("reading IPAM file", &path)(e)),
        }
    }

    /// Frees the addresses of every pod not in `live` (and files naming no pod), reading the
    /// directory afresh. Returns the pod IDs whose addresses were freed.
    pub(crate) fn reconcile(&self, live: &HashSet<&str>) -> Result<Vec<String>, NetError> {
        let mut st = self.state.lock().unwrap();
        let owner = self.scan()?;
        let mut freed = Vec::new();
        for (ip, pod) in &owner {
            if !live.contains(pod.as_str()) {
                self.remove_if_owned(*ip, pod)?;
                if !pod.is_empty() && !freed.contains(pod) {
                    freed.push(pod.clone());
                }
            }
        }
        st.owner = owner
            .into_iter()
            .filter(|(_, p)| live.contains(p.as_str()))
            .collect();
        Ok(freed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::TempDir;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_skip_network_gateway_and_broadcast() {
        let (lo, hi) = host_range(net("10.88.0.0/16")).unwrap();
        assert_eq!(to_ip(net("10.88.0.0/16"), lo), ip("10.88.0.2"));
        assert_eq!(to_ip(net("10.88.0.0/16"), hi), ip("10.88.255.254"));
        assert_eq!(gateway(net("10.88.0.0/16")), ip("10.88.0.1"));
        assert_eq!(gateway(net("fd00:1::/64")), ip("fd00:1::1"));
        let (lo, hi) = host_range(net("fd00:1::/64")).unwrap();
        assert_eq!(to_ip(net("fd00:1::/64"), lo), ip("fd00:1::2"));
        assert_eq!(
            to_ip(net("fd00:1::/64"), hi),
            ip("fd00:1::ffff:ffff:ffff:ffff")
        );
        // A /30 has one address for a pod; a /31 and /32 leave none after the gateway... or one.
        let (lo, hi) = host_range(net("10.0.0.0/30")).unwrap();
        assert_eq!(
            (lo, hi - lo),
            (u32::from(std::net::Ipv4Addr::new(10, 0, 0, 2)) as u128, 0)
        );
        assert!(host_range(net("10.0.0.0/32")).is_none());
    }

    #[test]
    fn next_free_is_round_robin_and_wraps() {
        let n = net("10.1.0.0/29"); // pods: .2 .. .6
        let mut used = HashSet::new();
        assert_eq!(next_free(n, &used, None), Some(ip("10.1.0.2")));
        assert_eq!(
            next_free(n, &used, Some(ip("10.1.0.2"))),
            Some(ip("10.1.0.3"))
        );
        // After the last one it wraps to the first.
        assert_eq!(
            next_free(n, &used, Some(ip("10.1.0.6"))),
            Some(ip("10.1.0.2"))
        );
        used.extend([ip("10.1.0.2"), ip("10.1.0.3"), ip("10.1.0.5")]);
        assert_eq!(
            next_free(n, &used, Some(ip("10.1.0.4"))),
            Some(ip("10.1.0.6"))
        );
        assert_eq!(
            next_free(n, &used, Some(ip("10.1.0.6"))),
            Some(ip("10.1.0.4"))
        );
        used.extend([ip("10.1.0.4"), ip("10.1.0.6")]);
        assert_eq!(next_free(n, &used, None), None);
        // An `after` outside the range starts from the beginning.
        used.clear();
        assert_eq!(
            next_free(n, &used, Some(ip("192.168.0.9"))),
            Some(ip("10.1.0.2"))
        );
        // IPv6 with a huge range and a few used addresses.
        let n6 = net("fd00::/64");
        let used6: HashSet<IpAddr> = [ip("fd00::2"), ip("fd00::3")].into();
        assert_eq!(next_free(n6, &used6, None), Some(ip("fd00::4")));
    }

    #[test]
    fn allocation_is_idempotent_persistent_and_exclusive() {
        let d = TempDir::new("ipam");
        let ipam = Ipam::open(&d.0).unwrap();
        let n = net("10.5.0.0/24");
        let a = ipam.allocate("pod-a", n).unwrap();
        assert_eq!(a, ip("10.5.0.2"));
        assert_eq!(
            ipam.allocate("pod-a", n).unwrap(),
            a,
            "a retry gets the same address"
        );
        let b = ipam.allocate("pod-b", n).unwrap();
        assert_eq!(b, ip("10.5.0.3"));
        assert_eq!(
            std::fs::read_to_string(d.0.join("10.5.0.2")).unwrap(),
            "pod-a"
        );
        // A file made behind the index's back is skipped, not overwritten.
        std::fs::write(d.0.join("10.5.0.4"), "other").unwrap();
        assert_eq!(ipam.allocate("pod-c", n).unwrap(), ip("10.5.0.5"));
        // Reopened, the state is what the directory says.
        let again = Ipam::open(&d.0).unwrap();
        assert_eq!(again.addresses("pod-a"), vec![a]);
        assert_eq!(again.allocate("pod-b", n).unwrap(), b);
        assert_eq!(again.allocate("pod-d", n).unwrap(), ip("10.5.0.6"));
        again.release("pod-a").unwrap();
        again.release("pod-a").unwrap();
        assert!(!d.0.join("10.5.0.2").exists());
        assert!(again.addresses("pod-a").is_empty());
    }

    #[test]
    fn dual_stack_pods_get_one_address_per_family() {
        let d = TempDir::new("ipam6");
        let ipam = Ipam::open(&d.0).unwrap();
        let a4 = ipam.allocate("p", net("10.6.0.0/24")).unwrap();
        let a6 = ipam.allocate("p", net("fd00:6::/64")).unwrap();
        assert_eq!(a6, ip("fd00:6::2"));
        assert_eq!(ipam.addresses("p"), vec![a4, a6]);
        assert!(d.0.join("fd00:6::2").exists());
    }

    #[test]
    fn exhaustion_is_an_error_naming_the_cidr() {
        let d = TempDir::new("ipamfull");
        let ipam = Ipam::open(&d.0).unwrap();
        let n = net("10.7.0.0/30");
        ipam.allocate("a", n).unwrap();
        let e = ipam.allocate("b", n).unwrap_err();
        assert!(
            matches!(&e, NetError::Exhausted { cidr } if cidr == "10.7.0.0/30"),
            "{e}"
        );
    }

    #[test]
    fn reconcile_frees_dead_pods_and_ownerless_files() {
        let d = TempDir::new("ipamrec");
        let ipam = Ipam::open(&d.0).unwrap();
        let n = net("10.8.0.0/24");
        let live_ip = ipam.allocate("live", n).unwrap();
        let dead_ip = ipam.allocate("dead", n).unwrap();
        std::fs::write(d.0.join("10.8.0.200"), "").unwrap(); // torn by a crash
        std::fs::write(d.0.join("not-an-ip.tmp"), "x").unwrap();
        let freed = ipam.reconcile(&["live"].into()).unwrap();
        assert_eq!(freed, vec!["dead".to_string()]);
        assert!(d.0.join(live_ip.to_string()).exists());
        assert!(!d.0.join(dead_ip.to_string()).exists());
        assert!(!d.0.join("10.8.0.200").exists());
        assert!(
            d.0.join("not-an-ip.tmp").exists(),
            "only address files are ours"
        );
        assert_eq!(ipam.addresses("live"), vec![live_ip]);
        assert!(ipam.addresses("dead").is_empty());
    }
}
