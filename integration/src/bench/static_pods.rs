//! The manifest door in `make bench`: a manifest file written → its pod Running, and → Ready
//! for a pod with an exec readiness probe, beside Debian's podman running the same manifest
//! with `podman kube play` (installed on demand from Debian's packages, as containerd is; a
//! private root, runroot and cgroupfs, so nothing of the machine's is used); then the daemon's
//! CPU and RSS while 100 static pods each answer an httpGet liveness probe every second.
//!
//! The pods of the first two rows use the host network on both sides, so that podman needs no
//! network backend (netavark would add firewall rules of its own) and both measure the pod
//! lifecycle alone. peapod's time is from the rename of the file into the manifest directory
//! to the first API answer showing the container running (polled every millisecond); podman's
//! is the `kube play` command, which returns once the pod's containers have started.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use peapod_integration::staticpod::write_manifest;
use peapod_integration::*;
use serde_json::Value;

const RUNS: usize = 10;
const PROBED_PODS: usize = 100;
const CPU_WINDOW: Duration = Duration::from_secs(10);

pub struct StaticFigures {
    pub to_running: Vec<Duration>,
    pub to_ready: Vec<Duration>,
    pub podman: Result<(Vec<Duration>, String), String>,
    pub probed: Result<ProbeLoad, String>,
}

pub struct ProbeLoad {
    pub cpu_percent: f64,
    pub rss_kib: u64,
    pub unhealthy: usize,
}

fn manifest(name: &str, ready_probe: bool) -> String {
    let probe = if ready_probe {
        "    readinessProbe:\n      exec: {command: [\"true\"]}\n      periodSeconds: 1\n"
    } else {
        ""
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  hostNetwork: true\n  \
         terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    \
         image: peapod.test/busybox:latest\n    imagePullPolicy: IfNotPresent\n    \
         command: [\"sleep\", \"3000\"]\n{probe}"
    )
}

async fn api_pod(d: &Daemon, name: &str) -> Option<Value> {
    let path = format!("/api/v1/namespaces/default/pods/{name}");
    let body = peapod::cli::client::get(&d.state.join("api.sock"), &path)
        .await
        .ok()?;
    let v: Value = serde_json::from_slice(&body).ok()?;
    (v["kind"] == "Pod").then_some(v)
}

async fn api_pods(d: &Daemon) -> Vec<Value> {
    let body = peapod::cli::client::get(&d.state.join("api.sock"), "/api/v1/pods")
        .await
        .unwrap_or_default();
    serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["items"].as_array().cloned())
        .unwrap_or_default()
}

fn running(v: &Value) -> bool {
    v["status"]["containerStatuses"][0]["state"]["running"].is_object()
}

fn ready(v: &Value) -> bool {
    v["status"]["containerStatuses"][0]["ready"] == true
}

/// Writes the manifest and times it to `done`; then removes it and waits for the pod to go.
async fn one(d: &Daemon, name: &str, probe: bool, done: fn(&Value) -> bool) -> Option<Duration> {
    let file = format!("{name}.yaml");
    let t0 = Instant::now();
    write_manifest(d, &file, &manifest(name, probe));
    let mut took = None;
    while t0.elapsed() < Duration::from_secs(30) {
        if api_pod(d, name).await.as_ref().is_some_and(done) {
            took = Some(t0.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let _ = std::fs::remove_file(d.manifests().join(&file));
    let t1 = Instant::now();
    while api_pod(d, name).await.is_some() && t1.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    took
}

pub async fn bench(d: &Daemon) -> StaticFigures {
    let mut to_running = Vec::new();
    let mut to_ready = Vec::new();
    // Each in turn with podman's runs, after one warm-up of each.
    let podman = Podman::start();
    let mut podman_runs = Vec::new();
    let mut podman_err = None;
    for i in 0..=RUNS {
        let r = one(d, &format!("bench-run-{i}"), false, running).await;
        let q = one(d, &format!("bench-ready-{i}"), true, ready).await;
        if i > 0 {
            to_running.extend(r);
            to_ready.extend(q);
        }
        if let Ok(p) = &podman {
            match p.play(&manifest(&format!("bench-podman-{i}"), false)) {
                Ok(t) if i > 0 => podman_runs.push(t),
                Ok(_) => {}
                Err(e) => podman_err = Some(e),
            }
        }
    }
    let podman = match (podman, podman_err) {
        (Ok(p), None) => Ok((podman_runs, p.version.clone())),
        (Ok(_), Some(e)) | (Err(e), _) => Err(e),
    };
    teardown();
    let probed = probe_load(d).await;
    StaticFigures {
        to_running,
        to_ready,
        podman,
        probed,
    }
}

/// 100 pods, each a busybox httpd on the pod network with an httpGet liveness probe every
/// second: the daemon's CPU over a window once all run, and its RSS.
async fn probe_load(d: &Daemon) -> Result<ProbeLoad, String> {
    if d.net.mode != "builtin" {
        return Err("needs the pod network".into());
    }
    let pid = d.pid().ok_or("no daemon pid")? as i32;
    for i in 0..PROBED_PODS {
        write_manifest(
            d,
            &format!("probed-{i}.yaml"),
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: probed-{i}}}\nspec:\n  \
                 terminationGracePeriodSeconds: 1\n  containers:\n  - name: web\n    \
                 image: peapod.test/busybox:latest\n    imagePullPolicy: IfNotPresent\n    \
                 command: [\"sh\", \"-c\", \"mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www\"]\n    \
                 livenessProbe:\n      httpGet: {{path: /index.html, port: 8080}}\n      periodSeconds: 1\n"
            ),
        );
    }
    let t0 = Instant::now();
    let result = loop {
        let pods = api_pods(d).await;
        let up = pods
            .iter()
            .filter(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("probed-"))
            })
            .filter(|p| running(p))
            .count();
        if up == PROBED_PODS {
            break Ok(());
        }
        if t0.elapsed() > Duration::from_secs(180) {
            break Err(format!(
                "only {up} of {PROBED_PODS} pods running after 180 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let figures = match result {
        Ok(()) => {
            // Past the first probes of every pod.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let before = cpu_ticks(pid);
            let t = Instant::now();
            tokio::time::sleep(CPU_WINDOW).await;
            let after = cpu_ticks(pid);
            let secs = t.elapsed().as_secs_f64();
            let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
                .ok()
                .flatten()
                .unwrap_or(100) as f64;
            let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                })
                .unwrap_or(0);
            let body = peapod::cli::client::get(&d.state.join("api.sock"), "/api/v1/events")
                .await
                .unwrap_or_default();
            let unhealthy = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["items"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter(|e| e["reason"] == "Unhealthy")
                .count();
            Ok(ProbeLoad {
                cpu_percent: (after - before) as f64 / ticks / secs * 100.0,
                rss_kib,
                unhealthy,
            })
        }
        Err(e) => Err(e),
    };
    for i in 0..PROBED_PODS {
        let _ = std::fs::remove_file(d.manifests().join(format!("probed-{i}.yaml")));
    }
    let t0 = Instant::now();
    while !api_pods(d).await.is_empty() && t0.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    figures
}

fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// A private podman: its own root, runroot, cgroupfs manager and file events, runc.
struct Podman {
    dir: PathBuf,
    version: String,
}

static PODMAN: Mutex<Option<PodmanTeardown>> = Mutex::new(None);

struct PodmanTeardown {
    dir: PathBuf,
}

impl PodmanTeardown {
    fn teardown(self) {
        let p = Podman {
            dir: self.dir,
            version: String::new(),
        };
        let _ = p.cmd(&["pod", "rm", "-af", "-t", "0"]).status();
        let _ = p.cmd(&["rm", "-af", "-t", "0"]).status();
        let _ = p.cmd(&["system", "reset", "-f"]).status();
        for m in mounts_under(&p.dir) {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&p.dir);
        // podman's cgroupfs parent of its pods: rmdir only, so one holding pods of another
        // podman stays.
        for m in cgroup_mounts() {
            let _ = std::fs::remove_dir(m.join("libpod_parent"));
        }
    }
}

/// Undoes the private podman (from the bench's panic hook).
pub fn teardown() {
    if let Some(t) = PODMAN.lock().unwrap().take() {
        t.teardown();
    }
}

impl Podman {
    fn start() -> Result<Podman, String> {
        if peapod::config::find_in_path("podman").is_none() {
            let st = Command::new("bash")
                .arg(workspace().join("hack/bench-podman.sh"))
                .stdin(Stdio::null())
                .status();
            if peapod::config::find_in_path("podman").is_none() {
                return Err(format!(
                    "podman not installed and hack/bench-podman.sh could not install it ({st:?})"
                ));
            }
        }
        let dir = std::env::temp_dir().join(format!("peapod-bench-podman-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        // podman asks for nofile and nproc limits above what root may set here (the
        // machine's hard limits): lower ones, which cost nothing in the figures. Its network
        // config (and lock) in a private directory, never /etc/cni.
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
                 [network]\nnetwork_config_dir = {:?}\n",
                dir.join("net.d")
            ),
        )
        .map_err(|e| e.to_string())?;
        *PODMAN.lock().unwrap() = Some(PodmanTeardown { dir: dir.clone() });
        let p = Podman {
            dir,
            version: String::new(),
        };
        let out = p
            .cmd(&["version", "--format", "{{.Client.Version}}"])
            .output()
            .map_err(|e| e.to_string())?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let archive = format!("oci-archive:{}", fixtures().join("busybox.tar").display());
        let out = p
            .cmd(&["pull", "-q", &archive])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "podman pull {archive}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let st = p
            .cmd(&["tag", &id, "peapod.test/busybox:latest"])
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err("podman tag failed".into());
        }
        Ok(Podman { version, ..p })
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args([
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                "--runtime",
                "runc",
                "--storage-driver",
                "overlay",
            ])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// `podman kube play FILE`, timed; then `kube down` of it.
    fn play(&self, yaml: &str) -> Result<Duration, String> {
        let file = self.dir.join("pod.yaml");
        std::fs::write(&file, yaml).map_err(|e| e.to_string())?;
        let f = file.to_string_lossy().into_owned();
        let t0 = Instant::now();
        let out = self
            .cmd(&["kube", "play", &f])
            .output()
            .map_err(|e| e.to_string())?;
        let took = t0.elapsed();
        let down = self.cmd(&["kube", "down", &f]).output();
        if !out.status.success() {
            return Err(format!(
                "podman kube play: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        if let Ok(o) = down {
            if !o.status.success() {
                return Err(format!(
                    "podman kube down: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
        }
        Ok(took)
    }
}

pub fn print(f: &StaticFigures, median: fn(Vec<Duration>) -> Duration, ms: fn(Duration) -> String) {
    let fig = |v: &[Duration]| {
        if v.is_empty() {
            return "-".to_string();
        }
        let mut s = v.to_vec();
        s.sort();
        let p90 = s[(s.len() * 9 / 10).min(s.len() - 1)];
        format!("{} / {}", ms(median(v.to_vec())), ms(p90))
    };
    let (podman_fig, podman_med, version) = match &f.podman {
        Ok((v, version)) => (fig(v), Some(median(v.clone())), version.clone()),
        Err(e) => (format!("left out: {e}"), None, String::new()),
    };
    println!(
        "\nstatic pods: manifest written -> pod, one busybox container, hostNetwork, {RUNS} runs \
         each in turn (median / p90)"
    );
    println!("| what | peapod | podman {version} kube play | peapod / podman |");
    println!("|---|---|---|---|");
    let ratio = match (f.to_running.is_empty(), podman_med) {
        (false, Some(p)) if !p.is_zero() => format!(
            "{:.2}",
            median(f.to_running.clone()).as_secs_f64() / p.as_secs_f64()
        ),
        _ => "-".into(),
    };
    println!(
        "| file -> Running | {} | {podman_fig} | {ratio} |",
        fig(&f.to_running)
    );
    println!(
        "| file -> Ready (exec readiness probe) | {} | (kube play has no readiness gate) | |",
        fig(&f.to_ready)
    );
    match &f.probed {
        Ok(p) => println!(
            "\n{PROBED_PODS} static pods, httpGet liveness every 1 s: daemon CPU {:.1}% of one \
             core over {} s, RSS {:.1} MiB, {} Unhealthy events",
            p.cpu_percent,
            CPU_WINDOW.as_secs(),
            p.rss_kib as f64 / 1024.0,
            p.unhealthy
        ),
        Err(e) => println!("\n{PROBED_PODS} probed static pods left out: {e}"),
    }
}
