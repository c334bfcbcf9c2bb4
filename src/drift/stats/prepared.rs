//! Prepared references (computed once per model version) and the per-check
//! comparisons against them.
//!
//! A numeric reference keeps its finite values sorted, the PSI bin edges and
//! its bin counts. [`compare_numeric`] sorts the current sample once and
//! derives both the KS statistic (one linear merge) and the PSI counts
//! (binary-search partition points of the edges) from that single sort.
//! NaN and ±∞ are counted as missing and excluded on both sides; an empty
//! (or all-missing) side gives [`ComparisonStatus::InsufficientData`].

use serde::{Deserialize, Serialize};

use super::StatsError;
use super::categorical::{CategoricalCounts, aligned_counts};
use super::chi2::{Chi2Result, chi2_homogeneity};
use super::histogram::Histogram;
use super::ks::{KsResult, ks_pvalue, ks_statistic_sorted_unchecked};
use super::psi::{
    PsiParams, check_smoothing, histogram_sorted, psi_from_counts, reference_bin_edges,
};
use super::sketch::{Distribution, ks_distance_approx};
use super::sort::sort_f64;

/// How many new category names a comparison lists (the count is always exact).
pub const MAX_LISTED_NEW_CATEGORIES: usize = 20;

/// Whether a comparison could be computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComparisonStatus {
    Ok,
    /// The reference or the current sample has no usable value.
    InsufficientData,
}

/// A numeric reference column, prepared once.
#[derive(Clone, Debug, PartialEq)]
pub struct NumericReference {
    /// The finite values, sorted, or (reference larger than the memory limit) a sketch.
    dist: Distribution,
    edges: Vec<f64>,
    counts: Vec<u64>,
    missing: u64,
    params: PsiParams,
}

impl NumericReference {
    /// Prepare a reference column. Non-finite values are counted as missing.
    /// Fails only on invalid `params`; an all-missing column is accepted (every
    /// comparison against it then reports insufficient data).
    pub fn new(values: Vec<f64>, params: PsiParams) -> Result<Self, StatsError> {
        params.validate()?;
        let total = values.len();
        let mut sorted = values;
        sorted.retain(|v| v.is_finite());
        let missing = (total - sorted.len()) as u64;
        sort_f64(&mut sorted);
        let (edges, counts) = if sorted.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let edges = reference_bin_edges(&sorted, params.bins);
            let counts = histogram_sorted(&sorted, &edges);
            (edges, counts)
        };
        Ok(Self {
            dist: Distribution::Exact(sorted),
            edges,
            counts,
            missing,
            params,
        })
    }

    /// A reference summarised while streamed: its distribution (a sketch when it did not fit
    /// the memory limit) and the PSI edges and bin counts computed exactly from it.
    pub fn from_parts(
        dist: Distribution,
        edges: Vec<f64>,
        counts: Vec<u64>,
        missing: u64,
        params: PsiParams,
    ) -> Result<Self, StatsError> {
        params.validate()?;
        if !edges.is_empty() && (edges.len() != params.bins + 1 || counts.len() != params.bins) {
            return Err(StatsError::LengthMismatch {
                left: edges.len(),
                right: params.bins + 1,
            });
        }
        Ok(Self {
            dist,
            edges,
            counts,
            missing,
            params,
        })
    }

    /// Number of finite values.
    pub fn len(&self) -> usize {
        usize::try_from(self.dist.n()).unwrap_or(usize::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.dist.is_empty()
    }

    /// The finite values (sorted) or their sketch.
    pub fn distribution(&self) -> &Distribution {
        &self.dist
    }

    /// Number of NaN/±∞ values that were excluded.
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// The finite values, ascending, when held exactly.
    pub fn sorted_values(&self) -> Option<&[f64]> {
        match &self.dist {
            Distribution::Exact(v) => Some(v),
            Distribution::Sketch(_) => None,
        }
    }

    /// PSI bin edges (`bins + 1` values, outer ones ∓∞); empty if no data.
    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    /// Reference count per PSI bin; empty if no data.
    pub fn bin_counts(&self) -> &[u64] {
        &self.counts
    }

    pub fn params(&self) -> PsiParams {
        self.params
    }
}

/// KS + PSI of a current numeric sample against a prepared reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NumericComparison {
    pub status: ComparisonStatus,
    pub n_reference: u64,
    pub n_current: u64,
    pub missing_reference: u64,
    pub missing_current: u64,
    /// `None` when the status is insufficient data.
    pub ks: Option<KsResult>,
    pub psi: Option<f64>,
    /// Current count per reference PSI bin (empty when insufficient data).
    pub current_bin_counts: Vec<u64>,
    /// Both sides per PSI bin, for a picture (`None` when insufficient data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<Histogram>,
    /// Set when a side was larger than the memory limit and KS came from quantile sketches:
    /// the statistic is within this distance of the exact one (99 % confidence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ks_error_bound: Option<f64>,
}

/// A current numeric sample summarised while streamed: its distribution (a sketch when it did
/// not fit the memory limit), its exact counts in the reference's PSI bins, and the missing.
#[derive(Clone, Debug, PartialEq)]
pub struct CurrentSummary {
    pub dist: Distribution,
    pub bin_counts: Vec<u64>,
    pub missing: u64,
}

/// Compare a current sample (taken by value and sorted in place) with a
/// prepared reference. Never panics.
pub fn compare_numeric(reference: &NumericReference, current: Vec<f64>) -> NumericComparison {
    let total = current.len();
    let mut cur = current;
    cur.retain(|v| v.is_finite());
    let missing_current = (total - cur.len()) as u64;
    let mut out = NumericComparison {
        status: ComparisonStatus::InsufficientData,
        n_reference: reference.len() as u64,
        n_current: cur.len() as u64,
        missing_reference: reference.missing,
        missing_current,
        ks: None,
        psi: None,
        current_bin_counts: Vec::new(),
        histogram: None,
        ks_error_bound: None,
    };
    if reference.is_empty() || cur.is_empty() {
        return out;
    }
    sort_f64(&mut cur);
    let counts = histogram_sorted(&cur, &reference.edges);
    let Distribution::Exact(sorted) = &reference.dist else {
        // a sketched reference: KS within the sketch's bound
        return compare_numeric_summary(
            reference,
            CurrentSummary {
                dist: Distribution::Exact(cur),
                bin_counts: counts,
                missing: missing_current,
            },
        );
    };
    let d = ks_statistic_sorted_unchecked(sorted, &cur);
    let ks = ks_pvalue(d, reference.len() as u64, cur.len() as u64);
    out.psi = psi_from_counts(&reference.counts, &counts, reference.params.smoothing).ok();
    out.ks = Some(ks);
    out.histogram = Histogram::numeric(
        &reference.edges,
        &reference.counts,
        &counts,
        reference.dist.range(),
        cur.first().zip(cur.last()).map(|(a, b)| [*a, *b]),
    );
    out.current_bin_counts = counts;
    out.status = ComparisonStatus::Ok;
    out
}

/// Compare a streamed current summary with a prepared reference. Both exact: the same
/// result as [`compare_numeric`]; a sketch on either side: KS from
/// [`ks_distance_approx`] with its error bound, PSI exact from the bin counts.
pub fn compare_numeric_summary(
    reference: &NumericReference,
    current: CurrentSummary,
) -> NumericComparison {
    let CurrentSummary {
        dist,
        bin_counts,
        missing,
    } = current;
    let dist = match (reference.dist.is_exact(), dist) {
        (true, Distribution::Exact(values)) => {
            // bit for bit the in-memory comparison
            let mut out = compare_numeric(reference, values);
            out.missing_current = missing;
            return out;
        }
        (_, dist) => dist,
    };
    let mut out = NumericComparison {
        status: ComparisonStatus::InsufficientData,
        n_reference: reference.len() as u64,
        n_current: dist.n(),
        missing_reference: reference.missing,
        missing_current: missing,
        ks: None,
        psi: None,
        current_bin_counts: Vec::new(),
        histogram: None,
        ks_error_bound: None,
    };
    let Some((d, bound)) = ks_distance_approx(&reference.dist, &dist) else {
        return out;
    };
    out.ks = Some(ks_pvalue(d, reference.len() as u64, dist.n()));
    out.ks_error_bound = Some(bound);
    out.psi = psi_from_counts(&reference.counts, &bin_counts, reference.params.smoothing).ok();
    out.histogram = Histogram::numeric(
        &reference.edges,
        &reference.counts,
        &bin_counts,
        reference.dist.range(),
        dist.range(),
    );
    out.current_bin_counts = bin_counts;
    out.status = ComparisonStatus::Ok;
    out
}

/// A categorical reference column, prepared once.
#[derive(Clone, Debug, PartialEq)]
pub struct CategoricalReference {
    counts: CategoricalCounts,
    smoothing: f64,
}

impl CategoricalReference {
    /// `smoothing` is the PSI's additive smoothing (finite, > 0; 0.001 in the seed).
    pub fn new(counts: CategoricalCounts, smoothing: f64) -> Result<Self, StatsError> {
        check_smoothing(smoothing)?;
        Ok(Self { counts, smoothing })
    }

    pub fn counts(&self) -> &CategoricalCounts {
        &self.counts
    }

    pub fn smoothing(&self) -> f64 {
        self.smoothing
    }
}

/// χ² homogeneity + Cramér's V + PSI of current category counts against a
/// prepared reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CategoricalComparison {
    pub status: ComparisonStatus,
    pub n_reference: u64,
    pub n_current: u64,
    pub missing_reference: u64,
    pub missing_current: u64,
    /// `None` when the status is insufficient data.
    pub chi2: Option<Chi2Result>,
    pub psi: Option<f64>,
    /// Number of categories seen in the current sample but never in the reference.
    pub n_new_categories: u64,
    /// Up to [`MAX_LISTED_NEW_CATEGORIES`] of them, lexicographically first.
    pub new_categories: Vec<String>,
    /// Both sides per category, for a picture (`None` when insufficient data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<Histogram>,
}

pub fn compare_categorical(
    reference: &CategoricalReference,
    current: &CategoricalCounts,
) -> CategoricalComparison {
    let mut out = CategoricalComparison {
        status: ComparisonStatus::InsufficientData,
        n_reference: reference.counts.total(),
        n_current: current.total(),
        missing_reference: reference.counts.missing(),
        missing_current: current.missing(),
        chi2: None,
        psi: None,
        n_new_categories: 0,
        new_categories: Vec::new(),
        histogram: None,
    };
    if out.n_reference == 0 || out.n_current == 0 {
        return out;
    }
    let (cats, r, c) = aligned_counts(&reference.counts, current);
    for ((name, &rc), &cc) in cats.iter().zip(&r).zip(&c) {
        if rc == 0 && cc > 0 {
            out.n_new_categories += 1;
            if out.new_categories.len() < MAX_LISTED_NEW_CATEGORIES {
                out.new_categories.push(name.clone());
            }
        }
    }
    match chi2_homogeneity(&r, &c) {
        Ok(chi2) => {
            out.chi2 = Some(chi2);
            out.psi = psi_from_counts(&r, &c, reference.smoothing).ok();
            out.histogram = Histogram::categorical(&cats, &r, &c);
            out.status = ComparisonStatus::Ok;
        }
        Err(_) => out.status = ComparisonStatus::InsufficientData,
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::ks::{KsMethod, ks_2samp};
    use super::super::psi::psi_numeric;
    use super::*;

    #[test]
    fn prepared_numeric_equals_direct_functions() {
        let r: Vec<f64> = (0..3000)
            .map(|i| (f64::from(i) * 0.37).sin() * 3.0)
            .collect();
        let c: Vec<f64> = (0..2500)
            .map(|i| (f64::from(i) * 0.11).cos() * 2.5 + 0.3)
            .collect();
        let prep = NumericReference::new(r.clone(), PsiParams::default()).unwrap();
        let cmp = compare_numeric(&prep, c.clone());
        assert_eq!(cmp.status, ComparisonStatus::Ok);
        assert_eq!(cmp.ks, Some(ks_2samp(&r, &c).unwrap()));
        assert_eq!(
            cmp.psi,
            Some(psi_numeric(&r, &c, &PsiParams::default()).unwrap())
        );
        assert_eq!(cmp.current_bin_counts.iter().sum::<u64>(), 2500);
        assert_eq!(prep.bin_counts().iter().sum::<u64>(), 3000);
    }

    #[test]
    fn missing_values_are_counted_and_excluded() {
        let r = vec![1.0, f64::NAN, 2.0, 3.0, f64::INFINITY];
        let c = vec![f64::NEG_INFINITY, 1.5, 2.5, f64::NAN, 3.5];
        let prep = NumericReference::new(r, PsiParams::default()).unwrap();
        let cmp = compare_numeric(&prep, c);
        assert_eq!((cmp.n_reference, cmp.missing_reference), (3, 2));
        assert_eq!((cmp.n_current, cmp.missing_current), (3, 2));
        let direct = ks_2samp(&[1.0, 2.0, 3.0], &[1.5, 2.5, 3.5]).unwrap();
        assert_eq!(cmp.ks, Some(direct));
        assert_eq!(direct.method, KsMethod::Exact);
    }

    #[test]
    fn empty_or_all_missing_sides_are_insufficient() {
        let prep = NumericReference::new(vec![f64::NAN, f64::NAN], PsiParams::default()).unwrap();
        let cmp = compare_numeric(&prep, vec![1.0, 2.0]);
        assert_eq!(cmp.status, ComparisonStatus::InsufficientData);
        assert_eq!((cmp.ks, cmp.psi, cmp.missing_reference), (None, None, 2));
        let prep = NumericReference::new(vec![1.0, 2.0], PsiParams::default()).unwrap();
        let cmp = compare_numeric(&prep, vec![]);
        assert_eq!(cmp.status, ComparisonStatus::InsufficientData);
        let cmp = compare_numeric(&prep, vec![f64::NAN]);
        assert_eq!(
            (cmp.status, cmp.missing_current),
            (ComparisonStatus::InsufficientData, 1)
        );
        assert!(
            NumericReference::new(
                vec![1.0],
                PsiParams {
                    bins: 0,
                    smoothing: 0.1
                }
            )
            .is_err()
        );
    }

    #[test]
    fn constant_columns_work() {
        let prep = NumericReference::new(vec![2.0; 500], PsiParams::default()).unwrap();
        let same = compare_numeric(&prep, vec![2.0; 300]);
        let ks = same.ks.unwrap();
        // numpy (seed formula): 6.129564571037722e-06 (smoothing with unequal n)
        assert_eq!((ks.statistic, ks.p_value), (0.0, 1.0));
        assert!((same.psi.unwrap() - 6.129_564_571_037_722e-6).abs() < 1e-18);
        let moved = compare_numeric(&prep, vec![1.0; 300]);
        assert_eq!(moved.ks.unwrap().statistic, 1.0);
        // numpy: 25.73322297055646
        assert!((moved.psi.unwrap() - 25.733_222_970_556_46).abs() < 1e-12);
    }

    #[test]
    fn categorical_comparison_reports_new_categories() {
        let r = CategoricalCounts::from_counts([("a", 40), ("b", 40), ("c", 20)], 3);
        let c = CategoricalCounts::from_counts([("a", 30), ("b", 50), ("c", 15), ("new", 5)], 0);
        let prep = CategoricalReference::new(r, 0.001).unwrap();
        let cmp = compare_categorical(&prep, &c);
        assert_eq!(cmp.status, ComparisonStatus::Ok);
        assert_eq!(
            (cmp.n_new_categories, cmp.new_categories.clone()),
            (1, vec!["new".to_owned()])
        );
        let chi2 = cmp.chi2.unwrap();
        assert_eq!(chi2.dof, 3);
        assert_eq!(cmp.missing_reference, 3);
        let empty = compare_categorical(&prep, &CategoricalCounts::from_counts([("a", 0)], 9));
        assert_eq!(empty.status, ComparisonStatus::InsufficientData);
        assert_eq!(empty.missing_current, 9);
        assert!(CategoricalReference::new(CategoricalCounts::new(), f64::NAN).is_err());
    }
}
