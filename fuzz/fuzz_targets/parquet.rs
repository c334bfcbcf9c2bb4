//! The drift Parquet reader on any bytes: never panics, and a table's columns all have `rows`
//! values. The arrow-rs decoder itself still panics on some malformed files; the reader
//! contains those panics (an error on the file), so this target lets a caught panic pass and
//! fails only on one that escapes the reader.
#![no_main]

use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use mlrollout::drift::data::{
    ColumnKind, ColumnRequest, DataFormat, Payload, Side, column_names, read_table,
};

/// libfuzzer-sys aborts on every panic, caught or not; print instead. An uncaught panic still
/// aborts (libfuzzer-sys catches it at the top of the target), and is reported as a crash.
static PRINT_PANICS: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    PRINT_PANICS.call_once(|| std::panic::set_hook(Box::new(|info| eprintln!("{info}"))));
    let payload = Payload::from_bytes("fuzz.parquet", data.to_vec());
    let names = match column_names(&payload, DataFormat::Parquet, Side::Reference) {
        Ok(names) => names,
        Err(e) => {
            let _ = (e.to_string(), e.reason());
            return;
        }
    };
    for kind in [
        None,
        Some(ColumnKind::Numerical),
        Some(ColumnKind::Categorical),
    ] {
        let columns: Vec<ColumnRequest> = names
            .iter()
            .take(8)
            .map(|n| ColumnRequest::new(n.clone(), kind))
            .collect();
        match read_table(&payload, DataFormat::Parquet, &columns, Side::Reference) {
            Ok(table) => {
                assert_eq!(table.columns().len(), columns.len());
                assert!(table.columns().iter().all(|c| c.data.len() == table.rows()));
            }
            Err(e) => {
                let _ = (e.to_string(), e.reason());
            }
        }
    }
});
