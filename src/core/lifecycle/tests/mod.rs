//! Example-based tests of the lifecycle decision core, with concrete values: every transition
//! of [`step`], what [`wants`] asks for, manual control, gates and registry write-back.
//!
//! One file per part of the lifecycle; the fixtures they share are here:
//! - [`triggers`]: Stable → Retraining on each trigger kind, and the advisor;
//! - [`cooldown_and_budget`]: triggers held back by the cooldown and the daily budget;
//! - [`retraining`]: Retraining → Evaluating or Failed;
//! - [`evaluation`]: Evaluating → Shadow (or the first step) or a rejected candidate;
//! - [`shadow`]: the shadow phase and its analysis;
//! - [`experiment`]: the experiment (A/B) phase between shadow and the steps;
//! - [`steps`]: the canary steps and their analysis limits;
//! - [`promotion`]: the last step, Promoted → Stable;
//! - [`manual_requests`]: abort, promote, retry, pause and resume;
//! - [`registry`]: versions set by hand, refused versions, pending writes, outages;
//! - [`wants_and_drift_checks`]: what the shell is asked to observe, drift-check scheduling;
//! - [`determinism`]: same input, same output; odd statuses do not panic;
//! - [`whole_decisions`]: annotations and routes through the whole decision, on the simulated
//!   cluster ([`Harness`]).

mod cooldown_and_budget;
mod determinism;
mod dynamic_scale;
mod evaluation;
mod experiment;
mod manual_requests;
mod plan;
mod post_promotion;
mod promotion;
mod registry;
mod retraining;
mod shadow;
mod steps;
mod triggers;
mod wants_and_drift_checks;
mod whole_decisions;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

// The vocabulary every file below shares (each one starts with `use super::*`).
use super::*;
use crate::api::validation::{ValidatedSpec, validate};
use crate::api::{
    AnalysisMetric, AttemptOutcome, CandidateSource, EvaluationStatus, EventReason,
    ModelDeploymentSpec, ModelDeploymentStatus, Phase, RegistryOp, RegistryWrite,
    RetrainingAttempt, RolloutOutcome, RolloutReason, RolloutRecord, Severity, Trigger,
};
use crate::core::decide::{Child, Decision};
use crate::core::verdict::builtin::{canary_metrics, shadow_metrics};
use crate::core::verdict::{AnalysisStage, MetricMeasurement, Verdict};
use crate::simulate::{Harness, Identity, Readiness};

const NAME: &str = "fraud";
const UID: &str = "0123456789abcdef";
/// Attempt id of attempt 1 for [`UID`].
const ATTEMPT_1: &str = "01234567-1";
const T0: i64 = 1_800_000_000;
const MIN: i64 = 60;
const HOUR: i64 = 3600;

// ---------------------------------------------------------------------------------------------
// Time and specs
// ---------------------------------------------------------------------------------------------

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(T0 + seconds).unwrap()
}

fn time(seconds: i64) -> Option<Time> {
    Some(Time(at(seconds)))
}

/// RFC 7386 merge patch (`null` removes a key).
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// The fraud-detector-like spec the tests start from: drift-high retraining, a shadow phase
/// of 10 minutes, steps 10/50/100 of 5 minutes each with 3 measurements per step.
fn spec_with(patch: Value) -> ModelDeploymentSpec {
    let mut value = json!({
        "model": {"trackingUri": "http://mlflow:5000", "name": "fraud", "alias": "champion"},
        "traffic": {"provider": "gatewayAPI", "parentRefs": [{"name": "gw"}]},
        "retraining": {
            "triggers": {"driftSeverity": "high"},
            "cooldown": "6h",
            "maxAttemptsPerDay": 3,
            "timeout": "2h",
            "jobTemplate": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "train", "image": "train:1"}]
            }}}
        },
        "evaluation": {"metric": "accuracy", "direction": "higherIsBetter", "minImprovement": 0.005},
        "shadow": {"enabled": true, "mirrorPercent": 100, "duration": "10m"},
        "rollout": {
            "steps": [10, 50, 100],
            "stepDuration": "5m",
            "progressDeadline": "30m",
            "analysis": {
                "prometheus": {"address": "http://prometheus:9090"},
                "interval": "1m",
                "count": 3,
                "onInconclusive": "pause"
            }
        }
    });
    merge(&mut value, &patch);
    serde_json::from_value(value).unwrap()
}

fn spec() -> ModelDeploymentSpec {
    spec_with(json!({}))
}

/// One canary metric with explicit limits (failure 1, inconclusive 2, errors 4) and steps of
/// an hour, so that only the limits end a step.
fn limited_spec(on_inconclusive: &str) -> ModelDeploymentSpec {
    spec_with(json!({"rollout": {"stepDuration": "1h", "analysis": {
        "onInconclusive": on_inconclusive,
        "metrics": [{
            "name": "error-rate",
            "query": "q",
            "max": 0.05,
            "failureLimit": 1,
            "inconclusiveLimit": 2,
            "consecutiveErrorLimit": 4
        }]
    }}}))
}

/// `spec` parsed; the fixtures are valid specs.
fn valid(spec: &ModelDeploymentSpec) -> ValidatedSpec {
    validate(spec).expect("the fixture spec is valid")
}

fn metric_names(spec: &ModelDeploymentSpec, stage: AnalysisStage) -> Vec<String> {
    match stage {
        AnalysisStage::Shadow => shadow_metrics(&spec.shadow),
        AnalysisStage::Canary => crate::core::verdict::builtin::effective_canary_metrics(
            spec.rollout
                .analysis
                .as_ref()
                .map(|a| a.metrics.as_slice())
                .unwrap_or(&[]),
        ),
        AnalysisStage::PostPromotion => spec
            .rollout
            .post_promotion
            .as_ref()
            .map(|p| p.metrics.clone())
            .unwrap_or_default(),
    }
    .into_iter()
    .map(|m| m.name)
    .collect()
}

// ---------------------------------------------------------------------------------------------
// Statuses, one per phase
// ---------------------------------------------------------------------------------------------

fn stable() -> ModelDeploymentStatus {
    ModelDeploymentStatus {
        phase: Phase::Stable,
        stable_version: Some("3".into()),
        phase_started_at: time(-24 * HOUR),
        ..Default::default()
    }
}

fn attempt(number: i64, started: i64, outcome: AttemptOutcome) -> RetrainingAttempt {
    RetrainingAttempt {
        number,
        id: attempt_id(UID, number),
        trigger: Trigger::Drift,
        job_name: job_name(NAME, number),
        started_at: time(started),
        finished_at: None,
        outcome,
        candidate_version: None,
        message: None,
    }
}

fn retraining(started: i64) -> ModelDeploymentStatus {
    ModelDeploymentStatus {
        phase: Phase::Retraining,
        phase_started_at: time(started),
        schedule_anchor: time(started),
        retraining_attempts: vec![attempt(1, started, AttemptOutcome::Running)],
        ..stable()
    }
}

fn evaluating(started: i64) -> ModelDeploymentStatus {
    let mut done = attempt(1, started - HOUR, AttemptOutcome::Succeeded);
    done.candidate_version = Some("4".into());
    ModelDeploymentStatus {
        phase: Phase::Evaluating,
        phase_started_at: time(started),
        candidate_version: Some("4".into()),
        candidate_source: Some(CandidateSource::Retraining),
        retraining_attempts: vec![done],
        ..stable()
    }
}

fn in_shadow(started: i64) -> ModelDeploymentStatus {
    ModelDeploymentStatus {
        phase: Phase::Shadow,
        phase_started_at: time(started),
        mirror_percent: 100,
        canary_weight: 0,
        evaluation: Some(EvaluationStatus {
            metric: "accuracy".into(),
            candidate_value: Some(0.91),
            champion_value: Some(0.88),
            passed: true,
            reason: "ok".into(),
        }),
        pending_registry_writes: vec![],
        ..evaluating(started)
    }
}

fn at_step(index: i32, weight: i32, started: i64) -> ModelDeploymentStatus {
    ModelDeploymentStatus {
        phase: Phase::Progressing,
        current_step: Some(index),
        canary_weight: weight,
        mirror_percent: 0,
        ..in_shadow(started)
    }
}

fn after_attempts(starts: &[i64]) -> ModelDeploymentStatus {
    ModelDeploymentStatus {
        phase: Phase::Failed,
        retraining_attempts: starts
            .iter()
            .enumerate()
            .map(|(i, s)| attempt(i as i64 + 1, *s, AttemptOutcome::Failed))
            .collect(),
        schedule_anchor: time(starts.last().copied().unwrap_or(0)),
        ..stable()
    }
}

fn rolled_back_v4() -> ModelDeploymentStatus {
    ModelDeploymentStatus {
        phase: Phase::RolledBack,
        history: vec![RolloutRecord {
            candidate_version: "4".into(),
            previous_version: Some("3".into()),
            outcome: RolloutOutcome::RolledBack,
            reason: RolloutReason::AnalysisFailed,
            finished_at: time(-HOUR),
        }],
        ..stable()
    }
}

// ---------------------------------------------------------------------------------------------
// Observations
// ---------------------------------------------------------------------------------------------

fn obs() -> Observations {
    Observations {
        served_version: Some("3".into()),
        stable_ready: true,
        candidate_ready: true,
        ..Default::default()
    }
}

fn with_manual(request: Request, value: &str) -> Observations {
    Observations {
        manual: ManualInput {
            paused: false,
            requests: vec![(request, value.into())],
        },
        ..obs()
    }
}

fn drift(severity: Severity) -> DriftObservation {
    DriftObservation::Completed {
        summary: DriftSummary {
            severity,
            drift_detected: severity != Severity::Ok,
            drifted_share: if severity == Severity::Ok { 0.0 } else { 0.6 },
            ..Default::default()
        },
        sample_count: None,
    }
}

fn metrics(candidate: Option<f64>, champion: Option<f64>) -> Observations {
    Observations {
        evaluation: Some(EvaluationObservation::Metrics {
            candidate,
            champion,
        }),
        ..obs()
    }
}

fn measurement(name: &str, verdict: Verdict) -> MetricMeasurement {
    MetricMeasurement {
        name: name.into(),
        verdict,
        candidate: (verdict != Verdict::Inconclusive && verdict != Verdict::Error).then_some(0.01),
        stable: Some(0.01),
        threshold: "<= 1.5 x stable".into(),
        error: (verdict == Verdict::Error).then(|| "connection refused".into()),
    }
}

/// One round of measurements of every metric of `stage`; `name` (if any) gets `verdict`,
/// the others pass.
fn round(
    spec: &ModelDeploymentSpec,
    stage: AnalysisStage,
    name: Option<&str>,
    verdict: Verdict,
) -> Observations {
    let measurements = metric_names(spec, stage)
        .iter()
        .map(|n| {
            let v = if name.is_none_or(|x| x == n) {
                verdict
            } else {
                Verdict::Passed
            };
            measurement(n, v)
        })
        .collect();
    Observations {
        measurements: Some(measurements),
        ..obs()
    }
}

fn passing(spec: &ModelDeploymentSpec, stage: AnalysisStage) -> Observations {
    round(spec, stage, None, Verdict::Passed)
}

// ---------------------------------------------------------------------------------------------
// Running the lifecycle, and what to expect of it
// ---------------------------------------------------------------------------------------------

fn run(
    spec: &ModelDeploymentSpec,
    status: &ModelDeploymentStatus,
    observed: &Observations,
    now: Timestamp,
) -> StepOutput {
    step(StepInput {
        name: NAME,
        uid: UID,
        generation: Some(1),
        spec: &valid(spec),
        status,
        observed,
        now,
    })
}

/// `status` after a passing `stage` analysis round at each minute of `minutes`.
fn pass_minutes(
    spec: &ModelDeploymentSpec,
    mut status: ModelDeploymentStatus,
    stage: AnalysisStage,
    minutes: std::ops::RangeInclusive<i64>,
) -> ModelDeploymentStatus {
    for minute in minutes {
        status = run(spec, &status, &passing(spec, stage), at(minute * MIN)).status;
    }
    status
}

/// [`super::wants`] for a fixture spec.
fn wants(spec: &ModelDeploymentSpec, status: &ModelDeploymentStatus, now: Timestamp) -> Wants {
    super::wants(&valid(spec), status, now)
}

fn reasons(out: &StepOutput) -> Vec<EventReason> {
    out.transitions.iter().map(|t| t.reason).collect()
}

fn write(op: RegistryOp, version: Option<&str>, key: &str, value: Option<&str>) -> RegistryWrite {
    RegistryWrite {
        op,
        version: version.map(String::from),
        key: key.into(),
        value: value.map(String::from),
    }
}

/// The writes a rollback of candidate 4 (stable 3) owes the registry.
fn rollback_writes(reason: RolloutReason) -> Vec<RegistryWrite> {
    vec![
        write(RegistryOp::SetAlias, Some("3"), "champion", None),
        write(RegistryOp::DeleteAlias, None, "challenger", None),
        write(
            RegistryOp::SetTag,
            Some("4"),
            "mlrollout.io/rollout",
            Some(&format!("rolled-back: {reason}")),
        ),
    ]
}

fn assert_rolled_back(out: &StepOutput, outcome: RolloutOutcome, reason: RolloutReason) {
    let s = &out.status;
    assert_eq!(s.phase, Phase::RolledBack, "{:?}", out.transitions);
    assert_eq!(s.canary_weight, 0);
    assert_eq!(s.mirror_percent, 0);
    assert_eq!(s.current_step, None);
    assert_eq!(s.candidate_version, None);
    assert_eq!(s.candidate_source, None);
    assert_eq!(s.stable_version.as_deref(), Some("3"));
    assert_eq!(s.analysis, None);
    let last = s.history.last().expect("a history record");
    assert_eq!(last.candidate_version, "4");
    assert_eq!(last.previous_version.as_deref(), Some("3"));
    assert_eq!(last.outcome, outcome);
    assert_eq!(last.reason, reason);
    assert_eq!(s.pending_registry_writes, rollback_writes(reason));
    let event = out
        .transitions
        .iter()
        .find(|t| t.reason == EventReason::RolledBack)
        .expect("RolledBack event");
    assert!(event.warning);
    assert!(
        event.message.contains("version 4 rolled back"),
        "{}",
        event.message
    );
    assert_eq!(out.job, None);
}

// ---------------------------------------------------------------------------------------------
// Whole decisions on the simulated cluster
// ---------------------------------------------------------------------------------------------

/// The simulated cluster picked up at `status`: the registry serves version 3 behind
/// `champion`, the Deployments run the versions the status names and are ready.
fn cluster(spec: &ModelDeploymentSpec, status: ModelDeploymentStatus) -> Harness {
    let identity = Identity {
        name: NAME.into(),
        namespace: "ml".into(),
        uid: UID.into(),
        generation: 1,
    };
    let readiness = Readiness::Scripted {
        stable: true,
        candidate: true,
    };
    let harness = Harness::new(identity, spec.clone(), readiness).resuming(status);
    harness.register(3, &BTreeMap::new(), &[]);
    harness.set_alias("champion", 3);
    harness
}

/// One whole reconcile at `now`, with no lifecycle observations (no check, Job or
/// measurement is due in these tests).
fn reconcile_at(cluster: &mut Harness, now: Timestamp) -> Decision {
    cluster.advance_to(now);
    cluster.reconcile(Observations::default())
}

/// (backend name, weight) of the decided HTTPRoute.
fn route_weights(d: &Decision) -> Vec<(String, i32)> {
    let route = d
        .apply
        .as_ref()
        .unwrap()
        .iter()
        .find_map(|c| match c {
            Child::HttpRoute(r) => Some(r),
            _ => None,
        })
        .expect("an HTTPRoute");
    route.spec.rules.as_ref().unwrap()[0]
        .backend_refs
        .as_ref()
        .unwrap()
        .iter()
        .map(|b| (b.name.clone(), b.weight.unwrap()))
        .collect()
}

#[test]
fn the_metric_lists_used_by_the_tests_match_the_defaults() {
    // Guards the fixtures: the default canary metrics are error-rate and latency-p99.
    let names: Vec<String> = canary_metrics()
        .into_iter()
        .map(|m: AnalysisMetric| m.name)
        .collect();
    assert_eq!(names, vec!["error-rate", "latency-p99"]);
    assert_eq!(
        metric_names(&spec(), AnalysisStage::Shadow),
        vec!["prediction-psi", "error-rate", "latency-p99"]
    );
}
