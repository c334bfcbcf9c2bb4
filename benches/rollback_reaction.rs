//! Rollback reaction: a candidate at its first canary step whose error rate jumps. Measures the
//! time from the jump being visible in Prometheus (a real Prometheus scraping an exporter every
//! second) to the HTTPRoute holding 0 % on the candidate, with the operator's Prometheus
//! analyzer and controller. Target: at most one analysis interval + 2 s.
//! Run: `cargo bench --bench rollback_reaction` (after `bash tests/harness/install.sh`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::operator::kubelet;
use common::prometheus::{Exporter, PrometheusServer};
use futures::FutureExt;
use gateway_api::httproutes::HttpRoute;
use kube::api::Api;
use mlrollout::analysis::prometheus::PrometheusAnalyzer;
use mlrollout::api::ModelDeployment;
use mlrollout::controller::{self, Context, WatchScope};
use mlrollout::metrics::Metrics;
use mlrollout::registry::memory::InMemoryRegistry;
use mlrollout::server::Health;

const NS: &str = "ml";
const INTERVAL_S: u64 = 5;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("rollback_reaction: run it with `cargo bench --bench rollback_reaction`");
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runs: usize = std::env::var("MLROLLOUT_REACTION_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut reactions = Vec::new();
    for run in 0..runs {
        let r = runtime.block_on(one_run(run));
        println!(
            "run {}: rollback {:.2} s after the jump was visible in Prometheus",
            run + 1,
            r.as_secs_f64()
        );
        reactions.push(r.as_secs_f64());
    }
    reactions.sort_by(f64::total_cmp);
    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!(
        "| rollback reaction, median of {runs} (jump visible in Prometheus → HTTPRoute 0 % candidate) | {:.2} s (max {:.2} s) | <= {} s (interval {INTERVAL_S} s + 2 s) |",
        reactions[reactions.len() / 2],
        reactions.last().unwrap(),
        INTERVAL_S + 2
    );
}

async fn one_run(run: usize) -> Duration {
    let exporter = Arc::new(Exporter::start());
    let candidate_errors = Arc::new(AtomicU64::new(1)); // percent
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (exporter, errors, stop) = (exporter.clone(), candidate_errors.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                for (service, pct) in [
                    ("m-stable", 1.0),
                    ("m-candidate", errors.load(Ordering::SeqCst) as f64),
                ] {
                    let labels = |code: &'static str| {
                        vec![("namespace", NS), ("service", service), ("code", code)]
                    };
                    exporter.inc_counter(
                        "http_requests_total",
                        &labels("200"),
                        10.0 * (1.0 - pct / 100.0),
                    );
                    exporter.inc_counter("http_requests_total", &labels("500"), 10.0 * pct / 100.0);
                    exporter.observe_histogram_n(
                        "http_request_duration_seconds",
                        &[("namespace", NS), ("service", service)],
                        &[0.1, 0.5, 1.0],
                        0.05,
                        10,
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let target = exporter.target();
    let prometheus = tokio::task::spawn_blocking(move || PrometheusServer::start(&[target]))
        .await
        .unwrap();
    let p = &prometheus;
    tokio::task::block_in_place(|| {
        p.wait_for_series(
            r#"rate(http_requests_total{service="m-candidate"}[5s])"#,
            Duration::from_secs(60),
        )
    });

    let api = common::fake_api::fake_api().await;
    let registry = Arc::new(InMemoryRegistry::new());
    registry.register("m", 3, &[], &[]);
    registry.register("m", 4, &[], &[]);
    registry.set_alias("m", "champion", 3);
    let ctx = Context::new(api.client.clone(), registry, Metrics::default()).with_analyzer(
        Arc::new(PrometheusAnalyzer::new(Duration::from_secs(5)).unwrap()),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(controller::run(
        ctx,
        WatchScope::AllNamespaces,
        Health::new(),
        rx.map(|_| ()),
    ));
    let _kubelet = kubelet(
        api.client.clone(),
        NS,
        Arc::new(Mutex::new(vec!["-stable".into(), "-candidate".into()])),
    );

    let resource: ModelDeployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "m", "namespace": NS},
        "spec": {
            "model": {"trackingUri": "http://mlflow:5000", "name": "m"},
            "traffic": {"provider": "gatewayAPI", "parentRefs": [{"name": "gw"}]},
            "rollout": {"steps": [10, 50, 100], "stepDuration": "1h", "progressDeadline": "1h",
                        "analysis": {"prometheus": {"address": prometheus.url()}, "interval": format!("{INTERVAL_S}s"), "count": 1000,
                                     "metrics": [{"name": "error-rate", "query": mlrollout::analysis::defaults::error_rate_query(),
                                                  "maxIncrease": {"ratio": 2.0}, "consecutiveErrorLimit": 100, "inconclusiveLimit": 100}]}}
        }
    }))
    .unwrap();
    common::operator::at_first_canary_step(&api.client, &resource).await;
    let routes: Api<HttpRoute> = Api::namespaced(api.client.clone(), NS);
    let candidate_weight = || async {
        routes.get_opt("m").await.ok().flatten().and_then(|r| {
            let backends = r.spec.rules?.first()?.backend_refs.clone()?;
            Some(
                backends
                    .iter()
                    .find(|b| b.name.ends_with("-candidate"))
                    .and_then(|b| b.weight)
                    .unwrap_or(0),
            )
        })
    };
    // Healthy canary for a few intervals (the analysis passes).
    let wait_start = Instant::now();
    while candidate_weight().await != Some(10) {
        assert!(
            wait_start.elapsed() < Duration::from_secs(60),
            "the canary never reached 10 %"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2 * INTERVAL_S + (run as u64 % 3))).await;

    // The jump.
    candidate_errors.store(10, Ordering::SeqCst);
    let ratio = r#"sum(rate(http_requests_total{service="m-candidate",code="500"}[5s])) / sum(rate(http_requests_total{service="m-candidate"}[5s]))"#;
    let visible = loop {
        let samples = tokio::task::block_in_place(|| prometheus.query(ratio));
        if samples.first().is_some_and(|s| s.value > 0.02) {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rolled_back = loop {
        if candidate_weight().await == Some(0) {
            break Instant::now();
        }
        assert!(
            visible.elapsed() < Duration::from_secs(120),
            "never rolled back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = tx.send(());
    let _ = task.await;
    stop.store(true, Ordering::SeqCst);
    let _ = traffic.join();
    rolled_back.saturating_duration_since(visible)
}
