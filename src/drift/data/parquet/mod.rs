//! Parquet reader: only the requested columns' chunks are decoded (projection), each worker
//! thread decoding its share of the columns with its own reader. This file opens the file,
//! reads the footer and runs the workers; [`columns`] turns the decoded Arrow arrays into
//! columns.

use std::fs::File;

use arrow_schema::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::file::reader::ChunkReader;

use super::error::{DataError, Side};
use super::source::Payload;
use super::table::{Column, ColumnKind, ColumnRequest, NamedColumn, Table};
use super::workers_for;
use columns::{Ctx, Sink, natural_kind};

pub(super) mod batches;
mod columns;

const BATCH_ROWS: usize = 64 * 1024;

/// Most rows reserved up front per column: the footer's row count is the file's word, and a
/// forged one (2^40 rows in a few bytes) must not reserve terabytes before a page is read.
/// Longer columns grow as they are decoded.
const MAX_RESERVED_ROWS: usize = 1 << 20;

fn open_file(path: &std::path::Path, side: Side, uri: &str) -> Result<File, DataError> {
    File::open(path).map_err(|e| super::csv::open_error(&e, side, uri))
}

fn load_metadata(payload: &Payload, side: Side) -> Result<ArrowReaderMetadata, DataError> {
    let uri = payload.uri();
    let result = match payload {
        Payload::File { path, .. } => {
            let f = open_file(path, side, uri)?;
            if f.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
                return Err(DataError::Empty {
                    side,
                    uri: uri.to_owned(),
                });
            }
            ArrowReaderMetadata::load(&f, ArrowReaderOptions::new())
        }
        Payload::Bytes { bytes, .. } => {
            if bytes.is_empty() {
                return Err(DataError::Empty {
                    side,
                    uri: uri.to_owned(),
                });
            }
            ArrowReaderMetadata::load(bytes, ArrowReaderOptions::new())
        }
        Payload::Many { .. } => return Err(super::many::not_a_file(payload, side)),
    };
    result.map_err(|e| DataError::malformed(side, uri, e))
}

/// Runs `decode` (a use of the arrow-rs Parquet decoder), turning a panic into
/// [`DataError::Malformed`]. The decoder still panics on some malformed files (level or offset
/// counts past their buffers, found by the `parquet` fuzz target), and a data file comes from
/// outside: it must fail its check, not the operator.
fn contained<T>(
    side: Side,
    uri: &str,
    decode: impl FnOnce() -> Result<T, DataError>,
) -> Result<T, DataError> {
    quiet_contained_panics();
    CONTAINING.with(|c| c.set(true));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode));
    CONTAINING.with(|c| c.set(false));
    outcome.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(DataError::malformed(
            side,
            uri,
            format!("the Parquet decoder failed on this file ({what})"),
        ))
    })
}

thread_local! {
    /// Set while this thread runs the decoder under [`contained`].
    static CONTAINING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Wraps the process's panic hook (once) so that a decoder panic [`contained`] turns into an
/// error is not also printed to stderr as if the program had failed; every other panic is
/// reported by the previous hook as before.
fn quiet_contained_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CONTAINING.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Top-level column names of a Parquet payload (reads only the footer).
pub(super) fn column_names(payload: &Payload, side: Side) -> Result<Vec<String>, DataError> {
    let meta = contained(side, payload.uri(), || load_metadata(payload, side))?;
    // "Every column" leaves out instants and nested or binary columns; a feature or the
    // window can still name them.
    Ok(meta
        .schema()
        .fields()
        .iter()
        .filter(|f| columns::compared_by_default(f.data_type()))
        .map(|f| f.name().clone())
        .collect())
}

#[derive(Clone, Debug)]
struct Target {
    /// Top-level field index in the file schema.
    field: usize,
    name: String,
    kind: ColumnKind,
}

/// The number of rows the footer declares.
pub(super) fn count_rows(payload: &Payload, side: Side) -> Result<usize, DataError> {
    let meta = contained(side, payload.uri(), || load_metadata(payload, side))?;
    Ok(usize::try_from(meta.metadata().file_metadata().num_rows()).unwrap_or(0))
}

/// Read the requested columns.
pub(super) fn read(
    payload: &Payload,
    columns: &[ColumnRequest],
    side: Side,
) -> Result<Table, DataError> {
    contained(side, payload.uri(), || {
        read_contained(payload, columns, side)
    })
}

/// [`read`], its panics not yet contained.
fn read_contained(
    payload: &Payload,
    columns: &[ColumnRequest],
    side: Side,
) -> Result<Table, DataError> {
    let uri = payload.uri();
    let meta = load_metadata(payload, side)?;
    let targets = resolve_targets(&meta, columns, side)?;
    let meta = with_dictionary_strings(meta);
    let rows = usize::try_from(meta.metadata().file_metadata().num_rows()).unwrap_or(0);
    if rows == 0 {
        return Err(DataError::Empty {
            side,
            uri: uri.to_owned(),
        });
    }
    if targets.is_empty() {
        return Ok(Table::new(rows, Vec::new()));
    }
    let decoded = decode_in_parallel(payload, &meta, &targets, rows, side)?;
    assemble(&targets, decoded, rows, side, uri)
}

/// Find every requested column in the file schema, with the kind requested or else the one
/// its type gives.
fn resolve_targets(
    meta: &ArrowReaderMetadata,
    columns: &[ColumnRequest],
    side: Side,
) -> Result<Vec<Target>, DataError> {
    let schema = meta.schema();
    // Linear in the number of columns (the first of a repeated name wins, as before).
    let mut by_name = std::collections::HashMap::new();
    for (i, f) in schema.fields().iter().enumerate() {
        by_name.entry(f.name().as_str()).or_insert((i, f));
    }
    columns
        .iter()
        .map(|c| {
            let (field, f) =
                by_name
                    .get(c.name.as_str())
                    .copied()
                    .ok_or_else(|| DataError::MissingColumn {
                        column: c.name.clone(),
                        side,
                    })?;
            let natural =
                natural_kind(f.data_type()).ok_or_else(|| DataError::UnsupportedType {
                    side,
                    column: c.name.clone(),
                    data_type: f.data_type().to_string(),
                })?;
            Ok(Target {
                field,
                name: c.name.clone(),
                kind: c.kind.unwrap_or(natural),
            })
        })
        .collect()
}

/// Decode the targets' columns, round-robin over the workers; each worker decodes its
/// columns with its own reader (a `File` handle must not be shared: its offset is). The
/// columns come back indexed like `targets` (`None` if not decoded).
fn decode_in_parallel(
    payload: &Payload,
    meta: &ArrowReaderMetadata,
    targets: &[Target],
    rows: usize,
    side: Side,
) -> Result<Vec<Option<Column>>, DataError> {
    let uri = payload.uri();
    let workers = workers_for(targets.len());
    let groups: Vec<Vec<usize>> = (0..workers)
        .map(|w| (w..targets.len()).step_by(workers).collect())
        .collect();
    let run = |group: &[usize]| -> Result<Vec<(usize, Column)>, DataError> {
        let mine: Vec<&Target> = group.iter().map(|&i| &targets[i]).collect();
        let cols = contained(side, uri, || match payload {
            Payload::File { path, .. } => {
                read_group(open_file(path, side, uri)?, meta, &mine, rows, side, uri)
            }
            Payload::Bytes { bytes, .. } => read_group(bytes.clone(), meta, &mine, rows, side, uri),
            Payload::Many { .. } => Err(super::many::not_a_file(payload, side)),
        })?;
        Ok(group.iter().copied().zip(cols).collect())
    };
    let results: Vec<Result<Vec<(usize, Column)>, DataError>> = if groups.len() == 1 {
        vec![run(&groups[0])]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = groups.iter().map(|g| s.spawn(|| run(g))).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(DataError::malformed(
                            side,
                            uri,
                            "internal error while decoding",
                        ))
                    })
                })
                .collect()
        })
    };
    in_request_order(&groups, results, targets.len())
}

/// The workers' columns placed at their request index, or the error of the first requested
/// column that failed, whatever thread saw it.
fn in_request_order(
    groups: &[Vec<usize>],
    results: Vec<Result<Vec<(usize, Column)>, DataError>>,
    n: usize,
) -> Result<Vec<Option<Column>>, DataError> {
    let mut slots: Vec<Option<Column>> = vec![None; n];
    let mut first_error: Option<(usize, DataError)> = None;
    for (g, r) in groups.iter().zip(results) {
        match r {
            Ok(cols) => {
                for (i, c) in cols {
                    slots[i] = Some(c);
                }
            }
            Err(e) => {
                let at = g.first().copied().unwrap_or(0);
                if first_error.as_ref().is_none_or(|(i, _)| at < *i) {
                    first_error = Some((at, e));
                }
            }
        }
    }
    match first_error {
        Some((_, e)) => Err(e),
        None => Ok(slots),
    }
}

/// The table of the decoded columns, in request order, each checked to hold `rows` values.
fn assemble(
    targets: &[Target],
    decoded: Vec<Option<Column>>,
    rows: usize,
    side: Side,
    uri: &str,
) -> Result<Table, DataError> {
    let mut out = Vec::with_capacity(targets.len());
    for (t, slot) in targets.iter().zip(decoded) {
        let Some(data) = slot else {
            return Err(DataError::malformed(
                side,
                uri,
                "internal error: column not decoded",
            ));
        };
        if data.len() != rows {
            return Err(DataError::malformed(
                side,
                uri,
                format!(
                    "column '{}' has {} values for {rows} rows",
                    t.name,
                    data.len()
                ),
            ));
        }
        out.push(NamedColumn {
            name: t.name.clone(),
            data,
        });
    }
    Ok(Table::new(rows, out))
}

/// Ask the reader to keep string columns dictionary-encoded (as Parquet writers store them by
/// default): rows then arrive as small integer keys into a page dictionary, and each distinct
/// string is hashed once per batch instead of once per row. Falls back to the file's own
/// schema if the reader refuses.
fn with_dictionary_strings(meta: ArrowReaderMetadata) -> ArrowReaderMetadata {
    let schema = meta.schema();
    if !schema
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8))
    {
        return meta;
    }
    let fields: Vec<arrow_schema::Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 => f.as_ref().clone().with_data_type(
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(f.data_type().clone())),
            ),
            _ => f.as_ref().clone(),
        })
        .collect();
    let dict_schema = std::sync::Arc::new(arrow_schema::Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    ));
    ArrowReaderMetadata::try_new(
        meta.metadata().clone(),
        ArrowReaderOptions::new().with_schema(dict_schema),
    )
    .unwrap_or(meta)
}

fn read_group<R: ChunkReader + 'static>(
    reader: R,
    meta: &ArrowReaderMetadata,
    targets: &[&Target],
    rows: usize,
    side: Side,
    uri: &str,
) -> Result<Vec<Column>, DataError> {
    let mask = ProjectionMask::roots(meta.parquet_schema(), targets.iter().map(|t| t.field));
    let batches = ParquetRecordBatchReaderBuilder::new_with_metadata(reader, meta.clone())
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| DataError::malformed(side, uri, e))?;
    let mut sinks: Vec<Sink> = targets
        .iter()
        .map(|t| Sink::with_capacity(t.kind, rows.min(MAX_RESERVED_ROWS)))
        .collect();
    let mut row0 = 0u64;
    for batch in batches {
        let batch = batch.map_err(|e| DataError::malformed(side, uri, e))?;
        for (t, sink) in targets.iter().zip(sinks.iter_mut()) {
            let array = batch.column_by_name(&t.name).ok_or_else(|| {
                DataError::malformed(side, uri, format!("column '{}' not decoded", t.name))
            })?;
            let ctx = Ctx {
                side,
                column: &t.name,
                row0,
            };
            sink.append(array.as_ref(), &ctx)?;
        }
        row0 += batch.num_rows() as u64;
    }
    Ok(sinks.into_iter().map(Sink::finish).collect())
}

#[cfg(test)]
mod tests;
