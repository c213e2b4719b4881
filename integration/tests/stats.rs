//! The stats RPCs end to end, on cgroup v1 here and v2 in `make vm-test` (the same tests: they
//! only speak CRI): a busy container uses about one core, an allocating one shows its memory,
//! a container's writes grow its writable layer, filters select, a pod's stats hold its
//! containers and its loopback interface, an exited container does not break a list, and the
//! metrics RPCs describe what they report.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use peapod::api::*;
use peapod_integration::*;
use tonic::Code;

/// Under qemu's TCG everything is slow: bounds for what must happen eventually.
const SLOW: Duration = Duration::from_secs(90);
const MIB: u64 = 1 << 20;
/// The allocating container's memory limit.
const LIMIT: u64 = 256 * MIB;

async fn stats(rt: &mut Rt, id: &str) -> ContainerStats {
    rt.container_stats(ContainerStatsRequest {
        container_id: id.into(),
    })
    .await
    .expect("ContainerStats")
    .into_inner()
    .stats
    .expect("stats")
}

async fn list(rt: &mut Rt, filter: Option<ContainerStatsFilter>) -> Vec<String> {
    let mut ids: Vec<String> = rt
        .list_container_stats(ListContainerStatsRequest { filter })
        .await
        .expect("ListContainerStats")
        .into_inner()
        .stats
        .into_iter()
        .map(|s| s.attributes.unwrap().id)
        .collect();
    ids.sort();
    ids
}

async fn pod_stats(rt: &mut Rt, pod: &str) -> PodSandboxStats {
    rt.pod_sandbox_stats(PodSandboxStatsRequest {
        pod_sandbox_id: pod.into(),
    })
    .await
    .expect("PodSandboxStats")
    .into_inner()
    .stats
    .expect("stats")
}

fn value(v: &Option<UInt64Value>) -> u64 {
    v.as_ref().map(|v| v.value).unwrap_or(0)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Polls ContainerStats until `pred` holds; panics with the last stats after [`SLOW`].
async fn wait_stats(
    rt: &mut Rt,
    id: &str,
    what: &str,
    pred: impl Fn(&ContainerStats) -> bool,
) -> ContainerStats {
    let deadline = Instant::now() + SLOW;
    loop {
        let s = stats(rt, id).await;
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what} never seen: {s:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// utime + stime of `pid` in clock ticks (fields 14 and 15 of /proc/PID/stat).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a system constant; no memory is shared.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

#[tokio::test(flavor = "multi_thread")]
async fn cpu_and_memory_of_busy_containers() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let (pod, ids) = run_pod(
        &mut rt,
        pod_config("busy", &logs),
        vec![
            container_config("burn", BUSYBOX, &["sh", "-c", "while :; do :; done"]),
            // dd reads 100 MiB of zeros into one buffer (anonymous memory, all of it touched),
            // then blocks writing it to a pipe nobody reads, holding the buffer.
            {
                let mut c = container_config(
                    "alloc",
                    BUSYBOX,
                    &[
                        "sh",
                        "-c",
                        "dd if=/dev/zero bs=104857600 count=1 | sleep 3600",
                    ],
                );
                c.linux = Some(LinuxContainerConfig {
                    resources: Some(LinuxContainerResources {
                        memory_limit_in_bytes: LIMIT as i64,
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                c
            },
        ],
    )
    .await;
    let (burn, alloc) = (&ids[0], &ids[1]);

    // CPU: the first call has no earlier sample for a rate; the next one, a second later, has.
    // The kernel's own accounting of the loop (the container's sh, in /proc/PID/stat) over
    // the same second is the reference: on a host whose cores other work shares, a busy loop
    // gets less than one.
    let (burn_pid, _) = container_pid(&mut rt, burn).await;
    let (t0, ticks0) = (Instant::now(), cpu_ticks(burn_pid));
    let first = stats(&mut rt, burn).await;
    let cpu1 = first.cpu.expect("cpu");
    assert!(cpu1.timestamp > 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = stats(&mut rt, burn).await;
    let (t1, ticks1) = (Instant::now(), cpu_ticks(burn_pid));
    let cpu2 = second.cpu.expect("cpu");
    let used = value(&cpu2.usage_core_nano_seconds) - value(&cpu1.usage_core_nano_seconds);
    let elapsed = (cpu2.timestamp - cpu1.timestamp) as f64;
    let nano_cores = value(&cpu2.usage_nano_cores);
    let by_proc = (ticks1 - ticks0) as f64 * 1e9 / clock_ticks() / (t1 - t0).as_secs_f64();
    eprintln!(
        "burner: usage_core_nano_seconds {} -> {} over {:.3} s, usage_nano_cores {nano_cores} \
         (first call: {:?}); /proc/{burn_pid}/stat says {by_proc:.0} ns/s",
        value(&cpu1.usage_core_nano_seconds),
        value(&cpu2.usage_core_nano_seconds),
        elapsed / 1e9,
        cpu1.usage_nano_cores,
    );
    assert_eq!(
        cpu1.usage_nano_cores, None,
        "no rate without an earlier sample"
    );
    assert!(
        (nano_cores as f64 - by_proc).abs() < by_proc * 0.15 + 30_000_000.0,
        "usage_nano_cores {nano_cores} against the process's own {by_proc:.0}"
    );
    assert!(
        nano_cores > 200_000_000,
        "a busy loop uses most of a core, even on a busy host: {cpu2:?}"
    );
    // The rate is the counter's growth over the time between the two samples.
    let expected = used as f64 / elapsed * 1e9;
    assert!(
        (nano_cores as f64 - expected).abs() < expected * 0.01 + 1.0,
        "{nano_cores} vs {expected}"
    );
    assert_eq!(
        second
            .attributes
            .as_ref()
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()
            .name,
        "burn"
    );

    // Memory: the working set and the anonymous memory count the 100 MiB dd holds. cgroup v2
    // flushes memory.stat (anon) lazily, up to a couple of seconds behind memory.current, so
    // both are waited for.
    let s = wait_stats(&mut rt, alloc, "a working set and rss of 100 MiB", |s| {
        s.memory.as_ref().is_some_and(|m| {
            value(&m.working_set_bytes) >= 100 * MIB && value(&m.rss_bytes) >= 100 * MIB
        })
    })
    .await;
    let m = s.memory.unwrap();
    eprintln!("allocator: {m:?}");
    assert!(value(&m.usage_bytes) >= value(&m.working_set_bytes));
    assert!(value(&m.rss_bytes) >= 100 * MIB, "anonymous memory: {m:?}");
    assert!(value(&m.page_faults) > 0);
    assert_eq!(
        value(&m.available_bytes),
        LIMIT - value(&m.working_set_bytes),
        "available under the limit: {m:?}"
    );
    let unlimited = second.memory.expect("memory");
    assert_eq!(
        unlimited.available_bytes, None,
        "no limit, nothing to be available under"
    );
    assert!(m.timestamp > 0);

    // The pod's cgroup holds both: their memory, more than a core's worth of CPU time growth.
    let p = pod_stats(&mut rt, &pod).await;
    let linux = p.linux.unwrap();
    let pm = linux.memory.unwrap();
    assert!(value(&pm.working_set_bytes) >= 100 * MIB, "{pm:?}");
    assert!(
        value(&linux.cpu.unwrap().usage_core_nano_seconds) >= value(&cpu2.usage_core_nano_seconds)
    );
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn writable_layer_grows_with_writes() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    // The container writes 10 MiB into its rootfs once the test says so, through a shared dir.
    let trigger = d.root.join("trigger");
    std::fs::create_dir_all(&trigger).unwrap();
    let mut c = container_config(
        "writer",
        BUSYBOX,
        &[
            "sh",
            "-c",
            "while [ ! -e /trigger/go ]; do sleep 0.1; done; \
             dd if=/dev/zero of=/big bs=1048576 count=10 && sync && touch /trigger/done; \
             sleep 3600",
        ],
    );
    c.mounts = vec![Mount {
        container_path: "/trigger".into(),
        host_path: trigger.to_string_lossy().into_owned(),
        ..Default::default()
    }];
    let (_pod, ids) = run_pod(&mut rt, pod_config("writer", &logs), vec![c]).await;
    let before = stats(&mut rt, &ids[0])
        .await
        .writable_layer
        .expect("writable layer");
    let fs = rt_image_fs(&d).await;
    assert_eq!(
        before.fs_id, fs,
        "the writable layer's filesystem is ImageFsInfo's"
    );
    std::fs::write(trigger.join("go"), "").unwrap();
    wait_for(&trigger.join("done")).await;
    let after = stats(&mut rt, &ids[0]).await.writable_layer.unwrap();
    eprintln!(
        "writable layer: {} bytes, {} inodes -> {} bytes, {} inodes",
        value(&before.used_bytes),
        value(&before.inodes_used),
        value(&after.used_bytes),
        value(&after.inodes_used)
    );
    assert!(
        value(&after.used_bytes) >= value(&before.used_bytes) + 10 * MIB,
        "{before:?} -> {after:?}"
    );
    assert!(value(&after.inodes_used) > value(&before.inodes_used));
    assert!(after.timestamp > before.timestamp);
    d.cleanup().await;
}

async fn rt_image_fs(d: &Daemon) -> Option<FilesystemIdentifier> {
    d.img()
        .await
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .expect("ImageFsInfo")
        .into_inner()
        .image_filesystems[0]
        .fs_id
        .clone()
}

async fn wait_for(path: &Path) {
    let deadline = Instant::now() + SLOW;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_not_found_and_exited_containers() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let mut labeled = container_config("labeled", BUSYBOX, &["sleep", "3600"]);
    labeled.labels = HashMap::from([("tier".into(), "db".into())]);
    let mut pod_b = pod_config("b", &logs);
    pod_b.labels.insert("team".into(), "b".into());
    let (a, a_ids) = run_pod(
        &mut rt,
        pod_config("a", &logs),
        vec![
            labeled,
            container_config("quick", BUSYBOX, &["true"]),
            container_config("idle", BUSYBOX, &["sleep", "3600"]),
        ],
    )
    .await;
    let (b, b_ids) = run_pod(
        &mut rt,
        pod_b,
        vec![container_config("other", BUSYBOX, &["sleep", "3600"])],
    )
    .await;
    let quick = &a_ids[1];
    wait_exited(&mut rt, quick, SLOW).await;

    // No filter: every container, the exited one with what it still has.
    let all = sorted(a_ids.iter().chain(&b_ids).cloned().collect());
    assert_eq!(list(&mut rt, None).await, all);
    let exited = stats(&mut rt, quick).await;
    assert!(
        exited.cpu.is_none() && exited.memory.is_none(),
        "{exited:?}"
    );
    assert!(exited.writable_layer.is_some());
    let running = stats(&mut rt, &a_ids[2]).await;
    assert!(
        running.cpu.is_some() && running.memory.is_some(),
        "{running:?}"
    );

    let filter = |id: &str, pod: &str, labels: &[(&str, &str)]| {
        Some(ContainerStatsFilter {
            id: id.into(),
            pod_sandbox_id: pod.into(),
            label_selector: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    };
    assert_eq!(
        list(&mut rt, filter(&b_ids[0], "", &[])).await,
        [b_ids[0].clone()]
    );
    // IDs by unique prefix, as crictl shows them.
    assert_eq!(
        list(&mut rt, filter(&b_ids[0][..12], "", &[])).await,
        [b_ids[0].clone()]
    );
    assert_eq!(
        list(&mut rt, filter("", &a, &[])).await,
        sorted(a_ids.clone())
    );
    assert_eq!(list(&mut rt, filter("", &b[..12], &[])).await, b_ids);
    assert_eq!(
        list(&mut rt, filter("", "", &[("tier", "db")])).await,
        [a_ids[0].clone()]
    );
    assert!(list(&mut rt, filter("", &b, &[("tier", "db")]))
        .await
        .is_empty());
    assert!(list(&mut rt, filter(&a_ids[0], &b, &[])).await.is_empty());

    // Pods: all ready ones, by ID prefix and by label.
    let rt2 = rt.clone();
    let pods = move |filter: Option<PodSandboxStatsFilter>| {
        let mut rt = rt2.clone();
        async move {
            let mut ids: Vec<String> = rt
                .list_pod_sandbox_stats(ListPodSandboxStatsRequest { filter })
                .await
                .expect("ListPodSandboxStats")
                .into_inner()
                .stats
                .into_iter()
                .map(|s| s.attributes.unwrap().id)
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(pods(None).await, sorted(vec![a.clone(), b.clone()]));
    let by_label = PodSandboxStatsFilter {
        label_selector: HashMap::from([("team".into(), "b".into())]),
        ..Default::default()
    };
    assert_eq!(pods(Some(by_label)).await, [b.as_str()]);
    let by_id = PodSandboxStatsFilter {
        id: a[..12].into(),
        ..Default::default()
    };
    assert_eq!(pods(Some(by_id)).await, [a.as_str()]);
    // The pod with an exited container still answers for all of them.
    let p = pod_stats(&mut rt, &a).await;
    let ctrs: Vec<String> = p
        .linux
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.attributes.unwrap().id)
        .collect();
    assert_eq!(sorted(ctrs), sorted(a_ids.clone()));

    // Unknown IDs are NOT_FOUND; a missing one is INVALID_ARGUMENT.
    let e = rt
        .container_stats(ContainerStatsRequest {
            container_id: "0000ffff".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = rt
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: "0000ffff".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = rt
        .container_stats(ContainerStatsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // A stopped pod is not ready: left out of the list, refused by PodSandboxStats.
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: b.clone(),
    })
    .await
    .expect("StopPodSandbox");
    assert_eq!(pods(None).await, [a.as_str()]);
    let e = rt
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: b.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    // Its stopped container is still listed, without cgroup figures.
    let s = stats(&mut rt, &b_ids[0]).await;
    assert!(s.cpu.is_none() && s.writable_layer.is_some(), "{s:?}");
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_stats_and_metrics() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let (pod, ids) = run_pod(
        &mut rt,
        pod_config("web", &logs),
        vec![
            container_config("one", BUSYBOX, &["sleep", "3600"]),
            container_config("two", BUSYBOX, &["sleep", "3600"]),
        ],
    )
    .await;
    let p = pod_stats(&mut rt, &pod).await;
    let attrs = p.attributes.unwrap();
    assert_eq!(attrs.id, pod);
    assert_eq!(attrs.metadata.unwrap().name, "web");
    assert_eq!(attrs.labels["suite"], "peapod-it");
    let linux = p.linux.unwrap();
    let ctrs: Vec<String> = linux
        .containers
        .iter()
        .map(|c| c.attributes.clone().unwrap().id)
        .collect();
    assert_eq!(sorted(ctrs), sorted(ids.clone()));
    // The pause and two sleeps.
    let procs = value(&linux.process.unwrap().process_count);
    assert!(procs >= 3, "{procs} processes");
    assert!(linux.cpu.unwrap().usage_core_nano_seconds.is_some());
    assert!(value(&linux.memory.unwrap().working_set_bytes) > 0);
    let net = linux.network.expect("network");
    assert!(net.timestamp > 0);
    let lo = net.default_interface.expect("default interface");
    eprintln!("pod network: default {lo:?}, others {:?}", net.interfaces);
    // kubelet's default interface is eth0, which the pod network gives each pod.
    let want = if d.net.mode == "builtin" {
        "eth0"
    } else {
        "lo"
    };
    assert_eq!(lo.name, want);
    assert!(lo.rx_bytes.is_some() && lo.tx_bytes.is_some());

    // Metrics: every one reported is described, with as many label values as keys.
    let descriptors = rt
        .list_metric_descriptors(ListMetricDescriptorsRequest {})
        .await
        .expect("ListMetricDescriptors")
        .into_inner()
        .descriptors;
    let keys: HashMap<String, Vec<String>> = descriptors
        .into_iter()
        .map(|d| (d.name, d.label_keys))
        .collect();
    for name in [
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "container_memory_usage_bytes",
        "container_memory_rss",
        "container_spec_memory_limit_bytes",
        "container_network_receive_bytes_total",
        "container_network_transmit_bytes_total",
    ] {
        assert!(keys.contains_key(name), "{name} not described");
    }
    let metrics = rt
        .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
        .await
        .expect("ListPodSandboxMetrics")
        .into_inner()
        .pod_metrics;
    assert_eq!(metrics.len(), 1);
    let pm = &metrics[0];
    assert_eq!(pm.pod_sandbox_id, pod);
    let all = pm
        .metrics
        .iter()
        .chain(pm.container_metrics.iter().flat_map(|c| &c.metrics));
    for m in all {
        let k = &keys[&m.name];
        assert_eq!(k.len(), m.label_values.len(), "{m:?} for {k:?}");
    }
    let rx = pm
        .metrics
        .iter()
        .find(|m| m.name == "container_network_receive_bytes_total")
        .expect("pod network metric");
    assert_eq!(rx.label_values, [pod.as_str(), "POD", "", "lo"]);
    assert_eq!(
        sorted(
            pm.container_metrics
                .iter()
                .map(|c| c.container_id.clone())
                .collect()
        ),
        sorted(ids.clone())
    );
    let ws = pm.container_metrics[0]
        .metrics
        .iter()
        .find(|m| m.name == "container_memory_working_set_bytes")
        .expect("working set metric");
    assert!(value(&ws.value) > 0);
    assert_eq!(ws.label_values[0], pm.container_metrics[0].container_id);
    d.cleanup().await;
}
