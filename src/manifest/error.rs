//! Errors of the manifest layer. Every error names the file, and every error inside a document
//! names the document (1-based, counted as a user counts `---`-separated documents, empty ones
//! included, so "document 3" is the third one in the editor) and the field path in the API's
//! own spelling (`spec.containers[0].ports[1].containerPort`), as `kubectl` prints them.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::identity::ObjectKey;

/// Why one field is wrong. The wording follows the API server's field errors
/// (k8s.io/apimachinery/pkg/util/validation/field), in lower case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// A required field is absent or empty.
    #[error("missing field")]
    Required,
    /// A field the v1 API does not have: a typo, or a field of a newer Kubernetes than peapod
    /// knows. kubelet would drop it silently; a dropped field is a behaviour the user asked for
    /// and does not get, so it is refused.
    #[error("unknown field")]
    Unknown,
    /// The value has the wrong type or shape (the decoder's message).
    #[error("{0}")]
    Decode(String),
    /// The value is malformed or out of range.
    #[error("invalid value {value:?}: {detail}")]
    Invalid { value: String, detail: String },
    /// The value is not one of a fixed set.
    #[error("unsupported value {value:?}: supported values: {}", Quoted(allowed))]
    NotSupported {
        value: String,
        allowed: &'static [&'static str],
    },
    /// None, or more than one, of fields of which exactly one must be set.
    #[error("exactly one of {} must be set", Quoted(.0))]
    OneOf(&'static [&'static str]),
    /// The value repeats one that must be unique.
    #[error("duplicate value {0:?}")]
    Duplicate(String),
    /// The API forbids the field here.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A valid Kubernetes field that peapod does not implement: refused rather than ignored.
    #[error("not supported by peapod: {0}")]
    Unsupported(String),
}

struct Quoted<'a>(&'a [&'a str]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v:?}")?;
        }
        Ok(())
    }
}

/// One wrong field: its path inside the document and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// `spec.containers[0].image`; empty for the document itself.
    pub path: String,
    pub reason: Reason,
}

impl FieldError {
    pub fn new(path: impl Into<String>, reason: Reason) -> Self {
        FieldError {
            path: path.into(),
            reason,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for FieldError {}

/// An error of one manifest file. A file with any error contributes nothing: its pods are not
/// run (the others are untouched), exactly as kubelet skips a file it cannot decode.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file (or the directory) could not be read.
    #[error("{}: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Bigger than any API object can be; refused before it is read into memory.
    #[error("{}: file is larger than {limit} bytes", file.display())]
    TooLarge { file: PathBuf, limit: u64 },
    /// Not well-formed YAML or JSON. Nothing after it in the file can be read.
    #[error("{}: document {document}: {reason}", file.display())]
    Syntax {
        file: PathBuf,
        document: usize,
        reason: String,
    },
    /// A kind peapod does not run (only v1 Pod, ConfigMap and Secret, and v1 lists of them).
    #[error(
        "{}: document {document}: {}unsupported object apiVersion {api_version:?} kind {kind:?}: \
         supported are v1 Pod, ConfigMap, Secret",
        file.display(),
        PathPrefix(path)
    )]
    UnsupportedKind {
        file: PathBuf,
        document: usize,
        /// Where the object is: empty for a document, `items[2]` for an item of a list.
        path: String,
        api_version: String,
        kind: String,
    },
    /// A field that does not decode or does not validate.
    #[error("{}: document {document}: {field}", file.display())]
    Field {
        file: PathBuf,
        document: usize,
        field: FieldError,
    },
    /// The same namespace/name defined twice: the second definition is refused, as kubelet
    /// refuses a duplicate static pod.
    #[error(
        "{}: document {document}: {kind} {key} is already defined in {}",
        file.display(),
        first.display()
    )]
    Conflict {
        file: PathBuf,
        document: usize,
        kind: &'static str,
        key: ObjectKey,
        /// The file of the first definition (may be this file).
        first: PathBuf,
    },
}

struct PathPrefix<'a>(&'a str);

impl fmt::Display for PathPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "{}: ", self.0)
        }
    }
}

impl ManifestError {
    /// The document the error is in, if it is in one.
    pub fn document(&self) -> Option<usize> {
        match self {
            ManifestError::Read { .. } | ManifestError::TooLarge { .. } => None,
            ManifestError::Syntax { document, .. }
            | ManifestError::UnsupportedKind { document, .. }
            | ManifestError::Field { document, .. }
            | ManifestError::Conflict { document, .. } => Some(*document),
        }
    }

    /// The field error, for the errors that are about one field.
    pub fn field(&self) -> Option<&FieldError> {
        match self {
            ManifestError::Field { field, .. } => Some(field),
            _ => None,
        }
    }
}
