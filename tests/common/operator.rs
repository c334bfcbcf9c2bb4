//! Running the real controller in tests: the in-memory API, an in-memory registry, scripted
//! analysis and drift (test doubles behind the real traits), a virtual clock that follows
//! tokio's (paused) time, and a "kubelet" that marks Deployments ready.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use mlrollout::analysis::{Analyzer, MeasureRequest, MetricMeasurement, judge, query_error};
use mlrollout::api::{DriftSummary, ModelDeployment};
use mlrollout::controller::observe::DriftCheck;
use mlrollout::controller::{self, Context, WatchScope};
use mlrollout::lifecycle::DriftObservation;
use mlrollout::metrics::Metrics;
use mlrollout::registry::memory::InMemoryRegistry;
use mlrollout::server::Health;
use tokio::sync::oneshot;

/// Analysis double: metric values per (metric, variant) set by the test, judged by the real
/// verdict logic. A missing value is no data; `fail_queries` makes every query an error.
#[derive(Default)]
pub struct ScriptedAnalyzer {
    values: Mutex<BTreeMap<(String, String), f64>>,
    fail_queries: Mutex<bool>,
    pub calls: Mutex<u64>,
}

impl ScriptedAnalyzer {
    pub fn set(&self, metric: &str, variant: &str, value: Option<f64>) {
        let mut values = self.values.lock().unwrap();
        match value {
            Some(v) => values.insert((metric.into(), variant.into()), v),
            None => values.remove(&(metric.into(), variant.into())),
        };
    }

    /// Healthy, equal variants for the built-in metrics.
    pub fn healthy(&self) {
        for variant in ["stable", "candidate"] {
            self.set("error-rate", variant, Some(0.01));
            self.set("latency-p99", variant, Some(0.2));
        }
        self.set("prediction-psi", "candidate", Some(0.02));
    }

    pub fn fail_queries(&self, fail: bool) {
        *self.fail_queries.lock().unwrap() = fail;
    }
}

impl Analyzer for ScriptedAnalyzer {
    fn measure<'a>(&'a self, request: MeasureRequest<'a>) -> BoxFuture<'a, Vec<MetricMeasurement>> {
        *self.calls.lock().unwrap() += 1;
        let fail = *self.fail_queries.lock().unwrap();
        let values = self.values.lock().unwrap().clone();
        let out = request
            .metrics
            .iter()
            .map(|m| {
                if fail {
                    return query_error(m, "Prometheus is unreachable (scripted)");
                }
                let get =
                    |variant: &str| values.get(&(m.name.clone(), variant.to_string())).copied();
                judge(m, get("candidate"), get("stable"))
            })
            .collect();
        async move { out }.boxed()
    }
}

/// Drift double: every check reports the severity the test set.
pub struct ScriptedDrift {
    severity: Mutex<String>,
    pub checks: Mutex<u64>,
}

impl Default for ScriptedDrift {
    fn default() -> Self {
        Self {
            severity: Mutex::new("ok".into()),
            checks: Mutex::new(0),
        }
    }
}

impl ScriptedDrift {
    pub fn set(&self, severity: &str) {
        *self.severity.lock().unwrap() = severity.into();
    }
}

impl DriftCheck for ScriptedDrift {
    fn check<'a>(
        &'a self,
        _resource: &'a ModelDeployment,
        _credentials: &'a mlrollout::registry::RegistryCredentials,
    ) -> BoxFuture<'a, DriftObservation> {
        *self.checks.lock().unwrap() += 1;
        let severity = self.severity.lock().unwrap().clone();
        async move {
            DriftObservation::Completed {
                summary: DriftSummary {
                    reference_rows: 1000,
                    current_rows: 1000,
                    drift_detected: severity != "ok",
                    drifted_share: if severity == "ok" { 0.0 } else { 0.6 },
                    severity,
                    ..Default::default()
                },
                sample_count: Some(1000),
            }
        }
        .boxed()
    }
}

/// Virtual time for tests on the real API server: it runs `speed` times faster than the
/// process's clock, and a test can jump it forward. (tokio's paused time cannot be used with
/// real network I/O: it would race ahead while a request is in flight.)
#[derive(Clone)]
pub struct ScaledClock {
    start: std::time::Instant,
    epoch: Timestamp,
    speed: u32,
    jumped: Arc<Mutex<Duration>>,
}

impl ScaledClock {
    /// A clock starting at a fixed instant, `speed` virtual seconds per real second.
    pub fn new(speed: u32) -> ScaledClock {
        ScaledClock {
            start: std::time::Instant::now(),
            epoch: Timestamp::from_second(1_800_000_000).unwrap(),
            speed: speed.max(1),
            jumped: Arc::new(Mutex::new(Duration::ZERO)),
        }
    }

    /// Virtual time elapsed since the clock started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed() * self.speed + *self.jumped.lock().unwrap()
    }

    pub fn now(&self) -> Timestamp {
        self.epoch + k8s_openapi::jiff::SignedDuration::try_from(self.elapsed()).unwrap()
    }

    /// Jumps virtual time forward (a cooldown, a day's budget).
    pub fn advance(&self, by: Duration) {
        *self.jumped.lock().unwrap() += by;
    }

    /// Real time that `virtual_duration` takes on this clock.
    pub fn real(&self, virtual_duration: Duration) -> Duration {
        virtual_duration / self.speed
    }

    /// Sleeps `virtual_duration` of virtual time.
    pub async fn sleep(&self, virtual_duration: Duration) {
        tokio::time::sleep(self.real(virtual_duration)).await;
    }

    /// The clock as the controller takes it.
    pub fn controller_clock(&self) -> controller::Clock {
        let clock = self.clone();
        Arc::new(move || clock.now())
    }

    /// Polls `check` about every virtual second (at least every 20 ms real) until it returns
    /// `Some`, up to `limit` of virtual time; panics naming `what` after that.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, limit: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = self.elapsed() + limit;
        let poll = self.real(Duration::from_secs(1)).max(Duration::from_millis(20));
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if self.elapsed() > deadline {
                panic!("timed out after {limit:?} (virtual) waiting for: {what}");
            }
            tokio::time::sleep(poll).await;
        }
    }
}

/// Longest real wait between reconciles in tests that run on a [`ScaledClock`].
pub const TEST_MAX_REQUEUE: Duration = Duration::from_millis(200);

/// A running controller.
pub struct Operator {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Operator {
    pub fn start(
        client: kube::Client,
        registry: Arc<InMemoryRegistry>,
        analyzer: Arc<ScriptedAnalyzer>,
        drift: Arc<ScriptedDrift>,
        clock: controller::Clock,
    ) -> Operator {
        let ctx = Context::new(client, registry, Metrics::default())
            .with_analyzer(analyzer)
            .with_drift(drift)
            .with_clock(clock);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(controller::run(
            ctx,
            WatchScope::AllNamespaces,
            Health::new(),
            rx.map(|_| ()),
        ));
        Operator {
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("controller stops")
                .expect("controller did not panic");
        }
    }
}

/// Plays the kubelet and the Deployment controller: every Deployment whose name ends with one
/// of `ready_suffixes` reports all replicas ready for its current generation.
pub fn kubelet(
    client: kube::Client,
    namespace: &str,
    ready_suffixes: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    let api: Api<Deployment> = Api::namespaced(client, namespace);
    tokio::spawn(async move {
        loop {
            if let Ok(list) = api.list(&ListParams::default()).await {
                for d in list.items {
                    let name = d.metadata.name.clone().unwrap_or_default();
                    if !ready_suffixes
                        .lock()
                        .unwrap()
                        .iter()
                        .any(|s| name.ends_with(s.as_str()))
                    {
                        continue;
                    }
                    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    let generation = d.metadata.generation.unwrap_or(1);
                    let current = d.status.as_ref();
                    let done = current.is_some_and(|s| {
                        s.observed_generation == Some(generation)
                            && s.ready_replicas == Some(replicas)
                    });
                    if !done {
                        let status = serde_json::json!({"status": {
                            "observedGeneration": generation, "replicas": replicas,
                            "readyReplicas": replicas, "availableReplicas": replicas, "updatedReplicas": replicas
                        }});
                        let _ = api
                            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                            .await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
}

// The arguments are what a training run decides; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
/// Completes a retraining Job the way a cluster would, after "training" registered a version
/// tagged with the Job's attempt id.
pub async fn complete_job(
    client: &kube::Client,
    namespace: &str,
    job_name: &str,
    registry: &InMemoryRegistry,
    model: &str,
    version: u64,
    metrics: &[(&str, f64)],
    succeed: bool,
) {
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    let job = api.get(job_name).await.expect("job exists");
    let env = job
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .env
        .clone()
        .unwrap_or_default();
    let attempt = env
        .iter()
        .find(|e| e.name == "MLROLLOUT_ATTEMPT_ID")
        .and_then(|e| e.value.clone())
        .expect("the Job carries its attempt id");
    if succeed {
        registry.register(
            model,
            version,
            metrics,
            &[("mlrollout.io/attempt", attempt.as_str())],
        );
    }
    let condition = if succeed { "Complete" } else { "Failed" };
    let status = serde_json::json!({"status": {
        "conditions": [{"type": condition, "status": "True", "reason": if succeed {"Completed"} else {"BackoffLimitExceeded"}, "message": "scripted"}],
        "succeeded": if succeed {1} else {0}, "failed": if succeed {0} else {1}
    }});
    api.patch_status(job_name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("job status");
}

/// Polls `check` every virtual second until it returns `Some`, up to `limit` of virtual time.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} (virtual) waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Creates `resource`, waits until it serves its stable version, then puts candidate version 4
/// at the first canary step (10 %), as if the shadow phase had passed.
pub async fn at_first_canary_step(client: &kube::Client, resource: &ModelDeployment) {
    let namespace = resource.metadata.namespace.clone().unwrap_or_default();
    let name = resource.metadata.name.clone().unwrap_or_default();
    let mdeps: Api<ModelDeployment> = Api::namespaced(client.clone(), &namespace);
    mdeps
        .create(&kube::api::PostParams::default(), resource)
        .await
        .expect("resource created");
    wait_for(
        "the stable version serves",
        Duration::from_secs(60),
        || async {
            let status = mdeps.get(&name).await.ok()?.status?;
            (status.phase == mlrollout::api::Phase::Stable).then_some(())
        },
    )
    .await;
    let at_step = serde_json::json!({"status": {"phase": "Progressing", "candidateVersion": "4",
        "candidateSource": "registry", "currentStep": 0, "canaryWeight": 10,
        "phaseStartedAt": Timestamp::now().to_string()}});
    mdeps
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&at_step))
        .await
        .expect("status patched");
}
