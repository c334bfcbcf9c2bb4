//! kubectl as users see it: with the operator reconciling a resource on the real API server,
//! `kubectl get mdep` (printer columns), `kubectl get mdep -o yaml` (conditions with
//! observedGeneration), `kubectl explain` (field docs from our CRD) and `kubectl describe`
//! (our Events). Expectations come from the CRD (`ModelDeployment::crd()`) and from the object
//! as the API returns it, so what is checked is kubectl's rendering of real server state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane and its kubectl: full suite only, `cargo test --features harness`
// (tests/run.sh turns it on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
use kube::CustomResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use mlrollout::api::{ModelDeployment, Phase};
use mlrollout::controller::WatchScope;
use mlrollout::registry::memory::InMemoryRegistry;
use serde_json::Value;

use common::cluster::{self, cluster, eventually};
use common::operator::{Operator, ScriptedDrift, test_context};
use common::registry::register_versions;

const NAME: &str = "fraud-detector";
const LIMIT: Duration = Duration::from_secs(60);

fn resource(namespace: &str) -> ModelDeployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "model": {"trackingUri": "http://127.0.0.1:9", "name": NAME},
            "serving": {"replicas": 1},
            "traffic": {"provider": "gatewayAPI", "parentRefs": [{"name": "gw"}]},
            "drift": {"reference": {"uri": "s3://data/reference.parquet"},
                      "current": {"uri": "s3://data/current.parquet"}, "interval": "1h"},
            "shadow": {"duration": "1h"},
            "rollout": {"steps": [10, 50, 100], "stepDuration": "1h"}
        }
    }))
    .expect("resource")
}

/// Runs kubectl (off the async workers) and returns its stdout; fails the test on a non-zero
/// exit, with stderr.
async fn kubectl(args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let output = cluster()
            .kubectl()
            .args(&args)
            .output()
            .expect("kubectl runs");
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("kubectl prints UTF-8")
    })
    .await
    .expect("kubectl task")
}

/// Checks `table` (kubectl's output for one resource) against `columns`: the header names
/// them in order and each cell shows what its JSONPath selects in `object` (dates as an age).
/// Cells are cut at the header's column starts, so values with spaces (messages) stay whole.
/// Returns the cells after NAME.
fn check_columns(
    table: &str,
    columns: &[k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceColumnDefinition],
    object: &Value,
) -> Vec<String> {
    let mut lines = table.lines();
    let header = lines.next().expect("a header");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "{table}");
    let mut wanted = vec!["NAME".to_string()];
    wanted.extend(columns.iter().map(|c| c.name.to_uppercase()));
    let names: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(names, wanted, "{table}");
    let starts: Vec<usize> = wanted
        .iter()
        .map(|n| header.find(n.as_str()).unwrap())
        .collect();
    let row = rows[0];
    let cells: Vec<String> = starts
        .iter()
        .enumerate()
        .map(|(i, &start)| {
            let end = starts
                .get(i + 1)
                .copied()
                .unwrap_or(row.len())
                .min(row.len());
            row.get(start..end).unwrap_or_default().trim().to_string()
        })
        .collect();
    assert_eq!(cells[0], NAME, "{table}");
    for (column, shown) in columns.iter().zip(&cells[1..]) {
        if column.type_ == "date" {
            assert!(
                shown.starts_with(|c: char| c.is_ascii_digit())
                    && shown.chars().all(|c| c.is_ascii_alphanumeric()),
                "{}: {shown} in {table}",
                column.name
            );
        } else {
            assert_eq!(
                *shown,
                column_value(object, &column.json_path),
                "column {} ({}) in {table}",
                column.name,
                column.json_path
            );
        }
    }
    cells[1..].to_vec()
}

/// The value a `.a.b.c` printer-column path selects, as `kubectl get` shows it.
fn column_value(object: &Value, json_path: &str) -> String {
    // `.status.conditions[?(@.type=="X")].field`: the field of condition X.
    if let Some((_, filter)) = json_path.split_once("[?(@.type==\"") {
        let (kind, field) = filter.split_once("\")].").unwrap();
        let conditions = object["status"]["conditions"].as_array().unwrap();
        return conditions
            .iter()
            .find(|c| c["type"] == kind)
            .and_then(|c| c[field].as_str())
            .unwrap_or("<none>")
            .to_string();
    }
    let pointer = json_path.replace('.', "/");
    match object.pointer(&pointer) {
        None | Some(Value::Null) => "<none>".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn schema_at<'a>(root: &'a JSONSchemaProps, path: &[&str]) -> &'a JSONSchemaProps {
    path.iter().fold(root, |schema, field| {
        &schema.properties.as_ref().expect("an object schema")[*field]
    })
}

fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn explain_type(schema: &JSONSchemaProps) -> String {
    match schema.type_.as_deref() {
        Some("object") => "<Object>".into(),
        Some("array") => "<[]Object>".into(),
        Some(t) => format!("<{t}>"),
        None => "<Object>".into(),
    }
}

async fn our_event_reasons(client: &kube::Client, namespace: &str) -> BTreeSet<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let list = events
        .list(&ListParams::default())
        .await
        .expect("events list");
    list.items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(NAME)
                && e.reporting_controller.as_deref() == Some("mlrollout")
        })
        .filter_map(|e| e.reason)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_what_the_operator_did() {
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "kubectl").await;
    let registry = Arc::new(InMemoryRegistry::new());
    register_versions(&registry, NAME, 4, 3);
    let drift = Arc::new(ScriptedDrift::default());
    drift.set(mlrollout::api::Severity::Medium);
    let operator = Operator::run(
        test_context(client.clone(), registry.clone()).with_drift(drift),
        WatchScope::Namespace(ns.clone()),
    );

    // Drive the resource somewhere with a value in every column: version 3 stable and ready,
    // drift checked (medium), version 4 at the first canary step (10 %).
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &resource(&ns))
        .await
        .expect("resource created");
    eventually("version 3 stable, ready, drift checked", LIMIT, || async {
        let s = api.get(NAME).await.ok()?.status?;
        let ready = s
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        (s.phase == Phase::Stable
            && s.stable_version.as_deref() == Some("3")
            && ready
            && s.drift
                .as_ref()
                .is_some_and(|d| d.severity == mlrollout::api::Severity::Medium))
        .then_some(())
    })
    .await;
    registry.set_alias(NAME, "champion", 4);
    eventually("version 4 in shadow", LIMIT, || async {
        let s = api.get(NAME).await.ok()?.status?;
        (s.phase == Phase::Shadow && s.candidate_version.as_deref() == Some("4")).then_some(())
    })
    .await;
    let promote = serde_json::json!({"metadata": {"annotations": {
        "mlrollout.io/promote": "next@2027-01-15T08:00:00Z"}}});
    api.patch(NAME, &PatchParams::default(), &Patch::Merge(&promote))
        .await
        .expect("promote requested");
    let current = eventually("version 4 at 10 %", LIMIT, || async {
        let md = api.get(NAME).await.ok()?;
        let s = md.status.as_ref()?;
        (s.phase == Phase::Progressing && s.canary_weight == 10).then_some(md)
    })
    .await;

    // kubectl get mdep: the printer columns of our CRD, with the values the API holds; `-o wide`
    // adds those of priority 1.
    let crd = ModelDeployment::crd();
    let version = &crd.spec.versions[0];
    let columns = version
        .additional_printer_columns
        .as_ref()
        .expect("printer columns");
    let object = serde_json::to_value(&current).unwrap();
    let narrow: Vec<_> = columns
        .iter()
        .filter(|c| c.priority.unwrap_or(0) == 0)
        .cloned()
        .collect();
    assert!(narrow.len() < columns.len(), "some columns are for -o wide");
    let table = kubectl(&["get", "mdep", "-n", &ns]).await;
    let row = check_columns(&table, &narrow, &object);
    assert_eq!(
        &row[..5],
        ["Progressing", "3", "4", "10", "medium"],
        "{table}"
    );
    let wide = kubectl(&["get", "mdep", "-n", &ns, "-o", "wide"]).await;
    let row = check_columns(&wide, columns, &object);
    let at = |name: &str| &row[columns.iter().position(|c| c.name == name).unwrap()];
    assert_eq!(at("Step"), "0", "{wide}");
    assert_eq!(at("Reason"), "Progressing", "{wide}");
    assert!(
        !at("Message").is_empty() && at("Message") != "<none>",
        "{wide}"
    );
    // The short name and the category list the same resource.
    let by_category = kubectl(&["get", "mlrollout", "-n", &ns, "-o", "name"]).await;
    assert_eq!(
        by_category.trim(),
        format!("modeldeployment.mlrollout.io/{NAME}")
    );

    // kubectl get -o yaml: every condition says which generation it describes. A spec change
    // (generation 2) is reflected in every condition once the operator has seen it.
    let check_yaml = |yaml: String| {
        let object: Value = serde_yaml::from_str(&yaml).expect("kubectl prints YAML");
        let generation = object["metadata"]["generation"]
            .as_i64()
            .expect("metadata.generation");
        let status = &object["status"];
        assert_eq!(status["observedGeneration"].as_i64(), Some(generation));
        let conditions = status["conditions"].as_array().expect("conditions");
        let types: BTreeSet<&str> = conditions
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        for wanted in [
            "Ready",
            "RegistrySynced",
            "Synced",
            "Progressing",
            "DriftChecked",
        ] {
            assert!(types.contains(wanted), "{wanted} in {types:?}");
        }
        for c in conditions {
            assert_eq!(
                c["observedGeneration"].as_i64(),
                Some(generation),
                "condition {} describes generation {generation}:\n{yaml}",
                c["type"]
            );
            assert!(c["lastTransitionTime"].is_string(), "{c}");
        }
        generation
    };
    let first = check_yaml(kubectl(&["get", "mdep", NAME, "-n", &ns, "-o", "yaml"]).await);
    kubectl(&[
        "patch",
        "mdep",
        NAME,
        "-n",
        &ns,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"serving":{"replicas":2}}}"#,
    ])
    .await;
    eventually("the operator observed generation 2", LIMIT, || async {
        let s = api.get(NAME).await.ok()?.status?;
        (s.observed_generation == Some(first + 1)).then_some(())
    })
    .await;
    let second = check_yaml(kubectl(&["get", "mdep", NAME, "-n", &ns, "-o", "yaml"]).await);
    assert_eq!(second, first + 1);
    // What that means for a user: `kubectl wait` ignores a condition whose observedGeneration
    // is behind the object's generation.
    for condition in ["Ready", "RegistrySynced", "Synced", "DriftChecked"] {
        let waited = kubectl(&[
            "wait",
            &format!("--for=condition={condition}=True"),
            &format!("mdep/{NAME}"),
            "-n",
            &ns,
            "--timeout=20s",
        ])
        .await;
        assert!(waited.contains("condition met"), "{condition}: {waited}");
    }

    // kubectl explain: the field docs of our CRD as the server publishes them.
    let root = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("schema");
    let thresholds = schema_at(root, &["spec", "drift", "thresholds"]);
    let explained = kubectl(&["explain", "modeldeployment.spec.drift.thresholds"]).await;
    assert!(
        explained.contains("KIND:       ModelDeployment")
            && explained.contains("GROUP:      mlrollout.io"),
        "{explained}"
    );
    assert!(
        explained.contains("FIELD: thresholds <Object>"),
        "{explained}"
    );
    let flat = squash(&explained);
    let description = thresholds.description.as_deref().expect("documented");
    assert!(flat.contains(&squash(description)), "{explained}");
    let fields = thresholds.properties.as_ref().expect("fields");
    assert!(fields.len() >= 5, "{fields:?}");
    for (name, field) in fields {
        let heading = format!("{name}\t{}", explain_type(field));
        assert!(explained.contains(&heading), "{heading:?} in {explained}");
        let doc = field.description.as_deref().unwrap_or_else(|| {
            panic!("spec.drift.thresholds.{name} has no description in the CRD")
        });
        assert!(
            flat.contains(&squash(doc)),
            "the doc of {name} ({doc:?}) in {explained}"
        );
        if let Some(values) = &field.enum_ {
            let values: Vec<String> = values
                .iter()
                .map(|v| v.0.as_str().unwrap_or_default().to_string())
                .collect();
            let line = format!("enum: {}", values.join(", "));
            assert!(explained.contains(&line), "{line:?} in {explained}");
        }
    }

    // kubectl describe: the status, and our Events (events.k8s.io/v1) in its Events section.
    let wanted_reasons = [
        "StableVersionServed",
        "CandidateFromRegistry",
        "ShadowStarted",
        "ManualPromotion",
    ];
    let reasons = eventually("our events are recorded", LIMIT, || async {
        let reasons = our_event_reasons(&client, &ns).await;
        wanted_reasons
            .iter()
            .all(|r| reasons.contains(*r))
            .then_some(reasons)
    })
    .await;
    let described = kubectl(&["describe", "mdep", NAME, "-n", &ns]).await;
    assert!(
        described.contains(&format!("Name:         {NAME}"))
            && described.contains(&format!("Namespace:    {ns}")),
        "{described}"
    );
    let (top, events) = described
        .split_once("\nEvents:")
        .unwrap_or_else(|| panic!("an Events section in {described}"));
    assert!(squash(top).contains("Phase: Progressing"), "{described}");
    assert!(squash(top).contains("Canary Weight: 10"), "{described}");
    let mut rows = events
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("----"));
    rows.next();
    let shown: Vec<Vec<&str>> = rows
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.len() >= 4)
        .collect();
    let shown_reasons: BTreeSet<&str> = shown.iter().map(|cols| cols[1]).collect();
    for reason in &reasons {
        assert!(
            shown_reasons.contains(reason.as_str()),
            "event {reason} in the Events section:\n{events}"
        );
    }
    assert!(
        shown
            .iter()
            .all(|cols| matches!(cols[0], "Normal" | "Warning")),
        "{events}"
    );
    assert!(
        events.contains("mlrollout"),
        "the From column names the operator:\n{events}"
    );

    operator.stop().await;
    cluster::delete_namespace(&client, &ns).await;
}

/// A folder to put on PATH with the plugin installed the README's way: links named
/// `kubectl-mlrollout` (the plugin) and `kubectl_complete-mlrollout` (its completion).
fn plugin_path() -> String {
    let dir = common::process::scratch_dir("kubectl-plugin");
    for name in ["kubectl-mlrollout", "kubectl_complete-mlrollout"] {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_mlrollout"), dir.join(name)).unwrap();
    }
    let kubectl_dir = cluster().bin.clone();
    let rest = std::env::var("PATH").unwrap_or_default();
    format!("{}:{}:{rest}", dir.display(), kubectl_dir.display())
}

/// `kubectl` with the plugin on PATH; returns (exit code, stdout, stderr).
async fn kubectl_with_plugin(path: &str, args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let output = cluster()
            .kubectl()
            .env("PATH", path)
            .args(&args)
            .output()
            .expect("kubectl runs");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// Writes `change` over the resource's status the way the operator does (server-side apply by
/// its field manager), describing the current generation.
async fn write_status(
    api: &Api<ModelDeployment>,
    client: &kube::Client,
    change: impl Fn(&mut mlrollout::api::ModelDeploymentStatus),
) {
    eventually("status written", LIMIT, || async {
        let current = api.get(NAME).await.ok()?;
        let mut status = current.status.clone().unwrap_or_default();
        status.observed_generation = current.metadata.generation;
        change(&mut status);
        common::operator::apply_status(client, &current, &status)
            .await
            .then_some(())
    })
    .await;
}

fn ready_condition() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    serde_json::from_value(serde_json::json!({"type": "Ready", "status": "True",
        "reason": "Available", "message": "version serves",
        "lastTransitionTime": "2026-12-01T10:00:00Z"}))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubectl_plugin_follows_a_rollout_and_completes_from_the_cluster() {
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "kubectl-plugin").await;
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &resource(&ns))
        .await
        .expect("resource created");
    write_status(&api, &client, |s| {
        s.phase = Phase::Progressing;
        s.stable_version = Some("3".into());
        s.candidate_version = Some("4".into());
        s.current_step = Some(0);
        s.canary_weight = 10;
        s.conditions = vec![ready_condition()];
    })
    .await;
    let path = plugin_path();

    // kubectl finds the plugin, and its usage reads as what the person typed.
    let (code, out, err) = kubectl_with_plugin(&path, &["plugin", "list"]).await;
    assert!(out.contains("kubectl-mlrollout"), "{code} {out} {err}");
    let (code, out, _) = kubectl_with_plugin(&path, &["mlrollout", "--help"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("Usage: kubectl mlrollout"), "{out}");

    // Completion through kubectl itself (its hidden __complete, as the shell scripts call it):
    // subcommands from the command tree, names and namespaces from the real API server.
    let (_, out, err) = kubectl_with_plugin(&path, &["__complete", "mlrollout", "prom"]).await;
    assert!(out.starts_with("promote\t"), "{out} {err}");
    let (_, out, err) =
        kubectl_with_plugin(&path, &["__complete", "mlrollout", "status", "-n", &ns, ""]).await;
    let candidates: Vec<&str> = out.lines().collect();
    assert_eq!(candidates, [NAME, ":4"], "{out} {err}");
    let prefix = &ns[..ns.len() - 2];
    let (_, out, err) =
        kubectl_with_plugin(&path, &["__complete", "mlrollout", "abort", "-n", prefix]).await;
    assert!(out.lines().any(|l| l == ns), "{ns} in {out} {err}");

    // status -w: one line per change, until it settles.
    let watch = {
        let path = path.clone();
        let ns = ns.clone();
        tokio::task::spawn_blocking(move || {
            cluster()
                .kubectl()
                .env("PATH", path)
                .args([
                    "mlrollout",
                    "status",
                    "-w",
                    NAME,
                    "-n",
                    &ns,
                    "--timeout",
                    "90s",
                ])
                .output()
                .expect("kubectl runs")
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    write_status(&api, &client, |s| {
        s.current_step = Some(1);
        s.canary_weight = 50;
        s.analysis = Some(
            serde_json::from_value(serde_json::json!({"measurements": 1, "metrics": [
                {"name": "error-rate", "passed": 1, "recent": [{"verdict": "Passed",
                    "candidate": 0.012, "stable": 0.01, "threshold": "<= 1.5 x stable"}]}]}))
            .unwrap(),
        );
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    write_status(&api, &client, |s| {
        s.phase = Phase::Promoted;
        s.stable_version = Some("4".into());
        s.candidate_version = None;
        s.current_step = None;
        s.canary_weight = 0;
        s.analysis = None;
    })
    .await;
    let output = watch.await.unwrap();
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{shown} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 3, "{shown}");
    assert!(
        lines[0].ends_with("Progressing  v3 -> v4  weight 10% (step 1/3)"),
        "{shown}"
    );
    assert!(
        lines[1].ends_with(
            "Progressing  v3 -> v4  weight 50% (step 2/3)  | error-rate 0.0120 <= 1.5 x stable Passed"
        ),
        "{shown}"
    );
    assert!(lines[2].ends_with("Promoted     v4  weight 0%"), "{shown}");

    // Settled badly: exit 1 at once. Not settled in time: exit 1, naming --timeout.
    write_status(&api, &client, |s| s.phase = Phase::RolledBack).await;
    let (code, out, _) =
        kubectl_with_plugin(&path, &["mlrollout", "status", "-w", NAME, "-n", &ns]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("RolledBack"), "{out}");
    write_status(&api, &client, |s| s.phase = Phase::Shadow).await;
    let (code, _, err) = kubectl_with_plugin(
        &path,
        &[
            "mlrollout",
            "status",
            "-w",
            NAME,
            "-n",
            &ns,
            "--timeout",
            "2s",
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("has not settled within 2s (--timeout)"),
        "{err}"
    );

    cluster::delete_namespace(&client, &ns).await;
}
