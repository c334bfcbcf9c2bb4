//! Operator scale: N ModelDeployments (default 1,000) reconciled by the real `mlrollout run`
//! process. The in-memory API server runs in this bench process behind a plain HTTP
//! listener and MLflow is a tiny stub answering the alias lookup, so the numbers measured on
//! the operator process (resident memory, CPU time, reconcile durations from its /metrics) are
//! the operator's own. Run: `cargo bench --bench operator_scale` (`MLROLLOUT_SCALE_N=N`).

#[path = "../tests/common/fake_api.rs"]
#[allow(dead_code)]
mod fake_api;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body as AxumBody;
use axum::extract::State;
use axum::http::{Request, Response, StatusCode};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use mlrollout::api::{ModelDeployment, Phase};

/// Serves the in-memory API over HTTP (what a kubeconfig can point at).
async fn proxy(
    State(client): State<kube::Client>,
    request: Request<AxumBody>,
) -> Response<AxumBody> {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(AxumBody::empty())
            .unwrap();
    };
    let request = Request::from_parts(parts, kube::client::Body::from(bytes.to_vec()));
    match client.send(request).await {
        Ok(response) => response.map(AxumBody::new),
        Err(e) => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(AxumBody::from(e.to_string()))
            .unwrap(),
    }
}

/// MLflow stub: every alias lookup answers version 1.
fn mlflow_stub() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    let n = match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        continue;
                    }
                    let body = r#"{"model_version":{"name":"model","version":"1","run_id":"r1","aliases":["champion"],"creation_timestamp":"0","last_updated_timestamp":"0","source":"models:/m-1","status":"READY"}}"#;
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn proc_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn proc_cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let fields: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

/// Linear interpolation inside the histogram bucket that holds quantile `q`.
fn percentile(exposition: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = exposition
        .lines()
        .filter(|l| l.starts_with("mlrollout_reconcile_duration_seconds_bucket"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    let target = q * total;
    let mut previous = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= target {
            if !le.is_finite() {
                return Some(previous.0);
            }
            let span = (count - previous.1).max(1.0);
            return Some(previous.0 + (le - previous.0) * (target - previous.1) / span);
        }
        previous = (le, count);
    }
    None
}

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn reconciled(api: &Api<ModelDeployment>, n: usize, marker: Option<&str>) -> Duration {
    let started = Instant::now();
    loop {
        let list = api.list(&ListParams::default()).await.unwrap();
        let done = list
            .items
            .iter()
            .filter(|m| {
                let Some(s) = m.status.as_ref() else {
                    return false;
                };
                let current = s.observed_generation == m.metadata.generation;
                let touched = marker.is_none_or(|k| {
                    m.metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key(k))
                });
                s.phase == Phase::Stable && current && touched
            })
            .count();
        if done >= n {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "only {done}/{n} reconciled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn main() {
    // `cargo test --all-targets` builds and starts benches without `--bench`: nothing to do.
    if !std::env::args().any(|a| a == "--bench") {
        println!("operator_scale: run it with `cargo bench --bench operator_scale`");
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n: usize = std::env::var("MLROLLOUT_SCALE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let binary = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/mlrollout");
    assert!(
        binary.exists(),
        "build the operator first: cargo build --release"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let api = fake_api::fake_api().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api_port = listener.local_addr().unwrap().port();
        let router = axum::Router::new().fallback(proxy).with_state(api.client.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let mlflow = mlflow_stub();

        let mdeps: Api<ModelDeployment> = Api::namespaced(api.client.clone(), "scale");
        for i in 0..n {
            let resource: ModelDeployment = serde_json::from_value(serde_json::json!({
                "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
                "metadata": {"name": format!("model-{i:04}"), "namespace": "scale"},
                "spec": {"model": {"trackingUri": format!("http://127.0.0.1:{mlflow}"), "name": "model"},
                         "traffic": {"provider": "gatewayAPI", "parentRefs": [{"name": "gw"}]}}
            }))
            .unwrap();
            mdeps.create(&PostParams::default(), &resource).await.unwrap();
        }

        let dir = std::env::temp_dir().join(format!("mlrollout-scale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: mem, cluster: {{server: \"http://127.0.0.1:{api_port}\"}}}}]\nusers: [{{name: u, user: {{token: t}}}}]\ncontexts: [{{name: c, context: {{cluster: mem, user: u, namespace: scale}}}}]\ncurrent-context: c\n"
            ),
        )
        .unwrap();
        let metrics_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let started = Instant::now();
        let child = Command::new(&binary)
            .args(["run", "--metrics-addr", &format!("127.0.0.1:{metrics_port}"), "--log-level", "warn"])
            .env("KUBECONFIG", &kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mlrollout run starts");
        let operator = Operator(child);
        let pid = operator.0.id();
        let initial = reconciled(&mdeps, n, None).await;
        let cpu_initial = proc_cpu_seconds(pid);
        let startup = started.elapsed();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let rss = proc_rss_kib(pid) as f64 / 1024.0;

        // A full resync: every resource changes (metadata only) and must be reconciled again.
        let cpu0 = proc_cpu_seconds(pid);
        let resync_started = Instant::now();
        for i in 0..n {
            let patch = serde_json::json!({"metadata": {"annotations": {"bench/resync": "1"}}});
            mdeps.patch(&format!("model-{i:04}"), &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let resync_wall = resync_started.elapsed();
        let cpu_resync = proc_cpu_seconds(pid) - cpu0;
        let exposition = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let reconciles: f64 = exposition
            .lines()
            .find(|l| l.starts_with("mlrollout_reconcile_duration_seconds_count"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0);
        drop(operator);
        let _ = std::fs::remove_dir_all(&dir);

        println!("operator scale: {n} ModelDeployments, `mlrollout run` as its own process; API in memory behind HTTP, MLflow stubbed");
        println!("| measure | value | target |");
        println!("|---|---|---|");
        println!("| operator resident memory at steady state | {rss:.1} MiB | <= 64 MiB |");
        println!("| first reconcile of all {n}: wall time from process start | {:.2} s ({:.2} s after the first list) | |", startup.as_secs_f64(), initial.as_secs_f64());
        println!("| first reconcile of all {n}: operator CPU time (incl. start-up) | {cpu_initial:.2} s | <= 1 s |");
        println!("| full resync of all {n} (each touched): operator CPU time | {cpu_resync:.2} s ({:.1} s wall incl. the bench's patches) | <= 1 s |", resync_wall.as_secs_f64());
        println!("| reconciles counted by the operator | {reconciles:.0} | |");
        for q in [0.5, 0.9, 0.99] {
            println!("| reconcile duration p{:.0} | {:.1} ms | |", q * 100.0, percentile(&exposition, q).unwrap_or(f64::NAN) * 1000.0);
        }
    });
}
