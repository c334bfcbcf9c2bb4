//! The operator's drift check on the bundled example data, on the real API server: scores in
//! status, the drifted feature first, and a bad file reported as a condition that changes
//! nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane: full suite only, `cargo test --features harness` (tests/run.sh turns it
// on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::cluster;
use common::operator::Operator;
use kube::api::{Api, PostParams};
use mlrollout::api::{ModelDeployment, Phase};
use mlrollout::controller::{Context, WatchScope};
use mlrollout::drift::check::EngineDriftCheck;
use mlrollout::metrics::Metrics;
use mlrollout::registry::memory::InMemoryRegistry;

fn resource(namespace: &str, name: &str, current: &str) -> ModelDeployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"trackingUri": "http://127.0.0.1:9", "name": "fraud"},
            "traffic": {"provider": "none"},
            "drift": {"reference": {"uri": "examples/data/reference.csv"}, "current": {"uri": current}, "interval": "1h"},
            "performance": {"labelled": {"uri": "examples/data/labelled.csv"}, "accuracyThreshold": 0.85}
        }
    }))
    .unwrap()
}

fn drift_checked(m: &ModelDeployment) -> bool {
    m.status
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "DriftChecked"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_scores_land_in_status_and_bad_data_is_a_condition() {
    common::http::install_crypto_provider();
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "drift-operator").await;
    let registry = Arc::new(InMemoryRegistry::new());
    registry.register("fraud", 3, &[], &[]);
    registry.set_alias("fraud", "champion", 3);
    let ctx = Context::new(client.clone(), registry, Metrics::default())
        .with_drift(Arc::new(EngineDriftCheck::new()));
    let operator = Operator::run(ctx, WatchScope::Namespace(ns.clone()));
    let mdeps: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    mdeps
        .create(
            &PostParams::default(),
            &resource(&ns, "good", "examples/data/current.csv"),
        )
        .await
        .unwrap();
    mdeps
        .create(
            &PostParams::default(),
            &resource(&ns, "bad", "examples/data/missing.csv"),
        )
        .await
        .unwrap();

    let (good, bad) = cluster::eventually(
        "both resources drift-checked",
        Duration::from_secs(60),
        || async {
            let g = mdeps.get("good").await.ok()?;
            let b = mdeps.get("bad").await.ok()?;
            (drift_checked(&g) && drift_checked(&b)).then_some((g, b))
        },
    )
    .await;
    let good = good.status.unwrap();
    let drift = good.drift.as_ref().unwrap();
    assert_eq!(drift.severity, mlrollout::api::Severity::High);
    assert!(drift.drift_detected);
    assert_eq!(
        drift.features[0].name, "amount",
        "most drifted first: {:?}",
        drift.features
    );
    assert_eq!(drift.features[0].severity, mlrollout::api::Severity::High);
    assert!(
        drift
            .features
            .iter()
            .filter(|f| f.name != "amount" && !f.name.starts_with("prediction"))
            .all(|f| f.severity == mlrollout::api::Severity::Ok)
    );
    assert!(drift.accuracy.is_some());
    assert_eq!(drift.reference_rows, 5000);
    let condition = good
        .conditions
        .iter()
        .find(|c| c.type_ == "DriftChecked")
        .unwrap();
    assert_eq!(condition.status, "True");

    let bad = bad.status.unwrap();
    let condition = bad
        .conditions
        .iter()
        .find(|c| c.type_ == "DriftChecked")
        .unwrap();
    assert_eq!(condition.status, "False");
    assert!(
        condition.message.contains("missing.csv"),
        "{}",
        condition.message
    );
    assert!(bad.drift.is_none());
    assert_eq!(
        bad.phase,
        Phase::Stable,
        "a failed check changes nothing else"
    );
    assert_eq!(bad.drift_check_failures, 1);

    operator.stop().await;
    cluster::delete_namespace(&client, &ns).await;
}
