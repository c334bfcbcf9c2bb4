//! `mlrollout simulate` on the bundled scenarios: whole stories through the real decision core.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code states expectations

use std::process::Command;

/// `mlrollout simulate` of the bundled example on one scenario file.
fn run_scenario(path: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mlrollout"))
        .args([
            "simulate",
            "--resource",
            "examples/fraud-detector.yaml",
            "--scenario",
        ])
        .arg(path)
        .output()
        .expect("mlrollout runs")
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
/// `mlrollout simulate --resource examples/fraud-detector.yaml --scenario <s> > tests/golden/simulate/<s>.jsonl`.
#[test]
fn bundled_scenarios_match_their_recorded_output_byte_for_byte() {
    let scenarios = std::fs::read_dir("examples/scenarios").expect("scenarios folder");
    let mut checked = 0;
    for entry in scenarios {
        let path = entry.expect("scenario entry").path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let golden = std::fs::read(format!("tests/golden/simulate/{name}.jsonl"))
            .unwrap_or_else(|e| panic!("no recorded output for scenario {name}: {e}"));
        let output = run_scenario(&path);
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
    assert_eq!(checked, 4, "every bundled scenario has a recorded output");
}
