//! Property tests of the lifecycle invariants (see the module doc), driven through the whole
//! decision ([`crate::core::decide::decide`]) so the traffic objects are checked too.
//!
//! A random spec and a random story (drift checks, Job states, lineage lookups, evaluation
//! metrics, measurements, readiness, registry outages and hand-moved aliases, manual requests,
//! a clock advancing by random ticks) are replayed the way the shell would: observations are
//! only taken when [`wants`] asks for them, and registry writes are applied (or not) after
//! each decision. An independent model of each rollout is built from the decisions' events
//! and checked against the status.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::json;

use super::*;
use crate::core::verdict::builtin::{effective_canary_metrics, shadow_metrics};
use crate::core::verdict::{AnalysisStage, MetricMeasurement, Verdict};
use strum::IntoEnumIterator;

use crate::api::validation::ValidatedSpec;
use crate::api::{
    AnalysisMetric, AnalysisSpec, AnalysisStatus, AttemptOutcome, CandidateSource, DeferredTrigger,
    EvaluationStatus, EventReason, MetricStatus, ModelDeploymentSpec, ModelDeploymentStatus,
    PauseReason, Phase, Reason, RegistryOp, RegistryWrite, RetrainingAttempt, RolloutOutcome,
    RolloutReason, RolloutRecord, Severity, TrafficProvider, Trigger,
};
use crate::core::decide::{Child, Decision, EventCause, Observed};
use crate::registry::{LINEAGE_TAG, RegistryError, ResolvedModel};
use crate::simulate::{Harness, Identity, Readiness};

const NAME: &str = "fraud";
const UID: &str = "0123456789abcdef";
const T0: i64 = 1_800_000_000;
const MAX_TICKS: usize = 60;

fn config(cases: u32) -> Config {
    Config {
        cases,
        // Never write regression files into the source tree.
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Random specs
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct AnalysisParams {
    interval: u64,
    count: i32,
    rollback_on_inconclusive: bool,
    /// Custom metrics as (failureLimit, inconclusiveLimit, consecutiveErrorLimit); empty means
    /// the built-in metrics.
    metrics: Vec<(i32, i32, i32)>,
}

#[derive(Debug, Clone)]
struct RetrainParams {
    cooldown: u64,
    budget: i32,
    timeout: u64,
}

#[derive(Debug, Clone)]
struct SpecParams {
    steps: Vec<i32>,
    step_duration: u64,
    shadow: bool,
    shadow_duration: u64,
    mirror: i32,
    /// 0 gatewayAPI, 1 istio, 2 none.
    provider: u8,
    deadline: u64,
    analysis: Option<AnalysisParams>,
    retraining: Option<RetrainParams>,
    lower_is_better: bool,
    min_improvement: f64,
}

fn secs(s: u64) -> String {
    format!("{s}s")
}

impl SpecParams {
    fn spec(&self) -> ModelDeploymentSpec {
        let traffic = match self.provider {
            0 => json!({"provider": "gatewayAPI", "parentRefs": [{"name": "gw"}]}),
            1 => json!({"provider": "istio", "hostnames": ["fraud.example.com"]}),
            _ => json!({"provider": "none"}),
        };
        let mut value = json!({
            "model": {"trackingUri": "http://mlflow:5000", "name": "fraud", "alias": "champion"},
            "traffic": traffic,
            "drift": {"reference": {"uri": "r.csv"}, "current": {"uri": "c.csv"}, "interval": "2m"},
            "evaluation": {
                "metric": "accuracy",
                "direction": if self.lower_is_better { "lowerIsBetter" } else { "higherIsBetter" },
                "minImprovement": self.min_improvement
            },
            "shadow": {"enabled": self.shadow, "mirrorPercent": self.mirror, "duration": secs(self.shadow_duration)},
            "rollout": {
                "steps": self.steps,
                "stepDuration": secs(self.step_duration),
                "progressDeadline": secs(self.deadline)
            }
        });
        if let Some(a) = &self.analysis {
            let metrics: Vec<_> = a
                .metrics
                .iter()
                .enumerate()
                .map(|(i, (failure, inconclusive, errors))| {
                    json!({
                        "name": format!("m{i}"),
                        "query": "q",
                        "max": 1.0,
                        "failureLimit": failure,
                        "inconclusiveLimit": inconclusive,
                        "consecutiveErrorLimit": errors
                    })
                })
                .collect();
            value["rollout"]["analysis"] = json!({
                "prometheus": {"address": "http://prometheus:9090"},
                "interval": secs(a.interval),
                "count": a.count,
                "onInconclusive": if a.rollback_on_inconclusive { "rollback" } else { "pause" },
                "metrics": metrics
            });
        }
        if let Some(r) = &self.retraining {
            value["retraining"] = json!({
                "triggers": {"driftSeverity": "high", "accuracyBelow": 0.8, "newSamples": 5000},
                "cooldown": secs(r.cooldown),
                "maxAttemptsPerDay": r.budget,
                "timeout": secs(r.timeout),
                "jobTemplate": {"template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "train", "image": "train:1"}]
                }}}
            });
        }
        serde_json::from_value(value).expect("generated spec deserializes")
    }

    fn shadow_runs(&self) -> bool {
        self.shadow && self.provider != 2
    }
}

/// Strictly increasing percentages ending at 100.
fn steps() -> impl Strategy<Value = Vec<i32>> {
    vec(1..100i32, 0..5).prop_map(|mut v| {
        v.sort_unstable();
        v.dedup();
        v.push(100);
        v
    })
}

fn duration() -> impl Strategy<Value = u64> {
    prop::sample::select(vec![0u64, 30, 60, 120, 300, 600])
}

fn analysis() -> impl Strategy<Value = AnalysisParams> {
    (
        prop::sample::select(vec![10u64, 30, 60]),
        1..5i32,
        any::<bool>(),
        prop_oneof![Just(vec![]), vec((0..3i32, 0..3i32, 0..4i32), 1..4)],
    )
        .prop_map(
            |(interval, count, rollback_on_inconclusive, metrics)| AnalysisParams {
                interval,
                count,
                rollback_on_inconclusive,
                metrics,
            },
        )
}

fn retraining() -> impl Strategy<Value = RetrainParams> {
    (
        prop::sample::select(vec![0u64, 60, 600, 3600, 21_600]),
        1..6i32,
        prop::sample::select(vec![300u64, 3600, 7200]),
    )
        .prop_map(|(cooldown, budget, timeout)| RetrainParams {
            cooldown,
            budget,
            timeout,
        })
}

fn spec_params() -> impl Strategy<Value = SpecParams> {
    (
        (
            steps(),
            duration(),
            prop::bool::weighted(0.7),
            duration(),
            prop::sample::select(vec![0, 10, 50, 100]),
        ),
        (
            0..3u8,
            prop::sample::select(vec![60u64, 300, 1800]),
            prop::option::weighted(0.7, analysis()),
            prop::option::weighted(0.8, retraining()),
            any::<bool>(),
            prop::sample::select(vec![0.0, 0.005, 0.25]),
        ),
    )
        .prop_map(
            |(
                (steps, step_duration, shadow, shadow_duration, mirror),
                (provider, deadline, analysis, retraining, lower_is_better, min_improvement),
            )| SpecParams {
                steps,
                step_duration,
                shadow,
                shadow_duration,
                mirror,
                provider,
                deadline,
                analysis,
                retraining,
                lower_is_better,
                min_improvement,
            },
        )
}

// ---------------------------------------------------------------------------------------------
// Random stories
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Manual {
    Abort,
    Retry,
    Retrain,
    Resume,
    PromoteNext,
    PromoteFull,
}

#[derive(Debug, Clone)]
struct Tick {
    advance: u64,
    /// 0 ok, 1 medium, 2 high, 3 the check failed.
    drift: u8,
    accuracy: Option<f64>,
    new_rows: i64,
    /// 0 running, 1 succeeded, 2 failed, 3 missing.
    job: u8,
    /// 0 found, 1 not found, 2 error.
    lookup: u8,
    /// 0 both metrics, 1 error, 2 no candidate metric, 3 no champion metric.
    evaluation: u8,
    delta: f64,
    /// One per metric, 0..100: < 82 passed, < 88 failed, < 94 inconclusive, else error.
    verdicts: Vec<u8>,
    stable_ready: bool,
    candidate_ready: bool,
    /// 0 normal, 1 outage, 2 someone moves the alias to a new version by hand.
    registry: u8,
    writes_ok: bool,
    manual: Option<Manual>,
    toggle_pause: bool,
    advisor: bool,
    /// A due measurement is taken even though the candidate is not ready (it became unready
    /// while being measured); the lifecycle must not record it.
    measure_unready: bool,
}

fn manual(allow_promote: bool) -> impl Strategy<Value = Option<Manual>> {
    let mut kinds = vec![
        Manual::Abort,
        Manual::Retry,
        Manual::Retrain,
        Manual::Resume,
    ];
    if allow_promote {
        kinds.extend([Manual::PromoteNext, Manual::PromoteFull]);
    }
    prop::option::weighted(0.08, prop::sample::select(kinds))
}

fn tick(allow_promote: bool) -> impl Strategy<Value = Tick> {
    (
        (
            prop::sample::select(vec![1u64, 10, 30, 60, 60, 120, 300, 900]),
            prop_oneof![6 => Just(0u8), 2 => Just(1u8), 3 => Just(2u8), 1 => Just(3u8)],
            prop::option::weighted(0.3, 0.6..1.0f64),
            0..3000i64,
            prop_oneof![7 => Just(0u8), 10 => Just(1u8), 2 => Just(2u8), 1 => Just(3u8)],
            prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
            prop_oneof![16 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8)],
            -0.1..0.3f64,
        ),
        (
            vec(0..100u8, 3),
            prop::bool::weighted(0.85),
            prop::bool::weighted(0.85),
            prop_oneof![17 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8)],
            prop::bool::weighted(0.8),
            manual(allow_promote),
            prop::bool::weighted(0.04),
            prop::bool::weighted(0.05),
            prop::bool::weighted(0.3),
        ),
    )
        .prop_map(
            |(
                (advance, drift, accuracy, new_rows, job, lookup, evaluation, delta),
                (
                    verdicts,
                    stable_ready,
                    candidate_ready,
                    registry,
                    writes_ok,
                    manual,
                    toggle_pause,
                    advisor,
                    measure_unready,
                ),
            )| Tick {
                advance,
                drift,
                accuracy,
                new_rows,
                job,
                lookup,
                evaluation,
                delta,
                verdicts,
                stable_ready,
                candidate_ready,
                registry,
                writes_ok,
                manual,
                toggle_pause,
                advisor,
                measure_unready,
            },
        )
}

fn story(allow_promote: bool) -> impl Strategy<Value = (SpecParams, Vec<Tick>)> {
    (spec_params(), vec(tick(allow_promote), 1..=MAX_TICKS))
}

fn verdict(v: u8) -> Verdict {
    match v {
        0..82 => Verdict::Passed,
        82..88 => Verdict::Failed,
        88..94 => Verdict::Inconclusive,
        _ => Verdict::Error,
    }
}

fn stage_metrics(spec: &ModelDeploymentSpec, stage: AnalysisStage) -> Vec<AnalysisMetric> {
    match stage {
        AnalysisStage::Shadow => shadow_metrics(&spec.shadow),
        AnalysisStage::Canary => effective_canary_metrics(
            spec.rollout
                .analysis
                .as_ref()
                .map(|a| a.metrics.as_slice())
                .unwrap_or(&[]),
        ),
    }
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(T0 + seconds).unwrap()
}

fn since(later: Timestamp, earlier: Timestamp) -> Duration {
    Duration::try_from(later.duration_since(earlier)).unwrap_or(Duration::ZERO)
}

// ---------------------------------------------------------------------------------------------
// The independent rollout model
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Shadow,
    Step(usize),
    /// Promoted, waiting for the new stable.
    Done,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Counters {
    failed: i32,
    inconclusive: i32,
    consecutive_errors: i32,
}

#[derive(Debug, Clone)]
struct Rollout {
    source: Option<CandidateSource>,
    evaluation_passed: bool,
    shadow_passed: bool,
    steps_passed: usize,
    stage: Stage,
    stage_started: Timestamp,
    measurements: i32,
    metrics: BTreeMap<String, Counters>,
}

impl Rollout {
    fn enter(&mut self, stage: Stage, now: Timestamp) {
        self.stage = stage;
        self.restart(now);
    }

    fn restart(&mut self, now: Timestamp) {
        self.stage_started = now;
        self.measurements = 0;
        self.metrics.clear();
    }

    fn record(&mut self, round: &[MetricMeasurement]) {
        self.measurements += 1;
        for m in round {
            let c = self.metrics.entry(m.name.clone()).or_default();
            match m.verdict {
                Verdict::Failed => c.failed += 1,
                Verdict::Inconclusive => c.inconclusive += 1,
                _ => {}
            }
            if m.verdict == Verdict::Error {
                c.consecutive_errors += 1;
            } else {
                c.consecutive_errors = 0;
            }
        }
    }

    /// Whether the current shadow phase or step may be left upward now.
    fn gate(
        &self,
        now: Timestamp,
        minimum: Duration,
        analysis: Option<&AnalysisSpec>,
        metrics: &[AnalysisMetric],
        candidate_ready: bool,
    ) -> Result<(), String> {
        if !candidate_ready {
            return Err("left while the candidate was not ready".into());
        }
        let age = since(now, self.stage_started);
        if age < minimum {
            return Err(format!(
                "left after {age:?}, before its duration {minimum:?}"
            ));
        }
        if let Some(a) = analysis {
            if self.measurements < a.count.max(1) {
                return Err(format!(
                    "left after {} measurements, count is {}",
                    self.measurements, a.count
                ));
            }
            for m in metrics {
                let c = self.metrics.get(&m.name).cloned().unwrap_or_default();
                if c.failed > m.failure_limit
                    || c.inconclusive > m.inconclusive_limit
                    || c.consecutive_errors > m.consecutive_error_limit
                {
                    return Err(format!("left with metric {} past a limit: {c:?}", m.name));
                }
            }
        }
        Ok(())
    }
}

/// Lifecycle events the model follows (conditions' events are ignored).
const LIFECYCLE: &[EventReason] = &[
    EventReason::CandidateFromRegistry,
    EventReason::Retry,
    EventReason::EvaluationPassed,
    EventReason::ShadowStarted,
    EventReason::ShadowPassed,
    EventReason::StepStarted,
    EventReason::Resumed,
    EventReason::ManualPromotion,
    EventReason::Promoted,
    EventReason::PromotionComplete,
    EventReason::RolledBack,
];

#[derive(Debug, Default, Clone)]
struct Stats {
    ticks: usize,
    rollouts: usize,
    steps_left: usize,
    /// Shadow phases and steps left through a checked analysis gate.
    analysed: usize,
    promotions: usize,
    rollbacks: usize,
    attempts: usize,
}

/// What a story checks beyond "no panic" and the traffic invariants.
#[derive(Debug, Clone, Copy)]
struct Checks {
    /// Step order, analysis gates and promotion gates (no manual promote in the story).
    gates: bool,
    /// Decide every tick twice and compare.
    determinism: bool,
}

// ---------------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------------

/// The resource the stories reconcile.
fn identity() -> Identity {
    Identity {
        name: NAME.into(),
        namespace: "ml".into(),
        uid: UID.into(),
        generation: 1,
    }
}

fn in_rollout(phase: Phase) -> bool {
    matches!(phase, Phase::Shadow | Phase::Progressing | Phase::Promoted)
}

fn fail<T>(message: String) -> Result<T, String> {
    Err(message)
}

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return fail(format!($($arg)+));
        }
    };
}

/// (stable weight, candidate weight or None, mirror percent or None) of the decided route.
fn route(
    decision: &Decision,
    provider: TrafficProvider,
) -> Option<(i32, Option<i32>, Option<i32>)> {
    let apply = decision.apply.as_ref()?;
    match provider {
        TrafficProvider::GatewayApi => apply.iter().find_map(|c| match c {
            Child::HttpRoute(r) => {
                let rule = &r.spec.rules.as_ref()?[0];
                let backends = rule.backend_refs.as_ref()?;
                let weight = |suffix: &str| {
                    backends
                        .iter()
                        .find(|b| b.name.ends_with(suffix))
                        .map(|b| b.weight.unwrap_or(1))
                };
                let mirror = rule
                    .filters
                    .as_ref()
                    .and_then(|f| f.first())
                    .and_then(|f| f.request_mirror.as_ref())
                    .and_then(|m| m.percent);
                Some((weight("-stable")?, weight("-candidate"), mirror))
            }
            _ => None,
        }),
        TrafficProvider::Istio => apply.iter().find_map(|c| match c {
            Child::VirtualService(vs) => {
                let http = &vs.data["spec"]["http"][0];
                let routes = http["route"].as_array()?;
                let weight = |suffix: &str| {
                    routes
                        .iter()
                        .find(|r| {
                            r["destination"]["host"]
                                .as_str()
                                .is_some_and(|h| h.starts_with(&format!("{NAME}{suffix}.")))
                        })
                        .and_then(|r| r["weight"].as_i64())
                        .map(|w| w as i32)
                };
                let mirror = http["mirrorPercentage"]["value"].as_f64().map(|v| v as i32);
                Some((weight("-stable")?, weight("-candidate"), mirror))
            }
            _ => None,
        }),
        TrafficProvider::None => None,
    }
}

/// Traffic invariants of one decision.
fn check_traffic(spec: &ModelDeploymentSpec, decision: &Decision) -> Result<(), String> {
    let s = &decision.status;
    let Some(traffic) = decision.traffic.as_ref() else {
        return fail("a valid spec with a stable version decides the traffic".into());
    };
    ensure!(
        (traffic.canary_weight, traffic.mirror_percent) == (s.canary_weight, s.mirror_percent),
        "traffic {traffic:?} disagrees with the status ({}%, mirror {}%)",
        s.canary_weight,
        s.mirror_percent
    );
    ensure!(
        traffic.candidate_version.is_none() || traffic.candidate_version == s.candidate_version,
        "traffic to candidate {:?}, status candidate {:?}",
        traffic.candidate_version,
        s.candidate_version
    );
    let steps = &spec.rollout.steps;
    ensure!(
        s.canary_weight == 0 || steps.contains(&s.canary_weight),
        "canary weight {} is neither 0 nor a step of {steps:?}",
        s.canary_weight
    );
    ensure!(
        s.mirror_percent == 0
            || (s.phase == Phase::Shadow && s.mirror_percent == spec.shadow.mirror_percent),
        "mirror {}% in phase {:?}",
        s.mirror_percent,
        s.phase
    );
    let candidate_exists = traffic.has_candidate();
    ensure!(
        candidate_exists || s.canary_weight == 0,
        "canary weight {} without a candidate in phase {:?}",
        s.canary_weight,
        s.phase
    );
    let Some(apply) = decision.apply.as_ref() else {
        return fail("a valid spec with a stable version applies children".into());
    };
    if spec.traffic.provider == TrafficProvider::None {
        ensure!(
            !apply
                .iter()
                .any(|c| matches!(c, Child::HttpRoute(_) | Child::VirtualService(_))),
            "no route without a router"
        );
        return Ok(());
    }
    let Some((stable, candidate, mirror)) = route(decision, spec.traffic.provider) else {
        return fail("no route decided".into());
    };
    ensure!(
        stable + candidate.unwrap_or(0) == 100,
        "route weights {stable} + {candidate:?} do not sum to 100"
    );
    ensure!(
        candidate.is_some() == candidate_exists,
        "candidate backend {candidate:?} but candidate exists = {candidate_exists}"
    );
    if let Some(w) = candidate {
        ensure!(
            w == s.canary_weight,
            "route candidate weight {w} != status.canaryWeight {}",
            s.canary_weight
        );
    }
    let expected_mirror = (candidate_exists && s.mirror_percent > 0).then_some(s.mirror_percent);
    ensure!(
        mirror == expected_mirror,
        "route mirror {mirror:?}, expected {expected_mirror:?}"
    );
    Ok(())
}

/// A random story played through the simulated shell ([`Harness`]): the story scripts the
/// world (registry outages and hand-moved aliases, manual requests, drift, Jobs, lookups,
/// evaluation metrics, measurements, readiness, failing registry writes) and follows every
/// decision with the independent rollout model.
struct Story<'a> {
    params: &'a SpecParams,
    /// The simulated cluster and registry around the core.
    harness: Harness,
    checks: Checks,
    /// The next version number the registry hands out.
    next_version: u64,
    /// Rows in the current data (for the `newSamples` trigger).
    rows: i64,
    pause_annotation: bool,
    rollout: Option<Rollout>,
    stats: Stats,
}

impl<'a> Story<'a> {
    fn new(params: &'a SpecParams, checks: Checks) -> Self {
        let readiness = Readiness::Scripted {
            stable: false,
            candidate: false,
        };
        let harness = Harness::new(identity(), params.spec(), readiness);
        harness.register(3, &BTreeMap::new(), &[]);
        harness.set_alias(&harness.spec().model.alias, 3);
        Story {
            params,
            harness,
            checks,
            next_version: 4,
            rows: 100_000,
            pause_annotation: false,
            rollout: None,
            stats: Stats::default(),
        }
    }

    fn spec(&self) -> &ModelDeploymentSpec {
        self.harness.spec()
    }

    fn valid(&self) -> Result<&ValidatedSpec, String> {
        self.harness
            .validated()
            .as_ref()
            .map_err(|problems| format!("the generated spec is invalid: {problems:?}"))
    }

    fn play(&mut self, ticks: &[Tick]) -> Result<Stats, String> {
        // The first reconcile adopts the served version as stable.
        self.harness.advance_to(at(0));
        self.harness.reconcile(Observations::default());
        let status = self.harness.status();
        if status.phase != Phase::Stable || status.stable_version.as_deref() != Some("3") {
            return fail(format!(
                "first reconcile did not adopt version 3: {:?}",
                status.phase
            ));
        }
        for (i, tick) in ticks.iter().enumerate() {
            self.tick(i, tick).map_err(|e| {
                format!("tick {i} at +{}s: {e}", self.harness.now().as_second() - T0)
            })?;
        }
        Ok(self.stats.clone())
    }

    fn tick(&mut self, index: usize, t: &Tick) -> Result<(), String> {
        let now = self
            .harness
            .now()
            .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(
                t.advance as i64,
            ))
            .unwrap();
        let pre = self.harness.status().clone();
        self.script_registry(t);
        let manual_tick = self.script_annotations(index, t, &pre);
        self.harness.set_readiness(Readiness::Scripted {
            stable: t.stable_ready,
            candidate: t.candidate_ready,
        });
        self.harness.advance_to(now);
        self.valid()?;
        let candidate_ready = self.harness.candidate_ready();
        let (observations, round) = self.observations(t, candidate_ready, manual_tick);
        let observed = self.harness.observed(observations);
        let decision = self.harness.decide(observed.clone());
        if self.checks.determinism {
            let again = self.harness.decide(observed.clone());
            ensure!(again == decision, "the same input decided differently");
            let step_input = StepInput {
                name: NAME,
                uid: UID,
                generation: Some(1),
                spec: self.valid()?,
                status: &pre,
                observed: &observed.lifecycle,
                now,
            };
            ensure!(
                step(step_input.clone()) == step(step_input),
                "step is not deterministic"
            );
        }
        self.stats.ticks += 1;

        check_traffic(self.spec(), &decision)?;
        self.follow(
            &pre,
            &decision,
            round.as_deref(),
            candidate_ready,
            manual_tick,
        )?;
        self.check_rollback(&decision)?;
        self.check_weight_moves(&decision.traffic.clone().unwrap_or_default())?;

        // The shell writes to the registry after applying the children; the writes fail
        // when the story says so.
        self.harness.set_registry_outage(!t.writes_ok);
        self.harness.apply(&decision);
        self.stats.attempts = self
            .stats
            .attempts
            .max(self.harness.status().retraining_attempts.len());
        Ok(())
    }

    /// The registry is down, or someone moves the alias to a new version by hand.
    fn script_registry(&mut self, t: &Tick) {
        self.harness.set_registry_outage(t.registry == 1);
        if t.registry == 2 {
            let version = self.next_version;
            self.next_version += 1;
            self.harness.register(version, &BTreeMap::new(), &[]);
            let alias = self.spec().model.alias.clone();
            self.harness.set_alias(&alias, version);
        }
    }

    /// Manual input (annotations, as a person with the CLI would set them); returns whether
    /// this tick carries a manual request or a pause change.
    fn script_annotations(&mut self, index: usize, t: &Tick, pre: &ModelDeploymentStatus) -> bool {
        let nonce = format!("t{index}");
        if let Some(m) = t.manual {
            let (key, value) = match m {
                Manual::Abort => (manual::ABORT, nonce.clone()),
                Manual::Retry => (manual::RETRY, nonce.clone()),
                Manual::Retrain => (manual::RETRAIN, nonce.clone()),
                Manual::Resume => (manual::RESUME, nonce.clone()),
                Manual::PromoteNext => (manual::PROMOTE, format!("next@{nonce}")),
                Manual::PromoteFull => (manual::PROMOTE, format!("full@{nonce}")),
            };
            self.harness.annotate(key, Some(value));
        }
        if t.toggle_pause {
            self.pause_annotation = !self.pause_annotation;
        }
        self.harness.annotate(
            manual::PAUSE,
            self.pause_annotation.then(|| "true".to_string()),
        );
        let manual_pause = pre.pause_reason == Some(PauseReason::Manual);
        t.manual.is_some()
            || (self.pause_annotation && !pre.paused)
            || (!self.pause_annotation && pre.paused && manual_pause)
    }

    /// Observations, taken only when the lifecycle wants them; also returns the round of
    /// measurements (kept apart so the model knows what was recorded before which event).
    fn observations(
        &mut self,
        t: &Tick,
        candidate_ready: bool,
        manual_tick: bool,
    ) -> (Observations, Option<Vec<MetricMeasurement>>) {
        let wants = self.harness.wants();
        let mut o = Observations {
            advisor_recommends: t.advisor,
            ..Default::default()
        };
        if wants.drift_check {
            self.rows += t.new_rows;
            o.drift = Some(drift_observation(t, self.rows));
        }
        if wants.job.is_some() {
            let state = match t.job {
                0 => JobState::Running,
                1 => JobState::Succeeded,
                2 => JobState::Failed("BackoffLimitExceeded".into()),
                _ => JobState::Missing,
            };
            if state == JobState::Succeeded
                && let Some(attempt_id) = &wants.candidate_lookup
            {
                o.candidate_lookup = Some(self.lookup(t, attempt_id));
            }
            o.job = Some(state);
        }
        if wants.evaluation.is_some() {
            o.evaluation = Some(evaluation(t, self.params.lower_is_better));
        }
        // No measurement on a manual tick: the model follows one kind of change per tick.
        let round = wants
            .measure
            .filter(|_| (candidate_ready || t.measure_unready) && !manual_tick)
            .map(|stage| measurements(self.spec(), stage, &t.verdicts));
        o.measurements = round.clone();
        (o, round)
    }

    /// The lineage lookup after a succeeded Job: found (the Job registered a new, tagged
    /// version), not found, or MLflow failing.
    fn lookup(&mut self, t: &Tick, attempt_id: &str) -> CandidateLookup {
        match t.lookup {
            0 => {
                let version = self.next_version;
                self.next_version += 1;
                self.harness
                    .register(version, &BTreeMap::new(), &[(LINEAGE_TAG, attempt_id)]);
                CandidateLookup::Found(version.to_string())
            }
            1 => CandidateLookup::NotFound,
            _ => CandidateLookup::Error("MLflow 503".into()),
        }
    }
}

/// A drift check's result as the tick tells it.
fn drift_observation(t: &Tick, rows: i64) -> DriftObservation {
    match t.drift {
        3 => DriftObservation::Failed {
            reason: Reason::DataUnreachable,
            message: "404".into(),
        },
        s => DriftObservation::Completed {
            summary: DriftSummary {
                severity: [Severity::Ok, Severity::Medium, Severity::High][s as usize],
                drift_detected: s > 0,
                drifted_share: f64::from(s) / 2.0,
                accuracy: t.accuracy,
                ..Default::default()
            },
            sample_count: Some(rows),
        },
    }
}

/// The evaluation metrics as the tick tells them: the candidate `delta` better than a
/// champion at 0.8 (worse for a negative delta), or one of them missing, or MLflow failing.
fn evaluation(t: &Tick, lower_is_better: bool) -> EvaluationObservation {
    let champion = 0.8;
    let candidate = if lower_is_better {
        champion - t.delta
    } else {
        champion + t.delta
    };
    match t.evaluation {
        0 => EvaluationObservation::Metrics {
            candidate: Some(candidate),
            champion: Some(champion),
        },
        1 => EvaluationObservation::Error("MLflow 503".into()),
        2 => EvaluationObservation::Metrics {
            candidate: None,
            champion: Some(champion),
        },
        _ => EvaluationObservation::Metrics {
            candidate: Some(candidate),
            champion: None,
        },
    }
}

/// One round of measurements of every metric of `stage`, with the tick's verdicts.
fn measurements(
    spec: &ModelDeploymentSpec,
    stage: AnalysisStage,
    verdicts: &[u8],
) -> Vec<MetricMeasurement> {
    stage_metrics(spec, stage)
        .iter()
        .zip(verdicts.iter().cycle())
        .map(|(m, v)| {
            let verdict = verdict(*v);
            MetricMeasurement {
                name: m.name.clone(),
                verdict,
                candidate: matches!(verdict, Verdict::Passed | Verdict::Failed).then_some(0.5),
                stable: Some(0.5),
                threshold: "t".into(),
                error: (verdict == Verdict::Error).then(|| "timeout".into()),
            }
        })
        .collect()
}

impl Story<'_> {
    /// Follows the decision's lifecycle events in order with the independent rollout model.
    fn follow(
        &mut self,
        pre: &ModelDeploymentStatus,
        decision: &Decision,
        round: Option<&[MetricMeasurement]>,
        candidate_ready: bool,
        manual_tick: bool,
    ) -> Result<(), String> {
        let spec = self.harness.spec();
        let post = &decision.status;
        let now = self.harness.now();
        let strict = self.checks.gates;
        let analysis = spec.rollout.analysis.as_ref();
        let steps = spec.rollout.steps.len();
        let timing = &self.valid()?.timing;
        let step_duration = timing.rollout.step_duration;
        let shadow_duration = timing.shadow_duration;

        // The phase function runs first (no manual event on a tick with measurements).
        if let (Some(r), Some(round)) = (self.rollout.as_mut(), round)
            && analysis.is_some()
            && !pre.paused
            && candidate_ready
            && matches!(pre.phase, Phase::Shadow | Phase::Progressing)
        {
            ensure!(!manual_tick, "measurements were delivered on a manual tick");
            r.record(round);
        }

        let mut source = None;
        let mut manual_promotion = false;
        let mut shadow_passed_now = false;
        let lifecycle_events = decision.events.iter().filter_map(|e| match e.reason {
            EventCause::Lifecycle(reason) if LIFECYCLE.contains(&reason) => Some(reason),
            _ => None,
        });
        for reason in lifecycle_events {
            match reason {
                EventReason::CandidateFromRegistry => source = Some(CandidateSource::Registry),
                EventReason::Retry => source = Some(CandidateSource::Retry),
                EventReason::EvaluationPassed => source = Some(CandidateSource::Retraining),
                EventReason::ManualPromotion => manual_promotion = true,
                EventReason::ShadowStarted => {
                    ensure!(
                        self.rollout.is_none(),
                        "a shadow phase started inside a rollout"
                    );
                    self.stats.rollouts += 1;
                    self.rollout = Some(Rollout {
                        source,
                        evaluation_passed: source == Some(CandidateSource::Retraining),
                        shadow_passed: false,
                        steps_passed: 0,
                        stage: Stage::Shadow,
                        stage_started: now,
                        measurements: 0,
                        metrics: BTreeMap::new(),
                    });
                }
                EventReason::ShadowPassed => {
                    let Some(r) = self.rollout.as_mut() else {
                        return fail("ShadowPassed outside a rollout".into());
                    };
                    ensure!(
                        r.stage == Stage::Shadow,
                        "ShadowPassed in stage {:?}",
                        r.stage
                    );
                    r.gate(
                        now,
                        shadow_duration,
                        analysis,
                        &stage_metrics(spec, AnalysisStage::Shadow),
                        candidate_ready,
                    )
                    .map_err(|e| format!("shadow {e}"))?;
                    self.stats.analysed += usize::from(strict && analysis.is_some());
                    r.shadow_passed = true;
                    shadow_passed_now = true;
                }
                EventReason::StepStarted => match self.rollout.as_mut() {
                    None => {
                        self.stats.rollouts += 1;
                        self.rollout = Some(Rollout {
                            source,
                            evaluation_passed: source == Some(CandidateSource::Retraining),
                            shadow_passed: false,
                            steps_passed: 0,
                            stage: Stage::Step(0),
                            stage_started: now,
                            measurements: 0,
                            metrics: BTreeMap::new(),
                        });
                    }
                    Some(r) => {
                        match r.stage {
                            Stage::Shadow => {
                                ensure!(
                                    !strict || shadow_passed_now,
                                    "the shadow phase ended without passing"
                                );
                            }
                            Stage::Step(i) => {
                                if strict {
                                    ensure!(
                                        !manual_promotion,
                                        "manual promotion in a strict story"
                                    );
                                    r.gate(
                                        now,
                                        step_duration,
                                        analysis,
                                        &stage_metrics(spec, AnalysisStage::Canary),
                                        candidate_ready,
                                    )
                                    .map_err(|e| format!("step {i} {e}"))?;
                                    self.stats.analysed +=
                                        usize::from(strict && analysis.is_some());
                                }
                                r.steps_passed += 1;
                                self.stats.steps_left += 1;
                            }
                            Stage::Done => return fail("a step started after promotion".into()),
                        }
                        let next = match r.stage {
                            Stage::Step(i) => i + 1,
                            _ => 0,
                        };
                        ensure!(next < steps, "step index {next} past the {steps} steps");
                        r.enter(Stage::Step(next), now);
                    }
                },
                EventReason::Resumed => {
                    if let Some(r) = self.rollout.as_mut() {
                        r.restart(now);
                    }
                }
                EventReason::Promoted => {
                    let Some(r) = self.rollout.as_mut() else {
                        return fail("Promoted outside a rollout".into());
                    };
                    if strict {
                        ensure!(
                            r.stage == Stage::Step(steps - 1),
                            "promoted from {:?}",
                            r.stage
                        );
                        r.gate(
                            now,
                            step_duration,
                            analysis,
                            &stage_metrics(spec, AnalysisStage::Canary),
                            candidate_ready,
                        )
                        .map_err(|e| format!("last step {e}"))?;
                        self.stats.analysed += usize::from(strict && analysis.is_some());
                        r.steps_passed += 1;
                        ensure!(
                            r.steps_passed == steps,
                            "promoted after {} of {steps} steps",
                            r.steps_passed
                        );
                        ensure!(
                            !self.params.shadow_runs() || r.shadow_passed,
                            "promoted without a passed shadow phase"
                        );
                        if r.source == Some(CandidateSource::Retraining) {
                            ensure!(
                                r.evaluation_passed,
                                "a retrained candidate promoted without EvaluationPassed"
                            );
                            ensure!(
                                post.evaluation.as_ref().is_some_and(|e| e.passed),
                                "a retrained candidate promoted with evaluation {:?}",
                                post.evaluation
                            );
                        }
                    }
                    r.enter(Stage::Done, now);
                    self.stats.promotions += 1;
                }
                EventReason::PromotionComplete => {
                    ensure!(
                        self.rollout
                            .as_ref()
                            .is_some_and(|r| r.stage == Stage::Done),
                        "PromotionComplete without a promotion"
                    );
                    self.rollout = None;
                }
                EventReason::RolledBack => {
                    self.rollout = None;
                    self.stats.rollbacks += 1;
                }
                _ => {}
            }
        }

        // The model and the status agree.
        match (post.phase, self.rollout.as_ref()) {
            (Phase::Shadow, Some(r)) => ensure!(
                r.stage == Stage::Shadow,
                "Shadow but model at {:?}",
                r.stage
            ),
            (Phase::Progressing, Some(r)) => {
                let i = post.current_step.unwrap_or(-1);
                ensure!(
                    r.stage == Stage::Step(i as usize),
                    "step {i} but model at {:?}",
                    r.stage
                );
                ensure!(
                    spec.rollout.steps.get(i as usize) == Some(&post.canary_weight),
                    "step {i} at weight {}",
                    post.canary_weight
                );
            }
            (Phase::Promoted, Some(r)) => {
                ensure!(
                    r.stage == Stage::Done,
                    "Promoted but model at {:?}",
                    r.stage
                );
                ensure!(
                    post.canary_weight == 100,
                    "Promoted at weight {}",
                    post.canary_weight
                );
            }
            (phase, None) if !in_rollout(phase) => {
                ensure!(
                    post.canary_weight == 0 && post.mirror_percent == 0,
                    "{phase:?} with traffic on the candidate"
                );
            }
            (phase, r) => return fail(format!("phase {phase:?} but model {r:?}")),
        }
        // The recorded analysis is what was measured.
        if let (Some(r), Some(_)) = (self.rollout.as_ref(), analysis)
            && matches!(post.phase, Phase::Shadow | Phase::Progressing)
        {
            let recorded = post.analysis.clone().unwrap_or_default();
            ensure!(
                recorded.measurements == r.measurements,
                "status has {} measurements, the model {}",
                recorded.measurements,
                r.measurements
            );
            for m in &recorded.metrics {
                let c = r.metrics.get(&m.name).cloned().unwrap_or_default();
                let s = Counters {
                    failed: m.failed,
                    inconclusive: m.inconclusive,
                    consecutive_errors: m.consecutive_errors,
                };
                ensure!(s == c, "metric {}: status {s:?}, model {c:?}", m.name);
            }
        }
        Ok(())
    }

    /// Every rollback ends with everything on stable.
    fn check_rollback(&self, decision: &Decision) -> Result<(), String> {
        if !decision
            .events
            .iter()
            .any(|e| e.reason == EventCause::Lifecycle(EventReason::RolledBack))
        {
            return Ok(());
        }
        let s = &decision.status;
        ensure!(
            s.canary_weight == 0,
            "rolled back at weight {}",
            s.canary_weight
        );
        ensure!(
            s.mirror_percent == 0,
            "rolled back with mirror {}",
            s.mirror_percent
        );
        ensure!(
            s.candidate_version.is_none(),
            "rolled back keeping candidate {:?}",
            s.candidate_version
        );
        ensure!(
            s.current_step.is_none(),
            "rolled back at step {:?}",
            s.current_step
        );
        ensure!(
            s.history
                .last()
                .is_some_and(|h| matches!(h.outcome.as_str(), "RolledBack" | "Aborted")),
            "no rollback record"
        );
        match self.spec().traffic.provider {
            TrafficProvider::None => {
                let replicas = decision.apply.as_ref().and_then(|a| {
                    a.iter().find_map(|c| match c {
                        Child::Deployment(d)
                            if d.metadata.name.as_deref() == Some("fraud-stable") =>
                        {
                            d.spec.as_ref().and_then(|s| s.replicas)
                        }
                        _ => None,
                    })
                });
                ensure!(
                    replicas == Some(self.spec().serving.replicas),
                    "stable replicas {replicas:?} after rollback"
                );
            }
            provider => {
                let r = route(decision, provider);
                ensure!(r == Some((100, None, None)), "route after rollback: {r:?}");
            }
        }
        Ok(())
    }

    /// Within a rollout (the same candidate before and after) the weight only moves up, one
    /// configured step at a time.
    fn check_weight_moves(&self, traffic: &DesiredTraffic) -> Result<(), String> {
        if !self.checks.gates
            || !self.harness.traffic().has_candidate()
            || self.harness.traffic().candidate_version != traffic.candidate_version
        {
            return Ok(());
        }
        let steps = &self.spec().rollout.steps;
        let (from, to) = (self.harness.traffic().canary_weight, traffic.canary_weight);
        if from == to {
            return Ok(());
        }
        let next = if from == 0 {
            steps.first().copied()
        } else {
            steps
                .iter()
                .position(|w| *w == from)
                .and_then(|i| steps.get(i + 1))
                .copied()
        };
        ensure!(
            Some(to) == next,
            "weight moved {from} -> {to}, next step is {next:?} of {steps:?}"
        );
        Ok(())
    }
}

fn run_stories(name: &str, cases: u32, allow_promote: bool, checks: Checks) {
    let total = Cell::new(Stats::default());
    let mut runner = TestRunner::new(config(cases));
    let result = runner.run(&story(allow_promote), |(params, ticks)| {
        let stats = Story::new(&params, checks)
            .play(&ticks)
            .map_err(TestCaseError::fail)?;
        let mut t = total.take();
        t.ticks += stats.ticks;
        t.rollouts += stats.rollouts;
        t.steps_left += stats.steps_left;
        t.analysed += stats.analysed;
        t.promotions += stats.promotions;
        t.rollbacks += stats.rollbacks;
        t.attempts += stats.attempts;
        total.set(t);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    let t = total.take();
    eprintln!(
        "{name}: {cases} cases, {} ticks, {} rollouts, {} steps left ({} through a checked analysis), {} promotions, {} rollbacks, {} attempts",
        t.ticks, t.rollouts, t.steps_left, t.analysed, t.promotions, t.rollbacks, t.attempts
    );
    // The stories reach the interesting phases (otherwise the properties hold vacuously).
    assert!(
        t.rollouts > 0 && t.promotions > 0 && t.rollbacks > 0 && (!checks.gates || t.analysed > 0),
        "{name}: weak coverage {t:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// Weights sum to 100, the candidate weight is status.canaryWeight and a configured step,
/// the model of each rollout matches the status, rollbacks end on stable: with every manual
/// request, promote included.
#[test]
fn traffic_invariants_hold_with_any_manual_request() {
    run_stories(
        "traffic",
        192,
        true,
        Checks {
            gates: false,
            determinism: false,
        },
    );
}

/// Without manual promotion: the weight moves up one step at a time, a step (and the shadow
/// phase) is left only after its duration, with a ready candidate and, when analysis is
/// configured, `count` measurements and no limit exceeded; promotion needs a passed evaluation
/// (retrained candidates), a passed shadow (when it runs) and every step.
#[test]
fn steps_and_promotion_are_earned() {
    run_stories(
        "gates",
        256,
        false,
        Checks {
            gates: true,
            determinism: false,
        },
    );
}

/// The same (spec, status, observations, now) gives the same decision.
#[test]
fn decisions_are_deterministic() {
    run_stories(
        "determinism",
        64,
        true,
        Checks {
            gates: false,
            determinism: true,
        },
    );
}

// ---------------------------------------------------------------------------------------------
// No panic on arbitrary (schema-valid) statuses and observations
// ---------------------------------------------------------------------------------------------

fn phase() -> impl Strategy<Value = Phase> {
    prop::sample::select(vec![
        Phase::Pending,
        Phase::Stable,
        Phase::Retraining,
        Phase::Evaluating,
        Phase::Shadow,
        Phase::Progressing,
        Phase::Promoted,
        Phase::RolledBack,
        Phase::Failed,
    ])
}

fn word() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "",
        "3",
        "4",
        "champion",
        "drift",
        "manual",
        "Running",
        "Aborted",
        "RolledBack",
        "x y",
    ])
    .prop_map(String::from)
}

fn maybe_time() -> impl Strategy<Value = Option<Time>> {
    prop::option::of((-10_000_000i64..10_000_000).prop_map(|s| Time(at(s))))
}

fn metric_status() -> impl Strategy<Value = MetricStatus> {
    (
        prop::sample::select(vec!["error-rate", "latency-p99", "prediction-psi", "m0"]),
        0..20i32,
        0..20i32,
        0..20i32,
    )
        .prop_map(
            |(name, failed, inconclusive, consecutive_errors)| MetricStatus {
                name: name.into(),
                passed: failed / 2,
                failed,
                inconclusive,
                consecutive_errors,
                recent: vec![],
            },
        )
}

fn arbitrary_status() -> impl Strategy<Value = ModelDeploymentStatus> {
    let attempt = (
        0..1000i64,
        any_of(Trigger::iter()),
        word(),
        maybe_time(),
        any_of(AttemptOutcome::iter()),
        prop::option::of(word()),
    )
        .prop_map(
            |(number, trigger, job_name, started_at, outcome, candidate_version)| {
                RetrainingAttempt {
                    number,
                    id: format!("a-{number}"),
                    trigger,
                    job_name,
                    started_at,
                    finished_at: None,
                    outcome,
                    candidate_version,
                    message: None,
                }
            },
        );
    let record = (
        word(),
        prop::option::of(word()),
        any_of(RolloutOutcome::iter()),
        any_of(RolloutReason::iter()),
    )
        .prop_map(
            |(candidate_version, previous_version, outcome, reason)| RolloutRecord {
                candidate_version,
                previous_version,
                outcome,
                reason,
                finished_at: None,
            },
        );
    let write = (any_of(RegistryOp::iter()), prop::option::of(word()), word()).prop_map(
        |(op, version, key)| RegistryWrite {
            op,
            version,
            key,
            value: None,
        },
    );
    (
        (
            phase(),
            any::<bool>(),
            prop::option::of(any_of(PauseReason::iter())),
            prop::option::of(word()),
            prop::option::of(word()),
            -10..150i32,
            -10..150i32,
            // Negative steps panic: see tests::negative_current_step_does_not_panic.
            prop::option::of(0..25i32),
        ),
        (
            maybe_time(),
            vec(attempt, 0..4),
            vec(record, 0..4),
            prop::option::of((0..50i32, maybe_time(), vec(metric_status(), 0..4))),
            prop::option::of((any_of(Trigger::iter()), maybe_time())),
            prop::option::of(-5..5i64),
            maybe_time(),
            vec(write, 0..3),
        ),
        (
            prop::option::of((any::<bool>(), prop::option::of(-1.0..2.0f64))),
            prop::option::of(any_of(CandidateSource::iter())),
        ),
    )
        .prop_map(
            |(
                (
                    phase,
                    paused,
                    pause_reason,
                    stable_version,
                    candidate_version,
                    canary_weight,
                    mirror_percent,
                    current_step,
                ),
                (
                    phase_started_at,
                    retraining_attempts,
                    history,
                    analysis,
                    deferred,
                    samples,
                    anchor,
                    pending,
                ),
                (evaluation, candidate_source),
            )| ModelDeploymentStatus {
                phase,
                paused,
                pause_reason,
                stable_version,
                candidate_version,
                canary_weight,
                mirror_percent,
                current_step,
                phase_started_at,
                retraining_attempts,
                history,
                analysis: analysis.map(|(measurements, last_measured_at, metrics)| {
                    AnalysisStatus {
                        measurements,
                        last_measured_at,
                        metrics,
                    }
                }),
                deferred_trigger: deferred.map(|(trigger, at)| DeferredTrigger {
                    trigger,
                    at,
                    reason: "r".into(),
                }),
                samples_at_last_training: samples,
                schedule_anchor: anchor,
                pending_registry_writes: pending,
                evaluation: evaluation.map(|(passed, candidate_value)| EvaluationStatus {
                    metric: "accuracy".into(),
                    candidate_value,
                    champion_value: Some(0.8),
                    passed,
                    reason: "r".into(),
                }),
                candidate_source,
                ..Default::default()
            },
        )
}

/// Any value of a closed vocabulary.
fn any_of<T: Clone + std::fmt::Debug + 'static>(
    values: impl Iterator<Item = T>,
) -> impl Strategy<Value = T> {
    prop::sample::select(values.collect::<Vec<_>>())
}

fn arbitrary_observations() -> impl Strategy<Value = Observations> {
    let requests = vec(
        prop::sample::select(vec![
            Request::Abort,
            Request::Retry,
            Request::Retrain,
            Request::Resume,
            Request::PromoteNext,
            Request::PromoteFull,
        ])
        .prop_map(|r| (r, "v".to_string())),
        0..3,
    );
    (
        (
            prop::option::of(word()),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
        (
            prop::option::of(0..4u8),
            prop::option::of(0..4u8),
            prop::option::of(0..3u8),
            prop::option::of((
                prop::option::of(-1.0..2.0f64),
                prop::option::of(-1.0..2.0f64),
            )),
            prop::option::of(vec((word(), 0..100u8), 0..4)),
            requests,
        ),
    )
        .prop_map(
            |(
                (served_version, stable_ready, candidate_ready, paused, advisor),
                (drift, job, lookup, evaluation, measurements, requests),
            )| {
                Observations {
                    served_version,
                    stable_ready,
                    candidate_ready,
                    drift: drift.map(|d| match d {
                        3 => DriftObservation::Failed {
                            reason: Reason::DataUnreachable,
                            message: "m".into(),
                        },
                        s => DriftObservation::Completed {
                            summary: DriftSummary {
                                severity: [Severity::Ok, Severity::Medium, Severity::High]
                                    [s as usize],
                                ..Default::default()
                            },
                            sample_count: Some(i64::from(s) * 10_000),
                        },
                    }),
                    job: job.map(|j| match j {
                        0 => JobState::Running,
                        1 => JobState::Succeeded,
                        2 => JobState::Failed("f".into()),
                        _ => JobState::Missing,
                    }),
                    candidate_lookup: lookup.map(|l| match l {
                        0 => CandidateLookup::Found("9".into()),
                        1 => CandidateLookup::NotFound,
                        _ => CandidateLookup::Error("e".into()),
                    }),
                    evaluation: evaluation.map(|(candidate, champion)| {
                        EvaluationObservation::Metrics {
                            candidate,
                            champion,
                        }
                    }),
                    measurements: measurements.map(|ms| {
                        ms.into_iter()
                            .map(|(name, v)| MetricMeasurement {
                                name,
                                verdict: verdict(v),
                                candidate: Some(0.1),
                                stable: None,
                                threshold: "t".into(),
                                error: None,
                            })
                            .collect()
                    }),
                    manual: ManualInput { paused, requests },
                    advisor_recommends: advisor,
                    advisor: None,
                }
            },
        )
}

/// `step`, `wants` and `decide` never panic on any schema-valid status and observations,
/// and what they decide keeps the traffic invariants.
#[test]
fn no_panic_on_arbitrary_status_and_observations() {
    let mut runner = TestRunner::new(config(512));
    let strategy = (
        spec_params(),
        arbitrary_status(),
        arbitrary_observations(),
        -100_000i64..100_000,
    );
    let result = runner.run(&strategy, |(params, status, observed, offset)| {
        let now = at(offset);
        let readiness = Readiness::Scripted {
            stable: observed.stable_ready,
            candidate: observed.candidate_ready,
        };
        let mut harness =
            Harness::new(identity(), params.spec(), readiness).resuming(status.clone());
        harness.advance_to(now);
        let Ok(spec) = harness.validated() else {
            return Err(TestCaseError::fail(format!(
                "invalid spec: {:?}",
                harness.validated()
            )));
        };
        let _ = wants(spec, &status, now);
        let out = step(StepInput {
            name: NAME,
            uid: UID,
            generation: Some(1),
            spec,
            status: &status,
            observed: &observed,
            now,
        });
        let _ = wants(spec, &out.status, now);
        // Any served version, even one no registry would hold.
        let served = observed
            .served_version
            .clone()
            .map(|version| ResolvedModel {
                version,
                run_id: None,
            })
            .ok_or(RegistryError::Unavailable("down".into()).into());
        let decision = harness.decide(Observed {
            served,
            ..harness.observed(observed.clone())
        });
        // Whatever the status said, a rollback leaves nothing on the candidate.
        if decision
            .events
            .iter()
            .any(|e| e.reason == EventCause::Lifecycle(EventReason::RolledBack))
        {
            prop_assert_eq!(decision.status.canary_weight, 0);
            prop_assert_eq!(decision.status.mirror_percent, 0);
            prop_assert_eq!(decision.status.candidate_version.as_deref(), None);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
