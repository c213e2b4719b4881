//! `peapod get pods`: the local API's pods printed as kubectl prints them.

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

use super::client::{self, ClientError};
use super::pods::pods_table;

/// kubectl's `-o` formats that peapod prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Wide,
    Json,
    Yaml,
    Name,
}

impl Output {
    pub fn parse(s: Option<&str>) -> Result<Output, String> {
        Ok(match s {
            None => Output::Table,
            Some("wide") => Output::Wide,
            Some("json") => Output::Json,
            Some("yaml") => Output::Yaml,
            Some("name") => Output::Name,
            Some(other) => {
                return Err(format!(
                    "unable to match a printer suitable for the output format \"{other}\", \
                     allowed formats are: json,name,wide,yaml"
                ))
            }
        })
    }
}

/// What to print: stdout, and a note for stderr (kubectl's "No resources found").
pub struct Printed {
    pub stdout: String,
    pub stderr: Option<String>,
}

/// JSON as kubectl prints it: four-space indents and a final newline.
pub fn to_json(v: &serde_json::Value) -> String {
    use serde::Serialize;
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    // Serializing a Value into a Vec cannot fail.
    let _ = v.serialize(&mut ser);
    let mut s = String::from_utf8_lossy(&out).into_owned();
    s.push('\n');
    s
}

fn to_yaml(v: &serde_json::Value) -> String {
    serde_yaml_ng::to_string(v).unwrap_or_default()
}

/// `get pods [NAME]` in `namespace` (None: every namespace, `-A`).
pub async fn get_pods(
    socket: &Path,
    name: Option<&str>,
    namespace: Option<&str>,
    output: Output,
) -> Result<Printed, ClientError> {
    let path = match (name, namespace) {
        (Some(n), ns) => format!("/api/v1/namespaces/{}/pods/{n}", ns.unwrap_or("default")),
        (None, Some(ns)) => format!("/api/v1/namespaces/{ns}/pods"),
        (None, None) => "/api/v1/pods".to_string(),
    };
    let body = client::get(socket, &path).await?;
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ClientError::Http(e.to_string()))?;
    if matches!(output, Output::Json | Output::Yaml) {
        let stdout = if output == Output::Json {
            to_json(&value)
        } else {
            to_yaml(&value)
        };
        return Ok(Printed {
            stdout,
            stderr: None,
        });
    }
    let pods: Vec<Pod> = if name.is_some() {
        vec![serde_json::from_value(value).map_err(|e| ClientError::Http(e.to_string()))?]
    } else {
        let items = value.get("items").cloned().unwrap_or_default();
        serde_json::from_value(items).map_err(|e| ClientError::Http(e.to_string()))?
    };
    if pods.is_empty() {
        return Ok(Printed {
            stdout: String::new(),
            stderr: Some(match namespace {
                Some(ns) => format!("No resources found in {ns} namespace."),
                None => "No resources found".into(),
            }),
        });
    }
    let stdout = match output {
        Output::Name => pods
            .iter()
            .map(|p| format!("pod/{}\n", p.metadata.name.as_deref().unwrap_or_default()))
            .collect(),
        _ => pods_table(
            &pods,
            crate::kubelet::clock::system_wall(),
            output == Output::Wide,
            namespace.is_none(),
        ),
    };
    Ok(Printed {
        stdout,
        stderr: None,
    })
}
