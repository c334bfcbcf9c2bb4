//! The same input gives the same output; an odd status does not panic.

use super::*;

#[test]
fn same_input_gives_the_same_output() {
    let s = spec();
    let cases = [
        (
            stable(),
            Observations {
                drift: Some(drift(Severity::High)),
                ..obs()
            },
        ),
        (
            retraining(0),
            Observations {
                job: Some(JobState::Succeeded),
                candidate_lookup: Some(CandidateLookup::Found("4".into())),
                ..obs()
            },
        ),
        (evaluating(0), metrics(Some(0.9), Some(0.88))),
        (
            in_shadow(0),
            round(
                &s,
                AnalysisStage::Shadow,
                Some("error-rate"),
                Verdict::Failed,
            ),
        ),
        (at_step(1, 50, 0), with_manual(Request::Abort, "t")),
    ];
    for (status, o) in &cases {
        let a = run(&s, status, o, at(11 * MIN));
        let b = run(&s, status, o, at(11 * MIN));
        assert_eq!(a, b);
        assert_eq!(
            run(&s, status, o, at(11 * MIN)).requeue_after,
            a.requeue_after
        );
    }
}

#[test]
fn negative_current_step_does_not_panic() {
    let s = spec_with(json!({"rollout": {"analysis": null}}));
    let status = at_step(-1, 10, 0);
    let out = run(&s, &status, &obs(), at(10 * MIN));
    assert!(matches!(
        out.status.phase,
        Phase::Progressing | Phase::Promoted | Phase::RolledBack
    ));
}
