//! Decoding a manifest file into API objects.
//!
//! A file is JSON (a `.json` file, or one whose first character is `{`) or YAML, several
//! documents separated by `---`. As in kubelet (pkg/kubelet/config/common.go), every document is
//! first turned into a JSON value and then decoded into the typed object, so YAML means exactly
//! what the same JSON would (`containerPort: "80"` is a string, and refused, as the API server
//! refuses it). Each document, or each item of a v1 `List`, is dispatched by apiVersion/kind.
//!
//! Decoding stops at the first wrong field of a document (the decoder cannot go on past it) but
//! goes on with the next document, so one pass reports one error per bad document. Fields the
//! v1 API does not have are reported by comparing the input with what the typed object writes
//! back: anything that did not survive the round trip was dropped by the decoder.

use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{FieldError, ManifestError, Reason};

/// An object a manifest may hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Pod(Box<Pod>),
    ConfigMap(Box<ConfigMap>),
    Secret(Box<Secret>),
}

impl Object {
    /// The object's kind, as written in manifests.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Pod(_) => "Pod",
            Object::ConfigMap(_) => "ConfigMap",
            Object::Secret(_) => "Secret",
        }
    }

    pub fn metadata(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            Object::Pod(p) => &p.metadata,
            Object::ConfigMap(c) => &c.metadata,
            Object::Secret(s) => &s.metadata,
        }
    }
}

/// One object of a file and where it was.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// 1-based document number in the file (empty documents are counted, not returned).
    pub document: usize,
    /// The index in the list's `items` when the document is a `List`.
    pub item: Option<usize>,
    pub object: Object,
}

/// Decodes a file: every object it holds, or every error found. `file` names the file in
/// errors and chooses the format (`.json` is JSON). Never panics, whatever the bytes.
pub fn parse(file: &Path, bytes: &[u8]) -> Result<Vec<Document>, Vec<ManifestError>> {
    let values = split(file, bytes).map_err(|e| vec![e])?;
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for (document, value) in values {
        let mut fail = |reason: Failure| errors.push(reason.into_error(file, document));
        decode_document(value, document, &mut docs, &mut fail);
    }
    if errors.is_empty() {
        Ok(docs)
    } else {
        Err(errors)
    }
}

/// The documents of a file as JSON values, numbered from 1, empty ones left out.
fn split(file: &Path, bytes: &[u8]) -> Result<Vec<(usize, Value)>, ManifestError> {
    let syntax = |document, reason: String| ManifestError::Syntax {
        file: file.to_path_buf(),
        document,
        reason,
    };
    if is_json(file, bytes) {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| syntax(1, e.to_string()))?;
        return Ok(vec![(1, value)]);
    }
    let mut values = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_slice(bytes).enumerate() {
        // After a syntax error the YAML reader repeats it forever: stop at the first.
        let mut value = Value::deserialize(de).map_err(|e| syntax(i + 1, e.to_string()))?;
        octal_modes(&mut value);
        if !value.is_null() {
            values.push((i + 1, value));
        }
    }
    Ok(values)
}

/// File modes written the YAML 1.1 way (`defaultMode: 0400`), as every Kubernetes example
/// writes them: Kubernetes' YAML reader (YAML 1.1) reads them as octal numbers, serde_yaml_ng
/// (YAML 1.2) as strings, which the typed decoder would refuse. Only the mode fields are
/// converted; anywhere else a leading-zero number stays a string, as YAML 1.2 says.
fn octal_modes(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if let (true, Value::String(s)) = (key == "defaultMode" || key == "mode", &*v) {
                    let octal = s.len() > 1
                        && s.starts_with('0')
                        && s.bytes().all(|b| (b'0'..=b'7').contains(&b));
                    if let (true, Ok(n)) = (octal, i64::from_str_radix(s, 8)) {
                        *v = Value::from(n);
                    }
                } else {
                    octal_modes(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(octal_modes),
        _ => {}
    }
}

fn is_json(file: &Path, bytes: &[u8]) -> bool {
    let ext_json = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    ext_json || bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// A problem with one object, before it is placed in its file and document.
enum Failure {
    Field(FieldError),
    Kind {
        path: String,
        api_version: String,
        kind: String,
    },
}

impl Failure {
    fn into_error(self, file: &Path, document: usize) -> ManifestError {
        match self {
            Failure::Field(field) => ManifestError::Field {
                file: file.to_path_buf(),
                document,
                field,
            },
            Failure::Kind {
                path,
                api_version,
                kind,
            } => ManifestError::UnsupportedKind {
                file: file.to_path_buf(),
                document,
                path,
                api_version,
                kind,
            },
        }
    }
}

/// The list kinds accepted, and the kind their items have when they do not say.
const LISTS: &[(&str, Option<&str>)] = &[
    ("List", None),
    ("PodList", Some("Pod")),
    ("ConfigMapList", Some("ConfigMap")),
    ("SecretList", Some("Secret")),
];

fn decode_document(
    value: Value,
    document: usize,
    docs: &mut Vec<Document>,
    fail: &mut impl FnMut(Failure),
) {
    let (api_version, kind) = match type_meta(&value, "", None) {
        Ok(t) => t,
        Err(f) => return fail(f),
    };
    let Some(&(_, item_kind)) = LISTS
        .iter()
        .find(|(k, _)| api_version == "v1" && *k == kind)
    else {
        match decode_object(value, &api_version, &kind, "") {
            Ok(object) => docs.push(Document {
                document,
                item: None,
                object,
            }),
            Err(f) => fail(f),
        }
        return;
    };
    let items = match value {
        Value::Object(mut map) => map.remove("items"),
        _ => None,
    };
    let items = match items {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return fail(Failure::Field(FieldError::new(
                "items",
                Reason::Decode(format!(
                    "invalid type: {}, expected a list",
                    describe(&other)
                )),
            )))
        }
    };
    for (i, item) in items.into_iter().enumerate() {
        let prefix = format!("items[{i}]");
        let (api_version, kind) = match type_meta(&item, &prefix, item_kind) {
            Ok(t) => t,
            Err(f) => {
                fail(f);
                continue;
            }
        };
        if LISTS.iter().any(|(k, _)| *k == kind) {
            // A list inside a list is not an object kubectl or kubelet accepts either.
            fail(Failure::Kind {
                path: prefix,
                api_version,
                kind,
            });
            continue;
        }
        match decode_object(item, &api_version, &kind, &prefix) {
            Ok(object) => docs.push(Document {
                document,
                item: Some(i),
                object,
            }),
            Err(f) => fail(f),
        }
    }
}

/// apiVersion and kind of an object. Items of a typed list may leave them out (`default_kind`).
fn type_meta(
    value: &Value,
    prefix: &str,
    default_kind: Option<&str>,
) -> Result<(String, String), Failure> {
    let Value::Object(map) = value else {
        return Err(Failure::Field(FieldError::new(
            prefix,
            Reason::Decode(format!(
                "invalid type: {}, expected an object with apiVersion and kind",
                describe(value)
            )),
        )));
    };
    let field = |name: &str, default: Option<&str>| match map.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        None | Some(Value::Null) => default
            .map(str::to_string)
            .ok_or_else(|| Failure::Field(FieldError::new(join(prefix, name), Reason::Required))),
        Some(Value::String(_)) => Err(Failure::Field(FieldError::new(
            join(prefix, name),
            Reason::Required,
        ))),
        Some(other) => Err(Failure::Field(FieldError::new(
            join(prefix, name),
            Reason::Decode(format!(
                "invalid type: {}, expected a string",
                describe(other)
            )),
        ))),
    };
    let api_version = field("apiVersion", default_kind.map(|_| "v1"))?;
    let kind = field("kind", default_kind)?;
    Ok((api_version, kind))
}

fn decode_object(
    value: Value,
    api_version: &str,
    kind: &str,
    prefix: &str,
) -> Result<Object, Failure> {
    match (api_version, kind) {
        ("v1", "Pod") => decode::<Pod>(value, prefix).map(|p| Object::Pod(Box::new(p))),
        ("v1", "ConfigMap") => {
            decode::<ConfigMap>(value, prefix).map(|c| Object::ConfigMap(Box::new(c)))
        }
        ("v1", "Secret") => decode::<Secret>(value, prefix).map(|s| Object::Secret(Box::new(s))),
        _ => Err(Failure::Kind {
            path: prefix.to_string(),
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        }),
    }
}

/// Decodes one object, naming the path of the first wrong field, then refuses the fields the
/// decoder dropped.
fn decode<T: DeserializeOwned + Serialize>(mut value: Value, prefix: &str) -> Result<T, Failure> {
    // Items of a typed list may leave apiVersion/kind out; the typed decoder does not mind, and
    // checks them when present (they were dispatched on, so they match).
    let object: T = match serde_path_to_error::deserialize(&value) {
        Ok(o) => o,
        Err(e) => {
            let mut path = render_path(e.path());
            let message = e.into_inner().to_string();
            // The decoder reports a missing field at its parent; name the field itself.
            let reason = match missing_field(&message) {
                Some(name) => {
                    path = join(&path, name);
                    Reason::Required
                }
                None => Reason::Decode(message),
            };
            return Err(Failure::Field(FieldError::new(join(prefix, &path), reason)));
        }
    };
    let written = serde_json::to_value(&object).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        // Dispatch already checked these; the typed objects always write them back anyway.
        map.remove("apiVersion");
        map.remove("kind");
    }
    let mut unknown = Vec::new();
    dropped_fields(&value, &written, prefix.to_string(), &mut unknown);
    match unknown.into_iter().next() {
        // One is enough to refuse the document; more would repeat the same typo's neighbours.
        Some(path) => Err(Failure::Field(FieldError::new(path, Reason::Unknown))),
        None => Ok(object),
    }
}

/// Paths of the keys in `input` that are not in `written`, the typed object's JSON. Values
/// are not compared (a Quantity written as a number comes back as a string); a `null` is not
/// a field.
fn dropped_fields(input: &Value, written: &Value, path: String, out: &mut Vec<String>) {
    match (input, written) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                if value.is_null() {
                    continue;
                }
                let child = join_key(&path, key);
                match b.get(key) {
                    Some(w) => dropped_fields(value, w, child, out),
                    None => out.push(child),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (value, w)) in a.iter().zip(b).enumerate() {
                dropped_fields(value, w, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// `spec.containers[0].name`. Map keys that are not identifiers (label keys like
/// `app.kubernetes.io/name`) are written `[key]`, as the API server writes them.
fn render_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => out = join_key(&out, key),
            Segment::Unknown => out = join(&out, "?"),
        }
    }
    out
}

fn join_key(path: &str, key: &str) -> String {
    let ident = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ident {
        join(path, key)
    } else {
        format!("{path}[{key}]")
    }
}

/// Joins two field paths (`a` + `b.c` = `a.b.c`, `a` + `[0]` = `a[0]`).
pub(crate) fn join(prefix: &str, path: &str) -> String {
    if prefix.is_empty() {
        path.to_string()
    } else if path.is_empty() {
        prefix.to_string()
    } else if path.starts_with('[') {
        format!("{prefix}{path}")
    } else {
        format!("{prefix}.{path}")
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "sequence",
        Value::Object(_) => "map",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(file: &str, text: &str) -> Vec<String> {
        match parse(Path::new(file), text.as_bytes()) {
            Ok(docs) => panic!("{file} parsed: {docs:?}"),
            Err(errs) => errs.iter().map(ToString::to_string).collect(),
        }
    }

    fn kinds(file: &str, text: &str) -> Vec<(usize, Option<usize>, &'static str, String)> {
        match parse(Path::new(file), text.as_bytes()) {
            Ok(docs) => docs
                .iter()
                .map(|d| {
                    let name = d.object.metadata().name.clone().unwrap_or_default();
                    (d.document, d.item, d.object.kind(), name)
                })
                .collect(),
            Err(errs) => panic!("{file}: {errs:?}"),
        }
    }

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\nspec:\n  containers:\n  - name: c\n    image: busybox\n";

    #[test]
    fn documents_and_lists() {
        let multi = format!(
            "---\n{POD}---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm}}\ndata: {{k: v}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\ndata: {{k: dg==}}\n...\n"
        );
        let json_list = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1"},"spec":{"containers":[{"name":"c","image":"x"}]}},
            {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm"}}]}"#;
        let pod_list = r#"{"apiVersion":"v1","kind":"PodList","items":[{"metadata":{"name":"p2"},"spec":{"containers":[{"name":"c","image":"x"}]}}]}"#;
        let yaml_list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: s}\n";
        type Want = Vec<(usize, Option<usize>, &'static str, &'static str)>;
        let table: &[(&str, &str, Want)] = &[
            ("a.yaml", POD, vec![(1, None, "Pod", "a")]),
            (
                "multi.yaml",
                &multi,
                vec![
                    // A leading `---` opens the first document; the comment-only one counts.
                    (1, None, "Pod", "a"),
                    (3, None, "ConfigMap", "cm"),
                    (4, None, "Secret", "s"),
                ],
            ),
            (
                "list.json",
                json_list,
                vec![(1, Some(0), "Pod", "p1"), (1, Some(1), "ConfigMap", "cm")],
            ),
            ("podlist.yml", pod_list, vec![(1, Some(0), "Pod", "p2")]),
            ("list.yaml", yaml_list, vec![(1, Some(0), "Secret", "s")]),
            ("empty.yaml", "", vec![]),
            ("comments.yaml", "# nothing\n---\n---\n", vec![]),
            (
                "empty-list.json",
                r#"{"apiVersion":"v1","kind":"List","items":[]}"#,
                vec![],
            ),
        ];
        for (file, text, want) in table {
            let want: Vec<_> = want
                .iter()
                .map(|(d, i, k, n)| (*d, *i, *k, n.to_string()))
                .collect();
            assert_eq!(kinds(file, text), want, "{file}");
        }
    }

    /// What `kubectl get pod -o yaml` prints (server-set metadata, status, quantities as
    /// numbers, empty objects) decodes without a false "unknown field".
    #[test]
    fn full_objects_have_no_unknown_fields() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  namespace: default\n  uid: '1234'\n  resourceVersion: '5'\n  creationTimestamp: '2024-01-01T00:00:00Z'\n  managedFields:\n  - manager: kubectl\n    operation: Update\n    fieldsType: FieldsV1\n    fieldsV1: {'f:spec': {}}\n  labels: {}\n  annotations: null\nspec:\n  containers:\n  - name: c\n    image: x\n    resources: {limits: {cpu: 1, memory: 1.5Gi}, requests: {}}\n    env: [{name: A, value: ''}]\n    securityContext: {capabilities: {add: [NET_ADMIN], drop: []}}\n    livenessProbe: {httpGet: {port: 8080, path: /}}\n  volumes: [{name: v, emptyDir: {}}]\n  tolerations: [{operator: Exists, effect: NoExecute}]\nstatus:\n  phase: Running\n  podIP: 10.0.0.1\n  conditions: [{type: Ready, status: 'True', lastTransitionTime: '2024-01-01T00:00:00Z'}]\n  containerStatuses:\n  - {name: c, image: x, imageID: '', ready: true, restartCount: 0, state: {running: {startedAt: '2024-01-01T00:00:00Z'}}}\n";
        let docs = parse(Path::new("full.yaml"), text.as_bytes());
        assert!(docs.is_ok(), "{docs:?}");
    }

    #[test]
    fn yaml_octal_modes() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers: [{name: c, image: x, env: [{name: A, value: '0400'}]}]\n  volumes:\n  - name: s\n    secret: {secretName: s, defaultMode: 0400, items: [{key: k, path: k, mode: 0644}]}\n";
        let docs = parse(Path::new("m.yaml"), text.as_bytes()).expect("parses");
        let Some(Object::Pod(p)) = docs.first().map(|d| &d.object) else {
            panic!("{docs:?}");
        };
        let spec = p.spec.clone().unwrap_or_default();
        let secret = spec.volumes.unwrap_or_default()[0]
            .secret
            .clone()
            .unwrap_or_default();
        assert_eq!(secret.default_mode, Some(0o400));
        assert_eq!(secret.items.unwrap_or_default()[0].mode, Some(0o644));
        let env = spec.containers[0].env.clone().unwrap_or_default();
        assert_eq!(
            env[0].value.as_deref(),
            Some("0400"),
            "only modes are octal"
        );
    }

    #[test]
    fn secret_data_is_base64() {
        let docs = parse(
            Path::new("s.yaml"),
            b"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: aGVsbG8=}\n",
        )
        .expect("parses");
        let Some(Object::Secret(s)) = docs.first().map(|d| &d.object) else {
            panic!("not a secret: {docs:?}");
        };
        let data = s.data.clone().unwrap_or_default();
        assert_eq!(data.get("k").map(|b| b.0.as_slice()), Some(&b"hello"[..]));
    }

    #[test]
    fn errors_name_file_document_and_path() {
        let deep = format!(
            "{POD}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: b}}\nspec:\n  containers:\n  - name: c\n    image: x\n    ports:\n    - containerPort: 80\n    - containerPort: eighty\n"
        );
        let table: &[(&str, &str, &[&str])] = &[
            (
                "pods.yaml",
                &deep,
                &["pods.yaml: document 2: spec.containers[0].ports[1].containerPort: invalid type: string \"eighty\", expected i32"],
            ),
            (
                "typo.yaml",
                &POD.replace("image: busybox", "image: busybox\n    imagePullPolicyy: Always"),
                &["typo.yaml: document 1: spec.containers[0].imagePullPolicyy: unknown field"],
            ),
            (
                "label.yaml",
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  labels: {app.kubernetes.io/name: 3}\n",
                &["label.yaml: document 1: metadata.labels[app.kubernetes.io/name]: invalid type: integer `3`, expected a string"],
            ),
            (
                "kind.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\nkind: Pod\n---\napiVersion: v1\n",
                &[
                    "kind.yaml: document 1: unsupported object apiVersion \"apps/v1\" kind \"Deployment\": supported are v1 Pod, ConfigMap, Secret",
                    "kind.yaml: document 2: apiVersion: missing field",
                    "kind.yaml: document 3: kind: missing field",
                ],
            ),
            (
                "list.json",
                r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Service"},{"apiVersion":"v1","kind":"Pod","metadata":{"name":7}}]}"#,
                &[
                    "list.json: document 1: items[0]: unsupported object apiVersion \"v1\" kind \"Service\": supported are v1 Pod, ConfigMap, Secret",
                    "list.json: document 1: items[1].metadata.name: invalid type: integer `7`, expected a string",
                ],
            ),
            (
                "scalar.yaml",
                "just a string\n",
                &["scalar.yaml: document 1: invalid type: string, expected an object with apiVersion and kind"],
            ),
            (
                "items.json",
                r#"{"apiVersion":"v1","kind":"List","items":{}}"#,
                &["items.json: document 1: items: invalid type: map, expected a list"],
            ),
        ];
        for (file, text, want) in table {
            assert_eq!(&errors(file, text), want, "{file}");
        }
    }

    #[test]
    fn syntax_errors() {
        for (file, text, prefix) in [
            ("bad.yaml", "a: [\n", "bad.yaml: document 1: "),
            ("bad.yaml", "{}\n", "bad.yaml: document 1: "),
            (
                "third.yaml",
                "apiVersion: v1\n---\napiVersion: v1\n---\n\tkey: : :\n  - x\n",
                "third.yaml: document 3: ",
            ),
            ("bad.json", "{\"a\": ", "bad.json: document 1: "),
            ("two.json", "{} {}", "two.json: document 1: "),
        ] {
            let errs = errors(file, text);
            assert!(
                errs.iter().any(|e| e.starts_with(prefix)),
                "{file}: {errs:?}"
            );
        }
    }

    /// Whatever the bytes, parse returns: garbage, every truncation of a valid file, binary,
    /// deep nesting and alias bombs.
    #[test]
    fn never_panics() {
        let valid = format!(
            "{POD}    ports: [{{containerPort: 80, name: http}}]\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\ndata: {{k: aGVsbG8=}}\nstringData: {{x: y}}\n"
        );
        let json = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"x"}]}}]}"#;
        for text in [valid.as_str(), json] {
            for cut in 0..=text.len() {
                for file in ["f.yaml", "f.json"] {
                    let _ = parse(Path::new(file), &text.as_bytes()[..cut]);
                }
            }
        }
        let mut garbage: Vec<Vec<u8>> = vec![
            vec![0xff, 0xfe, 0x00, 0x01],
            b"\x00\x00\x00".to_vec(),
            "[".repeat(100_000).into_bytes(),
            "{".repeat(100_000).into_bytes(),
            "- ".repeat(10_000).into_bytes(),
            b"a: &a [*a]\n".to_vec(),
            b"a: &a [1,2]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n".to_vec(),
            b"!!binary x\n".to_vec(),
            b"? [a]\n: b\n".to_vec(),
            b"apiVersion: v1\nkind: Pod\nspec: {containers: [{ports: [{containerPort: 99999999999}]}]}\n".to_vec(),
            b"apiVersion: v1\nkind: Pod\nspec: {containers: [{resources: {limits: {cpu: [1]}}}]}\n".to_vec(),
            b"apiVersion: v1\nkind: Secret\ndata: {k: '***'}\n".to_vec(),
            b"apiVersion: v1\nkind: Pod\nmetadata: {name: .inf}\nspec: .nan\n".to_vec(),
        ];
        // A simple deterministic generator, so a failure can be replayed.
        let mut x: u32 = 12345;
        for _ in 0..200 {
            let mut bytes = valid.clone().into_bytes();
            for _ in 0..8 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let at = (x as usize) % bytes.len();
                bytes[at] = (x >> 16) as u8;
            }
            garbage.push(bytes);
        }
        for bytes in &garbage {
            for file in ["g.yaml", "g.json"] {
                let _ = parse(Path::new(file), bytes);
            }
        }
    }
}
