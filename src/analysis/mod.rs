//! Analysis of the candidate against the stable variant: verdicts (pure, [`verdict`]), the
//! built-in metrics, and the [`Analyzer`] trait the reconciler measures through.

pub mod defaults;
pub mod prometheus;
pub mod verdict;

use futures::future::BoxFuture;

use crate::api::{AnalysisMetric, ModelDeploymentSpec};

pub use verdict::{MetricMeasurement, Verdict, judge, query_error};

/// Which gate is being measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnalysisStage {
    /// Mirrored traffic: candidate answers are discarded and compared with stable's.
    Shadow,
    /// Live traffic at a canary step.
    Canary,
}

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
/// that fails is a [`Verdict::Error`] measurement.
pub trait Analyzer: Send + Sync {
    fn measure<'a>(&'a self, request: MeasureRequest<'a>) -> BoxFuture<'a, Vec<MetricMeasurement>>;
}
