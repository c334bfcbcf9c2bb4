//! The pure decision: spec + current status + observations + `now` → desired children, new
//! status and events. No I/O, no clock; everything it needs is in [`DecideInput`].

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;

use crate::api::validation::{self, SpecProblem};
use crate::api::{ModelDeploymentSpec, ModelDeploymentStatus, Phase};
use crate::registry::{RegistryError, ResolvedModel};

use super::children::{self, VariantInput};
use super::conditions::{self, ConditionUpdate, READY, REGISTRY_SYNCED};
use super::names::Variant;

/// How often a healthy resource is looked at again even if nothing changed.
pub const RESYNC: Duration = Duration::from_secs(300);
/// Retry delay while waiting on the registry or on replicas.
pub const SHORT_RETRY: Duration = Duration::from_secs(15);

/// What the reconciler observed of one variant's Deployment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeploymentState {
    pub desired_replicas: i32,
    pub ready_replicas: i32,
    pub updated: bool,
}

/// Everything observed before deciding.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Version behind the alias (or the pinned version), or why it could not be read.
    pub served: Result<ResolvedModel, RegistryError>,
    /// The stable Deployment as it is now, if it exists.
    pub stable_deployment: Option<DeploymentState>,
}

/// Inputs of [`decide`].
#[derive(Debug, Clone)]
pub struct DecideInput<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub generation: Option<i64>,
    pub owner: OwnerReference,
    pub spec: &'a ModelDeploymentSpec,
    pub status: &'a ModelDeploymentStatus,
    pub observed: Observed,
    pub now: Timestamp,
}

/// A Kubernetes Event the shell should publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventIntent {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// Objects that should exist (applied server-side, in order).
#[derive(Debug, Clone, PartialEq)]
pub enum Child {
    Deployment(Box<Deployment>),
    Service(Box<Service>),
}

/// Output of [`decide`].
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// New status (written only if it differs from the current one).
    pub status: ModelDeploymentStatus,
    /// Children to apply. `None` leaves every child untouched (invalid spec, unresolved model):
    /// nothing is ever half-applied.
    pub apply: Option<Vec<Child>>,
    pub events: Vec<EventIntent>,
    pub requeue_after: Duration,
}

/// Decides what the cluster should look like.
pub fn decide(input: DecideInput<'_>) -> Decision {
    let mut status = input.status.clone();
    status.observed_generation = input.generation;
    let mut events = Vec::new();
    let generation = input.generation;
    let now = input.now;
    let set = |status: &mut ModelDeploymentStatus,
               events: &mut Vec<EventIntent>,
               update: ConditionUpdate| {
        let changed = conditions::set(&mut status.conditions, &update, generation, now);
        // Waiting for replicas is normal progress, not something a person must act on.
        if changed && (update.status || update.reason != "WaitingForReplicas") {
            events.push(EventIntent {
                warning: !update.status,
                reason: update.reason.clone(),
                note: update.message.clone(),
            });
        }
    };

    let validated = match validation::validate(input.spec) {
        Ok(v) => v,
        Err(problems) => {
            let message = describe_problems(&problems);
            set(
                &mut status,
                &mut events,
                ConditionUpdate::new(READY, false, "InvalidSpec", message.clone()),
            );
            status.message = Some(format!("Invalid spec, nothing changed: {message}"));
            return Decision {
                status,
                apply: None,
                events,
                // A spec change triggers a new reconcile; no point polling.
                requeue_after: RESYNC,
            };
        }
    };

    let resolved_version = match &input.observed.served {
        Ok(resolved) => {
            set(
                &mut status,
                &mut events,
                ConditionUpdate::new(
                    REGISTRY_SYNCED,
                    true,
                    "Resolved",
                    format!(
                        "{} resolves to version {}",
                        served_ref(input.spec),
                        resolved.version
                    ),
                ),
            );
            Some(resolved.version.clone())
        }
        Err(error) => {
            set(
                &mut status,
                &mut events,
                ConditionUpdate::new(REGISTRY_SYNCED, false, error.reason(), error.to_string()),
            );
            None
        }
    };

    // Until a version has been resolved once there is nothing to serve.
    let Some(stable_version) = resolved_version.or_else(|| status.stable_version.clone()) else {
        let (reason, message) = match &input.observed.served {
            Err(e) => (e.reason(), e.to_string()),
            Ok(_) => ("Unresolved", "model not resolved".to_string()),
        };
        set(
            &mut status,
            &mut events,
            ConditionUpdate::new(READY, false, reason, message.clone()),
        );
        status.phase = Phase::Pending;
        status.message = Some(format!("Waiting for the model registry: {message}"));
        return Decision {
            status,
            apply: None,
            events,
            requeue_after: SHORT_RETRY,
        };
    };

    if status.stable_version.as_deref() != Some(stable_version.as_str()) {
        events.push(EventIntent {
            warning: false,
            reason: "StableVersionServed".into(),
            note: format!("serving {} version {stable_version}", input.spec.model.name),
        });
    }
    let stable = VariantInput {
        resource_name: input.name,
        namespace: input.namespace,
        owner: input.owner.clone(),
        spec: input.spec,
        validated: &validated,
        variant: Variant::Stable,
        model_version: &stable_version,
        replicas: input.spec.serving.replicas,
    };
    let apply = vec![
        Child::Deployment(Box::new(children::deployment::build(&stable))),
        Child::Service(Box::new(children::service::build(&stable))),
    ];
    status.stable_model_uri = Some(stable.model_uri());
    status.stable_version = Some(stable_version.clone());
    if status.phase == Phase::Pending {
        status.phase = Phase::Stable;
    }

    let available = input.observed.stable_deployment.as_ref().is_some_and(|d| {
        d.updated && d.ready_replicas >= d.desired_replicas.min(input.spec.serving.replicas)
    });
    let requeue_after = if available {
        set(
            &mut status,
            &mut events,
            ConditionUpdate::new(
                READY,
                true,
                "Available",
                format!("version {stable_version} is serving"),
            ),
        );
        status.message = Some(format!("Serving version {stable_version}"));
        RESYNC
    } else {
        set(
            &mut status,
            &mut events,
            ConditionUpdate::new(
                READY,
                false,
                "WaitingForReplicas",
                format!(
                    "waiting for the stable Deployment of version {stable_version} to become ready"
                ),
            ),
        );
        status.message = Some(format!("Rolling out version {stable_version}"));
        SHORT_RETRY
    };

    Decision {
        status,
        apply: Some(apply),
        events,
        requeue_after,
    }
}

fn served_ref(spec: &ModelDeploymentSpec) -> String {
    match &spec.model.version {
        Some(v) => format!("models:/{}/{v} (pinned)", spec.model.name),
        None => format!("models:/{}@{}", spec.model.name, spec.model.alias),
    }
}

fn describe_problems(problems: &[SpecProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ModelDeploymentStatus;

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
            generation: Some(3),
            owner: owner(),
            spec,
            status,
            observed: Observed {
                served: served.map(|v| ResolvedModel {
                    version: v.into(),
                    run_id: None,
                }),
                stable_deployment: deployment,
            },
            now: now(),
        })
    }

    fn ready_deployment() -> DeploymentState {
        DeploymentState {
            desired_replicas: 2,
            ready_replicas: 2,
            updated: true,
        }
    }

    fn condition<'a>(d: &'a Decision, type_: &str) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        conditions::get(&d.status.conditions, type_).expect("condition present")
    }


    #[test]
    fn invalid_spec_applies_nothing_and_says_what_to_fix() {
        let bad = spec(serde_json::json!({"rollout": {"steps": [50, 10, 100]}}));
        let d = run(&bad, &Default::default(), Ok("3"), None);
        assert!(d.apply.is_none());
        let ready = condition(&d, READY);
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "InvalidSpec"));
        assert!(ready.message.contains("spec.rollout.steps"));
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(d.status.phase, Phase::Pending);
        assert_eq!(d.events.len(), 1);
        assert!(d.events[0].warning);
    }

    #[test]
    fn invalid_spec_keeps_what_was_already_served() {
        let previous = run(&spec(serde_json::json!({})), &Default::default(), Ok("3"), Some(ready_deployment()));
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
        assert_eq!(condition(&d, READY).reason, "RegistryUnavailable");
        assert_eq!(condition(&d, REGISTRY_SYNCED).status, "False");
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
        let command = deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
            .command
            .as_ref()
            .unwrap()
            .join(" ");
        assert!(command.contains("models:/fraud/3"));
        assert_eq!(condition(&d, REGISTRY_SYNCED).reason, "RegistryUnavailable");
        assert_eq!(condition(&d, READY).status, "True");
    }

    #[test]
    fn serves_resolved_version_with_owner_and_labels() {
        let d = run(&spec(serde_json::json!({})), &Default::default(), Ok("3"), None);
        let apply = d.apply.as_ref().unwrap();
        assert_eq!(apply.len(), 2);
        for child in apply {
            let meta = match child {
                Child::Deployment(d) => &d.metadata,
                Child::Service(s) => &s.metadata,
            };
            assert_eq!(meta.name.as_deref(), Some("fraud-stable"));
            assert_eq!(meta.namespace.as_deref(), Some("ml"));
            assert_eq!(meta.owner_references.as_ref().unwrap()[0].uid, "uid-1");
            assert_eq!(meta.labels.as_ref().unwrap()["app.kubernetes.io/managed-by"], "mlrollout");
        }
        assert_eq!(d.status.stable_version.as_deref(), Some("3"));
        assert_eq!(d.status.stable_model_uri.as_deref(), Some("models:/fraud/3"));
        assert_eq!(d.status.phase, Phase::Stable);
        assert_eq!(condition(&d, READY).reason, "WaitingForReplicas");
        assert!(d.events.iter().any(|e| e.reason == "StableVersionServed"));
    }

    #[test]
    fn ready_when_replicas_are_ready_and_decisions_are_idempotent() {
        let s = spec(serde_json::json!({}));
        let first = run(&s, &Default::default(), Ok("3"), Some(ready_deployment()));
        assert_eq!(condition(&first, READY).status, "True");
        // Same inputs with the status it produced: same status, no new events.
        let second = run(&s, &first.status, Ok("3"), Some(ready_deployment()));
        assert_eq!(second.status, first.status);
        assert!(second.events.is_empty(), "{:?}", second.events);
        assert_eq!(second.requeue_after, RESYNC);
    }

    #[test]
    fn a_stale_deployment_is_not_ready() {
        let stale = DeploymentState {
            updated: false,
            ..ready_deployment()
        };
        let d = run(&spec(serde_json::json!({})), &Default::default(), Ok("3"), Some(stale));
        assert_eq!(condition(&d, READY).status, "False");
    }
}
