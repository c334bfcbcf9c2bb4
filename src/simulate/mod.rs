//! `mlrollout simulate`: replays a scenario through the real decision core
//! ([`crate::core::decide`]) with a virtual clock, an in-memory registry and a simulated
//! cluster, and reports one line per transition.

pub mod scenario;

use std::collections::BTreeMap;

use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::api::validation::validate;
use crate::api::{DriftSummary, ModelDeployment, ModelDeploymentStatus, Severity};
use crate::core::decide::{DecideInput, DeploymentState, Observed, decide};
use crate::core::lifecycle::{
    self, CandidateLookup, DesiredTraffic, DriftObservation, EvaluationObservation, JobState,
    Observations, Wants,
};
use crate::core::verdict::builtin::metrics_for;
use crate::core::verdict::{AnalysisStage, MetricMeasurement, judge, query_error};
use crate::registry::memory::InMemoryRegistry;
use crate::registry::{LINEAGE_TAG, ModelRegistry, RegistryCredentials};

use scenario::{Scenario, TrainingOutcome, Variant, latest};

/// One printed line: the state after a transition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    pub at_seconds: u64,
    pub phase: String,
    pub stable: String,
    pub candidate: Option<String>,
    pub canary_weight: i32,
    pub mirror_percent: i32,
    pub reason: String,
    pub message: String,
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("scenario: {0}")]
    Scenario(String),
    #[error("the stable version {0:?} is not a version number")]
    BadVersion(String),
}

/// Result of a run: the transitions and the final state.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub lines: Vec<Line>,
    pub last: Line,
    pub status: ModelDeploymentStatus,
}

const SIM_EPOCH: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

fn version_number(v: &str) -> Result<u64, SimulateError> {
    v.parse().map_err(|_| SimulateError::BadVersion(v.into()))
}

/// A variant's Deployment in the simulated cluster: ready `ready_seconds` after its version
/// was first desired.
#[derive(Debug, Default)]
struct SimDeployment {
    version: Option<String>,
    since: u64,
}

impl SimDeployment {
    fn desire(&mut self, version: Option<&str>, now: u64) {
        if self.version.as_deref() != version {
            self.version = version.map(String::from);
            self.since = now;
        }
    }

    fn state(&self, now: u64, ready_seconds: u64, replicas: i32) -> Option<DeploymentState> {
        let version = self.version.clone()?;
        let ready = now.saturating_sub(self.since) >= ready_seconds;
        Some(DeploymentState {
            desired_replicas: replicas,
            ready_replicas: if ready { replicas.max(1) } else { 0 },
            updated: true,
            version: Some(version),
        })
    }
}

/// Runs `scenario` against `resource`.
pub fn run(resource: &ModelDeployment, scenario: &Scenario) -> Result<Outcome, SimulateError> {
    if scenario.tick_seconds == 0 {
        return Err(SimulateError::Scenario(
            "tickSeconds must be at least 1".into(),
        ));
    }
    let spec = &resource.spec;
    // Parsed once for the whole run; an invalid spec is decided on (InvalidSpec) every tick.
    let validated = validate(spec);
    let model = spec.model.name.clone();
    let registry = InMemoryRegistry::new();
    let stable_number = version_number(&scenario.stable.version)?;
    let metrics =
        |m: &BTreeMap<String, f64>| m.iter().map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>();
    let reg = |version: u64, m: &BTreeMap<String, f64>, tags: &[(&str, &str)]| {
        let owned = metrics(m);
        let refs: Vec<(&str, f64)> = owned.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        registry.register(&model, version, &refs, tags);
    };
    reg(stable_number, &scenario.stable.metrics, &[]);
    registry.set_alias(&model, &spec.model.alias, stable_number);

    let name = resource
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| "model".into());
    let namespace = resource
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let owner = OwnerReference {
        api_version: "mlrollout.io/v1alpha1".into(),
        kind: "ModelDeployment".into(),
        name: name.clone(),
        uid: "00000000-sim".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let credentials = RegistryCredentials::None;
    let mut status = ModelDeploymentStatus::default();
    let mut stable_dep = SimDeployment::default();
    let mut candidate_dep = SimDeployment::default();
    let mut annotations = BTreeMap::new();
    let mut registered_attempts: BTreeMap<String, u64> = BTreeMap::new();
    let mut lines = Vec::new();
    let replicas = spec.serving.replicas;
    // The traffic of the last decision that applied children.
    let mut traffic = DesiredTraffic::default();

    let mut t = 0;
    while t <= scenario.duration_seconds {
        let now = Timestamp::from_second(SIM_EPOCH + t as i64).unwrap_or(Timestamp::UNIX_EPOCH);
        let outage = scenario
            .registry_outages
            .iter()
            .any(|[from, to]| t >= *from && t < *to);
        registry.set_unavailable(outage);
        for change in scenario
            .registry
            .iter()
            .filter(|c| c.at <= t && c.at + scenario.tick_seconds > t)
        {
            let v = version_number(&change.version)?;
            reg(v, &change.metrics, &[]);
            registry.set_alias(&model, &change.alias, v);
        }
        for a in scenario
            .annotations
            .iter()
            .filter(|a| a.at <= t && a.at + scenario.tick_seconds > t)
        {
            match &a.value {
                Some(v) => annotations.insert(a.name.clone(), v.clone()),
                None => annotations.remove(&a.name),
            };
        }

        // The cluster follows the last decision.
        stable_dep.desire(status.stable_version.as_deref(), t);
        candidate_dep.desire(traffic.candidate_version.as_deref(), t);

        let wants = match &validated {
            Ok(validated) => lifecycle::wants(validated, &status, now),
            Err(_) => Wants::default(),
        };
        let mut obs = Observations::default();
        if wants.drift_check {
            obs.drift = Some(drift_observation(scenario, t));
        }
        // The lifecycle wants a Job only for its last, running attempt.
        if let Some(job_name) = &wants.job
            && let Some(attempt) = status.retraining_attempts.last().cloned()
        {
            let started = attempt
                .started_at
                .as_ref()
                .map(|s| (s.0.as_second() - SIM_EPOCH).max(0) as u64)
                .unwrap_or(t);
            let state = match &scenario.training {
                Some(training) if t >= started + training.duration_seconds => {
                    match training.outcome {
                        TrainingOutcome::Failed => JobState::Failed(format!(
                            "Job {job_name} failed (BackoffLimitExceeded)"
                        )),
                        TrainingOutcome::Succeeded => {
                            if !registered_attempts.contains_key(&attempt.id) {
                                let facts = training
                                    .candidates
                                    .get((attempt.number - 1).max(0) as usize)
                                    .or(training.candidate.as_ref());
                                if let Some(facts) = facts {
                                    let base = version_number(&facts.version)?;
                                    let v = if training.candidates.is_empty() {
                                        base + attempt.number as u64 - 1
                                    } else {
                                        base
                                    };
                                    let tags: Vec<(&str, &str)> = if training.untagged {
                                        vec![]
                                    } else {
                                        vec![(LINEAGE_TAG, attempt.id.as_str())]
                                    };
                                    reg(v, &facts.metrics, &tags);
                                    registered_attempts.insert(attempt.id.clone(), v);
                                }
                            }
                            JobState::Succeeded
                        }
                    }
                }
                Some(_) => JobState::Running,
                None => JobState::Running,
            };
            if state == JobState::Succeeded
                && let Some(id) = &wants.candidate_lookup
            {
                obs.candidate_lookup = Some(
                    match registry
                        .find_candidate(&spec.model, &credentials, id)
                        .now_or_never()
                    {
                        Some(Ok(Some(v))) => CandidateLookup::Found(v),
                        Some(Ok(None)) => CandidateLookup::NotFound,
                        Some(Err(e)) => CandidateLookup::Error(e.to_string()),
                        None => CandidateLookup::Error("registry did not answer".into()),
                    },
                );
            }
            obs.job = Some(state);
        }
        if let Some((candidate, champion)) = &wants.evaluation {
            obs.evaluation = Some(
                match registry
                    .evaluation_metrics(
                        &spec.model,
                        &credentials,
                        candidate,
                        champion,
                        &spec.evaluation.metric,
                    )
                    .now_or_never()
                {
                    Some(Ok((c, s))) => EvaluationObservation::Metrics {
                        candidate: c,
                        champion: s,
                    },
                    Some(Err(e)) => EvaluationObservation::Error(e.to_string()),
                    None => EvaluationObservation::Error("registry did not answer".into()),
                },
            );
        }
        let candidate_state = candidate_dep.state(t, scenario.ready_seconds, replicas);
        let candidate_ready = candidate_state.as_ref().is_some_and(|d| {
            d.ready_replicas > 0 && d.version.as_deref() == status.candidate_version.as_deref()
        });
        if let Some(stage) = wants.measure
            && candidate_ready
        {
            obs.measurements = Some(measure(spec, scenario, stage, t));
        }

        let served = registry
            .resolve(&spec.model, &credentials)
            .now_or_never()
            .unwrap_or_else(|| {
                Err(crate::registry::RegistryError::Other(
                    "registry did not answer".into(),
                ))
            });
        let decision = decide(DecideInput {
            name: &name,
            namespace: &namespace,
            uid: &owner.uid,
            generation: Some(1),
            owner: owner.clone(),
            spec: &validated,
            status: &status,
            observed: Observed {
                served: served.map_err(Into::into),
                stable_deployment: stable_dep.state(t, scenario.ready_seconds, replicas),
                candidate_deployment: candidate_state,
                lifecycle: obs,
                annotations: annotations.clone(),
            },
            now,
        });
        status = decision.status;
        if let Some(applied) = decision.traffic {
            traffic = applied;
        }
        // The shell writes to the registry after applying children.
        let pending = std::mem::take(&mut status.pending_registry_writes);
        for write in pending {
            let ok = matches!(
                registry
                    .apply_write(&spec.model, &credentials, &write)
                    .now_or_never(),
                Some(Ok(()))
            );
            if !ok {
                status.pending_registry_writes.push(write);
            }
        }
        for event in decision.events {
            lines.push(line(t, &status, event.reason.as_str(), &event.note));
        }
        t += scenario.tick_seconds;
    }
    let end = scenario.duration_seconds;
    let last_reason = lines
        .last()
        .map(|l| l.reason.clone())
        .unwrap_or_else(|| "NoTransition".into());
    let last = line(
        end,
        &status,
        &last_reason,
        status.message.as_deref().unwrap_or(""),
    );
    Ok(Outcome {
        lines,
        last,
        status,
    })
}

fn line(at: u64, status: &ModelDeploymentStatus, reason: &str, message: &str) -> Line {
    Line {
        at_seconds: at,
        phase: status.phase.as_str().into(),
        stable: status.stable_version.clone().unwrap_or_default(),
        candidate: status.candidate_version.clone(),
        canary_weight: status.canary_weight,
        mirror_percent: status.mirror_percent,
        reason: reason.into(),
        message: message.into(),
    }
}

fn drift_observation(scenario: &Scenario, t: u64) -> DriftObservation {
    let severity = latest(&scenario.drift, t, |d| d.at)
        .map(|d| d.severity)
        .unwrap_or_default();
    let accuracy = latest(&scenario.accuracy, t, |a| a.at).map(|a| a.value);
    let sample_count = latest(&scenario.samples, t, |s| s.at).map(|s| s.count);
    DriftObservation::Completed {
        summary: DriftSummary {
            checked_at: None,
            reference_rows: 0,
            current_rows: sample_count.unwrap_or(0),
            drift_detected: severity != Severity::Ok,
            drifted_share: if severity == Severity::Ok { 0.0 } else { 1.0 },
            severity,
            accuracy,
            features: Vec::new(),
        },
        sample_count,
    }
}

fn measure(
    spec: &crate::api::ModelDeploymentSpec,
    scenario: &Scenario,
    stage: AnalysisStage,
    t: u64,
) -> Vec<MetricMeasurement> {
    let metrics = metrics_for(spec, stage);
    metrics
        .iter()
        .map(|metric| {
            let find = |variant: Variant| {
                latest(
                    &scenario
                        .metrics
                        .iter()
                        .filter(|m| m.variant == variant && m.name == metric.name)
                        .cloned()
                        .collect::<Vec<_>>(),
                    t,
                    |m| m.at,
                )
                .cloned()
            };
            let candidate = find(Variant::Candidate);
            let stable = find(Variant::Stable);
            if candidate.as_ref().is_some_and(|c| c.error)
                || stable.as_ref().is_some_and(|s| s.error)
            {
                return query_error(metric, "query failed (scenario)");
            }
            judge(
                metric,
                candidate.and_then(|c| c.value),
                stable.and_then(|s| s.value),
            )
        })
        .collect()
}
