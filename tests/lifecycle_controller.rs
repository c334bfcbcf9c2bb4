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
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ResourceQuota;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use mlrollout::api::{ModelDeployment, ModelDeploymentStatus, Phase};
use mlrollout::controller::WatchScope;
use mlrollout::registry::memory::InMemoryRegistry;

use common::cluster;
use common::operator::{Operator, ScaledClock, ScriptedAnalyzer, ScriptedDrift, complete_job};
use common::registry::ScriptedRegistry;

const MODEL: &str = "fraud-detector";
const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);
/// Virtual seconds per real second: a 1 m step takes 2 s, the 10 m progress deadline 20 s
/// (well above how long the real controllers and kwok take to make a Deployment ready).
const SPEED: u32 = 30;

fn resource(namespace: &str) -> ModelDeployment {
    let mut resource: ModelDeployment = serde_yaml::from_str(
        r#"
apiVersion: mlrollout.io/v1alpha1
kind: ModelDeployment
metadata: {name: fraud-detector}
spec:
  model: {trackingUri: "http://mlflow:5000", name: fraud-detector}
  traffic: {provider: gatewayAPI, parentRefs: [{name: gw}]}
  drift:
    reference: {uri: ref.csv}
    current: {uri: cur.csv}
    interval: 5m
  retraining:
    triggers: {driftSeverity: high}
    cooldown: 1h
    maxAttemptsPerDay: 3
    timeout: 30m
    jobTemplate:
      backoffLimit: 0
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: train
            image: "train:1"
            command: ["python", "train.py"]
            resources: {requests: {cpu: 100m}}
  evaluation: {metric: accuracy, minImprovement: 0.01}
  shadow: {duration: 2m, mirrorPercent: 50}
  rollout:
    steps: [10, 50, 100]
    stepDuration: 1m
    progressDeadline: 10m
    analysis:
      prometheus: {address: "http://prometheus:9090"}
      interval: 10s
      count: 3
"#,
    )
    .unwrap();
    resource.metadata.namespace = Some(namespace.to_string());
    resource
}

struct World {
    client: kube::Client,
    ns: String,
    registry: Arc<InMemoryRegistry>,
    gate: Arc<ScriptedRegistry>,
    analyzer: Arc<ScriptedAnalyzer>,
    drift: Arc<ScriptedDrift>,
    clock: ScaledClock,
}

impl World {
    async fn new(prefix: &str) -> World {
        World::with_speed(prefix, SPEED).await
    }

    async fn with_speed(prefix: &str, speed: u32) -> World {
        let client = cluster::client().await;
        let ns = cluster::namespace(&client, prefix).await;
        let registry = Arc::new(InMemoryRegistry::new());
        registry.register(MODEL, 3, &[("accuracy", 0.88)], &[]);
        registry.set_alias(MODEL, "champion", 3);
        let analyzer = Arc::new(ScriptedAnalyzer::default());
        analyzer.healthy();
        World {
            client,
            ns,
            gate: Arc::new(ScriptedRegistry::new(registry.clone())),
            registry,
            analyzer,
            drift: Arc::new(ScriptedDrift::default()),
            clock: ScaledClock::new(speed),
        }
    }

    fn operator(&self) -> Operator {
        Operator::start(
            self.client.clone(),
            self.gate.clone(),
            self.analyzer.clone(),
            self.drift.clone(),
            self.clock.controller_clock(),
            WatchScope::Namespace(self.ns.clone()),
        )
    }

    /// Stops `operator` and removes the test's namespace.
    async fn finish(self, operator: Operator) {
        operator.stop().await;
        cluster::delete_namespace(&self.client, &self.ns).await;
    }

    fn mdeps(&self) -> Api<ModelDeployment> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn status(&self) -> ModelDeploymentStatus {
        self.mdeps()
            .get(MODEL)
            .await
            .unwrap()
            .status
            .unwrap_or_default()
    }

    async fn wait_phase(&self, phase: Phase, limit: Duration) -> ModelDeploymentStatus {
        self.clock
            .wait_for(&format!("phase {phase:?}"), limit, || async {
                let s = self.status().await;
                (s.phase == phase).then_some(s)
            })
            .await
    }

    /// (stable, candidate) weights of the HTTPRoute.
    async fn weights(&self) -> Option<(i32, i32)> {
        let routes: Api<HttpRoute> = Api::namespaced(self.client.clone(), &self.ns);
        let route = routes.get_opt(MODEL).await.ok()??;
        Some(route_weights(&route))
    }

    async fn wait_weights(&self, what: &str, want: (i32, i32), limit: Duration) {
        self.clock
            .wait_for(what, limit, || async {
                (self.weights().await == Some(want)).then_some(())
            })
            .await
    }

    /// Waits (an hour of virtual time at most) until the candidate Deployment is gone.
    async fn wait_candidate_removed(&self) {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.ns);
        self.clock
            .wait_for("candidate removed", HOUR, || async {
                deployments
                    .get_opt("fraud-detector-candidate")
                    .await
                    .unwrap()
                    .is_none()
                    .then_some(())
            })
            .await
    }

    /// Reasons of the events.k8s.io/v1 Events about the resource.
    async fn events(&self) -> Vec<String> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(MODEL))
            .filter_map(|e| e.reason)
            .collect()
    }

    /// Waits until Events with every one of `reasons` exist (the operator publishes them
    /// right after the status write they belong to).
    async fn wait_events(&self, reasons: &[&str]) {
        let mut last = Vec::new();
        for _ in 0..100 {
            last = self.events().await;
            if reasons.iter().all(|r| last.iter().any(|e| e == r)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let missing: Vec<_> = reasons
            .iter()
            .filter(|r| !last.iter().any(|e| e == *r))
            .collect();
        panic!("missing Events {missing:?}; seen: {last:?}");
    }

    async fn jobs(&self) -> Vec<String> {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &self.ns);
        jobs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|j| j.metadata.name)
            .collect()
    }

    /// Jobs the API server created in the test's namespace (from its audit log): a Job that
    /// was created and deleted again still counts.
    fn jobs_created(&self) -> Vec<String> {
        cluster::cluster()
            .audit()
            .into_iter()
            .filter(|e| e.verb == "create")
            .filter(|e| e.response_status.as_ref().and_then(|s| s.code) == Some(201))
            .filter_map(|e| e.object_ref)
            .filter(|o| o.resource == "jobs" && o.namespace.as_deref() == Some(self.ns.as_str()))
            .map(|o| o.name.unwrap_or_default())
            .collect()
    }

    async fn complete_job(&self, job: &str, accuracy: f64) {
        complete_job(
            &self.client,
            &self.ns,
            job,
            &self.registry,
            MODEL,
            4,
            &[("accuracy", accuracy)],
            true,
        )
        .await;
    }
}

fn route_weights(route: &HttpRoute) -> (i32, i32) {
    let backends = route
        .spec
        .rules
        .as_ref()
        .and_then(|r| r.first())
        .and_then(|r| r.backend_refs.clone())
        .unwrap_or_default();
    let weight = |suffix: &str| {
        backends
            .iter()
            .find(|b| b.name.ends_with(suffix))
            .and_then(|b| b.weight)
            .unwrap_or(0)
    };
    (weight("-stable"), weight("-candidate"))
}

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

/// Creates the resource, waits for it to serve, reports high drift and waits for the
/// retraining Job; returns the Job's name.
async fn drive_to_job(world: &World) -> String {
    world
        .mdeps()
        .create(&PostParams::default(), &resource(&world.ns))
        .await
        .unwrap();
    world.wait_phase(Phase::Stable, HOUR).await;
    world.drift.set(mlrollout::api::Severity::High);
    // The next drift check (every 5 m) is due.
    world.clock.advance(5 * MINUTE);
    let s = world.wait_phase(Phase::Retraining, HOUR).await;
    s.retraining_attempts.last().unwrap().job_name.clone()
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
    for phase in [
        (Phase::Retraining, None),
        (Phase::Evaluating, None),
        (Phase::Shadow, None),
        (Phase::Progressing, Some(0)),
        (Phase::Progressing, Some(1)),
        (Phase::Progressing, Some(2)),
        (Phase::Promoted, None),
    ] {
        assert!(
            restarted_in.contains(&phase),
            "no restart in {phase:?}: {restarted_in:?}"
        );
    }
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
    let job = drive_to_job(&world).await;
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
