//! Operator scale: N ModelDeployments (default 200) reconciled by the real `mlrollout run`
//! process against the real control plane of the test harness (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler and kwok, see `tests/harness/cluster.sh`). The
//! operator gets the harness kubeconfig and watches one fresh namespace; MLflow is a tiny stub
//! answering the alias lookup. The numbers measured on the operator process (resident memory,
//! CPU time, reconcile durations from its /metrics) are the operator's own; the wall times
//! include the API server and the real controllers, which share the same cores.
//!
//! Why 200 and not 1,000: every ModelDeployment is a Deployment, a Service and an HTTPRoute,
//! and the real Deployment controller, scheduler and kwok add a ReplicaSet and a Pod (one
//! replica each) with their status writes — about a dozen API writes per resource, all on the
//! same 2 cores as the operator: 200 settle in under a minute, 1,000 take several. The
//! harness's Service range (10.96.0.0/16) has room for either (the bench checks the free
//! addresses first). `MLROLLOUT_SCALE_N=N` runs another size.
//!
//! `cargo bench --bench operator_scale` runs it;
//! with `--features harness`, `cargo bench --bench operator_scale -- --test` and
//! `cargo test --all-targets` run a quick check with 10 resources that the whole path works
//! (its numbers mean little, and under `cargo test` the operator is a debug build).
//! `MLROLLOUT_TEST_CLUSTER` names a running cluster (`tests/harness/cluster.sh up`); without
//! it a private one is started.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code states expectations

#[path = "../tests/common"]
#[allow(dead_code)]
mod common {
    pub mod cluster;
    pub mod process;
}

#[path = "support/run_args.rs"]
mod run_args;

use run_args::{Run, requested_run};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster;
use common::process::{GuardedChild, scratch_dir};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use mlrollout::api::{ModelDeployment, Phase};

const DEFAULT_N: usize = 200;
const QUICK_N: usize = 10;

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

/// `(parent pid, command name, utime + stime in seconds)` from `/proc/PID/stat`.
fn proc_stat(pid: u32) -> Option<(u32, String, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, tail) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    let fields: Vec<&str> = tail.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((ppid, comm, (utime + stime) / 100.0))
}

fn proc_cpu_seconds(pid: u32) -> f64 {
    proc_stat(pid).map_or(0.0, |(_, _, cpu)| cpu)
}

/// The operator process under its watchdog (the watchdog's child named `mlrollout`).
fn operator_pid(watchdog: u32) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|&pid| {
            proc_stat(pid).is_some_and(|(ppid, comm, _)| ppid == watchdog && comm == "mlrollout")
        })
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

/// The operator process and what the bench reads from it.
struct Operator {
    process: GuardedChild,
    pid: u32,
    metrics: String,
    http: reqwest::Client,
}

impl Operator {
    /// Panics with the operator's log if it is no longer running.
    fn assert_running(&mut self) {
        if let Some(status) = self.process.try_exited() {
            panic!(
                "`mlrollout run` exited ({status}); its log:\n{}",
                self.process.log_tail(40)
            );
        }
    }

    async fn exposition(&mut self) -> String {
        self.assert_running();
        let response = self.http.get(&self.metrics).send().await;
        match response {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => panic!("GET {}: {e}", self.metrics),
        }
    }

    /// Reconciles the operator counted so far.
    async fn reconciles(&mut self) -> u64 {
        let exposition = self.exposition().await;
        exposition
            .lines()
            .find(|l| l.starts_with("mlrollout_reconcile_duration_seconds_count"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    /// Waits until the operator has used no CPU for 2 s (it has nothing left to do) and counted
    /// at least `at_least` reconciles; returns the count. Quiet is read from `/proc`, not from
    /// /metrics, so that waiting costs the operator nothing.
    async fn quiet(&mut self, at_least: u64, limit: Duration, what: &str) -> u64 {
        let started = Instant::now();
        let mut last = (proc_cpu_seconds(self.pid), Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            self.assert_running();
            let cpu = proc_cpu_seconds(self.pid);
            if cpu - last.0 > 0.015 {
                last = (cpu, Instant::now());
            } else if last.1.elapsed() >= Duration::from_secs(2) {
                let count = self.reconciles().await;
                if count >= at_least {
                    return count;
                }
                last = (proc_cpu_seconds(self.pid), Instant::now());
            }
            assert!(
                started.elapsed() < limit,
                "{what}: the operator did not settle with at least {at_least} reconciles within {limit:?} (counted {})",
                self.reconciles().await
            );
        }
    }
}

/// Watches `api` until `pending` says nothing is missing (`None`) for `n` objects; returns how
/// long that took. On timeout the panic names a few objects and what they still miss.
async fn watch_until<K>(
    api: Api<K>,
    n: usize,
    limit: Duration,
    what: &str,
    pending: impl Fn(&K) -> Option<String>,
) -> Duration
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let started = Instant::now();
    let mut state: BTreeMap<String, Option<String>> = BTreeMap::new();
    let count =
        |state: &BTreeMap<String, Option<String>>| state.values().filter(|p| p.is_none()).count();
    let watching = async {
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    let name = o.meta().name.clone().unwrap_or_default();
                    state.insert(name, pending(&o));
                }
                Ok(watcher::Event::Delete(o)) => {
                    state.remove(&o.meta().name.clone().unwrap_or_default());
                }
                _ => {}
            }
            if count(&state) >= n {
                return;
            }
        }
    };
    if tokio::time::timeout(limit, watching).await.is_err() {
        let missing: Vec<String> = state
            .iter()
            .filter_map(|(name, p)| Some(format!("{name}: {}", p.as_ref()?)))
            .take(3)
            .collect();
        panic!(
            "{what}: only {}/{n} after {limit:?}; for example {missing:#?}",
            count(&state)
        );
    }
    started.elapsed()
}

/// Fails early, and says why, when the cluster's Service range cannot hold `needed` more
/// Services (the harness's range is small; every ModelDeployment has a Service). Reads the
/// ServiceCIDR objects; without them (an older API server) there is nothing to check.
async fn assert_service_addresses(client: &kube::Client, needed: usize) {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::networking::v1::ServiceCIDR;
    let Ok(cidrs) = Api::<ServiceCIDR>::all(client.clone())
        .list(&Default::default())
        .await
    else {
        println!("(no ServiceCIDR API: Service address capacity not checked)");
        return;
    };
    let ranges: Vec<String> = cidrs
        .items
        .iter()
        .filter_map(|c| c.spec.as_ref()?.cidrs.clone())
        .flatten()
        .filter(|c| !c.contains(':'))
        .collect();
    let capacity: u64 = ranges
        .iter()
        .filter_map(|c| c.split_once('/')?.1.parse::<u32>().ok())
        .map(|prefix| (1u64 << (32 - prefix.min(32))).saturating_sub(2))
        .sum();
    let services = Api::<Service>::all(client.clone())
        .list(&Default::default())
        .await
        .expect("listing Services");
    let used = services
        .items
        .iter()
        .filter(|s| {
            s.spec
                .as_ref()
                .and_then(|s| s.cluster_ip.as_deref())
                .is_some_and(|ip| !ip.is_empty() && ip != "None")
        })
        .count() as u64;
    let free = capacity.saturating_sub(used);
    assert!(
        needed as u64 <= free,
        "{needed} ModelDeployments need {needed} Service addresses, but the cluster's Service \
         range {ranges:?} has {free} free ({used} of {capacity} in use): lower \
         MLROLLOUT_SCALE_N or widen --service-cluster-ip-range"
    );
}

fn main() {
    let Some(run) = requested_run("operator_scale") else {
        return;
    };
    let n: usize = std::env::var("MLROLLOUT_SCALE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(match run {
            Run::Full => DEFAULT_N,
            Run::Quick => QUICK_N,
        });
    assert!(n > 0, "MLROLLOUT_SCALE_N must be at least 1");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench(n, run));
}

async fn bench(n: usize, run: Run) {
    let bench_started = Instant::now();
    let client = cluster::client().await;
    let version = client
        .apiserver_version()
        .await
        .map(|v| v.git_version)
        .unwrap_or_else(|e| format!("unknown ({e})"));
    assert_service_addresses(&client, n).await;
    let ns = cluster::namespace(&client, "bench-scale").await;
    let namespace = cluster::NamespaceGuard(ns.clone());
    let mlflow = mlflow_stub();

    // The resources exist before the operator starts: its first list sees all of them.
    let mdeps: Api<ModelDeployment> = Api::namespaced(client.clone(), &ns);
    let created = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let mdeps = mdeps.clone();
            async move {
                let resource: ModelDeployment = serde_json::from_value(serde_json::json!({
                    "apiVersion": "mlrollout.io/v1alpha1", "kind": "ModelDeployment",
                    "metadata": {"name": format!("model-{i:04}")},
                    "spec": {"model": {"trackingUri": format!("http://127.0.0.1:{mlflow}"), "name": "model"},
                             "serving": {"replicas": 1},
                             "traffic": {"provider": "gatewayAPI", "parentRefs": [{"name": "gw"}]}}
                }))
                .unwrap();
                mdeps
                    .create(&PostParams::default(), &resource)
                    .await
                    .unwrap_or_else(|e| panic!("creating model-{i:04}: {e}"));
            }
        })
        .buffer_unordered(8)
        .collect::<()>()
        .await;
    let created = created.elapsed();

    let dir = scratch_dir("operator-scale");
    let metrics_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_mlrollout"));
    command
        .args(["run", "--namespace", &ns, "--log-level", "warn"])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .env("KUBECONFIG", &cluster::cluster().kubeconfig)
        .env_remove("RUST_LOG");
    let started = Instant::now();
    let process = GuardedChild::spawn(&command, &dir.join("operator.log"), Some(&dir))
        .expect("`mlrollout run` starts");
    let pid = loop {
        if let Some(pid) = operator_pid(process.pgid()) {
            break pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no `mlrollout` process under the watchdog {}",
            process.pgid()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut operator = Operator {
        process,
        pid,
        metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
        http: reqwest::Client::new(),
    };

    // First reconcile: every resource serves its stable version for its current generation.
    let limit = Duration::from_secs(120 + n as u64);
    let initial = watch_until(
        mdeps.clone(),
        n,
        limit,
        "ModelDeployments Stable",
        |m: &ModelDeployment| {
            let status = m.status.clone().unwrap_or_default();
            let stable = status.phase == Phase::Stable
                && status.observed_generation == m.metadata.generation;
            (!stable).then(|| format!("{:?} {:?}", status.phase, status.conditions))
        },
    )
    .await;
    let cpu_initial = proc_cpu_seconds(pid);
    let startup = started.elapsed();

    // The real controllers and kwok make every stable Deployment available; each of their
    // status writes is a watch event the operator reconciles. Steady state: all available and
    // the operator quiet.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    watch_until(
        deployments,
        n,
        limit,
        "stable Deployments available",
        |d: &Deployment| {
            let status = d.status.clone().unwrap_or_default();
            let available = status.observed_generation == d.metadata.generation
                && status.available_replicas == Some(1);
            (!available).then(|| format!("{:?}", status.conditions))
        },
    )
    .await;
    let available = started.elapsed();
    let settled = operator.quiet(n as u64, limit, "settling").await;
    let steady = started.elapsed();
    let rss = proc_rss_kib(pid) as f64 / 1024.0;
    let cpu_steady = proc_cpu_seconds(pid);

    // A full resync: every resource changes (metadata only) and must be reconciled again.
    let cpu0 = proc_cpu_seconds(pid);
    let resync_started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let mdeps = mdeps.clone();
            async move {
                let patch = serde_json::json!({"metadata": {"annotations": {"bench/resync": "1"}}});
                mdeps
                    .patch(
                        &format!("model-{i:04}"),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("annotating model-{i:04}: {e}"));
            }
        })
        .buffer_unordered(8)
        .collect::<()>()
        .await;
    let resynced = operator.quiet(settled + n as u64, limit, "resync").await;
    let resync_wall = resync_started.elapsed();
    let cpu_resync = proc_cpu_seconds(pid) - cpu0;
    let exposition = operator.exposition().await;
    // Everything is still as it should be after the resync.
    watch_until(
        mdeps.clone(),
        n,
        limit,
        "ModelDeployments Stable after the resync",
        |m: &ModelDeployment| {
            let annotated = m
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("bench/resync"));
            let status = m.status.clone().unwrap_or_default();
            let stable = annotated && status.phase == Phase::Stable;
            (!stable).then(|| {
                format!(
                    "annotated {annotated}, {:?} {:?}",
                    status.phase, status.message
                )
            })
        },
    )
    .await;
    drop(operator);
    drop(namespace);

    let per_1000 = |v: f64| v * 1000.0 / n as f64;
    if run == Run::Quick {
        println!(
            "operator_scale: quick run with {n} resources ({} build); the bench is `cargo bench --bench operator_scale`",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        );
    }
    println!(
        "operator scale: {n} ModelDeployments in one namespace of a real kube-apiserver {version} \
         (etcd, kube-controller-manager, kube-scheduler, kwok: one ready Pod per Deployment); \
         `mlrollout run` as its own process with the harness kubeconfig; MLflow stubbed"
    );
    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!("| operator resident memory at steady state | {rss:.1} MiB | <= 64 MiB at 1,000 |");
    println!(
        "| first reconcile of all {n} (creates {} children): wall time from process start | {:.2} s ({:.2} s watched by the bench) | |",
        3 * n,
        startup.as_secs_f64(),
        initial.as_secs_f64()
    );
    println!(
        "| first reconcile of all {n}: operator CPU time (incl. start-up) | {cpu_initial:.2} s | |"
    );
    println!(
        "| until all {n} Deployments are available and the operator is quiet: wall / operator CPU | {:.1} s (available after {:.1} s) / {cpu_steady:.2} s | |",
        steady.as_secs_f64(),
        available.as_secs_f64()
    );
    println!(
        "| full resync of all {n} (each touched): operator CPU time | {cpu_resync:.2} s ({:.2} s per 1,000; {:.1} s wall incl. the bench's patches) | <= 1 s per 1,000 |",
        per_1000(cpu_resync),
        resync_wall.as_secs_f64()
    );
    println!(
        "| reconciles counted by the operator (first pass + steady state / resync) | {settled} / {} | |",
        resynced - settled
    );
    for q in [0.5, 0.9, 0.99] {
        println!(
            "| reconcile duration p{:.0} | {:.1} ms | |",
            q * 100.0,
            percentile(&exposition, q).unwrap_or(f64::NAN) * 1000.0
        );
    }
    println!(
        "(creating the {n} resources took {:.1} s; the whole bench {:.1} s)",
        created.as_secs_f64(),
        bench_started.elapsed().as_secs_f64()
    );
}
