//! Line-aligned chunks of a CSV body for the parallel parse, cut only at newlines that end a
//! record as the `csv` crate reads it.
//!
//! Whether a newline ends a record depends on the quoting, which this module follows with the
//! same rules as `csv-core` (RFC 4180 with `""` as an escaped quote): a `"` opens a quoted
//! field only at the start of a field; inside an unquoted field (`5"`, `a"b`) it is a literal
//! byte; after a closing quote, anything but `"`, `,` or a line end continues the field
//! unquoted. Counting quotes instead (every `"` toggles) gets `a"b,"x⏎y"` wrong: the stray
//! quote flips the count and the newline inside the quoted field looks like a line end.

/// Below this many body bytes a file is parsed in one piece.
pub(super) const MIN_PARALLEL_BYTES: usize = 1 << 20;

/// Where the scan stands relative to the `csv` crate's quoting.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Quoting {
    /// At the start of a field (or of a record).
    FieldStart,
    /// Inside a field that did not start with a quote: `"` is a literal byte.
    Unquoted,
    /// Inside a quoted field: a newline here belongs to the field.
    Quoted,
    /// Just after a `"` inside a quoted field: `"` again is an escaped quote, a delimiter or
    /// line end closes the field, anything else continues it unquoted.
    QuoteInQuoted,
}

impl Quoting {
    /// The state after `b`, or `None` when `b` is a newline inside a quoted field.
    #[inline]
    fn step(self, b: u8) -> Option<Quoting> {
        Some(match (self, b) {
            (Quoting::Quoted, b'\n') => return None,
            (Quoting::Quoted, b'"') => Quoting::QuoteInQuoted,
            (Quoting::Quoted, _) => Quoting::Quoted,
            (Quoting::FieldStart | Quoting::QuoteInQuoted, b'"') => Quoting::Quoted,
            (_, b',' | b'\n' | b'\r') => Quoting::FieldStart,
            _ => Quoting::Unquoted,
        })
    }

    /// The state after `bytes`, which hold no `"`, or `None` when one of them is a newline
    /// inside a quoted field.
    #[inline]
    fn after_quoteless(self, bytes: &[u8], has_newline: bool) -> Option<Quoting> {
        if self == Quoting::Quoted {
            return if has_newline { None } else { Some(self) };
        }
        // outside quotes, every byte without a quote leads to one of two states, and the
        // last byte decides which
        Some(match bytes.last() {
            Some(b',' | b'\n' | b'\r') => Quoting::FieldStart,
            Some(_) => Quoting::Unquoted,
            None => self,
        })
    }
}

/// Whether some newline sits inside a quoted field (then lines are not records). Eight bytes
/// at a time: a word without a quote only moves the state by its last byte, or ends the scan
/// when it holds a newline inside a quoted field.
pub(super) fn newline_inside_quotes(body: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let has = |w: u64, b: u8| {
        let x = w ^ (LO * u64::from(b));
        x.wrapping_sub(LO) & !x & HI != 0
    };
    let bytewise = |bytes: &[u8], mut state: Quoting| {
        for &b in bytes {
            state = state.step(b)?;
        }
        Some(state)
    };
    let mut state = Quoting::FieldStart;
    let mut words = body.chunks_exact(8);
    for c in &mut words {
        let Ok(bytes) = <[u8; 8]>::try_from(c) else {
            continue;
        };
        let w = u64::from_le_bytes(bytes);
        let next = if has(w, b'"') {
            bytewise(c, state)
        } else {
            state.after_quoteless(c, has(w, b'\n'))
        };
        match next {
            Some(s) => state = s,
            None => return true,
        }
    }
    bytewise(words.remainder(), state).is_none()
}

/// Split the body into line-aligned chunks, one per worker, when it is large and no quoted
/// field spans lines.
#[cfg(test)]
pub(super) fn split_chunks(body: &[u8]) -> Vec<&[u8]> {
    split_chunks_for(
        body,
        super::super::workers_for(body.len() / MIN_PARALLEL_BYTES),
    )
}

/// Split the body into at most `workers` line-aligned chunks (one when a quoted field spans
/// lines).
pub(super) fn split_chunks_for(body: &[u8], workers: usize) -> Vec<&[u8]> {
    if workers <= 1 || (body.contains(&b'"') && newline_inside_quotes(body)) {
        return vec![body];
    }
    line_chunks(body, workers)
}

/// Split the body into at most `workers` chunks (at least one), each cut just after a
/// newline, whether or not that newline ends a record (the fast path finds out).
pub(super) fn line_chunks(body: &[u8], workers: usize) -> Vec<&[u8]> {
    let workers = workers.max(1);
    let mut chunks = Vec::with_capacity(workers);
    let mut start = 0;
    for k in 1..workers {
        let target = (body.len() * k / workers).max(start);
        let Some(nl) = memchr::memchr(b'\n', &body[target..]) else {
            break;
        };
        let end = target + nl + 1;
        chunks.push(&body[start..end]);
        start = end;
    }
    chunks.push(&body[start..]);
    chunks
}
