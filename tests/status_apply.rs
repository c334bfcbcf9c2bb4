//! Status under real server-side apply: every optional status field is set and then removed by
//! omission (never by `null`, which the API server rejects for non-nullable fields), and two
//! writers working from the same read never lose the newer status (the apply carries the
//! `resourceVersion` it was decided on; the stale writer gets 409 Conflict and the controller
//! retries on fresh state).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane: full suite only, `cargo test --features harness` (tests/run.sh turns it
// on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::CustomResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use mlrollout::api::{
    AdvisorStatus, AnalysisStatus, DeferredTrigger, DriftSummary, EvaluationStatus,
    FeatureDriftStatus, MeasurementRecord, MetricStatus, ModelDeployment, ModelDeploymentStatus,
    Phase, RegistryWrite, RetrainingAttempt, RolloutRecord,
};
use mlrollout::controller::act::write_status;
use mlrollout::controller::{Context, WatchScope, error_policy};
use mlrollout::error::{Error, ErrorCategory};
use mlrollout::metrics::Metrics;
use mlrollout::registry::memory::InMemoryRegistry;
use serde_json::Value;

use common::cluster::{self, cluster, eventually};
use common::operator::Operator;
use common::registry::{ScriptedRegistry, register_versions};

const NAME: &str = "fraud-detector";
const LIMIT: Duration = Duration::from_secs(30);

fn resource(namespace: &str) -> ModelDeployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "model": {"trackingUri": "http://127.0.0.1:9", "name": NAME},
            "traffic": {"provider": "gatewayAPI", "parentRefs": [{"name": "gw"}]},
            "shadow": {"duration": "1h"},
            "rollout": {"steps": [10, 50, 100], "stepDuration": "1h"}
        }
    }))
    .expect("resource")
}

/// Whole seconds: `Time` is written with second precision, so these read back equal.
fn at(offset: i64) -> Time {
    Time(Timestamp::from_second(1_800_000_000 + offset).unwrap())
}

fn condition(type_: &str, status: &str, reason: &str, generation: i64) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: format!("{type_} is {status} ({reason})"),
        last_transition_time: at(1),
        observed_generation: Some(generation),
    }
}

/// A status with every field set, nested optional fields included (the first element of each
/// list carries all of its optional fields).
fn full_status(generation: i64) -> ModelDeploymentStatus {
    ModelDeploymentStatus {
        phase: Phase::Progressing,
        paused: true,
        pause_reason: Some(mlrollout::api::PauseReason::Manual),
        observed_generation: Some(generation),
        conditions: vec![
            condition("Ready", "True", "Available", generation),
            condition("Progressing", "False", "Paused", generation),
        ],
        stable_version: Some("3".into()),
        stable_model_uri: Some(format!("models:/{NAME}/3")),
        candidate_version: Some("4".into()),
        canary_weight: 50,
        mirror_percent: 25,
        current_step: Some(1),
        phase_started_at: Some(at(2)),
        drift: Some(DriftSummary {
            checked_at: Some(at(3)),
            reference_rows: 5000,
            current_rows: 1200,
            drift_detected: true,
            severity: mlrollout::api::Severity::High,
            drifted_share: 0.25,
            accuracy: Some(0.875),
            label_join: Some(mlrollout::api::LabelJoinStatus {
                joined: 1100,
                unlabelled_predictions: 100,
                unmatched_labels: 7,
                duplicate_labels: 2,
                duplicate_predictions: 1,
            }),
            features: vec![FeatureDriftStatus {
                name: "amount".into(),
                test: mlrollout::api::DriftTest::Ks,
                statistic: Some(0.375),
                p_value_adjusted: Some(0.0005),
                psi: Some(0.5),
                // Set here only so the field is applied and removed like the others.
                insufficient_data: true,
                severity: mlrollout::api::Severity::High,
            }],
        }),
        retraining_attempts: vec![RetrainingAttempt {
            number: 1,
            id: "attempt-1".into(),
            trigger: mlrollout::api::Trigger::Drift,
            job_name: format!("{NAME}-retrain-1"),
            started_at: Some(at(4)),
            finished_at: Some(at(5)),
            outcome: mlrollout::api::AttemptOutcome::Succeeded,
            candidate_version: Some("4".into()),
            message: Some("registered version 4".into()),
        }],
        history: vec![RolloutRecord {
            candidate_version: "2".into(),
            previous_version: Some("1".into()),
            outcome: mlrollout::api::RolloutOutcome::Promoted,
            reason: mlrollout::api::RolloutReason::Promoted,
            finished_at: Some(at(6)),
        }],
        candidate_source: Some(mlrollout::api::CandidateSource::Retraining),
        evaluation: Some(EvaluationStatus {
            metric: "accuracy".into(),
            candidate_value: Some(0.9125),
            champion_value: Some(0.875),
            passed: true,
            reason: "0.9125 beats 0.875".into(),
        }),
        analysis: Some(AnalysisStatus {
            measurements: 3,
            last_measured_at: Some(at(7)),
            metrics: vec![MetricStatus {
                name: "error-rate".into(),
                passed: 2,
                failed: 0,
                inconclusive: 1,
                consecutive_errors: 0,
                recent: vec![MeasurementRecord {
                    at: Some(at(7)),
                    verdict: mlrollout::api::Verdict::Passed,
                    candidate: Some(0.0125),
                    stable: Some(0.0105),
                    threshold: "<= 1.5 x stable".into(),
                }],
                dry_run: true,
            }],
        }),
        deferred_trigger: Some(DeferredTrigger {
            trigger: mlrollout::api::Trigger::Drift,
            at: Some(at(8)),
            reason: "cooldown".into(),
        }),
        samples_at_last_training: Some(1200),
        schedule_anchor: Some(at(9)),
        next_drift_check_at: Some(at(10)),
        drift_check_failures: 2,
        handled_requests: [(
            "mlrollout.io/promote".to_string(),
            "next@2027-01-15T08:00:00Z".to_string(),
        )]
        .into(),
        advisor: Some(AdvisorStatus {
            digest: "sha256:0123".into(),
            at: Some(at(11)),
            needs_retrain: Some(true),
            urgency: Some(mlrollout::api::Urgency::Scheduled),
            reason: Some("drift on amount".into()),
            error: Some("answer was not JSON".into()),
            error_reason: Some(mlrollout::api::Reason::AdvisorAnswerInvalid),
        }),
        pending_registry_writes: vec![
            RegistryWrite {
                op: mlrollout::api::RegistryOp::SetTag,
                version: Some("4".into()),
                key: "mlrollout.io/rollout".into(),
                value: Some("promoted".into()),
            },
            RegistryWrite {
                op: mlrollout::api::RegistryOp::DeleteAlias,
                version: None,
                key: "challenger".into(),
                value: None,
            },
        ],
        message: Some("step 2 at 50% on the candidate".into()),
        post_promotion: Some(mlrollout::api::PostPromotionStatus {
            previous_version: "2".into(),
            analysis_until: Some(at(9)),
            warm_until: Some(at(10)),
        }),
        retained_candidate: Some(mlrollout::api::RetainedCandidate {
            version: "1".into(),
            until: Some(at(11)),
        }),
        routed_traffic: Some(mlrollout::api::status::RoutedTraffic {
            candidate_version: Some("4".into()),
            candidate_weight: 10,
            waiting_since: Some(at(9)),
            message: Some("the route keeps 10% on the candidate".into()),
        }),
        experiment: Some(mlrollout::api::ExperimentStatus {
            candidate_version: "4".into(),
            started_at: Some(at(12)),
            finished_at: Some(at(13)),
            outcome: mlrollout::api::ExperimentOutcome::Passed,
            message: Some("the experiment passed its analysis".into()),
            metrics: vec![mlrollout::api::experiment::ExperimentMetric {
                name: "error-rate".into(),
                passed: 3,
                failed: 1,
                inconclusive: 1,
                candidate: Some(0.0125),
                stable: Some(0.0105),
            }],
        }),
    }
}

/// JSON pointers of every field in `value` (objects' keys; lists through their first element).
fn field_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                let path = format!("{prefix}/{escaped}");
                out.push(path.clone());
                field_paths(child, &path, out);
            }
        }
        Value::Array(items) => {
            if let Some(first) = items.first() {
                field_paths(first, &format!("{prefix}/0"), out);
            }
        }
        _ => {}
    }
}

fn without(value: &Value, path: &str) -> Value {
    let mut copy = value.clone();
    let (parent, key) = path.rsplit_once('/').expect("a pointer");
    copy.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .expect("parent is an object")
        .remove(&key.replace("~1", "/").replace("~0", "~"));
    copy
}

/// Every field of the full status that can be cleared: removing it still deserializes, and
/// the status the operator would write then omits it. (Required fields and fields that are
/// always written, like `phase` or `drift.severity`, are not optional.)
fn optional_fields(full: &ModelDeploymentStatus) -> Vec<(String, ModelDeploymentStatus)> {
    let json = serde_json::to_value(full).unwrap();
    let mut paths = Vec::new();
    field_paths(&json, "", &mut paths);
    paths
        .into_iter()
        .filter_map(|path| {
            let status: ModelDeploymentStatus =
                serde_json::from_value(without(&json, &path)).ok()?;
            let written = serde_json::to_value(&status).unwrap();
            written.pointer(&path).is_none().then_some((path, status))
        })
        .collect()
}

struct Stored {
    typed: ModelDeploymentStatus,
    raw: Value,
    resource: ModelDeployment,
}

async fn stored(client: &kube::Client, namespace: &str) -> Stored {
    let typed: Api<ModelDeployment> = Api::namespaced(client.clone(), namespace);
    let resource = typed.get(NAME).await.expect("resource readable");
    let dynamic: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::erase::<ModelDeployment>(&()),
    );
    let raw = dynamic.get(NAME).await.expect("raw resource readable");
    Stored {
        typed: resource.status.clone().unwrap_or_default(),
        raw: raw.data.get("status").cloned().unwrap_or(Value::Null),
        resource,
    }
}

async fn create(client: &kube::Client, namespace: &str) -> ModelDeployment {
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), namespace);
    api.create(&PostParams::default(), &resource(namespace))
        .await
        .expect("resource created")
}

fn context(client: kube::Client) -> Context {
    Context::new(
        client,
        Arc::new(InMemoryRegistry::new()),
        Metrics::default(),
    )
}

#[tokio::test]
async fn every_optional_status_field_is_set_and_then_removed_by_omission() {
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "status-fields").await;
    let created = create(&client, &ns).await;
    let generation = created
        .metadata
        .generation
        .expect("the server sets a generation");
    let ctx = context(client.clone());
    let full = full_status(generation);

    // The full status sets every status field the CRD declares, so "each field" below is
    // every field of the schema, not a list kept by hand.
    let crd = ModelDeployment::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("CRD schema");
    let declared: BTreeSet<String> = schema.properties.as_ref().unwrap()["status"]
        .properties
        .as_ref()
        .expect("status properties")
        .keys()
        .cloned()
        .collect();
    let full_json = serde_json::to_value(&full).unwrap();
    let set: BTreeSet<String> = full_json.as_object().unwrap().keys().cloned().collect();
    assert_eq!(set, declared, "the full status sets every declared field");

    let always: BTreeSet<String> = serde_json::to_value(ModelDeploymentStatus::default())
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let cases = optional_fields(&full);
    let cleared: BTreeSet<&str> = cases.iter().map(|(p, _)| p.as_str()).collect();
    for field in declared.difference(&always) {
        assert!(
            cleared.contains(format!("/{field}").as_str()),
            "status.{field} is optional and must be among the cleared fields: {cleared:?}"
        );
    }
    // The four the issue named: not nullable in the CRD, so a `null` could never remove them.
    for field in [
        "/paused",
        "/driftCheckFailures",
        "/pendingRegistryWrites",
        "/handledRequests",
    ] {
        assert!(cleared.contains(field), "{field} in {cleared:?}");
    }
    eprintln!(
        "{} optional status fields ({} top-level) set and cleared",
        cases.len(),
        declared.len() - always.len()
    );

    for (path, status) in &cases {
        let before = stored(&client, &ns).await;
        write_status(&ctx, &before.resource, &ns, &full)
            .await
            .unwrap_or_else(|e| panic!("setting every field (before clearing {path}): {e}"));
        let set = stored(&client, &ns).await;
        assert_eq!(set.typed, full, "the server holds the full status");
        assert!(
            set.raw.pointer(path).is_some(),
            "{path} is set: {}",
            set.raw
        );

        write_status(&ctx, &set.resource, &ns, status)
            .await
            .unwrap_or_else(|e| panic!("clearing status{path}: {e}"));
        let after = stored(&client, &ns).await;
        assert!(
            after.raw.pointer(path).is_none(),
            "status{path} is gone after the apply that omits it: {}",
            after.raw
        );
        assert_eq!(
            &after.typed, status,
            "clearing status{path} changed nothing else"
        );
    }

    // And everything at once: only the fields that are always written stay.
    let before = stored(&client, &ns).await;
    write_status(&ctx, &before.resource, &ns, &full)
        .await
        .unwrap();
    let set = stored(&client, &ns).await;
    write_status(&ctx, &set.resource, &ns, &ModelDeploymentStatus::default())
        .await
        .expect("clearing everything");
    let after = stored(&client, &ns).await;
    assert_eq!(after.typed, ModelDeploymentStatus::default());
    let left: BTreeSet<String> = after.raw.as_object().unwrap().keys().cloned().collect();
    assert_eq!(left, always, "{}", after.raw);

    cluster::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn an_apply_with_nulls_is_rejected_by_the_real_server() {
    // What the operator used to send (a JSON merge patch in disguise): the real server refuses
    // it for non-nullable fields, which is why fields are removed by omission.
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "status-nulls").await;
    let created = create(&client, &ns).await;
    let ctx = context(client.clone());
    let set = ModelDeploymentStatus {
        phase: Phase::Stable,
        paused: true,
        pause_reason: Some(mlrollout::api::PauseReason::Manual),
        drift_check_failures: 2,
        ..Default::default()
    };
    write_status(&ctx, &created, &ns, &set).await.unwrap();

    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let body = serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": NAME},
        "status": {"phase": "Stable", "paused": null, "pauseReason": null,
            "driftCheckFailures": null, "pendingRegistryWrites": null, "handledRequests": null}
    });
    let error = api
        .patch_status(
            NAME,
            &PatchParams::apply("mlrollout").force(),
            &Patch::Apply(&body),
        )
        .await
        .expect_err("the real server rejects nulls for non-nullable fields");
    let kube::Error::Api(status) = &error else {
        panic!("expected an API error, got {error}");
    };
    assert_eq!(status.code, 422, "{status:?}");
    for field in ["paused", "driftCheckFailures"] {
        assert!(
            status.message.contains(&format!("status.{field}")),
            "the rejection names status.{field}: {}",
            status.message
        );
    }
    let after = stored(&client, &ns).await;
    assert_eq!(after.typed, set, "nothing changed");

    // The operator's way: omit them.
    let cleared = ModelDeploymentStatus {
        phase: Phase::Stable,
        ..Default::default()
    };
    write_status(&ctx, &after.resource, &ns, &cleared)
        .await
        .expect("the apply that omits the fields is accepted");
    let after = stored(&client, &ns).await;
    assert_eq!(after.typed, cleared);
    for field in ["paused", "pauseReason", "driftCheckFailures"] {
        assert!(after.raw.get(field).is_none(), "{field}: {}", after.raw);
    }

    cluster::delete_namespace(&client, &ns).await;
}

fn is_conflict(error: &Error) -> bool {
    matches!(error, Error::Kube(kube::Error::Api(s)) if s.code == 409 && s.reason == "Conflict")
}

#[tokio::test]
async fn two_writers_on_the_same_read_never_lose_the_newer_status() {
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "status-race").await;
    create(&client, &ns).await;
    // Two operator replicas (or one with a stale cache): separate clients, same field manager.
    let first = context(cluster::client().await);
    let second = context(cluster::client().await);
    let base = ModelDeploymentStatus {
        phase: Phase::Stable,
        stable_version: Some("3".into()),
        message: Some("Serving version 3".into()),
        ..Default::default()
    };
    let seed = stored(&client, &ns).await;
    write_status(&first, &seed.resource, &ns, &base)
        .await
        .unwrap();

    // One after the other, both decided on the same read.
    let read = stored(&client, &ns).await.resource;
    let newer = ModelDeploymentStatus {
        phase: Phase::Shadow,
        candidate_version: Some("4".into()),
        mirror_percent: 10,
        message: Some("written by the first replica".into()),
        ..base.clone()
    };
    let stale = ModelDeploymentStatus {
        drift_check_failures: 1,
        message: Some("written by the second replica from a stale read".into()),
        ..base.clone()
    };
    write_status(&first, &read, &ns, &newer)
        .await
        .expect("the first write wins");
    let error = write_status(&second, &read, &ns, &stale)
        .await
        .expect_err("the second write on the same resourceVersion conflicts");
    assert!(is_conflict(&error), "409 Conflict, got {error}");
    assert_eq!(error.category(), ErrorCategory::KubeConflict);
    assert_eq!(
        error.category().reason(),
        mlrollout::api::Reason::KubernetesConflict
    );
    // The controller's answer to that error: look again at once, on fresh state.
    let resource = Arc::new(read.clone());
    assert_eq!(
        error_policy(resource.clone(), &error, Arc::new(context(client.clone()))),
        Action::requeue(Duration::from_millis(200))
    );
    assert_eq!(
        error_policy(
            resource,
            &error,
            Arc::new(context(client.clone()).with_max_requeue(Duration::from_secs(60)))
        ),
        Action::requeue(Duration::from_millis(200)),
        "a conflict is retried quickly whatever the requeue cap"
    );
    let now = stored(&client, &ns).await;
    assert_eq!(now.typed, newer, "the newer status is not lost");

    // A writer that re-reads first succeeds.
    let retried = ModelDeploymentStatus {
        drift_check_failures: 1,
        message: Some("second replica, after re-reading".into()),
        ..newer.clone()
    };
    write_status(&second, &now.resource, &ns, &retried)
        .await
        .expect("after a fresh read the write goes through");
    assert_eq!(stored(&client, &ns).await.typed, retried);

    // At the same moment, many times: exactly one wins each round, and what is stored is the
    // winner's status.
    for round in 0..10 {
        let read = stored(&client, &ns).await.resource;
        let a = ModelDeploymentStatus {
            message: Some(format!("round {round}: first")),
            canary_weight: round,
            ..base.clone()
        };
        let b = ModelDeploymentStatus {
            message: Some(format!("round {round}: second")),
            mirror_percent: round,
            ..base.clone()
        };
        let (ra, rb) = tokio::join!(
            write_status(&first, &read, &ns, &a),
            write_status(&second, &read, &ns, &b)
        );
        let winner = match (&ra, &rb) {
            (Ok(()), Err(e)) if is_conflict(e) => &a,
            (Err(e), Ok(())) if is_conflict(e) => &b,
            other => panic!("round {round}: exactly one write must win, got {other:?}"),
        };
        assert_eq!(&stored(&client, &ns).await.typed, winner, "round {round}");
    }

    // Without the lock a stale writer would have silently overwritten the newer status: the
    // same stale apply minus its resourceVersion goes through.
    let current = stored(&client, &ns).await;
    let mut unlocked = read.clone();
    unlocked.metadata.resource_version = None;
    write_status(&second, &unlocked, &ns, &stale)
        .await
        .expect("an unlocked apply is not checked");
    assert_eq!(stored(&client, &ns).await.typed, stale);
    assert_ne!(current.typed, stale);

    cluster::delete_namespace(&client, &ns).await;
}

fn conflicts_counted(metrics: &Metrics) -> f64 {
    metrics
        .encode()
        .lines()
        .filter(|l| l.contains("reconcile_errors") && l.contains("reason=\"kube_conflict\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_recovers_from_a_conflict_without_losing_the_other_write() {
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "status-conflict").await;
    let memory = Arc::new(InMemoryRegistry::new());
    register_versions(&memory, NAME, 3, 3);
    // The first resolve of a pinned version is held until the test lets it go: the reconcile
    // that runs it decides on a view the test then makes stale.
    let registry = Arc::new(ScriptedRegistry::new(memory));
    let (entered_rx, release_tx) = registry.hold_next_pinned_resolve();
    let metrics = Metrics::default();
    // No requeue cap: other failures would wait 10 s; a conflict is retried at once.
    let ctx = Context::new(client.clone(), registry, metrics.clone());
    let operator = Operator::run(ctx, WatchScope::Namespace(ns.clone()));

    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    create(&client, &ns).await;
    eventually("the operator serves version 3", LIMIT, || async {
        let s = api.get(NAME).await.ok()?.status?;
        (s.phase == Phase::Stable && s.stable_version.as_deref() == Some("3")).then_some(())
    })
    .await;

    // A spec change (pin version 3): the next reconcile decides observedGeneration 2 and is
    // held while resolving the pinned version.
    let pin = serde_json::json!({"spec": {"model": {"version": "3"}}});
    let pinned = api
        .patch(NAME, &PatchParams::default(), &Patch::Merge(&pin))
        .await
        .expect("spec patched");
    let generation = pinned.metadata.generation.unwrap();
    tokio::time::timeout(LIMIT, entered_rx)
        .await
        .expect("the operator reconciles the spec change")
        .expect("held");

    // Meanwhile another writer (a second replica) records a rollout in the status.
    let fresh = api.get(NAME).await.unwrap();
    let mut other = fresh.status.clone().unwrap();
    other.history.push(RolloutRecord {
        candidate_version: "2".into(),
        previous_version: Some("1".into()),
        // A record the operator itself never writes in this test: the other writer's marker.
        outcome: mlrollout::api::RolloutOutcome::Held,
        reason: mlrollout::api::RolloutReason::PinnedVersion,
        finished_at: Some(at(0)),
    });
    let writer = context(cluster::client().await);
    write_status(&writer, &fresh, &ns, &other)
        .await
        .expect("the other writer's fresh write goes through");

    let released = Instant::now();
    release_tx.send(()).unwrap();
    let recovered = eventually(
        "the operator writes generation 2 on fresh state",
        LIMIT,
        || async {
            let s = api.get(NAME).await.ok()?.status?;
            (s.observed_generation == Some(generation)).then_some(s)
        },
    )
    .await;
    let took = released.elapsed();
    assert!(
        recovered
            .history
            .iter()
            .any(|h| h.reason == mlrollout::api::RolloutReason::PinnedVersion),
        "the other writer's record survived the operator's retry: {:?}",
        recovered.history
    );
    assert_eq!(recovered.phase, Phase::Stable);
    assert!(
        took < Duration::from_secs(5),
        "recovered in {took:?}, not after the 10 s error backoff"
    );

    // The stale write really was refused by the server, and the controller counted it.
    eventually("a 409 on the status in the audit log", LIMIT, || async {
        cluster()
            .audit()
            .iter()
            .any(|e| {
                e.object_ref.as_ref().is_some_and(|o| {
                    o.namespace.as_deref() == Some(ns.as_str())
                        && o.resource == "modeldeployments"
                        && o.subresource.as_deref() == Some("status")
                }) && e.response_status.as_ref().and_then(|s| s.code) == Some(409)
            })
            .then_some(())
    })
    .await;
    assert!(conflicts_counted(&metrics) >= 1.0, "{}", metrics.encode());

    operator.stop().await;
    cluster::delete_namespace(&client, &ns).await;
}
