//! Listing and choosing the files of a collection, and reading them as one dataset: local
//! directories of files with crafted names (capture windows, plain names with a modification
//! time), globs, lastRows and lastDuration.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;

use super::*;
use crate::drift::data::policy::{DataSourcePolicy, LocalFiles};
use crate::drift::data::{ColumnRequest, column_names, read_table};
use crate::storage::layout::window_file_name;

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// A capture window: `rows` rows whose `x` runs from `first`, named per the layout.
fn window(dir: &Path, start: &str, pod: &str, first: i64, rows: i64) -> PathBuf {
    let path = dir.join(window_file_name(at(start), pod, 0));
    let xs: Vec<f64> = (first..first + rows).map(|v| v as f64).collect();
    let ids: Vec<String> = (first..first + rows).map(|v| format!("r{v}")).collect();
    let batch = RecordBatch::try_from_iter([
        ("request_id", Arc::new(StringArray::from(ids)) as ArrayRef),
        (
            "timestamp",
            Arc::new(Int64Array::from(vec![0i64; xs.len()])) as ArrayRef,
        ),
        ("x", Arc::new(Float64Array::from(xs)) as ArrayRef),
    ])
    .unwrap();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    path
}

fn listed(name: &str, time: &str) -> Listed {
    Listed {
        location: format!("/d/{name}"),
        name: name.into(),
        size: 10,
        time: at(time),
        format: DataFormat::Parquet,
    }
}

fn collection(uri: &str, selection: FileSelection, now: &str) -> Collection<'static> {
    Collection {
        uri: Box::leak(uri.to_owned().into_boxed_str()),
        explicit: None,
        selection,
        now: at(now),
        side: Side::Current,
    }
}

/// The `x` values of the dataset the collection reads.
fn xs(payload: &Payload) -> Vec<f64> {
    let table = read_table(
        payload,
        DataFormat::Parquet,
        &[ColumnRequest::new("x", None)],
        Side::Current,
    )
    .unwrap();
    table.column("x").unwrap().as_numeric().unwrap().to_vec()
}

#[test]
fn globs_match_names() {
    for (pattern, name, matches) in [
        ("*.parquet", "20261201T221500123Z_pod_000001.parquet", true),
        ("*.parquet", "x.csv", false),
        ("2026120?T*", "20261201T221500123Z_a.parquet", true),
        ("2026120?T*", "20261211T221500123Z_a.parquet", false),
        (
            "*_pod-a_*",
            "20261201T221500123Z_pod-a_000001.parquet",
            true,
        ),
        ("a*b*c", "abxxbyc", true),
        ("a*b*c", "abxxbyd", false),
        ("*", "", true),
        ("?", "", false),
    ] {
        assert_eq!(glob_match(pattern, name), matches, "{pattern} {name}");
    }
    assert!(is_glob("*.csv") && !is_glob("data.csv"));
}

#[test]
fn data_files_are_chosen_by_name() {
    assert_eq!(data_file_format("a.CSV", None), Some(DataFormat::Csv));
    assert_eq!(data_file_format("a.pq", None), Some(DataFormat::Parquet));
    assert_eq!(data_file_format("notes.txt", None), None);
    assert_eq!(data_file_format("_SUCCESS", None), None);
    assert_eq!(data_file_format(".a.parquet.crc", None), None);
    assert_eq!(
        data_file_format("part-0000", Some(DataFormat::Parquet)),
        Some(DataFormat::Parquet)
    );
    assert_eq!(data_file_format("_SUCCESS", Some(DataFormat::Csv)), None);
}

#[test]
fn a_file_time_is_its_window_start_else_its_modification_time() {
    assert_eq!(
        file_time("20261201T221500123Z_m-stable-x_000003.parquet", 0),
        at("2026-12-01T22:15:00.123Z")
    );
    let modified = at("2026-11-30T10:00:00Z").as_millisecond();
    assert_eq!(
        file_time("export.parquet", modified),
        at("2026-11-30T10:00:00Z")
    );
    assert_eq!(
        file_time("99999999T999999999Z_x.csv", modified),
        at("2026-11-30T10:00:00Z")
    );
}

#[test]
fn selection_orders_by_time_and_keeps_the_last_duration() {
    let files = vec![
        listed("c", "2026-12-01T11:50:00Z"),
        listed("a", "2026-12-01T10:00:00Z"),
        listed("b2", "2026-12-01T11:00:00Z"),
        listed("b1", "2026-12-01T11:00:00Z"),
    ];
    let names = |fs: &[Listed]| fs.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
    let now = at("2026-12-01T12:00:00Z");
    let all = select(files.clone(), &FileSelection::default(), now);
    assert_eq!(names(&all), ["a", "b1", "b2", "c"]);
    let hour = FileSelection {
        last_duration: Some(Duration::from_secs(3600)),
        ..FileSelection::default()
    };
    assert_eq!(names(&select(files.clone(), &hour, now)), ["b1", "b2", "c"]);
    let minutes = FileSelection {
        last_duration: Some(Duration::from_secs(600)),
        ..FileSelection::default()
    };
    assert_eq!(names(&select(files, &minutes, now)), ["c"]);
}

#[test]
fn the_newest_files_that_hold_the_last_rows() {
    assert_eq!(newest_files_for_rows(&[100, 100, 100], 150), 2);
    assert_eq!(newest_files_for_rows(&[100, 100, 100], 100), 1);
    assert_eq!(newest_files_for_rows(&[100, 100, 100], 1), 1);
    assert_eq!(newest_files_for_rows(&[100, 100], 1000), 2);
    assert_eq!(newest_files_for_rows(&[], 5), 0);
    assert_eq!(newest_files_for_rows(&[0, 0, 7], 5), 3);
}

/// Three capture windows of two pods, a CSV export whose name carries no time (its
/// modification time counts), and files that are not data.
fn capture_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    window(dir.path(), "2026-12-01T10:00:00Z", "m-stable-a", 0, 100);
    window(dir.path(), "2026-12-01T11:00:00Z", "m-stable-b", 100, 100);
    window(dir.path(), "2026-12-01T11:30:00Z", "m-stable-a", 200, 100);
    std::fs::write(dir.path().join("_SUCCESS"), "").unwrap();
    std::fs::write(dir.path().join("README.txt"), "not data").unwrap();
    std::fs::create_dir(dir.path().join("older")).unwrap();
    window(
        &dir.path().join("older"),
        "2026-11-01T00:00:00Z",
        "m-stable-a",
        900,
        5,
    );
    dir
}

#[test]
fn a_directory_is_one_dataset_oldest_first() {
    let dir = capture_dir();
    let uri = dir.path().display().to_string();
    let ctx = FetchContext::new();
    let c = collection(&uri, FileSelection::default(), "2026-12-01T12:00:00Z");
    let payload = fetch_local(&ctx, dir.path(), &c).unwrap();
    let Payload::Many { parts, .. } = &payload else {
        panic!("{payload:?}")
    };
    assert_eq!(
        parts.len(),
        3,
        "subdirectories and non-data files are skipped"
    );
    let values = xs(&payload);
    assert_eq!(values.len(), 300);
    assert_eq!(values, (0..300).map(f64::from).collect::<Vec<_>>());
    let names = column_names(&payload, DataFormat::Parquet, Side::Current).unwrap();
    assert_eq!(names, ["request_id", "timestamp", "x"]);
}

#[test]
fn last_rows_reads_the_newest_files_only_and_cuts_the_oldest_of_them() {
    let dir = capture_dir();
    let uri = dir.path().display().to_string();
    let ctx = FetchContext::new();
    let selection = FileSelection {
        last_rows: Some(150),
        ..FileSelection::default()
    };
    let c = collection(&uri, selection, "2026-12-01T12:00:00Z");
    let payload = fetch_local(&ctx, dir.path(), &c).unwrap();
    let Payload::Many { parts, .. } = &payload else {
        panic!("{payload:?}")
    };
    assert_eq!(parts.len(), 2, "the oldest window is not needed");
    assert_eq!(xs(&payload), (150..300).map(f64::from).collect::<Vec<_>>());
    // More rows than there are: all of them.
    let selection = FileSelection {
        last_rows: Some(10_000),
        ..FileSelection::default()
    };
    let payload = fetch_local(
        &ctx,
        dir.path(),
        &collection(&uri, selection, "2026-12-01T12:00:00Z"),
    )
    .unwrap();
    assert_eq!(xs(&payload).len(), 300);
}

#[test]
fn last_duration_keeps_the_files_of_the_window() {
    let dir = capture_dir();
    let uri = dir.path().display().to_string();
    let ctx = FetchContext::new();
    let hour = FileSelection {
        last_duration: Some(Duration::from_secs(3600)),
        ..FileSelection::default()
    };
    let payload = fetch_local(
        &ctx,
        dir.path(),
        &collection(&uri, hour, "2026-12-01T12:00:00Z"),
    )
    .unwrap();
    assert_eq!(xs(&payload), (100..300).map(f64::from).collect::<Vec<_>>());
    // Nothing that new: a named error, not an empty dataset.
    let e = fetch_local(
        &ctx,
        dir.path(),
        &collection(&uri, hour, "2026-12-02T12:00:00Z"),
    )
    .unwrap_err();
    assert_eq!(e.reason(), crate::api::Reason::DataNotFound, "{e}");
    assert!(
        e.to_string()
            .contains("no CSV or Parquet files newer than 1h"),
        "{e}"
    );
}

#[test]
fn a_glob_and_modification_times_for_names_without_a_time() {
    let dir = capture_dir();
    // A CSV export written "now" by its modification time, newer than every window.
    let export = dir.path().join("export.csv");
    std::fs::write(&export, "request_id,x\ne1,1000\ne2,1001\n").unwrap();
    let file = std::fs::File::options().write(true).open(&export).unwrap();
    file.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_124_000))
        .unwrap(); // 2026-12-01T11:20:00Z
    let ctx = FetchContext::new();
    let pattern = dir.path().join("*_m-stable-a_*.parquet");
    let uri = pattern.display().to_string();
    let payload = fetch_local(
        &ctx,
        &pattern,
        &collection(&uri, FileSelection::default(), "2026-12-01T12:00:00Z"),
    )
    .unwrap();
    let values = xs(&payload);
    assert_eq!(values.len(), 200, "pod a's windows only");
    assert_eq!((values[0], values[199]), (0.0, 299.0));
    // The whole directory: the export sorts by its modification time, between the windows
    // of 11:00 and 11:30.
    let uri = dir.path().display().to_string();
    let payload = fetch_local(
        &ctx,
        dir.path(),
        &collection(&uri, FileSelection::default(), "2026-12-01T12:00:00Z"),
    )
    .unwrap();
    let values = xs(&payload);
    assert_eq!(values.len(), 302);
    assert_eq!(&values[200..202], &[1000.0, 1001.0]);
}

#[test]
fn every_file_of_a_collection_is_asked_of_the_policy() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    window(&data, "2026-12-01T10:00:00Z", "p", 0, 10);
    let outside = window(root.path(), "2026-12-01T11:00:00Z", "q", 10, 10);
    std::os::unix::fs::symlink(&outside, data.join("link.parquet")).unwrap();
    let mut policy = DataSourcePolicy::cluster(vec![], None);
    policy.local = LocalFiles::Under(data.clone());
    let ctx = FetchContext::new().with_policy(policy);
    let uri = data.display().to_string();
    let e = fetch_local(
        &ctx,
        &data,
        &collection(&uri, FileSelection::default(), "2026-12-01T12:00:00Z"),
    )
    .unwrap_err();
    assert_eq!(e.reason(), crate::api::Reason::DataSourceNotAllowed, "{e}");
    assert!(e.to_string().contains("link.parquet"), "{e}");
}

#[test]
fn the_byte_cap_holds_for_the_files_together() {
    let dir = capture_dir();
    let uri = dir.path().display().to_string();
    let one = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
        .unwrap();
    let size = one.metadata().unwrap().len();
    let ctx = FetchContext::new().with_max_bytes(size * 2);
    let c = collection(&uri, FileSelection::default(), "2026-12-01T12:00:00Z");
    let e = fetch_local(&ctx, dir.path(), &c).unwrap_err();
    assert_eq!(e.reason(), crate::api::Reason::DataTooLarge, "{e}");
    // The newest 100 rows are one file: under the cap.
    let selection = FileSelection {
        last_rows: Some(100),
        ..FileSelection::default()
    };
    let c = collection(&uri, selection, "2026-12-01T12:00:00Z");
    assert_eq!(xs(&fetch_local(&ctx, dir.path(), &c).unwrap()).len(), 100);
}

#[test]
fn an_empty_or_missing_directory_is_a_named_error() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = FetchContext::new();
    let uri = dir.path().display().to_string();
    let c = collection(&uri, FileSelection::default(), "2026-12-01T12:00:00Z");
    let e = fetch_local(&ctx, dir.path(), &c).unwrap_err();
    assert_eq!(e.reason(), crate::api::Reason::DataNotFound);
    let gone = dir.path().join("gone/*.parquet");
    let e = fetch_local(&ctx, &gone, &c).unwrap_err();
    assert_eq!(e.reason(), crate::api::Reason::DataNotFound, "{e}");
}

#[test]
fn files_without_rows_are_skipped_and_columns_are_those_of_every_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.csv"), "x,y\n1,a\n2,b\n").unwrap();
    std::fs::write(dir.path().join("b.csv"), "x,y\n").unwrap();
    std::fs::write(dir.path().join("c.csv"), "x,z\n3,c\n").unwrap();
    let ctx = FetchContext::new();
    let uri = dir.path().display().to_string();
    let c = collection(&uri, FileSelection::default(), "2026-12-01T12:00:00Z");
    let payload = fetch_local(&ctx, dir.path(), &c).unwrap();
    assert_eq!(
        column_names(&payload, DataFormat::Csv, Side::Current).unwrap(),
        ["x"]
    );
    let values = {
        let table = read_table(
            &payload,
            DataFormat::Csv,
            &[ColumnRequest::new("x", None)],
            Side::Current,
        )
        .unwrap();
        let mut v = table.column("x").unwrap().as_numeric().unwrap().to_vec();
        v.sort_by(f64::total_cmp);
        v
    };
    assert_eq!(values, [1.0, 2.0, 3.0]);
    // A text cell in a later file of a column the first file made numeric.
    std::fs::write(dir.path().join("d.csv"), "x\nnot-a-number\n").unwrap();
    let payload = fetch_local(&ctx, dir.path(), &c).unwrap();
    let e = read_table(
        &payload,
        DataFormat::Csv,
        &[ColumnRequest::new("x", None)],
        Side::Current,
    )
    .unwrap_err();
    assert_eq!(e.reason(), crate::api::Reason::WrongType, "{e}");
}
