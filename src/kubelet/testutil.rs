//! Builders shared by the kubelet module's tests: pods, engine snapshots and a fake clock.

use k8s_openapi::api::core::v1::{Container, ExecAction, Pod, PodSpec, Probe};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use super::clock::{Clock, FakeClock, Now};
use super::runtime::{
    container_hash, ContainerState, ContainerStatus, PodRuntimeStatus, SandboxState, SandboxStatus,
};

/// The wall time, in Unix seconds, at which test clocks start.
pub const T0: i64 = 1_700_000_000;
/// The UID of the test pods.
pub const UID: &str = "uid-1";

pub fn ts(offset: i64) -> Timestamp {
    Timestamp::from_second(T0 + offset).unwrap()
}

/// A fake clock at `T0 + offset` wall seconds (monotonic 0 at T0, advanced by offset).
pub fn now_at(offset: u64) -> Now {
    let clock = FakeClock::new(ts(0));
    clock.advance(std::time::Duration::from_secs(offset));
    clock.now()
}

pub fn container(name: &str) -> Container {
    Container {
        name: name.into(),
        image: Some("busybox".into()),
        ..Default::default()
    }
}

pub fn sidecar(name: &str) -> Container {
    Container {
        restart_policy: Some("Always".into()),
        ..container(name)
    }
}

pub fn exec_probe() -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec!["true".into()]),
        }),
        ..Default::default()
    }
}

pub fn with_startup(mut c: Container) -> Container {
    c.startup_probe = Some(exec_probe());
    c
}

pub fn with_liveness(mut c: Container) -> Container {
    c.liveness_probe = Some(exec_probe());
    c
}

pub fn with_readiness(mut c: Container) -> Container {
    c.readiness_probe = Some(exec_probe());
    c
}

pub fn pod(policy: &str, inits: Vec<Container>, apps: Vec<Container>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some(UID.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some(policy.into()),
            init_containers: (!inits.is_empty()).then_some(inits),
            containers: apps,
            ..Default::default()
        }),
        status: None,
    }
}

pub fn sandbox(attempt: u32, state: SandboxState) -> SandboxStatus {
    SandboxStatus {
        id: format!("sb{attempt}"),
        pod_uid: UID.into(),
        attempt,
        state,
        ip: Some("10.88.0.5".into()),
        additional_ips: vec![],
        host_network: false,
        created_at: ts(i64::from(attempt)),
    }
}

/// An instance of `name` (spec hash of [`container`]`(name)`), created at `T0 + created`.
pub fn instance(name: &str, attempt: u32, state: ContainerState, created: i64) -> ContainerStatus {
    ContainerStatus {
        id: format!("{name}-{attempt}"),
        name: name.into(),
        attempt,
        state,
        exit_code: 0,
        signal: None,
        created_at: ts(created),
        started_at: (state != ContainerState::Created).then(|| ts(created)),
        finished_at: None,
        reason: String::new(),
        message: String::new(),
        image: "busybox".into(),
        image_ref: String::new(),
        hash: container_hash(&container(name)),
    }
}

pub fn running(name: &str, attempt: u32, started: i64) -> ContainerStatus {
    instance(name, attempt, ContainerState::Running, started)
}

/// An instance that started at `started` and exited with `code` at `finished`.
pub fn exited(name: &str, attempt: u32, code: i32, started: i64, finished: i64) -> ContainerStatus {
    ContainerStatus {
        exit_code: code,
        finished_at: Some(ts(finished)),
        reason: if code == 0 { "Completed" } else { "Error" }.into(),
        ..instance(name, attempt, ContainerState::Exited, started)
    }
}

/// A ready sandbox (attempt 0) with these containers.
pub fn ready(containers: Vec<ContainerStatus>) -> PodRuntimeStatus {
    PodRuntimeStatus {
        sandboxes: vec![sandbox(0, SandboxState::Ready)],
        containers,
    }
}
