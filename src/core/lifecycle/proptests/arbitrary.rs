//! Arbitrary (schema-valid) statuses and observations, for the no-panic property.

use proptest::collection::vec;
use strum::IntoEnumIterator;

use super::strategies::verdict;
use super::*;
use crate::api::{
    AnalysisStatus, DeferredTrigger, EvaluationStatus, MetricStatus, PauseReason, RegistryWrite,
    RetrainingAttempt, RolloutRecord, Trigger,
};

fn phase() -> impl Strategy<Value = Phase> {
    prop::sample::select(Phase::ALL.to_vec())
}

fn word() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "",
        "3",
        "4",
        "champion",
        "drift",
        "manual",
        "Running",
        "Aborted",
        "RolledBack",
        "x y",
    ])
    .prop_map(String::from)
}

fn maybe_time() -> impl Strategy<Value = Option<Time>> {
    prop::option::of((-10_000_000i64..10_000_000).prop_map(|s| Time(at(s))))
}

fn metric_status() -> impl Strategy<Value = MetricStatus> {
    (
        prop::sample::select(vec!["error-rate", "latency-p99", "prediction-psi", "m0"]),
        0..20i32,
        0..20i32,
        0..20i32,
        any::<bool>(),
    )
        .prop_map(
            |(name, failed, inconclusive, consecutive_errors, dry_run)| MetricStatus {
                name: name.into(),
                passed: failed / 2,
                failed,
                inconclusive,
                consecutive_errors,
                recent: vec![],
                dry_run,
            },
        )
}

pub(super) fn arbitrary_status() -> impl Strategy<Value = ModelDeploymentStatus> {
    let attempt = (
        0..1000i64,
        any_of(Trigger::iter()),
        word(),
        maybe_time(),
        any_of(AttemptOutcome::iter()),
        prop::option::of(word()),
    )
        .prop_map(
            |(number, trigger, job_name, started_at, outcome, candidate_version)| {
                RetrainingAttempt {
                    number,
                    id: format!("a-{number}"),
                    trigger,
                    job_name,
                    started_at,
                    finished_at: None,
                    outcome,
                    candidate_version,
                    message: None,
                }
            },
        );
    let record = (
        word(),
        prop::option::of(word()),
        any_of(RolloutOutcome::iter()),
        any_of(RolloutReason::iter()),
    )
        .prop_map(
            |(candidate_version, previous_version, outcome, reason)| RolloutRecord {
                candidate_version,
                previous_version,
                outcome,
                reason,
                finished_at: None,
            },
        );
    let write = (any_of(RegistryOp::iter()), prop::option::of(word()), word()).prop_map(
        |(op, version, key)| RegistryWrite {
            op,
            version,
            key,
            value: None,
        },
    );
    (
        (
            phase(),
            any::<bool>(),
            prop::option::of(any_of(PauseReason::iter())),
            prop::option::of(word()),
            prop::option::of(word()),
            -10..150i32,
            -10..150i32,
            // Negative steps panic: see tests::negative_current_step_does_not_panic.
            prop::option::of(0..25i32),
        ),
        (
            maybe_time(),
            vec(attempt, 0..4),
            vec(record, 0..4),
            prop::option::of((0..50i32, maybe_time(), vec(metric_status(), 0..4))),
            prop::option::of((any_of(Trigger::iter()), maybe_time())),
            prop::option::of(-5..5i64),
            maybe_time(),
            vec(write, 0..3),
        ),
        (
            prop::option::of((any::<bool>(), prop::option::of(-1.0..2.0f64))),
            prop::option::of(any_of(CandidateSource::iter())),
        ),
    )
        .prop_map(
            |(
                (
                    phase,
                    paused,
                    pause_reason,
                    stable_version,
                    candidate_version,
                    canary_weight,
                    mirror_percent,
                    current_step,
                ),
                (
                    phase_started_at,
                    retraining_attempts,
                    history,
                    analysis,
                    deferred,
                    samples,
                    anchor,
                    pending,
                ),
                (evaluation, candidate_source),
            )| ModelDeploymentStatus {
                phase,
                paused,
                pause_reason,
                stable_version,
                candidate_version,
                canary_weight,
                mirror_percent,
                current_step,
                phase_started_at,
                retraining_attempts,
                history,
                analysis: analysis.map(|(measurements, last_measured_at, metrics)| {
                    AnalysisStatus {
                        measurements,
                        last_measured_at,
                        metrics,
                    }
                }),
                deferred_trigger: deferred.map(|(trigger, at)| DeferredTrigger {
                    trigger,
                    at,
                    reason: "r".into(),
                }),
                samples_at_last_training: samples,
                schedule_anchor: anchor,
                pending_registry_writes: pending,
                evaluation: evaluation.map(|(passed, candidate_value)| EvaluationStatus {
                    metric: "accuracy".into(),
                    candidate_value,
                    champion_value: Some(0.8),
                    passed,
                    reason: "r".into(),
                }),
                candidate_source,
                ..Default::default()
            },
        )
}

/// Any value of a closed vocabulary.
fn any_of<T: Clone + std::fmt::Debug + 'static>(
    values: impl Iterator<Item = T>,
) -> impl Strategy<Value = T> {
    prop::sample::select(values.collect::<Vec<_>>())
}

pub(super) fn arbitrary_observations() -> impl Strategy<Value = Observations> {
    let requests = vec(
        prop::sample::select(vec![
            Request::Abort,
            Request::Retry,
            Request::Retrain,
            Request::Resume,
            Request::PromoteNext,
            Request::PromoteFull,
        ])
        .prop_map(|r| (r, "v".to_string())),
        0..3,
    );
    (
        (
            prop::option::of(word()),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
        (
            prop::option::of(0..4u8),
            prop::option::of(0..4u8),
            prop::option::of(0..3u8),
            prop::option::of((
                prop::option::of(-1.0..2.0f64),
                prop::option::of(-1.0..2.0f64),
            )),
            prop::option::of(vec((word(), 0..100u8), 0..4)),
            requests,
        ),
    )
        .prop_map(
            |(
                (served_version, stable_ready, candidate_ready, paused, advisor),
                (drift, job, lookup, evaluation, measurements, requests),
            )| {
                Observations {
                    served_version,
                    stable_ready,
                    candidate_ready,
                    drift: drift.map(|d| match d {
                        3 => DriftObservation::Failed {
                            reason: Reason::DataUnreachable,
                            message: "m".into(),
                        },
                        s => DriftObservation::Completed {
                            summary: DriftSummary {
                                severity: [Severity::Ok, Severity::Medium, Severity::High]
                                    [s as usize],
                                ..Default::default()
                            },
                            sample_count: Some(i64::from(s) * 10_000),
                        },
                    }),
                    job: job.map(|j| match j {
                        0 => JobState::Running,
                        1 => JobState::Succeeded,
                        2 => JobState::Failed("f".into()),
                        _ => JobState::Missing,
                    }),
                    candidate_lookup: lookup.map(|l| match l {
                        0 => CandidateLookup::Found("9".into()),
                        1 => CandidateLookup::NotFound,
                        _ => CandidateLookup::Error("e".into()),
                    }),
                    evaluation: evaluation.map(|(candidate, champion)| {
                        EvaluationObservation::Metrics {
                            candidate,
                            champion,
                        }
                    }),
                    measurements: measurements.map(|ms| {
                        ms.into_iter()
                            .map(|(name, v)| MetricMeasurement {
                                name,
                                verdict: verdict(v),
                                candidate: Some(0.1),
                                stable: None,
                                threshold: "t".into(),
                                error: None,
                            })
                            .collect()
                    }),
                    manual: ManualInput { paused, requests },
                    advisor_recommends: advisor,
                    advisor: None,
                }
            },
        )
}
