//! The operator's own Prometheus metrics (`prometheus-client`).

use crate::api::Severity;
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
pub struct FeatureLabels {
    pub namespace: String,
    pub name: String,
    pub feature: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThresholdLabels {
    pub namespace: String,
    pub name: String,
    pub level: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MeasurementLabels {
    pub namespace: String,
    pub name: String,
    pub metric: String,
    pub variant: String,
    pub threshold: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub namespace: String,
    pub name: String,
    pub metric: String,
    pub verdict: String,
    pub threshold: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    pub namespace: String,
    pub name: String,
    pub trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub namespace: String,
    pub name: String,
    pub outcome: String,
    pub reason: String,
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
    pub drift_psi: Family<FeatureLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub drift_psi_threshold: Family<ThresholdLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub drift_severity: Family<ResourceLabels, Gauge>,
    pub analysis_value: Family<MeasurementLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub analysis_verdicts: Family<VerdictLabels, Counter>,
    pub retraining_attempts: Family<TriggerLabels, Counter>,
    pub rollout_outcomes: Family<OutcomeLabels, Counter>,
}

/// Buckets of `reconcile_duration_seconds`: a millisecond to ten seconds.
const RECONCILE_SECONDS_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Registers an empty family of labelled metrics.
fn family<M>(registry: &mut Registry, name: &str, help: &str) -> M
where
    M: prometheus_client::registry::Metric + Clone + Default,
{
    register(registry, name, help, M::default())
}

/// Registers a metric and hands back the handle the operator updates.
fn register<M>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    registry.register(name, help, metric.clone());
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("mlrollout");
        // Fields in registration order: that is the order of the exposition.
        Self {
            drift_psi: family(
                &mut r,
                "drift_psi",
                "Population Stability Index per feature at the last drift check",
            ),
            drift_psi_threshold: family(
                &mut r,
                "drift_psi_threshold",
                "PSI thresholds of each resource (level=warning|high)",
            ),
            drift_severity: family(
                &mut r,
                "drift_severity",
                "Dataset drift severity at the last check: 0 ok, 1 medium, 2 high",
            ),
            analysis_value: family(
                &mut r,
                "analysis_value",
                "Last measured value of an analysis metric per variant, with its threshold",
            ),
            analysis_verdicts: family(
                &mut r,
                "analysis_verdicts",
                "Analysis measurements by verdict, with the threshold applied",
            ),
            retraining_attempts: family(
                &mut r,
                "retraining_attempts",
                "Retraining attempts started, by trigger",
            ),
            rollout_outcomes: family(
                &mut r,
                "rollout_outcomes",
                "Finished rollouts by outcome (Promoted, RolledBack, Aborted, Rejected) and reason",
            ),
            reconciles: family(&mut r, "reconciles", "Reconciliations by result"),
            reconcile_errors: family(
                &mut r,
                "reconcile_errors",
                "Failed reconciliations by error reason",
            ),
            reconcile_duration: register(
                &mut r,
                "reconcile_duration_seconds",
                "Time spent in one reconciliation",
                Histogram::new(RECONCILE_SECONDS_BUCKETS),
            ),
            phase: family(
                &mut r,
                "phase",
                "1 for the current lifecycle phase of each ModelDeployment",
            ),
            canary_weight: family(
                &mut r,
                "canary_weight_percent",
                "Percent of live traffic routed to the candidate",
            ),
            mirror_percent: family(
                &mut r,
                "mirror_percent",
                "Percent of live traffic mirrored to the candidate",
            ),
            registry: Arc::new(r),
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

    /// Records what a reconcile decided: drift scores with thresholds, new measurements with
    /// their thresholds, attempts started and rollouts finished.
    pub fn observe_decision(
        &self,
        namespace: &str,
        name: &str,
        spec: &crate::api::ModelDeploymentSpec,
        before: &crate::api::ModelDeploymentStatus,
        after: &crate::api::ModelDeploymentStatus,
    ) {
        self.observe_drift(namespace, name, spec, after);
        if let Some(analysis) = &after.analysis {
            let new_round =
                before.analysis.as_ref().map(|a| a.measurements) != Some(analysis.measurements);
            self.observe_analysis(namespace, name, analysis, new_round);
        }
        self.observe_transitions(namespace, name, before, after);
    }

    fn observe_drift(
        &self,
        namespace: &str,
        name: &str,
        spec: &crate::api::ModelDeploymentSpec,
        after: &crate::api::ModelDeploymentStatus,
    ) {
        if let Some(drift) = &after.drift {
            for f in &drift.features {
                self.drift_psi
                    .get_or_create(&FeatureLabels {
                        namespace: namespace.into(),
                        name: name.into(),
                        feature: f.name.clone(),
                    })
                    .set(f.psi);
            }
            let severity = match drift.severity {
                Severity::High => 2,
                Severity::Medium => 1,
                Severity::Ok => 0,
            };
            let resource = ResourceLabels {
                namespace: namespace.into(),
                name: name.into(),
            };
            self.drift_severity.get_or_create(&resource).set(severity);
        }
        if let Some(d) = &spec.drift {
            for (level, value) in [
                ("warning", d.thresholds.psi_warning),
                ("high", d.thresholds.psi_high),
            ] {
                self.drift_psi_threshold
                    .get_or_create(&ThresholdLabels {
                        namespace: namespace.into(),
                        name: name.into(),
                        level: level.into(),
                    })
                    .set(value);
            }
        }
    }

    /// Last values per variant; verdicts counted once per round of measurements.
    fn observe_analysis(
        &self,
        namespace: &str,
        name: &str,
        analysis: &crate::api::AnalysisStatus,
        new_round: bool,
    ) {
        for m in &analysis.metrics {
            let Some(last) = m.recent.last() else {
                continue;
            };
            for (variant, value) in [("candidate", last.candidate), ("stable", last.stable)] {
                if let Some(v) = value {
                    self.analysis_value
                        .get_or_create(&MeasurementLabels {
                            namespace: namespace.into(),
                            name: name.into(),
                            metric: m.name.clone(),
                            variant: variant.into(),
                            threshold: last.threshold.clone(),
                        })
                        .set(v);
                }
            }
            if new_round {
                self.analysis_verdicts
                    .get_or_create(&VerdictLabels {
                        namespace: namespace.into(),
                        name: name.into(),
                        metric: m.name.clone(),
                        verdict: last.verdict.to_string(),
                        threshold: last.threshold.clone(),
                    })
                    .inc();
            }
        }
    }

    /// Retraining attempts started and rollouts finished by this decision.
    fn observe_transitions(
        &self,
        namespace: &str,
        name: &str,
        before: &crate::api::ModelDeploymentStatus,
        after: &crate::api::ModelDeploymentStatus,
    ) {
        let started = |s: &crate::api::ModelDeploymentStatus| {
            s.retraining_attempts.iter().map(|a| a.number).max()
        };
        if started(after) > started(before)
            && let Some(a) = after.retraining_attempts.last()
        {
            self.retraining_attempts
                .get_or_create(&TriggerLabels {
                    namespace: namespace.into(),
                    name: name.into(),
                    trigger: a.trigger.to_string(),
                })
                .inc();
        }
        if (after.history.len() != before.history.len()
            || after.history.last() != before.history.last())
            && let Some(h) = after.history.last()
        {
            self.rollout_outcomes
                .get_or_create(&OutcomeLabels {
                    namespace: namespace.into(),
                    name: name.into(),
                    outcome: h.outcome.to_string(),
                    reason: h.reason.to_string(),
                })
                .inc();
        }
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
