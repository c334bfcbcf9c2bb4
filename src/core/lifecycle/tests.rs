//! Example-based tests of the lifecycle decision core: every transition of [`step`], what
//! [`wants`] asks for, manual control, gates and registry write-back, with concrete values.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::*;
use crate::api::validation::{ValidatedSpec, validate};
use crate::api::{
    AnalysisMetric, AnalysisStatus, AttemptOutcome, CandidateSource, DeferredTrigger,
    EvaluationStatus, EventReason, ModelDeploymentSpec, ModelDeploymentStatus, PauseReason, Phase,
    Reason, RegistryOp, RegistryWrite, RetrainingAttempt, RolloutOutcome, RolloutReason,
    RolloutRecord, Severity, Trigger,
};
use crate::core::decide::{Child, Decision, EventCause, Removal};
use crate::core::verdict::builtin::{canary_metrics, shadow_metrics};
use crate::core::verdict::{AnalysisStage, MetricMeasurement, Verdict};
use crate::simulate::{Harness, Identity, Readiness};

const NAME: &str = "fraud";
const UID: &str = "0123456789abcdef";
/// Attempt id of attempt 1 for [`UID`].
const ATTEMPT_1: &str = "01234567-1";
const T0: i64 = 1_800_000_000;

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(T0 + seconds).unwrap()
}

fn time(seconds: i64) -> Option<Time> {
    Some(Time(at(seconds)))
}

const MIN: i64 = 60;
const HOUR: i64 = 3600;

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

/// `spec` parsed; the fixtures are valid specs.
fn valid(spec: &ModelDeploymentSpec) -> ValidatedSpec {
    validate(spec).expect("the fixture spec is valid")
}

/// [`super::wants`] for a fixture spec.
fn wants(spec: &ModelDeploymentSpec, status: &ModelDeploymentStatus, now: Timestamp) -> Wants {
    super::wants(&valid(spec), status, now)
}

fn reasons(out: &StepOutput) -> Vec<EventReason> {
    out.transitions.iter().map(|t| t.reason).collect()
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
    }
    .into_iter()
    .map(|m| m.name)
    .collect()
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
// Stable → Retraining, on each trigger kind
// ---------------------------------------------------------------------------------------------

#[test]
fn drift_trigger_starts_attempt_one_with_its_job() {
    let now = at(0);
    let out = run(
        &spec(),
        &stable(),
        &Observations {
            drift: Some(drift(Severity::High)),
            ..obs()
        },
        now,
    );
    let s = &out.status;
    assert_eq!(s.phase, Phase::Retraining);
    assert_eq!(s.phase_started_at, Some(Time(now)));
    assert_eq!(s.retraining_attempts.len(), 1);
    let a = &s.retraining_attempts[0];
    assert_eq!(a.number, 1);
    assert_eq!(a.id, ATTEMPT_1);
    assert_eq!(a.trigger, Trigger::Drift);
    assert_eq!(a.job_name, "fraud-retrain-1");
    assert_eq!(a.outcome, AttemptOutcome::Running);
    assert_eq!(a.started_at, Some(Time(now)));
    assert_eq!(s.schedule_anchor, Some(Time(now)));
    assert_eq!(s.candidate_version, None);
    assert_eq!(s.drift.as_ref().unwrap().severity, Severity::High);
    assert_eq!(
        out.job,
        Some(JobRequest {
            number: 1,
            attempt_id: ATTEMPT_1.into(),
            trigger: Trigger::Drift,
            job_name: "fraud-retrain-1".into(),
        })
    );
    assert_eq!(
        reasons(&out),
        vec![
            EventReason::DriftSeverityChanged,
            EventReason::RetrainingStarted
        ]
    );
    assert!(out.transitions[0].warning, "a drift increase is a warning");
    assert_eq!(
        out.transitions[0].message,
        "drift severity unknown -> high (60% of features drifted)"
    );
    assert!(!out.transitions[1].warning);
}

#[test]
fn drift_below_the_configured_severity_does_not_fire() {
    let out = run(
        &spec(),
        &stable(),
        &Observations {
            drift: Some(drift(Severity::Medium)),
            ..obs()
        },
        at(0),
    );
    assert_eq!(out.status.phase, Phase::Stable);
    assert_eq!(reasons(&out), vec![EventReason::DriftSeverityChanged]);
    assert!(out.status.retraining_attempts.is_empty());

    let medium = spec_with(json!({"retraining": {"triggers": {"driftSeverity": "medium"}}}));
    let out = run(
        &medium,
        &stable(),
        &Observations {
            drift: Some(drift(Severity::Medium)),
            ..obs()
        },
        at(0),
    );
    assert_eq!(out.status.phase, Phase::Retraining);
    assert_eq!(out.status.retraining_attempts[0].trigger, Trigger::Drift);
}

#[test]
fn accuracy_trigger_fires_below_the_threshold_only() {
    let s = spec_with(
        json!({"retraining": {"triggers": {"driftSeverity": null, "accuracyBelow": 0.85}}}),
    );
    let with_accuracy = |accuracy: f64| Observations {
        drift: Some(DriftObservation::Completed {
            summary: DriftSummary {
                severity: Severity::Ok,
                accuracy: Some(accuracy),
                ..Default::default()
            },
            sample_count: None,
        }),
        ..obs()
    };
    let out = run(&s, &stable(), &with_accuracy(0.85), at(0));
    assert_eq!(out.status.phase, Phase::Stable, "0.85 is not below 0.85");
    let out = run(&s, &stable(), &with_accuracy(0.80), at(0));
    assert_eq!(out.status.phase, Phase::Retraining);
    assert_eq!(out.status.retraining_attempts[0].trigger, Trigger::Accuracy);
    assert_eq!(
        out.status.retraining_attempts[0].message.as_deref(),
        Some("accuracy 0.8000 is below 0.85")
    );
}

#[test]
fn new_samples_trigger_counts_from_the_baseline() {
    let s =
        spec_with(json!({"retraining": {"triggers": {"driftSeverity": null, "newSamples": 1000}}}));
    let with_rows = |rows: i64| Observations {
        drift: Some(DriftObservation::Completed {
            summary: DriftSummary {
                severity: Severity::Ok,
                ..Default::default()
            },
            sample_count: Some(rows),
        }),
        ..obs()
    };
    // The first count is the baseline: history is not "new".
    let first = run(&s, &stable(), &with_rows(50_000), at(0));
    assert_eq!(first.status.phase, Phase::Stable);
    assert_eq!(first.status.samples_at_last_training, Some(50_000));
    let few = run(&s, &first.status, &with_rows(50_999), at(HOUR));
    assert_eq!(few.status.phase, Phase::Stable);
    let enough = run(&s, &few.status, &with_rows(51_000), at(2 * HOUR));
    assert_eq!(enough.status.phase, Phase::Retraining);
    assert_eq!(
        enough.status.retraining_attempts[0].trigger,
        Trigger::NewSamples
    );
    assert_eq!(
        enough.status.samples_at_last_training,
        Some(51_000),
        "the new baseline"
    );
}

#[test]
fn schedule_trigger_fires_when_the_cron_is_due_after_the_anchor() {
    let s = spec_with(
        json!({"retraining": {"triggers": {"driftSeverity": null, "schedule": "0 3 * * *"}}}),
    );
    let now: Timestamp = "2027-01-15T04:00:00Z".parse().unwrap();
    // First look: the anchor is set to now, nothing is due yet.
    let first = run(&s, &stable(), &obs(), now);
    assert_eq!(first.status.phase, Phase::Stable);
    assert_eq!(first.status.schedule_anchor, Some(Time(now)));
    let before: Timestamp = "2027-01-16T02:59:59Z".parse().unwrap();
    assert_eq!(
        run(&s, &first.status, &obs(), before).status.phase,
        Phase::Stable
    );
    let due: Timestamp = "2027-01-16T03:00:00Z".parse().unwrap();
    let out = run(&s, &first.status, &obs(), due);
    assert_eq!(out.status.phase, Phase::Retraining);
    assert_eq!(out.status.retraining_attempts[0].trigger, Trigger::Schedule);
    assert_eq!(out.status.schedule_anchor, Some(Time(due)));
}

#[test]
fn manual_retrain_request_starts_an_attempt() {
    let out = run(
        &spec(),
        &stable(),
        &with_manual(Request::Retrain, "t1"),
        at(0),
    );
    assert_eq!(out.status.phase, Phase::Retraining);
    assert_eq!(out.status.retraining_attempts[0].trigger, Trigger::Manual);
    assert_eq!(
        out.status
            .handled_requests
            .get(manual::RETRAIN)
            .map(String::as_str),
        Some("t1")
    );
}

#[test]
fn advisor_recommendation_starts_an_attempt() {
    let out = run(
        &spec(),
        &stable(),
        &Observations {
            advisor_recommends: true,
            ..obs()
        },
        at(0),
    );
    assert_eq!(out.status.phase, Phase::Retraining);
    assert_eq!(out.status.retraining_attempts[0].trigger, Trigger::Advisor);
}

#[test]
fn no_retraining_section_never_trains() {
    let s = spec_with(json!({"retraining": null}));
    let o = Observations {
        drift: Some(drift(Severity::High)),
        advisor_recommends: true,
        ..with_manual(Request::Retrain, "t1")
    };
    let out = run(&s, &stable(), &o, at(0));
    assert_eq!(out.status.phase, Phase::Stable);
    assert!(out.status.retraining_attempts.is_empty());
    assert_eq!(out.job, None);
}

#[test]
fn failed_and_rolled_back_phases_also_watch_triggers() {
    for phase in [Phase::Failed, Phase::RolledBack] {
        let status = ModelDeploymentStatus { phase, ..stable() };
        let out = run(
            &spec(),
            &status,
            &Observations {
                drift: Some(drift(Severity::High)),
                ..obs()
            },
            at(0),
        );
        assert_eq!(out.status.phase, Phase::Retraining, "from {phase:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Retraining → Evaluating / Failed
// ---------------------------------------------------------------------------------------------

#[test]
fn job_success_and_lineage_lookup_move_to_evaluating() {
    let o = Observations {
        job: Some(JobState::Succeeded),
        candidate_lookup: Some(CandidateLookup::Found("4".into())),
        ..obs()
    };
    let out = run(&spec(), &retraining(0), &o, at(20 * MIN));
    let s = &out.status;
    assert_eq!(s.phase, Phase::Evaluating);
    assert_eq!(s.phase_started_at, time(20 * MIN));
    assert_eq!(s.candidate_version.as_deref(), Some("4"));
    assert_eq!(s.candidate_source, Some(CandidateSource::Retraining));
    let a = &s.retraining_attempts[0];
    assert_eq!(a.outcome, AttemptOutcome::Succeeded);
    assert_eq!(a.candidate_version.as_deref(), Some("4"));
    assert_eq!(a.finished_at, time(20 * MIN));
    assert_eq!(a.message.as_deref(), Some("registered version 4"));
    assert_eq!(reasons(&out), vec![EventReason::CandidateRegistered]);
    assert_eq!(out.job, None, "the attempt is over");
    assert_eq!(s.canary_weight, 0);
}

#[test]
fn running_job_or_lookup_error_keeps_retraining_and_the_job() {
    for o in [
        Observations {
            job: Some(JobState::Running),
            ..obs()
        },
        Observations {
            job: Some(JobState::Missing),
            ..obs()
        },
        Observations {
            job: Some(JobState::Succeeded),
            candidate_lookup: Some(CandidateLookup::Error("503".into())),
            ..obs()
        },
        Observations {
            job: Some(JobState::Succeeded),
            ..obs()
        },
        obs(),
    ] {
        let out = run(&spec(), &retraining(0), &o, at(20 * MIN));
        assert_eq!(out.status.phase, Phase::Retraining, "{o:?}");
        assert!(out.transitions.is_empty());
        assert_eq!(
            out.job.as_ref().map(|j| j.job_name.as_str()),
            Some("fraud-retrain-1")
        );
        assert_eq!(
            out.status.retraining_attempts[0].outcome,
            AttemptOutcome::Running
        );
    }
}

#[test]
fn job_failure_fails_the_attempt() {
    let o = Observations {
        job: Some(JobState::Failed("BackoffLimitExceeded".into())),
        ..obs()
    };
    let out = run(&spec(), &retraining(0), &o, at(20 * MIN));
    assert_eq!(out.status.phase, Phase::Failed);
    let a = &out.status.retraining_attempts[0];
    assert_eq!(a.outcome, AttemptOutcome::Failed);
    assert_eq!(a.message.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(a.finished_at, time(20 * MIN));
    assert_eq!(reasons(&out), vec![EventReason::TrainingFailed]);
    assert!(out.transitions[0].warning);
    assert_eq!(out.job, None);
    assert_eq!(out.status.candidate_version, None);
}

#[test]
fn job_success_without_tagged_version_fails() {
    let o = Observations {
        job: Some(JobState::Succeeded),
        candidate_lookup: Some(CandidateLookup::NotFound),
        ..obs()
    };
    let out = run(&spec(), &retraining(0), &o, at(20 * MIN));
    assert_eq!(out.status.phase, Phase::Failed);
    assert_eq!(
        out.status.retraining_attempts[0].outcome,
        AttemptOutcome::Failed
    );
    assert_eq!(reasons(&out), vec![EventReason::CandidateNotRegistered]);
    assert_eq!(
        out.transitions[0].message,
        format!("the Job succeeded but no version is tagged mlrollout.io/attempt={ATTEMPT_1}")
    );
    assert_eq!(out.status.candidate_version, None);
}

#[test]
fn retraining_times_out_after_timeout_plus_progress_deadline() {
    // timeout 2h + progressDeadline 30m: still running at exactly 2h30m.
    let running = Observations {
        job: Some(JobState::Running),
        ..obs()
    };
    let out = run(&spec(), &retraining(0), &running, at(2 * HOUR + 30 * MIN));
    assert_eq!(out.status.phase, Phase::Retraining);
    let out = run(
        &spec(),
        &retraining(0),
        &running,
        at(2 * HOUR + 30 * MIN + 1),
    );
    assert_eq!(out.status.phase, Phase::Failed);
    let a = &out.status.retraining_attempts[0];
    assert_eq!(a.outcome, AttemptOutcome::TimedOut);
    assert_eq!(a.finished_at, time(2 * HOUR + 30 * MIN + 1));
    assert_eq!(reasons(&out), vec![EventReason::ProgressDeadlineExceeded]);
    assert_eq!(out.job, None);
}

#[test]
fn timed_out_or_aborted_attempt_job_is_removed_by_the_decision() {
    let timed_out = run(
        &spec(),
        &retraining(0),
        &Observations {
            job: Some(JobState::Running),
            ..obs()
        },
        at(3 * HOUR),
    );
    let d = reconcile_at(&mut cluster(&spec(), timed_out.status), at(3 * HOUR));
    assert!(
        d.remove.contains(&Removal::Job("fraud-retrain-1".into())),
        "{:?}",
        d.remove
    );
    assert!(!d.apply.unwrap().iter().any(|c| matches!(c, Child::Job(_))));
}

// ---------------------------------------------------------------------------------------------
// Evaluating
// ---------------------------------------------------------------------------------------------

fn metrics(candidate: Option<f64>, champion: Option<f64>) -> Observations {
    Observations {
        evaluation: Some(EvaluationObservation::Metrics {
            candidate,
            champion,
        }),
        ..obs()
    }
}

#[test]
fn better_candidate_passes_evaluation_and_enters_shadow() {
    let out = run(
        &spec(),
        &evaluating(0),
        &metrics(Some(0.912), Some(0.88)),
        at(MIN),
    );
    let s = &out.status;
    assert_eq!(s.phase, Phase::Shadow);
    assert_eq!(s.phase_started_at, time(MIN));
    assert_eq!(s.mirror_percent, 100);
    assert_eq!(s.canary_weight, 0);
    assert_eq!(s.current_step, None);
    let e = s.evaluation.as_ref().unwrap();
    assert!(e.passed);
    assert_eq!(e.metric, "accuracy");
    assert_eq!(e.candidate_value, Some(0.912));
    assert_eq!(e.champion_value, Some(0.88));
    assert_eq!(
        s.pending_registry_writes,
        vec![
            write(
                RegistryOp::SetTag,
                Some("4"),
                "mlrollout.io/verdict",
                Some("evaluation-passed")
            ),
            write(RegistryOp::SetAlias, Some("4"), "challenger", None),
        ]
    );
    assert_eq!(
        reasons(&out),
        vec![EventReason::EvaluationPassed, EventReason::ShadowStarted]
    );
}

#[test]
fn evaluation_without_shadow_or_without_router_starts_the_first_step() {
    for patch in [
        json!({"shadow": {"enabled": false}}),
        json!({"traffic": {"provider": "none", "parentRefs": null}}),
    ] {
        let s = spec_with(patch.clone());
        let out = run(
            &s,
            &evaluating(0),
            &metrics(Some(0.912), Some(0.88)),
            at(MIN),
        );
        assert_eq!(out.status.phase, Phase::Progressing, "{patch}");
        assert_eq!(out.status.current_step, Some(0));
        assert_eq!(out.status.canary_weight, 10);
        assert_eq!(out.status.mirror_percent, 0);
        assert_eq!(
            reasons(&out),
            vec![EventReason::EvaluationPassed, EventReason::StepStarted]
        );
        assert_eq!(
            out.transitions[1].message,
            "step 1 of 3: 10% of traffic on the candidate"
        );
    }
}

fn assert_rejected(out: &StepOutput, why: &str) {
    let s = &out.status;
    assert_eq!(s.phase, Phase::Failed, "{:?}", out.transitions);
    assert_eq!(s.candidate_version, None);
    assert_eq!(s.canary_weight, 0);
    let e = s.evaluation.as_ref().unwrap();
    assert!(!e.passed);
    assert!(e.reason.contains(why), "{}", e.reason);
    let last = s.history.last().unwrap();
    assert_eq!(
        (last.candidate_version.as_str(), last.outcome.as_str()),
        ("4", "Rejected")
    );
    assert_eq!(last.reason, RolloutReason::EvaluationFailed);
    assert_eq!(
        s.pending_registry_writes,
        vec![write(
            RegistryOp::SetTag,
            Some("4"),
            "mlrollout.io/verdict",
            Some("rejected")
        )]
    );
    assert_eq!(reasons(out), vec![EventReason::EvaluationFailed]);
    assert!(out.transitions[0].warning);
}

#[test]
fn not_enough_improvement_rejects_the_candidate() {
    let out = run(
        &spec(),
        &evaluating(0),
        &metrics(Some(0.884), Some(0.88)),
        at(MIN),
    );
    assert_rejected(&out, "< 0.005");
}

#[test]
fn missing_candidate_metric_rejects() {
    let out = run(&spec(), &evaluating(0), &metrics(None, Some(0.88)), at(MIN));
    assert_rejected(&out, "the candidate's run has no metric \"accuracy\"");
    let out = run(
        &spec(),
        &evaluating(0),
        &metrics(Some(f64::NAN), Some(0.88)),
        at(MIN),
    );
    assert_rejected(&out, "the candidate's run has no metric");
}

#[test]
fn missing_champion_metric_rejects() {
    let out = run(&spec(), &evaluating(0), &metrics(Some(0.99), None), at(MIN));
    assert_rejected(
        &out,
        "the champion's run has no metric \"accuracy\" to compare with",
    );
    let out = run(
        &spec(),
        &evaluating(0),
        &metrics(Some(0.99), Some(f64::INFINITY)),
        at(MIN),
    );
    assert_rejected(&out, "the champion's run has no metric");
}

#[test]
fn lower_is_better_compares_the_other_way() {
    let s = spec_with(
        json!({"evaluation": {"metric": "rmse", "direction": "lowerIsBetter", "minImprovement": 0.25}}),
    );
    let pass = run(&s, &evaluating(0), &metrics(Some(1.25), Some(1.5)), at(MIN));
    assert_eq!(pass.status.phase, Phase::Shadow);
    assert!(pass.status.evaluation.as_ref().unwrap().passed);
    let fail = run(&s, &evaluating(0), &metrics(Some(1.5), Some(1.25)), at(MIN));
    assert_eq!(fail.status.phase, Phase::Failed);
    let higher = run(&s, &evaluating(0), &metrics(Some(1.75), Some(1.5)), at(MIN));
    assert_eq!(higher.status.phase, Phase::Failed, "a higher rmse is worse");
}

#[test]
fn min_improvement_boundary_is_inclusive() {
    // Exactly representable values: 0.75 - 0.5 == 0.25.
    let s = spec_with(json!({"evaluation": {"minImprovement": 0.25}}));
    assert_eq!(
        run(&s, &evaluating(0), &metrics(Some(0.75), Some(0.5)), at(MIN))
            .status
            .phase,
        Phase::Shadow
    );
    assert_eq!(
        run(
            &s,
            &evaluating(0),
            &metrics(Some(0.7499), Some(0.5)),
            at(MIN)
        )
        .status
        .phase,
        Phase::Failed
    );
    // No minimum: equal is enough, worse is not.
    let zero = spec_with(json!({"evaluation": {"minImprovement": 0.0}}));
    assert_eq!(
        run(
            &zero,
            &evaluating(0),
            &metrics(Some(0.88), Some(0.88)),
            at(MIN)
        )
        .status
        .phase,
        Phase::Shadow
    );
    assert_eq!(
        run(
            &zero,
            &evaluating(0),
            &metrics(Some(0.879), Some(0.88)),
            at(MIN)
        )
        .status
        .phase,
        Phase::Failed
    );
}

#[test]

fn min_improvement_boundary_is_inclusive_for_decimal_metrics() {
    let s = spec_with(json!({"evaluation": {"minImprovement": 0.05}}));
    let out = run(
        &s,
        &evaluating(0),
        &metrics(Some(0.85), Some(0.80)),
        at(MIN),
    );
    assert_eq!(
        out.status.phase,
        Phase::Shadow,
        "{:?}",
        out.status.evaluation
    );
    let s = spec_with(json!({"evaluation": {"minImprovement": 0.01}}));
    let out = run(
        &s,
        &evaluating(0),
        &metrics(Some(0.82), Some(0.81)),
        at(MIN),
    );
    assert_eq!(
        out.status.phase,
        Phase::Shadow,
        "{:?}",
        out.status.evaluation
    );
}

#[test]
fn evaluation_error_waits_then_rolls_back_after_the_deadline() {
    let error = Observations {
        evaluation: Some(EvaluationObservation::Error("MLflow 503".into())),
        ..obs()
    };
    let out = run(&spec(), &evaluating(0), &error, at(30 * MIN));
    assert_eq!(out.status.phase, Phase::Evaluating);
    assert!(out.transitions.is_empty());
    let out = run(&spec(), &evaluating(0), &obs(), at(30 * MIN + 1));
    assert_rolled_back(
        &out,
        RolloutOutcome::RolledBack,
        RolloutReason::ProgressDeadlineExceeded,
    );
}

// ---------------------------------------------------------------------------------------------
// Shadow
// ---------------------------------------------------------------------------------------------

#[test]
fn shadow_passes_after_its_duration_and_count_measurements() {
    let s = spec();
    let mut status = in_shadow(0);
    for minute in 1..=3 {
        let out = run(
            &s,
            &status,
            &passing(&s, AnalysisStage::Shadow),
            at(minute * MIN),
        );
        assert_eq!(out.status.phase, Phase::Shadow, "minute {minute}");
        assert_eq!(
            out.status.analysis.as_ref().unwrap().measurements,
            minute as i32
        );
        status = out.status;
    }
    let early = run(&s, &status, &obs(), at(10 * MIN - 1));
    assert_eq!(early.status.phase, Phase::Shadow, "duration not over");
    let not_ready = run(
        &s,
        &status,
        &Observations {
            candidate_ready: false,
            ..obs()
        },
        at(10 * MIN),
    );
    assert_eq!(
        not_ready.status.phase,
        Phase::Shadow,
        "the candidate is not ready"
    );
    let out = run(&s, &status, &obs(), at(10 * MIN));
    assert_eq!(out.status.phase, Phase::Progressing);
    assert_eq!(out.status.current_step, Some(0));
    assert_eq!(out.status.canary_weight, 10);
    assert_eq!(out.status.mirror_percent, 0);
    assert_eq!(
        out.status.analysis, None,
        "each step's analysis starts empty"
    );
    assert_eq!(
        reasons(&out),
        vec![EventReason::ShadowPassed, EventReason::StepStarted]
    );
    assert_eq!(
        out.transitions[0].message,
        "the shadow phase passed its analysis"
    );
}

#[test]
fn shadow_needs_count_measurements_even_after_its_duration() {
    let s = spec();
    let mut status = in_shadow(0);
    for minute in [11, 12] {
        status = run(
            &s,
            &status,
            &passing(&s, AnalysisStage::Shadow),
            at(minute * MIN),
        )
        .status;
        assert_eq!(status.phase, Phase::Shadow);
    }
    let out = run(
        &s,
        &status,
        &passing(&s, AnalysisStage::Shadow),
        at(13 * MIN),
    );
    assert_eq!(out.status.phase, Phase::Progressing);
}

#[test]
fn shadow_without_analysis_runs_on_time_alone() {
    let s = spec_with(json!({"rollout": {"analysis": null}}));
    assert_eq!(
        run(&s, &in_shadow(0), &obs(), at(10 * MIN - 1))
            .status
            .phase,
        Phase::Shadow
    );
    let out = run(&s, &in_shadow(0), &obs(), at(10 * MIN));
    assert_eq!(out.status.phase, Phase::Progressing);
    assert_eq!(
        out.transitions[0].message,
        "the shadow phase ran (no analysis configured)"
    );
}

#[test]
fn failed_shadow_measurement_rolls_back() {
    let s = spec();
    let o = round(
        &s,
        AnalysisStage::Shadow,
        Some("prediction-psi"),
        Verdict::Failed,
    );
    let out = run(&s, &in_shadow(0), &o, at(MIN));
    assert_rolled_back(
        &out,
        RolloutOutcome::RolledBack,
        RolloutReason::ShadowFailed,
    );
    assert!(
        out.transitions
            .last()
            .unwrap()
            .message
            .contains("prediction-psi failed 1 time(s) (limit 0)")
    );
}

#[test]
fn inconclusive_shadow_pauses_for_a_person() {
    let s = spec();
    let o = round(
        &s,
        AnalysisStage::Shadow,
        Some("error-rate"),
        Verdict::Inconclusive,
    );
    let mut status = in_shadow(0);
    for minute in 1..=2 {
        status = run(&s, &status, &o, at(minute * MIN)).status;
        assert!(
            !status.paused,
            "inconclusive limit 2 is reached, not exceeded"
        );
    }
    let out = run(&s, &status, &o, at(3 * MIN));
    assert_eq!(out.status.phase, Phase::Shadow);
    assert!(out.status.paused);
    assert_eq!(
        out.status.pause_reason,
        Some(PauseReason::InconclusiveAnalysis)
    );
    assert_eq!(out.status.mirror_percent, 100, "nothing moves while paused");
    assert_eq!(reasons(&out), vec![EventReason::AnalysisInconclusive]);
    assert!(out.transitions[0].warning);
    // Paused: time passes, nothing happens, not even the deadline.
    let later = run(
        &s,
        &out.status,
        &passing(&s, AnalysisStage::Shadow),
        at(3 * HOUR),
    );
    assert_eq!(later.status, out.status);
    assert!(later.transitions.is_empty());
}

#[test]
fn shadow_candidate_never_ready_rolls_back_after_duration_plus_deadline() {
    let s = spec();
    let not_ready = Observations {
        candidate_ready: false,
        ..obs()
    };
    assert_eq!(
        run(&s, &in_shadow(0), &not_ready, at(40 * MIN))
            .status
            .phase,
        Phase::Shadow
    );
    let out = run(&s, &in_shadow(0), &not_ready, at(40 * MIN + 1));
    assert_rolled_back(
        &out,
        RolloutOutcome::RolledBack,
        RolloutReason::ProgressDeadlineExceeded,
    );
    assert!(
        out.transitions[0]
            .message
            .contains("the candidate never became ready")
    );
}

#[test]
fn measurements_of_an_unready_candidate_are_not_recorded() {
    let s = spec();
    let o = Observations {
        candidate_ready: false,
        ..round(&s, AnalysisStage::Shadow, None, Verdict::Failed)
    };
    let out = run(&s, &in_shadow(0), &o, at(MIN));
    assert_eq!(out.status.phase, Phase::Shadow);
    assert_eq!(out.status.analysis.as_ref().unwrap().measurements, 0);
}

// ---------------------------------------------------------------------------------------------
// Progressing
// ---------------------------------------------------------------------------------------------

#[test]
fn step_advances_only_after_step_duration_and_count_measurements() {
    let s = spec();
    let mut status = at_step(0, 10, 0);
    // Three passing measurements in the first three minutes: analysis done, time not.
    for minute in 1..=3 {
        status = run(
            &s,
            &status,
            &passing(&s, AnalysisStage::Canary),
            at(minute * MIN),
        )
        .status;
        assert_eq!(
            (status.phase, status.current_step),
            (Phase::Progressing, Some(0))
        );
    }
    assert_eq!(
        run(&s, &status, &obs(), at(5 * MIN - 1))
            .status
            .current_step,
        Some(0)
    );
    let out = run(&s, &status, &obs(), at(5 * MIN));
    assert_eq!(out.status.current_step, Some(1));
    assert_eq!(out.status.canary_weight, 50);
    assert_eq!(out.status.phase_started_at, time(5 * MIN));
    assert_eq!(reasons(&out), vec![EventReason::StepStarted]);
    assert_eq!(
        out.transitions[0].message,
        "step 2 of 3: 50% of traffic on the candidate"
    );

    // Time is over but only two measurements: wait for the third.
    let mut status = at_step(1, 50, 0);
    for minute in [6, 7] {
        status = run(
            &s,
            &status,
            &passing(&s, AnalysisStage::Canary),
            at(minute * MIN),
        )
        .status;
        assert_eq!(status.current_step, Some(1));
    }
    assert_eq!(
        run(&s, &status, &obs(), at(8 * MIN)).status.current_step,
        Some(1)
    );
    let out = run(
        &s,
        &status,
        &passing(&s, AnalysisStage::Canary),
        at(8 * MIN),
    );
    assert_eq!(out.status.current_step, Some(2));
    assert_eq!(out.status.canary_weight, 100);
}

#[test]
fn steps_advance_on_time_alone_without_analysis() {
    let s = spec_with(json!({"rollout": {"analysis": null}}));
    let out = run(&s, &at_step(0, 10, 0), &obs(), at(5 * MIN - 1));
    assert_eq!(out.status.current_step, Some(0));
    let out = run(&s, &at_step(0, 10, 0), &obs(), at(5 * MIN));
    assert_eq!(out.status.current_step, Some(1));
    let unready = run(
        &s,
        &at_step(0, 10, 0),
        &Observations {
            candidate_ready: false,
            ..obs()
        },
        at(5 * MIN),
    );
    assert_eq!(
        unready.status.current_step,
        Some(0),
        "an unready candidate does not advance"
    );
}

#[test]
fn failure_limit_is_exceeded_not_reached() {
    let s = limited_spec("pause");
    let failed = round(
        &s,
        AnalysisStage::Canary,
        Some("error-rate"),
        Verdict::Failed,
    );
    let first = run(&s, &at_step(1, 50, 0), &failed, at(MIN));
    assert_eq!(
        first.status.phase,
        Phase::Progressing,
        "failureLimit 1 tolerates one failure"
    );
    assert_eq!(first.status.analysis.as_ref().unwrap().metrics[0].failed, 1);
    let out = run(&s, &first.status, &failed, at(2 * MIN));
    assert_rolled_back(
        &out,
        RolloutOutcome::RolledBack,
        RolloutReason::AnalysisFailed,
    );
    assert!(
        out.transitions[0]
            .message
            .contains("error-rate failed 2 time(s) (limit 1)"),
        "{}",
        out.transitions[0].message
    );
}

#[test]
fn consecutive_error_limit_is_exceeded_not_reached() {
    let s = limited_spec("pause");
    let error = round(
        &s,
        AnalysisStage::Canary,
        Some("error-rate"),
        Verdict::Error,
    );
    let mut status = at_step(0, 10, 0);
    for minute in 1..=4 {
        status = run(&s, &status, &error, at(minute * MIN)).status;
        assert_eq!(status.phase, Phase::Progressing, "{minute} errors");
    }
    // A success breaks the series.
    status = run(
        &s,
        &status,
        &passing(&s, AnalysisStage::Canary),
        at(5 * MIN - 1),
    )
    .status;
    assert_eq!(
        status.analysis.as_ref().unwrap().metrics[0].consecutive_errors,
        0
    );
    for minute in 6..=9 {
        status = run(&s, &status, &error, at(minute * MIN)).status;
        assert_eq!(status.phase, Phase::Progressing);
    }
    let out = run(&s, &status, &error, at(10 * MIN));
    assert_rolled_back(
        &out,
        RolloutOutcome::RolledBack,
        RolloutReason::AnalysisError,
    );
}

#[test]
fn inconclusive_limit_is_exceeded_not_reached_then_pauses() {
    let s = limited_spec("pause");
    let quiet = round(
        &s,
        AnalysisStage::Canary,
        Some("error-rate"),
        Verdict::Inconclusive,
    );
    let mut status = at_step(0, 10, 0);
    for minute in 1..=2 {
        status = run(&s, &status, &quiet, at(minute * MIN)).status;
        assert!(!status.paused);
    }
    let out = run(&s, &status, &quiet, at(3 * MIN));
    assert_eq!(out.status.phase, Phase::Progressing);
    assert_eq!(out.status.canary_weight, 10, "traffic stays where it is");
    assert!(out.status.paused);
    assert_eq!(
        out.status.pause_reason,
        Some(PauseReason::InconclusiveAnalysis)
    );
    assert_eq!(reasons(&out), vec![EventReason::AnalysisInconclusive]);
    assert!(
        out.transitions[0]
            .message
            .contains("error-rate had no data 3 time(s) (limit 2)")
    );
}

#[test]
fn inconclusive_rolls_back_when_configured() {
    let s = limited_spec("rollback");
    let quiet = round(
        &s,
        AnalysisStage::Canary,
        Some("error-rate"),
        Verdict::Inconclusive,
    );
    let mut status = at_step(1, 50, 0);
    for minute in 1..=2 {
        status = run(&s, &status, &quiet, at(minute * MIN)).status;
    }
    let out = run(&s, &status, &quiet, at(3 * MIN));
    assert_rolled_back(
        &out,
        RolloutOutcome::RolledBack,
        RolloutReason::AnalysisInconclusive,
    );
    assert!(!out.status.paused);
}

#[test]
fn step_without_progress_rolls_back_after_step_duration_plus_deadline() {
    let s = spec();
    // No measurements at all: the analysis never concludes.
    assert_eq!(
        run(&s, &at_step(0, 10, 0), &obs(), at(35 * MIN))
            .status
            .phase,
        Phase::Progressing
    );
    let out = run(&s, &at_step(0, 10, 0), &obs(), at(35 * MIN + 1));
    assert_rolled_back(
        &out,
        RolloutOutcome::RolledBack,
        RolloutReason::ProgressDeadlineExceeded,
    );
    assert!(
        out.transitions[0]
            .message
            .contains("the step's analysis never concluded")
    );
}

#[test]
fn last_step_promotes_and_writes_the_registry() {
    let s = spec();
    let mut status = at_step(2, 100, 0);
    status.history.push(RolloutRecord {
        candidate_version: "2".into(),
        previous_version: None,
        outcome: RolloutOutcome::RolledBack,
        reason: RolloutReason::AnalysisFailed,
        finished_at: None,
    });
    for minute in 1..=3 {
        status = run(
            &s,
            &status,
            &passing(&s, AnalysisStage::Canary),
            at(minute * MIN),
        )
        .status;
    }
    let out = run(
        &s,
        &status,
        &Observations {
            stable_ready: true,
            ..obs()
        },
        at(5 * MIN),
    );
    let st = &out.status;
    assert_eq!(
        st.phase,
        Phase::Promoted,
        "traffic waits for the new stable"
    );
    assert_eq!(st.canary_weight, 100);
    assert_eq!(st.mirror_percent, 0);
    assert_eq!(st.current_step, None);
    assert_eq!(st.stable_version.as_deref(), Some("4"));
    assert_eq!(
        st.candidate_version.as_deref(),
        Some("4"),
        "candidate pods keep serving"
    );
    assert_eq!(
        st.pending_registry_writes,
        vec![
            write(RegistryOp::SetAlias, Some("3"), "previous", None),
            write(RegistryOp::SetAlias, Some("4"), "champion", None),
            write(RegistryOp::DeleteAlias, None, "challenger", None),
            write(
                RegistryOp::SetTag,
                Some("4"),
                "mlrollout.io/rollout",
                Some("promoted")
            ),
        ]
    );
    let last = st.history.last().unwrap();
    assert_eq!(
        (
            last.candidate_version.as_str(),
            last.previous_version.as_deref(),
            last.outcome.as_str()
        ),
        ("4", Some("3"), "Promoted")
    );
    assert_eq!(last.finished_at, time(5 * MIN));
    assert_eq!(reasons(&out), vec![EventReason::Promoted]);
}

#[test]
fn promoted_returns_to_stable_only_when_the_new_stable_is_ready() {
    let promoted = ModelDeploymentStatus {
        phase: Phase::Promoted,
        phase_started_at: time(0),
        canary_weight: 100,
        current_step: None,
        stable_version: Some("4".into()),
        ..at_step(2, 100, 0)
    };
    let waiting = run(
        &spec(),
        &promoted,
        &Observations {
            stable_ready: false,
            ..obs()
        },
        at(MIN),
    );
    assert_eq!(waiting.status.phase, Phase::Promoted);
    assert_eq!(waiting.status.canary_weight, 100);
    assert!(waiting.transitions.is_empty());

    let out = run(
        &spec(),
        &promoted,
        &Observations {
            stable_ready: true,
            ..obs()
        },
        at(2 * MIN),
    );
    assert_eq!(out.status.phase, Phase::Stable);
    assert_eq!(out.status.canary_weight, 0);
    assert_eq!(out.status.candidate_version, None);
    assert_eq!(out.status.candidate_source, None);
    assert_eq!(out.status.stable_version.as_deref(), Some("4"));
    assert_eq!(reasons(&out), vec![EventReason::PromotionComplete]);

    // The new stable never becomes ready: traffic stays on the candidate, a warning is raised
    // and the deadline restarts.
    let late = run(
        &spec(),
        &promoted,
        &Observations {
            stable_ready: false,
            ..obs()
        },
        at(30 * MIN + 1),
    );
    assert_eq!(late.status.phase, Phase::Promoted);
    assert_eq!(late.status.canary_weight, 100);
    assert_eq!(late.status.phase_started_at, time(30 * MIN + 1));
    assert_eq!(reasons(&late), vec![EventReason::ProgressDeadlineExceeded]);
    assert!(late.transitions[0].warning);
}

// ---------------------------------------------------------------------------------------------
// Cooldown and daily budget
// ---------------------------------------------------------------------------------------------

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

#[test]
fn trigger_during_cooldown_is_deferred_then_acted_on() {
    let s = spec();
    let status = after_attempts(&[-HOUR]);
    let high = Observations {
        drift: Some(drift(Severity::High)),
        ..obs()
    };
    let out = run(&s, &status, &high, at(0));
    assert_eq!(out.status.phase, Phase::Failed);
    assert_eq!(out.status.retraining_attempts.len(), 1);
    assert_eq!(out.job, None);
    let until = at(5 * HOUR);
    assert_eq!(
        out.status.deferred_trigger,
        Some(DeferredTrigger {
            trigger: Trigger::Drift,
            at: time(0),
            reason: format!("cooldown until {until}"),
        })
    );
    assert_eq!(
        reasons(&out),
        vec![
            EventReason::DriftSeverityChanged,
            EventReason::RetrainingDeferred
        ]
    );
    assert_eq!(
        out.transitions[1].message,
        format!(
            "drift trigger fired (drift severity is high) but is held back: cooldown until {until}"
        )
    );
    // The same trigger again: recorded once, no second event.
    let again = run(&s, &out.status, &high, at(HOUR));
    assert_eq!(reasons(&again), Vec::<EventReason>::new());
    assert_eq!(
        again.status.deferred_trigger.as_ref().unwrap().trigger,
        Trigger::Drift
    );
    // Nothing else is due: the reconciler looks again within the 5-minute cap.
    assert_eq!(again.requeue_after, Duration::from_secs(300));
    // Still in the cooldown one second before its end, with no fresh facts.
    let quiet = run(&s, &again.status, &obs(), at(5 * HOUR - 1));
    assert_eq!(quiet.status.phase, Phase::Failed);
    // At the end of the cooldown the deferred trigger starts attempt 2.
    let started = run(&s, &quiet.status, &obs(), until);
    assert_eq!(started.status.phase, Phase::Retraining);
    assert_eq!(started.status.retraining_attempts.len(), 2);
    let a = started.status.retraining_attempts.last().unwrap();
    assert_eq!((a.number, a.trigger.as_str()), (2, "drift"));
    assert_eq!(a.job_name, "fraud-retrain-2");
    assert_eq!(started.status.deferred_trigger, None);
    assert_eq!(started.job.as_ref().map(|j| j.number), Some(2));
}

#[test]

fn deferred_trigger_keeps_when_it_fired() {
    let s = spec();
    let out = run(
        &s,
        &after_attempts(&[-HOUR]),
        &Observations {
            drift: Some(drift(Severity::High)),
            ..obs()
        },
        at(0),
    );
    assert_eq!(out.status.deferred_trigger.as_ref().unwrap().at, time(0));
    let later = run(&s, &out.status, &obs(), at(HOUR));
    assert_eq!(
        later.status.deferred_trigger.as_ref().unwrap().at,
        time(0),
        "no trigger fired at 1h"
    );
}

#[test]
fn daily_budget_defers_until_the_oldest_attempt_leaves_the_window() {
    let s = spec(); // cooldown 6h, 3 attempts per day
    let status = after_attempts(&[-23 * HOUR, -17 * HOUR, -11 * HOUR]);
    let high = Observations {
        drift: Some(drift(Severity::High)),
        ..obs()
    };
    let out = run(&s, &status, &high, at(0));
    assert_eq!(out.status.phase, Phase::Failed);
    let until = at(HOUR);
    let deferred = out.status.deferred_trigger.as_ref().unwrap();
    assert_eq!(deferred.trigger, Trigger::Drift);
    assert_eq!(
        deferred.reason,
        format!("daily budget of 3 attempts used until {until}")
    );
    assert!(reasons(&out).contains(&EventReason::RetrainingDeferred));
    assert_eq!(
        run(&s, &out.status, &obs(), at(HOUR - 1)).status.phase,
        Phase::Failed
    );
    // The window is (now-24h, now]: at `until` the oldest attempt has left it.
    let started = run(&s, &out.status, &obs(), until);
    assert_eq!(started.status.phase, Phase::Retraining);
    assert_eq!(started.status.retraining_attempts.last().unwrap().number, 4);
}

#[test]
fn manual_retrain_respects_the_cooldown() {
    let out = run(
        &spec(),
        &after_attempts(&[-HOUR]),
        &with_manual(Request::Retrain, "t1"),
        at(0),
    );
    assert_eq!(out.status.phase, Phase::Failed);
    assert_eq!(
        out.status.deferred_trigger.as_ref().unwrap().trigger,
        Trigger::Manual
    );
}

/// Drives attempts that fail at once, every minute, for `ticks` minutes; returns the number of
/// attempts started.
fn storm(spec: &ModelDeploymentSpec, ticks: i64) -> usize {
    let mut status = stable();
    let mut started = 0;
    for minute in 0..ticks {
        let o = Observations {
            drift: Some(drift(Severity::High)),
            job: Some(JobState::Failed("boom".into())),
            ..obs()
        };
        let out = run(spec, &status, &o, at(minute * MIN));
        started += out
            .transitions
            .iter()
            .filter(|t| t.reason == EventReason::RetrainingStarted)
            .count();
        status = out.status;
    }
    started
}

#[test]
fn daily_budget_caps_an_attempt_storm() {
    let s = spec_with(json!({"retraining": {"cooldown": "1m", "maxAttemptsPerDay": 5}}));
    assert_eq!(storm(&s, 60), 5);
}

#[test]

fn daily_budget_above_twenty_is_enforced() {
    let s = spec_with(json!({"retraining": {"cooldown": "1m", "maxAttemptsPerDay": 30}}));
    assert_eq!(storm(&s, 120), 30, "at most 30 attempts in 2 hours");
}

// ---------------------------------------------------------------------------------------------
// Manual requests
// ---------------------------------------------------------------------------------------------

#[test]
fn abort_while_retraining_fails_the_attempt() {
    let out = run(
        &spec(),
        &retraining(0),
        &with_manual(Request::Abort, "t1"),
        at(MIN),
    );
    assert_eq!(out.status.phase, Phase::Failed);
    assert_eq!(
        out.status.retraining_attempts[0].outcome,
        AttemptOutcome::Aborted
    );
    assert_eq!(out.job, None);
    assert_eq!(reasons(&out), vec![EventReason::Aborted]);
    assert_eq!(
        out.status
            .handled_requests
            .get(manual::ABORT)
            .map(String::as_str),
        Some("t1")
    );
    let d = reconcile_at(&mut cluster(&spec(), out.status), at(MIN));
    assert!(d.remove.contains(&Removal::Job("fraud-retrain-1".into())));
}

#[test]
fn abort_in_each_rollout_phase_rolls_back() {
    for status in [
        evaluating(0),
        in_shadow(0),
        at_step(0, 10, 0),
        at_step(1, 50, 0),
    ] {
        let out = run(
            &spec(),
            &status,
            &with_manual(Request::Abort, "t1"),
            at(MIN),
        );
        assert_rolled_back(&out, RolloutOutcome::Aborted, RolloutReason::Aborted);
        assert!(
            out.transitions
                .last()
                .unwrap()
                .message
                .contains("aborted by a person")
        );
    }
}

#[test]
fn abort_outside_a_rollout_is_ignored_but_handled() {
    let promoted = ModelDeploymentStatus {
        phase: Phase::Promoted,
        canary_weight: 100,
        stable_version: Some("4".into()),
        ..at_step(2, 100, 0)
    };
    for status in [stable(), after_attempts(&[-HOUR]), promoted] {
        let out = run(
            &spec(),
            &status,
            &Observations {
                stable_ready: false,
                ..with_manual(Request::Abort, "x")
            },
            at(MIN),
        );
        assert_eq!(out.status.phase, status.phase);
        assert_eq!(reasons(&out), vec![EventReason::ManualRequestIgnored]);
        assert_eq!(
            out.transitions[0].message,
            format!("abort does not apply in phase {}", status.phase.as_str())
        );
        assert_eq!(
            out.status
                .handled_requests
                .get(manual::ABORT)
                .map(String::as_str),
            Some("x")
        );
    }
}

#[test]
fn promote_next_moves_one_step() {
    let out = run(
        &spec(),
        &at_step(0, 10, 0),
        &with_manual(Request::PromoteNext, "next@t1"),
        at(MIN),
    );
    assert_eq!(out.status.current_step, Some(1));
    assert_eq!(out.status.canary_weight, 50);
    assert_eq!(
        reasons(&out),
        vec![EventReason::ManualPromotion, EventReason::StepStarted]
    );
    assert_eq!(
        out.status
            .handled_requests
            .get(manual::PROMOTE)
            .map(String::as_str),
        Some("next@t1")
    );
}

#[test]
fn promote_next_ends_shadow_and_skips_evaluation() {
    let out = run(
        &spec(),
        &in_shadow(0),
        &with_manual(Request::PromoteNext, "next@t1"),
        at(MIN),
    );
    assert_eq!(out.status.phase, Phase::Progressing);
    assert_eq!(
        (
            out.status.current_step,
            out.status.canary_weight,
            out.status.mirror_percent
        ),
        (Some(0), 10, 0)
    );
    let out = run(
        &spec(),
        &evaluating(0),
        &with_manual(Request::PromoteNext, "next@t1"),
        at(MIN),
    );
    assert_eq!(out.status.phase, Phase::Shadow);
    assert_eq!(
        reasons(&out),
        vec![
            EventReason::ManualPromotion,
            EventReason::EvaluationPassed,
            EventReason::ShadowStarted
        ]
    );
}

#[test]
fn promote_full_promotes_and_waits_for_the_new_stable() {
    let o = Observations {
        stable_ready: false,
        ..with_manual(Request::PromoteFull, "full@t1")
    };
    for status in [in_shadow(0), at_step(0, 10, 0)] {
        let out = run(&spec(), &status, &o, at(MIN));
        assert_eq!(out.status.phase, Phase::Promoted);
        assert_eq!(out.status.canary_weight, 100);
        assert_eq!(out.status.stable_version.as_deref(), Some("4"));
        assert_eq!(
            out.status.history.last().unwrap().outcome,
            RolloutOutcome::Promoted
        );
    }
}

#[test]

fn manual_promotion_keeps_traffic_on_the_candidate_until_the_new_stable_is_ready() {
    // `stable_ready` describes the stable Deployment running status.stableVersion (still 3).
    let full = with_manual(Request::PromoteFull, "full@t1");
    let out = run(&spec(), &at_step(0, 10, 0), &full, at(MIN));
    assert_eq!(out.status.phase, Phase::Promoted, "{:?}", reasons(&out));
    assert_eq!(out.status.canary_weight, 100);
    let next = with_manual(Request::PromoteNext, "next@t1");
    let out = run(&spec(), &at_step(2, 100, 0), &next, at(MIN));
    assert_eq!(out.status.phase, Phase::Promoted, "{:?}", reasons(&out));
    assert_eq!(out.status.candidate_version.as_deref(), Some("4"));
}

#[test]
fn promote_answers_an_inconclusive_pause() {
    let paused = ModelDeploymentStatus {
        paused: true,
        pause_reason: Some(PauseReason::InconclusiveAnalysis),
        ..at_step(0, 10, 0)
    };
    let out = run(
        &spec(),
        &paused,
        &with_manual(Request::PromoteNext, "next@t1"),
        at(MIN),
    );
    assert!(!out.status.paused);
    assert_eq!(out.status.pause_reason, None);
    assert_eq!(out.status.current_step, Some(1));
}

#[test]
fn promote_outside_a_rollout_is_ignored() {
    let out = run(
        &spec(),
        &stable(),
        &with_manual(Request::PromoteFull, "full@t1"),
        at(MIN),
    );
    assert_eq!(out.status.phase, Phase::Stable);
    assert_eq!(out.status.stable_version.as_deref(), Some("3"));
    assert_eq!(reasons(&out), vec![EventReason::ManualRequestIgnored]);
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

#[test]
fn retry_after_rollback_rolls_the_same_version_out_again() {
    let out = run(
        &spec(),
        &rolled_back_v4(),
        &with_manual(Request::Retry, "t1"),
        at(0),
    );
    assert_eq!(out.status.phase, Phase::Shadow);
    assert_eq!(out.status.candidate_version.as_deref(), Some("4"));
    assert_eq!(out.status.candidate_source, Some(CandidateSource::Retry));
    assert_eq!(out.status.mirror_percent, 100);
    assert_eq!(
        reasons(&out),
        vec![EventReason::Retry, EventReason::ShadowStarted]
    );
    assert_eq!(
        out.status.pending_registry_writes,
        vec![write(RegistryOp::SetAlias, Some("4"), "challenger", None)]
    );
}

#[test]
fn retry_without_any_candidate_retrains() {
    let failed = ModelDeploymentStatus {
        phase: Phase::Failed,
        ..stable()
    };
    let out = run(&spec(), &failed, &with_manual(Request::Retry, "t1"), at(0));
    assert_eq!(out.status.phase, Phase::Retraining);
    assert_eq!(out.status.retraining_attempts[0].trigger, Trigger::Manual);
}

#[test]
fn retry_in_an_active_phase_is_ignored() {
    let out = run(
        &spec(),
        &at_step(0, 10, 0),
        &with_manual(Request::Retry, "t1"),
        at(MIN),
    );
    assert_eq!(out.status.current_step, Some(0));
    assert_eq!(reasons(&out), vec![EventReason::ManualRequestIgnored]);
}

#[test]

fn retry_after_a_failed_training_retrains() {
    // Version 4 was rolled back long ago; the latest attempt's Job then failed.
    let mut status = rolled_back_v4();
    status.phase = Phase::Failed;
    status.retraining_attempts = vec![attempt(1, -2 * HOUR, AttemptOutcome::Failed)];
    status.schedule_anchor = time(-2 * HOUR);
    let s = spec_with(json!({"retraining": {"cooldown": "1h"}}));
    let out = run(&s, &status, &with_manual(Request::Retry, "t1"), at(0));
    assert_eq!(out.status.phase, Phase::Retraining, "{:?}", reasons(&out));
    assert_ne!(out.status.candidate_version.as_deref(), Some("4"));
}

#[test]

fn retry_does_not_bypass_a_failed_evaluation() {
    let rejected = run(
        &spec(),
        &evaluating(0),
        &metrics(Some(0.80), Some(0.88)),
        at(MIN),
    )
    .status;
    assert_eq!(rejected.phase, Phase::Failed);
    let out = run(
        &spec(),
        &rejected,
        &with_manual(Request::Retry, "t1"),
        at(2 * MIN),
    );
    // Retrying a rejected candidate means training again (here held by the cooldown of the
    // attempt that produced it); the rejected version never reaches shadow or traffic.
    assert!(
        matches!(out.status.phase, Phase::Retraining | Phase::Failed),
        "a rejected version got {:?} with evaluation {:?}",
        out.status.phase,
        out.status.evaluation
    );
    assert_eq!(out.status.candidate_version, None);
    assert_eq!(out.status.canary_weight, 0);
    assert_eq!(out.status.mirror_percent, 0);
    if out.status.phase == Phase::Failed {
        assert_eq!(
            out.status
                .deferred_trigger
                .as_ref()
                .map(|d| d.trigger.as_str()),
            Some("manual")
        );
    }
}

#[test]
fn manual_pause_holds_the_phase_and_removal_resumes_it() {
    let s = spec_with(json!({"rollout": {"analysis": null}}));
    let pause = Observations {
        manual: ManualInput {
            paused: true,
            requests: vec![],
        },
        ..obs()
    };
    // Paused 4 minutes into a 5-minute step.
    let paused = run(&s, &at_step(0, 10, 0), &pause, at(4 * MIN));
    assert!(paused.status.paused);
    assert_eq!(paused.status.pause_reason, Some(PauseReason::Manual));
    assert_eq!(reasons(&paused), vec![EventReason::Paused]);
    assert!(!paused.transitions[0].warning);
    // An hour later, still annotated: nothing moves, no deadline.
    let held = run(&s, &paused.status, &pause, at(HOUR));
    assert_eq!(held.status, paused.status);
    assert!(held.transitions.is_empty());
    // The annotation is removed: resumed, and the step starts over (paused time is not progress).
    let resumed = run(&s, &held.status, &obs(), at(HOUR + MIN));
    assert!(!resumed.status.paused);
    assert_eq!(resumed.status.pause_reason, None);
    assert_eq!(resumed.status.phase_started_at, time(HOUR + MIN));
    assert_eq!(resumed.status.current_step, Some(0));
    assert_eq!(reasons(&resumed), vec![EventReason::Resumed]);
    let early = run(&s, &resumed.status, &obs(), at(HOUR + 5 * MIN));
    assert_eq!(
        early.status.current_step,
        Some(0),
        "4 minutes after resuming"
    );
    let due = run(&s, &resumed.status, &obs(), at(HOUR + 6 * MIN));
    assert_eq!(due.status.current_step, Some(1));
}

#[test]
fn resume_request_lifts_an_analysis_pause_and_restarts_the_step() {
    let s = spec();
    let paused = ModelDeploymentStatus {
        paused: true,
        pause_reason: Some(PauseReason::InconclusiveAnalysis),
        analysis: Some(AnalysisStatus {
            measurements: 3,
            ..Default::default()
        }),
        ..at_step(1, 50, 0)
    };
    // Removing a (non-existent) pause annotation does not lift an analysis pause.
    let held = run(&s, &paused, &obs(), at(HOUR));
    assert!(held.status.paused);
    let out = run(&s, &paused, &with_manual(Request::Resume, "t1"), at(HOUR));
    assert!(!out.status.paused);
    assert_eq!(out.status.pause_reason, None);
    assert_eq!(out.status.phase_started_at, time(HOUR));
    assert_eq!(
        out.status.analysis.as_ref().map(|a| a.measurements),
        Some(0),
        "analysis starts over"
    );
    assert_eq!(out.status.current_step, Some(1));
    assert_eq!(reasons(&out), vec![EventReason::Resumed]);
    assert_eq!(
        out.status
            .handled_requests
            .get(manual::RESUME)
            .map(String::as_str),
        Some("t1")
    );
}

#[test]
fn the_cli_resume_lifts_a_manual_pause_without_an_ignored_request() {
    // `mlrollout resume` removes the pause annotation and sets mlrollout.io/resume at once.
    let paused = ModelDeploymentStatus {
        paused: true,
        pause_reason: Some(PauseReason::Manual),
        ..at_step(0, 10, 0)
    };
    let out = run(
        &spec(),
        &paused,
        &with_manual(Request::Resume, "t1"),
        at(HOUR),
    );
    assert!(!out.status.paused);
    assert_eq!(out.status.pause_reason, None);
    assert_eq!(reasons(&out), vec![EventReason::Resumed]);
    assert_eq!(
        out.status
            .handled_requests
            .get(manual::RESUME)
            .map(String::as_str),
        Some("t1")
    );
}

#[test]
fn resume_when_not_paused_is_ignored() {
    let out = run(
        &spec(),
        &at_step(0, 10, 0),
        &with_manual(Request::Resume, "t1"),
        at(MIN),
    );
    assert_eq!(reasons(&out), vec![EventReason::ManualRequestIgnored]);
    assert_eq!(out.status.phase_started_at, time(0));
}

#[test]
fn manual_pause_survives_rollback_but_analysis_pause_does_not() {
    let manual_pause = ModelDeploymentStatus {
        paused: true,
        pause_reason: Some(PauseReason::Manual),
        ..at_step(0, 10, 0)
    };
    let o = Observations {
        manual: ManualInput {
            paused: true,
            requests: vec![(Request::Abort, "t1".into())],
        },
        ..obs()
    };
    let out = run(&spec(), &manual_pause, &o, at(MIN));
    assert_eq!(out.status.phase, Phase::RolledBack);
    assert!(out.status.paused, "a person's pause stays");
    let analysis_pause = ModelDeploymentStatus {
        paused: true,
        pause_reason: Some(PauseReason::InconclusiveAnalysis),
        ..at_step(0, 10, 0)
    };
    let out = run(
        &spec(),
        &analysis_pause,
        &with_manual(Request::Abort, "t1"),
        at(MIN),
    );
    assert_eq!(out.status.phase, Phase::RolledBack);
    assert!(!out.status.paused);
    assert_eq!(out.status.pause_reason, None);
}

// ---------------------------------------------------------------------------------------------
// Registry: hand-set aliases, refused versions, pending writes, outages
// ---------------------------------------------------------------------------------------------

#[test]
fn a_version_set_by_hand_in_the_registry_is_rolled_out() {
    let o = Observations {
        served_version: Some("5".into()),
        ..obs()
    };
    let out = run(&spec(), &stable(), &o, at(0));
    assert_eq!(out.status.phase, Phase::Shadow);
    assert_eq!(out.status.candidate_version.as_deref(), Some("5"));
    assert_eq!(out.status.candidate_source, Some(CandidateSource::Registry));
    assert_eq!(out.status.stable_version.as_deref(), Some("3"));
    assert_eq!(
        reasons(&out),
        vec![
            EventReason::CandidateFromRegistry,
            EventReason::ShadowStarted
        ]
    );
    assert_eq!(
        out.transitions[0].message,
        "the registry serves version 5 (stable is 3); rolling it out"
    );
}

#[test]
fn a_rolled_back_version_is_not_rolled_out_again_until_retry() {
    let o = Observations {
        served_version: Some("4".into()),
        ..obs()
    };
    let out = run(&spec(), &rolled_back_v4(), &o, at(0));
    assert_eq!(out.status.phase, Phase::RolledBack);
    assert!(out.transitions.is_empty());
    assert_eq!(out.status.candidate_version, None);
    for outcome in [RolloutOutcome::Rejected, RolloutOutcome::Aborted] {
        let mut status = rolled_back_v4();
        status.history[0].outcome = outcome;
        assert_eq!(
            run(&spec(), &status, &o, at(0)).status.phase,
            Phase::RolledBack,
            "{outcome}"
        );
    }
    // A person asks for it: rolled out.
    let retried = Observations {
        manual: ManualInput {
            paused: false,
            requests: vec![(Request::Retry, "t2".into())],
        },
        ..o
    };
    let out = run(&spec(), &rolled_back_v4(), &retried, at(0));
    assert_eq!(out.status.phase, Phase::Shadow);
    assert_eq!(out.status.candidate_version.as_deref(), Some("4"));
    // A newer version behind the alias is rolled out.
    let newer = Observations {
        served_version: Some("5".into()),
        ..obs()
    };
    assert_eq!(
        run(&spec(), &rolled_back_v4(), &newer, at(0)).status.phase,
        Phase::Shadow
    );
}

#[test]
fn pending_champion_alias_write_suppresses_candidate_detection() {
    let mut status = rolled_back_v4();
    status.history.clear();
    status.pending_registry_writes = vec![write(RegistryOp::SetAlias, Some("3"), "champion", None)];
    let o = Observations {
        served_version: Some("5".into()),
        ..obs()
    };
    let out = run(&spec(), &status, &o, at(0));
    assert_eq!(out.status.phase, Phase::RolledBack);
    assert!(out.transitions.is_empty());
    // A pending tag write (not the alias) does not hold detection back.
    status.pending_registry_writes =
        vec![write(RegistryOp::SetTag, Some("4"), "champion", Some("x"))];
    assert_eq!(run(&spec(), &status, &o, at(0)).status.phase, Phase::Shadow);
    status.pending_registry_writes.clear();
    assert_eq!(run(&spec(), &status, &o, at(0)).status.phase, Phase::Shadow);
}

#[test]
fn registry_outage_never_starts_a_rollout() {
    let o = Observations {
        served_version: None,
        ..obs()
    };
    for status in [stable(), rolled_back_v4(), after_attempts(&[-HOUR])] {
        let out = run(&spec(), &status, &o, at(0));
        assert_eq!(out.status.phase, status.phase);
        assert_eq!(out.status.candidate_version, None);
        assert!(out.transitions.is_empty());
        assert_eq!(out.job, None);
    }
}

#[test]

fn registry_outage_starts_no_retraining() {
    let o = Observations {
        served_version: None,
        drift: Some(drift(Severity::High)),
        ..obs()
    };
    let out = run(&spec(), &stable(), &o, at(0));
    assert_eq!(out.status.phase, Phase::Stable, "{:?}", reasons(&out));
    assert_eq!(out.job, None);
}

#[test]
fn same_input_gives_the_same_output() {
    let s = spec();
    let cases = [
        (
            stable(),
            Observations {
                drift: Some(drift(Severity::High)),
                ..obs()
            },
        ),
        (
            retraining(0),
            Observations {
                job: Some(JobState::Succeeded),
                candidate_lookup: Some(CandidateLookup::Found("4".into())),
                ..obs()
            },
        ),
        (evaluating(0), metrics(Some(0.9), Some(0.88))),
        (
            in_shadow(0),
            round(
                &s,
                AnalysisStage::Shadow,
                Some("error-rate"),
                Verdict::Failed,
            ),
        ),
        (at_step(1, 50, 0), with_manual(Request::Abort, "t")),
    ];
    for (status, o) in &cases {
        let a = run(&s, status, o, at(11 * MIN));
        let b = run(&s, status, o, at(11 * MIN));
        assert_eq!(a, b);
        assert_eq!(
            run(&s, status, o, at(11 * MIN)).requeue_after,
            a.requeue_after
        );
    }
}

#[test]

fn negative_current_step_does_not_panic() {
    let s = spec_with(json!({"rollout": {"analysis": null}}));
    let status = at_step(-1, 10, 0);
    let out = run(&s, &status, &obs(), at(10 * MIN));
    assert!(matches!(
        out.status.phase,
        Phase::Progressing | Phase::Promoted | Phase::RolledBack
    ));
}

// ---------------------------------------------------------------------------------------------
// wants
// ---------------------------------------------------------------------------------------------

#[test]
fn wants_asks_for_what_the_phase_needs() {
    let s = spec();
    assert_eq!(
        wants(&s, &stable(), at(0)),
        Wants::default(),
        "no drift section: nothing"
    );
    assert_eq!(
        wants(&s, &retraining(0), at(MIN)),
        Wants {
            job: Some("fraud-retrain-1".into()),
            candidate_lookup: Some(ATTEMPT_1.into()),
            ..Default::default()
        }
    );
    assert_eq!(
        wants(&s, &after_attempts(&[0]), at(MIN)).job,
        None,
        "a finished attempt's Job is not read"
    );
    assert_eq!(
        wants(&s, &evaluating(0), at(MIN)).evaluation,
        Some(("4".into(), "3".into()))
    );
    assert_eq!(
        wants(&s, &in_shadow(0), at(MIN)).measure,
        Some(AnalysisStage::Shadow)
    );
    assert_eq!(
        wants(&s, &at_step(0, 10, 0), at(MIN)).measure,
        Some(AnalysisStage::Canary)
    );
}

#[test]
fn wants_measures_once_per_interval_and_never_while_paused() {
    let s = spec();
    let mut status = at_step(0, 10, 0);
    status.analysis = Some(AnalysisStatus {
        measurements: 1,
        last_measured_at: time(MIN),
        metrics: vec![],
    });
    assert_eq!(wants(&s, &status, at(2 * MIN - 1)).measure, None);
    assert_eq!(
        wants(&s, &status, at(2 * MIN)).measure,
        Some(AnalysisStage::Canary)
    );
    status.paused = true;
    assert_eq!(wants(&s, &status, at(2 * MIN)).measure, None);
    let no_analysis = spec_with(json!({"rollout": {"analysis": null}}));
    assert_eq!(
        wants(&no_analysis, &at_step(0, 10, 0), at(MIN)).measure,
        None
    );
}

#[test]
fn wants_a_drift_check_when_due() {
    let s = spec_with(
        json!({"drift": {"reference": {"uri": "r.csv"}, "current": {"uri": "c.csv"}, "interval": "1h"}}),
    );
    assert!(wants(&s, &stable(), at(0)).drift_check, "never checked");
    let checked = run(
        &s,
        &stable(),
        &Observations {
            drift: Some(drift(Severity::Ok)),
            ..obs()
        },
        at(0),
    )
    .status;
    assert_eq!(checked.next_drift_check_at, time(HOUR));
    assert!(!wants(&s, &checked, at(HOUR - 1)).drift_check);
    assert!(wants(&s, &checked, at(HOUR)).drift_check);
}

#[test]
fn failed_drift_checks_back_off_exponentially_up_to_the_interval() {
    let s = spec_with(
        json!({"drift": {"reference": {"uri": "r.csv"}, "current": {"uri": "c.csv"}, "interval": "5m"}}),
    );
    let failed = Observations {
        drift: Some(DriftObservation::Failed {
            reason: Reason::DataUnreachable,
            message: "404".into(),
        }),
        ..obs()
    };
    let mut status = stable();
    let mut delays = vec![];
    for _ in 0..5 {
        let out = run(&s, &status, &failed, at(0));
        assert_eq!(reasons(&out), vec![EventReason::DriftCheckFailed]);
        status = out.status;
        delays.push(status.next_drift_check_at.as_ref().unwrap().0.as_second() - T0);
    }
    assert_eq!(delays, vec![30, 60, 120, 240, 300]);
    assert_eq!(status.drift_check_failures, 5);
    let ok = run(
        &s,
        &status,
        &Observations {
            drift: Some(drift(Severity::Ok)),
            ..obs()
        },
        at(0),
    );
    assert_eq!(ok.status.drift_check_failures, 0);
}

// ---------------------------------------------------------------------------------------------
// Through the whole decision: annotations, routes
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
fn a_handled_request_is_not_applied_again() {
    let mut cluster = cluster(&spec(), at_step(0, 10, 0));
    cluster.annotate(manual::PROMOTE, Some("next@2027-01-15T08:01:00Z".into()));
    let first = reconcile_at(&mut cluster, at(MIN));
    assert_eq!(first.status.current_step, Some(1));
    assert_eq!(
        first
            .status
            .handled_requests
            .get(manual::PROMOTE)
            .map(String::as_str),
        Some("next@2027-01-15T08:01:00Z")
    );
    assert_eq!(
        route_weights(&first),
        vec![("fraud-stable".into(), 50), ("fraud-candidate".into(), 50)]
    );
    // The annotation is still there on the next reconcile: not a new request.
    let second = reconcile_at(&mut cluster, at(2 * MIN));
    assert_eq!(second.status.current_step, Some(1));
    assert!(
        !second
            .events
            .iter()
            .any(|e| e.reason == EventCause::Lifecycle(EventReason::ManualPromotion)),
        "{:?}",
        second.events
    );
    // A new value is a new request.
    cluster.annotate(manual::PROMOTE, Some("next@2027-01-15T08:03:00Z".into()));
    let third = reconcile_at(&mut cluster, at(3 * MIN));
    assert_eq!(third.status.current_step, Some(2));
}

#[test]
fn pause_annotation_pauses_and_its_removal_resumes_through_the_decision() {
    let mut cluster = cluster(&spec(), at_step(0, 10, 0));
    cluster.annotate(manual::PAUSE, Some("true".into()));
    let d = reconcile_at(&mut cluster, at(MIN));
    assert!(d.status.paused);
    assert_eq!(
        route_weights(&d),
        vec![("fraud-stable".into(), 90), ("fraud-candidate".into(), 10)]
    );
    let d = reconcile_at(&mut cluster, at(HOUR));
    assert!(d.status.paused, "still annotated");
    assert_eq!(d.status.phase, Phase::Progressing);
    cluster.annotate(manual::PAUSE, None);
    let d = reconcile_at(&mut cluster, at(HOUR + MIN));
    assert!(!d.status.paused);
    assert!(
        d.events
            .iter()
            .any(|e| e.reason == EventCause::Lifecycle(EventReason::Resumed))
    );
}

#[test]
fn rollback_sends_all_traffic_to_stable_in_the_route() {
    let mut cluster = cluster(&spec(), at_step(1, 50, 0));
    let before = reconcile_at(&mut cluster, at(MIN));
    assert_eq!(
        route_weights(&before),
        vec![("fraud-stable".into(), 50), ("fraud-candidate".into(), 50)]
    );
    cluster.annotate(manual::ABORT, Some("t1".into()));
    let d = reconcile_at(&mut cluster, at(2 * MIN));
    assert_eq!(d.status.phase, Phase::RolledBack);
    assert_eq!(route_weights(&d), vec![("fraud-stable".into(), 100)]);
    assert!(
        d.remove
            .contains(&Removal::Deployment("fraud-candidate".into()))
    );
    assert!(
        d.events
            .iter()
            .any(|e| e.reason == EventCause::Lifecycle(EventReason::RolledBack) && e.warning)
    );
    // The shell removed the candidate and wrote the rollback to the registry.
    assert!(!cluster.objects().any(|c| matches!(
        c,
        Child::Deployment(d) if d.metadata.name.as_deref() == Some("fraud-candidate")
    )));
    assert!(cluster.status().pending_registry_writes.is_empty());
}

#[test]
fn shadow_route_mirrors_to_the_candidate_with_no_live_weight() {
    let d = reconcile_at(&mut cluster(&spec(), in_shadow(0)), at(MIN));
    assert_eq!(
        route_weights(&d),
        vec![("fraud-stable".into(), 100), ("fraud-candidate".into(), 0)]
    );
    let value = serde_json::to_value(
        d.apply
            .as_ref()
            .unwrap()
            .iter()
            .find_map(|c| match c {
                Child::HttpRoute(r) => Some(r),
                _ => None,
            })
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        value["spec"]["rules"][0]["filters"][0]["requestMirror"]["percent"],
        100
    );
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

#[test]
fn a_pinned_version_holds_a_retrained_candidate_until_the_pin_moves() {
    let pinned = spec_with(
        json!({"model": {"trackingUri": "http://mlflow:5000", "name": "fraud", "version": "3"}}),
    );
    let out = run(
        &pinned,
        &evaluating(0),
        &metrics(Some(0.95), Some(0.88)),
        at(MIN),
    );
    assert_eq!(out.status.phase, Phase::Stable);
    assert_eq!(out.status.candidate_version, None);
    assert_eq!(out.status.canary_weight, 0);
    assert!(
        reasons(&out).contains(&EventReason::CandidateHeldByPin),
        "{:?}",
        reasons(&out)
    );
    let held = out.status.history.last().unwrap();
    assert_eq!(
        (held.outcome.as_str(), held.reason.as_str()),
        ("Held", "PinnedVersion")
    );
    // The person moves the pin (GitOps): the held version rolls out through the gates.
    let moved = spec_with(
        json!({"model": {"trackingUri": "http://mlflow:5000", "name": "fraud", "version": "4"}}),
    );
    let served = Observations {
        served_version: Some("4".into()),
        ..obs()
    };
    let next = run(&moved, &out.status, &served, at(2 * MIN));
    assert_eq!(next.status.phase, Phase::Shadow);
    assert_eq!(next.status.candidate_version.as_deref(), Some("4"));
}

fn advice(needs_retrain: bool, urgency: crate::advisor::Urgency) -> Observations {
    Observations {
        advisor: Some(crate::core::lifecycle::AdvisorObservation {
            digest: "d1".into(),
            answer: Ok(crate::core::lifecycle::AdvisorAdvice {
                needs_retrain,
                urgency,
                reason: "because".into(),
            }),
        }),
        ..obs()
    }
}

#[test]
fn the_advisor_never_bypasses_cooldown_budget_or_traffic_gates() {
    use crate::advisor::Urgency;
    let s = spec();
    // Immediate: starts an attempt when the gates are open.
    let open = run(&s, &stable(), &advice(true, Urgency::Immediate), at(0));
    assert_eq!(open.status.phase, Phase::Retraining);
    assert_eq!(
        open.status.retraining_attempts.last().unwrap().trigger,
        Trigger::Advisor
    );
    assert_eq!(
        open.status.advisor.as_ref().unwrap().reason.as_deref(),
        Some("because")
    );
    // Scheduled or optional advice waits for the rules.
    for urgency in [Urgency::Scheduled, Urgency::Optional] {
        let out = run(&s, &stable(), &advice(true, urgency), at(0));
        assert_eq!(out.status.phase, Phase::Stable, "{urgency:?}");
    }
    // During the cooldown it is deferred like any trigger.
    let cooling = after_attempts(&[-HOUR]);
    let held = run(&s, &cooling, &advice(true, Urgency::Immediate), at(0));
    assert_ne!(held.status.phase, Phase::Retraining);
    assert_eq!(
        held.status.deferred_trigger.as_ref().unwrap().trigger,
        Trigger::Advisor
    );
    // In a rollout it changes nothing about traffic.
    let stepping = at_step(1, 50, -10);
    let out = run(&s, &stepping, &advice(true, Urgency::Immediate), at(0));
    assert_eq!(out.status.phase, Phase::Progressing);
    assert_eq!(out.status.canary_weight, 50);
    // A broken answer is recorded with its reason and changes nothing else.
    let broken = Observations {
        advisor: Some(crate::core::lifecycle::AdvisorObservation {
            digest: "d2".into(),
            answer: Err(crate::core::lifecycle::AdvisorFailure::from(
                &crate::advisor::AdvisorError::Timeout,
            )),
        }),
        ..obs()
    };
    let out = run(&s, &stable(), &broken, at(0));
    let without = run(&s, &stable(), &obs(), at(0));
    assert_eq!(out.status.phase, without.status.phase);
    assert_eq!(
        out.status.retraining_attempts,
        without.status.retraining_attempts
    );
    assert_eq!(
        out.status.advisor.as_ref().unwrap().error_reason,
        Some(Reason::AdvisorTimeout)
    );
}
