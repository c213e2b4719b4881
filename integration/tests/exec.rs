//! ExecSync against real runc over the real socket: exit codes, stdout and stderr kept apart,
//! the timeout that kills, the output cap (CVE-2022-31030), and an exec that is the container's
//! own process (user, capabilities) with only other arguments.

use std::time::{Duration, Instant};

use peapod::api::*;
use peapod_integration::*;
use tonic::Code;

async fn exec(
    rt: &mut Rt,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<ExecSyncResponse, tonic::Status> {
    rt.exec_sync(ExecSyncRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout,
    })
    .await
    .map(|r| r.into_inner())
}

/// Host PIDs of the processes in the container's cgroup (any v1 hierarchy or v2).
fn cgroup_procs(d: &Daemon, pod: &str, id: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for m in cgroup_mounts() {
        let f = m
            .join(d.cgroup_parent.trim_start_matches('/'))
            .join(pod)
            .join(id)
            .join("cgroup.procs");
        if let Ok(t) = std::fs::read_to_string(f) {
            out.extend(t.lines().filter_map(|l| l.parse::<i32>().ok()));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_sync_codes_streams_timeout_and_cap() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let logs = d.root.parent().unwrap().join("logs");
    // kubelet's message limit (16 MiB), which the output cap keeps ExecSync under.
    let mut rt = d.rt().await.max_decoding_message_size(16 << 20);
    let (pod, ids) = run_pod(
        &mut rt,
        pod_config("exec", &logs),
        vec![container_config("app", BUSYBOX, &["sleep", "1000"])],
    )
    .await;
    let id = &ids[0];

    let r = exec(
        &mut rt,
        id,
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
        0,
    )
    .await
    .unwrap();
    assert_eq!(
        (r.stdout.as_slice(), r.stderr.as_slice(), r.exit_code),
        (&b"out\n"[..], &b"err\n"[..], 3)
    );
    let r = exec(&mut rt, id, &["true"], 5).await.unwrap();
    assert_eq!(r.exit_code, 0);
    // Death by signal is 128+N.
    let r = exec(&mut rt, id, &["sh", "-c", "kill -9 $$"], 5)
        .await
        .unwrap();
    assert_eq!(r.exit_code, 137);

    // The timeout kills the command: DEADLINE_EXCEEDED, and nothing of it is left running.
    let before = cgroup_procs(&d, &pod, id);
    let t0 = Instant::now();
    let e = exec(&mut rt, id, &["sleep", "4321"], 1).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(e.message().contains("timeout"), "{}", e.message());
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        cgroup_procs(&d, &pod, id),
        before,
        "the timed-out exec still runs"
    );

    // Output beyond the cap is dropped (what is kept fits kubelet's 16 MiB messages), and the
    // writer is not blocked by it.
    let r = exec(
        &mut rt,
        id,
        &["sh", "-c", "echo start >&2; head -c 20971520 /dev/zero"],
        30,
    )
    .await
    .unwrap();
    assert_eq!(
        r.stdout.len() + r.stderr.len(),
        peapod::pod::exec::OUTPUT_CAP
    );
    assert_eq!(r.exit_code, 0);
    // An endless writer ends at its timeout, and the daemon's memory stays bounded.
    let e = exec(&mut rt, id, &["yes"], 2).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded);
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid().unwrap())).unwrap();
    let hwm_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        hwm_kb < 128 * 1024,
        "daemon peak RSS {hwm_kb} kB after endless exec output"
    );

    // Errors: unknown container, a container that does not run, a command that cannot start.
    let e = exec(&mut rt, "no-such-container", &["true"], 1)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = exec(&mut rt, id, &[], 1).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(exec(&mut rt, id, &["/no/such/binary"], 5).await.is_err());
    rt.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    let e = exec(&mut rt, id, &["true"], 1).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains(id.as_str()), "{}", e.message());
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_runs_as_the_container_with_its_capabilities() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let logs = d.root.parent().unwrap().join("logs");
    let mut rt = d.rt().await;
    // The image's USER (app, uid 1000) and a dropped capability.
    let mut c = container_config(
        "user",
        "peapod.test/busybox-user:latest",
        &["sleep", "1000"],
    );
    c.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            capabilities: Some(Capability {
                drop_capabilities: vec!["NET_RAW".into()],
                ..Default::default()
            }),
            no_new_privs: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let (_pod, ids) = run_pod(&mut rt, pod_config("exec-user", &logs), vec![c]).await;
    let id = &ids[0];
    let (pid, _) = container_pid(&mut rt, id).await;
    let r = exec(&mut rt, id, &["id", "-u"], 5).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "1000");
    let field = |text: &str, key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .map(|l| l.to_string())
            .unwrap_or_default()
    };
    let host = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let r = exec(&mut rt, id, &["cat", "/proc/self/status"], 5)
        .await
        .unwrap();
    let inside = String::from_utf8_lossy(&r.stdout).into_owned();
    for key in ["CapEff:", "CapBnd:", "NoNewPrivs:", "Seccomp:"] {
        assert_eq!(field(&inside, key), field(&host, key), "{key}");
    }
    assert_eq!(field(&inside, "NoNewPrivs:"), "NoNewPrivs:\t1");
    // Same namespaces as the container's init.
    let r = exec(
        &mut rt,
        id,
        &[
            "sh",
            "-c",
            "readlink /proc/self/ns/net; readlink /proc/self/ns/mnt",
        ],
        5,
    )
    .await
    .unwrap();
    let ns: Vec<String> = ["net", "mnt"]
        .iter()
        .map(|k| {
            std::fs::read_link(format!("/proc/{pid}/ns/{k}"))
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        String::from_utf8_lossy(&r.stdout)
            .lines()
            .collect::<Vec<_>>(),
        ns
    );
    d.cleanup().await;
}
