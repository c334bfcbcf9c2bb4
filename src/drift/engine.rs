//! From a `ModelDeployment`'s drift section to a verdict.
//!
//! 1. [`DriftConfig::from_spec`] turns `spec.drift` (+ `spec.performance`) into the statistics
//!    [`DriftPolicy`], the PSI parameters, the feature list and the multiple-testing method.
//! 2. The reference is read once per model version and URI and kept as a
//!    [`PreparedReference`] (sorted numeric samples, PSI edges, category counts) in the
//!    [`DriftEngine`]'s cache under a [`ReferenceKey`].
//! 3. Each check reads only the current columns it needs, with the kinds fixed by the
//!    reference, compares every feature in parallel ([`compare`]) and applies the decision
//!    rule of [`crate::drift::stats`] ([`evaluate`]).
//! 4. Concept drift: the prediction column's distribution (KS + PSI, reference vs current) and,
//!    with labelled data, [`accuracy`] (+ precision and recall for binary labels).
//!
//! `multipleTesting: bonferroni` is applied here: the stats policy knows only
//! Benjamini–Hochberg on/off, so the p-values are multiplied by the number of evaluated
//! features (capped at 1) before the rule runs with BH off, and the raw p-values are put back
//! in the verdicts afterwards (`p_value_adjusted` holds the Bonferroni value).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::api::{DataFormat, DriftSpec, MultipleTesting, PerformanceSpec};
use crate::drift::data::{
    Column, ColumnKind, ColumnRequest, DataError, DataSource, FetchContext, Payload, Side, Table,
    column_names, detect_format, read_table,
};
use crate::drift::stats::{
    CategoricalReference, ComparisonStatus, DatasetVerdict, DriftPolicy, FeatureComparison,
    FeatureVerdict, NumericReference, PsiParams, Severity, compare_categorical, compare_numeric,
    evaluate,
};

/// What can stop a check.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriftError {
    #[error(transparent)]
    Data(#[from] DataError),
    /// Thresholds or features that cannot be used.
    #[error("invalid drift configuration: {0}")]
    InvalidConfig(String),
    /// No column is present in both datasets.
    #[error("no feature to compare: {0}")]
    NoFeatures(String),
}

impl DriftError {
    /// Stable PascalCase reason (a condition reason).
    pub fn reason(&self) -> &'static str {
        match self {
            DriftError::Data(e) => e.reason(),
            DriftError::InvalidConfig(_) => "InvalidDriftConfig",
            DriftError::NoFeatures(_) => "NoFeatures",
        }
    }
}

/// One feature to compare; `kind: None` infers it from the reference data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureSelection {
    pub name: String,
    pub kind: Option<ColumnKind>,
}

/// The resolved configuration of a check.
#[derive(Clone, Debug, PartialEq)]
pub struct DriftConfig {
    pub policy: DriftPolicy,
    pub multiple_testing: MultipleTesting,
    pub psi: PsiParams,
    /// Features to compare; empty means every column present in both datasets except
    /// `ignore_columns` and the prediction column.
    pub features: Vec<FeatureSelection>,
    /// Kinds forced on columns when `features` is empty (e.g. `--categorical`); with explicit
    /// features they override the features' kinds.
    pub forced_kinds: Vec<(String, ColumnKind)>,
    pub ignore_columns: Vec<String>,
    /// Compare this column's distribution (reference vs current) as the prediction shift.
    pub prediction_column: Option<String>,
    /// Only current rows newer than this (`spec.drift.current.window`) are compared.
    pub window: Option<CurrentWindow>,
}

/// The window of current rows that is compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentWindow {
    pub duration: Duration,
    /// Column with each row's timestamp: RFC 3339 text, or Unix seconds (numbers above 1e11
    /// are taken as milliseconds).
    pub timestamp_column: String,
}

impl Default for DriftConfig {
    /// The defaults of `spec.drift` (BH at 0.05, effect sizes 0.1, PSI 0.2/0.25, share 0.5,
    /// 10 bins) and the prediction-distribution check on column `prediction`.
    fn default() -> Self {
        Self {
            policy: DriftPolicy::default(),
            multiple_testing: MultipleTesting::BenjaminiHochberg,
            psi: PsiParams::default(),
            features: Vec::new(),
            forced_kinds: Vec::new(),
            ignore_columns: Vec::new(),
            prediction_column: Some("prediction".into()),
            window: None,
        }
    }
}

impl DriftConfig {
    /// From the resource's drift section (and performance section, for the prediction column).
    pub fn from_spec(
        spec: &DriftSpec,
        performance: Option<&PerformanceSpec>,
    ) -> Result<Self, DriftError> {
        let t = &spec.thresholds;
        let policy = DriftPolicy {
            alpha: t.alpha,
            fdr: t.multiple_testing == MultipleTesting::BenjaminiHochberg,
            min_effect_numeric: t.min_ks_statistic,
            min_effect_categorical: t.min_cramers_v,
            psi_warning: t.psi_warning,
            psi_high: t.psi_high,
            drift_share: t.drift_share,
        };
        let bins = usize::try_from(t.bins)
            .ok()
            .filter(|b| (1..=1000).contains(b))
            .ok_or_else(|| {
                DriftError::InvalidConfig(format!(
                    "drift.thresholds.bins must be >= 1, got {}",
                    t.bins
                ))
            })?;
        let mut ignore = spec.ignore_columns.clone();
        if let Some(ts) = &spec.current.timestamp_column {
            ignore.push(ts.clone());
        }
        let window = match (&spec.current.window, &spec.current.timestamp_column) {
            (None, _) => None,
            (Some(w), Some(ts)) => Some(CurrentWindow {
                duration: crate::api::duration::parse_duration(w).map_err(|e| {
                    DriftError::InvalidConfig(format!("drift.current.window '{w}': {e}"))
                })?,
                timestamp_column: ts.clone(),
            }),
            (Some(_), None) => {
                return Err(DriftError::InvalidConfig(
                    "drift.current.timestampColumn is required when drift.current.window is set"
                        .into(),
                ));
            }
        };
        let config = Self {
            window,
            policy,
            multiple_testing: t.multiple_testing,
            psi: PsiParams {
                bins,
                ..PsiParams::default()
            },
            features: spec
                .features
                .iter()
                .map(|f| FeatureSelection {
                    name: f.name.clone(),
                    kind: f.kind.map(ColumnKind::from),
                })
                .collect(),
            forced_kinds: Vec::new(),
            ignore_columns: ignore,
            prediction_column: performance.and_then(|p| {
                p.prediction_distribution
                    .enabled
                    .then(|| p.prediction_distribution.column.clone())
            }),
        };
        config.validate()?;
        Ok(config)
    }

    /// Check the thresholds and the feature list.
    pub fn validate(&self) -> Result<(), DriftError> {
        self.policy
            .validate()
            .map_err(|e| DriftError::InvalidConfig(e.to_string()))?;
        self.psi
            .validate()
            .map_err(|e| DriftError::InvalidConfig(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for f in &self.features {
            if f.name.is_empty() {
                return Err(DriftError::InvalidConfig(
                    "a feature has an empty name".into(),
                ));
            }
            if !seen.insert(f.name.as_str()) {
                return Err(DriftError::InvalidConfig(format!(
                    "feature '{}' is listed twice",
                    f.name
                )));
            }
        }
        Ok(())
    }

    fn forced(&self, name: &str) -> Option<ColumnKind> {
        self.forced_kinds
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, k)| *k)
    }

    /// A stable text of everything that changes the prepared reference (for cache keys).
    pub fn fingerprint(&self) -> String {
        let mut s = format!("bins={};smoothing={};", self.psi.bins, self.psi.smoothing);
        for f in &self.features {
            s.push_str(&format!("f:{}:{:?};", f.name, f.kind));
        }
        for (n, k) in &self.forced_kinds {
            s.push_str(&format!("k:{n}:{k:?};"));
        }
        for i in &self.ignore_columns {
            s.push_str(&format!("i:{i};"));
        }
        s.push_str(&format!("p:{:?}", self.prediction_column));
        s
    }
}

/// Where a dataset is.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetLocation {
    pub uri: String,
    pub format: Option<DataFormat>,
}

/// Labelled live data for accuracy.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledLocation {
    pub location: DatasetLocation,
    pub prediction_column: String,
    pub label_column: String,
    pub accuracy_threshold: Option<f64>,
}

/// Everything one check needs.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckRequest {
    pub reference: DatasetLocation,
    pub current: DatasetLocation,
    pub labelled: Option<LabelledLocation>,
    pub config: DriftConfig,
    /// Part of the reference cache key: a new model version re-prepares its reference.
    pub model_version: Option<String>,
    /// The check time for the current window (`None`: now).
    pub now: Option<SystemTime>,
}

impl CheckRequest {
    /// The check a resource asks for.
    pub fn from_spec(
        drift: &DriftSpec,
        performance: Option<&PerformanceSpec>,
        model_version: Option<String>,
    ) -> Result<Self, DriftError> {
        Ok(Self {
            reference: DatasetLocation {
                uri: drift.reference.uri.clone(),
                format: drift.reference.format,
            },
            current: DatasetLocation {
                uri: drift.current.uri.clone(),
                format: drift.current.format,
            },
            labelled: performance.and_then(|p| {
                p.labelled.as_ref().map(|l| LabelledLocation {
                    location: DatasetLocation {
                        uri: l.uri.clone(),
                        format: l.format,
                    },
                    prediction_column: l.prediction_column.clone(),
                    label_column: l.label_column.clone(),
                    accuracy_threshold: Some(p.accuracy_threshold),
                })
            }),
            config: DriftConfig::from_spec(drift, performance)?,
            model_version,
            now: None,
        })
    }

    /// The cache key of this request's prepared reference.
    pub fn reference_key(&self) -> ReferenceKey {
        ReferenceKey {
            model_version: self.model_version.clone(),
            uri: self.reference.uri.clone(),
            format: self.reference.format.map(|f| format!("{f:?}")),
            config: self.config.fingerprint(),
        }
    }
}

/// Identifies a prepared reference: the model version, the reference URI and format, and
/// the configuration that shaped it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReferenceKey {
    pub model_version: Option<String>,
    pub uri: String,
    pub format: Option<String>,
    pub config: String,
}

/// A feature's prepared reference.
#[derive(Clone, Debug, PartialEq)]
pub enum FeatureReference {
    Numeric(NumericReference),
    Categorical(CategoricalReference),
}

impl FeatureReference {
    pub fn kind(&self) -> ColumnKind {
        match self {
            FeatureReference::Numeric(_) => ColumnKind::Numerical,
            FeatureReference::Categorical(_) => ColumnKind::Categorical,
        }
    }

    fn prepare(column: Column, psi: PsiParams) -> Result<Self, DriftError> {
        let invalid = |e: crate::drift::stats::StatsError| DriftError::InvalidConfig(e.to_string());
        Ok(match column {
            Column::Numeric(v) => {
                FeatureReference::Numeric(NumericReference::new(v, psi).map_err(invalid)?)
            }
            Column::Categorical(c) => FeatureReference::Categorical(
                CategoricalReference::new(c.counts(), psi.smoothing).map_err(invalid)?,
            ),
        })
    }

    fn compare(&self, column: Column) -> FeatureComparison {
        match (self, column) {
            (FeatureReference::Numeric(r), Column::Numeric(v)) => {
                FeatureComparison::Numeric(compare_numeric(r, v))
            }
            (FeatureReference::Categorical(r), Column::Categorical(c)) => {
                FeatureComparison::Categorical(compare_categorical(r, &c.counts()))
            }
            // the current data is read with the reference's kinds; a mismatch cannot happen,
            // but if it did the feature has no comparable data rather than a panic
            (FeatureReference::Numeric(r), Column::Categorical(c)) => {
                FeatureComparison::Numeric(compare_numeric(r, vec![f64::NAN; c.len()]))
            }
            (FeatureReference::Categorical(r), Column::Numeric(v)) => {
                let mut counts = crate::drift::stats::CategoricalCounts::new();
                counts.add_missing(v.len() as u64);
                FeatureComparison::Categorical(compare_categorical(r, &counts))
            }
        }
    }
}

/// A reference dataset prepared once and reused by every check of the same key.
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedReference {
    key: ReferenceKey,
    rows: usize,
    /// Compared features, in order.
    features: Vec<(String, FeatureReference)>,
    prediction: Option<(String, FeatureReference)>,
    /// Whether `features` was the explicit list (missing current columns are errors) or every
    /// reference column (missing current columns are skipped).
    explicit: bool,
}

impl PreparedReference {
    pub fn key(&self) -> &ReferenceKey {
        &self.key
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn features(&self) -> impl Iterator<Item = (&str, &FeatureReference)> {
        self.features.iter().map(|(n, r)| (n.as_str(), r))
    }

    pub fn prediction(&self) -> Option<(&str, &FeatureReference)> {
        self.prediction.as_ref().map(|(n, r)| (n.as_str(), r))
    }

    /// The columns to read from the current data (`available`: its column names).
    pub fn current_requests(&self, available: &[String]) -> Result<Vec<ColumnRequest>, DriftError> {
        requests_for_current(
            self.features.iter().map(|(n, r)| (n.as_str(), r.kind())),
            self.prediction
                .as_ref()
                .map(|(n, r)| (n.as_str(), r.kind())),
            self.explicit,
            available,
        )
    }
}

/// The current columns to read for these reference features (with the kinds the reference
/// fixed); a missing explicit feature is an error, a missing inferred one is skipped.
fn requests_for_current<'a>(
    features: impl Iterator<Item = (&'a str, ColumnKind)>,
    prediction: Option<(&'a str, ColumnKind)>,
    explicit: bool,
    available: &[String],
) -> Result<Vec<ColumnRequest>, DriftError> {
    let mut out = Vec::new();
    for (name, kind) in features {
        if available.iter().any(|a| a == name) {
            out.push(ColumnRequest::new(name, Some(kind)));
        } else if explicit {
            return Err(DataError::MissingColumn {
                column: name.to_owned(),
                side: Side::Current,
            }
            .into());
        }
    }
    if let Some((name, kind)) = prediction
        && available.iter().any(|a| a == name)
    {
        out.push(ColumnRequest::new(name, Some(kind)));
    }
    if out.is_empty() {
        return Err(DriftError::NoFeatures(
            "the reference and current data have no column in common".into(),
        ));
    }
    Ok(out)
}

/// The current columns to read for a reference table not prepared yet (so that the current
/// data can be read while the reference is being prepared).
fn requests_from_reference_table(
    table: &Table,
    config: &DriftConfig,
    available: &[String],
) -> Result<Vec<ColumnRequest>, DriftError> {
    let is_prediction = |name: &str| {
        config.prediction_column.as_deref() == Some(name)
            && !config.features.iter().any(|f| f.name == name)
    };
    let columns = table.columns();
    requests_for_current(
        columns
            .iter()
            .filter(|c| !is_prediction(&c.name))
            .map(|c| (c.name.as_str(), c.data.kind())),
        columns
            .iter()
            .find(|c| is_prediction(&c.name))
            .map(|c| (c.name.as_str(), c.data.kind())),
        !config.features.is_empty(),
        available,
    )
}

/// The columns to read from the reference (`available`: its column names).
pub fn reference_requests(
    available: &[String],
    config: &DriftConfig,
) -> Result<Vec<ColumnRequest>, DriftError> {
    let mut out: Vec<ColumnRequest> = Vec::new();
    let has = |n: &str| available.iter().any(|a| a == n);
    for (name, _) in &config.forced_kinds {
        if !has(name) {
            return Err(DataError::MissingColumn {
                column: name.clone(),
                side: Side::Reference,
            }
            .into());
        }
    }
    if config.features.is_empty() {
        for name in available {
            let ignored = config.ignore_columns.iter().any(|i| i == name);
            let prediction = config.prediction_column.as_deref() == Some(name.as_str());
            if !ignored && !prediction && !out.iter().any(|r| r.name == *name) {
                out.push(ColumnRequest::new(name.clone(), config.forced(name)));
            }
        }
    } else {
        for f in &config.features {
            if !has(&f.name) {
                return Err(DataError::MissingColumn {
                    column: f.name.clone(),
                    side: Side::Reference,
                }
                .into());
            }
            out.push(ColumnRequest::new(
                f.name.clone(),
                config.forced(&f.name).or(f.kind),
            ));
        }
    }
    if let Some(p) = &config.prediction_column
        && has(p)
        && !out.iter().any(|r| r.name == *p)
    {
        out.push(ColumnRequest::new(p.clone(), config.forced(p)));
    }
    Ok(out)
}

/// Run `f` over `items` on up to `available_parallelism` threads (work-stealing by index),
/// results in input order.
fn par_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let n = items.len();
    let workers = crate::drift::data::workers_for(n);
    if workers <= 1 {
        return items.into_iter().map(f).collect();
    }
    let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let results: Vec<Mutex<Option<R>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let item = slots[i].lock().ok().and_then(|mut g| g.take());
                    if let Some(item) = item {
                        let r = f(item);
                        if let Ok(mut g) = results[i].lock() {
                            *g = Some(r);
                        }
                    }
                }
            });
        }
    });
    results
        .into_iter()
        .filter_map(|m| m.into_inner().ok().flatten())
        .collect()
}

/// Prepare a reference table (read with [`reference_requests`]): every feature in parallel.
pub fn prepare_reference(
    table: Table,
    config: &DriftConfig,
    key: ReferenceKey,
) -> Result<PreparedReference, DriftError> {
    let rows = table.rows();
    let psi = config.psi;
    let prediction_name = config.prediction_column.clone();
    let mut prediction_column = None;
    let mut items = Vec::new();
    for c in table.into_columns() {
        let is_prediction = prediction_name.as_deref() == Some(c.name.as_str())
            && !config.features.iter().any(|f| f.name == c.name);
        if is_prediction {
            prediction_column = Some(c);
        } else {
            items.push(c);
        }
    }
    if let Some(p) = prediction_column {
        items.push(p); // prepared last, split off below
    }
    let prepared = par_map(items, |c| {
        FeatureReference::prepare(c.data, psi).map(|r| (c.name, r))
    });
    let mut features = Vec::with_capacity(prepared.len());
    for p in prepared {
        features.push(p?);
    }
    let prediction = match (&prediction_name, features.last()) {
        (Some(p), Some((n, _))) if n == p && !config.features.iter().any(|f| f.name == *p) => {
            features.pop()
        }
        _ => None,
    };
    if features.is_empty() {
        return Err(DriftError::NoFeatures(
            "the reference has no column to compare (all ignored?)".into(),
        ));
    }
    Ok(PreparedReference {
        key,
        rows,
        features,
        prediction,
        explicit: !config.features.is_empty(),
    })
}

/// Bonferroni: p × m (capped at 1) where m is the number of evaluable features.
fn bonferroni_scale(comparisons: &mut [(String, FeatureComparison)]) -> Vec<Option<f64>> {
    let evaluable = |c: &FeatureComparison| match c {
        FeatureComparison::Numeric(n) => {
            n.ks.filter(|k| {
                n.status == ComparisonStatus::Ok && k.p_value.is_finite() && k.statistic.is_finite()
            })
            .is_some()
        }
        FeatureComparison::Categorical(c) => c
            .chi2
            .filter(|k| {
                c.status == ComparisonStatus::Ok
                    && k.p_value.is_finite()
                    && k.statistic.is_finite()
                    && k.cramers_v.is_finite()
            })
            .is_some(),
    };
    let m = comparisons.iter().filter(|(_, c)| evaluable(c)).count() as f64;
    comparisons
        .iter_mut()
        .map(|(_, c)| {
            if !evaluable(c) {
                return None;
            }
            let p = match c {
                FeatureComparison::Numeric(n) => n.ks.as_mut().map(|k| &mut k.p_value),
                FeatureComparison::Categorical(c) => c.chi2.as_mut().map(|k| &mut k.p_value),
            }?;
            let raw = *p;
            *p = (raw * m).min(1.0);
            Some(raw)
        })
        .collect()
}

/// Apply the decision rule with the configured multiple-testing correction.
pub fn decide(
    mut comparisons: Vec<(String, FeatureComparison)>,
    config: &DriftConfig,
) -> DatasetVerdict {
    let mut policy = config.policy;
    policy.fdr = config.multiple_testing == MultipleTesting::BenjaminiHochberg;
    let raw = if config.multiple_testing == MultipleTesting::Bonferroni {
        Some(bonferroni_scale(&mut comparisons))
    } else {
        None
    };
    let mut verdict = evaluate(comparisons.iter().map(|(n, c)| (n.as_str(), c)), &policy);
    if let Some(raw) = raw {
        for (v, r) in verdict.features.iter_mut().zip(raw) {
            if v.status == ComparisonStatus::Ok {
                v.p_value_adjusted = v.p_value;
                v.p_value = r;
            }
        }
    }
    verdict
}

/// Wall-clock time of each stage of a check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub fetch_s: f64,
    pub read_reference_s: f64,
    pub prepare_s: f64,
    pub read_current_s: f64,
    pub compare_s: f64,
    pub accuracy_s: f64,
    pub total_s: f64,
    pub reference_cached: bool,
}

/// The result of one check; serialized as the `mlrollout drift` JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub reference_rows: u64,
    pub current_rows: u64,
    pub drift_detected: bool,
    pub severity: Severity,
    /// `insufficient_data` when no feature could be evaluated.
    pub status: ComparisonStatus,
    pub drifted_share: f64,
    pub n_features: usize,
    pub n_evaluated: usize,
    pub n_drifted: usize,
    pub multiple_testing: MultipleTesting,
    pub features: Vec<FeatureVerdict>,
    /// Reference columns absent from the current data (only when features are inferred).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_columns: Vec<String>,
    /// Shift of the prediction column's distribution (KS + PSI), judged by the same rule as a
    /// single feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_drift: Option<FeatureVerdict>,
    /// Accuracy on labelled live data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<AccuracyReport>,
    /// The current window, when `drift.current.window` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowReport>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(skip)]
    pub timings: Timings,
}

/// Which current rows the window kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    pub timestamp_column: String,
    pub window_seconds: f64,
    /// Rows at or after this instant (RFC 3339) were compared.
    pub since: String,
    /// Current rows before the window was applied.
    pub rows_total: u64,
    /// Rows without a readable timestamp (never in the window).
    pub rows_without_timestamp: u64,
}

/// Seconds since the Unix epoch of every row of a timestamp column (`None`: missing or not a
/// timestamp). Text is RFC 3339 (each distinct value parsed once) or a number of seconds;
/// numbers above 1e11 are milliseconds.
pub fn timestamp_seconds(column: &Column) -> Vec<Option<f64>> {
    let from_number = |x: f64| {
        if !x.is_finite() {
            None
        } else if x.abs() > 1e11 {
            Some(x / 1000.0)
        } else {
            Some(x)
        }
    };
    match column {
        Column::Numeric(v) => v.iter().map(|&x| from_number(x)).collect(),
        Column::Categorical(c) => {
            let parsed: Vec<Option<f64>> = c
                .categories
                .iter()
                .map(|s| match s.parse::<jiff::Timestamp>() {
                    Ok(t) => Some(t.as_millisecond() as f64 / 1000.0),
                    Err(_) => s.trim().parse::<f64>().ok().and_then(from_number),
                })
                .collect();
            c.codes
                .iter()
                .map(|&code| parsed.get(code as usize).copied().flatten())
                .collect()
        }
    }
}

/// Drop the current rows outside the window; the timestamp column is removed from the table
/// unless it is also compared.
fn apply_window(
    table: &mut Table,
    window: &CurrentWindow,
    now: SystemTime,
    keep_column: bool,
) -> WindowReport {
    let now_s = match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    let since = now_s - window.duration.as_secs_f64();
    let seconds = match table.column(&window.timestamp_column) {
        Some(c) => timestamp_seconds(c),
        None => vec![None; table.rows()],
    };
    let keep: Vec<bool> = seconds
        .iter()
        .map(|t| t.is_some_and(|t| t >= since))
        .collect();
    let rows_total = table.rows() as u64;
    let rows_without_timestamp = seconds.iter().filter(|t| t.is_none()).count() as u64;
    if !keep_column {
        table.take(&window.timestamp_column);
    }
    table.retain_rows(&keep);
    let since_text = jiff::Timestamp::from_millisecond((since * 1000.0) as i64)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("{since}s after the epoch"));
    WindowReport {
        timestamp_column: window.timestamp_column.clone(),
        window_seconds: window.duration.as_secs_f64(),
        since: since_text,
        rows_total,
        rows_without_timestamp,
    }
}

/// Compare a current table (read with [`PreparedReference::current_requests`]) with a prepared
/// reference: every feature in parallel, then the decision rule.
pub fn compare(
    prepared: &PreparedReference,
    mut current: Table,
    config: &DriftConfig,
) -> DriftReport {
    let current_rows = current.rows();
    let mut skipped = Vec::new();
    let mut work: Vec<(&str, &FeatureReference, Column)> = Vec::new();
    for (name, r) in &prepared.features {
        match current.take(name) {
            Some(col) => work.push((name.as_str(), r, col)),
            None => skipped.push(name.clone()),
        }
    }
    let prediction_work = prepared
        .prediction
        .as_ref()
        .and_then(|(name, r)| current.take(name).map(|col| (name.as_str(), r, col)));
    let has_prediction = prediction_work.is_some();
    work.extend(prediction_work);
    let mut comparisons: Vec<(String, FeatureComparison)> =
        par_map(work, |(name, r, col)| (name.to_owned(), r.compare(col)));
    let prediction_cmp = if has_prediction {
        comparisons.pop()
    } else {
        None
    };
    let verdict = decide(comparisons, config);
    let prediction_drift = prediction_cmp.map(|(name, cmp)| {
        let mut single = config.clone();
        single.multiple_testing = MultipleTesting::None;
        let mut v = decide(vec![(name, cmp)], &single);
        v.features.remove(0)
    });
    let mut notes = Vec::new();
    if let Some(p) = &config.prediction_column {
        if prepared.prediction.is_none() && prepared.features.iter().all(|(n, _)| n != p) {
            notes.push(format!(
                "prediction column '{p}' is not in the reference data: no prediction-distribution check"
            ));
        } else if prepared.prediction.is_some() && !has_prediction {
            notes.push(format!(
                "prediction column '{p}' is not in the current data: no prediction-distribution check"
            ));
        }
    }
    DriftReport {
        reference_rows: prepared.rows as u64,
        current_rows: current_rows as u64,
        drift_detected: verdict.drift_detected,
        severity: verdict.severity,
        status: verdict.status,
        drifted_share: verdict.drifted_share,
        n_features: verdict.n_features,
        n_evaluated: verdict.n_evaluated,
        n_drifted: verdict.n_drifted,
        multiple_testing: config.multiple_testing,
        features: verdict.features,
        skipped_columns: skipped,
        prediction_drift,
        performance: None,
        window: None,
        notes,
        timings: Timings::default(),
    }
}

/// Precision and recall of the positive class of a binary problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BinaryMetrics {
    pub positive_label: String,
    /// `None` when nothing was predicted positive.
    pub precision: Option<f64>,
    /// `None` when no label is positive.
    pub recall: Option<f64>,
    pub true_positives: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
    pub true_negatives: u64,
}

/// Accuracy of predictions against labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccuracyReport {
    pub prediction_column: String,
    pub label_column: String,
    /// Rows with both a prediction and a label.
    pub rows: u64,
    /// Rows missing either.
    pub missing: u64,
    /// `None` when no row has both.
    pub accuracy: Option<f64>,
    /// How predictions were turned into classes: `threshold_0.5` (scores in [0, 1] against
    /// 0/1 labels) or `exact`.
    pub decision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<BinaryMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_threshold: Option<f64>,
    /// Accuracy below the threshold: concept drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below_threshold: Option<bool>,
}

fn class_text(x: f64) -> String {
    format!("{x}")
}

/// Classes of one column as text (`None` = missing).
fn classes(column: &Column, threshold: bool) -> Vec<Option<String>> {
    match column {
        Column::Numeric(v) => v
            .iter()
            .map(|&x| {
                if !x.is_finite() {
                    None
                } else if threshold {
                    Some(if x >= 0.5 { "1" } else { "0" }.to_owned())
                } else {
                    Some(class_text(x))
                }
            })
            .collect(),
        Column::Categorical(c) => (0..c.len())
            .map(|i| c.value(i).map(str::to_owned))
            .collect(),
    }
}

const POSITIVE_NAMES: [&str; 8] = ["1", "true", "yes", "y", "positive", "pos", "fraud", "t"];

/// Accuracy of `prediction` against `label` in a labelled table, with precision and recall
/// when there are exactly two classes. A numeric prediction column holding scores in [0, 1]
/// (not all integers) against labels in {0, 1} is thresholded at 0.5; otherwise predictions
/// and labels are compared as values (`1.0` equals `1`).
pub fn accuracy(table: &Table, prediction: &str, label: &str) -> Result<AccuracyReport, DataError> {
    let missing_col = |c: &str| DataError::MissingColumn {
        column: c.to_owned(),
        side: Side::Labelled,
    };
    let p = table
        .column(prediction)
        .ok_or_else(|| missing_col(prediction))?;
    let l = table.column(label).ok_or_else(|| missing_col(label))?;
    let threshold = match (p, l) {
        (Column::Numeric(pv), Column::Numeric(lv)) => {
            let labels01 = lv
                .iter()
                .filter(|x| x.is_finite())
                .all(|&x| x == 0.0 || x == 1.0);
            let scores = pv
                .iter()
                .filter(|x| x.is_finite())
                .all(|&x| (0.0..=1.0).contains(&x));
            let fractional = pv.iter().any(|x| x.is_finite() && x.fract() != 0.0);
            labels01 && scores && fractional
        }
        _ => false,
    };
    let pc = classes(p, threshold);
    let lc = classes(l, false);
    let (mut rows, mut missing, mut correct) = (0u64, 0u64, 0u64);
    let mut distinct: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    for (a, b) in pc.iter().zip(&lc) {
        match (a, b) {
            (Some(a), Some(b)) => {
                rows += 1;
                if a == b {
                    correct += 1;
                }
                if distinct.len() <= 2 {
                    distinct.insert(a);
                    distinct.insert(b);
                }
            }
            _ => missing += 1,
        }
    }
    let binary = (distinct.len() == 2).then(|| {
        let positive = distinct
            .iter()
            .find(|d| POSITIVE_NAMES.iter().any(|p| p.eq_ignore_ascii_case(d)))
            .or(distinct.iter().next_back())
            .map(|s| (*s).to_owned())
            .unwrap_or_default();
        let (mut tp, mut fp, mut fneg, mut tn) = (0u64, 0u64, 0u64, 0u64);
        for (a, b) in pc.iter().zip(&lc) {
            if let (Some(a), Some(b)) = (a, b) {
                match (*a == positive, *b == positive) {
                    (true, true) => tp += 1,
                    (true, false) => fp += 1,
                    (false, true) => fneg += 1,
                    (false, false) => tn += 1,
                }
            }
        }
        let ratio = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        BinaryMetrics {
            positive_label: positive,
            precision: ratio(tp, tp + fp),
            recall: ratio(tp, tp + fneg),
            true_positives: tp,
            false_positives: fp,
            false_negatives: fneg,
            true_negatives: tn,
        }
    });
    Ok(AccuracyReport {
        prediction_column: prediction.to_owned(),
        label_column: label.to_owned(),
        rows,
        missing,
        accuracy: (rows > 0).then(|| correct as f64 / rows as f64),
        decision: if threshold { "threshold_0.5" } else { "exact" }.to_owned(),
        binary,
        accuracy_threshold: None,
        below_threshold: None,
    })
}

/// Runs checks and keeps prepared references between them.
#[derive(Debug)]
pub struct DriftEngine {
    fetch: FetchContext,
    cache: Mutex<Vec<(ReferenceKey, Arc<PreparedReference>)>>,
    capacity: usize,
}

struct Resolved {
    source: DataSource,
    format: DataFormat,
}

fn resolve(loc: &DatasetLocation, side: Side) -> Result<Resolved, DataError> {
    let source = DataSource::parse(&loc.uri, side)?;
    let format = detect_format(&source, loc.format, side)?;
    Ok(Resolved { source, format })
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl DriftEngine {
    /// An engine keeping up to 16 prepared references.
    pub fn new(fetch: FetchContext) -> Self {
        Self {
            fetch,
            cache: Mutex::new(Vec::new()),
            capacity: 16,
        }
    }

    pub fn with_cache_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// The prepared reference of `key`, if cached.
    pub fn cached(&self, key: &ReferenceKey) -> Option<Arc<PreparedReference>> {
        let cache = self.cache.lock().ok()?;
        cache.iter().find(|(k, _)| k == key).map(|(_, p)| p.clone())
    }

    /// Drop a cached reference (e.g. when the reference data was rewritten in place).
    pub fn invalidate(&self, key: &ReferenceKey) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|(k, _)| k != key);
        }
    }

    fn remember(&self, prepared: Arc<PreparedReference>) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|(k, _)| k != prepared.key());
            if cache.len() >= self.capacity {
                cache.remove(0);
            }
            cache.push((prepared.key().clone(), prepared));
        }
    }

    /// Run one check: fetch what is needed, prepare the reference unless cached, compare the
    /// current data, compute accuracy on labelled data. CPU work runs on the blocking pool.
    pub async fn check(&self, request: &CheckRequest) -> Result<DriftReport, DriftError> {
        let started = Instant::now();
        request.config.validate()?;
        let reference = resolve(&request.reference, Side::Reference)?;
        let current = resolve(&request.current, Side::Current)?;
        let labelled = match &request.labelled {
            Some(l) => Some((resolve(&l.location, Side::Labelled)?, l.clone())),
            None => None,
        };
        let key = request.reference_key();
        let cached = self.cached(&key);

        let fetch_ref = async {
            match &cached {
                Some(_) => Ok(None),
                None => reference
                    .source
                    .fetch(&self.fetch, Side::Reference)
                    .await
                    .map(Some),
            }
        };
        let fetch_cur = current.source.fetch(&self.fetch, Side::Current);
        let fetch_lab = async {
            match &labelled {
                Some((r, _)) => r.source.fetch(&self.fetch, Side::Labelled).await.map(Some),
                None => Ok(None),
            }
        };
        let (ref_payload, cur_payload, lab_payload) =
            futures::future::join3(fetch_ref, fetch_cur, fetch_lab).await;
        let (ref_payload, cur_payload, lab_payload) = (ref_payload?, cur_payload?, lab_payload?);
        let fetch_s = secs(started.elapsed());

        let job = CpuJob {
            now: request.now.unwrap_or_else(SystemTime::now),
            config: request.config.clone(),
            key,
            cached,
            reference: ref_payload.map(|p| (p, reference.format)),
            current: (cur_payload, current.format),
            labelled: match (lab_payload, labelled) {
                (Some(p), Some((r, l))) => Some((p, r.format, l)),
                _ => None,
            },
        };
        let (prepared, mut report) = match tokio::task::spawn_blocking(move || job.run()).await {
            Ok(r) => r?,
            Err(e) => {
                return Err(DriftError::InvalidConfig(format!(
                    "internal error: the drift computation did not finish: {e}"
                )));
            }
        };
        self.remember(prepared);
        report.timings.fetch_s = fetch_s;
        report.timings.total_s = secs(started.elapsed());
        Ok(report)
    }

    /// [`check`](Self::check) for local files only, without an async runtime (the CLI's path
    /// when no dataset is remote). Remote sources give [`DataError::InvalidUri`].
    pub fn check_local(&self, request: &CheckRequest) -> Result<DriftReport, DriftError> {
        let started = Instant::now();
        request.config.validate()?;
        let local =
            |loc: &DatasetLocation, side: Side| -> Result<(Payload, DataFormat), DataError> {
                let r = resolve(loc, side)?;
                match r.source.fetch_local(side) {
                    Some(p) => Ok((p?, r.format)),
                    None => Err(DataError::InvalidUri {
                        side,
                        uri: loc.uri.clone(),
                        reason: "a remote dataset needs the async check".into(),
                    }),
                }
            };
        let key = request.reference_key();
        let cached = self.cached(&key);
        let reference = match &cached {
            Some(_) => None,
            None => Some(local(&request.reference, Side::Reference)?),
        };
        let current = local(&request.current, Side::Current)?;
        let labelled = match &request.labelled {
            Some(l) => {
                let (p, f) = local(&l.location, Side::Labelled)?;
                Some((p, f, l.clone()))
            }
            None => None,
        };
        let job = CpuJob {
            now: request.now.unwrap_or_else(SystemTime::now),
            config: request.config.clone(),
            key,
            cached,
            reference,
            current,
            labelled,
        };
        let (prepared, mut report) = job.run()?;
        self.remember(prepared);
        report.timings.total_s = secs(started.elapsed());
        Ok(report)
    }
}

/// The CPU-bound part of a check (reading, preparing, comparing).
struct CpuJob {
    now: SystemTime,
    config: DriftConfig,
    key: ReferenceKey,
    cached: Option<Arc<PreparedReference>>,
    reference: Option<(Payload, DataFormat)>,
    current: (Payload, DataFormat),
    labelled: Option<(Payload, DataFormat, LabelledLocation)>,
}

impl CpuJob {
    fn run(self) -> Result<(Arc<PreparedReference>, DriftReport), DriftError> {
        let CpuJob {
            now,
            config,
            key,
            cached,
            reference,
            current,
            labelled,
        } = self;
        let mut timings = Timings {
            reference_cached: cached.is_some(),
            ..Timings::default()
        };
        let (cur_payload, cur_format) = current;
        let cur_names = column_names(&cur_payload, cur_format, Side::Current)?;

        // The reference table (unless cached) is read while the labelled data is; then the
        // current data is read while the reference is prepared.
        let read_reference = || -> Result<Option<(Table, f64)>, DriftError> {
            if cached.is_some() {
                return Ok(None);
            }
            let Some((payload, format)) = &reference else {
                return Err(DriftError::InvalidConfig(
                    "internal error: no reference data".into(),
                ));
            };
            let t0 = Instant::now();
            let names = column_names(payload, *format, Side::Reference)?;
            let requests = reference_requests(&names, &config)?;
            if config.features.is_empty() && !requests.iter().any(|r| cur_names.contains(&r.name)) {
                return Err(DriftError::NoFeatures(
                    "the reference and current data have no column in common".into(),
                ));
            }
            let table = read_table(payload, *format, &requests, Side::Reference)?;
            Ok(Some((table, secs(t0.elapsed()))))
        };
        let read_labelled = || -> Option<Result<(AccuracyReport, f64), DataError>> {
            let (payload, format, loc) = labelled.as_ref()?;
            let t0 = Instant::now();
            let r = read_table(
                payload,
                *format,
                &[
                    ColumnRequest::new(loc.prediction_column.clone(), None),
                    ColumnRequest::new(loc.label_column.clone(), None),
                ],
                Side::Labelled,
            )
            .and_then(|t| accuracy(&t, &loc.prediction_column, &loc.label_column))
            .map(|mut a| {
                if let (Some(th), Some(acc)) = (loc.accuracy_threshold, a.accuracy) {
                    a.accuracy_threshold = Some(th);
                    a.below_threshold = Some(acc < th);
                }
                (a, secs(t0.elapsed()))
            });
            Some(r)
        };
        let internal = |what: &str| {
            DriftError::Data(DataError::malformed(
                Side::Current,
                "",
                format!("internal error while {what}"),
            ))
        };

        let (reference_table, labelled_result) = if labelled.is_none() {
            (read_reference(), None)
        } else {
            std::thread::scope(|s| {
                let lab = s.spawn(read_labelled);
                let r = read_reference();
                let lab = lab.join().unwrap_or_else(|_| {
                    Some(Err(DataError::malformed(
                        Side::Labelled,
                        "",
                        "internal error while reading",
                    )))
                });
                (r, lab)
            })
        };
        let read_current = |requests: &[ColumnRequest]| -> Result<(Table, f64), DriftError> {
            let t0 = Instant::now();
            let mut requests = requests.to_vec();
            if let Some(w) = &config.window
                && !requests.iter().any(|r| r.name == w.timestamp_column)
            {
                requests.push(ColumnRequest::new(w.timestamp_column.clone(), None));
            }
            let t = read_table(&cur_payload, cur_format, &requests, Side::Current)?;
            Ok((t, secs(t0.elapsed())))
        };
        let (prepared, (table, read_current_s)) = match (reference_table?, &cached) {
            (None, Some(p)) => {
                let requests = p.current_requests(&cur_names)?;
                (p.clone(), read_current(&requests)?)
            }
            (Some((ref_table, read_s)), _) => {
                timings.read_reference_s = read_s;
                let requests = requests_from_reference_table(&ref_table, &config, &cur_names)?;
                let (prepared, current) = std::thread::scope(|s| {
                    let cur = s.spawn(|| read_current(&requests));
                    let t1 = Instant::now();
                    let prepared = prepare_reference(ref_table, &config, key.clone())
                        .map(|p| (Arc::new(p), secs(t1.elapsed())));
                    let cur = cur
                        .join()
                        .unwrap_or_else(|_| Err(internal("reading the current data")));
                    (prepared, cur)
                });
                let (prepared, prepare_s) = prepared?;
                timings.prepare_s = prepare_s;
                (prepared, current?)
            }
            (None, None) => return Err(internal("preparing the reference")),
        };
        timings.read_current_s = read_current_s;
        let mut table = table;
        let window = config.window.as_ref().map(|w| {
            let compared = prepared.features().any(|(n, _)| n == w.timestamp_column)
                || prepared
                    .prediction()
                    .is_some_and(|(n, _)| n == w.timestamp_column);
            apply_window(&mut table, w, now, compared)
        });
        let t1 = Instant::now();
        let mut report = compare(&prepared, table, &config);
        report.window = window;
        timings.compare_s = secs(t1.elapsed());
        if let Some(r) = labelled_result {
            let (acc, s) = r?;
            timings.accuracy_s = s;
            report.performance = Some(acc);
        }
        report.timings = timings;
        Ok((prepared, report))
    }
}

/// Cache of prepared references keyed by [`ReferenceKey`] outside an engine (e.g. tests).
pub type ReferenceCache = HashMap<ReferenceKey, Arc<PreparedReference>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::data::{CategoricalColumn, NamedColumn};

    fn numeric(name: &str, v: Vec<f64>) -> NamedColumn {
        NamedColumn {
            name: name.into(),
            data: Column::Numeric(v),
        }
    }

    fn categorical(name: &str, values: &[&str]) -> NamedColumn {
        let mut cats: Vec<String> = Vec::new();
        let codes = values
            .iter()
            .map(|v| match cats.iter().position(|c| c == v) {
                Some(i) => i as u32,
                None => {
                    cats.push((*v).to_owned());
                    (cats.len() - 1) as u32
                }
            })
            .collect();
        NamedColumn {
            name: name.into(),
            data: Column::Categorical(CategoricalColumn {
                categories: cats,
                codes,
            }),
        }
    }

    fn key() -> ReferenceKey {
        ReferenceKey {
            model_version: Some("3".into()),
            uri: "ref.csv".into(),
            format: None,
            config: String::new(),
        }
    }

    /// Deterministic pseudo-normal sample.
    fn sample(n: usize, shift: f64, seed: u64) -> Vec<f64> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                let mut acc = 0.0;
                for _ in 0..4 {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    acc += (s >> 11) as f64 / (1u64 << 53) as f64;
                }
                acc - 2.0 + shift
            })
            .collect()
    }

    fn tables(shift: f64) -> (Table, Table) {
        let n = 4000;
        let chans: Vec<&str> = (0..n).map(|i| ["web", "pos", "atm"][i % 3]).collect();
        let reference = Table::new(
            n,
            vec![
                numeric("a", sample(n, 0.0, 1)),
                numeric("b", sample(n, 0.0, 2)),
                categorical("channel", &chans),
                numeric("prediction", sample(n, 0.0, 3)),
            ],
        );
        let current = Table::new(
            n,
            vec![
                numeric("a", sample(n, shift, 4)),
                numeric("b", sample(n, 0.0, 5)),
                categorical("channel", &chans),
                numeric("prediction", sample(n, shift / 2.0, 6)),
            ],
        );
        (reference, current)
    }

    #[test]
    fn detects_the_shifted_feature_only() {
        let config = DriftConfig::default();
        let (r, c) = tables(0.8);
        let prepared = prepare_reference(r, &config, key()).unwrap();
        assert_eq!(prepared.features().count(), 3);
        assert_eq!(prepared.prediction().unwrap().0, "prediction");
        let report = compare(&prepared, c, &config);
        let drifted: Vec<&str> = report
            .features
            .iter()
            .filter(|f| f.drifted)
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(drifted, ["a"]);
        assert_eq!(report.severity, Severity::High);
        assert!(report.drift_detected);
        let pd = report.prediction_drift.unwrap();
        assert!(pd.drifted && pd.psi.unwrap() > 0.1, "{pd:?}");
        assert_eq!((report.reference_rows, report.current_rows), (4000, 4000));
        let json = serde_json::to_value(&report.features[0]).unwrap();
        assert_eq!(json["kind"], "numerical");
        assert_eq!(json["test"], "ks");
    }

    #[test]
    fn multiple_testing_methods() {
        // p-values 0.01 (3 features): BH adjusts to 0.03, Bonferroni to 0.03 (×3), none keeps 0.01
        let cmp = |p: f64| {
            FeatureComparison::Numeric(crate::drift::stats::NumericComparison {
                status: ComparisonStatus::Ok,
                n_reference: 100,
                n_current: 100,
                missing_reference: 0,
                missing_current: 0,
                ks: Some(crate::drift::stats::KsResult {
                    statistic: 0.3,
                    p_value: p,
                    method: crate::drift::stats::KsMethod::Exact,
                }),
                psi: Some(0.1),
                current_bin_counts: vec![],
            })
        };
        let comps = || {
            vec![
                ("x".to_owned(), cmp(0.01)),
                ("y".to_owned(), cmp(0.02)),
                ("z".to_owned(), cmp(0.5)),
            ]
        };
        let with = |m| DriftConfig {
            multiple_testing: m,
            ..DriftConfig::default()
        };
        let bon = decide(comps(), &with(MultipleTesting::Bonferroni));
        assert_eq!(bon.features[0].p_value, Some(0.01));
        assert!((bon.features[0].p_value_adjusted.unwrap() - 0.03).abs() < 1e-12);
        assert!((bon.features[1].p_value_adjusted.unwrap() - 0.06).abs() < 1e-12);
        assert_eq!(bon.features[2].p_value_adjusted, Some(1.0));
        assert!(bon.features[0].drifted && !bon.features[1].drifted);
        let bh = decide(comps(), &with(MultipleTesting::BenjaminiHochberg));
        assert!((bh.features[1].p_value_adjusted.unwrap() - 0.03).abs() < 1e-12);
        assert!(bh.features[1].drifted);
        let none = decide(comps(), &with(MultipleTesting::None));
        assert_eq!(none.features[1].p_value_adjusted, Some(0.02));
    }

    #[test]
    fn config_from_spec() {
        let spec: DriftSpec = serde_yaml::from_str(
            r#"
reference: {uri: r.parquet}
current: {uri: c.csv, timestampColumn: ts, window: 1h}
features: [{name: a, kind: categorical}, {name: b}]
ignoreColumns: [id]
thresholds: {alpha: 0.01, multipleTesting: bonferroni, minKsStatistic: 0.2, bins: 20, driftShare: 0.3}
"#,
        )
        .unwrap();
        let c = DriftConfig::from_spec(&spec, None).unwrap();
        assert_eq!(c.policy.alpha, 0.01);
        assert!(!c.policy.fdr);
        assert_eq!(c.policy.min_effect_numeric, 0.2);
        assert_eq!(c.policy.drift_share, 0.3);
        assert_eq!(c.psi.bins, 20);
        assert_eq!(c.multiple_testing, MultipleTesting::Bonferroni);
        assert_eq!(c.features[0].kind, Some(ColumnKind::Categorical));
        assert_eq!(c.features[1].kind, None);
        assert_eq!(c.ignore_columns, ["id", "ts"]);
        assert_eq!(c.prediction_column, None);
        let mut bad = spec.clone();
        bad.thresholds.psi_high = 0.1;
        assert_eq!(
            DriftConfig::from_spec(&bad, None).unwrap_err().reason(),
            "InvalidDriftConfig"
        );
        bad = spec.clone();
        bad.thresholds.bins = 0;
        assert!(DriftConfig::from_spec(&bad, None).is_err());
        let req = CheckRequest::from_spec(&spec, None, Some("7".into())).unwrap();
        assert_eq!(req.reference_key().model_version.as_deref(), Some("7"));
        assert_ne!(
            req.reference_key(),
            CheckRequest::from_spec(&spec, None, Some("8".into()))
                .unwrap()
                .reference_key()
        );
    }

    #[test]
    fn requests_respect_features_ignore_and_prediction() {
        let names: Vec<String> = ["id", "a", "b", "prediction", "label"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let mut config = DriftConfig {
            ignore_columns: vec!["id".into(), "label".into()],
            forced_kinds: vec![("b".into(), ColumnKind::Categorical)],
            ..DriftConfig::default()
        };
        let r = reference_requests(&names, &config).unwrap();
        assert_eq!(
            r,
            vec![
                ColumnRequest::new("a", None),
                ColumnRequest::new("b", Some(ColumnKind::Categorical)),
                ColumnRequest::new("prediction", None),
            ]
        );
        config.features = vec![FeatureSelection {
            name: "zz".into(),
            kind: None,
        }];
        assert_eq!(
            reference_requests(&names, &config).unwrap_err(),
            DriftError::Data(DataError::MissingColumn {
                column: "zz".into(),
                side: Side::Reference
            })
        );
        config.features.clear();
        config.forced_kinds = vec![("nope".into(), ColumnKind::Categorical)];
        assert!(reference_requests(&names, &config).is_err());
    }

    #[test]
    fn explicit_feature_missing_from_current_is_an_error() {
        let config = DriftConfig {
            features: vec![FeatureSelection {
                name: "a".into(),
                kind: None,
            }],
            ..DriftConfig::default()
        };
        let (r, _) = tables(0.0);
        let prepared = prepare_reference(r, &config, key()).unwrap();
        let e = prepared
            .current_requests(&["b".to_owned(), "prediction".to_owned()])
            .unwrap_err();
        assert_eq!(e.to_string(), "column 'a' is missing from the current data");
        // inferred features: skipped instead
        let config = DriftConfig::default();
        let (r, _) = tables(0.0);
        let prepared = prepare_reference(r, &config, key()).unwrap();
        let req = prepared.current_requests(&["b".to_owned()]).unwrap();
        assert_eq!(req.len(), 1);
    }

    #[test]
    fn insufficient_data_and_new_categories() {
        let n = 500;
        let config = DriftConfig::default();
        let r = Table::new(
            n,
            vec![
                numeric("gone", vec![f64::NAN; n]),
                categorical("c", &vec!["a"; n]),
                numeric("x", sample(n, 0.0, 9)),
            ],
        );
        let mut cur_c = vec!["a"; n];
        for v in cur_c.iter_mut().take(200) {
            *v = "new";
        }
        let c = Table::new(
            n,
            vec![
                numeric("gone", sample(n, 0.0, 1)),
                categorical("c", &cur_c),
                numeric("x", sample(n, 0.0, 10)),
            ],
        );
        let prepared = prepare_reference(r, &config, key()).unwrap();
        let report = compare(&prepared, c, &config);
        let gone = &report.features[0];
        assert_eq!(gone.status, ComparisonStatus::InsufficientData);
        assert_eq!(gone.missing_reference, n as u64);
        assert!(!gone.drifted);
        let cat = &report.features[1];
        assert_eq!(cat.n_new_categories, 1);
        assert_eq!(cat.new_categories, ["new"]);
        assert!(cat.drifted, "{cat:?}");
        assert_eq!(report.n_evaluated, 2);
        assert!(report.notes.iter().any(|n| n.contains("prediction")));
    }

    #[test]
    fn accuracy_scores_and_classes() {
        let t = Table::new(
            6,
            vec![
                numeric("p", vec![0.9, 0.2, 0.7, 0.4, f64::NAN, 0.6]),
                numeric("l", vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]),
                categorical("pc", &["fraud", "ok", "fraud", "ok", "ok", "ok"]),
                categorical("lc", &["fraud", "ok", "ok", "ok", "fraud", "ok"]),
            ],
        );
        let a = accuracy(&t, "p", "l").unwrap();
        assert_eq!(a.decision, "threshold_0.5");
        assert_eq!((a.rows, a.missing), (5, 1));
        assert!((a.accuracy.unwrap() - 0.6).abs() < 1e-12);
        let b = a.binary.unwrap();
        assert_eq!(b.positive_label, "1");
        assert_eq!(
            (b.true_positives, b.false_positives, b.false_negatives),
            (2, 1, 1)
        );
        assert!((b.precision.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        let a = accuracy(&t, "pc", "lc").unwrap();
        assert_eq!(a.decision, "exact");
        assert!((a.accuracy.unwrap() - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(a.binary.unwrap().positive_label, "fraud");
        assert_eq!(
            accuracy(&t, "p", "nope").unwrap_err().to_string(),
            "column 'nope' is missing from the labelled data"
        );
    }

    #[test]
    fn engine_caches_prepared_references() {
        let dir = tempfile::tempdir().unwrap();
        let rp = dir.path().join("r.csv");
        let cp = dir.path().join("c.csv");
        let mut r = String::from("x,c\n");
        let mut c = String::from("x,c\n");
        for (i, (a, b)) in sample(300, 0.0, 1)
            .iter()
            .zip(sample(300, 1.0, 2))
            .enumerate()
        {
            r.push_str(&format!("{a},{}\n", ["u", "v"][i % 2]));
            c.push_str(&format!("{b},{}\n", ["u", "v"][i % 2]));
        }
        std::fs::write(&rp, r).unwrap();
        std::fs::write(&cp, c).unwrap();
        let engine = DriftEngine::new(FetchContext::new());
        let req = CheckRequest {
            reference: DatasetLocation {
                uri: rp.display().to_string(),
                format: None,
            },
            current: DatasetLocation {
                uri: cp.display().to_string(),
                format: None,
            },
            labelled: None,
            config: DriftConfig::default(),
            model_version: Some("1".into()),
            now: None,
        };
        let first = engine.check_local(&req).unwrap();
        assert!(!first.timings.reference_cached);
        assert!(engine.cached(&req.reference_key()).is_some());
        // the reference file is gone, the cached preparation is used
        std::fs::remove_file(&rp).unwrap();
        let second = engine.check_local(&req).unwrap();
        assert!(second.timings.reference_cached);
        assert_eq!(first.features, second.features);
        assert!(first.features[0].drifted);
        engine.invalidate(&req.reference_key());
        assert_eq!(
            engine.check_local(&req).unwrap_err().reason(),
            "DataNotFound"
        );
    }

    #[test]
    fn current_window_keeps_recent_rows() {
        let dir = tempfile::tempdir().unwrap();
        let rp = dir.path().join("r.csv");
        let cp = dir.path().join("c.csv");
        let mut r = String::from("x,ts\n");
        let mut c = String::from("x,ts\n");
        let xs = sample(400, 0.0, 3);
        for (i, x) in xs.iter().enumerate() {
            r.push_str(&format!("{x},2026-01-01T00:00:00Z\n"));
            // even rows inside the last hour (RFC 3339 or Unix seconds), odd rows a day old,
            // every 50th row without a timestamp
            let ts = if i % 50 == 49 {
                String::new()
            } else if i % 2 == 0 && i % 4 == 0 {
                "2026-11-26T11:30:00+00:00".to_owned()
            } else if i % 2 == 0 {
                "1795692600".to_owned() // 2026-11-26T11:30:00Z
            } else {
                "2026-11-25T11:30:00Z".to_owned()
            };
            c.push_str(&format!("{x},{ts}\n"));
        }
        std::fs::write(&rp, r).unwrap();
        std::fs::write(&cp, c).unwrap();
        let now: jiff::Timestamp = "2026-11-26T12:00:00Z".parse().unwrap();
        let spec: DriftSpec = serde_yaml::from_str(&format!(
            "reference: {{uri: '{}'}}\ncurrent: {{uri: '{}', window: 1h, timestampColumn: ts}}\n",
            rp.display(),
            cp.display()
        ))
        .unwrap();
        let mut req = CheckRequest::from_spec(&spec, None, None).unwrap();
        req.now = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_second() as u64));
        let report = DriftEngine::new(FetchContext::new())
            .check_local(&req)
            .unwrap();
        let w = report.window.clone().unwrap();
        assert_eq!(w.rows_total, 400);
        assert_eq!(w.rows_without_timestamp, 8);
        assert_eq!(report.current_rows, 200);
        assert_eq!(w.since, "2026-11-26T11:00:00Z");
        // the timestamp column is not a feature
        let names: Vec<&str> = report.features.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["x"]);
        assert_eq!(report.features[0].n_current, 200);
        // without timestampColumn the window is a configuration error
        let mut bad = spec.clone();
        bad.current.timestamp_column = None;
        assert_eq!(
            DriftConfig::from_spec(&bad, None).unwrap_err().reason(),
            "InvalidDriftConfig"
        );
    }

    #[tokio::test]
    async fn async_check_matches_local_check() {
        let dir = tempfile::tempdir().unwrap();
        let rp = dir.path().join("r.csv");
        let cp = dir.path().join("c.csv");
        std::fs::write(&rp, "x,prediction\n1,0.1\n2,0.2\n3,0.3\n4,0.4\n").unwrap();
        std::fs::write(&cp, "x,prediction\n1,0.1\n2,0.9\n3,0.3\n").unwrap();
        let req = CheckRequest {
            reference: DatasetLocation {
                uri: rp.display().to_string(),
                format: None,
            },
            current: DatasetLocation {
                uri: format!("file://{}", cp.display()),
                format: None,
            },
            labelled: Some(LabelledLocation {
                location: DatasetLocation {
                    uri: cp.display().to_string(),
                    format: None,
                },
                prediction_column: "prediction".into(),
                label_column: "x".into(),
                accuracy_threshold: Some(0.85),
            }),
            config: DriftConfig::default(),
            model_version: None,
            now: None,
        };
        let a = DriftEngine::new(FetchContext::new())
            .check(&req)
            .await
            .unwrap();
        let b = DriftEngine::new(FetchContext::new())
            .check_local(&req)
            .unwrap();
        assert_eq!(a.features, b.features);
        assert_eq!(a.current_rows, 3);
        assert!(a.prediction_drift.is_some());
        let perf = a.performance.unwrap();
        assert_eq!(perf.accuracy, Some(0.0));
        assert_eq!(perf.below_threshold, Some(true));
    }
}
