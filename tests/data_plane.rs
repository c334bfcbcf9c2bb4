//! The data plane with real parts: a scoring model registered in the real MLflow, served by
//! the real `mlflow models serve`, behind the real `mlrollout proxy`; the real Prometheus
//! scrapes the proxies with the `namespace`/`service` labels a ServiceMonitor gives, and the
//! operator's real Prometheus analyzer judges with the built-in queries:
//! - both variants have error-rate and p99 latency from the proxy (no mesh);
//! - a shadow candidate whose scores are moved by a fixed amount fails the prediction-PSI
//!   verdict, an identical one passes;
//! - captured windows read back hold what was sent, and `mlrollout drift` on captured traffic
//!   from shifted requests flags exactly the shifted feature.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs MLflow (PyPI venv) and Prometheus (Debian): full suite only, `--features harness`.
#![cfg(feature = "harness")]

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use common::analysis::{find, measure, spec};
use common::http::reqwest_client;
use common::mlflow::{ModelServer, mlflow_server, register_scoring_model};
use common::prometheus::PrometheusServer;
use common::proxy::ProxyProcess;
use mlrollout::analysis::prometheus::PrometheusAnalyzer;
use mlrollout::api::Verdict;
use mlrollout::core::verdict::AnalysisStage;
use mlrollout::core::verdict::builtin::{ERROR_RATE, LATENCY_P99, PREDICTION_PSI};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

const NS: &str = "dataplane";
const FEATURES: [&str; 4] = ["f0", "f1", "f2", "f3"];

/// Deterministic standard-normal rows (LCG + Box–Muller), `shift` added to `f1`.
fn rows(seed: u64, n: usize, shift: f64) -> Vec<[f64; 4]> {
    let mut normal = common::sample::normals(seed);
    (0..n)
        .map(|_| {
            let mut row = [0.0; 4];
            for value in &mut row {
                *value = (normal() * 1000.0).round() / 1000.0;
            }
            row[1] += shift;
            row
        })
        .collect()
}

/// The rows as a scoring request in one of MLflow's four formats (by `format % 4`).
fn body(rows: &[[f64; 4]], format: usize) -> Value {
    let records: Vec<Value> = rows
        .iter()
        .map(|r| json!({"f0": r[0], "f1": r[1], "f2": r[2], "f3": r[3]}))
        .collect();
    match format % 4 {
        0 => json!({"dataframe_split": {"columns": FEATURES, "data": rows}}),
        1 => json!({"dataframe_records": records}),
        2 => json!({"instances": records}),
        _ => json!({"inputs": {
            "f0": rows.iter().map(|r| r[0]).collect::<Vec<_>>(),
            "f1": rows.iter().map(|r| r[1]).collect::<Vec<_>>(),
            "f2": rows.iter().map(|r| r[2]).collect::<Vec<_>>(),
            "f3": rows.iter().map(|r| r[3]).collect::<Vec<_>>(),
        }}),
    }
}

/// Sends `rows` in requests of 1–3 rows, in rotating formats, to every proxy (the first one
/// as the live request, the others as mirrors of it).
async fn send(proxies: &[&ProxyProcess], rows: &[[f64; 4]]) {
    let client = reqwest_client();
    let mut at = 0;
    let mut i = 0;
    while at < rows.len() {
        let end = (at + 1 + i % 3).min(rows.len());
        let payload = body(&rows[at..end], i).to_string();
        for proxy in proxies {
            let response = client
                .post(format!("{}/invocations", proxy.url()))
                .header("content-type", "application/json")
                .header("x-request-id", format!("req-{i}"))
                .body(payload.clone())
                .send()
                .await
                .expect("the proxy answers");
            let status = response.status();
            let text = response.text().await.unwrap();
            assert!(status.is_success(), "{status}: {text}");
        }
        at = end;
        i += 1;
    }
}

/// Scrape config: each proxy's metrics under the Service labels a ServiceMonitor would give.
fn scrape_config(targets: &[(&ProxyProcess, &str)]) -> String {
    let mut cfg = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: model-servers\n    static_configs:\n",
    );
    for (proxy, service) in targets {
        let _ = write!(
            cfg,
            "      - targets: ['{}']\n        labels: {{namespace: {NS}, service: {service}}}\n",
            proxy.metrics_addr
        );
    }
    cfg
}

/// Waits until Prometheus holds `want` scored predictions for `service`.
fn wait_scraped(prometheus: &PrometheusServer, service: &str, want: f64) {
    let query =
        format!("sum(model_prediction_score_count{{namespace=\"{NS}\", service=\"{service}\"}})");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = prometheus.query(&query).first().map_or(0.0, |s| s.value);
        if (seen - want).abs() < 0.5 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service}: {seen} of {want} predictions scraped"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The only Parquet window under `prefix`, read as (request ids, features by column).
fn read_window(prefix: &Path) -> (Vec<String>, Vec<Vec<f64>>) {
    let files: Vec<_> = std::fs::read_dir(prefix)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&files[0]).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut ids = Vec::new();
    let mut columns = vec![Vec::new(); FEATURES.len()];
    for batch in reader {
        let batch = batch.unwrap();
        let id = batch
            .column(batch.schema().index_of("request_id").unwrap())
            .clone();
        ids.extend(id.as_string::<i32>().iter().map(|v| v.unwrap().to_owned()));
        for (i, name) in FEATURES.iter().enumerate() {
            let column = batch.column(batch.schema().index_of(name).unwrap()).clone();
            columns[i].extend(
                column
                    .as_primitive::<Float64Type>()
                    .iter()
                    .map(Option::unwrap),
            );
        }
    }
    (ids, columns)
}

fn write_reference(path: &Path, rows: &[[f64; 4]]) {
    let mut csv = String::from("f0,f1,f2,f3\n");
    for r in rows {
        let _ = writeln!(csv, "{},{},{},{}", r[0], r[1], r[2], r[3]);
    }
    std::fs::write(path, csv).unwrap();
}

/// `mlrollout drift` on a reference CSV and a captured window: the drifted features' names.
fn drifted(reference: &Path, window_dir: &Path) -> Vec<String> {
    let window = std::fs::read_dir(window_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mlrollout"))
        .args(["drift", "--output", "json", "--reference"])
        .arg(reference)
        .arg("--current")
        .arg(&window)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)));
    let features = report["features"].as_array().unwrap();
    let compared: Vec<&str> = features
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        compared, FEATURES,
        "only the features are compared, not the bookkeeping columns"
    );
    features
        .iter()
        .filter(|f| f["drifted"] == json!(true))
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_feeds_analysis_and_drift_from_a_real_model_server() {
    let started = Instant::now();
    common::http::install_crypto_provider();
    let model = format!("dataplane-{}", std::process::id());
    let (tracking, same, shifted) = tokio::task::spawn_blocking({
        let model = model.clone();
        move || {
            let tracking = mlflow_server().uri();
            let same = register_scoring_model(&tracking, &model, 0.0);
            let shifted = register_scoring_model(&tracking, &model, 0.3);
            (tracking, same, shifted)
        }
    })
    .await
    .unwrap();
    let (same_server, shifted_server) = tokio::task::spawn_blocking({
        let (uri_same, uri_shifted) = (
            format!("models:/{model}/{same}"),
            format!("models:/{model}/{shifted}"),
        );
        move || {
            let other = std::thread::spawn({
                let tracking = tracking.clone();
                move || ModelServer::start(&tracking, &uri_shifted)
            });
            (
                ModelServer::start(&tracking, &uri_same),
                other.join().unwrap(),
            )
        }
    })
    .await
    .unwrap();
    let captures = tempfile::tempdir().unwrap();
    let stable_prefix = captures.path().join(NS).join("same/stable");
    let drifted_prefix = captures.path().join(NS).join("drifted/stable");
    let (same_url, shifted_url) = (same_server.url(), shifted_server.url());
    let (stable_capture, drifted_capture) = (
        stable_prefix.to_str().unwrap().to_owned(),
        drifted_prefix.to_str().unwrap().to_owned(),
    );
    let version = same.clone();
    let (mut stable, identical, moved, mut drifting) = tokio::task::spawn_blocking(move || {
        let capture = |prefix: &str| {
            vec![
                "--capture-uri".to_owned(),
                prefix.to_owned(),
                "--capture-fraction".to_owned(),
                "1".to_owned(),
                "--model-version".to_owned(),
                version.clone(),
            ]
        };
        let flags = capture(&stable_capture);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let drift_flags = capture(&drifted_capture);
        let drift_flags: Vec<&str> = drift_flags.iter().map(String::as_str).collect();
        (
            ProxyProcess::start(&same_url, &flags),
            ProxyProcess::start(&same_url, &[]),
            ProxyProcess::start(&shifted_url, &[]),
            ProxyProcess::start(&same_url, &drift_flags),
        )
    })
    .await
    .unwrap();
    let prometheus = PrometheusServer::start_with_config(&scrape_config(&[
        (&stable, "same-stable"),
        (&stable, "shifted-stable"),
        (&identical, "same-candidate"),
        (&moved, "shifted-candidate"),
    ]));
    // Counters must be seen before the load too, or their rate over the window is 0.
    let prometheus = tokio::task::spawn_blocking(move || {
        let up = format!("count(up{{namespace=\"{NS}\"}} == 1)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while prometheus.query(&up).first().map_or(0.0, |s| s.value) < 4.0 {
            assert!(
                Instant::now() < deadline,
                "targets not scraped:\n{}",
                prometheus.log_tail(20)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        prometheus
    })
    .await
    .unwrap();
    let set_up = started.elapsed();

    // Live traffic to stable, mirrored to both candidates.
    let live = rows(1, 300, 0.0);
    send(&[&stable, &identical, &moved], &live).await;
    let prometheus = tokio::task::spawn_blocking(move || {
        for service in ["same-stable", "same-candidate", "shifted-candidate"] {
            wait_scraped(&prometheus, service, 300.0);
        }
        prometheus
    })
    .await
    .unwrap();

    let analyzer = PrometheusAnalyzer::new(Duration::from_secs(10)).unwrap();
    // The rate windows span the whole load.
    let spec = spec(&prometheus.url(), "5m");
    for name in ["same", "shifted"] {
        let canary = measure(&analyzer, &spec, NS, name, AnalysisStage::Canary).await;
        for metric in [ERROR_RATE, LATENCY_P99] {
            let m = find(&canary, metric);
            assert!(
                m.candidate.is_some() && m.stable.is_some(),
                "{name}: {metric} has data for both variants: {m:?}"
            );
        }
        assert_eq!(find(&canary, ERROR_RATE).candidate, Some(0.0), "{canary:?}");
    }
    let same_shadow = measure(&analyzer, &spec, NS, "same", AnalysisStage::Shadow).await;
    let psi = find(&same_shadow, PREDICTION_PSI);
    assert_eq!(
        psi.verdict,
        Verdict::Passed,
        "identical model: {same_shadow:?}"
    );
    let moved_shadow = measure(&analyzer, &spec, NS, "shifted", AnalysisStage::Shadow).await;
    let psi = find(&moved_shadow, PREDICTION_PSI);
    assert_eq!(
        psi.verdict,
        Verdict::Failed,
        "scores moved by 0.3: {moved_shadow:?}"
    );
    assert!(
        psi.candidate
            .is_some_and(|v| v > spec.shadow.max_prediction_psi),
        "{psi:?}"
    );

    // Requests whose f1 moved by 1.5 standard deviations, through another stable proxy.
    let shifted_rows = rows(2, 300, 1.5);
    send(&[&drifting], &shifted_rows).await;
    let (stable, drifting) = tokio::task::spawn_blocking(move || {
        stable.stop();
        drifting.stop();
        (stable, drifting)
    })
    .await
    .unwrap();
    let (ids, columns) = read_window(&stable_prefix);
    assert_eq!(ids.len(), live.len(), "{}", stable.log_tail());
    assert_eq!(ids.first().map(String::as_str), Some("req-0"));
    for (i, column) in columns.iter().enumerate() {
        let sent: Vec<f64> = live.iter().map(|r| r[i]).collect();
        assert_eq!(column, &sent, "{} as captured", FEATURES[i]);
    }
    let (ids, _) = read_window(&drifted_prefix);
    assert_eq!(ids.len(), shifted_rows.len(), "{}", drifting.log_tail());

    let reference = captures.path().join("reference.csv");
    write_reference(&reference, &rows(3, 2000, 0.0));
    assert_eq!(
        drifted(&reference, &stable_prefix),
        Vec::<String>::new(),
        "live traffic like the reference"
    );
    assert_eq!(
        drifted(&reference, &drifted_prefix),
        ["f1"],
        "the shifted feature, only it"
    );
    eprintln!(
        "data_plane: took {:.0} s (set-up {:.0} s, model servers {:.0} s / {:.0} s)",
        started.elapsed().as_secs_f64(),
        set_up.as_secs_f64(),
        same_server.startup.as_secs_f64(),
        shifted_server.startup.as_secs_f64()
    );
}
