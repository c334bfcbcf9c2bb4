//! Reading a sequential metric's counters from Prometheus: requests and bad events of each
//! variant since the step began; the judging is [`crate::core::verdict::sequential`].

use super::MeasureRequest;
use super::prometheus::{PrometheusClient, QueryError};
use crate::api::AnalysisMetric;
use crate::core::verdict::builtin::render_since_step;
use crate::core::verdict::sequential::{Counts, counter_queries, measurement};
use crate::core::verdict::{MetricMeasurement, query_error};

/// One look of a sequential metric: four counter queries, then the judge.
pub(super) async fn measure(
    client: &PrometheusClient,
    request: &MeasureRequest<'_>,
    metric: &AnalysisMetric,
    address: &str,
    interval: &str,
) -> MetricMeasurement {
    let (total, bad) = counter_queries(&metric.sequential.clone().unwrap_or_default());
    let counts = |variant: &'static str| {
        let render = |template: &str| {
            render_since_step(
                template,
                request.namespace,
                request.name,
                variant,
                interval,
                request.since_step,
            )
        };
        let (total, bad) = (render(&total), render(&bad));
        async move {
            let token = request.bearer_token;
            let total = client.query_scalar(address, token, &total).await?;
            let bad = client.query_scalar(address, token, &bad).await?;
            Ok::<_, QueryError>(match (total, bad) {
                // A variant with requests but no bad-event series has none.
                (Some(total), bad) => Some(Counts {
                    bad: bad.filter(|b| !b.is_nan()).unwrap_or(0.0),
                    total,
                }),
                (None, _) => None,
            })
        }
    };
    match (counts("candidate").await, counts("stable").await) {
        (Ok(candidate), Ok(stable)) => measurement(metric, candidate, stable),
        (Err(e), _) | (_, Err(e)) => query_error(metric, e.to_string()),
    }
}
