//! The `mlrollout` command. Installed as `kubectl-mlrollout` it is also a kubectl plugin
//! (`kubectl mlrollout check ...`).

pub mod args;
pub mod check;
pub mod complete;
pub mod control;
pub mod drift;
pub mod output;
pub mod proxy;
pub mod run;
pub mod simulate;
pub mod yaml;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Keeps machine-learning models healthy after they ship.
#[derive(Debug, Parser)]
#[command(name = "mlrollout", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the ModelDeployment CustomResourceDefinition as YAML.
    Crd,
    /// Validate ModelDeployment manifests offline (schema, CEL rules, semantic checks) and
    /// explain what each one will do.
    Check {
        /// YAML files (multi-document files are fine; non-ModelDeployment documents are skipped).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Run the operator.
    Run(run::RunArgs),
    /// Run the data-plane sidecar in front of a model server: metrics for the analysis
    /// queries and a sample of live traffic written as Parquet windows for the drift check.
    Proxy(Box<proxy::ProxyArgs>),
    /// Compare a current dataset with a reference: data drift (KS, chi-square, PSI with
    /// FDR control and effect sizes), prediction shift and accuracy.
    Drift(drift::DriftArgs),
    /// Replay a scenario through the decision core with a virtual clock.
    Simulate(simulate::SimulateArgs),
    /// Promote the rollout: the next step, or `--full` to 100 % at once.
    Promote(control::PromoteArgs),
    /// Abort the rollout (or the retraining): everything back to stable.
    Abort(control::Target),
    /// Retry a rolled-back or failed rollout (or retrain when there is no candidate).
    Retry(control::Target),
    /// Pause: the phase stops advancing until `resume`.
    Pause(control::Target),
    /// Resume a paused resource.
    Resume(control::Target),
    /// Start a retraining attempt now (cooldown and daily budget still apply).
    Retrain(control::Target),
    /// Show phase, versions, weights, conditions and the last decisions; `-w` follows the
    /// rollout live until it settles.
    Status(control::StatusArgs),
    /// Print a shell completion script: `source <(mlrollout completion bash)`. (For
    /// `kubectl mlrollout`, link this binary as `kubectl_complete-mlrollout`; see the README.)
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Answer a completion request as `kubectl_complete-mlrollout` does (cobra's protocol).
    #[command(name = "__complete", hide = true)]
    Complete {
        /// The words after `mlrollout`, the last one being completed.
        #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
        words: Vec<String>,
    },
}

/// How this binary was started: by its own name, as a kubectl plugin, or as the plugin's
/// completion helper.
fn invoked_as() -> Option<String> {
    let argv0 = std::env::args_os().next()?;
    let name = std::path::Path::new(&argv0)
        .file_name()?
        .to_string_lossy()
        .into_owned();
    Some(name)
}

/// Parses arguments and runs the command.
pub fn main() -> ExitCode {
    let name = invoked_as().unwrap_or_default();
    if name.starts_with(complete::KUBECTL_COMPLETE_NAME) {
        let words: Vec<String> = std::env::args_os()
            .skip(1)
            .map(|w| w.to_string_lossy().into_owned())
            .collect();
        return complete::complete(&Cli::command(), &words);
    }
    let mut command = Cli::command();
    if name.starts_with("kubectl-mlrollout") {
        // Usage lines then read as what the person typed.
        command = command.bin_name("kubectl mlrollout");
    }
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Completion { shell } => complete::script(shell, &mut Cli::command()),
        Command::Complete { words } => complete::complete(&Cli::command(), &words),
        Command::Crd => match output::print(&crate::api::crd_yaml()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        },
        Command::Check { files } => check::run(&files),
        Command::Drift(args) => drift::run(args),
        Command::Proxy(args) => {
            crate::telemetry::init(crate::telemetry::LogFormat::Json, "info");
            proxy::main(*args)
        }
        Command::Simulate(args) => simulate::run(&args),
        Command::Promote(args) => {
            control::main(control::Action::Promote { full: args.full }, &args.target)
        }
        Command::Abort(t) => control::main(control::Action::Abort, &t),
        Command::Retry(t) => control::main(control::Action::Retry, &t),
        Command::Pause(t) => control::main(control::Action::Pause, &t),
        Command::Resume(t) => control::main(control::Action::Resume, &t),
        Command::Retrain(t) => control::main(control::Action::Retrain, &t),
        Command::Status(args) => control::status_main(&args),
        Command::Run(args) => {
            crate::telemetry::init(args.log_format, &args.log_level);
            match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => match runtime.block_on(run::run(args)) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("mlrollout: {e}");
                        ExitCode::FAILURE
                    }
                },
                Err(e) => {
                    eprintln!("mlrollout: cannot start the async runtime: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Installs the process-wide TLS provider (ring) once. kube and reqwest both use rustls; with
/// more than one provider compiled in, rustls refuses to pick one by itself.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
