//! Downward API values: `fieldRef` (kubelet's `podFieldSelectorRuntimeValue` and
//! `fieldpath.ExtractFieldPathAsString`) and `resourceFieldRef`
//! (`ExtractContainerResourceValue`, limits defaulted to the node's allocatable).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod, ResourceFieldSelector};

use super::context::Context;
use super::error::SpecError;
use super::pod;
use super::quantity::Qty;

/// Where the field is read: env vars also see status and spec fields, volume files only
/// metadata (the downward API volume plugin calls `ExtractFieldPathAsString` directly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldUse {
    Env,
    Volume,
}

/// The value of a `fieldRef`; `path` names the selector for errors.
pub fn field_value(
    sel: &ObjectFieldSelector,
    pod: &Pod,
    ctx: &Context,
    used: FieldUse,
    path: &str,
) -> Result<String, SpecError> {
    if let Some(v) = sel.api_version.as_deref() {
        if !v.is_empty() && v != "v1" {
            return Err(SpecError::invalid(
                format!("{path}.apiVersion"),
                format!("unsupported version {v:?}"),
            ));
        }
    }
    let fp = sel.field_path.as_str();
    if used == FieldUse::Env {
        let spec = pod::spec(pod)?;
        match fp {
            // Static pods are bound to this node; kubelet's file source sets nodeName.
            "spec.nodeName" => {
                return Ok(spec
                    .node_name
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| ctx.node_name.clone()))
            }
            "spec.serviceAccountName" => {
                return Ok(spec.service_account_name.clone().unwrap_or_default())
            }
            "status.hostIP" => return Ok(ctx.host_ips.first().cloned().unwrap_or_default()),
            "status.hostIPs" => return Ok(ctx.host_ips.join(",")),
            "status.podIP" => return Ok(ctx.pod_ips.first().cloned().unwrap_or_default()),
            "status.podIPs" => return Ok(ctx.pod_ips.join(",")),
            _ => {}
        }
    }
    metadata_value(pod, fp).ok_or_else(|| {
        SpecError::invalid(
            format!("{path}.fieldPath"),
            format!("unsupported fieldPath: {fp}"),
        )
    })
}

fn metadata_value(pod: &Pod, fp: &str) -> Option<String> {
    let empty = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    if let Some(key) = subscript(fp, "metadata.labels") {
        return Some(labels.get(key).cloned().unwrap_or_default());
    }
    if let Some(key) = subscript(fp, "metadata.annotations") {
        return Some(annotations.get(key).cloned().unwrap_or_default());
    }
    match fp {
        "metadata.name" => Some(pod::name(pod).to_string()),
        "metadata.namespace" => Some(pod::namespace(pod).to_string()),
        "metadata.uid" => Some(pod::uid(pod).to_string()),
        "metadata.labels" => Some(format_map(labels)),
        "metadata.annotations" => Some(format_map(annotations)),
        _ => None,
    }
}

/// `metadata.labels['key']` → `key`.
fn subscript<'a>(fp: &'a str, prefix: &str) -> Option<&'a str> {
    fp.strip_prefix(prefix)?
        .strip_prefix("['")?
        .strip_suffix("']")
}

/// `fieldpath.FormatMap`: `key="value"` lines in key order, values quoted as Go's `%q`.
pub fn format_map(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The value of a `resourceFieldRef` for `container` (or the container it names): a limit
/// not set is the node's allocatable (kubelet's `defaultPodLimitsForDownwardAPI`), the value
/// is divided by the divisor (default 1) and rounded up.
pub fn resource_value(
    sel: &ResourceFieldSelector,
    pod: &Pod,
    container: Option<&Container>,
    ctx: &Context,
    path: &str,
) -> Result<String, SpecError> {
    let spec = pod::spec(pod)?;
    let c = match sel.container_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => spec
            .containers
            .iter()
            .chain(pod::init_containers(spec))
            .find(|c| c.name == name)
            .ok_or_else(|| {
                SpecError::invalid(
                    format!("{path}.containerName"),
                    format!("container {name:?} not found"),
                )
            })?,
        None => container.ok_or_else(|| {
            SpecError::invalid(format!("{path}.containerName"), "required in a volume")
        })?,
    };
    let divisor = match &sel.divisor {
        None => Qty::from_units(1),
        Some(d) => {
            let d = Qty::of(d)
                .map_err(|e| SpecError::invalid(format!("{path}.divisor"), e.to_string()))?;
            if d.is_zero() {
                Qty::from_units(1)
            } else {
                d
            }
        }
    };
    let bad = |e: super::error::QuantityError| SpecError::invalid(path, e.to_string());
    let (kind, name) = sel.resource.split_once('.').ok_or_else(|| {
        SpecError::invalid(
            format!("{path}.resource"),
            format!("unsupported container resource : {}", sel.resource),
        )
    })?;
    let amount = match kind {
        "limits" => match pod::limits(c).get(name) {
            Some(q) => Qty::of(q).map_err(bad)?,
            None => match name {
                "cpu" => Qty::from_millis(ctx.allocatable.cpu_millis),
                "memory" => Qty::from_units(ctx.allocatable.memory_bytes),
                _ => Qty::ZERO,
            },
        },
        "requests" => match pod::requests(c).get(name) {
            Some(q) => Qty::of(q).map_err(bad)?,
            None => Qty::ZERO,
        },
        _ => Qty::ZERO,
    };
    let known =
        matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-");
    if !matches!(kind, "limits" | "requests") || !known {
        return Err(SpecError::invalid(
            format!("{path}.resource"),
            format!("unsupported container resource : {}", sel.resource),
        ));
    }
    // cpu divides millicores (`convertResourceCPUToString`), the others whole units.
    let (num, den) = if name == "cpu" {
        (amount.milli_value(), divisor.milli_value())
    } else {
        (amount.value(), divisor.value())
    };
    if den == 0 {
        return Err(SpecError::invalid(
            format!("{path}.divisor"),
            "must be positive",
        ));
    }
    Ok(ceil_div(num, den).to_string())
}

fn ceil_div(n: i64, d: i64) -> i64 {
    let q = n / d;
    if (n % d != 0) && ((n > 0) == (d > 0)) {
        q + 1
    } else {
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podspec::context::NodeResources;
    use crate::podspec::testutil::{container, pod_with};
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn sel(fp: &str) -> ObjectFieldSelector {
        ObjectFieldSelector {
            api_version: None,
            field_path: fp.into(),
        }
    }

    #[test]
    fn field_refs() {
        let mut p = pod_with(vec![container("c")]);
        p.metadata.labels = Some(
            [
                ("app".to_string(), "web".to_string()),
                ("tier".into(), "a\"b\n".into()),
            ]
            .into(),
        );
        p.metadata.annotations = Some([("note".to_string(), "x".to_string())].into());
        p.spec.as_mut().unwrap().service_account_name = Some("sa".into());
        let ctx = Context {
            node_name: "node1".into(),
            host_ips: vec!["10.0.0.1".into(), "fd00::1".into()],
            pod_ips: vec!["10.88.0.5".into(), "fd88::5".into()],
            ..Default::default()
        };
        let cases = [
            ("metadata.name", "web"),
            ("metadata.namespace", "default"),
            ("metadata.uid", "uid-1"),
            ("metadata.labels['app']", "web"),
            ("metadata.labels['missing']", ""),
            ("metadata.annotations['note']", "x"),
            ("metadata.labels", "app=\"web\"\ntier=\"a\\\"b\\n\""),
            ("spec.nodeName", "node1"),
            ("spec.serviceAccountName", "sa"),
            ("status.hostIP", "10.0.0.1"),
            ("status.hostIPs", "10.0.0.1,fd00::1"),
            ("status.podIP", "10.88.0.5"),
            ("status.podIPs", "10.88.0.5,fd88::5"),
        ];
        for (fp, want) in cases {
            assert_eq!(
                field_value(&sel(fp), &p, &ctx, FieldUse::Env, "x").unwrap(),
                want,
                "{fp}"
            );
        }
        assert!(field_value(&sel("status.podIP"), &p, &ctx, FieldUse::Volume, "x").is_err());
        let e = field_value(
            &sel("spec.bogus"),
            &p,
            &ctx,
            FieldUse::Env,
            "env[0].valueFrom.fieldRef",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "env[0].valueFrom.fieldRef.fieldPath: unsupported fieldPath: spec.bogus"
        );
    }

    #[test]
    fn resource_refs() {
        let mut c = container("c");
        c.resources = Some(ResourceRequirements {
            requests: Some([("cpu".to_string(), Quantity("250m".into()))].into()),
            limits: Some([("memory".to_string(), Quantity("64Mi".into()))].into()),
            ..Default::default()
        });
        let p = pod_with(vec![c.clone()]);
        let ctx = Context {
            allocatable: NodeResources {
                cpu_millis: 4000,
                memory_bytes: 8 << 30,
            },
            ..Default::default()
        };
        let r = |res: &str, div: Option<&str>| ResourceFieldSelector {
            container_name: None,
            divisor: div.map(|d| Quantity(d.into())),
            resource: res.into(),
        };
        let cases = [
            (r("requests.cpu", None), "1"),
            (r("requests.cpu", Some("1m")), "250"),
            (r("limits.cpu", None), "4"),
            (r("limits.cpu", Some("1m")), "4000"),
            (r("limits.memory", None), "67108864"),
            (r("limits.memory", Some("1Mi")), "64"),
            (r("requests.memory", None), "67108864"),
            (r("requests.memory", Some("1Gi")), "1"),
        ];
        for (s, want) in cases {
            assert_eq!(
                resource_value(&s, &p, Some(&c), &ctx, "x").unwrap(),
                want,
                "{s:?}"
            );
        }
        assert!(resource_value(&r("limits.gpu", None), &p, Some(&c), &ctx, "x").is_err());
    }
}
