//! Setting Kubernetes-convention conditions (`type`, `status`, `reason`, `message`,
//! `lastTransitionTime`, `observedGeneration`). The types and reasons themselves are API
//! vocabulary: [`crate::api::conditions`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

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
