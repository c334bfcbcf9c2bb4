//! `mlrollout check`: offline validation of manifests, with an explanation a person can read.
//!
//! Four layers, in the order the API server and the operator apply them: the CRD schema's
//! structural rules (types, required fields, enums, ranges, lengths, patterns, item counts),
//! its CEL rules (`x-kubernetes-validations`), the typed spec, and the reconciler's own
//! checks. Structural problems are worded as the API server words them, so `mlrollout check`
//! and `kubectl apply` say the same thing (tests/crd.rs holds them to it).

use std::path::PathBuf;
use std::process::ExitCode;

use kube::CustomResourceExt;
use serde::Deserialize;

use crate::api::duration::{format_duration, parse_duration};
use crate::api::validation::validate;
use crate::api::{DriftSpec, ModelDeployment, ModelDeploymentSpec, TrafficProvider};

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

/// Runs every layer on one document; returns the typed resource or every problem.
pub fn check_value(value: &serde_json::Value) -> Result<ModelDeployment, Vec<String>> {
    // What the API server validates: `null` in a field that is not nullable is dropped first
    // (then defaulted, or reported as a missing required field).
    let mut pruned = value.clone();
    if let Some(schema) = crd_schema() {
        prune_nulls(schema, &mut pruned);
    }
    let value = &pruned;
    let mut problems = Vec::new();
    if value.get("apiVersion").and_then(|v| v.as_str()) != Some("mlrollout.io/v1alpha1") {
        problems.push("apiVersion must be mlrollout.io/v1alpha1".to_string());
    }
    problems.extend(schema_problems(value));
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

/// The generated CRD's OpenAPI schema as JSON (generated once).
fn crd_schema() -> Option<&'static serde_json::Value> {
    static SCHEMA: std::sync::OnceLock<Option<serde_json::Value>> = std::sync::OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let crd = ModelDeployment::crd();
            crd.spec
                .versions
                .first()
                .and_then(|v| v.schema.as_ref())
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .and_then(|s| serde_json::to_value(s).ok())
        })
        .as_ref()
}

/// Drops `null` values of fields whose schema is not `nullable`, as the API server does
/// before defaulting and validation.
fn prune_nulls(schema: &serde_json::Value, value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(fields) => {
            let properties = schema.get("properties").and_then(|p| p.as_object());
            let field_schema = |name: &str| {
                properties
                    .and_then(|p| p.get(name))
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
            };
            fields.retain(|name, field| {
                !field.is_null()
                    || field_schema(name).is_none_or(|s| s.get("nullable") == Some(&true.into()))
            });
            for (name, field) in fields.iter_mut() {
                if let Some(s) = field_schema(name) {
                    prune_nulls(s, field);
                }
            }
        }
        serde_json::Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for item in items {
                    prune_nulls(s, item);
                }
            }
        }
        _ => {}
    }
}

/// Structural rules of the generated CRD (OpenAPI `type`, `required`, `enum`, `minimum` /
/// `maximum`, `minLength` / `maxLength`, `pattern`, `minItems` / `maxItems`), checked
/// client-side and worded like the API server's answer, e.g.
/// `spec.serving.port: Invalid value: 70000: spec.serving.port in body should be less than or
/// equal to 65535`. A required field whose schema has a default counts as present: the server
/// fills it before validating.
pub fn schema_problems(value: &serde_json::Value) -> Vec<String> {
    let Some(schema) = crd_schema() else {
        return vec!["internal error: the CRD has no schema".into()];
    };
    let mut pruned = value.clone();
    prune_nulls(schema, &mut pruned);
    let mut problems = Vec::new();
    match pruned.get("spec") {
        Some(spec) => structural("spec", &schema["properties"]["spec"], spec, &mut problems),
        None => problems.push("spec: Required value".to_string()),
    }
    problems
}

fn structural(
    path: &str,
    schema: &serde_json::Value,
    value: &serde_json::Value,
    problems: &mut Vec<String>,
) {
    use serde_json::Value;
    // The server's wording: `<path>: Invalid value: <shown>: <path> in body <detail>`.
    let invalid = |shown: &dyn std::fmt::Display, detail: String| {
        format!("{path}: Invalid value: {shown}: {path} in body {detail}")
    };
    let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let wanted = schema_type(schema);
    let type_ok = match wanted {
        _ if value.is_null() => true, // nullable here (pruned elsewhere)
        _ if int_or_string => value.is_i64() || value.is_u64() || value.is_string(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        let actual = match value {
            Value::Object(_) => "object",
            Value::Array(_) => "array",
            Value::String(_) => "string",
            Value::Number(n) if n.is_f64() => "number",
            Value::Number(_) => "integer",
            Value::Bool(_) => "boolean",
            Value::Null => "null",
        };
        let wanted = if int_or_string {
            "int-or-string"
        } else {
            wanted
        };
        problems.push(invalid(
            &format!("\"{actual}\""),
            format!("must be of type {wanted}: \"{actual}\""),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(|e| e.as_array())
        && !allowed.contains(value)
    {
        let supported: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
        problems.push(format!(
            "{path}: Unsupported value: {value}: supported values: {}",
            supported.join(", ")
        ));
    }
    let limit = |key: &str| schema.get(key).and_then(|v| v.as_f64());
    let too_big = |key: &str, measured: f64| limit(key).filter(|max| measured > *max).map(number);
    let too_small = |key: &str, measured: f64| limit(key).filter(|min| measured < *min).map(number);
    if let Some(n) = value.as_f64() {
        if let Some(max) = too_big("maximum", n) {
            problems.push(invalid(
                value,
                format!("should be less than or equal to {max}"),
            ));
        }
        if let Some(min) = too_small("minimum", n) {
            problems.push(invalid(
                value,
                format!("should be greater than or equal to {min}"),
            ));
        }
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as f64;
        if let Some(max) = too_big("maxLength", length) {
            problems.push(invalid(
                value,
                format!("should be at most {max} chars long"),
            ));
        }
        if let Some(min) = too_small("minLength", length) {
            problems.push(invalid(
                value,
                format!("should be at least {min} chars long"),
            ));
        }
        if let Some(pattern) = schema.get("pattern").and_then(|p| p.as_str())
            && !matches_pattern(pattern, text)
        {
            problems.push(invalid(value, format!("should match '{pattern}'")));
        }
    }
    if let Some(items) = value.as_array() {
        // The server shows the item count as the invalid value.
        let count = items.len();
        if let Some(max) = too_big("maxItems", count as f64) {
            problems.push(invalid(&count, format!("should have at most {max} items")));
        }
        if let Some(min) = too_small("minItems", count as f64) {
            problems.push(invalid(&count, format!("should have at least {min} items")));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                structural(&format!("{path}[{i}]"), item_schema, item, problems);
            }
        }
    }
    if let Some(fields) = value.as_object() {
        let properties = schema.get("properties").and_then(|p| p.as_object());
        if let Some(required) = schema.get("required").and_then(|r| r.as_array()) {
            for name in required.iter().filter_map(|r| r.as_str()) {
                let defaulted = properties
                    .and_then(|p| p.get(name))
                    .is_some_and(|p| p.get("default").is_some());
                if !fields.contains_key(name) && !defaulted {
                    problems.push(format!("{path}.{name}: Required value"));
                }
            }
        }
        for (name, field) in fields {
            let field_schema = properties
                .and_then(|p| p.get(name))
                .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
            if let Some(field_schema) = field_schema {
                structural(&format!("{path}.{name}"), field_schema, field, problems);
            }
        }
    }
}

fn schema_type(schema: &serde_json::Value) -> &str {
    schema.get("type").and_then(|t| t.as_str()).unwrap_or("")
}

/// `100` rather than `100.0`, as the API server prints limits.
fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

thread_local! {
    /// Setting up the CEL environment (every Kubernetes function) costs more than a check.
    static VALIDATOR: kube::core::cel::Validator = kube::core::cel::Validator::new();
}

/// OpenAPI `pattern`, evaluated by the CEL library's regular expressions (the ones CEL's
/// `matches` uses), so no second regex engine is needed.
fn matches_pattern(pattern: &str, text: &str) -> bool {
    let literal = pattern.replace('\\', "\\\\").replace('\'', "\\'");
    let schema = serde_json::json!({
        "type": "string",
        "x-kubernetes-validations": [{"rule": format!("self.matches('{literal}')")}]
    });
    VALIDATOR.with(|v| {
        v.validate(&schema, &serde_json::Value::String(text.into()), None)
            .is_ok()
    })
}

/// CEL rules of the generated CRD, evaluated client-side like the API server would.
pub fn cel_problems(value: &serde_json::Value) -> Vec<String> {
    let Some(schema) = crd_schema() else {
        return vec!["internal error: the CRD has no schema".into()];
    };
    match VALIDATOR.with(|v| v.validate(schema, value, None)) {
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
                (None, None) => format!("every {}", format_duration(DriftSpec::DEFAULT_INTERVAL)),
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
