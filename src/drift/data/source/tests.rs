//! Parsing URIs, guessing formats, and fetching under the byte cap and the time limit.

use super::*;

fn parse(uri: &str) -> Result<DataSource, DataError> {
    DataSource::parse(uri, Side::Reference)
}

#[test]
fn parses_schemes() {
    assert_eq!(
        parse("data/ref.csv").unwrap(),
        DataSource::File("data/ref.csv".into())
    );
    assert_eq!(
        parse("/abs/ref.parquet").unwrap(),
        DataSource::File("/abs/ref.parquet".into())
    );
    assert_eq!(
        parse("file:///tmp/a%20b.csv").unwrap(),
        DataSource::File("/tmp/a b.csv".into())
    );
    assert_eq!(
        parse("file://localhost/tmp/x.csv").unwrap(),
        DataSource::File("/tmp/x.csv".into())
    );
    assert_eq!(
        parse("file:rel/x.csv").unwrap(),
        DataSource::File("rel/x.csv".into())
    );
    assert_eq!(
        parse("C:/data/x.csv").unwrap(),
        DataSource::File("C:/data/x.csv".into())
    );
    assert_eq!(
        parse("HTTPS://example.com/x.csv?sig=1").unwrap(),
        DataSource::Http("HTTPS://example.com/x.csv?sig=1".into())
    );
    assert_eq!(
        parse("runs:/abc123/data/ref.parquet").unwrap(),
        DataSource::Mlflow("runs:/abc123/data/ref.parquet".into())
    );
    assert_eq!(
        parse("mlflow-artifacts:/1/abc/artifacts/ref.csv").unwrap(),
        DataSource::Mlflow("mlflow-artifacts:/1/abc/artifacts/ref.csv".into())
    );
    assert!(parse("models:/fraud/3/ref.csv").unwrap().needs_mlflow());
    for object in [
        "s3://bucket/key.parquet",
        "gs://b/k.csv",
        "az://container/captures/",
        "abfss://c@a.dfs.core.windows.net/x.parquet",
    ] {
        let source = parse(object).unwrap();
        assert_eq!(source, DataSource::Object(object.into()));
        assert!(source.is_remote());
    }
    assert!(
        parse("s3://b/captures/ns/m/stable/")
            .unwrap()
            .is_collection()
    );
    assert!(
        parse("s3://b/captures/2026*.parquet")
            .unwrap()
            .is_collection()
    );
    assert!(!parse("s3://b/captures/x.parquet").unwrap().is_collection());
    assert!(matches!(
        parse("s3:///key.csv"),
        Err(DataError::InvalidUri { .. })
    ));
    assert!(!parse("x.csv").unwrap().is_remote());
    assert!(parse("http://h/x.csv").unwrap().is_remote());
}

#[test]
fn rejects_unsupported_and_invalid() {
    for (uri, scheme) in [("hdfs://nn/x.csv", "hdfs"), ("ftp://h/x.csv", "ftp")] {
        match parse(uri) {
            Err(e @ DataError::UnsupportedScheme { .. }) => {
                assert_eq!(e.reason(), crate::api::Reason::UnsupportedScheme);
                assert!(e.to_string().contains(&format!("'{scheme}'")), "{e}");
            }
            other => panic!("{uri}: {other:?}"),
        }
    }
    for bad in [
        "",
        "  ",
        "file://otherhost/x.csv",
        "http://",
        "file:///bad%zz",
    ] {
        assert!(
            matches!(parse(bad), Err(DataError::InvalidUri { .. })),
            "{bad}: {:?}",
            parse(bad)
        );
    }
}

#[test]
fn detects_formats() {
    let f = |uri: &str, explicit| detect_format(&parse(uri).unwrap(), explicit, Side::Current);
    assert_eq!(f("a.csv", None).unwrap(), DataFormat::Csv);
    assert_eq!(f("a.CSV", None).unwrap(), DataFormat::Csv);
    assert_eq!(f("a.parquet", None).unwrap(), DataFormat::Parquet);
    assert_eq!(f("dir.v2/a.pq", None).unwrap(), DataFormat::Parquet);
    assert_eq!(
        f("https://h/x/a.parquet?X-Sig=abc.csv#frag", None).unwrap(),
        DataFormat::Parquet
    );
    assert_eq!(f("runs:/r1/data/cur.csv", None).unwrap(), DataFormat::Csv);
    assert_eq!(f("a.json", Some(DataFormat::Csv)).unwrap(), DataFormat::Csv);
    for bad in ["a.json", "noext", "dir.csv/file"] {
        let e = f(bad, None).unwrap_err();
        assert_eq!(e.reason(), crate::api::Reason::UnknownFormat, "{bad}");
    }
}

#[tokio::test]
async fn local_fetch_errors() {
    let ctx = FetchContext::new();
    let missing = parse("/definitely/not/here.csv").unwrap();
    let e = missing.fetch(&ctx, Side::Current).await.unwrap_err();
    assert_eq!(e.reason(), crate::api::Reason::DataNotFound);
    assert!(e.to_string().contains("/definitely/not/here.csv"));
    let dir = tempfile::tempdir().unwrap();
    let e = DataSource::File(dir.path().to_path_buf())
        .fetch(&ctx, Side::Current)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), crate::api::Reason::InvalidDataUri);
    let e = parse("runs:/abc/x.csv")
        .unwrap()
        .fetch(&ctx, Side::Reference)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("tracking URI"), "{e}");
    assert!(
        missing
            .fetch_local(Side::Current, u64::MAX)
            .unwrap()
            .is_err()
    );
    assert!(
        parse("http://h/x.csv")
            .unwrap()
            .fetch_local(Side::Current, u64::MAX)
            .is_none()
    );
}

/// A loopback HTTP server answering every request with `head` and then `body` chunks of
/// 64 KiB for as long as the client reads (`endless`), or nothing at all (`silent`).
async fn serve(head: &'static str, endless: bool, silent: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if silent {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    return;
                }
                // Answer only once the request is in.
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(head.as_bytes()).await;
                let chunk = vec![b'1'; 64 * 1024];
                while endless && stream.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    format!("http://{addr}/data.csv")
}

#[tokio::test]
async fn an_endless_body_stops_at_the_byte_cap() {
    let url = serve("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n", true, false).await;
    let ctx = FetchContext::new().with_max_bytes(1 << 20);
    let e = parse(&url)
        .unwrap()
        .fetch(&ctx, Side::Current)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), crate::api::Reason::DataTooLarge, "{e}");
    assert!(e.to_string().contains("1048576 bytes"), "{e}");
}

#[tokio::test]
async fn a_declared_length_over_the_cap_is_refused_before_reading() {
    let url = serve(
        "HTTP/1.1 200 OK\r\ncontent-length: 99999999999\r\n\r\n",
        false,
        false,
    )
    .await;
    let ctx = FetchContext::new().with_max_bytes(1 << 20);
    let e = parse(&url)
        .unwrap()
        .fetch(&ctx, Side::Reference)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), crate::api::Reason::DataTooLarge, "{e}");
}

#[tokio::test]
async fn an_html_page_served_as_data_says_so() {
    let url = serve(
        "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: 15\r\n\r\n<html>hi</html>",
        false,
        false,
    )
    .await;
    let e = parse(&url)
        .unwrap()
        .fetch(&FetchContext::new(), Side::Current)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), crate::api::Reason::MalformedData, "{e}");
    assert!(e.to_string().contains("HTML page"), "{e}");
}

#[tokio::test]
async fn a_silent_server_is_a_timeout_that_says_so() {
    let url = serve("", false, true).await;
    let ctx = FetchContext::new().with_timeout(Duration::from_secs(1));
    let started = std::time::Instant::now();
    let e = parse(&url)
        .unwrap()
        .fetch(&ctx, Side::Current)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(e.reason(), crate::api::Reason::DataTimedOut, "{e}");
    assert!(e.is_transient());
}

#[test]
fn a_stream_says_what_it_is_by_its_first_bytes() {
    let parquet = Payload::from_bytes("/dev/fd/63", &b"PAR1\x15\x04"[..]);
    assert_eq!(sniff_format(&parquet), DataFormat::Parquet);
    let csv = Payload::from_bytes("/dev/stdin", &b"amount\n1\n"[..]);
    assert_eq!(sniff_format(&csv), DataFormat::Csv);
}

#[test]
fn devices_and_oversized_files_are_refused_before_reading() {
    let dir = std::env::temp_dir().join(format!("mlrollout-cap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let zero = dir.join("zero.csv");
    let _ = std::fs::remove_file(&zero);
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let e = DataSource::File(zero)
        .fetch_local(Side::Current, u64::MAX)
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("is a character device"), "{e}");
    let big = dir.join("big.csv");
    std::fs::write(&big, vec![b'1'; 4096]).unwrap();
    let e = DataSource::File(big.clone())
        .fetch_local(Side::Reference, 1024)
        .unwrap()
        .unwrap_err();
    assert_eq!(e.reason(), crate::api::Reason::DataTooLarge, "{e}");
    assert!(
        DataSource::File(big)
            .fetch_local(Side::Reference, 4096)
            .unwrap()
            .is_ok()
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn http_connection_refused_is_unreachable() {
    // bind then drop: nothing listens on that port afterwards
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ctx = FetchContext::new().with_timeout(Duration::from_secs(5));
    let e = parse(&format!("http://127.0.0.1:{port}/x.csv"))
        .unwrap()
        .fetch(&ctx, Side::Current)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), crate::api::Reason::DataUnreachable, "{e}");
    assert!(!e.to_string().contains('\n'));
}
