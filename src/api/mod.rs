//! The `ModelDeployment` API (`mlrollout.io/v1alpha1`).
//!
//! Every field carries a doc comment (it becomes `kubectl explain` text) and a default where one
//! makes sense. What the schema and CEL rules can say is said there; the rest is checked by
//! [`validation`] and reported as `Ready=False, reason InvalidSpec`.

pub mod advisor;
pub mod conditions;
pub mod cron;
pub mod drift;
pub mod duration;
pub mod model;
pub mod notifications;
pub mod placement;
pub mod proxy;
pub mod retraining;
pub mod rollout;
pub mod status;
pub mod storage;
pub mod validation;
pub mod vocabulary;

use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

pub use advisor::{AdvisorProvider, AdvisorSpec};
pub use conditions::{ConditionType, Reason};
pub use drift::{
    CaptureSource, CaptureVariant, CurrentData, DataFormat, DataSource, DriftSpec, DriftThresholds,
    FeatureKind, FeatureSpec, LabelJoin, LabelledData, MultipleTesting, PerformanceSpec,
    PredictionDistribution,
};
pub use model::{ModelSource, SecretKeyReference, SecretReference, Serving};
pub use notifications::{
    NotificationEvent, NotificationSink, NotificationsSpec, SinkKind, SlackSink, WebhookSink,
};
pub use proxy::{CaptureSpec, ProxySpec, ScoreSpec};
pub use retraining::{
    EvaluationSpec, MetricDirection, RetrainingSpec, RetrainingTriggers, TriggerSeverity,
};
pub use rollout::{
    AnalysisMetric, AnalysisSpec, InconclusiveAction, Judge, NoDataPolicy, PostPromotionSpec,
    PrometheusSource, RelativeThreshold, RolloutSpec, RolloutStep, SequentialJudge, ShadowSpec,
    StepAnalysis, StepPause,
};
pub use status::{
    AdvisorStatus, AnalysisStatus, DeferredTrigger, DriftSummary, EvaluationStatus,
    FeatureDriftStatus, LabelJoinStatus, MeasurementRecord, MetricStatus, ModelDeploymentStatus,
    Phase, PostPromotionStatus, RegistryWrite, RetainedCandidate, RetrainingAttempt, RolloutRecord,
};
pub use storage::StorageSpec;
pub use traffic::{ParentReference, Traffic, TrafficProvider};
pub use vocabulary::{
    AttemptOutcome, CandidateSource, DriftTest, EventReason, PauseReason, RegistryOp,
    RolloutOutcome, RolloutReason, Severity, Trigger, Urgency, Verdict,
};

pub mod traffic;

pub mod experiment;
pub use experiment::{ExperimentOutcome, ExperimentSpec, ExperimentStatus};

/// API group of every mlrollout resource.
pub const GROUP: &str = "mlrollout.io";
/// Default model-server image: MLflow's own, which can serve any `models:/` URI.
pub const DEFAULT_SERVING_IMAGE: &str = "ghcr.io/mlflow/mlflow:v3.17.0";

/// A model in production: which MLflow version serves, how drift is watched, when a new
/// version is trained and how it earns its traffic.
// Several `printcolumn(type_ = ...)` entries read to clippy as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "mlrollout.io",
    version = "v1alpha1",
    kind = "ModelDeployment",
    plural = "modeldeployments",
    shortname = "mdep",
    category = "mlrollout",
    namespaced,
    // Children are named `<name>-stable` / `<name>-candidate` (Services: DNS-1035 labels of at
    // most 63 characters) and the name is a label value, so the name itself must leave room.
    validation = kube::core::Rule::new(
        "self.metadata.name.size() <= 53 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')"
    )
    .message(
        "metadata.name must be at most 53 characters of lowercase letters, digits and '-', starting with a letter and ending with a letter or digit: the operator names its Services <name>-candidate"
    ),
    status = "ModelDeploymentStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A machine-learning model in production, kept healthy by mlrollout: drift checks, retraining, evaluation, shadow and progressive rollout.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Lifecycle phase"
    ),
    printcolumn(
        name = "Stable",
        type_ = "string",
        json_path = ".status.stableVersion",
        description = "MLflow version serving as stable"
    ),
    printcolumn(
        name = "Candidate",
        type_ = "string",
        json_path = ".status.candidateVersion",
        description = "MLflow version being rolled out"
    ),
    printcolumn(
        name = "Weight",
        type_ = "integer",
        json_path = ".status.canaryWeight",
        description = "Percent of traffic on the candidate"
    ),
    printcolumn(
        name = "Drift",
        type_ = "string",
        json_path = ".status.drift.severity",
        description = "Severity of the last drift check"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    // `kubectl get -o wide` (priority 1): where the rollout stands and since when.
    printcolumn(
        name = "Step",
        type_ = "integer",
        json_path = ".status.currentStep",
        description = "Index of the current rollout step",
        priority = 1
    ),
    printcolumn(
        name = "Mirror",
        type_ = "integer",
        json_path = ".status.mirrorPercent",
        description = "Percent of traffic mirrored to the candidate",
        priority = 1
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Progressing\")].reason",
        description = "Reason of the Progressing condition",
        priority = 1
    ),
    printcolumn(
        name = "Last-Transition",
        type_ = "date",
        json_path = ".status.phaseStartedAt",
        description = "When the current phase (or step) started",
        priority = 1
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
        description = "The last decision",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.performance) || !has(self.performance.labelled) || !has(self.performance.labelled.join) || (has(self.serving) && has(self.serving.proxy) && has(self.serving.proxy.capture) && (!has(self.serving.proxy.enabled) || self.serving.proxy.enabled))")
    .message("performance.labelled.join needs serving.proxy.capture with the proxy enabled (the proxy captures the predictions the labels join)"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.rollout) || !has(self.rollout.experiment) || self.traffic.provider != 'none'")
    .message("rollout.experiment needs a router: traffic.provider gatewayAPI or istio (replica counts cannot route by header or cookie)"))]
pub struct ModelDeploymentSpec {
    /// The MLflow registered model and the alias (or pinned version) that is served.
    pub model: ModelSource,
    /// Model-server Deployment settings.
    #[serde(default)]
    pub serving: Serving,
    /// Traffic routing between the stable and candidate variants. Required: there is no
    /// sensible default router (`gatewayAPI` needs `parentRefs`; say `provider: none` for none).
    pub traffic: Traffic,
    /// Data-drift checks. Without this section no drift is computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftSpec>,
    /// Object storage behind the `s3://`, `gs://` and `az://` URIs of drift data and of the
    /// proxy's traffic capture: endpoint, region and the Secret with credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// Concept-drift checks (accuracy, prediction distribution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<PerformanceSpec>,
    /// Retraining policy. Without this section the operator never launches training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retraining: Option<RetrainingSpec>,
    /// How a candidate is compared with the champion in MLflow.
    #[serde(default)]
    pub evaluation: EvaluationSpec,
    /// Shadow phase on mirrored traffic.
    #[serde(default)]
    pub shadow: ShadowSpec,
    /// Progressive traffic shift and its analysis.
    #[serde(default)]
    pub rollout: RolloutSpec,
    /// Optional language-model advisor (off by default).
    #[serde(default)]
    pub advisor: AdvisorSpec,
    /// Where lifecycle transitions are announced (webhooks with CloudEvents, Slack). Absent:
    /// the operator's default sinks, if it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<NotificationsSpec>,
}

/// Schema for embedded Kubernetes templates (pod template, JobSpec): an object whose fields the
/// API server validates when the child is created. Keeping the full PodSpec schema out of the CRD
/// keeps it small enough for client-side `kubectl apply` and GitOps tools.
pub(crate) fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

impl ModelDeploymentSpec {
    /// Where the proxy writes captured traffic (`serving.proxy.capture.uri`), when it does.
    pub fn capture_base(&self) -> Option<&str> {
        let proxy = &self.serving.proxy;
        proxy
            .enabled
            .then_some(proxy.capture.as_ref())
            .flatten()
            .map(|c| c.uri.as_str())
    }

    /// The prefix (ending in `/`) of the traffic the proxy captured for `variant`, when it
    /// captures.
    pub fn capture_prefix(
        &self,
        namespace: &str,
        name: &str,
        variant: CaptureVariant,
    ) -> Option<String> {
        let prefix = crate::storage::layout::variant_prefix(
            self.capture_base()?,
            namespace,
            name,
            variant.as_str(),
        );
        Some(format!("{prefix}/"))
    }

    /// The URI of the current drift data: `drift.current.uri`, or the prefix of the captured
    /// traffic `drift.current.capture` names (ending in `/`: read as one dataset).
    pub fn current_data_uri(&self, namespace: &str, name: &str) -> Option<String> {
        let current = &self.drift.as_ref()?.current;
        if let Some(uri) = current.uri() {
            return Some(uri.to_owned());
        }
        let source = current.capture.as_ref()?;
        self.capture_prefix(namespace, name, source.variant)
    }
}

/// The CRD as YAML, exactly as committed under `crds/`.
pub fn crd_yaml() -> String {
    let crd = ModelDeployment::crd();
    // serde_yaml cannot fail on a CRD built from static types.
    serde_yaml::to_string(&crd).unwrap_or_default()
}
