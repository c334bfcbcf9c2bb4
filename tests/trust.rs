//! Trust boundaries on the real API server: what a resource author (or a neighbour in the same
//! namespace) can make the operator do.
//!
//! - An object with the name a child needs that is not ours is never adopted, overwritten or
//!   deleted: `Synced=False NameConflict` names it, and the rollout holds until it is gone.
//! - The MLflow credentials Secret is read by name; a missing Secret and a Secret without the
//!   needed keys are their own reasons (`SecretNotFound`, `SecretKeyMissing`), and the
//!   condition never shows the Secret's content.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane: full suite only, `cargo test --features harness` (tests/run.sh turns
// it on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use mlrollout::api::ModelDeployment;
use mlrollout::controller::WatchScope;
use mlrollout::registry::memory::InMemoryRegistry;

use common::cluster::{self, eventually};
use common::operator::{Operator, test_context};

const LIMIT: Duration = Duration::from_secs(60);

fn resource(namespace: &str, extra_model: serde_json::Value) -> ModelDeployment {
    let mut model = serde_json::json!({"trackingUri": "http://127.0.0.1:9", "name": "fraud"});
    for (k, v) in extra_model.as_object().unwrap() {
        model[k] = v.clone();
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "fraud", "namespace": namespace},
        "spec": {"model": model, "traffic": {"provider": "none"}}
    }))
    .unwrap()
}

fn operator(client: &kube::Client, ns: &str) -> Operator {
    let registry = Arc::new(InMemoryRegistry::new());
    registry.register("fraud", 3, &[], &[]);
    registry.set_alias("fraud", "champion", 3);
    Operator::run(
        test_context(client.clone(), registry),
        WatchScope::Namespace(ns.to_string()),
    )
}

/// (status, reason, message) of condition `kind` once `check` accepts it.
async fn condition_when(
    api: &Api<ModelDeployment>,
    kind: &str,
    what: &str,
    check: impl Fn(&str, &str) -> bool,
) -> (String, String, String) {
    eventually(what, LIMIT, || async {
        let status = api.get("fraud").await.ok()?.status?;
        let c = status.conditions.into_iter().find(|c| c.type_ == kind)?;
        check(&c.status, &c.reason).then_some((c.status, c.reason, c.message))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_is_not_ours_is_never_adopted_and_the_rollout_holds() {
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "trust-names").await;
    // A neighbour's Deployment with the name the stable variant needs.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let theirs: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "fraud-stable", "labels": {"team": "payments"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "theirs"}},
            "template": {"metadata": {"labels": {"app": "theirs"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    let operator = operator(&client, &ns);
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &resource(&ns, serde_json::json!({})),
    )
    .await
    .unwrap();

    let (_, _, message) = condition_when(&api, "Synced", "Synced=False NameConflict", |s, r| {
        s == "False" && r == "NameConflict"
    })
    .await;
    assert!(
        message.contains("Deployment fraud-stable") && message.contains("no controller"),
        "{message}"
    );
    // Held: the decided phase was not written, and theirs is untouched — no owner reference,
    // no field of ours, their image.
    let status = api.get("fraud").await.unwrap().status.unwrap();
    assert_eq!(status.phase, mlrollout::api::Phase::Pending, "{status:?}");
    let after = deployments.get("fraud-stable").await.unwrap();
    assert!(after.metadata.owner_references.is_none(), "{after:?}");
    assert!(
        after
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .all(|m| m.manager.as_deref() != Some("mlrollout")),
        "{after:?}"
    );
    let image = after.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("nginx:1"));

    // Theirs gone, ours is created and the resource serves.
    deployments
        .delete("fraud-stable", &DeleteParams::foreground())
        .await
        .unwrap();
    condition_when(
        &api,
        "Synced",
        "Synced=True once the name is free",
        |s, _| s == "True",
    )
    .await;
    let ours = eventually("our stable Deployment", LIMIT, || async {
        let d = deployments.get_opt("fraud-stable").await.ok()??;
        d.metadata.owner_references.is_some().then_some(d)
    })
    .await;
    assert_eq!(
        ours.metadata.owner_references.unwrap()[0].kind,
        "ModelDeployment"
    );

    operator.stop().await;
    cluster::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_incomplete_credentials_secret_has_its_own_reason() {
    let client = cluster::client().await;
    let ns = cluster::namespace(&client, "trust-secret").await;
    let operator = operator(&client, &ns);
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    api.create(
        &PostParams::default(),
        &resource(
            &ns,
            serde_json::json!({"credentialsSecret": {"name": "mlflow-creds"}}),
        ),
    )
    .await
    .unwrap();

    let (_, _, message) = condition_when(&api, "Ready", "Ready=False SecretNotFound", |s, r| {
        s == "False" && r == "SecretNotFound"
    })
    .await;
    assert!(
        message.contains("\"mlflow-creds\"") && message.contains("spec.model.credentialsSecret"),
        "{message}"
    );

    // A Secret without the keys: its own reason, and its content is never echoed.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "mlflow-creds"},
        "stringData": {"tokn": "s3cr3t-value-never-shown"}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let (_, _, message) = condition_when(&api, "Ready", "Ready=False SecretKeyMissing", |s, r| {
        s == "False" && r == "SecretKeyMissing"
    })
    .await;
    assert!(message.contains("`token`"), "{message}");
    let everything = serde_json::to_string(&api.get("fraud").await.unwrap().status).unwrap();
    assert!(!everything.contains("s3cr3t"), "{everything}");

    // With a token the model resolves (the in-memory registry accepts any credentials).
    secrets
        .delete("mlflow-creds", &DeleteParams::default())
        .await
        .unwrap();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "mlflow-creds"},
        "stringData": {"token": "s3cr3t-value-never-shown"}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    condition_when(&api, "RegistrySynced", "the model resolves", |s, _| {
        s == "True"
    })
    .await;

    operator.stop().await;
    cluster::delete_namespace(&client, &ns).await;
}
