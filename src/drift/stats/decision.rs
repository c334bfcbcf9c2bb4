//! Per-feature and dataset drift verdicts from the comparisons of one check.
//! The rule is documented at the top of the module tree (`stats/mod.rs`).

use serde::{Deserialize, Serialize};

use super::fdr::benjamini_hochberg;
use super::histogram::Histogram;
use super::policy::DriftPolicy;
use super::prepared::{CategoricalComparison, ComparisonStatus, NumericComparison};

/// One feature's comparison, as produced by `compare_numeric` / `compare_categorical`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FeatureComparison {
    Numeric(NumericComparison),
    Categorical(CategoricalComparison),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    Numerical,
    Categorical,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestKind {
    Ks,
    Chi2,
}

/// Severity, ordered `ok < medium < high`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Ok,
    Medium,
    High,
}

/// Informational PSI band (does not decide drift on its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PsiLevel {
    Ok,
    Warning,
    High,
}

/// Verdict for one feature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureVerdict {
    pub name: String,
    pub kind: FeatureKind,
    pub test: TestKind,
    /// `insufficient_data` when either side had no usable value.
    pub status: ComparisonStatus,
    /// KS D or χ² statistic.
    pub statistic: Option<f64>,
    /// Set when the data was larger than the memory limit and KS D came from quantile
    /// sketches: D is within this distance of the exact statistic (99 % confidence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistic_error_bound: Option<f64>,
    pub p_value: Option<f64>,
    /// Benjamini–Hochberg adjusted (equal to `p_value` when `fdr` is off).
    pub p_value_adjusted: Option<f64>,
    pub psi: Option<f64>,
    pub psi_level: Option<PsiLevel>,
    /// KS D (numeric) or Cramér's V (categorical).
    pub effect_size: Option<f64>,
    pub drifted: bool,
    pub severity: Severity,
    pub n_reference: u64,
    pub n_current: u64,
    pub missing_reference: u64,
    pub missing_current: u64,
    /// Categorical only: categories absent from the reference.
    pub n_new_categories: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new_categories: Vec<String>,
    /// Reference and current counts per PSI bin or category (absent when insufficient data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<Histogram>,
}

/// Verdict for the whole check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetVerdict {
    pub drift_detected: bool,
    /// Maximum feature severity.
    pub severity: Severity,
    /// `insufficient_data` when no feature could be evaluated.
    pub status: ComparisonStatus,
    /// Drifted features / evaluated features (0 when none evaluated).
    pub drifted_share: f64,
    pub n_features: usize,
    pub n_evaluated: usize,
    pub n_drifted: usize,
    pub features: Vec<FeatureVerdict>,
}

fn finite(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite())
}

/// Turn a comparison into an un-decided verdict (p adjusted later).
fn base_verdict(name: &str, cmp: &FeatureComparison) -> FeatureVerdict {
    let mut v = FeatureVerdict {
        name: name.to_owned(),
        kind: FeatureKind::Numerical,
        test: TestKind::Ks,
        status: ComparisonStatus::InsufficientData,
        statistic: None,
        p_value: None,
        p_value_adjusted: None,
        psi: None,
        psi_level: None,
        effect_size: None,
        drifted: false,
        severity: Severity::Ok,
        n_reference: 0,
        n_current: 0,
        missing_reference: 0,
        missing_current: 0,
        n_new_categories: 0,
        new_categories: Vec::new(),
        histogram: None,
        statistic_error_bound: None,
    };
    match cmp {
        FeatureComparison::Numeric(c) => {
            v.n_reference = c.n_reference;
            v.n_current = c.n_current;
            v.missing_reference = c.missing_reference;
            v.missing_current = c.missing_current;
            v.psi = finite(c.psi);
            v.histogram = c.histogram.clone();
            v.statistic_error_bound = c.ks_error_bound;
            if let (ComparisonStatus::Ok, Some(ks)) = (c.status, c.ks) {
                v.statistic = finite(Some(ks.statistic));
                v.effect_size = v.statistic;
                v.p_value = finite(Some(ks.p_value));
            }
        }
        FeatureComparison::Categorical(c) => {
            v.kind = FeatureKind::Categorical;
            v.test = TestKind::Chi2;
            v.n_reference = c.n_reference;
            v.n_current = c.n_current;
            v.missing_reference = c.missing_reference;
            v.missing_current = c.missing_current;
            v.n_new_categories = c.n_new_categories;
            v.new_categories = c.new_categories.clone();
            v.psi = finite(c.psi);
            v.histogram = c.histogram.clone();
            if let (ComparisonStatus::Ok, Some(chi2)) = (c.status, c.chi2) {
                v.statistic = finite(Some(chi2.statistic));
                v.effect_size = finite(Some(chi2.cramers_v));
                v.p_value = finite(Some(chi2.p_value));
            }
        }
    }
    if v.p_value.is_some() && v.effect_size.is_some() {
        v.status = ComparisonStatus::Ok;
    } else {
        v.p_value = None;
        v.effect_size = None;
        v.statistic = None;
    }
    v
}

/// Apply the decision rule to the comparisons of one check.
///
/// The policy is used as given; call [`DriftPolicy::validate`] when loading it.
pub fn evaluate<'a, I>(features: I, policy: &DriftPolicy) -> DatasetVerdict
where
    I: IntoIterator<Item = (&'a str, &'a FeatureComparison)>,
{
    let mut verdicts: Vec<FeatureVerdict> = features
        .into_iter()
        .map(|(name, cmp)| base_verdict(name, cmp))
        .collect();

    let raw: Vec<f64> = verdicts
        .iter()
        .map(|v| v.p_value.unwrap_or(f64::NAN))
        .collect();
    let adjusted = if policy.fdr {
        benjamini_hochberg(&raw)
    } else {
        raw
    };
    for (v, adj) in verdicts.iter_mut().zip(adjusted) {
        if v.status == ComparisonStatus::Ok {
            decide_feature(v, adj, policy);
        }
    }
    dataset_verdict(verdicts, policy)
}

/// Steps 3 and 4 of the rule for one evaluated feature, given its adjusted p-value.
fn decide_feature(v: &mut FeatureVerdict, p_adjusted: f64, policy: &DriftPolicy) {
    v.p_value_adjusted = finite(Some(p_adjusted));
    v.psi_level = v.psi.map(|psi| psi_level(psi, policy));
    let min_effect = match v.kind {
        FeatureKind::Numerical => policy.min_effect_numeric,
        FeatureKind::Categorical => policy.min_effect_categorical,
    };
    let significant = v.p_value_adjusted.is_some_and(|p| p < policy.alpha);
    let large = v.effect_size.is_some_and(|e| e >= min_effect);
    v.drifted = significant && large;
    v.severity = if !v.drifted {
        Severity::Ok
    } else if v.psi.is_some_and(|psi| psi >= policy.psi_high) {
        Severity::High
    } else {
        Severity::Medium
    };
}

fn psi_level(psi: f64, policy: &DriftPolicy) -> PsiLevel {
    if psi >= policy.psi_high {
        PsiLevel::High
    } else if psi >= policy.psi_warning {
        PsiLevel::Warning
    } else {
        PsiLevel::Ok
    }
}

/// Step 5 of the rule: the dataset verdict from the decided features.
fn dataset_verdict(verdicts: Vec<FeatureVerdict>, policy: &DriftPolicy) -> DatasetVerdict {
    let n_features = verdicts.len();
    let n_evaluated = verdicts
        .iter()
        .filter(|v| v.status == ComparisonStatus::Ok)
        .count();
    let n_drifted = verdicts.iter().filter(|v| v.drifted).count();
    let severity = verdicts
        .iter()
        .map(|v| v.severity)
        .max()
        .unwrap_or(Severity::Ok);
    let drifted_share = if n_evaluated == 0 {
        0.0
    } else {
        n_drifted as f64 / n_evaluated as f64
    };
    let drift_detected =
        n_drifted > 0 && (severity == Severity::High || drifted_share >= policy.drift_share);
    DatasetVerdict {
        drift_detected,
        severity,
        status: if n_evaluated == 0 {
            ComparisonStatus::InsufficientData
        } else {
            ComparisonStatus::Ok
        },
        drifted_share,
        n_features,
        n_evaluated,
        n_drifted,
        features: verdicts,
    }
}

#[cfg(test)]
mod tests {
    use super::super::chi2::Chi2Result;
    use super::super::ks::{KsMethod, KsResult};
    use super::*;

    fn num(d: f64, p: f64, psi: f64) -> FeatureComparison {
        FeatureComparison::Numeric(NumericComparison {
            status: ComparisonStatus::Ok,
            n_reference: 1000,
            n_current: 1000,
            missing_reference: 0,
            missing_current: 0,
            ks: Some(KsResult {
                statistic: d,
                p_value: p,
                method: KsMethod::Exact,
            }),
            psi: Some(psi),
            current_bin_counts: vec![],
            histogram: None,
            ks_error_bound: None,
        })
    }

    fn cat(v: f64, p: f64, psi: f64) -> FeatureComparison {
        FeatureComparison::Categorical(CategoricalComparison {
            status: ComparisonStatus::Ok,
            n_reference: 1000,
            n_current: 1000,
            missing_reference: 0,
            missing_current: 0,
            chi2: Some(Chi2Result {
                statistic: 50.0,
                p_value: p,
                dof: 3,
                cramers_v: v,
            }),
            psi: Some(psi),
            n_new_categories: 0,
            new_categories: vec![],
            histogram: None,
        })
    }

    fn insufficient() -> FeatureComparison {
        FeatureComparison::Numeric(NumericComparison {
            status: ComparisonStatus::InsufficientData,
            n_reference: 10,
            n_current: 0,
            missing_reference: 0,
            missing_current: 5,
            ks: None,
            psi: None,
            current_bin_counts: vec![],
            histogram: None,
            ks_error_bound: None,
        })
    }

    fn run(fs: &[(&str, FeatureComparison)], policy: &DriftPolicy) -> DatasetVerdict {
        evaluate(fs.iter().map(|(n, c)| (*n, c)), policy)
    }

    #[test]
    fn significance_and_effect_are_both_required() {
        let p = DriftPolicy::default();
        let v = run(
            &[
                ("big_but_noisy", num(0.4, 0.2, 0.9)), // PSI high, not significant
                ("tiny_but_sure", num(0.004, 1e-9, 0.001)), // significant, negligible
                ("real_medium", num(0.15, 1e-6, 0.1)),
                ("real_high", num(0.3, 1e-12, 0.4)),
            ],
            &p,
        );
        let d: Vec<(bool, Severity)> = v.features.iter().map(|f| (f.drifted, f.severity)).collect();
        assert_eq!(
            d,
            vec![
                (false, Severity::Ok),
                (false, Severity::Ok),
                (true, Severity::Medium),
                (true, Severity::High)
            ]
        );
        assert_eq!(v.features[0].psi_level, Some(PsiLevel::High));
        assert!(v.drift_detected); // a high feature
        assert_eq!(v.severity, Severity::High);
        assert_eq!(v.drifted_share, 0.5);
    }

    #[test]
    fn share_rule_and_medium_only() {
        let p = DriftPolicy::default();
        // 1 medium of 3: no dataset drift
        let v = run(
            &[
                ("a", num(0.15, 1e-6, 0.1)),
                ("b", num(0.01, 0.5, 0.0)),
                ("c", cat(0.01, 0.6, 0.0)),
            ],
            &p,
        );
        assert!(!v.drift_detected);
        assert_eq!(
            (v.severity, v.n_drifted, v.n_evaluated),
            (Severity::Medium, 1, 3)
        );
        // 2 medium of 3 >= 0.5
        let v = run(
            &[
                ("a", num(0.15, 1e-6, 0.1)),
                ("b", num(0.01, 0.5, 0.0)),
                ("c", cat(0.2, 1e-8, 0.21)),
            ],
            &p,
        );
        assert!(v.drift_detected);
        assert_eq!(v.features[2].psi_level, Some(PsiLevel::Warning));
        assert_eq!(v.features[2].kind, FeatureKind::Categorical);
    }

    #[test]
    fn fdr_changes_borderline_decisions() {
        // raw p 0.03 with 5 tests: BH-adjusted >= 0.05 unless others are small
        let fs = [
            ("a", num(0.2, 0.03, 0.3)),
            ("b", num(0.01, 0.9, 0.0)),
            ("c", num(0.01, 0.8, 0.0)),
            ("d", num(0.01, 0.7, 0.0)),
            ("e", num(0.01, 0.6, 0.0)),
        ];
        let on = run(&fs, &DriftPolicy::default());
        assert!(!on.features[0].drifted);
        assert!((on.features[0].p_value_adjusted.unwrap() - 0.15).abs() < 1e-12);
        let off = run(
            &fs,
            &DriftPolicy {
                fdr: false,
                ..DriftPolicy::default()
            },
        );
        assert!(off.features[0].drifted);
        assert_eq!(off.features[0].p_value_adjusted, Some(0.03));
    }

    #[test]
    fn insufficient_data_is_separate_and_excluded() {
        let v = run(
            &[("gone", insufficient()), ("a", num(0.3, 1e-9, 0.5))],
            &DriftPolicy::default(),
        );
        let f = &v.features[0];
        assert_eq!(
            (f.status, f.drifted, f.severity),
            (ComparisonStatus::InsufficientData, false, Severity::Ok)
        );
        assert_eq!(
            (f.p_value, f.p_value_adjusted, f.missing_current),
            (None, None, 5)
        );
        assert_eq!((v.n_evaluated, v.drifted_share), (1, 1.0));
        // BH family size 1: adjusted == raw
        assert_eq!(v.features[1].p_value_adjusted, Some(1e-9));
        let none = run(&[("gone", insufficient())], &DriftPolicy::default());
        assert_eq!(
            (none.status, none.drift_detected),
            (ComparisonStatus::InsufficientData, false)
        );
        let empty = run(&[], &DriftPolicy::default());
        assert_eq!((empty.n_features, empty.severity), (0, Severity::Ok));
    }

    #[test]
    fn serializes_snake_case() {
        let v = run(
            &[("x", cat(0.3, 1e-9, 0.5)), ("gone", insufficient())],
            &DriftPolicy::default(),
        );
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j["features"][0]["kind"], "categorical");
        assert_eq!(j["features"][0]["test"], "chi2");
        assert_eq!(j["features"][0]["severity"], "high");
        assert_eq!(j["features"][0]["psi_level"], "high");
        assert_eq!(j["features"][1]["status"], "insufficient_data");
        assert_eq!(j["features"][1]["p_value"], serde_json::Value::Null);
        assert_eq!(j["severity"], "high");
        assert_eq!(j["drift_detected"], true);
        let back: DatasetVerdict = serde_json::from_value(j).unwrap();
        assert_eq!(back, v);
        let fc = cat(0.3, 1e-9, 0.5);
        let jc = serde_json::to_value(&fc).unwrap();
        assert_eq!(jc["kind"], "categorical");
        assert_eq!(serde_json::from_value::<FeatureComparison>(jc).unwrap(), fc);
        let pol: DriftPolicy = serde_json::from_str(r#"{"alpha": 0.01}"#).unwrap();
        assert_eq!(
            pol,
            DriftPolicy {
                alpha: 0.01,
                ..DriftPolicy::default()
            }
        );
    }

    #[test]
    fn policy_validation() {
        assert!(DriftPolicy::default().validate().is_ok());
        for bad in [
            DriftPolicy {
                alpha: 0.0,
                ..Default::default()
            },
            DriftPolicy {
                alpha: f64::NAN,
                ..Default::default()
            },
            DriftPolicy {
                min_effect_numeric: 1.5,
                ..Default::default()
            },
            DriftPolicy {
                psi_high: 0.1,
                ..Default::default()
            },
            DriftPolicy {
                drift_share: 0.0,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
