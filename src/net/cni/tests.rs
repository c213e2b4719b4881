//! The client against fake plugins (shell scripts that record what they were given and print
//! what the test put beside them): environment, stdin, chaining, caching, errors, timeouts.

use super::*;
use crate::fsutil::TempDir;
use std::os::unix::fs::PermissionsExt;

/// A scratch setup: conf dir, bin dir of fake plugins, cache dir, log dir.
struct Fake {
    _tmp: TempDir,
    cfg: CniConfig,
    log: PathBuf,
}

/// A fake plugin: saves stdin and its CNI_* environment per command, appends
/// "NAME COMMAND" to `calls`, then prints `NAME.COMMAND.out` (exit 0), or
/// `NAME.COMMAND.fail` (exit 1), or hangs when `NAME.COMMAND.hang` exists. VERSION prints
/// `NAME.VERSION.out` or a 1.0.0 reply.
const PLUGIN: &str = r#"d=@LOG@
n=$(basename "$0")
cat > "$d/$n.$CNI_COMMAND.stdin"
env | grep '^CNI_' | sort > "$d/$n.$CNI_COMMAND.env"
echo "$n $CNI_COMMAND" >> "$d/calls"
if [ -f "$d/$n.$CNI_COMMAND.hang" ]; then sleep 300; fi
if [ -f "$d/$n.$CNI_COMMAND.fail" ]; then cat "$d/$n.$CNI_COMMAND.fail"; echo "$n says no" >&2; exit 1; fi
if [ -f "$d/$n.$CNI_COMMAND.out" ]; then cat "$d/$n.$CNI_COMMAND.out"; exit 0; fi
if [ "$CNI_COMMAND" = VERSION ]; then echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}'; fi
exit 0"#;

impl Fake {
    fn new(plugins: &[&str]) -> Fake {
        let tmp = TempDir::new("cni-fake");
        let cfg = CniConfig {
            conf_dir: tmp.0.join("net.d"),
            bin_dirs: vec![tmp.0.join("nobin"), tmp.0.join("bin")],
            cache_dir: tmp.0.join("cache"),
            if_name: "eth0".into(),
            exec_timeout: Duration::from_secs(20),
        };
        let log = tmp.0.join("log");
        for d in [&cfg.conf_dir, &cfg.bin_dirs[1], &log] {
            std::fs::create_dir_all(d).unwrap();
        }
        for p in plugins {
            let path = cfg.bin_dirs[1].join(p);
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\n{}\n",
                    PLUGIN.replace("@LOG@", &log.to_string_lossy())
                ),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Fake {
            _tmp: tmp,
            cfg,
            log,
        }
    }

    fn conf(&self, name: &str, text: &str) {
        std::fs::write(self.cfg.conf_dir.join(name), text).unwrap();
    }

    fn network(&self) -> CniNetwork {
        CniNetwork::load(&self.cfg).unwrap().expect("a config")
    }

    /// What `plugin` prints (`.out`) or fails with (`.fail`) for `command`.
    fn set(&self, plugin: &str, command: &str, kind: &str, text: &str) {
        std::fs::write(self.log.join(format!("{plugin}.{command}.{kind}")), text).unwrap();
    }

    fn unset(&self, plugin: &str, command: &str, kind: &str) {
        let _ = std::fs::remove_file(self.log.join(format!("{plugin}.{command}.{kind}")));
    }

    fn stdin(&self, plugin: &str, command: &str) -> Value {
        let p = self.log.join(format!("{plugin}.{command}.stdin"));
        serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"))).unwrap()
    }

    fn env(&self, plugin: &str, command: &str) -> Vec<String> {
        std::fs::read_to_string(self.log.join(format!("{plugin}.{command}.env")))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The calls so far ("plugin COMMAND"), then forgets them.
    fn calls(&self) -> Vec<String> {
        let p = self.log.join("calls");
        let c = std::fs::read_to_string(&p).unwrap_or_default();
        let _ = std::fs::remove_file(&p);
        c.lines().map(str::to_string).collect()
    }
}

fn pod(id: &str) -> PodArgs {
    PodArgs {
        id: id.into(),
        name: "web-0".into(),
        namespace: "shop".into(),
        uid: "0f8a-11".into(),
    }
}

/// A netns that exists: this process's own (the fake plugins never enter it).
const NETNS: &str = "/proc/self/ns/net";

fn result_json(ip: &str) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","interfaces":[{{"name":"eth0","sandbox":"{NETNS}"}}],
            "ips":[{{"address":"{ip}/24","gateway":"10.250.0.1","interface":0}}],
            "routes":[{{"dst":"0.0.0.0/0","gw":"10.250.0.1"}}],"dns":{{}}}}"#
    )
}

const LIST: &str = r#"{"cniVersion":"1.0.0","name":"fakenet","plugins":[
    {"type":"main","ipam":{"type":"ipam"}},
    {"type":"meta","capabilities":{"portMappings":true,"bandwidth":true}}]}"#;

fn caps() -> CapabilityArgs {
    CapabilityArgs {
        port_mappings: vec![PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
            host_ip: String::new(),
        }],
        bandwidth: Some(Bandwidth {
            ingress_rate: 1_000_000,
            ingress_burst: 2_000_000,
            egress_rate: 3_000_000,
            egress_burst: 4_000_000,
        }),
        ip_ranges: vec![vec![IpRange {
            subnet: "10.250.0.0/24".into(),
            ..Default::default()
        }]],
        extra: Map::new(),
    }
}

#[test]
fn cni_args_carry_the_pod() {
    assert_eq!(
        pod("abc123").cni_args().unwrap(),
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;\
         K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=0f8a-11"
    );
    let mut p = pod("abc");
    p.name = "a;b".into();
    assert!(matches!(p.cni_args(), Err(CniError::InvalidArgument(_))));
    let mut p = pod("abc");
    p.uid = "x=y".into();
    assert!(p.cni_args().is_err());
    assert!(pod("../etc").cni_args().is_err());
}

#[test]
fn runtime_config_only_for_declared_capabilities() {
    let v: Value = serde_json::from_str(
        r#"{"cniVersion":"1.0.0","name":"n","plugins":[
            {"type":"bridge","runtimeConfig":{"stale":1}},
            {"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}},
            {"type":"bandwidth","capabilities":{"bandwidth":true,"ipRanges":true,"mac":true,"dns":true}}]}"#,
    )
    .unwrap();
    let list = config::parse_list(&v, Path::new("x.conflist")).unwrap();
    let mut caps = caps();
    caps.extra.insert("mac".into(), "02:00:00:00:00:01".into());
    let conf = |i: usize| plugin_conf(&list, &list.plugins[i], None, Some(&caps), &[]);
    // Nothing declared: the plugin's own config untouched.
    assert_eq!(conf(0)["runtimeConfig"], serde_json::json!({"stale": 1}));
    assert_eq!(conf(0)["name"], "n");
    assert_eq!(conf(0)["cniVersion"], "1.0.0");
    assert!(conf(0).get("prevResult").is_none());
    assert_eq!(
        conf(1)["runtimeConfig"],
        serde_json::json!({"portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
    );
    assert_eq!(
        conf(2)["runtimeConfig"],
        serde_json::json!({
            "bandwidth": {"ingressRate": 1000000, "ingressBurst": 2000000,
                          "egressRate": 3000000, "egressBurst": 4000000},
            "ipRanges": [[{"subnet": "10.250.0.0/24"}]],
            "mac": "02:00:00:00:00:01"
        })
    );
    // Unset capability arguments are not passed; portMappings is, empty.
    let none = CapabilityArgs::default();
    let c = plugin_conf(&list, &list.plugins[2], None, Some(&none), &[]);
    assert!(c.get("runtimeConfig").is_none(), "{c}");
    let c = plugin_conf(&list, &list.plugins[1], None, Some(&none), &[]);
    assert_eq!(c["runtimeConfig"], serde_json::json!({"portMappings": []}));
    // hostIP and the protocols as portmap spells them.
    let pm = PortMapping {
        host_port: 53,
        container_port: 5353,
        protocol: Protocol::Udp,
        host_ip: "127.0.0.1".into(),
    };
    assert_eq!(
        to_json(&pm),
        serde_json::json!({"hostPort":53,"containerPort":5353,"protocol":"udp","hostIP":"127.0.0.1"})
    );
    assert_eq!(to_json(&Protocol::Sctp), "sctp");
}

#[tokio::test]
async fn add_chains_results_and_caches_the_last() {
    let f = Fake::new(&["main", "meta"]);
    f.conf("10-fake.conflist", LIST);
    let net = f.network();
    assert_eq!(net.name(), "fakenet");
    assert_eq!(net.plugin_types(), ["main", "meta"]);
    f.set("main", "ADD", "out", &result_json("10.250.0.7"));
    f.set("meta", "ADD", "out", &result_json("10.250.0.8"));
    let r = net
        .add(&pod("pod1"), Path::new(NETNS), &caps())
        .await
        .unwrap();
    assert_eq!(f.calls(), ["main ADD", "meta ADD"]);
    assert_eq!(r.ips, ["10.250.0.8".parse::<std::net::IpAddr>().unwrap()]);

    // The environment of an ADD.
    let env = f.env("main", "ADD");
    let path = format!(
        "CNI_PATH={}:{}",
        f.cfg.bin_dirs[0].display(),
        f.cfg.bin_dirs[1].display()
    );
    assert_eq!(
        env,
        [
            "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;\
             K8S_POD_INFRA_CONTAINER_ID=pod1;K8S_POD_UID=0f8a-11",
            "CNI_COMMAND=ADD",
            "CNI_CONTAINERID=pod1",
            "CNI_IFNAME=eth0",
            &format!("CNI_NETNS={NETNS}"),
            &path,
        ]
    );
    // The first plugin gets no prevResult; the second gets the first's result.
    let first = f.stdin("main", "ADD");
    assert!(first.get("prevResult").is_none());
    assert!(first.get("runtimeConfig").is_none());
    assert_eq!(first["ipam"]["type"], "ipam");
    assert_eq!(first["name"], "fakenet");
    let second = f.stdin("meta", "ADD");
    let want: Value = serde_json::from_str(&result_json("10.250.0.7")).unwrap();
    assert_eq!(second["prevResult"], want);
    assert_eq!(second["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);

    // The cache has the config and the final result.
    assert_eq!(CniNetwork::cached_pods(&f.cfg.cache_dir), ["pod1"]);
    let cached = CniNetwork::cached_result(&f.cfg.cache_dir, "pod1")
        .unwrap()
        .unwrap();
    assert_eq!(cached, r);
    let entry: Value =
        serde_json::from_slice(&std::fs::read(f.cfg.cache_dir.join("pod1/fakenet.json")).unwrap())
            .unwrap();
    assert_eq!(
        entry["config"],
        serde_json::from_str::<Value>(LIST).unwrap()
    );
    assert_eq!(entry["netns"], NETNS);
    assert_eq!(entry["pod"]["uid"], "0f8a-11");
}

#[tokio::test]
async fn del_runs_from_the_cache_in_reverse_after_the_config_is_gone() {
    let f = Fake::new(&["main", "meta"]);
    f.conf("10-fake.conflist", LIST);
    f.set("main", "ADD", "out", &result_json("10.250.0.7"));
    f.set("meta", "ADD", "out", &result_json("10.250.0.8"));
    f.network()
        .add(&pod("pod1"), Path::new(NETNS), &caps())
        .await
        .unwrap();
    f.calls();
    // Another network config now, and the old one gone: DEL still uses the cached one.
    std::fs::remove_file(f.cfg.conf_dir.join("10-fake.conflist")).unwrap();
    f.conf(
        "05-other.conflist",
        r#"{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"absent"}]}"#,
    );
    CniNetwork::del(&f.cfg, "pod1", Some(Path::new(NETNS)))
        .await
        .unwrap();
    assert_eq!(f.calls(), ["meta DEL", "main DEL"]);
    let final_result: Value = serde_json::from_str(&result_json("10.250.0.8")).unwrap();
    for p in ["main", "meta"] {
        let conf = f.stdin(p, "DEL");
        assert_eq!(conf["prevResult"], final_result, "{p}");
        assert_eq!(conf["name"], "fakenet");
    }
    // The same runtime arguments as ADD.
    assert_eq!(
        f.stdin("meta", "DEL")["runtimeConfig"],
        f.stdin("meta", "ADD")["runtimeConfig"]
    );
    assert!(f.env("main", "DEL").contains(&format!("CNI_NETNS={NETNS}")));
    assert!(CniNetwork::cached_pods(&f.cfg.cache_dir).is_empty());
    assert!(!f.cfg.cache_dir.join("pod1").exists());
    // Again: nothing cached, nothing run.
    CniNetwork::del(&f.cfg, "pod1", None).await.unwrap();
    CniNetwork::del(&f.cfg, "never-added", None).await.unwrap();
    assert!(f.calls().is_empty());
}

#[tokio::test]
async fn del_of_a_gone_netns_passes_it_empty() {
    let f = Fake::new(&["main", "meta"]);
    f.conf("10-fake.conflist", LIST);
    f.set("main", "ADD", "out", &result_json("10.250.0.7"));
    f.set("meta", "ADD", "out", &result_json("10.250.0.7"));
    f.network()
        .add(&pod("pod1"), Path::new(NETNS), &caps())
        .await
        .unwrap();
    let gone = f.cfg.conf_dir.join("no-such-netns");
    CniNetwork::del(&f.cfg, "pod1", Some(&gone)).await.unwrap();
    assert!(f.env("main", "DEL").contains(&"CNI_NETNS=".to_string()));
    // A plain file (an unmounted pin) is no netns either.
    f.network()
        .add(&pod("pod2"), Path::new(NETNS), &caps())
        .await
        .unwrap();
    let file = f.cfg.conf_dir.join("unmounted-pin");
    std::fs::write(&file, "").unwrap();
    assert!(!is_netns(&file));
    assert!(is_netns(Path::new(NETNS)));
    CniNetwork::del(&f.cfg, "pod2", Some(&file)).await.unwrap();
    assert!(f.env("meta", "DEL").contains(&"CNI_NETNS=".to_string()));
}

#[tokio::test]
async fn a_failed_add_names_the_plugin_and_is_undone() {
    let f = Fake::new(&["main", "meta"]);
    f.conf("10-fake.conflist", LIST);
    f.set("main", "ADD", "out", &result_json("10.250.0.7"));
    f.set(
        "meta",
        "ADD",
        "fail",
        r#"{"cniVersion":"1.0.0","code":11,"msg":"iptables is locked","details":"try later"}"#,
    );
    let e = f
        .network()
        .add(&pod("pod1"), Path::new(NETNS), &caps())
        .await
        .unwrap_err();
    assert_eq!(e.plugin(), Some("meta"));
    assert!(e.is_try_again());
    let CniError::Plugin {
        error,
        command,
        stderr,
        ..
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!((error.code, *command), (11, "ADD"));
    assert_eq!(error.details, "try later");
    assert_eq!(stderr, "meta says no");
    let shown = e.to_string();
    assert!(
        shown.contains("plugin meta ADD: iptables is locked"),
        "{shown}"
    );
    // Undone: DEL in reverse with what the first plugin made, and no cache entry left.
    assert_eq!(f.calls(), ["main ADD", "meta ADD", "meta DEL", "main DEL"]);
    assert_eq!(
        f.stdin("main", "DEL")["prevResult"],
        serde_json::from_str::<Value>(&result_json("10.250.0.7")).unwrap()
    );
    assert!(CniNetwork::cached_pods(&f.cfg.cache_dir).is_empty());
}

#[tokio::test]
async fn a_failed_undo_keeps_the_entry_for_del() {
    let f = Fake::new(&["main", "meta"]);
    f.conf("10-fake.conflist", LIST);
    f.set("main", "ADD", "fail", "not json at all");
    f.set("main", "DEL", "fail", r#"{"code":5,"msg":"disk on fire"}"#);
    let e = f
        .network()
        .add(&pod("pod1"), Path::new(NETNS), &caps())
        .await
        .unwrap_err();
    // No error object: the exit status and stderr.
    match &e {
        CniError::PluginFailed {
            plugin,
            status,
            output,
            ..
        } => {
            assert_eq!(plugin, "main");
            assert_eq!(status, "exit status 1");
            assert_eq!(output, "main says no");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(CniNetwork::cached_pods(&f.cfg.cache_dir), ["pod1"]);
    // No result was cached: DEL runs without prevResult.
    assert!(CniNetwork::cached_result(&f.cfg.cache_dir, "pod1")
        .unwrap()
        .is_none());
    f.calls();
    let e = CniNetwork::del(&f.cfg, "pod1", None).await.unwrap_err();
    assert_eq!(e.plugin_error().unwrap().code, 5);
    assert_eq!(CniNetwork::cached_pods(&f.cfg.cache_dir), ["pod1"]);
    f.unset("main", "DEL", "fail");
    CniNetwork::del(&f.cfg, "pod1", None).await.unwrap();
    assert!(f.stdin("main", "DEL").get("prevResult").is_none());
    assert!(CniNetwork::cached_pods(&f.cfg.cache_dir).is_empty());
}

#[tokio::test]
async fn bad_results_and_missing_plugins_are_errors() {
    let f = Fake::new(&["main", "meta"]);
    f.conf("10-fake.conflist", LIST);
    let net = f.network();
    // main prints nothing.
    let e = net
        .add(&pod("pod1"), Path::new(NETNS), &caps())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, CniError::BadOutput { plugin, msg, .. } if plugin == "main" && msg == "no result"),
        "{e:?}"
    );
    f.set(
        "main",
        "ADD",
        "out",
        r#"{"cniVersion":"1.0.0","ips":[{"address":"x"}]}"#,
    );
    let e = net
        .add(&pod("pod1"), Path::new(NETNS), &caps())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("ips[0].address"), "{e}");
    // A plugin no bin dir has.
    f.conf(
        "00-first.conflist",
        r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"absent"}]}"#,
    );
    let e = f
        .network()
        .add(&pod("pod1"), Path::new(NETNS), &caps())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, CniError::PluginNotFound { plugin, .. } if plugin == "absent"),
        "{e:?}"
    );
    // Not a netns.
    let e = net
        .add(&pod("pod1"), &f.cfg.conf_dir, &caps())
        .await
        .unwrap_err();
    assert!(matches!(e, CniError::InvalidArgument(_)), "{e:?}");
}

#[tokio::test]
async fn a_hanging_plugin_times_out() {
    let mut f = Fake::new(&["main", "meta"]);
    f.cfg.exec_timeout = Duration::from_millis(300);
    f.conf("10-fake.conflist", LIST);
    f.set("main", "ADD", "hang", "");
    let t0 = Instant::now();
    let e = f
        .network()
        .add(&pod("pod1"), Path::new(NETNS), &caps())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, CniError::Timeout { plugin, command: "ADD", .. } if plugin == "main"),
        "{e:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    // The undo ran (and did not hang).
    assert_eq!(f.calls(), ["main ADD", "meta DEL", "main DEL"]);
}

#[tokio::test]
async fn add_again_undoes_the_cached_attachment_first() {
    let f = Fake::new(&["main", "meta"]);
    f.conf("10-fake.conflist", LIST);
    f.set("main", "ADD", "out", &result_json("10.250.0.7"));
    f.set("meta", "ADD", "out", &result_json("10.250.0.7"));
    let net = f.network();
    net.add(&pod("pod1"), Path::new(NETNS), &caps())
        .await
        .unwrap();
    f.calls();
    net.add(&pod("pod1"), Path::new(NETNS), &caps())
        .await
        .unwrap();
    assert_eq!(f.calls(), ["meta DEL", "main DEL", "main ADD", "meta ADD"]);
}

#[tokio::test]
async fn check_runs_in_order_with_the_cached_result() {
    let f = Fake::new(&["main", "meta"]);
    f.conf("10-fake.conflist", LIST);
    f.set("main", "ADD", "out", &result_json("10.250.0.7"));
    f.set("meta", "ADD", "out", &result_json("10.250.0.8"));
    let net = f.network();
    let e = net.check("pod1", Path::new(NETNS)).await.unwrap_err();
    assert!(matches!(e, CniError::NotAttached { .. }), "{e:?}");
    net.add(&pod("pod1"), Path::new(NETNS), &caps())
        .await
        .unwrap();
    f.calls();
    net.check("pod1", Path::new(NETNS)).await.unwrap();
    assert_eq!(f.calls(), ["main CHECK", "meta CHECK"]);
    assert_eq!(
        f.stdin("main", "CHECK")["prevResult"],
        serde_json::from_str::<Value>(&result_json("10.250.0.8")).unwrap()
    );
    assert!(f
        .env("meta", "CHECK")
        .contains(&"CNI_COMMAND=CHECK".to_string()));
    f.set(
        "meta",
        "CHECK",
        "fail",
        r#"{"code":3,"msg":"no such container"}"#,
    );
    let e = net.check("pod1", Path::new(NETNS)).await.unwrap_err();
    assert_eq!(e.plugin(), Some("meta"));
}

#[tokio::test]
async fn check_needs_0_4_0_and_honours_disable_check() {
    let f = Fake::new(&["main"]);
    f.conf(
        "10-old.conf",
        r#"{"cniVersion":"0.3.1","name":"old","type":"main"}"#,
    );
    f.set(
        "main",
        "ADD",
        "out",
        r#"{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.250.0.9/24"}]}"#,
    );
    let net = f.network();
    let r = net
        .add(&pod("pod1"), Path::new(NETNS), &CapabilityArgs::default())
        .await
        .unwrap();
    assert_eq!(r.ips, ["10.250.0.9".parse::<std::net::IpAddr>().unwrap()]);
    let e = net.check("pod1", Path::new(NETNS)).await.unwrap_err();
    assert!(
        matches!(&e, CniError::NotSupported { command: "CHECK", version, .. } if version == "0.3.1"),
        "{e:?}"
    );
    // Before 0.4.0, DEL gets no prevResult.
    CniNetwork::del(&f.cfg, "pod1", None).await.unwrap();
    assert!(f.stdin("main", "DEL").get("prevResult").is_none());

    std::fs::remove_file(f.cfg.conf_dir.join("10-old.conf")).unwrap();
    f.conf(
        "10-nocheck.conflist",
        r#"{"cniVersion":"1.0.0","name":"nocheck","disableCheck":true,"plugins":[{"type":"main"}]}"#,
    );
    f.set("main", "ADD", "out", &result_json("10.250.0.7"));
    let net = f.network();
    net.add(&pod("pod1"), Path::new(NETNS), &CapabilityArgs::default())
        .await
        .unwrap();
    f.calls();
    net.check("pod1", Path::new(NETNS)).await.unwrap();
    assert!(f.calls().is_empty());
}

const LIST_1_1: &str = r#"{"cniVersion":"1.1.0","name":"newnet","plugins":[
    {"type":"main"},{"type":"meta"}]}"#;

#[tokio::test]
async fn status_and_gc_go_to_plugins_that_speak_1_1() {
    let f = Fake::new(&["main", "meta"]);
    f.conf("10-new.conflist", LIST_1_1);
    f.set(
        "main",
        "VERSION",
        "out",
        r#"{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}"#,
    );
    let net = f.network();
    net.status().await.unwrap();
    // meta's VERSION says 1.0.0 at most: no STATUS for it.
    assert_eq!(f.calls(), ["main VERSION", "main STATUS", "meta VERSION"]);
    assert_eq!(
        f.env("main", "STATUS"),
        [
            "CNI_COMMAND=STATUS",
            &format!(
                "CNI_PATH={}:{}",
                f.cfg.bin_dirs[0].display(),
                f.cfg.bin_dirs[1].display()
            )
        ]
    );
    assert_eq!(
        f.stdin("main", "VERSION"),
        serde_json::json!({"cniVersion": "1.1.0"})
    );
    assert_eq!(f.stdin("main", "STATUS")["name"], "newnet");
    f.set(
        "main",
        "STATUS",
        "fail",
        r#"{"code":50,"msg":"no IPs left"}"#,
    );
    let e = net.status().await.unwrap_err();
    assert_eq!(e.plugin_error().unwrap().code, 50);
    f.unset("main", "STATUS", "fail");

    // Two pods attached; GC with only one of them valid.
    let one = r#"{"cniVersion":"1.1.0","ips":[{"address":"10.250.0.3/24"}]}"#;
    f.set("main", "ADD", "out", one);
    f.set("meta", "ADD", "out", one);
    for p in ["keep", "stale"] {
        net.add(&pod(p), Path::new(NETNS), &CapabilityArgs::default())
            .await
            .unwrap();
    }
    f.calls();
    net.gc(&["keep".to_string()]).await.unwrap();
    assert_eq!(
        f.calls(),
        [
            "meta DEL",
            "main DEL",
            "main VERSION",
            "main GC",
            "meta VERSION"
        ]
    );
    assert_eq!(f.env("main", "DEL")[2], "CNI_CONTAINERID=stale");
    assert_eq!(
        f.stdin("main", "GC")["cni.dev/valid-attachments"],
        serde_json::json!([{"containerID": "keep", "ifname": "eth0"}])
    );
    assert_eq!(CniNetwork::cached_pods(&f.cfg.cache_dir), ["keep"]);
}

#[tokio::test]
async fn status_and_gc_skip_lists_before_1_1() {
    let f = Fake::new(&["main", "meta"]);
    f.conf("10-fake.conflist", LIST);
    f.set(
        "main",
        "VERSION",
        "out",
        r#"{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}"#,
    );
    let net = f.network();
    net.status().await.unwrap();
    net.gc(&[]).await.unwrap();
    assert!(f.calls().is_empty());
}

#[tokio::test]
async fn a_corrupt_cache_entry_does_not_block_del() {
    let f = Fake::new(&["main"]);
    std::fs::create_dir_all(f.cfg.cache_dir.join("pod1")).unwrap();
    std::fs::write(f.cfg.cache_dir.join("pod1/net.json"), b"{").unwrap();
    assert!(CniNetwork::cached_result(&f.cfg.cache_dir, "pod1").is_err());
    CniNetwork::del(&f.cfg, "pod1", None).await.unwrap();
    assert!(CniNetwork::cached_pods(&f.cfg.cache_dir).is_empty());
    assert!(f.calls().is_empty());
    assert!(matches!(
        CniNetwork::del(&f.cfg, "../x", None).await,
        Err(CniError::InvalidArgument(_))
    ));
}

#[test]
fn load_reports_no_config_and_errors() {
    let f = Fake::new(&[]);
    assert!(CniNetwork::load(&f.cfg).unwrap().is_none());
    f.conf("10-bad.conflist", "{");
    let e = CniNetwork::load(&f.cfg).unwrap_err();
    assert!(e.to_string().contains("10-bad.conflist"), "{e}");
}
