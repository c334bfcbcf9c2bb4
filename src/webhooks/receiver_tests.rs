#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicI64, Ordering};

use axum::http::Request;
use futures::StreamExt;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use tower::ServiceExt;

use super::*;
use crate::api::ModelDeployment;

const SECRET: &[u8] = b"s3cr3t";
const NOW: i64 = 1_767_225_600;

fn resource(name: &str, model: &str) -> ModelDeployment {
    let mut r = ModelDeployment::new(name, Default::default());
    r.metadata.namespace = Some("ml".into());
    r.spec.model.name = model.into();
    r
}

struct Fixture {
    receiver: WebhookReceiver,
    metrics: Metrics,
    triggers: Triggers,
    now: Arc<AtomicI64>,
}

fn fixture() -> Fixture {
    let metrics = Metrics::default();
    let triggers = Triggers::default();
    let now = Arc::new(AtomicI64::new(NOW));
    let clock = now.clone();
    let config = WebhookConfig {
        secret: SECRET.to_vec(),
        max_age: Duration::from_secs(60),
    };
    let receiver = WebhookReceiver::new(&config, triggers.clone(), metrics.clone())
        .with_clock(Arc::new(move || clock.load(Ordering::SeqCst)));
    Fixture {
        receiver,
        metrics,
        triggers,
        now,
    }
}

fn body(entity: &str, action: &str, data: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "entity": entity, "action": action, "timestamp": "2026-01-01T00:00:00+00:00", "data": data
    }))
    .unwrap()
}

/// A delivery signed with `secret` at `ts`.
fn delivery(secret: &[u8], id: &str, ts: i64, body: &[u8]) -> Request<Body> {
    let ts = ts.to_string();
    let signature = mlflow::sign(&mlflow::key(secret), id, &ts, body);
    Request::post(MLFLOW_PATH)
        .header("Content-Type", "application/json")
        .header("X-MLflow-Delivery-Id", id)
        .header("X-MLflow-Timestamp", ts)
        .header("X-MLflow-Signature", signature)
        .body(Body::from(body.to_vec()))
        .unwrap()
}

async fn send(receiver: &WebhookReceiver, request: Request<Body>) -> (u16, String) {
    let response = router(receiver.clone()).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn count(metrics: &Metrics, outcome: &str) -> String {
    let text = metrics.encode();
    let prefix = format!(
        r#"mlrollout_registry_webhook_deliveries_total{{source="mlflow",outcome="{outcome}"}} "#
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or("0")
        .to_owned()
}

#[tokio::test]
async fn a_signed_delivery_requests_reconciles_of_the_resources_following_its_model() {
    let f = fixture();
    let alias = body(
        "model_version_alias",
        "created",
        &serde_json::json!({"name": "fraud", "alias": "champion", "version": "2"}),
    );
    // No controller attached (a standby): 503, so that MLflow retries; the id is not kept.
    let (status, text) = send(&f.receiver, delivery(SECRET, "d-1", NOW, &alias)).await;
    assert_eq!(status, 503, "{text}");

    let mut writer = Writer::<ModelDeployment>::default();
    for (name, model) in [("a", "fraud"), ("b", "fraud"), ("c", "churn")] {
        writer.apply_watcher_event(&watcher::Event::Apply(resource(name, model)));
    }
    let mut requests = f.triggers.attach(writer.as_reader());
    let (status, text) = send(&f.receiver, delivery(SECRET, "d-1", NOW, &alias)).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.starts_with("accepted"), "{text}");
    let mut names = vec![
        requests.next().await.unwrap().name,
        requests.next().await.unwrap().name,
    ];
    names.sort();
    assert_eq!(names, ["a", "b"]);

    // The same delivery again, and a replay of it later within the window: acknowledged,
    // nothing requested.
    f.now.store(NOW + 50, Ordering::SeqCst);
    let (status, text) = send(&f.receiver, delivery(SECRET, "d-1", NOW, &alias)).await;
    assert_eq!(
        (status, text.starts_with("duplicate")),
        (200, true),
        "{text}"
    );
    assert!(requests.try_recv().is_err(), "no request queued");
    // Past the window the same bytes are refused as stale.
    f.now.store(NOW + 61, Ordering::SeqCst);
    let (status, text) = send(&f.receiver, delivery(SECRET, "d-1", NOW, &alias)).await;
    assert_eq!((status, text.starts_with("stale")), (401, true), "{text}");

    // Another alias, another model, another kind of event: acknowledged, nothing requested.
    let now = NOW + 61;
    for (i, (entity, action, data)) in [
        (
            "model_version_alias",
            "created",
            serde_json::json!({"name": "fraud", "alias": "challenger", "version": "3"}),
        ),
        (
            "model_version",
            "created",
            serde_json::json!({"name": "unknown", "version": "1"}),
        ),
        (
            "registered_model",
            "created",
            serde_json::json!({"name": "fraud"}),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let request = delivery(SECRET, &format!("u-{i}"), now, &body(entity, action, &data));
        let (status, text) = send(&f.receiver, request).await;
        assert_eq!(
            (status, text.starts_with("unrelated")),
            (200, true),
            "{text}"
        );
    }
    assert!(requests.try_recv().is_err(), "no request queued");

    assert_eq!(count(&f.metrics, "accepted"), "1");
    assert_eq!(count(&f.metrics, "duplicate"), "1");
    assert_eq!(count(&f.metrics, "stale"), "1");
    assert_eq!(count(&f.metrics, "unrelated"), "3");
    assert_eq!(count(&f.metrics, "unavailable"), "1");
    assert!(
        f.metrics
            .encode()
            .contains("mlrollout_registry_webhook_reconciles_total 2"),
        "{}",
        f.metrics.encode()
    );
}

#[tokio::test]
async fn forged_malformed_and_oversized_deliveries_are_refused_and_counted() {
    let f = fixture();
    let mut writer = Writer::<ModelDeployment>::default();
    writer.apply_watcher_event(&watcher::Event::Apply(resource("a", "fraud")));
    let mut requests = f.triggers.attach(writer.as_reader());
    let created = body(
        "model_version",
        "created",
        &serde_json::json!({"name": "fraud", "version": "2"}),
    );

    let (status, text) = send(&f.receiver, delivery(b"guess", "f-1", NOW, &created)).await;
    assert_eq!(
        (status, text.starts_with("bad_signature")),
        (401, true),
        "{text}"
    );
    let unsigned = Request::post(MLFLOW_PATH)
        .header("X-MLflow-Delivery-Id", "f-2")
        .header("X-MLflow-Timestamp", NOW.to_string())
        .body(Body::from(created.clone()))
        .unwrap();
    let (status, _) = send(&f.receiver, unsigned).await;
    assert_eq!(status, 401);
    // A genuine signature over another body.
    let mut altered = delivery(SECRET, "f-3", NOW, &created);
    *altered.body_mut() = Body::from(
        created
            .iter()
            .map(|b| b.to_ascii_uppercase())
            .collect::<Vec<_>>(),
    );
    let (status, _) = send(&f.receiver, altered).await;
    assert_eq!(status, 401);
    // Signed, but not MLflow's payload: 400.
    let (status, text) = send(&f.receiver, delivery(SECRET, "f-4", NOW, b"[1, 2")).await;
    assert_eq!(
        (status, text.starts_with("malformed")),
        (400, true),
        "{text}"
    );
    let huge = vec![b' '; MAX_BODY_BYTES + 1];
    let (status, _) = send(&f.receiver, delivery(SECRET, "f-5", NOW, &huge)).await;
    assert_eq!(status, 413);
    let (status, _) = send(
        &f.receiver,
        Request::get(MLFLOW_PATH).body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, 405);

    assert_eq!(count(&f.metrics, "bad_signature"), "3");
    assert_eq!(count(&f.metrics, "malformed"), "2");
    assert!(requests.try_recv().is_err(), "nothing requested");
    // A forged delivery did not poison the replay cache: the genuine one with its id is taken.
    let (status, text) = send(&f.receiver, delivery(SECRET, "f-1", NOW, &created)).await;
    assert_eq!(
        (status, text.starts_with("accepted")),
        (200, true),
        "{text}"
    );
    assert_eq!(requests.next().await.unwrap().name, "a");
}
