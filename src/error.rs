//! Errors of the imperative shell. Each has a category that becomes the Event reason and the
//! `reason` label of the error metric, so dashboards and `kubectl describe` agree.

use crate::registry::RegistryError;

/// A reconcile failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("model registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("{0} has no namespace")]
    MissingNamespace(String),
    #[error("{0} has no uid yet")]
    MissingUid(String),
    #[error("could not serialize {what}: {source}")]
    Serialization {
        what: &'static str,
        source: serde_json::Error,
    },
}

/// Stable category of an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCategory {
    KubeApi,
    KubeConflict,
    Registry,
    InvalidObject,
}

impl ErrorCategory {
    /// Condition and Event reason.
    pub fn reason(self) -> crate::api::Reason {
        use crate::api::Reason;
        match self {
            ErrorCategory::KubeApi => Reason::KubernetesApiError,
            ErrorCategory::KubeConflict => Reason::KubernetesConflict,
            ErrorCategory::Registry => Reason::RegistryError,
            ErrorCategory::InvalidObject => Reason::InvalidObject,
        }
    }

    /// snake_case metric label.
    pub fn metric_label(self) -> &'static str {
        match self {
            ErrorCategory::KubeApi => "kube_api",
            ErrorCategory::KubeConflict => "kube_conflict",
            ErrorCategory::Registry => "registry",
            ErrorCategory::InvalidObject => "invalid_object",
        }
    }
}

impl Error {
    pub fn category(&self) -> ErrorCategory {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => {
                ErrorCategory::KubeConflict
            }
            Error::Kube(_) => ErrorCategory::KubeApi,
            Error::Registry(_) => ErrorCategory::Registry,
            Error::MissingNamespace(_) | Error::MissingUid(_) | Error::Serialization { .. } => {
                ErrorCategory::InvalidObject
            }
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
