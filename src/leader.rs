//! Leader election with a `coordination.k8s.io/v1` Lease, so that several replicas can run
//! and only one of them writes.
//!
//! [`run`] is an acquire/renew loop around the work (the controller):
//! - **standby**: every `retry_period` the replica tries to take the Lease
//!   ([`kube_leader_election::LeaseLock::try_acquire_or_renew`]); it takes it when the Lease does
//!   not exist or its holder let it expire. The crate's take-over is a merge patch without a
//!   resourceVersion precondition, so two standbys can both believe they won a race; a replica
//!   therefore leads only after a *second* successful acquire/renew one `retry_period` later
//!   (the loser of a race sees the other holder by then and stays standby).
//! - **leading**: the work starts, and a separate task renews the Lease every `retry_period`.
//!   When the Lease is lost — another holder is recorded (somebody judged it expired and took
//!   it), or no renewal succeeded for `renew_deadline`, which is shorter than the Lease's
//!   duration so the replica stops before anyone else may take over — the work is **dropped
//!   at once** (in-flight reconciles are cancelled at their next await, no graceful drain: a
//!   replica that is not the leader must not write) and [`run`] returns an error; the process
//!   exits non-zero and Kubernetes restarts it as a fresh standby (what linkerd's policy
//!   controller does).
//! - **fencing**: by its own (monotonic) clock the leader may act until the start of its last
//!   successful renewal plus `renew_deadline` — before anyone else may take the Lease. The
//!   work's client comes from [`StopSignal::fence`]: past that instant (or once the Lease is
//!   lost) it sends nothing and fails every request at once. Dropping the work is not enough
//!   on its own: the controller runs each reconcile as a task of its own, and a process that
//!   was frozen (a long pause, a stopped VM, SIGSTOP) past its Lease wakes up with those tasks
//!   and queued watch events ready to run — they could write before the renewal task has
//!   noticed that the Lease is gone.
//! - **shutdown** (SIGTERM): the work gets a graceful stop signal, the Lease is kept renewed
//!   while it drains, then released (`step_down`) so a standby takes over within a second
//!   instead of waiting for the Lease to expire.
//!
//! Readiness (`/readyz`) with leader election: a **standby is ready** when its last look at the
//! Lease succeeded (it can reach the API server and is able to take over), and the **leader is
//! ready** once the controller's first list is done (set by [`crate::controller::run`]); between
//! taking the Lease and that first list the leader reports not ready. Readiness here gates
//! rolling updates and the metrics Service, not request traffic: a standby that never became
//! ready would block the rollout of a two-replica Deployment forever (the new pod can only lead
//! after the old leader is gone, which the rollout waits for).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube_leader_election::{LeaseLock, LeaseLockParams, LeaseLockResult};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::server::Health;

/// Settings of the election (defaults of client-go's leader election: 15 s / 10 s / 2 s).
#[derive(Debug, Clone)]
pub struct LeaderElection {
    /// Name of the Lease.
    pub lease_name: String,
    /// Namespace of the Lease (the operator's own namespace).
    pub lease_namespace: String,
    /// This replica's identity in the Lease (the pod name).
    pub identity: String,
    /// How long the Lease is valid after a renewal (whole seconds, at least 1).
    pub lease_duration: Duration,
    /// The leader gives up (stops writing) when no renewal succeeded for this long; shorter than
    /// `lease_duration` so it has stopped before a standby may take over.
    pub renew_deadline: Duration,
    /// Interval between acquire/renew attempts.
    pub retry_period: Duration,
}

impl LeaderElection {
    /// An election with client-go's default timings.
    pub fn new(
        lease_name: impl Into<String>,
        lease_namespace: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            lease_name: lease_name.into(),
            lease_namespace: lease_namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Checks the timings and names.
    pub fn validate(&self) -> Result<(), LeaderError> {
        let fail = |m: String| Err(LeaderError::Config(m));
        if self.lease_name.is_empty() {
            return fail("the lease name is empty".into());
        }
        if self.lease_namespace.is_empty() {
            return fail("the lease namespace is empty".into());
        }
        if self.identity.is_empty() {
            return fail("the identity is empty (set POD_NAME or --leader-identity)".into());
        }
        if self.lease_duration < Duration::from_secs(1) || self.lease_duration.subsec_nanos() != 0 {
            return fail(format!(
                "the lease duration must be a whole number of seconds, at least 1 (got {:?})",
                self.lease_duration
            ));
        }
        if self.renew_deadline >= self.lease_duration {
            return fail(format!(
                "the renew deadline ({:?}) must be shorter than the lease duration ({:?})",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return fail(format!(
                "the retry period ({:?}) must be positive and shorter than the renew deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        Ok(())
    }
}

/// Why leading ended with an error (the process should exit non-zero).
#[derive(Debug, Clone, thiserror::Error)]
pub enum LeaderError {
    #[error("invalid leader election settings: {0}")]
    Config(String),
    #[error("lost the lease {namespace}/{name}: it is now held by {holder:?}")]
    Lost {
        namespace: String,
        name: String,
        holder: String,
    },
    #[error(
        "could not renew the lease {namespace}/{name} within the renew deadline of {deadline:?}: {last_error}"
    )]
    RenewDeadline {
        namespace: String,
        name: String,
        deadline: Duration,
        last_error: String,
    },
    #[error("the lease renewal task stopped unexpectedly")]
    RenewerStopped,
}

/// Graceful stop signal handed to the work: resolves when the process is asked to stop.
/// (Losing the Lease does not use it: the work is dropped instead.) It also hands out the
/// fenced client the work must use ([`StopSignal::fence`]).
pub struct StopSignal {
    stop: oneshot::Receiver<()>,
    fence: Fence,
}

impl StopSignal {
    /// `client`, fenced: its requests fail without being sent once this replica may no longer
    /// act as the leader (see the module documentation). Give it to everything the work
    /// writes with (the controller's client and its event recorder).
    pub fn fence(&self, client: Client) -> Client {
        let namespace = client.default_namespace().to_string();
        Client::new(
            FencedService {
                inner: client,
                fence: self.fence.clone(),
            },
            namespace,
        )
    }
}

impl Future for StopSignal {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        // A dropped sender also means stop.
        Pin::new(&mut self.stop).poll(cx).map(|_| ())
    }
}

/// Until when (monotonic clock) this replica may act as the leader; `None`: not at all.
#[derive(Clone, Default)]
struct Fence(Arc<Mutex<Option<Instant>>>);

impl Fence {
    fn valid(&self) -> bool {
        self.0
            .lock()
            .map(|until| until.is_some_and(|until| Instant::now() < until))
            .unwrap_or(false)
    }

    fn extend(&self, until: Instant) {
        if let Ok(mut current) = self.0.lock() {
            *current = Some(until);
        }
    }

    fn revoke(&self) {
        if let Ok(mut current) = self.0.lock() {
            *current = None;
        }
    }
}

/// Refused by the fence: the request was not sent.
#[derive(Debug, thiserror::Error)]
#[error("not the leader any more (lease not renewed in time or lost): request not sent")]
pub struct NotLeader;

/// The work's client: checks the fence right before each request is handed to the connection.
#[derive(Clone)]
struct FencedService {
    inner: Client,
    fence: Fence,
}

impl tower::Service<http::Request<kube::client::Body>> for FencedService {
    type Response = http::Response<kube::client::Body>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<kube::client::Body>) -> Self::Future {
        if !self.fence.valid() {
            tracing::warn!(
                method = %request.method(),
                path = request.uri().path(),
                "not the leader any more: request not sent"
            );
            return futures::future::ready(Err(NotLeader.into())).boxed();
        }
        let inner = self.inner.clone();
        async move { Ok(inner.send(request).await?) }.boxed()
    }
}

/// Runs `work` only while this replica holds the Lease; see the module documentation.
///
/// Returns `Ok(())` after `shutdown` (the Lease released if it was held) and an error when the
/// Lease was lost or the settings are invalid.
pub async fn run<S, F, W>(
    client: Client,
    config: LeaderElection,
    health: Health,
    shutdown: S,
    work: F,
) -> Result<(), LeaderError>
where
    S: Future<Output = ()> + Send,
    F: FnOnce(StopSignal) -> W,
    W: Future<Output = ()> + Send,
{
    config.validate()?;
    let lock = Arc::new(lease_lock(client, &config));
    let mut shutdown = std::pin::pin!(shutdown);

    let Some(confirmed) = standby(&lock, &config, &health, shutdown.as_mut()).await else {
        return Ok(());
    };
    let fence = Fence::default();
    fence.extend(confirmed + config.renew_deadline);
    tracing::info!(
        lease = %config.lease_name,
        namespace = %config.lease_namespace,
        identity = %config.identity,
        "leading: starting the controller"
    );
    // Leading but not listed yet: not ready until the controller's first list.
    health.ready.store(false, Ordering::SeqCst);

    let (lost_tx, mut lost_rx) = oneshot::channel();
    let renewer = tokio::spawn(renew(
        lock.clone(),
        config.clone(),
        confirmed,
        fence.clone(),
        lost_tx,
    ));
    let (stop_tx, stop_rx) = oneshot::channel();
    let mut stop_tx = Some(stop_tx);
    let mut work = Box::pin(work(StopSignal {
        stop: stop_rx,
        fence: fence.clone(),
    }));
    let outcome = loop {
        tokio::select! {
            biased;
            lost = &mut lost_rx => break Err(lost.unwrap_or(LeaderError::RenewerStopped)),
            () = &mut work => break Ok(()),
            () = shutdown.as_mut(), if stop_tx.is_some() => {
                tracing::info!("shutdown requested: stopping the controller, then releasing the lease");
                if let Some(tx) = stop_tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    };
    // Not the leader any more (or stopping): the controller and its in-flight reconciles are
    // dropped right here, before anything else, so no further write is started (the fence
    // already refuses them).
    fence.revoke();
    drop(work);
    renewer.abort();
    finish(outcome, &lock, &config, &health).await
}

fn lease_lock(client: Client, config: &LeaderElection) -> LeaseLock {
    LeaseLock::new(
        client,
        &config.lease_namespace,
        LeaseLockParams {
            lease_name: config.lease_name.clone(),
            holder_id: config.identity.clone(),
            lease_ttl: config.lease_duration,
        },
    )
}

/// After leading: a clean stop releases the lease for a quick hand-over; a lost lease marks
/// the process unready and not alive (the pod restarts and stands by again).
async fn finish(
    outcome: Result<(), LeaderError>,
    lock: &LeaseLock,
    config: &LeaderElection,
    health: &Health,
) -> Result<(), LeaderError> {
    match outcome {
        Ok(()) => {
            release(lock, config).await;
            Ok(())
        }
        Err(error) => {
            health.ready.store(false, Ordering::SeqCst);
            health.alive.store(false, Ordering::SeqCst);
            tracing::error!(%error, "leadership lost: the controller was stopped");
            Err(error)
        }
    }
}

/// Waits for leadership: the start of the attempt that confirmed it; `None` when `shutdown`
/// came first.
async fn standby(
    lock: &LeaseLock,
    config: &LeaderElection,
    health: &Health,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Option<Instant> {
    let mut acquired_once = false;
    loop {
        let started = Instant::now();
        let attempt = tokio::select! {
            biased;
            () = shutdown.as_mut() => {
                if acquired_once {
                    release(lock, config).await;
                }
                return None;
            }
            attempt = lock.try_acquire_or_renew() => attempt,
        };
        match attempt {
            Ok(LeaseLockResult::Acquired(_)) if acquired_once => return Some(started),
            Ok(LeaseLockResult::Acquired(_)) => {
                acquired_once = true;
                tracing::debug!(
                    lease = %config.lease_name,
                    "took the lease; confirming it after one retry period"
                );
            }
            Ok(LeaseLockResult::NotAcquired(lease)) => {
                if acquired_once {
                    tracing::info!(
                        holder = holder(&lease),
                        "another replica took the lease at the same time"
                    );
                }
                acquired_once = false;
                health.ready.store(true, Ordering::SeqCst);
                tracing::debug!(holder = holder(&lease), "standby: the lease is held");
            }
            Err(error) => {
                acquired_once = false;
                health.ready.store(false, Ordering::SeqCst);
                tracing::warn!(%error, lease = %config.lease_name, "standby: cannot read or take the lease");
            }
        }
        tokio::select! {
            biased;
            () = shutdown.as_mut() => {
                if acquired_once {
                    release(lock, config).await;
                }
                return None;
            }
            () = tokio::time::sleep(config.retry_period) => {}
        }
    }
}

/// Renews the Lease until it is lost; moves the fence with each renewal, closes it and
/// reports the loss on `lost`.
async fn renew(
    lock: Arc<LeaseLock>,
    config: LeaderElection,
    mut last_renew: Instant,
    fence: Fence,
    lost: oneshot::Sender<LeaderError>,
) {
    loop {
        tokio::time::sleep(config.retry_period).await;
        let deadline = last_renew + config.renew_deadline;
        let started = Instant::now();
        let error = match tokio::time::timeout_at(deadline, lock.try_acquire_or_renew()).await {
            Ok(Ok(LeaseLockResult::Acquired(_))) => {
                last_renew = started;
                fence.extend(started + config.renew_deadline);
                continue;
            }
            Ok(Ok(LeaseLockResult::NotAcquired(lease))) => {
                fence.revoke();
                let _ = lost.send(LeaderError::Lost {
                    namespace: config.lease_namespace.clone(),
                    name: config.lease_name.clone(),
                    holder: holder(&lease).to_string(),
                });
                return;
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => "the renewal request timed out".to_string(),
        };
        if Instant::now() >= deadline {
            fence.revoke();
            let _ = lost.send(LeaderError::RenewDeadline {
                namespace: config.lease_namespace.clone(),
                name: config.lease_name.clone(),
                deadline: config.renew_deadline,
                last_error: error,
            });
            return;
        }
        tracing::warn!(%error, lease = %config.lease_name, "could not renew the lease; retrying");
    }
}

/// Releases the Lease (a standby takes over within a second); failures are only logged.
async fn release(lock: &LeaseLock, config: &LeaderElection) {
    match lock.step_down().await {
        Ok(()) => tracing::info!(lease = %config.lease_name, "released the lease"),
        Err(error) => {
            tracing::warn!(%error, lease = %config.lease_name, "could not release the lease")
        }
    }
}

fn holder(lease: &Lease) -> &str {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_timings_are_valid() {
        LeaderElection::new("mlrollout-leader", "mlrollout", "pod-0")
            .validate()
            .unwrap();
    }

    #[test]
    fn invalid_timings_are_rejected() {
        let base = LeaderElection::new("l", "ns", "me");
        let cases = [
            LeaderElection {
                lease_duration: Duration::from_millis(1500),
                ..base.clone()
            },
            LeaderElection {
                renew_deadline: Duration::from_secs(15),
                ..base.clone()
            },
            LeaderElection {
                retry_period: Duration::from_secs(10),
                ..base.clone()
            },
            LeaderElection {
                retry_period: Duration::ZERO,
                ..base.clone()
            },
            LeaderElection {
                identity: String::new(),
                ..base.clone()
            },
        ];
        for case in cases {
            assert!(
                matches!(case.validate(), Err(LeaderError::Config(_))),
                "{case:?}"
            );
        }
    }
}
