//! `peapod get events`: kubectl's event table (LAST SEEN TYPE REASON OBJECT MESSAGE), newest
//! last, and the manifest errors `get pods` warns about.

use std::path::Path;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;

use super::client::{self, ClientError};
use super::duration::human;
use super::get::{to_json, Output, Printed};
use super::table;

/// When an event last happened: its last timestamp, else its first, else its event time.
pub fn last_seen(e: &Event) -> Option<Timestamp> {
    e.last_timestamp
        .as_ref()
        .or(e.first_timestamp.as_ref())
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
}

/// kubectl's OBJECT cell: `pod/web`.
fn object(e: &Event) -> String {
    let o = &e.involved_object;
    let kind = o.kind.as_deref().unwrap_or_default().to_lowercase();
    match o.name.as_deref().filter(|n| !n.is_empty()) {
        Some(n) => format!("{kind}/{n}"),
        None => kind,
    }
}

/// The table of `events` at `now`, sorted oldest first (stable); `namespace` adds kubectl's
/// leading NAMESPACE column (`-A`).
pub fn events_table(events: &[Event], now: Timestamp, namespace: bool) -> String {
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| last_seen(e));
    let mut header = Vec::new();
    if namespace {
        header.push("NAMESPACE".to_string());
    }
    header.extend(["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"].map(String::from));
    let mut rows = vec![header];
    for e in sorted {
        let mut r = Vec::new();
        if namespace {
            r.push(e.metadata.namespace.clone().unwrap_or_default());
        }
        r.push(match last_seen(e) {
            Some(t) => human(now.as_second() - t.as_second()),
            None => "<unknown>".into(),
        });
        r.push(e.type_.clone().unwrap_or_default());
        r.push(e.reason.clone().unwrap_or_default());
        r.push(object(e));
        r.push(e.message.as_deref().unwrap_or_default().trim().to_string());
        rows.push(r);
    }
    table::render(&rows)
}

/// The events of `namespace` (None: all), or of one pod when `pod` is given.
pub async fn fetch(
    socket: &Path,
    namespace: Option<&str>,
    pod: Option<&str>,
) -> Result<Vec<Event>, ClientError> {
    let mut path = match namespace {
        Some(ns) => format!("/api/v1/namespaces/{ns}/events"),
        None => "/api/v1/events".to_string(),
    };
    if let Some(p) = pod {
        path.push_str(&format!("?fieldSelector=involvedObject.name%3D{p}"));
    }
    let body = client::get(socket, &path).await?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ClientError::Http(e.to_string()))?;
    serde_json::from_value(v.get("items").cloned().unwrap_or_default())
        .map_err(|e| ClientError::Http(e.to_string()))
}

/// `get events`: the table (or the list as JSON or YAML), or kubectl's "No resources found"
/// note.
pub async fn get_events(
    socket: &Path,
    namespace: Option<&str>,
    output: Output,
) -> Result<Printed, ClientError> {
    let events = fetch(socket, namespace, None).await?;
    if matches!(output, Output::Json | Output::Yaml) {
        let items: Vec<serde_json::Value> = events
            .iter()
            .map(|e| {
                let mut v = serde_json::to_value(e).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("apiVersion".into(), "v1".into());
                    o.insert("kind".into(), "Event".into());
                }
                v
            })
            .collect();
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List",
            "metadata": {"resourceVersion": ""}, "items": items});
        let stdout = if output == Output::Json {
            to_json(&list)
        } else {
            serde_yaml_ng::to_string(&list).unwrap_or_default()
        };
        return Ok(Printed {
            stdout,
            stderr: None,
        });
    }
    if output == Output::Name {
        return Ok(Printed {
            stdout: events
                .iter()
                .map(|e| format!("event/{}\n", e.metadata.name.as_deref().unwrap_or_default()))
                .collect(),
            stderr: None,
        });
    }
    if events.is_empty() {
        return Ok(Printed {
            stdout: String::new(),
            stderr: Some(match namespace {
                Some(ns) => format!("No resources found in {ns} namespace."),
                None => "No resources found".into(),
            }),
        });
    }
    Ok(Printed {
        stdout: events_table(
            &events,
            crate::kubelet::clock::system_wall(),
            namespace.is_none(),
        ),
        stderr: None,
    })
}

/// The manifest directory's errors, each as kubectl prints a server's warning.
pub async fn manifest_warnings(socket: &Path) -> Result<Vec<String>, ClientError> {
    let body = client::get(socket, "/peapod/v1/manifest-errors").await?;
    let errors: Vec<String> =
        serde_json::from_slice(&body).map_err(|e| ClientError::Http(e.to_string()))?;
    Ok(warning_lines(&errors))
}

/// `Warning: <error>` for each error.
pub fn warning_lines(errors: &[String]) -> Vec<String> {
    errors.iter().map(|e| format!("Warning: {e}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn ev(reason: &str, kind: &str, secs_ago: i64, now: Timestamp) -> Event {
        let t = Time(Timestamp::from_second(now.as_second() - secs_ago).unwrap());
        Event {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                kind: Some("Pod".into()),
                name: Some("web".into()),
                ..Default::default()
            },
            reason: Some(reason.into()),
            type_: Some(kind.into()),
            message: Some(format!("{reason} container app ")),
            first_timestamp: Some(t.clone()),
            last_timestamp: Some(t),
            ..Default::default()
        }
    }

    #[test]
    fn table_as_kubectl_newest_last() {
        let now: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let evs = [
            ev("Started", "Normal", 5, now),
            ev("Created", "Normal", 6, now),
            ev("BackOff", "Warning", 0, now),
        ];
        assert_eq!(
            events_table(&evs, now, false),
            "LAST SEEN   TYPE      REASON    OBJECT    MESSAGE\n\
             6s          Normal    Created   pod/web   Created container app\n\
             5s          Normal    Started   pod/web   Started container app\n\
             0s          Warning   BackOff   pod/web   BackOff container app\n"
        );
        let all = events_table(&evs[..1], now, true);
        assert!(all.starts_with("NAMESPACE   LAST SEEN"), "{all}");
        assert!(all.contains("\ndefault     5s"), "{all}");
    }

    #[test]
    fn warnings() {
        assert_eq!(
            warning_lines(&["bad.yaml: document 1: spec: missing".into()]),
            ["Warning: bad.yaml: document 1: spec: missing"]
        );
    }
}
