//! Observe: read what the decision needs from the cluster, the registry, Prometheus and the
//! data. What to read beyond the basics is asked of the lifecycle ([`crate::core::lifecycle::wants`]).

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::Api;

use crate::analysis::MeasureRequest;
use crate::api::validation::ValidatedSpec;
use crate::api::{ModelDeployment, ModelDeploymentStatus};
use crate::core::lifecycle::{
    self, CandidateLookup, DriftObservation, EvaluationObservation, JobState, Observations,
};
use crate::core::verdict::builtin::metrics_at_step;
use crate::core::verdict::{AnalysisStage, MetricMeasurement, query_error};
use crate::drift::check::DriftInputs;
use crate::error::Result;
use crate::registry::{RegistryCredentials, RegistryError};
use crate::storage::{SECRET_KEYS, StoreOptions, is_object_store_uri};

use super::Context;
use crate::core::decide::{DeploymentState, Observed};
use crate::core::names::{LABEL_MODEL_VERSION, Variant, variant_name};

/// What one reconcile observed, and the MLflow credentials it read (reused for write-back).
pub struct Observation {
    pub observed: Observed,
    pub credentials: Result<RegistryCredentials, RegistryError>,
}

/// Reads everything the decision needs. For a spec that failed validation (`validated` is
/// `None`) only the basics are read: the decision changes nothing else then.
pub async fn observe(
    ctx: &Context,
    resource: &ModelDeployment,
    validated: Option<&ValidatedSpec>,
    namespace: &str,
    now: Timestamp,
) -> Result<Observation> {
    let name = resource.metadata.name.as_deref().unwrap_or_default();
    let default_status = ModelDeploymentStatus::default();
    let status = resource.status.as_ref().unwrap_or(&default_status);
    let stable_deployment = read_deployment(ctx, namespace, name, Variant::Stable).await?;
    let candidate_deployment = read_deployment(ctx, namespace, name, Variant::Candidate).await?;
    let annotations = resource.metadata.annotations.clone().unwrap_or_default();

    let credentials = read_credentials(ctx, resource, namespace).await;
    let served = match &credentials {
        Ok(c) => ctx.registry.resolve(&resource.spec.model, c).await,
        Err(e) => Err(e.clone()),
    };

    let wants = validated
        .map(|validated| lifecycle::wants(validated, status, now))
        .unwrap_or_default();
    let reading = Reading {
        ctx,
        resource,
        namespace,
        status,
        credentials: &credentials,
        advisor_timeout: validated.map(|v| v.timing.advisor_timeout),
        steps: validated.map(|v| &v.timing.rollout),
    };
    let mut observations = Observations::default();
    if wants.drift_check {
        reading.drift(&mut observations).await;
    }
    if let Some(job_name) = &wants.job {
        let state = read_job(ctx, namespace, job_name).await?;
        if state == JobState::Succeeded
            && let Some(attempt) = &wants.candidate_lookup
        {
            observations.candidate_lookup = reading.candidate(attempt).await;
        }
        observations.job = Some(state);
    }
    if let Some((candidate, champion)) = &wants.evaluation {
        observations.evaluation = Some(reading.evaluation(candidate, champion).await);
    }
    // The same readiness rule the decision applies.
    let candidate_ready = candidate_deployment.as_ref().is_some_and(|d| {
        d.serves(
            status.candidate_version.as_deref(),
            resource.spec.serving.replicas.min(1),
        )
    });
    if let Some(stage) = wants.measure
        && candidate_ready
    {
        let since_step = status
            .phase_started_at
            .as_ref()
            .and_then(|started| Duration::try_from(now.duration_since(started.0)).ok())
            .unwrap_or_default();
        observations.measurements = Some(reading.measurements(stage, since_step).await);
    }

    Ok(Observation {
        observed: Observed {
            served: served.map_err(Into::into),
            stable_deployment,
            candidate_deployment,
            lifecycle: observations,
            annotations,
        },
        credentials,
    })
}

/// What every optional reading of one reconcile shares.
struct Reading<'a> {
    ctx: &'a Context,
    resource: &'a ModelDeployment,
    namespace: &'a str,
    status: &'a ModelDeploymentStatus,
    credentials: &'a Result<RegistryCredentials, RegistryError>,
    /// `spec.advisor.timeout` as validation parsed it (`None`: the spec is invalid).
    advisor_timeout: Option<Duration>,
    /// The rollout's timing and steps as validation parsed them (`None`: the spec is invalid).
    steps: Option<&'a crate::api::validation::RolloutTiming>,
}

impl Reading<'_> {
    /// A drift check, and the advisor's opinion on a fresh report.
    async fn drift(&self, observations: &mut Observations) {
        let Some(checker) = &self.ctx.drift else {
            return;
        };
        let token = self.accuracy_query_token().await;
        let storage = self.storage_options().await;
        let drift = match (self.credentials, token, storage) {
            (Ok(credentials), Ok(token), Ok(storage)) => {
                let inputs = DriftInputs {
                    credentials,
                    prometheus_token: token.as_deref(),
                    storage: &storage,
                    capture_base: self.resource.spec.capture_base(),
                };
                checker.check(self.resource, inputs).await
            }
            (Err(e), _, _) => DriftObservation::Failed {
                reason: e.reason(),
                message: format!("cannot read the MLflow credentials for the drift data: {e}"),
            },
            (_, Err(e), _) => DriftObservation::Failed {
                reason: e.reason(),
                message: format!("performance.accuracyQuery: {e}"),
            },
            (_, _, Err(e)) => DriftObservation::Failed {
                reason: e.reason(),
                message: format!("spec.storage.secretRef: {e}"),
            },
        };
        if let DriftObservation::Completed { summary, .. } = &drift
            && self.resource.spec.advisor.enabled
            && let Some(timeout) = self.advisor_timeout
        {
            observations.advisor = ask_advisor(self, summary, timeout).await;
        }
        observations.drift = Some(drift);
    }

    /// The object-store settings of `spec.storage`; its Secret is read only when the drift data
    /// is in an object store.
    async fn storage_options(&self) -> Result<StoreOptions, SecretError> {
        let spec = &self.resource.spec;
        let storage = spec.storage.clone().unwrap_or_default();
        let secret = storage
            .secret_ref
            .as_ref()
            .filter(|_| drift_reads_object_stores(spec));
        let data = match secret {
            Some(secret) => {
                let data = read_secret_data(self.ctx, self.namespace, &secret.name).await?;
                let keys = |k: &String| SECRET_KEYS.contains(&k.to_ascii_lowercase().as_str());
                if !data.keys().any(keys) {
                    return Err(SecretError::KeyMissing {
                        name: secret.name.clone(),
                        key: "AWS_ACCESS_KEY_ID, GOOGLE_SERVICE_ACCOUNT_KEY or AZURE_STORAGE_ACCOUNT_KEY (none of the object-store keys is there)".into(),
                    });
                }
                data
            }
            None => std::collections::BTreeMap::new(),
        };
        let pairs = data
            .iter()
            .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(&v.0).trim().to_string()));
        Ok(StoreOptions::from_secret(
            pairs,
            storage.endpoint.as_deref(),
            storage.region.as_deref(),
        ))
    }

    /// The Prometheus bearer token, when `performance.accuracyQuery` needs one.
    async fn accuracy_query_token(&self) -> Result<Option<String>, SecretError> {
        let spec = &self.resource.spec;
        let queries = spec
            .performance
            .as_ref()
            .is_some_and(|p| p.accuracy_query.is_some());
        let secret = spec
            .rollout
            .analysis
            .as_ref()
            .and_then(|a| a.prometheus.bearer_token_secret.as_ref());
        match secret.filter(|_| queries) {
            Some(key) => read_secret_key(self.ctx, self.namespace, key)
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    /// The version a succeeded Job registered, found by its lineage tag.
    async fn candidate(&self, attempt: &str) -> Option<CandidateLookup> {
        let creds = self.credentials.as_ref().ok()?;
        let found = self
            .ctx
            .registry
            .find_candidate(&self.resource.spec.model, creds, attempt)
            .await;
        Some(match found {
            Ok(Some(version)) => CandidateLookup::Found(version),
            Ok(None) => CandidateLookup::NotFound,
            Err(e) => CandidateLookup::Error(e.to_string()),
        })
    }

    /// The evaluation metric of the candidate's and the champion's training runs.
    async fn evaluation(&self, candidate: &str, champion: &str) -> EvaluationObservation {
        let creds = match self.credentials {
            Ok(creds) => creds,
            Err(e) => return EvaluationObservation::Error(e.to_string()),
        };
        let spec = &self.resource.spec;
        match self
            .ctx
            .registry
            .evaluation_metrics(
                &spec.model,
                creds,
                candidate,
                champion,
                &spec.evaluation.metric,
            )
            .await
        {
            Ok((c, s)) => EvaluationObservation::Metrics {
                candidate: c,
                champion: s,
            },
            Err(e) => EvaluationObservation::Error(e.to_string()),
        }
    }

    /// One round of the stage's metrics; a failure is an `Error` measurement, never a pass.
    async fn measurements(
        &self,
        stage: AnalysisStage,
        since_step: Duration,
    ) -> Vec<MetricMeasurement> {
        let spec = &self.resource.spec;
        let steps = self
            .steps
            .map(|timing| timing.steps.as_slice())
            .unwrap_or_default();
        let metrics = metrics_at_step(
            spec,
            steps,
            self.status.current_step,
            stage,
            self.status.canary_weight,
        );
        let token_secret = spec
            .rollout
            .analysis
            .as_ref()
            .and_then(|a| a.prometheus.bearer_token_secret.as_ref());
        let token = match token_secret {
            Some(key) => match read_secret_key(self.ctx, self.namespace, key).await {
                Ok(token) => Some(token),
                Err(message) => {
                    return metrics
                        .iter()
                        .map(|m| query_error(m, message.to_string()))
                        .collect();
                }
            },
            None => None,
        };
        let Some(analyzer) = &self.ctx.analyzer else {
            return metrics
                .iter()
                .map(|m| query_error(m, "the operator runs without a metrics analyzer"))
                .collect();
        };
        let name = self.resource.metadata.name.as_deref().unwrap_or_default();
        analyzer
            .measure(MeasureRequest {
                namespace: self.namespace,
                name,
                spec,
                stage,
                metrics,
                bearer_token: token.as_deref(),
                since_step,
            })
            .await
    }
}

/// Asks the advisor about a fresh drift report: at most once per check, and not again for a
/// report it already answered (same digest).
async fn ask_advisor(
    reading: &Reading<'_>,
    summary: &crate::api::DriftSummary,
    timeout: Duration,
) -> Option<lifecycle::AdvisorObservation> {
    let (ctx, resource, namespace, status) = (
        reading.ctx,
        reading.resource,
        reading.namespace,
        reading.status,
    );
    use crate::advisor::{AdvisorError, AdvisorInput};
    let spec = &resource.spec;
    let input = AdvisorInput::from_summary(
        &spec.model.name,
        summary,
        spec.performance.as_ref().map(|p| p.accuracy_threshold),
    );
    let digest = input.digest();
    if status.advisor.as_ref().is_some_and(|a| a.digest == digest) {
        return None;
    }
    let answer = match (&ctx.advisor, &spec.advisor.api_key_secret) {
        (None, _) => Err(AdvisorError::Unreachable(
            "the operator runs without an advisor client".into(),
        )),
        (Some(_), None) => Err(AdvisorError::MissingKey(
            "spec.advisor.apiKeySecret is not set".into(),
        )),
        (Some(advisor), Some(key)) => match read_secret_key(ctx, namespace, key).await {
            Ok(api_key) => {
                advisor
                    .advise(&spec.advisor, timeout, &api_key, &input)
                    .await
            }
            Err(e) => Err(AdvisorError::MissingKey(e.to_string())),
        },
    };
    Some(lifecycle::AdvisorObservation {
        digest,
        answer: answer
            .map(lifecycle::AdvisorAdvice::from)
            .map_err(|e| lifecycle::AdvisorFailure::from(&e)),
    })
}

async fn read_deployment(
    ctx: &Context,
    namespace: &str,
    name: &str,
    variant: Variant,
) -> Result<Option<DeploymentState>> {
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(deployment) = api.get_opt(&variant_name(name, variant)).await? else {
        return Ok(None);
    };
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let version = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref())
        .and_then(|l| l.get(LABEL_MODEL_VERSION))
        .cloned();
    let status = deployment.status.unwrap_or_default();
    let generation = deployment.metadata.generation;
    Ok(Some(DeploymentState {
        desired_replicas: desired,
        ready_replicas: status.ready_replicas.unwrap_or(0),
        updated: status.observed_generation.is_some() && status.observed_generation >= generation,
        version,
    }))
}

/// State of a retraining Job from its conditions (Complete / Failed).
async fn read_job(ctx: &Context, namespace: &str, name: &str) -> Result<JobState> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(job) = api.get_opt(name).await? else {
        return Ok(JobState::Missing);
    };
    let status = job.status.unwrap_or_default();
    let condition = |type_: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == "True")
            .cloned()
    };
    if let Some(failed) = condition("Failed") {
        let message = failed
            .message
            .or(failed.reason)
            .unwrap_or_else(|| "Job failed".into());
        return Ok(JobState::Failed(message));
    }
    if condition("Complete").is_some() || status.succeeded.unwrap_or(0) > 0 {
        return Ok(JobState::Succeeded);
    }
    Ok(JobState::Running)
}

/// Why a Secret key named in the spec could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretError {
    #[error("Secret {name:?} not found in namespace {namespace}")]
    NotFound { name: String, namespace: String },
    #[error("Secret {name:?} has no key {key:?}")]
    KeyMissing { name: String, key: String },
    #[error("reading Secret {name}: {message}")]
    Unreadable { name: String, message: String },
}

impl SecretError {
    /// Condition reason.
    pub fn reason(&self) -> crate::api::Reason {
        match self {
            SecretError::NotFound { .. } => crate::api::Reason::SecretNotFound,
            SecretError::KeyMissing { .. } => crate::api::Reason::SecretKeyMissing,
            SecretError::Unreadable { .. } => crate::api::Reason::KubernetesApiError,
        }
    }
}

/// Whether a drift check of `spec` reads an object store (a URI, or captured traffic).
fn drift_reads_object_stores(spec: &crate::api::ModelDeploymentSpec) -> bool {
    let Some(drift) = &spec.drift else {
        return false;
    };
    let labelled = spec
        .performance
        .as_ref()
        .and_then(|p| p.labelled.as_ref())
        .map(|l| l.uri.as_str());
    drift.current.capture.is_some()
        || [
            Some(drift.reference.uri.as_str()),
            drift.current.uri(),
            labelled,
        ]
        .into_iter()
        .flatten()
        .any(is_object_store_uri)
}

/// The data of a Secret in `namespace` (read by name: the least rights).
async fn read_secret_data(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<std::collections::BTreeMap<String, k8s_openapi::ByteString>, SecretError> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = api
        .get_opt(name)
        .await
        .map_err(|e| SecretError::Unreadable {
            name: name.to_owned(),
            message: e.to_string(),
        })?
        .ok_or_else(|| SecretError::NotFound {
            name: name.to_owned(),
            namespace: namespace.to_string(),
        })?;
    Ok(secret.data.unwrap_or_default())
}

/// One key of a Secret in `namespace`, as text (read by name: the least rights).
pub async fn read_secret_key(
    ctx: &Context,
    namespace: &str,
    key: &crate::api::SecretKeyReference,
) -> Result<String, SecretError> {
    read_secret_data(ctx, namespace, &key.name)
        .await?
        .get(&key.key)
        .map(|v| String::from_utf8_lossy(&v.0).trim().to_string())
        .ok_or_else(|| SecretError::KeyMissing {
            name: key.name.clone(),
            key: key.key.clone(),
        })
}

/// Reads the MLflow credentials Secret. A missing Secret or key is a registry error the user
/// can fix, reported like any other resolution failure.
pub async fn read_credentials(
    ctx: &Context,
    resource: &ModelDeployment,
    namespace: &str,
) -> Result<RegistryCredentials, RegistryError> {
    let Some(secret_ref) = &resource.spec.model.credentials_secret else {
        return Ok(RegistryCredentials::None);
    };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = api
        .get_opt(&secret_ref.name)
        .await
        .map_err(|e| RegistryError::Other(format!("reading Secret {}: {e}", secret_ref.name)))?
        .ok_or_else(|| {
            RegistryError::SecretNotFound(format!(
                "credentials Secret {:?} (spec.model.credentialsSecret) not found in namespace {namespace}",
                secret_ref.name
            ))
        })?;
    let data = secret.data.unwrap_or_default();
    let text = |key: &str| {
        data.get(key)
            .map(|v| String::from_utf8_lossy(&v.0).trim().to_string())
    };
    match (text("token"), text("username"), text("password")) {
        (Some(token), _, _) => Ok(RegistryCredentials::Bearer(token)),
        (None, Some(username), Some(password)) => {
            Ok(RegistryCredentials::Basic { username, password })
        }
        _ => Err(RegistryError::SecretKeyMissing(format!(
            "credentials Secret {:?} needs key `token`, or keys `username` and `password`",
            secret_ref.name
        ))),
    }
}
