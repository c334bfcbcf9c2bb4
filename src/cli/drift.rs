//! `mlrollout drift`: compare a current dataset with a reference dataset, offline.
//!
//! Without `--resource` the drift section's defaults apply and column kinds are inferred
//! (`--categorical` / `--numerical` force them); with `--resource` the ModelDeployment's
//! `spec.drift` (features, thresholds, URIs) and `spec.performance` (labelled data, prediction
//! column) rule, and `--reference` / `--current` override its URIs.
//!
//! Output: an aligned table when stdout is a terminal, else exactly one JSON object
//! (`--output` chooses). Exit 0 whether or not drift is found; 1 with one line on stderr when
//! the input is bad.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;

use crate::api::{DataFormat, ModelDeployment};
use crate::drift::data::{ColumnKind, DataSource, FetchContext, Side};
use crate::drift::engine::{
    CheckRequest, DatasetLocation, DriftConfig, DriftEngine, DriftReport, FeatureSelection,
};
use crate::drift::stats::{ComparisonStatus, FeatureVerdict, Severity};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Json,
    Table,
}

/// Dataset format flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Csv,
    Parquet,
}

impl From<FormatArg> for DataFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Csv => DataFormat::Csv,
            FormatArg::Parquet => DataFormat::Parquet,
        }
    }
}

/// Arguments of `mlrollout drift`.
#[derive(Debug, Clone, clap::Args)]
pub struct DriftArgs {
    /// Reference (training) dataset: a path, file://, http(s)://, runs:/<run_id>/<path> or
    /// mlflow-artifacts:/... URI. Required unless --resource names one.
    #[arg(long, value_name = "URI")]
    pub reference: Option<String>,
    /// Current (live) dataset, same schemes. Required unless --resource names one.
    #[arg(long, value_name = "URI")]
    pub current: Option<String>,
    /// A ModelDeployment manifest whose spec.drift (and spec.performance) section rules.
    #[arg(long, value_name = "FILE")]
    pub resource: Option<PathBuf>,
    /// Columns to treat as categorical (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    pub categorical: Vec<String>,
    /// Columns to treat as numerical (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    pub numerical: Vec<String>,
    /// Compare only these columns (comma-separated); default: every column in both datasets.
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    pub features: Vec<String>,
    /// Columns never compared (comma-separated), e.g. ids and timestamps.
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    pub ignore: Vec<String>,
    /// Column with the model's prediction, compared separately (prediction shift).
    #[arg(long, value_name = "COLUMN")]
    pub prediction_column: Option<String>,
    /// Compare only current rows newer than this (e.g. `1h`, `30m`); needs a timestamp column.
    #[arg(long, value_name = "DURATION")]
    pub window: Option<String>,
    /// Column holding each current row's timestamp (RFC 3339 or Unix seconds).
    #[arg(long, value_name = "COLUMN")]
    pub timestamp_column: Option<String>,
    /// Format of the reference data when the extension does not tell.
    #[arg(long, value_enum)]
    pub reference_format: Option<FormatArg>,
    /// Format of the current data when the extension does not tell.
    #[arg(long, value_enum)]
    pub current_format: Option<FormatArg>,
    /// MLflow tracking server for runs:/ and mlflow-artifacts:/ URIs (default: the resource's
    /// spec.model.trackingUri).
    #[arg(long, env = "MLFLOW_TRACKING_URI", value_name = "URI")]
    pub tracking_uri: Option<String>,
    /// Output format (default: table on a terminal, json otherwise).
    #[arg(long, value_enum)]
    pub output: Option<OutputFormat>,
    /// Print the time of each stage (fetch, read, prepare, compare) on stderr.
    #[arg(long)]
    pub timing: bool,
}

/// Runs `mlrollout drift`.
pub fn run(args: DriftArgs) -> ExitCode {
    match execute(&args) {
        Ok(report) => {
            let format = args.output.unwrap_or(if std::io::stdout().is_terminal() {
                OutputFormat::Table
            } else {
                OutputFormat::Json
            });
            if args.timing {
                let t = report.timings;
                let _ = writeln!(
                    std::io::stderr(),
                    "timing: total {:.3}s (fetch {:.3}s, read reference {:.3}s, prepare {:.3}s, read current {:.3}s, compare {:.3}s, accuracy {:.3}s{})",
                    t.total_s,
                    t.fetch_s,
                    t.read_reference_s,
                    t.prepare_s,
                    t.read_current_s,
                    t.compare_s,
                    t.accuracy_s,
                    if t.reference_cached {
                        ", reference cached"
                    } else {
                        ""
                    }
                );
            }
            let text = match format {
                OutputFormat::Json => match serde_json::to_string(&report) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = writeln!(
                            std::io::stderr(),
                            "mlrollout drift: cannot serialize the report: {e}"
                        );
                        return ExitCode::FAILURE;
                    }
                },
                OutputFormat::Table => render_table(&report),
            };
            // a closed pipe (`| head`) is not an error worth a panic
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}").and_then(|()| out.flush());
            ExitCode::SUCCESS
        }
        Err(message) => {
            let line: String = message.split_whitespace().collect::<Vec<_>>().join(" ");
            let _ = writeln!(std::io::stderr(), "mlrollout drift: {line}");
            ExitCode::FAILURE
        }
    }
}

/// The first ModelDeployment of a YAML file.
fn load_resource(path: &Path) -> Result<ModelDeployment, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read resource {}: {e}", path.display()))?;
    for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let value = serde_json::Value::deserialize(doc).map_err(|e| {
            format!(
                "resource {}: document {} is not valid YAML: {e}",
                path.display(),
                i + 1
            )
        })?;
        if value.get("kind").and_then(|k| k.as_str()) != Some("ModelDeployment") {
            continue;
        }
        return serde_json::from_value(value).map_err(|e| {
            format!(
                "resource {} is not a valid ModelDeployment: {e}",
                path.display()
            )
        });
    }
    Err(format!("no ModelDeployment found in {}", path.display()))
}

fn build_request(args: &DriftArgs) -> Result<(CheckRequest, Option<String>), String> {
    let resource = args.resource.as_deref().map(load_resource).transpose()?;
    let mut tracking_uri = args.tracking_uri.clone().filter(|s| !s.trim().is_empty());
    let mut request = match &resource {
        Some(md) => {
            if tracking_uri.is_none() && !md.spec.model.tracking_uri.trim().is_empty() {
                tracking_uri = Some(md.spec.model.tracking_uri.clone());
            }
            match &md.spec.drift {
                Some(drift) => CheckRequest::from_spec(drift, md.spec.performance.as_ref(), None)
                    .map_err(|e| format!("resource {}: {e}", display(&args.resource)))?,
                None => {
                    if args.reference.is_none() || args.current.is_none() {
                        return Err(format!(
                            "resource {} has no spec.drift section: pass --reference and --current",
                            display(&args.resource)
                        ));
                    }
                    default_request(md.spec.performance.as_ref().map(|p| {
                        p.prediction_distribution
                            .enabled
                            .then(|| p.prediction_distribution.column.clone())
                    }))
                }
            }
        }
        None => {
            if args.reference.is_none() || args.current.is_none() {
                return Err("--reference and --current are required without --resource".into());
            }
            default_request(None)
        }
    };
    if let Some(r) = &args.reference {
        request.reference = DatasetLocation {
            uri: r.clone(),
            format: None,
        };
    }
    if let Some(c) = &args.current {
        request.current = DatasetLocation {
            uri: c.clone(),
            format: None,
        };
    }
    if let Some(f) = args.reference_format {
        request.reference.format = Some(f.into());
    }
    if let Some(f) = args.current_format {
        request.current.format = Some(f.into());
    }
    let config = &mut request.config;
    for c in &args.categorical {
        if args.numerical.contains(c) {
            return Err(format!(
                "column '{c}' is given as both categorical and numerical"
            ));
        }
    }
    config.forced_kinds.extend(
        args.numerical
            .iter()
            .map(|c| (c.clone(), ColumnKind::Numerical))
            .chain(
                args.categorical
                    .iter()
                    .map(|c| (c.clone(), ColumnKind::Categorical)),
            ),
    );
    if !args.features.is_empty() {
        config.features = args
            .features
            .iter()
            .map(|f| FeatureSelection {
                name: f.clone(),
                kind: None,
            })
            .collect();
    }
    config.ignore_columns.extend(args.ignore.iter().cloned());
    if let Some(p) = &args.prediction_column {
        config.prediction_column = Some(p.clone());
    }
    if let Some(ts) = &args.timestamp_column {
        config.ignore_columns.push(ts.clone());
        if let Some(w) = &mut config.window {
            w.timestamp_column = ts.clone();
        }
    }
    if let Some(w) = &args.window {
        let duration =
            crate::api::duration::parse_duration(w).map_err(|e| format!("--window '{w}': {e}"))?;
        let column = args
            .timestamp_column
            .clone()
            .or_else(|| config.window.as_ref().map(|w| w.timestamp_column.clone()))
            .ok_or("--window needs --timestamp-column")?;
        config.window = Some(crate::drift::engine::CurrentWindow {
            duration,
            timestamp_column: column,
        });
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok((request, tracking_uri))
}

fn display(p: &Option<PathBuf>) -> String {
    p.as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn default_request(prediction: Option<Option<String>>) -> CheckRequest {
    let mut config = DriftConfig::default();
    if let Some(p) = prediction {
        config.prediction_column = p;
    }
    CheckRequest {
        reference: DatasetLocation {
            uri: String::new(),
            format: None,
        },
        current: DatasetLocation {
            uri: String::new(),
            format: None,
        },
        labelled: None,
        config,
        model_version: None,
        now: None,
    }
}

fn execute(args: &DriftArgs) -> Result<DriftReport, String> {
    super::install_crypto_provider();
    let (request, tracking_uri) = build_request(args)?;
    let mut sources = vec![
        DataSource::parse(&request.reference.uri, Side::Reference),
        DataSource::parse(&request.current.uri, Side::Current),
    ];
    if let Some(l) = &request.labelled {
        sources.push(DataSource::parse(&l.location.uri, Side::Labelled));
    }
    let mut remote = false;
    let mut mlflow = false;
    for s in sources {
        let s = s.map_err(|e| e.to_string())?;
        remote |= s.is_remote();
        mlflow |= s.needs_mlflow();
    }
    let mut fetch = FetchContext::new();
    if mlflow && let Some(uri) = &tracking_uri {
        fetch = fetch
            .with_tracking_uri(uri)
            .map_err(|e| format!("tracking URI: {e}"))?;
    }
    let engine = DriftEngine::new(fetch);
    let result = if remote {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        runtime.block_on(engine.check(&request))
    } else {
        engine.check_local(&request)
    };
    result.map_err(|e| e.to_string())
}

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
        crate::drift::stats::FeatureKind::Numerical => "numerical",
        crate::drift::stats::FeatureKind::Categorical => "categorical",
    };
    let test = match f.test {
        crate::drift::stats::TestKind::Ks => "ks",
        crate::drift::stats::TestKind::Chi2 => "chi2",
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

/// One aligned row per feature, then the verdict line.
pub fn render_table(report: &DriftReport) -> String {
    let header: Vec<String> = [
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
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut rows = vec![header];
    rows.extend(report.features.iter().map(row));
    if let Some(p) = &report.prediction_drift {
        let mut r = row(p);
        r[0] = format!("{} (prediction)", p.name);
        rows.push(r);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if let Some(perf) = &report.performance {
        out.push_str(&format!(
            "accuracy: {} on {} labelled rows ({}){}\n",
            perf.accuracy.map_or("-".into(), |a| format!("{a:.4}")),
            perf.rows,
            perf.decision,
            match (perf.accuracy_threshold, perf.below_threshold) {
                (Some(t), Some(true)) => format!(", below the threshold {t}: concept drift"),
                (Some(t), Some(false)) => format!(", threshold {t}: ok"),
                _ => String::new(),
            }
        ));
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
    out.push_str(&format!(
        "verdict: {verdict}: {} of {} evaluated features drifted ({:.0}%), {} reference rows, {} current rows",
        report.n_drifted,
        report.n_evaluated,
        report.drifted_share * 100.0,
        report.reference_rows,
        report.current_rows
    ));
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: DriftArgs,
    }

    fn parse(argv: &[&str]) -> DriftArgs {
        Wrapper::try_parse_from(std::iter::once("drift").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn flags_parse() {
        let a = parse(&[
            "--reference",
            "r.csv",
            "--current",
            "c.parquet",
            "--categorical",
            "a,b",
            "--output",
            "json",
        ]);
        assert_eq!(a.categorical, ["a", "b"]);
        assert_eq!(a.output, Some(OutputFormat::Json));
        let (req, _) = build_request(&a).unwrap();
        assert_eq!(req.config.forced_kinds.len(), 2);
        assert_eq!(req.current.uri, "c.parquet");
    }

    #[test]
    fn request_errors() {
        let a = parse(&["--reference", "r.csv"]);
        assert!(build_request(&a).unwrap_err().contains("--current"));
        let a = parse(&[
            "--reference",
            "r.csv",
            "--current",
            "c.csv",
            "--categorical",
            "x",
            "--numerical",
            "x",
        ]);
        assert!(build_request(&a).unwrap_err().contains("both"));
        let a = parse(&["--resource", "/nonexistent/md.yaml"]);
        assert!(build_request(&a).unwrap_err().contains("cannot read"));
    }
}
