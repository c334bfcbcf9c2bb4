//! What `mlrollout check` prints for a valid resource: what the operator will do with it, one
//! labelled line per section of the spec, in spec order.

use kube::core::ObjectMeta;

use crate::api::duration::format_duration;
use crate::api::validation::{DriftTiming, ValidatedSpec};
use crate::api::{
    AdvisorSpec, DriftSpec, EvaluationSpec, ModelDeploymentSpec, ModelSource, PerformanceSpec,
    RetrainingSpec, RolloutSpec, Serving, ShadowSpec, Traffic, TrafficProvider,
};

/// A label (empty on a continuation line) and its text.
type Line = (&'static str, String);

/// A readable description of what the operator will do with this resource.
pub fn explain(file: &str, metadata: &ObjectMeta, validated: &ValidatedSpec) -> String {
    let spec: &ModelDeploymentSpec = validated.spec();
    let name = metadata.name.as_deref().unwrap_or("<unnamed>");
    let namespace = metadata.namespace.as_deref().unwrap_or("default");
    let mut lines = vec![
        model_line(&spec.model),
        serving_line(&spec.serving),
        proxy_line(&spec.serving.proxy),
        traffic_line(&spec.traffic, name),
    ];
    match spec.drift.as_ref().zip(validated.timing.drift.as_ref()) {
        Some((drift, timing)) => lines.extend(drift_lines(drift, timing)),
        None => lines.push(("Drift:", "not checked (no spec.drift)".into())),
    }
    lines.extend(spec.performance.as_ref().map(accuracy_line));
    lines.push(retraining_line(spec.retraining.as_ref()));
    lines.push(evaluation_line(&spec.evaluation));
    lines.push(shadow_line(&spec.shadow));
    lines.extend(rollout_lines(&spec.rollout));
    lines.push(advisor_line(&spec.advisor));
    let mut out = vec![format!(
        "{file}: ModelDeployment {namespace}/{name} is valid."
    )];
    out.extend(
        lines
            .into_iter()
            .map(|(label, text)| format!("  {label:<12} {text}")),
    );
    out.join("\n")
}

fn model_line(model: &ModelSource) -> Line {
    let served = match &model.version {
        Some(v) => format!("models:/{}/{v} (pinned)", model.name),
        None => format!("models:/{}@{}", model.name, model.alias),
    };
    ("Model:", format!("{served} from {}", model.tracking_uri))
}

fn serving_line(serving: &Serving) -> Line {
    (
        "Serving:",
        format!(
            "{} replica(s) of {} on port {}",
            serving.replicas, serving.image, serving.port
        ),
    )
}

/// The data-plane sidecar and what it captures.
fn proxy_line(proxy: &crate::api::ProxySpec) -> Line {
    if !proxy.enabled {
        return (
            "Proxy:",
            "off (the built-in metrics then need a service mesh)".into(),
        );
    }
    let capture = match &proxy.capture {
        Some(c) => format!(
            "captures {}% of requests to {} (a window per {} or {} rows)",
            c.fraction * 100.0,
            c.uri,
            c.window,
            c.max_rows
        ),
        None => "no capture".into(),
    };
    (
        "Proxy:",
        format!(
            "mlrollout proxy on port {} (metrics on {}); {capture}",
            proxy.port, proxy.metrics_port
        ),
    )
}

/// The router and the route it manages (named after the resource unless `routeName` says).
fn traffic_line(traffic: &Traffic, name: &str) -> Line {
    let route = traffic.route_name.as_deref().unwrap_or(name);
    let text = match traffic.provider {
        TrafficProvider::GatewayApi => format!(
            "Gateway API HTTPRoute {route} attached to {}",
            traffic
                .parent_refs
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        TrafficProvider::Istio => format!(
            "Istio VirtualService {route} for {}",
            traffic.hostnames.join(", ")
        ),
        TrafficProvider::None => {
            "no router: replica counts approximate the weights; no shadow".into()
        }
    };
    ("Traffic:", text)
}

/// When and what is compared, then what counts as drift.
fn drift_lines(drift: &DriftSpec, timing: &DriftTiming) -> [Line; 2] {
    let t = &drift.thresholds;
    let when = match (&drift.schedule, &drift.interval) {
        (Some(cron), _) => format!("on cron \"{cron}\""),
        (None, Some(i)) => format!("every {i}"),
        // No interval written: the default validation filled in.
        (None, None) => format!("every {}", format_duration(timing.interval)),
    };
    let features = if drift.features.is_empty() {
        "all shared columns (kinds inferred)".to_string()
    } else {
        format!("{} feature(s)", drift.features.len())
    };
    [
        (
            "Drift:",
            format!(
                "{when}, {features}: {} vs {}",
                drift.reference.uri,
                current_words(&drift.current)
            ),
        ),
        (
            "",
            format!(
                "drifted = significant at alpha {} ({:?} correction) and KS D >= {} / Cramér's V >= {}; PSI >= {} medium, >= {} high",
                t.alpha,
                t.multiple_testing,
                t.min_ks_statistic,
                t.min_cramers_v,
                t.psi_warning,
                t.psi_high
            ),
        ),
    ]
}

fn accuracy_line(perf: &PerformanceSpec) -> Line {
    let source = match (&perf.labelled, &perf.accuracy_query) {
        (Some(l), _) => match &l.join {
            None => format!("labelled data {}", l.uri),
            Some(j) => format!(
                "labels of {} joined by {} with the {} variant's captured predictions{}",
                l.uri,
                j.id_column,
                j.capture.variant.as_str(),
                match (j.last_rows, &j.last_duration) {
                    (Some(n), _) => format!(" (newest {n} rows)"),
                    (None, Some(d)) => format!(" (last {d})"),
                    (None, None) => String::new(),
                }
            ),
        },
        (None, Some(_)) => "a PromQL query".to_string(),
        (None, None) => "no accuracy source".to_string(),
    };
    (
        "Accuracy:",
        format!(
            "from {source}; concept drift below {}",
            perf.accuracy_threshold
        ),
    )
}

/// What starts retraining and what limits it; `off` without the section or when disabled.
fn retraining_line(retraining: Option<&RetrainingSpec>) -> Line {
    let Some(r) = retraining.filter(|r| r.enabled) else {
        return ("Retraining:", "off".into());
    };
    let t = &r.triggers;
    let mut triggers = Vec::new();
    if let Some(s) = &t.schedule {
        triggers.push(format!("schedule \"{s}\""));
    }
    if let Some(n) = t.new_samples {
        triggers.push(format!("{n} new samples"));
    }
    if let Some(a) = t.accuracy_below {
        triggers.push(format!("accuracy < {a}"));
    }
    if let Some(d) = t.drift_severity {
        triggers.push(format!("drift severity {d:?}").to_lowercase());
    }
    (
        "Retraining:",
        format!(
            "on {}; cooldown {}, at most {}/day, timeout {}",
            triggers.join(" or "),
            r.cooldown,
            r.max_attempts_per_day,
            r.timeout
        ),
    )
}

fn evaluation_line(evaluation: &EvaluationSpec) -> Line {
    (
        "Evaluation:",
        format!(
            "candidate's MLflow metric {:?} must beat the champion's by >= {} ({:?})",
            evaluation.metric, evaluation.min_improvement, evaluation.direction
        ),
    )
}

fn shadow_line(shadow: &ShadowSpec) -> Line {
    let text = if shadow.enabled {
        format!(
            "{}% mirrored for {}; prediction PSI <= {}, error-rate ratio <= {}, latency ratio <= {}",
            shadow.mirror_percent,
            shadow.duration,
            shadow.max_prediction_psi,
            shadow.max_error_rate_ratio,
            shadow.max_latency_ratio
        )
    } else {
        "skipped".into()
    };
    ("Shadow:", text)
}

/// The steps and how each is judged, then when a stuck rollout rolls back.
fn rollout_lines(rollout: &RolloutSpec) -> [Line; 2] {
    let steps = rollout
        .resolved_steps()
        .iter()
        .map(|step| {
            let mut text = step.describe();
            if let Some(pause) = &step.pause {
                text.push_str(&match &pause.duration {
                    Some(d) => format!(" (pause {d})"),
                    None => " (pause until promoted)".to_owned(),
                });
            } else if let Some(d) = &step.duration {
                text.push_str(&format!(" ({d})"));
            }
            text
        })
        .collect::<Vec<_>>()
        .join(" -> ");
    let analysis = match &rollout.analysis {
        Some(a) => format!(
            "analysed against stable every {} ({} measurement(s) per step) via {}",
            a.interval, a.count, a.prometheus.address
        ),
        None => "no metric analysis: steps advance on time".into(),
    };
    [
        (
            "Rollout:",
            format!("{steps}, {} per step; {analysis}", rollout.step_duration),
        ),
        (
            "",
            format!(
                "rollback when a phase makes no progress for {}",
                rollout.progress_deadline
            ),
        ),
    ]
}

fn advisor_line(advisor: &AdvisorSpec) -> Line {
    let text = if advisor.enabled {
        format!("{} (advice only; never bypasses a gate)", advisor.model)
    } else {
        "off".into()
    };
    ("Advisor:", text)
}

/// The current data in words: its URI or the capture it names, and how much of it.
fn current_words(current: &crate::api::CurrentData) -> String {
    let source = match (current.uri(), &current.capture) {
        (Some(uri), _) => uri.to_owned(),
        (None, Some(capture)) => format!(
            "the {} variant's captured traffic",
            capture.variant.as_str()
        ),
        (None, None) => "(no current data)".to_owned(),
    };
    match (current.last_rows, &current.last_duration) {
        (Some(n), _) => format!("{source} (newest {n} rows)"),
        (None, Some(d)) => format!("{source} (files of the last {d})"),
        (None, None) => source,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::check_document;

    fn example() -> Value {
        serde_yaml::from_str(include_str!("../../../examples/fraud-detector.yaml")).unwrap()
    }

    fn explained(file: &str, value: &Value) -> String {
        let (resource, spec) = check_document(value).expect("valid");
        super::explain(file, &resource.metadata, &spec)
    }

    #[test]
    fn a_label_join_is_explained() {
        let perf: super::PerformanceSpec = serde_json::from_value(json!({
            "labelled": {"uri": "s3://lake/feedback/", "join": {"capture": {"variant": "stable"}, "lastRows": 5000}}
        }))
        .unwrap();
        assert_eq!(
            super::accuracy_line(&perf).1,
            "from labels of s3://lake/feedback/ joined by request_id with the stable variant's captured predictions (newest 5000 rows); concept drift below 0.85"
        );
    }

    #[test]
    fn the_example_explained() {
        assert_eq!(
            explained("example.yaml", &example()),
            concat!(
                "example.yaml: ModelDeployment fraud/fraud-detector is valid.\n",
                "  Model:       models:/fraud-detector@champion from http://mlflow.mlflow.svc:5000\n",
                "  Serving:     2 replica(s) of ghcr.io/mlflow/mlflow:v3.17.0 on port 8080\n",
                "  Proxy:       mlrollout proxy on port 8000 (metrics on 9464); no capture\n",
                "  Traffic:     Gateway API HTTPRoute fraud-detector attached to inference-gateway\n",
                "  Drift:       every 1h, 5 feature(s): examples/data/reference.csv vs examples/data/current.csv\n",
                "               drifted = significant at alpha 0.05 (BenjaminiHochberg correction) and KS D >= 0.1 / Cramér's V >= 0.1; PSI >= 0.2 medium, >= 0.25 high\n",
                "  Accuracy:    from labelled data examples/data/labelled.csv; concept drift below 0.85\n",
                "  Retraining:  on schedule \"0 3 * * 0\" or 50000 new samples or accuracy < 0.85 or drift severity high; cooldown 6h, at most 3/day, timeout 2h\n",
                "  Evaluation:  candidate's MLflow metric \"accuracy\" must beat the champion's by >= 0.005 (HigherIsBetter)\n",
                "  Shadow:      100% mirrored for 15m; prediction PSI <= 0.2, error-rate ratio <= 1.5, latency ratio <= 1.5\n",
                "  Rollout:     10% -> 50% -> 100%, 10m per step; analysed against stable every 1m (5 measurement(s) per step) via http://prometheus-operated.monitoring.svc:9090\n",
                "               rollback when a phase makes no progress for 45m\n",
                "  Advisor:     off"
            )
        );
    }

    /// The other side of every choice: pinned version, Istio, default drift interval and
    /// inferred features, a PromQL accuracy, no retraining, no shadow, no analysis, an advisor,
    /// a duration shown as written, the default namespace.
    #[test]
    fn every_other_branch_explained() {
        let mut value = example();
        let spec = &mut value["spec"];
        spec["model"]["version"] = json!("7");
        spec["traffic"] =
            json!({"provider": "istio", "hostnames": ["a.example.com", "b.example.com"]});
        let drift = spec["drift"].as_object_mut().unwrap();
        drift.remove("interval");
        drift.remove("features");
        spec["performance"] = json!({"accuracyQuery": "sum(acc)", "accuracyThreshold": 0.9});
        spec["retraining"]["enabled"] = json!(false);
        spec["shadow"]["enabled"] = json!(false);
        spec["rollout"].as_object_mut().unwrap().remove("analysis");
        spec["rollout"]["progressDeadline"] = json!("90s");
        spec["advisor"] = json!({"enabled": true, "apiKeySecret": {"name": "k", "key": "api"}});
        value["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("namespace");
        assert_eq!(
            explained("combined.yaml", &value),
            concat!(
                "combined.yaml: ModelDeployment default/fraud-detector is valid.\n",
                "  Model:       models:/fraud-detector/7 (pinned) from http://mlflow.mlflow.svc:5000\n",
                "  Serving:     2 replica(s) of ghcr.io/mlflow/mlflow:v3.17.0 on port 8080\n",
                "  Proxy:       mlrollout proxy on port 8000 (metrics on 9464); no capture\n",
                "  Traffic:     Istio VirtualService fraud-detector for a.example.com, b.example.com\n",
                "  Drift:       every 1h, all shared columns (kinds inferred): examples/data/reference.csv vs examples/data/current.csv\n",
                "               drifted = significant at alpha 0.05 (BenjaminiHochberg correction) and KS D >= 0.1 / Cramér's V >= 0.1; PSI >= 0.2 medium, >= 0.25 high\n",
                "  Accuracy:    from a PromQL query; concept drift below 0.9\n",
                "  Retraining:  off\n",
                "  Evaluation:  candidate's MLflow metric \"accuracy\" must beat the champion's by >= 0.005 (HigherIsBetter)\n",
                "  Shadow:      skipped\n",
                "  Rollout:     10% -> 50% -> 100%, 10m per step; no metric analysis: steps advance on time\n",
                "               rollback when a phase makes no progress for 90s\n",
                "  Advisor:     claude-haiku-4-5 (advice only; never bypasses a gate)"
            )
        );
    }
}
