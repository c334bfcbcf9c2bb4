//! Builders of the child objects (pure: inputs in, typed objects out).

pub mod deployment;
pub mod experiment_route;
pub mod inference_pool;
pub mod job;
pub mod placement;
pub mod proxy;
pub mod route;
pub mod service;

/// What the tests of the children share.
#[cfg(test)]
mod fixtures {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    /// The controller reference of the ModelDeployment `name`.
    pub(super) fn owner(name: &str) -> OwnerReference {
        OwnerReference {
            api_version: "mlrollout.io/v1alpha1".into(),
            kind: "ModelDeployment".into(),
            name: name.into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::api::ModelDeploymentSpec;
use crate::api::validation::ValidatedSpec;

use super::names::Variant;

/// Everything needed to build one variant's Deployment and Service.
#[derive(Debug, Clone)]
pub struct VariantInput<'a> {
    pub resource_name: &'a str,
    pub namespace: &'a str,
    pub owner: OwnerReference,
    pub spec: &'a ModelDeploymentSpec,
    pub validated: &'a ValidatedSpec,
    pub variant: Variant,
    /// MLflow model version served by this variant.
    pub model_version: &'a str,
    /// Replicas of this variant.
    pub replicas: i32,
}

impl VariantInput<'_> {
    /// `models:/<name>/<version>` URI of this variant's model.
    pub fn model_uri(&self) -> String {
        format!("models:/{}/{}", self.spec.model.name, self.model_version)
    }
}
