//! Reading a Pod with the API server's defaults applied: k8s-openapi types are not defaulted,
//! and kubelet only ever sees defaulted pods (its file source runs the scheme's defaulting).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::error::SpecError;
use super::quantity::Qty;

/// The pod's spec; a Pod without one cannot run.
pub fn spec(pod: &Pod) -> Result<&PodSpec, SpecError> {
    pod.spec
        .as_ref()
        .ok_or_else(|| SpecError::invalid("spec", "required"))
}

pub fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}

/// The namespace, `default` when unset as kubelet's file source defaults it.
pub fn namespace(pod: &Pod) -> &str {
    match pod.metadata.namespace.as_deref() {
        None | Some("") => "default",
        Some(ns) => ns,
    }
}

pub fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

pub fn init_containers(spec: &PodSpec) -> &[Container] {
    spec.init_containers.as_deref().unwrap_or(&[])
}

/// A native sidecar: an init container with `restartPolicy: Always`.
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// One resource list of a container with the API default applied: a request that is not
/// given defaults to the limit (`SetDefaults_Pod`).
pub fn requests(c: &Container) -> BTreeMap<String, Quantity> {
    let mut out = BTreeMap::new();
    if let Some(r) = &c.resources {
        if let Some(l) = &r.limits {
            out.extend(l.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if let Some(q) = &r.requests {
            out.extend(q.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    out
}

pub fn limits(c: &Container) -> BTreeMap<String, Quantity> {
    c.resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default()
}

/// A quantity of a resource list, zero when absent; `path` names the list for errors.
pub fn qty(list: &BTreeMap<String, Quantity>, key: &str, path: &str) -> Result<Qty, SpecError> {
    match list.get(key) {
        None => Ok(Qty::ZERO),
        Some(q) => {
            Qty::of(q).map_err(|e| SpecError::invalid(format!("{path}[{key}]"), e.to_string()))
        }
    }
}

/// Where a container sits in the spec, for error paths.
pub fn container_path(spec: &PodSpec, c: &Container) -> String {
    if let Some(i) = spec.containers.iter().position(|x| x.name == c.name) {
        return format!("spec.containers[{i}]");
    }
    if let Some(i) = init_containers(spec).iter().position(|x| x.name == c.name) {
        return format!("spec.initContainers[{i}]");
    }
    format!("container {:?}", c.name)
}

/// kubelet's `format.Pod`: `name_namespace(uid)`.
pub fn format_pod(pod: &Pod) -> String {
    format!("{}_{}({})", name(pod), namespace(pod), uid(pod))
}
