//! The operator's own metrics, as Prometheus reads them.

use super::*;

#[test]
fn a_forgotten_resource_leaves_no_series_and_others_keep_theirs() {
    let metrics = Metrics::default();
    let spec: crate::api::ModelDeploymentSpec = serde_json::from_value(serde_json::json!({
        "model": {"trackingUri": "http://mlflow:5000", "name": "fraud"},
        "traffic": {"provider": "none"},
        "drift": {"reference": {"uri": "a.csv"}, "current": {"uri": "b.csv"}}
    }))
    .unwrap_or_default();
    let status = crate::api::ModelDeploymentStatus::default();
    for name in ["gone", "kept"] {
        metrics.observe_state("ml", name, Phase::Stable, 10, 5);
        metrics.observe_decision("ml", name, &spec, &status, &status);
    }
    let text = metrics.encode();
    assert!(text.contains(r#"name="gone""#) && text.contains(r#"name="kept""#));
    metrics.forget("ml", "gone");
    let text = metrics.encode();
    assert!(!text.contains(r#"name="gone""#), "{text}");
    assert!(
        text.contains(r#"mlrollout_phase{namespace="ml",name="kept",phase="Stable"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"mlrollout_drift_psi_threshold{namespace="ml",name="kept""#));
    assert_eq!(
        metrics.resources(),
        vec![("ml".to_string(), "kept".to_string())]
    );
    // Series come back if the name is used again.
    metrics.observe_state("ml", "gone", Phase::Pending, 0, 0);
    assert!(metrics.encode().contains(r#"name="gone""#));
}
