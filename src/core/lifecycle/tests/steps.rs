//! Progressing: the canary steps, their duration and the analysis limits.

use super::*;
use crate::api::PauseReason;

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
fn a_failing_dry_run_metric_is_recorded_and_reported_once_but_never_gates() {
    let s = spec_with(
        json!({"rollout": {"stepDuration": "5m", "analysis": {"count": 3, "metrics": [
            {"name": "error-rate", "query": "q", "max": 0.05},
            {"name": "new-threshold", "query": "q", "max": 0.01, "dryRun": true}
        ]}}}),
    );
    let failing = round(
        &s,
        AnalysisStage::Canary,
        Some("new-threshold"),
        Verdict::Failed,
    );
    let mut status = at_step(0, 10, 0);
    let mut dry_run_events = 0;
    for minute in 1..=3 {
        let out = run(&s, &status, &failing, at(minute * MIN));
        assert_eq!(out.status.phase, Phase::Progressing, "minute {minute}");
        dry_run_events += out
            .transitions
            .iter()
            .filter(|t| t.reason == EventReason::DryRunMetricFailed)
            .inspect(|t| {
                assert!(t.warning);
                assert!(
                    t.message
                        .starts_with("dry-run metric new-threshold would have rolled back"),
                    "{}",
                    t.message
                );
            })
            .count();
        status = out.status;
    }
    assert_eq!(
        dry_run_events, 1,
        "reported when it first crosses its limit"
    );
    let analysis = status.analysis.as_ref().unwrap();
    let dry = analysis
        .metrics
        .iter()
        .find(|m| m.name == "new-threshold")
        .unwrap();
    assert!(dry.dry_run && dry.failed == 3, "{dry:?}");
    assert!(
        !status
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("dry-run"),
        "the status message stays the gate's: {:?}",
        status.message
    );
    // The gating metric passed three times: the step advances on time.
    let out = run(&s, &status, &obs(), at(5 * MIN));
    assert_eq!(out.status.current_step, Some(1));
}

#[test]
fn sequential_metrics_sit_out_the_full_traffic_step() {
    let s = spec_with(
        json!({"rollout": {"stepDuration": "2m", "analysis": {"count": 2, "metrics": [
            {"name": "error-rate", "judge": "sequential"}
        ]}}}),
    );
    // At 50 % the sequential metric gates: no measurements, no advance.
    let out = run(&s, &at_step(1, 50, 0), &obs(), at(2 * MIN));
    assert_eq!(out.status.current_step, Some(1));
    // At 100 % stable serves nothing: no metric applies and the step ends on time.
    let out = run(&s, &at_step(2, 100, 0), &obs(), at(2 * MIN - 1));
    assert_eq!(out.status.phase, Phase::Progressing);
    let out = run(&s, &at_step(2, 100, 0), &obs(), at(2 * MIN));
    assert_eq!(
        out.status.phase,
        Phase::Promoted,
        "{:?}",
        out.status.message
    );
}
