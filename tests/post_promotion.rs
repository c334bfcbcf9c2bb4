//! Post-promotion analysis and warm rollback through the real Controller on the real API
//! server (see `common::cluster`), in scaled virtual time: after promotion the previous version
//! keeps running on the stable Deployment, untouched, while the promoted one serves all traffic;
//! a post-promotion regression moves the route back to it at once, with no new pods.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane: full suite only, `cargo test --features harness` (tests/run.sh turns it
// on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use mlrollout::api::Phase;

use common::world::{HOUR, MODEL, World, drive_to_job_with, resource};

const METRIC: &str = "error-rate-absolute";

/// (model version label, metadata.generation) of the stable Deployment.
async fn stable_deployment(world: &World) -> (String, i64) {
    let deployments: Api<Deployment> = Api::namespaced(world.client.clone(), &world.ns);
    let d = deployments
        .get(&format!("{MODEL}-stable"))
        .await
        .expect("the stable Deployment");
    let version = d
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref())
        .and_then(|l| l.get(mlrollout::core::names::LABEL_MODEL_VERSION).cloned())
        .unwrap_or_default();
    (version, d.metadata.generation.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_promotion_regression_goes_back_to_the_warm_previous_version_at_once() {
    let world = World::new("pp-warm").await;
    let operator = world.operator();
    world.analyzer.set(METRIC, "candidate", Some(0.01));
    let mut r = resource(&world.ns);
    r.spec.rollout = serde_json::from_value(serde_json::json!({
        "steps": [10, 50, 100], "stepDuration": "1m", "progressDeadline": "10m",
        "analysis": {"prometheus": {"address": "http://prometheus:9090"}, "interval": "10s", "count": 3},
        "scaleDownDelay": "2h",
        "postPromotion": {"duration": "1h", "metrics": [{"name": METRIC, "query": "q", "max": 0.05}]}
    }))
    .unwrap();
    let job = drive_to_job_with(&world, r).await;
    let (version_before, generation_before) = stable_deployment(&world).await;
    assert_eq!(version_before, "3");
    world.complete_job(&job, 0.91).await;

    let promoted = world.wait_phase(Phase::Promoted, 2 * HOUR).await;
    let window = promoted.post_promotion.clone().expect("a warm window");
    assert_eq!(window.previous_version, "3");
    assert_eq!(promoted.stable_version.as_deref(), Some("4"));
    world
        .wait_weights("all traffic on the promoted pods", (0, 100), HOUR)
        .await;
    assert_eq!(world.registry.alias(MODEL, "champion"), Some(4));
    // The post-promotion analysis passes for a while; the stable Deployment is untouched.
    world
        .clock
        .wait_for("post-promotion measurements", HOUR, || async {
            let s = world.status().await;
            let passed = s
                .analysis
                .as_ref()
                .and_then(|a| a.metrics.iter().find(|m| m.name == METRIC))
                .map_or(0, |m| m.passed);
            (passed >= 2).then_some(())
        })
        .await;
    assert_eq!(
        stable_deployment(&world).await,
        (version_before.clone(), generation_before),
        "the previous version stays warm, its Deployment unchanged"
    );

    // The promoted version regresses: back to the warm previous version at once.
    world.analyzer.set(METRIC, "candidate", Some(0.2));
    let rolled = world.wait_phase(Phase::RolledBack, HOUR).await;
    let record = rolled.history.last().unwrap();
    assert_eq!(
        (record.outcome.as_str(), record.reason.as_str()),
        ("RolledBack", "PostPromotionAnalysisFailed")
    );
    assert_eq!(rolled.stable_version.as_deref(), Some("3"));
    assert_eq!(rolled.post_promotion, None);
    world.wait_weights("route back on 3", (100, 0), HOUR).await;
    assert_eq!(
        stable_deployment(&world).await,
        (version_before, generation_before),
        "traffic went back to pods that were already running"
    );
    assert_eq!(world.registry.alias(MODEL, "champion"), Some(3));
    assert_eq!(
        world
            .registry
            .tag(MODEL, 4, "mlrollout.io/rollout")
            .as_deref(),
        Some("rolled-back: PostPromotionAnalysisFailed")
    );
    world.wait_candidate_removed().await;
    world.wait_events(&["Promoted", "RolledBack"]).await;
    world.finish(operator).await;
}
