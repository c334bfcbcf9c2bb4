//! Configuration of a check: what to compare, where the data is, how to decide.

use super::*;
use crate::api::Reason;

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
    pub fn reason(&self) -> Reason {
        match self {
            DriftError::Data(e) => e.reason(),
            DriftError::InvalidConfig(_) => Reason::InvalidDriftConfig,
            DriftError::NoFeatures(_) => Reason::NoFeatures,
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
    /// A numeric feature with at most this many distinct values in the reference is compared
    /// as categories of values (`spec.drift.thresholds.discreteMaxValues`, `--discrete-max-values`).
    pub discrete_max_values: usize,
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
    /// The newest rows or files of the current data (`spec.drift.current.lastRows`,
    /// `lastDuration`).
    pub current_files: FileSelection,
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
            discrete_max_values: crate::api::DriftThresholds::DEFAULT_DISCRETE_MAX_VALUES,
            features: Vec::new(),
            forced_kinds: Vec::new(),
            ignore_columns: Vec::new(),
            prediction_column: Some("prediction".into()),
            window: None,
            current_files: FileSelection::default(),
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
            current_files: current_files(&spec.current)?,
            policy,
            multiple_testing: t.multiple_testing,
            psi: PsiParams {
                bins,
                ..PsiParams::default()
            },
            discrete_max_values: usize::try_from(t.discrete_max_values).unwrap_or(0),
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

    pub(super) fn forced(&self, name: &str) -> Option<ColumnKind> {
        self.forced_kinds
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, k)| *k)
    }

    /// A stable text of everything that changes the prepared reference (for cache keys).
    pub fn fingerprint(&self) -> String {
        let mut s = format!(
            "bins={};smoothing={};discrete={};",
            self.psi.bins, self.psi.smoothing, self.discrete_max_values
        );
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

/// `lastRows` / `lastDuration` of the current data.
fn current_files(current: &crate::api::CurrentData) -> Result<FileSelection, DriftError> {
    let last_rows = match current.last_rows {
        None => None,
        Some(n) => Some(usize::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
            DriftError::InvalidConfig(format!(
                "drift.current.lastRows must be at least 1, got {n}"
            ))
        })?),
    };
    let last_duration = match &current.last_duration {
        None => None,
        Some(d) => Some(crate::api::duration::parse_duration(d).map_err(|e| {
            DriftError::InvalidConfig(format!("drift.current.lastDuration '{d}': {e}"))
        })?),
    };
    let selection = FileSelection {
        last_rows,
        last_duration,
    };
    if last_rows.is_some() && last_duration.is_some() {
        return Err(DriftError::InvalidConfig(
            "set either drift.current.lastRows or drift.current.lastDuration, not both".into(),
        ));
    }
    if selection.is_set() && current.window.is_some() {
        return Err(DriftError::InvalidConfig(
            "drift.current.window cannot be combined with lastRows or lastDuration".into(),
        ));
    }
    Ok(selection)
}

/// Where the traffic captured by the proxy is, for `spec.drift.current.capture`: the base URI
/// of captures (`spec.serving.proxy.capture.uri`) and the resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureLocation<'a> {
    pub base: Option<&'a str>,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// The URI of the current data: `uri`, or the prefix (ending in `/`) of the windows the proxy
/// captured for the variant `capture` names.
pub fn current_uri(
    current: &crate::api::CurrentData,
    capture: &CaptureLocation<'_>,
) -> Result<String, DriftError> {
    match (current.uri(), &current.capture) {
        (Some(uri), None) => Ok(uri.to_owned()),
        (None, Some(source)) => capture_uri(source, capture, "drift.current.capture"),
        _ => Err(DriftError::InvalidConfig(
            "set exactly one of drift.current.uri and drift.current.capture".into(),
        )),
    }
}

/// The prefix (ending in `/`) of the windows the proxy captured for the variant `source`
/// names; `field` names the setting in the error when captures are not configured.
pub fn capture_uri(
    source: &crate::api::CaptureSource,
    capture: &CaptureLocation<'_>,
    field: &str,
) -> Result<String, DriftError> {
    let base = capture.base.filter(|b| !b.trim().is_empty()).ok_or_else(|| {
        DriftError::InvalidConfig(format!(
            "{field} needs serving.proxy.capture.uri (where the proxy writes the captured traffic)"
        ))
    })?;
    let prefix = crate::storage::layout::variant_prefix(
        base,
        capture.namespace,
        capture.name,
        source.variant.as_str(),
    );
    Ok(format!("{prefix}/"))
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
    /// The labelled table, or with `join` the feedback table (request ids and labels).
    pub location: DatasetLocation,
    /// The prediction column (with `join`, of the captured predictions).
    pub prediction_column: String,
    pub label_column: String,
    pub accuracy_threshold: Option<f64>,
    /// Join the labels with captured predictions by request id.
    pub join: Option<JoinLocation>,
}

/// The captured predictions labels are joined with (`performance.labelled.join`).
#[derive(Clone, Debug, PartialEq)]
pub struct JoinLocation {
    /// The captured windows (a prefix, directory or glob of the proxy's Parquet files).
    pub predictions: DatasetLocation,
    /// The newest rows or files of them.
    pub selection: FileSelection,
    /// The feedback table's column holding the request id.
    pub id_column: String,
}

impl JoinLocation {
    /// From `performance.labelled.join`, the capture resolved like `drift.current.capture`.
    pub fn from_spec(
        join: &crate::api::LabelJoin,
        capture: &CaptureLocation<'_>,
    ) -> Result<Self, DriftError> {
        let invalid = |what: String| DriftError::InvalidConfig(what);
        let last_rows = match join.last_rows {
            None => None,
            Some(n) => Some(usize::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
                invalid(format!(
                    "performance.labelled.join.lastRows must be at least 1, got {n}"
                ))
            })?),
        };
        let last_duration = match &join.last_duration {
            None => None,
            Some(d) => Some(crate::api::duration::parse_duration(d).map_err(|e| {
                invalid(format!("performance.labelled.join.lastDuration '{d}': {e}"))
            })?),
        };
        if last_rows.is_some() && last_duration.is_some() {
            return Err(invalid(
                "set either performance.labelled.join.lastRows or lastDuration, not both".into(),
            ));
        }
        Ok(Self {
            predictions: DatasetLocation {
                uri: capture_uri(&join.capture, capture, "performance.labelled.join.capture")?,
                format: None,
            },
            selection: FileSelection {
                last_rows,
                last_duration,
            },
            id_column: join.id_column.clone(),
        })
    }
}

impl LabelledLocation {
    /// From `performance.labelled` (+ the accuracy threshold).
    pub fn from_spec(
        performance: &PerformanceSpec,
        labelled: &crate::api::LabelledData,
        capture: &CaptureLocation<'_>,
    ) -> Result<Self, DriftError> {
        let join = labelled
            .join
            .as_ref()
            .map(|j| JoinLocation::from_spec(j, capture))
            .transpose()?;
        if let Some(j) = &join
            && (j.id_column.is_empty() || j.id_column == labelled.label_column)
        {
            return Err(DriftError::InvalidConfig(format!(
                "performance.labelled.join.idColumn ({:?}) must name a column other than labelColumn ({:?})",
                j.id_column, labelled.label_column
            )));
        }
        Ok(Self {
            location: DatasetLocation {
                uri: labelled.uri.clone(),
                format: labelled.format,
            },
            prediction_column: labelled.prediction_column.clone(),
            label_column: labelled.label_column.clone(),
            accuracy_threshold: Some(performance.accuracy_threshold),
            join,
        })
    }
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
    /// Credentials, endpoint and region of the object stores the URIs name.
    pub storage: StoreOptions,
}

impl CheckRequest {
    /// The check a resource asks for (`capture`: where `drift.current.capture` points).
    pub fn from_spec(
        drift: &DriftSpec,
        performance: Option<&PerformanceSpec>,
        model_version: Option<String>,
        capture: &CaptureLocation<'_>,
    ) -> Result<Self, DriftError> {
        Ok(Self {
            reference: DatasetLocation {
                uri: drift.reference.uri.clone(),
                format: drift.reference.format,
            },
            current: DatasetLocation {
                uri: current_uri(&drift.current, capture)?,
                format: drift.current.format,
            },
            labelled: performance
                .and_then(|p| {
                    p.labelled
                        .as_ref()
                        .map(|l| LabelledLocation::from_spec(p, l, capture))
                })
                .transpose()?,
            config: DriftConfig::from_spec(drift, performance)?,
            model_version,
            now: None,
            storage: StoreOptions::default(),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn drift(current: &str) -> DriftSpec {
        serde_yaml::from_str(&format!(
            "reference: {{uri: r.parquet}}\ncurrent: {current}\n"
        ))
        .unwrap()
    }

    #[test]
    fn a_capture_resolves_to_the_variants_prefix_under_the_capture_uri() {
        let at = |base| CaptureLocation {
            base,
            namespace: "ml",
            name: "fraud",
        };
        let spec = drift("{capture: {variant: stable}, lastRows: 5000}");
        let request =
            CheckRequest::from_spec(&spec, None, None, &at(Some("s3://lake/captures/"))).unwrap();
        assert_eq!(request.current.uri, "s3://lake/captures/ml/fraud/stable/");
        assert_eq!(request.config.current_files.last_rows, Some(5000));
        let candidate = drift("{capture: {variant: candidate}}");
        assert_eq!(
            current_uri(&candidate.current, &at(Some("/data/captures"))).unwrap(),
            "/data/captures/ml/fraud/candidate/"
        );
        let e = CheckRequest::from_spec(&spec, None, None, &at(None)).unwrap_err();
        assert_eq!(e.reason(), Reason::InvalidDriftConfig);
        assert!(
            e.to_string()
                .contains("drift.current.capture needs serving.proxy.capture.uri"),
            "{e}"
        );
        let plain = drift("{uri: 'gs://b/live/', lastDuration: 30m}");
        let request = CheckRequest::from_spec(&plain, None, None, &at(None)).unwrap();
        assert_eq!(request.current.uri, "gs://b/live/");
        assert_eq!(
            request.config.current_files.last_duration,
            Some(Duration::from_secs(1800))
        );
        let both = drift("{uri: x.csv, lastRows: 5, lastDuration: 1h}");
        assert!(DriftConfig::from_spec(&both, None).is_err());
    }

    #[test]
    fn a_label_join_resolves_its_capture_like_the_current_data() {
        let at = |base| CaptureLocation {
            base,
            namespace: "ml",
            name: "fraud",
        };
        let spec = drift("{capture: {variant: stable}}");
        let performance: PerformanceSpec = serde_yaml::from_str(
            "labelled: {uri: 's3://lake/feedback/', labelColumn: truth, join: {capture: {variant: candidate}, idColumn: rid, lastDuration: 168h}}\naccuracyThreshold: 0.9\n",
        )
        .unwrap();
        let request = CheckRequest::from_spec(
            &spec,
            Some(&performance),
            None,
            &at(Some("s3://lake/captures")),
        )
        .unwrap();
        let labelled = request.labelled.unwrap();
        assert_eq!(labelled.location.uri, "s3://lake/feedback/");
        assert_eq!(
            (
                labelled.label_column.as_str(),
                labelled.prediction_column.as_str()
            ),
            ("truth", "prediction")
        );
        assert_eq!(labelled.accuracy_threshold, Some(0.9));
        let join = labelled.join.unwrap();
        assert_eq!(
            join.predictions.uri,
            "s3://lake/captures/ml/fraud/candidate/"
        );
        assert_eq!(join.id_column, "rid");
        assert_eq!(
            join.selection.last_duration,
            Some(Duration::from_secs(168 * 3600))
        );
        // no capture configured: named by its field, like drift.current.capture
        let plain = drift("{uri: c.csv}");
        let e = CheckRequest::from_spec(&plain, Some(&performance), None, &at(None)).unwrap_err();
        assert_eq!(e.reason(), Reason::InvalidDriftConfig);
        assert!(
            e.to_string()
                .contains("performance.labelled.join.capture needs serving.proxy.capture.uri"),
            "{e}"
        );
        // the plain labelled table is unchanged
        let table: PerformanceSpec = serde_yaml::from_str("labelled: {uri: l.csv}\n").unwrap();
        let request = CheckRequest::from_spec(&plain, Some(&table), None, &at(None)).unwrap();
        assert_eq!(request.labelled.unwrap().join, None);
        let mut bad = performance.clone();
        bad.labelled.as_mut().unwrap().label_column = "rid".into();
        assert!(
            CheckRequest::from_spec(&spec, Some(&bad), None, &at(Some("/c")))
                .unwrap_err()
                .to_string()
                .contains("must name a column other than labelColumn")
        );
    }
}
