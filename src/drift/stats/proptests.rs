//! Property and behaviour tests of the whole pipeline (comparison + decision).

use proptest::collection::vec;
use proptest::prelude::*;

use super::testutil::Rng;
use super::*;

fn numeric(reference: Vec<f64>, current: Vec<f64>) -> FeatureComparison {
    let prep = NumericReference::new(reference, PsiParams::default()).unwrap();
    FeatureComparison::Numeric(compare_numeric(&prep, current))
}

fn categorical(
    rng: &mut Rng,
    ref_w: &[f64],
    cur_w: &[f64],
    n_ref: usize,
    n_cur: usize,
) -> FeatureComparison {
    let mut draw = |w: &[f64], n: usize| {
        let mut c = CategoricalCounts::new();
        for _ in 0..n {
            c.add(&format!("cat{}", rng.pick(w)), 1);
        }
        c
    };
    let r = draw(ref_w, n_ref);
    let c = draw(cur_w, n_cur);
    let prep = CategoricalReference::new(r, 0.001).unwrap();
    FeatureComparison::Categorical(compare_categorical(&prep, &c))
}

fn run(features: &[(String, FeatureComparison)]) -> DatasetVerdict {
    evaluate(
        features.iter().map(|(n, c)| (n.as_str(), c)),
        &DriftPolicy::default(),
    )
}

/// 20 features (15 numeric of three shapes, 5 categorical), n = 5000 per
/// side, reference and current from the same distribution.
fn stationary_check(seed: u64) -> DatasetVerdict {
    let mut rng = Rng::new(seed);
    let n = 5000;
    let mut fs = Vec::new();
    for i in 0..15 {
        let gen_one = |rng: &mut Rng| -> Vec<f64> {
            match i % 3 {
                0 => rng.normals(n, 3.0, 2.0),
                1 => rng.normals(n, 0.0, 1.0).into_iter().map(f64::exp).collect(),
                _ => (0..n).map(|_| rng.uniform() * 10.0).collect(),
            }
        };
        let r = gen_one(&mut rng);
        let c = gen_one(&mut rng);
        fs.push((format!("num{i}"), numeric(r, c)));
    }
    for i in 0..5 {
        let w: Vec<f64> = (0..(3 + i)).map(|k| 1.0 + k as f64).collect();
        fs.push((format!("cat{i}"), categorical(&mut rng, &w, &w, n, n)));
    }
    run(&fs)
}

#[test]
fn stationary_data_is_not_flagged() {
    let seeds = 100u64;
    let (mut ours_any, mut ours_dataset, mut seed_rule) = (0, 0, 0);
    for seed in 0..seeds {
        let v = stationary_check(seed);
        assert_eq!(v.n_evaluated, 20);
        ours_any += usize::from(v.features.iter().any(|f| f.drifted));
        ours_dataset += usize::from(v.drift_detected);
        // the seed's rule: any feature with raw p < 0.05
        seed_rule += usize::from(
            v.features
                .iter()
                .any(|f| f.p_value.is_some_and(|p| p < 0.05)),
        );
    }
    let rate = |k: usize| k as f64 / seeds as f64;
    eprintln!(
        "stationary, {seeds} seeds x 20 features: ours any-feature {:.2}, ours dataset {:.2}, seed rule {:.2}",
        rate(ours_any),
        rate(ours_dataset),
        rate(seed_rule)
    );
    assert!(
        rate(ours_any) < 0.10,
        "ours fired in {ours_any} of {seeds} seeds"
    );
    assert!(rate(ours_dataset) < 0.10);
    // 1 - 0.95^20 = 0.64 expected for the seed's rule
    assert!(
        (0.45..=0.80).contains(&rate(seed_rule)),
        "seed rule fired in {seed_rule} of {seeds}"
    );
}

#[test]
fn tiny_shift_at_one_million_rows_is_not_flagged() {
    let mut rng = Rng::new(42);
    let n = 1_000_000;
    let r = rng.normals(n, 0.0, 1.0);
    let c = rng.normals(n, 0.01, 1.0);
    let v = run(&[("x".to_owned(), numeric(r, c))]);
    let f = &v.features[0];
    eprintln!(
        "0.01 sd shift at 1M: D={:?} p={:?} psi={:?}",
        f.statistic, f.p_value, f.psi
    );
    assert_eq!(f.test, TestKind::Ks);
    assert!(f.effect_size.unwrap() < 0.02);
    assert!(!f.drifted && f.severity == Severity::Ok && !v.drift_detected);
}

#[test]
fn psi_alone_without_significance_is_not_drift() {
    let mut high_psi_cases = 0;
    for seed in 0..200 {
        let mut rng = Rng::new(1000 + seed);
        let r = rng.normals(20, 0.0, 1.0);
        let c = rng.normals(20, 0.0, 1.0);
        let v = run(&[("x".to_owned(), numeric(r, c))]);
        let f = &v.features[0];
        if f.psi.unwrap() >= DriftPolicy::default().psi_high {
            high_psi_cases += 1;
            if f.p_value_adjusted.unwrap() >= 0.05 {
                assert!(!f.drifted, "seed {seed}: {f:?}");
                assert_eq!(f.psi_level, Some(PsiLevel::High));
            }
        }
    }
    // n = 20 against 10 bins: PSI is noisy and often above 0.25 by chance
    assert!(high_psi_cases > 50, "{high_psi_cases}");
}

fn special_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => -1e6..1e6f64,
        3 => (-4i32..4).prop_map(f64::from),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(-0.0),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn numeric_comparison_is_total(a in vec(special_f64(), 0..120), b in vec(special_f64(), 0..120)) {
        let prep = NumericReference::new(a.clone(), PsiParams::default()).unwrap();
        let cmp = compare_numeric(&prep, b.clone());
        prop_assert_eq!((cmp.n_current + cmp.missing_current) as usize, b.len());
        prop_assert_eq!((cmp.n_reference + cmp.missing_reference) as usize, a.len());
        match (cmp.status, cmp.ks, cmp.psi) {
            (ComparisonStatus::Ok, Some(ks), Some(psi)) => {
                prop_assert!((0.0..=1.0).contains(&ks.statistic));
                prop_assert!((0.0..=1.0).contains(&ks.p_value));
                prop_assert!(psi.is_finite() && psi >= 0.0);
                let sym = ks_2samp(&b, &a).unwrap();
                prop_assert_eq!(sym, ks);
            }
            (ComparisonStatus::InsufficientData, None, None) => {
                prop_assert!(cmp.n_current == 0 || cmp.n_reference == 0);
            }
            other => prop_assert!(false, "inconsistent {:?}", other),
        }
        let v = evaluate([("f", &FeatureComparison::Numeric(cmp))], &DriftPolicy::default());
        prop_assert!(v.drifted_share >= 0.0 && v.drifted_share <= 1.0);
    }

    #[test]
    fn ks_statistic_equals_scipy_definition(
        a in vec((-6i32..6).prop_map(|v| f64::from(v) * 0.5), 1..60),
        b in vec((-6i32..6).prop_map(|v| f64::from(v) * 0.5 + 0.5), 1..60),
    ) {
        // scipy: cdf_k(x) = searchsorted(sorted_k, x, 'right') / n_k over all points
        let ecdf = |s: &[f64], x: f64| s.iter().filter(|&&v| v <= x).count() as f64 / s.len() as f64;
        let diffs: Vec<f64> = a.iter().chain(&b).map(|&x| ecdf(&a, x) - ecdf(&b, x)).collect();
        let max_s = diffs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let min_s = (-diffs.iter().copied().fold(f64::INFINITY, f64::min)).clamp(0.0, 1.0);
        let want = if min_s > max_s { min_s } else { max_s };
        let (mut sa, mut sb) = (a.clone(), b.clone());
        sort_f64(&mut sa);
        sort_f64(&mut sb);
        // equal up to rounding of i/n1 - j/n2 (see `ks_statistic_sorted_unchecked`)
        let got = ks_statistic_sorted(&sa, &sb).unwrap();
        prop_assert!((got - want).abs() <= 4.0 * f64::EPSILON, "{} vs {}", got, want);
        // the exact-path statistic (snapped to h/lcm) is bit-identical
        prop_assert_eq!(
            ks_pvalue(got, sa.len() as u64, sb.len() as u64),
            ks_pvalue(want, sa.len() as u64, sb.len() as u64)
        );
    }

    #[test]
    fn ks_p_value_is_monotone_in_d(n1 in 1u64..400, n2 in 1u64..400, d1 in 0.0..1.0f64, d2 in 0.0..1.0f64) {
        let (lo, hi) = if d1 <= d2 { (d1, d2) } else { (d2, d1) };
        prop_assert!(ks_pvalue(lo, n1, n2).p_value >= ks_pvalue(hi, n1, n2).p_value - 1e-12);
    }

    #[test]
    fn survival_functions_are_total(
        n in prop_oneof![1u64..300, 300u64..20_000, any::<u64>()],
        x in prop_oneof![0.0..1.0f64, any::<f64>()],
    ) {
        for p in [kstwo_sf(x, n), smirnov_sf(n, x)] {
            prop_assert!(p.is_nan() || (0.0..=1.0).contains(&p), "n={} x={} -> {}", n, x, p);
        }
        if (0.0..=1.0).contains(&x) {
            prop_assert!(!kstwo_sf(x, n).is_nan() && !smirnov_sf(n, x).is_nan());
        }
    }

    #[test]
    fn bh_is_monotone_and_capped(p in vec(0.0..=1.0f64, 0..60)) {
        let adj = benjamini_hochberg(&p);
        for (i, (&a, &raw)) in adj.iter().zip(&p).enumerate() {
            prop_assert!(a >= raw && a <= 1.0, "{} {} {}", i, a, raw);
            for (&b, &raw_b) in adj.iter().zip(&p) {
                if raw <= raw_b {
                    prop_assert!(a <= b);
                }
            }
        }
    }

    #[test]
    fn chi2_is_symmetric_and_bounded(rows in vec((0u64..60, 0u64..60), 1..12)) {
        let r: Vec<u64> = rows.iter().map(|x| x.0).collect();
        let c: Vec<u64> = rows.iter().map(|x| x.1).collect();
        match (chi2_homogeneity(&r, &c), chi2_homogeneity(&c, &r)) {
            (Ok(x), Ok(y)) => {
                prop_assert!((x.statistic - y.statistic).abs() <= 1e-9 * x.statistic.max(1.0));
                prop_assert!((0.0..=1.0).contains(&x.p_value) && (0.0..=1.0).contains(&x.cramers_v));
                prop_assert!(x.statistic >= 0.0);
            }
            (Err(_), Err(_)) => prop_assert!(r.iter().sum::<u64>() == 0 || c.iter().sum::<u64>() == 0),
            _ => prop_assert!(false),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn half_sigma_shift_at_5k_is_flagged(seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let mut fs = vec![("shifted".to_owned(), numeric(rng.normals(5000, 0.0, 1.0), rng.normals(5000, 0.5, 1.0)))];
        for i in 0..9 {
            fs.push((format!("still{i}"), numeric(rng.normals(5000, 0.0, 1.0), rng.normals(5000, 0.0, 1.0))));
        }
        let v = run(&fs);
        let f = &v.features[0];
        prop_assert!(f.drifted, "{:?}", f);
        prop_assert!(f.severity >= Severity::Medium);
        prop_assert!(f.p_value_adjusted.unwrap() < 1e-10);
    }

    #[test]
    fn unseen_category_is_flagged(seed in any::<u64>(), share in 0.05..0.3f64) {
        let mut rng = Rng::new(seed);
        let base = [5.0, 3.0, 2.0];
        let with_new = [5.0 * (1.0 - share), 3.0 * (1.0 - share), 2.0 * (1.0 - share), 10.0 * share];
        let f = categorical(&mut rng, &base, &with_new, 5000, 5000);
        let v = run(&[("c".to_owned(), f)]);
        let f = &v.features[0];
        prop_assert!(f.n_new_categories == 1 && f.new_categories == vec!["cat3".to_owned()]);
        prop_assert!(f.drifted && v.drift_detected, "{:?}", f);
    }
}
