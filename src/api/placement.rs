//! `spec.rollout.antiAffinity`, `spec.rollout.candidateMetadata` and `stableMetadata`: where the
//! two variants' pods run and what they are labelled with (names follow Argo Rollouts).

use std::collections::BTreeMap;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Keeps the candidate's pods off the nodes that run stable's pods (and stable's off the
/// candidate's), so a bad node does not take both variants down and a comparison of the two
/// is not a comparison of two nodes. Exactly one of the two forms.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.preferredDuringSchedulingIgnoredDuringExecution) != has(self.requiredDuringSchedulingIgnoredDuringExecution)")
    .message("rollout.antiAffinity needs exactly one of preferredDuringSchedulingIgnoredDuringExecution or requiredDuringSchedulingIgnoredDuringExecution"))]
pub struct AntiAffinity {
    /// The scheduler avoids nodes running the other variant when it can (with this weight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_during_scheduling_ignored_during_execution: Option<PreferredAntiAffinity>,
    /// A pod never runs on a node that runs the other variant's pods (a pod stays Pending when
    /// no such node is free).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_during_scheduling_ignored_during_execution: Option<RequiredAntiAffinity>,
}

/// A preferred anti-affinity term.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PreferredAntiAffinity {
    /// Weight of the preference among the pod's other preferences (1-100).
    #[serde(default = "default_weight")]
    #[schemars(range(min = 1, max = 100))]
    pub weight: i32,
}

/// A required anti-affinity term (it has no settings; write `{}`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct RequiredAntiAffinity {}

/// Labels and annotations added to one variant's pods, e.g. for metric queries that select a
/// variant by label. The operator's own labels (`mlrollout.io/*` and the
/// `app.kubernetes.io/name`, `managed-by` and `component` it sets) cannot be overridden.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodMetadata {
    /// Labels added to the variant's pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = kube::core::Rule::new(OWN_LABELS_RULE)
        .message("rollout.candidateMetadata and stableMetadata labels must not set the operator's labels (mlrollout.io/*, app.kubernetes.io/name, app.kubernetes.io/managed-by, app.kubernetes.io/component)"))]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to the variant's pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// CEL: no key of the map is one of the labels the operator sets on pods (selector labels
/// included: they must stay what the Deployment selects).
const OWN_LABELS_RULE: &str = "self.all(k, !k.startsWith('mlrollout.io/') && !(k in ['app.kubernetes.io/name', 'app.kubernetes.io/managed-by', 'app.kubernetes.io/component']))";

/// The labels a user may not set through `candidateMetadata` / `stableMetadata` (the same test
/// as the CEL rule, for specs that reach the operator without the API server's check).
pub fn is_operator_label(key: &str) -> bool {
    key.starts_with("mlrollout.io/")
        || matches!(
            key,
            "app.kubernetes.io/name"
                | "app.kubernetes.io/managed-by"
                | "app.kubernetes.io/component"
        )
}

fn default_weight() -> i32 {
    100
}
