//! The chart's RBAC on the real API server. The chart is rendered by Helm itself
//! (`tests/scripts/chart_check.py --rbac-only`, with a release name and namespace unique to the
//! test), its ServiceAccount, (Cluster)Roles and bindings are applied to the real server, and
//! the operator runs AS that ServiceAccount (a client certificate for
//! `system:serviceaccount:<ns>:<sa>`, which RBAC treats as the ServiceAccount):
//!
//! - a whole lifecycle (leader election Lease, drift → retraining Job → evaluation → shadow →
//!   10/50/100 → promoted, the candidate deleted, an aborted retraining whose Job is deleted,
//!   a Gateway API, an InferencePool-backed and an Istio resource, Events and an event series) gets no 403 — neither in
//!   the API server's audit log (writes) nor in any answer the operator received (reads too);
//!   what it used is exactly what the ClusterRole grants (least privilege, both ways);
//! - requests outside the role get 403 from the server (and the audit log records that);
//! - `--namespace a --namespace b` (the chart's namespaced scenario: Roles in the watched
//!   namespaces only, no ClusterRole) reconciles those namespaces alone and every request it
//!   makes is namespaced — a cluster-wide one would have been refused.
//!
//! Needs `MLROLLOUT_PYTHON` (the venv of tests/harness/install.sh, with helm-python-sdk); run it
//! as the README says: `bash tests/run.sh`, or `bash tests/harness/install.sh &&
//! . target/harness.env && cargo test --features harness --test rbac`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane and helm-python-sdk (MLROLLOUT_PYTHON): full suite only, `cargo test
// --features harness` (tests/run.sh turns it on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use clap::Parser;
use futures::FutureExt;
use futures::future::BoxFuture;
use http::{Method, Request, Response};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::client::Body;
use mlrollout::api::EventReason;
use mlrollout::api::{ModelDeployment, ModelDeploymentStatus, Phase};
use mlrollout::cli::{Cli, Command as CliCommand, run::RunArgs};
use mlrollout::controller::{self, Context, WatchScope, act};
use mlrollout::core::decide::{EventCause, EventIntent};
use mlrollout::leader::{self, LeaderElection};
use mlrollout::metrics::Metrics;
use mlrollout::registry::memory::InMemoryRegistry;
use mlrollout::server::Health;
use tokio::sync::oneshot;

use common::cluster::{client, cluster, eventually, finish_job, namespace};
use common::operator::{
    ScaledClock, ScriptedAnalyzer, ScriptedDrift, TEST_MAX_REQUEUE, job_attempt_id,
};

const MODEL: &str = "fraud-detector";

/// (apiGroup, resource, verb).
type Permission = (String, String, String);

// ---------------------------------------------------------------- the chart, rendered by Helm

/// The chart's RBAC, rendered by Helm for release `release` in namespace `namespace`, the
/// namespaced scenario watching `watch` (see [`common::chart::rendered_for_cluster`]).
fn rendered_rbac(release: &str, namespace: &str, watch: &[&str]) -> serde_json::Value {
    common::chart::rendered_for_cluster(release, namespace, watch, "rbac")
}

/// The `mlrollout run` arguments of the chart's Deployment, parsed as the binary parses them.
fn operator_args(scenario: &serde_json::Value) -> RunArgs {
    let args: Vec<String> = scenario["args"]
        .as_array()
        .expect("the Deployment's args")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let cli = Cli::try_parse_from(std::iter::once("mlrollout".to_string()).chain(args))
        .expect("the chart's args parse");
    match cli.command {
        CliCommand::Run(args) => args,
        other => panic!("the chart does not run the operator: {other:?}"),
    }
}

fn manifests<'a>(scenario: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    scenario["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter(|m| m["kind"] == kind)
        .collect()
}

/// The chart's ServiceAccount: (namespace, name).
fn service_account(scenario: &serde_json::Value) -> (String, String) {
    let accounts = manifests(scenario, "ServiceAccount");
    assert_eq!(accounts.len(), 1, "one ServiceAccount");
    let meta = &accounts[0]["metadata"];
    (
        meta["namespace"].as_str().unwrap().to_string(),
        meta["name"].as_str().unwrap().to_string(),
    )
}

/// Applies the rendered manifests as they are (server-side apply, as `helm` would create them).
fn apply(scenario: &serde_json::Value) {
    let list =
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": scenario["manifests"]});
    let mut child = cluster()
        .kubectl()
        .args(["apply", "--server-side", "--field-manager=helm", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(list.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "kubectl apply of the chart's RBAC failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Deletes what the test created when it ends, also when it fails: its namespaces and the
/// chart's cluster-scoped objects (they do not go with a namespace).
struct Cleanup {
    namespaces: Vec<String>,
    cluster_scoped: Vec<String>,
}

impl Cleanup {
    fn new(scenario: &serde_json::Value, namespaces: &[&String]) -> Cleanup {
        let mut cluster_scoped = Vec::new();
        for kind in ["ClusterRole", "ClusterRoleBinding"] {
            for m in manifests(scenario, kind) {
                cluster_scoped.push(format!(
                    "{}/{}",
                    kind.to_lowercase(),
                    m["metadata"]["name"].as_str().unwrap()
                ));
            }
        }
        Cleanup {
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            cluster_scoped,
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut targets = self.cluster_scoped.clone();
        targets.extend(self.namespaces.iter().map(|n| format!("namespace/{n}")));
        let _ = cluster()
            .kubectl()
            .args(["delete", "--ignore-not-found", "--wait=false"])
            .args(&targets)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Every (group, resource, verb) the rules grant, with their resourceNames (empty: any).
fn granted(rules: &serde_json::Value) -> BTreeMap<Permission, Vec<String>> {
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = BTreeMap::new();
    for rule in rules.as_array().expect("rules") {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    assert!(
                        group != "*" && resource != "*" && verb != "*",
                        "wildcard rule: {rule}"
                    );
                    let previous = out.insert(
                        (group.clone(), resource.clone(), verb),
                        strings(&rule["resourceNames"]),
                    );
                    assert!(previous.is_none(), "granted twice: {rule}");
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------- the operator's identity

/// The user and groups of a ServiceAccount's token, as a client certificate.
fn service_account_user(namespace: &str, name: &str) -> (String, Vec<String>) {
    (
        format!("system:serviceaccount:{namespace}:{name}"),
        vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".into(),
        ],
    )
}

async fn client_as(user: &(String, Vec<String>)) -> kube::Client {
    let groups: Vec<&str> = user.1.iter().map(String::as_str).collect();
    cluster().client_as(&user.0, &groups).await
}

/// One request the operator sent and the real server's answer, in RBAC terms.
#[derive(Debug, Clone)]
struct ApiRequest {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or `deletecollection`.
    verb: String,
    /// API group (`""` for the core group).
    group: String,
    /// Plural resource, with `/subresource` when there is one (`modeldeployments/status`).
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    /// A server-side apply patch: on a missing object it creates it, which the API server
    /// authorizes as `create` as well.
    apply: bool,
    /// HTTP status of the answer; `None` when no answer came (connection error).
    status: Option<u16>,
}

impl ApiRequest {
    fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }
}

/// A client that records every request it sends to the real API server and the status of the
/// answer (the audit log holds writes only; this also shows reads).
#[derive(Clone)]
struct Tap {
    inner: kube::Client,
    log: RequestLog,
}

impl Tap {
    fn wrap(inner: kube::Client) -> (kube::Client, RequestLog) {
        let log: RequestLog = Arc::default();
        let namespace = inner.default_namespace().to_string();
        let tap = Tap {
            inner,
            log: log.clone(),
        };
        (kube::Client::new(tap, namespace), log)
    }
}

/// (group, resource with subresource, namespace, name) of an API path.
fn rbac_target(path: &str) -> Option<(String, String, Option<String>, Option<String>)> {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match parts.first() {
        Some(&"api") => (String::new(), parts.get(2..)?),
        Some(&"apis") => (parts.get(1)?.to_string(), parts.get(3..)?),
        _ => return None,
    };
    let (namespace, rest) = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let mut resource = rest.first()?.to_string();
    if let Some(sub) = rest.get(2) {
        resource = format!("{resource}/{sub}");
    }
    Some((
        group,
        resource,
        namespace,
        rest.get(1).map(|s| s.to_string()),
    ))
}

impl tower::Service<Request<Body>> for Tap {
    type Response = Response<Body>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let this = self.clone();
        async move {
            let uri = request.uri().clone();
            let is_watch = uri
                .query()
                .unwrap_or("")
                .split('&')
                .any(|kv| kv == "watch=true" || kv == "watch=1");
            let (group, resource, namespace, name) =
                rbac_target(uri.path()).unwrap_or_else(|| panic!("not a resource path: {uri}"));
            let verb = match *request.method() {
                Method::GET if is_watch => "watch",
                Method::GET if name.is_some() => "get",
                Method::GET => "list",
                Method::POST => "create",
                Method::PUT => "update",
                Method::PATCH => "patch",
                Method::DELETE if name.is_some() => "delete",
                Method::DELETE => "deletecollection",
                _ => panic!("unexpected method {} {uri}", request.method()),
            };
            let apply = request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/apply-patch"));
            let result = this.inner.send(request).await;
            this.log.lock().unwrap().push(ApiRequest {
                verb: verb.to_string(),
                group,
                resource,
                namespace,
                name,
                apply,
                status: result.as_ref().ok().map(|r| r.status().as_u16()),
            });
            Ok(result?)
        }
        .boxed()
    }
}

/// The requests one client sent, in order.
type RequestLog = Arc<Mutex<Vec<ApiRequest>>>;

/// [`eventually`], failing at once (naming the requests) when the server refused any request
/// of the operator: an RBAC gap otherwise only shows as a stuck resource.
async fn until<T, F, Fut>(log: &RequestLog, what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually(what, limit, || {
        let refused: Vec<ApiRequest> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.status == Some(403))
            .cloned()
            .collect();
        assert!(
            refused.is_empty(),
            "the API server refused the operator (403) while waiting for {what}: {refused:#?}"
        );
        check()
    })
    .await
}

/// What each request needs from RBAC. A server-side apply of a whole object can create it and
/// is then authorized as `create` as well; an apply to a subresource (status) never creates.
fn needed(requests: &[ApiRequest]) -> BTreeSet<Permission> {
    let mut out = BTreeSet::new();
    for r in requests {
        let mut add = |verb: &str| {
            out.insert((r.group.clone(), r.resource.clone(), verb.to_string()));
        };
        add(&r.verb);
        if r.verb == "patch" && r.apply && !r.resource.contains('/') {
            add("create");
        }
    }
    out
}

/// The controller lists then watches: one without the other is never used.
fn with_list_watch_pairs(set: &BTreeSet<Permission>) -> BTreeSet<Permission> {
    let mut out = set.clone();
    for (group, resource, verb) in set {
        let partner = match verb.as_str() {
            "list" => "watch",
            "watch" => "list",
            _ => continue,
        };
        out.insert((group.clone(), resource.clone(), partner.to_string()));
    }
    out
}

fn diff(left: &BTreeSet<Permission>, right: &BTreeSet<Permission>) -> Vec<String> {
    left.difference(right)
        .map(|(g, r, v)| format!("{}/{} {v}", if g.is_empty() { "core" } else { g }, r))
        .collect()
}

/// The status code of a refused request (`None`: it was allowed).
fn refusal<T>(result: Result<T, kube::Error>) -> Option<u16> {
    match result {
        Ok(_) => None,
        Err(kube::Error::Api(status)) => Some(status.code),
        Err(other) => panic!("no answer from the API server: {other}"),
    }
}

/// Waits until the freshly bound ServiceAccount may list ModelDeployments in `namespace`
/// (the RBAC authorizer's caches follow the bindings within moments).
async fn wait_bound(user: &(String, Vec<String>), namespace: &str) {
    let probe = client_as(user).await;
    eventually(
        "the chart's bindings are in effect",
        Duration::from_secs(20),
        || async {
            Api::<ModelDeployment>::namespaced(probe.clone(), namespace)
                .list(&ListParams::default())
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
}

// ---------------------------------------------------------------- the lifecycle

fn resource(ns: &str, name: &str, provider: &str, model: &str) -> ModelDeployment {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: mlrollout.io/v1alpha1
kind: ModelDeployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  model:
    trackingUri: "http://127.0.0.1:5000"
    name: {model}
    credentialsSecret: {{name: mlflow-credentials}}
  traffic: {{provider: {provider}, parentRefs: [{{name: gw}}], hostnames: [fraud.example.com]}}
  drift:
    reference: {{uri: ref.csv}}
    current: {{uri: cur.csv}}
    interval: 5m
  retraining:
    triggers: {{driftSeverity: high}}
    cooldown: 1h
    maxAttemptsPerDay: 3
    timeout: 30m
    jobTemplate:
      template:
        spec:
          restartPolicy: Never
          containers: [{{name: train, image: "train:1", command: ["python", "train.py"]}}]
  evaluation: {{metric: accuracy, minImprovement: 0.01}}
  shadow: {{duration: 2m, mirrorPercent: 50}}
  rollout:
    steps: [10, 50, 100]
    stepDuration: 1m
    progressDeadline: 10m
    analysis:
      prometheus:
        address: "http://127.0.0.1:9090"
        bearerTokenSecret: {{name: prometheus-token, key: token}}
      interval: 10s
      count: 3
"#
    ))
    .unwrap()
}

async fn create_secret(client: &kube::Client, ns: &str, name: &str, key: &str) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        data: Some([(key.to_string(), ByteString(b"s3cret".to_vec()))].into()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

async fn status(client: &kube::Client, ns: &str, name: &str) -> ModelDeploymentStatus {
    Api::<ModelDeployment>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap()
        .status
        .unwrap_or_default()
}

async fn wait_phase(
    log: &RequestLog,
    client: &kube::Client,
    ns: &str,
    phase: Phase,
    limit: Duration,
) {
    until(
        log,
        &format!("{MODEL} in phase {phase:?}"),
        limit,
        || async { (status(client, ns, MODEL).await.phase == phase).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_rbac_lets_the_operator_run_a_whole_lifecycle_and_nothing_more() {
    let admin = client().await;
    // Short names: the ServiceAccount's user name is a certificate's CN (at most 64 bytes).
    let ops = namespace(&admin, "rbo").await;
    let app = namespace(&admin, "mlr-rbac-app").await;
    // The release is named after the (unique) namespace: the ClusterRole's name is unique too.
    let chart = rendered_rbac(&ops, &ops, &[]);
    let default = &chart["scenarios"]["default"];
    let _cleanup = Cleanup::new(default, &[&ops, &app]);
    assert!(
        manifests(default, "ClusterRole")[0]["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with(&ops)
    );
    apply(default);
    let (sa_namespace, sa_name) = service_account(default);
    assert_eq!(sa_namespace, ops);
    let user = service_account_user(&sa_namespace, &sa_name);
    wait_bound(&user, &app).await;

    // The operator as the chart's Deployment runs it: its args, as its ServiceAccount, every
    // request recorded with the real server's answer.
    let args = operator_args(default);
    assert!(args.leader_election);
    assert_eq!(
        args.scope(),
        WatchScope::AllNamespaces,
        "{:?}",
        default["args"]
    );
    let election: LeaderElection = args
        .leader_election(&ops)
        .unwrap()
        .expect("the chart turns leader election on");
    assert_eq!(election.lease_namespace, ops);
    let lease_name = election.lease_name.clone();
    let (operator, requests) = Tap::wrap(client_as(&user).await);

    create_secret(&admin, &app, "mlflow-credentials", "token").await;
    create_secret(&admin, &app, "prometheus-token", "token").await;
    let registry = Arc::new(InMemoryRegistry::new());
    registry.register(MODEL, 3, &[("accuracy", 0.88)], &[]);
    registry.set_alias(MODEL, "champion", 3);
    registry.register("fraud-istio", 1, &[], &[]);
    registry.set_alias("fraud-istio", "champion", 1);
    registry.register("fraud-pool", 1, &[], &[]);
    registry.set_alias("fraud-pool", "champion", 1);
    let analyzer = Arc::new(ScriptedAnalyzer::default());
    analyzer.healthy();
    let drift = Arc::new(ScriptedDrift::default());
    let clock = ScaledClock::new(60);
    let context = {
        let (registry, analyzer, drift) = (registry.clone(), analyzer.clone(), drift.clone());
        let clock = clock.controller_clock();
        move |client: kube::Client| {
            Context::new(client, registry, Metrics::default())
                .with_analyzer(analyzer)
                .with_drift(drift)
                .with_clock(clock)
                .with_max_requeue(TEST_MAX_REQUEUE)
        }
    };
    let events_ctx = context.clone()(operator.clone());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let health = Health::new();
    let controller_health = health.clone();
    // The chart watches all namespaces; on the shared test cluster this one reconciles the
    // test's namespace only (cluster-wide reads are checked below, as the ServiceAccount).
    let scope = WatchScope::Namespace(app.clone());
    let lease_client = operator.clone();
    // As `mlrollout run` does it: the controller on the leader's fenced client.
    let task = tokio::spawn(leader::run(
        lease_client,
        election,
        health.clone(),
        stop_rx.map(|_| ()),
        move |stop| {
            let ctx = context(stop.fence(operator));
            controller::run(ctx, scope, controller_health, stop)
        },
    ));

    let mdeps: Api<ModelDeployment> = Api::namespaced(admin.clone(), &app);
    mdeps
        .create(
            &PostParams::default(),
            &resource(&app, MODEL, "gatewayAPI", MODEL),
        )
        .await
        .unwrap();
    mdeps
        .create(
            &PostParams::default(),
            &resource(&app, "fraud-istio", "istio", "fraud-istio"),
        )
        .await
        .unwrap();
    // InferencePool backends: the operator applies one pool per variant.
    let mut pooled = resource(&app, "fraud-pool", "gatewayAPI", "fraud-pool");
    pooled.spec.traffic.backend = Some(
        serde_json::from_value(
            serde_json::json!({"kind": "InferencePool", "endpointPickers": {
            "stable": {"name": "epp-stable", "port": 9002},
            "candidate": {"name": "epp-candidate", "port": 9002}}}),
        )
        .unwrap(),
    );
    mdeps.create(&PostParams::default(), &pooled).await.unwrap();

    // drift → Job → candidate → evaluation → shadow → steps → promoted.
    wait_phase(
        &requests,
        &admin,
        &app,
        Phase::Stable,
        Duration::from_secs(90),
    )
    .await;
    drift.set(mlrollout::api::Severity::High);
    wait_phase(
        &requests,
        &admin,
        &app,
        Phase::Retraining,
        Duration::from_secs(60),
    )
    .await;
    let job = status(&admin, &app, MODEL)
        .await
        .retraining_attempts
        .last()
        .unwrap()
        .job_name
        .clone();
    // The training container registers version 4 tagged with its attempt, then exits 0.
    let attempt = job_attempt_id(&admin, &app, &job).await;
    registry.register(
        MODEL,
        4,
        &[("accuracy", 0.91)],
        &[("mlrollout.io/attempt", attempt.as_str())],
    );
    finish_job(&admin, &app, &job, true).await;
    wait_phase(
        &requests,
        &admin,
        &app,
        Phase::Shadow,
        Duration::from_secs(60),
    )
    .await;
    until(
        &requests,
        "promoted to 4",
        Duration::from_secs(120),
        || async {
            let s = status(&admin, &app, MODEL).await;
            (s.phase == Phase::Stable && s.stable_version.as_deref() == Some("4")).then_some(())
        },
    )
    .await;
    // The candidate Deployment and Service are deleted after the promotion.
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &app);
    until(
        &requests,
        "candidate removed",
        Duration::from_secs(30),
        || async {
            deployments
                .get_opt(&format!("{MODEL}-candidate"))
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;

    // The drift is still high: after the cooldown a second attempt starts; aborting it deletes
    // its Job.
    clock.advance(Duration::from_secs(3600));
    until(
        &requests,
        "second retraining",
        Duration::from_secs(60),
        || async {
            let s = status(&admin, &app, MODEL).await;
            (s.phase == Phase::Retraining && s.retraining_attempts.len() == 2).then_some(())
        },
    )
    .await;
    let abort = serde_json::json!({"metadata": {"annotations": {"mlrollout.io/abort": "rbac"}}});
    mdeps
        .patch(MODEL, &PatchParams::default(), &Patch::Merge(&abort))
        .await
        .unwrap();
    let jobs: Api<Job> = Api::namespaced(admin.clone(), &app);
    until(
        &requests,
        "the aborted attempt's Job is deleted",
        Duration::from_secs(60),
        || async {
            let names: Vec<String> = jobs
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .filter(|j| j.metadata.deletion_timestamp.is_none())
                .filter_map(|j| j.metadata.name)
                .collect();
            (names == vec![job.clone()]).then_some(())
        },
    )
    .await;

    // The event recorder turns a repeated event into a series (a patch of the first one).
    let current = mdeps.get(MODEL).await.unwrap();
    let repeated = EventIntent {
        warning: false,
        reason: EventCause::Lifecycle(EventReason::Retry),
        note: "published twice".into(),
    };
    act::publish_events(&events_ctx, &current, &[repeated.clone(), repeated]).await;

    assert!(health.ready.load(Ordering::SeqCst), "the leader is ready");
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the operator stops")
        .expect("no panic")
        .expect("a graceful stop");

    // ---- what the real server answered: no 403, in the audit log (writes) and in every
    // answer the operator received (reads too).
    let requests = requests.lock().unwrap().clone();
    let refused: Vec<&ApiRequest> = requests.iter().filter(|r| r.status == Some(403)).collect();
    assert!(refused.is_empty(), "refused requests: {refused:?}");
    for r in &requests {
        if r.is_write() {
            assert!(
                matches!(r.status, Some(200..=299 | 404 | 409)),
                "the flow should not fail: {r:?}"
            );
        }
    }
    let audited = cluster().writes_by(&user.0);
    assert!(
        audited.iter().all(|w| w.code != Some(403)),
        "403 in the audit log: {:?}",
        audited
            .iter()
            .filter(|w| w.code == Some(403))
            .collect::<Vec<_>>()
    );
    for must in [
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "patch"),
        ("mlrollout.io", "modeldeployments/status", "patch"),
        ("apps", "deployments", "patch"),
        ("apps", "deployments", "delete"),
        ("", "services", "delete"),
        ("batch", "jobs", "create"),
        ("batch", "jobs", "delete"),
        ("gateway.networking.k8s.io", "httproutes", "patch"),
        ("networking.istio.io", "virtualservices", "patch"),
        ("inference.networking.k8s.io", "inferencepools", "patch"),
        ("events.k8s.io", "events", "create"),
        ("events.k8s.io", "events", "patch"),
    ] {
        assert!(
            audited
                .iter()
                .any(
                    |w| (w.group.as_str(), w.resource.as_str(), w.verb.as_str()) == must
                        && w.succeeded()
                ),
            "the audit log shows no successful {must:?} by {}",
            user.0
        );
    }
    assert!(
        audited
            .iter()
            .all(|w| w.namespace.as_deref() == Some(app.as_str())
                || w.namespace.as_deref() == Some(&ops)),
        "the operator wrote in its own and the watched namespace only"
    );

    eprintln!(
        "rbac: the operator as {} sent {} requests ({} writes in the audit log), none refused",
        user.0,
        requests.len(),
        audited.len()
    );

    // ---- what the operator used, against what the chart grants
    let (lease_requests, operator_requests): (Vec<ApiRequest>, Vec<ApiRequest>) = requests
        .into_iter()
        .partition(|r| r.group == "coordination.k8s.io" && r.resource == "leases");
    let used = with_list_watch_pairs(&needed(&operator_requests));
    let used_lease = needed(&lease_requests);
    assert!(
        lease_requests
            .iter()
            .all(|r| r.namespace.as_deref() == Some(ops.as_str())),
        "the Lease lives in the operator's namespace"
    );
    assert!(
        lease_requests
            .iter()
            .filter(|r| r.verb != "create")
            .all(|r| r.name.as_deref() == Some(lease_name.as_str())),
        "get and patch only touch the one Lease (the Role restricts them by resourceNames)"
    );
    let rbac = &default["rbac"];
    let cluster_roles = rbac["cluster_roles"].as_array().unwrap();
    assert_eq!(cluster_roles.len(), 1, "{rbac}");
    let cluster_rules = granted(&cluster_roles[0]["rules"]);
    let granted_set: BTreeSet<Permission> = cluster_rules.keys().cloned().collect();
    assert!(
        cluster_rules.values().all(Vec::is_empty),
        "the ClusterRole names no objects"
    );
    // Granted without being used here, for a stated reason:
    let allowed_extra: BTreeSet<Permission> = [(
        // Children's owner references set blockOwnerDeletion; the
        // OwnerReferencesPermissionEnforcement admission plugin (not on in the test cluster,
        // on in OpenShift and hardened clusters) requires update on the owner's finalizers.
        "mlrollout.io",
        "modeldeployments/finalizers",
        "update",
    )]
    .into_iter()
    .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
    .collect();
    let expected: BTreeSet<Permission> = used.union(&allowed_extra).cloned().collect();
    let too_much = diff(&granted_set, &expected);
    let missing = diff(&expected, &granted_set);
    assert!(
        too_much.is_empty() && missing.is_empty(),
        "the ClusterRole must grant exactly what the operator uses.\n\
         granted but never used: {too_much:?}\nused but not granted: {missing:?}\n\
         used: {used:?}"
    );
    for must in [
        ("mlrollout.io", "modeldeployments", "watch"),
        ("", "secrets", "get"),
        ("batch", "jobs", "get"),
        ("apps", "deployments", "get"),
    ] {
        let p = (must.0.to_string(), must.1.to_string(), must.2.to_string());
        assert!(used.contains(&p), "the flow never exercised {must:?}");
    }
    // The leader-election Role: exactly the Lease verbs used, get/patch only on that Lease.
    let roles = rbac["roles"].as_array().unwrap();
    assert_eq!(roles.len(), 1, "only the leader-election Role: {roles:?}");
    let lease_role = &roles[0];
    assert!(
        lease_role["name"]
            .as_str()
            .unwrap()
            .ends_with("-leader-election")
    );
    assert_eq!(lease_role["namespace"], ops.as_str());
    let lease_granted = granted(&lease_role["rules"]);
    let lease_granted_set: BTreeSet<Permission> = lease_granted.keys().cloned().collect();
    assert_eq!(
        lease_granted_set, used_lease,
        "leader election uses {used_lease:?}"
    );
    for ((_, _, verb), names) in &lease_granted {
        let expected_names: Vec<String> = if verb == "create" {
            vec![]
        } else {
            vec![lease_name.clone()]
        };
        assert_eq!(names, &expected_names, "resourceNames of lease {verb}");
    }
    assert!(
        !granted_set.iter().any(|(_, r, _)| r == "leases"),
        "no cluster-wide Lease access"
    );

    // ---- the real server's answers to the ServiceAccount beyond the flow
    let sa = client_as(&user).await;
    // Watching all namespaces (the chart's default) needs cluster-wide list of every kind
    // the controller watches: granted.
    for result in [
        refusal(
            Api::<ModelDeployment>::all(sa.clone())
                .list(&ListParams::default().limit(1))
                .await,
        ),
        refusal(
            Api::<Deployment>::all(sa.clone())
                .list(&ListParams::default().limit(1))
                .await,
        ),
        refusal(
            Api::<Job>::all(sa.clone())
                .list(&ListParams::default().limit(1))
                .await,
        ),
        refusal(
            Api::<k8s_openapi::api::core::v1::Service>::all(sa.clone())
                .list(&ListParams::default().limit(1))
                .await,
        ),
    ] {
        assert_eq!(result, None, "cluster-wide list is granted");
    }
    // Outside the role: 403.
    let outside = [
        (
            "list Secrets cluster-wide",
            refusal(
                Api::<Secret>::all(sa.clone())
                    .list(&ListParams::default())
                    .await,
            ),
        ),
        (
            "list Secrets in the watched namespace (get by name only)",
            refusal(
                Api::<Secret>::namespaced(sa.clone(), &app)
                    .list(&ListParams::default())
                    .await,
            ),
        ),
        (
            "create a ModelDeployment",
            refusal(
                Api::<ModelDeployment>::namespaced(sa.clone(), &app)
                    .create(
                        &PostParams::default(),
                        &resource(&app, "intruder", "none", MODEL),
                    )
                    .await,
            ),
        ),
        (
            "read another Lease (resourceNames)",
            refusal(
                Api::<Lease>::namespaced(sa.clone(), &ops)
                    .get("someone-elses-lease")
                    .await,
            ),
        ),
        (
            "create a Lease outside the operator's namespace",
            refusal(
                Api::<Lease>::namespaced(sa.clone(), &app)
                    .create(
                        &PostParams::default(),
                        &serde_json::from_value(serde_json::json!({
                            "metadata": {"name": "stray"}, "spec": {}
                        }))
                        .unwrap(),
                    )
                    .await,
            ),
        ),
        (
            "delete a Namespace",
            refusal(
                Api::<Namespace>::all(sa.clone())
                    .delete(&app, &DeleteParams::default())
                    .await,
            ),
        ),
    ];
    for (what, code) in &outside {
        assert_eq!(*code, Some(403), "{what}: expected 403 Forbidden");
    }
    // A refused write is in the audit log with its 403: the "no 403" above is meaningful.
    let audited = cluster().writes_by(&user.0);
    assert!(
        audited.iter().any(|w| w.verb == "delete"
            && w.resource == "namespaces"
            && w.name.as_deref() == Some(app.as_str())
            && w.code == Some(403)),
        "the audit log records the refused delete: {audited:?}"
    );
}

fn simple(name: &str, namespace: &str) -> ModelDeployment {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: mlrollout.io/v1alpha1
kind: ModelDeployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  model: {{trackingUri: "http://127.0.0.1:5000", name: fraud}}
  traffic: {{provider: none}}
"#
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_namespaces_are_reconciled_alone_with_namespaced_requests_only() {
    let admin = client().await;
    let ops = namespace(&admin, "rbn").await;
    let team_a = namespace(&admin, "mlr-rbac-team-a").await;
    let team_b = namespace(&admin, "mlr-rbac-team-b").await;
    let team_c = namespace(&admin, "mlr-rbac-team-c").await;
    let chart = rendered_rbac(&ops, &ops, &[&team_a, &team_b]);
    let scenario = &chart["scenarios"]["namespaced"];
    let _cleanup = Cleanup::new(scenario, &[&ops, &team_a, &team_b, &team_c]);

    // Watching a list of namespaces: no cluster-wide RBAC, the ClusterRole's very rules in a
    // Role per watched namespace, and the Lease Role in the release namespace.
    let rbac = &scenario["rbac"];
    assert!(manifests(scenario, "ClusterRole").is_empty());
    assert!(manifests(scenario, "ClusterRoleBinding").is_empty());
    let cluster_rules =
        granted(&chart["scenarios"]["default"]["rbac"]["cluster_roles"][0]["rules"]);
    let mut role_namespaces = Vec::new();
    for role in rbac["roles"].as_array().unwrap() {
        let namespace = role["namespace"].as_str().unwrap().to_string();
        if role["name"].as_str().unwrap().ends_with("-leader-election") {
            assert_eq!(namespace, ops);
            continue;
        }
        assert_eq!(
            granted(&role["rules"]),
            cluster_rules,
            "Role in {namespace}"
        );
        role_namespaces.push(namespace);
    }
    role_namespaces.sort();
    let mut watched = vec![team_a.clone(), team_b.clone()];
    watched.sort();
    assert_eq!(role_namespaces, watched);
    apply(scenario);
    let (sa_namespace, sa_name) = service_account(scenario);
    let user = service_account_user(&sa_namespace, &sa_name);
    wait_bound(&user, &team_a).await;
    wait_bound(&user, &team_b).await;

    let registry = Arc::new(InMemoryRegistry::new());
    registry.register("fraud", 3, &[], &[]);
    registry.set_alias("fraud", "champion", 3);
    for ns in [&team_a, &team_b, &team_c] {
        Api::<ModelDeployment>::namespaced(admin.clone(), ns)
            .create(&PostParams::default(), &simple("model", ns))
            .await
            .unwrap();
    }

    // The chart's args: `--namespace=<a> --namespace=<b>` and its leader election.
    let args = operator_args(scenario);
    let scope = args.scope();
    assert_eq!(scope, WatchScope::Namespaces(watched.clone()));
    let election = args
        .leader_election(&ops)
        .unwrap()
        .expect("leader election");
    let lease_name = election.lease_name.clone();
    let (operator, requests) = Tap::wrap(client_as(&user).await);
    let health = Health::new();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let controller_health = health.clone();
    let task = tokio::spawn(leader::run(
        operator.clone(),
        election,
        health.clone(),
        stop_rx.map(|_| ()),
        move |stop| {
            let ctx = Context::new(stop.fence(operator), registry, Metrics::default());
            controller::run(ctx, scope, controller_health, stop)
        },
    ));
    let phase = |ns: String| {
        let admin = admin.clone();
        async move {
            Api::<ModelDeployment>::namespaced(admin, &ns)
                .get("model")
                .await
                .unwrap()
                .status
                .map(|s| s.phase)
        }
    };
    until(
        &requests,
        "team-a and team-b reconciled",
        Duration::from_secs(90),
        || async {
            (phase(team_a.clone()).await == Some(Phase::Stable)
                && phase(team_b.clone()).await == Some(Phase::Stable))
            .then_some(())
        },
    )
    .await;
    until(
        &requests,
        "ready once both namespaces are listed",
        Duration::from_secs(10),
        || async { health.ready.load(Ordering::SeqCst).then_some(()) },
    )
    .await;
    // Time for anything cluster-wide or outside the list to show.
    tokio::time::sleep(Duration::from_secs(3)).await;

    assert_eq!(phase(team_c.clone()).await, None, "team-c is not watched");
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &team_c);
    assert!(
        deployments
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("stops")
        .expect("no panic")
        .expect("a graceful stop");

    // Every request is namespaced to a watched namespace (the Lease's to the operator's): a
    // Role in each is enough, no cluster-wide list or watch — the server would have refused
    // one (no ClusterRole is bound), and refused nothing.
    let requests = requests.lock().unwrap().clone();
    let outside: Vec<&ApiRequest> = requests
        .iter()
        .filter(|r| {
            let ns = r.namespace.as_deref();
            if r.resource == "leases" {
                ns != Some(ops.as_str())
                    || (r.verb != "create" && r.name.as_deref() != Some(&lease_name))
            } else {
                ns != Some(team_a.as_str()) && ns != Some(team_b.as_str())
            }
        })
        .collect();
    assert!(outside.is_empty(), "{outside:?}");
    assert!(
        requests
            .iter()
            .any(|r| r.verb == "watch" && r.resource == "modeldeployments")
    );
    let refused: Vec<&ApiRequest> = requests.iter().filter(|r| r.status == Some(403)).collect();
    assert!(refused.is_empty(), "{refused:?}");
    let audited = cluster().writes_by(&user.0);
    assert!(
        audited
            .iter()
            .any(|w| w.resource == "modeldeployments/status"),
        "{audited:?}"
    );
    assert!(
        audited.iter().all(|w| w.code != Some(403)
            && [&ops, &team_a, &team_b]
                .iter()
                .any(|ns| w.namespace.as_deref() == Some(ns.as_str()))),
        "{audited:?}"
    );
    // What a cluster-wide watch would have met, and what team-c is to this operator.
    let sa = client_as(&user).await;
    assert_eq!(
        refusal(
            Api::<ModelDeployment>::all(sa.clone())
                .list(&ListParams::default())
                .await
        ),
        Some(403)
    );
    assert_eq!(
        refusal(
            Api::<ModelDeployment>::namespaced(sa, &team_c)
                .list(&ListParams::default())
                .await
        ),
        Some(403)
    );
}
