//! From Arrow arrays to [`Column`]s: which Arrow types are read as which kind, and how each
//! decoded batch is appended to a numeric or categorical column.

use std::fmt::Write as _;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal32Type, Decimal64Type, Decimal128Type, Float16Type, Float32Type,
    Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrowPrimitiveType};
use arrow_schema::{DataType, TimeUnit};

use crate::drift::data::csv::{is_missing, parse_number};
use crate::drift::data::error::{DataError, Side};
use crate::drift::data::table::{CategoricalColumn, Column, ColumnKind, Dictionary, MISSING_CODE};

pub(super) fn is_numeric_type(t: &DataType) -> bool {
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

/// Timestamps and dates: read as seconds since the Unix epoch (a window's timestamp column),
/// never compared unless a feature names them.
pub(super) fn is_instant_type(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64
    )
}

/// Whether "every column" includes a column of this type: not instants (times always drift),
/// not nested or binary columns (nothing to compare).
pub(super) fn compared_by_default(t: &DataType) -> bool {
    !is_instant_type(t) && natural_kind(t).is_some()
}

/// The kind a column type gives, `None` when the type cannot be compared.
pub(super) fn natural_kind(t: &DataType) -> Option<ColumnKind> {
    match t {
        t if is_numeric_type(t) || is_instant_type(t) => Some(ColumnKind::Numerical),
        DataType::Null => Some(ColumnKind::Numerical),
        t if is_text_type(t) => Some(ColumnKind::Categorical),
        DataType::Dictionary(_, v) => natural_kind(v),
        _ => None,
    }
}

/// Where a batch comes from, for error messages.
pub(super) struct Ctx<'a> {
    pub(super) side: Side,
    pub(super) column: &'a str,
    /// Rows before this batch.
    pub(super) row0: u64,
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

/// One column being decoded, batch after batch.
pub(super) enum Sink {
    Numeric(Vec<f64>),
    Categorical(Dictionary, Vec<u32>),
}

impl Sink {
    pub(super) fn with_capacity(kind: ColumnKind, rows: usize) -> Self {
        match kind {
            ColumnKind::Numerical => Sink::Numeric(Vec::with_capacity(rows)),
            ColumnKind::Categorical => {
                Sink::Categorical(Dictionary::default(), Vec::with_capacity(rows))
            }
        }
    }

    pub(super) fn finish(self) -> Column {
        match self {
            Sink::Numeric(v) => Column::Numeric(v),
            Sink::Categorical(d, codes) => Column::Categorical(CategoricalColumn {
                categories: d.into_categories(),
                codes,
            }),
        }
    }

    pub(super) fn append(&mut self, a: &dyn Array, ctx: &Ctx) -> Result<(), DataError> {
        match self {
            Sink::Numeric(out) => append_numeric(a, out, ctx),
            Sink::Categorical(dict, codes) => append_categorical(a, dict, codes, ctx),
        }
    }
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

/// Integers as category names, exactly (no float round trip); nulls as missing.
fn push_integer_codes(a: &dyn Array, dict: &mut Dictionary, codes: &mut Vec<u32>) {
    let t = a.data_type();
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
            push_primitive::<Decimal32Type>(a, out, |x| f64::from(x) / scale);
        }
        DataType::Decimal64(_, s) => {
            let scale = 10f64.powi(i32::from(*s));
            push_primitive::<Decimal64Type>(a, out, |x| x as f64 / scale);
        }
        DataType::Decimal128(_, s) => {
            let scale = 10f64.powi(i32::from(*s));
            push_primitive::<Decimal128Type>(a, out, |x| x as f64 / scale);
        }
        DataType::Timestamp(unit, _) => {
            let per_second = match unit {
                TimeUnit::Second => 1.0,
                TimeUnit::Millisecond => 1e3,
                TimeUnit::Microsecond => 1e6,
                TimeUnit::Nanosecond => 1e9,
            };
            let seconds = |x: i64| x as f64 / per_second;
            match unit {
                TimeUnit::Second => push_primitive::<TimestampSecondType>(a, out, seconds),
                TimeUnit::Millisecond => {
                    push_primitive::<TimestampMillisecondType>(a, out, seconds)
                }
                TimeUnit::Microsecond => {
                    push_primitive::<TimestampMicrosecondType>(a, out, seconds)
                }
                TimeUnit::Nanosecond => push_primitive::<TimestampNanosecondType>(a, out, seconds),
            }
        }
        DataType::Date32 => push_primitive::<Date32Type>(a, out, |d| f64::from(d) * 86_400.0),
        DataType::Date64 => push_primitive::<Date64Type>(a, out, |ms| ms as f64 / 1e3),
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
        DataType::Dictionary(_, value_type) => append_numeric_dictionary(a, value_type, out, ctx)?,
        other => return Err(ctx.unsupported(other)),
    }
    Ok(())
}

/// A dictionary-encoded array read as numbers: each dictionary value is converted once, rows
/// map through the keys (null keys are NaN).
fn append_numeric_dictionary(
    a: &dyn Array,
    value_type: &DataType,
    out: &mut Vec<f64>,
    ctx: &Ctx,
) -> Result<(), DataError> {
    let Some(d) = a.as_any_dictionary_opt() else {
        return Err(ctx.unsupported(a.data_type()));
    };
    let values = d.values();
    let keys = d.keys();
    let idx = d.normalized_keys();
    if is_text_type(value_type) && *value_type != DataType::Boolean {
        // parse each dictionary value once; report the first row using a bad one
        let parsed = parse_dictionary_texts(values.as_ref(), value_type);
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
    Ok(())
}

/// Each text value of a dictionary as a number (NaN when missing), or the text itself when it
/// is not a number.
fn parse_dictionary_texts(values: &dyn Array, value_type: &DataType) -> Vec<Result<f64, String>> {
    let texts: Vec<Option<&str>> = match value_type {
        DataType::Utf8 => values.as_string::<i32>().iter().collect(),
        DataType::LargeUtf8 => values.as_string::<i64>().iter().collect(),
        _ => values.as_string_view().iter().collect(),
    };
    texts
        .into_iter()
        .map(|o| match o {
            None => Ok(f64::NAN),
            Some(s) => {
                let t = s.trim_ascii();
                if is_missing(t.as_bytes()) {
                    Ok(f64::NAN)
                } else {
                    parse_number(t.as_bytes()).ok_or_else(|| s.to_owned())
                }
            }
        })
        .collect()
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
        | DataType::UInt64 => push_integer_codes(a, dict, codes),
        t if is_numeric_type(t) => {
            let mut nums = Vec::with_capacity(a.len());
            append_numeric(a, &mut nums, ctx)?;
            push_number_codes(&nums, dict, codes);
        }
        DataType::Dictionary(..) => append_categorical_dictionary(a, dict, codes, ctx)?,
        other => return Err(ctx.unsupported(other)),
    }
    Ok(())
}

/// A dictionary-encoded array read as categories: the dictionary's values become our codes
/// once, rows map through the keys (null keys are missing).
fn append_categorical_dictionary(
    a: &dyn Array,
    dict: &mut Dictionary,
    codes: &mut Vec<u32>,
    ctx: &Ctx,
) -> Result<(), DataError> {
    let Some(d) = a.as_any_dictionary_opt() else {
        return Err(ctx.unsupported(a.data_type()));
    };
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
    Ok(())
}
