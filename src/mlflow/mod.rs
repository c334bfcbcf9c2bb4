//! A typed async client for the MLflow 3.x REST API (`/api/2.0/mlflow`): model registry
//! (registered models, versions, aliases, version tags, search), tracking (experiments, runs,
//! params, metrics, tags) and artifact downloads through the artifact proxy.
//!
//! Facts about MLflow that shape this module:
//! - an alias that is not set on an existing model is answered with 400
//!   `INVALID_PARAMETER_VALUE`, which the client maps to [`MlflowError::AliasNotFound`];
//! - the server's security middleware answers 403 to a Host header that is not localhost or a
//!   private IP unless `--allowed-hosts` lists it ([`MlflowError::Forbidden`] says so);
//! - `DELETE registered-models/alias` takes a JSON body, and POST bodies must be
//!   `application/json`.
//!
//! The client needs a process-wide rustls crypto provider installed before
//! [`MlflowClient::new`] (the binary installs `ring`).

mod artifacts;
mod client;
mod error;
mod registry;
mod retry;
mod runs;
mod types;
mod uri;

#[cfg(test)]
mod client_tests;

pub use artifacts::{
    artifact_proxy_path, join_artifact_path, parse_model_artifact_uri, parse_runs_uri,
};
pub(crate) use client::read_capped;
pub use client::{MlflowAuth, MlflowClient};
pub use error::MlflowError;
pub use registry::{ModelVersionSearch, SEARCH_PAGE_SIZE, name_filter};
pub use retry::{RetryPolicy, retry_if, retry_with_backoff};
pub use types::{
    ArtifactFile, Experiment, Metric, ModelVersion, ModelVersionPage, RegisteredModel, Run,
    RunData, RunInfo, RunStatus,
};
pub use uri::{ModelUri, model_alias_uri, model_version_uri, parse_version, validate_alias};
