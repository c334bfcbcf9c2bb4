//! Checks the reconciler makes on top of the CRD schema and its CEL rules.
//!
//! The API server rejects most bad specs at admission. This module covers what CEL cannot say
//! (cron syntax, embedded pod and Job templates) and repeats the important CEL rules so that a
//! resource that bypassed admission (old CRD version, `--validate=false` in a test cluster) is
//! still never half-applied. Pure code: spec in, the spec parsed (durations, cron schedules,
//! templates) or the list of problems out. Each section has its own function, in spec order.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::api::core::v1::PodTemplateSpec;

mod rollout;
mod steps;

pub use steps::StepTiming;

use rollout::{validate_rollout, validate_shadow};

use super::cron::CronSchedule;
use super::duration::parse_duration;
use super::{
    AdvisorSpec, DriftSpec, ModelDeploymentSpec, ModelSource, RetrainingSpec, Serving, Traffic,
    TrafficProvider,
};

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

/// A spec that passed every check, with what the reconciler reads parsed once: the embedded
/// templates, every duration and every cron schedule (defaults applied). Only [`validate`]
/// makes one, so the core never meets a duration it cannot read.
#[derive(Debug, Clone)]
pub struct ValidatedSpec {
    spec: ModelDeploymentSpec,
    pub pod_template: Option<PodTemplateSpec>,
    /// Present exactly when `spec.retraining` is.
    pub job_template: Option<JobSpec>,
    pub timing: Timing,
    /// Image of the proxy sidecar: `spec.serving.proxy.image`, else the operator's default.
    pub proxy_image: String,
}

impl ValidatedSpec {
    /// The spec as written (for the fields used as they are).
    pub fn spec(&self) -> &ModelDeploymentSpec {
        &self.spec
    }

    /// Fills the proxy image from the operator's default when the spec names none.
    #[must_use]
    pub fn with_default_proxy_image(mut self, image: &str) -> Self {
        if self.spec.serving.proxy.image.is_none() {
            self.proxy_image = image.to_owned();
        }
        self
    }

    /// `spec.retraining` with its parsed times, when the section is there.
    pub fn retraining(&self) -> Option<(&RetrainingSpec, &RetrainingTiming)> {
        self.spec
            .retraining
            .as_ref()
            .zip(self.timing.retraining.as_ref())
    }
}

/// Every duration and cron schedule of a spec, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// `spec.drift`, when the section is there.
    pub drift: Option<DriftTiming>,
    /// `spec.retraining`, when the section is there.
    pub retraining: Option<RetrainingTiming>,
    /// `spec.shadow.duration`.
    pub shadow_duration: Duration,
    pub rollout: RolloutTiming,
    /// `spec.advisor.timeout`.
    pub advisor_timeout: Duration,
    /// `spec.rollout.experiment.duration`, when there is an experiment.
    pub experiment: Option<Duration>,
}

/// When drift is checked.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftTiming {
    /// `interval` or its default; with a `schedule` it still bounds the retry backoff.
    pub interval: Duration,
    pub schedule: Option<CronSchedule>,
    /// `current.window`: only rows this recent are compared.
    pub window: Option<Duration>,
}

/// When retraining may start and how long it may run.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrainingTiming {
    /// `triggers.schedule`.
    pub schedule: Option<CronSchedule>,
    pub cooldown: Duration,
    pub timeout: Duration,
}

/// The pace of a rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutTiming {
    pub step_duration: Duration,
    pub progress_deadline: Duration,
    /// `analysis.interval`, when there is an analysis.
    pub analysis_interval: Option<Duration>,
    /// `postPromotion.duration`, when there is a post-promotion analysis.
    pub post_promotion: Option<Duration>,
    /// `scaleDownDelay` (zero without one).
    pub scale_down_delay: Duration,
    /// `abortScaleDownDelay` (zero without one).
    pub abort_scale_down_delay: Duration,
    /// The steps, parsed (`plan`, or the weights of `steps`).
    pub steps: Vec<StepTiming>,
}

/// Validates a spec; returns it parsed, or every problem found (in the order of the spec).
pub fn validate(spec: &ModelDeploymentSpec) -> Result<ValidatedSpec, Vec<SpecProblem>> {
    let mut problems = Problems::default();
    validate_model(&spec.model, &mut problems);
    let pod_template = validate_serving(&spec.serving, &mut problems);
    if spec
        .drift
        .as_ref()
        .is_some_and(|d| d.current.capture.is_some())
        && spec.capture_base().is_none()
    {
        problems.add(
            "spec.drift.current.capture",
            "needs spec.serving.proxy.capture (the proxy writes the traffic the drift check reads) with the proxy enabled",
        );
    }
    if let Some(labelled) = spec.performance.as_ref().and_then(|p| p.labelled.as_ref()) {
        validate_labelled(labelled, spec.capture_base().is_some(), &mut problems);
    }
    for (field, message) in super::proxy::check(&spec.serving.proxy, spec.serving.port) {
        problems.add(field, message);
    }
    validate_traffic(&spec.traffic, &mut problems);
    let drift = spec
        .drift
        .as_ref()
        .map(|drift| validate_drift(drift, &mut problems));
    let (retraining, job_template) = match &spec.retraining {
        Some(retraining) => {
            let (timing, job_template) = validate_retraining(retraining, &mut problems);
            (Some(timing), job_template)
        }
        None => (None, None),
    };
    let rollout = validate_rollout(&spec.rollout, &mut problems);
    let shadow_duration = validate_shadow(&spec.shadow, &mut problems);
    let advisor_timeout = validate_advisor(&spec.advisor, &mut problems);
    let experiment = spec.rollout.experiment.as_ref().and_then(|experiment| {
        let (duration, found) = super::experiment::check(experiment, spec.traffic.provider);
        for (field, message) in found {
            problems.add(field, message);
        }
        duration
    });
    if !problems.0.is_empty() {
        return Err(problems.0);
    }
    Ok(ValidatedSpec {
        spec: spec.clone(),
        pod_template,
        job_template,
        proxy_image: spec
            .serving
            .proxy
            .image
            .clone()
            .unwrap_or_else(|| super::proxy::DEFAULT_PROXY_IMAGE.to_owned()),
        timing: Timing {
            drift,
            retraining,
            shadow_duration,
            rollout,
            advisor_timeout,
            experiment,
        },
    })
}

/// Problems found so far. The parsing helpers return a stand-in value (zero, `None`) for what
/// they reject; it never escapes, since any problem fails the whole validation.
#[derive(Default)]
struct Problems(Vec<SpecProblem>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(SpecProblem {
            field: field.into(),
            message: message.into(),
        });
    }

    fn duration(&mut self, field: &str, value: &str) -> Duration {
        parse_duration(value).unwrap_or_else(|e| {
            self.add(field, e.to_string());
            Duration::ZERO
        })
    }

    fn optional_duration(&mut self, field: &str, value: Option<&str>) -> Option<Duration> {
        value.map(|value| self.duration(field, value))
    }

    fn cron(&mut self, field: &str, value: Option<&str>) -> Option<CronSchedule> {
        match CronSchedule::parse(value?) {
            Ok(schedule) => Some(schedule),
            Err(e) => {
                self.add(field, e.to_string());
                None
            }
        }
    }
}

fn validate_model(model: &ModelSource, problems: &mut Problems) {
    if !(model.tracking_uri.starts_with("http://") || model.tracking_uri.starts_with("https://")) {
        problems.add(
            "spec.model.trackingUri",
            "must be an http:// or https:// URL of the MLflow tracking server",
        );
    }
    if model.alias == "latest" || is_reserved_version_alias(&model.alias) {
        problems.add(
            "spec.model.alias",
            "'latest' and 'v<digits>' are reserved by MLflow; use e.g. 'champion'",
        );
    }
}

/// The pod template, parsed.
fn validate_serving(serving: &Serving, problems: &mut Problems) -> Option<PodTemplateSpec> {
    let raw = serving.pod_template.as_ref()?;
    match serde_json::from_value::<PodTemplateSpec>(raw.clone()) {
        Ok(template) => {
            if template
                .spec
                .as_ref()
                .is_none_or(|s| s.containers.is_empty())
            {
                problems.add(
                    "spec.serving.podTemplate",
                    "must contain spec.containers with at least one container",
                );
            }
            Some(template)
        }
        Err(e) => {
            problems.add(
                "spec.serving.podTemplate",
                format!("is not a valid core/v1 PodTemplateSpec: {e}"),
            );
            None
        }
    }
}

fn validate_traffic(traffic: &Traffic, problems: &mut Problems) {
    match traffic.provider {
        TrafficProvider::GatewayApi if traffic.parent_refs.is_empty() => problems.add(
            "spec.traffic.parentRefs",
            "must name at least one Gateway when provider is gatewayAPI (or set provider: none)",
        ),
        TrafficProvider::Istio if traffic.hostnames.is_empty() => problems.add(
            "spec.traffic.hostnames",
            "must list the VirtualService hosts when provider is istio",
        ),
        _ => {}
    }
    if let Some(backend) = &traffic.backend {
        validate_backend(traffic.provider, backend, problems);
    }
}

/// InferencePool backends: an HTTPRoute, and an endpoint picker per pool.
fn validate_backend(
    provider: TrafficProvider,
    backend: &super::traffic::Backend,
    problems: &mut Problems,
) {
    use super::traffic::BackendKind;
    let pools = backend.kind == BackendKind::InferencePool;
    if pools && provider != TrafficProvider::GatewayApi {
        problems.add(
            "spec.traffic.backend.kind",
            "InferencePool needs provider gatewayAPI (an HTTPRoute routes to InferencePools; a VirtualService cannot)",
        );
    }
    match &backend.endpoint_pickers {
        None if pools => problems.add(
            "spec.traffic.backend.endpointPickers",
            "must name the endpoint picker (EPP) of each variant's InferencePool",
        ),
        Some(_) if !pools => problems.add(
            "spec.traffic.backend.endpointPickers",
            "is only for kind InferencePool",
        ),
        Some(pickers) => {
            for (variant, picker) in [
                ("stable", &pickers.stable),
                ("candidate", &pickers.candidate),
            ] {
                if picker.kind.as_deref().is_none_or(|k| k == "Service") && picker.port.is_none() {
                    problems.add(
                        format!("spec.traffic.backend.endpointPickers.{variant}.port"),
                        "is required when the endpoint picker is a Service",
                    );
                }
            }
        }
        None => {}
    }
}

fn validate_drift(drift: &DriftSpec, problems: &mut Problems) -> DriftTiming {
    let t = &drift.thresholds;
    if t.psi_warning > t.psi_high {
        problems.add(
            "spec.drift.thresholds",
            format!(
                "psiWarning ({}) must not exceed psiHigh ({})",
                t.psi_warning, t.psi_high
            ),
        );
    }
    if !(t.alpha > 0.0 && t.alpha < 1.0) {
        problems.add("spec.drift.thresholds.alpha", "must be between 0 and 1");
    }
    if drift.interval.is_some() && drift.schedule.is_some() {
        problems.add("spec.drift", "set either interval or schedule, not both");
    }
    let timing = DriftTiming {
        interval: problems
            .optional_duration("spec.drift.interval", drift.interval.as_deref())
            .unwrap_or(DriftSpec::DEFAULT_INTERVAL),
        schedule: problems.cron("spec.drift.schedule", drift.schedule.as_deref()),
        window: problems
            .optional_duration("spec.drift.current.window", drift.current.window.as_deref()),
    };
    validate_current(&drift.current, problems);
    let mut seen = HashSet::new();
    for feature in &drift.features {
        if !seen.insert(feature.name.as_str()) {
            problems.add(
                "spec.drift.features",
                format!("feature {:?} is listed twice", feature.name),
            );
        }
    }
    timing
}

/// `spec.drift.current`: one source, one way of choosing its newest data (the CRD's CEL rules,
/// for specs that did not pass through the API server).
fn validate_current(current: &crate::api::CurrentData, problems: &mut Problems) {
    let at = "spec.drift.current";
    if current.uri().is_some() == current.capture.is_some() {
        problems.add(at, "set exactly one of uri and capture");
    }
    if current.last_rows.is_some() && current.last_duration.is_some() {
        problems.add(at, "set either lastRows or lastDuration, not both");
    }
    if current.window.is_some() && (current.last_rows.is_some() || current.last_duration.is_some())
    {
        problems.add(
            at,
            "window (rows by timestampColumn) cannot be combined with lastRows or lastDuration (files by time)",
        );
    }
    if current.last_rows.is_some_and(|n| n < 1) {
        problems.add("spec.drift.current.lastRows", "must be at least 1");
    }
    problems.optional_duration(
        "spec.drift.current.lastDuration",
        current.last_duration.as_deref(),
    );
}

/// `spec.performance.labelled`: with `join`, the captured predictions exist, one way of
/// choosing the newest of them, and the id is not the label (the CRD's CEL rules, and what
/// they cannot check).
fn validate_labelled(labelled: &crate::api::LabelledData, captures: bool, problems: &mut Problems) {
    let Some(join) = &labelled.join else {
        return;
    };
    let at = "spec.performance.labelled.join";
    if !captures {
        problems.add(
            "spec.performance.labelled.join.capture",
            "needs spec.serving.proxy.capture (the proxy captures the predictions the labels join) with the proxy enabled",
        );
    }
    if join.id_column.is_empty() {
        problems.add(
            "spec.performance.labelled.join.idColumn",
            "must not be empty",
        );
    }
    if join.id_column == labelled.label_column {
        problems.add(
            at,
            format!(
                "idColumn and labelColumn are both {:?}: the request id and the label are two columns",
                join.id_column
            ),
        );
    }
    if join.last_rows.is_some() && join.last_duration.is_some() {
        problems.add(at, "set either lastRows or lastDuration, not both");
    }
    if join.last_rows.is_some_and(|n| n < 1) {
        problems.add(
            "spec.performance.labelled.join.lastRows",
            "must be at least 1",
        );
    }
    problems.optional_duration(
        "spec.performance.labelled.join.lastDuration",
        join.last_duration.as_deref(),
    );
}

/// The retraining times and the Job template, parsed.
fn validate_retraining(
    retraining: &RetrainingSpec,
    problems: &mut Problems,
) -> (RetrainingTiming, Option<JobSpec>) {
    let triggers = &retraining.triggers;
    if retraining.enabled
        && triggers.schedule.is_none()
        && triggers.new_samples.is_none()
        && triggers.accuracy_below.is_none()
        && triggers.drift_severity.is_none()
    {
        problems.add(
            "spec.retraining.triggers",
            "needs at least one of schedule, newSamples, accuracyBelow or driftSeverity",
        );
    }
    let timing = RetrainingTiming {
        schedule: problems.cron(
            "spec.retraining.triggers.schedule",
            triggers.schedule.as_deref(),
        ),
        cooldown: problems.duration("spec.retraining.cooldown", &retraining.cooldown),
        timeout: problems.duration("spec.retraining.timeout", &retraining.timeout),
    };
    let job_template = validate_job_template(&retraining.job_template, problems);
    (timing, job_template)
}

/// The training Job's template, parsed.
fn validate_job_template(raw: &serde_json::Value, problems: &mut Problems) -> Option<JobSpec> {
    match serde_json::from_value::<JobSpec>(raw.clone()) {
        Ok(job)
            if job
                .template
                .spec
                .as_ref()
                .is_none_or(|s| s.containers.is_empty()) =>
        {
            problems.add(
                "spec.retraining.jobTemplate",
                "must contain template.spec.containers with at least one container",
            );
            None
        }
        Ok(job) => Some(job),
        Err(e) => {
            problems.add(
                "spec.retraining.jobTemplate",
                format!("is not a valid batch/v1 JobSpec: {e}"),
            );
            None
        }
    }
}

fn validate_advisor(advisor: &AdvisorSpec, problems: &mut Problems) -> Duration {
    if advisor.enabled && advisor.api_key_secret.is_none() {
        problems.add(
            "spec.advisor.apiKeySecret",
            "is required when the advisor is enabled",
        );
    }
    problems.duration("spec.advisor.timeout", &advisor.timeout)
}

fn is_reserved_version_alias(alias: &str) -> bool {
    alias.len() > 1 && alias.starts_with('v') && alias[1..].bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests;
