//! Drift data in an object store, against a real S3-compatible server (s3s-fs from crates.io,
//! `tests/common/s3.rs`; SigV4 checked on every request): reference and current from `s3://`
//! with credentials from a Secret on the real control plane (the operator in-process), a wrong
//! key, a missing Secret and a refused bucket as conditions, a prefix of capture windows named
//! per the proxy's layout read as one dataset with `lastRows` / `lastDuration`, the store's
//! errors named (a missing object, a closed endpoint, the byte cap), and `mlrollout drift` on
//! an `s3://` prefix. The only addresses dialled are this test's own servers, on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the S3 server and the control plane: full suite only, `cargo test --features harness`.
#![cfg(feature = "harness")]

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use common::cluster::{self, create_secret};
use common::operator::Operator;
use common::s3::S3Server;
use kube::api::{Api, PostParams};
use mlrollout::api::{ModelDeployment, Reason};
use mlrollout::controller::{Context, WatchScope};
use mlrollout::core::lifecycle::DriftObservation;
use mlrollout::drift::check::{DriftCheck, DriftInputs, EngineDriftCheck};
use mlrollout::drift::data::policy::DataSourcePolicy;
use mlrollout::metrics::Metrics;
use mlrollout::registry::RegistryCredentials;
use mlrollout::registry::memory::InMemoryRegistry;
use mlrollout::storage::StoreOptions;
use mlrollout::storage::layout::{variant_prefix, window_file_name};
use parquet::arrow::ArrowWriter;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The operator's data-source policy in the cluster, with the test's loopback S3 server let
/// through (the `exempt` hatch no flag sets) and two buckets allowed.
fn cluster_policy() -> DataSourcePolicy {
    let mut policy = DataSourcePolicy::cluster(vec![], None)
        .with_buckets(vec!["data".into(), "captures".into()]);
    policy.exempt = vec!["127.0.0.1".parse::<IpAddr>().unwrap()];
    policy
}

/// A capture window of `rows` rows started `minutes_ago`: the proxy's bookkeeping columns
/// and the features of the bundled examples, `amount` shifted by `shift`.
fn window(rows: usize, shift: f64, seed: u64, minutes_ago: i64) -> (String, Vec<u8>) {
    let start = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(minutes_ago);
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut uniform = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 11) as f64) / ((1u64 << 53) as f64)
    };
    // The examples' amounts are around 30–200; a sum of uniforms is close enough to normal.
    let amount: Vec<f64> = (0..rows)
        .map(|_| 60.0 + 40.0 * ((0..6).map(|_| uniform()).sum::<f64>() - 3.0) + shift)
        .collect();
    let ids: Vec<String> = (0..rows).map(|i| format!("{seed}-{i}")).collect();
    let batch = RecordBatch::try_from_iter([
        ("request_id", Arc::new(StringArray::from(ids)) as ArrayRef),
        (
            "timestamp",
            Arc::new(Int64Array::from(vec![start.as_millisecond(); rows])) as ArrayRef,
        ),
        (
            "model_version",
            Arc::new(StringArray::from(vec!["3"; rows])) as ArrayRef,
        ),
        ("amount", Arc::new(Float64Array::from(amount)) as ArrayRef),
        (
            "prediction",
            Arc::new(Float64Array::from(vec![0.2; rows])) as ArrayRef,
        ),
    ])
    .unwrap();
    let mut bytes = Vec::new();
    let mut w = ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    (window_file_name(start, "m-stable-7d9f", seed), bytes)
}

/// The reference as Parquet: the same features, unshifted.
fn reference_window() -> Vec<u8> {
    window(4000, 0.0, 99, 600).1
}

/// A server with bucket `data` (the bundled examples as CSV, and a Parquet reference) and
/// bucket `captures` (three windows of the stable variant of `ns/fraud`: one old and shifted,
/// two recent and like the reference, 1000 rows each).
async fn seeded_server(ns: &str) -> S3Server {
    let s3 = S3Server::start();
    s3.create_bucket("data").await;
    s3.create_bucket("captures").await;
    s3.create_bucket("other").await;
    for name in ["reference.csv", "current.csv"] {
        let bytes = std::fs::read(root().join("examples/data").join(name)).unwrap();
        s3.put(&format!("s3://data/{name}"), bytes).await;
    }
    s3.put("s3://data/reference.parquet", reference_window())
        .await;
    s3.put("s3://other/current.csv", "amount\n1\n2\n").await;
    let prefix = variant_prefix("s3://captures/proxy", ns, "fraud", "stable");
    for (rows, shift, seed, minutes_ago) in
        [(1000, 80.0, 1, 180), (1000, 0.0, 2, 40), (1000, 0.0, 3, 20)]
    {
        let (name, bytes) = window(rows, shift, seed, minutes_ago);
        s3.put(&format!("{prefix}/{name}"), bytes).await;
    }
    s3
}

fn resource(name: &str, secret: &str, endpoint: &str, drift: serde_json::Value) -> ModelDeployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"trackingUri": "http://127.0.0.1:9", "name": "fraud"},
            "traffic": {"provider": "none"},
            "storage": {"secretRef": {"name": secret}, "endpoint": endpoint, "region": "us-east-1"},
            "drift": drift,
        }
    }))
    .unwrap()
}

/// `(status, reason, message)` of the DriftChecked condition, once there is one.
fn drift_checked(m: &ModelDeployment) -> Option<(String, String, String)> {
    let c = m
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "DriftChecked")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_reads_s3_with_credentials_from_a_secret() {
    common::http::install_crypto_provider();
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "object-storage").await;
    let _guard = cluster::NamespaceGuard(ns.clone());
    let s3 = seeded_server(&ns).await;
    let endpoint = s3.endpoint();
    create_secret(&client, &ns, "s3", &s3.secret_data()).await;
    create_secret(
        &client,
        &ns,
        "s3-wrong",
        &[
            ("AWS_ACCESS_KEY_ID", s3.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", "not-the-secret".into()),
        ],
    )
    .await;
    // A Secret whose keys are not the object-store settings' names.
    create_secret(
        &client,
        &ns,
        "s3-other-names",
        &[
            ("accessKey", s3.access_key.clone()),
            ("secretKey", s3.secret_key.clone()),
        ],
    )
    .await;
    let registry = Arc::new(InMemoryRegistry::new());
    registry.register("fraud", 3, &[], &[]);
    registry.set_alias("fraud", "champion", 3);
    let ctx = Context::new(client.clone(), registry, Metrics::default()).with_drift(Arc::new(
        EngineDriftCheck::new().with_policy(cluster_policy()),
    ));
    let operator = Operator::run(ctx, WatchScope::Namespace(ns.clone()));

    let examples = serde_json::json!({
        "reference": {"uri": "s3://data/reference.csv"},
        "current": {"uri": "s3://data/current.csv"},
    });
    let captures = variant_prefix("s3://captures/proxy", &ns, "fraud", "stable");
    let last = |selection: serde_json::Value| {
        let mut current = serde_json::json!({"uri": format!("{captures}/")});
        current
            .as_object_mut()
            .unwrap()
            .extend(selection.as_object().unwrap().clone());
        serde_json::json!({"reference": {"uri": "s3://data/reference.parquet"}, "current": current})
    };
    let resources = [
        resource("examples", "s3", &endpoint, examples.clone()),
        resource("wrong-key", "s3-wrong", &endpoint, examples.clone()),
        resource("no-secret", "absent", &endpoint, examples.clone()),
        resource("no-keys", "s3-other-names", &endpoint, examples),
        resource(
            "refused",
            "s3",
            &endpoint,
            serde_json::json!({
                "reference": {"uri": "s3://data/reference.csv"},
                "current": {"uri": "s3://other/current.csv"},
            }),
        ),
        resource("windows", "s3", &endpoint, last(serde_json::json!({}))),
        resource(
            "last-rows",
            "s3",
            &endpoint,
            last(serde_json::json!({"lastRows": 1500})),
        ),
        resource(
            "last-hour",
            "s3",
            &endpoint,
            last(serde_json::json!({"lastDuration": "1h"})),
        ),
    ];
    let mdeps: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    for r in &resources {
        mdeps.create(&PostParams::default(), r).await.unwrap();
    }
    let names: Vec<String> = resources
        .iter()
        .map(|r| r.metadata.name.clone().unwrap())
        .collect();
    let checked: BTreeMap<String, ModelDeployment> = cluster::eventually(
        "every resource drift-checked",
        Duration::from_secs(90),
        || async {
            let mut all = BTreeMap::new();
            for name in &names {
                let m = mdeps.get(name).await.ok()?;
                drift_checked(&m)?;
                all.insert(name.clone(), m);
            }
            Some(all)
        },
    )
    .await;
    let condition = |name: &str| drift_checked(&checked[name]).unwrap();
    let summary = |name: &str| {
        let (status, reason, message) = condition(name);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "Checked"),
            "{name}: {message}\n{}",
            s3.log_tail(20)
        );
        checked[name]
            .status
            .as_ref()
            .unwrap()
            .drift
            .clone()
            .unwrap()
    };

    // The bundled examples from S3: the same verdict as from local files.
    let examples = summary("examples");
    assert_eq!(examples.reference_rows, 5000);
    assert_eq!(examples.current_rows, 5000);
    assert_eq!(examples.features[0].name, "amount");
    assert_eq!(examples.severity, mlrollout::api::Severity::High);

    // A wrong secret key: the server refuses the signature, and the condition says so.
    let (status, reason, message) = condition("wrong-key");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "DataAccessDenied")
    );
    assert!(message.contains("access denied"), "{message}");
    assert!(message.contains("SignatureDoesNotMatch"), "{message}");
    assert!(
        !message.contains("not-the-secret") && !message.contains('\n') && message.len() < 600,
        "short, one line, no secret: {message}"
    );
    // A Secret that is not there.
    let (status, reason, message) = condition("no-secret");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "SecretNotFound")
    );
    assert!(message.contains("absent"), "{message}");
    // A Secret without any of the keys: named, not read as anonymous access.
    let (status, reason, message) = condition("no-keys");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "SecretKeyMissing")
    );
    assert!(message.contains("AWS_ACCESS_KEY_ID"), "{message}");
    // A bucket off the operator's list: refused before anything is read.
    let (status, reason, message) = condition("refused");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "DataSourceNotAllowed")
    );
    assert!(message.contains("--data-allow-bucket"), "{message}");

    // A prefix of windows is one dataset; the old shifted window drifts it...
    let windows = summary("windows");
    assert_eq!(windows.current_rows, 3000);
    assert_eq!(windows.reference_rows, 4000);
    let names: Vec<&str> = windows.features.iter().map(|f| f.name.as_str()).collect();
    assert!(
        names
            .iter()
            .all(|n| !["request_id", "timestamp", "model_version"].contains(n)),
        "bookkeeping columns are no features: {names:?}"
    );
    assert!(windows.drift_detected, "{windows:?}");
    // ...the newest rows and the last hour leave it out.
    for name in ["last-rows", "last-hour"] {
        let recent = summary(name);
        assert_eq!(
            recent.current_rows,
            if name == "last-rows" { 1500 } else { 2000 },
            "{name}"
        );
        assert!(!recent.drift_detected, "{name}: {recent:?}");
    }

    operator.stop().await;
    cluster::delete_namespace(&client, &ns).await;
}

/// A check run by the engine the operator uses, with `storage`, on one resource.
async fn check(
    policy: DataSourcePolicy,
    limits: (u64, Duration),
    storage: &StoreOptions,
    reference: &str,
    current: &str,
) -> DriftObservation {
    let resource: ModelDeployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "fraud", "namespace": "ml"},
        "spec": {
            "model": {"trackingUri": "http://127.0.0.1:9", "name": "fraud"},
            "traffic": {"provider": "none"},
            "drift": {"reference": {"uri": reference}, "current": {"uri": current}}
        }
    }))
    .unwrap();
    let credentials = RegistryCredentials::None;
    let mut inputs = DriftInputs::new(&credentials);
    inputs.storage = storage;
    EngineDriftCheck::with_limits(limits.0, limits.1)
        .with_policy(policy)
        .check(&resource, inputs)
        .await
}

fn failure(observation: DriftObservation) -> (Reason, String) {
    match observation {
        DriftObservation::Failed { reason, message } => (reason, message),
        other => panic!("not a failure: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_errors_are_named_and_bounded() {
    common::http::install_crypto_provider();
    let s3 = seeded_server("ml").await;
    let options = s3.options();
    let limits = (1 << 30, Duration::from_secs(20));
    let reference = "s3://data/reference.csv";

    let (reason, message) = failure(
        check(
            cluster_policy(),
            limits,
            &options,
            reference,
            "s3://data/nope.csv",
        )
        .await,
    );
    assert_eq!(reason, Reason::DataNotFound, "{message}");
    assert!(message.contains("s3://data/nope.csv"), "{message}");

    // The byte cap holds for objects: the current CSV is about 180 kB.
    let (reason, message) = failure(
        check(
            cluster_policy(),
            (64 << 10, limits.1),
            &options,
            "s3://data/reference.parquet",
            "s3://data/current.csv",
        )
        .await,
    );
    assert_eq!(reason, Reason::DataTooLarge, "{message}");

    // An endpoint where nothing listens: unreachable, quickly, in one short line.
    let closed = common::http::free_port();
    let nowhere = StoreOptions::from_parts(
        s3.secret_data(),
        Some(&format!("http://127.0.0.1:{closed}")),
        Some("us-east-1"),
    );
    let started = std::time::Instant::now();
    let (reason, message) = failure(
        check(
            cluster_policy(),
            limits,
            &nowhere,
            reference,
            "s3://data/current.csv",
        )
        .await,
    );
    assert_eq!(reason, Reason::DataUnreachable, "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(!message.contains('\n') && message.len() < 600, "{message}");

    // An endpoint that accepts and never answers: the time limit, not a hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let _accepting = std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(8).collect();
        std::thread::sleep(Duration::from_secs(30));
        drop(held);
    });
    let hanging = StoreOptions::from_parts(
        s3.secret_data(),
        Some(&format!("http://127.0.0.1:{silent_port}")),
        Some("us-east-1"),
    );
    let started = std::time::Instant::now();
    let (reason, message) = failure(
        check(
            cluster_policy(),
            (limits.0, Duration::from_secs(2)),
            &hanging,
            reference,
            "s3://data/current.csv",
        )
        .await,
    );
    assert_eq!(reason, Reason::DataTimedOut, "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // Without the test's exemption the loopback endpoint itself is refused.
    let strict = DataSourcePolicy::cluster(vec![], None);
    let (reason, message) = failure(
        check(
            strict.clone(),
            limits,
            &options,
            reference,
            "s3://data/current.csv",
        )
        .await,
    );
    assert_eq!(reason, Reason::DataSourceNotAllowed, "{message}");
    // ...and so is a name that resolves to it (the client's resolver asks the policy).
    let by_name = StoreOptions::from_parts(
        s3.secret_data(),
        Some(&format!("http://localhost:{}", s3.port())),
        Some("us-east-1"),
    );
    let (reason, message) =
        failure(check(strict, limits, &by_name, reference, "s3://data/current.csv").await);
    assert_eq!(reason, Reason::DataSourceNotAllowed, "{message}");
    assert!(message.contains("loopback"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlrollout_drift_reads_an_s3_prefix() {
    common::http::install_crypto_provider();
    let s3 = seeded_server("ml").await;
    let prefix = format!(
        "{}/",
        variant_prefix("s3://captures/proxy", "ml", "fraud", "stable")
    );
    let run_on = |current: &str, extra: &[&str], env: &[(&str, String)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mlrollout"));
        cmd.args(["drift", "--output", "json"])
            .args([
                "--reference",
                "s3://data/reference.parquet",
                "--current",
                current,
            ])
            .args(["--storage-endpoint", &s3.endpoint()])
            .args(extra)
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("MLFLOW_TRACKING_URI");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let run = |extra: &[&str], env: &[(&str, String)]| run_on(&prefix, extra, env);
    let json = |o: &std::process::Output| -> serde_json::Value {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let all = json(&run(&[], &s3.env()));
    assert_eq!(all["current_rows"], 3000);
    assert_eq!(all["drift_detected"], true);
    let newest = json(&run(&["--last-rows", "1000"], &s3.env()));
    assert_eq!(newest["current_rows"], 1000);
    assert_eq!(newest["drift_detected"], false);
    let hour = json(&run(&["--last-duration", "1h"], &s3.env()));
    assert_eq!(hour["current_rows"], 2000);
    // A glob of the prefix, and the newest rows of one object.
    let glob = format!("{prefix}*_000002.parquet");
    let one = json(&run_on(&glob, &[], &s3.env()));
    assert_eq!(one["current_rows"], 1000);
    let rows = json(&run_on(
        "s3://data/reference.parquet",
        &["--last-rows", "100"],
        &s3.env(),
    ));
    assert_eq!(rows["current_rows"], 100);

    let mut wrong = s3.env();
    wrong[1].1 = "not-the-secret".into();
    let o = run(&[], &wrong);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("access denied"), "{err}");
}
