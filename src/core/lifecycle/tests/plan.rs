//! `rollout.plan`: steps with their own duration, pauses (until a person answers, or for a
//! time), mirror steps before the weights, and per-step analysis overrides.

use proptest::prelude::*;

use super::*;
use crate::api::PauseReason;

fn plan_spec(plan: Value) -> ModelDeploymentSpec {
    spec_with(json!({"rollout": {"plan": plan}}))
}

#[test]
fn each_step_keeps_its_own_duration() {
    let s = plan_spec(json!([
        {"weight": 10, "duration": "2m"},
        {"weight": 50, "duration": "20m"},
        {"weight": 100}
    ]));
    let status = pass_minutes(&s, at_step(0, 10, 0), AnalysisStage::Canary, 1..=2);
    let out = run(
        &s,
        &status,
        &passing(&s, AnalysisStage::Canary),
        at(3 * MIN),
    );
    assert_eq!(
        out.status.current_step,
        Some(1),
        "2 minutes, not stepDuration"
    );
    assert_eq!(out.status.canary_weight, 50);
    assert_eq!(
        out.transitions.last().unwrap().message,
        "step 2 of 3: 50% of traffic on the candidate"
    );
}

#[test]
fn an_indefinite_pause_holds_until_a_person_promotes_or_resumes() {
    let s = plan_spec(json!([{"weight": 10}, {"weight": 50, "pause": {}}, {"weight": 100}]));
    let status = pass_minutes(&s, at_step(0, 10, 0), AnalysisStage::Canary, 1..=5);
    assert_eq!(status.current_step, Some(1));
    assert!(status.paused, "the pause step holds");
    assert_eq!(status.pause_reason, Some(PauseReason::Step));
    assert!(
        status
            .message
            .as_deref()
            .unwrap()
            .contains("paused until a person promotes")
    );
    // Hours later nothing moved, and nothing is measured.
    let later = run(&s, &status, &obs(), at(10 * HOUR_S));
    assert_eq!(
        (later.status.current_step, later.status.canary_weight),
        (Some(1), 50)
    );
    assert_eq!(wants(&s, &later.status, at(10 * HOUR_S)).measure, None);
    // `mlrollout promote` moves on to the next step.
    let promoted = run(
        &s,
        &later.status,
        &with_manual(Request::PromoteNext, "next@1"),
        at(10 * HOUR_S + 1),
    );
    assert_eq!(promoted.status.current_step, Some(2));
    assert!(!promoted.status.paused);
    // `mlrollout resume` ends the pause too: the step has nothing to wait for.
    let resumed = run(
        &s,
        &later.status,
        &with_manual(Request::Resume, "1"),
        at(10 * HOUR_S + 1),
    );
    let resumed = run(&s, &resumed.status, &obs(), at(10 * HOUR_S + 2));
    assert_eq!(resumed.status.current_step, Some(2));
}

#[test]
fn a_timed_pause_holds_without_measuring_then_moves_on() {
    let s = plan_spec(json!([{"weight": 10, "pause": {"duration": "30m"}}, {"weight": 100}]));
    let status = at_step(0, 10, 0);
    assert_eq!(
        wants(&s, &status, at(MIN)).measure,
        None,
        "no analysis in a pause"
    );
    let out = run(&s, &status, &obs(), at(30 * MIN - 1));
    assert_eq!(out.status.current_step, Some(0));
    assert!(!out.status.paused);
    let out = run(&s, &status, &obs(), at(30 * MIN));
    assert_eq!(out.status.current_step, Some(1));
}

#[test]
fn mirror_steps_ramp_shadow_traffic_and_are_judged_like_the_shadow_phase() {
    let s = plan_spec(json!([{"mirror": 25}, {"mirror": 100}, {"weight": 50}, {"weight": 100}]));
    let mut status = at_step(0, 0, 0);
    status.mirror_percent = 25;
    assert_eq!(
        wants(&s, &status, at(MIN)).measure,
        Some(AnalysisStage::Shadow)
    );
    let out = run(&s, &status, &passing(&s, AnalysisStage::Shadow), at(MIN));
    assert_eq!(out.traffic.canary_weight, 0);
    assert_eq!(out.traffic.mirror_percent, 25);
    let failed = round(
        &s,
        AnalysisStage::Shadow,
        Some("prediction-psi"),
        Verdict::Failed,
    );
    let out = run(&s, &status, &failed, at(MIN));
    assert_rolled_back(
        &out,
        RolloutOutcome::RolledBack,
        RolloutReason::ShadowFailed,
    );
    assert_eq!(out.traffic.mirror_percent, 0);
}

#[test]
fn a_step_can_need_fewer_measurements_and_add_a_metric() {
    let s = plan_spec(json!([
        {"weight": 10, "duration": "1m", "analysis": {"count": 1, "interval": "20s",
            "metrics": [{"name": "p50-latency", "query": "q", "max": 0.1}]}},
        {"weight": 100}
    ]));
    let status = at_step(0, 10, 0);
    let w = wants(&s, &status, at(20));
    assert_eq!(w.measure, Some(AnalysisStage::Canary), "its own interval");
    let steps = &valid(&s).timing.rollout.steps;
    let metrics = crate::core::verdict::builtin::metrics_at_step(
        &s,
        steps,
        Some(0),
        AnalysisStage::Canary,
        10,
    );
    let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, vec!["error-rate", "latency-p99", "p50-latency"]);
    let mut observed = passing(&s, AnalysisStage::Canary);
    observed.measurements = Some(
        names
            .iter()
            .map(|n| measurement(n, Verdict::Passed))
            .collect(),
    );
    let out = run(&s, &status, &observed, at(MIN));
    assert_eq!(
        out.status.current_step,
        Some(1),
        "one measurement was enough"
    );
    // The added metric gates like the others.
    observed.measurements = Some(
        names
            .iter()
            .map(|n| {
                let v = if *n == "p50-latency" {
                    Verdict::Failed
                } else {
                    Verdict::Passed
                };
                measurement(n, v)
            })
            .collect(),
    );
    let out = run(&s, &status, &observed, at(MIN));
    assert_rolled_back(
        &out,
        RolloutOutcome::RolledBack,
        RolloutReason::AnalysisFailed,
    );
}

#[test]
fn plans_are_checked_where_cel_cannot_reach() {
    let problems = |rollout: Value| {
        validate(&spec_with(json!({"rollout": rollout})))
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect::<Vec<_>>()
    };
    assert!(problems(json!({"plan": [{"weight": 10}, {"weight": 100}]})).is_empty());
    let both = problems(json!({"steps": [20, 100], "plan": [{"weight": 100}]}));
    assert!(both[0].contains("not both"), "{both:?}");
    let late = problems(json!({"plan": [{"weight": 10}, {"mirror": 50}, {"weight": 100}]}));
    assert!(late[0].contains("mirror steps come before"), "{late:?}");
    let end = problems(json!({"plan": [{"weight": 10}, {"weight": 50}]}));
    assert!(end[0].contains("must end at 100"), "{end:?}");
}

const HOUR_S: i64 = 3600;

/// A plan: some mirror steps, then increasing weights ending at 100, some of them pauses.
fn any_plan() -> impl Strategy<Value = Vec<Value>> {
    (
        proptest::collection::vec(1..=100i32, 0..3),
        proptest::collection::btree_set(1..100i32, 0..4),
        proptest::collection::vec(any::<bool>(), 5),
    )
        .prop_map(|(mirrors, weights, pauses)| {
            let mut plan: Vec<Value> = mirrors.iter().map(|m| json!({"mirror": m})).collect();
            let weights: Vec<i32> = weights.into_iter().chain([100]).collect();
            for (i, w) in weights.iter().enumerate() {
                plan.push(if pauses[i % pauses.len()] && *w < 100 {
                    json!({"weight": w, "pause": {"duration": "10m"}})
                } else {
                    json!({"weight": w})
                });
            }
            plan
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Without passed measurements a non-pause step never moves forward, the weight is
    /// always the current step's, and a mirror step never sends live traffic.
    #[test]
    fn no_step_moves_forward_on_missing_evidence(plan in any_plan(), minutes in 1..240i64) {
        let s = plan_spec(Value::Array(plan));
        let steps = valid(&s).timing.rollout.steps.clone();
        let mut status = at_step(0, steps[0].weight, 0);
        status.mirror_percent = steps[0].mirror;
        let quiet = round(&s, AnalysisStage::Canary, None, Verdict::Inconclusive);
        for minute in 1..=minutes {
            let out = run(&s, &status, &quiet, at(minute * MIN));
            status = out.status;
            if status.phase != Phase::Progressing {
                break;
            }
            let i = status.current_step.unwrap() as usize;
            prop_assert_eq!(status.canary_weight, steps[i].weight);
            prop_assert_eq!(status.mirror_percent, steps[i].mirror);
            // Only pause steps (no analysis) may have been passed.
            prop_assert!(steps[..i].iter().all(|st| st.pause), "{:?} at {}", steps, i);
        }
    }
}
