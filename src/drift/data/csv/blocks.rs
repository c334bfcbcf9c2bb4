//! A large file read without holding it whole: each worker reads its share of the lines in
//! blocks, into a buffer of its own, and parses them on the fast path. Most of reading a file
//! into memory is the first touch of the buffer's pages; a block is touched once and reused.
//!
//! Only for files whose every line is a plain record and whose kinds the first block decides:
//! at anything else (a line the fast path does not take, any error, a file that changes
//! size) the caller reads the whole file instead, so that every result and error is the
//! in-memory reader's.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::fast::Lines;
use super::{
    Chunk, Target, builders_for, concatenate, decide_kinds, open_error, resolve_targets,
    split_header,
};
use crate::drift::data::error::{DataError, Side};
use crate::drift::data::table::{ColumnKind, ColumnRequest, Table};
use crate::drift::data::workers_for;

/// A worker's buffer; it grows for a longer line.
const BLOCK: usize = 1 << 20;

/// Below this size a file is read whole.
const MIN_BYTES: u64 = 16 << 20;

/// Sizes, smaller in tests.
#[derive(Clone, Copy, Debug)]
pub(super) struct Tuning {
    pub(super) min_bytes: u64,
    /// A worker's first buffer (the header and the kinds come from the first `BLOCK` bytes).
    pub(super) block: usize,
    /// `None`: by the size and the cores.
    pub(super) workers: Option<usize>,
}

/// The table, or `None` when the whole file must be read instead.
pub(super) fn read_file(
    path: &Path,
    columns: &[ColumnRequest],
    side: Side,
    uri: &str,
) -> Result<Option<Table>, DataError> {
    let tuning = Tuning {
        min_bytes: MIN_BYTES,
        block: BLOCK,
        workers: None,
    };
    read_file_with(path, columns, side, uri, tuning)
}

pub(super) fn read_file_with(
    path: &Path,
    columns: &[ColumnRequest],
    side: Side,
    uri: &str,
    tuning: Tuning,
) -> Result<Option<Table>, DataError> {
    let file = File::open(path).map_err(|e| open_error(&e, side, uri))?;
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return Ok(None);
    };
    if len < tuning.min_bytes {
        return Ok(None);
    }
    let block = tuning.block.max(1);
    let Some((targets, width, body_start, sample)) = head(&file, columns, side, uri) else {
        return Ok(None);
    };
    let body_len = len - body_start;
    let workers = tuning
        .workers
        .unwrap_or_else(|| workers_for(usize::try_from(body_len >> 20).unwrap_or(usize::MAX)));
    let bounds: Vec<u64> = (0..=workers)
        .map(|k| {
            let share = u128::from(body_len) * k as u128 / workers as u128;
            body_start + u64::try_from(share).unwrap_or(body_len)
        })
        .collect();
    let parts: Vec<Option<Chunk>> = std::thread::scope(|s| {
        let handles: Vec<_> = bounds
            .windows(2)
            .enumerate()
            .map(|(k, w)| {
                let share = Share {
                    start: w[0],
                    end: (k + 1 < workers).then_some(w[1]),
                    len: w[1] - w[0],
                    skip_first: k > 0,
                };
                let (file, targets, sample) = (&file, &targets, &sample);
                s.spawn(move || share.read(file, targets, width, sample, block))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().ok().flatten())
            .collect()
    });
    let Some(parts) = parts.into_iter().collect::<Option<Vec<Chunk>>>() else {
        return Ok(None);
    };
    // appended to meanwhile: reading the whole file would see more
    let mut probe = [0u8; 1];
    if !matches!(file.read_at(&mut probe, len), Ok(0)) {
        return Ok(None);
    }
    // No rows (a header and blank lines): the whole-file reader names the error.
    if parts.iter().all(|p| p.rows == 0) {
        return Ok(None);
    }
    concatenate(parts, &targets, uri, side).map(Some)
}

/// The requested columns with their kinds, the header's width, where the body starts and its
/// first lines, from the file's first block; `None` when they are not all there.
fn head(
    file: &File,
    columns: &[ColumnRequest],
    side: Side,
    uri: &str,
) -> Option<(Vec<Target>, usize, u64, Vec<u8>)> {
    let mut block = vec![0u8; BLOCK];
    let n = read_full_at(file, &mut block, 0).ok()?;
    block.truncate(n);
    let (names, body) = split_header(&block, uri, side).ok()?;
    // the header must end inside the block, and whole lines of the body follow it
    let lines = &body[..=memchr::memrchr(b'\n', body)?];
    let mut targets = resolve_targets(&names, columns, side).ok()?;
    if !decide_kinds(lines, &mut targets, names.len(), uri, side).ok()? {
        return None;
    }
    for t in &mut targets {
        t.kind.get_or_insert(ColumnKind::Numerical);
    }
    let body_start = u64::try_from(block.len() - body.len()).ok()?;
    Some((targets, names.len(), body_start, lines.to_vec()))
}

/// A worker's lines: those starting after `start` (from `start` for the first worker) up to
/// and including `end` (to the file's end for the last); so each line is one worker's, as in
/// the in-memory reader's chunks.
struct Share {
    start: u64,
    end: Option<u64>,
    /// About how many bytes the share has.
    len: u64,
    skip_first: bool,
}

impl Share {
    fn read(
        &self,
        file: &File,
        targets: &[Target],
        width: usize,
        sample: &[u8],
        block: usize,
    ) -> Option<Chunk> {
        let estimate = usize::try_from(self.len).unwrap_or(0);
        let mut lines = Lines::new(builders_for(estimate, sample, targets), targets, width);
        // every line of the bytes taken by the fast path
        let take = |lines: &mut Lines, bytes: &[u8]| matches!(lines.parse(bytes), Ok(None));
        let mut buf = vec![0u8; block];
        // `buf[..filled]` holds the file from `pos`
        let mut pos = self.start;
        let mut filled = 0usize;
        let mut skip = self.skip_first;
        loop {
            let n = read_full_at(file, &mut buf[filled..], pos + filled as u64).ok()?;
            let eof = filled + n < buf.len();
            filled += n;
            if skip {
                // the line under way at `start` is the previous worker's
                match memchr::memchr(b'\n', &buf[..filled]) {
                    Some(i) => {
                        buf.copy_within(i + 1..filled, 0);
                        pos += (i + 1) as u64;
                        filled -= i + 1;
                        skip = false;
                    }
                    None if eof => return Some(lines.finish()),
                    None => {
                        pos += filled as u64;
                        filled = 0;
                        continue;
                    }
                }
            }
            let data = &buf[..filled];
            // the line ending at or after `end` is this worker's last
            if let Some(end) = self.end {
                if pos > end {
                    return Some(lines.finish());
                }
                let rel = usize::try_from(end - pos).ok()?;
                if let Some(i) = data.get(rel..).and_then(|d| memchr::memchr(b'\n', d)) {
                    return take(&mut lines, &data[..=rel + i]).then(|| lines.finish());
                }
                if eof {
                    // the file shrank
                    return None;
                }
            } else if eof {
                return take(&mut lines, data).then(|| lines.finish());
            }
            // whole lines now, the rest with the next block (a longer buffer for a long line)
            let Some(last) = memchr::memrchr(b'\n', data) else {
                buf.resize(buf.len() * 2, 0);
                continue;
            };
            if !take(&mut lines, &data[..=last]) {
                return None;
            }
            let rest = last + 1;
            buf.copy_within(rest..filled, 0);
            pos += rest as u64;
            filled -= rest;
        }
    }
}

/// Fill `buf` from `offset`, short only at the file's end.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
