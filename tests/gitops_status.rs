//! How GitOps tools see a ModelDeployment, judged by their own code on the operator's objects
//! from the real API server: kstatus (`sigs.k8s.io/cli-utils`, what Flux's health checks and
//! `kubectl wait`-style tools use) and Argo CD's health customization
//! (`integrations/argocd/.../health.lua`, run in gopher-lua as Argo CD runs it), both through
//! `tests/harness/statuscheck` (built by its `build.sh`, cached under ~/.cache/mlrollout).
//!
//! The real Controller drives the resource through every phase (the lifecycle world of
//! `tests/lifecycle_controller.rs`); at each one the test GETs the object and asserts both
//! verdicts, and stores it (volatile fields stripped) as the Argo CD test object
//! `testdata/<case>.yaml`: `MLROLLOUT_BLESS=1` writes them, otherwise a committed file that
//! differs from what the operator produced fails the test. `health_test.yaml` then runs on them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane and Go: full suite only, `cargo test --features harness`.
#![cfg(feature = "harness")]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use mlrollout::api::{ModelDeployment, Phase, Severity};
use serde_json::{Value, json};

use common::world::{HOUR, MINUTE, MODEL, World, resource};

const HEALTH_DIR: &str = "integrations/argocd/resource_customizations/mlrollout.io/ModelDeployment";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The statuscheck binary, built (or found in the cache) once per test binary.
fn statuscheck() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo().join("tests/harness/statuscheck/build.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/harness/statuscheck/build.sh");
        assert!(out.status.success(), "statuscheck/build.sh failed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// Runs statuscheck with `args`, `input` on stdin; returns (success, stdout as JSON).
fn run_statuscheck(args: &[&str], input: Option<&Value>) -> (bool, Value) {
    let mut child = Command::new(statuscheck())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start statuscheck");
    let mut stdin = child.stdin.take().unwrap();
    if let Some(input) = input {
        stdin
            .write_all(serde_json::to_string(input).unwrap().as_bytes())
            .unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "statuscheck {args:?}: {e}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), value)
}

/// kstatus.Compute: (status, message).
fn kstatus(object: &Value) -> (String, String) {
    let (ok, v) = run_statuscheck(&["kstatus", "-"], Some(object));
    assert!(ok, "kstatus: {v}");
    (text(&v["Status"]), text(&v["Message"]))
}

/// Argo CD's health.lua: (status, message).
fn argo(object: &Value) -> (String, String) {
    let script = repo().join(HEALTH_DIR).join("health.lua");
    let (ok, v) = run_statuscheck(&["health", script.to_str().unwrap(), "-"], Some(object));
    assert!(ok, "health.lua: {v}");
    (text(&v["status"]), text(&v["message"]))
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// The verdicts as designed (README, "GitOps: Argo CD and Flux"): (kstatus, Argo CD health).
fn designed(object: &Value) -> (&'static str, &'static str) {
    let status = &object["status"];
    if status.is_null() {
        // Before the operator's first status write kstatus cannot tell (no observedGeneration,
        // no conditions: "Resource is current"); Argo CD's script waits. README says so.
        return ("Current", "Progressing");
    }
    let condition = |kind: &str| {
        status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let ready = condition("Ready");
    let is_ready = ready["status"] == "True";
    let phase = status["phase"].as_str().unwrap_or("Pending");
    let paused = status["paused"] == true;
    let for_a_person = paused && status["pauseReason"] == "inconclusiveAnalysis";
    if status["observedGeneration"] != object["metadata"]["generation"] {
        return ("InProgress", "Progressing");
    }
    if ready["reason"] == "InvalidSpec" {
        return ("Failed", "Degraded");
    }
    if for_a_person {
        return ("Failed", "Suspended");
    }
    if matches!(phase, "RolledBack" | "Failed") {
        return ("Failed", "Degraded");
    }
    let kstatus = if paused {
        if is_ready { "Current" } else { "InProgress" }
    } else if matches!(
        phase,
        "Retraining" | "Evaluating" | "Shadow" | "Progressing"
    ) || !is_ready
    {
        "InProgress"
    } else {
        "Current"
    };
    let argo = match phase {
        _ if paused => "Suspended",
        "Stable" | "Promoted" if is_ready => "Healthy",
        _ => "Progressing",
    };
    (kstatus, argo)
}

/// The object without what differs from run to run: identity, resourceVersion, managed
/// fields, timestamps, the uid-derived attempt ids, and what depends on timing within a phase
/// (analysis counters, a deferred trigger, registry writes not yet confirmed). Conditions are
/// sorted by type.
fn strip(mut object: Value) -> Value {
    if let Some(meta) = object["metadata"].as_object_mut() {
        for key in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "namespace",
            "generateName",
            "selfLink",
        ] {
            meta.remove(key);
        }
    }
    if let Some(status) = object["status"].as_object_mut() {
        for key in ["analysis", "deferredTrigger", "pendingRegistryWrites"] {
            status.remove(key);
        }
        if let Some(attempts) = status
            .get_mut("retrainingAttempts")
            .and_then(Value::as_array_mut)
        {
            for a in attempts {
                a.as_object_mut().unwrap().remove("id");
            }
        }
        if let Some(conditions) = status.get_mut("conditions").and_then(Value::as_array_mut) {
            conditions.sort_by_key(|c| c["type"].as_str().unwrap_or_default().to_string());
        }
    }
    strip_times(&mut object);
    object
}

fn strip_times(v: &mut Value) {
    const TIMES: [&str; 9] = [
        "lastTransitionTime",
        "phaseStartedAt",
        "at",
        "checkedAt",
        "startedAt",
        "finishedAt",
        "lastMeasuredAt",
        "scheduleAnchor",
        "nextDriftCheckAt",
    ];
    match v {
        Value::Object(map) => {
            for key in TIMES {
                map.remove(key);
            }
            map.values_mut().for_each(strip_times);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_times),
        _ => {}
    }
}

/// The object as the API server has it, as JSON.
async fn get(mdeps: &Api<ModelDeployment>, name: &str) -> Value {
    serde_json::to_value(mdeps.get(name).await.unwrap()).unwrap()
}

/// Judges `object` with kstatus and health.lua, asserts the verdicts `want` (kstatus, Argo) and
/// that they are the designed ones, and checks (or, with MLROLLOUT_BLESS=1, writes)
/// `testdata/<case>.yaml`.
fn judge_and_store(case: &str, object: &Value, want: (&str, &str)) {
    let (k, k_message) = kstatus(object);
    let (a, a_message) = argo(object);
    assert_eq!(
        (k.as_str(), a.as_str()),
        want,
        "{case}: kstatus {k} ({k_message}), Argo CD {a} ({a_message})\n{object:#}"
    );
    assert_eq!(designed(object), want, "{case}: the design says otherwise");
    assert!(
        !a_message.is_empty(),
        "{case}: the Argo CD message says something"
    );
    let stripped = strip(object.clone());
    let path = repo()
        .join(HEALTH_DIR)
        .join("testdata")
        .join(format!("{case}.yaml"));
    if std::env::var("MLROLLOUT_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, serde_yaml::to_string(&stripped).unwrap()).unwrap();
        eprintln!(
            "{case}: wrote {}; Argo CD says {a}: {a_message:?}",
            path.display()
        );
        return;
    }
    let committed: Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| serde_yaml::from_str(&s).ok())
        .unwrap_or_else(|| {
            panic!(
                "{} missing or unreadable: run with MLROLLOUT_BLESS=1",
                path.display()
            )
        });
    assert_eq!(
        committed,
        stripped,
        "{} differs from what the operator produced (MLROLLOUT_BLESS=1 rewrites it)",
        path.display()
    );
}

/// Waits until the object matches `check`, then returns it (as one consistent GET).
async fn wait_object(world: &World, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let mdeps = world.mdeps();
    world
        .clock
        .wait_for(what, 2 * HOUR, || async {
            let object = get(&mdeps, MODEL).await;
            check(&object).then_some(object)
        })
        .await
}

fn phase_is(object: &Value, phase: &str) -> bool {
    object["status"]["phase"] == phase
}

fn ready(object: &Value) -> bool {
    object["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

async fn annotate(world: &World, annotations: Value) {
    let patch = json!({"metadata": {"annotations": annotations}});
    world
        .mdeps()
        .patch(MODEL, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Every version of the resource a watch sees, for judging them all at the end.
fn record_versions(world: &World) -> (Arc<Mutex<Vec<Value>>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    let config = watcher::Config::default().fields(&format!("metadata.name={MODEL}"));
    let mut stream = watcher(world.mdeps(), config).applied_objects().boxed();
    let task = tokio::spawn(async move {
        while let Some(event) = stream.next().await {
            if let Ok(object) = event {
                out.lock()
                    .unwrap()
                    .push(serde_json::to_value(object).unwrap());
            }
        }
    });
    (seen, task)
}

/// Stable → Retraining → Evaluating (paused by a person there) → Shadow → Progressing →
/// Promoted → Stable: each phase judged, and every version of the object the watch saw too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_phase_of_a_promotion_reads_right_to_argo_cd_and_kstatus() {
    let world = World::new("gs-promote").await;
    let operator = world.operator();
    let (versions, recorder) = record_versions(&world);
    world
        .mdeps()
        .create(&PostParams::default(), &resource(&world.ns))
        .await
        .unwrap();
    let stable = wait_object(&world, "Stable and ready", |o| {
        phase_is(o, "Stable") && ready(o)
    })
    .await;
    judge_and_store("stable", &stable, ("Current", "Healthy"));

    world.drift.set(Severity::High);
    world.clock.advance(5 * MINUTE);
    let retraining = wait_object(&world, "Retraining", |o| phase_is(o, "Retraining")).await;
    judge_and_store("retraining", &retraining, ("InProgress", "Progressing"));
    let job = retraining["status"]["retrainingAttempts"][0]["jobName"]
        .as_str()
        .unwrap()
        .to_string();

    // MLflow's evaluation answer is held back: the phase stays Evaluating.
    world.gate.hold_evaluation(true);
    world.complete_job(&job, 0.91).await;
    let evaluating = wait_object(&world, "Evaluating", |o| phase_is(o, "Evaluating")).await;
    judge_and_store("evaluating", &evaluating, ("InProgress", "Progressing"));

    // A person pauses: Argo CD shows Suspended; kstatus lets Ready speak (the operator holds
    // as told: neither reconciling nor stalled).
    annotate(&world, json!({"mlrollout.io/pause": "true"})).await;
    let paused = wait_object(&world, "paused", |o| o["status"]["paused"] == true).await;
    judge_and_store("paused", &paused, ("Current", "Suspended"));
    world.gate.hold_evaluation(false);
    world.clock.sleep(MINUTE).await;
    assert_eq!(
        world.status().await.phase,
        Phase::Evaluating,
        "paused holds"
    );
    annotate(&world, json!({"mlrollout.io/pause": null})).await;

    let shadow = wait_object(&world, "Shadow", |o| phase_is(o, "Shadow")).await;
    judge_and_store("shadow", &shadow, ("InProgress", "Progressing"));
    let step = wait_object(&world, "first step", |o| {
        phase_is(o, "Progressing") && o["status"]["currentStep"] == 0
    })
    .await;
    judge_and_store("progressing", &step, ("InProgress", "Progressing"));

    let end = wait_object(&world, "Stable on version 4, ready", |o| {
        phase_is(o, "Stable") && o["status"]["stableVersion"] == "4" && ready(o)
    })
    .await;
    let (k, _) = kstatus(&end);
    let (a, a_message) = argo(&end);
    assert_eq!((k.as_str(), a.as_str()), ("Current", "Healthy"));
    assert_eq!(a_message, "Stable: version 4 serves all traffic");

    // Every version the watch saw, Promoted and the steps included, reads as designed.
    recorder.abort();
    let versions = versions.lock().unwrap().clone();
    let mut phases = std::collections::BTreeSet::new();
    for object in &versions {
        let (k, _) = kstatus(object);
        let (a, _) = argo(object);
        assert_eq!(
            designed(object),
            (k.as_str(), a.as_str()),
            "version {} in phase {}",
            object["metadata"]["resourceVersion"],
            object["status"]["phase"]
        );
        phases.insert(
            object["status"]["phase"]
                .as_str()
                .unwrap_or("none")
                .to_string(),
        );
    }
    for phase in [
        "Stable",
        "Retraining",
        "Evaluating",
        "Shadow",
        "Progressing",
        "Promoted",
    ] {
        assert!(phases.contains(phase), "the watch saw {phase}: {phases:?}");
    }
    eprintln!("judged {} versions of the object", versions.len());
    world.finish(operator).await;
}

/// An analysis with no data pauses for a person (Suspended; kstatus Failed: nothing moves
/// without one), and the person's abort rolls back (Degraded / Failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_person_and_a_rollback_read_right() {
    let world = World::new("gs-rollback").await;
    let operator = world.operator();
    let job = common::world::drive_to_job(&world).await;
    // No data for the candidate: the shadow analysis cannot decide.
    for metric in ["error-rate", "latency-p99", "prediction-psi"] {
        world.analyzer.set(metric, "candidate", None);
    }
    world.complete_job(&job, 0.91).await;
    let waiting = wait_object(&world, "paused for a person", |o| {
        o["status"]["pauseReason"] == "inconclusiveAnalysis"
    })
    .await;
    judge_and_store("waiting-for-a-person", &waiting, ("Failed", "Suspended"));

    annotate(&world, json!({"mlrollout.io/abort": "t1"})).await;
    let rolled = wait_object(&world, "RolledBack", |o| phase_is(o, "RolledBack")).await;
    judge_and_store("rolled-back", &rolled, ("Failed", "Degraded"));
    world.finish(operator).await;
}

/// A candidate worse than the champion fails the attempt: Degraded / Failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_reads_degraded() {
    // Slower time: the next drift check (which would defer a new attempt and change the
    // message) stays well after the snapshot.
    let world = World::with_speed("gs-failed", 10).await;
    let operator = world.operator();
    let job = common::world::drive_to_job(&world).await;
    world.complete_job(&job, 0.885).await;
    let failed = wait_object(&world, "Failed", |o| phase_is(o, "Failed")).await;
    judge_and_store("failed", &failed, ("Failed", "Degraded"));
    world.finish(operator).await;
}

/// A model the registry does not know (Pending), a spec edit the operator has not seen yet
/// (stale generation), and a spec only the reconciler can refuse (InvalidSpec).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_stale_and_invalid_specs_read_right() {
    let world = World::new("gs-spec").await;
    let mut operator = world.operator();
    let mdeps = world.mdeps();

    let mut unknown = resource(&world.ns);
    unknown.metadata.name = Some("unregistered".into());
    unknown.spec.model.name = "unregistered".into();
    mdeps
        .create(&PostParams::default(), &unknown)
        .await
        .unwrap();
    let pending = world
        .clock
        .wait_for("Pending with a reason", HOUR, || async {
            let o = get(&mdeps, "unregistered").await;
            (o["status"]["observedGeneration"] == 1).then_some(o)
        })
        .await;
    judge_and_store("pending", &pending, ("InProgress", "Progressing"));

    mdeps
        .create(&PostParams::default(), &resource(&world.ns))
        .await
        .unwrap();
    wait_object(&world, "Stable and ready", |o| {
        phase_is(o, "Stable") && ready(o)
    })
    .await;
    // The operator is down while the spec changes: the status describes generation 1.
    operator.stop().await;
    let edit = json!({"spec": {"shadow": {"mirrorPercent": 20}}});
    mdeps
        .patch(MODEL, &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    let stale = get(&mdeps, MODEL).await;
    assert_eq!(stale["metadata"]["generation"], 2);
    judge_and_store("stale-generation", &stale, ("InProgress", "Progressing"));

    operator = world.operator();
    wait_object(&world, "generation 2 observed", |o| {
        o["status"]["observedGeneration"] == 2 && ready(o)
    })
    .await;
    // Cron syntax is beyond CEL: admission takes it, the reconciler refuses it.
    let bad = json!({"spec": {"retraining": {"triggers": {"schedule": "every tuesday"}}}});
    mdeps
        .patch(MODEL, &PatchParams::default(), &Patch::Merge(&bad))
        .await
        .unwrap();
    let invalid = wait_object(&world, "InvalidSpec", |o| {
        o["status"]["observedGeneration"] == 3
    })
    .await;
    judge_and_store("invalid-spec", &invalid, ("Failed", "Degraded"));
    world.finish(operator).await;
}

/// Argo CD's own test format: every case of `health_test.yaml`, on the committed objects the
/// tests above compare with the operator's; each `testdata/` object has its case.
#[test]
fn health_test_yaml_passes_on_the_operators_objects() {
    let dir = repo().join(HEALTH_DIR);
    let (ok, results) = run_statuscheck(&["health-test", dir.to_str().unwrap()], None);
    let results = results.as_array().unwrap().clone();
    let failed: Vec<&Value> = results.iter().filter(|r| r["passed"] != true).collect();
    assert!(ok && failed.is_empty(), "failed cases: {failed:#?}");
    let cases: std::collections::BTreeSet<String> =
        results.iter().map(|r| text(&r["inputPath"])).collect();
    let files: std::collections::BTreeSet<String> = std::fs::read_dir(dir.join("testdata"))
        .unwrap()
        .map(|e| format!("testdata/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    assert_eq!(
        cases, files,
        "one health_test.yaml case per testdata object"
    );
    assert!(cases.len() >= 11, "{cases:?}");
    let statuses: std::collections::BTreeSet<String> =
        results.iter().map(|r| text(&r["want"]["status"])).collect();
    for status in ["Healthy", "Progressing", "Suspended", "Degraded"] {
        assert!(
            statuses.contains(status),
            "a case for {status}: {statuses:?}"
        );
    }
}

/// The checker is not vacuous: a health.lua that always answers Healthy fails the same cases.
#[test]
fn a_regressed_health_lua_fails_health_test_yaml() {
    let dir = repo().join(HEALTH_DIR);
    let scratch = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.join("health_test.yaml"),
        scratch.path().join("health_test.yaml"),
    )
    .unwrap();
    std::fs::create_dir(scratch.path().join("testdata")).unwrap();
    for entry in std::fs::read_dir(dir.join("testdata")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            scratch.path().join("testdata").join(entry.file_name()),
        )
        .unwrap();
    }
    std::fs::write(
        scratch.path().join("health.lua"),
        "hs = {}\nhs.status = \"Healthy\"\nhs.message = \"\"\nreturn hs\n",
    )
    .unwrap();
    let (ok, results) = run_statuscheck(&["health-test", scratch.path().to_str().unwrap()], None);
    assert!(!ok, "an always-Healthy script must fail");
    let failed = results
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["passed"] != true)
        .count();
    assert!(failed >= 8, "{results:#}");
    // A script using the string library (not opened by Argo CD by default) errors out.
    std::fs::write(
        scratch.path().join("health.lua"),
        "hs = {}\nhs.status = string.upper(\"healthy\")\nreturn hs\n",
    )
    .unwrap();
    let (ok, results) = run_statuscheck(&["health-test", scratch.path().to_str().unwrap()], None);
    assert!(!ok);
    assert!(
        results[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("string"),
        "{results:#}"
    );
}
