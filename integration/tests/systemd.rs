//! peapod as a systemd service, with the real unit file (contrib/peapod.service) and the
//! systemd cgroup driver, in a throwaway machine whose PID 1 is systemd
//! (`peapod_integration::nspawn`):
//!
//! - `systemctl start` returns once the daemon said READY=1 (Type=notify), and the CRI socket
//!   answers at that moment;
//! - a pod's pause and container run in transient scopes of peapod.slice that systemd knows,
//!   and RuntimeConfig reports the systemd driver;
//! - `systemctl restart` (KillMode=process, Delegate=yes) leaves the container running, and the
//!   new daemon reports it; `systemctl stop` gets STOPPING=1 and ends clean;
//! - the pod removed and the machine powered off, nothing of it is left on the host.
//!
//! It needs root, systemd, a cgroup v2 hierarchy and systemd-nspawn (hack/nspawn.sh fetches
//! it); without one of them it prints `skipped: <why>` and returns.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use peapod::api::*;
use peapod_integration::nspawn::{Machine, Setup, Skip};
use peapod_integration::*;

const UNIT: &str = "peapod.service";

/// The unit the machine boots into: the basic system, nothing the host would start.
const TARGET: &str = "[Unit]\nDescription=peapod end-to-end test\n\
                      Requires=basic.target\nAfter=basic.target\n";

/// The daemon's config: the systemd driver (its slice is the default, peapod.slice), pods with
/// loopback only (the machine has no other network), no static pods.
const CONFIG: &str = "cgroup_driver = \"systemd\"\n\n[network]\nmode = \"none\"\n\n\
                      [static_pods]\nmanifest_dir = \"\"\n";

/// The config, with runc as the default runtime where this process's capability bounding set
/// lacks CAP_SYS_RESOURCE (a sandboxed host): crun raises RLIMIT_MEMLOCK to load its device
/// filter and fails there, and the machine cannot have more than its host.
fn config() -> String {
    const CAP_SYS_RESOURCE: u32 = 24;
    let bounding = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(u64::MAX);
    if bounding & (1 << CAP_SYS_RESOURCE) == 0 {
        format!("default_runtime = \"runc\"\n{CONFIG}")
    } else {
        CONFIG.to_string()
    }
}

/// Bounds sized for a TCG guest (make vm-test), where everything is 5-10 times slower.
const BOOT: Duration = Duration::from_secs(180);
const SETTLE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peapod_as_a_systemd_service() {
    let t0 = Instant::now();
    for bin in ["peapod", "peapod-shim"] {
        if nix::unistd::geteuid().is_root() {
            assert!(
                bin_dir().join(bin).exists(),
                "{} missing: build the workspace first",
                bin_dir().join(bin).display()
            );
        }
    }
    let fixtures = fixtures_if_root();
    let unit_file = std::fs::read_to_string(workspace().join("contrib/peapod.service")).unwrap();
    let setup = Setup {
        etc: vec![
            (format!("systemd/system/{UNIT}"), unit_file),
            ("systemd/system/peapod-test.target".into(), TARGET.into()),
            ("peapod/config.toml".into(), config()),
        ],
        // The unit's ExecStart is /usr/bin/peapod: this build's (the shim is found beside
        // the binary the symlink leads to).
        usr_bin: vec![("peapod".into(), bin_dir().join("peapod"))],
        binds: vec![bin_dir()]
            .into_iter()
            .chain(fixtures.clone())
            .collect(),
        unit: "peapod-test.target".into(),
        boot_timeout: BOOT,
    };
    let m = match Machine::boot(setup) {
        Ok(m) => m,
        Err(Skip(why)) => {
            println!("skipped: {why}");
            return;
        }
    };
    println!("machine {} booted in {:?}", m.name, t0.elapsed());
    let fixtures = fixtures.unwrap();

    let (ok, out) = m.run(&[
        "peapod",
        "--root",
        "/var/lib/peapod",
        "image",
        "import",
        fixtures.join("busybox.tar").to_str().unwrap(),
    ]);
    assert!(ok, "image import: {out}");

    // 1. Start: Type=notify, so `systemctl start` returns when READY=1 came. systemd's debug
    //    log names each notification it gets; STATUS= reaches StatusText only that way too.
    set_log_level(&m, "debug");
    let (ok, out) = m.run(&["systemctl", "start", UNIT]);
    assert!(ok, "systemctl start: {out}\n{}", journal(&m));
    // At once, no retry: READY=1 is sent once the socket answers.
    let sock = m.path("/run/peapod/peapod.sock");
    let mut rt = Rt::new(channel(&sock).await.expect("CRI socket"));
    rt.version(VersionRequest::default())
        .await
        .expect("Version right after systemctl start");
    set_log_level(&m, "info");
    let s = state(&m);
    assert_eq!(s["Type"], "notify", "{s:?}");
    assert_eq!(s["ActiveState"], "active", "{s:?}");
    assert_eq!(s["SubState"], "running", "{s:?}");
    assert_eq!(s["StatusText"], "serving CRI", "{s:?}");
    let main_pid: i32 = s["MainPID"].parse().unwrap();
    assert_daemon(&m, main_pid);
    let log = journal(&m);
    assert!(
        log.lines().any(|l| l.contains("notification message")
            && l.contains(&format!("PID {main_pid}"))
            && l.contains("READY=1")),
        "no READY=1 from the daemon in the journal:\n{log}"
    );
    println!("started (pid {main_pid}) at {:?}", t0.elapsed());

    // 2. The systemd driver: reported, and the pod's processes in systemd's units.
    let rc = rt
        .runtime_config(RuntimeConfigRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rc.linux.unwrap().cgroup_driver,
        CgroupDriver::Systemd as i32,
        "RuntimeConfig"
    );
    let mut ctr = container_config(
        "sleeper",
        BUSYBOX,
        &["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
    );
    ctr.log_path = "sleeper.log".into();
    let (pod, ids) = run_pod(
        &mut rt,
        pod_config("sd", std::path::Path::new("/var/log/pods/sd")),
        vec![ctr],
    )
    .await;
    let ctr = ids[0].clone();
    let info = sandbox_info(&mut rt, &pod).await;
    let pause = info["pid"].as_i64().unwrap() as i32;
    let (ctr_pid, monitor) = container_pid(&mut rt, &ctr).await;
    let mut scopes = Vec::new();
    for (what, pid) in [("pause", pause), ("container", ctr_pid)] {
        let unit = scope_of(&m, pid, what);
        let p = m.show(&unit, &["ActiveState", "Slice", "Transient"]);
        assert_eq!(p["ActiveState"], "active", "{what} {unit}: {p:?}");
        assert_eq!(p["Slice"], "peapod.slice", "{what} {unit}: {p:?}");
        assert_eq!(p["Transient"], "yes", "{what} {unit}: {p:?}");
        let (ok, out) = m.run(&["systemctl", "status", "--no-pager", &unit]);
        assert!(ok, "systemctl status {unit}: {out}");
        assert!(out.contains(&pid.to_string()), "{unit} lists {pid}: {out}");
        scopes.push(unit);
    }
    let (_, listed) = m.run(&[
        "systemctl",
        "list-units",
        "--type=scope",
        "--no-legend",
        "--plain",
    ]);
    for u in &scopes {
        assert!(listed.contains(u.as_str()), "{u} not listed:\n{listed}");
    }
    println!("pod running in {scopes:?} at {:?}", t0.elapsed());

    // 3. Restart: only the daemon goes (KillMode=process); the container stays, same PID.
    set_log_level(&m, "debug");
    let (ok, out) = m.run(&["systemctl", "restart", UNIT]);
    assert!(ok, "systemctl restart: {out}\n{}", journal(&m));
    set_log_level(&m, "info");
    let s = state(&m);
    assert_eq!(
        (s["ActiveState"].as_str(), s["SubState"].as_str()),
        ("active", "running"),
        "{s:?}"
    );
    let new_pid: i32 = s["MainPID"].parse().unwrap();
    assert_ne!(new_pid, main_pid, "a new daemon");
    assert_daemon(&m, new_pid);
    for pid in [pause, ctr_pid, monitor] {
        assert!(alive_in(&m, pid), "pid {pid} did not survive the restart");
    }
    let mut rt = Rt::new(channel(&sock).await.expect("CRI socket"));
    let st = container_status(&mut rt, &ctr).await;
    assert_eq!(st.state, ContainerState::ContainerRunning as i32, "{st:?}");
    assert_eq!(
        container_pid(&mut rt, &ctr).await.0,
        ctr_pid,
        "same container"
    );
    let ps = sandbox_status(&mut rt, &pod).await;
    assert_eq!(ps.state, PodSandboxState::SandboxReady as i32, "{ps:?}");
    for u in &scopes {
        assert_eq!(m.show(u, &["ActiveState"])["ActiveState"], "active", "{u}");
    }
    println!(
        "restarted (pid {new_pid}), container kept at {:?}",
        t0.elapsed()
    );

    // 4. The pod goes, and its scopes with it.
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("StopPodSandbox");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("RemovePodSandbox");
    let deadline = Instant::now() + SETTLE;
    loop {
        let (_, listed) = m.run(&[
            "systemctl",
            "list-units",
            "--type=scope",
            "--all",
            "--no-legend",
            "--plain",
        ]);
        let left: Vec<_> = scopes
            .iter()
            .filter(|u| listed.contains(u.as_str()))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "scopes left after RemovePodSandbox: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(rt);

    // 5. Stop: STOPPING=1 from the daemon, a clean end, nothing left in the unit's cgroup.
    set_log_level(&m, "debug");
    let (ok, out) = m.run(&["systemctl", "stop", UNIT]);
    assert!(ok, "systemctl stop: {out}");
    set_log_level(&m, "info");
    let s = state(&m);
    assert_eq!(s["ActiveState"], "inactive", "{s:?}\n{}", journal(&m));
    assert_eq!(s["Result"], "success", "{s:?}");
    let log = journal(&m);
    assert!(
        log.lines().any(|l| l.contains("notification message")
            && l.contains(&format!("PID {new_pid}"))
            && l.contains("STOPPING=1")),
        "no STOPPING=1 from the daemon in the journal:\n{log}"
    );
    let (_, left) = m.run(&["sh", "-c", "cat /sys/fs/cgroup/system.slice/peapod.service/cgroup.procs 2>/dev/null; ls /sys/fs/cgroup/peapod.slice 2>/dev/null | grep scope"]);
    assert!(left.trim().is_empty(), "left in peapod's cgroups: {left}");
    println!("stopped at {:?}", t0.elapsed());

    // 6. Power off; nothing of the machine stays on the host.
    let left = m.poweroff(Duration::from_secs(60));
    assert!(left.is_empty(), "left on the host: {left:#?}");
    println!("powered off; done in {:?}", t0.elapsed());
}

fn fixtures_if_root() -> Option<std::path::PathBuf> {
    nix::unistd::geteuid()
        .is_root()
        .then(|| fixtures().to_path_buf())
}

fn state(m: &Machine) -> HashMap<String, String> {
    m.show(
        UNIT,
        &[
            "ActiveState",
            "SubState",
            "MainPID",
            "Type",
            "StatusText",
            "Result",
        ],
    )
}

fn set_log_level(m: &Machine, level: &str) {
    let (ok, out) = m.run(&["systemctl", "log-level", level]);
    assert!(ok, "systemctl log-level {level}: {out}");
}

fn journal(m: &Machine) -> String {
    m.run(&["journalctl", "--no-pager", "-o", "cat", "-u", UNIT])
        .1
}

/// The process `pid` in the machine is a peapod daemon.
fn assert_daemon(m: &Machine, pid: i32) {
    let (ok, cmd) = m.run(&["cat", &format!("/proc/{pid}/cmdline")]);
    let cmd = cmd.replace('\0', " ");
    assert!(
        ok && cmd.starts_with("/usr/bin/peapod ") && cmd.contains(" daemon"),
        "MainPID {pid} is {cmd:?}"
    );
}

/// Whether `pid` (in the machine's PID namespace) is a live process there.
fn alive_in(m: &Machine, pid: i32) -> bool {
    let (ok, stat) = m.run(&["cat", &format!("/proc/{pid}/stat")]);
    ok && !matches!(
        stat.rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next(),
        Some("Z") | Some("X") | None
    )
}

/// The systemd unit whose cgroup holds `pid`: a `.scope` in a `.slice`. The process may be in
/// a cgroup below the scope's (crun puts a container in `<scope>/container`, the scope being
/// delegated to it).
fn scope_of(m: &Machine, pid: i32, what: &str) -> String {
    let (ok, text) = m.run(&["cat", &format!("/proc/{pid}/cgroup")]);
    assert!(ok, "{what} {pid}: {text}");
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("{what} {pid} has no cgroup v2 path: {text}"));
    let parts: Vec<&str> = path.split('/').collect();
    let at = parts.iter().rposition(|p| p.ends_with(".scope"));
    match at {
        Some(i) if i > 0 && parts[i - 1].ends_with(".slice") => parts[i].to_string(),
        _ => panic!("{what} {pid} is in {path}, not in a scope of a slice"),
    }
}
