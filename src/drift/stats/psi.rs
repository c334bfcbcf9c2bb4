//! Population Stability Index, bit-for-bit the seed's numpy computation:
//!
//! ```python
//! quantiles = np.percentile(reference, np.linspace(0, 100, n_bins + 1))
//! quantiles[0] = -np.inf; quantiles[-1] = np.inf
//! ref_counts = np.histogram(reference, bins=quantiles)[0]
//! cur_counts = np.histogram(current, bins=quantiles)[0]
//! ref_pct = (ref_counts + s) / (len(reference) + s * n_bins)
//! cur_pct = (cur_counts + s) / (len(current) + s * n_bins)
//! psi = np.sum((cur_pct - ref_pct) * np.log(cur_pct / ref_pct))
//! ```
//!
//! `np.percentile` uses linear interpolation (Hyndman–Fan 7) with numpy's
//! `_lerp`; `np.histogram` with explicit edges counts `[e_i, e_{i+1})` for every
//! bin but the last, which is closed. Duplicate edges (ties, constant columns)
//! give empty bins exactly as numpy does.

use serde::{Deserialize, Serialize};

use super::StatsError;
use super::sort::sort_f64;

/// Binning and smoothing parameters of the PSI.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PsiParams {
    /// Number of quantile bins of the reference (default 10).
    pub bins: usize,
    /// Additive smoothing of every bin count (default 0.001).
    pub smoothing: f64,
}

impl Default for PsiParams {
    fn default() -> Self {
        Self {
            bins: 10,
            smoothing: 0.001,
        }
    }
}

impl PsiParams {
    /// `bins >= 1`, `smoothing` finite and `> 0` (so that the PSI is finite).
    pub fn validate(&self) -> Result<(), StatsError> {
        if self.bins == 0 {
            return Err(StatsError::InvalidParameter {
                name: "bins",
                reason: "must be at least 1".into(),
            });
        }
        check_smoothing(self.smoothing)
    }
}

pub(super) fn check_smoothing(s: f64) -> Result<(), StatsError> {
    if !(s.is_finite() && s > 0.0) {
        return Err(StatsError::InvalidParameter {
            name: "smoothing",
            reason: format!("must be finite and > 0, got {s}"),
        });
    }
    Ok(())
}

/// `np.percentile(sorted, q, method='linear')` for a non-empty ascending slice
/// and `q` already divided by 100. Returns `NaN` for an empty slice.
pub fn percentile_linear_sorted(sorted: &[f64], q: f64) -> f64 {
    percentile_linear_at(sorted.len(), q, |i| sorted[i])
}

/// [`percentile_linear_sorted`] of `n` ascending values known by rank through `at` (the
/// streaming check selects only the ranks a percentile reads: [`percentile_ranks`]).
pub fn percentile_linear_at(n: usize, q: f64, at: impl Fn(usize) -> f64) -> f64 {
    if n == 0 || q.is_nan() {
        return f64::NAN;
    }
    let last = (n - 1) as f64;
    let vi = last * q;
    if vi >= last {
        return at(n - 1);
    }
    if vi < 0.0 {
        return at(0);
    }
    let prev = vi.floor();
    let gamma = vi - prev;
    let i = prev as usize;
    let (a, b) = (at(i), at((i + 1).min(n - 1)));
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

/// The ranks (0-based) whose values the seed's inner bin edges of `n` values read.
pub fn percentile_ranks(n: usize, bins: usize) -> Vec<usize> {
    let ranks = std::cell::RefCell::new(Vec::new());
    if n > 0 {
        let _ = reference_bin_edges_at(n, bins, |i| {
            ranks.borrow_mut().push(i);
            0.0
        });
    }
    let mut ranks = ranks.into_inner();
    ranks.sort_unstable();
    ranks.dedup();
    ranks
}

/// The seed's bin edges: reference percentiles at `np.linspace(0, 100, bins+1)`,
/// outer edges replaced by ∓∞. `sorted` must be ascending and non-empty;
/// an empty slice gives `[-inf, NaN.., +inf]`.
pub fn reference_bin_edges(sorted: &[f64], bins: usize) -> Vec<f64> {
    reference_bin_edges_at(sorted.len(), bins, |i| sorted[i])
}

/// [`reference_bin_edges`] of `n` ascending values known by rank through `at`.
pub fn reference_bin_edges_at(n: usize, bins: usize, at: impl Fn(usize) -> f64) -> Vec<f64> {
    let bins = bins.max(1);
    let step = 100.0 / bins as f64;
    let mut edges: Vec<f64> = (0..=bins)
        .map(|i| {
            if i == 0 || i == bins {
                return f64::NAN; // replaced by ∓∞ below; their ranks are never read
            }
            let pct = i as f64 * step;
            percentile_linear_at(n, pct / 100.0, &at)
        })
        .collect();
    edges[0] = f64::NEG_INFINITY;
    edges[bins] = f64::INFINITY;
    edges
}

/// `np.histogram(x, bins=edges)[0]` for ascending `sorted` and non-decreasing
/// `edges` (at least two). Binary searches only: O(bins · log n).
pub fn histogram_sorted(sorted: &[f64], edges: &[f64]) -> Vec<u64> {
    if edges.len() < 2 {
        return Vec::new();
    }
    let last = edges.len() - 1;
    let cum: Vec<usize> = edges
        .iter()
        .enumerate()
        .map(|(i, &e)| {
            if i == last {
                sorted.partition_point(|&x| x <= e)
            } else {
                sorted.partition_point(|&x| x < e)
            }
        })
        .collect();
    cum.windows(2)
        .map(|w| w[1].saturating_sub(w[0]) as u64)
        .collect()
}

/// numpy's pairwise summation (`pairwise_sum` in `loops_utils.h`).
pub(super) fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = -0.0;
        for &x in a {
            res += x;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - (n % 8) {
            for (j, rj) in r.iter_mut().enumerate() {
                *rj += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &x in &a[i..] {
            res += x;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// PSI from bin counts with additive smoothing `s`:
/// `Σ (c% - r%) ln(c% / r%)`, `x% = (count + s) / (total + s·k)`.
pub fn psi_from_counts(
    reference: &[u64],
    current: &[u64],
    smoothing: f64,
) -> Result<f64, StatsError> {
    if reference.len() != current.len() {
        return Err(StatsError::LengthMismatch {
            left: reference.len(),
            right: current.len(),
        });
    }
    check_smoothing(smoothing)?;
    let k = reference.len() as f64;
    let n_ref = reference.iter().map(|&c| u128::from(c)).sum::<u128>() as f64;
    let n_cur = current.iter().map(|&c| u128::from(c)).sum::<u128>() as f64;
    let den_ref = n_ref + smoothing * k;
    let den_cur = n_cur + smoothing * k;
    let terms: Vec<f64> = reference
        .iter()
        .zip(current)
        .map(|(&r, &c)| {
            let rp = (r as f64 + smoothing) / den_ref;
            let cp = (c as f64 + smoothing) / den_cur;
            (cp - rp) * (cp / rp).ln()
        })
        .collect();
    Ok(pairwise_sum(&terms))
}

/// The seed's numeric PSI on raw samples. Non-finite values are dropped
/// (use [`super::prepared`] to have them counted); either side empty → error.
pub fn psi_numeric(
    reference: &[f64],
    current: &[f64],
    params: &PsiParams,
) -> Result<f64, StatsError> {
    params.validate()?;
    let mut r: Vec<f64> = reference
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let mut c: Vec<f64> = current.iter().copied().filter(|v| v.is_finite()).collect();
    if r.is_empty() || c.is_empty() {
        return Err(StatsError::EmptySample);
    }
    sort_f64(&mut r);
    sort_f64(&mut c);
    let edges = reference_bin_edges(&r, params.bins);
    psi_from_counts(
        &histogram_sorted(&r, &edges),
        &histogram_sorted(&c, &edges),
        params.smoothing,
    )
}

/// PSI of two probability vectors, no smoothing: `Σ (a - e) ln(a / e)`.
///
/// Entries must be finite and `>= 0`; a bin that is zero on both sides
/// contributes 0, a bin that is zero on one side only makes the PSI `+∞`.
pub fn psi_from_proportions(expected: &[f64], actual: &[f64]) -> Result<f64, StatsError> {
    if expected.len() != actual.len() {
        return Err(StatsError::LengthMismatch {
            left: expected.len(),
            right: actual.len(),
        });
    }
    if expected
        .iter()
        .chain(actual)
        .any(|p| !(p.is_finite() && *p >= 0.0))
    {
        return Err(StatsError::InvalidParameter {
            name: "proportions",
            reason: "must be finite and non-negative".into(),
        });
    }
    let terms: Vec<f64> = expected
        .iter()
        .zip(actual)
        .map(|(&e, &a)| {
            if e == a {
                0.0
            } else if e == 0.0 || a == 0.0 {
                f64::INFINITY
            } else {
                (a - e) * (a / e).ln()
            }
        })
        .collect();
    Ok(pairwise_sum(&terms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    #[test]
    fn proportions_vector_from_brief() {
        let v = psi_from_proportions(&[0.25; 4], &[0.1, 0.2, 0.3, 0.4]).unwrap();
        assert!(close(v, 0.228_217_4, 1e-6), "{v}");
        assert_eq!(
            psi_from_proportions(&[0.5, 0.5, 0.0], &[0.5, 0.5, 0.0]).unwrap(),
            0.0
        );
        assert_eq!(
            psi_from_proportions(&[0.5, 0.5], &[1.0, 0.0]).unwrap(),
            f64::INFINITY
        );
        assert!(psi_from_proportions(&[0.5], &[0.5, 0.5]).is_err());
        assert!(psi_from_proportions(&[-0.5, 1.5], &[0.5, 0.5]).is_err());
        assert!(psi_from_proportions(&[f64::NAN], &[1.0]).is_err());
    }

    #[test]
    fn percentile_matches_numpy() {
        // np.percentile([1, 2, 3, 4, 10], [0, 10, 25, 50, 90, 100])
        // -> [1., 1.4, 2., 3., 7.6, 10.]
        let s = [1.0, 2.0, 3.0, 4.0, 10.0];
        let want = [1.0, 1.4, 2.0, 3.0, 7.6, 10.0];
        for (q, w) in [0.0, 0.1, 0.25, 0.5, 0.9, 1.0].iter().zip(want) {
            assert!(close(percentile_linear_sorted(&s, *q), w, 1e-15), "{q}");
        }
        assert!(percentile_linear_sorted(&[], 0.5).is_nan());
    }

    #[test]
    fn histogram_matches_numpy_semantics() {
        // np.histogram([1,2,2,3,3,3,4], bins=[-inf, 2, 2, 3, inf]) -> [1, 0, 2, 4]
        let x = [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0];
        let e = [f64::NEG_INFINITY, 2.0, 2.0, 3.0, f64::INFINITY];
        assert_eq!(histogram_sorted(&x, &e), vec![1, 0, 2, 4]);
        // last bin closed: np.histogram([0, 1, 2], bins=[0, 1, 2]) -> [1, 2]
        assert_eq!(
            histogram_sorted(&[0.0, 1.0, 2.0], &[0.0, 1.0, 2.0]),
            vec![1, 2]
        );
    }

    #[test]
    fn constant_reference_column() {
        // seed PSI for reference = [5]*100, current = [5]*50 + [6]*50 (numpy):
        // edges = [-inf, 5, ..., 5, inf]; ref counts [0]*9 + [100];
        // cur counts [0]*9 + [100] too (x >= 5 all land in the closed last bin) -> psi 0
        let r = vec![5.0; 100];
        let mut c = vec![5.0; 50];
        c.extend(vec![6.0; 50]);
        let p = psi_numeric(&r, &c, &PsiParams::default()).unwrap();
        assert_eq!(p, 0.0);
        // current below the constant lands in bin 0: numpy gives 23.02356857298316
        let c2 = vec![4.0; 100];
        let p2 = psi_numeric(&r, &c2, &PsiParams::default()).unwrap();
        assert!(close(p2, 23.023_568_572_983_16, 1e-12), "{p2}");
    }

    #[test]
    fn identical_samples_give_zero_and_params_are_checked() {
        let r: Vec<f64> = (0..1000).map(|i| f64::from(i).sin()).collect();
        assert_eq!(psi_numeric(&r, &r, &PsiParams::default()).unwrap(), 0.0);
        let bad = PsiParams {
            bins: 0,
            smoothing: 0.001,
        };
        assert!(psi_numeric(&r, &r, &bad).is_err());
        let bad = PsiParams {
            bins: 10,
            smoothing: 0.0,
        };
        assert!(psi_numeric(&r, &r, &bad).is_err());
        assert_eq!(
            psi_numeric(&[f64::NAN], &r, &PsiParams::default()),
            Err(StatsError::EmptySample)
        );
    }

    #[test]
    fn pairwise_sum_matches_plain_sum_closely() {
        let v: Vec<f64> = (0..1000).map(|i| 1.0 / f64::from(i + 1)).collect();
        let plain: f64 = v.iter().sum();
        assert!(close(pairwise_sum(&v), plain, 1e-14));
        assert_eq!(pairwise_sum(&[1.0, 2.0, 3.0]), 6.0);
    }
}
