//! What a model server's instrumentation exports while it serves, for the series the built-in
//! analysis metrics query (`src/core/verdict/builtin.rs`): `http_requests_total{code}`,
//! `http_request_duration_seconds` and `model_prediction_score` histograms, labelled
//! `namespace` and `service="<name>-<variant>"` as a ServiceMonitor labels them. Published on a
//! [`super::prometheus::Exporter`] by a thread that plays requests for both variants, the same
//! for each (a healthy candidate): every built-in metric then passes, as long as Prometheus has
//! the samples.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::prometheus::Exporter;

const LATENCY_BUCKETS: [f64; 4] = [0.05, 0.1, 0.25, 0.5];
const SCORE_BUCKETS: [f64; 4] = [0.2, 0.4, 0.6, 0.8];

/// Requests played for both variants of `namespace/name` until dropped.
pub struct ModelTraffic {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ModelTraffic {
    /// Every 100 ms, for each variant: 99 answered requests and 1 server error, their
    /// latencies (mostly 80 ms), and 100 prediction scores spread over the buckets.
    pub fn start(exporter: Arc<Exporter>, namespace: &str, name: &str) -> ModelTraffic {
        let stop = Arc::new(AtomicBool::new(false));
        let services: Vec<String> = ["stable", "candidate"]
            .iter()
            .map(|variant| format!("{name}-{variant}"))
            .collect();
        let namespace = namespace.to_string();
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    for service in &services {
                        play(&exporter, &namespace, service);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        ModelTraffic {
            stop,
            thread: Some(thread),
        }
    }
}

fn play(exporter: &Exporter, namespace: &str, service: &str) {
    let labels = [("namespace", namespace), ("service", service)];
    for (code, n) in [("200", 99.0), ("500", 1.0)] {
        let with_code = [labels[0], labels[1], ("code", code)];
        exporter.inc_counter("http_requests_total", &with_code, n);
    }
    let latency = "http_request_duration_seconds";
    exporter.observe_histogram_n(latency, &labels, &LATENCY_BUCKETS, 0.08, 95);
    exporter.observe_histogram_n(latency, &labels, &LATENCY_BUCKETS, 0.2, 5);
    for score in [0.1, 0.3, 0.5, 0.7, 0.9] {
        exporter.observe_histogram_n("model_prediction_score", &labels, &SCORE_BUCKETS, score, 20);
    }
}

impl Drop for ModelTraffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
