//! `status -w`: a rollout followed live as a compact timeline, one line per change — phase,
//! versions and weights, then the last analysis of each metric against its threshold. Pure:
//! the watch loop in `control` prints what these functions return.

use k8s_openapi::jiff::Timestamp;

use crate::api::{
    AnalysisStatus, ConditionType, ModelDeployment, ModelDeploymentStatus, Phase, Reason,
};

/// Where a followed rollout stands: still moving, or settled (and how).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The operator is still working on it, or waits for a person.
    No,
    /// Serving a version with nothing left to do: stable, or a candidate promoted.
    Healthy,
    /// It ended without the candidate: rolled back, failed, or the spec is invalid.
    Unhealthy,
}

/// Whether `resource` has settled. A spec edit the operator has not seen yet is never settled:
/// the status still describes the previous generation.
pub fn settled(resource: &ModelDeployment) -> Settled {
    let Some(status) = &resource.status else {
        return Settled::No;
    };
    if status.observed_generation != resource.metadata.generation {
        return Settled::No;
    }
    if invalid_spec(status) {
        return Settled::Unhealthy;
    }
    match status.phase {
        Phase::Stable | Phase::Promoted if !status.paused && ready(status) => Settled::Healthy,
        Phase::RolledBack | Phase::Failed => Settled::Unhealthy,
        _ => Settled::No,
    }
}

fn condition(
    status: &ModelDeploymentStatus,
    kind: ConditionType,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.conditions.iter().find(|c| c.type_ == kind.as_str())
}

fn ready(status: &ModelDeploymentStatus) -> bool {
    condition(status, ConditionType::Ready).is_some_and(|c| c.status == "True")
}

fn invalid_spec(status: &ModelDeploymentStatus) -> bool {
    condition(status, ConditionType::Ready)
        .is_some_and(|c| c.status == "False" && c.reason == Reason::InvalidSpec.as_str())
}

/// The timeline line for `resource`, without its time stamp (a change is a different line).
pub fn line(resource: &ModelDeployment) -> String {
    let default = ModelDeploymentStatus::default();
    let status = resource.status.as_ref().unwrap_or(&default);
    let mut out = format!("{:<12}", phase_word(status));
    out.push_str(&format!(" {}", versions(status)));
    out.push_str(&format!(
        "  weight {}%{}",
        status.canary_weight,
        step(resource, status)
    ));
    if status.mirror_percent > 0 {
        out.push_str(&format!(" mirror {}%", status.mirror_percent));
    }
    if let Some(analysis) = &status.analysis {
        out.push_str(&analysis_part(analysis));
    }
    if let Some(reason) = condition(status, ConditionType::Ready)
        .filter(|c| c.status == "False")
        .map(|c| c.reason.as_str())
    {
        out.push_str(&format!("  (not ready: {reason})"));
    }
    out
}

/// `HH:MM:SS  <line>` in UTC: the time the change was seen.
pub fn stamped(at: Timestamp, line: &str) -> String {
    let time = at.strftime("%H:%M:%S");
    format!("{time}  {line}")
}

fn phase_word(status: &ModelDeploymentStatus) -> String {
    if status.paused {
        format!("{}(paused)", status.phase.as_str())
    } else {
        status.phase.as_str().to_string()
    }
}

fn versions(status: &ModelDeploymentStatus) -> String {
    let stable = status.stable_version.as_deref().unwrap_or("-");
    match status.candidate_version.as_deref() {
        Some(candidate) => format!("v{stable} -> v{candidate}"),
        None => format!("v{stable}"),
    }
}

fn step(resource: &ModelDeployment, status: &ModelDeploymentStatus) -> String {
    match status.current_step {
        Some(i) => format!(
            " (step {}/{})",
            i + 1,
            resource.spec.rollout.resolved_steps().len()
        ),
        None => String::new(),
    }
}

/// `  | error-rate 0.0120 <= 0.05 Passed, latency - Inconclusive` — each metric's newest
/// measurement.
fn analysis_part(analysis: &AnalysisStatus) -> String {
    let metrics: Vec<String> = analysis
        .metrics
        .iter()
        .filter_map(|m| {
            let last = m.recent.last()?;
            let value = last
                .candidate
                .map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
            Some(format!(
                "{} {value} {} {}",
                m.name,
                last.threshold,
                last.verdict.as_str()
            ))
        })
        .collect();
    if metrics.is_empty() {
        String::new()
    } else {
        format!("  | {}", metrics.join(", "))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn resource(generation: i64, status: serde_json::Value) -> ModelDeployment {
        let mut resource: ModelDeployment =
            serde_yaml::from_str(include_str!("../../../examples/fraud-detector.yaml")).unwrap();
        resource.metadata.generation = Some(generation);
        resource.status = Some(serde_json::from_value(status).unwrap());
        resource
    }

    fn ready(status: &str, reason: &str) -> serde_json::Value {
        serde_json::json!([{"type": "Ready", "status": status, "reason": reason, "message": "",
            "lastTransitionTime": "2026-12-01T10:00:00Z"}])
    }

    #[test]
    fn a_canary_step_reads_as_one_line_with_its_analysis() {
        let r = resource(
            2,
            serde_json::json!({
                "phase": "Progressing", "observedGeneration": 2, "stableVersion": "3",
                "candidateVersion": "4", "canaryWeight": 50, "currentStep": 1,
                "conditions": ready("True", "Available"),
                "analysis": {"measurements": 2, "metrics": [
                    {"name": "error-rate", "recent": [{"verdict": "Passed", "candidate": 0.012,
                        "stable": 0.01, "threshold": "<= 1.5 x stable"}]},
                    {"name": "latency", "recent": [{"verdict": "Inconclusive",
                        "threshold": "<= 0.3"}]}]}
            }),
        );
        let steps = r.spec.rollout.steps.len();
        assert_eq!(
            line(&r),
            format!(
                "Progressing  v3 -> v4  weight 50% (step 2/{steps})  | error-rate 0.0120 <= 1.5 x stable Passed, latency - <= 0.3 Inconclusive"
            )
        );
        assert_eq!(settled(&r), Settled::No);
    }

    #[test]
    fn settles_only_on_the_observed_generation() {
        let stable = serde_json::json!({"phase": "Stable", "observedGeneration": 2,
            "stableVersion": "3", "conditions": ready("True", "Available")});
        assert_eq!(settled(&resource(2, stable.clone())), Settled::Healthy);
        assert_eq!(
            settled(&resource(3, stable)),
            Settled::No,
            "spec edit unseen"
        );
        let rolled = serde_json::json!({"phase": "RolledBack", "observedGeneration": 1});
        assert_eq!(settled(&resource(1, rolled)), Settled::Unhealthy);
        let invalid = serde_json::json!({"phase": "Pending", "observedGeneration": 1,
            "conditions": ready("False", "InvalidSpec")});
        let r = resource(1, invalid);
        assert_eq!(settled(&r), Settled::Unhealthy);
        assert!(
            line(&r).ends_with("(not ready: InvalidSpec)"),
            "{}",
            line(&r)
        );
        let paused = serde_json::json!({"phase": "Stable", "observedGeneration": 1,
            "paused": true, "conditions": ready("True", "Available")});
        let r = resource(1, paused);
        assert_eq!(
            settled(&r),
            Settled::No,
            "a paused resource waits for a person"
        );
        assert!(line(&r).starts_with("Stable(paused)"), "{}", line(&r));
    }

    #[test]
    fn stamps_in_utc() {
        let at: Timestamp = "2026-12-01T09:05:03Z".parse().unwrap();
        assert_eq!(stamped(at, "Stable"), "09:05:03  Stable");
    }
}
