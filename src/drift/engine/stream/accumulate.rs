//! Per-feature accumulators of a streaming check: exact while the memory limit allows, a
//! quantile sketch past it; PSI bin counts and category counts always exact.

use std::collections::BTreeMap;

use crate::drift::data::Column;
use crate::drift::stats::{CategoricalCounts, Distribution, QuantileSketch, sort_f64};

use super::super::reference::value_key;

/// Most distinct values of a discrete feature counted one by one in the current data; more
/// (a reference flag whose current values became continuous) share one category.
pub(super) const MAX_CURRENT_VALUES: usize = 10_000;
/// The category the values past [`MAX_CURRENT_VALUES`] are counted in.
pub(super) const OTHER_VALUES: &str = "(other values)";

/// A numeric feature's values: every finite value while held, else a sketch of them.
#[derive(Debug, Default)]
pub(super) struct Values {
    exact: Option<Vec<f64>>,
    sketch: Option<QuantileSketch>,
    pub(super) missing: u64,
}

impl Values {
    pub(super) fn new() -> Self {
        Self {
            exact: Some(Vec::new()),
            sketch: None,
            missing: 0,
        }
    }

    pub(super) fn push(&mut self, values: &[f64]) {
        let before = values.len();
        match (&mut self.exact, &mut self.sketch) {
            (Some(v), _) => {
                let start = v.len();
                v.extend(values.iter().copied().filter(|x| x.is_finite()));
                self.missing += (before - (v.len() - start)) as u64;
            }
            (None, Some(s)) => {
                let n0 = s.n();
                s.extend(values);
                self.missing += before as u64 - (s.n() - n0);
            }
            (None, None) => self.missing += before as u64,
        }
    }

    /// Bytes held by exact values.
    pub(super) fn held_bytes(&self) -> u64 {
        self.exact.as_ref().map_or(0, |v| v.capacity() as u64 * 8)
    }

    /// Give up exactness: the values go into a sketch and their memory is freed.
    pub(super) fn switch_to_sketch(&mut self) {
        if let Some(v) = self.exact.take() {
            let mut s = QuantileSketch::new();
            s.extend(&v);
            self.sketch = Some(s);
        }
    }

    #[cfg(test)]
    pub(super) fn is_exact(&self) -> bool {
        self.exact.is_some()
    }

    /// The finite values sorted, or their sketch.
    pub(super) fn finish(self) -> Distribution {
        match (self.exact, self.sketch) {
            (Some(mut v), _) => {
                sort_f64(&mut v);
                Distribution::Exact(v)
            }
            (None, Some(s)) => Distribution::Sketch(s),
            (None, None) => Distribution::Exact(Vec::new()),
        }
    }

    /// The exact values, unsorted (the reference's discrete or in-memory preparation).
    pub(super) fn take_exact(&mut self) -> Option<Vec<f64>> {
        self.exact.take()
    }
}

/// Counts of a numeric column's values as categories, while there are at most `limit`
/// distinct ones (`None` past it).
#[derive(Debug)]
pub(super) struct ValueCounts {
    counts: Option<BTreeMap<u64, (f64, u64)>>,
    limit: usize,
    missing: u64,
    /// Values counted in [`OTHER_VALUES`] (the current side's overflow).
    other: u64,
    overflow_to_other: bool,
}

impl ValueCounts {
    /// The reference side: stop counting past `limit` (the feature is then continuous).
    pub(super) fn up_to(limit: usize) -> Self {
        Self {
            counts: Some(BTreeMap::new()),
            limit,
            missing: 0,
            other: 0,
            overflow_to_other: false,
        }
    }

    /// The current side of a discrete feature: values past the limit share one category.
    pub(super) fn with_other() -> Self {
        Self {
            overflow_to_other: true,
            ..Self::up_to(MAX_CURRENT_VALUES)
        }
    }

    pub(super) fn push(&mut self, values: &[f64]) {
        let Some(counts) = &mut self.counts else {
            return;
        };
        for &v in values {
            if v.is_nan() {
                self.missing += 1;
                continue;
            }
            let (key, v) = value_key(v);
            if let Some(slot) = counts.get_mut(&key) {
                slot.1 += 1;
            } else if counts.len() < self.limit {
                counts.insert(key, (v, 1));
            } else if self.overflow_to_other {
                self.other += 1;
            } else {
                self.counts = None;
                return;
            }
        }
    }

    /// Distinct values seen, `None` once past the limit.
    pub(super) fn distinct(&self) -> Option<usize> {
        self.counts.as_ref().map(BTreeMap::len)
    }

    /// The counts as categories (the same names as the in-memory `value_counts`).
    pub(super) fn finish(self) -> Option<CategoricalCounts> {
        let counts = self.counts?;
        let mut out = CategoricalCounts::new();
        for (value, count) in counts.into_values() {
            out.add(&value.to_string(), count);
        }
        if self.other > 0 {
            out.add(OTHER_VALUES, self.other);
        }
        out.add_missing(self.missing);
        Some(out)
    }
}

/// Exact counts of a numeric column in the reference's PSI bins (`np.histogram`'s rule: bin
/// `i` holds `edges[i] <= x < edges[i+1]`, the last bin closed).
#[derive(Debug)]
pub(super) struct BinCounts {
    edges: Vec<f64>,
    counts: Vec<u64>,
}

impl BinCounts {
    pub(super) fn new(edges: &[f64]) -> Self {
        Self {
            edges: edges.to_vec(),
            counts: vec![0; edges.len().saturating_sub(1)],
        }
    }

    pub(super) fn push(&mut self, values: &[f64]) {
        let Some(last) = self.edges.len().checked_sub(1) else {
            return;
        };
        for &x in values.iter().filter(|x| x.is_finite()) {
            // the number of edges <= x, minus one: the bin of x
            let above = self.edges.partition_point(|&e| e <= x);
            let bin = if x == self.edges[last] {
                last - 1
            } else {
                above.saturating_sub(1)
            };
            if let Some(c) = self.counts.get_mut(bin) {
                *c += 1;
            }
        }
    }

    pub(super) fn finish(self) -> Vec<u64> {
        self.counts
    }
}

/// Category counts of a categorical column, merged batch by batch by name.
#[derive(Debug, Default)]
pub(super) struct Categories {
    pub(super) counts: CategoricalCounts,
}

impl Categories {
    pub(super) fn push(&mut self, column: &Column) {
        match column {
            Column::Categorical(c) => {
                let batch = c.counts();
                for (name, n) in batch.iter() {
                    self.counts.add(name, n);
                }
                self.counts.add_missing(batch.missing());
            }
            Column::Numeric(v) => self.counts.add_missing(v.len() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::stats::histogram_sorted;

    #[test]
    fn streamed_bin_counts_equal_the_histogram_of_the_sorted_values() {
        let mut rng = 0x1234_5678_u64;
        let mut values: Vec<f64> = (0..20_000)
            .map(|i| {
                rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                if i % 7 == 0 {
                    ((rng >> 40) % 5) as f64 // ties on the edges
                } else {
                    (rng >> 11) as f64 / (1u64 << 53) as f64 * 6.0 - 1.0
                }
            })
            .collect();
        let edges = [f64::NEG_INFINITY, 0.0, 1.0, 1.0, 2.5, 4.0, f64::INFINITY];
        let mut streamed = BinCounts::new(&edges);
        for chunk in values.chunks(777) {
            streamed.push(chunk);
        }
        sort_f64(&mut values);
        assert_eq!(streamed.finish(), histogram_sorted(&values, &edges));
    }

    #[test]
    fn values_fall_back_to_a_sketch_and_count_missing_either_way() {
        let mut v = Values::new();
        v.push(&[1.0, f64::NAN, 2.0]);
        assert!(v.held_bytes() > 0);
        v.switch_to_sketch();
        v.push(&[f64::INFINITY, 3.0]);
        assert_eq!(v.missing, 2);
        assert!(!v.is_exact());
        match v.finish() {
            Distribution::Sketch(s) => assert_eq!(s.n(), 3),
            Distribution::Exact(_) => panic!("exact after switch_to_sketch"),
        }
    }

    #[test]
    fn value_counts_stop_past_the_limit_or_overflow_into_other() {
        let mut r = ValueCounts::up_to(2);
        r.push(&[0.0, -0.0, 1.0, f64::NAN]);
        assert_eq!(r.distinct(), Some(2));
        r.push(&[5.0]);
        assert_eq!(r.distinct(), None);
        let mut c = ValueCounts::with_other();
        let many: Vec<f64> = (0..MAX_CURRENT_VALUES + 5).map(|i| i as f64).collect();
        c.push(&many);
        let counts = c.finish().unwrap();
        assert_eq!(counts.get(OTHER_VALUES), 5);
        assert_eq!(counts.total(), many.len() as u64);
    }
}
