//! Every announced transition, produced by the real lifecycle and the real decision types,
//! mapped to its notification; the documents; the sink choice; the retry decision.
#![allow(clippy::unwrap_used)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use strum::IntoEnumIterator;

use super::*;
use crate::api::validation::validate;
use crate::api::{
    AttemptOutcome, CandidateSource, DriftSummary, EvaluationStatus, ModelDeploymentSpec,
    RetrainingAttempt,
};
use crate::core::lifecycle::{
    self, CandidateLookup, DriftObservation, EvaluationObservation, JobState, ManualInput,
    Observations, StepInput,
};

const UID: &str = "5c1e0d2a-0000-4000-8000-000000000001";
const T0: i64 = 1_800_000_000;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(T0 + seconds).unwrap()
}

fn spec(analysis_metrics: Value) -> ModelDeploymentSpec {
    serde_json::from_value(json!({
        "model": {"trackingUri": "http://mlflow:5000", "name": "fraud", "alias": "champion"},
        "traffic": {"provider": "gatewayAPI", "parentRefs": [{"name": "gw"}]},
        "retraining": {
            "triggers": {"driftSeverity": "high"},
            "jobTemplate": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "train", "image": "train:1"}]}}}
        },
        "evaluation": {"metric": "accuracy", "minImprovement": 0.01},
        "shadow": {"enabled": true, "mirrorPercent": 50, "duration": "10m"},
        "rollout": {"steps": [10, 50, 100], "stepDuration": "5m", "progressDeadline": "30m",
            "analysis": {"prometheus": {"address": "http://prometheus:9090"}, "interval": "1m",
                "count": 1, "onInconclusive": "pause", "metrics": analysis_metrics}}
    }))
    .unwrap()
}

fn plain_spec() -> ModelDeploymentSpec {
    spec(
        json!([{"name": "error-rate", "query": "q", "max": 0.05, "failureLimit": 0,
        "inconclusiveLimit": 0}]),
    )
}

fn stable() -> ModelDeploymentStatus {
    ModelDeploymentStatus {
        phase: Phase::Stable,
        stable_version: Some("3".into()),
        phase_started_at: Some(Time(at(-3600))),
        drift: Some(DriftSummary::default()),
        ..Default::default()
    }
}

fn with_candidate(phase: Phase) -> ModelDeploymentStatus {
    ModelDeploymentStatus {
        phase,
        candidate_version: Some("4".into()),
        candidate_source: Some(CandidateSource::Retraining),
        evaluation: Some(EvaluationStatus {
            metric: "accuracy".into(),
            candidate_value: Some(0.91),
            champion_value: Some(0.88),
            passed: true,
            reason: "ok".into(),
        }),
        ..stable()
    }
}

fn at_step(index: i32, weight: i32) -> ModelDeploymentStatus {
    ModelDeploymentStatus {
        current_step: Some(index),
        canary_weight: weight,
        ..with_candidate(Phase::Progressing)
    }
}

fn retraining() -> ModelDeploymentStatus {
    ModelDeploymentStatus {
        phase: Phase::Retraining,
        retraining_attempts: vec![RetrainingAttempt {
            number: 1,
            id: lifecycle::attempt_id(UID, 1),
            trigger: Trigger::Drift,
            job_name: "fraud-retrain-1".into(),
            started_at: Some(Time(at(-600))),
            finished_at: None,
            outcome: AttemptOutcome::Running,
            candidate_version: None,
            message: None,
        }],
        ..stable()
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

fn error_rate(verdict: Verdict, candidate: Option<f64>) -> MetricMeasurement {
    MetricMeasurement {
        name: "error-rate".into(),
        verdict,
        candidate,
        stable: Some(0.01),
        threshold: "<= 0.05".into(),
        error: None,
    }
}

/// One lifecycle step, its Events as the decision emits them, and their notifications.
fn announce(
    spec: &ModelDeploymentSpec,
    before: &ModelDeploymentStatus,
    observed: &Observations,
    now: Timestamp,
) -> (ModelDeploymentStatus, Vec<Notification>) {
    let validated = validate(spec).unwrap();
    let out = lifecycle::step(StepInput {
        name: "fraud",
        uid: UID,
        generation: Some(1),
        spec: &validated,
        status: before,
        observed,
        now,
    });
    let events: Vec<EventIntent> = out.transitions.into_iter().map(EventIntent::from).collect();
    let found = notifications(&NotifyInput {
        namespace: "ml",
        name: "fraud",
        uid: UID,
        model: "fraud",
        before,
        after: &out.status,
        events: &events,
        measurements: observed.measurements.as_deref(),
        now,
    });
    (out.status, found)
}

fn only(found: &[Notification], event: NotificationEvent) -> &Notification {
    let matching: Vec<_> = found.iter().filter(|n| n.event == event).collect();
    assert_eq!(matching.len(), 1, "{event}: {found:#?}");
    matching[0]
}

#[test]
fn high_drift_announces_the_severity_change_and_the_retraining() {
    let observed = Observations {
        drift: Some(DriftObservation::Completed {
            summary: DriftSummary {
                severity: Severity::High,
                drift_detected: true,
                drifted_share: 0.6,
                ..Default::default()
            },
            sample_count: None,
        }),
        ..obs()
    };
    let (_, found) = announce(&plain_spec(), &stable(), &observed, at(0));
    let drift = only(&found, NotificationEvent::DriftSeverityChanged);
    assert_eq!(
        drift.data.drift,
        Some(DriftChange {
            from: Some(Severity::Ok),
            to: Severity::High,
            drifted_share: 0.6
        })
    );
    assert!(drift.data.warning);
    let retraining = only(&found, NotificationEvent::RetrainingStarted);
    let attempt = retraining.data.attempt.as_ref().unwrap();
    assert_eq!((attempt.number, attempt.trigger), (1, Trigger::Drift));
    assert_eq!(attempt.job_name, "fraud-retrain-1");
    assert_eq!(retraining.data.stable_version.as_deref(), Some("3"));
    assert_eq!(retraining.data.candidate_version, None);
    assert_eq!(
        headline(retraining),
        "fraud: retraining started (attempt 1, trigger drift)"
    );
}

#[test]
fn a_failed_evaluation_is_a_rejected_candidate_with_its_measurement() {
    let observed = Observations {
        evaluation: Some(EvaluationObservation::Metrics {
            candidate: Some(0.80),
            champion: Some(0.88),
        }),
        ..obs()
    };
    let before = ModelDeploymentStatus {
        evaluation: None,
        ..with_candidate(Phase::Evaluating)
    };
    let (after, found) = announce(&plain_spec(), &before, &observed, at(0));
    assert_eq!(after.phase, Phase::Failed);
    let n = only(&found, NotificationEvent::CandidateRejected);
    assert_eq!(n.data.reason, EventReason::EvaluationFailed);
    assert_eq!(n.data.candidate_version.as_deref(), Some("4"));
    assert_eq!(n.data.rollout_reason, Some(RolloutReason::EvaluationFailed));
    let m = n.data.measurement.as_ref().unwrap();
    assert_eq!(
        (m.metric.as_str(), m.verdict, m.candidate, m.baseline),
        ("accuracy", Verdict::Failed, Some(0.80), Some(0.88))
    );
    assert!(m.detail.as_deref().unwrap().contains("< 0.01"), "{m:?}");
}

#[test]
fn a_job_that_registered_nothing_is_a_rejected_candidate_without_a_version() {
    let observed = Observations {
        job: Some(JobState::Succeeded),
        candidate_lookup: Some(CandidateLookup::NotFound),
        ..obs()
    };
    let (_, found) = announce(&plain_spec(), &retraining(), &observed, at(0));
    let n = only(&found, NotificationEvent::CandidateRejected);
    assert_eq!(n.data.reason, EventReason::CandidateNotRegistered);
    assert_eq!(n.data.candidate_version, None);
    assert_eq!(n.data.measurement, None);
    assert_eq!(headline(n), "fraud: the retraining produced no candidate");
}

#[test]
fn a_passed_evaluation_starts_the_shadow() {
    let observed = Observations {
        evaluation: Some(EvaluationObservation::Metrics {
            candidate: Some(0.91),
            champion: Some(0.88),
        }),
        ..obs()
    };
    let (_, found) = announce(
        &plain_spec(),
        &with_candidate(Phase::Evaluating),
        &observed,
        at(0),
    );
    let n = only(&found, NotificationEvent::ShadowStarted);
    assert_eq!(n.data.mirror_percent, Some(50));
    assert_eq!(n.data.candidate_version.as_deref(), Some("4"));
}

#[test]
fn steps_and_the_promotion_carry_weights_and_versions() {
    let s = plain_spec();
    let passed = Observations {
        measurements: Some(vec![error_rate(Verdict::Passed, Some(0.01))]),
        ..obs()
    };
    let mut before = at_step(0, 10);
    before.phase_started_at = Some(Time(at(0)));
    let (after, found) = announce(&s, &before, &passed, at(300));
    let n = only(&found, NotificationEvent::StepStarted);
    assert_eq!((n.data.step, n.data.canary_weight), (Some(2), Some(50)));
    assert_eq!(
        headline(n),
        "fraud: canary step 2: 50% of traffic on version 4"
    );

    let mut last = at_step(2, 100);
    last.phase_started_at = Some(Time(at(0)));
    let (after_last, found) = announce(&s, &last, &passed, at(300));
    assert_eq!(after.current_step, Some(1));
    assert_eq!(after_last.phase, Phase::Promoted);
    let n = only(&found, NotificationEvent::Promoted);
    assert_eq!(n.data.stable_version.as_deref(), Some("4"));
    assert_eq!(n.data.previous_version.as_deref(), Some("3"));
    assert_eq!(n.data.candidate_version.as_deref(), Some("4"));
}

#[test]
fn a_rollback_carries_the_failing_measurement_of_the_round() {
    let failing = Observations {
        measurements: Some(vec![error_rate(Verdict::Failed, Some(0.09))]),
        ..obs()
    };
    let mut before = at_step(1, 50);
    before.phase_started_at = Some(Time(at(0)));
    let (after, found) = announce(&plain_spec(), &before, &failing, at(60));
    assert_eq!(after.phase, Phase::RolledBack);
    let n = only(&found, NotificationEvent::RolledBack);
    assert!(n.data.warning);
    assert_eq!(n.data.candidate_version.as_deref(), Some("4"));
    assert_eq!(n.data.rollout_reason, Some(RolloutReason::AnalysisFailed));
    let m = n.data.measurement.as_ref().unwrap();
    assert_eq!(
        (m.metric.as_str(), m.verdict, m.candidate, m.baseline),
        ("error-rate", Verdict::Failed, Some(0.09), Some(0.01))
    );
    assert_eq!(m.threshold.as_deref(), Some("<= 0.05"));
    assert_eq!(headline(n), "fraud: version 4 rolled back (AnalysisFailed)");
}

#[test]
fn pauses_for_a_person_are_announced_with_why() {
    let no_data = Observations {
        measurements: Some(vec![error_rate(Verdict::Inconclusive, None)]),
        ..obs()
    };
    let mut before = at_step(0, 10);
    before.phase_started_at = Some(Time(at(0)));
    let (after, found) = announce(&plain_spec(), &before, &no_data, at(60));
    assert!(after.paused);
    let n = only(&found, NotificationEvent::Paused);
    assert_eq!(n.data.reason, EventReason::AnalysisInconclusive);
    assert_eq!(n.data.pause_reason, Some(PauseReason::InconclusiveAnalysis));
    assert_eq!(
        n.data.measurement.as_ref().map(|m| m.verdict),
        Some(Verdict::Inconclusive)
    );

    let annotated = Observations {
        manual: ManualInput {
            paused: true,
            requests: vec![],
        },
        ..obs()
    };
    let (_, found) = announce(&plain_spec(), &before, &annotated, at(60));
    let n = only(&found, NotificationEvent::Paused);
    assert_eq!(n.data.reason, EventReason::Paused);
    assert_eq!(n.data.pause_reason, Some(PauseReason::Manual));
    assert_eq!(n.data.measurement, None);
}

#[test]
fn every_announced_event_has_a_reason_and_other_reasons_announce_nothing() {
    let mapped: Vec<NotificationEvent> = EventReason::iter()
        .filter_map(NotificationEvent::from_reason)
        .collect();
    for event in NotificationEvent::iter() {
        assert!(mapped.contains(&event), "{event} is never produced");
    }
    for quiet in [
        EventReason::EvaluationPassed,
        EventReason::ShadowPassed,
        EventReason::PromotionComplete,
        EventReason::Resumed,
        EventReason::StableVersionServed,
    ] {
        assert_eq!(NotificationEvent::from_reason(quiet), None, "{quiet}");
    }
}

fn sample() -> Notification {
    let failing = Observations {
        measurements: Some(vec![error_rate(Verdict::Failed, Some(0.09))]),
        ..obs()
    };
    let mut before = at_step(1, 50);
    before.phase_started_at = Some(Time(at(0)));
    let (_, mut found) = announce(&plain_spec(), &before, &failing, at(60));
    found.remove(0)
}

#[test]
fn ids_are_deterministic_and_differ_by_transition() {
    let a = sample();
    assert_eq!(a.id, sample().id, "a retried delivery carries the same id");
    assert_eq!(a.id.len(), 32);
    let rolled = EventIntent {
        warning: true,
        reason: EventCause::Lifecycle(EventReason::RolledBack),
        note: a.data.message.clone(),
    };
    let status = stable();
    let ids = |events: &[EventIntent], now| -> Vec<String> {
        notifications(&NotifyInput {
            namespace: "ml",
            name: "fraud",
            uid: UID,
            model: "fraud",
            before: &status,
            after: &status,
            events,
            measurements: None,
            now,
        })
        .into_iter()
        .map(|n| n.id)
        .collect()
    };
    let once = ids(std::slice::from_ref(&rolled), at(60));
    assert_ne!(once, ids(std::slice::from_ref(&rolled), at(61)));
    let twice = ids(&[rolled.clone(), rolled], at(60));
    assert_ne!(twice[0], twice[1], "two Events of one decision");
    assert_eq!(twice[0], once[0]);
}

#[test]
fn the_cloud_event_has_the_required_attributes_and_the_data() {
    let n = sample();
    let ce = cloud_event(&n);
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["id"], n.id.as_str());
    assert_eq!(
        ce["source"],
        "/apis/mlrollout.io/v1alpha1/namespaces/ml/modeldeployments/fraud"
    );
    assert_eq!(ce["type"], "io.mlrollout.modeldeployment.rolledBack");
    assert_eq!(ce["subject"], "fraud");
    assert_eq!(ce["time"], "2027-01-15T08:01:00Z");
    assert_eq!(ce["datacontenttype"], "application/json");
    let data = &ce["data"];
    assert_eq!(data["event"], "rolledBack");
    assert_eq!(data["reason"], "RolledBack");
    assert_eq!(data["model"], "fraud");
    assert_eq!(data["stableVersion"], "3");
    assert_eq!(data["candidateVersion"], "4");
    assert_eq!(data["rolloutReason"], "AnalysisFailed");
    assert_eq!(data["measurement"]["metric"], "error-rate");
    assert_eq!(data["measurement"]["candidate"], 0.09);
    assert_eq!(data["inspect"], "kubectl describe mdep fraud -n ml");
    assert!(data.get("drift").is_none(), "absent fields are left out");
}

#[test]
fn the_slack_message_is_readable_and_escaped() {
    let mut n = sample();
    n.data.message = "version 4 rolled back: <b>&".into();
    let message = slack_message(&n);
    let text = message["text"].as_str().unwrap();
    assert!(
        text.contains("fraud: version 4 rolled back (AnalysisFailed)"),
        "{text}"
    );
    assert!(text.contains("kubectl describe mdep fraud -n ml"), "{text}");
    let blocks = message["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(
        blocks[1]["text"]["text"],
        "version 4 rolled back: &lt;b&gt;&amp;"
    );
    let all = serde_json::to_string(blocks).unwrap();
    for part in [
        "*Model*\\nfraud",
        "*Stable*\\n3",
        "*Candidate*\\n4",
        "*Reason*\\nAnalysisFailed",
        "`error-rate` Failed: candidate 0.0900 vs baseline 0.0100 (threshold &lt;= 0.05)",
        "Inspect: `kubectl describe mdep fraud -n ml`",
    ] {
        assert!(all.contains(part), "{part} in {all}");
    }
}

#[test]
fn a_resource_uses_its_own_sinks_else_the_defaults_unless_it_opts_out() {
    let sink = |name: &str| -> NotificationSink {
        serde_json::from_value(json!({"name": name, "webhook": {"url": "https://h/x"}})).unwrap()
    };
    let defaults = vec![sink("platform")];
    let names = |(sinks, origin): (&[NotificationSink], SinkOrigin)| {
        (
            sinks.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
            origin,
        )
    };
    assert_eq!(
        names(effective_sinks(None, &defaults)),
        (vec!["platform".into()], SinkOrigin::Defaults)
    );
    let own = NotificationsSpec {
        sinks: vec![sink("team")],
        inherit_defaults: true,
    };
    assert_eq!(
        names(effective_sinks(Some(&own), &defaults)),
        (vec!["team".into()], SinkOrigin::Resource)
    );
    let out = NotificationsSpec {
        sinks: vec![],
        inherit_defaults: false,
    };
    assert!(effective_sinks(Some(&out), &defaults).0.is_empty());
    let empty = NotificationsSpec::default();
    assert_eq!(effective_sinks(Some(&empty), &defaults).0.len(), 1);

    let filtered: NotificationSink = serde_json::from_value(
        json!({"name": "s", "slack": {"urlSecretRef": {"name": "s", "key": "url"}},
               "events": ["promoted", "rolledBack"]}),
    )
    .unwrap();
    assert!(filtered.wants(NotificationEvent::Promoted));
    assert!(!filtered.wants(NotificationEvent::StepStarted));
    assert!(sink("all").wants(NotificationEvent::StepStarted));
}

#[test]
fn transient_answers_are_retried_and_permanent_ones_given_up() {
    use AttemptResult::{Status, Transport};
    for (result, next) in [
        (Status(200), NextStep::Delivered),
        (Status(204), NextStep::Delivered),
        (Transport, NextStep::Retry),
        (Status(408), NextStep::Retry),
        (Status(429), NextStep::Retry),
        (Status(500), NextStep::Retry),
        (Status(503), NextStep::Retry),
        (Status(301), NextStep::GiveUp),
        (Status(400), NextStep::GiveUp),
        (Status(401), NextStep::GiveUp),
        (Status(404), NextStep::GiveUp),
    ] {
        assert_eq!(after_attempt(result), next, "{result:?}");
    }
}
