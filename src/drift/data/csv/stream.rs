//! Reading a CSV file block by block in bounded memory (the streaming check). A block ends at
//! the last line break outside quotes (a `"` toggles quoting, and an escaped `""` toggles it
//! twice), so no record is cut; each block is parsed by the in-memory reader with the header
//! in front, the column kinds fixed by the first block.

use std::io::Read;

use super::read_bytes_in;
use crate::drift::data::error::{DataError, Side};
use crate::drift::data::source::Payload;
use crate::drift::data::table::{ColumnRequest, Table};

/// Call `f` with every block of the requested columns, in file order; a block is about
/// `block_bytes` (more only while one record is longer).
pub(in crate::drift::data) fn for_each_batch(
    payload: &Payload,
    columns: &[ColumnRequest],
    side: Side,
    block_bytes: usize,
    f: &mut dyn FnMut(Table) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let uri = payload.uri();
    match payload {
        Payload::File { path, .. } => {
            let file = std::fs::File::open(path).map_err(|e| super::open_error(&e, side, uri))?;
            Blocks::new(file, uri, side, block_bytes).run(columns, f)
        }
        Payload::Bytes { bytes, .. } => {
            Blocks::new(&bytes[..], uri, side, block_bytes).run(columns, f)
        }
        Payload::Many { .. } => Err(crate::drift::data::many::not_a_file(payload, side)),
    }
}

struct Blocks<'a, R> {
    input: R,
    uri: &'a str,
    side: Side,
    block_bytes: usize,
    /// Bytes read and not yet parsed (the start of a record cut by the last read).
    pending: Vec<u8>,
    done: bool,
}

impl<'a, R: Read> Blocks<'a, R> {
    fn new(input: R, uri: &'a str, side: Side, block_bytes: usize) -> Self {
        Self {
            input,
            uri,
            side,
            block_bytes: block_bytes.max(1),
            pending: Vec::new(),
            done: false,
        }
    }

    fn run(
        mut self,
        columns: &[ColumnRequest],
        f: &mut dyn FnMut(Table) -> Result<(), DataError>,
    ) -> Result<(), DataError> {
        let header = self.header()?;
        let mut requests = columns.to_vec();
        let mut rows_before = 0u64;
        let mut first = true;
        while let Some(block) = self.next_block()? {
            if block.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let mut data = Vec::with_capacity(header.len() + block.len());
            data.extend_from_slice(&header);
            data.extend_from_slice(&block);
            drop(block);
            let table = read_bytes_in(&data, self.uri, &requests, self.side, None)
                .map_err(|e| with_row_offset(e, rows_before))?;
            if first {
                // later blocks are read with the kinds the first one showed
                for (r, c) in requests.iter_mut().zip(table.columns()) {
                    r.kind = Some(c.data.kind());
                }
                first = false;
            }
            rows_before += table.rows() as u64;
            f(table)?;
        }
        if first {
            return Err(DataError::Empty {
                side: self.side,
                uri: self.uri.to_owned(),
            });
        }
        Ok(())
    }

    /// The header line (with its line break), read off the front of the input.
    fn header(&mut self) -> Result<Vec<u8>, DataError> {
        loop {
            if let Some(end) = record_end(&self.pending, true) {
                let rest = self.pending.split_off(end);
                return Ok(std::mem::replace(&mut self.pending, rest));
            }
            if !self.fill()? {
                let mut line = std::mem::take(&mut self.pending);
                if line.is_empty() {
                    return Err(DataError::Empty {
                        side: self.side,
                        uri: self.uri.to_owned(),
                    });
                }
                line.push(b'\n');
                return Ok(line);
            }
        }
    }

    /// Read up to one block more into `pending`; false at the end of the input.
    fn fill(&mut self) -> Result<bool, DataError> {
        if self.done {
            return Ok(false);
        }
        let start = self.pending.len();
        self.pending.resize(start + self.block_bytes, 0);
        let mut filled = start;
        while filled < self.pending.len() {
            match self.input.read(&mut self.pending[filled..]) {
                Ok(0) => {
                    self.done = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(super::open_error(&e, self.side, self.uri)),
            }
        }
        self.pending.truncate(filled);
        Ok(filled > start)
    }

    /// The next run of whole records, `None` at the end.
    fn next_block(&mut self) -> Result<Option<Vec<u8>>, DataError> {
        loop {
            let more = self.fill()?;
            if !more {
                return Ok((!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending)));
            }
            if let Some(end) = record_end(&self.pending, false) {
                let rest = self.pending.split_off(end);
                return Ok(Some(std::mem::replace(&mut self.pending, rest)));
            }
        }
    }
}

/// The offset just past the first (`first`) or last line break outside quotes.
fn record_end(bytes: &[u8], first: bool) -> Option<usize> {
    let mut quoted = false;
    let mut end = None;
    for i in memchr::memchr2_iter(b'"', b'\n', bytes) {
        if bytes[i] == b'"' {
            quoted = !quoted;
        } else if !quoted {
            end = Some(i + 1);
            if first {
                break;
            }
        }
    }
    end
}

/// A block's error with its row counted from the start of the file.
fn with_row_offset(e: DataError, rows_before: u64) -> DataError {
    match e {
        DataError::WrongType {
            side,
            column,
            row,
            value,
        } => DataError::WrongType {
            side,
            column,
            row: row + rows_before,
            value,
        },
        DataError::Malformed { side, uri, detail } if rows_before > 0 => DataError::Malformed {
            side,
            uri,
            detail: format!("{detail} (in the block after row {rows_before})"),
        },
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::data::Column;

    fn collect(csv: &str, block: usize) -> Result<Vec<Table>, DataError> {
        let payload = Payload::from_bytes("t.csv", csv.as_bytes().to_vec());
        let columns = [ColumnRequest::new("x", None), ColumnRequest::new("c", None)];
        let mut out = Vec::new();
        for_each_batch(&payload, &columns, Side::Current, block, &mut |t| {
            out.push(t);
            Ok(())
        })?;
        Ok(out)
    }

    fn numbers(tables: &[Table]) -> Vec<f64> {
        tables
            .iter()
            .flat_map(|t| match t.column("x") {
                Some(Column::Numeric(v)) => v.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn blocks_never_cut_a_record_even_inside_quotes() {
        let mut csv = String::from("x,c\n");
        for i in 0..500 {
            csv.push_str(&format!("{i},\"a \"\"quoted\"\"\nline {i}\"\n"));
        }
        for block in [1, 7, 64, 1000, 1 << 20] {
            let tables = collect(&csv, block).unwrap();
            let want: Vec<f64> = (0..500).map(f64::from).collect();
            assert_eq!(numbers(&tables), want, "block {block}");
        }
    }

    #[test]
    fn row_numbers_of_errors_count_from_the_file_start() {
        let mut csv = String::from("x,c\n");
        for i in 0..100 {
            csv.push_str(&format!("{i},a\n"));
        }
        csv.push_str("oops,a\n");
        let e = collect(&csv, 64).unwrap_err();
        match e {
            DataError::WrongType { row, .. } => assert_eq!(row, 101),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn header_only_and_empty_inputs_are_empty() {
        assert!(matches!(collect("", 8), Err(DataError::Empty { .. })));
        assert!(matches!(collect("x,c\n", 8), Err(DataError::Empty { .. })));
        assert!(matches!(collect("x,c", 8), Err(DataError::Empty { .. })));
    }
}
