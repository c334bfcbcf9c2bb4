//! What the lifecycle asks the shell to observe, and when drift is checked.

use super::*;
use crate::api::AnalysisStatus;

#[test]
fn wants_asks_for_what_the_phase_needs() {
    let s = spec();
    assert_eq!(
        wants(&s, &stable(), at(0)),
        Wants::default(),
        "no drift section: nothing"
    );
    assert_eq!(
        wants(&s, &retraining(0), at(MIN)),
        Wants {
            job: Some("fraud-retrain-1".into()),
            candidate_lookup: Some(ATTEMPT_1.into()),
            ..Default::default()
        }
    );
    assert_eq!(
        wants(&s, &after_attempts(&[0]), at(MIN)).job,
        None,
        "a finished attempt's Job is not read"
    );
    assert_eq!(
        wants(&s, &evaluating(0), at(MIN)).evaluation,
        Some(("4".into(), "3".into()))
    );
    assert_eq!(
        wants(&s, &in_shadow(0), at(MIN)).measure,
        Some(AnalysisStage::Shadow)
    );
    assert_eq!(
        wants(&s, &at_step(0, 10, 0), at(MIN)).measure,
        Some(AnalysisStage::Canary)
    );
}

#[test]
fn wants_measures_once_per_interval_and_never_while_paused() {
    let s = spec();
    let mut status = at_step(0, 10, 0);
    status.analysis = Some(AnalysisStatus {
        measurements: 1,
        last_measured_at: time(MIN),
        metrics: vec![],
    });
    assert_eq!(wants(&s, &status, at(2 * MIN - 1)).measure, None);
    assert_eq!(
        wants(&s, &status, at(2 * MIN)).measure,
        Some(AnalysisStage::Canary)
    );
    status.paused = true;
    assert_eq!(wants(&s, &status, at(2 * MIN)).measure, None);
    let no_analysis = spec_with(json!({"rollout": {"analysis": null}}));
    assert_eq!(
        wants(&no_analysis, &at_step(0, 10, 0), at(MIN)).measure,
        None
    );
}

#[test]
fn wants_a_drift_check_when_due() {
    let s = spec_with(
        json!({"drift": {"reference": {"uri": "r.csv"}, "current": {"uri": "c.csv"}, "interval": "1h"}}),
    );
    assert!(wants(&s, &stable(), at(0)).drift_check, "never checked");
    let checked = run(
        &s,
        &stable(),
        &Observations {
            drift: Some(drift(Severity::Ok)),
            ..obs()
        },
        at(0),
    )
    .status;
    assert_eq!(checked.next_drift_check_at, time(HOUR));
    assert!(!wants(&s, &checked, at(HOUR - 1)).drift_check);
    assert!(wants(&s, &checked, at(HOUR)).drift_check);
}

#[test]
fn failed_drift_checks_back_off_exponentially_up_to_the_interval() {
    let s = spec_with(
        json!({"drift": {"reference": {"uri": "r.csv"}, "current": {"uri": "c.csv"}, "interval": "5m"}}),
    );
    let failed = Observations {
        drift: Some(DriftObservation::Failed {
            reason: Reason::DataUnreachable,
            message: "404".into(),
        }),
        ..obs()
    };
    let mut status = stable();
    let mut delays = vec![];
    for _ in 0..5 {
        let out = run(&s, &status, &failed, at(0));
        assert_eq!(reasons(&out), vec![EventReason::DriftCheckFailed]);
        status = out.status;
        delays.push(status.next_drift_check_at.as_ref().unwrap().0.as_second() - T0);
    }
    assert_eq!(delays, vec![30, 60, 120, 240, 300]);
    assert_eq!(status.drift_check_failures, 5);
    let ok = run(
        &s,
        &status,
        &Observations {
            drift: Some(drift(Severity::Ok)),
            ..obs()
        },
        at(0),
    );
    assert_eq!(ok.status.drift_check_failures, 0);
}
