//! The whole loop through the real Controller on the real API server (see `common::cluster`),
//! in scaled virtual time: drift → retraining Job → candidate → evaluation → shadow → 10 → 50
//! → 100 → promoted; a regression at 50 % rolled back; a restart in every phase (one Job per
//! attempt); abort; the progress deadline.
//!
//! Real here: the API server (admission, server-side apply, resourceVersion conflicts, watches),
//! the Deployment, ReplicaSet, Job and garbage-collector controllers, the scheduler and kwok
//! (Pods become Ready; a Job's Pod exits when the test says the training ended). Played by the
//! test: MLflow (an in-memory registry), Prometheus (scripted metric values), the drift
//! engine's verdict, and the training code (registering a version).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane: full suite only, `cargo test --features harness` (tests/run.sh turns it
// on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use gateway_api::httproutes::HttpRoute;
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use mlrollout::api::Phase;

use common::cluster;
use common::world::{HOUR, MINUTE, MODEL, SPEED, World, drive_to_job, route_weights};

/// (stable, candidate) weights of every version of the HTTPRoute, in order (a watch sees
/// each write).
type SeenWeights = Arc<Mutex<Vec<(i32, i32)>>>;

fn record_weights(world: &World) -> (SeenWeights, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let routes: Api<HttpRoute> = Api::namespaced(world.client.clone(), &world.ns);
    let out = seen.clone();
    let task = tokio::spawn(async move {
        let config = watcher::Config::default().fields(&format!("metadata.name={MODEL}"));
        let mut stream = watcher(routes, config).applied_objects().boxed();
        while let Some(event) = stream.next().await {
            if let Ok(route) = event {
                let pair = route_weights(&route);
                let mut seen = out.lock().unwrap();
                if seen.last() != Some(&pair) {
                    seen.push(pair);
                }
            }
        }
    });
    (seen, task)
}

/// Waits until the recorder saw the route back at 100/0, stops it and returns what it saw.
async fn recorded(
    world: &World,
    seen: SeenWeights,
    recorder: tokio::task::JoinHandle<()>,
) -> Vec<(i32, i32)> {
    world
        .clock
        .wait_for("the watch sees the route back on stable", HOUR, || async {
            (seen.lock().unwrap().last() == Some(&(100, 0))).then_some(())
        })
        .await;
    recorder.abort();
    seen.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_retrains_evaluates_shadows_steps_and_promotes() {
    let world = World::new("lc-promote").await;
    let operator = world.operator();
    let (weights, recorder) = record_weights(&world);

    let job = drive_to_job(&world).await;
    assert_eq!(job, "fraud-detector-retrain-1");
    world.complete_job(&job, 0.91).await;

    let shadow = world.wait_phase(Phase::Shadow, HOUR).await;
    assert_eq!(shadow.candidate_version.as_deref(), Some("4"));
    assert!(shadow.evaluation.as_ref().unwrap().passed);
    assert_eq!(world.registry.alias(MODEL, "challenger"), Some(4));
    let end = world
        .clock
        .wait_for("promoted to version 4", 2 * HOUR, || async {
            let s = world.status().await;
            (s.phase == Phase::Stable && s.stable_version.as_deref() == Some("4")).then_some(s)
        })
        .await;
    assert_eq!(end.candidate_version, None);
    assert_eq!(
        end.history.last().unwrap().outcome,
        mlrollout::api::RolloutOutcome::Promoted
    );
    world
        .wait_weights("route back on stable", (100, 0), HOUR)
        .await;

    // The registry tells the same story.
    assert_eq!(world.registry.alias(MODEL, "champion"), Some(4));
    assert_eq!(world.registry.alias(MODEL, "previous"), Some(3));
    assert_eq!(world.registry.alias(MODEL, "challenger"), None);
    assert_eq!(
        world
            .registry
            .tag(MODEL, 4, "mlrollout.io/rollout")
            .as_deref(),
        Some("promoted")
    );

    // Traffic: 100/0 (with the candidate mirrored), 90/10, 50/50, 0/100, then 100/0 on the new stable.
    let seen = recorded(&world, weights, recorder).await;
    assert!(seen.iter().all(|(s, c)| s + c == 100), "{seen:?}");
    let candidate: Vec<i32> = seen.iter().map(|(_, c)| *c).collect();
    assert_eq!(candidate, vec![0, 10, 50, 100, 0], "{seen:?}");

    // The candidate Deployment is gone once the stable one runs version 4.
    world.wait_candidate_removed().await;

    world
        .wait_events(&[
            "RetrainingStarted",
            "CandidateRegistered",
            "EvaluationPassed",
            "ShadowStarted",
            "ShadowPassed",
            "StepStarted",
            "Promoted",
            "PromotionComplete",
        ])
        .await;
    assert_eq!(
        world.jobs().await,
        vec!["fraud-detector-retrain-1".to_string()]
    );
    assert_eq!(world.jobs_created(), vec!["fraud-detector-retrain-1"]);
    world.finish(operator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regression_at_fifty_percent_rolls_back_to_stable() {
    let world = World::new("lc-regression").await;
    let operator = world.operator();
    let job = drive_to_job(&world).await;
    world.complete_job(&job, 0.91).await;

    world.wait_weights("50% step", (50, 50), 2 * HOUR).await;
    // The candidate's error rate triples.
    world.analyzer.set("error-rate", "candidate", Some(0.03));
    let rolled = world.wait_phase(Phase::RolledBack, HOUR).await;
    assert_eq!(rolled.canary_weight, 0);
    assert_eq!(rolled.candidate_version, None);
    assert_eq!(rolled.stable_version.as_deref(), Some("3"));
    let record = rolled.history.last().unwrap();
    assert_eq!(
        (record.outcome.as_str(), record.reason.as_str()),
        ("RolledBack", "AnalysisFailed")
    );
    world.wait_weights("route 100/0", (100, 0), HOUR).await;
    world.wait_events(&["RolledBack"]).await;
    assert_eq!(world.registry.alias(MODEL, "champion"), Some(3));
    assert_eq!(world.registry.alias(MODEL, "challenger"), None);
    // The candidate Deployment is gone.
    world.wait_candidate_removed().await;
    world.finish(operator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_every_phase_changes_nothing() {
    let world = World::new("lc-restart").await;
    let (weights, recorder) = record_weights(&world);
    let mut operator = world.operator();
    let job = drive_to_job(&world).await;

    // Restart while the Job runs: the new operator adopts it, no second Job.
    operator.stop().await;
    operator = world.operator();
    world.clock.sleep(2 * MINUTE).await;
    assert_eq!(world.jobs().await, vec![job.clone()]);
    assert_eq!(world.status().await.phase, Phase::Retraining);
    let mut restarted_in = vec![(Phase::Retraining, None)];
    // MLflow's evaluation answer is held back until the operator was restarted in
    // `Evaluating` (the phase lasts one reconcile otherwise).
    world.gate.hold_evaluation(true);
    world.complete_job(&job, 0.91).await;

    let mut last = (Phase::Retraining, None);
    loop {
        let status = world.status().await;
        if status.phase == Phase::Stable && status.stable_version.as_deref() == Some("4") {
            break;
        }
        let here = (status.phase, status.current_step);
        if here != last {
            // A new phase (or step): restart the operator right here. The new one continues
            // from the status.
            last = here;
            operator.stop().await;
            operator = world.operator();
            restarted_in.push(here);
            if status.phase == Phase::Evaluating {
                world.clock.sleep(MINUTE).await;
                assert_eq!(world.status().await.phase, Phase::Evaluating);
                world.gate.hold_evaluation(false);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            restarted_in.len() < 20,
            "the loop never ends: {restarted_in:?}"
        );
    }
    common::faults::assert_every_phase(&restarted_in, "restart");
    // One Job for the one attempt, also across restarts (the API server never created a
    // second one).
    assert_eq!(world.jobs().await, vec![job.clone()]);
    assert_eq!(world.jobs_created(), vec![job]);
    let s = world.status().await;
    assert_eq!(s.retraining_attempts.len(), 1);
    assert_eq!(s.history.len(), 1);
    world
        .wait_weights("route back on stable", (100, 0), HOUR)
        .await;
    let candidate: Vec<i32> = recorded(&world, weights, recorder)
        .await
        .iter()
        .map(|(_, c)| *c)
        .collect();
    assert_eq!(
        candidate,
        vec![0, 10, 50, 100, 0],
        "no traffic jump across restarts"
    );
    world.finish(operator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_by_annotation_rolls_back() {
    let world = World::new("lc-abort").await;
    let operator = world.operator();
    let job = drive_to_job(&world).await;
    world.complete_job(&job, 0.91).await;
    world.wait_weights("10% step", (90, 10), 2 * HOUR).await;
    let abort = serde_json::json!({"metadata": {"annotations": {"mlrollout.io/abort": "t1"}}});
    world
        .mdeps()
        .patch(MODEL, &PatchParams::default(), &Patch::Merge(&abort))
        .await
        .unwrap();
    let s = world.wait_phase(Phase::RolledBack, HOUR).await;
    assert_eq!(
        s.history.last().unwrap().outcome,
        mlrollout::api::RolloutOutcome::Aborted
    );
    assert_eq!(
        s.handled_requests
            .get("mlrollout.io/abort")
            .map(String::as_str),
        Some("t1")
    );
    world.wait_weights("route 100/0", (100, 0), HOUR).await;
    // The same annotation value is not acted on again, and the version is not re-rolled out:
    // ten virtual minutes later (the operator looks again several times) nothing moved.
    world.clock.advance(10 * MINUTE);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = world.status().await;
    assert_eq!(s.phase, Phase::RolledBack);
    assert_eq!(s.history.len(), 1);
    assert_eq!(world.weights().await, Some((100, 0)));
    world.finish(operator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_that_never_becomes_ready_is_rolled_back_at_the_deadline() {
    // Nothing here races the deadline (the candidate never becomes ready), so time runs faster.
    let world = World::with_speed("lc-deadline", 2 * SPEED).await;
    // The namespace's quota admits the two stable serving Pods (BestEffort) and no more: the
    // candidate's ReplicaSet cannot create Pods, so the candidate never becomes ready. (The
    // training Pod requests CPU, so it is not BestEffort and not counted.)
    let quotas: Api<ResourceQuota> = Api::namespaced(world.client.clone(), &world.ns);
    let quota: ResourceQuota = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "serving-pods"},
        "spec": {"hard": {"pods": "2"}, "scopes": ["BestEffort"]}
    }))
    .unwrap();
    quotas.create(&PostParams::default(), &quota).await.unwrap();
    cluster::eventually("the quota controller counts usage", HOUR, || async {
        let q = quotas.get("serving-pods").await.ok()?;
        q.status?.used?.contains_key("pods").then_some(())
    })
    .await;
    let operator = world.operator();
    // Without the proxy sidecar: its resource requests would take the serving Pods out of the
    // quota's BestEffort scope.
    let mut resource = common::world::resource(&world.ns);
    resource.spec.serving.proxy.enabled = false;
    let job = common::world::drive_to_job_with(&world, resource).await;
    world.complete_job(&job, 0.91).await;
    let s = world.wait_phase(Phase::RolledBack, 2 * HOUR).await;
    assert_eq!(
        s.history.last().unwrap().reason,
        mlrollout::api::RolloutReason::ProgressDeadlineExceeded
    );
    assert_eq!(s.canary_weight, 0);
    let message = s.message.unwrap_or_default();
    assert!(message.contains("never became ready"), "{message}");
    world.wait_weights("route 100/0", (100, 0), HOUR).await;
    // It was the quota that kept the candidate from running.
    let core_events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(world.client.clone(), &world.ns);
    let refused = core_events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .any(|e| {
            e.reason.as_deref() == Some("FailedCreate")
                && e.message
                    .as_deref()
                    .unwrap_or("")
                    .contains("exceeded quota")
                && e.involved_object
                    .name
                    .as_deref()
                    .unwrap_or("")
                    .starts_with("fraud-detector-candidate")
        });
    assert!(
        refused,
        "the candidate's ReplicaSet was refused Pods by the quota"
    );
    world.finish(operator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worse_candidate_is_rejected_and_never_gets_traffic() {
    let world = World::new("lc-rejected").await;
    let operator = world.operator();
    let job = drive_to_job(&world).await;
    world.complete_job(&job, 0.885).await;
    let s = world.wait_phase(Phase::Failed, HOUR).await;
    let evaluation = s.evaluation.unwrap();
    assert!(!evaluation.passed);
    assert!(
        evaluation.reason.contains("< 0.01"),
        "{}",
        evaluation.reason
    );
    assert_eq!(world.weights().await, Some((100, 0)));
    assert_eq!(
        world
            .registry
            .tag(MODEL, 4, "mlrollout.io/verdict")
            .as_deref(),
        Some("rejected")
    );
    // The drift is still high at the next check, but the cooldown holds the next attempt back.
    world.clock.advance(5 * MINUTE);
    let deferred = world
        .clock
        .wait_for("deferred trigger", HOUR, || async {
            world.status().await.deferred_trigger
        })
        .await;
    assert_eq!(deferred.trigger, mlrollout::api::Trigger::Drift);
    assert_eq!(world.jobs().await.len(), 1);
    assert_eq!(world.jobs_created().len(), 1);
    world.finish(operator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_outage_never_moves_traffic_forward() {
    let world = World::new("lc-prom-outage").await;
    let operator = world.operator();
    let (weights, recorder) = record_weights(&world);
    let job = drive_to_job(&world).await;
    world.analyzer.fail_queries(true);
    world.complete_job(&job, 0.91).await;
    let s = world.wait_phase(Phase::RolledBack, 2 * HOUR).await;
    assert_eq!(
        s.history.last().unwrap().reason,
        mlrollout::api::RolloutReason::AnalysisError
    );
    world.wait_weights("route 100/0", (100, 0), HOUR).await;
    let candidate: Vec<i32> = recorded(&world, weights, recorder)
        .await
        .iter()
        .map(|(_, c)| *c)
        .collect();
    assert!(
        candidate.iter().all(|c| *c == 0),
        "the candidate never got traffic: {candidate:?}"
    );
    world.finish(operator).await;
}
