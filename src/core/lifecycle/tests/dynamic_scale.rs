//! `spec.rollout.dynamicStableScale` through the whole decision on the simulated cluster: the
//! variants' replicas follow the route, a step waits for the candidate's replicas, and a
//! rollback scales stable up before the route hands traffic back.

use super::*;
use crate::api::status::RoutedTraffic;
use crate::core::decide::Removal;

fn scaled_spec() -> ModelDeploymentSpec {
    spec_with(json!({
        "serving": {"replicas": 10},
        "rollout": {"dynamicStableScale": true}
    }))
}

/// At step `index` (`weight` %), the route already carrying it.
fn routed_step(index: i32, weight: i32) -> ModelDeploymentStatus {
    ModelDeploymentStatus {
        routed_traffic: Some(RoutedTraffic {
            candidate_version: Some("4".into()),
            candidate_weight: weight,
            ..RoutedTraffic::default()
        }),
        ..at_step(index, weight, 0)
    }
}

/// (stable, candidate) replicas of the decided Deployments (`None`: not applied).
fn replicas(d: &Decision) -> (Option<i32>, Option<i32>) {
    let of = |name: &str| {
        d.apply.as_ref().unwrap().iter().find_map(|c| match c {
            Child::Deployment(dep) if dep.metadata.name.as_deref() == Some(name) => {
                dep.spec.as_ref().and_then(|s| s.replicas)
            }
            _ => None,
        })
    };
    (of("fraud-stable"), of("fraud-candidate"))
}

fn scripted(cluster: &mut Harness, stable: bool, candidate: bool) {
    cluster.set_readiness(Readiness::Scripted { stable, candidate });
}

#[test]
fn stable_shrinks_with_the_candidates_weight() {
    let mut cluster = cluster(&scaled_spec(), routed_step(1, 50));
    let d = reconcile_at(&mut cluster, at(MIN));
    assert_eq!(replicas(&d), (Some(5), Some(5)));
    assert_eq!(
        route_weights(&d),
        vec![("fraud-stable".into(), 50), ("fraud-candidate".into(), 50)]
    );
    // Without the setting both variants run at full size.
    let mut plain = cluster_without_scaling();
    let d = reconcile_at(&mut plain, at(MIN));
    assert_eq!(replicas(&d), (Some(10), Some(10)));
    assert_eq!(d.status.routed_traffic, None);
}

fn cluster_without_scaling() -> Harness {
    let spec = spec_with(json!({"serving": {"replicas": 10}}));
    cluster(&spec, at_step(1, 50, 0))
}

#[test]
fn a_step_waits_for_the_candidates_replicas_before_the_route_moves() {
    let mut cluster = cluster(&scaled_spec(), routed_step(0, 10));
    scripted(&mut cluster, true, false);
    cluster.annotate(manual::PROMOTE, Some("next@2027-01-15T08:01:00Z".into()));
    let d = reconcile_at(&mut cluster, at(MIN));
    assert_eq!(d.status.current_step, Some(1));
    assert_eq!(d.status.canary_weight, 50);
    // The candidate scales to 50 % first; the route and stable stay at 10/90.
    assert_eq!(replicas(&d), (Some(9), Some(5)));
    assert_eq!(
        route_weights(&d),
        vec![("fraud-stable".into(), 90), ("fraud-candidate".into(), 10)]
    );
    assert!(d.requeue_after <= crate::core::decide::SHORT_RETRY);
    let d = reconcile_at(&mut cluster, at(2 * MIN));
    assert_eq!(route_weights(&d)[1].1, 10, "still not ready");
    scripted(&mut cluster, true, true);
    let d = reconcile_at(&mut cluster, at(3 * MIN));
    assert_eq!(
        route_weights(&d),
        vec![("fraud-stable".into(), 50), ("fraud-candidate".into(), 50)]
    );
    assert_eq!(
        replicas(&d),
        (Some(9), Some(5)),
        "stable shrinks after the move"
    );
    let d = reconcile_at(&mut cluster, at(4 * MIN));
    assert_eq!(replicas(&d), (Some(5), Some(5)));
}

#[test]
fn a_rollback_scales_stable_up_before_the_route_returns_to_it() {
    let mut cluster = cluster(&scaled_spec(), routed_step(1, 50));
    reconcile_at(&mut cluster, at(MIN));
    scripted(&mut cluster, false, true);
    cluster.annotate(manual::ABORT, Some("1".into()));
    let d = reconcile_at(&mut cluster, at(2 * MIN));
    assert_eq!(d.status.phase, Phase::RolledBack);
    assert_eq!(d.status.canary_weight, 0);
    // Stable scales to full size; the route keeps half on the candidate meanwhile.
    assert_eq!(replicas(&d), (Some(10), Some(5)));
    assert_eq!(
        route_weights(&d),
        vec![("fraud-stable".into(), 50), ("fraud-candidate".into(), 50)]
    );
    assert!(d.remove.is_empty(), "{:?}", d.remove);
    let routed = d.status.routed_traffic.clone().unwrap();
    assert!(
        routed
            .message
            .unwrap()
            .contains("until stable has the ready replicas")
    );
    let d = reconcile_at(&mut cluster, at(3 * MIN));
    assert_eq!(route_weights(&d)[1].1, 50);
    // Stable ready: everything back on stable, then the candidate goes.
    scripted(&mut cluster, true, true);
    let d = reconcile_at(&mut cluster, at(4 * MIN));
    assert_eq!(
        route_weights(&d),
        vec![("fraud-stable".into(), 100), ("fraud-candidate".into(), 0)]
    );
    let d = reconcile_at(&mut cluster, at(5 * MIN));
    assert_eq!(route_weights(&d), vec![("fraud-stable".into(), 100)]);
    assert_eq!(replicas(&d), (Some(10), None));
    assert!(
        d.remove
            .contains(&Removal::Deployment("fraud-candidate".into()))
    );
    assert_eq!(d.status.routed_traffic.unwrap().candidate_weight, 0);
}
