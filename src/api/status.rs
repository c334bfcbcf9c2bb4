//! `status`: everything that must survive an operator restart, and what `kubectl` users read.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::vocabulary::{
    AttemptOutcome, CandidateSource, DriftTest, PauseReason, RegistryOp, RolloutOutcome,
    RolloutReason, Severity, Trigger, Urgency, Verdict,
};

/// Observed state of a ModelDeployment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentStatus {
    /// Lifecycle phase.
    #[serde(default)]
    pub phase: Phase,
    /// Set while a person paused the rollout (`mlrollout pause`); the phase does not advance.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Why it is paused: `manual` (the `mlrollout.io/pause` annotation) or
    /// `inconclusiveAnalysis` (resume with `mlrollout resume`, or promote or abort).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<PauseReason>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions (`Ready`, `Progressing`, `DriftChecked`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// MLflow version served as stable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_version: Option<String>,
    /// `models:/<name>/<version>` URI of the stable version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_model_uri: Option<String>,
    /// MLflow version under evaluation, shadow or canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_version: Option<String>,
    /// Percentage of live traffic on the candidate.
    #[serde(default)]
    pub canary_weight: i32,
    /// Percentage of live traffic mirrored to the candidate.
    #[serde(default)]
    pub mirror_percent: i32,
    /// Index into `spec.rollout.steps` while progressing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<i32>,
    /// When the current phase (or step) started; progress deadlines count from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_started_at: Option<Time>,
    /// Last drift check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftSummary>,
    /// Retraining attempts, newest last (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retraining_attempts: Vec<RetrainingAttempt>,
    /// Finished rollouts, newest last (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RolloutRecord>,
    /// Where the current candidate came from: `retraining` (a Job registered it) or `registry`
    /// (the alias or the pinned version moved to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_source: Option<CandidateSource>,
    /// Evaluation of the current candidate against the champion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<EvaluationStatus>,
    /// Analysis of the current shadow phase or canary step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStatus>,
    /// A retraining trigger that fired while the cooldown or the daily budget held it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred_trigger: Option<DeferredTrigger>,
    /// Current-data row count when the last training started (for the `newSamples` trigger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_at_last_training: Option<i64>,
    /// Last training start, or when retraining was first configured: the cron schedule counts
    /// from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_anchor: Option<Time>,
    /// When the next drift check is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_drift_check_at: Option<Time>,
    /// Drift checks failed in a row (backoff).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drift_check_failures: i32,
    /// Manual requests (annotation → value) already acted on; a request is new when its
    /// annotation value differs.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub handled_requests: std::collections::BTreeMap<String, String>,
    /// Last answer of the advisor (when `spec.advisor.enabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advisor: Option<AdvisorStatus>,
    /// MLflow writes (aliases, tags) not yet confirmed; retried until MLflow agrees.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_registry_writes: Vec<RegistryWrite>,
    /// Human-readable summary of the last decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// After a promotion with `rollout.postPromotion` or `rollout.scaleDownDelay`: the
    /// previous version, still running warm on the stable Deployment until the window ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion: Option<PostPromotionStatus>,
    /// After a rollback or abort with `rollout.abortScaleDownDelay`: the candidate, kept
    /// running without traffic for debugging until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_candidate: Option<RetainedCandidate>,
    /// The split the route carries under `spec.rollout.dynamicStableScale`: it trails
    /// `canaryWeight` while the variant that gains traffic scales up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routed_traffic: Option<RoutedTraffic>,
    /// The experiment (A/B phase) of the current or last candidate, when the spec has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<super::experiment::ExperimentStatus>,
}

/// The window after a promotion in which the previous version stays warm.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PostPromotionStatus {
    /// The version promoted over, running on the stable Deployment while the window lasts.
    pub previous_version: String,
    /// The post-promotion analysis runs until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_until: Option<Time>,
    /// The previous version is scaled down (and the stable Deployment takes the promoted
    /// version) after then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_until: Option<Time>,
}

/// A rolled-back or aborted candidate kept for debugging.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RetainedCandidate {
    /// Its version (the candidate Deployment keeps running it, with no traffic).
    pub version: String,
    /// It is removed after then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Time>,
}

/// What the route carries while `spec.rollout.dynamicStableScale` scales the variants.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RoutedTraffic {
    /// The candidate the route sends traffic to (after a rollback, the old candidate keeps its
    /// share until stable has the ready replicas to take it back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_version: Option<String>,
    /// Percent of live requests the route sends to the candidate.
    #[serde(default)]
    pub candidate_weight: i32,
    /// Since when the route has trailed the lifecycle's weight (a variant scaling up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<Time>,
    /// What the route waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

/// The advisor's last answer, or why it was ignored.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AdvisorStatus {
    /// Digest of the drift report it answered (an unchanged report is not sent again).
    pub digest: String,
    /// When it answered (or failed to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Time>,
    /// Its recommendation, when the answer was valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs_retrain: Option<bool>,
    /// How soon the advisor wants retraining.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urgency: Option<Urgency>,
    /// Its reason (advice only; never an instruction to the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why the answer was ignored (the rule-based decision stood).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Condition reason for the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<crate::api::conditions::Reason>,
}

/// Candidate vs champion on the evaluation metric.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationStatus {
    /// Metric compared.
    pub metric: String,
    /// Candidate's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_value: Option<f64>,
    /// Champion's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion_value: Option<f64>,
    /// Verdict.
    pub passed: bool,
    /// Why.
    pub reason: String,
}

/// Measurements of the current shadow phase or canary step.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStatus {
    /// Measurements taken in this phase/step.
    #[serde(default)]
    pub measurements: i32,
    /// When the last measurement was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_measured_at: Option<Time>,
    /// Per-metric counters and recent values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricStatus>,
}

/// One metric's counters in the current phase/step.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MetricStatus {
    /// Metric name.
    pub name: String,
    /// Passed measurements: only these count towards `analysis.count` (errors and missing data
    /// never do).
    #[serde(default)]
    pub passed: i32,
    /// Failed measurements.
    #[serde(default)]
    pub failed: i32,
    /// Inconclusive measurements (no data).
    #[serde(default)]
    pub inconclusive: i32,
    /// Query errors in a row.
    #[serde(default)]
    pub consecutive_errors: i32,
    /// Last measurements, newest last (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<MeasurementRecord>,
    /// A dry-run metric: measured and recorded, never gating.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// One measurement of one metric.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MeasurementRecord {
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Time>,
    /// The measurement's verdict.
    pub verdict: Verdict,
    /// Candidate's value (absent: no data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<f64>,
    /// Stable's value (absent: no data or not needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<f64>,
    /// The threshold applied, e.g. `<= 0.05` or `<= 1.5 x stable`.
    #[serde(default)]
    pub threshold: String,
}

/// A trigger held back by the cooldown or the daily budget.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeferredTrigger {
    /// The trigger.
    pub trigger: Trigger,
    /// When it fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Time>,
    /// Why it was not acted on.
    pub reason: String,
}

/// An MLflow write the operator owes the registry.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RegistryWrite {
    /// What to write.
    pub op: RegistryOp,
    /// Model version (for `setAlias` and `setTag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Alias name or tag key.
    pub key: String,
    /// Tag value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Lifecycle phase of a ModelDeployment.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash,
)]
pub enum Phase {
    /// Not serving yet (spec invalid or the model not resolved).
    #[default]
    Pending,
    /// The stable version serves all traffic; drift is watched.
    Stable,
    /// A training Job is running.
    Retraining,
    /// The new version is compared with the champion's MLflow metrics.
    Evaluating,
    /// The candidate receives mirrored traffic.
    Shadow,
    /// Requests matching `spec.rollout.experiment` go to the candidate (A/B).
    Experimenting,
    /// Traffic shifts to the candidate step by step.
    Progressing,
    /// The candidate became the stable version.
    Promoted,
    /// The candidate was rolled back; stable serves all traffic.
    RolledBack,
    /// The last attempt failed (training, evaluation or a deadline); stable serves all traffic.
    Failed,
}

impl Phase {
    /// Every phase, in lifecycle order.
    pub const ALL: [Phase; 10] = [
        Phase::Pending,
        Phase::Stable,
        Phase::Retraining,
        Phase::Evaluating,
        Phase::Shadow,
        Phase::Experimenting,
        Phase::Progressing,
        Phase::Promoted,
        Phase::RolledBack,
        Phase::Failed,
    ];

    /// Name as shown in `kubectl get`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Stable => "Stable",
            Phase::Retraining => "Retraining",
            Phase::Evaluating => "Evaluating",
            Phase::Shadow => "Shadow",
            Phase::Experimenting => "Experimenting",
            Phase::Progressing => "Progressing",
            Phase::Promoted => "Promoted",
            Phase::RolledBack => "RolledBack",
            Phase::Failed => "Failed",
        }
    }
}

/// Summary of the last drift check.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DriftSummary {
    /// When the check ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<Time>,
    /// Reference rows compared.
    #[serde(default)]
    pub reference_rows: i64,
    /// Current rows compared.
    #[serde(default)]
    pub current_rows: i64,
    /// Dataset verdict.
    #[serde(default)]
    pub drift_detected: bool,
    /// Dataset severity.
    #[serde(default)]
    pub severity: Severity,
    /// Share of features that drifted.
    #[serde(default)]
    pub drifted_share: f64,
    /// Accuracy on labelled data, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// How the labels met the captured predictions (`performance.labelled.join`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_join: Option<LabelJoinStatus>,
    /// Per-feature scores (the most drifted first, at most 50).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<FeatureDriftStatus>,
}

/// Labels joined with captured predictions by request id, counted.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LabelJoinStatus {
    /// Captured predictions joined with a label: the rows accuracy is computed on.
    #[serde(default)]
    pub joined: i64,
    /// Captured predictions no label names (yet): not counted.
    #[serde(default)]
    pub unlabelled_predictions: i64,
    /// Labels naming no captured prediction: not counted.
    #[serde(default)]
    pub unmatched_labels: i64,
    /// Labels replaced by a later label of the same request id.
    #[serde(default)]
    pub duplicate_labels: i64,
    /// Captured predictions replaced by a newer capture of the same request id.
    #[serde(default)]
    pub duplicate_predictions: i64,
}

/// One feature's drift scores.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FeatureDriftStatus {
    /// Feature name.
    pub name: String,
    /// The test used.
    pub test: DriftTest,
    /// Test statistic (absent when the data could not give one: see `insufficientData`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistic: Option<f64>,
    /// p-value after multiple-testing correction (absent: see `insufficientData`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value_adjusted: Option<f64>,
    /// Population Stability Index (absent: see `insufficientData`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi: Option<f64>,
    /// Set when a statistic, p-value or PSI could not be computed (too few values, a constant
    /// column, NaN): the missing number is left out, never written as 0 or 1.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insufficient_data: bool,
    /// Feature severity.
    pub severity: Severity,
}

/// One retraining attempt.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetrainingAttempt {
    /// Sequence number (1, 2, ...), part of the Job name.
    pub number: i64,
    /// Lineage id passed to the Job and tagged on the version it registers.
    pub id: String,
    /// What started it.
    pub trigger: Trigger,
    /// Name of the Job.
    pub job_name: String,
    /// Start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// End time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// How it ended (`Running` while it runs).
    pub outcome: AttemptOutcome,
    /// Version the Job registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_version: Option<String>,
    /// Details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A finished rollout.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRecord {
    /// Candidate version.
    pub candidate_version: String,
    /// Stable version when the rollout started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    /// How it ended.
    pub outcome: RolloutOutcome,
    /// Why.
    pub reason: RolloutReason,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
}
