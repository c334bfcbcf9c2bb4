//! Concept drift: accuracy (and precision/recall for binary labels) on labelled data.

use super::*;

/// Precision and recall of the positive class of a binary problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BinaryMetrics {
    pub positive_label: String,
    /// `None` when nothing was predicted positive.
    pub precision: Option<f64>,
    /// `None` when no label is positive.
    pub recall: Option<f64>,
    pub true_positives: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
    pub true_negatives: u64,
}

/// Accuracy of predictions against labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccuracyReport {
    pub prediction_column: String,
    pub label_column: String,
    /// Rows with both a prediction and a label.
    pub rows: u64,
    /// Rows missing either.
    pub missing: u64,
    /// `None` when no row has both.
    pub accuracy: Option<f64>,
    /// How predictions were turned into classes: `threshold_0.5` (scores in [0, 1] against
    /// 0/1 labels) or `exact`.
    pub decision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<BinaryMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_threshold: Option<f64>,
    /// Accuracy below the threshold: concept drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below_threshold: Option<bool>,
    /// With `performance.labelled.join`: how the labels met the captured predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<LabelJoinReport>,
}

pub(super) fn class_text(x: f64) -> String {
    format!("{x}")
}

/// Classes of one column as text (`None` = missing).
pub(super) fn classes(column: &Column, threshold: bool) -> Vec<Option<String>> {
    match column {
        Column::Numeric(v) => v
            .iter()
            .map(|&x| {
                if !x.is_finite() {
                    None
                } else if threshold {
                    Some(if x >= 0.5 { "1" } else { "0" }.to_owned())
                } else {
                    Some(class_text(x))
                }
            })
            .collect(),
        Column::Categorical(c) => (0..c.len())
            .map(|i| c.value(i).map(str::to_owned))
            .collect(),
    }
}

pub(super) const POSITIVE_NAMES: [&str; 8] =
    ["1", "true", "yes", "y", "positive", "pos", "fraud", "t"];

/// Accuracy of `prediction` against `label` in a labelled table, with precision and recall
/// when there are exactly two classes. A numeric prediction column holding scores in [0, 1]
/// (not all integers) against labels in {0, 1} is thresholded at 0.5; otherwise predictions
/// and labels are compared as values (`1.0` equals `1`).
pub fn accuracy(table: &Table, prediction: &str, label: &str) -> Result<AccuracyReport, DataError> {
    let missing_col = |c: &str| DataError::MissingColumn {
        column: c.to_owned(),
        side: Side::Labelled,
    };
    let p = table
        .column(prediction)
        .ok_or_else(|| missing_col(prediction))?;
    let l = table.column(label).ok_or_else(|| missing_col(label))?;
    let threshold = scores_against_01_labels(p, l);
    let pc = classes(p, threshold);
    let lc = classes(l, false);
    let agreement = Agreement::count(&pc, &lc);
    let binary = (agreement.distinct.len() == 2)
        .then(|| binary_metrics(&pc, &lc, positive_class(&agreement.distinct)));
    let Agreement {
        rows,
        missing,
        correct,
        ..
    } = agreement;
    Ok(AccuracyReport {
        prediction_column: prediction.to_owned(),
        label_column: label.to_owned(),
        rows,
        missing,
        accuracy: (rows > 0).then(|| correct as f64 / rows as f64),
        decision: if threshold { "threshold_0.5" } else { "exact" }.to_owned(),
        binary,
        accuracy_threshold: None,
        below_threshold: None,
        join: None,
    })
}

/// Whether the predictions are scores to threshold at 0.5: numeric, in [0, 1] and not all
/// integers, against numeric labels in {0, 1}.
fn scores_against_01_labels(prediction: &Column, label: &Column) -> bool {
    let (Column::Numeric(pv), Column::Numeric(lv)) = (prediction, label) else {
        return false;
    };
    let labels01 = lv
        .iter()
        .filter(|x| x.is_finite())
        .all(|&x| x == 0.0 || x == 1.0);
    let scores = pv
        .iter()
        .filter(|x| x.is_finite())
        .all(|&x| (0.0..=1.0).contains(&x));
    let fractional = pv.iter().any(|x| x.is_finite() && x.fract() != 0.0);
    labels01 && scores && fractional
}

/// How predicted classes agree with labels, row by row.
struct Agreement<'a> {
    /// Rows with both a prediction and a label.
    rows: u64,
    /// Rows missing either.
    missing: u64,
    correct: u64,
    /// Classes seen in either column; collecting stops once there are more than two (the
    /// problem is then not binary).
    distinct: std::collections::BTreeSet<&'a str>,
}

impl<'a> Agreement<'a> {
    fn count(predicted: &'a [Option<String>], labels: &'a [Option<String>]) -> Self {
        let mut out = Agreement {
            rows: 0,
            missing: 0,
            correct: 0,
            distinct: std::collections::BTreeSet::new(),
        };
        for (a, b) in predicted.iter().zip(labels) {
            match (a, b) {
                (Some(a), Some(b)) => {
                    out.rows += 1;
                    if a == b {
                        out.correct += 1;
                    }
                    if out.distinct.len() <= 2 {
                        out.distinct.insert(a);
                        out.distinct.insert(b);
                    }
                }
                _ => out.missing += 1,
            }
        }
        out
    }
}

/// The positive one of two classes: a conventional positive name (`1`, `true`, `fraud`, ...)
/// if one is, otherwise the greater.
fn positive_class(distinct: &std::collections::BTreeSet<&str>) -> String {
    distinct
        .iter()
        .find(|d| POSITIVE_NAMES.iter().any(|p| p.eq_ignore_ascii_case(d)))
        .or(distinct.iter().next_back())
        .map(|s| (*s).to_owned())
        .unwrap_or_default()
}

/// The confusion matrix of `positive` over the rows with both a prediction and a label.
fn binary_metrics(
    predicted: &[Option<String>],
    labels: &[Option<String>],
    positive: String,
) -> BinaryMetrics {
    let (mut tp, mut fp, mut fneg, mut tn) = (0u64, 0u64, 0u64, 0u64);
    for (a, b) in predicted.iter().zip(labels) {
        if let (Some(a), Some(b)) = (a, b) {
            match (*a == positive, *b == positive) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fneg += 1,
                (false, false) => tn += 1,
            }
        }
    }
    let ratio = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
    BinaryMetrics {
        positive_label: positive,
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, tp + fneg),
        true_positives: tp,
        false_positives: fp,
        false_negatives: fneg,
        true_negatives: tn,
    }
}
