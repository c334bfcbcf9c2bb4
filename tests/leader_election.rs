//! Leader election with two real operator processes (`mlrollout run --leader-election`) on a
//! real Lease, in real time, each with its own identity (client certificate) so that the API
//! server's audit log says who wrote what and when:
//! - only the leader writes; a standby writes nothing (and is ready);
//! - `kill -9` of the leader: the standby takes over once the Lease expired (not before, and
//!   within about one retry period after), and the old leader wrote nothing after that;
//! - a leader cut off from the API server stops (exits non-zero) at its renew deadline, before
//!   its Lease expires for the others;
//! - a leader whose Lease is taken by someone else exits at its next renewal;
//! - a leader frozen (SIGSTOP) past its Lease, with changes queued for its watches, writes
//!   nothing when it wakes up and exits (its client is fenced by its own clock, see
//!   src/leader.rs);
//! - a graceful stop (SIGTERM) releases the Lease: the standby takes over without waiting for
//!   the Lease to expire; a standby cut off from the API server is not ready but stays alive.
//!
//! The registry is a real MLflow server (tests/common/mlflow.rs); Deployments become ready
//! through the real controllers and kwok.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane and a real MLflow server: full suite only, `cargo test --features
// harness` (tests/run.sh turns it on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
use mlrollout::api::{ModelDeployment, Phase};
use tokio::net::{TcpListener, TcpStream};

use common::cluster::{Write, client, cluster, eventually, namespace};
use common::process::{GuardedChild, scratch_dir};

const LEASE: &str = "mlrollout-leader";

/// Lease timings of one test, in whole seconds (the flags' unit).
#[derive(Clone, Copy)]
struct Timings {
    lease: u64,
    renew_deadline: u64,
    retry: u64,
}

/// Short timings: the Lease expires 3 s after the last renewal; the leader gives up after 2 s
/// without one; attempts every second.
const FAST: Timings = Timings {
    lease: 3,
    renew_deadline: 2,
    retry: 1,
};

impl Timings {
    fn lease(&self) -> Duration {
        Duration::from_secs(self.lease)
    }
    fn renew_deadline(&self) -> Duration {
        Duration::from_secs(self.renew_deadline)
    }
    fn retry(&self) -> Duration {
        Duration::from_secs(self.retry)
    }
}

// ---------------------------------------------------------------- the registry (real MLflow)

/// The shared MLflow server's URI, with a model `name` whose version 1 is the champion.
async fn mlflow_model(name: &str) -> String {
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        let server = common::mlflow::mlflow_server();
        let authority = format!("127.0.0.1:{}", server.port());
        let post = |path: &str, body: serde_json::Value| {
            let response = common::http::post_json(
                &authority,
                &format!("/api/2.0/mlflow/{path}"),
                &body.to_string(),
                Duration::from_secs(30),
            )
            .unwrap_or_else(|e| panic!("MLflow {path}: {e}"));
            assert_eq!(
                response.status,
                200,
                "MLflow {path}: {}\n{}",
                response.text(),
                server.log_tail(20)
            );
        };
        post(
            "registered-models/create",
            serde_json::json!({"name": name}),
        );
        post(
            "model-versions/create",
            serde_json::json!({"name": name, "source": "s3://mlrollout-tests/models/v1"}),
        );
        post(
            "registered-models/alias",
            serde_json::json!({"name": name, "alias": "champion", "version": "1"}),
        );
        server.uri()
    })
    .await
    .expect("MLflow set up")
}

fn resource(namespace: &str, name: &str, tracking_uri: &str, model: &str) -> ModelDeployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"trackingUri": tracking_uri, "name": model},
            "traffic": {"provider": "none"},
        }
    }))
    .expect("resource")
}

/// One test's namespace, model and admin client.
struct Fixture {
    admin: kube::Client,
    ns: String,
    tracking_uri: String,
    model: String,
}

impl Fixture {
    async fn new(prefix: &str) -> Fixture {
        let admin = client().await;
        let ns = namespace(&admin, prefix).await;
        let model = format!("le-{ns}");
        let tracking_uri = mlflow_model(&model).await;
        Fixture {
            admin,
            ns,
            tracking_uri,
            model,
        }
    }

    async fn create(&self, name: &str) {
        Api::<ModelDeployment>::namespaced(self.admin.clone(), &self.ns)
            .create(
                &PostParams::default(),
                &resource(&self.ns, name, &self.tracking_uri, &self.model),
            )
            .await
            .unwrap_or_else(|e| panic!("creating {name}: {e}"));
    }

    async fn phase(&self, name: &str) -> Option<Phase> {
        Api::<ModelDeployment>::namespaced(self.admin.clone(), &self.ns)
            .get(name)
            .await
            .ok()?
            .status
            .map(|s| s.phase)
    }

    async fn stable(&self, name: &str, limit: Duration) {
        eventually(&format!("{name} is Stable"), limit, || async {
            (self.phase(name).await == Some(Phase::Stable)).then_some(())
        })
        .await;
    }

    async fn lease(&self) -> Option<Lease> {
        Api::<Lease>::namespaced(self.admin.clone(), &self.ns)
            .get_opt(LEASE)
            .await
            .ok()
            .flatten()
    }

    async fn holder(&self) -> Option<String> {
        self.lease()
            .await
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
    }

    async fn wait_holder(&self, identity: &str, limit: Duration) -> Instant {
        eventually(&format!("{identity} holds the Lease"), limit, || async {
            (self.holder().await.as_deref() == Some(identity)).then(Instant::now)
        })
        .await
    }
}

/// The test's namespace goes when the test ends, passed or failed (the namespace controller
/// removes what is in it; the Replicas are stopped when dropped).
impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = cluster()
            .kubectl()
            .args([
                "delete",
                "namespace",
                &self.ns,
                "--ignore-not-found",
                "--wait=false",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

// ---------------------------------------------------------------- a cuttable connection

/// A TCP proxy between one operator process and the API server: cutting it closes every open
/// connection and refuses new ones (the process is partitioned from the API server).
struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    accept: tokio::task::JoinHandle<()>,
}

/// Whether the proxy is cut, and its open connections; one lock, so that a connection
/// accepted while the proxy is being cut is either refused or aborted with the others.
#[derive(Default)]
struct ProxyState {
    cut: bool,
    connections: Vec<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().unwrap();
        let state: Arc<Mutex<ProxyState>> = Arc::default();
        let accept = tokio::spawn({
            let state = state.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let mut state = state.lock().unwrap();
                    if state.cut {
                        drop(inbound);
                        continue;
                    }
                    state.connections.push(tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    }));
                }
            }
        });
        Proxy {
            addr,
            state,
            accept,
        }
    }

    /// Closes every connection and refuses new ones.
    fn cut(&self) {
        let mut state = self.state.lock().unwrap();
        state.cut = true;
        for task in state.connections.drain(..) {
            task.abort();
        }
    }

    fn heal(&self) {
        self.state.lock().unwrap().cut = false;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

fn api_server_addr() -> SocketAddr {
    cluster()
        .server
        .trim_start_matches("https://")
        .parse()
        .expect("the API server is https://127.0.0.1:PORT")
}

// ---------------------------------------------------------------- an operator process

/// `mlrollout run --leader-election`, scoped to the test's namespace, authenticated with its
/// own client certificate (user `user`, in `system:masters`), optionally through a [`Proxy`].
struct Replica {
    identity: String,
    user: String,
    process: GuardedChild,
    pid: u32,
    metrics: String,
    proxy: Option<Proxy>,
}

impl Replica {
    async fn start(fixture: &Fixture, identity: &str, timings: Timings, proxied: bool) -> Replica {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let user = format!(
            "mlrollout-{identity}.{}.{}",
            fixture.ns,
            STARTED.fetch_add(1, Ordering::Relaxed)
        );
        let kubeconfig = cluster().kubeconfig_for(&user, &["system:masters"]);
        let proxy = if proxied {
            let proxy = Proxy::start(api_server_addr()).await;
            let text = std::fs::read_to_string(&kubeconfig)
                .unwrap()
                .replace(&cluster().server, &format!("https://{}", proxy.addr));
            std::fs::write(&kubeconfig, text).unwrap();
            Some(proxy)
        } else {
            None
        };
        let metrics = format!("127.0.0.1:{}", common::http::free_port());
        let mut command = Command::new(env!("CARGO_BIN_EXE_mlrollout"));
        command
            .arg("run")
            .args(["--leader-election", "--namespace", &fixture.ns])
            .args(["--lease-namespace", &fixture.ns, "--lease-name", LEASE])
            .args(["--leader-identity", identity])
            .args(["--lease-duration-seconds", &timings.lease.to_string()])
            .args([
                "--lease-renew-deadline-seconds",
                &timings.renew_deadline.to_string(),
            ])
            .args(["--lease-retry-period-seconds", &timings.retry.to_string()])
            .args(["--metrics-addr", &metrics, "--log-format", "text"])
            .args(["--log-level", "info"])
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", identity);
        for var in [
            "RUST_LOG",
            "POD_NAMESPACE",
            "MLROLLOUT_NAMESPACE",
            "MLROLLOUT_METRICS_ADDR",
            "MLROLLOUT_LEASE_NAME",
            "KUBERNETES_SERVICE_HOST",
        ] {
            command.env_remove(var);
        }
        let dir = scratch_dir(&format!("leader-{identity}"));
        let log = dir.join("operator.log");
        let process = GuardedChild::spawn(&command, &log, Some(&dir))
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", env!("CARGO_BIN_EXE_mlrollout")));
        let pid = operator_pid(process.pgid()).await;
        Replica {
            identity: identity.to_string(),
            user,
            process,
            pid,
            metrics,
            proxy,
        }
    }

    fn log(&self) -> String {
        self.process.log_tail(40)
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {}", self.pid);
    }

    /// Waits for the process to end on its own; its exit code and when it was seen to end.
    async fn exited(&mut self, within: Duration) -> (i32, Instant) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.process.try_exited() {
                let seen = Instant::now();
                let code = status
                    .trim_start_matches("exit status ")
                    .parse()
                    .unwrap_or_else(|_| panic!("{}: {status}", self.identity));
                return (code, seen);
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop within {within:?}:\n{}",
                self.identity,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// HTTP status of `path` on the metrics port (`None`: not answering).
    async fn probe(&self, path: &'static str) -> Option<u16> {
        let addr = self.metrics.clone();
        tokio::task::spawn_blocking(move || {
            common::http::get(&addr, path, Duration::from_secs(2))
                .ok()
                .map(|r| r.status)
        })
        .await
        .unwrap()
    }

    async fn wait_probe(&self, path: &'static str, status: u16, limit: Duration) {
        let what = format!("{} {path} answers {status}", self.identity);
        eventually(&what, limit, || async {
            (self.probe(path).await == Some(status)).then_some(())
        })
        .await;
    }

    /// Reconciliations it ran (`mlrollout_reconciles_total`, every result).
    async fn reconciles(&self) -> f64 {
        let addr = self.metrics.clone();
        let text = tokio::task::spawn_blocking(move || {
            common::http::get(&addr, "/metrics", Duration::from_secs(2))
                .expect("/metrics answers")
                .text()
        })
        .await
        .unwrap();
        text.lines()
            .filter(|l| l.starts_with("mlrollout_reconciles_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Its writes, from the API server's audit log.
    fn writes(&self) -> Vec<Write> {
        cluster().writes_by(&self.user)
    }

    fn proxy(&self) -> &Proxy {
        self.proxy.as_ref().expect("started with a proxy")
    }
}

/// The operator's pid: the watchdog's child named `mlrollout`.
async fn operator_pid(watchdog: u32) -> u32 {
    eventually(
        "the operator process runs",
        Duration::from_secs(10),
        || async {
            let children =
                std::fs::read_to_string(format!("/proc/{watchdog}/task/{watchdog}/children"))
                    .ok()?;
            children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .find(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim() == "mlrollout")
                })
        },
    )
    .await
}

// ---------------------------------------------------------------- the audit log

/// The first successful Lease write of `replica` (create or take-over) after `after`.
fn first_lease_write(replica: &Replica, after: Timestamp) -> Write {
    replica
        .writes()
        .into_iter()
        .find(|w| w.is_lease() && w.succeeded() && w.at > after)
        .unwrap_or_else(|| panic!("{} never wrote the Lease after {after}", replica.identity))
}

/// The last successful Lease write (renewal or release) of `replica`.
fn last_lease_write(replica: &Replica) -> Write {
    replica
        .writes()
        .into_iter()
        .rev()
        .find(|w| w.is_lease() && w.succeeded())
        .unwrap_or_else(|| panic!("{} never wrote the Lease", replica.identity))
}

fn since(later: Timestamp, earlier: Timestamp) -> Duration {
    let d: SignedDuration = later.duration_since(earlier);
    Duration::try_from(d).unwrap_or_else(|_| panic!("{later} is before {earlier}"))
}

/// The old leader's last write of any kind came before the new leader's first write to
/// anything but the Lease, and the new leader wrote nothing but the Lease before it took it.
fn assert_no_overlap(old: &Replica, new: &Replica, new_took: Timestamp) {
    let old_writes = old.writes();
    let last_old = old_writes.last().expect("the old leader wrote").at;
    let new_writes = new.writes();
    let new_operator_writes: Vec<&Write> = new_writes.iter().filter(|w| !w.is_lease()).collect();
    assert!(
        !new_operator_writes.is_empty(),
        "{} never wrote as leader",
        new.identity
    );
    assert!(
        new_operator_writes
            .iter()
            .all(|w| w.at > last_old && w.at >= new_took),
        "{} wrote while {} could still write (last at {last_old}, took the Lease at \
         {new_took}): {new_operator_writes:?}",
        new.identity,
        old.identity
    );
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_when_its_lease_expires_and_never_writes_again() {
    let f = Fixture::new("mlr-le-kill").await;
    f.create("first").await;

    let mut a = Replica::start(&f, "replica-a", FAST, false).await;
    f.wait_holder("replica-a", Duration::from_secs(30)).await;
    let b = Replica::start(&f, "replica-b", FAST, false).await;
    f.stable("first", Duration::from_secs(90)).await;
    f.create("second").await;
    f.stable("second", Duration::from_secs(60)).await;
    // Both ready: the leader after its first list, the standby because it can take over.
    a.wait_probe("/readyz", 200, Duration::from_secs(10)).await;
    b.wait_probe("/readyz", 200, Duration::from_secs(10)).await;
    assert_eq!(b.probe("/healthz").await, Some(200));
    // Give the standby every chance to misbehave.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The leader reconciled and wrote (children, status, events); the standby wrote nothing.
    let a_writes = a.writes();
    for (verb, resource, name) in [
        ("patch", "deployments", "first-stable"),
        ("patch", "modeldeployments/status", "first"),
        ("patch", "modeldeployments/status", "second"),
    ] {
        assert!(
            a_writes.iter().any(|w| w.verb == verb
                && w.resource == resource
                && w.name.as_deref() == Some(name)
                && w.succeeded()),
            "the leader wrote ({verb}) {resource} {name}: {a_writes:?}"
        );
    }
    assert!(
        b.writes().is_empty(),
        "a standby only reads the held Lease, it writes nothing: {:?}",
        b.writes()
    );
    assert!(a.reconciles().await > 0.0);
    assert_eq!(b.reconciles().await, 0.0, "a standby does not reconcile");

    // kill -9: no release, no goodbye.
    a.signal("KILL");
    let killed_at = Timestamp::now();
    let killed = Instant::now();
    let (code, _) = a.exited(Duration::from_secs(10)).await;
    assert_eq!(code, 128 + 9, "killed by SIGKILL");

    let b_leads = f.wait_holder("replica-b", Duration::from_secs(30)).await;
    f.create("third").await;
    f.stable("third", Duration::from_secs(60)).await;
    b.wait_probe("/readyz", 200, Duration::from_secs(10)).await;
    let third_done = Instant::now();
    assert!(b.reconciles().await > 0.0, "the new leader reconciles");

    // From the audit log: the old leader wrote nothing after it was killed; the standby took
    // the Lease only once it had expired (lease duration after the last renewal), and within
    // one retry period after that.
    let a_writes = a.writes();
    assert!(
        a_writes.iter().all(|w| w.at < killed_at),
        "writes of the killed leader after {killed_at}: {:?}",
        a_writes
            .iter()
            .filter(|w| w.at >= killed_at)
            .collect::<Vec<_>>()
    );
    let last_renewal = last_lease_write(&a).at;
    let took = first_lease_write(&b, last_renewal).at;
    let expiry_to_take = since(took, last_renewal);
    eprintln!(
        "kill -9 → {} took the Lease {:?} after the last renewal ({:?} after the kill); \
         holder seen after {:?}; a new resource Stable {:?} after the kill",
        b.identity,
        expiry_to_take,
        since(took, killed_at),
        b_leads - killed,
        third_done - killed
    );
    assert!(
        expiry_to_take + Duration::from_millis(100) >= FAST.lease(),
        "taken before the Lease expired: {expiry_to_take:?} after the last renewal"
    );
    assert!(
        expiry_to_take <= FAST.lease() + FAST.retry() + Duration::from_secs(2),
        "taken {expiry_to_take:?} after the last renewal (lease {:?}, retry {:?})",
        FAST.lease(),
        FAST.retry()
    );
    assert_no_overlap(&a, &b, took);
    let third_writers: Vec<Write> = a_writes
        .iter()
        .filter(|w| w.name.as_deref() == Some("third"))
        .cloned()
        .collect();
    assert!(third_writers.is_empty(), "{third_writers:?}");
    assert!(
        b.writes()
            .iter()
            .any(|w| w.resource == "modeldeployments/status"
                && w.name.as_deref() == Some("third")
                && w.succeeded())
    );

    // A graceful stop releases the Lease and exits 0.
    let mut b = b;
    b.signal("TERM");
    let (code, _) = b.exited(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "a graceful stop is not an error:\n{}", b.log());
    assert_eq!(f.holder().await.as_deref(), Some(""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_api_server_stops_before_its_lease_expires() {
    let f = Fixture::new("mlr-le-cut").await;
    f.create("first").await;
    let mut a = Replica::start(&f, "replica-a", FAST, true).await;
    f.wait_holder("replica-a", Duration::from_secs(30)).await;
    let b = Replica::start(&f, "replica-b", FAST, false).await;
    f.stable("first", Duration::from_secs(90)).await;
    b.wait_probe("/readyz", 200, Duration::from_secs(10)).await;

    // The leader is cut off: it cannot renew, gives up at its renew deadline and exits with an
    // error, before its Lease expires for the others.
    a.proxy().cut();
    let cut_at = Timestamp::now();
    let cut = Instant::now();
    let (code, a_exit) = a.exited(Duration::from_secs(10)).await;
    let a_exit_at = Timestamp::now();
    assert_ne!(code, 0, "losing the Lease is an error exit");
    assert!(
        a.log().contains("could not renew the lease"),
        "the log says why:\n{}",
        a.log()
    );
    assert!(
        a_exit - cut < FAST.lease(),
        "stopped {:?} after the cut: not within the lease duration (renew deadline {:?})",
        a_exit - cut,
        FAST.renew_deadline()
    );

    let b_leads = f.wait_holder("replica-b", Duration::from_secs(30)).await;
    f.create("second").await;
    f.stable("second", Duration::from_secs(60)).await;

    let last_renewal = last_lease_write(&a).at;
    let took = first_lease_write(&b, last_renewal).at;
    eprintln!(
        "cut off → {} exited {:?} after the cut; {} took the Lease {:?} after a's last \
         renewal, holder seen {:?} after the cut",
        a.identity,
        a_exit - cut,
        b.identity,
        since(took, last_renewal),
        b_leads - cut
    );
    assert!(
        since(took, last_renewal) + Duration::from_millis(100) >= FAST.lease(),
        "taken before the Lease expired"
    );
    // The old leader had exited (seen by the test, so at the latest) before the new one took
    // the Lease (the server's time of the take-over).
    assert!(
        a_exit_at < took,
        "a was seen exiting at {a_exit_at}, b took the Lease at {took}"
    );
    // Requests already on their way when the connection was cut may still land (the server
    // stamps them on arrival); nothing later does, and nothing after the take-over.
    let in_flight = cut_at + SignedDuration::from_secs(1);
    assert!(
        a.writes().iter().all(|w| w.at < in_flight && w.at < took),
        "writes of a after the cut at {cut_at}: {:#?}",
        a.writes()
            .iter()
            .filter(|w| w.at >= cut_at)
            .collect::<Vec<_>>()
    );
    assert_no_overlap(&a, &b, took);
    assert!(
        a.writes()
            .iter()
            .all(|w| w.name.as_deref() != Some("second"))
    );

    let mut b = b;
    b.signal("TERM");
    assert_eq!(b.exited(Duration::from_secs(30)).await.0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_taken_stops_at_its_next_renewal_and_exits() {
    let f = Fixture::new("mlr-le-taken").await;
    f.create("first").await;
    let mut a = Replica::start(&f, "replica-a", FAST, false).await;
    f.wait_holder("replica-a", Duration::from_secs(30)).await;
    let b = Replica::start(&f, "replica-b", FAST, false).await;
    f.stable("first", Duration::from_secs(90)).await;

    // Somebody else (judging the Lease expired) records itself as the holder.
    let now = Timestamp::now();
    let steal = serde_json::json!({"spec": {
        "holderIdentity": "intruder",
        "renewTime": format!("{:.6}", now.display_with_offset(k8s_openapi::jiff::tz::Offset::UTC)),
        "leaseDurationSeconds": FAST.lease,
    }});
    Api::<Lease>::namespaced(f.admin.clone(), &f.ns)
        .patch(LEASE, &PatchParams::default(), &Patch::Merge(&steal))
        .await
        .unwrap();
    let stolen = Instant::now();
    let (code, a_exit) = a.exited(Duration::from_secs(10)).await;
    assert_ne!(code, 0);
    assert!(
        a.log().contains("is now held by \"intruder\""),
        "the log says who holds it:\n{}",
        a.log()
    );
    assert!(
        a_exit - stolen <= FAST.retry() + Duration::from_secs(1),
        "stopped {:?} after the Lease was taken (next renewal within {:?})",
        a_exit - stolen,
        FAST.retry()
    );
    let exited_at = Timestamp::now();
    // Between the take-over and its next renewal the old leader may still write: a Lease has
    // no fencing, the intruder broke the protocol (it did not wait for expiry). Reported, and
    // bounded by the retry period above.
    let window: Vec<Write> = a.writes().into_iter().filter(|w| w.at > now).collect();
    eprintln!(
        "taken → {} exited {:?} after the Lease was taken; its writes in between: {}",
        a.identity,
        a_exit - stolen,
        window.len()
    );

    // A change now is not touched by the old leader; the standby takes over when the
    // intruder's Lease expires (it never renews) and reconciles it.
    f.create("second").await;
    f.wait_holder("replica-b", Duration::from_secs(30)).await;
    f.stable("second", Duration::from_secs(60)).await;
    let took = first_lease_write(&b, now).at;
    assert!(
        since(took, now) + Duration::from_millis(100) >= FAST.lease(),
        "the standby waited for the intruder's Lease to expire"
    );
    assert!(a.writes().iter().all(|w| w.at < exited_at));
    assert!(
        a.writes()
            .iter()
            .all(|w| w.name.as_deref() != Some("second")),
        "the old leader never touched what changed after it lost the Lease"
    );
    assert_no_overlap(&a, &b, took);
    let mut b = b;
    b.signal("TERM");
    assert_eq!(b.exited(Duration::from_secs(30)).await.0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_writes_nothing_when_it_resumes() {
    // A process frozen (SIGSTOP: a long GC pause, a frozen VM or node) keeps its connections;
    // while it sleeps the standby takes over and changes happen, which queue up as watch
    // events in its sockets. When it wakes, its controller must not act on them.
    let f = Fixture::new("mlr-le-pause").await;
    f.create("first").await;
    let mut a = Replica::start(&f, "replica-a", FAST, false).await;
    f.wait_holder("replica-a", Duration::from_secs(30)).await;
    let b = Replica::start(&f, "replica-b", FAST, false).await;
    f.stable("first", Duration::from_secs(90)).await;

    a.signal("STOP");
    let paused = Instant::now();
    f.wait_holder("replica-b", Duration::from_secs(30)).await;
    // Changes for the frozen leader's watches: new resources, a changed one, a deleted child.
    for name in ["second", "third", "fourth"] {
        f.create(name).await;
    }
    let bump = serde_json::json!({"spec": {"serving": {"replicas": 2}}});
    Api::<ModelDeployment>::namespaced(f.admin.clone(), &f.ns)
        .patch("first", &PatchParams::default(), &Patch::Merge(&bump))
        .await
        .unwrap();
    Api::<Service>::namespaced(f.admin.clone(), &f.ns)
        .delete("first-stable", &Default::default())
        .await
        .unwrap();
    for name in ["second", "third", "fourth"] {
        f.stable(name, Duration::from_secs(60)).await;
    }
    eventually(
        "the new leader restored the deleted Service",
        Duration::from_secs(30),
        || async {
            Api::<Service>::namespaced(f.admin.clone(), &f.ns)
                .get_opt("first-stable")
                .await
                .ok()?
        },
    )
    .await;
    let took = first_lease_write(&b, Timestamp::now() - SignedDuration::from_secs(120)).at;

    a.signal("CONT");
    let resumed = Instant::now();
    let (code, a_exit) = a.exited(Duration::from_secs(10)).await;
    assert_ne!(
        code,
        0,
        "a leader that slept past its renew deadline exits:\n{}",
        a.log()
    );
    eprintln!(
        "paused {:?} → {} exited {:?} after it resumed",
        resumed - paused,
        a.identity,
        a_exit - resumed
    );
    let late: Vec<Write> = a.writes().into_iter().filter(|w| w.at >= took).collect();
    assert!(
        late.is_empty(),
        "the old leader wrote after the Lease was taken over at {took}: {late:#?}"
    );
    assert_no_overlap(&a, &b, took);
    let mut b = b;
    b.signal("TERM");
    assert_eq!(b.exited(Duration::from_secs(30)).await.0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_hands_the_lease_over_without_waiting_for_expiry() {
    // A long Lease, so that a handover in a second or two can only be the release.
    let slow = Timings {
        lease: 15,
        renew_deadline: 10,
        retry: 1,
    };
    let f = Fixture::new("mlr-le-stop").await;
    let mut a = Replica::start(&f, "replica-a", slow, false).await;
    f.wait_holder("replica-a", Duration::from_secs(30)).await;
    let b = Replica::start(&f, "replica-b", slow, true).await;
    b.wait_probe("/readyz", 200, Duration::from_secs(15)).await;

    // A standby that cannot reach the API server is not ready, but stays alive.
    b.proxy().cut();
    b.wait_probe("/readyz", 503, Duration::from_secs(10)).await;
    assert_eq!(b.probe("/healthz").await, Some(200), "but it stays alive");
    b.proxy().heal();
    b.wait_probe("/readyz", 200, Duration::from_secs(10)).await;

    f.create("first").await;
    f.stable("first", Duration::from_secs(90)).await;

    a.signal("TERM");
    let term = Instant::now();
    let (code, a_exit) = a.exited(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "graceful:\n{}", a.log());
    assert!(a.log().contains("released the lease"), "{}", a.log());
    let b_leads = f.wait_holder("replica-b", Duration::from_secs(10)).await;
    let release = last_lease_write(&a).at;
    let took = first_lease_write(&b, release).at;
    eprintln!(
        "SIGTERM → {} exited after {:?}; {} took the released Lease {:?} after the release \
         (lease duration {:?}), holder seen {:?} after SIGTERM",
        a.identity,
        a_exit - term,
        b.identity,
        since(took, release),
        slow.lease(),
        b_leads - term
    );
    // Released with a one-second duration: taken after that second, long before 15 s.
    assert!(since(took, release) + Duration::from_millis(100) >= Duration::from_secs(1));
    assert!(
        since(took, release) <= Duration::from_secs(1) + slow.retry() + Duration::from_secs(2),
        "the standby waited {:?} after the release",
        since(took, release)
    );
    assert!(b_leads - term < slow.lease());

    f.create("second").await;
    f.stable("second", Duration::from_secs(60)).await;
    assert_no_overlap(&a, &b, took);
    let mut b = b;
    b.signal("TERM");
    assert_eq!(b.exited(Duration::from_secs(30)).await.0, 0);
}
