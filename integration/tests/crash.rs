//! kill -9 of the daemon at any instant loses nothing reported to a client and leaks nothing.
//!
//! - Deterministic: the daemon is killed at each named step of RunPodSandbox, CreateContainer,
//!   StartContainer, StopPodSandbox and the removals (a failpoint: `PEAPOD_FAILPOINT=STEP`
//!   makes a debug build SIGKILL itself there), restarted, and the client's retry must get the
//!   same pod or container, or a clean new one; then everything is removed through the API and
//!   nothing may be left.
//! - Churn: pods and containers are created, started, stopped and removed in a loop while the
//!   daemon is SIGKILLed at random moments (seeded; `PEAPOD_CHURN_KILLS` kills, 100 by default
//!   and fewer in `make test`; `PEAPOD_CHURN_SEED` replays a run). After each restart every
//!   container reported running must still run (same PID) and every pod reported ready must be
//!   ready; at the end everything is removed through the API and nothing may be left.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use peapod::api::*;
use peapod::pod::failpoint;
use peapod_integration::*;

/// Restarts the daemon with `failpoint` armed (or none).
async fn restart(d: &mut Daemon, failpoint: Option<&str>) {
    d.kill();
    d.env = failpoint
        .map(|f| vec![("PEAPOD_FAILPOINT".to_string(), f.to_string())])
        .unwrap_or_default();
    d.spawn().await;
}

/// The daemon must have died at its failpoint; then it is started again without one.
async fn expect_crash_and_restart(d: &mut Daemon, step: &str) {
    assert!(
        d.wait_exit(Duration::from_secs(20)),
        "the daemon did not stop at failpoint {step}"
    );
    assert!(
        d.log_text()
            .contains(&format!("killing the daemon failpoint=\"{step}\"")),
        "the daemon did not reach failpoint {step}:\n{}",
        d.log_text()
    );
    d.env.clear();
    d.spawn().await;
}

async fn list_pods(rt: &mut Rt) -> Vec<PodSandbox> {
    rt.list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items
}

async fn list_containers(rt: &mut Rt) -> Vec<Container> {
    rt.list_containers(ListContainersRequest::default())
        .await
        .expect("ListContainers")
        .into_inner()
        .containers
}

async fn remove_everything(rt: &mut Rt) {
    for p in list_pods(rt).await {
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: p.id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("RemovePodSandbox {}: {e}", p.id));
    }
    assert!(list_pods(rt).await.is_empty());
    assert!(list_containers(rt).await.is_empty());
}

fn assert_clean(d: &Daemon, what: &str) {
    let left = d.leftovers();
    assert!(
        left.is_empty(),
        "{what}: left behind:\n  {}\n--- daemon log ---\n{}",
        left.join("\n  "),
        d.log_text()
    );
}

async fn run_sandbox(rt: &mut Rt, cfg: &PodSandboxConfig) -> Result<String, tonic::Status> {
    rt.run_pod_sandbox(RunPodSandboxRequest {
        config: Some(cfg.clone()),
        runtime_handler: String::new(),
    })
    .await
    .map(|r| r.into_inner().pod_sandbox_id)
}

async fn create_container(
    rt: &mut Rt,
    pod: &str,
    pod_cfg: &PodSandboxConfig,
    cfg: &ContainerConfig,
) -> Result<String, tonic::Status> {
    rt.create_container(CreateContainerRequest {
        pod_sandbox_id: pod.to_string(),
        config: Some(cfg.clone()),
        sandbox_config: Some(pod_cfg.clone()),
    })
    .await
    .map(|r| r.into_inner().container_id)
}

async fn start(rt: &mut Rt, id: &str) -> Result<(), tonic::Status> {
    rt.start_container(StartContainerRequest {
        container_id: id.to_string(),
    })
    .await
    .map(|_| ())
}

/// The container's PID from its verbose status, or None when the daemon did not answer.
async fn try_pid(rt: &mut Rt, id: &str) -> Option<i32> {
    let info = rt
        .container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await
        .ok()?
        .into_inner()
        .info;
    let v: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    v["pid"].as_i64().map(|p| p as i32)
}

fn sleeper(name: &str) -> ContainerConfig {
    container_config(name, BUSYBOX, &["sleep", "1000"])
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_at_each_step_of_run_pod_sandbox() {
    if !require_root() {
        return;
    }
    let mut d = Daemon::start().await;
    let logs = d.root.parent().unwrap().join("logs");
    for step in failpoint::RUN_SANDBOX {
        restart(&mut d, Some(step)).await;
        let mut cfg = pod_config(&format!("fp-{}", step.replace('.', "-")), &logs);
        // A host port, so that a crash can leave port rules behind too.
        cfg.port_mappings = vec![PortMapping {
            protocol: Protocol::Tcp as i32,
            container_port: 80,
            host_port: 30000 + (std::process::id() % 20000) as i32,
            host_ip: String::new(),
        }];
        let mut rt = d.rt().await;
        assert!(
            run_sandbox(&mut rt, &cfg).await.is_err(),
            "{step}: RunPodSandbox answered although the daemon died"
        );
        expect_crash_and_restart(&mut d, step).await;
        let mut rt = d.rt().await;
        let pods = list_pods(&mut rt).await;
        // Only a pod whose final record was written survives; it is complete and ready.
        if *step == "sandbox.recorded" {
            assert_eq!(pods.len(), 1, "{step}: {pods:?}");
            assert_eq!(pods[0].state, PodSandboxState::SandboxReady as i32);
        } else {
            assert!(
                pods.is_empty(),
                "{step}: an unfinished pod is listed: {pods:?}"
            );
            assert_clean(&d, &format!("after a crash at {step}"));
        }
        // kubelet retries: it gets the surviving pod, or a new one that works.
        let id = run_sandbox(&mut rt, &cfg)
            .await
            .unwrap_or_else(|e| panic!("{step}: retried RunPodSandbox: {e}"));
        if let Some(p) = pods.first() {
            assert_eq!(id, p.id, "{step}: the retry made a second pod");
        }
        let c = create_container(&mut rt, &id, &cfg, &sleeper("app"))
            .await
            .unwrap_or_else(|e| panic!("{step}: CreateContainer in the retried pod: {e}"));
        start(&mut rt, &c).await.expect("StartContainer");
        remove_everything(&mut rt).await;
        assert_clean(&d, &format!("after removing the pod of step {step}"));
    }
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_at_each_step_of_create_container() {
    if !require_root() {
        return;
    }
    let mut d = Daemon::start().await;
    let logs = d.root.parent().unwrap().join("logs");
    for step in failpoint::CREATE_CONTAINER {
        let cfg = pod_config(&format!("fp-{}", step.replace('.', "-")), &logs);
        let mut rt = d.rt().await;
        let pod = run_sandbox(&mut rt, &cfg).await.expect("RunPodSandbox");
        restart(&mut d, Some(step)).await;
        let mut rt = d.rt().await;
        let ccfg = sleeper("app");
        assert!(
            create_container(&mut rt, &pod, &cfg, &ccfg).await.is_err(),
            "{step}: CreateContainer answered although the daemon died"
        );
        expect_crash_and_restart(&mut d, step).await;
        let mut rt = d.rt().await;
        let ctrs = list_containers(&mut rt).await;
        if *step == "container.recorded" {
            assert_eq!(ctrs.len(), 1, "{step}: {ctrs:?}");
            assert_eq!(ctrs[0].state, ContainerState::ContainerCreated as i32);
        } else {
            assert!(
                ctrs.is_empty(),
                "{step}: an unfinished container is listed: {ctrs:?}"
            );
            // Nothing of the container is left: no runtime state, rootfs mount or monitor.
            let left: Vec<_> = d
                .leftovers()
                .into_iter()
                .filter(|l| l.contains("/containers/") || l.contains(" monitor "))
                .collect();
            assert!(left.is_empty(), "{step}: left behind: {left:#?}");
        }
        let id = create_container(&mut rt, &pod, &cfg, &ccfg)
            .await
            .unwrap_or_else(|e| panic!("{step}: retried CreateContainer: {e}"));
        if let Some(c) = ctrs.first() {
            assert_eq!(id, c.id, "{step}: the retry made a second container");
        }
        start(&mut rt, &id).await.expect("StartContainer");
        let s = container_status(&mut rt, &id).await;
        assert_eq!(s.state, ContainerState::ContainerRunning as i32, "{step}");
        remove_everything(&mut rt).await;
        assert_clean(&d, &format!("after removing the pod of step {step}"));
    }
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_while_starting_stopping_and_removing() {
    if !require_root() {
        return;
    }
    let mut d = Daemon::start().await;
    let logs = d.root.parent().unwrap().join("logs");
    for step in failpoint::OTHER {
        let cfg = pod_config(&format!("fp-{}", step.replace('.', "-")), &logs);
        let mut rt = d.rt().await;
        let pod = run_sandbox(&mut rt, &cfg).await.expect("RunPodSandbox");
        let c = create_container(&mut rt, &pod, &cfg, &sleeper("app"))
            .await
            .expect("CreateContainer");
        if *step != "container.started" {
            start(&mut rt, &c).await.expect("StartContainer");
        }
        restart(&mut d, Some(step)).await;
        let mut rt = d.rt().await;
        let res = match *step {
            "container.started" => start(&mut rt, &c).await,
            "container.removing" => rt
                .remove_container(RemoveContainerRequest {
                    container_id: c.clone(),
                })
                .await
                .map(|_| ()),
            "sandbox.stopping" => rt
                .stop_pod_sandbox(StopPodSandboxRequest {
                    pod_sandbox_id: pod.clone(),
                })
                .await
                .map(|_| ()),
            "sandbox.removing" => rt
                .remove_pod_sandbox(RemovePodSandboxRequest {
                    pod_sandbox_id: pod.clone(),
                })
                .await
                .map(|_| ()),
            other => panic!("no test for failpoint {other}"),
        };
        assert!(res.is_err(), "{step}: answered although the daemon died");
        expect_crash_and_restart(&mut d, step).await;
        let mut rt = d.rt().await;
        match *step {
            "container.started" => {
                // The runtime started it: it runs, and the record says so.
                let s = container_status(&mut rt, &c).await;
                assert_eq!(s.state, ContainerState::ContainerRunning as i32, "{s:?}");
            }
            "container.removing" => {
                rt.remove_container(RemoveContainerRequest {
                    container_id: c.clone(),
                })
                .await
                .expect("retried RemoveContainer");
                assert!(list_containers(&mut rt).await.is_empty());
            }
            "sandbox.stopping" => {
                rt.stop_pod_sandbox(StopPodSandboxRequest {
                    pod_sandbox_id: pod.clone(),
                })
                .await
                .expect("retried StopPodSandbox");
                let s = sandbox_status(&mut rt, &pod).await;
                assert_eq!(s.state, PodSandboxState::SandboxNotready as i32);
            }
            _ => {}
        }
        remove_everything(&mut rt).await;
        assert_clean(&d, &format!("after removing the pod of step {step}"));
    }
    d.cleanup().await;
}

/// StopPodSandbox answers before the built-in network has deleted the pod's veth and freed
/// its address. A kill -9 in between leaves an address of a pod that no longer holds a
/// network: the restarted daemon frees it (and would delete the veth) before serving, with
/// the pod not yet removed.
#[tokio::test(flavor = "multi_thread")]
async fn kill_during_the_network_release_after_stop() {
    if !require_root() {
        return;
    }
    let mut d = Daemon::start().await;
    if d.net.mode != "builtin" {
        println!("skipped: the daemon runs no built-in network (PEAPOD_IT_NETWORK)");
        d.cleanup().await;
        return;
    }
    let [step] = failpoint::BACKGROUND else {
        panic!("one background step expected")
    };
    let logs = d.root.parent().unwrap().join("logs");
    let cfg = pod_config("fp-release", &logs);
    let mut rt = d.rt().await;
    let pod = run_sandbox(&mut rt, &cfg).await.expect("RunPodSandbox");
    let ip = sandbox_status(&mut rt, &pod)
        .await
        .network
        .unwrap_or_default()
        .ip;
    assert!(!ip.is_empty(), "the pod has no address");
    let ip_file = d.root.join("net/ipam").join(&ip);
    let veth = Path::new("/sys/class/net").join(peapod::net::host_veth_name(&pod));
    assert!(ip_file.exists() && veth.exists());
    restart(&mut d, Some(step)).await;
    let mut rt = d.rt().await;
    let stopped = rt
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await;
    expect_crash_and_restart(&mut d, step).await;
    let mut rt = d.rt().await;
    if let Err(e) = stopped {
        // The kill came first (the veth deletion outran the answer): Stop is retried.
        println!("StopPodSandbox was not answered ({e}); retrying it");
        rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("retried StopPodSandbox");
        // Its release runs in the background again.
        let t0 = Instant::now();
        while ip_file.exists() && t0.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert!(!veth.exists(), "{} outlived the stop", veth.display());
    assert!(
        !ip_file.exists(),
        "the stopped pod's address {ip} is still allocated after the restart"
    );
    let s = sandbox_status(&mut rt, &pod).await;
    assert_eq!(s.state, PodSandboxState::SandboxNotready as i32);
    remove_everything(&mut rt).await;
    assert_clean(&d, "after removing the pod");
    d.cleanup().await;
}

/// A small seeded generator (xorshift64*): the churn is replayable from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the client has been told: pods reported ready and containers reported running (and
/// not stopped or removed since), with the container's PID.
#[derive(Default)]
struct Reported {
    ready: HashMap<String, PodSandboxConfig>,
    running: HashMap<String, (String, i32)>,
    created: HashMap<String, String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn churn_with_random_kills_loses_and_leaks_nothing() {
    if !require_root() {
        return;
    }
    let kills: usize = std::env::var("PEAPOD_CHURN_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let seed: u64 = std::env::var("PEAPOD_CHURN_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("churn: {kills} kills, PEAPOD_CHURN_SEED={seed}");
    let mut rng = Rng(seed);
    let mut d = Daemon::start().await;
    let logs = d.root.parent().unwrap().join("logs");
    let mut model = Reported::default();
    let mut killed = 0;
    let mut ops = 0;
    let t0 = Instant::now();
    let mut serial = 0;
    while killed < kills {
        ops += 1;
        assert!(ops < kills * 60 + 200, "churn: too many operations");
        let mut rt = d.rt().await;
        // Arm a kill during this operation about one time in three.
        let killer = (rng.below(3) == 0).then(|| {
            let pid = d.pid().unwrap() as i32;
            let delay = Duration::from_micros(rng.below(40_000));
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                // SAFETY: kill(2) on the daemon's PID, which this test started and still owns.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            })
        });
        let choice = if model.ready.len() < 2 {
            0
        } else {
            rng.below(7)
        };
        let outcome: Result<(), tonic::Status> = match choice {
            0 | 1 => {
                serial += 1;
                let cfg = pod_config(&format!("churn-{serial}"), &logs);
                match run_sandbox(&mut rt, &cfg).await {
                    Ok(id) => {
                        model.ready.insert(id, cfg);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            2 | 3 => {
                let pods: Vec<_> = model.ready.keys().cloned().collect();
                let pod = pods[rng.below(pods.len() as u64) as usize].clone();
                let cfg = model.ready[&pod].clone();
                serial += 1;
                match create_container(&mut rt, &pod, &cfg, &sleeper(&format!("c{serial}"))).await {
                    Ok(id) => {
                        model.created.insert(id.clone(), pod.clone());
                        match start(&mut rt, &id).await {
                            Ok(()) => {
                                model.created.remove(&id);
                                // Reported running even if its PID cannot be asked for (0).
                                let pid = try_pid(&mut rt, &id).await;
                                model.running.insert(id, (pod, pid.unwrap_or(0)));
                                pid.map(|_| ())
                                    .ok_or_else(|| tonic::Status::unavailable("no status"))
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            4 => match model.running.keys().next().cloned() {
                Some(id) => {
                    model.running.remove(&id);
                    rt.stop_container(StopContainerRequest {
                        container_id: id,
                        timeout: 0,
                    })
                    .await
                    .map(|_| ())
                }
                None => Ok(()),
            },
            5 => {
                let ids: Vec<_> = model.running.keys().cloned().collect();
                match ids.get(rng.below(ids.len() as u64 + 1) as usize) {
                    Some(id) => {
                        model.running.remove(id);
                        rt.remove_container(RemoveContainerRequest {
                            container_id: id.clone(),
                        })
                        .await
                        .map(|_| ())
                    }
                    None => Ok(()),
                }
            }
            _ => {
                let pods: Vec<_> = model.ready.keys().cloned().collect();
                let pod = pods[rng.below(pods.len() as u64) as usize].clone();
                model.ready.remove(&pod);
                model.running.retain(|_, (p, _)| *p != pod);
                model.created.retain(|_, p| *p != pod);
                let req = RemovePodSandboxRequest {
                    pod_sandbox_id: pod.clone(),
                };
                if rng.below(2) == 0 {
                    rt.stop_pod_sandbox(StopPodSandboxRequest {
                        pod_sandbox_id: pod.clone(),
                    })
                    .await
                    .map(|_| ())
                } else {
                    rt.remove_pod_sandbox(req).await.map(|_| ())
                }
            }
        };
        if std::env::var_os("PEAPOD_CHURN_TRACE").is_some() {
            eprintln!(
                "op {ops}: choice {choice} kill {} -> {:?}",
                killer.is_some(),
                outcome.as_ref().map_err(|e| e.message().to_string())
            );
        }
        let killer_fired = match killer {
            Some(k) => {
                // Let the kill land (it may fall after the operation finished).
                let _ = k.await;
                true
            }
            None => false,
        };
        if !killer_fired {
            if let Err(e) = outcome {
                panic!(
                    "churn op {ops} (choice {choice}) failed without a kill: {e}\n{}",
                    d.log_text()
                );
            }
            continue;
        }
        assert!(
            d.wait_exit(Duration::from_secs(10)),
            "the daemon survived SIGKILL"
        );
        killed += 1;
        d.spawn().await;
        let mut rt = d.rt().await;
        // Nothing reported may be lost.
        for (id, (pod, pid)) in &model.running {
            let s = container_status(&mut rt, id).await;
            assert_eq!(
                s.state,
                ContainerState::ContainerRunning as i32,
                "kill {killed}: container {id} of pod {pod} was reported running: {s:?}\n{}",
                d.log_text()
            );
            if *pid > 0 {
                assert!(
                    pid_alive(*pid),
                    "kill {killed}: container {id} lost its process"
                );
                assert_eq!(container_pid(&mut rt, id).await.0, *pid);
            }
        }
        for id in model.ready.keys() {
            let s = sandbox_status(&mut rt, id).await;
            assert_eq!(
                s.state,
                PodSandboxState::SandboxReady as i32,
                "kill {killed}: pod {id} was reported ready"
            );
        }
        for id in model.created.keys() {
            let s = container_status(&mut rt, id).await;
            assert_ne!(s.state, ContainerState::ContainerUnknown as i32, "{s:?}");
        }
        // Adopt what the interrupted operation may have made (or not) as the daemon has it.
        for p in list_pods(&mut rt).await {
            if p.state == PodSandboxState::SandboxReady as i32 && !model.ready.contains_key(&p.id) {
                let cfg = PodSandboxConfig {
                    metadata: p.metadata.clone(),
                    hostname: String::new(),
                    log_directory: logs.to_string_lossy().into_owned(),
                    labels: p.labels.clone(),
                    annotations: p.annotations.clone(),
                    linux: Some(LinuxPodSandboxConfig::default()),
                    ..Default::default()
                };
                model.ready.insert(p.id, cfg);
            }
        }
    }
    eprintln!(
        "churn: {ops} operations, {killed} kills in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let mut rt = d.rt().await;
    remove_everything(&mut rt).await;
    assert_clean(&d, "after the churn");
    d.cleanup().await;
}

/// The leak this suite was written for: container directories left with `rootfs upper work`
/// but no record (what an older daemon could leave after a kill -9), while their monitors and
/// processes still run and their rootfs is still mounted. A restart must end them, and the
/// pod must then be removable.
#[tokio::test(flavor = "multi_thread")]
async fn containers_without_records_are_swept_and_their_pod_removable() {
    if !require_root() {
        return;
    }
    let mut d = Daemon::start().await;
    let logs = d.root.parent().unwrap().join("logs");
    let cfg = pod_config("orphans", &logs);
    let mut rt = d.rt().await;
    let (pod, ids) = run_pod(
        &mut rt,
        cfg,
        vec![sleeper("kept"), sleeper("lost-1"), sleeper("lost-2")],
    )
    .await;
    let mut pids = Vec::new();
    for id in &ids {
        pids.push(container_pid(&mut rt, id).await);
    }
    d.kill();
    // Two containers lose their records (and one its bundle too); the first keeps its own.
    for id in &ids[1..] {
        let dir = d.root.join("containers").join(id);
        std::fs::remove_file(dir.join("record.json")).unwrap();
        std::fs::remove_file(dir.join("config.pb")).unwrap();
    }
    std::fs::remove_dir_all(d.state.join("containers").join(&ids[2])).unwrap();
    d.spawn().await;
    let mut rt = d.rt().await;
    let listed: Vec<_> = list_containers(&mut rt)
        .await
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        listed,
        vec![ids[0].clone()],
        "only the recorded container is listed"
    );
    assert!(pid_alive(pids[0].0), "the recorded container keeps running");
    for (i, (pid, monitor)) in pids.iter().enumerate().skip(1) {
        assert!(
            !pid_alive(*pid),
            "container {i} without a record still runs"
        );
        assert!(
            !pid_alive(*monitor),
            "monitor {i} without a record still runs"
        );
        let dir = d.root.join("containers").join(&ids[i]);
        assert!(!dir.exists(), "{} is left", dir.display());
        assert!(mounts_under(&dir).is_empty());
    }
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .expect("RemovePodSandbox after the sweep");
    assert_clean(&d, "after removing the pod");
    d.cleanup().await;
}
