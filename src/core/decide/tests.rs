//! The decision as a whole: invalid specs, registry outages, serving, idempotence.

use super::*;
use crate::api::ModelDeploymentStatus;

use crate::registry::RegistryError;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

fn spec(extra: serde_json::Value) -> ModelDeploymentSpec {
    let mut value = serde_json::json!({
        "model": {"trackingUri": "http://mlflow:5000", "name": "fraud"},
        "traffic": {"provider": "none"}
    });
    if let (Some(v), Some(e)) = (value.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            v.insert(k.clone(), x.clone());
        }
    }
    serde_json::from_value(value).unwrap()
}

fn owner() -> OwnerReference {
    OwnerReference {
        api_version: "mlrollout.io/v1alpha1".into(),
        kind: "ModelDeployment".into(),
        name: "fraud".into(),
        uid: "uid-1".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn run(
    spec: &ModelDeploymentSpec,
    status: &ModelDeploymentStatus,
    served: Result<&str, RegistryError>,
    deployment: Option<DeploymentState>,
) -> Decision {
    decide(DecideInput {
        name: "fraud",
        namespace: "ml",
        uid: "0123456789abcdef",
        generation: Some(3),
        owner: owner(),
        spec: &crate::api::validation::validate(spec),
        status,
        observed: Observed::basic(
            served
                .map(|v| ResolvedModel {
                    version: v.into(),
                    run_id: None,
                })
                .map_err(Into::into),
            deployment,
        ),
        now: now(),
    })
}

fn ready_deployment() -> DeploymentState {
    DeploymentState {
        desired_replicas: 2,
        ready_replicas: 2,
        updated: true,
        version: Some("3".into()),
    }
}

fn condition(
    d: &Decision,
    type_: ConditionType,
) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    conditions::get(&d.status.conditions, type_).expect("condition present")
}

#[test]
fn invalid_spec_applies_nothing_and_says_what_to_fix() {
    let bad = spec(serde_json::json!({"rollout": {"steps": [50, 10, 100]}}));
    let d = run(&bad, &Default::default(), Ok("3"), None);
    assert!(d.apply.is_none());
    let ready = condition(&d, ConditionType::Ready);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", Reason::InvalidSpec.as_str())
    );
    assert!(ready.message.contains("spec.rollout.steps"));
    assert_eq!(ready.observed_generation, Some(3));
    assert_eq!(d.status.phase, Phase::Pending);
    assert_eq!(d.events.len(), 1);
    assert!(d.events[0].warning);
}

#[test]
fn invalid_spec_keeps_what_was_already_served() {
    let previous = run(
        &spec(serde_json::json!({})),
        &Default::default(),
        Ok("3"),
        Some(ready_deployment()),
    );
    let bad = spec(serde_json::json!({"rollout": {"steps": [10]}}));
    let d = run(&bad, &previous.status, Ok("4"), Some(ready_deployment()));
    assert!(d.apply.is_none(), "nothing is half-applied");
    assert_eq!(d.status.stable_version.as_deref(), Some("3"));
}

#[test]
fn unresolved_model_without_history_waits() {
    let d = run(
        &spec(serde_json::json!({})),
        &Default::default(),
        Err(RegistryError::Unavailable("refused".into())),
        None,
    );
    assert!(d.apply.is_none());
    assert_eq!(d.status.phase, Phase::Pending);
    assert_eq!(
        condition(&d, ConditionType::Ready).reason,
        Reason::RegistryUnavailable.as_str()
    );
    assert_eq!(condition(&d, ConditionType::RegistrySynced).status, "False");
    assert_eq!(d.requeue_after, SHORT_RETRY);
}

#[test]
fn registry_outage_keeps_serving_the_known_stable_version() {
    let s = spec(serde_json::json!({}));
    let first = run(&s, &Default::default(), Ok("3"), Some(ready_deployment()));
    let d = run(
        &s,
        &first.status,
        Err(RegistryError::Unavailable("refused".into())),
        Some(ready_deployment()),
    );
    let apply = d.apply.as_ref().expect("stable keeps being applied");
    let Child::Deployment(deployment) = &apply[0] else {
        panic!("first child is the Deployment")
    };
    let command = deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .command
        .as_ref()
        .unwrap()
        .join(" ");
    assert!(command.contains("models:/fraud/3"));
    assert_eq!(
        condition(&d, ConditionType::RegistrySynced).reason,
        Reason::RegistryUnavailable.as_str()
    );
    assert_eq!(condition(&d, ConditionType::Ready).status, "True");
}

#[test]
fn serves_resolved_version_with_owner_and_labels() {
    let d = run(
        &spec(serde_json::json!({})),
        &Default::default(),
        Ok("3"),
        None,
    );
    let apply = d.apply.as_ref().unwrap();
    assert_eq!(apply.len(), 2);
    for child in apply {
        let meta = match child {
            Child::Deployment(d) => &d.metadata,
            Child::Service(s) => &s.metadata,
            other => panic!("unexpected child {other:?}"),
        };
        assert_eq!(meta.name.as_deref(), Some("fraud-stable"));
        assert_eq!(meta.namespace.as_deref(), Some("ml"));
        assert_eq!(meta.owner_references.as_ref().unwrap()[0].uid, "uid-1");
        assert_eq!(
            meta.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"],
            "mlrollout"
        );
    }
    let Some(Child::Deployment(deployment)) =
        apply.iter().find(|c| matches!(c, Child::Deployment(_)))
    else {
        panic!("a Deployment")
    };
    let pod = deployment.spec.as_ref().unwrap().template.spec.as_ref();
    assert_eq!(
        pod.unwrap().automount_service_account_token,
        Some(false),
        "a model server gets no API token by default"
    );
    assert_eq!(d.status.stable_version.as_deref(), Some("3"));
    assert_eq!(
        d.status.stable_model_uri.as_deref(),
        Some("models:/fraud/3")
    );
    assert_eq!(d.status.phase, Phase::Stable);
    assert_eq!(
        condition(&d, ConditionType::Ready).reason,
        Reason::WaitingForReplicas.as_str()
    );
    assert!(
        d.events
            .iter()
            .any(|e| e.reason == EventCause::Lifecycle(EventReason::StableVersionServed))
    );
}

#[test]
fn ready_when_replicas_are_ready_and_decisions_are_idempotent() {
    let s = spec(serde_json::json!({}));
    let first = run(&s, &Default::default(), Ok("3"), Some(ready_deployment()));
    assert_eq!(condition(&first, ConditionType::Ready).status, "True");
    // Same inputs with the status it produced: same status, no new events.
    let second = run(&s, &first.status, Ok("3"), Some(ready_deployment()));
    assert_eq!(second.status, first.status);
    assert!(second.events.is_empty(), "{:?}", second.events);
    assert_eq!(second.requeue_after, RESYNC);
}

#[test]
fn the_last_drift_check_is_restated_for_a_new_generation() {
    let s = spec(serde_json::json!({"drift": {
        "reference": {"uri": "s3://d/ref.parquet"}, "current": {"uri": "s3://d/cur.parquet"}
    }}));
    let first = run(&s, &Default::default(), Ok("3"), Some(ready_deployment()));
    let mut status = first.status.clone();
    status.conditions.push(Condition {
        type_: ConditionType::DriftChecked.as_str().into(),
        status: "True".into(),
        reason: Reason::Checked.as_str().into(),
        message: "severity ok".into(),
        last_transition_time: Time(now()),
        observed_generation: Some(2),
    });
    // Generation 3, no check due in this reconcile.
    let d = run(&s, &status, Ok("3"), Some(ready_deployment()));
    let drift = condition(&d, ConditionType::DriftChecked);
    assert_eq!(drift.observed_generation, Some(3));
    assert_eq!(
        (drift.reason.as_str(), drift.message.as_str()),
        ("Checked", "severity ok")
    );
    assert!(d.events.is_empty(), "{:?}", d.events);
}

#[test]
fn a_stale_deployment_is_not_ready() {
    let stale = DeploymentState {
        updated: false,
        ..ready_deployment()
    };
    let d = run(
        &spec(serde_json::json!({})),
        &Default::default(),
        Ok("3"),
        Some(stale),
    );
    assert_eq!(condition(&d, ConditionType::Ready).status, "False");
}
