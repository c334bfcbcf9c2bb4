//! The last step promotes (registry writes, history); Promoted → Stable once the new stable
//! is ready.

use super::*;

#[test]
fn last_step_promotes_and_writes_the_registry() {
    let s = spec();
    let mut status = at_step(2, 100, 0);
    status.history.push(RolloutRecord {
        candidate_version: "2".into(),
        previous_version: None,
        outcome: RolloutOutcome::RolledBack,
        reason: RolloutReason::AnalysisFailed,
        finished_at: None,
    });
    for minute in 1..=3 {
        status = run(
            &s,
            &status,
            &passing(&s, AnalysisStage::Canary),
            at(minute * MIN),
        )
        .status;
    }
    let out = run(
        &s,
        &status,
        &Observations {
            stable_ready: true,
            ..obs()
        },
        at(5 * MIN),
    );
    let st = &out.status;
    assert_eq!(
        st.phase,
        Phase::Promoted,
        "traffic waits for the new stable"
    );
    assert_eq!(st.canary_weight, 100);
    assert_eq!(st.mirror_percent, 0);
    assert_eq!(st.current_step, None);
    assert_eq!(st.stable_version.as_deref(), Some("4"));
    assert_eq!(
        st.candidate_version.as_deref(),
        Some("4"),
        "candidate pods keep serving"
    );
    assert_eq!(
        st.pending_registry_writes,
        vec![
            write(RegistryOp::SetAlias, Some("3"), "previous", None),
            write(RegistryOp::SetAlias, Some("4"), "champion", None),
            write(RegistryOp::DeleteAlias, None, "challenger", None),
            write(
                RegistryOp::SetTag,
                Some("4"),
                "mlrollout.io/rollout",
                Some("promoted")
            ),
        ]
    );
    let last = st.history.last().unwrap();
    assert_eq!(
        (
            last.candidate_version.as_str(),
            last.previous_version.as_deref(),
            last.outcome.as_str()
        ),
        ("4", Some("3"), "Promoted")
    );
    assert_eq!(last.finished_at, time(5 * MIN));
    assert_eq!(reasons(&out), vec![EventReason::Promoted]);
}

#[test]
fn promoted_returns_to_stable_only_when_the_new_stable_is_ready() {
    let promoted = ModelDeploymentStatus {
        phase: Phase::Promoted,
        phase_started_at: time(0),
        canary_weight: 100,
        current_step: None,
        stable_version: Some("4".into()),
        ..at_step(2, 100, 0)
    };
    let waiting = run(
        &spec(),
        &promoted,
        &Observations {
            stable_ready: false,
            ..obs()
        },
        at(MIN),
    );
    assert_eq!(waiting.status.phase, Phase::Promoted);
    assert_eq!(waiting.status.canary_weight, 100);
    assert!(waiting.transitions.is_empty());

    let out = run(
        &spec(),
        &promoted,
        &Observations {
            stable_ready: true,
            ..obs()
        },
        at(2 * MIN),
    );
    assert_eq!(out.status.phase, Phase::Stable);
    assert_eq!(out.status.canary_weight, 0);
    assert_eq!(out.status.candidate_version, None);
    assert_eq!(out.status.candidate_source, None);
    assert_eq!(out.status.stable_version.as_deref(), Some("4"));
    assert_eq!(reasons(&out), vec![EventReason::PromotionComplete]);

    // The new stable never becomes ready: traffic stays on the candidate, a warning is raised
    // and the deadline restarts.
    let late = run(
        &spec(),
        &promoted,
        &Observations {
            stable_ready: false,
            ..obs()
        },
        at(30 * MIN + 1),
    );
    assert_eq!(late.status.phase, Phase::Promoted);
    assert_eq!(late.status.canary_weight, 100);
    assert_eq!(late.status.phase_started_at, time(30 * MIN + 1));
    assert_eq!(reasons(&late), vec![EventReason::ProgressDeadlineExceeded]);
    assert!(late.transitions[0].warning);
}
