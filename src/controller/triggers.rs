//! Reconcile requests from outside the watch: a registry webhook says a model changed, and the
//! ModelDeployments that follow it are reconciled at once instead of at their next requeue.
//!
//! Each running controller attaches its reflector store and the receiving end of a channel fed
//! into `Controller::reconcile_on`; [`Triggers::request`] picks the resources from the stores
//! and sends their references. A request only makes a reconcile come earlier: the reconcile
//! reads the resource and the registry afresh, so an extra or repeated request changes nothing
//! but timing, and a lost one is caught up by the next requeue (polling stays the fallback).

use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::ModelDeployment;

/// Requests queued per controller before further ones are dropped (the controller's scheduler
/// merges requests for the same resource, so a full queue means a burst, not lost work).
pub const TRIGGER_QUEUE: usize = 256;

/// No controller runs in this process (not started yet, stopped, or a standby replica).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no controller is running in this process (a standby replica, or shutting down)")]
pub struct NotRunning;

struct Attached {
    store: Store<ModelDeployment>,
    sender: mpsc::Sender<ObjectRef<ModelDeployment>>,
}

/// Shared between the controllers (which attach) and the webhook receiver (which requests).
#[derive(Clone, Default)]
pub struct Triggers {
    attached: Arc<Mutex<Vec<Attached>>>,
}

impl Triggers {
    /// Attaches one controller by its store; returns the stream to pass to `reconcile_on`.
    pub fn attach(
        &self,
        store: Store<ModelDeployment>,
    ) -> mpsc::Receiver<ObjectRef<ModelDeployment>> {
        let (sender, receiver) = mpsc::channel(TRIGGER_QUEUE);
        if let Ok(mut attached) = self.attached.lock() {
            attached.push(Attached { store, sender });
        }
        receiver
    }

    /// The controllers stopped: requests are refused with [`NotRunning`] from now on.
    pub fn detach_all(&self) {
        if let Ok(mut attached) = self.attached.lock() {
            attached.clear();
        }
    }

    /// Requests a reconcile of every resource in the controllers' stores that `concerns`;
    /// returns how many requests were queued.
    pub fn request(
        &self,
        concerns: impl Fn(&ModelDeployment) -> bool,
    ) -> Result<usize, NotRunning> {
        let mut attached = self.attached.lock().map_err(|_| NotRunning)?;
        if attached.is_empty() {
            return Err(NotRunning);
        }
        let mut queued = 0;
        for controller in attached.iter_mut() {
            for resource in controller.store.state_filter(|r| concerns(r)) {
                let reference = ObjectRef::from_obj(resource.as_ref());
                match controller.sender.try_send(reference) {
                    Ok(()) => queued += 1,
                    Err(error) => tracing::warn!(
                        resource = %error.into_inner(),
                        "reconcile request dropped (queue full or controller stopped); the next requeue catches up"
                    ),
                }
            }
        }
        Ok(queued)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use futures::StreamExt;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher;

    use super::*;

    fn resource(namespace: &str, name: &str, model: &str) -> ModelDeployment {
        let mut r = ModelDeployment::new(name, Default::default());
        r.metadata.namespace = Some(namespace.into());
        r.spec.model.name = model.into();
        r
    }

    #[tokio::test]
    async fn requests_reach_the_controller_of_each_matching_resource() {
        let triggers = Triggers::default();
        assert_eq!(triggers.request(|_| true), Err(NotRunning));
        let mut receivers = Vec::new();
        for (namespace, models) in [("a", ["fraud", "churn"]), ("b", ["fraud", "other"])] {
            let mut writer = Writer::<ModelDeployment>::default();
            for (i, model) in models.iter().enumerate() {
                let r = resource(namespace, &format!("r{i}"), model);
                writer.apply_watcher_event(&watcher::Event::Apply(r));
            }
            receivers.push(triggers.attach(writer.as_reader()));
        }
        assert_eq!(triggers.request(|r| r.spec.model.name == "fraud"), Ok(2));
        for (receiver, namespace) in receivers.iter_mut().zip(["a", "b"]) {
            let got = receiver.next().await.unwrap();
            assert_eq!(
                (got.name.as_str(), got.namespace.as_deref()),
                ("r0", Some(namespace))
            );
        }
        assert_eq!(triggers.request(|r| r.spec.model.name == "none"), Ok(0));
        triggers.detach_all();
        assert_eq!(triggers.request(|_| true), Err(NotRunning));
    }
}
