//! `mlrollout proxy`: the data-plane sidecar (see [`crate::proxy`]). The operator injects it
//! into every variant's pod and sets these flags through `MLROLLOUT_PROXY_*` variables.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use http::Uri;

use crate::proxy::forward::Limits;
use crate::proxy::metrics::default_score_buckets;
use crate::proxy::scores::ScoreShape;
use crate::proxy::{CaptureConfig, ProxyConfig};
use crate::storage::StoreOptions;

/// Prefixes of the environment variables handed to the object store as settings (credentials
/// from the Secret named in `spec.storage`, mounted with `envFrom`).
const STORE_ENV_PREFIXES: [&str; 3] = ["AWS_", "GOOGLE_", "AZURE_"];

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address clients (the variant's Service) connect to.
    #[arg(long, env = "MLROLLOUT_PROXY_LISTEN", default_value = "0.0.0.0:8000")]
    pub listen: SocketAddr,
    /// Address of `/metrics` and `/healthz`.
    #[arg(
        long,
        env = "MLROLLOUT_PROXY_METRICS_LISTEN",
        default_value = "0.0.0.0:9464"
    )]
    pub metrics_listen: SocketAddr,
    /// The model server, `http://host:port`.
    #[arg(
        long,
        env = "MLROLLOUT_PROXY_UPSTREAM",
        default_value = "http://127.0.0.1:8080"
    )]
    pub upstream: Uri,
    /// Time the model server has to answer; then the client gets 504.
    #[arg(long, env = "MLROLLOUT_PROXY_UPSTREAM_TIMEOUT", default_value = "30s", value_parser = super::args::positive_duration)]
    pub upstream_timeout: Duration,
    /// Largest request body forwarded; larger ones get 413.
    #[arg(long, env = "MLROLLOUT_PROXY_MAX_REQUEST_BYTES", default_value = "10MiB", value_parser = super::args::positive_size)]
    pub max_request_bytes: u64,
    /// Largest response body relayed; larger ones get 502.
    #[arg(long, env = "MLROLLOUT_PROXY_MAX_RESPONSE_BYTES", default_value = "64MiB", value_parser = super::args::positive_size)]
    pub max_response_bytes: u64,
    /// Field of each prediction object holding the score.
    #[arg(long, env = "MLROLLOUT_PROXY_SCORE_FIELD")]
    pub score_field: Option<String>,
    /// Index into each prediction list holding the score.
    #[arg(long, env = "MLROLLOUT_PROXY_SCORE_OUTPUT_INDEX")]
    pub score_output_index: Option<usize>,
    /// Upper bounds of the score histogram's buckets (comma-separated, increasing).
    #[arg(long, env = "MLROLLOUT_PROXY_SCORE_BUCKETS", value_delimiter = ',', value_parser = finite)]
    pub score_buckets: Vec<f64>,
    /// Answered requests waiting for the recorder before new ones go unrecorded.
    #[arg(long, env = "MLROLLOUT_PROXY_QUEUE", default_value_t = 4096)]
    pub queue: usize,
    /// This pod's name (request ids and capture file names).
    #[arg(long, env = "MLROLLOUT_PROXY_POD", default_value = "proxy")]
    pub pod: String,
    /// Prefix URI this variant's capture windows are written under; none: no capture.
    #[arg(long, env = "MLROLLOUT_PROXY_CAPTURE_URI")]
    pub capture_uri: Option<String>,
    /// Fraction of requests captured.
    #[arg(long, env = "MLROLLOUT_PROXY_CAPTURE_FRACTION", default_value_t = 0.1, value_parser = fraction)]
    pub capture_fraction: f64,
    /// Rows per window at most.
    #[arg(
        long,
        env = "MLROLLOUT_PROXY_CAPTURE_MAX_ROWS",
        default_value_t = 10_000
    )]
    pub capture_max_rows: usize,
    /// Age of a window when it is written.
    #[arg(long, env = "MLROLLOUT_PROXY_CAPTURE_WINDOW", default_value = "5m", value_parser = super::args::positive_duration)]
    pub capture_window: Duration,
    /// Names of positional input columns (requests that send rows without names).
    #[arg(long, env = "MLROLLOUT_PROXY_CAPTURE_COLUMNS", value_delimiter = ',')]
    pub capture_columns: Vec<String>,
    /// The model version served (written on every captured row).
    #[arg(long, env = "MLROLLOUT_MODEL_VERSION", default_value = "")]
    pub model_version: String,
    /// Time the last capture window has to be written on shutdown (keep it inside the pod's
    /// termination grace period).
    #[arg(long, env = "MLROLLOUT_PROXY_SHUTDOWN_GRACE", default_value = "10s", value_parser = super::args::positive_duration)]
    pub shutdown_grace: Duration,
    /// Threads serving requests (a sidecar gets a small CPU share: few threads keep the tail
    /// latency low).
    #[arg(long, env = "MLROLLOUT_PROXY_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    /// Endpoint of an S3-compatible store.
    #[arg(long, env = "MLROLLOUT_PROXY_STORAGE_ENDPOINT")]
    pub storage_endpoint: Option<String>,
    /// Region of the store.
    #[arg(long, env = "MLROLLOUT_PROXY_STORAGE_REGION")]
    pub storage_region: Option<String>,
}

fn finite(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("{text:?} is not a finite number")),
    }
}

fn fraction(text: &str) -> Result<f64, String> {
    match finite(text)? {
        v if (0.0..=1.0).contains(&v) => Ok(v),
        v => Err(format!("{v} is not between 0 and 1")),
    }
}

impl ProxyArgs {
    /// The configuration, or a usage message.
    pub fn config(self) -> Result<ProxyConfig, String> {
        let buckets = if self.score_buckets.is_empty() {
            default_score_buckets()
        } else {
            self.score_buckets
        };
        if buckets.windows(2).any(|w| w[0] >= w[1]) {
            return Err("--score-buckets must increase".into());
        }
        if self.upstream.scheme_str() != Some("http") || self.upstream.authority().is_none() {
            return Err(format!(
                "--upstream {} must be http://host:port",
                self.upstream
            ));
        }
        let capture = self.capture_uri.map(|uri| {
            let secret = std::env::vars()
                .filter(|(k, _)| STORE_ENV_PREFIXES.iter().any(|p| k.starts_with(p)));
            let secret: Vec<(String, String)> = secret.collect();
            CaptureConfig {
                uri,
                options: StoreOptions::from_parts(
                    secret.iter().map(|(k, v)| (k.as_str(), v.clone())),
                    self.storage_endpoint.as_deref(),
                    self.storage_region.as_deref(),
                ),
                fraction: self.capture_fraction,
                max_rows: self.capture_max_rows.max(1),
                max_age: self.capture_window,
                columns: self.capture_columns,
                model_version: self.model_version,
            }
        });
        Ok(ProxyConfig {
            listen: self.listen,
            metrics_listen: self.metrics_listen,
            upstream: self.upstream,
            limits: Limits {
                max_request_bytes: usize::try_from(self.max_request_bytes).unwrap_or(usize::MAX),
                max_response_bytes: usize::try_from(self.max_response_bytes).unwrap_or(usize::MAX),
                upstream_timeout: self.upstream_timeout,
            },
            shape: ScoreShape {
                field: self.score_field,
                output_index: self.score_output_index,
            },
            score_buckets: buckets,
            queue: self.queue,
            pod: self.pod,
            capture,
            last_write_grace: self.shutdown_grace,
        })
    }
}

/// Runs the proxy until SIGTERM or SIGINT.
pub fn main(args: ProxyArgs) -> ExitCode {
    let threads = usize::from(args.threads);
    let config = match args.config() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("mlrollout proxy: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mlrollout proxy: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let result = runtime.block_on(async move {
        tokio::spawn(async move {
            crate::cli::run::shutdown_signal().await;
            let _ = stop.send(true);
        });
        crate::proxy::run(config, stopped).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mlrollout proxy: {e}");
            ExitCode::FAILURE
        }
    }
}
