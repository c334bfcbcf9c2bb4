//! The drift engine: statistics (pure, [`stats`]), data loading ([`data`]), the glue that
//! turns a `ModelDeployment`'s drift section into a verdict ([`engine`]), and the operator's
//! port onto all of it ([`check`]: the `DriftCheck` trait and its engine-backed adapter), and the
//! report to look at ([`report`]: a self-contained HTML page).

pub mod check;
pub mod data;
pub mod engine;
pub mod report;
pub mod stats;
