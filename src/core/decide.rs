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
mod status_conditions;

use desired_children::children_for;
use status_conditions::set_conditions;

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
mod tests;
