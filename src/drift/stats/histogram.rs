//! The two distributions of one feature, side by side, for a picture of the comparison: the
//! reference and current counts per PSI bin (numeric) or per category (categorical). Built
//! from the counts the PSI already computed; the number of categories kept is capped, the
//! rest summed into one "other" bucket, so a report stays small whatever the data.

use serde::{Deserialize, Serialize};

/// Most categories a histogram lists by name (the others are summed into `other_*`).
pub const MAX_HISTOGRAM_CATEGORIES: usize = 30;

/// Longest category name a histogram keeps (characters; a longer one is cut, `…` at its end).
pub const MAX_CATEGORY_NAME: usize = 200;

/// A category's name, cut to [`MAX_CATEGORY_NAME`] characters.
fn short_name(name: &str) -> String {
    match name.char_indices().nth(MAX_CATEGORY_NAME) {
        None => name.to_owned(),
        Some(_) => {
            let mut cut: String = name.chars().take(MAX_CATEGORY_NAME - 1).collect();
            cut.push('…');
            cut
        }
    }
}

/// Reference and current counts over the same bins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Histogram {
    /// The PSI bins: reference quantiles, the outer bins open to ∓∞.
    Numeric {
        /// The inner bin edges (finite, non-decreasing): `bins - 1` values; bin `i` covers
        /// `[edges[i-1], edges[i])`, the first starts at −∞, the last (closed) ends at +∞.
        edges: Vec<f64>,
        reference: Vec<u64>,
        current: Vec<u64>,
        /// Smallest and largest finite value of each side.
        reference_range: [f64; 2],
        current_range: [f64; 2],
    },
    /// Up to [`MAX_HISTOGRAM_CATEGORIES`] categories (the most frequent on either side), in
    /// numeric order when every name is a number, else most frequent first.
    Categorical {
        categories: Vec<String>,
        reference: Vec<u64>,
        current: Vec<u64>,
        /// The categories left out: how many, and their counts on each side.
        other_categories: u64,
        other_reference: u64,
        other_current: u64,
    },
}

impl Histogram {
    /// The numeric histogram from the PSI's edges (`bins + 1`, outer ones ∓∞) and counts;
    /// `None` when the shapes do not agree or a side has no value.
    pub fn numeric(
        edges: &[f64],
        reference: &[u64],
        current: &[u64],
        reference_range: Option<[f64; 2]>,
        current_range: Option<[f64; 2]>,
    ) -> Option<Self> {
        let bins = reference.len();
        if bins == 0 || current.len() != bins || edges.len() != bins + 1 {
            return None;
        }
        Some(Histogram::Numeric {
            edges: edges[1..bins].to_vec(),
            reference: reference.to_vec(),
            current: current.to_vec(),
            reference_range: reference_range?,
            current_range: current_range?,
        })
    }

    /// The categorical histogram from aligned counts (one entry per category, both sides).
    pub fn categorical(categories: &[String], reference: &[u64], current: &[u64]) -> Option<Self> {
        let k = categories.len();
        if reference.len() != k || current.len() != k {
            return None;
        }
        let total = |c: &[u64]| c.iter().map(|&x| x as f64).sum::<f64>().max(1.0);
        let (tr, tc) = (total(reference), total(current));
        // a category's weight: its larger share of the two sides (a new category that is big
        // in the current data is kept as surely as a big reference one)
        let weight = |i: usize| (reference[i] as f64 / tr).max(current[i] as f64 / tc);
        let mut order: Vec<usize> = (0..k).collect();
        let by_weight = |a: &usize, b: &usize| weight(*b).total_cmp(&weight(*a)).then(a.cmp(b));
        if k > MAX_HISTOGRAM_CATEGORIES {
            order.select_nth_unstable_by(MAX_HISTOGRAM_CATEGORIES - 1, by_weight);
            order.truncate(MAX_HISTOGRAM_CATEGORIES);
        }
        let numbers: Option<Vec<f64>> = order
            .iter()
            .map(|&i| {
                categories[i]
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
            })
            .collect();
        match numbers {
            Some(n) => {
                let mut keyed: Vec<(f64, usize)> = n.into_iter().zip(order).collect();
                keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                order = keyed.into_iter().map(|(_, i)| i).collect();
            }
            None => order.sort_by(by_weight),
        }
        let kept_r: u64 = order.iter().map(|&i| reference[i]).sum();
        let kept_c: u64 = order.iter().map(|&i| current[i]).sum();
        Some(Histogram::Categorical {
            categories: order.iter().map(|&i| short_name(&categories[i])).collect(),
            reference: order.iter().map(|&i| reference[i]).collect(),
            current: order.iter().map(|&i| current[i]).collect(),
            other_categories: (k - order.len()) as u64,
            other_reference: reference.iter().sum::<u64>().saturating_sub(kept_r),
            other_current: current.iter().sum::<u64>().saturating_sub(kept_c),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_keeps_inner_edges_and_ranges() {
        let h = Histogram::numeric(
            &[f64::NEG_INFINITY, 1.0, 2.0, f64::INFINITY],
            &[3, 3, 4],
            &[1, 2, 7],
            Some([0.5, 3.0]),
            Some([0.1, 9.0]),
        )
        .unwrap();
        assert_eq!(
            h,
            Histogram::Numeric {
                edges: vec![1.0, 2.0],
                reference: vec![3, 3, 4],
                current: vec![1, 2, 7],
                reference_range: [0.5, 3.0],
                current_range: [0.1, 9.0],
            }
        );
        let one = Some([1.0, 1.0]);
        assert!(Histogram::numeric(&[0.0, 1.0], &[1, 2], &[1, 2], one, one).is_none());
        assert!(Histogram::numeric(&[0.0, 1.0], &[1], &[1], None, one).is_none());
        // serialized without infinities (JSON has none)
        let json = serde_json::to_string(&h).unwrap();
        assert!(!json.contains("null"), "{json}");
    }

    #[test]
    fn categorical_caps_and_orders() {
        let cats: Vec<String> = (0..40).map(|i| format!("c{i:02}")).collect();
        let r: Vec<u64> = (0..40).map(|i| if i < 35 { 10 + i } else { 0 }).collect();
        let mut c = r.clone();
        c[39] = 500; // a new category, big in the current data
        let h = Histogram::categorical(&cats, &r, &c).unwrap();
        let Histogram::Categorical {
            categories,
            reference,
            current,
            other_categories,
            other_reference,
            other_current,
        } = h
        else {
            panic!("categorical expected")
        };
        assert_eq!(categories.len(), MAX_HISTOGRAM_CATEGORIES);
        assert_eq!(categories[0], "c39", "the biggest share comes first");
        assert_eq!((reference[0], current[0]), (0, 500));
        assert_eq!(other_categories, 10);
        assert_eq!(
            reference.iter().sum::<u64>() + other_reference,
            r.iter().sum::<u64>()
        );
        assert_eq!(
            current.iter().sum::<u64>() + other_current,
            c.iter().sum::<u64>()
        );
        // numbers in numeric order
        let cats: Vec<String> = ["10", "2", "1.5"].iter().map(|s| s.to_string()).collect();
        let Some(Histogram::Categorical { categories, .. }) =
            Histogram::categorical(&cats, &[1, 5, 3], &[1, 1, 1])
        else {
            panic!("categorical expected")
        };
        assert_eq!(categories, ["1.5", "2", "10"]);
        assert!(Histogram::categorical(&cats, &[1], &[1, 2, 3]).is_none());
        // long names are cut
        let long = vec!["é".repeat(MAX_CATEGORY_NAME + 50)];
        let Some(Histogram::Categorical { categories, .. }) =
            Histogram::categorical(&long, &[1], &[1])
        else {
            panic!("categorical expected")
        };
        assert_eq!(categories[0].chars().count(), MAX_CATEGORY_NAME);
        assert!(categories[0].ends_with('…'));
    }
}
