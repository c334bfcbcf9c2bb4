//! The table `mlrollout drift` prints on a terminal: one aligned row per feature, then the
//! accuracy, notes, skipped columns and the verdict.

use crate::drift::engine::{AccuracyReport, DriftReport};
use crate::drift::stats::{ComparisonStatus, FeatureKind, FeatureVerdict, Severity, TestKind};

fn fmt_num(x: Option<f64>) -> String {
    match x {
        None => "-".into(),
        Some(v) if v != 0.0 && v.abs() < 1e-3 => format!("{v:.2e}"),
        Some(v) => format!("{v:.4}"),
    }
}

fn severity_text(s: Severity) -> &'static str {
    match s {
        Severity::Ok => "ok",
        Severity::Medium => "medium",
        Severity::High => "high",
    }
}

fn row(f: &FeatureVerdict) -> Vec<String> {
    let kind = match f.kind {
        FeatureKind::Numerical => "numerical",
        FeatureKind::Categorical => "categorical",
    };
    let test = match f.test {
        TestKind::Ks => "ks",
        TestKind::Chi2 => "chi2",
    };
    let mut note = String::new();
    if f.status == ComparisonStatus::InsufficientData {
        note.push_str("insufficient data");
    }
    if f.n_new_categories > 0 {
        if !note.is_empty() {
            note.push_str("; ");
        }
        note.push_str(&format!(
            "{} new categor{}: {}",
            f.n_new_categories,
            if f.n_new_categories == 1 { "y" } else { "ies" },
            f.new_categories.join(", ")
        ));
    }
    vec![
        f.name.clone(),
        kind.into(),
        test.into(),
        fmt_num(f.statistic),
        fmt_num(f.p_value),
        fmt_num(f.p_value_adjusted),
        fmt_num(f.psi),
        fmt_num(f.effect_size),
        format!("{}/{}", f.missing_reference, f.missing_current),
        if f.drifted { "yes" } else { "no" }.into(),
        severity_text(f.severity).into(),
        note,
    ]
}

/// The table's columns, in the order of [`row`].
const COLUMNS: [&str; 12] = [
    "FEATURE",
    "KIND",
    "TEST",
    "STATISTIC",
    "P-VALUE",
    "P-ADJ",
    "PSI",
    "EFFECT",
    "MISSING R/C",
    "DRIFT",
    "SEVERITY",
    "NOTE",
];

/// One aligned row per feature, then the verdict line.
pub fn render_table(report: &DriftReport) -> String {
    let mut out = aligned(&feature_rows(report));
    if let Some(perf) = &report.performance {
        out.push_str(&accuracy_line(perf));
    }
    for n in &report.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    if !report.skipped_columns.is_empty() {
        out.push_str(&format!(
            "skipped (not in the current data): {}\n",
            report.skipped_columns.join(", ")
        ));
    }
    out.push_str(&verdict_line(report));
    out
}

/// The header, a row per feature, then the prediction column's row.
fn feature_rows(report: &DriftReport) -> Vec<Vec<String>> {
    let mut rows = vec![COLUMNS.iter().map(|s| (*s).to_owned()).collect()];
    rows.extend(report.features.iter().map(row));
    if let Some(p) = &report.prediction_drift {
        let mut r = row(p);
        r[0] = format!("{} (prediction)", p.name);
        rows.push(r);
    }
    rows
}

/// Cells padded to their column's widest, two spaces apart, no trailing blanks.
fn aligned(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..COLUMNS.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn accuracy_line(perf: &AccuracyReport) -> String {
    format!(
        "accuracy: {} on {} labelled rows ({}){}\n",
        perf.accuracy.map_or("-".into(), |a| format!("{a:.4}")),
        perf.rows,
        perf.decision,
        match (perf.accuracy_threshold, perf.below_threshold) {
            (Some(t), Some(true)) => format!(", below the threshold {t}: concept drift"),
            (Some(t), Some(false)) => format!(", threshold {t}: ok"),
            _ => String::new(),
        }
    )
}

/// The last line (no newline after it).
fn verdict_line(report: &DriftReport) -> String {
    let verdict = if report.status == ComparisonStatus::InsufficientData {
        "insufficient data".to_owned()
    } else if report.drift_detected {
        format!(
            "DRIFT DETECTED (severity {})",
            severity_text(report.severity)
        )
    } else {
        format!(
            "no dataset drift (severity {})",
            severity_text(report.severity)
        )
    };
    format!(
        "verdict: {verdict}: {} of {} evaluated features drifted ({:.0}%), {} reference rows, {} current rows",
        report.n_drifted,
        report.n_evaluated,
        report.drifted_share * 100.0,
        report.reference_rows,
        report.current_rows
    )
}
