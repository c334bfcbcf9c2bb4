//! The sequential judge: an anytime-valid test of whether the candidate's rate of bad events
//! (errors, slow requests) is higher than stable's, from the counters both variants keep.
//!
//! A threshold rule checked every interval ("error rate ≤ 1.5 × stable, failure limit 1") has
//! no error rate anyone can state: each look is another chance to roll back a healthy candidate
//! by chance. This judge reads the *cumulative* counts since the step began and compares two
//! e-values (test martingales) with fixed boundaries, so the chance of a false verdict stays
//! below its bound however often it is looked at (Ville's inequality).
//!
//! The model (as in Lindon, Sanden and Shirikian, "Rapid regression detection in software
//! deployments through sequential testing", KDD 2022): each variant's bad events are a Poisson
//! process proportional to its requests, with rate ratio `ρ = rate_candidate / rate_stable`.
//! Given the total number of bad events, the candidate's share of them is binomial with
//! `p(ρ) = ρπ / (ρπ + 1 − π)`, where `π` is the candidate's share of requests. Nothing about
//! the baseline error rate needs to be known.
//!
//! - *Regression*: the mixture of likelihood ratios `L(ρₖ) / L(1)` over ratios
//!   `ρₖ ≥ minEffect`. Under any `ρ ≤ 1` it is a supermartingale (monotone likelihood ratio),
//!   so it reaches `1/alpha` with probability at most `alpha`: that is the false-rollback rate.
//! - *No regression*: the mixture of `L(ρₖ) / L(minEffect)` over ratios `ρₖ < minEffect`. Under
//!   any `ρ ≥ minEffect` it reaches `1/falsePromotion` with probability at most
//!   `falsePromotion`: that is the rate at which a regression of `minEffect` is promoted.
//!
//! Pure: the Prometheus adapter reads the counters, this decides.

use crate::api::{SequentialJudge, Verdict};

/// The counters of one variant since the step began.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counts {
    /// Bad events (errors, slow requests).
    pub bad: f64,
    /// All requests.
    pub total: f64,
}

impl Counts {
    /// The rate of bad events, when there were requests.
    pub fn rate(&self) -> Option<f64> {
        (self.total > 0.0).then(|| self.bad / self.total)
    }

    /// Counts that can be judged: finite and not negative; bad events at most the requests
    /// (Prometheus' `increase()` extrapolates, so a variant failing every request can show a
    /// few more errors than requests).
    fn usable(self) -> Option<Counts> {
        let finite = self.bad.is_finite() && self.total.is_finite();
        (finite && self.bad >= 0.0 && self.total > 0.0).then(|| Counts {
            bad: self.bad.min(self.total),
            total: self.total,
        })
    }
}

/// The evidence after one look.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// E-value for "the candidate is worse by at least `minEffect`" against "no worse".
    pub regression: f64,
    /// E-value for "worse by less than `minEffect`" against "worse by `minEffect`".
    pub no_regression: f64,
    /// Observed ratio of the candidate's bad-event rate to stable's (NaN without bad events).
    pub ratio: f64,
}

/// What the judge concludes from one look at the cumulative counts.
#[derive(Debug, Clone, PartialEq)]
pub struct SequentialOutcome {
    pub verdict: Verdict,
    /// `None` when a variant had no requests yet.
    pub evidence: Option<Evidence>,
}

/// The grid of alternative ratios: steps of `√minEffect` in log space, a regression mixture
/// from `minEffect` up to 32× and a no-regression mixture from just below `minEffect` down to
/// 1/32 (a much better candidate also rules out a regression).
const RATIO_SPAN: f64 = 32.0;
/// At most this many ratios per mixture (a `minEffect` close to 1 would need very many).
const MAX_COMPONENTS: usize = 48;

fn ratio_grid(min_effect: f64, upwards: bool) -> Vec<f64> {
    let step = min_effect.ln() / 2.0;
    let reach = if upwards {
        RATIO_SPAN.ln() - min_effect.ln()
    } else {
        RATIO_SPAN.ln() + min_effect.ln()
    };
    let count = ((reach / step).ceil() as usize).clamp(1, MAX_COMPONENTS);
    (0..count)
        .map(|k| {
            if upwards {
                min_effect.ln() + step * k as f64
            } else {
                min_effect.ln() - step * (k + 1) as f64
            }
        })
        .map(f64::exp)
        .collect()
}

/// The binomial log-likelihood of the candidate's share of bad events under ratio `rho`.
fn log_likelihood(rho: f64, share: f64, candidate_bad: f64, stable_bad: f64) -> f64 {
    let p = rho * share / (rho * share + 1.0 - share);
    // 0 × ln 0 is 0: a side without bad events contributes nothing.
    let term = |count: f64, probability: f64| {
        if count == 0.0 {
            0.0
        } else {
            count * probability.ln()
        }
    };
    term(candidate_bad, p) + term(stable_bad, 1.0 - p)
}

/// The mean of `L(ρₖ)/L(null)` over the grid, computed in log space (counts in the millions
/// overflow `exp`).
fn mixture(grid: &[f64], null: f64, share: f64, candidate_bad: f64, stable_bad: f64) -> f64 {
    let base = log_likelihood(null, share, candidate_bad, stable_bad);
    let logs: Vec<f64> = grid
        .iter()
        .map(|&rho| log_likelihood(rho, share, candidate_bad, stable_bad) - base)
        .collect();
    let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = logs.iter().map(|l| (l - top).exp()).sum();
    (top + (sum / grid.len() as f64).ln()).exp()
}

/// The two e-values for the cumulative counts of both variants.
pub fn evidence(settings: &SequentialJudge, candidate: Counts, stable: Counts) -> Option<Evidence> {
    let (candidate, stable) = (candidate.usable()?, stable.usable()?);
    let share = candidate.total / (candidate.total + stable.total);
    let min_effect = settings.min_effect;
    let (cb, sb) = (candidate.bad, stable.bad);
    let ratio = match (candidate.rate(), stable.rate()) {
        (Some(c), Some(s)) if s > 0.0 => c / s,
        _ => f64::NAN,
    };
    Some(Evidence {
        regression: mixture(&ratio_grid(min_effect, true), 1.0, share, cb, sb),
        no_regression: mixture(&ratio_grid(min_effect, false), min_effect, share, cb, sb),
        ratio,
    })
}

/// Judges the cumulative counts:
/// - `Failed` once the evidence of a regression reaches `1/alpha`;
/// - with a `falsePromotion` bound, `Passed` once the evidence against a regression of
///   `minEffect` reaches `1/falsePromotion`, `Inconclusive` until one of them does;
/// - without one, `Passed` while there is no evidence of a regression (the step's `count`
///   of such looks then passes it, and false rollbacks stay bounded by `alpha`);
/// - `Inconclusive` while a variant has had no requests.
pub fn judge(settings: &SequentialJudge, candidate: Counts, stable: Counts) -> SequentialOutcome {
    let Some(evidence) = evidence(settings, candidate, stable) else {
        return SequentialOutcome {
            verdict: Verdict::Inconclusive,
            evidence: None,
        };
    };
    let verdict = if evidence.regression >= 1.0 / settings.alpha {
        Verdict::Failed
    } else {
        match settings.false_promotion {
            Some(bound) if evidence.no_regression >= 1.0 / bound => Verdict::Passed,
            Some(_) => Verdict::Inconclusive,
            None => Verdict::Passed,
        }
    };
    SequentialOutcome {
        verdict,
        evidence: Some(evidence),
    }
}

/// How a sequential metric is shown in status: its settings and, after a look, the evidence
/// against its boundaries.
pub fn describe(settings: &SequentialJudge, evidence: Option<&Evidence>) -> String {
    let bounds = match settings.false_promotion {
        Some(beta) => format!(
            "sequential: bad-event ratio < {} (alpha {}, falsePromotion {beta})",
            settings.min_effect, settings.alpha
        ),
        None => format!(
            "sequential: no regression of {}x (alpha {})",
            settings.min_effect, settings.alpha
        ),
    };
    let Some(e) = evidence else {
        return bounds;
    };
    let mut text = format!(
        "{bounds}; regression evidence {:.3} of {}",
        e.regression,
        1.0 / settings.alpha
    );
    if let Some(beta) = settings.false_promotion {
        text.push_str(&format!(
            ", no-regression evidence {:.3} of {}",
            e.no_regression,
            1.0 / beta
        ));
    }
    if e.ratio.is_finite() {
        text.push_str(&format!(", observed ratio {:.3}", e.ratio));
    }
    text
}

/// The counter templates of a sequential metric, `(total, bad)`: its own, or the built-in
/// requests and 5xx answers (or slow requests, with `slowerThan`) of the variant's Service.
pub fn counter_queries(settings: &SequentialJudge) -> (String, String) {
    let total = settings
        .total_query
        .clone()
        .unwrap_or_else(super::builtin::requests_since_step_query);
    let bad = match (&settings.bad_query, &settings.slower_than) {
        (Some(bad), _) => bad.clone(),
        (None, Some(le)) => super::builtin::slower_than_since_step_query(le),
        (None, None) => super::builtin::errors_since_step_query(),
    };
    (total, bad)
}

/// One look of a sequential metric as a measurement: the verdict, both variants' bad-event
/// rates, and the evidence against the boundaries as its threshold text.
pub fn measurement(
    metric: &crate::api::AnalysisMetric,
    candidate: Option<Counts>,
    stable: Option<Counts>,
) -> super::MetricMeasurement {
    let settings = metric.sequential.clone().unwrap_or_default();
    let no_data = Counts {
        bad: 0.0,
        total: 0.0,
    };
    let (c, s) = (candidate.unwrap_or(no_data), stable.unwrap_or(no_data));
    let outcome = judge(&settings, c, s);
    super::MetricMeasurement {
        name: metric.name.clone(),
        verdict: outcome.verdict,
        candidate: c.rate(),
        stable: s.rate(),
        threshold: describe(&settings, outcome.evidence.as_ref()),
        error: None,
    }
}

#[cfg(test)]
#[path = "sequential_tests.rs"]
mod tests;
