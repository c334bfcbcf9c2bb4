//! Crash and restart with real processes (the README's "Reliability" table): the operator is
//! the `mlrollout run` binary, MLflow and Prometheus are the real servers, the control plane is
//! the real one; everything in real time. The loop: drift in the data files → the retraining
//! Job (the test plays the trainer: it trains and registers a better version in MLflow with
//! the attempt's lineage tag, then ends the Job's Pod) → evaluation → shadow → 10 → 50 → 100 %
//! → promoted, with the analysis queried from Prometheus, which scrapes an exporter publishing
//! the built-in metrics' series for both variants. Faults:
//! - the operator process killed with SIGKILL on entering every phase and step, and once more
//!   a moment after each restart;
//! - the MLflow server (and its workers) killed with SIGKILL while the Job ends, and again at
//!   the 100 % step, each time started again on the same port and backend store;
//! - Prometheus killed with SIGKILL at the 10 % step and started again on the same TSDB.
//!
//! Each run must end like an undisturbed one (`tests/common/faults.rs`): one Job, one history
//! entry, MLflow's aliases moved, the route's weights only ever 0 → 10 → 50 → 100 → 0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane, the venv's MLflow and Python, and Prometheus: full suite only,
// `cargo test --features harness` (CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, PostParams};
use mlrollout::api::{ModelDeployment, ModelDeploymentStatus, Phase};

use common::cluster::{self, eventually};
use common::faults::{
    Seen, StepAnalysis, UNDISTURBED_WEIGHTS, assert_undisturbed_end, first_seen, record_analysis,
    record_weights,
};
use common::http::HoldingProxy;
use common::mlflow::MlflowServer;
use common::operator_process::{OperatorCommand, OperatorProcess};
use common::prometheus::{Exporter, PrometheusServer};
use common::traffic::ModelTraffic;
use common::world::MODEL;

/// Prints how long the test took when it ends (`faults_process: … took N s`).
fn cost(test: &'static str) -> common::faults::Cost {
    common::faults::Cost::start("faults_process", test)
}

/// The shadow phase and each step last INTERVAL at least and need 2 passed measurement rounds,
/// one every INTERVAL (also the rate window of the built-in queries: 5 scrapes or more).
const RESOURCE: &str = r#"
apiVersion: mlrollout.io/v1alpha1
kind: ModelDeployment
metadata: {name: fraud-detector}
spec:
  model: {trackingUri: TRACKING_URI, name: MODEL_NAME}
  traffic: {provider: gatewayAPI, parentRefs: [{name: gw}]}
  drift:
    reference: {uri: DATA/reference.csv}
    current: {uri: DATA/current.csv}
    interval: 3s
  retraining:
    triggers: {driftSeverity: high}
    cooldown: 1h
    maxAttemptsPerDay: 3
    timeout: 10m
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
  shadow: {duration: INTERVAL, mirrorPercent: 50}
  rollout:
    steps: [10, 50, 100]
    stepDuration: INTERVAL
    progressDeadline: 5m
    analysis:
      prometheus: {address: PROMETHEUS}
      interval: INTERVAL
      count: 2
"#;

/// Measurement rounds every 5 s.
const FAST: &str = "5s";
/// Every 10 s: for the Prometheus restart. A restarted Prometheus answers at once, but has
/// new samples only about 8 s later (its first scrape waits 5 s for service discovery, a rate
/// needs two), so a round then finds no data (inconclusive); the built-in metrics allow 2 such
/// rounds, a third pauses the rollout for a person. At 10 s that is one round, at 5 s two.
const SLOW: &str = "10s";

/// The longest a whole run may take (real time), faults included.
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// One test's rollout: its namespace and data files, its model in MLflow, its Prometheus and
/// exporter, and how it starts its operator processes.
struct Rollout {
    client: kube::Client,
    ns: String,
    dir: PathBuf,
    /// The registered model (one per test: the MLflow server may be shared).
    model: String,
    /// `host:port` of the MLflow server, for the test's own reads and for training.
    mlflow: String,
    prometheus: PrometheusServer,
    _traffic: ModelTraffic,
    operator: OperatorCommand,
    /// Deletes the namespace when the test ends, passed or failed.
    _namespace: cluster::NamespaceGuard,
}

/// The scratch dir (data files, the operator's log) goes with the test, unless
/// `MLROLLOUT_KEEP_TEST_DIRS` is set.
impl Drop for Rollout {
    fn drop(&mut self) {
        if std::env::var_os("MLROLLOUT_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Rollout {
    /// `mlflow` is the server; the resource names `tracking_uri` (the server, or a proxy in
    /// front of it) and measures every `interval`. Version 1 (a weaker model) is trained and
    /// made the champion.
    async fn new(prefix: &str, mlflow: &str, tracking_uri: &str, interval: &str) -> Rollout {
        let client = cluster::client().await;
        let ns = cluster::namespace(&client, prefix).await;
        let dir = common::process::scratch_dir(prefix);
        let reference = std::fs::read("examples/data/reference.csv").unwrap();
        std::fs::write(dir.join("reference.csv"), &reference).unwrap();
        std::fs::write(dir.join("current.csv"), &reference).unwrap();
        let model = format!("faults-{ns}");
        let exporter = Arc::new(Exporter::start());
        let traffic = ModelTraffic::start(exporter.clone(), &ns, MODEL);
        let (server, uri, name, series) = (
            mlflow.to_string(),
            format!("http://{mlflow}"),
            model.clone(),
            format!(r#"http_requests_total{{namespace="{ns}"}}"#),
        );
        let prometheus = tokio::task::spawn_blocking(move || {
            let champion = common::mlflow::train(&uri, &name, 0.3, &[]);
            assert_eq!(champion.version, "1");
            common::mlflow::set_alias(&server, &name, "champion", "1");
            let prometheus = PrometheusServer::start(&[exporter.target()]);
            prometheus.wait_for_series(&series, Duration::from_secs(60));
            // The exporter lives as long as the traffic thread that holds it.
            drop(exporter);
            prometheus
        })
        .await
        .unwrap();
        let resource = RESOURCE
            .replace("TRACKING_URI", tracking_uri)
            .replace("MODEL_NAME", &model)
            .replace("DATA", &dir.display().to_string())
            .replace("PROMETHEUS", &prometheus.url())
            .replace("INTERVAL", interval);
        let mut resource: ModelDeployment = serde_yaml::from_str(&resource).unwrap();
        resource.metadata.namespace = Some(ns.clone());
        let operator = OperatorCommand::new(
            cluster::cluster(),
            &format!("mlrollout-{ns}"),
            &ns,
            &dir,
            &dir.join("operator.log"),
        );
        Api::<ModelDeployment>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &resource)
            .await
            .unwrap();
        Rollout {
            _namespace: cluster::NamespaceGuard(ns.clone()),
            client,
            ns,
            dir,
            model,
            mlflow: mlflow.to_string(),
            prometheus,
            _traffic: traffic,
            operator,
        }
    }

    async fn status(&self) -> ModelDeploymentStatus {
        Api::<ModelDeployment>::namespaced(self.client.clone(), &self.ns)
            .get(MODEL)
            .await
            .unwrap()
            .status
            .unwrap_or_default()
    }

    async fn wait_phase(&self, phase: Phase, limit: Duration) -> ModelDeploymentStatus {
        eventually(&format!("phase {phase:?}"), limit, || async {
            let s = self.status().await;
            (s.phase == phase).then_some(s)
        })
        .await
    }

    /// Waits until the resource serves version 1, puts drifted data in place and waits for
    /// the retraining Job; returns its name.
    async fn start_retraining(&self) -> String {
        self.wait_phase(Phase::Stable, Duration::from_secs(60))
            .await;
        let drifted = std::fs::read("examples/data/current.csv").unwrap();
        let staged = self.dir.join("current.csv.new");
        std::fs::write(&staged, drifted).unwrap();
        std::fs::rename(&staged, self.dir.join("current.csv")).unwrap();
        let s = self
            .wait_phase(Phase::Retraining, Duration::from_secs(60))
            .await;
        s.retraining_attempts.last().unwrap().job_name.clone()
    }

    /// Plays the training container of `job`: trains a better version and registers it in
    /// MLflow tagged with the attempt's id (read from the Job, as training code would).
    async fn train_candidate(&self, job: &str) {
        let attempt = common::operator::job_attempt_id(&self.client, &self.ns, job).await;
        let (uri, model) = (format!("http://{}", self.mlflow), self.model.clone());
        let trained = tokio::task::spawn_blocking(move || {
            common::mlflow::train(&uri, &model, 1.0, &[("mlrollout.io/attempt", &attempt)])
        })
        .await
        .unwrap();
        assert_eq!(trained.version, "2");
    }

    /// The Job's Pod exits 0; the Job controller marks the Job Complete.
    async fn finish_job(&self, job: &str) {
        cluster::finish_job(&self.client, &self.ns, job, true).await;
    }

    async fn weights(&self) -> Option<(i32, i32)> {
        let routes: Api<gateway_api::httproutes::HttpRoute> =
            Api::namespaced(self.client.clone(), &self.ns);
        let route = routes.get_opt(MODEL).await.ok()??;
        Some(common::world::route_weights(&route))
    }

    async fn wait_weights(&self, what: &str, want: (i32, i32)) {
        eventually(what, RUN_LIMIT, || async {
            (self.weights().await == Some(want)).then_some(())
        })
        .await;
    }

    /// The version behind `alias` in MLflow (`None`: no such alias).
    fn alias(&self, alias: &str) -> Option<String> {
        tokio::task::block_in_place(|| common::mlflow::alias(&self.mlflow, &self.model, alias))
    }

    /// What an undisturbed run ends with: version 2 promoted and stable, one attempt, one
    /// Job (also in the audit log), one history entry, MLflow's `champion` on 2 and
    /// `previous` on 1, and the route's candidate weights 0 → 10 → 50 → 100 → 0.
    async fn assert_like_an_undisturbed_run(&self, job: &str, weights: &Seen<(i32, i32)>) {
        let end = eventually("promoted to version 2", RUN_LIMIT, || async {
            let s = self.status().await;
            (s.phase == Phase::Stable && s.stable_version.as_deref() == Some("2")).then_some(s)
        })
        .await;
        let jobs = cluster::jobs(&self.client, &self.ns).await;
        let created = cluster::cluster().jobs_created(&self.ns);
        assert_undisturbed_end(&end, "2", job, &jobs, &created);
        eventually(
            "MLflow's aliases moved",
            Duration::from_secs(60),
            || async { (self.alias("champion").as_deref() == Some("2")).then_some(()) },
        )
        .await;
        assert_eq!(self.alias("previous").as_deref(), Some("1"));
        assert_eq!(self.alias("challenger"), None);
        let seen = eventually(
            "the watch sees the route back on stable",
            Duration::from_secs(60),
            || async { common::faults::candidate_weights(weights) },
        )
        .await;
        assert_eq!(
            seen, UNDISTURBED_WEIGHTS,
            "traffic never moved backwards or skipped a step"
        );
    }
}

/// The MLflow server shared by the tests of this file that do not stop it.
async fn shared_mlflow() -> &'static MlflowServer {
    tokio::task::spawn_blocking(common::mlflow::mlflow_server)
        .await
        .unwrap()
}

fn authority(mlflow: &MlflowServer) -> String {
    format!("127.0.0.1:{}", mlflow.port())
}

fn note(line: String) {
    let _ = writeln!(std::io::stderr(), "faults_process: {line}");
}

// ------------------------------------------------------------------ the operator killed

/// `kill -9` of the operator process, and a new one started.
fn crash(command: &mut OperatorCommand, operator: OperatorProcess) -> OperatorProcess {
    operator.kill();
    command.start()
}

/// A pseudo-random pause of 0–500 ms, so that the second kill in a phase lands at a different
/// point of the new process's start or of a reconcile each time.
fn jitter() -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_millis(u64::from(nanos % 500))
}

/// MLflow's answer to this is what the evaluation waits for (the candidate's and the
/// champion's training runs): the proxy holds it so that `Evaluating`, which lasts one
/// reconcile otherwise, lasts until the operator was killed in it.
const RUNS_GET: &str = "/api/2.0/mlflow/runs/get";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_process_killed_in_every_phase_ends_like_an_undisturbed_run() {
    let _cost = cost("operator process killed in every phase");
    let started = Instant::now();
    let mlflow = shared_mlflow().await;
    let gate = HoldingProxy::start(&authority(mlflow));
    let mut run = Rollout::new("faults-process-kill", &authority(mlflow), &gate.uri(), FAST).await;
    let (weights, recorder) = record_weights(&run.client, &run.ns);
    let mut operator = run.operator.start();
    let job = run.start_retraining().await;

    // Killed while the Job runs: the new process adopts it, no second Job.
    operator = crash(&mut run.operator, operator);
    let mut kills = 1;
    let mut killed_in = vec![(Phase::Retraining, None)];
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(cluster::jobs(&run.client, &run.ns).await, vec![job.clone()]);
    assert_eq!(run.status().await.phase, Phase::Retraining);
    gate.hold(RUNS_GET);
    run.train_candidate(&job).await;
    run.finish_job(&job).await;

    let mut last = (Phase::Retraining, None);
    loop {
        let status = run.status().await;
        if status.phase == Phase::Stable && status.stable_version.as_deref() == Some("2") {
            break;
        }
        let here = (status.phase, status.current_step);
        if here != last {
            // A new phase (or step): kill the operator right here, and the new one again a
            // moment after it started (while it lists and reconciles, with luck mid-request).
            last = here;
            operator = crash(&mut run.operator, operator);
            killed_in.push(here);
            tokio::time::sleep(jitter()).await;
            operator = crash(&mut run.operator, operator);
            kills += 2;
            if status.phase == Phase::Evaluating {
                tokio::time::sleep(Duration::from_secs(2)).await;
                assert_eq!(run.status().await.phase, Phase::Evaluating);
                assert!(gate.held() > 0, "the evaluation never asked MLflow");
                gate.release();
            }
        }
        if let Some(how) = operator.exited() {
            panic!("the operator ended ({how}):\n{}", run.operator.log_tail(40));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            started.elapsed() < RUN_LIMIT,
            "the loop never ends: {killed_in:?}\n{}",
            run.operator.log_tail(40)
        );
    }
    common::faults::assert_every_phase(&killed_in, "kill");
    assert!(kills >= 13, "{kills} kills");
    note(format!(
        "operator process killed {kills} times, {} processes started",
        run.operator.starts
    ));
    run.assert_like_an_undisturbed_run(&job, &weights).await;
    recorder.abort();
    operator.kill();
}

// ------------------------------------------------------------------- MLflow killed

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mlflow_server_killed_at_evaluation_and_at_promotion_changes_nothing() {
    let _cost = cost("MLflow server killed at evaluation and at promotion");
    // A server of its own: the others' tests keep theirs.
    let mut mlflow = tokio::task::spawn_blocking(MlflowServer::start)
        .await
        .unwrap();
    let address = authority(&mlflow);
    let mut run = Rollout::new("faults-process-mlflow", &address, &mlflow.uri(), FAST).await;
    let (weights, recorder) = record_weights(&run.client, &run.ns);
    let (analysis, analysis_recorder) = record_analysis(&run.client, &run.ns);
    let operator = run.operator.start();
    let job = run.start_retraining().await;
    run.train_candidate(&job).await;

    // Killed while the Job ends: the candidate can be neither found nor evaluated.
    tokio::task::block_in_place(|| mlflow.kill());
    run.finish_job(&job).await;
    // The operator saw the Job end at once and looks again every few seconds: nothing moves.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let held = run.status().await;
    assert_eq!(held.phase, Phase::Retraining, "{:?}", held.message);
    assert!(held.history.is_empty());
    assert_eq!(run.weights().await, Some((100, 0)));
    let took = tokio::task::block_in_place(|| mlflow.restart());
    let back = Instant::now();
    note(format!(
        "MLflow started again in {:.1} s",
        took.as_secs_f64()
    ));
    // Nothing moved during the whole outage, the restart included.
    let before_back: Vec<Phase> = analysis
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at < back)
        .map(|(_, a)| a.0)
        .collect();
    assert!(
        before_back
            .iter()
            .all(|p| matches!(p, Phase::Pending | Phase::Stable | Phase::Retraining)),
        "{before_back:?}"
    );
    assert!(first_seen(&weights, &(90, 10)).is_none());

    // Killed again at the 100 % step: the promotion's MLflow writes fail and stay pending.
    run.wait_weights("100% step", (0, 100)).await;
    tokio::task::block_in_place(|| mlflow.kill());
    let pending = eventually(
        "promotion writes pending",
        Duration::from_secs(60),
        || async {
            let s = run.status().await;
            (!s.pending_registry_writes.is_empty()).then_some(s)
        },
    )
    .await;
    let synced = pending
        .conditions
        .iter()
        .find(|c| c.type_ == "RegistrySynced")
        .expect("a RegistrySynced condition");
    assert_eq!(
        (synced.status.as_str(), synced.reason.as_str()),
        ("False", "RegistryBehind"),
        "{}",
        synced.message
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!run.status().await.pending_registry_writes.is_empty());
    let took = tokio::task::block_in_place(|| mlflow.restart());
    note(format!(
        "MLflow started again in {:.1} s",
        took.as_secs_f64()
    ));

    run.assert_like_an_undisturbed_run(&job, &weights).await;
    let end = eventually("MLflow caught up", Duration::from_secs(60), || async {
        let s = run.status().await;
        s.pending_registry_writes.is_empty().then_some(s)
    })
    .await;
    assert_eq!(end.history.len(), 1);
    assert_eq!(
        common::mlflow::version_tag(&address, &run.model, "2", "mlrollout.io/rollout").as_deref(),
        Some("promoted")
    );
    recorder.abort();
    analysis_recorder.abort();
    operator.kill();
    drop(mlflow);
}

// --------------------------------------------------------------- Prometheus killed

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_killed_at_a_canary_step_holds_the_step_then_promotes() {
    let _cost = cost("Prometheus killed at 10 %");
    let mlflow = shared_mlflow().await;
    let mut run = Rollout::new(
        "faults-process-prom",
        &authority(mlflow),
        &mlflow.uri(),
        SLOW,
    )
    .await;
    let (weights, recorder) = record_weights(&run.client, &run.ns);
    let (analysis, analysis_recorder) = record_analysis(&run.client, &run.ns);
    let operator = run.operator.start();
    let job = run.start_retraining().await;
    run.train_candidate(&job).await;
    run.finish_job(&job).await;
    run.wait_weights("10% step", (90, 10)).await;

    tokio::task::block_in_place(|| run.prometheus.kill());
    let killed = Instant::now();
    let at_kill = run.status().await;
    let passes_at_kill = common::faults::step_analysis(&at_kill).3;
    assert!(passes_at_kill < 2, "the step passed before the kill");
    // Two rounds of failed queries in a row (the limit is 4); the step's 10 s run out meanwhile.
    eventually("2 failed rounds", Duration::from_secs(60), || async {
        let a = common::faults::step_analysis(&run.status().await);
        (a.1 == Some(0) && a.4 >= 2).then_some(())
    })
    .await;
    assert!(killed.elapsed() > Duration::from_secs(10));
    assert_eq!(
        run.weights().await,
        Some((90, 10)),
        "traffic moved during the outage"
    );
    tokio::task::block_in_place(|| run.prometheus.restart());
    let healed = Instant::now();
    note(format!(
        "Prometheus down {:.1} s",
        (healed - killed).as_secs_f64()
    ));
    let fifty = eventually("the 50% step", RUN_LIMIT, || async {
        first_seen(&weights, &(50, 50))
    })
    .await;
    assert!(fifty > healed, "traffic moved during the outage");
    // The errors are in the step's analysis (within the limit of 4 in a row), and never
    // counted as passes: the passes stayed as they were while the errors grew.
    let step0: Vec<(Instant, StepAnalysis)> = analysis
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, a)| a.0 == Phase::Progressing && a.1 == Some(0))
        .cloned()
        .collect();
    let most_errors = step0.iter().map(|(_, a)| a.4).max().unwrap_or(0);
    assert!((2..=4).contains(&most_errors), "{step0:?}");
    let failing: Vec<i32> = step0
        .iter()
        .filter(|(_, a)| a.4 >= 1)
        .map(|(_, a)| a.3)
        .collect();
    let during = failing[0];
    assert!(
        during < 2 && failing.iter().all(|p| *p == during),
        "passes moved during the outage: {step0:?}"
    );
    // The step needs 2 passes; the round that completes them is written with the next step,
    // so the last state of step 0 shows one. Those the outage left missing were measured
    // after the restart.
    let (last_at, last) = step0.last().cloned().unwrap();
    assert_eq!(last.3, 1, "{step0:?}");
    if last.3 > during {
        let first_new_pass = step0
            .iter()
            .find(|(_, a)| a.3 > during)
            .map_or(last_at, |(at, _)| *at);
        assert!(
            first_new_pass > healed,
            "a pass during the outage: {step0:?}"
        );
    }
    run.assert_like_an_undisturbed_run(&job, &weights).await;
    recorder.abort();
    analysis_recorder.abort();
    operator.kill();
}
