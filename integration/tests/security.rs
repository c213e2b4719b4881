//! Security defaults, checked from inside real containers: the default capability set,
//! no_new_privs, masked and read-only paths, users from the image, only fds 0-2 inherited
//! (runc CVE-2024-21626), and a read-only rootfs.

use std::time::Duration;

use peapod::api::*;
use peapod_integration::*;

/// containerd's default capability set as a CapEff mask: CHOWN DAC_OVERRIDE FOWNER FSETID
/// KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
const DEFAULT_CAPS: &str = "00000000a80425fb";

fn with_sc(mut c: ContainerConfig, sc: LinuxContainerSecurityContext) -> ContainerConfig {
    c.linux = Some(LinuxContainerConfig {
        security_context: Some(sc),
        ..Default::default()
    });
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_get_safe_defaults() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let script = "grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; \
                  wc -c < /proc/timer_list; \
                  (echo 1 > /proc/sys/kernel/domainname) 2>/dev/null && echo sys-writable || echo sys-ro; \
                  id -u; exec ls /proc/self/fd";
    let plain = container_config("plain", BUSYBOX, &["sh", "-c", script]);
    let hardened = with_sc(
        container_config(
            "hardened",
            "peapod.test/busybox-user:latest",
            &["sh", "-c", script],
        ),
        LinuxContainerSecurityContext {
            no_new_privs: true,
            readonly_rootfs: true,
            capabilities: Some(Capability {
                drop_capabilities: vec!["ALL".into()],
                add_capabilities: vec!["NET_ADMIN".into()],
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    let rofs = with_sc(
        container_config("rofs", BUSYBOX, &["sh", "-c", "touch /x 2>/dev/null && echo rw || echo ro; touch /tmp/y 2>/dev/null && echo tmp-rw || echo tmp-ro"]),
        LinuxContainerSecurityContext {
            readonly_rootfs: true,
            ..Default::default()
        },
    );
    let (_pod, ids) = run_pod(
        &mut rt,
        pod_config("secure", &logs),
        vec![plain, hardened, rofs],
    )
    .await;
    for id in &ids {
        wait_exited(&mut rt, id, Duration::from_secs(10)).await;
    }

    let plain = log_lines(&logs.join("plain/0.log"));
    assert_eq!(plain[0], format!("CapEff:\t{DEFAULT_CAPS}"), "{plain:?}");
    assert_eq!(plain[1], "NoNewPrivs:\t0");
    assert_eq!(
        plain[2].trim(),
        "0",
        "/proc/timer_list is not masked: {plain:?}"
    );
    assert_eq!(plain[3], "sys-ro", "/proc/sys is writable");
    assert_eq!(plain[4], "0", "root by default");
    // Only stdio reaches the container (3 is ls's own directory fd).
    assert_eq!(&plain[5..], ["0", "1", "2", "3"], "leaked fds: {plain:?}");

    let hard = log_lines(&logs.join("hardened/0.log"));
    // CAP_NET_ADMIN only (bit 12).
    assert_eq!(
        hard[0], "CapEff:\t0000000000000000",
        "a non-root user has no effective caps: {hard:?}"
    );
    assert_eq!(hard[1], "NoNewPrivs:\t1");
    assert_eq!(
        hard[4], "1000",
        "the image's USER app is uid 1000: {hard:?}"
    );
    let status =
        std::fs::read_to_string(d.state.join("containers").join(&ids[1]).join("config.json"))
            .unwrap();
    let spec: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        spec["process"]["capabilities"]["bounding"],
        serde_json::json!(["CAP_NET_ADMIN"])
    );

    assert_eq!(log_lines(&logs.join("rofs/0.log")), ["ro", "tmp-ro"]);
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oom_kill_is_reported() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let mut c = container_config(
        "hog",
        BUSYBOX,
        &[
            "sh",
            "-c",
            "x=$(head -c 268435456 /dev/zero | tr '\\0' a); echo survived",
        ],
    );
    c.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 32 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let (_pod, ids) = run_pod(&mut rt, pod_config("oom", &logs), vec![c]).await;
    let s = wait_exited(&mut rt, &ids[0], Duration::from_secs(30)).await;
    assert_eq!(s.reason, "OOMKilled", "{s:?}");
    assert_eq!(s.exit_code, 137);
    d.cleanup().await;
}
