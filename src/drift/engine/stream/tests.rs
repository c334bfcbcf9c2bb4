//! The streaming check against the in-memory one on the same files: bit for bit while the
//! values fit, PSI and chi-square bit for bit and KS within its bound once they do not.

use std::fmt::Write as _;

use super::super::*;
use super::summarise::stream_check;

/// A CSV with a continuous, a shifted, a 0/1 flag, a categorical and a prediction column.
fn csv(n: usize, shift: f64, seed: u64) -> String {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut u = move || {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut out = String::from("x,y,flag,channel,prediction\n");
    for i in 0..n {
        let x = u() + u() + u() - 1.5;
        let y = (u() + shift) * 10.0;
        let flag = u() < 0.1 + shift / 4.0;
        let channel = ["web", "pos", "\"atm, cash\""]
            [usize::from(u() < 0.3 + shift / 3.0) + usize::from(i % 7 == 0)];
        let missing = if i % 101 == 0 { "" } else { "0" };
        let _ = writeln!(
            out,
            "{x},{y},{}{missing},{channel},{}",
            u8::from(flag),
            u() + shift / 5.0
        );
    }
    out
}

struct Files {
    _dir: tempfile::TempDir,
    reference: Payload,
    current: Payload,
}

fn files(n_ref: usize, n_cur: usize) -> Files {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("ref.csv");
    let c = dir.path().join("cur.csv");
    std::fs::write(&r, csv(n_ref, 0.0, 1)).unwrap();
    std::fs::write(&c, csv(n_cur, 0.2, 2)).unwrap();
    Files {
        reference: Payload::from_path(r),
        current: Payload::from_path(c),
        _dir: dir,
    }
}

fn job(f: &Files, memory_limit: u64) -> CpuJob {
    CpuJob {
        now: SystemTime::now(),
        config: DriftConfig::default(),
        key: ReferenceKey {
            model_version: None,
            uri: "ref.csv".into(),
            format: None,
            config: String::new(),
        },
        cached: None,
        reference: Some((f.reference.clone(), DataFormat::Csv)),
        current: (f.current.clone(), DataFormat::Csv),
        labelled: None,
        memory_limit,
    }
}

fn verdicts(report: &DriftReport) -> Vec<FeatureVerdict> {
    report
        .features
        .iter()
        .chain(report.prediction_drift.as_ref())
        .cloned()
        .collect()
}

/// PSI, counts and categorical statistics equal bit for bit, KS D within the stated bound;
/// the number of features whose KS came from sketches.
fn assert_equal_within_bounds(whole: &DriftReport, streamed: &DriftReport) -> usize {
    let (w, s) = (verdicts(whole), verdicts(streamed));
    assert_eq!(w.len(), s.len());
    let mut sketched = 0;
    for (w, s) in w.iter().zip(&s) {
        assert_eq!(w.name, s.name);
        assert_eq!(
            w.psi.map(f64::to_bits),
            s.psi.map(f64::to_bits),
            "{}",
            w.name
        );
        assert_eq!(
            (w.n_reference, w.n_current),
            (s.n_reference, s.n_current),
            "{}",
            w.name
        );
        assert_eq!(
            (w.missing_reference, w.missing_current),
            (s.missing_reference, s.missing_current),
            "{}",
            w.name
        );
        match s.statistic_error_bound {
            Some(bound) => {
                sketched += 1;
                let (a, b) = (w.statistic.unwrap(), s.statistic.unwrap());
                assert!(
                    (a - b).abs() <= bound,
                    "{}: exact D {a}, sketched {b}, bound {bound}",
                    w.name
                );
                assert!(bound < 0.01, "{bound}");
            }
            // categorical and discrete features: counts, exact
            None => assert_eq!(
                w.statistic.map(f64::to_bits),
                s.statistic.map(f64::to_bits),
                "{}",
                w.name
            ),
        }
        assert_eq!(w.drifted, s.drifted, "{}", w.name);
    }
    sketched
}

#[test]
fn streamed_while_the_values_fit_equals_the_in_memory_check_bit_for_bit() {
    let f = files(30_000, 20_000);
    let (_, whole) = job(&f, u64::MAX).run().unwrap();
    let (_, streamed) = stream_check(&job(&f, 1 << 30), 1 << 30).unwrap();
    assert_eq!(verdicts(&streamed), verdicts(&whole));
    assert_eq!(
        (
            streamed.reference_rows,
            streamed.current_rows,
            streamed.drift_detected
        ),
        (
            whole.reference_rows,
            whole.current_rows,
            whole.drift_detected
        )
    );
    assert!(
        streamed
            .notes
            .iter()
            .any(|n| n.contains("all statistics exact")),
        "{:?}",
        streamed.notes
    );
}

#[test]
fn past_the_limit_psi_and_chi_square_stay_exact_and_ks_is_within_its_bound() {
    let f = files(120_000, 90_000);
    let (_, whole) = job(&f, u64::MAX).run().unwrap();
    // a limit the values cannot fit: both sides go into sketches
    let (_, streamed) = stream_check(&job(&f, 1), 1).unwrap();
    let sketched = assert_equal_within_bounds(&whole, &streamed);
    // x, y and the prediction are continuous; flag is discrete (0/1) and channel categorical
    assert_eq!(sketched, 3);
    assert!(
        streamed
            .notes
            .iter()
            .any(|n| n.contains("quantile sketches")),
        "{:?}",
        streamed.notes
    );
}

#[test]
fn a_collection_streams_as_its_concatenated_file() {
    let dir = tempfile::tempdir().unwrap();
    let parts = dir.path().join("parts");
    std::fs::create_dir(&parts).unwrap();
    let whole = csv(9_000, 0.1, 7);
    let mut lines = whole.lines();
    let header = lines.next().unwrap().to_owned();
    let rows: Vec<&str> = lines.collect();
    for (i, chunk) in rows.chunks(3_000).enumerate() {
        let mut text = header.clone() + "\n";
        for r in chunk {
            text.push_str(r);
            text.push('\n');
        }
        std::fs::write(parts.join(format!("part-{i}.csv")), text).unwrap();
    }
    let one = dir.path().join("all.csv");
    std::fs::write(&one, &whole).unwrap();
    let reference = dir.path().join("ref.csv");
    std::fs::write(&reference, csv(12_000, 0.0, 8)).unwrap();
    let request = |current: &std::path::Path| CheckRequest {
        reference: DatasetLocation {
            uri: reference.display().to_string(),
            format: None,
        },
        current: DatasetLocation {
            uri: current.display().to_string(),
            format: Some(DataFormat::Csv),
        },
        labelled: None,
        config: DriftConfig::default(),
        model_version: None,
        now: None,
        storage: Default::default(),
    };
    // both sketched (a 1-byte limit), each within its bound of the exact answer
    let engine = DriftEngine::new(FetchContext::new().with_memory_limit(1));
    let check = |current: &std::path::Path| engine.check_local(&request(current)).unwrap();
    let (a, b) = (check(&one), check(&parts));
    let exact = DriftEngine::new(FetchContext::new().with_memory_limit(u64::MAX));
    let truth = exact.check_local(&request(&one)).unwrap();
    assert_eq!(assert_equal_within_bounds(&truth, &a), 3);
    assert_eq!(assert_equal_within_bounds(&truth, &b), 3);
    assert_eq!(a.current_rows, 9_000);
    assert!(
        b.notes.iter().any(|n| n.contains("memory limit")),
        "{:?}",
        b.notes
    );
}
