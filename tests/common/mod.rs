//! Shared helpers for integration tests that run real external systems.
//!
//! Each test binary does `mod common;` and uses what it needs. Binaries and
//! env come from `tests/harness/install.sh` (see `target/harness.env`) and
//! `tests/harness/cluster.sh` (the real control plane, see [`cluster`]).
#![allow(dead_code)]

pub mod analysis;
pub mod chart;
pub mod cluster;
pub mod faults;
pub mod http;
pub mod mlflow;
pub mod operator;
pub mod operator_process;
pub mod own_cluster;
pub mod process;
pub mod prometheus;
pub mod proxy;
pub mod registry;
pub mod s3;
pub mod sample;
pub mod traffic;
pub mod world;
