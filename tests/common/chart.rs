//! The Helm chart rendered by the real Helm SDK for a test on the real cluster
//! (`tests/scripts/chart_check.py --rbac-only`): the ServiceAccount and RBAC manifests, the
//! operator's Deployment and its arguments, per scenario ("default", "namespaced").

/// Renders the chart for release `release` in `namespace`, the namespaced scenario watching
/// `watch`. Fails the test when the venv with helm-python-sdk is missing (`test` names the test
/// file in the hint) or when the script reports a failure.
pub fn rendered_for_cluster(
    release: &str,
    namespace: &str,
    watch: &[&str],
    test: &str,
) -> serde_json::Value {
    let hint = format!(
        "set MLROLLOUT_PYTHON to the test venv's python (it has helm-python-sdk), as in the \
         README's test command: `bash tests/run.sh`, or `bash tests/harness/install.sh && . \
         target/harness.env && cargo test --features harness --test {test}`"
    );
    let python = match std::env::var_os("MLROLLOUT_PYTHON") {
        Some(p) if !p.is_empty() => p,
        _ => panic!("MLROLLOUT_PYTHON is not set: {hint}"),
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/chart_check.py");
    let mut command = std::process::Command::new(&python);
    command.arg(script).args([
        "--rbac-only",
        "--release",
        release,
        "--namespace",
        namespace,
    ]);
    if !watch.is_empty() {
        command.args(["--watch-namespaces", &watch.join(",")]);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python:?}: {e}; {hint}"));
    assert!(
        output.status.success(),
        "chart_check.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let chart: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("chart_check.py prints JSON");
    assert_eq!(chart["failures"], serde_json::json!([]), "{chart}");
    chart
}
