//! `spec.retraining` and `spec.evaluation`: when a new model is trained and when it is better.

use std::time::Duration;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::duration::{DURATION_PATTERN, format_duration};

/// When and how a new model version is trained.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "(has(self.enabled) && !self.enabled) || (has(self.triggers) && (has(self.triggers.schedule) || has(self.triggers.newSamples) || has(self.triggers.accuracyBelow) || has(self.triggers.driftSeverity)))"
).message("retraining.triggers needs at least one of schedule, newSamples, accuracyBelow or driftSeverity when retraining is enabled"))]
pub struct RetrainingSpec {
    /// Launch retraining Jobs. Manual retraining (`mlrollout retrain`) also needs this.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// What starts a retraining attempt; any one trigger is enough.
    #[serde(default)]
    pub triggers: RetrainingTriggers,
    /// `batch/v1` JobSpec of the training Job. The operator adds lineage env vars
    /// (`MLROLLOUT_ATTEMPT_ID`, `MLFLOW_TRACKING_URI`, `MLROLLOUT_TRIGGER`, ...), owner reference
    /// and `activeDeadlineSeconds` from `timeout`. The Job must register the new version and tag
    /// it with `mlrollout.io/attempt=$MLROLLOUT_ATTEMPT_ID`.
    #[schemars(schema_with = "super::preserve_unknown_object")]
    pub job_template: serde_json::Value,
    /// Minimum time between two attempts. Triggers that fire meanwhile are recorded, not acted on.
    #[serde(default = "default_cooldown")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub cooldown: String,
    /// At most this many attempts per rolling 24 hours.
    #[serde(default = "default_max_attempts")]
    #[schemars(range(min = 1, max = 48))]
    pub max_attempts_per_day: i32,
    /// A training Job running longer than this is stopped and counts as failed.
    #[serde(default = "default_timeout")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub timeout: String,
}

impl RetrainingSpec {
    /// `timeout` when it is not set (also the limit of an attempt that still runs after the
    /// section was removed).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2 * 3600);
}

/// Retraining triggers (seed: time, data volume, accuracy, drift).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RetrainingTriggers {
    /// Cron schedule (5 fields, UTC), e.g. `0 3 * * 0` for weekly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 9, max = 128))]
    pub schedule: Option<String>,
    /// Retrain once this many new rows arrived since the last training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub new_samples: Option<i64>,
    /// Retrain when accuracy falls below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub accuracy_below: Option<f64>,
    /// Retrain when the dataset drift severity reaches this level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_severity: Option<TriggerSeverity>,
}

/// Severity that triggers retraining.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TriggerSeverity {
    /// Medium or high drift.
    Medium,
    /// High drift only.
    High,
}

/// How a candidate is judged against the champion before it sees traffic.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationSpec {
    /// MLflow run metric compared (logged by the training run of each version).
    #[serde(default = "default_metric")]
    #[schemars(length(min = 1, max = 250))]
    pub metric: String,
    /// Whether a higher or a lower value is better.
    #[serde(default)]
    pub direction: MetricDirection,
    /// The candidate must beat the champion by at least this much (absolute, in metric units).
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub min_improvement: f64,
}

impl Default for EvaluationSpec {
    fn default() -> Self {
        Self {
            metric: default_metric(),
            direction: MetricDirection::default(),
            min_improvement: 0.0,
        }
    }
}

/// Direction of a metric.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum MetricDirection {
    /// Larger values are better (accuracy, F1, AUC).
    #[default]
    HigherIsBetter,
    /// Smaller values are better (loss, RMSE).
    LowerIsBetter,
}

fn default_true() -> bool {
    true
}
fn default_cooldown() -> String {
    "6h".into()
}
fn default_max_attempts() -> i32 {
    3
}
fn default_timeout() -> String {
    format_duration(RetrainingSpec::DEFAULT_TIMEOUT)
}
fn default_metric() -> String {
    "accuracy".into()
}
