//! The real `mlrollout proxy` binary as a child process, on free loopback ports.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::http::{free_port, get};
use super::process::{GuardedChild, scratch_dir};

pub struct ProxyProcess {
    child: GuardedChild,
    /// `127.0.0.1:<port>` clients talk to.
    pub addr: String,
    /// `127.0.0.1:<port>` of `/metrics`.
    pub metrics_addr: String,
    pub dir: PathBuf,
}

impl ProxyProcess {
    /// Starts a proxy in front of `upstream` (`http://127.0.0.1:<port>`) with extra flags, and
    /// waits until `/healthz` answers.
    pub fn start(upstream: &str, flags: &[&str]) -> ProxyProcess {
        Self::start_with_env(upstream, flags, &[])
    }

    pub fn start_with_env(upstream: &str, flags: &[&str], env: &[(&str, &str)]) -> ProxyProcess {
        let dir = scratch_dir("proxy");
        let (port, metrics_port) = (free_port(), free_port());
        let addr = format!("127.0.0.1:{port}");
        let metrics_addr = format!("127.0.0.1:{metrics_port}");
        let mut command = Command::new(env!("CARGO_BIN_EXE_mlrollout"));
        command
            .args([
                "proxy",
                "--listen",
                &addr,
                "--metrics-listen",
                &metrics_addr,
            ])
            .args(["--upstream", upstream, "--pod", "test-pod"])
            .args(flags)
            .env("RUST_LOG", "info");
        for (key, value) in env {
            command.env(key, value);
        }
        let child =
            GuardedChild::spawn(&command, &dir.join("proxy.log"), None).expect("the proxy starts");
        let mut proxy = ProxyProcess {
            child,
            addr,
            metrics_addr,
            dir,
        };
        proxy.wait_healthy();
        proxy
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if get(&self.metrics_addr, "/healthz", Duration::from_secs(1))
                .is_ok_and(|r| r.status == 200)
            {
                return;
            }
            if let Some(exit) = self.child.try_exited() {
                panic!("the proxy exited ({exit}):\n{}", self.child.log_tail(40));
            }
            assert!(
                Instant::now() < deadline,
                "the proxy did not become healthy:\n{}",
                self.child.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn metrics(&self) -> String {
        get(&self.metrics_addr, "/metrics", Duration::from_secs(5))
            .expect("/metrics answers")
            .text()
    }

    /// Value of one series, written exactly as exported (`name{label="v"}`), 0 when absent.
    pub fn value(&self, series: &str) -> f64 {
        value_in(&self.metrics(), series)
    }

    /// The exposition text once `series` has `want` (the recorder counts off the request path,
    /// a moment after the answer); panics after 10 s.
    pub fn metrics_when(&self, series: &str, want: f64) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.metrics();
            if value_in(&text, series) == want {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{series} never became {want}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_tail(&self) -> String {
        self.child.log_tail(40)
    }

    /// SIGTERM, and waits for the exit (the last capture window is written by then).
    pub fn stop(&mut self) {
        self.child.stop();
    }
}

/// Value of `series` in exposition text, 0 when absent.
pub fn value_in(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The proxy sidecar the operator put into a variant's Deployment.
pub fn sidecar(
    deployment: &k8s_openapi::api::apps::v1::Deployment,
) -> &k8s_openapi::api::core::v1::Container {
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod template");
    pod.init_containers
        .iter()
        .flatten()
        .find(|c| c.name == "mlrollout-proxy")
        .expect("the proxy sidecar is injected")
}
