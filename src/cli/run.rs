//! `mlrollout run`: the operator process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::analysis::prometheus::PrometheusAnalyzer;
use crate::controller::{self, Context, WatchScope};
use crate::metrics::Metrics;
use crate::registry::mlflow::MlflowRegistry;
use crate::server::{self, Health};
use crate::telemetry::LogFormat;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Address of the /healthz, /readyz and /metrics endpoints.
    #[arg(long, env = "MLROLLOUT_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "MLROLLOUT_NAMESPACE")]
    pub namespace: Option<String>,
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
    let ctx = Context::new(client, registry, metrics.clone()).with_analyzer(Arc::new(analyzer));
    let scope = match args.namespace {
        Some(ns) => WatchScope::Namespace(ns),
        None => WatchScope::AllNamespaces,
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

    let http = tokio::spawn(server::serve(
        args.metrics_addr,
        server::router(health.clone(), metrics),
        stopped(stop_rx.clone()),
    ));
    controller::run(ctx, scope, health, stopped(stop_rx)).await;
    match http.await {
        Ok(result) => result?,
        Err(e) => tracing::warn!(error = %e, "metrics server task failed"),
    }
    Ok(())
}

/// Resolves on SIGTERM (Kubernetes) or Ctrl-C.
async fn shutdown_signal() {
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
