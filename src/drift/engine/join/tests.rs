#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::drift::data::Part;
use crate::proxy::capture::window::{CapturedRequest, Window};
use crate::proxy::inputs::Rows;

/// Ids as text (`None`: missing), values as numbers (NaN: missing).
fn keyed(ids: &[Option<&str>], values: &[f64]) -> Keyed {
    assert_eq!(ids.len(), values.len());
    let mut dict = Dictionary::default();
    let codes = ids
        .iter()
        .map(|id| id.map_or(MISSING_CODE, |s| dict.code(s)))
        .collect();
    Keyed {
        ids: CategoricalColumn {
            categories: dict.into_categories(),
            codes,
        },
        values: Column::Numeric(values.to_vec()),
    }
}

/// What the probe side is to [`join`]: it calls its argument with each file, newest first.
type EachFile<'a> = &'a mut dyn FnMut(&Keyed) -> bool;

/// A side given as files (oldest first), read newest first by the probe.
fn probe_files(files: &[Keyed]) -> impl FnOnce(EachFile<'_>) -> Result<(), DataError> {
    move |f| {
        for file in files.iter().rev() {
            if !f(file) {
                break;
            }
        }
        Ok(())
    }
}

/// The files of a side as one (what the hashed side reads).
fn whole(files: &[Keyed]) -> Keyed {
    let mut ids: Vec<Option<String>> = Vec::new();
    let mut values = Vec::new();
    for f in files {
        for row in 0..f.rows() {
            ids.push(f.id(row).map(str::to_owned));
            values.push(f.values.as_numeric().unwrap()[row]);
        }
    }
    let ids: Vec<Option<&str>> = ids.iter().map(Option::as_deref).collect();
    keyed(&ids, &values)
}

/// The newest `n` rows of a side.
fn newest(side: &Keyed, n: Option<usize>) -> Keyed {
    let skip = n.map_or(0, |n| side.rows().saturating_sub(n));
    let ids: Vec<Option<&str>> = (skip..side.rows()).map(|r| side.id(r)).collect();
    keyed(&ids, &side.values.as_numeric().unwrap()[skip..])
}

/// The join with `hashed` held: captures and feedback given as files, oldest first.
fn run(
    captures: &[Keyed],
    feedback: &[Keyed],
    hashed: JoinSide,
    last_rows: Option<usize>,
) -> Joined {
    match hashed {
        JoinSide::Captures => join(
            &newest(&whole(captures), last_rows),
            JoinSide::Captures,
            probe_files(feedback),
            None,
        ),
        JoinSide::Feedback => join(
            &whole(feedback),
            JoinSide::Feedback,
            probe_files(captures),
            last_rows,
        ),
    }
    .unwrap()
}

/// The joined (prediction, label) pairs, sorted.
fn pairs(j: &Joined) -> Vec<(String, String)> {
    let text = |c: &Column, i: usize| match c {
        Column::Numeric(v) => format!("{}", v[i]),
        Column::Categorical(c) => c.value(i).unwrap_or("-").to_owned(),
    };
    let mut out: Vec<(String, String)> = (0..j.predictions.len())
        .map(|i| (text(&j.predictions, i), text(&j.labels, i)))
        .collect();
    out.sort();
    out
}

/// Both ways of hashing agree; the result of one of them.
fn both(captures: &[Keyed], feedback: &[Keyed], last_rows: Option<usize>) -> Joined {
    let a = run(captures, feedback, JoinSide::Captures, last_rows);
    let b = run(captures, feedback, JoinSide::Feedback, last_rows);
    assert_eq!(pairs(&a), pairs(&b));
    let unhashed = |r: &LabelJoinReport| LabelJoinReport {
        hashed: JoinSide::Feedback,
        ..r.clone()
    };
    assert_eq!(unhashed(&a.report), unhashed(&b.report));
    b
}

const N: f64 = f64::NAN;

#[test]
fn predictions_without_a_label_are_not_counted() {
    let captures = [keyed(&[Some("a"), Some("b"), Some("c")], &[0.9, 0.2, 0.7])];
    let feedback = [keyed(&[Some("c"), Some("a")], &[1.0, 0.0])];
    let j = both(&captures, &feedback, None);
    assert_eq!(
        pairs(&j),
        [("0.7", "1"), ("0.9", "0")].map(|(a, b)| (a.into(), b.into()))
    );
    let r = &j.report;
    assert_eq!(
        (r.captured_rows, r.joined, r.unlabelled_predictions),
        (3, 2, 1)
    );
    assert_eq!((r.feedback_rows, r.unmatched_labels), (2, 0));
}

#[test]
fn labels_without_a_captured_prediction_are_counted_never_an_error() {
    let captures = [keyed(&[Some("a")], &[0.9])];
    let feedback = [keyed(
        &[Some("a"), Some("zz"), Some("yy"), None, Some("b")],
        &[1.0, 0.0, 1.0, 1.0, N],
    )];
    let j = both(&captures, &feedback, None);
    let r = &j.report;
    assert_eq!((r.joined, r.unmatched_labels), (1, 2));
    // no id, or no label: left out, counted apart
    assert_eq!(r.feedback_without_label, 2);
    assert_eq!(r.feedback_rows, 5);
    // nothing joined at all is still a report
    let none = both(&captures, &[keyed(&[Some("q")], &[1.0])], None);
    assert_eq!((none.report.joined, none.report.unmatched_labels), (0, 1));
    assert!(none.predictions.is_empty() && none.labels.is_empty());
}

#[test]
fn duplicates_the_newest_capture_and_the_last_label_count() {
    // `a` captured in two windows (older 0.9, newer 0.1), labelled twice (0 then 1); `b`
    // captured twice in one window; the last label of `b` has no value, the one before counts.
    let captures = [
        keyed(&[Some("a"), Some("b")], &[0.9, 0.3]),
        keyed(&[Some("b"), Some("a"), Some("b")], &[0.4, 0.1, 0.8]),
    ];
    let feedback = [
        keyed(&[Some("a"), Some("b")], &[0.0, 1.0]),
        keyed(&[Some("a"), Some("b")], &[1.0, N]),
    ];
    let j = both(&captures, &feedback, None);
    assert_eq!(
        pairs(&j),
        [("0.1", "1"), ("0.8", "1")].map(|(a, b)| (a.into(), b.into()))
    );
    let r = &j.report;
    assert_eq!(
        (r.joined, r.duplicate_predictions, r.duplicate_labels),
        (2, 3, 1)
    );
    assert_eq!(r.feedback_without_label, 1);
    assert_eq!(
        r.captured_rows,
        r.joined + r.unlabelled_predictions + r.duplicate_predictions
    );
    assert_eq!(
        r.feedback_rows,
        r.joined + r.unmatched_labels + r.duplicate_labels + r.feedback_without_label
    );
}

#[test]
fn rows_of_multi_row_requests_are_labelled_by_id_and_row() {
    // r1 had two rows, r2 one, r3 two; labels for r1's rows, r2, and r3 as a whole.
    let captures = [keyed(
        &[
            Some("r1#0"),
            Some("r1#1"),
            Some("r2"),
            Some("r3#0"),
            Some("r3#1"),
        ],
        &[0.9, 0.1, 0.8, 0.7, 0.2],
    )];
    let feedback = [keyed(
        &[
            Some("r1#1"),
            Some("r1#0"),
            Some("r2"),
            Some("r3"),
            Some("r1"),
        ],
        &[0.0, 1.0, 0.0, 1.0, 1.0],
    )];
    let j = both(&captures, &feedback, None);
    assert_eq!(
        pairs(&j),
        [("0.1", "0"), ("0.8", "0"), ("0.9", "1")].map(|(a, b)| (a.into(), b.into()))
    );
    let r = &j.report;
    assert_eq!((r.joined, r.unlabelled_predictions), (3, 2));
    // `r3` and `r1` name multi-row requests by their ids alone
    assert_eq!((r.unmatched_labels, r.request_level_labels), (2, 2));
    assert!(
        r.note()
            .contains("2 of them name a multi-row request by its id alone"),
        "{}",
        r.note()
    );
}

#[test]
fn the_newest_captured_rows_only() {
    let captures = [
        keyed(&[Some("a"), Some("b")], &[0.9, 0.9]),
        keyed(&[Some("c"), Some("d")], &[0.1, 0.1]),
    ];
    let feedback = [keyed(
        &[Some("a"), Some("b"), Some("c"), Some("d")],
        &[1.0; 4],
    )];
    let j = both(&captures, &feedback, Some(3));
    let r = &j.report;
    assert_eq!((r.captured_rows, r.joined, r.unmatched_labels), (3, 3, 1));
}

/// The join as the module says, row by row over whole tables.
fn naive(captures: &Keyed, feedback: &Keyed) -> (Vec<(String, String)>, LabelJoinReport) {
    use std::collections::HashMap;
    let mut last_capture: HashMap<&str, usize> = HashMap::new();
    for r in 0..captures.rows() {
        if let Some(id) = captures.id(r) {
            last_capture.insert(id, r);
        }
    }
    let mut last_label: HashMap<&str, usize> = HashMap::new();
    for r in 0..feedback.rows() {
        if let Some(id) = feedback.id(r).filter(|_| feedback.has_value(r)) {
            last_label.insert(id, r);
        }
    }
    let p = captures.values.as_numeric().unwrap();
    let l = feedback.values.as_numeric().unwrap();
    let mut report = LabelJoinReport::default();
    let mut out = Vec::new();
    for (id, &c) in &last_capture {
        if let Some(&f) = last_label.get(id) {
            out.push((format!("{}", p[c]), format!("{}", l[f])));
        }
    }
    out.sort();
    report.joined = out.len() as u64;
    for r in 0..captures.rows() {
        report.captured_rows += 1;
        match captures.id(r) {
            Some(id) if last_label.contains_key(id) && last_capture[id] != r => {
                report.duplicate_predictions += 1;
            }
            Some(id) if last_label.contains_key(id) => {}
            _ => report.unlabelled_predictions += 1,
        }
    }
    for r in 0..feedback.rows() {
        report.feedback_rows += 1;
        match feedback.id(r).filter(|_| feedback.has_value(r)) {
            None => report.feedback_without_label += 1,
            Some(id) if last_capture.contains_key(id) && last_label[id] != r => {
                report.duplicate_labels += 1;
            }
            Some(id) if last_capture.contains_key(id) => {}
            Some(id) => {
                report.unmatched_labels += 1;
                if last_capture.contains_key(format!("{id}#0").as_str()) {
                    report.request_level_labels += 1;
                }
            }
        }
    }
    (out, report)
}

const IDS: [&str; 7] = ["a", "b", "c", "a#0", "a#1", "b#0", "zz"];

/// A side as files: (id index or missing, value or missing) rows cut at `cuts`.
fn side(rows: &[(Option<usize>, Option<u8>)], cuts: &[usize]) -> Vec<Keyed> {
    let mut files = Vec::new();
    let mut start = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (rows.len() + 1)).collect();
    bounds.push(rows.len());
    bounds.sort_unstable();
    for end in bounds {
        let chunk = &rows[start..end.max(start)];
        let ids: Vec<Option<&str>> = chunk.iter().map(|(i, _)| i.map(|i| IDS[i])).collect();
        let values: Vec<f64> = chunk
            .iter()
            .map(|(_, v)| v.map_or(f64::NAN, |v| f64::from(v) / 4.0))
            .collect();
        files.push(keyed(&ids, &values));
        start = end.max(start);
    }
    files
}

fn rows_strategy() -> impl Strategy<Value = Vec<(Option<usize>, Option<u8>)>> {
    proptest::collection::vec(
        (
            proptest::option::weighted(0.9, 0..IDS.len()),
            proptest::option::weighted(0.85, 0u8..5),
        ),
        0..30,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whichever side is hashed, however the sides are cut into files, the join is the naive
    /// one; the counts add up.
    #[test]
    fn either_side_hashed_is_the_naive_join(
        captured in rows_strategy(),
        labels in rows_strategy(),
        capture_cuts in proptest::collection::vec(0usize..40, 0..4),
        label_cuts in proptest::collection::vec(0usize..40, 0..4),
        last_rows in proptest::option::of(1usize..35),
    ) {
        let captures = side(&captured, &capture_cuts);
        let feedback = side(&labels, &label_cuts);
        let (expected, mut counts) = naive(&newest(&whole(&captures), last_rows), &whole(&feedback));
        for hashed in [JoinSide::Captures, JoinSide::Feedback] {
            let j = run(&captures, &feedback, hashed, last_rows);
            prop_assert_eq!(&pairs(&j), &expected);
            counts.hashed = hashed;
            prop_assert_eq!(&j.report, &counts);
        }
    }
}

/// A capture window of one-row requests `(id, features, prediction)`, as the proxy writes it.
fn window(at: &str, requests: &[(&str, Vec<Value>, Vec<Value>)]) -> Vec<u8> {
    let mut w = Window::new(at.parse().unwrap());
    for (id, rows, predictions) in requests {
        w.push(CapturedRequest {
            request_id: (*id).into(),
            at: at.parse().unwrap(),
            rows: Rows {
                columns: vec!["x".into()],
                rows: rows.iter().map(|v| vec![v.clone()]).collect(),
            },
            predictions: predictions.clone(),
        });
    }
    w.to_parquet("3").unwrap()
}

fn captures_payload() -> Payload {
    let older = window(
        "2026-12-01T10:00:00Z",
        &[
            ("r1", vec![json!(1.0)], vec![json!(0.9)]),
            (
                "r2",
                vec![json!(2.0), json!(3.0)],
                vec![json!(0.2), json!(0.8)],
            ),
        ],
    );
    let newer = window(
        "2026-12-01T10:05:00Z",
        &[
            ("r3", vec![json!(4.0)], vec![json!(0.4)]),
            ("r1", vec![json!(5.0)], vec![json!(0.3)]),
        ],
    );
    Payload::Many {
        uri: "mem://captures/".into(),
        parts: [older, newer]
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| Part {
                payload: Payload::from_bytes(format!("mem://captures/{i}.parquet"), bytes),
                format: DataFormat::Parquet,
            })
            .collect(),
        last_rows: None,
    }
}

fn input<'a>(
    payload: &'a Payload,
    format: DataFormat,
    id: &'a str,
    value: &'a str,
    side: Side,
) -> JoinInput<'a> {
    JoinInput {
        payload,
        format,
        id_column: id,
        value_column: value,
        side,
    }
}

#[test]
fn accuracy_of_captured_windows_joined_with_a_feedback_csv() {
    let captures = captures_payload();
    // r1 was captured twice (0.9, then 0.3 in the newer window): the newer counts
    let csv = "request_id,label\nr1,0\nr2#0,0\nr2#1,1\nr3,1\nr9,1\n";
    let feedback = Payload::from_bytes("mem://feedback.csv", csv.as_bytes().to_vec());
    let c = input(
        &captures,
        DataFormat::Parquet,
        REQUEST_ID,
        "prediction",
        Side::Captured,
    );
    let f = input(
        &feedback,
        DataFormat::Csv,
        "request_id",
        "label",
        Side::Labelled,
    );
    let a = joined_accuracy(&c, &f, "request_id", MAX_JOIN_ROWS).unwrap();
    // scores thresholded at 0.5 against 0/1 labels, as for a labelled table:
    // r1 0.3→0 ✓, r2#0 0.2→0 ✓, r2#1 0.8→1 ✓, r3 0.4→0 ✗
    assert_eq!(a.decision, "threshold_0.5");
    assert_eq!((a.rows, a.missing), (4, 0));
    assert_eq!(a.accuracy, Some(0.75));
    assert_eq!(
        (a.prediction_column.as_str(), a.label_column.as_str()),
        ("prediction", "label")
    );
    let j = a.join.unwrap();
    assert_eq!((j.captured_rows, j.feedback_rows, j.joined), (5, 5, 4));
    assert_eq!((j.unmatched_labels, j.duplicate_predictions), (1, 1));
    // five rows on each side: the feedback is held
    assert_eq!(j.hashed, JoinSide::Feedback);
    // a smaller feedback table is held; a larger one streams past the held captures
    let small = Payload::from_bytes("mem://f.csv", b"request_id,label\nr3,0\n".to_vec());
    let f = input(
        &small,
        DataFormat::Csv,
        "request_id",
        "label",
        Side::Labelled,
    );
    let a = joined_accuracy(&c, &f, "request_id", MAX_JOIN_ROWS).unwrap();
    assert_eq!(
        (a.accuracy, a.join.unwrap().hashed),
        (Some(1.0), JoinSide::Feedback)
    );
    let big: String = std::iter::once("request_id,label\n".to_owned())
        .chain((0..10).map(|i| format!("other{i},1\n")))
        .chain(std::iter::once("r3,1\n".to_owned()))
        .collect();
    let big = Payload::from_bytes("mem://f.csv", big.into_bytes());
    let f = input(&big, DataFormat::Csv, "request_id", "label", Side::Labelled);
    let a = joined_accuracy(&c, &f, "request_id", MAX_JOIN_ROWS).unwrap();
    let j = a.join.clone().unwrap();
    assert_eq!(
        (j.hashed, j.joined, j.unmatched_labels),
        (JoinSide::Captures, 1, 10)
    );
    assert_eq!(a.accuracy, Some(0.0));
}

#[test]
fn the_held_side_is_bounded_and_columns_are_named_by_side() {
    let captures = captures_payload();
    let csv = "request_id,label\nr1,0\nr2#0,0\nr3,1\n";
    let feedback = Payload::from_bytes("mem://feedback.csv", csv.as_bytes().to_vec());
    let c = input(
        &captures,
        DataFormat::Parquet,
        REQUEST_ID,
        "prediction",
        Side::Captured,
    );
    let f = input(
        &feedback,
        DataFormat::Csv,
        "request_id",
        "label",
        Side::Labelled,
    );
    let e = joined_accuracy(&c, &f, "request_id", 2).unwrap_err();
    assert_eq!(e.reason(), crate::api::Reason::DataTooLarge);
    assert!(
        e.to_string().starts_with(
            "labelled data 'mem://feedback.csv' has 3 rows, more than the 2 the label join holds"
        ),
        "{e}"
    );
    let f = input(&feedback, DataFormat::Csv, "id", "label", Side::Labelled);
    assert_eq!(
        joined_accuracy(&c, &f, "id", MAX_JOIN_ROWS)
            .unwrap_err()
            .to_string(),
        "column 'id' is missing from the labelled data"
    );
    let c = input(
        &captures,
        DataFormat::Parquet,
        REQUEST_ID,
        "score",
        Side::Captured,
    );
    let f = input(
        &feedback,
        DataFormat::Csv,
        "request_id",
        "label",
        Side::Labelled,
    );
    assert_eq!(
        joined_accuracy(&c, &f, "request_id", MAX_JOIN_ROWS)
            .unwrap_err()
            .to_string(),
        "column 'score' is missing from the captured data"
    );
}

#[test]
fn class_labels_are_compared_as_classes() {
    // predictions that are not numbers are captured as text; labels are text too
    let bytes = window(
        "2026-12-01T10:00:00Z",
        &[
            ("a", vec![json!(1.0)], vec![json!("fraud")]),
            ("b", vec![json!(1.0)], vec![json!("ok")]),
            ("c", vec![json!(1.0)], vec![json!("ok")]),
        ],
    );
    let captures = Payload::from_bytes("mem://w.parquet", bytes);
    let feedback = Payload::from_bytes(
        "mem://f.csv",
        b"id,truth\na,fraud\nb,fraud\nc,ok\n".to_vec(),
    );
    let c = input(
        &captures,
        DataFormat::Parquet,
        REQUEST_ID,
        "prediction",
        Side::Captured,
    );
    let f = input(&feedback, DataFormat::Csv, "id", "truth", Side::Labelled);
    let a = joined_accuracy(&c, &f, "id", MAX_JOIN_ROWS).unwrap();
    assert_eq!(a.decision, "exact");
    assert!((a.accuracy.unwrap() - 2.0 / 3.0).abs() < 1e-12);
    let b = a.binary.unwrap();
    assert_eq!(
        (
            b.positive_label.as_str(),
            b.true_positives,
            b.false_negatives
        ),
        ("fraud", 1, 1)
    );
    assert_eq!(a.join.unwrap().id_column, "id");
}
