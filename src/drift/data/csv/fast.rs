//! The fast path: a chunk read line by line, for the common file where every line is one
//! record. One SIMD scan finds the delimiters, line ends and quotes; a field may be quoted when
//! its quotes open at its start and close just before a delimiter or the line end (`"web"`,
//! `"a,b"`). At the first line that is anything else (an escaped quote `""` inside quotes, a
//! quoted line break, text after a closing quote, a stray `\r`, a number of fields other than
//! the header's) the fast path stops and the `csv` crate reads from that line on, so that every
//! such case, and every malformed-row error, is the general path's.
//!
//! Line by line is right only from a record start: the body starts at one, and a chunk read
//! to its end by the fast path ends at one, so the chunks after it start at one too
//! ([`super::parse_body`] keeps a chunk's result only when every chunk before it was read to
//! its end here).

use memchr::memchr_iter;

use super::{Builder, Chunk, ChunkError, Target, is_missing, new_builders, parse_number};
use crate::drift::data::table::{Dictionary, MISSING_CODE};

/// A chunk read by the fast path: its records up to `stop`, the offset of the first line it
/// did not take (`None`: the whole chunk).
pub(super) struct Fast {
    pub(super) chunk: Chunk,
    pub(super) stop: Option<usize>,
}

/// Read the chunk's lines until one is not a plain record. A cell that is not a number in a
/// numerical column is the same error as on the general path.
pub(super) fn parse_lines(
    chunk: &[u8],
    targets: &[Target],
    width: usize,
) -> Result<Fast, ChunkError> {
    let mut lines = Lines::new(new_builders(chunk, targets), targets, width);
    let stop = lines.parse(chunk)?;
    Ok(Fast {
        chunk: lines.finish(),
        stop,
    })
}

/// Records read line by line into columns, from one piece of text or several in a row (each
/// ending where a line does).
pub(super) struct Lines<'t> {
    targets: &'t [Target],
    columns: Vec<Builder>,
    spans: Vec<(usize, usize)>,
    rows: u64,
}

impl<'t> Lines<'t> {
    pub(super) fn new(columns: Vec<Builder>, targets: &'t [Target], width: usize) -> Self {
        Self {
            targets,
            columns,
            spans: vec![(0, 0); width],
            rows: 0,
        }
    }

    /// The records so far.
    pub(super) fn finish(self) -> Chunk {
        Chunk {
            rows: usize::try_from(self.rows).unwrap_or(usize::MAX),
            columns: self.columns,
        }
    }

    /// Read the text's lines (a last one without a line end too) until one is not a plain
    /// record: `Some` of its offset then. Row numbers in errors count every record so far.
    pub(super) fn parse(&mut self, text: &[u8]) -> Result<Option<usize>, ChunkError> {
        // every `\r` must end a line (CRLF): a lone one ends a record to the `csv` crate
        if !memchr_iter(b'\r', text).all(|p| text.get(p + 1) == Some(&b'\n')) {
            return Ok(Some(0));
        }
        let mut caches: Vec<CodeCache> = self.targets.iter().map(|_| CodeCache::new()).collect();
        let mut line = LineState::default();
        for p in Tokens::new(text) {
            match line.step(text, p, &mut self.spans) {
                Step::Continue => {}
                Step::Blank => line = LineState::at(p + 1),
                Step::Record => {
                    self.record(text, &mut caches)?;
                    line = LineState::at(p + 1);
                }
                Step::Stop => return Ok(Some(line.start)),
            }
        }
        if line.start < text.len() {
            // the last line, without a line end
            match line.finish(text, text.len(), &mut self.spans) {
                Step::Record => self.record(text, &mut caches)?,
                Step::Blank | Step::Continue => {}
                Step::Stop => return Ok(Some(line.start)),
            }
        }
        Ok(None)
    }

    #[inline]
    fn record<'a>(
        &mut self,
        text: &'a [u8],
        caches: &mut [CodeCache<'a>],
    ) -> Result<(), ChunkError> {
        self.rows += 1;
        push_record(
            text,
            &self.spans,
            self.targets,
            &mut self.columns,
            caches,
            self.rows,
        )
    }
}

/// Append a record's requested cells; `row` is 1-based within the chunk.
#[inline]
fn push_record<'a>(
    chunk: &'a [u8],
    spans: &[(usize, usize)],
    targets: &[Target],
    columns: &mut [Builder],
    caches: &mut [CodeCache<'a>],
    row: u64,
) -> Result<(), ChunkError> {
    for (ci, ((t, b), cache)) in targets
        .iter()
        .zip(columns.iter_mut())
        .zip(caches.iter_mut())
        .enumerate()
    {
        let (s, e) = spans[t.index];
        let cell = chunk[s..e].trim_ascii();
        let ok = match b {
            Builder::Numeric(v) => match simple_decimal(cell) {
                Some(x) => {
                    v.push(x);
                    true
                }
                None if is_missing(cell) => {
                    v.push(f64::NAN);
                    true
                }
                None => parse_number(cell).map(|x| v.push(x)).is_some(),
            },
            Builder::Categorical(d, codes) => {
                codes.push(cache.code(cell, d));
                true
            }
        };
        if !ok {
            return Err(ChunkError::WrongType {
                column: ci,
                row,
                value: cell.to_vec(),
            });
        }
    }
    Ok(())
}

/// Where a line's scan stands.
#[derive(Default)]
struct LineState {
    /// Where the line starts.
    start: usize,
    /// Where the current field starts.
    field: usize,
    /// Fields ended so far.
    fields: usize,
    /// Inside a quoted field.
    in_quotes: bool,
    /// The content's end of the current field, closed quoted.
    quoted_end: Option<usize>,
}

enum Step {
    Continue,
    /// An empty line (or `\r` alone): the `csv` crate skips it.
    Blank,
    /// A record whose fields are in the spans.
    Record,
    /// Not a plain record: the general path reads from the line's start.
    Stop,
}

impl LineState {
    fn at(start: usize) -> Self {
        Self {
            start,
            field: start,
            ..Self::default()
        }
    }

    /// Take the delimiter, line end or quote at `p`.
    #[inline]
    fn step(&mut self, chunk: &[u8], p: usize, spans: &mut [(usize, usize)]) -> Step {
        let b = chunk[p];
        if self.in_quotes {
            match b {
                b'"' => match chunk.get(p + 1) {
                    // a `\r` is always followed by `\n` here
                    None | Some(b',' | b'\n' | b'\r') => {
                        self.in_quotes = false;
                        self.quoted_end = Some(p);
                        Step::Continue
                    }
                    // `""` (an escaped quote) or text after the closing quote
                    Some(_) => Step::Stop,
                },
                b'\n' => Step::Stop,
                _ => Step::Continue,
            }
        } else {
            match b {
                b'"' => {
                    // opens a quoted field only at the field's start; literal elsewhere
                    if p == self.field {
                        self.in_quotes = true;
                    }
                    Step::Continue
                }
                b',' => {
                    if !self.end_field(p, spans) {
                        return Step::Stop;
                    }
                    self.field = p + 1;
                    Step::Continue
                }
                _ => self.finish(chunk, p, spans),
            }
        }
    }

    /// End the current field at `end` (a delimiter or line end); false when the line has
    /// more fields than the header.
    #[inline]
    fn end_field(&mut self, end: usize, spans: &mut [(usize, usize)]) -> bool {
        let Some(slot) = spans.get_mut(self.fields) else {
            return false;
        };
        *slot = match self.quoted_end.take() {
            Some(q) => (self.field + 1, q),
            None => (self.field, end),
        };
        self.fields += 1;
        true
    }

    /// End the line at `p` (its `\n`, or the chunk's end).
    #[inline]
    fn finish(&mut self, chunk: &[u8], p: usize, spans: &mut [(usize, usize)]) -> Step {
        if self.in_quotes {
            return Step::Stop;
        }
        let end = if p > self.field && chunk[p - 1] == b'\r' {
            p - 1
        } else {
            p
        };
        if self.fields == 0 && self.quoted_end.is_none() && end == self.start {
            return Step::Blank;
        }
        if !self.end_field(end, spans) || self.fields != spans.len() {
            return Step::Stop;
        }
        Step::Record
    }
}

/// `[+-]?digits[.digits]` with at most 19 digits: `mantissa / 10^decimals` correctly rounded,
/// the value `str::parse` gives. Up to 2^53 and 22 decimals both are exact in `f64` and one
/// division rounds; above, [`ratio`]. Anything else is `None` (the general parse).
#[inline]
pub(super) fn simple_decimal(cell: &[u8]) -> Option<f64> {
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    // parse_number strips one `+`, then a sign may follow
    let cell = cell.strip_prefix(b"+").unwrap_or(cell);
    let (negative, digits) = match cell.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, cell),
    };
    let mut mantissa = 0u64;
    let mut count = 0u32;
    let mut decimals: Option<usize> = None;
    let mut digits = digits;
    loop {
        // eight digits at once when the next eight are digits (and fit: at most 19 in all)
        if count <= 11
            && let Some((eight, rest)) = digits.split_first_chunk::<8>()
            && let Some(v) = eight_digits(*eight)
        {
            mantissa = mantissa * 100_000_000 + v;
            count += 8;
            if let Some(d) = decimals.as_mut() {
                *d += 8;
            }
            digits = rest;
            continue;
        }
        let Some((&b, rest)) = digits.split_first() else {
            break;
        };
        match b {
            b'0'..=b'9' => {
                if count == 19 {
                    return None;
                }
                mantissa = mantissa * 10 + u64::from(b - b'0');
                count += 1;
                if let Some(d) = decimals.as_mut() {
                    *d += 1;
                }
            }
            b'.' if decimals.is_none() => decimals = Some(0),
            _ => return None,
        }
        digits = rest;
    }
    if count == 0 {
        return None;
    }
    let decimals = decimals.unwrap_or(0);
    let x = if mantissa <= 1 << 53 {
        #[allow(clippy::cast_precision_loss)] // at most 2^53: exact
        let m = mantissa as f64;
        m / *POW10.get(decimals)?
    } else {
        ratio(mantissa, decimals)?
    };
    Some(if negative { -x } else { x })
}

/// `n / 10^k` correctly rounded (to nearest, ties to even), for `2^53 < n < 2^64` and
/// `k <= 21`: a 128-bit division gives 55 or 56 bits of the quotient and the remainder, which
/// decide the rounding exactly.
#[inline]
fn ratio(n: u64, k: usize) -> Option<f64> {
    const POW10: [u128; 22] = {
        let mut table = [1u128; 22];
        let mut i = 1;
        while i < 22 {
            table[i] = table[i - 1] * 10;
            i += 1;
        }
        table
    };
    let n = u128::from(n);
    let d = *POW10.get(k)?;
    let bits = |x: u128| 128 - i64::from(x.leading_zeros());
    // n·2^s / d lies in [2^54, 2^56)
    let s = 55 - (bits(n) - bits(d));
    let (num, den) = if s >= 0 {
        let s = u32::try_from(s).ok()?;
        if n.leading_zeros() < s {
            return None;
        }
        (n << s, d)
    } else {
        (n, d << u32::try_from(-s).ok()?)
    };
    let (q, r) = (num / den, num % den);
    let shift = u32::try_from(bits(q) - 53).ok()?;
    let mut m = u64::try_from(q >> shift).ok()?;
    let rem = q & ((1 << shift) - 1);
    let half = 1u128 << (shift - 1);
    if rem > half || (rem == half && (r != 0 || m & 1 == 1)) {
        m += 1;
    }
    let mut e2 = i64::from(shift) - s;
    if m == 1 << 53 {
        m >>= 1;
        e2 += 1;
    }
    let scale = f64::from_bits(u64::try_from(e2 + 1023).ok()? << 52);
    #[allow(clippy::cast_precision_loss)] // below 2^53: exact
    Some(m as f64 * scale)
}

/// The value of eight ASCII digits, or `None` when one is not a digit (SWAR, as in
/// fast_float).
#[inline]
fn eight_digits(bytes: [u8; 8]) -> Option<u64> {
    let w = u64::from_le_bytes(bytes);
    let all_digits = (w & 0xF0F0_F0F0_F0F0_F0F0) == 0x3030_3030_3030_3030
        && (w.wrapping_add(0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0) == 0x3030_3030_3030_3030;
    if !all_digits {
        return None;
    }
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    const MUL1: u64 = 100 + (1_000_000 << 32);
    const MUL2: u64 = 1 + (10_000 << 32);
    let w = w - 0x3030_3030_3030_3030;
    let w = w.wrapping_mul(10) + (w >> 8);
    Some(((w & MASK).wrapping_mul(MUL1) + ((w >> 16) & MASK).wrapping_mul(MUL2)) >> 32)
}

/// The offsets of the delimiters, line ends and quotes of a chunk, in order: a bit mask per
/// 64 bytes, then its set bits (twice as fast as `memchr3_iter` on rows of short fields).
struct Tokens<'a> {
    blocks: std::slice::ChunksExact<'a, u8>,
    tail: &'a [u8],
    /// Offset of the block `mask` is of.
    base: usize,
    /// Offset of the next block.
    next: usize,
    mask: u64,
}

impl<'a> Tokens<'a> {
    fn new(chunk: &'a [u8]) -> Self {
        let blocks = chunk.chunks_exact(64);
        let tail = blocks.remainder();
        Self {
            blocks,
            tail,
            base: 0,
            next: 0,
            mask: 0,
        }
    }

    /// Bit `i` set when byte `i` of the block (at most 64 bytes) is a token. Eight bytes at a
    /// time: exact equal-byte masks, their high bits gathered by a multiplication.
    #[inline]
    fn mask_of(block: &[u8; 64]) -> u64 {
        const LO: u64 = 0x0101_0101_0101_0101;
        const HI: u64 = 0x8080_8080_8080_8080;
        let equal = |w: u64, b: u8| {
            let x = w ^ (LO * u64::from(b));
            !(((x & !HI).wrapping_add(!HI)) | x) & HI
        };
        let mut mask = 0u64;
        for (k, c) in block.as_chunks::<8>().0.iter().enumerate() {
            let w = u64::from_le_bytes(*c);
            let m = equal(w, b',') | equal(w, b'\n') | equal(w, b'"');
            mask |= ((m >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * k);
        }
        mask
    }
}

impl Iterator for Tokens<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        while self.mask == 0 {
            let (mask, len) = match self.blocks.next() {
                Some(block) => (Self::mask_of(block.try_into().ok()?), 64),
                None if !self.tail.is_empty() => {
                    // the last bytes, padded with zeros (not tokens)
                    let tail = std::mem::take(&mut self.tail);
                    let mut block = [0u8; 64];
                    block[..tail.len()].copy_from_slice(tail);
                    (Self::mask_of(&block), tail.len())
                }
                None => return None,
            };
            self.mask = mask;
            self.base = self.next;
            self.next += len;
        }
        let bit = self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        Some(self.base + bit)
    }
}

/// The codes of a categorical column's recent values, by their bytes in the chunk: a value
/// seen before costs a hash of a few words and a comparison, not a UTF-8 check and a SipHash
/// lookup. Direct-mapped, so a column of many distinct values only replaces entries.
struct CodeCache<'a> {
    slots: Vec<(&'a [u8], u32)>,
}

impl<'a> CodeCache<'a> {
    const BITS: u32 = 8;

    fn new() -> Self {
        Self {
            slots: vec![(&[][..], MISSING_CODE); 1 << Self::BITS],
        }
    }

    /// The code of a cell, `MISSING_CODE` for a missing one (never cached: the cache holds
    /// values only).
    #[inline]
    fn code(&mut self, cell: &'a [u8], dictionary: &mut Dictionary) -> u32 {
        let slot = Self::slot(cell);
        let (seen, code) = self.slots[slot];
        if !seen.is_empty() && seen == cell {
            return code;
        }
        if is_missing(cell) {
            return MISSING_CODE;
        }
        let code = match std::str::from_utf8(cell) {
            Ok(s) => dictionary.code(s),
            Err(_) => dictionary.code(&String::from_utf8_lossy(cell)),
        };
        self.slots[slot] = (cell, code);
        code
    }

    #[inline]
    fn slot(cell: &[u8]) -> usize {
        let word = |bytes: &[u8]| {
            let mut w = [0u8; 8];
            let n = bytes.len().min(8);
            w[..n].copy_from_slice(&bytes[..n]);
            u64::from_le_bytes(w)
        };
        let tail = &cell[cell.len().saturating_sub(8)..];
        let h = (word(cell) ^ word(tail).rotate_left(29) ^ cell.len() as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        usize::try_from(h >> (64 - Self::BITS)).unwrap_or(0)
    }
}
