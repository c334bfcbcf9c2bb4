//! `spec.drift` and `spec.performance`: what "the world moved" means for this model.

use std::time::Duration;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::duration::DURATION_PATTERN;

/// Data drift: the live feature distribution compared with the training (reference) data.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!(has(self.interval) && has(self.schedule))")
    .message("set either drift.interval or drift.schedule (cron), not both"))]
pub struct DriftSpec {
    /// The data the served model was trained on. `file://`, plain paths, `http(s)://`,
    /// `runs:/<run_id>/<path>`, `mlflow-artifacts:/...` and object-store (`s3://`, `gs://`,
    /// `az://`, with `spec.storage`) URIs are supported, and directories, globs and
    /// object-store prefixes (ending in `/`) of CSV/Parquet files read as one dataset; or a
    /// reference profile (a `.json` file from `mlrollout drift profile`), read instead of the
    /// raw data.
    pub reference: DataSource,
    /// Where live feature data lands.
    pub current: CurrentData,
    /// Features to compare. Empty means every column present in both datasets, with the kind
    /// inferred (text is categorical, numbers are numerical).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub features: Vec<FeatureSpec>,
    /// Columns never compared (ids, timestamps, labels).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub ignore_columns: Vec<String>,
    /// Decision thresholds.
    #[serde(default)]
    pub thresholds: DriftThresholds,
    /// Check every this long (default `1h` when neither interval nor schedule is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub interval: Option<String>,
    /// Cron schedule (5 fields, UTC) for the check, instead of an interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 9, max = 128))]
    pub schedule: Option<String>,
}

impl DriftSpec {
    /// Time between checks when `interval` is not set (with a `schedule`, it still bounds the
    /// backoff between retries of a failed check).
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
}

/// A dataset location.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DataSource {
    /// Dataset URI.
    #[schemars(length(min = 1, max = 2048))]
    pub uri: String,
    /// File format; inferred from the extension when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DataFormat>,
}

/// The live data and the window of it that is compared.
///
/// `uri` (or `capture`) may name one file or a collection read as one dataset: a directory, a
/// glob (`/data/live/*.parquet`) or an object-store prefix (a URI ending in `/`). Of a
/// collection, `lastRows` keeps the newest rows and `lastDuration` the newest files, by each
/// file's time: the window start in a capture file's name, else its modification time.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.window) || has(self.timestampColumn)")
    .message("drift.current.timestampColumn is required when drift.current.window is set"))]
#[x_kube(validation = kube::core::Rule::new("has(self.uri) != has(self.capture)")
    .message("set exactly one of drift.current.uri and drift.current.capture"))]
#[x_kube(validation = kube::core::Rule::new("!(has(self.lastRows) && has(self.lastDuration))")
    .message("set either drift.current.lastRows or drift.current.lastDuration, not both"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.window) || !(has(self.lastRows) || has(self.lastDuration))")
    .message("drift.current.window (rows by timestampColumn) cannot be combined with lastRows or lastDuration (files by time)"))]
pub struct CurrentData {
    /// Dataset URI (same schemes as the reference), or a directory, a glob or an object-store
    /// prefix ending in `/` of CSV/Parquet files read as one dataset. Empty when `capture` is
    /// set instead.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(min = 1, max = 2048))]
    pub uri: String,
    /// The traffic the proxy captured for a variant of this resource (under
    /// `spec.serving.proxy.capture.uri`), instead of `uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureSource>,
    /// File format; inferred from the extension when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DataFormat>,
    /// Only rows newer than this (relative to the check time) are compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub window: Option<String>,
    /// Column holding each row's timestamp (RFC 3339 or Unix seconds); needed for `window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_column: Option<String>,
    /// Compare only the newest N rows: the newest files first, then the last rows of the
    /// oldest file needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000_000))]
    pub last_rows: Option<i64>,
    /// Compare only the files whose time is within this long before the check (e.g. `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub last_duration: Option<String>,
}

impl CurrentData {
    /// `uri`, when it is set (else `capture` is).
    pub fn uri(&self) -> Option<&str> {
        Some(self.uri.as_str()).filter(|u| !u.is_empty())
    }
}

/// Captured traffic as the current data.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CaptureSource {
    /// Whose traffic: the stable variant's (the usual choice) or the candidate's.
    pub variant: CaptureVariant,
}

/// A variant whose traffic is captured.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CaptureVariant {
    Stable,
    Candidate,
}

impl CaptureVariant {
    /// The folder name of the variant in the capture layout.
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureVariant::Stable => "stable",
            CaptureVariant::Candidate => "candidate",
        }
    }
}

/// Supported file formats.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// Apache Parquet.
    Parquet,
}

/// One compared feature.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FeatureSpec {
    /// Column name.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// `numerical` (KS test) or `categorical` (chi-square test); inferred when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FeatureKind>,
}

/// Statistical kind of a feature.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FeatureKind {
    /// Continuous or ordinal numbers: Kolmogorov–Smirnov and quantile-binned PSI.
    Numerical,
    /// Labels: chi-square test of homogeneity and PSI over categories.
    Categorical,
}

/// When a feature, and the dataset, count as drifted.
///
/// A feature drifts only when its shift is statistically significant after false-discovery-rate
/// control across features AND at least `minEffectSize` large; PSI then grades the severity.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("(has(self.psiWarning) ? self.psiWarning : 0.2) <= (has(self.psiHigh) ? self.psiHigh : 0.25)")
    .message("drift.thresholds.psiWarning must not exceed drift.thresholds.psiHigh"))]
pub struct DriftThresholds {
    /// PSI at or above which a significant shift is at least `medium` (seed: 0.2).
    #[serde(default = "default_psi_warning")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub psi_warning: f64,
    /// PSI at or above which a significant shift is `high` (seed: 0.25).
    #[serde(default = "default_psi_high")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub psi_high: f64,
    /// Significance level of the KS and chi-square tests, after multiple-testing correction.
    #[serde(default = "default_alpha")]
    #[x_kube(validation = kube::core::Rule::new("self > 0.0 && self < 1.0")
        .message("drift.thresholds.alpha must be between 0 and 1 (exclusive)"))]
    pub alpha: f64,
    /// Multiple-testing correction across the features of one check.
    #[serde(default)]
    pub multiple_testing: MultipleTesting,
    /// Smallest KS statistic D that counts as a real shift for numerical features. Keeps huge
    /// samples from flagging meaningless shifts.
    #[serde(default = "default_min_effect")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_ks_statistic: f64,
    /// Smallest Cramér's V that counts as a real shift for categorical features.
    #[serde(default = "default_min_effect")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_cramers_v: f64,
    /// Share of drifted features at which the whole dataset counts as drifted (a single `high`
    /// feature always does).
    #[serde(default = "default_drift_share")]
    #[x_kube(validation = kube::core::Rule::new("self > 0.0 && self <= 1.0")
        .message("drift.thresholds.driftShare must be in (0, 1]"))]
    pub drift_share: f64,
    /// Number of quantile bins for numerical PSI (seed: 10).
    #[serde(default = "default_bins")]
    #[schemars(range(min = 2, max = 100))]
    pub bins: i32,
    /// A numerical feature with at most this many distinct values in the reference (a flag, a
    /// count, a constant) is tested and scored as categories of values (chi-square, PSI over
    /// values): quantile bins collapse on it and would score a shift differently in each
    /// direction. 0 turns this off.
    #[serde(default = "default_discrete_max_values")]
    #[schemars(range(min = 0, max = 1000))]
    pub discrete_max_values: i32,
}

impl DriftThresholds {
    /// Default of `discreteMaxValues`: as many values as the default number of PSI bins.
    pub const DEFAULT_DISCRETE_MAX_VALUES: usize = 10;
}

impl Default for DriftThresholds {
    fn default() -> Self {
        Self {
            psi_warning: default_psi_warning(),
            psi_high: default_psi_high(),
            alpha: default_alpha(),
            multiple_testing: MultipleTesting::default(),
            min_ks_statistic: default_min_effect(),
            min_cramers_v: default_min_effect(),
            drift_share: default_drift_share(),
            bins: default_bins(),
            discrete_max_values: default_discrete_max_values(),
        }
    }
}

/// Multiple-testing correction.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum MultipleTesting {
    /// Benjamini–Hochberg false-discovery-rate control.
    #[default]
    BenjaminiHochberg,
    /// Bonferroni family-wise error control (stricter).
    Bonferroni,
    /// No correction (the seed's behaviour; noisy with many features).
    None,
}

/// Concept drift: is the model still right?
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!(has(self.labelled) && has(self.accuracyQuery))")
    .message("set either performance.labelled or performance.accuracyQuery, not both"))]
pub struct PerformanceSpec {
    /// Labelled live data: accuracy is computed from a prediction column and a label column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labelled: Option<LabelledData>,
    /// PromQL returning the current accuracy as one number (labels joined by your pipeline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub accuracy_query: Option<String>,
    /// Accuracy below this is concept drift (seed: 0.85).
    #[serde(default = "default_accuracy_threshold")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub accuracy_threshold: f64,
    /// Compare the distribution of predictions (reference vs current) as well.
    #[serde(default)]
    pub prediction_distribution: PredictionDistribution,
}

/// Labelled data for accuracy: one table holding both the prediction and the label, or (with
/// `join`) a feedback table of request ids and labels, joined with the predictions the proxy
/// captured.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.join) || (has(self.join.idColumn) ? self.join.idColumn : 'request_id') != (has(self.labelColumn) ? self.labelColumn : 'label')")
    .message("performance.labelled.join.idColumn and performance.labelled.labelColumn must differ"))]
pub struct LabelledData {
    /// Dataset URI (same schemes as the reference, and directories, globs and object-store
    /// prefixes read as one dataset). With `join`: the feedback table.
    #[schemars(length(min = 1, max = 2048))]
    pub uri: String,
    /// File format; inferred from the extension when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DataFormat>,
    /// Column with the model's prediction (with `join`: of the captured traffic, where the
    /// proxy writes `prediction`).
    #[serde(default = "default_prediction_column")]
    pub prediction_column: String,
    /// Column with the true label.
    #[serde(default = "default_label_column")]
    pub label_column: String,
    /// Join the labels of `uri` with the captured predictions by request id, instead of
    /// reading the prediction from `uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<LabelJoin>,
}

/// Labels arriving later, joined with the predictions the proxy captured by request id.
///
/// A captured row's id is the request's `x-request-id` (or the id the proxy made) for a
/// one-row request, and `<id>#<row>` (from 0) for each row of a multi-row request; a label
/// names the same. Captured rows without a label are not counted; labels without a captured
/// prediction are counted in the report, never an error. Of several captures of one id the
/// newest counts, of several labels the last row of the feedback table.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!(has(self.lastRows) && has(self.lastDuration))")
    .message("set either performance.labelled.join.lastRows or performance.labelled.join.lastDuration, not both"))]
pub struct LabelJoin {
    /// Whose captured predictions: the stable variant's (the usual choice) or the candidate's
    /// (under `spec.serving.proxy.capture.uri`).
    pub capture: CaptureSource,
    /// Column of the feedback table holding the request id.
    #[serde(default = "default_id_column")]
    #[schemars(length(min = 1, max = 256))]
    pub id_column: String,
    /// Join only the newest N captured rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000_000))]
    pub last_rows: Option<i64>,
    /// Join only the captured windows of this long before the check (e.g. `168h`): labels
    /// for older predictions then count as unmatched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub last_duration: Option<String>,
}

/// Prediction-distribution shift check.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PredictionDistribution {
    /// Run the check.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Column holding predictions in both the reference and the current data.
    #[serde(default = "default_prediction_column")]
    pub column: String,
}

impl Default for PredictionDistribution {
    fn default() -> Self {
        Self {
            enabled: true,
            column: default_prediction_column(),
        }
    }
}

fn default_psi_warning() -> f64 {
    0.2
}
fn default_psi_high() -> f64 {
    0.25
}
fn default_alpha() -> f64 {
    0.05
}
fn default_min_effect() -> f64 {
    0.1
}
fn default_drift_share() -> f64 {
    0.5
}
fn default_bins() -> i32 {
    10
}
fn default_discrete_max_values() -> i32 {
    DriftThresholds::DEFAULT_DISCRETE_MAX_VALUES as i32
}
fn default_accuracy_threshold() -> f64 {
    0.85
}
fn default_prediction_column() -> String {
    "prediction".into()
}
fn default_label_column() -> String {
    "label".into()
}
fn default_id_column() -> String {
    crate::storage::layout::REQUEST_ID_COLUMN.into()
}
fn default_true() -> bool {
    true
}
