//! Registry events in: MLflow's registry webhooks make the ModelDeployments that follow a model
//! reconcile at once (a new candidate version evaluated, a hand-moved champion alias rolled out)
//! instead of at their next requeue. Polling stays: a lost or refused delivery only means the
//! change is seen at the next requeue, as without webhooks.
//!
//! [`mlflow`] is the pure part (signature, freshness, payload); this module is the endpoint,
//! `POST /webhooks/mlflow` on a listener of its own (`--registry-webhook-addr`): MLflow must reach
//! it, possibly from outside the cluster, while `/metrics` and the probes stay internal, and it
//! exists only when a secret is configured.
//!
//! Replays: a delivery is accepted only if signed within `max_age` (either way), and the ids of
//! accepted deliveries are remembered (a bounded LRU), so a replay inside the window is
//! acknowledged (`duplicate`) and triggers nothing, and one outside it is refused (`stale`).
//! Even a replay that got through would be harmless: a request only makes a reconcile come
//! earlier, and the reconcile reads the resource and the registry afresh.

pub mod mlflow;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use ring::hmac;

use crate::controller::triggers::Triggers;
use crate::metrics::Metrics;
use mlflow::{DeliveryHeaders, Event, Outcome, Refusal};

/// Path of MLflow's deliveries.
pub const MLFLOW_PATH: &str = "/webhooks/mlflow";
/// Largest body read (MLflow's payloads are well under a kilobyte; tags and descriptions can
/// make them larger): a bigger one is refused with 413, counted `malformed`.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Delivery ids remembered for replay detection; more accepted deliveries than this within
/// the window let the oldest id be replayed once more, which costs one extra reconcile.
pub const REPLAY_CACHE: NonZeroUsize = NonZeroUsize::new(4096).unwrap();
/// How old (or how far in the future) a delivery may be signed.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

/// The endpoint's settings.
#[derive(Clone)]
pub struct WebhookConfig {
    /// The secret set on the MLflow webhook (HMAC-SHA256 key).
    pub secret: Vec<u8>,
    /// Freshness window of a delivery's signed timestamp.
    pub max_age: Duration,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("secret", &"<redacted>")
            .field("max_age", &self.max_age)
            .finish()
    }
}

/// Source of "now" in Unix seconds (tests move it).
pub type UnixClock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Receives deliveries: authenticates, de-duplicates, and requests reconciles.
#[derive(Clone)]
pub struct WebhookReceiver {
    key: hmac::Key,
    max_age: Duration,
    seen: Arc<Mutex<lru::LruCache<String, i64>>>,
    triggers: Triggers,
    metrics: Metrics,
    clock: UnixClock,
}

/// The answer to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub outcome: Outcome,
    /// Reconciles requested.
    pub triggered: usize,
    pub message: String,
}

impl WebhookReceiver {
    pub fn new(config: &WebhookConfig, triggers: Triggers, metrics: Metrics) -> Self {
        Self {
            key: mlflow::key(&config.secret),
            max_age: config.max_age,
            seen: Arc::new(Mutex::new(lru::LruCache::new(REPLAY_CACHE))),
            triggers,
            metrics,
            clock: Arc::new(|| k8s_openapi::jiff::Timestamp::now().as_second()),
        }
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: UnixClock) -> Self {
        self.clock = clock;
        self
    }

    /// Handles one delivery of MLflow and counts its outcome.
    pub fn receive(&self, headers: &HeaderMap, body: &[u8]) -> Answer {
        let answer = self.decide(headers, body);
        self.metrics
            .observe_registry_webhook(answer.outcome.as_str(), answer.triggered);
        match answer.outcome {
            Outcome::Accepted | Outcome::Duplicate | Outcome::Unrelated => {
                tracing::info!(outcome = answer.outcome.as_str(), triggered = answer.triggered, message = %answer.message, "registry webhook");
            }
            _ => {
                tracing::warn!(outcome = answer.outcome.as_str(), status = answer.status.as_u16(), message = %answer.message, "registry webhook refused");
            }
        }
        answer
    }

    fn decide(&self, headers: &HeaderMap, body: &[u8]) -> Answer {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let delivery = DeliveryHeaders {
            delivery_id: text(mlflow::DELIVERY_ID_HEADER),
            timestamp: text(mlflow::TIMESTAMP_HEADER),
            signature: text(mlflow::SIGNATURE_HEADER),
        };
        let authentic =
            match mlflow::authenticate(&self.key, delivery, body, (self.clock)(), self.max_age) {
                Ok(authentic) => authentic,
                Err(refusal) => return refused(&refusal),
            };
        let event = match mlflow::parse_event(body) {
            Ok(event) => event,
            Err(refusal) => return refused(&refusal),
        };
        let id = authentic.delivery_id;
        if !self.remember(id, authentic.timestamp) {
            return answer(
                StatusCode::OK,
                Outcome::Duplicate,
                0,
                format!("delivery {id} was already received; nothing done"),
            );
        }
        let Event::Model(event) = event else {
            return answer(
                StatusCode::OK,
                Outcome::Unrelated,
                0,
                format!("{event} is not acted on"),
            );
        };
        match self.triggers.request(|r| event.concerns(&r.spec.model)) {
            Ok(0) => answer(
                StatusCode::OK,
                Outcome::Unrelated,
                0,
                format!("{event}: no ModelDeployment here follows it"),
            ),
            Ok(n) => answer(
                StatusCode::OK,
                Outcome::Accepted,
                n,
                format!("{event}: {n} reconcile(s) requested"),
            ),
            Err(not_running) => {
                // Not remembered: MLflow retries a 503 with the same id, maybe to the leader.
                self.forget(id);
                answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Outcome::Unavailable,
                    0,
                    not_running.to_string(),
                )
            }
        }
    }

    /// Records an accepted delivery id; false if it was already there.
    fn remember(&self, id: &str, timestamp: i64) -> bool {
        match self.seen.lock() {
            Ok(seen) if seen.contains(id) => false,
            Ok(mut seen) => {
                seen.put(id.to_owned(), timestamp);
                true
            }
            // A poisoned cache: treat as new (a duplicate reconcile is harmless).
            Err(_) => true,
        }
    }

    fn forget(&self, id: &str) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.pop(id);
        }
    }
}

fn answer(status: StatusCode, outcome: Outcome, triggered: usize, message: String) -> Answer {
    Answer {
        status,
        outcome,
        triggered,
        message,
    }
}

fn refused(refusal: &Refusal) -> Answer {
    let status = match refusal.outcome() {
        Outcome::BadSignature | Outcome::Stale => StatusCode::UNAUTHORIZED,
        _ => StatusCode::BAD_REQUEST,
    };
    answer(status, refusal.outcome(), 0, refusal.to_string())
}

/// The router with `POST /webhooks/mlflow`.
pub fn router(receiver: WebhookReceiver) -> Router {
    Router::new()
        .route(MLFLOW_PATH, post(receive_mlflow))
        .with_state(receiver)
}

async fn receive_mlflow(
    State(receiver): State<WebhookReceiver>,
    headers: HeaderMap,
    body: Body,
) -> impl IntoResponse {
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        receiver
            .metrics
            .observe_registry_webhook(Outcome::Malformed.as_str(), 0);
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {MAX_BODY_BYTES} bytes, or cut short\n"),
        );
    };
    let answer = receiver.receive(&headers, &body);
    (
        answer.status,
        format!("{}: {}\n", answer.outcome.as_str(), answer.message),
    )
}

/// Binds the webhook listener (at start-up, so a taken port stops the operator at once).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, path = MLFLOW_PATH, "serving registry webhooks");
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
#[path = "receiver_tests.rs"]
mod tests;
