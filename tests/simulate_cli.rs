//! `mlrollout simulate` on the bundled scenarios: whole stories through the real decision core.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code states expectations

use std::process::Command;

/// `mlrollout simulate` of the bundled example on one scenario file.
fn run_scenario(path: &std::path::Path) -> std::process::Output {
    run_scenario_with("examples/fraud-detector.yaml", path)
}

/// `mlrollout simulate` of `resource` on one scenario file.
fn run_scenario_with(resource: &str, path: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mlrollout"))
        .args(["simulate", "--resource", resource, "--scenario"])
        .arg(path)
        .output()
        .expect("mlrollout runs")
}

/// The final line and the transitions of a policies scenario (examples/scenarios/policies/).
fn simulate_policies(scenario: &str) -> (Vec<serde_json::Value>, serde_json::Value) {
    let output = run_scenario_with(
        "examples/fraud-detector-policies.yaml",
        std::path::Path::new(&format!("examples/scenarios/policies/{scenario}.yaml")),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = lines.pop().unwrap()["final"].clone();
    (lines, last)
}

fn line_with<'a>(lines: &'a [serde_json::Value], reason: &str) -> &'a serde_json::Value {
    lines
        .iter()
        .find(|l| l["reason"] == reason)
        .unwrap_or_else(|| panic!("no {reason} line"))
}

#[test]
fn a_post_promotion_regression_goes_back_to_the_warm_previous_version() {
    let (lines, last) = simulate_policies("post-promotion-regression");
    let promoted = line_with(&lines, "Promoted");
    let rolled = line_with(&lines, "RolledBack");
    assert_eq!(promoted["canary_weight"], 100);
    // Back on 3 within two measurement intervals of the regression (at 8000 s).
    let at = rolled["at_seconds"].as_u64().unwrap();
    assert!((8000..=8120).contains(&at), "rolled back at {at}");
    assert_eq!(rolled["canary_weight"], 0);
    assert_eq!(rolled["stable"], "3");
    assert!(
        rolled["message"]
            .as_str()
            .unwrap()
            .contains("PostPromotionAnalysisFailed")
    );
    // The rolled-back version is kept 30 minutes, then released.
    let released = line_with(&lines, "CandidateReleased");
    assert_eq!(released["at_seconds"].as_u64().unwrap(), at + 1800);
    assert_eq!(
        (last["phase"].as_str(), last["stable"].as_str()),
        (Some("RolledBack"), Some("3"))
    );
}

#[test]
fn a_failing_dry_run_metric_changes_nothing() {
    let (lines, last) = simulate_policies("dry-run-no-effect");
    let dry = lines
        .iter()
        .filter(|l| l["reason"] == "DryRunMetricFailed")
        .count();
    assert_eq!(dry, 3, "reported once per step");
    assert_eq!(
        (last["phase"].as_str(), last["stable"].as_str()),
        (Some("Stable"), Some("4"))
    );
    // The same story with the dry-run metric passing decides the same transitions, at the
    // same times.
    let scenario = std::fs::read_to_string("examples/scenarios/policies/dry-run-no-effect.yaml")
        .unwrap()
        .replace(
            "variant: candidate, name: error-rate-strict, value: 0.011",
            "variant: candidate, name: error-rate-strict, value: 0.010",
        );
    let dir = tempfile::tempdir().unwrap();
    let passing = dir.path().join("passing.yaml");
    std::fs::write(&passing, scenario).unwrap();
    let output = run_scenario_with("examples/fraud-detector-policies.yaml", &passing);
    let lines_passing: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines_passing
            .iter()
            .all(|l| l["reason"] != "DryRunMetricFailed")
    );
    let transitions = |ls: &[serde_json::Value]| -> Vec<(u64, String, String)> {
        ls.iter()
            .filter(|l| l.get("reason").is_some() && l["reason"] != "DryRunMetricFailed")
            .map(|l| {
                (
                    l["at_seconds"].as_u64().unwrap(),
                    l["phase"].as_str().unwrap().to_owned(),
                    l["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(transitions(&lines), transitions(&lines_passing));
}

#[test]
fn an_indefinite_pause_is_answered_by_promote() {
    let (lines, last) = simulate_policies("pause-answered-by-promote");
    let paused = line_with(&lines, "AnalysisInconclusive");
    let manual = line_with(&lines, "ManualPromotion");
    let (from, to) = (
        paused["at_seconds"].as_u64().unwrap(),
        manual["at_seconds"].as_u64().unwrap(),
    );
    assert_eq!(to, 8400, "nothing moves until the person answers");
    assert!(
        lines
            .iter()
            .filter(|l| (from + 1..to).contains(&l["at_seconds"].as_u64().unwrap()))
            .all(|l| l["canary_weight"] == 50),
        "paused at 50 % from {from} to {to}"
    );
    assert_eq!(
        (last["phase"].as_str(), last["stable"].as_str()),
        (Some("Stable"), Some("4"))
    );
}

fn simulate(scenario: &str) -> (Vec<serde_json::Value>, serde_json::Value) {
    let output = run_scenario(std::path::Path::new(&format!(
        "examples/scenarios/{scenario}.yaml"
    )));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let last = lines.pop().unwrap();
    let final_state = last
        .get("final")
        .cloned()
        .expect("the last line is {\"final\": ...}");
    for line in &lines {
        for key in [
            "at_seconds",
            "phase",
            "stable",
            "candidate",
            "canary_weight",
            "mirror_percent",
            "reason",
            "message",
        ] {
            assert!(line.get(key).is_some(), "{key} missing in {line}");
        }
    }
    (lines, final_state)
}

fn reasons(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["reason"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn drift_story_ends_promoted_through_every_gate() {
    let (lines, last) = simulate("drift-retrain-promote");
    assert_eq!(last["phase"], "Stable");
    assert_eq!(last["stable"], "4");
    assert_eq!(last["canary_weight"], 0);
    let r = reasons(&lines);
    let order = [
        "RetrainingStarted",
        "CandidateRegistered",
        "EvaluationPassed",
        "ShadowStarted",
        "ShadowPassed",
        "Promoted",
        "PromotionComplete",
    ];
    let mut at = 0;
    for reason in order {
        let found = r[at..]
            .iter()
            .position(|x| x == reason)
            .unwrap_or_else(|| panic!("{reason} missing after index {at}: {r:?}"));
        at += found + 1;
    }
    let weights: Vec<i64> = lines
        .iter()
        .filter(|l| l["reason"] == "StepStarted")
        .map(|l| l["canary_weight"].as_i64().unwrap())
        .collect();
    assert_eq!(weights, vec![10, 50, 100]);
    // Shadow mirrored the configured 100 % without moving live traffic.
    let shadow = lines
        .iter()
        .find(|l| l["reason"] == "ShadowStarted")
        .unwrap();
    assert_eq!(
        (
            shadow["mirror_percent"].as_i64(),
            shadow["canary_weight"].as_i64()
        ),
        (Some(100), Some(0))
    );
}

#[test]
fn regression_story_ends_rolled_back_on_stable() {
    let (lines, last) = simulate("regression-rollback");
    assert_eq!(last["phase"], "RolledBack");
    assert_eq!(last["stable"], "3");
    assert_eq!(last["canary_weight"], 0);
    assert!(last["candidate"].is_null());
    let rollback = lines.iter().find(|l| l["reason"] == "RolledBack").unwrap();
    assert!(
        rollback["message"].as_str().unwrap().contains("error-rate"),
        "{rollback}"
    );
    assert_eq!(rollback["canary_weight"], 0);
    assert_eq!(rollback["mirror_percent"], 0);
    // No promotion happened.
    assert!(!reasons(&lines).iter().any(|r| r == "Promoted"));
}

#[test]
fn no_traffic_pauses_for_a_person_who_aborts() {
    let (lines, last) = simulate("manual-alias-no-traffic");
    let r = reasons(&lines);
    assert!(r.iter().any(|x| x == "CandidateFromRegistry"), "{r:?}");
    let inconclusive = r.iter().filter(|x| *x == "AnalysisInconclusive").count();
    assert_eq!(inconclusive, 1, "one pause, no flapping: {r:?}");
    assert_eq!(last["phase"], "RolledBack");
    assert_eq!(last["stable"], "3");
    // Paused at 10 %: missing data never moved traffic forward.
    let max_weight = lines
        .iter()
        .map(|l| l["canary_weight"].as_i64().unwrap())
        .max()
        .unwrap();
    assert_eq!(max_weight, 10);
}

#[test]
fn failing_training_is_held_by_cooldown_and_budget() {
    let (lines, _last) = simulate("failing-training-budget");
    let starts: Vec<i64> = lines
        .iter()
        .filter(|l| l["reason"] == "RetrainingStarted")
        .map(|l| l["at_seconds"].as_i64().unwrap())
        .collect();
    // Cooldown 6h between attempts; at most 3 per rolling 24h.
    assert_eq!(starts, vec![0, 21_600, 43_200, 86_400, 108_000]);
    let deferred: Vec<&str> = lines
        .iter()
        .filter(|l| l["reason"] == "RetrainingDeferred")
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert!(
        deferred.iter().any(|m| m.contains("cooldown")),
        "{deferred:?}"
    );
    assert!(
        deferred.iter().any(|m| m.contains("daily budget")),
        "{deferred:?}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["stable"] == "3" && l["canary_weight"] == 0)
    );
}

#[test]
fn bad_scenarios_are_reported_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "durationSeconds: 10\nstable: {version: \"3\"}\nunknownField: 1\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mlrollout"))
        .args([
            "simulate",
            "--resource",
            "examples/fraud-detector.yaml",
            "--scenario",
        ])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("unknownField"), "{stderr}");
}

/// The bundled scenarios' output is pinned byte for byte: refactoring the core must not change a
/// single decision, reason or message. After an intended change, regenerate with
/// `mlrollout simulate --resource examples/fraud-detector.yaml --scenario <s> > tests/golden/simulate/<s>.jsonl`
/// (and for `examples/scenarios/policies/`, `--resource examples/fraud-detector-policies.yaml`
/// into `tests/golden/simulate/policies/`).
#[test]
fn bundled_scenarios_match_their_recorded_output_byte_for_byte() {
    let mut checked = 0;
    for (folder, resource, golden_dir) in [
        (
            "examples/scenarios",
            "examples/fraud-detector.yaml",
            "tests/golden/simulate",
        ),
        (
            "examples/scenarios/policies",
            "examples/fraud-detector-policies.yaml",
            "tests/golden/simulate/policies",
        ),
        (
            "examples/scenarios/capacity",
            "examples/fraud-detector-capacity.yaml",
            "tests/golden/simulate/capacity",
        ),
    ] {
        let scenarios = std::fs::read_dir(folder).expect("scenarios folder");
        for entry in scenarios {
            let path = entry.expect("scenario entry").path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let golden = std::fs::read(format!("{golden_dir}/{name}.jsonl"))
                .unwrap_or_else(|e| panic!("no recorded output for scenario {name}: {e}"));
            let output = run_scenario_with(resource, &path);
            assert!(
                output.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(
                output.stdout == golden,
                "scenario {name} changed:\n--- recorded\n{}\n--- now\n{}",
                String::from_utf8_lossy(&golden),
                String::from_utf8_lossy(&output.stdout)
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 8, "every bundled scenario has a recorded output");
}

/// Runs `mlrollout simulate` on `scenario` (YAML written to a temp dir), expecting a refusal:
/// returns its one-line stderr, after checking it failed fast and printed nothing.
fn refused(scenario: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scenario.yaml");
    std::fs::write(&path, scenario).unwrap();
    let started = std::time::Instant::now();
    let output = run_scenario(&path);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "refused up front, not after running: {:?}",
        started.elapsed()
    );
    assert!(!output.status.success(), "accepted: {scenario}");
    assert!(
        output.stdout.is_empty(),
        "nothing printed before the refusal"
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("is not a valid scenario"), "{stderr}");
    stderr
}

const STABLE_3: &str = "stable: {version: \"3\"}\n";

#[test]
fn an_absurd_duration_is_refused_up_front() {
    let stderr = refused(&format!("durationSeconds: 1000000000000\n{STABLE_3}"));
    assert!(
        stderr.contains("durationSeconds: 1000000000000 s is above the limit"),
        "{stderr}"
    );
}

#[test]
fn the_largest_number_is_refused_not_looped_on() {
    let stderr = refused(&format!(
        "durationSeconds: 18446744073709551615\ntickSeconds: 18446744073709551615\n{STABLE_3}"
    ));
    assert!(stderr.contains("durationSeconds: "), "{stderr}");
    assert!(stderr.contains("tickSeconds: "), "{stderr}");
}

#[test]
fn too_many_ticks_are_refused_naming_the_limit() {
    // 300 million seconds fit the clock, but at 30 s a tick they are 10 million reconciles.
    let stderr = refused(&format!("durationSeconds: 300000000\n{STABLE_3}"));
    assert!(stderr.contains("durationSeconds: "), "{stderr}");
    assert!(stderr.contains("above the limit of 1000000"), "{stderr}");
}

#[test]
fn times_that_would_wrap_the_clock_are_refused() {
    let stderr = refused(&format!(
        "durationSeconds: 3600\n{STABLE_3}readySeconds: 18446744073709551615\n\
         drift: [{{at: 18446744073709551615, severity: high}}]\n"
    ));
    assert!(stderr.contains("readySeconds: "), "{stderr}");
    assert!(stderr.contains("drift[0].at: "), "{stderr}");
}

#[test]
fn an_unknown_drift_severity_is_refused_by_field() {
    let stderr = refused(&format!(
        "durationSeconds: 60\n{STABLE_3}drift: [{{at: 0, severity: extreme}}]\n"
    ));
    assert!(stderr.contains("drift[0].severity"), "{stderr}");
    assert!(stderr.contains("extreme"), "{stderr}");
    assert!(stderr.contains("`ok`, `medium`, `high`"), "{stderr}");
}

#[test]
fn an_outage_that_ends_before_it_starts_is_refused() {
    let stderr = refused(&format!(
        "durationSeconds: 600\n{STABLE_3}registryOutages: [[300, 120]]\n"
    ));
    assert!(
        stderr.contains("registryOutages[0]: ends at 120 s"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_annotation_is_refused() {
    let stderr = refused(&format!(
        "durationSeconds: 600\n{STABLE_3}annotations: [{{at: 60, name: mlrollout.io/abrot, value: x}}]\n"
    ));
    assert!(
        stderr.contains("annotations[0].name: unknown annotation \"mlrollout.io/abrot\""),
        "{stderr}"
    );
}

#[test]
fn a_bad_candidate_version_is_named_as_the_candidate() {
    for (version, expected) in [
        ("x4", "is not a version number"),
        ("3", "not newer than the stable version 3"),
        ("18446744073709551615", "out of range"),
    ] {
        let stderr = refused(&format!(
            "durationSeconds: 3600\n{STABLE_3}drift: [{{at: 0, severity: high}}]\n\
             training: {{durationSeconds: 60, outcome: succeeded, candidate: {{version: \"{version}\"}}}}\n"
        ));
        assert!(stderr.contains("training.candidate.version: "), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(
            !stderr.contains("stable version \""),
            "not called the stable one: {stderr}"
        );
    }
}

#[test]
fn lines_are_streamed_and_a_closed_pipe_ends_the_run_at_once() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    // Close to the tick limit: minutes of work if run to the end.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.yaml");
    std::fs::write(&path, format!("durationSeconds: 29000000\n{STABLE_3}")).unwrap();
    let started = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mlrollout"))
        .args([
            "simulate",
            "--resource",
            "examples/fraud-detector.yaml",
            "--scenario",
        ])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("\"at_seconds\":0"), "{first}");
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the first line came at once and the run stopped with the reader: {:?}",
        started.elapsed()
    );
    assert!(output.status.success(), "a closed pipe is not an error");
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn dynamic_stable_scale_never_routes_more_than_a_variant_can_carry() {
    let output = run_scenario_with(
        "examples/fraud-detector-capacity.yaml",
        std::path::Path::new("examples/scenarios/capacity/dynamic-stable-scale-rollback.yaml"),
    );
    assert!(output.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut seen_shrunk_stable = false;
    // (Before the first Deployment exists nothing is routed anywhere.)
    let routed_lines = lines
        .iter()
        .filter_map(|l| l.get("capacity"))
        .filter(|c| c["stable_replicas"][1].as_i64().unwrap() > 0);
    for line in routed_lines {
        let routed = line["routed_weight"].as_i64().unwrap();
        let ready = |key: &str| line[key][0].as_i64().unwrap();
        // Ten replicas carry 100 %: each variant's ready pods cover its share of the route.
        assert!(ready("stable_replicas") * 10 >= 100 - routed, "{line}");
        assert!(
            routed == 0 || ready("candidate_replicas") * 10 >= routed,
            "{line}"
        );
        seen_shrunk_stable |= line["stable_replicas"][1].as_i64().unwrap() < 10;
    }
    assert!(seen_shrunk_stable, "stable scaled down during the steps");
    let rolled = lines.iter().find(|l| l["reason"] == "RolledBack").unwrap();
    assert_eq!(
        rolled["capacity"]["routed_weight"], 50,
        "traffic waits for stable"
    );
    let back = lines
        .iter()
        .find(|l| l["reason"] == "RouteMoved" && l["capacity"]["routed_weight"] == 0)
        .unwrap();
    assert_eq!(
        back["capacity"]["stable_replicas"],
        serde_json::json!([10, 10])
    );
}
