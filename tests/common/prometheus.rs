//! A real Prometheus server plus a test-controlled metrics exporter.
//!
//! ```ignore
//! let exp = Exporter::start();
//! exp.set_counter("mlrollout_test_requests_total", &[("variant", "stable")], 42.0);
//! let prom = PrometheusServer::start(&[exp.target()]);
//! let samples = prom.wait_for_series(
//!     r#"mlrollout_test_requests_total{variant="stable"}"#, Duration::from_secs(60));
//! ```
//!
//! Prometheus comes from `MLROLLOUT_PROMETHEUS_BIN` or `prometheus` on PATH
//! (installed by `tests/harness/install.sh`). Each [`PrometheusServer`] is its
//! own process with a fresh TSDB, killed on drop or when the test process
//! exits. First samples show up about 6 s after start even with a 1 s scrape
//! interval: wait for data ([`PrometheusServer::wait_for_series`]), not for
//! readiness.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::http;
use super::process::{GuardedChild, scratch_dir, which};

// ------------------------------------------------------------------ exporter

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

#[derive(Debug, Clone)]
enum Series {
    Value(f64),
    /// `counts[i]` = observations in bucket i (not cumulative); the last
    /// entry is the `+Inf` overflow bucket.
    Histogram {
        bounds: Vec<f64>,
        counts: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

#[derive(Debug)]
struct Family {
    kind: Kind,
    /// Keyed by the rendered label set (labels sorted by name).
    series: BTreeMap<String, Series>,
}

#[derive(Debug, Default)]
struct State {
    families: BTreeMap<String, Family>,
    raw: String,
    scrapes: u64,
    fail_with: Option<u16>,
}

/// A `/metrics` endpoint on `127.0.0.1:<random port>`, served by a std
/// thread (works with or without a tokio runtime). Series are set through the
/// methods below; [`Exporter::set_raw`] appends arbitrary exposition text.
/// Stops when dropped.
pub struct Exporter {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    pub fn start() -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind exporter on 127.0.0.1:0");
        let addr = listener.local_addr().expect("exporter local_addr");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name(format!("exporter-{}", addr.port()))
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(conn) = conn else { continue };
                        let state = Arc::clone(&state);
                        std::thread::spawn(move || serve_conn(conn, &state));
                    }
                })
                .expect("spawn exporter thread")
        };
        Exporter {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, as written in a Prometheus `static_configs` target.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT/metrics`
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    fn upsert(&self, name: &str, kind: Kind, labels: &[(&str, &str)], f: impl FnOnce(&mut Series)) {
        let key = render_labels(labels);
        self.with_state(|s| {
            let family = s
                .families
                .entry(name.to_string())
                .or_insert_with(|| Family {
                    kind,
                    series: BTreeMap::new(),
                });
            assert_eq!(
                family.kind,
                kind,
                "metric {name} already registered as a {}",
                family.kind.as_str()
            );
            let series = family.series.entry(key).or_insert(Series::Value(0.0));
            f(series);
        });
    }

    /// Sets a counter series (name should end in `_total`) to `value`.
    pub fn set_counter(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.upsert(name, Kind::Counter, labels, |s| *s = Series::Value(value));
    }

    /// Adds `by` to a counter series (created at 0).
    pub fn inc_counter(&self, name: &str, labels: &[(&str, &str)], by: f64) {
        self.upsert(name, Kind::Counter, labels, |s| {
            if let Series::Value(v) = s {
                *v += by;
            }
        });
    }

    pub fn set_gauge(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.upsert(name, Kind::Gauge, labels, |s| *s = Series::Value(value));
    }

    /// Records one observation in a histogram series with upper bounds
    /// `buckets` (ascending, without `+Inf`; fixed at the series' first use).
    pub fn observe_histogram(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        buckets: &[f64],
        value: f64,
    ) {
        self.observe_histogram_n(name, labels, buckets, value, 1);
    }

    /// Records `n` observations of `value` at once.
    pub fn observe_histogram_n(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        buckets: &[f64],
        value: f64,
        n: u64,
    ) {
        assert!(
            buckets.windows(2).all(|w| w[0] < w[1]),
            "histogram buckets must be strictly ascending: {buckets:?}"
        );
        assert!(
            !labels.iter().any(|(k, _)| *k == "le"),
            "`le` is reserved for histogram buckets"
        );
        self.upsert(name, Kind::Histogram, labels, |s| {
            if !matches!(s, Series::Histogram { .. }) {
                *s = Series::Histogram {
                    bounds: buckets.to_vec(),
                    counts: vec![0; buckets.len() + 1],
                    sum: 0.0,
                    count: 0,
                };
            }
            if let Series::Histogram {
                bounds,
                counts,
                sum,
                count,
            } = s
            {
                let idx = bounds
                    .iter()
                    .position(|b| value <= *b)
                    .unwrap_or(bounds.len());
                counts[idx] += n;
                *sum += value * n as f64;
                *count += n;
            }
        });
    }

    /// Removes one series (any kind); the family disappears with its last series.
    pub fn remove_series(&self, name: &str, labels: &[(&str, &str)]) {
        let key = render_labels(labels);
        self.with_state(|s| {
            if let Some(family) = s.families.get_mut(name) {
                family.series.remove(&key);
                if family.series.is_empty() {
                    s.families.remove(name);
                }
            }
        });
    }

    /// Extra exposition text appended verbatim after the structured series
    /// (replaces any previous raw text). Must end with a newline.
    pub fn set_raw(&self, text: impl Into<String>) {
        let text = text.into();
        self.with_state(|s| s.raw = text);
    }

    /// Removes all series and raw text.
    pub fn clear(&self) {
        self.with_state(|s| {
            s.families.clear();
            s.raw.clear();
        });
    }

    /// Makes `/metrics` answer with this HTTP status (e.g. 503) instead of
    /// metrics, so Prometheus records `up == 0`; `None` restores it.
    pub fn set_failing(&self, status: Option<u16>) {
        self.with_state(|s| s.fail_with = status);
    }

    /// The exposition text `/metrics` currently serves.
    pub fn render(&self) -> String {
        self.with_state(|s| render_state(s))
    }

    /// How many times `/metrics` has been fetched.
    pub fn scrape_count(&self) -> u64 {
        self.with_state(|s| s.scrapes)
    }

    /// Blocks until `/metrics` has been fetched `n` more times than now, so a
    /// change made before this call is known to be scraped. Panics on timeout.
    pub fn wait_for_scrapes(&self, n: u64, timeout: Duration) {
        let target = self.scrape_count() + n;
        let deadline = Instant::now() + timeout;
        while self.scrape_count() < target {
            assert!(
                Instant::now() < deadline,
                "exporter {} scraped {} of {target} times within {timeout:?}",
                self.addr,
                self.scrape_count()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_conn(mut conn: TcpStream, state: &Mutex<State>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    if buf.is_empty() {
        return; // wake-up connection or client gone
    }
    let head = String::from_utf8_lossy(&buf);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or("/");
    let (status, body) = if path == "/metrics" {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.scrapes += 1;
        match s.fail_with {
            Some(code) => (code, format!("exporter failing with {code} on purpose\n")),
            None => (200, render_state(&s)),
        }
    } else if path == "/" {
        (200, "mlrollout test exporter: see /metrics\n".to_string())
    } else {
        (404, "not found\n".to_string())
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(resp.as_bytes());
    let _ = conn.flush();
}

fn escape_label_value(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// `{a="x",b="y"}` with labels sorted by name, or `""` without labels.
fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut sorted: Vec<_> = labels.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let parts: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// Adds `extra` (e.g. `le="0.5"`) to a rendered label set.
fn with_label(rendered: &str, extra: &str) -> String {
    if rendered.is_empty() {
        format!("{{{extra}}}")
    } else {
        format!("{},{extra}}}", &rendered[..rendered.len() - 1])
    }
}

/// Prometheus text-format float (`+Inf`, `-Inf`, `NaN`, shortest decimal).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn render_state(s: &State) -> String {
    let mut out = String::new();
    for (name, family) in &s.families {
        let _ = writeln!(out, "# TYPE {name} {}", family.kind.as_str());
        for (labels, series) in &family.series {
            match series {
                Series::Value(v) => {
                    let _ = writeln!(out, "{name}{labels} {}", format_value(*v));
                }
                Series::Histogram {
                    bounds,
                    counts,
                    sum,
                    count,
                } => {
                    let mut cumulative = 0u64;
                    for (i, c) in counts.iter().enumerate() {
                        cumulative += c;
                        let le = bounds
                            .get(i)
                            .map_or("+Inf".to_string(), |b| format_value(*b));
                        let l = with_label(labels, &format!("le=\"{le}\""));
                        let _ = writeln!(out, "{name}_bucket{l} {cumulative}");
                    }
                    let _ = writeln!(out, "{name}_sum{labels} {}", format_value(*sum));
                    let _ = writeln!(out, "{name}_count{labels} {count}");
                }
            }
        }
    }
    out.push_str(&s.raw);
    out
}

// ---------------------------------------------------------------- prometheus

/// How long to wait for `/-/ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One element of an instant-vector query result.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub metric: BTreeMap<String, String>,
    /// Unix seconds.
    pub timestamp: f64,
    /// `NaN`/`±Inf` are mapped to the f64 values.
    pub value: f64,
}

/// A Prometheus server on `127.0.0.1:<free port>` with a fresh TSDB in a
/// scratch dir, stopped (whole process group) on drop.
pub struct PrometheusServer {
    port: u16,
    dir: PathBuf,
    process: GuardedChild,
    /// Servers killed by [`PrometheusServer::kill`]: their watchdogs remove the scratch dir
    /// when dropped, after the live server (declared first) has stopped.
    retired: Vec<GuardedChild>,
}

/// The Prometheus executable: env `MLROLLOUT_PROMETHEUS_BIN`, else
/// `prometheus` on PATH, else `/usr/bin/prometheus`.
pub fn prometheus_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MLROLLOUT_PROMETHEUS_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    which("prometheus")
        .or_else(|| Some(PathBuf::from("/usr/bin/prometheus")).filter(|p| p.is_file()))
        .unwrap_or_else(|| {
            panic!(
                "prometheus not found (MLROLLOUT_PROMETHEUS_BIN unset, not on PATH); \
                 run the README test command (tests/harness/install.sh)"
            )
        })
}

/// A `prometheus.yml` scraping `targets` (`host:port`, an `http://` prefix
/// and a `/metrics` suffix are stripped) every second as job `mlrollout-test`.
pub fn scrape_config<S: AsRef<str>>(targets: &[S]) -> String {
    let mut cfg = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: mlrollout-test\n    static_configs:\n      - targets:\n",
    );
    for t in targets {
        let t = t.as_ref();
        let t = t.strip_prefix("http://").unwrap_or(t);
        let t = t.strip_suffix("/metrics").unwrap_or(t);
        let _ = writeln!(cfg, "          - '{t}'");
    }
    if targets.is_empty() {
        cfg.push_str("          []\n");
    }
    cfg
}

/// Prometheus on `127.0.0.1:port` with `dir/prometheus.yml` and its TSDB in `dir/data`.
fn server_command(bin: &Path, dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg(format!(
        "--config.file={}",
        dir.join("prometheus.yml").display()
    ))
    .arg(format!(
        "--storage.tsdb.path={}",
        dir.join("data").display()
    ))
    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
    .current_dir(dir);
    cmd
}

/// Waits until the server answers `/-/ready`. `Err((message, worth_retrying))`.
fn wait_ready(
    mut process: GuardedChild,
    port: u16,
    log: &Path,
) -> Result<GuardedChild, (String, bool)> {
    let authority = format!("127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        if let Some(status) = process.try_exited() {
            let tail = process.log_tail(40);
            let port_taken = tail.contains("address already in use");
            return Err((
                format!(
                    "prometheus exited during start-up ({status}); log {} (MLROLLOUT_KEEP_TEST_DIRS=1 keeps it):\n{tail}",
                    log.display()
                ),
                port_taken,
            ));
        }
        if let Ok(resp) = http::get(&authority, "/-/ready", Duration::from_secs(2))
            && resp.status == 200
        {
            return Ok(process);
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err((
                format!(
                    "prometheus on {authority} not ready after {READY_TIMEOUT:?}; log:\n{}",
                    process.log_tail(40)
                ),
                false,
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl PrometheusServer {
    /// Starts Prometheus scraping `targets` (e.g. `&[exporter.target()]`)
    /// every second, and waits until it is ready (not until data arrives).
    pub fn start<S: AsRef<str>>(targets: &[S]) -> PrometheusServer {
        Self::start_with_config(&scrape_config(targets))
    }

    /// From an async test (multi-threaded runtime): starts Prometheus scraping `target` on a
    /// blocking thread and waits until `promql` has a series.
    pub async fn start_scraping(target: String, promql: &str) -> PrometheusServer {
        let prometheus = tokio::task::spawn_blocking(move || Self::start(&[target]))
            .await
            .expect("starting Prometheus");
        let p = &prometheus;
        tokio::task::block_in_place(|| p.wait_for_series(promql, Duration::from_secs(60)));
        prometheus
    }

    /// Starts Prometheus with a complete config file text, e.g. one with
    /// several jobs or `rule_files` (use absolute paths, such as files in a
    /// [`super::process::scratch_dir`] of your own).
    pub fn start_with_config(config_yaml: &str) -> PrometheusServer {
        let bin = prometheus_bin();
        let mut last_err = String::new();
        for _attempt in 0..3 {
            match Self::try_start_once(&bin, config_yaml) {
                Ok(server) => return server,
                Err((msg, retry)) => {
                    last_err = msg;
                    if !retry {
                        break;
                    }
                }
            }
        }
        panic!("{last_err}");
    }

    fn try_start_once(bin: &Path, config_yaml: &str) -> Result<PrometheusServer, (String, bool)> {
        let dir = scratch_dir("prometheus");
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_yaml)
            .map_err(|e| (format!("write {}: {e}", config.display()), false))?;
        let port = http::free_port();
        let log = dir.join("server.log");
        let process = GuardedChild::spawn(&server_command(bin, &dir, port), &log, Some(&dir))
            .map_err(|e| (format!("cannot spawn {}: {e}", bin.display()), false))?;
        let process = wait_ready(process, port, &log)?;
        Ok(PrometheusServer {
            port,
            dir,
            process,
            retired: Vec::new(),
        })
    }

    /// `kill -KILL` of the server (a crash: nothing flushed, no clean shutdown). The port, the
    /// config and the TSDB stay for [`PrometheusServer::restart`].
    pub fn kill(&mut self) {
        self.process.kill_tree();
    }

    /// Starts Prometheus again on the same port, config and TSDB (after
    /// [`PrometheusServer::kill`]; it replays its write-ahead log); waits until it is ready
    /// (new samples come about 6 s later: the first scrape waits for service discovery).
    pub fn restart(&mut self) {
        let bin = prometheus_bin();
        let log = self.dir.join("server.log");
        let process = GuardedChild::spawn(&server_command(&bin, &self.dir, self.port), &log, None)
            .unwrap_or_else(|e| panic!("cannot start {} again: {e}", bin.display()));
        let process =
            wait_ready(process, self.port, &log).unwrap_or_else(|(msg, _)| panic!("{msg}"));
        self.retired
            .push(std::mem::replace(&mut self.process, process));
    }

    /// e.g. `http://127.0.0.1:39123` (no trailing slash): the base URL the
    /// operator's Prometheus client is configured with.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Scratch dir with `prometheus.yml`, `data/` and `server.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_tail(&self, max_lines: usize) -> String {
        self.process.log_tail(max_lines)
    }

    /// Runs an instant query; returns the whole JSON response on HTTP 200
    /// with `status: success`, else `Err` with the status code and body.
    pub fn query_json(&self, promql: &str) -> Result<serde_json::Value, String> {
        let path = format!("/api/v1/query?query={}", http::encode_component(promql));
        let resp = http::get(
            &format!("127.0.0.1:{}", self.port),
            &path,
            Duration::from_secs(10),
        )
        .map_err(|e| format!("GET {path}: {e}"))?;
        let json: serde_json::Value = serde_json::from_slice(&resp.body).map_err(|e| {
            format!(
                "HTTP {} {path}: bad JSON ({e}): {}",
                resp.status,
                resp.text()
            )
        })?;
        if resp.status != 200 || json["status"] != "success" {
            return Err(format!("HTTP {} {path}: {json}", resp.status));
        }
        Ok(json)
    }

    /// Instant query expected to return a vector; panics on any error.
    pub fn query(&self, promql: &str) -> Vec<Sample> {
        let json = self
            .query_json(promql)
            .unwrap_or_else(|e| panic!("query {promql:?} failed: {e}"));
        parse_vector(&json).unwrap_or_else(|e| panic!("query {promql:?}: {e}: {json}"))
    }

    /// Polls the query every 250 ms until it returns a non-empty vector, and
    /// returns it. Panics (with the server log tail) after `timeout`. The
    /// first scrape lands ~6 s after start; allow 30–60 s on a loaded box.
    pub fn wait_for_series(&self, promql: &str, timeout: Duration) -> Vec<Sample> {
        let deadline = Instant::now() + timeout;
        let mut last: String;
        loop {
            match self.query_json(promql) {
                Ok(json) => match parse_vector(&json) {
                    Ok(v) if !v.is_empty() => return v,
                    Ok(_) => last = "empty result".into(),
                    Err(e) => panic!("query {promql:?}: {e}: {json}"),
                },
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                let targets = http::get(
                    &format!("127.0.0.1:{}", self.port),
                    "/api/v1/targets",
                    Duration::from_secs(5),
                )
                .map(|r| r.text())
                .unwrap_or_default();
                panic!(
                    "no series for {promql:?} within {timeout:?} (last: {last})\ntargets: {targets}\nlog:\n{}",
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn parse_f64(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Parses `data.result` of a `resultType: vector` response.
pub fn parse_vector(json: &serde_json::Value) -> Result<Vec<Sample>, String> {
    let data = &json["data"];
    if data["resultType"] != "vector" {
        return Err(format!("resultType is {}, not vector", data["resultType"]));
    }
    let result = data["result"].as_array().ok_or("no data.result array")?;
    result
        .iter()
        .map(|item| {
            let metric = item["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let timestamp = item["value"][0].as_f64().ok_or("bad sample timestamp")?;
            let value = item["value"][1]
                .as_str()
                .and_then(parse_f64)
                .ok_or("bad sample value")?;
            Ok(Sample {
                metric,
                timestamp,
                value,
            })
        })
        .collect()
}
