//! The drift CSV reader on any bytes: never panics, returns a table whose columns all have
//! `rows` values, and reads the same when the body is cut into chunks parsed in parallel.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlrollout::drift::data::{
    ColumnKind, ColumnRequest, DataFormat, Payload, Side, column_names, read_csv_in_chunks,
    read_table,
};

fuzz_target!(|data: &[u8]| {
    let payload = Payload::from_bytes("fuzz.csv", data.to_vec());
    let Ok(names) = column_names(&payload, DataFormat::Csv, Side::Current) else {
        // still read: the error path must not panic either
        let _ = read_table(
            &payload,
            DataFormat::Csv,
            &[ColumnRequest::new("a", None)],
            Side::Current,
        );
        return;
    };
    for kind in [None, Some(ColumnKind::Categorical)] {
        let columns: Vec<ColumnRequest> = names
            .iter()
            .take(8)
            .map(|n| ColumnRequest::new(n.clone(), kind))
            .collect();
        let one = read_table(&payload, DataFormat::Csv, &columns, Side::Current);
        match &one {
            Ok(table) => {
                assert_eq!(table.columns().len(), columns.len());
                assert!(table.columns().iter().all(|c| c.data.len() == table.rows()));
            }
            Err(e) => {
                let _ = (e.to_string(), e.reason());
            }
        }
        // 2 to 6 chunks, varied by the input (one thread each: spawning is what costs here)
        let workers = 2 + data.len() % 5;
        let many = read_csv_in_chunks(data, &columns, workers);
        // Debug: a missing value (NaN) compares equal to itself
        assert_eq!(format!("{one:?}"), format!("{many:?}"), "{workers} chunks");
    }
});
