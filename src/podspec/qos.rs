//! QoS classes, pod cgroup parents and admission by resources, as kubelet computes them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use thiserror::Error;

use super::context::{CgroupDriver, Context, NodeResources};
use super::error::SpecError;
use super::pod;
use super::quantity::Qty;

/// Kubernetes's pod QoS classes (`v1.PodQOSClass`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// The API spelling, as `status.qosClass` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

const QOS_RESOURCES: [&str; 2] = ["cpu", "memory"];

/// `ComputePodQOS`: BestEffort when no container (app or init) requests or limits cpu or
/// memory; Guaranteed when every container limits both and the pod's summed requests equal
/// its summed limits; else Burstable. Requests default to limits first, as the API does.
pub fn qos_class(spec: &PodSpec) -> Result<QosClass, SpecError> {
    let mut requests: BTreeMap<&str, Qty> = BTreeMap::new();
    let mut limits: BTreeMap<&str, Qty> = BTreeMap::new();
    let mut guaranteed = true;
    for c in spec.containers.iter().chain(pod::init_containers(spec)) {
        let path = pod::container_path(spec, c);
        let reqs = pod::requests(c);
        let lims = pod::limits(c);
        let mut limited = 0;
        for name in QOS_RESOURCES {
            let r = pod::qty(&reqs, name, &format!("{path}.resources.requests"))?;
            if r.is_positive() {
                let e = requests.entry(name).or_default();
                *e = e.saturating_add(r);
            }
            let l = pod::qty(&lims, name, &format!("{path}.resources.limits"))?;
            if l.is_positive() {
                limited += 1;
                let e = limits.entry(name).or_default();
                *e = e.saturating_add(l);
            }
        }
        if limited < QOS_RESOURCES.len() {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return Ok(QosClass::BestEffort);
    }
    if guaranteed
        && requests.iter().all(|(k, r)| limits.get(k) == Some(r))
        && requests.len() == limits.len()
    {
        return Ok(QosClass::Guaranteed);
    }
    Ok(QosClass::Burstable)
}

/// The pod cgroup kubelet gives the sandbox (`GetPodCgroupParent`): Guaranteed pods directly
/// under the root, the others under its `burstable` / `besteffort` child, in `pod<uid>`.
pub fn cgroup_parent(class: QosClass, uid: &str, ctx: &Context) -> String {
    let tier = match class {
        QosClass::Guaranteed => None,
        QosClass::Burstable => Some("burstable"),
        QosClass::BestEffort => Some("besteffort"),
    };
    let pod = format!("pod{uid}");
    match ctx.cgroup_driver {
        CgroupDriver::Cgroupfs => {
            let root = ctx.cgroup_root.trim_matches('/');
            let mut parts = vec![root];
            parts.extend(tier);
            parts.push(&pod);
            format!("/{}", parts.join("/"))
        }
        // systemd names a slice by its whole ancestry, `-` separating levels, so the UID's
        // dashes become underscores (kubelet's `escapeSystemdCgroupName`).
        CgroupDriver::Systemd => {
            let root = ctx.cgroup_root.trim_end_matches(".slice").trim_matches('/');
            let mut parts = vec![root.to_string()];
            parts.extend(tier.map(str::to_string));
            parts.push(pod.replace('-', "_"));
            format!("{}.slice", parts.join("-"))
        }
    }
}

/// cpu (millicores) and memory (bytes) a pod asks for, as the scheduler and kubelet's
/// admission sum them (`PodRequests`): app containers and sidecars add up, a regular init
/// container needs its own requests plus the sidecars started before it, the pod needs the
/// larger of both, plus `spec.overhead`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PodRequests {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

impl PodRequests {
    fn add(self, o: PodRequests) -> PodRequests {
        PodRequests {
            cpu_millis: self.cpu_millis.saturating_add(o.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(o.memory_bytes),
        }
    }

    fn max(self, o: PodRequests) -> PodRequests {
        PodRequests {
            cpu_millis: self.cpu_millis.max(o.cpu_millis),
            memory_bytes: self.memory_bytes.max(o.memory_bytes),
        }
    }
}

fn container_requests(spec: &PodSpec, c: &Container) -> Result<PodRequests, SpecError> {
    let path = format!("{}.resources.requests", pod::container_path(spec, c));
    let reqs = pod::requests(c);
    Ok(PodRequests {
        cpu_millis: pod::qty(&reqs, "cpu", &path)?.milli_value(),
        memory_bytes: pod::qty(&reqs, "memory", &path)?.value(),
    })
}

pub fn pod_requests(spec: &PodSpec) -> Result<PodRequests, SpecError> {
    let mut total = PodRequests::default();
    for c in &spec.containers {
        total = total.add(container_requests(spec, c)?);
    }
    let mut sidecars = PodRequests::default();
    let mut init_peak = PodRequests::default();
    for c in pod::init_containers(spec) {
        let r = container_requests(spec, c)?;
        let during = if pod::is_sidecar(c) {
            total = total.add(r);
            sidecars = sidecars.add(r);
            sidecars
        } else {
            r.add(sidecars)
        };
        init_peak = init_peak.max(during);
    }
    total = total.max(init_peak);
    if let Some(o) = &spec.overhead {
        total = total.add(PodRequests {
            cpu_millis: pod::qty(o, "cpu", "spec.overhead")?.milli_value(),
            memory_bytes: pod::qty(o, "memory", "spec.overhead")?.value(),
        });
    }
    Ok(total)
}

/// A pod kubelet's admission refuses; the pod is reported Failed with this reason and
/// message (`InsufficientResourceError`, reason `OutOf<resource>`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AdmitError {
    #[error("Node didn't have enough resource: {resource}, requested: {requested}, used: {used}, capacity: {capacity}")]
    Insufficient {
        resource: &'static str,
        requested: i64,
        used: i64,
        capacity: i64,
    },
    /// The pod's spec could not be read.
    #[error("{0}")]
    Spec(#[from] SpecError),
}

impl AdmitError {
    /// The pod status reason: `OutOfcpu`, `OutOfmemory`; `UnexpectedAdmissionError` for a
    /// spec that cannot be read.
    pub fn reason(&self) -> String {
        match self {
            AdmitError::Insufficient { resource, .. } => format!("OutOf{resource}"),
            AdmitError::Spec(_) => "UnexpectedAdmissionError".into(),
        }
    }
}

/// kubelet's resource admission: a pod fits when each resource it requests (above zero) is
/// within what the running pods leave of the allocatable; the first shortfall, cpu before
/// memory, is the reason (kubelet reports only the first).
pub fn admit(running: &[Pod], new_pod: &Pod, node: NodeResources) -> Result<(), AdmitError> {
    let want = pod_requests(pod::spec(new_pod)?)?;
    let mut used = PodRequests::default();
    for p in running {
        used = used.add(pod_requests(pod::spec(p)?)?);
    }
    let checks = [
        ("cpu", want.cpu_millis, used.cpu_millis, node.cpu_millis),
        (
            "memory",
            want.memory_bytes,
            used.memory_bytes,
            node.memory_bytes,
        ),
    ];
    for (resource, requested, used, capacity) in checks {
        if requested > 0 && requested > capacity.saturating_sub(used) {
            return Err(AdmitError::Insufficient {
                resource,
                requested,
                used,
                capacity,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podspec::testutil::{container, pod_with};

    fn res(c: &mut Container, req: &[(&str, &str)], lim: &[(&str, &str)]) {
        let q = |l: &[(&str, &str)]| {
            (!l.is_empty()).then(|| {
                l.iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            k8s_openapi::apimachinery::pkg::api::resource::Quantity(v.to_string()),
                        )
                    })
                    .collect()
            })
        };
        c.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
            requests: q(req),
            limits: q(lim),
            ..Default::default()
        });
    }

    type R<'a> = &'a [(&'a str, &'a str)];

    #[test]
    fn qos_classes() {
        type Case<'a> = (&'a str, &'a [(R<'a>, R<'a>)], QosClass);
        let cases: &[Case] = &[
            ("nothing", &[(&[], &[])], QosClass::BestEffort),
            (
                "zero requests",
                &[(&[("cpu", "0")], &[])],
                QosClass::BestEffort,
            ),
            (
                "other resource only",
                &[(&[("ephemeral-storage", "1Gi")], &[])],
                QosClass::BestEffort,
            ),
            (
                "limits only both",
                &[(&[], &[("cpu", "1"), ("memory", "1Gi")])],
                QosClass::Guaranteed,
            ),
            (
                "equal",
                &[(
                    &[("cpu", "500m"), ("memory", "1Gi")],
                    &[("cpu", "0.5"), ("memory", "1024Mi")],
                )],
                QosClass::Guaranteed,
            ),
            (
                "cpu limit only",
                &[(&[], &[("cpu", "1")])],
                QosClass::Burstable,
            ),
            (
                "request below limit",
                &[(
                    &[("cpu", "100m"), ("memory", "1Gi")],
                    &[("cpu", "1"), ("memory", "1Gi")],
                )],
                QosClass::Burstable,
            ),
            (
                "request only",
                &[(&[("memory", "1Gi")], &[])],
                QosClass::Burstable,
            ),
            (
                "one guaranteed one besteffort",
                &[(&[], &[("cpu", "1"), ("memory", "1Gi")]), (&[], &[])],
                QosClass::Burstable,
            ),
        ];
        for (name, containers, want) in cases {
            let cs = containers
                .iter()
                .enumerate()
                .map(|(i, (req, lim))| {
                    let mut c = container(&format!("c{i}"));
                    res(&mut c, req, lim);
                    c
                })
                .collect();
            let p = pod_with(cs);
            assert_eq!(
                qos_class(p.spec.as_ref().unwrap()).unwrap(),
                *want,
                "{name}"
            );
        }
    }

    #[test]
    fn init_containers_count_for_qos() {
        let mut app = container("app");
        res(&mut app, &[], &[("cpu", "1"), ("memory", "1Gi")]);
        let mut p = pod_with(vec![app]);
        p.spec.as_mut().unwrap().init_containers = Some(vec![container("init")]);
        assert_eq!(
            qos_class(p.spec.as_ref().unwrap()).unwrap(),
            QosClass::Burstable
        );
    }

    #[test]
    fn cgroup_parents() {
        let mut ctx = Context::default();
        let cases = [
            (QosClass::Guaranteed, "/kubepods/poda-b"),
            (QosClass::Burstable, "/kubepods/burstable/poda-b"),
            (QosClass::BestEffort, "/kubepods/besteffort/poda-b"),
        ];
        for (class, want) in cases {
            assert_eq!(cgroup_parent(class, "a-b", &ctx), want);
        }
        ctx.cgroup_driver = CgroupDriver::Systemd;
        ctx.cgroup_root = "kubepods.slice".into();
        assert_eq!(
            cgroup_parent(QosClass::Burstable, "a-b", &ctx),
            "kubepods-burstable-poda_b.slice"
        );
        assert_eq!(
            cgroup_parent(QosClass::Guaranteed, "a-b", &ctx),
            "kubepods-poda_b.slice"
        );
    }

    #[test]
    fn pod_requests_with_init_and_sidecars() {
        let mut app = container("app");
        res(&mut app, &[("cpu", "100m"), ("memory", "100Mi")], &[]);
        let mut sidecar = container("sidecar");
        sidecar.restart_policy = Some("Always".into());
        res(&mut sidecar, &[("cpu", "200m")], &[]);
        let mut init = container("init");
        res(&mut init, &[("cpu", "500m"), ("memory", "50Mi")], &[]);
        let mut p = pod_with(vec![app]);
        let spec = p.spec.as_mut().unwrap();
        spec.init_containers = Some(vec![sidecar, init]);
        spec.overhead = Some(
            [(
                "cpu".to_string(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("10m".into()),
            )]
            .into(),
        );
        // app + sidecar = 300m; init while the sidecar runs = 700m → 700m, + 10m overhead.
        let r = pod_requests(p.spec.as_ref().unwrap()).unwrap();
        assert_eq!(
            r,
            PodRequests {
                cpu_millis: 710,
                memory_bytes: 100 * 1024 * 1024
            }
        );
    }

    #[test]
    fn admission() {
        let node = NodeResources {
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
        };
        let mk = |cpu: &str, mem: &str| {
            let mut c = container("c");
            res(&mut c, &[("cpu", cpu), ("memory", mem)], &[]);
            pod_with(vec![c])
        };
        let running = vec![mk("600m", "512Mi")];
        assert_eq!(admit(&running, &mk("400m", "512Mi"), node), Ok(()));
        let e = admit(&running, &mk("500m", "1Gi"), node).unwrap_err();
        assert_eq!(e.reason(), "OutOfcpu");
        assert_eq!(
            e.to_string(),
            "Node didn't have enough resource: cpu, requested: 500, used: 600, capacity: 1000"
        );
        let e = admit(&running, &mk("100m", "600Mi"), node).unwrap_err();
        assert_eq!(e.reason(), "OutOfmemory");
        assert_eq!(
            e.to_string(),
            format!(
                "Node didn't have enough resource: memory, requested: {}, used: {}, capacity: {}",
                600 << 20,
                512 << 20,
                1 << 30
            )
        );
        // A pod asking for nothing always fits.
        assert_eq!(
            admit(&[mk("1", "1Gi")], &pod_with(vec![container("c")]), node),
            Ok(())
        );
    }
}
