//! The scenario format of `mlrollout simulate`: a recorded (or imagined) incident, told as
//! facts by time.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A story to replay through the decision core.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    /// Length of the story.
    pub duration_seconds: u64,
    /// Virtual-clock step.
    #[serde(default = "default_tick")]
    pub tick_seconds: u64,
    /// The version serving at t = 0 and its training run's metrics.
    pub stable: VersionFacts,
    /// Drift verdicts by time (the latest at or before "now" is what a check sees).
    #[serde(default)]
    pub drift: Vec<DriftAt>,
    /// Accuracy on labelled data by time.
    #[serde(default)]
    pub accuracy: Vec<ValueAt>,
    /// Rows in the current data by time (for the `newSamples` trigger).
    #[serde(default)]
    pub samples: Vec<CountAt>,
    /// What every retraining Job does.
    #[serde(default)]
    pub training: Option<Training>,
    /// Seconds a Deployment needs to become ready with a new version.
    #[serde(default)]
    pub ready_seconds: u64,
    /// Analysis metric values by time and variant; `value: null` (or no entry) is no data,
    /// `error: true` a failed query.
    #[serde(default)]
    pub metrics: Vec<MetricAt>,
    /// Annotations set (or, with `value: null`, removed) by time.
    #[serde(default)]
    pub annotations: Vec<AnnotationAt>,
    /// Aliases moved by hand in the registry, by time.
    #[serde(default)]
    pub registry: Vec<AliasAt>,
    /// Registry outages: `[from, to)` in seconds.
    #[serde(default)]
    pub registry_outages: Vec<[u64; 2]>,
}

fn default_tick() -> u64 {
    30
}

/// A model version and its training run's metrics.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VersionFacts {
    pub version: String,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DriftAt {
    pub at: u64,
    pub severity: crate::api::Severity,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValueAt {
    pub at: u64,
    pub value: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CountAt {
    pub at: u64,
    pub count: i64,
}

/// Outcome of every retraining Job.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Training {
    pub duration_seconds: u64,
    pub outcome: TrainingOutcome,
    /// The version a succeeded Job registers (attempt n > 1 registers `version + n - 1`
    /// unless `versions` lists them).
    pub candidate: Option<VersionFacts>,
    /// Per-attempt candidates, in attempt order (overrides `candidate`).
    #[serde(default)]
    pub candidates: Vec<VersionFacts>,
    /// Register the version without the lineage tag (a broken training script).
    #[serde(default)]
    pub untagged: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainingOutcome {
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    Stable,
    Candidate,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricAt {
    pub at: u64,
    pub variant: Variant,
    pub name: String,
    #[serde(default)]
    pub value: Option<f64>,
    #[serde(default)]
    pub error: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnnotationAt {
    pub at: u64,
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AliasAt {
    pub at: u64,
    #[serde(default = "default_alias")]
    pub alias: String,
    pub version: String,
    /// Metrics of that version's run (registered if new).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

fn default_alias() -> String {
    "champion".into()
}

/// Latest entry at or before `now`.
pub fn latest<T, F: Fn(&T) -> u64>(entries: &[T], now: u64, at: F) -> Option<&T> {
    entries
        .iter()
        .filter(|e| at(e) <= now)
        .max_by_key(|e| at(e))
}
