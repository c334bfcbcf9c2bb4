//! Notifications out, the shell: a background dispatcher that signs, sends and retries what
//! [`crate::core::notify`] decided. Reconciles only put deliveries on a bounded queue
//! ([`Notifier::announce`] never waits): a slow or dead receiver costs a queue slot, never a
//! reconcile. A full queue drops the delivery and counts it.
//!
//! Every delivery is counted in `mlrollout_notifications_total{sink, event, outcome}`:
//! `delivered`, `retried` (one per retry), `failed` (given up) or `dropped` (queue full).

mod send;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};

use crate::api::{NotificationSink, NotificationsSpec};
use crate::core::notify::{Notification, SinkOrigin, effective_sinks};
use crate::metrics::Metrics;
use crate::retry::RetryPolicy;

pub use send::{SIGNATURE_HEADER, sign};

/// How deliveries are queued, sent and retried, and the operator's default sinks.
#[derive(Debug, Clone)]
pub struct NotifierSettings {
    /// Sinks of resources that name none (and do not opt out).
    pub defaults: Vec<NotificationSink>,
    /// Where the Secrets of the default sinks are mounted: key `k` of Secret `s` is the file
    /// `<dir>/<s>/<k>`.
    pub secrets_dir: Option<PathBuf>,
    /// Deliveries waiting to be sent; past it, new ones are dropped (and counted).
    pub queue: usize,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Attempts per delivery and the backoff between them.
    pub retry: RetryPolicy,
    /// A delivery is given up when its next retry would start later than this after the first.
    pub deadline: Duration,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl Default for NotifierSettings {
    /// 8 attempts 1 s, 2 s, ... apart (at most 60 s), given up after 15 minutes; 10 s per
    /// request; 1,000 queued, 8 in flight.
    fn default() -> Self {
        Self {
            defaults: Vec::new(),
            secrets_dir: None,
            queue: 1000,
            concurrency: 8,
            retry: RetryPolicy {
                attempts: 8,
                base: Duration::from_secs(1),
                max: Duration::from_secs(60),
            },
            deadline: Duration::from_secs(15 * 60),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why the notifier could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot build the HTTP client of notifications: {0}")]
    Client(String),
}

/// Reads a list of sinks written as in `spec.notifications.sinks` (JSON or YAML), checked as
/// the CRD would check them: names unique, exactly one of `webhook` and `slack`, `http(s)` URLs.
pub fn parse_sinks(text: &str) -> Result<Vec<NotificationSink>, String> {
    let sinks: Vec<NotificationSink> = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let mut names = std::collections::BTreeSet::new();
    for sink in &sinks {
        if sink.name.is_empty() || !names.insert(sink.name.as_str()) {
            return Err(format!("sink name {:?} is empty or not unique", sink.name));
        }
        match (&sink.webhook, &sink.slack) {
            (Some(webhook), None) => {
                let scheme = webhook.url.split("://").next().unwrap_or_default();
                if !matches!(scheme, "http" | "https") || !webhook.url.contains("://") {
                    return Err(format!(
                        "sink {:?}: webhook.url must be an http(s) URL",
                        sink.name
                    ));
                }
            }
            (None, Some(_)) => {}
            _ => {
                return Err(format!(
                    "sink {:?} needs exactly one of webhook and slack",
                    sink.name
                ));
            }
        }
    }
    Ok(sinks)
}

/// Where a delivery's Secrets are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecretSource {
    /// The resource's namespace, through the API server.
    Namespace(String),
    /// The directory the default sinks' Secrets are mounted in.
    Directory(Option<PathBuf>),
}

/// One notification for one sink.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub notification: Arc<Notification>,
    pub sink: NotificationSink,
    pub secrets: SecretSource,
}

/// Outcome label of `mlrollout_notifications_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Retried,
    Failed,
    Dropped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retried => "retried",
            Outcome::Failed => "failed",
            Outcome::Dropped => "dropped",
        }
    }
}

/// Handle of the dispatcher: cheap to clone; the dispatcher stops once every handle is gone
/// and the queue is drained.
#[derive(Clone)]
pub struct Notifier {
    queue: mpsc::Sender<Delivery>,
    defaults: Arc<Vec<NotificationSink>>,
    secrets_dir: Option<PathBuf>,
    metrics: Metrics,
}

impl Notifier {
    /// Starts the dispatcher (a tokio task; call from within the runtime). `client` reads the
    /// Secrets of resources' sinks.
    pub fn start(
        client: kube::Client,
        metrics: Metrics,
        settings: NotifierSettings,
    ) -> Result<Notifier, NotifyError> {
        crate::cli::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mlrollout/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::Client(e.to_string()))?;
        let (queue, receiver) = mpsc::channel(settings.queue.max(1));
        let notifier = Notifier {
            queue,
            defaults: Arc::new(settings.defaults.clone()),
            secrets_dir: settings.secrets_dir.clone(),
            metrics: metrics.clone(),
        };
        let sender = send::Sender {
            http,
            client,
            metrics,
            settings,
        };
        tokio::spawn(dispatch(receiver, Arc::new(sender)));
        Ok(notifier)
    }

    /// Queues `notifications` of a resource in `namespace` for each of its sinks that wants
    /// them. Never waits: with the queue full, a delivery is dropped and counted.
    pub fn announce(
        &self,
        spec: Option<&NotificationsSpec>,
        namespace: &str,
        notifications: Vec<Notification>,
    ) {
        if notifications.is_empty() {
            return;
        }
        let (sinks, origin) = effective_sinks(spec, &self.defaults);
        let secrets = match origin {
            SinkOrigin::Resource => SecretSource::Namespace(namespace.to_owned()),
            SinkOrigin::Defaults => SecretSource::Directory(self.secrets_dir.clone()),
        };
        for notification in notifications.into_iter().map(Arc::new) {
            for sink in sinks.iter().filter(|s| s.wants(notification.event)) {
                let delivery = Delivery {
                    notification: notification.clone(),
                    sink: sink.clone(),
                    secrets: secrets.clone(),
                };
                if let Err(error) = self.queue.try_send(delivery) {
                    let why = match error {
                        mpsc::error::TrySendError::Full(_) => "the queue is full",
                        mpsc::error::TrySendError::Closed(_) => "the dispatcher stopped",
                    };
                    tracing::warn!(
                        sink = %sink.name,
                        event = notification.event.as_str(),
                        id = %notification.id,
                        "notification dropped: {why}"
                    );
                    self.metrics.observe_notification(
                        sink.kind().as_str(),
                        notification.event.as_str(),
                        Outcome::Dropped.as_str(),
                    );
                }
            }
        }
    }
}

/// Takes deliveries off the queue and sends each in its own task, at most
/// `settings.concurrency` at once.
async fn dispatch(mut receiver: mpsc::Receiver<Delivery>, sender: Arc<send::Sender>) {
    let permits = Arc::new(Semaphore::new(sender.settings.concurrency.max(1)));
    while let Some(delivery) = receiver.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let sender = sender.clone();
        tokio::spawn(async move {
            sender.deliver(delivery).await;
            drop(permit);
        });
    }
}
