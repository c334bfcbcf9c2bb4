//! Notifications out, the pure part: which lifecycle transitions are announced, what they
//! carry, to which sinks they go, and how a delivery attempt's answer is judged. Derived from
//! the Events and the status the decision already produced; no I/O (the shell's
//! `crate::notify` renders nothing of its own: it signs, sends and retries).

mod render;
#[cfg(test)]
mod tests;

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::api::{
    EventReason, MeasurementRecord, ModelDeploymentStatus, NotificationEvent, NotificationSink,
    NotificationsSpec, PauseReason, Phase, RolloutReason, Severity, Trigger, Verdict,
};
use crate::core::decide::{EventCause, EventIntent};
use crate::core::verdict::MetricMeasurement;

pub use render::{CLOUDEVENTS_CONTENT_TYPE, cloud_event, headline, slack_message};

/// Prefix of the CloudEvents `type` of every notification.
pub const TYPE_PREFIX: &str = "io.mlrollout.modeldeployment.";

impl NotificationEvent {
    /// The announced transition an Event reason stands for, if any.
    pub fn from_reason(reason: EventReason) -> Option<NotificationEvent> {
        Some(match reason {
            EventReason::RetrainingStarted => NotificationEvent::RetrainingStarted,
            EventReason::EvaluationFailed | EventReason::CandidateNotRegistered => {
                NotificationEvent::CandidateRejected
            }
            EventReason::ShadowStarted => NotificationEvent::ShadowStarted,
            EventReason::StepStarted => NotificationEvent::StepStarted,
            EventReason::Promoted => NotificationEvent::Promoted,
            EventReason::RolledBack => NotificationEvent::RolledBack,
            EventReason::Paused | EventReason::AnalysisInconclusive => NotificationEvent::Paused,
            EventReason::DriftSeverityChanged => NotificationEvent::DriftSeverityChanged,
            _ => return None,
        })
    }

    /// CloudEvents `type`, e.g. `io.mlrollout.modeldeployment.rolledBack`.
    pub fn cloud_event_type(self) -> String {
        format!("{TYPE_PREFIX}{}", self.as_str())
    }
}

/// One announced transition of one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub event: NotificationEvent,
    /// Deterministic (resource uid, transition, time): every retry of a delivery, and every
    /// sink, carries the same id, so a receiver can drop duplicates.
    pub id: String,
    pub time: Timestamp,
    /// `/apis/mlrollout.io/v1alpha1/namespaces/<ns>/modeldeployments/<name>`.
    pub source: String,
    pub data: NotificationData,
}

/// What a notification says (the CloudEvents `data`; the Slack message is written from it).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationData {
    pub event: NotificationEvent,
    /// Reason of the Kubernetes Event of the same transition.
    pub reason: EventReason,
    /// The Event is a Warning.
    pub warning: bool,
    pub message: String,
    pub namespace: String,
    pub name: String,
    /// MLflow registered model.
    pub model: String,
    pub phase: Phase,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stable_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_version: Option<String>,
    /// The stable version before a promotion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    /// Why a rollout ended (rollbacks, rejections).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout_reason: Option<RolloutReason>,
    /// Canary step, counted from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_weight: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror_percent: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<AttemptInfo>,
    /// The measurement that decided (a failed analysis metric, the evaluation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measurement: Option<Measurement>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<PauseReason>,
    /// A command that shows the resource.
    pub inspect: String,
}

/// The retraining attempt a transition is about.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptInfo {
    pub number: i64,
    pub trigger: Trigger,
    pub job_name: String,
}

/// A measurement that decided a transition.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    pub metric: String,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate: Option<f64>,
    /// Stable's value (analysis) or the champion's (evaluation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<String>,
    /// Query error, or the evaluation's reasoning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A drift severity change.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftChange {
    /// Severity before (absent at the first check).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Severity>,
    pub to: Severity,
    pub drifted_share: f64,
}

/// One reconcile's decision, as far as notifications care.
#[derive(Debug, Clone)]
pub struct NotifyInput<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    /// MLflow registered model.
    pub model: &'a str,
    pub before: &'a ModelDeploymentStatus,
    pub after: &'a ModelDeploymentStatus,
    /// The Events the decision emits.
    pub events: &'a [EventIntent],
    /// The analysis round taken in this reconcile, if any.
    pub measurements: Option<&'a [MetricMeasurement]>,
    pub now: Timestamp,
}

/// The notifications of one decision, in the order of its Events.
pub fn notifications(input: &NotifyInput<'_>) -> Vec<Notification> {
    input
        .events
        .iter()
        .enumerate()
        .filter_map(|(index, intent)| {
            let EventCause::Lifecycle(reason) = intent.reason else {
                return None;
            };
            let event = NotificationEvent::from_reason(reason)?;
            Some(Notification {
                event,
                id: notification_id(input, index, event, &intent.note),
                time: input.now,
                source: source(input.namespace, input.name),
                data: data(input, event, reason, intent),
            })
        })
        .collect()
}

/// The resource as a CloudEvents `source`.
pub fn source(namespace: &str, name: &str) -> String {
    format!("/apis/mlrollout.io/v1alpha1/namespaces/{namespace}/modeldeployments/{name}")
}

/// `kubectl describe` of the resource.
pub fn inspect_command(namespace: &str, name: &str) -> String {
    format!("kubectl describe mdep {name} -n {namespace}")
}

fn notification_id(
    input: &NotifyInput<'_>,
    index: usize,
    event: NotificationEvent,
    note: &str,
) -> String {
    let key = format!(
        "{}\0{}\0{}\0{index}\0{note}",
        input.uid,
        event.as_str(),
        input.now
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    hex(&digest.as_ref()[..16])
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn data(
    input: &NotifyInput<'_>,
    event: NotificationEvent,
    reason: EventReason,
    intent: &EventIntent,
) -> NotificationData {
    let (before, after) = (input.before, input.after);
    let rollout_ended = after.history.len() != before.history.len()
        || after.history.last() != before.history.last();
    let ended = after.history.last().filter(|_| rollout_ended);
    let mut data = NotificationData {
        event,
        reason,
        warning: intent.warning,
        message: intent.note.clone(),
        namespace: input.namespace.to_owned(),
        name: input.name.to_owned(),
        model: input.model.to_owned(),
        phase: after.phase,
        stable_version: after.stable_version.clone(),
        candidate_version: after
            .candidate_version
            .clone()
            .or_else(|| before.candidate_version.clone()),
        previous_version: None,
        rollout_reason: None,
        step: None,
        canary_weight: None,
        mirror_percent: None,
        attempt: None,
        measurement: None,
        drift: None,
        pause_reason: None,
        inspect: inspect_command(input.namespace, input.name),
    };
    match event {
        NotificationEvent::RetrainingStarted => {
            data.candidate_version = None;
            data.attempt = after.retraining_attempts.last().map(|a| AttemptInfo {
                number: a.number,
                trigger: a.trigger,
                job_name: a.job_name.clone(),
            });
        }
        NotificationEvent::CandidateRejected => {
            data.rollout_reason = ended.map(|h| h.reason);
            data.measurement = (reason == EventReason::EvaluationFailed)
                .then(|| evaluation_measurement(after))
                .flatten();
        }
        NotificationEvent::ShadowStarted => data.mirror_percent = Some(after.mirror_percent),
        NotificationEvent::StepStarted => {
            data.step = after.current_step.map(|s| s + 1);
            data.canary_weight = Some(after.canary_weight);
        }
        NotificationEvent::Promoted => {
            data.previous_version = before.stable_version.clone();
        }
        NotificationEvent::RolledBack => {
            data.rollout_reason = ended.map(|h| h.reason);
            data.measurement = deciding_measurement(input);
        }
        NotificationEvent::Paused => {
            data.pause_reason = after.pause_reason;
            data.step = after.current_step.map(|s| s + 1);
            data.canary_weight = Some(after.canary_weight);
            if after.pause_reason == Some(PauseReason::InconclusiveAnalysis) {
                data.measurement = deciding_measurement(input);
            }
        }
        NotificationEvent::DriftSeverityChanged => {
            data.candidate_version = after.candidate_version.clone();
            data.drift = after.drift.as_ref().map(|d| DriftChange {
                from: before.drift.as_ref().map(|b| b.severity),
                to: d.severity,
                drifted_share: d.drifted_share,
            });
        }
    }
    data
}

fn evaluation_measurement(status: &ModelDeploymentStatus) -> Option<Measurement> {
    let e = status.evaluation.as_ref()?;
    Some(Measurement {
        metric: e.metric.clone(),
        verdict: if e.passed {
            Verdict::Passed
        } else {
            Verdict::Failed
        },
        candidate: e.candidate_value,
        baseline: e.champion_value,
        threshold: None,
        detail: Some(e.reason.clone()),
    })
}

/// Rank of a verdict as the reason a phase ended: a failure before an error before missing
/// data; a pass never decides.
fn rank(verdict: Verdict) -> Option<u8> {
    match verdict {
        Verdict::Failed => Some(0),
        Verdict::Error => Some(1),
        Verdict::Inconclusive => Some(2),
        Verdict::Passed => None,
    }
}

/// The measurement that ended a phase: from this reconcile's round, else the last recorded
/// one (the phase's analysis, before the transition cleared it).
fn deciding_measurement(input: &NotifyInput<'_>) -> Option<Measurement> {
    let from_round = input.measurements.and_then(|round| {
        round
            .iter()
            .filter_map(|m| rank(m.verdict).map(|r| (r, m)))
            .min_by_key(|(r, _)| *r)
            .map(|(_, m)| Measurement {
                metric: m.name.clone(),
                verdict: m.verdict,
                candidate: m.candidate,
                baseline: m.stable,
                threshold: Some(m.threshold.clone()).filter(|t| !t.is_empty()),
                detail: m.error.clone(),
            })
    });
    from_round.or_else(|| {
        let analysis = input.before.analysis.as_ref()?;
        analysis
            .metrics
            .iter()
            .filter_map(|m| m.recent.last().map(|last| (m.name.as_str(), last)))
            .filter_map(|(name, last)| rank(last.verdict).map(|r| (r, name, last)))
            .min_by_key(|(r, _, _)| *r)
            .map(|(_, name, last)| recorded(name, last))
    })
}

fn recorded(metric: &str, record: &MeasurementRecord) -> Measurement {
    Measurement {
        metric: metric.to_owned(),
        verdict: record.verdict,
        candidate: record.candidate,
        baseline: record.stable,
        threshold: Some(record.threshold.clone()).filter(|t| !t.is_empty()),
        detail: None,
    }
}

/// Where a resource's sinks come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkOrigin {
    /// `spec.notifications.sinks` (Secrets in the resource's namespace).
    Resource,
    /// The operator's default sinks (Secrets mounted into the operator).
    Defaults,
}

/// The sinks a resource's notifications go to: its own, else (unless it opts out) the
/// operator's defaults.
pub fn effective_sinks<'a>(
    spec: Option<&'a NotificationsSpec>,
    defaults: &'a [NotificationSink],
) -> (&'a [NotificationSink], SinkOrigin) {
    match spec {
        Some(own) if !own.sinks.is_empty() => (&own.sinks, SinkOrigin::Resource),
        Some(own) if !own.inherit_defaults => (&[], SinkOrigin::Defaults),
        _ => (defaults, SinkOrigin::Defaults),
    }
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// The receiver answered with this HTTP status.
    Status(u16),
    /// No answer: connection refused or reset, timeout, DNS.
    Transport,
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Delivered,
    /// A transient failure: try again after a backoff.
    Retry,
    /// A permanent failure (a 4xx other than 408 and 429, a redirect): retrying cannot help.
    GiveUp,
}

/// Judges one attempt: 2xx delivered; no answer, 408, 429 and 5xx retried; anything else
/// given up.
pub fn after_attempt(result: AttemptResult) -> NextStep {
    match result {
        AttemptResult::Status(code) if (200..300).contains(&code) => NextStep::Delivered,
        AttemptResult::Transport => NextStep::Retry,
        AttemptResult::Status(408 | 429) => NextStep::Retry,
        AttemptResult::Status(code) if code >= 500 => NextStep::Retry,
        AttemptResult::Status(_) => NextStep::GiveUp,
    }
}
