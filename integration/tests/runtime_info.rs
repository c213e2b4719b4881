//! Version, Status, RuntimeConfig and the error codes kubelet relies on, over the real socket.

use peapod::api::*;
use peapod_integration::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn version_status_and_config() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let v = rt
        .version(VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "peapod");
    assert_eq!(v.runtime_api_version, "v1");

    let s = rt
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let conds = s.status.unwrap().conditions;
    for t in ["RuntimeReady", "NetworkReady"] {
        let c = conds
            .iter()
            .find(|c| c.r#type == t)
            .unwrap_or_else(|| panic!("{t} missing"));
        assert!(c.status, "{t} not ready: {c:?}");
    }
    assert!(
        s.runtime_handlers.iter().any(|h| h.name == "runc"),
        "{:?}",
        s.runtime_handlers
    );
    let found: serde_json::Value = serde_json::from_str(&s.info["runtime"]).unwrap();
    assert_eq!(found["cgroupDriver"], "cgroupfs");
    // The effective config: the file's keys, every default filled in, and the same config
    // once read back.
    let cfg: serde_json::Value = serde_json::from_str(&s.info["config"]).unwrap();
    assert_eq!(cfg["socket"], d.socket.to_str().unwrap(), "{cfg}");
    assert_eq!(cfg["cgroup_parent"], d.cgroup_parent.as_str(), "{cfg}");
    assert_eq!(cfg["network"]["nft_table"], d.net.table.as_str(), "{cfg}");
    assert_eq!(cfg["stop_timeout_secs"], 10, "a default filled in: {cfg}");
    let back: peapod::config::Config = serde_json::from_value(cfg.clone()).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), cfg);

    let rc = rt
        .runtime_config(RuntimeConfigRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rc.linux.unwrap().cgroup_driver,
        CgroupDriver::Cgroupfs as i32
    );

    // The socket is root-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "socket mode {mode:o}");

    // Bad requests name what is wrong.
    let e = rt
        .attach(AttachRequest {
            container_id: "no-such".into(),
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = rt.attach(AttachRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_carry_the_right_codes_and_leak_nothing() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");

    // Unknown IDs.
    let e = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: "0123456789abcdef".into(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = rt
        .start_container(StartContainerRequest {
            container_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Removing what is already gone succeeds (kubelet retries removals).
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: "nope".into(),
    })
    .await
    .unwrap();
    rt.remove_container(RemoveContainerRequest {
        container_id: "nope".into(),
    })
    .await
    .unwrap();

    // Missing metadata names the field.
    let e = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(PodSandboxConfig::default()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("config.metadata"), "{}", e.message());
    let e = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config("badhandler", &logs)),
            runtime_handler: "no-such-runtime".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("runtime_handler"), "{}", e.message());

    // A duplicate pod name/namespace/uid/attempt: the same config is kubelet retrying a
    // request it got no answer to, and gets the same pod (as CRI-O does); another config under
    // that name is refused, naming the pod that holds it.
    let cfg = pod_config("dup", &logs);
    let (pod, _) = run_pod(&mut rt, cfg.clone(), vec![]).await;
    let again = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("a retried RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    assert_eq!(again, pod, "a retry must not make a second pod");
    let mut other = cfg.clone();
    other.hostname = "another-host".into();
    let e = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(other),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(e.message().contains(&pod), "{}", e.message());

    // Bad container configs fail cleanly: nothing is left of them.
    let dirs_before = std::fs::read_dir(d.root.join("containers"))
        .unwrap()
        .count();
    let mounts_before = mounts_under(d.root.parent().unwrap());
    let cases: Vec<(ContainerConfig, Code, &str)> = vec![
        (
            container_config("noimg", "peapod.test/absent:latest", &["true"]),
            Code::NotFound,
            "absent",
        ),
        (
            {
                let mut c = container_config("badmount", BUSYBOX, &["true"]);
                c.mounts = vec![Mount {
                    container_path: "../../escape".into(),
                    host_path: "/tmp".into(),
                    ..Default::default()
                }];
                c
            },
            Code::InvalidArgument,
            "mounts[0]",
        ),
        (
            {
                let mut c = container_config("badcap", BUSYBOX, &["true"]);
                c.linux = Some(LinuxContainerConfig {
                    security_context: Some(LinuxContainerSecurityContext {
                        capabilities: Some(Capability {
                            add_capabilities: vec!["CAP_NOT_A_CAP".into()],
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                c
            },
            Code::InvalidArgument,
            "add_capabilities",
        ),
        (
            {
                let mut c = container_config("badlog", BUSYBOX, &["true"]);
                c.log_path = "../../../etc/evil".into();
                c
            },
            Code::InvalidArgument,
            "log_path",
        ),
        (
            container_config("nocmd", "peapod.test/busybox-user:latest", &[]),
            Code::Ok,
            "",
        ),
    ];
    for (c, code, field) in cases {
        let name = c.metadata.as_ref().unwrap().name.clone();
        let r = rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(c),
                sandbox_config: Some(cfg.clone()),
            })
            .await;
        match r {
            Ok(resp) => {
                assert_eq!(code, Code::Ok, "{name}: accepted");
                rt.remove_container(RemoveContainerRequest {
                    container_id: resp.into_inner().container_id,
                })
                .await
                .unwrap();
            }
            Err(e) => {
                assert_eq!(e.code(), code, "{name}: {e:?}");
                assert!(e.message().contains(field), "{name}: {}", e.message());
            }
        }
    }
    assert_eq!(
        std::fs::read_dir(d.root.join("containers"))
            .unwrap()
            .count(),
        dirs_before,
        "a failed CreateContainer left its directory"
    );
    assert_eq!(
        mounts_under(d.root.parent().unwrap()),
        mounts_before,
        "a failed create left a mount"
    );
    let list = rt
        .list_containers(ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.containers.is_empty(), "{:?}", list.containers);
    d.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn list_filters() {
    if !require_root() {
        return;
    }
    let d = Daemon::start().await;
    let mut rt = d.rt().await;
    let logs = d.root.join("logs");
    let mut a = pod_config("pod-a", &logs);
    a.labels.insert("app".into(), "a".into());
    let mut b = pod_config("pod-b", &logs);
    b.labels.insert("app".into(), "b".into());
    let (pa, ca) = run_pod(
        &mut rt,
        a,
        vec![container_config("c", BUSYBOX, &["sleep", "300"])],
    )
    .await;
    let (pb, _) = run_pod(&mut rt, b, vec![]).await;
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pb.clone(),
    })
    .await
    .unwrap();

    let list = |f: PodSandboxFilter| {
        let mut rt = rt.clone();
        async move {
            rt.list_pod_sandbox(ListPodSandboxRequest { filter: Some(f) })
                .await
                .unwrap()
                .into_inner()
                .items
                .into_iter()
                .map(|p| p.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(PodSandboxFilter {
            label_selector: [("app".to_string(), "a".to_string())].into(),
            ..Default::default()
        })
        .await,
        vec![pa.clone()]
    );
    assert_eq!(
        list(PodSandboxFilter {
            state: Some(PodSandboxStateValue {
                state: PodSandboxState::SandboxNotready as i32
            }),
            ..Default::default()
        })
        .await,
        vec![pb.clone()]
    );
    assert_eq!(
        list(PodSandboxFilter {
            id: pa[..12].to_string(),
            ..Default::default()
        })
        .await,
        vec![pa.clone()]
    );
    let cs = rt
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                pod_sandbox_id: pa.clone(),
                state: Some(ContainerStateValue {
                    state: ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(cs.iter().map(|c| c.id.clone()).collect::<Vec<_>>(), ca);
    assert_eq!(cs[0].labels, std::collections::HashMap::new());
    let none = rt
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                pod_sandbox_id: pb.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(none.is_empty());
    d.cleanup().await;
}
