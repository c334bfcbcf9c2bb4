//! `spec.rollout` and `spec.shadow`, parsed: durations, the analysis and its judges, the
//! post-promotion analysis (the steps are in [`super::steps`]).

use std::collections::HashSet;
use std::time::Duration;

use super::{Problems, RolloutTiming, steps};
use crate::api::{AnalysisSpec, RolloutSpec, ShadowSpec};

pub(super) fn validate_rollout(rollout: &RolloutSpec, problems: &mut Problems) -> RolloutTiming {
    let step_duration = problems.duration("spec.rollout.stepDuration", &rollout.step_duration);
    let steps = steps::validate_steps(rollout, step_duration, problems);
    let delay = |problems: &mut Problems, field: &str, value: &Option<String>| {
        value
            .as_deref()
            .map_or(Duration::ZERO, |v| problems.duration(field, v))
    };
    RolloutTiming {
        step_duration,
        steps,
        progress_deadline: problems
            .duration("spec.rollout.progressDeadline", &rollout.progress_deadline),
        analysis_interval: rollout
            .analysis
            .as_ref()
            .map(|analysis| validate_analysis(analysis, problems)),
        post_promotion: validate_post_promotion(rollout, problems),
        scale_down_delay: delay(
            problems,
            "spec.rollout.scaleDownDelay",
            &rollout.scale_down_delay,
        ),
        abort_scale_down_delay: delay(
            problems,
            "spec.rollout.abortScaleDownDelay",
            &rollout.abort_scale_down_delay,
        ),
    }
}

/// The post-promotion analysis' duration; it needs the Prometheus of `rollout.analysis` and
/// absolute thresholds (stable serves nothing after promotion).
fn validate_post_promotion(rollout: &RolloutSpec, problems: &mut Problems) -> Option<Duration> {
    let post = rollout.post_promotion.as_ref()?;
    let duration = problems.duration("spec.rollout.postPromotion.duration", &post.duration);
    if rollout.analysis.is_none() {
        problems.add(
            "spec.rollout.postPromotion",
            "needs spec.rollout.analysis (its Prometheus and interval)",
        );
    }
    for metric in &post.metrics {
        let field = format!("spec.rollout.postPromotion.metrics[{}]", metric.name);
        if metric.max_increase.is_some() || metric.judge == crate::api::Judge::Sequential {
            problems.add(
                &field,
                "stable serves nothing after promotion; use max or min, not maxIncrease or judge: sequential",
            );
        }
        if metric.max.is_none() && metric.min.is_none() {
            problems.add(&field, "needs a threshold: max or min");
        }
        if metric.query.trim().is_empty() {
            problems.add(&field, "needs a query");
        }
    }
    Some(duration)
}

/// The measurement interval, parsed.
fn validate_analysis(analysis: &AnalysisSpec, problems: &mut Problems) -> Duration {
    let interval = problems.duration("spec.rollout.analysis.interval", &analysis.interval);
    let mut names = HashSet::new();
    for metric in &analysis.metrics {
        if !names.insert(metric.name.as_str()) {
            problems.add(
                "spec.rollout.analysis.metrics",
                format!("metric name {:?} is used twice", metric.name),
            );
        }
        validate_judge(metric, problems);
    }
    interval
}

/// A threshold metric needs a query and a threshold; a sequential one takes neither thresholds
/// nor a failure limit, and its settings must be in range.
fn validate_judge(metric: &crate::api::AnalysisMetric, problems: &mut Problems) {
    let field = format!("spec.rollout.analysis.metrics[{}]", metric.name);
    let thresholds = metric.max.is_some() || metric.min.is_some() || metric.max_increase.is_some();
    match metric.judge {
        crate::api::Judge::Threshold => {
            if !thresholds {
                problems.add(&field, "needs a threshold: max, min or maxIncrease");
            }
            if metric.query.trim().is_empty() {
                problems.add(&field, "needs a query");
            }
        }
        crate::api::Judge::Sequential => {
            if thresholds || metric.failure_limit > 0 {
                problems.add(
                    &field,
                    "a sequential metric takes no max, min, maxIncrease or failureLimit (its boundaries come from alpha and minEffect)",
                );
            }
            let settings = metric.sequential.clone().unwrap_or_default();
            if !(settings.alpha > 0.0 && settings.alpha <= 0.5) {
                problems.add(format!("{field}.sequential.alpha"), "must be in (0, 0.5]");
            }
            if settings
                .false_promotion
                .is_some_and(|b| !(b > 0.0 && b <= 0.5))
            {
                problems.add(
                    format!("{field}.sequential.falsePromotion"),
                    "must be in (0, 0.5]",
                );
            }
            if !(settings.min_effect >= 1.01 && settings.min_effect <= 10.0) {
                problems.add(
                    format!("{field}.sequential.minEffect"),
                    "must be between 1.01 and 10 (a ratio of bad-event rates)",
                );
            }
            if settings.bad_query.is_some() && settings.slower_than.is_some() {
                problems.add(
                    format!("{field}.sequential"),
                    "give badQuery or slowerThan, not both",
                );
            }
        }
    }
}

pub(super) fn validate_shadow(shadow: &ShadowSpec, problems: &mut Problems) -> Duration {
    let duration = problems.duration("spec.shadow.duration", &shadow.duration);
    if !(0..=100).contains(&shadow.mirror_percent) {
        problems.add("spec.shadow.mirrorPercent", "must be between 0 and 100");
    }
    duration
}
