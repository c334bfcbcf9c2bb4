//! Stable → Retraining, on each trigger kind; the advisor as a trigger.

use super::*;

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
