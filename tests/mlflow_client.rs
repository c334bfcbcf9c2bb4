//! `mlrollout::mlflow` against a real MLflow server (started once for this binary by
//! `common::mlflow::mlflow_server()`), with model versions registered by
//! `tests/scripts/train_models.py` the way a retraining Job does it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs a real MLflow server and the test venv's Python: full suite only, `cargo test --features
// harness` (tests/run.sh turns it on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::mlflow::{mlflow_server, python};
use mlrollout::mlflow::{
    MlflowAuth, MlflowClient, MlflowError, ModelUri, ModelVersionSearch, RetryPolicy, RunStatus,
    model_version_uri,
};
use serde::Deserialize;

const LINEAGE_KEY: &str = "mlrollout.io/attempt";

/// The shared server's URI (start-up blocks for tens of seconds: keep it off the runtime).
async fn server_uri() -> String {
    tokio::task::spawn_blocking(|| mlflow_server().uri())
        .await
        .expect("mlflow server start-up panicked")
}

fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn client() -> MlflowClient {
    install_crypto();
    MlflowClient::new(
        &server_uri().await,
        MlflowAuth::None,
        Duration::from_secs(30),
    )
    .expect("client")
}

/// A model/experiment name no other test (or earlier run) uses.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("it-{prefix}-{}-{nanos:x}", std::process::id())
}

#[derive(Debug, Deserialize)]
struct Trained {
    run_id: String,
    version: String,
    accuracy: f64,
    f1: f64,
    model_uri: String,
}

impl Trained {
    fn version(&self) -> u64 {
        self.version.parse().expect("numeric version")
    }
}

fn train_script() -> PathBuf {
    // file!() is relative to the package root (absolute when the file lies outside it).
    let file = std::path::Path::new(file!());
    let this = if file.is_absolute() {
        file.to_path_buf()
    } else {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file)
    };
    let script = this
        .parent()
        .unwrap()
        .join("scripts")
        .join("train_models.py");
    assert!(script.exists(), "{} not found", script.display());
    script
}

/// Run train_models.py and parse its JSON line.
async fn train(
    tracking_uri: &str,
    model: &str,
    seed: u32,
    quality: f64,
    lineage: Option<&str>,
) -> Trained {
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg(train_script())
        .args(["--tracking-uri", tracking_uri, "--model-name", model])
        .args([
            "--seed",
            &seed.to_string(),
            "--quality",
            &quality.to_string(),
        ])
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .env_remove("MLFLOW_TRACKING_URI")
        .kill_on_drop(true);
    if let Some(attempt) = lineage {
        cmd.args(["--lineage-tag", &format!("{LINEAGE_KEY}={attempt}")]);
    }
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("train_models.py timed out")
        .expect("spawn train_models.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "train_models.py failed ({}):\n{stderr}",
        out.status
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one stdout line expected:\n{stdout}"
    );
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("bad JSON line {stdout:?}: {e}"))
}

#[tokio::test]
async fn registry_promotion_workflow() {
    let c = client().await;
    let uri = server_uri().await;
    let model = unique("registry");
    let attempt = unique("attempt");

    // Champion first, then the better challenger (tagged by its retraining attempt) and, at
    // the same time, an unrelated newer version: the candidate must be found by its tag.
    let champion = train(&uri, &model, 1, 0.3, None).await;
    assert_eq!(champion.version(), 1);
    let (challenger, decoy) = tokio::join!(
        train(&uri, &model, 2, 0.95, Some(&attempt)),
        train(&uri, &model, 3, 0.5, None),
    );
    assert!(
        challenger.accuracy > champion.accuracy,
        "challenger {challenger:?} should beat champion {champion:?}"
    );
    assert_eq!(
        challenger.model_uri,
        model_version_uri(&model, challenger.version())
    );

    // Registered model and versions.
    let rm = c.get_registered_model(&model).await.unwrap();
    assert_eq!(rm.name, model);
    assert!(rm.aliases.is_empty());
    let v1 = c.get_model_version(&model, 1).await.unwrap();
    assert_eq!(v1.run_id, champion.run_id);
    assert_eq!(v1.status, "READY");
    assert!(v1.source.starts_with("models:/"), "{}", v1.source);

    // Alias champion → v1, read back by alias and through a models:/ URI.
    c.set_alias(&model, "champion", 1).await.unwrap();
    c.set_alias(&model, "champion", 1).await.unwrap(); // idempotent
    let by_alias = c
        .get_model_version_by_alias(&model, "champion")
        .await
        .unwrap();
    assert_eq!(by_alias.version, 1);
    assert!(by_alias.has_alias("champion"));
    let resolved = c
        .resolve_model_uri(&ModelUri::parse(&format!("models:/{model}@champion")).unwrap())
        .await
        .unwrap();
    assert_eq!(resolved.version, 1);

    // Search all versions (newest first, following pages of one) and find the candidate.
    let mut search = ModelVersionSearch::versions_of(&model).unwrap();
    search.max_results = Some(1);
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let page = c
            .search_model_versions(&search, token.as_deref())
            .await
            .unwrap();
        assert!(page.model_versions.len() <= 1);
        seen.extend(page.model_versions.iter().map(|v| v.version));
        if page.next_page_token.is_empty() {
            break;
        }
        token = Some(page.next_page_token);
    }
    assert_eq!(seen, vec![3, 2, 1], "pages in version order, newest first");
    let all = c.list_model_versions(&model).await.unwrap();
    assert_eq!(
        all.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![3, 2, 1]
    );
    let candidate = c
        .find_model_version_by_tag(&model, LINEAGE_KEY, &attempt)
        .await
        .unwrap()
        .expect("candidate by lineage tag");
    assert_eq!(candidate.version, challenger.version());
    assert_eq!(candidate.run_id, challenger.run_id);
    assert_ne!(decoy.version(), candidate.version);
    assert!(
        c.find_model_version_by_tag(&model, LINEAGE_KEY, "no-such-attempt")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        c.list_model_versions(&unique("no-model"))
            .await
            .unwrap()
            .is_empty()
    );

    // Metrics of the candidate's run (latest value per key), params and tags.
    let run = c.get_run(&candidate.run_id).await.unwrap();
    assert_eq!(run.info.status, RunStatus::Finished);
    let acc = run.metric("accuracy").expect("accuracy metric");
    assert!(
        (acc - challenger.accuracy).abs() < 1e-9,
        "{acc} vs {challenger:?}"
    );
    assert!((run.metric("f1").unwrap() - challenger.f1).abs() < 1e-9);
    assert_eq!(run.param("seed"), Some("2"));
    assert_eq!(run.tag(LINEAGE_KEY), Some(attempt.as_str()));

    // Challenger alias, then promote: previous → old champion, champion → candidate,
    // challenger removed (twice: deleting an absent alias is a success).
    let cv = candidate.version;
    c.set_alias(&model, "challenger", cv).await.unwrap();
    assert_eq!(
        c.get_model_version_by_alias(&model, "challenger")
            .await
            .unwrap()
            .version,
        cv
    );
    c.set_alias(&model, "previous", 1).await.unwrap();
    c.set_alias(&model, "champion", cv).await.unwrap();
    c.delete_alias(&model, "challenger").await.unwrap();
    c.delete_alias(&model, "challenger").await.unwrap();
    let err = c
        .get_model_version_by_alias(&model, "challenger")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MlflowError::AliasNotFound { model: m, alias } if *m == model && alias == "challenger"),
        "{err:?}"
    );
    assert_eq!(err.category(), "mlflow_alias_not_found");
    let rm = c.get_registered_model(&model).await.unwrap();
    assert_eq!(rm.aliases.get("champion"), Some(&cv));
    assert_eq!(rm.aliases.get("previous"), Some(&1));
    assert_eq!(rm.aliases.len(), 2, "{:?}", rm.aliases);

    // Version tags (overwrite is fine).
    c.set_model_version_tag(&model, cv, "mlrollout.io/promoted-by", "test")
        .await
        .unwrap();
    c.set_model_version_tag(&model, cv, "mlrollout.io/verdict", "pending")
        .await
        .unwrap();
    c.set_model_version_tag(&model, cv, "mlrollout.io/verdict", "promoted")
        .await
        .unwrap();
    let v = c.get_model_version(&model, cv).await.unwrap();
    assert_eq!(v.tag("mlrollout.io/verdict"), Some("promoted"));
    assert_eq!(v.tag("mlrollout.io/promoted-by"), Some("test"));
    assert_eq!(v.tag(LINEAGE_KEY), Some(attempt.as_str()));
    assert!(v.has_alias("champion"));

    // Artifacts: a run artifact (runs:/ and the resolved mlflow-artifacts:/ URI) and the
    // model's MLmodel file through models:/ URIs.
    let summary_uri = format!("runs:/{}/training_summary.json", challenger.run_id);
    let bytes = c.download_artifact(&summary_uri).await.unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(summary["accuracy"].as_f64(), Some(challenger.accuracy));
    let direct = format!("{}/training_summary.json", run.info.artifact_uri);
    assert!(direct.starts_with("mlflow-artifacts:/"), "{direct}");
    assert_eq!(c.download_artifact(&direct).await.unwrap(), bytes);
    let listing = c
        .list_artifacts(&format!("runs:/{}", challenger.run_id))
        .await
        .unwrap();
    assert!(
        listing
            .iter()
            .any(|f| f.path == "training_summary.json" && !f.is_dir && f.file_size > 0),
        "{listing:?}"
    );
    let mlmodel = c
        .download_artifact(&format!("models:/{model}@champion/MLmodel"))
        .await
        .unwrap();
    let mlmodel = String::from_utf8(mlmodel).unwrap();
    assert!(mlmodel.contains("sklearn"), "{mlmodel}");
    assert_eq!(
        c.download_artifact(&format!("models:/{model}/{cv}/MLmodel"))
            .await
            .unwrap(),
        mlmodel.as_bytes()
    );
    let download_uri = c.get_model_version_download_uri(&model, cv).await.unwrap();
    assert!(
        download_uri.starts_with("mlflow-artifacts:/"),
        "{download_uri}"
    );
    let err = c
        .download_artifact(&format!("runs:/{}/no-such-file.txt", challenger.run_id))
        .await
        .unwrap_err();
    assert!(matches!(err, MlflowError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn tracking_run_lifecycle() {
    let c = client().await;
    let exp_name = unique("exp");

    let err = c.get_experiment_by_name(&exp_name).await.unwrap_err();
    assert_eq!(err.category(), "mlflow_not_found", "{err:?}");
    let id = c.get_or_create_experiment(&exp_name).await.unwrap();
    assert_eq!(c.get_or_create_experiment(&exp_name).await.unwrap(), id);
    let err = c.create_experiment(&exp_name, None).await.unwrap_err();
    assert_eq!(err.error_code(), Some("RESOURCE_ALREADY_EXISTS"), "{err:?}");
    let exp = c.get_experiment_by_name(&exp_name).await.unwrap();
    assert_eq!(exp.experiment_id, id);
    assert_eq!(exp.lifecycle_stage, "active");

    let run = c
        .create_run(&id, Some("shadow-eval"), &[("mlrollout.io/rollout", "r1")])
        .await
        .unwrap();
    let run_id = run.id().to_owned();
    assert_eq!(run.info.status, RunStatus::Running);
    assert_eq!(run.info.experiment_id, id);
    assert_eq!(run.tag("mlrollout.io/rollout"), Some("r1"));

    for (step, value) in [(0, 0.5), (1, 0.7), (2, 0.9)] {
        c.log_metric(&run_id, "agreement", value, step)
            .await
            .unwrap();
    }
    c.log_metric(&run_id, "psi", f64::NAN, 0).await.unwrap();
    c.log_param(&run_id, "traffic_percent", "20").await.unwrap();
    c.log_param(&run_id, "traffic_percent", "20").await.unwrap(); // same value: fine
    let err = c
        .log_param(&run_id, "traffic_percent", "50")
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), Some("INVALID_PARAMETER_VALUE"), "{err:?}");
    assert!(!err.is_transient());
    c.set_run_tag(&run_id, "mlrollout.io/phase", "shadow")
        .await
        .unwrap();
    c.set_run_tag(&run_id, "mlrollout.io/phase", "canary")
        .await
        .unwrap();

    let info = c.end_run(&run_id, RunStatus::Finished).await.unwrap();
    assert_eq!(info.status, RunStatus::Finished);
    assert!(
        info.end_time >= info.start_time && info.end_time > 0,
        "{info:?}"
    );

    let back = c.get_run(&run_id).await.unwrap();
    assert_eq!(back.info.status, RunStatus::Finished);
    assert_eq!(back.info.run_name, "shadow-eval");
    assert_eq!(back.metric("agreement"), Some(0.9), "latest value per key");
    assert_eq!(back.data.metrics["agreement"].step, 2);
    assert!(back.metric("psi").unwrap().is_nan());
    assert_eq!(back.param("traffic_percent"), Some("20"));
    assert_eq!(back.tag("mlrollout.io/phase"), Some("canary"));
    assert!(back.info.artifact_uri.starts_with("mlflow-artifacts:/"));

    let killed = c.create_run(&id, None, &[]).await.unwrap();
    let info = c.end_run(killed.id(), RunStatus::Killed).await.unwrap();
    assert_eq!(info.status, RunStatus::Killed);
    assert!(c.end_run(killed.id(), RunStatus::Running).await.is_err());
}

#[tokio::test]
async fn errors_against_the_real_server() {
    let c = client().await;
    let uri = server_uri().await;
    let model = unique("errors");

    let err = c.get_registered_model(&model).await.unwrap_err();
    assert!(
        matches!(&err, MlflowError::NotFound { what, .. } if what.contains(&model)),
        "{err:?}"
    );
    assert_eq!(err.category(), "mlflow_not_found");
    assert!(!err.is_transient());
    // Alias lookup on a missing model: NotFound, not AliasNotFound.
    let err = c
        .get_model_version_by_alias(&model, "champion")
        .await
        .unwrap_err();
    assert!(matches!(err, MlflowError::NotFound { .. }), "{err:?}");

    c.create_registered_model(&model, Some("errors test"))
        .await
        .unwrap();
    let err = c.create_registered_model(&model, None).await.unwrap_err();
    assert_eq!(err.error_code(), Some("RESOURCE_ALREADY_EXISTS"), "{err:?}");
    // Alias lookup on an existing model without that alias: MLflow says 400.
    let err = c
        .get_model_version_by_alias(&model, "champion")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MlflowError::AliasNotFound { alias, .. } if alias == "champion"),
        "{err:?}"
    );
    // Deleting an unset alias is fine; on a missing model it is NotFound.
    c.delete_alias(&model, "champion").await.unwrap();
    let err = c
        .delete_alias(&unique("none"), "champion")
        .await
        .unwrap_err();
    assert!(matches!(err, MlflowError::NotFound { .. }), "{err:?}");
    let err = c.get_model_version(&model, 42).await.unwrap_err();
    assert!(matches!(err, MlflowError::NotFound { .. }), "{err:?}");
    let err = c.set_alias(&model, "champion", 42).await.unwrap_err();
    assert!(matches!(err, MlflowError::NotFound { .. }), "{err:?}");
    let err = c.set_alias(&model, "latest", 1).await.unwrap_err();
    assert_eq!(
        err.category(),
        "mlflow_invalid_uri",
        "reserved alias caught locally"
    );
    let err = c
        .get_run("0123456789abcdef0123456789abcdef")
        .await
        .unwrap_err();
    assert!(matches!(err, MlflowError::NotFound { .. }), "{err:?}");
    let err = c
        .download_artifact("mlflow-artifacts:/0/nothing/artifacts/x.bin")
        .await
        .unwrap_err();
    assert!(matches!(err, MlflowError::NotFound { .. }), "{err:?}");

    // A Host header the server does not allow → 403 Forbidden with the --allowed-hosts hint.
    let foreign = MlflowClient::new(&uri, MlflowAuth::None, Duration::from_secs(30))
        .unwrap()
        .with_host_header("mlflow.models.svc.cluster.local:5000")
        .unwrap();
    let err = foreign.get_registered_model(&model).await.unwrap_err();
    let MlflowError::Forbidden { message } = &err else {
        panic!("expected Forbidden, got {err:?}")
    };
    assert!(message.contains("--allowed-hosts"), "{message}");
    assert!(
        message.contains("mlflow.models.svc.cluster.local:5000"),
        "{message}"
    );
    assert_eq!(err.category(), "mlflow_forbidden");
    assert!(!err.is_transient());
    // ... and writes are refused the same way (not retried).
    let err = foreign.set_alias(&model, "champion", 1).await.unwrap_err();
    assert!(matches!(err, MlflowError::Forbidden { .. }), "{err:?}");

    // Nothing listening → Unavailable (transient; retried by writes, then reported).
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let down = MlflowClient::new(
        &format!("http://127.0.0.1:{closed_port}"),
        MlflowAuth::None,
        Duration::from_secs(5),
    )
    .unwrap()
    .with_retry_policy(RetryPolicy {
        attempts: 2,
        base: Duration::from_millis(10),
        max: Duration::from_millis(10),
    });
    let err = down.get_registered_model(&model).await.unwrap_err();
    assert!(matches!(err, MlflowError::Unavailable { .. }), "{err:?}");
    assert_eq!(err.category(), "mlflow_unavailable");
    assert!(err.is_transient());
    let err = down.set_alias(&model, "champion", 1).await.unwrap_err();
    assert_eq!(err.category(), "mlflow_unavailable");
}

#[tokio::test]
async fn malformed_json_is_reported() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    install_crypto();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        for _ in 0..2 {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let body = "{\"registered_model\": <html>garbage";
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(resp.as_bytes()).await.unwrap();
            let _ = sock.shutdown().await;
        }
    });
    let c = MlflowClient::new(
        &format!("http://127.0.0.1:{port}"),
        MlflowAuth::Bearer("t".into()),
        Duration::from_secs(5),
    )
    .unwrap();
    let err = c.get_registered_model("m").await.unwrap_err();
    let MlflowError::MalformedResponse { detail } = &err else {
        panic!("expected MalformedResponse, got {err:?}")
    };
    assert!(detail.contains("garbage"), "{detail}");
    assert_eq!(err.category(), "mlflow_malformed_response");
    assert!(!err.is_transient());
    // Writes do not retry a malformed answer either (the server is answering, just oddly).
    let err = c.set_alias("m", "champion", 1).await.unwrap_err();
    assert_eq!(err.category(), "mlflow_malformed_response");
    server.await.unwrap();
}
