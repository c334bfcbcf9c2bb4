//! One-shot manual requests and the pause overlay.

use super::*;

/// Records and applies one-shot manual requests; returns whether retraining was requested.
pub(super) fn apply_manual(cx: &mut Ctx<'_>, manual: &ManualInput) -> bool {
    let resumed = follow_pause_annotation(cx, manual);
    let mut retrain = false;
    for (request, value) in &manual.requests {
        cx.status
            .handled_requests
            .insert(request.annotation().to_string(), value.clone());
        match request {
            Request::Abort => abort(cx),
            Request::Retry => retrain |= retry(cx),
            Request::PromoteNext | Request::PromoteFull => {
                promote_by_hand(cx, *request == Request::PromoteFull)
            }
            Request::Retrain => retrain |= retrain_by_hand(cx),
            Request::Resume => {
                if cx.status.paused {
                    resume(cx, "resumed by a person");
                } else if !resumed {
                    ignored(cx, "resume");
                }
            }
        }
    }
    retrain
}

/// Pauses or resumes with the `mlrollout.io/pause` annotation; returns whether it resumed.
fn follow_pause_annotation(cx: &mut Ctx<'_>, manual: &ManualInput) -> bool {
    let manual_pause = cx.status.pause_reason == Some(PauseReason::Manual);
    // `mlrollout resume` removes the pause annotation and sets `mlrollout.io/resume` in one
    // write: that resume request is answered by the removal, not ignored.
    if manual.paused && !cx.status.paused {
        pause(
            cx,
            PauseReason::Manual,
            "paused by mlrollout.io/pause; the phase will not advance",
        );
    } else if !manual.paused && cx.status.paused && manual_pause {
        resume(cx, "the mlrollout.io/pause annotation was removed");
        return true;
    }
    false
}

fn abort(cx: &mut Ctx<'_>) {
    match cx.status.phase {
        Phase::Retraining => {
            finish_attempt(cx, AttemptOutcome::Aborted, "aborted by mlrollout.io/abort");
            cx.enter(Phase::Failed);
            cx.event(true, EventReason::Aborted, "retraining aborted by a person");
        }
        Phase::Evaluating | Phase::Shadow | Phase::Experimenting | Phase::Progressing => {
            rollback(
                cx,
                RolloutReason::Aborted,
                "aborted by a person (mlrollout.io/abort)",
            );
        }
        // In the window after a promotion, the previous version is still warm: go back to it.
        Phase::Promoted if cx.status.post_promotion.is_some() => {
            abort_promotion(
                cx,
                "aborted by a person (mlrollout.io/abort) after promotion",
            );
        }
        _ => ignored(cx, "abort"),
    }
}

/// Rolls a rolled-back candidate out again; returns whether retraining is asked for instead.
fn retry(cx: &mut Ctx<'_>) -> bool {
    match (cx.status.phase, retriable_candidate(&cx.status)) {
        // A rolled-back (or aborted) candidate passed its gates before: roll it out again.
        (Phase::RolledBack, Some(version))
            if cx.status.stable_version.as_deref() != Some(version.as_str()) =>
        {
            cx.status.candidate_version = Some(version.clone());
            cx.status.candidate_source = Some(CandidateSource::Retry);
            cx.event(
                false,
                EventReason::Retry,
                format!("retrying the rollout of version {version}"),
            );
            start_rollout(cx);
        }
        // Failed (training, lineage, evaluation): retrying means training again; a
        // rejected version never gets traffic by retry.
        (Phase::RolledBack | Phase::Failed, _) => return true,
        _ => ignored(cx, "retry"),
    }
    false
}

/// Ends the current gate (`full`: the whole rollout) on a person's word.
fn promote_by_hand(cx: &mut Ctx<'_>, full: bool) {
    // A person promoting answers an inconclusive analysis, or a pause step.
    if matches!(
        cx.status.pause_reason,
        Some(PauseReason::InconclusiveAnalysis | PauseReason::Step)
    ) {
        cx.status.paused = false;
        cx.status.pause_reason = None;
    }
    match cx.status.phase {
        Phase::Evaluating => {
            cx.event(
                false,
                EventReason::ManualPromotion,
                "evaluation skipped by a person",
            );
            pass_evaluation(cx, "skipped by a person");
        }
        Phase::Shadow if !full => {
            cx.event(
                false,
                EventReason::ManualPromotion,
                "shadow ended early by a person",
            );
            enter_experiment_or_step(cx);
        }
        Phase::Experimenting if !full => {
            cx.event(
                false,
                EventReason::ManualPromotion,
                "experiment ended early by a person",
            );
            enter_step(cx, 0);
        }
        Phase::Shadow | Phase::Experimenting | Phase::Progressing if full => {
            promote(cx, "promoted in full by a person")
        }
        Phase::Progressing => {
            cx.event(
                false,
                EventReason::ManualPromotion,
                "step completed by a person",
            );
            advance_step(cx);
        }
        _ => ignored(cx, "promote"),
    }
}

/// Whether a person's retraining request can be acted on now.
fn retrain_by_hand(cx: &mut Ctx<'_>) -> bool {
    let resting = matches!(
        cx.status.phase,
        Phase::Stable | Phase::RolledBack | Phase::Failed
    );
    let enabled = cx.spec.retraining.as_ref().is_some_and(|r| r.enabled);
    if resting && enabled && !cx.status.paused {
        return true;
    }
    ignored(cx, "retrain");
    false
}

pub(super) fn pause(cx: &mut Ctx<'_>, reason: PauseReason, message: &str) {
    cx.status.paused = true;
    cx.status.pause_reason = Some(reason);
    let (warning, event) = match reason {
        PauseReason::InconclusiveAnalysis => (true, EventReason::AnalysisInconclusive),
        PauseReason::Manual | PauseReason::Step => (false, EventReason::Paused),
    };
    cx.event(warning, event, message);
}

/// Lifts a pause; the phase's timers and its analysis start over, since time spent paused is
/// not observed progress.
pub(super) fn resume(cx: &mut Ctx<'_>, why: &str) {
    cx.status.paused = false;
    cx.status.pause_reason = None;
    cx.status.phase_started_at = Some(Time(cx.now));
    cx.status.analysis = None;
    cx.event(
        false,
        EventReason::Resumed,
        format!("{why}; the current phase starts over"),
    );
}

/// Promotion and rollback end a pause set by the analysis (a manual pause stays).
pub(super) fn clear_analysis_pause(cx: &mut Ctx<'_>) {
    if cx.status.pause_reason != Some(PauseReason::Manual) {
        cx.status.paused = false;
        cx.status.pause_reason = None;
    }
}

pub(super) fn ignored(cx: &mut Ctx<'_>, what: &str) {
    let phase = cx.status.phase.as_str();
    cx.event(
        false,
        EventReason::ManualRequestIgnored,
        format!("{what} does not apply in phase {phase}"),
    );
}

/// The candidate of the last rollout, when it was rolled back or aborted (it had passed
/// evaluation, or came from the registry).
pub(super) fn retriable_candidate(status: &ModelDeploymentStatus) -> Option<String> {
    status
        .history
        .last()
        .filter(|h| {
            matches!(
                h.outcome,
                RolloutOutcome::RolledBack | RolloutOutcome::Aborted
            )
        })
        .map(|h| h.candidate_version.clone())
}
