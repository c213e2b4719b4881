//! The daemon can die at any time: containers keep running, and a new daemon finds them.

use std::time::Duration;

use peapod::api::*;
use peapod_integration::*;

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_containers_running_and_visible() {
    if !require_root() {
        return;
    }
    let mut d = Daemon::start().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let long = container_config("long", BUSYBOX, &["sh", "-c", "echo up; exec sleep 300"]);
    let short = container_config("short", BUSYBOX, &["sh", "-c", "sleep 1; exit 7"]);
    let (pod, ids) = run_pod(&mut rt, pod_config("survivor", &logs), vec![long, short]).await;
    let (pid, monitor) = container_pid(&mut rt, &ids[0]).await;
    drop(rt);

    // SIGKILL the daemon; the short container exits while it is down.
    d.kill();
    assert!(pid_alive(pid), "container died with the daemon");
    assert!(pid_alive(monitor), "monitor died with the daemon");
    tokio::time::sleep(Duration::from_millis(1500)).await;

    d.spawn().await;
    let mut rt = d.rt().await;
    let s = container_status(&mut rt, &ids[0]).await;
    assert_eq!(s.state, ContainerState::ContainerRunning as i32, "{s:?}");
    assert_eq!(container_pid(&mut rt, &ids[0]).await.0, pid);
    let s = wait_exited(&mut rt, &ids[1], Duration::from_secs(5)).await;
    assert_eq!(s.exit_code, 7, "exit while the daemon was down: {s:?}");
    let p = sandbox_status(&mut rt, &pod).await;
    assert_eq!(p.state, PodSandboxState::SandboxReady as i32);

    // The new daemon still controls it: stop reports the kill, remove cleans up.
    rt.stop_container(StopContainerRequest {
        container_id: ids[0].clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    let s = container_status(&mut rt, &ids[0]).await;
    assert_eq!(s.exit_code, 137, "{s:?}");
    assert!(!pid_alive(pid));
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    assert!(!pid_alive(monitor));
    d.cleanup().await;
}
