//! Routing beyond two weighted Services, through the real Controller on the real API server
//! with the real CRDs (Gateway API v1.6.3 HTTPRoute, the Inference Extension's v1
//! InferencePool, Istio's VirtualService; see tests/harness/cluster.sh):
//!
//! - InferencePool backends: one pool per variant, owned by the resource, selecting that
//!   variant's pods and naming its endpoint picker; the HTTPRoute weights the two pools
//!   through 10 → 50 → 100 exactly like Services, and every object is admitted by its CRD.
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
use mlrollout::api::Phase;
use mlrollout::core::children::inference_pool;

use common::world::{HOUR, MODEL, World, drive_to_job_with, resource};

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
