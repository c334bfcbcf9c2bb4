//! Reading Parquet written here with arrow: projection, kinds, type errors, parallel decoding.

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
    // "Every column" leaves the timestamp out: times always drift.
    assert_eq!(
        column_names(&p, Side::Reference).unwrap(),
        [
            "amount", "count", "f32", "channel", "city", "flag", "numtext"
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
    // Named (a window's timestamp column), an instant reads as seconds since the epoch.
    let t = read(&p, &req(&[("ts", None)]), Side::Current).unwrap();
    assert_eq!(
        t.column("ts").unwrap().as_numeric().unwrap(),
        &[1.0, 2.0, 3.0, 4.0, 5.0]
    );
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

/// Issue 20 point 13: dates and timestamps work as a window's timestamp column, and nested,
/// date or timestamp columns nobody asked for do not abort a run of every column.
#[test]
fn instants_are_seconds_and_unrequested_nested_columns_are_left_out() {
    use arrow_array::{Date32Array, StructArray};
    let nested = StructArray::from(vec![(
        Arc::new(arrow_schema::Field::new(
            "a",
            arrow_schema::DataType::Int64,
            false,
        )),
        Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
    )]);
    let bytes = write(
        vec![
            ("day", Arc::new(Date32Array::from(vec![0, 1])) as ArrayRef),
            ("nested", Arc::new(nested) as ArrayRef),
            (
                "amount",
                Arc::new(Float64Array::from(vec![1.0, 2.0])) as ArrayRef,
            ),
        ],
        2,
    );
    let p = Payload::from_bytes("mem.parquet", bytes);
    assert_eq!(column_names(&p, Side::Current).unwrap(), ["amount"]);
    let t = read(&p, &req(&[("day", None)]), Side::Current).unwrap();
    assert_eq!(
        t.column("day").unwrap().as_numeric().unwrap(),
        &[0.0, 86_400.0]
    );
    // A feature that names a nested column still gets a clear error.
    let e = read(&p, &req(&[("nested", None)]), Side::Current).unwrap_err();
    assert_eq!(e.reason(), crate::api::Reason::UnsupportedColumnType);
}
