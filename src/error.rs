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
    /// An object with the name a child needs exists and is not this resource's: it is never
    /// adopted or overwritten.
    #[error(
        "{kind} {name} exists and is not this ModelDeployment's ({holder}); mlrollout never adopts or overwrites objects it did not create: rename or delete it"
    )]
    NameConflict {
        kind: String,
        name: String,
        holder: String,
    },
}

/// Stable category of an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCategory {
    KubeApi,
    KubeConflict,
    Registry,
    InvalidObject,
    NameConflict,
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
            ErrorCategory::NameConflict => Reason::NameConflict,
        }
    }

    /// snake_case metric label.
    pub fn metric_label(self) -> &'static str {
        match self {
            ErrorCategory::KubeApi => "kube_api",
            ErrorCategory::KubeConflict => "kube_conflict",
            ErrorCategory::Registry => "registry",
            ErrorCategory::InvalidObject => "invalid_object",
            ErrorCategory::NameConflict => "name_conflict",
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
            Error::NameConflict { .. } => ErrorCategory::NameConflict,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
