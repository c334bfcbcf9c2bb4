//! Manual control from the command line (`promote`, `abort`, `retry`, `pause`, `resume`,
//! `retrain`) and `status`. Requests are annotations with a fresh value, so the operator acts
//! on each once and the spec is never touched (GitOps-safe).

mod timeline;

use std::process::ExitCode;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;

use crate::api::{
    AnalysisStatus, ModelDeployment, ModelDeploymentStatus, RetrainingAttempt, RolloutRecord,
};
use crate::core::lifecycle::manual;

/// The resource a command acts on.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// Name of the ModelDeployment.
    pub name: String,
    /// Namespace (default: the kubeconfig's).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Longest wait for the API server (connect and answer), e.g. `30s`, `2m`.
    #[arg(long, default_value = "30s", value_parser = super::args::positive_duration)]
    pub request_timeout: std::time::Duration,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: Target,
    /// Follow the rollout live, one line per change, until it settles: exit 0 when stable or
    /// promoted, 1 when rolled back, failed or invalid.
    #[arg(short, long)]
    pub watch: bool,
    /// With `--watch`: give up (exit 1) when it has not settled after this long, e.g. `30m`.
    #[arg(long, requires = "watch", value_parser = super::args::positive_duration)]
    pub timeout: Option<std::time::Duration>,
}

#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub target: Target,
    /// Skip every remaining step and analysis: promote to 100 % now.
    #[arg(long)]
    pub full: bool,
}

/// A command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Promote { full: bool },
    Abort,
    Retry,
    Pause,
    Resume,
    Retrain,
    Status,
}

impl Action {
    /// What a person asked for, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Action::Promote { full: true } => "full promotion",
            Action::Promote { full: false } => "promotion to the next step",
            Action::Abort => "abort",
            Action::Retry => "retry",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Retrain => "retraining",
            Action::Status => "status",
        }
    }
}

/// `key=value` (or `key-` for a removal) for each annotation in a patch.
fn annotations_written(patch: &serde_json::Value) -> String {
    let Some(annotations) = patch["metadata"]["annotations"].as_object() else {
        return String::new();
    };
    annotations
        .iter()
        .map(|(key, value)| match value.as_str() {
            Some(v) => format!("{key}={v}"),
            None => format!("{key}-"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The annotation patch for an action at `now` (`None` for `status`).
pub fn annotation_patch(action: Action, now: Timestamp) -> Option<serde_json::Value> {
    let stamp = now.to_string();
    let (key, value): (&str, serde_json::Value) = match action {
        Action::Promote { full } => (
            manual::PROMOTE,
            format!("{}@{stamp}", if full { "full" } else { "next" }).into(),
        ),
        Action::Abort => (manual::ABORT, stamp.into()),
        Action::Retry => (manual::RETRY, stamp.into()),
        Action::Retrain => (manual::RETRAIN, stamp.into()),
        Action::Pause => (manual::PAUSE, "true".into()),
        Action::Resume => {
            return Some(serde_json::json!({"metadata": {"annotations": {
                manual::PAUSE: serde_json::Value::Null,
                manual::RESUME: stamp,
            }}}));
        }
        Action::Status => return None,
    };
    Some(serde_json::json!({"metadata": {"annotations": {key: value}}}))
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("mlrollout: cannot start the async runtime: {e}");
            None
        }
    }
}

pub fn main(action: Action, target: &Target) -> ExitCode {
    super::install_crypto_provider();
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(execute(action, target)) {
        Ok(text) => {
            if super::output::print(&text).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mlrollout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `status`, or with `--watch` the live timeline (exit 0 when it settles healthy).
pub fn status_main(args: &StatusArgs) -> ExitCode {
    if !args.watch {
        return main(Action::Status, &args.target);
    }
    super::install_crypto_provider();
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(follow(args)) {
        Ok(timeline::Settled::Healthy) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("mlrollout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A client for the kubeconfig's cluster and the server's address. Requests are bounded by
/// `--request-timeout`, except reads of a watch, which wait for the next change.
async fn connect(target: &Target, watching: bool) -> Result<(kube::Client, String), String> {
    let mut config = kube::Config::infer()
        .await
        .map_err(|e| format!("cannot load the kubeconfig: {e}"))?;
    // The client's own limits sit just past the overall one, which names the server.
    let io_limit = target.request_timeout + std::time::Duration::from_secs(1);
    config.connect_timeout = Some(io_limit);
    if !watching {
        config.read_timeout = Some(io_limit);
    }
    config.write_timeout = Some(io_limit);
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config)
        .map_err(|e| format!("cannot reach the cluster at {server}: {e}"))?;
    Ok((client, server))
}

fn no_answer(server: &str, limit: std::time::Duration, flag: &str) -> String {
    format!(
        "the API server {server} did not answer within {} ({flag})",
        crate::api::duration::format_duration(limit)
    )
}

/// Runs the command against the kubeconfig's cluster, bounded by `--request-timeout`: a server
/// that accepts the connection and never answers is named in the error, not waited on forever.
async fn execute(action: Action, target: &Target) -> Result<String, String> {
    let (client, server) = connect(target, false).await?;
    let timeout = target.request_timeout;
    match tokio::time::timeout(timeout, send(action, target, client, &server)).await {
        Ok(result) => result,
        Err(_) => Err(no_answer(&server, timeout, "--request-timeout")),
    }
}

/// Prints a timeline line whenever the resource changes, until it settles, is deleted, or
/// `--timeout` passes. A broken watch is resumed (with backoff) and said once on stderr.
async fn follow(args: &StatusArgs) -> Result<timeline::Settled, String> {
    let target = &args.target;
    let (client, server) = connect(target, true).await?;
    let namespace = target
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let api: Api<ModelDeployment> = Api::namespaced(client, &namespace);
    let explain = |e| explain_error(e, &namespace, &target.name, &server);
    let first = tokio::time::timeout(target.request_timeout, api.get(&target.name))
        .await
        .map_err(|_| no_answer(&server, target.request_timeout, "--request-timeout"))?
        .map_err(explain)?;
    let deadline = args.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut changes =
        std::pin::pin!(kube::runtime::watcher::watch_object(api, &target.name).default_backoff());
    let (mut shown, mut warned) = (String::new(), false);
    let mut current = Some(first);
    loop {
        if let Some(resource) = current.take() {
            let line = timeline::line(&resource);
            if line != shown {
                super::output::println(&timeline::stamped(Timestamp::now(), &line))
                    .map_err(|e| format!("cannot write the timeline: {e}"))?;
                shown = line;
            }
            match timeline::settled(&resource) {
                timeline::Settled::No => {}
                settled => return Ok(settled),
            }
        }
        let next = match deadline {
            Some(at) => tokio::time::timeout_at(at, changes.next())
                .await
                .map_err(|_| not_settled(&namespace, target, args))?,
            None => changes.next().await,
        };
        match next {
            Some(Ok(Some(resource))) => current = Some(resource),
            Some(Ok(None)) => {
                return Err(format!(
                    "ModelDeployment {namespace}/{} was deleted",
                    target.name
                ));
            }
            Some(Err(e)) if !warned => {
                eprintln!("mlrollout: the watch was interrupted ({e}); resuming");
                warned = true;
            }
            Some(Err(_)) => {}
            None => return Err("the watch ended".into()),
        }
    }
}

fn not_settled(namespace: &str, target: &Target, args: &StatusArgs) -> String {
    format!(
        "ModelDeployment {namespace}/{} has not settled within {} (--timeout)",
        target.name,
        args.timeout
            .map(crate::api::duration::format_duration)
            .unwrap_or_default()
    )
}

async fn send(
    action: Action,
    target: &Target,
    client: kube::Client,
    server: &str,
) -> Result<String, String> {
    let namespace = target
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let api: Api<ModelDeployment> = Api::namespaced(client, &namespace);
    let explain = |e| explain_error(e, &namespace, &target.name, server);
    if let Some(patch) = annotation_patch(action, Timestamp::now()) {
        api.patch(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(explain)?;
        return Ok(format!(
            "{namespace}/{}: {} requested ({})\n",
            target.name,
            action.describe(),
            annotations_written(&patch)
        ));
    }
    let resource = api.get(&target.name).await.map_err(explain)?;
    Ok(render_status(&resource))
}

/// One line a person can act on: the server's message, not a dump of its `Status`.
fn explain_error(error: kube::Error, namespace: &str, name: &str, server: &str) -> String {
    match error {
        kube::Error::Api(status) if status.code == 404 => {
            if status.details.as_ref().is_some_and(|d| d.name == name) {
                format!("ModelDeployment {namespace}/{name} not found")
            } else {
                // No such resource type (CRD not installed) or no such namespace.
                format!(
                    "ModelDeployment {namespace}/{name}: {} (is the mlrollout CRD installed?)",
                    status.message
                )
            }
        }
        kube::Error::Api(status) => format!(
            "ModelDeployment {namespace}/{name}: {} ({} {})",
            status.message, status.code, status.reason
        ),
        // Not an answer of the API server: say which server could not be reached.
        other => format!("ModelDeployment {namespace}/{name}: API server {server}: {other}"),
    }
}

/// A `kubectl argo rollouts get`-style view of a resource.
pub fn render_status(resource: &ModelDeployment) -> String {
    let default = Default::default();
    let status = resource.status.as_ref().unwrap_or(&default);
    let mut out = summary(resource, status);
    out.push_str(&conditions(status));
    if let Some(analysis) = &status.analysis {
        out.push_str(&analysis_section(analysis));
    }
    out.push_str(&retraining_section(&status.retraining_attempts));
    out.push_str(&history_section(&status.history));
    out
}

/// Name, phase, versions, traffic, then drift and the message when there are some.
fn summary(resource: &ModelDeployment, s: &ModelDeploymentStatus) -> String {
    let name = resource.metadata.name.as_deref().unwrap_or("");
    let ns = resource.metadata.namespace.as_deref().unwrap_or("");
    let mut out = format!("Name:        {ns}/{name}\n");
    out.push_str(&format!(
        "Phase:       {}{}\n",
        s.phase.as_str(),
        if s.paused { " (paused)" } else { "" }
    ));
    out.push_str(&format!("Model:       {}\n", resource.spec.model.name));
    out.push_str(&format!(
        "Stable:      {}\n",
        s.stable_version.as_deref().unwrap_or("-")
    ));
    out.push_str(&format!(
        "Candidate:   {}\n",
        s.candidate_version.as_deref().unwrap_or("-")
    ));
    out.push_str(&traffic_line(&resource.spec.rollout.resolved_steps(), s));
    if let Some(d) = &s.drift {
        out.push_str(&format!(
            "Drift:       {} ({:.0}% of features drifted){}\n",
            d.severity,
            d.drifted_share * 100.0,
            d.accuracy
                .map(|a| format!(", accuracy {a:.4}"))
                .unwrap_or_default()
        ));
    }
    if let Some(msg) = &s.message {
        out.push_str(&format!("Message:     {msg}\n"));
    }
    out
}

/// The weights, and the steps with the current one in brackets.
fn traffic_line(steps: &[crate::api::RolloutStep], s: &ModelDeploymentStatus) -> String {
    let steps: Vec<String> = steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let w = step.describe();
            if Some(i as i32) == s.current_step {
                format!("[{w}]")
            } else {
                w
            }
        })
        .collect();
    format!(
        "Traffic:     stable {}% / candidate {}%, mirror {}%   steps: {}\n",
        100 - s.canary_weight,
        s.canary_weight,
        s.mirror_percent,
        steps.join(" -> ")
    )
}

fn conditions(s: &ModelDeploymentStatus) -> String {
    let mut out = String::from("\nConditions:\n");
    for c in &s.conditions {
        out.push_str(&format!(
            "  {:<16} {:<6} {:<26} {}\n",
            c.type_, c.status, c.reason, c.message
        ));
    }
    out
}

/// Each metric's counters and its last measurement.
fn analysis_section(analysis: &AnalysisStatus) -> String {
    let mut out = format!("\nAnalysis ({} measurement(s)):\n", analysis.measurements);
    for m in &analysis.metrics {
        let last = m.recent.last();
        let value = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or("-".into());
        out.push_str(&format!(
            "  {:<16} failed {} inconclusive {} errors {}  last: {} (candidate {}, stable {}, {})\n",
            m.name,
            m.failed,
            m.inconclusive,
            m.consecutive_errors,
            last.map(|r| r.verdict.as_str()).unwrap_or("-"),
            value(last.and_then(|r| r.candidate)),
            value(last.and_then(|r| r.stable)),
            last.map(|r| r.threshold.as_str()).unwrap_or("")
        ));
    }
    out
}

/// The last five attempts, newest first (nothing when there were none).
fn retraining_section(attempts: &[RetrainingAttempt]) -> String {
    if attempts.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nRetraining attempts:\n");
    for a in attempts.iter().rev().take(5) {
        out.push_str(&format!(
            "  #{:<3} {:<10} {:<10} {:<28} {}\n",
            a.number,
            a.trigger,
            a.outcome,
            a.job_name,
            a.candidate_version
                .as_deref()
                .map(|v| format!("-> version {v}"))
                .unwrap_or_default()
        ));
    }
    out
}

/// The last five finished rollouts, newest first (nothing when there were none).
fn history_section(history: &[RolloutRecord]) -> String {
    if history.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nRollouts:\n");
    for h in history.iter().rev().take(5) {
        out.push_str(&format!(
            "  version {:<6} {:<11} {}\n",
            h.candidate_version, h.outcome, h.reason
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_action_is_a_fresh_annotation() {
        let t: Timestamp = "2026-11-26T06:00:00Z".parse().unwrap();
        let p = annotation_patch(Action::Promote { full: true }, t).unwrap();
        assert_eq!(
            p["metadata"]["annotations"]["mlrollout.io/promote"],
            "full@2026-11-26T06:00:00Z"
        );
        let r = annotation_patch(Action::Resume, t).unwrap();
        assert!(r["metadata"]["annotations"]["mlrollout.io/pause"].is_null());
        assert_eq!(
            r["metadata"]["annotations"]["mlrollout.io/resume"],
            "2026-11-26T06:00:00Z"
        );
        assert!(annotation_patch(Action::Status, t).is_none());
        let read = manual::read(
            &[(
                "mlrollout.io/promote".to_string(),
                "full@2026-11-26T06:00:00Z".to_string(),
            )]
            .into(),
            &Default::default(),
        );
        assert_eq!(read.requests[0].0, manual::Request::PromoteFull);
    }

    /// `example` with `status` (camelCase JSON) as its status.
    fn with_status(status: serde_json::Value) -> ModelDeployment {
        let mut resource: ModelDeployment =
            serde_yaml::from_str(include_str!("../../examples/fraud-detector.yaml")).unwrap();
        resource.status = Some(serde_json::from_value(status).unwrap());
        resource
    }

    #[test]
    fn status_view_of_an_empty_status() {
        let mut resource = with_status(serde_json::json!({}));
        resource.status = None;
        assert_eq!(
            render_status(&resource),
            concat!(
                "Name:        fraud/fraud-detector\n",
                "Phase:       Pending\n",
                "Model:       fraud-detector\n",
                "Stable:      -\n",
                "Candidate:   -\n",
                "Traffic:     stable 100% / candidate 0%, mirror 0%   steps: 10% -> 50% -> 100%\n",
                "\n",
                "Conditions:\n"
            )
        );
    }

    #[test]
    fn status_view_shows_every_section() {
        let attempt = |n: i64, outcome: &str, version: Option<&str>| {
            serde_json::json!({"number": n, "id": format!("a-{n}"), "trigger": "drift",
                "jobName": format!("fraud-detector-retrain-{n}"), "outcome": outcome,
                "candidateVersion": version})
        };
        let rollout = |version: &str, outcome: &str, reason: &str| serde_json::json!({"candidateVersion": version, "outcome": outcome, "reason": reason});
        let resource = with_status(serde_json::json!({
            "phase": "Progressing",
            "paused": true,
            "stableVersion": "3",
            "candidateVersion": "4",
            "canaryWeight": 50,
            "mirrorPercent": 10,
            "currentStep": 1,
            "drift": {"severity": "medium", "driftedShare": 0.25, "accuracy": 0.9},
            "message": "step 2 of 3: 50% of traffic on the candidate",
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Available",
                 "message": "version 3 is serving", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Progressing", "status": "True", "reason": "CanaryStep",
                 "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ],
            "analysis": {"measurements": 2, "metrics": [
                {"name": "error-rate", "passed": 2, "failed": 1, "inconclusive": 3,
                 "consecutiveErrors": 4, "recent": [
                    {"verdict": "Failed", "candidate": 0.5, "threshold": "<= 0.05"},
                    {"verdict": "Passed", "candidate": 0.0125, "stable": 0.01,
                     "threshold": "<= 1.5 x stable"}]},
                {"name": "latency-p99"}
            ]},
            "retrainingAttempts": [
                attempt(1, "Failed", None), attempt(2, "Succeeded", Some("4")),
                attempt(3, "TimedOut", None), attempt(4, "Aborted", None),
                attempt(5, "Succeeded", Some("5")), attempt(6, "Running", None)
            ],
            "history": [
                rollout("1", "Promoted", "Promoted"), rollout("2", "RolledBack", "AnalysisFailed"),
                rollout("3", "Promoted", "Promoted"), rollout("4", "Rejected", "EvaluationFailed"),
                rollout("5", "Aborted", "Aborted"), rollout("6", "Held", "PinnedVersion")
            ]
        }));
        assert_eq!(
            render_status(&resource),
            concat!(
                "Name:        fraud/fraud-detector\n",
                "Phase:       Progressing (paused)\n",
                "Model:       fraud-detector\n",
                "Stable:      3\n",
                "Candidate:   4\n",
                "Traffic:     stable 50% / candidate 50%, mirror 10%   steps: 10% -> [50%] -> 100%\n",
                "Drift:       medium (25% of features drifted), accuracy 0.9000\n",
                "Message:     step 2 of 3: 50% of traffic on the candidate\n",
                "\n",
                "Conditions:\n",
                "  Ready            True   Available                  version 3 is serving\n",
                "  Progressing      True   CanaryStep                 \n",
                "\n",
                "Analysis (2 measurement(s)):\n",
                "  error-rate       failed 1 inconclusive 3 errors 4  last: Passed (candidate 0.0125, stable 0.0100, <= 1.5 x stable)\n",
                "  latency-p99      failed 0 inconclusive 0 errors 0  last: - (candidate -, stable -, )\n",
                "\n",
                "Retraining attempts:\n",
                "  #6   drift      Running    fraud-detector-retrain-6     \n",
                "  #5   drift      Succeeded  fraud-detector-retrain-5     -> version 5\n",
                "  #4   drift      Aborted    fraud-detector-retrain-4     \n",
                "  #3   drift      TimedOut   fraud-detector-retrain-3     \n",
                "  #2   drift      Succeeded  fraud-detector-retrain-2     -> version 4\n",
                "\n",
                "Rollouts:\n",
                "  version 6      Held        PinnedVersion\n",
                "  version 5      Aborted     Aborted\n",
                "  version 4      Rejected    EvaluationFailed\n",
                "  version 3      Promoted    Promoted\n",
                "  version 2      RolledBack  AnalysisFailed\n"
            )
        );
    }
}
