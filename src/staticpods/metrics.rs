//! `peapod top pods`' data: the metrics API's PodMetrics (metrics.k8s.io/v1beta1), as
//! metrics-server serves them from kubelet's summary, here from the engine's own stats. CPU is
//! a rate, so each answer samples the pods' containers twice, a short window apart.

use std::time::Duration;

use serde_json::{json, Value};

use super::Shared;
use crate::pod::stats::CpuRate;

/// The sampling window of one answer.
const WINDOW: Duration = Duration::from_millis(200);

/// PodMetrics of the pods of `namespace` (every namespace when `None`).
pub async fn pod_metrics(shared: &Shared, namespace: Option<&str>) -> Value {
    let pods: Vec<_> = shared
        .pods()
        .into_iter()
        .filter(|p| namespace.is_none_or(|ns| p.metadata.namespace.as_deref() == Some(ns)))
        .collect();
    let uids: Vec<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
    let sandboxes: Vec<_> = shared
        .engine
        .sandboxes()
        .into_iter()
        .filter(|sb| {
            sb.config
                .metadata
                .as_ref()
                .is_some_and(|m| uids.contains(&m.uid))
        })
        .collect();
    // The first sample sets the rates' start; the second reads them.
    let _ = shared.engine.sandboxes_stats(&sandboxes, CpuRate::Compute);
    tokio::time::sleep(WINDOW).await;
    let stats = shared.engine.sandboxes_stats(&sandboxes, CpuRate::Compute);
    let now = crate::kubelet::clock::system_wall().to_string();
    let mut items = Vec::new();
    for p in &pods {
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let mut containers = Vec::new();
        for s in stats.iter().filter(|s| {
            s.sandbox
                .config
                .metadata
                .as_ref()
                .is_some_and(|m| m.uid == uid)
        }) {
            for c in &s.containers {
                let (Some(cpu), Some(mem)) = (c.cpu, c.memory) else {
                    continue;
                };
                let name = c
                    .container
                    .config
                    .metadata
                    .as_ref()
                    .map(|m| m.name.clone())
                    .unwrap_or_default();
                containers.push(json!({
                    "name": name,
                    "usage": {
                        "cpu": format!("{}n", cpu.nano_cores.unwrap_or(0)),
                        "memory": format!("{}Ki", mem.working_set / 1024),
                    },
                }));
            }
        }
        // A pod with no running container has no metrics, as metrics-server omits it.
        if containers.is_empty() {
            continue;
        }
        items.push(json!({
            "metadata": {
                "name": p.metadata.name,
                "namespace": p.metadata.namespace,
            },
            "timestamp": now,
            "window": format!("{}ms", WINDOW.as_millis()),
            "containers": containers,
        }));
    }
    json!({
        "kind": "PodMetricsList",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {},
        "items": items,
    })
}
