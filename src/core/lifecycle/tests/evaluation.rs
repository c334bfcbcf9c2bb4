//! Evaluating: the candidate's metric against the champion's, then the shadow phase (or the
//! first step), or a rejected candidate.

use super::*;

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

/// One test per row: the candidate's and the champion's metric, and what the rejection says.
macro_rules! rejections {
    ($($name:ident: $candidate:expr, $champion:expr => $why:expr;)+) => {$(
        #[test]
        fn $name() {
            let out = run(&spec(), &evaluating(0), &metrics($candidate, $champion), at(MIN));
            assert_rejected(&out, $why);
        }
    )+};
}

rejections! {
    not_enough_improvement_rejects_the_candidate:
        Some(0.884), Some(0.88) => "< 0.005";
    missing_candidate_metric_rejects:
        None, Some(0.88) => "the candidate's run has no metric \"accuracy\"";
    non_finite_candidate_metric_rejects:
        Some(f64::NAN), Some(0.88) => "the candidate's run has no metric";
    missing_champion_metric_rejects:
        Some(0.99), None => "the champion's run has no metric \"accuracy\" to compare with";
    non_finite_champion_metric_rejects:
        Some(0.99), Some(f64::INFINITY) => "the champion's run has no metric";
}

/// Evaluates `candidate` against `champion` with `evaluation` merged into the fixture spec's
/// evaluation section; asserts the phase it leads to (and that the verdict agrees).
fn assert_evaluated(evaluation: Value, candidate: f64, champion: f64, phase: Phase) {
    let s = spec_with(json!({ "evaluation": evaluation }));
    let out = run(
        &s,
        &evaluating(0),
        &metrics(Some(candidate), Some(champion)),
        at(MIN),
    );
    let verdict = out
        .status
        .evaluation
        .as_ref()
        .expect("an evaluation verdict");
    let case = format!("{evaluation} with {candidate} against {champion}: {verdict:?}");
    assert_eq!(out.status.phase, phase, "{case}");
    assert_eq!(verdict.passed, phase == Phase::Shadow, "{case}");
}

#[test]
fn lower_is_better_compares_the_other_way() {
    let rmse = json!({"metric": "rmse", "direction": "lowerIsBetter", "minImprovement": 0.25});
    // (candidate, champion, phase)
    let cases = [
        (1.25, 1.5, Phase::Shadow),
        (1.5, 1.25, Phase::Failed),
        // A higher rmse is worse.
        (1.75, 1.5, Phase::Failed),
    ];
    for (candidate, champion, phase) in cases {
        assert_evaluated(rmse.clone(), candidate, champion, phase);
    }
}

#[test]
fn min_improvement_boundary_is_inclusive() {
    // (minImprovement, candidate, champion, phase)
    let cases = [
        // Exactly representable values: 0.75 - 0.5 == 0.25.
        (0.25, 0.75, 0.5, Phase::Shadow),
        (0.25, 0.7499, 0.5, Phase::Failed),
        // No minimum: equal is enough, worse is not.
        (0.0, 0.88, 0.88, Phase::Shadow),
        (0.0, 0.879, 0.88, Phase::Failed),
    ];
    for (min_improvement, candidate, champion, phase) in cases {
        let evaluation = json!({ "minImprovement": min_improvement });
        assert_evaluated(evaluation, candidate, champion, phase);
    }
}

#[test]
fn min_improvement_boundary_is_inclusive_for_decimal_metrics() {
    // (minImprovement, candidate, champion): decimal differences that are not exact in binary.
    let cases = [(0.05, 0.85, 0.80), (0.01, 0.82, 0.81)];
    for (min_improvement, candidate, champion) in cases {
        let evaluation = json!({ "minImprovement": min_improvement });
        assert_evaluated(evaluation, candidate, champion, Phase::Shadow);
    }
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
