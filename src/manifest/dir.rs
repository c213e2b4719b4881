//! Reading a manifest directory.
//!
//! As kubelet's file source (pkg/kubelet/config/file.go): the directory's entries sorted by
//! name, hidden ones (leading `.`) skipped, symlinks followed, directories not recursed into,
//! anything but a regular file skipped, and a file that fails skipped on its own without
//! affecting the others. Unlike kubelet, which reads every file and logs the editor's swap
//! and backup files as broken manifests, only `.yaml`, `.yml` and `.json` files are read: an
//! editor's temporary files (`pod.yaml~`, `.pod.yaml.swp`, `#pod.yaml#`, vim's `4913` probe,
//! `*.tmp` of atomic writers) never look like a half-written pod, and a README beside the
//! manifests is not an error. Writers that want a file seen only once complete should write a
//! hidden or `.tmp` name and rename it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};

use super::error::ManifestError;
use super::identity::ObjectKey;
use super::parse::{Document, Object};

/// The largest file read. The API server stores objects of at most 1.5 MiB; a bigger file is
/// not a manifest, and is refused before it is read into memory.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// Why a directory entry is not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Leading `.`: hidden, as kubelet skips it (and where atomic writers put temp files).
    Hidden,
    /// An editor's or writer's temporary file.
    Temporary,
    /// Not `.yaml`, `.yml` or `.json`.
    NotManifest,
    /// A directory, socket, device or other non-regular file.
    NotRegularFile,
}

/// Whether a file of this name is read, and why not.
pub fn classify(name: &str) -> Option<Skip> {
    if name.starts_with('.') {
        return Some(Skip::Hidden);
    }
    let temporary = name.ends_with('~')
        || (name.starts_with('#') && name.ends_with('#'))
        || name == "4913"
        || [".swp", ".swx", ".tmp"]
            .iter()
            .any(|ext| name.to_ascii_lowercase().ends_with(ext));
    if temporary {
        return Some(Skip::Temporary);
    }
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("yaml" | "yml" | "json") => None,
        _ => Some(Skip::NotManifest),
    }
}

/// The outcome of one file: its objects, or its errors (then none of its objects count).
#[derive(Debug)]
pub struct FileScan {
    pub path: PathBuf,
    pub outcome: Result<Vec<Document>, Vec<ManifestError>>,
}

/// A directory entry not read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub why: Skip,
}

/// Everything a manifest directory holds.
#[derive(Debug, Default)]
pub struct Scan {
    /// Every file read, sorted by name.
    pub files: Vec<FileScan>,
    pub skipped: Vec<Skipped>,
    /// ConfigMaps of the good files, by namespace/name.
    pub config_maps: BTreeMap<ObjectKey, ConfigMap>,
    /// Secrets of the good files, by namespace/name, `stringData` merged into `data`.
    pub secrets: BTreeMap<ObjectKey, Secret>,
}

impl Scan {
    /// The pods of the good files, in file order: (file, pod).
    pub fn pods(&self) -> impl Iterator<Item = (&Path, &Pod)> {
        self.files.iter().flat_map(|f| {
            f.outcome
                .iter()
                .flatten()
                .filter_map(move |d| match &d.object {
                    Object::Pod(p) => Some((f.path.as_path(), p.as_ref())),
                    _ => None,
                })
        })
    }

    /// The errors of the bad files, in file order.
    pub fn errors(&self) -> impl Iterator<Item = &ManifestError> {
        self.files
            .iter()
            .filter_map(|f| f.outcome.as_ref().err())
            .flatten()
    }

    /// The ConfigMap `name` of the pod's namespace.
    pub fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMap> {
        self.config_maps.get(&ObjectKey::new(namespace, name))
    }

    /// The Secret `name` of the pod's namespace.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        self.secrets.get(&ObjectKey::new(namespace, name))
    }
}

/// Reads and checks every manifest of `dir`. Fails only when the directory itself cannot be
/// listed; a file that cannot be read, decoded or validated, or that redefines a pod, ConfigMap
/// or Secret of an earlier file (in sorted order), has its errors in its [`FileScan`] and
/// contributes nothing.
pub fn scan(dir: &Path) -> Result<Scan, ManifestError> {
    let read_err = |source| ManifestError::Read {
        file: dir.to_path_buf(),
        source,
    };
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        entries.push(entry.file_name());
    }
    entries.sort();

    let mut out = Scan::default();
    // Where each key was first defined, per kind.
    let mut seen: BTreeMap<(&'static str, ObjectKey), PathBuf> = BTreeMap::new();
    for name in entries {
        let path = dir.join(&name);
        if let Some(why) = classify(&name.to_string_lossy()) {
            out.skipped.push(Skipped { path, why });
            continue;
        }
        // Follows a symlink, as kubelet's os.Stat does.
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(source) => {
                let outcome = Err(vec![ManifestError::Read {
                    file: path.clone(),
                    source,
                }]);
                out.files.push(FileScan { path, outcome });
                continue;
            }
        };
        if !meta.is_file() {
            out.skipped.push(Skipped {
                path,
                why: Skip::NotRegularFile,
            });
            continue;
        }
        let outcome = read_manifest(&path)
            .map_err(|e| vec![e])
            .and_then(|bytes| super::load(&path, &bytes))
            .and_then(|docs| claim(&path, docs, &mut seen));
        if let Ok(docs) = &outcome {
            for d in docs {
                match &d.object {
                    Object::ConfigMap(cm) => {
                        out.config_maps
                            .insert(ObjectKey::of(&cm.metadata), cm.as_ref().clone());
                    }
                    Object::Secret(s) => {
                        out.secrets
                            .insert(ObjectKey::of(&s.metadata), s.as_ref().clone());
                    }
                    Object::Pod(_) => {}
                }
            }
        }
        out.files.push(FileScan { path, outcome });
    }
    Ok(out)
}

/// Registers a good file's keys; a key an earlier file (or an earlier document of this one)
/// holds makes the file a conflict, and then none of its keys are registered.
fn claim(
    path: &Path,
    docs: Vec<Document>,
    seen: &mut BTreeMap<(&'static str, ObjectKey), PathBuf>,
) -> Result<Vec<Document>, Vec<ManifestError>> {
    let mut mine: BTreeMap<(&'static str, ObjectKey), ()> = BTreeMap::new();
    let mut errors = Vec::new();
    for d in &docs {
        let key = (d.object.kind(), ObjectKey::of(d.object.metadata()));
        let first = seen
            .get(&key)
            .cloned()
            .or_else(|| mine.contains_key(&key).then(|| path.to_path_buf()));
        match first {
            Some(first) => errors.push(ManifestError::Conflict {
                file: path.to_path_buf(),
                document: d.document,
                kind: key.0,
                key: key.1,
                first,
            }),
            None => {
                mine.insert(key, ());
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    for (key, ()) in mine {
        seen.insert(key, path.to_path_buf());
    }
    Ok(docs)
}

/// A file's bytes, at most [`MAX_MANIFEST_BYTES`].
pub fn read_manifest(path: &Path) -> Result<Vec<u8>, ManifestError> {
    let read_err = |source| ManifestError::Read {
        file: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge {
            file: path.to_path_buf(),
            limit: MAX_MANIFEST_BYTES,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::TempDir;
    use crate::manifest::identity::pod_key;

    fn pod(name: &str, ns: Option<&str>) -> String {
        let ns = ns
            .map(|n| format!("  namespace: {n}\n"))
            .unwrap_or_default();
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n{ns}spec:\n  containers:\n  - name: c\n    image: busybox\n")
    }

    #[test]
    fn classify_names() {
        let table: &[(&str, Option<Skip>)] = &[
            ("web.yaml", None),
            ("web.YML", None),
            ("list.json", None),
            (".web.yaml", Some(Skip::Hidden)),
            (".web.yaml.swp", Some(Skip::Hidden)),
            ("web.yaml~", Some(Skip::Temporary)),
            ("web.yaml.swp", Some(Skip::Temporary)),
            ("web.yaml.swx", Some(Skip::Temporary)),
            ("web.yaml.tmp", Some(Skip::Temporary)),
            ("#web.yaml#", Some(Skip::Temporary)),
            ("4913", Some(Skip::Temporary)),
            ("README.md", Some(Skip::NotManifest)),
            ("web", Some(Skip::NotManifest)),
            ("web.yaml.bak", Some(Skip::NotManifest)),
        ];
        for (name, want) in table {
            assert_eq!(classify(name), *want, "{name}");
        }
    }

    #[test]
    fn scan_reads_sorted_skips_and_isolates_bad_files() {
        let d = TempDir::new("manifest-scan");
        let dir = &d.0;
        let write = |name: &str, text: &str| fs::write(dir.join(name), text).expect("write");
        write("b-web.yaml", &pod("web", None));
        // The same pod again, later in sorted order: refused, the first one kept.
        write(
            "c-dup.yaml",
            &format!("{}---\n{}", pod("other", None), pod("web", Some("default"))),
        );
        // The same name in another namespace is another pod.
        write(
            "d-web-other-ns.json",
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"prod"},"spec":{"containers":[{"name":"c","image":"x"}]}}"#,
        );
        write("a-broken.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: broken}\nspec:\n  containers:\n  - name: c\n    image: x\n    ports: [{containerPort: 0}]\n");
        write(
            "e-config.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {k: v}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: prod}\ndata: {a: YQ==, b: Yg==}\nstringData: {b: B, c: C}\n",
        );
        for skipped in [
            ".hidden.yaml",
            "web.yaml~",
            ".web.yaml.swp",
            "#web.yaml#",
            "4913",
            "notes.txt",
            "f.yaml.tmp",
        ] {
            write(skipped, "not: [valid");
        }
        fs::create_dir(dir.join("sub.yaml")).expect("mkdir");
        std::os::unix::fs::symlink(dir.join("b-web.yaml"), dir.join("f-link.yaml"))
            .expect("symlink");
        std::os::unix::fs::symlink(dir.join("gone"), dir.join("g-dangling.yaml")).expect("symlink");

        let scan = scan(dir).expect("scan");
        let names: Vec<_> = scan
            .files
            .iter()
            .map(|f| f.path.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        let want = [
            "a-broken.yaml",
            "b-web.yaml",
            "c-dup.yaml",
            "d-web-other-ns.json",
            "e-config.yaml",
            "f-link.yaml",
            "g-dangling.yaml",
        ];
        assert_eq!(names, want.map(|n| Some(n.to_string())));
        assert_eq!(scan.skipped.len(), 8, "{:?}", scan.skipped);
        assert!(scan.skipped.iter().any(|s| s.why == Skip::NotRegularFile));

        let pods: Vec<String> = scan.pods().map(|(_, p)| pod_key(p).to_string()).collect();
        assert_eq!(pods, ["default/web", "prod/web"]);

        let errors: Vec<String> = scan.errors().map(ToString::to_string).collect();
        let d = dir.display();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert_eq!(
            errors[0],
            format!("{d}/a-broken.yaml: document 1: spec.containers[0].ports[0].containerPort: invalid value \"0\": must be between 1 and 65535, inclusive")
        );
        assert_eq!(
            errors[1],
            format!(
                "{d}/c-dup.yaml: document 2: Pod default/web is already defined in {d}/b-web.yaml"
            )
        );
        // The symlink is a second definition of the same pod.
        assert_eq!(
            errors[2],
            format!(
                "{d}/f-link.yaml: document 1: Pod default/web is already defined in {d}/b-web.yaml"
            )
        );
        assert!(
            errors[3].starts_with(&format!("{d}/g-dangling.yaml: ")),
            "{}",
            errors[3]
        );

        let cm = scan.config_map("default", "cfg").expect("configmap");
        assert_eq!(
            cm.data
                .as_ref()
                .and_then(|d| d.get("k"))
                .map(String::as_str),
            Some("v")
        );
        assert!(
            scan.config_map("prod", "cfg").is_none(),
            "ConfigMaps are per namespace"
        );
        let secret = scan.secret("prod", "s").expect("secret");
        let data: Vec<(String, Vec<u8>)> = secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        assert_eq!(
            data,
            [
                ("a".into(), b"a".to_vec()),
                ("b".into(), b"B".to_vec()),
                ("c".into(), b"C".to_vec())
            ],
            "stringData merges over data"
        );
        assert!(secret.string_data.is_none());
    }

    #[test]
    fn duplicates_within_one_file() {
        let d = TempDir::new("manifest-dup");
        let text = format!("{}---\n{}", pod("a", None), pod("a", None));
        fs::write(d.0.join("two.yaml"), text).expect("write");
        let scan = scan(&d.0).expect("scan");
        assert_eq!(scan.pods().count(), 0);
        let errors: Vec<String> = scan.errors().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 1);
        let file = d.0.join("two.yaml");
        let want = format!(
            "{0}: document 2: Pod default/a is already defined in {0}",
            file.display()
        );
        assert_eq!(errors, [want]);
    }

    #[test]
    fn too_large_and_missing_dir() {
        let d = TempDir::new("manifest-big");
        let big = vec![b' '; (MAX_MANIFEST_BYTES + 1) as usize];
        fs::write(d.0.join("big.yaml"), big).expect("write");
        let scan = scan(&d.0).expect("scan");
        assert!(matches!(
            scan.errors().next(),
            Some(ManifestError::TooLarge { .. })
        ));
        assert!(matches!(
            super::scan(&d.0.join("missing")),
            Err(ManifestError::Read { .. })
        ));
    }
}
