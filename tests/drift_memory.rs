//! `mlrollout drift --memory-limit`: data larger than the limit is checked within it (the
//! process's own peak RSS, as the kernel counts it), and the same data read whole passes the
//! limit by far — so the first assertion could fail without streaming.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code states expectations

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

const ROWS: usize = 1_500_000;
const BATCH: usize = 100_000;
const LIMIT_MIB: u64 = 160;

/// Seeded uniform numbers in [0, 1) (a linear congruential generator).
fn uniform(seed: u64) -> impl FnMut() -> f64 {
    let mut s = seed | 1;
    move || {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A Parquet file of ROWS rows: six continuous columns (the first shifted in the current
/// data) and one categorical, written batch by batch.
fn write(path: &Path, shift: f64, seed: u64) {
    let names = ["a", "b", "c", "d", "e", "f"];
    let mut fields: Vec<arrow_schema::Field> = names
        .iter()
        .map(|n| arrow_schema::Field::new(*n, arrow_schema::DataType::Float64, true))
        .collect();
    fields.push(arrow_schema::Field::new(
        "channel",
        arrow_schema::DataType::Utf8,
        true,
    ));
    let schema = Arc::new(arrow_schema::Schema::new(fields));
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(500_000))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
    let mut u = uniform(seed);
    for _ in 0..ROWS / BATCH {
        let mut columns: Vec<ArrayRef> = Vec::new();
        for i in 0..names.len() {
            let d = if i == 0 { shift } else { 0.0 };
            let v: Vec<f64> = (0..BATCH).map(|_| u() * 100.0 + d * 100.0).collect();
            columns.push(Arc::new(Float64Array::from(v)));
        }
        let c: Vec<&str> = (0..BATCH)
            .map(|_| ["web", "pos", "atm"][(u() * 3.0) as usize % 3])
            .collect();
        columns.push(Arc::new(StringArray::from(c)));
        w.write(&RecordBatch::try_new(schema.clone(), columns).unwrap())
            .unwrap();
    }
    w.close().unwrap();
}

/// The report and the peak RSS in KiB of one check.
fn check(reference: &Path, current: &Path, limit: &str) -> (serde_json::Value, u64) {
    let (reference, current) = (reference.to_str().unwrap(), current.to_str().unwrap());
    let (ok, stdout, stderr) = run(&[
        "drift",
        "--output",
        "json",
        "--timing",
        "--memory-limit",
        limit,
        "--reference",
        reference,
        "--current",
        current,
    ]);
    assert!(ok, "{stderr}");
    let peak = stderr
        .split("peak RSS ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in: {stderr}"));
    (serde_json::from_str(&stdout).unwrap(), peak)
}

#[test]
fn data_larger_than_the_memory_limit_is_checked_within_it() {
    let dir = tempfile::tempdir().unwrap();
    let (r, c) = (
        dir.path().join("ref.parquet"),
        dir.path().join("cur.parquet"),
    );
    write(&r, 0.0, 1);
    write(&c, 0.2, 2);

    let (whole, whole_peak) = check(&r, &c, "8GiB");
    assert!(
        whole_peak > LIMIT_MIB * 1024,
        "read whole, the check should need more than {LIMIT_MIB} MiB (took {whole_peak} KiB): the test data is too small to prove anything"
    );

    let (streamed, peak) = check(&r, &c, &format!("{LIMIT_MIB}MiB"));
    assert!(
        peak <= LIMIT_MIB * 1024,
        "peak RSS {peak} KiB over the limit of {LIMIT_MIB} MiB"
    );
    let notes = streamed["notes"].to_string();
    assert!(notes.contains("quantile sketches"), "{notes}");
    for (w, s) in whole["features"]
        .as_array()
        .unwrap()
        .iter()
        .zip(streamed["features"].as_array().unwrap())
    {
        assert_eq!(w["name"], s["name"]);
        assert_eq!(w["drifted"], s["drifted"], "{}", w["name"]);
        assert_eq!(w["psi"], s["psi"], "PSI is exact either way: {}", w["name"]);
        if let Some(bound) = s["statistic_error_bound"].as_f64() {
            let (a, b) = (
                w["statistic"].as_f64().unwrap(),
                s["statistic"].as_f64().unwrap(),
            );
            assert!(
                (a - b).abs() <= bound,
                "{}: {a} vs {b} ± {bound}",
                w["name"]
            );
        }
    }
    assert_eq!(streamed["features"][0]["drifted"], true);
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mlrollout"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn csv(n: usize, shift: f64, seed: u64) -> String {
    let mut u = uniform(seed);
    let mut out = String::from("x,y,flag,channel\n");
    for _ in 0..n {
        let channel = if u() < 0.4 + shift { "web" } else { "pos" };
        out.push_str(&format!(
            "{},{},{},{channel}\n",
            u() + u() - 1.0 + shift,
            u() * 50.0,
            u8::from(u() < 0.2)
        ));
    }
    out
}

#[test]
fn a_reference_profile_stands_in_for_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let (r, c) = (dir.path().join("ref.csv"), dir.path().join("cur.csv"));
    std::fs::write(&r, csv(40_000, 0.0, 3)).unwrap();
    std::fs::write(&c, csv(30_000, 0.1, 4)).unwrap();
    let (r, c) = (r.to_str().unwrap(), c.to_str().unwrap());
    let exact = dir.path().join("exact.json");
    let sketched = dir.path().join("sketched.json");
    let (exact, sketched) = (exact.to_str().unwrap(), sketched.to_str().unwrap());
    let (ok, _, err) = run(&["drift", "profile", "--reference", r, "--out", exact]);
    assert!(ok && err.contains("40000 rows, 4 features"), "{err}");
    let (ok, _, err) = run(&[
        "drift",
        "profile",
        "--reference",
        r,
        "--out",
        sketched,
        "--exact-up-to",
        "1000",
    ]);
    assert!(ok, "{err}");
    assert!(
        std::fs::metadata(sketched).unwrap().len() < std::fs::metadata(exact).unwrap().len() / 2
    );

    let check = |reference: &str| {
        let (ok, out, err) = run(&[
            "drift",
            "--output",
            "json",
            "--reference",
            reference,
            "--current",
            c,
        ]);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let direct = check(r);
    let from_exact = check(exact);
    assert_eq!(
        from_exact["features"], direct["features"],
        "bit for bit from exact values"
    );
    let from_sketch = check(sketched);
    for (d, s) in direct["features"]
        .as_array()
        .unwrap()
        .iter()
        .zip(from_sketch["features"].as_array().unwrap())
    {
        assert_eq!(d["psi"], s["psi"], "{}", d["name"]);
        assert_eq!(d["drifted"], s["drifted"], "{}", d["name"]);
        match s["statistic_error_bound"].as_f64() {
            Some(bound) => {
                let (a, b) = (
                    d["statistic"].as_f64().unwrap(),
                    s["statistic"].as_f64().unwrap(),
                );
                assert!(
                    (a - b).abs() <= bound,
                    "{}: {a} vs {b} ± {bound}",
                    d["name"]
                );
            }
            None => assert_eq!(d["statistic"], s["statistic"], "{}", d["name"]),
        }
    }
    assert_eq!(from_sketch["features"][0]["name"], "x");
    assert!(from_sketch["features"][0]["statistic_error_bound"].is_f64());

    // other settings than the profile's: refused, saying why
    let (ok, _, err) = run(&[
        "drift",
        "--reference",
        exact,
        "--current",
        c,
        "--ignore",
        "y",
    ]);
    assert!(!ok && err.contains("other settings"), "{err}");
    // not a profile at all
    let bogus = dir.path().join("bogus.json");
    std::fs::write(&bogus, "{\"kind\": \"Pod\"}").unwrap();
    let (ok, _, err) = run(&[
        "drift",
        "--reference",
        bogus.to_str().unwrap(),
        "--current",
        c,
    ]);
    assert!(!ok && err.contains("not a reference profile"), "{err}");
    let (ok, _, err) = run(&["drift", "profile", "--reference", r, "--out", "p.parquet"]);
    assert!(!ok && err.contains("a profile is a .json file"), "{err}");
    // a profile is made from the reference alone
    let (ok, _, err) = run(&[
        "drift",
        "profile",
        "--reference",
        r,
        "--current",
        c,
        "--out",
        exact,
    ]);
    assert!(!ok && err.contains("drop --current"), "{err}");
}
