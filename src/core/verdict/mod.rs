//! The verdict on one measurement of one analysis metric, and which metrics apply
//! ([`builtin`]: the built-in queries and thresholds). Pure: the Prometheus adapter
//! ([`crate::analysis`]) measures, this judges.
//!
//! No data is never a pass: an empty result or NaN is `Inconclusive` (or `Failed` when the
//! metric says so), and a relative threshold with no stable value is `Inconclusive` too.

use crate::api::{AnalysisMetric, NoDataPolicy};

pub mod builtin;
pub mod sequential;

pub use crate::api::Verdict;

/// Which gate is being measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnalysisStage {
    /// Mirrored traffic: candidate answers are discarded and compared with stable's.
    Shadow,
    /// Live traffic at a canary step.
    Canary,
    /// The promoted version on all live traffic, the previous one still warm
    /// (`rollout.postPromotion`).
    PostPromotion,
}

/// One metric measured once, for the candidate and (when needed) for stable.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricMeasurement {
    pub name: String,
    pub verdict: Verdict,
    pub candidate: Option<f64>,
    pub stable: Option<f64>,
    /// Human-readable threshold, e.g. `<= 0.05 and <= 1.5 x stable`.
    pub threshold: String,
    /// Query error, when `verdict` is `Error`.
    pub error: Option<String>,
}

/// A usable sample value: finite or infinite, never NaN.
fn usable(value: Option<f64>) -> Option<f64> {
    value.filter(|v| !v.is_nan())
}

/// Describes the thresholds of a metric.
pub fn describe_threshold(metric: &AnalysisMetric) -> String {
    let mut parts = Vec::new();
    if let Some(max) = metric.max {
        parts.push(format!("<= {max}"));
    }
    if let Some(min) = metric.min {
        parts.push(format!(">= {min}"));
    }
    if let Some(increase) = &metric.max_increase {
        if let Some(ratio) = increase.ratio {
            parts.push(format!("<= {ratio} x stable"));
        }
        if let Some(diff) = increase.difference {
            parts.push(format!("<= stable + {diff}"));
        }
    }
    parts.join(" and ")
}

/// Judges one measurement of `metric`.
///
/// - candidate without data → `Inconclusive` (or `Failed` with `noData: fail`);
/// - an absolute bound crossed → `Failed`;
/// - a relative bound crossed → `Failed`; stable without data → `Inconclusive`;
/// - a ratio against a stable value of 0 passes only if the candidate is 0 too (use
///   `difference` for metrics that are often zero).
pub fn judge(
    metric: &AnalysisMetric,
    candidate: Option<f64>,
    stable: Option<f64>,
) -> MetricMeasurement {
    let threshold = describe_threshold(metric);
    let result = |verdict| MetricMeasurement {
        name: metric.name.clone(),
        verdict,
        candidate: usable(candidate),
        stable: usable(stable),
        threshold: threshold.clone(),
        error: None,
    };
    let Some(value) = usable(candidate) else {
        return result(match metric.no_data {
            NoDataPolicy::Inconclusive => Verdict::Inconclusive,
            NoDataPolicy::Fail => Verdict::Failed,
        });
    };
    if metric.max.is_some_and(|max| value > max) || metric.min.is_some_and(|min| value < min) {
        return result(Verdict::Failed);
    }
    if let Some(increase) = &metric.max_increase {
        let Some(base) = usable(stable) else {
            return result(Verdict::Inconclusive);
        };
        if let Some(ratio) = increase.ratio {
            let crossed = if base == 0.0 {
                value > 0.0
            } else {
                value > base * ratio
            };
            if crossed {
                return result(Verdict::Failed);
            }
        }
        if let Some(diff) = increase.difference
            && value > base + diff
        {
            return result(Verdict::Failed);
        }
    }
    result(Verdict::Passed)
}

/// A measurement that could not be taken.
pub fn query_error(metric: &AnalysisMetric, error: impl Into<String>) -> MetricMeasurement {
    MetricMeasurement {
        name: metric.name.clone(),
        verdict: Verdict::Error,
        candidate: None,
        stable: None,
        threshold: describe_threshold(metric),
        error: Some(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RelativeThreshold;

    fn metric(max: Option<f64>, ratio: Option<f64>, diff: Option<f64>) -> AnalysisMetric {
        AnalysisMetric {
            name: "error-rate".into(),
            query: "q".into(),
            max,
            min: None,
            max_increase: (ratio.is_some() || diff.is_some()).then_some(RelativeThreshold {
                ratio,
                difference: diff,
            }),
            judge: crate::api::Judge::Threshold,
            sequential: None,
            failure_limit: 0,
            inconclusive_limit: 0,
            consecutive_error_limit: 4,
            no_data: NoDataPolicy::Inconclusive,
            dry_run: false,
        }
    }

    #[test]
    fn no_data_is_never_a_pass() {
        let m = metric(Some(0.05), None, None);
        assert_eq!(judge(&m, None, Some(0.01)).verdict, Verdict::Inconclusive);
        assert_eq!(
            judge(&m, Some(f64::NAN), Some(0.01)).verdict,
            Verdict::Inconclusive
        );
        let strict = AnalysisMetric {
            no_data: NoDataPolicy::Fail,
            ..m
        };
        assert_eq!(judge(&strict, None, None).verdict, Verdict::Failed);
    }

    #[test]
    fn relative_checks_need_stable_data() {
        let m = metric(None, Some(1.5), None);
        assert_eq!(judge(&m, Some(0.01), None).verdict, Verdict::Inconclusive);
        assert_eq!(
            judge(&m, Some(0.01), Some(f64::NAN)).verdict,
            Verdict::Inconclusive
        );
        assert_eq!(judge(&m, Some(0.014), Some(0.01)).verdict, Verdict::Passed);
        assert_eq!(judge(&m, Some(0.03), Some(0.01)).verdict, Verdict::Failed);
    }

    #[test]
    fn absolute_failure_wins_over_missing_stable() {
        let m = metric(Some(0.05), Some(1.5), None);
        assert_eq!(judge(&m, Some(0.2), None).verdict, Verdict::Failed);
    }

    #[test]
    fn infinity_is_data_and_crosses_bounds() {
        let m = metric(Some(1.0), None, None);
        assert_eq!(
            judge(&m, Some(f64::INFINITY), None).verdict,
            Verdict::Failed
        );
        let r = metric(None, Some(1.5), None);
        assert_eq!(
            judge(&r, Some(f64::INFINITY), Some(0.2)).verdict,
            Verdict::Failed
        );
        assert_eq!(
            judge(&r, Some(0.2), Some(f64::INFINITY)).verdict,
            Verdict::Passed
        );
    }

    #[test]
    fn zero_stable_with_ratio_and_difference() {
        let r = metric(None, Some(2.0), None);
        assert_eq!(judge(&r, Some(0.0), Some(0.0)).verdict, Verdict::Passed);
        assert_eq!(judge(&r, Some(0.001), Some(0.0)).verdict, Verdict::Failed);
        let d = metric(None, None, Some(0.01));
        assert_eq!(judge(&d, Some(0.005), Some(0.0)).verdict, Verdict::Passed);
        assert_eq!(judge(&d, Some(0.02), Some(0.0)).verdict, Verdict::Failed);
    }

    #[test]
    fn thresholds_are_described() {
        let m = metric(Some(0.05), Some(1.5), Some(0.01));
        assert_eq!(
            describe_threshold(&m),
            "<= 0.05 and <= 1.5 x stable and <= stable + 0.01"
        );
    }
}
