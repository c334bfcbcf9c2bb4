//! Resting phases (triggers, gates, candidates from the registry) and the retraining Job.

use super::*;

/// Stable, RolledBack, Failed: watch for a new version in the registry and for triggers.
pub(super) fn resting(cx: &mut Ctx<'_>, retrain_requested: bool, advisor_now: bool) {
    if !roll_out_registry_version(cx) {
        watch_triggers(cx, retrain_requested, advisor_now);
    }
}

/// A version behind the alias (or pin) that is not the stable one: someone promoted by hand
/// in MLflow or changed the pin. It goes through the analysed path; a version already rolled
/// back or rejected is not retried without `mlrollout retry`. Returns whether it started.
fn roll_out_registry_version(cx: &mut Ctx<'_>) -> bool {
    let alias_pending = cx
        .status
        .pending_registry_writes
        .iter()
        .any(|w| w.op != RegistryOp::SetTag && w.key == cx.spec.model.alias);
    let (Some(served), Some(stable)) = (
        cx.observed.served_version.clone(),
        cx.status.stable_version.clone(),
    ) else {
        return false;
    };
    // While our own alias write is pending, MLflow is behind us, not ahead.
    if served == stable || alias_pending {
        return false;
    }
    let refused = cx.status.history.iter().rev().any(|h| {
        h.candidate_version == served
            && matches!(
                h.outcome,
                RolloutOutcome::RolledBack | RolloutOutcome::Rejected | RolloutOutcome::Aborted
            )
    });
    if refused {
        return false;
    }
    cx.status.candidate_version = Some(served.clone());
    cx.status.candidate_source = Some(CandidateSource::Registry);
    cx.status.evaluation = None;
    cx.event(
        false,
        EventReason::CandidateFromRegistry,
        format!("the registry serves version {served} (stable is {stable}); rolling it out"),
    );
    start_rollout(cx);
    true
}

/// Starts an attempt when a trigger fires and the gates are open; defers it otherwise.
fn watch_triggers(cx: &mut Ctx<'_>, retrain_requested: bool, advisor_now: bool) {
    let Some((retraining, timing)) = cx.validated.retraining().filter(|(r, _)| r.enabled) else {
        return;
    };
    if cx.status.schedule_anchor.is_none() {
        cx.status.schedule_anchor = Some(Time(cx.now));
    }
    let facts = trigger_facts(cx, retrain_requested, advisor_now);
    let sample_count = facts.sample_count;
    let fired = triggers::fired(retraining, timing, &facts, cx.now).or_else(|| {
        cx.status
            .deferred_trigger
            .as_ref()
            .map(|d| d.trigger)
            .map(|t| (t, "deferred trigger".to_string()))
    });
    let Some((trigger, reason)) = fired else {
        return;
    };
    let why = if cx.observed.served_version.is_none() {
        // The registry cannot be read: a Job would register a version nobody can look up.
        Some("the model registry is unavailable".to_string())
    } else {
        match triggers::gate(retraining, timing, &cx.status.retraining_attempts, cx.now) {
            Gate::Open => None,
            Gate::Cooldown { until } => Some(format!("cooldown until {until}")),
            Gate::Budget { until } => Some(format!(
                "daily budget of {} attempts used until {until}",
                retraining.max_attempts_per_day
            )),
        }
    };
    match why {
        None => start_attempt(cx, trigger, &reason, sample_count),
        Some(why) => defer(cx, trigger, &reason, why),
    }
}

/// What the triggers look at in this step (the first sample count is the baseline).
fn trigger_facts(cx: &mut Ctx<'_>, retrain_requested: bool, advisor_now: bool) -> TriggerFacts {
    let (drift_severity, accuracy, sample_count) = match &cx.observed.drift {
        Some(DriftObservation::Completed {
            summary,
            sample_count,
        }) => (Some(summary.severity), summary.accuracy, *sample_count),
        _ => (None, None, None),
    };
    if cx.status.samples_at_last_training.is_none() {
        // The first count is the baseline: history is not "new".
        cx.status.samples_at_last_training = sample_count;
    }
    TriggerFacts {
        drift_severity,
        accuracy,
        sample_count,
        samples_at_last_training: cx.status.samples_at_last_training,
        schedule_anchor: cx.status.schedule_anchor.as_ref().map(|t| t.0),
        manual: retrain_requested,
        advisor: cx.observed.advisor_recommends || advisor_now,
    }
}

/// Records a trigger held back by a gate (one Event per trigger and kind of hold).
pub(super) fn defer(cx: &mut Ctx<'_>, trigger: Trigger, reason: &str, why: String) {
    let kind = |reason: &str| reason.split_whitespace().next().unwrap_or("").to_string();
    let already = cx
        .status
        .deferred_trigger
        .as_ref()
        .is_some_and(|d| d.trigger == trigger && kind(&d.reason) == kind(&why));
    if !already {
        cx.event(
            false,
            EventReason::RetrainingDeferred,
            format!(
                "{} trigger fired ({reason}) but is held back: {why}",
                trigger.as_str()
            ),
        );
    }
    // Keep when the trigger first fired; only the reason (cooldown → budget) moves on.
    let at = cx
        .status
        .deferred_trigger
        .as_ref()
        .filter(|d| d.trigger == trigger)
        .and_then(|d| d.at.clone())
        .unwrap_or(Time(cx.now));
    cx.status.deferred_trigger = Some(DeferredTrigger {
        trigger,
        at: Some(at),
        reason: why,
    });
}

pub(super) fn start_attempt(
    cx: &mut Ctx<'_>,
    trigger: Trigger,
    reason: &str,
    sample_count: Option<i64>,
) {
    let number = cx
        .status
        .retraining_attempts
        .iter()
        .map(|a| a.number)
        .max()
        .unwrap_or(0)
        + 1;
    let attempt = RetrainingAttempt {
        number,
        id: attempt_id(cx.uid, number),
        trigger,
        job_name: job_name(cx.name, number),
        started_at: Some(Time(cx.now)),
        finished_at: None,
        outcome: AttemptOutcome::Running,
        candidate_version: None,
        message: Some(reason.to_string()),
    };
    cx.event(
        false,
        EventReason::RetrainingStarted,
        format!(
            "attempt {number} ({}): {reason}; Job {}",
            trigger.as_str(),
            attempt.job_name
        ),
    );
    cx.status.retraining_attempts.push(attempt);
    log_attempt(cx);
    if cx.status.retraining_attempts.len() > MAX_ATTEMPTS_KEPT {
        cx.status.retraining_attempts.remove(0);
    }
    cx.status.deferred_trigger = None;
    cx.status.schedule_anchor = Some(Time(cx.now));
    if let Some(count) = sample_count {
        cx.status.samples_at_last_training = Some(count);
    }
    cx.status.candidate_version = None;
    cx.status.evaluation = None;
    cx.enter(Phase::Retraining);
}

pub(super) fn finish_attempt(cx: &mut Ctx<'_>, outcome: AttemptOutcome, message: &str) {
    let now = cx.now;
    if let Some(a) = cx.status.retraining_attempts.last_mut() {
        a.outcome = outcome;
        a.finished_at = Some(Time(now));
        a.message = Some(message.into());
    }
    log_attempt(cx);
}

/// Queues the MLflow run of the latest attempt (trigger, drift, Job, outcome).
pub(super) fn log_attempt(cx: &mut Ctx<'_>) {
    let Some(a) = cx.status.retraining_attempts.last().cloned() else {
        return;
    };
    let record = AttemptRecord {
        experiment: format!("mlrollout/{}", cx.name),
        attempt_id: a.id.clone(),
        number: a.number,
        trigger: a.trigger,
        job_name: a.job_name.clone(),
        outcome: a.outcome,
        drift_summary: super::drift_summary(&cx.status),
        candidate_version: a.candidate_version.clone(),
        advisor: cx.status.advisor.as_ref().and_then(|adv| {
            adv.reason.as_ref().map(|reason| {
                format!(
                    "needs_retrain={} urgency={} reason={reason}",
                    adv.needs_retrain.unwrap_or(false),
                    adv.urgency.map_or("", Urgency::as_str)
                )
            })
        }),
    };
    if let Ok(value) = serde_json::to_string(&record) {
        cx.write(RegistryOp::LogAttempt, None, &a.id, Some(&value));
    }
}

pub(super) fn retraining(cx: &mut Ctx<'_>) {
    // The section may have been removed while the attempt runs: its default timeout stands.
    let timeout = cx
        .timing()
        .retraining
        .as_ref()
        .map_or(RetrainingSpec::DEFAULT_TIMEOUT, |r| r.timeout);
    match cx.observed.job.clone() {
        Some(JobState::Failed(message)) => {
            finish_attempt(cx, AttemptOutcome::Failed, &message);
            cx.enter(Phase::Failed);
            cx.event(
                true,
                EventReason::TrainingFailed,
                format!("the retraining Job failed: {message}"),
            );
            return;
        }
        Some(JobState::Succeeded) => match cx.observed.candidate_lookup.clone() {
            Some(CandidateLookup::Found(version)) => {
                if let Some(a) = cx.status.retraining_attempts.last_mut() {
                    a.candidate_version = Some(version.clone());
                }
                finish_attempt(
                    cx,
                    AttemptOutcome::Succeeded,
                    &format!("registered version {version}"),
                );
                cx.status.candidate_version = Some(version.clone());
                cx.status.candidate_source = Some(CandidateSource::Retraining);
                cx.enter(Phase::Evaluating);
                cx.event(
                    false,
                    EventReason::CandidateRegistered,
                    format!("the Job registered version {version}"),
                );
                return;
            }
            Some(CandidateLookup::NotFound) => {
                let id = cx
                    .status
                    .retraining_attempts
                    .last()
                    .map(|a| a.id.clone())
                    .unwrap_or_default();
                finish_attempt(
                    cx,
                    AttemptOutcome::Failed,
                    "no model version carries the attempt's lineage tag",
                );
                cx.enter(Phase::Failed);
                cx.event(
                    true,
                    EventReason::CandidateNotRegistered,
                    format!("the Job succeeded but no version is tagged mlrollout.io/attempt={id}"),
                );
                return;
            }
            Some(CandidateLookup::Error(_)) | None => {}
        },
        _ => {}
    }
    if cx.phase_age() > timeout + cx.progress_deadline() {
        finish_attempt(
            cx,
            AttemptOutcome::TimedOut,
            "no result within the timeout and the progress deadline",
        );
        cx.enter(Phase::Failed);
        cx.event(
            true,
            EventReason::ProgressDeadlineExceeded,
            "the retraining Job did not finish in time",
        );
    }
}
