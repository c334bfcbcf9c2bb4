//! Validation of whole specs: every problem named with its path, none half-applied.

#![allow(clippy::unwrap_used)]
use super::*;

fn spec(current: serde_json::Value) -> ModelDeploymentSpec {
    serde_json::from_value(serde_json::json!({
        "model": {"trackingUri": "http://mlflow:5000", "name": "fraud"},
        "traffic": {"provider": "none"},
        "serving": {"proxy": {"capture": {"uri": "s3://captures/live"}}},
        "drift": {"reference": {"uri": "s3://data/ref.parquet"}, "current": current},
    }))
    .unwrap()
}

fn problems(current: serde_json::Value) -> Vec<String> {
    match validate(&spec(current)) {
        Ok(_) => Vec::new(),
        Err(problems) => problems.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn the_current_data_is_one_source_and_one_selection() {
    assert!(problems(serde_json::json!({"uri": "s3://c/x/", "lastRows": 10})).is_empty());
    assert!(
        problems(serde_json::json!({"capture": {"variant": "stable"}, "lastDuration": "1h"}))
            .is_empty()
    );
    for (current, said) in [
        (
            serde_json::json!({"lastRows": 10}),
            "exactly one of uri and capture",
        ),
        (
            serde_json::json!({"uri": "a/", "capture": {"variant": "candidate"}}),
            "exactly one of uri and capture",
        ),
        (
            serde_json::json!({"uri": "a/", "lastRows": 10, "lastDuration": "1h"}),
            "not both",
        ),
        (
            serde_json::json!({"uri": "a/", "lastRows": 10, "window": "1h", "timestampColumn": "t"}),
            "cannot be combined",
        ),
        (
            serde_json::json!({"uri": "a/", "lastRows": 0}),
            "at least 1",
        ),
        (
            serde_json::json!({"uri": "a/", "lastDuration": "soon"}),
            "lastDuration",
        ),
    ] {
        let found = problems(current.clone());
        assert!(
            found.iter().any(|p| p.contains(said)),
            "{current}: {found:?}"
        );
    }
}
fn labelled_problems(capture: bool, labelled: serde_json::Value) -> Vec<String> {
    let mut value = serde_json::json!({
        "model": {"trackingUri": "http://mlflow:5000", "name": "fraud"},
        "traffic": {"provider": "none"},
        "performance": {"labelled": labelled},
    });
    if capture {
        value["serving"] = serde_json::json!({"proxy": {"capture": {"uri": "s3://lake/captures"}}});
    }
    let spec: ModelDeploymentSpec = serde_json::from_value(value).unwrap();
    match validate(&spec) {
        Ok(_) => Vec::new(),
        Err(problems) => problems.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn a_label_join_needs_the_capture_one_selection_and_an_id_that_is_not_the_label() {
    let join = |extra: serde_json::Value| {
        let mut j = serde_json::json!({"uri": "s3://lake/feedback/", "join": {"capture": {"variant": "stable"}}});
        for (k, v) in extra.as_object().unwrap() {
            j["join"][k] = v.clone();
        }
        j
    };
    assert!(labelled_problems(true, join(serde_json::json!({"lastDuration": "168h"}))).is_empty());
    // the plain shape is unchanged, with or without a capture
    assert!(labelled_problems(false, serde_json::json!({"uri": "l.csv"})).is_empty());
    for (capture, labelled, said) in [
        (
            false,
            join(serde_json::json!({})),
            "spec.performance.labelled.join.capture: needs spec.serving.proxy.capture",
        ),
        (
            true,
            join(serde_json::json!({"lastRows": 5, "lastDuration": "1h"})),
            "not both",
        ),
        (
            true,
            join(serde_json::json!({"lastRows": 0})),
            "lastRows: must be at least 1",
        ),
        (
            true,
            join(serde_json::json!({"lastDuration": "soon"})),
            "join.lastDuration",
        ),
        (
            true,
            join(serde_json::json!({"idColumn": "label"})),
            "the request id and the label are two columns",
        ),
        (
            true,
            join(serde_json::json!({"idColumn": ""})),
            "idColumn: must not be empty",
        ),
    ] {
        let found = labelled_problems(capture, labelled.clone());
        assert!(
            found.iter().any(|p| p.contains(said)),
            "{labelled}: {found:?}"
        );
    }
}
