//! The operator's own Prometheus metrics (`prometheus-client`).

use crate::api::Severity;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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
    /// `"true"` for a dry-run metric (measured, never gating).
    pub dry_run: String,
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
pub struct NotificationLabels {
    /// `webhook` or `slack`.
    pub sink: String,
    /// The transition, e.g. `rolledBack`.
    pub event: String,
    /// `delivered`, `retried`, `failed` or `dropped`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub namespace: String,
    pub name: String,
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub source: String,
    pub outcome: String,
}

/// All metrics, registered under the `mlrollout` prefix.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    /// How to remove each labelled series of a resource, by (namespace, name): a deleted
    /// resource's series go with it.
    series: Arc<Mutex<SeriesByResource>>,
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
    /// Registry webhook deliveries by source and outcome (src/webhooks).
    pub registry_webhook_deliveries: Family<WebhookLabels, Counter>,
    /// Reconciles requested by registry webhooks.
    pub registry_webhook_reconciles: Counter,
    pub notifications: Family<NotificationLabels, Counter>,
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

/// The operator-wide families of the integrations (registry webhooks in, notifications out).
type IntegrationFamilies = (
    Family<WebhookLabels, Counter>,
    Counter,
    Family<NotificationLabels, Counter>,
);

fn integration_families(r: &mut Registry) -> IntegrationFamilies {
    (
        family(
            r,
            "registry_webhook_deliveries",
            "Registry webhook deliveries by outcome (accepted, duplicate, unrelated, bad_signature, stale, malformed, unavailable)",
        ),
        family(
            r,
            "registry_webhook_reconciles",
            "Reconciles requested by registry webhook deliveries",
        ),
        family(
            r,
            "notifications",
            "Notification deliveries by sink kind, event and outcome (delivered, retried, failed, dropped)",
        ),
    )
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("mlrollout");
        // The integrations' families first, then the fields in registration order: that is the
        // order of the exposition.
        let (registry_webhook_deliveries, registry_webhook_reconciles, notifications) =
            integration_families(&mut r);
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
            registry_webhook_deliveries,
            registry_webhook_reconciles,
            notifications,
            registry: Arc::new(r),
            series: Arc::default(),
        }
    }
}

/// Removes one series from its family.
type Forget = Box<dyn Fn() + Send>;

/// Per (namespace, name): each series by family and labels, and how to remove it.
type SeriesByResource = HashMap<(String, String), HashMap<String, Forget>>;

impl Metrics {
    /// The series `labels` of `family` (named `family_name`) for resource `namespace/name`, created if new and
    /// remembered so that [`Metrics::forget`] can remove it.
    fn series<L, M>(
        &self,
        family_name: &'static str,
        family: &Family<L, M>,
        labels: L,
        namespace: &str,
        name: &str,
    ) -> M
    where
        L: Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
        M: Clone + Send + Sync + 'static,
        fn() -> M: prometheus_client::metrics::family::MetricConstructor<M>,
    {
        let metric = family.get_or_create(&labels).clone();
        if let Ok(mut series) = self.series.lock() {
            let key = format!("{family_name}{labels:?}");
            let of_resource = series
                .entry((namespace.to_string(), name.to_string()))
                .or_default();
            of_resource.entry(key).or_insert_with(|| {
                let family = family.clone();
                Box::new(move || {
                    family.remove(&labels);
                })
            });
        }
        metric
    }

    /// Removes every series of resource `namespace/name` (it was deleted).
    pub fn forget(&self, namespace: &str, name: &str) {
        let removed = self
            .series
            .lock()
            .ok()
            .and_then(|mut s| s.remove(&(namespace.to_string(), name.to_string())));
        for forget in removed.into_iter().flat_map(HashMap::into_values) {
            forget();
        }
    }

    /// Resources with series, as (namespace, name).
    pub fn resources(&self) -> Vec<(String, String)> {
        self.series
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default()
    }
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
        for candidate in Phase::ALL {
            self.series(
                "phase",
                &self.phase,
                PhaseLabels {
                    namespace: namespace.into(),
                    name: name.into(),
                    phase: candidate.as_str().into(),
                },
                namespace,
                name,
            )
            .set(i64::from(candidate == phase));
        }
        let labels = ResourceLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        self.series(
            "canary_weight",
            &self.canary_weight,
            labels.clone(),
            namespace,
            name,
        )
        .set(weight.into());
        self.series(
            "mirror_percent",
            &self.mirror_percent,
            labels.clone(),
            namespace,
            name,
        )
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
            // A feature without a PSI (insufficient data) has no series: a gap, not a 0.
            for (f, psi) in drift
                .features
                .iter()
                .filter_map(|f| f.psi.map(|psi| (f, psi)))
            {
                self.series(
                    "drift_psi",
                    &self.drift_psi,
                    FeatureLabels {
                        namespace: namespace.into(),
                        name: name.into(),
                        feature: f.name.clone(),
                    },
                    namespace,
                    name,
                )
                .set(psi);
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
            self.series(
                "drift_severity",
                &self.drift_severity,
                resource.clone(),
                namespace,
                name,
            )
            .set(severity);
        }
        if let Some(d) = &spec.drift {
            for (level, value) in [
                ("warning", d.thresholds.psi_warning),
                ("high", d.thresholds.psi_high),
            ] {
                self.series(
                    "drift_psi_threshold",
                    &self.drift_psi_threshold,
                    ThresholdLabels {
                        namespace: namespace.into(),
                        name: name.into(),
                        level: level.into(),
                    },
                    namespace,
                    name,
                )
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
                    self.series(
                        "analysis_value",
                        &self.analysis_value,
                        MeasurementLabels {
                            namespace: namespace.into(),
                            name: name.into(),
                            metric: m.name.clone(),
                            variant: variant.into(),
                            threshold: last.threshold.clone(),
                        },
                        namespace,
                        name,
                    )
                    .set(v);
                }
            }
            if new_round {
                self.series(
                    "analysis_verdicts",
                    &self.analysis_verdicts,
                    VerdictLabels {
                        namespace: namespace.into(),
                        name: name.into(),
                        metric: m.name.clone(),
                        verdict: last.verdict.to_string(),
                        threshold: last.threshold.clone(),
                        dry_run: m.dry_run.to_string(),
                    },
                    namespace,
                    name,
                )
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
            self.series(
                "retraining_attempts",
                &self.retraining_attempts,
                TriggerLabels {
                    namespace: namespace.into(),
                    name: name.into(),
                    trigger: a.trigger.to_string(),
                },
                namespace,
                name,
            )
            .inc();
        }
        if (after.history.len() != before.history.len()
            || after.history.last() != before.history.last())
            && let Some(h) = after.history.last()
        {
            self.series(
                "rollout_outcomes",
                &self.rollout_outcomes,
                OutcomeLabels {
                    namespace: namespace.into(),
                    name: name.into(),
                    outcome: h.outcome.to_string(),
                    reason: h.reason.to_string(),
                },
                namespace,
                name,
            )
            .inc();
        }
    }

    /// Counts one registry webhook delivery (from MLflow) and the reconciles it requested.
    pub fn observe_registry_webhook(&self, outcome: &str, triggered: usize) {
        self.registry_webhook_deliveries
            .get_or_create(&WebhookLabels {
                source: "mlflow".into(),
                outcome: outcome.into(),
            })
            .inc();
        self.registry_webhook_reconciles
            .inc_by(u64::try_from(triggered).unwrap_or(u64::MAX));
    }

    /// Counts one delivery outcome of a notification (not per resource: sinks are few).
    pub fn observe_notification(&self, sink: &str, event: &str, outcome: &str) {
        self.notifications
            .get_or_create(&NotificationLabels {
                sink: sink.into(),
                event: event.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests;
