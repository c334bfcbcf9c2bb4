//! The documents sent: CloudEvents 1.0 JSON (structured mode) and Slack messages.

use serde_json::{Value, json};

use super::{Measurement, Notification, NotificationData};
use crate::api::NotificationEvent;

/// Content type of a structured-mode CloudEvent in JSON.
pub const CLOUDEVENTS_CONTENT_TYPE: &str = "application/cloudevents+json";

/// The notification as a CloudEvents 1.0 JSON document.
pub fn cloud_event(n: &Notification) -> Value {
    json!({
        "specversion": "1.0",
        "id": n.id,
        "source": n.source,
        "type": n.event.cloud_event_type(),
        "subject": n.data.name,
        "time": n.time.to_string(),
        "datacontenttype": "application/json",
        "data": n.data,
    })
}

/// One line saying what happened, e.g. `fraud-detector: version 4 rolled back (AnalysisFailed)`.
pub fn headline(n: &Notification) -> String {
    let d = &n.data;
    let model = &d.model;
    let candidate = d.candidate_version.as_deref().unwrap_or("?");
    let what = match n.event {
        NotificationEvent::RetrainingStarted => match &d.attempt {
            Some(a) => format!(
                "retraining started (attempt {}, trigger {})",
                a.number, a.trigger
            ),
            None => "retraining started".to_owned(),
        },
        NotificationEvent::CandidateRejected => match &d.candidate_version {
            Some(v) => format!("candidate version {v} rejected"),
            None => "the retraining produced no candidate".to_owned(),
        },
        NotificationEvent::ShadowStarted => format!(
            "shadow started: version {candidate} gets {}% mirrored traffic",
            d.mirror_percent.unwrap_or(0)
        ),
        NotificationEvent::StepStarted => format!(
            "canary step {}: {}% of traffic on version {candidate}",
            d.step.unwrap_or(1),
            d.canary_weight.unwrap_or(0)
        ),
        NotificationEvent::Promoted => format!("version {candidate} promoted"),
        NotificationEvent::RolledBack => match d.rollout_reason {
            Some(reason) => format!("version {candidate} rolled back ({reason})"),
            None => format!("version {candidate} rolled back"),
        },
        NotificationEvent::Paused => "rollout paused for a person".to_owned(),
        NotificationEvent::DriftSeverityChanged => match &d.drift {
            Some(drift) => format!(
                "drift severity {} -> {}",
                drift.from.map_or("unknown", |s| s.as_str()),
                drift.to
            ),
            None => "drift severity changed".to_owned(),
        },
    };
    format!("{model}: {what}")
}

fn icon(n: &Notification) -> &'static str {
    match n.event {
        NotificationEvent::Promoted => ":white_check_mark:",
        NotificationEvent::RolledBack | NotificationEvent::CandidateRejected => ":x:",
        NotificationEvent::Paused => ":double_vertical_bar:",
        NotificationEvent::DriftSeverityChanged if n.data.warning => ":warning:",
        _ => ":information_source:",
    }
}

/// Escapes text for Slack's mrkdwn (`&`, `<`, `>`).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `max` characters of `text`.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn number(value: Option<f64>) -> String {
    value.map_or_else(|| "no data".to_owned(), |v| format!("{v:.4}"))
}

/// The deciding measurement in one line.
pub(super) fn describe_measurement(m: &Measurement) -> String {
    let mut line = format!(
        "`{}` {}: candidate {} vs baseline {}",
        escape(&m.metric),
        m.verdict,
        number(m.candidate),
        number(m.baseline)
    );
    if let Some(threshold) = &m.threshold {
        line.push_str(&format!(" (threshold {})", escape(threshold)));
    }
    if let Some(detail) = &m.detail {
        line.push_str(&format!(" — {}", escape(detail)));
    }
    line
}

fn fields(d: &NotificationData) -> Vec<Value> {
    let mut fields = vec![
        ("Model", d.model.clone()),
        ("Resource", format!("{}/{}", d.namespace, d.name)),
        ("Phase", d.phase.as_str().to_owned()),
    ];
    let optional = [
        ("Stable", d.stable_version.clone()),
        ("Candidate", d.candidate_version.clone()),
        ("Previous", d.previous_version.clone()),
        ("Reason", d.rollout_reason.map(|r| r.to_string())),
        ("Pause reason", d.pause_reason.map(|r| r.to_string())),
    ];
    fields.extend(
        optional
            .into_iter()
            .filter_map(|(title, value)| value.map(|v| (title, v))),
    );
    fields
        .into_iter()
        .take(10)
        .map(|(title, value)| json!({"type": "mrkdwn", "text": format!("*{title}*\n{}", escape(&value))}))
        .collect()
}

/// The notification as a Slack incoming-webhook message: a plain `text` (notifications,
/// clients without blocks) and blocks with the model, versions, reason, the failing
/// measurement and a `kubectl` line.
pub fn slack_message(n: &Notification) -> Value {
    let d = &n.data;
    let headline = headline(n);
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": clip(&headline, 150)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&escape(&d.message), 2900)}}),
        json!({"type": "section", "fields": fields(d)}),
    ];
    if let Some(m) = &d.measurement {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": clip(&format!("*Measurement*: {}", describe_measurement(m)), 2900)}}));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
        "text": format!("Inspect: `{}`", escape(&d.inspect))}]}));
    json!({
        "text": format!("{} {} — {}", icon(n), escape(&headline), d.inspect),
        "blocks": blocks,
    })
}
