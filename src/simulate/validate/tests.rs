use super::*;

/// A scenario from YAML (a small valid story plus `extra` lines).
fn scenario(extra: &str) -> Scenario {
    let text = format!("durationSeconds: 3600\nstable: {{version: \"3\"}}\n{extra}");
    serde_yaml::from_str(&text).expect("the test scenario parses")
}

fn paths(problems: &[ScenarioProblem]) -> Vec<&str> {
    problems.iter().map(|p| p.path.as_str()).collect()
}

#[test]
fn a_small_story_is_valid() {
    let s = scenario(
        "drift: [{at: 0, severity: high}]\n\
         registryOutages: [[60, 120]]\n\
         annotations: [{at: 600, name: mlrollout.io/abort, value: x}]\n\
         training: {durationSeconds: 60, outcome: succeeded, candidate: {version: \"4\"}}\n",
    );
    assert_eq!(validate(&s), vec![]);
}

#[test]
fn absurd_durations_are_refused_by_name() {
    // Set directly: `durationSeconds` is already in the test scenario's YAML.
    let mut s = scenario("");
    s.duration_seconds = 1_000_000_000_000;
    let problems = validate(&s);
    assert_eq!(paths(&problems), vec!["durationSeconds"]);
    assert!(
        problems[0].problem.contains("above the limit"),
        "{problems:?}"
    );
    s.duration_seconds = u64::MAX;
    s.tick_seconds = u64::MAX;
    assert_eq!(paths(&validate(&s)), vec!["durationSeconds", "tickSeconds"]);
}

#[test]
fn too_many_ticks_are_refused_naming_the_limit() {
    let mut s = scenario("");
    s.duration_seconds = MAX_TICKS * 30;
    s.tick_seconds = 30;
    let problems = validate(&s);
    assert_eq!(paths(&problems), vec!["durationSeconds"]);
    assert!(
        problems[0].problem.contains(&MAX_TICKS.to_string()),
        "{problems:?}"
    );
    // One tick fewer is the limit itself.
    s.duration_seconds = (MAX_TICKS - 1) * 30;
    assert_eq!(validate(&s), vec![]);
}

#[test]
fn a_zero_tick_is_refused() {
    let problems = validate(&scenario("tickSeconds: 0\n"));
    assert_eq!(paths(&problems), vec!["tickSeconds"]);
}

#[test]
fn other_durations_are_bounded() {
    let problems = validate(&scenario(
        "readySeconds: 18446744073709551615\n\
         training: {durationSeconds: 18446744073709551615, outcome: failed}\n",
    ));
    assert_eq!(
        paths(&problems),
        vec!["readySeconds", "training.durationSeconds"]
    );
}

#[test]
fn events_after_the_end_are_refused() {
    let problems = validate(&scenario(
        "drift: [{at: 0, severity: ok}, {at: 18446744073709551615, severity: high}]\n\
         annotations: [{at: 3601, name: mlrollout.io/pause, value: \"true\"}]\n",
    ));
    assert_eq!(paths(&problems), vec!["drift[1].at", "annotations[0].at"]);
    assert!(problems[0].problem.contains("never happen"), "{problems:?}");
}

#[test]
fn an_outage_that_ends_before_it_starts_is_refused() {
    let problems = validate(&scenario(
        "registryOutages: [[0, 60], [600, 300], [60, 60]]\n",
    ));
    assert_eq!(
        paths(&problems),
        vec!["registryOutages[1]", "registryOutages[2]"]
    );
    assert!(problems[0].problem.contains("600"), "{problems:?}");
    let endless = validate(&scenario("registryOutages: [[60, 18446744073709551615]]\n"));
    assert_eq!(paths(&endless), vec!["registryOutages[0][1]"]);
}

#[test]
fn unknown_annotations_are_refused() {
    let problems = validate(&scenario(
        "annotations:\n\
         - {at: 0, name: mlrollout.io/abrot, value: x}\n\
         - {at: 0, name: example.com/abort, value: x}\n\
         - {at: 0, name: mlrollout.io/promote, value: full}\n",
    ));
    assert_eq!(
        paths(&problems),
        vec!["annotations[0].name", "annotations[1].name"]
    );
    assert!(
        problems[0].problem.contains("mlrollout.io/abort"),
        "the message lists the known ones: {problems:?}"
    );
}

#[test]
fn values_are_finite_and_counts_not_negative() {
    let problems = validate(&scenario(
        "accuracy: [{at: 0, value: .nan}]\n\
         metrics: [{at: 0, variant: stable, name: error-rate, value: .inf}]\n\
         samples: [{at: 0, count: -5}]\n",
    ));
    assert_eq!(
        paths(&problems),
        vec!["accuracy[0].value", "metrics[0].value", "samples[0].count"]
    );
}

#[test]
fn versions_are_named_by_their_field() {
    let problems = validate(&scenario(
        "registry: [{at: 0, version: \"five\"}]\n\
         training: {durationSeconds: 60, outcome: succeeded, candidate: {version: \"x4\"}}\n",
    ));
    assert_eq!(
        paths(&problems),
        vec!["registry[0].version", "training.candidate.version"]
    );
    assert!(problems[1].problem.contains("\"x4\""), "{problems:?}");
    let mut stable = scenario("");
    stable.stable.version = "18446744073709551615".into();
    assert_eq!(paths(&validate(&stable)), vec!["stable.version"]);
    stable.stable.version = "0".into();
    assert_eq!(paths(&validate(&stable)), vec!["stable.version"]);
}

#[test]
fn a_candidate_is_a_new_version() {
    let problems = validate(&scenario(
        "registry: [{at: 0, version: \"5\"}]\n\
         training:\n  durationSeconds: 60\n  outcome: succeeded\n  candidates:\n\
         \x20   - {version: \"3\"}\n    - {version: \"5\"}\n    - {version: \"6\"}\n    - {version: \"6\"}\n",
    ));
    assert_eq!(
        paths(&problems),
        vec![
            "training.candidates[0].version",
            "training.candidates[1].version",
            "training.candidates[3].version"
        ]
    );
    assert!(problems[0].problem.contains("not newer"), "{problems:?}");
    assert!(problems[1].problem.contains("registry[0]"), "{problems:?}");
}

#[test]
fn a_problem_reads_as_its_path_then_the_problem() {
    let problem = ScenarioProblem::new("drift[0].at", "too late");
    assert_eq!(problem.to_string(), "drift[0].at: too late");
}
