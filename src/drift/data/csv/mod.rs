//! CSV reader: a header row, then one record per row; only the requested columns are kept.
//!
//! The body is parsed in line-aligned chunks, one thread each, on a fast path that takes the
//! common line (one record, plain or simply quoted fields, see [`fast`]); from the first line
//! it does not take, the `csv` crate reads the rest (in one piece when a quoted field spans
//! lines, see [`split`]), so every unusual case and every error is the `csv` crate's. A large
//! file whose lines the fast path all takes is read in blocks rather than whole ([`blocks`]).
//! Numeric cells are parsed from the raw bytes, categorical cells are looked up in a
//! dictionary without allocating for values already seen.

use ::csv::{ByteRecord, ReaderBuilder};

use super::error::{DataError, Side};
use super::source::Payload;
use super::table::{CategoricalColumn, Column, ColumnKind, ColumnRequest, NamedColumn, Table};
use super::workers_for;
#[cfg(test)]
use chunks::parse_general;
use chunks::{Builder, Chunk, ChunkError, body_reader, builders_for, new_builders, parse_body};

#[cfg(unix)]
mod blocks;
mod chunks;
mod fast;
mod file;
mod split;
pub(super) mod stream;

/// Cell texts read as missing (case-insensitive), besides the empty cell.
const MISSING_TOKENS: [&[u8]; 7] = [b"nan", b"na", b"n/a", b"null", b"none", b"<na>", b"-nan"];

#[inline]
pub(super) fn is_missing(cell: &[u8]) -> bool {
    match cell.first() {
        None => true,
        // every token starts with one of these (a quick no for most cells)
        Some(&b) if matches!(b | 0x20, b'n' | b'<' | b'-') && cell.len() <= 5 => {
            MISSING_TOKENS.iter().any(|t| t.eq_ignore_ascii_case(cell))
        }
        Some(_) => false,
    }
}

/// A number, or `None` when the (trimmed, non-missing) cell is not one.
#[inline]
pub(super) fn parse_number(cell: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(cell).ok()?;
    let s = s.strip_prefix('+').unwrap_or(s);
    // Rust accepts "inf"/"infinity"/"nan" like Python's float(); reject other words early
    s.parse::<f64>().ok()
}

/// A file that could not be opened: missing, or unreadable (shared with the Parquet reader).
pub(super) fn open_error(e: &std::io::Error, side: Side, uri: &str) -> DataError {
    if e.kind() == std::io::ErrorKind::NotFound {
        DataError::NotFound {
            side,
            uri: uri.to_owned(),
            detail: String::new(),
        }
    } else {
        DataError::Unreachable {
            side,
            uri: uri.to_owned(),
            detail: super::error::one_line(&e.to_string()),
        }
    }
}

/// The header's column names. A name that is not UTF-8 (a Latin-1 file) or that appears twice
/// is an error naming the column: a lossy name would silently miss its column, and a repeated
/// one would leave the second column unchecked.
fn header_names(record: &ByteRecord, side: Side, uri: &str) -> Result<Vec<String>, DataError> {
    let mut names: Vec<String> = Vec::with_capacity(record.len());
    // Linear in the number of columns: a header may have tens of thousands.
    let mut seen: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
    for (i, h) in record.iter().enumerate() {
        let h = if i == 0 {
            h.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(h)
        } else {
            h
        };
        let name = std::str::from_utf8(h.trim_ascii()).map_err(|_| {
            let shown = String::from_utf8_lossy(h.trim_ascii());
            DataError::malformed(
                side,
                uri,
                format!(
                    "header column {} ('{shown}') is not UTF-8; save the file as UTF-8",
                    i + 1
                ),
            )
        })?;
        if let Some(&first) = seen.get(name.as_bytes()) {
            return Err(DataError::malformed(
                side,
                uri,
                format!(
                    "column '{name}' appears twice in the header (columns {} and {}); rename one",
                    first + 1,
                    i + 1
                ),
            ));
        }
        seen.insert(name.as_bytes(), i);
        names.push(name.to_owned());
    }
    Ok(names)
}

/// The header of a CSV payload (reads only the first record of a file).
pub(super) fn column_names(payload: &Payload, side: Side) -> Result<Vec<String>, DataError> {
    let uri = payload.uri();
    let mut record = ByteRecord::new();
    let read = match payload {
        Payload::File { path, .. } => {
            let file = std::fs::File::open(path).map_err(|e| open_error(&e, side, uri))?;
            let mut r = ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(std::io::BufReader::new(file));
            r.read_byte_record(&mut record)
        }
        Payload::Bytes { bytes, .. } => ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(&bytes[..])
            .read_byte_record(&mut record),
        Payload::Many { .. } => return Err(super::many::not_a_file(payload, side)),
    };
    match read {
        Ok(true) => header_names(&record, side, uri),
        Ok(false) => Err(DataError::Empty {
            side,
            uri: uri.to_owned(),
        }),
        Err(e) => Err(DataError::malformed(side, uri, e)),
    }
}

/// Read the requested columns.
pub(super) fn read(
    payload: &Payload,
    columns: &[ColumnRequest],
    side: Side,
) -> Result<Table, DataError> {
    let uri = payload.uri();
    let owned;
    let data: &[u8] = match payload {
        Payload::File { path, .. } => {
            #[cfg(unix)]
            if let Some(table) = blocks::read_file(path, columns, side, uri)? {
                return Ok(table);
            }
            owned = file::read_whole(path).map_err(|e| open_error(&e, side, uri))?;
            &owned
        }
        Payload::Bytes { bytes, .. } => bytes,
        Payload::Many { .. } => return Err(super::many::not_a_file(payload, side)),
    };
    read_bytes(data, uri, columns, side)
}

/// The number of data rows (records after the header; quoted line breaks are not rows).
pub(super) fn count_rows(payload: &Payload, side: Side) -> Result<usize, DataError> {
    let uri = payload.uri();
    let count = |reader: &mut ::csv::Reader<&mut dyn std::io::Read>| {
        let mut record = ByteRecord::new();
        let mut rows = 0usize;
        while reader
            .read_byte_record(&mut record)
            .map_err(|e| DataError::malformed(side, uri, e))?
        {
            rows += 1;
        }
        Ok(rows)
    };
    let builder = || {
        let mut b = ReaderBuilder::new();
        b.has_headers(true).flexible(true);
        b
    };
    match payload {
        Payload::File { path, .. } => {
            let file = std::fs::File::open(path).map_err(|e| open_error(&e, side, uri))?;
            let mut input = std::io::BufReader::new(file);
            count(&mut builder().from_reader(&mut input as &mut dyn std::io::Read))
        }
        Payload::Bytes { bytes, .. } => {
            let mut input: &[u8] = bytes;
            count(&mut builder().from_reader(&mut input as &mut dyn std::io::Read))
        }
        Payload::Many { .. } => Err(super::many::not_a_file(payload, side)),
    }
}

/// One requested column, resolved against the header.
#[derive(Clone, Debug)]
struct Target {
    index: usize,
    name: String,
    kind: Option<ColumnKind>,
}

fn read_bytes(
    data: &[u8],
    uri: &str,
    columns: &[ColumnRequest],
    side: Side,
) -> Result<Table, DataError> {
    read_bytes_in(data, uri, columns, side, None)
}

/// [`read_bytes`] with the body cut into at most `workers` chunks whatever its size (`None`:
/// by its size and the cores), so that tests and fuzzing reach the parallel path on small
/// inputs.
pub(super) fn read_bytes_in(
    data: &[u8],
    uri: &str,
    columns: &[ColumnRequest],
    side: Side,
    workers: Option<usize>,
) -> Result<Table, DataError> {
    read_bytes_with(data, uri, columns, side, workers, parse_body)
}

/// How the body is parsed into chunks: [`parse_body`], or (to test it) [`parse_general`].
type ParseBody = fn(&[u8], &[Target], usize, usize) -> Vec<Result<Chunk, ChunkError>>;

fn read_bytes_with(
    data: &[u8],
    uri: &str,
    columns: &[ColumnRequest],
    side: Side,
    workers: Option<usize>,
    parse: ParseBody,
) -> Result<Table, DataError> {
    let (names, body) = split_header(data, uri, side)?;
    let mut targets = resolve_targets(&names, columns, side)?;
    let width = names.len();
    infer_kinds(body, &mut targets, width, uri, side)?;
    let workers = workers.unwrap_or_else(|| workers_for(body.len() / split::MIN_PARALLEL_BYTES));
    let results = parse(body, &targets, width, workers);
    let parts = chunks_in_file_order(results, &targets, uri, side)?;
    concatenate(parts, &targets, uri, side)
}

/// The header's column names and the bytes after the header.
fn split_header<'a>(
    data: &'a [u8],
    uri: &str,
    side: Side,
) -> Result<(Vec<String>, &'a [u8]), DataError> {
    let mut header_reader = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(data);
    let mut header = ByteRecord::new();
    match header_reader.read_byte_record(&mut header) {
        Ok(true) => {}
        Ok(false) => {
            return Err(DataError::Empty {
                side,
                uri: uri.to_owned(),
            });
        }
        Err(e) => return Err(DataError::malformed(side, uri, e)),
    }
    let body_start = usize::try_from(header_reader.position().byte())
        .unwrap_or(data.len())
        .min(data.len());
    Ok((header_names(&header, side, uri)?, &data[body_start..]))
}

/// Find every requested column in the header.
fn resolve_targets(
    names: &[String],
    columns: &[ColumnRequest],
    side: Side,
) -> Result<Vec<Target>, DataError> {
    // Linear in the number of columns: a header may have tens of thousands.
    let by_name: std::collections::HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    columns
        .iter()
        .map(|c| {
            let index =
                by_name
                    .get(c.name.as_str())
                    .copied()
                    .ok_or_else(|| DataError::MissingColumn {
                        column: c.name.clone(),
                        side,
                    })?;
            Ok(Target {
                index,
                name: c.name.clone(),
                kind: c.kind,
            })
        })
        .collect()
}

/// The parsed chunks in file order, or the earliest error in file order, its row renumbered
/// from chunk-local to file rows.
fn chunks_in_file_order(
    results: Vec<Result<Chunk, ChunkError>>,
    targets: &[Target],
    uri: &str,
    side: Side,
) -> Result<Vec<Chunk>, DataError> {
    let mut rows_before = 0u64;
    let mut parts = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(chunk) => {
                rows_before += chunk.rows as u64;
                parts.push(chunk);
            }
            Err(ChunkError::WrongType { column, row, value }) => {
                return Err(DataError::wrong_type(
                    side,
                    &targets[column].name,
                    rows_before + row,
                    &value,
                ));
            }
            Err(ChunkError::Malformed { row, detail }) => {
                return Err(DataError::malformed(
                    side,
                    uri,
                    format!("row {}: {detail}", rows_before + row),
                ));
            }
        }
    }
    Ok(parts)
}

/// One table from the chunks' columns, appended in file order.
fn concatenate(
    parts: Vec<Chunk>,
    targets: &[Target],
    uri: &str,
    side: Side,
) -> Result<Table, DataError> {
    let empty = || DataError::Empty {
        side,
        uri: uri.to_owned(),
    };
    let rows: usize = parts.iter().map(|p| p.rows).sum();
    if rows == 0 {
        return Err(empty());
    }
    let mut parts = parts.into_iter();
    let Some(first) = parts.next() else {
        return Err(empty());
    };
    let mut out: Vec<NamedColumn> = targets
        .iter()
        .zip(first.columns)
        .map(|(t, col)| NamedColumn {
            name: t.name.clone(),
            data: col.finish(rows),
        })
        .collect();
    for part in parts {
        for (dst, src) in out.iter_mut().zip(part.columns) {
            match (&mut dst.data, src) {
                (Column::Numeric(v), Builder::Numeric(w)) => v.extend_from_slice(&w),
                (Column::Categorical(c), Builder::Categorical(d, codes)) => {
                    c.append(CategoricalColumn {
                        categories: d.into_categories(),
                        codes,
                    });
                }
                // kinds are fixed before the chunks are parsed
                _ => {
                    return Err(DataError::malformed(
                        side,
                        uri,
                        "internal error: column kinds differ between chunks",
                    ));
                }
            }
        }
    }
    Ok(Table::new(rows, out))
}

/// Decide the kind of every column without one: numerical when its first non-missing cell is
/// a number. A column with no value at all is numerical (all missing).
fn infer_kinds(
    body: &[u8],
    targets: &mut [Target],
    width: usize,
    uri: &str,
    side: Side,
) -> Result<(), DataError> {
    decide_kinds(body, targets, width, uri, side)?;
    for t in targets.iter_mut() {
        t.kind.get_or_insert(ColumnKind::Numerical);
    }
    Ok(())
}

/// The kinds the first records decide (see [`infer_kinds`]), left `None` where they do not;
/// true when every kind was decided before the body's end or a row of the wrong width.
fn decide_kinds(
    body: &[u8],
    targets: &mut [Target],
    width: usize,
    uri: &str,
    side: Side,
) -> Result<bool, DataError> {
    if targets.iter().all(|t| t.kind.is_some()) {
        return Ok(true);
    }
    let mut reader = body_reader(body);
    let mut rec = ByteRecord::new();
    let mut row = 0u64;
    loop {
        match reader.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) => {
                return Err(DataError::malformed(
                    side,
                    uri,
                    format!("row {}: {e}", row + 1),
                ));
            }
        }
        row += 1;
        if rec.len() != width {
            // reported with its row by the main pass
            return Ok(false);
        }
        let mut undecided = false;
        for t in targets.iter_mut().filter(|t| t.kind.is_none()) {
            let cell = rec.get(t.index).unwrap_or_default().trim_ascii();
            if is_missing(cell) {
                undecided = true;
            } else if parse_number(cell).is_some() {
                t.kind = Some(ColumnKind::Numerical);
            } else {
                t.kind = Some(ColumnKind::Categorical);
            }
        }
        if !undecided {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
