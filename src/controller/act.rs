//! Act: server-side apply of children (one field manager), removals, registry write-back,
//! status patch, events.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{ModelDeployment, ModelDeploymentStatus};
use crate::error::{Error, Result};
use crate::registry::RegistryCredentials;

use super::Context;
use crate::core::children::inference_pool;
use crate::core::children::job::LABEL_ATTEMPT;
use crate::core::children::route::virtual_service_resource;
use crate::core::conditions::{self, ConditionType, ConditionUpdate, Reason};
use crate::core::decide::{Child, Decision, EventIntent, Removal};
use crate::core::names::FIELD_MANAGER;

/// Applies every child server-side, in order (Services exist before a route points at them);
/// stops at the first failure (the next reconcile retries). An object that has a child's name
/// but is not ours stops it too ([`Error::NameConflict`]): it is never adopted or overwritten.
pub async fn apply_children(ctx: &Context, namespace: &str, children: &[Child]) -> Result<()> {
    for child in children {
        match child {
            Child::Deployment(d) => apply::<Deployment>(ctx, namespace, d).await?,
            Child::Service(s) => apply::<Service>(ctx, namespace, s).await?,
            Child::HttpRoute(r) => {
                apply::<gateway_api::httproutes::HttpRoute>(ctx, namespace, r).await?
            }
            Child::VirtualService(vs) => {
                apply_dynamic(ctx, namespace, vs, &virtual_service_resource()).await?
            }
            Child::InferencePool(pool) => {
                apply_dynamic(ctx, namespace, pool, &inference_pool::resource()).await?
            }
            Child::Job(job) => create_if_absent(ctx, namespace, job).await?,
        }
    }
    Ok(())
}

/// Server-side apply of an object without a Rust type (VirtualService, InferencePool).
async fn apply_dynamic(
    ctx: &Context,
    namespace: &str,
    object: &DynamicObject,
    resource: &kube::api::ApiResource,
) -> Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), namespace, resource);
    let existing = api.get_metadata_opt(&object.name_any()).await?;
    ensure_ours(
        &resource.kind,
        object.meta(),
        existing.as_ref().map(|e| &e.metadata),
    )?;
    api.patch(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await?;
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
    let existing = api.get_metadata_opt(&name).await?;
    ensure_ours(
        &K::kind(&()),
        object.meta(),
        existing.as_ref().map(|e| &e.metadata),
    )?;
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await?;
    Ok(())
}

/// Jobs are created once; one that exists is taken as ours only if it is this resource's Job
/// of the same attempt (a restart, a second replica), never someone else's of the same name.
async fn create_if_absent(ctx: &Context, namespace: &str, job: &Job) -> Result<()> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    match api.create(&PostParams::default(), job).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let existing = api.get_metadata_opt(&job.name_any()).await?;
            let existing = existing.as_ref().map(|e| &e.metadata);
            ensure_ours("Job", job.meta(), existing)?;
            let attempt = |meta: &ObjectMeta| {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_ATTEMPT).cloned())
            };
            match existing {
                Some(meta) if attempt(meta) != attempt(job.meta()) => Err(Error::NameConflict {
                    kind: "Job".into(),
                    name: job.name_any(),
                    holder: format!(
                        "it is attempt {} of this resource",
                        attempt(meta).unwrap_or_else(|| "-".into())
                    ),
                }),
                _ => Ok(()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether `existing` (an object with the name of `desired`) may be applied over: only when it
/// is controlled by the owner `desired` names.
fn ensure_ours(kind: &str, desired: &ObjectMeta, existing: Option<&ObjectMeta>) -> Result<()> {
    let Some(existing) = existing else {
        return Ok(());
    };
    let ours = desired
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    let holder = existing
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    match (ours, holder) {
        (Some(ours), Some(holder)) if ours.uid == holder.uid => Ok(()),
        (_, holder) => Err(Error::NameConflict {
            kind: kind.to_string(),
            name: desired.name.clone().unwrap_or_default(),
            holder: match holder {
                Some(h) => format!("controlled by {} {}", h.kind, h.name),
                None => "it has no controller".into(),
            },
        }),
    }
}

/// Deletes what must not exist; absence is success. Only objects this resource (`owner_uid`)
/// controls are deleted: one of the same name that is someone else's is left alone.
pub async fn remove_children(
    ctx: &Context,
    namespace: &str,
    owner_uid: &str,
    removals: &[Removal],
) -> Result<()> {
    for removal in removals {
        match removal {
            Removal::Deployment(name) => {
                delete_if_ours::<Deployment>(ctx, namespace, name, owner_uid).await?;
            }
            Removal::Service(name) => {
                delete_if_ours::<Service>(ctx, namespace, name, owner_uid).await?;
            }
            Removal::Job(name) => delete_if_ours::<Job>(ctx, namespace, name, owner_uid).await?,
        }
    }
    Ok(())
}

async fn delete_if_ours<K>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    owner_uid: &str,
) -> Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(existing) = api.get_metadata_opt(name).await? else {
        return Ok(());
    };
    let ours = existing
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == owner_uid);
    if !ours {
        tracing::warn!(%namespace, %name, kind = %K::kind(&()), "not deleting an object that is not ours");
        return Ok(());
    }
    // The uid precondition: never delete a same-named object created in between.
    let params = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: existing.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
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

/// Queues the notifications of `decision` (never waits: the notifier delivers in the
/// background). Called after the status write, like the Events: a decision whose status was
/// not written announces nothing.
pub fn notify(
    ctx: &Context,
    resource: &ModelDeployment,
    before: &ModelDeploymentStatus,
    decision: &Decision,
    measurements: Option<&[crate::core::verdict::MetricMeasurement]>,
    now: k8s_openapi::jiff::Timestamp,
) {
    let Some(notifier) = &ctx.notifier else {
        return;
    };
    let namespace = resource.namespace().unwrap_or_default();
    let name = resource.name_any();
    let uid = resource.metadata.uid.clone().unwrap_or_default();
    let notifications = crate::core::notify::notifications(&crate::core::notify::NotifyInput {
        namespace: &namespace,
        name: &name,
        uid: &uid,
        model: &resource.spec.model.name,
        before,
        after: &decision.status,
        events: &decision.events,
        measurements,
        now,
    });
    notifier.announce(
        resource.spec.notifications.as_ref(),
        &namespace,
        notifications,
    );
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

#[cfg(test)]
mod ownership_tests {
    #![allow(clippy::unwrap_used)]
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;

    fn meta(owner: Option<(&str, &str, bool)>) -> ObjectMeta {
        ObjectMeta {
            name: Some("fraud-stable".into()),
            owner_references: owner.map(|(kind, uid, controller)| {
                vec![OwnerReference {
                    kind: kind.into(),
                    name: format!("{kind}-owner"),
                    uid: uid.into(),
                    controller: Some(controller),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_objects_we_control_are_applied_over() {
        let desired = meta(Some(("ModelDeployment", "ours", true)));
        assert!(ensure_ours("Deployment", &desired, None).is_ok(), "absent");
        assert!(ensure_ours("Deployment", &desired, Some(&desired)).is_ok());
        for (existing, holder) in [
            (meta(None), "it has no controller"),
            (
                meta(Some(("ModelDeployment", "another", true))),
                "controlled by ModelDeployment ModelDeployment-owner",
            ),
            // Ours only as a non-controlling owner: still not ours to manage.
            (
                meta(Some(("ModelDeployment", "ours", false))),
                "it has no controller",
            ),
        ] {
            let error = ensure_ours("Service", &desired, Some(&existing)).unwrap_err();
            assert_eq!(error.category(), crate::error::ErrorCategory::NameConflict);
            let text = error.to_string();
            assert!(text.starts_with("Service fraud-stable exists"), "{text}");
            assert!(text.contains(holder), "{holder} in {text}");
        }
    }
}
