//! Careless and hostile input to the command line (issue 20): every command answers fast,
//! bounded and clearly. Needs nothing outside cargo.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // test code states expectations

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn mlrollout() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mlrollout"))
}

/// A fresh scratch folder for one test (its own name: the tests run in parallel).
fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mlrollout-hostile-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a command to its end (bounded), returning its exit status and stderr.
fn run_bounded(command: &mut Command, limit: Duration) -> (std::process::ExitStatus, String) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mlrollout runs");
    let status = wait_bounded(&mut child, limit);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
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
    let dir = scratch("yaml");
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

fn kubeconfig_for(server: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n    namespace: ml\n\
             current-context: c\nusers:\n- name: u\n  user:\n    token: t\n"
        ),
    )
    .unwrap();
    path
}

fn status_against(server: &str, extra: &[&str]) -> (std::process::ExitStatus, String, Duration) {
    let dir = scratch(&format!(
        "kube-{}",
        server.rsplit(':').next().unwrap_or("x")
    ));
    let started = Instant::now();
    let (status, stderr) = run_bounded(
        mlrollout()
            .args(["status", "fraud"])
            .args(extra)
            .env("KUBECONFIG", kubeconfig_for(server, &dir)),
        Duration::from_secs(20),
    );
    let took = started.elapsed();
    std::fs::remove_dir_all(&dir).ok();
    (status, stderr, took)
}

/// An API server that accepts the connection and never answers: the command gives up after
/// `--request-timeout` and names the server.
#[test]
fn control_commands_give_up_on_a_silent_api_server_and_name_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    // Accept and hold connections without a byte of answer.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let (status, stderr, took) = status_against(&server, &["--request-timeout", "1s"]);
    assert!(!status.success());
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        stderr.contains(&server) && stderr.contains("did not answer within 1s"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

/// A refused connection names the server too.
#[test]
fn a_refused_connection_names_the_server() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let server = format!("http://127.0.0.1:{port}");
    let (status, stderr, took) = status_against(&server, &[]);
    assert!(!status.success());
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}

/// A zero or unparsable timeout is a usage error.
#[test]
fn a_bad_request_timeout_is_a_usage_error() {
    for bad in ["0s", "soon"] {
        let out = mlrollout()
            .args(["status", "fraud", "--request-timeout", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--request-timeout"));
    }
}

/// Every dataset is read under a byte cap, and a device is not a dataset: both refused up
/// front with the reason and the flag to change.
#[test]
fn drift_data_over_the_byte_cap_or_a_device_is_refused_with_the_limit_named() {
    let dir = scratch("cap");
    let big = dir.join("big.csv");
    let mut csv = String::from("amount\n");
    for i in 0..200_000 {
        csv.push_str(&format!("{i}\n"));
    }
    std::fs::write(&big, csv).unwrap();
    let zero = dir.join("zero.csv");
    let _ = std::fs::remove_file(&zero);
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        run_bounded(mlrollout().arg("drift").args(args), Duration::from_secs(20))
    };
    let (status, stderr) = run(&[
        "--reference".as_ref(),
        big.as_os_str(),
        "--current".as_ref(),
        big.as_os_str(),
        "--max-bytes".as_ref(),
        "64KiB".as_ref(),
    ]);
    assert!(!status.success());
    assert!(
        stderr.contains("larger than the limit of 65536 bytes") && stderr.contains("--max-bytes"),
        "{stderr}"
    );
    let (status, stderr) = run(&[
        "--reference".as_ref(),
        zero.as_os_str(),
        "--current".as_ref(),
        big.as_os_str(),
    ]);
    assert!(!status.success());
    assert!(
        stderr.contains("is a character device, not a file"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

fn drift_json(args: &[&str]) -> (std::process::Output, serde_json::Value) {
    let out = mlrollout()
        .arg("drift")
        .args(args)
        .args(["--output", "json"])
        .output()
        .expect("mlrollout runs");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out, json)
}

/// Issue 20 point 8: timestamps nobody can read are an error naming the column and a value,
/// not every row silently dropped and "insufficient data"; tiny samples carry a warning.
#[test]
fn unreadable_timestamps_are_an_error_and_tiny_samples_a_warning() {
    let dir = scratch("ts");
    let ts = dir.join("ts.csv");
    std::fs::write(&ts, "ts,amount\nyesterday,1\nlast week,2\n").unwrap();
    let path = ts.to_str().unwrap();
    let (out, _) = drift_json(&[
        "--reference",
        path,
        "--current",
        path,
        "--window",
        "1h",
        "--timestamp-column",
        "ts",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no row has a readable timestamp") && stderr.contains("'yesterday'"),
        "{stderr}"
    );

    let one = dir.join("one.csv");
    std::fs::write(&one, "amount\n1\n").unwrap();
    let (out, json) = drift_json(&["--reference", one.to_str().unwrap(), "--current", path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let notes: Vec<&str> = json["notes"]
        .as_array()
        .map(|n| n.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("reference data has only 1 row")),
        "{notes:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 20 point 11: a named pipe (`--reference <(…)`) and `/dev/stdin` are read once, and
/// their content says what they are (Parquet starts with `PAR1`, anything else is CSV).
#[test]
fn pipes_and_stdin_are_read_once_and_sniffed() {
    let dir = scratch("fifo");
    let fifo = dir.join("reference");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo failed");
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let data = std::fs::read("examples/data/reference.csv").unwrap();
            std::fs::write(&fifo, data).unwrap();
        })
    };
    let current = std::fs::File::open("examples/data/current.csv").unwrap();
    let mut child = mlrollout()
        .arg("drift")
        .arg("--reference")
        .arg(&fifo)
        .args(["--current", "/dev/stdin", "--output", "json"])
        .stdin(current)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mlrollout runs");
    let status = wait_bounded(&mut child, Duration::from_secs(30));
    writer.join().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["reference_rows"], 5000);
    assert_eq!(report["current_rows"], 5000);
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 20 point 5: deep nesting is refused at once (the YAML scanner's cost grows with the
/// square of the depth), by every command that reads YAML.
#[test]
fn deeply_nested_yaml_is_refused_at_once() {
    let dir = scratch("deep");
    let deep = dir.join("deep.yaml");
    std::fs::write(
        &deep,
        format!(
            "kind: ModelDeployment\nspec: {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
    )
    .unwrap();
    let deep = deep.to_str().unwrap().to_owned();
    let commands: [Vec<&str>; 3] = [
        vec!["check", &deep],
        vec!["drift", "--resource", &deep],
        vec![
            "simulate",
            "--resource",
            "examples/fraud-detector.yaml",
            "--scenario",
            &deep,
        ],
    ];
    for args in commands {
        let (status, stderr) = run_bounded(mlrollout().args(&args), Duration::from_secs(10));
        assert!(!status.success(), "{args:?}");
        assert!(
            stderr.contains("nested deeper than 64 levels at line 2"),
            "{args:?}: {stderr}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 20 point 8: "1" on one side and "1.0" on the other are the same number written
/// differently; a categorical comparison says so instead of leaving a phantom drift unexplained.
#[test]
fn numbers_written_differently_as_categories_are_pointed_out() {
    let dir = scratch("num");
    let (a, b) = (dir.join("a.csv"), dir.join("b.csv"));
    std::fs::write(&a, "code\n1\n2\n1\n").unwrap();
    std::fs::write(&b, "code\n1.0\n2.0\n1.0\n").unwrap();
    let (out, json) = drift_json(&[
        "--reference",
        a.to_str().unwrap(),
        "--current",
        b.to_str().unwrap(),
        "--categorical",
        "code",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let notes = json["notes"].to_string();
    assert!(
        notes.contains("current '1.0' and reference '1' are the same number written differently"),
        "{notes}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 20 point 12: a wrongly typed field of a resource is named by its path in every
/// command that reads resources, and a bad flag is a usage error (exit 2).
#[test]
fn schema_errors_name_the_field_and_usage_errors_exit_2() {
    let dir = scratch("type");
    let bad = dir.join("bad.yaml");
    let example = std::fs::read_to_string("examples/fraud-detector.yaml").unwrap();
    assert!(
        example.contains("replicas: 2"),
        "the example sets replicas: 2"
    );
    std::fs::write(&bad, example.replace("replicas: 2", "replicas: two")).unwrap();
    let bad = bad.to_str().unwrap().to_owned();
    for args in [
        vec!["check", bad.as_str()],
        vec!["drift", "--resource", bad.as_str()],
        vec![
            "simulate",
            "--resource",
            bad.as_str(),
            "--scenario",
            "examples/scenarios/regression-rollback.yaml",
        ],
    ] {
        let out = mlrollout().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("spec.serving.replicas"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("expected i32"), "{args:?}: {stderr}");
    }
    for args in [
        vec!["drift", "--max-bytes", "lots"],
        vec!["drift", "--no-such-flag"],
        vec!["status"],
        vec!["simulate", "--resource", "x"],
        vec!["no-such-command"],
    ] {
        let out = mlrollout().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 14 point 9, found by the `parquet` fuzz target: a data page whose definition levels
/// run past their buffer made the arrow-rs decoder panic inside the reader (in a worker thread,
/// or in the caller when one column was read). It is now a MalformedData error on that file,
/// whichever columns are asked for, and `mlrollout drift` reports the file malformed and exits 1
/// with that one message (the caught panic is not printed as a crash).
#[test]
fn a_parquet_file_that_panics_the_decoder_is_malformed_data() {
    use mlrollout::api::Reason;
    use mlrollout::drift::data::{
        ColumnKind, ColumnRequest, DataFormat, Payload, Side, column_names, read_table,
    };
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/corpus/parquet/seed-crash-def-levels.parquet"
    );
    let payload = Payload::from_path(file);
    let names = column_names(&payload, DataFormat::Parquet, Side::Reference).unwrap();
    let mut decoder_failures = 0;
    for kind in [
        None,
        Some(ColumnKind::Numerical),
        Some(ColumnKind::Categorical),
    ] {
        let all: Vec<ColumnRequest> = names
            .iter()
            .map(|n| ColumnRequest::new(n.clone(), kind))
            .collect();
        let each = all.iter().map(|c| vec![c.clone()]);
        for columns in std::iter::once(all.clone()).chain(each) {
            let read = read_table(&payload, DataFormat::Parquet, &columns, Side::Reference);
            if let Err(e) = read
                && e.to_string()
                    .contains("the Parquet decoder failed on this file")
            {
                assert_eq!(e.reason(), Reason::MalformedData, "{e}");
                decoder_failures += 1;
            }
        }
    }
    assert!(decoder_failures >= 2, "{decoder_failures}");

    let (out, _) = drift_json(&["--reference", file, "--current", file]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        !stderr.contains("panicked at"),
        "a contained decoder panic is not reported as a crash: {stderr}"
    );
    assert!(
        stderr.contains("reference data") && stderr.contains("is malformed"),
        "{stderr}"
    );
}
