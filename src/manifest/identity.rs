//! Identity of static pods: the key (namespace/name), the UID derived from the manifest, and the
//! hash that says whether an edited manifest changed the pod.
//!
//! kubelet (pkg/kubelet/config/common.go, `applyDefaults`) gives a static pod without a
//! `metadata.uid` the UID `hex(md5("host:" + nodeName + "file:" + path + DeepHashObject(pod)))`,
//! so the same file on the same node always gives the same UID, and any change to the decoded
//! pod, or moving it to another file, gives a new one. peapod reproduces the inputs and their
//! order (node name, then source path, then the pod) and the form (32 lower-case hex digits, the
//! length of an MD5), and keeps a UID the manifest sets itself, as kubelet does. It differs in:
//! - the pod's bytes: Go's DeepHashObject prints the Go struct with go-spew, which cannot be
//!   reproduced outside Go; peapod hashes the pod's JSON as k8s-openapi writes it. That form is
//!   canonical (fields in a fixed order, maps sorted by key, no whitespace), so formatting,
//!   comments, key order and YAML-vs-JSON do not change the UID, and any value does;
//! - the hash: the first 128 bits of SHA-256 instead of MD5 (no MD5 in the dependency tree);
//! - defaults: kubelet hashes the pod after the API scheme's defaults (so writing
//!   `restartPolicy: Always` or leaving it out is the same pod) and before the namespace
//!   default; peapod hashes the pod as written plus the namespace default (so `namespace:
//!   default` written or not is the same pod, and an explicit API default is a change).
//!
//! UIDs are therefore not kubelet's, and need not be: no API server compares them.

use std::fmt;
use std::io::Write;
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The namespace of an object that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// kubelet's annotation holding a static pod's UID (`kubetypes.ConfigHashAnnotationKey`).
pub const CONFIG_HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
/// kubelet's annotation naming a pod's source (`kubetypes.ConfigSourceAnnotationKey`).
pub const CONFIG_SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
/// The value of [`CONFIG_SOURCE_ANNOTATION`] for pods from a manifest directory.
pub const FILE_SOURCE: &str = "file";

/// namespace/name of an object: a static pod's identity, and how pods find their ConfigMaps and
/// Secrets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of an object's metadata, with the namespace defaulted.
    pub fn of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Self {
        ObjectKey {
            namespace: meta
                .namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A pod's identity: namespace/name.
pub fn pod_key(pod: &Pod) -> ObjectKey {
    ObjectKey::of(&pod.metadata)
}

/// The static pod UID of `pod` read from `source` on node `node_name`: the manifest's own
/// `metadata.uid` if it sets one, else the content hash described in the module docs.
pub fn static_uid(pod: &Pod, source: &Path, node_name: &str) -> String {
    if let Some(uid) = pod.metadata.uid.as_deref().filter(|u| !u.is_empty()) {
        return uid.to_string();
    }
    let mut hasher = Sha256::new();
    hasher.update(format!("host:{node_name}"));
    hasher.update(b"file:");
    hasher.update(source.as_os_str().as_encoded_bytes());
    write_canonical(&mut hasher, pod);
    hex::encode(&hasher.finalize()[..16])
}

/// A hash of everything in a pod that, when edited, makes it a different pod: name, namespace,
/// labels, annotations (minus kubelet's own `kubernetes.io/config.*`) and the whole spec. Status,
/// UID, resourceVersion and the other server-set metadata are left out, as is the source path,
/// so a file that is rewritten with the same content (or touched) leaves the pod alone and any
/// real change, however small, is seen (kubernetes#109596: a changed manifest must replace the
/// pod, never be missed or compared by mtime).
pub fn spec_hash(pod: &Pod) -> String {
    let meta = &pod.metadata;
    // An empty map and an absent one are the same pod.
    let annotations: Option<std::collections::BTreeMap<&String, &String>> = meta
        .annotations
        .as_ref()
        .map(|a| {
            a.iter()
                .filter(|(k, _)| !k.starts_with("kubernetes.io/config."))
                .collect::<std::collections::BTreeMap<_, _>>()
        })
        .filter(|a| !a.is_empty());
    let labels = meta.labels.as_ref().filter(|l| !l.is_empty());
    let key = pod_key(pod);
    let view = serde_json::json!({
        "name": key.name,
        "namespace": key.namespace,
        "labels": labels,
        "annotations": annotations,
        "spec": pod.spec,
    });
    let mut hasher = Sha256::new();
    write_canonical(&mut hasher, &view);
    hex::encode(hasher.finalize())
}

/// kubelet's `applyDefaults` for a file source, for the parts that mean something without an
/// API server: the UID (kept if the manifest sets one), the namespace default, `spec.nodeName`
/// and the config hash/source annotations. kubelet also renames the pod to `name-nodename` for
/// its mirror pod (peapod has none, the key stays namespace/name) and adds a NoExecute
/// toleration (peapod has no taints). Returns the UID.
pub fn apply_static_defaults(pod: &mut Pod, source: &Path, node_name: &str) -> String {
    if pod.metadata.namespace.as_deref().is_none_or(str::is_empty) {
        pod.metadata.namespace = Some(DEFAULT_NAMESPACE.to_string());
    }
    let uid = static_uid(pod, source, node_name);
    pod.metadata.uid = Some(uid.clone());
    let annotations = pod
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    annotations.insert(CONFIG_HASH_ANNOTATION.to_string(), uid.clone());
    annotations.insert(
        CONFIG_SOURCE_ANNOTATION.to_string(),
        FILE_SOURCE.to_string(),
    );
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = Some(node_name.to_string());
    }
    uid
}

/// Feeds the canonical JSON of `value` to the hasher. The k8s-openapi types always serialize
/// (string map keys, no fallible custom serializers); should one ever fail, its Debug form,
/// also deterministic, is hashed instead so the result is still a function of the content.
fn write_canonical(hasher: &mut Sha256, value: &(impl Serialize + fmt::Debug)) {
    let mut json = Vec::new();
    if serde_json::to_writer(&mut json, value).is_err() {
        json.clear();
        let _ = write!(json, "{value:?}");
    }
    hasher.update(&json);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse::parse;
    use crate::manifest::Object;

    fn pod(yaml: &str) -> Pod {
        let docs = parse(Path::new("p.yaml"), yaml.as_bytes()).expect("parses");
        match docs.into_iter().next().map(|d| d.object) {
            Some(Object::Pod(p)) => *p,
            other => panic!("not a pod: {other:?}"),
        }
    }

    const BASE: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {a: b, c: d}\nspec:\n  containers:\n  - name: c\n    image: nginx:1.27\n";

    #[test]
    fn uid_is_stable_across_formatting_and_changes_with_content() {
        let src = Path::new("/etc/peapod/manifests/web.yaml");
        let base = static_uid(&pod(BASE), src, "node1");
        assert_eq!(base.len(), 32);
        assert!(base.bytes().all(|b| b.is_ascii_hexdigit()));

        let reformatted = "# a comment\napiVersion:   v1\nkind: Pod\n\nmetadata:\n    labels:\n        c: d\n        a: b\n    name: web   # same\nspec:\n    containers:\n      - image: \"nginx:1.27\"\n        name: c\n";
        let json = r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web","labels":{"c":"d","a":"b"}},"spec":{"containers":[{"name":"c","image":"nginx:1.27"}]}}"#;
        let cases: &[(&str, &str, &str, bool)] = &[
            ("same text", BASE, "node1", true),
            (
                "whitespace, comments, key order",
                reformatted,
                "node1",
                true,
            ),
            ("JSON of the same pod", json, "node1", true),
            (
                "image changed",
                &BASE.replace("nginx:1.27", "nginx:1.28"),
                "node1",
                false,
            ),
            (
                "label changed",
                &BASE.replace("c: d", "c: e"),
                "node1",
                false,
            ),
            ("other node", BASE, "node2", false),
        ];
        for (what, text, node, same) in cases {
            let uid = static_uid(&pod(text), src, node);
            assert_eq!(uid == base, *same, "{what}");
        }
        assert_ne!(
            static_uid(
                &pod(BASE),
                Path::new("/etc/peapod/manifests/other.yaml"),
                "node1"
            ),
            base,
            "kubelet's UID includes the source file"
        );
    }

    #[test]
    fn uid_set_by_the_manifest_is_kept() {
        let p = pod(&BASE.replace("  name: web\n", "  name: web\n  uid: my-uid\n"));
        assert_eq!(static_uid(&p, Path::new("x"), "n"), "my-uid");
    }

    #[test]
    fn spec_hash_sees_spec_and_metadata_changes_only() {
        let base = spec_hash(&pod(BASE));
        let same: &[&str] = &[
            BASE,
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default, labels: {c: d, a: b}}\nspec: {containers: [{name: c, image: 'nginx:1.27'}]}\n",
        ];
        for text in same {
            assert_eq!(spec_hash(&pod(text)), base, "{text}");
        }
        let changed: &[&str] = &[
            &BASE.replace("nginx:1.27", "nginx:1.28"),
            &BASE.replace("c: d", "c: x"),
            &BASE.replace("  name: web\n", "  name: web\n  namespace: other\n"),
            &BASE.replace("  name: web\n", "  name: web\n  annotations: {x: y}\n"),
            &format!("{BASE}    args: [a]\n"),
        ];
        for text in changed {
            assert_ne!(spec_hash(&pod(text)), base, "{text}");
        }
        // kubelet's own annotations and the UID are not part of the pod's content.
        let mut p = pod(BASE);
        apply_static_defaults(&mut p, Path::new("/m/web.yaml"), "node1");
        let mut q = p.clone();
        if let Some(s) = q.spec.as_mut() {
            s.node_name = None;
        }
        assert_eq!(spec_hash(&q), base);
    }

    #[test]
    fn static_defaults() {
        let mut p = pod(BASE);
        let uid = apply_static_defaults(&mut p, Path::new("/m/web.yaml"), "node1");
        assert_eq!(p.metadata.uid.as_deref(), Some(uid.as_str()));
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        let ann = p.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(ann.get(CONFIG_HASH_ANNOTATION), Some(&uid));
        assert_eq!(
            ann.get(CONFIG_SOURCE_ANNOTATION).map(String::as_str),
            Some("file")
        );
        assert_eq!(
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()),
            Some("node1")
        );
        assert_eq!(pod_key(&p).to_string(), "default/web");
    }
}
