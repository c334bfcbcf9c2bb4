//! Typed views of MLflow's REST objects.
//!
//! MLflow serialises protobuf messages to JSON: empty fields are omitted (so everything here
//! has a default), `version` is a string, int64 timestamps are numbers (older servers: strings),
//! and non-finite doubles are the strings `"NaN"`, `"Infinity"`, `"-Infinity"`. Lists of
//! `{key, value}` pairs become maps.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// A registered model (`registered-models/get`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RegisteredModel {
    pub name: String,
    pub description: String,
    #[serde(deserialize_with = "de_i64")]
    pub creation_timestamp: i64,
    #[serde(deserialize_with = "de_i64")]
    pub last_updated_timestamp: i64,
    /// alias → version.
    #[serde(deserialize_with = "de_aliases")]
    pub aliases: BTreeMap<String, u64>,
    #[serde(deserialize_with = "de_tags")]
    pub tags: BTreeMap<String, String>,
}

/// A registered model version (`model-versions/get`, `registered-models/alias`, search).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ModelVersion {
    pub name: String,
    #[serde(deserialize_with = "de_u64")]
    pub version: u64,
    #[serde(deserialize_with = "de_i64")]
    pub creation_timestamp: i64,
    #[serde(deserialize_with = "de_i64")]
    pub last_updated_timestamp: i64,
    pub description: String,
    /// Where the model files are: in MLflow 3.x a logged model (`models:/m-<id>`), older
    /// versions a run or artifact URI.
    pub source: String,
    pub run_id: String,
    /// The logged model id (MLflow 3.x), e.g. `m-0123…`.
    pub model_id: String,
    /// `READY`, `PENDING_REGISTRATION` or `FAILED_REGISTRATION`.
    pub status: String,
    pub status_message: String,
    pub current_stage: String,
    pub aliases: Vec<String>,
    #[serde(deserialize_with = "de_tags")]
    pub tags: BTreeMap<String, String>,
}

impl ModelVersion {
    /// `models:/<name>/<version>`.
    pub fn model_uri(&self) -> String {
        super::uri::model_version_uri(&self.name, self.version)
    }

    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    pub fn has_alias(&self, alias: &str) -> bool {
        self.aliases.iter().any(|a| a == alias)
    }
}

/// One page of `model-versions/search`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ModelVersionPage {
    pub model_versions: Vec<ModelVersion>,
    /// Empty when this is the last page.
    pub next_page_token: String,
}

/// An experiment (`experiments/get-by-name`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Experiment {
    pub experiment_id: String,
    pub name: String,
    pub artifact_location: String,
    /// `active` or `deleted`.
    pub lifecycle_stage: String,
    #[serde(deserialize_with = "de_i64")]
    pub creation_time: i64,
    #[serde(deserialize_with = "de_i64")]
    pub last_update_time: i64,
    #[serde(deserialize_with = "de_tags")]
    pub tags: BTreeMap<String, String>,
}

/// Status of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    #[default]
    Running,
    Scheduled,
    Finished,
    Failed,
    Killed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Scheduled => "SCHEDULED",
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }

    /// FINISHED, FAILED or KILLED.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Finished | RunStatus::Failed | RunStatus::Killed
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Metadata of a run.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RunInfo {
    pub run_id: String,
    pub run_name: String,
    pub experiment_id: String,
    pub user_id: String,
    pub status: RunStatus,
    #[serde(deserialize_with = "de_i64")]
    pub start_time: i64,
    /// 0 while the run is going on.
    #[serde(deserialize_with = "de_i64")]
    pub end_time: i64,
    /// e.g. `mlflow-artifacts:/<experiment>/<run>/artifacts`.
    pub artifact_uri: String,
    pub lifecycle_stage: String,
}

/// The latest value of one metric of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Metric {
    #[serde(deserialize_with = "de_f64")]
    pub value: f64,
    #[serde(deserialize_with = "de_i64")]
    pub timestamp: i64,
    #[serde(deserialize_with = "de_i64")]
    pub step: i64,
}

#[derive(Deserialize)]
struct RawMetric {
    key: String,
    #[serde(flatten)]
    metric: Metric,
}

/// Params, metrics (latest value per key, as `runs/get` returns them) and tags of a run.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RunData {
    #[serde(deserialize_with = "de_metrics")]
    pub metrics: BTreeMap<String, Metric>,
    #[serde(deserialize_with = "de_tags")]
    pub params: BTreeMap<String, String>,
    #[serde(deserialize_with = "de_tags")]
    pub tags: BTreeMap<String, String>,
}

/// A run (`runs/get`, `runs/create`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Run {
    pub info: RunInfo,
    pub data: RunData,
}

impl Run {
    pub fn id(&self) -> &str {
        &self.info.run_id
    }

    /// Latest value of a metric.
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.data.metrics.get(key).map(|m| m.value)
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.data.params.get(key).map(String::as_str)
    }

    pub fn tag(&self, key: &str) -> Option<&str> {
        self.data.tags.get(key).map(String::as_str)
    }
}

/// One entry of an artifact listing.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ArtifactFile {
    /// Relative to the listed directory.
    pub path: String,
    pub is_dir: bool,
    #[serde(deserialize_with = "de_i64")]
    pub file_size: i64,
}

// ---------------------------------------------------------------- lenient deserialisers

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    I(i64),
    U(u64),
    F(f64),
    S(String),
}

fn de_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    use serde::de::Error;
    match Option::<NumOrStr>::deserialize(d)? {
        None => Ok(0),
        Some(NumOrStr::I(i)) => Ok(i),
        Some(NumOrStr::U(u)) => i64::try_from(u).map_err(D::Error::custom),
        Some(NumOrStr::F(f)) => Ok(f as i64),
        Some(NumOrStr::S(s)) if s.is_empty() => Ok(0),
        Some(NumOrStr::S(s)) => s
            .parse()
            .map_err(|_| D::Error::custom(format!("expected an integer, got {s:?}"))),
    }
}

fn de_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    use serde::de::Error;
    let v = de_i64(d)?;
    u64::try_from(v).map_err(|_| D::Error::custom(format!("expected a version >= 0, got {v}")))
}

fn de_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    use serde::de::Error;
    match Option::<NumOrStr>::deserialize(d)? {
        None => Ok(0.0),
        Some(NumOrStr::I(i)) => Ok(i as f64),
        Some(NumOrStr::U(u)) => Ok(u as f64),
        Some(NumOrStr::F(f)) => Ok(f),
        Some(NumOrStr::S(s)) => match s.as_str() {
            "NaN" | "nan" => Ok(f64::NAN),
            "Infinity" | "inf" => Ok(f64::INFINITY),
            "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
            other => other
                .parse()
                .map_err(|_| D::Error::custom(format!("expected a number, got {other:?}"))),
        },
    }
}

#[derive(Deserialize)]
struct KeyValue {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
}

fn de_tags<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let list = Option::<Vec<KeyValue>>::deserialize(d)?.unwrap_or_default();
    Ok(list.into_iter().map(|kv| (kv.key, kv.value)).collect())
}

#[derive(Deserialize)]
struct RawAlias {
    alias: String,
    #[serde(deserialize_with = "de_u64", default)]
    version: u64,
}

fn de_aliases<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, u64>, D::Error> {
    let list = Option::<Vec<RawAlias>>::deserialize(d)?.unwrap_or_default();
    Ok(list.into_iter().map(|a| (a.alias, a.version)).collect())
}

fn de_metrics<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Metric>, D::Error> {
    let list = Option::<Vec<RawMetric>>::deserialize(d)?.unwrap_or_default();
    let mut out: BTreeMap<String, Metric> = BTreeMap::new();
    for m in list {
        // runs/get already returns one (the latest) value per key; keep the latest anyway.
        match out.get(&m.key) {
            Some(prev) if (prev.step, prev.timestamp) > (m.metric.step, m.metric.timestamp) => {}
            _ => {
                out.insert(m.key, m.metric);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_model_version_with_string_version_and_tags() {
        let json = r#"{"name":"iris","version":"3","creation_timestamp":1700000000000,
            "last_updated_timestamp":"1700000000001","current_stage":"None","source":"models:/m-abc",
            "run_id":"r1","status":"READY","aliases":["champion"],
            "tags":[{"key":"mlrollout.io/attempt","value":"a1"}]}"#;
        let mv: ModelVersion = serde_json::from_str(json).unwrap();
        assert_eq!(mv.version, 3);
        assert_eq!(mv.last_updated_timestamp, 1_700_000_000_001);
        assert_eq!(mv.tag("mlrollout.io/attempt"), Some("a1"));
        assert!(mv.has_alias("champion"));
        assert_eq!(mv.model_uri(), "models:/iris/3");
        assert!(mv.description.is_empty());
    }

    #[test]
    fn parses_run_with_nan_metric_and_missing_fields() {
        let json = r#"{"info":{"run_id":"r","status":"FINISHED","artifact_uri":"mlflow-artifacts:/1/r/artifacts"},
            "data":{"metrics":[{"key":"accuracy","value":0.9,"timestamp":5,"step":0},
                               {"key":"loss","value":"NaN","timestamp":5,"step":0}],
                    "params":[{"key":"seed","value":"1"}]}}"#;
        let run: Run = serde_json::from_str(json).unwrap();
        assert_eq!(run.info.status, RunStatus::Finished);
        assert_eq!(run.metric("accuracy"), Some(0.9));
        assert!(run.metric("loss").unwrap().is_nan());
        assert_eq!(run.param("seed"), Some("1"));
        assert!(run.data.tags.is_empty());
        assert_eq!(run.info.end_time, 0);
    }

    #[test]
    fn parses_registered_model_aliases() {
        let json = r#"{"name":"m","aliases":[{"alias":"champion","version":"2"}]}"#;
        let rm: RegisteredModel = serde_json::from_str(json).unwrap();
        assert_eq!(rm.aliases.get("champion"), Some(&2));
    }

    #[test]
    fn run_status_round_trip() {
        assert_eq!(
            serde_json::to_string(&RunStatus::Killed).unwrap(),
            "\"KILLED\""
        );
        assert!(RunStatus::Failed.is_terminal());
        assert!(!RunStatus::Running.is_terminal());
    }
}
