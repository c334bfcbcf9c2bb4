//! `mlrollout proxy` as a process in front of a model server: answers and counts every bad
//! case without getting in the way, and captures what was sent.
//!
//! The model server here is a small in-process double (it must be made slow, or down, on
//! purpose); `tests/data_plane.rs` puts the proxy in front of the real `mlflow models serve`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use axum::Router;
use axum::routing::{get, post as post_route};
use common::http::reqwest_client;
use common::proxy::ProxyProcess;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

/// A model server double: `/invocations` answers one score per row (0.25 × the row's first
/// number); `/slow` waits 3 s; `/text` answers plain text. Counts what reached it.
struct ModelServer {
    url: String,
    seen: Arc<AtomicU64>,
}

async fn model_server() -> ModelServer {
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    let score = move |body: String| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let Ok(request) = serde_json::from_str::<Value>(&body) else {
                return (axum::http::StatusCode::OK, "ok, not json".to_owned());
            };
            let rows = request["dataframe_split"]["data"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let scores: Vec<f64> = rows
                .iter()
                .map(|row| row[0].as_f64().unwrap_or(0.0) * 0.25)
                .collect();
            (
                axum::http::StatusCode::OK,
                json!({"predictions": scores}).to_string(),
            )
        }
    };
    let app = Router::new()
        .route("/invocations", post_route(score))
        .route(
            "/slow",
            post_route(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        )
        .route("/ping", get(|| async { "" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    ModelServer { url, seen }
}

fn split(rows: &[[f64; 2]]) -> String {
    json!({"dataframe_split": {"columns": ["x", "y"], "data": rows}}).to_string()
}

async fn post(
    url: &str,
    body: impl Into<reqwest::Body>,
    id: Option<&str>,
) -> (u16, String, Option<String>) {
    let mut request = reqwest_client()
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(id) = id {
        request = request.header("x-request-id", id);
    }
    let response = request.send().await.expect("the proxy answers");
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, response.text().await.unwrap(), id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_pass_through_and_are_counted_with_their_scores() {
    let model = model_server().await;
    let proxy = tokio::task::spawn_blocking({
        let url = model.url.clone();
        move || ProxyProcess::start(&url, &[])
    })
    .await
    .unwrap();
    let (status, body, id) = post(
        &format!("{}/invocations", proxy.url()),
        split(&[[2.0, 0.0], [3.0, 1.0]]),
        Some("abc"),
    )
    .await;
    assert_eq!((status, id.as_deref()), (200, Some("abc")), "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"predictions": [0.5, 0.75]})
    );
    let (_, _, made) = post(
        &format!("{}/invocations", proxy.url()),
        split(&[[1.0, 0.0]]),
        None,
    )
    .await;
    assert!(
        made.is_some_and(|id| id.starts_with("test-pod-")),
        "the proxy makes a request id"
    );
    let metrics = tokio::task::spawn_blocking(move || {
        proxy.metrics_when("model_prediction_score_count", 3.0)
    })
    .await
    .unwrap();
    let value = |series: &str| common::proxy::value_in(&metrics, series);
    assert_eq!(value("http_requests_total{code=\"200\"}"), 2.0, "{metrics}");
    assert_eq!(value("http_request_duration_seconds_count"), 2.0);
    assert_eq!(
        value("model_prediction_score_count"),
        3.0,
        "three rows scored"
    );
    assert_eq!(
        value("model_prediction_score_bucket{le=\"0.5\"}"),
        2.0,
        "0.25 and 0.5"
    );
    assert_eq!(value("model_prediction_score_bucket{le=\"0.75\"}"), 3.0);
    assert_eq!(value("http_request_size_bytes_count"), 2.0);
    assert_eq!(model.seen.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_case_is_answered_and_counted() {
    let model = model_server().await;
    let url = model.url.clone();
    let proxy = tokio::task::spawn_blocking(move || {
        ProxyProcess::start(
            &url,
            &["--upstream-timeout", "500ms", "--max-request-bytes", "1KiB"],
        )
    })
    .await
    .unwrap();
    // Body over the limit: 413, and the model server never sees it.
    let big = split(&vec![[1.0, 2.0]; 200]);
    assert!(big.len() > 1024);
    let (status, _, _) = post(&format!("{}/invocations", proxy.url()), big, None).await;
    assert_eq!(status, 413);
    assert_eq!(
        model.seen.load(Ordering::SeqCst),
        0,
        "an oversized body is not forwarded"
    );
    // Slow model server: 504 after the timeout, not after the model's 3 s.
    let started = Instant::now();
    let (status, _, _) = post(&format!("{}/slow", proxy.url()), "{}", None).await;
    assert_eq!(status, 504);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at the timeout: {:?}",
        started.elapsed()
    );
    // Not JSON: forwarded and answered, not recorded.
    let (status, body, _) = post(&format!("{}/invocations", proxy.url()), "a,b\n1,2\n", None).await;
    assert_eq!((status, body.as_str()), (200, "ok, not json"));
    let metrics = tokio::task::spawn_blocking(move || {
        proxy.metrics_when(
            "mlrollout_proxy_unrecorded_requests_total{reason=\"not_json\"}",
            1.0,
        )
    })
    .await
    .unwrap();
    let value = |series: &str| common::proxy::value_in(&metrics, series);
    assert_eq!(value("http_requests_total{code=\"413\"}"), 1.0, "{metrics}");
    assert_eq!(value("http_requests_total{code=\"504\"}"), 1.0);
    assert_eq!(value("http_requests_total{code=\"200\"}"), 1.0);
    assert_eq!(
        value("mlrollout_proxy_unrecorded_requests_total{reason=\"not_json\"}"),
        1.0
    );
    assert_eq!(value("model_prediction_score_count"), 0.0);

    // Model server down: 502, counted as 5xx.
    let down = format!("http://127.0.0.1:{}", common::http::free_port());
    let proxy = tokio::task::spawn_blocking(move || ProxyProcess::start(&down, &[]))
        .await
        .unwrap();
    let (status, _, _) = post(
        &format!("{}/invocations", proxy.url()),
        split(&[[1.0, 1.0]]),
        None,
    )
    .await;
    assert_eq!(status, 502);
    let bad_gateway =
        tokio::task::spawn_blocking(move || proxy.value("http_requests_total{code=\"502\"}"))
            .await
            .unwrap();
    assert_eq!(bad_gateway, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_store_that_hangs_never_slows_requests() {
    // An "S3 endpoint" that accepts connections and never answers: the recorder blocks on its
    // first write, its queue (1) fills, and further sampled requests are dropped and counted.
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", hanging.local_addr().unwrap());
    let model = model_server().await;
    let url = model.url.clone();
    let proxy = tokio::task::spawn_blocking(move || {
        ProxyProcess::start_with_env(
            &url,
            &[
                "--capture-uri",
                "s3://captures/ns/m/stable",
                "--capture-fraction",
                "1",
                "--capture-max-rows",
                "1",
                "--queue",
                "1",
                "--storage-endpoint",
                &endpoint,
                "--shutdown-grace",
                "1s",
            ],
            &[("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s")],
        )
    })
    .await
    .unwrap();
    let started = Instant::now();
    for i in 0..40 {
        let (status, _, _) = post(
            &format!("{}/invocations", proxy.url()),
            split(&[[f64::from(i), 0.0]]),
            None,
        )
        .await;
        assert_eq!(status, 200);
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "40 requests took {took:?}");
    let (metrics, stopping) = tokio::task::spawn_blocking(move || {
        let metrics = proxy.metrics();
        let started = Instant::now();
        let mut proxy = proxy;
        proxy.stop();
        (metrics, started.elapsed())
    })
    .await
    .unwrap();
    // The window stuck in the hanging store does not hold the pod past its grace.
    assert!(
        stopping < Duration::from_secs(5),
        "stopping took {stopping:?}"
    );
    let dropped = common::proxy::value_in(
        &metrics,
        "mlrollout_proxy_capture_dropped_requests_total{reason=\"queue_full\"}",
    );
    assert!(dropped >= 30.0, "dropped {dropped}\n{metrics}");
    assert_eq!(
        common::proxy::value_in(&metrics, "http_requests_total{code=\"200\"}"),
        40.0
    );
    drop(hanging);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_windows_hold_what_was_sent_in_every_input_format() {
    let model = model_server().await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("ns/m/stable");
    let url = model.url.clone();
    let capture = prefix.to_str().unwrap().to_owned();
    let mut proxy = tokio::task::spawn_blocking(move || {
        ProxyProcess::start(
            &url,
            &[
                "--capture-uri",
                &capture,
                "--capture-fraction",
                "1",
                "--model-version",
                "7",
            ],
        )
    })
    .await
    .unwrap();
    let bodies = [
        json!({"dataframe_split": {"columns": ["x", "y"], "data": [[1.0, 10.0], [2.0, 20.0]]}}),
        json!({"dataframe_records": [{"x": 3.0, "y": 30.0}]}),
        json!({"instances": [{"x": 4.0, "y": 40.0}]}),
        json!({"inputs": {"x": [5.0], "y": [50.0]}}),
    ];
    for (i, body) in bodies.iter().enumerate() {
        let (status, _, _) = post(
            &format!("{}/invocations", proxy.url()),
            body.to_string(),
            Some(&format!("r{i}")),
        )
        .await;
        assert_eq!(status, 200);
    }
    // Stopping writes the open window.
    let proxy = tokio::task::spawn_blocking(move || {
        proxy.stop();
        proxy
    })
    .await
    .unwrap();
    let files: Vec<_> = std::fs::read_dir(&prefix)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", prefix.display(), proxy.log_tail()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap();
    assert!(
        mlrollout::storage::layout::window_start(name).is_some() && name.contains("_test-pod_"),
        "{name}"
    );
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&files[0]).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batch = reader.map(Result::unwrap).next().unwrap();
    let column = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
    let ids: Vec<String> = column("request_id")
        .as_string::<i32>()
        .iter()
        .map(|v| v.unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["r0#0", "r0#1", "r1", "r2", "r3"]);
    let x: Vec<f64> = column("x")
        .as_primitive::<Float64Type>()
        .iter()
        .map(Option::unwrap)
        .collect();
    assert_eq!(x, [1.0, 2.0, 3.0, 4.0, 5.0]);
    let y: Vec<f64> = column("y")
        .as_primitive::<Float64Type>()
        .iter()
        .map(Option::unwrap)
        .collect();
    assert_eq!(y, [10.0, 20.0, 30.0, 40.0, 50.0]);
    // The double scores only dataframe_split rows (0.25 × x); the others got `[]`, so no pairs.
    let predictions: Vec<Option<f64>> = column("prediction")
        .as_primitive::<Float64Type>()
        .iter()
        .collect();
    assert_eq!(predictions, [Some(0.25), Some(0.5), None, None, None]);
    let versions = column("model_version");
    assert!(versions.as_string::<i32>().iter().all(|v| v == Some("7")));
}

#[test]
fn the_captured_example_is_valid_and_says_what_the_proxy_does() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mlrollout"))
        .args(["check", "examples/fraud-detector-captured.yaml"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("Proxy:       mlrollout proxy on port 8000 (metrics on 9464); captures 10% of requests to s3://ml-captures/live"),
        "{text}"
    );
    assert!(
        text.contains("the stable variant's captured traffic (files of the last 6h)"),
        "{text}"
    );
}

#[test]
fn bad_proxy_settings_are_usage_errors_that_name_the_setting() {
    for (args, said) in [
        (vec!["--upstream", "https://127.0.0.1:1"], "--upstream"),
        (vec!["--capture-fraction", "2"], "not between 0 and 1"),
        (
            vec!["--score-buckets", "0.5,0.2"],
            "--score-buckets must increase",
        ),
        (vec!["--upstream-timeout", "0s"], "more than 0s"),
        (vec!["--max-request-bytes", "lots"], "not a size"),
        (vec!["--threads", "0"], "--threads"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mlrollout"))
            .arg("proxy")
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(said), "{args:?}: {stderr}");
    }
    // A port already taken: a clear error naming the address, not a panic.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mlrollout"))
        .args([
            "proxy",
            "--listen",
            &addr,
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
