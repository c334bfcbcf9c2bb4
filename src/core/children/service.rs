//! The Service in front of one variant.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{VariantInput, proxy};
use crate::core::names::{LABEL_VARIANT, common_labels, selector_labels, variant_name};

/// The model's port (to the proxy when there is one, else to the model server) and the
/// proxy's metrics, named `metrics` for a ServiceMonitor to scrape.
fn ports(input: &VariantInput<'_>) -> Vec<ServicePort> {
    let serving = &input.spec.serving;
    let port = |name: &str, number: i32, target: &str| ServicePort {
        name: Some(name.into()),
        port: number,
        target_port: Some(IntOrString::String(target.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    if serving.proxy.enabled {
        vec![
            port("http", serving.port, proxy::PORT_NAME),
            port(
                "metrics",
                serving.proxy.metrics_port,
                proxy::METRICS_PORT_NAME,
            ),
        ]
    } else {
        vec![port("http", serving.port, "http")]
    }
}

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
            ports: Some(ports(input)),
            type_: Some("ClusterIP".into()),
            ..Default::default()
        }),
        status: None,
    }
}
