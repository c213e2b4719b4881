//! `make bench`: pod start latency (RunPodSandbox + CreateContainer + StartContainer) next to the
//! bare OCI runtime doing create + start of an equivalent bundle, the daemon's RSS idle and with
//! 20 pods, the monitor's RSS and PSS, and List* latency with 100 pods. A benchmark, not a test:
//! it prints figures and asserts nothing.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use peapod::api::*;
use peapod_integration::*;

const ITER: usize = 20;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// (RSS, PSS) of a process in KiB.
fn mem_kib(pid: i32) -> (u64, u64) {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        rollup
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

fn mib(kib: u64) -> String {
    format!("{:.2} MiB", kib as f64 / 1024.0)
}

async fn start_pod(rt: &mut Rt, logs: &Path, i: usize) -> (String, String) {
    let cfg = pod_config(&format!("bench-{i}"), logs);
    let c = container_config("c", BUSYBOX, &["sleep", "3000"]);
    let (pod, ids) = run_pod(rt, cfg, vec![c]).await;
    (pod, ids[0].clone())
}

async fn remove_pod(rt: &mut Rt, pod: String) {
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
}

/// runc create + start of a busybox bundle with fresh namespaces, like a pod's container.
fn bare_runtime(layer: &Path, work: &Path) -> Vec<Duration> {
    let runc = peapod::config::find_in_path("runc").expect("runc");
    let bundle = work.join("bundle");
    let root = work.join("runc-root");
    std::fs::create_dir_all(&bundle).unwrap();
    let st = Command::new(&runc)
        .args(["spec", "--bundle"])
        .arg(&bundle)
        .status()
        .unwrap();
    assert!(st.success());
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    spec["root"]["path"] = layer.to_string_lossy().into();
    spec["root"]["readonly"] = true.into();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["sleep", "3000"]);
    spec["linux"]["cgroupsPath"] = "/peapod-bench-bare/c".into();
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec(&spec).unwrap(),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let st = Command::new(&runc)
            .arg("--root")
            .arg(&root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .unwrap();
        assert!(st.success(), "runc {args:?}");
    };
    let mut out = Vec::new();
    for i in 0..ITER + 2 {
        let id = format!("bare{i}");
        let t = Instant::now();
        run(&["create", "--bundle", bundle.to_str().unwrap(), &id]);
        run(&["start", &id]);
        let took = t.elapsed();
        run(&["delete", "--force", &id]);
        if i >= 2 {
            out.push(took);
        }
    }
    for m in cgroup_mounts() {
        let _ = std::fs::remove_dir(m.join("peapod-bench-bare/c"));
        let _ = std::fs::remove_dir(m.join("peapod-bench-bare"));
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !require_root() {
        std::process::exit(1);
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let daemon_pid = d.pid().unwrap() as i32;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = mem_kib(daemon_pid);

    // Pod start latency.
    let mut lat = Vec::new();
    for i in 0..ITER + 2 {
        let t = Instant::now();
        let (pod, _) = start_pod(&mut rt, &logs, i).await;
        let took = t.elapsed();
        remove_pod(&mut rt, pod).await;
        if i >= 2 {
            lat.push(took);
        }
    }
    let peapod_med = median(lat.clone());

    // The bare runtime on the image's single layer.
    let layer = std::fs::read_dir(d.root.join("images/layers"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("diff"))
        .find(|p| p.join("bin/busybox").exists())
        .expect("busybox layer");
    let work = d.root.parent().unwrap().join("bare");
    let bare_med = median(bare_runtime(&layer, &work));

    // Memory with 20 pods.
    let mut pods = Vec::new();
    for i in 0..20 {
        pods.push(start_pod(&mut rt, &logs, 100 + i).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let with20 = mem_kib(daemon_pid);
    let mut mon = Vec::new();
    for (_, c) in &pods {
        let (_, m) = container_pid(&mut rt, c).await;
        mon.push(mem_kib(m));
    }
    let mon_rss = mon.iter().map(|m| m.0).sum::<u64>() / mon.len() as u64;
    let mon_pss = mon.iter().map(|m| m.1).sum::<u64>() / mon.len() as u64;

    // List latency with 100 pods.
    for i in 0..80 {
        pods.push(start_pod(&mut rt, &logs, 200 + i).await);
    }
    let mut lists = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let a = rt
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .unwrap();
        let b = rt
            .list_containers(ListContainersRequest::default())
            .await
            .unwrap();
        lists.push(t.elapsed());
        assert_eq!(a.into_inner().items.len(), 100);
        assert_eq!(b.into_inner().containers.len(), 100);
    }
    let with100 = mem_kib(daemon_pid);
    for (pod, _) in pods {
        remove_pod(&mut rt, pod).await;
    }

    println!(
        "\npeapod benchmark ({} iterations, busybox `sleep`, runc)",
        ITER
    );
    println!("| what | figure |");
    println!("|---|---|");
    println!(
        "| RunPodSandbox+Create+Start, median | {} |",
        ms(peapod_med)
    );
    println!(
        "| RunPodSandbox+Create+Start, min / max | {} / {} |",
        ms(*lat.iter().min().unwrap()),
        ms(*lat.iter().max().unwrap())
    );
    println!("| bare runc create+start, median | {} |", ms(bare_med));
    println!(
        "| peapod overhead over bare runc | {} |",
        ms(peapod_med.saturating_sub(bare_med))
    );
    println!("| daemon RSS idle | {} |", mib(idle.0));
    println!("| daemon RSS with 20 pods | {} |", mib(with20.0));
    println!("| daemon RSS with 100 pods | {} |", mib(with100.0));
    println!(
        "| monitor RSS / PSS per container | {} / {} |",
        mib(mon_rss),
        mib(mon_pss)
    );
    println!(
        "| ListPodSandbox+ListContainers, 100 pods, median | {} |",
        ms(median(lists))
    );
    d.cleanup().await;
}
