//! Category counts and the categorical PSI.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::StatsError;
use super::psi::psi_from_counts;

/// Counts per category plus the number of missing values (null / absent).
/// A category with count 0 is treated as not seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoricalCounts {
    counts: BTreeMap<String, u64>,
    missing: u64,
}

impl CategoricalCounts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Count raw values; `None` counts as missing.
    pub fn from_values<I, S>(values: I) -> Self
    where
        I: IntoIterator<Item = Option<S>>,
        S: AsRef<str>,
    {
        let mut out = Self::new();
        for v in values {
            match v {
                Some(s) => out.add(s.as_ref(), 1),
                None => out.add_missing(1),
            }
        }
        out
    }

    /// Build from (category, count) pairs and a missing count; repeated
    /// categories are summed.
    pub fn from_counts<I, S>(counts: I, missing: u64) -> Self
    where
        I: IntoIterator<Item = (S, u64)>,
        S: Into<String>,
    {
        let mut out = Self::new();
        for (k, n) in counts {
            let k: String = k.into();
            let slot = out.counts.entry(k).or_insert(0);
            *slot = slot.saturating_add(n);
        }
        out.missing = missing;
        out
    }

    pub fn add(&mut self, category: &str, count: u64) {
        match self.counts.get_mut(category) {
            Some(slot) => *slot = slot.saturating_add(count),
            None => {
                self.counts.insert(category.to_owned(), count);
            }
        }
    }

    pub fn add_missing(&mut self, count: u64) {
        self.missing = self.missing.saturating_add(count);
    }

    /// Count of one category (0 if never seen).
    pub fn get(&self, category: &str) -> u64 {
        self.counts.get(category).copied().unwrap_or(0)
    }

    /// Number of non-missing values.
    pub fn total(&self) -> u64 {
        self.counts.values().fold(0u64, |a, &b| a.saturating_add(b))
    }

    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// Categories with a positive count, in lexicographic order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, &n)| (k.as_str(), n))
    }

    /// Number of categories with a positive count.
    pub fn n_categories(&self) -> usize {
        self.iter().count()
    }
}

/// The 2×k table over the union of categories seen (count > 0) in either
/// sample, in lexicographic order: (categories, reference row, current row).
pub fn aligned_counts(
    reference: &CategoricalCounts,
    current: &CategoricalCounts,
) -> (Vec<String>, Vec<u64>, Vec<u64>) {
    let mut cats = Vec::new();
    let (mut rr, mut cr) = (Vec::new(), Vec::new());
    let mut a = reference.iter().peekable();
    let mut b = current.iter().peekable();
    loop {
        let (name, r, c) = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(&(ka, na)), None) => {
                a.next();
                (ka, na, 0)
            }
            (None, Some(&(kb, nb))) => {
                b.next();
                (kb, 0, nb)
            }
            (Some(&(ka, na)), Some(&(kb, nb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    a.next();
                    (ka, na, 0)
                }
                std::cmp::Ordering::Greater => {
                    b.next();
                    (kb, 0, nb)
                }
                std::cmp::Ordering::Equal => {
                    a.next();
                    b.next();
                    (ka, na, nb)
                }
            },
        };
        cats.push(name.to_owned());
        rr.push(r);
        cr.push(c);
    }
    (cats, rr, cr)
}

/// Categorical PSI over the union of categories of both samples with
/// additive smoothing `s` (the seed's formula with one bin per category):
/// `x% = (count + s) / (total + s·k)`, k = number of categories in the union.
pub fn psi_categorical(
    reference: &CategoricalCounts,
    current: &CategoricalCounts,
    smoothing: f64,
) -> Result<f64, StatsError> {
    if reference.total() == 0 || current.total() == 0 {
        return Err(StatsError::EmptySample);
    }
    let (_, r, c) = aligned_counts(reference, current);
    psi_from_counts(&r, &c, smoothing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_and_alignment() {
        let r = CategoricalCounts::from_values([Some("b"), Some("a"), None, Some("a"), Some("z")]);
        assert_eq!(
            (r.total(), r.missing(), r.get("a"), r.get("q")),
            (4, 1, 2, 0)
        );
        let c = CategoricalCounts::from_counts([("a", 3), ("c", 2), ("z", 0)], 7);
        let (cats, rr, cr) = aligned_counts(&r, &c);
        assert_eq!(cats, vec!["a", "b", "c", "z"]);
        assert_eq!(rr, vec![2, 1, 0, 1]);
        assert_eq!(cr, vec![3, 0, 2, 0]);
        assert_eq!(c.n_categories(), 2);
    }

    #[test]
    fn categorical_psi_matches_numpy() {
        // numpy: ref = [50, 30, 20, 0], cur = [40, 30, 20, 10] over union {a,b,c,d}
        // (cur+s)/(100+4s) vs (ref+s)/(100+4s), s = 0.001 -> 0.9433201590339609
        let r = CategoricalCounts::from_counts([("a", 50), ("b", 30), ("c", 20)], 0);
        let c = CategoricalCounts::from_counts([("a", 40), ("b", 30), ("c", 20), ("d", 10)], 0);
        let p = psi_categorical(&r, &c, 0.001).unwrap();
        assert!((p - 0.943_320_159_033_960_9).abs() < 1e-12, "{p}");
        assert_eq!(psi_categorical(&r, &r, 0.001).unwrap(), 0.0);
        assert_eq!(
            psi_categorical(&CategoricalCounts::new(), &r, 0.001),
            Err(StatsError::EmptySample)
        );
        assert!(psi_categorical(&r, &c, -1.0).is_err());
    }
}
