//! The proxy's Prometheus metrics: named as the built-in analysis queries expect
//! (`http_requests_total{code}`, `http_request_duration_seconds`, `model_prediction_score`), so
//! they work without a service mesh once scraped with `namespace`/`service` target labels.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: u16,
}

/// Why a request's features or scores were not recorded.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values read as snake_case in PromQL
pub enum SkipReason {
    /// The request or response body is not JSON.
    not_json,
    /// JSON, but not an MLflow scoring request.
    not_scoring_request,
    /// The request failed (no prediction to pair with the features).
    failed,
    /// The recorder's queue was full.
    queue_full,
}

/// Why captured requests were lost.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum DropReason {
    /// The recorder's queue was full (it is behind); the request itself was answered.
    queue_full,
    /// Writing the window to the object store failed.
    write_failed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SkipLabels {
    pub reason: SkipReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub reason: DropReason,
}

/// Every series the proxy exports.
pub struct ProxyMetrics {
    registry: Registry,
    pub requests: Family<CodeLabels, Counter>,
    pub duration: Histogram,
    pub request_size: Histogram,
    pub scores: Histogram,
    pub skipped: Family<SkipLabels, Counter>,
    pub captured_rows: Counter,
    pub windows_written: Counter,
    pub dropped: Family<DropLabels, Counter>,
}

impl ProxyMetrics {
    /// Metrics with score buckets `score_buckets` (upper bounds; `+Inf` is implicit).
    pub fn new(score_buckets: &[f64]) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<CodeLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests answered, by HTTP status",
            requests.clone(),
        );
        // 1 ms … ~16 s.
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response, model server included",
            duration.clone(),
        );
        let request_size = Histogram::new(exponential_buckets(64.0, 4.0, 10));
        registry.register(
            "http_request_size_bytes",
            "Size of request bodies",
            request_size.clone(),
        );
        let scores = Histogram::new(score_buckets.iter().copied());
        registry.register(
            "model_prediction_score",
            "Scores in the model server's responses",
            scores.clone(),
        );
        let skipped = Family::<SkipLabels, Counter>::default();
        registry.register(
            "mlrollout_proxy_unrecorded_requests",
            "Requests whose features or scores were not recorded, by reason",
            skipped.clone(),
        );
        let captured_rows = Counter::default();
        registry.register(
            "mlrollout_proxy_captured_rows",
            "Feature rows written to the capture",
            captured_rows.clone(),
        );
        let windows_written = Counter::default();
        registry.register(
            "mlrollout_proxy_capture_windows",
            "Capture windows written to the object store",
            windows_written.clone(),
        );
        let dropped = Family::<DropLabels, Counter>::default();
        registry.register(
            "mlrollout_proxy_capture_dropped_requests",
            "Sampled requests lost before reaching the object store, by reason",
            dropped.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            request_size,
            scores,
            skipped,
            captured_rows,
            windows_written,
            dropped,
        }
    }

    /// Counts one answered request.
    pub fn answered(&self, code: u16, seconds: f64) {
        self.requests.get_or_create(&CodeLabels { code }).inc();
        self.duration.observe(seconds);
    }

    pub fn skip(&self, reason: SkipReason) {
        self.skipped.get_or_create(&SkipLabels { reason }).inc();
    }

    pub fn drop_requests(&self, reason: DropReason, requests: u64) {
        self.dropped
            .get_or_create(&DropLabels { reason })
            .inc_by(requests);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Default score buckets: twenty of width 0.05 over [0, 1] (probabilities, 0/1 labels).
pub fn default_score_buckets() -> Vec<f64> {
    (1..=20).map(|i| f64::from(i) / 20.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_carry_the_names_the_builtin_queries_use() {
        let metrics = ProxyMetrics::new(&default_score_buckets());
        metrics.answered(200, 0.01);
        metrics.answered(502, 0.5);
        metrics.scores.observe(0.42);
        metrics.skip(SkipReason::not_json);
        let text = metrics.encode();
        for line in [
            "http_requests_total{code=\"200\"} 1",
            "http_requests_total{code=\"502\"} 1",
            "http_request_duration_seconds_count 2",
            "model_prediction_score_bucket{le=\"0.45\"} 1",
            "model_prediction_score_bucket{le=\"0.4\"} 0",
            "mlrollout_proxy_unrecorded_requests_total{reason=\"not_json\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }
}
