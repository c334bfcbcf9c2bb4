//! `mlrollout check`: offline validation of manifests, with an explanation a person can read.
//!
//! Three layers, in the order the API server and the operator apply them: the CRD schema's
//! CEL rules (`x-kubernetes-validations`, with schema defaults applied first), the typed spec
//! (required fields, types, enum values), and the reconciler's own checks.

use std::path::PathBuf;
use std::process::ExitCode;

use kube::CustomResourceExt;
use serde::Deserialize;

use crate::api::duration::parse_duration;
use crate::api::validation::validate;
use crate::api::{ModelDeployment, ModelDeploymentSpec, TrafficProvider};

/// Validates every ModelDeployment in `files`; prints problems or an explanation.
pub fn run(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    let mut found = 0;
    for file in files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{}: cannot read: {e}", file.display());
                ok = false;
                continue;
            }
        };
        for (index, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let value = match serde_json::Value::deserialize(document) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!(
                        "{}: document {}: not valid YAML: {e}",
                        file.display(),
                        index + 1
                    );
                    ok = false;
                    continue;
                }
            };
            if value.get("kind").and_then(|k| k.as_str()) != Some("ModelDeployment") {
                continue;
            }
            found += 1;
            match check_value(&value) {
                Ok(resource) => println!("{}", explain(&file.display().to_string(), &resource)),
                Err(problems) => {
                    ok = false;
                    let name = value
                        .pointer("/metadata/name")
                        .and_then(|n| n.as_str())
                        .unwrap_or("<unnamed>");
                    eprintln!("{}: ModelDeployment {name} is invalid:", file.display());
                    for p in problems {
                        eprintln!("  - {p}");
                    }
                }
            }
        }
    }
    if found == 0 && ok {
        eprintln!("no ModelDeployment found in the given files");
        return ExitCode::FAILURE;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs all three layers on one document; returns the typed resource or every problem.
pub fn check_value(value: &serde_json::Value) -> Result<ModelDeployment, Vec<String>> {
    let mut problems = Vec::new();
    if value.get("apiVersion").and_then(|v| v.as_str()) != Some("mlrollout.io/v1alpha1") {
        problems.push("apiVersion must be mlrollout.io/v1alpha1".to_string());
    }
    problems.extend(cel_problems(value));
    let resource = match serde_json::from_value::<ModelDeployment>(value.clone()) {
        Ok(r) => r,
        Err(e) => {
            problems.push(format!("spec does not match the schema: {e}"));
            return Err(problems);
        }
    };
    if let Err(spec_problems) = validate(&resource.spec) {
        // The reconciler repeats the main CEL rules; report a field once, in CEL's words.
        let cel_fields: Vec<String> = problems
            .iter()
            .filter_map(|p| p.split_once(": ").map(|(field, _)| field.to_string()))
            .collect();
        for p in spec_problems {
            if !cel_fields
                .iter()
                .any(|f| p.field == *f || p.field.starts_with(&format!("{f}.")))
            {
                problems.push(p.to_string());
            }
        }
    }
    if problems.is_empty() {
        Ok(resource)
    } else {
        Err(problems)
    }
}

/// CEL rules of the generated CRD, evaluated client-side like the API server would.
pub fn cel_problems(value: &serde_json::Value) -> Vec<String> {
    let crd = ModelDeployment::crd();
    let Some(schema) = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
    else {
        return vec!["internal error: the CRD has no schema".into()];
    };
    match kube::core::cel::Validator::new().validate(&schema, value, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_vec()
            .into_iter()
            .map(|e| e.to_string())
            .collect(),
    }
}

/// A readable description of what the operator will do with this resource.
pub fn explain(file: &str, resource: &ModelDeployment) -> String {
    let spec: &ModelDeploymentSpec = &resource.spec;
    let name = resource.metadata.name.as_deref().unwrap_or("<unnamed>");
    let namespace = resource.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = vec![format!(
        "{file}: ModelDeployment {namespace}/{name} is valid."
    )];
    let mut line = |label: &str, text: String| out.push(format!("  {label:<12} {text}"));

    let served = match &spec.model.version {
        Some(v) => format!("models:/{}/{v} (pinned)", spec.model.name),
        None => format!("models:/{}@{}", spec.model.name, spec.model.alias),
    };
    line(
        "Model:",
        format!("{served} from {}", spec.model.tracking_uri),
    );
    line(
        "Serving:",
        format!(
            "{} replica(s) of {} on port {}",
            spec.serving.replicas, spec.serving.image, spec.serving.port
        ),
    );
    let route = spec.traffic.route_name.as_deref().unwrap_or(name);
    line(
        "Traffic:",
        match spec.traffic.provider {
            TrafficProvider::GatewayApi => format!(
                "Gateway API HTTPRoute {route} attached to {}",
                spec.traffic
                    .parent_refs
                    .iter()
                    .map(|p| p.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            TrafficProvider::Istio => format!(
                "Istio VirtualService {route} for {}",
                spec.traffic.hostnames.join(", ")
            ),
            TrafficProvider::None => {
                "no router: replica counts approximate the weights; no shadow".into()
            }
        },
    );
    match &spec.drift {
        Some(drift) => {
            let t = &drift.thresholds;
            let when = match (&drift.schedule, &drift.interval) {
                (Some(cron), _) => format!("on cron \"{cron}\""),
                (None, Some(i)) => format!("every {i}"),
                (None, None) => "every 1h".into(),
            };
            let features = if drift.features.is_empty() {
                "all shared columns (kinds inferred)".to_string()
            } else {
                format!("{} feature(s)", drift.features.len())
            };
            line(
                "Drift:",
                format!(
                    "{when}, {features}: {} vs {}",
                    drift.reference.uri, drift.current.uri
                ),
            );
            line(
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
            );
        }
        None => line("Drift:", "not checked (no spec.drift)".into()),
    }
    if let Some(perf) = &spec.performance {
        let source = match (&perf.labelled, &perf.accuracy_query) {
            (Some(l), _) => format!("labelled data {}", l.uri),
            (None, Some(_)) => "a PromQL query".to_string(),
            (None, None) => "no accuracy source".to_string(),
        };
        line(
            "Accuracy:",
            format!(
                "from {source}; concept drift below {}",
                perf.accuracy_threshold
            ),
        );
    }
    match &spec.retraining {
        Some(r) if r.enabled => {
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
            line(
                "Retraining:",
                format!(
                    "on {}; cooldown {}, at most {}/day, timeout {}",
                    triggers.join(" or "),
                    r.cooldown,
                    r.max_attempts_per_day,
                    r.timeout
                ),
            );
        }
        _ => line("Retraining:", "off".into()),
    }
    line(
        "Evaluation:",
        format!(
            "candidate's MLflow metric {:?} must beat the champion's by >= {} ({:?})",
            spec.evaluation.metric, spec.evaluation.min_improvement, spec.evaluation.direction
        ),
    );
    line(
        "Shadow:",
        if spec.shadow.enabled {
            format!(
                "{}% mirrored for {}; prediction PSI <= {}, error-rate ratio <= {}, latency ratio <= {}",
                spec.shadow.mirror_percent,
                spec.shadow.duration,
                spec.shadow.max_prediction_psi,
                spec.shadow.max_error_rate_ratio,
                spec.shadow.max_latency_ratio
            )
        } else {
            "skipped".into()
        },
    );
    let steps = spec
        .rollout
        .steps
        .iter()
        .map(|s| format!("{s}%"))
        .collect::<Vec<_>>()
        .join(" -> ");
    let analysis = match &spec.rollout.analysis {
        Some(a) => format!(
            "analysed against stable every {} ({} measurement(s) per step) via {}",
            a.interval, a.count, a.prometheus.address
        ),
        None => "no metric analysis: steps advance on time".into(),
    };
    line(
        "Rollout:",
        format!(
            "{steps}, {} per step; {analysis}",
            spec.rollout.step_duration
        ),
    );
    let deadline = parse_duration(&spec.rollout.progress_deadline)
        .map(|_| spec.rollout.progress_deadline.clone())
        .unwrap_or_default();
    line(
        "",
        format!("rollback when a phase makes no progress for {deadline}"),
    );
    line(
        "Advisor:",
        if spec.advisor.enabled {
            format!(
                "{} (advice only; never bypasses a gate)",
                spec.advisor.model
            )
        } else {
            "off".into()
        },
    );
    out.join("\n")
}
