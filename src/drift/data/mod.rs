//! Datasets for the drift engine: where they are ([`DataSource`]), how they are encoded
//! ([`DataFormat`]) and how only the requested columns are read into a [`Table`].
//!
//! - **Sources.** Plain paths and `file://`, `http(s)://`, MLflow artifact URIs
//!   (`runs:/<run_id>/<path>`, `mlflow-artifacts:/...`, `models:/...`) downloaded through
//!   [`crate::mlflow::MlflowClient::download_artifact`], and object stores (`s3://`, `gs://`,
//!   `az://`, [`objects`]). Any other `scheme://` is [`DataError::UnsupportedScheme`]; a new
//!   scheme is one more [`DataSource`] variant and one more arm in [`DataSource::fetch`].
//! - **Collections.** A directory, a glob or an object-store prefix of files is read as one
//!   dataset ([`collection`]), the newest rows or files only when asked ([`FileSelection`]).
//! - **Formats.** CSV with a header row and Parquet, from the resource's `format` or the
//!   extension (`.csv`, `.parquet`, `.pq`).
//! - **Columns.** Only the requested columns are decoded. Numbers become `f64` (missing = NaN),
//!   everything else becomes categorical text, stored as dictionary codes. A column's kind is
//!   forced by the caller or inferred: in a CSV file a column whose first non-missing cell is a
//!   number is numerical (a later cell holding text is then [`DataError::WrongType`], naming
//!   the column and the row), in Parquet integer, float and decimal columns are numerical and
//!   string, dictionary and boolean columns categorical.
//! - **Missing values.** Empty cells and `NaN`/`NA`/`N/A`/`null`/`None`/`<NA>` (any case) in
//!   CSV, nulls and NaN in Parquet. ±∞ is read as a number; the statistics count it as missing.
//!
//! Reading is parallel across columns (Parquet) or across line-aligned chunks (CSV where no
//! quoted field spans lines) with `std::thread::scope`; numeric cells are parsed without
//! allocating.

pub mod collection;
mod csv;
mod error;
mod many;
mod objects;
mod parquet;
pub mod policy;
mod source;
mod table;

pub use collection::FileSelection;
pub use error::{DataError, MAX_NAME_CHARS, Side, excerpt, is_bidi_control};
pub use source::{
    DEFAULT_FETCH_TIMEOUT, DEFAULT_MAX_BYTES, DEFAULT_MEMORY_LIMIT, DataSource, FetchContext, Part,
    Payload, detect_format, sniff_format,
};
pub(crate) use table::Dictionary;
pub use table::{
    CategoricalColumn, Column, ColumnKind, ColumnRequest, MISSING_CODE, NamedColumn, Table,
};

pub use crate::api::DataFormat;

/// Column names of a dataset (CSV header or Parquet schema), in file order.
pub fn column_names(
    payload: &Payload,
    format: DataFormat,
    side: Side,
) -> Result<Vec<String>, DataError> {
    if let Payload::Many { uri, parts, .. } = payload {
        return many::column_names(uri, parts, side);
    }
    match format {
        DataFormat::Csv => csv::column_names(payload, side),
        DataFormat::Parquet => parquet::column_names(payload, side),
    }
}

/// Read the requested columns of a dataset. Columns come back in request order; a column
/// absent from the file is [`DataError::MissingColumn`] naming it and `side`; a file without
/// data rows is [`DataError::Empty`].
pub fn read_table(
    payload: &Payload,
    format: DataFormat,
    columns: &[ColumnRequest],
    side: Side,
) -> Result<Table, DataError> {
    if let Payload::Many {
        uri,
        parts,
        last_rows,
    } = payload
    {
        return many::read(uri, parts, *last_rows, columns, side);
    }
    match format {
        DataFormat::Csv => csv::read(payload, columns, side),
        DataFormat::Parquet => parquet::read(payload, columns, side),
    }
}

/// Call `f` with the requested columns batch by batch, in file order, holding one batch at a
/// time (the streaming check of data larger than memory): Parquet by record batch, CSV by
/// blocks of whole records, a collection file by file with the kinds its first file showed.
/// A collection cut to its newest rows is read whole (the cut bounds it) and handed over as
/// one batch.
///
/// `block_bytes`: the most CSV bytes parsed at once (a batch holds about twice that).
pub fn for_each_batch(
    payload: &Payload,
    format: DataFormat,
    columns: &[ColumnRequest],
    side: Side,
    block_bytes: usize,
    f: &mut dyn FnMut(Table) -> Result<(), DataError>,
) -> Result<(), DataError> {
    match payload {
        Payload::Many {
            parts,
            last_rows: None,
            ..
        } => {
            let mut requests = columns.to_vec();
            for part in parts {
                let mut fixed = false;
                let mut kinds = Vec::new();
                let batches = &mut |t: Table| {
                    if !fixed {
                        kinds = t.columns().iter().map(|c| c.data.kind()).collect();
                        fixed = true;
                    }
                    f(t)
                };
                for_each_batch(
                    &part.payload,
                    part.format,
                    &requests,
                    side,
                    block_bytes,
                    batches,
                )?;
                for (r, k) in requests.iter_mut().zip(kinds) {
                    r.kind.get_or_insert(k);
                }
            }
            Ok(())
        }
        Payload::Many { .. } => f(read_table(payload, format, columns, side)?),
        _ => match format {
            DataFormat::Csv => csv::stream::for_each_batch(payload, columns, side, block_bytes, f),
            DataFormat::Parquet => parquet::batches::for_each_batch(payload, columns, side, f),
        },
    }
}

/// The number of data rows of one file (a Parquet footer's count; a CSV file's records).
pub(crate) fn count_rows(
    payload: &Payload,
    format: DataFormat,
    side: Side,
) -> Result<usize, DataError> {
    match format {
        DataFormat::Csv => csv::count_rows(payload, side),
        DataFormat::Parquet => parquet::count_rows(payload, side),
    }
}

/// The CSV reader with the body cut into at most `workers` line-aligned chunks whatever its
/// size, parsed in parallel: the fuzz target holds it to the one-piece parse (`workers` 1).
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn read_csv_in_chunks(
    bytes: &[u8],
    columns: &[ColumnRequest],
    workers: usize,
) -> Result<Table, DataError> {
    csv::read_bytes_in(bytes, "fuzz.csv", columns, Side::Current, Some(workers))
}

/// Number of worker threads for `n` independent pieces of work.
pub(crate) fn workers_for(n: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.min(n).max(1)
}
