//! `mlrollout drift` joining labels with captured predictions by request id: capture windows
//! written by the proxy's own writer (`Window::to_parquet`) in a local directory laid out like
//! the proxy's capture, and a feedback CSV of request ids and labels — with flags, and with a
//! `--resource` whose `performance.labelled.join` names the capture.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code states expectations

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mlrollout::proxy::capture::window::{CapturedRequest, Window};
use mlrollout::proxy::inputs::Rows;
use mlrollout::storage::layout::{variant_prefix, window_file_name};
use serde_json::{Value, json};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlrollout"))
        .arg("drift")
        .args(args)
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .expect("run mlrollout")
}

fn run_json(args: &[&str]) -> Value {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Fails with one line on stderr; returns it.
fn run_err(args: &[&str]) -> String {
    let o = run(args);
    assert!(!o.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// One request as the proxy captured it: its id, a feature row per row, a score per row.
struct Request {
    id: String,
    scores: Vec<f64>,
}

/// A score in (0, 1) that is never a whole number (so scores are thresholded at 0.5).
fn score(i: usize) -> f64 {
    ((i * 37) % 100) as f64 / 100.0 + 0.005
}

/// Writes one window of `requests` the way the proxy does, started `minutes_ago`.
fn write_window(dir: &Path, minutes_ago: i64, pod: &str, requests: &[Request]) {
    let start = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(minutes_ago);
    let mut window = Window::new(start);
    for (k, r) in requests.iter().enumerate() {
        window.push(CapturedRequest {
            request_id: r.id.clone(),
            at: start,
            rows: Rows {
                columns: vec!["x".into()],
                rows: (0..r.scores.len())
                    .map(|j| vec![json!((k * 3 + j) as f64 / 7.0)])
                    .collect(),
            },
            predictions: r.scores.iter().map(|s| json!(s)).collect(),
        });
    }
    let bytes = window.to_parquet("3").unwrap();
    std::fs::write(dir.join(window_file_name(start, pod, 1)), bytes).unwrap();
}

fn single(i: usize, score: f64) -> Request {
    Request {
        id: format!("req-{i}"),
        scores: vec![score],
    }
}

/// The rows of `requests` as the capture names them (`<id>`, or `<id>#<row>` of a multi-row
/// request) with their scores.
fn captured_rows(requests: &[Request]) -> Vec<(String, f64)> {
    requests
        .iter()
        .flat_map(|r| {
            let multi = r.scores.len() > 1;
            r.scores.iter().enumerate().map(move |(j, s)| {
                let id = if multi {
                    format!("{}#{j}", r.id)
                } else {
                    r.id.clone()
                };
                (id, *s)
            })
        })
        .collect()
}

/// Accuracy and joined rows the way the join is documented: the newest capture of an id, the
/// last label of an id, scores ≥ 0.5 are class 1.
fn expected(captured: &[(String, f64)], labels: &[(String, Option<u8>)]) -> (f64, u64) {
    let newest: HashMap<&str, f64> = captured.iter().map(|(id, s)| (id.as_str(), *s)).collect();
    let last: HashMap<&str, u8> = labels
        .iter()
        .filter_map(|(id, l)| l.map(|l| (id.as_str(), l)))
        .collect();
    let (mut joined, mut correct) = (0u64, 0u64);
    for (id, label) in &last {
        if let Some(s) = newest.get(id) {
            joined += 1;
            correct += u64::from(u8::from(*s >= 0.5) == *label);
        }
    }
    (correct as f64 / joined as f64, joined)
}

/// The capture (two windows of the stable variant under `<dir>/captures/ml/fraud/stable/`),
/// the feedback CSV and a reference; the captured rows (oldest first) and the labels.
struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    windows: PathBuf,
    feedback: PathBuf,
    reference: PathBuf,
    older: Vec<(String, f64)>,
    newer: Vec<(String, f64)>,
    labels: Vec<(String, Option<u8>)>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let windows = PathBuf::from(variant_prefix(
        s(&root.join("captures")),
        "ml",
        "fraud",
        "stable",
    ));
    std::fs::create_dir_all(&windows).unwrap();
    // An older window: req-0..29 and a three-row request; a newer one: req-30..39, req-5
    // again (its prediction flipped: the newer counts) and a two-row request.
    let mut old_requests: Vec<Request> = (0..30).map(|i| single(i, score(i))).collect();
    old_requests.push(Request {
        id: "batch-1".into(),
        scores: vec![0.15, 0.65, 0.95],
    });
    let mut new_requests: Vec<Request> = (30..40).map(|i| single(i, score(i))).collect();
    new_requests.push(single(5, 1.0 - score(5)));
    new_requests.push(Request {
        id: "batch-2".into(),
        scores: vec![0.25, 0.75],
    });
    write_window(&windows, 90, "fraud-stable-a", &old_requests);
    write_window(&windows, 10, "fraud-stable-b", &new_requests);
    // Labels: req-i except every fifth (not labelled yet); req-0 first labelled wrong, then
    // corrected (the last counts); batch-1 by row; batch-2 by its id alone; two ids never
    // captured; req-4 with an empty label.
    let mut labels: Vec<(String, Option<u8>)> =
        vec![("req-0".into(), Some(u8::from(score(0) < 0.5)))];
    for i in (0..40).filter(|i| i % 5 != 4) {
        labels.push((format!("req-{i}"), Some(u8::from(i % 3 == 0))));
    }
    for (j, l) in [1u8, 1, 0].into_iter().enumerate() {
        labels.push((format!("batch-1#{j}"), Some(l)));
    }
    for id in ["batch-2", "ghost-1", "ghost-2"] {
        labels.push((id.into(), Some(1)));
    }
    labels.push(("req-4".into(), None));
    let mut csv = String::from("request_id,label\n");
    for (id, l) in &labels {
        let _ = writeln!(csv, "{id},{}", l.map(|l| l.to_string()).unwrap_or_default());
    }
    let feedback = root.join("feedback.csv");
    std::fs::write(&feedback, csv).unwrap();
    let mut reference = String::from("x,prediction\n");
    for i in 0..200 {
        let _ = writeln!(reference, "{},{}", (i % 40) as f64 / 7.0, score(i));
    }
    let reference_path = root.join("reference.csv");
    std::fs::write(&reference_path, reference).unwrap();
    Setup {
        older: captured_rows(&old_requests),
        newer: captured_rows(&new_requests),
        _dir: dir,
        root,
        windows,
        feedback,
        reference: reference_path,
        labels,
    }
}

#[test]
fn labels_join_the_captured_predictions_by_request_id() {
    let t = setup();
    let all: Vec<(String, f64)> = t.older.iter().chain(&t.newer).cloned().collect();
    let (accuracy, joined) = expected(&all, &t.labels);
    let base = [
        "--reference",
        s(&t.reference),
        "--current",
        s(&t.windows),
        "--labelled",
        s(&t.feedback),
        "--join-predictions",
        s(&t.windows),
    ];
    let report = run_json(&base);
    let perf = &report["performance"];
    assert_eq!(perf["decision"], "threshold_0.5", "{perf}");
    assert_eq!(perf["rows"], joined);
    assert!(
        (perf["accuracy"].as_f64().unwrap() - accuracy).abs() < 1e-12,
        "{perf}"
    );
    let j = &perf["join"];
    // 46 captured rows: 35 labelled, 10 not yet, 1 older capture of req-5
    assert_eq!(
        [
            j["captured_rows"].clone(),
            j["joined"].clone(),
            j["unlabelled_predictions"].clone(),
            j["duplicate_predictions"].clone()
        ],
        [json!(46), json!(35), json!(10), json!(1)],
        "{j}"
    );
    // 40 feedback rows: 35 joined, batch-2 and the two ghosts unmatched (batch-2 named by
    // its id alone), the first label of req-0 replaced, req-4 without a label
    assert_eq!(
        [
            j["feedback_rows"].clone(),
            j["unmatched_labels"].clone(),
            j["request_level_labels"].clone(),
            j["duplicate_labels"].clone(),
            j["feedback_without_label"].clone()
        ],
        [json!(40), json!(3), json!(1), json!(1), json!(1)],
        "{j}"
    );
    assert_eq!(j["hashed"], "feedback", "the smaller side is held");
    let notes = report["notes"].to_string();
    assert!(
        notes.contains("3 labels without a captured prediction (not counted)"),
        "{notes}"
    );

    // The newest window only, by rows or by time: the captures are now the smaller side.
    let (accuracy, joined) = expected(&t.newer, &t.labels);
    for flags in [["--join-last-rows", "13"], ["--join-last-duration", "30m"]] {
        let report = run_json(&[&base[..], &flags].concat());
        let perf = &report["performance"];
        assert_eq!(perf["rows"], joined, "{flags:?}");
        assert!(
            (perf["accuracy"].as_f64().unwrap() - accuracy).abs() < 1e-12,
            "{flags:?}: {perf}"
        );
        assert_eq!(perf["join"]["captured_rows"], 13, "{flags:?}");
        assert_eq!(perf["join"]["hashed"], "captures", "{flags:?}");
    }

    // The table names the join.
    let o = run(&[&base[..], &["--output", "table"]].concat());
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("note: accuracy on 35 captured predictions joined with labels by request id"),
        "{text}"
    );

    // Another id column name.
    let renamed = t.root.join("renamed.csv");
    let csv =
        std::fs::read_to_string(&t.feedback)
            .unwrap()
            .replacen("request_id,label", "rid,truth", 1);
    std::fs::write(&renamed, csv).unwrap();
    let report = run_json(
        &[
            &base[..4],
            &[
                "--labelled",
                s(&renamed),
                "--join-predictions",
                s(&t.windows),
                "--id-column",
                "rid",
                "--label-column",
                "truth",
            ],
        ]
        .concat(),
    );
    assert_eq!(report["performance"]["rows"], 35);
    assert_eq!(report["performance"]["label_column"], "truth");
    assert_eq!(report["performance"]["join"]["id_column"], "rid");
    let err = run_err(&[&base[..], &["--id-column", "rid"]].concat());
    assert!(
        err.contains("column 'rid' is missing from the labelled data"),
        "{err}"
    );
}

#[test]
fn a_resource_joins_the_capture_it_names() {
    let t = setup();
    let manifest = |performance: Value| {
        let md = json!({
            "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": "fraud", "namespace": "ml"},
            "spec": {
                "model": {"trackingUri": "http://127.0.0.1:9", "name": "fraud"},
                "traffic": {"provider": "none"},
                "serving": {"proxy": {"capture": {"uri": s(&t.root.join("captures"))}}},
                "drift": {"reference": {"uri": s(&t.reference)}, "current": {"capture": {"variant": "stable"}}},
                "performance": performance,
            }
        });
        let path = t.root.join("md.yaml");
        std::fs::write(&path, serde_yaml::to_string(&md).unwrap()).unwrap();
        path
    };
    let all: Vec<(String, f64)> = t.older.iter().chain(&t.newer).cloned().collect();
    let (accuracy, joined) = expected(&all, &t.labels);
    let md = manifest(json!({
        "labelled": {"uri": s(&t.feedback), "join": {"capture": {"variant": "stable"}}},
        "accuracyThreshold": 0.99,
    }));
    let report = run_json(&["--resource", s(&md)]);
    let perf = &report["performance"];
    assert_eq!(perf["rows"], joined);
    assert!(
        (perf["accuracy"].as_f64().unwrap() - accuracy).abs() < 1e-12,
        "{perf}"
    );
    assert_eq!(perf["below_threshold"], true);
    assert_eq!(
        report["current_rows"], 46,
        "the drift check reads the same capture"
    );
    // The resource's lastRows, and --join-last-duration over it.
    let md = manifest(json!({
        "labelled": {"uri": s(&t.feedback), "join": {"capture": {"variant": "stable"}, "lastRows": 13}},
    }));
    let (_, newer_joined) = expected(&t.newer, &t.labels);
    assert_eq!(
        run_json(&["--resource", s(&md)])["performance"]["rows"],
        newer_joined
    );
    let report = run_json(&["--resource", s(&md), "--join-last-duration", "2h"]);
    assert_eq!(report["performance"]["rows"], joined);
    // A resource without labelled data: the flags name the feedback and the variant.
    let md = manifest(json!({}));
    let report = run_json(&[
        "--resource",
        s(&md),
        "--labelled",
        s(&t.feedback),
        "--join-capture",
        "stable",
    ]);
    assert_eq!(report["performance"]["rows"], joined);
    let err = run_err(&[
        "--resource",
        s(&md),
        "--labelled",
        s(&t.feedback),
        "--join-capture",
        "candidate",
    ]);
    assert!(err.contains("captured data"), "{err}");
}

#[test]
fn flags_that_need_one_another() {
    let t = setup();
    let base = ["--reference", s(&t.reference), "--current", s(&t.windows)];
    for (flags, said) in [
        (vec!["--join-predictions", s(&t.windows)], "need --labelled"),
        (
            vec!["--labelled", s(&t.feedback), "--id-column", "rid"],
            "need --join-predictions or --join-capture",
        ),
        (
            vec!["--labelled", s(&t.feedback), "--join-capture", "stable"],
            "--join-capture needs --resource",
        ),
        (
            vec![
                "--labelled",
                s(&t.feedback),
                "--join-predictions",
                s(&t.windows),
                "--id-column",
                "label",
            ],
            "must be two columns",
        ),
    ] {
        let err = run_err(&[&base[..], &flags].concat());
        assert!(err.contains(said), "{flags:?}: {err}");
    }
}
