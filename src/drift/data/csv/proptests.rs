//! The parallel CSV parse against the `csv` crate's single-threaded reader, on random text with
//! quoted fields, escaped quotes, delimiters and line ends (`\n`, `\r\n`) inside quotes, empty
//! and missing cells, numbers and categories, and stray quotes in unquoted fields.

use proptest::prelude::*;

use super::split::{newline_inside_quotes, split_chunks_for};
use super::*;
use super::{blocks, fast, parse_body, parse_general, read_bytes_with};

/// One cell as written in the file.
fn cell(numeric: bool) -> impl Strategy<Value = String> {
    let number = prop_oneof![
        any::<i32>().prop_map(|n| n.to_string()),
        (-1e6f64..1e6).prop_map(|x| format!("{x}")),
        Just("1e-3".to_owned()),
        Just(" 7 ".to_owned()),
    ];
    // text that may hold every byte the quoting cares about
    let text = proptest::collection::vec(
        prop_oneof![
            4 => Just("a"),
            2 => Just("b c"),
            2 => Just(","),
            2 => Just("\""),
            2 => Just("\n"),
            2 => Just("\r\n"),
            1 => Just("\r"),
            1 => Just("é"),
        ],
        0..6,
    )
    .prop_map(|parts| parts.concat());
    let quoted = |s: String| format!("\"{}\"", s.replace('"', "\"\""));
    let plain = if numeric {
        number.boxed()
    } else {
        proptest::sample::select(vec!["web", "pos", "x y", "b"])
            .prop_map(str::to_owned)
            .boxed()
    };
    prop_oneof![
        6 => plain.clone(),
        3 => plain.prop_map(quoted),
        4 => text.prop_map(quoted),
        1 => Just(String::new()),
        1 => Just("NA".to_owned()),
        1 => Just("\"\"".to_owned()),
        // stray quotes, literal to the csv crate: inside an unquoted field, after a closing one
        1 => Just("5\"".to_owned()),
        1 => Just("a\"b\"\"c".to_owned()),
        1 => Just("\"ab\"c\"".to_owned()),
        // a BOM opening a line (files concatenated): data, unlike the file's own
        1 => Just("\u{feff}b".to_owned()),
    ]
}

/// A CSV file: a header of `kinds.len()` columns, rows of cells, each row ended by `\n` or
/// `\r\n` (the last one maybe by nothing).
fn csv_text() -> impl Strategy<Value = (Vec<bool>, String)> {
    proptest::collection::vec(any::<bool>(), 1..5).prop_flat_map(|kinds| {
        let row = kinds.iter().map(|&k| cell(k)).collect::<Vec<_>>();
        let rows = proptest::collection::vec((row, any::<bool>()), 1..40);
        (Just(kinds), rows, any::<bool>(), any::<bool>()).prop_map(
            |(kinds, rows, quoted_header, last_newline)| {
                let header: Vec<String> = (0..kinds.len())
                    .map(|i| {
                        if quoted_header {
                            format!("\"c{i}\"")
                        } else {
                            format!("c{i}")
                        }
                    })
                    .collect();
                let mut s = header.join(",") + "\n";
                let n = rows.len();
                for (i, (cells, crlf)) in rows.into_iter().enumerate() {
                    s.push_str(&cells.join(","));
                    if i + 1 < n || last_newline {
                        s.push_str(if crlf { "\r\n" } else { "\n" });
                    }
                }
                (kinds, s)
            },
        )
    })
}

/// What the `csv` crate reads, one record at a time, as the columns the reader should return.
fn expected(data: &[u8], columns: &[ColumnRequest], table: &Table) -> Vec<Vec<Option<String>>> {
    let mut reader = ::csv::ReaderBuilder::new().flexible(true).from_reader(data);
    let header: Vec<String> = reader
        .byte_headers()
        .unwrap()
        .iter()
        .map(|h| String::from_utf8_lossy(h.trim_ascii()).into_owned())
        .collect();
    let indices: Vec<usize> = columns
        .iter()
        .map(|c| header.iter().position(|h| *h == c.name).unwrap())
        .collect();
    let records: Vec<ByteRecord> = reader.byte_records().map(Result::unwrap).collect();
    indices
        .iter()
        .zip(table.columns())
        .map(|(&i, column)| {
            records
                .iter()
                .map(|r| {
                    let cell = r.get(i).unwrap().trim_ascii();
                    if is_missing(cell) {
                        return None;
                    }
                    Some(match column.data.kind() {
                        ColumnKind::Numerical => format!("{:?}", parse_number(cell).unwrap()),
                        ColumnKind::Categorical => String::from_utf8_lossy(cell).into_owned(),
                    })
                })
                .collect()
        })
        .collect()
}

/// The table's columns in the shape of [`expected`].
fn actual(table: &Table) -> Vec<Vec<Option<String>>> {
    table
        .columns()
        .iter()
        .map(|c| match &c.data {
            Column::Numeric(v) => v
                .iter()
                .map(|x| (!x.is_nan()).then(|| format!("{x:?}")))
                .collect(),
            Column::Categorical(c) => (0..c.len())
                .map(|i| c.value(i).map(str::to_owned))
                .collect(),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Cut into 2 to 12 chunks, the file reads exactly as in one piece (tables and errors,
    /// with their rows), and a table holds what the `csv` crate reads record by record.
    #[test]
    fn parallel_parse_agrees_with_the_csv_crate(
        (kinds, text) in csv_text(),
        workers in 2usize..12,
    ) {
        let columns: Vec<ColumnRequest> = (0..kinds.len())
            .map(|i| ColumnRequest::new(format!("c{i}"), None))
            .collect();
        let data = text.as_bytes();
        let one = read_bytes_in(data, "t.csv", &columns, Side::Current, Some(1));
        let many = read_bytes_in(data, "t.csv", &columns, Side::Current, Some(workers));
        // Debug: NaN (missing) compares equal to itself
        prop_assert_eq!(format!("{one:?}"), format!("{many:?}"));
        if let Ok(table) = &one {
            prop_assert_eq!(actual(table), expected(data, &columns, table));
        }
    }

    /// The chunks are the body, in order, with nothing lost or repeated; they are cut only
    /// after a newline.
    #[test]
    fn chunks_cover_the_body((_, text) in csv_text(), workers in 1usize..12) {
        let body = text.as_bytes();
        let chunks = split_chunks_for(body, workers);
        prop_assert!(chunks.len() <= workers.max(1));
        prop_assert_eq!(chunks.concat(), body.to_vec());
        for c in &chunks[..chunks.len() - 1] {
            prop_assert_eq!(c.last(), Some(&b'\n'));
        }
        if chunks.len() > 1 {
            prop_assert!(!newline_inside_quotes(body));
        }
    }
}

/// A number as a file may spell it.
fn rough_number() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|x| format!("{x}")),
        (-1e3f64..1e3).prop_map(|x| format!("{x}")),
        (0u64..100_000, 0usize..6).prop_map(|(n, d)| format!("{n:0>width$}.{n}", width = d)),
        proptest::sample::select(vec![
            "+5",
            "+-5",
            "-0",
            "-0.0",
            "007.50",
            "1.",
            ".5",
            "1e5",
            "1E-3",
            "inf",
            "-Infinity",
            "nan",
            " 7 ",
            "\t8",
            "9007199254740993",
            "0.30000000000000004",
            "12345678.5",
            "12345678901234567890",
            "1.234567890123456789012345",
        ])
        .prop_map(str::to_owned),
    ]
}

/// One cell for the fast-path test, of a numerical column or not: plain and quoted numbers in
/// many spellings, categories, missing tokens; when `odd`, now and then what is not a number
/// or must send a line to the general path.
fn rough_cell(numeric: bool, odd: bool) -> impl Strategy<Value = String> {
    let number = rough_number();
    let text = proptest::sample::select(vec![
        "web",
        "pos",
        "x y",
        " padded ",
        "merchant_07",
        "é",
        "a\"b",
        "5\"",
    ])
    .prop_map(str::to_owned);
    let quoted_text =
        proptest::sample::select(vec!["web", "a,b", "", " s "]).prop_map(|s| format!("\"{s}\""));
    let missing = proptest::sample::select(vec![
        "", "NA", "null", "None", "N/A", "-nan", "\"\"", "<NA>",
    ])
    .prop_map(str::to_owned);
    // not numbers; text after a closing quote, a quote after spaces, a lone carriage return
    let odd_cell = proptest::sample::select(vec![
        ".",
        "-",
        "+",
        "1_000",
        "0x10",
        "1,5",
        "\"ab\"c",
        " \"q\"",
        "a\rb",
        "\"x\"\"",
        "\u{feff}b",
        "\"say \"\"hi\"\"\"",
        "\"two\nlines\"",
        "\"cr\rlf\"",
        "\"crlf\r\n\"",
    ])
    .prop_map(str::to_owned);
    let odd_weight = u32::from(odd);
    if numeric {
        prop_oneof![
            8 => number.clone(),
            2 => number.prop_map(|n| format!("\"{n}\"")),
            2 => missing,
            odd_weight => odd_cell,
        ]
        .boxed()
    } else {
        prop_oneof![
            4 => text,
            4 => quoted_text,
            2 => missing,
            1 => number,
            odd_weight => odd_cell,
        ]
        .boxed()
    }
}

/// A file with a header of `kinds.len()` columns (true: numerical) and rows of cells, each
/// ended by `\n`, `\r\n` or a blank line, the last maybe by nothing; when `odd`, odd cells,
/// rows of one cell too few or too many, and rows ended by `\r` alone.
fn rough_csv() -> impl Strategy<Value = (Vec<bool>, String)> {
    (
        proptest::collection::vec(any::<bool>(), 1..5),
        any::<bool>(),
    )
        .prop_flat_map(|(kinds, odd)| {
            let cells: Vec<_> = kinds.iter().map(|&k| rough_cell(k, odd)).collect();
            let ragged = u32::from(odd);
            let row = (
                cells,
                prop_oneof![40 => Just(0i8), ragged => Just(-1i8), ragged => Just(1i8)],
                prop_oneof![
                    8 => proptest::sample::select(vec!["\n", "\r\n", "\n\n", "\r\n\r\n"]),
                    ragged => Just("\r"),
                ],
            );
            (
                Just(kinds),
                proptest::collection::vec(row, 1..60),
                any::<bool>(),
            )
                .prop_map(|(kinds, rows, last_newline)| {
                    let header: Vec<String> = (0..kinds.len()).map(|i| format!("c{i}")).collect();
                    let mut s = header.join(",") + "\n";
                    let n = rows.len();
                    for (i, (mut cells, ragged, end)) in rows.into_iter().enumerate() {
                        match ragged {
                            -1 => {
                                cells.pop();
                            }
                            1 => cells.push("1".to_owned()),
                            _ => {}
                        }
                        s.push_str(&cells.join(","));
                        if i + 1 < n || last_newline {
                            s.push_str(end);
                        }
                    }
                    (kinds, s)
                })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// The fast path (with the general path after its first unusual line), in 1 to 6 chunks,
    /// reads every file exactly as the general path alone in one piece: the same table, or the
    /// same error with the same row.
    #[test]
    fn fast_path_agrees_with_the_general_path(
        (numeric, text) in rough_csv(),
        force in proptest::collection::vec(0u8..4, 4),
        workers in 1usize..7,
    ) {
        // a column's kind: inferred, its own, or categorical
        let columns: Vec<ColumnRequest> = (0..numeric.len())
            .rev()
            .map(|i| {
                let kind = match force[i] {
                    0 | 1 => None,
                    2 if numeric[i] => Some(ColumnKind::Numerical),
                    _ => Some(ColumnKind::Categorical),
                };
                ColumnRequest::new(format!("c{i}"), kind)
            })
            .collect();
        let data = text.as_bytes();
        let fast = read_bytes_with(data, "t.csv", &columns, Side::Current, Some(workers), parse_body);
        let general = read_bytes_with(data, "t.csv", &columns, Side::Current, Some(1), parse_general);
        prop_assert_eq!(format!("{fast:?}"), format!("{general:?}"));
    }

    /// A plain decimal read by the fast path is, bit for bit, what `str::parse` reads.
    #[test]
    fn simple_decimals_parse_as_the_standard_library_does(
        sign in proptest::sample::select(vec!["", "-", "+", "+-", "++"]),
        int in "[0-9]{0,20}",
        frac in proptest::option::of("[0-9]{0,22}"),
    ) {
        let text = match &frac {
            Some(f) => format!("{sign}{int}.{f}"),
            None => format!("{sign}{int}"),
        };
        let general = std::str::from_utf8(text.as_bytes().strip_prefix(b"+").unwrap_or(text.as_bytes()))
            .unwrap()
            .parse::<f64>()
            .ok();
        let fast = fast::simple_decimal(text.as_bytes());
        if let Some(x) = fast {
            prop_assert_eq!(Some(x.to_bits()), general.map(f64::to_bits), "{}", text);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    /// Decimals of 16 to 19 significant digits (above 2^53, where the fast path divides
    /// 128-bit integers) read bit for bit as `str::parse` reads them, ties included.
    #[test]
    fn long_decimals_parse_as_the_standard_library_does(
        digits in "[1-9][0-9]{15,18}",
        point in 0usize..20,
        tie in any::<bool>(),
    ) {
        // a mantissa ending in 5 after 2^53 is often a tie between two doubles
        let mut digits = digits;
        if tie {
            digits.pop();
            digits.push('5');
        }
        let point = point.min(digits.len());
        let text = format!("{}.{}", &digits[..point], &digits[point..]);
        let general = text.parse::<f64>().ok().map(f64::to_bits);
        prop_assert_eq!(fast::simple_decimal(text.as_bytes()).map(f64::to_bits), general, "{}", text);
    }

    /// Integers above 2^53: every odd one below 2^54 is a tie, rounded to even.
    #[test]
    fn large_integers_parse_as_the_standard_library_does(
        n in prop_oneof![(1u64 << 53)..(1 << 54), (1u64 << 53)..u64::MAX],
        ten_times in any::<bool>(),
    ) {
        // n/10 as "n[..-1].d" too: the same digits, a decimal
        let text = n.to_string();
        let text = if ten_times {
            format!("{}.{}", &text[..text.len() - 1], &text[text.len() - 1..])
        } else {
            text
        };
        let general = text.parse::<f64>().ok().map(f64::to_bits);
        let fast = fast::simple_decimal(text.as_bytes()).map(f64::to_bits);
        // 20 digits are left to the general parse
        if n < 10_000_000_000_000_000_000 {
            prop_assert_eq!(fast, general, "{}", text);
        } else {
            prop_assert_eq!(fast, None, "{}", text);
        }
    }
}

proptest! {
    /// The quick test of a missing cell says what comparing with every token says.
    #[test]
    fn missing_cells_are_the_tokens(
        cell in prop_oneof![
            "[nN<aA/lLuoOeE>-]{0,6}",
            proptest::sample::select(vec!["nan", "NA", "n/a", "NULL", "None", "<NA>", "-nan", "-NaN"])
                .prop_map(str::to_owned),
            any::<String>(),
        ],
    ) {
        let bytes = cell.as_bytes();
        let tokens = [&b"nan"[..], b"na", b"n/a", b"null", b"none", b"<na>", b"-nan"];
        let expected = bytes.is_empty() || tokens.iter().any(|t| t.eq_ignore_ascii_case(bytes));
        prop_assert_eq!(is_missing(bytes), expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Read from a file in blocks (tiny ones here, so that lines cross them, and 1 to 4
    /// workers), a file gives the table the general path gives on its bytes, or leaves it to
    /// the whole-file reader.
    #[test]
    fn block_reads_agree_with_the_general_path(
        (numeric, text) in rough_csv(),
        forced in any::<bool>(),
        block in 16usize..300,
        workers in 1usize..5,
    ) {
        let columns: Vec<ColumnRequest> = (0..numeric.len())
            .map(|i| {
                let kind = forced.then_some(if numeric[i] {
                    ColumnKind::Numerical
                } else {
                    ColumnKind::Categorical
                });
                ColumnRequest::new(format!("c{i}"), kind)
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, text.as_bytes()).unwrap();
        let tuning = blocks::Tuning { min_bytes: 0, block, workers: Some(workers) };
        let general =
            read_bytes_with(text.as_bytes(), "t.csv", &columns, Side::Current, Some(1), parse_general);
        match blocks::read_file_with(&path, &columns, Side::Current, "t.csv", tuning) {
            Ok(Some(table)) => {
                prop_assert_eq!(format!("{:?}", Ok::<_, DataError>(table)), format!("{general:?}"));
            }
            Ok(None) => {}
            Err(e) => prop_assert!(false, "{e}"),
        }
    }
}
