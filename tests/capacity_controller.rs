//! Capacity and placement through the real Controller on the real API server (see
//! `common::cluster`), in scaled virtual time: `dynamicStableScale` shrinks stable as the
//! candidate takes weight and, on a rollback, scales stable up before the route hands traffic
//! back (a ResourceQuota holds stable's new Pods back to show the route waits for them);
//! `antiAffinity` and `candidateMetadata`/`stableMetadata` reach the Deployments the API server
//! stores and the Pods kwok runs.
//!
//! Real here: the API server, the Deployment, ReplicaSet and quota controllers, the scheduler,
//! kwok. Played by the test: MLflow (in memory), Prometheus (scripted, healthy), the drift
//! verdict and the training code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
#![cfg(feature = "harness")]

mod common;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use mlrollout::api::Phase;

use common::cluster;
use common::world::{HOUR, MINUTE, MODEL, World, drive_to_job_with, resource};

const STABLE: &str = "fraud-detector-stable";
const CANDIDATE: &str = "fraud-detector-candidate";

/// (spec.replicas, status.readyReplicas) of a Deployment, if it exists.
async fn scale(deployments: &Api<Deployment>, name: &str) -> Option<(i32, i32)> {
    let d = deployments.get_opt(name).await.unwrap()?;
    let desired = d.spec.and_then(|s| s.replicas).unwrap_or(0);
    let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
    Some((desired, ready))
}

async fn annotate(world: &World, key: &str, value: &str) {
    let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
    world
        .mdeps()
        .patch(MODEL, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stable_follows_the_weight_and_a_rollback_waits_for_stables_replicas() {
    let world = World::new("cap-scale").await;
    let deployments: Api<Deployment> = Api::namespaced(world.client.clone(), &world.ns);
    let operator = world.operator();
    let mut resource = resource(&world.ns);
    resource.spec.serving.replicas = 4;
    // Without the proxy sidecar the serving Pods are BestEffort (the quota below counts them).
    resource.spec.serving.proxy.enabled = false;
    // Steps advance by hand (`promote next`), so the test can act at 50 %.
    resource.spec.rollout.step_duration = "1h".into();
    resource.spec.rollout.dynamic_stable_scale = true;
    let job = drive_to_job_with(&world, resource).await;
    world.complete_job(&job, 0.91).await;

    world.wait_weights("10% step", (90, 10), 2 * HOUR).await;
    // 90 % of 4 replicas needs 4 (rounded up); 10 % needs 1.
    world
        .clock
        .wait_for("stable 4, candidate 1", HOUR, || async {
            let pair = (
                scale(&deployments, STABLE).await?.0,
                scale(&deployments, CANDIDATE).await?.0,
            );
            (pair == (4, 1)).then_some(())
        })
        .await;

    annotate(&world, "mlrollout.io/promote", "next@1").await;
    world.wait_weights("50% step", (50, 50), HOUR).await;
    world
        .clock
        .wait_for(
            "stable shrinks to 2 after the route moved",
            HOUR,
            || async {
                let stable = scale(&deployments, STABLE).await?;
                let candidate = scale(&deployments, CANDIDATE).await?;
                (stable == (2, 2) && candidate == (2, 2)).then_some(())
            },
        )
        .await;

    // A quota admits the four serving Pods there are and no more: stable cannot scale up.
    let quotas: Api<ResourceQuota> = Api::namespaced(world.client.clone(), &world.ns);
    let quota: ResourceQuota = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "serving-pods"},
        "spec": {"hard": {"pods": "4"}, "scopes": ["BestEffort"]}
    }))
    .unwrap();
    quotas.create(&PostParams::default(), &quota).await.unwrap();
    cluster::eventually("the quota counts the four serving Pods", HOUR, || async {
        let q = quotas.get("serving-pods").await.ok()?;
        let used = q.status?.used?.get("pods")?.0.clone();
        (used == "4").then_some(())
    })
    .await;

    annotate(&world, "mlrollout.io/abort", "t1").await;
    let s = world.wait_phase(Phase::RolledBack, HOUR).await;
    assert_eq!(s.canary_weight, 0);
    world
        .clock
        .wait_for("stable asked for its full size", HOUR, || async {
            (scale(&deployments, STABLE).await?.0 == 4).then_some(())
        })
        .await;
    // Stable cannot get its Pods: past the progress deadline (10 m) the status says so, and
    // the route still keeps half on the candidate.
    let message = world
        .clock
        .wait_for("the wait is reported past the deadline", HOUR, || async {
            let routed = world.status().await.routed_traffic?;
            let message = routed.message?;
            message
                .starts_with("progress deadline exceeded")
                .then_some(message)
        })
        .await;
    assert!(message.contains("2 of 4 ready"), "{message}");
    assert_eq!(world.weights().await, Some((50, 50)));
    assert_eq!(scale(&deployments, STABLE).await, Some((4, 2)));
    assert!(scale(&deployments, CANDIDATE).await.is_some());

    // Room for stable's Pods: the route returns to stable once they are ready.
    quotas
        .delete("serving-pods", &DeleteParams::default())
        .await
        .unwrap();
    world
        .wait_weights("route back on stable", (100, 0), HOUR)
        .await;
    let (desired, ready) = scale(&deployments, STABLE).await.unwrap();
    assert_eq!(
        (desired, ready),
        (4, 4),
        "traffic returned to a stable of {ready} ready"
    );
    world.wait_candidate_removed().await;
    let s = world.status().await;
    assert_eq!(s.routed_traffic.unwrap().candidate_weight, 0);
    world.finish(operator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_affinity_and_variant_metadata_reach_deployments_and_pods() {
    let world = World::new("cap-place").await;
    let deployments: Api<Deployment> = Api::namespaced(world.client.clone(), &world.ns);
    let pods: Api<Pod> = Api::namespaced(world.client.clone(), &world.ns);
    let operator = world.operator();
    let mut resource = resource(&world.ns);
    resource.spec.rollout = serde_json::from_value(serde_json::json!({
        "steps": [10, 50, 100],
        "stepDuration": "1h",
        "progressDeadline": "10m",
        // One kwok node: a required term would leave the candidate Pending.
        "antiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": {"weight": 50}},
        "candidateMetadata": {"labels": {"track": "canary"}, "annotations": {"team": "fraud"}},
        "stableMetadata": {"labels": {"track": "stable"}}
    }))
    .unwrap();
    let job = drive_to_job_with(&world, resource).await;
    world.complete_job(&job, 0.91).await;
    world.wait_weights("10% step", (90, 10), 2 * HOUR).await;

    for (name, track, other) in [
        (STABLE, "stable", "candidate"),
        (CANDIDATE, "canary", "stable"),
    ] {
        let stored = deployments.get(name).await.unwrap();
        let template = stored.spec.unwrap().template;
        let meta = template.metadata.unwrap();
        assert_eq!(meta.labels.unwrap()["track"], track, "{name}");
        let annotations = meta.annotations.unwrap_or_default();
        assert_eq!(
            annotations.get("team").map(String::as_str),
            (track == "canary").then_some("fraud"),
            "{name}"
        );
        let anti = template
            .spec
            .unwrap()
            .affinity
            .unwrap()
            .pod_anti_affinity
            .unwrap();
        let terms = anti
            .preferred_during_scheduling_ignored_during_execution
            .unwrap();
        assert_eq!(terms.len(), 1, "{name}");
        assert_eq!(terms[0].weight, 50);
        let term = &terms[0].pod_affinity_term;
        assert_eq!(term.topology_key, "kubernetes.io/hostname");
        let selector = term.label_selector.clone().unwrap().match_labels.unwrap();
        assert_eq!(selector["mlrollout.io/variant"], other, "{name}");
        assert_eq!(selector["mlrollout.io/model-deployment"], MODEL);
    }
    // The Pods kwok runs carry the labels: a metric query can select a variant by them.
    for (track, variant) in [("canary", "candidate"), ("stable", "stable")] {
        let running = world
            .clock
            .wait_for("the variant's Pods run", 10 * MINUTE, || async {
                let list = pods
                    .list(&ListParams::default().labels(&format!("track={track}")))
                    .await
                    .ok()?;
                let running: Vec<Pod> = list
                    .items
                    .into_iter()
                    .filter(|p| {
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    })
                    .collect();
                (!running.is_empty()).then_some(running)
            })
            .await;
        for pod in running {
            let labels = pod.metadata.labels.unwrap();
            assert_eq!(labels["mlrollout.io/variant"], variant);
        }
    }
    world.finish(operator).await;
}
