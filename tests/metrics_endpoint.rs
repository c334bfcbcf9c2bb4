//! `/healthz`, `/readyz` and `/metrics` of a running controller on the real API server,
//! scraped over HTTP.

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
    let mut ready_before = None;
    for _ in 0..50 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            ready_before = Some(r.status().as_u16());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready_before, Some(503));

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

    let mut body = String::new();
    for _ in 0..600 {
        body = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if body.contains(r#"phase="Stable""#) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        body.contains(r#"mlrollout_reconciles_total{result="ok"}"#),
        "{body}"
    );
    assert!(
        body.contains("mlrollout_reconcile_duration_seconds_bucket"),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            r#"mlrollout_phase{{namespace="{ns}",name="fraud",phase="Stable"}} 1"#
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            r#"mlrollout_phase{{namespace="{ns}",name="fraud",phase="Progressing"}} 0"#
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            r#"mlrollout_canary_weight_percent{{namespace="{ns}",name="fraud"}} 0"#
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            r#"mlrollout_drift_psi_threshold{{namespace="{ns}",name="fraud",level="high"}} 0.3"#
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            r#"mlrollout_drift_psi_threshold{{namespace="{ns}",name="fraud",level="warning"}} 0.15"#
        )),
        "{body}"
    );

    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
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
