//! Triggers held back by the cooldown and the daily budget of attempts.

use std::time::Duration;

use super::*;
use crate::api::DeferredTrigger;

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
