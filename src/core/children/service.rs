//! The Service in front of one variant.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::VariantInput;
use crate::core::names::{LABEL_VARIANT, common_labels, selector_labels, variant_name};

/// Builds the ClusterIP Service of a variant; HTTPRoute backendRefs point at it.
pub fn build(input: &VariantInput<'_>) -> Service {
    let mut labels = common_labels(input.resource_name);
    labels.insert(LABEL_VARIANT.into(), input.variant.as_str().into());
    Service {
        metadata: ObjectMeta {
            name: Some(variant_name(input.resource_name, input.variant)),
            namespace: Some(input.namespace.to_string()),
            labels: Some(labels),
            owner_references: Some(vec![input.owner.clone()]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(input.resource_name, input.variant)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: input.spec.serving.port,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            type_: Some("ClusterIP".into()),
            ..Default::default()
        }),
        status: None,
    }
}
