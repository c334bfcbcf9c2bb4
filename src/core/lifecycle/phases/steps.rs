//! The canary steps: entering one (a weight or a mirror percentage, maybe a pause), judging it
//! with its own analysis settings, and moving on.

use super::*;
use crate::api::validation::StepTiming;

/// The step the status is at, parsed.
pub(super) fn current_step<'a>(
    timing: &'a crate::api::validation::RolloutTiming,
    status: &ModelDeploymentStatus,
) -> Option<&'a StepTiming> {
    let index = usize::try_from(status.current_step?).ok()?;
    timing.steps.get(index)
}

/// How a step is judged: a mirror step like the shadow phase, a weight step as a canary.
pub(super) fn step_stage(step: Option<&StepTiming>) -> AnalysisStage {
    if step.is_some_and(StepTiming::is_mirror) {
        AnalysisStage::Shadow
    } else {
        AnalysisStage::Canary
    }
}

pub(super) fn enter_step(cx: &mut Ctx<'_>, index: usize) {
    let steps = &cx.timing().rollout.steps;
    let count = steps.len();
    let step = steps.get(index).cloned();
    cx.enter(Phase::Progressing);
    cx.status.current_step = Some(index as i32);
    cx.status.canary_weight = step.as_ref().map_or(100, |s| s.weight);
    cx.status.mirror_percent = step.as_ref().map_or(0, |s| s.mirror);
    let traffic = step.as_ref().map_or_else(
        || "100% of traffic on the candidate".to_owned(),
        StepTiming::traffic,
    );
    let at = format!("step {} of {count}: {traffic}", index + 1);
    cx.event(false, EventReason::StepStarted, at.clone());
    if step.is_some_and(|s| s.pause && s.duration.is_zero()) {
        pause(
            cx,
            PauseReason::Step,
            &format!("{at}; paused until a person promotes (mlrollout promote) or resumes"),
        );
    }
}

pub(super) fn advance_step(cx: &mut Ctx<'_>) {
    let index = usize::try_from(cx.status.current_step.unwrap_or(0)).unwrap_or(0);
    if index + 1 >= cx.timing().rollout.steps.len() {
        promote(cx, "every step passed its analysis");
    } else {
        enter_step(cx, index + 1);
    }
}

pub(super) fn progressing(cx: &mut Ctx<'_>) {
    let step = current_step(&cx.timing().rollout, &cx.status).cloned();
    // A pause step holds without analysis; any other step is judged with its own settings.
    let assessment = match &step {
        Some(s) if s.pause => None,
        _ => run_analysis(cx, step_stage(step.as_ref())),
    };
    let failed = match step_stage(step.as_ref()) {
        AnalysisStage::Shadow => RolloutReason::ShadowFailed,
        _ => RolloutReason::AnalysisFailed,
    };
    if let Some(a) = &assessment
        && act_on_failure(cx, a, failed)
    {
        return;
    }
    let step_duration = step.map_or(cx.timing().rollout.step_duration, |s| s.duration);
    let analysed = assessment.as_ref().is_none_or(|a| *a == Assessment::Passed);
    if cx.observed.candidate_ready && cx.phase_age() >= step_duration && analysed {
        advance_step(cx);
        return;
    }
    roll_back_past_deadline(cx, step_duration, "the step's analysis never concluded");
}
