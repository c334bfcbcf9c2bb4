//! The real Controller loop against the real API server (see `common::cluster`): create,
//! update, invalid spec, registry outage, delete. Each test has its own namespace and an
//! operator scoped to it; kwok makes Deployments ready through the real controllers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code states expectations

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use mlrollout::api::{ModelDeployment, ModelDeploymentStatus, Phase};
use mlrollout::controller::{self, Context, WatchScope};
use mlrollout::metrics::Metrics;
use mlrollout::registry::memory::InMemoryRegistry;
use mlrollout::server::Health;
use tokio::sync::oneshot;

use common::cluster;
use common::operator::Operator;
use common::registry::register_versions;

const NAME: &str = "fraud-detector";
/// Longest wait for something the operator and the cluster's controllers do.
const LIMIT: Duration = Duration::from_secs(60);

struct Running {
    client: kube::Client,
    namespace: String,
    registry: Arc<InMemoryRegistry>,
    health: Health,
    operator: Operator,
}

impl Running {
    /// Stops the operator and deletes the test's namespace.
    async fn stop(self) {
        self.operator.stop().await;
        cluster::delete_namespace(&self.client, &self.namespace).await;
    }

    fn mdeps(&self) -> Api<ModelDeployment> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates the resource: the base manifest with `yaml_patch` merged in.
    async fn create(&self, yaml_patch: &str) -> ModelDeployment {
        self.mdeps()
            .create(
                &PostParams::default(),
                &resource(&self.namespace, yaml_patch),
            )
            .await
            .unwrap()
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
}

/// A fresh namespace, fraud-detector versions 1 to 3 with `champion` on 3, and an operator
/// watching only that namespace.
async fn start(prefix: &str) -> Running {
    let client = cluster::client().await;
    let namespace = cluster::namespace(&client, prefix).await;
    let registry = Arc::new(InMemoryRegistry::new());
    register_versions(&registry, NAME, 3, 3);
    let health = Health::new();
    let ctx = Context::new(client.clone(), registry.clone(), Metrics::default());
    let operator = Operator::run_with_health(
        ctx,
        WatchScope::Namespace(namespace.clone()),
        health.clone(),
    );
    Running {
        client,
        namespace,
        registry,
        health,
        operator,
    }
}

fn resource(namespace: &str, yaml_patch: &str) -> ModelDeployment {
    let base = r#"
apiVersion: mlrollout.io/v1alpha1
kind: ModelDeployment
metadata: {name: fraud-detector}
spec:
  model: {trackingUri: "http://mlflow:5000", name: fraud-detector}
  traffic: {provider: gatewayAPI, parentRefs: [{name: gw}]}
"#;
    let mut value: serde_json::Value = serde_yaml::from_str(base).unwrap();
    value["metadata"]["namespace"] = namespace.into();
    if !yaml_patch.is_empty() {
        let patch: serde_json::Value = serde_yaml::from_str(yaml_patch).unwrap();
        merge(&mut value, patch);
    }
    serde_json::from_value(value).unwrap()
}

fn merge(target: &mut serde_json::Value, patch: serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (t, p) => *t = p,
    }
}

fn condition<'a>(
    status: &'a ModelDeploymentStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// Every status the API server reports for the resources of `namespace`, in order (a watch
/// sees each write).
fn record_statuses(
    client: &kube::Client,
    namespace: &str,
) -> (
    Arc<Mutex<Vec<ModelDeploymentStatus>>>,
    tokio::task::JoinHandle<()>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), namespace);
    let task = tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(event) = stream.next().await {
            if let Ok(md) = event
                && let Some(status) = md.status
            {
                let mut seen = out.lock().unwrap();
                if seen.last() != Some(&status) {
                    seen.push(status);
                }
            }
        }
    });
    (seen, task)
}

#[tokio::test]
#[cfg_attr(not(feature = "harness"), ignore = "needs the harness (control plane)")]
async fn create_serves_the_resolved_version_and_reports_ready() {
    let running = start("ctl-create").await;
    let (statuses, recorder) = record_statuses(&running.client, &running.namespace);
    let mdeps = running.mdeps();
    let created = running.create("").await;
    // The server assigns the uid; the children are owned by it.
    let uid = created.metadata.uid.clone().expect("the server sets a uid");

    let deployments = running.deployments();
    let deployment = cluster::eventually("stable Deployment", LIMIT, || async {
        deployments.get_opt("fraud-detector-stable").await.unwrap()
    })
    .await;
    let owner = &deployment.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.kind, "ModelDeployment");
    assert_eq!(owner.name, "fraud-detector");
    assert_eq!(owner.uid, uid);
    assert_eq!(owner.controller, Some(true));
    let container = &deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    let command = container.command.as_ref().unwrap().join(" ");
    assert!(command.contains("models:/fraud-detector/3"), "{command}");
    assert_eq!(deployment.spec.as_ref().unwrap().replicas, Some(2));

    let services = running.services();
    let service = cluster::eventually("stable Service", LIMIT, || async {
        services.get_opt("fraud-detector-stable").await.unwrap()
    })
    .await;
    assert_eq!(
        service.spec.as_ref().unwrap().selector.as_ref().unwrap()["mlrollout.io/variant"],
        "stable"
    );

    let md = cluster::eventually("status with stable version", LIMIT, || async {
        let md = mdeps.get(NAME).await.unwrap();
        (md.status.as_ref()?.stable_version.as_deref() == Some("3")).then_some(md)
    })
    .await;
    let status = md.status.as_ref().unwrap();
    assert_eq!(status.phase, Phase::Stable);
    assert_eq!(status.observed_generation, md.metadata.generation);

    // kwok plays the kubelet: the replicas become ready through the real Deployment and
    // ReplicaSet controllers, and the resource becomes Ready.
    cluster::eventually("Ready=True", LIMIT, || async {
        let md = mdeps.get(NAME).await.unwrap();
        let c = condition(md.status.as_ref()?, "Ready")?;
        (c.status == "True" && c.reason == "Available").then_some(())
    })
    .await;
    let deployment = deployments.get("fraud-detector-stable").await.unwrap();
    assert_eq!(
        deployment.status.as_ref().and_then(|s| s.ready_replicas),
        Some(2)
    );
    // Before that, the first status that served version 3 said it waited for the replicas.
    recorder.abort();
    let statuses = statuses.lock().unwrap().clone();
    let first = statuses
        .iter()
        .find(|s| s.stable_version.as_deref() == Some("3"))
        .expect("the watch saw the first status");
    let ready = condition(first, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "WaitingForReplicas"),
        "{statuses:#?}"
    );
    cluster::eventually("/readyz flag after the first list", LIMIT, || async {
        running
            .health
            .ready
            .load(std::sync::atomic::Ordering::SeqCst)
            .then_some(())
    })
    .await;
    running.stop().await;
}

#[tokio::test]
#[cfg_attr(not(feature = "harness"), ignore = "needs the harness (control plane)")]
async fn spec_changes_flow_into_the_children() {
    let running = start("ctl-spec").await;
    let mdeps = running.mdeps();
    running.create("").await;
    let deployments = running.deployments();
    cluster::eventually("stable Deployment", LIMIT, || async {
        deployments.get_opt("fraud-detector-stable").await.unwrap()
    })
    .await;

    let patch = serde_json::json!({"spec": {
        "serving": {"replicas": 5, "port": 9000, "env": [{"name": "THREADS", "value": "4"}]}
    }});
    mdeps
        .patch(NAME, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let deployment = cluster::eventually("Deployment follows the new spec", LIMIT, || async {
        let d = deployments.get("fraud-detector-stable").await.unwrap();
        (d.spec.as_ref()?.replicas == Some(5)).then_some(d)
    })
    .await;
    let container = &deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    let env: Vec<_> = container
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert!(env.contains(&"THREADS"), "{env:?}");
    assert_eq!(container.ports.as_ref().unwrap()[0].container_port, 9000);
    let services = running.services();
    cluster::eventually("Service port follows", LIMIT, || async {
        let s = services.get("fraud-detector-stable").await.unwrap();
        (s.spec.as_ref()?.ports.as_ref()?[0].port == 9000).then_some(())
    })
    .await;
    // The real controllers roll the new template out to five ready replicas.
    common::operator::deployment_ready(
        &running.client,
        &running.namespace,
        "fraud-detector-stable",
        LIMIT,
    )
    .await;
    running.stop().await;
}

#[tokio::test]
#[cfg_attr(not(feature = "harness"), ignore = "needs the harness (control plane)")]
async fn invalid_spec_is_reported_and_creates_nothing() {
    let running = start("ctl-invalid").await;
    let mdeps = running.mdeps();
    // What CEL can say, the API server refuses at admission.
    let refused = resource(
        &running.namespace,
        r#"{spec: {rollout: {steps: [50, 10, 100]}, retraining: {triggers: {}, jobTemplate: {template: {spec: {containers: []}}}}}}"#,
    );
    let error = mdeps
        .create(&PostParams::default(), &refused)
        .await
        .expect_err("the API server rejects the spec");
    let message = match &error {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 422, "{status:?}");
            status.message.clone()
        }
        other => panic!("expected a 422 from admission, got {other}"),
    };
    assert!(message.contains("spec.rollout.steps"), "{message}");
    assert!(message.contains("spec.retraining"), "{message}");

    // What CEL cannot say (cron syntax, embedded Job and pod templates) passes admission: the
    // reconciler must still refuse, name every problem, and create nothing.
    let bad = resource(
        &running.namespace,
        r#"{spec: {serving: {podTemplate: {spec: {containers: []}}}, retraining: {triggers: {schedule: "every tuesday"}, jobTemplate: {template: {spec: {containers: []}}}}}}"#,
    );
    mdeps.create(&PostParams::default(), &bad).await.unwrap();
    let md = cluster::eventually("InvalidSpec condition", LIMIT, || async {
        let md = mdeps.get(NAME).await.unwrap();
        (condition(md.status.as_ref()?, "Ready")?.reason == "InvalidSpec").then_some(md)
    })
    .await;
    let status = md.status.as_ref().unwrap();
    let message = &condition(status, "Ready").unwrap().message;
    assert!(message.contains("spec.serving.podTemplate"), "{message}");
    assert!(
        message.contains("spec.retraining.triggers.schedule"),
        "{message}"
    );
    assert!(message.contains("spec.retraining.jobTemplate"), "{message}");
    assert_eq!(status.phase, Phase::Pending);
    // Give the controller time to (wrongly) create children, then check it did not.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let deployments = running.deployments();
    assert!(
        deployments
            .get_opt("fraud-detector-stable")
            .await
            .unwrap()
            .is_none()
    );
    let services = running.services();
    assert!(
        services
            .get_opt("fraud-detector-stable")
            .await
            .unwrap()
            .is_none()
    );

    // Fixing the spec makes it serve.
    let fix = serde_json::json!({"spec": {"serving": {"podTemplate": null}, "retraining": null}});
    mdeps
        .patch(NAME, &PatchParams::default(), &Patch::Merge(&fix))
        .await
        .unwrap();
    cluster::eventually("children after the fix", LIMIT, || async {
        deployments.get_opt("fraud-detector-stable").await.unwrap()
    })
    .await;
    running.stop().await;
}

#[tokio::test]
#[cfg_attr(not(feature = "harness"), ignore = "needs the harness (control plane)")]
async fn registry_outage_creates_nothing_until_it_recovers() {
    let running = start("ctl-outage").await;
    running.registry.set_unavailable(true);
    let mdeps = running.mdeps();
    running.create("").await;
    let md = cluster::eventually("RegistryUnavailable", LIMIT, || async {
        let md = mdeps.get(NAME).await.unwrap();
        (condition(md.status.as_ref()?, "Ready")?.reason == "RegistryUnavailable").then_some(md)
    })
    .await;
    assert_eq!(
        condition(md.status.as_ref().unwrap(), "RegistrySynced")
            .unwrap()
            .status,
        "False"
    );
    let deployments = running.deployments();
    assert!(
        deployments
            .get_opt("fraud-detector-stable")
            .await
            .unwrap()
            .is_none()
    );

    running.registry.set_unavailable(false);
    // Nudge a reconcile now rather than waiting for the retry interval.
    let nudge = serde_json::json!({"metadata": {"annotations": {"test/nudge": "1"}}});
    mdeps
        .patch(NAME, &PatchParams::default(), &Patch::Merge(&nudge))
        .await
        .unwrap();
    cluster::eventually("served after recovery", LIMIT, || async {
        let md = mdeps.get(NAME).await.unwrap();
        (md.status.as_ref()?.stable_version.as_deref() == Some("3")).then_some(())
    })
    .await;
    cluster::eventually("the stable Deployment after recovery", LIMIT, || async {
        deployments.get_opt("fraud-detector-stable").await.unwrap()
    })
    .await;
    running.stop().await;
}

#[tokio::test]
#[cfg_attr(not(feature = "harness"), ignore = "needs the harness (control plane)")]
async fn deleting_the_resource_removes_its_children() {
    let running = start("ctl-delete").await;
    let mdeps = running.mdeps();
    running.create("").await;
    let deployments = running.deployments();
    let services = running.services();
    cluster::eventually("children", LIMIT, || async {
        services.get_opt("fraud-detector-stable").await.unwrap()
    })
    .await;
    mdeps.delete(NAME, &DeleteParams::default()).await.unwrap();
    // The real garbage collector follows the owner references the operator set
    // (asynchronously, in the background).
    cluster::eventually("children gone", LIMIT, || async {
        let d = deployments.get_opt("fraud-detector-stable").await.unwrap();
        let s = services.get_opt("fraud-detector-stable").await.unwrap();
        (d.is_none() && s.is_none()).then_some(())
    })
    .await;
    // And the Deployment's ReplicaSet and Pods with it.
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(running.client.clone(), &running.namespace);
    cluster::eventually("pods gone", LIMIT, || async {
        let list = pods
            .list(&kube::api::ListParams::default().labels("mlrollout.io/variant=stable"))
            .await
            .unwrap();
        list.items.is_empty().then_some(())
    })
    .await;
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_completes_even_when_the_api_server_is_unreachable() {
    common::http::install_crypto_provider();
    let port = common::http::free_port();
    let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let registry = Arc::new(InMemoryRegistry::new());
    let health = Health::new();
    let ctx = Context::new(client, registry, Metrics::default());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(controller::run(
        ctx,
        WatchScope::AllNamespaces,
        health.clone(),
        rx.map(|_| ()),
    ));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !health.ready.load(std::sync::atomic::Ordering::SeqCst),
        "never listed, never ready"
    );
    tx.send(()).unwrap();
    tokio::time::timeout(controller::SHUTDOWN_GRACE + Duration::from_secs(5), task)
        .await
        .expect("stops within the shutdown grace")
        .unwrap();
    assert!(!health.alive.load(std::sync::atomic::Ordering::SeqCst));
}
