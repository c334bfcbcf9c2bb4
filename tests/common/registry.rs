//! The in-memory model registry behind the real `ModelRegistry` trait, with the stalls a test
//! scripts: MLflow's evaluation answers held back, or one resolve held until the test lets it go.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use mlrollout::api::{ModelSource, RegistryWrite};
use mlrollout::registry::memory::InMemoryRegistry;
use mlrollout::registry::{
    MetricPair, ModelRegistry, RegistryCredentials, RegistryError, ResolvedModel,
};
use tokio::sync::oneshot;

/// A resolve the test holds: `entered` fires when a reconcile reaches it, which then waits for
/// `release`.
type HeldResolve = (oneshot::Sender<()>, oneshot::Receiver<()>);

/// [`InMemoryRegistry`] (shared with the test, which registers versions and reads aliases on
/// it) with scripted stalls; every answer not held is the in-memory registry's.
pub struct ScriptedRegistry {
    memory: Arc<InMemoryRegistry>,
    hold_evaluation: AtomicBool,
    down: AtomicBool,
    held_pinned_resolve: Mutex<Option<HeldResolve>>,
}

impl ScriptedRegistry {
    pub fn new(memory: Arc<InMemoryRegistry>) -> ScriptedRegistry {
        ScriptedRegistry {
            memory,
            hold_evaluation: AtomicBool::new(false),
            down: AtomicBool::new(false),
            held_pinned_resolve: Mutex::new(None),
        }
    }

    /// While `hold` is set, evaluation answers are `Unavailable`, as if MLflow could not be
    /// read at that moment: the resource stays in `Evaluating`.
    pub fn hold_evaluation(&self, hold: bool) {
        self.hold_evaluation.store(hold, Ordering::SeqCst);
    }

    /// While `down` is set, every call fails `Unavailable` (MLflow is not running), reads and
    /// writes alike.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn unavailable<'a, T: Send + 'a>(&self) -> Option<BoxFuture<'a, Result<T, RegistryError>>> {
        self.down.load(Ordering::SeqCst).then(|| {
            async {
                Err(RegistryError::Unavailable(
                    "MLflow is down (scripted)".into(),
                ))
            }
            .boxed()
        })
    }

    /// Holds the next resolve of a pinned version, so the reconcile running it decides on a
    /// view the test can make stale meanwhile. Returns (`entered`: the reconcile is held,
    /// `release`: let it go on).
    pub fn hold_next_pinned_resolve(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (entered_tx, entered_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        *self.held_pinned_resolve.lock().unwrap() = Some((entered_tx, release_rx));
        (entered_rx, release_tx)
    }
}

impl ModelRegistry for ScriptedRegistry {
    fn resolve<'a>(
        &'a self,
        model: &'a ModelSource,
        credentials: &'a RegistryCredentials,
    ) -> BoxFuture<'a, Result<ResolvedModel, RegistryError>> {
        if let Some(down) = self.unavailable() {
            return down;
        }
        let held = if model.version.is_some() {
            self.held_pinned_resolve.lock().unwrap().take()
        } else {
            None
        };
        async move {
            if let Some((entered, release)) = held {
                let _ = entered.send(());
                let _ = release.await;
            }
            self.memory.resolve(model, credentials).await
        }
        .boxed()
    }

    fn find_candidate<'a>(
        &'a self,
        model: &'a ModelSource,
        credentials: &'a RegistryCredentials,
        attempt_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, RegistryError>> {
        if let Some(down) = self.unavailable() {
            return down;
        }
        self.memory.find_candidate(model, credentials, attempt_id)
    }

    fn evaluation_metrics<'a>(
        &'a self,
        model: &'a ModelSource,
        credentials: &'a RegistryCredentials,
        candidate: &'a str,
        champion: &'a str,
        metric: &'a str,
    ) -> BoxFuture<'a, Result<MetricPair, RegistryError>> {
        if let Some(down) = self.unavailable() {
            return down;
        }
        if self.hold_evaluation.load(Ordering::SeqCst) {
            return Box::pin(async {
                Err(RegistryError::Unavailable(
                    "evaluation held by the test".into(),
                ))
            });
        }
        self.memory
            .evaluation_metrics(model, credentials, candidate, champion, metric)
    }

    fn apply_write<'a>(
        &'a self,
        model: &'a ModelSource,
        credentials: &'a RegistryCredentials,
        write: &'a RegistryWrite,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        if let Some(down) = self.unavailable() {
            return down;
        }
        self.memory.apply_write(model, credentials, write)
    }
}

/// Registers versions 1..=`latest` of `model` (each with accuracy 0.8) and points alias
/// `champion` at version `champion`: a model with a history the operator can serve.
pub fn register_versions(registry: &InMemoryRegistry, model: &str, latest: u64, champion: u64) {
    for version in 1..=latest {
        registry.register(model, version, &[("accuracy", 0.8)], &[]);
    }
    registry.set_alias(model, "champion", champion);
}

/// An in-memory registry where `model` has one version, `version`, as its champion.
pub fn with_champion(model: &str, version: u64) -> std::sync::Arc<InMemoryRegistry> {
    let registry = std::sync::Arc::new(InMemoryRegistry::new());
    registry.register(model, version, &[], &[]);
    registry.set_alias(model, "champion", version);
    registry
}
