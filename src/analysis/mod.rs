//! The [`Analyzer`] port the reconciler measures through, and its Prometheus adapter. How a
//! measurement is judged, and which metrics apply, is pure policy: [`crate::core::verdict`].

pub mod prometheus;

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
}

/// Takes one measurement of every metric. Implementations never fail as a whole: a query
/// that fails is a [`crate::api::Verdict::Error`] measurement.
pub trait Analyzer: Send + Sync {
    fn measure<'a>(&'a self, request: MeasureRequest<'a>) -> BoxFuture<'a, Vec<MetricMeasurement>>;
}
