//! The reconciler's registry view against a real MLflow server: alias, pinned version, and
//! errors a user can act on (missing model, missing alias, server down).

mod common;

use std::time::Duration;

use mlrollout::api::ModelSource;
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
        let out = std::process::Command::new(common::mlflow::python())
            .args([
                "tests/scripts/train_models.py",
                "--tracking-uri",
                &uri,
                "--model-name",
                &model,
            ])
            .output()
            .expect("training script runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
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
    assert_eq!(missing_alias.reason(), "AliasNotFound");

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
    assert_eq!(down.reason(), "RegistryUnavailable");
}
