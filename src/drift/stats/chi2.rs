//! Chi-square test of homogeneity on a 2×k table (reference row, current
//! row), identical to `scipy.stats.chi2_contingency(table, correction=False)`,
//! and Cramér's V of the same table.
//!
//! Columns where both rows are zero are dropped first (a category seen in
//! neither sample does not exist), so every expected frequency is positive.
//! With a single remaining column the table is degenerate: statistic 0,
//! p-value 1, dof 0 — scipy's own convention for `dof == 0`.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::StatsError;
use super::psi::pairwise_sum;

/// Result of the chi-square homogeneity test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chi2Result {
    pub statistic: f64,
    pub p_value: f64,
    /// k − 1 for k non-empty columns (0 when k ≤ 1).
    pub dof: u64,
    /// Cramér's V = sqrt(χ² / (N · (min(2, k) − 1))), 0 when k ≤ 1.
    pub cramers_v: f64,
}

/// Upper tail of the chi-square distribution, `scipy.stats.chi2.sf(x, dof)`.
/// `x <= 0` → 1; `dof == 0` → 0 for `x > 0` (point mass at 0).
pub fn chi2_sf(x: f64, dof: u64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x.is_infinite() {
        return 0.0;
    }
    match ChiSquared::new(dof as f64) {
        Ok(d) => d.sf(x).clamp(0.0, 1.0),
        Err(_) => 0.0, // dof == 0: all mass at 0, and x > 0 here
    }
}

/// `chi2_contingency([reference, current], correction=False)` after removing
/// columns that are zero in both rows. Errors if the rows differ in length or
/// either row sums to zero.
pub fn chi2_homogeneity(reference: &[u64], current: &[u64]) -> Result<Chi2Result, StatsError> {
    if reference.len() != current.len() {
        return Err(StatsError::LengthMismatch {
            left: reference.len(),
            right: current.len(),
        });
    }
    let cols: Vec<(f64, f64)> = reference
        .iter()
        .zip(current)
        .filter(|(r, c)| **r > 0 || **c > 0)
        .map(|(&r, &c)| (r as f64, c as f64))
        .collect();
    let row_r: f64 = cols.iter().map(|c| c.0).sum();
    let row_c: f64 = cols.iter().map(|c| c.1).sum();
    if row_r == 0.0 || row_c == 0.0 {
        return Err(StatsError::EmptySample);
    }
    let k = cols.len() as u64;
    if k <= 1 {
        return Ok(Chi2Result {
            statistic: 0.0,
            p_value: 1.0,
            dof: 0,
            cramers_v: 0.0,
        });
    }
    let total = row_r + row_c;
    // scipy: expected = row_sum * col_sum / total; terms over the flattened
    // 2×k table (first row then second row), summed pairwise by numpy.
    let mut terms = Vec::with_capacity(2 * cols.len());
    for (row_sum, pick) in [(row_r, 0usize), (row_c, 1usize)] {
        for &(r, c) in &cols {
            let obs = if pick == 0 { r } else { c };
            let expected = row_sum * (r + c) / total;
            let d = obs - expected;
            terms.push(d * d / expected);
        }
    }
    let statistic = pairwise_sum(&terms);
    let dof = k - 1;
    let p_value = chi2_sf(statistic, dof);
    let cramers_v = (statistic / total).sqrt().clamp(0.0, 1.0);
    Ok(Chi2Result {
        statistic,
        p_value,
        dof,
        cramers_v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    #[test]
    fn brief_vector() {
        // chi2_contingency([[40,40,20],[30,50,20]], correction=False)
        // -> 2.5396825396825395, 0.28087620176428163, dof 2
        let r = chi2_homogeneity(&[40, 40, 20], &[30, 50, 20]).unwrap();
        assert!(
            close(r.statistic, 2.539_682_539_682_539_5, 1e-12),
            "{}",
            r.statistic
        );
        assert!(
            close(r.p_value, 0.280_876_201_764_281_63, 1e-9),
            "{}",
            r.p_value
        );
        assert_eq!(r.dof, 2);
        // association(method='cramer') = sqrt(2.5396825/200)
        assert!(close(
            r.cramers_v,
            (2.539_682_539_682_539_5f64 / 200.0).sqrt(),
            1e-12
        ));
    }

    #[test]
    fn degenerate_and_invalid_tables() {
        let r = chi2_homogeneity(&[10, 0], &[7, 0]).unwrap();
        assert_eq!(
            (r.statistic, r.p_value, r.dof, r.cramers_v),
            (0.0, 1.0, 0, 0.0)
        );
        assert_eq!(
            chi2_homogeneity(&[0, 0], &[1, 2]),
            Err(StatsError::EmptySample)
        );
        assert!(chi2_homogeneity(&[1], &[1, 2]).is_err());
        // an all-zero column does not count towards dof
        let a = chi2_homogeneity(&[40, 0, 40, 20], &[30, 0, 50, 20]).unwrap();
        let b = chi2_homogeneity(&[40, 40, 20], &[30, 50, 20]).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn chi2_sf_tail_accuracy() {
        // scipy.stats.chi2.sf values
        let cases = [
            (2.539_682_539_682_539_5, 2u64, 0.280_876_201_764_281_63),
            (100.0, 3, 1.554_159_431_389_602_6e-21),
            (300.0, 10, 1.554_674_754_380_308_7e-58),
            (50.0, 1, 1.537_459_794_428_033e-12),
            (1.0, 30, 1.0),
        ];
        for (x, k, want) in cases {
            let got = chi2_sf(x, k);
            assert!(close(got, want, 1e-9), "x={x} k={k}: {got:e} vs {want:e}");
        }
        assert_eq!(chi2_sf(0.0, 3), 1.0);
        assert_eq!(chi2_sf(1.0, 0), 0.0);
        assert!(chi2_sf(f64::NAN, 3).is_nan());
    }
}
