//! The experiment phase (`spec.rollout.experiment`): between shadow and the first step,
//! judged like a step, its outcome in status and in MLflow.

use super::*;
use crate::api::ExperimentOutcome;
use crate::api::PauseReason;

/// The fixture spec with a 20-minute experiment on header `x-canary: insider`.
fn experiment_spec(patch: Value) -> ModelDeploymentSpec {
    let base = spec_with(json!({"rollout": {"experiment": {
        "duration": "20m",
        "match": [{"headers": [{"name": "x-canary", "value": "insider"}]},
                  {"cookie": {"name": "canary", "value": "always"}}],
        "sticky": true
    }}}));
    let mut value = serde_json::to_value(base).unwrap();
    merge(&mut value, &patch);
    serde_json::from_value(value).unwrap()
}

/// The status right after the experiment started at `started` (from a passed shadow).
fn experimenting(spec: &ModelDeploymentSpec, started: i64) -> ModelDeploymentStatus {
    // A passed shadow phase that ended at `started`.
    let mut status = in_shadow(started - 10 * MIN);
    for minute in 1..=3 {
        status = run(
            spec,
            &status,
            &passing(spec, AnalysisStage::Shadow),
            at(started - 10 * MIN + minute * MIN),
        )
        .status;
    }
    let out = run(spec, &status, &obs(), at(started));
    assert_eq!(
        out.status.phase,
        Phase::Experimenting,
        "{:?}",
        out.transitions
    );
    out.status
}

fn tag<'a>(status: &'a ModelDeploymentStatus, key: &str) -> Option<&'a str> {
    status
        .pending_registry_writes
        .iter()
        .find(|w| w.op == RegistryOp::SetTag && w.key == key && w.version.as_deref() == Some("4"))
        .and_then(|w| w.value.as_deref())
}

#[test]
fn a_passed_shadow_starts_the_experiment_with_no_weight_on_the_candidate() {
    let s = experiment_spec(json!({}));
    let status = experimenting(&s, 0);
    assert_eq!(status.canary_weight, 0);
    assert_eq!(status.mirror_percent, 0);
    assert_eq!(status.current_step, None);
    assert_eq!(
        status.analysis, None,
        "the experiment's analysis starts empty"
    );
    let experiment = status.experiment.as_ref().unwrap();
    assert_eq!(experiment.candidate_version, "4");
    assert_eq!(experiment.outcome, ExperimentOutcome::Running);
    assert_eq!(experiment.started_at, time(0));
    let traffic = run(&s, &status, &obs(), at(MIN)).traffic;
    assert!(traffic.experiment);
    assert_eq!(traffic.candidate_version.as_deref(), Some("4"));
    assert_eq!(traffic.canary_weight, 0);
    // The shell is asked for canary measurements, as at a step.
    assert_eq!(
        wants(&s, &status, at(MIN)).measure,
        Some(AnalysisStage::Canary)
    );
}

#[test]
fn without_shadow_the_evaluation_leads_to_the_experiment() {
    let s = experiment_spec(json!({"shadow": {"enabled": false}}));
    let out = run(
        &s,
        &evaluating(0),
        &metrics(Some(0.91), Some(0.88)),
        at(MIN),
    );
    assert_eq!(out.status.phase, Phase::Experimenting);
    assert_eq!(
        reasons(&out),
        vec![
            EventReason::EvaluationPassed,
            EventReason::ExperimentStarted
        ]
    );
    assert!(
        out.transitions[1]
            .message
            .contains("requests with header x-canary=insider or cookie canary=always (sticky"),
        "{}",
        out.transitions[1].message
    );
}

#[test]
fn a_passing_experiment_leads_to_the_first_step_and_is_recorded() {
    let s = experiment_spec(json!({}));
    let mut status = experimenting(&s, 0);
    for minute in 1..=3 {
        status = run(
            &s,
            &status,
            &passing(&s, AnalysisStage::Canary),
            at(minute * MIN),
        )
        .status;
        assert_eq!(status.phase, Phase::Experimenting, "minute {minute}");
    }
    let early = run(&s, &status, &obs(), at(20 * MIN - 1));
    assert_eq!(
        early.status.phase,
        Phase::Experimenting,
        "duration not over"
    );
    let out = run(&s, &status, &obs(), at(20 * MIN));
    assert_eq!(out.status.phase, Phase::Progressing);
    assert_eq!(out.status.current_step, Some(0));
    assert_eq!(out.status.canary_weight, 10);
    assert!(!out.traffic.experiment);
    assert_eq!(
        reasons(&out),
        vec![EventReason::ExperimentPassed, EventReason::StepStarted]
    );
    let experiment = out.status.experiment.as_ref().unwrap();
    assert_eq!(experiment.outcome, ExperimentOutcome::Passed);
    assert_eq!(experiment.finished_at, time(20 * MIN));
    let names: Vec<(&str, i32)> = experiment
        .metrics
        .iter()
        .map(|m| (m.name.as_str(), m.passed))
        .collect();
    assert_eq!(names, vec![("error-rate", 3), ("latency-p99", 3)]);
    assert_eq!(experiment.metrics[0].candidate, Some(0.01));
    assert_eq!(tag(&out.status, "mlrollout.io/experiment"), Some("passed"));
    assert_eq!(
        tag(&out.status, "mlrollout.io/experiment-summary"),
        Some(
            "outcome=passed ran=1200s; error-rate: 3 passed, 0 failed, 0 inconclusive, candidate 0.0100, stable 0.0100; latency-p99: 3 passed, 0 failed, 0 inconclusive, candidate 0.0100, stable 0.0100"
        )
    );
}

#[test]
fn a_failing_experiment_rolls_back_and_is_recorded() {
    let s = experiment_spec(json!({}));
    let status = experimenting(&s, 0);
    let out = run(
        &s,
        &status,
        &round(
            &s,
            AnalysisStage::Canary,
            Some("error-rate"),
            Verdict::Failed,
        ),
        at(MIN),
    );
    let mut expected = rollback_writes(RolloutReason::ExperimentFailed);
    expected.extend([
        write(RegistryOp::SetTag, Some("4"), "mlrollout.io/experiment", Some("failed")),
        write(
            RegistryOp::SetTag,
            Some("4"),
            "mlrollout.io/experiment-summary",
            Some("outcome=failed ran=60s; error-rate: 0 passed, 1 failed, 0 inconclusive, candidate 0.0100, stable 0.0100; latency-p99: 1 passed, 0 failed, 0 inconclusive, candidate 0.0100, stable 0.0100"),
        ),
    ]);
    assert_eq!(out.status.phase, Phase::RolledBack);
    assert_eq!(
        out.status.history.last().unwrap().reason,
        RolloutReason::ExperimentFailed
    );
    assert_eq!(out.status.pending_registry_writes, expected);
    assert!(!out.traffic.experiment);
    assert_eq!(out.traffic.candidate_version, None);
    let experiment = out.status.experiment.as_ref().unwrap();
    assert_eq!(experiment.outcome, ExperimentOutcome::Failed);
    assert!(
        experiment
            .message
            .as_deref()
            .unwrap()
            .contains("rolled back (ExperimentFailed)"),
        "{experiment:?}"
    );
}

#[test]
fn without_analysis_time_alone_ends_the_experiment() {
    let s = experiment_spec(json!({"rollout": {"analysis": null}}));
    let status = experimenting(&s, 0);
    assert_eq!(wants(&s, &status, at(MIN)).measure, None);
    let early = run(&s, &status, &obs(), at(20 * MIN - 1));
    assert_eq!(early.status.phase, Phase::Experimenting);
    let out = run(&s, &status, &obs(), at(20 * MIN));
    assert_eq!(out.status.phase, Phase::Progressing);
    assert_eq!(
        out.transitions[0].message,
        "the experiment ran its duration (no analysis configured)"
    );
    assert_eq!(
        tag(&out.status, "mlrollout.io/experiment-summary"),
        Some("outcome=passed ran=1200s")
    );
}

#[test]
fn missing_evidence_never_moves_the_experiment_forward() {
    let s = experiment_spec(json!({"rollout": {"analysis": {"onInconclusive": "pause"}}}));
    let mut status = experimenting(&s, 0);
    // No measurements at all, long after the duration: it waits, then the deadline rolls back.
    let waiting = run(&s, &status, &obs(), at(40 * MIN));
    assert_eq!(waiting.status.phase, Phase::Experimenting);
    // An unready candidate's measurements do not count.
    let unready = Observations {
        candidate_ready: false,
        ..passing(&s, AnalysisStage::Canary)
    };
    for minute in 1..=3 {
        status = run(&s, &status, &unready, at(minute * MIN)).status;
    }
    let out = run(&s, &status, &obs(), at(21 * MIN));
    assert_eq!(out.status.phase, Phase::Experimenting, "no evidence yet");
    // Inconclusive measurements pause for a person; the experiment keeps running.
    let mut paused = status.clone();
    for minute in 1..=20 {
        let out = run(
            &s,
            &paused,
            &round(&s, AnalysisStage::Canary, None, Verdict::Inconclusive),
            at(minute * MIN),
        );
        paused = out.status;
        if paused.paused {
            break;
        }
    }
    assert!(paused.paused);
    assert_eq!(paused.pause_reason, Some(PauseReason::InconclusiveAnalysis));
    assert_eq!(paused.phase, Phase::Experimenting);
    assert_eq!(
        paused.experiment.as_ref().unwrap().outcome,
        ExperimentOutcome::Running
    );
    // Past the duration and the progress deadline without evidence: rolled back.
    let out = run(&s, &status, &obs(), at(20 * MIN + 30 * MIN + 1));
    assert_eq!(out.status.phase, Phase::RolledBack);
    assert_eq!(
        out.status.history.last().unwrap().reason,
        RolloutReason::ProgressDeadlineExceeded
    );
    assert_eq!(
        out.status.experiment.as_ref().unwrap().outcome,
        ExperimentOutcome::Failed
    );
}

#[test]
fn a_person_ending_the_experiment_interrupts_it() {
    let s = experiment_spec(json!({}));
    let status = experimenting(&s, 0);
    let aborted = run(&s, &status, &with_manual(Request::Abort, "t1"), at(MIN));
    assert_eq!(aborted.status.phase, Phase::RolledBack);
    let experiment = aborted.status.experiment.as_ref().unwrap();
    assert_eq!(experiment.outcome, ExperimentOutcome::Interrupted);
    assert_eq!(experiment.message.as_deref(), Some("aborted by a person"));
    assert_eq!(
        tag(&aborted.status, "mlrollout.io/experiment"),
        Some("interrupted")
    );

    let promoted = run(
        &s,
        &status,
        &with_manual(Request::PromoteNext, "next@t1"),
        at(MIN),
    );
    assert_eq!(promoted.status.phase, Phase::Progressing);
    assert_eq!(promoted.status.canary_weight, 10);
    assert_eq!(
        promoted.status.experiment.as_ref().unwrap().outcome,
        ExperimentOutcome::Interrupted
    );
}

#[test]
fn an_experiment_needs_a_router() {
    let s = experiment_spec(json!({"traffic": {"provider": "none", "parentRefs": null}}));
    let problems = validate(&s).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.field == "spec.rollout.experiment" && p.message.contains("needs a router")),
        "{problems:?}"
    );
}
