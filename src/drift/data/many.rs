//! Reading a [`Payload::Many`]: the files of a collection as one table.
//!
//! The columns are those every file has. The first file that has rows fixes the kind of each
//! inferred column; the others are read with those kinds, several at a time, and appended in
//! order (oldest first). A file without rows is skipped. With `last_rows`, only the newest
//! rows are kept.

use super::error::{DataError, Side};
use super::source::{Part, Payload};
use super::table::{Column, ColumnRequest, NamedColumn, Table};
use super::workers_for;

/// A collection given to a reader of one file (a bug of the caller).
pub(super) fn not_a_file(payload: &Payload, side: Side) -> DataError {
    DataError::malformed(
        side,
        payload.uri(),
        "internal error: a collection of files was given to the reader of one file",
    )
}

/// The columns every file has, in the order of the first file that has a header.
pub(super) fn column_names(
    uri: &str,
    parts: &[Part],
    side: Side,
) -> Result<Vec<String>, DataError> {
    let mut common: Option<Vec<String>> = None;
    for part in parts {
        let names = match super::column_names(&part.payload, part.format, side) {
            Ok(names) => names,
            Err(DataError::Empty { .. }) => continue,
            Err(e) => return Err(e),
        };
        common = Some(match common {
            None => names,
            Some(mut kept) => {
                let here: std::collections::HashSet<&str> =
                    names.iter().map(String::as_str).collect();
                kept.retain(|n| here.contains(n.as_str()));
                kept
            }
        });
    }
    common.ok_or_else(|| empty(uri, side))
}

fn empty(uri: &str, side: Side) -> DataError {
    DataError::Empty {
        side,
        uri: uri.to_owned(),
    }
}

/// The requested columns of every file, appended oldest first; the newest `last_rows` rows
/// when set.
pub(super) fn read(
    uri: &str,
    parts: &[Part],
    last_rows: Option<usize>,
    columns: &[ColumnRequest],
    side: Side,
) -> Result<Table, DataError> {
    // The first file with rows fixes the inferred kinds.
    let mut first = None;
    for (i, part) in parts.iter().enumerate() {
        match super::read_table(&part.payload, part.format, columns, side) {
            Ok(table) => {
                first = Some((i, table));
                break;
            }
            Err(DataError::Empty { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let Some((first_index, first_table)) = first else {
        return Err(empty(uri, side));
    };
    let fixed: Vec<ColumnRequest> = first_table
        .columns()
        .iter()
        .map(|c| ColumnRequest::new(c.name.clone(), Some(c.data.kind())))
        .collect();
    let rest = read_in_parallel(&parts[first_index + 1..], &fixed, side)?;
    let mut table = append(first_table, rest);
    if let Some(n) = last_rows
        && table.rows() > n
    {
        let drop = table.rows() - n;
        let keep: Vec<bool> = (0..table.rows()).map(|i| i >= drop).collect();
        table.retain_rows(&keep);
    }
    Ok(table)
}

/// The tables of `parts` in order (`None` for a file without rows), a share of the files per
/// worker thread.
fn read_in_parallel(
    parts: &[Part],
    columns: &[ColumnRequest],
    side: Side,
) -> Result<Vec<Option<Table>>, DataError> {
    let read_one = |part: &Part| match super::read_table(&part.payload, part.format, columns, side)
    {
        Ok(table) => Ok(Some(table)),
        Err(DataError::Empty { .. }) => Ok(None),
        Err(e) => Err(e),
    };
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let per_worker = parts.len().div_ceil(workers_for(parts.len()));
    let results: Vec<Result<Vec<Option<Table>>, DataError>> = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .chunks(per_worker)
            .map(|chunk| s.spawn(move || chunk.iter().map(read_one).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(DataError::malformed(
                        side,
                        "",
                        "internal error while reading the files of a collection",
                    ))
                })
            })
            .collect()
    });
    let mut tables = Vec::with_capacity(parts.len());
    for r in results {
        tables.extend(r?);
    }
    Ok(tables)
}

/// `first` with the rows of `rest` appended (same columns, same kinds, same order).
fn append(first: Table, rest: Vec<Option<Table>>) -> Table {
    let mut rows = first.rows();
    let mut columns: Vec<NamedColumn> = first.into_columns();
    for table in rest.into_iter().flatten() {
        rows += table.rows();
        for (into, from) in columns.iter_mut().zip(table.into_columns()) {
            match (&mut into.data, from.data) {
                (Column::Numeric(a), Column::Numeric(b)) => a.extend(b),
                (Column::Categorical(a), Column::Categorical(b)) => a.append(b),
                // Kinds were fixed by the first file: a reader never returns another.
                (Column::Numeric(a), Column::Categorical(b)) => {
                    a.extend(std::iter::repeat_n(f64::NAN, b.len()));
                }
                (Column::Categorical(a), Column::Numeric(b)) => {
                    a.codes
                        .extend(std::iter::repeat_n(super::table::MISSING_CODE, b.len()));
                }
            }
        }
    }
    Table::new(rows, columns)
}
