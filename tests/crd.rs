//! The committed CRD, the bundled example, and the admission rules (schema + CEL) that reject
//! bad resources with messages a user understands.
//!
//! The real API server (tests/harness/cluster.sh, our CRD installed) is the authority: every
//! invalid resource is created through the Rust client and applied with
//! `kubectl apply --dry-run=server`, and both must be refused at admission with a message that
//! says what to fix. `mlrollout check` (the offline checker: the CRD's structural rules and CEL
//! rules evaluated client-side, then the reconciler's checks) must refuse the same resources
//! with the same words, and admit the same edge cases. Defaults are the ones the server fills
//! in, and the longest name the CRD admits is run through the operator on the real server to
//! show that every child it names is accepted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code states expectations

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use mlrollout::api::{ModelDeployment, Phase};
use mlrollout::cli::check::{check_value, schema_problems};
use mlrollout::controller::WatchScope;
use mlrollout::core::children::job::LABEL_ATTEMPT;
use mlrollout::core::names::LABEL_OWNER;
use mlrollout::registry::memory::InMemoryRegistry;
use serde_json::{Value, json};

use common::cluster::{client, cluster, delete_namespace, eventually, finish_job, namespace};
use common::operator::{Operator, test_context};
use common::registry::register_versions;

/// The CEL rule on `metadata.name` (src/api/mod.rs) says this when it refuses a name.
const NAME_RULE: &str = "metadata.name must be at most 53 characters of lowercase letters, digits and '-', starting with a letter and ending with a letter or digit";
/// Longest name the CRD admits: `<name>-candidate` is then a 63-character Service name.
const LONGEST_NAME: usize = 53;

fn crd_schema() -> Value {
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

fn example() -> Value {
    let text = std::fs::read_to_string("examples/fraud-detector.yaml").unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// A ModelDeployment with only what has no default.
fn minimal(name: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": "mlrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"trackingUri": "http://mlflow:5000", "name": "m"},
            "traffic": {"provider": "none"}
        }
    })
}

/// JSON merge patch (RFC 7386): `null` removes a field.
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p,
    }
}

/// The example with `patch` merged in.
fn with(patch: Value) -> Value {
    let mut value = example();
    merge(&mut value, patch);
    value
}

/// ModelDeployments as raw JSON on the server: what is sent is exactly what the test wrote
/// (the typed struct would fill serde defaults and could not even hold most invalid values),
/// and what is read back is exactly what the server stored.
fn raw_api(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::erase::<ModelDeployment>(&()),
    )
}

fn dynamic(value: &Value) -> DynamicObject {
    serde_json::from_value(value.clone()).expect("a Kubernetes object")
}

/// Creates `value` through the Rust client; the server's answer as (HTTP code, reason, message).
async fn server_create(
    api: &Api<DynamicObject>,
    value: &Value,
) -> Result<DynamicObject, (u16, String, String)> {
    match api.create(&PostParams::default(), &dynamic(value)).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(status)) => {
            Err((status.code, status.reason.clone(), status.message.clone()))
        }
        Err(other) => panic!("the API server did not answer: {other}"),
    }
}

/// `kubectl apply --dry-run=server -f <file>`: (success, everything kubectl printed).
fn kubectl_apply_dry_run(file: &Path) -> (bool, String) {
    let output = cluster()
        .kubectl()
        .args(["apply", "--dry-run=server", "-f"])
        .arg(file)
        .output()
        .expect("kubectl runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

fn write_yaml(dir: &Path, file: &str, value: &Value) -> std::path::PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, serde_yaml::to_string(value).unwrap()).expect("manifest written");
    path
}

#[derive(Clone, Copy, PartialEq)]
enum Compare {
    /// Same JSON.
    Equal,
    /// Everything in the expected value is in the actual one (empty lists, maps and nulls
    /// count as absent).
    Within,
}

/// Paths where `actual` differs from `expected`. Numbers compare by value: the API server
/// stores the `0.0` of a YAML file as `0`.
fn differences(path: &str, expected: &Value, actual: &Value, mode: Compare, out: &mut Vec<String>) {
    let empty = |v: &Value| v.is_null() || v == &json!([]) || v == &json!({});
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                match a.get(k) {
                    Some(av) => differences(&format!("{path}.{k}"), v, av, mode, out),
                    None if mode == Compare::Within && empty(v) => {}
                    None => out.push(format!("{path}.{k}: {v} is missing")),
                }
            }
            if mode == Compare::Equal {
                for (k, v) in a {
                    if !e.contains_key(k) {
                        out.push(format!("{path}.{k}: {v} is unexpected"));
                    }
                }
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                differences(&format!("{path}[{i}]"), ev, av, mode, out);
            }
        }
        (Value::Number(e), Value::Number(a)) if e.as_f64() == a.as_f64() => {}
        (e, a) if e == a => {}
        (e, a) => out.push(format!("{path}: expected {e}, found {a}")),
    }
}

/// A name of exactly `len` characters that the CRD's name rule admits.
fn name_of_length(prefix: &str, len: usize) -> String {
    let mut name: String = prefix.chars().take(len).collect();
    while name.len() < len {
        name.push('x');
    }
    name
}

/// A DNS-1035 label (what Services need; also a valid label value and DNS-1123 name).
fn is_dns1035_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[bytes.len() - 1] != b'-'
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

/// Every field of `spec` is named in the README (by its own name, e.g. `maxLatencyRatio`), so a
/// field added without documentation fails here. Kubernetes' own embedded types (an `EnvVar`'s
/// `valueFrom`, a pod template) are documented by Kubernetes and not walked into.
#[test]
fn the_readme_names_every_spec_field() {
    fn walk(schema: &Value, path: &str, readme: &str, missing: &mut Vec<String>) {
        const KUBERNETES_OWN: &[&str] = &["spec.serving.env[].valueFrom"];
        if KUBERNETES_OWN.contains(&path) {
            return;
        }
        if let Some(properties) = schema["properties"].as_object() {
            for (name, field) in properties {
                let field_path = format!("{path}.{name}");
                if !names(readme, name) {
                    missing.push(field_path.clone());
                }
                walk(field, &field_path, readme, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(items, &format!("{path}[]"), readme, missing);
        }
    }
    /// `name` as a whole word (not a piece of a longer identifier).
    fn names(readme: &str, name: &str) -> bool {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        readme.match_indices(name).any(|(at, _)| {
            let before = readme[..at].chars().next_back();
            let after = readme[at + name.len()..].chars().next();
            !before.is_some_and(word) && !after.is_some_and(word)
        })
    }
    let readme = std::fs::read_to_string("README.md").expect("README.md exists");
    let crd = serde_json::to_value(ModelDeployment::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert!(spec["properties"].as_object().is_some_and(|p| p.len() > 5));
    let mut missing = Vec::new();
    walk(spec, "spec", &readme, &mut missing);
    assert!(
        missing.is_empty(),
        "fields the README never names (document each, with an example): {missing:?}"
    );
}

/// The rest of this file asks the server: it must be judging with the committed CRD.
#[tokio::test]
#[cfg_attr(not(feature = "harness"), ignore = "needs the harness (control plane)")]
async fn the_server_runs_the_committed_crd() {
    let client = client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    let installed = crds
        .get("modeldeployments.mlrollout.io")
        .await
        .expect("the ModelDeployment CRD is installed");
    let committed: Value =
        serde_yaml::from_str(&std::fs::read_to_string("crds/modeldeployment.yaml").unwrap())
            .unwrap();
    let installed = serde_json::to_value(&installed.spec).unwrap();
    let mut differ = Vec::new();
    differences(
        "schema",
        &committed["spec"]["versions"][0]["schema"],
        &installed["versions"][0]["schema"],
        Compare::Equal,
        &mut differ,
    );
    assert!(
        differ.is_empty(),
        "the test cluster's CRD differs from crds/modeldeployment.yaml (restart the cluster): {differ:#?}"
    );
    assert!(
        installed["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]
            .to_string()
            .contains("self.metadata.name.size() <= 53"),
        "the name rule is installed"
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
            // -o wide (priority 1)
            ("Step", ".status.currentStep"),
            ("Mirror", ".status.mirrorPercent"),
            (
                "Reason",
                ".status.conditions[?(@.type==\"Progressing\")].reason"
            ),
            ("Last-Transition", ".status.phaseStartedAt"),
            ("Message", ".status.message"),
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
    fn walk(path: &str, schema: &Value, missing: &mut Vec<String>) {
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

#[tokio::test]
#[cfg_attr(not(feature = "harness"), ignore = "needs the harness (control plane)")]
async fn the_example_is_admitted_by_the_server_and_the_offline_checker() {
    let client = client().await;
    let ns = namespace(&client, "crd-example").await;
    let mut value = example();
    value["metadata"]["namespace"] = json!(ns);

    // Offline: `mlrollout check` and the structural schema.
    assert_eq!(schema_problems(&value), Vec::<String>::new());
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

    // kubectl, as a user applies it.
    let dir = tempfile::tempdir().unwrap();
    let file = write_yaml(dir.path(), "fraud-detector.yaml", &value);
    let (ok, printed) = kubectl_apply_dry_run(&file);
    assert!(
        ok,
        "kubectl apply --dry-run=server refused the example: {printed}"
    );
    assert!(printed.contains("created (server dry run)"), "{printed}");

    // The Rust client; what the server stored reads back as the same spec.
    let api = raw_api(&client, &ns);
    let created = server_create(&api, &value)
        .await
        .unwrap_or_else(|e| panic!("the server refused the example: {e:?}"));
    let stored: ModelDeployment =
        serde_json::from_value(serde_json::to_value(&created).unwrap()).unwrap();
    assert_eq!(stored.spec, resource.spec);
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
#[cfg_attr(not(feature = "harness"), ignore = "needs the harness (control plane)")]
async fn the_server_fills_the_defaults() {
    let client = client().await;
    let ns = namespace(&client, "crd-defaults").await;
    let api = raw_api(&client, &ns);
    let value = minimal("m", &ns);
    server_create(&api, &value)
        .await
        .unwrap_or_else(|e| panic!("the server refused a minimal resource: {e:?}"));
    // Read back raw: these values come from the server's defaulting, not from serde.
    let stored = serde_json::to_value(api.get("m").await.unwrap()).unwrap();
    let spec = &stored["spec"];
    assert_eq!(spec["model"]["alias"], "champion", "{spec:#}");
    assert_eq!(spec["rollout"]["steps"], json!([10, 50, 100]), "{spec:#}");
    assert_eq!(spec["rollout"]["stepDuration"], "5m", "{spec:#}");
    assert_eq!(spec["serving"]["port"], 8080, "{spec:#}");
    assert_eq!(spec["serving"]["replicas"], 2, "{spec:#}");
    assert_eq!(
        spec["serving"]["image"],
        mlrollout::api::DEFAULT_SERVING_IMAGE,
        "{spec:#}"
    );
    assert_eq!(spec["shadow"]["enabled"], true, "{spec:#}");
    assert_eq!(spec["shadow"]["mirrorPercent"], 100, "{spec:#}");
    assert_eq!(spec["advisor"]["enabled"], false, "{spec:#}");
    assert_eq!(spec["evaluation"]["metric"], "accuracy", "{spec:#}");
    assert_eq!(
        spec["evaluation"]["direction"], "higherIsBetter",
        "{spec:#}"
    );
    // Optional sections stay absent: no drift checks, no retraining unless asked for.
    for absent in ["drift", "performance", "retraining"] {
        assert!(
            spec.get(absent).is_none(),
            "{absent} was defaulted: {spec:#}"
        );
    }

    // The server's defaults and the ones the operator (and `mlrollout check`) assume agree:
    // the defaulted spec reads as exactly the typed spec of the minimal manifest.
    let offline = check_value(&value).expect("a minimal resource is valid offline");
    let served: ModelDeployment = serde_json::from_value(stored.clone()).unwrap();
    assert_eq!(served.spec, offline.spec);
    // And every default the operator assumes is written down by the server (nothing is
    // invented client-side that a `kubectl get -o yaml` would not show).
    let typed = serde_json::to_value(&offline.spec).unwrap();
    let mut only_client_side = Vec::new();
    differences("spec", &typed, spec, Compare::Within, &mut only_client_side);
    assert!(
        only_client_side.is_empty(),
        "defaults the server does not fill: {only_client_side:#?}"
    );
    delete_namespace(&client, &ns).await;
}

/// Resources at the edges of what is valid: the server and `mlrollout check` both admit them,
/// and read them the same way (the server's stored spec is the checker's typed spec).
#[tokio::test]
#[cfg_attr(not(feature = "harness"), ignore = "needs the harness (control plane)")]
async fn edge_cases_are_admitted_by_the_server_and_the_offline_checker_alike() {
    let cases: Vec<(&str, Value)> = vec![
        (
            "null for a defaulted field (the server prunes it, then defaults it)",
            json!({"spec": {"shadow": {"mirrorPercent": null}}}),
        ),
        (
            "null for a nullable field",
            json!({"spec": {"model": {"version": null}}}),
        ),
        (
            "a sequential metric with its defaults: no query, no threshold",
            json!({"spec": {"rollout": {"analysis": {"metrics": [{"name": "errors", "judge": "sequential"}]}}}}),
        ),
        (
            "a sequential latency metric with a false-promotion bound",
            json!({"spec": {"rollout": {"analysis": {"metrics": [{"name": "slow", "judge": "sequential",
                "sequential": {"alpha": 0.01, "minEffect": 1.5, "falsePromotion": 0.05, "slowerThan": "0.25"}}]}}}}),
        ),
        (
            "post-promotion analysis with the previous version warm, a kept candidate",
            json!({"spec": {"rollout": {"scaleDownDelay": "15m", "abortScaleDownDelay": "1h",
                "postPromotion": {"duration": "10m", "metrics": [{"name": "errors", "query": "sum(rate(x[1m]))", "max": 0.05}]}}}}),
        ),
        (
            "a plan: mirror ramp, steps with their own settings, pauses",
            json!({"spec": {"rollout": {"plan": [
                {"mirror": 25, "duration": "10m"},
                {"weight": 10, "duration": "5m", "analysis": {"count": 5, "interval": "30s",
                    "metrics": [{"name": "p50", "query": "q", "max": 0.1}]}},
                {"weight": 50, "pause": {}},
                {"weight": 80, "pause": {"duration": "1h"}},
                {"weight": 100}
            ]}}}),
        ),
        (
            "a single rollout step",
            json!({"spec": {"rollout": {"steps": [100]}}}),
        ),
        (
            "capacity and placement: dynamic stable scale, required anti-affinity, variant labels",
            json!({"spec": {"rollout": {"dynamicStableScale": true,
                "antiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}},
                "candidateMetadata": {"labels": {"track": "canary", "example.com/variant": "c"}, "annotations": {"mlrollout.io/note": "annotations may use any key"}},
                "stableMetadata": {"labels": {"track": "stable"}}}}}),
        ),
        (
            "preferred anti-affinity with its default weight",
            json!({"spec": {"rollout": {"antiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": {}}}}}),
        ),
        (
            "quantities as numbers",
            json!({"spec": {"serving": {"resources": {"requests": {"cpu": 2}}}}}),
        ),
        (
            "the longest admitted name",
            json!({"metadata": {"name": name_of_length("longest-", LONGEST_NAME)}}),
        ),
        ("a name of one letter", json!({"metadata": {"name": "m"}})),
        (
            "an experiment by header (exact and regex) or cookie, sticky",
            json!({"spec": {"rollout": {"experiment": {"duration": "30m", "sticky": true, "match": [
                {"headers": [{"name": "x-canary", "value": "insider"}, {"name": "User-Agent", "regex": "^.*Firefox.*$"}]},
                {"cookie": {"name": "canary", "value": "always"}}]}}}}),
        ),
        (
            "InferencePool backends, one picker not a Service (no port needed)",
            json!({"spec": {"traffic": {"backend": {"kind": "InferencePool", "appProtocol": "kubernetes.io/h2c",
                "endpointPickers": {"stable": {"name": "epp-s", "port": 9002, "failureMode": "FailOpen"},
                                    "candidate": {"name": "epp-c", "group": "example.com", "kind": "Picker"}}}}}}),
        ),
        (
            "captured traffic as the current data, its newest rows",
            json!({"spec": {"serving": {"proxy": {"capture": {"uri": "s3://captures/live"}}},
                            "drift": {"current": {"uri": null, "capture": {"variant": "stable"}, "lastRows": 5000}}}}),
        ),
        (
            "labels joined with the captured predictions, of the last week",
            json!({"spec": {"serving": {"proxy": {"capture": {"uri": "s3://captures/live"}}},
                            "performance": {"labelled": {"uri": "s3://data/feedback/", "predictionColumn": null,
                                                         "join": {"capture": {"variant": "stable"}, "lastDuration": "168h"}}}}}),
        ),
        (
            "an object-store prefix, its last hour",
            json!({"spec": {"storage": {"secretRef": {"name": "s3"}, "endpoint": "http://minio.data:9000"},
                            "drift": {"current": {"uri": "s3://captures/fraud/", "lastDuration": "1h"}}}}),
        ),
    ];
    let client = client().await;
    let ns = namespace(&client, "crd-edges").await;
    let api = raw_api(&client, &ns);
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, (name, patch)) in cases.into_iter().enumerate() {
        let mut value = with(patch);
        value["metadata"]["namespace"] = json!(ns);
        if value["metadata"]["name"] == example()["metadata"]["name"] {
            value["metadata"]["name"] = json!(format!("edge-{i}"));
        }
        let offline = match check_value(&value) {
            Ok(resource) => resource,
            Err(problems) => {
                failures.push(format!("{name} (mlrollout check): refused: {problems:#?}"));
                continue;
            }
        };
        let file = write_yaml(dir.path(), &format!("edge-{i}.yaml"), &value);
        let (ok, printed) = kubectl_apply_dry_run(&file);
        if !ok {
            failures.push(format!(
                "{name} (kubectl apply --dry-run=server): {printed}"
            ));
        }
        match server_create(&api, &value).await {
            Ok(created) => {
                let stored: ModelDeployment =
                    serde_json::from_value(serde_json::to_value(&created).unwrap()).unwrap();
                if stored.spec != offline.spec {
                    failures.push(format!(
                        "{name}: the server stored {:#?}, mlrollout check read {:#?}",
                        stored.spec, offline.spec
                    ));
                }
            }
            Err(refusal) => failures.push(format!("{name} (server): refused: {refusal:?}")),
        }
    }
    delete_namespace(&client, &ns).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One resource that admission must refuse.
struct Invalid {
    name: &'static str,
    resource: Value,
    /// What to fix, in the words of the API server (through the Rust client and through
    /// kubectl) and of `mlrollout check`, which must say the same.
    message: &'static str,
}

fn invalid(name: &'static str, patch: Value, message: &'static str) -> Invalid {
    Invalid {
        name,
        resource: with(patch),
        message,
    }
}

fn invalid_cases() -> Vec<Invalid> {
    vec![
        invalid(
            "steps must end at 100",
            json!({"spec": {"rollout": {"steps": [10, 50]}}}),
            "rollout.steps must end at 100",
        ),
        invalid(
            "steps must increase",
            json!({"spec": {"rollout": {"steps": [50, 10, 100]}}}),
            "rollout.steps must be strictly increasing, e.g. [10, 50, 100]",
        ),
        invalid(
            "steps must not repeat",
            json!({"spec": {"rollout": {"steps": [10, 10, 100]}}}),
            "rollout.steps must be strictly increasing, e.g. [10, 50, 100]",
        ),
        invalid(
            "steps are percentages",
            json!({"spec": {"rollout": {"steps": [0, 50, 100]}}}),
            "rollout.steps must be percentages between 1 and 100",
        ),
        invalid(
            "steps not empty",
            json!({"spec": {"rollout": {"steps": []}}}),
            "spec.rollout.steps: Invalid value: 0: spec.rollout.steps in body should have at least 1 items",
        ),
        invalid(
            "psi warning above high",
            json!({"spec": {"drift": {"thresholds": {"psiWarning": 0.3}}}}),
            "drift.thresholds.psiWarning must not exceed drift.thresholds.psiHigh",
        ),
        invalid(
            "alpha in (0,1)",
            json!({"spec": {"drift": {"thresholds": {"alpha": 1.0}}}}),
            "drift.thresholds.alpha must be between 0 and 1 (exclusive)",
        ),
        invalid(
            "current names one source",
            json!({"spec": {"drift": {"current": {"capture": {"variant": "stable"}}}}}),
            "set exactly one of drift.current.uri and drift.current.capture",
        ),
        invalid(
            "current names a source",
            json!({"spec": {"drift": {"current": {"uri": null, "lastRows": 100}}}}),
            "set exactly one of drift.current.uri and drift.current.capture",
        ),
        invalid(
            "newest rows or newest files",
            json!({"spec": {"drift": {"current": {"lastRows": 100, "lastDuration": "1h"}}}}),
            "set either drift.current.lastRows or drift.current.lastDuration, not both",
        ),
        invalid(
            "a row window or a file selection",
            json!({"spec": {"drift": {"current": {"lastDuration": "1h", "window": "1h", "timestampColumn": "ts"}}}}),
            "drift.current.window (rows by timestampColumn) cannot be combined with lastRows or lastDuration (files by time)",
        ),
        invalid(
            "drift share in (0,1]",
            json!({"spec": {"drift": {"thresholds": {"driftShare": 0.0}}}}),
            "drift.thresholds.driftShare must be in (0, 1]",
        ),
        invalid(
            "interval or schedule",
            json!({"spec": {"drift": {"schedule": "0 * * * *"}}}),
            "set either drift.interval or drift.schedule (cron), not both",
        ),
        invalid(
            "window needs timestamp",
            json!({"spec": {"drift": {"current": {"window": "24h"}}}}),
            "drift.current.timestampColumn is required when drift.current.window is set",
        ),
        invalid(
            "alias latest is reserved",
            json!({"spec": {"model": {"alias": "latest"}}}),
            "model.alias must not be 'latest' or 'v<digits>': MLflow reserves those names",
        ),
        invalid(
            "alias v3 is reserved",
            json!({"spec": {"model": {"alias": "v3"}}}),
            "model.alias must not be 'latest' or 'v<digits>': MLflow reserves those names",
        ),
        invalid(
            "gateway needs parents",
            json!({"spec": {"traffic": {"parentRefs": null}}}),
            "traffic.parentRefs must name at least one Gateway when traffic.provider is gatewayAPI",
        ),
        invalid(
            "istio needs hosts",
            json!({"spec": {"traffic": {"provider": "istio", "hostnames": null}}}),
            "traffic.hostnames must list the hosts of the VirtualService when traffic.provider is istio",
        ),
        invalid(
            "InferencePool backends need endpoint pickers",
            json!({"spec": {"traffic": {"backend": {"kind": "InferencePool"}}}}),
            "traffic.backend.endpointPickers must name the endpoint picker (EPP) of each variant's InferencePool when traffic.backend.kind is InferencePool",
        ),
        invalid(
            "InferencePool backends need an HTTPRoute",
            json!({"spec": {"traffic": {"provider": "istio", "hostnames": ["fraud.example.com"],
                "backend": {"kind": "InferencePool", "endpointPickers": {
                    "stable": {"name": "epp-s", "port": 9002}, "candidate": {"name": "epp-c", "port": 9002}}}}}}),
            "traffic.backend.kind InferencePool needs traffic.provider gatewayAPI (an HTTPRoute routes to InferencePools; a VirtualService cannot)",
        ),
        invalid(
            "a Service endpoint picker needs its port",
            json!({"spec": {"traffic": {"backend": {"kind": "InferencePool", "endpointPickers": {
                "stable": {"name": "epp-s", "port": 9002}, "candidate": {"name": "epp-c"}}}}}}),
            "traffic.backend.endpointPickers: port is required when the endpoint picker is a Service (kind unset or Service)",
        ),
        invalid(
            "endpoint pickers are for InferencePool backends only",
            json!({"spec": {"traffic": {"backend": {"kind": "Service", "endpointPickers": {
                "stable": {"name": "epp-s", "port": 9002}, "candidate": {"name": "epp-c", "port": 9002}}}}}}),
            "traffic.backend.endpointPickers is only for traffic.backend.kind InferencePool",
        ),
        invalid(
            "an experiment needs a router",
            json!({"spec": {"traffic": {"provider": "none", "parentRefs": null},
                            "rollout": {"experiment": {"duration": "30m", "match": [{"cookie": {"name": "c", "value": "1"}}]}}}}),
            "rollout.experiment needs a router: traffic.provider gatewayAPI or istio (replica counts cannot route by header or cookie)",
        ),
        invalid(
            "an experiment header takes a value or a regex, not both",
            json!({"spec": {"rollout": {"experiment": {"duration": "30m", "match": [
                {"headers": [{"name": "x-canary", "value": "1", "regex": "^1$"}]}]}}}}),
            "rollout.experiment.match.headers: set exactly one of value or regex",
        ),
        invalid(
            "an experiment match entry needs something to match",
            json!({"spec": {"rollout": {"experiment": {"duration": "30m", "match": [{}]}}}}),
            "each rollout.experiment.match entry needs headers or a cookie",
        ),
        invalid(
            "an experiment entry with a cookie cannot match the Cookie header too",
            json!({"spec": {"rollout": {"experiment": {"duration": "30m", "match": [
                {"headers": [{"name": "Cookie", "regex": ".*"}], "cookie": {"name": "c", "value": "1"}}]}}}}),
            "rollout.experiment.match: an entry with a cookie cannot also match the Cookie header",
        ),
        invalid(
            "an experiment entry names a header once",
            json!({"spec": {"rollout": {"experiment": {"duration": "30m", "match": [
                {"headers": [{"name": "x-a", "value": "1"}, {"name": "x-a", "value": "2"}]}]}}}}),
            "rollout.experiment.match: a header name appears twice in one entry",
        ),
        invalid(
            "traffic is required",
            json!({"spec": {"traffic": null}}),
            "spec.traffic: Required value",
        ),
        invalid(
            "retraining needs a trigger",
            json!({"spec": {"retraining": {"triggers": null}}}),
            "retraining.triggers needs at least one of schedule, newSamples, accuracyBelow or driftSeverity",
        ),
        invalid(
            "advisor needs a key",
            json!({"spec": {"advisor": {"enabled": true}}}),
            "advisor.apiKeySecret is required when advisor.enabled is true",
        ),
        invalid(
            "metric needs a threshold",
            json!({"spec": {"rollout": {"analysis": {"metrics": [{"name": "x", "query": "up"}]}}}}),
            "each rollout.analysis.metrics entry needs a threshold: max, min or maxIncrease",
        ),
        invalid(
            "a threshold metric needs a query",
            json!({"spec": {"rollout": {"analysis": {"metrics": [{"name": "x", "max": 0.1}]}}}}),
            "rollout.analysis.metrics: a threshold metric needs a query",
        ),
        invalid(
            "a sequential metric takes no threshold",
            json!({"spec": {"rollout": {"analysis": {"metrics": [{"name": "x", "judge": "sequential", "maxIncrease": {"ratio": 1.5}}]}}}}),
            "rollout.analysis.metrics: a sequential metric takes no max, min, maxIncrease or failureLimit (its boundaries come from alpha and minEffect)",
        ),
        invalid(
            "a sequential metric takes no failure limit",
            json!({"spec": {"rollout": {"analysis": {"metrics": [{"name": "x", "judge": "sequential", "failureLimit": 1}]}}}}),
            "rollout.analysis.metrics: a sequential metric takes no max, min, maxIncrease or failureLimit (its boundaries come from alpha and minEffect)",
        ),
        invalid(
            "sequential bad events from one source",
            json!({"spec": {"rollout": {"analysis": {"metrics": [{"name": "x", "judge": "sequential", "sequential": {"badQuery": "up", "slowerThan": "0.5"}}]}}}}),
            "sequential: give badQuery or slowerThan, not both",
        ),
        invalid(
            "post-promotion metrics are absolute",
            json!({"spec": {"rollout": {"postPromotion": {"duration": "10m", "metrics": [{"name": "x", "query": "up", "maxIncrease": {"ratio": 1.2}}]}}}}),
            "rollout.postPromotion.metrics: stable serves nothing after promotion; use max or min, not maxIncrease or judge: sequential",
        ),
        invalid(
            "a plan step is a weight or a mirror",
            json!({"spec": {"rollout": {"plan": [{"weight": 10, "mirror": 10}, {"weight": 100}]}}}),
            "each rollout.plan step needs exactly one of weight or mirror",
        ),
        invalid(
            "a plan ends at 100",
            json!({"spec": {"rollout": {"plan": [{"weight": 10}, {"weight": 50}]}}}),
            "rollout.plan must end with weight: 100",
        ),
        invalid(
            "plan weights increase",
            json!({"spec": {"rollout": {"plan": [{"weight": 50}, {"weight": 10}, {"weight": 100}]}}}),
            "rollout.plan weights must be strictly increasing, e.g. 10, 50, 100",
        ),
        invalid(
            "mirror steps first",
            json!({"spec": {"rollout": {"plan": [{"weight": 10}, {"mirror": 50}, {"weight": 100}]}}}),
            "rollout.plan: mirror steps come before the first weight step",
        ),
        invalid(
            "plan or steps",
            json!({"spec": {"rollout": {"steps": [20, 100], "plan": [{"weight": 100}]}}}),
            "rollout: give plan (steps with their own settings) or steps (weights), not both; with plan, leave steps out",
        ),
        invalid(
            "anti-affinity needs one form",
            json!({"spec": {"rollout": {"antiAffinity": {}}}}),
            "rollout.antiAffinity needs exactly one of preferredDuringSchedulingIgnoredDuringExecution or requiredDuringSchedulingIgnoredDuringExecution",
        ),
        invalid(
            "anti-affinity takes one form only",
            json!({"spec": {"rollout": {"antiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": {"weight": 10}, "requiredDuringSchedulingIgnoredDuringExecution": {}}}}}),
            "rollout.antiAffinity needs exactly one of preferredDuringSchedulingIgnoredDuringExecution or requiredDuringSchedulingIgnoredDuringExecution",
        ),
        invalid(
            "candidate labels cannot replace the selector",
            json!({"spec": {"rollout": {"candidateMetadata": {"labels": {"mlrollout.io/variant": "stable"}}}}}),
            "rollout.candidateMetadata and stableMetadata labels must not set the operator's labels (mlrollout.io/*, app.kubernetes.io/name, app.kubernetes.io/managed-by, app.kubernetes.io/component)",
        ),
        invalid(
            "stable labels cannot replace the operator's",
            json!({"spec": {"rollout": {"stableMetadata": {"labels": {"app.kubernetes.io/managed-by": "me"}}}}}),
            "rollout.candidateMetadata and stableMetadata labels must not set the operator's labels (mlrollout.io/*, app.kubernetes.io/name, app.kubernetes.io/managed-by, app.kubernetes.io/component)",
        ),
        invalid(
            "metric min <= max",
            json!({"spec": {"rollout": {"analysis": {"metrics": [{"name": "x", "query": "up", "min": 2.0, "max": 1.0}]}}}}),
            "rollout.analysis.metrics: min must not exceed max",
        ),
        invalid(
            "maxIncrease one kind",
            json!({"spec": {"rollout": {"analysis": {"metrics": [{"name": "x", "query": "up", "maxIncrease": {"ratio": 1.2, "difference": 0.1}}]}}}}),
            "maxIncrease needs exactly one of ratio or difference",
        ),
        invalid(
            "accuracy one source",
            json!({"spec": {"performance": {"accuracyQuery": "acc"}}}),
            "set either performance.labelled or performance.accuracyQuery, not both",
        ),
        invalid(
            "a label join needs the proxy's capture",
            json!({"spec": {"performance": {"labelled": {"join": {"capture": {"variant": "stable"}}}}}}),
            "performance.labelled.join needs serving.proxy.capture with the proxy enabled (the proxy captures the predictions the labels join)",
        ),
        invalid(
            "a label join's newest rows or newest files",
            json!({"spec": {"serving": {"proxy": {"capture": {"uri": "s3://captures/live"}}},
                            "performance": {"labelled": {"join": {"capture": {"variant": "stable"}, "lastRows": 10, "lastDuration": "1h"}}}}}),
            "set either performance.labelled.join.lastRows or performance.labelled.join.lastDuration, not both",
        ),
        invalid(
            "a label join's id is not the label",
            json!({"spec": {"serving": {"proxy": {"capture": {"uri": "s3://captures/live"}}},
                            "performance": {"labelled": {"join": {"capture": {"variant": "stable"}, "idColumn": "label"}}}}}),
            "performance.labelled.join.idColumn and performance.labelled.labelColumn must differ",
        ),
        invalid(
            "mirror percent range",
            json!({"spec": {"shadow": {"mirrorPercent": 150}}}),
            "spec.shadow.mirrorPercent: Invalid value: 150: spec.shadow.mirrorPercent in body should be less than or equal to 100",
        ),
        invalid(
            "durations are Go style",
            json!({"spec": {"rollout": {"stepDuration": "5 minutes"}}}),
            r#"spec.rollout.stepDuration: Invalid value: "5 minutes": spec.rollout.stepDuration in body should match '^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$'"#,
        ),
        invalid(
            "provider enum",
            json!({"spec": {"traffic": {"provider": "linkerd"}}}),
            r#"spec.traffic.provider: Unsupported value: "linkerd": supported values: "gatewayAPI", "istio", "none""#,
        ),
        invalid(
            "tracking URI is a URL",
            json!({"spec": {"model": {"trackingUri": "mlflow:5000"}}}),
            r#"spec.model.trackingUri: Invalid value: "mlflow:5000": spec.model.trackingUri in body should match '^https?://[^\s]+$'"#,
        ),
        invalid(
            "model name required",
            json!({"spec": {"model": {"name": null}}}),
            "spec.model.name: Required value",
        ),
        invalid(
            "port range",
            json!({"spec": {"serving": {"port": 70000}}}),
            "spec.serving.port: Invalid value: 70000: spec.serving.port in body should be less than or equal to 65535",
        ),
        invalid(
            "port is a number",
            json!({"spec": {"serving": {"port": "http"}}}),
            r#"spec.serving.port: Invalid value: "string": spec.serving.port in body must be of type integer: "string""#,
        ),
        invalid(
            "attempts per day range",
            json!({"spec": {"retraining": {"maxAttemptsPerDay": 0}}}),
            "spec.retraining.maxAttemptsPerDay: Invalid value: 0: spec.retraining.maxAttemptsPerDay in body should be greater than or equal to 1",
        ),
        // Names: the operator's children are `<name>-stable`, `<name>-candidate`,
        // `<name>-retrain-<n>`; the CEL rule keeps them valid.
        invalid(
            "a name of 54 characters",
            json!({"metadata": {"name": name_of_length("fifty-four-characters-", LONGEST_NAME + 1)}}),
            NAME_RULE,
        ),
        invalid(
            "a name starting with a digit",
            json!({"metadata": {"name": "1abc"}}),
            NAME_RULE,
        ),
        invalid(
            "a name with a dot",
            json!({"metadata": {"name": "a.b"}}),
            NAME_RULE,
        ),
        // Also refused by the server's generic name check ("a lowercase RFC 1123
        // subdomain"); the CEL rule adds the advice that covers every child name.
        invalid(
            "a name with capitals",
            json!({"metadata": {"name": "Fraud"}}),
            NAME_RULE,
        ),
        invalid(
            "a notification sink with both destinations",
            json!({"spec": {"notifications": {"sinks": [{"name": "a",
                "webhook": {"url": "https://hooks.example.com/"},
                "slack": {"urlSecretRef": {"name": "s", "key": "url"}}}]}}}),
            "a notification sink needs exactly one of webhook and slack",
        ),
        invalid(
            "a notification sink without a destination",
            json!({"spec": {"notifications": {"sinks": [{"name": "a"}]}}}),
            "a notification sink needs exactly one of webhook and slack",
        ),
        invalid(
            "a notification webhook is http(s)",
            json!({"spec": {"notifications": {"sinks": [{"name": "a",
                "webhook": {"url": "ftp://hooks.example.com/"}}]}}}),
            r#"spec.notifications.sinks[0].webhook.url in body should match '^https?://[^\s]+$'"#,
        ),
    ]
}

#[tokio::test]
#[cfg_attr(not(feature = "harness"), ignore = "needs the harness (control plane)")]
async fn invalid_resources_are_rejected_at_admission_with_messages_that_say_what_to_fix() {
    let cases = invalid_cases();
    assert!(cases.len() >= 30);
    let client = client().await;
    let ns = namespace(&client, "crd-invalid").await;
    let api = raw_api(&client, &ns);
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut files = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let mut value = case.resource.clone();
        value["metadata"]["namespace"] = json!(ns);
        if value["metadata"]["name"] == example()["metadata"]["name"] {
            // Distinct names: a resource wrongly admitted cannot hide the next case.
            value["metadata"]["name"] = json!(format!("case-{i}"));
        }

        // The offline checker (`mlrollout check`) refuses it and says why.
        match check_value(&value) {
            Ok(_) => failures.push(format!("{} (mlrollout check): accepted", case.name)),
            Err(problems) => {
                if !problems.iter().any(|p| p.contains(case.message)) {
                    failures.push(format!(
                        "{} (mlrollout check): expected a problem containing {:?}, got {problems:#?}",
                        case.name, case.message
                    ));
                }
            }
        }

        // The real server, through the Rust client: 422 Invalid with the same advice.
        match server_create(&api, &value).await {
            Ok(_) => failures.push(format!("{} (server): admitted", case.name)),
            Err((code, reason, message)) => {
                if code != 422 || reason != "Invalid" || !message.contains(case.message) {
                    failures.push(format!(
                        "{} (server): expected 422 Invalid containing {:?}, got {code} {reason}: {message}",
                        case.name, case.message
                    ));
                }
            }
        }
        files.push(write_yaml(dir.path(), &format!("case-{i}.yaml"), &value));
    }

    // The real server, through kubectl as a user runs it (a few at a time: 2 CPUs shared).
    let verdicts: Vec<(bool, String)> = std::thread::scope(|scope| {
        files
            .chunks(6)
            .flat_map(|chunk| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|file| scope.spawn(move || kubectl_apply_dry_run(file)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("kubectl thread"))
                    .collect::<Vec<_>>()
            })
            .collect()
    });
    for (case, (ok, printed)) in cases.iter().zip(verdicts) {
        if ok || !printed.contains("is invalid") || !printed.contains(case.message) {
            failures.push(format!(
                "{} (kubectl apply --dry-run=server): expected a refusal containing {:?}, got (success={ok}) {printed}",
                case.name, case.message
            ));
        }
    }

    // Nothing of it was stored.
    let stored = api.list(&ListParams::default()).await.unwrap();
    assert!(
        stored.items.is_empty(),
        "invalid resources were stored: {:?}",
        stored
            .items
            .iter()
            .map(|o| o.metadata.name.clone())
            .collect::<Vec<_>>()
    );
    delete_namespace(&client, &ns).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_reconciler_catches_what_cel_cannot() {
    let cases: Vec<(Value, &str)> = vec![
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

#[test]
fn retraining_job_names_fit_for_every_attempt() {
    let longest = name_of_length("a", LONGEST_NAME);
    for number in [1, 9, 10, 99, 100, 12_345, i64::from(u32::MAX)] {
        let job = mlrollout::core::lifecycle::job_name(&longest, number);
        assert!(is_dns1035_label(&job), "{job:?} ({} chars)", job.len());
        assert!(job.ends_with(&format!("-retrain-{number}")), "{job}");
    }
}

async fn wait_for_phase(api: &Api<ModelDeployment>, name: &str, phase: Phase) -> ModelDeployment {
    eventually(
        &format!("{name} in phase {phase:?}"),
        Duration::from_secs(60),
        || async {
            let md = api.get(name).await.ok()?;
            (md.status.as_ref()?.phase == phase).then_some(md)
        },
    )
    .await
}

async fn wait_available(client: &kube::Client, ns: &str, name: &str) -> Deployment {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    eventually(
        &format!("Deployment {name} available (real controllers, kwok pods)"),
        Duration::from_secs(60),
        || async {
            let d = deployments.get_opt(name).await.ok()??;
            let wanted = d.spec.as_ref()?.replicas.unwrap_or(1);
            (d.status.as_ref()?.available_replicas == Some(wanted)).then_some(d)
        },
    )
    .await
}

#[tokio::test]
#[cfg_attr(not(feature = "harness"), ignore = "needs the harness (control plane)")]
async fn the_longest_admitted_name_gives_serving_children_the_server_accepts() {
    let client = client().await;
    let ns = namespace(&client, "crd-longest-serving").await;
    let name = name_of_length("longest-admitted-name-serving-", LONGEST_NAME);
    assert_eq!(name.len(), LONGEST_NAME);
    let registry = Arc::new(InMemoryRegistry::new());
    register_versions(&registry, "fit", 3, 3);
    let operator = Operator::run(
        test_context(client.clone(), registry.clone()),
        WatchScope::Namespace(ns.clone()),
    );

    let mut value = minimal(&name, &ns);
    merge(
        &mut value,
        json!({"spec": {
            "model": {"name": "fit"},
            "serving": {"replicas": 1},
            "traffic": {"provider": "gatewayAPI", "parentRefs": [{"name": "gw"}]}
        }}),
    );
    server_create(&raw_api(&client, &ns), &value)
        .await
        .unwrap_or_else(|e| panic!("the server refused a {LONGEST_NAME}-character name: {e:?}"));
    let mdeps: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);

    // Stable children, created by the operator and accepted by the server; the real Deployment
    // and ReplicaSet controllers make Pods of them.
    let stable = format!("{name}-stable");
    wait_available(&client, &ns, &stable).await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    eventually("the stable Service", Duration::from_secs(30), || async {
        services.get_opt(&stable).await.ok()?
    })
    .await;
    let md = wait_for_phase(&mdeps, &name, Phase::Stable).await;
    assert_eq!(
        md.status.as_ref().unwrap().stable_version.as_deref(),
        Some("3")
    );

    // A new champion: the candidate children carry the longest names (`<name>-candidate`, a
    // 63-character Service name) and the HTTPRoute points at both.
    registry.register("fit", 4, &[("accuracy", 0.9)], &[]);
    registry.set_alias("fit", "champion", 4);
    let candidate = format!("{name}-candidate");
    assert_eq!(candidate.len(), 63);
    let service = eventually("the candidate Service", Duration::from_secs(60), || async {
        services.get_opt(&candidate).await.ok()?
    })
    .await;
    assert!(is_dns1035_label(service.metadata.name.as_deref().unwrap()));
    let deployment = wait_available(&client, &ns, &candidate).await;
    assert_eq!(
        deployment.metadata.labels.as_ref().unwrap()[LABEL_OWNER],
        name,
        "the owner label holds the whole name"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let selector = format!("{LABEL_OWNER}={name},mlrollout.io/variant=candidate");
    let candidate_pods = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap();
    assert!(
        !candidate_pods.items.is_empty(),
        "the ReplicaSet controller made candidate Pods"
    );

    let routes: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "gateway.networking.k8s.io",
            "v1",
            "HTTPRoute",
        )),
    );
    let route = eventually(
        "the HTTPRoute sends (or mirrors) traffic to the candidate",
        Duration::from_secs(60),
        || async {
            let route = routes.get_opt(&name).await.ok()??;
            let text = serde_json::to_string(&route.data).ok()?;
            text.contains(&format!("\"{candidate}\"")).then_some(route)
        },
    )
    .await;
    let text = serde_json::to_string(&route.data).unwrap();
    assert!(text.contains(&format!("\"{stable}\"")), "{text}");
    assert_eq!(route.data["spec"]["parentRefs"][0]["name"], "gw", "{text}");

    operator.stop().await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
#[cfg_attr(not(feature = "harness"), ignore = "needs the harness (control plane)")]
async fn the_longest_admitted_name_gives_a_retraining_job_the_server_accepts() {
    let client = client().await;
    let ns = namespace(&client, "crd-longest-retraining").await;
    let name = name_of_length("longest-admitted-name-retraining-", LONGEST_NAME);
    assert_eq!(name.len(), LONGEST_NAME);
    let registry = Arc::new(InMemoryRegistry::new());
    register_versions(&registry, "fit", 1, 1);
    let operator = Operator::run(
        test_context(client.clone(), registry.clone()),
        WatchScope::Namespace(ns.clone()),
    );

    let mut value = minimal(&name, &ns);
    merge(
        &mut value,
        json!({"spec": {
            "model": {"name": "fit"},
            "serving": {"replicas": 1},
            // No drift checker runs here, so this trigger never fires: only the request does.
            "retraining": {
                "triggers": {"accuracyBelow": 0.5},
                "jobTemplate": {"template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "train", "image": "registry.example.com/train:1"}]
                }}}
            }
        }}),
    );
    server_create(&raw_api(&client, &ns), &value)
        .await
        .unwrap_or_else(|e| panic!("the server refused a {LONGEST_NAME}-character name: {e:?}"));
    let mdeps: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    wait_for_phase(&mdeps, &name, Phase::Stable).await;

    // `mlrollout retrain`, as the CLI writes it.
    let request = json!({"metadata": {"annotations": {"mlrollout.io/retrain": "now@1"}}});
    mdeps
        .patch(&name, &PatchParams::default(), &Patch::Merge(&request))
        .await
        .unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let job = eventually("the retraining Job", Duration::from_secs(60), || async {
        let list = jobs
            .list(&ListParams::default().labels(&format!("{LABEL_OWNER}={name}")))
            .await
            .ok()?;
        list.items.into_iter().next()
    })
    .await;
    let job_name = job.metadata.name.clone().unwrap();
    let number: i64 = job.metadata.labels.as_ref().unwrap()[LABEL_ATTEMPT]
        .parse()
        .unwrap();
    assert_eq!(
        job_name,
        mlrollout::core::lifecycle::job_name(&name, number)
    );
    assert!(
        is_dns1035_label(&job_name),
        "{job_name:?} ({} chars) is not a valid Job name / label value",
        job_name.len()
    );
    // The reconcile that creates the Job writes the status after it: wait for that write.
    let attempts = eventually(
        "the status records the attempt",
        Duration::from_secs(30),
        || async {
            let status = mdeps.get(&name).await.ok()?.status?;
            (!status.retraining_attempts.is_empty()).then_some(status.retraining_attempts)
        },
    )
    .await;
    assert_eq!(
        attempts.last().map(|a| a.job_name.as_str()),
        Some(job_name.as_str()),
        "status names the Job that exists"
    );

    // The real Job controller runs it (its Pods carry the Job name as a label value) and
    // completes it when the training container exits 0.
    finish_job(&client, &ns, &job_name, true).await;

    operator.stop().await;
    delete_namespace(&client, &ns).await;
}
