//! Notifications out, against a real HTTP receiver on 127.0.0.1 (axum): every event type
//! delivered to a CloudEvents webhook with a signature the receiver verifies, and to Slack;
//! a receiver that is down and comes back gets each notification once; a slow receiver does
//! not slow reconciles; a full queue drops instead of waiting; a permanent error is not retried.
//!
//! The dispatcher tests run anywhere (`cargo test --test notifications`). The lifecycle tests run
//! the real controller on the real API server (`--features harness`, see `common::cluster`) in
//! scaled virtual time, with the doubles of `common::operator` for MLflow, Prometheus and drift.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use k8s_openapi::jiff::Timestamp;
use mlrollout::api::{
    EventReason, ModelDeploymentStatus, NotificationEvent, NotificationSink, Phase, Severity,
};
use mlrollout::core::decide::{EventCause, EventIntent};
use mlrollout::core::notify::{Notification, NotifyInput, notifications};
use mlrollout::metrics::Metrics;
use mlrollout::notify::{Notifier, NotifierSettings};
use mlrollout::retry::RetryPolicy;
use serde_json::{Value, json};
use strum::IntoEnumIterator;

const HMAC_KEY: &str = "a shared secret of the receiver";

// ---------------------------------------------------------------------------------------------
// The receiver
// ---------------------------------------------------------------------------------------------

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    content_type: Option<String>,
    signature: Option<String>,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Clone, Default)]
struct ReceiverState {
    seen: Arc<Mutex<Vec<Received>>>,
    delay: Arc<Mutex<Duration>>,
    status: Arc<Mutex<u16>>,
}

/// An HTTP server on 127.0.0.1 that records every request, then (after `delay`) answers
/// `status` (200 unless set).
struct Receiver {
    addr: SocketAddr,
    state: ReceiverState,
    task: tokio::task::JoinHandle<()>,
}

async fn record(
    State(state): State<ReceiverState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    state.seen.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        content_type: header("content-type"),
        signature: header("x-mlrollout-signature"),
        body: body.to_vec(),
    });
    let delay = *state.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let status = *state.status.lock().unwrap();
    StatusCode::from_u16(if status == 0 { 200 } else { status }).unwrap()
}

impl Receiver {
    async fn start() -> Receiver {
        Receiver::on(0).await
    }

    async fn on(port: u16) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().unwrap();
        let state = ReceiverState::default();
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, state, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn slow(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    fn answer(&self, status: u16) {
        *self.state.status.lock().unwrap() = status;
    }

    fn received(&self, path: &str) -> Vec<Received> {
        let seen = self.state.seen.lock().unwrap();
        seen.iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Waits (real time) until `done` holds for what arrived at `path`.
    async fn wait(
        &self,
        what: &str,
        path: &str,
        limit: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.received(path);
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; got {:#?}",
                got.iter().map(Received::json).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The signature header checked the way a receiver does: HMAC-SHA256 of the raw body.
fn assert_signed(r: &Received) {
    let header = r.signature.as_deref().expect("a signature header");
    let hex = header.strip_prefix("sha256=").expect("sha256=<hex>");
    let tag: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, HMAC_KEY.as_bytes());
    ring::hmac::verify(&key, &r.body, &tag).expect("the signature verifies");
    let wrong = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"another key");
    assert!(ring::hmac::verify(&wrong, &r.body, &tag).is_err());
}

/// The CloudEvent `r` carries, checked for the required attributes; returns its type suffix.
fn cloud_event(r: &Received) -> (String, Value) {
    assert_eq!(
        r.content_type.as_deref(),
        Some("application/cloudevents+json")
    );
    assert_signed(r);
    let ce = r.json();
    assert_eq!(ce["specversion"], "1.0");
    for attribute in ["id", "source", "type", "time", "subject"] {
        assert!(ce[attribute].is_string(), "{attribute} in {ce}");
    }
    let kind = ce["type"]
        .as_str()
        .unwrap()
        .strip_prefix("io.mlrollout.modeldeployment.")
        .expect("type prefix")
        .to_owned();
    (kind, ce)
}

fn event_types(got: &[Received]) -> BTreeSet<String> {
    got.iter().map(|r| cloud_event(r).0).collect()
}

// ---------------------------------------------------------------------------------------------
// A notifier on the receiver
// ---------------------------------------------------------------------------------------------

fn offline_client() -> kube::Client {
    common::http::install_crypto_provider();
    kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap()
}

/// Default sinks (the operator's), their Secrets mounted in a temporary directory: a signed
/// webhook at `/ce` and Slack at `/slack`.
fn defaults_on(receiver_url: &str, secrets: &std::path::Path) -> Vec<NotificationSink> {
    std::fs::create_dir_all(secrets.join("notify")).unwrap();
    std::fs::write(secrets.join("notify/hmac"), format!("{HMAC_KEY}\n")).unwrap();
    std::fs::write(
        secrets.join("notify/slack"),
        format!("{receiver_url}/slack"),
    )
    .unwrap();
    serde_json::from_value(json!([
        {"name": "ce", "webhook": {"url": format!("{receiver_url}/ce"),
            "secretRef": {"name": "notify", "key": "hmac"}}},
        {"name": "chat", "slack": {"urlSecretRef": {"name": "notify", "key": "slack"}}}
    ]))
    .unwrap()
}

/// Settings with one default sink, the signed webhook at `receiver_url`.
fn webhook_only(receiver_url: &str, secrets: &std::path::Path) -> NotifierSettings {
    let mut defaults = defaults_on(receiver_url, secrets);
    defaults.truncate(1);
    NotifierSettings {
        defaults,
        secrets_dir: Some(secrets.to_owned()),
        ..NotifierSettings::default()
    }
}

/// A dispatcher whose Kubernetes client reaches nothing (the sinks' Secrets are files).
fn start_offline(metrics: &Metrics, settings: NotifierSettings) -> Notifier {
    Notifier::start(offline_client(), metrics.clone(), settings).unwrap()
}

fn fast_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        base: Duration::from_millis(100),
        max: Duration::from_millis(300),
    }
}

/// One notification of each type, as the decision of a reconcile would produce them.
fn one_of_each(now: Timestamp) -> Vec<Notification> {
    let before = ModelDeploymentStatus {
        phase: Phase::Progressing,
        stable_version: Some("3".into()),
        candidate_version: Some("4".into()),
        current_step: Some(1),
        canary_weight: 50,
        ..Default::default()
    };
    let after = ModelDeploymentStatus {
        drift: Some(mlrollout::api::DriftSummary {
            severity: Severity::High,
            drifted_share: 0.5,
            ..Default::default()
        }),
        ..before.clone()
    };
    let events: Vec<EventIntent> = [
        EventReason::RetrainingStarted,
        EventReason::EvaluationFailed,
        EventReason::ShadowStarted,
        EventReason::StepStarted,
        EventReason::Promoted,
        EventReason::RolledBack,
        EventReason::AnalysisInconclusive,
        EventReason::DriftSeverityChanged,
    ]
    .into_iter()
    .map(|reason| EventIntent {
        warning: false,
        reason: EventCause::Lifecycle(reason),
        note: format!("{reason} happened"),
    })
    .collect();
    notifications(&NotifyInput {
        namespace: "ml",
        name: "fraud",
        uid: "uid-1",
        model: "fraud",
        before: &before,
        after: &after,
        events: &events,
        measurements: None,
        now,
    })
}

/// `mlrollout_notifications_total` summed over the series whose labels contain `labels`.
fn count(metrics: &Metrics, labels: &[&str]) -> u64 {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("mlrollout_notifications_total{"))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

// ---------------------------------------------------------------------------------------------
// The dispatcher
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_event_type_reaches_the_webhook_signed_and_slack_readable() {
    let receiver = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let metrics = Metrics::default();
    let notifier = start_offline(
        &metrics,
        NotifierSettings {
            defaults: defaults_on(&receiver.url(""), secrets.path()),
            secrets_dir: Some(secrets.path().to_owned()),
            ..NotifierSettings::default()
        },
    );
    let sent = one_of_each(Timestamp::from_second(1_800_000_000).unwrap());
    assert_eq!(sent.len(), 8);
    notifier.announce(None, "ml", sent.clone());

    let ce = receiver
        .wait("8 CloudEvents", "/ce", Duration::from_secs(20), |got| {
            got.len() >= 8
        })
        .await;
    let all: BTreeSet<String> = NotificationEvent::iter()
        .map(|e| e.as_str().to_owned())
        .collect();
    assert_eq!(event_types(&ce), all);
    let ids: BTreeSet<String> = ce
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_owned())
        .collect();
    let sent_ids: BTreeSet<String> = sent.iter().map(|n| n.id.clone()).collect();
    assert_eq!(ids, sent_ids);
    let rolled_back = ce
        .iter()
        .map(|r| r.json())
        .find(|e| e["type"] == "io.mlrollout.modeldeployment.rolledBack")
        .unwrap();
    assert_eq!(
        rolled_back["source"],
        "/apis/mlrollout.io/v1alpha1/namespaces/ml/modeldeployments/fraud"
    );
    assert_eq!(rolled_back["data"]["candidateVersion"], "4");

    let slack = receiver
        .wait(
            "8 Slack messages",
            "/slack",
            Duration::from_secs(20),
            |got| got.len() >= 8,
        )
        .await;
    for message in &slack {
        assert_eq!(message.content_type.as_deref(), Some("application/json"));
        assert_eq!(message.signature, None, "Slack messages are not signed");
        let body = message.json();
        let text = body["text"].as_str().unwrap();
        assert!(text.contains("fraud: "), "{text}");
        assert!(text.contains("kubectl describe mdep fraud -n ml"), "{text}");
        assert!(body["blocks"].as_array().is_some_and(|b| b.len() >= 4));
    }
    let texts: Vec<String> = slack
        .iter()
        .map(|m| m.json()["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("fraud: version 4 promoted")),
        "{texts:#?}"
    );
    assert_eq!(count(&metrics, &["outcome=\"delivered\""]), 16);
    assert_eq!(
        count(
            &metrics,
            &["sink=\"slack\"", "event=\"promoted\"", "delivered"]
        ),
        1
    );
    assert_eq!(count(&metrics, &["outcome=\"failed\""]), 0);
}

#[tokio::test]
async fn a_receiver_that_is_down_then_up_gets_each_notification_once() {
    let port = common::http::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let secrets = tempfile::tempdir().unwrap();
    let metrics = Metrics::default();
    let notifier = start_offline(
        &metrics,
        NotifierSettings {
            retry: fast_retries(60),
            ..webhook_only(&url, secrets.path())
        },
    );
    let mut sent = one_of_each(Timestamp::from_second(1_800_000_000).unwrap());
    sent.truncate(2);
    notifier.announce(None, "ml", sent.clone());
    // Down: every attempt is refused for a while.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(count(&metrics, &["outcome=\"retried\""]) >= 2);
    assert_eq!(count(&metrics, &["outcome=\"delivered\""]), 0);

    let receiver = Receiver::on(port).await;
    let got = receiver
        .wait(
            "both notifications",
            "/ce",
            Duration::from_secs(20),
            |got| got.len() >= 2,
        )
        .await;
    // Give a duplicate time to show up, then count.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got_after = receiver.received("/ce");
    assert_eq!(got_after.len(), 2, "each delivered once: {got:?}");
    let ids: BTreeSet<String> = got_after
        .iter()
        .map(|r| cloud_event(r).1["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, sent.iter().map(|n| n.id.clone()).collect());
    assert_eq!(count(&metrics, &["outcome=\"delivered\""]), 2);
    assert_eq!(count(&metrics, &["outcome=\"failed\""]), 0);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let receiver = Receiver::start().await;
    receiver.slow(Duration::from_secs(30));
    let secrets = tempfile::tempdir().unwrap();
    let metrics = Metrics::default();
    let notifier = start_offline(
        &metrics,
        NotifierSettings {
            queue: 1,
            concurrency: 1,
            timeout: Duration::from_secs(60),
            ..webhook_only(&receiver.url(""), secrets.path())
        },
    );
    let sent = one_of_each(Timestamp::from_second(1_800_000_000).unwrap());
    let started = Instant::now();
    notifier.announce(None, "ml", sent);
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "announce never waits: {:?}",
        started.elapsed()
    );
    // At most one in flight, one waiting for it and one queued: five or more of the eight drop.
    let dropped = count(&metrics, &["outcome=\"dropped\"", "sink=\"webhook\""]);
    assert!(dropped >= 5, "dropped {dropped}");
    receiver
        .wait(
            "the first delivery",
            "/ce",
            Duration::from_secs(10),
            |got| !got.is_empty(),
        )
        .await;
}

#[tokio::test]
async fn permanent_errors_are_given_up_and_transient_ones_retried() {
    let receiver = Receiver::start().await;
    receiver.answer(404);
    let secrets = tempfile::tempdir().unwrap();
    let metrics = Metrics::default();
    let notifier = start_offline(
        &metrics,
        NotifierSettings {
            retry: fast_retries(5),
            ..webhook_only(&receiver.url(""), secrets.path())
        },
    );
    let sent = one_of_each(Timestamp::from_second(1_800_000_000).unwrap());
    notifier.announce(None, "ml", vec![sent[0].clone()]);
    common::cluster::eventually("the 404 counted", Duration::from_secs(10), || async {
        (count(&metrics, &["outcome=\"failed\""]) == 1).then_some(())
    })
    .await;
    assert_eq!(receiver.received("/ce").len(), 1, "a 404 is not retried");
    assert_eq!(count(&metrics, &["outcome=\"retried\""]), 0);

    // 503 five times in a row: four retries, then given up.
    receiver.answer(503);
    notifier.announce(None, "ml", vec![sent[1].clone()]);
    common::cluster::eventually("the 503s given up", Duration::from_secs(10), || async {
        (count(&metrics, &["outcome=\"failed\""]) == 2).then_some(())
    })
    .await;
    assert_eq!(receiver.received("/ce").len(), 1 + 5);
    assert_eq!(count(&metrics, &["outcome=\"retried\""]), 4);
}

// ---------------------------------------------------------------------------------------------
// The controller on the real API server
// ---------------------------------------------------------------------------------------------

#[cfg(feature = "harness")]
mod lifecycle {
    use super::*;
    use common::cluster::create_secret;
    use common::operator::{Operator, complete_job, test_context};
    use common::world::{HOUR, MINUTE, MODEL, World, drive_to_job_with, resource};
    use kube::api::{Patch, PatchParams};
    use mlrollout::api::ModelDeployment;
    use mlrollout::controller::WatchScope;

    /// The lifecycle resource of `common::world`, announcing to a signed webhook at `/ce` and to
    /// Slack at `/slack` of `receiver` (Secrets in the resource's namespace).
    async fn announcing(world: &World, receiver: &Receiver) -> ModelDeployment {
        create_secret(
            &world.client,
            &world.ns,
            "notify",
            &[
                ("hmac", HMAC_KEY.to_owned()),
                ("slack", receiver.url("/slack")),
            ],
        )
        .await;
        let mut r = resource(&world.ns);
        r.spec.notifications = Some(
            serde_json::from_value(json!({"sinks": [
                {"name": "ce", "webhook": {"url": receiver.url("/ce"),
                    "secretRef": {"name": "notify", "key": "hmac"}}},
                {"name": "chat", "slack": {"urlSecretRef": {"name": "notify", "key": "slack"}}}
            ]}))
            .unwrap(),
        );
        r
    }

    /// The real controller with a notifier (and the world's doubles); returns its metrics.
    fn operator(world: &World, settings: NotifierSettings) -> (Operator, Metrics) {
        let ctx = test_context(world.client.clone(), world.gate.clone())
            .with_analyzer(world.analyzer.clone())
            .with_drift(world.drift.clone())
            .with_clock(world.clock.controller_clock());
        let metrics = ctx.metrics.clone();
        let notifier = Notifier::start(world.client.clone(), metrics.clone(), settings).unwrap();
        let ctx = ctx.with_notifier(notifier);
        (
            Operator::run(ctx, WatchScope::Namespace(world.ns.clone())),
            metrics,
        )
    }

    async fn annotate(world: &World, key: &str, value: Option<&str>) {
        let patch = json!({"metadata": {"annotations": {key: value}}});
        world
            .mdeps()
            .patch(MODEL, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    fn assert_each_once(got: &[Received]) {
        let ids: Vec<String> = got
            .iter()
            .map(|r| cloud_event(r).1["id"].as_str().unwrap().to_owned())
            .collect();
        let unique: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "no notification twice: {ids:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_lifecycle_announces_drift_retraining_shadow_steps_pause_and_promotion() {
        let world = World::new("nt-promote").await;
        let receiver = Receiver::start().await;
        let (operator, metrics) = operator(&world, NotifierSettings::default());
        let job = drive_to_job_with(&world, announcing(&world, &receiver).await).await;
        world.complete_job(&job, 0.91).await;
        world
            .clock
            .wait_for("the first canary step", HOUR, || async {
                let s = world.status().await;
                (s.phase == Phase::Progressing && s.current_step == Some(0)).then_some(())
            })
            .await;
        annotate(&world, "mlrollout.io/pause", Some("true")).await;
        world
            .clock
            .wait_for("paused", HOUR, || async {
                world.status().await.paused.then_some(())
            })
            .await;
        world.clock.sleep(2 * MINUTE).await;
        annotate(&world, "mlrollout.io/pause", None).await;
        world
            .clock
            .wait_for("promoted to version 4", 2 * HOUR, || async {
                let s = world.status().await;
                (s.phase == Phase::Stable && s.stable_version.as_deref() == Some("4")).then_some(())
            })
            .await;

        let want: BTreeSet<String> = [
            "driftSeverityChanged",
            "retrainingStarted",
            "shadowStarted",
            "stepStarted",
            "paused",
            "promoted",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let ce = receiver
            .wait(
                "the promotion's CloudEvents",
                "/ce",
                Duration::from_secs(30),
                |got| {
                    event_types(got) == want
                        && got
                            .iter()
                            .filter(|r| cloud_event(r).0 == "stepStarted")
                            .count()
                            == 3
                },
            )
            .await;
        assert_each_once(&ce);
        let promoted = ce
            .iter()
            .map(|r| cloud_event(r).1)
            .find(|e| e["type"] == "io.mlrollout.modeldeployment.promoted")
            .unwrap();
        assert_eq!(promoted["subject"], MODEL);
        assert_eq!(promoted["data"]["stableVersion"], "4");
        assert_eq!(promoted["data"]["previousVersion"], "3");
        assert_eq!(promoted["data"]["namespace"], world.ns.as_str());
        let paused = ce
            .iter()
            .map(|r| cloud_event(r).1)
            .find(|e| e["type"] == "io.mlrollout.modeldeployment.paused")
            .unwrap();
        assert_eq!(paused["data"]["pauseReason"], "manual");
        let drift: Vec<Value> = ce
            .iter()
            .map(|r| cloud_event(r).1)
            .filter(|e| e["data"]["event"] == "driftSeverityChanged")
            .map(|e| e["data"]["drift"]["to"].clone())
            .collect();
        assert!(drift.contains(&json!("high")), "{drift:?}");

        let slack = receiver
            .wait(
                "as many Slack messages",
                "/slack",
                Duration::from_secs(30),
                |got| got.len() == ce.len(),
            )
            .await;
        let texts: Vec<String> = slack
            .iter()
            .map(|m| m.json()["text"].as_str().unwrap().to_owned())
            .collect();
        let inspect = format!("kubectl describe mdep {MODEL} -n {}", world.ns);
        assert!(texts.iter().all(|t| t.contains(&inspect)), "{texts:#?}");
        assert!(
            texts
                .iter()
                .any(|t| t.contains(&format!("{MODEL}: version 4 promoted"))),
            "{texts:#?}"
        );
        let delivered = count(&metrics, &["outcome=\"delivered\""]);
        assert_eq!(delivered, (ce.len() + slack.len()) as u64);
        assert_eq!(count(&metrics, &["outcome=\"failed\""]), 0);
        world.finish(operator).await;
    }

    /// `mlrollout_reconcile_duration_seconds`: (reconciles, reconciles within `le` seconds).
    fn reconcile_durations(metrics: &Metrics, le: &str) -> (u64, u64) {
        let text = metrics.encode();
        let value = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (
            value("mlrollout_reconcile_duration_seconds_count"),
            value(&format!(
                "mlrollout_reconcile_duration_seconds_bucket{{le=\"{le}\"}}"
            )),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_receiver_does_not_slow_the_rejection_and_the_rollback() {
        let world = World::new("nt-slow").await;
        let receiver = Receiver::start().await;
        receiver.slow(Duration::from_secs(10));
        let (operator, metrics) = operator(
            &world,
            NotifierSettings {
                timeout: Duration::from_secs(30),
                ..NotifierSettings::default()
            },
        );
        let first = drive_to_job_with(&world, announcing(&world, &receiver).await).await;
        // The candidate is worse than the champion (0.88): rejected.
        world.complete_job(&first, 0.85).await;
        world.wait_phase(Phase::Failed, HOUR).await;
        // After the cooldown the drift (still high) starts attempt 2.
        world.clock.advance(HOUR);
        let second = world
            .clock
            .wait_for("attempt 2", HOUR, || async {
                let s = world.status().await;
                let a = s.retraining_attempts.last()?;
                (s.phase == Phase::Retraining && a.number == 2).then(|| a.job_name.clone())
            })
            .await;
        complete_job(
            &world.client,
            &world.ns,
            &second,
            &world.registry,
            MODEL,
            5,
            &[("accuracy", 0.91)],
            true,
        )
        .await;
        world.wait_weights("the 50% step", (50, 50), 2 * HOUR).await;
        world.analyzer.set("error-rate", "candidate", Some(0.03));
        let regression = Instant::now();
        world.wait_phase(Phase::RolledBack, HOUR).await;
        let reaction = regression.elapsed();
        // Each notification takes the receiver 10 s; the rollback came within a few analysis
        // intervals (10 s virtual = 1/3 s real) all the same.
        assert!(
            reaction < Duration::from_secs(5),
            "rollback after {reaction:?}"
        );
        let (reconciles, quick) = reconcile_durations(&metrics, "2.5");
        assert!(reconciles > 20, "{reconciles} reconciles");
        assert_eq!(quick, reconciles, "every reconcile took under 2.5 s");

        let want: BTreeSet<String> = [
            "driftSeverityChanged",
            "retrainingStarted",
            "candidateRejected",
            "shadowStarted",
            "stepStarted",
            "rolledBack",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let ce = receiver
            .wait(
                "the CloudEvents, slowly",
                "/ce",
                Duration::from_secs(120),
                |got| event_types(got) == want,
            )
            .await;
        assert_each_once(&ce);
        let rolled = ce
            .iter()
            .map(|r| cloud_event(r).1)
            .find(|e| e["type"] == "io.mlrollout.modeldeployment.rolledBack")
            .unwrap();
        assert_eq!(rolled["data"]["candidateVersion"], "5");
        assert_eq!(rolled["data"]["rolloutReason"], "AnalysisFailed");
        assert_eq!(rolled["data"]["measurement"]["metric"], "error-rate");
        assert_eq!(rolled["data"]["measurement"]["verdict"], "Failed");
        let rejected = ce
            .iter()
            .map(|r| cloud_event(r).1)
            .find(|e| e["type"] == "io.mlrollout.modeldeployment.candidateRejected")
            .unwrap();
        assert_eq!(rejected["data"]["candidateVersion"], "4");
        assert_eq!(rejected["data"]["measurement"]["metric"], "accuracy");
        assert_eq!(rejected["data"]["measurement"]["candidate"], 0.85);
        let slack = receiver
            .wait(
                "a Slack rollback message",
                "/slack",
                Duration::from_secs(120),
                |got| {
                    got.iter().any(|m| {
                        m.json()["text"]
                            .as_str()
                            .is_some_and(|t| t.contains("version 5 rolled back (AnalysisFailed)"))
                    })
                },
            )
            .await;
        let rollback = slack
            .iter()
            .map(Received::json)
            .find(|m| m["text"].as_str().unwrap().contains("rolled back"))
            .unwrap();
        let blocks = serde_json::to_string(&rollback["blocks"]).unwrap();
        assert!(
            blocks.contains("`error-rate` Failed: candidate 0.0300"),
            "{blocks}"
        );
        assert_eq!(count(&metrics, &["outcome=\"failed\""]), 0);
        world.finish(operator).await;
    }
}
