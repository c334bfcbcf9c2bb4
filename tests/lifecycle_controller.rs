//! The whole loop through the real Controller on the in-memory API, in virtual time:
//! drift → retraining Job → candidate → evaluation → shadow → 10 → 50 → 100 → promoted;
//! a regression at 50 % rolled back; restarts at every phase; abort; the progress deadline.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway_api::httproutes::HttpRoute;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use mlrollout::api::{ModelDeployment, Phase};
use mlrollout::registry::memory::InMemoryRegistry;

use common::fake_api::fake_api;
use common::operator::{
    Operator, ScriptedAnalyzer, ScriptedDrift, complete_job, kubelet, tokio_clock, wait_for,
};

const NS: &str = "fraud";
const MODEL: &str = "fraud-detector";
const HOUR: Duration = Duration::from_secs(3600);

fn resource() -> ModelDeployment {
    serde_yaml::from_str(
        r#"
apiVersion: mlrollout.io/v1alpha1
kind: ModelDeployment
metadata: {name: fraud-detector, namespace: fraud, uid: 0d5c2a6e-1111-2222-3333-444455556666}
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
      template:
        spec:
          restartPolicy: Never
          containers: [{name: train, image: "train:1", command: ["python", "train.py"]}]
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
    .unwrap()
}

struct World {
    client: kube::Client,
    registry: Arc<InMemoryRegistry>,
    analyzer: Arc<ScriptedAnalyzer>,
    drift: Arc<ScriptedDrift>,
    ready: Arc<Mutex<Vec<String>>>,
    clock: mlrollout::controller::Clock,
}

impl World {
    async fn new() -> World {
        let api = fake_api().await;
        let registry = Arc::new(InMemoryRegistry::new());
        registry.register(MODEL, 3, &[("accuracy", 0.88)], &[]);
        registry.set_alias(MODEL, "champion", 3);
        let analyzer = Arc::new(ScriptedAnalyzer::default());
        analyzer.healthy();
        World {
            client: api.client,
            registry,
            analyzer,
            drift: Arc::new(ScriptedDrift::default()),
            ready: Arc::new(Mutex::new(vec!["-stable".into(), "-candidate".into()])),
            clock: tokio_clock(),
        }
    }

    fn operator(&self) -> Operator {
        Operator::start(
            self.client.clone(),
            self.registry.clone(),
            self.analyzer.clone(),
            self.drift.clone(),
            self.clock.clone(),
        )
    }

    fn mdeps(&self) -> Api<ModelDeployment> {
        Api::namespaced(self.client.clone(), NS)
    }

    async fn status(&self) -> mlrollout::api::ModelDeploymentStatus {
        self.mdeps()
            .get(MODEL)
            .await
            .unwrap()
            .status
            .unwrap_or_default()
    }

    async fn wait_phase(
        &self,
        phase: Phase,
        limit: Duration,
    ) -> mlrollout::api::ModelDeploymentStatus {
        wait_for(&format!("phase {phase:?}"), limit, || async {
            let s = self.status().await;
            (s.phase == phase).then_some(s)
        })
        .await
    }

    /// (stable, candidate) weights of the HTTPRoute.
    async fn weights(&self) -> Option<(i32, i32)> {
        let routes: Api<HttpRoute> = Api::namespaced(self.client.clone(), NS);
        let route = routes.get_opt(MODEL).await.ok()??;
        let backends = route.spec.rules?.first()?.backend_refs.clone()?;
        let weight = |suffix: &str| {
            backends
                .iter()
                .find(|b| b.name.ends_with(suffix))
                .and_then(|b| b.weight)
                .unwrap_or(0)
        };
        Some((weight("-stable"), weight("-candidate")))
    }

    async fn events(&self) -> Vec<String> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), NS);
        events
            .list(&ListParams::default())
            .await
            .map(|l| l.items.into_iter().filter_map(|e| e.reason).collect())
            .unwrap_or_default()
    }

    async fn jobs(&self) -> Vec<String> {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), NS);
        jobs.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|j| j.metadata.name)
            .collect()
    }
}

/// Records every HTTPRoute weight seen, once per virtual second.
/// (stable, candidate) weights seen, in order.
type SeenWeights = Arc<Mutex<Vec<(i32, i32)>>>;

fn record_weights(world: &World) -> (SeenWeights, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let routes: Api<HttpRoute> = Api::namespaced(world.client.clone(), NS);
    let out = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            if let Ok(Some(route)) = routes.get_opt(MODEL).await
                && let Some(backends) = route
                    .spec
                    .rules
                    .and_then(|r| r.first().cloned())
                    .and_then(|r| r.backend_refs)
            {
                let w = |s: &str| {
                    backends
                        .iter()
                        .find(|b| b.name.ends_with(s))
                        .and_then(|b| b.weight)
                        .unwrap_or(0)
                };
                let pair = (w("-stable"), w("-candidate"));
                let mut seen = out.lock().unwrap();
                if seen.last() != Some(&pair) {
                    seen.push(pair);
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    (seen, task)
}

async fn drive_to_job(world: &World) -> String {
    world
        .mdeps()
        .create(&PostParams::default(), &resource())
        .await
        .unwrap();
    world.wait_phase(Phase::Stable, HOUR).await;
    world.drift.set("high");
    let s = world.wait_phase(Phase::Retraining, HOUR).await;
    s.retraining_attempts.last().unwrap().job_name.clone()
}

#[tokio::test(start_paused = true)]
async fn drift_retrains_evaluates_shadows_steps_and_promotes() {
    let world = World::new().await;
    let _kubelet = kubelet(world.client.clone(), NS, world.ready.clone());
    let operator = world.operator();
    let (weights, recorder) = record_weights(&world);

    let job = drive_to_job(&world).await;
    assert_eq!(job, "fraud-detector-retrain-1");
    complete_job(
        &world.client,
        NS,
        &job,
        &world.registry,
        MODEL,
        4,
        &[("accuracy", 0.91)],
        true,
    )
    .await;

    let shadow = world.wait_phase(Phase::Shadow, HOUR).await;
    assert_eq!(shadow.candidate_version.as_deref(), Some("4"));
    assert!(shadow.evaluation.as_ref().unwrap().passed);
    assert_eq!(world.registry.alias(MODEL, "challenger"), Some(4));
    let end = world.wait_phase(Phase::Stable, 2 * HOUR).await;
    assert_eq!(end.stable_version.as_deref(), Some("4"));
    assert_eq!(end.candidate_version, None);
    assert_eq!(end.history.last().unwrap().outcome, "Promoted");
    wait_for("route back on stable", HOUR, || async {
        (world.weights().await == Some((100, 0))).then_some(())
    })
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
    tokio::time::sleep(Duration::from_secs(3)).await;
    recorder.abort();
    let seen = weights.lock().unwrap().clone();
    assert!(seen.iter().all(|(s, c)| s + c == 100), "{seen:?}");
    let candidate: Vec<i32> = seen.iter().map(|(_, c)| *c).collect();
    assert_eq!(candidate, vec![0, 10, 50, 100, 0], "{seen:?}");

    let events = world.events().await;
    for reason in [
        "RetrainingStarted",
        "CandidateRegistered",
        "EvaluationPassed",
        "ShadowStarted",
        "ShadowPassed",
        "StepStarted",
        "Promoted",
        "PromotionComplete",
    ] {
        assert!(
            events.iter().any(|e| e == reason),
            "missing Event {reason}: {events:?}"
        );
    }
    assert_eq!(
        world.jobs().await,
        vec!["fraud-detector-retrain-1".to_string()]
    );
    operator.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_regression_at_fifty_percent_rolls_back_to_stable() {
    let world = World::new().await;
    let _kubelet = kubelet(world.client.clone(), NS, world.ready.clone());
    let operator = world.operator();
    let job = drive_to_job(&world).await;
    complete_job(
        &world.client,
        NS,
        &job,
        &world.registry,
        MODEL,
        4,
        &[("accuracy", 0.91)],
        true,
    )
    .await;

    wait_for("50% step", 2 * HOUR, || async {
        (world.weights().await == Some((50, 50))).then_some(())
    })
    .await;
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
    wait_for("route 100/0", HOUR, || async {
        (world.weights().await == Some((100, 0))).then_some(())
    })
    .await;
    assert!(world.events().await.iter().any(|e| e == "RolledBack"));
    assert_eq!(world.registry.alias(MODEL, "champion"), Some(3));
    assert_eq!(world.registry.alias(MODEL, "challenger"), None);
    // The candidate Deployment is gone.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(world.client.clone(), NS);
    wait_for("candidate removed", HOUR, || async {
        deployments
            .get_opt("fraud-detector-candidate")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    operator.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_in_every_phase_changes_nothing() {
    let world = World::new().await;
    let _kubelet = kubelet(world.client.clone(), NS, world.ready.clone());
    let (weights, recorder) = record_weights(&world);
    let mut operator = world.operator();
    let job = drive_to_job(&world).await;

    // Restart while the Job runs: no second Job.
    operator.stop().await;
    operator = world.operator();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(world.jobs().await, vec![job.clone()]);
    complete_job(
        &world.client,
        NS,
        &job,
        &world.registry,
        MODEL,
        4,
        &[("accuracy", 0.91)],
        true,
    )
    .await;

    let mut restarts = 1;
    let mut last = (Phase::Retraining, None);
    loop {
        let status = world.status().await;
        if status.phase == Phase::Stable && status.stable_version.as_deref() == Some("4") {
            break;
        }
        if (status.phase, status.current_step) != last {
            // A new phase (or step): restart the operator right here.
            last = (status.phase, status.current_step);
            operator.stop().await;
            operator = world.operator();
            restarts += 1;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(restarts < 20, "the loop never ends");
    }
    assert!(restarts >= 5, "restarted in {restarts} phases");
    assert_eq!(world.jobs().await, vec![job]);
    let s = world.status().await;
    assert_eq!(s.retraining_attempts.len(), 1);
    assert_eq!(s.history.len(), 1);
    wait_for("route back on stable", HOUR, || async {
        (world.weights().await == Some((100, 0))).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    recorder.abort();
    let candidate: Vec<i32> = weights.lock().unwrap().iter().map(|(_, c)| *c).collect();
    assert_eq!(
        candidate,
        vec![0, 10, 50, 100, 0],
        "no traffic jump across restarts"
    );
    operator.stop().await;
}

#[tokio::test(start_paused = true)]
async fn abort_by_annotation_rolls_back() {
    let world = World::new().await;
    let _kubelet = kubelet(world.client.clone(), NS, world.ready.clone());
    let operator = world.operator();
    let job = drive_to_job(&world).await;
    complete_job(
        &world.client,
        NS,
        &job,
        &world.registry,
        MODEL,
        4,
        &[("accuracy", 0.91)],
        true,
    )
    .await;
    wait_for("10% step", 2 * HOUR, || async {
        (world.weights().await == Some((90, 10))).then_some(())
    })
    .await;
    let abort = serde_json::json!({"metadata": {"annotations": {"mlrollout.io/abort": "t1"}}});
    world
        .mdeps()
        .patch(MODEL, &PatchParams::default(), &Patch::Merge(&abort))
        .await
        .unwrap();
    let s = world.wait_phase(Phase::RolledBack, HOUR).await;
    assert_eq!(s.history.last().unwrap().outcome, "Aborted");
    assert_eq!(
        s.handled_requests
            .get("mlrollout.io/abort")
            .map(String::as_str),
        Some("t1")
    );
    wait_for("route 100/0", HOUR, || async {
        (world.weights().await == Some((100, 0))).then_some(())
    })
    .await;
    // The same annotation value is not acted on again, and the version is not re-rolled out.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(world.status().await.phase, Phase::RolledBack);
    operator.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_candidate_that_never_becomes_ready_is_rolled_back_at_the_deadline() {
    let world = World::new().await;
    world.ready.lock().unwrap().retain(|s| s != "-candidate");
    let _kubelet = kubelet(world.client.clone(), NS, world.ready.clone());
    let operator = world.operator();
    let job = drive_to_job(&world).await;
    complete_job(
        &world.client,
        NS,
        &job,
        &world.registry,
        MODEL,
        4,
        &[("accuracy", 0.91)],
        true,
    )
    .await;
    let s = world.wait_phase(Phase::RolledBack, 2 * HOUR).await;
    assert_eq!(s.history.last().unwrap().reason, "ProgressDeadlineExceeded");
    assert_eq!(s.canary_weight, 0);
    operator.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_worse_candidate_is_rejected_and_never_gets_traffic() {
    let world = World::new().await;
    let _kubelet = kubelet(world.client.clone(), NS, world.ready.clone());
    let operator = world.operator();
    let job = drive_to_job(&world).await;
    complete_job(
        &world.client,
        NS,
        &job,
        &world.registry,
        MODEL,
        4,
        &[("accuracy", 0.885)],
        true,
    )
    .await;
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
    // The drift is still high, but the cooldown holds the next attempt back.
    let deferred = wait_for("deferred trigger", HOUR, || async {
        world.status().await.deferred_trigger
    })
    .await;
    assert_eq!(deferred.trigger, "drift");
    assert_eq!(world.jobs().await.len(), 1);
    operator.stop().await;
}

#[tokio::test(start_paused = true)]
async fn prometheus_outage_never_moves_traffic_forward() {
    let world = World::new().await;
    let _kubelet = kubelet(world.client.clone(), NS, world.ready.clone());
    let operator = world.operator();
    let job = drive_to_job(&world).await;
    world.analyzer.fail_queries(true);
    complete_job(
        &world.client,
        NS,
        &job,
        &world.registry,
        MODEL,
        4,
        &[("accuracy", 0.91)],
        true,
    )
    .await;
    let s = world.wait_phase(Phase::RolledBack, 2 * HOUR).await;
    assert_eq!(s.history.last().unwrap().reason, "AnalysisError");
    let seen_weight = world.weights().await;
    assert_eq!(seen_weight, Some((100, 0)));
    operator.stop().await;
}
