//! The [`Analyzer`] on Prometheus' HTTP API: instant queries of each metric's template for the
//! candidate and for stable, and PSI between the variants' prediction-score histograms.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;

use super::{Analyzer, MeasureRequest};
use crate::api::AnalysisMetric;
use crate::core::verdict::builtin::{PREDICTION_PSI, render};
use crate::core::verdict::{MetricMeasurement, Verdict, describe_threshold, judge, query_error};

/// Why a query gave no number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("Prometheus is unreachable: {0}")]
    Unreachable(String),
    #[error("Prometheus rejected the query ({error_type}): {message}")]
    BadQuery { error_type: String, message: String },
    #[error("Prometheus answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("the query returned {0} series; aggregate it to one (e.g. sum(...))")]
    TooManySeries(usize),
    #[error("unexpected answer from Prometheus: {0}")]
    Malformed(String),
}

impl QueryError {
    /// Whether asking again soon may succeed: the server was unreachable, overloaded or failing
    /// (a rejected query or an answer we cannot read will not change).
    pub fn is_transient(&self) -> bool {
        match self {
            QueryError::Unreachable(_) => true,
            QueryError::Http { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// Retries of one query: three attempts within about a second, so that a blip does not cost a
/// measurement while an outage is still reported within the analysis interval.
pub const QUERY_RETRY: crate::retry::RetryPolicy = crate::retry::RetryPolicy {
    attempts: 3,
    base: std::time::Duration::from_millis(150),
    max: std::time::Duration::from_secs(1),
};

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A Prometheus HTTP API client.
#[derive(Debug, Clone)]
pub struct PrometheusClient {
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

/// Parses a Prometheus sample value (`"0.5"`, `"NaN"`, `"+Inf"`, `"-Inf"`).
pub fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

fn sample_from(value: &serde_json::Value) -> Option<f64> {
    value.get(1).and_then(|v| v.as_str()).and_then(parse_value)
}

impl PrometheusClient {
    pub fn new(timeout: Duration) -> Result<Self, QueryError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| QueryError::Unreachable(e.to_string()))?;
        Ok(Self { http })
    }

    /// An instant query; the result as samples (a scalar is one unlabelled sample). An
    /// unreachable server or a 5xx/429 answer is retried briefly ([`QUERY_RETRY`]).
    pub async fn query(
        &self,
        address: &str,
        token: Option<&str>,
        promql: &str,
    ) -> Result<Vec<Sample>, QueryError> {
        crate::retry::retry_if(QUERY_RETRY, QueryError::is_transient, || {
            self.query_once(address, token, promql)
        })
        .await
    }

    async fn query_once(
        &self,
        address: &str,
        token: Option<&str>,
        promql: &str,
    ) -> Result<Vec<Sample>, QueryError> {
        let url = format!("{}/api/v1/query", address.trim_end_matches('/'));
        let mut request = self.http.post(url).form(&[("query", promql)]);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| QueryError::Unreachable(error_chain(&e)))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| QueryError::Unreachable(error_chain(&e)))?;
        let parsed: ApiResponse = match serde_json::from_str(&body) {
            Ok(p) => p,
            Err(_) if status >= 400 => {
                return Err(QueryError::Http {
                    status,
                    body: body.chars().take(200).collect(),
                });
            }
            Err(e) => return Err(QueryError::Malformed(e.to_string())),
        };
        if parsed.status != "success" {
            return Err(QueryError::BadQuery {
                error_type: parsed.error_type.unwrap_or_default(),
                message: parsed.error.unwrap_or_default(),
            });
        }
        let data = parsed
            .data
            .ok_or_else(|| QueryError::Malformed("no data".into()))?;
        match data.result_type.as_str() {
            "vector" => Ok(data
                .result
                .as_array()
                .map(|series| {
                    series
                        .iter()
                        .filter_map(|s| {
                            let labels = s
                                .get("metric")
                                .and_then(|m| serde_json::from_value(m.clone()).ok())
                                .unwrap_or_default();
                            let value = sample_from(s.get("value")?)?;
                            Some(Sample { labels, value })
                        })
                        .collect()
                })
                .unwrap_or_default()),
            "scalar" => Ok(sample_from(&data.result)
                .map(|value| Sample {
                    labels: BTreeMap::new(),
                    value,
                })
                .into_iter()
                .collect()),
            other => Err(QueryError::Malformed(format!(
                "result type {other} is not a vector or scalar"
            ))),
        }
    }

    /// A query expected to give at most one number; no series is `None` (no data).
    pub async fn query_scalar(
        &self,
        address: &str,
        token: Option<&str>,
        promql: &str,
    ) -> Result<Option<f64>, QueryError> {
        let samples = self.query(address, token, promql).await?;
        match samples.len() {
            0 => Ok(None),
            1 => Ok(Some(samples[0].value)),
            n => Err(QueryError::TooManySeries(n)),
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Cumulative `le` buckets (any order, floats) → per-bucket counts in `le` order.
pub fn bucket_counts(samples: &[Sample]) -> Vec<(f64, f64)> {
    let mut buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| {
            let le = parse_value(s.labels.get("le")?)?;
            (!le.is_nan() && s.value.is_finite()).then_some((le, s.value.max(0.0)))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut previous = 0.0;
    buckets
        .into_iter()
        .map(|(le, cumulative)| {
            // increase() extrapolates, so cumulative counts can dip: clamp at zero.
            let count = (cumulative - previous).max(0.0);
            previous = previous.max(cumulative);
            (le, count)
        })
        .collect()
}

/// PSI between two histograms with the same buckets (smoothing as the drift engine's).
/// `None` when either side has no observations or the buckets differ.
pub fn histogram_psi(stable: &[(f64, f64)], candidate: &[(f64, f64)]) -> Option<f64> {
    if stable.len() != candidate.len() || stable.is_empty() {
        return None;
    }
    if stable.iter().zip(candidate).any(|(a, b)| a.0 != b.0) {
        return None;
    }
    let round = |v: f64| v.round().clamp(0.0, u64::MAX as f64) as u64;
    let s: Vec<u64> = stable.iter().map(|b| round(b.1)).collect();
    let c: Vec<u64> = candidate.iter().map(|b| round(b.1)).collect();
    if s.iter().sum::<u64>() == 0 || c.iter().sum::<u64>() == 0 {
        return None;
    }
    crate::drift::stats::psi_from_counts(&s, &c, 0.001).ok()
}

/// Analyzer backed by Prometheus.
#[derive(Debug, Clone)]
pub struct PrometheusAnalyzer {
    client: PrometheusClient,
}

impl PrometheusAnalyzer {
    pub fn new(timeout: Duration) -> Result<Self, QueryError> {
        Ok(Self {
            client: PrometheusClient::new(timeout)?,
        })
    }

    async fn measure_metric(
        &self,
        request: &MeasureRequest<'_>,
        metric: &AnalysisMetric,
    ) -> MetricMeasurement {
        let Some(analysis) = request.spec.rollout.analysis.as_ref() else {
            return query_error(metric, "spec.rollout.analysis.prometheus is not configured");
        };
        let address = &analysis.prometheus.address;
        if metric.judge == crate::api::Judge::Sequential {
            return super::sequential::measure(
                &self.client,
                request,
                metric,
                address,
                &analysis.interval,
            )
            .await;
        }
        let token = request.bearer_token;
        let query_for = |variant: &str| {
            render(
                &metric.query,
                request.namespace,
                request.name,
                variant,
                &analysis.interval,
            )
        };
        if metric.name == PREDICTION_PSI {
            let stable = self
                .client
                .query(address, token, &query_for("stable"))
                .await;
            let candidate = self
                .client
                .query(address, token, &query_for("candidate"))
                .await;
            return match (stable, candidate) {
                (Ok(s), Ok(c)) => {
                    let psi = histogram_psi(&bucket_counts(&s), &bucket_counts(&c));
                    judge(metric, psi, None)
                }
                (Err(e), _) | (_, Err(e)) => query_error(metric, e.to_string()),
            };
        }
        let candidate = match self
            .client
            .query_scalar(address, token, &query_for("candidate"))
            .await
        {
            Ok(v) => v,
            Err(e) => return query_error(metric, e.to_string()),
        };
        // Stable is only needed for relative thresholds.
        let stable = if metric.max_increase.is_some() {
            match self
                .client
                .query_scalar(address, token, &query_for("stable"))
                .await
            {
                Ok(v) => v,
                Err(e) => return query_error(metric, e.to_string()),
            }
        } else {
            None
        };
        judge(metric, candidate, stable)
    }
}

impl Analyzer for PrometheusAnalyzer {
    fn measure<'a>(&'a self, request: MeasureRequest<'a>) -> BoxFuture<'a, Vec<MetricMeasurement>> {
        async move {
            let mut out = Vec::with_capacity(request.metrics.len());
            for metric in &request.metrics {
                out.push(self.measure_metric(&request, metric).await);
            }
            out
        }
        .boxed()
    }
}

/// `true` when every measurement of a round is a query error (Prometheus is down).
pub fn all_errors(measurements: &[MetricMeasurement]) -> bool {
    !measurements.is_empty() && measurements.iter().all(|m| m.verdict == Verdict::Error)
}

/// Threshold text of a metric (for metrics labels).
pub fn threshold_label(metric: &AnalysisMetric) -> String {
    describe_threshold(metric)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(le: &str, value: f64) -> Sample {
        Sample {
            labels: BTreeMap::from([("le".to_string(), le.to_string())]),
            value,
        }
    }

    #[test]
    fn values_parse_like_prometheus_writes_them() {
        assert_eq!(parse_value("0.25"), Some(0.25));
        assert!(parse_value("NaN").unwrap().is_nan());
        assert_eq!(parse_value("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_value("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_value("x"), None);
    }

    #[test]
    fn cumulative_buckets_become_counts_in_order() {
        let samples = vec![
            sample("+Inf", 10.0),
            sample("0.5", 4.0),
            sample("0.1", 1.0),
            sample("1", 9.5),
        ];
        let counts = bucket_counts(&samples);
        assert_eq!(
            counts,
            vec![(0.1, 1.0), (0.5, 3.0), (1.0, 5.5), (f64::INFINITY, 0.5)]
        );
        // Extrapolation can make a bucket dip below the previous one: never negative.
        let dipping = bucket_counts(&[sample("0.1", 5.0), sample("0.5", 4.9), sample("+Inf", 6.0)]);
        assert!(dipping.iter().all(|(_, c)| *c >= 0.0));
    }

    #[test]
    fn histogram_psi_matches_the_drift_engine_and_needs_data() {
        let a = vec![(0.5, 50.0), (f64::INFINITY, 50.0)];
        let b = vec![(0.5, 50.0), (f64::INFINITY, 50.0)];
        assert!(histogram_psi(&a, &b).unwrap().abs() < 1e-12);
        let shifted = vec![(0.5, 10.0), (f64::INFINITY, 90.0)];
        let psi = histogram_psi(&a, &shifted).unwrap();
        let expected = crate::drift::stats::psi_from_counts(&[50, 50], &[10, 90], 0.001).unwrap();
        assert!((psi - expected).abs() < 1e-12 && psi > 0.5);
        assert_eq!(histogram_psi(&a, &[(0.5, 0.0), (f64::INFINITY, 0.0)]), None);
        assert_eq!(
            histogram_psi(&a, &[(0.25, 1.0), (f64::INFINITY, 1.0)]),
            None
        );
    }
}
