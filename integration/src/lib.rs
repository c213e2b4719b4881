//! Test harness for peapod's end-to-end tests: fixtures, a daemon per test on private
//! directories and a private cgroup parent, and a CRI client over the real unix socket.
//!
//! The tests need root, runc and the fixture images (hack/fixtures.py); without root they
//! print why and pass vacuously only through [`require_root`], which the README's test command
//! never hits because CI runs as root.

pub mod hostile;
pub mod layout;
pub mod nspawn;
pub mod staticpod;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use peapod::api::image_service_client::ImageServiceClient;
use peapod::api::runtime_service_client::RuntimeServiceClient;
use peapod::api::*;
use tonic::transport::{Channel, Endpoint, Uri};

pub type Rt = RuntimeServiceClient<Channel>;
pub type Img = ImageServiceClient<Channel>;

/// The workspace root (integration/..).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The built binaries: $PEAPOD_BIN_DIR, else the debug dir of $CARGO_TARGET_DIR or target/
/// (built by `make test`).
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PEAPOD_BIN_DIR") {
        return PathBuf::from(d);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("debug")
}

/// True when the end-to-end tests can run here; otherwise says why.
pub fn require_root() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: end-to-end tests need root");
        return false;
    }
    for bin in ["peapod", "peapod-shim"] {
        assert!(
            bin_dir().join(bin).exists(),
            "{} missing: build the workspace first (make test does)",
            bin_dir().join(bin).display()
        );
    }
    true
}

/// Builds the fixture images once per test process and returns their directory.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = workspace().join("target/fixtures");
        let st = Command::new("python3")
            .arg(workspace().join("hack/fixtures.py"))
            .arg(&out)
            .stdout(Stdio::null())
            .status()
            .expect("running hack/fixtures.py");
        assert!(st.success(), "hack/fixtures.py failed");
        out
    })
}

/// A static helper binary for System V IPC checks (busybox has no ipcmk), bind-mounted into
/// containers by the tests that need it.
pub fn shmtool() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = workspace().join("target/fixtures");
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("shmtool.c");
        let bin = dir.join("shmtool");
        std::fs::write(
            &src,
            "#include <sys/ipc.h>\n#include <sys/shm.h>\n#include <stdio.h>\n#include <stdlib.h>\n\
             int main(int c, char **v) { if (c < 2) return 2;\n\
             int id = shmget((key_t)atoi(v[1]), 4096, IPC_CREAT | 0600);\n\
             if (id < 0) { perror(\"shmget\"); return 1; } printf(\"shmid %d\\n\", id); return 0; }\n",
        )
        .unwrap();
        let st = Command::new("gcc")
            .args(["-static", "-O2", "-o"])
            .arg(&bin)
            .arg(&src)
            .status()
            .expect("gcc");
        assert!(st.success(), "compiling shmtool");
        bin
    })
}

/// The test daemons' log filter: debug, for the failure reports; `make bench` sets
/// PEAPOD_IT_LOG_LEVEL=info, the daemon's default, so that it measures what operators run
/// (debug formatting costs CPU and touches code a quiet daemon never pages in).
fn log_level() -> String {
    std::env::var("PEAPOD_IT_LOG_LEVEL").unwrap_or_else(|_| "debug".into())
}

/// A running daemon on private directories, killed (not its pods) when dropped.
pub struct Daemon {
    pub root: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub cgroup_parent: String,
    pub log: PathBuf,
    /// Extra TOML appended to the daemon's config (e.g. a [registry] section).
    pub extra_config: String,
    /// Extra environment for the daemon process (e.g. PEAPOD_FAILPOINT), applied at spawn.
    pub env: Vec<(String, String)>,
    /// Extra arguments of `peapod daemon` (e.g. `--log-format json`), applied at spawn.
    pub args: Vec<String>,
    /// This daemon's own pod network (bridge, CIDR, nft table), so that daemons of tests
    /// running side by side never share one.
    pub net: TestNet,
    child: Option<Child>,
}

/// A test daemon's built-in network: a bridge, a /24 and an nft table of its own. With
/// PEAPOD_IT_NETWORK=none (a host without veth, bridge or nf_tables) pods get loopback only.
#[derive(Clone, Debug)]
pub struct TestNet {
    pub mode: String,
    pub bridge: String,
    pub cidr: String,
    pub table: String,
}

impl TestNet {
    fn new() -> TestNet {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let tag = &peapod::fsutil::new_id()[..8];
        TestNet {
            mode: std::env::var("PEAPOD_IT_NETWORK").unwrap_or_else(|_| "builtin".into()),
            bridge: format!("ppt{tag}"),
            // A second octet per test process, a third per daemon in it.
            cidr: format!("10.{}.{}.0/24", 200 + std::process::id() % 50, n % 256),
            table: format!("ppt_{tag}"),
        }
    }

    fn toml(&self) -> String {
        format!(
            "[network]\nmode = {:?}\nbridge = {:?}\npod_cidr = {:?}\nnft_table = {:?}\n\
             host_forwarding = false\n",
            self.mode, self.bridge, self.cidr, self.table
        )
    }

    /// Removes the bridge and the table (what outlives the daemon by design).
    pub async fn remove(&self, root: &Path) {
        if self.mode != "builtin" {
            return;
        }
        let mut cfg = peapod::net::NetConfig::new(root.join("net/ipam"));
        cfg.bridge = self.bridge.clone();
        cfg.ipv4_cidr = self.cidr.parse().ok();
        cfg.nft_table = self.table.clone();
        cfg.host_forwarding = false;
        match peapod::net::BuiltinNetwork::new(cfg).await {
            Ok(n) => {
                if let Err(e) = n.remove().await {
                    eprintln!("removing test network {}: {e}", self.bridge);
                }
            }
            Err(e) => eprintln!("removing test network {}: {e}", self.bridge),
        }
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        peapod::fsutil::new_id().split_at(8).0
    )
}

impl Daemon {
    /// Private dirs, the fixture images imported, the daemon started and answering.
    pub async fn start() -> Daemon {
        Self::start_with("").await
    }

    /// As [`start`](Self::start), with `extra` appended to the daemon's TOML config.
    pub async fn start_with(extra: &str) -> Daemon {
        let base = std::env::temp_dir().join(unique("peapod-it"));
        let d = Daemon {
            root: base.join("root"),
            state: base.join("state"),
            socket: base.join("state/peapod.sock"),
            cgroup_parent: format!("/{}", unique("peapod-it")),
            log: base.join("daemon.log"),
            extra_config: extra.to_string(),
            env: Vec::new(),
            args: Vec::new(),
            net: TestNet::new(),
            child: None,
        };
        std::fs::create_dir_all(&d.root).unwrap();
        for img in ["busybox", "busybox-entry", "busybox-user"] {
            d.import(img);
        }
        let mut d = d;
        d.spawn().await;
        d
    }

    /// Imports a fixture image (hack/fixtures.py name) with the CLI; a running daemon sees it
    /// on its next lookup.
    pub fn import(&self, fixture: &str) {
        let out = Command::new(bin_dir().join("peapod"))
            .arg("--root")
            .arg(&self.root)
            .args(["image", "import"])
            .arg(fixtures().join(format!("{fixture}.tar")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "import {fixture}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The daemon's static pod manifest directory.
    pub fn manifests(&self) -> PathBuf {
        self.root.parent().unwrap().join("manifests")
    }

    /// Runs the `peapod` CLI on this daemon's config: (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(bin_dir().join("peapod"))
            .arg("--config")
            .arg(self.config_file())
            .args(args)
            .output()
            .expect("running the peapod CLI");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn config_file(&self) -> PathBuf {
        let p = self.root.parent().unwrap().join("peapod.toml");
        std::fs::write(
            &p,
            format!(
                "socket = {:?}\nroot_dir = {:?}\nstate_dir = {:?}\ncgroup_parent = {:?}\n{}\n{}\n{}",
                self.socket,
                self.root,
                self.state,
                self.cgroup_parent,
                self.extra_config,
                // After the extra config (which may end in a table of its own), unless a test
                // sets the network itself.
                if self.extra_config.contains("[network]") {
                    String::new()
                } else {
                    self.net.toml()
                },
                // Static pods from the test's own directory, never the host's.
                if self.extra_config.contains("[static_pods]") {
                    String::new()
                } else {
                    format!(
                        "[static_pods]\nmanifest_dir = {:?}\napi_socket = {:?}\nlog_dir = {:?}\n\
                         node_name = \"peapod-it\"\n",
                        self.manifests(),
                        self.state.join("api.sock"),
                        self.root.parent().unwrap().join("pod-logs"),
                    )
                }
            ),
        )
        .unwrap();
        p
    }

    /// Starts (or restarts) the daemon process and waits for the socket to answer.
    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let start_len = log.metadata().map(|m| m.len() as usize).unwrap_or(0);
        let child = Command::new(bin_dir().join("peapod"))
            .arg("--config")
            .arg(self.config_file())
            .args(["daemon", "--log-level", &log_level()])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting peapod daemon");
        self.child = Some(child);
        // Generous: under TCG with another test binary beside it a debug daemon is slow.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut rt) = self.try_connect().await {
                if rt.version(VersionRequest::default()).await.is_ok() {
                    return;
                }
            }
            let exited = matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_))));
            if exited || Instant::now() >= deadline {
                panic!("daemon did not come up: {}", self.stuck_report(start_len));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Why a spawned daemon did not answer: whether it exited (and how), or else where each of
    /// its threads waits, then the log it wrote since this spawn (the earlier runs' lines are
    /// in the file too, and a CI excerpt would show only them).
    fn stuck_report(&mut self, start_len: usize) -> String {
        let mut out = String::new();
        match self.child.as_mut().map(|c| (c.id(), c.try_wait())) {
            Some((_, Ok(Some(st)))) => out.push_str(&format!("it exited: {st}\n")),
            Some((pid, _)) => {
                out.push_str(&format!("pid {pid} still running; its threads:\n"));
                let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
                    .into_iter()
                    .flatten()
                    .flatten();
                for t in tasks {
                    let read = |f: &str| {
                        std::fs::read_to_string(t.path().join(f))
                            .unwrap_or_default()
                            .trim()
                            .to_string()
                    };
                    let state = read("stat")
                        .rsplit_once(')')
                        .and_then(|(_, r)| r.split_whitespace().next().map(str::to_string))
                        .unwrap_or_default();
                    out.push_str(&format!(
                        "  {} {} state={state} wchan={}\n",
                        t.file_name().to_string_lossy(),
                        read("comm"),
                        read("wchan"),
                    ));
                }
            }
            None => out.push_str("no child\n"),
        }
        let log = self.log_text();
        let since = log.get(start_len..).unwrap_or(&log);
        let lines: Vec<&str> = since.lines().collect();
        out.push_str("the last lines of its log since this start:\n");
        for l in &lines[lines.len().saturating_sub(60)..] {
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    /// Kills the daemon process (SIGKILL: the harshest restart), leaving pods running.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits up to `limit` for the daemon process to end by itself (a failpoint, a kill from
    /// elsewhere) and reaps it; true when it did.
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while let Some(c) = self.child.as_mut() {
            if let Ok(Some(_)) = c.try_wait() {
                self.child = None;
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// True while the daemon process runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn try_connect(&self) -> Result<Rt, tonic::transport::Error> {
        Ok(RuntimeServiceClient::new(channel(&self.socket).await?))
    }

    pub async fn rt(&self) -> Rt {
        self.try_connect().await.expect("connect")
    }

    /// A GetContainerEvents stream on a connection of its own: a stream nobody reads holds
    /// its connection's HTTP/2 flow-control window, which would stall every call sharing it.
    pub async fn events(&self) -> EventStream {
        let mut conn = self.rt().await;
        let stream = conn
            .get_container_events(GetEventsRequest {})
            .await
            .expect("GetContainerEvents")
            .into_inner();
        EventStream {
            _conn: conn,
            stream,
        }
    }

    pub async fn img(&self) -> Img {
        ImageServiceClient::new(channel(&self.socket).await.expect("connect"))
    }

    /// Removes every pod (so nothing outlives the test), then stops the daemon and deletes
    /// its directories and cgroup parent.
    pub async fn cleanup(mut self) {
        self.teardown().await;
    }

    async fn teardown(&mut self) {
        // Static pods first: with their manifests gone the daemon stops them, and no worker
        // makes one again while its sandbox is removed below.
        let manifests: Vec<_> = std::fs::read_dir(self.manifests())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        if self.child.is_some() && !manifests.is_empty() {
            for m in manifests {
                let _ = std::fs::remove_file(m);
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                let (ok, out, _) = self.cli(&["get", "pods", "-A", "-o", "name"]);
                if !ok || out.trim().is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // A daemon that exited (or never came up) has no pods to remove over CRI.
        if let (true, Ok(mut rt)) = (self.child.is_some(), self.try_connect().await) {
            if let Ok(list) = rt.list_pod_sandbox(ListPodSandboxRequest::default()).await {
                for p in list.into_inner().items {
                    let _ = rt
                        .remove_pod_sandbox(RemovePodSandboxRequest {
                            pod_sandbox_id: p.id,
                        })
                        .await;
                }
            }
        }
        self.kill();
        // PEAPOD_IT_KEEP_LOGS=DIR keeps each daemon's log for a look after the run.
        if let Some(dir) = std::env::var_os("PEAPOD_IT_KEEP_LOGS") {
            let name = self.root.parent().unwrap().file_name().unwrap().to_owned();
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::copy(&self.log, Path::new(&dir).join(name).with_extension("log"));
        }
        for m in cgroup_mounts() {
            let _ = std::fs::remove_dir(m.join(self.cgroup_parent.trim_start_matches('/')));
        }
        self.net.remove(&self.root).await;
        let _ = std::fs::remove_dir_all(self.root.parent().unwrap());
    }
}

impl Drop for Daemon {
    /// A test that panicked still must not leave pods behind: tear down from a fresh thread
    /// (the test's runtime is unwinding), and show the daemon's log.
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        if IN_TEARDOWN.with(|t| t.get()) {
            self.kill();
            return;
        }
        if std::thread::panicking() {
            eprintln!("--- daemon log ---\n{}", self.log_text());
        }
        let mut me = Daemon {
            root: self.root.clone(),
            state: self.state.clone(),
            socket: self.socket.clone(),
            cgroup_parent: self.cgroup_parent.clone(),
            log: self.log.clone(),
            extra_config: self.extra_config.clone(),
            env: Vec::new(),
            args: Vec::new(),
            net: self.net.clone(),
            child: self.child.take(),
        };
        let _ = std::thread::spawn(move || {
            // A panic in this teardown drops `me` while unwinding: that Drop only kills, or
            // each failed teardown would start another.
            IN_TEARDOWN.with(|t| t.set(true));
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(me.teardown());
        })
        .join();
    }
}

thread_local! {
    static IN_TEARDOWN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A GetContainerEvents stream and the connection it runs on.
pub struct EventStream {
    _conn: Rt,
    pub stream: tonic::Streaming<ContainerEventResponse>,
}

impl EventStream {
    /// The next event, None when none comes within `limit`, or how the stream ended.
    pub async fn try_next(
        &mut self,
        limit: Duration,
    ) -> Result<Option<ContainerEventResponse>, tonic::Status> {
        match tokio::time::timeout(limit, self.stream.message()).await {
            Err(_) => Ok(None),
            Ok(Ok(Some(ev))) => Ok(Some(ev)),
            Ok(Ok(None)) => Err(tonic::Status::ok("the event stream ended")),
            Ok(Err(e)) => Err(e),
        }
    }

    /// The next event, or None when none comes within `limit`; panics when the stream ends.
    pub async fn next(&mut self, limit: Duration) -> Option<ContainerEventResponse> {
        self.try_next(limit).await.expect("event stream")
    }
}

pub async fn channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
}

/// Every cgroup hierarchy mount point under /sys/fs/cgroup.
pub fn cgroup_mounts() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fs = post.split_whitespace().next()?;
            (fs == "cgroup" || fs == "cgroup2")
                .then(|| PathBuf::from(pre.split_whitespace().nth(4).unwrap()))
        })
        .filter(|p| p.starts_with("/sys/fs/cgroup"))
        .collect()
}

/// Mount points in this mount namespace under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect()
}

/// A pod config with a unique name, logging to `log_dir`.
pub fn pod_config(name: &str, log_dir: &Path) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: peapod::fsutil::new_id(),
            namespace: "itest".into(),
            attempt: 0,
        }),
        hostname: format!("{name}-host"),
        log_directory: log_dir.to_string_lossy().into_owned(),
        labels: HashMap::from([("suite".into(), "peapod-it".into())]),
        linux: Some(LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

pub fn container_config(name: &str, image: &str, cmd: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    }
}

pub const BUSYBOX: &str = "peapod.test/busybox:latest";

/// Runs a pod and one container per (name, cmd), starting each; returns pod and container IDs.
pub async fn run_pod(
    rt: &mut Rt,
    config: PodSandboxConfig,
    containers: Vec<ContainerConfig>,
) -> (String, Vec<String>) {
    let pod = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    let mut ids = Vec::new();
    for c in containers {
        let id = rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(c),
                sandbox_config: Some(config.clone()),
            })
            .await
            .expect("CreateContainer")
            .into_inner()
            .container_id;
        rt.start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("StartContainer");
        ids.push(id);
    }
    (pod, ids)
}

pub async fn container_status(rt: &mut Rt, id: &str) -> ContainerStatus {
    rt.container_status(ContainerStatusRequest {
        container_id: id.into(),
        verbose: true,
    })
    .await
    .expect("ContainerStatus")
    .into_inner()
    .status
    .unwrap()
}

/// PodSandboxStatus's status (without the verbose info).
pub async fn sandbox_status(rt: &mut Rt, pod: &str) -> PodSandboxStatus {
    rt.pod_sandbox_status(PodSandboxStatusRequest {
        pod_sandbox_id: pod.into(),
        verbose: false,
    })
    .await
    .expect("PodSandboxStatus")
    .into_inner()
    .status
    .unwrap()
}

/// PodSandboxStatus's verbose info: pid, netns, cgroup, ...
pub async fn sandbox_info(rt: &mut Rt, pod: &str) -> serde_json::Value {
    let info = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.into(),
            verbose: true,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner()
        .info;
    serde_json::from_str(&info["info"]).unwrap()
}

pub async fn container_pid(rt: &mut Rt, id: &str) -> (i32, i32) {
    let info = rt
        .container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info;
    let v: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    (
        v["pid"].as_i64().unwrap() as i32,
        v["monitorPid"].as_i64().unwrap() as i32,
    )
}

/// Polls until the container has exited; panics after `limit`.
pub async fn wait_exited(rt: &mut Rt, id: &str, limit: Duration) -> ContainerStatus {
    let deadline = Instant::now() + limit;
    loop {
        let s = container_status(rt, id).await;
        if s.state == ContainerState::ContainerExited as i32 {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} did not exit: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the container's CRI log until `pred` holds for the log's content lines.
pub async fn wait_log(
    path: &Path,
    limit: Duration,
    pred: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        let lines = log_lines(path);
        if pred(&lines) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "log {} never matched; it holds: {lines:#?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The content of each CRI log record (after `<time> <stream> <tag> `).
pub fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.splitn(4, ' ').nth(3).map(str::to_string))
        .collect()
}

/// True when a process with this PID exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .chars()
                .next();
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

/// Debian's docker-registry on 127.0.0.1 with its storage in a temp dir, killed when dropped.
pub struct Registry {
    pub addr: String,
    dir: PathBuf,
    child: Child,
    creds: Option<String>,
}

impl Registry {
    pub fn start() -> Registry {
        Self::start_auth(None)
    }

    /// A registry that wants HTTP basic auth with `user:password` (htpasswd, bcrypt).
    pub fn start_auth(creds: Option<(&str, &str)>) -> Registry {
        let dir = std::env::temp_dir().join(unique("peapod-registry"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        // A free port: bind to 0, read it, release it for the registry.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let auth = match creds {
            None => String::new(),
            Some((user, pass)) => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, pass])
                    .output()
                    .expect("htpasswd (Debian package apache2-utils)");
                assert!(out.status.success());
                std::fs::write(dir.join("htpasswd"), out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: peapod-test\n    path: {}\n",
                    dir.join("htpasswd").display()
                )
            }
        };
        std::fs::write(
            dir.join("config.yml"),
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {addr}\n{auth}",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (Debian package docker-registry; hack/deps.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Registry {
            addr,
            dir,
            child,
            creds: creds.map(|(u, p)| format!("{u}:{p}")),
        }
    }

    /// Pushes a fixture image (hack/fixtures.py name) as `repo:tag`; returns the manifest digest.
    pub fn push(&self, fixture: &str, repo_tag: &str) -> String {
        self.push_layout(&fixtures().join(fixture), repo_tag)
    }

    /// Pushes the OCI image layout directory `dir` as `repo:tag`.
    pub fn push_layout(&self, dir: &Path, repo_tag: &str) -> String {
        let out = Command::new("python3")
            .arg(workspace().join("hack/push.py"))
            .arg(dir)
            .arg(&self.addr)
            .arg(repo_tag)
            .args(&self.creds)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "push: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Daemon {
    /// Everything of this daemon's that outlives its pods when it should not: mounts under its
    /// directories, sandbox and container records and state, the runtimes' containers, cgroups
    /// under its cgroup parent, and live peapod-shim processes (pause or monitor) that belong to
    /// it. Empty once every pod is removed. Zombies do not count: they have exited, and PID 1
    /// here does not reap the pauses a killed daemon leaves to it.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        for dir in [&self.root, &self.state] {
            out.extend(mounts_under(dir).into_iter().map(|m| format!("mount {m}")));
        }
        for dir in [
            self.root.join("sandboxes"),
            self.root.join("containers"),
            self.state.join("sandboxes"),
            self.state.join("containers"),
        ] {
            if let Ok(it) = std::fs::read_dir(&dir) {
                out.extend(it.flatten().map(|e| format!("file {}", e.path().display())));
            }
        }
        if let Ok(handlers) = std::fs::read_dir(self.state.join("runtime")) {
            for h in handlers.flatten() {
                if let Ok(it) = std::fs::read_dir(h.path()) {
                    out.extend(
                        it.flatten()
                            .filter(|e| e.path().is_dir())
                            .map(|e| format!("runtime state {}", e.path().display())),
                    );
                }
            }
        }
        for m in cgroup_mounts() {
            let parent = m.join(self.cgroup_parent.trim_start_matches('/'));
            if let Ok(it) = std::fs::read_dir(&parent) {
                out.extend(
                    it.flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| format!("cgroup {}", e.path().display())),
                );
            }
        }
        out.extend(
            self.shim_processes()
                .into_iter()
                .map(|(pid, cmd)| format!("process {pid}: {cmd}")),
        );
        // The pod network: veths on this daemon's bridge, addresses still allocated, CNI
        // attachments still cached.
        if let Ok(it) = std::fs::read_dir(format!("/sys/class/net/{}/brif", self.net.bridge)) {
            out.extend(it.flatten().map(|e| {
                format!(
                    "veth {} on {}",
                    e.file_name().to_string_lossy(),
                    self.net.bridge
                )
            }));
        }
        // Pod rules (DNAT, hairpin) in this daemon's nftables table: each names its pod in a
        // comment "peapod <id> ...".
        if self.net.mode == "builtin" {
            let (_, text) = sh("nft", &["list", "table", "inet", &self.net.table]);
            if text.starts_with("nft: ") {
                out.push(format!(
                    "nft rules not checked ({text}); hack/deps.sh installs nft"
                ));
            }
            out.extend(
                text.lines()
                    .filter(|l| l.contains("comment \"peapod "))
                    .map(|l| format!("nft rule in {}: {}", self.net.table, l.trim())),
            );
        }
        for dir in [self.root.join("net/ipam"), self.root.join("cni")] {
            if let Ok(it) = std::fs::read_dir(&dir) {
                out.extend(
                    it.flatten()
                        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                        .map(|e| format!("network state {}", e.path().display())),
                );
            }
        }
        out
    }

    /// Live (not zombie) peapod-shim processes whose command line names this daemon's state
    /// directory, with their command lines.
    pub fn shim_processes(&self) -> Vec<(i32, String)> {
        let state = self.state.to_string_lossy().into_owned();
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.starts_with("peapod-shim ") && cmd.contains(&state) && pid_alive(pid) {
                out.push((pid, cmd));
            }
        }
        out
    }
}

/// Runs a command to its end: (success, stdout then stderr). A command that cannot start
/// gives (false, why).
pub fn sh(cmd: &str, args: &[&str]) -> (bool, String) {
    match Command::new(cmd).args(args).output() {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, format!("{cmd}: {e}")),
    }
}

/// True when the IPv4 networks `a/la` and `b/lb` overlap.
pub fn ipv4_overlaps(a: std::net::Ipv4Addr, la: u32, b: std::net::Ipv4Addr, lb: u32) -> bool {
    let m = la.min(lb);
    if m == 0 {
        return true;
    }
    let mask = u32::MAX << (32 - m);
    u32::from(a) & mask == u32::from(b) & mask
}

/// The host's IPv4 route destinations (every table) and addresses, as (address, prefix).
pub fn host_ipv4_prefixes() -> Vec<(std::net::Ipv4Addr, u32)> {
    let json = |args: &[&str]| -> Vec<serde_json::Value> {
        let (_, out) = sh("ip", args);
        serde_json::from_str::<serde_json::Value>(&out)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for r in json(&["-4", "-j", "route", "show", "table", "all"]) {
        let Some(dst) = r["dst"].as_str() else {
            continue;
        };
        if dst == "default" {
            continue;
        }
        let (a, l) = dst.split_once('/').unwrap_or((dst, "32"));
        if let (Ok(a), Ok(l)) = (a.parse(), l.parse()) {
            out.push((a, l));
        }
    }
    for link in json(&["-4", "-j", "addr"]) {
        for a in link["addr_info"].as_array().cloned().unwrap_or_default() {
            if let (Some(ip), Some(l)) = (a["local"].as_str(), a["prefixlen"].as_u64()) {
                if let Ok(ip) = ip.parse() {
                    out.push((ip, l as u32));
                }
            }
        }
    }
    out
}

/// A random 10.2xx.y.0/24 that overlaps nothing the host routes or has, nor the /24s in
/// `also`; None when 200 tries found none.
pub fn free_ipv4_subnet(also: &[std::net::Ipv4Addr]) -> Option<std::net::Ipv4Addr> {
    let mut taken = host_ipv4_prefixes();
    taken.extend(also.iter().map(|a| (*a, 24)));
    for _ in 0..200 {
        let id = peapod::fsutil::new_id();
        let r = [0, 2].map(|i| u8::from_str_radix(&id[i..i + 2], 16).unwrap());
        let net = std::net::Ipv4Addr::new(10, 200 + r[0] % 55, r[1], 0);
        if !taken.iter().any(|(a, l)| ipv4_overlaps(net, 24, *a, *l)) {
            return Some(net);
        }
    }
    None
}

/// The crictl to test with: $CRICTL, else crictl on PATH (integration/build.rs sets
/// `cfg(peapod_crictl)` by the same rule).
pub fn crictl() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CRICTL") {
        return Some(PathBuf::from(p));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("crictl"))
        .find(|p| p.is_file())
}
