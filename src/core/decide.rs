//! The pure decision: spec + current status + observations + `now` → desired children, new
//! status and events. No I/O, no clock; everything it needs is in [`DecideInput`].
//!
//! Layers, one function each: the validation result (an invalid spec is never half-applied),
//! model resolution (what version serves), the [`lifecycle`](crate::core::lifecycle) state
//! machine, the conditions, then the children that express the lifecycle's desired traffic.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::DynamicObject;

use crate::api::validation::{SpecProblem, ValidatedSpec};
use crate::api::{EventReason, ModelDeploymentSpec, ModelDeploymentStatus, PauseReason, Phase};
use crate::core::lifecycle::{
    self, DesiredTraffic, Observations, StepInput, StepOutput, Transition, manual,
};

use super::conditions::{self, ConditionType, ConditionUpdate, Reason};

pub mod capacity;
mod desired_children;

use desired_children::children_for;

/// How often a healthy resource is looked at again even if nothing changed.
pub const RESYNC: Duration = Duration::from_secs(300);
/// Retry delay while waiting on the registry or on replicas.
pub const SHORT_RETRY: Duration = Duration::from_secs(15);

/// What the reconciler observed of one variant's Deployment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeploymentState {
    pub desired_replicas: i32,
    pub ready_replicas: i32,
    /// The Deployment controller has seen the latest spec.
    pub updated: bool,
    /// Model version the pods serve (label `mlrollout.io/model-version`).
    pub version: Option<String>,
}

impl DeploymentState {
    /// Up to date, running `version`, with at least `min_ready` ready replicas.
    pub fn serves(&self, version: Option<&str>, min_ready: i32) -> bool {
        self.updated && self.version.as_deref() == version && self.ready_replicas >= min_ready
    }
}

/// A resolved model version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// MLflow model version number.
    pub version: String,
    /// Training run of the version, when MLflow knows it.
    pub run_id: Option<String>,
}

/// Why the registry could not say which version is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryFailure {
    pub reason: Reason,
    pub message: String,
}

/// Everything observed before deciding.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Version behind the alias (or the pinned version), or why it could not be read.
    pub served: Result<ResolvedModel, RegistryFailure>,
    pub stable_deployment: Option<DeploymentState>,
    pub candidate_deployment: Option<DeploymentState>,
    /// Lifecycle observations (drift, Job, candidate, evaluation, measurements).
    pub lifecycle: Observations,
    pub annotations: BTreeMap<String, String>,
}

impl Observed {
    /// Observations with only the registry answer and the stable Deployment.
    pub fn basic(
        served: Result<ResolvedModel, RegistryFailure>,
        stable: Option<DeploymentState>,
    ) -> Self {
        Self {
            served,
            stable_deployment: stable,
            candidate_deployment: None,
            lifecycle: Observations::default(),
            annotations: BTreeMap::new(),
        }
    }
}

/// Inputs of [`decide`].
#[derive(Debug, Clone)]
pub struct DecideInput<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
    pub generation: Option<i64>,
    pub owner: OwnerReference,
    /// The spec as [`validation::validate`](crate::api::validation::validate) judged it: with
    /// problems, nothing is applied.
    pub spec: &'a Result<ValidatedSpec, Vec<SpecProblem>>,
    pub status: &'a ModelDeploymentStatus,
    pub observed: Observed,
    pub now: Timestamp,
}

/// Why an Event is emitted: a condition changed, or the lifecycle moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventCause {
    Condition(Reason),
    Lifecycle(EventReason),
}

impl EventCause {
    pub fn as_str(self) -> &'static str {
        match self {
            EventCause::Condition(r) => r.as_str(),
            EventCause::Lifecycle(r) => r.as_str(),
        }
    }
}

/// A Kubernetes Event the shell should publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventIntent {
    pub warning: bool,
    pub reason: EventCause,
    pub note: String,
}

impl From<Transition> for EventIntent {
    fn from(t: Transition) -> Self {
        Self {
            warning: t.warning,
            reason: EventCause::Lifecycle(t.reason),
            note: t.message,
        }
    }
}

/// Objects that should exist (applied server-side, in order).
#[derive(Debug, Clone, PartialEq)]
pub enum Child {
    Deployment(Box<Deployment>),
    Service(Box<Service>),
    HttpRoute(Box<gateway_api::httproutes::HttpRoute>),
    VirtualService(Box<DynamicObject>),
    /// A variant's `inference.networking.k8s.io/v1` InferencePool (before the HTTPRoute that
    /// points at it).
    InferencePool(Box<DynamicObject>),
    /// Created if absent, never updated (Jobs are immutable; an existing one is adopted).
    Job(Box<Job>),
}

/// Objects that must not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Deployment(String),
    Service(String),
    Job(String),
}

/// Output of [`decide`].
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// New status (written only if it differs from the current one).
    pub status: ModelDeploymentStatus,
    /// Children to apply. `None` leaves every child untouched (invalid spec, unresolved model):
    /// nothing is ever half-applied.
    pub apply: Option<Vec<Child>>,
    pub remove: Vec<Removal>,
    pub events: Vec<EventIntent>,
    /// The traffic the applied children express; `None` when nothing is applied.
    pub traffic: Option<DesiredTraffic>,
    pub requeue_after: Duration,
}

/// Sets conditions and collects the Events their changes call for.
struct Conds {
    generation: Option<i64>,
    now: Timestamp,
    events: Vec<EventIntent>,
}

impl Conds {
    fn set(&mut self, status: &mut ModelDeploymentStatus, update: ConditionUpdate) {
        let changed = conditions::set(&mut status.conditions, &update, self.generation, self.now);
        if update.type_ == ConditionType::Ready {
            // kstatus' pair follows Ready (and the phase, decided before Ready).
            let (reconciling, stalled) = conditions::reconciling_and_stalled(status, &update);
            for pair in [reconciling, stalled] {
                self.set(status, pair);
            }
        }
        // Waiting for replicas and lifecycle progress are normal, not something to act on;
        // the lifecycle reports its own transitions.
        let quiet = update.reason == Reason::WaitingForReplicas
            || update.type_ == ConditionType::Progressing
            || update.type_ == ConditionType::AdvisorAvailable
            || update.type_ == ConditionType::DriftChecked
            || update.type_ == ConditionType::Reconciling
            || update.type_ == ConditionType::Stalled;
        if changed && !quiet {
            self.events.push(EventIntent {
                warning: !update.status,
                reason: EventCause::Condition(update.reason),
                note: update.message.clone(),
            });
        }
    }

    /// A decision that leaves every child as it is.
    fn hold(self, status: ModelDeploymentStatus, requeue_after: Duration) -> Decision {
        Decision {
            status,
            apply: None,
            remove: Vec::new(),
            events: self.events,
            traffic: None,
            requeue_after,
        }
    }
}

/// Decides what the cluster should look like: validation, the registry, the lifecycle, the
/// conditions, the children.
pub fn decide(input: DecideInput<'_>) -> Decision {
    let mut status = input.status.clone();
    status.observed_generation = input.generation;
    let mut conds = Conds {
        generation: input.generation,
        now: input.now,
        events: Vec::new(),
    };
    let validated = match input.spec {
        Ok(validated) => validated,
        Err(problems) => return invalid_spec(status, conds, problems),
    };
    let spec = validated.spec();
    let served_version = sync_registry(&input, spec, &mut status, &mut conds);
    // The first resolved version is adopted as stable; afterwards stable changes only by
    // promotion through the lifecycle.
    if status.stable_version.is_none() {
        match served_version.clone() {
            Some(version) => adopt_stable(spec, &mut status, &mut conds, version, input.now),
            None => return wait_for_registry(&input, status, conds),
        }
    }
    let StepOutput {
        status: stepped,
        transitions,
        job,
        mut traffic,
        mut requeue_after,
    } = lifecycle_step(&input, validated, &status, served_version);
    status = stepped;
    conds
        .events
        .extend(transitions.into_iter().map(EventIntent::from));
    status.stable_model_uri = status
        .stable_version
        .as_ref()
        .map(|v| format!("models:/{}/{v}", spec.model.name));
    let scaled = capacity::route(
        &input,
        validated,
        &mut status,
        &mut traffic,
        &mut conds.events,
        &mut requeue_after,
    );
    let (apply, remove) = children_for(&input, validated, &status, job.as_ref(), &traffic, scaled);
    let requeue_after = set_conditions(&input, spec, &mut status, &mut conds, requeue_after);
    Decision {
        status,
        apply: Some(apply),
        remove,
        events: conds.events,
        traffic: Some(traffic),
        requeue_after,
    }
}

/// Ready=False with what to fix; nothing else changes.
fn invalid_spec(
    mut status: ModelDeploymentStatus,
    mut conds: Conds,
    problems: &[SpecProblem],
) -> Decision {
    let message = describe_problems(problems);
    conds.set(
        &mut status,
        ConditionUpdate::new(
            ConditionType::Ready,
            false,
            Reason::InvalidSpec,
            message.clone(),
        ),
    );
    status.message = Some(format!("Invalid spec, nothing changed: {message}"));
    // A spec change triggers a new reconcile; no point polling.
    conds.hold(status, RESYNC)
}

/// RegistrySynced from the registry's answer; returns the served version, if read.
fn sync_registry(
    input: &DecideInput<'_>,
    spec: &ModelDeploymentSpec,
    status: &mut ModelDeploymentStatus,
    conds: &mut Conds,
) -> Option<String> {
    match &input.observed.served {
        Ok(resolved) => {
            let message = format!(
                "{} resolves to version {}",
                served_ref(spec),
                resolved.version
            );
            conds.set(
                status,
                ConditionUpdate::new(
                    ConditionType::RegistrySynced,
                    true,
                    Reason::Resolved,
                    message,
                ),
            );
            Some(resolved.version.clone())
        }
        Err(error) => {
            conds.set(
                status,
                ConditionUpdate::new(
                    ConditionType::RegistrySynced,
                    false,
                    error.reason,
                    error.message.clone(),
                ),
            );
            None
        }
    }
}

/// No stable version yet and none resolved: Pending until the registry answers.
fn wait_for_registry(
    input: &DecideInput<'_>,
    mut status: ModelDeploymentStatus,
    mut conds: Conds,
) -> Decision {
    let (reason, message) = match &input.observed.served {
        Err(e) => (e.reason, e.message.clone()),
        Ok(_) => (Reason::Unresolved, "model not resolved".to_string()),
    };
    status.phase = Phase::Pending;
    conds.set(
        &mut status,
        ConditionUpdate::new(ConditionType::Ready, false, reason, message.clone()),
    );
    status.message = Some(format!("Waiting for the model registry: {message}"));
    conds.hold(status, SHORT_RETRY)
}

/// The first resolved version becomes stable.
fn adopt_stable(
    spec: &ModelDeploymentSpec,
    status: &mut ModelDeploymentStatus,
    conds: &mut Conds,
    version: String,
    now: Timestamp,
) {
    conds.events.push(EventIntent {
        warning: false,
        reason: EventCause::Lifecycle(EventReason::StableVersionServed),
        note: format!("serving {} version {version}", spec.model.name),
    });
    status.stable_version = Some(version);
    status.phase = Phase::Stable;
    status.phase_started_at = Some(Time(now));
}

/// One step of the lifecycle on what was observed.
fn lifecycle_step(
    input: &DecideInput<'_>,
    validated: &ValidatedSpec,
    status: &ModelDeploymentStatus,
    served_version: Option<String>,
) -> StepOutput {
    let min_ready = validated.spec().serving.replicas.min(1);
    let mut observations = input.observed.lifecycle.clone();
    observations.served_version = served_version;
    observations.manual = manual::read(&input.observed.annotations, &status.handled_requests);
    observations.stable_ready = input
        .observed
        .stable_deployment
        .as_ref()
        .is_some_and(|d| d.serves(status.stable_version.as_deref(), min_ready));
    observations.candidate_ready = input
        .observed
        .candidate_deployment
        .as_ref()
        .is_some_and(|d| d.serves(status.candidate_version.as_deref(), min_ready))
        && !capacity::route_trails(validated.spec(), status);
    lifecycle::step(StepInput {
        name: input.name,
        uid: input.uid,
        generation: input.generation,
        spec: validated,
        status,
        observed: &observations,
        now: input.now,
    })
}

/// Ready, Progressing, DriftChecked, AdvisorAvailable and the status message; returns the
/// requeue delay (short while stable is not ready).
fn set_conditions(
    input: &DecideInput<'_>,
    spec: &ModelDeploymentSpec,
    status: &mut ModelDeploymentStatus,
    conds: &mut Conds,
    requeue_after: Duration,
) -> Duration {
    let stable_ready = set_ready(input, spec, status, conds);
    set_progressing(status, conds);
    set_drift_checked(input, spec, status, conds);
    set_advisor_available(spec, status, conds);
    let stable_version = status.stable_version.clone().unwrap_or_default();
    if status.phase == Phase::Stable && (stable_ready || status.message.is_none()) {
        status.message = Some(format!("Serving version {stable_version}"));
    } else if status.message.is_none() {
        status.message = Some(String::new());
    }
    if stable_ready {
        requeue_after
    } else {
        requeue_after.min(SHORT_RETRY)
    }
}

/// Ready: the stable Deployment is up to date with its replicas ready. Returns whether it is.
fn set_ready(
    input: &DecideInput<'_>,
    spec: &ModelDeploymentSpec,
    status: &mut ModelDeploymentStatus,
    conds: &mut Conds,
) -> bool {
    let stable_version = status.stable_version.clone().unwrap_or_default();
    let stable_ready = input.observed.stable_deployment.as_ref().is_some_and(|d| {
        d.updated && d.ready_replicas >= d.desired_replicas.min(spec.serving.replicas)
    });
    let update = if stable_ready {
        ConditionUpdate::new(
            ConditionType::Ready,
            true,
            Reason::Available,
            format!("version {stable_version} is serving"),
        )
    } else {
        ConditionUpdate::new(
            ConditionType::Ready,
            false,
            Reason::WaitingForReplicas,
            format!(
                "waiting for the stable Deployment of version {stable_version} to become ready"
            ),
        )
    };
    conds.set(status, update);
    stable_ready
}

fn set_progressing(status: &mut ModelDeploymentStatus, conds: &mut Conds) {
    let progressing = if status.paused {
        let why = match status.pause_reason {
            Some(PauseReason::InconclusiveAnalysis) => {
                "paused for a person: the analysis could not decide"
            }
            _ => "paused by mlrollout.io/pause",
        };
        ConditionUpdate::new(ConditionType::Progressing, false, Reason::Paused, why)
    } else if lifecycle::is_active(status.phase) {
        let what = match (status.phase, status.current_step) {
            (Phase::Progressing, Some(i)) => format!(
                "step {} at {}% on the candidate",
                i + 1,
                status.canary_weight
            ),
            (phase, _) => phase.as_str().to_string(),
        };
        ConditionUpdate::new(
            ConditionType::Progressing,
            true,
            Reason::of_phase(status.phase),
            what,
        )
    } else {
        let stable_version = status.stable_version.as_deref().unwrap_or_default();
        ConditionUpdate::new(
            ConditionType::Progressing,
            false,
            Reason::of_phase(status.phase),
            format!("version {stable_version} serves all traffic"),
        )
    };
    conds.set(status, progressing);
}

fn set_drift_checked(
    input: &DecideInput<'_>,
    spec: &ModelDeploymentSpec,
    status: &mut ModelDeploymentStatus,
    conds: &mut Conds,
) {
    let update = match &input.observed.lifecycle.drift {
        Some(lifecycle::DriftObservation::Completed { summary, .. }) => ConditionUpdate::new(
            ConditionType::DriftChecked,
            true,
            Reason::Checked,
            format!(
                "severity {}: {:.0}% of features drifted ({} reference rows, {} current rows){}",
                summary.severity,
                summary.drifted_share * 100.0,
                summary.reference_rows,
                summary.current_rows,
                label_join_message(summary)
            ),
        ),
        Some(lifecycle::DriftObservation::Failed { reason, message }) => ConditionUpdate::new(
            ConditionType::DriftChecked,
            false,
            *reason,
            format!("drift check failed, nothing else changed; retried with backoff: {message}"),
        ),
        // No check in this reconcile: the last result still stands, now for this generation
        // (`kubectl wait --for=condition=DriftChecked` waits while a condition's
        // observedGeneration is behind metadata.generation, i.e. after any spec edit until the
        // next check).
        None => {
            if spec.drift.is_some()
                && let Some(c) = status
                    .conditions
                    .iter_mut()
                    .find(|c| c.type_ == ConditionType::DriftChecked.as_str())
            {
                c.observed_generation = input.generation;
            }
            return;
        }
    };
    conds.set(status, update);
}

/// With labels joined to captured predictions: the accuracy and how the labels met them
/// (empty otherwise, so the message of a check without a join is unchanged).
fn label_join_message(summary: &crate::api::DriftSummary) -> String {
    let Some(j) = &summary.label_join else {
        return String::new();
    };
    let accuracy = summary
        .accuracy
        .map_or_else(|| "no accuracy".to_owned(), |a| format!("accuracy {a:.4}"));
    format!(
        "; {accuracy} on {} captured predictions joined with labels ({} labels without a captured prediction, {} predictions without a label)",
        j.joined, j.unmatched_labels, j.unlabelled_predictions
    )
}

fn set_advisor_available(
    spec: &ModelDeploymentSpec,
    status: &mut ModelDeploymentStatus,
    conds: &mut Conds,
) {
    let Some(advisor) = status.advisor.clone().filter(|_| spec.advisor.enabled) else {
        return;
    };
    let update = match (&advisor.error, &advisor.error_reason) {
        (Some(error), reason) => ConditionUpdate::new(
            ConditionType::AdvisorAvailable,
            false,
            reason.unwrap_or(Reason::AdvisorError),
            format!("{error}; the rule-based decision stands"),
        ),
        (None, _) => ConditionUpdate::new(
            ConditionType::AdvisorAvailable,
            true,
            Reason::Answered,
            advisor.reason.clone().unwrap_or_default(),
        ),
    };
    conds.set(status, update);
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

    #[test]
    fn the_drift_message_says_how_labels_met_the_captured_predictions() {
        let mut summary = crate::api::DriftSummary {
            accuracy: Some(0.875),
            ..Default::default()
        };
        assert_eq!(
            label_join_message(&summary),
            "",
            "no join: the message is unchanged"
        );
        summary.label_join = Some(crate::api::LabelJoinStatus {
            joined: 800,
            unlabelled_predictions: 40,
            unmatched_labels: 12,
            ..Default::default()
        });
        assert_eq!(
            label_join_message(&summary),
            "; accuracy 0.8750 on 800 captured predictions joined with labels (12 labels without a captured prediction, 40 predictions without a label)"
        );
        summary.accuracy = None;
        assert!(label_join_message(&summary).starts_with("; no accuracy on 800"));
    }
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
}
