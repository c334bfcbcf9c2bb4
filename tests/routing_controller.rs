//! Routing beyond two weighted Services, through the real Controller on the real API server
//! with the real CRDs (Gateway API v1.6.3 HTTPRoute, the Inference Extension's v1
//! InferencePool, Istio's VirtualService; see tests/harness/cluster.sh):
//!
//! - InferencePool backends: one pool per variant, owned by the resource, selecting that
//!   variant's pods and naming its endpoint picker; the HTTPRoute weights the two pools
//!   through 10 → 50 → 100 exactly like Services, and every object is admitted by its CRD.
//! - Experiments (A/B): after shadow, the HTTPRoute (or the VirtualService) gets a rule that
//!   sends requests matching a header or cookie — and the sticky cookie — to the candidate;
//!   the real CRDs admit it; a passing experiment leads to the steps and is recorded in status
//!   and as MLflow tags; a failing one rolls back.
//!
//! Played by the test as in `lifecycle_controller.rs`: MLflow (in memory), Prometheus
//! (scripted), the drift verdict and the training code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]
// test code states expectations

// Needs the control plane: `cargo test --features harness` (tests/run.sh turns it on).
#![cfg(feature = "harness")]

mod common;

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use gateway_api::httproutes::HttpRoute;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use mlrollout::api::{ExperimentOutcome, ModelDeployment, Phase, RolloutReason};
use mlrollout::core::children::{experiment_route, inference_pool, route};

use common::world::{HOUR, MINUTE, MODEL, World, drive_to_job_with, resource};

/// (kind, name, weight) of every backendRef of the route's first rule.
type Backends = Vec<(Option<String>, String, Option<i32>)>;

fn backends(route: &HttpRoute) -> Backends {
    route
        .spec
        .rules
        .as_ref()
        .and_then(|r| r.first())
        .and_then(|r| r.backend_refs.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|b| (b.kind, b.name, b.weight))
        .collect()
}

/// Every distinct version of the HTTPRoute's backendRefs, in order (a watch sees each write).
fn record_backends(world: &World) -> (Arc<Mutex<Vec<Backends>>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let routes: Api<HttpRoute> = Api::namespaced(world.client.clone(), &world.ns);
    let out = seen.clone();
    let task = tokio::spawn(async move {
        let config = watcher::Config::default().fields(&format!("metadata.name={MODEL}"));
        let mut stream = watcher(routes, config).applied_objects().boxed();
        while let Some(Ok(route)) = stream.next().await {
            let now = backends(&route);
            let mut seen = out.lock().unwrap();
            if seen.last() != Some(&now) {
                seen.push(now);
            }
        }
    });
    (seen, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inference_pools_are_weighted_through_every_step() {
    let world = World::new("rt-pools").await;
    let operator = world.operator();
    let (seen, recorder) = record_backends(&world);
    let mut resource = resource(&world.ns);
    resource.spec.traffic.backend = Some(
        serde_json::from_value(serde_json::json!({
            "kind": "InferencePool",
            "appProtocol": "http",
            "endpointPickers": {
                "stable": {"name": "fraud-epp-stable", "port": 9002},
                "candidate": {"name": "fraud-epp-candidate", "port": 9002, "failureMode": "FailOpen"}
            }
        }))
        .unwrap(),
    );

    let job = drive_to_job_with(&world, resource).await;
    // Both pools exist from the start, each owned by the resource and selecting its variant.
    let pools: Api<DynamicObject> =
        Api::namespaced_with(world.client.clone(), &world.ns, &inference_pool::resource());
    let uid = world.mdeps().get(MODEL).await.unwrap().metadata.uid;
    for (variant, epp) in [
        ("stable", "fraud-epp-stable"),
        ("candidate", "fraud-epp-candidate"),
    ] {
        let name = format!("{MODEL}-{variant}");
        let pool = pools.get(&name).await.unwrap();
        let owner = &pool.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), Some(&owner.uid)),
            ("ModelDeployment", uid.as_ref())
        );
        assert_eq!(owner.controller, Some(true));
        let spec = &pool.data["spec"];
        assert_eq!(
            spec["selector"]["matchLabels"],
            serde_json::json!({"mlrollout.io/model-deployment": MODEL, "mlrollout.io/variant": variant}),
            "{name}"
        );
        // The proxy is on: the pool targets its port, as the Service does.
        assert_eq!(spec["targetPorts"], serde_json::json!([{"number": 8000}]));
        assert_eq!(spec["endpointPickerRef"]["name"], epp);
        assert_eq!(spec["endpointPickerRef"]["port"]["number"], 9002);
        assert_eq!(spec["appProtocol"], "http");
    }
    let candidate_pool = pools.get(&format!("{MODEL}-candidate")).await.unwrap();
    assert_eq!(
        candidate_pool.data["spec"]["endpointPickerRef"]["failureMode"],
        "FailOpen"
    );

    world.complete_job(&job, 0.91).await;
    world
        .clock
        .wait_for("promoted to version 4", 2 * HOUR, || async {
            let s = world.status().await;
            (s.phase == Phase::Stable && s.stable_version.as_deref() == Some("4")).then_some(())
        })
        .await;
    world
        .clock
        .wait_for("the route back on the stable pool alone", HOUR, || async {
            let last = seen.lock().unwrap().last().cloned()?;
            (last.len() == 1 && last[0].2 == Some(100)).then_some(())
        })
        .await;
    recorder.abort();
    let seen = seen.lock().unwrap().clone();

    // Every backendRef the server stored is an InferencePool, weighted as Services would be.
    let pool = Some("InferencePool".to_string());
    assert!(
        seen.iter().flatten().all(|(kind, _, _)| *kind == pool),
        "{seen:#?}"
    );
    let candidate: Vec<i32> = seen
        .iter()
        .filter_map(|b| b.iter().find(|(_, n, _)| n.ends_with("-candidate")))
        .filter_map(|(_, _, w)| *w)
        .collect();
    assert_eq!(candidate, vec![0, 10, 50, 100], "{seen:#?}");
    for backends in &seen {
        let total: i32 = backends.iter().filter_map(|(_, _, w)| *w).sum();
        assert_eq!(total, 100, "{backends:?}");
    }
    world.finish(operator).await;
}

/// The world's resource with a 5-minute sticky experiment on `x-canary: insider` or cookie
/// `canary=always`.
fn with_experiment(world: &World, traffic: Option<serde_json::Value>) -> ModelDeployment {
    let mut resource = resource(&world.ns);
    if let Some(traffic) = traffic {
        resource.spec.traffic = serde_json::from_value(traffic).unwrap();
    }
    resource.spec.rollout.experiment = Some(
        serde_json::from_value(serde_json::json!({
            "duration": "5m",
            "sticky": true,
            "match": [
                {"headers": [{"name": "x-canary", "value": "insider"},
                             {"name": "user-agent", "regex": "^.*Firefox.*$"}]},
                {"cookie": {"name": "canary", "value": "always"}}
            ]
        }))
        .unwrap(),
    );
    resource
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experiment_routes_matching_requests_then_passes_to_the_steps() {
    let world = World::new("rt-experiment").await;
    let operator = world.operator();
    let job = drive_to_job_with(&world, with_experiment(&world, None)).await;
    world.complete_job(&job, 0.91).await;

    let experimenting = world.wait_phase(Phase::Experimenting, 2 * HOUR).await;
    assert_eq!(experimenting.canary_weight, 0);
    let running = experimenting.experiment.as_ref().unwrap();
    assert_eq!(
        (running.candidate_version.as_str(), running.outcome),
        ("4", ExperimentOutcome::Running)
    );
    // The HTTPRoute the server stored: the weighted rule (all on stable) and the experiment's.
    let routes: Api<HttpRoute> = Api::namespaced(world.client.clone(), &world.ns);
    let stored = world
        .clock
        .wait_for("the experiment rule", HOUR, || async {
            let route = routes.get(MODEL).await.ok()?;
            (route.spec.rules.as_ref()?.len() == 2).then_some(route)
        })
        .await;
    let value = serde_json::to_value(&stored).unwrap();
    let rules = &value["spec"]["rules"];
    assert_eq!(rules[0]["backendRefs"][0]["weight"], 100);
    assert_eq!(rules[0]["backendRefs"][1]["weight"], 0);
    let rule = &rules[1];
    assert_eq!(rule["name"], experiment_route::RULE_NAME);
    assert_eq!(rule["backendRefs"][0]["name"], "fraud-detector-candidate");
    let matches = rule["matches"].as_array().unwrap();
    assert_eq!(matches.len(), 3, "{matches:#?}");
    // The server defaulted each match's path, and kept the header matches as sent.
    assert_eq!(matches[0]["path"]["type"], "PathPrefix");
    assert_eq!(
        matches[0]["headers"],
        serde_json::json!([
            {"name": "x-canary", "type": "Exact", "value": "insider"},
            {"name": "user-agent", "type": "RegularExpression", "value": "^.*Firefox.*$"}
        ])
    );
    assert_eq!(
        matches[2]["headers"][0]["value"],
        experiment_route::cookie_regex("mlrollout-fraud-detector", "4")
    );
    assert_eq!(
        rule["filters"][0]["responseHeaderModifier"]["add"][0],
        serde_json::json!({"name": "Set-Cookie",
                           "value": "mlrollout-fraud-detector=4; Path=/; Max-Age=300; HttpOnly"})
    );

    // The analysis is healthy: after 5 minutes the steps follow and the rule is gone.
    world.wait_weights("the first step", (90, 10), HOUR).await;
    let route = routes.get(MODEL).await.unwrap();
    assert_eq!(route.spec.rules.unwrap().len(), 1);
    let status = world.status().await;
    let experiment = status.experiment.unwrap();
    assert_eq!(experiment.outcome, ExperimentOutcome::Passed);
    let ran = experiment
        .finished_at
        .unwrap()
        .0
        .duration_since(experiment.started_at.unwrap().0);
    assert!(ran.as_secs() >= 5 * 60, "{ran:?}");
    assert!(!experiment.metrics.is_empty());
    assert!(
        experiment
            .metrics
            .iter()
            .all(|m| m.passed >= 3 && m.failed == 0),
        "{:?}",
        experiment.metrics
    );
    world
        .clock
        .wait_for("the experiment's tags in MLflow", HOUR, || async {
            (world
                .registry
                .tag(MODEL, 4, "mlrollout.io/experiment")
                .as_deref()
                == Some("passed"))
            .then_some(())
        })
        .await;
    let summary = world
        .registry
        .tag(MODEL, 4, "mlrollout.io/experiment-summary")
        .unwrap();
    assert!(summary.starts_with("outcome=passed ran="), "{summary}");
    assert!(summary.contains("error-rate: "), "{summary}");
    world
        .wait_events(&[
            "ShadowPassed",
            "ExperimentStarted",
            "ExperimentPassed",
            "StepStarted",
        ])
        .await;
    world.finish(operator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_experiment_rolls_back_on_istio() {
    let world = World::new("rt-experiment-istio").await;
    let operator = world.operator();
    let traffic = serde_json::json!({"provider": "istio", "hostnames": ["fraud.example.com"]});
    let job = drive_to_job_with(&world, with_experiment(&world, Some(traffic))).await;
    world.complete_job(&job, 0.91).await;
    world.wait_phase(Phase::Experimenting, 2 * HOUR).await;

    // The VirtualService the server stored: the matching route first, then the weighted one.
    let services: Api<DynamicObject> = Api::namespaced_with(
        world.client.clone(),
        &world.ns,
        &route::virtual_service_resource(),
    );
    let stored = world
        .clock
        .wait_for("the experiment route", HOUR, || async {
            let vs = services.get(MODEL).await.ok()?;
            (vs.data["spec"]["http"].as_array()?.len() == 2).then_some(vs)
        })
        .await;
    let http = &stored.data["spec"]["http"];
    assert_eq!(http[0]["name"], experiment_route::RULE_NAME);
    assert_eq!(
        http[0]["match"][0]["headers"],
        serde_json::json!({"x-canary": {"exact": "insider"}, "user-agent": {"regex": "^.*Firefox.*$"}})
    );
    assert_eq!(
        http[0]["route"][0]["destination"]["host"],
        format!("fraud-detector-candidate.{}.svc.cluster.local", world.ns)
    );
    assert_eq!(
        http[0]["headers"]["response"]["add"]["set-cookie"],
        "mlrollout-fraud-detector=4; Path=/; Max-Age=300; HttpOnly"
    );
    assert_eq!(http[1]["name"], "mlrollout");
    assert_eq!(http[1]["route"][0]["weight"], 100);

    // The candidate's error rate triples during the experiment: rolled back.
    world.analyzer.set("error-rate", "candidate", Some(0.03));
    let rolled = world.wait_phase(Phase::RolledBack, HOUR).await;
    assert_eq!(
        rolled.history.last().unwrap().reason,
        RolloutReason::ExperimentFailed
    );
    let experiment = rolled.experiment.unwrap();
    assert_eq!(experiment.outcome, ExperimentOutcome::Failed);
    assert!(
        experiment
            .metrics
            .iter()
            .any(|m| m.name == "error-rate" && m.failed > 0)
    );
    world
        .clock
        .wait_for("the route back to one weighted route", HOUR, || async {
            let vs = services.get(MODEL).await.ok()?;
            (vs.data["spec"]["http"].as_array()?.len() == 1).then_some(())
        })
        .await;
    world
        .clock
        .wait_for("the experiment's tag in MLflow", 10 * MINUTE, || async {
            (world
                .registry
                .tag(MODEL, 4, "mlrollout.io/experiment")
                .as_deref()
                == Some("failed"))
            .then_some(())
        })
        .await;
    world.finish(operator).await;
}
