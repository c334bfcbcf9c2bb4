//! Crash and restart, for real (the README's "Reliability" table): the whole loop of
//! `tests/lifecycle_controller.rs` (drift → retraining Job → evaluation → shadow → 10 → 50 → 100
//! → promoted, in scaled virtual time) with a fault injected on the way:
//! - the operator killed (its task aborted, nothing graceful) in every phase and step, twice;
//! - kube-apiserver and etcd killed with SIGKILL at the 50 % step and started again, on a
//!   control plane of the test's own (the shared one is not disturbed);
//! - Prometheus failing queries at a canary step, within the consecutive-error limit (the step
//!   holds, then passes) and past it (rolled back);
//! - MLflow down while the candidate is looked up and evaluated, and again during promotion
//!   (its writes stay pending and are retried).
//!
//! Each run must end like an undisturbed one: one Job for the attempt (the API server's audit
//! log), one history entry, the route's weights only ever 0 → 10 → 50 → 100 → 0, and no step
//! taken forward without the analysis it needs. Every test prints what it cost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane; the API-server restart test starts one of its own (about 20 s):
// full suite only, `cargo test --features harness` (CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway_api::httproutes::HttpRoute;
use kube::api::Api;
use mlrollout::api::{ModelDeploymentStatus, Phase, RolloutOutcome, RolloutReason};

use common::cluster::{Cluster, eventually};
use common::faults::{
    Seen, StepAnalysis, UNDISTURBED_WEIGHTS, assert_undisturbed_end, first_seen, values,
};
use common::own_cluster::OwnCluster;
use common::world::{HOUR, MINUTE, MODEL, SPEED, World, drive_to_job, route_weights};

/// Prints how long the test took when it ends (`faults: … took N s`).
fn cost(test: &'static str) -> common::faults::Cost {
    common::faults::Cost::start("faults", test)
}

// ------------------------------------------------------------------------- recorders

fn record_weights(world: &World) -> (Seen<(i32, i32)>, tokio::task::JoinHandle<()>) {
    common::faults::record_weights(&world.client, &world.ns)
}

/// Records the weights by reading the route every 20 ms (each step lasts seconds of real time
/// here, so none is missed). For the API server restart: a watch re-established after it can
/// take longer than a step to deliver again.
fn poll_weights(world: &World) -> (Seen<(i32, i32)>, tokio::task::JoinHandle<()>) {
    let routes: Api<HttpRoute> = Api::namespaced(world.client.clone(), &world.ns);
    let seen: Seen<(i32, i32)> = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            // A request sent while the API server starts can hang: never wait on one for long.
            let read = tokio::time::timeout(Duration::from_millis(300), routes.get_opt(MODEL));
            if let Ok(Ok(Some(route))) = read.await {
                let value = route_weights(&route);
                let mut seen = out.lock().unwrap();
                if seen.last().map(|(_, v)| v) != Some(&value) {
                    seen.push((Instant::now(), value));
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (seen, task)
}

/// Waits until the weight recorder saw the route back at 100/0 and returns the candidate's
/// weights it saw, in order.
async fn candidate_weights(world: &World, seen: &Seen<(i32, i32)>) -> Vec<i32> {
    world
        .clock
        .wait_for("the watch sees the route back on stable", HOUR, || async {
            common::faults::candidate_weights(seen)
        })
        .await
}

async fn wait_promoted(world: &World) -> ModelDeploymentStatus {
    world
        .clock
        .wait_for("promoted to version 4", 2 * HOUR, || async {
            let s = world.status().await;
            (s.phase == Phase::Stable && s.stable_version.as_deref() == Some("4")).then_some(s)
        })
        .await
}

/// What an undisturbed run ends with: version 4 promoted, one attempt, one Job (also in the
/// API server's audit log: none created and deleted again), one history entry, MLflow's
/// aliases moved, and traffic 0 → 10 → 50 → 100 → 0.
async fn assert_like_an_undisturbed_run(world: &World, job: &str, weights: &Seen<(i32, i32)>) {
    let end = wait_promoted(world).await;
    assert_undisturbed_end(&end, "4", job, &world.jobs().await, &world.jobs_created());
    world
        .clock
        .wait_for("MLflow's aliases moved", HOUR, || async {
            (world.registry.alias(MODEL, "champion") == Some(4)).then_some(())
        })
        .await;
    assert_eq!(world.registry.alias(MODEL, "previous"), Some(3));
    assert_eq!(world.registry.alias(MODEL, "challenger"), None);
    assert_eq!(
        candidate_weights(world, weights).await,
        UNDISTURBED_WEIGHTS,
        "traffic never moved backwards or skipped a step"
    );
}

// --------------------------------------------------------------------- operator crash

/// Kills the operator and starts a new one.
async fn crash(world: &World, operator: common::operator::Operator) -> common::operator::Operator {
    operator.abort().await;
    world.operator()
}

/// A pseudo-random pause of 0-250 ms (real), so that the second kill in a phase lands at a
/// different point of a reconcile each time.
fn jitter() -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_millis(u64::from(nanos % 250))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_killed_in_every_phase_ends_like_an_undisturbed_run() {
    let _cost = cost("operator killed in every phase");
    let world = World::new("faults-kill").await;
    let (weights, recorder) = record_weights(&world);
    let mut operator = world.operator();
    let job = drive_to_job(&world).await;

    // Killed while the Job runs: the new operator adopts it, no second Job.
    operator = crash(&world, operator).await;
    let mut kills = 1;
    world.clock.sleep(2 * MINUTE).await;
    assert_eq!(world.jobs().await, vec![job.clone()]);
    assert_eq!(world.status().await.phase, Phase::Retraining);
    let mut killed_in = vec![(Phase::Retraining, None)];
    // MLflow's evaluation answer is held back until the operator was killed in `Evaluating`
    // (the phase lasts one reconcile otherwise).
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
            // A new phase (or step): kill the operator right here, and once more a moment
            // later (mid-reconcile, with luck mid-request).
            last = here;
            operator = crash(&world, operator).await;
            killed_in.push(here);
            tokio::time::sleep(jitter()).await;
            operator = crash(&world, operator).await;
            kills += 2;
            if status.phase == Phase::Evaluating {
                world.clock.sleep(MINUTE).await;
                assert_eq!(world.status().await.phase, Phase::Evaluating);
                world.gate.hold_evaluation(false);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(killed_in.len() < 20, "the loop never ends: {killed_in:?}");
    }
    common::faults::assert_every_phase(&killed_in, "kill");
    assert!(kills >= 13, "{kills} kills");
    let _ = writeln!(std::io::stderr(), "faults: operator killed {kills} times");
    assert_like_an_undisturbed_run(&world, &job, &weights).await;
    recorder.abort();
    world.finish(operator).await;
}

// ----------------------------------------------------------- API server and etcd restart

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_and_etcd_killed_mid_rollout_change_nothing() {
    let _cost = cost("API server and etcd killed at 50 % (own control plane)");
    let started = Instant::now();
    let own = OwnCluster::up("faults-cp");
    let _ = writeln!(
        std::io::stderr(),
        "faults: own control plane up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let cluster = Cluster::from_dir(&own.dir);
    let client = kube::Client::try_from(cluster.config().await).unwrap();
    let world = World::on(cluster, client, "faults-cp", SPEED).await;
    let operator = world.operator();
    let (weights, recorder) = poll_weights(&world);
    let job = drive_to_job(&world).await;
    world.complete_job(&job, 0.91).await;
    world.wait_weights("50% step", (50, 50), 2 * HOUR).await;

    // Analysis rounds started from here wait until the control plane is back: every round
    // that counts for this step after the restart was measured after it. The rounds already
    // in the status stay (they were evidence when they were taken).
    world.analyzer.pause();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = world.status().await;
    assert_eq!(before.current_step, Some(1));
    let measured_before = before.analysis.map_or(0, |a| a.measurements);
    assert!(
        measured_before < 3,
        "the step passed before the kill: {measured_before}"
    );

    own.kill("kube-apiserver");
    own.kill("etcd");
    // Three seconds down: 90 virtual seconds, past the 1 m step.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        world.mdeps().get(MODEL).await.is_err(),
        "the API server is down"
    );
    own.restart();
    let back = Instant::now();
    world.analyzer.resume();
    // Nothing moved while the API server was down (nothing could be written), and the step
    // did not move right after it came back either: only once the step's analysis got the
    // rounds it was missing, measured after the restart.
    let after = world.status().await;
    assert_eq!(after.current_step, Some(1));
    assert_eq!(world.weights().await, Some((50, 50)));
    let moved = eventually(
        "the 100% step after the restart",
        Duration::from_secs(60),
        || async { (world.weights().await == Some((0, 100))).then(Instant::now) },
    )
    .await;
    let fresh = world
        .analyzer
        .rounds()
        .iter()
        .filter(|(at, failed)| *at > back && *at < moved && !failed)
        .count();
    assert!(
        fresh + usize::try_from(measured_before).unwrap() >= 3,
        "moved to 100% with {fresh} round(s) after the restart and {measured_before} before"
    );

    assert_like_an_undisturbed_run(&world, &job, &weights).await;
    // The audit log spans the restart (the restarted API server appends to it), so "one Job
    // created" covers both API server processes.
    let audit = world.cluster.audit();
    let received: Vec<_> = audit
        .iter()
        .filter_map(|e| {
            e.request_received_timestamp
                .parse::<k8s_openapi::jiff::Timestamp>()
                .ok()
        })
        .collect();
    let now = k8s_openapi::jiff::Timestamp::now();
    let back_at = now - k8s_openapi::jiff::SignedDuration::try_from(back.elapsed()).unwrap();
    assert!(received.iter().any(|t| *t < back_at) && received.iter().any(|t| *t > back_at));
    recorder.abort();
    world.finish(operator).await;
    drop(own);
}

// ---------------------------------------------------------------- Prometheus outage

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_outage_within_the_error_limit_holds_the_step_then_promotes() {
    let _cost = cost("Prometheus down for 4 rounds at 10 %");
    let world = World::new("faults-prom-short").await;
    let operator = world.operator();
    let (weights, recorder) = record_weights(&world);
    let (analysis, analysis_recorder) = common::faults::record_analysis(&world.client, &world.ns);
    let job = drive_to_job(&world).await;
    world.complete_job(&job, 0.91).await;
    world.wait_weights("10% step", (90, 10), 2 * HOUR).await;

    // Four rounds of failed queries: the consecutive-error limit of the built-in metrics is 4
    // (a fifth in a row rolls back).
    world.analyzer.fail_next(4);
    let failed = |n: usize| {
        let world = &world;
        async move {
            world
                .clock
                .wait_for(&format!("{n} failed rounds"), HOUR, || async {
                    let failed: Vec<Instant> = world
                        .analyzer
                        .rounds()
                        .iter()
                        .filter(|(_, f)| *f)
                        .map(|(at, _)| *at)
                        .collect();
                    (failed.len() >= n).then(|| failed[n - 1])
                })
                .await
        }
    };
    failed(2).await;
    // The step's minute runs out during the outage: time alone does not move traffic.
    world.clock.advance(2 * MINUTE);
    let healed = failed(4).await;
    // Read after the last failed round: still at 10 % (weights only grow, so it did not move
    // during the outage).
    assert_eq!(
        world.weights().await,
        Some((90, 10)),
        "traffic moved during the outage"
    );
    let fifty = world
        .clock
        .wait_for("the watch sees the 50% step", HOUR, || async {
            first_seen(&weights, &(50, 50))
        })
        .await;
    let rounds = world.analyzer.rounds();
    assert_eq!(rounds.iter().filter(|(_, f)| *f).count(), 4);
    assert!(fifty > healed, "traffic moved during the outage");
    // The errors were recorded in the step's analysis, up to 4 in a row (within the limit).
    let step0: Vec<StepAnalysis> = values(&analysis)
        .into_iter()
        .filter(|a| a.0 == Phase::Progressing && a.1 == Some(0))
        .collect();
    let most_errors = step0.iter().map(|a| a.4).max().unwrap_or(0);
    assert!((1..=4).contains(&most_errors), "{step0:?}");
    // Errors never count as passes: the step needed its three passes, those it had before
    // the outage and the rest measured after it.
    let passes_before = step0.iter().find(|a| a.4 >= 1).map_or(0, |a| a.3);
    let passes_after = rounds
        .iter()
        .filter(|(at, f)| *at > healed && *at < fifty && !f)
        .count();
    assert!(
        passes_after + usize::try_from(passes_before).unwrap() >= 3,
        "moved on with {passes_before} pass(es) before the outage and {passes_after} after: {step0:?}"
    );

    assert_like_an_undisturbed_run(&world, &job, &weights).await;
    recorder.abort();
    analysis_recorder.abort();
    world.finish(operator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_outage_past_the_error_limit_rolls_back() {
    let _cost = cost("Prometheus down at 10 % for good");
    let world = World::new("faults-prom-long").await;
    let operator = world.operator();
    let (weights, recorder) = record_weights(&world);
    let job = drive_to_job(&world).await;
    world.complete_job(&job, 0.91).await;
    world.wait_weights("10% step", (90, 10), 2 * HOUR).await;
    world.analyzer.fail_queries(true);
    let s = world.wait_phase(Phase::RolledBack, HOUR).await;
    assert_eq!(s.history.len(), 1, "{:?}", s.history);
    assert_eq!(
        (s.history[0].outcome, s.history[0].reason),
        (RolloutOutcome::RolledBack, RolloutReason::AnalysisError)
    );
    assert_eq!(s.stable_version.as_deref(), Some("3"));
    // Five failed rounds in a row (one past the limit of 4) were needed.
    let failed = world.analyzer.rounds().iter().filter(|(_, f)| *f).count();
    assert!(failed >= 5, "rolled back after {failed} failed round(s)");
    assert_eq!(candidate_weights(&world, &weights).await, vec![0, 10, 0]);
    assert_eq!(world.registry.alias(MODEL, "champion"), Some(3));
    assert_eq!(world.jobs_created(), vec![job]);
    recorder.abort();
    world.finish(operator).await;
}

// -------------------------------------------------------------------- MLflow outage

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mlflow_outage_holds_evaluation_and_promotion_writes_are_retried() {
    let _cost = cost("MLflow down at evaluation and at promotion");
    let world = World::new("faults-mlflow").await;
    let operator = world.operator();
    let (weights, recorder) = record_weights(&world);
    let job = drive_to_job(&world).await;

    // Down while the Job ends: the candidate can be neither found nor evaluated.
    world.gate.set_down(true);
    world.complete_job(&job, 0.91).await;
    world.clock.sleep(3 * MINUTE).await;
    let held = world.status().await;
    assert!(
        matches!(held.phase, Phase::Retraining | Phase::Evaluating),
        "{:?}: {:?}",
        held.phase,
        held.message
    );
    assert_eq!(world.weights().await, Some((100, 0)));
    assert!(held.history.is_empty());
    world.gate.set_down(false);

    // Down again from the 100 % step: the promotion's MLflow writes fail and stay pending.
    world.wait_weights("100% step", (0, 100), 2 * HOUR).await;
    world.gate.set_down(true);
    let pending = world
        .clock
        .wait_for("promotion writes pending", HOUR, || async {
            let s = world.status().await;
            (!s.pending_registry_writes.is_empty()).then_some(s)
        })
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
    assert_eq!(world.registry.alias(MODEL, "champion"), Some(3));
    world.clock.sleep(2 * MINUTE).await;
    assert!(!world.status().await.pending_registry_writes.is_empty());
    world.gate.set_down(false);

    assert_like_an_undisturbed_run(&world, &job, &weights).await;
    let end = world
        .clock
        .wait_for("MLflow caught up", HOUR, || async {
            let s = world.status().await;
            s.pending_registry_writes.is_empty().then_some(s)
        })
        .await;
    assert_eq!(end.history.len(), 1);
    assert_eq!(
        world
            .registry
            .tag(MODEL, 4, "mlrollout.io/rollout")
            .as_deref(),
        Some("promoted")
    );
    recorder.abort();
    world.finish(operator).await;
}
