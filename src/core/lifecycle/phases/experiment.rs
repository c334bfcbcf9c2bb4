//! The experiment phase (`spec.rollout.experiment`): after shadow and before the first weighted
//! step, requests that match a header or cookie go to the candidate (the rest stay on stable)
//! for the experiment's duration. It is judged like a step: the same analysis (canary stage);
//! failing rolls back, passing starts the first step, and without an analysis time alone
//! decides. Its result goes to `status.experiment` and, as tags on the candidate version, to
//! MLflow (`mlrollout.io/experiment`, `mlrollout.io/experiment-summary`).

use super::*;
use crate::api::experiment::{ExperimentMetric, ExperimentOutcome, ExperimentStatus};

/// MLflow tag with the outcome (`passed`, `failed`, `interrupted`).
pub(crate) const OUTCOME_TAG: &str = "mlrollout.io/experiment";
/// MLflow tag with a one-line summary: duration, outcome and per-metric counts and values.
pub(crate) const SUMMARY_TAG: &str = "mlrollout.io/experiment-summary";
/// Longest summary written (MLflow tag values are bounded).
const MAX_SUMMARY: usize = 4000;

/// The experiment when the spec has one (and a router to run it), else the first step.
pub(super) fn enter_experiment_or_step(cx: &mut Ctx<'_>) {
    let Some(experiment) = cx.spec.rollout.experiment.as_ref() else {
        enter_step(cx, 0);
        return;
    };
    // Validation refuses an experiment without a router; replica counts cannot route.
    if cx.spec.traffic.provider == TrafficProvider::None {
        enter_step(cx, 0);
        return;
    }
    let version = cx.status.candidate_version.clone().unwrap_or_default();
    let who = describe(experiment);
    let duration = experiment.duration.clone();
    cx.enter(Phase::Experimenting);
    cx.status.current_step = None;
    cx.status.canary_weight = 0;
    cx.status.mirror_percent = 0;
    cx.status.experiment = Some(ExperimentStatus {
        candidate_version: version.clone(),
        started_at: Some(Time(cx.now)),
        outcome: ExperimentOutcome::Running,
        ..Default::default()
    });
    cx.event(
        false,
        EventReason::ExperimentStarted,
        format!("experiment for {duration}: requests with {who} go to version {version}"),
    );
}

/// One reconcile of the experiment: measure, then roll back, wait, or pass to the first step.
pub(super) fn experimenting(cx: &mut Ctx<'_>) {
    let assessment = run_analysis(cx, AnalysisStage::Canary);
    summarize(cx);
    if let Some(a) = &assessment
        && act_on_failure(cx, a, RolloutReason::ExperimentFailed)
    {
        // A rollback ends the experiment (see `settle`); a pause keeps it running.
        return;
    }
    let duration = cx.timing().experiment.unwrap_or_default();
    let analysed = assessment.as_ref().is_none_or(|a| *a == Assessment::Passed);
    if cx.observed.candidate_ready && cx.phase_age() >= duration && analysed {
        let how = if assessment.is_some() {
            "passed its analysis"
        } else {
            "ran its duration (no analysis configured)"
        };
        finish(
            cx,
            ExperimentOutcome::Passed,
            format!("the experiment {how}"),
        );
        cx.event(
            false,
            EventReason::ExperimentPassed,
            format!("the experiment {how}"),
        );
        enter_step(cx, 0);
        return;
    }
    roll_back_past_deadline(cx, duration, "the experiment's analysis never concluded");
}

/// Ends a running experiment the step left without a verdict: a rollback (the analysis, the
/// deadline, a person's abort) or a person's promotion. Runs after every step, paused or not.
pub(super) fn settle(cx: &mut Ctx<'_>) {
    let Some(experiment) = cx.status.experiment.as_ref() else {
        return;
    };
    if experiment.outcome != ExperimentOutcome::Running || cx.status.phase == Phase::Experimenting {
        return;
    }
    let version = experiment.candidate_version.clone();
    let ended = cx
        .status
        .history
        .last()
        .filter(|h| h.candidate_version == version)
        .map(|h| h.reason);
    let rolled_back = matches!(cx.status.phase, Phase::RolledBack | Phase::Failed);
    let (outcome, why) = match ended {
        Some(RolloutReason::Aborted) if rolled_back => {
            (ExperimentOutcome::Interrupted, "aborted by a person".into())
        }
        Some(reason) if rolled_back => (
            ExperimentOutcome::Failed,
            cx.status
                .message
                .clone()
                .unwrap_or_else(|| format!("rolled back ({reason})")),
        ),
        _ => (
            ExperimentOutcome::Interrupted,
            format!(
                "ended by a person before its verdict (now {})",
                cx.status.phase.as_str()
            ),
        ),
    };
    finish(cx, outcome, why);
}

/// Records the end in status and owes MLflow the two tags.
fn finish(cx: &mut Ctx<'_>, outcome: ExperimentOutcome, message: String) {
    let now = cx.now;
    let Some(experiment) = cx.status.experiment.as_mut() else {
        return;
    };
    experiment.outcome = outcome;
    experiment.finished_at = Some(Time(now));
    experiment.message = Some(message);
    let summary = summary_line(experiment);
    let version = experiment.candidate_version.clone();
    let value = match outcome {
        ExperimentOutcome::Running => "running",
        ExperimentOutcome::Passed => "passed",
        ExperimentOutcome::Failed => "failed",
        ExperimentOutcome::Interrupted => "interrupted",
    };
    cx.write(RegistryOp::SetTag, Some(&version), OUTCOME_TAG, Some(value));
    cx.write(
        RegistryOp::SetTag,
        Some(&version),
        SUMMARY_TAG,
        Some(&summary),
    );
}

/// Copies the analysis counters into `status.experiment.metrics` (kept after the phase ends,
/// when `status.analysis` is cleared).
fn summarize(cx: &mut Ctx<'_>) {
    let Some(analysis) = cx.status.analysis.as_ref() else {
        return;
    };
    let metrics: Vec<ExperimentMetric> = analysis
        .metrics
        .iter()
        .map(|m| {
            let last = m.recent.last();
            ExperimentMetric {
                name: m.name.clone(),
                passed: m.passed,
                failed: m.failed,
                inconclusive: m.inconclusive,
                candidate: last.and_then(|r| r.candidate),
                stable: last.and_then(|r| r.stable),
            }
        })
        .collect();
    if let Some(experiment) = cx.status.experiment.as_mut() {
        experiment.metrics = metrics;
    }
}

/// `outcome=passed ran=1800s; error-rate: 6 passed, 0 failed, 0 inconclusive, candidate
/// 0.0100, stable 0.0120; ...`, at most [`MAX_SUMMARY`] characters.
fn summary_line(experiment: &ExperimentStatus) -> String {
    let ran = match (&experiment.started_at, &experiment.finished_at) {
        (Some(start), Some(end)) => format!(" ran={}s", since(end.0, start.0).as_secs()),
        _ => String::new(),
    };
    let mut line = format!(
        "outcome={}{ran}",
        experiment.outcome.as_str().to_ascii_lowercase()
    );
    for m in &experiment.metrics {
        let value = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"));
        line.push_str(&format!(
            "; {}: {} passed, {} failed, {} inconclusive, candidate {}, stable {}",
            m.name,
            m.passed,
            m.failed,
            m.inconclusive,
            value(m.candidate),
            value(m.stable)
        ));
    }
    if line.len() > MAX_SUMMARY {
        let mut end = MAX_SUMMARY - 3;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push_str("...");
    }
    line
}

/// `header x-canary=insider or cookie canary=always`, for Events.
fn describe(experiment: &crate::api::experiment::ExperimentSpec) -> String {
    let entries: Vec<String> = experiment
        .matches
        .iter()
        .map(|entry| {
            let mut parts: Vec<String> = entry
                .headers
                .iter()
                .map(|h| match (&h.value, &h.regex) {
                    (Some(value), _) => format!("header {}={value}", h.name),
                    (None, Some(regex)) => format!("header {}~{regex}", h.name),
                    (None, None) => format!("header {}", h.name),
                })
                .collect();
            if let Some(cookie) = &entry.cookie {
                parts.push(format!("cookie {}={}", cookie.name, cookie.value));
            }
            parts.join(" and ")
        })
        .collect();
    let mut who = entries.join(" or ");
    if experiment.sticky {
        who.push_str(" (sticky: the clients it sends there stay)");
    }
    who
}
