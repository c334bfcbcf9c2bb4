//! Kubernetes-convention conditions (`type`, `status`, `reason`, `message`,
//! `lastTransitionTime`, `observedGeneration`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// `Ready`: the stable variant serves the resolved model.
pub const READY: &str = "Ready";
/// `RegistrySynced`: the operator's view of the model matches MLflow.
pub const REGISTRY_SYNCED: &str = "RegistrySynced";
/// `Synced`: every desired child object is applied.
pub const SYNCED: &str = "Synced";

/// A condition the decision wants to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionUpdate {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl ConditionUpdate {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
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
    match conditions.iter_mut().find(|c| c.type_ == update.type_) {
        Some(existing) => {
            let flipped = existing.status != status;
            let changed = flipped || existing.reason != update.reason;
            if flipped {
                existing.last_transition_time = Time(now);
            }
            existing.status = status.into();
            existing.reason = update.reason.clone();
            existing.message = update.message.clone();
            existing.observed_generation = generation;
            changed
        }
        None => {
            conditions.push(Condition {
                type_: update.type_.into(),
                status: status.into(),
                reason: update.reason.clone(),
                message: update.message.clone(),
                last_transition_time: Time(now),
                observed_generation: generation,
            });
            true
        }
    }
}

/// Looks a condition up by type.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let t2 = Timestamp::from_second(3_000).unwrap();
        let mut conds = Vec::new();
        assert!(set(
            &mut conds,
            &ConditionUpdate::new(READY, false, "A", "m"),
            Some(1),
            t0
        ));
        assert!(set(
            &mut conds,
            &ConditionUpdate::new(READY, false, "B", "m2"),
            Some(2),
            t1
        ));
        assert_eq!(conds[0].last_transition_time, Time(t0));
        assert_eq!(conds[0].observed_generation, Some(2));
        assert!(!set(
            &mut conds,
            &ConditionUpdate::new(READY, false, "B", "m3"),
            Some(2),
            t1
        ));
        assert!(set(
            &mut conds,
            &ConditionUpdate::new(READY, true, "C", ""),
            Some(2),
            t2
        ));
        assert_eq!(conds[0].last_transition_time, Time(t2));
        assert_eq!(conds.len(), 1);
    }
}
