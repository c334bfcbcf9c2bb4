//! One delivery: the Secrets it needs, the request, the retries.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::{Delivery, NotifierSettings, Outcome, SecretSource};
use crate::api::SecretKeyReference;
use crate::core::notify::{
    AttemptResult, CLOUDEVENTS_CONTENT_TYPE, NextStep, after_attempt, cloud_event, hex,
    slack_message,
};
use crate::metrics::Metrics;

/// Header with the HMAC-SHA256 of the body: `sha256=<lowercase hex>`.
pub const SIGNATURE_HEADER: &str = "X-Mlrollout-Signature";

/// The signature header's value for `body` under `key`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    format!("sha256={}", hex(ring::hmac::sign(&key, body).as_ref()))
}

/// Sends deliveries (shared by the dispatcher's tasks).
pub(super) struct Sender {
    pub http: reqwest::Client,
    pub client: kube::Client,
    pub metrics: Metrics,
    pub settings: NotifierSettings,
}

/// Why an attempt could not be made or was not accepted.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("Secret {name:?} not found in {place}")]
    SecretNotFound { name: String, place: String },
    #[error("Secret {name:?} has no key {key:?}")]
    SecretKeyMissing { name: String, key: String },
    #[error("reading Secret {name:?}: {message}")]
    SecretUnreadable { name: String, message: String },
    #[error("no --notification-secrets-dir: the default sink's Secret {0:?} cannot be read")]
    NoSecretsDir(String),
    #[error("the URL is refused: {0}")]
    RefusedUrl(String),
    #[error("{0}")]
    Transport(String),
    #[error("the receiver answered {0}")]
    Status(u16, Option<Duration>),
}

impl AttemptError {
    fn next_step(&self) -> NextStep {
        match self {
            AttemptError::SecretUnreadable { .. } => NextStep::Retry,
            AttemptError::Transport(_) => after_attempt(AttemptResult::Transport),
            AttemptError::Status(code, _) => after_attempt(AttemptResult::Status(*code)),
            _ => NextStep::GiveUp,
        }
    }

    /// The wait the receiver asked for (`Retry-After` seconds).
    fn retry_after(&self) -> Option<Duration> {
        match self {
            AttemptError::Status(_, after) => *after,
            _ => None,
        }
    }
}

impl Sender {
    fn count(&self, delivery: &Delivery, outcome: Outcome) {
        self.metrics.observe_notification(
            delivery.sink.kind().as_str(),
            delivery.notification.event.as_str(),
            outcome.as_str(),
        );
    }

    /// Sends `delivery`, retrying transient failures with backoff until the attempts or the
    /// deadline run out.
    pub(super) async fn deliver(&self, delivery: Delivery) {
        let started = Instant::now();
        let mut delays = self.settings.retry.delays();
        let mut attempt = 1u32;
        loop {
            let error = match self.attempt(&delivery).await {
                Ok(()) => {
                    self.count(&delivery, Outcome::Delivered);
                    tracing::debug!(sink = %delivery.sink.name, id = %delivery.notification.id, attempt, "notification delivered");
                    return;
                }
                Err(error) => error,
            };
            let wait = match error.next_step() {
                NextStep::Retry => delays
                    .next()
                    .map(|d| d.max(error.retry_after().unwrap_or_default()))
                    .filter(|d| started.elapsed() + *d <= self.settings.deadline),
                NextStep::Delivered | NextStep::GiveUp => None,
            };
            let Some(wait) = wait else {
                self.count(&delivery, Outcome::Failed);
                tracing::warn!(
                    sink = %delivery.sink.name,
                    event = delivery.notification.event.as_str(),
                    id = %delivery.notification.id,
                    attempt,
                    %error,
                    "notification not delivered; giving up"
                );
                return;
            };
            self.count(&delivery, Outcome::Retried);
            tracing::debug!(sink = %delivery.sink.name, attempt, %error, retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "notification not delivered yet; retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One attempt: the sink's Secrets, the document, the request.
    async fn attempt(&self, delivery: &Delivery) -> Result<(), AttemptError> {
        let n = &delivery.notification;
        let (url, body, content_type, signature) =
            match (&delivery.sink.webhook, &delivery.sink.slack) {
                (Some(webhook), _) => {
                    let body = serde_json::to_vec(&cloud_event(n)).unwrap_or_default();
                    let signature = match &webhook.secret_ref {
                        Some(key) => {
                            let secret = self.secret(&delivery.secrets, key).await?;
                            Some(sign(secret.as_bytes(), &body))
                        }
                        None => None,
                    };
                    (
                        webhook.url.clone(),
                        body,
                        CLOUDEVENTS_CONTENT_TYPE,
                        signature,
                    )
                }
                (None, Some(slack)) => {
                    let url = self
                        .secret(&delivery.secrets, &slack.url_secret_ref)
                        .await?;
                    let body = serde_json::to_vec(&slack_message(n)).unwrap_or_default();
                    (url, body, "application/json", None)
                }
                (None, None) => {
                    return Err(AttemptError::RefusedUrl(
                        "the sink has no destination".into(),
                    ));
                }
            };
        let url = checked_url(&url)?;
        let mut request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(signature) = signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        let response = request
            .send()
            .await
            .map_err(|e| AttemptError::Transport(error_chain(&e)))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(600)));
        Err(AttemptError::Status(status, retry_after))
    }

    /// Key `key.key` of Secret `key.name`, trimmed.
    async fn secret(
        &self,
        source: &SecretSource,
        key: &SecretKeyReference,
    ) -> Result<String, AttemptError> {
        match source {
            SecretSource::Namespace(namespace) => {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
                let secret = api
                    .get_opt(&key.name)
                    .await
                    .map_err(|e| AttemptError::SecretUnreadable {
                        name: key.name.clone(),
                        message: e.to_string(),
                    })?
                    .ok_or_else(|| AttemptError::SecretNotFound {
                        name: key.name.clone(),
                        place: format!("namespace {namespace}"),
                    })?;
                secret
                    .data
                    .unwrap_or_default()
                    .get(&key.key)
                    .map(|v| String::from_utf8_lossy(&v.0).trim().to_owned())
                    .ok_or_else(|| AttemptError::SecretKeyMissing {
                        name: key.name.clone(),
                        key: key.key.clone(),
                    })
            }
            SecretSource::Directory(None) => Err(AttemptError::NoSecretsDir(key.name.clone())),
            SecretSource::Directory(Some(dir)) => read_mounted(dir, key),
        }
    }
}

/// Key `key` of a Secret mounted at `<dir>/<name>/` (the file is small; read in place).
fn read_mounted(dir: &std::path::Path, key: &SecretKeyReference) -> Result<String, AttemptError> {
    let plain = |s: &str| !s.is_empty() && !s.contains('/') && s != "." && s != "..";
    if !plain(&key.name) || !plain(&key.key) {
        return Err(AttemptError::SecretKeyMissing {
            name: key.name.clone(),
            key: key.key.clone(),
        });
    }
    let folder = dir.join(&key.name);
    if !folder.is_dir() {
        return Err(AttemptError::SecretNotFound {
            name: key.name.clone(),
            place: format!("{} (not mounted)", dir.display()),
        });
    }
    std::fs::read(folder.join(&key.key))
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .map_err(|_| AttemptError::SecretKeyMissing {
            name: key.name.clone(),
            key: key.key.clone(),
        })
}

/// The URL, unless it is not `http(s)` or names a link-local or unspecified address (cloud
/// metadata endpoints live there).
fn checked_url(text: &str) -> Result<reqwest::Url, AttemptError> {
    let url = reqwest::Url::parse(text).map_err(|e| AttemptError::RefusedUrl(format!("{e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(AttemptError::RefusedUrl(format!(
            "scheme {:?} (http or https only)",
            url.scheme()
        )));
    }
    let refused = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_link_local() || ip.is_unspecified() || ip.is_broadcast(),
        Some(url::Host::Ipv6(ip)) => ip.is_unspecified() || (ip.segments()[0] & 0xffc0) == 0xfe80,
        Some(url::Host::Domain(_)) => false,
        None => true,
    };
    if refused {
        return Err(AttemptError::RefusedUrl(format!(
            "host {:?} is a link-local or unspecified address",
            url.host_str().unwrap_or_default()
        )));
    }
    Ok(url)
}

/// An error and its causes in one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod unit {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_sha256_of_the_body_in_hex() {
        // RFC 4231 test case 2.
        let sig = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(sign(b"Jefe", b"what do ya want for nothing!"), sig);
    }

    #[test]
    fn metadata_and_odd_schemes_are_refused() {
        for bad in [
            "http://169.254.169.254/latest/meta-data",
            "http://0.0.0.0:80/",
            "http://[fe80::1]/",
            "ftp://example.com/",
            "not a url",
        ] {
            assert!(checked_url(bad).is_err(), "{bad}");
        }
        for good in [
            "https://hooks.slack.com/services/x",
            "http://127.0.0.1:8080/ce",
        ] {
            assert!(checked_url(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn mounted_secrets_are_read_by_name_and_key_and_paths_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("notify")).unwrap();
        std::fs::write(dir.path().join("notify/hmac"), "s3cret\n").unwrap();
        let key = |name: &str, key: &str| SecretKeyReference {
            name: name.into(),
            key: key.into(),
        };
        assert_eq!(
            read_mounted(dir.path(), &key("notify", "hmac")).unwrap(),
            "s3cret"
        );
        assert!(matches!(
            read_mounted(dir.path(), &key("notify", "other")),
            Err(AttemptError::SecretKeyMissing { .. })
        ));
        assert!(matches!(
            read_mounted(dir.path(), &key("absent", "hmac")),
            Err(AttemptError::SecretNotFound { .. })
        ));
        assert!(read_mounted(dir.path(), &key("..", "hmac")).is_err());
        assert!(read_mounted(dir.path(), &key("notify", "../notify/hmac")).is_err());
    }

    #[test]
    fn secret_errors_are_permanent_except_an_unreadable_api() {
        let unreadable = AttemptError::SecretUnreadable {
            name: "s".into(),
            message: "timeout".into(),
        };
        assert_eq!(unreadable.next_step(), NextStep::Retry);
        assert_eq!(
            AttemptError::NoSecretsDir("s".into()).next_step(),
            NextStep::GiveUp
        );
        assert_eq!(
            AttemptError::Status(429, Some(Duration::from_secs(3))).retry_after(),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            AttemptError::Status(404, None).next_step(),
            NextStep::GiveUp
        );
        assert_eq!(AttemptError::Status(503, None).next_step(), NextStep::Retry);
    }
}
