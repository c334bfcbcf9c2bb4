//! The conditions every decision restates — Ready, Progressing, DriftChecked,
//! AdvisorAvailable — and the status message.

use std::time::Duration;

use super::*;

/// Ready, Progressing, DriftChecked, AdvisorAvailable and the status message; returns the
/// requeue delay (short while stable is not ready).
pub(super) fn set_conditions(
    input: &DecideInput<'_>,
    spec: &ModelDeploymentSpec,
    status: &mut ModelDeploymentStatus,
    conds: &mut Conds,
    requeue_after: Duration,
) -> Duration {
    let stable_ready = set_ready(input, spec, status, conds);
    set_progressing(status, conds);
    set_drift_checked(input, spec, status, conds);
    set_advisor_available(spec, status, conds);
    let stable_version = status.stable_version.clone().unwrap_or_default();
    if status.phase == Phase::Stable && (stable_ready || status.message.is_none()) {
        status.message = Some(format!("Serving version {stable_version}"));
    } else if status.message.is_none() {
        status.message = Some(String::new());
    }
    if stable_ready {
        requeue_after
    } else {
        requeue_after.min(SHORT_RETRY)
    }
}

/// Ready: the stable Deployment is up to date with its replicas ready. Returns whether it is.
fn set_ready(
    input: &DecideInput<'_>,
    spec: &ModelDeploymentSpec,
    status: &mut ModelDeploymentStatus,
    conds: &mut Conds,
) -> bool {
    let stable_version = status.stable_version.clone().unwrap_or_default();
    let stable_ready = input.observed.stable_deployment.as_ref().is_some_and(|d| {
        d.updated && d.ready_replicas >= d.desired_replicas.min(spec.serving.replicas)
    });
    let update = if stable_ready {
        ConditionUpdate::new(
            ConditionType::Ready,
            true,
            Reason::Available,
            format!("version {stable_version} is serving"),
        )
    } else {
        ConditionUpdate::new(
            ConditionType::Ready,
            false,
            Reason::WaitingForReplicas,
            format!(
                "waiting for the stable Deployment of version {stable_version} to become ready"
            ),
        )
    };
    conds.set(status, update);
    stable_ready
}

fn set_progressing(status: &mut ModelDeploymentStatus, conds: &mut Conds) {
    let progressing = if status.paused {
        let why = match status.pause_reason {
            Some(PauseReason::InconclusiveAnalysis) => {
                "paused for a person: the analysis could not decide"
            }
            Some(PauseReason::Step) => {
                "paused at a pause step of rollout.plan until a person promotes or resumes"
            }
            Some(PauseReason::Manual) | None => "paused by mlrollout.io/pause",
        };
        ConditionUpdate::new(ConditionType::Progressing, false, Reason::Paused, why)
    } else if lifecycle::is_active(status.phase) {
        let what = match (status.phase, status.current_step) {
            (Phase::Progressing, Some(i)) => format!(
                "step {} at {}% on the candidate",
                i + 1,
                status.canary_weight
            ),
            (phase, _) => phase.as_str().to_string(),
        };
        ConditionUpdate::new(
            ConditionType::Progressing,
            true,
            Reason::of_phase(status.phase),
            what,
        )
    } else {
        let stable_version = status.stable_version.as_deref().unwrap_or_default();
        ConditionUpdate::new(
            ConditionType::Progressing,
            false,
            Reason::of_phase(status.phase),
            format!("version {stable_version} serves all traffic"),
        )
    };
    conds.set(status, progressing);
}

fn set_drift_checked(
    input: &DecideInput<'_>,
    spec: &ModelDeploymentSpec,
    status: &mut ModelDeploymentStatus,
    conds: &mut Conds,
) {
    let update = match &input.observed.lifecycle.drift {
        Some(lifecycle::DriftObservation::Completed { summary, .. }) => ConditionUpdate::new(
            ConditionType::DriftChecked,
            true,
            Reason::Checked,
            format!(
                "severity {}: {:.0}% of features drifted ({} reference rows, {} current rows){}",
                summary.severity,
                summary.drifted_share * 100.0,
                summary.reference_rows,
                summary.current_rows,
                label_join_message(summary)
            ),
        ),
        Some(lifecycle::DriftObservation::Failed { reason, message }) => ConditionUpdate::new(
            ConditionType::DriftChecked,
            false,
            *reason,
            format!("drift check failed, nothing else changed; retried with backoff: {message}"),
        ),
        // No check in this reconcile: the last result still stands, now for this generation
        // (`kubectl wait --for=condition=DriftChecked` waits while a condition's
        // observedGeneration is behind metadata.generation, i.e. after any spec edit until the
        // next check).
        None => {
            if spec.drift.is_some()
                && let Some(c) = status
                    .conditions
                    .iter_mut()
                    .find(|c| c.type_ == ConditionType::DriftChecked.as_str())
            {
                c.observed_generation = input.generation;
            }
            return;
        }
    };
    conds.set(status, update);
}

/// With labels joined to captured predictions: the accuracy and how the labels met them
/// (empty otherwise, so the message of a check without a join is unchanged).
fn label_join_message(summary: &crate::api::DriftSummary) -> String {
    let Some(j) = &summary.label_join else {
        return String::new();
    };
    let accuracy = summary
        .accuracy
        .map_or_else(|| "no accuracy".to_owned(), |a| format!("accuracy {a:.4}"));
    format!(
        "; {accuracy} on {} captured predictions joined with labels ({} labels without a captured prediction, {} predictions without a label)",
        j.joined, j.unmatched_labels, j.unlabelled_predictions
    )
}

fn set_advisor_available(
    spec: &ModelDeploymentSpec,
    status: &mut ModelDeploymentStatus,
    conds: &mut Conds,
) {
    let Some(advisor) = status.advisor.clone().filter(|_| spec.advisor.enabled) else {
        return;
    };
    let update = match (&advisor.error, &advisor.error_reason) {
        (Some(error), reason) => ConditionUpdate::new(
            ConditionType::AdvisorAvailable,
            false,
            reason.unwrap_or(Reason::AdvisorError),
            format!("{error}; the rule-based decision stands"),
        ),
        (None, _) => ConditionUpdate::new(
            ConditionType::AdvisorAvailable,
            true,
            Reason::Answered,
            advisor.reason.clone().unwrap_or_default(),
        ),
    };
    conds.set(status, update);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drift_message_says_how_labels_met_the_captured_predictions() {
        let mut summary = crate::api::DriftSummary {
            accuracy: Some(0.875),
            ..Default::default()
        };
        assert_eq!(
            label_join_message(&summary),
            "",
            "no join: the message is unchanged"
        );
        summary.label_join = Some(crate::api::LabelJoinStatus {
            joined: 800,
            unlabelled_predictions: 40,
            unmatched_labels: 12,
            ..Default::default()
        });
        assert_eq!(
            label_join_message(&summary),
            "; accuracy 0.8750 on 800 captured predictions joined with labels (12 labels without a captured prediction, 40 predictions without a label)"
        );
        summary.accuracy = None;
        assert!(label_join_message(&summary).starts_with("; no accuracy on 800"));
    }

    #[test]
    fn a_pause_step_says_so_in_progressing() {
        for (reason, expected) in [
            (
                Some(PauseReason::Step),
                "paused at a pause step of rollout.plan",
            ),
            (
                Some(PauseReason::InconclusiveAnalysis),
                "the analysis could not decide",
            ),
            (Some(PauseReason::Manual), "paused by mlrollout.io/pause"),
        ] {
            let mut status = ModelDeploymentStatus {
                phase: Phase::Progressing,
                paused: true,
                pause_reason: reason,
                ..Default::default()
            };
            let mut conds = Conds {
                generation: Some(1),
                now: Timestamp::from_second(1_800_000_000).unwrap(),
                events: Vec::new(),
            };
            set_progressing(&mut status, &mut conds);
            let progressing = conditions::get(&status.conditions, ConditionType::Progressing)
                .expect("Progressing is set");
            assert_eq!(progressing.status, "False");
            assert_eq!(progressing.reason, Reason::Paused.as_str());
            assert!(
                progressing.message.contains(expected),
                "{reason:?}: {}",
                progressing.message
            );
        }
    }
}
