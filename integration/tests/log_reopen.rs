//! ReopenContainerLog end to end, as the kubelet's log rotation uses it: rename the log, call
//! ReopenContainerLog, expect the new file at once (and rename back on error). Over the real
//! socket, against a container that keeps writing numbered lines.

use std::time::{Duration, Instant};

use peapod::api::*;
use peapod_integration::*;
use tonic::Code;

/// 1,000 by default; `PEAPOD_REOPEN_ROTATIONS` lowers it where each round is slow (the TCG VM).
fn rotations() -> usize {
    std::env::var("PEAPOD_REOPEN_ROTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

async fn reopen(rt: &mut Rt, id: &str) -> Result<(), tonic::Status> {
    rt.reopen_container_log(ReopenContainerLogRequest {
        container_id: id.into(),
    })
    .await
    .map(|_| ())
}

/// Numbered lines, 20 at a time then half a millisecond's pause: a steady stream of some ten
/// thousand lines a second that the rotations keep cutting.
const COUNTER: &str = "i=0; while :; do for j in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 \
                       19 20; do i=$((i+1)); echo $i; done; usleep 500; done";

#[tokio::test(flavor = "multi_thread")]
async fn rotation_finds_the_new_file_and_loses_no_line() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let c = container_config("counter", BUSYBOX, &["sh", "-c", COUNTER]);
    let (_pod, ids) = run_pod(&mut rt, pod_config("rotate", &logs), vec![c]).await;
    let id = &ids[0];
    let log = logs.join("counter/0.log");
    wait_log(&log, Duration::from_secs(10), |l| !l.is_empty()).await;

    let mut files = Vec::new();
    let rotations = rotations();
    let mut took = Vec::with_capacity(rotations);
    // A plain RPC's time beside it, for scale: what the daemon and the socket cost anyway.
    let mut status_took = Vec::with_capacity(rotations);
    for k in 0..rotations {
        let rotated = logs.join(format!("counter/0.log.{k}"));
        std::fs::rename(&log, &rotated).unwrap();
        files.push(rotated);
        let t = Instant::now();
        reopen(&mut rt, id)
            .await
            .unwrap_or_else(|e| panic!("rotation {k}: {e}"));
        took.push(t.elapsed());
        assert!(
            log.exists(),
            "rotation {k}: ReopenContainerLog returned before the new log file existed"
        );
        let t = Instant::now();
        container_status(&mut rt, id).await;
        status_took.push(t.elapsed());
    }
    rt.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    wait_exited(&mut rt, id, Duration::from_secs(30)).await;
    files.push(log);

    took.sort();
    status_took.sort();
    eprintln!(
        "ReopenContainerLog, {rotations} rotations: median {:?}, p90 {:?}, p99 {:?}, max {:?} \
         (ContainerStatus: median {:?})",
        took[rotations / 2],
        took[rotations * 9 / 10],
        took[rotations * 99 / 100],
        took[rotations - 1],
        status_took[rotations / 2],
    );

    // Every line exactly once, in order, across the rotated files and the current one.
    let mut n = 0u64;
    let mut empty = 0;
    for f in &files {
        let lines = log_lines(f);
        empty += usize::from(lines.is_empty());
        for line in lines {
            n += 1;
            assert_eq!(line, n.to_string(), "in {}", f.display());
        }
    }
    eprintln!("{n} lines in {} files, {empty} of them empty", files.len());
    assert!(n > rotations as u64, "only {n} lines written");
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reopen_errors_are_quick_and_name_the_container() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let cfg = pod_config("reopen-errors", &logs);
    let sleeper = container_config("sleeper", BUSYBOX, &["sleep", "300"]);
    let quitter = container_config("quitter", BUSYBOX, &["true"]);
    let (pod, ids) = run_pod(&mut rt, cfg.clone(), vec![sleeper, quitter]).await;
    let (running, exited) = (&ids[0], &ids[1]);

    let expect = |res: Result<(), tonic::Status>, code: Code, id: &str| {
        let e = res.expect_err("ReopenContainerLog succeeded");
        assert_eq!(e.code(), code, "{e:?}");
        assert!(e.message().contains(id), "{e:?} does not name {id}");
        e.message().to_string()
    };

    // Not running: created but never started, and exited.
    let created = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config("idle", BUSYBOX, &["sleep", "300"])),
            sandbox_config: Some(cfg.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    let msg = expect(
        reopen(&mut rt, &created).await,
        Code::FailedPrecondition,
        &created,
    );
    assert!(msg.contains("not running"), "{msg}");
    wait_exited(&mut rt, exited, Duration::from_secs(10)).await;
    let msg = expect(
        reopen(&mut rt, exited).await,
        Code::FailedPrecondition,
        exited,
    );
    assert!(msg.contains("not running"), "{msg}");
    expect(
        reopen(&mut rt, "no-such-id").await,
        Code::NotFound,
        "no-such-id",
    );
    expect(
        reopen(&mut rt, "").await,
        Code::InvalidArgument,
        "container_id",
    );

    // A reopen the monitor cannot do: the log's directory was removed. The monitor says so at
    // once (no waiting for a timeout) and keeps the file it has.
    let dir = logs.join("sleeper");
    let log = dir.join("0.log");
    wait_for(|| log.exists()).await;
    std::fs::remove_dir_all(&dir).unwrap();
    let t = Instant::now();
    let msg = expect(
        reopen(&mut rt, running).await,
        Code::FailedPrecondition,
        running,
    );
    let took = t.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(
        msg.contains(&format!("opening log {}", log.display()))
            && msg.contains("No such file or directory"),
        "{msg}"
    );
    eprintln!("failed reopen answered in {took:?}: {msg}");

    // Once the directory is back, rotation works again.
    std::fs::create_dir_all(&dir).unwrap();
    reopen(&mut rt, running).await.unwrap();
    assert!(log.exists());
    let status = container_status(&mut rt, running).await;
    assert_eq!(status.state, ContainerState::ContainerRunning as i32);
    d.cleanup().await;
}

/// Polls `cond` for up to 10 s.
async fn wait_for(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "condition never held");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
