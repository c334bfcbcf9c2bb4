//! Registry events in, against the real MLflow server of the harness and the real API server:
//! a webhook created through MLflow's REST API delivers to the operator's endpoint (on
//! loopback), and the controller (in-process, scoped to its own namespace, with the real
//! MLflow registry and no requeue cap, so a resting resource is looked at again only after
//! 5 minutes) reacts within seconds to a registered version and a hand-moved champion alias.
//! A forged delivery is refused (401) and counted in `/metrics`; a replayed one is
//! acknowledged and triggers nothing, and once older than the window it is refused as stale.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane and a real MLflow server: full suite only, `cargo test --features
// harness` (tests/run.sh turns it on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use common::cluster::{self, NamespaceGuard, eventually};
use common::operator::Operator;
use kube::api::{Api, PostParams};
use mlrollout::api::{ModelDeployment, Phase};
use mlrollout::controller::triggers::Triggers;
use mlrollout::controller::{Context, WatchScope};
use mlrollout::core::decide::RESYNC;
use mlrollout::metrics::Metrics;
use mlrollout::mlflow::{MlflowAuth, MlflowClient};
use mlrollout::registry::mlflow::MlflowRegistry;
use mlrollout::server::{self, Health};
use mlrollout::webhooks::{self, WebhookConfig, WebhookReceiver};

const SECRET: &str = "registry-webhook-test-secret";
/// The endpoint's freshness window (short, so that the stale refusal is seen in the test).
const MAX_AGE: Duration = Duration::from_secs(20);
/// How soon a webhook-driven reconcile must be seen; the resource's own requeue is RESYNC.
const PROMPTLY: Duration = Duration::from_secs(15);

/// One request the endpoint received, and its answer.
#[derive(Clone, Debug)]
struct Seen {
    headers: HeaderMap,
    body: Bytes,
    status: u16,
    answer: String,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
}

/// Keeps a copy of each request to the real endpoint and of its answer (to replay it later).
async fn record(State(recorder): State<Recorder>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers.clone();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let response = next
        .run(Request::from_parts(parts, Body::from(body.clone())))
        .await;
    let (parts, answer) = response.into_parts();
    let answer = axum::body::to_bytes(answer, 1 << 20).await.unwrap();
    recorder.0.lock().unwrap().push(Seen {
        headers,
        body,
        status: parts.status.as_u16(),
        answer: String::from_utf8_lossy(&answer).into_owned(),
    });
    Response::from_parts(parts, Body::from(answer))
}

/// `name{labels} value` of the operator's `/metrics` (0 when absent).
fn metric(metrics_authority: &str, series: &str) -> u64 {
    let text = common::http::get(metrics_authority, "/metrics", Duration::from_secs(5))
        .unwrap()
        .text();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn deliveries(outcome: &str) -> String {
    format!(r#"mlrollout_registry_webhook_deliveries_total{{source="mlflow",outcome="{outcome}"}}"#)
}
const RECONCILES: &str = r#"mlrollout_reconciles_total{result="ok"}"#;
const REQUESTED: &str = "mlrollout_registry_webhook_reconciles_total";

/// Sends a recorded delivery again, with its headers (or the ones `change` makes).
async fn resend(endpoint: &str, seen: &Seen, change: impl FnOnce(&mut HeaderMap)) -> (u16, String) {
    let mut headers = HeaderMap::new();
    for name in [
        "x-mlflow-delivery-id",
        "x-mlflow-timestamp",
        "x-mlflow-signature",
        "content-type",
    ] {
        if let Some(value) = seen.headers.get(name) {
            headers.insert(name, value.clone());
        }
    }
    change(&mut headers);
    let response = common::http::reqwest_client()
        .post(endpoint)
        .headers(headers)
        .body(seen.body.clone())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_webhooks_make_the_operator_reconcile_at_once() {
    common::http::install_crypto_provider();
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "webhook").await;
    let _cleanup = NamespaceGuard(ns.clone());

    // A registered model with alias champion on version 1, on the harness's real MLflow.
    let uri = tokio::task::spawn_blocking(|| common::mlflow::mlflow_server().uri())
        .await
        .unwrap();
    let model = format!("webhook-{}", std::process::id());
    let train = {
        let (uri, model) = (uri.clone(), model.clone());
        move || common::mlflow::train_version(&uri, &model)
    };
    tokio::task::spawn_blocking(train.clone()).await.unwrap();
    let mlflow = MlflowClient::new(&uri, MlflowAuth::None, Duration::from_secs(30)).unwrap();
    mlflow.set_alias(&model, "champion", 1).await.unwrap();

    // The operator: the real controller and MLflow registry, without a requeue cap (a resting
    // resource is looked at again after RESYNC), its webhook endpoint and /metrics on loopback.
    assert!(RESYNC >= Duration::from_secs(300));
    let metrics = Metrics::default();
    let triggers = Triggers::default();
    let registry = Arc::new(MlflowRegistry::new(Duration::from_secs(10)));
    let ctx =
        Context::new(client.clone(), registry, metrics.clone()).with_triggers(triggers.clone());
    let operator = Operator::run(ctx, WatchScope::Namespace(ns.clone()));
    let config = WebhookConfig {
        secret: SECRET.as_bytes().to_vec(),
        max_age: MAX_AGE,
    };
    let recorder = Recorder::default();
    let app = webhooks::router(WebhookReceiver::new(&config, triggers, metrics.clone())).layer(
        axum::middleware::from_fn_with_state(recorder.clone(), record),
    );
    let listener = webhooks::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let endpoint = format!(
        "http://{}{}",
        listener.local_addr().unwrap(),
        webhooks::MLFLOW_PATH
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_metrics_tx, stop_metrics_rx) = tokio::sync::oneshot::channel::<()>();
    let webhook_server = tokio::spawn(webhooks::serve(listener, app, async {
        let _ = stop_rx.await;
    }));
    let metrics_port = common::http::free_port();
    let metrics_authority = format!("127.0.0.1:{metrics_port}");
    let metrics_server = tokio::spawn(server::serve(
        metrics_authority.parse().unwrap(),
        server::router(Health::new(), metrics.clone()),
        async {
            let _ = stop_metrics_rx.await;
        },
    ));

    let mdeps: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let resource: ModelDeployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "model"},
        "spec": {"model": {"trackingUri": uri, "name": model}, "traffic": {"provider": "none"},
                 "serving": {"replicas": 1}}
    }))
    .unwrap();
    mdeps
        .create(&PostParams::default(), &resource)
        .await
        .unwrap();
    eventually(
        "status: stable version 1, Ready",
        Duration::from_secs(90),
        || async {
            let status = mdeps.get("model").await.ok()?.status?;
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (status.stable_version.as_deref() == Some("1")
                && ready
                && status.phase == Phase::Stable)
                .then_some(())
        },
    )
    .await;

    // The webhook, created through MLflow's REST API, signed with the shared secret.
    let created = common::http::reqwest_client()
        .post(format!("{uri}/api/2.0/mlflow/webhooks"))
        .json(&serde_json::json!({
            "name": format!("mlrollout-{}", std::process::id()),
            "url": endpoint,
            "events": [
                {"entity": "MODEL_VERSION", "action": "CREATED"},
                {"entity": "MODEL_VERSION_TAG", "action": "SET"},
                {"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"},
            ],
            "secret": SECRET,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200, "{}", created.text().await.unwrap());
    let webhook: serde_json::Value = created.json().await.unwrap();
    let webhook_id = webhook["webhook"]["webhook_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // MLflow's own test delivery (its example payload, model "example_model"): authentic, about
    // a model nothing here follows.
    let tested: serde_json::Value = common::http::reqwest_client()
        .post(format!("{uri}/api/2.0/mlflow/webhooks/{webhook_id}/test"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tested["result"]["success"], true, "{tested}");
    assert_eq!(metric(&metrics_authority, &deliveries("unrelated")), 1);

    // Quiet: no reconcile for 3 s (the resource rests, its next requeue is minutes away).
    let settled = eventually("the operator at rest", Duration::from_secs(60), || async {
        let before = metric(&metrics_authority, RECONCILES);
        tokio::time::sleep(Duration::from_secs(3)).await;
        (metric(&metrics_authority, RECONCILES) == before).then_some(before)
    })
    .await;

    // A new version registered: MLflow announces it, the resource is reconciled at once.
    tokio::task::spawn_blocking(train).await.unwrap();
    let registered = Instant::now();
    eventually(
        "a webhook-requested reconcile after the new version",
        PROMPTLY,
        || async {
            (metric(&metrics_authority, &deliveries("accepted")) >= 1
                && metric(&metrics_authority, REQUESTED) >= 1
                && metric(&metrics_authority, RECONCILES) > settled)
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "reconciled {:?} after the version was registered",
        registered.elapsed()
    );
    let created_delivery = recorder
        .all()
        .into_iter()
        .find(|s| {
            s.status == 200
                && s.answer.starts_with("accepted")
                && String::from_utf8_lossy(&s.body).contains(r#""entity": "model_version""#)
        })
        .expect("MLflow delivered model_version.created");
    assert!(created_delivery.headers.contains_key("x-mlflow-signature"));

    // The champion alias moved by hand in MLflow: the resource starts rolling version 2 out
    // within seconds (not at its requeue, minutes away).
    let moved = Instant::now();
    mlflow.set_alias(&model, "champion", 2).await.unwrap();
    eventually("version 2 taken as the candidate", PROMPTLY, || async {
        let status = mdeps.get("model").await.ok()?.status?;
        (status.candidate_version.as_deref() == Some("2")).then_some(())
    })
    .await;
    eprintln!(
        "candidate 2 taken {:?} after the alias moved",
        moved.elapsed()
    );
    assert!(
        recorder
            .all()
            .iter()
            .any(|s| s.answer.starts_with("accepted")
                && String::from_utf8_lossy(&s.body).contains(r#""alias": "champion""#)),
        "{:?}",
        recorder.all()
    );

    // A replay of a delivery within the window: acknowledged, nothing requested.
    let (status, answer) = resend(&endpoint, &created_delivery, |_| {}).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.starts_with("duplicate"), "{answer}");
    assert_eq!(metric(&metrics_authority, &deliveries("duplicate")), 1);

    // Forged: the same body signed with a guessed secret under a new id, and unsigned.
    let forged_id = "forged-delivery-1";
    let timestamp = created_delivery.headers["x-mlflow-timestamp"]
        .to_str()
        .unwrap()
        .to_owned();
    let forged_signature = webhooks::mlflow::sign(
        &webhooks::mlflow::key(b"guessed"),
        forged_id,
        &timestamp,
        &created_delivery.body,
    );
    let (status, answer) = resend(&endpoint, &created_delivery, |h| {
        h.insert("x-mlflow-delivery-id", forged_id.parse().unwrap());
        h.insert("x-mlflow-signature", forged_signature.parse().unwrap());
    })
    .await;
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = resend(&endpoint, &created_delivery, |h| {
        h.remove("x-mlflow-signature");
    })
    .await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(metric(&metrics_authority, &deliveries("bad_signature")), 2);

    // The same replay once older than the window: refused as stale.
    let signed_at: i64 = timestamp.parse().unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let wait = (u64::try_from(signed_at).unwrap() + MAX_AGE.as_secs() + 1).saturating_sub(now());
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let (status, answer) = resend(&endpoint, &created_delivery, |_| {}).await;
    assert_eq!(status, 401, "{answer}");
    assert!(answer.starts_with("stale"), "{answer}");
    assert_eq!(metric(&metrics_authority, &deliveries("stale")), 1);
    // No delivery of MLflow's was refused: the signature scheme is MLflow's.
    for seen in recorder.all() {
        let id = seen.headers.get("x-mlflow-delivery-id");
        let ours = id.is_some_and(|id| id == forged_id)
            || !seen.headers.contains_key("x-mlflow-signature")
            || seen.answer.starts_with("duplicate")
            || seen.answer.starts_with("stale");
        assert!(ours || seen.status == 200, "{seen:?}");
    }

    let _ = reqwest_delete(&uri, &webhook_id).await;
    operator.stop().await;
    let _ = stop_tx.send(());
    let _ = stop_metrics_tx.send(());
    webhook_server.await.unwrap().unwrap();
    metrics_server.await.unwrap().unwrap();
    cluster::delete_namespace(&client, &ns).await;
}

/// Deletes the webhook (the MLflow server is shared by the binary's tests).
async fn reqwest_delete(uri: &str, webhook_id: &str) -> reqwest::StatusCode {
    common::http::reqwest_client()
        .delete(format!("{uri}/api/2.0/mlflow/webhooks/{webhook_id}"))
        .send()
        .await
        .unwrap()
        .status()
}
