//! The real Controller loop against the in-memory API: create, update, invalid spec, registry
//! outage, delete.

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use mlrollout::api::{ModelDeployment, Phase};
use mlrollout::controller::{self, Context, WatchScope};
use mlrollout::metrics::Metrics;
use mlrollout::registry::memory::InMemoryRegistry;
use mlrollout::server::Health;
use tokio::sync::oneshot;

use common::fake_api::fake_api;

const NS: &str = "fraud";

struct Running {
    client: kube::Client,
    registry: Arc<InMemoryRegistry>,
    health: Health,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("controller shuts down within 10 s")
            .expect("controller task did not panic");
    }
}

async fn start() -> Running {
    let api = fake_api().await;
    let registry = Arc::new(InMemoryRegistry::new());
    let health = Health::new();
    let ctx = Context::new(api.client.clone(), registry.clone(), Metrics::default());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(controller::run(
        ctx,
        WatchScope::AllNamespaces,
        health.clone(),
        rx.map(|_| ()),
    ));
    Running {
        client: api.client,
        registry,
        health,
        stop: Some(tx),
        task,
    }
}

/// Registers versions 1..=version of fraud-detector with `champion` on `version`.
fn serve(registry: &InMemoryRegistry, version: u64) {
    for v in 1..=version {
        registry.register("fraud-detector", v, &[("accuracy", 0.8)], &[]);
    }
    registry.set_alias("fraud-detector", "champion", version);
}

fn resource(yaml_patch: &str) -> ModelDeployment {
    let base = r#"
apiVersion: mlrollout.io/v1alpha1
kind: ModelDeployment
metadata: {name: fraud-detector, namespace: fraud}
spec:
  model: {trackingUri: "http://mlflow:5000", name: fraud-detector}
  traffic: {provider: gatewayAPI, parentRefs: [{name: gw}]}
"#;
    let mut value: serde_json::Value = serde_yaml::from_str(base).unwrap();
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

/// Polls `check` until it returns `Some`, or panics with `what` after 15 s.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn condition<'a>(
    md: &'a ModelDeployment,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    md.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

async fn mark_deployment_ready(client: &kube::Client, name: &str) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let deployment = api.get(name).await.unwrap();
    let replicas = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let status = serde_json::json!({"status": {
        "observedGeneration": deployment.metadata.generation.unwrap_or(1),
        "replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
        "updatedReplicas": replicas
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

#[tokio::test]
async fn create_serves_the_resolved_version_and_reports_ready() {
    let running = start().await;
    serve(&running.registry, 3);
    let mdeps: Api<ModelDeployment> = Api::namespaced(running.client.clone(), NS);
    mdeps
        .create(&PostParams::default(), &resource(""))
        .await
        .unwrap();

    let deployments: Api<Deployment> = Api::namespaced(running.client.clone(), NS);
    let deployment = eventually("stable Deployment", || async {
        deployments.get_opt("fraud-detector-stable").await.unwrap()
    })
    .await;
    let owner = &deployment.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.kind, "ModelDeployment");
    assert_eq!(owner.name, "fraud-detector");
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

    let services: Api<Service> = Api::namespaced(running.client.clone(), NS);
    let service = eventually("stable Service", || async {
        services.get_opt("fraud-detector-stable").await.unwrap()
    })
    .await;
    assert_eq!(
        service.spec.as_ref().unwrap().selector.as_ref().unwrap()["mlrollout.io/variant"],
        "stable"
    );

    let md = eventually("status with stable version", || async {
        let md = mdeps.get("fraud-detector").await.unwrap();
        (md.status.as_ref()?.stable_version.as_deref() == Some("3")).then_some(md)
    })
    .await;
    let status = md.status.as_ref().unwrap();
    assert_eq!(status.phase, Phase::Stable);
    assert_eq!(status.observed_generation, md.metadata.generation);
    let ready = condition(&md, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "WaitingForReplicas")
    );

    // Play the kubelet: replicas become ready, the resource becomes Ready.
    mark_deployment_ready(&running.client, "fraud-detector-stable").await;
    eventually("Ready=True", || async {
        let md = mdeps.get("fraud-detector").await.unwrap();
        let c = condition(&md, "Ready")?;
        (c.status == "True" && c.reason == "Available").then_some(())
    })
    .await;
    eventually("/readyz flag after the first list", || async {
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
async fn spec_changes_flow_into_the_children() {
    let running = start().await;
    serve(&running.registry, 3);
    let mdeps: Api<ModelDeployment> = Api::namespaced(running.client.clone(), NS);
    mdeps
        .create(&PostParams::default(), &resource(""))
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(running.client.clone(), NS);
    eventually("stable Deployment", || async {
        deployments.get_opt("fraud-detector-stable").await.unwrap()
    })
    .await;

    let patch = serde_json::json!({"spec": {
        "serving": {"replicas": 5, "port": 9000, "env": [{"name": "THREADS", "value": "4"}]}
    }});
    mdeps
        .patch(
            "fraud-detector",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let deployment = eventually("Deployment follows the new spec", || async {
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
    let services: Api<Service> = Api::namespaced(running.client.clone(), NS);
    eventually("Service port follows", || async {
        let s = services.get("fraud-detector-stable").await.unwrap();
        (s.spec.as_ref()?.ports.as_ref()?[0].port == 9000).then_some(())
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn invalid_spec_is_reported_and_creates_nothing() {
    let running = start().await;
    serve(&running.registry, 3);
    let mdeps: Api<ModelDeployment> = Api::namespaced(running.client.clone(), NS);
    // The in-memory API does not run CEL, like a cluster with validation bypassed: the
    // reconciler must still refuse.
    let bad = resource(
        r#"{spec: {rollout: {steps: [50, 10, 100]}, retraining: {triggers: {}, jobTemplate: {template: {spec: {containers: []}}}}}}"#,
    );
    mdeps.create(&PostParams::default(), &bad).await.unwrap();
    let md = eventually("InvalidSpec condition", || async {
        let md = mdeps.get("fraud-detector").await.unwrap();
        (condition(&md, "Ready")?.reason == "InvalidSpec").then_some(md)
    })
    .await;
    let message = &condition(&md, "Ready").unwrap().message;
    assert!(message.contains("spec.rollout.steps"), "{message}");
    assert!(message.contains("spec.retraining.triggers"), "{message}");
    assert!(message.contains("spec.retraining.jobTemplate"), "{message}");
    assert_eq!(md.status.as_ref().unwrap().phase, Phase::Pending);
    // Give the controller time to (wrongly) create children, then check it did not.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deployments: Api<Deployment> = Api::namespaced(running.client.clone(), NS);
    assert!(
        deployments
            .get_opt("fraud-detector-stable")
            .await
            .unwrap()
            .is_none()
    );
    let services: Api<Service> = Api::namespaced(running.client.clone(), NS);
    assert!(
        services
            .get_opt("fraud-detector-stable")
            .await
            .unwrap()
            .is_none()
    );

    // Fixing the spec makes it serve.
    let fix =
        serde_json::json!({"spec": {"rollout": {"steps": [10, 50, 100]}, "retraining": null}});
    mdeps
        .patch(
            "fraud-detector",
            &PatchParams::default(),
            &Patch::Merge(&fix),
        )
        .await
        .unwrap();
    eventually("children after the fix", || async {
        deployments.get_opt("fraud-detector-stable").await.unwrap()
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn registry_outage_creates_nothing_until_it_recovers() {
    let running = start().await;
    serve(&running.registry, 3);
    running.registry.set_unavailable(true);
    let mdeps: Api<ModelDeployment> = Api::namespaced(running.client.clone(), NS);
    mdeps
        .create(&PostParams::default(), &resource(""))
        .await
        .unwrap();
    let md = eventually("RegistryUnavailable", || async {
        let md = mdeps.get("fraud-detector").await.unwrap();
        (condition(&md, "Ready")?.reason == "RegistryUnavailable").then_some(md)
    })
    .await;
    assert_eq!(condition(&md, "RegistrySynced").unwrap().status, "False");
    let deployments: Api<Deployment> = Api::namespaced(running.client.clone(), NS);
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
        .patch(
            "fraud-detector",
            &PatchParams::default(),
            &Patch::Merge(&nudge),
        )
        .await
        .unwrap();
    eventually("served after recovery", || async {
        let md = mdeps.get("fraud-detector").await.unwrap();
        (md.status.as_ref()?.stable_version.as_deref() == Some("3")).then_some(())
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn deleting_the_resource_removes_its_children() {
    let running = start().await;
    serve(&running.registry, 3);
    let mdeps: Api<ModelDeployment> = Api::namespaced(running.client.clone(), NS);
    mdeps
        .create(&PostParams::default(), &resource(""))
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(running.client.clone(), NS);
    let services: Api<Service> = Api::namespaced(running.client.clone(), NS);
    eventually("children", || async {
        services.get_opt("fraud-detector-stable").await.unwrap()
    })
    .await;
    mdeps
        .delete("fraud-detector", &DeleteParams::default())
        .await
        .unwrap();
    // Garbage collection follows the owner references the operator set.
    eventually("children gone", || async {
        let d = deployments.get_opt("fraud-detector-stable").await.unwrap();
        let s = services.get_opt("fraud-detector-stable").await.unwrap();
        (d.is_none() && s.is_none()).then_some(())
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
