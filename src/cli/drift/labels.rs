//! The labelled-data flags of `mlrollout drift`: `--labelled`, `--labelled-format`,
//! `--label-column`, and the label join (`--join-predictions` or `--join-capture`,
//! `--id-column`, `--join-last-rows` or `--join-last-duration`), over the resource's
//! `spec.performance.labelled`.

use super::{DriftArgs, FormatArg};
use crate::api::{CaptureSource, CaptureVariant, ModelDeployment};
use crate::drift::data::FileSelection;
use crate::drift::engine::{
    CaptureLocation, CheckRequest, DatasetLocation, JoinLocation, LabelledLocation, capture_uri,
};
use crate::storage::layout::{PREDICTION_COLUMN, REQUEST_ID_COLUMN};

/// A variant whose captured traffic is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum VariantArg {
    Stable,
    Candidate,
}

impl From<VariantArg> for CaptureVariant {
    fn from(v: VariantArg) -> Self {
        match v {
            VariantArg::Stable => CaptureVariant::Stable,
            VariantArg::Candidate => CaptureVariant::Candidate,
        }
    }
}

/// The labelled-data flags of `mlrollout drift`.
#[derive(Debug, Clone, clap::Args)]
pub struct LabelArgs {
    /// Labelled data for accuracy: a table with a prediction and a label column, or, with
    /// --join-predictions / --join-capture, a feedback table of request ids and labels. Same
    /// schemes as --reference. Replaces the resource's performance.labelled.uri.
    #[arg(long, value_name = "URI")]
    pub labelled: Option<String>,
    /// Format of the labelled data when the extension does not tell.
    #[arg(long, value_enum)]
    pub labelled_format: Option<FormatArg>,
    /// Column of the labelled data with the true label (default: label).
    #[arg(long, value_name = "COLUMN")]
    pub label_column: Option<String>,
    /// Join the labels with these captured predictions by request id: the proxy's windows
    /// (a directory, glob or object-store prefix ending in /, e.g.
    /// /data/captures/ml/fraud/stable/).
    #[arg(long, value_name = "URI", conflicts_with = "join_capture")]
    pub join_predictions: Option<String>,
    /// Join the labels with the predictions captured for this variant of the --resource
    /// (under --capture-uri or its serving.proxy.capture.uri).
    #[arg(long, value_enum, value_name = "VARIANT")]
    pub join_capture: Option<VariantArg>,
    /// Column of the feedback table holding the request id (default: request_id).
    #[arg(long, value_name = "COLUMN")]
    pub id_column: Option<String>,
    /// Join only the newest N captured rows.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "join_last_duration")]
    pub join_last_rows: Option<u64>,
    /// Join only the captured windows of this long before now, e.g. `168h`.
    #[arg(long, value_name = "DURATION", value_parser = crate::cli::args::positive_duration)]
    pub join_last_duration: Option<std::time::Duration>,
}

/// Applies the labelled-data flags to `request` (whose `labelled` is the resource's, if any).
pub(super) fn apply_labelled_flags(
    request: &mut CheckRequest,
    args: &DriftArgs,
    resource: Option<&ModelDeployment>,
) -> Result<(), String> {
    if let Some(uri) = &args.labels.labelled {
        let location = DatasetLocation {
            uri: uri.clone(),
            format: None,
        };
        match &mut request.labelled {
            Some(l) => l.location = location,
            None => {
                request.labelled = Some(LabelledLocation {
                    location,
                    prediction_column: PREDICTION_COLUMN.into(),
                    label_column: "label".into(),
                    accuracy_threshold: resource
                        .and_then(|md| md.spec.performance.as_ref())
                        .map(|p| p.accuracy_threshold),
                    join: None,
                });
            }
        }
    }
    let joining = args.labels.join_predictions.is_some() || args.labels.join_capture.is_some();
    let tuning = args.labels.id_column.is_some()
        || args.labels.join_last_rows.is_some()
        || args.labels.join_last_duration.is_some();
    let Some(labelled) = &mut request.labelled else {
        if args.labels.labelled_format.is_some()
            || args.labels.label_column.is_some()
            || joining
            || tuning
        {
            return Err(
                "--labelled-format, --label-column, --id-column and the --join-* flags need --labelled (or a --resource with performance.labelled)"
                    .into(),
            );
        }
        return Ok(());
    };
    if let Some(format) = args.labels.labelled_format {
        labelled.location.format = Some(format.into());
    }
    if let Some(column) = &args.labels.label_column {
        labelled.label_column = column.clone();
    }
    if let Some(column) = &args.prediction_column {
        labelled.prediction_column = column.clone();
    }
    if joining {
        let predictions = join_predictions(args, resource)?;
        match &mut labelled.join {
            Some(join) => join.predictions = predictions,
            None => {
                labelled.join = Some(JoinLocation {
                    predictions,
                    selection: FileSelection::default(),
                    id_column: REQUEST_ID_COLUMN.into(),
                });
            }
        }
    }
    match &mut labelled.join {
        Some(join) => apply_join_flags(join, args, &labelled.label_column),
        None if tuning => Err(
            "--id-column, --join-last-rows and --join-last-duration need --join-predictions or --join-capture (or a --resource with performance.labelled.join)"
                .into(),
        ),
        None => Ok(()),
    }
}

/// `--id-column`, `--join-last-rows` and `--join-last-duration` over the join.
fn apply_join_flags(
    join: &mut JoinLocation,
    args: &DriftArgs,
    label_column: &str,
) -> Result<(), String> {
    if let Some(column) = &args.labels.id_column {
        join.id_column = column.clone();
    }
    if let Some(n) = args.labels.join_last_rows {
        join.selection = FileSelection {
            last_rows: Some(usize::try_from(n).map_err(|_| "--join-last-rows is too large")?),
            last_duration: None,
        };
    }
    if let Some(d) = args.labels.join_last_duration {
        join.selection = FileSelection {
            last_rows: None,
            last_duration: Some(d),
        };
    }
    if join.id_column.is_empty() || join.id_column == label_column {
        return Err(format!(
            "the request id column ({:?}) and the label column ({label_column:?}) must be two columns",
            join.id_column
        ));
    }
    Ok(())
}

/// `--join-predictions`, or the captures of `--join-capture`'s variant of the resource.
fn join_predictions(
    args: &DriftArgs,
    resource: Option<&ModelDeployment>,
) -> Result<DatasetLocation, String> {
    if let Some(uri) = &args.labels.join_predictions {
        return Ok(DatasetLocation {
            uri: uri.clone(),
            format: None,
        });
    }
    let variant = args
        .labels
        .join_capture
        .ok_or("--join-predictions or --join-capture is needed")?;
    let md = resource.ok_or(
        "--join-capture needs --resource (the captures are under its namespace and name); without one, name the captured windows with --join-predictions",
    )?;
    let capture = CaptureLocation {
        base: args.capture_uri.as_deref().or(md.spec.capture_base()),
        namespace: md.metadata.namespace.as_deref().unwrap_or("default"),
        name: md.metadata.name.as_deref().unwrap_or_default(),
    };
    let source = CaptureSource {
        variant: variant.into(),
    };
    let uri = capture_uri(&source, &capture, "--join-capture")
        .map_err(|e| format!("{e}, or --capture-uri"))?;
    Ok(DatasetLocation { uri, format: None })
}
