//! Manual requests (annotations set by a person or the CLI): abort, promote, retry, pause
//! and resume.

use super::*;
use crate::api::{AnalysisStatus, PauseReason};
use crate::core::decide::Removal;

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
