//! Distributions too large to hold: a mergeable quantile sketch (Apache DataSketches' KLL) and
//! the Kolmogorov–Smirnov distance between two distributions of which at least one is a
//! sketch, with its error bound.
//!
//! A [`Distribution`] is either the exact sorted finite values or a [`QuantileSketch`] of
//! them. Between two exact samples the engine keeps the exact KS of [`super::ks`]; here D is
//! evaluated on the union of `GRID` quantiles of each side. With the sketches' CDF error
//! `ε₁, ε₂` (DataSketches' double-sided normalized rank error, 99 % confidence) and the grid's
//! step, `|D̂ − D| ≤ ε₁ + ε₂ + 2 / GRID`: the bound reported with the statistic.

use base64::Engine as _;
use datasketches::kll::{KllFloat, KllSketch};
use serde::{Deserialize, Serialize};

/// KLL accuracy parameter: CDF error ≈ 0.1 % (99 % confidence) in about 100 KB per sketch.
pub const SKETCH_K: u16 = 4096;
/// Quantiles taken from each side to evaluate D on.
const GRID: usize = 20_000;

/// A KLL sketch of finite `f64` values (NaN and ±∞ are not added: they are missing).
#[derive(Clone, Debug)]
pub struct QuantileSketch(KllSketch<KllFloat<f64>>);

impl Default for QuantileSketch {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for QuantileSketch {
    fn eq(&self, other: &Self) -> bool {
        self.0.serialize() == other.0.serialize()
    }
}

impl QuantileSketch {
    pub fn new() -> Self {
        // SKETCH_K is within KLL's 8..=65535.
        Self(KllSketch::new(SKETCH_K).unwrap_or_default())
    }

    /// Add one value; non-finite values are ignored.
    pub fn update(&mut self, x: f64) {
        if x.is_finite()
            && let Ok(v) = KllFloat::<f64>::new(x)
        {
            self.0.update(v);
        }
    }

    pub fn extend(&mut self, values: &[f64]) {
        for &x in values {
            self.update(x);
        }
    }

    /// Number of values added.
    pub fn n(&self) -> u64 {
        self.0.n()
    }

    /// Error of any CDF value (fraction of the stream), with 99 % confidence; 0 while the
    /// sketch still holds every value.
    pub fn cdf_error(&self) -> f64 {
        if self.0.is_estimation_mode() {
            self.0.normalized_pmf_error()
        } else {
            0.0
        }
    }

    /// The value at normalized `rank` (0 = minimum, 1 = maximum).
    pub fn quantile(&self, rank: f64) -> Option<f64> {
        self.0
            .quantile(
                rank.clamp(0.0, 1.0),
                datasketches::common::SearchCriteria::Inclusive,
            )
            .ok()
            .flatten()
            .map(KllFloat::into_inner)
    }

    pub fn min(&self) -> Option<f64> {
        self.0.min_item().map(|v| **v)
    }

    pub fn max(&self) -> Option<f64> {
        self.0.max_item().map(|v| **v)
    }

    /// DataSketches' binary form (readable by its other language bindings).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.serialize()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        KllSketch::deserialize(bytes)
            .map(Self)
            .map_err(|e| e.to_string())
    }
}

/// Serialized as base64 of the DataSketches binary form.
impl Serialize for QuantileSketch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(self.to_bytes()))
    }
}

impl<'de> Deserialize<'de> for QuantileSketch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)?;
        Self::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// The finite values of one side: all of them sorted, or a sketch of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    Exact(Vec<f64>),
    Sketch(QuantileSketch),
}

impl Distribution {
    pub fn n(&self) -> u64 {
        match self {
            Distribution::Exact(v) => v.len() as u64,
            Distribution::Sketch(s) => s.n(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.n() == 0
    }

    pub fn is_exact(&self) -> bool {
        matches!(self, Distribution::Exact(_))
    }

    /// Error of [`cdf`](Self::cdf) (0 when exact).
    pub fn cdf_error(&self) -> f64 {
        match self {
            Distribution::Exact(_) => 0.0,
            Distribution::Sketch(s) => s.cdf_error(),
        }
    }

    /// The smallest and largest value.
    pub fn range(&self) -> Option<[f64; 2]> {
        match self {
            Distribution::Exact(v) => Some([*v.first()?, *v.last()?]),
            Distribution::Sketch(s) => Some([s.min()?, s.max()?]),
        }
    }

    /// A view answering many CDF and quantile queries (a sketch's sorted view, built once).
    fn view(&self) -> CdfView<'_> {
        match self {
            Distribution::Exact(v) => CdfView::Exact(v),
            Distribution::Sketch(s) => CdfView::Sketch(s.0.sorted_view()),
        }
    }
}

enum CdfView<'a> {
    Exact(&'a [f64]),
    Sketch(datasketches::kll::SortedView<KllFloat<f64>>),
}

impl CdfView<'_> {
    fn cdf(&self, x: f64) -> f64 {
        match self {
            CdfView::Exact(v) if !v.is_empty() => {
                v.partition_point(|&y| y <= x) as f64 / v.len() as f64
            }
            CdfView::Exact(_) => f64::NAN,
            CdfView::Sketch(view) => KllFloat::<f64>::new(x)
                .ok()
                .and_then(|v| view.rank(&v, datasketches::common::SearchCriteria::Inclusive))
                .unwrap_or(f64::NAN),
        }
    }

    /// Quantiles at ranks 0, 1/g, …, 1.
    fn grid(&self, g: usize) -> Vec<f64> {
        let g = g.max(1);
        match self {
            CdfView::Exact([]) => Vec::new(),
            CdfView::Exact(v) => (0..=g).map(|i| v[((v.len() - 1) * i) / g]).collect(),
            CdfView::Sketch(view) => (0..=g)
                .filter_map(|i| {
                    view.quantile(
                        i as f64 / g as f64,
                        datasketches::common::SearchCriteria::Inclusive,
                    )
                    .ok()
                    .flatten()
                    .map(KllFloat::into_inner)
                })
                .collect(),
        }
    }
}

/// KS distance between two distributions, at least one of them a sketch, and the bound on
/// its error: `(D̂, bound)` with `|D̂ − D| ≤ bound` (99 % confidence for the sketches' part).
/// `None` when a side is empty.
pub fn ks_distance_approx(a: &Distribution, b: &Distribution) -> Option<(f64, f64)> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (va, vb) = (a.view(), b.view());
    let mut points = va.grid(GRID);
    points.extend(vb.grid(GRID));
    super::sort::sort_f64(&mut points);
    points.dedup();
    let d = points
        .iter()
        .map(|&x| (va.cdf(x) - vb.cdf(x)).abs())
        .filter(|d| d.is_finite())
        .fold(0.0f64, f64::max);
    // a grid of at least as many quantiles as values visits every value
    let grid_step = |dist: &Distribution| {
        if dist.n() <= GRID as u64 {
            0.0
        } else {
            1.0 / GRID as f64
        }
    };
    let bound = a.cdf_error() + b.cdf_error() + grid_step(a) + grid_step(b);
    Some((d.min(1.0), bound))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::stats::ks::ks_2samp;

    fn sample(n: usize, seed: u64, shift: f64) -> Vec<f64> {
        crate::drift::stats::testutil::Rng::new(seed).normals(n, shift, 1.0)
    }

    fn sketch_of(values: &[f64]) -> Distribution {
        let mut s = QuantileSketch::new();
        s.extend(values);
        Distribution::Sketch(s)
    }

    fn exact_of(values: &[f64]) -> Distribution {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        crate::drift::stats::sort::sort_f64(&mut v);
        Distribution::Exact(v)
    }

    #[test]
    fn sketch_ks_is_within_its_bound_of_the_exact_statistic() {
        for (i, shift) in [0.0, 0.02, 0.1, 0.5].into_iter().enumerate() {
            let a = sample(200_000, 11 + i as u64, 0.0);
            let b = sample(150_000, 97 + i as u64, shift);
            let exact = ks_2samp(&a, &b).unwrap().statistic;
            for (da, db) in [
                (sketch_of(&a), sketch_of(&b)),
                (exact_of(&a), sketch_of(&b)),
                (sketch_of(&a), exact_of(&b)),
            ] {
                let (d, bound) = ks_distance_approx(&da, &db).unwrap();
                assert!(bound > 0.0 && bound < 0.01, "bound {bound}");
                assert!(
                    (d - exact).abs() <= bound,
                    "shift {shift}: sketch D {d}, exact {exact}, bound {bound}"
                );
            }
        }
    }

    #[test]
    fn a_sketch_that_holds_every_value_is_exact() {
        let a = sample(1000, 1, 0.0);
        let b = sample(800, 2, 0.3);
        let (d, bound) = ks_distance_approx(&sketch_of(&a), &exact_of(&b)).unwrap();
        assert_eq!(bound, 0.0);
        assert!((d - ks_2samp(&a, &b).unwrap().statistic).abs() < 1e-12);
    }

    #[test]
    fn non_finite_values_are_missing_and_empty_sides_give_none() {
        let mut s = QuantileSketch::new();
        s.extend(&[f64::NAN, f64::INFINITY, 1.0, f64::NEG_INFINITY]);
        assert_eq!(s.n(), 1);
        let empty = Distribution::Sketch(QuantileSketch::new());
        assert!(ks_distance_approx(&empty, &Distribution::Sketch(s)).is_none());
    }

    #[test]
    fn sketches_round_trip_through_json() {
        let mut s = QuantileSketch::new();
        s.extend(&sample(50_000, 5, 0.0));
        let d = Distribution::Sketch(s);
        let json = serde_json::to_string(&d).unwrap();
        let back: Distribution = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        assert!(serde_json::from_str::<Distribution>(r#"{"sketch":"!!"}"#).is_err());
    }
}
