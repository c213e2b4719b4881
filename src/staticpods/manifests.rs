//! `peapod apply` and `peapod delete` as edits of the manifest directory, so that a user
//! never needs to know where it is: the directory stays the one source of truth the manager
//! (source.rs) watches, and every change goes through it.
//!
//! A file is checked by the manifest parser before anything is written (a bad file is
//! refused, never half-applied), written atomically (a hidden temporary sibling, fsync,
//! rename: the manager never reads half a file), and only under a name the manager reads.
//! Deleting one object of a file that holds others rewrites the file without it.

// The error of a request is the API's Status, made once per request and sent as it is:
// its size (a few strings) costs nothing worth boxing it for.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::cli::status::ApiStatus;
use crate::manifest::{self, dir::Skip, Document, ManifestError, Object, ObjectKey};

/// One write at a time: two applies of one file, or a delete racing an apply, must not
/// interleave their read-compare-write.
static WRITES: Mutex<()> = Mutex::new(());

/// What `apply` did to one object, worded as kubectl's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Configured,
    Unchanged,
}

/// One object of an applied (or deleted) file: `pod/web created`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    /// kubectl's lower-case kind: pod, configmap, secret.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub action: Action,
}

/// The kinds a manifest holds, by their API resource name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pod,
    ConfigMap,
    Secret,
}

impl Kind {
    /// The kind of an API path's resource: `pods`, `configmaps`, `secrets`.
    pub fn from_resource(r: &str) -> Option<Kind> {
        Some(match r {
            "pods" => Kind::Pod,
            "configmaps" => Kind::ConfigMap,
            "secrets" => Kind::Secret,
            _ => return None,
        })
    }

    pub fn resource(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::ConfigMap => "configmaps",
            Kind::Secret => "secrets",
        }
    }

    fn of(o: &Object) -> Kind {
        match o {
            Object::Pod(_) => Kind::Pod,
            Object::ConfigMap(_) => Kind::ConfigMap,
            Object::Secret(_) => Kind::Secret,
        }
    }
}

/// Whether `name` may be written into the manifest directory: a plain file name (no `/`, no
/// `..`, not hidden) that the manager reads (`.yaml`, `.yml` or `.json`, not an editor's
/// temporary name).
pub fn check_file_name(name: &str) -> Result<(), ApiStatus> {
    let bad = |why: &str| {
        Err(ApiStatus::bad_request(format!(
            "invalid manifest file name {name:?}: {why}"
        )))
    };
    if name.is_empty() || name.contains('/') || name.contains('\0') {
        return bad("must be a file name without a directory");
    }
    if name.contains("..") {
        return bad("must not contain \"..\"");
    }
    match manifest::dir::classify(name) {
        None => Ok(()),
        Some(Skip::Hidden) => bad("must not start with \".\""),
        Some(Skip::Temporary) => bad("looks like a temporary file, which is not read"),
        Some(_) => bad("must end in .yaml, .yml or .json"),
    }
}

fn io_error(e: impl std::fmt::Display) -> ApiStatus {
    ApiStatus::internal(format!("the manifest directory: {e}"))
}

fn invalid(errors: &[ManifestError]) -> ApiStatus {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    ApiStatus::invalid(lines.join("\n"))
}

/// The objects of a good file: (kind, key, object).
fn objects(docs: &[Document]) -> Vec<(Kind, ObjectKey, &Object)> {
    docs.iter()
        .map(|d| {
            (
                Kind::of(&d.object),
                ObjectKey::of(d.object.metadata()),
                &d.object,
            )
        })
        .collect()
}

fn kind_word(k: Kind) -> &'static str {
    match k {
        Kind::Pod => "pod",
        Kind::ConfigMap => "configmap",
        Kind::Secret => "secret",
    }
}

/// Writes `body` as manifest `name` of `dir`, after checking it: what happened to each object.
pub fn apply(dir: &Path, name: &str, body: &[u8]) -> Result<Vec<Applied>, ApiStatus> {
    check_file_name(name)?;
    let docs = manifest::load(Path::new(name), body).map_err(|e| invalid(&e))?;
    let _g = WRITES.lock().unwrap_or_else(|e| e.into_inner());
    let path = dir.join(name);
    let scan = manifest::scan(dir).map_err(io_error)?;
    // Another file's object of the same name would be refused by the manager as a duplicate:
    // refuse it here, where the user sees why.
    for (kind, key, _) in objects(&docs) {
        for f in scan.files.iter().filter(|f| f.path != path) {
            let Ok(theirs) = &f.outcome else { continue };
            if objects(theirs)
                .iter()
                .any(|(k, o, _)| *k == kind && *o == key)
            {
                return Err(ApiStatus::failure(
                    409,
                    "Conflict",
                    format!(
                        "{} \"{}\" in namespace \"{}\" is defined by manifest {}: apply or delete that one",
                        kind.resource(),
                        key.name,
                        key.namespace,
                        f.path.file_name().unwrap_or_default().to_string_lossy()
                    ),
                ));
            }
        }
    }
    let old: Vec<Document> = scan
        .files
        .into_iter()
        .find(|f| f.path == path)
        .and_then(|f| f.outcome.ok())
        .unwrap_or_default();
    let old_objects = objects(&old);
    let applied = objects(&docs)
        .into_iter()
        .map(|(kind, key, obj)| {
            let action = match old_objects.iter().find(|(k, o, _)| *k == kind && *o == key) {
                None => Action::Created,
                Some((_, _, before)) if *before == obj => Action::Unchanged,
                Some(_) => Action::Configured,
            };
            Applied {
                kind: kind_word(kind).into(),
                namespace: key.namespace,
                name: key.name,
                action,
            }
        })
        .collect();
    let same = std::fs::read(&path).is_ok_and(|b| b == body);
    if !same {
        crate::fsutil::atomic_write(&path, body).map_err(io_error)?;
    }
    Ok(applied)
}

/// Removes manifest `name` of `dir`: the objects it held (none listed when it did not parse).
pub fn delete_file(dir: &Path, name: &str) -> Result<Vec<Applied>, ApiStatus> {
    check_file_name(name)?;
    let _g = WRITES.lock().unwrap_or_else(|e| e.into_inner());
    let path = dir.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiStatus::failure(
                404,
                "NotFound",
                format!("manifest \"{name}\" not found"),
            ))
        }
        Err(e) => return Err(io_error(e)),
    };
    let docs = manifest::load(&path, &bytes).unwrap_or_default();
    std::fs::remove_file(&path).map_err(io_error)?;
    Ok(objects(&docs)
        .into_iter()
        .map(|(kind, key, _)| Applied {
            kind: kind_word(kind).into(),
            namespace: key.namespace,
            name: key.name,
            action: Action::Unchanged,
        })
        .collect())
}

/// The API form of an object: its JSON with apiVersion and kind, as a manifest holds it.
fn object_json(o: &Object) -> serde_json::Value {
    let mut v = match o {
        Object::Pod(p) => serde_json::to_value(p),
        Object::ConfigMap(c) => serde_json::to_value(c),
        Object::Secret(s) => serde_json::to_value(s),
    }
    .unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), "v1".into());
        m.insert("kind".into(), o.kind().into());
    }
    v
}

/// A manifest of `objects`: YAML documents, or a JSON v1 List for a `.json` file.
pub fn render(path: &Path, objects: &[&Object]) -> Vec<u8> {
    let values: Vec<serde_json::Value> = objects.iter().map(|o| object_json(o)).collect();
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": values});
        let mut s = serde_json::to_string_pretty(&list).unwrap_or_default();
        s.push('\n');
        return s.into_bytes();
    }
    values
        .iter()
        .map(|v| serde_yaml_ng::to_string(v).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("---\n")
        .into_bytes()
}

/// Deletes object `kind` `namespace/name` from the manifest that defines it: the file goes
/// when it held only that object, else it is rewritten without it. The file it was in.
pub fn delete_object(
    dir: &Path,
    kind: Kind,
    namespace: &str,
    name: &str,
) -> Result<PathBuf, ApiStatus> {
    let _g = WRITES.lock().unwrap_or_else(|e| e.into_inner());
    let key = ObjectKey::new(namespace, name);
    let scan = manifest::scan(dir).map_err(io_error)?;
    let found = scan.files.iter().find_map(|f| {
        let docs = f.outcome.as_ref().ok()?;
        let objs = objects(docs);
        objs.iter()
            .any(|(k, o, _)| *k == kind && *o == key)
            .then(|| (f.path.clone(), objs))
    });
    let Some((path, objs)) = found else {
        return Err(ApiStatus::failure(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", kind.resource()),
        ));
    };
    let rest: Vec<&Object> = objs
        .iter()
        .filter(|(k, o, _)| !(*k == kind && *o == key))
        .map(|(_, _, o)| *o)
        .collect();
    if rest.is_empty() {
        std::fs::remove_file(&path).map_err(io_error)?;
    } else {
        crate::fsutil::atomic_write(&path, &render(&path, &rest)).map_err(io_error)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: app\n    image: busybox\n";
    const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: conf}\ndata: {a: b}\n";

    #[test]
    fn file_names() {
        for ok in ["web.yaml", "a.yml", "b.JSON", "x-y_z.1.yaml"] {
            assert!(check_file_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".web.yaml",
            "a/b.yaml",
            "../b.yaml",
            "a..yaml",
            "web.txt",
            "web.yaml~",
            "web.swp",
            "web",
        ] {
            let e = check_file_name(bad).unwrap_err();
            assert_eq!(e.code, 400, "{bad}: {e:?}");
        }
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "peapod-manifests-{tag}-{}-{}",
            std::process::id(),
            crate::fsutil::new_id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn actions(v: &[Applied]) -> Vec<String> {
        v.iter()
            .map(|a| format!("{}/{} {:?}", a.kind, a.name, a.action))
            .collect()
    }

    #[test]
    fn apply_creates_configures_and_leaves_unchanged() {
        let d = tmpdir("apply");
        let both = format!("{POD}---\n{CM}");
        let a = apply(&d, "web.yaml", both.as_bytes()).unwrap();
        assert_eq!(actions(&a), ["pod/web Created", "configmap/conf Created"]);
        let a = apply(&d, "web.yaml", both.as_bytes()).unwrap();
        assert_eq!(
            actions(&a),
            ["pod/web Unchanged", "configmap/conf Unchanged"]
        );
        let edited = both.replace("busybox", "busybox:1");
        let a = apply(&d, "web.yaml", edited.as_bytes()).unwrap();
        assert_eq!(
            actions(&a),
            ["pod/web Configured", "configmap/conf Unchanged"]
        );
        assert_eq!(std::fs::read_to_string(d.join("web.yaml")).unwrap(), edited);
        // The same pod from another file is refused, and nothing written.
        let e = apply(&d, "other.yaml", POD.as_bytes()).unwrap_err();
        assert_eq!(e.code, 409, "{e:?}");
        assert!(!d.join("other.yaml").exists());
        // A bad file is refused with the parser's message, and nothing written.
        let e = apply(&d, "bad.yaml", b"apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: a}], bogus: 1}\n").unwrap_err();
        assert_eq!(e.code, 422);
        assert!(
            e.message.starts_with("bad.yaml: document 1: "),
            "{}",
            e.message
        );
        assert!(!d.join("bad.yaml").exists());
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["web.yaml"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn deleting_one_object_rewrites_the_file_and_the_last_removes_it() {
        let d = tmpdir("delete");
        apply(&d, "web.yaml", format!("{POD}---\n{CM}").as_bytes()).unwrap();
        let e = delete_object(&d, Kind::Pod, "default", "nosuch").unwrap_err();
        assert_eq!(e.message, "pods \"nosuch\" not found");
        delete_object(&d, Kind::Pod, "default", "web").unwrap();
        let text = std::fs::read(d.join("web.yaml")).unwrap();
        let docs = manifest::load(Path::new("web.yaml"), &text).unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].object.kind(), "ConfigMap");
        delete_object(&d, Kind::ConfigMap, "default", "conf").unwrap();
        assert!(!d.join("web.yaml").exists());
        assert_eq!(delete_file(&d, "web.yaml").unwrap_err().code, 404);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_json_file_is_rewritten_as_a_list() {
        let pod = |n: &str| {
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": n},
                "spec": {"containers": [{"name": "a", "image": "busybox"}]}})
        };
        let list =
            serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [pod("a"), pod("b")]});
        let d = tmpdir("json");
        apply(&d, "p.json", list.to_string().as_bytes()).unwrap();
        delete_object(&d, Kind::Pod, "default", "a").unwrap();
        let text = std::fs::read(d.join("p.json")).unwrap();
        let docs = manifest::load(Path::new("p.json"), &text).unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].object.metadata().name.as_deref(), Some("b"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
