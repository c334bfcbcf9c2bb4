//! The model registry as the operator sees it: which version is served, and the errors that
//! tell a missing model from a registry that is down.

pub mod memory;
pub mod mlflow;

use crate::api::Reason;
use futures::future::BoxFuture;

use crate::api::{ModelSource, RegistryWrite};

use crate::core::decide::RegistryFailure;
pub use crate::core::decide::ResolvedModel;

/// Why the served version could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("registered model {model:?} does not exist in MLflow")]
    ModelNotFound { model: String },
    #[error(
        "registered model {model:?} has no alias {alias:?}; set it in MLflow or pin spec.model.version"
    )]
    AliasNotFound { model: String, alias: String },
    #[error("model {model:?} has no version {version:?}")]
    VersionNotFound { model: String, version: String },
    #[error("MLflow refused the request: {0}")]
    Forbidden(String),
    /// The credentials Secret named in the spec does not exist.
    #[error("{0}")]
    SecretNotFound(String),
    /// The credentials Secret lacks the keys it needs.
    #[error("{0}")]
    SecretKeyMissing(String),
    #[error("MLflow is unreachable: {0}")]
    Unavailable(String),
    #[error("MLflow answered something that is not its API: {0}")]
    Malformed(String),
    #[error("MLflow error: {0}")]
    Other(String),
}

impl From<RegistryError> for RegistryFailure {
    fn from(error: RegistryError) -> Self {
        RegistryFailure {
            reason: error.reason(),
            message: error.to_string(),
        }
    }
}

impl RegistryError {
    /// Condition reason / Event reason for this error.
    pub fn reason(&self) -> Reason {
        match self {
            RegistryError::ModelNotFound { .. } => Reason::ModelNotFound,
            RegistryError::AliasNotFound { .. } => Reason::AliasNotFound,
            RegistryError::VersionNotFound { .. } => Reason::VersionNotFound,
            RegistryError::Forbidden(_) => Reason::RegistryForbidden,
            RegistryError::SecretNotFound(_) => Reason::SecretNotFound,
            RegistryError::SecretKeyMissing(_) => Reason::SecretKeyMissing,
            RegistryError::Unavailable(_) => Reason::RegistryUnavailable,
            RegistryError::Malformed(_) => Reason::RegistryMalformedResponse,
            RegistryError::Other(_) => Reason::RegistryError,
        }
    }
}

/// Credentials for the registry, read from the Secret named in the spec. `Debug` shows the
/// kind, never the secret (it reaches logs); [`RegistryCredentials::identity`] tells sets apart.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum RegistryCredentials {
    #[default]
    None,
    Bearer(String),
    Basic {
        username: String,
        password: String,
    },
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryCredentials::None => f.write_str("None"),
            RegistryCredentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            RegistryCredentials::Basic { username, .. } => {
                write!(
                    f,
                    "Basic {{ username: {username:?}, password: <redacted> }}"
                )
            }
        }
    }
}

impl RegistryCredentials {
    /// A key that differs between credential sets (for caches of clients built with them).
    pub fn identity(&self) -> String {
        match self {
            RegistryCredentials::None => "none".into(),
            RegistryCredentials::Bearer(token) => format!("bearer:{token}"),
            RegistryCredentials::Basic { username, password } => {
                format!("basic:{}:{username}:{password}", username.len())
            }
        }
    }
}

/// Tag a retraining Job puts on the version it registers (value: the attempt id).
pub const LINEAGE_TAG: &str = "mlrollout.io/attempt";

pub use crate::core::lifecycle::AttemptRecord;

/// (candidate, champion) values of the evaluation metric; `None` when a run lacks it.
pub type MetricPair = (Option<f64>, Option<f64>);

/// The model registry as the reconciler uses it.
pub trait ModelRegistry: Send + Sync {
    /// Resolves the version served for `model`: the pinned version if set, else the alias.
    fn resolve<'a>(
        &'a self,
        model: &'a ModelSource,
        credentials: &'a RegistryCredentials,
    ) -> BoxFuture<'a, Result<ResolvedModel, RegistryError>>;

    /// The version registered by attempt `attempt_id` (tag [`LINEAGE_TAG`]), never "the newest":
    /// a version registered by someone else is not a candidate.
    fn find_candidate<'a>(
        &'a self,
        model: &'a ModelSource,
        credentials: &'a RegistryCredentials,
        attempt_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, RegistryError>>;

    /// The evaluation metric of the training runs of `candidate` and `champion`.
    fn evaluation_metrics<'a>(
        &'a self,
        model: &'a ModelSource,
        credentials: &'a RegistryCredentials,
        candidate: &'a str,
        champion: &'a str,
        metric: &'a str,
    ) -> BoxFuture<'a, Result<MetricPair, RegistryError>>;

    /// Performs one idempotent write (set/delete alias, set tag).
    fn apply_write<'a>(
        &'a self,
        model: &'a ModelSource,
        credentials: &'a RegistryCredentials,
        write: &'a RegistryWrite,
    ) -> BoxFuture<'a, Result<(), RegistryError>>;
}
