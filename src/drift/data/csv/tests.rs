//! The CSV reader on text written here: header, kinds, missing values, errors, chunked parsing.

use super::split::{newline_inside_quotes, split_chunks};
use super::*;
use super::{blocks, fast};
use crate::drift::data::workers_for;

fn req(cols: &[(&str, Option<ColumnKind>)]) -> Vec<ColumnRequest> {
    cols.iter()
        .map(|(n, k)| ColumnRequest::new(*n, *k))
        .collect()
}

fn read_str(text: &str, cols: &[(&str, Option<ColumnKind>)]) -> Result<Table, DataError> {
    read_bytes(text.as_bytes(), "t.csv", &req(cols), Side::Current)
}

#[test]
fn reads_and_infers() {
    let t = read_str(
        "id,amount,channel,note\n1,10.5,web,x\n2,,pos,\"a,b\"\n3,NaN,web,y\n4,-2e3,,z\n",
        &[("amount", None), ("channel", None)],
    )
    .unwrap();
    assert_eq!(t.rows(), 4);
    let a = t.column("amount").unwrap().as_numeric().unwrap();
    assert_eq!(a[0], 10.5);
    assert!(a[1].is_nan() && a[2].is_nan());
    assert_eq!(a[3], -2000.0);
    let c = t.column("channel").unwrap().as_categorical().unwrap();
    assert_eq!(
        (0..4).map(|i| c.value(i)).collect::<Vec<_>>(),
        vec![Some("web"), Some("pos"), Some("web"), None]
    );
    assert_eq!(t.columns()[0].name, "amount");
}

#[test]
fn inference_uses_first_non_missing_value() {
    let t = read_str(
        "a,b,c\n,x,\nNA,1,\n3,2,\n",
        &[("a", None), ("b", None), ("c", None)],
    )
    .unwrap();
    assert_eq!(t.column("a").unwrap().kind(), ColumnKind::Numerical);
    assert_eq!(t.column("b").unwrap().kind(), ColumnKind::Categorical);
    // all missing: numerical, all NaN
    assert_eq!(t.column("c").unwrap().kind(), ColumnKind::Numerical);
    assert_eq!(t.column("c").unwrap().missing(), 3);
}

#[test]
fn forced_kinds() {
    let t = read_str(
        "zip,score\n01234,1\n99999,2\n",
        &[
            ("zip", Some(ColumnKind::Categorical)),
            ("score", Some(ColumnKind::Numerical)),
        ],
    )
    .unwrap();
    let z = t.column("zip").unwrap().as_categorical().unwrap();
    assert_eq!(z.value(0), Some("01234"));
    let e = read_str("a\n1\nx\n", &[("a", Some(ColumnKind::Numerical))]).unwrap_err();
    assert_eq!(
        e,
        DataError::WrongType {
            side: Side::Current,
            column: "a".into(),
            row: 2,
            value: "x".into()
        }
    );
}

#[test]
fn text_in_inferred_numeric_column_names_column_and_row() {
    let e = read_str("amount,c\n1.0,a\n2.0,b\nabc,c\n", &[("amount", None)]).unwrap_err();
    assert_eq!(e.reason(), crate::api::Reason::WrongType);
    let msg = e.to_string();
    assert!(
        msg.contains("'amount'") && msg.contains("row 3") && msg.contains("'abc'"),
        "{msg}"
    );
}

#[test]
fn errors() {
    assert_eq!(
        read_str("", &[("a", None)]).unwrap_err().reason(),
        crate::api::Reason::EmptyData
    );
    assert_eq!(
        read_str("a,b\n", &[("a", None)]).unwrap_err().reason(),
        crate::api::Reason::EmptyData
    );
    assert_eq!(
        read_str("a,b\n1,2\n", &[("zz", None)]).unwrap_err(),
        DataError::MissingColumn {
            column: "zz".into(),
            side: Side::Current
        }
    );
    let e = read_str("a,b\n1,2\n3\n", &[("a", None)]).unwrap_err();
    assert_eq!(e.reason(), crate::api::Reason::MalformedData);
    assert!(e.to_string().contains("row 2"), "{e}");
}

#[test]
fn header_bom_whitespace_and_crlf() {
    let t = read_str(
        "\u{feff}a , b\r\n 1 ,x\r\n2, y \r\n",
        &[("a", None), ("b", None)],
    )
    .unwrap();
    assert_eq!(t.rows(), 2);
    assert_eq!(t.column("a").unwrap().as_numeric().unwrap(), &[1.0, 2.0]);
    assert_eq!(
        t.column("b").unwrap().as_categorical().unwrap().value(1),
        Some("y")
    );
}

#[test]
fn missing_tokens() {
    for m in [
        "", "nan", "NaN", "NA", "n/a", "NULL", "None", "<NA>", "-nan",
    ] {
        assert!(is_missing(m.as_bytes()), "{m}");
    }
    for v in ["0", "nana", "x", "inf"] {
        assert!(!is_missing(v.as_bytes()), "{v}");
    }
    assert_eq!(parse_number(b"+1.5"), Some(1.5));
    assert_eq!(parse_number(b"inf"), Some(f64::INFINITY));
    assert_eq!(parse_number(b"1,5"), None);
    assert_eq!(parse_number(b"abc"), None);
}

#[test]
fn parallel_chunks_match_sequential_parse() {
    // large enough to be split, with an error near the end to check row renumbering
    let n = 200_000;
    let mut s = String::from("x,cat,y\n");
    for i in 0..n {
        let cat = ["a", "b", "c", "d"][i % 4];
        s.push_str(&format!("{}.25,{cat},{}\n", i, i % 7));
    }
    let cols = [("x", None), ("cat", None), ("y", None)];
    let t = read_str(&s, &cols).unwrap();
    assert!(split_chunks(&s.as_bytes()[8..]).len() >= workers_for(usize::MAX).min(2));
    assert_eq!(t.rows(), n);
    let x = t.column("x").unwrap().as_numeric().unwrap();
    assert!(x.iter().enumerate().all(|(i, &v)| v == i as f64 + 0.25));
    let c = t.column("cat").unwrap().as_categorical().unwrap();
    assert!((0..n).all(|i| c.value(i) == Some(["a", "b", "c", "d"][i % 4])));
    // the same text with quoted categories (still split, quotes stripped by the fast path)
    let quoted = s.replace(",a,", ",\"a\",").replace(",c,", ",\"c\",");
    let t2 = read_str(&quoted, &cols).unwrap();
    assert_eq!(t2.column("x"), t.column("x"));
    let c2 = t2.column("cat").unwrap().as_categorical().unwrap();
    assert!((0..n).all(|i| c2.value(i) == c.value(i)));

    let bad = s.replace(&format!("{}.25,", n - 5), "oops,");
    let e = read_str(&bad, &cols).unwrap_err();
    assert_eq!(
        e,
        DataError::WrongType {
            side: Side::Current,
            column: "x".into(),
            row: (n - 4) as u64,
            value: "oops".into()
        }
    );
}

#[test]
fn quoted_fields() {
    assert!(newline_inside_quotes(b"a,\"x\ny\"\n"));
    assert!(newline_inside_quotes(
        b"aaaaaaaaaaaa,\"xxxxxxxxxxxxxxxxxxxxxx\nyyyyyyy\"\n"
    ));
    assert!(!newline_inside_quotes(b"a,\"x\"\"y\"\nb,\"z\"\n"));
    assert!(!newline_inside_quotes(
        b"1.2345678,\"mobile\",\"merchant_19\"\n2.3456789,\"web\",\"m\"\n"
    ));
    // quoted fields, one with a comma inside: the chunk falls back to the csv parser
    let t = read_str(
        "\"n\",\"c\"\n1,\"web\"\n2,\"a,b\"\n3,\"say \"\"hi\"\"\"\n",
        &[("n", None), ("c", None)],
    )
    .unwrap();
    let c = t.column("c").unwrap().as_categorical().unwrap();
    assert_eq!(
        (c.value(0), c.value(1), c.value(2)),
        (Some("web"), Some("a,b"), Some("say \"hi\""))
    );
    assert_eq!(
        t.column("n").unwrap().as_numeric().unwrap(),
        &[1.0, 2.0, 3.0]
    );
}

#[test]
fn quoted_newlines_in_a_large_file_are_parsed_in_one_piece() {
    let n = 200_000;
    let mut s = String::from("x,note\n");
    for i in 0..n {
        if i == n / 2 {
            s.push_str(&format!("{i},\"two\nlines, and a comma\"\n"));
        } else {
            s.push_str(&format!("{i},\"n{}\"\n", i % 3));
        }
    }
    // a newline inside quotes: not split, parsed in one piece
    assert_eq!(split_chunks(&s.as_bytes()[7..]).len(), 1);
    let t = read_str(&s, &[("x", None), ("note", None)]).unwrap();
    assert_eq!(t.rows(), n);
    let note = t.column("note").unwrap().as_categorical().unwrap();
    assert_eq!(note.value(n / 2), Some("two\nlines, and a comma"));
    assert_eq!(
        note.value(n / 2 + 1),
        Some(["n0", "n1", "n2"][(n / 2 + 1) % 3])
    );
    let x = t.column("x").unwrap().as_numeric().unwrap();
    assert_eq!(x[n - 1], (n - 1) as f64);
}

#[test]
fn column_names_from_file_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.csv");
    std::fs::write(&p, "a,b,c\n1,2,3\n").unwrap();
    assert_eq!(
        column_names(&Payload::from_path(&p), Side::Reference).unwrap(),
        vec!["a", "b", "c"]
    );
    assert_eq!(
        column_names(&Payload::from_bytes("m", "q\n"), Side::Reference).unwrap(),
        vec!["q"]
    );
    assert_eq!(
        column_names(&Payload::from_bytes("m", ""), Side::Reference)
            .unwrap_err()
            .reason(),
        crate::api::Reason::EmptyData
    );
    let t = read(
        &Payload::from_path(&p),
        &req(&[("c", None)]),
        Side::Reference,
    )
    .unwrap();
    assert_eq!(t.column("c").unwrap().as_numeric().unwrap(), &[3.0]);
    let gone = Payload::from_path(dir.path().join("nope.csv"));
    assert_eq!(
        read(&gone, &req(&[("c", None)]), Side::Reference)
            .unwrap_err()
            .reason(),
        crate::api::Reason::DataNotFound
    );
}

/// Issue 20 point 8: a repeated column name and a header that is not UTF-8 are named errors,
/// not a silently unchecked or missing column.
#[test]
fn duplicate_and_non_utf8_header_names_are_errors() {
    let e = read_str("amount,channel,amount\n1,a,2\n", &[("amount", None)]).unwrap_err();
    assert_eq!(e.reason(), crate::api::Reason::MalformedData);
    assert!(
        e.to_string()
            .contains("column 'amount' appears twice in the header (columns 1 and 3)"),
        "{e}"
    );
    // "montant,caf\xe9" in Latin-1
    let latin1 = b"montant,caf\xe9\n1,2\n";
    let e = read_bytes(latin1, "t.csv", &req(&[("montant", None)]), Side::Reference).unwrap_err();
    assert!(
        e.to_string().contains("header column 2") && e.to_string().contains("not UTF-8"),
        "{e}"
    );
}

/// A wide header is read in time linear in its columns.
#[test]
fn a_header_of_a_hundred_thousand_columns_reads_quickly() {
    let names: Vec<String> = (0..100_000).map(|i| format!("c{i}")).collect();
    let text = format!(
        "{}\n{}\n",
        names.join(","),
        vec!["1"; names.len()].join(",")
    );
    let started = std::time::Instant::now();
    let t = read_str(&text, &[("c99999", None)]).unwrap();
    assert_eq!(t.rows(), 1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// Issue 14 point 9, found by the property test: a stray quote inside an unquoted field is a
/// literal byte to the `csv` crate, so it must not flip the scan's idea of "inside quotes". It
/// did, and the newline inside the next (really quoted) field looked like a record end: the
/// parallel parse cut the field in two and reported rows the file does not have.
#[test]
fn a_stray_quote_does_not_hide_a_quoted_newline_from_the_splitter() {
    for body in [
        &b"5\",\"\n\",\n"[..],
        b"a\"b,\"x\ny\"\n",
        b"\"ab\"c\",\"x\ny\"\n",
        b"12345678a\"b,\"x\ny\"\n1,2\n",
    ] {
        assert!(
            newline_inside_quotes(body),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    // quotes that do close: the newlines are record ends
    assert!(!newline_inside_quotes(b"\"a\"\"\",b\n\"\",\"\"\"\"\n"));
    assert!(!newline_inside_quotes(b"a\"b\"c,d\n\"x\"\n"));

    let text = "c0,c1,c2\n5\",\"x\ny\",\n1,a,2\n";
    let cols = req(&[("c0", None), ("c1", None), ("c2", None)]);
    let one = read_bytes_in(text.as_bytes(), "t.csv", &cols, Side::Current, Some(1)).unwrap();
    let many = read_bytes_in(text.as_bytes(), "t.csv", &cols, Side::Current, Some(3)).unwrap();
    assert_eq!(one.rows(), 2);
    let c1 = many.column("c1").unwrap().as_categorical().unwrap();
    assert_eq!((c1.value(0), c1.value(1)), (Some("x\ny"), Some("a")));
    assert_eq!(format!("{one:?}"), format!("{many:?}"));
}

/// Issue 14 point 9, found by the `csv` fuzz target: a line that starts with a UTF-8 BOM (two
/// files with BOMs concatenated) kept its BOM in one piece but lost it where a chunk began,
/// and the body's first line lost it too, unlike the `csv` crate reading the whole file. A
/// BOM after the header is data wherever the file is cut; the header's own is dropped.
#[test]
fn a_bom_after_the_header_is_data_wherever_the_file_is_cut() {
    let text = "\u{feff}a,b\n\u{feff}x,1\ny,2\n\u{feff}a,b\nz,3\n";
    let cols = req(&[
        ("a", Some(ColumnKind::Categorical)),
        ("b", Some(ColumnKind::Categorical)),
    ]);
    let one = read_bytes_in(text.as_bytes(), "t.csv", &cols, Side::Current, Some(1));
    let values = |t: &Table| {
        let a = t.column("a").unwrap().as_categorical().unwrap();
        (0..t.rows())
            .map(|i| a.value(i).unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        values(one.as_ref().unwrap()),
        ["\u{feff}x", "y", "\u{feff}a", "z"]
    );
    for workers in 2..6 {
        let many = read_bytes_in(
            text.as_bytes(),
            "t.csv",
            &cols,
            Side::Current,
            Some(workers),
        );
        assert_eq!(format!("{one:?}"), format!("{many:?}"), "{workers}");
    }
}

#[test]
fn the_fast_path_stops_at_the_first_line_that_is_not_a_plain_record() {
    let targets = |n: usize| -> Vec<Target> {
        (0..n)
            .map(|i| Target {
                index: i,
                name: format!("c{i}"),
                kind: Some(ColumnKind::Categorical),
            })
            .collect()
    };
    let stop = |text: &str, width: usize| {
        let Ok(f) = fast::parse_lines(text.as_bytes(), &targets(width), width) else {
            panic!("no error expected in {text:?}");
        };
        (f.chunk.rows, f.stop)
    };
    // plain records: quoted fields (with a delimiter inside), CRLF, blank lines, stray quotes
    assert_eq!(
        stop("1,\"web\"\r\n\r\n2,\"a,b\"\n\n5\",x\"y\n3,", 2),
        (4, None)
    );
    // the line after the first: an escaped quote, a quoted newline, text after a closing
    // quote, too many and too few fields
    for second in [
        "\"say \"\"hi\"\"\",1",
        "\"two\nlines\",1",
        "\"a\"b,1",
        "1,2,3",
        "1",
    ] {
        assert_eq!(
            stop(&format!("a,b\n{second}\nc,d\n"), 2),
            (1, Some(4)),
            "{second:?}"
        );
    }
    // a lone carriage return anywhere (a record end to the csv crate): the whole chunk
    assert_eq!(stop("a,b\nc,d\re,f\n", 2), (0, Some(0)));
    assert_eq!(stop("a,\"b\r\"\n", 2), (0, Some(0)));
    // a quote left open at the chunk's end
    assert_eq!(stop("a,b\nc,\"d", 2), (1, Some(4)));
}

#[test]
fn large_files_are_read_in_blocks_when_every_line_is_a_record() {
    let mut s = String::from("\u{feff}x,\"cat\",y\r\n");
    for i in 0..2000 {
        let cat = ["\"web\"", "pos", "\"a,b\"", ""][i % 4];
        s.push_str(&format!("{i}.25,{cat},{}\r\n", i % 7));
        if i % 500 == 0 {
            s.push_str("\r\n");
        }
    }
    s.push_str("-1,last,0");
    let cols = req(&[("y", None), ("cat", None), ("x", None)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    let read = |text: &str, block: usize, workers: usize| {
        std::fs::write(&path, text).unwrap();
        let tuning = blocks::Tuning {
            min_bytes: 0,
            block,
            workers: Some(workers),
        };
        blocks::read_file_with(&path, &cols, Side::Current, "t.csv", tuning).unwrap()
    };
    let whole = read_bytes(s.as_bytes(), "t.csv", &cols, Side::Current).unwrap();
    assert_eq!(whole.rows(), 2001);
    // blocks shorter than a line, and longer; one worker or several
    for (block, workers) in [(20, 1), (20, 3), (4096, 2), (1 << 20, 4)] {
        let t = read(&s, block, workers).expect("read in blocks");
        assert_eq!(format!("{t:?}"), format!("{whole:?}"), "{block} {workers}");
    }
    // a quoted line break, a ragged row, an escaped quote late in the file: the whole-file
    // reader's business (which reads them, or names the row)
    for odd in ["1,\"two\nlines\",2", "1,2", "1,\"say \"\"hi\"\"\",2"] {
        let text = s.replacen("1999.25,", &format!("{odd}\n1999.25,"), 1);
        assert!(read(&text, 4096, 2).is_none(), "{odd:?}");
    }
    // kinds the first megabyte does not decide: read whole
    let late = format!(
        "x,cat,y\n{}{}",
        ",,\n".repeat(400_000),
        &s[s.find('\n').unwrap() + 1..]
    );
    assert!(read(&late, 4096, 2).is_none());
    assert_eq!(
        read(&late.replacen(",,\n", "1,a,2\n", 1), 4096, 2).map(|t| t.rows()),
        Some(402_001)
    );
}

/// A header and blank lines, with the kinds given: no rows, which the whole-file reader names
/// (`EmptyData`), not the block reader.
#[test]
fn a_file_without_rows_is_left_to_the_whole_file_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    let cols = req(&[("c0", Some(ColumnKind::Categorical))]);
    for (text, workers) in [("c0\n\n", 1), ("c0\n\n\n", 2), ("c0\n", 1)] {
        std::fs::write(&path, text).unwrap();
        let tuning = blocks::Tuning {
            min_bytes: 0,
            block: 16,
            workers: Some(workers),
        };
        let read = blocks::read_file_with(&path, &cols, Side::Current, "t.csv", tuning);
        assert!(matches!(read, Ok(None)), "{text:?}: {read:?}");
        assert!(matches!(
            read_bytes(text.as_bytes(), "t.csv", &cols, Side::Current),
            Err(DataError::Empty { .. })
        ));
    }
}
