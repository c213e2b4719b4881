//! Container and sandbox cgroup resources, as kubelet's `calculateLinuxResources`,
//! `GetContainerOOMScoreAdjust` and `GetHugepageLimitsFromResources`.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

use crate::api::{HugepageLimit, LinuxContainerResources};

use super::context::Context;
use super::error::SpecError;
use super::pod;
use super::qos::{qos_class, QosClass};
use super::quantity::Qty;

/// The kernel's bounds on cpu.shares (kubelet's `MinShares`, `MaxShares`).
const MIN_SHARES: i64 = 2;
const MAX_SHARES: i64 = 262_144;
const SHARES_PER_CPU: i64 = 1024;
/// kubelet's CFS period, 100 ms in µs, and the kernel's smallest quota, 1 ms.
pub const QUOTA_PERIOD: i64 = 100_000;
const MIN_QUOTA: i64 = 1000;

const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
const BESTEFFORT_OOM_SCORE_ADJ: i64 = 1000;

/// kubelet's `MilliCPUToShares`: zero is the kernel minimum (2), not the runtime default
/// (1024), so a container requesting nothing really gets the least.
pub fn milli_cpu_to_shares(milli: i64) -> i64 {
    if milli == 0 {
        return MIN_SHARES;
    }
    (milli.saturating_mul(SHARES_PER_CPU) / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// kubelet's `milliCPUToQuota`: 0 (no limit) for no cpu limit, at least 1 ms otherwise.
pub fn milli_cpu_to_quota(milli: i64, period: i64) -> i64 {
    if milli == 0 {
        return 0;
    }
    (milli.saturating_mul(period) / 1000).max(MIN_QUOTA)
}

/// `calculateLinuxResources`: shares from the cpu request (the limit when only that is set),
/// quota from the cpu limit at kubelet's 100 ms period, the memory limit as is.
pub fn linux_resources(
    cpu_request: Qty,
    cpu_limit: Qty,
    memory_limit: Qty,
    ctx: &Context,
) -> LinuxContainerResources {
    let shares = if cpu_request.is_zero() && !cpu_limit.is_zero() {
        milli_cpu_to_shares(cpu_limit.milli_value())
    } else {
        milli_cpu_to_shares(cpu_request.milli_value())
    };
    let mut r = LinuxContainerResources {
        cpu_shares: shares,
        cpu_period: QUOTA_PERIOD,
        cpu_quota: milli_cpu_to_quota(cpu_limit.milli_value(), QUOTA_PERIOD),
        memory_limit_in_bytes: memory_limit.value(),
        ..Default::default()
    };
    if ctx.oom_group {
        // kubelet on cgroup v2 asks the kernel to kill the whole container on OOM.
        r.unified.insert("memory.oom.group".into(), "1".into());
    }
    r
}

/// The container's resources: cgroup limits, oom_score_adj and huge pages.
pub fn container_resources(
    pod: &Pod,
    c: &Container,
    ctx: &Context,
) -> Result<LinuxContainerResources, SpecError> {
    let spec = pod::spec(pod)?;
    let path = pod::container_path(spec, c);
    let reqs = pod::requests(c);
    let lims = pod::limits(c);
    let rp = format!("{path}.resources.requests");
    let lp = format!("{path}.resources.limits");
    let mut r = linux_resources(
        pod::qty(&reqs, "cpu", &rp)?,
        pod::qty(&lims, "cpu", &lp)?,
        pod::qty(&lims, "memory", &lp)?,
        ctx,
    );
    r.oom_score_adj = oom_score_adj(pod, c, ctx.memory_capacity)?;
    r.hugepage_limits = hugepage_limits(&lims, &lp, ctx)?;
    Ok(r)
}

/// `GetContainerOOMScoreAdjust`: node-critical and Guaranteed -997, BestEffort 1000,
/// Burstable `1000 - 1000 * request / capacity` kept within 3..=999 so it stays between the
/// two; a sidecar counts at least the smallest app container's request.
pub fn oom_score_adj(pod: &Pod, c: &Container, memory_capacity: i64) -> Result<i64, SpecError> {
    let spec = pod::spec(pod)?;
    // Static pods are critical; system-node-critical ones are the last killed.
    if spec.priority_class_name.as_deref() == Some("system-node-critical") {
        return Ok(GUARANTEED_OOM_SCORE_ADJ);
    }
    match qos_class(spec)? {
        QosClass::Guaranteed => return Ok(GUARANTEED_OOM_SCORE_ADJ),
        QosClass::BestEffort => return Ok(BESTEFFORT_OOM_SCORE_ADJ),
        QosClass::Burstable => {}
    }
    let mut request = memory_request(spec, c)?;
    if pod::is_sidecar(c) && pod::init_containers(spec).iter().any(|i| i.name == c.name) {
        let mut min = 0;
        for app in &spec.containers {
            let r = memory_request(spec, app)?;
            if r > 0 && (min == 0 || r < min) {
                min = r;
            }
        }
        if min != 0 && min > request {
            request = min;
        }
    }
    if memory_capacity <= 0 {
        return Ok(BESTEFFORT_OOM_SCORE_ADJ - 1);
    }
    let adj = 1000 - (i128::from(request) * 1000 / i128::from(memory_capacity)) as i64;
    if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ {
        return Ok(1000 + GUARANTEED_OOM_SCORE_ADJ);
    }
    if adj == BESTEFFORT_OOM_SCORE_ADJ {
        return Ok(adj - 1);
    }
    Ok(adj)
}

fn memory_request(spec: &PodSpec, c: &Container) -> Result<i64, SpecError> {
    let path = format!("{}.resources.requests", pod::container_path(spec, c));
    Ok(pod::qty(&pod::requests(c), "memory", &path)?.value())
}

/// Every host page size limited to 0 unless the container's `hugepages-<size>` limit says
/// otherwise (`GetHugepageLimitsFromResources`).
fn hugepage_limits(
    limits: &std::collections::BTreeMap<
        String,
        k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    >,
    path: &str,
    ctx: &Context,
) -> Result<Vec<HugepageLimit>, SpecError> {
    let mut out: Vec<HugepageLimit> = ctx
        .hugepage_sizes
        .iter()
        .map(|s| HugepageLimit {
            page_size: s.clone(),
            limit: 0,
        })
        .collect();
    for (name, amount) in limits {
        let Some(size) = name.strip_prefix("hugepages-") else {
            continue;
        };
        let p = format!("{path}[{name}]");
        let bytes = Qty::parse(size)
            .map_err(|e| SpecError::invalid(&p, e.to_string()))?
            .value();
        let unit =
            hugepage_unit(bytes).ok_or_else(|| SpecError::invalid(&p, "not a huge page size"))?;
        let limit = Qty::of(amount)
            .map_err(|e| SpecError::invalid(&p, e.to_string()))?
            .value();
        let limit =
            u64::try_from(limit).map_err(|_| SpecError::invalid(&p, "must not be negative"))?;
        match out.iter_mut().find(|h| h.page_size == unit) {
            Some(h) => h.limit = limit,
            None => {
                return Err(SpecError::invalid(
                    p,
                    format!("the host has no {unit} huge pages"),
                ))
            }
        }
    }
    Ok(out)
}

/// `HugePageUnitSizeFromByteSize`: 2097152 → `2MB`, 1073741824 → `1GB`.
fn hugepage_unit(mut size: i64) -> Option<String> {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    if size <= 0 {
        return None;
    }
    let mut idx = 0;
    while size % 1024 == 0 && idx < UNITS.len() - 1 {
        size /= 1024;
        idx += 1;
    }
    if size > 1024 && idx < UNITS.len() - 1 {
        return None;
    }
    Some(format!("{size}{}", UNITS[idx]))
}

/// The sandbox's `resources` (the pod's summed requests and limits without overhead) and
/// `overhead` (`spec.overhead` as both request and limit), as kubelet fills them for runtimes
/// that size the pod cgroup.
pub fn sandbox_resources(
    spec: &PodSpec,
    ctx: &Context,
) -> Result<(LinuxContainerResources, Option<LinuxContainerResources>), SpecError> {
    let mut cpu_req = Qty::ZERO;
    let mut cpu_lim = Qty::ZERO;
    let mut mem_lim = Qty::ZERO;
    let mut init_cpu_req = Qty::ZERO;
    let mut init_cpu_lim = Qty::ZERO;
    let mut init_mem_lim = Qty::ZERO;
    for c in &spec.containers {
        let path = pod::container_path(spec, c);
        cpu_req = cpu_req.saturating_add(pod::qty(
            &pod::requests(c),
            "cpu",
            &format!("{path}.resources.requests"),
        )?);
        cpu_lim = cpu_lim.saturating_add(pod::qty(
            &pod::limits(c),
            "cpu",
            &format!("{path}.resources.limits"),
        )?);
        mem_lim = mem_lim.saturating_add(pod::qty(
            &pod::limits(c),
            "memory",
            &format!("{path}.resources.limits"),
        )?);
    }
    for c in pod::init_containers(spec) {
        let path = pod::container_path(spec, c);
        let r = pod::qty(
            &pod::requests(c),
            "cpu",
            &format!("{path}.resources.requests"),
        )?;
        let l = pod::qty(&pod::limits(c), "cpu", &format!("{path}.resources.limits"))?;
        let m = pod::qty(
            &pod::limits(c),
            "memory",
            &format!("{path}.resources.limits"),
        )?;
        if pod::is_sidecar(c) {
            cpu_req = cpu_req.saturating_add(r);
            cpu_lim = cpu_lim.saturating_add(l);
            mem_lim = mem_lim.saturating_add(m);
        } else {
            init_cpu_req = init_cpu_req.max(r);
            init_cpu_lim = init_cpu_lim.max(l);
            init_mem_lim = init_mem_lim.max(m);
        }
    }
    let resources = linux_resources(
        cpu_req.max(init_cpu_req),
        cpu_lim.max(init_cpu_lim),
        mem_lim.max(init_mem_lim),
        ctx,
    );
    let overhead = match &spec.overhead {
        None => None,
        Some(o) => {
            let cpu = pod::qty(o, "cpu", "spec.overhead")?;
            let mem = pod::qty(o, "memory", "spec.overhead")?;
            Some(linux_resources(cpu, cpu, mem, ctx))
        }
    };
    Ok((resources, overhead))
}

/// The pod's memory limit when every container has one (kubelet's `ResourceConfigForPod`):
/// the larger of the app containers' (and sidecars') sum and the largest init container.
pub fn pod_memory_limit(spec: &PodSpec) -> Result<Option<i64>, SpecError> {
    let mut sum = 0i64;
    let mut init_max = 0i64;
    for c in spec.containers.iter().chain(pod::init_containers(spec)) {
        let path = format!("{}.resources.limits", pod::container_path(spec, c));
        let l = pod::qty(&pod::limits(c), "memory", &path)?;
        if !l.is_positive() {
            return Ok(None);
        }
        let is_init = pod::init_containers(spec).iter().any(|i| i.name == c.name);
        if is_init && !pod::is_sidecar(c) {
            init_max = init_max.max(l.value());
        } else {
            sum = sum.saturating_add(l.value());
        }
    }
    Ok(Some(sum.max(init_max)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podspec::testutil::{container, pod_with};
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    type L<'a> = &'a [(&'a str, &'a str)];

    fn list(l: &[(&str, &str)]) -> Option<std::collections::BTreeMap<String, Quantity>> {
        (!l.is_empty()).then(|| {
            l.iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect()
        })
    }

    fn with_res(req: &[(&str, &str)], lim: &[(&str, &str)]) -> Container {
        let mut c = container("c");
        c.resources = Some(ResourceRequirements {
            requests: list(req),
            limits: list(lim),
            ..Default::default()
        });
        c
    }

    #[test]
    fn shares_and_quota_match_kubelet() {
        // (milliCPU, shares, quota at 100 ms) from kubelet's helpers_linux_test.go.
        let cases = [
            (0, 2, 0),
            (1, 2, 1000),
            (5, 5, 1000),
            (9, 9, 1000),
            (10, 10, 1000),
            (100, 102, 10000),
            (200, 204, 20000),
            (1000, 1024, 100000),
            (1500, 1536, 150000),
            (300_000, 262_144, 30_000_000),
        ];
        for (milli, shares, quota) in cases {
            assert_eq!(milli_cpu_to_shares(milli), shares, "shares of {milli}m");
            assert_eq!(
                milli_cpu_to_quota(milli, QUOTA_PERIOD),
                quota,
                "quota of {milli}m"
            );
        }
    }

    #[test]
    fn container_resources_from_requests_and_limits() {
        let ctx = Context {
            memory_capacity: 4 << 30,
            ..Default::default()
        };
        // (requests, limits, shares, quota, memory limit)
        type Case<'a> = (L<'a>, L<'a>, i64, i64, i64);
        let cases: &[Case] = &[
            (&[], &[], 2, 0, 0),
            (&[("cpu", "100m")], &[], 102, 0, 0),
            (
                &[],
                &[("cpu", "250m"), ("memory", "128Mi")],
                256,
                25000,
                128 << 20,
            ),
            (&[("cpu", "100m")], &[("cpu", "2")], 102, 200000, 0),
        ];
        for (req, lim, shares, quota, mem) in cases {
            let c = with_res(req, lim);
            let p = pod_with(vec![c.clone()]);
            let r = container_resources(&p, &c, &ctx).unwrap();
            assert_eq!(
                (
                    r.cpu_shares,
                    r.cpu_quota,
                    r.cpu_period,
                    r.memory_limit_in_bytes
                ),
                (*shares, *quota, 100000, *mem),
                "{req:?} {lim:?}"
            );
        }
    }

    #[test]
    fn oom_score_adj_per_qos() {
        let cap = 1 << 30;
        type Case<'a> = (&'a str, L<'a>, L<'a>, i64);
        let cases: &[Case] = &[
            ("besteffort", &[], &[], 1000),
            ("guaranteed", &[], &[("cpu", "1"), ("memory", "1Gi")], -997),
            ("burstable 10%", &[("memory", "107374182")], &[], 901),
            ("burstable tiny", &[("memory", "1")], &[], 999),
            ("burstable cpu only", &[("cpu", "1")], &[], 999),
            ("burstable over capacity", &[("memory", "2Gi")], &[], 3),
        ];
        for (name, req, lim, want) in cases {
            let c = with_res(req, lim);
            let p = pod_with(vec![c.clone()]);
            assert_eq!(oom_score_adj(&p, &c, cap).unwrap(), *want, "{name}");
        }
        let c = with_res(&[], &[]);
        let mut p = pod_with(vec![c.clone()]);
        p.spec.as_mut().unwrap().priority_class_name = Some("system-node-critical".into());
        assert_eq!(oom_score_adj(&p, &c, cap).unwrap(), -997);
    }

    #[test]
    fn sidecar_oom_score_follows_smallest_app_request() {
        let app = with_res(&[("memory", "512Mi")], &[]);
        let mut side = with_res(&[("memory", "1Mi")], &[]);
        side.name = "side".into();
        side.restart_policy = Some("Always".into());
        let mut p = pod_with(vec![app]);
        p.spec.as_mut().unwrap().init_containers = Some(vec![side.clone()]);
        assert_eq!(oom_score_adj(&p, &side, 1 << 30).unwrap(), 500);
    }

    #[test]
    fn hugepages() {
        let ctx = Context {
            hugepage_sizes: vec!["2MB".into(), "1GB".into()],
            ..Default::default()
        };
        let c = with_res(
            &[],
            &[("hugepages-2Mi", "4Mi"), ("memory", "1Gi"), ("cpu", "1")],
        );
        let p = pod_with(vec![c.clone()]);
        let r = container_resources(&p, &c, &ctx).unwrap();
        let got: Vec<_> = r
            .hugepage_limits
            .iter()
            .map(|h| (h.page_size.as_str(), h.limit))
            .collect();
        assert_eq!(got, [("2MB", 4 << 20), ("1GB", 0)]);
        assert_eq!(hugepage_unit(2 << 20).as_deref(), Some("2MB"));
        assert_eq!(hugepage_unit(1 << 30).as_deref(), Some("1GB"));
        assert_eq!(hugepage_unit(64 * 1024).as_deref(), Some("64KB"));
    }

    #[test]
    fn oom_group_on_cgroup_v2() {
        let ctx = Context {
            oom_group: true,
            ..Default::default()
        };
        let r = linux_resources(Qty::ZERO, Qty::ZERO, Qty::ZERO, &ctx);
        assert_eq!(
            r.unified.get("memory.oom.group").map(String::as_str),
            Some("1")
        );
    }
}
