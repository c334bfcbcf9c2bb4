//! Measuring with the operator's real Prometheus analyzer and the built-in metrics.
#![allow(dead_code)]

use mlrollout::analysis::prometheus::PrometheusAnalyzer;
use mlrollout::analysis::{Analyzer, MeasureRequest};
use mlrollout::api::ModelDeploymentSpec;
use mlrollout::core::verdict::builtin::{canary_metrics, shadow_metrics};
use mlrollout::core::verdict::{AnalysisStage, MetricMeasurement};

/// A spec whose analysis reads `prometheus`, with rate windows of `interval`.
pub fn spec(prometheus: &str, interval: &str) -> ModelDeploymentSpec {
    serde_json::from_value(serde_json::json!({
        "model": {"trackingUri": "http://mlflow:5000", "name": "m"},
        "traffic": {"provider": "none"},
        "rollout": {"analysis": {"prometheus": {"address": prometheus}, "interval": interval}}
    }))
    .unwrap()
}

/// One round of the built-in metrics of `stage` for resource `namespace/name`.
pub async fn measure(
    analyzer: &PrometheusAnalyzer,
    spec: &ModelDeploymentSpec,
    namespace: &str,
    name: &str,
    stage: AnalysisStage,
) -> Vec<MetricMeasurement> {
    let metrics = match stage {
        AnalysisStage::Canary => canary_metrics(),
        AnalysisStage::Shadow => shadow_metrics(&spec.shadow),
        AnalysisStage::PostPromotion => mlrollout::core::verdict::builtin::metrics_for(spec, stage),
    };
    analyzer
        .measure(MeasureRequest {
            namespace,
            name,
            spec,
            stage,
            metrics,
            bearer_token: None,
            since_step: std::time::Duration::from_secs(60),
        })
        .await
}

/// The measurement of `metric`.
pub fn find<'a>(measurements: &'a [MetricMeasurement], metric: &str) -> &'a MetricMeasurement {
    measurements
        .iter()
        .find(|m| m.name == metric)
        .unwrap_or_else(|| panic!("no {metric} in {measurements:?}"))
}
