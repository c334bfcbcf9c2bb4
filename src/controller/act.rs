//! Act: server-side apply of children (one field manager), status patch, events.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{ModelDeployment, ModelDeploymentStatus};
use crate::error::{Error, Result};

use super::Context;
use super::decide::{Child, EventIntent};
use super::names::FIELD_MANAGER;

/// Applies every child server-side; stops at the first failure (the next reconcile retries).
pub async fn apply_children(ctx: &Context, namespace: &str, children: &[Child]) -> Result<()> {
    for child in children {
        match child {
            Child::Deployment(d) => apply::<Deployment>(ctx, namespace, d).await?,
            Child::Service(s) => apply::<Service>(ctx, namespace, s).await?,
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

/// Writes the status when it changed (an unchanged status is not written, so the resource's
/// own watch does not wake the controller again).
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
    let body = serde_json::json!({
        "apiVersion": "mlrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "status": serde_json::to_value(status).map_err(|source| Error::Serialization { what: "status", source })?,
    });
    api.patch_status(
        &resource.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
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
            reason: intent.reason.clone(),
            note: Some(truncate(&intent.note, 1000)),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, reason = %intent.reason, "failed to publish event");
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
