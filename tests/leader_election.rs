//! Leader election on the in-memory API with two replicas of the real controller, in real time
//! (the Lease's expiry is wall-clock time): only the leader reconciles and writes; when the
//! leader cannot renew (cut off from the API) or its Lease is taken, it stops at once and exits
//! with an error, and the standby takes over; a graceful stop hands the Lease over at once.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams, PostParams};
use mlrollout::api::{ModelDeployment, Phase};
use mlrollout::controller::{self, Context, WatchScope};
use mlrollout::leader::{self, LeaderElection, LeaderError};
use mlrollout::metrics::Metrics;
use mlrollout::registry::memory::InMemoryRegistry;
use mlrollout::server::Health;
use tokio::sync::oneshot;
use tokio::time::Instant;

use common::fake_api::{ApiRequest, LoggedClient, fake_api, logged_client};

const NS: &str = "fraud";
const LEASE_NS: &str = "mlrollout-system";
const LEASE: &str = "mlrollout-leader";

fn election(identity: &str) -> LeaderElection {
    LeaderElection {
        // A wide gap between the renew deadline and the Lease's expiry, so that a loaded
        // machine does not blur "the old leader stopped before anyone could take over".
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(250),
        ..LeaderElection::new(LEASE, LEASE_NS, identity)
    }
}

fn resource(name: &str) -> ModelDeployment {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: mlrollout.io/v1alpha1
kind: ModelDeployment
metadata: {{name: {name}, namespace: {NS}}}
spec:
  model: {{trackingUri: "http://mlflow:5000", name: fraud}}
  traffic: {{provider: none}}
  drift: {{reference: {{uri: a.csv}}, current: {{uri: b.csv}}}}
"#
    ))
    .unwrap()
}

/// One operator process: leader election around the real controller, on its own client.
struct Replica {
    identity: String,
    api: LoggedClient,
    health: Health,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), LeaderError>>>,
}

impl Replica {
    fn start(base: &kube::Client, registry: Arc<InMemoryRegistry>, identity: &str) -> Replica {
        let api = logged_client(base);
        let health = Health::new();
        let ctx = Context::new(api.client.clone(), registry, Metrics::default());
        let (tx, rx) = oneshot::channel::<()>();
        let controller_health = health.clone();
        let task = tokio::spawn(leader::run(
            api.client.clone(),
            election(identity),
            health.clone(),
            rx.map(|_| ()),
            move |stop| controller::run(ctx, WatchScope::AllNamespaces, controller_health, stop),
        ));
        Replica {
            identity: identity.to_string(),
            api,
            health,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Requests other than the Lease's (what the controller did).
    fn operator_requests(&self) -> Vec<ApiRequest> {
        self.api
            .requests()
            .into_iter()
            .filter(|r| r.resource != "leases")
            .collect()
    }

    fn operator_writes(&self) -> Vec<ApiRequest> {
        self.operator_requests()
            .into_iter()
            .filter(ApiRequest::is_write)
            .collect()
    }

    fn ready(&self) -> bool {
        self.health.ready.load(Ordering::SeqCst)
    }

    /// Waits for the election loop to end on its own (a lost lease).
    async fn exited(&mut self, within: Duration) -> Result<(), LeaderError> {
        let task = self.task.take().expect("still running");
        tokio::time::timeout(within, task)
            .await
            .unwrap_or_else(|_| panic!("{} did not stop within {within:?}", self.identity))
            .expect("no panic")
    }

    /// Graceful stop (SIGTERM).
    async fn stop(mut self) -> Result<(), LeaderError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.exited(Duration::from_secs(10)).await
    }
}

async fn holder(client: &kube::Client) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), LEASE_NS)
        .get_opt(LEASE)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn phase(client: &kube::Client, name: &str) -> Option<Phase> {
    Api::<ModelDeployment>::namespaced(client.clone(), NS)
        .get(name)
        .await
        .ok()?
        .status
        .map(|s| s.phase)
}

async fn create(client: &kube::Client, name: &str) {
    Api::<ModelDeployment>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &resource(name))
        .await
        .unwrap();
}

fn registry() -> Arc<InMemoryRegistry> {
    let registry = Arc::new(InMemoryRegistry::new());
    registry.register("fraud", 3, &[], &[]);
    registry.set_alias("fraud", "champion", 3);
    registry
}

/// Both replicas' logs: no write by `a` after `a` stopped, and `b` wrote only after that.
fn assert_no_overlap(a: &Replica, a_stopped: Instant, b: &Replica) {
    let late: Vec<_> = a
        .api
        .requests()
        .into_iter()
        .filter(|r| r.at > a_stopped)
        .collect();
    assert!(
        late.is_empty(),
        "{} made requests after it stopped: {late:?}",
        a.identity
    );
    let last_a_write = a.operator_writes().last().map(|r| r.at);
    let b_writes = b.operator_writes();
    assert!(!b_writes.is_empty(), "{} never wrote", b.identity);
    if let Some(last_a_write) = last_a_write {
        assert!(
            b_writes.iter().all(|w| w.at > last_a_write),
            "{} wrote while {} still wrote: {b_writes:?}",
            b.identity,
            a.identity
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_a_standby_takes_over_when_the_lease_expires() {
    let api = fake_api().await;
    let registry = registry();
    create(&api.client, "first").await;

    let mut a = Replica::start(&api.client, registry.clone(), "replica-a");
    wait_until("a leads", Duration::from_secs(10), || async {
        holder(&api.client).await.as_deref() == Some("replica-a")
    })
    .await;
    let b = Replica::start(&api.client, registry.clone(), "replica-b");
    wait_until("first is reconciled", Duration::from_secs(10), || async {
        phase(&api.client, "first").await == Some(Phase::Stable)
    })
    .await;
    create(&api.client, "second").await;
    wait_until("second is reconciled", Duration::from_secs(10), || async {
        phase(&api.client, "second").await == Some(Phase::Stable)
    })
    .await;
    // Give the standby every chance to misbehave.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The leader reconciled and wrote (children, status, events); the standby only read the Lease.
    let a_writes = a.operator_writes();
    assert!(
        a_writes.iter().any(|w| w.resource == "deployments")
            && a_writes
                .iter()
                .any(|w| w.resource == "modeldeployments/status"),
        "{a_writes:?}"
    );
    assert!(
        b.operator_requests().is_empty(),
        "a standby neither watches nor writes: {:?}",
        b.operator_requests()
    );
    assert!(
        b.api
            .requests()
            .iter()
            .all(|r| r.resource == "leases" && r.verb == "get"),
        "a standby only reads the held Lease"
    );
    // Readiness: the leader after its first list, the standby because it can take over.
    assert!(a.ready(), "the leader is ready");
    assert!(b.ready(), "a healthy standby is ready");
    assert!(b.health.alive.load(Ordering::SeqCst));

    // The leader is cut off from the API: it cannot renew, gives up at its renew deadline
    // (before the Lease expires for the others) and exits with an error.
    a.api.partition(true);
    let cut = Instant::now();
    let error = a.exited(Duration::from_secs(5)).await.unwrap_err();
    let a_stopped = Instant::now();
    assert!(
        matches!(error, LeaderError::RenewDeadline { .. }),
        "{error}"
    );
    assert!(
        a_stopped - cut < Duration::from_secs(3),
        "stopped within the lease duration ({:?})",
        a_stopped - cut
    );
    assert!(!a.health.alive.load(Ordering::SeqCst), "liveness drops");
    assert!(!a.ready());

    // The standby takes over once the Lease expired and reconciles what changes from now on.
    wait_until("b leads", Duration::from_secs(10), || async {
        holder(&api.client).await.as_deref() == Some("replica-b")
    })
    .await;
    create(&api.client, "third").await;
    wait_until(
        "third is reconciled by b",
        Duration::from_secs(10),
        || async { phase(&api.client, "third").await == Some(Phase::Stable) },
    )
    .await;
    wait_until("b is ready as leader", Duration::from_secs(5), || async {
        b.ready()
    })
    .await;
    assert!(
        b.operator_writes()
            .iter()
            .any(|w| w.name.as_deref() == Some("third")
                && w.resource == "modeldeployments/status"
                && w.succeeded())
    );
    assert_no_overlap(&a, a_stopped, &b);

    // A graceful stop releases the Lease.
    b.stop().await.expect("a graceful stop is not an error");
    assert_eq!(holder(&api.client).await.as_deref(), Some(""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_is_taken_stops_writing_at_once_and_exits() {
    let api = fake_api().await;
    let registry = registry();
    create(&api.client, "first").await;
    let mut a = Replica::start(&api.client, registry.clone(), "replica-a");
    wait_until("first is reconciled", Duration::from_secs(10), || async {
        phase(&api.client, "first").await == Some(Phase::Stable)
    })
    .await;
    let b = Replica::start(&api.client, registry.clone(), "replica-b");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(b.operator_requests().is_empty());

    // Somebody else (judging the Lease expired) records itself as the holder.
    let now = k8s_openapi::jiff::Timestamp::now();
    let steal = serde_json::json!({"spec": {
        "holderIdentity": "intruder",
        "renewTime": format!("{:.6}", now.display_with_offset(k8s_openapi::jiff::tz::Offset::UTC)),
        "leaseDurationSeconds": 3
    }});
    Api::<Lease>::namespaced(api.client.clone(), LEASE_NS)
        .patch(LEASE, &PatchParams::default(), &Patch::Merge(&steal))
        .await
        .unwrap();
    let error = a.exited(Duration::from_secs(2)).await.unwrap_err();
    let a_stopped = Instant::now();
    match &error {
        LeaderError::Lost { holder, .. } => assert_eq!(holder, "intruder"),
        other => panic!("expected a lost lease, got {other}"),
    }
    assert!(!a.health.alive.load(Ordering::SeqCst));

    // A change now is not touched by the old leader; the standby takes over when the intruder's
    // Lease expires (it never renews) and reconciles it.
    create(&api.client, "second").await;
    wait_until("b leads", Duration::from_secs(10), || async {
        holder(&api.client).await.as_deref() == Some("replica-b")
    })
    .await;
    wait_until(
        "second is reconciled by b",
        Duration::from_secs(10),
        || async { phase(&api.client, "second").await == Some(Phase::Stable) },
    )
    .await;
    assert!(
        a.operator_requests()
            .iter()
            .all(|r| r.name.as_deref() != Some("second")),
        "the old leader never touched what changed after it lost the lease"
    );
    assert_no_overlap(&a, a_stopped, &b);
    b.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_hands_the_lease_over_without_waiting_for_expiry() {
    let api = fake_api().await;
    let registry = registry();
    let a = Replica::start(&api.client, registry.clone(), "replica-a");
    wait_until("a leads", Duration::from_secs(10), || async {
        holder(&api.client).await.as_deref() == Some("replica-a")
    })
    .await;
    let b = Replica::start(&api.client, registry.clone(), "replica-b");
    wait_until("b is a ready standby", Duration::from_secs(5), || async {
        b.ready()
    })
    .await;
    // A standby that cannot reach the API server is not ready.
    b.api.partition(true);
    wait_until(
        "b is not ready while cut off",
        Duration::from_secs(5),
        || async { !b.ready() },
    )
    .await;
    assert!(b.health.alive.load(Ordering::SeqCst), "but it stays alive");
    b.api.partition(false);

    a.stop().await.expect("graceful");
    // Released: no holder, a one-second duration, so the standby need not wait for expiry.
    let lease = Api::<Lease>::namespaced(api.client.clone(), LEASE_NS)
        .get(LEASE)
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(
        (
            lease.holder_identity.as_deref(),
            lease.lease_duration_seconds
        ),
        (Some(""), Some(1))
    );
    create(&api.client, "first").await;
    wait_until("b leads", Duration::from_secs(5), || async {
        holder(&api.client).await.as_deref() == Some("replica-b")
    })
    .await;
    wait_until(
        "first is reconciled by b",
        Duration::from_secs(10),
        || async { phase(&api.client, "first").await == Some(Phase::Stable) },
    )
    .await;
    b.stop().await.unwrap();
}
