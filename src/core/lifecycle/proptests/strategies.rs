//! Random specs and random stories: what the world does, tick by tick.

use proptest::collection::vec;
use serde_json::json;

use super::*;

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
pub(super) struct SpecParams {
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
    pub(super) lower_is_better: bool,
    min_improvement: f64,
    /// Duration of an experiment (only with a router).
    experiment: Option<u64>,
}

fn secs(s: u64) -> String {
    format!("{s}s")
}

impl SpecParams {
    pub(super) fn spec(&self) -> ModelDeploymentSpec {
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
        if let Some(duration) = self.experiment() {
            value["rollout"]["experiment"] = json!({
                "duration": secs(duration),
                "match": [{"headers": [{"name": "x-canary", "value": "1"}]}],
                "sticky": duration % 60 == 0
            });
        }
        serde_json::from_value(value).expect("generated spec deserializes")
    }

    pub(super) fn shadow_runs(&self) -> bool {
        self.shadow && self.provider != 2
    }

    /// Duration of the experiment phase, when the spec has one (it needs a router).
    pub(super) fn experiment(&self) -> Option<u64> {
        self.experiment.filter(|_| self.provider != 2)
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

pub(super) fn spec_params() -> impl Strategy<Value = SpecParams> {
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
            prop::option::weighted(0.3, duration()),
        ),
    )
        .prop_map(
            |(
                (steps, step_duration, shadow, shadow_duration, mirror),
                (
                    provider,
                    deadline,
                    analysis,
                    retraining,
                    lower_is_better,
                    min_improvement,
                    experiment,
                ),
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
                experiment,
            },
        )
}

// ---------------------------------------------------------------------------------------------
// Random stories
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Manual {
    Abort,
    Retry,
    Retrain,
    Resume,
    PromoteNext,
    PromoteFull,
}

#[derive(Debug, Clone)]
pub(super) struct Tick {
    pub(super) advance: u64,
    /// 0 ok, 1 medium, 2 high, 3 the check failed.
    pub(super) drift: u8,
    pub(super) accuracy: Option<f64>,
    pub(super) new_rows: i64,
    /// 0 running, 1 succeeded, 2 failed, 3 missing.
    pub(super) job: u8,
    /// 0 found, 1 not found, 2 error.
    pub(super) lookup: u8,
    /// 0 both metrics, 1 error, 2 no candidate metric, 3 no champion metric.
    pub(super) evaluation: u8,
    pub(super) delta: f64,
    /// One per metric, 0..100: < 82 passed, < 88 failed, < 94 inconclusive, else error.
    pub(super) verdicts: Vec<u8>,
    pub(super) stable_ready: bool,
    pub(super) candidate_ready: bool,
    /// 0 normal, 1 outage, 2 someone moves the alias to a new version by hand.
    pub(super) registry: u8,
    pub(super) writes_ok: bool,
    pub(super) manual: Option<Manual>,
    pub(super) toggle_pause: bool,
    pub(super) advisor: bool,
    /// A due measurement is taken even though the candidate is not ready (it became unready
    /// while being measured); the lifecycle must not record it.
    pub(super) measure_unready: bool,
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

pub(super) fn story(allow_promote: bool) -> impl Strategy<Value = (SpecParams, Vec<Tick>)> {
    (spec_params(), vec(tick(allow_promote), 1..=MAX_TICKS))
}

pub(super) fn verdict(v: u8) -> Verdict {
    match v {
        0..82 => Verdict::Passed,
        82..88 => Verdict::Failed,
        88..94 => Verdict::Inconclusive,
        _ => Verdict::Error,
    }
}

pub(super) fn stage_metrics(
    spec: &ModelDeploymentSpec,
    stage: AnalysisStage,
) -> Vec<AnalysisMetric> {
    crate::core::verdict::builtin::metrics_for(spec, stage)
}
