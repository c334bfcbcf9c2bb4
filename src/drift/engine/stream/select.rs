//! Exact PSI edges of a reference too large to hold: the seed's edges read a few order
//! statistics (two ranks per inner edge), so a second pass keeps only the values near them.
//!
//! The sketch of the first pass brackets each needed rank `r` of `n` values between its
//! quantiles at `r/n ∓ δ`; the second pass counts the values below each bracket and keeps the
//! ones inside, sorted afterwards. A rank whose value is not inside its bracket (the sketch
//! was off by more than δ, possible but improbable) is reported, and the caller passes again
//! with a wider δ. The edges and the reference's bin counts then come out exactly as from
//! the whole sorted column.

use crate::drift::stats::{QuantileSketch, percentile_ranks, reference_bin_edges_at};

/// Values kept near the ranks, per feature, at most (beyond, the pass is retried wider or
/// abandoned): 16 M values = 128 MiB.
pub(super) const MAX_KEPT: usize = 16 << 20;

#[derive(Debug)]
struct Bracket {
    lo: f64,
    hi: f64,
    values: Vec<f64>,
}

/// The second pass for one feature.
#[derive(Debug)]
pub(super) struct RankSelection {
    n: usize,
    bins: usize,
    brackets: Vec<Bracket>,
    /// `gaps[i]`: values below bracket `i` and above bracket `i - 1`.
    gaps: Vec<u64>,
    kept: usize,
}

/// Why a selection could not give exact edges.
#[derive(Debug, PartialEq)]
pub(super) enum SelectionMiss {
    /// A needed rank fell outside its bracket: widen and pass again.
    Outside,
    /// The brackets would hold more than [`MAX_KEPT`] values.
    TooMany,
}

impl RankSelection {
    /// Brackets of half-width `delta` (a fraction of `n`) around the ranks the edges read.
    pub(super) fn new(sketch: &QuantileSketch, bins: usize, delta: f64) -> Self {
        let n = usize::try_from(sketch.n()).unwrap_or(usize::MAX);
        let mut spans: Vec<(f64, f64)> = percentile_ranks(n, bins)
            .into_iter()
            .filter_map(|r| {
                let q = (r as f64 + 0.5) / n as f64;
                Some((sketch.quantile(q - delta)?, sketch.quantile(q + delta)?))
            })
            .collect();
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut brackets: Vec<Bracket> = Vec::new();
        for (lo, hi) in spans {
            match brackets.last_mut() {
                Some(b) if lo <= b.hi => b.hi = b.hi.max(hi),
                _ => brackets.push(Bracket {
                    lo,
                    hi,
                    values: Vec::new(),
                }),
            }
        }
        Self {
            n,
            bins,
            gaps: vec![0; brackets.len() + 1],
            brackets,
            kept: 0,
        }
    }

    pub(super) fn push(&mut self, values: &[f64]) -> Result<(), SelectionMiss> {
        for &x in values.iter().filter(|x| x.is_finite()) {
            let i = self.brackets.partition_point(|b| b.hi < x);
            match self.brackets.get_mut(i) {
                Some(b) if x >= b.lo => {
                    b.values.push(x);
                    self.kept += 1;
                    if self.kept > MAX_KEPT {
                        return Err(SelectionMiss::TooMany);
                    }
                }
                _ => self.gaps[i] += 1,
            }
        }
        Ok(())
    }

    /// The PSI edges and the reference's counts in them, exactly as from the sorted column.
    pub(super) fn finish(mut self) -> Result<(Vec<f64>, Vec<u64>), SelectionMiss> {
        let mut below = Vec::with_capacity(self.brackets.len());
        let mut total = 0u64;
        for (b, gap) in self.brackets.iter_mut().zip(&self.gaps) {
            total += gap;
            below.push(total);
            total += b.values.len() as u64;
            crate::drift::stats::sort_f64(&mut b.values);
        }
        total += self.gaps.last().copied().unwrap_or(0);
        if total != self.n as u64 {
            return Err(SelectionMiss::Outside); // the data changed between the passes
        }
        let missed = std::cell::Cell::new(false);
        let at = |r: usize| {
            let r = r as u64;
            let found = self.brackets.iter().zip(&below).find_map(|(b, &lo)| {
                let i = usize::try_from(r.checked_sub(lo)?).ok()?;
                b.values.get(i).copied()
            });
            found.unwrap_or_else(|| {
                missed.set(true);
                f64::NAN
            })
        };
        let edges = reference_bin_edges_at(self.n, self.bins, at);
        if missed.get() {
            return Err(SelectionMiss::Outside);
        }
        // count(x < e) for the inner edges, from the bracket holding e
        let mut cum = vec![0u64];
        for &e in &edges[1..edges.len().saturating_sub(1)] {
            let i = self.brackets.partition_point(|b| b.hi < e);
            let b = self.brackets.get(i).filter(|b| e >= b.lo);
            let Some(b) = b else {
                return Err(SelectionMiss::Outside);
            };
            cum.push(below[i] + b.values.partition_point(|&v| v < e) as u64);
        }
        cum.push(self.n as u64);
        let counts = cum.windows(2).map(|w| w[1].saturating_sub(w[0])).collect();
        Ok((edges, counts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::stats::{histogram_sorted, reference_bin_edges, sort_f64};

    fn data(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|i| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let u = (s >> 11) as f64 / (1u64 << 53) as f64;
                if i % 5 == 0 {
                    (u * 4.0).floor()
                } else {
                    u * u * 100.0 - 3.0
                }
            })
            .collect()
    }

    #[test]
    fn selected_edges_and_counts_equal_the_sorted_column_bit_for_bit() {
        for (n, bins, seed) in [(300_000, 10, 1), (50_001, 7, 2), (123_457, 20, 3)] {
            let values = data(n, seed);
            let mut sketch = QuantileSketch::new();
            sketch.extend(&values);
            let mut sel = RankSelection::new(&sketch, bins, 2.0 * sketch.cdf_error() + 1e-4);
            for chunk in values.chunks(4096) {
                sel.push(chunk).unwrap();
            }
            let (edges, counts) = sel.finish().unwrap();
            let mut sorted = values;
            sort_f64(&mut sorted);
            let want = reference_bin_edges(&sorted, bins);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&edges), bits(&want), "n {n}");
            assert_eq!(counts, histogram_sorted(&sorted, &want), "n {n}");
        }
    }

    #[test]
    fn a_bracket_that_misses_its_rank_is_reported() {
        let values = data(100_000, 9);
        let mut sketch = QuantileSketch::new();
        sketch.extend(&values);
        // brackets of zero width around a sketch's estimates miss most exact ranks
        let mut sel = RankSelection::new(&sketch, 10, 0.0);
        sel.push(&values).unwrap();
        assert_eq!(sel.finish().unwrap_err(), SelectionMiss::Outside);
    }
}
