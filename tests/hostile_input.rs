//! Careless and hostile input to the command line (issue 20): every command answers fast,
//! bounded and clearly. Needs nothing outside cargo.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn mlrollout() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mlrollout"))
}

/// Waits for a child with a deadline, killing it past the deadline.
fn wait_bounded(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("child can be polled") {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A YAML syntax error is reported once for the file, not once per "document" forever.
#[test]
fn check_reports_a_yaml_syntax_error_once_and_stops() {
    let dir = std::env::temp_dir().join(format!("mlrollout-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "kind: ModelDeployment\nspec: [x\n").unwrap();
    let mut child = mlrollout()
        .arg("check")
        .arg(&bad)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mlrollout runs");
    let stderr = child.stderr.take().unwrap();
    // Read at most a few lines: the defect printed the same line without end.
    let lines: Vec<String> = BufReader::new(stderr)
        .lines()
        .take(10)
        .map(|l| l.unwrap())
        .collect();
    let status = wait_bounded(&mut child, Duration::from_secs(10));
    assert!(!status.success(), "invalid YAML is a failure");
    let errors: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("not valid YAML"))
        .collect();
    assert_eq!(errors.len(), 1, "one error for the file: {lines:#?}");
    assert!(
        errors[0].contains("bad.yaml") && errors[0].contains("line 3 column 1"),
        "the error names the file and where: {}",
        errors[0]
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `mlrollout crd | head -1`: a reader that stops early ends the output quietly, like Unix
/// tools, instead of a broken-pipe panic (exit 101).
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let mut child = mlrollout()
        .arg("crd")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mlrollout runs");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is gone now (dropped above); the CRD (~78 KB) does not fit in a pipe buffer,
    // so the writer meets the closed pipe.
    assert_eq!(first.trim(), "apiVersion: apiextensions.k8s.io/v1");
    let status = wait_bounded(&mut child, Duration::from_secs(10));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    assert!(status.success(), "exit {status:?}, stderr: {stderr}");
}
