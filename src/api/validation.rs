//! Checks the reconciler makes on top of the CRD schema and its CEL rules.
//!
//! The API server rejects most bad specs at admission. This module covers what CEL cannot say
//! (cron syntax, embedded pod and Job templates) and repeats the important CEL rules so that a
//! resource that bypassed admission (old CRD version, `--validate=false` in a test cluster) is
//! still never half-applied. Pure code: spec in, list of problems out.

use std::collections::HashSet;
use std::str::FromStr;

use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::duration::parse_duration;
use super::{ModelDeploymentSpec, TrafficProvider};

/// One problem with a spec, phrased as what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    /// JSON path of the offending field, e.g. `spec.rollout.steps`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl std::fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A spec that passed every check: the typed templates are parsed once here.
#[derive(Debug, Clone)]
pub struct ValidatedSpec {
    pub pod_template: Option<PodTemplateSpec>,
    pub job_template: Option<JobSpec>,
}

/// Validates a spec; returns the parsed templates or every problem found.
pub fn validate(spec: &ModelDeploymentSpec) -> Result<ValidatedSpec, Vec<SpecProblem>> {
    let mut problems = Vec::new();
    let mut problem = |field: &str, message: String| {
        problems.push(SpecProblem {
            field: field.to_string(),
            message,
        })
    };

    if !(spec.model.tracking_uri.starts_with("http://")
        || spec.model.tracking_uri.starts_with("https://"))
    {
        problem(
            "spec.model.trackingUri",
            "must be an http:// or https:// URL of the MLflow tracking server".into(),
        );
    }
    if spec.model.alias == "latest" || is_reserved_version_alias(&spec.model.alias) {
        problem(
            "spec.model.alias",
            "'latest' and 'v<digits>' are reserved by MLflow; use e.g. 'champion'".into(),
        );
    }

    let pod_template = match &spec.serving.pod_template {
        Some(raw) => match serde_json::from_value::<PodTemplateSpec>(raw.clone()) {
            Ok(template) => {
                if template
                    .spec
                    .as_ref()
                    .is_none_or(|s| s.containers.is_empty())
                {
                    problem(
                        "spec.serving.podTemplate",
                        "must contain spec.containers with at least one container".into(),
                    );
                }
                Some(template)
            }
            Err(e) => {
                problem(
                    "spec.serving.podTemplate",
                    format!("is not a valid core/v1 PodTemplateSpec: {e}"),
                );
                None
            }
        },
        None => None,
    };

    match spec.traffic.provider {
        TrafficProvider::GatewayApi if spec.traffic.parent_refs.is_empty() => problem(
            "spec.traffic.parentRefs",
            "must name at least one Gateway when provider is gatewayAPI (or set provider: none)"
                .into(),
        ),
        TrafficProvider::Istio if spec.traffic.hostnames.is_empty() => problem(
            "spec.traffic.hostnames",
            "must list the VirtualService hosts when provider is istio".into(),
        ),
        _ => {}
    }

    if let Some(drift) = &spec.drift {
        let t = &drift.thresholds;
        if t.psi_warning > t.psi_high {
            problem(
                "spec.drift.thresholds",
                format!(
                    "psiWarning ({}) must not exceed psiHigh ({})",
                    t.psi_warning, t.psi_high
                ),
            );
        }
        if !(t.alpha > 0.0 && t.alpha < 1.0) {
            problem(
                "spec.drift.thresholds.alpha",
                "must be between 0 and 1".into(),
            );
        }
        if drift.interval.is_some() && drift.schedule.is_some() {
            problem(
                "spec.drift",
                "set either interval or schedule, not both".into(),
            );
        }
        check_duration(
            &mut problems,
            "spec.drift.interval",
            drift.interval.as_deref(),
        );
        check_cron(
            &mut problems,
            "spec.drift.schedule",
            drift.schedule.as_deref(),
        );
        check_duration(
            &mut problems,
            "spec.drift.current.window",
            drift.current.window.as_deref(),
        );
        let mut seen = HashSet::new();
        for feature in &drift.features {
            if !seen.insert(feature.name.as_str()) {
                problems.push(SpecProblem {
                    field: "spec.drift.features".into(),
                    message: format!("feature {:?} is listed twice", feature.name),
                });
            }
        }
    }

    let mut job_template = None;
    if let Some(retraining) = &spec.retraining {
        let triggers = &retraining.triggers;
        if retraining.enabled
            && triggers.schedule.is_none()
            && triggers.new_samples.is_none()
            && triggers.accuracy_below.is_none()
            && triggers.drift_severity.is_none()
        {
            problems.push(SpecProblem {
                field: "spec.retraining.triggers".into(),
                message:
                    "needs at least one of schedule, newSamples, accuracyBelow or driftSeverity"
                        .into(),
            });
        }
        check_cron(
            &mut problems,
            "spec.retraining.triggers.schedule",
            triggers.schedule.as_deref(),
        );
        check_duration(
            &mut problems,
            "spec.retraining.cooldown",
            Some(&retraining.cooldown),
        );
        check_duration(
            &mut problems,
            "spec.retraining.timeout",
            Some(&retraining.timeout),
        );
        match serde_json::from_value::<JobSpec>(retraining.job_template.clone()) {
            Ok(job)
                if job
                    .template
                    .spec
                    .as_ref()
                    .is_none_or(|s| s.containers.is_empty()) =>
            {
                problems.push(SpecProblem {
                    field: "spec.retraining.jobTemplate".into(),
                    message: "must contain template.spec.containers with at least one container"
                        .into(),
                })
            }
            Ok(job) => job_template = Some(job),
            Err(e) => problems.push(SpecProblem {
                field: "spec.retraining.jobTemplate".into(),
                message: format!("is not a valid batch/v1 JobSpec: {e}"),
            }),
        }
    }

    let steps = &spec.rollout.steps;
    if steps.is_empty() || steps.last() != Some(&100) {
        problems.push(SpecProblem {
            field: "spec.rollout.steps".into(),
            message: "must end at 100, e.g. [10, 50, 100]".into(),
        });
    }
    if steps.iter().any(|w| !(1..=100).contains(w)) || steps.windows(2).any(|p| p[0] >= p[1]) {
        problems.push(SpecProblem {
            field: "spec.rollout.steps".into(),
            message: "must be strictly increasing percentages between 1 and 100".into(),
        });
    }
    check_duration(
        &mut problems,
        "spec.rollout.stepDuration",
        Some(&spec.rollout.step_duration),
    );
    check_duration(
        &mut problems,
        "spec.rollout.progressDeadline",
        Some(&spec.rollout.progress_deadline),
    );
    if let Some(analysis) = &spec.rollout.analysis {
        check_duration(
            &mut problems,
            "spec.rollout.analysis.interval",
            Some(&analysis.interval),
        );
        let mut names = HashSet::new();
        for metric in &analysis.metrics {
            if !names.insert(metric.name.as_str()) {
                problems.push(SpecProblem {
                    field: "spec.rollout.analysis.metrics".into(),
                    message: format!("metric name {:?} is used twice", metric.name),
                });
            }
            if metric.max.is_none() && metric.min.is_none() && metric.max_increase.is_none() {
                problems.push(SpecProblem {
                    field: format!("spec.rollout.analysis.metrics[{}]", metric.name),
                    message: "needs a threshold: max, min or maxIncrease".into(),
                });
            }
        }
    }
    check_duration(
        &mut problems,
        "spec.shadow.duration",
        Some(&spec.shadow.duration),
    );
    if !(0..=100).contains(&spec.shadow.mirror_percent) {
        problems.push(SpecProblem {
            field: "spec.shadow.mirrorPercent".into(),
            message: "must be between 0 and 100".into(),
        });
    }
    if spec.advisor.enabled && spec.advisor.api_key_secret.is_none() {
        problems.push(SpecProblem {
            field: "spec.advisor.apiKeySecret".into(),
            message: "is required when the advisor is enabled".into(),
        });
    }
    check_duration(
        &mut problems,
        "spec.advisor.timeout",
        Some(&spec.advisor.timeout),
    );

    if problems.is_empty() {
        Ok(ValidatedSpec {
            pod_template,
            job_template,
        })
    } else {
        Err(problems)
    }
}

fn is_reserved_version_alias(alias: &str) -> bool {
    alias.len() > 1 && alias.starts_with('v') && alias[1..].bytes().all(|b| b.is_ascii_digit())
}

fn check_duration(problems: &mut Vec<SpecProblem>, field: &str, value: Option<&str>) {
    if let Some(value) = value
        && let Err(e) = parse_duration(value)
    {
        problems.push(SpecProblem {
            field: field.into(),
            message: e.to_string(),
        });
    }
}

fn check_cron(problems: &mut Vec<SpecProblem>, field: &str, value: Option<&str>) {
    if let Some(value) = value
        && let Err(e) = croner::Cron::from_str(value)
    {
        problems.push(SpecProblem {
            field: field.into(),
            message: format!(
                "{value:?} is not a valid cron schedule ({e}); use 5 fields, e.g. \"0 3 * * 0\""
            ),
        });
    }
}
