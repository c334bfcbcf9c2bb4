//! InferencePools (Gateway API Inference Extension, `inference.networking.k8s.io/v1`): with
//! `spec.traffic.backend.kind: InferencePool` the HTTPRoute weights one pool per variant
//! instead of one Service per variant. Each pool is named like the variant's Service, selects
//! that variant's pods, and names the endpoint picker (EPP) the spec gives for it.
//!
//! Both pools always exist (an EPP is configured with the name of the one pool it serves, so
//! the candidate's EPP finds its pool even between rollouts); outside a rollout the
//! candidate's pool selects no pods and the HTTPRoute does not point at it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};

use crate::api::ModelDeploymentSpec;
use crate::api::traffic::EndpointPickerRef;
use crate::api::validation::ValidatedSpec;
use crate::core::names::{LABEL_VARIANT, Variant, common_labels, selector_labels, variant_name};

/// API group of InferencePool.
pub const GROUP: &str = "inference.networking.k8s.io";
/// Kind of InferencePool.
pub const KIND: &str = "InferencePool";

/// API resource of the v1 InferencePool.
pub fn resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(GROUP, "v1", KIND))
}

/// The pod port requests reach: the proxy's when the proxy is on (as the Service targets it),
/// else the model container's `http` port (the pod template's, or `spec.serving.port`).
pub fn target_port(validated: &ValidatedSpec) -> i32 {
    let serving = &validated.spec().serving;
    if serving.proxy.enabled {
        return serving.proxy.port;
    }
    validated
        .pod_template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .and_then(|pod| pod.containers.first())
        .and_then(|c| c.ports.as_ref())
        .and_then(|ports| ports.iter().find(|p| p.name.as_deref() == Some("http")))
        .map_or(serving.port, |p| p.container_port)
}

fn picker(reference: &EndpointPickerRef) -> serde_json::Value {
    let mut value = serde_json::json!({"name": reference.name});
    if let Some(group) = &reference.group {
        value["group"] = group.as_str().into();
    }
    if let Some(kind) = &reference.kind {
        value["kind"] = kind.as_str().into();
    }
    if let Some(port) = reference.port {
        value["port"] = serde_json::json!({"number": port});
    }
    if let Some(mode) = reference.failure_mode {
        value["failureMode"] = serde_json::to_value(mode).unwrap_or_default();
    }
    value
}

/// The InferencePools of a resource (stable, then candidate); none unless the spec asks for
/// InferencePool backends.
pub fn build(
    resource_name: &str,
    namespace: &str,
    validated: &ValidatedSpec,
    owner: &OwnerReference,
) -> Vec<DynamicObject> {
    let spec: &ModelDeploymentSpec = validated.spec();
    let Some(pickers) = spec.traffic.inference_pools() else {
        return Vec::new();
    };
    let port = target_port(validated);
    let app_protocol = spec.traffic.backend.as_ref().and_then(|b| b.app_protocol);
    [
        (Variant::Stable, &pickers.stable),
        (Variant::Candidate, &pickers.candidate),
    ]
    .into_iter()
    .map(|(variant, reference)| {
        let name = variant_name(resource_name, variant);
        let mut labels = common_labels(resource_name);
        labels.insert(LABEL_VARIANT.into(), variant.as_str().into());
        let mut object = DynamicObject::new(&name, &self::resource());
        object.metadata = ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        };
        let mut pool = serde_json::json!({
            "selector": {"matchLabels": selector_labels(resource_name, variant)},
            "targetPorts": [{"number": port}],
            "endpointPickerRef": picker(reference),
        });
        if let Some(protocol) = app_protocol {
            pool["appProtocol"] = protocol.as_str().into();
        }
        object.data = serde_json::json!({ "spec": pool });
        object
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::children::fixtures::owner;

    fn validated(extra: serde_json::Value) -> ValidatedSpec {
        let mut spec = serde_json::json!({
            "model": {"trackingUri": "http://m:5000", "name": "llm"},
            "traffic": {"parentRefs": [{"name": "gw"}], "backend": {"kind": "InferencePool",
                "endpointPickers": {"stable": {"name": "llm-stable-epp", "port": 9002},
                                    "candidate": {"name": "llm-candidate-epp", "port": 9002, "failureMode": "FailOpen"}}}}
        });
        merge(&mut spec, extra);
        let spec: ModelDeploymentSpec = serde_json::from_value(spec).unwrap();
        crate::api::validation::validate(&spec).unwrap()
    }

    /// JSON merge patch: `null` removes a field.
    fn merge(target: &mut serde_json::Value, patch: serde_json::Value) {
        match (target, patch) {
            (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(&k);
                    } else {
                        merge(t.entry(k).or_insert(serde_json::Value::Null), v);
                    }
                }
            }
            (t, p) => *t = p,
        }
    }

    #[test]
    fn one_pool_per_variant_selecting_its_pods_with_its_picker() {
        let pools = build(
            "llm",
            "ml",
            &validated(serde_json::json!({})),
            &owner("llm"),
        );
        assert_eq!(pools.len(), 2);
        let stable = &pools[0];
        assert_eq!(stable.metadata.name.as_deref(), Some("llm-stable"));
        assert_eq!(
            stable.metadata.owner_references.as_ref().unwrap()[0].name,
            "llm"
        );
        let spec = &stable.data["spec"];
        assert_eq!(
            spec["selector"]["matchLabels"],
            serde_json::json!({"mlrollout.io/model-deployment": "llm", "mlrollout.io/variant": "stable"})
        );
        assert_eq!(spec["targetPorts"], serde_json::json!([{"number": 8000}]));
        assert_eq!(
            spec["endpointPickerRef"],
            serde_json::json!({"name": "llm-stable-epp", "port": {"number": 9002}})
        );
        assert!(spec.get("appProtocol").is_none());
        let candidate = &pools[1].data["spec"];
        assert_eq!(pools[1].metadata.name.as_deref(), Some("llm-candidate"));
        assert_eq!(
            candidate["selector"]["matchLabels"]["mlrollout.io/variant"],
            "candidate"
        );
        assert_eq!(candidate["endpointPickerRef"]["failureMode"], "FailOpen");
    }

    #[test]
    fn target_port_follows_the_service_target() {
        // Without the proxy, the model container's `http` port from the pod template.
        let template = serde_json::json!({"serving": {"proxy": {"enabled": false}, "port": 5000,
            "podTemplate": {"spec": {"containers": [{"name": "vllm", "ports": [{"name": "http", "containerPort": 8001}]}]}}}});
        assert_eq!(target_port(&validated(template)), 8001);
        let plain = serde_json::json!({"serving": {"proxy": {"enabled": false}, "port": 5000}});
        assert_eq!(target_port(&validated(plain)), 5000);
        let pools = build(
            "llm",
            "ml",
            &validated(
                serde_json::json!({"traffic": {"backend": {"appProtocol": "kubernetes.io/h2c"}}}),
            ),
            &owner("llm"),
        );
        assert_eq!(pools[0].data["spec"]["appProtocol"], "kubernetes.io/h2c");
    }

    #[test]
    fn service_backends_make_no_pools() {
        let spec = serde_json::json!({"traffic": {"backend": null}});
        assert!(build("llm", "ml", &validated(spec), &owner("llm")).is_empty());
    }
}
