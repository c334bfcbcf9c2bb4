//! Setting Kubernetes-convention conditions (`type`, `status`, `reason`, `message`,
//! `lastTransitionTime`, `observedGeneration`). The types and reasons themselves are API
//! vocabulary: [`crate::api::conditions`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::{ModelDeploymentStatus, PauseReason, Phase};

pub use crate::api::conditions::{ConditionType, Reason};

/// A condition the decision wants to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionUpdate {
    pub type_: ConditionType,
    pub status: bool,
    pub reason: Reason,
    pub message: String,
}

impl ConditionUpdate {
    pub fn new(
        type_: ConditionType,
        status: bool,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Sets a condition, keeping `lastTransitionTime` unless the status flips. Returns true when the
/// status or reason changed (a transition worth an Event).
pub fn set(
    conditions: &mut Vec<Condition>,
    update: &ConditionUpdate,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let status = if update.status { "True" } else { "False" };
    let reason = update.reason.as_str();
    match conditions
        .iter_mut()
        .find(|c| c.type_ == update.type_.as_str())
    {
        Some(existing) => {
            let flipped = existing.status != status;
            let changed = flipped || existing.reason != reason;
            if flipped {
                existing.last_transition_time = Time(now);
            }
            existing.status = status.into();
            existing.reason = reason.into();
            existing.message = update.message.clone();
            existing.observed_generation = generation;
            changed
        }
        None => {
            conditions.push(Condition {
                type_: update.type_.as_str().into(),
                status: status.into(),
                reason: reason.into(),
                message: update.message.clone(),
                last_transition_time: Time(now),
                observed_generation: generation,
            });
            true
        }
    }
}

/// Looks a condition up by type.
pub fn get(conditions: &[Condition], type_: ConditionType) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == type_.as_str())
}

/// kstatus' two abnormal-true conditions, `Reconciling` and `Stalled`, for a status whose
/// phase is decided and whose `Ready` condition is `ready` (what Flux and `kstatus` read:
/// Reconciling=True → InProgress, Stalled=True → Failed, neither → `Ready` decides).
///
/// - Stalled=True when nothing moves without a person: an invalid spec, a rollback, a failed
///   attempt, or an analysis that could not decide (paused for a person).
/// - Reconciling=True while the operator moves toward a state: retraining, evaluation, shadow,
///   the steps, or waiting for the registry or the replicas.
/// - A pause a person asked for (`mlrollout.io/pause`) is neither: the operator holds as told,
///   `Ready` speaks for what is served (README, "GitOps: Argo CD and Flux").
///
/// The two are never True together (kstatus would take whichever comes first in the list).
pub fn reconciling_and_stalled(
    status: &ModelDeploymentStatus,
    ready: &ConditionUpdate,
) -> (ConditionUpdate, ConditionUpdate) {
    let stalled = stalled(status, ready);
    let reconciling = if stalled.is_some() || status.paused {
        None
    } else {
        reconciling(status, ready)
    };
    let resting_reason = if status.paused {
        Reason::Paused
    } else {
        Reason::of_phase(status.phase)
    };
    let reconciling = match (reconciling, &stalled) {
        (Some((reason, message)), _) => {
            ConditionUpdate::new(ConditionType::Reconciling, true, reason, message)
        }
        (None, Some((reason, _))) => ConditionUpdate::new(
            ConditionType::Reconciling,
            false,
            *reason,
            "stalled: see the Stalled condition",
        ),
        (None, None) => ConditionUpdate::new(
            ConditionType::Reconciling,
            false,
            resting_reason,
            resting_message(status),
        ),
    };
    let stalled = match stalled {
        Some((reason, message)) => {
            ConditionUpdate::new(ConditionType::Stalled, true, reason, message)
        }
        None => ConditionUpdate::new(
            ConditionType::Stalled,
            false,
            resting_reason,
            "nothing waits for a person",
        ),
    };
    (reconciling, stalled)
}

fn stable_of(status: &ModelDeploymentStatus) -> &str {
    status.stable_version.as_deref().unwrap_or("none")
}

/// Why nothing moves on without a person, if so.
fn stalled(status: &ModelDeploymentStatus, ready: &ConditionUpdate) -> Option<(Reason, String)> {
    if ready.reason == Reason::InvalidSpec {
        return Some((
            Reason::InvalidSpec,
            format!("fix the spec: {}", ready.message),
        ));
    }
    if status.paused && status.pause_reason == Some(PauseReason::InconclusiveAnalysis) {
        return Some((
            Reason::InconclusiveAnalysis,
            format!(
                "the analysis could not decide in phase {}; a person resumes, promotes or aborts (mlrollout resume|promote|abort)",
                status.phase.as_str()
            ),
        ));
    }
    match status.phase {
        Phase::RolledBack => {
            let (candidate, why) = status.history.last().map_or(("?", "?"), |h| {
                (h.candidate_version.as_str(), h.reason.as_str())
            });
            Some((
                Reason::RolledBack,
                format!(
                    "version {candidate} was rolled back ({why}); version {} serves all traffic until a retry, a retraining or a new version",
                    stable_of(status)
                ),
            ))
        }
        Phase::Failed => Some((
            Reason::Failed,
            format!(
                "the last attempt failed ({}); version {} serves all traffic until a retry or the next retraining",
                status.message.as_deref().unwrap_or(""),
                stable_of(status)
            ),
        )),
        _ => None,
    }
}

/// What the operator is still moving toward, if anything.
fn reconciling(
    status: &ModelDeploymentStatus,
    ready: &ConditionUpdate,
) -> Option<(Reason, String)> {
    let candidate = status.candidate_version.as_deref().unwrap_or("?");
    let message = match status.phase {
        Phase::Retraining => {
            let job = status
                .retraining_attempts
                .last()
                .map_or("?", |a| a.job_name.as_str());
            format!("retraining: Job {job} is running")
        }
        Phase::Evaluating => {
            format!("evaluating version {candidate} against the champion")
        }
        Phase::Shadow => format!(
            "shadow: {}% of traffic mirrored to version {candidate}",
            status.mirror_percent
        ),
        Phase::Experimenting => format!("experiment: matching requests go to version {candidate}"),
        Phase::Progressing => format!(
            "step {}: {}% of traffic on version {candidate}",
            status.current_step.map_or(0, |i| i + 1),
            status.canary_weight
        ),
        Phase::Pending | Phase::Stable | Phase::Promoted | Phase::RolledBack | Phase::Failed => {
            return (!ready.status).then(|| (ready.reason, ready.message.clone()));
        }
    };
    Some((Reason::of_phase(status.phase), message))
}

fn resting_message(status: &ModelDeploymentStatus) -> String {
    if status.paused && status.pause_reason == Some(PauseReason::Step) {
        format!(
            "paused at a pause step of rollout.plan in phase {}; mlrollout promote (or resume) continues",
            status.phase.as_str()
        )
    } else if status.paused {
        format!(
            "paused by a person (mlrollout.io/pause) in phase {}; mlrollout resume continues",
            status.phase.as_str()
        )
    } else {
        format!("version {} serves all traffic", stable_of(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let t2 = Timestamp::from_second(3_000).unwrap();
        let ready = |status, reason, message| {
            ConditionUpdate::new(ConditionType::Ready, status, reason, message)
        };
        let mut conds = Vec::new();
        assert!(set(
            &mut conds,
            &ready(false, Reason::Unresolved, "m"),
            Some(1),
            t0
        ));
        assert!(set(
            &mut conds,
            &ready(false, Reason::ModelNotFound, "m2"),
            Some(2),
            t1
        ));
        assert_eq!(conds[0].last_transition_time, Time(t0));
        assert_eq!(conds[0].observed_generation, Some(2));
        assert!(!set(
            &mut conds,
            &ready(false, Reason::ModelNotFound, "m3"),
            Some(2),
            t1
        ));
        assert!(set(
            &mut conds,
            &ready(true, Reason::Available, ""),
            Some(2),
            t2
        ));
        assert_eq!(conds[0].last_transition_time, Time(t2));
        assert_eq!(conds.len(), 1);
    }
}

#[cfg(test)]
mod kstatus_pair_tests {
    use super::*;
    use crate::api::{RolloutOutcome, RolloutReason, RolloutRecord};

    fn ready(status: bool, reason: Reason) -> ConditionUpdate {
        ConditionUpdate::new(ConditionType::Ready, status, reason, "ready message")
    }

    fn status(phase: Phase) -> ModelDeploymentStatus {
        ModelDeploymentStatus {
            phase,
            stable_version: Some("3".into()),
            candidate_version: Some("4".into()),
            canary_weight: 50,
            current_step: Some(1),
            ..Default::default()
        }
    }

    /// (Reconciling, Stalled) as (status, reason).
    fn pair(s: &ModelDeploymentStatus, r: &ConditionUpdate) -> ((bool, Reason), (bool, Reason)) {
        let (rec, st) = reconciling_and_stalled(s, r);
        assert_eq!(rec.type_, ConditionType::Reconciling);
        assert_eq!(st.type_, ConditionType::Stalled);
        ((rec.status, rec.reason), (st.status, st.reason))
    }

    #[test]
    fn every_phase_maps_as_the_readme_table_says() {
        let available = ready(true, Reason::Available);
        let expected = |phase| match phase {
            Phase::Retraining
            | Phase::Evaluating
            | Phase::Shadow
            | Phase::Experimenting
            | Phase::Progressing => (
                (true, Reason::of_phase(phase)),
                (false, Reason::of_phase(phase)),
            ),
            Phase::RolledBack | Phase::Failed => (
                (false, Reason::of_phase(phase)),
                (true, Reason::of_phase(phase)),
            ),
            _ => (
                (false, Reason::of_phase(phase)),
                (false, Reason::of_phase(phase)),
            ),
        };
        for phase in Phase::ALL {
            assert_eq!(
                pair(&status(phase), &available),
                expected(phase),
                "{phase:?}"
            );
        }
    }

    #[test]
    fn waiting_for_the_registry_or_replicas_is_reconciling() {
        let s = status(Phase::Pending);
        let r = ready(false, Reason::ModelNotFound);
        assert_eq!(pair(&s, &r).0, (true, Reason::ModelNotFound));
        for phase in [Phase::Stable, Phase::Promoted] {
            let r = ready(false, Reason::WaitingForReplicas);
            assert_eq!(
                pair(&status(phase), &r),
                (
                    (true, Reason::WaitingForReplicas),
                    (false, Reason::of_phase(phase))
                )
            );
        }
    }

    #[test]
    fn an_invalid_spec_stalls_in_every_phase() {
        let r = ready(false, Reason::InvalidSpec);
        for phase in Phase::ALL {
            let (rec, st) = reconciling_and_stalled(&status(phase), &r);
            assert!(!rec.status && st.status, "{phase:?}");
            assert_eq!(st.reason, Reason::InvalidSpec);
            assert!(st.message.contains("ready message"), "{}", st.message);
        }
    }

    #[test]
    fn a_pause_for_a_person_stalls_a_pause_by_a_person_holds() {
        let r = ready(true, Reason::Available);
        let mut s = status(Phase::Progressing);
        s.paused = true;
        s.pause_reason = Some(PauseReason::InconclusiveAnalysis);
        assert_eq!(
            pair(&s, &r),
            (
                (false, Reason::InconclusiveAnalysis),
                (true, Reason::InconclusiveAnalysis)
            )
        );
        s.pause_reason = Some(PauseReason::Manual);
        assert_eq!(
            pair(&s, &r),
            ((false, Reason::Paused), (false, Reason::Paused))
        );
        // Not ready while paused by hand: still not "reconciling" (the operator holds).
        let r = ready(false, Reason::WaitingForReplicas);
        assert_eq!(
            pair(&s, &r),
            ((false, Reason::Paused), (false, Reason::Paused))
        );
    }

    #[test]
    fn a_pause_step_holds_like_a_pause_by_a_person_and_says_how_to_go_on() {
        let r = ready(true, Reason::Available);
        let mut s = status(Phase::Progressing);
        s.paused = true;
        s.pause_reason = Some(PauseReason::Step);
        let (rec, st) = reconciling_and_stalled(&s, &r);
        assert_eq!(
            ((rec.status, rec.reason), (st.status, st.reason)),
            ((false, Reason::Paused), (false, Reason::Paused))
        );
        assert!(
            rec.message
                .starts_with("paused at a pause step of rollout.plan")
                && rec.message.contains("mlrollout promote"),
            "{}",
            rec.message
        );
        s.pause_reason = Some(PauseReason::Manual);
        let (rec, _) = reconciling_and_stalled(&s, &r);
        assert!(
            rec.message.contains("mlrollout.io/pause"),
            "{}",
            rec.message
        );
    }

    #[test]
    fn messages_say_where_the_rollout_stands() {
        let r = ready(true, Reason::Available);
        let (rec, _) = reconciling_and_stalled(&status(Phase::Progressing), &r);
        assert_eq!(rec.message, "step 2: 50% of traffic on version 4");
        let mut s = status(Phase::RolledBack);
        s.history.push(RolloutRecord {
            candidate_version: "4".into(),
            previous_version: Some("3".into()),
            outcome: RolloutOutcome::RolledBack,
            reason: RolloutReason::AnalysisFailed,
            finished_at: None,
        });
        let (_, st) = reconciling_and_stalled(&s, &r);
        assert!(
            st.message
                .starts_with("version 4 was rolled back (AnalysisFailed); version 3"),
            "{}",
            st.message
        );
    }

    #[test]
    fn never_both_true() {
        use proptest::prelude::*;
        let reasons = [
            Reason::Available,
            Reason::WaitingForReplicas,
            Reason::InvalidSpec,
            Reason::ModelNotFound,
            Reason::RegistryUnavailable,
        ];
        let strategy = (
            0..Phase::ALL.len(),
            any::<bool>(),
            prop_oneof![
                Just(None),
                Just(Some(PauseReason::Manual)),
                Just(Some(PauseReason::InconclusiveAnalysis))
            ],
            any::<bool>(),
            0..reasons.len(),
        );
        let mut runner = proptest::test_runner::TestRunner::default();
        runner
            .run(&strategy, |(p, paused, pause_reason, ok, reason)| {
                let mut s = status(Phase::ALL[p]);
                s.paused = paused;
                s.pause_reason = pause_reason;
                let (rec, st) = reconciling_and_stalled(&s, &ready(ok, reasons[reason]));
                prop_assert!(!(rec.status && st.status), "{rec:?} {st:?}");
                // A manual pause is never reported as work in progress or as stuck.
                if paused
                    && pause_reason == Some(PauseReason::Manual)
                    && reasons[reason] != Reason::InvalidSpec
                    && !matches!(Phase::ALL[p], Phase::RolledBack | Phase::Failed)
                {
                    prop_assert!(!rec.status && !st.status);
                }
                Ok(())
            })
            .unwrap();
    }
}
