//! `spec.model` and `spec.serving`: which MLflow model is served, and how.

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The MLflow registered model that this resource keeps healthy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.alias) || (self.alias != 'latest' && !self.alias.matches('^v[0-9]+$'))"
).message("model.alias must not be 'latest' or 'v<digits>': MLflow reserves those names"))]
pub struct ModelSource {
    /// MLflow tracking server URI, e.g. `http://mlflow.mlflow.svc:5000`. MLflow 3 checks the
    /// Host header: the server's `--allowed-hosts` must include this host.
    #[schemars(pattern(r"^https?://[^\s]+$"), length(max = 512))]
    pub tracking_uri: String,
    /// Name of the MLflow registered model.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// MLflow alias whose version is served as the stable (champion) version.
    #[serde(default = "default_alias")]
    #[schemars(pattern(r"^[A-Za-z0-9_-]+$"), length(min = 1, max = 63))]
    pub alias: String,
    /// Pin a model version. When set it wins over the alias; clear it to follow the alias again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[1-9][0-9]*$"))]
    pub version: Option<String>,
    /// Secret with credentials for the tracking server: key `token` (bearer token), or keys
    /// `username` and `password` (basic auth). Must be in the resource's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<SecretReference>,
}

/// A Secret in the resource's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A single key of a Secret in the resource's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// How each model version is served. One Deployment and Service per variant
/// (`stable`, `candidate`) are derived from this.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Serving {
    /// Container image of the model server. The default is MLflow's own image, which runs
    /// `mlflow models serve` on the resolved `models:/<name>/<version>` URI.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Container port the model server listens on (also the Service port).
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Replicas of the stable variant. The candidate gets the same number while it is tested
    /// (the `none` traffic provider scales them in proportion to the canary weight instead).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Compute resources of the model-server container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra environment variables for the model-server container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub env: Vec<EnvVar>,
    /// Full pod template override (`core/v1` PodTemplateSpec). The operator still sets the
    /// model URI (env `MLROLLOUT_MODEL_URI`), the variant labels and, if the first container has
    /// no command, the default serving command. The API server validates it when the
    /// Deployment is created; a template that does not parse is reported as `InvalidSpec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::preserve_unknown_object")]
    pub pod_template: Option<serde_json::Value>,
    /// The data-plane proxy in front of the model server (on by default): metrics for the
    /// analysis and, with `capture`, live traffic for the drift check.
    #[serde(default)]
    pub proxy: super::proxy::ProxySpec,
}

impl Default for Serving {
    fn default() -> Self {
        Self {
            image: default_image(),
            port: default_port(),
            replicas: default_replicas(),
            resources: None,
            env: Vec::new(),
            pod_template: None,
            proxy: super::proxy::ProxySpec::default(),
        }
    }
}

impl Default for ModelSource {
    /// An empty source (invalid until filled); exists for generic tooling that needs `Default`.
    fn default() -> Self {
        Self {
            tracking_uri: String::new(),
            name: String::new(),
            alias: default_alias(),
            version: None,
            credentials_secret: None,
        }
    }
}

pub(crate) fn default_alias() -> String {
    "champion".into()
}
fn default_image() -> String {
    crate::api::DEFAULT_SERVING_IMAGE.into()
}
fn default_port() -> i32 {
    8080
}
fn default_replicas() -> i32 {
    2
}
