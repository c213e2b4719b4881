//! A configured sandbox image (containerd's `sandbox_image`): each pod's infra process is a
//! container of it, run by the OCI runtime, instead of the built-in pause. Containers share its
//! namespaces, it survives a daemon restart, and stop + remove (or a failed RunPodSandbox)
//! leave nothing behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use peapod::api::*;
use peapod_integration::*;

/// hack/fixtures.py's `pause`: busybox with Entrypoint ["/bin/sleep", "2147483647"].
const PAUSE: &str = "peapod.test/pause:latest";

/// A daemon whose sandbox image is [`PAUSE`], imported into its store.
async fn daemon() -> Daemon {
    let d = Daemon::start_with(&format!("sandbox_image = {PAUSE:?}\n")).await;
    d.import("pause");
    d
}

/// The verbose PodSandboxStatus info: (infra PID, netns file).
async fn infra_info(rt: &mut Rt, pod: &str) -> (i32, PathBuf) {
    let v = sandbox_info(rt, pod).await;
    (
        v["pid"].as_i64().unwrap() as i32,
        PathBuf::from(v["netns"].as_str().unwrap()),
    )
}

fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn ns_link(pid: i32, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

async fn run(
    rt: &mut Rt,
    cfg: PodSandboxConfig,
) -> Result<tonic::Response<RunPodSandboxResponse>, tonic::Status> {
    rt.run_pod_sandbox(RunPodSandboxRequest {
        config: Some(cfg),
        runtime_handler: String::new(),
    })
    .await
}

/// -998, or the daemon's own oom_score_adj (the test's, which it inherits) when it cannot go
/// lower: without CAP_SYS_RESOURCE (bit 24 of CapEff).
fn expected_infra_oom() -> i32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .unwrap();
    if cap_eff & (1 << 24) != 0 {
        return -998;
    }
    let own: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    own.max(-998)
}

/// Entries of a directory (none when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Nothing of `pod` (or of any pod, when the daemon has none) is left: mounts under the test
/// dirs, records, bundles, runtime state, pinned namespaces, cgroup dirs.
fn assert_nothing_left(d: &Daemon, pod: &str) {
    let base = d.root.parent().unwrap().to_path_buf();
    assert_eq!(mounts_under(&base), Vec::<String>::new(), "mounts left");
    for dir in [
        d.root.join("sandboxes"),
        d.root.join("containers"),
        d.state.join("sandboxes"),
        d.state.join("containers"),
        d.state.join("runtime/runc"),
    ] {
        assert_eq!(
            entries(&dir),
            Vec::<String>::new(),
            "{} not empty",
            dir.display()
        );
    }
    for m in cgroup_mounts() {
        let parent = m.join(d.cgroup_parent.trim_start_matches('/'));
        if !pod.is_empty() {
            assert!(
                !parent.join(pod).exists(),
                "cgroup dir left: {}",
                parent.join(pod).display()
            );
        }
        let left: Vec<String> = entries(&parent)
            .into_iter()
            .filter(|e| parent.join(e).is_dir())
            .collect();
        assert_eq!(
            left,
            Vec::<String>::new(),
            "cgroups left in {}",
            parent.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn image_sandbox_shares_namespaces_and_leaves_nothing_behind() {
    if !require_root() {
        return;
    }
    let d = daemon().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let cfg = pod_config("imgpod", &logs);
    let show = "hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/ipc; \
                readlink /proc/self/ns/uts; cat /proc/1/comm; ls /sys/class/net | tr '\\n' ' '; echo";
    let a = container_config(
        "a",
        BUSYBOX,
        &["sh", "-c", &format!("{show}; echo done; sleep 300")],
    );
    let b = container_config(
        "b",
        BUSYBOX,
        &["sh", "-c", &format!("{show}; echo done; sleep 300")],
    );
    let t = Instant::now();
    let (pod, ids) = run_pod(&mut rt, cfg.clone(), vec![a, b]).await;
    eprintln!("pod with two containers up in {:?}", t.elapsed());
    let done = |l: &[String]| l.iter().any(|x| x == "done");
    let la = wait_log(&logs.join("a/0.log"), Duration::from_secs(10), done).await;
    let lb = wait_log(&logs.join("b/0.log"), Duration::from_secs(10), done).await;

    // The infra is the image's entrypoint, run as a container.
    let (infra, netns) = infra_info(&mut rt, &pod).await;
    assert_eq!(cmdline(infra), ["/bin/sleep", "2147483647"], "pid {infra}");
    assert!(netns.exists());
    let rootfs = d.root.join("sandboxes").join(&pod).join("rootfs");
    assert!(
        mounts_under(&d.root).contains(&rootfs.to_string_lossy().into_owned()),
        "the infra's rootfs is not mounted at {}",
        rootfs.display()
    );
    let bundle = d.state.join("sandboxes").join(&pod).join("bundle");
    assert!(bundle.join("config.json").exists());

    // Both containers: the pod's hostname, the infra's net, ipc and uts namespaces (not the
    // host's), PID 1 of the shared PID namespace is the infra's sleep, only a loopback.
    assert_eq!(la[0], "imgpod-host");
    assert_eq!(lb[0], "imgpod-host");
    for (i, kind) in [(1, "net"), (2, "ipc"), (3, "uts")] {
        assert_eq!(la[i], lb[i], "{kind}");
        assert_eq!(la[i], ns_link(infra, kind), "{kind} is not the infra's");
        assert_ne!(
            la[i],
            ns_link(std::process::id() as i32, kind),
            "{kind} is the host's"
        );
    }
    assert_eq!(la[4], "sleep", "PID 1 of the pod: {la:?}");
    assert_eq!(lb[4], "sleep", "PID 1 of the pod: {lb:?}");
    let want = if d.net.mode == "builtin" {
        "eth0 lo"
    } else {
        "lo"
    };
    assert_eq!(la[5].trim(), want);
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{infra}/oom_score_adj"))
            .unwrap()
            .trim(),
        expected_infra_oom().to_string()
    );
    let mut pids = vec![infra];
    for id in &ids {
        let (pid, monitor) = container_pid(&mut rt, id).await;
        assert!(pid_alive(pid) && pid_alive(monitor));
        pids.extend([pid, monitor]);
    }

    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        sandbox_status(&mut rt, &pod).await.state,
        PodSandboxState::SandboxNotready as i32
    );
    assert!(!pid_alive(infra), "stop left the infra running");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    for pid in pids {
        assert!(!pid_alive(pid), "process {pid} left");
    }
    assert!(!netns.exists(), "netns file left");
    assert_nothing_left(&d, &pod);
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_the_image_sandbox_ready() {
    if !require_root() {
        return;
    }
    let mut d = daemon().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let cfg = pod_config("imgrestart", &logs);
    let c = container_config("before", BUSYBOX, &["sleep", "300"]);
    let (pod, ids) = run_pod(&mut rt, cfg.clone(), vec![c]).await;
    let (infra, _) = infra_info(&mut rt, &pod).await;
    drop(rt);

    d.kill();
    assert!(pid_alive(infra), "the infra died with the daemon");
    d.spawn().await;
    let mut rt = d.rt().await;
    assert_eq!(
        sandbox_status(&mut rt, &pod).await.state,
        PodSandboxState::SandboxReady as i32
    );
    assert_eq!(infra_info(&mut rt, &pod).await.0, infra);
    assert_eq!(
        container_status(&mut rt, &ids[0]).await.state,
        ContainerState::ContainerRunning as i32
    );

    // A container made by the new daemon joins the same namespaces.
    let after = container_config(
        "after",
        BUSYBOX,
        &[
            "sh",
            "-c",
            "readlink /proc/self/ns/net; cat /proc/1/comm; echo done; sleep 300",
        ],
    );
    let id = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(after),
            sandbox_config: Some(cfg),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    rt.start_container(StartContainerRequest { container_id: id })
        .await
        .unwrap();
    let lines = wait_log(
        &logs.join("after/0.log"),
        Duration::from_secs(10),
        |l: &[String]| l.iter().any(|x| x == "done"),
    )
    .await;
    assert_eq!(lines[0], ns_link(infra, "net"));
    assert_eq!(lines[1], "sleep");

    // The new daemon still notices the infra's death, and still cleans up.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(infra),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while sandbox_status(&mut rt, &pod).await.state != PodSandboxState::SandboxNotready as i32 {
        assert!(Instant::now() < deadline, "infra death not noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    assert_nothing_left(&d, &pod);
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_run_leaves_nothing_behind() {
    if !require_root() {
        return;
    }
    let d = daemon().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");

    // Fails while generating the spec, after the rootfs is mounted: a seccomp profile that
    // does not exist.
    let mut bad_spec = pod_config("badspec", &logs);
    bad_spec.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            seccomp: Some(SecurityProfile {
                profile_type: security_profile::ProfileType::Localhost as i32,
                localhost_ref: "/nonexistent/seccomp.json".into(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    // Fails in the runtime's create: a namespaced sysctl this kernel does not have.
    let mut bad_create = pod_config("badcreate", &logs);
    bad_create.linux = Some(LinuxPodSandboxConfig {
        sysctls: [(
            "net.ipv4.peapod_no_such_sysctl".to_string(),
            "1".to_string(),
        )]
        .into(),
        ..Default::default()
    });
    for cfg in [bad_spec, bad_create] {
        let name = cfg.metadata.as_ref().unwrap().name.clone();
        let e = run(&mut rt, cfg.clone()).await.unwrap_err();
        eprintln!("{name}: {e:?}");
        assert_nothing_left(&d, "");
        let list = rt
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
        assert!(list.is_empty(), "{name}: {list:?}");
        // The name was released: the same pod can run once fixed.
        let mut fixed = cfg;
        fixed.linux = Some(LinuxPodSandboxConfig::default());
        let pod = run(&mut rt, fixed)
            .await
            .unwrap_or_else(|e| panic!("{name}: rerun failed: {e:?}"))
            .into_inner()
            .pod_sandbox_id;
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
        assert_nothing_left(&d, &pod);
    }
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_image_is_pulled_when_absent() {
    if !require_root() {
        return;
    }
    let reg = Registry::start();
    reg.push("pause", "infra/pause:1");
    let image = format!("{}/infra/pause:1", reg.addr);
    let d = Daemon::start_with(&format!("sandbox_image = {image:?}\n")).await;
    let mut rt = d.rt().await;
    let mut img = d.img().await;
    let absent = img
        .image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(absent.image.is_none());
    let (pod, _) = run_pod(&mut rt, pod_config("pulled", &d.root.join("logs")), vec![]).await;
    let (infra, _) = infra_info(&mut rt, &pod).await;
    assert_eq!(cmdline(infra), ["/bin/sleep", "2147483647"]);
    let st = img
        .image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(st.image.is_some(), "the sandbox image was not pulled");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    assert!(!pid_alive(infra));
    assert_nothing_left(&d, &pod);
    d.cleanup().await;
}
