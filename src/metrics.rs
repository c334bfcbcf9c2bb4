//! The operator's own Prometheus metrics (`prometheus-client`).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::Phase;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub namespace: String,
    pub name: String,
    pub phase: String,
}

/// All metrics, registered under the `mlrollout` prefix.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    pub reconciles: Family<ResultLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub phase: Family<PhaseLabels, Gauge>,
    pub canary_weight: Family<ResourceLabels, Gauge>,
    pub mirror_percent: Family<ResourceLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mlrollout");
        let reconciles = Family::<ResultLabels, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration = Histogram::new(
            [
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]
            .into_iter(),
        );
        let phase = Family::<PhaseLabels, Gauge>::default();
        let canary_weight = Family::<ResourceLabels, Gauge>::default();
        let mirror_percent = Family::<ResourceLabels, Gauge>::default();
        registry.register(
            "reconciles",
            "Reconciliations by result",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciliations by error reason",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconciliation",
            reconcile_duration.clone(),
        );
        registry.register(
            "phase",
            "1 for the current lifecycle phase of each ModelDeployment",
            phase.clone(),
        );
        registry.register(
            "canary_weight_percent",
            "Percent of live traffic routed to the candidate",
            canary_weight.clone(),
        );
        registry.register(
            "mirror_percent",
            "Percent of live traffic mirrored to the candidate",
            mirror_percent.clone(),
        );
        Self {
            registry: Arc::new(registry),
            reconciles,
            reconcile_errors,
            reconcile_duration,
            phase,
            canary_weight,
            mirror_percent,
        }
    }
}

impl Metrics {
    pub fn observe_reconcile(&self, elapsed: Duration, error_reason: Option<&str>) {
        self.reconcile_duration.observe(elapsed.as_secs_f64());
        let result = if error_reason.is_some() {
            "error"
        } else {
            "ok"
        };
        self.reconciles
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
        if let Some(reason) = error_reason {
            self.reconcile_errors
                .get_or_create(&ErrorLabels {
                    reason: reason.into(),
                })
                .inc();
        }
    }

    /// Records the phase (one-hot over all phases), weight and mirror of a resource.
    pub fn observe_state(
        &self,
        namespace: &str,
        name: &str,
        phase: Phase,
        weight: i32,
        mirror: i32,
    ) {
        for candidate in ALL_PHASES {
            self.phase
                .get_or_create(&PhaseLabels {
                    namespace: namespace.into(),
                    name: name.into(),
                    phase: candidate.as_str().into(),
                })
                .set(i64::from(candidate == phase));
        }
        let labels = ResourceLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        self.canary_weight.get_or_create(&labels).set(weight.into());
        self.mirror_percent
            .get_or_create(&labels)
            .set(mirror.into());
    }

    /// Text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

const ALL_PHASES: [Phase; 9] = [
    Phase::Pending,
    Phase::Stable,
    Phase::Retraining,
    Phase::Evaluating,
    Phase::Shadow,
    Phase::Progressing,
    Phase::Promoted,
    Phase::RolledBack,
    Phase::Failed,
];
