//! Pods on the real API server's Pod Security Admission: the operator's own Pod (the chart's
//! Deployment, rendered by Helm) is admitted in a namespace that enforces `restricted`, and
//! the same Pod without its security settings is refused there — so the admission is real.
//! The Pods the operator creates for a model run without a Kubernetes API token and are
//! admitted under `baseline`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane and helm-python-sdk: full suite only, `cargo test --features harness`
// (tests/run.sh turns it on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use mlrollout::api::ModelDeployment;
use mlrollout::controller::WatchScope;

use common::cluster::{self, eventually};
use common::operator::{Operator, test_context};

/// Labels `namespace` to enforce Pod Security `level` (latest version of the standard).
async fn enforce(client: &kube::Client, namespace: &str, level: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let patch = serde_json::json!({"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": level,
        "pod-security.kubernetes.io/enforce-version": "latest",
    }}});
    namespaces
        .patch(namespace, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// A Pod with the pod spec of `deployment` (as its ReplicaSet would create it).
fn pod_of(deployment: &serde_json::Value, namespace: &str, name: &str) -> Pod {
    let mut pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": deployment["spec"]["template"]["spec"],
    }))
    .unwrap();
    pod.metadata.labels = deployment["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .map(|l| {
            l.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect()
        });
    pod
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_pod_is_admitted_under_restricted() {
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "psa-restricted").await;
    enforce(&client, &ns, "restricted").await;
    let release = format!("psa-{}", &ns[ns.len() - 6..]);
    let chart = common::chart::rendered_for_cluster(&release, &ns, &[], "pod_security");
    let scenario = &chart["scenarios"]["default"];
    // The Pod names its ServiceAccount, which must exist for the Pod to be admitted at all.
    let account = scenario["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "ServiceAccount")
        .expect("the chart's ServiceAccount");
    let account: ServiceAccount = serde_json::from_value(account.clone()).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &account)
        .await
        .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let deployment = &scenario["deployment"];
    let pod = pod_of(deployment, &ns, "operator");
    let admitted = pods.create(&dry_run, &pod).await;
    assert!(
        admitted.is_ok(),
        "the chart's operator Pod is refused under restricted: {admitted:?}"
    );

    // Control: without its security settings the same Pod is refused, naming the standard.
    let mut bare = pod.clone();
    let spec = bare.spec.as_mut().unwrap();
    spec.security_context = None;
    for container in &mut spec.containers {
        container.security_context = None;
    }
    let refused = pods.create(&dry_run, &bare).await.unwrap_err();
    let kube::Error::Api(status) = refused else {
        panic!("not an API answer: {refused}")
    };
    assert_eq!(status.code, 403, "{status:?}");
    assert!(
        status
            .message
            .contains("violates PodSecurity \"restricted:latest\""),
        "{}",
        status.message
    );

    cluster::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_pods_run_without_an_api_token_under_baseline() {
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "psa-baseline").await;
    enforce(&client, &ns, "baseline").await;
    let registry = common::registry::with_champion("fraud", 3);
    let operator = Operator::run(
        test_context(client.clone(), registry),
        WatchScope::Namespace(ns.clone()),
    );
    let resource: ModelDeployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "fraud", "namespace": ns},
        "spec": {
            "model": {"trackingUri": "http://127.0.0.1:9", "name": "fraud"},
            "traffic": {"provider": "none"}
        }
    }))
    .unwrap();
    Api::<ModelDeployment>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &resource)
        .await
        .unwrap();

    // The ReplicaSet controller's Pod got through admission, and carries no token.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = eventually("a stable Pod admitted", Duration::from_secs(60), || async {
        let list = pods
            .list(&ListParams::default().labels("mlrollout.io/variant=stable"))
            .await
            .ok()?;
        list.items.into_iter().next()
    })
    .await;
    let spec = pod.spec.unwrap();
    assert_eq!(spec.automount_service_account_token, Some(false));
    let mounts: Vec<String> = spec
        .containers
        .iter()
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .map(|m| m.mount_path.clone())
        .collect();
    assert!(
        !mounts
            .iter()
            .any(|m| m.starts_with("/var/run/secrets/kubernetes.io")),
        "{mounts:?}"
    );

    operator.stop().await;
    cluster::delete_namespace(&client, &ns).await;
}
