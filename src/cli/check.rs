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
use serde_json::Value;

use crate::api::ModelDeployment;
use crate::api::validation::{SpecProblem, ValidatedSpec, validate};

mod envelope;
mod explain;
#[cfg(test)]
mod refusals;

pub use explain::explain;

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
        if let Err(e) = super::yaml::check_nesting(&text) {
            eprintln!("{}: not valid YAML: {e}", file.display());
            ok = false;
            continue;
        }
        for (index, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let value = match read_document(document) {
                Ok(v) => v,
                // A syntax error ends the stream: the parser cannot find where the next
                // document starts, and asking again repeats the same error forever.
                Err(e) => {
                    eprintln!(
                        "{}: document {}: not valid YAML: {e}",
                        file.display(),
                        index + 1
                    );
                    ok = false;
                    break;
                }
            };
            if value.0.get("kind").and_then(|k| k.as_str()) != Some("ModelDeployment") {
                continue;
            }
            found += 1;
            let (value, non_finite) = value;
            let checked = match (check_document(&value), non_finite.is_empty()) {
                (Ok(checked), true) => Ok(checked),
                (Ok(_), false) => Err(non_finite),
                (Err(mut problems), _) => {
                    problems.extend(non_finite);
                    Err(problems)
                }
            };
            match checked {
                Ok((resource, spec)) => {
                    let file = file.display().to_string();
                    if super::output::println(&explain(&file, &resource.metadata, &spec)).is_err() {
                        return ExitCode::FAILURE;
                    }
                }
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

/// One YAML document as JSON, with the numbers JSON cannot carry (which it would turn into
/// `null`) reported.
fn read_document(
    document: serde_yaml::Deserializer<'_>,
) -> Result<(Value, Vec<String>), serde_yaml::Error> {
    let yaml = serde_yaml::Value::deserialize(document)?;
    let mut non_finite = Vec::new();
    envelope::non_finite_numbers("", &yaml, &mut non_finite);
    Ok((Value::deserialize(yaml)?, non_finite))
}

/// Runs every layer on one document; returns the typed resource or every problem.
pub fn check_value(value: &Value) -> Result<ModelDeployment, Vec<String>> {
    check_document(value).map(|(resource, _)| resource)
}

/// [`check_value`], with the spec as validation parsed it.
fn check_document(value: &Value) -> Result<(ModelDeployment, ValidatedSpec), Vec<String>> {
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
    problems.extend(envelope::envelope_problems(value));
    problems.extend(schema_problems(value));
    problems.extend(cel_problems(value));
    let resource = match serde_json::from_value::<ModelDeployment>(value.clone()) {
        Ok(r) => r,
        // Said already, with its field path, by the layers above.
        Err(_) if !problems.is_empty() => return Err(problems),
        Err(e) => {
            problems.push(format!("spec does not match the schema: {e}"));
            return Err(problems);
        }
    };
    match validate(&resource.spec) {
        Ok(spec) if problems.is_empty() => Ok((resource, spec)),
        Ok(_) => Err(problems),
        Err(spec_problems) => {
            let unsaid = not_said_by_cel(&problems, spec_problems);
            problems.extend(unsaid);
            Err(problems)
        }
    }
}

/// The reconciler repeats the main CEL rules; report a field once, in CEL's words.
fn not_said_by_cel(problems: &[String], spec_problems: Vec<SpecProblem>) -> Vec<String> {
    let cel_fields: Vec<&str> = problems
        .iter()
        .filter_map(|p| p.split_once(": ").map(|(field, _)| field))
        .collect();
    spec_problems
        .into_iter()
        .filter(|p| {
            !cel_fields
                .iter()
                .any(|f| p.field == *f || p.field.starts_with(&format!("{f}.")))
        })
        .map(|p| p.to_string())
        .collect()
}

/// The generated CRD's OpenAPI schema as JSON (generated once).
fn crd_schema() -> Option<&'static Value> {
    static SCHEMA: std::sync::OnceLock<Option<Value>> = std::sync::OnceLock::new();
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
fn prune_nulls(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(fields) => {
            fields.retain(|name, field| {
                !field.is_null()
                    || field_schema(schema, name)
                        .is_none_or(|s| s.get("nullable") == Some(&true.into()))
            });
            for (name, field) in fields.iter_mut() {
                if let Some(s) = field_schema(schema, name) {
                    prune_nulls(s, field);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for item in items {
                    prune_nulls(s, item);
                }
            }
        }
        _ => {}
    }
}

/// The schema of an object's field: its property, else the object's `additionalProperties`.
fn field_schema<'a>(schema: &'a Value, name: &str) -> Option<&'a Value> {
    schema
        .get("properties")
        .and_then(|p| p.as_object())
        .and_then(|p| p.get(name))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

/// Structural rules of the generated CRD (OpenAPI `type`, `required`, `enum`, `minimum` /
/// `maximum`, `minLength` / `maxLength`, `pattern`, `minItems` / `maxItems`), checked
/// client-side and worded like the API server's answer, e.g.
/// `spec.serving.port: Invalid value: 70000: spec.serving.port in body should be less than or
/// equal to 65535`. A required field whose schema has a default counts as present: the server
/// fills it before validating.
pub fn schema_problems(value: &Value) -> Vec<String> {
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

/// Every structural problem of `value` against `schema`, then of its items and fields.
fn structural(path: &str, schema: &Value, value: &Value, problems: &mut Vec<String>) {
    if let Some(problem) = type_problem(path, schema, value) {
        problems.push(problem);
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
    if let Some(n) = value.as_f64() {
        bound_problems(path, schema, &NUMBER_BOUNDS, n, value, problems);
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as f64;
        bound_problems(path, schema, &LENGTH_BOUNDS, length, value, problems);
        if let Some(pattern) = schema.get("pattern").and_then(|p| p.as_str())
            && !matches_pattern(pattern, text)
        {
            problems.push(invalid(path, value, format!("should match '{pattern}'")));
        }
    }
    if let Some(items) = value.as_array() {
        // The server shows the item count as the invalid value.
        let count = items.len();
        bound_problems(path, schema, &ITEM_BOUNDS, count as f64, &count, problems);
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                structural(&format!("{path}[{i}]"), item_schema, item, problems);
            }
        }
    }
    if let Some(fields) = value.as_object() {
        object_problems(path, schema, fields, problems);
    }
}

/// The server's wording: `<path>: Invalid value: <shown>: <path> in body <detail>`.
fn invalid(path: &str, shown: &dyn std::fmt::Display, detail: String) -> String {
    format!("{path}: Invalid value: {shown}: {path} in body {detail}")
}

/// `must be of type ...` when the value's JSON type is not the schema's.
fn type_problem(path: &str, schema: &Value, value: &Value) -> Option<String> {
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
    if type_ok {
        return None;
    }
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
    Some(invalid(
        path,
        &format!("\"{actual}\""),
        format!("must be of type {wanted}: \"{actual}\""),
    ))
}

/// A limit of the schema (`maximum`, `minLength`, ...) and the server's words when it is
/// broken: `<before><limit><after>`.
struct Bound {
    keyword: &'static str,
    /// `true` for a maximum, `false` for a minimum.
    upper: bool,
    before: &'static str,
    after: &'static str,
}

const fn bound(
    keyword: &'static str,
    upper: bool,
    before: &'static str,
    after: &'static str,
) -> Bound {
    Bound {
        keyword,
        upper,
        before,
        after,
    }
}

/// The limits of a number, of a string's length and of an array's item count, the maximum
/// first (the server's order).
const NUMBER_BOUNDS: [Bound; 2] = [
    bound("maximum", true, "should be less than or equal to ", ""),
    bound("minimum", false, "should be greater than or equal to ", ""),
];
const LENGTH_BOUNDS: [Bound; 2] = [
    bound("maxLength", true, "should be at most ", " chars long"),
    bound("minLength", false, "should be at least ", " chars long"),
];
const ITEM_BOUNDS: [Bound; 2] = [
    bound("maxItems", true, "should have at most ", " items"),
    bound("minItems", false, "should have at least ", " items"),
];

/// One problem per limit of `bounds` that `measured` breaks; `shown` is the invalid value.
fn bound_problems(
    path: &str,
    schema: &Value,
    bounds: &[Bound],
    measured: f64,
    shown: &dyn std::fmt::Display,
    problems: &mut Vec<String>,
) {
    for b in bounds {
        let Some(limit) = schema.get(b.keyword).and_then(|v| v.as_f64()) else {
            continue;
        };
        let broken = if b.upper {
            measured > limit
        } else {
            measured < limit
        };
        if broken {
            let detail = format!("{}{}{}", b.before, number(limit), b.after);
            problems.push(invalid(path, shown, detail));
        }
    }
}

/// Missing required fields (a defaulted one counts as present), then each field's problems.
fn object_problems(
    path: &str,
    schema: &Value,
    fields: &serde_json::Map<String, Value>,
    problems: &mut Vec<String>,
) {
    if let Some(required) = schema.get("required").and_then(|r| r.as_array()) {
        for name in required.iter().filter_map(|r| r.as_str()) {
            let defaulted = schema
                .get("properties")
                .and_then(|p| p.get(name))
                .is_some_and(|p| p.get("default").is_some());
            if !fields.contains_key(name) && !defaulted {
                problems.push(format!("{path}.{name}: Required value"));
            }
        }
    }
    let keeps_unknown = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&true.into());
    for (name, field) in fields {
        match field_schema(schema, name) {
            Some(field_schema) => {
                structural(&format!("{path}.{name}"), field_schema, field, problems)
            }
            None if keeps_unknown => {}
            None => {
                let known = schema.get("properties").and_then(|p| p.as_object());
                let known = known.into_iter().flat_map(|p| p.keys().map(String::as_str));
                problems.push(envelope::unknown_field(path, name, known));
            }
        }
    }
}

fn schema_type(schema: &Value) -> &str {
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
        v.validate(&schema, &Value::String(text.into()), None)
            .is_ok()
    })
}

/// CEL rules of the generated CRD, evaluated client-side like the API server would.
pub fn cel_problems(value: &Value) -> Vec<String> {
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
