//! `spec.notifications`: where the lifecycle's transitions are announced (a generic webhook
//! receiving CloudEvents, Slack incoming webhooks), and which of them.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::model::SecretKeyReference;
use super::vocabulary::status_word;

/// Where the lifecycle's transitions go. Without sinks of its own, a resource uses the
/// operator's default sinks (`--default-notifications`, Helm value
/// `notifications.defaultSinks`) unless `inheritDefaults` is false; with sinks of its own,
/// the defaults never apply.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NotificationsSpec {
    /// Sinks of this resource, by unique name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub sinks: Vec<NotificationSink>,
    /// With no sinks of its own, use the operator's default sinks (`true`) or send nothing
    /// (`false`).
    #[serde(default = "default_true")]
    pub inherit_defaults: bool,
}

impl Default for NotificationsSpec {
    fn default() -> Self {
        Self {
            sinks: Vec::new(),
            inherit_defaults: true,
        }
    }
}

/// One destination of notifications: exactly one of `webhook` and `slack`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.webhook) != has(self.slack)")
    .message("a notification sink needs exactly one of webhook and slack"))]
pub struct NotificationSink {
    /// Name of the sink (unique in the list; it labels the delivery logs).
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// A generic webhook: each transition is POSTed as a CloudEvents 1.0 JSON document
    /// (structured mode), signed with HMAC-SHA256 when `secretRef` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSink>,
    /// A Slack incoming webhook: a readable message per transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackSink>,
    /// Transitions sent to this sink; empty or absent: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub events: Vec<NotificationEvent>,
}

impl NotificationSink {
    /// Whether this sink wants `event`.
    pub fn wants(&self, event: NotificationEvent) -> bool {
        self.events.is_empty() || self.events.contains(&event)
    }

    /// `webhook` or `slack` (the metric label).
    pub fn kind(&self) -> SinkKind {
        if self.slack.is_some() {
            SinkKind::Slack
        } else {
            SinkKind::Webhook
        }
    }
}

/// A generic webhook receiving CloudEvents.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSink {
    /// URL the events are POSTed to (`http` or `https`; redirects are not followed).
    #[schemars(pattern(r"^https?://[^\s]+$"), length(max = 2048))]
    pub url: String,
    /// Secret key holding the HMAC-SHA256 key: each request then carries
    /// `X-Mlrollout-Signature: sha256=<hex of HMAC(key, body)>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyReference>,
}

/// A Slack incoming webhook (its URL is a credential, so it is read from a Secret).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SlackSink {
    /// Secret key holding the incoming-webhook URL (`https://hooks.slack.com/services/...`).
    pub url_secret_ref: SecretKeyReference,
}

status_word! {
    /// A lifecycle transition that is announced.
    "camelCase", pub enum NotificationEvent {
        /// A retraining Job was started.
        RetrainingStarted,
        /// A candidate failed its evaluation, or the Job registered none.
        CandidateRejected,
        /// The candidate receives mirrored traffic.
        ShadowStarted,
        /// A canary step started (a new share of traffic on the candidate).
        StepStarted,
        /// The candidate became stable.
        Promoted,
        /// Traffic went back to stable.
        RolledBack,
        /// The rollout waits for a person (inconclusive analysis, or a pause annotation).
        Paused,
        /// The drift severity changed.
        DriftSeverityChanged,
    }
}

status_word! {
    /// Kind of a notification sink.
    "camelCase", pub enum SinkKind { Webhook, Slack }
}

fn default_true() -> bool {
    true
}
