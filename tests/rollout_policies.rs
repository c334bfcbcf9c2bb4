//! Rollout policies through the real Controller on the real API server (see `common::cluster`),
//! in scaled virtual time: after promotion the previous version keeps running on the stable
//! Deployment, untouched, while the promoted one serves all traffic, and a post-promotion
//! regression moves the route back to it at once, with no new pods; a plan's pause step holds
//! until a person promotes, while a failing dry-run metric is reported and changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane: full suite only, `cargo test --features harness` (tests/run.sh turns it
// on; CONTRIBUTING.md says which test needs what).
#![cfg(feature = "harness")]

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use mlrollout::api::{PauseReason, Phase};

use common::world::{HOUR, MINUTE, MODEL, World, drive_to_job_with, resource};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_step_holds_until_promoted_and_a_dry_run_metric_changes_nothing() {
    let world = World::new("pp-plan").await;
    let operator = world.operator();
    // The gating metrics are healthy; the dry-run one fails at every measurement.
    world.analyzer.set("strict", "candidate", Some(0.01));
    let mut r = resource(&world.ns);
    r.spec.rollout = serde_json::from_value(serde_json::json!({
        "plan": [
            {"weight": 10, "duration": "1m"},
            {"weight": 50, "pause": {}},
            {"weight": 100, "duration": "1m"}
        ],
        "progressDeadline": "10m",
        "analysis": {"prometheus": {"address": "http://prometheus:9090"}, "interval": "10s", "count": 3,
                     "metrics": [
                         {"name": "error-rate", "query": "q", "maxIncrease": {"ratio": 1.5}},
                         {"name": "strict", "query": "q", "max": 0.001, "dryRun": true}
                     ]}
    }))
    .unwrap();
    let job = drive_to_job_with(&world, r).await;
    world.complete_job(&job, 0.91).await;

    world
        .wait_weights("the pause step", (50, 50), 2 * HOUR)
        .await;
    let paused = world
        .clock
        .wait_for("paused at 50 %", HOUR, || async {
            let s = world.status().await;
            s.paused.then_some(s)
        })
        .await;
    assert_eq!(paused.pause_reason, Some(PauseReason::Step));
    assert_eq!(paused.current_step, Some(1));
    // kubectl readers see why it holds and how to go on.
    let progressing = paused
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .expect("a Progressing condition");
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("False", "Paused")
    );
    assert!(
        progressing.message.contains("pause step of rollout.plan"),
        "{}",
        progressing.message
    );
    // An hour later nothing moved: a pause step waits for a person.
    world.clock.advance(60 * MINUTE);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = world.status().await;
    assert_eq!(
        (s.phase, s.current_step, s.canary_weight),
        (Phase::Progressing, Some(1), 50)
    );
    assert_eq!(world.weights().await, Some((50, 50)));

    let promote =
        serde_json::json!({"metadata": {"annotations": {"mlrollout.io/promote": "next@1"}}});
    world
        .mdeps()
        .patch(MODEL, &PatchParams::default(), &Patch::Merge(&promote))
        .await
        .unwrap();
    let end = world
        .clock
        .wait_for("promoted to version 4", 2 * HOUR, || async {
            let s = world.status().await;
            (s.phase == Phase::Stable && s.stable_version.as_deref() == Some("4")).then_some(s)
        })
        .await;
    assert_eq!(
        end.history.last().unwrap().outcome,
        mlrollout::api::RolloutOutcome::Promoted
    );
    // The dry-run metric failed and was reported on the real API server, without effect.
    world
        .wait_events(&["DryRunMetricFailed", "ManualPromotion", "Promoted"])
        .await;
    world.finish(operator).await;
}
