//! `peapod top pods`: the metrics API's PodMetrics printed as kubectl top prints them: CPU in
//! millicores (rounded up, as resource.Quantity's MilliValue) and memory in whole MiB.

use std::path::Path;

use serde_json::Value;

use super::client::{self, ClientError};
use super::table;

/// A quantity such as `1234n`, `5m`, `2`, `5000Ki`, `3Mi` as a number of base units.
fn quantity(s: &str) -> f64 {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: f64 = num.parse().unwrap_or(0.0);
    let scale = match suffix {
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        _ => 0.0,
    };
    n * scale
}

fn cpu_millis(s: &str) -> u64 {
    // Rounded up: a container using any CPU shows at least 1m.
    (quantity(s) * 1000.0 - 1e-9).ceil().max(0.0) as u64
}

fn memory_mib(s: &str) -> u64 {
    (quantity(s) / (1024.0 * 1024.0)).floor() as u64
}

/// The table of a PodMetricsList: one row per pod (or per container with `containers`), a
/// NAMESPACE column first with `all_namespaces`.
pub fn top_table(list: &Value, all_namespaces: bool, containers: bool) -> String {
    let mut header = Vec::new();
    if all_namespaces {
        header.push("NAMESPACE".to_string());
    }
    if containers {
        header.push("POD".into());
    }
    header.extend(["NAME".into(), "CPU(cores)".into(), "MEMORY(bytes)".into()]);
    let mut rows = vec![header];
    let mut items: Vec<&Value> = list["items"].as_array().into_iter().flatten().collect();
    items.sort_by_key(|i| {
        (
            i["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            i["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    });
    for item in items {
        let ns = item["metadata"]["namespace"].as_str().unwrap_or_default();
        let pod = item["metadata"]["name"].as_str().unwrap_or_default();
        let cs: Vec<&Value> = item["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        let usage = |c: &Value| {
            (
                cpu_millis(c["usage"]["cpu"].as_str().unwrap_or("0")),
                memory_mib(c["usage"]["memory"].as_str().unwrap_or("0")),
            )
        };
        let mut push = |name: Option<&str>, cpu: u64, mem: u64| {
            let mut row = Vec::new();
            if all_namespaces {
                row.push(ns.to_string());
            }
            row.push(pod.to_string());
            if let Some(n) = name {
                row.push(n.to_string());
            }
            row.push(format!("{cpu}m"));
            row.push(format!("{mem}Mi"));
            rows.push(row);
        };
        if containers {
            for c in cs {
                let (cpu, mem) = usage(c);
                push(c["name"].as_str(), cpu, mem);
            }
        } else {
            // kubectl sums the containers' quantities, then rounds.
            let cpu: f64 = cs
                .iter()
                .map(|c| quantity(c["usage"]["cpu"].as_str().unwrap_or("0")))
                .sum();
            let mem: f64 = cs
                .iter()
                .map(|c| quantity(c["usage"]["memory"].as_str().unwrap_or("0")))
                .sum();
            push(
                None,
                (cpu * 1000.0 - 1e-9).ceil().max(0.0) as u64,
                (mem / (1024.0 * 1024.0)).floor() as u64,
            );
        }
    }
    if rows.len() == 1 {
        return String::new();
    }
    table::render(&rows)
}

/// `top pods` against the daemon; an empty table is kubectl's "No resources found" line.
pub async fn top_pods(
    socket: &Path,
    namespace: Option<&str>,
    containers: bool,
) -> Result<(String, Option<String>), ClientError> {
    let path = match namespace {
        Some(ns) => format!("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods"),
        None => "/apis/metrics.k8s.io/v1beta1/pods".to_string(),
    };
    let body = client::get(socket, &path).await?;
    let list: Value =
        serde_json::from_slice(&body).map_err(|e| ClientError::Http(e.to_string()))?;
    let out = top_table(&list, namespace.is_none(), containers);
    if out.is_empty() {
        let note = match namespace {
            Some(ns) => format!("No resources found in {ns} namespace."),
            None => "No resources found".to_string(),
        };
        return Ok((out, Some(note)));
    }
    Ok((out, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> Value {
        json!({"items": [
            {"metadata": {"name": "web", "namespace": "default"}, "containers": [
                {"name": "a", "usage": {"cpu": "1500000n", "memory": "10240Ki"}},
                {"name": "b", "usage": {"cpu": "1n", "memory": "1536Ki"}}
            ]},
            {"metadata": {"name": "db", "namespace": "data"}, "containers": [
                {"name": "pg", "usage": {"cpu": "0", "memory": "512Ki"}}
            ]}
        ]})
    }

    #[test]
    fn pods_sum_their_containers_and_round_as_kubectl() {
        let t = top_table(&list(), false, false);
        assert_eq!(
            t,
            "NAME   CPU(cores)   MEMORY(bytes)\n\
             db     0m           0Mi\n\
             web    2m           11Mi\n"
        );
    }

    #[test]
    fn containers_and_namespaces_add_columns() {
        let t = top_table(&list(), true, true);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["NAMESPACE", "POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["default", "web", "a", "2m", "10Mi"]
        );
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            ["default", "web", "b", "1m", "1Mi"]
        );
    }

    #[test]
    fn quantities_parse() {
        assert_eq!(cpu_millis("250m"), 250);
        assert_eq!(cpu_millis("2"), 2000);
        assert_eq!(memory_mib("3Mi"), 3);
        assert_eq!(memory_mib("1G"), 953);
        assert!(top_table(&json!({"items": []}), false, false).is_empty());
    }
}
