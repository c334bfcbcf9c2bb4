//! Annotations and routes through the whole decision, played on the simulated cluster: a
//! handled request is not applied twice, a pause holds, a rollback and the shadow phase shape
//! the HTTPRoute.

use super::*;
use crate::core::decide::{EventCause, Removal};

#[test]
fn a_handled_request_is_not_applied_again() {
    let mut cluster = cluster(&spec(), at_step(0, 10, 0));
    cluster.annotate(manual::PROMOTE, Some("next@2027-01-15T08:01:00Z".into()));
    let first = reconcile_at(&mut cluster, at(MIN));
    assert_eq!(first.status.current_step, Some(1));
    assert_eq!(
        first
            .status
            .handled_requests
            .get(manual::PROMOTE)
            .map(String::as_str),
        Some("next@2027-01-15T08:01:00Z")
    );
    assert_eq!(
        route_weights(&first),
        vec![("fraud-stable".into(), 50), ("fraud-candidate".into(), 50)]
    );
    // The annotation is still there on the next reconcile: not a new request.
    let second = reconcile_at(&mut cluster, at(2 * MIN));
    assert_eq!(second.status.current_step, Some(1));
    assert!(
        !second
            .events
            .iter()
            .any(|e| e.reason == EventCause::Lifecycle(EventReason::ManualPromotion)),
        "{:?}",
        second.events
    );
    // A new value is a new request.
    cluster.annotate(manual::PROMOTE, Some("next@2027-01-15T08:03:00Z".into()));
    let third = reconcile_at(&mut cluster, at(3 * MIN));
    assert_eq!(third.status.current_step, Some(2));
}

#[test]
fn pause_annotation_pauses_and_its_removal_resumes_through_the_decision() {
    let mut cluster = cluster(&spec(), at_step(0, 10, 0));
    cluster.annotate(manual::PAUSE, Some("true".into()));
    let d = reconcile_at(&mut cluster, at(MIN));
    assert!(d.status.paused);
    assert_eq!(
        route_weights(&d),
        vec![("fraud-stable".into(), 90), ("fraud-candidate".into(), 10)]
    );
    let d = reconcile_at(&mut cluster, at(HOUR));
    assert!(d.status.paused, "still annotated");
    assert_eq!(d.status.phase, Phase::Progressing);
    cluster.annotate(manual::PAUSE, None);
    let d = reconcile_at(&mut cluster, at(HOUR + MIN));
    assert!(!d.status.paused);
    assert!(
        d.events
            .iter()
            .any(|e| e.reason == EventCause::Lifecycle(EventReason::Resumed))
    );
}

#[test]
fn rollback_sends_all_traffic_to_stable_in_the_route() {
    let mut cluster = cluster(&spec(), at_step(1, 50, 0));
    let before = reconcile_at(&mut cluster, at(MIN));
    assert_eq!(
        route_weights(&before),
        vec![("fraud-stable".into(), 50), ("fraud-candidate".into(), 50)]
    );
    cluster.annotate(manual::ABORT, Some("t1".into()));
    let d = reconcile_at(&mut cluster, at(2 * MIN));
    assert_eq!(d.status.phase, Phase::RolledBack);
    assert_eq!(route_weights(&d), vec![("fraud-stable".into(), 100)]);
    assert!(
        d.remove
            .contains(&Removal::Deployment("fraud-candidate".into()))
    );
    assert!(
        d.events
            .iter()
            .any(|e| e.reason == EventCause::Lifecycle(EventReason::RolledBack) && e.warning)
    );
    // The shell removed the candidate and wrote the rollback to the registry.
    assert!(!cluster.objects().any(|c| matches!(
        c,
        Child::Deployment(d) if d.metadata.name.as_deref() == Some("fraud-candidate")
    )));
    assert!(cluster.status().pending_registry_writes.is_empty());
}

#[test]
fn shadow_route_mirrors_to_the_candidate_with_no_live_weight() {
    let d = reconcile_at(&mut cluster(&spec(), in_shadow(0)), at(MIN));
    assert_eq!(
        route_weights(&d),
        vec![("fraud-stable".into(), 100), ("fraud-candidate".into(), 0)]
    );
    let value = serde_json::to_value(
        d.apply
            .as_ref()
            .unwrap()
            .iter()
            .find_map(|c| match c {
                Child::HttpRoute(r) => Some(r),
                _ => None,
            })
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        value["spec"]["rules"][0]["filters"][0]["requestMirror"]["percent"],
        100
    );
}
