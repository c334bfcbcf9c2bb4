//! Retraining → Evaluating (the Job registered a candidate) or Failed.

use super::*;
use crate::core::decide::Removal;

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
