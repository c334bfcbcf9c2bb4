//! The shadow phase: mirrored traffic, its analysis, its duration and deadline.

use super::*;
use crate::api::PauseReason;

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
