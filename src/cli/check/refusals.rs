//! Issue 20 point 7: what the CRD schema, its CEL rules, the API server or the reconciler would
//! refuse, `mlrollout check` refuses too, one line per problem, starting with the field path.

use serde_json::{Value, json};

use super::check_document;

fn example() -> Value {
    serde_yaml::from_str(include_str!("../../../examples/fraud-detector.yaml")).unwrap()
}

/// Sets the field at `pointer` (a JSON pointer) of the example.
fn with(pointer: &str, field: Value) -> Value {
    let mut value = example();
    let (parent, name) = pointer.rsplit_once('/').unwrap();
    value
        .pointer_mut(parent)
        .and_then(|p| p.as_object_mut())
        .unwrap()
        .insert(name.to_string(), field);
    value
}

/// A refused example, and the start of (or a part of) the line that says why.
type Case = (&'static str, Value, &'static str);

/// Fields the schema does not know, at any depth.
fn unknown_field_cases() -> Vec<Case> {
    vec![
        (
            "misspelt section",
            with("/spec/servng", json!({"replicas": 2})),
            "spec.servng: Unknown field: not in the schema, the API server would drop it; did you mean \"serving\"?",
        ),
        (
            "unknown field deep down",
            with("/spec/drift/thresholds/psiHihg", json!(0.3)),
            "spec.drift.thresholds.psiHihg: Unknown field: not in the schema, the API server would drop it; did you mean \"psiHigh\"?",
        ),
        (
            "unknown field in a list item",
            with("/spec/rollout/analysis/metrics/0/maxx", json!(0.1)),
            "spec.rollout.analysis.metrics[0].maxx: Unknown field",
        ),
        (
            "unknown metadata field",
            with("/metadata/label", json!({"a": "b"})),
            "metadata.label: Unknown field: not in the schema, the API server would drop it; did you mean \"labels\"?",
        ),
        (
            "unknown top-level key",
            with("/sepc", json!({})),
            "sepc: Unknown field: not in the schema, the API server would drop it; did you mean \"spec\"?",
        ),
    ]
}

/// Values out of the schema's ranges.
fn bound_cases() -> Vec<Case> {
    vec![
        (
            "negative replicas",
            with("/spec/serving/replicas", json!(-2)),
            "spec.serving.replicas: Invalid value: -2: spec.serving.replicas in body should be greater than or equal to 0",
        ),
        (
            "port out of range",
            with("/spec/serving/port", json!(99999)),
            "spec.serving.port: Invalid value: 99999: spec.serving.port in body should be less than or equal to 65535",
        ),
        (
            "negative PSI threshold",
            with("/spec/drift/thresholds/psiWarning", json!(-0.1)),
            "spec.drift.thresholds.psiWarning: Invalid value: -0.1: spec.drift.thresholds.psiWarning in body should be greater than or equal to 0",
        ),
        (
            "negative shadow PSI",
            with("/spec/shadow/maxPredictionPsi", json!(-1)),
            "spec.shadow.maxPredictionPsi: Invalid value: -1: spec.shadow.maxPredictionPsi in body should be greater than or equal to 0",
        ),
        (
            "no bins",
            with("/spec/drift/thresholds/bins", json!(0)),
            "spec.drift.thresholds.bins: Invalid value: 0: spec.drift.thresholds.bins in body should be greater than or equal to 2",
        ),
        (
            "one bin",
            with("/spec/drift/thresholds/bins", json!(1)),
            "spec.drift.thresholds.bins: Invalid value: 1: spec.drift.thresholds.bins in body should be greater than or equal to 2",
        ),
        (
            "no attempts a day",
            with("/spec/retraining/maxAttemptsPerDay", json!(0)),
            "spec.retraining.maxAttemptsPerDay: Invalid value: 0: spec.retraining.maxAttemptsPerDay in body should be greater than or equal to 1",
        ),
    ]
}

/// Names, annotations, enums, patterns, lengths, types and crons.
fn other_cases() -> Vec<Case> {
    let long_annotation = json!({"note": "x".repeat(256 * 1024)});
    vec![
        (
            "name too long for its children",
            with("/metadata/name", json!("a".repeat(54))),
            "metadata.name must be at most 53 characters",
        ),
        (
            "name not DNS-1035",
            with("/metadata/name", json!("1-fraud")),
            "metadata.name must be at most 53 characters",
        ),
        (
            "annotations over 256 KiB",
            with("/metadata/annotations", long_annotation),
            "metadata.annotations: Too long: must have at most 262144 bytes (these have 262148)",
        ),
        (
            "enum",
            with("/spec/traffic/provider", json!("nginx")),
            "spec.traffic.provider: Unsupported value: \"nginx\": supported values: \"gatewayAPI\", \"istio\", \"none\"",
        ),
        (
            "pattern",
            with("/spec/model/alias", json!("bad alias")),
            "spec.model.alias: Invalid value: \"bad alias\": spec.model.alias in body should match '^[A-Za-z0-9_-]+$'",
        ),
        (
            "maxLength",
            with("/spec/model/alias", json!("a".repeat(64))),
            "spec.model.alias in body should be at most 63 chars long",
        ),
        (
            "type",
            with("/spec/serving/replicas", json!("two")),
            "spec.serving.replicas: Invalid value: \"string\": spec.serving.replicas in body must be of type integer: \"string\"",
        ),
        (
            "6-field retraining cron",
            with("/spec/retraining/triggers/schedule", json!("0 0 3 * * 0")),
            "spec.retraining.triggers.schedule: \"0 0 3 * * 0\" is not a valid cron schedule (",
        ),
        (
            "6-field drift cron",
            {
                let mut value = with("/spec/drift/schedule", json!("0 0 * * * *"));
                value["spec"]["drift"]
                    .as_object_mut()
                    .unwrap()
                    .remove("interval");
                value
            },
            "spec.drift.schedule: \"0 0 * * * *\" is not a valid cron schedule (",
        ),
    ]
}

#[test]
fn each_refusal_names_its_field() {
    let cases = [unknown_field_cases(), bound_cases(), other_cases()].concat();
    let mut failures = Vec::new();
    for (name, value, expected) in cases {
        match check_document(&value) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(problems) => {
                if !problems
                    .iter()
                    .any(|p| p.starts_with(expected) || p.contains(expected))
                {
                    failures.push(format!("{name}: expected {expected:?}, got {problems:#?}"));
                }
                if let Some(p) = problems.iter().find(|p| p.contains('\n')) {
                    failures.push(format!("{name}: a problem spans lines: {p:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The cron message asks for 5 fields; a 6-field cron gets that message.
#[test]
fn a_six_field_cron_is_told_to_use_five() {
    let value = with("/spec/retraining/triggers/schedule", json!("0 0 3 * * 0"));
    let problems = check_document(&value).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.ends_with("use 5 fields, e.g. \"0 3 * * 0\"")),
        "{problems:#?}"
    );
}

/// The settings the schema keeps as written (pod and Job templates) are not unknown fields.
#[test]
fn preserved_objects_take_any_field() {
    let value = with(
        "/spec/retraining/jobTemplate/ttlSecondsAfterFinished",
        json!(600),
    );
    assert!(check_document(&value).is_ok());
}

/// A typed-spec error is not repeated when the schema already said it with a path.
#[test]
fn no_second_unpathed_line_for_a_schema_error() {
    let value = with("/spec/traffic/provider", json!("nginx"));
    let problems = check_document(&value).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:#?}");
}
