//! The operator's data-source policy (`mlrollout run --data-allow-host/--data-dir`) on the drift
//! check it runs: each refused location is `DataSourceNotAllowed` and nothing is read — not a
//! local file of the operator's pod, not a host off the list, not a metadata or loopback
//! address (given as an address, reached by a redirect, or behind a name that resolves to one).
//! The only server dialled is this test's own, on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mlrollout::api::{ModelDeployment, Reason};
use mlrollout::core::lifecycle::DriftObservation;
use mlrollout::drift::check::{DriftCheck, DriftInputs, EngineDriftCheck};
use mlrollout::drift::data::policy::DataSourcePolicy;
use mlrollout::registry::RegistryCredentials;

fn resource(reference: &str, current: &str) -> ModelDeployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "fraud", "namespace": "ml"},
        "spec": {
            "model": {"trackingUri": "http://127.0.0.1:9", "name": "fraud"},
            "traffic": {"provider": "none"},
            "drift": {"reference": {"uri": reference, "format": "csv"},
                      "current": {"uri": current, "format": "csv"}}
        }
    }))
    .unwrap()
}

/// A loopback HTTP server: `/data.csv` is a small CSV, `/moved` redirects to `location`.
/// Counts the requests it gets.
fn server(location: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let n = conn.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let answer = if head.starts_with("GET /moved") {
                format!(
                    "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                )
            } else {
                let body = "amount\n1\n2\n3\n4\n5\n";
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/csv\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = conn.write_all(answer.as_bytes());
        }
    });
    (base, hits)
}

async fn check(policy: DataSourcePolicy, reference: &str, current: &str) -> DriftObservation {
    mlrollout::cli::install_crypto_provider();
    EngineDriftCheck::new()
        .with_policy(policy)
        .check(
            &resource(reference, current),
            DriftInputs::new(&RegistryCredentials::None),
        )
        .await
}

fn refused(observation: &DriftObservation) -> String {
    match observation {
        DriftObservation::Failed { reason, message } => {
            assert_eq!(*reason, Reason::DataSourceNotAllowed, "{message}");
            message.clone()
        }
        other => panic!("not refused: {other:?}"),
    }
}

/// The cluster's policy, with this test's loopback server allowed although it is loopback.
fn cluster_policy_with_test_server(hosts: &[&str]) -> DataSourcePolicy {
    let mut policy =
        DataSourcePolicy::cluster(hosts.iter().map(|h| (*h).to_string()).collect(), None);
    policy.exempt = vec!["127.0.0.1".parse::<IpAddr>().unwrap()];
    policy
}

#[tokio::test]
async fn the_operator_pods_own_files_are_never_read_in_the_cluster() {
    let (base, hits) = server("unused");
    let good = format!("{base}/data.csv");
    let policy = cluster_policy_with_test_server(&["127.0.0.1"]);
    for local in [
        "examples/data/current.csv",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "file:///etc/passwd",
    ] {
        let message = refused(&check(policy.clone(), &good, local).await);
        assert!(message.contains("--data-dir"), "{local}: {message}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "refused before anything was fetched"
    );
    // Under the data directory they are read.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cur.csv"), "amount\n1\n2\n3\n").unwrap();
    let mut policy = policy;
    policy.local = mlrollout::drift::data::policy::LocalFiles::Under(dir.path().to_path_buf());
    let current = dir.path().join("cur.csv").display().to_string();
    let observation = check(policy, &good, &current).await;
    assert!(
        matches!(observation, DriftObservation::Completed { .. }),
        "{observation:?}"
    );
}

#[tokio::test]
async fn hosts_off_the_list_and_internal_addresses_are_refused_unfetched() {
    let (base, hits) = server("unused");
    let good = format!("{base}/data.csv");
    // Listed host: read.
    let policy = cluster_policy_with_test_server(&["127.0.0.1"]);
    let observation = check(policy.clone(), &good, &good).await;
    assert!(
        matches!(observation, DriftObservation::Completed { .. }),
        "{observation:?}"
    );
    let before = hits.load(Ordering::SeqCst);
    // Not on the list (the same server under another name), metadata and loopback addresses
    // even when listed: refused, nothing fetched.
    let message = refused(
        &check(
            policy.clone(),
            &good,
            &good.replace("127.0.0.1", "localhost"),
        )
        .await,
    );
    assert!(message.contains("--data-allow-host"), "{message}");
    let strict = DataSourcePolicy::cluster(
        vec![
            "169.254.169.254".into(),
            "127.0.0.1".into(),
            "fd00:ec2::254".into(),
        ],
        None,
    );
    for uri in [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        good.as_str(),
    ] {
        let message = refused(&check(strict.clone(), &good, uri).await);
        assert!(message.contains("metadata"), "{uri}: {message}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn a_redirect_to_a_refused_address_is_not_followed() {
    let (base, hits) = server("http://169.254.169.254/latest/meta-data/iam/security-credentials/");
    let policy = cluster_policy_with_test_server(&["127.0.0.1", "169.254.169.254"]);
    let message = refused(
        &check(
            policy,
            &format!("{base}/data.csv"),
            &format!("{base}/moved"),
        )
        .await,
    );
    assert!(
        message.contains("redirected to http://169.254.169.254/") && message.contains("metadata"),
        "{message}"
    );
    // The reference and the redirecting request reached our server; nothing else was dialled.
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_at_connection() {
    // `localhost` is on the list, but every address it resolves to is loopback.
    let (base, hits) = server("unused");
    let policy = DataSourcePolicy::cluster(vec!["localhost".into()], None);
    let uri = base.replace("127.0.0.1", "localhost") + "/data.csv";
    let message = refused(&check(policy, &uri, &uri).await);
    assert!(message.contains("resolves only to loopback"), "{message}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_workstation_reads_local_files() {
    let observation = check(
        DataSourcePolicy::unrestricted(),
        "examples/data/reference.csv",
        "examples/data/current.csv",
    )
    .await;
    assert!(
        matches!(observation, DriftObservation::Completed { .. }),
        "{observation:?}"
    );
}
