//! The reconciler's registry view against a real MLflow server: alias, pinned version, and
//! errors a user can act on (missing model, missing alias, server down).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs a real MLflow server and the test venv's Python: full suite only, `cargo test --features
// harness` (tests/run.sh turns it on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::time::Duration;

use mlrollout::api::{AttemptOutcome, ModelSource, Reason, RegistryOp, Trigger};
use mlrollout::mlflow::{MlflowAuth, MlflowClient};
use mlrollout::registry::mlflow::MlflowRegistry;
use mlrollout::registry::{ModelRegistry, RegistryCredentials, RegistryError};

fn source(uri: &str, name: &str, alias: &str, version: Option<&str>) -> ModelSource {
    ModelSource {
        tracking_uri: uri.into(),
        name: name.into(),
        alias: alias.into(),
        version: version.map(String::from),
        credentials_secret: None,
    }
}

#[tokio::test]
async fn resolves_alias_and_pins_and_names_each_failure() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let uri = tokio::task::spawn_blocking(|| common::mlflow::mlflow_server().uri())
        .await
        .unwrap();
    let model = format!("registry-test-{}", std::process::id());
    for _ in 0..2 {
        common::mlflow::train_version(&uri, &model);
    }
    let mlflow = MlflowClient::new(&uri, MlflowAuth::None, Duration::from_secs(30)).unwrap();
    mlflow.set_alias(&model, "champion", 1).await.unwrap();

    let registry = MlflowRegistry::new(Duration::from_secs(10));
    let none = RegistryCredentials::None;
    let resolved = registry
        .resolve(&source(&uri, &model, "champion", None), &none)
        .await
        .unwrap();
    assert_eq!(resolved.version, "1");
    assert!(resolved.run_id.is_some());

    // Someone promotes by hand in MLflow: the next resolution sees it.
    mlflow.set_alias(&model, "champion", 2).await.unwrap();
    let moved = registry
        .resolve(&source(&uri, &model, "champion", None), &none)
        .await
        .unwrap();
    assert_eq!(moved.version, "2");

    // A pinned version wins over the alias.
    let pinned = registry
        .resolve(&source(&uri, &model, "champion", Some("1")), &none)
        .await
        .unwrap();
    assert_eq!(pinned.version, "1");

    let missing_alias = registry
        .resolve(&source(&uri, &model, "gold", None), &none)
        .await
        .unwrap_err();
    assert!(
        matches!(missing_alias, RegistryError::AliasNotFound { .. }),
        "{missing_alias:?}"
    );
    assert_eq!(missing_alias.reason(), Reason::AliasNotFound);

    let missing_model = registry
        .resolve(&source(&uri, "no-such-model", "champion", None), &none)
        .await
        .unwrap_err();
    assert!(
        matches!(missing_model, RegistryError::ModelNotFound { .. }),
        "{missing_model:?}"
    );

    let missing_version = registry
        .resolve(&source(&uri, &model, "champion", Some("99")), &none)
        .await
        .unwrap_err();
    assert!(
        matches!(missing_version, RegistryError::VersionNotFound { .. }),
        "{missing_version:?}"
    );

    // A closed port is an outage, not a missing model.
    let closed = format!("http://127.0.0.1:{}", common::http::free_port());
    let down = registry
        .resolve(&source(&closed, &model, "champion", None), &none)
        .await
        .unwrap_err();
    assert!(matches!(down, RegistryError::Unavailable(_)), "{down:?}");
    assert_eq!(down.reason(), Reason::RegistryUnavailable);
}

#[tokio::test]
async fn write_back_reaches_mlflow_idempotently() {
    use mlrollout::api::RegistryWrite;
    use mlrollout::registry::AttemptRecord;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let uri = tokio::task::spawn_blocking(|| common::mlflow::mlflow_server().uri())
        .await
        .unwrap();
    let model = format!("writeback-{}", std::process::id());
    for _ in 0..2 {
        common::mlflow::train_version(&uri, &model);
    }
    let registry = MlflowRegistry::new(Duration::from_secs(10));
    let none = RegistryCredentials::None;
    let src = source(&uri, &model, "champion", None);
    let write =
        |op: RegistryOp, version: Option<&str>, key: &str, value: Option<&str>| RegistryWrite {
            op,
            version: version.map(String::from),
            key: key.into(),
            value: value.map(String::from),
        };
    // Promotion of version 2 over version 1, each write applied twice.
    for w in [
        write(RegistryOp::SetAlias, Some("1"), "previous", None),
        write(RegistryOp::SetAlias, Some("2"), "champion", None),
        write(RegistryOp::SetAlias, Some("2"), "challenger", None),
        write(RegistryOp::DeleteAlias, None, "challenger", None),
        write(
            RegistryOp::SetTag,
            Some("2"),
            "mlrollout.io/rollout",
            Some("promoted"),
        ),
    ] {
        registry.apply_write(&src, &none, &w).await.unwrap();
        registry.apply_write(&src, &none, &w).await.unwrap();
    }
    let mlflow = MlflowClient::new(&uri, MlflowAuth::None, Duration::from_secs(30)).unwrap();
    let champion = mlflow
        .get_model_version_by_alias(&model, "champion")
        .await
        .unwrap();
    assert_eq!(champion.version, 2);
    assert_eq!(
        champion
            .tags
            .get("mlrollout.io/rollout")
            .map(String::as_str),
        Some("promoted")
    );
    assert_eq!(
        mlflow
            .get_model_version_by_alias(&model, "previous")
            .await
            .unwrap()
            .version,
        1
    );
    assert!(
        mlflow
            .get_model_version_by_alias(&model, "challenger")
            .await
            .is_err()
    );

    // A retraining attempt becomes one MLflow run, updated as the attempt progresses.
    let mut record = AttemptRecord {
        experiment: format!("mlrollout/{model}"),
        attempt_id: format!("{model}-1"),
        number: 1,
        trigger: Trigger::Drift,
        job_name: "fraud-retrain-1".into(),
        outcome: AttemptOutcome::Running,
        drift_summary: "severity=high drifted_share=0.60 features=[amount:high(psi=0.412)]".into(),
        candidate_version: None,
        advisor: None,
    };
    let log = |r: &AttemptRecord| {
        write(
            RegistryOp::LogAttempt,
            None,
            &r.attempt_id.clone(),
            Some(&serde_json::to_string(r).unwrap()),
        )
    };
    registry
        .apply_write(&src, &none, &log(&record))
        .await
        .unwrap();
    record.outcome = AttemptOutcome::Succeeded;
    record.candidate_version = Some("2".into());
    registry
        .apply_write(&src, &none, &log(&record))
        .await
        .unwrap();
    registry
        .apply_write(&src, &none, &log(&record))
        .await
        .unwrap();
    let experiment = mlflow
        .get_experiment_by_name(&record.experiment)
        .await
        .unwrap();
    let runs = mlflow
        .search_runs(
            &experiment.experiment_id,
            &format!("tags.`mlrollout.io/attempt` = '{}'", record.attempt_id),
            10,
        )
        .await
        .unwrap();
    assert_eq!(runs.len(), 1, "one run per attempt");
    let run = mlflow.get_run(&runs[0].info.run_id).await.unwrap();
    assert_eq!(run.param("trigger"), Some("drift"));
    assert_eq!(run.param("job_name"), Some("fraud-retrain-1"));
    assert_eq!(run.tag("mlrollout.io/outcome"), Some("Succeeded"));
    assert_eq!(run.tag("mlrollout.io/candidate-version"), Some("2"));
    assert!(
        run.tag("mlrollout.io/drift")
            .unwrap()
            .contains("amount:high")
    );
    assert_eq!(run.info.status.to_string(), "FINISHED");
}

#[tokio::test]
async fn a_malformed_answer_is_its_own_error() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut stream in listener.incoming().flatten().take(4) {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = "<html>surprise</html>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let registry = MlflowRegistry::new(Duration::from_secs(5));
    let err = registry
        .resolve(
            &source(&format!("http://{addr}"), "m", "champion", None),
            &RegistryCredentials::None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Malformed(_)), "{err:?}");
    assert_eq!(err.reason(), Reason::RegistryMalformedResponse);
}

#[tokio::test]
async fn candidates_are_found_by_lineage_and_judged_by_run_metrics() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let uri = tokio::task::spawn_blocking(|| common::mlflow::mlflow_server().uri())
        .await
        .unwrap();
    let model = format!("lineage-{}", std::process::id());
    common::mlflow::train_version(&uri, &model); // v1: the champion
    // v2: registered by someone else (no lineage tag); v3: our attempt's Job.
    common::mlflow::train_version(&uri, &model);
    let out = std::process::Command::new(common::mlflow::python())
        .args([
            "tests/scripts/train_models.py",
            "--tracking-uri",
            &uri,
            "--model-name",
            &model,
        ])
        .args(["--lineage-tag", "mlrollout.io/attempt=abc12345-7"])
        .output()
        .expect("training script runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let registry = MlflowRegistry::new(Duration::from_secs(10));
    let none = RegistryCredentials::None;
    let src = source(&uri, &model, "champion", None);
    assert_eq!(
        registry
            .find_candidate(&src, &none, "abc12345-7")
            .await
            .unwrap()
            .as_deref(),
        Some("3"),
        "found by lineage, not as the newest or by someone else's version"
    );
    assert_eq!(
        registry
            .find_candidate(&src, &none, "abc12345-8")
            .await
            .unwrap(),
        None
    );
    let (candidate, champion) = registry
        .evaluation_metrics(&src, &none, "3", "1", "accuracy")
        .await
        .unwrap();
    assert!(
        candidate.is_some_and(|v| (0.0..=1.0).contains(&v)),
        "{candidate:?}"
    );
    assert!(
        champion.is_some_and(|v| (0.0..=1.0).contains(&v)),
        "{champion:?}"
    );
    let missing = registry
        .evaluation_metrics(&src, &none, "3", "1", "no_such_metric")
        .await
        .unwrap();
    assert_eq!(
        missing,
        (None, None),
        "a missing metric is absent, never zero"
    );
}
