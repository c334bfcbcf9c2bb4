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
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            provider: TrafficProvider::GatewayApi,
            route_name: None,
            parent_refs: Vec::new(),
            hostnames: Vec::new(),
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
