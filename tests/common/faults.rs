//! What the fault tests share (`tests/faults.rs`, the operator in the test process on test
//! doubles, and `tests/faults_process.rs`, real processes and servers): recorders of every
//! version of the route and of the step's analysis that a watch saw, the checks of "ends like
//! an undisturbed run", and each test's printed cost.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use gateway_api::httproutes::HttpRoute;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use mlrollout::api::{ModelDeployment, ModelDeploymentStatus, Phase, RolloutOutcome};

use super::world::{MODEL, route_weights};

/// Prints (past the test harness's capture) how long the test took, when it ends:
/// `<file>: <test> took N s`.
pub struct Cost(&'static str, &'static str, Instant);

impl Cost {
    pub fn start(file: &'static str, test: &'static str) -> Cost {
        Cost(file, test, Instant::now())
    }
}

impl Drop for Cost {
    fn drop(&mut self) {
        let _ = writeln!(
            std::io::stderr(),
            "{}: {} took {:.1} s",
            self.0,
            self.1,
            self.2.elapsed().as_secs_f64()
        );
    }
}

/// Every version of something a watch saw, with when the test saw it.
pub type Seen<T> = Arc<Mutex<Vec<(Instant, T)>>>;

/// Records the (stable, candidate) weights of each version of the HTTPRoute [`MODEL`] in
/// `namespace` (a watch that retries: it survives an API server restart, and re-lists after it).
pub fn record_weights(
    client: &kube::Client,
    namespace: &str,
) -> (Seen<(i32, i32)>, tokio::task::JoinHandle<()>) {
    let routes: Api<HttpRoute> = Api::namespaced(client.clone(), namespace);
    record(routes, route_weights)
}

/// What the status says about the analysis of the current step: (phase, step, rounds
/// recorded, fewest passes of a metric, most errors in a row of a metric).
pub type StepAnalysis = (Phase, Option<i32>, i32, i32, i32);

pub fn step_analysis(status: &ModelDeploymentStatus) -> StepAnalysis {
    let analysis = status.analysis.clone().unwrap_or_default();
    let passed = analysis.metrics.iter().map(|m| m.passed).min().unwrap_or(0);
    let errors = analysis
        .metrics
        .iter()
        .map(|m| m.consecutive_errors)
        .max()
        .unwrap_or(0);
    (
        status.phase,
        status.current_step,
        analysis.measurements,
        passed,
        errors,
    )
}

/// Records [`step_analysis`] of each version of the resource [`MODEL`] in `namespace`.
pub fn record_analysis(
    client: &kube::Client,
    namespace: &str,
) -> (Seen<StepAnalysis>, tokio::task::JoinHandle<()>) {
    let mdeps: Api<ModelDeployment> = Api::namespaced(client.clone(), namespace);
    record(mdeps, |m| {
        step_analysis(&m.status.clone().unwrap_or_default())
    })
}

/// Records `view` of each version of the object [`MODEL`] that a watch on `api` sees (a
/// value equal to the last one recorded is not recorded again).
pub fn record<K, T>(
    api: Api<K>,
    view: impl Fn(&K) -> T + Send + 'static,
) -> (Seen<T>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    T: PartialEq + Send + 'static,
{
    let seen: Seen<T> = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    let task = tokio::spawn(async move {
        let config = watcher::Config::default().fields(&format!("metadata.name={MODEL}"));
        let mut stream = watcher(api, config)
            .backoff(Retry200ms)
            .applied_objects()
            .boxed();
        while let Some(event) = stream.next().await {
            if let Ok(object) = event {
                let value = view(&object);
                let mut seen = out.lock().unwrap();
                if seen.last().map(|(_, v)| v) != Some(&value) {
                    seen.push((Instant::now(), value));
                }
            }
        }
    });
    (seen, task)
}

/// The recorders' watch retries every 200 ms (kube's default backoff grows to 30 s: after an
/// API server restart it would miss a whole step).
struct Retry200ms;

impl Iterator for Retry200ms {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(200))
    }
}

impl kube::runtime::utils::Backoff for Retry200ms {
    fn reset(&mut self) {}
}

pub fn values<T: Clone>(seen: &Seen<T>) -> Vec<T> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|(_, v)| v.clone())
        .collect()
}

/// When the recorder first saw `value`.
pub fn first_seen<T: PartialEq>(seen: &Seen<T>, value: &T) -> Option<Instant> {
    seen.lock()
        .unwrap()
        .iter()
        .find(|(_, v)| v == value)
        .map(|(at, _)| *at)
}

/// Every phase a full run passes through (a canary step by its index).
pub const EVERY_PHASE: [(Phase, Option<i32>); 7] = [
    (Phase::Retraining, None),
    (Phase::Evaluating, None),
    (Phase::Shadow, None),
    (Phase::Progressing, Some(0)),
    (Phase::Progressing, Some(1)),
    (Phase::Progressing, Some(2)),
    (Phase::Promoted, None),
];

/// Panics naming the first phase of a full run in which nothing was done to the operator
/// (`what`: "kill", "restart").
pub fn assert_every_phase(visited: &[(Phase, Option<i32>)], what: &str) {
    for phase in EVERY_PHASE {
        assert!(
            visited.contains(&phase),
            "no {what} in {phase:?}: {visited:?}"
        );
    }
}

/// The route's candidate weights an undisturbed run goes through: never backwards, never
/// skipping a step (10 → 50 → 100 %), and back on stable once it serves the new version.
pub const UNDISTURBED_WEIGHTS: [i32; 5] = [0, 10, 50, 100, 0];

/// The candidate's weights the recorder saw, in order, once it saw the route back on stable
/// (`None` before that); every version of the route splits 100 % between the two.
pub fn candidate_weights(seen: &Seen<(i32, i32)>) -> Option<Vec<i32>> {
    let all = values(seen);
    if all.last() != Some(&(100, 0)) || all.len() < 2 {
        return None;
    }
    assert!(all.iter().all(|(s, c)| s + c == 100), "{all:?}");
    Some(all.iter().map(|(_, c)| *c).collect())
}

/// What an undisturbed run ends with on the cluster: `candidate` promoted and stable, one
/// retraining attempt, one Job (`jobs`: those that exist; `created`: those the API server's
/// audit log says were created, so a Job created and deleted again would show), one history
/// entry (`Promoted`).
pub fn assert_undisturbed_end(
    end: &ModelDeploymentStatus,
    candidate: &str,
    job: &str,
    jobs: &[String],
    created: &[String],
) {
    assert_eq!(end.phase, Phase::Stable);
    assert_eq!(end.stable_version.as_deref(), Some(candidate));
    assert_eq!(end.candidate_version, None);
    assert_eq!(
        end.retraining_attempts.len(),
        1,
        "{:?}",
        end.retraining_attempts
    );
    assert_eq!(end.history.len(), 1, "{:?}", end.history);
    assert_eq!(end.history[0].outcome, RolloutOutcome::Promoted);
    assert_eq!(end.history[0].candidate_version, candidate);
    assert_eq!(jobs, [job.to_string()]);
    assert_eq!(created, [job.to_string()]);
}
