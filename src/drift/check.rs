//! The operator's drift check: the drift engine on the resource's data (prepared references
//! cached per model version), plus accuracy from labelled data or a PromQL query.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::analysis::prometheus::PrometheusClient;
use crate::api::{
    DriftSummary, DriftTest, FeatureDriftStatus, LabelJoinStatus, ModelDeployment, Reason, Severity,
};
use crate::core::lifecycle::DriftObservation;
use crate::drift::data::{FetchContext, MAX_NAME_CHARS, excerpt};
use crate::drift::engine::{CaptureLocation, CheckRequest, DriftEngine, DriftReport};
use crate::drift::stats::FeatureVerdict;
use crate::drift::stats::decision::{Severity as StatsSeverity, TestKind};
use crate::mlflow::{MlflowAuth, MlflowClient};
use crate::registry::RegistryCredentials;
use crate::storage::StoreOptions;

/// What the operator read for a resource's drift check besides the resource itself.
#[derive(Clone, Copy)]
pub struct DriftInputs<'a> {
    /// The MLflow credentials of the resource (for `runs:/` and `mlflow-artifacts:/` data).
    pub credentials: &'a RegistryCredentials,
    /// The bearer token of `spec.rollout.analysis.prometheus` (for
    /// `performance.accuracyQuery`).
    pub prometheus_token: Option<&'a str>,
    /// Object-store settings: `spec.storage` and the credentials of its Secret.
    pub storage: &'a StoreOptions,
    /// Where the proxy writes captured traffic (`spec.serving.proxy.capture.uri`), for
    /// `drift.current.capture`.
    pub capture_base: Option<&'a str>,
}

impl<'a> DriftInputs<'a> {
    /// MLflow credentials only: no token, no object-store settings, no capture.
    pub fn new(credentials: &'a RegistryCredentials) -> Self {
        static NO_STORAGE: std::sync::LazyLock<StoreOptions> =
            std::sync::LazyLock::new(StoreOptions::default);
        Self {
            credentials,
            prometheus_token: None,
            storage: &NO_STORAGE,
            capture_base: None,
        }
    }
}

/// Runs a drift check for a resource (the drift engine implements it).
pub trait DriftCheck: Send + Sync {
    fn check<'a>(
        &'a self,
        resource: &'a ModelDeployment,
        inputs: DriftInputs<'a>,
    ) -> BoxFuture<'a, DriftObservation>;
}

/// Most features kept in `status.drift.features` (the most drifted first).
pub const MAX_FEATURES_IN_STATUS: usize = 50;

/// Most drift engines kept (one per MLflow server and credential set, each with its reference
/// cache): authors choose both, so the least recently used goes past this.
pub const MAX_CACHED_ENGINES: std::num::NonZeroUsize = std::num::NonZeroUsize::new(16).unwrap();

/// Drift checks with one engine (and its reference cache) per MLflow server.
pub struct EngineDriftCheck {
    engines: Mutex<lru::LruCache<String, Arc<DriftEngine>>>,
    prometheus: Option<PrometheusClient>,
    max_bytes: u64,
    memory_limit: u64,
    timeout: Duration,
    policy: crate::drift::data::policy::DataSourcePolicy,
}

impl Default for EngineDriftCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl EngineDriftCheck {
    /// Reads any source ([`DataSourcePolicy::unrestricted`]); `mlrollout run` sets the
    /// cluster's policy with [`EngineDriftCheck::with_policy`].
    ///
    /// [`DataSourcePolicy::unrestricted`]: crate::drift::data::policy::DataSourcePolicy::unrestricted
    pub fn new() -> Self {
        Self::with_limits(
            crate::drift::data::DEFAULT_MAX_BYTES,
            crate::drift::data::DEFAULT_FETCH_TIMEOUT,
        )
    }

    /// Every dataset read at most `max_bytes`, within `timeout`.
    pub fn with_limits(max_bytes: u64, timeout: Duration) -> Self {
        Self {
            engines: Mutex::new(lru::LruCache::new(MAX_CACHED_ENGINES)),
            prometheus: PrometheusClient::new(Duration::from_secs(10)).ok(),
            max_bytes,
            timeout,
            memory_limit: crate::drift::data::DEFAULT_MEMORY_LIMIT,
            policy: crate::drift::data::policy::DataSourcePolicy::unrestricted(),
        }
    }

    /// Past this much memory a check's datasets are streamed (the operator's
    /// `--data-memory-limit`).
    pub fn with_memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// Reads only what `policy` allows (the operator's `--data-allow-host` / `--data-dir`).
    pub fn with_policy(mut self, policy: crate::drift::data::policy::DataSourcePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// One engine (and reference cache) per MLflow server and credential set.
    fn engine(
        &self,
        tracking_uri: &str,
        credentials: &RegistryCredentials,
    ) -> Result<Arc<DriftEngine>, String> {
        let key = format!("{tracking_uri}|{}", credentials.identity());
        let mut engines = self
            .engines
            .lock()
            .map_err(|_| "engine cache poisoned".to_string())?;
        if let Some(engine) = engines.get(&key) {
            return Ok(engine.clone());
        }
        let auth = MlflowAuth::from(credentials);
        let client = MlflowClient::new(tracking_uri, auth, Duration::from_secs(60))
            .map_err(|e| e.to_string())?;
        let fetch = FetchContext::new()
            .with_max_bytes(self.max_bytes)
            .with_memory_limit(self.memory_limit)
            .with_timeout(self.timeout)
            .with_policy(self.policy.clone())
            .with_mlflow(client);
        let engine = Arc::new(DriftEngine::new(fetch));
        engines.put(key, engine.clone());
        Ok(engine)
    }

    async fn run(
        &self,
        resource: &ModelDeployment,
        credentials: &RegistryCredentials,
        prometheus_token: Option<&str>,
        storage: &StoreOptions,
        capture_base: Option<&str>,
    ) -> DriftObservation {
        let spec = &resource.spec;
        let Some(drift) = &spec.drift else {
            return failed(Reason::NoDriftSpec, "spec.drift is not set".into());
        };
        let stable = resource
            .status
            .as_ref()
            .and_then(|s| s.stable_version.clone());
        let capture = CaptureLocation {
            base: capture_base,
            namespace: resource.metadata.namespace.as_deref().unwrap_or_default(),
            name: resource.metadata.name.as_deref().unwrap_or_default(),
        };
        let mut request =
            match CheckRequest::from_spec(drift, spec.performance.as_ref(), stable, &capture) {
                Ok(r) => r,
                Err(e) => return failed(e.reason(), e.to_string()),
            };
        request.storage = storage.clone();
        let engine = match self.engine(&spec.model.tracking_uri, credentials) {
            Ok(e) => e,
            Err(message) => return failed(Reason::InvalidTrackingUri, message),
        };
        let report = match engine.check(&request).await {
            Ok(r) => r,
            Err(e) => return failed(e.reason(), e.to_string()),
        };
        let mut summary = summarize(&report);
        if summary.accuracy.is_none()
            && let Some(query) = spec
                .performance
                .as_ref()
                .and_then(|p| p.accuracy_query.as_deref())
        {
            let Some(address) = spec
                .rollout
                .analysis
                .as_ref()
                .map(|a| a.prometheus.address.clone())
            else {
                return failed(
                    Reason::NoPrometheus,
                    "performance.accuracyQuery needs spec.rollout.analysis.prometheus.address"
                        .into(),
                );
            };
            // Never a silent skip: without a client the check says so.
            let Some(client) = &self.prometheus else {
                return failed(
                    Reason::AccuracyQueryFailed,
                    "performance.accuracyQuery: the operator has no Prometheus client".into(),
                );
            };
            match client.query_scalar(&address, prometheus_token, query).await {
                Ok(v) => summary.accuracy = v.filter(|a| a.is_finite()),
                Err(e) => {
                    return failed(
                        Reason::AccuracyQueryFailed,
                        format!("performance.accuracyQuery: {e}"),
                    );
                }
            }
        }
        DriftObservation::Completed {
            sample_count: i64::try_from(report.current_rows).ok(),
            summary,
        }
    }
}

/// Longest failure message carried into a condition or an Event (they quote data and names
/// from files, which must not flood the status).
const MAX_MESSAGE_CHARS: usize = 1024;

fn failed(reason: Reason, message: String) -> DriftObservation {
    DriftObservation::Failed {
        reason,
        message: excerpt(&message, MAX_MESSAGE_CHARS),
    }
}

fn severity(s: StatsSeverity) -> Severity {
    match s {
        StatsSeverity::Ok => Severity::Ok,
        StatsSeverity::Medium => Severity::Medium,
        StatsSeverity::High => Severity::High,
    }
}

fn drift_test(t: TestKind) -> DriftTest {
    match t {
        TestKind::Ks => DriftTest::Ks,
        TestKind::Chi2 => DriftTest::Chi2,
    }
}

fn feature_status(name: String, f: &FeatureVerdict) -> FeatureDriftStatus {
    let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
    let (statistic, p_value_adjusted, psi) = (
        finite(f.statistic),
        finite(f.p_value_adjusted),
        finite(f.psi),
    );
    FeatureDriftStatus {
        name: excerpt(&name, MAX_NAME_CHARS),
        test: drift_test(f.test),
        insufficient_data: f.status
            == crate::drift::stats::prepared::ComparisonStatus::InsufficientData
            || statistic.is_none()
            || p_value_adjusted.is_none()
            || psi.is_none(),
        statistic,
        p_value_adjusted,
        psi,
        severity: severity(f.severity),
    }
}

/// The status summary of a report (most drifted features first).
pub fn summarize(report: &DriftReport) -> DriftSummary {
    let mut features: Vec<(&FeatureVerdict, String)> = report
        .features
        .iter()
        .map(|f| (f, f.name.clone()))
        .collect();
    if let Some(p) = &report.prediction_drift {
        features.push((p, format!("prediction:{}", p.name)));
    }
    features.sort_by(|a, b| {
        b.0.severity
            .cmp(&a.0.severity)
            .then(b.0.psi.unwrap_or(0.0).total_cmp(&a.0.psi.unwrap_or(0.0)))
    });
    DriftSummary {
        checked_at: None,
        reference_rows: i64::try_from(report.reference_rows).unwrap_or(i64::MAX),
        current_rows: i64::try_from(report.current_rows).unwrap_or(i64::MAX),
        drift_detected: report.drift_detected,
        severity: severity(report.severity),
        drifted_share: report.drifted_share,
        accuracy: report.performance.as_ref().and_then(|p| p.accuracy),
        label_join: report
            .performance
            .as_ref()
            .and_then(|p| p.join.as_ref())
            .map(|j| {
                let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                LabelJoinStatus {
                    joined: n(j.joined),
                    unlabelled_predictions: n(j.unlabelled_predictions),
                    unmatched_labels: n(j.unmatched_labels),
                    duplicate_labels: n(j.duplicate_labels),
                    duplicate_predictions: n(j.duplicate_predictions),
                }
            }),
        features: features
            .into_iter()
            .take(MAX_FEATURES_IN_STATUS)
            .map(|(f, name)| feature_status(name, f))
            .collect(),
    }
}

impl DriftCheck for EngineDriftCheck {
    fn check<'a>(
        &'a self,
        resource: &'a ModelDeployment,
        inputs: DriftInputs<'a>,
    ) -> BoxFuture<'a, DriftObservation> {
        self.run(
            resource,
            inputs.credentials,
            inputs.prometheus_token,
            inputs.storage,
            inputs.capture_base,
        )
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn verdict(status: &str, statistic: f64, p: Option<f64>, psi: f64) -> FeatureVerdict {
        serde_json::from_value(serde_json::json!({
            "name": "amount", "kind": "numerical", "test": "ks", "status": status,
            "statistic": statistic, "p_value": p, "p_value_adjusted": p, "psi": psi,
            "psi_level": null, "effect_size": null, "drifted": false, "severity": "ok",
            "n_reference": 10, "n_current": 0, "missing_reference": 0, "missing_current": 0,
            "n_new_categories": 0, "histogram": null
        }))
        .unwrap()
    }

    #[test]
    fn failure_messages_and_names_from_data_are_escaped_and_bounded() {
        let column = format!("{}\u{1b}]0;pwned\u{7}", "c".repeat(5000));
        let DriftObservation::Failed { message, .. } = failed(
            Reason::MissingColumn,
            format!("column '{column}' is missing"),
        ) else {
            unreachable!()
        };
        assert!(
            message.chars().count() <= MAX_MESSAGE_CHARS + 1,
            "{}",
            message.len()
        );
        assert!(!message.chars().any(char::is_control));
        let status = feature_status(column.clone(), &verdict("ok", 0.3, Some(0.01), 0.2));
        assert_eq!(status.name.chars().count(), MAX_NAME_CHARS + 1);
        assert!(status.name.ends_with('…'));
        let short = feature_status("a\u{1b}b".into(), &verdict("ok", 0.3, Some(0.01), 0.2));
        assert_eq!(short.name, "a\\u{1b}b");
    }

    #[test]
    fn numbers_that_could_not_be_computed_are_absent_never_zero_or_one() {
        let ok = feature_status("amount".into(), &verdict("ok", 0.3, Some(0.01), 0.2));
        assert_eq!(
            (
                ok.statistic,
                ok.p_value_adjusted,
                ok.psi,
                ok.insufficient_data
            ),
            (Some(0.3), Some(0.01), Some(0.2), false)
        );
        let none = feature_status(
            "amount".into(),
            &verdict("insufficient_data", f64::NAN, None, f64::INFINITY),
        );
        assert_eq!(
            (none.statistic, none.p_value_adjusted, none.psi),
            (None, None, None)
        );
        assert!(none.insufficient_data);
        let json = serde_json::to_value(&none).unwrap();
        assert_eq!(json["insufficientData"], true);
        assert!(
            json.get("pValueAdjusted").is_none() && json.get("psi").is_none(),
            "{json}"
        );
    }
}
