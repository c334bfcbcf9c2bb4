//! Trust boundaries on the real API server: what a resource author (or a neighbour in the same
//! namespace) can make the operator do.
//!
//! - An object with the name a child needs that is not ours is never adopted, overwritten or
//!   deleted: `Synced=False NameConflict` names it, and the rollout holds until it is gone.
//! - The MLflow credentials Secret is read by name; a missing Secret and a Secret without the
//!   needed keys are their own reasons (`SecretNotFound`, `SecretKeyMissing`), and the
//!   condition never shows the Secret's content.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane: full suite only, `cargo test --features harness` (tests/run.sh turns
// it on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use mlrollout::api::ModelDeployment;
use mlrollout::controller::WatchScope;

use common::cluster::{self, eventually};
use common::operator::{Operator, test_context};

const LIMIT: Duration = Duration::from_secs(60);

fn resource(namespace: &str, extra_model: serde_json::Value) -> ModelDeployment {
    let mut model = serde_json::json!({"trackingUri": "http://127.0.0.1:9", "name": "fraud"});
    for (k, v) in extra_model.as_object().unwrap() {
        model[k] = v.clone();
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "fraud", "namespace": namespace},
        "spec": {"model": model, "traffic": {"provider": "none"}}
    }))
    .unwrap()
}

fn operator(client: &kube::Client, ns: &str) -> Operator {
    let registry = common::registry::with_champion("fraud", 3);
    Operator::run(
        test_context(client.clone(), registry),
        WatchScope::Namespace(ns.to_string()),
    )
}

/// (status, reason, message) of condition `kind` once `check` accepts it.
async fn condition_when(
    api: &Api<ModelDeployment>,
    kind: &str,
    what: &str,
    check: impl Fn(&str, &str) -> bool,
) -> (String, String, String) {
    eventually(what, LIMIT, || async {
        let status = api.get("fraud").await.ok()?.status?;
        let c = status.conditions.into_iter().find(|c| c.type_ == kind)?;
        check(&c.status, &c.reason).then_some((c.status, c.reason, c.message))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_is_not_ours_is_never_adopted_and_the_rollout_holds() {
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "trust-names").await;
    // A neighbour's Deployment with the name the stable variant needs.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let theirs: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "fraud-stable", "labels": {"team": "payments"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "theirs"}},
            "template": {"metadata": {"labels": {"app": "theirs"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    let operator = operator(&client, &ns);
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &resource(&ns, serde_json::json!({})),
    )
    .await
    .unwrap();

    let (_, _, message) = condition_when(&api, "Synced", "Synced=False NameConflict", |s, r| {
        s == "False" && r == "NameConflict"
    })
    .await;
    assert!(
        message.contains("Deployment fraud-stable") && message.contains("no controller"),
        "{message}"
    );
    // Held: the decided phase was not written, and theirs is untouched — no owner reference,
    // no field of ours, their image.
    let status = api.get("fraud").await.unwrap().status.unwrap();
    assert_eq!(status.phase, mlrollout::api::Phase::Pending, "{status:?}");
    let after = deployments.get("fraud-stable").await.unwrap();
    assert!(after.metadata.owner_references.is_none(), "{after:?}");
    assert!(
        after
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .all(|m| m.manager.as_deref() != Some("mlrollout")),
        "{after:?}"
    );
    let image = after.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("nginx:1"));

    // Theirs gone, ours is created and the resource serves.
    deployments
        .delete("fraud-stable", &DeleteParams::foreground())
        .await
        .unwrap();
    condition_when(
        &api,
        "Synced",
        "Synced=True once the name is free",
        |s, _| s == "True",
    )
    .await;
    let ours = eventually("our stable Deployment", LIMIT, || async {
        let d = deployments.get_opt("fraud-stable").await.ok()??;
        d.metadata.owner_references.is_some().then_some(d)
    })
    .await;
    assert_eq!(
        ours.metadata.owner_references.unwrap()[0].kind,
        "ModelDeployment"
    );

    operator.stop().await;
    cluster::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_incomplete_credentials_secret_has_its_own_reason() {
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "trust-secret").await;
    let operator = operator(&client, &ns);
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &resource(
            &ns,
            serde_json::json!({"credentialsSecret": {"name": "mlflow-creds"}}),
        ),
    )
    .await
    .unwrap();

    let (_, _, message) = condition_when(&api, "Ready", "Ready=False SecretNotFound", |s, r| {
        s == "False" && r == "SecretNotFound"
    })
    .await;
    assert!(
        message.contains("\"mlflow-creds\"") && message.contains("spec.model.credentialsSecret"),
        "{message}"
    );

    // A Secret without the keys: its own reason, and its content is never echoed.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "mlflow-creds"},
        "stringData": {"tokn": "s3cr3t-value-never-shown"}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let (_, _, message) = condition_when(&api, "Ready", "Ready=False SecretKeyMissing", |s, r| {
        s == "False" && r == "SecretKeyMissing"
    })
    .await;
    assert!(message.contains("`token`"), "{message}");
    let everything = serde_json::to_string(&api.get("fraud").await.unwrap().status).unwrap();
    assert!(!everything.contains("s3cr3t"), "{everything}");

    // With a token the model resolves (the in-memory registry accepts any credentials).
    secrets
        .delete("mlflow-creds", &DeleteParams::default())
        .await
        .unwrap();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "mlflow-creds"},
        "stringData": {"token": "s3cr3t-value-never-shown"}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    condition_when(&api, "RegistrySynced", "the model resolves", |s, _| {
        s == "True"
    })
    .await;

    operator.stop().await;
    cluster::delete_namespace(&client, &ns).await;
}

/// A stand-in for Prometheus's query API that answers only a request with `Bearer <token>`
/// (Prometheus itself has no bearer-token check; this test is about what the operator sends).
/// Returns its address and the Authorization headers it saw.
fn prometheus_requiring(token: &'static str) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = vec![0u8; 16384];
            let n = conn.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let auth = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("authorization")
                        .then(|| v.trim().to_string())
                })
                .unwrap_or_default();
            log.lock().unwrap().push(auth.clone());
            let (status, body) = if auth == format!("Bearer {token}") {
                (
                    "200 OK",
                    r#"{"status":"success","data":{"resultType":"scalar","result":[1,"0.91"]}}"#,
                )
            } else {
                ("401 Unauthorized", "unauthorized")
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (address, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accuracy_query_carries_the_prometheus_token_and_a_failure_is_a_condition() {
    common::http::install_crypto_provider();
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "trust-accuracy").await;
    let (address, seen) = prometheus_requiring("pr0m-t0ken");
    let registry = common::registry::with_champion("fraud", 3);
    let clock = common::operator::ScaledClock::new(60);
    let operator = Operator::run(
        test_context(client.clone(), registry)
            .with_drift(Arc::new(mlrollout::drift::check::EngineDriftCheck::new()))
            .with_clock(clock.controller_clock()),
        WatchScope::Namespace(ns.clone()),
    );
    let resource: ModelDeployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "fraud", "namespace": ns},
        "spec": {
            "model": {"trackingUri": "http://127.0.0.1:9", "name": "fraud"},
            "traffic": {"provider": "none"},
            "drift": {"reference": {"uri": "examples/data/reference.csv"},
                      "current": {"uri": "examples/data/current.csv"}, "interval": "1h"},
            "performance": {"accuracyQuery": "avg(model_accuracy)", "accuracyThreshold": 0.85},
            "rollout": {"analysis": {"prometheus": {"address": address,
                "bearerTokenSecret": {"name": "prometheus", "key": "token"}}}}
        }
    }))
    .unwrap();
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &resource).await.unwrap();

    // No Secret: the check fails by name, nothing is asked of Prometheus.
    let (_, _, message) = condition_when(&api, "DriftChecked", "SecretNotFound", |s, r| {
        s == "False" && r == "SecretNotFound"
    })
    .await;
    assert!(message.contains("\"prometheus\""), "{message}");
    assert!(seen.lock().unwrap().is_empty());

    // The wrong token: a condition naming the query and the answer, not a silent skip.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = |token: &str| -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "prometheus"}, "stringData": {"token": token}
        }))
        .unwrap()
    };
    secrets
        .create(&PostParams::default(), &secret("wrong"))
        .await
        .unwrap();
    let (_, _, message) = condition_when(&api, "DriftChecked", "AccuracyQueryFailed", |s, r| {
        s == "False" && r == "AccuracyQueryFailed"
    })
    .await;
    assert!(
        message.contains("performance.accuracyQuery") && message.contains("401"),
        "{message}"
    );

    // The right token: the accuracy lands in status.
    secrets
        .replace("prometheus", &PostParams::default(), &{
            let mut s = secret("pr0m-t0ken");
            s.metadata.resource_version = secrets
                .get("prometheus")
                .await
                .unwrap()
                .metadata
                .resource_version;
            s
        })
        .await
        .unwrap();
    let accuracy = eventually("the accuracy from the query", LIMIT, || async {
        let status = api.get("fraud").await.ok()?.status?;
        status.drift?.accuracy.filter(|a| (*a - 0.91).abs() < 1e-9)
    })
    .await;
    assert!((accuracy - 0.91).abs() < 1e-9);
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|a| a == "Bearer pr0m-t0ken"),
        "{:?}",
        seen.lock().unwrap()
    );

    operator.stop().await;
    cluster::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_cluster_a_refused_data_source_is_a_condition_and_nothing_else_changes() {
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "trust-data").await;
    let registry = common::registry::with_champion("fraud", 3);
    // `mlrollout run`'s policy with no flags: MLflow artifacts only.
    let policy = mlrollout::drift::data::policy::DataSourcePolicy::cluster(vec![], None);
    let operator = Operator::run(
        test_context(client.clone(), registry).with_drift(Arc::new(
            mlrollout::drift::check::EngineDriftCheck::new().with_policy(policy),
        )),
        WatchScope::Namespace(ns.clone()),
    );
    let mut resource = resource(&ns, serde_json::json!({}));
    resource.spec.drift = Some(
        serde_json::from_value(serde_json::json!({
            "reference": {"uri": "file:///var/run/secrets/kubernetes.io/serviceaccount/token"},
            "current": {"uri": "http://169.254.169.254/latest/meta-data/"},
            "interval": "1h"
        }))
        .unwrap(),
    );
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &resource).await.unwrap();
    let (_, _, message) = condition_when(&api, "DriftChecked", "DataSourceNotAllowed", |s, r| {
        s == "False" && r == "DataSourceNotAllowed"
    })
    .await;
    assert!(message.contains("reference data"), "{message}");
    // The model is served as usual; no drift was recorded.
    let status = api.get("fraud").await.unwrap().status.unwrap();
    assert_eq!(status.stable_version.as_deref(), Some("3"));
    assert!(status.drift.is_none());

    operator.stop().await;
    cluster::delete_namespace(&client, &ns).await;
}
