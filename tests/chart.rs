//! The Helm chart (charts/mlrollout), checked with the real tooling by
//! `tests/scripts/chart_check.py`: strict `helm lint` (Helm v4 SDK), `helm install
//! --dry-run=client` renders with default and non-default values, refused values, and every
//! rendered object validated against the Kubernetes OpenAPI schemas (kubernetes-validate). This
//! test asserts on the script's JSON, parses the rendered container args with the operator's
//! real command line, and checks that the chart's CRD is the generated one (a link to it).
//!
//! The lint-and-render test needs `MLROLLOUT_PYTHON` (the venv of tests/harness/install.sh, with
//! helm-python-sdk and kubernetes-validate) and the `harness` feature; with the feature on and
//! without the venv it FAILS on purpose. Run it as the README says: `bash tests/run.sh`, or
//! `bash tests/harness/install.sh && . target/harness.env && cargo test --features harness
//! --test chart`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code states expectations

use std::path::Path;
use std::time::Duration;

use clap::Parser;
use mlrollout::cli::{Cli, Command};
use mlrollout::controller::WatchScope;
use serde_json::Value;

const README_HINT: &str = "set MLROLLOUT_PYTHON to the test venv's python (it has \
helm-python-sdk and kubernetes-validate), as in the README's test command: `bash tests/run.sh`, \
or `bash tests/harness/install.sh && . target/harness.env && \
cargo test --features harness --test chart`";

fn report() -> Value {
    let python = match std::env::var_os("MLROLLOUT_PYTHON") {
        Some(p) if !p.is_empty() => p,
        _ => panic!("MLROLLOUT_PYTHON is not set: {README_HINT}"),
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/chart_check.py");
    let output = std::process::Command::new(&python)
        .arg(script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python:?}: {e}; {README_HINT}"));
    assert!(
        output.status.success(),
        "chart_check.py failed (is helm-python-sdk installed? {README_HINT}):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("chart_check.py prints JSON")
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// One source for the CRD: the chart's `crds/modeldeployment.yaml` is a relative link to the
/// generated `crds/modeldeployment.yaml` (tests/crd.rs checks that one against the Rust types).
/// Helm reads through the link and `helm package` stores the file itself; the lint-and-render
/// test below checks that what Helm loads is the generated CRD.
#[test]
fn the_chart_crd_is_a_link_to_the_generated_crd() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chart_crds = root.join("charts/mlrollout/crds");
    let link = chart_crds.join("modeldeployment.yaml");
    let restore = "restore it with `ln -sf ../../../crds/modeldeployment.yaml \
                   charts/mlrollout/crds/modeldeployment.yaml`";
    let target = std::fs::read_link(&link)
        .unwrap_or_else(|e| panic!("{} is not a link ({e}): {restore}", link.display()));
    assert_eq!(
        target,
        Path::new("../../../crds/modeldeployment.yaml"),
        "{restore}"
    );
    let resolved = std::fs::canonicalize(&link).expect("the link resolves");
    let generated = std::fs::canonicalize(root.join("crds/modeldeployment.yaml"))
        .expect("crds/modeldeployment.yaml exists");
    assert_eq!(resolved, generated);
    let entries: Vec<_> = std::fs::read_dir(&chart_crds)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        entries,
        ["modeldeployment.yaml"],
        "only the one CRD under charts/mlrollout/crds"
    );
}

#[test]
#[cfg_attr(not(feature = "harness"), ignore = "needs the harness (helm SDK)")]
fn the_chart_lints_renders_and_validates() {
    let report = report();
    let failures = strs(&report["failures"]);
    assert!(
        report["ok"] == Value::Bool(true) && failures.is_empty(),
        "chart problems:\n  {}",
        failures.join("\n  ")
    );

    // Strict lint, with the defaults and every scenario: no warning, no error.
    let lint = report["lint"].as_object().unwrap();
    assert!(lint.contains_key("default") && lint.contains_key("namespaced"));
    for (name, result) in lint {
        assert_eq!(result["errors"], serde_json::json!([]), "lint {name}");
        for message in result["messages"].as_array().unwrap() {
            assert!(
                message["severity"].as_i64().unwrap() < 2,
                "lint {name}: {message}"
            );
        }
    }

    // Validated for the chart's minimum Kubernetes and the newest the validator knows.
    let versions = strs(&report["kubernetes_versions"]);
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0], "1.28.0");
    assert!(versions[1].as_str() >= "1.35", "{versions:?}");
    let scenarios = report["scenarios"].as_object().unwrap();
    assert_eq!(
        scenarios.keys().collect::<Vec<_>>(),
        vec!["default", "namespaced", "single"]
    );
    for (name, scenario) in scenarios {
        for object in scenario["objects"].as_array().unwrap() {
            let kind = object["kind"].as_str().unwrap();
            for version in &versions {
                let result = object["validation"][version].as_str().unwrap();
                if kind == "ServiceMonitor" {
                    // A prometheus-operator CRD kind: kubernetes-validate has no schema for it;
                    // skipped explicitly (its selector and port are checked by the script).
                    assert!(result.starts_with("skipped"), "{name} {kind}: {result}");
                } else {
                    assert!(
                        result.starts_with("ok"),
                        "{name} {kind} {version}: {result}"
                    );
                }
            }
        }
    }
    let kinds = |name: &str| strs(&scenarios[name]["kinds"]);
    assert_eq!(
        kinds("default"),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    assert_eq!(
        kinds("namespaced"),
        [
            "ConfigMap",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ServiceMonitor"
        ]
    );
    assert_eq!(
        kinds("single"),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "ServiceAccount"
        ]
    );
    let skipped = strs(&scenarios["namespaced"]["skipped"]);
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped.iter().all(|s| s.contains("ServiceMonitor")));

    // Security context and probes of the operator container, every scenario.
    for (name, scenario) in scenarios {
        let containers = scenario["deployment"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "{name}");
        let c = &containers[0];
        assert_eq!(c["runAsNonRoot"], true, "{name}");
        assert_eq!(c["runAsUser"], 65532, "{name}");
        assert_eq!(c["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(c["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(c["privileged"], false, "{name}");
        assert_eq!(c["capabilitiesDrop"], serde_json::json!(["ALL"]), "{name}");
        assert_eq!(c["seccompProfile"], "RuntimeDefault", "{name}");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{name}");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{name}");
        assert_eq!(c["livenessProbe"]["httpGet"]["port"], "metrics", "{name}");
        assert!(scenario["uncommented_rules"].as_array().unwrap().is_empty());
    }

    // The rendered args are a valid `mlrollout run` command line, meaning what the values say.
    let run_args = |name: &str| {
        let args = strs(&scenarios[name]["deployment"]["containers"][0]["args"]);
        let argv = std::iter::once("mlrollout".to_string()).chain(args.clone());
        match Cli::try_parse_from(argv) {
            Ok(cli) => match cli.command {
                Command::Run(run) => run,
                other => panic!("{name}: not `run`: {other:?}"),
            },
            Err(e) => panic!("{name}: the chart's args {args:?} are not valid: {e}"),
        }
    };
    let default = run_args("default");
    assert_eq!(default.scope(), WatchScope::AllNamespaces);
    assert_eq!(default.metrics_addr.port(), 8080);
    assert_eq!(default.log_format, mlrollout::telemetry::LogFormat::Json);
    let election = default
        .leader_election("mlrollout-system")
        .unwrap()
        .expect("leader election is on in the chart");
    assert_eq!(election.lease_name, "mlrollout-leader");
    assert_eq!(election.lease_duration, Duration::from_secs(15));
    assert_eq!(election.renew_deadline, Duration::from_secs(10));
    assert_eq!(election.retry_period, Duration::from_secs(2));

    let namespaced = run_args("namespaced");
    assert_eq!(
        namespaced.scope(),
        WatchScope::Namespaces(vec!["team-a".into(), "team-b".into()])
    );
    assert_eq!(namespaced.metrics_addr.port(), 9090);
    assert_eq!(namespaced.log_level, "info,mlrollout=debug");
    assert_eq!(namespaced.log_format, mlrollout::telemetry::LogFormat::Text);
    assert_eq!(namespaced.mlflow_timeout_seconds, 30);
    // The data-source policy: the listed hosts, local files under the mounted data volume only;
    // by default neither.
    let policy = namespaced.data_policy();
    assert_eq!(
        policy.http_hosts,
        Some(vec!["data.example.com".into(), "*.lake.example.com".into()])
    );
    assert_eq!(
        policy.local,
        mlrollout::drift::data::policy::LocalFiles::Under("/datasets".into())
    );
    assert!(policy.block_internal);
    let policy = default.data_policy();
    assert_eq!(policy.http_hosts, Some(vec![]));
    assert_eq!(
        policy.local,
        mlrollout::drift::data::policy::LocalFiles::Never
    );
    assert_eq!(namespaced.prometheus_timeout_seconds, 5);
    // The registry webhook: its listener and window from the values; the secret comes from the
    // Secret the values name (checked by the script), so it is not on the command line.
    assert_eq!(namespaced.registry_webhook_addr.port(), 8443);
    assert_eq!(
        namespaced.registry_webhook_max_age,
        Duration::from_secs(120)
    );
    assert!(namespaced.registry_webhook_secret.is_none());
    let election = namespaced
        .leader_election("mlrollout-system")
        .unwrap()
        .unwrap();
    assert_eq!(election.lease_name, "ml-operator-lock");
    assert_eq!(
        (
            election.lease_duration,
            election.renew_deadline,
            election.retry_period
        ),
        (
            Duration::from_secs(20),
            Duration::from_secs(12),
            Duration::from_secs(3)
        )
    );
    let image = scenarios["namespaced"]["deployment"]["containers"][0]["image"]
        .as_str()
        .unwrap();
    assert!(
        image.starts_with("registry.example.com/ml/mlrollout@sha256:"),
        "{image}"
    );

    // Notifications: the default sinks reach the operator as written, their Secrets mounted
    // one folder each under the directory the operator reads them from; none by default.
    let notify = namespaced.notifier_settings().unwrap();
    let names: Vec<&str> = notify.defaults.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["platform", "ml-team", "audit"]);
    assert_eq!(
        notify.defaults[1].events,
        [
            mlrollout::api::NotificationEvent::Promoted,
            mlrollout::api::NotificationEvent::RolledBack
        ]
    );
    assert_eq!(notify.timeout, Duration::from_secs(5));
    assert_eq!(notify.retry.attempts, 4);
    assert_eq!(notify.queue, 200);
    let secrets_dir = Path::new("/etc/mlrollout/notification-secrets");
    assert_eq!(notify.secrets_dir.as_deref(), Some(secrets_dir));
    let deployment = &scenarios["namespaced"]["deployment"];
    let mounts = deployment["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap();
    let volumes = deployment["volumes"].as_array().unwrap();
    for secret in ["audit-hmac", "mlrollout-notifications"] {
        let volume = volumes
            .iter()
            .find(|v| v["secret"]["secretName"] == secret)
            .unwrap_or_else(|| panic!("a volume of Secret {secret}: {volumes:?}"));
        let mount = mounts
            .iter()
            .find(|m| m["name"] == volume["name"])
            .unwrap_or_else(|| panic!("a mount of Secret {secret}: {mounts:?}"));
        assert_eq!(
            mount["mountPath"].as_str().map(Path::new),
            Some(secrets_dir.join(secret).as_path())
        );
        assert_eq!(mount["readOnly"], true);
    }
    let plain = default.notifier_settings().unwrap();
    assert!(plain.defaults.is_empty() && plain.secrets_dir.is_none());
    assert_eq!(plain.retry.attempts, 8);

    let single = run_args("single");
    assert!(
        single
            .leader_election("mlrollout-system")
            .unwrap()
            .is_none()
    );

    // Contradictory or invalid values are refused.
    let refused = report["must_fail"].as_object().unwrap();
    assert!(refused.len() >= 5);
    for (name, result) in refused {
        assert_eq!(result["refused"], true, "{name}");
    }

    // The chart's CRD as Helm loads it (through the link), validated as an apiextensions/v1
    // object and equal to the generated one.
    let crds = &report["crds"];
    assert_eq!(crds["equal_to_repo"], true);
    for version in &versions {
        let result = crds["files"][0]["validation"][version].as_str().unwrap();
        assert!(result.starts_with("ok"), "CRD {version}: {result}");
    }
}
