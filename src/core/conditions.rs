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
fn reconciling(status: &ModelDeploymentStatus, ready: &ConditionUpdate) -> Option<(Reason, String)> {
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
    if status.paused {
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
