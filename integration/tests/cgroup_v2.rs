//! What only a pure cgroup v2 host can show: limits in each container's own cgroup (memory.max,
//! cpu.max, pids.max) nested under its pod's cgroup, OOM kills counted in memory.events, and
//! crun (which refuses hybrid v1 layouts) as the default handler beside runc.
//!
//! The tests are `#[ignore]`d, so a plain `cargo test` lists them as ignored: `make vm-test` runs
//! this binary with `--include-ignored` in a cgroup v2 VM. Run anywhere else that is not a pure
//! cgroup v2 host (no /sys/fs/cgroup/cgroup.controllers), they fail and say why. The tests read
//! the cgroup files themselves: they check the limits written, which the Stats RPCs (tested in
//! stats.rs, on both cgroup versions) do not report.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use peapod::api::*;
use peapod_integration::*;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Generous: under qemu's TCG a container takes seconds to start.
const SLOW: Duration = Duration::from_secs(60);

/// True as root (see [`require_root`]). Panics unless this is a pure cgroup v2 host: these
/// tests are ignored by default, so running them asks for one.
fn require_v2() -> bool {
    assert!(
        Path::new(CGROUP_ROOT).join("cgroup.controllers").exists(),
        "not a pure cgroup v2 host (no {CGROUP_ROOT}/cgroup.controllers): make vm-test runs \
         these tests in a cgroup v2 VM"
    );
    require_root()
}

/// The directory of a cgroupfs path (as in `linux.cgroupsPath`) in the unified hierarchy.
fn cg_dir(path: &str) -> PathBuf {
    Path::new(CGROUP_ROOT).join(path.trim_start_matches('/'))
}

fn cg_read(path: &str, file: &str) -> String {
    let p = cg_dir(path).join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// The value of `key` in a flat-keyed cgroup file (memory.events, cpu.stat, pids.events).
fn cg_key(path: &str, file: &str, key: &str) -> u64 {
    cg_read(path, file)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no {key} in {path}/{file}"))
}

/// The process's cgroup v2 path, from /proc/PID/cgroup ("0::/path").
fn proc_cgroup(pid: i32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("no v2 entry for {pid}: {text:?}"))
        .to_string()
}

async fn container_info(rt: &mut Rt, id: &str) -> serde_json::Value {
    let info = rt
        .container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await
        .expect("ContainerStatus")
        .into_inner()
        .info;
    serde_json::from_str(&info["info"]).unwrap()
}

fn with_resources(mut c: ContainerConfig, r: LinuxContainerResources) -> ContainerConfig {
    c.linux = Some(LinuxContainerConfig {
        resources: Some(r),
        ..Default::default()
    });
    c
}

/// RunPodSandbox on `handler`, then CreateContainer and StartContainer of `c`: the pod start
/// latency `make bench` measures. Returns the pod and container IDs and that latency.
async fn start_pod(
    rt: &mut Rt,
    handler: &str,
    cfg: PodSandboxConfig,
    c: ContainerConfig,
) -> (String, String, Duration) {
    let t = Instant::now();
    let pod = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: handler.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox on {handler:?}: {e}"))
        .into_inner()
        .pod_sandbox_id;
    let id = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(c),
            sandbox_config: Some(cfg),
        })
        .await
        .unwrap_or_else(|e| panic!("CreateContainer on {handler:?}: {e}"))
        .into_inner()
        .container_id;
    rt.start_container(StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("StartContainer on {handler:?}: {e}"));
    (pod, id, t.elapsed())
}

/// A daemon on the harness's private directories, run with extra config lines (its config
/// file has only the socket, the directories, the cgroup parent and these): the harness
/// starts its daemon (importing the fixtures), this stops it and starts its own. Pods are
/// removed and the directories deleted at the end, or when a test panics.
struct ConfiguredDaemon {
    d: Option<Daemon>,
    child: Option<Child>,
}

impl ConfiguredDaemon {
    async fn start(extra: &str) -> ConfiguredDaemon {
        let mut d = Daemon::start().await;
        d.kill();
        let config = d.root.parent().unwrap().join("peapod-extra.toml");
        std::fs::write(
            &config,
            format!(
                // Nothing of the host's: no pod network (so no CNI config of the machine's is
                // picked up) and no static pods (so not the machine's manifest directory).
                "socket = {:?}\nroot_dir = {:?}\nstate_dir = {:?}\ncgroup_parent = {:?}\n{extra}\n\
                 [network]\nmode = \"none\"\n[static_pods]\nmanifest_dir = \"\"\n",
                d.socket, d.root, d.state, d.cgroup_parent
            ),
        )
        .unwrap();
        let _ = std::fs::remove_file(&d.socket);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&d.log)
            .unwrap();
        let child = Command::new(bin_dir().join("peapod"))
            .arg("--config")
            .arg(&config)
            .args(["daemon", "--log-level", "debug"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting peapod daemon");
        let me = ConfiguredDaemon {
            d: Some(d),
            child: Some(child),
        };
        let deadline = Instant::now() + SLOW;
        loop {
            if let Ok(ch) = channel(&me.d().socket).await {
                let mut rt = Rt::new(ch);
                if rt.version(VersionRequest::default()).await.is_ok() {
                    return me;
                }
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not come up:\n{}",
                me.d().log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn d(&self) -> &Daemon {
        self.d.as_ref().unwrap()
    }

    async fn cleanup(mut self) {
        let socket = self.d().socket.clone();
        remove_all_pods(&socket).await;
        self.finish();
    }

    /// Stops the daemon and deletes what the harness made (its daemon is already stopped, so
    /// its own teardown would skip that).
    fn finish(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(d) = self.d.take() {
            for m in cgroup_mounts() {
                let _ = std::fs::remove_dir(m.join(d.cgroup_parent.trim_start_matches('/')));
            }
            let _ = std::fs::remove_dir_all(d.root.parent().unwrap());
        }
    }
}

impl Drop for ConfiguredDaemon {
    fn drop(&mut self) {
        let Some(d) = self.d.as_ref() else { return };
        if std::thread::panicking() {
            eprintln!("--- daemon log ---\n{}", d.log_text());
        }
        let socket = d.socket.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(remove_all_pods(&socket));
        })
        .join();
        self.finish();
    }
}

async fn remove_all_pods(socket: &Path) {
    let Ok(ch) = channel(socket).await else {
        return;
    };
    let mut rt = Rt::new(ch);
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

const PIDS_LIMIT: i64 = 40;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a pure cgroup v2 host: run by make vm-test"]
async fn limits_land_in_the_containers_own_cgroup_under_its_pod() {
    if !require_v2() {
        return;
    }
    let cd = ConfiguredDaemon::start(&format!("pids_limit = {PIDS_LIMIT}")).await;
    let d = cd.d();
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let cfg = pod_config("limits", &logs);
    // Spins, so the CPU quota has something to throttle.
    let limited = with_resources(
        container_config(
            "limited",
            BUSYBOX,
            &[
                "sh",
                "-c",
                "cat /proc/self/cgroup; echo ready; while :; do :; done",
            ],
        ),
        LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_quota: 20_000,
            cpu_period: 100_000,
            ..Default::default()
        },
    );
    // Forks past the pids limit in a subshell (a failed fork ends a non-interactive sh).
    let forker = container_config(
        "forker",
        BUSYBOX,
        &[
            "sh",
            "-c",
            "(i=0; while [ $i -lt 60 ]; do sleep 300 & i=$((i+1)); done) 2>/dev/null; \
             echo forked; exec sleep 300",
        ],
    );
    let (pod, ids) = run_pod(&mut rt, cfg, vec![limited, forker]).await;
    let lines = wait_log(&logs.join("limited/0.log"), SLOW, |l| {
        l.iter().any(|x| x == "ready")
    })
    .await;
    wait_log(&logs.join("forker/0.log"), SLOW, |l| {
        l.iter().any(|x| x == "forked")
    })
    .await;

    // The pod cgroup is <cgroup_parent>/<sandbox id>; the pause sits in its own leaf there.
    let p = sandbox_info(&mut rt, &pod).await;
    let pod_cg = p["cgroup"].as_str().unwrap().to_string();
    assert_eq!(pod_cg, format!("{}/{pod}", d.cgroup_parent), "{p}");
    let pause_cg = p["pauseCgroup"].as_str().unwrap();
    assert_eq!(pause_cg, format!("{pod_cg}/{pod}"));
    assert_eq!(proc_cgroup(p["pid"].as_i64().unwrap() as i32), pause_cg);
    // Each container at <pod cgroup>/<container id>, its processes in it.
    for id in &ids {
        let c = container_info(&mut rt, id).await;
        let path = c["cgroupsPath"].as_str().unwrap();
        assert_eq!(path, format!("{pod_cg}/{id}"), "{c}");
        assert_eq!(cg_dir(path).parent().unwrap(), cg_dir(&pod_cg));
        assert_eq!(proc_cgroup(c["pid"].as_i64().unwrap() as i32), path);
    }
    // The pod cgroup delegates the controllers the limits need.
    let delegated = cg_read(&pod_cg, "cgroup.subtree_control");
    for ctl in ["cpu", "memory", "pids"] {
        assert!(
            delegated.split_whitespace().any(|c| c == ctl),
            "{ctl} not enabled below the pod cgroup: {delegated:?}"
        );
    }
    // Inside, a private cgroup namespace: the container sees its own cgroup as the root.
    assert_eq!(lines[0], "0::/", "container's /proc/self/cgroup: {lines:?}");

    // The limits, in the container's own cgroup.
    let limited = format!("{pod_cg}/{}", ids[0]);
    assert_eq!(cg_read(&limited, "memory.max"), (64u64 << 20).to_string());
    assert_eq!(cg_read(&limited, "cpu.max"), "20000 100000");
    assert_eq!(cg_read(&limited, "pids.max"), PIDS_LIMIT.to_string());
    // ...and enforced: the spinner gets throttled, the forker hits pids.max.
    let deadline = Instant::now() + SLOW;
    while cg_key(&limited, "cpu.stat", "nr_throttled") == 0 {
        assert!(Instant::now() < deadline, "spinner never throttled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let forker = format!("{pod_cg}/{}", ids[1]);
    assert_eq!(cg_read(&forker, "pids.max"), PIDS_LIMIT.to_string());
    assert!(
        cg_key(&forker, "pids.events", "max") > 0,
        "fork never refused"
    );
    let current: i64 = cg_read(&forker, "pids.current").parse().unwrap();
    assert!(current <= PIDS_LIMIT, "pids.current {current}");
    // Not the pod's own limits: kubelet sets those; peapod leaves the pod cgroup unlimited.
    assert_eq!(cg_read(&pod_cg, "memory.max"), "max");

    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    assert!(!cg_dir(&pod_cg).exists(), "pod cgroup left: {pod_cg}");
    cd.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a pure cgroup v2 host: run by make vm-test"]
async fn oom_kill_is_counted_in_memory_events_and_reported() {
    if !require_v2() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let hog = with_resources(
        container_config(
            "hog",
            BUSYBOX,
            &[
                "sh",
                "-c",
                "echo start; x=$(head -c 268435456 /dev/zero | tr '\\0' a); echo survived",
            ],
        ),
        LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            ..Default::default()
        },
    );
    let (pod, ids) = run_pod(&mut rt, pod_config("oom", &logs), vec![hog]).await;
    let path = container_info(&mut rt, &ids[0]).await["cgroupsPath"]
        .as_str()
        .unwrap()
        .to_string();
    let pod_cg = sandbox_info(&mut rt, &pod).await["cgroup"]
        .as_str()
        .unwrap()
        .to_string();
    let s = wait_exited(&mut rt, &ids[0], SLOW).await;
    assert_eq!(s.reason, "OOMKilled", "{s:?}");
    assert_eq!(s.exit_code, 137, "{s:?}");
    assert!(!log_lines(&logs.join("hog/0.log")).contains(&"survived".to_string()));
    // The kernel's count, which peapod's reason comes from: in the container's cgroup (kept
    // until RemoveContainer) and, hierarchically, in the pod's.
    assert!(
        cg_key(&path, "memory.events", "oom_kill") >= 1,
        "container memory.events: {}",
        cg_read(&path, "memory.events")
    );
    assert!(
        cg_key(&pod_cg, "memory.events", "oom_kill") >= 1,
        "pod memory.events: {}",
        cg_read(&pod_cg, "memory.events")
    );
    // The OOM killer stayed inside the container's cgroup: the pod is still ready.
    let st = sandbox_status(&mut rt, &pod).await;
    assert_eq!(st.state, PodSandboxState::SandboxReady as i32);
    d.cleanup().await;
}

/// Also prints the pod start latency per handler (not asserted: it depends on the machine).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a pure cgroup v2 host: run by make vm-test"]
async fn crun_is_the_default_handler_and_runc_works_too() {
    if !require_v2() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let status = rt
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = status
        .runtime_handlers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert!(
        names.contains(&"crun") && names.contains(&"runc"),
        "{names:?}"
    );
    let cfg: serde_json::Value = serde_json::from_str(&status.info["runtime"]).unwrap();
    assert_eq!(cfg["cgroupVersion"], "v2", "{cfg}");
    assert_eq!(cfg["defaultRuntime"], "crun", "{cfg}");

    let logs = d.root.join("logs");
    // The default handler first, then crun and runc alternately (so both see the same
    // machine load), each pod timed from RunPodSandbox to StartContainer's return.
    const ROUNDS: usize = 4;
    let mut plan = vec![("", "crun")];
    for _ in 0..ROUNDS {
        plan.extend([("crun", "crun"), ("runc", "runc")]);
    }
    let mut latency: Vec<(&str, Duration)> = Vec::new();
    for (i, (handler, expect)) in plan.into_iter().enumerate() {
        let name = format!("p{i}-{expect}");
        let c = container_config(
            "c",
            BUSYBOX,
            &["sh", "-c", "cat /proc/self/cgroup; echo up; exec sleep 300"],
        );
        let cfg = pod_config(&name, &logs.join(&name));
        let (pod, id, took) = start_pod(&mut rt, handler, cfg, c).await;
        if i > 0 {
            latency.push((expect, took));
        }
        let lines = wait_log(&logs.join(&name).join("c/0.log"), SLOW, |l| {
            l.iter().any(|x| x == "up")
        })
        .await;
        assert_eq!(lines[0], "0::/", "{expect}: {lines:?}");
        let info = container_info(&mut rt, &id).await;
        assert_eq!(info["runtimeHandler"], expect, "{info}");
        let path = info["cgroupsPath"].as_str().unwrap().to_string();
        assert_eq!(proc_cgroup(info["pid"].as_i64().unwrap() as i32), path);
        let st = sandbox_status(&mut rt, &pod).await;
        assert_eq!(st.runtime_handler, expect);
        // Stop and remove through the same handler.
        rt.stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
        let s = container_status(&mut rt, &id).await;
        assert_eq!(s.exit_code, 137, "{expect}: {s:?}");
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
        assert!(!cg_dir(&path).exists(), "{expect}: cgroup left: {path}");
    }
    for handler in ["crun", "runc"] {
        let mut ms: Vec<u128> = latency
            .iter()
            .filter(|(h, _)| *h == handler)
            .map(|(_, t)| t.as_millis())
            .collect();
        let runs = ms.clone();
        ms.sort();
        println!(
            "pod start latency (RunPodSandbox + CreateContainer + StartContainer) with {handler}: \
             median {} ms, runs {runs:?} ms",
            ms[ms.len() / 2]
        );
    }
    d.cleanup().await;
}
