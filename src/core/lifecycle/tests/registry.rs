//! The registry: versions set by hand, versions refused before, pending writes, outages.

use super::*;

#[test]
fn a_version_set_by_hand_in_the_registry_is_rolled_out() {
    let o = Observations {
        served_version: Some("5".into()),
        ..obs()
    };
    let out = run(&spec(), &stable(), &o, at(0));
    assert_eq!(out.status.phase, Phase::Shadow);
    assert_eq!(out.status.candidate_version.as_deref(), Some("5"));
    assert_eq!(out.status.candidate_source, Some(CandidateSource::Registry));
    assert_eq!(out.status.stable_version.as_deref(), Some("3"));
    assert_eq!(
        reasons(&out),
        vec![
            EventReason::CandidateFromRegistry,
            EventReason::ShadowStarted
        ]
    );
    assert_eq!(
        out.transitions[0].message,
        "the registry serves version 5 (stable is 3); rolling it out"
    );
}

#[test]
fn a_rolled_back_version_is_not_rolled_out_again_until_retry() {
    let o = Observations {
        served_version: Some("4".into()),
        ..obs()
    };
    let out = run(&spec(), &rolled_back_v4(), &o, at(0));
    assert_eq!(out.status.phase, Phase::RolledBack);
    assert!(out.transitions.is_empty());
    assert_eq!(out.status.candidate_version, None);
    for outcome in [RolloutOutcome::Rejected, RolloutOutcome::Aborted] {
        let mut status = rolled_back_v4();
        status.history[0].outcome = outcome;
        assert_eq!(
            run(&spec(), &status, &o, at(0)).status.phase,
            Phase::RolledBack,
            "{outcome}"
        );
    }
    // A person asks for it: rolled out.
    let retried = Observations {
        manual: ManualInput {
            paused: false,
            requests: vec![(Request::Retry, "t2".into())],
        },
        ..o
    };
    let out = run(&spec(), &rolled_back_v4(), &retried, at(0));
    assert_eq!(out.status.phase, Phase::Shadow);
    assert_eq!(out.status.candidate_version.as_deref(), Some("4"));
    // A newer version behind the alias is rolled out.
    let newer = Observations {
        served_version: Some("5".into()),
        ..obs()
    };
    assert_eq!(
        run(&spec(), &rolled_back_v4(), &newer, at(0)).status.phase,
        Phase::Shadow
    );
}

#[test]
fn pending_champion_alias_write_suppresses_candidate_detection() {
    let mut status = rolled_back_v4();
    status.history.clear();
    status.pending_registry_writes = vec![write(RegistryOp::SetAlias, Some("3"), "champion", None)];
    let o = Observations {
        served_version: Some("5".into()),
        ..obs()
    };
    let out = run(&spec(), &status, &o, at(0));
    assert_eq!(out.status.phase, Phase::RolledBack);
    assert!(out.transitions.is_empty());
    // A pending tag write (not the alias) does not hold detection back.
    status.pending_registry_writes =
        vec![write(RegistryOp::SetTag, Some("4"), "champion", Some("x"))];
    assert_eq!(run(&spec(), &status, &o, at(0)).status.phase, Phase::Shadow);
    status.pending_registry_writes.clear();
    assert_eq!(run(&spec(), &status, &o, at(0)).status.phase, Phase::Shadow);
}

#[test]
fn registry_outage_never_starts_a_rollout() {
    let o = Observations {
        served_version: None,
        ..obs()
    };
    for status in [stable(), rolled_back_v4(), after_attempts(&[-HOUR])] {
        let out = run(&spec(), &status, &o, at(0));
        assert_eq!(out.status.phase, status.phase);
        assert_eq!(out.status.candidate_version, None);
        assert!(out.transitions.is_empty());
        assert_eq!(out.job, None);
    }
}

#[test]
fn registry_outage_starts_no_retraining() {
    let o = Observations {
        served_version: None,
        drift: Some(drift(Severity::High)),
        ..obs()
    };
    let out = run(&spec(), &stable(), &o, at(0));
    assert_eq!(out.status.phase, Phase::Stable, "{:?}", reasons(&out));
    assert_eq!(out.job, None);
}
