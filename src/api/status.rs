//! `status`: everything that must survive an operator restart, and what `kubectl` users read.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

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
    /// Human-readable summary of the last decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
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
    /// Name as shown in `kubectl get`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Stable => "Stable",
            Phase::Retraining => "Retraining",
            Phase::Evaluating => "Evaluating",
            Phase::Shadow => "Shadow",
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
    /// `ok`, `medium` or `high`.
    #[serde(default)]
    pub severity: String,
    /// Share of features that drifted.
    #[serde(default)]
    pub drifted_share: f64,
    /// Accuracy on labelled data, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Per-feature scores (the most drifted first, at most 50).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<FeatureDriftStatus>,
}

/// One feature's drift scores.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FeatureDriftStatus {
    /// Feature name.
    pub name: String,
    /// `ks` or `chi2`.
    pub test: String,
    /// Test statistic.
    pub statistic: f64,
    /// p-value after multiple-testing correction.
    pub p_value_adjusted: f64,
    /// Population Stability Index.
    pub psi: f64,
    /// `ok`, `medium` or `high`.
    pub severity: String,
}

/// One retraining attempt.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RetrainingAttempt {
    /// Sequence number (1, 2, ...), part of the Job name.
    pub number: i64,
    /// Lineage id passed to the Job and tagged on the version it registers.
    pub id: String,
    /// What started it: `schedule`, `newSamples`, `accuracy`, `drift`, `manual`, `advisor`.
    pub trigger: String,
    /// Name of the Job.
    pub job_name: String,
    /// Start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// End time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// `Running`, `Succeeded`, `Failed`, `TimedOut`.
    pub outcome: String,
    /// Version the Job registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_version: Option<String>,
    /// Details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A finished rollout.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRecord {
    /// Candidate version.
    pub candidate_version: String,
    /// Stable version when the rollout started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    /// `Promoted`, `RolledBack`, `Aborted`, `Rejected`.
    pub outcome: String,
    /// Reason code.
    pub reason: String,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
}
