//! The drift engine: statistics (pure, [`stats`]), data loading ([`data`]) and the glue that
//! turns a `ModelDeployment`'s drift section into a verdict ([`engine`]).

pub mod data;
pub mod engine;
pub mod stats;
