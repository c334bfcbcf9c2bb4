//! The sequential judge against the threshold rule on the same simulated canaries.
//!
//! Each canary is a step at 10 % of the traffic, measured once per interval until the gate
//! decides, through the operator's own gate logic (`record` + `assess`, the verdicts of
//! `core::verdict`). Per interval the requests split binomially between the variants and each
//! variant's errors are binomial in its requests. A/A canaries (the candidate exactly as good)
//! measure false rollbacks; A/B canaries (the candidate's error rate doubled) measure missed
//! regressions and the time and traffic to detect them.
//!
//! `bash bench/judge_simulation.sh` prints the table the README shows (release build, 10,000
//! canaries per cell); the test asserts the guarantees on the same seeded runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

use k8s_openapi::jiff::Timestamp;
use mlrollout::api::{AnalysisMetric, AnalysisStatus, Judge, SequentialJudge};
use mlrollout::core::lifecycle::analysis_state::{Assessment, assess, record};
use mlrollout::core::verdict::builtin::canary_metrics;
use mlrollout::core::verdict::sequential::{Counts, measurement};
use mlrollout::core::verdict::{MetricMeasurement, judge};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Binomial, Distribution};

const CANARIES: usize = 10_000;
/// Measurements a step needs (`analysis.count`).
const COUNT: i32 = 10;
/// Looks before a canary that has decided nothing is counted as undecided.
const HORIZON: usize = 30;
const WEIGHT: f64 = 0.10;
const STABLE_ERROR_RATE: f64 = 0.01;
const ALPHA: f64 = 0.05;

/// One interval's counters: (candidate requests, candidate errors, stable requests, stable
/// errors).
type Interval = (u64, u64, u64, u64);

fn interval(rng: &mut StdRng, requests: u64, candidate_rate: f64) -> Interval {
    let candidate = Binomial::new(requests, WEIGHT).unwrap().sample(rng);
    let stable = requests - candidate;
    let errors = |n: u64, p: f64, rng: &mut StdRng| Binomial::new(n, p).unwrap().sample(rng);
    (
        candidate,
        errors(candidate, candidate_rate, rng),
        stable,
        errors(stable, STABLE_ERROR_RATE, rng),
    )
}

/// The threshold rule: error rate at most 1.5 x stable per interval, failure limit 1.
fn threshold_metric() -> AnalysisMetric {
    let mut metric = canary_metrics().remove(0);
    metric.failure_limit = 1;
    metric
}

fn sequential_metric(false_promotion: Option<f64>) -> AnalysisMetric {
    let mut metric = canary_metrics().remove(0);
    metric.judge = Judge::Sequential;
    metric.max_increase = None;
    metric.sequential = Some(SequentialJudge {
        alpha: ALPHA,
        min_effect: 1.2,
        false_promotion,
        ..SequentialJudge::default()
    });
    metric
}

/// The measurement a judge makes of the intervals so far: the threshold rule sees the last
/// interval's rates, the sequential judge the counts since the step began.
fn measure(metric: &AnalysisMetric, intervals: &[Interval]) -> MetricMeasurement {
    if metric.judge == Judge::Sequential {
        let sum = |f: fn(&Interval) -> u64| intervals.iter().map(f).sum::<u64>() as f64;
        let candidate = Counts {
            bad: sum(|i| i.1),
            total: sum(|i| i.0),
        };
        let stable = Counts {
            bad: sum(|i| i.3),
            total: sum(|i| i.2),
        };
        return measurement(metric, Some(candidate), Some(stable));
    }
    let &(cr, ce, sr, se) = intervals.last().unwrap();
    let rate = |e: u64, r: u64| (r > 0).then(|| e as f64 / r as f64);
    judge(metric, rate(ce, cr), rate(se, sr))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Decision {
    RolledBack {
        looks: usize,
        candidate_requests: u64,
    },
    Promoted,
    Paused,
    Undecided,
}

/// Runs one canary's traffic through the gate until it decides.
fn run(metric: &AnalysisMetric, traffic: &[Interval]) -> Decision {
    let mut status = AnalysisStatus::default();
    let now = Timestamp::from_second(0).unwrap();
    let metrics = std::slice::from_ref(metric);
    for look in 1..=traffic.len() {
        let m = measure(metric, &traffic[..look]);
        record(&mut status, &[m], now);
        match assess(&status, metrics, COUNT) {
            Assessment::Failed { .. } | Assessment::Errored { .. } => {
                return Decision::RolledBack {
                    looks: look,
                    candidate_requests: traffic[..look].iter().map(|i| i.0).sum(),
                };
            }
            Assessment::Passed => return Decision::Promoted,
            Assessment::Inconclusive { .. } => return Decision::Paused,
            Assessment::Running => {}
        }
    }
    Decision::Undecided
}

#[derive(Debug, Default)]
struct Tally {
    rolled_back: usize,
    promoted: usize,
    paused: usize,
    undecided: usize,
    looks: Vec<usize>,
    requests: Vec<u64>,
}

impl Tally {
    fn add(&mut self, decision: Decision) {
        match decision {
            Decision::RolledBack {
                looks,
                candidate_requests,
            } => {
                self.rolled_back += 1;
                self.looks.push(looks);
                self.requests.push(candidate_requests);
            }
            Decision::Promoted => self.promoted += 1,
            Decision::Paused => self.paused += 1,
            Decision::Undecided => self.undecided += 1,
        }
    }

    fn median<T: Copy + Ord + Default>(values: &[T]) -> T {
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        sorted.get(sorted.len() / 2).copied().unwrap_or_default()
    }
}

/// A/A and A/B tallies of each judge on the same canaries, at `requests` per interval.
fn simulate(requests: u64, canaries: usize, judges: &[AnalysisMetric]) -> Vec<(Tally, Tally)> {
    let mut tallies: Vec<(Tally, Tally)> = judges.iter().map(|_| Default::default()).collect();
    let mut rng = StdRng::seed_from_u64(requests);
    for _ in 0..canaries {
        let same: Vec<Interval> = (0..HORIZON)
            .map(|_| interval(&mut rng, requests, STABLE_ERROR_RATE))
            .collect();
        let doubled: Vec<Interval> = (0..HORIZON)
            .map(|_| interval(&mut rng, requests, 2.0 * STABLE_ERROR_RATE))
            .collect();
        for (metric, (aa, ab)) in judges.iter().zip(tallies.iter_mut()) {
            aa.add(run(metric, &same));
            ab.add(run(metric, &doubled));
        }
    }
    tallies
}

fn percent(count: usize, of: usize) -> String {
    format!("{:.2} %", 100.0 * count as f64 / of as f64)
}

/// The README table: per traffic level and judge, A/A false rollbacks and A/B outcomes.
/// Per traffic level, each judge's (A/A, A/B) tallies.
type Results = Vec<(u64, Vec<(Tally, Tally)>)>;

fn table(canaries: usize) -> (String, Results) {
    let judges = [
        (
            "threshold (≤ 1.5 × stable, failureLimit 1)",
            threshold_metric(),
        ),
        (
            "sequential (alpha 0.05, minEffect 1.2)",
            sequential_metric(None),
        ),
        (
            "sequential + falsePromotion 0.05",
            sequential_metric(Some(0.05)),
        ),
    ];
    let metrics: Vec<AnalysisMetric> = judges.iter().map(|(_, m)| m.clone()).collect();
    let mut text = String::from(
        "| requests / interval | judge | A/A: false rollbacks | A/A: promoted | A/B 2×: missed (promoted) | A/B 2×: median intervals to rollback | A/B 2×: median candidate requests to rollback |\n|---|---|---|---|---|---|---|\n",
    );
    let mut all = Vec::new();
    for requests in [1_000u64, 5_000, 20_000] {
        let tallies = simulate(requests, canaries, &metrics);
        for ((name, _), (aa, ab)) in judges.iter().zip(&tallies) {
            text.push_str(&format!(
                "| {requests} | {name} | {} | {} | {} | {} | {} |\n",
                percent(aa.rolled_back, canaries),
                percent(aa.promoted, canaries),
                percent(ab.promoted, canaries),
                Tally::median(&ab.looks),
                Tally::median(&ab.requests),
            ));
        }
        all.push((requests, tallies));
    }
    (text, all)
}

fn canaries() -> usize {
    std::env::var("JUDGE_SIMULATION_CANARIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CANARIES)
}

#[test]
fn the_sequential_judge_bounds_false_rollbacks_and_catches_a_doubled_error_rate() {
    let canaries = canaries();
    let (text, all) = table(canaries);
    println!("{text}");
    for (requests, tallies) in &all {
        let [
            (threshold_aa, _),
            (seq_aa, seq_ab),
            (bounded_aa, bounded_ab),
        ] = &tallies[..]
        else {
            panic!("three judges");
        };
        // The guarantee: however often it looks, at most alpha of healthy canaries roll back.
        for (name, aa) in [("sequential", seq_aa), ("bounded", bounded_aa)] {
            let rate = aa.rolled_back as f64 / canaries as f64;
            assert!(
                rate <= ALPHA,
                "{name} at {requests}/interval: {rate} false rollbacks"
            );
        }
        // The threshold rule has no such bound: at 10 % of the traffic its per-interval ratio
        // is noise, and it rolls back healthy candidates far more often.
        assert!(
            threshold_aa.rolled_back > 3 * seq_aa.rolled_back.max(1),
            "{requests}: threshold {} vs sequential {}",
            threshold_aa.rolled_back,
            seq_aa.rolled_back
        );
        // A bounded judge never promotes a doubled error rate more often than its bound.
        let promoted = bounded_ab.promoted as f64 / canaries as f64;
        assert!(promoted <= 0.05, "{requests}: bounded promoted {promoted}");
        if *requests >= 5_000 {
            // With enough traffic the doubled error rate is caught nearly always.
            let missed = seq_ab.promoted + seq_ab.undecided;
            assert!(
                missed as f64 <= 0.05 * canaries as f64,
                "{requests}: sequential missed {missed}"
            );
        }
    }
}
