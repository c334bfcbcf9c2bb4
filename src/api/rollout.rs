//! `spec.shadow` and `spec.rollout`: how a candidate earns its traffic.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::duration::DURATION_PATTERN;
use super::model::SecretKeyReference;

/// Shadow phase: the candidate receives mirrored live traffic; its answers are discarded and
/// compared with stable's.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShadowSpec {
    /// Run a shadow phase before any live traffic shifts.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Percentage of live requests mirrored to the candidate.
    #[serde(default = "default_mirror_percent")]
    #[schemars(range(min = 0, max = 100))]
    pub mirror_percent: i32,
    /// How long the shadow phase lasts.
    #[serde(default = "default_shadow_duration")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub duration: String,
    /// Largest PSI between candidate and stable prediction-score histograms.
    #[serde(default = "default_prediction_psi")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub max_prediction_psi: f64,
    /// Largest candidate/stable error-rate ratio.
    #[serde(default = "default_ratio")]
    #[schemars(range(min = 1.0, max = 100.0))]
    pub max_error_rate_ratio: f64,
    /// Largest candidate/stable p99-latency ratio.
    #[serde(default = "default_ratio")]
    #[schemars(range(min = 1.0, max = 100.0))]
    pub max_latency_ratio: f64,
}

impl Default for ShadowSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            mirror_percent: default_mirror_percent(),
            duration: default_shadow_duration(),
            max_prediction_psi: default_prediction_psi(),
            max_error_rate_ratio: default_ratio(),
            max_latency_ratio: default_ratio(),
        }
    }
}

/// Progressive traffic shift.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.plan) || !has(self.steps) || self.steps == [10, 50, 100]")
    .message("rollout: give plan (steps with their own settings) or steps (weights), not both; with plan, leave steps out"))]
pub struct RolloutSpec {
    /// Candidate traffic percentages, strictly increasing, ending at 100.
    #[serde(default = "default_steps")]
    #[schemars(length(min = 1, max = 20))]
    #[x_kube(validation = kube::core::Rule::new("self.all(w, w >= 1 && w <= 100)")
        .message("rollout.steps must be percentages between 1 and 100"))]
    #[x_kube(validation = kube::core::Rule::new("size(self) == 0 || self[size(self) - 1] == 100")
        .message("rollout.steps must end at 100"))]
    #[x_kube(validation = kube::core::Rule::new("self.isSorted() && self.all(w, self.indexOf(w) == self.lastIndexOf(w))")
        .message("rollout.steps must be strictly increasing, e.g. [10, 50, 100]"))]
    pub steps: Vec<i32>,
    /// Time spent at each step (the analysis runs during it).
    #[serde(default = "default_step_duration")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub step_duration: String,
    /// Metric analysis against the stable variant. Without it, steps advance on time alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisSpec>,
    /// A phase (training, candidate readiness, analysis) that makes no progress for this long
    /// ends in a rollback with reason `ProgressDeadlineExceeded`.
    #[serde(default = "default_progress_deadline")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub progress_deadline: String,
    /// Analysis that keeps running after promotion, with the previous version kept warm: a
    /// failure rolls back to it at once (reason `PostPromotionAnalysisFailed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion: Option<PostPromotionSpec>,
    /// How long the previous version stays scaled after promotion, so that a rollback in that
    /// window moves traffic back at once instead of waiting for new pods (Argo Rollouts'
    /// `scaleDownDelaySeconds`). Without it (and without `postPromotion`) the stable
    /// Deployment takes the promoted version at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub scale_down_delay: Option<String>,
    /// How long a rolled-back or aborted candidate keeps running (with no traffic) for
    /// debugging (Argo Rollouts' `abortScaleDownDelaySeconds`). Without it, it goes at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub abort_scale_down_delay: Option<String>,
    /// Steps with their own settings, instead of `steps`: a weight or a mirror percentage
    /// each, with its own duration, a pause, or analysis overrides. Mirror steps come first
    /// (shadow ramping up), weights increase and the last step is `weight: 100`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 20))]
    #[x_kube(validation = kube::core::Rule::new("has(self[size(self) - 1].weight) && self[size(self) - 1].weight == 100")
        .message("rollout.plan must end with weight: 100"))]
    #[x_kube(validation = kube::core::Rule::new("self.filter(s, has(s.weight)).map(s, s.weight).isSorted() && self.filter(s, has(s.weight)).all(s, self.filter(t, has(t.weight) && t.weight == s.weight).size() == 1)")
        .message("rollout.plan weights must be strictly increasing, e.g. 10, 50, 100"))]
    #[x_kube(validation = kube::core::Rule::new("self.map(s, has(s.mirror) ? 0 : 1).isSorted()")
        .message("rollout.plan: mirror steps come before the first weight step"))]
    pub plan: Option<Vec<RolloutStep>>,
    /// With a router (`gatewayAPI`, `istio`): scale stable down as the candidate takes weight
    /// (stable runs ceil(replicas × its share), the candidate ceil(replicas × its weight)), so
    /// a rollout costs about one set of replicas instead of two. Traffic moves to a variant
    /// only once it has the ready replicas for its new share; a rollback scales stable back up
    /// before traffic returns to it. Ignored by the `none` provider (its replica counts already
    /// follow the weights).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dynamic_stable_scale: bool,
    /// Keep the candidate's pods and stable's pods on different nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity: Option<super::placement::AntiAffinity>,
    /// Labels and annotations added to the candidate's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_metadata: Option<super::placement::PodMetadata>,
    /// Labels and annotations added to stable's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_metadata: Option<super::placement::PodMetadata>,
    /// An A/B experiment between shadow and the first step: requests matching a header or a
    /// cookie go to the candidate for `duration`, judged by `analysis` like a step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<super::experiment::ExperimentSpec>,
}

/// One step of `rollout.plan`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.weight) != has(self.mirror)")
    .message("each rollout.plan step needs exactly one of weight or mirror"))]
#[x_kube(validation = kube::core::Rule::new("!(has(self.duration) && has(self.pause))")
    .message("a rollout.plan step takes duration or pause, not both (pause: {duration} holds for a time)"))]
pub struct RolloutStep {
    /// Percent of live traffic on the candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub weight: Option<i32>,
    /// Percent of live traffic mirrored to the candidate (its answers discarded), judged
    /// like the shadow phase: shadow ramping up before any live traffic moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub mirror: Option<i32>,
    /// Time at this step (default `stepDuration`); its analysis runs during it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub duration: Option<String>,
    /// Hold here without analysis: `{}` until a person runs `mlrollout promote` (or
    /// resumes), `{duration: 1h}` for a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<StepPause>,
    /// This step's analysis settings, over `rollout.analysis`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<StepAnalysis>,
}

/// A pause step.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StepPause {
    /// How long to hold; without it, until a person promotes or resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub duration: Option<String>,
}

/// A step's analysis overrides.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StepAnalysis {
    /// Measurements this step needs (instead of `analysis.count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub count: Option<i32>,
    /// Time between measurements at this step (instead of `analysis.interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub interval: Option<String>,
    /// Metrics added at this step (one with the name of an analysis metric replaces it here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub metrics: Vec<AnalysisMetric>,
}

impl RolloutSpec {
    /// The steps the rollout goes through: `plan`, or the weights of `steps`.
    pub fn resolved_steps(&self) -> Vec<RolloutStep> {
        match &self.plan {
            Some(plan) => plan.clone(),
            None => self
                .steps
                .iter()
                .map(|&weight| RolloutStep {
                    weight: Some(weight),
                    ..Default::default()
                })
                .collect(),
        }
    }
}

impl RolloutStep {
    /// `10%` or `mirror 25%`, for messages.
    pub fn describe(&self) -> String {
        match (self.weight, self.mirror) {
            (Some(w), _) => format!("{w}%"),
            (None, Some(m)) => format!("mirror {m}%"),
            (None, None) => "0%".to_owned(),
        }
    }
}

/// Analysis after promotion. Stable serves nothing then, so its metrics are judged on absolute
/// thresholds (`max`, `min`), against the Prometheus of `rollout.analysis`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.metrics.all(m, !has(m.maxIncrease) && !(has(m.judge) && m.judge == 'sequential'))")
    .message("rollout.postPromotion.metrics: stable serves nothing after promotion; use max or min, not maxIncrease or judge: sequential"))]
pub struct PostPromotionSpec {
    /// How long the analysis runs after promotion.
    #[schemars(pattern(DURATION_PATTERN))]
    pub duration: String,
    /// Metrics measured every `rollout.analysis.interval` with their limits; any failure,
    /// error or inconclusive past its limit rolls back.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub metrics: Vec<AnalysisMetric>,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            steps: default_steps(),
            step_duration: default_step_duration(),
            analysis: None,
            progress_deadline: default_progress_deadline(),
            post_promotion: None,
            scale_down_delay: None,
            abort_scale_down_delay: None,
            plan: None,
            dynamic_stable_scale: false,
            anti_affinity: None,
            candidate_metadata: None,
            stable_metadata: None,
            experiment: None,
        }
    }
}

/// Prometheus analysis of the candidate relative to stable.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSpec {
    /// Prometheus to query.
    pub prometheus: PrometheusSource,
    /// Time between measurements.
    #[serde(default = "default_interval")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub interval: String,
    /// Measurements per step.
    #[serde(default = "default_count")]
    #[schemars(range(min = 1, max = 100))]
    pub count: i32,
    /// What happens when a metric exceeds its inconclusive limit.
    #[serde(default)]
    pub on_inconclusive: InconclusiveAction,
    /// Metrics; when empty, the built-in `error-rate` and `latency-p99` metrics are used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub metrics: Vec<AnalysisMetric>,
}

/// A Prometheus endpoint.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSource {
    /// Base URL, e.g. `http://prometheus-operated.monitoring.svc:9090`.
    #[schemars(pattern(r"^https?://[^\s]+$"), length(max = 512))]
    pub address: String,
    /// Secret key with a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret: Option<SecretKeyReference>,
}

/// What a metric past its inconclusive limit does.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum InconclusiveAction {
    /// Pause for a person to promote or abort.
    #[default]
    Pause,
    /// Roll back.
    Rollback,
}

/// One analysis metric, evaluated for the candidate and for stable.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(SEQUENTIAL_RULE.to_owned() + " || has(self.max) || has(self.min) || has(self.maxIncrease)")
    .message("each rollout.analysis.metrics entry needs a threshold: max, min or maxIncrease (or judge: sequential)"))]
#[x_kube(validation = kube::core::Rule::new(SEQUENTIAL_RULE.to_owned() + " || (has(self.query) && size(self.query) > 0)")
    .message("rollout.analysis.metrics: a threshold metric needs a query"))]
#[x_kube(validation = kube::core::Rule::new("!(".to_owned() + SEQUENTIAL_RULE + ") || !(has(self.max) || has(self.min) || has(self.maxIncrease) || self.failureLimit > 0)")
    .message("rollout.analysis.metrics: a sequential metric takes no max, min, maxIncrease or failureLimit (its boundaries come from alpha and minEffect)"))]
#[x_kube(validation = kube::core::Rule::new("!(has(self.max) && has(self.min)) || self.min <= self.max")
    .message("rollout.analysis.metrics: min must not exceed max"))]
pub struct AnalysisMetric {
    /// Metric name, unique within the analysis.
    #[schemars(pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(min = 1, max = 63))]
    pub name: String,
    /// PromQL template returning one number. Placeholders: `{{variant}}` (`stable` or
    /// `candidate`), `{{namespace}}`, `{{name}}`, `{{interval}}`. Required by the threshold
    /// judge; a sequential metric reads counters instead (`sequential`).
    #[serde(default)]
    #[schemars(length(max = 4096))]
    pub query: String,
    /// How measurements are judged: `threshold` (each measurement against max, min or
    /// maxIncrease, with limits) or `sequential` (an anytime-valid test on counters of both
    /// variants since the step began; see `sequential`).
    #[serde(default)]
    pub judge: Judge,
    /// Settings of the sequential judge (defaults apply when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequential: Option<SequentialJudge>,
    /// Absolute upper bound for the candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Absolute lower bound for the candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest allowed increase of the candidate over stable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_increase: Option<RelativeThreshold>,
    /// Failed measurements tolerated per step before rolling back.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub failure_limit: i32,
    /// Inconclusive measurements (no data) tolerated per step.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub inconclusive_limit: i32,
    /// Consecutive query errors tolerated before rolling back.
    #[serde(default = "default_error_limit")]
    #[schemars(range(min = 0, max = 100))]
    pub consecutive_error_limit: i32,
    /// What an empty result or NaN means.
    #[serde(default)]
    pub no_data: NoDataPolicy,
    /// Measure and record this metric (status, Events, operator metrics) without letting it
    /// gate: a way to tune a threshold on live traffic before it can roll anything back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// The CEL condition "this metric is judged sequentially".
const SEQUENTIAL_RULE: &str = "(has(self.judge) && self.judge == 'sequential')";

/// How a metric's measurements are judged.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum Judge {
    /// Each measurement against the metric's thresholds; limits count the failures.
    #[default]
    Threshold,
    /// An anytime-valid sequential test of the candidate's bad-event rate against stable's.
    Sequential,
}

/// The sequential judge: the candidate's rate of bad events (errors, or requests slower than a
/// bucket) against stable's, from Prometheus counters accumulated since the step began. Its
/// false-rollback rate stays below `alpha` however often it is measured, so it needs no
/// failure limit.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.badQuery) || !has(self.slowerThan)")
    .message("sequential: give badQuery or slowerThan, not both"))]
pub struct SequentialJudge {
    /// The largest acceptable rate of rolling back a candidate that is no worse than stable.
    #[serde(default = "default_alpha")]
    #[schemars(range(min = 0.0001, max = 0.5))]
    pub alpha: f64,
    /// The smallest regression that matters: the candidate's bad-event rate over stable's
    /// (1.2 = 20 % more errors).
    #[serde(default = "default_min_effect")]
    #[schemars(range(min = 1.01, max = 10.0))]
    pub min_effect: f64,
    /// With a bound, a step passes only once its traffic rules out a regression of
    /// `minEffect` at this error rate (and follows `onInconclusive` if `count` measurements do
    /// not); without one, a step passes after `count` measurements with no evidence of a
    /// regression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0001, max = 0.5))]
    pub false_promotion: Option<f64>,
    /// PromQL template counting a variant's requests since the step began. Placeholders as in
    /// `query`, plus `{{window}}` (the time since the step began, e.g. `300s`). Default: the
    /// `http_requests_total` of the variant's Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub total_query: Option<String>,
    /// PromQL template counting a variant's bad events since the step began. Default: the
    /// 5xx answers of `http_requests_total`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub bad_query: Option<String>,
    /// Judge latency instead of errors: requests slower than this `le` bucket bound of
    /// `http_request_duration_seconds` (written as the bucket label is, e.g. `"0.5"`) are
    /// the bad events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]+(\.[0-9]+)?$"), length(max = 32))]
    pub slower_than: Option<String>,
}

impl Default for SequentialJudge {
    fn default() -> Self {
        Self {
            alpha: default_alpha(),
            min_effect: default_min_effect(),
            false_promotion: None,
            total_query: None,
            bad_query: None,
            slower_than: None,
        }
    }
}

fn default_alpha() -> f64 {
    0.05
}
fn default_min_effect() -> f64 {
    1.2
}

/// Increase relative to stable.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.ratio) != has(self.difference)")
    .message("maxIncrease needs exactly one of ratio or difference"))]
pub struct RelativeThreshold {
    /// Candidate may be at most `ratio` × stable (e.g. 1.2 = 20% worse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0))]
    pub ratio: Option<f64>,
    /// Candidate may be at most stable + `difference`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub difference: Option<f64>,
}

/// Meaning of "no data".
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum NoDataPolicy {
    /// Inconclusive: never a pass (counts against `inconclusiveLimit`).
    #[default]
    Inconclusive,
    /// A failed measurement.
    Fail,
}

fn default_true() -> bool {
    true
}
fn default_mirror_percent() -> i32 {
    100
}
fn default_shadow_duration() -> String {
    "10m".into()
}
fn default_prediction_psi() -> f64 {
    0.2
}
fn default_ratio() -> f64 {
    1.5
}
pub(crate) fn default_steps() -> Vec<i32> {
    vec![10, 50, 100]
}
fn default_step_duration() -> String {
    "5m".into()
}
fn default_progress_deadline() -> String {
    "30m".into()
}
fn default_interval() -> String {
    "1m".into()
}
fn default_count() -> i32 {
    3
}
fn default_error_limit() -> i32 {
    4
}
