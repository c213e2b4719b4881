//! imagePullSecrets → registry credentials, as kubelet's credential keyring reads them
//! (`pkg/credentialprovider`): Secrets of type `kubernetes.io/dockerconfigjson`
//! (`.dockerconfigjson`: `{"auths": {...}}`) or `kubernetes.io/dockercfg` (`.dockercfg`: the
//! bare map), each entry keyed by a registry host, optionally with a scheme and a path.
//! An entry matches an image whose registry host equals the key's host (a `*.` glob matches
//! one subdomain level) and whose repository path starts with the key's path. Candidates are
//! returned in the pod's secret order, the longest path first within a secret, for the
//! puller to try one after the other.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Pod, Secret};
use serde::Deserialize;

use crate::image::PullAuth;

#[derive(Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(Deserialize, Default)]
struct Entry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
    #[serde(default)]
    identitytoken: String,
    #[serde(default)]
    registrytoken: String,
}

/// The credentials of the pod's imagePullSecrets that match `domain`/`path` (an image's
/// registry host and repository path), and a warning for each secret that is missing or
/// unreadable (kubelet goes on without it).
pub fn pull_credentials(
    pod: &Pod,
    secrets: &BTreeMap<String, Secret>,
    domain: &str,
    path: &str,
) -> (Vec<PullAuth>, Vec<String>) {
    let mut creds = Vec::new();
    let mut warnings = Vec::new();
    let refs = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.as_ref())
        .into_iter()
        .flatten();
    for r in refs {
        let name = r.name.as_str();
        let Some(secret) = secrets.get(name) else {
            warnings.push(format!(
                "Unable to retrieve some image pull secrets ({name}); attempting to pull the image may not succeed."
            ));
            continue;
        };
        match entries(secret) {
            Ok(map) => {
                let mut matching: Vec<(usize, PullAuth)> = map
                    .into_iter()
                    .filter_map(|(key, e)| {
                        let key_path_len = matches(&key, domain, path)?;
                        Some((key_path_len, to_auth(e)))
                    })
                    .collect();
                matching.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
                creds.extend(matching.into_iter().map(|(_, a)| a));
            }
            Err(e) => warnings.push(format!("image pull secret {name}: {e}")),
        }
    }
    (creds, warnings)
}

fn secret_bytes(s: &Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(v) = s.data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.0.clone());
    }
    // stringData is merged into data by the API server; a manifest may carry either.
    s.string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.as_bytes().to_vec())
}

fn entries(s: &Secret) -> Result<BTreeMap<String, Entry>, String> {
    let ty = s.type_.as_deref().unwrap_or("Opaque");
    match ty {
        "kubernetes.io/dockerconfigjson" => {
            let raw = secret_bytes(s, ".dockerconfigjson")
                .ok_or("type kubernetes.io/dockerconfigjson without a .dockerconfigjson key")?;
            serde_json::from_slice::<DockerConfigJson>(&raw)
                .map(|c| c.auths)
                .map_err(|e| format!(".dockerconfigjson: {e}"))
        }
        "kubernetes.io/dockercfg" => {
            let raw = secret_bytes(s, ".dockercfg")
                .ok_or("type kubernetes.io/dockercfg without a .dockercfg key")?;
            serde_json::from_slice(&raw).map_err(|e| format!(".dockercfg: {e}"))
        }
        other => Err(format!(
            "type {other} is not kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg"
        )),
    }
}

fn to_auth(e: Entry) -> PullAuth {
    let (mut username, mut password) = (e.username, e.password);
    if username.is_empty() && !e.auth.is_empty() {
        if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(e.auth.trim()) {
            let s = String::from_utf8_lossy(&raw);
            if let Some((u, p)) = s.split_once(':') {
                username = u.to_string();
                password = p.to_string();
            }
        }
    }
    PullAuth {
        username,
        password,
        identity_token: e.identitytoken,
        registry_token: e.registrytoken,
    }
}

/// Docker Hub's many names for itself.
fn canonical_host(h: &str) -> &str {
    match h {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        h => h,
    }
}

/// Whether the key `key` matches the image at `domain`/`path`; the length of the key's path
/// (a longer one is more specific) when it does.
fn matches(key: &str, domain: &str, path: &str) -> Option<usize> {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (host, kpath) = match k.split_once('/') {
        Some((h, p)) => (h, p.trim_end_matches('/')),
        None => (k, ""),
    };
    // Docker's legacy `https://index.docker.io/v1/` keys name the registry, not a path.
    let kpath = match kpath {
        "v1" | "v2" => "",
        p => p,
    };
    let host = canonical_host(&host.to_ascii_lowercase()).to_string();
    let domain = canonical_host(&domain.to_ascii_lowercase()).to_string();
    let host_ok = match host.strip_prefix("*.") {
        Some(suffix) => domain
            .strip_suffix(suffix)
            .and_then(|d| d.strip_suffix('.'))
            .is_some_and(|sub| !sub.is_empty() && !sub.contains('.')),
        None => host == domain,
    };
    if !host_ok {
        return None;
    }
    let path_ok = kpath.is_empty()
        || path == kpath
        || path
            .strip_prefix(kpath)
            .is_some_and(|rest| rest.starts_with('/'));
    path_ok.then_some(kpath.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{LocalObjectReference, PodSpec};
    use k8s_openapi::ByteString;

    fn secret(ty: &str, key: &str, json: &str) -> Secret {
        Secret {
            type_: Some(ty.into()),
            data: Some(BTreeMap::from([(
                key.to_string(),
                ByteString(json.as_bytes().to_vec()),
            )])),
            ..Default::default()
        }
    }

    fn pod(names: &[&str]) -> Pod {
        Pod {
            spec: Some(PodSpec {
                image_pull_secrets: Some(
                    names
                        .iter()
                        .map(|n| LocalObjectReference {
                            name: n.to_string(),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn dockerconfigjson_entries_match_host_and_path() {
        let s = secret(
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            r#"{"auths": {
                "127.0.0.1:5000": {"auth": "dGVzdGVyOnMzY3JldA=="},
                "https://127.0.0.1:5000/team/": {"username": "team", "password": "pw"},
                "other:5000": {"username": "x", "password": "y"}
            }}"#,
        );
        let secrets = BTreeMap::from([("reg".to_string(), s)]);
        let (c, w) = pull_credentials(&pod(&["reg"]), &secrets, "127.0.0.1:5000", "team/app");
        assert!(w.is_empty());
        let users: Vec<_> = c
            .iter()
            .map(|a| (a.username.as_str(), a.password.as_str()))
            .collect();
        // The more specific path first.
        assert_eq!(users, vec![("team", "pw"), ("tester", "s3cret")]);
        let (c, _) = pull_credentials(&pod(&["reg"]), &secrets, "127.0.0.1:5000", "teams/app");
        assert_eq!(c.len(), 1);
        let (c, _) = pull_credentials(&pod(&["reg"]), &secrets, "elsewhere", "a");
        assert!(c.is_empty());
    }

    #[test]
    fn docker_hub_aliases_globs_and_dockercfg() {
        let s = secret(
            "kubernetes.io/dockercfg",
            ".dockercfg",
            r#"{"https://index.docker.io/v1/": {"username": "hub", "password": "p"},
                "*.example.test": {"username": "glob", "password": "p"}}"#,
        );
        let secrets = BTreeMap::from([("cfg".to_string(), s)]);
        let p = pod(&["cfg"]);
        let (c, _) = pull_credentials(&p, &secrets, "docker.io", "library/busybox");
        assert_eq!(c[0].username, "hub");
        let (c, _) = pull_credentials(&p, &secrets, "r.example.test", "x");
        assert_eq!(c[0].username, "glob");
        let (c, _) = pull_credentials(&p, &secrets, "a.b.example.test", "x");
        assert!(c.is_empty(), "a glob matches one level only");
    }

    #[test]
    fn missing_and_wrong_secrets_are_warnings() {
        let secrets = BTreeMap::from([("opaque".to_string(), secret("Opaque", "x", "{}"))]);
        let (c, w) = pull_credentials(&pod(&["nope", "opaque"]), &secrets, "d", "p");
        assert!(c.is_empty());
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("(nope)"), "{w:?}");
        assert!(w[1].contains("type Opaque"), "{w:?}");
    }

    #[test]
    fn string_data_is_read_too() {
        let s = Secret {
            type_: Some("kubernetes.io/dockerconfigjson".into()),
            string_data: Some(BTreeMap::from([(
                ".dockerconfigjson".to_string(),
                r#"{"auths": {"r:1": {"username": "u", "password": "p"}}}"#.to_string(),
            )])),
            ..Default::default()
        };
        let secrets = BTreeMap::from([("s".to_string(), s)]);
        let (c, _) = pull_credentials(&pod(&["s"]), &secrets, "r:1", "a/b");
        assert_eq!(c.len(), 1);
    }
}
