//! The control-plane harness itself (tests/harness/cluster.sh): what it starts is a real API
//! server with RBAC and our CRDs; a component that fails or hangs at startup is named in one
//! line within a deadline; `down` stops exactly what `up` started.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane (it tests tests/harness/cluster.sh itself): full suite only, `cargo test
// --features harness` (tests/run.sh turns it on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;

use common::cluster::cluster;

fn cluster_sh() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/harness/cluster.sh")
}

/// A bin folder with the real binaries, except `broken`, which is replaced by `script`.
fn bin_with(broken: &str, script: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&cluster().bin).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name.to_string_lossy() != broken {
            std::os::unix::fs::symlink(entry.path(), dir.path().join(&name)).unwrap();
        }
    }
    let fake = dir.path().join(broken);
    std::fs::write(&fake, format!("#!/bin/sh\n{script}\n")).unwrap();
    let mut perms = std::fs::metadata(&fake).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&fake, perms).unwrap();
    dir
}

struct Up {
    success: bool,
    stderr: String,
    took: Duration,
}

fn up(dir: &Path, bin: Option<&Path>, start_timeout: Option<&str>) -> Up {
    let mut command = Command::new("bash");
    command
        .arg(cluster_sh())
        .args(["up", "--control-plane-only", "--dir"])
        .arg(dir)
        .stdin(Stdio::null());
    if let Some(bin) = bin {
        command.env("MLROLLOUT_CONTROLPLANE_BIN", bin);
    }
    if let Some(timeout) = start_timeout {
        command.env("MLROLLOUT_CLUSTER_START_TIMEOUT", timeout);
    }
    let started = Instant::now();
    let output = command.output().expect("bash runs cluster.sh");
    Up {
        success: output.status.success(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        took: started.elapsed(),
    }
}

fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains("error:")).collect()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn pids(dir: &Path) -> Vec<(String, u32)> {
    read_pids(&dir.join("pids"))
}

/// What a `down` (or a failed `up`) stopped.
fn stopped(dir: &Path) -> Vec<(String, u32)> {
    read_pids(&dir.join("pids.stopped"))
}

fn read_pids(path: &Path) -> Vec<(String, u32)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (name, pid) = l.split_once(' ')?;
            Some((name.to_string(), pid.trim().parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn the_harness_runs_a_real_api_server_with_rbac_and_our_crds() {
    let client = common::cluster::client().await;
    let version = client.apiserver_version().await.expect("version");
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "37")
    );
    assert!(version.git_version.starts_with("v1.37."), "{version:?}");

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in [
        "modeldeployments.mlrollout.io",
        "httproutes.gateway.networking.k8s.io",
        "gateways.gateway.networking.k8s.io",
        "virtualservices.networking.istio.io",
        "inferencepools.inference.networking.k8s.io",
    ] {
        let crd = crds
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{name} is not established");
    }

    // RBAC is on: a user with no bindings is refused.
    let nobody = cluster().client_as("nobody", &[]).await;
    let refused = Api::<CustomResourceDefinition>::all(nobody)
        .list(&Default::default())
        .await
        .expect_err("an unbound user cannot list CRDs");
    match refused {
        kube::Error::Api(status) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403, got {other}"),
    }
}

#[test]
fn a_component_that_exits_at_startup_is_named_with_its_log_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bin = bin_with(
        "kube-apiserver",
        "echo 'flag provided but not defined: --boom' >&2; exit 1",
    );
    let result = up(dir.path(), Some(bin.path()), None);
    assert!(!result.success, "{}", result.stderr);
    let errors = error_lines(&result.stderr);
    assert_eq!(errors.len(), 1, "{}", result.stderr);
    let log = dir.path().join("logs/kube-apiserver.log");
    assert!(
        errors[0].contains("kube-apiserver exited during startup")
            && errors[0].contains(&log.display().to_string())
            && errors[0].contains("--boom"),
        "{}",
        errors[0]
    );
    assert!(result.took < Duration::from_secs(60), "{:?}", result.took);
    let stopped = stopped(dir.path());
    assert!(
        stopped.iter().any(|(name, _)| name == "etcd"),
        "{stopped:?}"
    );
    for (name, pid) in stopped {
        assert!(!alive(pid), "{name} ({pid}) left running");
    }
}

#[test]
fn a_component_that_never_gets_ready_is_named_after_the_deadline_and_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let bin = bin_with("kube-apiserver", "exec sleep 600");
    let result = up(dir.path(), Some(bin.path()), Some("3"));
    assert!(!result.success, "{}", result.stderr);
    let errors = error_lines(&result.stderr);
    assert_eq!(errors.len(), 1, "{}", result.stderr);
    assert!(
        errors[0].contains("kube-apiserver not ready within 3s")
            && errors[0].contains("logs/kube-apiserver.log"),
        "{}",
        errors[0]
    );
    assert!(result.took < Duration::from_secs(30), "{:?}", result.took);
    // Everything it had started (etcd and the hanging "apiserver") is gone.
    let stopped = stopped(dir.path());
    let names: Vec<&str> = stopped.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["etcd", "kube-apiserver"]);
    for (name, pid) in &stopped {
        assert!(!alive(*pid), "{name} ({pid}) left running");
    }
}

#[test]
fn down_stops_exactly_what_up_started() {
    let bystander = Command::new("sleep").arg("300").spawn().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let result = up(dir.path(), Some(&cluster().bin), None);
    assert!(result.success, "{}", result.stderr);
    let started = pids(dir.path());
    let names: Vec<&str> = started.iter().map(|(n, _)| n.as_str()).collect();
    for component in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        assert!(names.contains(&component), "{names:?}");
    }
    assert!(started.iter().all(|(_, pid)| alive(*pid)));

    let down = Command::new("bash")
        .arg(cluster_sh())
        .args(["down", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(down.status.success());
    for (name, pid) in &started {
        assert!(!alive(*pid), "{name} ({pid}) still running after down");
    }
    assert_eq!(stopped(dir.path()), started);
    assert!(alive(bystander.id()), "down must not touch other processes");
    let mut bystander = bystander;
    let _ = bystander.kill();
    let _ = bystander.wait();
}
