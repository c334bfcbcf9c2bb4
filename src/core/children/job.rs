//! The retraining Job of one attempt, from `spec.retraining.jobTemplate`.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::EnvVar;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::api::validation::ValidatedSpec;
use crate::core::lifecycle::JobRequest;
use crate::core::names::common_labels;

/// Label with the attempt number on retraining Jobs.
pub const LABEL_ATTEMPT: &str = "mlrollout.io/attempt";

/// Lineage passed to the training code.
#[derive(Debug, Clone)]
pub struct Lineage<'a> {
    pub resource: &'a str,
    pub namespace: &'a str,
    pub drift_summary: String,
    pub stable_version: Option<&'a str>,
}

/// Builds the Job: the template plus lineage env on every container, owner reference,
/// labels, and `activeDeadlineSeconds` from `spec.retraining.timeout`.
pub fn build(
    request: &JobRequest,
    template: &JobSpec,
    validated: &ValidatedSpec,
    lineage: &Lineage<'_>,
    owner: &OwnerReference,
) -> Job {
    let spec = validated.spec();
    let mut job_spec = template.clone();
    if let Some(timeout) = validated.timing.retraining.as_ref().map(|r| r.timeout) {
        job_spec.active_deadline_seconds =
            Some(i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX));
    }
    let mut labels = common_labels(lineage.resource);
    labels.insert("app.kubernetes.io/component".into(), "retraining".into());
    labels.insert(LABEL_ATTEMPT.into(), request.number.to_string());
    let drift = spec.drift.as_ref();
    let env = [
        ("MLROLLOUT_RESOURCE", lineage.resource.to_string()),
        ("MLROLLOUT_NAMESPACE", lineage.namespace.to_string()),
        ("MLROLLOUT_ATTEMPT", request.number.to_string()),
        ("MLROLLOUT_ATTEMPT_ID", request.attempt_id.clone()),
        (
            "MLROLLOUT_LINEAGE_TAG",
            format!("mlrollout.io/attempt={}", request.attempt_id),
        ),
        ("MLROLLOUT_TRIGGER", request.trigger.as_str().into()),
        ("MLROLLOUT_DRIFT_SUMMARY", lineage.drift_summary.clone()),
        ("MLROLLOUT_MODEL_NAME", spec.model.name.clone()),
        (
            "MLROLLOUT_STABLE_VERSION",
            lineage.stable_version.unwrap_or("").to_string(),
        ),
        (
            "MLROLLOUT_REFERENCE_URI",
            drift.map(|d| d.reference.uri.clone()).unwrap_or_default(),
        ),
        (
            "MLROLLOUT_CURRENT_URI",
            drift.map(|d| d.current.uri.clone()).unwrap_or_default(),
        ),
        ("MLFLOW_TRACKING_URI", spec.model.tracking_uri.clone()),
    ];
    let pod = job_spec.template.spec.get_or_insert_with(Default::default);
    for container in &mut pod.containers {
        let vars = container.env.get_or_insert_with(Vec::new);
        vars.retain(|v| !env.iter().any(|(name, _)| v.name == *name));
        vars.extend(env.iter().map(|(name, value)| EnvVar {
            name: (*name).into(),
            value: Some(value.clone()),
            value_from: None,
        }));
    }
    let template_meta = job_spec
        .template
        .metadata
        .get_or_insert_with(Default::default);
    template_meta
        .labels
        .get_or_insert_with(Default::default)
        .extend(labels.clone());
    Job {
        metadata: ObjectMeta {
            name: Some(request.job_name.clone()),
            namespace: Some(lineage.namespace.to_string()),
            labels: Some(labels),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        spec: Some(job_spec),
        status: None,
    }
}
