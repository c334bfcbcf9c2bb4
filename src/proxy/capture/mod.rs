//! The recorder: off the request path, it scores responses into the histogram and gathers the
//! sampled requests' features into windows written to the object store.
//!
//! It is fed through a bounded queue; when it is behind, observations are dropped and counted,
//! never waited for.

pub mod window;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::mpsc;

use super::inputs;
use super::metrics::{DropReason, ProxyMetrics, SkipReason};
use super::scores::{self, ScoreShape};
use crate::storage::layout::window_file_name;
use window::{CapturedRequest, Window};

/// How often the recorder takes what the request path queued.
const DRAIN_EVERY: Duration = Duration::from_millis(10);

/// One answered request, as the recorder sees it.
#[derive(Debug)]
pub struct Observation {
    pub request_id: String,
    pub at: Timestamp,
    /// The request body when this request was sampled for capture.
    pub request: Option<Bytes>,
    pub response: Bytes,
}

/// Where and how windows are written.
pub struct CaptureSink {
    pub store: Arc<dyn ObjectStore>,
    /// The variant's prefix inside the store.
    pub prefix: Path,
    pub pod: String,
    pub model_version: String,
    /// A window is written when it holds this many rows…
    pub max_rows: usize,
    /// …or is this old.
    pub max_age: Duration,
    /// Names of positional input columns.
    pub columns: Vec<String>,
    pub write_timeout: Duration,
}

/// Samples an exact fraction of requests, spread evenly (no randomness: request n is taken
/// when ⌊(n+1)·f⌋ > ⌊n·f⌋).
#[derive(Debug)]
pub struct Sampler {
    per_million: u64,
    seen: AtomicU64,
}

impl Sampler {
    pub fn new(fraction: f64) -> Self {
        let clamped = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // In [0, 1_000_000]: the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let per_million = (clamped * 1_000_000.0).round() as u64;
        Self {
            per_million,
            seen: AtomicU64::new(0),
        }
    }

    pub fn take(&self) -> bool {
        if self.per_million == 0 {
            return false;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed) % 1_000_000;
        (n + 1) * self.per_million / 1_000_000 > n * self.per_million / 1_000_000
    }
}

/// The recorder task: runs until every sender is gone, then writes the last window.
pub async fn record(
    mut queue: mpsc::Receiver<Observation>,
    metrics: Arc<ProxyMetrics>,
    shape: ScoreShape,
    sink: Option<CaptureSink>,
) {
    let mut window: Option<Window> = None;
    let mut seq = 0u64;
    // The queue is drained on a tick rather than awaited: a sender then never has a waiting
    // receiver to wake, so a request costs no cross-thread wake-up (and the tail latency a
    // sidecar adds on a busy node stays low).
    let mut ticker = tokio::time::interval(DRAIN_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let open = loop {
            match queue.try_recv() {
                Ok(observation) => {
                    let captured = observe(&metrics, &shape, sink.as_ref(), observation);
                    if let (Some(sink), Some(request)) = (sink.as_ref(), captured) {
                        let open = window.get_or_insert_with(|| Window::new(request.at));
                        open.push(request);
                        if open.rows() >= sink.max_rows {
                            flush(sink, &metrics, window.take(), &mut seq).await;
                        }
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break true,
                Err(mpsc::error::TryRecvError::Disconnected) => break false,
            }
        };
        if let (Some(sink), Some(current)) = (sink.as_ref(), window.as_ref()) {
            let age = Timestamp::now().duration_since(current.started);
            if age.unsigned_abs() >= sink.max_age {
                flush(sink, &metrics, window.take(), &mut seq).await;
            }
        }
        if !open {
            break;
        }
    }
    if let Some(sink) = sink.as_ref() {
        flush(sink, &metrics, window.take(), &mut seq).await;
    }
}

/// Scores the response; returns the request's rows when it was sampled and both bodies parse.
fn observe(
    metrics: &ProxyMetrics,
    shape: &ScoreShape,
    sink: Option<&CaptureSink>,
    observation: Observation,
) -> Option<CapturedRequest> {
    let Ok(response) = serde_json::from_slice::<serde_json::Value>(&observation.response) else {
        metrics.skip(SkipReason::not_json);
        return None;
    };
    for score in scores::scores(&response, shape) {
        metrics.scores.observe(score);
    }
    let (sink, body) = (sink?, observation.request?);
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(&body) else {
        metrics.skip(SkipReason::not_json);
        return None;
    };
    let Ok(rows) = inputs::rows(&request, &sink.columns) else {
        metrics.skip(SkipReason::not_scoring_request);
        return None;
    };
    let predictions = match scores::predictions(&response) {
        Some(serde_json::Value::Array(list)) => list.clone(),
        Some(single) if rows.rows.len() == 1 => vec![single.clone()],
        _ => Vec::new(),
    };
    Some(CapturedRequest {
        request_id: observation.request_id,
        at: observation.at,
        rows,
        predictions,
    })
}

async fn flush(sink: &CaptureSink, metrics: &ProxyMetrics, window: Option<Window>, seq: &mut u64) {
    let Some(window) = window.filter(|w| w.rows() > 0) else {
        return;
    };
    let name = window_file_name(window.started, &sink.pod, *seq);
    *seq += 1;
    let bytes = match window.to_parquet(&sink.model_version) {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(%error, "capture window dropped");
            metrics.drop_requests(DropReason::write_failed, window.requests());
            return;
        }
    };
    let path = sink.prefix.clone().join(name.as_str());
    let put = sink.store.put(&path, bytes.into());
    match tokio::time::timeout(sink.write_timeout, put).await {
        Ok(Ok(_)) => {
            metrics.windows_written.inc();
            metrics.captured_rows.inc_by(window.rows() as u64);
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, %path, "capture window not written");
            metrics.drop_requests(DropReason::write_failed, window.requests());
        }
        Err(_) => {
            tracing::warn!(%path, timeout = ?sink.write_timeout, "capture window write timed out");
            metrics.drop_requests(DropReason::write_failed, window.requests());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampler_takes_the_exact_fraction_evenly() {
        for (fraction, n, want) in [(0.1, 1000, 100), (0.0, 100, 0), (1.0, 50, 50), (0.25, 8, 2)] {
            let sampler = Sampler::new(fraction);
            let taken = (0..n).filter(|_| sampler.take()).count();
            assert_eq!(taken, want, "fraction {fraction} of {n}");
        }
        let tenth = Sampler::new(0.1);
        let first: Vec<bool> = (0..20).map(|_| tenth.take()).collect();
        assert_eq!(first.iter().filter(|t| **t).count(), 2, "{first:?}");
        assert!(!Sampler::new(f64::NAN).take());
    }
}
