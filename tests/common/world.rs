//! The lifecycle test world: the real Controller on the real API server in scaled virtual time,
//! with an in-memory MLflow, scripted analysis and scripted drift ([`super::operator`]), and
//! one ModelDeployment that goes drift → retraining → evaluation → shadow → 10/50/100 %.
//! Shared by `tests/lifecycle_controller.rs` and `tests/gitops_status.rs`.

use std::sync::Arc;
use std::time::Duration;

use gateway_api::httproutes::HttpRoute;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use mlrollout::api::{ModelDeployment, ModelDeploymentStatus, Phase};
use mlrollout::controller::WatchScope;
use mlrollout::registry::memory::InMemoryRegistry;

use super::cluster;
use super::operator::{Operator, ScaledClock, ScriptedAnalyzer, ScriptedDrift, complete_job};
use super::registry::ScriptedRegistry;

pub const MODEL: &str = "fraud-detector";
pub const HOUR: Duration = Duration::from_secs(3600);
pub const MINUTE: Duration = Duration::from_secs(60);
/// Virtual seconds per real second: a 1 m step takes 2 s, the 10 m progress deadline 20 s
/// (well above how long the real controllers and kwok take to make a Deployment ready).
pub const SPEED: u32 = 30;

pub fn resource(namespace: &str) -> ModelDeployment {
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

pub struct World {
    /// The control plane the world runs on (the shared one unless [`World::on`]).
    pub cluster: cluster::Cluster,
    pub client: kube::Client,
    pub ns: String,
    pub registry: Arc<InMemoryRegistry>,
    pub gate: Arc<ScriptedRegistry>,
    pub analyzer: Arc<ScriptedAnalyzer>,
    pub drift: Arc<ScriptedDrift>,
    pub clock: ScaledClock,
}

impl World {
    pub async fn new(prefix: &str) -> World {
        World::with_speed(prefix, SPEED).await
    }

    pub async fn with_speed(prefix: &str, speed: u32) -> World {
        let client = cluster::client().await;
        World::on(cluster::cluster().clone(), client, prefix, speed).await
    }

    /// A world on `cluster` (a control plane of the test's own), talking to it with `client`.
    pub async fn on(
        cluster: cluster::Cluster,
        client: kube::Client,
        prefix: &str,
        speed: u32,
    ) -> World {
        let ns = cluster::namespace(&client, prefix).await;
        let registry = Arc::new(InMemoryRegistry::new());
        registry.register(MODEL, 3, &[("accuracy", 0.88)], &[]);
        registry.set_alias(MODEL, "champion", 3);
        let analyzer = Arc::new(ScriptedAnalyzer::default());
        analyzer.healthy();
        World {
            cluster,
            client,
            ns,
            gate: Arc::new(ScriptedRegistry::new(registry.clone())),
            registry,
            analyzer,
            drift: Arc::new(ScriptedDrift::default()),
            clock: ScaledClock::new(speed),
        }
    }

    pub fn operator(&self) -> Operator {
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
    pub async fn finish(self, operator: Operator) {
        operator.stop().await;
        cluster::delete_namespace(&self.client, &self.ns).await;
    }

    pub fn mdeps(&self) -> Api<ModelDeployment> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn status(&self) -> ModelDeploymentStatus {
        self.mdeps()
            .get(MODEL)
            .await
            .unwrap()
            .status
            .unwrap_or_default()
    }

    pub async fn wait_phase(&self, phase: Phase, limit: Duration) -> ModelDeploymentStatus {
        self.clock
            .wait_for(&format!("phase {phase:?}"), limit, || async {
                let s = self.status().await;
                (s.phase == phase).then_some(s)
            })
            .await
    }

    /// (stable, candidate) weights of the HTTPRoute.
    pub async fn weights(&self) -> Option<(i32, i32)> {
        let routes: Api<HttpRoute> = Api::namespaced(self.client.clone(), &self.ns);
        let route = routes.get_opt(MODEL).await.ok()??;
        Some(route_weights(&route))
    }

    pub async fn wait_weights(&self, what: &str, want: (i32, i32), limit: Duration) {
        self.clock
            .wait_for(what, limit, || async {
                (self.weights().await == Some(want)).then_some(())
            })
            .await
    }

    /// Waits (an hour of virtual time at most) until the candidate Deployment is gone.
    pub async fn wait_candidate_removed(&self) {
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
    pub async fn events(&self) -> Vec<String> {
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
    pub async fn wait_events(&self, reasons: &[&str]) {
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

    pub async fn jobs(&self) -> Vec<String> {
        cluster::jobs(&self.client, &self.ns).await
    }

    /// Jobs the API server created in the test's namespace (from its audit log): a Job that
    /// was created and deleted again still counts.
    pub fn jobs_created(&self) -> Vec<String> {
        self.cluster.jobs_created(&self.ns)
    }

    pub async fn complete_job(&self, job: &str, accuracy: f64) {
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

pub fn route_weights(route: &HttpRoute) -> (i32, i32) {
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

/// Creates the resource, waits for it to serve, reports high drift and waits for the
/// retraining Job; returns the Job's name.
pub async fn drive_to_job(world: &World) -> String {
    drive_to_job_with(world, resource(&world.ns)).await
}

/// [`drive_to_job`] for a resource of the test's own.
pub async fn drive_to_job_with(world: &World, resource: ModelDeployment) -> String {
    world
        .mdeps()
        .create(&PostParams::default(), &resource)
        .await
        .unwrap();
    world.wait_phase(Phase::Stable, HOUR).await;
    world.drift.set(mlrollout::api::Severity::High);
    // The next drift check (every 5 m) is due.
    world.clock.advance(5 * MINUTE);
    let s = world.wait_phase(Phase::Retraining, HOUR).await;
    s.retraining_attempts.last().unwrap().job_name.clone()
}
