//! The errors of the translation. Every error of [`super::container_config`] is what kubelet
//! reports as the container's `CreateContainerConfigError` waiting reason, with the error's
//! text as the message; [`SpecError::Missing`] is the case a user fixes by adding an object.

use thiserror::Error;

/// A ConfigMap, Secret or key a container needs and that is not there (not marked optional).
/// The texts are kubelet's: its ConfigMap and Secret managers answer with a NotFound for the
/// resource `configmap` / `secret`, and `makeEnvironmentVariables` words the missing key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Missing {
    #[error("configmap \"{name}\" not found")]
    ConfigMap { name: String },
    #[error("secret \"{name}\" not found")]
    Secret { name: String },
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKey {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKey {
        namespace: String,
        name: String,
        key: String,
    },
    /// A key named by a configMap volume's items (kubelet's `MakePayload` wording).
    #[error("configmap references non-existent config key: {key}")]
    ConfigMapVolumeKey { key: String },
    /// A key named by a secret volume's items.
    #[error("references non-existent secret key: {key}")]
    SecretVolumeKey { key: String },
}

/// Why a Pod cannot be translated to CRI configs.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    /// A ConfigMap, Secret or key is missing.
    #[error(transparent)]
    Missing(#[from] Missing),
    /// A value the translation cannot use; `path` is the field's path in the Pod.
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    /// A field peapod does not implement; refused instead of silently ignored.
    #[error("{path}: not supported: {reason}")]
    Unsupported { path: String, reason: String },
    /// `runAsNonRoot` cannot hold (kubelet's `verifyRunAsNonRoot` wording).
    #[error("{0}")]
    RunAsNonRoot(String),
}

impl SpecError {
    pub(crate) fn invalid(path: impl Into<String>, reason: impl Into<String>) -> Self {
        SpecError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(path: impl Into<String>, reason: impl Into<String>) -> Self {
        SpecError::Unsupported {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// A Kubernetes quantity that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}")]
pub struct QuantityError(pub String);
