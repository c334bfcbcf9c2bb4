//! A ModelDeployment manifest from any text, on both paths it takes: `mlrollout check`'s
//! (nesting guard, every YAML document, the CRD schema, CEL rules, the typed spec, the
//! reconciler's validation, the explanation) and the operator's (the typed resource straight
//! from YAML, then `validate`). Never panics; what `check` accepts, `validate` accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlrollout::api::ModelDeployment;
use mlrollout::api::validation::validate;
use mlrollout::cli::check::{check_value, explain};
use mlrollout::cli::yaml::check_nesting;
use serde::Deserialize;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if check_nesting(text).is_err() {
        return;
    }
    for document in serde_yaml::Deserializer::from_str(text).take(4) {
        let Ok(yaml) = serde_yaml::Value::deserialize(document) else {
            // a syntax error ends the stream (as in `mlrollout check`)
            break;
        };
        if let Ok(resource) = serde_yaml::from_value::<ModelDeployment>(yaml.clone()) {
            if let Err(problems) = validate(&resource.spec) {
                for p in problems {
                    let _ = p.to_string();
                }
            }
        }
        let Ok(value) = serde_json::to_value(&yaml) else {
            continue;
        };
        match check_value(&value) {
            Ok(resource) => {
                let validated = validate(&resource.spec)
                    .unwrap_or_else(|p| panic!("check accepted what validate refuses: {p:?}"));
                let _ = explain("fuzz.yaml", &resource.metadata, &validated);
            }
            Err(problems) => assert!(!problems.is_empty()),
        }
    }
});
