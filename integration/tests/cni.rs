//! The CNI client against Debian's reference plugins (containernetworking-plugins: bridge,
//! host-local, loopback, portmap in /usr/lib/cni), as root, on a netns this test makes.
//!
//! Everything the test touches is its own: a bridge with a random `cnitest…` name, a random
//! 10.2xx.y.0/24 that no host route or address overlaps, host-local's data in a temp dir, a
//! random free hostPort, and only the iptables rules and chains portmap made for this test's
//! pods (plus portmap's shared top-level chain when the test caused it and it ends up empty).
//! A guard removes all of it, also when the test panics. No traffic leaves the host: the one
//! connection goes to the bridge address this test assigned, DNATed into the test's netns.
//!
//! Skip messages and timings go straight to stderr (not through the test harness's capture),
//! so a skipped run says so in `make test` output.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use peapod::net::cni::{
    is_netns, CapabilityArgs, CniConfig, CniNetwork, PodArgs, PortMapping, Protocol,
};
use peapod_integration::{free_ipv4_subnet, ipv4_overlaps, sh};

const PLUGIN_DIR: &str = "/usr/lib/cni";
const PLUGINS: [&str; 4] = ["bridge", "host-local", "loopback", "portmap"];

/// Printed past the test harness's output capture.
fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

fn random_bytes() -> Vec<u8> {
    hex::decode(peapod::fsutil::new_id()).unwrap()
}

/// A network namespace pinned on a file: made by a thread that unshares its netns and
/// bind-mounts /proc/thread-self/ns/net onto the file. Unmounted and removed on drop.
struct Netns {
    path: PathBuf,
    pinned: bool,
}

impl Netns {
    fn new(path: PathBuf) -> Netns {
        std::fs::write(&path, b"").unwrap();
        let p = path.clone();
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("unshare(CLONE_NEWNET)");
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &p,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .expect("bind-mounting the netns");
        })
        .join()
        .unwrap();
        assert!(is_netns(&path));
        Netns { path, pinned: true }
    }

    /// Unpins it: the namespace goes once nothing else holds it.
    fn remove(&mut self) {
        if self.pinned {
            let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
            self.pinned = false;
        }
        let _ = std::fs::remove_file(&self.path);
    }

    /// Runs `args` in it.
    fn run(&self, args: &[&str]) -> (bool, String) {
        let net = format!("--net={}", self.path.display());
        let mut all = vec![net.as_str()];
        all.extend_from_slice(args);
        sh("nsenter", &all)
    }

    /// A TCP listener bound inside it (the socket stays in the netns it was made in).
    fn listen(&self, port: u16) -> TcpListener {
        let path = self.path.clone();
        std::thread::spawn(move || {
            let f = std::fs::File::open(&path).unwrap();
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            TcpListener::bind(("0.0.0.0", port)).unwrap()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The iptables nat rules and chains portmap made for this test, found by the test's pod IDs
/// in their comments.
fn nat_rules(chain: &str) -> Vec<String> {
    let (ok, out) = sh("iptables", &["-w", "-t", "nat", "-S", chain]);
    if !ok {
        return Vec::new();
    }
    out.lines().map(str::to_string).collect()
}

fn nat_chains() -> BTreeSet<String> {
    let (_, out) = sh("iptables", &["-w", "-t", "nat", "-S"]);
    out.lines()
        .filter_map(|l| l.strip_prefix("-N "))
        .map(str::to_string)
        .collect()
}

/// What the test made, removed on drop (test end or panic).
struct Guard {
    tmp: PathBuf,
    bridge: String,
    pod_ids: Vec<String>,
    /// portmap's shared chain existed before the test: it is not the test's to remove.
    dnat_chain_preexisted: bool,
}

const TOP_DNAT: &str = "CNI-HOSTPORT-DNAT";

impl Guard {
    fn cleanup_iptables(&self) {
        // Our rules in the shared chain, and the per-pod chains they jump to.
        for id in &self.pod_ids {
            loop {
                let (_, out) = sh(
                    "iptables",
                    &["-w", "-t", "nat", "-L", TOP_DNAT, "-n", "--line-numbers"],
                );
                let Some(line) = out.lines().find(|l| l.contains(id.as_str())) else {
                    break;
                };
                let mut cols = line.split_whitespace();
                let num = cols.next().unwrap().to_string();
                let target = cols.next().unwrap_or("").to_string();
                let (ok, _) = sh("iptables", &["-w", "-t", "nat", "-D", TOP_DNAT, &num]);
                if target.starts_with("CNI-DN-") {
                    sh("iptables", &["-w", "-t", "nat", "-F", &target]);
                    sh("iptables", &["-w", "-t", "nat", "-X", &target]);
                }
                if !ok {
                    break;
                }
            }
        }
        // The shared chain, when this test made it and nothing else uses it now.
        if !self.dnat_chain_preexisted
            && nat_chains().contains(TOP_DNAT)
            && nat_rules(TOP_DNAT).iter().all(|r| r.starts_with("-N "))
        {
            for entry in ["PREROUTING", "OUTPUT"] {
                sh(
                    "iptables",
                    &[
                        "-w",
                        "-t",
                        "nat",
                        "-D",
                        entry,
                        "-m",
                        "addrtype",
                        "--dst-type",
                        "LOCAL",
                        "-j",
                        TOP_DNAT,
                    ],
                );
            }
            sh("iptables", &["-w", "-t", "nat", "-X", TOP_DNAT]);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if Path::new("/sys/class/net").join(&self.bridge).exists() {
            sh("ip", &["link", "del", &self.bridge]);
        }
        self.cleanup_iptables();
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// True when `a/la` and `b/lb` overlap.
/// A 10.2xx.y.0/24 that overlaps nothing the host routes or has.
fn free_subnet() -> Ipv4Addr {
    free_ipv4_subnet(&[]).expect("no free 10.2xx.y.0/24 subnet")
}

/// A free TCP port for the hostPort.
fn free_port() -> u16 {
    for _ in 0..200 {
        let r = random_bytes();
        let port = 30000 + u16::from_be_bytes([r[0], r[1]]) % 2000;
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// Whether iptables can hold what portmap writes (nat table, addrtype, multiport, comment,
/// DNAT): tried in a chain of the test's own, removed right after.
fn iptables_works(probe: &str) -> bool {
    let ipt = |args: &[&str]| {
        let mut all = vec!["-w", "-t", "nat"];
        all.extend_from_slice(args);
        sh("iptables", &all).0
    };
    if !ipt(&["-N", probe]) {
        return false;
    }
    let ok = ipt(&[
        "-A",
        probe,
        "-m",
        "addrtype",
        "--dst-type",
        "LOCAL",
        "-p",
        "tcp",
        "-m",
        "comment",
        "--comment",
        "peapod cni test probe",
        "-m",
        "multiport",
        "--dports",
        "1",
        "-j",
        "DNAT",
        "--to-destination",
        "127.0.0.1:1",
    ]);
    ipt(&["-F", probe]);
    ipt(&["-X", probe]);
    ok
}

/// Whether veth pairs and bridges can be made: tried inside a netns of the test's own.
fn links_work(ns: &Netns) -> Result<(), String> {
    for args in [
        &[
            "ip", "link", "add", "probe0", "type", "veth", "peer", "name", "probe1",
        ][..],
        &["ip", "link", "add", "probebr", "type", "bridge"][..],
    ] {
        let (ok, out) = ns.run(args);
        if !ok {
            return Err(format!("{}: {}", args.join(" "), out.trim()));
        }
    }
    Ok(())
}

fn pod(id: &str, name: &str) -> PodArgs {
    PodArgs {
        id: id.into(),
        name: name.into(),
        namespace: "cnitest".into(),
        uid: peapod::fsutil::new_id()[..32].into(),
    }
}

/// host-local's allocation files: one per address it handed out.
fn allocated(data_dir: &Path, net: &str) -> Vec<String> {
    std::fs::read_dir(data_dir.join(net))
        .map(|it| {
            it.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<Ipv4Addr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

fn wait_gone(path: &Path, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while path.exists() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_add_check_del_from_the_cache() {
    if !nix::unistd::geteuid().is_root() {
        say("SKIP cni::bridge_add_check_del_from_the_cache: needs root");
        return;
    }
    let missing: Vec<_> = PLUGINS
        .iter()
        .filter(|p| !Path::new(PLUGIN_DIR).join(p).exists())
        .collect();
    if !missing.is_empty() {
        say(&format!(
            "SKIP cni::bridge_add_check_del_from_the_cache: CNI plugins {missing:?} missing from \
             {PLUGIN_DIR} (Debian's containernetworking-plugins; hack/deps.sh installs it)"
        ));
        return;
    }
    let tag = hex::encode(&random_bytes()[..3]);
    let tmp = std::env::temp_dir().join(format!("peapod-cni-it-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let bridge = format!("cnitest{tag}");
    let mut guard = Guard {
        tmp: tmp.clone(),
        bridge: bridge.clone(),
        pod_ids: Vec::new(),
        dnat_chain_preexisted: nat_chains().contains(TOP_DNAT),
    };
    {
        let probe = Netns::new(tmp.join("probe-ns"));
        if let Err(e) = links_work(&probe) {
            say(&format!(
                "SKIP cni::bridge_add_check_del_from_the_cache: this kernel cannot make veth \
                 pairs and bridges ({e})"
            ));
            return;
        }
    }
    let portmap = iptables_works(&format!("CNITEST-PROBE-{tag}"));
    if !portmap {
        say(
            "cni::bridge_add_check_del_from_the_cache: iptables has no usable nat table here: \
             the portmap plugin and the hostPort check are SKIPPED",
        );
    }

    let subnet = free_subnet();
    let [a, b, c, _] = subnet.octets();
    let bridge_ip = Ipv4Addr::new(a, b, c, 1);
    let host_port = free_port();
    let net_name = format!("cnitest-{tag}");
    let data_dir = tmp.join("ipam");
    let conf_dir = tmp.join("net.d");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let mut plugins = vec![
        serde_json::json!({
            "type": "bridge", "bridge": bridge, "isGateway": false, "ipMasq": false,
            "ipam": {"type": "host-local", "dataDir": data_dir,
                     "ranges": [[{"subnet": format!("{subnet}/24")}]]}
        }),
        // Passes the bridge's result on (prevResult chaining through a third plugin).
        serde_json::json!({"type": "loopback"}),
    ];
    if portmap {
        // No SNAT: no masquerade chains and no route_localnet on a host interface.
        plugins.push(serde_json::json!({
            "type": "portmap", "capabilities": {"portMappings": true}, "snat": false
        }));
    }
    let conflist = serde_json::json!({"cniVersion": "1.0.0", "name": net_name, "plugins": plugins});
    let conf_text = serde_json::to_string_pretty(&conflist).unwrap();
    std::fs::write(conf_dir.join("10-cnitest.conflist"), &conf_text).unwrap();
    let cfg = CniConfig {
        conf_dir: conf_dir.clone(),
        bin_dirs: vec![tmp.join("no-such-bin"), PathBuf::from(PLUGIN_DIR)],
        cache_dir: tmp.join("cache"),
        ..CniConfig::default()
    };
    let net = CniNetwork::load(&cfg).unwrap().expect("the test's config");
    assert_eq!(net.name(), net_name);

    // --- ADD ---
    let pod1 = pod(&peapod::fsutil::new_id(), "web");
    guard.pod_ids.push(pod1.id.clone());
    let mut ns1 = Netns::new(tmp.join("ns1"));
    let caps = CapabilityArgs {
        port_mappings: vec![PortMapping {
            host_port,
            container_port: 8080,
            protocol: Protocol::Tcp,
            host_ip: String::new(),
        }],
        ..Default::default()
    };
    let t0 = Instant::now();
    let result = net.add(&pod1, &ns1.path, &caps).await.expect("CNI ADD");
    let add_time = t0.elapsed();
    say(&format!(
        "cni: ADD through {:?} took {add_time:?}",
        net.plugin_types()
    ));
    assert_eq!(result.ips.len(), 1, "{result:?}");
    let std::net::IpAddr::V4(pod_ip) = result.ips[0] else {
        panic!("{result:?}")
    };
    assert!(
        ipv4_overlaps(pod_ip, 32, subnet, 24) && pod_ip != subnet,
        "{pod_ip} not in {subnet}/24"
    );
    let eth0 = result
        .interfaces
        .iter()
        .find(|i| i.name == "eth0")
        .expect("eth0 in the result");
    assert_eq!(Path::new(&eth0.sandbox), ns1.path);
    let veth = result
        .interfaces
        .iter()
        .find(|i| i.sandbox.is_empty() && i.name != bridge)
        .expect("the host veth in the result")
        .name
        .clone();
    assert!(Path::new("/sys/class/net").join(&veth).exists());
    let (ok, out) = ns1.run(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(ok && out.contains(&format!("{pod_ip}/24")), "{out}");
    // loopback brought lo up.
    let (ok, out) = ns1.run(&["ip", "-o", "link", "show", "dev", "lo"]);
    assert!(ok && out.contains("UP"), "{out}");
    assert_eq!(allocated(&data_dir, &net_name), [pod_ip.to_string()]);

    // The cached attachment.
    assert_eq!(
        CniNetwork::cached_pods(&cfg.cache_dir),
        std::slice::from_ref(&pod1.id)
    );
    let cached = CniNetwork::cached_result(&cfg.cache_dir, &pod1.id)
        .unwrap()
        .expect("a cached result");
    assert_eq!(cached, result);
    let entry: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            cfg.cache_dir
                .join(&pod1.id)
                .join(format!("{net_name}.json")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(entry["config"], conflist);

    // CHECK passes (plugins in ADD order). portmap 1.1.1 (Debian 12) fails its CHECK of a pod
    // without IPv6 when ip6tables works (it looks for the IPv6 chain it never made; fixed
    // upstream after 1.1.1 by "Only check ipv6 when an IPv6 is configured"): that failure
    // still shows that bridge and loopback passed theirs.
    match net.check(&pod1.id, &ns1.path).await {
        Ok(()) => {}
        Err(e) if e.plugin() == Some("portmap") && e.to_string().contains("ipv6 dnat") => {
            say(&format!(
                "cni: portmap's known IPv4-only CHECK bug, ignored: {e}"
            ));
        }
        Err(e) => panic!("CNI CHECK: {e}"),
    }
    // STATUS has nothing to ask plugins of a 1.0.0 list.
    net.status().await.expect("CNI STATUS");

    if portmap {
        let rules = nat_rules(TOP_DNAT).join("\n");
        assert!(rules.contains(&format!("--dports {host_port}")), "{rules}");
        // The hostPort, reached at the bridge address the test assigns, lands in the pod.
        let (ok, out) = sh(
            "ip",
            &["addr", "add", &format!("{bridge_ip}/24"), "dev", &bridge],
        );
        assert!(ok, "{out}");
        let listener = ns1.listen(8080);
        listener.set_nonblocking(true).unwrap();
        let server = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.write_all(b"from the pod").unwrap();
                        return;
                    }
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(e) => panic!("no connection reached the pod: {e}"),
                }
            }
        });
        let mut conn = TcpStream::connect_timeout(
            &SocketAddr::from((bridge_ip, host_port)),
            Duration::from_secs(5),
        )
        .expect("connecting to the hostPort");
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        assert_eq!(got, "from the pod");
        server.join().unwrap();
    }

    // CHECK sees an attachment broken behind its back: bridge finds eth0's address gone.
    let (ok, out) = ns1.run(&["ip", "addr", "flush", "dev", "eth0"]);
    assert!(ok, "{out}");
    let e = net.check(&pod1.id, &ns1.path).await.unwrap_err();
    assert_eq!(e.plugin(), Some("bridge"), "{e}");

    // --- DEL with the config gone: from the cache ---
    std::fs::remove_dir_all(&conf_dir).unwrap();
    assert!(CniNetwork::load(&cfg).unwrap().is_none());
    let t0 = Instant::now();
    CniNetwork::del(&cfg, &pod1.id, Some(&ns1.path))
        .await
        .expect("CNI DEL");
    let del_time = t0.elapsed();
    say(&format!("cni: DEL took {del_time:?}"));
    let (_, out) = ns1.run(&["ip", "-o", "link", "show"]);
    assert!(!out.contains("eth0"), "eth0 left in the netns: {out}");
    assert!(
        wait_gone(
            &Path::new("/sys/class/net").join(&veth),
            Duration::from_secs(5)
        ),
        "host veth {veth} left"
    );
    assert!(allocated(&data_dir, &net_name).is_empty());
    assert!(CniNetwork::cached_pods(&cfg.cache_dir).is_empty());
    if portmap {
        let rules = nat_rules(TOP_DNAT).join("\n");
        assert!(!rules.contains(&format!("--dports {host_port}")), "{rules}");
        assert!(!rules.contains(&pod1.id), "{rules}");
    }
    // DEL twice: nothing cached, nothing to do.
    CniNetwork::del(&cfg, &pod1.id, Some(&ns1.path))
        .await
        .expect("second CNI DEL");
    ns1.remove();

    // --- DEL of a pod whose netns is already gone ---
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::write(conf_dir.join("10-cnitest.conflist"), &conf_text).unwrap();
    let net = CniNetwork::load(&cfg).unwrap().expect("the test's config");
    let pod2 = pod(&peapod::fsutil::new_id(), "db");
    guard.pod_ids.push(pod2.id.clone());
    let mut ns2 = Netns::new(tmp.join("ns2"));
    let result2 = net.add(&pod2, &ns2.path, &caps).await.expect("CNI ADD 2");
    let veth2 = result2
        .interfaces
        .iter()
        .find(|i| i.sandbox.is_empty() && i.name != bridge)
        .unwrap()
        .name
        .clone();
    assert_eq!(allocated(&data_dir, &net_name).len(), 1);
    ns2.remove();
    assert!(!ns2.path.exists());
    // The cached netns path (None) is gone: DEL passes an empty CNI_NETNS.
    let t0 = Instant::now();
    CniNetwork::del(&cfg, &pod2.id, None)
        .await
        .expect("CNI DEL without the netns");
    say(&format!(
        "cni: DEL with the netns gone took {:?}",
        t0.elapsed()
    ));
    assert!(
        allocated(&data_dir, &net_name).is_empty(),
        "the IP was not released"
    );
    assert!(CniNetwork::cached_pods(&cfg.cache_dir).is_empty());
    // The veth died with its netns (the kernel tears a netns down asynchronously).
    assert!(
        wait_gone(
            &Path::new("/sys/class/net").join(&veth2),
            Duration::from_secs(10)
        ),
        "host veth {veth2} left"
    );
    if portmap {
        assert!(!nat_rules(TOP_DNAT).join("\n").contains(&pod2.id));
    }
    CniNetwork::del(&cfg, &pod2.id, None)
        .await
        .expect("DEL again");
    drop(guard);
    assert!(!Path::new("/sys/class/net").join(&bridge).exists());
    assert!(!tmp.exists());
}
