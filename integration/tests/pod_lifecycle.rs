//! Pods and containers end to end: shared namespaces, PID sharing, stop semantics, CRI logs,
//! and removal that leaves nothing behind.

use std::time::{Duration, Instant};

use peapod::api::*;
use peapod_integration::*;

fn shm_mount() -> Mount {
    Mount {
        container_path: "/shmtool".into(),
        host_path: shmtool().to_string_lossy().into_owned(),
        readonly: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_share_the_pods_net_ipc_and_uts() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let cfg = pod_config("shared", &logs);
    let show = "hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/ipc; \
                readlink /proc/self/ns/uts; ls /sys/class/net | tr '\\n' ' '; echo";
    let mut a = container_config(
        "a",
        BUSYBOX,
        &[
            "sh",
            "-c",
            &format!("{show}; /shmtool 4242; echo a-done; sleep 300"),
        ],
    );
    a.mounts = vec![shm_mount()];
    let (pod, ids) = run_pod(&mut rt, cfg.clone(), vec![a]).await;
    let la = logs.join("a/0.log");
    wait_log(&la, Duration::from_secs(10), |l| {
        l.iter().any(|x| x == "a-done")
    })
    .await;
    // B starts after A made the shared memory segment.
    let b = container_config(
        "b",
        BUSYBOX,
        &[
            "sh",
            "-c",
            &format!("{show}; cat /proc/sysvipc/shm; echo b-done; sleep 300"),
        ],
    );
    let bid = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(b),
            sandbox_config: Some(cfg.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    rt.start_container(StartContainerRequest {
        container_id: bid.clone(),
    })
    .await
    .unwrap();
    let lb = logs.join("b/0.log");
    let lines_b = wait_log(&lb, Duration::from_secs(10), |l| {
        l.iter().any(|x| x == "b-done")
    })
    .await;
    let lines_a = log_lines(&la);

    // Same hostname, the pod's.
    assert_eq!(lines_a[0], "shared-host");
    assert_eq!(lines_b[0], "shared-host");
    // Same net, ipc and uts namespaces, and not the host's.
    for i in 1..=3 {
        assert_eq!(lines_a[i], lines_b[i], "namespace line {i}");
    }
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(
        lines_a[1],
        host_net.to_string_lossy(),
        "pod shares the host network"
    );
    // The same interfaces: the pod's own loopback, and its eth0 on the pod network.
    let want = if d.net.mode == "builtin" {
        "eth0 lo"
    } else {
        "lo"
    };
    assert_eq!(lines_a[4].trim(), want);
    assert_eq!(lines_a[4], lines_b[4]);
    // System V IPC made in A is visible in B (key 4242 in /proc/sysvipc/shm).
    assert!(
        lines_a.iter().any(|l| l.starts_with("shmid ")),
        "{lines_a:?}"
    );
    assert!(
        lines_b
            .iter()
            .any(|l| l.split_whitespace().next() == Some("4242")),
        "segment not visible across containers: {lines_b:?}"
    );
    // ...and not on the host.
    let host_shm = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    assert!(!host_shm
        .lines()
        .any(|l| l.split_whitespace().next() == Some("4242")));
    let _ = ids;
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pid_namespace_shared_only_when_asked() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    for shared in [true, false] {
        let mut cfg = pod_config(if shared { "pidpod" } else { "pidctr" }, &logs);
        let mode = if shared {
            NamespaceMode::Pod
        } else {
            NamespaceMode::Container
        };
        let ns = NamespaceOption {
            pid: mode as i32,
            ..Default::default()
        };
        cfg.linux = Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(ns.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut sleeper = container_config("sleeper", BUSYBOX, &["sleep", "300"]);
        let mut looker = container_config(
            "looker",
            BUSYBOX,
            &[
                "sh",
                "-c",
                "sleep 0.3; cat /proc/1/comm; ps -o comm | grep -c '^sleep'; echo done; sleep 300",
            ],
        );
        for c in [&mut sleeper, &mut looker] {
            c.linux = Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(ns.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        let (pod, _) = run_pod(&mut rt, cfg.clone(), vec![sleeper, looker]).await;
        let log = logs.join("looker/0.log");
        let lines = wait_log(&log, Duration::from_secs(10), |l| {
            l.iter().any(|x| x == "done")
        })
        .await;
        if shared {
            assert_eq!(
                lines[0], "peapod-shim",
                "PID 1 of a shared pod namespace is the pause"
            );
            assert_eq!(
                lines[1], "1",
                "the other container's sleep is visible: {lines:?}"
            );
        } else {
            assert_eq!(lines[0], "sh", "PID 1 is the container's own process");
            assert_eq!(
                lines[1], "0",
                "the other container's sleep is not visible: {lines:?}"
            );
        }
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
        let _ = std::fs::remove_dir_all(&logs);
    }
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_sends_term_then_kill_after_the_grace_period() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let trap = container_config(
        "trap",
        BUSYBOX,
        &[
            "sh",
            "-c",
            "trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.05; done",
        ],
    );
    let ignore = container_config(
        "ignore",
        BUSYBOX,
        &[
            "sh",
            "-c",
            "trap '' TERM; echo ready; while true; do sleep 0.05; done",
        ],
    );
    let (_pod, ids) = run_pod(&mut rt, pod_config("stopper", &logs), vec![trap, ignore]).await;
    for name in ["trap", "ignore"] {
        wait_log(
            &logs.join(format!("{name}/0.log")),
            Duration::from_secs(10),
            |l| l.iter().any(|x| x == "ready"),
        )
        .await;
    }

    // Traps TERM: exits 0 well within its grace period.
    let t = Instant::now();
    rt.stop_container(StopContainerRequest {
        container_id: ids[0].clone(),
        timeout: 10,
    })
    .await
    .unwrap();
    let took = t.elapsed();
    let s = container_status(&mut rt, &ids[0]).await;
    assert_eq!(s.state, ContainerState::ContainerExited as i32);
    assert_eq!(s.exit_code, 0, "{s:?}");
    assert_eq!(s.reason, "Completed");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(log_lines(&logs.join("trap/0.log")).contains(&"got-term".to_string()));

    // Ignores TERM: killed only after the 2 s grace period.
    let t = Instant::now();
    rt.stop_container(StopContainerRequest {
        container_id: ids[1].clone(),
        timeout: 2,
    })
    .await
    .unwrap();
    let took = t.elapsed();
    let s = container_status(&mut rt, &ids[1]).await;
    assert_eq!(s.exit_code, 137, "{s:?}");
    assert_eq!(s.reason, "Error");
    assert!(
        took >= Duration::from_secs(2),
        "SIGKILL before the grace period: {took:?}"
    );
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert!(s.finished_at >= s.started_at && s.started_at >= s.created_at);

    // Stopping an exited container again is fine.
    rt.stop_container(StopContainerRequest {
        container_id: ids[1].clone(),
        timeout: 1,
    })
    .await
    .unwrap();
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_are_in_cri_format_and_exit_codes_recorded() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let c = container_config(
        "talker",
        BUSYBOX,
        &[
            "sh",
            "-c",
            "echo out-line; echo err-line >&2; printf no-newline; exit 3",
        ],
    );
    let (_pod, ids) = run_pod(&mut rt, pod_config("logs", &logs), vec![c]).await;
    let s = wait_exited(&mut rt, &ids[0], Duration::from_secs(10)).await;
    assert_eq!(s.exit_code, 3);
    assert_eq!(s.reason, "Error");
    assert_eq!(s.log_path, logs.join("talker/0.log").to_string_lossy());
    let text = std::fs::read_to_string(logs.join("talker/0.log")).unwrap();
    let mut seen = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.splitn(4, ' ').collect();
        assert_eq!(parts.len(), 4, "{line:?}");
        let ts = parts[0];
        assert!(
            ts.len() == 30 && ts.ends_with('Z') && &ts[10..11] == "T" && &ts[19..20] == ".",
            "not RFC3339Nano: {ts:?}"
        );
        assert!(matches!(parts[1], "stdout" | "stderr"), "{line:?}");
        assert!(matches!(parts[2], "F" | "P"), "{line:?}");
        seen.push((parts[1].to_string(), parts[3].to_string()));
    }
    assert!(
        seen.contains(&("stdout".into(), "out-line".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("stderr".into(), "err-line".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("stdout".into(), "no-newline".into())),
        "{seen:?}"
    );

    // The image's entrypoint, cmd, env and workdir are used when the config gives none.
    let mut e = container_config("entry", "peapod.test/busybox-entry:latest", &[]);
    e.args = vec![];
    let (_p, ids) = run_pod(&mut rt, pod_config("entry", &logs), vec![e]).await;
    wait_exited(&mut rt, &ids[0], Duration::from_secs(10)).await;
    assert_eq!(
        log_lines(&logs.join("entry/0.log")),
        vec!["entry cmd".to_string()]
    );
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn remove_leaves_nothing_behind() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let c = container_config("sleeper", BUSYBOX, &["sleep", "300"]);
    let (pod, ids) = run_pod(&mut rt, pod_config("gone", &logs), vec![c]).await;
    let (pid, monitor) = container_pid(&mut rt, &ids[0]).await;
    assert!(pid_alive(pid) && pid_alive(monitor));
    let v = sandbox_info(&mut rt, &pod).await;
    let pause = v["pid"].as_i64().unwrap() as i32;
    let netns = std::path::PathBuf::from(v["netns"].as_str().unwrap());
    assert!(netns.exists());
    let base = d.root.parent().unwrap().to_path_buf();
    assert!(!mounts_under(&base).is_empty());

    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    let s = sandbox_status(&mut rt, &pod).await;
    assert_eq!(s.state, PodSandboxState::SandboxNotready as i32);
    assert!(!pid_alive(pid) && !pid_alive(pause), "stop left processes");
    assert_eq!(
        container_status(&mut rt, &ids[0]).await.state,
        ContainerState::ContainerExited as i32
    );
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    // Idempotent.
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();

    assert!(!pid_alive(monitor), "monitor still running");
    assert!(!netns.exists(), "netns file left");
    assert_eq!(mounts_under(&base), Vec::<String>::new(), "mounts left");
    for m in cgroup_mounts() {
        let dir = m.join(d.cgroup_parent.trim_start_matches('/')).join(&pod);
        assert!(!dir.exists(), "cgroup dir left: {}", dir.display());
    }
    for dir in [
        d.root.join("sandboxes").join(&pod),
        d.root.join("containers").join(&ids[0]),
        d.state.join("containers").join(&ids[0]),
        d.state.join("sandboxes").join(&pod),
    ] {
        assert!(!dir.exists(), "state left: {}", dir.display());
    }
    let e = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod,
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    d.cleanup().await;
}

/// A running pod costs the host's mount table three entries: its /dev/shm, its pinned network
/// namespace and its container's rootfs (IPC and UTS are joined through the pause, not pinned).
/// Every runtime `create` reads that table whole, so each entry per pod slows all pod starts at
/// scale.
#[tokio::test(flavor = "multi_thread")]
async fn a_pod_adds_three_mounts_to_the_host() {
    let d = Daemon::start().await;
    let base = d.root.parent().unwrap().to_string_lossy().into_owned();
    let ours = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(base.as_str()))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let before = ours();
    let mut rt = d.rt().await;
    let (pod, _) = run_pod(
        &mut rt,
        pod_config("mounts", &d.root.join("logs")),
        vec![container_config("c", BUSYBOX, &["sleep", "3000"])],
    )
    .await;
    let added: Vec<String> = ours().into_iter().filter(|l| !before.contains(l)).collect();
    assert_eq!(added.len(), 3, "{added:#?}");
    for what in ["/shm ", "/ns/net ", "/rootfs "] {
        assert!(
            added.iter().any(|l| l.contains(what)),
            "no {what} mount: {added:#?}"
        );
    }
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
    assert_eq!(ours(), before, "mounts left after RemovePodSandbox");
    d.cleanup().await;
}

/// The pause is in its pod's leaf cgroup in every controller hierarchy (on cgroup v1 it joins
/// them itself before it execs; on v2 the daemon places it).
#[tokio::test(flavor = "multi_thread")]
async fn the_pause_is_in_its_cgroup_in_every_hierarchy() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let (pod, _) = run_pod(&mut rt, pod_config("cg", &logs), vec![]).await;
    let pid = sandbox_info(&mut rt, &pod).await["pid"].as_i64().unwrap() as i32;
    let leaf = format!("{}/{pod}/{pod}", d.cgroup_parent.trim_end_matches('/'));
    let lines = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v2_only = lines.lines().count() == 1;
    let mut checked = 0;
    for line in lines.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrl, path) = (f.next(), f.next().unwrap(), f.next().unwrap());
        let controllers = !ctrl.is_empty() && !ctrl.starts_with("name=");
        if controllers || v2_only {
            assert_eq!(path, leaf, "pause {pid} in hierarchy {ctrl:?}: {lines}");
            checked += 1;
        }
    }
    assert!(checked > 0, "no controller hierarchy in {lines}");
    for m in cgroup_mounts() {
        let tasks = m.join(leaf.trim_start_matches('/')).join("cgroup.procs");
        if let Ok(procs) = std::fs::read_to_string(&tasks) {
            let ours: Vec<&str> = procs.lines().collect();
            assert_eq!(ours, vec![pid.to_string().as_str()], "{}", tasks.display());
        }
    }
    d.cleanup().await;
}
