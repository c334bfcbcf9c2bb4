//! Drift statistics at 10k, 100k and 1M rows per side: KS, PSI and both together (what the
//! engine runs per numeric feature), chi-square on category codes, and one sort of the
//! current sample as the floor (every numeric comparison sorts the current sample once).
//!
//! `cargo bench --bench drift` (filter e.g. `-- /1000000`). The reference is prepared once
//! outside the timed loop, as the engine caches it per model version.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code states expectations

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mlrollout::drift::stats::{
    CategoricalCounts, CategoricalReference, NumericReference, PsiParams, compare_categorical,
    compare_numeric, histogram_sorted, ks_2samp_sorted, psi_from_counts, sort_f64,
};

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];

/// Deterministic pseudo-normal sample (sum of 4 uniforms), `shift` added.
fn sample(n: usize, shift: f64, seed: u64) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            let mut acc = 0.0;
            for _ in 0..4 {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                acc += (s >> 11) as f64 / (1u64 << 53) as f64;
            }
            (acc - 2.0) * 10.0 + 50.0 + shift
        })
        .collect()
}

fn codes(n: usize, seed: u64, skew: bool) -> Vec<u32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            let u = if skew { u * u } else { u };
            (u * 5.0) as u32
        })
        .collect()
}

const CATEGORIES: [&str; 5] = ["web", "mobile", "pos", "atm", "other"];

fn counts_from_codes(codes: &[u32]) -> CategoricalCounts {
    let mut n = [0u64; 5];
    for &c in codes {
        n[c as usize % 5] += 1;
    }
    CategoricalCounts::from_counts(CATEGORIES.iter().copied().zip(n), 0)
}

fn numeric(c: &mut Criterion) {
    let mut g = c.benchmark_group("drift");
    g.sample_size(10);
    for n in SIZES {
        let reference = NumericReference::new(sample(n, 0.0, 1), PsiParams::default()).unwrap();
        let current = sample(n, 0.5, 2);
        g.throughput(Throughput::Elements(n as u64));

        // the floor: one sort of the current sample (copy included, as in every case below)
        g.bench_with_input(BenchmarkId::new("sort", n), &current, |b, cur| {
            b.iter_batched(
                || cur.clone(),
                |mut v| {
                    sort_f64(&mut v);
                    black_box(v)
                },
                BatchSize::LargeInput,
            )
        });
        // KS alone: sort + merge + p-value
        g.bench_with_input(BenchmarkId::new("ks", n), &current, |b, cur| {
            b.iter_batched(
                || cur.clone(),
                |mut v| {
                    sort_f64(&mut v);
                    black_box(
                        ks_2samp_sorted(reference.sorted_values().unwrap_or_default(), &v).ok(),
                    )
                },
                BatchSize::LargeInput,
            )
        });
        // PSI alone: sort + binary-searched histogram over the reference deciles
        g.bench_with_input(BenchmarkId::new("psi", n), &current, |b, cur| {
            b.iter_batched(
                || cur.clone(),
                |mut v| {
                    sort_f64(&mut v);
                    let counts = histogram_sorted(&v, reference.edges());
                    black_box(psi_from_counts(reference.bin_counts(), &counts, 0.001).ok())
                },
                BatchSize::LargeInput,
            )
        });
        // KS + PSI from one sort: what the engine does per numeric feature
        g.bench_with_input(BenchmarkId::new("ks_psi", n), &current, |b, cur| {
            b.iter_batched(
                || cur.clone(),
                |v| black_box(compare_numeric(&reference, v)),
                BatchSize::LargeInput,
            )
        });

        // chi-square: count the category codes of the current sample, then the 2×k test
        let reference_cat =
            CategoricalReference::new(counts_from_codes(&codes(n, 3, false)), 0.001).unwrap();
        let current_codes = codes(n, 4, true);
        g.bench_with_input(BenchmarkId::new("chi2", n), &current_codes, |b, cur| {
            b.iter(|| black_box(compare_categorical(&reference_cat, &counts_from_codes(cur))))
        });
    }
    g.finish();
}

criterion_group!(benches, numeric);
criterion_main!(benches);
