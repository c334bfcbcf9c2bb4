//! [`ModelRegistry`] backed by a real MLflow tracking server.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{LINEAGE_TAG, ModelRegistry, RegistryCredentials, RegistryError, ResolvedModel};
use crate::api::{AttemptOutcome, ModelSource, RegistryOp, RegistryWrite};
use crate::mlflow::{MlflowAuth, MlflowClient, MlflowError};

/// Most MLflow clients kept (one per server and credential set): resource authors choose
/// both, so the cache must not grow with every value they try. The least recently used goes.
pub const MAX_CACHED_CLIENTS: NonZeroUsize = NonZeroUsize::new(64).unwrap();

/// Resolves models through MLflow's REST API; clients are cached per server and credentials.
pub struct MlflowRegistry {
    clients: Mutex<lru::LruCache<(String, String), MlflowClient>>,
    timeout: Option<Duration>,
}

impl Default for MlflowRegistry {
    fn default() -> Self {
        Self {
            clients: Mutex::new(lru::LruCache::new(MAX_CACHED_CLIENTS)),
            timeout: None,
        }
    }
}

impl MlflowRegistry {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
            ..Self::default()
        }
    }

    /// Clients cached now.
    pub fn cached_clients(&self) -> usize {
        self.clients.lock().map(|c| c.len()).unwrap_or_default()
    }

    /// The client for one server and credential set.
    pub fn client(
        &self,
        tracking_uri: &str,
        credentials: &RegistryCredentials,
    ) -> Result<MlflowClient, RegistryError> {
        let auth = MlflowAuth::from(credentials);
        let key = (tracking_uri.to_string(), credentials.identity());
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| RegistryError::Other("client cache poisoned".into()))?;
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = MlflowClient::new(
            tracking_uri,
            auth,
            self.timeout.unwrap_or(Duration::from_secs(10)),
        )
        .map_err(|e| RegistryError::Other(e.to_string()))?;
        clients.put(key, client.clone());
        Ok(client)
    }
}

impl ModelRegistry for MlflowRegistry {
    fn resolve<'a>(
        &'a self,
        model: &'a ModelSource,
        credentials: &'a RegistryCredentials,
    ) -> BoxFuture<'a, Result<ResolvedModel, RegistryError>> {
        async move {
            let client = self.client(&model.tracking_uri, credentials)?;
            let version = match &model.version {
                Some(pinned) => {
                    let number: u64 =
                        pinned.parse().map_err(|_| RegistryError::VersionNotFound {
                            model: model.name.clone(),
                            version: pinned.clone(),
                        })?;
                    client
                        .get_model_version(&model.name, number)
                        .await
                        .map_err(|e| match e {
                            MlflowError::NotFound { .. } => RegistryError::VersionNotFound {
                                model: model.name.clone(),
                                version: pinned.clone(),
                            },
                            other => map_error(other, &model.name),
                        })?
                }
                None => client
                    .get_model_version_by_alias(&model.name, &model.alias)
                    .await
                    .map_err(|e| map_error(e, &model.name))?,
            };
            Ok(ResolvedModel {
                version: version.version.to_string(),
                run_id: Some(version.run_id).filter(|r| !r.is_empty()),
            })
        }
        .boxed()
    }

    fn find_candidate<'a>(
        &'a self,
        model: &'a ModelSource,
        credentials: &'a RegistryCredentials,
        attempt_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, RegistryError>> {
        async move {
            let client = self.client(&model.tracking_uri, credentials)?;
            let found = client
                .find_model_version_by_tag(&model.name, LINEAGE_TAG, attempt_id)
                .await
                .map_err(|e| map_error(e, &model.name))?;
            Ok(found.map(|v| v.version.to_string()))
        }
        .boxed()
    }

    fn evaluation_metrics<'a>(
        &'a self,
        model: &'a ModelSource,
        credentials: &'a RegistryCredentials,
        candidate: &'a str,
        champion: &'a str,
        metric: &'a str,
    ) -> BoxFuture<'a, Result<(Option<f64>, Option<f64>), RegistryError>> {
        async move {
            let client = self.client(&model.tracking_uri, credentials)?;
            let mut values = Vec::new();
            for version in [candidate, champion] {
                let number: u64 = version
                    .parse()
                    .map_err(|_| RegistryError::VersionNotFound {
                        model: model.name.clone(),
                        version: version.to_string(),
                    })?;
                let mv = client
                    .get_model_version(&model.name, number)
                    .await
                    .map_err(|e| map_error(e, &model.name))?;
                let value = if mv.run_id.is_empty() {
                    None
                } else {
                    let run = client
                        .get_run(&mv.run_id)
                        .await
                        .map_err(|e| map_error(e, &model.name))?;
                    run.metric(metric)
                };
                values.push(value);
            }
            Ok((values[0], values[1]))
        }
        .boxed()
    }

    fn apply_write<'a>(
        &'a self,
        model: &'a ModelSource,
        credentials: &'a RegistryCredentials,
        write: &'a RegistryWrite,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        async move {
            let client = self.client(&model.tracking_uri, credentials)?;
            let version = || -> Result<u64, RegistryError> {
                write
                    .version
                    .as_deref()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| RegistryError::Other(format!("write {write:?} has no version")))
            };
            let result = match write.op {
                RegistryOp::SetAlias => client.set_alias(&model.name, &write.key, version()?).await,
                RegistryOp::DeleteAlias => client.delete_alias(&model.name, &write.key).await,
                RegistryOp::SetTag => {
                    client
                        .set_model_version_tag(
                            &model.name,
                            version()?,
                            &write.key,
                            write.value.as_deref().unwrap_or(""),
                        )
                        .await
                }
                RegistryOp::LogAttempt => {
                    return self.log_attempt(&client, &model.name, write).await;
                }
            };
            result.map_err(|e| map_error(e, &model.name))
        }
        .boxed()
    }
}

impl MlflowRegistry {
    /// Logs a retraining attempt as an MLflow run (one run per attempt, found again by its
    /// attempt tag, so repeating the write updates the same run).
    async fn log_attempt(
        &self,
        client: &MlflowClient,
        model: &str,
        write: &RegistryWrite,
    ) -> Result<(), RegistryError> {
        let record: super::AttemptRecord =
            serde_json::from_str(write.value.as_deref().unwrap_or(""))
                .map_err(|e| RegistryError::Other(format!("malformed attempt record: {e}")))?;
        let err = |e| map_error(e, model);
        let experiment = client
            .get_or_create_experiment(&record.experiment)
            .await
            .map_err(err)?;
        let filter = format!(
            "tags.`{LINEAGE_TAG}` = '{}'",
            record.attempt_id.replace('\'', "")
        );
        let existing = client
            .search_runs(&experiment, &filter, 1)
            .await
            .map_err(err)?;
        let run_id = match existing.first() {
            Some(run) => run.info.run_id.clone(),
            None => {
                let name = format!("attempt-{}", record.number);
                client
                    .create_run(
                        &experiment,
                        Some(&name),
                        &[(LINEAGE_TAG, record.attempt_id.as_str())],
                    )
                    .await
                    .map_err(err)?
                    .info
                    .run_id
            }
        };
        let params = [
            ("trigger", record.trigger.as_str().to_string()),
            ("job_name", record.job_name.clone()),
            ("attempt", record.number.to_string()),
        ];
        for (key, value) in &params {
            client.log_param(&run_id, key, value).await.map_err(err)?;
        }
        let tags = [
            ("mlrollout.io/outcome", Some(record.outcome.as_str())),
            ("mlrollout.io/drift", Some(record.drift_summary.as_str())),
            (
                "mlrollout.io/candidate-version",
                record.candidate_version.as_deref(),
            ),
            ("mlrollout.io/advisor", record.advisor.as_deref()),
        ];
        for (key, value) in tags {
            if let Some(value) = value {
                client.set_run_tag(&run_id, key, value).await.map_err(err)?;
            }
        }
        let status = match record.outcome {
            AttemptOutcome::Running => None,
            AttemptOutcome::Succeeded => Some(crate::mlflow::RunStatus::Finished),
            AttemptOutcome::Aborted => Some(crate::mlflow::RunStatus::Killed),
            AttemptOutcome::Failed | AttemptOutcome::TimedOut => {
                Some(crate::mlflow::RunStatus::Failed)
            }
        };
        if let Some(status) = status {
            client.end_run(&run_id, status).await.map_err(err)?;
        }
        Ok(())
    }
}

impl From<&RegistryCredentials> for MlflowAuth {
    fn from(credentials: &RegistryCredentials) -> Self {
        match credentials {
            RegistryCredentials::None => MlflowAuth::None,
            RegistryCredentials::Bearer(t) => MlflowAuth::Bearer(t.clone()),
            RegistryCredentials::Basic { username, password } => MlflowAuth::Basic {
                username: username.clone(),
                password: password.clone(),
            },
        }
    }
}

/// Maps the client's errors onto what the reconciler distinguishes.
pub fn map_error(error: MlflowError, model: &str) -> RegistryError {
    match error {
        MlflowError::NotFound { .. } => RegistryError::ModelNotFound {
            model: model.to_string(),
        },
        MlflowError::AliasNotFound { model, alias } => {
            RegistryError::AliasNotFound { model, alias }
        }
        e @ (MlflowError::Forbidden { .. } | MlflowError::Unauthorized { .. }) => {
            RegistryError::Forbidden(e.to_string())
        }
        e @ (MlflowError::Unavailable { .. } | MlflowError::Server { .. }) => {
            RegistryError::Unavailable(e.to_string())
        }
        e @ MlflowError::MalformedResponse { .. } => RegistryError::Malformed(e.to_string()),
        other => RegistryError::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_client_cache_is_bounded() {
        crate::cli::install_crypto_provider();
        let registry = MlflowRegistry::new(Duration::from_secs(1));
        for i in 0..80 {
            // A new token each time, as an author trying values would cause.
            let credentials = RegistryCredentials::Bearer(format!("token-{i}"));
            registry.client("http://127.0.0.1:1", &credentials).unwrap();
        }
        assert_eq!(registry.cached_clients(), MAX_CACHED_CLIENTS.get());
        // A cached one is reused, not added.
        let credentials = RegistryCredentials::Bearer("token-79".into());
        registry.client("http://127.0.0.1:1", &credentials).unwrap();
        assert_eq!(registry.cached_clients(), MAX_CACHED_CLIENTS.get());
    }
}
