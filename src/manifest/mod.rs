//! Static pod manifests: the pure layer under the manifest door. Files are decoded into the
//! Kubernetes API types ([`parse`]), checked as the API server and kubelet would check them,
//! plus refusing what peapod does not implement ([`validate`]), given their identity
//! ([`identity`]) and read from a directory ([`dir`]). Nothing here runs a pod or touches the
//! engine.

pub mod dir;
pub mod error;
pub mod identity;
pub mod parse;
pub mod validate;

pub use dir::{scan, FileScan, Scan};
pub use error::{FieldError, ManifestError, Reason};
pub use identity::{pod_key, spec_hash, static_uid, ObjectKey};
pub use parse::{parse, Document, Object};

use std::path::Path;

use k8s_openapi::ByteString;

use identity::DEFAULT_NAMESPACE;

/// Decodes and checks one file, and fills in what the API server would: the namespace default,
/// and a Secret's `stringData` merged over its `data` (a key in both takes the `stringData`
/// value). All or nothing: any error in any document refuses the whole file, as kubelet refuses
/// a file it cannot decode, and every error found is returned.
pub fn load(file: &Path, bytes: &[u8]) -> Result<Vec<Document>, Vec<ManifestError>> {
    let mut docs = parse::parse(file, bytes)?;
    let mut errors = Vec::new();
    for d in &docs {
        let found = match &d.object {
            Object::Pod(p) => validate::validate_pod(p),
            Object::ConfigMap(c) => validate::validate_config_map(c),
            Object::Secret(s) => validate::validate_secret(s),
        };
        let prefix = d.item.map(|i| format!("items[{i}]")).unwrap_or_default();
        errors.extend(found.into_iter().map(|f| ManifestError::Field {
            file: file.to_path_buf(),
            document: d.document,
            field: FieldError::new(parse::join(&prefix, &f.path), f.reason),
        }));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    for d in &mut docs {
        let meta = match &mut d.object {
            Object::Pod(p) => &mut p.metadata,
            Object::ConfigMap(c) => &mut c.metadata,
            Object::Secret(s) => {
                if let Some(string_data) = s.string_data.take() {
                    let data = s.data.get_or_insert_with(Default::default);
                    for (k, v) in string_data {
                        data.insert(k, ByteString(v.into_bytes()));
                    }
                }
                &mut s.metadata
            }
        };
        if meta.namespace.as_deref().is_none_or(str::is_empty) {
            meta.namespace = Some(DEFAULT_NAMESPACE.to_string());
        }
    }
    Ok(docs)
}
