//! The real Kubernetes control plane under the cluster-facing tests.
//!
//! `tests/harness/cluster.sh` builds etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler, kubectl and kwok from pinned Go modules and starts them on loopback ports
//! with RBAC and client-certificate admin; our CRD, the Gateway API standard CRDs and Istio's
//! VirtualService CRD are installed. `tests/run.sh` starts one such cluster for the whole suite
//! and names its folder in `MLROLLOUT_TEST_CLUSTER`; a test binary run on its own
//! (`cargo test --features harness --test controller`) starts a private one, stopped by the
//! script's watcher when the binary exits.
//!
//! Tests share the cluster and isolate themselves with a namespace each ([`namespace`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A running control plane, as `cluster.sh up` described it in `cluster.env`.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub server: String,
    /// kwok plays the kubelet: Pods become Ready, Job Pods end when a test says so.
    pub kwok: bool,
    /// Folder of the control-plane binaries (kubectl among them).
    pub bin: PathBuf,
    /// The API server's audit log: one JSON line per write (user, verb, object, answer).
    pub audit_log: PathBuf,
    ca: PathBuf,
    ca_key: PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cluster of this test run; started on first use when the suite did not start one.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let dir = match std::env::var_os("MLROLLOUT_TEST_CLUSTER") {
            Some(dir) => PathBuf::from(dir),
            None => start_private_cluster(),
        };
        read_cluster_env(&dir)
    })
}

fn start_private_cluster() -> PathBuf {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "tests".into());
    let dir = repo()
        .join("target/test-clusters")
        .join(format!("{binary}-{}", std::process::id()));
    eprintln!(
        "starting a private control plane in {} (set MLROLLOUT_TEST_CLUSTER to share one)",
        dir.display()
    );
    let output = Command::new("bash")
        .arg(repo().join("tests/harness/cluster.sh"))
        .args(["up", "--control-plane-only", "--dir"])
        .arg(&dir)
        .arg("--watch-pid")
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("bash runs tests/harness/cluster.sh");
    assert!(
        output.status.success(),
        "tests/harness/cluster.sh up failed (its last line above names the component and log). \
         Tests on the control plane need Go, Python 3 and openssl to build and start one, or \
         MLROLLOUT_TEST_CLUSTER naming a running one \
         (`bash tests/harness/cluster.sh up --control-plane-only --dir DIR`); \
         `bash tests/run.sh` does all of it"
    );
    dir
}

impl Cluster {
    /// A cluster `cluster.sh up --dir DIR` started (for a test with a control plane of its own).
    pub fn from_dir(dir: &Path) -> Cluster {
        read_cluster_env(dir)
    }
}

fn read_cluster_env(dir: &Path) -> Cluster {
    let path = dir.join("cluster.env");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} is not readable ({e}): is the cluster up?",
            path.display()
        )
    });
    let values: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    let get = |key: &str| {
        values
            .get(key)
            .unwrap_or_else(|| panic!("{} has no {key}=", path.display()))
            .to_string()
    };
    Cluster {
        dir: dir.to_path_buf(),
        kubeconfig: PathBuf::from(get("kubeconfig")),
        server: get("server"),
        kwok: get("kwok") == "1",
        bin: PathBuf::from(get("bin")),
        audit_log: PathBuf::from(get("audit_log")),
        ca: PathBuf::from(get("ca")),
        ca_key: PathBuf::from(get("ca_key")),
    }
}

/// One write the API server answered, from its audit log.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub verb: String,
    pub user: AuditUser,
    #[serde(default)]
    pub object_ref: Option<AuditObject>,
    #[serde(default)]
    pub response_status: Option<AuditStatus>,
    /// RFC 3339 with microseconds.
    pub request_received_timestamp: String,
    #[serde(default)]
    pub stage_timestamp: Option<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct AuditUser {
    #[serde(default)]
    pub username: String,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditObject {
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub subresource: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub api_group: Option<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct AuditStatus {
    #[serde(default)]
    pub code: Option<u16>,
}

/// One write from the audit log, flattened: who did what to which object, and the answer.
#[derive(Debug, Clone)]
pub struct Write {
    /// When the API server received the request.
    pub at: Timestamp,
    pub verb: String,
    /// API group (`""` for the core group).
    pub group: String,
    /// `leases`, `deployments`, `modeldeployments/status`, ...
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The HTTP status of the answer.
    pub code: Option<u16>,
}

impl Write {
    pub fn succeeded(&self) -> bool {
        self.code.is_some_and(|c| (200..300).contains(&c))
    }

    pub fn is_lease(&self) -> bool {
        self.group == "coordination.k8s.io" && self.resource == "leases"
    }
}

impl Cluster {
    /// The admin's kube config (client certificate in `system:masters`).
    pub async fn config(&self) -> kube::Config {
        config_from(&self.kubeconfig).await
    }

    /// Every write in the audit log so far, oldest first.
    pub fn audit(&self) -> Vec<AuditEntry> {
        let text = std::fs::read_to_string(&self.audit_log).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Every write `user` made so far, oldest first (see [`Write`]).
    pub fn writes_by(&self, user: &str) -> Vec<Write> {
        let mut writes: Vec<Write> =
            self.audit()
                .into_iter()
                .filter(|e| e.user.username == user)
                .map(|e| {
                    let object = e
                        .object_ref
                        .clone()
                        .unwrap_or_else(|| panic!("an audited write without objectRef: {e:?}"));
                    Write {
                        at: e.request_received_timestamp.parse().unwrap_or_else(|err| {
                            panic!("not an RFC 3339 timestamp ({err}): {e:?}")
                        }),
                        verb: e.verb,
                        group: object.api_group.unwrap_or_default(),
                        resource: match object.subresource {
                            Some(sub) => format!("{}/{sub}", object.resource),
                            None => object.resource,
                        },
                        namespace: object.namespace,
                        name: object.name,
                        code: e.response_status.and_then(|s| s.code),
                    }
                })
                .collect();
        writes.sort_by_key(|w| w.at);
        writes
    }

    /// A kubeconfig whose client certificate (signed by the cluster's CA) authenticates as
    /// `user` in `groups`: `system:serviceaccount:NS:NAME` acts as that ServiceAccount for RBAC.
    pub fn kubeconfig_for(&self, user: &str, groups: &[&str]) -> PathBuf {
        let safe: String = user
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        static ISSUED: AtomicU32 = AtomicU32::new(0);
        let n = ISSUED.fetch_add(1, Ordering::Relaxed);
        let dir = self
            .dir
            .join("users")
            .join(format!("{safe}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("user folder");
        let mut subject = String::new();
        for group in groups {
            subject.push_str(&format!("/O={group}"));
        }
        subject.push_str(&format!("/CN={user}"));
        let key = dir.join("client.key");
        let csr = dir.join("client.csr");
        let crt = dir.join("client.crt");
        let ext = dir.join("client.ext");
        std::fs::write(&ext, "extendedKeyUsage=clientAuth\n").expect("ext file");
        let run = |args: &[&std::ffi::OsStr]| {
            let out = Command::new("openssl")
                .args(args)
                .stdout(Stdio::null())
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        // A serial of our own per certificate: `-CAcreateserial` shares one `ca.srl` file, which
        // test processes signing at the same moment corrupt for each other.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let serial = format!("0x{:08x}{:08x}{:08x}", std::process::id(), n, nanos);
        run(&[
            "req".as_ref(),
            "-newkey".as_ref(),
            "rsa:2048".as_ref(),
            "-nodes".as_ref(),
            "-keyout".as_ref(),
            key.as_os_str(),
            "-out".as_ref(),
            csr.as_os_str(),
            "-subj".as_ref(),
            subject.as_ref(),
        ]);
        run(&[
            "x509".as_ref(),
            "-req".as_ref(),
            "-in".as_ref(),
            csr.as_os_str(),
            "-CA".as_ref(),
            self.ca.as_os_str(),
            "-CAkey".as_ref(),
            self.ca_key.as_os_str(),
            "-set_serial".as_ref(),
            serial.as_ref(),
            "-out".as_ref(),
            crt.as_os_str(),
            "-days".as_ref(),
            "2".as_ref(),
            "-extfile".as_ref(),
            ext.as_os_str(),
        ]);
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {{server: {}, certificate-authority: {}}}\nusers:\n- name: u\n  user: {{client-certificate: {}, client-key: {}}}\ncontexts:\n- name: test\n  context: {{cluster: test, user: u}}\ncurrent-context: test\n",
            self.server,
            self.ca.display(),
            crt.display(),
            key.display()
        );
        std::fs::write(&path, text).expect("kubeconfig written");
        path
    }

    /// A client acting as `user` in `groups` (see [`Cluster::kubeconfig_for`]).
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> kube::Client {
        let config = config_from(&self.kubeconfig_for(user, groups)).await;
        kube::Client::try_from(config).expect("client")
    }

    /// Jobs the API server created in `namespace` (from its audit log): a Job that was
    /// created and deleted again still counts.
    pub fn jobs_created(&self, namespace: &str) -> Vec<String> {
        self.audit()
            .into_iter()
            .filter(|e| e.verb == "create")
            .filter(|e| e.response_status.as_ref().and_then(|s| s.code) == Some(201))
            .filter_map(|e| e.object_ref)
            .filter(|o| o.resource == "jobs" && o.namespace.as_deref() == Some(namespace))
            .map(|o| o.name.unwrap_or_default())
            .collect()
    }

    /// `kubectl` against this cluster, as the admin.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(self.bin.join("kubectl"));
        command.env("KUBECONFIG", &self.kubeconfig);
        command
    }
}

async fn config_from(path: &Path) -> kube::Config {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = Kubeconfig::read_from(path).expect("kubeconfig readable");
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig usable")
}

/// An admin client bound to the calling test's runtime.
pub async fn client() -> kube::Client {
    kube::Client::try_from(cluster().config().await).expect("client")
}

/// Creates a fresh namespace named after `prefix` (unique in the run) and returns its name.
pub async fn namespace(client: &kube::Client, prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("-{}-{n}", std::process::id());
    let prefix: String = prefix.chars().take(63 - suffix.len()).collect();
    let name = format!("{}{suffix}", prefix.trim_end_matches('-'));
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"mlrollout.io/test": "true"}}
    }))
    .expect("namespace object");
    api.create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    name
}

/// Names of the Jobs in `namespace`.
pub async fn jobs(client: &kube::Client, namespace: &str) -> Vec<String> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    jobs.list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("listing Jobs in {namespace}: {e}"))
        .items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect()
}

/// Deletes a test namespace (the namespace controller removes what is in it).
pub async fn delete_namespace(client: &kube::Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::background()).await;
}

/// Deletes a namespace when dropped, also when the test or bench panics, so that a failed run
/// leaves nothing on a shared cluster (Pods on the one node, Service addresses).
pub struct NamespaceGuard(pub String);

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        let _ = cluster()
            .kubectl()
            .args(["delete", "namespace", &self.0, "--wait=false"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics naming `what` after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Ends the Pods of `job` the way a training container would (exit 0 or 1); the real Job
/// controller then completes or fails the Job. Needs kwok (cluster.sh's stages).
pub async fn finish_job(client: &kube::Client, namespace: &str, job: &str, succeeded: bool) {
    assert!(
        cluster().kwok,
        "finishing a Job needs kwok in the test cluster (see tests/harness/cluster.sh)"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("batch.kubernetes.io/job-name={job}");
    let running = eventually(
        &format!("a running Pod of Job {namespace}/{job}"),
        Duration::from_secs(60),
        || async {
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            let running: Vec<String> = list
                .items
                .into_iter()
                .filter(|p| {
                    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                        && p.metadata.deletion_timestamp.is_none()
                })
                .filter_map(|p| p.metadata.name)
                .collect();
            (!running.is_empty()).then_some(running)
        },
    )
    .await;
    let outcome = if succeeded { "succeeded" } else { "failed" };
    let patch = serde_json::json!({"metadata": {"labels": {"mlrollout.io/test-outcome": outcome}}});
    for pod in running {
        pods.patch(&pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("labelling Pod {namespace}/{pod}: {e}"));
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let wanted = if succeeded { "Complete" } else { "Failed" };
    eventually(
        &format!("Job {namespace}/{job} to be {wanted}"),
        Duration::from_secs(60),
        || async {
            let job = jobs.get(job).await.ok()?;
            job.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == wanted && c.status == "True")
                .then_some(())
        },
    )
    .await;
}

/// Creates Secret `name` in `ns` with `data` (keys and plain values).
pub async fn create_secret(client: &kube::Client, ns: &str, name: &str, data: &[(&str, String)]) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let string_data: BTreeMap<String, String> = data
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        string_data: Some(string_data),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}
