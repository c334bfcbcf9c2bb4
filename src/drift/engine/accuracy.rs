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
    let threshold = match (p, l) {
        (Column::Numeric(pv), Column::Numeric(lv)) => {
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
        _ => false,
    };
    let pc = classes(p, threshold);
    let lc = classes(l, false);
    let (mut rows, mut missing, mut correct) = (0u64, 0u64, 0u64);
    let mut distinct: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    for (a, b) in pc.iter().zip(&lc) {
        match (a, b) {
            (Some(a), Some(b)) => {
                rows += 1;
                if a == b {
                    correct += 1;
                }
                if distinct.len() <= 2 {
                    distinct.insert(a);
                    distinct.insert(b);
                }
            }
            _ => missing += 1,
        }
    }
    let binary = (distinct.len() == 2).then(|| {
        let positive = distinct
            .iter()
            .find(|d| POSITIVE_NAMES.iter().any(|p| p.eq_ignore_ascii_case(d)))
            .or(distinct.iter().next_back())
            .map(|s| (*s).to_owned())
            .unwrap_or_default();
        let (mut tp, mut fp, mut fneg, mut tn) = (0u64, 0u64, 0u64, 0u64);
        for (a, b) in pc.iter().zip(&lc) {
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
    });
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
    })
}
