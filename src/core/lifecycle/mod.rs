//! The lifecycle decision core: drift → retrain Job → evaluate → shadow → steps → promote or
//! roll back. A pure state machine: spec + status + observations + `now` in, new status,
//! events, the Job that should exist and when to look again out. No I/O, no clock.
//!
//! Invariants (property-tested in `proptests/`): the canary weight is 0 or one of the
//! configured steps and the two variants' weights sum to 100; within a rollout it only moves
//! up through the steps and never past an unfinished analysis; promotion needs a passed
//! evaluation (for retrained candidates), a passed shadow and every step's analysis; a
//! rollback ends with 0 % on the candidate; the same inputs give the same outputs.

pub mod analysis_state;
pub mod manual;
mod phases;
pub mod schedule;
pub mod triggers;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::api::validation::ValidatedSpec;
use crate::api::{
    AttemptOutcome, DriftSummary, EventReason, ModelDeploymentStatus, Phase, Reason, Severity,
    Urgency,
};
use crate::core::verdict::{AnalysisStage, MetricMeasurement};

pub use manual::{ManualInput, Request};
pub use triggers::Trigger;

/// Result of a drift check run in this reconcile.
#[derive(Debug, Clone, PartialEq)]
pub enum DriftObservation {
    Completed {
        summary: DriftSummary,
        /// Rows in the current data (for the `newSamples` trigger).
        sample_count: Option<i64>,
    },
    Failed {
        reason: Reason,
        message: String,
    },
}

/// The current attempt's Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Not created yet (the shell creates it).
    Missing,
    Running,
    Succeeded,
    Failed(String),
}

/// The version a succeeded Job registered, found by its lineage tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CandidateLookup {
    Found(String),
    NotFound,
    Error(String),
}

/// The evaluation metric of the candidate and of the champion.
#[derive(Debug, Clone, PartialEq)]
pub enum EvaluationObservation {
    Metrics {
        candidate: Option<f64>,
        champion: Option<f64>,
    },
    Error(String),
}

/// Everything observed for one reconcile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observations {
    /// Version behind the alias or pin; `None` when the registry could not be read.
    pub served_version: Option<String>,
    /// The stable Deployment is ready and runs `status.stableVersion`.
    pub stable_ready: bool,
    /// The candidate Deployment is ready and runs `status.candidateVersion`.
    pub candidate_ready: bool,
    pub drift: Option<DriftObservation>,
    pub job: Option<JobState>,
    pub candidate_lookup: Option<CandidateLookup>,
    pub evaluation: Option<EvaluationObservation>,
    /// One round of measurements taken in this reconcile.
    pub measurements: Option<Vec<MetricMeasurement>>,
    pub manual: ManualInput,
    /// The advisor recommends retraining now.
    pub advisor_recommends: bool,
    /// A fresh advisor answer (or why there is none) for the drift report of this reconcile.
    pub advisor: Option<AdvisorObservation>,
}

/// The advisor's answer to one drift report.
#[derive(Debug, Clone, PartialEq)]
pub struct AdvisorObservation {
    /// Digest of the report (answers are cached per digest).
    pub digest: String,
    pub answer: Result<AdvisorAdvice, AdvisorFailure>,
}

/// A valid advisor answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvisorAdvice {
    pub needs_retrain: bool,
    pub urgency: Urgency,
    pub reason: String,
}

impl AdvisorAdvice {
    /// Whether the answer asks for retraining now (an `immediate` recommendation may skip the
    /// remaining schedule wait; the cooldown and the budget still apply).
    pub fn retrain_now(&self) -> bool {
        self.needs_retrain && self.urgency == Urgency::Immediate
    }
}

/// Why an advisor answer was ignored (the rule-based decision stands).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvisorFailure {
    /// Reason of condition `AdvisorAvailable=False`.
    pub reason: Reason,
    pub message: String,
}

/// A retraining attempt as logged to MLflow (the `value` of a `logAttempt` registry write).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttemptRecord {
    /// Experiment the run goes to (named after the resource).
    pub experiment: String,
    pub attempt_id: String,
    pub number: i64,
    pub trigger: Trigger,
    pub job_name: String,
    pub outcome: AttemptOutcome,
    pub drift_summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_version: Option<String>,
    /// The advisor's last answer, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advisor: Option<String>,
}

/// A retraining Job that should exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    pub number: i64,
    pub attempt_id: String,
    pub trigger: Trigger,
    pub job_name: String,
}

/// An Event for a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub warning: bool,
    pub reason: EventReason,
    pub message: String,
}

/// Input of [`step`].
#[derive(Debug, Clone)]
pub struct StepInput<'a> {
    pub name: &'a str,
    /// The resource's uid: attempt ids are derived from it so they are unique across
    /// re-created resources of the same name.
    pub uid: &'a str,
    pub generation: Option<i64>,
    pub spec: &'a ValidatedSpec,
    pub status: &'a ModelDeploymentStatus,
    pub observed: &'a Observations,
    pub now: Timestamp,
}

/// Output of [`step`].
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutput {
    pub status: ModelDeploymentStatus,
    pub transitions: Vec<Transition>,
    /// The Job of the running attempt (created if missing, never duplicated).
    pub job: Option<JobRequest>,
    /// What the routers (or, without one, the replica counts) should do.
    pub traffic: DesiredTraffic,
    pub requeue_after: Duration,
}

/// The traffic the lifecycle wants: which candidate runs beside stable and what share of
/// requests it gets or sees mirrored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredTraffic {
    /// The candidate version that runs beside stable; `None` outside a rollout (any
    /// candidate Deployment goes).
    pub candidate_version: Option<String>,
    /// Percent of live requests served by the candidate (stable serves the rest).
    pub canary_weight: i32,
    /// Percent of live requests mirrored to the candidate (its answers discarded).
    pub mirror_percent: i32,
    /// The version the stable Deployment runs: the stable version, or in the window after a
    /// promotion the previous one, kept warm.
    pub stable_version: Option<String>,
    /// An experiment runs: requests matching `spec.rollout.experiment` go to the candidate.
    pub experiment: bool,
}

impl DesiredTraffic {
    /// Whether a candidate runs (and can be routed or mirrored to).
    pub fn has_candidate(&self) -> bool {
        self.candidate_version.is_some()
    }
}

/// What the shell should observe before the next [`step`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wants {
    pub drift_check: bool,
    /// Name of the Job to read.
    pub job: Option<String>,
    /// Attempt id to look up the registered candidate by (after the Job succeeded).
    pub candidate_lookup: Option<String>,
    /// Candidate and champion versions to read the evaluation metric of.
    pub evaluation: Option<(String, String)>,
    /// A measurement is due (taken only if the candidate is ready).
    pub measure: Option<AnalysisStage>,
}

/// Most attempts and rollouts kept in status.
/// (More than the largest daily budget the schema allows, so the budget always sees a full day.)
pub const MAX_ATTEMPTS_KEPT: usize = 50;
pub const MAX_HISTORY_KEPT: usize = 10;

/// Decides the next lifecycle state.
pub fn step(input: StepInput<'_>) -> StepOutput {
    phases::step(input)
}

/// What to observe for the next step, given the current status.
pub fn wants(spec: &ValidatedSpec, status: &ModelDeploymentStatus, now: Timestamp) -> Wants {
    phases::wants(spec, status, now)
}

/// Deterministic name of attempt `number`'s Job: `<name>-retrain-<n>`, at most 63 chars.
/// When the name must be shortened, its tail becomes a hash of the whole name, so two long
/// names that differ only at the end still get different Jobs.
pub fn job_name(resource: &str, number: i64) -> String {
    let suffix = format!("-retrain-{number}");
    if resource.len() + suffix.len() <= 63 {
        return format!("{resource}{suffix}");
    }
    let hash = format!("-{:07x}", fnv1a(resource.as_bytes()) & 0x0fff_ffff);
    let keep = 63usize.saturating_sub(suffix.len() + hash.len());
    let base: String = resource.chars().take(keep).collect();
    format!("{}{hash}{suffix}", base.trim_end_matches('-'))
}

/// FNV-1a (32 bit): a stable hash for names (not for security).
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

/// Lineage id of attempt `number` (tagged on the version the Job registers).
pub fn attempt_id(uid: &str, number: i64) -> String {
    let prefix: String = uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect();
    format!("{prefix}-{number}")
}

/// One-line drift summary (for training Jobs and MLflow runs).
pub fn drift_summary(status: &ModelDeploymentStatus) -> String {
    match &status.drift {
        Some(d) => {
            let features: Vec<String> = d
                .features
                .iter()
                .filter(|f| f.severity != Severity::Ok)
                .map(|f| match f.psi {
                    Some(psi) => format!("{}:{}(psi={psi:.3})", f.name, f.severity),
                    None => format!("{}:{}(psi=n/a)", f.name, f.severity),
                })
                .collect();
            format!(
                "severity={} drifted_share={:.2} features=[{}]",
                d.severity,
                d.drifted_share,
                features.join(",")
            )
        }
        None => "no drift check yet".into(),
    }
}

/// True while traffic or training is in motion.
pub fn is_active(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::Retraining
            | Phase::Evaluating
            | Phase::Shadow
            | Phase::Experimenting
            | Phase::Progressing
            | Phase::Promoted
    )
}

#[cfg(test)]
mod job_name_tests {
    use super::job_name;

    fn is_dns_label(name: &str) -> bool {
        name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    }

    #[test]
    fn short_names_keep_the_plain_form() {
        assert_eq!(job_name("fraud", 3), "fraud-retrain-3");
    }

    #[test]
    fn long_names_stay_valid_and_distinct_for_every_attempt() {
        let a = format!("{}a", "m".repeat(52));
        let b = format!("{}b", "m".repeat(52));
        for number in [1, 9, 10, 99, 12_345, i64::from(u32::MAX)] {
            let (ja, jb) = (job_name(&a, number), job_name(&b, number));
            assert!(is_dns_label(&ja), "{ja}");
            assert!(is_dns_label(&jb), "{jb}");
            assert_ne!(ja, jb, "attempt {number}");
            assert!(ja.ends_with(&format!("-retrain-{number}")), "{ja}");
        }
    }
}
