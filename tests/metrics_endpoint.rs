//! `/healthz`, `/readyz` and `/metrics` of a running controller on the real API server,
//! scraped over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane: full suite only, `cargo test --features harness` (tests/run.sh turns it
// on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::cluster;
use futures::FutureExt;
use kube::api::{Api, PostParams};
use mlrollout::api::ModelDeployment;
use mlrollout::controller::{self, Context, WatchScope};
use mlrollout::metrics::Metrics;
use mlrollout::registry::memory::InMemoryRegistry;
use mlrollout::server::{self, Health};

/// The text of `/metrics`.
async fn metrics_text(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_probes_are_served() {
    let client_k8s = cluster::client().await;
    let ns = cluster::namespace(&client_k8s, "metrics-endpoint").await;
    let registry = Arc::new(InMemoryRegistry::new());
    registry.register("fraud", 3, &[], &[]);
    registry.set_alias("fraud", "champion", 3);
    let metrics = Metrics::default();
    let health = Health::new();
    let port = common::http::free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let http = tokio::spawn(server::serve(
        addr,
        server::router(health.clone(), metrics.clone()),
        stopped(stop_rx.clone()),
    ));
    let client = common::http::reqwest_client();
    let base = format!("http://{addr}");

    // Not ready before the controller listed anything.
    let ready_before = cluster::eventually(
        "the HTTP server answers /readyz",
        Duration::from_secs(5),
        || async {
            let answer = client.get(format!("{base}/readyz")).send().await.ok()?;
            Some(answer.status().as_u16())
        },
    )
    .await;
    assert_eq!(ready_before, 503);

    let ctx = Context::new(client_k8s.clone(), registry, metrics.clone());
    let controller = tokio::spawn(controller::run(
        ctx,
        WatchScope::Namespace(ns.clone()),
        health.clone(),
        stopped(stop_rx).map(|_| ()),
    ));
    let resource: ModelDeployment = serde_yaml::from_str(&format!(
        r#"
apiVersion: mlrollout.io/v1alpha1
kind: ModelDeployment
metadata: {{name: fraud, namespace: {ns}}}
spec:
  model: {{trackingUri: "http://mlflow:5000", name: fraud}}
  traffic: {{provider: none}}
  drift: {{reference: {{uri: a.csv}}, current: {{uri: b.csv}}, thresholds: {{psiWarning: 0.15, psiHigh: 0.3}}}}
"#
    ))
    .unwrap();
    Api::<ModelDeployment>::namespaced(client_k8s.clone(), &ns)
        .create(&PostParams::default(), &resource)
        .await
        .unwrap();

    let body = cluster::eventually(
        "/metrics shows the resource Stable",
        Duration::from_secs(60),
        || async {
            let body = metrics_text(&client, &base).await;
            body.contains(r#"phase="Stable""#).then_some(body)
        },
    )
    .await;
    let labels = format!(r#"namespace="{ns}",name="fraud""#);
    for line in [
        r#"mlrollout_reconciles_total{result="ok"}"#.to_string(),
        "mlrollout_reconcile_duration_seconds_bucket".to_string(),
        format!(r#"mlrollout_phase{{{labels},phase="Stable"}} 1"#),
        format!(r#"mlrollout_phase{{{labels},phase="Progressing"}} 0"#),
        format!(r#"mlrollout_canary_weight_percent{{{labels}}} 0"#),
        format!(r#"mlrollout_drift_psi_threshold{{{labels},level="high"}} 0.3"#),
        format!(r#"mlrollout_drift_psi_threshold{{{labels},level="warning"}} 0.15"#),
    ] {
        assert!(body.contains(&line), "no {line} in:\n{body}");
    }

    for probe in ["readyz", "healthz"] {
        let answer = client.get(format!("{base}/{probe}")).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 200, "/{probe}");
    }

    // Deleted, its series go too (no leak per resource ever created); the operator's own stay.
    Api::<ModelDeployment>::namespaced(client_k8s.clone(), &ns)
        .delete("fraud", &Default::default())
        .await
        .unwrap();
    let body = cluster::eventually(
        "/metrics without the deleted resource",
        Duration::from_secs(30),
        || async {
            let body = metrics_text(&client, &base).await;
            (!body.contains(&labels)).then_some(body)
        },
    )
    .await;
    assert!(
        body.contains(r#"mlrollout_reconciles_total{result="ok"}"#),
        "{body}"
    );

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), controller)
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), http)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        !health.alive.load(std::sync::atomic::Ordering::SeqCst),
        "liveness drops when the loop stops"
    );
    cluster::delete_namespace(&client_k8s, &ns).await;
}
