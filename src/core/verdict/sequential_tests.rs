use proptest::prelude::*;

use super::*;

fn settings(false_promotion: Option<f64>) -> SequentialJudge {
    SequentialJudge {
        false_promotion,
        ..SequentialJudge::default()
    }
}

fn counts(bad: f64, total: f64) -> Counts {
    Counts { bad, total }
}

#[test]
fn the_grids_start_at_min_effect_and_reach_far() {
    let up = ratio_grid(1.2, true);
    assert!((up[0] - 1.2).abs() < 1e-12, "{up:?}");
    assert!(*up.last().unwrap() >= 30.0 / 1.2_f64.sqrt());
    assert!(up.windows(2).all(|w| w[1] > w[0]));
    let down = ratio_grid(1.2, false);
    assert!(down.iter().all(|&r| r < 1.2), "{down:?}");
    assert!(
        down.iter().any(|&r| (r - 1.0).abs() < 1e-9),
        "1 is a component"
    );
    assert!(*down.last().unwrap() <= 1.0 / 30.0);
    assert!(ratio_grid(1.01, true).len() <= MAX_COMPONENTS);
}

#[test]
fn a_variant_without_requests_is_inconclusive() {
    let s = settings(Some(0.05));
    for (candidate, stable) in [
        (counts(0.0, 0.0), counts(10.0, 1000.0)),
        (counts(1.0, 100.0), counts(0.0, 0.0)),
        (counts(f64::NAN, 100.0), counts(1.0, 100.0)),
        (counts(-1.0, 100.0), counts(1.0, 100.0)),
        (counts(1.0, f64::INFINITY), counts(1.0, 100.0)),
    ] {
        let outcome = judge(&s, candidate, stable);
        assert_eq!(outcome.verdict, Verdict::Inconclusive, "{candidate:?}");
        assert_eq!(outcome.evidence, None);
    }
}

#[test]
fn a_doubled_error_rate_fails_and_an_equal_one_passes() {
    // 10 % of traffic on the candidate, 2 % errors on stable.
    let stable = counts(0.02 * 90_000.0, 90_000.0);
    let worse = judge(
        &settings(Some(0.05)),
        counts(0.04 * 10_000.0, 10_000.0),
        stable,
    );
    assert_eq!(worse.verdict, Verdict::Failed, "{worse:?}");
    // Ruling out a 1.2x regression takes far more traffic than spotting a 2x one: at half of
    // the traffic each, 100k requests a side.
    let even = counts(0.02 * 100_000.0, 100_000.0);
    let same = judge(&settings(Some(0.05)), even, even);
    assert_eq!(same.verdict, Verdict::Passed, "{same:?}");
    let evidence = same.evidence.unwrap();
    assert!((evidence.ratio - 1.0).abs() < 1e-9);
    assert!(evidence.regression < 1.0, "{evidence:?}");
}

#[test]
fn little_traffic_is_inconclusive_with_a_bound_and_passing_without() {
    let (candidate, stable) = (counts(2.0, 100.0), counts(18.0, 900.0));
    assert_eq!(
        judge(&settings(Some(0.05)), candidate, stable).verdict,
        Verdict::Inconclusive
    );
    assert_eq!(
        judge(&settings(None), candidate, stable).verdict,
        Verdict::Passed
    );
}

#[test]
fn no_bad_events_is_no_evidence_either_way() {
    let outcome = judge(&settings(Some(0.05)), counts(0.0, 1e6), counts(0.0, 9e6));
    assert_eq!(outcome.verdict, Verdict::Inconclusive);
    let e = outcome.evidence.unwrap();
    assert!((e.regression - 1.0).abs() < 1e-12 && (e.no_regression - 1.0).abs() < 1e-12);
    assert!(e.ratio.is_nan());
}

#[test]
fn huge_counts_neither_overflow_nor_lose_the_verdict() {
    let stable = counts(1e9, 9e10);
    let worse = judge(&settings(Some(0.05)), counts(2e8, 1e10), stable);
    assert_eq!(worse.verdict, Verdict::Failed);
    let e = worse.evidence.unwrap();
    assert!(e.regression.is_infinite() || e.regression > 1e100, "{e:?}");
    let same = judge(&settings(Some(0.05)), counts(1e8 / 0.9, 1e10), stable);
    assert!(same.evidence.unwrap().regression.is_finite());
}

#[test]
fn extrapolated_counters_with_more_errors_than_requests_are_clamped() {
    let outcome = judge(&settings(None), counts(103.0, 100.0), counts(1.0, 900.0));
    assert_eq!(outcome.verdict, Verdict::Failed);
    assert!((outcome.evidence.unwrap().ratio - 900.0).abs() < 1e-6);
}

#[test]
fn descriptions_name_the_boundaries_and_the_evidence() {
    let s = settings(Some(0.05));
    let outcome = judge(&s, counts(40.0, 1000.0), counts(180.0, 9000.0));
    let text = describe(&s, outcome.evidence.as_ref());
    assert!(
        text.starts_with("sequential: bad-event ratio < 1.2 (alpha 0.05, falsePromotion 0.05)")
    );
    assert!(text.contains("of 20"), "{text}");
    assert!(text.contains("observed ratio 2.000"), "{text}");
    assert_eq!(
        describe(&settings(None), None),
        "sequential: no regression of 1.2x (alpha 0.05)"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// More bad events on the candidate (the rest equal) is never less evidence of a
    /// regression nor more evidence against one.
    #[test]
    fn evidence_moves_with_the_candidates_errors(
        cb in 0.0f64..500.0, extra in 0.0f64..200.0, sb in 0.0f64..5_000.0,
        ct in 1_000.0f64..100_000.0, st in 1_000.0f64..1_000_000.0,
        min_effect in 1.05f64..3.0,
    ) {
        let s = SequentialJudge { min_effect, ..settings(Some(0.05)) };
        let less = evidence(&s, counts(cb, ct), counts(sb, st)).unwrap();
        let more = evidence(&s, counts(cb + extra, ct), counts(sb, st)).unwrap();
        prop_assert!(more.regression >= less.regression * (1.0 - 1e-9));
        prop_assert!(more.no_regression <= less.no_regression * (1.0 + 1e-9));
        prop_assert!(less.regression >= 0.0 && less.no_regression >= 0.0);
    }

    /// Equal observed rates are the likeliest under "no difference": never evidence of a
    /// regression, whatever the amount of traffic.
    #[test]
    fn equal_rates_never_fail(
        rate in 0.0f64..1.0, ct in 1.0f64..1e9, st in 1.0f64..1e9, min_effect in 1.01f64..10.0,
    ) {
        let s = SequentialJudge { min_effect, ..settings(Some(0.05)) };
        let outcome = judge(&s, counts(rate * ct, ct), counts(rate * st, st));
        prop_assert!(outcome.evidence.unwrap().regression <= 1.0 + 1e-9);
        prop_assert_ne!(outcome.verdict, Verdict::Failed);
    }
}
