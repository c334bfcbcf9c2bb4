//! Benjamini–Hochberg false-discovery-rate adjustment, as
//! `statsmodels.stats.multitest.multipletests(p, method='fdr_bh')[1]`:
//! `p_(i) · m / i`, made monotone from the largest p downwards, capped at 1.

/// BH-adjusted p-values in the input order.
///
/// NaN entries (features without a test) are not part of the family: they
/// stay NaN and do not count towards `m`. Inputs are otherwise used as given
/// (a p-value outside `[0, 1]` is clamped into it first).
pub fn benjamini_hochberg(p_values: &[f64]) -> Vec<f64> {
    let mut out = vec![f64::NAN; p_values.len()];
    let mut idx: Vec<usize> = (0..p_values.len())
        .filter(|&i| !p_values[i].is_nan())
        .collect();
    let m = idx.len();
    if m == 0 {
        return out;
    }
    // stable sort like statsmodels' argsort(kind='mergesort')
    idx.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut running = f64::INFINITY;
    for (rank0, &i) in idx.iter().enumerate().rev() {
        let p = p_values[i].clamp(0.0, 1.0);
        let ecdf = (rank0 + 1) as f64 / m as f64;
        running = running.min(p / ecdf);
        out[i] = running.min(1.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_statsmodels() {
        // multipletests([0.01, 0.04, 0.03, 0.005, 0.5], method='fdr_bh')[1]
        // -> [0.025, 0.05, 0.05, 0.025, 0.5]
        let got = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.005, 0.5]);
        let want = [0.025, 0.05, 0.05, 0.025, 0.5];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-15, "{got:?}");
        }
    }

    #[test]
    fn monotone_capped_and_nan_excluded() {
        let got = benjamini_hochberg(&[0.9, f64::NAN, 0.8, 0.02]);
        assert!(got[1].is_nan());
        // m = 3: sorted 0.02, 0.8, 0.9 -> 0.06, 1.2 -> min(1.2, 0.9) = 0.9, 0.9
        assert!((got[3] - 0.06).abs() < 1e-15);
        assert!((got[2] - 0.9).abs() < 1e-15);
        assert!((got[0] - 0.9).abs() < 1e-15);
        assert_eq!(benjamini_hochberg(&[1.0, 1.0]), vec![1.0, 1.0]);
        assert!(benjamini_hochberg(&[]).is_empty());
        assert_eq!(benjamini_hochberg(&[0.7]), vec![0.7]);
    }
}
