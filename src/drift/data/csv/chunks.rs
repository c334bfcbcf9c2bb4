//! Parsing the body in chunks: line-aligned chunks on the fast path, each on its thread,
//! and from the first line the fast path does not take, the `csv` crate (the general path).

use ::csv::{ByteRecord, ReaderBuilder};

use super::split;
use super::{Target, fast, is_missing, parse_number};
use crate::drift::data::table::{CategoricalColumn, Column, ColumnKind, Dictionary, MISSING_CODE};

/// The body's chunks: line-aligned chunks read by the fast path on `workers` threads, kept in
/// file order while each was read to its end; from the first line the fast path did not take,
/// the rest of the body on the general path (one piece when a quoted field spans lines).
pub(super) fn parse_body(
    body: &[u8],
    targets: &[Target],
    width: usize,
    workers: usize,
) -> Vec<Result<Chunk, ChunkError>> {
    let chunks = split::line_chunks(body, workers);
    let fast = in_parallel(&chunks, |c| fast::parse_lines(c, targets, width));
    let mut out = Vec::with_capacity(chunks.len());
    let mut offset = 0;
    for (bytes, result) in chunks.iter().zip(fast) {
        match result {
            Ok(fast::Fast { chunk, stop: None }) => out.push(Ok(chunk)),
            Ok(fast::Fast {
                chunk,
                stop: Some(stop),
            }) => {
                out.push(Ok(chunk));
                let rest = body.get(offset + stop..).unwrap_or_default();
                out.extend(parse_general(rest, targets, width, workers));
                return out;
            }
            Err(e) => {
                out.push(Err(e));
                return out;
            }
        }
        offset += bytes.len();
    }
    out
}

/// The body on the general path alone: line-aligned chunks unless a quoted field spans
/// lines, each read by the `csv` crate.
pub(super) fn parse_general(
    body: &[u8],
    targets: &[Target],
    width: usize,
    workers: usize,
) -> Vec<Result<Chunk, ChunkError>> {
    let chunks = split::split_chunks_for(body, workers);
    in_parallel(&chunks, |c| parse_chunk(c, targets, width))
}

/// `parse` on every chunk, one thread each when there are several.
pub(super) fn in_parallel<T: Send>(
    chunks: &[&[u8]],
    parse: impl Fn(&[u8]) -> Result<T, ChunkError> + Sync,
) -> Vec<Result<T, ChunkError>> {
    if let [chunk] = chunks {
        return vec![parse(chunk)];
    }
    let parse = &parse;
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|&chunk| s.spawn(move || parse(chunk)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(ChunkError::Malformed {
                        row: 0,
                        detail: "internal error while parsing".into(),
                    })
                })
            })
            .collect()
    })
}

pub(super) enum Builder {
    Numeric(Vec<f64>),
    Categorical(Dictionary, Vec<u32>),
}

impl Builder {
    pub(super) fn finish(self, capacity: usize) -> Column {
        match self {
            Builder::Numeric(mut v) => {
                v.reserve(capacity.saturating_sub(v.len()));
                Column::Numeric(v)
            }
            Builder::Categorical(d, mut codes) => {
                codes.reserve(capacity.saturating_sub(codes.len()));
                Column::Categorical(CategoricalColumn {
                    categories: d.into_categories(),
                    codes,
                })
            }
        }
    }
}

pub(super) struct Chunk {
    pub(super) rows: usize,
    pub(super) columns: Vec<Builder>,
}

pub(super) enum ChunkError {
    /// `row` is 1-based within the chunk; `column` indexes the targets.
    WrongType {
        column: usize,
        row: u64,
        value: Vec<u8>,
    },
    Malformed {
        row: u64,
        detail: String,
    },
}

/// Append one trimmed cell to a column; `Err(())` when a numerical cell is not a number.
#[inline]
pub(super) fn push_cell(b: &mut Builder, cell: &[u8]) -> Result<(), ()> {
    match b {
        Builder::Numeric(v) => {
            if is_missing(cell) {
                v.push(f64::NAN);
            } else {
                v.push(parse_number(cell).ok_or(())?);
            }
        }
        Builder::Categorical(d, codes) => {
            if is_missing(cell) {
                codes.push(MISSING_CODE);
            } else {
                let code = match std::str::from_utf8(cell) {
                    Ok(s) => d.code(s),
                    Err(_) => d.code(&String::from_utf8_lossy(cell)),
                };
                codes.push(code);
            }
        }
    }
    Ok(())
}

pub(super) fn new_builders(chunk: &[u8], targets: &[Target]) -> Vec<Builder> {
    builders_for(chunk.len(), chunk, targets)
}

/// Empty columns sized for `len` bytes of lines like the first ones of `sample`, with a tenth
/// more room (a column grown once full is copied).
pub(super) fn builders_for(len: usize, sample: &[u8], targets: &[Target]) -> Vec<Builder> {
    let sample = &sample[..sample.len().min(1 << 16)];
    let lines = memchr::memchr_iter(b'\n', sample).count().max(1);
    let rows = len / (sample.len() / lines).max(1);
    let estimate = rows.saturating_add(rows / 10).saturating_add(16);
    targets
        .iter()
        .map(|t| match t.kind {
            Some(ColumnKind::Categorical) => {
                Builder::Categorical(Dictionary::default(), Vec::with_capacity(estimate))
            }
            _ => Builder::Numeric(Vec::with_capacity(estimate)),
        })
        .collect()
}

/// A `csv` reader over records after the header (the body, or a chunk of it). The `csv` crate
/// drops a UTF-8 BOM at the start of its input, right for a file but not here: read as one
/// file, a BOM opening a later line is data. An empty line first (skipped by the reader) keeps
/// it (found by the `csv` fuzz target: chunks of concatenated files differed from one piece).
pub(super) fn body_reader(body: &[u8]) -> ::csv::Reader<std::io::Chain<&'static [u8], &[u8]>> {
    ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(1 << 16)
        .from_reader(std::io::Read::chain(&b"\n"[..], body))
}

/// Parse one chunk of records with the `csv` crate.
pub(super) fn parse_chunk(
    chunk: &[u8],
    targets: &[Target],
    width: usize,
) -> Result<Chunk, ChunkError> {
    let mut columns = new_builders(chunk, targets);
    let mut reader = body_reader(chunk);
    let mut rec = ByteRecord::new();
    let mut row = 0u64;
    loop {
        match reader.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                return Err(ChunkError::Malformed {
                    row: row + 1,
                    detail: e.to_string(),
                });
            }
        }
        row += 1;
        if rec.len() != width {
            return Err(ChunkError::Malformed {
                row,
                detail: format!("{} fields, the header has {width}", rec.len()),
            });
        }
        for (ci, (t, b)) in targets.iter().zip(columns.iter_mut()).enumerate() {
            let cell = rec.get(t.index).unwrap_or_default().trim_ascii();
            if push_cell(b, cell).is_err() {
                return Err(ChunkError::WrongType {
                    column: ci,
                    row,
                    value: cell.to_vec(),
                });
            }
        }
    }
    Ok(Chunk {
        rows: usize::try_from(row).unwrap_or(usize::MAX),
        columns,
    })
}
