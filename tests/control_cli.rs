//! The control CLI (`mlrollout promote|abort|retry|pause|resume|retrain|status`) on the real
//! API server: the built binary, reading KUBECONFIG like a person's shell would. Each command
//! writes one annotation on the real object (never the spec or the status); with the operator
//! running, the commands take effect on the status; a resource that does not exist is a clear
//! error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane: full suite only, `cargo test --features harness` (tests/run.sh turns it
// on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use mlrollout::api::{
    AnalysisStatus, AttemptOutcome, CandidateSource, DriftSummary, MeasurementRecord, MetricStatus,
    ModelDeployment, ModelDeploymentStatus, PauseReason, Phase, RetrainingAttempt, RolloutOutcome,
    RolloutReason, RolloutRecord, Severity, Trigger, Verdict,
};
use mlrollout::controller::act::write_status;
use mlrollout::controller::{Context, WatchScope};
use mlrollout::core::lifecycle::manual;
use mlrollout::metrics::Metrics;
use mlrollout::registry::memory::InMemoryRegistry;

use common::cluster::{self, cluster, eventually};
use common::operator::{Operator, test_context};
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
            "retraining": {
                "triggers": {"schedule": "0 3 * * 0"},
                "jobTemplate": {"template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "train", "image": "train:1"}]}}}
            },
            "shadow": {"duration": "1h"},
            "rollout": {"steps": [10, 50, 100], "stepDuration": "1h"}
        }
    }))
    .expect("resource")
}

struct Cli {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the built `mlrollout` binary with `KUBECONFIG` pointing at the test cluster (or at
/// `kubeconfig`), off the async workers.
async fn cli_with(kubeconfig: &Path, args: &[&str]) -> Cli {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let kubeconfig = kubeconfig.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mlrollout"))
            .args(&args)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("RUST_LOG")
            .output()
            .expect("mlrollout runs");
        Cli {
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
            stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
        }
    })
    .await
    .expect("cli task")
}

async fn cli(args: &[&str]) -> Cli {
    cli_with(&cluster().kubeconfig, args).await
}

/// Runs a command that must succeed; returns its stdout.
async fn ok(args: &[&str]) -> String {
    let out = cli(args).await;
    assert_eq!(
        out.code,
        Some(0),
        "mlrollout {args:?} failed: {}{}",
        out.stdout,
        out.stderr
    );
    out.stdout
}

async fn status_text(ns: &str) -> String {
    ok(&["status", NAME, "-n", ns]).await
}

fn annotations(md: &ModelDeployment) -> BTreeMap<String, String> {
    md.metadata.annotations.clone().unwrap_or_default()
}

/// `value` is a request stamp written between `before` and `after`.
fn assert_stamp(value: &str, before: Timestamp, after: Timestamp) {
    let stamp: Timestamp = value
        .parse()
        .unwrap_or_else(|e| panic!("{value:?} is a timestamp: {e}"));
    assert!(
        before <= stamp && stamp <= after,
        "{stamp} between {before} and {after}"
    );
}

fn at(offset: i64) -> Time {
    Time(Timestamp::from_second(1_800_000_000 + offset).unwrap())
}

/// A status the operator could have written mid-rollout, with something in every section
/// `mlrollout status` shows.
fn mid_rollout(generation: i64) -> ModelDeploymentStatus {
    ModelDeploymentStatus {
        phase: Phase::Progressing,
        observed_generation: Some(generation),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Available".into(),
            message: "version 3 is serving".into(),
            last_transition_time: at(0),
            observed_generation: Some(generation),
        }],
        stable_version: Some("3".into()),
        candidate_version: Some("4".into()),
        canary_weight: 50,
        current_step: Some(1),
        drift: Some(DriftSummary {
            severity: Severity::Medium,
            drifted_share: 0.25,
            accuracy: Some(0.9),
            ..Default::default()
        }),
        analysis: Some(AnalysisStatus {
            measurements: 2,
            last_measured_at: Some(at(1)),
            metrics: vec![MetricStatus {
                name: "error-rate".into(),
                passed: 2,
                recent: vec![MeasurementRecord {
                    at: Some(at(1)),
                    verdict: Verdict::Passed,
                    candidate: Some(0.0125),
                    stable: Some(0.01),
                    threshold: "<= 1.5 x stable".into(),
                }],
                ..Default::default()
            }],
        }),
        retraining_attempts: vec![RetrainingAttempt {
            number: 1,
            id: "attempt-1".into(),
            trigger: Trigger::Drift,
            job_name: format!("{NAME}-retrain-1"),
            started_at: None,
            finished_at: None,
            outcome: AttemptOutcome::Succeeded,
            candidate_version: Some("4".into()),
            message: None,
        }],
        history: vec![RolloutRecord {
            candidate_version: "2".into(),
            previous_version: Some("1".into()),
            outcome: RolloutOutcome::Promoted,
            reason: RolloutReason::Promoted,
            finished_at: Some(at(2)),
        }],
        message: Some("step 2 of 3: 50% of traffic on the candidate".into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_command_writes_its_annotation_on_the_real_object() {
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "cli-annotations").await;
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let created = api
        .create(&PostParams::default(), &resource(&ns))
        .await
        .expect("resource created");
    let generation = created.metadata.generation.unwrap();
    // Status as the operator writes it (server-side apply, its field manager).
    let ctx = Context::new(
        client.clone(),
        Arc::new(InMemoryRegistry::new()),
        Metrics::default(),
    );
    let seeded = mid_rollout(generation);
    write_status(&ctx, &created, &ns, &seeded).await.unwrap();

    // (command, annotation, expected value prefix before the stamp; None: not a stamp)
    let cases: [(&[&str], &str, Option<&str>); 7] = [
        (&["promote"], manual::PROMOTE, Some("next@")),
        (&["promote", "--full"], manual::PROMOTE, Some("full@")),
        (&["abort"], manual::ABORT, Some("")),
        (&["retry"], manual::RETRY, Some("")),
        (&["retrain"], manual::RETRAIN, Some("")),
        (&["pause"], manual::PAUSE, None),
        (&["resume"], manual::RESUME, Some("")),
    ];
    let mut written = BTreeMap::new();
    for (i, (command, key, prefix)) in cases.iter().enumerate() {
        let mut args = vec![command[0], NAME];
        // Both spellings of the namespace flag.
        args.extend(if i % 2 == 0 {
            ["-n", ns.as_str()]
        } else {
            ["--namespace", ns.as_str()]
        });
        args.extend(&command[1..]);
        let before = Timestamp::now();
        let out = ok(&args).await;
        let after = Timestamp::now();
        assert!(
            out.starts_with(&format!("{ns}/{NAME}: ")) && out.contains(" requested ("),
            "{args:?}: {out}"
        );
        let md = api.get(NAME).await.unwrap();
        let annotations = annotations(&md);
        let value = annotations
            .get(*key)
            .unwrap_or_else(|| panic!("{args:?} writes {key}: {annotations:?}"));
        // The line names the annotation it wrote, with the value now on the object.
        assert!(out.contains(&format!("{key}={value}")), "{args:?}: {out}");
        match prefix {
            Some(prefix) => {
                let stamp = value
                    .strip_prefix(prefix)
                    .unwrap_or_else(|| panic!("{key}={value} starts with {prefix:?}"));
                assert_stamp(stamp, before, after);
                assert_ne!(
                    written.get(*key),
                    Some(value),
                    "a repeated command is a new request"
                );
            }
            None => assert_eq!(value, "true", "{key}"),
        }
        if *key == manual::RESUME {
            assert!(
                !annotations.contains_key(manual::PAUSE),
                "resume removes the pause annotation: {annotations:?}"
            );
        }
        written.insert(key.to_string(), value.clone());
        // GitOps-safe: neither the spec nor the status is touched.
        assert_eq!(md.metadata.generation, Some(generation), "{args:?}");
        assert_eq!(md.status.as_ref(), Some(&seeded), "{args:?}");
    }
    // Each request stays on its own annotation (the operator acts on each value once).
    let md = api.get(NAME).await.unwrap();
    for key in [
        manual::PROMOTE,
        manual::ABORT,
        manual::RETRY,
        manual::RETRAIN,
        manual::RESUME,
    ] {
        assert_eq!(annotations(&md).get(key), written.get(key), "{key}");
    }
    // On the server: every command was one patch of the object itself (no status write).
    let patches = eventually("the CLI's writes in the audit log", LIMIT, || async {
        let patches: Vec<_> = cluster()
            .audit()
            .into_iter()
            .filter(|e| {
                e.object_ref.as_ref().is_some_and(|o| {
                    o.namespace.as_deref() == Some(ns.as_str())
                        && o.resource == "modeldeployments"
                        && o.name.as_deref() == Some(NAME)
                        && o.subresource.is_none()
                        && e.verb == "patch"
                })
            })
            .collect();
        (patches.len() >= cases.len()).then_some(patches)
    })
    .await;
    assert_eq!(patches.len(), cases.len(), "{patches:?}");
    assert!(
        patches
            .iter()
            .all(|p| p.response_status.as_ref().and_then(|s| s.code) == Some(200)),
        "{patches:?}"
    );

    // `status` reads the object: every section of the seeded status.
    let text = status_text(&ns).await;
    for line in [
        format!("Name:        {ns}/{NAME}"),
        "Phase:       Progressing".to_string(),
        format!("Model:       {NAME}"),
        "Stable:      3".into(),
        "Candidate:   4".into(),
        "Traffic:     stable 50% / candidate 50%, mirror 0%   steps: 10% -> [50%] -> 100%".into(),
        "Drift:       medium (25% of features drifted), accuracy 0.9000".into(),
        "Message:     step 2 of 3: 50% of traffic on the candidate".into(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
    }
    let has = |words: &[&str]| {
        text.lines()
            .any(|l| words.iter().all(|w| l.split_whitespace().any(|x| x == *w)))
    };
    assert!(has(&["Ready", "True", "Available"]), "{text}");
    assert!(text.contains("Analysis (2 measurement(s)):"), "{text}");
    assert!(
        has(&["error-rate", "Passed", "(candidate", "0.0125,", "0.0100,"]),
        "{text}"
    );
    assert!(
        has(&["#1", "drift", "Succeeded", "fraud-detector-retrain-1"]),
        "{text}"
    );
    assert!(has(&["version", "2", "Promoted"]), "{text}");

    // Without --namespace the kubeconfig's namespace is used.
    let mut kubeconfig: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&cluster().kubeconfig).unwrap())
            .expect("kubeconfig is YAML");
    for context in kubeconfig["contexts"].as_sequence_mut().expect("contexts") {
        context["context"]["namespace"] = ns.clone().into();
    }
    let dir = tempfile::tempdir().unwrap();
    let own: PathBuf = dir.path().join("kubeconfig");
    std::fs::write(&own, serde_yaml::to_string(&kubeconfig).unwrap()).unwrap();
    let out = cli_with(&own, &["status", NAME]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, text);
    let out = cli_with(&own, &["pause", NAME]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.starts_with(&format!("{ns}/{NAME}: ")),
        "{}",
        out.stdout
    );

    cluster::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_that_does_not_exist_is_a_clear_error() {
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "cli-missing").await;
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let missing = "no-such-model";
    for command in [
        "status", "promote", "abort", "retry", "pause", "resume", "retrain",
    ] {
        let out = cli(&[command, missing, "-n", &ns]).await;
        assert_eq!(out.code, Some(1), "{command}: {}{}", out.stdout, out.stderr);
        assert!(out.stdout.is_empty(), "{command}: {}", out.stdout);
        assert_eq!(
            out.stderr.trim_end(),
            format!("mlrollout: ModelDeployment {ns}/{missing} not found"),
            "{command}"
        );
    }
    // A namespace that does not exist either.
    let out = cli(&["pause", missing, "-n", "no-such-namespace-mlrollout"]).await;
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("no-such-namespace-mlrollout/no-such-model")
            && out.stderr.contains("not found"),
        "{}",
        out.stderr
    );
    // Nothing was created by the attempts.
    assert!(api.get_opt(missing).await.unwrap().is_none());
    cluster::delete_namespace(&client, &ns).await;
}

async fn wait_status<F>(api: &Api<ModelDeployment>, what: &str, check: F) -> ModelDeploymentStatus
where
    F: Fn(&ModelDeploymentStatus) -> bool,
{
    eventually(what, LIMIT, || async {
        let status = api.get(NAME).await.ok()?.status?;
        check(&status).then_some(status)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_operator_running_each_command_takes_effect() {
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "cli-operator").await;
    let registry = Arc::new(InMemoryRegistry::new());
    register_versions(&registry, NAME, 4, 3);
    let operator = Operator::run(
        test_context(client.clone(), registry.clone()),
        WatchScope::Namespace(ns.clone()),
    );
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let raw: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::erase::<ModelDeployment>(&()),
    );
    api.create(&PostParams::default(), &resource(&ns))
        .await
        .expect("resource created");
    wait_status(&api, "version 3 stable and ready", |s| {
        s.phase == Phase::Stable
            && s.stable_version.as_deref() == Some("3")
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
    .await;

    // pause → resume
    ok(&["pause", NAME, "-n", &ns]).await;
    let s = wait_status(&api, "paused", |s| s.paused).await;
    assert_eq!(s.pause_reason, Some(PauseReason::Manual));
    let progressing = s.conditions.iter().find(|c| c.type_ == "Progressing");
    assert_eq!(progressing.map(|c| c.reason.as_str()), Some("Paused"));
    let text = status_text(&ns).await;
    assert!(text.contains("Phase:       Stable (paused)\n"), "{text}");

    ok(&["resume", NAME, "-n", &ns]).await;
    let resumed = api.get(NAME).await.unwrap();
    let resume = annotations(&resumed)[manual::RESUME].clone();
    let s = wait_status(&api, "resumed", |s| {
        !s.paused && s.handled_requests.get(manual::RESUME) == Some(&resume)
    })
    .await;
    assert_eq!(s.pause_reason, None);
    // Removed on the server by omission (the apply a real server accepts).
    let stored = raw.get(NAME).await.unwrap().data["status"].clone();
    assert!(
        stored.get("paused").is_none() && stored.get("pauseReason").is_none(),
        "{stored}"
    );
    let text = status_text(&ns).await;
    assert!(text.contains("Phase:       Stable\n"), "{text}");

    // A new version in the registry → shadow; promote → first step.
    registry.set_alias(NAME, "champion", 4);
    wait_status(&api, "version 4 in shadow", |s| {
        s.phase == Phase::Shadow && s.candidate_version.as_deref() == Some("4")
    })
    .await;
    ok(&["promote", NAME, "-n", &ns]).await;
    wait_status(&api, "version 4 at 10 %", |s| {
        s.phase == Phase::Progressing && s.canary_weight == 10 && s.current_step == Some(0)
    })
    .await;
    let text = status_text(&ns).await;
    assert!(
        text.contains("stable 90% / candidate 10%") && text.contains("[10%] -> 50% -> 100%"),
        "{text}"
    );

    // abort → everything back on stable.
    ok(&["abort", NAME, "-n", &ns]).await;
    let s = wait_status(&api, "rolled back", |s| s.phase == Phase::RolledBack).await;
    assert_eq!(s.canary_weight, 0);
    assert_eq!(s.candidate_version, None);
    assert_eq!(s.stable_version.as_deref(), Some("3"));
    let last = s.history.last().expect("a history record");
    assert_eq!(
        (last.candidate_version.as_str(), last.outcome.as_str()),
        ("4", "Aborted")
    );
    eventually("the registry's champion is back on 3", LIMIT, || async {
        (registry.alias(NAME, "champion") == Some(3)).then_some(())
    })
    .await;
    let text = status_text(&ns).await;
    assert!(
        text.contains("Phase:       RolledBack\n") && text.contains("Aborted"),
        "{text}"
    );

    // retry → the aborted version rolls out again; promote --full → it becomes stable.
    ok(&["retry", NAME, "-n", &ns]).await;
    let s = wait_status(&api, "version 4 in shadow again", |s| {
        s.phase == Phase::Shadow && s.candidate_version.as_deref() == Some("4")
    })
    .await;
    assert_eq!(s.candidate_source, Some(CandidateSource::Retry));
    ok(&["promote", NAME, "-n", &ns, "--full"]).await;
    let s = wait_status(&api, "version 4 stable", |s| {
        s.phase == Phase::Stable && s.stable_version.as_deref() == Some("4")
    })
    .await;
    assert_eq!(
        s.history.last().map(|h| h.outcome.as_str()),
        Some("Promoted")
    );
    assert_eq!(registry.alias(NAME, "champion"), Some(4));

    // retrain → a training Job; abort → the attempt ends.
    ok(&["retrain", NAME, "-n", &ns]).await;
    let s = wait_status(&api, "retraining", |s| s.phase == Phase::Retraining).await;
    let attempt = s.retraining_attempts.last().expect("an attempt");
    assert_eq!(
        (attempt.trigger.as_str(), attempt.outcome.as_str()),
        ("manual", "Running")
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let job_name = attempt.job_name.clone();
    eventually("the training Job exists", LIMIT, || async {
        jobs.get_opt(&job_name).await.ok()?
    })
    .await;
    ok(&["abort", NAME, "-n", &ns]).await;
    let s = wait_status(&api, "retraining aborted", |s| s.phase == Phase::Failed).await;
    assert_eq!(
        s.retraining_attempts.last().map(|a| a.outcome.as_str()),
        Some("Aborted")
    );
    let text = status_text(&ns).await;
    assert!(
        text.lines().any(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words.starts_with(&["#1", "manual", "Aborted"]) && words.contains(&job_name.as_str())
        }),
        "{text}"
    );

    // Every command was acted on, none ignored; the events say so too.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let wanted = [
        "Paused",
        "Resumed",
        "CandidateFromRegistry",
        "ManualPromotion",
        "RolledBack",
        "Retry",
        "Promoted",
        "Aborted",
    ];
    let reasons = eventually("the operator's events", LIMIT, || async {
        let reasons: BTreeMap<String, usize> = events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(NAME))
            .filter_map(|e| e.reason)
            .fold(BTreeMap::new(), |mut m, r| {
                *m.entry(r).or_default() += 1;
                m
            });
        wanted
            .iter()
            .all(|w| reasons.contains_key(*w))
            .then_some(reasons)
    })
    .await;
    assert!(
        !reasons.contains_key("ManualRequestIgnored"),
        "no command was ignored: {reasons:?}"
    );

    operator.stop().await;
    cluster::delete_namespace(&client, &ns).await;
}
