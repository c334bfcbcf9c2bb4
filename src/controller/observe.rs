//! Observe: read what the decision needs from the cluster and the registry.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::api::ModelDeployment;
use crate::error::Result;
use crate::registry::{RegistryCredentials, RegistryError};

use super::Context;
use super::decide::{DeploymentState, Observed};
use super::names::{Variant, variant_name};

/// Reads the registry and the children of `resource`.
pub async fn observe(
    ctx: &Context,
    resource: &ModelDeployment,
    namespace: &str,
) -> Result<Observed> {
    let name = resource.metadata.name.as_deref().unwrap_or_default();
    let credentials = match read_credentials(ctx, resource, namespace).await {
        Ok(c) => c,
        Err(e) => {
            return Ok(Observed {
                served: Err(e),
                stable_deployment: read_deployment(ctx, namespace, name, Variant::Stable).await?,
            });
        }
    };
    let served = ctx
        .registry
        .resolve(&resource.spec.model, &credentials)
        .await;
    Ok(Observed {
        served,
        stable_deployment: read_deployment(ctx, namespace, name, Variant::Stable).await?,
    })
}

async fn read_deployment(
    ctx: &Context,
    namespace: &str,
    name: &str,
    variant: Variant,
) -> Result<Option<DeploymentState>> {
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(deployment) = api.get_opt(&variant_name(name, variant)).await? else {
        return Ok(None);
    };
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let status = deployment.status.unwrap_or_default();
    let generation = deployment.metadata.generation;
    Ok(Some(DeploymentState {
        desired_replicas: desired,
        ready_replicas: status.ready_replicas.unwrap_or(0),
        updated: status.observed_generation.is_some() && status.observed_generation >= generation,
    }))
}

/// Reads the MLflow credentials Secret. A missing Secret or key is a registry error the user
/// can fix, reported like any other resolution failure.
async fn read_credentials(
    ctx: &Context,
    resource: &ModelDeployment,
    namespace: &str,
) -> Result<RegistryCredentials, RegistryError> {
    let Some(secret_ref) = &resource.spec.model.credentials_secret else {
        return Ok(RegistryCredentials::None);
    };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = api
        .get_opt(&secret_ref.name)
        .await
        .map_err(|e| RegistryError::Other(format!("reading Secret {}: {e}", secret_ref.name)))?
        .ok_or_else(|| {
            RegistryError::Forbidden(format!(
                "credentials Secret {:?} not found in namespace {namespace}",
                secret_ref.name
            ))
        })?;
    let data = secret.data.unwrap_or_default();
    let text = |key: &str| {
        data.get(key)
            .map(|v| String::from_utf8_lossy(&v.0).trim().to_string())
    };
    match (text("token"), text("username"), text("password")) {
        (Some(token), _, _) => Ok(RegistryCredentials::Bearer(token)),
        (None, Some(username), Some(password)) => {
            Ok(RegistryCredentials::Basic { username, password })
        }
        _ => Err(RegistryError::Forbidden(format!(
            "credentials Secret {:?} needs key `token`, or keys `username` and `password`",
            secret_ref.name
        ))),
    }
}
