//! The traffic invariants of every decision: the route agrees with the status and sums to 100,
//! a rollback leaves everything on stable, and within a rollout the weight only moves up one
//! step at a time.

use super::*;
use crate::core::children::experiment_route::RULE_NAME as EXPERIMENT_RULE;

/// (stable weight, candidate weight or None, mirror percent or None) of the decided route.
fn route(
    decision: &Decision,
    provider: TrafficProvider,
) -> Option<(i32, Option<i32>, Option<i32>)> {
    let apply = decision.apply.as_ref()?;
    match provider {
        TrafficProvider::GatewayApi => apply.iter().find_map(|c| match c {
            Child::HttpRoute(r) => {
                let rule = &r.spec.rules.as_ref()?[0];
                let backends = rule.backend_refs.as_ref()?;
                let weight = |suffix: &str| {
                    backends
                        .iter()
                        .find(|b| b.name.ends_with(suffix))
                        .map(|b| b.weight.unwrap_or(1))
                };
                let mirror = rule
                    .filters
                    .as_ref()
                    .and_then(|f| f.first())
                    .and_then(|f| f.request_mirror.as_ref())
                    .and_then(|m| m.percent);
                Some((weight("-stable")?, weight("-candidate"), mirror))
            }
            _ => None,
        }),
        TrafficProvider::Istio => apply.iter().find_map(|c| match c {
            Child::VirtualService(vs) => {
                // The weighted route (an experiment's route, when there is one, comes first).
                let http = vs.data["spec"]["http"]
                    .as_array()?
                    .iter()
                    .find(|h| h["name"] == "mlrollout")?;
                let routes = http["route"].as_array()?;
                let weight = |suffix: &str| {
                    routes
                        .iter()
                        .find(|r| {
                            r["destination"]["host"]
                                .as_str()
                                .is_some_and(|h| h.starts_with(&format!("{NAME}{suffix}.")))
                        })
                        .and_then(|r| r["weight"].as_i64())
                        .map(|w| w as i32)
                };
                let mirror = http["mirrorPercentage"]["value"].as_f64().map(|v| v as i32);
                Some((weight("-stable")?, weight("-candidate"), mirror))
            }
            _ => None,
        }),
        TrafficProvider::None => None,
    }
}

/// Traffic invariants of one decision.
pub(super) fn check_traffic(spec: &ModelDeploymentSpec, decision: &Decision) -> Result<(), String> {
    let s = &decision.status;
    let Some(traffic) = decision.traffic.as_ref() else {
        return fail("a valid spec with a stable version decides the traffic".into());
    };
    ensure!(
        (traffic.canary_weight, traffic.mirror_percent) == (s.canary_weight, s.mirror_percent),
        "traffic {traffic:?} disagrees with the status ({}%, mirror {}%)",
        s.canary_weight,
        s.mirror_percent
    );
    ensure!(
        traffic.candidate_version.is_none() || traffic.candidate_version == s.candidate_version,
        "traffic to candidate {:?}, status candidate {:?}",
        traffic.candidate_version,
        s.candidate_version
    );
    let steps = &spec.rollout.steps;
    ensure!(
        s.canary_weight == 0 || steps.contains(&s.canary_weight),
        "canary weight {} is neither 0 nor a step of {steps:?}",
        s.canary_weight
    );
    ensure!(
        s.mirror_percent == 0
            || (s.phase == Phase::Shadow && s.mirror_percent == spec.shadow.mirror_percent),
        "mirror {}% in phase {:?}",
        s.mirror_percent,
        s.phase
    );
    let candidate_exists = traffic.has_candidate();
    ensure!(
        candidate_exists || s.canary_weight == 0,
        "canary weight {} without a candidate in phase {:?}",
        s.canary_weight,
        s.phase
    );
    let Some(apply) = decision.apply.as_ref() else {
        return fail("a valid spec with a stable version applies children".into());
    };
    if spec.traffic.provider == TrafficProvider::None {
        ensure!(
            !apply
                .iter()
                .any(|c| matches!(c, Child::HttpRoute(_) | Child::VirtualService(_))),
            "no route without a router"
        );
        return Ok(());
    }
    let Some((stable, candidate, mirror)) = route(decision, spec.traffic.provider) else {
        return fail("no route decided".into());
    };
    ensure!(
        stable + candidate.unwrap_or(0) == 100,
        "route weights {stable} + {candidate:?} do not sum to 100"
    );
    ensure!(
        candidate.is_some() == candidate_exists,
        "candidate backend {candidate:?} but candidate exists = {candidate_exists}"
    );
    if let Some(w) = candidate {
        ensure!(
            w == s.canary_weight,
            "route candidate weight {w} != status.canaryWeight {}",
            s.canary_weight
        );
    }
    let expected_mirror = (candidate_exists && s.mirror_percent > 0).then_some(s.mirror_percent);
    ensure!(
        mirror == expected_mirror,
        "route mirror {mirror:?}, expected {expected_mirror:?}"
    );
    // The experiment's matching route exists exactly while an experiment runs.
    let experiment_route = apply.iter().any(|c| match c {
        Child::HttpRoute(r) => r
            .spec
            .rules
            .iter()
            .flatten()
            .any(|rule| rule.name.as_deref() == Some(EXPERIMENT_RULE)),
        Child::VirtualService(vs) => vs.data["spec"]["http"]
            .as_array()
            .is_some_and(|h| h.iter().any(|r| r["name"] == EXPERIMENT_RULE)),
        _ => false,
    });
    let experimenting =
        s.phase == Phase::Experimenting && spec.rollout.experiment.is_some() && candidate_exists;
    ensure!(
        experiment_route == experimenting,
        "experiment route {experiment_route} in phase {:?} (candidate {candidate_exists})",
        s.phase
    );
    if experimenting {
        ensure!(
            s.canary_weight == 0 && s.mirror_percent == 0,
            "an experiment with {}% weight and {}% mirror",
            s.canary_weight,
            s.mirror_percent
        );
    }
    Ok(())
}

impl Story<'_> {
    /// Every rollback ends with everything on stable.
    pub(super) fn check_rollback(&self, decision: &Decision) -> Result<(), String> {
        if !decision
            .events
            .iter()
            .any(|e| e.reason == EventCause::Lifecycle(EventReason::RolledBack))
        {
            return Ok(());
        }
        let s = &decision.status;
        ensure!(
            s.canary_weight == 0,
            "rolled back at weight {}",
            s.canary_weight
        );
        ensure!(
            s.mirror_percent == 0,
            "rolled back with mirror {}",
            s.mirror_percent
        );
        ensure!(
            s.candidate_version.is_none(),
            "rolled back keeping candidate {:?}",
            s.candidate_version
        );
        ensure!(
            s.current_step.is_none(),
            "rolled back at step {:?}",
            s.current_step
        );
        ensure!(
            s.history
                .last()
                .is_some_and(|h| matches!(h.outcome.as_str(), "RolledBack" | "Aborted")),
            "no rollback record"
        );
        match self.spec().traffic.provider {
            TrafficProvider::None => {
                let replicas = decision.apply.as_ref().and_then(|a| {
                    a.iter().find_map(|c| match c {
                        Child::Deployment(d)
                            if d.metadata.name.as_deref() == Some("fraud-stable") =>
                        {
                            d.spec.as_ref().and_then(|s| s.replicas)
                        }
                        _ => None,
                    })
                });
                ensure!(
                    replicas == Some(self.spec().serving.replicas),
                    "stable replicas {replicas:?} after rollback"
                );
            }
            provider => {
                let r = route(decision, provider);
                ensure!(r == Some((100, None, None)), "route after rollback: {r:?}");
            }
        }
        Ok(())
    }

    /// Within a rollout (the same candidate before and after) the weight only moves up, one
    /// configured step at a time.
    pub(super) fn check_weight_moves(&self, traffic: &DesiredTraffic) -> Result<(), String> {
        if !self.checks.gates
            || !self.harness.traffic().has_candidate()
            || self.harness.traffic().candidate_version != traffic.candidate_version
        {
            return Ok(());
        }
        let steps = &self.spec().rollout.steps;
        let (from, to) = (self.harness.traffic().canary_weight, traffic.canary_weight);
        if from == to {
            return Ok(());
        }
        let next = if from == 0 {
            steps.first().copied()
        } else {
            steps
                .iter()
                .position(|w| *w == from)
                .and_then(|i| steps.get(i + 1))
                .copied()
        };
        ensure!(
            Some(to) == next,
            "weight moved {from} -> {to}, next step is {next:?} of {steps:?}"
        );
        Ok(())
    }
}
