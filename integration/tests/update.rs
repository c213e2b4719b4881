//! UpdateContainerResources on a running container: the new limits land in its cgroup (v1
//! here, v2 in `make vm-test`), ContainerStatus reports them, and a daemon restart keeps them.

use peapod::api::*;
use peapod_integration::*;
use tonic::Code;

/// The container's memory limit and CFS quota as its cgroup has them, on v1 or v2.
fn limits(d: &Daemon, pod: &str, id: &str) -> (u64, i64) {
    let rel = format!("{}/{pod}/{id}", d.cgroup_parent.trim_start_matches('/'));
    let read = |p: String| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    if let Some(max) = read(format!("/sys/fs/cgroup/{rel}/memory.max")) {
        let cpu = read(format!("/sys/fs/cgroup/{rel}/cpu.max")).unwrap_or_default();
        let quota = cpu.split_whitespace().next().unwrap_or("max");
        return (max.parse().unwrap_or(u64::MAX), quota.parse().unwrap_or(-1));
    }
    let mem = read(format!("/sys/fs/cgroup/memory/{rel}/memory.limit_in_bytes")).unwrap();
    let quota = read(format!("/sys/fs/cgroup/cpu,cpuacct/{rel}/cpu.cfs_quota_us"))
        .or_else(|| read(format!("/sys/fs/cgroup/cpu/{rel}/cpu.cfs_quota_us")))
        .unwrap();
    (mem.parse().unwrap(), quota.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn update_resources_of_a_running_container_and_keep_them() {
    if !require_root() {
        return;
    }
    let mut d = Daemon::start().await;
    let logs = d.root.parent().unwrap().join("logs");
    let mut rt = d.rt().await;
    let (pod, ids) = run_pod(
        &mut rt,
        pod_config("update", &logs),
        vec![container_config("app", BUSYBOX, &["sleep", "1000"])],
    )
    .await;
    let id = &ids[0];
    let new = LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        memory_limit_in_bytes: 64 << 20,
        ..Default::default()
    };
    rt.update_container_resources(UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(new.clone()),
        ..Default::default()
    })
    .await
    .expect("UpdateContainerResources");
    assert_eq!(limits(&d, &pod, id), (64 << 20, 50_000));
    let reported = |s: ContainerStatus| s.resources.and_then(|r| r.linux).unwrap_or_default();
    assert_eq!(reported(container_status(&mut rt, id).await), new);

    // Remembered across a restart.
    d.kill();
    d.spawn().await;
    let mut rt = d.rt().await;
    assert_eq!(reported(container_status(&mut rt, id).await), new);

    // Bad input names the field; an exited container cannot be updated.
    let e = rt
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: -5,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("memory_limit_in_bytes"),
        "{}",
        e.message()
    );
    rt.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    let e = rt
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(new),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    d.cleanup().await;
}
