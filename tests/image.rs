//! The operator image, built and run without a Docker engine.
//!
//! `tests/harness/image.sh` makes an OCI image layout with umoci from the binary cargo built
//! for these tests, on a base made here (the binary, the shared libraries `ldd` lists and the
//! loader, /etc/passwd with nonroot 65532, the host's CA bundle; no shell). `umoci unpack`
//! turns it into an OCI runtime bundle and crun runs it (through `tests/harness/crun.sh`, which
//! hides this machine's hybrid cgroups from crun). The tests prove:
//! - the image's configuration: user 65532:65532, entrypoint /usr/local/bin/mlrollout, cmd
//!   `run`, the version label; its one layer holds only root-owned files, no shell;
//! - `mlrollout --version` inside the container prints what the binary prints outside;
//! - `mlrollout run` inside the container, as UID 65532 with no capabilities on a read-only
//!   root filesystem, reaches the real API server (kubeconfig and client certificate mounted
//!   read-only), serves `/healthz`, becomes ready on `/readyz` after its first list, and stops
//!   with status 0 on SIGTERM.
//!
//! The container shares the host's network namespace (the API server and the test listen on
//! 127.0.0.1 only); every other namespace of umoci's runtime configuration (pid, mount, ipc,
//! uts) is its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs umoci, crun, root and the control plane: full suite only, `cargo test --features
// harness` (tests/run.sh turns it on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use kube::config::Kubeconfig;
use serde_json::{Value, json};

use common::cluster::{NamespaceGuard, client, cluster, eventually, namespace};
use common::process::{GuardedChild, scratch_dir, which};

const BINARY: &str = env!("CARGO_BIN_EXE_mlrollout");
const ENTRYPOINT: &str = "/usr/local/bin/mlrollout";
const NONROOT: u64 = 65532;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `command` to its end (at most `limit`), failing the test with its output otherwise.
fn run(command: &mut Command, limit: Duration) -> Output {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{what} did not end within {limit:?}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn run_ok(command: &mut Command, limit: Duration) -> Output {
    let what = format!("{command:?}");
    let output = run(command, limit);
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// What building and running the image needs, named when missing (never a silent skip).
fn require_tools() {
    for (tool, from) in [
        (
            "umoci",
            "Debian package umoci; `bash tests/harness/install.sh` installs it",
        ),
        (
            "crun",
            "Debian package crun; `bash tests/harness/install.sh` installs it",
        ),
        ("unshare", "util-linux"),
        ("ldd", "libc-bin"),
        ("tar", "tar"),
    ] {
        assert!(
            which(tool).is_some(),
            "tests/image.rs needs `{tool}` on PATH ({from})"
        );
    }
    let uid = run_ok(Command::new("id").arg("-u"), Duration::from_secs(5));
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "tests/image.rs runs as root: the image's layer must hold root-owned files (umoci \
         records the owners it sees) and crun runs the container as root's child here (no \
         rootless setup)"
    );
}

// ---------------------------------------------------------------- the image, built once

/// The image layout, its tag and one unpacked runtime bundle (its root filesystem is
/// mounted read-only by every container, so they all share it).
struct Image {
    layout: PathBuf,
    tag: String,
    bundle: PathBuf,
    /// Removes the scratch folder (hundreds of MB) when the test process exits, however.
    _cleanup: GuardedChild,
}

fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        require_tools();
        let dir = scratch_dir("image");
        let cleanup = GuardedChild::spawn(
            Command::new("sleep").arg("infinity"),
            &dir.join("cleanup.log"),
            Some(&dir),
        )
        .expect("sleep starts");
        let layout = dir.join("oci");
        let started = Instant::now();
        let built = run_ok(
            Command::new("bash")
                .arg(repo().join("tests/harness/image.sh"))
                .arg(BINARY)
                .arg(&layout),
            Duration::from_secs(120),
        );
        let tag = String::from_utf8(built.stdout).unwrap().trim().to_string();
        eprintln!("image.sh: {:?}", started.elapsed());
        let bundle = dir.join("bundle");
        run_ok(
            Command::new("umoci")
                .arg("unpack")
                .arg("--image")
                .arg(format!("{}:{tag}", layout.display()))
                .arg(&bundle),
            Duration::from_secs(120),
        );
        eprintln!("image.sh + umoci unpack: {:?}", started.elapsed());
        Image {
            layout,
            tag,
            bundle,
            _cleanup: cleanup,
        }
    })
}

/// A blob of the layout by digest (`sha256:...`).
fn blob(layout: &Path, digest: &str) -> PathBuf {
    let (algorithm, hex) = digest.split_once(':').expect("algorithm:hex");
    layout.join("blobs").join(algorithm).join(hex)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} is not readable: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The manifest of `tag` in the layout's index.
fn manifest(image: &Image) -> Value {
    let index = read_json(&image.layout.join("index.json"));
    let entry = index["manifests"]
        .as_array()
        .expect("index.json has manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == image.tag.as_str())
        .unwrap_or_else(|| panic!("no manifest tagged {} in {index}", image.tag));
    read_json(&blob(&image.layout, entry["digest"].as_str().unwrap()))
}

fn version_line() -> String {
    let output = run_ok(
        Command::new(BINARY).arg("--version"),
        Duration::from_secs(10),
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn image_config_runs_as_nonroot_with_the_binary_as_entrypoint_and_no_shell() {
    let image = image();
    let version = version_line();
    assert_eq!(
        format!("mlrollout {}\n", image.tag),
        version,
        "the tag is the binary's version"
    );
    let manifest = manifest(image);
    let config = read_json(&blob(
        &image.layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    assert_eq!(config["os"], "linux");
    let c = &config["config"];
    assert_eq!(c["User"], "65532:65532", "{config}");
    assert_eq!(c["Entrypoint"], json!([ENTRYPOINT]), "{config}");
    assert_eq!(c["Cmd"], json!(["run"]), "{config}");
    assert!(c["ExposedPorts"].get("8080/tcp").is_some(), "{config}");
    let labels = &c["Labels"];
    assert_eq!(labels["org.opencontainers.image.title"], "mlrollout");
    assert_eq!(
        labels["org.opencontainers.image.version"],
        image.tag.as_str()
    );

    // One layer, a base made here: only root-owned files (but nonroot's HOME), the binary, its
    // libraries, the account files and the CA bundle; no shell or other program.
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let layer = blob(&image.layout, layers[0]["digest"].as_str().unwrap());
    let listing = run_ok(
        Command::new("tar")
            .args(["--numeric-owner", "-tvzf"])
            .arg(&layer),
        Duration::from_secs(60),
    );
    let listing = String::from_utf8(listing.stdout).unwrap();
    let mut files = BTreeSet::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields.len() >= 6, "tar line: {line}");
        let path = fields[5]
            .trim_start_matches("./")
            .trim_start_matches('/')
            .trim_end_matches('/');
        if path == "home/nonroot" {
            assert_eq!(
                (fields[0], fields[1]),
                ("drwx------", "65532/65532"),
                "{line}"
            );
            continue;
        }
        assert_eq!(fields[1], "0/0", "not root-owned: {line}");
        if fields[0].starts_with('-') {
            files.insert(path.to_string());
        } else {
            assert!(
                fields[0].starts_with('d'),
                "neither file nor folder: {line}"
            );
        }
    }
    let expected_files = [
        "usr/local/bin/mlrollout",
        "etc/passwd",
        "etc/group",
        "etc/nsswitch.conf",
        "etc/ssl/certs/ca-certificates.crt",
    ];
    for file in expected_files {
        assert!(
            files.contains(file),
            "{file} missing from the layer: {files:?}"
        );
    }
    let others: Vec<&String> = files
        .iter()
        .filter(|f| !expected_files.contains(&f.as_str()))
        .collect();
    assert!(
        !others.is_empty(),
        "the debug binary is dynamically linked: its libraries belong in the layer"
    );
    for file in &others {
        let name = Path::new(file).file_name().unwrap().to_string_lossy();
        assert!(
            (file.starts_with("lib/") || file.starts_with("lib64/") || file.starts_with("usr/lib"))
                && name.contains(".so"),
            "{file} is neither the binary, an account or CA file, nor a shared library"
        );
    }
    for shell in ["bin/sh", "bin/bash", "bin/busybox", "usr/bin/sh"] {
        assert!(!files.contains(shell), "{shell} in the image");
    }
    let passwd = std::fs::read_to_string(image.bundle.join("rootfs/etc/passwd")).unwrap();
    assert!(
        passwd.contains("nonroot:x:65532:65532:"),
        "/etc/passwd: {passwd}"
    );
}

// ---------------------------------------------------------------- containers

/// A runtime configuration for one container from the bundle's (umoci's, from the image
/// configuration): `args` instead of the entrypoint and cmd, no capabilities, no new
/// privileges, read-only root filesystem, the host's network namespace, `mounts` added
/// (read-only binds), `env` added.
fn container_config(args: &[&str], mounts: &[(&Path, &str)], env: &[String]) -> Value {
    let image = image();
    let mut config = read_json(&image.bundle.join("config.json"));
    // What the runtime takes from the image: the user and the entrypoint + cmd.
    assert_eq!(config["process"]["user"]["uid"], NONROOT, "{config}");
    assert_eq!(config["process"]["user"]["gid"], NONROOT, "{config}");
    assert_eq!(
        config["process"]["args"],
        json!([ENTRYPOINT, "run"]),
        "{config}"
    );

    let process = &mut config["process"];
    process["args"] = json!(args);
    process["terminal"] = json!(false);
    process["noNewPrivileges"] = json!(true);
    process["capabilities"] = json!({
        "bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []
    });
    let env_list = process["env"].as_array_mut().expect("process.env");
    env_list.extend(env.iter().map(|e| json!(e)));
    config["root"]["readonly"] = json!(true);
    config["root"]["path"] = json!(image.bundle.join("rootfs"));
    config["hostname"] = json!("mlrollout");
    // The API server and the metrics port are on the host's loopback.
    let namespaces = config["linux"]["namespaces"]
        .as_array_mut()
        .expect("linux.namespaces");
    namespaces.retain(|ns| ns["type"] != "network");
    let kinds: BTreeSet<&str> = namespaces
        .iter()
        .map(|ns| ns["type"].as_str().unwrap())
        .collect();
    for kind in ["pid", "mount", "ipc", "uts"] {
        assert!(kinds.contains(kind), "{kind} namespace missing: {config}");
    }
    let mount_list = config["mounts"].as_array_mut().expect("mounts");
    for (source, destination) in mounts {
        mount_list.push(json!({
            "destination": destination,
            "type": "bind",
            "source": source,
            "options": ["bind", "ro", "nosuid", "nodev", "noexec"],
        }));
    }
    config
}

/// Deletes the container when dropped, also when the test fails: `crun delete --force` kills
/// it if it still runs.
struct Container {
    name: String,
}

impl Container {
    fn new(prefix: &str) -> Container {
        static N: AtomicU32 = AtomicU32::new(0);
        Container {
            name: format!(
                "mlrollout-test-{prefix}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    /// `crun ARGS` through tests/harness/crun.sh.
    fn crun(args: &[&str]) -> Command {
        let mut command = Command::new("bash");
        command.arg(repo().join("tests/harness/crun.sh")).args(args);
        command
    }

    /// `crun run` of this container with `config` (foreground: it ends with the container).
    fn run_command(&self, config: &Value, dir: &Path) -> Command {
        let path = dir.join(format!("{}.json", self.name));
        std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
        let mut command = Self::crun(&["run", "--bundle"]);
        command
            .arg(&image().bundle)
            .arg("--config")
            .arg(&path)
            .arg("--pid-file")
            .arg(dir.join(format!("{}.pid", self.name)))
            .arg(&self.name);
        command
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Self::crun(&["delete", "--force", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn version_inside_the_container_is_the_binarys() {
    let dir = scratch_dir("image-version");
    let container = Container::new("version");
    let config = container_config(&[ENTRYPOINT, "--version"], &[], &[]);
    let started = Instant::now();
    let output = run_ok(
        &mut container.run_command(&config, &dir),
        Duration::from_secs(60),
    );
    eprintln!("crun run --version: {:?}", started.elapsed());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        version_line(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A kubeconfig for the container: the cluster's CA and a client certificate (admin, as the
/// other operator tests run it), copied readable for UID 65532 into `dir`, which the
/// container mounts read-only at `/etc/mlrollout/kube`.
fn container_kubeconfig(dir: &Path, user: &str) {
    let host = cluster().kubeconfig_for(user, &["system:masters"]);
    let kubeconfig = Kubeconfig::read_from(&host).expect("kubeconfig");
    let cluster_entry = kubeconfig.clusters[0].cluster.as_ref().unwrap();
    let auth = kubeconfig.auth_infos[0].auth_info.as_ref().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    for (from, to) in [
        (cluster_entry.certificate_authority.as_ref(), "ca.crt"),
        (auth.client_certificate.as_ref(), "client.crt"),
        (auth.client_key.as_ref(), "client.key"),
    ] {
        let from = from.expect("file paths in the test kubeconfig");
        std::fs::copy(from, dir.join(to)).unwrap();
        let status = Command::new("chown")
            .arg(format!("{NONROOT}:{NONROOT}"))
            .arg(dir.join(to))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {{server: {}, certificate-authority: /etc/mlrollout/kube/ca.crt}}\nusers:\n- name: u\n  user: {{client-certificate: /etc/mlrollout/kube/client.crt, client-key: /etc/mlrollout/kube/client.key}}\ncontexts:\n- name: test\n  context: {{cluster: test, user: u}}\ncurrent-context: test\n",
        cluster().server,
    );
    std::fs::write(dir.join("kubeconfig"), text).unwrap();
}

/// A field of `/proc/PID/status` (`Uid:`, `CapEff:`, ...).
fn proc_status(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_in_the_container_serves_healthz_and_becomes_ready() {
    let admin = client().await;
    let ns = namespace(&admin, "image").await;
    let _ns_guard = NamespaceGuard(ns.clone());
    let dir = scratch_dir("image-run");
    let kube_dir = dir.join("kube");
    container_kubeconfig(&kube_dir, &format!("mlrollout-image.{ns}"));
    let port = common::http::free_port();
    let metrics = format!("127.0.0.1:{port}");

    let container = Container::new("run");
    let args = [
        ENTRYPOINT,
        "run",
        "--namespace",
        &ns,
        "--metrics-addr",
        &metrics,
        "--log-format",
        "text",
    ];
    let config = container_config(
        &args,
        &[(&kube_dir, "/etc/mlrollout/kube")],
        &["KUBECONFIG=/etc/mlrollout/kube/kubeconfig".to_string()],
    );
    let log = dir.join("container.log");
    let started = Instant::now();
    let mut process = GuardedChild::spawn(&container.run_command(&config, &dir), &log, None)
        .expect("crun starts");
    // Dropped first (declared last): the container goes, whatever happens below.
    let container = container;

    let health = eventually("/healthz answers 200", Duration::from_secs(30), || {
        let exited = process.try_exited();
        let log = process.log_tail(40);
        let metrics = metrics.clone();
        async move {
            assert!(exited.is_none(), "the container ended ({exited:?}):\n{log}");
            let response = common::http::get(&metrics, "/healthz", Duration::from_secs(2)).ok()?;
            Some(response)
        }
    })
    .await;
    assert_eq!(health.status, 200, "{}", health.text());
    eprintln!("/healthz 200 after {:?}", started.elapsed());
    eventually(
        "/readyz answers 200 (the first list from the API server)",
        Duration::from_secs(30),
        || {
            let metrics = metrics.clone();
            async move {
                let response =
                    common::http::get(&metrics, "/readyz", Duration::from_secs(2)).ok()?;
                (response.status == 200).then_some(())
            }
        },
    )
    .await;
    eprintln!("/readyz 200 after {:?}", started.elapsed());

    // The operator process as the host sees it: UID/GID 65532, no capabilities, no new
    // privileges, its own pid and mount namespaces, the image's binary.
    let pid_file = dir.join(format!("{}.pid", container.name));
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let nonroot = format!("{NONROOT}\t{NONROOT}\t{NONROOT}\t{NONROOT}");
    assert_eq!(proc_status(pid, "Uid:"), nonroot);
    assert_eq!(proc_status(pid, "Gid:"), nonroot);
    assert_eq!(proc_status(pid, "CapEff:"), "0000000000000000");
    assert_eq!(proc_status(pid, "CapBnd:"), "0000000000000000");
    assert_eq!(proc_status(pid, "NoNewPrivs:"), "1");
    for ns_kind in ["pid", "mnt"] {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns_kind}")).unwrap();
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns_kind}")).unwrap();
        assert_ne!(theirs, ours, "the container shares our {ns_kind} namespace");
    }
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
        PathBuf::from(ENTRYPOINT)
    );
    // Read-only root filesystem.
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mounts")).unwrap();
    let root = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/"))
        .unwrap_or_else(|| panic!("no / in the container's mounts:\n{mounts}"));
    let options = root.split_whitespace().nth(3).unwrap();
    assert!(
        options.split(',').any(|o| o == "ro"),
        "root filesystem not read-only: {root}"
    );

    // A graceful stop: SIGTERM to the operator (PID 1 in its namespace) ends it with 0.
    run_ok(
        &mut Container::crun(&["kill", &container.name, "TERM"]),
        Duration::from_secs(10),
    );
    let status = eventually(
        "the container to end after SIGTERM",
        Duration::from_secs(20),
        || {
            let exited = process.try_exited();
            async move { exited }
        },
    )
    .await;
    assert_eq!(
        status,
        "exit status 0",
        "container log:\n{}",
        process.log_tail(40)
    );
    eprintln!("stopped after {:?}", started.elapsed());
    drop(container);
    process.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
