//! Comparing current data with a prepared reference, and the report.

use super::*;

/// Bonferroni: p × m (capped at 1) where m is the number of evaluable features.
pub(super) fn bonferroni_scale(
    comparisons: &mut [(String, FeatureComparison)],
) -> Vec<Option<f64>> {
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

/// One feature's current data: its column, or (streaming check) a numeric summary or
/// category counts.
#[derive(Clone, Debug, PartialEq)]
pub enum CurrentFeature {
    Column(Column),
    Summary(CurrentSummary),
    Counts(crate::drift::stats::CategoricalCounts),
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
    /// The thresholds the verdicts were decided with.
    #[serde(default)]
    pub thresholds: ReportThresholds,
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

/// The decision rule's thresholds, as a report shows them beside the statistics.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportThresholds {
    /// Significance level of the (adjusted) p-values.
    pub alpha: f64,
    /// Smallest KS D that counts as drift (numeric features).
    pub min_ks_statistic: f64,
    /// Smallest Cramér's V that counts as drift (categorical features).
    pub min_cramers_v: f64,
    pub psi_warning: f64,
    pub psi_high: f64,
    /// Dataset drift when drifted / evaluated features reach this share.
    pub drift_share: f64,
    /// Reference quantile bins of the numeric PSI.
    pub psi_bins: usize,
}

impl ReportThresholds {
    pub fn new(policy: &DriftPolicy, psi: &PsiParams) -> Self {
        Self {
            alpha: policy.alpha,
            min_ks_statistic: policy.min_effect_numeric,
            min_cramers_v: policy.min_effect_categorical,
            psi_warning: policy.psi_warning,
            psi_high: policy.psi_high,
            drift_share: policy.drift_share,
            psi_bins: psi.bins,
        }
    }
}

impl Default for ReportThresholds {
    fn default() -> Self {
        Self::new(&DriftPolicy::default(), &PsiParams::default())
    }
}

/// Below this many rows on a side, the report warns that its verdicts say little.
pub const FEW_ROWS: usize = 30;

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
pub(super) fn apply_window(
    table: &mut Table,
    window: &CurrentWindow,
    now: SystemTime,
    keep_column: bool,
) -> Result<WindowReport, DataError> {
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
    // Not one readable timestamp: the window would drop every row and report "insufficient
    // data" as if the data were merely old. Say what the column holds instead.
    if rows_total > 0 && rows_without_timestamp == rows_total {
        return Err(unreadable_timestamps(table, &window.timestamp_column));
    }
    if !keep_column {
        table.take(&window.timestamp_column);
    }
    table.retain_rows(&keep);
    let since_text = jiff::Timestamp::from_millisecond((since * 1000.0) as i64)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("{since}s after the epoch"));
    Ok(WindowReport {
        timestamp_column: window.timestamp_column.clone(),
        window_seconds: window.duration.as_secs_f64(),
        since: since_text,
        rows_total,
        rows_without_timestamp,
    })
}

fn unreadable_timestamps(table: &Table, column: &str) -> DataError {
    let first = match table.column(column) {
        None => {
            return DataError::MissingColumn {
                column: column.to_owned(),
                side: Side::Current,
            };
        }
        Some(Column::Categorical(c)) => c
            .codes
            .first()
            .and_then(|&code| c.categories.get(code as usize))
            .map(|v| v.chars().take(40).collect::<String>())
            .unwrap_or_default(),
        Some(Column::Numeric(v)) => v.first().map(|x| x.to_string()).unwrap_or_default(),
    };
    DataError::Malformed {
        side: Side::Current,
        uri: format!("column {column}"),
        detail: format!(
            "no row has a readable timestamp (RFC 3339 text such as 2026-01-31T12:00:00Z, or Unix seconds); row 1 holds '{first}'"
        ),
    }
}

/// Compare a current table (read with [`PreparedReference::current_requests`]) with a prepared
/// reference: every feature in parallel, then the decision rule.
pub fn compare(prepared: &PreparedReference, current: Table, config: &DriftConfig) -> DriftReport {
    let current_rows = current.rows();
    // One map, then a lookup per feature: linear in the number of columns.
    let current: HashMap<String, CurrentFeature> = current
        .into_columns()
        .into_iter()
        .map(|c| (c.name, CurrentFeature::Column(c.data)))
        .collect();
    compare_features(prepared, current_rows, current, config)
}

/// [`compare`] of current data given feature by feature: columns, or the summaries of a
/// streaming check.
pub fn compare_features(
    prepared: &PreparedReference,
    current_rows: usize,
    mut current: HashMap<String, CurrentFeature>,
    config: &DriftConfig,
) -> DriftReport {
    let mut skipped = Vec::new();
    let mut work: Vec<(&str, &FeatureReference, CurrentFeature)> = Vec::new();
    for (name, r) in &prepared.features {
        match current.remove(name) {
            Some(col) => work.push((name.as_str(), r, col)),
            None => skipped.push(name.clone()),
        }
    }
    let prediction_work = prepared
        .prediction
        .as_ref()
        .and_then(|(name, r)| current.remove(name).map(|col| (name.as_str(), r, col)));
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
    let mut notes = report_notes(prepared, current_rows, config, has_prediction);
    notes.extend(number_format_notes(prepared, &verdict.features));
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
        thresholds: ReportThresholds::new(&config.policy, &config.psi),
        features: verdict.features,
        skipped_columns: skipped,
        prediction_drift,
        performance: None,
        window: None,
        notes,
        timings: Timings::default(),
    }
}

/// What the reader of a report should know beyond the verdicts: discrete features compared as
/// categories, tiny samples, a missing prediction column.
fn report_notes(
    prepared: &PreparedReference,
    current_rows: usize,
    config: &DriftConfig,
    has_prediction: bool,
) -> Vec<String> {
    let mut notes: Vec<String> = prepared
        .features
        .iter()
        .filter_map(|(name, r)| match r {
            FeatureReference::Discrete { values, .. } => Some(format!(
                "'{name}' has {values} distinct value(s) in the reference: compared as categories of values (chi-square, PSI over values)"
            )),
            _ => None,
        })
        .collect();
    for (side, rows) in [("reference", prepared.rows), ("current", current_rows)] {
        if rows > 0 && rows < FEW_ROWS {
            notes.push(format!(
                "the {side} data has only {rows} row(s): with fewer than {FEW_ROWS} the tests and PSI say little, treat the severities with care"
            ));
        }
    }
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
    notes
}

/// Categories that are the same numbers written differently on the two sides (`1` in one
/// file, `1.0` in the other — a CSV and a Parquet file often disagree): they count as new
/// categories, so the report says why instead of leaving a phantom drift unexplained.
fn number_format_notes(
    prepared: &PreparedReference,
    features: &[crate::drift::stats::FeatureVerdict],
) -> Vec<String> {
    let number = |s: &str| s.trim().parse::<f64>().ok().filter(|x| x.is_finite());
    // One map, not a scan per feature: the cost stays linear in the number of columns.
    let categorical: std::collections::HashMap<&str, _> = prepared
        .features
        .iter()
        .filter_map(|(n, r)| match r {
            FeatureReference::Categorical(r) => Some((n.as_str(), r)),
            _ => None,
        })
        .collect();
    features
        .iter()
        .filter(|f| !f.new_categories.is_empty())
        .filter_map(|f| {
            let reference = categorical.get(f.name.as_str())?;
            let (current, known) = f.new_categories.iter().find_map(|new| {
                let x = number(new)?;
                reference
                    .counts()
                    .iter()
                    .find(|(known, _)| number(known) == Some(x))
                    .map(|(known, _)| (new.clone(), known.to_owned()))
            })?;
            Some(format!(
                "'{}': current '{current}' and reference '{known}' are the same number written differently; declare the column numerical, or write both sides alike",
                f.name
            ))
        })
        .collect()
}
