//! Reading a Parquet file batch by batch in bounded memory (the streaming check): one reader
//! over all row groups, each batch of [`BATCH_ROWS`] rows handed over as a [`Table`].

use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::ChunkReader;

use super::columns::{Ctx, Sink};
use super::{BATCH_ROWS, Target, contained, load_metadata, open_file, resolve_targets};
use crate::drift::data::error::{DataError, Side};
use crate::drift::data::source::Payload;
use crate::drift::data::table::{ColumnRequest, NamedColumn, Table};

/// Call `f` with every batch of the requested columns, in file order.
pub(in crate::drift::data) fn for_each_batch(
    payload: &Payload,
    columns: &[ColumnRequest],
    side: Side,
    f: &mut dyn FnMut(Table) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let uri = payload.uri();
    contained(side, uri, || {
        let meta = load_metadata(payload, side)?;
        let targets = resolve_targets(&meta, columns, side)?;
        let meta = super::with_dictionary_strings(meta);
        match payload {
            Payload::File { path, .. } => {
                stream(open_file(path, side, uri)?, &meta, &targets, side, uri, f)
            }
            Payload::Bytes { bytes, .. } => stream(bytes.clone(), &meta, &targets, side, uri, f),
            Payload::Many { .. } => Err(crate::drift::data::many::not_a_file(payload, side)),
        }
    })
}

fn stream<R: ChunkReader + 'static>(
    reader: R,
    meta: &parquet::arrow::arrow_reader::ArrowReaderMetadata,
    targets: &[Target],
    side: Side,
    uri: &str,
    f: &mut dyn FnMut(Table) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let mask = ProjectionMask::roots(meta.parquet_schema(), targets.iter().map(|t| t.field));
    let batches = ParquetRecordBatchReaderBuilder::new_with_metadata(reader, meta.clone())
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| DataError::malformed(side, uri, e))?;
    let mut row0 = 0u64;
    for batch in batches {
        let batch = batch.map_err(|e| DataError::malformed(side, uri, e))?;
        let rows = batch.num_rows();
        let mut out = Vec::with_capacity(targets.len());
        for t in targets {
            let array = batch.column_by_name(&t.name).ok_or_else(|| {
                DataError::malformed(side, uri, format!("column '{}' not decoded", t.name))
            })?;
            let mut sink = Sink::with_capacity(t.kind, rows);
            let ctx = Ctx {
                side,
                column: &t.name,
                row0,
            };
            sink.append(array.as_ref(), &ctx)?;
            out.push(NamedColumn {
                name: t.name.clone(),
                data: sink.finish(),
            });
        }
        row0 += rows as u64;
        f(Table::new(rows, out))?;
    }
    Ok(())
}
