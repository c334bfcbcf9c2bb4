//! `spec.traffic`: how requests are split between the stable and candidate variants.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Where traffic weights and mirroring are applied.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "(has(self.provider) && self.provider != 'gatewayAPI') || (has(self.parentRefs) && size(self.parentRefs) > 0)"
).message("traffic.parentRefs must name at least one Gateway when traffic.provider is gatewayAPI (or set provider: none)"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.provider) || self.provider != 'istio' || (has(self.hostnames) && size(self.hostnames) > 0)"
).message("traffic.hostnames must list the hosts of the VirtualService when traffic.provider is istio"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.backend) || self.backend.kind != 'InferencePool' || !has(self.provider) || self.provider == 'gatewayAPI'"
).message("traffic.backend.kind InferencePool needs traffic.provider gatewayAPI (an HTTPRoute routes to InferencePools; a VirtualService cannot)"))]
pub struct Traffic {
    /// `gatewayAPI` (HTTPRoute weights and RequestMirror), `istio` (VirtualService weights and
    /// mirror), or `none` (replica counts approximate the weights; no shadow traffic).
    #[serde(default)]
    pub provider: TrafficProvider,
    /// Name of the HTTPRoute or VirtualService the operator manages. Defaults to the resource name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub route_name: Option<String>,
    /// Gateways the HTTPRoute attaches to (Gateway API `parentRefs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub parent_refs: Vec<ParentReference>,
    /// Hostnames the route serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub hostnames: Vec<String>,
    /// What the HTTPRoute's backendRefs point at: each variant's `Service` (the default) or an
    /// `InferencePool` per variant (Gateway API Inference Extension), weighted alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<Backend>,
}

impl Traffic {
    /// Whether the route's backends are InferencePools.
    pub fn inference_pools(&self) -> Option<&EndpointPickers> {
        self.backend
            .as_ref()
            .filter(|b| b.kind == BackendKind::InferencePool)
            .and_then(|b| b.endpoint_pickers.as_ref())
    }
}

/// The kind of object each variant is reached through.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "self.kind != 'InferencePool' || has(self.endpointPickers)"
).message("traffic.backend.endpointPickers must name the endpoint picker (EPP) of each variant's InferencePool when traffic.backend.kind is InferencePool"))]
#[x_kube(validation = kube::core::Rule::new(
    "self.kind == 'InferencePool' || !has(self.endpointPickers)"
).message("traffic.backend.endpointPickers is only for traffic.backend.kind InferencePool"))]
pub struct Backend {
    /// `Service` (each variant's ClusterIP Service) or `InferencePool` (the operator creates
    /// an `inference.networking.k8s.io/v1` InferencePool per variant, named like its Service,
    /// selecting that variant's pods, and weights the HTTPRoute between the two pools).
    #[serde(default)]
    pub kind: BackendKind,
    /// The endpoint picker extension of each variant's InferencePool (`endpointPickerRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_pickers: Option<EndpointPickers>,
    /// `appProtocol` of the InferencePools: `http` (HTTP/1.1) or `kubernetes.io/h2c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<PoolAppProtocol>,
}

/// Kind of the HTTPRoute's backendRefs.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum BackendKind {
    /// A core `Service` per variant.
    #[default]
    Service,
    /// An `inference.networking.k8s.io/v1` `InferencePool` per variant.
    InferencePool,
}

/// Application protocol of an InferencePool's target ports.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolAppProtocol {
    /// HTTP/1.1.
    #[serde(rename = "http")]
    Http,
    /// HTTP/2 over cleartext.
    #[serde(rename = "kubernetes.io/h2c")]
    H2c,
}

impl PoolAppProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolAppProtocol::Http => "http",
            PoolAppProtocol::H2c => "kubernetes.io/h2c",
        }
    }
}

/// One endpoint picker per InferencePool: an EPP serves exactly one pool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPickers {
    /// The endpoint picker of the stable variant's pool (`<name>-stable`).
    pub stable: EndpointPickerRef,
    /// The endpoint picker of the candidate variant's pool (`<name>-candidate`).
    pub candidate: EndpointPickerRef,
}

/// An InferencePool's `endpointPickerRef`, as in the Inference Extension v1 API.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "(has(self.kind) && self.kind != 'Service') || has(self.port)"
).message("traffic.backend.endpointPickers: port is required when the endpoint picker is a Service (kind unset or Service)"))]
pub struct EndpointPickerRef {
    /// Name of the endpoint picker (usually its Service) in the resource's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// API group of the referent; empty (the default) is the core group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub group: Option<String>,
    /// Kind of the referent; `Service` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub kind: Option<String>,
    /// Port of the endpoint picker's Service (required for a Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// What the gateway does when the picker does not answer: `FailClose` (the default) or
    /// `FailOpen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_mode: Option<PickerFailureMode>,
}

/// How the gateway treats an endpoint picker that does not answer.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PickerFailureMode {
    /// Requests fail.
    FailClose,
    /// Requests go to an endpoint the gateway picks itself.
    FailOpen,
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            provider: TrafficProvider::GatewayApi,
            route_name: None,
            parent_refs: Vec::new(),
            hostnames: Vec::new(),
            backend: None,
        }
    }
}

/// Traffic-routing implementation.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum TrafficProvider {
    /// Gateway API `HTTPRoute` (gateway.networking.k8s.io/v1).
    #[default]
    #[serde(rename = "gatewayAPI")]
    GatewayApi,
    /// Istio `VirtualService` (networking.istio.io/v1).
    #[serde(rename = "istio")]
    Istio,
    /// No router: weights are approximated with replica counts.
    #[serde(rename = "none")]
    None,
}

/// A Gateway API parent reference.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// Name of the Gateway.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Gateway; defaults to the resource's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Listener name on the Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// Listener port on the Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}
