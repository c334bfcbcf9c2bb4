//! Parquet reader: only the requested columns' chunks are decoded (projection), each worker
//! thread decoding its share of the columns with its own reader.

use std::fmt::Write as _;
use std::fs::File;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrowPrimitiveType};
use arrow_schema::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::file::reader::ChunkReader;

use super::csv::{is_missing, parse_number};
use super::error::{DataError, Side, one_line};
use super::source::Payload;
use super::table::{
    CategoricalColumn, Column, ColumnKind, ColumnRequest, Dictionary, MISSING_CODE, NamedColumn,
    Table,
};
use super::workers_for;

const BATCH_ROWS: usize = 64 * 1024;

fn open_file(path: &std::path::Path, side: Side, uri: &str) -> Result<File, DataError> {
    File::open(path).map_err(|e| {
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
                detail: one_line(&e.to_string()),
            }
        }
    })
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
    };
    result.map_err(|e| DataError::malformed(side, uri, e))
}

/// Top-level column names of a Parquet payload (reads only the footer).
pub(super) fn column_names(payload: &Payload, side: Side) -> Result<Vec<String>, DataError> {
    let meta = load_metadata(payload, side)?;
    Ok(meta
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect())
}

fn is_numeric_type(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
    )
}

fn is_text_type(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean
    )
}

/// The kind a column type gives, `None` when the type cannot be compared.
fn natural_kind(t: &DataType) -> Option<ColumnKind> {
    match t {
        t if is_numeric_type(t) => Some(ColumnKind::Numerical),
        DataType::Null => Some(ColumnKind::Numerical),
        t if is_text_type(t) => Some(ColumnKind::Categorical),
        DataType::Dictionary(_, v) => natural_kind(v),
        _ => None,
    }
}

#[derive(Clone, Debug)]
struct Target {
    /// Top-level field index in the file schema.
    field: usize,
    name: String,
    kind: ColumnKind,
}

/// Read the requested columns.
pub(super) fn read(
    payload: &Payload,
    columns: &[ColumnRequest],
    side: Side,
) -> Result<Table, DataError> {
    let uri = payload.uri();
    let meta = load_metadata(payload, side)?;
    let schema = meta.schema().clone();
    let mut targets = Vec::with_capacity(columns.len());
    for c in columns {
        let (field, f) = schema
            .fields()
            .iter()
            .enumerate()
            .find(|(_, f)| *f.name() == c.name)
            .ok_or_else(|| DataError::MissingColumn {
                column: c.name.clone(),
                side,
            })?;
        let unsupported = || DataError::UnsupportedType {
            side,
            column: c.name.clone(),
            data_type: f.data_type().to_string(),
        };
        let natural = natural_kind(f.data_type()).ok_or_else(unsupported)?;
        targets.push(Target {
            field,
            name: c.name.clone(),
            kind: c.kind.unwrap_or(natural),
        });
    }
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

    // Round-robin the columns over the workers; each worker decodes its columns with its own
    // reader (a `File` handle must not be shared: its offset is).
    let workers = workers_for(targets.len());
    let groups: Vec<Vec<usize>> = (0..workers)
        .map(|w| (w..targets.len()).step_by(workers).collect())
        .collect();
    let run = |group: &[usize]| -> Result<Vec<(usize, Column)>, DataError> {
        let mine: Vec<&Target> = group.iter().map(|&i| &targets[i]).collect();
        let cols = match payload {
            Payload::File { path, .. } => {
                read_group(open_file(path, side, uri)?, &meta, &mine, rows, side, uri)?
            }
            Payload::Bytes { bytes, .. } => {
                read_group(bytes.clone(), &meta, &mine, rows, side, uri)?
            }
        };
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
    let mut slots: Vec<Option<Column>> = vec![None; targets.len()];
    // Report the error of the first requested column that failed, whatever thread saw it.
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
    if let Some((_, e)) = first_error {
        return Err(e);
    }
    let mut out = Vec::with_capacity(targets.len());
    for (t, slot) in targets.iter().zip(slots) {
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
        .map(|t| match t.kind {
            ColumnKind::Numerical => Sink::Numeric(Vec::with_capacity(rows)),
            ColumnKind::Categorical => {
                Sink::Categorical(Dictionary::default(), Vec::with_capacity(rows))
            }
        })
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

struct Ctx<'a> {
    side: Side,
    column: &'a str,
    /// Rows before this batch.
    row0: u64,
}

impl Ctx<'_> {
    fn unsupported(&self, t: &DataType) -> DataError {
        DataError::UnsupportedType {
            side: self.side,
            column: self.column.to_owned(),
            data_type: t.to_string(),
        }
    }

    fn wrong_type(&self, i: usize, value: &str) -> DataError {
        DataError::wrong_type(
            self.side,
            self.column,
            self.row0 + i as u64 + 1,
            value.as_bytes(),
        )
    }
}

enum Sink {
    Numeric(Vec<f64>),
    Categorical(Dictionary, Vec<u32>),
}

fn push_primitive<T: ArrowPrimitiveType>(
    a: &dyn Array,
    out: &mut Vec<f64>,
    f: impl Fn(T::Native) -> f64,
) {
    let p = a.as_primitive::<T>();
    if p.null_count() == 0 {
        out.extend(p.values().iter().map(|&x| f(x)));
    } else {
        out.extend(p.iter().map(|o| o.map_or(f64::NAN, &f)));
    }
}

/// Text read as a number: missing tokens are NaN, anything else that is not a number is an
/// error at row `i` of the batch.
fn push_text_as_number<'a>(
    values: impl Iterator<Item = Option<&'a str>>,
    out: &mut Vec<f64>,
    ctx: &Ctx,
) -> Result<(), DataError> {
    for (i, o) in values.enumerate() {
        match o {
            None => out.push(f64::NAN),
            Some(s) => {
                let t = s.trim_ascii();
                if is_missing(t.as_bytes()) {
                    out.push(f64::NAN);
                } else {
                    match parse_number(t.as_bytes()) {
                        Some(x) => out.push(x),
                        None => return Err(ctx.wrong_type(i, s)),
                    }
                }
            }
        }
    }
    Ok(())
}

#[inline]
fn text_code(dict: &mut Dictionary, s: &str) -> u32 {
    let t = s.trim_ascii();
    if is_missing(t.as_bytes()) {
        MISSING_CODE
    } else {
        dict.code(t)
    }
}

fn push_text_codes<'a>(
    values: impl Iterator<Item = Option<&'a str>>,
    dict: &mut Dictionary,
    codes: &mut Vec<u32>,
) {
    codes.extend(values.map(|o| o.map_or(MISSING_CODE, |s| text_code(dict, s))));
}

/// Numbers as category names: integers as themselves, floats with Rust's shortest
/// round-trip formatting (`3.0` → `3`), NaN as missing.
fn push_number_codes(numbers: &[f64], dict: &mut Dictionary, codes: &mut Vec<u32>) {
    let mut buf = String::new();
    for &x in numbers {
        if x.is_nan() {
            codes.push(MISSING_CODE);
        } else {
            buf.clear();
            let _ = write!(buf, "{x}");
            codes.push(dict.code(&buf));
        }
    }
}

impl Sink {
    fn finish(self) -> Column {
        match self {
            Sink::Numeric(v) => Column::Numeric(v),
            Sink::Categorical(d, codes) => Column::Categorical(CategoricalColumn {
                categories: d.into_categories(),
                codes,
            }),
        }
    }

    fn append(&mut self, a: &dyn Array, ctx: &Ctx) -> Result<(), DataError> {
        match self {
            Sink::Numeric(out) => append_numeric(a, out, ctx),
            Sink::Categorical(dict, codes) => append_categorical(a, dict, codes, ctx),
        }
    }
}

fn append_numeric(a: &dyn Array, out: &mut Vec<f64>, ctx: &Ctx) -> Result<(), DataError> {
    let t = a.data_type();
    match t {
        DataType::Float64 => {
            let p = a.as_primitive::<Float64Type>();
            if p.null_count() == 0 {
                out.extend_from_slice(p.values());
            } else {
                out.extend(p.iter().map(|o| o.unwrap_or(f64::NAN)));
            }
        }
        DataType::Float32 => push_primitive::<Float32Type>(a, out, f64::from),
        DataType::Float16 => push_primitive::<Float16Type>(a, out, |x| x.to_f64()),
        DataType::Int8 => push_primitive::<Int8Type>(a, out, f64::from),
        DataType::Int16 => push_primitive::<Int16Type>(a, out, f64::from),
        DataType::Int32 => push_primitive::<Int32Type>(a, out, f64::from),
        DataType::Int64 => push_primitive::<Int64Type>(a, out, |x| x as f64),
        DataType::UInt8 => push_primitive::<UInt8Type>(a, out, f64::from),
        DataType::UInt16 => push_primitive::<UInt16Type>(a, out, f64::from),
        DataType::UInt32 => push_primitive::<UInt32Type>(a, out, f64::from),
        DataType::UInt64 => push_primitive::<UInt64Type>(a, out, |x| x as f64),
        DataType::Decimal32(_, s) => {
            let scale = 10f64.powi(i32::from(*s));
            push_primitive::<arrow_array::types::Decimal32Type>(a, out, |x| f64::from(x) / scale);
        }
        DataType::Decimal64(_, s) => {
            let scale = 10f64.powi(i32::from(*s));
            push_primitive::<arrow_array::types::Decimal64Type>(a, out, |x| x as f64 / scale);
        }
        DataType::Decimal128(_, s) => {
            let scale = 10f64.powi(i32::from(*s));
            push_primitive::<arrow_array::types::Decimal128Type>(a, out, |x| x as f64 / scale);
        }
        DataType::Boolean => {
            out.extend(
                a.as_boolean()
                    .iter()
                    .map(|o| o.map_or(f64::NAN, |b| if b { 1.0 } else { 0.0 })),
            );
        }
        DataType::Utf8 => push_text_as_number(a.as_string::<i32>().iter(), out, ctx)?,
        DataType::LargeUtf8 => push_text_as_number(a.as_string::<i64>().iter(), out, ctx)?,
        DataType::Utf8View => push_text_as_number(a.as_string_view().iter(), out, ctx)?,
        DataType::Null => out.extend(std::iter::repeat_n(f64::NAN, a.len())),
        DataType::Dictionary(_, value_type) => {
            let Some(d) = a.as_any_dictionary_opt() else {
                return Err(ctx.unsupported(t));
            };
            let values = d.values();
            let keys = d.keys();
            let idx = d.normalized_keys();
            if is_text_type(value_type) && **value_type != DataType::Boolean {
                // parse each dictionary value once; report the first row using a bad one
                let mut parsed: Vec<Result<f64, String>> = Vec::with_capacity(values.len());
                let texts: Vec<Option<&str>> = match value_type.as_ref() {
                    DataType::Utf8 => values.as_string::<i32>().iter().collect(),
                    DataType::LargeUtf8 => values.as_string::<i64>().iter().collect(),
                    _ => values.as_string_view().iter().collect(),
                };
                for o in texts {
                    parsed.push(match o {
                        None => Ok(f64::NAN),
                        Some(s) => {
                            let t = s.trim_ascii();
                            if is_missing(t.as_bytes()) {
                                Ok(f64::NAN)
                            } else {
                                parse_number(t.as_bytes()).ok_or_else(|| s.to_owned())
                            }
                        }
                    });
                }
                for (i, &k) in idx.iter().enumerate() {
                    if keys.is_null(i) {
                        out.push(f64::NAN);
                        continue;
                    }
                    match parsed.get(k) {
                        Some(Ok(x)) => out.push(*x),
                        Some(Err(s)) => return Err(ctx.wrong_type(i, s)),
                        None => out.push(f64::NAN),
                    }
                }
            } else {
                let mut vals = Vec::with_capacity(values.len());
                append_numeric(values.as_ref(), &mut vals, ctx)?;
                out.extend(idx.iter().enumerate().map(|(i, &k)| {
                    if keys.is_null(i) {
                        f64::NAN
                    } else {
                        vals.get(k).copied().unwrap_or(f64::NAN)
                    }
                }));
            }
        }
        other => return Err(ctx.unsupported(other)),
    }
    Ok(())
}

fn append_categorical(
    a: &dyn Array,
    dict: &mut Dictionary,
    codes: &mut Vec<u32>,
    ctx: &Ctx,
) -> Result<(), DataError> {
    let t = a.data_type();
    match t {
        DataType::Utf8 => push_text_codes(a.as_string::<i32>().iter(), dict, codes),
        DataType::LargeUtf8 => push_text_codes(a.as_string::<i64>().iter(), dict, codes),
        DataType::Utf8View => push_text_codes(a.as_string_view().iter(), dict, codes),
        DataType::Boolean => {
            let (f, tr) = (dict.code("false"), dict.code("true"));
            codes.extend(
                a.as_boolean()
                    .iter()
                    .map(|o| o.map_or(MISSING_CODE, |b| if b { tr } else { f })),
            );
        }
        DataType::Null => codes.extend(std::iter::repeat_n(MISSING_CODE, a.len())),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => {
            // integers: exact text, no float round trip
            let mut buf = String::new();
            for i in 0..a.len() {
                if a.is_null(i) {
                    codes.push(MISSING_CODE);
                    continue;
                }
                buf.clear();
                let _ = match t {
                    DataType::Int8 => write!(buf, "{}", a.as_primitive::<Int8Type>().value(i)),
                    DataType::Int16 => write!(buf, "{}", a.as_primitive::<Int16Type>().value(i)),
                    DataType::Int32 => write!(buf, "{}", a.as_primitive::<Int32Type>().value(i)),
                    DataType::Int64 => write!(buf, "{}", a.as_primitive::<Int64Type>().value(i)),
                    DataType::UInt8 => write!(buf, "{}", a.as_primitive::<UInt8Type>().value(i)),
                    DataType::UInt16 => write!(buf, "{}", a.as_primitive::<UInt16Type>().value(i)),
                    DataType::UInt32 => write!(buf, "{}", a.as_primitive::<UInt32Type>().value(i)),
                    _ => write!(buf, "{}", a.as_primitive::<UInt64Type>().value(i)),
                };
                codes.push(dict.code(&buf));
            }
        }
        t if is_numeric_type(t) => {
            let mut nums = Vec::with_capacity(a.len());
            append_numeric(a, &mut nums, ctx)?;
            push_number_codes(&nums, dict, codes);
        }
        DataType::Dictionary(..) => {
            let Some(d) = a.as_any_dictionary_opt() else {
                return Err(ctx.unsupported(t));
            };
            // the dictionary's values become our codes once; rows map through the keys
            let mut value_codes = Vec::with_capacity(d.values().len());
            append_categorical(d.values().as_ref(), dict, &mut value_codes, ctx)?;
            let keys = d.keys();
            codes.extend(d.normalized_keys().iter().enumerate().map(|(i, &k)| {
                if keys.is_null(i) {
                    MISSING_CODE
                } else {
                    value_codes.get(k).copied().unwrap_or(MISSING_CODE)
                }
            }));
        }
        other => return Err(ctx.unsupported(other)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::StringDictionaryBuilder;
    use arrow_array::types::Int32Type;
    use arrow_array::{
        ArrayRef, BooleanArray, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray,
        TimestampSecondArray,
    };
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    use super::*;

    fn write(columns: Vec<(&str, ArrayRef)>, row_group: usize) -> bytes::Bytes {
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let mut buf = Vec::new();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(row_group))
            .build();
        let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        bytes::Bytes::from(buf)
    }

    fn req(cols: &[(&str, Option<ColumnKind>)]) -> Vec<ColumnRequest> {
        cols.iter()
            .map(|(n, k)| ColumnRequest::new(*n, *k))
            .collect()
    }

    fn sample() -> Payload {
        let mut dict = StringDictionaryBuilder::<Int32Type>::new();
        for v in [Some("web"), Some("pos"), None, Some("web"), Some("atm")] {
            match v {
                Some(s) => {
                    dict.append_value(s);
                }
                None => dict.append_null(),
            }
        }
        let bytes = write(
            vec![
                (
                    "amount",
                    Arc::new(Float64Array::from(vec![
                        Some(1.5),
                        None,
                        Some(f64::NAN),
                        Some(4.0),
                        Some(5.0),
                    ])) as ArrayRef,
                ),
                (
                    "count",
                    Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5])) as ArrayRef,
                ),
                (
                    "f32",
                    Arc::new(Float32Array::from(vec![0.5f32, 1.0, 2.0, 3.0, 4.0])) as ArrayRef,
                ),
                ("channel", Arc::new(dict.finish()) as ArrayRef),
                (
                    "city",
                    Arc::new(StringArray::from(vec![
                        Some("a"),
                        Some("b"),
                        Some(""),
                        None,
                        Some("a"),
                    ])) as ArrayRef,
                ),
                (
                    "flag",
                    Arc::new(BooleanArray::from(vec![true, false, true, true, false])) as ArrayRef,
                ),
                (
                    "numtext",
                    Arc::new(StringArray::from(vec!["1", "2", "NaN", "x", "5"])) as ArrayRef,
                ),
                (
                    "ts",
                    Arc::new(TimestampSecondArray::from(vec![1, 2, 3, 4, 5])) as ArrayRef,
                ),
            ],
            2,
        );
        Payload::from_bytes("mem.parquet", bytes)
    }

    #[test]
    fn reads_projected_columns_with_natural_kinds() {
        let p = sample();
        let t = read(
            &p,
            &req(&[
                ("channel", None),
                ("amount", None),
                ("count", None),
                ("f32", None),
                ("city", None),
                ("flag", None),
            ]),
            Side::Reference,
        )
        .unwrap();
        assert_eq!(t.rows(), 5);
        let names: Vec<&str> = t.columns().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["channel", "amount", "count", "f32", "city", "flag"]);
        let a = t.column("amount").unwrap().as_numeric().unwrap();
        assert_eq!((a[0], a[3], a[4]), (1.5, 4.0, 5.0));
        assert!(a[1].is_nan() && a[2].is_nan());
        assert_eq!(
            t.column("count").unwrap().as_numeric().unwrap(),
            &[1.0, 2.0, 3.0, 4.0, 5.0]
        );
        assert_eq!(t.column("f32").unwrap().as_numeric().unwrap()[0], 0.5);
        let ch = t.column("channel").unwrap().as_categorical().unwrap();
        assert_eq!(
            (0..5).map(|i| ch.value(i)).collect::<Vec<_>>(),
            [Some("web"), Some("pos"), None, Some("web"), Some("atm")]
        );
        let city = t.column("city").unwrap();
        assert_eq!(city.missing(), 2); // "" and null
        let flag = t.column("flag").unwrap().as_categorical().unwrap();
        assert_eq!(flag.value(1), Some("false"));
        assert_eq!(
            column_names(&p, Side::Reference).unwrap(),
            [
                "amount", "count", "f32", "channel", "city", "flag", "numtext", "ts"
            ]
        );
    }

    #[test]
    fn forced_kinds_and_type_errors() {
        let p = sample();
        let t = read(
            &p,
            &req(&[("count", Some(ColumnKind::Categorical))]),
            Side::Current,
        )
        .unwrap();
        assert_eq!(
            t.column("count")
                .unwrap()
                .as_categorical()
                .unwrap()
                .value(2),
            Some("3")
        );
        let t = read(
            &p,
            &req(&[("amount", Some(ColumnKind::Categorical))]),
            Side::Current,
        )
        .unwrap();
        let a = t.column("amount").unwrap().as_categorical().unwrap();
        assert_eq!(
            (a.value(0), a.value(1), a.value(3)),
            (Some("1.5"), None, Some("4"))
        );
        let e = read(
            &p,
            &req(&[("numtext", Some(ColumnKind::Numerical))]),
            Side::Current,
        )
        .unwrap_err();
        // row 4, in the second row group (2 rows per group): global numbering
        assert_eq!(
            e,
            DataError::WrongType {
                side: Side::Current,
                column: "numtext".into(),
                row: 4,
                value: "x".into()
            }
        );
        let e = read(&p, &req(&[("ts", None)]), Side::Current).unwrap_err();
        assert_eq!(e.reason(), crate::api::Reason::UnsupportedColumnType);
        let e = read(&p, &req(&[("nope", None)]), Side::Current).unwrap_err();
        assert_eq!(
            e,
            DataError::MissingColumn {
                column: "nope".into(),
                side: Side::Current
            }
        );
    }

    #[test]
    fn dictionary_of_numbers_text_forced_numeric() {
        let mut dict = StringDictionaryBuilder::<Int32Type>::new();
        for s in ["1.5", "2", "1.5", "oops"] {
            dict.append_value(s);
        }
        let p = Payload::from_bytes(
            "d.parquet",
            write(vec![("x", Arc::new(dict.finish()) as ArrayRef)], 1024),
        );
        let e = read(
            &p,
            &req(&[("x", Some(ColumnKind::Numerical))]),
            Side::Current,
        )
        .unwrap_err();
        assert!(matches!(e, DataError::WrongType { row: 4, .. }), "{e:?}");
    }

    #[test]
    fn malformed_and_empty() {
        let e = read(
            &Payload::from_bytes("x.parquet", &b"not parquet at all"[..]),
            &req(&[("a", None)]),
            Side::Reference,
        )
        .unwrap_err();
        assert_eq!(e.reason(), crate::api::Reason::MalformedData);
        let e = read(
            &Payload::from_bytes("x.parquet", Vec::new()),
            &req(&[("a", None)]),
            Side::Reference,
        )
        .unwrap_err();
        assert_eq!(e.reason(), crate::api::Reason::EmptyData);
        let empty = write(
            vec![(
                "a",
                Arc::new(Float64Array::from(Vec::<f64>::new())) as ArrayRef,
            )],
            10,
        );
        let e = read(
            &Payload::from_bytes("e.parquet", empty),
            &req(&[("a", None)]),
            Side::Reference,
        )
        .unwrap_err();
        assert_eq!(e.reason(), crate::api::Reason::EmptyData);
    }

    #[test]
    fn large_file_from_disk_in_parallel() {
        let n = 300_000;
        let a: Vec<f64> = (0..n).map(|i| i as f64 * 0.5).collect();
        let cats: Vec<&str> = (0..n).map(|i| ["x", "y", "z"][i % 3]).collect();
        let bytes = write(
            vec![
                ("a", Arc::new(Float64Array::from(a.clone())) as ArrayRef),
                ("c", Arc::new(StringArray::from(cats)) as ArrayRef),
                (
                    "b",
                    Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())) as ArrayRef,
                ),
            ],
            100_000,
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.parquet");
        std::fs::write(&path, &bytes).unwrap();
        let t = read(
            &Payload::from_path(&path),
            &req(&[("b", None), ("a", None), ("c", None)]),
            Side::Current,
        )
        .unwrap();
        assert_eq!(t.rows(), n);
        assert_eq!(t.column("a").unwrap().as_numeric().unwrap(), &a[..]);
        let c = t.column("c").unwrap().as_categorical().unwrap();
        assert!((0..n).all(|i| c.value(i) == Some(["x", "y", "z"][i % 3])));
        assert_eq!(
            t.column("b").unwrap().as_numeric().unwrap()[n - 1],
            (n - 1) as f64
        );
    }
}
