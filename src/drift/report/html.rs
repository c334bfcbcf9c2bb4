//! The page: a header with the verdict and the rule that gave it, a summary table, then one
//! card per feature (its chart, its statistics against the thresholds, its missing values).
//! Features are shown most severe first.

use std::fmt::Write as _;

use super::{escape, number, percent, svg, text};
use crate::api::MultipleTesting;
use crate::drift::engine::{AccuracyReport, DriftReport, ReportThresholds};
use crate::drift::stats::{ComparisonStatus, FeatureKind, FeatureVerdict, Histogram, Severity};

/// Longest feature name shown (characters); the full name is never needed to read a report.
const NAME: usize = 80;
/// Most feature cards on one page (the summary table lists every feature).
pub const MAX_CARDS: usize = 200;
/// The current data missing this much larger a share of values than the reference is pointed
/// out (5 percentage points).
const MISSING_MORE: f64 = 0.05;

const STYLE: &str = r#"
body{font-family:"DejaVu Sans",system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2329;font-size:14px}
main{max-width:1240px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:22px;margin:0 0 12px}
h2{font-size:17px;margin:28px 0 10px}
.verdict{border-radius:8px;padding:14px 18px;color:#fff;margin-bottom:12px}
.verdict strong{font-size:20px;display:block;margin-bottom:4px}
.v-high{background:#c92a2a}.v-medium{background:#d9480f}.v-ok{background:#2b8a3e}.v-none{background:#5c636a}
.facts{margin:6px 0;padding-left:18px;line-height:1.6}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{padding:5px 8px;border-bottom:1px solid #e3e5e8;text-align:left;vertical-align:top}
thead th{background:#eceef1;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.sev{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600;color:#fff}
.s-high{background:#c92a2a}.s-medium{background:#d9480f}.s-ok{background:#2b8a3e}.s-none{background:#868e96}
.card{background:#fff;border-radius:8px;padding:14px 18px;margin:16px 0;box-shadow:0 1px 3px rgba(0,0,0,.12)}
.card h3{margin:0 0 8px;font-size:16px;display:flex;gap:10px;align-items:center;flex-wrap:wrap}
.kind{color:#5c636a;font-weight:400;font-size:13px}
.caption{color:#5c636a;font-size:12px;margin:2px 0 10px}
.stats td,.stats th{border:none;padding:3px 10px 3px 0}
.stats{width:auto;font-size:13px}
.body{display:flex;gap:28px;flex-wrap:wrap;align-items:flex-start}
.plot{flex:0 0 600px;max-width:100%}
.plot svg{display:block}
.side{flex:1 1 380px}
.side .caption{margin-top:12px;max-width:520px}
.more{color:#c92a2a;font-weight:600}
.pass{color:#c92a2a;font-weight:600}.fail{color:#5c636a}
footer{color:#868e96;font-size:12px;margin-top:30px}
"#;

/// The whole page.
pub fn render_html(report: &DriftReport) -> String {
    let mut out = String::with_capacity(16 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    let _ = write!(
        out,
        "<title>Drift report: {}</title><style>{STYLE}</style></head><body><main>",
        verdict_title(report)
    );
    header(&mut out, report);
    let order = by_severity(&report.features);
    summary(&mut out, report, &order);
    out.push_str("<h2>Features</h2>");
    for &i in order.iter().take(MAX_CARDS) {
        card(&mut out, &report.features[i], &format!("f-{i}"), report);
    }
    if order.len() > MAX_CARDS {
        let _ = write!(
            out,
            "<p>{} more feature(s) are in the summary table only.</p>",
            order.len() - MAX_CARDS
        );
    }
    if let Some(p) = &report.prediction_drift {
        out.push_str("<h2>Prediction distribution</h2>");
        card(&mut out, p, "prediction", report);
    }
    let _ = writeln!(
        out,
        "<footer>mlrollout {} · drift report · self-contained page (no script, no external resource)</footer></main></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    out
}

/// Indices of the features, most severe first (then drifted, then larger PSI), stable.
fn by_severity(features: &[FeatureVerdict]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..features.len()).collect();
    order.sort_by(|&a, &b| {
        let (fa, fb) = (&features[a], &features[b]);
        fb.severity
            .cmp(&fa.severity)
            .then(fb.drifted.cmp(&fa.drifted))
            .then(fb.psi.unwrap_or(0.0).total_cmp(&fa.psi.unwrap_or(0.0)))
    });
    order
}

fn severity_class(f: &FeatureVerdict) -> (&'static str, &'static str) {
    if f.status == ComparisonStatus::InsufficientData {
        return ("s-none", "insufficient data");
    }
    match f.severity {
        Severity::High => ("s-high", "drift · high"),
        Severity::Medium => ("s-medium", "drift · medium"),
        Severity::Ok => ("s-ok", "ok"),
    }
}

fn verdict_title(report: &DriftReport) -> &'static str {
    if report.status == ComparisonStatus::InsufficientData {
        "insufficient data"
    } else if report.drift_detected {
        match report.severity {
            Severity::High => "drift detected (high)",
            _ => "drift detected (medium)",
        }
    } else {
        "no dataset drift"
    }
}

/// The verdict banner, the facts of the check and the rule that decided it.
fn header(out: &mut String, report: &DriftReport) {
    let class = if report.status == ComparisonStatus::InsufficientData {
        "v-none"
    } else if report.drift_detected {
        match report.severity {
            Severity::High => "v-high",
            _ => "v-medium",
        }
    } else {
        "v-ok"
    };
    let _ = write!(
        out,
        "<h1>Drift report</h1><div class=\"verdict {class}\"><strong>{}</strong>{} of {} evaluated feature(s) drifted ({:.0}%) · {} reference rows · {} current rows</div>",
        verdict_title(report).to_uppercase(),
        report.n_drifted,
        report.n_evaluated,
        report.drifted_share * 100.0,
        report.reference_rows,
        report.current_rows,
    );
    out.push_str("<ul class=\"facts\">");
    let _ = write!(out, "<li>Tests: {}.</li>", tests_used(report));
    let _ = write!(
        out,
        "<li>Multiple testing: {}.</li>",
        multiple_testing_note(report)
    );
    let _ = write!(out, "<li>Rule: {}.</li>", rule(&report.thresholds));
    if let Some(w) = &report.window {
        let _ = write!(
            out,
            "<li>Window: current rows since {} ({} of {} rows; {} without a timestamp in column {}).</li>",
            escape(&w.since),
            report.current_rows,
            w.rows_total,
            w.rows_without_timestamp,
            text(&w.timestamp_column, NAME)
        );
    }
    if let Some(perf) = &report.performance {
        let _ = write!(out, "<li>{}</li>", accuracy(perf));
    }
    for n in &report.notes {
        let _ = write!(out, "<li>Note: {}</li>", text(n, 400));
    }
    if !report.skipped_columns.is_empty() {
        let names: Vec<String> = report
            .skipped_columns
            .iter()
            .take(50)
            .map(|c| text(c, NAME))
            .collect();
        let _ = write!(
            out,
            "<li>Not in the current data (skipped): {}{}</li>",
            names.join(", "),
            if report.skipped_columns.len() > 50 {
                ", …"
            } else {
                ""
            }
        );
    }
    out.push_str("</ul>");
}

fn tests_used(report: &DriftReport) -> String {
    let mut kinds = report.features.iter().chain(&report.prediction_drift);
    let numeric = kinds.clone().any(|f| f.kind == FeatureKind::Numerical);
    let categorical = kinds.any(|f| f.kind == FeatureKind::Categorical);
    let mut tests = Vec::new();
    if numeric {
        tests.push("two-sample Kolmogorov–Smirnov (numerical features)");
    }
    if categorical {
        tests.push("χ² test of homogeneity with Cramér's V (categorical features)");
    }
    tests.push("population stability index (PSI) to grade a shift");
    tests.join("; ")
}

fn multiple_testing_note(report: &DriftReport) -> String {
    let m = report.n_evaluated;
    match report.multiple_testing {
        MultipleTesting::BenjaminiHochberg => format!(
            "Benjamini–Hochberg: the p-values of the {m} evaluated feature(s) are adjusted together (false-discovery rate); the adjusted value is compared with α"
        ),
        MultipleTesting::Bonferroni => format!(
            "Bonferroni: each p-value is multiplied by {m} (the evaluated features), capped at 1, before it is compared with α"
        ),
        MultipleTesting::None => {
            "none: each p-value is compared with α on its own (with many features some will cross α by chance)".to_owned()
        }
    }
}

fn rule(t: &ReportThresholds) -> String {
    format!(
        "a feature drifted when its adjusted p-value &lt; α = {} and its effect reaches the minimum (KS D ≥ {}, Cramér's V ≥ {}); a drifted feature is high severity when PSI ≥ {} (PSI ≥ {} is a warning); the dataset drifted when a drifted feature is high, or at least {:.0}% of the evaluated features drifted; numeric PSI over {} reference quantile bins",
        t.alpha,
        t.min_ks_statistic,
        t.min_cramers_v,
        t.psi_high,
        t.psi_warning,
        t.drift_share * 100.0,
        t.psi_bins
    )
}

fn accuracy(perf: &AccuracyReport) -> String {
    let verdict = match (perf.accuracy_threshold, perf.below_threshold) {
        (Some(t), Some(true)) => format!(", below the threshold {t}: <b>concept drift</b>"),
        (Some(t), Some(false)) => format!(", threshold {t}: ok"),
        _ => String::new(),
    };
    format!(
        "Accuracy: {} on {} labelled rows ({} of {} against {}){verdict}.",
        number(perf.accuracy),
        perf.rows,
        escape(&perf.decision),
        text(&perf.prediction_column, NAME),
        text(&perf.label_column, NAME),
    )
}

/// One row per feature, linking to its card.
fn summary(out: &mut String, report: &DriftReport, order: &[usize]) {
    out.push_str("<h2>Summary</h2><table class=\"summary\"><thead><tr><th>Feature</th><th>Kind</th><th>Statistic</th><th>p (adjusted)</th><th>PSI</th><th>Effect</th><th>Missing ref / cur</th><th>Severity</th></tr></thead><tbody>");
    for (position, &i) in order.iter().enumerate() {
        let f = &report.features[i];
        let (class, label) = severity_class(f);
        let name = if position < MAX_CARDS {
            format!("<a href=\"#f-{i}\">{}</a>", text(&f.name, NAME))
        } else {
            text(&f.name, NAME)
        };
        let _ = write!(
            out,
            "<tr><td>{name}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{} / {}</td><td><span class=\"sev {class}\">{label}</span></td></tr>",
            kind_text(f),
            number(f.statistic),
            p_value(f.p_value_adjusted),
            number(f.psi),
            number(f.effect_size),
            f.missing_reference,
            f.missing_current,
        );
    }
    out.push_str("</tbody></table>");
}

/// A p-value: one that underflowed to 0 is shown as such, not as a bare `0.0000`.
fn p_value(p: Option<f64>) -> String {
    match p {
        Some(0.0) => "&lt; 1e-300".into(),
        p => number(p),
    }
}

fn kind_text(f: &FeatureVerdict) -> &'static str {
    match f.kind {
        FeatureKind::Numerical => "numerical · KS",
        FeatureKind::Categorical => "categorical · χ²",
    }
}

/// A feature's card: title, chart, statistics against thresholds, missing values.
fn card(out: &mut String, f: &FeatureVerdict, id: &str, report: &DriftReport) {
    let (class, label) = severity_class(f);
    let _ = write!(
        out,
        "<section class=\"card\" id=\"{id}\"><h3><span class=\"name\">{}</span><span class=\"kind\">{}</span><span class=\"sev {class}\">{label}</span></h3>",
        text(&f.name, NAME),
        kind_text(f),
    );
    out.push_str("<div class=\"body\"><div class=\"plot\">");
    let caption = match &f.histogram {
        Some(h) => {
            out.push_str(&svg::chart(h));
            caption(h)
        }
        None => "No distribution to draw: a side has no usable value.",
    };
    out.push_str("</div><div class=\"side\">");
    stats_table(out, f, &report.thresholds, report.multiple_testing);
    let _ = write!(out, "<p class=\"caption\">{caption}</p>");
    out.push_str("</div></div></section>");
}

fn caption(h: &Histogram) -> &'static str {
    match h {
        Histogram::Numeric { .. } => {
            "Share of each side's values per PSI bin. The bins are the reference's quantiles: its bars are level, the current bars show where values moved. Axis ends: the smallest and largest value of either side."
        }
        Histogram::Categorical { .. } => {
            "Share of each side's values per category (the most frequent on either side; the rest summed as “other”)."
        }
    }
}

/// `(passes, text)` of one threshold comparison, as a table cell.
fn check(passes: Option<bool>, yes: &str, no: &str) -> String {
    match passes {
        Some(true) => format!("<td class=\"pass\">{yes}</td>"),
        Some(false) => format!("<td class=\"fail\">{no}</td>"),
        None => "<td></td>".into(),
    }
}

fn stats_table(out: &mut String, f: &FeatureVerdict, t: &ReportThresholds, mt: MultipleTesting) {
    let (statistic, effect, min_effect) = match f.kind {
        FeatureKind::Numerical => ("KS statistic D", "effect (KS D)", t.min_ks_statistic),
        FeatureKind::Categorical => ("χ² statistic", "effect (Cramér's V)", t.min_cramers_v),
    };
    let adjusted = match mt {
        MultipleTesting::BenjaminiHochberg => "p-value, adjusted (BH)",
        MultipleTesting::Bonferroni => "p-value, adjusted (Bonferroni)",
        MultipleTesting::None => "p-value used",
    };
    out.push_str("<table class=\"stats\"><tbody>");
    let _ = write!(
        out,
        "<tr><th>{statistic}</th><td class=\"n\">{}</td><td></td><td></td></tr><tr><th>p-value</th><td class=\"n\">{}</td><td></td><td></td></tr>",
        number(f.statistic),
        p_value(f.p_value)
    );
    let _ = write!(
        out,
        "<tr><th>{adjusted}</th><td class=\"n\">{}</td><td>threshold α = {}</td>{}</tr>",
        p_value(f.p_value_adjusted),
        t.alpha,
        check(
            f.p_value_adjusted.map(|p| p < t.alpha),
            "significant (p &lt; α)",
            "not significant"
        )
    );
    let _ = write!(
        out,
        "<tr><th>{effect}</th><td class=\"n\">{}</td><td>minimum {min_effect}</td>{}</tr>",
        number(f.effect_size),
        check(
            f.effect_size.map(|e| e >= min_effect),
            "large enough",
            "below the minimum"
        )
    );
    let psi_verdict = f.psi.map(|p| {
        if p >= t.psi_high {
            "<td class=\"pass\">high</td>"
        } else if p >= t.psi_warning {
            "<td class=\"pass\">warning</td>"
        } else {
            "<td class=\"fail\">low</td>"
        }
    });
    let _ = write!(
        out,
        "<tr><th>PSI</th><td class=\"n\">{}</td><td>warning {} · high {}</td>{}</tr>",
        number(f.psi),
        t.psi_warning,
        t.psi_high,
        psi_verdict.unwrap_or("<td></td>")
    );
    missing_rows(out, f);
    out.push_str("</tbody></table>");
}

/// Missing values of both sides, and the new categories.
fn missing_rows(out: &mut String, f: &FeatureVerdict) {
    let side = |missing: u64, present: u64| {
        let total = missing + present;
        format!("{missing} of {total} ({})", percent(missing, total))
    };
    let rate = |missing: u64, present: u64| missing as f64 / (missing + present).max(1) as f64;
    let more = rate(f.missing_current, f.n_current) - rate(f.missing_reference, f.n_reference);
    let _ = write!(
        out,
        "<tr><th>missing values</th><td colspan=\"3\">reference {} · current {}{}</td></tr>",
        side(f.missing_reference, f.n_reference),
        side(f.missing_current, f.n_current),
        if more >= MISSING_MORE {
            "<br><span class=\"more\">more missing values than in the reference</span>"
        } else {
            ""
        }
    );
    if f.n_new_categories > 0 {
        let names: Vec<String> = f.new_categories.iter().map(|c| text(c, 40)).collect();
        let _ = write!(
            out,
            "<tr><th>new categories</th><td colspan=\"3\">{}: {}{}</td></tr>",
            f.n_new_categories,
            names.join(", "),
            if (f.new_categories.len() as u64) < f.n_new_categories {
                ", …"
            } else {
                ""
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::stats::{PsiLevel, TestKind};

    fn feature(name: &str, severity: Severity, histogram: Option<Histogram>) -> FeatureVerdict {
        let categorical = matches!(histogram, Some(Histogram::Categorical { .. }));
        FeatureVerdict {
            name: name.into(),
            kind: if categorical {
                FeatureKind::Categorical
            } else {
                FeatureKind::Numerical
            },
            test: if categorical {
                TestKind::Chi2
            } else {
                TestKind::Ks
            },
            status: ComparisonStatus::Ok,
            statistic: Some(0.3),
            statistic_error_bound: None,
            p_value: Some(1e-9),
            p_value_adjusted: Some(2e-9),
            psi: Some(if severity == Severity::High {
                0.6
            } else {
                0.01
            }),
            psi_level: Some(PsiLevel::Ok),
            effect_size: Some(0.3),
            drifted: severity != Severity::Ok,
            severity,
            n_reference: 100,
            n_current: 90,
            missing_reference: 0,
            missing_current: 10,
            n_new_categories: 0,
            new_categories: vec![],
            histogram,
        }
    }

    fn report(features: Vec<FeatureVerdict>) -> DriftReport {
        DriftReport {
            reference_rows: 100,
            current_rows: 100,
            drift_detected: true,
            severity: Severity::High,
            status: ComparisonStatus::Ok,
            drifted_share: 0.5,
            n_features: features.len(),
            n_evaluated: features.len(),
            n_drifted: 1,
            multiple_testing: MultipleTesting::BenjaminiHochberg,
            thresholds: ReportThresholds::default(),
            features,
            skipped_columns: vec![],
            prediction_drift: None,
            performance: None,
            window: None,
            notes: vec![],
            timings: Default::default(),
        }
    }

    fn numeric() -> Histogram {
        Histogram::Numeric {
            edges: vec![1.0],
            reference: vec![50, 50],
            current: vec![20, 70],
            reference_range: [0.0, 2.0],
            current_range: [0.0, 3.0],
        }
    }

    #[test]
    fn page_has_the_verdict_a_summary_and_a_card_per_feature() {
        let page = render_html(&report(vec![
            feature("stable", Severity::Ok, Some(numeric())),
            feature("moved", Severity::High, Some(numeric())),
        ]));
        assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
        assert!(page.contains("DRIFT DETECTED (HIGH)"));
        assert!(page.contains("Benjamini–Hochberg"));
        assert!(page.contains("α = 0.05"));
        assert_eq!(page.matches("<section class=\"card\"").count(), 2);
        assert_eq!(page.matches("<svg class=\"chart numeric\"").count(), 2);
        // most severe first: `moved` (index 1) leads both the table and the cards
        let moved = page.find("id=\"f-1\"").unwrap();
        let stable = page.find("id=\"f-0\"").unwrap();
        assert!(moved < stable);
        assert!(page.find("href=\"#f-1\"").unwrap() < page.find("href=\"#f-0\"").unwrap());
        // missing values, thresholds
        assert!(page.contains("current 10 of 100 (10.0%)"), "{page}");
        assert!(page.contains("warning 0.2 · high 0.25"));
        // self-contained: no script, no reference to anything outside the page
        for banned in ["<script", "http:", "https:", "src=", "@import", "url("] {
            assert!(!page.contains(banned), "{banned}");
        }
    }

    #[test]
    fn untrusted_names_and_categories_are_escaped_and_cut() {
        let hostile = format!("<img src=x onerror=alert(1)>{}", "x".repeat(500));
        let mut f = feature(
            &hostile,
            Severity::Medium,
            Some(Histogram::Categorical {
                categories: vec!["</svg><script>alert(2)</script>".into()],
                reference: vec![1],
                current: vec![1],
                other_categories: 0,
                other_reference: 0,
                other_current: 0,
            }),
        );
        f.new_categories = vec!["\"><b>".into()];
        f.n_new_categories = 1;
        let mut r = report(vec![f]);
        r.notes = vec!["<i>note</i>".into()];
        r.skipped_columns = vec!["<u>".into()];
        let page = render_html(&r);
        for banned in ["<img", "<script", "<b>", "<i>", "<u>"] {
            assert!(!page.contains(banned), "{banned} in the page");
        }
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(page.contains("&lt;/svg&gt;&lt;script&gt;alert(2)&lt;/script&gt;"));
        // the name is cut to NAME characters
        assert!(!page.contains(&"x".repeat(NAME)));
        assert!(page.contains("xx…"));
    }

    #[test]
    fn insufficient_data_and_caps() {
        let mut f = feature("gone", Severity::Ok, None);
        f.status = ComparisonStatus::InsufficientData;
        let mut r = report(vec![f]);
        r.status = ComparisonStatus::InsufficientData;
        r.drift_detected = false;
        let page = render_html(&r);
        assert!(page.contains("INSUFFICIENT DATA"));
        assert!(page.contains("No distribution to draw"));
        assert!(!page.contains("<svg"));
        let many: Vec<FeatureVerdict> = (0..MAX_CARDS + 3)
            .map(|i| feature(&format!("f{i}"), Severity::Ok, Some(numeric())))
            .collect();
        let page = render_html(&report(many));
        assert_eq!(page.matches("<section class=\"card\"").count(), MAX_CARDS);
        assert!(page.contains("3 more feature(s)"));
        assert_eq!(page.matches("<tr><td>").count(), MAX_CARDS + 3);
    }
}
