//! Regression tests for the container runtime CVEs of containerd, CRI-O and runc, each attack
//! tried against the real daemon and shown to fail: the host file, directory, mount, sysctl
//! or memory it aimed at is checked afterwards, not just the error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use peapod::api::*;
use peapod_integration::hostile::*;
use peapod_integration::staticpod::*;
use peapod_integration::*;
use serde_json::json;
use tonic::Code;

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

async fn pull(d: &Daemon, image: &str) -> Result<String, tonic::Status> {
    d.img()
        .await
        .pull_image(PullImageRequest {
            image: spec(image),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

/// Pushes an image of the busybox layer plus `extra` layers, with `runtime` as its config,
/// and returns its reference on the registry.
fn push_image(reg: &Registry, name: &str, extra: Vec<Layer>, runtime: serde_json::Value) -> String {
    let mut layers = vec![busybox_layer()];
    layers.extend(extra);
    let dir = std::env::temp_dir().join(format!(
        "peapod-cve-layout-{name}-{}",
        &peapod::fsutil::new_id()[..8]
    ));
    write_layout(&dir, &config_json(runtime, &layers), &layers);
    reg.push_layout(&dir, &format!("cve/{name}:1"));
    let _ = std::fs::remove_dir_all(&dir);
    format!("{}/cve/{name}:1", reg.addr)
}

/// The host's mount points under `dir` (this test process shares the host's mount namespace).
fn host_mounts_under(dir: &Path) -> Vec<String> {
    mounts_under(dir)
}

/// Creates and starts one container in `pod`; the first error of the two.
async fn create_start(
    rt: &mut Rt,
    pod: &str,
    sandbox: &PodSandboxConfig,
    c: ContainerConfig,
) -> Result<String, tonic::Status> {
    let id = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(c),
            sandbox_config: Some(sandbox.clone()),
        })
        .await?
        .into_inner()
        .container_id;
    rt.start_container(StartContainerRequest {
        container_id: id.clone(),
    })
    .await?;
    Ok(id)
}

async fn run_sandbox(rt: &mut Rt, config: &PodSandboxConfig) -> String {
    rt.run_pod_sandbox(RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: String::new(),
    })
    .await
    .expect("RunPodSandbox")
    .into_inner()
    .pod_sandbox_id
}

async fn exec(rt: &mut Rt, id: &str, cmd: &str) -> (i32, String) {
    let r = rt
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["sh".into(), "-c".into(), cmd.into()],
            timeout: 10,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    (
        r.exit_code,
        format!(
            "{}{}",
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        ),
    )
}

fn assert_no_leftovers(d: &Daemon) {
    let left = d.leftovers();
    assert!(left.is_empty(), "leftovers: {left:#?}");
}

async fn remove_all_pods(rt: &mut Rt) {
    let list = rt
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    for p in list {
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: p.id,
        })
        .await
        .expect("RemovePodSandbox");
    }
}

/// containerd CVE-2021-32760 and the tar-extraction class: layer entries named with `../`,
/// absolute names, a symlink followed by a write through it, hard links out of the tree and
/// chmod through a symlink. Each layer is pulled through a real registry; the directory the
/// entries aim at (with its canary) must be exactly as before, and what was accepted must be
/// inside the layer.
#[tokio::test(flavor = "multi_thread")]
async fn layer_entries_never_escape_the_layer() {
    if !require_root() {
        return;
    }
    let target = HostTarget::new("unpack");
    let host = target.dir.to_string_lossy().into_owned();
    let rel = host.trim_start_matches('/').to_string();
    let up = "../".repeat(12);
    let canary = format!("{host}/canary");
    let before = target.snapshot();
    let reg = Registry::start();
    let mut d = Daemon::start().await;

    // (name, layer, whether the daemon may accept it with everything kept inside)
    let attacks: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "dotdot",
            RawTar::new()
                .file(&format!("{up}{rel}/dotdot"), b"pwned\n", 0o644)
                .finish(),
            false,
        ),
        (
            "absolute",
            RawTar::new()
                .file(&format!("{host}/absolute"), b"pwned\n", 0o644)
                .finish(),
            true,
        ),
        (
            "symlink-write",
            RawTar::new()
                .symlink("esc", &host, 0o777)
                .file("esc/through-abs", b"pwned\n", 0o644)
                .symlink("esc2", &format!("{up}{rel}"), 0o777)
                .file("esc2/through-rel", b"pwned\n", 0o644)
                .dir("esc/subdir", 0o777)
                .finish(),
            true,
        ),
        (
            "hardlink-dotdot",
            RawTar::new()
                .hardlink("hl", &format!("{up}{rel}/canary"))
                .finish(),
            false,
        ),
        (
            "hardlink-absolute",
            RawTar::new().hardlink("hl", &canary).finish(),
            false,
        ),
        (
            "hardlink-via-symlink",
            RawTar::new()
                .symlink("esc", &host, 0o777)
                .hardlink("hl", "esc/canary")
                .finish(),
            false,
        ),
        (
            "chmod-through-symlink",
            RawTar::new()
                .symlink("c", &canary, 0o777)
                .symlink("d", &host, 0o777)
                // A directory entry over the symlink to the host directory, mode 0777: chmod
                // by path would open the host directory up.
                .dir("d", 0o777)
                // And a file entry over the symlink to the canary, setuid and world-writable.
                .file("c", b"replaced\n", 0o4777)
                .finish(),
            true,
        ),
    ];
    for (name, tar, may_succeed) in attacks {
        let layout = std::env::temp_dir().join(format!(
            "peapod-cve-layout-{name}-{}",
            &peapod::fsutil::new_id()[..8]
        ));
        let layers = [Layer::tar(tar)];
        write_layout(&layout, &config_json(json!({}), &layers), &layers);
        reg.push_layout(&layout, &format!("cve/{name}:1"));
        let _ = std::fs::remove_dir_all(&layout);
        let r = pull(&d, &format!("{}/cve/{name}:1", reg.addr)).await;
        eprintln!("{name}: {:?}", r.as_ref().map_err(|e| e.message()));
        match &r {
            Ok(_) => assert!(
                may_succeed,
                "{name}: a layer escaping the tree was accepted"
            ),
            Err(e) => {
                assert!(!may_succeed, "{name}: refused: {e:?}");
                // The error names the entry it refused.
                assert!(
                    e.message().contains("hl") || e.message().contains("dotdot"),
                    "{name}: {e:?}"
                );
            }
        }
        assert_eq!(
            target.snapshot(),
            before,
            "{name}: the host directory changed"
        );
    }
    // What was accepted landed inside a layer directory.
    let inside = |p: &str| {
        std::fs::read_dir(d.root.join("images/layers"))
            .unwrap()
            .flatten()
            .any(|l| l.path().join("diff").join(p).exists())
    };
    assert!(
        inside(&format!("{rel}/absolute")),
        "absolute entry not in its layer"
    );
    assert!(inside(&format!("{rel}/through-abs")));
    assert!(inside(&format!("{rel}/through-rel")));
    assert!(inside(&format!("{rel}/subdir")));
    assert!(inside("c") && inside("d"));
    assert!(d.running(), "the daemon died");
    d.cleanup().await;
    assert_eq!(target.snapshot(), before);
}

/// containerd CVE-2022-23648: image VOLUMEs and CRI mount targets that climb out of the rootfs,
/// by `..` or through a symlink in the image pointing at a host directory. The host directory
/// must get neither a mount nor a new entry; `..` in a CRI container path is refused, naming
/// the field; a target through a symlink is resolved inside the rootfs.
#[tokio::test(flavor = "multi_thread")]
async fn volumes_and_mount_targets_stay_in_the_rootfs() {
    if !require_root() {
        return;
    }
    let target = HostTarget::new("mounts");
    let host = target.dir.to_string_lossy().into_owned();
    let rel = host.trim_start_matches('/').to_string();
    let up = "../".repeat(12);
    let before = target.snapshot();
    let reg = Registry::start();
    let escape = RawTar::new()
        .symlink("escape", &host, 0o777)
        .symlink("escape-rel", &format!("{up}{rel}"), 0o777)
        .finish();
    let image = push_image(
        &reg,
        "volumes",
        vec![Layer::tar(escape)],
        json!({"Volumes": {
            format!("/{up}{rel}/vol-dotdot"): {},
            "/escape/vol-symlink": {},
            "/escape-rel/vol-rel": {},
        }}),
    );
    let d = Daemon::start().await;
    pull(&d, &image).await.expect("pull");
    let src_guard = tempdir_with_marker("mount-src");
    let src = src_guard.dir.clone();
    let logs = d.root.join("logs");
    let mut rt = d.rt().await;
    let sandbox = pod_config("volumes", &logs);
    let pod = run_sandbox(&mut rt, &sandbox).await;

    let mount = |path: &str| Mount {
        container_path: path.into(),
        host_path: src.to_string_lossy().into_owned(),
        ..Default::default()
    };
    // `..` in a container path is refused outright.
    let mut c = container_config("dotdot", &image, &["true"]);
    c.mounts = vec![mount(&format!("/{up}{rel}/mnt-dotdot"))];
    let e = create_start(&mut rt, &pod, &sandbox, c).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("mounts[0].container_path"),
        "{}",
        e.message()
    );

    // Through symlinks: the mounts land at the symlinks' targets inside the rootfs.
    let mut c = container_config(
        "through",
        &image,
        &[
            "sh",
            "-c",
            &format!(
                "cat /escape/mnt/marker /escape-rel/mnt-rel/marker /{rel}/mnt/marker; sleep 300"
            ),
        ],
    );
    c.mounts = vec![mount("/escape/mnt"), mount("/escape-rel/mnt-rel")];
    // runc follows the symlinks inside the rootfs and makes the targets there; crun refuses
    // a target it would have to make through a symlink. Either is safe: what must not
    // happen is a mount or a directory on the host.
    match create_start(&mut rt, &pod, &sandbox, c).await {
        Ok(id) => {
            let lines = wait_log(&logs.join("through/0.log"), Duration::from_secs(10), |l| {
                l.len() >= 3
            })
            .await;
            assert_eq!(lines, ["marker", "marker", "marker"], "mounts not inside");
            // The image's volumes (none of which peapod makes) did not appear on the host.
            let (_, out) = exec(&mut rt, &id, &format!("ls -a /{rel}")).await;
            assert!(!out.contains("vol-"), "{out}");
        }
        Err(e) => eprintln!(
            "the runtime refused mounts through symlinks: {}",
            e.message()
        ),
    }
    assert_eq!(target.snapshot(), before, "the host directory changed");
    assert!(host_mounts_under(&target.dir).is_empty());
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    assert_no_leftovers(&d);
    d.cleanup().await;
    assert_eq!(target.snapshot(), before);
}

/// A host directory holding a file `marker` whose content is "marker", removed when the
/// guard is dropped (also when the test fails).
fn tempdir_with_marker(tag: &str) -> HostTarget {
    let t = HostTarget::new(tag);
    std::fs::write(t.dir.join("marker"), b"marker\n").unwrap();
    t
}

/// runc CVE-2024-21626: a working directory of `/proc/self/fd/N` (from the image's
/// WorkingDir, the CRI working_dir, or a symlink in the image) reached a host directory
/// through an fd leaked into the container. Every such container is refused with the field
/// named, and a container's PID 1 holds fds 0-2 only, seen from the host.
#[tokio::test(flavor = "multi_thread")]
async fn proc_self_fd_working_dirs_and_leaked_fds() {
    if !require_root() {
        return;
    }
    let reg = Registry::start();
    let wd_image = push_image(
        &reg,
        "workdir",
        vec![],
        json!({"WorkingDir": "/proc/self/fd/7"}),
    );
    let sneaky = RawTar::new()
        .symlink("sneaky", "/proc/self/fd/7", 0o777)
        .symlink("sneaky-rel", "../proc/thread-self/cwd", 0o777)
        .finish();
    let link_image = push_image(
        &reg,
        "workdir-link",
        vec![Layer::tar(sneaky.clone())],
        json!({"WorkingDir": "/sneaky"}),
    );
    let link_cri = push_image(&reg, "workdir-link2", vec![Layer::tar(sneaky)], json!({}));
    let d = Daemon::start().await;
    for i in [&wd_image, &link_image, &link_cri] {
        pull(&d, i).await.expect("pull");
    }
    let logs = d.root.join("logs");
    let mut rt = d.rt().await;
    let sandbox = pod_config("workdir", &logs);
    let pod = run_sandbox(&mut rt, &sandbox).await;

    let cases: Vec<(&str, &str, &str)> = vec![
        (wd_image.as_str(), "", "image.config.WorkingDir"),
        (link_image.as_str(), "", "image.config.WorkingDir"),
        (BUSYBOX, "/proc/self/fd/7", "config.working_dir"),
        (BUSYBOX, "/proc/1/fd/3", "config.working_dir"),
        (BUSYBOX, "/tmp/../proc/self/fd/7", "config.working_dir"),
        (link_cri.as_str(), "/sneaky", "config.working_dir"),
        (link_cri.as_str(), "/sneaky-rel", "config.working_dir"),
    ];
    for (i, (image, wd, field)) in cases.into_iter().enumerate() {
        let mut c = container_config(&format!("wd{i}"), image, &["pwd"]);
        c.working_dir = wd.into();
        let e = create_start(&mut rt, &pod, &sandbox, c)
            .await
            .expect_err(&format!("working dir {wd:?} of {image} was accepted"));
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(field), "{field}: {}", e.message());
    }

    let id = create_start(
        &mut rt,
        &pod,
        &sandbox,
        container_config("fds", BUSYBOX, &["sleep", "300"]),
    )
    .await
    .unwrap();
    let (pid, _) = container_pid(&mut rt, &id).await;
    let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    assert_eq!(
        fds,
        [0, 1, 2],
        "PID 1 of the container holds more than stdio"
    );
    // An exec'd process inherits nothing either (3 is ls's own directory).
    let (_, out) = exec(&mut rt, &id, "ls /proc/self/fd").await;
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2", "3"]
    );
    remove_all_pods(&mut rt).await;
    assert_no_leftovers(&d);
    d.cleanup().await;
}

/// CRI-O CVE-2022-0811: a sysctl value smuggling a second assignment
/// (`1+kernel.core_pattern=|/evil`), with `=`, `+` or a newline, and sysctls that are not
/// namespaced (kernel.core_pattern, vm.swappiness) are refused by RunPodSandbox with the
/// field named; the host's values do not change, and an allowed sysctl applies to the pod
/// only.
#[tokio::test(flavor = "multi_thread")]
async fn sysctls_cannot_reach_the_host() {
    if !require_root() {
        return;
    }
    let host_keys = [
        "kernel/core_pattern",
        "vm/swappiness",
        "kernel/shm_rmid_forced",
        "net/ipv4/ip_forward",
    ];
    let read_host = || {
        host_keys
            .iter()
            .map(|k| std::fs::read_to_string(format!("/proc/sys/{k}")).unwrap())
            .collect::<Vec<_>>()
    };
    let before = read_host();
    let d = Daemon::start().await;
    let logs = d.root.join("logs");
    let mut rt = d.rt().await;
    let evil = "|/tmp/peapod-cve-core %p";
    let cases: Vec<(&str, String)> = vec![
        (
            "kernel.shm_rmid_forced",
            format!("1+kernel.core_pattern={evil}"),
        ),
        ("kernel.shm_rmid_forced", "1\nkernel.core_pattern=x".into()),
        ("kernel.shm_rmid_forced", "1\rvm.swappiness=1".into()),
        ("net.ipv4.ip_forward", "1=1".into()),
        ("kernel.shm_rmid_forced+kernel.core_pattern", "1".into()),
        ("kernel.shm_rmid_forced=1 kernel.core_pattern", "x".into()),
        ("kernel.core_pattern", evil.into()),
        ("vm.swappiness", "1".into()),
        ("kernel/core_pattern", evil.into()),
        ("fs.suid_dumpable", "2".into()),
    ];
    for (key, value) in cases {
        let mut c = pod_config("sysctl", &logs);
        c.linux.as_mut().unwrap().sysctls = HashMap::from([(key.to_string(), value.clone())]);
        let e = rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(c),
                runtime_handler: String::new(),
            })
            .await
            .expect_err(&format!("sysctl {key}={value:?} was accepted"));
        assert_eq!(e.code(), Code::InvalidArgument, "{key}: {e:?}");
        assert!(
            e.message().contains(&format!("sysctls[{key}]")),
            "{key}: {}",
            e.message()
        );
        assert_eq!(read_host(), before, "{key}={value:?} changed the host");
    }
    // Not one sandbox is left from the refusals.
    let list = rt
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(list.is_empty(), "{list:?}");

    // A namespaced sysctl applies to the pod, not to the host.
    let mut c = pod_config("sysctl-ok", &logs);
    let want = if before[2].trim() == "1" { "0" } else { "1" };
    c.linux.as_mut().unwrap().sysctls =
        HashMap::from([("kernel.shm_rmid_forced".to_string(), want.to_string())]);
    let (_pod, _) = run_pod(
        &mut rt,
        c,
        vec![container_config(
            "show",
            BUSYBOX,
            &["cat", "/proc/sys/kernel/shm_rmid_forced"],
        )],
    )
    .await;
    let lines = wait_log(&logs.join("show/0.log"), Duration::from_secs(10), |l| {
        !l.is_empty()
    })
    .await;
    assert_eq!(lines, [want]);
    assert_eq!(read_host(), before, "a pod sysctl changed the host");
    remove_all_pods(&mut rt).await;
    assert_no_leftovers(&d);
    d.cleanup().await;
}

/// CRI-O CVE-2022-4318: env values with newlines were copied into a passwd entry for a user
/// missing from the image, adding an account of the attacker's choosing. With a uid the
/// image does not know and such values, /etc/passwd and /etc/group inside the container are
/// the image's own, line for line.
#[tokio::test(flavor = "multi_thread")]
async fn env_newlines_never_reach_passwd_or_group() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let logs = d.root.join("logs");
    let mut rt = d.rt().await;
    let injected = "\nroot2::0:0::/:/bin/sh";
    let script = "echo ---passwd; cat /etc/passwd; echo ---group; cat /etc/group; echo ---end";
    let mut containers = Vec::new();
    for (name, user, image) in [
        ("unknown-uid", Some(4242), BUSYBOX),
        ("root", None, BUSYBOX),
        ("image-user", None, "peapod.test/busybox-user:latest"),
    ] {
        let mut c = container_config(name, image, &["sh", "-c", script]);
        c.envs = ["HOME", "USER", "LOGNAME", "X"]
            .iter()
            .map(|k| KeyValue {
                key: k.to_string(),
                value: format!("/home/x{injected}\nroot3:x:0:").into_bytes(),
            })
            .collect();
        if let Some(uid) = user {
            c.linux = Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    run_as_user: Some(Int64Value { value: uid }),
                    run_as_group: Some(Int64Value { value: uid }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        containers.push(c);
    }
    let (_pod, ids) = run_pod(&mut rt, pod_config("env", &logs), containers).await;
    for id in &ids {
        wait_exited(&mut rt, id, Duration::from_secs(10)).await;
    }
    let fixture = |f: &str| {
        let layer = busybox_layer();
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(&layer.blob[..]));
        let mut out = String::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap() == Path::new(f) {
                std::io::Read::read_to_string(&mut e, &mut out).unwrap();
            }
        }
        out.lines().map(str::to_string).collect::<Vec<_>>()
    };
    let (passwd, group) = (fixture("etc/passwd"), fixture("etc/group"));
    for name in ["unknown-uid", "root", "image-user"] {
        let lines = log_lines(&logs.join(format!("{name}/0.log")));
        let section = |from: &str, to: &str| {
            let a = lines.iter().position(|l| l == from).expect(from) + 1;
            let b = lines.iter().position(|l| l == to).expect(to);
            lines[a..b].to_vec()
        };
        assert_eq!(
            section("---passwd", "---group"),
            passwd,
            "{name}: /etc/passwd"
        );
        assert_eq!(section("---group", "---end"), group, "{name}: /etc/group");
    }
    remove_all_pods(&mut rt).await;
    assert_no_leftovers(&d);
    d.cleanup().await;
}

/// containerd CVE-2022-31030: ExecSync output was buffered without bound, so a command
/// printing without end grew the daemon until it died. 160 MiB of output (ten times the cap)
/// comes back capped and the daemon's peak RSS grows by less than the output; an exec probe
/// printing 16 MiB gives a capped message in its event. (Sizes a qemu TCG guest prints in
/// seconds: the point is output far past the caps, not its absolute size.)
#[tokio::test(flavor = "multi_thread")]
async fn exec_and_probe_output_is_capped() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let logs = d.root.join("logs");
    let mut rt = d.rt().await.max_decoding_message_size(32 << 20);
    let (_pod, ids) = run_pod(
        &mut rt,
        pod_config("flood", &logs),
        vec![container_config("app", BUSYBOX, &["sleep", "300"])],
    )
    .await;
    let pid = d.pid().unwrap();
    let hwm_before = proc_kb(pid, "VmHWM");
    let r = rt
        .exec_sync(ExecSyncRequest {
            container_id: ids[0].clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "head -c 134217728 /dev/zero; head -c 33554432 /dev/zero >&2".into(),
            ],
            timeout: 300,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    assert_eq!(r.exit_code, 0);
    assert_eq!(
        r.stdout.len() + r.stderr.len(),
        peapod::pod::exec::OUTPUT_CAP
    );
    let hwm_after = proc_kb(pid, "VmHWM");
    assert!(
        hwm_after < hwm_before + 96 * 1024,
        "daemon peak RSS went from {hwm_before} kB to {hwm_after} kB"
    );
    remove_all_pods(&mut rt).await;

    // A probe: kubelet keeps 10 KiB of a probe's output for its message.
    write_manifest(
        &d,
        "flood.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: flood}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: peapod.test/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3000"]
    readinessProbe:
      exec: {command: ["sh", "-c", "head -c 16777216 /dev/zero | tr '\\0' x; exit 1"]}
      periodSeconds: 1
      timeoutSeconds: 120
      failureThreshold: 1
"#,
    );
    let t0 = Instant::now();
    let message = loop {
        let events = pod_events(&d, "flood").await;
        if let Some((_, m)) = events.iter().find(|(r, _)| r == "Unhealthy") {
            break m.clone();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "no Unhealthy event: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(message.contains("xxxx"), "{message:.200}");
    assert!(
        message.len() < 16 << 10,
        "probe message of {} bytes",
        message.len()
    );
    let hwm_probe = proc_kb(pid, "VmHWM");
    assert!(
        hwm_probe < hwm_before + 96 * 1024,
        "daemon peak RSS went from {hwm_before} kB to {hwm_probe} kB"
    );
    d.cleanup().await;
}

/// A static helper that tries to connect to each unix socket named on its command line (a
/// leading `@` for an abstract name) and prints `NAME connected` or `NAME errno N`.
fn unixconnect() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let dir = workspace().join("target/fixtures");
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("unixconnect.c");
        let bin = dir.join("unixconnect");
        std::fs::write(
            &src,
            "#include <errno.h>\n#include <stdio.h>\n#include <string.h>\n#include <sys/socket.h>\n\
             #include <sys/un.h>\n#include <unistd.h>\n\
             int main(int c, char **v) { for (int i = 1; i < c; i++) {\n\
             struct sockaddr_un a; memset(&a, 0, sizeof a); a.sun_family = AF_UNIX;\n\
             size_t n = strlen(v[i]); if (n >= sizeof a.sun_path) n = sizeof a.sun_path - 1;\n\
             memcpy(a.sun_path, v[i], n); if (v[i][0] == '@') a.sun_path[0] = 0;\n\
             int s = socket(AF_UNIX, SOCK_STREAM, 0);\n\
             int r = connect(s, (struct sockaddr *)&a, sizeof(sa_family_t) + n);\n\
             if (r == 0) printf(\"%s connected\\n\", v[i]); else printf(\"%s errno %d\\n\", v[i], errno);\n\
             close(s); } return 0; }\n",
        )
        .unwrap();
        let st = std::process::Command::new("gcc")
            .args(["-static", "-O2", "-o"])
            .arg(&bin)
            .arg(&src)
            .status()
            .expect("gcc");
        assert!(st.success(), "compiling unixconnect");
        bin
    })
}

/// Unix sockets in the host's network namespace (/proc/net/unix): (inode, path), abstract
/// names with a leading `@`.
fn host_unix_sockets() -> Vec<(u64, String)> {
    std::fs::read_to_string("/proc/net/unix")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.get(6)?.parse().ok()?, f.get(7)?.to_string()))
        })
        .collect()
}

/// The socket inodes a process holds open.
fn socket_inodes(pid: i32) -> Vec<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let t = std::fs::read_link(e.path()).ok()?;
            let t = t.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// containerd CVE-2020-15257: the shim's abstract unix socket was reachable from any
/// hostNetwork container (abstract names belong to the network namespace). peapod's daemon,
/// API and monitor sockets are filesystem sockets, 0600, outside every container's mount
/// namespace: from a hostNetwork container, connecting to their paths fails, and neither the
/// daemon nor a monitor listens on an abstract name.
#[tokio::test(flavor = "multi_thread")]
async fn daemon_and_monitor_sockets_are_unreachable_from_host_network_pods() {
    if !require_root() {
        return;
    }
    let tool = unixconnect();
    let d = Daemon::start().await;
    let logs = d.root.join("logs");
    let mut rt = d.rt().await;
    let mut sandbox = pod_config("hostnet", &logs);
    sandbox.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption {
                network: NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let pod = run_sandbox(&mut rt, &sandbox).await;
    let mut c = container_config("probe", BUSYBOX, &["sleep", "300"]);
    c.mounts = vec![Mount {
        container_path: "/unixconnect".into(),
        host_path: tool.to_string_lossy().into_owned(),
        readonly: true,
        ..Default::default()
    }];
    let id = create_start(&mut rt, &pod, &sandbox, c).await.unwrap();
    let (pid, monitor) = container_pid(&mut rt, &id).await;
    // The container really is in the host's network namespace.
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap(),
        std::fs::read_link("/proc/self/ns/net").unwrap()
    );

    // Every socket peapod listens on: the daemon's and the monitors'.
    let attach = d.state.join("containers").join(&id).join("attach.sock");
    let api = d.state.join("api.sock");
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    for s in [&d.socket, &attach, &api] {
        let m = std::fs::symlink_metadata(s).unwrap_or_else(|e| panic!("{}: {e}", s.display()));
        assert!(m.file_type().is_socket(), "{}", s.display());
        assert_eq!(
            m.permissions().mode() & 0o077,
            0,
            "{} is not 0600",
            s.display()
        );
    }
    let sockets = host_unix_sockets();
    let mut ours: Vec<i32> = vec![d.pid().unwrap() as i32, monitor];
    ours.extend(d.shim_processes().into_iter().map(|(p, _)| p));
    let mut abstract_names = Vec::new();
    for p in &ours {
        for ino in socket_inodes(*p) {
            if let Some((_, name)) = sockets
                .iter()
                .find(|(i, n)| *i == ino && n.starts_with('@'))
            {
                abstract_names.push(format!("pid {p}: {name}"));
            }
        }
    }
    assert!(
        abstract_names.is_empty(),
        "abstract sockets: {abstract_names:?}"
    );
    let peapod_abstract: Vec<_> = sockets
        .iter()
        .filter(|(_, n)| {
            n.starts_with('@')
                && (n.contains("peapod") || n.contains(&d.state.to_string_lossy().to_string()))
        })
        .collect();
    assert!(peapod_abstract.is_empty(), "{peapod_abstract:?}");

    // From inside: the paths (and any abstract name the host has) cannot be connected to.
    let mut targets: Vec<String> = [&d.socket, &attach, &api]
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    targets.push(format!("@{}", d.socket.display()));
    targets.push(format!("@{}", attach.display()));
    let mut cmd = vec!["/unixconnect".to_string()];
    cmd.extend(targets.iter().cloned());
    let r = rt
        .exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd,
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    let out = String::from_utf8_lossy(&r.stdout).into_owned();
    assert_eq!(out.lines().count(), targets.len(), "{out}");
    assert!(!out.contains("connected"), "reached a peapod socket: {out}");
    // The same helper, run on the host, does reach the daemon: the check can tell.
    let host = std::process::Command::new(tool)
        .arg(&d.socket)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&host.stdout).contains("connected"));
    remove_all_pods(&mut rt).await;
    assert_no_leftovers(&d);
    d.cleanup().await;
}

/// The host's mount points under /proc and /sys, to see that nothing was mounted over them.
fn host_proc_sys_mounts() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m.starts_with("/proc") || m.starts_with("/sys"))
        .collect();
    v.sort();
    v
}

/// runc CVE-2019-19921 and CVE-2023-27561: an image whose /proc (or /sys) is a symlink
/// redirected the procfs mount, and with it the masks over /proc, to where the symlink
/// pointed. The container either is refused cleanly or runs with the masks in place; the
/// symlinks' host targets get no mount and no change.
#[tokio::test(flavor = "multi_thread")]
async fn proc_and_sys_symlinks_in_the_rootfs() {
    if !require_root() {
        return;
    }
    let target = HostTarget::new("procsym");
    let host = target.dir.to_string_lossy().into_owned();
    let before = target.snapshot();
    let mounts_before = host_proc_sys_mounts();
    let reg = Registry::start();
    let images = [
        push_image(
            &reg,
            "proc-abs",
            vec![Layer::tar(
                RawTar::new().symlink("proc", &host, 0o777).finish(),
            )],
            json!({}),
        ),
        push_image(
            &reg,
            "proc-rel",
            vec![Layer::tar(
                RawTar::new()
                    .dir("evil", 0o755)
                    .symlink("proc", "evil", 0o777)
                    .finish(),
            )],
            json!({}),
        ),
        push_image(
            &reg,
            "sys-abs",
            vec![Layer::tar(
                RawTar::new().symlink("sys", &host, 0o777).finish(),
            )],
            json!({}),
        ),
        // The parents of masked paths inside /sys replaced with symlinks in the image, under
        // what becomes the sysfs mount.
        push_image(
            &reg,
            "masked-parents",
            vec![Layer::tar(
                RawTar::new()
                    .dir("sys", 0o755)
                    .symlink("sys/firmware", &host, 0o777)
                    .dir("sys/devices", 0o755)
                    .dir("sys/devices/virtual", 0o755)
                    .symlink("sys/devices/virtual/powercap", &host, 0o777)
                    .finish(),
            )],
            json!({}),
        ),
    ];
    let mut d = Daemon::start().await;
    let logs = d.root.join("logs");
    let mut rt = d.rt().await;
    let sandbox = pod_config("procsym", &logs);
    let pod = run_sandbox(&mut rt, &sandbox).await;
    // The host has /proc/timer_list and /sys/firmware entries; masked, they read as empty.
    let script = "wc -c < /proc/timer_list; wc -c < /proc/keys; ls /sys/firmware | wc -l; \
                  (echo x > /proc/sysrq-trigger) 2>/dev/null && echo sysrq-writable || echo sysrq-ro; \
                  sleep 300";
    for (i, image) in images.iter().enumerate() {
        pull(&d, image).await.expect("pull");
        let name = format!("c{i}");
        let c = container_config(&name, image, &["sh", "-c", script]);
        match create_start(&mut rt, &pod, &sandbox, c).await {
            Err(e) => {
                // Refused: a clear error, and the daemon goes on.
                assert!(
                    matches!(
                        e.code(),
                        Code::Internal
                            | Code::InvalidArgument
                            | Code::FailedPrecondition
                            | Code::Unknown
                    ),
                    "{image}: {e:?}"
                );
                eprintln!("{image}: refused: {}", e.message());
            }
            Ok(_) => {
                let lines = wait_log(
                    &logs.join(format!("{name}/0.log")),
                    Duration::from_secs(10),
                    |l| l.len() >= 4,
                )
                .await;
                assert_eq!(lines, ["0", "0", "0", "sysrq-ro"], "{image}: masks missing");
            }
        }
        assert_eq!(
            target.snapshot(),
            before,
            "{image}: the host directory changed"
        );
        assert!(host_mounts_under(&target.dir).is_empty(), "{image}");
        assert_eq!(host_proc_sys_mounts(), mounts_before, "{image}");
    }
    assert!(d.running());
    remove_all_pods(&mut rt).await;
    assert_no_leftovers(&d);
    d.cleanup().await;
    assert_eq!(target.snapshot(), before);
}

/// The class of CVE-2019-19921 for CRI mounts: bind-mount targets at /proc or /sys, or
/// reaching into them through symlinks in the image (`/p -> /proc`, `/k ->
/// /proc/sys/kernel`, `/s -> /sys`). Each is refused or lands inside the container; the
/// host's /proc and /sys mounts and its core_pattern do not change.
#[tokio::test(flavor = "multi_thread")]
async fn cri_mounts_into_proc_and_sys_through_symlinks() {
    if !require_root() {
        return;
    }
    let mounts_before = host_proc_sys_mounts();
    let core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let reg = Registry::start();
    let links = RawTar::new()
        .symlink("p", "/proc", 0o777)
        .symlink("k", "/proc/sys/kernel", 0o777)
        .symlink("s", "/sys", 0o777)
        .symlink("kr", "../../proc/sys/kernel", 0o777)
        .finish();
    let image = push_image(&reg, "proclinks", vec![Layer::tar(links)], json!({}));
    let d = Daemon::start().await;
    pull(&d, &image).await.expect("pull");
    let src_guard = tempdir_with_marker("procmount");
    let src = src_guard.dir.clone();
    std::fs::write(src.join("core_pattern"), b"|/tmp/peapod-cve-evil\n").unwrap();
    let logs = d.root.join("logs");
    let mut rt = d.rt().await;
    let sandbox = pod_config("procmount", &logs);
    let pod = run_sandbox(&mut rt, &sandbox).await;
    let cases = [
        ("/proc", src.clone()),
        ("/p", src.clone()),
        ("/sys", src.clone()),
        ("/s", src.clone()),
        ("/k/core_pattern", src.join("core_pattern")),
        ("/kr/core_pattern", src.join("core_pattern")),
        ("/p/sys/kernel/core_pattern", src.join("core_pattern")),
        ("/s/kernel/mm", src.clone()),
    ];
    let mut accepted = Vec::new();
    for (i, (path, host)) in cases.iter().enumerate() {
        let mut c = container_config(&format!("m{i}"), &image, &["sleep", "300"]);
        c.mounts = vec![Mount {
            container_path: path.to_string(),
            host_path: host.to_string_lossy().into_owned(),
            ..Default::default()
        }];
        match create_start(&mut rt, &pod, &sandbox, c).await {
            Err(e) => eprintln!("{path}: refused: {}", e.message()),
            Ok(id) => {
                // Accepted: the mount is inside the container, at the path the symlinks
                // resolve to in the rootfs, and /proc is still a procfs with the host's
                // core_pattern (kernel.core_pattern is not namespaced).
                let resolved = match path.strip_prefix("/s") {
                    Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("/sys{rest}"),
                    _ => path.to_string(),
                };
                let (code, out) = exec(
                    &mut rt,
                    &id,
                    &format!(
                        "cat /proc/sys/kernel/core_pattern; stat -f -c %T /proc; cat {resolved}/marker"
                    ),
                )
                .await;
                assert_eq!(code, 0, "{path}: {out}");
                let lines: Vec<&str> = out.lines().collect();
                assert_eq!(
                    lines,
                    [core_pattern.trim_end(), "proc", "marker"],
                    "{path}: {out}"
                );
                accepted.push(path.to_string());
            }
        }
        assert_eq!(host_proc_sys_mounts(), mounts_before, "{path}");
        assert_eq!(
            std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
            core_pattern,
            "{path}"
        );
    }
    // peapod (and runc, where it runs) refuses every mount at or into /proc, however it is
    // reached; a directory of the user's own at /sys (which replaces sysfs, as in
    // containerd) is theirs to have.
    assert!(
        accepted.iter().all(|p| p.starts_with("/s")),
        "mounts into /proc accepted: {accepted:?}"
    );
    remove_all_pods(&mut rt).await;
    assert_no_leftovers(&d);
    d.cleanup().await;
}

/// Pulls `repo:tag` from the hostile registry, bounded by `limit`: the pull must fail by
/// itself, with an error whose message contains `needle`.
async fn pull_fails(d: &Daemon, reg: &HostileRegistry, repo: &str, needle: &str, limit: Duration) {
    let t0 = Instant::now();
    let r = tokio::time::timeout(limit, pull(d, &format!("{}/{repo}:1", reg.addr))).await;
    let e = match r {
        Err(_) => panic!("{repo}: the pull did not end within {limit:?}"),
        Ok(Ok(id)) => panic!("{repo}: pulled as {id}"),
        Ok(Err(e)) => e,
    };
    assert!(
        e.message().contains(needle),
        "{repo}: error {e:?} does not mention {needle:?}"
    );
    eprintln!("{repo}: failed in {:?}: {}", t0.elapsed(), e.message());
}

/// A manifest over `config` and `layers`, as the registry serves it.
fn serve(reg: &HostileRegistry, repo: &str, config: Vec<u8>, layers: &[Layer]) {
    let manifest = manifest_json(&config, layers);
    let mut blobs = vec![(sha256(&config), Reply::json(config, MT_CONFIG))];
    blobs.extend(
        layers
            .iter()
            .map(|l| (sha256(&l.blob), Reply::json(l.blob.clone(), &l.media_type))),
    );
    reg.image(repo, "1", Reply::json(manifest, MT_MANIFEST), blobs);
}

/// Hostile image content: a manifest of 20 000 layers, descriptor sizes that are absurd or
/// wrong, config and manifest fields that are not UTF-8, and an enormous config. Each pull
/// fails with an error saying what was wrong, the daemon keeps running, and nothing is left:
/// no image, no blob in ingest, no leftover of any pod.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_image_content_fails_cleanly() {
    if !require_root() {
        return;
    }
    let reg = HostileRegistry::start().await;
    let tiny = Layer::tar(RawTar::new().file("a", b"a\n", 0o644).finish());

    // Many layers: all the same tiny blob, each its own diff ID in the config.
    let many: Vec<Layer> = std::iter::repeat_n(tiny.clone(), 20_000).collect();
    serve(&reg, "many-layers", config_json(json!({}), &many), &many);

    // A layer descriptor whose size is far beyond the blob.
    let mut manifest: serde_json::Value = serde_json::from_slice(&manifest_json(
        &config_json(json!({}), std::slice::from_ref(&tiny)),
        std::slice::from_ref(&tiny),
    ))
    .unwrap();
    let config = config_json(json!({}), std::slice::from_ref(&tiny));
    manifest["layers"][0]["size"] = json!(1u64 << 60);
    reg.image(
        "absurd-layer-size",
        "1",
        Reply::json(serde_json::to_vec(&manifest).unwrap(), MT_MANIFEST),
        vec![
            (sha256(&config), Reply::json(config.clone(), MT_CONFIG)),
            (
                sha256(&tiny.blob),
                Reply::json(tiny.blob.clone(), MT_LAYER_TAR),
            ),
        ],
    );
    // A negative size and one beyond u64.
    for (repo, size) in [
        ("negative-size", "-1"),
        ("huge-size", "99999999999999999999999"),
    ] {
        let text = String::from_utf8(manifest_json(&config, std::slice::from_ref(&tiny)))
            .unwrap()
            .replace(
                &format!("\"size\":{}", tiny.blob.len()),
                &format!("\"size\":{size}"),
            );
        reg.image(
            repo,
            "1",
            Reply::json(text.into_bytes(), MT_MANIFEST),
            vec![(sha256(&config), Reply::json(config.clone(), MT_CONFIG))],
        );
    }
    // A config descriptor claiming a petabyte.
    let mut m: serde_json::Value =
        serde_json::from_slice(&manifest_json(&config, std::slice::from_ref(&tiny))).unwrap();
    m["config"]["size"] = json!(1u64 << 50);
    reg.image(
        "absurd-config-size",
        "1",
        Reply::json(serde_json::to_vec(&m).unwrap(), MT_MANIFEST),
        vec![(sha256(&config), Reply::json(config.clone(), MT_CONFIG))],
    );

    // Not UTF-8: a config whose Env holds a 0xff byte, and a manifest with one in an
    // annotation.
    let mut bad = config.clone();
    let at = bad.windows(5).position(|w| w == b"PATH=").unwrap();
    bad[at] = 0xff;
    serve(&reg, "non-utf8-config", bad, std::slice::from_ref(&tiny));
    let mut bad_manifest = manifest_json(&config, std::slice::from_ref(&tiny));
    let at = bad_manifest
        .windows(6)
        .position(|w| w == b"\"size\"")
        .unwrap();
    bad_manifest.splice(
        at..at,
        b"\"annotations\":{\"x\":\"\xff\xfe\"},".iter().copied(),
    );
    reg.image(
        "non-utf8-manifest",
        "1",
        Reply::json(bad_manifest, MT_MANIFEST),
        vec![],
    );

    // An enormous config (20 MiB of Env), announced truthfully.
    let big_env: Vec<String> = (0..21_000)
        .map(|i| format!("V{i}={}", "x".repeat(1024)))
        .collect();
    let big = config_json(json!({"Env": big_env}), std::slice::from_ref(&tiny));
    assert!(big.len() > 20 << 20, "{}", big.len());
    serve(&reg, "enormous-config", big, std::slice::from_ref(&tiny));

    let mut d = Daemon::start().await;
    let limit = Duration::from_secs(30);
    pull_fails(&d, &reg, "many-layers", "layers", limit).await;
    pull_fails(&d, &reg, "absurd-layer-size", "its descriptor gives", limit).await;
    pull_fails(&d, &reg, "negative-size", "manifest", limit).await;
    pull_fails(&d, &reg, "huge-size", "manifest", limit).await;
    pull_fails(&d, &reg, "absurd-config-size", "at most", limit).await;
    pull_fails(&d, &reg, "non-utf8-config", "image config", limit).await;
    pull_fails(&d, &reg, "non-utf8-manifest", "manifest", limit).await;
    pull_fails(&d, &reg, "enormous-config", "at most", limit).await;
    // The enormous config was refused by its descriptor, before a byte of it came.
    assert!(reg.sent() < 8 << 20, "{} bytes served", reg.sent());

    assert!(d.running(), "the daemon died");
    let images = d
        .img()
        .await
        .list_images(ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert!(
        !images
            .iter()
            .any(|i| i.repo_tags.iter().any(|t| t.contains(&reg.addr))),
        "{images:?}"
    );
    let ingest: Vec<_> = std::fs::read_dir(d.root.join("images/ingest"))
        .map(|it| it.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(ingest.is_empty(), "{ingest:?}");
    assert_no_leftovers(&d);
    d.cleanup().await;
}

/// A registry that sends more than it announced (Content-Length, descriptor size) or never
/// ends: manifests and blobs streamed without end, a Content-Length of terabytes, a config
/// and a layer longer than their descriptors. Each pull fails by itself within a bound, the
/// registry gets to send only a bounded amount, and the daemon's peak memory stays bounded.
#[tokio::test(flavor = "multi_thread")]
async fn registry_that_never_ends_or_lies_about_sizes() {
    if !require_root() {
        return;
    }
    let reg = HostileRegistry::start().await;
    let tiny = Layer::tar(RawTar::new().file("a", b"a\n", 0o644).finish());
    let config = config_json(json!({}), std::slice::from_ref(&tiny));
    let prefix =
        format!("{{\"schemaVersion\":2,\"mediaType\":\"{MT_MANIFEST}\",\"x\":\"").into_bytes();

    // The tag's manifest, endless, chunked and with a Content-Length of 4 TiB.
    reg.image(
        "endless-manifest",
        "1",
        Reply::Endless {
            ctype: MT_MANIFEST.into(),
            prefix: prefix.clone(),
        },
        vec![],
    );
    reg.image(
        "huge-length-manifest",
        "1",
        Reply::EndlessSized {
            ctype: MT_MANIFEST.into(),
            content_length: 4 << 40,
        },
        vec![],
    );
    // A manifest longer than its Content-Length: what is past the announced length is never
    // read, and the cut-off document is refused.
    reg.image(
        "longer-than-length",
        "1",
        Reply::Lying {
            ctype: MT_MANIFEST.into(),
            body: [
                manifest_json(&config, std::slice::from_ref(&tiny)),
                vec![b' '; 1 << 20],
            ]
            .concat(),
            content_length: 40,
        },
        vec![],
    );
    // An index whose child manifest (by digest, with a small descriptor size) never ends.
    let child_digest = sha256(b"the child this digest names is never served");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [{"mediaType": MT_MANIFEST, "digest": child_digest, "size": 500,
                       "platform": {"architecture": oci_arch(), "os": "linux"}}],
    }))
    .unwrap();
    reg.image("endless-child", "1", Reply::json(index, MT_INDEX), vec![]);
    reg.route(
        &format!("/v2/endless-child/manifests/{child_digest}"),
        Reply::Endless {
            ctype: MT_MANIFEST.into(),
            prefix: prefix.clone(),
        },
    );
    // The config and a layer longer than their descriptors, without end.
    let manifest = manifest_json(&config, std::slice::from_ref(&tiny));
    reg.image(
        "endless-config",
        "1",
        Reply::json(manifest.clone(), MT_MANIFEST),
        vec![(
            sha256(&config),
            Reply::Endless {
                ctype: MT_CONFIG.into(),
                prefix: config.clone(),
            },
        )],
    );
    reg.image(
        "endless-layer",
        "1",
        Reply::json(manifest, MT_MANIFEST),
        vec![
            (sha256(&config), Reply::json(config.clone(), MT_CONFIG)),
            (
                sha256(&tiny.blob),
                Reply::EndlessSized {
                    ctype: MT_LAYER_TAR.into(),
                    content_length: 1 << 40,
                },
            ),
        ],
    );

    let mut d = Daemon::start().await;
    let pid = d.pid().unwrap();
    let hwm_before = proc_kb(pid, "VmHWM");
    let limit = Duration::from_secs(20);
    for (repo, needle) in [
        ("endless-manifest", "manifest"),
        ("huge-length-manifest", "manifest"),
        ("longer-than-length", "manifest"),
        ("endless-child", "manifest"),
        ("endless-config", "longer"),
        ("endless-layer", "longer"),
    ] {
        let sent = reg.sent();
        pull_fails(&d, &reg, repo, needle, limit).await;
        let served = reg.sent() - sent;
        assert!(
            served < 64 << 20,
            "{repo}: the registry got to send {served} bytes"
        );
        let hwm = proc_kb(pid, "VmHWM");
        assert!(
            hwm < hwm_before + 64 * 1024,
            "{repo}: daemon peak RSS went from {hwm_before} kB to {hwm} kB"
        );
    }
    assert!(d.running(), "the daemon died");
    let ingest: Vec<_> = std::fs::read_dir(d.root.join("images/ingest"))
        .map(|it| it.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(ingest.is_empty(), "{ingest:?}");
    assert_no_leftovers(&d);
    d.cleanup().await;
}
