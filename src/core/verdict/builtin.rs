//! Built-in metrics: used for canary steps when `spec.rollout.analysis.metrics` is empty, and
//! for the shadow verdict (thresholds from `spec.shadow`).
//!
//! The queries assume the common Prometheus HTTP instrumentation of model servers
//! (`http_requests_total{code}`, `http_request_duration_seconds_bucket`) scraped with
//! `namespace` and `service` labels (what a ServiceMonitor adds), and a prediction-score
//! histogram `model_prediction_score_bucket`. Override them per metric when yours differ.

use crate::api::{AnalysisMetric, NoDataPolicy, RelativeThreshold, ShadowSpec};

/// Name of the built-in error-rate metric.
pub const ERROR_RATE: &str = "error-rate";
/// Name of the built-in p99-latency metric.
pub const LATENCY_P99: &str = "latency-p99";
/// Name of the shadow prediction-distribution metric (PSI between the variants' histograms).
pub const PREDICTION_PSI: &str = "prediction-psi";

const SELECTOR: &str = r#"namespace="{{namespace}}", service="{{name}}-{{variant}}""#;

/// Error ratio; a variant with traffic but no 5xx series yields 0, not "no data".
pub fn error_rate_query() -> String {
    format!(
        "(sum(rate(http_requests_total{{{SELECTOR}, code=~\"5..\"}}[{{{{interval}}}}])) or sum(rate(http_requests_total{{{SELECTOR}}}[{{{{interval}}}}])) * 0) / sum(rate(http_requests_total{{{SELECTOR}}}[{{{{interval}}}}]))"
    )
}

/// p99 latency in seconds.
pub fn latency_p99_query() -> String {
    format!(
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{{SELECTOR}}}[{{{{interval}}}}])))"
    )
}

/// Prediction-score histogram buckets over the window.
pub fn prediction_histogram_query() -> String {
    format!("sum by (le) (increase(model_prediction_score_bucket{{{SELECTOR}}}[{{{{interval}}}}]))")
}

/// Requests of a variant since the step began (the sequential judge's default total).
pub fn requests_since_step_query() -> String {
    format!("sum(increase(http_requests_total{{{SELECTOR}}}[{{{{window}}}}]))")
}

/// 5xx answers of a variant since the step began (the sequential judge's default bad events);
/// a variant with traffic but no 5xx series counts 0, not "no data".
pub fn errors_since_step_query() -> String {
    format!(
        "sum(increase(http_requests_total{{{SELECTOR}, code=~\"5..\"}}[{{{{window}}}}])) or {} * 0",
        requests_since_step_query()
    )
}

/// Requests of a variant slower than the bucket bound `le` since the step began.
pub fn slower_than_since_step_query(le: &str) -> String {
    format!(
        "{} - sum(increase(http_request_duration_seconds_bucket{{{SELECTOR}, le=\"{le}\"}}[{{{{window}}}}]))",
        requests_since_step_query()
    )
}

fn metric(name: &str, query: String, max: Option<f64>, ratio: Option<f64>) -> AnalysisMetric {
    AnalysisMetric {
        name: name.into(),
        query,
        max,
        min: None,
        max_increase: ratio.map(|r| RelativeThreshold {
            ratio: Some(r),
            difference: None,
        }),
        judge: crate::api::Judge::Threshold,
        sequential: None,
        failure_limit: 0,
        inconclusive_limit: 2,
        consecutive_error_limit: 4,
        no_data: NoDataPolicy::Inconclusive,
        dry_run: false,
    }
}

/// Canary metrics used when the spec lists none.
pub fn canary_metrics() -> Vec<AnalysisMetric> {
    vec![
        metric(ERROR_RATE, error_rate_query(), None, Some(1.5)),
        metric(LATENCY_P99, latency_p99_query(), None, Some(1.5)),
    ]
}

/// Shadow metrics from `spec.shadow`.
pub fn shadow_metrics(shadow: &ShadowSpec) -> Vec<AnalysisMetric> {
    vec![
        metric(
            PREDICTION_PSI,
            prediction_histogram_query(),
            Some(shadow.max_prediction_psi),
            None,
        ),
        metric(
            ERROR_RATE,
            error_rate_query(),
            None,
            Some(shadow.max_error_rate_ratio),
        ),
        metric(
            LATENCY_P99,
            latency_p99_query(),
            None,
            Some(shadow.max_latency_ratio),
        ),
    ]
}

/// The metrics of a canary step: the spec's, or the built-in ones.
pub fn effective_canary_metrics(configured: &[AnalysisMetric]) -> Vec<AnalysisMetric> {
    if configured.is_empty() {
        canary_metrics()
    } else {
        configured.to_vec()
    }
}

/// The metrics measured at a gate: the shadow metrics, or the canary metrics of the spec.
pub fn metrics_for(
    spec: &crate::api::ModelDeploymentSpec,
    stage: super::AnalysisStage,
) -> Vec<AnalysisMetric> {
    match stage {
        super::AnalysisStage::Shadow => shadow_metrics(&spec.shadow),
        super::AnalysisStage::PostPromotion => spec
            .rollout
            .post_promotion
            .as_ref()
            .map(|p| p.metrics.clone())
            .unwrap_or_default(),
        super::AnalysisStage::Canary => effective_canary_metrics(
            spec.rollout
                .analysis
                .as_ref()
                .map(|a| a.metrics.as_slice())
                .unwrap_or(&[]),
        ),
    }
}

/// The metrics measured at a gate with `candidate_weight` % of the traffic on the candidate.
/// At a step of 100 % stable serves nothing, so a sequential metric has no comparison to make:
/// it judged the steps before, and the full-traffic step is left to the other metrics (or to
/// time alone).
pub fn metrics_at(
    spec: &crate::api::ModelDeploymentSpec,
    stage: super::AnalysisStage,
    candidate_weight: i32,
) -> Vec<AnalysisMetric> {
    let mut metrics = metrics_for(spec, stage);
    if stage == super::AnalysisStage::Canary && candidate_weight >= 100 {
        metrics.retain(|m| m.judge != crate::api::Judge::Sequential);
    }
    metrics
}

/// The metrics measured at step `current_step` of `steps` (`None`: outside the steps): those of
/// [`metrics_at`], with the step's own metrics added (one of the same name replaces it).
pub fn metrics_at_step(
    spec: &crate::api::ModelDeploymentSpec,
    steps: &[crate::api::validation::StepTiming],
    current_step: Option<i32>,
    stage: super::AnalysisStage,
    candidate_weight: i32,
) -> Vec<AnalysisMetric> {
    let mut metrics = metrics_at(spec, stage, candidate_weight);
    let step = current_step
        .and_then(|i| usize::try_from(i).ok())
        .and_then(|i| steps.get(i))
        .filter(|_| stage != super::AnalysisStage::PostPromotion);
    for extra in step.map(|s| s.metrics.as_slice()).unwrap_or_default() {
        match metrics.iter_mut().find(|m| m.name == extra.name) {
            Some(existing) => *existing = extra.clone(),
            None => metrics.push(extra.clone()),
        }
    }
    metrics
}

/// Fills the placeholders of a query template.
pub fn render(
    template: &str,
    namespace: &str,
    name: &str,
    variant: &str,
    interval: &str,
) -> String {
    template
        .replace("{{namespace}}", namespace)
        .replace("{{name}}", name)
        .replace("{{variant}}", variant)
        .replace("{{interval}}", interval)
}

/// Fills the placeholders of a sequential judge's counter template: those of [`render`] and
/// `{{window}}`, the whole seconds since the step began (at least one).
pub fn render_since_step(
    template: &str,
    namespace: &str,
    name: &str,
    variant: &str,
    interval: &str,
    window: std::time::Duration,
) -> String {
    let window = format!("{}s", window.as_secs().max(1));
    render(template, namespace, name, variant, interval).replace("{{window}}", &window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_for_a_variant() {
        let q = render(&error_rate_query(), "fraud", "det", "candidate", "1m");
        assert!(q.contains(r#"service="det-candidate""#), "{q}");
        assert!(q.contains("[1m]"));
        assert!(!q.contains("{{"));
        let l = render(&latency_p99_query(), "fraud", "det", "stable", "5m");
        assert_eq!(
            l,
            r#"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{namespace="fraud", service="det-stable"}[5m])))"#
        );
    }

    #[test]
    fn counter_templates_render_the_window_since_the_step_began() {
        let window = std::time::Duration::from_millis(317_900);
        let q = render_since_step(
            &errors_since_step_query(),
            "ns",
            "m",
            "candidate",
            "1m",
            window,
        );
        assert_eq!(
            q,
            r#"sum(increase(http_requests_total{namespace="ns", service="m-candidate", code=~"5.."}[317s])) or sum(increase(http_requests_total{namespace="ns", service="m-candidate"}[317s])) * 0"#
        );
        let slow = render_since_step(
            &slower_than_since_step_query("0.5"),
            "ns",
            "m",
            "stable",
            "1m",
            std::time::Duration::ZERO,
        );
        assert!(slow.ends_with(r#"le="0.5"}[1s]))"#), "{slow}");
        assert!(!slow.contains("{{"));
    }

    #[test]
    fn shadow_thresholds_come_from_the_spec() {
        let shadow = ShadowSpec {
            max_prediction_psi: 0.1,
            max_error_rate_ratio: 2.0,
            ..Default::default()
        };
        let metrics = shadow_metrics(&shadow);
        assert_eq!(metrics[0].max, Some(0.1));
        assert_eq!(metrics[1].max_increase.as_ref().unwrap().ratio, Some(2.0));
    }
}
