//! Rollback reaction: a candidate at its first canary step whose error rate jumps. Measures the
//! time from the jump being visible in Prometheus (a real Prometheus scraping an exporter every
//! second) to the HTTPRoute holding 0 % on the candidate, with the operator's Prometheus
//! analyzer and controller on the real control plane of the test harness (kube-apiserver,
//! kube-controller-manager and kwok make the Deployments ready; see
//! `tests/harness/cluster.sh`). Target: at most one analysis interval + 2 s.
//!
//! `cargo bench --bench rollback_reaction` runs it (`MLROLLOUT_REACTION_RUNS`, default 3);
//! with `--features harness`, `cargo bench --bench rollback_reaction -- --test` and
//! `cargo test --all-targets` run one shorter run that checks the whole path (a passing
//! analysis, then the rollback).
//! Needs Prometheus (`bash tests/harness/install.sh`) and a cluster: `MLROLLOUT_TEST_CLUSTER`
//! names a running one (`tests/harness/cluster.sh up`), else a private one is started.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code states expectations

#[path = "../tests/common"]
#[allow(dead_code)]
mod common {
    pub mod cluster;
    pub mod http;
    pub mod operator;
    pub mod process;
    pub mod prometheus;
}

#[path = "support/run_args.rs"]
mod run_args;

use run_args::{Run, requested_run};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::cluster;
use common::operator::Operator;
use common::prometheus::{Exporter, PrometheusServer};
use gateway_api::httproutes::HttpRoute;
use kube::api::Api;
use mlrollout::analysis::prometheus::PrometheusAnalyzer;
use mlrollout::api::{ModelDeployment, Phase};
use mlrollout::controller::{Context, WatchScope};
use mlrollout::metrics::Metrics;
use mlrollout::registry::memory::InMemoryRegistry;

const INTERVAL_S: u64 = 5;

fn main() {
    let Some(run) = requested_run("rollback_reaction") else {
        return;
    };
    let runs: usize = std::env::var("MLROLLOUT_REACTION_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(match run {
            Run::Full => 3,
            Run::Quick => 1,
        })
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let mut reactions = Vec::new();
    for i in 0..runs {
        let r = runtime.block_on(one_run(i, run));
        println!(
            "run {}: rollback {:.2} s after the jump was visible in Prometheus",
            i + 1,
            r.as_secs_f64()
        );
        reactions.push(r.as_secs_f64());
    }
    reactions.sort_by(f64::total_cmp);
    if run == Run::Quick {
        println!(
            "rollback_reaction: quick run ({runs} run, {} build, one healthy interval before the jump); the bench is `cargo bench --bench rollback_reaction`",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        );
    }
    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!(
        "| rollback reaction, median of {runs} (jump visible in Prometheus → HTTPRoute 0 % candidate) | {:.2} s (max {:.2} s) | <= {} s (interval {INTERVAL_S} s + 2 s) |",
        reactions[reactions.len() / 2],
        reactions.last().unwrap(),
        INTERVAL_S + 2
    );
    println!("(whole bench {:.1} s)", started.elapsed().as_secs_f64());
}

async fn one_run(index: usize, run: Run) -> Duration {
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "bench-rollback").await;
    let namespace = cluster::NamespaceGuard(ns.clone());

    let exporter = Arc::new(Exporter::start());
    let candidate_errors = Arc::new(AtomicU64::new(1)); // percent
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (exporter, errors, stop) = (exporter.clone(), candidate_errors.clone(), stop.clone());
        let ns = ns.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                for (service, pct) in [
                    ("m-stable", 1.0),
                    ("m-candidate", errors.load(Ordering::SeqCst) as f64),
                ] {
                    let labels = |code: &'static str| {
                        vec![
                            ("namespace", ns.as_str()),
                            ("service", service),
                            ("code", code),
                        ]
                    };
                    exporter.inc_counter(
                        "http_requests_total",
                        &labels("200"),
                        10.0 * (1.0 - pct / 100.0),
                    );
                    exporter.inc_counter("http_requests_total", &labels("500"), 10.0 * pct / 100.0);
                    exporter.observe_histogram_n(
                        "http_request_duration_seconds",
                        &[("namespace", ns.as_str()), ("service", service)],
                        &[0.1, 0.5, 1.0],
                        0.05,
                        10,
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let prometheus = PrometheusServer::start_scraping(
        exporter.target(),
        r#"rate(http_requests_total{service="m-candidate"}[5s])"#,
    )
    .await;

    let registry = Arc::new(InMemoryRegistry::new());
    registry.register("m", 3, &[], &[]);
    registry.register("m", 4, &[], &[]);
    registry.set_alias("m", "champion", 3);
    let ctx = Context::new(client.clone(), registry, Metrics::default()).with_analyzer(Arc::new(
        PrometheusAnalyzer::new(Duration::from_secs(5)).unwrap(),
    ));
    let operator = Operator::run(ctx, WatchScope::Namespace(ns.clone()));

    let resource: ModelDeployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "m", "namespace": ns},
        "spec": {
            "model": {"trackingUri": "http://127.0.0.1:5000", "name": "m"},
            "traffic": {"provider": "gatewayAPI", "parentRefs": [{"name": "gw"}]},
            "rollout": {"steps": [10, 50, 100], "stepDuration": "1h", "progressDeadline": "1h",
                        "analysis": {"prometheus": {"address": prometheus.url()}, "interval": format!("{INTERVAL_S}s"), "count": 100,
                                     "metrics": [{"name": "error-rate", "query": mlrollout::core::verdict::builtin::error_rate_query(),
                                                  "maxIncrease": {"ratio": 2.0}, "consecutiveErrorLimit": 100, "inconclusiveLimit": 100}]}}
        }
    }))
    .unwrap();
    let mdeps: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    common::operator::at_first_canary_step(&client, &resource, k8s_openapi::jiff::Timestamp::now())
        .await;

    let routes: Api<HttpRoute> = Api::namespaced(client.clone(), &ns);
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
    cluster::eventually(
        "the canary at 10 % on the HTTPRoute",
        Duration::from_secs(60),
        || async { (candidate_weight().await == Some(10)).then_some(()) },
    )
    .await;
    // Healthy canary for a while: the analysis passes (the candidate Deployment became ready
    // through the real controllers and kwok, so measurements are taken).
    let healthy = match run {
        Run::Full => Duration::from_secs(2 * INTERVAL_S + (index as u64 % 3)),
        Run::Quick => Duration::from_secs(INTERVAL_S + 1),
    };
    tokio::time::sleep(healthy).await;
    let passed = |m: &ModelDeployment| {
        m.status
            .as_ref()
            .and_then(|s| s.analysis.as_ref())
            .and_then(|a| a.metrics.iter().find(|x| x.name == "error-rate"))
            .map_or(0, |x| x.passed)
    };
    let before = cluster::eventually(
        "a passed error-rate measurement of the healthy canary",
        Duration::from_secs(3 * INTERVAL_S),
        || async {
            let m = mdeps.get("m").await.ok()?;
            let status = m.status.as_ref()?;
            assert_eq!(
                status.phase,
                Phase::Progressing,
                "the healthy canary left the canary step: {:?}",
                status.message
            );
            (passed(&m) > 0).then_some(m)
        },
    )
    .await;
    assert_eq!(
        candidate_weight().await,
        Some(10),
        "still at the first step"
    );

    // The jump.
    candidate_errors.store(10, Ordering::SeqCst);
    let ratio = format!(
        r#"sum(rate(http_requests_total{{namespace="{ns}",service="m-candidate",code="500"}}[5s])) / sum(rate(http_requests_total{{namespace="{ns}",service="m-candidate"}}[5s]))"#
    );
    let visible = loop {
        let samples = tokio::task::block_in_place(|| prometheus.query(&ratio));
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
    // The children are applied before the status: the route moves first, then the phase.
    let status = cluster::eventually(
        "the rollback in the status",
        Duration::from_secs(30),
        || async {
            let status = mdeps.get("m").await.ok()?.status?;
            (status.phase != Phase::Progressing).then_some(status)
        },
    )
    .await;
    assert_eq!(
        status.phase,
        Phase::RolledBack,
        "the candidate left the route by a rollback: {:?}",
        status.message
    );
    assert!(
        status
            .history
            .last()
            .is_some_and(|r| r.outcome == mlrollout::api::RolloutOutcome::RolledBack),
        "the rollback is recorded: {:?}",
        status.history
    );
    assert!(
        passed(&before) > 0,
        "the analysis passed before the jump ({:?})",
        before.status.and_then(|s| s.analysis)
    );

    operator.stop().await;
    drop(namespace);
    stop.store(true, Ordering::SeqCst);
    let _ = traffic.join();
    rolled_back.saturating_duration_since(visible)
}
