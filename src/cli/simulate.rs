//! `mlrollout simulate --resource R --scenario S`: one JSON line per transition, then
//! `{"final": {...}}`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::simulate::scenario::Scenario;
use crate::simulate::{self, Line};

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
        Ok(output) => {
            if super::output::print(&output).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("mlrollout simulate: {message}");
            ExitCode::FAILURE
        }
    }
}

fn simulate_files(args: &SimulateArgs) -> Result<String, String> {
    let resource_text = std::fs::read_to_string(&args.resource)
        .map_err(|e| format!("cannot read {}: {e}", args.resource.display()))?;
    let value: serde_json::Value = serde_yaml::from_str(&resource_text)
        .map_err(|e| format!("{} is not YAML: {e}", args.resource.display()))?;
    let resource = super::check::check_value(&value).map_err(|problems| {
        format!(
            "{} is invalid: {}",
            args.resource.display(),
            problems.join("; ")
        )
    })?;
    let scenario_text = std::fs::read_to_string(&args.scenario)
        .map_err(|e| format!("cannot read {}: {e}", args.scenario.display()))?;
    let scenario: Scenario = serde_yaml::from_str(&scenario_text)
        .map_err(|e| format!("{} is not a valid scenario: {e}", args.scenario.display()))?;
    let outcome = simulate::run(&resource, &scenario).map_err(|e| e.to_string())?;
    let mut out = String::new();
    for line in &outcome.lines {
        out.push_str(&to_json(line)?);
        out.push('\n');
    }
    let last = serde_json::to_value(&outcome.last).map_err(|e| e.to_string())?;
    out.push_str(&serde_json::json!({"final": last}).to_string());
    out.push('\n');
    Ok(out)
}

fn to_json(line: &Line) -> Result<String, String> {
    serde_json::to_string(line).map_err(|e| e.to_string())
}
