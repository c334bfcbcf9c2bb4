//! The children step of [`decide`](super::decide): the Deployments, Services, route and Job
//! that express the lifecycle's desired traffic, and the children that must go.

use crate::api::validation::ValidatedSpec;
use crate::api::{ModelDeploymentSpec, ModelDeploymentStatus, TrafficProvider};
use crate::core::children::job::Lineage;
use crate::core::children::route::Split;
use crate::core::children::{self, VariantInput};
use crate::core::lifecycle::{self, DesiredTraffic};
use crate::core::names::Variant;

use super::{Child, DecideInput, Removal};

/// The children that express the lifecycle's state, and those that must go.
pub(super) fn children_for(
    input: &DecideInput<'_>,
    validated: &ValidatedSpec,
    status: &ModelDeploymentStatus,
    job: Option<&lifecycle::JobRequest>,
    traffic: &DesiredTraffic,
    scaled: Option<(i32, i32)>,
) -> (Vec<Child>, Vec<Removal>) {
    let (mut apply, mut remove) = variant_children(input, validated, traffic, scaled);
    apply.extend(
        children::inference_pool::build(input.name, input.namespace, validated, &input.owner)
            .into_iter()
            .map(|pool| Child::InferencePool(Box::new(pool))),
    );
    apply.extend(route_child(input, validated.spec(), traffic));
    apply.extend(job_child(input, validated, status, job));
    // Stop the Job of an attempt that was aborted or timed out.
    if let Some(last) = status.retraining_attempts.last()
        && matches!(last.outcome.as_str(), "Aborted" | "TimedOut")
    {
        remove.push(Removal::Job(last.job_name.clone()));
    }
    (apply, remove)
}

/// Deployment and Service of stable and of the candidate (or the candidate's removal).
fn variant_children(
    input: &DecideInput<'_>,
    validated: &ValidatedSpec,
    traffic: &DesiredTraffic,
    scaled: Option<(i32, i32)>,
) -> (Vec<Child>, Vec<Removal>) {
    // `dynamicStableScale` sizes both variants (`capacity`); otherwise the provider decides.
    let (stable_replicas, candidate_replicas) =
        scaled.unwrap_or_else(|| replicas(validated.spec(), traffic));
    let variant = |variant, version: &str, replicas| {
        let input = VariantInput {
            resource_name: input.name,
            namespace: input.namespace,
            owner: input.owner.clone(),
            spec: validated.spec(),
            validated,
            variant,
            model_version: version,
            replicas,
        };
        [
            Child::Deployment(Box::new(children::deployment::build(&input))),
            Child::Service(Box::new(children::service::build(&input))),
        ]
    };
    let mut apply = Vec::new();
    let mut remove = Vec::new();
    if let Some(stable) = traffic.stable_version.as_deref() {
        apply.extend(variant(Variant::Stable, stable, stable_replicas));
    }
    match traffic.candidate_version.as_deref() {
        Some(version) => apply.extend(variant(Variant::Candidate, version, candidate_replicas)),
        // Only what was observed is deleted (a DELETE per reconcile for an absent candidate
        // is needless write traffic); the Service goes first so that a failed delete leaves
        // the Deployment observed and the removal is retried.
        None if input.observed.candidate_deployment.is_some() => {
            let name = crate::core::names::variant_name(input.name, Variant::Candidate);
            remove.push(Removal::Service(name.clone()));
            remove.push(Removal::Deployment(name));
        }
        None => {}
    }
    (apply, remove)
}

/// (stable, candidate) replicas. Without a router, replica counts approximate the weights.
fn replicas(spec: &ModelDeploymentSpec, traffic: &DesiredTraffic) -> (i32, i32) {
    let total = spec.serving.replicas;
    if spec.traffic.provider != TrafficProvider::None || !traffic.has_candidate() {
        return (total, total);
    }
    let weight = traffic.canary_weight.clamp(0, 100);
    let candidate = ((i64::from(total) * i64::from(weight) + 99) / 100) as i32;
    let candidate = candidate.clamp(if total > 0 { 1 } else { 0 }, total.max(0));
    let stable = if weight >= 100 {
        0
    } else {
        (total - candidate).max(1)
    };
    (stable, candidate)
}

/// The HTTPRoute or VirtualService, if there is a router.
fn route_child(
    input: &DecideInput<'_>,
    spec: &ModelDeploymentSpec,
    traffic: &DesiredTraffic,
) -> Option<Child> {
    let split = Split {
        candidate_weight: traffic.canary_weight,
        mirror_percent: traffic.mirror_percent,
        candidate_exists: traffic.has_candidate(),
        experiment: traffic
            .candidate_version
            .clone()
            .filter(|_| traffic.experiment),
    };
    let (name, namespace, owner) = (input.name, input.namespace, &input.owner);
    match spec.traffic.provider {
        TrafficProvider::GatewayApi => Some(Child::HttpRoute(Box::new(
            children::route::http_route(name, namespace, spec, owner, split),
        ))),
        TrafficProvider::Istio => Some(Child::VirtualService(Box::new(
            children::route::virtual_service(name, namespace, spec, owner, split),
        ))),
        TrafficProvider::None => None,
    }
}

/// The running attempt's Job, unless it was already observed (a Job is created once).
fn job_child(
    input: &DecideInput<'_>,
    validated: &ValidatedSpec,
    status: &ModelDeploymentStatus,
    job: Option<&lifecycle::JobRequest>,
) -> Option<Child> {
    let job_observed = matches!(
        input.observed.lifecycle.job,
        Some(ref state) if *state != lifecycle::JobState::Missing
    );
    let (request, template) = job.zip(validated.job_template.as_ref())?;
    if job_observed {
        return None;
    }
    let lineage = Lineage {
        resource: input.name,
        namespace: input.namespace,
        drift_summary: lifecycle::drift_summary(status),
        stable_version: status.stable_version.as_deref(),
    };
    Some(Child::Job(Box::new(children::job::build(
        request,
        template,
        validated,
        &lineage,
        &input.owner,
    ))))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use proptest::prelude::*;

    use super::*;

    fn spec(provider: &str, replicas: i32) -> ModelDeploymentSpec {
        serde_json::from_value(serde_json::json!({
            "model": {"trackingUri": "http://m:5000", "name": "fraud"},
            "serving": {"replicas": replicas},
            "traffic": {"provider": provider, "parentRefs": [{"name": "gw"}]}
        }))
        .unwrap()
    }

    fn canary(weight: i32) -> DesiredTraffic {
        DesiredTraffic {
            candidate_version: Some("2".into()),
            canary_weight: weight,
            mirror_percent: 0,
            stable_version: Some("1".into()),
            experiment: false,
        }
    }

    #[test]
    fn without_a_router_replicas_approximate_the_weights() {
        let none = spec("none", 10);
        assert_eq!(replicas(&none, &canary(10)), (9, 1));
        assert_eq!(
            replicas(&none, &canary(25)),
            (7, 3),
            "the candidate rounds up"
        );
        assert_eq!(replicas(&none, &canary(50)), (5, 5));
        assert_eq!(replicas(&none, &canary(100)), (0, 10));
        assert_eq!(replicas(&none, &DesiredTraffic::default()), (10, 10));
        // One replica: both variants keep one while both have weight.
        assert_eq!(replicas(&spec("none", 1), &canary(10)), (1, 1));
        // A router splits by weight: both run at full size.
        assert_eq!(replicas(&spec("gatewayAPI", 10), &canary(10)), (10, 10));
    }

    proptest! {
        /// Replicas sum to the total (one more when rounding leaves a variant with weight at
        /// zero), the candidate's count is its share rounded up, and no variant with weight
        /// runs zero replicas.
        #[test]
        fn proportional_replicas_cover_every_weighted_variant(total in 1..40i32, weight in 0..=100i32) {
            let (stable, candidate) = replicas(&spec("none", total), &canary(weight));
            let share = f64::from(total) * f64::from(weight) / 100.0;
            prop_assert!(candidate >= 1 && candidate <= total);
            prop_assert!(f64::from(candidate) >= share && f64::from(candidate) < share.max(1.0) + 1.0);
            if weight < 100 {
                prop_assert!(stable >= 1, "stable has {}% and no replica", 100 - weight);
                prop_assert_eq!(stable, (total - candidate).max(1));
            } else {
                prop_assert_eq!(stable, 0);
            }
            let sum = stable + candidate;
            prop_assert!(sum == total || (sum == total + 1 && candidate == total), "{stable}+{candidate} of {total}");
        }
    }
}
