//! Phase transitions of the lifecycle (see the module doc of `lifecycle`).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::analysis_state::{Assessment, assess, assess_as_gate, mark_dry_run, record};
use super::manual::{ManualInput, Request};
use super::schedule::{add, since};
use super::triggers::{self, Gate, Trigger, TriggerFacts};
use super::*;
use crate::api::validation::{Timing, ValidatedSpec};
use crate::api::{
    AttemptOutcome, CandidateSource, EventReason, PauseReason, RegistryOp, RolloutOutcome,
    RolloutReason, Severity, Urgency,
};
use crate::api::{
    DeferredTrigger, DriftSpec, EvaluationStatus, InconclusiveAction, MetricDirection,
    ModelDeploymentSpec, ModelDeploymentStatus, Phase, RegistryWrite, RetrainingAttempt,
    RetrainingSpec, RolloutRecord, TrafficProvider,
};
use crate::core::verdict::AnalysisStage;

mod experiment;
mod manual_requests;
mod post_promotion;
mod retraining;
mod rollout;
mod steps;

use experiment::*;
use manual_requests::*;
use post_promotion::*;
use retraining::*;
use rollout::*;
use steps::*;

const MIN_REQUEUE: Duration = Duration::from_secs(1);
const MAX_REQUEUE: Duration = Duration::from_secs(300);
/// Longest wait in an active phase (without an analysis interval to go by).
const ACTIVE_REQUEUE: Duration = Duration::from_secs(30);

/// Mutable state of one step.
struct Ctx<'a> {
    /// The spec as written.
    spec: &'a ModelDeploymentSpec,
    /// The same spec, parsed (durations, schedules).
    validated: &'a ValidatedSpec,
    observed: &'a Observations,
    now: Timestamp,
    name: &'a str,
    uid: &'a str,
    status: ModelDeploymentStatus,
    transitions: Vec<Transition>,
}

impl Ctx<'_> {
    fn event(&mut self, warning: bool, reason: EventReason, message: impl Into<String>) {
        let message = message.into();
        self.status.message = Some(message.clone());
        self.transitions.push(Transition {
            warning,
            reason,
            message,
        });
    }

    fn enter(&mut self, phase: Phase) {
        self.status.phase = phase;
        self.status.phase_started_at = Some(Time(self.now));
        self.status.analysis = None;
    }

    fn write(&mut self, op: RegistryOp, version: Option<&str>, key: &str, value: Option<&str>) {
        let write = RegistryWrite {
            op,
            version: version.map(String::from),
            key: key.into(),
            value: value.map(String::from),
        };
        // A later write to the same alias (or the same tag of the same version) supersedes an
        // unsent earlier one.
        let is_tag = op == RegistryOp::SetTag;
        self.status.pending_registry_writes.retain(|w| {
            let same = if is_tag {
                w.op == RegistryOp::SetTag && w.key == write.key && w.version == write.version
            } else {
                w.op != RegistryOp::SetTag && w.key == write.key
            };
            !same
        });
        self.status.pending_registry_writes.push(write);
    }

    fn phase_age(&self) -> Duration {
        self.status
            .phase_started_at
            .as_ref()
            .map(|t| since(self.now, t.0))
            .unwrap_or(Duration::ZERO)
    }

    fn timing(&self) -> &Timing {
        &self.validated.timing
    }

    fn progress_deadline(&self) -> Duration {
        self.timing().rollout.progress_deadline
    }
}

pub(super) fn step(input: StepInput<'_>) -> StepOutput {
    let mut cx = Ctx {
        spec: input.spec.spec(),
        validated: input.spec,
        observed: input.observed,
        now: input.now,
        name: input.name,
        uid: input.uid,
        status: input.status.clone(),
        transitions: Vec::new(),
    };

    apply_drift(&mut cx);
    let advisor_now = apply_advisor(&mut cx);
    let before = (cx.status.phase, cx.status.current_step);
    let retrain_requested = apply_manual(&mut cx, &input.observed.manual);
    // A person moved the rollout in this step: observations were taken for the old phase
    // (e.g. "stable is ready" described the old stable), so the new phase waits a step.
    let moved_by_hand = (cx.status.phase, cx.status.current_step) != before;
    if !cx.status.paused && !moved_by_hand {
        match cx.status.phase {
            Phase::Pending => {}
            Phase::Stable | Phase::RolledBack | Phase::Failed => {
                resting(&mut cx, retrain_requested, advisor_now)
            }
            Phase::Retraining => retraining(&mut cx),
            Phase::Evaluating => evaluating(&mut cx),
            Phase::Shadow => shadow(&mut cx),
            Phase::Experimenting => experimenting(&mut cx),
            Phase::Progressing => progressing(&mut cx),
            Phase::Promoted => promoted(&mut cx),
        }
    }

    release_retained(&mut cx);
    // An experiment the step ended without a verdict (abort, promotion) is recorded as such.
    settle(&mut cx);

    let job = current_job(&cx.status);
    let traffic = desired_traffic(&cx.status);
    let requeue_after = requeue(&cx);
    StepOutput {
        status: cx.status,
        transitions: cx.transitions,
        job,
        traffic,
        requeue_after,
    }
}

/// The traffic the status stands for: the candidate runs from the shadow phase until the
/// promoted stable takes over; weight and mirror are as the phases set them.
fn desired_traffic(status: &ModelDeploymentStatus) -> DesiredTraffic {
    let in_rollout = matches!(
        status.phase,
        Phase::Shadow | Phase::Experimenting | Phase::Progressing | Phase::Promoted
    );
    // Outside a rollout, a candidate kept for debugging runs on, with no traffic.
    let retained = status
        .retained_candidate
        .as_ref()
        .map(|r| r.version.clone())
        .filter(|_| !in_rollout);
    DesiredTraffic {
        candidate_version: status
            .candidate_version
            .clone()
            .filter(|_| in_rollout)
            .or(retained),
        canary_weight: status.canary_weight,
        mirror_percent: status.mirror_percent,
        // In the window after a promotion, the previous version stays warm on stable.
        stable_version: status
            .post_promotion
            .as_ref()
            .map(|p| p.previous_version.clone())
            .or_else(|| status.stable_version.clone()),
        experiment: status.phase == Phase::Experimenting && status.candidate_version.is_some(),
    }
}

/// Whether the post-promotion analysis still runs.
fn post_promotion_analysing(status: &ModelDeploymentStatus, now: Timestamp) -> bool {
    status
        .post_promotion
        .as_ref()
        .and_then(|p| p.analysis_until.as_ref())
        .is_some_and(|until| now < until.0)
}

/// The Job that should exist: the running attempt's.
fn current_job(status: &ModelDeploymentStatus) -> Option<JobRequest> {
    if status.phase != Phase::Retraining {
        return None;
    }
    let attempt = status.retraining_attempts.last()?;
    (attempt.outcome == AttemptOutcome::Running).then(|| JobRequest {
        number: attempt.number,
        attempt_id: attempt.id.clone(),
        trigger: attempt.trigger,
        job_name: attempt.job_name.clone(),
    })
}

fn apply_drift(cx: &mut Ctx<'_>) {
    let Some(drift) = cx.observed.drift.clone() else {
        return;
    };
    match drift {
        DriftObservation::Completed { summary, .. } => {
            let before = cx.status.drift.as_ref().map(|d| d.severity);
            if before != Some(summary.severity) {
                let warning = summary.severity != Severity::Ok;
                cx.transitions.push(Transition {
                    warning,
                    reason: EventReason::DriftSeverityChanged,
                    message: format!(
                        "drift severity {} -> {} ({:.0}% of features drifted)",
                        before.map_or("unknown", Severity::as_str),
                        summary.severity,
                        summary.drifted_share * 100.0
                    ),
                });
            }
            cx.status.drift = Some(DriftSummary {
                checked_at: Some(Time(cx.now)),
                ..summary
            });
            cx.status.drift_check_failures = 0;
            cx.status.next_drift_check_at = Some(Time(next_drift_check(cx.timing(), cx.now)));
        }
        DriftObservation::Failed { reason, message } => {
            cx.status.drift_check_failures += 1;
            // Exponential backoff from 30 s, capped by the check interval.
            let exp = cx.status.drift_check_failures.clamp(1, 10) as u32 - 1;
            let backoff = Duration::from_secs(30 * 2u64.pow(exp)).min(drift_interval(cx.timing()));
            cx.status.next_drift_check_at = Some(Time(add(cx.now, backoff)));
            cx.transitions.push(Transition {
                warning: true,
                reason: EventReason::DriftCheckFailed,
                message: format!("{reason}: {message}"),
            });
        }
    }
}

/// The drift interval. (The shell observes drift only for a spec with a drift section;
/// without one, the section's default stands in.)
fn drift_interval(timing: &Timing) -> Duration {
    timing
        .drift
        .as_ref()
        .map_or(DriftSpec::DEFAULT_INTERVAL, |d| d.interval)
}

/// The next check: the next cron occurrence, else (no schedule, or one that never comes)
/// after the interval. With a schedule the interval is its default, as the spec cannot set both.
fn next_drift_check(timing: &Timing, now: Timestamp) -> Timestamp {
    let next = timing
        .drift
        .as_ref()
        .and_then(|d| d.schedule.as_ref())
        .and_then(|schedule| schedule.next_after(now));
    next.unwrap_or_else(|| add(now, drift_interval(timing)))
}

/// Records the advisor's answer; returns whether it asks for retraining now. Advice only: it
/// becomes a trigger like any other, behind the same cooldown, budget and gates.
fn apply_advisor(cx: &mut Ctx<'_>) -> bool {
    let Some(obs) = cx.observed.advisor.clone() else {
        return false;
    };
    let mut status = crate::api::AdvisorStatus {
        digest: obs.digest.clone(),
        at: Some(Time(cx.now)),
        ..Default::default()
    };
    let retrain_now = match &obs.answer {
        Ok(answer) => {
            status.needs_retrain = Some(answer.needs_retrain);
            status.urgency = Some(answer.urgency);
            status.reason = Some(answer.reason.clone());
            cx.transitions.push(Transition {
                warning: false,
                reason: EventReason::AdvisorAnswered,
                message: format!(
                    "advisor: needs_retrain={} urgency={}: {}",
                    answer.needs_retrain,
                    answer.urgency.as_str(),
                    answer.reason
                ),
            });
            answer.retrain_now()
        }
        Err(error) => {
            status.error = Some(error.message.clone());
            status.error_reason = Some(error.reason);
            cx.transitions.push(Transition {
                warning: true,
                reason: EventReason::AdvisorIgnored,
                message: format!(
                    "advisor answer ignored, the rules decide alone: {}",
                    error.message
                ),
            });
            false
        }
    };
    cx.status.advisor = Some(status);
    retrain_now
}

fn requeue(cx: &Ctx<'_>) -> Duration {
    let now = cx.now;
    let s = &cx.status;
    let mut due: Vec<Timestamp> = Vec::new();
    match &s.next_drift_check_at {
        Some(t) => due.push(t.0),
        None if cx.spec.drift.is_some() => due.push(now),
        None => {}
    }
    if let (Some((_, timing)), Some(anchor)) =
        (cx.validated.retraining(), s.schedule_anchor.as_ref())
        && let Some(t) = timing
            .schedule
            .as_ref()
            .and_then(|c| c.next_after(anchor.0))
    {
        due.push(t);
    }
    // The end of a warm window and of a retained candidate are wake-ups too.
    due.extend(
        s.post_promotion
            .as_ref()
            .and_then(|p| p.warm_until.as_ref())
            .into_iter()
            .chain(s.retained_candidate.as_ref().and_then(|r| r.until.as_ref()))
            .map(|t| t.0),
    );
    if s.deferred_trigger.is_some()
        && let Some((retraining, timing)) = cx.validated.retraining()
        && let Gate::Cooldown { until } | Gate::Budget { until } =
            triggers::gate(retraining, timing, &s.retraining_attempts, now)
    {
        due.push(until);
    }
    let mut wake = due
        .into_iter()
        .map(|t| since(t, now).max(MIN_REQUEUE))
        .min()
        .unwrap_or(MAX_REQUEUE)
        .min(MAX_REQUEUE);
    if !s.paused && is_active(s.phase) {
        // Active phases are looked at often: measurements, step ends and deadlines.
        let interval = cx
            .timing()
            .rollout
            .analysis_interval
            .unwrap_or(ACTIVE_REQUEUE);
        wake = wake.min(interval.max(MIN_REQUEUE)).min(ACTIVE_REQUEUE);
    }
    wake
}

pub(super) fn wants(spec: &ValidatedSpec, status: &ModelDeploymentStatus, now: Timestamp) -> Wants {
    let mut wants = Wants {
        drift_check: spec.spec().drift.is_some()
            && status
                .next_drift_check_at
                .as_ref()
                .is_none_or(|t| t.0 <= now),
        ..Default::default()
    };
    match status.phase {
        Phase::Retraining => {
            if let Some(a) = status.retraining_attempts.last()
                && a.outcome == AttemptOutcome::Running
            {
                wants.job = Some(a.job_name.clone());
                wants.candidate_lookup = Some(a.id.clone());
            }
        }
        Phase::Evaluating => {
            if let (Some(c), Some(s)) = (&status.candidate_version, &status.stable_version) {
                wants.evaluation = Some((c.clone(), s.clone()));
            }
        }
        Phase::Shadow | Phase::Experimenting | Phase::Progressing | Phase::Promoted
            if !status.paused =>
        {
            let rollout = &spec.timing.rollout;
            let step = current_step(rollout, status).filter(|_| status.phase == Phase::Progressing);
            let stage = match status.phase {
                Phase::Shadow => Some(AnalysisStage::Shadow),
                Phase::Experimenting => Some(AnalysisStage::Canary),
                // A pause step holds without measuring.
                Phase::Progressing => (!step.is_some_and(|s| s.pause)).then(|| step_stage(step)),
                _ => post_promotion_analysing(status, now).then_some(AnalysisStage::PostPromotion),
            };
            let interval = rollout
                .analysis_interval
                .map(|global| step.and_then(|s| s.analysis_interval).unwrap_or(global));
            if let (Some(stage), Some(interval)) = (stage, interval) {
                let due = status
                    .analysis
                    .as_ref()
                    .and_then(|a| a.last_measured_at.as_ref())
                    .is_none_or(|t| add(t.0, interval) <= now);
                if due {
                    wants.measure = Some(stage);
                }
            }
        }
        _ => {}
    }
    wants
}
