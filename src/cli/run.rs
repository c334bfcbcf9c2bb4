//! `mlrollout run`: the operator process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::advisor::anthropic::AnthropicAdvisor;
use crate::analysis::prometheus::PrometheusAnalyzer;
use crate::controller::{self, Context, WatchScope};
use crate::drift::check::EngineDriftCheck;
use crate::leader::{self, LeaderElection, LeaderError};
use crate::metrics::Metrics;
use crate::notify::{Notifier, NotifierSettings};
use crate::registry::mlflow::MlflowRegistry;
use crate::server::{self, Health};
use crate::telemetry::LogFormat;
use crate::webhooks::{self, WebhookConfig, WebhookReceiver};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Address of the /healthz, /readyz and /metrics endpoints.
    #[arg(long, env = "MLROLLOUT_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Watch only this namespace; repeat the flag (or separate with commas) for several
    /// (default: all namespaces).
    #[arg(
        long = "namespace",
        value_name = "NAMESPACE",
        env = "MLROLLOUT_NAMESPACE",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// Leader election: several replicas may run, only the holder of a Lease reconciles and
    /// writes; a replica that loses the Lease exits (non-zero) and is restarted as a standby.
    #[arg(long, env = "MLROLLOUT_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, env = "MLROLLOUT_LEASE_NAME", default_value = "mlrollout-leader")]
    pub lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace, env `POD_NAMESPACE`, else the
    /// kubeconfig's namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Identity of this replica in the Lease (default: env `POD_NAME`, else the host name).
    #[arg(long, env = "POD_NAME")]
    pub leader_identity: Option<String>,
    /// How long the Lease is valid after each renewal, in seconds.
    #[arg(long, env = "MLROLLOUT_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// The leader stops (and exits) when it could not renew the Lease for this long, in seconds;
    /// shorter than the Lease duration.
    #[arg(
        long,
        env = "MLROLLOUT_LEASE_RENEW_DEADLINE_SECONDS",
        default_value_t = 10
    )]
    pub lease_renew_deadline_seconds: u64,
    /// Interval between attempts to take or renew the Lease, in seconds.
    #[arg(
        long,
        env = "MLROLLOUT_LEASE_RETRY_PERIOD_SECONDS",
        default_value_t = 2
    )]
    pub lease_retry_period_seconds: u64,
    /// Log format.
    #[arg(long, env = "MLROLLOUT_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Default log level (`RUST_LOG` overrides it).
    #[arg(long, env = "MLROLLOUT_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Timeout of each MLflow request.
    #[arg(long, env = "MLROLLOUT_MLFLOW_TIMEOUT_SECONDS", default_value_t = 10)]
    pub mlflow_timeout_seconds: u64,
    /// Timeout of each Prometheus query.
    #[arg(
        long,
        env = "MLROLLOUT_PROMETHEUS_TIMEOUT_SECONDS",
        default_value_t = 10
    )]
    pub prometheus_timeout_seconds: u64,
    /// Most bytes read from one drift dataset (reference, current or labelled): a bigger file,
    /// HTTP body or artifact fails the check with `DataTooLarge` instead of exhausting the
    /// pod's memory. Sized for the chart's 512Mi limit.
    #[arg(
        long,
        env = "MLROLLOUT_DATA_MAX_BYTES",
        default_value = "128MiB",
        value_parser = super::args::positive_size
    )]
    pub data_max_bytes: u64,
    /// Most memory one drift check's datasets may take once read; larger data is streamed
    /// batch by batch (PSI and chi-square exact, KS from quantile sketches with its error
    /// bound in the report). Sized for the chart's 512Mi limit.
    #[arg(
        long,
        env = "MLROLLOUT_DATA_MEMORY_LIMIT",
        default_value = "256MiB",
        value_parser = super::args::positive_size
    )]
    pub data_memory_limit: u64,
    /// Longest wait for one drift dataset (connect and download); past it the check fails with
    /// `DataTimedOut` and is retried with backoff.
    #[arg(
        long,
        env = "MLROLLOUT_DATA_TIMEOUT",
        default_value = "120s",
        value_parser = super::args::positive_duration
    )]
    pub data_timeout: std::time::Duration,
    /// Image of the data-plane proxy injected into model-server pods, for resources that name
    /// none in `spec.serving.proxy.image`. The Helm chart sets the operator's own image, which
    /// holds `mlrollout proxy`.
    #[arg(long, env = "MLROLLOUT_PROXY_IMAGE", default_value = crate::api::proxy::DEFAULT_PROXY_IMAGE)]
    pub proxy_image: String,
    /// An `http(s)` host drift data may be read from: a name (`data.example.com`), `*.example.com`
    /// for its subdomains, or an address. Repeat for more. None: no `http(s)` data (MLflow
    /// artifacts of the resource's tracking server are always allowed). Loopback, link-local and
    /// metadata addresses are refused whatever is listed, also after DNS and redirects.
    #[arg(
        long = "data-allow-host",
        env = "MLROLLOUT_DATA_ALLOW_HOSTS",
        value_delimiter = ','
    )]
    pub data_allow_hosts: Vec<String>,
    /// An object-store bucket (S3 or GCS bucket, Azure container) drift data may be read from:
    /// a name, or `s3://name` for one kind of store only. Repeat for more. None: any bucket.
    /// The endpoint of an S3-compatible store (`spec.storage.endpoint`) is held to the same
    /// address rules as `http(s)` hosts.
    #[arg(
        long = "data-allow-bucket",
        env = "MLROLLOUT_DATA_ALLOW_BUCKETS",
        value_delimiter = ','
    )]
    pub data_allow_buckets: Vec<String>,
    /// A directory (a mounted data volume) under which plain paths and `file://` data may be
    /// read. Unset: no local files (they would be the operator pod's own files).
    #[arg(long, env = "MLROLLOUT_DATA_DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// File holding the secret of MLflow's registry webhook (the `secret` the webhook was
    /// created with). With it (or `--registry-webhook-secret`), `POST /webhooks/mlflow` is
    /// served on `--registry-webhook-addr`: a signed delivery about a model makes the
    /// ModelDeployments that follow it reconcile at once. Read once at start-up.
    #[arg(long, env = "MLROLLOUT_REGISTRY_WEBHOOK_SECRET_FILE")]
    pub registry_webhook_secret_file: Option<std::path::PathBuf>,
    /// The registry webhook's secret itself (prefer the file, or the environment variable from
    /// a Kubernetes Secret, to a command-line argument).
    #[arg(
        long,
        env = "MLROLLOUT_REGISTRY_WEBHOOK_SECRET",
        hide_env_values = true,
        conflicts_with = "registry_webhook_secret_file",
        value_parser = webhook_secret
    )]
    pub registry_webhook_secret: Option<WebhookSecret>,
    /// Address of the registry webhook endpoint (only served with a secret).
    #[arg(
        long,
        env = "MLROLLOUT_REGISTRY_WEBHOOK_ADDR",
        default_value = "0.0.0.0:8090"
    )]
    pub registry_webhook_addr: SocketAddr,
    /// How long after MLflow signed it a delivery is accepted (and how far ahead, for clock
    /// differences); an older one is refused as stale. Replays within it are recognised by
    /// their delivery id.
    #[arg(
        long,
        env = "MLROLLOUT_REGISTRY_WEBHOOK_MAX_AGE",
        default_value = "5m",
        value_parser = super::args::positive_duration
    )]
    pub registry_webhook_max_age: std::time::Duration,
    /// Notification sinks of resources that name none in `spec.notifications` (and do not opt
    /// out): a JSON (or YAML) list of sinks written as in the spec. Their Secrets are files
    /// under `--notification-secrets-dir`.
    #[arg(long, env = "MLROLLOUT_DEFAULT_NOTIFICATIONS")]
    pub default_notifications: Option<String>,
    /// Where the Secrets of the default sinks are mounted: key `k` of Secret `s` is the file
    /// `<dir>/<s>/<k>`.
    #[arg(long, env = "MLROLLOUT_NOTIFICATION_SECRETS_DIR")]
    pub notification_secrets_dir: Option<std::path::PathBuf>,
    /// Timeout of one notification request.
    #[arg(
        long,
        env = "MLROLLOUT_NOTIFICATION_TIMEOUT",
        default_value = "10s",
        value_parser = super::args::positive_duration
    )]
    pub notification_timeout: std::time::Duration,
    /// Attempts per notification delivery (retried with backoff on no answer, 408, 429, 5xx).
    #[arg(long, env = "MLROLLOUT_NOTIFICATION_ATTEMPTS", default_value_t = 8)]
    pub notification_attempts: u32,
    /// Notification deliveries waiting to be sent; past it new ones are dropped (counted in
    /// `mlrollout_notifications_total{outcome="dropped"}`).
    #[arg(long, env = "MLROLLOUT_NOTIFICATION_QUEUE", default_value_t = 1000)]
    pub notification_queue: usize,
}

/// A webhook secret given on the command line or in the environment; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(pub String);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

fn webhook_secret(text: &str) -> Result<WebhookSecret, String> {
    if text.trim().is_empty() {
        return Err("the secret is empty".into());
    }
    Ok(WebhookSecret(text.to_owned()))
}

/// Error starting the operator.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot load a Kubernetes configuration (kubeconfig or in-cluster): {0}")]
    Kubeconfig(#[from] kube::Error),
    #[error("cannot serve health and metrics endpoints: {0}")]
    Server(#[from] std::io::Error),
    #[error("cannot set up the operator: {0}")]
    Setup(String),
    #[error("leader election: {0}")]
    LeaderElection(#[from] LeaderError),
}

impl RunArgs {
    /// The data-source policy these flags describe.
    pub fn data_policy(&self) -> crate::drift::data::policy::DataSourcePolicy {
        crate::drift::data::policy::DataSourcePolicy::cluster(
            self.data_allow_hosts.clone(),
            self.data_dir.clone(),
        )
        .with_buckets(self.data_allow_buckets.clone())
    }

    /// The registry webhook endpoint's settings, `None` without a secret. A secret file is read
    /// here; surrounding whitespace (a trailing newline) is not part of the secret.
    pub fn registry_webhook(&self) -> Result<Option<WebhookConfig>, RunError> {
        let secret = match (
            &self.registry_webhook_secret,
            &self.registry_webhook_secret_file,
        ) {
            (Some(secret), _) => secret.0.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| {
                    RunError::Setup(format!(
                        "cannot read the registry webhook secret {}: {e}",
                        path.display()
                    ))
                })?
                .trim()
                .to_owned(),
            (None, None) => return Ok(None),
        };
        if secret.is_empty() {
            return Err(RunError::Setup(
                "the registry webhook secret is empty".into(),
            ));
        }
        Ok(Some(WebhookConfig {
            secret: secret.into_bytes(),
            max_age: self.registry_webhook_max_age,
        }))
    }

    /// The notifier's settings from the `--notification-*` flags and the default sinks.
    pub fn notifier_settings(&self) -> Result<NotifierSettings, RunError> {
        let defaults = match self.default_notifications.as_deref().map(str::trim) {
            None | Some("") => Vec::new(),
            Some(text) => crate::notify::parse_sinks(text)
                .map_err(|e| RunError::Setup(format!("--default-notifications: {e}")))?,
        };
        let standard = NotifierSettings::default();
        Ok(NotifierSettings {
            defaults,
            secrets_dir: self.notification_secrets_dir.clone(),
            queue: self.notification_queue.max(1),
            timeout: self.notification_timeout,
            retry: crate::retry::RetryPolicy {
                attempts: self.notification_attempts.max(1),
                ..standard.retry
            },
            ..standard
        })
    }

    /// The watch scope of `--namespace` (none: all namespaces).
    pub fn scope(&self) -> WatchScope {
        WatchScope::from_namespaces(self.namespaces.clone())
    }

    /// The leader election settings, `None` without `--leader-election`. `default_namespace` is
    /// the client's namespace, used when neither `--lease-namespace` nor `POD_NAMESPACE` is set.
    pub fn leader_election(
        &self,
        default_namespace: &str,
    ) -> Result<Option<LeaderElection>, LeaderError> {
        if !self.leader_election {
            return Ok(None);
        }
        let identity = self
            .leader_identity
            .clone()
            .filter(|i| !i.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| format!("mlrollout-{}", std::process::id()));
        let namespace = self
            .lease_namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| default_namespace.to_string());
        let election = LeaderElection {
            lease_duration: Duration::from_secs(self.lease_duration_seconds),
            renew_deadline: Duration::from_secs(self.lease_renew_deadline_seconds),
            retry_period: Duration::from_secs(self.lease_retry_period_seconds),
            ..LeaderElection::new(self.lease_name.clone(), namespace, identity)
        };
        election.validate()?;
        Ok(Some(election))
    }
}

pub async fn run(args: RunArgs) -> Result<(), RunError> {
    super::install_crypto_provider();
    let client = kube::Client::try_default().await?;
    let metrics = Metrics::default();
    let health = Health::new();
    let registry = Arc::new(MlflowRegistry::new(Duration::from_secs(
        args.mlflow_timeout_seconds,
    )));
    let analyzer = PrometheusAnalyzer::new(Duration::from_secs(args.prometheus_timeout_seconds))
        .map_err(|e| RunError::Setup(e.to_string()))?;
    let election = args.leader_election(client.default_namespace())?;
    let webhook = (args.registry_webhook()?).map(|c| (c, args.registry_webhook_addr));
    let triggers = crate::controller::triggers::Triggers::default();
    let scope = args.scope();
    let analyzer = Arc::new(analyzer);
    let controller_metrics = metrics.clone();
    let controller_triggers = triggers.clone();
    // The controller's context on `client` (with leader election: the fenced client, so that
    // its writes and events stop the moment this replica may no longer lead).
    let data_policy = args.data_policy();
    // One dispatcher for the process (it only reads Secrets; no fenced client needed).
    let notifier = Notifier::start(client.clone(), metrics.clone(), args.notifier_settings()?)
        .map_err(|e| RunError::Setup(e.to_string()))?;
    let context = move |client: kube::Client| {
        let mut context = Context::new(client, registry, controller_metrics);
        context.proxy_image.clone_from(&args.proxy_image);
        context
            .with_notifier(notifier)
            .with_analyzer(analyzer)
            .with_drift(Arc::new(
                EngineDriftCheck::with_limits(args.data_max_bytes, args.data_timeout)
                    .with_memory_limit(args.data_memory_limit)
                    .with_policy(data_policy.clone()),
            ))
            .with_advisor(Arc::new(AnthropicAdvisor::new()))
            .with_triggers(controller_triggers)
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested");
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let webhook_server =
        start_registry_webhook(webhook, triggers, metrics.clone(), stopped(stop_rx.clone()))
            .await?;
    let http = tokio::spawn(server::serve(
        args.metrics_addr,
        server::router(health.clone(), metrics),
        stopped(stop_rx.clone()),
    ));
    match election {
        None => controller::run(context(client), scope, health, stopped(stop_rx)).await,
        Some(election) => {
            tracing::info!(
                lease = %election.lease_name,
                namespace = %election.lease_namespace,
                identity = %election.identity,
                "leader election on: standing by for the lease"
            );
            let controller_health = health.clone();
            // A lost lease returns at once (the process exits non-zero and Kubernetes restarts
            // it as a standby); the metrics server is not drained.
            leader::run(
                client.clone(),
                election,
                health,
                stopped(stop_rx),
                move |stop| {
                    let ctx = context(stop.fence(client));
                    controller::run(ctx, scope, controller_health, stop)
                },
            )
            .await?;
        }
    }
    match http.await {
        Ok(result) => result?,
        Err(e) => tracing::warn!(error = %e, "metrics server task failed"),
    }
    join_registry_webhook(webhook_server).await
}

type ServerTask = tokio::task::JoinHandle<std::io::Result<()>>;

/// With a configuration, binds the registry webhook endpoint now (a taken port stops the
/// operator at start-up) and serves it until `shutdown`.
async fn start_registry_webhook(
    configured: Option<(WebhookConfig, SocketAddr)>,
    triggers: crate::controller::triggers::Triggers,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Option<ServerTask>, RunError> {
    let Some((config, addr)) = configured else {
        return Ok(None);
    };
    let listener = webhooks::bind(addr).await?;
    let receiver = WebhookReceiver::new(&config, triggers, metrics);
    Ok(Some(tokio::spawn(webhooks::serve(
        listener,
        webhooks::router(receiver),
        shutdown,
    ))))
}

/// Waits for the registry webhook endpoint (if any) to finish its graceful shutdown.
async fn join_registry_webhook(server: Option<ServerTask>) -> Result<(), RunError> {
    let Some(task) = server else {
        return Ok(());
    };
    match task.await {
        Ok(result) => Ok(result?),
        Err(e) => {
            tracing::warn!(error = %e, "registry webhook server task failed");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM (Kubernetes) or Ctrl-C.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> RunArgs {
        let argv = ["mlrollout", "run"].iter().chain(args).copied();
        match Cli::try_parse_from(argv).expect("arguments parse").command {
            Command::Run(args) => args,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn namespaces_repeat_and_none_means_all() {
        assert_eq!(parse(&[]).scope(), WatchScope::AllNamespaces);
        assert_eq!(
            parse(&["--namespace", "a"]).scope(),
            WatchScope::Namespace("a".into())
        );
        assert_eq!(
            parse(&["--namespace", "b", "--namespace", "a", "--namespace", "b"]).scope(),
            WatchScope::Namespaces(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            parse(&["--namespace", "a,b"]).scope(),
            WatchScope::Namespaces(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn the_registry_webhook_needs_a_secret_from_a_flag_or_a_file() {
        assert!(parse(&[]).registry_webhook().unwrap().is_none());
        let args = parse(&["--registry-webhook-secret", "s3cr3t"]);
        assert!(!format!("{args:?}").contains("s3cr3t"), "Debug hides it");
        let config = args.registry_webhook().unwrap().unwrap();
        assert_eq!(config.secret, b"s3cr3t");
        assert_eq!(config.max_age, Duration::from_secs(300));
        assert_eq!(args.registry_webhook_addr.port(), 8090);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-a-file\n").unwrap();
        let path = file.to_str().unwrap();
        let config = parse(&[
            "--registry-webhook-secret-file",
            path,
            "--registry-webhook-max-age",
            "30s",
        ])
        .registry_webhook()
        .unwrap()
        .unwrap();
        assert_eq!(
            config.secret, b"from-a-file",
            "the trailing newline is not the secret"
        );
        assert_eq!(config.max_age, Duration::from_secs(30));
        std::fs::write(&file, "\n").unwrap();
        assert!(matches!(
            parse(&["--registry-webhook-secret-file", path]).registry_webhook(),
            Err(RunError::Setup(m)) if m.contains("empty")
        ));
        let missing = dir.path().join("missing");
        assert!(
            parse(&["--registry-webhook-secret-file", missing.to_str().unwrap()])
                .registry_webhook()
                .is_err()
        );
        let argv = ["mlrollout", "run", "--registry-webhook-secret", " "];
        assert!(
            Cli::try_parse_from(argv).is_err(),
            "an empty secret is refused"
        );
    }

    #[test]
    fn leader_election_is_off_by_default_and_configurable() {
        assert!(parse(&[]).leader_election("default").unwrap().is_none());
        let election = parse(&[
            "--leader-election",
            "--lease-name",
            "lock",
            "--lease-namespace",
            "ops",
            "--leader-identity",
            "pod-1",
            "--lease-duration-seconds",
            "20",
        ])
        .leader_election("default")
        .unwrap()
        .unwrap();
        assert_eq!(
            (
                election.lease_name.as_str(),
                election.lease_namespace.as_str(),
                election.identity.as_str()
            ),
            ("lock", "ops", "pod-1")
        );
        assert_eq!(election.lease_duration, Duration::from_secs(20));
        assert_eq!(election.renew_deadline, Duration::from_secs(10));
        assert_eq!(election.retry_period, Duration::from_secs(2));
        let bad = parse(&[
            "--leader-election",
            "--leader-identity",
            "pod-1",
            "--lease-namespace",
            "ops",
            "--lease-renew-deadline-seconds",
            "30",
        ]);
        assert!(matches!(
            bad.leader_election("default"),
            Err(LeaderError::Config(_))
        ));
    }
}
