//! Smoke tests for the real-server test harness (tests/common): a real
//! MLflow server and a real Prometheus scraping a test-controlled exporter.
//!
//! Needs `tests/harness/install.sh` to have run (and `target/harness.env`
//! sourced, or the default `target/pyenv` venv present).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code states expectations

mod common;

use std::time::Duration;

use common::mlflow::mlflow_server;
use common::prometheus::{Exporter, PrometheusServer};
use serde_json::{Value, json};

/// `base?k=v&...`, percent-encoded (reqwest's `query()` needs a feature the
/// crate does not enable).
fn url_with(base: &str, params: &[(&str, &str)]) -> reqwest::Url {
    reqwest::Url::parse_with_params(base, params).expect("valid URL")
}

#[tokio::test]
#[cfg_attr(not(feature = "harness"), ignore = "needs the harness (MLflow)")]
async fn mlflow_registered_model_roundtrip() {
    // Start-up blocks for tens of seconds: keep it off the async worker.
    let srv = tokio::task::spawn_blocking(mlflow_server)
        .await
        .expect("start mlflow");
    let base = format!("{}/api/2.0/mlflow", srv.uri());
    let client = common::http::reqwest_client();
    let name = format!("smoke-model-{}", std::process::id());

    let resp = client
        .post(format!("{base}/registered-models/create"))
        .json(&json!({ "name": name }))
        .send()
        .await
        .expect("POST registered-models/create");
    let status = resp.status();
    let body: Value = resp.json().await.expect("create: JSON body");
    assert!(status.is_success(), "create returned {status}: {body}");
    assert_eq!(body["registered_model"]["name"], name.as_str(), "{body}");

    let resp = client
        .get(url_with(
            &format!("{base}/registered-models/get"),
            &[("name", &name)],
        ))
        .send()
        .await
        .expect("GET registered-models/get");
    let status = resp.status();
    let body: Value = resp.json().await.expect("get: JSON body");
    assert!(status.is_success(), "get returned {status}: {body}");
    assert_eq!(body["registered_model"]["name"], name.as_str(), "{body}");

    // A missing model is a JSON 404 RESOURCE_DOES_NOT_EXIST.
    let resp = client
        .get(url_with(
            &format!("{base}/registered-models/get"),
            &[("name", "no-such-model")],
        ))
        .send()
        .await
        .expect("GET missing model");
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.expect("404: JSON body");
    assert_eq!(body["error_code"], "RESOURCE_DOES_NOT_EXIST", "{body}");
}

#[test]
#[cfg_attr(not(feature = "harness"), ignore = "needs the harness (MLflow)")]
fn mlflow_helpers_work_without_a_runtime() {
    let srv = mlflow_server();
    let resp = common::http::get(
        &format!("127.0.0.1:{}", srv.port()),
        "/health",
        Duration::from_secs(10),
    )
    .expect("GET /health");
    assert_eq!(resp.status, 200);
    assert!(srv.dir().join("mlflow.db").exists());
    let python = common::mlflow::python();
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import mlflow, sklearn, pandas, pyarrow, scipy; print(mlflow.__version__)",
        ])
        .output()
        .expect("run venv python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(version.starts_with("3."), "mlflow version {version}");
}

#[tokio::test]
async fn exporter_serves_text_format() {
    let exp = Exporter::start();
    exp.set_counter(
        "mlrollout_test_requests_total",
        &[("variant", "stable")],
        42.0,
    );
    exp.inc_counter(
        "mlrollout_test_requests_total",
        &[("variant", "candidate")],
        2.0,
    );
    exp.set_gauge("mlrollout_test_temperature", &[], f64::NAN);
    for v in [0.02, 0.2, 2.0] {
        exp.observe_histogram(
            "mlrollout_test_latency_seconds",
            &[("variant", "stable")],
            &[0.05, 0.5],
            v,
        );
    }
    let text = common::http::reqwest_client()
        .get(exp.url())
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    for line in [
        "# TYPE mlrollout_test_requests_total counter",
        "mlrollout_test_requests_total{variant=\"stable\"} 42",
        "mlrollout_test_requests_total{variant=\"candidate\"} 2",
        "mlrollout_test_temperature NaN",
        "mlrollout_test_latency_seconds_bucket{variant=\"stable\",le=\"0.05\"} 1",
        "mlrollout_test_latency_seconds_bucket{variant=\"stable\",le=\"0.5\"} 2",
        "mlrollout_test_latency_seconds_bucket{variant=\"stable\",le=\"+Inf\"} 3",
        "mlrollout_test_latency_seconds_count{variant=\"stable\"} 3",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    assert_eq!(exp.scrape_count(), 1);
}

#[tokio::test]
#[cfg_attr(not(feature = "harness"), ignore = "needs the harness (Prometheus)")]
async fn prometheus_scrapes_exporter() {
    let exp = Exporter::start();
    exp.set_counter(
        "mlrollout_test_requests_total",
        &[("variant", "stable")],
        42.0,
    );
    let target = exp.target();
    let prom = tokio::task::spawn_blocking(move || {
        let prom = PrometheusServer::start(&[target]);
        prom.wait_for_series(
            r#"mlrollout_test_requests_total{variant="stable"}"#,
            Duration::from_secs(90),
        );
        prom
    })
    .await
    .expect("start prometheus");

    let body: Value = common::http::reqwest_client()
        .get(url_with(
            &format!("{}/api/v1/query", prom.url()),
            &[(
                "query",
                r#"mlrollout_test_requests_total{variant="stable"}"#,
            )],
        ))
        .send()
        .await
        .expect("GET /api/v1/query")
        .json()
        .await
        .expect("JSON body");
    assert_eq!(body["status"], "success", "{body}");
    let result = body["data"]["result"].as_array().expect("result array");
    assert_eq!(result.len(), 1, "{body}");
    assert_eq!(result[0]["metric"]["variant"], "stable", "{body}");
    assert_eq!(result[0]["metric"]["job"], "mlrollout-test", "{body}");
    assert_eq!(result[0]["value"][1], "42", "{body}");

    // The blocking helper agrees, and a bad query is an error, not a panic.
    let samples = prom.query(r#"sum by (variant) (mlrollout_test_requests_total)"#);
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].metric["variant"], "stable");
    assert_eq!(samples[0].value, 42.0);
    let err = prom.query_json("sum(").expect_err("bad query must fail");
    assert!(err.contains("400") && err.contains("bad_data"), "{err}");

    let dir = prom.dir().to_path_buf();
    drop(prom);
    assert!(
        !dir.exists(),
        "prometheus scratch dir not removed: {}",
        dir.display()
    );
}
