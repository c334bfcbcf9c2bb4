//! Operator scale: 1,000 ModelDeployments on the in-memory API through the real Controller.
//! Reports resident memory at steady state (process RSS minus the RSS with the objects stored
//! but no controller), CPU time and wall time of a full reconcile of all resources (initial
//! list and a forced resync), and reconcile-duration percentiles from the operator's own
//! histogram. Run with `cargo bench --bench operator_scale` (`MLROLLOUT_SCALE_N` to change N).

#[path = "../tests/common/fake_api.rs"]
#[allow(dead_code)]
mod fake_api;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use mlrollout::api::{ModelDeployment, Phase};
use mlrollout::controller::{self, Context, WatchScope};
use mlrollout::metrics::Metrics;
use mlrollout::registry::memory::InMemoryRegistry;
use mlrollout::server::Health;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn cpu_seconds() -> f64 {
    // utime + stime from /proc/self/stat, in clock ticks (100 Hz on Linux).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            let utime: f64 = after.get(11)?.parse().ok()?;
            let stime: f64 = after.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

/// Percentile from a Prometheus histogram in text format (upper bound of the bucket).
fn percentile(exposition: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = exposition
        .lines()
        .filter(|l| l.starts_with("mlrollout_reconcile_duration_seconds_bucket"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    buckets
        .iter()
        .find(|(_, c)| *c >= q * total)
        .map(|(le, _)| *le)
}

async fn wait_all_stable(
    api: &Api<ModelDeployment>,
    n: usize,
    generation_marker: Option<&str>,
) -> Duration {
    let started = Instant::now();
    loop {
        let list = api.list(&ListParams::default()).await.unwrap();
        let done = list
            .items
            .iter()
            .filter(|m| {
                let s = m.status.as_ref();
                let stable = s.is_some_and(|s| s.phase == Phase::Stable);
                let seen = match generation_marker {
                    None => true,
                    Some(marker) => {
                        s.and_then(|s| s.observed_generation)
                            .is_some_and(|g| m.metadata.generation == Some(g))
                            && m.metadata
                                .annotations
                                .as_ref()
                                .is_some_and(|a| a.contains_key(marker))
                    }
                };
                stable && seen
            })
            .count();
        if done >= n {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "only {done}/{n} reconciled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n: usize = std::env::var("MLROLLOUT_SCALE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let api = fake_api::fake_api().await;
        let registry = Arc::new(InMemoryRegistry::new());
        registry.register("model", 1, &[("accuracy", 0.9)], &[]);
        registry.set_alias("model", "champion", 1);
        let mdeps: Api<ModelDeployment> = Api::namespaced(api.client.clone(), "scale");
        for i in 0..n {
            let resource: ModelDeployment = serde_json::from_value(serde_json::json!({
                "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
                "metadata": {"name": format!("model-{i:04}"), "namespace": "scale"},
                "spec": {"model": {"trackingUri": "http://mlflow:5000", "name": "model"},
                         "traffic": {"provider": "gatewayAPI", "parentRefs": [{"name": "gw"}]}}
            }))
            .unwrap();
            mdeps.create(&PostParams::default(), &resource).await.unwrap();
        }
        let rss_before = rss_kib();
        let metrics = Metrics::default();
        let ctx = Context::new(api.client.clone(), registry, metrics.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let cpu0 = cpu_seconds();
        let task = tokio::spawn(controller::run(ctx, WatchScope::AllNamespaces, Health::new(), rx.map(|_| ())));
        let initial = wait_all_stable(&mdeps, n, None).await;
        let cpu_initial = cpu_seconds() - cpu0;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss_steady = rss_kib();

        // Forced resync: touch every resource; each must be reconciled again.
        let cpu1 = cpu_seconds();
        let started = Instant::now();
        for i in 0..n {
            let patch = serde_json::json!({"metadata": {"annotations": {"bench/resync": "1"}}});
            mdeps.patch(&format!("model-{i:04}"), &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        }
        let touch = started.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let cpu_resync = cpu_seconds() - cpu1;
        let exposition = metrics.encode();
        let _ = tx.send(());
        let _ = task.await;

        let operator_mib = rss_steady.saturating_sub(rss_before) as f64 / 1024.0;
        println!("operator scale: {n} ModelDeployments on the in-memory API (2 worker threads)");
        println!("| measure | value | target |");
        println!("|---|---|---|");
        println!("| operator resident memory at steady state (RSS growth after start) | {operator_mib:.1} MiB | <= 64 MiB |");
        println!("| whole process RSS (includes the in-memory API server) | {:.1} MiB | |", rss_steady as f64 / 1024.0);
        println!("| wall time, first reconcile of all {n} | {:.2} s | |", initial.as_secs_f64());
        println!("| CPU time, first reconcile of all {n} (operator + in-memory API) | {cpu_initial:.2} s | <= 1 s |");
        println!("| CPU time, resync of all {n} after a metadata touch (incl. the {n} patches, {:.2} s wall) | {cpu_resync:.2} s | <= 1 s |", touch.as_secs_f64());
        for q in [0.5, 0.9, 0.99] {
            println!("| reconcile duration p{:.0} (histogram bucket bound) | <= {:.3} s | |", q * 100.0, percentile(&exposition, q).unwrap_or(f64::NAN));
        }
    });
}
