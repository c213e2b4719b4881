//! Labels and annotations kubelet puts on sandboxes and containers, by which it finds them
//! again (`newPodLabels`, `newContainerLabels`, `newContainerAnnotations`).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::pod;

pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const POD_UID: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
pub const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
pub const POD_TERMINATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
pub const POD_DELETION_GRACE_PERIOD: &str = "io.kubernetes.pod.deletionGracePeriod";
pub const PRESTOP_HANDLER: &str = "io.kubernetes.container.preStopHandler";
pub const CONTAINER_PORTS: &str = "io.kubernetes.container.ports";

/// The API defaults of a container's termination message.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
const DEFAULT_TERMINATION_MESSAGE_POLICY: &str = "File";

/// The pod's labels plus its identity.
pub fn pod_labels(pod: &Pod, uid: &str) -> HashMap<String, String> {
    let mut l: HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    l.insert(POD_NAME.into(), pod::name(pod).into());
    l.insert(POD_NAMESPACE.into(), pod::namespace(pod).into());
    l.insert(POD_UID.into(), uid.into());
    l
}

/// Only identity: kubelet does not copy the pod's labels onto containers.
pub fn container_labels(pod: &Pod, c: &Container) -> HashMap<String, String> {
    HashMap::from([
        (POD_NAME.into(), pod::name(pod).into()),
        (POD_NAMESPACE.into(), pod::namespace(pod).into()),
        (POD_UID.into(), pod::uid(pod).into()),
        (CONTAINER_NAME.into(), c.name.clone()),
    ])
}

pub fn termination_message_path(c: &Container) -> &str {
    c.termination_message_path
        .as_deref()
        .filter(|p| !p.is_empty())
        .unwrap_or(DEFAULT_TERMINATION_MESSAGE_PATH)
}

pub fn container_annotations(
    pod: &Pod,
    c: &Container,
    restart_count: u32,
) -> HashMap<String, String> {
    let mut a = HashMap::from([
        (CONTAINER_HASH.into(), format!("{:x}", container_hash(c))),
        (RESTART_COUNT.into(), restart_count.to_string()),
        (
            TERMINATION_MESSAGE_PATH.into(),
            termination_message_path(c).to_string(),
        ),
        (
            TERMINATION_MESSAGE_POLICY.into(),
            c.termination_message_policy
                .clone()
                .unwrap_or_else(|| DEFAULT_TERMINATION_MESSAGE_POLICY.into()),
        ),
    ]);
    if let Some(g) = pod.metadata.deletion_grace_period_seconds {
        a.insert(POD_DELETION_GRACE_PERIOD.into(), g.to_string());
    }
    if let Some(g) = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
    {
        a.insert(POD_TERMINATION_GRACE_PERIOD.into(), g.to_string());
    }
    // JSON, so the handler can be read back from the runtime after a restart.
    if let Some(pre) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
        if let Ok(j) = serde_json::to_string(pre) {
            a.insert(PRESTOP_HANDLER.into(), j);
        }
    }
    if let Some(ports) = c.ports.as_ref().filter(|p| !p.is_empty()) {
        if let Ok(j) = serde_json::to_string(ports) {
            a.insert(CONTAINER_PORTS.into(), j);
        }
    }
    a
}

/// FNV-1a (32 bit) of the container's JSON: a change of the container's spec changes it, as
/// kubelet's `HashContainer`. The value is not bit-for-bit kubelet's (which hashes Go's
/// printed form), only stable across restarts of peapod.
pub fn container_hash(c: &Container) -> u32 {
    let json = serde_json::to_vec(c).unwrap_or_default();
    json.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podspec::testutil::{container, pod_with};

    #[test]
    fn container_labels_and_annotations() {
        let c = container("app");
        let mut p = pod_with(vec![c.clone()]);
        p.spec.as_mut().unwrap().termination_grace_period_seconds = Some(45);
        let l = container_labels(&p, &c);
        assert_eq!(l.get(CONTAINER_NAME).map(String::as_str), Some("app"));
        assert_eq!(l.get(POD_UID).map(String::as_str), Some("uid-1"));
        let a = container_annotations(&p, &c, 3);
        assert_eq!(a.get(RESTART_COUNT).map(String::as_str), Some("3"));
        assert_eq!(
            a.get(TERMINATION_MESSAGE_PATH).map(String::as_str),
            Some("/dev/termination-log")
        );
        assert_eq!(
            a.get(TERMINATION_MESSAGE_POLICY).map(String::as_str),
            Some("File")
        );
        assert_eq!(
            a.get(POD_TERMINATION_GRACE_PERIOD).map(String::as_str),
            Some("45")
        );
        let mut changed = c.clone();
        changed.image = Some("busybox:1.37".into());
        assert_ne!(container_hash(&c), container_hash(&changed));
        assert_eq!(container_hash(&c), container_hash(&c.clone()));
    }
}
