//! After promotion: the previous version kept warm (`scaleDownDelay`) while the post-promotion
//! analysis runs; a failure goes back to it at once. After a rollback: the candidate kept for
//! debugging (`abortScaleDownDelay`).

use super::*;

fn warm_spec() -> ModelDeploymentSpec {
    spec_with(json!({"rollout": {
        "scaleDownDelay": "15m",
        "postPromotion": {"duration": "10m", "metrics": [
            {"name": "error-rate-absolute", "query": "q", "max": 0.05}
        ]}
    }}))
}

/// Promoted at minute 5 after three passing measurements at the last step.
fn promoted(s: &ModelDeploymentSpec) -> StepOutput {
    let status = pass_minutes(s, at_step(2, 100, 0), AnalysisStage::Canary, 1..=3);
    run(s, &status, &obs(), at(5 * MIN))
}

#[test]
fn promotion_keeps_the_previous_version_warm_while_the_analysis_runs() {
    let s = warm_spec();
    let out = promoted(&s);
    let st = &out.status;
    assert_eq!(st.phase, Phase::Promoted);
    assert_eq!(st.stable_version.as_deref(), Some("4"), "the new champion");
    let window = st.post_promotion.as_ref().expect("a warm window");
    assert_eq!(window.previous_version, "3");
    assert_eq!(window.analysis_until, time(15 * MIN));
    assert_eq!(window.warm_until, time(20 * MIN));
    // The stable Deployment keeps running 3; the candidate's pods serve all traffic.
    assert_eq!(out.traffic.stable_version.as_deref(), Some("3"));
    assert_eq!(out.traffic.candidate_version.as_deref(), Some("4"));
    assert_eq!(out.traffic.canary_weight, 100);
    assert!(
        out.transitions[0]
            .message
            .contains("version 3 stays warm while the post-promotion analysis runs"),
        "{}",
        out.transitions[0].message
    );
    // Measurements are wanted for the post-promotion stage, and stable readiness (of the
    // old version) does not end the promotion.
    assert_eq!(
        wants(&s, st, at(6 * MIN)).measure,
        Some(AnalysisStage::PostPromotion)
    );
    let ready = Observations {
        stable_ready: true,
        ..passing(&s, AnalysisStage::PostPromotion)
    };
    let next = run(&s, st, &ready, at(6 * MIN));
    assert_eq!(next.status.phase, Phase::Promoted);
    assert!(next.status.post_promotion.is_some());
}

#[test]
fn a_post_promotion_failure_goes_back_to_the_warm_previous_version_at_once() {
    let s = warm_spec();
    let mut promoted = promoted(&s).status;
    promoted.pending_registry_writes.clear(); // MLflow confirmed the promotion's writes
    let failing = round(&s, AnalysisStage::PostPromotion, None, Verdict::Failed);
    let out = run(&s, &promoted, &failing, at(7 * MIN));
    assert_rolled_back(
        &out,
        RolloutOutcome::RolledBack,
        RolloutReason::PostPromotionAnalysisFailed,
    );
    let st = &out.status;
    assert_eq!(st.stable_version.as_deref(), Some("3"));
    assert_eq!(st.post_promotion, None);
    assert_eq!(out.traffic.stable_version.as_deref(), Some("3"));
    assert_eq!(
        out.traffic.canary_weight, 0,
        "all traffic on the warm 3 at once"
    );
    let last = st.history.last().unwrap();
    assert_eq!(
        (
            last.candidate_version.as_str(),
            last.previous_version.as_deref()
        ),
        ("4", Some("3"))
    );
    let writes = &st.pending_registry_writes;
    for expected in [
        write(RegistryOp::SetAlias, Some("3"), "champion", None),
        write(
            RegistryOp::SetTag,
            Some("4"),
            "mlrollout.io/rollout",
            Some("rolled-back: PostPromotionAnalysisFailed"),
        ),
    ] {
        assert!(writes.contains(&expected), "{expected:?} in {writes:?}");
    }
}

#[test]
fn a_passed_window_hands_stable_the_promoted_version_after_the_delay() {
    let s = warm_spec();
    let mut status = promoted(&s).status;
    for minute in 6..=14 {
        status = run(
            &s,
            &status,
            &passing(&s, AnalysisStage::PostPromotion),
            at(minute * MIN),
        )
        .status;
        assert!(status.post_promotion.is_some(), "minute {minute}");
    }
    // Analysis over at 15, the previous version stays warm until 20 (scaleDownDelay).
    let out = run(&s, &status, &obs(), at(16 * MIN));
    assert_eq!(wants(&s, &out.status, at(17 * MIN)).measure, None);
    assert_eq!(out.traffic.stable_version.as_deref(), Some("3"));
    let out = run(&s, &out.status, &obs(), at(20 * MIN));
    assert_eq!(reasons(&out), vec![EventReason::PostPromotionPassed]);
    assert_eq!(out.status.post_promotion, None);
    assert_eq!(out.traffic.stable_version.as_deref(), Some("4"));
    assert_eq!(
        out.status.phase,
        Phase::Promoted,
        "waits for the new stable"
    );
    let ready = Observations {
        stable_ready: true,
        ..obs()
    };
    let out = run(&s, &out.status, &ready, at(21 * MIN));
    assert_eq!(out.status.phase, Phase::Stable);
    assert_eq!(out.traffic.candidate_version, None);
}

#[test]
fn an_abort_in_the_window_goes_back_to_the_previous_version() {
    let s = spec_with(json!({"rollout": {"scaleDownDelay": "30m"}}));
    let mut promoted = promoted(&s).status;
    promoted.pending_registry_writes.clear(); // MLflow confirmed the promotion's writes
    assert!(
        promoted
            .post_promotion
            .as_ref()
            .is_some_and(|w| w.analysis_until.is_none())
    );
    let out = run(
        &s,
        &promoted,
        &with_manual(Request::Abort, "1"),
        at(10 * MIN),
    );
    assert_rolled_back(&out, RolloutOutcome::Aborted, RolloutReason::Aborted);
    assert_eq!(out.status.stable_version.as_deref(), Some("3"));
    assert_eq!(out.traffic.canary_weight, 0);
}

#[test]
fn without_a_window_promotion_updates_stable_at_once() {
    let out = promoted(&spec());
    assert_eq!(out.status.post_promotion, None);
    assert_eq!(out.traffic.stable_version.as_deref(), Some("4"));
}

#[test]
fn a_rolled_back_candidate_is_kept_without_traffic_for_the_abort_delay() {
    let s = spec_with(json!({"rollout": {"abortScaleDownDelay": "10m"}}));
    let failed = round(
        &s,
        AnalysisStage::Canary,
        Some("error-rate"),
        Verdict::Failed,
    );
    let out = run(&s, &at_step(1, 50, 0), &failed, at(MIN));
    assert_eq!(out.status.phase, Phase::RolledBack);
    assert_eq!(out.traffic.candidate_version.as_deref(), Some("4"));
    assert_eq!(out.traffic.canary_weight, 0, "kept, but serves nothing");
    let retained = out.status.retained_candidate.clone().unwrap();
    assert_eq!(retained.until, time(11 * MIN));
    assert!(out.requeue_after <= Duration::from_secs(600));
    let later = run(&s, &out.status, &obs(), at(5 * MIN));
    assert_eq!(later.traffic.candidate_version.as_deref(), Some("4"));
    let out = run(&s, &later.status, &obs(), at(11 * MIN));
    assert_eq!(out.traffic.candidate_version, None);
    assert_eq!(out.status.retained_candidate, None);
    assert!(reasons(&out).contains(&EventReason::CandidateReleased));
}
