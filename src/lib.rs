//! mlrollout: a Kubernetes operator that keeps machine-learning models healthy after they ship.
//!
//! Layout (functional core, imperative shell):
//! - [`api`]: the `ModelDeployment` custom resource, its defaults and validation.
//! - [`core`]: the pure decision (no I/O, no clock): lifecycle, children, conditions, names.
//! - [`controller`]: the imperative shell: run, observe (read cluster, registry), act (apply).
//! - Ports beside their adapters: [`registry`] (MLflow), [`analysis`] (Prometheus),
//!   [`drift::check`] (the drift engine), [`advisor`] (a language model).
//! - [`notify`]: notifications out (CloudEvents webhooks, Slack), delivered in the background.
//! - [`proxy`]: the data-plane sidecar (`mlrollout proxy`): metrics and traffic capture.
//! - [`storage`]: object stores (S3, GCS, Azure, local) and the layout of captured traffic.
//! - [`simulate`]: the core played against a simulated cluster.
//! - [`cli`]: the `mlrollout` command (also a kubectl plugin).
//! - [`webhooks`]: registry events in (MLflow webhooks), which make reconciles come earlier.

pub mod advisor;
pub mod analysis;
pub mod api;
pub mod cli;
pub mod controller;
pub mod core;
pub mod drift;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod mlflow;
pub mod notify;
pub mod proxy;
pub mod registry;
pub mod retry;
pub mod server;
pub mod simulate;
pub mod storage;
pub mod telemetry;
pub mod webhooks;
