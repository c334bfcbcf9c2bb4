//! MLflow's registry webhooks (MLflow 3.3 and later), the pure part: is a delivery authentic
//! and fresh, and which registry change does it announce. No I/O; the clock is an argument.
//!
//! MLflow signs each delivery (`mlflow/webhooks/delivery.py`, following Standard Webhooks):
//! header `X-MLflow-Signature: v1,<base64 HMAC-SHA256>` over `<delivery id>.<timestamp>.<body>`
//! with the webhook's secret, `X-MLflow-Timestamp` (Unix seconds, signed too) and
//! `X-MLflow-Delivery-Id` (a UUID, the same on MLflow's retries of one delivery). The body is
//! `{"entity", "action", "timestamp", "data"}`.

use std::time::Duration;

use base64::Engine;
use ring::hmac;
use serde::Deserialize;

/// Header with the signature(s), `v1,<base64>` (several may be separated by spaces).
pub const SIGNATURE_HEADER: &str = "x-mlflow-signature";
/// Header with the Unix time in seconds at which MLflow signed the delivery.
pub const TIMESTAMP_HEADER: &str = "x-mlflow-timestamp";
/// Header with the id of the delivery (kept for replay detection).
pub const DELIVERY_ID_HEADER: &str = "x-mlflow-delivery-id";

/// The only signature scheme MLflow uses.
const SIGNATURE_VERSION: &str = "v1";
/// Longest delivery id accepted (MLflow's are 36-character UUIDs).
pub const MAX_DELIVERY_ID_LEN: usize = 128;
/// Most signatures looked at in one header (bounds the work an unauthenticated request costs).
const MAX_SIGNATURES: usize = 8;

/// The webhook's shared secret as an HMAC-SHA256 key.
pub fn key(secret: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret)
}

/// The three headers of a delivery, as received (`None`: absent or not visible ASCII).
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliveryHeaders<'a> {
    pub delivery_id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Why a delivery is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("header X-MLflow-Signature is missing (is a secret set on the MLflow webhook?)")]
    MissingSignature,
    #[error("no v1 signature in X-MLflow-Signature matches (wrong secret, or altered)")]
    BadSignature,
    #[error("header {0} is missing")]
    MissingHeader(&'static str),
    #[error("header X-MLflow-Delivery-Id is not a delivery id")]
    BadDeliveryId,
    #[error("header X-MLflow-Timestamp is not a Unix time in seconds")]
    BadTimestamp,
    #[error(
        "the delivery was signed {age_seconds} s ago, more than the {max_age_seconds} s accepted: stale or replayed"
    )]
    Stale {
        age_seconds: i64,
        max_age_seconds: u64,
    },
    #[error(
        "the delivery is dated {ahead_seconds} s in the future, more than the {max_age_seconds} s accepted"
    )]
    FromTheFuture {
        ahead_seconds: i64,
        max_age_seconds: u64,
    },
    #[error("the body is not an MLflow webhook payload: {0}")]
    Malformed(String),
}

/// What became of one delivery: the `outcome` label of
/// `mlrollout_registry_webhook_deliveries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Authentic, fresh, about a model some ModelDeployment follows: reconciles requested.
    Accepted,
    /// A delivery id already accepted (a replay, or MLflow retrying): acknowledged, nothing done.
    Duplicate,
    /// Authentic and fresh, but about nothing a ModelDeployment here follows.
    Unrelated,
    /// Signature missing or wrong.
    BadSignature,
    /// Signed too long ago (or too far in the future).
    Stale,
    /// Headers or body not what MLflow sends.
    Malformed,
    /// No controller runs in this process (a standby replica): MLflow retries.
    Unavailable,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Accepted,
        Outcome::Duplicate,
        Outcome::Unrelated,
        Outcome::BadSignature,
        Outcome::Stale,
        Outcome::Malformed,
        Outcome::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::Unrelated => "unrelated",
            Outcome::BadSignature => "bad_signature",
            Outcome::Stale => "stale",
            Outcome::Malformed => "malformed",
            Outcome::Unavailable => "unavailable",
        }
    }
}

impl Refusal {
    /// The outcome this refusal is counted as.
    pub fn outcome(&self) -> Outcome {
        match self {
            Refusal::MissingSignature | Refusal::BadSignature => Outcome::BadSignature,
            Refusal::Stale { .. } | Refusal::FromTheFuture { .. } => Outcome::Stale,
            Refusal::MissingHeader(_)
            | Refusal::BadDeliveryId
            | Refusal::BadTimestamp
            | Refusal::Malformed(_) => Outcome::Malformed,
        }
    }
}

/// An authentic, fresh delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentic<'a> {
    pub delivery_id: &'a str,
    /// When MLflow signed it (Unix seconds).
    pub timestamp: i64,
}

/// Checks a delivery: its headers are there, one of its signatures is the HMAC of
/// `<id>.<timestamp>.<body>` under `key` (compared in constant time by `ring`), and it was
/// signed within `max_age` of `now_unix` (either way: clocks differ). The body is not looked at
/// beyond the signature: nothing unauthenticated is parsed.
pub fn authenticate<'a>(
    key: &hmac::Key,
    headers: DeliveryHeaders<'a>,
    body: &[u8],
    now_unix: i64,
    max_age: Duration,
) -> Result<Authentic<'a>, Refusal> {
    let signature = headers.signature.ok_or(Refusal::MissingSignature)?;
    let delivery_id = headers
        .delivery_id
        .ok_or(Refusal::MissingHeader("X-MLflow-Delivery-Id"))?;
    let timestamp = headers
        .timestamp
        .ok_or(Refusal::MissingHeader("X-MLflow-Timestamp"))?;
    if delivery_id.is_empty()
        || delivery_id.len() > MAX_DELIVERY_ID_LEN
        || !delivery_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Refusal::BadDeliveryId);
    }
    if !signature_matches(key, signature, delivery_id, timestamp, body) {
        return Err(Refusal::BadSignature);
    }
    let signed_at: i64 = timestamp
        .parse()
        .ok()
        .filter(|t: &i64| timestamp.bytes().all(|b| b.is_ascii_digit()) && *t > 0)
        .ok_or(Refusal::BadTimestamp)?;
    check_age(signed_at, now_unix, max_age)?;
    Ok(Authentic {
        delivery_id,
        timestamp: signed_at,
    })
}

/// The signature MLflow sends for `body` (`v1,<base64>`): what a test or a client needs to
/// produce a valid delivery.
pub fn sign(key: &hmac::Key, delivery_id: &str, timestamp: &str, body: &[u8]) -> String {
    let tag = hmac::sign(key, &signed_content(delivery_id, timestamp, body));
    format!(
        "{SIGNATURE_VERSION},{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    )
}

fn signed_content(delivery_id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(delivery_id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(delivery_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// Whether any `v1,<base64>` entry of the header (space-separated, as Standard Webhooks allows
/// during a secret rotation) is the HMAC of the signed content.
fn signature_matches(
    key: &hmac::Key,
    header: &str,
    delivery_id: &str,
    timestamp: &str,
    body: &[u8],
) -> bool {
    let content = signed_content(delivery_id, timestamp, body);
    header
        .split_ascii_whitespace()
        .take(MAX_SIGNATURES)
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == SIGNATURE_VERSION)
        .filter_map(|(_, encoded)| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
        })
        .any(|tag| hmac::verify(key, &content, &tag).is_ok())
}

/// A delivery signed at `signed_at` is fresh at `now` if within `max_age` either way.
pub fn check_age(signed_at: i64, now: i64, max_age: Duration) -> Result<(), Refusal> {
    let max_age_seconds = max_age.as_secs();
    let limit = i64::try_from(max_age_seconds).unwrap_or(i64::MAX);
    let age = now.saturating_sub(signed_at);
    if age > limit {
        return Err(Refusal::Stale {
            age_seconds: age,
            max_age_seconds,
        });
    }
    if age < limit.saturating_neg() {
        return Err(Refusal::FromTheFuture {
            ahead_seconds: age.saturating_neg(),
            max_age_seconds,
        });
    }
    Ok(())
}

/// What changed in the registry, for the events that can matter to a ModelDeployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelChange {
    /// `model_version.created`: a new version (perhaps a retraining Job's candidate).
    VersionCreated { version: String },
    /// `model_version_tag.set` / `.deleted`: a version's tag (the lineage tag finds candidates).
    Tag { version: String, key: String },
    /// `model_version_alias.created` / `.deleted`: an alias moved (a hand-promoted champion).
    Alias { alias: String },
}

/// A registry event about one registered model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEvent {
    /// The registered model's name.
    pub model: String,
    pub change: ModelChange,
}

/// What a delivery announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Model(ModelEvent),
    /// Another kind of event (registered model created, prompts, budgets, ...): not acted on.
    Other {
        entity: String,
        action: String,
    },
}

#[derive(Deserialize)]
struct Envelope {
    entity: String,
    action: String,
    #[serde(default)]
    data: serde_json::Value,
}

#[derive(Deserialize)]
struct Data {
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default)]
    key: Option<String>,
}

/// Parses the body of an authenticated delivery.
pub fn parse_event(body: &[u8]) -> Result<Event, Refusal> {
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| Refusal::Malformed(e.to_string()))?;
    let kind = match (envelope.entity.as_str(), envelope.action.as_str()) {
        ("model_version", "created") => Kind::Version,
        ("model_version_tag", "set" | "deleted") => Kind::Tag,
        ("model_version_alias", "created" | "deleted") => Kind::Alias,
        _ => {
            return Ok(Event::Other {
                entity: clip(&envelope.entity),
                action: clip(&envelope.action),
            });
        }
    };
    let data: Data = serde_json::from_value(envelope.data)
        .map_err(|e| Refusal::Malformed(format!("data: {e}")))?;
    let missing = |field: &str| Refusal::Malformed(format!("data.{field} is missing"));
    let change = match kind {
        Kind::Version => ModelChange::VersionCreated {
            version: data.version.ok_or_else(|| missing("version"))?,
        },
        Kind::Tag => ModelChange::Tag {
            version: data.version.ok_or_else(|| missing("version"))?,
            key: data.key.ok_or_else(|| missing("key"))?,
        },
        Kind::Alias => ModelChange::Alias {
            alias: data.alias.ok_or_else(|| missing("alias"))?,
        },
    };
    if data.name.is_empty() {
        return Err(missing("name"));
    }
    Ok(Event::Model(ModelEvent {
        model: data.name,
        change,
    }))
}

enum Kind {
    Version,
    Tag,
    Alias,
}

/// At most 64 characters of a value that reaches logs.
fn clip(value: &str) -> String {
    value.chars().take(64).collect()
}

impl ModelEvent {
    /// Whether a ModelDeployment following `source` should look again: the same registered
    /// model, and for an alias event the alias it follows (aliases it does not follow, such as
    /// the `challenger` and `previous` mlrollout sets itself, change nothing it serves).
    pub fn concerns(&self, source: &crate::api::ModelSource) -> bool {
        source.name == self.model
            && match &self.change {
                ModelChange::Alias { alias } => *alias == source.alias,
                ModelChange::VersionCreated { .. } | ModelChange::Tag { .. } => true,
            }
    }
}

impl std::fmt::Display for ModelEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let model = clip(&self.model);
        match &self.change {
            ModelChange::VersionCreated { version } => {
                write!(f, "version {} of {model:?} created", clip(version))
            }
            ModelChange::Tag { version, key } => {
                write!(
                    f,
                    "tag {:?} of {model:?} version {} changed",
                    clip(key),
                    clip(version)
                )
            }
            ModelChange::Alias { alias } => write!(f, "alias {:?} of {model:?} moved", clip(alias)),
        }
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Model(event) => event.fmt(f),
            Event::Other { entity, action } => write!(f, "event {entity}.{action}"),
        }
    }
}

#[cfg(test)]
#[path = "mlflow_tests.rs"]
mod tests;
