//! RBAC derived from the code: the operator runs its real flows on the in-memory API behind a
//! request log — leader election, a whole lifecycle (drift → retraining Job → evaluation →
//! shadow → 10/50/100 → promoted, then an aborted retraining so its Job is deleted), an Istio
//! resource, Events — and the (apiGroup, resource, verb) set it used must be exactly what the
//! chart grants: the ClusterRole (all namespaces), the Role per watched namespace, and the
//! leader-election Role. The chart is rendered by Helm itself (tests/scripts/chart_check.py).
//!
//! Also: `--namespace a --namespace b` reconciles only those namespaces and every request it
//! makes is namespaced to them, which is what lets the chart use Roles instead of a ClusterRole.
//!
//! Needs `MLROLLOUT_PYTHON` (the venv of tests/harness/install.sh, with helm-python-sdk); run it
//! as the README says: `bash tests/run.sh`, or
//! `bash tests/harness/install.sh && . target/harness.env && cargo test --test rbac`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use mlrollout::api::{ModelDeployment, Phase};
use mlrollout::controller::decide::EventIntent;
use mlrollout::controller::{self, Context, WatchScope, act};
use mlrollout::leader::{self, LeaderElection};
use mlrollout::metrics::Metrics;
use mlrollout::registry::memory::InMemoryRegistry;
use mlrollout::server::Health;
use tokio::sync::oneshot;

use common::fake_api::{ApiRequest, fake_api_with_log};
use common::operator::{
    ScriptedAnalyzer, ScriptedDrift, complete_job, kubelet, tokio_clock, wait_for,
};

const NS: &str = "fraud";
const MODEL: &str = "fraud-detector";
const LEASE: &str = "mlrollout-leader";
const LEASE_NS: &str = "mlrollout-system";
const HOUR: Duration = Duration::from_secs(3600);

/// (apiGroup, resource, verb).
type Permission = (String, String, String);

const README_HINT: &str = "set MLROLLOUT_PYTHON to the test venv's python (it has \
helm-python-sdk), as in the README's test command: `bash tests/run.sh`, or \
`bash tests/harness/install.sh && . target/harness.env && cargo test --test rbac`";

/// The chart's RBAC objects, rendered by Helm (`chart_check.py --rbac-only`).
fn rendered_rbac() -> serde_json::Value {
    let python = match std::env::var_os("MLROLLOUT_PYTHON") {
        Some(p) if !p.is_empty() => p,
        _ => panic!("MLROLLOUT_PYTHON is not set: {README_HINT}"),
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/chart_check.py");
    let output = std::process::Command::new(&python)
        .arg(script)
        .arg("--rbac-only")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python:?}: {e}; {README_HINT}"));
    assert!(
        output.status.success(),
        "chart_check.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("chart_check.py prints JSON")
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

/// What each request needs from RBAC. A server-side apply of a whole object can create it and
/// is then authorized as `create` as well; an apply to a subresource (status) never creates.
fn needed(requests: &[ApiRequest]) -> BTreeSet<Permission> {
    let mut out = BTreeSet::new();
    for r in requests {
        assert_ne!(r.verb, "unknown", "unparsed request {r:?}");
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

fn resource(name: &str, provider: &str, model: &str) -> ModelDeployment {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: mlrollout.io/v1alpha1
kind: ModelDeployment
metadata: {{name: {name}, namespace: {NS}}}
spec:
  model:
    trackingUri: "http://mlflow:5000"
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
        address: "http://prometheus:9090"
        bearerTokenSecret: {{name: prometheus-token, key: token}}
      interval: 10s
      count: 3
"#
    ))
    .unwrap()
}

async fn create_secret(client: &kube::Client, name: &str, key: &str) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        data: Some([(key.to_string(), ByteString(b"s3cret".to_vec()))].into()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

async fn status(client: &kube::Client, name: &str) -> mlrollout::api::ModelDeploymentStatus {
    Api::<ModelDeployment>::namespaced(client.clone(), NS)
        .get(name)
        .await
        .unwrap()
        .status
        .unwrap_or_default()
}

async fn wait_phase(client: &kube::Client, phase: Phase, limit: Duration) {
    wait_for(&format!("phase {phase:?}"), limit, || async {
        (status(client, MODEL).await.phase == phase).then_some(())
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_chart_grants_exactly_what_the_operator_uses() {
    // The test's own requests go through `api`; the operator's through its logged client.
    let (api, operator) = fake_api_with_log().await;
    let registry = Arc::new(InMemoryRegistry::new());
    registry.register(MODEL, 3, &[("accuracy", 0.88)], &[]);
    registry.set_alias(MODEL, "champion", 3);
    registry.register("fraud-istio", 1, &[], &[]);
    registry.set_alias("fraud-istio", "champion", 1);
    let analyzer = Arc::new(ScriptedAnalyzer::default());
    analyzer.healthy();
    let drift = Arc::new(ScriptedDrift::default());
    let ready = Arc::new(Mutex::new(vec!["-stable".into(), "-candidate".into()]));
    let _kubelet = kubelet(api.client.clone(), NS, ready);
    create_secret(&api.client, "mlflow-credentials", "token").await;
    create_secret(&api.client, "prometheus-token", "token").await;

    // The operator as `mlrollout run --leader-election` runs it.
    let ctx = Context::new(
        operator.client.clone(),
        registry.clone(),
        Metrics::default(),
    )
    .with_analyzer(analyzer.clone())
    .with_drift(drift.clone())
    .with_clock(tokio_clock());
    let events_ctx = ctx.clone();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let health = Health::new();
    let controller_health = health.clone();
    let task = tokio::spawn(leader::run(
        operator.client.clone(),
        LeaderElection::new(LEASE, LEASE_NS, "rbac-test"),
        health,
        stop_rx.map(|_| ()),
        move |stop| controller::run(ctx, WatchScope::AllNamespaces, controller_health, stop),
    ));

    let mdeps: Api<ModelDeployment> = Api::namespaced(api.client.clone(), NS);
    mdeps
        .create(
            &PostParams::default(),
            &resource(MODEL, "gatewayAPI", MODEL),
        )
        .await
        .unwrap();
    // An Istio resource: its VirtualService is applied too (the in-memory API does not know
    // the kind and refuses it; the request is what counts here).
    mdeps
        .create(
            &PostParams::default(),
            &resource("fraud-istio", "istio", "fraud-istio"),
        )
        .await
        .unwrap();

    // drift → Job → candidate → evaluation → shadow → steps → promoted.
    wait_phase(&api.client, Phase::Stable, HOUR).await;
    drift.set("high");
    wait_phase(&api.client, Phase::Retraining, HOUR).await;
    let job = status(&api.client, MODEL)
        .await
        .retraining_attempts
        .last()
        .unwrap()
        .job_name
        .clone();
    complete_job(
        &api.client,
        NS,
        &job,
        &registry,
        MODEL,
        4,
        &[("accuracy", 0.91)],
        true,
    )
    .await;
    wait_phase(&api.client, Phase::Shadow, HOUR).await;
    wait_for("promoted to 4", 2 * HOUR, || async {
        let s = status(&api.client, MODEL).await;
        (s.phase == Phase::Stable && s.stable_version.as_deref() == Some("4")).then_some(())
    })
    .await;
    // The candidate Deployment and Service are deleted after the promotion.
    let deployments: Api<Deployment> = Api::namespaced(api.client.clone(), NS);
    wait_for("candidate removed", HOUR, || async {
        deployments
            .get_opt("fraud-detector-candidate")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;

    // The drift is still high: after the cooldown a second attempt starts; aborting it deletes
    // its Job.
    wait_for("second retraining", 3 * HOUR, || async {
        let s = status(&api.client, MODEL).await;
        (s.phase == Phase::Retraining && s.retraining_attempts.len() == 2).then_some(())
    })
    .await;
    let abort = serde_json::json!({"metadata": {"annotations": {"mlrollout.io/abort": "rbac"}}});
    mdeps
        .patch(MODEL, &PatchParams::default(), &Patch::Merge(&abort))
        .await
        .unwrap();
    let jobs: Api<Job> = Api::namespaced(api.client.clone(), NS);
    wait_for("the aborted attempt's Job is deleted", HOUR, || async {
        let names: Vec<String> = jobs
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|j| j.metadata.name)
            .collect();
        (names == vec![job.clone()]).then_some(())
    })
    .await;

    // The event recorder turns a repeated event into a series (a patch of the first one).
    let current = mdeps.get(MODEL).await.unwrap();
    let repeated = EventIntent {
        warning: false,
        reason: "RbacCheck".into(),
        note: "published twice".into(),
    };
    act::publish_events(&events_ctx, &current, &[repeated.clone(), repeated]).await;

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the operator stops")
        .expect("no panic")
        .expect("a graceful stop");

    // ---- what the operator used
    let requests = operator.requests();
    for r in &requests {
        if r.is_write() && r.resource != "virtualservices" {
            assert!(
                r.succeeded() || r.status == Some(404) || r.status == Some(409),
                "the flow should not fail: {r:?}"
            );
        }
    }
    let (lease_requests, operator_requests): (Vec<ApiRequest>, Vec<ApiRequest>) = requests
        .into_iter()
        .partition(|r| r.group == "coordination.k8s.io" && r.resource == "leases");
    let used = with_list_watch_pairs(&needed(&operator_requests));
    let used_lease = needed(&lease_requests);
    assert!(
        lease_requests
            .iter()
            .all(|r| r.namespace.as_deref() == Some(LEASE_NS)),
        "the Lease lives in the operator's namespace"
    );
    assert!(
        lease_requests
            .iter()
            .filter(|r| r.verb != "create")
            .all(|r| r.name.as_deref() == Some(LEASE)),
        "get and patch only touch the one Lease (the Role restricts them by resourceNames)"
    );

    // ---- what the chart grants
    let chart = rendered_rbac();
    let default = &chart["scenarios"]["default"]["rbac"];
    let cluster_roles = default["cluster_roles"].as_array().unwrap();
    assert_eq!(cluster_roles.len(), 1, "{default}");
    let cluster = granted(&cluster_roles[0]["rules"]);
    let granted_set: BTreeSet<Permission> = cluster.keys().cloned().collect();
    assert!(
        cluster.values().all(Vec::is_empty),
        "the ClusterRole names no objects"
    );

    // Granted without showing on the in-memory API, each for a stated reason:
    let allowed_extra: BTreeSet<Permission> = [(
        // Children's owner references set blockOwnerDeletion; the
        // OwnerReferencesPermissionEnforcement admission plugin (not emulated in memory)
        // requires update on the owner's finalizers for that.
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
        ("mlrollout.io", "modeldeployments/status", "patch"),
        ("apps", "deployments", "delete"),
        ("", "services", "delete"),
        ("batch", "jobs", "create"),
        ("batch", "jobs", "delete"),
        ("", "secrets", "get"),
        ("gateway.networking.k8s.io", "httproutes", "patch"),
        ("networking.istio.io", "virtualservices", "patch"),
        ("events.k8s.io", "events", "create"),
        ("events.k8s.io", "events", "patch"),
    ] {
        let p = (must.0.to_string(), must.1.to_string(), must.2.to_string());
        assert!(used.contains(&p), "the flow never exercised {must:?}");
    }

    // The leader-election Role: exactly the Lease verbs used, get/patch only on that Lease.
    let roles = default["roles"].as_array().unwrap();
    let lease_role = roles
        .iter()
        .find(|r| r["name"].as_str().unwrap().ends_with("-leader-election"))
        .expect("a leader-election Role");
    assert_eq!(lease_role["namespace"], LEASE_NS);
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
            vec![LEASE.to_string()]
        };
        assert_eq!(names, &expected_names, "resourceNames of lease {verb}");
    }
    assert!(
        !granted_set.iter().any(|(_, r, _)| r == "leases"),
        "no cluster-wide Lease access"
    );
    assert_eq!(roles.len(), 1, "only the leader-election Role: {roles:?}");

    // Watching a list of namespaces: the very same rules, in a Role per namespace.
    let namespaced = &chart["scenarios"]["namespaced"]["rbac"];
    assert!(namespaced["cluster_roles"].as_array().unwrap().is_empty());
    let mut role_namespaces = Vec::new();
    for role in namespaced["roles"].as_array().unwrap() {
        if role["name"].as_str().unwrap().ends_with("-leader-election") {
            continue;
        }
        role_namespaces.push(role["namespace"].as_str().unwrap().to_string());
        assert_eq!(
            granted(&role["rules"]),
            cluster,
            "Role in {}",
            role["namespace"]
        );
    }
    assert_eq!(role_namespaces, vec!["team-a", "team-b"]);
}

fn simple(name: &str, namespace: &str) -> ModelDeployment {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: mlrollout.io/v1alpha1
kind: ModelDeployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  model: {{trackingUri: "http://mlflow:5000", name: fraud}}
  traffic: {{provider: none}}
  drift: {{reference: {{uri: a.csv}}, current: {{uri: b.csv}}}}
"#
    ))
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn listed_namespaces_are_reconciled_alone_with_namespaced_requests_only() {
    let (api, operator) = fake_api_with_log().await;
    let registry = Arc::new(InMemoryRegistry::new());
    registry.register("fraud", 3, &[], &[]);
    registry.set_alias("fraud", "champion", 3);
    for ns in ["team-a", "team-b", "team-c"] {
        Api::<ModelDeployment>::namespaced(api.client.clone(), ns)
            .create(&PostParams::default(), &simple("model", ns))
            .await
            .unwrap();
    }

    let health = Health::new();
    let ctx = Context::new(operator.client.clone(), registry, Metrics::default())
        .with_clock(tokio_clock());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let scope = WatchScope::from_namespaces(vec!["team-b".into(), "team-a".into()]);
    assert_eq!(
        scope,
        WatchScope::Namespaces(vec!["team-a".into(), "team-b".into()])
    );
    let task = tokio::spawn(controller::run(
        ctx,
        scope,
        health.clone(),
        stop_rx.map(|_| ()),
    ));
    let phase = |ns: &'static str| {
        let client = api.client.clone();
        async move {
            Api::<ModelDeployment>::namespaced(client, ns)
                .get("model")
                .await
                .unwrap()
                .status
                .map(|s| s.phase)
        }
    };
    wait_for("team-a and team-b reconciled", HOUR, || async {
        (phase("team-a").await == Some(Phase::Stable)
            && phase("team-b").await == Some(Phase::Stable))
        .then_some(())
    })
    .await;
    wait_for(
        "ready once both namespaces are listed",
        Duration::from_secs(5),
        || async {
            health
                .ready
                .load(std::sync::atomic::Ordering::SeqCst)
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(600)).await;

    assert_eq!(phase("team-c").await, None, "team-c is not watched");
    let deployments: Api<Deployment> = Api::namespaced(api.client.clone(), "team-c");
    assert!(
        deployments
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // Every request of the operator is namespaced to a watched namespace: a Role in each is
    // enough, no cluster-wide list or watch.
    let operator_requests = operator.requests();
    let outside: Vec<_> = operator_requests
        .iter()
        .filter(|r| !matches!(r.namespace.as_deref(), Some("team-a" | "team-b")))
        .collect();
    assert!(outside.is_empty(), "{outside:?}");
    assert!(
        operator_requests
            .iter()
            .any(|r| r.verb == "watch" && r.resource == "modeldeployments")
    );

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap();
}
