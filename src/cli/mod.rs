//! The `mlrollout` command. Installed as `kubectl-mlrollout` it is also a kubectl plugin
//! (`kubectl mlrollout check ...`).

pub mod check;
pub mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

/// Parses arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", crate::api::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Check { files } => check::run(&files),
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
