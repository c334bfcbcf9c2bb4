//! Running the real controller in tests on the real API server (see [`super::cluster`]): an
//! in-memory registry, scripted analysis and drift (test doubles behind the real traits), a
//! scaled virtual clock, and what a training container does (register a version, exit).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use mlrollout::analysis::{Analyzer, MeasureRequest};
use mlrollout::api::{
    CandidateSource, DriftSummary, ModelDeployment, ModelDeploymentStatus, Phase, Severity,
};
use mlrollout::controller::{self, Context, WatchScope};
use mlrollout::core::lifecycle::DriftObservation;
use mlrollout::core::names::FIELD_MANAGER;
use mlrollout::core::verdict::{MetricMeasurement, judge, query_error};
use mlrollout::drift::check::DriftCheck;
use mlrollout::metrics::Metrics;
use mlrollout::registry::ModelRegistry;
use mlrollout::registry::memory::InMemoryRegistry;
use mlrollout::server::Health;
use tokio::sync::oneshot;

use super::cluster::{eventually, finish_job};

/// Analysis double: metric values per (metric, variant) set by the test, judged by the real
/// verdict logic. A missing value is no data; `fail_queries` makes every query an error,
/// `fail_next` the next n rounds; `pause` holds every round until `resume` (a query that hangs).
#[derive(Default)]
pub struct ScriptedAnalyzer {
    values: Mutex<BTreeMap<(String, String), f64>>,
    fail_queries: Mutex<bool>,
    fail_next: Mutex<u32>,
    paused: Mutex<bool>,
    pub calls: Mutex<u64>,
    /// Every answered round: when it was answered and whether its queries failed.
    pub rounds: Mutex<Vec<(std::time::Instant, bool)>>,
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

    /// The next `rounds` rounds of queries fail (Prometheus down for a while), then they work.
    pub fn fail_next(&self, rounds: u32) {
        *self.fail_next.lock().unwrap() = rounds;
    }

    /// Rounds of queries started from now on wait until [`ScriptedAnalyzer::resume`].
    pub fn pause(&self) {
        *self.paused.lock().unwrap() = true;
    }

    pub fn resume(&self) {
        *self.paused.lock().unwrap() = false;
    }

    /// (answered at, failed) of every round so far.
    pub fn rounds(&self) -> Vec<(std::time::Instant, bool)> {
        self.rounds.lock().unwrap().clone()
    }
}

impl Analyzer for ScriptedAnalyzer {
    fn measure<'a>(&'a self, request: MeasureRequest<'a>) -> BoxFuture<'a, Vec<MetricMeasurement>> {
        *self.calls.lock().unwrap() += 1;
        async move {
            while *self.paused.lock().unwrap() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let fail = *self.fail_queries.lock().unwrap() || {
                let mut next = self.fail_next.lock().unwrap();
                let failing = *next > 0;
                *next = next.saturating_sub(1);
                failing
            };
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
            self.rounds
                .lock()
                .unwrap()
                .push((std::time::Instant::now(), fail));
            out
        }
        .boxed()
    }
}

/// Drift double: every check reports the severity the test set.
pub struct ScriptedDrift {
    severity: Mutex<Severity>,
    pub checks: Mutex<u64>,
}

impl Default for ScriptedDrift {
    fn default() -> Self {
        Self {
            severity: Mutex::new(Severity::Ok),
            checks: Mutex::new(0),
        }
    }
}

impl ScriptedDrift {
    pub fn set(&self, severity: Severity) {
        *self.severity.lock().unwrap() = severity;
    }
}

impl DriftCheck for ScriptedDrift {
    fn check<'a>(
        &'a self,
        _resource: &'a ModelDeployment,
        _inputs: mlrollout::drift::check::DriftInputs<'a>,
    ) -> BoxFuture<'a, DriftObservation> {
        *self.checks.lock().unwrap() += 1;
        let severity = *self.severity.lock().unwrap();
        async move {
            DriftObservation::Completed {
                summary: DriftSummary {
                    reference_rows: 1000,
                    current_rows: 1000,
                    drift_detected: severity != Severity::Ok,
                    drifted_share: if severity == Severity::Ok { 0.0 } else { 0.6 },
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
        let poll = self
            .real(Duration::from_secs(1))
            .max(Duration::from_millis(20));
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

/// The controller's context for a test: `client`, `registry`, fresh metrics, and requeues capped
/// at [`TEST_MAX_REQUEUE`] (a test never waits out a long backoff). Add the doubles it needs.
pub fn test_context(client: kube::Client, registry: Arc<dyn ModelRegistry>) -> Context {
    Context::new(client, registry, Metrics::default()).with_max_requeue(TEST_MAX_REQUEUE)
}

/// A running controller (`controller::run`) on the real API server, until [`Operator::stop`].
pub struct Operator {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Operator {
    /// Runs the real controller with the context the test built. `scope` must name the test's
    /// own namespace(s): the cluster is shared.
    pub fn run(ctx: Context, scope: WatchScope) -> Operator {
        Operator::run_with_health(ctx, scope, Health::new())
    }

    /// [`Operator::run`], reporting liveness and readiness to `health`.
    pub fn run_with_health(ctx: Context, scope: WatchScope, health: Health) -> Operator {
        assert!(
            scope.namespaces().is_some(),
            "tests share the cluster: scope the operator to the test's namespaces"
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(controller::run(ctx, scope, health, stopped.map(|_| ())));
        Operator { stop, task }
    }

    /// Starts the real controller on `client` with the test doubles, the injected `clock`
    /// (usually [`ScaledClock::controller_clock`]) and requeues capped at [`TEST_MAX_REQUEUE`]
    /// so it sees virtual time move.
    pub fn start(
        client: kube::Client,
        registry: Arc<dyn ModelRegistry>,
        analyzer: Arc<ScriptedAnalyzer>,
        drift: Arc<ScriptedDrift>,
        clock: controller::Clock,
        scope: WatchScope,
    ) -> Operator {
        let ctx = test_context(client, registry)
            .with_analyzer(analyzer)
            .with_drift(drift)
            .with_clock(clock);
        Operator::run(ctx, scope)
    }

    /// Kills the controller the way SIGKILL would: its task is aborted, whatever it was doing
    /// (a request half sent, a status computed and not yet written) is dropped; nothing
    /// graceful runs. Waits until the task is gone.
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Stops the controller and waits until it has (30 s at most); fails the test if the
    /// controller panicked.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("controller stops")
            .expect("controller did not panic");
    }
}

/// Waits (real time) until Deployment `namespace/name` is rolled out: the Deployment
/// controller saw its latest spec and every replica is updated and ready (kwok plays the
/// kubelet). Returns the Deployment.
pub async fn deployment_ready(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    limit: Duration,
) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    eventually(
        &format!("Deployment {namespace}/{name} ready"),
        limit,
        || async {
            let d = api.get_opt(name).await.ok()??;
            let replicas = d.spec.as_ref()?.replicas.unwrap_or(1);
            let status = d.status.as_ref()?;
            let done = status.observed_generation >= d.metadata.generation
                && status.updated_replicas.unwrap_or(0) == replicas
                && status.ready_replicas.unwrap_or(0) == replicas;
            done.then_some(d)
        },
    )
    .await
}

/// The attempt id a retraining Job passes to its training code (`MLROLLOUT_ATTEMPT_ID`).
pub async fn job_attempt_id(client: &kube::Client, namespace: &str, job_name: &str) -> String {
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    let job = api.get(job_name).await.expect("job exists");
    let env = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers[0].env.clone().unwrap_or_default())
        .unwrap_or_default();
    env.iter()
        .find(|e| e.name == "MLROLLOUT_ATTEMPT_ID")
        .and_then(|e| e.value.clone())
        .expect("the Job carries its attempt id")
}

// The arguments are what a training run decides; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
/// Plays a training container: on success it registers `version` tagged with the Job's
/// attempt id (read from the Job's env, as training code would), then the Job's Pod exits
/// (0 or 1) and the real Job controller marks the Job Complete or Failed.
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
    let attempt = job_attempt_id(client, namespace, job_name).await;
    if succeed {
        registry.register(
            model,
            version,
            metrics,
            &[("mlrollout.io/attempt", attempt.as_str())],
        );
    }
    finish_job(client, namespace, job_name, succeed).await;
}

/// Writes `status` the way the operator does: a server-side apply of the complete status by
/// the field manager `mlrollout`, locked on the resourceVersion it was computed from. Returns
/// false on a 409 Conflict (someone wrote in between: read again and retry).
pub async fn apply_status(
    client: &kube::Client,
    resource: &ModelDeployment,
    status: &ModelDeploymentStatus,
) -> bool {
    let namespace = resource.metadata.namespace.clone().unwrap_or_default();
    let name = resource.metadata.name.clone().unwrap_or_default();
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), &namespace);
    let body = mlrollout::controller::act::status_apply_body(resource, status).expect("body");
    match api
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
    {
        Ok(_) => true,
        Err(kube::Error::Api(e)) if e.code == 409 => false,
        Err(e) => panic!("status apply of {namespace}/{name}: {e}"),
    }
}

/// Creates `resource`, waits (real time) until it serves its stable version, then puts
/// candidate version 4 at the first canary step (10 %), as if the shadow phase had passed
/// at `now` (the operator's clock).
pub async fn at_first_canary_step(
    client: &kube::Client,
    resource: &ModelDeployment,
    now: Timestamp,
) {
    let namespace = resource.metadata.namespace.clone().unwrap_or_default();
    let name = resource.metadata.name.clone().unwrap_or_default();
    let mdeps: Api<ModelDeployment> = Api::namespaced(client.clone(), &namespace);
    mdeps
        .create(&PostParams::default(), resource)
        .await
        .expect("resource created");
    eventually(
        "the stable version serves",
        Duration::from_secs(60),
        || async {
            let status = mdeps.get(&name).await.ok()?.status?;
            (status.phase == Phase::Stable && status.stable_version.is_some()).then_some(())
        },
    )
    .await;
    eventually(
        "the canary step seeded",
        Duration::from_secs(30),
        || async {
            let current = mdeps.get(&name).await.ok()?;
            let mut status = current.status.clone().unwrap_or_default();
            status.phase = Phase::Progressing;
            status.candidate_version = Some("4".into());
            status.candidate_source = Some(CandidateSource::Registry);
            status.current_step = Some(0);
            status.canary_weight = 10;
            status.mirror_percent = 0;
            status.phase_started_at = Some(Time(now));
            status.analysis = None;
            apply_status(client, &current, &status).await.then_some(())
        },
    )
    .await;
}
