//! `mlrollout simulate`: replays a scenario through the real decision core
//! ([`crate::core::decide`]) with a virtual clock, an in-memory registry and a simulated
//! cluster (the [`Harness`]), and reports one line per transition.

pub mod harness;
pub mod scenario;

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::api::{
    DriftSummary, ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus, RetrainingAttempt,
    Severity,
};
use crate::core::lifecycle::{DriftObservation, JobState, Observations};
use crate::core::verdict::builtin::metrics_for;
use crate::core::verdict::{AnalysisStage, MetricMeasurement, judge, query_error};
use crate::registry::LINEAGE_TAG;

pub use harness::{Harness, Identity, Readiness};
use scenario::{Scenario, Training, TrainingOutcome, Variant, latest};

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

/// The virtual clock: `t` seconds into the scenario.
fn instant(t: u64) -> Timestamp {
    Timestamp::from_second(SIM_EPOCH + t as i64).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Runs `scenario` against `resource`.
pub fn run(resource: &ModelDeployment, scenario: &Scenario) -> Result<Outcome, SimulateError> {
    if scenario.tick_seconds == 0 {
        return Err(SimulateError::Scenario(
            "tickSeconds must be at least 1".into(),
        ));
    }
    let mut simulation = Simulation::new(resource, scenario)?;
    let mut t = 0;
    while t <= scenario.duration_seconds {
        simulation.tick(t)?;
        t += scenario.tick_seconds;
    }
    Ok(simulation.finish())
}

/// A scenario being replayed: the harness plus what the scenario's world remembers.
struct Simulation<'a> {
    scenario: &'a Scenario,
    harness: Harness,
    /// Attempt id → the version its Job registered.
    registered_attempts: BTreeMap<String, u64>,
    lines: Vec<Line>,
}

impl<'a> Simulation<'a> {
    fn new(resource: &ModelDeployment, scenario: &'a Scenario) -> Result<Self, SimulateError> {
        let identity = Identity {
            name: resource
                .metadata
                .name
                .clone()
                .unwrap_or_else(|| "model".into()),
            namespace: resource
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            uid: "00000000-sim".into(),
            generation: 1,
        };
        let readiness = Readiness::After {
            seconds: scenario.ready_seconds,
        };
        let harness = Harness::new(identity, resource.spec.clone(), readiness);
        let stable = version_number(&scenario.stable.version)?;
        harness.register(stable, &scenario.stable.metrics, &[]);
        harness.set_alias(&resource.spec.model.alias, stable);
        Ok(Self {
            scenario,
            harness,
            registered_attempts: BTreeMap::new(),
            lines: Vec::new(),
        })
    }

    /// One reconcile at `t`: the scenario's changes, the observations, the decision.
    fn tick(&mut self, t: u64) -> Result<(), SimulateError> {
        self.apply_scenario_changes(t)?;
        self.harness.advance_to(instant(t));
        let observations = self.observe(t)?;
        let decision = self.harness.reconcile(observations);
        for event in decision.events {
            let line = line(t, self.harness.status(), event.reason.as_str(), &event.note);
            self.lines.push(line);
        }
        Ok(())
    }

    /// Registry outages, aliases moved by hand and annotations due in this tick.
    fn apply_scenario_changes(&mut self, t: u64) -> Result<(), SimulateError> {
        let scenario = self.scenario;
        let due = |at: u64| at <= t && at + scenario.tick_seconds > t;
        let outage = scenario
            .registry_outages
            .iter()
            .any(|[from, to]| t >= *from && t < *to);
        self.harness.set_registry_outage(outage);
        for change in scenario.registry.iter().filter(|c| due(c.at)) {
            let version = version_number(&change.version)?;
            self.harness.register(version, &change.metrics, &[]);
            self.harness.set_alias(&change.alias, version);
        }
        for annotation in scenario.annotations.iter().filter(|a| due(a.at)) {
            self.harness
                .annotate(&annotation.name, annotation.value.clone());
        }
        Ok(())
    }

    /// What the lifecycle wants to see, as the scenario tells it.
    fn observe(&mut self, t: u64) -> Result<Observations, SimulateError> {
        let wants = self.harness.wants();
        let mut observations = Observations::default();
        if wants.drift_check {
            observations.drift = Some(drift_observation(self.scenario, t));
        }
        // The lifecycle wants a Job only for its last, running attempt.
        if let Some(job_name) = &wants.job
            && let Some(attempt) = self.harness.status().retraining_attempts.last().cloned()
        {
            let state = self.job_state(t, job_name, &attempt)?;
            if state == JobState::Succeeded
                && let Some(id) = &wants.candidate_lookup
            {
                observations.candidate_lookup = Some(self.harness.find_candidate(id));
            }
            observations.job = Some(state);
        }
        if let Some((candidate, champion)) = &wants.evaluation {
            observations.evaluation = Some(self.harness.evaluation(candidate, champion));
        }
        if let Some(stage) = wants.measure
            && self.harness.candidate_ready()
        {
            observations.measurements = Some(measure(self.harness.spec(), self.scenario, stage, t));
        }
        Ok(observations)
    }

    /// The attempt's Job runs for the training's duration, then fails or registers its
    /// version (once).
    fn job_state(
        &mut self,
        t: u64,
        job_name: &str,
        attempt: &RetrainingAttempt,
    ) -> Result<JobState, SimulateError> {
        let started = attempt
            .started_at
            .as_ref()
            .map(|s| (s.0.as_second() - SIM_EPOCH).max(0) as u64)
            .unwrap_or(t);
        let Some(training) = &self.scenario.training else {
            return Ok(JobState::Running);
        };
        if t < started + training.duration_seconds {
            return Ok(JobState::Running);
        }
        match training.outcome {
            TrainingOutcome::Failed => Ok(JobState::Failed(format!(
                "Job {job_name} failed (BackoffLimitExceeded)"
            ))),
            TrainingOutcome::Succeeded => {
                if !self.registered_attempts.contains_key(&attempt.id) {
                    self.register_candidate(training, attempt)?;
                }
                Ok(JobState::Succeeded)
            }
        }
    }

    /// What the training script registers: the attempt's version, tagged with its lineage
    /// unless the scenario says the script forgets.
    fn register_candidate(
        &mut self,
        training: &Training,
        attempt: &RetrainingAttempt,
    ) -> Result<(), SimulateError> {
        let facts = training
            .candidates
            .get((attempt.number - 1).max(0) as usize)
            .or(training.candidate.as_ref());
        let Some(facts) = facts else {
            return Ok(());
        };
        let base = version_number(&facts.version)?;
        let version = if training.candidates.is_empty() {
            base + attempt.number as u64 - 1
        } else {
            base
        };
        let tags: Vec<(&str, &str)> = if training.untagged {
            vec![]
        } else {
            vec![(LINEAGE_TAG, attempt.id.as_str())]
        };
        self.harness.register(version, &facts.metrics, &tags);
        self.registered_attempts.insert(attempt.id.clone(), version);
        Ok(())
    }

    fn finish(self) -> Outcome {
        let status = self.harness.status().clone();
        let last_reason = self
            .lines
            .last()
            .map(|l| l.reason.clone())
            .unwrap_or_else(|| "NoTransition".into());
        let last = line(
            self.scenario.duration_seconds,
            &status,
            &last_reason,
            status.message.as_deref().unwrap_or(""),
        );
        Outcome {
            lines: self.lines,
            last,
            status,
        }
    }
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
    spec: &ModelDeploymentSpec,
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
