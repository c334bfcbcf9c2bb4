//! The Prometheus analyzer against a real Prometheus scraping an exporter whose variants'
//! error rate, latency histogram and prediction-score histogram the test controls.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane and Prometheus: full suite only, `cargo test --features harness`
// (tests/run.sh turns it on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::analysis::{measure, spec};
use common::prometheus::{Exporter, PrometheusServer};
use mlrollout::analysis::prometheus::PrometheusAnalyzer;
use mlrollout::analysis::{Analyzer, MeasureRequest};
use mlrollout::core::verdict::builtin::{ERROR_RATE, LATENCY_P99, PREDICTION_PSI, canary_metrics};
use mlrollout::core::verdict::{AnalysisStage, MetricMeasurement, Verdict};

const NS: &str = "ml";
const LATENCY_BUCKETS: [f64; 6] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
const SCORE_BUCKETS: [f64; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

#[derive(Clone, Copy)]
struct Traffic {
    per_tick: f64,
    error_ratio: f64,
    latency: f64,
    score: f64,
}

const NORMAL: Traffic = Traffic {
    per_tick: 10.0,
    error_ratio: 0.02,
    latency: 0.08,
    score: 0.35,
};

/// Emits traffic for `service` (in `namespace`) every 100 ms until `stop`.
fn drive(
    exporter: Arc<Exporter>,
    namespace: &str,
    services: Vec<(String, Traffic)>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let namespace = namespace.to_string();
    std::thread::spawn(move || {
        let ns = namespace.as_str();
        while !stop.load(Ordering::SeqCst) {
            for (service, t) in &services {
                let labels = |code: &'static str| {
                    vec![
                        ("namespace", ns),
                        ("service", service.as_str()),
                        ("code", code),
                    ]
                };
                exporter.inc_counter(
                    "http_requests_total",
                    &labels("200"),
                    t.per_tick * (1.0 - t.error_ratio),
                );
                exporter.inc_counter(
                    "http_requests_total",
                    &labels("500"),
                    t.per_tick * t.error_ratio,
                );
                let base = [("namespace", ns), ("service", service.as_str())];
                exporter.observe_histogram_n(
                    "http_request_duration_seconds",
                    &base,
                    &LATENCY_BUCKETS,
                    t.latency,
                    t.per_tick as u64,
                );
                exporter.observe_histogram_n(
                    "model_prediction_score",
                    &base,
                    &SCORE_BUCKETS,
                    t.score,
                    t.per_tick as u64,
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

fn verdict(measurements: &[MetricMeasurement], metric: &str) -> Verdict {
    common::analysis::find(measurements, metric).verdict
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_are_judged_against_stable_on_real_prometheus() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = Arc::new(Exporter::start());
    let stop = Arc::new(AtomicBool::new(false));
    let services = vec![
        ("same-stable".to_string(), NORMAL),
        ("same-candidate".to_string(), NORMAL),
        ("errors-stable".to_string(), NORMAL),
        (
            "errors-candidate".to_string(),
            Traffic {
                error_ratio: 0.06,
                ..NORMAL
            },
        ),
        ("slow-stable".to_string(), NORMAL),
        (
            "slow-candidate".to_string(),
            Traffic {
                latency: 0.8,
                ..NORMAL
            },
        ),
        ("quiet-stable".to_string(), NORMAL),
        ("shifted-stable".to_string(), NORMAL),
        (
            "shifted-candidate".to_string(),
            Traffic {
                score: 0.85,
                ..NORMAL
            },
        ),
    ];
    let traffic = drive(exporter.clone(), NS, services, stop.clone());
    let prometheus = PrometheusServer::start_scraping(
        exporter.target(),
        r#"rate(http_requests_total{service="same-candidate"}[10s])"#,
    )
    .await;
    let url = prometheus.url();
    // Let a few more scrapes land so every rate window has several points.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let analyzer = PrometheusAnalyzer::new(Duration::from_secs(5)).unwrap();
    let spec = spec(&url, "10s");

    let same = measure(&analyzer, &spec, NS, "same", AnalysisStage::Canary).await;
    assert_eq!(verdict(&same, ERROR_RATE), Verdict::Passed, "{same:?}");
    assert_eq!(verdict(&same, LATENCY_P99), Verdict::Passed, "{same:?}");
    let error_rate = same.iter().find(|m| m.name == ERROR_RATE).unwrap();
    let measured = error_rate.candidate.unwrap();
    assert!(
        (measured - 0.02).abs() < 0.005,
        "error rate measured {measured}"
    );

    let errors = measure(&analyzer, &spec, NS, "errors", AnalysisStage::Canary).await;
    assert_eq!(verdict(&errors, ERROR_RATE), Verdict::Failed, "{errors:?}");
    assert_eq!(verdict(&errors, LATENCY_P99), Verdict::Passed, "{errors:?}");

    let slow = measure(&analyzer, &spec, NS, "slow", AnalysisStage::Canary).await;
    assert_eq!(verdict(&slow, LATENCY_P99), Verdict::Failed, "{slow:?}");
    assert_eq!(verdict(&slow, ERROR_RATE), Verdict::Passed, "{slow:?}");

    // No candidate traffic at all: not a pass.
    let quiet = measure(&analyzer, &spec, NS, "quiet", AnalysisStage::Canary).await;
    assert_eq!(
        verdict(&quiet, ERROR_RATE),
        Verdict::Inconclusive,
        "{quiet:?}"
    );
    assert_eq!(
        verdict(&quiet, LATENCY_P99),
        Verdict::Inconclusive,
        "{quiet:?}"
    );

    // Shadow: the prediction-score distribution.
    let same_shadow = measure(&analyzer, &spec, NS, "same", AnalysisStage::Shadow).await;
    assert_eq!(
        verdict(&same_shadow, PREDICTION_PSI),
        Verdict::Passed,
        "{same_shadow:?}"
    );
    let shifted = measure(&analyzer, &spec, NS, "shifted", AnalysisStage::Shadow).await;
    assert_eq!(
        verdict(&shifted, PREDICTION_PSI),
        Verdict::Failed,
        "{shifted:?}"
    );
    assert!(
        shifted
            .iter()
            .find(|m| m.name == PREDICTION_PSI)
            .unwrap()
            .candidate
            .unwrap()
            > 1.0
    );

    // A query Prometheus rejects is an error, not a verdict.
    let mut bad = spec.clone();
    bad.rollout.analysis.as_mut().unwrap().interval = "10s".into();
    let mut metrics = canary_metrics();
    metrics[0].query = "sum(rate(http_requests_total[".into();
    let broken = analyzer
        .measure(MeasureRequest {
            namespace: NS,
            name: "same",
            spec: &bad,
            stage: AnalysisStage::Canary,
            metrics,
            bearer_token: None,
            since_step: std::time::Duration::from_secs(60),
        })
        .await;
    assert_eq!(broken[0].verdict, Verdict::Error);
    assert!(
        broken[0].error.as_deref().unwrap().contains("bad_data"),
        "{broken:?}"
    );

    // Prometheus down: every measurement is an error.
    drop(prometheus);
    let down = measure(&analyzer, &spec, NS, "same", AnalysisStage::Canary).await;
    assert!(down.iter().all(|m| m.verdict == Verdict::Error), "{down:?}");
    assert!(
        down[0].error.as_deref().unwrap().contains("unreachable"),
        "{down:?}"
    );

    stop.store(true, Ordering::SeqCst);
    traffic.join().unwrap();
}

/// Through the controller: a canary whose error rate triples on a real Prometheus is rolled
/// back to 100 % stable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tripled_error_rate_rolls_back_through_the_controller() {
    use gateway_api::httproutes::HttpRoute;
    use kube::api::Api;
    use mlrollout::api::{ModelDeployment, Phase};

    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = Arc::new(Exporter::start());
    let stop = Arc::new(AtomicBool::new(false));
    let client = common::cluster::client().await;
    let ns = common::cluster::namespace(&client, "analysis-prometheus").await;
    let traffic = drive(
        exporter.clone(),
        &ns,
        vec![
            ("m-stable".to_string(), NORMAL),
            (
                "m-candidate".to_string(),
                Traffic {
                    error_ratio: 0.06,
                    ..NORMAL
                },
            ),
        ],
        stop.clone(),
    );
    let prometheus = PrometheusServer::start_scraping(
        exporter.target(),
        r#"rate(http_requests_total{service="m-candidate"}[10s])"#,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let registry = Arc::new(mlrollout::registry::memory::InMemoryRegistry::new());
    registry.register("m", 3, &[], &[]);
    registry.register("m", 4, &[], &[]);
    registry.set_alias("m", "champion", 3);
    let ctx = mlrollout::controller::Context::new(
        client.clone(),
        registry,
        mlrollout::metrics::Metrics::default(),
    )
    .with_analyzer(Arc::new(
        PrometheusAnalyzer::new(Duration::from_secs(5)).unwrap(),
    ));
    let operator = common::operator::Operator::run(
        ctx,
        mlrollout::controller::WatchScope::Namespace(ns.clone()),
    );
    let mdeps: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let resource: ModelDeployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "m", "namespace": ns},
        "spec": {
            "model": {"trackingUri": "http://mlflow:5000", "name": "m"},
            "traffic": {"provider": "gatewayAPI", "parentRefs": [{"name": "gw"}]},
            "rollout": {"stepDuration": "1h", "progressDeadline": "1h",
                        "analysis": {"prometheus": {"address": prometheus.url()}, "interval": "10s", "count": 100}}
        }
    }))
    .unwrap();
    common::operator::at_first_canary_step(&client, &resource, k8s_openapi::jiff::Timestamp::now())
        .await;

    let routes: Api<HttpRoute> = Api::namespaced(client.clone(), &ns);
    let status = common::cluster::eventually("rolled back", Duration::from_secs(60), || async {
        let s = mdeps.get("m").await.unwrap().status.unwrap_or_default();
        (s.phase == Phase::RolledBack).then_some(s)
    })
    .await;
    let record = status.history.last().unwrap();
    assert_eq!(
        record.reason,
        mlrollout::api::RolloutReason::AnalysisFailed,
        "{record:?}"
    );
    let message = status.message.clone().unwrap_or_default();
    assert!(message.contains("error-rate failed"), "{message}");
    let weights = common::cluster::eventually(
        "the HTTPRoute on one backend",
        Duration::from_secs(5),
        || async {
            let route = routes.get("m").await.unwrap();
            let backends = route.spec.rules.unwrap()[0].backend_refs.clone().unwrap();
            (backends.len() == 1).then(|| (backends[0].name.clone(), backends[0].weight))
        },
    )
    .await;
    assert_eq!(weights, ("m-stable".to_string(), Some(100)));
    operator.stop().await;
    common::cluster::delete_namespace(&client, &ns).await;
    stop.store(true, Ordering::SeqCst);
    traffic.join().unwrap();
}
