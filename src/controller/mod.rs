//! The reconciler: observe → decide (pure) → act.
//!
//! [`observe`] reads the cluster and the registry, [`decide`] turns spec, status, observations
//! and `now` into desired children, a new status and events, and [`act`] applies them with
//! server-side apply under a single field manager.

pub mod act;
pub mod observe;
pub mod triggers;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};

use crate::analysis::Analyzer;
use crate::api::validation;
use crate::api::{ModelDeployment, ModelDeploymentStatus};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::registry::ModelRegistry;
use crate::server::Health;

use crate::core::conditions::{self, ConditionType, ConditionUpdate, Reason};
use crate::core::decide::{DecideInput, decide};
use crate::drift::check::DriftCheck;

/// How long a shutdown waits for in-flight reconciles before stopping anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Reconciles run at the same time (per watched namespace).
pub const RECONCILE_CONCURRENCY: u16 = 16;

/// How often metric series of resources that no longer exist are looked for. A deletion is
/// usually seen at once (the children's garbage collection wakes the controller); this is the
/// backstop for a resource without children.
pub const METRICS_SWEEP: Duration = Duration::from_secs(60);

/// Source of "now"; injected so tests control time.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Shared state of the reconciler.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub registry: Arc<dyn ModelRegistry>,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub clock: Clock,
    /// Measures analysis metrics (Prometheus); without one, measurements are errors.
    pub analyzer: Option<Arc<dyn Analyzer>>,
    /// Runs drift checks; without one, no drift is computed.
    pub drift: Option<Arc<dyn DriftCheck>>,
    /// The language-model advisor (used only when a resource enables it).
    pub advisor: Option<Arc<dyn crate::advisor::Advisor>>,
    /// Longest wait before a resource is looked at again. With an injected clock the decided
    /// waits are in the clock's time, not the process's: a cap lets a test move the clock by
    /// hours and see the controller act on it within seconds.
    pub max_requeue: Option<Duration>,
    /// Image of the proxy sidecar when a resource names none (`--proxy-image`).
    pub proxy_image: String,
    /// Sends notifications of lifecycle transitions in the background; without one, none.
    pub notifier: Option<crate::notify::Notifier>,
    /// Failed reconciles in a row per (namespace, name), for the error backoff; an entry goes
    /// when the resource reconciles again (or is gone), so the map stays as small as the set
    /// of failing resources.
    failures: Arc<std::sync::Mutex<std::collections::HashMap<(String, String), u32>>>,
    /// Reconcile requests from outside the watch (registry webhooks): the running controllers
    /// attach to it; share one with the webhook receiver through [`Context::with_triggers`].
    pub triggers: triggers::Triggers,
}

impl Context {
    pub fn new(client: Client, registry: Arc<dyn ModelRegistry>, metrics: Metrics) -> Self {
        let reporter = Reporter {
            controller: "mlrollout".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            registry,
            metrics,
            clock: Arc::new(Timestamp::now),
            analyzer: None,
            drift: None,
            advisor: None,
            max_requeue: None,
            proxy_image: crate::api::proxy::DEFAULT_PROXY_IMAGE.to_owned(),
            notifier: None,
            failures: Arc::default(),
            triggers: triggers::Triggers::default(),
        }
    }

    /// Counts one more failure of `resource` in a row; returns the count.
    fn note_failure(&self, resource: &ModelDeployment) -> u32 {
        let key = (
            resource.namespace().unwrap_or_default(),
            resource.name_any(),
        );
        self.failures
            .lock()
            .map(|mut f| {
                let n = f.entry(key).or_insert(0);
                *n = n.saturating_add(1);
                *n
            })
            .unwrap_or(1)
    }

    /// `resource` reconciled: its next failure starts the backoff anew.
    fn clear_failures(&self, resource: &ModelDeployment) {
        let key = (
            resource.namespace().unwrap_or_default(),
            resource.name_any(),
        );
        if let Ok(mut f) = self.failures.lock() {
            f.remove(&key);
        }
    }

    /// Caps every requeue at `max` (see [`Context::max_requeue`]).
    pub fn with_max_requeue(mut self, max: Duration) -> Self {
        self.max_requeue = Some(max);
        self
    }

    /// Requeue after `wait`, capped by [`Context::max_requeue`].
    fn requeue(&self, wait: Duration) -> Action {
        Action::requeue(self.max_requeue.map_or(wait, |max| wait.min(max)))
    }

    /// Sets the advisor.
    pub fn with_advisor(mut self, advisor: Arc<dyn crate::advisor::Advisor>) -> Self {
        self.advisor = Some(advisor);
        self
    }

    /// Sets the analysis backend.
    pub fn with_analyzer(mut self, analyzer: Arc<dyn Analyzer>) -> Self {
        self.analyzer = Some(analyzer);
        self
    }

    /// Sets the drift checker.
    pub fn with_drift(mut self, drift: Arc<dyn DriftCheck>) -> Self {
        self.drift = Some(drift);
        self
    }

    /// Uses `triggers` (also held by the webhook receiver) for reconcile requests.
    pub fn with_triggers(mut self, triggers: triggers::Triggers) -> Self {
        self.triggers = triggers;
        self
    }

    /// Sets the notifier.
    pub fn with_notifier(mut self, notifier: crate::notify::Notifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Replaces the clock (tests, the simulator).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

/// Which namespaces the controller watches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WatchScope {
    #[default]
    AllNamespaces,
    Namespace(String),
    /// Several namespaces (one controller each, run together); an empty list means all.
    Namespaces(Vec<String>),
}

impl WatchScope {
    /// The scope of `mlrollout run --namespace a --namespace b`: none means all namespaces.
    pub fn from_namespaces(namespaces: Vec<String>) -> Self {
        let mut namespaces: Vec<String> =
            namespaces.into_iter().filter(|n| !n.is_empty()).collect();
        namespaces.sort();
        namespaces.dedup();
        match namespaces.len() {
            0 => WatchScope::AllNamespaces,
            1 => WatchScope::Namespace(namespaces.remove(0)),
            _ => WatchScope::Namespaces(namespaces),
        }
    }

    /// The watched namespaces, `None` for all.
    pub fn namespaces(&self) -> Option<Vec<String>> {
        match self {
            WatchScope::AllNamespaces => None,
            WatchScope::Namespace(ns) => Some(vec![ns.clone()]),
            WatchScope::Namespaces(list) if list.is_empty() => None,
            WatchScope::Namespaces(list) => Some(list.clone()),
        }
    }
}

/// One reconciliation of one ModelDeployment.
pub async fn reconcile(resource: Arc<ModelDeployment>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let outcome = reconcile_inner(&resource, &ctx).await;
    if outcome.is_ok() {
        ctx.clear_failures(&resource);
    }
    let reason = outcome.as_ref().err().map(|e| e.category().metric_label());
    ctx.metrics.observe_reconcile(started.elapsed(), reason);
    outcome
}

async fn reconcile_inner(cached: &ModelDeployment, ctx: &Context) -> Result<Action> {
    let name = cached.name_any();
    let namespace = cached
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(name.clone()))?;
    // Decide on the stored resource, not the watch cache: a reconcile from a stale cache would
    // apply children for an older status (a route weight moving back) before its status write
    // is refused. A GET without resourceVersion is a consistent read.
    let api: Api<ModelDeployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(fresh) = api.get_opt(&name).await? else {
        ctx.metrics.forget(&namespace, &name);
        return Ok(Action::await_change());
    };
    let resource = &fresh;
    // Deleted resources: children go with them through owner references, metrics here.
    if resource.meta().deletion_timestamp.is_some() {
        ctx.metrics.forget(&namespace, &name);
        return Ok(Action::await_change());
    }
    let owner = resource
        .controller_owner_ref(&())
        .ok_or_else(|| Error::MissingUid(name.clone()))?;

    let now = (ctx.clock)();
    let validated = validation::validate(&resource.spec)
        .map(|valid| valid.with_default_proxy_image(&ctx.proxy_image));
    let observe::Observation {
        observed,
        credentials,
    } = observe::observe(ctx, resource, validated.as_ref().ok(), &namespace, now).await?;
    let default_status = ModelDeploymentStatus::default();
    let current = resource.status.as_ref().unwrap_or(&default_status);
    let uid = resource.metadata.uid.clone().unwrap_or_default();
    // Kept for the notifications (the failing measurement of a rollback).
    let measurements = observed.lifecycle.measurements.clone();
    let mut decision = decide(DecideInput {
        name: &name,
        namespace: &namespace,
        uid: &uid,
        generation: resource.metadata.generation,
        owner,
        spec: &validated,
        status: current,
        observed,
        now,
    });

    apply_children(ctx, resource, &namespace, &mut decision, current, now).await?;
    if let Ok(credentials) = &credentials {
        act::write_registry(ctx, resource, credentials, &mut decision.status, now).await;
    }
    act::write_status(ctx, resource, &namespace, &decision.status).await?;
    act::publish_events(ctx, resource, &decision.events).await;
    act::notify(
        ctx,
        resource,
        current,
        &decision,
        measurements.as_deref(),
        now,
    );
    report(
        ctx,
        &namespace,
        &name,
        &resource.spec,
        current,
        &decision.status,
    );
    Ok(ctx.requeue(decision.requeue_after))
}

/// Applies the decided children. If that fails the decided status is NOT written (the state
/// machine does not advance past what the cluster holds), only a condition saying what failed.
async fn apply_children(
    ctx: &Context,
    resource: &ModelDeployment,
    namespace: &str,
    decision: &mut crate::core::decide::Decision,
    current: &ModelDeploymentStatus,
    now: Timestamp,
) -> Result<()> {
    let Some(children) = &decision.apply else {
        return Ok(());
    };
    let applied = match act::apply_children(ctx, namespace, children).await {
        Ok(()) => {
            let owner_uid = resource.metadata.uid.as_deref().unwrap_or_default();
            act::remove_children(ctx, namespace, owner_uid, &decision.remove).await
        }
        failed => failed,
    };
    let generation = resource.metadata.generation;
    if let Err(error) = applied {
        let mut status = current.clone();
        let update = ConditionUpdate::new(
            ConditionType::Synced,
            false,
            error.category().reason(),
            format!("could not apply the desired objects, the rollout holds: {error}"),
        );
        conditions::set(&mut status.conditions, &update, generation, now);
        act::write_status(ctx, resource, namespace, &status).await?;
        return Err(error);
    }
    let update = ConditionUpdate::new(
        ConditionType::Synced,
        true,
        Reason::Applied,
        "all desired objects are applied",
    );
    conditions::set(&mut decision.status.conditions, &update, generation, now);
    Ok(())
}

/// The operator's own metrics and one log line per reconcile.
fn report(
    ctx: &Context,
    namespace: &str,
    name: &str,
    spec: &crate::api::ModelDeploymentSpec,
    before: &ModelDeploymentStatus,
    after: &ModelDeploymentStatus,
) {
    ctx.metrics
        .observe_decision(namespace, name, spec, before, after);
    ctx.metrics.observe_state(
        namespace,
        name,
        after.phase,
        after.canary_weight,
        after.mirror_percent,
    );
    tracing::info!(
        %namespace, %name,
        phase = after.phase.as_str(),
        stable = after.stable_version.as_deref().unwrap_or("-"),
        message = after.message.as_deref().unwrap_or(""),
        "reconciled"
    );
}

/// Retries failed reconciles with a delay; the error is logged and counted in `reconcile`.
///
/// A conflict means another writer (or a newer version of the resource) got there first: the
/// next reconcile works on fresh state, so it comes at once.
pub fn error_policy(resource: Arc<ModelDeployment>, error: &Error, ctx: Arc<Context>) -> Action {
    let category = error.category();
    if category == crate::error::ErrorCategory::KubeConflict {
        tracing::debug!(name = %resource.name_any(), error = %error, "stale view, retrying");
        return Action::requeue(Duration::from_millis(200));
    }
    let failures = ctx.note_failure(&resource);
    let delay = crate::retry::reconcile_backoff(failures, ERROR_BACKOFF_BASE, ERROR_BACKOFF_MAX);
    tracing::warn!(
        name = %resource.name_any(),
        reason = category.reason().as_str(),
        error = %error,
        failures,
        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        "reconcile failed"
    );
    ctx.requeue(delay)
}

/// First wait after a failed reconcile; doubled (with jitter) for each further failure in a row
/// of the same resource, up to [`ERROR_BACKOFF_MAX`]. One broken resource then costs little,
/// and many that failed together (an API server restart) do not retry in step.
pub const ERROR_BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest wait between retries of a failing resource.
pub const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Runs the controller until `shutdown` resolves.
///
/// With a list of namespaces, one `Controller` per namespace runs (all in this task, sharing
/// the context and the shutdown signal); every watch and every request is then namespaced, so
/// a Role per watched namespace is all the RBAC it needs. Ready once every controller's first
/// list is done.
pub async fn run(
    ctx: Context,
    scope: WatchScope,
    health: Health,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = futures::FutureExt::shared(shutdown);
    let namespaces: Vec<Option<String>> = match scope.namespaces() {
        None => vec![None],
        Some(list) => list.into_iter().map(Some).collect(),
    };
    let controllers: Vec<_> = namespaces
        .iter()
        .map(|namespace| {
            let controller = controller_for(&ctx.client, namespace.as_deref());
            // Registry webhooks request reconciles of the resources in this controller's store.
            let requests = ctx.triggers.attach(controller.store());
            controller
                .reconcile_on(requests)
                .graceful_shutdown_on(shutdown.clone())
        })
        .collect();
    mark_ready_after_first_list(&controllers, &health);
    let ctx = Arc::new(ctx);
    let stores: Vec<_> = controllers.iter().map(|c| c.store()).collect();
    let sweeper = tokio::spawn(sweep_metrics(stores, ctx.clone(), health.ready.clone()));

    let running = futures::future::join_all(controllers.into_iter().map(|controller| {
        let ctx = ctx.clone();
        controller
            .run(reconcile, error_policy, ctx.clone())
            .for_each(move |result| {
                let ctx = ctx.clone();
                async move {
                    match result {
                        // A reconcile for a resource that is gone: so are its metrics.
                        Err(kube::runtime::controller::Error::ObjectNotFound(gone)) => {
                            ctx.metrics
                                .forget(gone.namespace.as_deref().unwrap_or_default(), &gone.name);
                        }
                        Err(error) => tracing::debug!(%error, "controller event"),
                        Ok(_) => {}
                    }
                }
            })
    }));
    // A controller that never listed (API server unreachable) does not notice the graceful
    // shutdown; give in-flight reconciles a bounded time, then stop anyway.
    let deadline = async {
        shutdown.clone().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        _ = running => {}
        _ = deadline => tracing::warn!(grace = ?SHUTDOWN_GRACE, "controller did not stop in time; stopping anyway"),
    }
    sweeper.abort();
    ctx.triggers.detach_all();
    health.alive.store(false, Ordering::SeqCst);
    tracing::info!("controller stopped");
}

/// Every [`METRICS_SWEEP`], removes the metric series of resources no longer in any store
/// (only once the stores hold their first list: an empty store is not an empty cluster).
async fn sweep_metrics(
    stores: Vec<kube::runtime::reflector::Store<ModelDeployment>>,
    ctx: Arc<Context>,
    ready: Arc<std::sync::atomic::AtomicBool>,
) {
    loop {
        tokio::time::sleep(METRICS_SWEEP).await;
        if !ready.load(Ordering::SeqCst) {
            continue;
        }
        let present: std::collections::HashSet<(String, String)> = stores
            .iter()
            .flat_map(|store| store.state())
            .map(|r| (r.namespace().unwrap_or_default(), r.name_any()))
            .collect();
        for (namespace, name) in ctx.metrics.resources() {
            if !present.contains(&(namespace.clone(), name.clone())) {
                ctx.metrics.forget(&namespace, &name);
            }
        }
    }
}

/// One controller for a namespace (`None`: all of them): ModelDeployments and the children
/// it manages.
fn controller_for(client: &Client, namespace: Option<&str>) -> Controller<ModelDeployment> {
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        match namespace {
            None => Api::all(client.clone()),
            Some(ns) => Api::namespaced(client.clone(), ns),
        }
    }
    // Children are selected by label so the operator caches only what it manages.
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=mlrollout");
    Controller::new(
        api::<ModelDeployment>(client, namespace),
        watcher::Config::default(),
    )
    // Bounded parallelism: at scale, 1,000 reconciles in flight at once only queue on the
    // API server and hold their memory; 16 keep both busy.
    .with_config(kube::runtime::controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
    .owns(api::<Deployment>(client, namespace), owned.clone())
    .owns(api::<Service>(client, namespace), owned.clone())
    .owns(api::<Job>(client, namespace), owned)
}

/// Sets readiness once every controller's first list of ModelDeployments is in its store.
fn mark_ready_after_first_list(controllers: &[Controller<ModelDeployment>], health: &Health) {
    let stores: Vec<_> = controllers.iter().map(|c| c.store()).collect();
    let ready = health.ready.clone();
    tokio::spawn(async move {
        // The store's readiness signal wakes a single waiter, and the controller itself waits on
        // it too; polling with a short timeout re-registers this task each time.
        for store in stores {
            loop {
                match tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready())
                    .await
                {
                    Ok(Ok(())) => break,
                    Ok(Err(_)) => return,
                    Err(_) => continue,
                }
            }
        }
        ready.store(true, Ordering::SeqCst);
        tracing::info!("first list of ModelDeployments done; ready");
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn resource(name: &str) -> ModelDeployment {
        let mut r = ModelDeployment::new(name, Default::default());
        r.metadata.namespace = Some("ml".into());
        r
    }

    #[tokio::test]
    async fn failures_are_counted_per_resource_and_cleared_by_a_success() {
        crate::cli::install_crypto_provider();
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let ctx = Context::new(
            client,
            Arc::new(crate::registry::memory::InMemoryRegistry::new()),
            Metrics::default(),
        );
        let (a, b) = (resource("a"), resource("b"));
        assert_eq!(ctx.note_failure(&a), 1);
        assert_eq!(ctx.note_failure(&a), 2);
        assert_eq!(ctx.note_failure(&b), 1, "per resource");
        ctx.clear_failures(&a);
        assert_eq!(ctx.note_failure(&a), 1, "a success starts the backoff anew");
        // What the counts mean: waits that grow from 5 s to the 5 min cap.
        let first = crate::retry::reconcile_backoff(1, ERROR_BACKOFF_BASE, ERROR_BACKOFF_MAX);
        let later = crate::retry::reconcile_backoff(12, ERROR_BACKOFF_BASE, ERROR_BACKOFF_MAX);
        assert!(first < Duration::from_secs(11) && later >= ERROR_BACKOFF_MAX);
    }
}
