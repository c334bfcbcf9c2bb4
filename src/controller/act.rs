//! Act: server-side apply of children (one field manager), removals, registry write-back,
//! status patch, events.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{ModelDeployment, ModelDeploymentStatus};
use crate::error::{Error, Result};
use crate::registry::RegistryCredentials;

use super::Context;
use crate::core::children::route::virtual_service_resource;
use crate::core::conditions::{self, ConditionType, ConditionUpdate, Reason};
use crate::core::decide::{Child, EventIntent, Removal};
use crate::core::names::FIELD_MANAGER;

/// Applies every child server-side, in order (Services exist before a route points at them);
/// stops at the first failure (the next reconcile retries).
pub async fn apply_children(ctx: &Context, namespace: &str, children: &[Child]) -> Result<()> {
    for child in children {
        match child {
            Child::Deployment(d) => apply::<Deployment>(ctx, namespace, d).await?,
            Child::Service(s) => apply::<Service>(ctx, namespace, s).await?,
            Child::HttpRoute(r) => {
                apply::<gateway_api::httproutes::HttpRoute>(ctx, namespace, r).await?
            }
            Child::VirtualService(vs) => {
                let api: Api<DynamicObject> = Api::namespaced_with(
                    ctx.client.clone(),
                    namespace,
                    &virtual_service_resource(),
                );
                api.patch(
                    &vs.name_any(),
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(vs.as_ref()),
                )
                .await?;
            }
            Child::Job(job) => create_if_absent(ctx, namespace, job).await?,
        }
    }
    Ok(())
}

async fn apply<K>(ctx: &Context, namespace: &str, object: &K) -> Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await?;
    Ok(())
}

/// Jobs are created once; one that exists (a restart, a second replica) is adopted.
async fn create_if_absent(ctx: &Context, namespace: &str, job: &Job) -> Result<()> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    match api.create(&PostParams::default(), job).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes what must not exist; absence is success.
pub async fn remove_children(ctx: &Context, namespace: &str, removals: &[Removal]) -> Result<()> {
    let params = DeleteParams::background();
    for removal in removals {
        let result = match removal {
            Removal::Deployment(name) => {
                Api::<Deployment>::namespaced(ctx.client.clone(), namespace)
                    .delete(name, &params)
                    .await
                    .map(|_| ())
            }
            Removal::Service(name) => Api::<Service>::namespaced(ctx.client.clone(), namespace)
                .delete(name, &params)
                .await
                .map(|_| ()),
            Removal::Job(name) => Api::<Job>::namespaced(ctx.client.clone(), namespace)
                .delete(name, &params)
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Performs the pending MLflow writes in order; the ones that failed stay pending and the
/// `RegistrySynced` condition says MLflow is behind the cluster.
pub async fn write_registry(
    ctx: &Context,
    resource: &ModelDeployment,
    credentials: &RegistryCredentials,
    status: &mut ModelDeploymentStatus,
    now: k8s_openapi::jiff::Timestamp,
) {
    if status.pending_registry_writes.is_empty() {
        return;
    }
    let mut remaining = Vec::new();
    let mut failure = None;
    for write in std::mem::take(&mut status.pending_registry_writes) {
        if failure.is_some() {
            remaining.push(write);
            continue;
        }
        if let Err(e) = ctx
            .registry
            .apply_write(&resource.spec.model, credentials, &write)
            .await
        {
            failure = Some(format!("{} {} failed: {e}", write.op, write.key));
            remaining.push(write);
        }
    }
    status.pending_registry_writes = remaining;
    if let Some(message) = failure {
        let update = ConditionUpdate::new(
            ConditionType::RegistrySynced,
            false,
            Reason::RegistryBehind,
            format!(
                "MLflow is behind the cluster ({} write(s) pending, retried): {message}",
                status.pending_registry_writes.len()
            ),
        );
        conditions::set(
            &mut status.conditions,
            &update,
            resource.metadata.generation,
            now,
        );
    }
}

/// Writes the status when it changed (an unchanged status is not written, so the resource's
/// own watch does not wake the controller again).
///
/// Server-side apply of the whole status by the operator's one field manager: a field the
/// operator stops setting is removed because the manager no longer applies it (never by
/// `null`, which the API server rejects for non-nullable fields). The apply carries the
/// `resourceVersion` the decision was made on, so a writer with a stale view (an old cache, a
/// second replica) gets a 409 Conflict instead of overwriting a newer status.
pub async fn write_status(
    ctx: &Context,
    resource: &ModelDeployment,
    namespace: &str,
    status: &ModelDeploymentStatus,
) -> Result<()> {
    if resource.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<ModelDeployment> = Api::namespaced(ctx.client.clone(), namespace);
    let body = status_apply_body(resource, status)?;
    api.patch_status(
        &resource.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// The apply configuration of a status write: identity, the optimistic-lock
/// `resourceVersion`, and the complete status.
pub fn status_apply_body(
    resource: &ModelDeployment,
    status: &ModelDeploymentStatus,
) -> Result<serde_json::Value> {
    let status = serde_json::to_value(status).map_err(|source| Error::Serialization {
        what: "status",
        source,
    })?;
    let mut metadata = serde_json::json!({ "name": resource.name_any() });
    if let Some(version) = &resource.metadata.resource_version {
        metadata["resourceVersion"] = serde_json::Value::String(version.clone());
    }
    Ok(serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": metadata,
        "status": status,
    }))
}

/// Publishes events; a failure to publish is logged, never fails the reconcile.
pub async fn publish_events(ctx: &Context, resource: &ModelDeployment, events: &[EventIntent]) {
    let reference = resource.object_ref(&());
    for intent in events {
        let event = Event {
            type_: if intent.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: intent.reason.as_str().into(),
            note: Some(truncate(&intent.note, 1000)),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, reason = intent.reason.as_str(), "failed to publish event");
        }
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_apply_has_no_nulls_and_carries_the_resource_version() {
        let mut resource = ModelDeployment::new("fraud", Default::default());
        resource.metadata.resource_version = Some("42".into());
        let status = ModelDeploymentStatus {
            candidate_version: None,
            stable_version: Some("3".into()),
            ..Default::default()
        };
        let body = status_apply_body(&resource, &status).unwrap();
        assert_eq!(body["metadata"]["resourceVersion"], "42");
        assert_eq!(body["status"]["stableVersion"], "3");
        fn no_nulls(value: &serde_json::Value) -> bool {
            match value {
                serde_json::Value::Null => false,
                serde_json::Value::Object(map) => map.values().all(no_nulls),
                serde_json::Value::Array(items) => items.iter().all(no_nulls),
                _ => true,
            }
        }
        assert!(no_nulls(&body), "{body}");
    }
}
