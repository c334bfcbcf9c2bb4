//! `mlrollout drift`: compare a current dataset with a reference dataset, offline.
//!
//! Without `--resource` the drift section's defaults apply and column kinds are inferred
//! (`--categorical` / `--numerical` force them); with `--resource` the ModelDeployment's
//! `spec.drift` (features, thresholds, URIs) and `spec.performance` (labelled data, prediction
//! column) rule, and `--reference` / `--current` override its URIs.
//!
//! Output: an aligned table when stdout is a terminal, else exactly one JSON object
//! (`--output` chooses; `--output html` writes a self-contained page with a chart per feature,
//! see [`crate::drift::report`]). Exit 0 whether or not drift is found; 1 with one line on stderr when
//! the input is bad.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Deserialize;

use crate::api::duration::parse_duration;
use crate::api::{DataFormat, ModelDeployment};
use crate::drift::data::{ColumnKind, DataSource, FetchContext, Side};
use crate::drift::engine::{
    CaptureLocation, CheckRequest, CurrentWindow, DatasetLocation, DriftConfig, DriftEngine,
    DriftReport, FeatureSelection,
};

mod labels;
mod profile;
use crate::storage::StoreOptions;

mod table;

pub use table::render_table;

/// The process's peak resident memory so far (Linux `VmHWM`), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Json,
    Table,
    /// One self-contained HTML page: the verdict, a chart and the statistics per feature.
    Html,
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

/// What `mlrollout drift` does besides a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DriftAction {
    /// Write the reference's profile (`--out profile.json`) instead of checking: later checks
    /// and the operator read it as the reference (`--reference profile.json`), one pass, once.
    Profile,
}

/// Arguments of `mlrollout drift`.
#[derive(Debug, Clone, clap::Args)]
pub struct DriftArgs {
    /// `profile`: write the reference's profile to --out (no --current needed).
    #[arg(value_enum, value_name = "ACTION")]
    pub action: Option<DriftAction>,
    /// Where `drift profile` writes the profile (JSON).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// `drift profile`: a numeric feature with more values than this keeps a quantile sketch
    /// (about 100 KB) instead of its sorted values; KS against it then carries its error bound.
    #[arg(long, value_name = "N", default_value_t = crate::drift::engine::DEFAULT_EXACT_UP_TO)]
    pub exact_up_to: usize,
    /// Reference (training) dataset: a path, file://, http(s)://, runs:/<run_id>/<path>,
    /// mlflow-artifacts:/... or s3://, gs://, az:// URI; or a directory, a glob or an
    /// object-store prefix (ending in /) of CSV/Parquet files, read as one dataset. Required
    /// unless --resource names one.
    #[arg(long, value_name = "URI")]
    pub reference: Option<String>,
    /// Current (live) dataset, same schemes. Required unless --resource names one.
    #[arg(long, value_name = "URI")]
    pub current: Option<String>,
    /// Compare only the newest N rows of the current data (of a collection: the newest files
    /// first, by the window start in their names, else their modification time).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub last_rows: Option<u64>,
    /// Compare only the current files whose time is within this long before now, e.g. `1h`.
    #[arg(long, value_name = "DURATION", value_parser = super::args::positive_duration)]
    pub last_duration: Option<std::time::Duration>,
    /// Where the proxy writes captured traffic (spec.serving.proxy.capture.uri), for a
    /// --resource whose drift.current names a capture.
    #[arg(long, value_name = "URI")]
    pub capture_uri: Option<String>,
    /// Labelled data and the label join (--labelled, --join-*).
    #[command(flatten)]
    pub labels: Box<labels::LabelArgs>,
    /// Endpoint of an S3-compatible server (http(s)://host:port) for s3:// URIs, instead of
    /// AWS. Credentials come from the AWS_*, GOOGLE_* and AZURE_* environment variables.
    #[arg(long, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub storage_endpoint: Option<String>,
    /// Region of the bucket (S3).
    #[arg(long, value_name = "REGION")]
    pub storage_region: Option<String>,
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
    /// Column with the model's prediction, compared separately (prediction shift), and the
    /// one accuracy reads of the labelled data (of the captures, with a join).
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
    /// Output format (default: table on a terminal, json otherwise); `html` is a page to open
    /// in a browser (`> report.html`).
    #[arg(long, value_enum)]
    pub output: Option<OutputFormat>,
    /// Print the time of each stage (fetch, read, prepare, compare) on stderr.
    #[arg(long)]
    pub timing: bool,
    /// Most bytes read from one dataset: a bigger file, HTTP body or artifact is refused with
    /// an error that says so, e.g. `512MiB`.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = super::args::positive_size)]
    pub max_bytes: u64,
    /// Most memory the datasets may take once read, e.g. `1GiB`. Larger data is read batch by
    /// batch: PSI and chi-square stay exact, KS comes from quantile sketches (the output gives
    /// its error bound) for the side that does not fit.
    #[arg(long, value_name = "SIZE", default_value = "384MiB", value_parser = super::args::positive_size)]
    pub memory_limit: u64,
    /// Longest wait for a remote dataset (connect and download), e.g. `2m`.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = super::args::positive_duration)]
    pub fetch_timeout: std::time::Duration,
}

/// Runs `mlrollout drift`.
pub fn run(args: DriftArgs) -> ExitCode {
    if args.action == Some(DriftAction::Profile) {
        return profile::run(&args);
    }
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
                    "timing: total {:.3}s (fetch {:.3}s, read reference {:.3}s, prepare {:.3}s, read current {:.3}s, compare {:.3}s, accuracy {:.3}s{}){}",
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
                    },
                    peak_rss_kib().map_or(String::new(), |k| format!("; peak RSS {k} KiB"))
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
                OutputFormat::Html => crate::drift::report::render_html(&report),
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
    super::yaml::check_nesting(&text)
        .map_err(|e| format!("resource {} is not valid YAML: {e}", path.display()))?;
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
        return serde_json::from_value(value.clone()).map_err(|e| {
            // The schema check names the field (serde's own error only says the type).
            let detail = match super::check::check_value(&value) {
                Err(problems) => problems.join("; "),
                Ok(_) => e.to_string(),
            };
            format!(
                "resource {} is not a valid ModelDeployment: {detail}",
                path.display()
            )
        });
    }
    Err(format!("no ModelDeployment found in {}", path.display()))
}

/// The check to run: the resource's drift section (or the defaults), then the flags over it.
/// Also the MLflow tracking server for `runs:/` URIs, when one is known.
fn build_request(args: &DriftArgs) -> Result<(CheckRequest, Option<String>), String> {
    let resource = args.resource.as_deref().map(load_resource).transpose()?;
    let tracking_uri = tracking_uri(args, resource.as_ref());
    let mut request = match &resource {
        Some(md) => request_from_resource(args, md)?,
        None => {
            if args.reference.is_none() || args.current.is_none() {
                return Err("--reference and --current are required without --resource".into());
            }
            default_request(None)
        }
    };
    override_locations(&mut request, args);
    labels::apply_labelled_flags(&mut request, args, resource.as_ref())?;
    apply_column_flags(&mut request.config, args)?;
    apply_window_flags(&mut request.config, args)?;
    apply_selection_flags(&mut request.config, args)?;
    request.storage = storage_options(args, std::env::vars());
    request.config.validate().map_err(|e| e.to_string())?;
    Ok((request, tracking_uri))
}

/// `--tracking-uri` (or its environment variable), else the resource's `spec.model.trackingUri`.
fn tracking_uri(args: &DriftArgs, resource: Option<&ModelDeployment>) -> Option<String> {
    let given = |uri: &String| !uri.trim().is_empty();
    args.tracking_uri.clone().filter(given).or_else(|| {
        resource
            .map(|md| md.spec.model.tracking_uri.clone())
            .filter(given)
    })
}

/// The resource's `spec.drift`; without one, the defaults (the flags must name the datasets).
fn request_from_resource(args: &DriftArgs, md: &ModelDeployment) -> Result<CheckRequest, String> {
    match &md.spec.drift {
        Some(drift) => {
            let capture = CaptureLocation {
                base: args.capture_uri.as_deref().or(md.spec.capture_base()),
                namespace: md.metadata.namespace.as_deref().unwrap_or("default"),
                name: md.metadata.name.as_deref().unwrap_or_default(),
            };
            CheckRequest::from_spec(drift, md.spec.performance.as_ref(), None, &capture)
                .map_err(|e| format!("resource {}: {e}", display(&args.resource)))
        }
        None => {
            if args.reference.is_none() || args.current.is_none() {
                return Err(format!(
                    "resource {} has no spec.drift section: pass --reference and --current",
                    display(&args.resource)
                ));
            }
            Ok(default_request(md.spec.performance.as_ref().map(|p| {
                p.prediction_distribution
                    .enabled
                    .then(|| p.prediction_distribution.column.clone())
            })))
        }
    }
}

/// `--reference` / `--current` replace the resource's URIs; `--*-format` name the formats.
fn override_locations(request: &mut CheckRequest, args: &DriftArgs) {
    let sides = [
        (
            &mut request.reference,
            &args.reference,
            args.reference_format,
        ),
        (&mut request.current, &args.current, args.current_format),
    ];
    for (location, uri, format) in sides {
        if let Some(uri) = uri {
            *location = DatasetLocation {
                uri: uri.clone(),
                format: None,
            };
        }
        if let Some(format) = format {
            location.format = Some(format.into());
        }
    }
}

/// `--categorical`, `--numerical`, `--features`, `--ignore` and `--prediction-column`.
fn apply_column_flags(config: &mut DriftConfig, args: &DriftArgs) -> Result<(), String> {
    if let Some(c) = args.categorical.iter().find(|c| args.numerical.contains(c)) {
        return Err(format!(
            "column '{c}' is given as both categorical and numerical"
        ));
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
    Ok(())
}

/// `--timestamp-column` (never compared itself) and `--window`.
fn apply_window_flags(config: &mut DriftConfig, args: &DriftArgs) -> Result<(), String> {
    if let Some(ts) = &args.timestamp_column {
        config.ignore_columns.push(ts.clone());
        if let Some(w) = &mut config.window {
            w.timestamp_column = ts.clone();
        }
    }
    if let Some(w) = &args.window {
        let duration = parse_duration(w).map_err(|e| format!("--window '{w}': {e}"))?;
        let column = args
            .timestamp_column
            .clone()
            .or_else(|| config.window.as_ref().map(|w| w.timestamp_column.clone()))
            .ok_or("--window needs --timestamp-column")?;
        config.window = Some(CurrentWindow {
            duration,
            timestamp_column: column,
        });
    }
    Ok(())
}

/// `--last-rows` and `--last-duration` (over the resource's `lastRows` / `lastDuration`).
fn apply_selection_flags(config: &mut DriftConfig, args: &DriftArgs) -> Result<(), String> {
    let selection = &mut config.current_files;
    if let Some(n) = args.last_rows {
        selection.last_rows = Some(usize::try_from(n).map_err(|_| "--last-rows is too large")?);
        selection.last_duration = None;
    }
    if let Some(d) = args.last_duration {
        selection.last_duration = Some(d);
        selection.last_rows = None;
    }
    if args.last_rows.is_some() && args.last_duration.is_some() {
        return Err("give either --last-rows or --last-duration, not both".into());
    }
    if selection.is_set() && config.window.is_some() {
        return Err("--window cannot be combined with --last-rows or --last-duration".into());
    }
    Ok(())
}

/// Object-store settings: the cloud's credential variables of `env` (`AWS_*`, `GOOGLE_*`,
/// `AZURE_*`), `--storage-endpoint` and `--storage-region`.
fn storage_options(args: &DriftArgs, env: impl Iterator<Item = (String, String)>) -> StoreOptions {
    let cloud: Vec<(String, String)> = env
        .filter(|(k, _)| {
            ["AWS_", "GOOGLE_", "AZURE_"]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .collect();
    StoreOptions::from_parts(
        cloud.iter().map(|(k, v)| (k.as_str(), v.clone())),
        args.storage_endpoint.as_deref().filter(|e| !e.is_empty()),
        args.storage_region.as_deref().filter(|r| !r.is_empty()),
    )
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
        storage: StoreOptions::default(),
    }
}

fn execute(args: &DriftArgs) -> Result<DriftReport, String> {
    super::install_crypto_provider();
    let (request, tracking_uri) = build_request(args)?;
    let (engine, remote) = engine_for(args, &request, tracking_uri.as_deref())?;
    let result = if remote {
        current_thread_runtime()?.block_on(engine.check(&request))
    } else {
        engine.check_local(&request)
    };
    result.map_err(|e| e.to_string())
}

fn current_thread_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// The engine for `request` (the flags' limits, MLflow when a URI needs it) and whether a
/// dataset is remote.
fn engine_for(
    args: &DriftArgs,
    request: &CheckRequest,
    tracking_uri: Option<&str>,
) -> Result<(DriftEngine, bool), String> {
    let mut sources = vec![
        DataSource::parse(&request.reference.uri, Side::Reference),
        DataSource::parse(&request.current.uri, Side::Current),
    ];
    if let Some(l) = &request.labelled {
        sources.push(DataSource::parse(&l.location.uri, Side::Labelled));
        if let Some(j) = &l.join {
            sources.push(DataSource::parse(&j.predictions.uri, Side::Captured));
        }
    }
    let mut remote = false;
    let mut mlflow = false;
    for s in sources {
        let s = s.map_err(|e| e.to_string())?;
        remote |= s.is_remote();
        mlflow |= s.needs_mlflow();
    }
    let mut fetch = FetchContext::new()
        .with_max_bytes(args.max_bytes)
        .with_memory_limit(args.memory_limit)
        .with_timeout(args.fetch_timeout);
    if mlflow && let Some(uri) = tracking_uri {
        fetch = fetch
            .with_tracking_uri(uri)
            .map_err(|e| format!("tracking URI: {e}"))?;
    }
    Ok((DriftEngine::new(fetch), remote))
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
