//! End-to-end suite against a real cluster. Compiled on every run; it runs only when
//! `MLROLLOUT_E2E_KUBECONFIG` names a kubeconfig (a kind/k3d cluster: it creates a namespace,
//! installs the CRD and removes the namespace afterwards). The operator runs in-process, with
//! the real MLflow server of the harness as its registry.

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, CustomResourceExt};
use mlrollout::api::ModelDeployment;
use mlrollout::controller::{self, Context, WatchScope};
use mlrollout::metrics::Metrics;
use mlrollout::mlflow::{MlflowAuth, MlflowClient};
use mlrollout::registry::mlflow::MlflowRegistry;
use mlrollout::server::Health;

async fn cluster() -> Option<Client> {
    let path = std::env::var("MLROLLOUT_E2E_KUBECONFIG").ok()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = Kubeconfig::read_from(&path).expect("MLROLLOUT_E2E_KUBECONFIG is readable");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is usable");
    Some(Client::try_from(config).expect("client"))
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn the_operator_serves_a_model_on_a_real_cluster() {
    let Some(client) = cluster().await else {
        eprintln!("MLROLLOUT_E2E_KUBECONFIG is not set: the real-cluster suite is skipped");
        return;
    };
    let ns = format!("mlrollout-e2e-{}", std::process::id());
    let pp = PatchParams::apply("mlrollout-e2e").force();

    // CRD and namespace.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "modeldeployments.mlrollout.io",
        &pp,
        &Patch::Apply(ModelDeployment::crd()),
    )
    .await
    .expect("CRD applies");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}
    }))
    .unwrap();
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace");

    // A registered model with alias champion on the harness's MLflow.
    let uri = tokio::task::spawn_blocking(|| common::mlflow::mlflow_server().uri())
        .await
        .unwrap();
    let model = format!("e2e-{}", std::process::id());
    common::mlflow::train_version(&uri, &model);
    let mlflow = MlflowClient::new(&uri, MlflowAuth::None, Duration::from_secs(30)).unwrap();
    mlflow.set_alias(&model, "champion", 1).await.unwrap();

    let health = Health::new();
    let registry = Arc::new(MlflowRegistry::new(Duration::from_secs(10)));
    let ctx = Context::new(client.clone(), registry, Metrics::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(controller::run(
        ctx,
        WatchScope::Namespace(ns.clone()),
        health,
        stopped.map(|_| ()),
    ));

    // The real API server runs the CRD's CEL rules.
    let mdeps: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let mut bad: serde_json::Value = serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "bad"},
        "spec": {"model": {"trackingUri": uri, "name": model}, "traffic": {"provider": "none"},
                 "rollout": {"steps": [50, 10, 100]}}
    });
    let rejected = mdeps
        .create(
            &PostParams::default(),
            &serde_json::from_value(bad.take()).unwrap(),
        )
        .await
        .expect_err("CEL rejects unordered steps");
    assert!(
        rejected.to_string().contains("strictly increasing"),
        "{rejected}"
    );

    let good: ModelDeployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "model"},
        "spec": {"model": {"trackingUri": uri, "name": model}, "traffic": {"provider": "none"},
                 "serving": {"replicas": 0}}
    }))
    .unwrap();
    mdeps
        .create(&PostParams::default(), &good)
        .await
        .expect("valid resource");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    eventually("Deployment and Service", || async {
        let d = deployments.get_opt("model-stable").await.ok()??;
        services.get_opt("model-stable").await.ok()??;
        Some(d)
    })
    .await;
    eventually("status.stableVersion = 1", || async {
        let md = mdeps.get("model").await.ok()?;
        (md.status?.stable_version.as_deref() == Some("1")).then_some(())
    })
    .await;

    mdeps
        .delete("model", &DeleteParams::default())
        .await
        .unwrap();
    eventually("garbage collection of children", || async {
        deployments
            .get_opt("model-stable")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let _ = stop.send(());
    let _ = task.await;
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}
