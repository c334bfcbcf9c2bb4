//! A real MLflow tracking/registry server, started once per test binary.
//!
//! ```ignore
//! let srv = common::mlflow::mlflow_server();
//! let base = format!("{}/api/2.0/mlflow", srv.uri());
//! ```
//!
//! Binaries come from `tests/harness/install.sh` (env `MLROLLOUT_MLFLOW_BIN`,
//! `MLROLLOUT_PYTHON`, else `target/pyenv`). The server runs in its own
//! process group under a watchdog (see `process.rs`) and is killed, with all
//! its workers, when the test process exits; its scratch dir under
//! `target/tmp` is then deleted (set `MLROLLOUT_KEEP_TEST_DIRS=1` to keep it).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::http;
use super::process::{GuardedChild, scratch_dir};

/// How long to wait for `/health` (start-up is 18–50 s on a loaded 2-core box).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(180);

const INSTALL_HINT: &str = "run the README test command (tests/harness/install.sh), then \
     `. target/harness.env` (sets MLROLLOUT_MLFLOW_BIN / MLROLLOUT_PYTHON)";

pub struct MlflowServer {
    port: u16,
    dir: PathBuf,
    startup: Duration,
    process: GuardedChild,
    /// Servers killed by [`MlflowServer::kill`]: their watchdogs remove the scratch dir when
    /// dropped, after the live server (declared first) has stopped.
    retired: Vec<GuardedChild>,
}

static SHARED: OnceLock<Result<MlflowServer, String>> = OnceLock::new();

/// The MLflow server shared by every test in this binary, started on first
/// use. Plain blocking code: callable from any thread, inside or outside a
/// tokio runtime (from async code prefer `tokio::task::spawn_blocking` for the
/// first call, since start-up blocks for up to a few tens of seconds).
/// Panics (in every caller) if the server cannot be started.
pub fn mlflow_server() -> &'static MlflowServer {
    match SHARED.get_or_init(|| MlflowServer::try_start(STARTUP_TIMEOUT)) {
        Ok(server) => server,
        Err(msg) => panic!("{msg}"),
    }
}

impl MlflowServer {
    /// Starts a private server (stopped when dropped). Most tests should use
    /// the shared [`mlflow_server`] instead: start-up costs 20–50 s.
    pub fn start() -> MlflowServer {
        Self::try_start(STARTUP_TIMEOUT).unwrap_or_else(|msg| panic!("{msg}"))
    }

    fn try_start(timeout: Duration) -> Result<MlflowServer, String> {
        let bin = mlflow_bin();
        let mut last_err = String::new();
        for _attempt in 0..3 {
            match Self::try_start_once(&bin, timeout) {
                Ok(server) => {
                    eprintln!(
                        "mlflow server ready at {} in {:.1?} (dir {})",
                        server.uri(),
                        server.startup,
                        server.dir.display()
                    );
                    return Ok(server);
                }
                Err((msg, retry)) => {
                    last_err = msg;
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last_err)
    }

    /// `Err((message, worth_retrying))`.
    fn try_start_once(bin: &Path, timeout: Duration) -> Result<MlflowServer, (String, bool)> {
        let dir = scratch_dir("mlflow");
        let port = http::free_port();
        let log = dir.join("server.log");
        let started = Instant::now();
        let process = GuardedChild::spawn(&server_command(bin, &dir, port), &log, Some(&dir))
            .map_err(|e| {
                (
                    format!("cannot spawn {}: {e}. {INSTALL_HINT}", bin.display()),
                    false,
                )
            })?;
        let process = wait_healthy(process, port, &log, timeout)?;
        Ok(MlflowServer {
            port,
            dir,
            startup: started.elapsed(),
            process,
            retired: Vec::new(),
        })
    }

    /// `kill -KILL` of the server and its workers (a crash: nothing graceful). The port and
    /// the backend store stay for [`MlflowServer::restart`].
    pub fn kill(&mut self) {
        self.process.kill_tree();
    }

    /// Starts the server again on the same port, backend store and artifacts (after
    /// [`MlflowServer::kill`]); waits until `/health` answers and returns how long that took.
    pub fn restart(&mut self) -> Duration {
        let started = Instant::now();
        let log = self.log_path();
        let process = GuardedChild::spawn(
            &server_command(&mlflow_bin(), &self.dir, self.port),
            &log,
            None,
        )
        .unwrap_or_else(|e| panic!("cannot start MLflow again: {e}"));
        let process = wait_healthy(process, self.port, &log, STARTUP_TIMEOUT)
            .unwrap_or_else(|(msg, _)| panic!("{msg}"));
        self.retired
            .push(std::mem::replace(&mut self.process, process));
        started.elapsed()
    }

    /// Base URI, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Scratch dir holding `mlflow.db`, `artifacts/` and `server.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The last `max_lines` lines of the server log (for failure messages).
    pub fn log_tail(&self, max_lines: usize) -> String {
        self.process.log_tail(max_lines)
    }

    /// How long start-up took until `/health` answered 200.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }
}

/// `mlflow server` on `127.0.0.1:port` with its backend store and artifacts in `dir`.
fn server_command(bin: &Path, dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("server")
        .arg("--backend-store-uri")
        .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
        .arg("--artifacts-destination")
        .arg(dir.join("artifacts"))
        .arg("--serve-artifacts")
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--workers", "1"])
        .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .env("DO_NOT_TRACK", "true")
        .env("PYTHONUNBUFFERED", "1")
        // Registry webhooks (tests/registry_webhook.rs) to the test's loopback endpoint over
        // plain http, which MLflow refuses by default; a fixed key keeps webhook secrets
        // readable across a restart; the list of webhooks is re-read after 1 s, not 60 s. Only
        // a server with webhooks created on it is affected.
        .env("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
        .env("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https")
        .env(
            "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY",
            "bWxyb2xsb3V0LXRlc3Qtd2ViaG9vay1rZXktMzJieXQ=",
        )
        .env("MLFLOW_WEBHOOK_CACHE_TTL", "1")
        .env_remove("MLFLOW_TRACKING_URI")
        .current_dir(dir);
    cmd
}

/// Waits until the server answers `/health`. `Err((message, worth_retrying))`.
fn wait_healthy(
    mut process: GuardedChild,
    port: u16,
    log: &Path,
    timeout: Duration,
) -> Result<GuardedChild, (String, bool)> {
    let started = Instant::now();
    let authority = format!("127.0.0.1:{port}");
    loop {
        if let Some(status) = process.try_exited() {
            let tail = process.log_tail(60);
            let port_taken = tail.contains("ddress already in use") || tail.contains("Errno 98");
            return Err((
                format!(
                    "mlflow server exited during start-up ({status}); log {} (MLROLLOUT_KEEP_TEST_DIRS=1 keeps it):\n{tail}",
                    log.display()
                ),
                port_taken,
            ));
        }
        if let Ok(resp) = http::get(&authority, "/health", Duration::from_secs(2))
            && resp.status == 200
        {
            return Ok(process);
        }
        if started.elapsed() > timeout {
            let tail = process.log_tail(60);
            return Err((
                format!(
                    "mlflow server on {authority} not healthy after {timeout:?}; log {} (MLROLLOUT_KEEP_TEST_DIRS=1 keeps it):\n{tail}",
                    log.display()
                ),
                false,
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn venv_dir() -> PathBuf {
    match std::env::var_os("MLROLLOUT_PYENV") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("pyenv"),
    }
}

fn from_env_or_venv(var: &str, file: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "{var}={} does not exist; {INSTALL_HINT}",
            p.display()
        );
        return p;
    }
    let p = venv_dir().join("bin").join(file);
    assert!(
        p.exists(),
        "{var} is not set and {} does not exist; {INSTALL_HINT}",
        p.display()
    );
    p
}

/// The `mlflow` executable: env `MLROLLOUT_MLFLOW_BIN`, else
/// `$MLROLLOUT_PYENV/bin/mlflow`, else `<manifest>/target/pyenv/bin/mlflow`.
pub fn mlflow_bin() -> PathBuf {
    from_env_or_venv("MLROLLOUT_MLFLOW_BIN", "mlflow")
}

/// The venv's Python (with mlflow, scikit-learn, pandas, ...), for tests that
/// run scripts: env `MLROLLOUT_PYTHON`, else the venv as for [`mlflow_bin`].
pub fn python() -> PathBuf {
    from_env_or_venv("MLROLLOUT_PYTHON", "python")
}

/// Registers one new version of `model` the way a retraining Job does it
/// (`tests/scripts/train_models.py`), panicking with the script's stderr on failure.
pub fn train_version(tracking_uri: &str, model: &str) {
    train(tracking_uri, model, 0.8, &[]);
}

/// What [`train`] registered.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Trained {
    /// The new model version, e.g. `"2"`.
    pub version: String,
    /// The run's `accuracy` metric.
    pub accuracy: f64,
}

/// Trains and registers a new version of `model` with `tests/scripts/train_models.py`:
/// `quality` (0..1) says how learnable its data is (a higher one gives a better accuracy),
/// `tags` are set on the new version (`mlrollout.io/attempt=ID`, as a retraining Job does).
/// Panics with the script's stderr on failure.
pub fn train(tracking_uri: &str, model: &str, quality: f64, tags: &[(&str, &str)]) -> Trained {
    let mut command = Command::new(python());
    command.args([
        "tests/scripts/train_models.py",
        "--tracking-uri",
        tracking_uri,
        "--model-name",
        model,
        "--quality",
        &quality.to_string(),
    ]);
    for (key, value) in tags {
        command.args(["--lineage-tag", &format!("{key}={value}")]);
    }
    let output = command.output().expect("training script runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("training printed {line:?}: {e}"))
}

/// `GET /api/2.0/mlflow/{path_and_query}` on the server at `authority` (`host:port`): the JSON
/// answer, `None` when what it names does not exist (MLflow answers a missing alias with 400
/// `INVALID_PARAMETER_VALUE` "... not found"). Panics on any other failure.
pub fn get_json(authority: &str, path_and_query: &str) -> Option<serde_json::Value> {
    let path = format!("/api/2.0/mlflow/{path_and_query}");
    let answer = http::get(authority, &path, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("MLflow {path}: {e}"));
    match answer.status {
        200 => Some(serde_json::from_slice(&answer.body).expect("MLflow answers JSON")),
        404 => None,
        400 if answer.text().contains("not found") => None,
        other => panic!("MLflow {path}: HTTP {other}: {}", answer.text()),
    }
}

/// The version behind `alias` of `model` (`None`: no such alias).
pub fn alias(authority: &str, model: &str, alias: &str) -> Option<String> {
    let answer = get_json(
        authority,
        &format!(
            "registered-models/alias?name={}&alias={}",
            http::encode_component(model),
            http::encode_component(alias)
        ),
    )?;
    Some(answer["model_version"]["version"].as_str()?.to_string())
}

/// Points `alias` of `model` at `version`.
pub fn set_alias(authority: &str, model: &str, alias: &str, version: &str) {
    let body = serde_json::json!({"name": model, "alias": alias, "version": version});
    let path = "/api/2.0/mlflow/registered-models/alias";
    let answer = http::post_json(authority, path, &body.to_string(), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("MLflow {path}: {e}"));
    assert_eq!(answer.status, 200, "MLflow {path}: {}", answer.text());
}

/// Tag `key` of version `version` of `model` (`None`: no such tag or version).
pub fn version_tag(authority: &str, model: &str, version: &str, key: &str) -> Option<String> {
    let answer = get_json(
        authority,
        &format!(
            "model-versions/get?name={}&version={version}",
            http::encode_component(model)
        ),
    )?;
    answer["model_version"]["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
        .map(str::to_string)
}

/// Registers a scoring model (`tests/scripts/score_model.py`: positive-class probability plus
/// `shift`, features `f0`…`f3`) and returns its version.
pub fn register_scoring_model(tracking_uri: &str, model: &str, shift: f64) -> String {
    let output = Command::new(python())
        .args([
            "tests/scripts/score_model.py",
            "--tracking-uri",
            tracking_uri,
        ])
        .args(["--model-name", model, "--shift", &shift.to_string()])
        .output()
        .expect("scoring-model script runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = String::from_utf8_lossy(&output.stdout);
    let result: serde_json::Value =
        serde_json::from_str(line.lines().last().unwrap_or_default()).expect("one JSON line");
    result["version"].as_str().expect("a version").to_owned()
}

/// The real `mlflow models serve` of one model version (the venv's own packages:
/// `--env-manager local`), on a free loopback port, ready (`/ping`) when returned.
pub struct ModelServer {
    _child: GuardedChild,
    pub port: u16,
    pub startup: Duration,
}

impl ModelServer {
    pub fn start(tracking_uri: &str, model_uri: &str) -> ModelServer {
        let started = Instant::now();
        let dir = scratch_dir("model-server");
        let port = http::free_port();
        let bin = mlflow_bin();
        // `mlflow models serve` runs `uvicorn` by name: the venv's bin goes first on PATH.
        let venv_bin = bin.parent().expect("the venv's bin").to_path_buf();
        let path = format!(
            "{}:{}",
            venv_bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new(&bin);
        command
            .args(["models", "serve", "-m", model_uri, "--env-manager", "local"])
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--workers", "1"])
            .env("PATH", path)
            .env("MLFLOW_TRACKING_URI", tracking_uri)
            .env("MLFLOW_DISABLE_TELEMETRY", "true")
            .env("DO_NOT_TRACK", "true");
        let mut child = GuardedChild::spawn(&command, &dir.join("serve.log"), Some(&dir))
            .expect("mlflow models serve starts");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if http::get(
                &format!("127.0.0.1:{port}"),
                "/ping",
                Duration::from_secs(2),
            )
            .is_ok_and(|r| r.status == 200)
            {
                break;
            }
            if let Some(exit) = child.try_exited() {
                panic!(
                    "mlflow models serve exited ({exit}):\n{}",
                    child.log_tail(40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "mlflow models serve not ready in 120 s:\n{}",
                child.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        ModelServer {
            _child: child,
            port,
            startup: started.elapsed(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
