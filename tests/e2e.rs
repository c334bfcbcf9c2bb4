//! End-to-end on the harness's real control plane (API server, controllers, scheduler, kwok):
//! the committed CRD is what the cluster serves, its CEL rules refuse a bad resource, and the
//! operator (in-process, scoped to its own namespace, with the real MLflow server of the
//! harness as its registry) serves the champion version through a Deployment that becomes
//! available (the data-plane proxy in it as a native sidecar) and a Service that targets the
//! proxy, which garbage collection removes with the resource.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane and a real MLflow server: full suite only, `cargo test --features
// harness` (tests/run.sh turns it on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::cluster;
use common::operator::Operator;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use mlrollout::api::{ModelDeployment, Phase};
use mlrollout::controller::{Context, WatchScope};
use mlrollout::metrics::Metrics;
use mlrollout::mlflow::{MlflowAuth, MlflowClient};
use mlrollout::registry::mlflow::MlflowRegistry;

const CRD_NAME: &str = "modeldeployments.mlrollout.io";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_serves_a_model_on_a_real_cluster() {
    let client = cluster::client().await;

    // The committed CRD is the one installed: applying it again, as the harness's field
    // manager, is a no-op (same generation), and it is Established.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let before = crds
        .get(CRD_NAME)
        .await
        .expect("the harness installed the CRD");
    let committed: serde_json::Value = serde_yaml::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crds/modeldeployment.yaml"
        ))
        .expect("crds/modeldeployment.yaml"),
    )
    .expect("committed CRD is YAML");
    let after = crds
        .patch(
            CRD_NAME,
            &PatchParams::apply("mlrollout-harness"),
            &Patch::Apply(&committed),
        )
        .await
        .expect("the committed CRD applies");
    assert_eq!(
        before.metadata.generation, after.metadata.generation,
        "the cluster serves the committed CRD (re-applying it changed nothing)"
    );
    let established = after
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established, "the CRD is Established");

    let ns = cluster::namespace(&client, "e2e").await;

    // A registered model with alias champion on the harness's MLflow.
    let uri = tokio::task::spawn_blocking(|| common::mlflow::mlflow_server().uri())
        .await
        .unwrap();
    let model = format!("e2e-{}", std::process::id());
    {
        let (uri, model) = (uri.clone(), model.clone());
        tokio::task::spawn_blocking(move || common::mlflow::train_version(&uri, &model))
            .await
            .unwrap();
    }
    let mlflow = MlflowClient::new(&uri, MlflowAuth::None, Duration::from_secs(30)).unwrap();
    mlflow.set_alias(&model, "champion", 1).await.unwrap();

    let registry = Arc::new(MlflowRegistry::new(Duration::from_secs(10)));
    let ctx = Context::new(client.clone(), registry, Metrics::default());
    let operator = Operator::run(ctx, WatchScope::Namespace(ns.clone()));

    // The real API server runs the CRD's CEL rules.
    let mdeps: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let bad: ModelDeployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "bad"},
        "spec": {"model": {"trackingUri": uri, "name": model}, "traffic": {"provider": "none"},
                 "rollout": {"steps": [50, 10, 100]}}
    }))
    .unwrap();
    let rejected = mdeps
        .create(&PostParams::default(), &bad)
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
                 "serving": {"replicas": 1}}
    }))
    .unwrap();
    let created = mdeps
        .create(&PostParams::default(), &good)
        .await
        .expect("valid resource");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    // The real Deployment controller, scheduler and kwok make the stable Deployment available.
    let deployment = cluster::eventually(
        "an available stable Deployment and its Service",
        Duration::from_secs(60),
        || async {
            let d = deployments.get_opt("model-stable").await.ok()??;
            services.get_opt("model-stable").await.ok()??;
            let available = d.status.as_ref()?.available_replicas.unwrap_or(0) >= 1;
            available.then_some(d)
        },
    )
    .await;
    let owner = deployment
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find(|o| o.kind == "ModelDeployment")
        .expect("the Deployment is owned by the resource");
    assert_eq!(Some(owner.uid), created.metadata.uid);
    // The data-plane proxy is a native sidecar (the API server validated the init container
    // with `restartPolicy: Always`) and the Service sends traffic to it and exposes its metrics.
    let sidecar = common::proxy::sidecar(&deployment);
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    assert_eq!(sidecar.args.as_deref(), Some(&["proxy".to_owned()][..]));
    // Scrapers that read `prometheus.io/*` pod annotations find the proxy's metrics.
    let annotations = deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .clone()
        .unwrap_or_default();
    assert_eq!(
        annotations.get("prometheus.io/port").map(String::as_str),
        Some("9464")
    );
    assert_eq!(
        annotations.get("prometheus.io/scrape").map(String::as_str),
        Some("true")
    );
    let service = services.get("model-stable").await.unwrap();
    let ports: Vec<(String, String)> = service
        .spec
        .unwrap()
        .ports
        .unwrap()
        .into_iter()
        .map(|p| {
            let target = match p.target_port.unwrap() {
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s,
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => i.to_string(),
            };
            (p.name.unwrap(), target)
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("http".to_owned(), "proxy".to_owned()),
            ("metrics".to_owned(), "proxy-metrics".to_owned())
        ]
    );
    let status = cluster::eventually(
        "status: stable version 1, Ready",
        Duration::from_secs(60),
        || async {
            let status = mdeps.get("model").await.ok()?.status?;
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (status.stable_version.as_deref() == Some("1") && ready).then_some(status)
        },
    )
    .await;
    assert_eq!(status.phase, Phase::Stable, "{:?}", status.message);

    mdeps
        .delete("model", &DeleteParams::default())
        .await
        .unwrap();
    cluster::eventually(
        "garbage collection of children",
        Duration::from_secs(60),
        || async {
            let deployment = deployments.get_opt("model-stable").await.ok()?;
            let service = services.get_opt("model-stable").await.ok()?;
            (deployment.is_none() && service.is_none()).then_some(())
        },
    )
    .await;
    operator.stop().await;
    cluster::delete_namespace(&client, &ns).await;
}
