//! The Deployment of one variant's model server.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, PodSpec, PodTemplateSpec, Probe,
    SecretKeySelector,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::VariantInput;
use crate::core::names::{
    LABEL_MODEL_VERSION, LABEL_VARIANT, common_labels, selector_labels, variant_name,
};

/// Name of the model-server container when the operator builds the pod.
pub const CONTAINER_NAME: &str = "model-server";

/// Builds the Deployment of a variant. A `spec.serving.podTemplate` is the starting point when
/// given; the operator then only adds what the model server needs to find its model.
pub fn build(input: &VariantInput<'_>) -> Deployment {
    let selector = selector_labels(input.resource_name, input.variant);
    let mut labels = common_labels(input.resource_name);
    labels.insert(LABEL_VARIANT.into(), input.variant.as_str().into());
    labels.insert(LABEL_MODEL_VERSION.into(), input.model_version.into());

    let mut template = input
        .validated
        .pod_template
        .clone()
        .unwrap_or_else(default_pod_template);
    super::placement::apply(
        &mut template,
        &input.spec.rollout,
        input.resource_name,
        input.variant,
    );
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(Default::default)
        .extend(labels.clone());
    let pod = template.spec.get_or_insert_with(Default::default);
    // A model server has no business with the Kubernetes API: no token unless the template
    // asks for one.
    pod.automount_service_account_token.get_or_insert(false);
    if pod.containers.is_empty() {
        pod.containers.push(Container {
            name: CONTAINER_NAME.into(),
            ..Default::default()
        });
    }
    // The first container is the model server (documented on `spec.serving.podTemplate`).
    if let Some(container) = pod.containers.first_mut() {
        configure_model_container(container, input);
    }
    if input.spec.serving.proxy.enabled {
        let annotations = meta.annotations.get_or_insert_with(Default::default);
        super::proxy::inject(pod, annotations, input);
    }

    Deployment {
        metadata: ObjectMeta {
            name: Some(variant_name(input.resource_name, input.variant)),
            namespace: Some(input.namespace.to_string()),
            labels: Some(labels),
            owner_references: Some(vec![input.owner.clone()]),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(input.replicas),
            selector: LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            },
            template,
            ..Default::default()
        }),
        status: None,
    }
}

fn default_pod_template() -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta::default()),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: CONTAINER_NAME.into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn configure_model_container(container: &mut Container, input: &VariantInput<'_>) {
    let serving = &input.spec.serving;
    let model_uri = input.model_uri();
    if container.image.as_deref().is_none_or(str::is_empty) {
        container.image = Some(serving.image.clone());
    }
    if container.command.is_none() && container.args.is_none() {
        container.command = Some(vec![
            "mlflow".into(),
            "models".into(),
            "serve".into(),
            "--model-uri".into(),
            model_uri.clone(),
            "--host".into(),
            "0.0.0.0".into(),
            "--port".into(),
            serving.port.to_string(),
            "--env-manager".into(),
            "local".into(),
        ]);
    }
    if container.resources.is_none() {
        container.resources = serving.resources.clone();
    }
    let ports = container.ports.get_or_insert_with(Vec::new);
    if !ports.iter().any(|p| p.name.as_deref() == Some("http")) {
        ports.push(ContainerPort {
            name: Some("http".into()),
            container_port: serving.port,
            protocol: Some("TCP".into()),
            ..Default::default()
        });
    }
    if container.readiness_probe.is_none() {
        container.readiness_probe = Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/ping".into()),
                port: IntOrString::String("http".into()),
                ..Default::default()
            }),
            period_seconds: Some(5),
            ..Default::default()
        });
    }

    let mut env = vec![
        plain("MLFLOW_TRACKING_URI", &input.spec.model.tracking_uri),
        plain("MLROLLOUT_MODEL_URI", &model_uri),
        plain("MLROLLOUT_MODEL_NAME", &input.spec.model.name),
        plain("MLROLLOUT_MODEL_VERSION", input.model_version),
        plain("MLROLLOUT_VARIANT", input.variant.as_str()),
    ];
    if let Some(secret) = &input.spec.model.credentials_secret {
        for (var, key) in [
            ("MLFLOW_TRACKING_TOKEN", "token"),
            ("MLFLOW_TRACKING_USERNAME", "username"),
            ("MLFLOW_TRACKING_PASSWORD", "password"),
        ] {
            env.push(EnvVar {
                name: var.into(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: secret.name.clone(),
                        key: key.into(),
                        optional: Some(true),
                    }),
                    ..Default::default()
                }),
            });
        }
    }
    env.extend(serving.env.iter().cloned());
    let existing = container.env.get_or_insert_with(Vec::new);
    // Operator-set variables replace same-named template ones so the model URI is always right.
    existing.retain(|e| !env.iter().any(|o| o.name == e.name));
    existing.extend(env);
}

fn plain(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}
