//! mlrollout: a Kubernetes operator that keeps machine-learning models healthy after they ship.
//!
//! Layout (functional core, imperative shell):
//! - [`api`]: the `ModelDeployment` custom resource, its defaults and validation.
//! - [`controller`]: observe (read cluster, registry) → decide (pure) → act (apply).
//! - [`registry`]: the model registry as the reconciler sees it.
//! - [`cli`]: the `mlrollout` command (also a kubectl plugin).

pub mod advisor;
pub mod analysis;
pub mod api;
pub mod cli;
pub mod controller;
pub mod drift;
pub mod error;
pub mod leader;
pub mod lifecycle;
pub mod metrics;
pub mod mlflow;
pub mod registry;
pub mod server;
pub mod simulate;
pub mod telemetry;
