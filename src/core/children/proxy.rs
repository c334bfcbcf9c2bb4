//! The proxy sidecar (`mlrollout proxy`) in a variant's pod: a native sidecar (an init
//! container with `restartPolicy: Always`), so it starts before the model server, stays for
//! the pod's life and does not keep a finished pod alive.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PersistentVolumeClaimVolumeSource, PodSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretEnvSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::VariantInput;
use crate::api::{CaptureSpec, ProxySpec};
use crate::storage::layout::variant_prefix;

/// Name of the sidecar container.
pub const CONTAINER_NAME: &str = "mlrollout-proxy";
/// Name of the proxy's serving port (the Service's `targetPort`).
pub const PORT_NAME: &str = "proxy";
/// Name of the proxy's metrics port.
pub const METRICS_PORT_NAME: &str = "proxy-metrics";
const CAPTURE_VOLUME: &str = "mlrollout-capture";

/// Adds the sidecar (and the capture volume) to the pod; pod annotations for scrapers that
/// read `prometheus.io/*`.
pub fn inject(
    pod: &mut PodSpec,
    annotations: &mut BTreeMap<String, String>,
    input: &VariantInput<'_>,
) {
    let proxy = &input.spec.serving.proxy;
    let init = pod.init_containers.get_or_insert_with(Vec::new);
    init.retain(|c| c.name != CONTAINER_NAME);
    init.push(sidecar(input, proxy));
    if let Some(claim) = proxy.capture.as_ref().and_then(|c| c.volume_claim.as_ref()) {
        let volumes = pod.volumes.get_or_insert_with(Vec::new);
        volumes.retain(|v| v.name != CAPTURE_VOLUME);
        volumes.push(Volume {
            name: CAPTURE_VOLUME.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(false),
            }),
            ..Default::default()
        });
    }
    for (key, value) in [
        ("prometheus.io/scrape", "true".to_owned()),
        ("prometheus.io/port", proxy.metrics_port.to_string()),
        ("prometheus.io/path", "/metrics".to_owned()),
    ] {
        annotations.insert(key.into(), value);
    }
}

fn sidecar(input: &VariantInput<'_>, proxy: &ProxySpec) -> Container {
    let mut env = vec![
        plain("MLROLLOUT_PROXY_LISTEN", format!("0.0.0.0:{}", proxy.port)),
        plain(
            "MLROLLOUT_PROXY_METRICS_LISTEN",
            format!("0.0.0.0:{}", proxy.metrics_port),
        ),
        plain(
            "MLROLLOUT_PROXY_UPSTREAM",
            format!("http://127.0.0.1:{}", input.spec.serving.port),
        ),
        plain("MLROLLOUT_PROXY_UPSTREAM_TIMEOUT", proxy.timeout.clone()),
        plain(
            "MLROLLOUT_PROXY_MAX_REQUEST_BYTES",
            proxy.max_request_bytes.to_string(),
        ),
        plain("MLROLLOUT_MODEL_VERSION", input.model_version.to_owned()),
        EnvVar {
            name: "MLROLLOUT_PROXY_POD".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    api_version: None,
                }),
                ..Default::default()
            }),
        },
    ];
    if let Some(field) = &proxy.scores.field {
        env.push(plain("MLROLLOUT_PROXY_SCORE_FIELD", field.clone()));
    }
    if let Some(index) = proxy.scores.output_index {
        env.push(plain(
            "MLROLLOUT_PROXY_SCORE_OUTPUT_INDEX",
            index.to_string(),
        ));
    }
    if !proxy.scores.buckets.is_empty() {
        let buckets: Vec<String> = proxy.scores.buckets.iter().map(f64::to_string).collect();
        env.push(plain("MLROLLOUT_PROXY_SCORE_BUCKETS", buckets.join(",")));
    }
    let mut container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(input.validated.proxy_image.clone()),
        args: Some(vec!["proxy".into()]),
        restart_policy: Some("Always".into()),
        ports: Some(vec![
            port(PORT_NAME, proxy.port),
            port(METRICS_PORT_NAME, proxy.metrics_port),
        ]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".into()),
                port: IntOrString::String(METRICS_PORT_NAME.into()),
                ..Default::default()
            }),
            period_seconds: Some(5),
            ..Default::default()
        }),
        resources: Some(proxy.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(restricted()),
        ..Default::default()
    };
    if let Some(capture) = &proxy.capture {
        add_capture(&mut container, &mut env, capture, input);
    }
    container.env = Some(env);
    container
}

fn add_capture(
    container: &mut Container,
    env: &mut Vec<EnvVar>,
    capture: &CaptureSpec,
    input: &VariantInput<'_>,
) {
    let prefix = variant_prefix(
        &capture.uri,
        input.namespace,
        input.resource_name,
        input.variant.as_str(),
    );
    env.push(plain("MLROLLOUT_PROXY_CAPTURE_URI", prefix));
    env.push(plain(
        "MLROLLOUT_PROXY_CAPTURE_FRACTION",
        capture.fraction.to_string(),
    ));
    env.push(plain(
        "MLROLLOUT_PROXY_CAPTURE_WINDOW",
        capture.window.clone(),
    ));
    env.push(plain(
        "MLROLLOUT_PROXY_CAPTURE_MAX_ROWS",
        capture.max_rows.to_string(),
    ));
    if !capture.columns.is_empty() {
        env.push(plain(
            "MLROLLOUT_PROXY_CAPTURE_COLUMNS",
            capture.columns.join(","),
        ));
    }
    if let Some(storage) = &input.spec.storage {
        if let Some(endpoint) = &storage.endpoint {
            env.push(plain("MLROLLOUT_PROXY_STORAGE_ENDPOINT", endpoint.clone()));
        }
        if let Some(region) = &storage.region {
            env.push(plain("MLROLLOUT_PROXY_STORAGE_REGION", region.clone()));
        }
        if let Some(secret) = &storage.secret_ref {
            // Credentials by reference: the Secret's keys become the store's settings.
            container.env_from = Some(vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: secret.name.clone(),
                    optional: Some(false),
                }),
                ..Default::default()
            }]);
        }
    }
    if capture.volume_claim.is_some() {
        container.volume_mounts = Some(vec![VolumeMount {
            name: CAPTURE_VOLUME.into(),
            mount_path: capture.uri.clone(),
            ..Default::default()
        }]);
    }
}

fn plain(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value),
        value_from: None,
    }
}

fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: number,
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), Quantity("50m".into())),
            ("memory".into(), Quantity("32Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".into(),
            Quantity("128Mi".into()),
        )])),
        ..Default::default()
    }
}

/// What Pod Security Admission's `restricted` level asks of a container.
fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(65_532),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}
