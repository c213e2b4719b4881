//! What the engine reports about one pod: the snapshot the lifecycle decisions read.
//!
//! Modelled on CRI's `PodSandboxStatus` and `ContainerStatus` (and kubelet's
//! `kubecontainer.PodStatus`), as plain Rust values with no protobuf in them, so the decision
//! core is independent of the wire types. A pod may have several sandboxes (an old one that
//! died and its replacement) and several instances of one container (the running one and the
//! exited one before it): all are listed, and the accessors pick the newest as kubelet does.

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::jiff::Timestamp;

/// CRI `PodSandboxState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxState {
    /// SANDBOX_READY: the pause runs and the network is set up.
    Ready,
    /// SANDBOX_NOTREADY: stopped, dead, or never finished.
    NotReady,
}

/// One sandbox of the pod, as `PodSandboxStatus` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxStatus {
    /// The sandbox ID.
    pub id: String,
    /// The UID of the pod the sandbox was made for (`PodSandboxMetadata.uid`).
    pub pod_uid: String,
    /// `PodSandboxMetadata.attempt`: 0 for the first sandbox of the pod, then +1 per re-creation.
    pub attempt: u32,
    /// Ready or not.
    pub state: SandboxState,
    /// The primary pod IP, if any.
    pub ip: Option<String>,
    /// Further pod IPs (the other address family).
    pub additional_ips: Vec<String>,
    /// Whether the sandbox uses the host's network namespace.
    pub host_network: bool,
    /// When the sandbox was created.
    pub created_at: Timestamp,
}

/// CRI `ContainerState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerState {
    /// CONTAINER_CREATED: created, not started (or the start failed).
    Created,
    /// CONTAINER_RUNNING.
    Running,
    /// CONTAINER_EXITED.
    Exited,
    /// CONTAINER_UNKNOWN: the engine cannot say (a record it could not resolve).
    Unknown,
}

/// One container instance, as `ContainerStatus` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerStatus {
    /// The container ID.
    pub id: String,
    /// The container's name in the pod spec (`ContainerMetadata.name`).
    pub name: String,
    /// `ContainerMetadata.attempt`: how many times this container was restarted before this
    /// instance was made, kubelet's restartCount.
    pub attempt: u32,
    /// Created, running, exited or unknown.
    pub state: ContainerState,
    /// The exit code once exited (128 + N for a signal, as the monitor reports it).
    pub exit_code: i32,
    /// The signal that ended the process, when the engine knows it was one.
    pub signal: Option<i32>,
    /// When the instance was created.
    pub created_at: Timestamp,
    /// When it started, if it did.
    pub started_at: Option<Timestamp>,
    /// When it exited, if it did.
    pub finished_at: Option<Timestamp>,
    /// A brief reason for the state ("OOMKilled", "Completed", "Error"), maybe empty.
    pub reason: String,
    /// A human-readable message, maybe empty.
    pub message: String,
    /// The image as the spec names it.
    pub image: String,
    /// The image's resolved reference (digest), maybe empty.
    pub image_ref: String,
    /// [`container_hash`] of the spec this instance was made from (kubelet's
    /// `io.kubernetes.container.hash` label).
    pub hash: u64,
}

/// Everything the engine reports for one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRuntimeStatus {
    /// The pod's sandboxes, any order.
    pub sandboxes: Vec<SandboxStatus>,
    /// Every container instance of the pod, any order.
    pub containers: Vec<ContainerStatus>,
}

impl PodRuntimeStatus {
    /// The newest sandbox (kubelet sorts sandboxes by creation time, newest first).
    pub fn latest_sandbox(&self) -> Option<&SandboxStatus> {
        self.sandboxes
            .iter()
            .max_by(|a, b| (a.created_at, a.attempt).cmp(&(b.created_at, b.attempt)))
    }

    /// The newest instance of the container `name` (`FindContainerStatusByName`).
    pub fn latest(&self, name: &str) -> Option<&ContainerStatus> {
        self.containers
            .iter()
            .filter(|c| c.name == name)
            .max_by(|a, b| (a.created_at, a.attempt).cmp(&(b.created_at, b.attempt)))
    }

    /// The instances of the container `name`, newest first.
    pub fn instances(&self, name: &str) -> Vec<&ContainerStatus> {
        let mut v: Vec<_> = self.containers.iter().filter(|c| c.name == name).collect();
        v.sort_by_key(|c| std::cmp::Reverse((c.created_at, c.attempt)));
        v
    }

    /// The newest exited instance of `name`, the one kubelet's back-off is measured from.
    pub fn latest_exited(&self, name: &str) -> Option<&ContainerStatus> {
        self.instances(name)
            .into_iter()
            .find(|c| c.state == ContainerState::Exited)
    }

    /// The pod IPs of the newest sandbox while it is ready (kubelet takes the IPs from the
    /// latest sandbox only, and only when it is ready).
    pub fn pod_ips(&self) -> Vec<String> {
        match self.latest_sandbox() {
            Some(s) if s.state == SandboxState::Ready => {
                s.ip.iter()
                    .chain(s.additional_ips.iter())
                    .filter(|ip| !ip.is_empty())
                    .cloned()
                    .collect()
            }
            _ => Vec::new(),
        }
    }
}

/// The hash that tells whether a running container still matches its spec.
///
/// Since Kubernetes 1.31 kubelet's `HashContainer` covers only the name and the image (the
/// only container fields of a pod that may change in place); a static pod whose other fields
/// change gets a new UID and is replaced whole. FNV-1a 64, stable across builds and restarts.
pub fn container_hash(c: &Container) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let image = c.image.as_deref().unwrap_or("");
    for byte in c
        .name
        .as_bytes()
        .iter()
        .chain([0u8].iter())
        .chain(image.as_bytes())
    {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn instance(id: &str, attempt: u32, created: i64, state: ContainerState) -> ContainerStatus {
        ContainerStatus {
            id: id.into(),
            name: "app".into(),
            attempt,
            state,
            exit_code: 0,
            signal: None,
            created_at: ts(created),
            started_at: None,
            finished_at: None,
            reason: String::new(),
            message: String::new(),
            image: "busybox".into(),
            image_ref: String::new(),
            hash: 0,
        }
    }

    #[test]
    fn newest_instance_wins() {
        let status = PodRuntimeStatus {
            sandboxes: vec![],
            containers: vec![
                instance("a", 0, 10, ContainerState::Exited),
                instance("c", 2, 30, ContainerState::Running),
                instance("b", 1, 20, ContainerState::Exited),
            ],
        };
        assert_eq!(status.latest("app").map(|c| c.id.as_str()), Some("c"));
        let ids: Vec<_> = status
            .instances("app")
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(ids, ["c", "b", "a"]);
        assert_eq!(
            status.latest_exited("app").map(|c| c.id.as_str()),
            Some("b")
        );
        assert!(status.latest("other").is_none());
    }

    #[test]
    fn pod_ips_only_from_a_ready_latest_sandbox() {
        let sandbox = |id: &str, created, state| SandboxStatus {
            id: String::from(id),
            pod_uid: "u".into(),
            attempt: 0,
            state,
            ip: Some(format!("10.0.0.{created}")),
            additional_ips: vec!["fd00::1".into()],
            host_network: false,
            created_at: ts(created),
        };
        let mut status = PodRuntimeStatus {
            sandboxes: vec![
                sandbox("old", 1, SandboxState::NotReady),
                sandbox("new", 2, SandboxState::Ready),
            ],
            containers: vec![],
        };
        assert_eq!(status.pod_ips(), ["10.0.0.2", "fd00::1"]);
        status.sandboxes[1].state = SandboxState::NotReady;
        assert!(status.pod_ips().is_empty());
    }

    #[test]
    fn hash_follows_name_and_image_only() {
        let c = |name: &str, image: &str, args: &[&str]| Container {
            name: name.into(),
            image: Some(image.into()),
            args: Some(args.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        let base = container_hash(&c("app", "nginx:1", &[]));
        assert_eq!(base, container_hash(&c("app", "nginx:1", &["-v"])));
        assert_ne!(base, container_hash(&c("app", "nginx:2", &[])));
        assert_ne!(base, container_hash(&c("ap", "pnginx:1", &[])));
    }
}
