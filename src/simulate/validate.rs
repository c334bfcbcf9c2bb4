//! Checks a scenario before it runs, so that `mlrollout simulate` answers fast and clearly:
//! absurd times (that would run for days or wrap the virtual clock), intervals that end
//! before they start, events after the end, annotations the operator never reads and
//! versions that are not MLflow version numbers are refused up front, each problem naming
//! its field.

use std::collections::BTreeMap;

use super::scenario::{Scenario, Training, VersionFacts};
use crate::core::lifecycle::manual;

/// Longest story: ten years of virtual time (the clock starts in 2026, far from any limit).
pub const MAX_SECONDS: u64 = 10 * 366 * 86_400;
/// Most reconcile ticks one run may take (`durationSeconds / tickSeconds + 1`): a few
/// seconds of work.
pub const MAX_TICKS: u64 = 1_000_000;
/// Highest version number: MLflow stores a model version as a 32-bit integer.
pub const MAX_VERSION: u64 = i32::MAX as u64;

/// The annotations the operator reads (see [`crate::core::lifecycle::manual`]).
pub const KNOWN_ANNOTATIONS: [&str; 6] = [
    manual::PAUSE,
    manual::PROMOTE,
    manual::ABORT,
    manual::RETRY,
    manual::RETRAIN,
    manual::RESUME,
];

/// One thing wrong with a scenario, at its field path (`drift[2].at`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct ScenarioProblem {
    pub path: String,
    pub problem: String,
}

impl ScenarioProblem {
    fn new(path: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

/// Every problem of `scenario` (none: it runs in at most [`MAX_TICKS`] ticks, its clock stays
/// in range and every version parses).
pub fn validate(scenario: &Scenario) -> Vec<ScenarioProblem> {
    let mut problems = Vec::new();
    check_clock(scenario, &mut problems);
    check_events(scenario, &mut problems);
    check_outages(scenario, &mut problems);
    check_annotations(scenario, &mut problems);
    check_values(scenario, &mut problems);
    check_versions(scenario, &mut problems);
    problems
}

/// A model version number as MLflow numbers them (1, 2, …), or the problem at `path`.
pub fn version_number(path: &str, version: &str) -> Result<u64, ScenarioProblem> {
    match version.trim().parse::<u64>() {
        Ok(n) if (1..=MAX_VERSION).contains(&n) => Ok(n),
        Ok(_) => Err(ScenarioProblem::new(
            path,
            format!(
                "version {version:?} is out of range: MLflow numbers versions 1 to {MAX_VERSION}"
            ),
        )),
        Err(_) => Err(ScenarioProblem::new(
            path,
            format!("{version:?} is not a version number (MLflow numbers versions 1, 2, …)"),
        )),
    }
}

/// A time in seconds: at most [`MAX_SECONDS`].
fn check_seconds(path: &str, seconds: u64, problems: &mut Vec<ScenarioProblem>) -> bool {
    if seconds > MAX_SECONDS {
        problems.push(ScenarioProblem::new(
            path,
            format!("{seconds} s is above the limit of {MAX_SECONDS} s (ten years)"),
        ));
        return false;
    }
    true
}

/// The length, the step and the other durations: bounded, and few enough ticks.
fn check_clock(scenario: &Scenario, problems: &mut Vec<ScenarioProblem>) {
    let duration_ok = check_seconds("durationSeconds", scenario.duration_seconds, problems);
    let tick_ok = check_seconds("tickSeconds", scenario.tick_seconds, problems);
    if scenario.tick_seconds == 0 {
        problems.push(ScenarioProblem::new("tickSeconds", "must be at least 1"));
    } else if duration_ok && tick_ok {
        let ticks = scenario.duration_seconds / scenario.tick_seconds + 1;
        if ticks > MAX_TICKS {
            problems.push(ScenarioProblem::new(
                "durationSeconds",
                format!(
                    "{} s at {} s a tick is {ticks} reconcile ticks, above the limit of \
                     {MAX_TICKS}: raise tickSeconds or shorten durationSeconds",
                    scenario.duration_seconds, scenario.tick_seconds
                ),
            ));
        }
    }
    check_seconds("readySeconds", scenario.ready_seconds, problems);
    if let Some(training) = &scenario.training {
        check_seconds(
            "training.durationSeconds",
            training.duration_seconds,
            problems,
        );
    }
}

/// Every dated event happens within the story (one after the end would silently never fire).
fn check_events(scenario: &Scenario, problems: &mut Vec<ScenarioProblem>) {
    let lists: [(&str, Vec<u64>); 6] = [
        ("drift", scenario.drift.iter().map(|e| e.at).collect()),
        ("accuracy", scenario.accuracy.iter().map(|e| e.at).collect()),
        ("samples", scenario.samples.iter().map(|e| e.at).collect()),
        ("metrics", scenario.metrics.iter().map(|e| e.at).collect()),
        (
            "annotations",
            scenario.annotations.iter().map(|e| e.at).collect(),
        ),
        ("registry", scenario.registry.iter().map(|e| e.at).collect()),
    ];
    for (list, times) in lists {
        for (i, at) in times.into_iter().enumerate() {
            if at > scenario.duration_seconds {
                problems.push(ScenarioProblem::new(
                    format!("{list}[{i}].at"),
                    after_the_end(at, scenario.duration_seconds),
                ));
            }
        }
    }
}

fn after_the_end(at: u64, duration: u64) -> String {
    format!(
        "{at} s is after the end of the story (durationSeconds {duration}): it would never happen"
    )
}

/// Outages are `[from, to)` with `from < to`, starting within the story.
fn check_outages(scenario: &Scenario, problems: &mut Vec<ScenarioProblem>) {
    for (i, [from, to]) in scenario.registry_outages.iter().enumerate() {
        let path = format!("registryOutages[{i}]");
        if to <= from {
            problems.push(ScenarioProblem::new(
                path,
                format!(
                    "ends at {to} s, not after it starts at {from} s ([from, to) needs from < to)"
                ),
            ));
        } else if *from > scenario.duration_seconds {
            problems.push(ScenarioProblem::new(
                path,
                after_the_end(*from, scenario.duration_seconds),
            ));
        } else {
            check_seconds(&format!("{path}[1]"), *to, problems);
        }
    }
}

/// Only the annotations the operator reads: a typo would silently do nothing.
fn check_annotations(scenario: &Scenario, problems: &mut Vec<ScenarioProblem>) {
    for (i, annotation) in scenario.annotations.iter().enumerate() {
        if !KNOWN_ANNOTATIONS.contains(&annotation.name.as_str()) {
            problems.push(ScenarioProblem::new(
                format!("annotations[{i}].name"),
                format!(
                    "unknown annotation {:?}: the operator reads {}",
                    annotation.name,
                    KNOWN_ANNOTATIONS.join(", ")
                ),
            ));
        }
    }
}

/// Measured values are finite numbers and sample counts are not negative.
fn check_values(scenario: &Scenario, problems: &mut Vec<ScenarioProblem>) {
    let mut finite = |path: String, value: f64| {
        if !value.is_finite() {
            problems.push(ScenarioProblem::new(
                path,
                format!("{value} is not a finite number"),
            ));
        }
    };
    for (i, a) in scenario.accuracy.iter().enumerate() {
        finite(format!("accuracy[{i}].value"), a.value);
    }
    for (i, m) in scenario.metrics.iter().enumerate() {
        if let Some(value) = m.value {
            finite(format!("metrics[{i}].value"), value);
        }
    }
    for (i, s) in scenario.samples.iter().enumerate() {
        if s.count < 0 {
            problems.push(ScenarioProblem::new(
                format!("samples[{i}].count"),
                format!("{} rows: a count cannot be negative", s.count),
            ));
        }
    }
}

/// Every version parses; a Job registers a new version: above the stable one and not one the
/// scenario registers otherwise.
fn check_versions(scenario: &Scenario, problems: &mut Vec<ScenarioProblem>) {
    let mut taken: BTreeMap<u64, String> = BTreeMap::new();
    let stable = parse("stable.version".into(), &scenario.stable.version, problems);
    if let Some(stable) = stable {
        taken.insert(stable, "stable.version".into());
    }
    for (i, change) in scenario.registry.iter().enumerate() {
        let path = format!("registry[{i}].version");
        if let Some(n) = parse(path.clone(), &change.version, problems) {
            taken.entry(n).or_insert(path);
        }
    }
    let Some(training) = &scenario.training else {
        return;
    };
    for (path, facts) in candidates(training) {
        let Some(n) = parse(path.clone(), &facts.version, problems) else {
            continue;
        };
        if let Some(stable) = stable
            && n <= stable
        {
            problems.push(ScenarioProblem::new(
                path,
                format!(
                    "candidate version {n} is not newer than the stable version {stable}: a \
                     retraining Job registers a new version"
                ),
            ));
        } else if let Some(other) = taken.get(&n) {
            problems.push(ScenarioProblem::new(
                path,
                format!("candidate version {n} is already registered by {other}"),
            ));
        } else {
            taken.insert(n, path);
        }
    }
}

/// [`version_number`], its problem recorded.
fn parse(path: String, version: &str, problems: &mut Vec<ScenarioProblem>) -> Option<u64> {
    version_number(&path, version)
        .map_err(|problem| problems.push(problem))
        .ok()
}

/// The versions a Job may register, with their paths.
fn candidates(training: &Training) -> Vec<(String, &VersionFacts)> {
    let mut all: Vec<(String, &VersionFacts)> = training
        .candidates
        .iter()
        .enumerate()
        .map(|(i, facts)| (format!("training.candidates[{i}].version"), facts))
        .collect();
    if let Some(facts) = &training.candidate {
        all.push(("training.candidate.version".into(), facts));
    }
    all
}

#[cfg(test)]
mod tests;
