//! After a promotion: the window in which the previous version stays warm on the stable
//! Deployment (`rollout.scaleDownDelay`) while the post-promotion analysis runs on the promoted
//! one (`rollout.postPromotion`); and, after a rollback, the candidate kept for debugging
//! (`rollout.abortScaleDownDelay`).

use super::*;
use crate::api::{PostPromotionStatus, RetainedCandidate};

/// Opens the window at promotion when the spec asks for one and there is a previous version
/// to keep warm.
pub(super) fn open_window(cx: &mut Ctx<'_>, previous: Option<String>) {
    let rollout = &cx.timing().rollout;
    let analysis = rollout.post_promotion;
    let warm = analysis
        .unwrap_or(Duration::ZERO)
        .max(rollout.scale_down_delay);
    let Some(previous) = previous.filter(|_| !warm.is_zero()) else {
        return;
    };
    cx.status.post_promotion = Some(PostPromotionStatus {
        previous_version: previous,
        analysis_until: analysis.map(|d| Time(add(cx.now, d))),
        warm_until: Some(Time(add(cx.now, warm))),
    });
}

/// Runs the window; returns true while it lasts (the promotion is then not finished). A
/// failing post-promotion analysis rolls back to the warm previous version at once.
pub(super) fn in_window(cx: &mut Ctx<'_>) -> bool {
    let Some(window) = cx.status.post_promotion.clone() else {
        return false;
    };
    if super::post_promotion_analysing(&cx.status, cx.now) {
        if let Some(assessment) = run_analysis(cx, AnalysisStage::PostPromotion)
            && let Assessment::Failed { detail, .. }
            | Assessment::Errored { detail, .. }
            | Assessment::Inconclusive { detail, .. } = assessment
        {
            roll_back_promotion(cx, &window.previous_version, &detail);
        }
        return true;
    }
    let until = window.warm_until.map(|t| t.0).unwrap_or(cx.now);
    if cx.now < until {
        return true;
    }
    let version = cx.status.stable_version.clone().unwrap_or_default();
    let verified = if window.analysis_until.is_some() {
        "passed its post-promotion analysis; "
    } else {
        ""
    };
    cx.status.post_promotion = None;
    cx.status.analysis = None;
    // The stable Deployment now takes the promoted version; the wait for it starts here.
    cx.status.phase_started_at = Some(Time(cx.now));
    cx.event(
        false,
        EventReason::PostPromotionPassed,
        format!(
            "version {version} {verified}version {} is scaled down; stable is updated before traffic returns to it",
            window.previous_version
        ),
    );
    true
}

/// Back to the previous version, still warm on the stable Deployment: traffic moves at once,
/// and the registry's alias points at it again.
fn roll_back_promotion(cx: &mut Ctx<'_>, previous: &str, detail: &str) {
    back_to_previous(
        cx,
        previous,
        RolloutReason::PostPromotionAnalysisFailed,
        detail,
    );
}

/// A person's abort in the window: the same way back.
pub(super) fn abort_promotion(cx: &mut Ctx<'_>, detail: &str) {
    if let Some(window) = cx.status.post_promotion.clone() {
        back_to_previous(cx, &window.previous_version, RolloutReason::Aborted, detail);
    }
}

fn back_to_previous(cx: &mut Ctx<'_>, previous: &str, reason: RolloutReason, detail: &str) {
    cx.status.stable_version = Some(previous.to_owned());
    cx.status.post_promotion = None;
    rollback(cx, reason, detail);
}

/// Keeps a rolled-back or aborted candidate running without traffic, when the spec asks.
pub(super) fn retain_candidate(cx: &mut Ctx<'_>, version: &str) {
    let delay = cx.timing().rollout.abort_scale_down_delay;
    if delay.is_zero() || version.is_empty() {
        return;
    }
    cx.status.retained_candidate = Some(RetainedCandidate {
        version: version.to_owned(),
        until: Some(Time(add(cx.now, delay))),
    });
}

/// Lets a retained candidate go once its time is up, or when a new rollout needs the
/// candidate Deployment.
pub(super) fn release_retained(cx: &mut Ctx<'_>) {
    let Some(retained) = cx.status.retained_candidate.clone() else {
        return;
    };
    let expired = retained.until.is_none_or(|t| t.0 <= cx.now);
    let replaced = cx.status.candidate_version.is_some();
    if expired || replaced {
        cx.status.retained_candidate = None;
        if expired {
            cx.transitions.push(Transition {
                warning: false,
                reason: EventReason::CandidateReleased,
                message: format!(
                    "the rolled-back version {} kept for debugging is scaled down",
                    retained.version
                ),
            });
        }
    }
}
