//! `mlrollout simulate`: replays a scenario through the real decision core
//! ([`crate::core::decide`]) with a virtual clock, an in-memory registry and a simulated
//! cluster (the [`Harness`]), and reports one line per transition.

pub mod harness;
pub mod scenario;
pub mod validate;

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::api::{
    AnalysisMetric, DriftSummary, ModelDeployment, ModelDeploymentStatus, RetrainingAttempt,
    Severity,
};
use crate::core::lifecycle::{DriftObservation, JobState, Observations};
use crate::core::verdict::{MetricMeasurement, judge, query_error};
use crate::registry::LINEAGE_TAG;

pub use harness::{Harness, Identity, Readiness};
use scenario::{Scenario, Training, TrainingOutcome, Variant, latest};
use validate::{ScenarioProblem, version_number};

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
    /// Under `rollout.dynamicStableScale`: what the route carries and the replicas each
    /// variant runs (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
}

/// The route's split and the variants' replicas under `dynamicStableScale`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capacity {
    /// Percent of live requests the route sends to the candidate.
    pub routed_weight: i32,
    /// (ready, desired) replicas of stable.
    pub stable_replicas: [i32; 2],
    /// (ready, desired) replicas of the candidate (zero without one).
    pub candidate_replicas: [i32; 2],
}

/// Why a simulation could not run (or stopped).
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The scenario was refused before the first tick; every problem names its field.
    #[error("{}", join(.0))]
    Invalid(Vec<ScenarioProblem>),
    /// A problem only found while running (a version the Job would register out of range).
    #[error("{0}")]
    Running(ScenarioProblem),
    /// The virtual clock would leave the range of a timestamp.
    #[error("the virtual clock cannot represent {0} s into the scenario")]
    Clock(u64),
}

fn join(problems: &[ScenarioProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Result of a run: the transitions and the final state.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub lines: Vec<Line>,
    pub last: Line,
    pub status: ModelDeploymentStatus,
}

const SIM_EPOCH: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

/// The virtual clock: `t` seconds into the scenario (checked: it never wraps).
fn instant(t: u64) -> Result<Timestamp, SimulateError> {
    i64::try_from(t)
        .ok()
        .and_then(|t| SIM_EPOCH.checked_add(t))
        .and_then(|second| Timestamp::from_second(second).ok())
        .ok_or(SimulateError::Clock(t))
}

/// Runs `scenario` against `resource`, collecting the lines.
pub fn run(resource: &ModelDeployment, scenario: &Scenario) -> Result<Outcome, SimulateError> {
    let mut lines = Vec::new();
    let (last, status) = stream(resource, scenario, |line| {
        lines.push(line.clone());
        ControlFlow::Continue(())
    })?;
    Ok(Outcome {
        lines,
        last,
        status,
    })
}

/// Runs `scenario` against `resource`, handing each line to `on_line` as it happens (which may
/// stop the run: a reader gone); returns the final line and status. The scenario is validated
/// first (see [`validate`]), so the run takes at most [`validate::MAX_TICKS`] ticks.
pub fn stream(
    resource: &ModelDeployment,
    scenario: &Scenario,
    on_line: impl FnMut(&Line) -> ControlFlow<()>,
) -> Result<(Line, ModelDeploymentStatus), SimulateError> {
    let mut problems = validate::validate(scenario);
    problems.extend(unsimulated_judges(resource));
    if !problems.is_empty() {
        return Err(SimulateError::Invalid(problems));
    }
    let mut simulation = Simulation::new(resource, scenario, on_line)?;
    let mut t: u64 = 0;
    while t <= scenario.duration_seconds && !simulation.stopped {
        simulation.tick(t)?;
        let Some(next) = t.checked_add(scenario.tick_seconds) else {
            break;
        };
        t = next;
    }
    Ok(simulation.finish())
}

/// Scenarios give metric values, not the counters a sequential judge reads: a resource with
/// sequential metrics is refused rather than judged on something it would never see.
fn unsimulated_judges(resource: &ModelDeployment) -> Vec<ScenarioProblem> {
    let metrics = resource
        .spec
        .rollout
        .analysis
        .as_ref()
        .map(|a| a.metrics.as_slice())
        .unwrap_or_default();
    metrics
        .iter()
        .filter(|m| m.judge == crate::api::Judge::Sequential)
        .map(|m| ScenarioProblem {
            path: format!("resource spec.rollout.analysis.metrics[{}].judge", m.name),
            problem: "the simulator replays metric values, not the counters a sequential judge reads; simulate this policy with threshold metrics (tests/judge_simulation.rs simulates the sequential judge)".into(),
        })
        .collect()
}

/// A scenario being replayed: the harness plus what the scenario's world remembers.
struct Simulation<'a, F> {
    scenario: &'a Scenario,
    harness: Harness,
    /// Attempt id → the version its Job registered.
    registered_attempts: BTreeMap<String, u64>,
    on_line: F,
    /// Reason of the last line handed out.
    last_reason: Option<String>,
    /// `on_line` asked to stop.
    stopped: bool,
}

impl<'a, F: FnMut(&Line) -> ControlFlow<()>> Simulation<'a, F> {
    fn new(
        resource: &ModelDeployment,
        scenario: &'a Scenario,
        on_line: F,
    ) -> Result<Self, SimulateError> {
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
        let stable = version_number("stable.version", &scenario.stable.version)
            .map_err(SimulateError::Running)?;
        harness.register(stable, &scenario.stable.metrics, &[]);
        harness.set_alias(&resource.spec.model.alias, stable);
        Ok(Self {
            scenario,
            harness,
            registered_attempts: BTreeMap::new(),
            on_line,
            last_reason: None,
            stopped: false,
        })
    }

    /// One reconcile at `t`: the scenario's changes, the observations, the decision.
    fn tick(&mut self, t: u64) -> Result<(), SimulateError> {
        self.apply_scenario_changes(t)?;
        self.harness.advance_to(instant(t)?);
        let observations = self.observe(t)?;
        let routed_before = self.capacity().map(|c| c.routed_weight);
        let decision = self.harness.reconcile(observations);
        let mut events: Vec<(String, String)> = decision
            .events
            .iter()
            .map(|e| (e.reason.as_str().to_owned(), e.note.clone()))
            .collect();
        // The route trailing the lifecycle moves without an Event of its own: say so.
        if let Some(now) = self.capacity()
            && routed_before.is_some_and(|before| before != now.routed_weight)
        {
            let message = format!(
                "the route now sends {}% to the candidate (stable {}/{} ready, candidate {}/{})",
                now.routed_weight,
                now.stable_replicas[0],
                now.stable_replicas[1],
                now.candidate_replicas[0],
                now.candidate_replicas[1]
            );
            events.push(("RouteMoved".to_owned(), message));
        }
        for (reason, note) in events {
            let mut line = line(t, self.harness.status(), &reason, &note);
            line.capacity = self.capacity();
            let flow = (self.on_line)(&line);
            self.last_reason = Some(line.reason);
            if flow.is_break() {
                self.stopped = true;
                break;
            }
        }
        Ok(())
    }

    /// Registry outages, aliases moved by hand and annotations due in this tick.
    fn apply_scenario_changes(&mut self, t: u64) -> Result<(), SimulateError> {
        let scenario = self.scenario;
        // In this tick: `at` in (t - tick, t], without overflow.
        let due = |at: u64| at <= t && t - at < scenario.tick_seconds;
        let outage = scenario
            .registry_outages
            .iter()
            .any(|[from, to]| t >= *from && t < *to);
        self.harness.set_registry_outage(outage);
        for (i, change) in scenario.registry.iter().enumerate() {
            if !due(change.at) {
                continue;
            }
            let version = version_number(&format!("registry[{i}].version"), &change.version)
                .map_err(SimulateError::Running)?;
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
            let status = self.harness.status();
            let steps = match self.harness.validated() {
                Ok(validated) => validated.timing.rollout.steps.as_slice(),
                Err(_) => &[],
            };
            let metrics = crate::core::verdict::builtin::metrics_at_step(
                self.harness.spec(),
                steps,
                status.current_step,
                stage,
                status.canary_weight,
            );
            observations.measurements = Some(measure(&metrics, self.scenario, t));
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
            .map(|s| u64::try_from(s.0.as_second() - SIM_EPOCH).unwrap_or(0))
            .unwrap_or(t);
        let Some(training) = &self.scenario.training else {
            return Ok(JobState::Running);
        };
        if t < started.saturating_add(training.duration_seconds) {
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
        let index = usize::try_from(attempt.number.saturating_sub(1).max(0)).unwrap_or(0);
        let (path, facts) = match training.candidates.get(index) {
            Some(facts) => (format!("training.candidates[{index}].version"), facts),
            None => match &training.candidate {
                Some(facts) => ("training.candidate.version".to_string(), facts),
                None => return Ok(()),
            },
        };
        let base = version_number(&path, &facts.version).map_err(SimulateError::Running)?;
        let version = if training.candidates.is_empty() {
            // Attempt n registers `version + n - 1`, still an MLflow version number.
            u64::try_from(attempt.number.saturating_sub(1).max(0))
                .ok()
                .and_then(|later| base.checked_add(later))
                .filter(|v| *v <= validate::MAX_VERSION)
                .ok_or_else(|| {
                    SimulateError::Running(ScenarioProblem {
                        path,
                        problem: format!(
                            "attempt {} would register a version above {}",
                            attempt.number,
                            validate::MAX_VERSION
                        ),
                    })
                })?
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

    /// The route's split and the replicas, when the spec scales the variants.
    fn capacity(&self) -> Option<Capacity> {
        if !self.harness.spec().rollout.dynamic_stable_scale {
            return None;
        }
        let status = self.harness.status();
        let pair = |d: Option<crate::core::decide::DeploymentState>| {
            d.map_or([0, 0], |d| [d.ready_replicas, d.desired_replicas])
        };
        Some(Capacity {
            routed_weight: status
                .routed_traffic
                .as_ref()
                .map_or(status.canary_weight, |r| r.candidate_weight),
            stable_replicas: pair(self.harness.stable_deployment()),
            candidate_replicas: pair(self.harness.candidate_deployment()),
        })
    }

    fn finish(self) -> (Line, ModelDeploymentStatus) {
        let status = self.harness.status().clone();
        let last_reason = self.last_reason.unwrap_or_else(|| "NoTransition".into());
        let last = line(
            self.scenario.duration_seconds,
            &status,
            &last_reason,
            status.message.as_deref().unwrap_or(""),
        );
        (last, status)
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
        capacity: None,
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
            label_join: None,
            features: Vec::new(),
        },
        sample_count,
    }
}

fn measure(metrics: &[AnalysisMetric], scenario: &Scenario, t: u64) -> Vec<MetricMeasurement> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fraud_detector() -> ModelDeployment {
        serde_yaml::from_str(include_str!("../../examples/fraud-detector.yaml"))
            .expect("the bundled example parses")
    }

    fn scenario(text: &str) -> Scenario {
        serde_yaml::from_str(text).expect("the test scenario parses")
    }

    #[test]
    fn the_clock_never_wraps() {
        assert!(instant(0).is_ok());
        assert!(instant(validate::MAX_SECONDS).is_ok());
        assert!(matches!(instant(u64::MAX), Err(SimulateError::Clock(_))));
        assert!(matches!(
            instant(300_000_000_000),
            Err(SimulateError::Clock(_))
        ));
    }

    #[test]
    fn an_invalid_scenario_is_refused_before_the_first_line() {
        let mut lines = 0;
        let refused = stream(
            &fraud_detector(),
            &scenario("durationSeconds: 1000000000000\nstable: {version: \"3\"}\n"),
            |_| {
                lines += 1;
                ControlFlow::Continue(())
            },
        );
        assert!(matches!(refused, Err(SimulateError::Invalid(_))));
        assert_eq!(lines, 0);
    }

    #[test]
    fn sequential_metrics_are_refused_not_judged_on_values() {
        let mut resource = fraud_detector();
        let analysis = resource.spec.rollout.analysis.get_or_insert_with(|| {
            serde_json::from_value(serde_json::json!({"prometheus": {"address": "http://p:9090"}}))
                .expect("analysis")
        });
        analysis.metrics.push(
            serde_json::from_value(serde_json::json!({"name": "errors", "judge": "sequential"}))
                .expect("metric"),
        );
        let refused = stream(
            &resource,
            &scenario("durationSeconds: 60\nstable: {version: \"3\"}\n"),
            |_| ControlFlow::Continue(()),
        );
        let Err(SimulateError::Invalid(problems)) = refused else {
            panic!("not refused: {refused:?}");
        };
        assert_eq!(
            problems[0].path,
            "resource spec.rollout.analysis.metrics[errors].judge"
        );
        assert!(problems[0].problem.contains("not the counters"));
    }

    #[test]
    fn the_reader_can_stop_the_run() {
        let mut seen = Vec::new();
        let (last, _) = stream(
            &fraud_detector(),
            &scenario("durationSeconds: 3600\nstable: {version: \"3\"}\n"),
            |line| {
                seen.push(line.at_seconds);
                ControlFlow::Break(())
            },
        )
        .expect("runs");
        assert_eq!(seen, vec![0], "no line after the reader stopped");
        assert_eq!(last.at_seconds, 3600);
    }
}
