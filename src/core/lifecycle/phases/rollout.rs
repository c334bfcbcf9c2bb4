//! Evaluation, shadow, canary steps, promotion and rollback.

use super::*;
use crate::api::{AnalysisMetric, AnalysisStatus};

pub(super) fn evaluating(cx: &mut Ctx<'_>) {
    let metric = cx.spec.evaluation.metric.clone();
    match cx.observed.evaluation.clone() {
        Some(EvaluationObservation::Metrics {
            candidate,
            champion,
        }) => {
            let verdict = judge_evaluation(cx.spec, candidate, champion);
            cx.status.evaluation = Some(EvaluationStatus {
                metric,
                candidate_value: candidate,
                champion_value: champion,
                passed: verdict.is_ok(),
                reason: match &verdict {
                    Ok(r) | Err(r) => r.clone(),
                },
            });
            match verdict {
                Ok(reason) => pass_evaluation(cx, &reason),
                Err(reason) => {
                    let version = cx.status.candidate_version.clone().unwrap_or_default();
                    cx.write(
                        RegistryOp::SetTag,
                        Some(&version),
                        "mlrollout.io/verdict",
                        Some("rejected"),
                    );
                    record_history(
                        cx,
                        RolloutOutcome::Rejected,
                        RolloutReason::EvaluationFailed,
                    );
                    cx.status.candidate_version = None;
                    cx.enter(Phase::Failed);
                    cx.event(
                        true,
                        EventReason::EvaluationFailed,
                        format!("version {version} rejected: {reason}"),
                    );
                }
            }
        }
        Some(EvaluationObservation::Error(_)) | None => {
            if cx.phase_age() > cx.progress_deadline() {
                rollback(
                    cx,
                    RolloutReason::ProgressDeadlineExceeded,
                    "the evaluation could not be completed in time",
                );
            }
        }
    }
}

/// `Ok(reason)` when the candidate is at least `minImprovement` better than the champion.
pub(super) fn judge_evaluation(
    spec: &ModelDeploymentSpec,
    candidate: Option<f64>,
    champion: Option<f64>,
) -> Result<String, String> {
    let e = &spec.evaluation;
    let Some(c) = candidate.filter(|v| v.is_finite()) else {
        return Err(format!("the candidate's run has no metric {:?}", e.metric));
    };
    let Some(b) = champion.filter(|v| v.is_finite()) else {
        return Err(format!(
            "the champion's run has no metric {:?} to compare with",
            e.metric
        ));
    };
    let improvement = match e.direction {
        MetricDirection::HigherIsBetter => c - b,
        MetricDirection::LowerIsBetter => b - c,
    };
    // Metrics are decimals written as floats: 0.85 - 0.80 must count as 0.05.
    if improvement >= e.min_improvement - 1e-9 {
        Ok(format!(
            "{} {c:.4} vs champion {b:.4} (improvement {improvement:.4} >= {})",
            e.metric, e.min_improvement
        ))
    } else {
        Err(format!(
            "{} {c:.4} vs champion {b:.4} (improvement {improvement:.4} < {})",
            e.metric, e.min_improvement
        ))
    }
}

pub(super) fn pass_evaluation(cx: &mut Ctx<'_>, reason: &str) {
    let version = cx.status.candidate_version.clone().unwrap_or_default();
    if let Some(pinned) = cx.spec.model.version.clone()
        && cx.status.candidate_source == Some(CandidateSource::Retraining)
    {
        // The spec pins the served version (GitOps owns it): a retrained candidate is
        // recorded and offered, and rolls out when the pin moves to it.
        cx.write(
            RegistryOp::SetTag,
            Some(&version),
            "mlrollout.io/verdict",
            Some("evaluation-passed"),
        );
        cx.write(RegistryOp::SetAlias, Some(&version), "challenger", None);
        record_history(cx, RolloutOutcome::Held, RolloutReason::PinnedVersion);
        cx.status.candidate_version = None;
        cx.status.candidate_source = None;
        cx.enter(Phase::Stable);
        cx.event(false, EventReason::CandidateHeldByPin,
            format!(
                "version {version} passed evaluation ({reason}); spec.model.version pins {pinned}: set it to {version} to roll it out"
            ),
        );
        return;
    }
    cx.write(
        RegistryOp::SetTag,
        Some(&version),
        "mlrollout.io/verdict",
        Some("evaluation-passed"),
    );
    cx.event(
        false,
        EventReason::EvaluationPassed,
        format!("version {version}: {reason}"),
    );
    start_rollout(cx);
}

/// Shadow when enabled and the router can mirror, else the first step.
pub(super) fn start_rollout(cx: &mut Ctx<'_>) {
    let version = cx.status.candidate_version.clone().unwrap_or_default();
    cx.write(RegistryOp::SetAlias, Some(&version), "challenger", None);
    if cx.spec.shadow.enabled && cx.spec.traffic.provider != TrafficProvider::None {
        cx.enter(Phase::Shadow);
        cx.status.canary_weight = 0;
        cx.status.current_step = None;
        cx.status.mirror_percent = cx.spec.shadow.mirror_percent;
        cx.event(
            false,
            EventReason::ShadowStarted,
            format!(
                "version {version} receives {}% mirrored traffic",
                cx.spec.shadow.mirror_percent
            ),
        );
    } else {
        enter_experiment_or_step(cx);
    }
}

/// Takes this round's measurements into account; returns the assessment, or `None` when
/// the spec has no analysis (time alone decides).
pub(super) fn run_analysis(cx: &mut Ctx<'_>, stage: AnalysisStage) -> Option<Assessment> {
    let analysis = cx.spec.rollout.analysis.as_ref()?;
    let steps = &cx.timing().rollout.steps;
    let metrics = crate::core::verdict::builtin::metrics_at_step(
        cx.spec,
        steps,
        cx.status.current_step,
        stage,
        cx.status.canary_weight,
    );
    let step_count = current_step(&cx.timing().rollout, &cx.status)
        .filter(|_| cx.status.phase == Phase::Progressing)
        .and_then(|s| s.analysis_count);
    let mut state = cx.status.analysis.clone().unwrap_or_default();
    let before = state.clone();
    if cx.observed.candidate_ready
        && let Some(measurements) = &cx.observed.measurements
    {
        record(&mut state, measurements, cx.now);
        mark_dry_run(&mut state, &metrics);
    }
    let required = step_count.unwrap_or(analysis.count).max(1);
    report_dry_runs(cx, &metrics, &before, &state, required);
    let assessment = assess(&state, &metrics, required);
    cx.status.analysis = Some(state);
    Some(assessment)
}

/// A Warning Event the first time a dry-run metric would have stopped the gate in this phase
/// or step; the gate itself ignores it, and the status message stays the gate's.
fn report_dry_runs(
    cx: &mut Ctx<'_>,
    metrics: &[AnalysisMetric],
    before: &AnalysisStatus,
    after: &AnalysisStatus,
    required: i32,
) {
    let stops = |a: &Assessment| {
        matches!(
            a,
            Assessment::Failed { .. }
                | Assessment::Errored { .. }
                | Assessment::Inconclusive { .. }
        )
    };
    for metric in metrics.iter().filter(|m| m.dry_run) {
        let was = assess_as_gate(before, metric, required);
        let now = assess_as_gate(after, metric, required);
        let detail = match &now {
            Assessment::Failed { detail, .. }
            | Assessment::Errored { detail, .. }
            | Assessment::Inconclusive { detail, .. } => detail.clone(),
            _ => continue,
        };
        if stops(&now) && !stops(&was) {
            let what = match now {
                Assessment::Inconclusive { .. } => "paused (or rolled back)",
                _ => "rolled back",
            };
            cx.transitions.push(Transition {
                warning: true,
                reason: EventReason::DryRunMetricFailed,
                message: format!(
                    "dry-run metric {} would have {what} this rollout (it does not gate): {detail}",
                    metric.name
                ),
            });
        }
    }
}

/// Acts on a failing assessment; returns true if the phase ended.
/// `failed` names the gate in the rollback reason (`ShadowFailed`, `AnalysisFailed`).
pub(super) fn act_on_failure(
    cx: &mut Ctx<'_>,
    assessment: &Assessment,
    failed: RolloutReason,
) -> bool {
    match assessment {
        Assessment::Failed { detail, .. } => {
            rollback(cx, failed, detail);
            true
        }
        Assessment::Errored { detail, .. } => {
            rollback(cx, RolloutReason::AnalysisError, detail);
            true
        }
        Assessment::Inconclusive { detail, .. } => {
            let action = cx
                .spec
                .rollout
                .analysis
                .as_ref()
                .map(|a| a.on_inconclusive)
                .unwrap_or_default();
            match action {
                InconclusiveAction::Rollback => {
                    rollback(cx, RolloutReason::AnalysisInconclusive, detail)
                }
                InconclusiveAction::Pause => {
                    if !cx.status.paused {
                        pause(
                            cx,
                            PauseReason::InconclusiveAnalysis,
                            &format!("paused for a person: {detail}; resume, promote or abort"),
                        );
                    }
                }
            }
            true
        }
        Assessment::Running | Assessment::Passed => false,
    }
}

pub(super) fn shadow(cx: &mut Ctx<'_>) {
    let assessment = run_analysis(cx, AnalysisStage::Shadow);
    if let Some(a) = &assessment
        && act_on_failure(cx, a, RolloutReason::ShadowFailed)
    {
        return;
    }
    let duration = cx.timing().shadow_duration;
    let analysed = assessment.as_ref().is_none_or(|a| *a == Assessment::Passed);
    if cx.observed.candidate_ready && cx.phase_age() >= duration && analysed {
        let how = if assessment.is_some() {
            "passed its analysis"
        } else {
            "ran (no analysis configured)"
        };
        cx.event(
            false,
            EventReason::ShadowPassed,
            format!("the shadow phase {how}"),
        );
        enter_experiment_or_step(cx);
        return;
    }
    roll_back_past_deadline(cx, duration, "the shadow analysis never concluded");
}

/// A phase that should have ended after `duration` and has made no progress for the
/// progress deadline beyond it rolls back, saying what it waited for.
pub(super) fn roll_back_past_deadline(cx: &mut Ctx<'_>, duration: Duration, unconcluded: &str) {
    if cx.phase_age() > duration + cx.progress_deadline() {
        let why = if cx.observed.candidate_ready {
            unconcluded
        } else {
            "the candidate never became ready"
        };
        rollback(cx, RolloutReason::ProgressDeadlineExceeded, why);
    }
}

/// The candidate becomes stable. Traffic stays on the candidate until the stable Deployment
/// runs the new version (phase `Promoted`), so promotion never jumps traffic to unready pods.
pub(super) fn promote(cx: &mut Ctx<'_>, reason: &str) {
    let version = cx.status.candidate_version.clone().unwrap_or_default();
    let previous = cx.status.stable_version.clone();
    if let Some(prev) = &previous {
        cx.write(RegistryOp::SetAlias, Some(prev), "previous", None);
    }
    cx.write(
        RegistryOp::SetAlias,
        Some(&version),
        &cx.spec.model.alias.clone(),
        None,
    );
    cx.write(RegistryOp::DeleteAlias, None, "challenger", None);
    cx.write(
        RegistryOp::SetTag,
        Some(&version),
        "mlrollout.io/rollout",
        Some("promoted"),
    );
    record_history(cx, RolloutOutcome::Promoted, RolloutReason::Promoted);
    clear_analysis_pause(cx);
    cx.enter(Phase::Promoted);
    cx.status.current_step = None;
    cx.status.canary_weight = 100;
    cx.status.mirror_percent = 0;
    cx.status.stable_version = Some(version.clone());
    open_window(cx, previous);
    let then = match &cx.status.post_promotion {
        Some(window) => format!(
            "version {} stays warm{} before stable is updated",
            window.previous_version,
            if window.analysis_until.is_some() {
                " while the post-promotion analysis runs"
            } else {
                ""
            }
        ),
        None => "stable is updated before traffic returns to it".to_owned(),
    };
    cx.event(
        false,
        EventReason::Promoted,
        format!("version {version} promoted ({reason}); {then}"),
    );
}

pub(super) fn promoted(cx: &mut Ctx<'_>) {
    if in_window(cx) {
        return;
    }
    if cx.observed.stable_ready {
        cx.status.candidate_version = None;
        cx.status.candidate_source = None;
        cx.status.canary_weight = 0;
        let version = cx.status.stable_version.clone().unwrap_or_default();
        cx.enter(Phase::Stable);
        cx.event(
            false,
            EventReason::PromotionComplete,
            format!("version {version} is stable and serves all traffic"),
        );
    } else if cx.phase_age() > cx.progress_deadline() {
        // The new stable never became ready: traffic is still on the (healthy) candidate
        // pods, so keep it there and say so rather than moving it to unready pods.
        cx.event(
            true,
            EventReason::ProgressDeadlineExceeded,
            "the promoted stable Deployment is not ready; traffic stays on the candidate pods",
        );
        cx.status.phase_started_at = Some(Time(cx.now));
    }
}

pub(super) fn record_history(cx: &mut Ctx<'_>, outcome: RolloutOutcome, reason: RolloutReason) {
    let record = RolloutRecord {
        candidate_version: cx.status.candidate_version.clone().unwrap_or_default(),
        previous_version: cx.status.stable_version.clone(),
        outcome,
        reason,
        finished_at: Some(Time(cx.now)),
    };
    cx.status.history.push(record);
    if cx.status.history.len() > MAX_HISTORY_KEPT {
        cx.status.history.remove(0);
    }
}

/// Everything back on stable: 0 % on the candidate, no mirror, the registry restored.
pub(super) fn rollback(cx: &mut Ctx<'_>, reason: RolloutReason, detail: &str) {
    let version = cx.status.candidate_version.clone().unwrap_or_default();
    let outcome = match reason {
        RolloutReason::Aborted => RolloutOutcome::Aborted,
        _ => RolloutOutcome::RolledBack,
    };
    record_history(cx, outcome, reason);
    if let Some(stable) = cx.status.stable_version.clone() {
        cx.write(
            RegistryOp::SetAlias,
            Some(&stable),
            &cx.spec.model.alias.clone(),
            None,
        );
    }
    cx.write(RegistryOp::DeleteAlias, None, "challenger", None);
    if !version.is_empty() {
        cx.write(
            RegistryOp::SetTag,
            Some(&version),
            "mlrollout.io/rollout",
            Some(&format!("rolled-back: {reason}")),
        );
    }
    cx.status.canary_weight = 0;
    cx.status.mirror_percent = 0;
    cx.status.current_step = None;
    cx.status.candidate_version = None;
    cx.status.candidate_source = None;
    retain_candidate(cx, &version);
    clear_analysis_pause(cx);
    cx.enter(Phase::RolledBack);
    cx.event(
        true,
        EventReason::RolledBack,
        format!("version {version} rolled back ({reason}): {detail}"),
    );
}
