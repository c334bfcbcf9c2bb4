//! `spec.rollout.dynamicStableScale`: the replicas of each variant follow its share of the
//! traffic, and the route only gives a variant more traffic once it has the ready replicas for
//! it.
//!
//! The lifecycle's [`DesiredTraffic`] is the *target*; the route carries what this module
//! decides (recorded in `status.routedTraffic`), which trails the target while the variant
//! that gains traffic scales up:
//!
//! - forward (the candidate's weight goes up a step): the candidate scales to its new share
//!   first; the route moves once the candidate has those replicas ready; stable shrinks one
//!   decision after the route moved away from it.
//! - backward (rollback, or the end of a promotion): stable scales to its full replicas first;
//!   the route hands traffic back to stable as its ready replicas can carry it (never more),
//!   and the old candidate keeps its pods until the route no longer sends it anything.
//!
//! Each variant keeps the replicas for the largest share it had, has or will have across the
//! previous route, the new route and the target. Pure; property-tested.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::status::RoutedTraffic;
use crate::api::validation::ValidatedSpec;
use crate::api::{EventReason, ModelDeploymentSpec, ModelDeploymentStatus, Phase, TrafficProvider};
use crate::core::lifecycle::DesiredTraffic;

use super::{DecideInput, DeploymentState, EventCause, EventIntent, SHORT_RETRY};

/// What a decision under `dynamicStableScale` applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// What the route carries (and the children express).
    pub traffic: DesiredTraffic,
    pub stable_replicas: i32,
    pub candidate_replicas: i32,
    /// The record for `status.routedTraffic`.
    pub routed: RoutedTraffic,
    /// The route trails the target, or just moved: look again soon.
    pub moving: bool,
    /// The wait passed the progress deadline in this decision (a Warning Event, once).
    pub deadline_exceeded: Option<String>,
}

/// Inputs of [`plan`].
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// `spec.serving.replicas`: the replicas of a variant that has all the traffic.
    pub replicas: i32,
    pub phase: Phase,
    /// What the lifecycle wants.
    pub target: &'a DesiredTraffic,
    /// `status.stableVersion`.
    pub stable_version: Option<&'a str>,
    /// What the route carried after the last decision (`None`: nothing recorded yet).
    pub previous: Option<&'a RoutedTraffic>,
    pub stable: Option<&'a DeploymentState>,
    pub candidate: Option<&'a DeploymentState>,
    pub now: Timestamp,
    pub progress_deadline: Duration,
}

/// Replicas a variant needs for `weight` percent of the traffic: ceil(replicas × weight / 100).
pub fn needed(replicas: i32, weight: i32) -> i32 {
    let (replicas, weight) = (i64::from(replicas.max(0)), i64::from(weight.clamp(0, 100)));
    i32::try_from((replicas * weight + 99) / 100).unwrap_or(i32::MAX)
}

/// Ready replicas of a Deployment that is up to date and runs `version` (0 otherwise).
fn ready(state: Option<&DeploymentState>, version: Option<&str>) -> i32 {
    state
        .filter(|d| version.is_some() && d.serves(version, 0))
        .map_or(0, |d| d.ready_replicas.max(0))
}

/// The route's next split and the replicas of both variants.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let target = input.target;
    let t = if target.has_candidate() {
        target.canary_weight.clamp(0, 100)
    } else {
        0
    };
    let previous = input.previous.cloned().unwrap_or(RoutedTraffic {
        candidate_version: target.candidate_version.clone(),
        candidate_weight: t,
        ..RoutedTraffic::default()
    });
    let p = if previous.candidate_version.is_some() {
        previous.candidate_weight.clamp(0, 100)
    } else {
        0
    };
    if previous.candidate_version != target.candidate_version && p > 0 {
        return drain(input, &previous, p);
    }
    // The route carries the target's candidate (or none) from here on.
    let previous = if previous.candidate_version == target.candidate_version {
        previous
    } else {
        RoutedTraffic {
            candidate_version: target.candidate_version.clone(),
            ..RoutedTraffic::default()
        }
    };
    let replicas = input.replicas.max(0);
    let stable_ready = ready(input.stable, input.stable_version);
    let candidate_ready = ready(input.candidate, target.candidate_version.as_deref());
    let r = if t > p {
        // Forward: all at once, when the candidate can carry its new share.
        if candidate_ready >= needed(replicas, t) {
            t
        } else {
            p
        }
    } else {
        backward(replicas, stable_ready, t, p)
    };
    let (stable_replicas, candidate_replicas) = match input.phase {
        Phase::Shadow | Phase::Progressing => {
            let low = t.min(r).min(p);
            let high = t.max(r).max(p).max(target.mirror_percent.clamp(0, 100));
            (
                needed(replicas, 100 - low).max(1),
                needed(replicas, high).max(1),
            )
        }
        // The promoted version starts on stable at full size while the candidate's pods
        // carry the traffic; an experiment sends the candidate a share nobody can know in
        // advance (whoever matches), so both run at full size.
        Phase::Promoted | Phase::Experimenting => (replicas, replicas),
        _ => (replicas, needed(replicas, r.max(p)).max(1)),
    };
    let waiting = r != t;
    let (waiting_since, message, deadline_exceeded) = if waiting {
        wait_record(input, &previous, r, t, stable_ready, candidate_ready)
    } else {
        (None, None, None)
    };
    Plan {
        traffic: DesiredTraffic {
            candidate_version: target.candidate_version.clone(),
            canary_weight: r,
            mirror_percent: target.mirror_percent,
            stable_version: target.stable_version.clone(),
            experiment: target.experiment,
        },
        stable_replicas,
        candidate_replicas,
        routed: RoutedTraffic {
            candidate_version: target.candidate_version.clone(),
            candidate_weight: r,
            waiting_since,
            message,
        },
        moving: waiting || r != p,
        deadline_exceeded,
    }
}

/// The route still sends `p` % to a candidate the lifecycle no longer wants (a rollback, the
/// end of a promotion, or a new candidate while an old one drains): stable scales to full
/// size and takes the traffic back as its ready replicas allow; the old candidate keeps its
/// pods until the route sends it nothing.
fn drain(input: &PlanInput<'_>, previous: &RoutedTraffic, p: i32) -> Plan {
    let replicas = input.replicas.max(0);
    let stable_ready = ready(input.stable, input.stable_version);
    let r = backward(replicas, stable_ready, 0, p);
    let (waiting_since, message, deadline_exceeded) =
        wait_record(input, previous, r, 0, stable_ready, 0);
    Plan {
        traffic: DesiredTraffic {
            candidate_version: previous.candidate_version.clone(),
            canary_weight: r,
            mirror_percent: 0,
            stable_version: input.target.stable_version.clone(),
            experiment: false,
        },
        stable_replicas: replicas,
        candidate_replicas: needed(replicas, p).max(1),
        routed: RoutedTraffic {
            candidate_version: previous.candidate_version.clone(),
            candidate_weight: r,
            waiting_since,
            message,
        },
        moving: true,
        deadline_exceeded,
    }
}

/// Backward: the candidate's weight goes down towards `goal` as far as stable's ready replicas
/// carry stable's share, never below `goal` and never up from `p`.
fn backward(replicas: i32, stable_ready: i32, goal: i32, p: i32) -> i32 {
    let carried = if replicas == 0 {
        100
    } else {
        i32::try_from(i64::from(stable_ready) * 100 / i64::from(replicas))
            .unwrap_or(100)
            .min(100)
    };
    (100 - carried).clamp(goal.min(p), p)
}

/// Since when the route waits, what for, and whether the wait just passed the deadline.
fn wait_record(
    input: &PlanInput<'_>,
    previous: &RoutedTraffic,
    r: i32,
    t: i32,
    stable_ready: i32,
    candidate_ready: i32,
) -> (Option<Time>, Option<String>, Option<String>) {
    let since = previous.waiting_since.clone().unwrap_or(Time(input.now));
    let what = if t > r {
        format!(
            "the route keeps {r}% on the candidate until it has {} ready replicas for {t}% ({candidate_ready} ready)",
            needed(input.replicas, t)
        )
    } else {
        format!(
            "the route keeps {r}% on the candidate until stable has the ready replicas to take it back ({stable_ready} of {} ready)",
            input.replicas
        )
    };
    let waited = Duration::try_from(input.now.duration_since(since.0)).unwrap_or_default();
    let late = waited > input.progress_deadline;
    let was_late = previous
        .message
        .as_deref()
        .is_some_and(|m| m.starts_with(LATE));
    let message = if late { format!("{LATE}{what}") } else { what };
    let exceeded = (late && !was_late).then(|| message.clone());
    (Some(since), Some(message), exceeded)
}

/// How the message of a wait past the progress deadline starts.
const LATE: &str = "progress deadline exceeded: ";

/// Whether `dynamicStableScale` applies: asked for, and a router to shift traffic with.
pub(super) fn enabled(spec: &ModelDeploymentSpec) -> bool {
    spec.rollout.dynamic_stable_scale && spec.traffic.provider != TrafficProvider::None
}

/// The route still trails the lifecycle's weight (a variant is scaling): the candidate does
/// not count as ready for the lifecycle, so no step is measured or passed on traffic the
/// route does not carry yet.
pub(super) fn route_trails(spec: &ModelDeploymentSpec, status: &ModelDeploymentStatus) -> bool {
    enabled(spec)
        && status.routed_traffic.as_ref().is_some_and(|routed| {
            routed.candidate_version != status.candidate_version
                || routed.candidate_weight != status.canary_weight
        })
}

/// One decision's capacity step: replaces the lifecycle's `traffic` with what the route
/// carries, records it in the status, and returns the (stable, candidate) replicas. `None`
/// (and no record) without `dynamicStableScale`.
pub(super) fn route(
    input: &DecideInput<'_>,
    validated: &ValidatedSpec,
    status: &mut ModelDeploymentStatus,
    traffic: &mut DesiredTraffic,
    events: &mut Vec<EventIntent>,
    requeue_after: &mut Duration,
) -> Option<(i32, i32)> {
    let spec = validated.spec();
    if !enabled(spec) {
        status.routed_traffic = None;
        return None;
    }
    let plan = plan(&PlanInput {
        replicas: spec.serving.replicas,
        phase: status.phase,
        target: traffic,
        // The version the stable Deployment runs (in a warm window, the previous one).
        stable_version: traffic.stable_version.as_deref(),
        previous: input.status.routed_traffic.as_ref(),
        stable: input.observed.stable_deployment.as_ref(),
        candidate: input.observed.candidate_deployment.as_ref(),
        now: input.now,
        progress_deadline: validated.timing.rollout.progress_deadline,
    });
    if let Some(message) = plan.deadline_exceeded {
        events.push(EventIntent {
            warning: true,
            reason: EventCause::Lifecycle(EventReason::ProgressDeadlineExceeded),
            note: message,
        });
    }
    if plan.moving {
        *requeue_after = (*requeue_after).min(SHORT_RETRY);
    }
    *traffic = plan.traffic;
    status.routed_traffic = Some(plan.routed);
    Some((plan.stable_replicas, plan.candidate_replicas))
}

#[cfg(test)]
#[path = "capacity_tests.rs"]
mod tests;
