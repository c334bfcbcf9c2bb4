//! `mlrollout simulate`'s scenario path on any text: the nesting guard, the YAML parse, the
//! scenario's validation, and (for a valid scenario of at most a few thousand ticks) the run
//! against examples/fraud-detector.yaml. Never panics; a valid scenario runs without a
//! clock error and ends with a final line.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mlrollout::api::ModelDeployment;
use mlrollout::cli::yaml::check_nesting;
use mlrollout::simulate::scenario::Scenario;
use mlrollout::simulate::validate::validate;

/// Longest run tried (ticks), to keep each input fast.
const MAX_TICKS: u64 = 2_000;

static RESOURCE: LazyLock<ModelDeployment> = LazyLock::new(|| {
    let text = include_str!("../../examples/fraud-detector.yaml");
    let value: serde_json::Value =
        serde_yaml::from_str(text).unwrap_or_else(|e| panic!("example resource: {e}"));
    mlrollout::cli::check::check_value(&value).unwrap_or_else(|p| panic!("example resource: {p:?}"))
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if check_nesting(text).is_err() {
        return;
    }
    let Ok(scenario) = serde_yaml::from_str::<Scenario>(text) else {
        return;
    };
    let problems = validate(&scenario);
    for p in &problems {
        let _ = p.to_string();
    }
    let ticks = scenario.duration_seconds / scenario.tick_seconds.max(1) + 1;
    if !problems.is_empty() || ticks > MAX_TICKS {
        return;
    }
    match mlrollout::simulate::run(&RESOURCE, &scenario) {
        Ok(outcome) => assert!(outcome.lines.len() as u64 <= ticks * 64),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
