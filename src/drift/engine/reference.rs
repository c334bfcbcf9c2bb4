//! Prepared references: read once per model version, reused across checks.

use super::*;

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
    /// A numeric feature with few distinct values in the reference (a flag, a count, a
    /// constant): quantile bins collapse on it, so it is compared as categories of values
    /// (chi-square, PSI over values), the same whichever way a shift goes. `values` is how
    /// many distinct values the reference has.
    Discrete {
        reference: CategoricalReference,
        values: usize,
    },
}

/// A value as a category key: -0.0 and 0.0 are one value.
pub(super) fn value_key(v: f64) -> (u64, f64) {
    let v = if v == 0.0 { 0.0 } else { v };
    (v.to_bits(), v)
}

/// Counts of a numeric column's values as categories: `1` and `1.0` are the same value,
/// NaN is missing.
pub(super) fn value_counts(values: &[f64]) -> crate::drift::stats::CategoricalCounts {
    let mut counts = std::collections::BTreeMap::<u64, (f64, u64)>::new();
    let mut missing = 0;
    for &v in values {
        if v.is_nan() {
            missing += 1;
        } else {
            let (key, v) = value_key(v);
            counts.entry(key).or_insert((v, 0)).1 += 1;
        }
    }
    let mut out = crate::drift::stats::CategoricalCounts::new();
    for (value, count) in counts.into_values() {
        out.add(&value.to_string(), count);
    }
    out.add_missing(missing);
    out
}

/// Distinct non-missing values of a column, stopping once there are more than `limit`.
pub(super) fn distinct_up_to(values: &[f64], limit: usize) -> Option<usize> {
    let mut seen = std::collections::HashSet::new();
    for &v in values {
        if !v.is_nan() {
            seen.insert(value_key(v).0);
            if seen.len() > limit {
                return None;
            }
        }
    }
    Some(seen.len())
}

impl FeatureReference {
    pub fn kind(&self) -> ColumnKind {
        match self {
            // The current data of a discrete feature is read as numbers too, so `1` and `1.0`
            // agree across CSV and Parquet.
            FeatureReference::Numeric(_) | FeatureReference::Discrete { .. } => {
                ColumnKind::Numerical
            }
            FeatureReference::Categorical(_) => ColumnKind::Categorical,
        }
    }

    /// `discrete_max_values`: a numeric column with at most this many distinct values in the
    /// reference is compared as categories of values.
    pub(super) fn prepare(
        column: Column,
        psi: PsiParams,
        discrete_max_values: usize,
    ) -> Result<Self, DriftError> {
        let invalid = |e: crate::drift::stats::StatsError| DriftError::InvalidConfig(e.to_string());
        Ok(match column {
            Column::Numeric(v) => match distinct_up_to(&v, discrete_max_values) {
                Some(values) if values > 0 => FeatureReference::Discrete {
                    reference: CategoricalReference::new(value_counts(&v), psi.smoothing)
                        .map_err(invalid)?,
                    values,
                },
                _ => FeatureReference::Numeric(NumericReference::new(v, psi).map_err(invalid)?),
            },
            Column::Categorical(c) => FeatureReference::Categorical(
                CategoricalReference::new(c.counts(), psi.smoothing).map_err(invalid)?,
            ),
        })
    }

    pub(super) fn compare(&self, current: CurrentFeature) -> FeatureComparison {
        let column = match current {
            CurrentFeature::Column(c) => c,
            CurrentFeature::Summary(summary) => {
                return match self {
                    FeatureReference::Numeric(r) => {
                        FeatureComparison::Numeric(compare_numeric_summary(r, summary))
                    }
                    // a summary is only made for a numeric reference; anything else has no
                    // comparable data rather than a panic
                    FeatureReference::Categorical(r)
                    | FeatureReference::Discrete { reference: r, .. } => {
                        let mut counts = crate::drift::stats::CategoricalCounts::new();
                        counts.add_missing(summary.missing + summary.dist.n());
                        FeatureComparison::Categorical(compare_categorical(r, &counts))
                    }
                };
            }
            CurrentFeature::Counts(counts) => {
                return match self {
                    FeatureReference::Categorical(r)
                    | FeatureReference::Discrete { reference: r, .. } => {
                        FeatureComparison::Categorical(compare_categorical(r, &counts))
                    }
                    FeatureReference::Numeric(r) => FeatureComparison::Numeric(compare_numeric(
                        r,
                        vec![
                            f64::NAN;
                            usize::try_from(counts.total() + counts.missing()).unwrap_or(0)
                        ],
                    )),
                };
            }
        };
        match (self, column) {
            (FeatureReference::Numeric(r), Column::Numeric(v)) => {
                FeatureComparison::Numeric(compare_numeric(r, v))
            }
            (FeatureReference::Categorical(r), Column::Categorical(c)) => {
                FeatureComparison::Categorical(compare_categorical(r, &c.counts()))
            }
            (FeatureReference::Discrete { reference, .. }, Column::Numeric(v)) => {
                FeatureComparison::Categorical(compare_categorical(reference, &value_counts(&v)))
            }
            (FeatureReference::Discrete { reference, .. }, Column::Categorical(c)) => {
                FeatureComparison::Categorical(compare_categorical(reference, &c.counts()))
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
    pub(super) key: ReferenceKey,
    pub(super) rows: usize,
    /// Compared features, in order.
    pub(super) features: Vec<(String, FeatureReference)>,
    pub(super) prediction: Option<(String, FeatureReference)>,
    /// Whether `features` was the explicit list (missing current columns are errors) or every
    /// reference column (missing current columns are skipped).
    pub(super) explicit: bool,
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
pub(super) fn requests_for_current<'a>(
    features: impl Iterator<Item = (&'a str, ColumnKind)>,
    prediction: Option<(&'a str, ColumnKind)>,
    explicit: bool,
    available: &[String],
) -> Result<Vec<ColumnRequest>, DriftError> {
    let available: std::collections::HashSet<&str> = available.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for (name, kind) in features {
        if available.contains(name) {
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
        && available.contains(name)
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
pub(super) fn requests_from_reference_table(
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
    // Sets, not scans: the cost stays linear in the number of columns.
    let available_set: std::collections::HashSet<&str> =
        available.iter().map(String::as_str).collect();
    let has = |n: &str| available_set.contains(n);
    let mut requested = std::collections::HashSet::new();
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
            // The proxy's columns beside the features of captured traffic are never features.
            let ignored = config.ignore_columns.iter().any(|i| i == name)
                || crate::storage::layout::BOOKKEEPING_COLUMNS.contains(&name.as_str());
            let prediction = config.prediction_column.as_deref() == Some(name.as_str());
            if !ignored && !prediction && requested.insert(name.as_str()) {
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
pub(super) fn par_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
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
        FeatureReference::prepare(c.data, psi, config.discrete_max_values).map(|r| (c.name, r))
    });
    let mut features = Vec::with_capacity(prepared.len());
    for p in prepared {
        features.push(p?);
    }
    assemble_prepared(features, rows, config, key)
}

/// The prepared reference from its features in read order, the prediction column (when it is
/// not also a feature) last: it is split off as the prediction's reference.
pub(super) fn assemble_prepared(
    mut features: Vec<(String, FeatureReference)>,
    rows: usize,
    config: &DriftConfig,
    key: ReferenceKey,
) -> Result<PreparedReference, DriftError> {
    let prediction = match (&config.prediction_column, features.last()) {
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

#[cfg(test)]
mod discrete_tests {
    use proptest::prelude::*;

    use super::*;
    use crate::drift::stats::decision::{Severity, TestKind};

    /// Severity and test of one feature, reference vs current, with the default rules.
    fn judge(reference: &[f64], current: &[f64]) -> (Severity, TestKind, Option<f64>) {
        let config = DriftConfig::default();
        let r = FeatureReference::prepare(
            Column::Numeric(reference.to_vec()),
            config.psi,
            config.discrete_max_values,
        )
        .unwrap();
        let comparison = r.compare(CurrentFeature::Column(Column::Numeric(current.to_vec())));
        let verdict = decide(vec![("f".into(), comparison)], &config);
        let f = &verdict.features[0];
        (f.severity, f.test, f.psi)
    }

    /// `n` rows of a 0/1 flag with `ones` of them 1.
    fn flag(n: usize, ones: usize) -> Vec<f64> {
        (0..n).map(|i| if i < ones { 1.0 } else { 0.0 }).collect()
    }

    /// Issue 20's examples: a flag going 5 % → 60 % ones scored PSI 0 on quantile bins, and
    /// 60 % → 5 % scored 1.78; a constant 7 → 8 scored 0 and 7 → 6 scored 29.
    #[test]
    fn a_flag_and_a_constant_drift_the_same_in_both_directions() {
        let up = judge(&flag(10_000, 500), &flag(10_000, 6_000));
        let down = judge(&flag(10_000, 6_000), &flag(10_000, 500));
        assert_eq!(up.1, TestKind::Chi2, "compared as categories");
        assert_eq!(up.0, Severity::High, "{up:?}");
        assert_eq!(up.0, down.0);
        let (psi_up, psi_down) = (up.2.unwrap(), down.2.unwrap());
        assert!(
            psi_up > 1.0 && (psi_up - psi_down).abs() < 1e-9,
            "{psi_up} vs {psi_down}"
        );

        let seven = vec![7.0; 5_000];
        let to_eight = judge(&seven, &[8.0; 5_000]);
        let to_six = judge(&seven, &[6.0; 5_000]);
        assert_eq!(to_eight.0, Severity::High, "{to_eight:?}");
        assert_eq!(to_eight.0, to_six.0);
        assert!((to_eight.2.unwrap() - to_six.2.unwrap()).abs() < 1e-9);
    }

    #[test]
    fn one_and_one_point_zero_are_one_value_and_continuous_features_keep_quantile_psi() {
        let (severity, test, _) = judge(&[1.0, 0.0, 1.0, 0.0], &[1.0, -0.0, 1.0, 0.0]);
        assert_eq!((severity, test), (Severity::Ok, TestKind::Chi2));
        let continuous: Vec<f64> = (0..1_000).map(f64::from).collect();
        assert_eq!(judge(&continuous, &continuous).1, TestKind::Ks);
    }

    proptest! {
        /// A shift of a discrete feature is as severe whichever way it goes.
        #[test]
        fn the_severity_of_a_discrete_shift_does_not_depend_on_its_direction(
            a in 0usize..=2_000,
            b in 0usize..=2_000,
            values in 1usize..=9,
        ) {
            // Rows below `share` take one of `values` levels, the rest 0: at most 10 values.
            let column = |share: usize| -> Vec<f64> {
                (0..2_000usize)
                    .map(|i| if i < share { (i % values + 1) as f64 } else { 0.0 })
                    .collect()
            };
            let (x, y) = (column(a), column(b));
            let forward = judge(&x, &y);
            let backward = judge(&y, &x);
            prop_assert_eq!(forward.0, backward.0, "{:?} vs {:?}", forward, backward);
        }
    }
}
