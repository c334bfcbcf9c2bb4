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
    // What the drift check compared: with `current.capture`, the captured traffic's prefix.
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
            spec.current_data_uri(lineage.namespace, lineage.resource)
                .unwrap_or_default(),
        ),
        ("MLFLOW_TRACKING_URI", spec.model.tracking_uri.clone()),
    ];
    let pod = job_spec.template.spec.get_or_insert_with(Default::default);
    // Training talks to MLflow, not to the Kubernetes API: no token unless the template asks.
    pod.automount_service_account_token.get_or_insert(false);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::api::Trigger;

    fn job_for(template_pod: serde_json::Value) -> Job {
        let spec: crate::api::ModelDeploymentSpec = serde_json::from_value(serde_json::json!({
            "model": {"trackingUri": "http://mlflow:5000", "name": "fraud"},
            "traffic": {"provider": "none"},
            "retraining": {"triggers": {"schedule": "0 3 * * *"},
                "jobTemplate": {"template": {"spec": template_pod}}}
        }))
        .unwrap();
        let validated = crate::api::validation::validate(&spec)
            .map_err(|p| format!("{p:?}"))
            .unwrap();
        let template = validated.job_template.clone().unwrap();
        let request = JobRequest {
            number: 1,
            attempt_id: "a-1".into(),
            trigger: Trigger::Manual,
            job_name: "fraud-retrain-1".into(),
        };
        let lineage = Lineage {
            resource: "fraud",
            namespace: "ml",
            drift_summary: String::new(),
            stable_version: Some("3"),
        };
        build(
            &request,
            &template,
            &validated,
            &lineage,
            &OwnerReference::default(),
        )
    }

    fn automount(job: &Job) -> Option<bool> {
        job.spec
            .as_ref()?
            .template
            .spec
            .as_ref()?
            .automount_service_account_token
    }

    #[test]
    fn training_pods_get_no_api_token_unless_the_template_asks() {
        let plain = serde_json::json!({"restartPolicy": "Never",
            "containers": [{"name": "train", "image": "train:1"}]});
        assert_eq!(automount(&job_for(plain)), Some(false));
        let asks = serde_json::json!({"restartPolicy": "Never",
            "automountServiceAccountToken": true,
            "containers": [{"name": "train", "image": "train:1"}]});
        assert_eq!(automount(&job_for(asks)), Some(true));
    }
}
