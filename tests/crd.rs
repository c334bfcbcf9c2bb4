//! The committed CRD, the bundled example, and the admission rules (schema + CEL) that reject
//! bad resources with messages a user understands.

use kube::CustomResourceExt;
use mlrollout::api::ModelDeployment;
use mlrollout::cli::check::{cel_problems, check_value};

fn crd_schema() -> serde_json::Value {
    let crd = ModelDeployment::crd();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

/// Structural OpenAPI validation (types, required, ranges, patterns, enums), as the API server
/// does it before CEL. `nullable` and `x-kubernetes-*` keywords are ignored by JSON Schema.
fn schema_problems(value: &serde_json::Value) -> Vec<String> {
    let validator = jsonschema::validator_for(&crd_schema()).expect("CRD schema compiles");
    validator
        .iter_errors(value)
        .map(|e| format!("{}: {}", e.instance_path(), e))
        .collect()
}

/// What admission would say: schema problems, then CEL problems.
fn admission_problems(value: &serde_json::Value) -> Vec<String> {
    let mut problems = schema_problems(value);
    problems.extend(cel_problems(value));
    problems
}

fn example() -> serde_json::Value {
    let text = std::fs::read_to_string("examples/fraud-detector.yaml").unwrap();
    serde_yaml::from_str(&text).unwrap()
}

#[test]
fn committed_crd_is_up_to_date() {
    let committed = std::fs::read_to_string("crds/modeldeployment.yaml")
        .expect("crds/modeldeployment.yaml exists");
    assert!(
        committed == mlrollout::api::crd_yaml(),
        "crds/modeldeployment.yaml is stale: run `cargo run -- crd > crds/modeldeployment.yaml`"
    );
}

#[test]
fn crd_has_names_columns_and_status_subresource() {
    let crd = ModelDeployment::crd();
    assert_eq!(crd.spec.group, "mlrollout.io");
    assert_eq!(crd.spec.names.kind, "ModelDeployment");
    assert_eq!(crd.spec.names.short_names, Some(vec!["mdep".to_string()]));
    assert_eq!(crd.spec.scope, "Namespaced");
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<_> = version
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        columns,
        vec![
            ("Phase", ".status.phase"),
            ("Stable", ".status.stableVersion"),
            ("Candidate", ".status.candidateVersion"),
            ("Weight", ".status.canaryWeight"),
            ("Drift", ".status.drift.severity"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
    // Conditions are a list-map keyed by type, as Kubernetes conventions ask.
    let conditions = &crd_schema()["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"][0], "type");
}

#[test]
fn every_spec_field_is_documented() {
    // Every property in the schema has a description (it is `kubectl explain` text).
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, prop) in props {
                let here = format!("{path}.{name}");
                if prop.get("description").is_none() {
                    missing.push(here.clone());
                }
                walk(&here, prop, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    walk("spec", &crd_schema()["properties"]["spec"], &mut missing);
    walk(
        "status",
        &crd_schema()["properties"]["status"],
        &mut missing,
    );
    // Fields of embedded Kubernetes types (resources, env) come documented from k8s-openapi.
    assert!(missing.is_empty(), "undocumented fields: {missing:#?}");
}

#[test]
fn example_passes_schema_cel_and_reconciler_checks() {
    let value = example();
    assert_eq!(admission_problems(&value), Vec::<String>::new());
    let resource = check_value(&value).expect("example is valid");
    assert_eq!(resource.spec.rollout.steps, vec![10, 50, 100]);
    let drift = resource.spec.drift.as_ref().unwrap();
    assert_eq!(drift.thresholds.psi_warning, 0.2);
    assert_eq!(drift.thresholds.psi_high, 0.25);
    assert_eq!(
        resource
            .spec
            .performance
            .as_ref()
            .unwrap()
            .accuracy_threshold,
        0.85
    );
}

#[test]
fn a_minimal_resource_gets_sensible_defaults() {
    let value: serde_json::Value = serde_yaml::from_str(
        r#"
apiVersion: mlrollout.io/v1alpha1
kind: ModelDeployment
metadata: {name: m, namespace: ns}
spec:
  model: {trackingUri: "http://mlflow:5000", name: m}
  traffic: {provider: none}
"#,
    )
    .unwrap();
    assert_eq!(admission_problems(&value), Vec::<String>::new());
    let resource = check_value(&value).unwrap();
    assert_eq!(resource.spec.model.alias, "champion");
    assert_eq!(resource.spec.rollout.steps, vec![10, 50, 100]);
    assert_eq!(resource.spec.serving.port, 8080);
    assert!(resource.spec.shadow.enabled);
    assert!(!resource.spec.advisor.enabled);
    assert_eq!(resource.spec.evaluation.metric, "accuracy");
}

/// Applies a JSON merge patch to the example.
fn with(patch: serde_json::Value) -> serde_json::Value {
    fn merge(target: &mut serde_json::Value, patch: serde_json::Value) {
        match (target, patch) {
            (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(&k);
                    } else {
                        merge(t.entry(k).or_insert(serde_json::Value::Null), v);
                    }
                }
            }
            (t, p) => *t = p,
        }
    }
    let mut value = example();
    merge(&mut value, patch);
    value
}

#[test]
fn invalid_resources_are_rejected_with_messages_that_say_what_to_fix() {
    use serde_json::json;
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "steps must end at 100",
            json!({"spec": {"rollout": {"steps": [10, 50]}}}),
            "rollout.steps must end at 100",
        ),
        (
            "steps must increase",
            json!({"spec": {"rollout": {"steps": [50, 10, 100]}}}),
            "strictly increasing",
        ),
        (
            "steps must not repeat",
            json!({"spec": {"rollout": {"steps": [10, 10, 100]}}}),
            "strictly increasing",
        ),
        (
            "steps are percentages",
            json!({"spec": {"rollout": {"steps": [0, 50, 100]}}}),
            "between 1 and 100",
        ),
        (
            "steps not empty",
            json!({"spec": {"rollout": {"steps": []}}}),
            "rollout/steps",
        ),
        (
            "psi warning above high",
            json!({"spec": {"drift": {"thresholds": {"psiWarning": 0.3}}}}),
            "psiWarning must not exceed",
        ),
        (
            "alpha in (0,1)",
            json!({"spec": {"drift": {"thresholds": {"alpha": 1.0}}}}),
            "alpha must be between 0 and 1",
        ),
        (
            "drift share in (0,1]",
            json!({"spec": {"drift": {"thresholds": {"driftShare": 0.0}}}}),
            "driftShare must be in (0, 1]",
        ),
        (
            "interval or schedule",
            json!({"spec": {"drift": {"schedule": "0 * * * *"}}}),
            "either drift.interval or drift.schedule",
        ),
        (
            "window needs timestamp",
            json!({"spec": {"drift": {"current": {"window": "24h"}}}}),
            "timestampColumn is required",
        ),
        (
            "alias latest is reserved",
            json!({"spec": {"model": {"alias": "latest"}}}),
            "MLflow reserves those names",
        ),
        (
            "alias v3 is reserved",
            json!({"spec": {"model": {"alias": "v3"}}}),
            "MLflow reserves those names",
        ),
        (
            "gateway needs parents",
            json!({"spec": {"traffic": {"parentRefs": null}}}),
            "parentRefs must name at least one Gateway",
        ),
        (
            "istio needs hosts",
            json!({"spec": {"traffic": {"provider": "istio", "hostnames": null}}}),
            "hostnames must list the hosts",
        ),
        (
            "retraining needs a trigger",
            json!({"spec": {"retraining": {"triggers": null}}}),
            "needs at least one of schedule",
        ),
        (
            "advisor needs a key",
            json!({"spec": {"advisor": {"enabled": true}}}),
            "apiKeySecret is required",
        ),
        (
            "metric needs a threshold",
            json!({"spec": {"rollout": {"analysis": {"metrics": [{"name": "x", "query": "up"}]}}}}),
            "needs a threshold",
        ),
        (
            "metric min <= max",
            json!({"spec": {"rollout": {"analysis": {"metrics": [{"name": "x", "query": "up", "min": 2.0, "max": 1.0}]}}}}),
            "min must not exceed max",
        ),
        (
            "maxIncrease one kind",
            json!({"spec": {"rollout": {"analysis": {"metrics": [{"name": "x", "query": "up", "maxIncrease": {"ratio": 1.2, "difference": 0.1}}]}}}}),
            "exactly one of ratio or difference",
        ),
        (
            "accuracy one source",
            json!({"spec": {"performance": {"accuracyQuery": "acc"}}}),
            "either performance.labelled or performance.accuracyQuery",
        ),
        (
            "mirror percent range",
            json!({"spec": {"shadow": {"mirrorPercent": 150}}}),
            "shadow/mirrorPercent",
        ),
        (
            "durations are Go style",
            json!({"spec": {"rollout": {"stepDuration": "5 minutes"}}}),
            "rollout/stepDuration",
        ),
        (
            "provider enum",
            json!({"spec": {"traffic": {"provider": "linkerd"}}}),
            "traffic/provider",
        ),
        (
            "tracking URI is a URL",
            json!({"spec": {"model": {"trackingUri": "mlflow:5000"}}}),
            "model/trackingUri",
        ),
        (
            "model name required",
            json!({"spec": {"model": {"name": null}}}),
            "\"name\" is a required property",
        ),
        (
            "port range",
            json!({"spec": {"serving": {"port": 70000}}}),
            "serving/port",
        ),
        (
            "attempts per day range",
            json!({"spec": {"retraining": {"maxAttemptsPerDay": 0}}}),
            "retraining/maxAttemptsPerDay",
        ),
    ];
    assert!(cases.len() >= 15);
    let mut failures = Vec::new();
    for (name, patch, expected) in cases {
        let problems = admission_problems(&with(patch));
        if !problems.iter().any(|p| p.contains(expected)) {
            failures.push(format!(
                "{name}: expected a problem containing {expected:?}, got {problems:#?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_reconciler_catches_what_cel_cannot() {
    use serde_json::json;
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (
            json!({"spec": {"retraining": {"triggers": {"schedule": "every sunday"}}}}),
            "not a valid cron schedule",
        ),
        (
            json!({"spec": {"drift": {"interval": null, "schedule": "61 * * * *"}}}),
            "not a valid cron schedule",
        ),
        (
            json!({"spec": {"retraining": {"jobTemplate": {"template": {"spec": {"containers": []}}}}}}),
            "at least one container",
        ),
        (
            json!({"spec": {"retraining": {"jobTemplate": {"template": {"spec": {"containers": [{"name": 5}]}}}}}}),
            "not a valid batch/v1 JobSpec",
        ),
        (
            json!({"spec": {"serving": {"podTemplate": {"spec": {"containers": "x"}}}}}),
            "not a valid core/v1 PodTemplateSpec",
        ),
        (
            json!({"spec": {"drift": {"features": [{"name": "a"}, {"name": "a"}]}}}),
            "listed twice",
        ),
        (
            json!({"spec": {"rollout": {"analysis": {"metrics": [
            {"name": "x", "query": "up", "max": 1.0}, {"name": "x", "query": "up", "max": 1.0}]}}}}),
            "used twice",
        ),
    ];
    for (patch, expected) in cases {
        let problems = check_value(&with(patch.clone())).expect_err("must be rejected");
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{patch}: expected {expected:?} in {problems:#?}"
        );
    }
}
