//! Pure statistics core of the drift engine: no I/O, no panics on any input.
//!
//! # Decision rule
//!
//! For every feature of one check the current sample is compared with the
//! reference of the model version:
//!
//! 1. **Test.** Numeric features: two-sample Kolmogorov–Smirnov, with the same
//!    D and p-value as `scipy.stats.ks_2samp` (exact up to 10,000 values per
//!    side, asymptotic above). Categorical features: χ² test of homogeneity on
//!    the 2×k table of the categories seen in either sample, as
//!    `scipy.stats.chi2_contingency(correction=False)`.
//! 2. **Multiple testing.** With `fdr` on (default), the p-values of all
//!    evaluated features of the check are Benjamini–Hochberg adjusted.
//! 3. **Drifted** ⇔ adjusted p < `alpha` (0.05) **and** effect size ≥ the
//!    minimum: KS D ≥ `min_effect_numeric` (0.1), Cramér's V ≥
//!    `min_effect_categorical` (0.1). Significance says the shift is real at the
//!    sample size in hand; the effect size says it is large enough to matter.
//!    Neither alone is drift: a PSI above `psi_high` on a small sample whose
//!    test is not significant is not drift, and a significant but negligible
//!    shift on a huge sample is not drift either.
//! 4. **Severity** of a feature: `ok` unless drifted; a drifted feature is
//!    `high` when its PSI ≥ `psi_high` (0.25), otherwise `medium`. PSI only
//!    grades a shift that already passed step 3; `psi_warning` (0.2) only
//!    labels the informational `psi_level`.
//! 5. **Dataset.** `drift_detected` ⇔ at least one feature is drifted and
//!    (some drifted feature is `high`, or drifted / evaluated features ≥
//!    `drift_share` (0.5)). Dataset severity is the maximum feature severity.
//!    The 0.5 default follows the common dataset-drift convention (Evidently):
//!    a single severe feature already triggers through the `high` clause, so
//!    the share clause only has to catch broad moderate shifts, and a minority
//!    of moderately shifted features (often proxies of one upstream change)
//!    stays visible per feature without declaring the whole dataset drifted.
//!
//! NaN and ±∞ are counted as missing and excluded. A feature whose reference
//! or current sample has no usable value gets status `insufficient_data`: it is
//! never drifted and is left out of the BH family and of the drifted share; a
//! check with no evaluable feature has status `insufficient_data` and no drift.
//!
//! PSI is the seed's numpy computation (reference deciles, outer edges ∓∞,
//! smoothing 0.001), reproduced bit-for-bit including `np.histogram`'s edge
//! semantics.

pub mod categorical;
pub mod chi2;
pub mod decision;
pub mod fdr;
mod float;
pub mod histogram;
pub mod kolmogorov;
pub mod ks;
pub mod policy;
pub mod prepared;
pub mod psi;
pub mod sketch;
pub mod smirnov;
pub mod sort;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod testutil;

pub use categorical::{CategoricalCounts, aligned_counts, psi_categorical};
pub use chi2::{Chi2Result, chi2_homogeneity, chi2_sf};
pub use decision::{
    DatasetVerdict, FeatureComparison, FeatureKind, FeatureVerdict, PsiLevel, Severity, TestKind,
    evaluate,
};
pub use fdr::benjamini_hochberg;
pub use histogram::{Histogram, MAX_HISTOGRAM_CATEGORIES};
pub use kolmogorov::kstwo_sf;
pub use ks::{KsMethod, KsResult, ks_2samp, ks_2samp_sorted, ks_pvalue, ks_statistic_sorted};
pub use policy::DriftPolicy;
pub use prepared::{
    CategoricalComparison, CategoricalReference, ComparisonStatus, CurrentSummary,
    NumericComparison, NumericReference, compare_categorical, compare_numeric,
    compare_numeric_summary,
};
pub use psi::{
    PsiParams, histogram_sorted, percentile_linear_at, percentile_linear_sorted, percentile_ranks,
    psi_from_counts, psi_from_proportions, psi_numeric, reference_bin_edges,
    reference_bin_edges_at,
};
pub use sketch::{Distribution, QuantileSketch, ks_distance_approx};
pub use smirnov::smirnov_sf;
pub use sort::sort_f64;

/// Errors of the statistics core (invalid input, never a panic).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error("sample has no finite values")]
    EmptySample,
    #[error("sample is not sorted ascending or contains NaN")]
    NotSorted,
    #[error("length mismatch: {left} vs {right}")]
    LengthMismatch { left: usize, right: usize },
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter { name: &'static str, reason: String },
}
