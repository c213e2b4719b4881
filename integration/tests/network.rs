//! The built-in pod network (`peapod::net`) against the real kernel: a test bridge
//! (`pptest<random>`), a CIDR from 10.200-254.x.0/24 clear of the host's routes, an nftables
//! table of the test's own, and network namespaces the test makes and pins itself.
//!
//! Every test cleans up what it made, also when it fails: pods are torn down, the table and
//! the bridge deleted and the namespaces unmounted by Drop guards. Traffic goes only to
//! loopback, the test bridge and the test's namespaces. The host-wide forwarding switches are
//! left alone (`host_forwarding: false`): the bridge's own forwarding is enough for what is
//! checked here.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use peapod::api::{PortMapping, Protocol};
use peapod::fsutil::new_id;
use peapod::net::{host_veth_name, BuiltinNetwork, NetConfig, NetError};

const IO_TIMEOUT: Duration = Duration::from_secs(3);

fn root() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: network tests need root");
        return false;
    }
    true
}

fn rand_u32() -> u32 {
    u32::from_str_radix(&new_id()[..8], 16).unwrap()
}

/// The host's IPv4 routes (main table), from /proc/net/route.
fn host_routes() -> Vec<IpNet> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dst = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            let net =
                Ipv4Net::new(Ipv4Addr::from(dst.to_le_bytes()), mask.count_ones() as u8).ok()?;
            Some(IpNet::V4(net))
        })
        .collect()
}

/// A /24 in 10.200.0.0-10.254.255.0 that no route of the host touches.
fn free_cidr() -> Ipv4Net {
    let routes = host_routes();
    for _ in 0..100 {
        let r = rand_u32();
        let c = Ipv4Net::new(
            Ipv4Addr::new(10, 200 + (r % 55) as u8, (r >> 8) as u8, 0),
            24,
        )
        .unwrap();
        if peapod::net::choose_cidr(&[c], &routes).is_some() {
            return c;
        }
    }
    panic!("no free 10.2xx.x.0/24 for the test");
}

fn random_v6() -> Ipv6Net {
    let r = rand_u32();
    let s = format!(
        "fd{:02x}:{:04x}:{:04x}::/64",
        r & 0xff,
        (r >> 8) & 0xffff,
        rand_u32() & 0xffff
    );
    s.parse().unwrap()
}

/// A port free on the host for TCP and UDP right now.
fn free_port() -> u16 {
    for _ in 0..100 {
        let p = 30000 + (rand_u32() % 10000) as u16;
        let ok =
            TcpListener::bind(("0.0.0.0", p)).is_ok() && UdpSocket::bind(("0.0.0.0", p)).is_ok();
        if ok {
            return p;
        }
    }
    panic!("no free port");
}

/// A network namespace of the test's own, pinned on a file; unmounted on drop.
struct Netns {
    path: PathBuf,
}

impl Netns {
    fn new(dir: &Path, name: &str) -> Self {
        let path = dir.join(name);
        File::create(&path).unwrap();
        let p = path.clone();
        std::thread::spawn(move || {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).unwrap();
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &p,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .unwrap();
        })
        .join()
        .unwrap();
        Netns { path }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs `f` on a thread inside the namespace pinned at `ns`.
fn in_ns<T: Send + 'static>(ns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        let fd = File::open(&ns).unwrap();
        nix::sched::setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// A test network: its bridge, table and IPAM directory, and the pods set up on it, all
/// removed on drop.
struct TestNet {
    net: Option<BuiltinNetwork>,
    cfg: NetConfig,
    dir: PathBuf,
    pods: Mutex<Vec<String>>,
}

impl TestNet {
    async fn new(v6: bool) -> Self {
        let tag = &new_id()[..8];
        let dir = std::env::temp_dir().join(format!("peapod-net-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = NetConfig::new(dir.join("ipam"));
        cfg.bridge = format!("pptest{tag}");
        cfg.nft_table = format!("peapod-test-{tag}");
        cfg.ipv4_cidr = Some(free_cidr());
        cfg.ipv6_cidr = v6.then(random_v6);
        cfg.host_forwarding = false;
        let net = BuiltinNetwork::new(cfg.clone()).await.expect("network");
        TestNet {
            net: Some(net),
            cfg,
            dir,
            pods: Mutex::new(Vec::new()),
        }
    }

    fn net(&self) -> &BuiltinNetwork {
        self.net.as_ref().unwrap()
    }

    fn gw4(&self) -> Ipv4Addr {
        match peapod::net::gateway(IpNet::V4(self.cfg.ipv4_cidr.unwrap())) {
            IpAddr::V4(a) => a,
            _ => unreachable!(),
        }
    }

    fn gw6(&self) -> IpAddr {
        peapod::net::gateway(IpNet::V6(self.cfg.ipv6_cidr.unwrap()))
    }

    fn netns(&self, name: &str) -> Netns {
        Netns::new(&self.dir, name)
    }

    async fn setup(
        &self,
        pod: &str,
        ns: &Netns,
        ports: &[PortMapping],
    ) -> Result<peapod::net::PodNetwork, NetError> {
        self.pods.lock().unwrap().push(pod.to_string());
        self.net().setup(pod, &ns.path, ports).await
    }

    fn ip_file(&self, ip: IpAddr) -> PathBuf {
        self.cfg.ipam_dir.join(ip.to_string())
    }

    /// Reopens the network, as a restarted daemon does.
    async fn restart(&mut self) {
        self.net = Some(
            BuiltinNetwork::new(self.cfg.clone())
                .await
                .expect("network"),
        );
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let net = self.net.take().unwrap();
        let pods = std::mem::take(&mut *self.pods.lock().unwrap());
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    for p in &pods {
                        let _ = net.teardown(p, None).await;
                    }
                    if let Err(e) = net.remove().await {
                        eprintln!("removing the test network: {e}");
                    }
                });
            });
        });
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn veth_exists(pod: &str) -> bool {
    Path::new("/sys/class/net")
        .join(host_veth_name(pod))
        .exists()
}

/// The addresses of eth0 in the namespace.
fn eth0_addrs(ns: &Path) -> Vec<IpAddr> {
    in_ns(ns, || {
        nix::ifaddrs::getifaddrs()
            .unwrap()
            .filter(|i| i.interface_name == "eth0")
            .filter_map(|i| {
                let a = i.address?;
                if let Some(v4) = a.as_sockaddr_in() {
                    Some(IpAddr::V4(v4.ip()))
                } else {
                    a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
                }
            })
            .collect()
    })
}

/// A TCP or UDP echo server on a socket bound in some namespace; stopped on drop.
struct Echo {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Echo {
    fn tcp(l: TcpListener) -> Self {
        l.set_nonblocking(true).unwrap();
        Self::run(move || match l.accept() {
            Ok((mut c, _)) => {
                c.set_nonblocking(false).unwrap();
                c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                let mut b = [0u8; 64];
                if let Ok(n) = c.read(&mut b) {
                    let _ = c.write_all(&b[..n]);
                }
                true
            }
            Err(_) => false,
        })
    }

    fn udp(s: UdpSocket) -> Self {
        s.set_nonblocking(true).unwrap();
        Self::run(move || {
            let mut b = [0u8; 64];
            match s.recv_from(&mut b) {
                Ok((n, from)) => {
                    let _ = s.send_to(&b[..n], from);
                    true
                }
                Err(_) => false,
            }
        })
    }

    fn run(mut step: impl FnMut() -> bool + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if !step() {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        Echo {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.take().unwrap().join();
    }
}

fn tcp_server_in(ns: &Path, addr: SocketAddr) -> Echo {
    Echo::tcp(in_ns(ns, move || TcpListener::bind(addr).unwrap()))
}

/// Sends a line over TCP and returns the echo.
fn tcp_echo(to: SocketAddr) -> std::io::Result<String> {
    let mut c = TcpStream::connect_timeout(&to, IO_TIMEOUT)?;
    c.set_read_timeout(Some(IO_TIMEOUT))?;
    c.write_all(b"ping")?;
    let mut s = String::new();
    c.read_to_string(&mut s)?;
    Ok(s)
}

fn tcp_echo_from(ns: &Path, to: SocketAddr) -> std::io::Result<String> {
    in_ns(ns, move || tcp_echo(to))
}

fn udp_echo(to: SocketAddr) -> std::io::Result<String> {
    let s = UdpSocket::bind(("0.0.0.0", 0))?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.send_to(b"pong", to)?;
    let mut b = [0u8; 64];
    let (n, _) = s.recv_from(&mut b)?;
    Ok(String::from_utf8_lossy(&b[..n]).into_owned())
}

fn tcp_map(container_port: i32, host_port: u16) -> PortMapping {
    PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port,
        host_port: host_port as i32,
        host_ip: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_get_addresses_reach_the_gateway_and_each_other() {
    if !root() {
        return;
    }
    let tn = TestNet::new(true).await;
    let (a_ns, b_ns) = (tn.netns("a"), tn.netns("b"));
    let (a, b) = (new_id(), new_id());
    let t0 = Instant::now();
    let pa = tn.setup(&a, &a_ns, &[]).await.unwrap();
    eprintln!("setup of the first pod (dual stack): {:?}", t0.elapsed());
    let pb = tn.setup(&b, &b_ns, &[]).await.unwrap();
    assert_eq!(pa.interface, "eth0");
    assert_eq!(pa.host_veth, host_veth_name(&a));
    assert_eq!(pa.ips.len(), 2, "{pa:?}");
    assert!(tn.cfg.ipv4_cidr.unwrap().contains(&match pa.ips[0] {
        IpAddr::V4(x) => x,
        _ => panic!("{pa:?}"),
    }));
    assert!(pa.ips[1].is_ipv6());
    assert_ne!(pa.ips, pb.ips);
    let mut got = eth0_addrs(&a_ns.path);
    got.retain(|ip| !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] == 0xfe80));
    got.sort();
    assert_eq!(got, pa.ips, "eth0 in the pod has its addresses");
    assert!(veth_exists(&a) && veth_exists(&b));
    for ip in pa.ips.iter().chain(&pb.ips) {
        assert_eq!(std::fs::read_to_string(tn.ip_file(*ip)).unwrap().len(), 64);
    }

    // The pod reaches the gateway, over IPv4 and IPv6: a server on the host bound to it.
    for gw in [IpAddr::V4(tn.gw4()), tn.gw6()] {
        let l = TcpListener::bind((gw, 0)).unwrap();
        let to = l.local_addr().unwrap();
        let _srv = Echo::tcp(l);
        assert_eq!(
            tcp_echo_from(&a_ns.path, to).unwrap(),
            "ping",
            "pod → gateway {gw}"
        );
    }
    // And the other pod, over both families.
    for ip in &pb.ips {
        let to = SocketAddr::new(*ip, 7000);
        let _srv = tcp_server_in(&b_ns.path, to);
        assert_eq!(
            tcp_echo_from(&a_ns.path, to).unwrap(),
            "ping",
            "pod a → pod b at {ip}"
        );
    }

    // A retried setup of the same pod gets the same addresses and still works.
    let again = tn.setup(&a, &a_ns, &[]).await.unwrap();
    assert_eq!(again, pa);
    let to = SocketAddr::new(pb.ips[0], 7001);
    let _srv = tcp_server_in(&b_ns.path, to);
    assert_eq!(tcp_echo_from(&a_ns.path, to).unwrap(), "ping");

    // Teardown removes the veth and the address files; twice is fine.
    tn.net().teardown(&a, Some(&a_ns.path)).await.unwrap();
    tn.net().teardown(&a, Some(&a_ns.path)).await.unwrap();
    assert!(!veth_exists(&a));
    assert!(eth0_addrs(&a_ns.path).is_empty(), "eth0 went with its pair");
    for ip in &pa.ips {
        assert!(!tn.ip_file(*ip).exists());
    }
    assert!(veth_exists(&b), "the other pod keeps its network");
    tn.net().teardown(&b, None).await.unwrap();
    assert!(!veth_exists(&b));
}

#[tokio::test(flavor = "multi_thread")]
async fn host_ports_reach_the_pod_and_a_conflict_leaves_nothing() {
    if !root() {
        return;
    }
    let tn = TestNet::new(false).await;
    let (a_ns, b_ns) = (tn.netns("a"), tn.netns("b"));
    let (a, b) = (new_id(), new_id());
    let hp = free_port();
    let ports = vec![
        tcp_map(8080, hp),
        PortMapping {
            protocol: Protocol::Udp as i32,
            container_port: 8081,
            host_port: hp as i32,
            host_ip: String::new(),
        },
        tcp_map(9090, 0), // no host port: nothing to map
    ];
    let pa = tn.setup(&a, &a_ns, &ports).await.unwrap();
    let _tcp = tcp_server_in(&a_ns.path, "0.0.0.0:8080".parse().unwrap());
    let _udp = Echo::udp(in_ns(&a_ns.path, || {
        UdpSocket::bind("0.0.0.0:8081").unwrap()
    }));

    let lo = SocketAddr::from((Ipv4Addr::LOCALHOST, hp));
    assert_eq!(tcp_echo(lo).unwrap(), "ping", "host → 127.0.0.1:{hp} (TCP)");
    assert_eq!(udp_echo(lo).unwrap(), "pong", "host → 127.0.0.1:{hp} (UDP)");
    let gw = SocketAddr::from((tn.gw4(), hp));
    assert_eq!(tcp_echo(gw).unwrap(), "ping", "host → gateway {gw}");
    // Hairpin: the pod reaches itself through its own host port.
    assert_eq!(
        tcp_echo_from(&a_ns.path, gw).unwrap(),
        "ping",
        "pod → its own host port"
    );

    let mapped = tn.net().port_mappings().await.unwrap();
    assert_eq!(mapped.len(), 2, "{mapped:?}");
    assert!(mapped.iter().all(|(p, m)| p == &a && m.host_port == hp));

    // A second pod asking for the same host port fails and leaves nothing behind.
    let e = tn.setup(&b, &b_ns, &[tcp_map(80, hp)]).await.unwrap_err();
    match &e {
        NetError::PortConflict {
            host_port, holder, ..
        } => assert_eq!((*host_port, holder.as_str()), (hp, a.as_str())),
        e => panic!("expected a port conflict, got {e}"),
    }
    eprintln!("conflict: {e}");
    assert!(!veth_exists(&b));
    assert!(tn.net().pod_ips(&b).is_empty());
    let files: Vec<String> = std::fs::read_dir(&tn.cfg.ipam_dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(!files.contains(&b), "no address file for the refused pod");
    assert_eq!(tn.net().port_mappings().await.unwrap().len(), 2);
    // A bad mapping is refused before anything is made.
    let e = tn.setup(&b, &b_ns, &[tcp_map(0, 80)]).await.unwrap_err();
    assert!(
        matches!(
            e,
            NetError::InvalidPortMapping {
                index: 0,
                field: "container_port",
                ..
            }
        ),
        "{e}"
    );
    assert!(!veth_exists(&b));

    // Teardown removes the rules: the port is the host's again.
    tn.net().teardown(&a, Some(&a_ns.path)).await.unwrap();
    assert!(tn.net().port_mappings().await.unwrap().is_empty());
    assert!(!veth_exists(&a));
    assert!(!tn.ip_file(pa.ips[0]).exists());
    assert!(
        tcp_echo(lo).is_err(),
        "nothing answers on {lo} after teardown"
    );

    // Now the second pod may have the port.
    tn.setup(&b, &b_ns, &[tcp_map(8080, hp)]).await.unwrap();
    let _tcp_b = tcp_server_in(&b_ns.path, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(tcp_echo(lo).unwrap(), "ping");
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_frees_dead_pods_and_rebuilds_live_rules() {
    if !root() {
        return;
    }
    let mut tn = TestNet::new(false).await;
    let (a_ns, b_ns) = (tn.netns("a"), tn.netns("b"));
    let (a, b) = (new_id(), new_id());
    let hp = free_port();
    let a_ports = vec![tcp_map(8080, hp)];
    let pa = tn.setup(&a, &a_ns, &a_ports).await.unwrap();
    let pb = tn
        .setup(&b, &b_ns, &[tcp_map(8080, free_port())])
        .await
        .unwrap();

    // The daemon restarts; only pod a survived.
    tn.restart().await;
    tn.net()
        .reconcile(&[(a.clone(), a_ports.clone())])
        .await
        .unwrap();
    assert!(
        !tn.ip_file(pb.ips[0]).exists(),
        "the dead pod's address is free"
    );
    assert!(!veth_exists(&b), "and its veth gone");
    assert!(
        tn.ip_file(pa.ips[0]).exists(),
        "the live pod keeps its address"
    );
    assert!(veth_exists(&a));
    let mapped = tn.net().port_mappings().await.unwrap();
    assert_eq!(mapped.len(), 1, "{mapped:?}");
    assert_eq!(mapped[0].0, a);
    let _tcp = tcp_server_in(&a_ns.path, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(
        tcp_echo(SocketAddr::from((Ipv4Addr::LOCALHOST, hp))).unwrap(),
        "ping"
    );
    // The live pod's address is still its own after the restart.
    assert_eq!(tn.setup(&a, &a_ns, &a_ports).await.unwrap().ips, pa.ips);
    // The freed address goes to the next pod only after the round robin comes back to it.
    let c_ns = tn.netns("c");
    let c = new_id();
    let pc = tn.setup(&c, &c_ns, &[]).await.unwrap();
    assert_ne!(pc.ips, pa.ips);
}

#[tokio::test(flavor = "multi_thread")]
async fn setup_and_teardown_timing() {
    if !root() {
        return;
    }
    let tn = TestNet::new(false).await;
    const N: usize = 10;
    let nss: Vec<Netns> = (0..N).map(|i| tn.netns(&format!("t{i}"))).collect();
    let ids: Vec<String> = (0..N).map(|_| new_id()).collect();
    let mut setups = Vec::new();
    let mut with_ports = Vec::new();
    for (i, (id, ns)) in ids.iter().zip(&nss).enumerate() {
        let ports = if i % 2 == 1 {
            vec![tcp_map(80, free_port())]
        } else {
            vec![]
        };
        let t = Instant::now();
        tn.setup(id, ns, &ports).await.unwrap();
        let d = t.elapsed();
        if ports.is_empty() {
            setups.push(d);
        } else {
            with_ports.push(d);
        }
    }
    let mut teardowns = Vec::new();
    for id in &ids {
        let t = Instant::now();
        tn.net().teardown(id, None).await.unwrap();
        teardowns.push(t.elapsed());
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    eprintln!(
        "per-pod setup (bridge present): median {:?} without ports, {:?} with a host port; teardown median {:?}; all setups {:?}",
        median(&mut setups),
        median(&mut with_ports),
        median(&mut teardowns),
        setups.iter().chain(&with_ports).collect::<Vec<_>>()
    );
}

/// A veth pair of the test's own between the host and an "outside" namespace, deleted on drop.
struct Uplink {
    host: String,
}

impl Drop for Uplink {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.host])
            .status();
    }
}

fn ip_cmd(args: &[&str]) {
    let st = std::process::Command::new("ip")
        .args(args)
        .status()
        .unwrap();
    assert!(st.success(), "ip {args:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn egress_is_masqueraded_behind_the_host() {
    if !root() {
        return;
    }
    let tn = TestNet::new(false).await;
    let out_ns = tn.netns("outside");
    // The outside: a namespace behind a veth of the test's own, with forwarding turned on for
    // that veth only (replies come in through it), on a second free /24.
    let link_net = loop {
        let c = free_cidr();
        if c != tn.cfg.ipv4_cidr.unwrap() {
            break c;
        }
    };
    let base = u32::from(link_net.network());
    let (host_ip, out_ip) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
    let uplink = Uplink {
        host: format!("ppo{}", &new_id()[..8]),
    };
    // A process in the outside namespace, so `ip` can name it by PID.
    let mut holder = std::process::Command::new("nsenter")
        .arg(format!("--net={}", out_ns.path.display()))
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    // Until nsenter has joined (slow under emulation), `netns PID` would name the host's.
    let want = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&out_ns.path).unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(format!("/proc/{}/ns/net", holder.id()))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .ok()
        != Some(want)
    {
        assert!(
            Instant::now() < deadline,
            "nsenter never joined the outside namespace"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = holder.id().to_string();
    ip_cmd(&[
        "link",
        "add",
        &uplink.host,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &pid,
    ]);
    let _ = holder.kill();
    let _ = holder.wait();
    ip_cmd(&["addr", "add", &format!("{host_ip}/24"), "dev", &uplink.host]);
    ip_cmd(&["link", "set", &uplink.host, "up"]);
    std::fs::write(
        format!("/proc/sys/net/ipv4/conf/{}/forwarding", uplink.host),
        "1",
    )
    .unwrap();
    let out_path = out_ns.path.clone();
    in_ns(&out_path, move || {
        ip_cmd(&["link", "set", "lo", "up"]);
        ip_cmd(&["addr", "add", &format!("{out_ip}/24"), "dev", "eth0"]);
        ip_cmd(&["link", "set", "eth0", "up"]);
    });
    // A server outside that answers with the address it sees the client at.
    let l = in_ns(&out_path, move || {
        TcpListener::bind((out_ip, 7100)).unwrap()
    });
    l.set_nonblocking(true).unwrap();
    let _srv = Echo::run(move || match l.accept() {
        Ok((mut c, peer)) => {
            let _ = c.write_all(peer.ip().to_string().as_bytes());
            true
        }
        Err(_) => false,
    });

    let pod_ns = tn.netns("pod");
    let pod = new_id();
    let pn = tn.setup(&pod, &pod_ns, &[]).await.unwrap();
    let seen = in_ns(&pod_ns.path, move || {
        let mut c = TcpStream::connect_timeout(&SocketAddr::from((out_ip, 7100)), IO_TIMEOUT)?;
        c.set_read_timeout(Some(IO_TIMEOUT))?;
        let mut s = String::new();
        c.read_to_string(&mut s)?;
        Ok::<_, std::io::Error>(s)
    })
    .unwrap();
    assert_eq!(
        seen,
        host_ip.to_string(),
        "the outside sees the host, not the pod at {:?}",
        pn.ips
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_pod_cidr_applies_to_new_pods_only() {
    if !root() {
        return;
    }
    let tn = TestNet::new(false).await;
    let (a_ns, b_ns) = (tn.netns("a"), tn.netns("b"));
    let (a, b) = (new_id(), new_id());
    let pa = tn.setup(&a, &a_ns, &[]).await.unwrap();
    let next = loop {
        let c = free_cidr();
        if c != tn.cfg.ipv4_cidr.unwrap() {
            break c;
        }
    };
    tn.net().set_pod_cidr(&next.to_string()).unwrap();
    assert_eq!(tn.net().pod_cidrs().0, Some(next));
    let pb = tn.setup(&b, &b_ns, &[]).await.unwrap();
    let IpAddr::V4(b4) = pb.ips[0] else {
        panic!("{pb:?}")
    };
    assert!(next.contains(&b4), "{pb:?} in {next}");
    // The old pod keeps its address; the new one reaches its own gateway, now on the bridge.
    assert_eq!(tn.net().pod_ips(&a), pa.ips);
    let gw = peapod::net::gateway(IpNet::V4(next));
    let l = TcpListener::bind((gw, 0)).unwrap();
    let to = l.local_addr().unwrap();
    let _srv = Echo::tcp(l);
    assert_eq!(tcp_echo_from(&b_ns.path, to).unwrap(), "ping");
    assert!(tn.net().set_pod_cidr("not a cidr").is_err());
}
