//! The [`Analyzer`] port the reconciler measures through, and its Prometheus adapter. How a
//! measurement is judged, and which metrics apply, is pure policy: [`crate::core::verdict`].

pub mod prometheus;
mod sequential;

use futures::future::BoxFuture;

use crate::api::{AnalysisMetric, ModelDeploymentSpec};
use crate::core::verdict::{AnalysisStage, MetricMeasurement};

/// What to measure.
#[derive(Debug, Clone)]
pub struct MeasureRequest<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub spec: &'a ModelDeploymentSpec,
    pub stage: AnalysisStage,
    pub metrics: Vec<AnalysisMetric>,
    /// Bearer token for Prometheus, from `spec.rollout.analysis.prometheus.bearerTokenSecret`.
    pub bearer_token: Option<&'a str>,
    /// Time since the step (or shadow phase) began: the window over which a sequential
    /// metric's counters are read.
    pub since_step: std::time::Duration,
}

/// Takes one measurement of every metric. Implementations never fail as a whole: a query
/// that fails is a [`crate::api::Verdict::Error`] measurement.
pub trait Analyzer: Send + Sync {
    fn measure<'a>(&'a self, request: MeasureRequest<'a>) -> BoxFuture<'a, Vec<MetricMeasurement>>;
}
