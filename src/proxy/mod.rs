//! `mlrollout proxy`: the data-plane sidecar in front of every model server.
//!
//! It forwards each request to the model server on the same pod, exports the metrics the
//! built-in analysis queries read (requests by code, latency, prediction scores), and writes a
//! sample of the traffic (features, prediction, request id) as Parquet windows to an object
//! store, where the drift check reads it. It is never in the way: the recorder works off the
//! request path through a bounded queue, and what it cannot keep up with is dropped and counted.

pub mod capture;
pub mod forward;
pub mod inputs;
pub mod metrics;
pub mod scores;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use http::Uri;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::storage::{self, StorageError, StoreOptions};
use capture::{CaptureSink, Sampler};
use forward::{Forwarder, Limits};
use metrics::ProxyMetrics;
use scores::ScoreShape;

/// Where captured traffic goes and how much of it.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Prefix URI of this variant's windows (`s3://…`, `gs://…`, `az://…`, a path).
    pub uri: String,
    pub options: StoreOptions,
    /// Fraction of requests captured, in [0, 1].
    pub fraction: f64,
    pub max_rows: usize,
    pub max_age: Duration,
    pub columns: Vec<String>,
    pub model_version: String,
}

/// Everything `mlrollout proxy` needs.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub upstream: Uri,
    pub limits: Limits,
    pub shape: ScoreShape,
    pub score_buckets: Vec<f64>,
    /// Observations waiting for the recorder before new ones are dropped.
    pub queue: usize,
    /// This pod's name: prefix of the request ids it makes and part of window names.
    pub pod: String,
    pub capture: Option<CaptureConfig>,
    /// Time the last capture window has to be written after the listener stopped.
    pub last_write_grace: Duration,
}

/// Why the proxy cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the metrics server stopped: {0}")]
    MetricsServer(std::io::Error),
}

/// Runs the proxy until `shutdown` turns true, then writes the last capture window.
pub async fn run(
    config: ProxyConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ProxyError> {
    let listener = bind(config.listen).await?;
    let metrics_listener = bind(config.metrics_listen).await?;
    serve(config, listener, metrics_listener, async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    })
    .await
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ProxyError::Listen { addr, source })
}

/// Serves on listeners already bound (tests bind port 0 and read the address first).
pub async fn serve(
    config: ProxyConfig,
    listener: TcpListener,
    metrics_listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ProxyError> {
    let metrics = Arc::new(ProxyMetrics::new(&config.score_buckets));
    let sink = config
        .capture
        .as_ref()
        .map(|c| sink(c, &config))
        .transpose()?;
    let (sender, queue) = mpsc::channel(config.queue.max(1));
    let recorder = spawn_recorder(capture::record(
        queue,
        metrics.clone(),
        config.shape.clone(),
        sink,
    ));
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_timer(TokioTimer::new())
        .build(connector);
    let forwarder = Arc::new(Forwarder {
        client,
        upstream: config.upstream.clone(),
        limits: config.limits,
        metrics: metrics.clone(),
        recorder: sender,
        sampler: Sampler::new(config.capture.as_ref().map_or(0.0, |c| c.fraction)),
        id_prefix: config.pod.clone(),
        ids: AtomicU64::new(0),
    });
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let metrics_server = tokio::spawn(serve_metrics(metrics_listener, metrics, stopped.clone()));
    accept(listener, forwarder, stopped).await;
    // Every connection task holds the forwarder (and so the recorder's queue); the recorder
    // ends, writing its last window, once they are gone — within the pod's grace period even
    // when the store hangs.
    if tokio::time::timeout(config.last_write_grace, recorder)
        .await
        .is_err()
    {
        tracing::warn!(grace = ?config.last_write_grace, "the last capture window was not written in time");
    }
    match metrics_server.await {
        Ok(result) => result.map_err(ProxyError::MetricsServer),
        Err(_) => Ok(()),
    }
}

/// Runs the recorder on a thread of its own (with its own small runtime for the store's
/// client), so that scoring and writing windows never hold up a request task; resolves when
/// the recorder is done.
fn spawn_recorder(
    recorder: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::sync::oneshot::Receiver<()> {
    let (done, finished) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("mlrollout-recorder".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(recorder),
                Err(error) => tracing::error!(%error, "the recorder cannot start: nothing is scored or captured"),
            }
            let _ = done.send(());
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "the recorder thread cannot start: nothing is scored or captured");
    }
    finished
}

fn sink(capture: &CaptureConfig, config: &ProxyConfig) -> Result<CaptureSink, ProxyError> {
    let (store, prefix) = storage::open(&capture.uri, &capture.options)?;
    Ok(CaptureSink {
        store,
        prefix,
        pod: config.pod.clone(),
        model_version: capture.model_version.clone(),
        max_rows: capture.max_rows.max(1),
        max_age: capture.max_age,
        columns: capture.columns.clone(),
        write_timeout: Duration::from_secs(30),
    })
}

async fn accept(
    listener: TcpListener,
    forwarder: Arc<Forwarder>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let forwarder = forwarder.clone();
                let mut stop = stopped.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| forwarder.clone().handle(request));
                    let connection = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(30))
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(connection);
                    tokio::select! {
                        _ = connection.as_mut() => {}
                        () = stopping(&mut stop) => {
                            connection.as_mut().graceful_shutdown();
                            let _ = connection.await;
                        }
                    }
                });
            }
            () = stopping(&mut stopped) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(forwarder);
    // In-flight requests finish (bounded by the upstream timeout), idle connections close.
    while connections.join_next().await.is_some() {}
}

/// Resolves once the stop flag is set (or its sender is gone).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<ProxyMetrics>,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), std::io::Error> {
    let router = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(metrics);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { stopping(&mut stopped).await })
        .await
}

async fn render(State(metrics): State<Arc<ProxyMetrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}
