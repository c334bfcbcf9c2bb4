//! The sequential judge end to end: the operator on the real API server, its Prometheus
//! analyzer against a real Prometheus scraping a load generator's counters. The generator
//! splits each resource's requests by the candidate weight the operator puts on its HTTPRoute
//! (so the counters move with the rollout, as a real gateway's would), with binomial errors.
//! A candidate whose error rate doubles is rolled back at its first step; an identical one is
//! promoted through 10 → 50 → 100 %.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane and Prometheus: full suite only, `cargo test --features harness`
// (tests/run.sh turns it on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::cluster;
use common::operator::Operator;
use common::prometheus::{Exporter, PrometheusServer};
use gateway_api::httproutes::HttpRoute;
use kube::api::Api;
use mlrollout::analysis::prometheus::PrometheusAnalyzer;
use mlrollout::api::{
    ModelDeployment, ModelDeploymentStatus, Phase, RolloutOutcome, RolloutReason,
};
use mlrollout::controller::{Context, WatchScope};
use mlrollout::metrics::Metrics;
use mlrollout::registry::memory::InMemoryRegistry;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Binomial, Distribution};

/// Requests per 100 ms tick and resource (1,000 per second).
const REQUESTS_PER_TICK: u64 = 100;
const STABLE_ERROR_RATE: f64 = 0.05;

/// One resource's traffic: its name, the candidate's error rate, and the candidate weight the
/// operator last put on its route (percent).
struct Service {
    name: &'static str,
    candidate_error_rate: f64,
    weight: Arc<AtomicU64>,
}

/// Emits each resource's requests every 100 ms until `stop`: split binomially by the route's
/// weight, errors binomial in each variant's requests.
fn generate(
    exporter: Arc<Exporter>,
    namespace: String,
    services: Vec<(&'static str, f64, Arc<AtomicU64>)>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut rng = StdRng::seed_from_u64(7);
        while !stop.load(Ordering::SeqCst) {
            for (name, candidate_rate, weight) in &services {
                let w = weight.load(Ordering::SeqCst) as f64 / 100.0;
                let candidate = Binomial::new(REQUESTS_PER_TICK, w)
                    .unwrap()
                    .sample(&mut rng);
                for (variant, requests, rate) in [
                    ("candidate", candidate, *candidate_rate),
                    ("stable", REQUESTS_PER_TICK - candidate, STABLE_ERROR_RATE),
                ] {
                    let errors = Binomial::new(requests, rate).unwrap().sample(&mut rng);
                    let service = format!("{name}-{variant}");
                    let labels = |code: &'static str| {
                        vec![
                            ("namespace", namespace.as_str()),
                            ("service", service.as_str()),
                            ("code", code),
                        ]
                    };
                    exporter.inc_counter(
                        "http_requests_total",
                        &labels("200"),
                        (requests - errors) as f64,
                    );
                    exporter.inc_counter("http_requests_total", &labels("500"), errors as f64);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// The candidate weight on `name`'s HTTPRoute (0 without a route or a candidate backend).
async fn route_weight(routes: &Api<HttpRoute>, name: &str) -> u64 {
    let Some(route) = routes.get_opt(name).await.ok().flatten() else {
        return 0;
    };
    route
        .spec
        .rules
        .and_then(|rules| rules.first()?.backend_refs.clone())
        .and_then(|backends| {
            backends
                .iter()
                .find(|b| b.name.ends_with("-candidate"))
                .and_then(|b| b.weight)
        })
        .map_or(0, |w| w.max(0) as u64)
}

fn resource(namespace: &str, name: &str, prometheus: &str) -> ModelDeployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"trackingUri": "http://127.0.0.1:5000", "name": name},
            "traffic": {"provider": "gatewayAPI", "parentRefs": [{"name": "gw"}]},
            "rollout": {"steps": [10, 50, 100], "stepDuration": "15s", "progressDeadline": "5m",
                        "analysis": {"prometheus": {"address": prometheus}, "interval": "3s", "count": 4,
                                     "metrics": [{"name": "error-rate", "judge": "sequential",
                                                  "sequential": {"alpha": 0.05, "minEffect": 1.2},
                                                  "consecutiveErrorLimit": 10, "inconclusiveLimit": 10}]}}
        }
    }))
    .unwrap()
}

/// Waits for `name`'s rollout to end; returns its status then, and the passed looks of its
/// error-rate metric seen at each candidate weight on the way (with the evidence text).
async fn finished(
    mdeps: &Api<ModelDeployment>,
    name: &str,
) -> (ModelDeploymentStatus, Vec<(i32, i32, String)>) {
    let seen = std::sync::Mutex::new(Vec::new());
    let status = cluster::eventually(
        &format!("{name}'s rollout to finish"),
        Duration::from_secs(240),
        || async {
            let status = mdeps.get(name).await.ok()?.status?;
            let error_rate = status
                .analysis
                .as_ref()
                .and_then(|a| a.metrics.iter().find(|m| m.name == "error-rate"));
            if let Some(m) = error_rate {
                let text = m.recent.last().map(|r| r.threshold.clone());
                seen.lock().unwrap().push((
                    status.canary_weight,
                    m.passed,
                    text.unwrap_or_default(),
                ));
            }
            (!status.history.is_empty()).then_some(status)
        },
    )
    .await;
    (status, seen.into_inner().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doubled_error_rate_is_rolled_back_and_an_identical_candidate_promoted() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "judge").await;
    let _namespace = cluster::NamespaceGuard(ns.clone());

    let services = [
        Service {
            name: "doubled",
            candidate_error_rate: 2.0 * STABLE_ERROR_RATE,
            weight: Arc::default(),
        },
        Service {
            name: "same",
            candidate_error_rate: STABLE_ERROR_RATE,
            weight: Arc::default(),
        },
    ];
    let exporter = Arc::new(Exporter::start());
    let stop = Arc::new(AtomicBool::new(false));
    let generator = generate(
        exporter.clone(),
        ns.clone(),
        services
            .iter()
            .map(|s| (s.name, s.candidate_error_rate, s.weight.clone()))
            .collect(),
        stop.clone(),
    );
    // The weights follow the routes, as a gateway's split would.
    let routes: Api<HttpRoute> = Api::namespaced(client.clone(), &ns);
    let follower = {
        let routes = routes.clone();
        let weights: Vec<_> = services
            .iter()
            .map(|s| (s.name, s.weight.clone()))
            .collect();
        tokio::spawn(async move {
            loop {
                for (name, weight) in &weights {
                    weight.store(route_weight(&routes, name).await, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let prometheus = PrometheusServer::start_scraping(
        exporter.target(),
        r#"http_requests_total{service="same-stable"}"#,
    )
    .await;

    let registry = Arc::new(InMemoryRegistry::new());
    for s in &services {
        registry.register(s.name, 3, &[], &[]);
        registry.register(s.name, 4, &[], &[]);
        registry.set_alias(s.name, "champion", 3);
    }
    let ctx = Context::new(client.clone(), registry, Metrics::default()).with_analyzer(Arc::new(
        PrometheusAnalyzer::new(Duration::from_secs(5)).unwrap(),
    ));
    let operator = Operator::run(ctx, WatchScope::Namespace(ns.clone()));
    let now = k8s_openapi::jiff::Timestamp::now();
    for s in &services {
        let r = resource(&ns, s.name, &prometheus.url());
        common::operator::at_first_canary_step(&client, &r, now).await;
    }

    let mdeps: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let (doubled, _) = finished(&mdeps, "doubled").await;
    let record = doubled.history.last().unwrap();
    assert_eq!(record.outcome, RolloutOutcome::RolledBack, "{doubled:?}");
    assert_eq!(record.reason, RolloutReason::AnalysisFailed, "{doubled:?}");
    let message = doubled.message.clone().unwrap_or_default();
    assert!(
        message.contains("showed a regression") && message.contains("regression evidence"),
        "the reason names the evidence: {message}"
    );
    assert_eq!(route_weight(&routes, "doubled").await, 0);

    let (same, seen) = finished(&mdeps, "same").await;
    // Both shared steps were judged on evidence (the full-traffic step has no stable to
    // compare with: sequential metrics sit it out).
    for weight in [10, 50] {
        assert!(
            seen.iter().any(|(w, passed, text)| *w == weight
                && *passed >= 1
                && text.contains("regression evidence")),
            "no passed look at {weight} %: {seen:?}"
        );
    }
    let record = same.history.last().unwrap();
    assert_eq!(
        record.outcome,
        RolloutOutcome::Promoted,
        "the identical candidate is promoted: {:?} {:?}",
        same.message,
        same.analysis
    );
    assert_eq!(record.candidate_version, "4");
    let same = cluster::eventually(
        "the promotion complete",
        Duration::from_secs(60),
        || async {
            let status = mdeps.get("same").await.ok()?.status?;
            (status.phase == Phase::Stable).then_some(status)
        },
    )
    .await;
    assert_eq!(same.stable_version.as_deref(), Some("4"));

    operator.stop().await;
    follower.abort();
    stop.store(true, Ordering::SeqCst);
    let _ = generator.join();
}
