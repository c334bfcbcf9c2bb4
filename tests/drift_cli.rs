//! `mlrollout drift` end to end: the built binary on the bundled examples, on Parquet and CSV
//! written here, on bad inputs, with `--resource` and over `http://`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code states expectations

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow_array::builder::StringDictionaryBuilder;
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use parquet::arrow::ArrowWriter;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlrollout"))
        .arg("drift")
        .args(args)
        .current_dir(root())
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .expect("run mlrollout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs, expects success and exactly one JSON object on stdout.
fn run_json(args: &[&str]) -> Value {
    let o = run(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let values: Vec<Value> = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(values.len(), 1, "exactly one JSON value: {text}");
    assert!(values[0].is_object());
    values.into_iter().next().unwrap()
}

/// Runs, expects failure with one line on stderr (and no panic); returns that line.
fn run_err(args: &[&str]) -> String {
    let o = run(args);
    assert!(!o.status.success(), "{args:?} should fail");
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(o.stdout.is_empty(), "nothing on stdout");
    err
}

fn feature<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("feature {name} in {report}"))
}

fn drifted(report: &Value) -> Vec<String> {
    report["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["drifted"] == true)
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The JSON contract of the report: names and types.
fn assert_contract(report: &Value) {
    assert!(report["reference_rows"].is_u64());
    assert!(report["current_rows"].is_u64());
    assert!(report["drift_detected"].is_boolean());
    assert!(
        ["ok", "medium", "high"].contains(&report["severity"].as_str().unwrap()),
        "{report}"
    );
    assert!(report["drifted_share"].is_f64());
    for f in report["features"].as_array().unwrap() {
        assert!(f["name"].is_string());
        let kind = f["kind"].as_str().unwrap();
        let test = f["test"].as_str().unwrap();
        assert!(
            (kind == "numerical" && test == "ks") || (kind == "categorical" && test == "chi2"),
            "{f}"
        );
        let evaluated = f["status"] == "ok";
        for key in ["statistic", "p_value", "p_value_adjusted", "psi"] {
            if evaluated {
                assert!(f[key].is_f64(), "{key} in {f}");
            } else {
                assert!(f.get(key).is_some(), "{key} present in {f}");
            }
        }
        assert!(f["drifted"].is_boolean());
        assert!(["ok", "medium", "high"].contains(&f["severity"].as_str().unwrap()));
        assert!(f["missing_reference"].is_u64());
        assert!(f["missing_current"].is_u64());
    }
}

// ---------------------------------------------------------------- synthetic data

/// Deterministic uniform generator (PCG-style LCG).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.next()).sum::<f64>() - 6.0
    }
}

struct Data {
    amount: Vec<f64>,
    hour: Vec<i64>,
    channel: Vec<String>,
    prediction: Vec<f64>,
}

fn data(n: usize, amount_shift: f64, seed: u64) -> Data {
    let mut r = Rng(seed);
    let mut d = Data {
        amount: Vec::new(),
        hour: Vec::new(),
        channel: Vec::new(),
        prediction: Vec::new(),
    };
    for _ in 0..n {
        d.amount.push(50.0 + 10.0 * r.normal() + amount_shift);
        d.hour.push((r.next() * 24.0) as i64);
        d.channel
            .push(["web", "pos", "atm"][(r.next() * 3.0) as usize % 3].to_owned());
        d.prediction.push(r.next());
    }
    d
}

fn write_csv(path: &Path, d: &Data) {
    let mut s = String::from("amount,hour,channel,prediction\n");
    for i in 0..d.amount.len() {
        s.push_str(&format!(
            "{},{},{},{}\n",
            d.amount[i], d.hour[i], d.channel[i], d.prediction[i]
        ));
    }
    std::fs::write(path, s).unwrap();
}

fn write_parquet(path: &Path, d: &Data) {
    let mut channel = StringDictionaryBuilder::<Int32Type>::new();
    for c in &d.channel {
        channel.append_value(c);
    }
    let batch = RecordBatch::try_from_iter([
        (
            "amount",
            Arc::new(Float64Array::from(d.amount.clone())) as ArrayRef,
        ),
        (
            "hour",
            Arc::new(Int64Array::from(d.hour.clone())) as ArrayRef,
        ),
        ("channel", Arc::new(channel.finish()) as ArrayRef),
        (
            "prediction",
            Arc::new(Float64Array::from(d.prediction.clone())) as ArrayRef,
        ),
    ])
    .unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------- the bundled examples

#[test]
fn examples_json_finds_drift_in_amount_only() {
    let r = run_json(&[
        "--reference",
        "examples/data/reference.csv",
        "--current",
        "examples/data/current.csv",
        "--output",
        "json",
    ]);
    assert_contract(&r);
    assert_eq!(drifted(&r), ["amount"]);
    assert_eq!(r["drift_detected"], true);
    assert_eq!(r["severity"], "high");
    assert_eq!(r["reference_rows"], 5000);
    assert_eq!(r["current_rows"], 5000);
    let names: Vec<&str> = r["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    // every common column but the prediction, which is compared separately
    assert_eq!(
        names,
        [
            "amount",
            "merchant_risk",
            "account_age_days",
            "hour",
            "channel"
        ]
    );
    assert_eq!(feature(&r, "channel")["kind"], "categorical");
    assert_eq!(feature(&r, "channel")["test"], "chi2");
    assert_eq!(feature(&r, "hour")["kind"], "numerical");
    assert_eq!(feature(&r, "amount")["severity"], "high");
    assert!(feature(&r, "amount")["psi"].as_f64().unwrap() > 0.25);
    assert_eq!(r["prediction_drift"]["name"], "prediction");
    assert!((r["drifted_share"].as_f64().unwrap() - 0.2).abs() < 1e-12);
}

/// Every evaluated feature carries both distributions: the PSI bins (numeric) or the
/// categories (categorical), summing to the feature's non-missing counts on each side.
#[test]
fn examples_json_carries_histograms_and_thresholds() {
    let r = run_json(&[
        "--reference",
        "examples/data/reference.csv",
        "--current",
        "examples/data/current.csv",
    ]);
    assert_eq!(r["thresholds"]["alpha"], 0.05);
    assert_eq!(r["thresholds"]["psi_bins"], 10);
    let sum = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .sum::<u64>()
    };
    for f in r["features"].as_array().unwrap() {
        let h = &f["histogram"];
        let (other_r, other_c) = match h["kind"].as_str().unwrap() {
            "numeric" => {
                assert_eq!(h["edges"].as_array().unwrap().len(), 9, "{f}");
                assert_eq!(h["reference"].as_array().unwrap().len(), 10, "{f}");
                (0, 0)
            }
            "categorical" => {
                let n = h["categories"].as_array().unwrap().len();
                assert_eq!(h["reference"].as_array().unwrap().len(), n);
                (
                    h["other_reference"].as_u64().unwrap(),
                    h["other_current"].as_u64().unwrap(),
                )
            }
            other => panic!("histogram kind {other}"),
        };
        assert_eq!(
            sum(&h["reference"]) + other_r,
            f["n_reference"].as_u64().unwrap(),
            "{f}"
        );
        assert_eq!(
            sum(&h["current"]) + other_c,
            f["n_current"].as_u64().unwrap(),
            "{f}"
        );
    }
    let channel = &feature(&r, "channel")["histogram"];
    assert_eq!(channel["kind"], "categorical");
    assert_eq!(channel["categories"].as_array().unwrap().len(), 4);
}

/// `--output html`: one page, a card and a chart per feature, nothing fetched.
#[test]
fn examples_html() {
    let o = run(&[
        "--resource",
        "examples/fraud-detector.yaml",
        "--output",
        "html",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = String::from_utf8(o.stdout).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("DRIFT DETECTED (HIGH)"));
    assert!(page.contains("concept drift"), "the accuracy line");
    // five features and the prediction column
    assert_eq!(page.matches("<section class=\"card\"").count(), 6);
    assert_eq!(page.matches("<svg class=\"chart numeric\"").count(), 5);
    assert_eq!(page.matches("<svg class=\"chart categorical\"").count(), 1);
    for banned in ["<script", "http:", "https:", "src=", "url("] {
        assert!(!page.contains(banned), "{banned}");
    }
}

#[test]
fn output_defaults_to_json_when_not_a_terminal() {
    // stdout is a pipe here
    let r = run_json(&[
        "--reference",
        "examples/data/reference.csv",
        "--current",
        "examples/data/current.csv",
    ]);
    assert_eq!(drifted(&r), ["amount"]);
}

#[test]
fn examples_table() {
    let o = run(&[
        "--reference",
        "examples/data/reference.csv",
        "--current",
        "examples/data/current.csv",
        "--output",
        "table",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("FEATURE") && lines[0].contains("P-ADJ"),
        "{text}"
    );
    // header, 5 features, the prediction row, the verdict
    assert_eq!(lines.len(), 8, "{text}");
    let amount = lines.iter().find(|l| l.starts_with("amount ")).unwrap();
    assert!(
        amount.contains(" yes ") && amount.contains("high"),
        "{amount}"
    );
    let hour = lines.iter().find(|l| l.starts_with("hour ")).unwrap();
    assert!(hour.contains(" no "), "{hour}");
    // columns are aligned: KIND starts at the same offset on every row
    let col = lines[0].find("KIND").unwrap();
    for l in &lines[1..6] {
        assert!(
            l[col..].starts_with("numerical") || l[col..].starts_with("categorical"),
            "{l}"
        );
    }
    let verdict = lines.last().unwrap();
    assert!(
        verdict.starts_with("verdict: DRIFT DETECTED (severity high)"),
        "{verdict}"
    );
    assert!(verdict.contains("1 of 5"), "{verdict}");
}

#[test]
fn resource_rules_features_thresholds_and_accuracy() {
    let r = run_json(&[
        "--resource",
        "examples/fraud-detector.yaml",
        "--output",
        "json",
    ]);
    assert_contract(&r);
    assert_eq!(drifted(&r), ["amount"]);
    assert_eq!(r["features"].as_array().unwrap().len(), 5);
    assert_eq!(r["multiple_testing"], "benjaminiHochberg");
    let perf = &r["performance"];
    assert_eq!(perf["decision"], "threshold_0.5");
    assert_eq!(perf["rows"], 3000);
    let acc = perf["accuracy"].as_f64().unwrap();
    assert!(acc > 0.5 && acc < 0.85, "{perf}");
    assert_eq!(perf["below_threshold"], true);
    assert_eq!(perf["binary"]["positive_label"], "1");
    assert!(perf["binary"]["precision"].is_f64());

    // --current overrides the resource's URI: reference against itself, no drift
    let r = run_json(&[
        "--resource",
        "examples/fraud-detector.yaml",
        "--current",
        "examples/data/reference.csv",
        "--output",
        "json",
    ]);
    assert!(drifted(&r).is_empty());
    assert_eq!(r["drift_detected"], false);
    assert_eq!(r["severity"], "ok");
}

#[test]
fn resource_feature_missing_from_current_names_it_and_the_side() {
    let dir = tempfile::tempdir().unwrap();
    let cur = dir.path().join("cur.csv");
    let text = std::fs::read_to_string(root().join("examples/data/current.csv")).unwrap();
    // drop the `hour` column (4th)
    let without: String = text
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(',').collect();
            f.remove(3);
            f.join(",") + "\n"
        })
        .collect();
    std::fs::write(&cur, without).unwrap();
    let err = run_err(&[
        "--resource",
        "examples/fraud-detector.yaml",
        "--current",
        s(&cur),
    ]);
    assert!(
        err.contains("column 'hour' is missing from the current data"),
        "{err}"
    );
}

#[test]
fn bad_resources() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.yaml");
    std::fs::write(&p, "kind: ModelDeployment\nspec: [\n").unwrap();
    let err = run_err(&["--resource", s(&p)]);
    assert!(err.contains("not valid YAML"), "{err}");
    std::fs::write(&p, "apiVersion: v1\nkind: ConfigMap\n").unwrap();
    let err = run_err(&["--resource", s(&p)]);
    assert!(err.contains("no ModelDeployment"), "{err}");
    std::fs::write(
        &p,
        "apiVersion: mlrollout.io/v1alpha1\nkind: ModelDeployment\nmetadata: {name: x}\nspec: {drift: 3}\n",
    )
    .unwrap();
    let err = run_err(&["--resource", s(&p)]);
    assert!(err.contains("not a valid ModelDeployment"), "{err}");
    let err = run_err(&["--resource", "/no/such/resource.yaml"]);
    assert!(err.contains("cannot read resource"), "{err}");
    let err = run_err(&["--reference", "examples/data/reference.csv"]);
    assert!(err.contains("--current"), "{err}");
}

// ---------------------------------------------------------------- Parquet

#[test]
fn parquet_written_here() {
    let dir = tempfile::tempdir().unwrap();
    let (rp, cp, cc) = (
        dir.path().join("ref.parquet"),
        dir.path().join("cur.pq"),
        dir.path().join("cur.csv"),
    );
    write_parquet(&rp, &data(20_000, 0.0, 1));
    let cur = data(20_000, 4.0, 2);
    write_parquet(&cp, &cur);
    write_csv(&cc, &cur);
    let r = run_json(&[
        "--reference",
        s(&rp),
        "--current",
        s(&cp),
        "--output",
        "json",
    ]);
    assert_contract(&r);
    assert_eq!(drifted(&r), ["amount"]);
    assert_eq!(feature(&r, "channel")["kind"], "categorical"); // dictionary column
    assert_eq!(feature(&r, "hour")["kind"], "numerical"); // int64 column
    assert_eq!(r["current_rows"], 20_000);
    // the same current data as CSV gives the same statistics
    let r2 = run_json(&[
        "--reference",
        s(&rp),
        "--current",
        s(&cc),
        "--output",
        "json",
    ]);
    for name in ["amount", "hour", "channel"] {
        assert_eq!(
            feature(&r, name)["statistic"],
            feature(&r2, name)["statistic"],
            "{name}"
        );
        assert_eq!(
            feature(&r, name)["psi"],
            feature(&r2, name)["psi"],
            "{name}"
        );
    }
    // --categorical forces an integer column to categories
    let r3 = run_json(&[
        "--reference",
        s(&rp),
        "--current",
        s(&cp),
        "--categorical",
        "hour",
        "--output",
        "json",
    ]);
    assert_eq!(feature(&r3, "hour")["kind"], "categorical");
    assert_eq!(feature(&r3, "hour")["test"], "chi2");
}

// ---------------------------------------------------------------- bad and odd data

fn examples_header() -> &'static str {
    "amount,merchant_risk,account_age_days,hour,channel,prediction\n"
}

/// The example current data with `edit(row_index, fields)` applied to each data row.
fn edited_current(dir: &Path, edit: impl Fn(usize, &mut Vec<String>)) -> PathBuf {
    let text = std::fs::read_to_string(root().join("examples/data/current.csv")).unwrap();
    let mut out = String::from(examples_header());
    for (i, line) in text.lines().skip(1).enumerate() {
        let mut f: Vec<String> = line.split(',').map(str::to_owned).collect();
        edit(i, &mut f);
        out.push_str(&f.join(","));
        out.push('\n');
    }
    let p = dir.join("edited.csv");
    std::fs::write(&p, out).unwrap();
    p
}

#[test]
fn empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let zero = dir.path().join("zero.csv");
    std::fs::write(&zero, "").unwrap();
    let err = run_err(&[
        "--reference",
        "examples/data/reference.csv",
        "--current",
        s(&zero),
    ]);
    assert!(
        err.contains("current data") && err.contains("has no rows"),
        "{err}"
    );
    let header_only = dir.path().join("header.csv");
    std::fs::write(&header_only, examples_header()).unwrap();
    let err = run_err(&[
        "--reference",
        s(&header_only),
        "--current",
        "examples/data/current.csv",
    ]);
    assert!(
        err.contains("reference data") && err.contains("has no rows"),
        "{err}"
    );
    let empty_pq = dir.path().join("empty.parquet");
    std::fs::write(&empty_pq, "").unwrap();
    let err = run_err(&[
        "--reference",
        s(&empty_pq),
        "--current",
        "examples/data/current.csv",
    ]);
    assert!(err.contains("has no rows"), "{err}");
}

#[test]
fn missing_column_is_named() {
    let err = run_err(&[
        "--reference",
        "examples/data/reference.csv",
        "--current",
        "examples/data/current.csv",
        "--features",
        "amount,nope",
    ]);
    assert!(
        err.contains("column 'nope' is missing from the reference data"),
        "{err}"
    );
    let err = run_err(&[
        "--reference",
        "examples/data/reference.csv",
        "--current",
        "examples/data/current.csv",
        "--categorical",
        "colour",
    ]);
    assert!(err.contains("'colour'"), "{err}");
}

#[test]
fn text_in_numeric_column_names_column_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let p = edited_current(dir.path(), |i, f| {
        if i == 2 {
            f[0] = "abc".into();
        }
    });
    let err = run_err(&[
        "--reference",
        "examples/data/reference.csv",
        "--current",
        s(&p),
    ]);
    assert!(
        err.contains("column 'amount'")
            && err.contains("current data")
            && err.contains("row 3")
            && err.contains("'abc'"),
        "{err}"
    );
}

#[test]
fn nan_and_empty_cells_are_counted_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let p = edited_current(dir.path(), |i, f| {
        if i % 500 == 7 {
            f[0] = "NaN".into(); // 10 rows
        }
        if i < 5 {
            f[1] = String::new(); // 5 rows
        }
    });
    let r = run_json(&[
        "--reference",
        "examples/data/reference.csv",
        "--current",
        s(&p),
        "--output",
        "json",
    ]);
    assert_eq!(feature(&r, "amount")["missing_current"], 10);
    assert_eq!(feature(&r, "amount")["missing_reference"], 0);
    assert_eq!(feature(&r, "merchant_risk")["missing_current"], 5);
    assert_eq!(feature(&r, "amount")["n_current"], 4990);
    assert_eq!(drifted(&r), ["amount"]);
}

#[test]
fn all_nan_feature_is_insufficient_data() {
    let dir = tempfile::tempdir().unwrap();
    let p = edited_current(dir.path(), |_, f| f[2] = "NaN".into());
    let r = run_json(&[
        "--reference",
        "examples/data/reference.csv",
        "--current",
        s(&p),
        "--output",
        "json",
    ]);
    assert_contract(&r);
    let f = feature(&r, "account_age_days");
    assert_eq!(f["status"], "insufficient_data");
    assert_eq!(f["drifted"], false);
    assert_eq!(f["p_value"], Value::Null);
    assert_eq!(f["missing_current"], 5000);
    assert_eq!(r["n_evaluated"], 4);
    assert_eq!(drifted(&r), ["amount"]);
    // the table says so too
    let o = run(&[
        "--reference",
        "examples/data/reference.csv",
        "--current",
        s(&p),
        "--output",
        "table",
    ]);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("account_age_days") && l.contains("insufficient data")),
        "{text}"
    );
}

#[test]
fn category_never_seen_in_the_reference_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let p = edited_current(dir.path(), |i, f| {
        if i % 4 == 0 {
            f[4] = "crypto".into();
        }
    });
    let r = run_json(&[
        "--reference",
        "examples/data/reference.csv",
        "--current",
        s(&p),
        "--output",
        "json",
    ]);
    let c = feature(&r, "channel");
    assert_eq!(c["n_new_categories"], 1);
    assert_eq!(c["new_categories"], serde_json::json!(["crypto"]));
    assert_eq!(c["drifted"], true, "{c}");
    assert!(c["effect_size"].as_f64().unwrap() >= 0.1);
}

#[test]
fn missing_file_unsupported_scheme_unknown_format() {
    let err = run_err(&[
        "--reference",
        "examples/data/nope.csv",
        "--current",
        "examples/data/current.csv",
    ]);
    assert!(
        err.contains("reference data 'examples/data/nope.csv' not found"),
        "{err}"
    );
    let err = run_err(&[
        "--reference",
        "examples/data/reference.csv",
        "--current",
        "hdfs://namenode/current.parquet",
    ]);
    assert!(err.contains("unsupported scheme 'hdfs'"), "{err}");
    let err = run_err(&[
        "--reference",
        "examples/fraud-detector.yaml",
        "--current",
        "examples/data/current.csv",
    ]);
    assert!(err.contains("unknown format"), "{err}");
    let err = run_err(&[
        "--reference",
        "runs:/abc123/reference.csv",
        "--current",
        "examples/data/current.csv",
    ]);
    assert!(err.contains("tracking URI"), "{err}");
    // a CSV that is not a Parquet file
    let err = run_err(&[
        "--reference",
        "examples/data/reference.csv",
        "--reference-format",
        "parquet",
        "--current",
        "examples/data/current.csv",
    ]);
    assert!(err.contains("malformed"), "{err}");
}

// ---------------------------------------------------------------- collections

/// A capture window of `d` named per the proxy's layout, started `minutes_ago`, with the
/// proxy's bookkeeping columns beside the features.
fn write_window(dir: &Path, minutes_ago: i64, pod: &str, d: &Data) -> PathBuf {
    use arrow_array::StringArray;
    let start = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(minutes_ago);
    let path = dir.join(mlrollout::storage::layout::window_file_name(start, pod, 1));
    let n = d.amount.len();
    let batch = RecordBatch::try_from_iter([
        (
            "request_id",
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("{pod}-{i}")),
            )) as ArrayRef,
        ),
        (
            "timestamp",
            Arc::new(Int64Array::from(vec![start.as_millisecond(); n])) as ArrayRef,
        ),
        (
            "model_version",
            Arc::new(StringArray::from(vec!["3"; n])) as ArrayRef,
        ),
        (
            "amount",
            Arc::new(Float64Array::from(d.amount.clone())) as ArrayRef,
        ),
        (
            "hour",
            Arc::new(Int64Array::from(d.hour.clone())) as ArrayRef,
        ),
        (
            "prediction",
            Arc::new(Float64Array::from(d.prediction.clone())) as ArrayRef,
        ),
    ])
    .unwrap();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    path
}

#[test]
fn a_directory_of_capture_windows_is_one_dataset_and_its_newest_part_can_be_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.parquet");
    write_parquet(&reference, &data(2000, 0.0, 1));
    let windows = dir.path().join("stable");
    std::fs::create_dir(&windows).unwrap();
    // An old window of shifted amounts, then two recent ones like the reference.
    write_window(&windows, 180, "m-stable-a", &data(1000, 15.0, 2));
    write_window(&windows, 40, "m-stable-b", &data(1000, 0.0, 3));
    write_window(&windows, 20, "m-stable-a", &data(1000, 0.0, 4));
    let base = ["--reference", s(&reference), "--current", s(&windows)];
    let all = run_json(&base);
    assert_eq!(all["current_rows"], 3000);
    assert_eq!(drifted(&all), ["amount"]);
    let names: Vec<&str> = all["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "bookkeeping columns are not features: {names:?}"
    );
    for (flag, value) in [("--last-rows", "2000"), ("--last-duration", "1h")] {
        let recent = run_json(&[&base[..], &[flag, value]].concat());
        assert_eq!(recent["current_rows"], 2000, "{flag}");
        assert!(drifted(&recent).is_empty(), "{flag}: {recent}");
    }
    let pod_b = windows.join("*_m-stable-b_*.parquet");
    let one = run_json(&["--reference", s(&reference), "--current", s(&pod_b)]);
    assert_eq!(one["current_rows"], 1000);
    let err = run_err(&[&base[..], &["--last-duration", "5m"]].concat());
    assert!(
        err.contains("no CSV or Parquet files newer than 5m"),
        "{err}"
    );
    let err = run_err(&[&base[..], &["--last-rows", "5", "--last-duration", "1h"]].concat());
    assert!(err.contains("not both"), "{err}");
}

// ---------------------------------------------------------------- http://

/// A response: status line and body.
type Response = (&'static str, Vec<u8>);

/// Serves HTTP/1.1 on 127.0.0.1 (one request per connection, `route(path_and_query)`) for
/// `requests` requests, then stops.
fn serve_with(route: impl Fn(&str) -> Response + Send + 'static, requests: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let req = String::from_utf8_lossy(&buf);
            let target = req.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = route(target);
            let mut r = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(&body);
            let _ = stream.write_all(&r);
        }
    });
    port
}

/// Serves the files of `dir` (query strings ignored; anything else is 404).
fn serve(dir: PathBuf, requests: usize) -> u16 {
    serve_with(
        move |target| {
            let path = target.split('?').next().unwrap_or("/");
            match std::fs::read(dir.join(path.trim_start_matches('/'))) {
                Ok(body) if path.len() > 1 => ("200 OK", body),
                _ => ("404 Not Found", Vec::new()),
            }
        },
        requests,
    )
}

#[test]
fn http_sources() {
    let port = serve(root().join("examples/data"), 4);
    let base = format!("http://127.0.0.1:{port}");
    let r = run_json(&[
        "--reference",
        &format!("{base}/reference.csv"),
        "--current",
        &format!("{base}/current.csv?window=1h"),
        "--output",
        "json",
    ]);
    assert_eq!(drifted(&r), ["amount"]);
    assert_eq!(r["reference_rows"], 5000);
    let err = run_err(&[
        "--reference",
        &format!("{base}/missing.csv"),
        "--current",
        "examples/data/current.csv",
    ]);
    assert!(
        err.contains("not found") && err.contains("HTTP 404"),
        "{err}"
    );
}

/// `runs:/<run_id>/<path>` through a stand-in for MLflow's REST API and artifact proxy:
/// the run's `artifact_uri` is looked up, then the file is downloaded through the proxy.
#[test]
fn mlflow_run_artifacts() {
    let dir = root().join("examples/data");
    let port = serve_with(
        move |target| {
            if target.starts_with("/api/2.0/mlflow/runs/get?") {
                if target.contains("run_id=abc123") {
                    let run = r#"{"run": {"info": {"run_id": "abc123", "experiment_id": "1",
                        "artifact_uri": "mlflow-artifacts:/1/abc123/artifacts"}, "data": {}}}"#;
                    return ("200 OK", run.as_bytes().to_vec());
                }
                let missing =
                    r#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run not found"}"#;
                return ("404 Not Found", missing.as_bytes().to_vec());
            }
            let prefix = "/api/2.0/mlflow-artifacts/artifacts/1/abc123/artifacts/data/";
            match target
                .strip_prefix(prefix)
                .map(|f| std::fs::read(dir.join(f)))
            {
                Some(Ok(body)) => ("200 OK", body),
                _ => (
                    "404 Not Found",
                    br#"{"error_code": "RESOURCE_DOES_NOT_EXIST"}"#.to_vec(),
                ),
            }
        },
        16,
    );
    let tracking = format!("http://127.0.0.1:{port}");
    let r = run_json(&[
        "--reference",
        "runs:/abc123/data/reference.csv",
        "--current",
        "mlflow-artifacts:/1/abc123/artifacts/data/current.csv",
        "--tracking-uri",
        &tracking,
        "--output",
        "json",
    ]);
    assert_eq!(drifted(&r), ["amount"]);
    assert_eq!(r["reference_rows"], 5000);
    let err = run_err(&[
        "--reference",
        "runs:/abc123/data/nope.csv",
        "--current",
        "examples/data/current.csv",
        "--tracking-uri",
        &tracking,
    ]);
    assert!(
        err.contains("reference data") && err.contains("not found"),
        "{err}"
    );
    let err = run_err(&[
        "--reference",
        "runs:/zzz999/data/reference.csv",
        "--current",
        "examples/data/current.csv",
        "--tracking-uri",
        &tracking,
    ]);
    assert!(err.contains("not found"), "{err}");
}

/// `--window` with `--timestamp-column`: only recent current rows are compared.
#[test]
fn current_window() {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let text = std::fs::read_to_string(root().join("examples/data/current.csv")).unwrap();
    let mut out =
        String::from("amount,merchant_risk,account_age_days,hour,channel,prediction,ts\n");
    for (i, line) in text.lines().skip(1).enumerate() {
        // one row in five is recent (Unix seconds), the others are two days old
        let ts = if i % 5 == 0 {
            now - 60
        } else {
            now - 2 * 86_400
        };
        out.push_str(&format!("{line},{ts}\n"));
    }
    let p = dir.path().join("stamped.csv");
    std::fs::write(&p, out).unwrap();
    let r = run_json(&[
        "--reference",
        "examples/data/reference.csv",
        "--current",
        s(&p),
        "--window",
        "1h",
        "--timestamp-column",
        "ts",
        "--output",
        "json",
    ]);
    assert_eq!(r["current_rows"], 1000);
    assert_eq!(r["window"]["rows_total"], 5000);
    assert_eq!(r["window"]["timestamp_column"], "ts");
    assert!(
        r["features"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["name"] != "ts")
    );
    assert_eq!(drifted(&r), ["amount"]);
    let err = run_err(&[
        "--reference",
        "examples/data/reference.csv",
        "--current",
        s(&p),
        "--window",
        "1h",
    ]);
    assert!(err.contains("--timestamp-column"), "{err}");
}

/// A reader that goes away (`| head -c 10`) does not make the command panic.
#[test]
fn closed_stdout_does_not_panic() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_mlrollout"))
        .args([
            "drift",
            "--reference",
            "examples/data/reference.csv",
            "--current",
            "examples/data/current.csv",
            "--output",
            "json",
        ])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // close the read end before anything is written
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}
