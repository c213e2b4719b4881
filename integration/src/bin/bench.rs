//! `make bench`: pod start latency (RunPodSandbox + CreateContainer + StartContainer) next to the
//! bare OCI runtime doing create + start of an equivalent bundle, the daemon's RSS idle and with
//! 20 pods, the monitor's RSS and PSS, and List* latency with 100 pods. A benchmark, not a test:
//! it prints figures and asserts nothing about them (only that what it times worked).
//!
//! Then 250 running pods (`../bench/scale.rs`): pod start, the bare runtime at that count, the
//! daemon's RSS, the per-pod helpers' PSS, List latency and the host's mount table, peapod's and
//! then containerd's, each with only its own pods on the host.
//!
//! Then exec, on one busybox `sleep 3000` container per runtime: ExecSync `true` (median, p90)
//! beside a bare `runc exec --process FILE` in a container the bare runtime keeps running; CRI
//! Exec of `echo hi` to its first stdout byte over SPDY/3.1 (remote-command v4, a client on
//! peapod's own SPDY framing); 100 ExecSync calls at once; the latency of CONTAINER_STOPPED_EVENT
//! on GetContainerEvents after a container's process is SIGKILLed; and the daemon's RSS before
//! and after 10,000 ExecSync calls (PEAPOD_BENCH_EXEC_N sets the count; peapod only).
//!
//! Beside peapod, in the same run and on the same pod and container configs, Debian's containerd
//! (1.6 on Debian 12) with its CRI plugin, runc via io.containerd.runc.v2 and cgroupfs: a private
//! containerd started by this program on a config, socket and directories in a temp dir, the
//! fixture images imported into its `k8s.io` namespace with `ctr`, killed by PID at the end. The
//! one difference in the pod config: containerd's pods name a private `linux.cgroup_parent` (as
//! kubelet would), where peapod's daemon config gives peapod one. Each containerd pod has its own
//! network namespace with only `lo` up, as a peapod pod does (see `cni_conflist`).
//! Start latency is measured alternately (one peapod pod, one containerd pod) so both see the
//! same background load, and so are the exec figures (with the bare runtime's exec in turn); a
//! containerd part that fails (1.6 has no GetContainerEvents) prints why and the rest goes on.
//! What containerd made (pods, shims, mounts under its temp dir, the pod cgroups under its
//! private parent, CNI cache entries) is removed at the end, also when the program panics (a
//! panic hook: release builds abort on panic, so Drop alone would not run).
//! Without containerd (and when hack/bench-containerd.sh cannot install it) only peapod's figures
//! are printed, with a line saying why.
//!
//! Last, the pod network: per-pod setup and teardown (median, p90) of the built-in network
//! (`peapod::net::BuiltinNetwork` on a bridge, /24 and nft table of the bench's own) beside
//! Debian's CNI chain bridge + host-local + loopback + portmap (snat off) driven by peapod's CNI
//! client on a bridge of its own, one pod of each in turn on a fresh netns; and pod start on the
//! bench's daemon (the harness gives it a built-in network) beside a second daemon with
//! `mode = "none"`, alternately. The bridges, nft table, netns pins, host-local data and the
//! portmap iptables chains this run made are removed at the end, also from the panic hook.
//!
//! Image pull (`../bench/pull.rs`): PullImage of a one-layer (105 MB gzip) and a 4-layer
//! (84 MB gzip, 168 MB unpacked) image from a registry on loopback, peapod then containerd, each
//! into a store without the image, beside `tar -xzf` of the same layer files in turn, and each
//! daemon's peak RSS during the pulls.
//!
//! Then static pods (`../bench/static_pods.rs`): manifest file → Running and → Ready beside
//! Debian's podman `kube play` of the same manifest, and the daemon's CPU and RSS with 100
//! static pods probed over HTTP every second.
//!
//! `PEAPOD_BENCH_ONLY=part,...` runs only the parts named (`start`, `scale`, `exec`, `pull`,
//! `net`, `static`; `../bench/parts.rs` says what each holds), e.g. `PEAPOD_BENCH_ONLY=pull,scale`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use peapod::api::runtime_service_client::RuntimeServiceClient;
use peapod::api::*;
use peapod::streaming::spdy::{Decoder, Encoder, Frame, Headers};
use peapod_integration::*;

#[path = "../bench/parts.rs"]
mod parts;
#[path = "../bench/pull.rs"]
mod pull;
#[path = "../bench/scale.rs"]
mod scale;
#[path = "../bench/static_pods.rs"]
mod static_pods;

const ITER: usize = 20;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// (RSS, PSS) of a process in KiB.
fn mem_kib(pid: i32) -> (u64, u64) {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        rollup
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

fn mib(kib: u64) -> String {
    format!("{:.2} MiB", kib as f64 / 1024.0)
}

/// Mean (RSS, PSS) in KiB over processes.
fn mean_mem(pids: &[i32]) -> (u64, u64) {
    let m: Vec<_> = pids.iter().map(|&p| mem_kib(p)).collect();
    let n = m.len().max(1) as u64;
    (
        m.iter().map(|m| m.0).sum::<u64>() / n,
        m.iter().map(|m| m.1).sum::<u64>() / n,
    )
}

/// The pod of every start-latency and memory measurement, for either runtime: busybox `sleep
/// 3000` in a pod of its own. `cgroup_parent` is empty for peapod (its daemon config gives the
/// private parent) and containerd's private parent for containerd.
async fn start_pod(rt: &mut Rt, logs: &Path, cgroup_parent: &str, i: usize) -> (String, String) {
    let mut cfg = pod_config(&format!("bench-{i}"), logs);
    cfg.linux.as_mut().unwrap().cgroup_parent = cgroup_parent.into();
    let c = container_config("c", BUSYBOX, &["sleep", "3000"]);
    let (pod, ids) = run_pod(rt, cfg, vec![c]).await;
    (pod, ids[0].clone())
}

async fn remove_pod(rt: &mut Rt, pod: String) {
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
}

/// One timed pod start (untimed stop and remove).
async fn timed_pod(rt: &mut Rt, logs: &Path, cgroup_parent: &str, i: usize) -> Duration {
    let t = Instant::now();
    let (pod, _) = start_pod(rt, logs, cgroup_parent, i).await;
    let took = t.elapsed();
    remove_pod(rt, pod).await;
    took
}

/// ListPodSandbox + ListContainers, 200 times, with `n` pods running.
async fn list_latency(rt: &mut Rt, n: usize) -> Duration {
    let mut lists = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let a = rt
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .unwrap();
        let b = rt
            .list_containers(ListContainersRequest::default())
            .await
            .unwrap();
        lists.push(t.elapsed());
        assert_eq!(a.into_inner().items.len(), n);
        assert_eq!(b.into_inner().containers.len(), n);
    }
    median(lists)
}

/// The bare OCI runtime: runc on a busybox bundle with fresh namespaces, like a pod's
/// container, with a state root, bundle and cgroup of this run's. Besides timing create +
/// start, it keeps one container ([`BARE_EXEC_ID`]) running to time `runc exec` in.
struct Bare {
    runc: PathBuf,
    bundle: PathBuf,
    root: PathBuf,
    /// The process spec of an exec of `true` (the bundle's own process with other arguments,
    /// as peapod writes one for each exec), and where it and the PID file go.
    exec_process: Vec<u8>,
    process_file: PathBuf,
    pid_file: PathBuf,
}

/// The bare container kept running for `runc exec`.
const BARE_EXEC_ID: &str = "bare-exec";

/// What undoing the bare runtime needs (runc, its state root, the cgroup under every
/// hierarchy's root), for the panic hook too: registered by `Bare::new`, taken once.
static BARE: Mutex<Option<(PathBuf, PathBuf, String)>> = Mutex::new(None);

impl Bare {
    fn new(layer: &Path, work: &Path) -> Bare {
        let runc = peapod::config::find_in_path("runc").expect("runc");
        let bundle = work.join("bundle");
        let root = work.join("runc-root");
        std::fs::create_dir_all(&bundle).unwrap();
        let st = Command::new(&runc)
            .args(["spec", "--bundle"])
            .arg(&bundle)
            .status()
            .unwrap();
        assert!(st.success());
        let mut spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        spec["root"]["path"] = layer.to_string_lossy().into();
        spec["root"]["readonly"] = true.into();
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = serde_json::json!(["sleep", "3000"]);
        // Named per run: another engineer's bench may be running beside this one.
        let cgroup = format!("peapod-bench-bare-{}", std::process::id());
        spec["linux"]["cgroupsPath"] = format!("/{cgroup}/c").into();
        std::fs::write(
            bundle.join("config.json"),
            serde_json::to_vec(&spec).unwrap(),
        )
        .unwrap();
        *BARE.lock().unwrap() = Some((runc.clone(), root.clone(), cgroup));
        let mut process = spec["process"].clone();
        process["args"] = serde_json::json!(["true"]);
        Bare {
            runc,
            root,
            exec_process: serde_json::to_vec(&process).unwrap(),
            process_file: work.join("exec-process.json"),
            pid_file: work.join("exec.pid"),
            bundle,
        }
    }

    fn run(&self, args: &[&str]) {
        let st = Command::new(&self.runc)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .unwrap();
        assert!(st.success(), "runc {args:?}");
    }

    /// runc create + start, `ITER` times after 2 warm-ups (each container deleted after).
    fn start_latency(&self) -> Vec<Duration> {
        let bundle = self.bundle.to_str().unwrap();
        let mut out = Vec::new();
        for i in 0..ITER + 2 {
            let id = format!("bare{i}");
            let t = Instant::now();
            self.run(&["create", "--bundle", bundle, &id]);
            self.run(&["start", &id]);
            let took = t.elapsed();
            self.run(&["delete", "--force", &id]);
            if i >= 2 {
                out.push(took);
            }
        }
        out
    }

    /// Creates and starts [`BARE_EXEC_ID`], left running until teardown.
    fn start_kept(&self) {
        self.run(&[
            "create",
            "--bundle",
            self.bundle.to_str().unwrap(),
            BARE_EXEC_ID,
        ]);
        self.run(&["start", BARE_EXEC_ID]);
    }

    /// One timed `runc exec --process FILE --pid-file FILE bare-exec` of `true`, as peapod's
    /// ExecSync runs it: the process file written first, stdout and stderr piped and read.
    async fn exec_true(&self) -> Result<Duration, String> {
        let t = Instant::now();
        std::fs::write(&self.process_file, &self.exec_process).map_err(|e| e.to_string())?;
        let out = tokio::process::Command::new(&self.runc)
            .arg("--root")
            .arg(&self.root)
            .arg("exec")
            .arg("--process")
            .arg(&self.process_file)
            .arg("--pid-file")
            .arg(&self.pid_file)
            .arg(BARE_EXEC_ID)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| format!("runc exec: {e}"))?;
        let took = t.elapsed();
        if !out.status.success() {
            return Err(format!(
                "runc exec: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(took)
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        teardown_bare();
    }
}

/// Deletes the kept bare container and removes the bare runtime's cgroups, once.
fn teardown_bare() {
    let Some((runc, root, cgroup)) = BARE.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    let _ = Command::new(&runc)
        .arg("--root")
        .arg(&root)
        .args(["delete", "--force", BARE_EXEC_ID])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    for m in cgroup_mounts() {
        let _ = std::fs::remove_dir(m.join(&cgroup).join("c"));
        let _ = std::fs::remove_dir(m.join(&cgroup));
    }
}

// ---- containerd ----

/// Everything needed to undo what the private containerd made, without the `Ctrd` value (the
/// panic hook has none): registered at start, taken (once) by whoever tears down first.
struct CtrdTeardown {
    dir: PathBuf,
    sock: PathBuf,
    cgroup_parent: String,
    pid: Option<i32>,
    /// Host directories that containerd 1.6 writes outside its configured root and state even so
    /// (shim sockets in /run/containerd/s, libcni's result cache in /var/lib/cni), with whether
    /// each existed before: those that did not are removed again when empty.
    host_dirs: Vec<(PathBuf, bool)>,
    /// The CNI chain's bridge, once the network part has made it.
    bridge: Option<String>,
}

static CTRD: Mutex<Option<CtrdTeardown>> = Mutex::new(None);

/// A private containerd, on a config, socket and directories in a temp dir.
struct Ctrd {
    dir: PathBuf,
    sock: PathBuf,
    log: PathBuf,
    cgroup_parent: String,
    child: Option<Child>,
    version: String,
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        peapod::fsutil::new_id().split_at(8).0
    )
}

/// containerd's config: CRI with the fixture pause image as sandbox image, overlayfs, runc via
/// io.containerd.runc.v2 on cgroupfs, a loopback-only CNI network, registry hosts configured in
/// `dir/certs.d` (where the pull part says the bench's registry is plain HTTP), and every path
/// containerd lets one configure (root, state, sockets, runc's state root, netns pins, the opt
/// plugin) in `dir`. Snapshotters that would probe the host (aufs's modprobe, btrfs, zfs,
/// devmapper) are disabled, and so is AppArmor (no profile is loaded into the host's kernel).
fn ctrd_config(dir: &Path, sock: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "peapod.test/pause:latest"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d}/runc"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{d}/certs.d"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/net.d"
    max_conf_num = 1
"#,
        sock = sock.display()
    )
}

/// The CNI network: loopback only, so no bridge, veth, route or iptables rule is made on the
/// host. containerd 1.6 refuses a plain loopback-only conflist ("failed to find network info for
/// sandbox": after CNI ADD it wants IPs on `eth0`, and the loopback plugin reports `lo`). The
/// least invasive way round: the plugin's config carries a static `prevResult` naming the pod's
/// own loopback address without an interface, which the loopback plugin passes through as its
/// result (it brings `lo` up either way) and go-cni files under `eth0`. Nothing else runs, and
/// the pod's netns holds only `lo`, as a peapod pod's does; containerd reports 127.0.0.1 as the
/// pod IP.
///
/// The network is named after the temp dir, so libcni's cache entries for it
/// (/var/lib/cni/results/NAME-ID-eth0) are known to be this run's.
fn cni_conflist(name: &str) -> String {
    format!(
        r#"{{
  "cniVersion": "1.0.0",
  "name": "{name}",
  "plugins": [
    {{
      "type": "loopback",
      "prevResult": {{ "cniVersion": "1.0.0", "ips": [ {{ "address": "127.0.0.1/8" }} ] }}
    }}
  ]
}}
"#
    )
}

impl Ctrd {
    /// Installs containerd if needed (hack/bench-containerd.sh), starts it, imports the fixture
    /// images, restarts it (so its idle RSS is that of a fresh daemon holding the images, as
    /// peapod's is) and waits for CRI to report ready. Err: why containerd is left out.
    async fn start() -> Result<Ctrd, String> {
        let have = || {
            ["containerd", "ctr", "containerd-shim-runc-v2"]
                .iter()
                .all(|b| peapod::config::find_in_path(b).is_some())
                && Path::new("/usr/lib/cni/loopback").exists()
        };
        if !have() {
            let st = Command::new("bash")
                .arg(workspace().join("hack/bench-containerd.sh"))
                .stdin(Stdio::null())
                .status();
            if !have() {
                return Err(format!(
                    "containerd not installed and hack/bench-containerd.sh could not install it \
                     ({st:?})"
                ));
            }
        }
        let dir = std::env::temp_dir().join(unique("peapod-bench-ctrd"));
        let sock = dir.join("containerd.sock");
        let host_dirs = ["/run/containerd", "/run/containerd/s", "/var/lib/cni"]
            .iter()
            .map(|p| (PathBuf::from(p), Path::new(p).exists()))
            .collect();
        let mut c = Ctrd {
            log: dir.join("containerd.log"),
            cgroup_parent: format!("/{}", unique("peapod-bench-ctrd")),
            dir,
            sock,
            child: None,
            version: String::new(),
        };
        *CTRD.lock().unwrap() = Some(CtrdTeardown {
            dir: c.dir.clone(),
            sock: c.sock.clone(),
            cgroup_parent: c.cgroup_parent.clone(),
            pid: None,
            host_dirs,
            bridge: None,
        });
        match c.setup().await {
            Ok(()) => Ok(c),
            Err(e) => {
                let log = std::fs::read_to_string(&c.log).unwrap_or_default();
                let tail: Vec<_> = log.lines().rev().take(15).collect();
                let tail: Vec<_> = tail.into_iter().rev().collect();
                teardown_ctrd();
                Err(format!("{e}; containerd log tail:\n{}", tail.join("\n")))
            }
        }
    }

    async fn setup(&mut self) -> Result<(), String> {
        let io = |e: std::io::Error| e.to_string();
        let cni_bin = self.dir.join("cni/bin");
        let cni_conf = self.dir.join("cni/net.d");
        std::fs::create_dir_all(&cni_bin).map_err(io)?;
        std::fs::create_dir_all(&cni_conf).map_err(io)?;
        std::fs::create_dir_all(self.dir.join("logs")).map_err(io)?;
        std::os::unix::fs::symlink("/usr/lib/cni/loopback", cni_bin.join("loopback"))
            .map_err(io)?;
        std::fs::write(
            cni_conf.join("10-peapod-bench-lo.conflist"),
            cni_conflist(&net_name(&self.dir)),
        )
        .map_err(io)?;
        std::fs::write(self.config(), ctrd_config(&self.dir, &self.sock)).map_err(io)?;

        self.spawn().await?;
        for img in ["pause", "busybox"] {
            let out = Command::new("ctr")
                .arg("--address")
                .arg(&self.sock)
                .args([
                    "-n",
                    "k8s.io",
                    "images",
                    "import",
                    "--snapshotter",
                    "overlayfs",
                ])
                .arg(fixtures().join(format!("{img}.tar")))
                .output()
                .map_err(io)?;
            if !out.status.success() {
                return Err(format!(
                    "ctr images import {img}.tar: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        let ls = Command::new("ctr")
            .arg("--address")
            .arg(&self.sock)
            .args(["-n", "k8s.io", "images", "ls", "-q"])
            .output()
            .map_err(io)?;
        let ls = String::from_utf8_lossy(&ls.stdout);
        for want in ["peapod.test/pause:latest", BUSYBOX] {
            if !ls.lines().any(|l| l == want) {
                return Err(format!("{want} missing from `ctr images ls`: {ls}"));
            }
        }
        self.stop();
        self.spawn().await?;
        // The CRI image service sees the imported images.
        let mut img = peapod::api::image_service_client::ImageServiceClient::new(
            channel(&self.sock).await.map_err(|e| e.to_string())?,
        );
        for want in ["peapod.test/pause:latest", BUSYBOX] {
            let st = img
                .image_status(ImageStatusRequest {
                    image: Some(ImageSpec {
                        image: want.into(),
                        ..Default::default()
                    }),
                    verbose: false,
                })
                .await
                .map_err(|e| e.to_string())?;
            if st.into_inner().image.is_none() {
                return Err(format!("CRI ImageStatus does not find {want}"));
            }
        }
        Ok(())
    }

    fn config(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// Starts containerd and waits until CRI answers with runtime and network ready.
    async fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| e.to_string())?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(self.config())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting containerd: {e}"))?;
        let pid = child.id() as i32;
        self.child = Some(child);
        if let Some(t) = CTRD.lock().unwrap().as_mut() {
            t.pid = Some(pid);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::from("no answer");
        loop {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!("containerd exited: {st}"));
            }
            if let Ok(ch) = channel(&self.sock).await {
                let mut rt = RuntimeServiceClient::new(ch);
                match rt.version(VersionRequest::default()).await {
                    Ok(v) => {
                        let v = v.into_inner();
                        self.version = format!("{} {}", v.runtime_name, v.runtime_version);
                        match rt.status(StatusRequest { verbose: false }).await {
                            Ok(s) => {
                                let conds = s
                                    .into_inner()
                                    .status
                                    .map(|s| s.conditions)
                                    .unwrap_or_default();
                                if conds.len() >= 2 && conds.iter().all(|c| c.status) {
                                    return Ok(());
                                }
                                last = format!("{conds:?}");
                            }
                            Err(e) => last = e.to_string(),
                        }
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            if Instant::now() > deadline {
                return Err(format!("containerd CRI not ready after 30 s: {last}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then SIGKILL after 10 s; reaps it.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(c.id() as i32);
            let _ = c.wait();
        }
        if let Some(t) = CTRD.lock().unwrap().as_mut() {
            t.pid = None;
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    async fn rt(&self) -> Rt {
        RuntimeServiceClient::new(channel(&self.sock).await.expect("connect to containerd"))
    }

    /// The shim processes serving this containerd.
    fn shims(&self) -> Vec<i32> {
        shims_of(&self.sock)
    }
}

impl Drop for Ctrd {
    fn drop(&mut self) {
        // teardown_ctrd kills and reaps by PID; forget the handle so it is not waited on again.
        self.child.take();
        teardown_ctrd();
    }
}

/// SIGTERM to a child of ours, SIGKILL after 10 s, reaped either way.
fn terminate(pid: i32) {
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let pid = nix::unistd::Pid::from_raw(pid);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Ok(WaitStatus::StillAlive) => {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                return;
            }
            _ => return,
        }
    }
}

/// containerd-shim-runc-v2 processes whose command line names `sock` as their containerd.
fn shims_of(sock: &Path) -> Vec<i32> {
    let sock = sock.to_string_lossy();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<_> = cmd
            .split(|b| *b == 0)
            .map(String::from_utf8_lossy)
            .collect();
        let is_shim = args
            .first()
            .is_some_and(|a| a.ends_with("containerd-shim-runc-v2"));
        let ours = args.windows(2).any(|w| w[0] == "-address" && w[1] == sock);
        if is_shim && ours && pid_alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// The CNI network's name: the temp dir's, unique to the run.
fn net_name(dir: &Path) -> String {
    dir.file_name().unwrap().to_string_lossy().into_owned()
}

/// Every cgroup directory under `parent` (deepest first) in every hierarchy.
fn cgroup_dirs(parent: &str) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path(), out);
            }
        }
        out.push(d.to_path_buf());
    }
    let mut out = Vec::new();
    for m in cgroup_mounts() {
        let p = m.join(parent.trim_start_matches('/'));
        if p.is_dir() {
            walk(&p, &mut out);
        }
    }
    out
}

/// Unix socket paths a process has bound, from its fds and /proc/net/unix.
fn bound_sockets(pid: i32) -> Vec<PathBuf> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .map(str::to_string)
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<_> = l.split_whitespace().collect();
            (f.len() >= 8 && inodes.iter().any(|i| i == f[6])).then(|| PathBuf::from(f[7]))
        })
        .collect()
}

/// Undoes everything the private containerd made, once (later calls find nothing registered):
/// its pods removed over CRI, containerd killed, then whatever is still there by force: shims
/// serving its socket and the processes in its pod cgroups killed, mounts under its temp dir
/// unmounted, its pod cgroups removed, CNI cache entries naming its temp dir deleted, the host
/// directories it made (when they did not exist before and are empty) and its temp dir removed.
fn teardown_ctrd() {
    let Some(t) = CTRD.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    // 1. Remove its pods the normal way, from a fresh thread (the caller may be inside the
    //    bench's runtime, or panicking).
    if let Some(pid) = t.pid.filter(|p| pid_alive(*p)) {
        remove_all_pods(t.sock.clone(), true);
        // 2. Stop containerd.
        terminate(pid);
    }
    // 3. Leftovers, by force: the processes in its pod cgroups, then its shims (not our
    //    children: they were reparented to init, so wait for them to vanish), and their sockets.
    use nix::sys::signal::{kill, Signal};
    let cg = cgroup_dirs(&t.cgroup_parent);
    for d in &cg {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        for p in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = kill(nix::unistd::Pid::from_raw(p), Signal::SIGKILL);
        }
    }
    let shims = shims_of(&t.sock);
    let mut sockets = Vec::new();
    for &s in &shims {
        sockets.extend(bound_sockets(s));
        let _ = kill(nix::unistd::Pid::from_raw(s), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while shims.iter().any(|&p| pid_alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for s in sockets
        .iter()
        .filter(|s| s.starts_with("/run/containerd/s"))
    {
        let _ = std::fs::remove_file(s);
    }
    // 4. Mounts under its temp dir (overlay rootfs, /dev/shm tmpfs, netns pins), deepest first.
    let mut mounts = mounts_under(&t.dir);
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in &mounts {
        let Ok(c) = std::ffi::CString::new(m.as_str()) else {
            continue;
        };
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
    // 5. Its pod cgroups (the kernel refuses rmdir while a process is inside; wait briefly for
    //    killed ones to leave).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<_> = cgroup_dirs(&t.cgroup_parent)
            .into_iter()
            .filter(|d| std::fs::remove_dir(d).is_err())
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // 6. libcni's result cache (containerd 1.6 does not let one move it): this run's network's
    //    entries, and containerd's built-in loopback network's entries that name our temp dir
    //    (their netns path is under it); normally CNI DEL already removed them all.
    let dir = t.dir.to_string_lossy().into_owned();
    let ours = format!("{}-", net_name(&t.dir));
    for e in std::fs::read_dir("/var/lib/cni/results")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&ours)
            || std::fs::read_to_string(e.path()).is_ok_and(|s| s.contains(&dir))
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
    for (d, existed) in t.host_dirs.iter().rev() {
        if !existed {
            if d.ends_with("cni") {
                // /var/lib/cni/{results,networks}: remove only empty ones.
                for sub in ["results", "networks"] {
                    let _ = std::fs::remove_dir(d.join(sub));
                }
            }
            let _ = std::fs::remove_dir(d);
        }
    }
    // 7. The CNI chain's bridge (its pods' veths went with their netns), and its temp dir.
    if let Some(b) = t.bridge.as_deref() {
        if Path::new("/sys/class/net").join(b).exists() {
            sh("ip", &["link", "del", b]);
        }
    }
    let _ = std::fs::remove_dir_all(&t.dir);
    // Say what could not be undone.
    let mut left = Vec::new();
    left.extend(
        mounts_under(&t.dir)
            .into_iter()
            .map(|m| format!("mount {m}")),
    );
    left.extend(shims_of(&t.sock).iter().map(|p| format!("shim pid {p}")));
    left.extend(
        cgroup_dirs(&t.cgroup_parent)
            .iter()
            .map(|d| format!("cgroup {}", d.display())),
    );
    if t.dir.exists() {
        left.push(format!("dir {}", t.dir.display()));
    }
    if let Some(b) = t.bridge.as_deref() {
        if Path::new("/sys/class/net").join(b).exists() {
            left.push(format!("bridge {b}"));
        }
    }
    if !left.is_empty() {
        eprintln!("containerd teardown left behind: {left:#?}");
    }
}

/// Start latency and memory figures of one runtime.
struct Figures {
    lat: Vec<Duration>,
    idle: u64,
    with20: u64,
    with100: u64,
    /// Mean (RSS, PSS) of the per-pod helper process: peapod's monitor, containerd's shim.
    helper: (u64, u64),
    list: Duration,
}

async fn start_pods(
    rt: &mut Rt,
    logs: &Path,
    cgroup_parent: &str,
    from: usize,
    n: usize,
) -> Vec<(String, String)> {
    let mut pods = Vec::new();
    for i in from..from + n {
        pods.push(start_pod(rt, logs, cgroup_parent, i).await);
    }
    pods
}

// ---- exec ----

/// ExecSync calls per runtime timed one at a time, after `EXEC_WARM` warm-ups.
const EXEC_ITER: usize = 100;
const EXEC_WARM: usize = 5;
/// ExecSync calls made at once on one container (over one connection, as kubelet's).
const EXEC_CONC: usize = 100;
/// ExecSync calls between the two RSS readings, unless PEAPOD_BENCH_EXEC_N says otherwise.
const EXEC_RSS_CALLS: usize = 10_000;
/// How long any one exec, Exec stream or event may take before it counts as failed.
const EXEC_LIMIT: Duration = Duration::from_secs(30);

/// The value at percentile `p` (nearest rank, as `median` picks the middle).
fn pct(v: &[Duration], p: usize) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[(v.len() * p / 100).min(v.len() - 1)]
}

fn rpc(what: &'static str) -> impl Fn(tonic::Status) -> String {
    move |e| format!("{what}: {:?}: {}", e.code(), e.message())
}

/// A pod with one busybox `sleep 3000` container to exec in, on a connection of its own, and
/// its config (the events measurement adds containers to it).
struct ExecPod {
    rt: Rt,
    sock: PathBuf,
    pod: String,
    config: PodSandboxConfig,
    container: String,
}

impl ExecPod {
    async fn start(sock: &Path, logs: &Path, cgroup_parent: &str) -> Result<ExecPod, String> {
        let ch = channel(sock).await.map_err(|e| e.to_string())?;
        let mut rt = RuntimeServiceClient::new(ch);
        let mut config = pod_config("bench-exec", logs);
        config.linux.as_mut().unwrap().cgroup_parent = cgroup_parent.into();
        let pod = rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .map_err(rpc("RunPodSandbox"))?
            .into_inner()
            .pod_sandbox_id;
        let mut p = ExecPod {
            rt,
            sock: sock.to_path_buf(),
            pod,
            config,
            container: String::new(),
        };
        p.container = p.add("c", &["sleep", "3000"]).await?;
        Ok(p)
    }

    /// Creates and starts a container in the pod.
    async fn add(&mut self, name: &str, cmd: &[&str]) -> Result<String, String> {
        let id = self
            .rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: self.pod.clone(),
                config: Some(container_config(name, BUSYBOX, cmd)),
                sandbox_config: Some(self.config.clone()),
            })
            .await
            .map_err(rpc("CreateContainer"))?
            .into_inner()
            .container_id;
        self.rt
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .map_err(rpc("StartContainer"))?;
        Ok(id)
    }

    /// The host PID of a container's process (both runtimes' verbose status has `pid`).
    async fn pid(&mut self, id: &str) -> Result<i32, String> {
        let info = self
            .rt
            .container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: true,
            })
            .await
            .map_err(rpc("ContainerStatus"))?
            .into_inner()
            .info;
        let v: serde_json::Value =
            serde_json::from_str(info.get("info").map_or("", |s| s.as_str()))
                .map_err(|e| format!("ContainerStatus verbose info: {e}"))?;
        v["pid"]
            .as_i64()
            .filter(|&p| p > 0)
            .map(|p| p as i32)
            .ok_or_else(|| format!("no pid in ContainerStatus verbose info: {v}"))
    }

    /// Stops and removes the pod, bounded at 2 min (containerd's teardown forces what is left).
    async fn remove(mut self) {
        let work = async {
            let _ = self
                .rt
                .stop_pod_sandbox(StopPodSandboxRequest {
                    pod_sandbox_id: self.pod.clone(),
                })
                .await;
            let _ = self
                .rt
                .remove_pod_sandbox(RemovePodSandboxRequest {
                    pod_sandbox_id: self.pod.clone(),
                })
                .await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(120), work).await;
    }
}

/// One ExecSync of `true`, timed; an error unless it exits 0.
async fn exec_sync_true(rt: &mut Rt, id: &str) -> Result<Duration, String> {
    let t = Instant::now();
    let call = rt.exec_sync(ExecSyncRequest {
        container_id: id.into(),
        cmd: vec!["true".into()],
        timeout: 0,
    });
    let r = tokio::time::timeout(EXEC_LIMIT, call)
        .await
        .map_err(|_| format!("ExecSync: no answer in {EXEC_LIMIT:?}"))?
        .map_err(rpc("ExecSync"))?
        .into_inner();
    let took = t.elapsed();
    if r.exit_code != 0 {
        return Err(format!(
            "ExecSync `true` exited {}: {}",
            r.exit_code,
            String::from_utf8_lossy(&r.stderr).trim()
        ));
    }
    Ok(took)
}

/// Adds the outcome of call `i` to `acc` (the warm-ups' times left out); the first error
/// replaces the times, and callers make no more calls once `acc` is an error.
fn sample<T>(acc: &mut Result<Vec<T>, String>, i: usize, r: Result<T, String>) {
    if let Ok(v) = acc {
        match r {
            Ok(d) if i >= EXEC_WARM => v.push(d),
            Ok(_) => {}
            Err(e) => *acc = Err(e),
        }
    }
}

/// An empty buffer of the type the SPDY decoder reads from (`bytes::BytesMut`, which the bench
/// gets through peapod's SPDY types rather than as a dependency of its own).
fn frame_buf<B: Default, T, E>(_decode: fn(&mut Decoder, &mut B) -> Result<T, E>) -> B {
    B::default()
}

/// Exec as kubelet and crictl (client-go) do it, over SPDY/3.1 with remote-command protocol
/// v4.channel.k8s.io: the CRI Exec RPC for `echo hi` with stdout only, an HTTP/1.1 upgrade
/// request to the returned URL, and once the 101 is in, one stream each for `error` and
/// `stdout`. Timed from the RPC to the first stdout byte; then read to the end (GOAWAY or EOF)
/// so that an exec which does not print `hi` and report Success is an error, not a figure.
async fn spdy_first_byte(rt: &mut Rt, id: &str) -> Result<Duration, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = Instant::now();
    let url = rt
        .exec(ExecRequest {
            container_id: id.into(),
            cmd: vec!["echo".into(), "hi".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .map_err(rpc("Exec"))?
        .into_inner()
        .url;
    let (host, path) = url
        .strip_prefix("http://")
        .and_then(|u| u.split_once('/'))
        .ok_or_else(|| format!("Exec returned URL {url:?}"))?;
    let io = |e: std::io::Error| format!("{url}: {e}");
    let stream = async {
        let mut c = tokio::net::TcpStream::connect(host).await.map_err(io)?;
        c.set_nodelay(true).map_err(io)?;
        c.write_all(
            format!(
                "POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n\
                 Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .map_err(io)?;
        let mut buf = frame_buf(Decoder::decode);
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            if c.read_buf(&mut buf).await.map_err(io)? == 0 {
                return Err(format!("{url}: EOF before the upgrade response"));
            }
        };
        let head = buf.split_to(end);
        let head = String::from_utf8_lossy(&head);
        if !head.starts_with("HTTP/1.1 101") {
            return Err(format!("{url}: upgrade refused: {}", head.trim()));
        }
        let mut enc = Encoder::new();
        let mut out = frame_buf(Decoder::decode);
        for (stream_id, kind) in [(1, "error"), (3, "stdout")] {
            let syn = Frame::SynStream {
                stream_id,
                associated_to: 0,
                priority: 0,
                fin: false,
                unidirectional: false,
                headers: Headers::from_pairs([("streamType", kind)]),
            };
            enc.encode(&syn, &mut out);
        }
        c.write_all(&out).await.map_err(io)?;
        let mut dec = Decoder::new();
        let (mut first, mut stdout, mut status) = (None, Vec::new(), Vec::new());
        // Streams 1 and 3 ended: by FIN (peapod), or by RST_STREAM CANCEL (kubelet's server,
        // which containerd embeds, resets every stream when it closes the connection).
        let mut ended = [false; 2];
        while ended != [true; 2] {
            match dec.decode(&mut buf).map_err(|e| format!("{url}: {e}"))? {
                Some(Frame::Data {
                    stream_id,
                    data,
                    fin,
                }) => {
                    if stream_id == 3 {
                        if first.is_none() && !data.is_empty() {
                            first = Some(t.elapsed());
                        }
                        stdout.extend_from_slice(&data);
                    } else if stream_id == 1 {
                        status.extend_from_slice(&data);
                    }
                    if fin && (stream_id == 1 || stream_id == 3) {
                        ended[(stream_id / 2) as usize] = true;
                    }
                }
                Some(Frame::RstStream { stream_id, .. }) if stream_id == 1 || stream_id == 3 => {
                    ended[(stream_id / 2) as usize] = true;
                }
                Some(Frame::GoAway { .. }) => break,
                Some(_) => {}
                None => {
                    if c.read_buf(&mut buf).await.map_err(io)? == 0 {
                        break;
                    }
                }
            }
        }
        let status = String::from_utf8_lossy(&status);
        match first {
            Some(d) if stdout == b"hi\n" && status.contains("\"Success\"") => Ok(d),
            _ => Err(format!(
                "{url}: stdout {:?}, status {status:?}",
                String::from_utf8_lossy(&stdout)
            )),
        }
    };
    tokio::time::timeout(EXEC_LIMIT, stream)
        .await
        .map_err(|_| format!("{url}: not done in {EXEC_LIMIT:?}"))?
}

/// `EXEC_CONC` ExecSync `true` calls at once on one container over the pod's one
/// connection: the wall time for all, and each call's time.
async fn exec_concurrent(p: &ExecPod) -> Result<(Duration, Vec<Duration>), String> {
    let t = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..EXEC_CONC {
        let (mut rt, id) = (p.rt.clone(), p.container.clone());
        calls.spawn(async move { exec_sync_true(&mut rt, &id).await });
    }
    let mut each = Vec::new();
    let mut failed = None;
    while let Some(r) = calls.join_next().await {
        match r.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(d) => each.push(d),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    let wall = t.elapsed();
    match failed {
        Some(e) => Err(format!(
            "{} of {EXEC_CONC} answered (the last after {}); the first failure: {e}",
            each.len(),
            each.iter().max().map_or("-".into(), |d| ms(*d)),
        )),
        None => Ok((wall, each)),
    }
}

/// A GetContainerEvents stream and the connection it runs on (its own: an unread stream
/// would hold a shared connection's flow-control window).
struct Events {
    _conn: Rt,
    stream: tonic::Streaming<ContainerEventResponse>,
}

impl Events {
    async fn subscribe(sock: &Path) -> Result<Events, String> {
        let ch = channel(sock).await.map_err(|e| e.to_string())?;
        let mut conn = RuntimeServiceClient::new(ch);
        let stream = conn
            .get_container_events(GetEventsRequest {})
            .await
            .map_err(rpc("GetContainerEvents"))?
            .into_inner();
        Ok(Events {
            _conn: conn,
            stream,
        })
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// A new `sleep 3000` container in the pod, SIGKILLed: (the kill → its CONTAINER_STOPPED_EVENT
/// read by the client, the event's `finished_at` for it → the same read; None when the event
/// has no finished_at). The container is removed after.
async fn stopped_event(
    p: &mut ExecPod,
    ev: &mut Events,
    i: usize,
) -> Result<(Duration, Option<Duration>), String> {
    let id = p.add(&format!("ev{i}"), &["sleep", "3000"]).await?;
    let pid = p.pid(&id).await?;
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .map_err(|e| format!("kill {pid}: {e}"))?;
    let deadline = t + EXEC_LIMIT;
    let stopped = ContainerEventType::ContainerStoppedEvent as i32;
    let event = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ev.stream.message()).await {
            Err(_) => return Err(format!("no CONTAINER_STOPPED_EVENT in {EXEC_LIMIT:?}")),
            Ok(Err(e)) => return Err(rpc("GetContainerEvents")(e)),
            Ok(Ok(None)) => return Err("the GetContainerEvents stream ended".into()),
            Ok(Ok(Some(e))) if e.container_id == id && e.container_event_type == stopped => {
                break e
            }
            Ok(Ok(Some(_))) => {}
        }
    };
    let (took, at) = (t.elapsed(), now_ns());
    let finished = event
        .containers_statuses
        .iter()
        .find(|s| s.id == id)
        .map(|s| s.finished_at)
        .filter(|&f| f > 0)
        .map(|f| Duration::from_nanos(at.saturating_sub(f).max(0) as u64));
    p.rt.remove_container(RemoveContainerRequest { container_id: id })
        .await
        .map_err(rpc("RemoveContainer"))?;
    Ok((took, finished))
}

/// One runtime's exec figures; each part the first error when it failed.
struct ExecFigures {
    /// ExecSync `true`, one call at a time.
    sync: Result<Vec<Duration>, String>,
    /// Exec of `echo hi` over SPDY: the RPC → the first stdout byte.
    spdy: Result<Vec<Duration>, String>,
    /// `EXEC_CONC` ExecSync calls at once: wall time for all, each call's time.
    conc: Result<(Duration, Vec<Duration>), String>,
    /// SIGKILL → CONTAINER_STOPPED_EVENT at the client, and finished_at → the same.
    events: Result<Vec<(Duration, Option<Duration>)>, String>,
}

impl ExecFigures {
    fn new() -> Self {
        ExecFigures {
            sync: Ok(Vec::new()),
            spdy: Ok(Vec::new()),
            conc: Err("not run".into()),
            events: Ok(Vec::new()),
        }
    }

    /// Each part's name and whether it failed.
    fn parts(&self) -> [(&'static str, Result<(), &String>); 4] {
        [
            ("ExecSync", self.sync.as_ref().map(|_| ())),
            ("Exec over SPDY", self.spdy.as_ref().map(|_| ())),
            ("concurrent ExecSync", self.conc.as_ref().map(|_| ())),
            ("events", self.events.as_ref().map(|_| ())),
        ]
    }
}

/// ExecSync one at a time (alternately peapod, containerd, the bare runtime), Exec over SPDY
/// and the STOPPED event's latency (alternately peapod, containerd), and concurrent ExecSync
/// (peapod's round, then containerd's).
async fn exec_bench(
    p: &mut ExecPod,
    mut c: Option<&mut ExecPod>,
    bare: &Bare,
) -> (ExecFigures, ExecFigures, Result<Vec<Duration>, String>) {
    let (mut pf, mut cf) = (ExecFigures::new(), ExecFigures::new());
    let mut bare_sync = Ok(Vec::new());
    for i in 0..EXEC_WARM + EXEC_ITER {
        if pf.sync.is_ok() {
            sample(
                &mut pf.sync,
                i,
                exec_sync_true(&mut p.rt, &p.container).await,
            );
        }
        if let Some(c) = c.as_deref_mut().filter(|_| cf.sync.is_ok()) {
            sample(
                &mut cf.sync,
                i,
                exec_sync_true(&mut c.rt, &c.container).await,
            );
        }
        if bare_sync.is_ok() {
            sample(&mut bare_sync, i, bare.exec_true().await);
        }
    }
    for i in 0..EXEC_WARM + ITER {
        if pf.spdy.is_ok() {
            sample(
                &mut pf.spdy,
                i,
                spdy_first_byte(&mut p.rt, &p.container).await,
            );
        }
        if let Some(c) = c.as_deref_mut().filter(|_| cf.spdy.is_ok()) {
            sample(
                &mut cf.spdy,
                i,
                spdy_first_byte(&mut c.rt, &c.container).await,
            );
        }
    }
    pf.conc = exec_concurrent(p).await;
    if let Some(c) = c.as_deref_mut() {
        cf.conc = exec_concurrent(c).await;
    }
    let mut p_ev = match Events::subscribe(&p.sock).await {
        Ok(ev) => Some(ev),
        Err(e) => {
            pf.events = Err(e);
            None
        }
    };
    let mut c_ev = match c.as_deref() {
        Some(c) => match Events::subscribe(&c.sock).await {
            Ok(ev) => Some(ev),
            Err(e) => {
                cf.events = Err(e);
                None
            }
        },
        None => None,
    };
    for i in 0..EXEC_WARM + ITER {
        if let Some(ev) = p_ev.as_mut().filter(|_| pf.events.is_ok()) {
            sample(&mut pf.events, i, stopped_event(p, ev, i).await);
        }
        let c = c.as_deref_mut();
        if let (Some(ev), Some(c)) = (c_ev.as_mut().filter(|_| cf.events.is_ok()), c) {
            sample(&mut cf.events, i, stopped_event(c, ev, i).await);
        }
    }
    (pf, cf, bare_sync)
}

/// The daemon's RSS in KiB before and after `n` ExecSync `true` calls one at a time, the
/// calls made, how long they took, and the error that ended them early, if one did.
struct RssFigures {
    before: u64,
    after: u64,
    calls: usize,
    took: Duration,
    error: Option<String>,
}

async fn exec_rss(p: &mut ExecPod, pid: i32, n: usize) -> RssFigures {
    let before = mem_kib(pid).0;
    let t = Instant::now();
    let mut calls = 0;
    let mut error = None;
    while calls < n {
        if let Err(e) = exec_sync_true(&mut p.rt, &p.container).await {
            error = Some(e);
            break;
        }
        calls += 1;
    }
    let took = t.elapsed();
    // Let whatever the last exec left settle, as the other RSS readings do.
    tokio::time::sleep(Duration::from_millis(300)).await;
    RssFigures {
        before,
        after: mem_kib(pid).0,
        calls,
        took,
        error,
    }
}

fn print_exec_table(
    p: &ExecFigures,
    c: Option<&Result<ExecFigures, String>>,
    bare: &Result<Vec<Duration>, String>,
    rss: &RssFigures,
) {
    let cf = c.and_then(|c| c.as_ref().ok());
    let stat = |r: &Result<Vec<Duration>, String>, q: usize| {
        r.as_ref().ok().filter(|v| !v.is_empty()).map(|v| pct(v, q))
    };
    let cell = |d: Option<Duration>| d.map(ms).unwrap_or_else(|| "failed".into());
    let ratio = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) if !b.is_zero() => format!("{:.2}", a.as_secs_f64() / b.as_secs_f64()),
        _ => "-".into(),
    };
    let met = |ok: bool| if ok { "met" } else { "missed" };
    // (what, peapod, containerd, ratio, target)
    let mut rows: Vec<[String; 5]> = Vec::new();
    let durs = |what: &str, f: &dyn Fn(&ExecFigures) -> Option<Duration>, target: String| {
        let (a, b) = (f(p), cf.and_then(f));
        [what.into(), cell(a), cell(b), ratio(a, b), target]
    };
    let bare_med = stat(bare, 50);
    let p_med = stat(&p.sync, 50);
    let c_med = cf.and_then(|c| stat(&c.sync, 50));
    let mut target = Vec::new();
    if let (Some(a), Some(b)) = (p_med, bare_med) {
        let limit = b + Duration::from_millis(3);
        target.push(format!(
            "≤ bare + 3 ms = {}: {}",
            ms(limit),
            met(a <= limit)
        ));
    }
    if let (Some(a), Some(b)) = (p_med, c_med) {
        let limit = b.mul_f64(0.6);
        target.push(format!(
            "≤ 0.6 × containerd = {}: {}",
            ms(limit),
            met(a <= limit)
        ));
    }
    rows.push(durs(
        "ExecSync `true`, median",
        &|f| stat(&f.sync, 50),
        target.join("; "),
    ));
    rows.push(durs(
        "ExecSync `true`, p90",
        &|f| stat(&f.sync, 90),
        String::new(),
    ));
    for (what, q) in [("median", 50), ("p90", 90)] {
        let b = cell(stat(bare, q));
        rows.push([
            format!("bare `runc exec --process FILE --pid-file FILE ID` of `true`, {what} (same for both)"),
            b.clone(),
            b,
            String::new(),
            String::new(),
        ]);
    }
    rows.push(durs(
        "ExecSync overhead over bare runc exec, median",
        &|f| Some(stat(&f.sync, 50)?.saturating_sub(bare_med?)),
        String::new(),
    ));
    rows.push(durs(
        "Exec `echo hi` over SPDY/3.1 (v4.channel.k8s.io): Exec RPC → first stdout byte, median",
        &|f| stat(&f.spdy, 50),
        String::new(),
    ));
    rows.push(durs(
        "Exec `echo hi` over SPDY/3.1: Exec RPC → first stdout byte, p90",
        &|f| stat(&f.spdy, 90),
        String::new(),
    ));
    let conc = |f: &ExecFigures| f.conc.as_ref().ok().cloned();
    rows.push(durs(
        &format!("{EXEC_CONC} concurrent ExecSync `true` on one container: wall time for all"),
        &|f| conc(f).map(|c| c.0),
        String::new(),
    ));
    rows.push(durs(
        &format!("{EXEC_CONC} concurrent ExecSync `true`: per call, median"),
        &|f| conc(f).map(|c| pct(&c.1, 50)),
        String::new(),
    ));
    rows.push(durs(
        &format!("{EXEC_CONC} concurrent ExecSync `true`: per call, p90"),
        &|f| conc(f).map(|c| pct(&c.1, 90)),
        String::new(),
    ));
    let kill = |f: &ExecFigures| {
        let v = f.events.as_ref().ok()?;
        (!v.is_empty()).then(|| v.iter().map(|e| e.0).collect::<Vec<_>>())
    };
    let finished = |f: &ExecFigures| {
        let v = f.events.as_ref().ok()?;
        let v: Vec<_> = v.iter().filter_map(|e| e.1).collect();
        (!v.is_empty()).then_some(v)
    };
    rows.push(durs(
        "SIGKILL of a container's process → CONTAINER_STOPPED_EVENT at the client, median",
        &|f| kill(f).map(|v| pct(&v, 50)),
        String::new(),
    ));
    rows.push(durs(
        "SIGKILL → CONTAINER_STOPPED_EVENT at the client, p90",
        &|f| kill(f).map(|v| pct(&v, 90)),
        String::new(),
    ));
    rows.push(durs(
        "the event's finished_at → the event at the client, median",
        &|f| finished(f).map(|v| pct(&v, 50)),
        String::new(),
    ));
    let diff = rss.after as i64 - rss.before as i64;
    rows.push([
        format!(
            "daemon RSS before / after {} ExecSync `true` one at a time",
            rss.calls
        ),
        format!("{} / {}", mib(rss.before), mib(rss.after)),
        "not run".into(),
        String::new(),
        "flat".into(),
    ]);
    rows.push([
        "daemon RSS after − before".into(),
        format!("{diff:+} KiB"),
        "not run".into(),
        String::new(),
        String::new(),
    ]);

    println!(
        "\nexec (busybox `sleep 3000`, one container per runtime; ExecSync: {EXEC_ITER} calls \
         after {EXEC_WARM} warm-ups, alternately peapod{}, bare runc; SPDY exec and events: \
         {ITER} each after {EXEC_WARM} warm-ups)",
        if c.is_some() { ", containerd" } else { "" }
    );
    if c.is_some() {
        println!("| what | peapod | containerd | peapod / containerd | target |");
        println!("|---|---|---|---|---|");
        for [what, a, b, r, t] in &rows {
            println!("| {what} | {a} | {b} | {r} | {t} |");
        }
    } else {
        println!("| what | peapod | target |");
        println!("|---|---|---|");
        for [what, a, _, _, t] in &rows {
            println!("| {what} | {a} | {t} |");
        }
    }
    println!(
        "bare runc exec: `runc exec --process FILE --pid-file FILE {BARE_EXEC_ID}` on a runc \
         container of the same busybox layer, the process file (the container's own process, \
         args `true`) written before each call and stdout/stderr piped, as peapod's ExecSync does"
    );
    println!(
        "RSS: {} calls in {} ({} each); peapod only",
        rss.calls,
        ms(rss.took),
        ms(rss.took / rss.calls.max(1) as u32)
    );
    let mut why = Vec::new();
    let mut failed = |who: &str, what: &str, r: Result<(), &String>| {
        if let Err(e) = r {
            why.push(format!("{who} {what}: {e}"));
        }
    };
    for (what, r) in p.parts() {
        failed("peapod", what, r);
    }
    match c {
        Some(Ok(c)) => {
            for (what, r) in c.parts() {
                failed("containerd", what, r);
            }
        }
        Some(Err(e)) => failed("containerd", "exec pod", Err(e)),
        None => {}
    }
    failed("bare runc", "exec", bare.as_ref().map(|_| ()));
    if let Some(e) = &rss.error {
        failed("peapod", "RSS run", Err(e));
    }
    for w in why {
        println!("{w}");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !require_root() {
        std::process::exit(1);
    }
    let parts = parts::Parts::from_env().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    if let Some(only) = parts.selected() {
        println!("PEAPOD_BENCH_ONLY: only {only}");
    }
    // Release builds abort on panic, so Drop does not run: undo containerd from the hook.
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        prev(info);
        teardown_ctrd();
        teardown_bare();
        teardown_net();
        teardown_peapod();
        static_pods::teardown();
        pull::teardown();
    }));

    let d = Daemon::start().await;
    *PEAPOD.lock().unwrap() = Some(PeapodTeardown {
        socket: d.socket.clone(),
        base: d.root.parent().unwrap().to_path_buf(),
        cgroup_parent: d.cgroup_parent.clone(),
        pid: d.pid().unwrap() as i32,
        net: Some(d.net.clone()),
    });
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let daemon_pid = d.pid().unwrap() as i32;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = mem_kib(daemon_pid).0;

    let ctrd = if parts.containerd() {
        match Ctrd::start().await {
            Ok(c) => Some(c),
            Err(e) => {
                println!("containerd left out: {e}");
                None
            }
        }
    } else {
        None
    };
    let mut ctrd_rt = match &ctrd {
        Some(c) => {
            let rt = c.rt().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            Some((c, rt, mem_kib(c.pid()).0, c.dir.join("logs")))
        }
        None => None,
    };

    // The bare runtime on the image's single layer.
    let bare = (parts.pods() || parts.has("exec")).then(|| {
        let layer = std::fs::read_dir(d.root.join("images/layers"))
            .unwrap()
            .flatten()
            .map(|e| e.path().join("diff"))
            .find(|p| p.join("bin/busybox").exists())
            .expect("busybox layer");
        Bare::new(&layer, &d.root.parent().unwrap().join("bare"))
    });

    // Pod start latency, alternately one peapod pod and one containerd pod; then memory, List
    // and (for `scale`) the SCALE_PODS figures, peapod's, then containerd's.
    let mut pods = None;
    if let Some(bare) = bare.as_ref().filter(|_| parts.pods()) {
        let mut lat = Vec::new();
        let mut ctrd_lat = Vec::new();
        for i in 0..ITER + 2 {
            let took = timed_pod(&mut rt, &logs, "", i).await;
            if i >= 2 {
                lat.push(took);
            }
            if let Some((c, crt, _, clogs)) = ctrd_rt.as_mut() {
                let took = timed_pod(crt, clogs, &c.cgroup_parent, i).await;
                if i >= 2 {
                    ctrd_lat.push(took);
                }
            }
        }
        let bare_med = median(bare.start_latency());
        let with_scale = parts.has("scale");
        let side = scale::Side {
            rt: &mut rt,
            logs: &logs,
            cgroup_parent: "",
            daemon: daemon_pid,
            ctrd: None,
        };
        let peapod = scale::run(side, bare, with_scale, lat, idle).await;
        let containerd = match ctrd_rt.as_mut() {
            Some((c, crt, idle, clogs)) => {
                let side = scale::Side {
                    rt: crt,
                    logs: clogs,
                    cgroup_parent: &c.cgroup_parent,
                    daemon: c.pid(),
                    ctrd: Some(*c),
                };
                Some(scale::run(side, bare, with_scale, ctrd_lat, *idle).await)
            }
            None => None,
        };
        pods = Some((peapod, containerd, bare_med));
    }

    // Exec: one pod per runtime and the bare runtime's kept container, then (containerd gone)
    // peapod's RSS across many ExecSync calls.
    let mut exec = None;
    if let Some(bare) = bare.as_ref().filter(|_| parts.has("exec")) {
        let mut pexec = ExecPod::start(&d.socket, &logs, "")
            .await
            .expect("peapod exec pod");
        let mut cexec = match ctrd_rt.as_ref() {
            Some((c, _, _, clogs)) => Some(ExecPod::start(&c.sock, clogs, &c.cgroup_parent).await),
            None => None,
        };
        bare.start_kept();
        let (pfig, cfig, bare_exec) = exec_bench(
            &mut pexec,
            cexec.as_mut().and_then(|c| c.as_mut().ok()),
            bare,
        )
        .await;
        let cfig = match cexec {
            Some(Ok(c)) => {
                c.remove().await;
                Some(Ok(cfig))
            }
            Some(Err(e)) => Some(Err(e)),
            None => None,
        };
        exec = Some((pexec, pfig, cfig, bare_exec));
    }
    drop(bare);
    let ctrd_net = match ctrd_rt.as_mut() {
        Some((c, crt, _, clogs)) if parts.has("net") => Some(ctrd_net_bench(c, crt, clogs).await),
        _ => None,
    };
    let pulls = if parts.has("pull") {
        Some(pull::bench(&d, ctrd.as_ref()).await)
    } else {
        None
    };
    let version = ctrd.as_ref().map(|c| c.version.clone());
    drop(ctrd_rt);
    drop(ctrd);
    let exec = match exec {
        Some((mut pexec, pfig, cfig, bare_exec)) => {
            let rss_calls = std::env::var("PEAPOD_BENCH_EXEC_N")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(EXEC_RSS_CALLS);
            let rss = exec_rss(&mut pexec, daemon_pid, rss_calls).await;
            pexec.remove().await;
            Some((pfig, cfig, bare_exec, rss))
        }
        None => None,
    };

    if let Some(((p, ps), c, bare_med)) = &pods {
        let cf = c.as_ref().map(|c| &c.0);
        print_table(p, cf, version.as_deref(), *bare_med);
        if let Some(ps) = ps {
            let cs = c.as_ref().and_then(|(f, s)| Some((f, s.as_ref()?)));
            scale::print((p, ps), cs, *bare_med);
        }
    }
    if let Some((pfig, cfig, bare_exec, rss)) = &exec {
        print_exec_table(pfig, cfig.as_ref(), bare_exec, rss);
    }
    if let Some(f) = &pulls {
        pull::print(f, version.as_deref());
    }
    if parts.has("net") {
        let (builtin, cni) = net_bench().await;
        let start = start_net_vs_none(&d).await;
        print_net_table(&d.net.mode, &builtin, &cni, ctrd_net.as_ref(), &start);
    }
    if parts.has("static") {
        let sp = static_pods::bench(&d).await;
        static_pods::print(&sp, median, ms);
    }
    PEAPOD.lock().unwrap().take();
    d.cleanup().await;
}

/// What the panic hook needs to undo the harness's peapod daemon: with panic = "abort" in the
/// release profile, `Daemon`'s Drop (which removes its pods) never runs in this binary.
struct PeapodTeardown {
    socket: PathBuf,
    base: PathBuf,
    cgroup_parent: String,
    pid: i32,
    /// The daemon's own built-in network (bridge, nft table), which outlives it by design.
    net: Option<TestNet>,
}

static PEAPOD: Mutex<Option<PeapodTeardown>> = Mutex::new(None);
/// The second daemon, without a pod network, of the pod-start comparison.
static PEAPOD_NONET: Mutex<Option<PeapodTeardown>> = Mutex::new(None);

/// Removes every pod of the runtime on `sock` over CRI (stopping each first when `stop`), from a
/// fresh thread: the caller may be inside the bench's runtime, or panicking. Bounded at 2 min.
fn remove_all_pods(sock: PathBuf, stop: bool) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let work = async {
                let Ok(ch) = channel(&sock).await else { return };
                let mut rt = RuntimeServiceClient::new(ch);
                if let Ok(l) = rt.list_pod_sandbox(ListPodSandboxRequest::default()).await {
                    for p in l.into_inner().items {
                        if stop {
                            let _ = rt
                                .stop_pod_sandbox(StopPodSandboxRequest {
                                    pod_sandbox_id: p.id.clone(),
                                })
                                .await;
                        }
                        let _ = rt
                            .remove_pod_sandbox(RemovePodSandboxRequest {
                                pod_sandbox_id: p.id,
                            })
                            .await;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(120), work).await;
        });
    })
    .join();
}

/// As `Daemon::cleanup`: every pod removed, the daemon killed, its cgroup parent and dirs removed.
fn teardown_peapod() {
    for slot in [&PEAPOD_NONET, &PEAPOD] {
        if let Some(t) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
            teardown_one_peapod(t);
        }
    }
}

fn teardown_one_peapod(t: PeapodTeardown) {
    remove_all_pods(t.socket.clone(), false);
    use nix::sys::signal::{kill, Signal};
    let pid = nix::unistd::Pid::from_raw(t.pid);
    let _ = kill(pid, Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
    for m in cgroup_mounts() {
        let _ = std::fs::remove_dir(m.join(t.cgroup_parent.trim_start_matches('/')));
    }
    if let Some(net) = t.net {
        let root = t.base.join("root");
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(net.remove(&root));
        })
        .join();
    }
    let _ = std::fs::remove_dir_all(&t.base);
}

fn print_table(p: &Figures, c: Option<&Figures>, version: Option<&str>, bare_med: Duration) {
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}", a / b)
        } else {
            "-".into()
        }
    };
    let dur = |f: &dyn Fn(&Figures) -> Duration| {
        let a = f(p);
        let b = c.map(f).unwrap_or_default();
        (ms(a), ms(b), ratio(a.as_secs_f64(), b.as_secs_f64()))
    };
    let mem = |f: &dyn Fn(&Figures) -> u64| {
        let a = f(p);
        let b = c.map(f).unwrap_or_default();
        (mib(a), mib(b), ratio(a as f64, b as f64))
    };
    let minmax = |f: &Figures| {
        format!(
            "{} / {}",
            ms(*f.lat.iter().min().unwrap()),
            ms(*f.lat.iter().max().unwrap())
        )
    };
    let med = |f: &Figures| median(f.lat.clone());
    let rows: Vec<(&str, (String, String, String))> = vec![
        ("RunPodSandbox+Create+Start, median", dur(&med)),
        (
            "RunPodSandbox+Create+Start, min / max",
            (minmax(p), c.map(minmax).unwrap_or_default(), String::new()),
        ),
        (
            "bare runc create+start, median (same for both)",
            (ms(bare_med), ms(bare_med), String::new()),
        ),
        (
            "overhead over bare runc, median",
            dur(&|f| med(f).saturating_sub(bare_med)),
        ),
        ("daemon RSS idle", mem(&|f| f.idle)),
        ("daemon RSS with 20 pods", mem(&|f| f.with20)),
        ("daemon RSS with 100 pods", mem(&|f| f.with100)),
        (
            "per-pod helper RSS (peapod monitor; containerd shim, one per pod)",
            mem(&|f| f.helper.0),
        ),
        (
            "per-pod helper PSS (peapod monitor; containerd shim, one per pod)",
            mem(&|f| f.helper.1),
        ),
        (
            "ListPodSandbox+ListContainers, 100 pods, median",
            dur(&|f| f.list),
        ),
    ];
    println!(
        "\npeapod benchmark ({ITER} iterations after 2 warm-ups, busybox `sleep 3000`, runc){}",
        match version {
            Some(v) => format!(" beside {v} (CRI, io.containerd.runc.v2, cgroupfs)"),
            None => String::new(),
        }
    );
    if c.is_some() {
        println!("| what | peapod | containerd | peapod / containerd |");
        println!("|---|---|---|---|");
        for (what, (a, b, r)) in rows {
            println!("| {what} | {a} | {b} | {r} |");
        }
    } else {
        println!("| what | peapod |");
        println!("|---|---|");
        for (what, (a, _, _)) in rows {
            println!("| {what} | {a} |");
        }
    }
}

// ---- pod network ----

/// Pods per network driver in the setup/teardown figures (after `NET_WARM` unrecorded ones).
const NET_ITER: usize = 30;
const NET_WARM: usize = 2;
const CNI_PLUGIN_DIR: &str = "/usr/lib/cni";
const CNI_PLUGINS: [&str; 4] = ["bridge", "host-local", "loopback", "portmap"];
const TOP_DNAT: &str = "CNI-HOSTPORT-DNAT";

/// Everything the network part made, for its teardown at the end or from the panic hook:
/// pinned netns files, the built-in network (bridge, nft table) with the pods set up on it, and
/// the CNI chain's bridge, pods (DEL from the cache) and portmap's iptables chains.
#[derive(Default)]
struct NetTeardown {
    tmp: PathBuf,
    netns: Vec<PathBuf>,
    builtin: Option<peapod::net::NetConfig>,
    builtin_pods: Vec<String>,
    cni: Option<peapod::net::cni::CniConfig>,
    cni_bridge: String,
    cni_pods: Vec<String>,
    /// portmap's shared chain existed before: not this run's to remove.
    dnat_chain_preexisted: bool,
}

static NET: Mutex<Option<NetTeardown>> = Mutex::new(None);

fn with_net(f: impl FnOnce(&mut NetTeardown)) {
    if let Some(t) = NET.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        f(t);
    }
}

fn nat_rules(chain: &str) -> Vec<String> {
    let (ok, out) = sh("iptables", &["-w", "-t", "nat", "-S", chain]);
    if !ok {
        return Vec::new();
    }
    out.lines().map(str::to_string).collect()
}

fn nat_chains() -> std::collections::BTreeSet<String> {
    let (_, out) = sh("iptables", &["-w", "-t", "nat", "-S"]);
    out.lines()
        .filter_map(|l| l.strip_prefix("-N "))
        .map(str::to_string)
        .collect()
}

/// portmap's rules for this run's pods in the shared chain and the per-pod chains they jump to,
/// then the shared chain itself when this run made it and it is empty (as tests/cni.rs does).
fn cleanup_portmap(pod_ids: &[String], preexisted: bool) {
    for id in pod_ids {
        loop {
            let (_, out) = sh(
                "iptables",
                &["-w", "-t", "nat", "-L", TOP_DNAT, "-n", "--line-numbers"],
            );
            let Some(line) = out.lines().find(|l| l.contains(id.as_str())) else {
                break;
            };
            let mut cols = line.split_whitespace();
            let num = cols.next().unwrap_or("").to_string();
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
    if !preexisted
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

/// Undoes the network part (once), from a fresh thread: the caller may be inside the bench's
/// runtime, or panicking.
fn teardown_net() {
    let Some(t) = NET.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            if let Some(cfg) = &t.builtin {
                match peapod::net::BuiltinNetwork::new(cfg.clone()).await {
                    Ok(n) => {
                        for p in &t.builtin_pods {
                            let _ = n.teardown(p, None).await;
                        }
                        if let Err(e) = n.remove().await {
                            eprintln!("removing the bench's network {}: {e}", cfg.bridge);
                        }
                    }
                    Err(e) => eprintln!("removing the bench's network {}: {e}", cfg.bridge),
                }
            }
            if let Some(cfg) = &t.cni {
                for p in &t.cni_pods {
                    let _ = peapod::net::cni::CniNetwork::del(cfg, p, None).await;
                }
            }
        });
        for ns in &t.netns {
            let _ = nix::mount::umount2(ns, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(ns);
        }
        if t.cni.is_some() {
            if !t.cni_bridge.is_empty() && Path::new("/sys/class/net").join(&t.cni_bridge).exists()
            {
                sh("ip", &["link", "del", &t.cni_bridge]);
            }
            cleanup_portmap(&t.cni_pods, t.dnat_chain_preexisted);
        }
        let _ = std::fs::remove_dir_all(&t.tmp);
    })
    .join();
}

/// A network namespace pinned on `path` (a thread unshares its netns and bind-mounts
/// /proc/thread-self/ns/net on the file), registered for teardown.
fn make_netns(path: &Path) -> Result<(), String> {
    std::fs::write(path, b"").map_err(|e| format!("{}: {e}", path.display()))?;
    with_net(|t| t.netns.push(path.to_owned()));
    let p = path.to_owned();
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &p,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("bind-mounting the netns: {e}"))
    })
    .join()
    .map_err(|_| "netns thread panicked".to_string())?
}

fn drop_netns(path: &Path) {
    let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(path);
    with_net(|t| t.netns.retain(|p| p != path));
}

/// A 10.2xx.y.0/24 that overlaps nothing the host routes or has, nor `also`.
fn free_subnet(also: &[std::net::Ipv4Addr]) -> Result<std::net::Ipv4Addr, String> {
    free_ipv4_subnet(also).ok_or_else(|| "no free 10.2xx.y.0/24 subnet".into())
}

/// Per-pod setup and teardown times of one driver.
#[derive(Default)]
struct NetTimes {
    setup: Vec<Duration>,
    /// What StopPodSandbox waits for.
    teardown: Vec<Duration>,
    /// The built-in driver's veth deletion and address release, after StopPodSandbox has
    /// answered (empty for CNI, whose DEL does everything before it returns).
    release: Vec<Duration>,
}

impl NetTimes {
    fn total(&self) -> Vec<Duration> {
        self.setup
            .iter()
            .zip(&self.teardown)
            .map(|(a, b)| *a + *b)
            .collect()
    }
}

/// The built-in network on a bridge, /24 and nft table of its own.
async fn builtin_open(
    tmp: &Path,
    tag: &str,
    subnet: std::net::Ipv4Addr,
) -> Result<peapod::net::BuiltinNetwork, String> {
    let mut cfg = peapod::net::NetConfig::new(tmp.join("ipam"));
    cfg.bridge = format!("ppbench{tag}");
    cfg.nft_table = format!("ppbench_{tag}");
    cfg.ipv4_cidr = Some(ipnet::Ipv4Net::new(subnet, 24).map_err(|e| e.to_string())?);
    cfg.host_forwarding = false;
    with_net(|t| t.builtin = Some(cfg.clone()));
    peapod::net::BuiltinNetwork::new(cfg)
        .await
        .map_err(|e| format!("opening the built-in network: {e}"))
}

/// The CNI chain both runtimes are measured on: Debian's bridge (no gateway, no masquerade)
/// with host-local addresses from `subnet`/24, loopback, and portmap when iptables has a nat
/// table.
fn chain_conflist(
    name: &str,
    bridge: &str,
    ipam_dir: &Path,
    subnet: std::net::Ipv4Addr,
    portmap: bool,
) -> String {
    let mut plugins = vec![
        serde_json::json!({
            "type": "bridge", "bridge": bridge, "isGateway": false, "ipMasq": false,
            "ipam": {"type": "host-local", "dataDir": ipam_dir,
                     "ranges": [[{"subnet": format!("{subnet}/24")}]]}
        }),
        serde_json::json!({"type": "loopback"}),
    ];
    if portmap {
        plugins.push(serde_json::json!({
            "type": "portmap", "capabilities": {"portMappings": true}, "snat": false
        }));
    }
    let conflist = serde_json::json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins});
    serde_json::to_string_pretty(&conflist).unwrap()
}

/// Debian's bridge + host-local + loopback (+ portmap, when iptables' nat table works) chain
/// on a bridge of its own, through peapod's CNI client.
fn cni_open(
    tmp: &Path,
    tag: &str,
    subnet: std::net::Ipv4Addr,
) -> Result<(peapod::net::cni::CniNetwork, bool), String> {
    let missing: Vec<_> = CNI_PLUGINS
        .iter()
        .filter(|p| !Path::new(CNI_PLUGIN_DIR).join(p).exists())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "CNI plugins {missing:?} missing from {CNI_PLUGIN_DIR} (Debian's \
             containernetworking-plugins; hack/deps.sh installs it)"
        ));
    }
    let portmap = sh("iptables", &["-w", "-t", "nat", "-S"]).0;
    let bridge = format!("cnib{tag}");
    let conf_dir = tmp.join("net.d");
    std::fs::create_dir_all(&conf_dir).map_err(|e| e.to_string())?;
    let conflist = chain_conflist(
        &format!("ppbench-{tag}"),
        &bridge,
        &tmp.join("cni-ipam"),
        subnet,
        portmap,
    );
    std::fs::write(conf_dir.join("10-ppbench.conflist"), conflist).map_err(|e| e.to_string())?;
    let cfg = peapod::net::cni::CniConfig {
        conf_dir,
        bin_dirs: vec![PathBuf::from(CNI_PLUGIN_DIR)],
        cache_dir: tmp.join("cni-cache"),
        ..peapod::net::cni::CniConfig::default()
    };
    with_net(|t| {
        t.cni = Some(cfg.clone());
        t.cni_bridge = bridge.clone();
    });
    let net = peapod::net::cni::CniNetwork::load(&cfg)
        .map_err(|e| format!("loading the CNI config: {e}"))?
        .ok_or("the CNI config was not found")?;
    Ok((net, portmap))
}

/// One pod through the built-in network: (setup, teardown as StopPodSandbox waits for it,
/// the background release after it).
async fn builtin_pod(
    net: &peapod::net::BuiltinNetwork,
    tmp: &Path,
    i: usize,
) -> Result<(Duration, Duration, Duration), String> {
    let id = peapod::fsutil::new_id();
    let ns = tmp.join(format!("ns-b{i}"));
    make_netns(&ns)?;
    with_net(|t| t.builtin_pods.push(id.clone()));
    let t0 = Instant::now();
    let r = net.setup(&id, &ns, &[]).await;
    let setup = t0.elapsed();
    let r = match r {
        Ok(_) => {
            // As StopPodSandbox: disconnect, then (as RemovePodSandbox) wait for the veth
            // deletion and address release it leaves to the background.
            let t0 = Instant::now();
            match net.disconnect(&id, Some(&ns)).await {
                Ok(()) => {
                    let teardown = t0.elapsed();
                    let t1 = Instant::now();
                    net.teardown(&id, None)
                        .await
                        .map(|_| (setup, teardown, t1.elapsed()))
                        .map_err(|e| format!("built-in release: {e}"))
                }
                Err(e) => Err(format!("built-in disconnect: {e}")),
            }
        }
        Err(e) => Err(format!("built-in setup: {e}")),
    };
    drop_netns(&ns);
    if r.is_ok() {
        with_net(|t| t.builtin_pods.retain(|p| *p != id));
    }
    r
}

/// One pod through the CNI chain: (ADD, DEL).
async fn cni_pod(
    net: &peapod::net::cni::CniNetwork,
    tmp: &Path,
    i: usize,
) -> Result<(Duration, Duration), String> {
    let id = peapod::fsutil::new_id();
    let pod = peapod::net::cni::PodArgs {
        id: id.clone(),
        name: format!("bench-{i}"),
        namespace: "ppbench".into(),
        uid: peapod::fsutil::new_id()[..32].into(),
    };
    let ns = tmp.join(format!("ns-c{i}"));
    make_netns(&ns)?;
    with_net(|t| t.cni_pods.push(id.clone()));
    let caps = peapod::net::cni::CapabilityArgs::default();
    let t0 = Instant::now();
    let r = net.add(&pod, &ns, &caps).await;
    let add = t0.elapsed();
    let r = match r {
        Ok(_) => {
            let t0 = Instant::now();
            peapod::net::cni::CniNetwork::del(net.config(), &id, Some(&ns))
                .await
                .map(|_| (add, t0.elapsed()))
                .map_err(|e| format!("CNI DEL: {e}"))
        }
        Err(e) => Err(format!("CNI ADD: {e}")),
    };
    drop_netns(&ns);
    r
}

/// The built-in network and the CNI chain, one pod each in turn.
async fn net_bench() -> (Result<NetTimes, String>, Result<(NetTimes, bool), String>) {
    let tag = peapod::fsutil::new_id()[..4].to_string();
    let tmp = std::env::temp_dir().join(unique("peapod-bench-net"));
    if let Err(e) = std::fs::create_dir_all(&tmp) {
        let e = format!("{}: {e}", tmp.display());
        return (Err(e.clone()), Err(e));
    }
    *NET.lock().unwrap() = Some(NetTeardown {
        tmp: tmp.clone(),
        dnat_chain_preexisted: nat_chains().contains(TOP_DNAT),
        ..Default::default()
    });
    let sub_b = free_subnet(&[]);
    let sub_c = match &sub_b {
        Ok(b) => free_subnet(&[*b]),
        Err(e) => Err(e.clone()),
    };
    let builtin = match sub_b {
        Ok(s) => builtin_open(&tmp.join("builtin"), &tag, s).await,
        Err(e) => Err(e),
    };
    let cni = sub_c.and_then(|s| cni_open(&tmp.join("cni"), &tag, s));
    let mut bt: Result<NetTimes, String> = builtin
        .as_ref()
        .map(|_| NetTimes::default())
        .map_err(Clone::clone);
    let mut ct: Result<NetTimes, String> = cni
        .as_ref()
        .map(|_| NetTimes::default())
        .map_err(Clone::clone);
    for i in 0..NET_WARM + NET_ITER {
        if let (Ok(net), Ok(acc)) = (&builtin, &mut bt) {
            match builtin_pod(net, &tmp, i).await {
                Ok((s, t, r)) if i >= NET_WARM => {
                    acc.setup.push(s);
                    acc.teardown.push(t);
                    acc.release.push(r);
                }
                Ok(_) => {}
                Err(e) => bt = Err(format!("pod {i}: {e}")),
            }
        }
        if let (Ok((net, _)), Ok(acc)) = (&cni, &mut ct) {
            match cni_pod(net, &tmp, i).await {
                Ok((s, t)) if i >= NET_WARM => {
                    acc.setup.push(s);
                    acc.teardown.push(t);
                }
                Ok(_) => {}
                Err(e) => ct = Err(format!("pod {i}: {e}")),
            }
        }
    }
    let portmap = cni.as_ref().map(|c| c.1).unwrap_or(false);
    drop(builtin);
    drop(cni);
    teardown_net();
    (bt, ct.map(|t| (t, portmap)))
}

/// containerd's RunPodSandbox and StopPodSandbox of a lone sandbox, each timed: on its
/// loopback-only network, then on the CNI chain. The network's share of each is the
/// difference of the medians (containerd does not time its CNI calls apart).
#[derive(Default)]
struct CtrdNet {
    lo_run: Vec<Duration>,
    lo_stop: Vec<Duration>,
    chain_run: Vec<Duration>,
    chain_stop: Vec<Duration>,
}

impl CtrdNet {
    /// (setup, teardown): the chain's medians less loopback's.
    fn network_share(&self) -> (Duration, Duration) {
        let d =
            |a: &[Duration], b: &[Duration]| median(a.to_vec()).saturating_sub(median(b.to_vec()));
        (
            d(&self.chain_run, &self.lo_run),
            d(&self.chain_stop, &self.lo_stop),
        )
    }
}

/// RunPodSandbox and StopPodSandbox of one sandbox (removed untimed).
async fn sandbox_cycle(
    rt: &mut Rt,
    logs: &Path,
    cgroup_parent: &str,
    i: usize,
) -> Result<(Duration, Duration), String> {
    let mut cfg = pod_config(&format!("bench-net-{i}"), logs);
    cfg.linux.as_mut().unwrap().cgroup_parent = cgroup_parent.into();
    let t0 = Instant::now();
    let id = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(cfg),
            runtime_handler: String::new(),
        })
        .await
        .map_err(rpc("RunPodSandbox"))?
        .into_inner()
        .pod_sandbox_id;
    let run = t0.elapsed();
    let t0 = Instant::now();
    let stopped = rt
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .map_err(rpc("StopPodSandbox"));
    let stop = t0.elapsed();
    rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
        .await
        .map_err(rpc("RemovePodSandbox"))?;
    stopped.map(|_| (run, stop))
}

/// containerd on the CNI chain (as peapod's CNI part uses it, on a bridge and /24 of its own),
/// against containerd on its loopback-only network. containerd reloads its CNI config when the
/// directory changes; the loopback network is put back after.
async fn ctrd_net_bench(c: &Ctrd, rt: &mut Rt, logs: &Path) -> Result<CtrdNet, String> {
    let mut t = CtrdNet::default();
    for i in 0..NET_WARM + NET_ITER {
        let (run, stop) = sandbox_cycle(rt, logs, &c.cgroup_parent, i).await?;
        if i >= NET_WARM {
            t.lo_run.push(run);
            t.lo_stop.push(stop);
        }
    }
    let missing: Vec<_> = CNI_PLUGINS
        .iter()
        .filter(|p| !Path::new(CNI_PLUGIN_DIR).join(p).exists())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "CNI plugins {missing:?} missing from {CNI_PLUGIN_DIR}"
        ));
    }
    let io = |e: std::io::Error| e.to_string();
    let bin = c.dir.join("cni/bin");
    for p in ["bridge", "host-local", "portmap"] {
        let link = bin.join(p);
        if !link.exists() {
            std::os::unix::fs::symlink(Path::new(CNI_PLUGIN_DIR).join(p), link).map_err(io)?;
        }
    }
    let subnet = free_subnet(&[])?;
    let bridge = format!("cnid{}", &peapod::fsutil::new_id()[..4]);
    if let Some(t) = CTRD.lock().unwrap().as_mut() {
        t.bridge = Some(bridge.clone());
    }
    let portmap = sh("iptables", &["-w", "-t", "nat", "-S"]).0;
    // Named under the run's network name, so teardown_ctrd knows its libcni cache entries.
    let name = format!("{}-chain", net_name(&c.dir));
    let conf = c.dir.join("cni/net.d");
    let lo_file = conf.join("10-peapod-bench-lo.conflist");
    let chain_file = conf.join("05-peapod-bench-chain.conflist");
    std::fs::write(
        &chain_file,
        chain_conflist(&name, &bridge, &c.dir.join("cni-ipam"), subnet, portmap),
    )
    .map_err(io)?;
    std::fs::remove_file(&lo_file).map_err(io)?;
    let r = async {
        wait_ctrd_network(rt, &name).await?;
        for i in 0..NET_WARM + NET_ITER {
            let (run, stop) = sandbox_cycle(rt, logs, &c.cgroup_parent, 100 + i).await?;
            if i >= NET_WARM {
                t.chain_run.push(run);
                t.chain_stop.push(stop);
            }
        }
        Ok::<_, String>(())
    }
    .await;
    std::fs::write(&lo_file, cni_conflist(&net_name(&c.dir))).map_err(io)?;
    std::fs::remove_file(&chain_file).map_err(io)?;
    r?;
    wait_ctrd_network(rt, &net_name(&c.dir)).await?;
    if Path::new("/sys/class/net").join(&bridge).exists() {
        sh("ip", &["link", "del", &bridge]);
    }
    Ok(t)
}

/// Waits (up to 10 s) until containerd's verbose Status names CNI network `name`.
async fn wait_ctrd_network(rt: &mut Rt, name: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let quoted = format!("\"{name}\"");
    loop {
        let st = rt
            .status(StatusRequest { verbose: true })
            .await
            .map_err(rpc("Status"))?
            .into_inner();
        if st.info.values().any(|v| v.contains(&quoted)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "containerd did not load CNI network {name} within 10 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pod start (RunPodSandbox + Create + Start) on the bench's daemon (its built-in network)
/// beside a second daemon with `mode = "none"`, alternately.
async fn start_net_vs_none(d: &Daemon) -> (Vec<Duration>, Vec<Duration>) {
    let d2 = Daemon::start_with("[network]\nmode = \"none\"\n").await;
    *PEAPOD_NONET.lock().unwrap() = Some(PeapodTeardown {
        socket: d2.socket.clone(),
        base: d2.root.parent().unwrap().to_path_buf(),
        cgroup_parent: d2.cgroup_parent.clone(),
        pid: d2.pid().unwrap() as i32,
        net: None,
    });
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let mut rt2 = d2.rt().await;
    let logs2 = d2.root.join("logs");
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for i in 0..ITER + 2 {
        let a = timed_pod(&mut rt, &logs, "", 1000 + i).await;
        let b = timed_pod(&mut rt2, &logs2, "", 1000 + i).await;
        if i >= 2 {
            with.push(a);
            without.push(b);
        }
    }
    drop(rt2);
    PEAPOD_NONET.lock().unwrap().take();
    d2.cleanup().await;
    (with, without)
}

fn print_net_table(
    mode: &str,
    builtin: &Result<NetTimes, String>,
    cni: &Result<(NetTimes, bool), String>,
    ctrd: Option<&Result<CtrdNet, String>>,
    start: &(Vec<Duration>, Vec<Duration>),
) {
    println!(
        "\npod network: {NET_ITER} pods per driver, one of each in turn, on fresh netns \
         (no host ports)"
    );
    println!(
        "| what | built-in | CNI chain, peapod | CNI chain, containerd | built-in / CNI peapod \
         | built-in / containerd |"
    );
    println!("|---|---|---|---|---|---|");
    let fig = |v: &[Duration]| format!("{} / {}", ms(median(v.to_vec())), ms(pct(v, 90)));
    let get = |w: usize, t: &NetTimes| match w {
        0 => t.setup.clone(),
        1 => t.teardown.clone(),
        _ => t.total(),
    };
    let ctrd_share = ctrd
        .and_then(|r| r.as_ref().ok())
        .map(CtrdNet::network_share);
    let ratio = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) if !b.is_zero() => format!("{:.2}", a.as_secs_f64() / b.as_secs_f64()),
        _ => "-".into(),
    };
    for (w, name) in [
        "setup (median / p90)",
        "teardown, as StopPodSandbox waits (median / p90)",
        "setup + teardown (median / p90)",
    ]
    .iter()
    .enumerate()
    {
        let b = builtin
            .as_ref()
            .ok()
            .map(|t| get(w, t))
            .filter(|v| !v.is_empty());
        let c = cni
            .as_ref()
            .ok()
            .map(|t| get(w, &t.0))
            .filter(|v| !v.is_empty());
        let k = ctrd_share.map(|(s, t)| match w {
            0 => s,
            1 => t,
            _ => s + t,
        });
        let bm = b.clone().map(median);
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            b.as_deref().map(fig).unwrap_or("-".into()),
            c.as_deref().map(fig).unwrap_or("-".into()),
            k.map(ms).unwrap_or("-".into()),
            ratio(bm, c.map(median)),
            ratio(bm, k),
        );
    }
    if let Some(r) = builtin.as_ref().ok().filter(|t| !t.release.is_empty()) {
        println!(
            "| veth deletion + address release, after StopPodSandbox answered (median / p90) \
             | {} | - (DEL does it) | - | | |",
            fig(&r.release)
        );
    }
    let (with, without) = start;
    if !with.is_empty() && !without.is_empty() {
        let (a, b) = (median(with.clone()), median(without.clone()));
        println!(
            "| pod start, network {mode} beside none (median) | {} | {} (none) | {:.2} \
             (with / without) |",
            ms(a),
            ms(b),
            a.as_secs_f64() / b.as_secs_f64()
        );
    }
    println!(
        "targets: built-in setup <= 5 ms median; built-in setup + teardown <= 0.15x the CNI \
         chain's; pod start with the network <= 1.15x without"
    );
    if let Ok((_, portmap)) = cni {
        println!(
            "CNI chain: bridge + host-local + loopback{} from {CNI_PLUGIN_DIR}, through peapod's \
             CNI client",
            if *portmap {
                " + portmap (snat off)"
            } else {
                " (portmap left out: iptables has no usable nat table)"
            }
        );
    }
    if let Some(Ok(k)) = ctrd {
        println!(
            "containerd: a lone sandbox's RunPodSandbox / StopPodSandbox medians on the chain \
             {} / {}, on loopback only {} / {}; its column is the difference",
            ms(median(k.chain_run.clone())),
            ms(median(k.chain_stop.clone())),
            ms(median(k.lo_run.clone())),
            ms(median(k.lo_stop.clone())),
        );
    }
    if let Some(Err(e)) = ctrd {
        println!("containerd on the CNI chain left out: {e}");
    }
    if let Err(e) = builtin {
        println!("built-in network left out: {e}");
    }
    if let Err(e) = cni {
        println!("CNI chain left out: {e}");
    }
}
