//! Accumulating measurements over a shadow phase or a canary step, with Argo Rollouts'
//! limits: a metric fails past `failureLimit` failed measurements, errors past
//! `consecutiveErrorLimit` query errors in a row, and is inconclusive past
//! `inconclusiveLimit` measurements without data.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::{AnalysisMetric, AnalysisStatus, Judge, MeasurementRecord, MetricStatus};
use crate::core::verdict::{MetricMeasurement, Verdict};

/// Recent measurements kept per metric in status.
pub const RECENT: usize = 5;

/// Where an analysis stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Assessment {
    /// More measurements needed.
    Running,
    /// Enough measurements, no limit crossed.
    Passed,
    /// A metric crossed its failure limit.
    Failed { metric: String, detail: String },
    /// A metric's queries failed too often in a row.
    Errored { metric: String, detail: String },
    /// A metric had no data too often.
    Inconclusive { metric: String, detail: String },
}

/// Marks the dry-run metrics in the status, so that readers see which ones never gate.
pub fn mark_dry_run(status: &mut AnalysisStatus, metrics: &[AnalysisMetric]) {
    for entry in &mut status.metrics {
        entry.dry_run = metrics.iter().any(|m| m.name == entry.name && m.dry_run);
    }
}

/// Adds one round of measurements to the status.
pub fn record(status: &mut AnalysisStatus, measurements: &[MetricMeasurement], now: Timestamp) {
    status.measurements += 1;
    status.last_measured_at = Some(Time(now));
    for m in measurements {
        let entry = match status.metrics.iter_mut().position(|s| s.name == m.name) {
            Some(i) => &mut status.metrics[i],
            None => {
                status.metrics.push(MetricStatus {
                    name: m.name.clone(),
                    ..Default::default()
                });
                let last = status.metrics.len() - 1;
                &mut status.metrics[last]
            }
        };
        match m.verdict {
            Verdict::Passed => entry.passed += 1,
            Verdict::Failed => entry.failed += 1,
            Verdict::Inconclusive => entry.inconclusive += 1,
            Verdict::Error => {}
        }
        if m.verdict == Verdict::Error {
            entry.consecutive_errors += 1;
        } else {
            entry.consecutive_errors = 0;
        }
        entry.recent.push(MeasurementRecord {
            at: Some(Time(now)),
            verdict: m.verdict,
            candidate: m.candidate.filter(|v| v.is_finite()),
            stable: m.stable.filter(|v| v.is_finite()),
            threshold: match &m.error {
                Some(e) => format!("{} (error: {e})", m.threshold),
                None => m.threshold.clone(),
            },
        });
        if entry.recent.len() > RECENT {
            entry.recent.remove(0);
        }
    }
}

/// The three limits of a metric, in the order they are checked: what is counted, its limit,
/// how it is described, and the assessment it leads to.
type LimitCheck = (
    fn(&MetricStatus) -> i32,
    fn(&AnalysisMetric) -> i32,
    &'static str,
    fn(String, String) -> Assessment,
);

const LIMITS: [LimitCheck; 3] = [
    (
        |s| s.failed,
        |m| m.failure_limit,
        "failed {} time(s)",
        |metric, detail| Assessment::Failed { metric, detail },
    ),
    (
        |s| s.consecutive_errors,
        |m| m.consecutive_error_limit,
        "could not be measured {} time(s) in a row",
        |metric, detail| Assessment::Errored { metric, detail },
    ),
    (
        |s| s.inconclusive,
        |m| m.inconclusive_limit,
        "had no data {} time(s)",
        |metric, detail| Assessment::Inconclusive { metric, detail },
    ),
];

/// Judges the accumulated measurements against each metric's limits; passes once every
/// metric passed `required` times.
pub fn assess(status: &AnalysisStatus, metrics: &[AnalysisMetric], required: i32) -> Assessment {
    // Dry-run metrics are measured and recorded, never counted: not for failing, not for
    // passing.
    let gating: Vec<&AnalysisMetric> = metrics.iter().filter(|m| !m.dry_run).collect();
    assess_metrics(status, &gating, required)
}

/// What `metric` alone would decide if it gated: a dry-run metric's would-be verdict.
pub fn assess_as_gate(
    status: &AnalysisStatus,
    metric: &AnalysisMetric,
    required: i32,
) -> Assessment {
    assess_metrics(status, &[metric], required)
}

fn assess_metrics(
    status: &AnalysisStatus,
    metrics: &[&AnalysisMetric],
    required: i32,
) -> Assessment {
    for &metric in metrics {
        let Some(s) = status.metrics.iter().find(|s| s.name == metric.name) else {
            continue;
        };
        if let Some(assessment) = sequential_limits(status, metric, s, required) {
            return assessment;
        }
        // A sequential metric's boundary replaces the failure limit, and with a
        // false-promotion bound, "inconclusive" is its state until it concludes.
        let limits = match (is_sequential(metric), is_bounded_sequential(metric)) {
            (false, _) => &LIMITS[..],
            (true, false) => &LIMITS[1..],
            (true, true) => &LIMITS[1..2],
        };
        for &(count, limit, what, assessment) in limits {
            let (count, limit) = (count(s), limit(metric));
            if count > limit {
                let what = what.replace("{}", &count.to_string());
                let detail = format!(
                    "{} {what} (limit {limit}); last: {}",
                    metric.name,
                    last_measurement(s)
                );
                return assessment(metric.name.clone(), detail);
            }
        }
    }
    // Every metric needs `required` passed measurements: rounds of errors or missing data
    // within their limits keep the gate closed, they never open it.
    let all_passed = metrics.iter().all(|&metric| {
        status
            .metrics
            .iter()
            .find(|s| s.name == metric.name)
            .is_some_and(|s| s.passed >= passes_needed(metric, required))
    });
    if all_passed {
        Assessment::Passed
    } else {
        Assessment::Running
    }
}

fn is_sequential(metric: &AnalysisMetric) -> bool {
    metric.judge == Judge::Sequential
}

/// Passed measurements a metric needs: `required` for a threshold metric and for a sequential
/// one without a false-promotion bound (looks with no evidence of a regression); one for a
/// sequential metric with a bound, whose pass is a conclusion that later looks do not undo.
fn passes_needed(metric: &AnalysisMetric, required: i32) -> i32 {
    if is_bounded_sequential(metric) {
        1
    } else {
        required
    }
}

/// A sequential metric with a false-promotion bound: it passes by evidence, not by count.
fn is_bounded_sequential(metric: &AnalysisMetric) -> bool {
    is_sequential(metric)
        && metric
            .sequential
            .as_ref()
            .is_some_and(|s| s.false_promotion.is_some())
}

/// A sequential metric fails at its first failed look (the test's boundary, not a count,
/// controls false rollbacks), and one with a false-promotion bound that has not concluded
/// after the step's `required` rounds is inconclusive.
fn sequential_limits(
    status: &AnalysisStatus,
    metric: &AnalysisMetric,
    s: &MetricStatus,
    required: i32,
) -> Option<Assessment> {
    if !is_sequential(metric) {
        return None;
    }
    if s.failed > 0 {
        let detail = format!(
            "{} showed a regression; last: {}",
            metric.name,
            last_measurement(s)
        );
        return Some(Assessment::Failed {
            metric: metric.name.clone(),
            detail,
        });
    }
    if is_bounded_sequential(metric) && s.passed == 0 && status.measurements >= required {
        let detail = format!(
            "{} neither showed nor ruled out a regression in {} measurement(s); last: {}",
            metric.name,
            status.measurements,
            last_measurement(s)
        );
        return Some(Assessment::Inconclusive {
            metric: metric.name.clone(),
            detail,
        });
    }
    None
}

fn last_measurement(s: &MetricStatus) -> String {
    s.recent
        .last()
        .map(|r| {
            format!(
                "candidate {} vs stable {}, threshold {}",
                fmt_value(r.candidate),
                fmt_value(r.stable),
                r.threshold
            )
        })
        .unwrap_or_default()
}

fn fmt_value(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}"))
        .unwrap_or_else(|| "no data".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::verdict::builtin::canary_metrics;

    fn m(name: &str, verdict: Verdict) -> MetricMeasurement {
        MetricMeasurement {
            name: name.into(),
            verdict,
            candidate: Some(0.1),
            stable: Some(0.1),
            threshold: "t".into(),
            error: None,
        }
    }

    #[test]
    fn passes_after_the_required_count() {
        let metrics = canary_metrics();
        let mut status = AnalysisStatus::default();
        let now = Timestamp::from_second(0).unwrap();
        for i in 0..3 {
            assert_eq!(
                assess(&status, &metrics, 3),
                Assessment::Running,
                "round {i}"
            );
            record(
                &mut status,
                &[
                    m("error-rate", Verdict::Passed),
                    m("latency-p99", Verdict::Passed),
                ],
                now,
            );
        }
        assert_eq!(assess(&status, &metrics, 3), Assessment::Passed);
    }

    #[test]
    fn errors_and_missing_data_never_count_towards_a_pass() {
        let metrics = canary_metrics(); // error limit 4, inconclusive limit 2
        let now = Timestamp::from_second(0).unwrap();
        let mut status = AnalysisStatus::default();
        for _ in 0..3 {
            record(
                &mut status,
                &[
                    m("error-rate", Verdict::Error),
                    m("latency-p99", Verdict::Passed),
                ],
                now,
            );
        }
        assert_eq!(status.measurements, 3);
        assert_eq!(
            assess(&status, &metrics, 3),
            Assessment::Running,
            "three query errors are no pass"
        );
        let mut quiet = AnalysisStatus::default();
        for _ in 0..2 {
            record(
                &mut quiet,
                &[
                    m("error-rate", Verdict::Inconclusive),
                    m("latency-p99", Verdict::Passed),
                ],
                now,
            );
        }
        assert_eq!(assess(&quiet, &metrics, 2), Assessment::Running);
    }

    #[test]
    fn limits_are_exceeded_not_reached() {
        let mut metrics = canary_metrics();
        metrics[0].failure_limit = 1;
        let now = Timestamp::from_second(0).unwrap();
        let mut status = AnalysisStatus::default();
        record(&mut status, &[m("error-rate", Verdict::Failed)], now);
        assert_eq!(assess(&status, &metrics, 5), Assessment::Running);
        record(&mut status, &[m("error-rate", Verdict::Failed)], now);
        assert!(matches!(
            assess(&status, &metrics, 5),
            Assessment::Failed { .. }
        ));
    }

    #[test]
    fn errors_must_be_consecutive_and_inconclusive_counts() {
        let metrics = canary_metrics(); // error limit 4, inconclusive limit 2
        let now = Timestamp::from_second(0).unwrap();
        let mut status = AnalysisStatus::default();
        for _ in 0..4 {
            record(&mut status, &[m("error-rate", Verdict::Error)], now);
        }
        record(&mut status, &[m("error-rate", Verdict::Passed)], now);
        assert_eq!(status.metrics[0].consecutive_errors, 0);
        for _ in 0..5 {
            record(&mut status, &[m("error-rate", Verdict::Error)], now);
        }
        assert!(matches!(
            assess(&status, &metrics, 1),
            Assessment::Errored { .. }
        ));

        let mut quiet = AnalysisStatus::default();
        for _ in 0..3 {
            record(&mut quiet, &[m("latency-p99", Verdict::Inconclusive)], now);
        }
        assert!(matches!(
            assess(&quiet, &metrics, 1),
            Assessment::Inconclusive { .. }
        ));
        assert!(quiet.metrics[0].recent.len() <= RECENT);
    }

    fn sequential(false_promotion: Option<f64>) -> Vec<AnalysisMetric> {
        let mut metric = canary_metrics().remove(0);
        metric.judge = Judge::Sequential;
        metric.max_increase = None;
        metric.sequential = Some(crate::api::SequentialJudge {
            false_promotion,
            ..Default::default()
        });
        vec![metric]
    }

    #[test]
    fn a_sequential_metric_fails_at_its_first_failed_look() {
        let metrics = sequential(None);
        assert_eq!(metrics[0].failure_limit, 0);
        let mut with_limit = metrics.clone();
        with_limit[0].failure_limit = 5; // ignored: the boundary decides
        let now = Timestamp::from_second(0).unwrap();
        let mut status = AnalysisStatus::default();
        record(&mut status, &[m("error-rate", Verdict::Passed)], now);
        record(&mut status, &[m("error-rate", Verdict::Failed)], now);
        for metrics in [&metrics, &with_limit] {
            let Assessment::Failed { detail, .. } = assess(&status, metrics, 10) else {
                panic!("{:?}", assess(&status, metrics, 10));
            };
            assert!(detail.contains("showed a regression"), "{detail}");
        }
    }

    #[test]
    fn a_bounded_sequential_metric_passes_once_and_is_inconclusive_after_count() {
        let metrics = sequential(Some(0.05));
        let now = Timestamp::from_second(0).unwrap();
        let mut status = AnalysisStatus::default();
        // Inconclusive looks are its running state, not missing data against a limit.
        for _ in 0..4 {
            record(&mut status, &[m("error-rate", Verdict::Inconclusive)], now);
            assert_eq!(assess(&status, &metrics, 5), Assessment::Running);
        }
        let mut passed = status.clone();
        record(&mut passed, &[m("error-rate", Verdict::Passed)], now);
        assert_eq!(assess(&passed, &metrics, 5), Assessment::Passed);
        // A pass is a conclusion: a later look without one does not undo it.
        record(&mut passed, &[m("error-rate", Verdict::Inconclusive)], now);
        assert_eq!(assess(&passed, &metrics, 5), Assessment::Passed);
        record(&mut status, &[m("error-rate", Verdict::Inconclusive)], now);
        let Assessment::Inconclusive { detail, .. } = assess(&status, &metrics, 5) else {
            panic!("{:?}", assess(&status, &metrics, 5));
        };
        assert!(detail.contains("neither showed nor ruled out"), "{detail}");
    }

    #[test]
    fn an_unbounded_sequential_metric_passes_after_count_looks_with_data() {
        let metrics = sequential(None);
        let now = Timestamp::from_second(0).unwrap();
        let mut status = AnalysisStatus::default();
        record(&mut status, &[m("error-rate", Verdict::Passed)], now);
        record(&mut status, &[m("error-rate", Verdict::Inconclusive)], now);
        assert_eq!(assess(&status, &metrics, 2), Assessment::Running);
        record(&mut status, &[m("error-rate", Verdict::Passed)], now);
        assert_eq!(assess(&status, &metrics, 2), Assessment::Passed);
        // No data still counts against its limit (2 for the built-in metric).
        let mut quiet = AnalysisStatus::default();
        for _ in 0..3 {
            record(&mut quiet, &[m("error-rate", Verdict::Inconclusive)], now);
        }
        assert!(matches!(
            assess(&quiet, &metrics, 2),
            Assessment::Inconclusive { .. }
        ));
    }

    fn any_verdict() -> impl proptest::strategy::Strategy<Value = Verdict> {
        proptest::sample::select(vec![
            Verdict::Passed,
            Verdict::Failed,
            Verdict::Inconclusive,
            Verdict::Error,
        ])
    }

    proptest::proptest! {
        /// A dry-run metric never changes what the gate decides, whatever it measures.
        #[test]
        fn dry_run_metrics_never_change_the_gate(
            rounds in proptest::collection::vec((any_verdict(), any_verdict()), 0..12),
            required in 1..6i32,
        ) {
            let gating = canary_metrics().remove(0);
            let mut dry = canary_metrics().remove(1);
            dry.dry_run = true;
            let now = Timestamp::from_second(0).unwrap();
            let mut status = AnalysisStatus::default();
            for (g, d) in rounds {
                record(&mut status, &[m("error-rate", g), m("latency-p99", d)], now);
                proptest::prop_assert_eq!(
                    assess(&status, &[gating.clone(), dry.clone()], required),
                    assess(&status, std::slice::from_ref(&gating), required)
                );
            }
        }
    }
}
