//! `mlrollout simulate --resource R --scenario S`: one JSON line per transition, then
//! `{"final": {...}}`.

use std::io::{ErrorKind, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::api::ModelDeployment;
use crate::simulate::scenario::Scenario;
use crate::simulate::{self, Line, SimulateError};

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// ModelDeployment manifest whose policy is tried.
    #[arg(long)]
    pub resource: PathBuf,
    /// Scenario YAML (see examples/scenarios/).
    #[arg(long)]
    pub scenario: PathBuf,
}

pub fn run(args: &SimulateArgs) -> ExitCode {
    match simulate_files(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mlrollout simulate: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Reads both files and streams the run: each line is printed as it happens, the scenario
/// having been checked (and any absurd one refused) before the first.
fn simulate_files(args: &SimulateArgs) -> Result<(), String> {
    let resource = read_resource(&args.resource)?;
    let scenario_text = std::fs::read_to_string(&args.scenario)
        .map_err(|e| format!("cannot read {}: {e}", args.scenario.display()))?;
    let not_valid = |e: &dyn std::fmt::Display| {
        format!("{} is not a valid scenario: {e}", args.scenario.display())
    };
    super::yaml::check_nesting(&scenario_text).map_err(|e| not_valid(&e))?;
    let scenario: Scenario = serde_yaml::from_str(&scenario_text).map_err(|e| not_valid(&e))?;
    let mut out = LineWriter::default();
    let (last, _status) = simulate::stream(&resource, &scenario, |line| out.write(to_json(line)))
        .map_err(|e| match e {
        SimulateError::Invalid(_) => not_valid(&e),
        other => other.to_string(),
    })?;
    if !out.stopped {
        // The last line: nothing runs after it, whether it was written or not.
        let _ = out.write(final_json(&last));
    }
    out.failure.map_or(Ok(()), Err)
}

/// Writes the lines to stdout as they come. A closed pipe stops the run quietly, the way Unix
/// tools end on SIGPIPE (`simulate … | head` ends at once); any other failure stops it and is
/// kept to be reported.
#[derive(Default)]
struct LineWriter {
    /// Nothing more is written (the pipe closed or a write failed).
    stopped: bool,
    failure: Option<String>,
}

impl LineWriter {
    fn write(&mut self, json: Result<String, String>) -> ControlFlow<()> {
        let flow = self.write_line(json);
        self.stopped = flow.is_break();
        flow
    }

    fn write_line(&mut self, json: Result<String, String>) -> ControlFlow<()> {
        let text = match json {
            Ok(text) => text,
            Err(e) => {
                self.failure = Some(format!("cannot write a line as JSON: {e}"));
                return ControlFlow::Break(());
            }
        };
        let mut stdout = std::io::stdout().lock();
        match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) if e.kind() == ErrorKind::BrokenPipe => ControlFlow::Break(()),
            Err(e) => {
                self.failure = Some(format!("cannot write the output: {e}"));
                ControlFlow::Break(())
            }
        }
    }
}

fn read_resource(path: &Path) -> Result<ModelDeployment, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    super::yaml::check_nesting(&text)
        .map_err(|e| format!("{} is not YAML: {e}", path.display()))?;
    let value: serde_json::Value =
        serde_yaml::from_str(&text).map_err(|e| format!("{} is not YAML: {e}", path.display()))?;
    super::check::check_value(&value)
        .map_err(|problems| format!("{} is invalid: {}", path.display(), problems.join("; ")))
}

fn to_json(line: &Line) -> Result<String, String> {
    serde_json::to_string(line).map_err(|e| e.to_string())
}

/// `{"final": {...}}`, the last line (its keys sorted, as recorded in the golden files).
fn final_json(last: &Line) -> Result<String, String> {
    let last = serde_json::to_value(last).map_err(|e| e.to_string())?;
    Ok(serde_json::json!({ "final": last }).to_string())
}
