//! The pod network through the daemon, as kubelet uses it: each pod gets an address on the
//! daemon's built-in bridge (reported in PodSandboxStatus), pods reach each other and the
//! host reaches them, hostPorts answer on 127.0.0.1, conflicts and bad mappings are refused
//! leaving nothing, a kill -9 of the daemon keeps every pod's address, and stopping a pod
//! releases it. Each test daemon has a bridge, a /24 and an nft table of its own
//! (`TestNet`); with PEAPOD_IT_NETWORK=none these tests say they are skipped.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

use peapod::api::*;
use peapod_integration::*;
use tonic::Code;

fn network_tests_run(d: &Daemon) -> bool {
    if d.net.mode != "builtin" {
        eprintln!(
            "SKIP: PEAPOD_IT_NETWORK={}: no pod network to test",
            d.net.mode
        );
        return false;
    }
    true
}

async fn pod_ip(rt: &mut Rt, pod: &str) -> IpAddr {
    let st = sandbox_status(rt, pod).await;
    let ip = st.network.unwrap_or_default().ip;
    ip.parse()
        .unwrap_or_else(|_| panic!("pod {pod} has no IP: {ip:?}"))
}

/// A pod serving `reply` on TCP 8080 (and with `host_port`, that port mapped onto it).
fn server_pod(
    name: &str,
    logs: &std::path::Path,
    host_port: i32,
) -> (PodSandboxConfig, ContainerConfig) {
    let mut cfg = pod_config(name, logs);
    if host_port > 0 {
        cfg.port_mappings = vec![PortMapping {
            protocol: Protocol::Tcp as i32,
            container_port: 8080,
            host_port,
            host_ip: String::new(),
        }];
    }
    let c = container_config(
        "srv",
        BUSYBOX,
        &[
            "sh",
            "-c",
            &format!("while true; do echo hello-from-{name} | nc -l -p 8080; done"),
        ],
    );
    (cfg, c)
}

/// Reads what a TCP server at `addr` sends, retrying until it answers.
fn fetch(addr: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut s) =
            TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
        {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(b"\n");
            let mut got = String::new();
            let _ = s.read_to_string(&mut got);
            if !got.is_empty() {
                return got;
            }
        }
        assert!(Instant::now() < deadline, "{addr} never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn exec(rt: &mut Rt, id: &str, script: &str) -> (i32, String) {
    let r = rt
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            timeout: 20,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    (r.exit_code, String::from_utf8_lossy(&r.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_get_addresses_reach_each_other_and_keep_them_across_a_restart() {
    if !require_root() {
        return;
    }
    let mut d = Daemon::start().await;
    if !network_tests_run(&d) {
        d.cleanup().await;
        return;
    }
    let logs = d.root.join("logs");
    let mut rt = d.rt().await;
    let cidr: ipnet::Ipv4Net = d.net.cidr.parse().unwrap();

    let (cfg_a, srv_a) = server_pod("net-a", &logs, 0);
    let cli = container_config("cli", BUSYBOX, &["sleep", "1000"]);
    let (pod_a, ids_a) = run_pod(&mut rt, cfg_a, vec![srv_a, cli]).await;
    let (cfg_b, srv_b) = server_pod("net-b", &logs, 0);
    let (pod_b, ids_b) = run_pod(&mut rt, cfg_b, vec![srv_b]).await;
    let ip_a = pod_ip(&mut rt, &pod_a).await;
    let ip_b = pod_ip(&mut rt, &pod_b).await;
    assert_ne!(ip_a, ip_b);
    for ip in [ip_a, ip_b] {
        let IpAddr::V4(v4) = ip else { panic!("{ip}") };
        assert!(cidr.contains(&v4), "{ip} outside {cidr}");
    }

    // Inside: eth0 has the address, the default route goes via the bridge.
    let (code, out) = exec(&mut rt, &ids_a[0], "ip -4 addr show eth0; ip route").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&ip_a.to_string()), "{out}");
    assert!(out.contains("default via"), "{out}");

    // Two containers of one pod talk over localhost.
    let (code, out) = exec(&mut rt, &ids_a[1], "echo | nc -w 5 127.0.0.1 8080").await;
    assert_eq!(
        (code, out.trim()),
        (0, "hello-from-net-a"),
        "over the pod's lo"
    );

    // Pod to pod, and host to pod.
    let (code, out) = exec(&mut rt, &ids_b[0], &format!("echo | nc -w 5 {ip_a} 8080")).await;
    assert_eq!((code, out.trim()), (0, "hello-from-net-a"), "pod b → pod a");
    assert_eq!(fetch(&format!("{ip_b}:8080")).trim(), "hello-from-net-b");

    // kill -9 of the daemon: the pods keep their addresses and stay reachable; a new pod
    // gets a new one.
    d.kill();
    d.spawn().await;
    let mut rt = d.rt().await;
    assert_eq!(pod_ip(&mut rt, &pod_a).await, ip_a);
    assert_eq!(fetch(&format!("{ip_a}:8080")).trim(), "hello-from-net-a");
    let (cfg_c, srv_c) = server_pod("net-c", &logs, 0);
    let (pod_c, _) = run_pod(&mut rt, cfg_c, vec![srv_c]).await;
    let ip_c = pod_ip(&mut rt, &pod_c).await;
    assert!(ip_c != ip_a && ip_c != ip_b, "{ip_c} reused");

    // kubelet's pod CIDR (UpdateRuntimeConfig) goes to new pods; old ones keep theirs.
    let o = cidr.addr().octets();
    let cidr2: ipnet::Ipv4Net = format!("10.{}.{}.0/24", o[1], 255 - o[2]).parse().unwrap();
    rt.update_runtime_config(UpdateRuntimeConfigRequest {
        runtime_config: Some(RuntimeConfig {
            network_config: Some(NetworkConfig {
                pod_cidr: cidr2.to_string(),
            }),
        }),
    })
    .await
    .expect("UpdateRuntimeConfig");
    let (cfg_d, srv_d) = server_pod("net-d", &logs, 0);
    let (pod_d, _) = run_pod(&mut rt, cfg_d, vec![srv_d]).await;
    let IpAddr::V4(ip_d) = pod_ip(&mut rt, &pod_d).await else {
        panic!("not v4")
    };
    assert!(cidr2.contains(&ip_d), "{ip_d} outside the new CIDR {cidr2}");
    assert_eq!(fetch(&format!("{ip_d}:8080")).trim(), "hello-from-net-d");
    assert_eq!(pod_ip(&mut rt, &pod_a).await, ip_a);

    // Stopping a pod disconnects it at once and releases its veth, then its address, in
    // the background: both are gone shortly after, the veth first.
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod_b.clone(),
    })
    .await
    .unwrap();
    let st = sandbox_status(&mut rt, &pod_b).await;
    assert_eq!(st.network.unwrap_or_default().ip, "");
    let veth = peapod::net::host_veth_name(&pod_b);
    let ip_file = d.root.join("net/ipam").join(ip_b.to_string());
    let veth_path = std::path::Path::new("/sys/class/net").join(&veth);
    let t0 = std::time::Instant::now();
    while (ip_file.exists() || veth_path.exists()) && t0.elapsed() < Duration::from_secs(5) {
        assert!(
            ip_file.exists() || !veth_path.exists(),
            "the address of {veth} was freed while the veth was still there"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(!veth_path.exists(), "{veth} outlived its pod by 5 s");
    assert!(
        !ip_file.exists(),
        "the stopped pod's address is still allocated after 5 s"
    );

    // Status says the network is ready.
    let s = rt
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let net = s
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "NetworkReady")
        .unwrap();
    assert!(net.status, "{net:?}");

    for pod in [&pod_a, &pod_b, &pod_c, &pod_d] {
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.to_string(),
        })
        .await
        .unwrap();
    }
    assert_eq!(d.leftovers(), Vec::<String>::new());
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn host_ports_answer_conflicts_and_bad_mappings_are_refused() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    if !network_tests_run(&d) {
        d.cleanup().await;
        return;
    }
    let logs = d.root.join("logs");
    let mut rt = d.rt().await;
    // A port from the test's own range, unlikely to be taken on the host.
    let port = 20000 + (std::process::id() % 20000) as i32;
    let (cfg, srv) = server_pod("hp-a", &logs, port);
    let (pod, _) = run_pod(&mut rt, cfg, vec![srv]).await;
    assert_eq!(
        fetch(&format!("127.0.0.1:{port}")).trim(),
        "hello-from-hp-a",
        "hostPort from the host through localhost"
    );

    // A second pod on the same host port fails, and leaves nothing of its own.
    let (cfg, _) = server_pod("hp-b", &logs, port);
    let e = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(cfg),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains(&port.to_string()), "{e:?}");
    let pods = rt
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(pods.len(), 1, "{pods:?}");

    // Bad mappings are INVALID_ARGUMENT naming the mapping, before anything is made.
    for (pm, field) in [
        (
            PortMapping {
                protocol: Protocol::Tcp as i32,
                container_port: 80,
                host_port: 70000,
                host_ip: String::new(),
            },
            "host_port",
        ),
        (
            PortMapping {
                protocol: 9,
                container_port: 80,
                host_port: 8080,
                host_ip: String::new(),
            },
            "protocol",
        ),
        (
            PortMapping {
                protocol: Protocol::Udp as i32,
                container_port: 80,
                host_port: 8080,
                host_ip: "300.1.2.3".into(),
            },
            "host_ip",
        ),
    ] {
        let mut cfg = pod_config("hp-bad", &logs);
        cfg.port_mappings = vec![pm];
        let e = rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(cfg),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(field), "{field}: {e:?}");
    }

    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    assert_eq!(d.leftovers(), Vec::<String>::new());
    assert!(
        TcpStream::connect_timeout(
            &format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_millis(500)
        )
        .is_err(),
        "the hostPort outlived its pod"
    );
    d.cleanup().await;
}

/// The CNI door of the same engine: Debian's reference plugins (bridge with host-local IPAM,
/// then loopback) from a config dir of the test's own. The pod's address comes from the
/// plugins and survives a kill -9 of the daemon; StopPodSandbox runs DEL from the cache.
#[tokio::test(flavor = "multi_thread")]
async fn cni_plugins_give_pods_their_network() {
    if !require_root() {
        return;
    }
    const PLUGINS: &str = "/usr/lib/cni";
    if let Some(p) = ["bridge", "host-local", "loopback"]
        .iter()
        .find(|p| !std::path::Path::new(PLUGINS).join(p).exists())
    {
        eprintln!("SKIP cni_plugins_give_pods_their_network: no {PLUGINS}/{p} (containernetworking-plugins)");
        return;
    }
    if std::env::var("PEAPOD_IT_NETWORK").is_ok_and(|m| m == "none") {
        eprintln!("SKIP cni_plugins_give_pods_their_network: PEAPOD_IT_NETWORK=none");
        return;
    }
    let net = TestNetForCni::new();
    let mut d = Daemon::start_with(&net.toml()).await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let cidr: ipnet::Ipv4Net = net.subnet.parse().unwrap();

    let (cfg, srv) = server_pod("cni-a", &logs, 0);
    let (pod, ids) = run_pod(&mut rt, cfg, vec![srv]).await;
    let ip = pod_ip(&mut rt, &pod).await;
    let IpAddr::V4(v4) = ip else { panic!("{ip}") };
    assert!(cidr.contains(&v4), "{ip} outside {cidr}");
    let (code, out) = exec(&mut rt, &ids[0], "ip -4 addr show eth0").await;
    assert!(code == 0 && out.contains(&ip.to_string()), "{out}");
    assert_eq!(fetch(&format!("{ip}:8080")).trim(), "hello-from-cni-a");
    let cache = d.root.join("cni").join(&pod);
    assert!(cache.exists(), "no CNI cache entry for the pod");

    d.kill();
    d.spawn().await;
    let mut rt = d.rt().await;
    assert_eq!(
        pod_ip(&mut rt, &pod).await,
        ip,
        "the address changed over a restart"
    );
    assert_eq!(fetch(&format!("{ip}:8080")).trim(), "hello-from-cni-a");

    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    assert!(!cache.exists(), "DEL left the cache entry");
    let held: Vec<_> = std::fs::read_dir(net.ipam_dir.join(&net.name))
        .map(|it| {
            it.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(held.is_empty(), "host-local still holds {held:?}");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    assert_eq!(d.leftovers(), Vec::<String>::new());
    d.cleanup().await;
    net.remove();
}

/// A CNI config dir of the test's own: a unique bridge and subnet, host-local state in a temp
/// dir; the bridge the plugin makes is removed at the end.
struct TestNetForCni {
    dir: std::path::PathBuf,
    ipam_dir: std::path::PathBuf,
    name: String,
    bridge: String,
    subnet: String,
}

impl TestNetForCni {
    fn new() -> TestNetForCni {
        let tag = &peapod::fsutil::new_id()[..8];
        let dir = std::env::temp_dir().join(format!("peapod-cni-{tag}"));
        let ipam_dir = dir.join("ipam");
        std::fs::create_dir_all(dir.join("net.d")).unwrap();
        let n = TestNetForCni {
            name: format!("pptcni-{tag}"),
            bridge: format!("ppc{tag}"),
            subnet: format!(
                "10.{}.{}.0/24",
                200 + std::process::id() % 50,
                200 + u8::from_str_radix(&tag[..2], 16).unwrap() % 50
            ),
            ipam_dir,
            dir,
        };
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": n.name,
            "plugins": [
                {"type": "bridge", "bridge": n.bridge, "isGateway": true, "ipMasq": false,
                 "ipam": {"type": "host-local", "dataDir": n.ipam_dir,
                          "ranges": [[{"subnet": n.subnet}]]}},
                {"type": "loopback"}
            ]
        });
        std::fs::write(
            n.dir.join("net.d/10-test.conflist"),
            serde_json::to_string_pretty(&conf).unwrap(),
        )
        .unwrap();
        n
    }

    fn toml(&self) -> String {
        format!(
            "[network]\nmode = \"cni\"\ncni_conf_dir = {:?}\ncni_bin_dirs = [\"/usr/lib/cni\"]\n",
            self.dir.join("net.d")
        )
    }

    fn remove(&self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for TestNetForCni {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.remove();
        }
    }
}
