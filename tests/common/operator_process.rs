//! The operator as its own process: `mlrollout run` (the binary cargo built for this test run)
//! on the real control plane, scoped to a test's namespace, with its own client certificate
//! so that the API server's audit log names its writes. Killed with `kill -KILL` (nothing
//! graceful) and started again as often as a test wants; every start appends to one log.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::cluster::Cluster;
use super::process::GuardedChild;

/// How one test runs the operator: the same identity, flags and log for every start.
pub struct OperatorCommand {
    kubeconfig: PathBuf,
    namespace: String,
    data_dir: PathBuf,
    log: PathBuf,
    /// Processes started so far.
    pub starts: u32,
}

/// A running `mlrollout run`; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct OperatorProcess {
    process: GuardedChild,
    pub pid: u32,
}

impl OperatorCommand {
    /// The operator of `namespace`, authenticated as `user` (in `system:masters`), reading
    /// drift data under `data_dir` (`--data-dir`), logging to `log`.
    pub fn new(
        cluster: &Cluster,
        user: &str,
        namespace: &str,
        data_dir: &Path,
        log: &Path,
    ) -> OperatorCommand {
        OperatorCommand {
            kubeconfig: cluster.kubeconfig_for(user, &["system:masters"]),
            namespace: namespace.to_string(),
            data_dir: data_dir.to_path_buf(),
            log: log.to_path_buf(),
            starts: 0,
        }
    }

    /// Starts a new operator process.
    pub fn start(&mut self) -> OperatorProcess {
        let metrics = format!("127.0.0.1:{}", super::http::free_port());
        let mut command = Command::new(env!("CARGO_BIN_EXE_mlrollout"));
        command
            .arg("run")
            .args(["--namespace", &self.namespace])
            .args(["--metrics-addr", &metrics])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--mlflow-timeout-seconds", "5"])
            .args(["--prometheus-timeout-seconds", "5"])
            .args(["--log-format", "text", "--log-level", "info"])
            .env("KUBECONFIG", &self.kubeconfig)
            .env("POD_NAME", format!("operator-{}", self.starts));
        for var in [
            "RUST_LOG",
            "POD_NAMESPACE",
            "MLROLLOUT_NAMESPACE",
            "MLROLLOUT_METRICS_ADDR",
            "MLROLLOUT_LEADER_ELECTION",
            "MLROLLOUT_DATA_DIR",
            "KUBERNETES_SERVICE_HOST",
        ] {
            command.env_remove(var);
        }
        self.starts += 1;
        let process = GuardedChild::spawn(&command, &self.log, None)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", env!("CARGO_BIN_EXE_mlrollout")));
        let pid = process.server_pid();
        OperatorProcess { process, pid }
    }

    /// The last lines of the log of every process started.
    pub fn log_tail(&self, lines: usize) -> String {
        super::process::log_tail(&self.log, lines)
    }
}

impl OperatorProcess {
    /// `kill -KILL`: whatever it was doing (a request half sent, a status computed and not
    /// yet written, MLflow writes done and the status not) is cut off. Waits until it is gone.
    pub fn kill(mut self) {
        self.process.kill_tree();
    }

    /// `Some(how)` once the process has ended (it never should on its own).
    pub fn exited(&mut self) -> Option<String> {
        self.process.try_exited()
    }
}
