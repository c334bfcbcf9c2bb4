//! The loop closes by default: the operator injects the proxy with a capture into the stable
//! variant's pod; that proxy (the real `mlrollout proxy` binary, started with exactly the
//! environment of the sidecar the operator put in the Deployment — the pod's network and
//! Secret mount played by the test) writes live traffic as Parquet windows to a real
//! S3-compatible server (s3s-fs), and the operator's drift check, with
//! `drift.current.capture: {variant: stable}`, reads those windows back as its current data and
//! flags the feature the traffic moved. Labels arriving later in a feedback table on the same
//! server join those captured predictions by request id (`performance.labelled.join`): the
//! same check reports the accuracy. On the real control plane; loopback only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the S3 server and the control plane: full suite only, `cargo test --features harness`.
#![cfg(feature = "harness")]

mod common;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use common::cluster;
use common::operator::Operator;
use common::proxy::ProxyProcess;
use common::s3::S3Server;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use mlrollout::api::{ModelDeployment, Severity};
use mlrollout::controller::{Context, WatchScope};
use mlrollout::drift::check::EngineDriftCheck;
use mlrollout::drift::data::policy::DataSourcePolicy;
use mlrollout::metrics::Metrics;
use mlrollout::registry::memory::InMemoryRegistry;
use serde_json::{Value, json};

/// Standard-normal pairs (LCG + Box–Muller), `shift` added to `x`.
fn rows(seed: u64, n: usize, shift: f64) -> Vec<[f64; 2]> {
    let mut normal = common::sample::normals(seed);
    (0..n).map(|_| [normal() + shift, normal()]).collect()
}

/// The score the model server double gives a row: `x` above 1 is likely positive.
fn score(x: f64) -> f64 {
    if x > 1.0 { 0.9 } else { 0.1 }
}

/// The truth that arrives later: `x` above 2.5 was positive.
fn truth(x: f64) -> u8 {
    u8::from(x > 2.5)
}

/// A model server double answering one score per row.
async fn model_server() -> String {
    let app = Router::new().route(
        "/invocations",
        post(|body: String| async move {
            let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let scores: Vec<f64> = request["dataframe_split"]["data"]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .map(|r| score(r[0].as_f64().unwrap_or(0.0)))
                        .collect()
                })
                .unwrap_or_default();
            json!({"predictions": scores}).to_string()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// The sidecar's environment as the kubelet would give it: plain values, the pod's name, and
/// the storage Secret's keys (`envFrom`).
fn sidecar_env(deployment: &Deployment, secret: &[(&str, String)]) -> Vec<(String, String)> {
    let sidecar = common::proxy::sidecar(deployment);
    assert!(
        sidecar
            .env_from
            .iter()
            .flatten()
            .any(|e| e.secret_ref.as_ref().is_some_and(|s| s.name == "s3")),
        "the storage Secret is mounted by reference"
    );
    let mut env: Vec<(String, String)> = secret
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    for var in sidecar.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => value.clone(),
            (None, Some(from)) if from.field_ref.is_some() => "loop-stable-7f9c-abcde".to_owned(),
            other => panic!("unexpected env source {other:?}"),
        };
        env.push((var.name.clone(), value));
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_traffic_is_the_drift_checks_current_data() {
    common::http::install_crypto_provider();
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "capture-loop").await;
    let _guard = cluster::NamespaceGuard(ns.clone());
    let s3 = S3Server::start();
    s3.create_bucket("data").await;
    s3.create_bucket("captures").await;
    let mut reference = String::from("x,y\n");
    for [x, y] in rows(1, 2000, 0.0) {
        let _ = writeln!(reference, "{x},{y}");
    }
    s3.put("s3://data/reference.csv", reference).await;
    let secret_data = s3.secret_data();
    cluster::create_secret(&client, &ns, "s3", &secret_data).await;

    let registry = Arc::new(InMemoryRegistry::new());
    registry.register("loop", 1, &[], &[]);
    registry.set_alias("loop", "champion", 1);
    let mut policy = DataSourcePolicy::cluster(vec![], None)
        .with_buckets(vec!["data".into(), "captures".into()]);
    // The loopback S3 server is let through with the hatch no flag sets.
    policy.exempt = vec!["127.0.0.1".parse::<IpAddr>().unwrap()];
    let ctx = Context::new(client.clone(), registry, Metrics::default())
        .with_drift(Arc::new(EngineDriftCheck::new().with_policy(policy)));
    let operator = Operator::run(ctx, WatchScope::Namespace(ns.clone()));
    let resource: ModelDeployment = serde_json::from_value(json!({
        "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "loop"},
        "spec": {
            "model": {"trackingUri": "http://127.0.0.1:9", "name": "loop"},
            "traffic": {"provider": "none"},
            "serving": {"replicas": 1, "proxy": {"capture": {
                "uri": "s3://captures/live", "fraction": 1.0, "maxRows": 100, "window": "1m"
            }}},
            "storage": {"secretRef": {"name": "s3"}, "endpoint": s3.endpoint(), "region": "us-east-1"},
            "drift": {
                "reference": {"uri": "s3://data/reference.csv"},
                "current": {"capture": {"variant": "stable"}},
                "interval": "5s"
            },
            "performance": {
                "labelled": {"uri": "s3://data/feedback/", "join": {"capture": {"variant": "stable"}}},
                "accuracyThreshold": 0.5
            }
        }
    }))
    .unwrap();
    let mdeps: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    mdeps
        .create(&PostParams::default(), &resource)
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let deployment =
        cluster::eventually("the stable Deployment", Duration::from_secs(60), || async {
            deployments.get_opt("loop-stable").await.ok()?
        })
        .await;
    let env = sidecar_env(&deployment, &secret_data);
    let capture_uri = env
        .iter()
        .find(|(k, _)| k == "MLROLLOUT_PROXY_CAPTURE_URI")
        .map(|(_, v)| v.clone());
    assert_eq!(
        capture_uri,
        Some(format!("s3://captures/live/{ns}/loop/stable"))
    );

    // Live traffic whose `x` moved by 2 standard deviations: 300 rows in requests of 4 with
    // the ids `req-<k>`, so the rows are captured as `req-<k>#<row>`. Their labels are in the
    // feedback table before the traffic is (the check may run at any time), except those of
    // every tenth request (not labelled yet), plus labels of requests never sent.
    let traffic = rows(2, 300, 2.0);
    let mut feedback = String::from("request_id,label\n");
    let (mut joined, mut correct) = (0u64, 0u64);
    for (k, chunk) in traffic.chunks(4).enumerate().filter(|(k, _)| k % 10 != 9) {
        for (j, [x, _]) in chunk.iter().enumerate() {
            let _ = writeln!(feedback, "req-{k}#{j},{}", truth(*x));
            joined += 1;
            correct += u64::from(u8::from(score(*x) >= 0.5) == truth(*x));
        }
    }
    for g in 0..5 {
        let _ = writeln!(feedback, "ghost-{g},1");
    }
    s3.put("s3://data/feedback/labels.csv", feedback).await;

    // The pod: the proxy with the sidecar's environment, its ports and upstream on loopback.
    let upstream = model_server().await;
    let proxy = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        ProxyProcess::start_with_env(&upstream, &[], &env)
    })
    .await
    .unwrap();
    // Three windows fill up (`maxRows` 100) and are written at once.
    let http = common::http::reqwest_client();
    for (k, chunk) in traffic.chunks(4).enumerate() {
        let body = json!({"dataframe_split": {"columns": ["x", "y"], "data": chunk}});
        let response = http
            .post(format!("{}/invocations", proxy.url()))
            .header("content-type", "application/json")
            .header("x-request-id", format!("req-{k}"))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
    let drift = cluster::eventually(
        "a drift check on the 300 captured rows",
        Duration::from_secs(90),
        || async {
            let drift = mdeps.get("loop").await.ok()?.status?.drift?;
            (drift.current_rows == 300).then_some(drift)
        },
    )
    .await;
    assert!(drift.drift_detected, "{drift:?}");
    let drifted: Vec<&str> = drift
        .features
        .iter()
        .filter(|f| f.severity != Severity::Ok)
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(drifted, ["x"], "{drift:?}");
    // The labels met the captured predictions of the same check.
    let labels = drift.label_join.clone().expect("the label join's counts");
    assert_eq!(labels.joined, joined as i64, "{labels:?}");
    assert_eq!(
        labels.unlabelled_predictions,
        300 - joined as i64,
        "{labels:?}"
    );
    assert_eq!(labels.unmatched_labels, 5, "{labels:?}");
    let accuracy = drift.accuracy.expect("accuracy from the joined labels");
    assert!(
        (accuracy - correct as f64 / joined as f64).abs() < 1e-9,
        "{accuracy} vs {correct}/{joined}"
    );
    let status = mdeps.get("loop").await.unwrap().status.unwrap();
    let checked = status
        .conditions
        .iter()
        .find(|c| c.type_ == "DriftChecked")
        .expect("DriftChecked");
    assert!(
        checked.message.contains(&format!(
            "on {joined} captured predictions joined with labels (5 labels without a captured prediction"
        )),
        "{}",
        checked.message
    );
    let windows = s3
        .list(&format!("s3://captures/live/{ns}/loop/stable/"))
        .await;
    assert_eq!(windows.len(), 3, "{windows:?}");
    drop(proxy);
    operator.stop().await;
}
