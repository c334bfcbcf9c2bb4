//! The rollout's steps, parsed: `rollout.plan`, or the weights of `rollout.steps`, each with
//! its duration, pause and analysis overrides resolved.

use std::time::Duration;

use super::Problems;
use crate::api::{AnalysisMetric, RolloutSpec};

/// One step, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTiming {
    /// Percent of live traffic on the candidate (0 for a mirror step).
    pub weight: i32,
    /// Percent of live traffic mirrored to the candidate (mirror steps).
    pub mirror: i32,
    /// How long the step lasts at least (its own, or `stepDuration`; a pause's duration).
    pub duration: Duration,
    /// A pause step: held without analysis (indefinitely when `duration` is zero, until a
    /// person promotes or resumes).
    pub pause: bool,
    /// Measurements needed (instead of `analysis.count`).
    pub analysis_count: Option<i32>,
    /// Time between measurements (instead of `analysis.interval`).
    pub analysis_interval: Option<Duration>,
    /// Metrics added here (replacing analysis metrics of the same name).
    pub metrics: Vec<AnalysisMetric>,
}

impl StepTiming {
    /// A mirror step: shadow traffic, judged like the shadow phase.
    pub fn is_mirror(&self) -> bool {
        self.weight == 0 && self.mirror > 0
    }

    /// `step 2 of 4: 50% of traffic on the candidate`-style description of the traffic.
    pub fn traffic(&self) -> String {
        if self.is_mirror() {
            format!("{}% of traffic mirrored to the candidate", self.mirror)
        } else {
            format!("{}% of traffic on the candidate", self.weight)
        }
    }
}

/// Parses the steps; `default_duration` is `stepDuration`.
pub(super) fn validate_steps(
    rollout: &RolloutSpec,
    default_duration: Duration,
    problems: &mut Problems,
) -> Vec<StepTiming> {
    if rollout.plan.is_some() && rollout.steps != crate::api::rollout::default_steps() {
        problems.add(
            "spec.rollout",
            "give plan (steps with their own settings) or steps (weights), not both; with plan, leave steps out",
        );
    }
    let steps = rollout.resolved_steps();
    check_order(rollout, &steps, problems);
    steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let field = format!("spec.rollout.plan[{i}]");
            if step.weight.is_some() == step.mirror.is_some() {
                problems.add(&field, "needs exactly one of weight or mirror");
            }
            if step.duration.is_some() && step.pause.is_some() {
                problems.add(&field, "takes duration or pause, not both");
            }
            let duration = match (&step.pause, &step.duration) {
                (Some(pause), _) => problems
                    .optional_duration(
                        &format!("{field}.pause.duration"),
                        pause.duration.as_deref(),
                    )
                    .unwrap_or(Duration::ZERO),
                (None, Some(d)) => problems.duration(&format!("{field}.duration"), d),
                (None, None) => default_duration,
            };
            let analysis = step.analysis.clone().unwrap_or_default();
            StepTiming {
                weight: step.weight.unwrap_or(0),
                mirror: step.mirror.unwrap_or(0),
                duration,
                pause: step.pause.is_some(),
                analysis_count: analysis.count,
                analysis_interval: problems.optional_duration(
                    &format!("{field}.analysis.interval"),
                    analysis.interval.as_deref(),
                ),
                metrics: analysis.metrics,
            }
        })
        .collect()
}

/// Weights strictly increasing percentages ending at 100; mirror steps before them.
fn check_order(rollout: &RolloutSpec, steps: &[crate::api::RolloutStep], problems: &mut Problems) {
    let field = if rollout.plan.is_some() {
        "spec.rollout.plan"
    } else {
        "spec.rollout.steps"
    };
    let weights: Vec<i32> = steps.iter().filter_map(|s| s.weight).collect();
    if steps.last().and_then(|s| s.weight) != Some(100) {
        problems.add(field, "must end at 100, e.g. [10, 50, 100]");
    }
    let in_range = |v: &i32| (1..=100).contains(v);
    let bad_mirror = steps.iter().filter_map(|s| s.mirror).any(|m| !in_range(&m));
    if weights.iter().any(|w| !in_range(w))
        || weights.windows(2).any(|p| p[0] >= p[1])
        || bad_mirror
    {
        problems.add(
            field,
            "must be strictly increasing percentages between 1 and 100",
        );
    }
    let first_weight = steps.iter().position(|s| s.weight.is_some());
    let late_mirror = steps
        .iter()
        .enumerate()
        .any(|(i, s)| s.mirror.is_some() && first_weight.is_some_and(|f| i > f));
    if late_mirror {
        problems.add(field, "mirror steps come before the first weight step");
    }
}
