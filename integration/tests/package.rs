//! The Debian package as an operator meets it: `apt-get install ./peapod_*.deb`, the daemon
//! started with the unit's own command line (and its readiness notification), a pod run with
//! crictl over the default socket, then `apt-get purge` leaving nothing of the package behind.
//!
//! It installs into this machine's real paths (/usr/bin, /etc/peapod, /lib/systemd), so it
//! skips, saying why, wherever a peapod installation or its data already exists: those are
//! an operator's, not the test's.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use peapod_integration::*;

const UNIT: &str = "/lib/systemd/system/peapod.service";
const CONFIG: &str = "/etc/peapod/config.toml";
const SOCKET: &str = "/run/peapod/peapod.sock";
/// The default config's data, state and cgroup parent: the test's once it installed the
/// package into a machine that had none of them.
const DATA: [&str; 2] = ["/var/lib/peapod", "/run/peapod"];

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("running a command");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn installed() -> bool {
    run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "peapod"]))
        .1
        .contains("install ok installed")
}

fn apt(args: &[&str], cwd: &Path) -> (bool, String) {
    run(Command::new("apt-get")
        .args(args)
        .current_dir(cwd)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Whatever happens in the test, the package and the daemon's data go when it ends.
struct Installed {
    dir: PathBuf,
    daemon: Option<Child>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if installed() {
            let (ok, out) = apt(&["purge", "-y", "-q", "peapod"], &self.dir);
            if !ok {
                eprintln!("apt-get purge peapod failed:\n{out}");
            }
        }
        for d in DATA {
            let _ = std::fs::remove_dir_all(d);
        }
        for m in cgroup_mounts() {
            let _ = std::fs::remove_dir(m.join("peapod"));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The unit's ExecStart, split as systemd splits a plain command line.
fn exec_start(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart in the unit");
    line.split_whitespace().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn install_run_a_pod_and_purge() {
    if !require_root() {
        return;
    }
    if installed() {
        eprintln!("skipped: a peapod package is already installed on this machine");
        return;
    }
    // The packaged config keeps container rootfs upper dirs in /var/lib/peapod, which
    // overlayfs refuses on an overlayfs (the vm-test guest's root is one).
    if nix::sys::statfs::statfs("/var/lib")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC)
    {
        eprintln!(
            "skipped: /var/lib is on overlayfs, where the packaged daemon's container rootfs \
             cannot live (make test runs this test on the host)"
        );
        return;
    }
    for p in ["/etc/peapod", "/usr/bin/peapod", UNIT]
        .into_iter()
        .chain(DATA)
    {
        if Path::new(p).exists() {
            eprintln!("skipped: {p} exists and is not this test's to overwrite");
            return;
        }
    }
    if cgroup_mounts().iter().any(|m| m.join("peapod").exists()) {
        eprintln!("skipped: a /peapod cgroup exists and is not this test's");
        return;
    }
    let dir = std::env::temp_dir().join(format!("peapod-package-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut guard = Installed {
        dir: dir.clone(),
        daemon: None,
    };

    // The package, from the binaries this suite tests.
    let (ok, out) = run(Command::new(workspace().join("hack/deb.sh"))
        .arg(bin_dir())
        .arg(&dir)
        .env("DEB_COMPRESS", "none"));
    assert!(ok, "hack/deb.sh: {out}");
    let deb = PathBuf::from(out.trim().lines().last().unwrap());
    let name = deb.file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        name.starts_with("peapod_") && name.ends_with(".deb"),
        "{name}"
    );
    let (ok, out) = apt(&["install", "-y", "-q", &format!("./{name}")], &dir);
    assert!(ok, "apt-get install ./{name}:\n{out}");
    assert!(installed());
    for f in [
        "/usr/bin/peapod",
        "/usr/bin/peapod-shim",
        UNIT,
        CONFIG,
        "/usr/share/doc/peapod/examples/web-probes.yaml",
    ] {
        assert!(Path::new(f).is_file(), "{f} not installed");
    }
    assert!(Path::new("/etc/peapod/manifests").is_dir());
    let (ok, out) = run(Command::new("/usr/bin/peapod").args(["config", "check", CONFIG]));
    assert!(ok, "the packaged config does not check: {out}");
    let (ok, out) = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "peapod"]));
    assert!(ok && out.contains(CONFIG), "config is no conffile: {out}");

    // As an operator would on a host whose network is not peapod's to change: pods get
    // loopback only. Everything else stays the packaged default.
    let cfg = std::fs::read_to_string(CONFIG).unwrap();
    assert!(cfg.contains("mode = \"auto\""));
    std::fs::write(CONFIG, cfg.replace("mode = \"auto\"", "mode = \"none\"")).unwrap();

    // The unit's command line, with a notify socket as systemd gives a Type=notify service.
    let unit = std::fs::read_to_string(UNIT).unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("KillMode=process"));
    let argv = exec_start(&unit);
    assert_eq!(argv[0], "/usr/bin/peapod", "{argv:?}");
    let notify = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .env("NOTIFY_SOCKET", &notify)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    guard.daemon = Some(child);
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).unwrap_or_else(|e| {
        panic!(
            "no READY=1 ({e}):\n{}",
            std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
        )
    });
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    assert!(Path::new(SOCKET).exists());

    // An image into the default store, then a pod and a container.
    let (ok, out) = run(Command::new("/usr/bin/peapod").args([
        "image",
        "import",
        fixtures().join("busybox.tar").to_str().unwrap(),
    ]));
    assert!(ok, "image import: {out}");
    let pod = serde_json::json!({
        "metadata": {"name": "packaged", "namespace": "default", "uid": "pkg-1", "attempt": 0},
        "log_directory": dir.join("logs"),
        "linux": {},
    });
    let ctr = serde_json::json!({
        "metadata": {"name": "sleeper"},
        "image": {"image": BUSYBOX},
        "command": ["sleep", "3600"],
        "log_path": "sleeper.log",
        "linux": {},
    });
    std::fs::write(dir.join("pod.json"), pod.to_string()).unwrap();
    std::fs::write(dir.join("ctr.json"), ctr.to_string()).unwrap();
    match crictl() {
        Some(crictl) => {
            let c = |args: &[&str]| {
                let (ok, out) = run(Command::new(&crictl)
                    .args(["--runtime-endpoint", &format!("unix://{SOCKET}")])
                    .args(["--timeout", "30s"])
                    .args(args));
                assert!(ok, "crictl {args:?}: {out}");
                out.trim().to_string()
            };
            let p = dir.join("pod.json");
            let p = p.to_str().unwrap();
            let pod_id = c(&["runp", p]);
            let cid = c(&["create", &pod_id, dir.join("ctr.json").to_str().unwrap(), p]);
            c(&["start", &cid]);
            let ps: serde_json::Value =
                serde_json::from_str(&c(&["ps", "-o", "json", "--id", &cid])).unwrap();
            assert_eq!(ps["containers"][0]["state"], "CONTAINER_RUNNING", "{ps}");
            assert_eq!(c(&["exec", &cid, "echo", "packaged"]), "packaged");
            c(&["stopp", &pod_id]);
            c(&["rmp", &pod_id]);
            assert_eq!(c(&["pods", "-q"]), "");
        }
        None => {
            eprintln!("crictl not found ($CRICTL or PATH): the pod runs through the CRI client");
            let mut rt = peapod::api::runtime_service_client::RuntimeServiceClient::new(
                channel(Path::new(SOCKET)).await.unwrap(),
            );
            let (pod_id, ids) = run_pod(
                &mut rt,
                pod_config("packaged", &dir.join("logs")),
                vec![container_config("sleeper", BUSYBOX, &["sleep", "3600"])],
            )
            .await;
            let st = container_status(&mut rt, &ids[0]).await;
            assert_eq!(
                st.state,
                peapod::api::ContainerState::ContainerRunning as i32
            );
            rt.stop_pod_sandbox(peapod::api::StopPodSandboxRequest {
                pod_sandbox_id: pod_id.clone(),
            })
            .await
            .unwrap();
            rt.remove_pod_sandbox(peapod::api::RemovePodSandboxRequest {
                pod_sandbox_id: pod_id,
            })
            .await
            .unwrap();
        }
    }

    // SIGTERM, as systemctl stop sends it: STOPPING=1, then the daemon ends.
    let mut child = guard.daemon.take().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let n = sock.recv(&mut buf).expect("STOPPING=1");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "daemon did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every log line is JSON, as the unit asks (--log-format json).
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap();
    for l in log.lines().filter(|l| !l.is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(l).is_ok(),
            "not JSON: {l}"
        );
    }

    // Purge: the package's files go, the conffile included.
    let (ok, out) = apt(&["purge", "-y", "-q", "peapod"], &dir);
    assert!(ok, "apt-get purge peapod:\n{out}");
    assert!(!installed());
    for f in [
        "/usr/bin/peapod",
        "/usr/bin/peapod-shim",
        UNIT,
        "/etc/peapod",
    ] {
        assert!(!Path::new(f).exists(), "{f} left after purge");
    }
    drop(guard);
    for d in DATA {
        assert!(!Path::new(d).exists(), "{d} left");
    }
}
