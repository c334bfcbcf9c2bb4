//! Phase transitions of the lifecycle (see the module doc of `lifecycle`).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::analysis_state::{Assessment, assess, record};
use super::manual::{ManualInput, Request};
use super::schedule::{add, next_cron, since, spec_duration};
use super::triggers::{self, Gate, Trigger, TriggerFacts};
use super::*;
use crate::analysis::AnalysisStage;
use crate::api::{
    DeferredTrigger, EvaluationStatus, InconclusiveAction, MetricDirection, ModelDeploymentSpec,
    ModelDeploymentStatus, Phase, RegistryWrite, RetrainingAttempt, RolloutRecord, TrafficProvider,
};

const MIN_REQUEUE: Duration = Duration::from_secs(1);
const MAX_REQUEUE: Duration = Duration::from_secs(300);
const DEFAULT_DRIFT_INTERVAL: Duration = Duration::from_secs(3600);

/// Mutable state of one step.
struct Ctx<'a> {
    spec: &'a ModelDeploymentSpec,
    observed: &'a Observations,
    now: Timestamp,
    name: &'a str,
    uid: &'a str,
    status: ModelDeploymentStatus,
    transitions: Vec<Transition>,
}

impl Ctx<'_> {
    fn event(&mut self, warning: bool, reason: &str, message: impl Into<String>) {
        let message = message.into();
        self.status.message = Some(message.clone());
        self.transitions.push(Transition {
            warning,
            reason: reason.into(),
            message,
        });
    }

    fn enter(&mut self, phase: Phase) {
        self.status.phase = phase;
        self.status.phase_started_at = Some(Time(self.now));
        self.status.analysis = None;
    }

    fn write(&mut self, op: &str, version: Option<&str>, key: &str, value: Option<&str>) {
        let write = RegistryWrite {
            op: op.into(),
            version: version.map(String::from),
            key: key.into(),
            value: value.map(String::from),
        };
        // A later write to the same alias (or the same tag of the same version) supersedes an
        // unsent earlier one.
        let is_tag = op == "setTag";
        self.status.pending_registry_writes.retain(|w| {
            let same = if is_tag {
                w.op == "setTag" && w.key == write.key && w.version == write.version
            } else {
                w.op != "setTag" && w.key == write.key
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

    fn progress_deadline(&self) -> Duration {
        spec_duration(
            &self.spec.rollout.progress_deadline,
            Duration::from_secs(1800),
        )
    }
}

pub(super) fn step(input: StepInput<'_>) -> StepOutput {
    let mut cx = Ctx {
        spec: input.spec,
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
            Phase::Progressing => progressing(&mut cx),
            Phase::Promoted => promoted(&mut cx),
        }
    }

    let job = current_job(&cx.status);
    let requeue_after = requeue(&cx);
    StepOutput {
        status: cx.status,
        transitions: cx.transitions,
        job,
        requeue_after,
    }
}

/// The Job that should exist: the running attempt's.
fn current_job(status: &ModelDeploymentStatus) -> Option<JobRequest> {
    if status.phase != Phase::Retraining {
        return None;
    }
    let attempt = status.retraining_attempts.last()?;
    (attempt.outcome == "Running").then(|| JobRequest {
        number: attempt.number,
        attempt_id: attempt.id.clone(),
        trigger: attempt.trigger.clone(),
        job_name: attempt.job_name.clone(),
    })
}

fn apply_drift(cx: &mut Ctx<'_>) {
    let Some(drift) = cx.observed.drift.clone() else {
        return;
    };
    match drift {
        DriftObservation::Completed { summary, .. } => {
            let before = cx.status.drift.as_ref().map(|d| d.severity.clone());
            if before.as_deref() != Some(summary.severity.as_str()) {
                let warning = summary.severity != "ok";
                cx.transitions.push(Transition {
                    warning,
                    reason: "DriftSeverityChanged".into(),
                    message: format!(
                        "drift severity {} -> {} ({:.0}% of features drifted)",
                        before.as_deref().unwrap_or("unknown"),
                        summary.severity,
                        summary.drifted_share * 100.0
                    ),
                });
            }
            cx.status.drift = Some(summary);
            cx.status.drift_check_failures = 0;
            cx.status.next_drift_check_at = Some(Time(next_drift_check(cx.spec, cx.now)));
        }
        DriftObservation::Failed { reason, message } => {
            cx.status.drift_check_failures += 1;
            // Exponential backoff from 30 s, capped by the check interval.
            let exp = cx.status.drift_check_failures.clamp(1, 10) as u32 - 1;
            let backoff = Duration::from_secs(30 * 2u64.pow(exp)).min(drift_interval(cx.spec));
            cx.status.next_drift_check_at = Some(Time(add(cx.now, backoff)));
            cx.transitions.push(Transition {
                warning: true,
                reason: "DriftCheckFailed".into(),
                message: format!("{reason}: {message}"),
            });
        }
    }
}

fn drift_interval(spec: &ModelDeploymentSpec) -> Duration {
    spec.drift
        .as_ref()
        .and_then(|d| d.interval.as_deref())
        .map(|i| spec_duration(i, DEFAULT_DRIFT_INTERVAL))
        .unwrap_or(DEFAULT_DRIFT_INTERVAL)
}

fn next_drift_check(spec: &ModelDeploymentSpec, now: Timestamp) -> Timestamp {
    match spec.drift.as_ref().and_then(|d| d.schedule.as_deref()) {
        Some(cron) => next_cron(cron, now).unwrap_or_else(|| add(now, DEFAULT_DRIFT_INTERVAL)),
        None => add(now, drift_interval(spec)),
    }
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
            status.urgency = Some(answer.urgency.as_str().into());
            status.reason = Some(answer.reason.clone());
            cx.transitions.push(Transition {
                warning: false,
                reason: "AdvisorAnswered".into(),
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
            status.error = Some(error.to_string());
            status.error_reason = Some(error.reason().into());
            cx.transitions.push(Transition {
                warning: true,
                reason: "AdvisorIgnored".into(),
                message: format!("advisor answer ignored, the rules decide alone: {error}"),
            });
            false
        }
    };
    cx.status.advisor = Some(status);
    retrain_now
}

/// Records and applies one-shot manual requests; returns whether retraining was requested.
fn apply_manual(cx: &mut Ctx<'_>, manual: &ManualInput) -> bool {
    let manual_pause = cx.status.pause_reason.as_deref() == Some(PAUSE_MANUAL);
    if manual.paused && !cx.status.paused {
        pause(
            cx,
            PAUSE_MANUAL,
            "paused by mlrollout.io/pause; the phase will not advance",
        );
    } else if !manual.paused && cx.status.paused && manual_pause {
        resume(cx, "the mlrollout.io/pause annotation was removed");
    }
    let mut retrain = false;
    for (request, value) in &manual.requests {
        cx.status
            .handled_requests
            .insert(request.annotation().to_string(), value.clone());
        match request {
            Request::Abort => match cx.status.phase {
                Phase::Retraining => {
                    finish_attempt(cx, "Aborted", "aborted by mlrollout.io/abort");
                    cx.enter(Phase::Failed);
                    cx.event(true, "Aborted", "retraining aborted by a person");
                }
                Phase::Evaluating | Phase::Shadow | Phase::Progressing => {
                    rollback(cx, "Aborted", "aborted by a person (mlrollout.io/abort)");
                }
                _ => ignored(cx, "abort"),
            },
            Request::Retry => match (cx.status.phase, retriable_candidate(&cx.status)) {
                // A rolled-back (or aborted) candidate passed its gates before: roll it out again.
                (Phase::RolledBack, Some(version))
                    if cx.status.stable_version.as_deref() != Some(version.as_str()) =>
                {
                    cx.status.candidate_version = Some(version.clone());
                    cx.status.candidate_source = Some("retry".into());
                    cx.event(
                        false,
                        "Retry",
                        format!("retrying the rollout of version {version}"),
                    );
                    start_rollout(cx);
                }
                // Failed (training, lineage, evaluation): retrying means training again; a
                // rejected version never gets traffic by retry.
                (Phase::RolledBack | Phase::Failed, _) => retrain = true,
                _ => ignored(cx, "retry"),
            },
            Request::PromoteNext | Request::PromoteFull => {
                let full = *request == Request::PromoteFull;
                // A person promoting answers an inconclusive analysis.
                if cx.status.pause_reason.as_deref() == Some(PAUSE_INCONCLUSIVE) {
                    cx.status.paused = false;
                    cx.status.pause_reason = None;
                }
                match cx.status.phase {
                    Phase::Evaluating => {
                        cx.event(false, "ManualPromotion", "evaluation skipped by a person");
                        pass_evaluation(cx, "skipped by a person");
                    }
                    Phase::Shadow if !full => {
                        cx.event(false, "ManualPromotion", "shadow ended early by a person");
                        enter_step(cx, 0);
                    }
                    Phase::Shadow | Phase::Progressing if full => {
                        promote(cx, "promoted in full by a person")
                    }
                    Phase::Progressing => {
                        cx.event(false, "ManualPromotion", "step completed by a person");
                        advance_step(cx);
                    }
                    _ => ignored(cx, "promote"),
                }
            }
            Request::Retrain => {
                let resting = matches!(
                    cx.status.phase,
                    Phase::Stable | Phase::RolledBack | Phase::Failed
                );
                let enabled = cx.spec.retraining.as_ref().is_some_and(|r| r.enabled);
                if resting && enabled && !cx.status.paused {
                    retrain = true;
                } else {
                    ignored(cx, "retrain");
                }
            }
            Request::Resume => {
                if cx.status.paused {
                    resume(cx, "resumed by a person");
                } else {
                    ignored(cx, "resume");
                }
            }
        }
    }
    retrain
}

const PAUSE_MANUAL: &str = "manual";
const PAUSE_INCONCLUSIVE: &str = "inconclusiveAnalysis";

fn pause(cx: &mut Ctx<'_>, reason: &str, message: &str) {
    cx.status.paused = true;
    cx.status.pause_reason = Some(reason.into());
    let warning = reason != PAUSE_MANUAL;
    let event = if warning {
        "AnalysisInconclusive"
    } else {
        "Paused"
    };
    cx.event(warning, event, message);
}

/// Lifts a pause; the phase's timers and its analysis start over, since time spent paused is
/// not observed progress.
fn resume(cx: &mut Ctx<'_>, why: &str) {
    cx.status.paused = false;
    cx.status.pause_reason = None;
    cx.status.phase_started_at = Some(Time(cx.now));
    cx.status.analysis = None;
    cx.event(
        false,
        "Resumed",
        format!("{why}; the current phase starts over"),
    );
}

/// Promotion and rollback end a pause set by the analysis (a manual pause stays).
fn clear_analysis_pause(cx: &mut Ctx<'_>) {
    if cx.status.pause_reason.as_deref() != Some(PAUSE_MANUAL) {
        cx.status.paused = false;
        cx.status.pause_reason = None;
    }
}

fn ignored(cx: &mut Ctx<'_>, what: &str) {
    let phase = cx.status.phase.as_str();
    cx.event(
        false,
        "ManualRequestIgnored",
        format!("{what} does not apply in phase {phase}"),
    );
}

/// The candidate of the last rollout, when it was rolled back or aborted (it had passed
/// evaluation, or came from the registry).
fn retriable_candidate(status: &ModelDeploymentStatus) -> Option<String> {
    status
        .history
        .last()
        .filter(|h| matches!(h.outcome.as_str(), "RolledBack" | "Aborted"))
        .map(|h| h.candidate_version.clone())
}

/// Stable, RolledBack, Failed: watch for a new version in the registry and for triggers.
fn resting(cx: &mut Ctx<'_>, retrain_requested: bool, advisor_now: bool) {
    // A version behind the alias (or pin) that is not the stable one: someone promoted by
    // hand in MLflow or changed the pin. It goes through the analysed path; a version
    // already rolled back or rejected is not retried without `mlrollout retry`.
    let alias_pending = cx
        .status
        .pending_registry_writes
        .iter()
        .any(|w| w.op != "setTag" && w.key == cx.spec.model.alias);
    if let (Some(served), Some(stable)) = (cx.observed.served_version.clone(), cx.status.stable_version.clone())
        && served != stable
        // While our own alias write is pending, MLflow is behind us, not ahead.
        && !alias_pending
    {
        let refused = cx.status.history.iter().rev().any(|h| {
            h.candidate_version == served
                && matches!(h.outcome.as_str(), "RolledBack" | "Rejected" | "Aborted")
        });
        if !refused {
            cx.status.candidate_version = Some(served.clone());
            cx.status.candidate_source = Some("registry".into());
            cx.status.evaluation = None;
            cx.event(
                false,
                "CandidateFromRegistry",
                format!(
                    "the registry serves version {served} (stable is {stable}); rolling it out"
                ),
            );
            start_rollout(cx);
            return;
        }
    }
    let Some(retraining) = cx.spec.retraining.as_ref().filter(|r| r.enabled) else {
        return;
    };
    if cx.status.schedule_anchor.is_none() {
        cx.status.schedule_anchor = Some(Time(cx.now));
    }
    let (drift_severity, sample_count) = match &cx.observed.drift {
        Some(DriftObservation::Completed {
            summary,
            sample_count,
        }) => (Some(summary.severity.clone()), *sample_count),
        _ => (None, None),
    };
    let accuracy = match &cx.observed.drift {
        Some(DriftObservation::Completed { summary, .. }) => summary.accuracy,
        _ => None,
    };
    if cx.status.samples_at_last_training.is_none() {
        // The first count is the baseline: history is not "new".
        cx.status.samples_at_last_training = sample_count;
    }
    let facts = TriggerFacts {
        drift_severity,
        accuracy,
        sample_count,
        samples_at_last_training: cx.status.samples_at_last_training,
        schedule_anchor: cx.status.schedule_anchor.as_ref().map(|t| t.0),
        manual: retrain_requested,
        advisor: cx.observed.advisor_recommends || advisor_now,
    };
    let fired = triggers::fired(retraining, &facts, cx.now).or_else(|| {
        cx.status
            .deferred_trigger
            .as_ref()
            .and_then(|d| Trigger::parse(&d.trigger))
            .map(|t| (t, "deferred trigger".to_string()))
    });
    let Some((trigger, reason)) = fired else {
        return;
    };
    let why = if cx.observed.served_version.is_none() {
        // The registry cannot be read: a Job would register a version nobody can look up.
        Some("the model registry is unavailable".to_string())
    } else {
        match triggers::gate(retraining, &cx.status.retraining_attempts, cx.now) {
            Gate::Open => None,
            Gate::Cooldown { until } => Some(format!("cooldown until {until}")),
            Gate::Budget { until } => Some(format!(
                "daily budget of {} attempts used until {until}",
                retraining.max_attempts_per_day
            )),
        }
    };
    match why {
        None => start_attempt(cx, trigger, &reason, sample_count),
        Some(why) => defer(cx, trigger, &reason, why),
    }
}

/// Records a trigger held back by a gate (one Event per trigger and kind of hold).
fn defer(cx: &mut Ctx<'_>, trigger: Trigger, reason: &str, why: String) {
    let kind = |reason: &str| reason.split_whitespace().next().unwrap_or("").to_string();
    let already = cx
        .status
        .deferred_trigger
        .as_ref()
        .is_some_and(|d| d.trigger == trigger.as_str() && kind(&d.reason) == kind(&why));
    if !already {
        cx.event(
            false,
            "RetrainingDeferred",
            format!(
                "{} trigger fired ({reason}) but is held back: {why}",
                trigger.as_str()
            ),
        );
    }
    // Keep when the trigger first fired; only the reason (cooldown → budget) moves on.
    let at = cx
        .status
        .deferred_trigger
        .as_ref()
        .filter(|d| d.trigger == trigger.as_str())
        .and_then(|d| d.at.clone())
        .unwrap_or(Time(cx.now));
    cx.status.deferred_trigger = Some(DeferredTrigger {
        trigger: trigger.as_str().into(),
        at: Some(at),
        reason: why,
    });
}

fn start_attempt(cx: &mut Ctx<'_>, trigger: Trigger, reason: &str, sample_count: Option<i64>) {
    let number = cx
        .status
        .retraining_attempts
        .iter()
        .map(|a| a.number)
        .max()
        .unwrap_or(0)
        + 1;
    let attempt = RetrainingAttempt {
        number,
        id: attempt_id(cx.uid, number),
        trigger: trigger.as_str().into(),
        job_name: job_name(cx.name, number),
        started_at: Some(Time(cx.now)),
        finished_at: None,
        outcome: "Running".into(),
        candidate_version: None,
        message: Some(reason.to_string()),
    };
    cx.event(
        false,
        "RetrainingStarted",
        format!(
            "attempt {number} ({}): {reason}; Job {}",
            trigger.as_str(),
            attempt.job_name
        ),
    );
    cx.status.retraining_attempts.push(attempt);
    log_attempt(cx);
    if cx.status.retraining_attempts.len() > MAX_ATTEMPTS_KEPT {
        cx.status.retraining_attempts.remove(0);
    }
    cx.status.deferred_trigger = None;
    cx.status.schedule_anchor = Some(Time(cx.now));
    if let Some(count) = sample_count {
        cx.status.samples_at_last_training = Some(count);
    }
    cx.status.candidate_version = None;
    cx.status.evaluation = None;
    cx.enter(Phase::Retraining);
}

fn finish_attempt(cx: &mut Ctx<'_>, outcome: &str, message: &str) {
    let now = cx.now;
    if let Some(a) = cx.status.retraining_attempts.last_mut() {
        a.outcome = outcome.into();
        a.finished_at = Some(Time(now));
        a.message = Some(message.into());
    }
    log_attempt(cx);
}

/// Queues the MLflow run of the latest attempt (trigger, drift, Job, outcome).
fn log_attempt(cx: &mut Ctx<'_>) {
    let Some(a) = cx.status.retraining_attempts.last().cloned() else {
        return;
    };
    let record = crate::registry::AttemptRecord {
        experiment: format!("mlrollout/{}", cx.name),
        attempt_id: a.id.clone(),
        number: a.number,
        trigger: a.trigger.clone(),
        job_name: a.job_name.clone(),
        outcome: a.outcome.clone(),
        drift_summary: super::drift_summary(&cx.status),
        candidate_version: a.candidate_version.clone(),
        advisor: cx.status.advisor.as_ref().and_then(|adv| {
            adv.reason.as_ref().map(|reason| {
                format!(
                    "needs_retrain={} urgency={} reason={reason}",
                    adv.needs_retrain.unwrap_or(false),
                    adv.urgency.as_deref().unwrap_or("")
                )
            })
        }),
    };
    if let Ok(value) = serde_json::to_string(&record) {
        cx.write("logAttempt", None, &a.id, Some(&value));
    }
}

fn retraining(cx: &mut Ctx<'_>) {
    let timeout = cx
        .spec
        .retraining
        .as_ref()
        .map(|r| spec_duration(&r.timeout, Duration::from_secs(7200)))
        .unwrap_or(Duration::from_secs(7200));
    match cx.observed.job.clone() {
        Some(JobState::Failed(message)) => {
            finish_attempt(cx, "Failed", &message);
            cx.enter(Phase::Failed);
            cx.event(
                true,
                "TrainingFailed",
                format!("the retraining Job failed: {message}"),
            );
            return;
        }
        Some(JobState::Succeeded) => match cx.observed.candidate_lookup.clone() {
            Some(CandidateLookup::Found(version)) => {
                if let Some(a) = cx.status.retraining_attempts.last_mut() {
                    a.candidate_version = Some(version.clone());
                }
                finish_attempt(cx, "Succeeded", &format!("registered version {version}"));
                cx.status.candidate_version = Some(version.clone());
                cx.status.candidate_source = Some("retraining".into());
                cx.enter(Phase::Evaluating);
                cx.event(
                    false,
                    "CandidateRegistered",
                    format!("the Job registered version {version}"),
                );
                return;
            }
            Some(CandidateLookup::NotFound) => {
                let id = cx
                    .status
                    .retraining_attempts
                    .last()
                    .map(|a| a.id.clone())
                    .unwrap_or_default();
                finish_attempt(
                    cx,
                    "Failed",
                    "no model version carries the attempt's lineage tag",
                );
                cx.enter(Phase::Failed);
                cx.event(
                    true,
                    "CandidateNotRegistered",
                    format!("the Job succeeded but no version is tagged mlrollout.io/attempt={id}"),
                );
                return;
            }
            Some(CandidateLookup::Error(_)) | None => {}
        },
        _ => {}
    }
    if cx.phase_age() > timeout + cx.progress_deadline() {
        finish_attempt(
            cx,
            "TimedOut",
            "no result within the timeout and the progress deadline",
        );
        cx.enter(Phase::Failed);
        cx.event(
            true,
            "ProgressDeadlineExceeded",
            "the retraining Job did not finish in time",
        );
    }
}

fn evaluating(cx: &mut Ctx<'_>) {
    let metric = cx.spec.evaluation.metric.clone();
    match cx.observed.evaluation.clone() {
        Some(EvaluationObservation::Metrics {
            candidate,
            champion,
        }) => {
            let verdict = judge_evaluation(cx.spec, candidate, champion);
            cx.status.evaluation = Some(EvaluationStatus {
                metric,
                candidate_value: candidate,
                champion_value: champion,
                passed: verdict.is_ok(),
                reason: match &verdict {
                    Ok(r) | Err(r) => r.clone(),
                },
            });
            match verdict {
                Ok(reason) => pass_evaluation(cx, &reason),
                Err(reason) => {
                    let version = cx.status.candidate_version.clone().unwrap_or_default();
                    cx.write(
                        "setTag",
                        Some(&version),
                        "mlrollout.io/verdict",
                        Some("rejected"),
                    );
                    record_history(cx, "Rejected", "EvaluationFailed");
                    cx.status.candidate_version = None;
                    cx.enter(Phase::Failed);
                    cx.event(
                        true,
                        "EvaluationFailed",
                        format!("version {version} rejected: {reason}"),
                    );
                }
            }
        }
        Some(EvaluationObservation::Error(_)) | None => {
            if cx.phase_age() > cx.progress_deadline() {
                rollback(
                    cx,
                    "ProgressDeadlineExceeded",
                    "the evaluation could not be completed in time",
                );
            }
        }
    }
}

/// `Ok(reason)` when the candidate is at least `minImprovement` better than the champion.
fn judge_evaluation(
    spec: &ModelDeploymentSpec,
    candidate: Option<f64>,
    champion: Option<f64>,
) -> Result<String, String> {
    let e = &spec.evaluation;
    let Some(c) = candidate.filter(|v| v.is_finite()) else {
        return Err(format!("the candidate's run has no metric {:?}", e.metric));
    };
    let Some(b) = champion.filter(|v| v.is_finite()) else {
        return Err(format!(
            "the champion's run has no metric {:?} to compare with",
            e.metric
        ));
    };
    let improvement = match e.direction {
        MetricDirection::HigherIsBetter => c - b,
        MetricDirection::LowerIsBetter => b - c,
    };
    // Metrics are decimals written as floats: 0.85 - 0.80 must count as 0.05.
    if improvement >= e.min_improvement - 1e-9 {
        Ok(format!(
            "{} {c:.4} vs champion {b:.4} (improvement {improvement:.4} >= {})",
            e.metric, e.min_improvement
        ))
    } else {
        Err(format!(
            "{} {c:.4} vs champion {b:.4} (improvement {improvement:.4} < {})",
            e.metric, e.min_improvement
        ))
    }
}

fn pass_evaluation(cx: &mut Ctx<'_>, reason: &str) {
    let version = cx.status.candidate_version.clone().unwrap_or_default();
    if let Some(pinned) = cx.spec.model.version.clone()
        && cx.status.candidate_source.as_deref() == Some("retraining")
    {
        // The spec pins the served version (GitOps owns it): a retrained candidate is
        // recorded and offered, and rolls out when the pin moves to it.
        cx.write(
            "setTag",
            Some(&version),
            "mlrollout.io/verdict",
            Some("evaluation-passed"),
        );
        cx.write("setAlias", Some(&version), "challenger", None);
        record_history(cx, "Held", "PinnedVersion");
        cx.status.candidate_version = None;
        cx.status.candidate_source = None;
        cx.enter(Phase::Stable);
        cx.event(
            false,
            "CandidateHeldByPin",
            format!(
                "version {version} passed evaluation ({reason}); spec.model.version pins {pinned}: set it to {version} to roll it out"
            ),
        );
        return;
    }
    cx.write(
        "setTag",
        Some(&version),
        "mlrollout.io/verdict",
        Some("evaluation-passed"),
    );
    cx.event(
        false,
        "EvaluationPassed",
        format!("version {version}: {reason}"),
    );
    start_rollout(cx);
}

/// Shadow when enabled and the router can mirror, else the first step.
fn start_rollout(cx: &mut Ctx<'_>) {
    let version = cx.status.candidate_version.clone().unwrap_or_default();
    cx.write("setAlias", Some(&version), "challenger", None);
    if cx.spec.shadow.enabled && cx.spec.traffic.provider != TrafficProvider::None {
        cx.enter(Phase::Shadow);
        cx.status.canary_weight = 0;
        cx.status.current_step = None;
        cx.status.mirror_percent = cx.spec.shadow.mirror_percent;
        cx.event(
            false,
            "ShadowStarted",
            format!(
                "version {version} receives {}% mirrored traffic",
                cx.spec.shadow.mirror_percent
            ),
        );
    } else {
        enter_step(cx, 0);
    }
}

/// Takes this round's measurements into account; returns the assessment, or `None` when
/// the spec has no analysis (time alone decides).
fn run_analysis(cx: &mut Ctx<'_>, stage: AnalysisStage) -> Option<Assessment> {
    let analysis = cx.spec.rollout.analysis.as_ref()?;
    let metrics = crate::analysis::defaults::metrics_for(cx.spec, stage);
    let mut state = cx.status.analysis.clone().unwrap_or_default();
    if cx.observed.candidate_ready
        && let Some(measurements) = &cx.observed.measurements
    {
        record(&mut state, measurements, cx.now);
    }
    let assessment = assess(&state, &metrics, analysis.count.max(1));
    cx.status.analysis = Some(state);
    Some(assessment)
}

/// Acts on a failing assessment; returns true if the phase ended.
fn act_on_failure(cx: &mut Ctx<'_>, assessment: &Assessment, gate: &str) -> bool {
    match assessment {
        Assessment::Failed { detail, .. } => {
            rollback(cx, &format!("{gate}Failed"), detail);
            true
        }
        Assessment::Errored { detail, .. } => {
            rollback(cx, "AnalysisError", detail);
            true
        }
        Assessment::Inconclusive { detail, .. } => {
            let action = cx
                .spec
                .rollout
                .analysis
                .as_ref()
                .map(|a| a.on_inconclusive)
                .unwrap_or_default();
            match action {
                InconclusiveAction::Rollback => rollback(cx, "AnalysisInconclusive", detail),
                InconclusiveAction::Pause => {
                    if !cx.status.paused {
                        pause(
                            cx,
                            PAUSE_INCONCLUSIVE,
                            &format!("paused for a person: {detail}; resume, promote or abort"),
                        );
                    }
                }
            }
            true
        }
        Assessment::Running | Assessment::Passed => false,
    }
}

fn shadow(cx: &mut Ctx<'_>) {
    let assessment = run_analysis(cx, AnalysisStage::Shadow);
    if let Some(a) = &assessment
        && act_on_failure(cx, a, "Shadow")
    {
        return;
    }
    let duration = spec_duration(&cx.spec.shadow.duration, Duration::from_secs(600));
    let analysed = assessment.as_ref().is_none_or(|a| *a == Assessment::Passed);
    if cx.observed.candidate_ready && cx.phase_age() >= duration && analysed {
        let how = if assessment.is_some() {
            "passed its analysis"
        } else {
            "ran (no analysis configured)"
        };
        cx.event(false, "ShadowPassed", format!("the shadow phase {how}"));
        enter_step(cx, 0);
        return;
    }
    if cx.phase_age() > duration + cx.progress_deadline() {
        let why = if cx.observed.candidate_ready {
            "the shadow analysis never concluded"
        } else {
            "the candidate never became ready"
        };
        rollback(cx, "ProgressDeadlineExceeded", why);
    }
}

fn enter_step(cx: &mut Ctx<'_>, index: usize) {
    let steps = &cx.spec.rollout.steps;
    let weight = steps.get(index).copied().unwrap_or(100);
    cx.enter(Phase::Progressing);
    cx.status.current_step = Some(index as i32);
    cx.status.canary_weight = weight;
    cx.status.mirror_percent = 0;
    cx.event(
        false,
        "StepStarted",
        format!(
            "step {} of {}: {weight}% of traffic on the candidate",
            index + 1,
            steps.len()
        ),
    );
}

fn advance_step(cx: &mut Ctx<'_>) {
    let index = usize::try_from(cx.status.current_step.unwrap_or(0)).unwrap_or(0);
    if index + 1 >= cx.spec.rollout.steps.len() {
        promote(cx, "every step passed its analysis");
    } else {
        enter_step(cx, index + 1);
    }
}

fn progressing(cx: &mut Ctx<'_>) {
    let assessment = run_analysis(cx, AnalysisStage::Canary);
    if let Some(a) = &assessment
        && act_on_failure(cx, a, "Analysis")
    {
        return;
    }
    let step_duration = spec_duration(&cx.spec.rollout.step_duration, Duration::from_secs(300));
    let analysed = assessment.as_ref().is_none_or(|a| *a == Assessment::Passed);
    if cx.observed.candidate_ready && cx.phase_age() >= step_duration && analysed {
        advance_step(cx);
        return;
    }
    if cx.phase_age() > step_duration + cx.progress_deadline() {
        let why = if cx.observed.candidate_ready {
            "the step's analysis never concluded"
        } else {
            "the candidate never became ready"
        };
        rollback(cx, "ProgressDeadlineExceeded", why);
    }
}

/// The candidate becomes stable. Traffic stays on the candidate until the stable Deployment
/// runs the new version (phase `Promoted`), so promotion never jumps traffic to unready pods.
fn promote(cx: &mut Ctx<'_>, reason: &str) {
    let version = cx.status.candidate_version.clone().unwrap_or_default();
    let previous = cx.status.stable_version.clone();
    if let Some(prev) = &previous {
        cx.write("setAlias", Some(prev), "previous", None);
    }
    cx.write(
        "setAlias",
        Some(&version),
        &cx.spec.model.alias.clone(),
        None,
    );
    cx.write("deleteAlias", None, "challenger", None);
    cx.write(
        "setTag",
        Some(&version),
        "mlrollout.io/rollout",
        Some("promoted"),
    );
    record_history(cx, "Promoted", "Promoted");
    clear_analysis_pause(cx);
    cx.enter(Phase::Promoted);
    cx.status.current_step = None;
    cx.status.canary_weight = 100;
    cx.status.mirror_percent = 0;
    cx.status.stable_version = Some(version.clone());
    cx.event(
        false,
        "Promoted",
        format!(
            "version {version} promoted ({reason}); stable is updated before traffic returns to it"
        ),
    );
}

fn promoted(cx: &mut Ctx<'_>) {
    if cx.observed.stable_ready {
        cx.status.candidate_version = None;
        cx.status.candidate_source = None;
        cx.status.canary_weight = 0;
        let version = cx.status.stable_version.clone().unwrap_or_default();
        cx.enter(Phase::Stable);
        cx.event(
            false,
            "PromotionComplete",
            format!("version {version} is stable and serves all traffic"),
        );
    } else if cx.phase_age() > cx.progress_deadline() {
        // The new stable never became ready: traffic is still on the (healthy) candidate
        // pods, so keep it there and say so rather than moving it to unready pods.
        cx.event(
            true,
            "ProgressDeadlineExceeded",
            "the promoted stable Deployment is not ready; traffic stays on the candidate pods",
        );
        cx.status.phase_started_at = Some(Time(cx.now));
    }
}

fn record_history(cx: &mut Ctx<'_>, outcome: &str, reason: &str) {
    let record = RolloutRecord {
        candidate_version: cx.status.candidate_version.clone().unwrap_or_default(),
        previous_version: cx.status.stable_version.clone(),
        outcome: outcome.into(),
        reason: reason.into(),
        finished_at: Some(Time(cx.now)),
    };
    cx.status.history.push(record);
    if cx.status.history.len() > MAX_HISTORY_KEPT {
        cx.status.history.remove(0);
    }
}

/// Everything back on stable: 0 % on the candidate, no mirror, the registry restored.
fn rollback(cx: &mut Ctx<'_>, reason: &str, detail: &str) {
    let version = cx.status.candidate_version.clone().unwrap_or_default();
    let outcome = if reason == "Aborted" {
        "Aborted"
    } else {
        "RolledBack"
    };
    record_history(cx, outcome, reason);
    if let Some(stable) = cx.status.stable_version.clone() {
        cx.write(
            "setAlias",
            Some(&stable),
            &cx.spec.model.alias.clone(),
            None,
        );
    }
    cx.write("deleteAlias", None, "challenger", None);
    if !version.is_empty() {
        cx.write(
            "setTag",
            Some(&version),
            "mlrollout.io/rollout",
            Some(&format!("rolled-back: {reason}")),
        );
    }
    cx.status.canary_weight = 0;
    cx.status.mirror_percent = 0;
    cx.status.current_step = None;
    cx.status.candidate_version = None;
    cx.status.candidate_source = None;
    clear_analysis_pause(cx);
    cx.enter(Phase::RolledBack);
    cx.event(
        true,
        "RolledBack",
        format!("version {version} rolled back ({reason}): {detail}"),
    );
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
    if let (Some(cron), Some(anchor)) = (
        cx.spec
            .retraining
            .as_ref()
            .and_then(|r| r.triggers.schedule.as_deref()),
        s.schedule_anchor.as_ref(),
    ) && let Some(t) = next_cron(cron, anchor.0)
    {
        due.push(t);
    }
    if s.deferred_trigger.is_some()
        && let Some(r) = &cx.spec.retraining
        && let Gate::Cooldown { until } | Gate::Budget { until } =
            triggers::gate(r, &s.retraining_attempts, now)
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
            .spec
            .rollout
            .analysis
            .as_ref()
            .map(|a| spec_duration(&a.interval, Duration::from_secs(60)))
            .unwrap_or(Duration::from_secs(30));
        wake = wake
            .min(interval.max(MIN_REQUEUE))
            .min(Duration::from_secs(30));
    }
    wake
}

pub(super) fn wants(
    spec: &ModelDeploymentSpec,
    status: &ModelDeploymentStatus,
    now: Timestamp,
) -> Wants {
    let mut wants = Wants {
        drift_check: spec.drift.is_some()
            && status
                .next_drift_check_at
                .as_ref()
                .is_none_or(|t| t.0 <= now),
        ..Default::default()
    };
    match status.phase {
        Phase::Retraining => {
            if let Some(a) = status.retraining_attempts.last()
                && a.outcome == "Running"
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
        Phase::Shadow | Phase::Progressing if !status.paused && spec.rollout.analysis.is_some() => {
            let interval = spec
                .rollout
                .analysis
                .as_ref()
                .map(|a| spec_duration(&a.interval, Duration::from_secs(60)))
                .unwrap_or(Duration::from_secs(60));
            let due = status
                .analysis
                .as_ref()
                .and_then(|a| a.last_measured_at.as_ref())
                .is_none_or(|t| add(t.0, interval) <= now);
            if due {
                wants.measure = Some(if status.phase == Phase::Shadow {
                    AnalysisStage::Shadow
                } else {
                    AnalysisStage::Canary
                });
            }
        }
        _ => {}
    }
    wants
}
