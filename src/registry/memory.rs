//! An in-memory model registry with MLflow's semantics (versions, run metrics, aliases, tags).
//! The simulator runs on it, and controller tests use it; MLflow itself is tested against
//! the real server.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{LINEAGE_TAG, ModelRegistry, RegistryCredentials, RegistryError, ResolvedModel};
use crate::api::{ModelSource, RegistryOp, RegistryWrite};

#[derive(Debug, Clone, Default)]
struct Version {
    metrics: BTreeMap<String, f64>,
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct State {
    /// model → version → data
    models: BTreeMap<String, BTreeMap<u64, Version>>,
    /// model → alias → version
    aliases: BTreeMap<String, BTreeMap<String, u64>>,
    unavailable: bool,
    writes: Vec<RegistryWrite>,
}

/// A thread-safe in-memory registry.
#[derive(Debug, Default)]
pub struct InMemoryRegistry {
    state: Mutex<State>,
}

impl InMemoryRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Registers `version` of `model` with its training run's metrics and tags.
    pub fn register(
        &self,
        model: &str,
        version: u64,
        metrics: &[(&str, f64)],
        tags: &[(&str, &str)],
    ) {
        self.with(|s| {
            s.models.entry(model.into()).or_default().insert(
                version,
                Version {
                    metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                    tags: tags
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                },
            );
        });
    }

    /// Points `alias` at `version` (what a person does in the MLflow UI).
    pub fn set_alias(&self, model: &str, alias: &str, version: u64) {
        self.with(|s| {
            s.aliases
                .entry(model.into())
                .or_default()
                .insert(alias.into(), version);
        });
    }

    /// The version behind `alias`.
    pub fn alias(&self, model: &str, alias: &str) -> Option<u64> {
        self.with(|s| s.aliases.get(model).and_then(|a| a.get(alias)).copied())
    }

    /// A tag of a version.
    pub fn tag(&self, model: &str, version: u64, key: &str) -> Option<String> {
        self.with(|s| {
            s.models
                .get(model)
                .and_then(|m| m.get(&version))
                .and_then(|v| v.tags.get(key).cloned())
        })
    }

    /// Simulates an outage: every call fails with `Unavailable`.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.with(|s| s.unavailable = unavailable);
    }

    /// Every write performed, in order.
    pub fn writes(&self) -> Vec<RegistryWrite> {
        self.with(|s| s.writes.clone())
    }

    fn check(&self, model: &str) -> Result<(), RegistryError> {
        self.with(|s| {
            if s.unavailable {
                return Err(RegistryError::Unavailable(
                    "registry outage (simulated)".into(),
                ));
            }
            if !s.models.contains_key(model) {
                return Err(RegistryError::ModelNotFound {
                    model: model.into(),
                });
            }
            Ok(())
        })
    }

    fn version_number(model: &str, version: &str) -> Result<u64, RegistryError> {
        version.parse().map_err(|_| RegistryError::VersionNotFound {
            model: model.into(),
            version: version.into(),
        })
    }
}

impl ModelRegistry for InMemoryRegistry {
    fn resolve<'a>(
        &'a self,
        model: &'a ModelSource,
        _credentials: &'a RegistryCredentials,
    ) -> BoxFuture<'a, Result<ResolvedModel, RegistryError>> {
        let result = self.check(&model.name).and_then(|()| {
            let version = match &model.version {
                Some(pinned) => {
                    let n = Self::version_number(&model.name, pinned)?;
                    let exists = self.with(|s| {
                        s.models
                            .get(&model.name)
                            .is_some_and(|m| m.contains_key(&n))
                    });
                    if !exists {
                        return Err(RegistryError::VersionNotFound {
                            model: model.name.clone(),
                            version: pinned.clone(),
                        });
                    }
                    n
                }
                None => self.alias(&model.name, &model.alias).ok_or_else(|| {
                    RegistryError::AliasNotFound {
                        model: model.name.clone(),
                        alias: model.alias.clone(),
                    }
                })?,
            };
            Ok(ResolvedModel {
                version: version.to_string(),
                run_id: Some(format!("run-{version}")),
            })
        });
        async move { result }.boxed()
    }

    fn find_candidate<'a>(
        &'a self,
        model: &'a ModelSource,
        _credentials: &'a RegistryCredentials,
        attempt_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, RegistryError>> {
        let result = self.check(&model.name).map(|()| {
            self.with(|s| {
                s.models.get(&model.name).and_then(|versions| {
                    versions
                        .iter()
                        .find(|(_, v)| {
                            v.tags.get(LINEAGE_TAG).map(String::as_str) == Some(attempt_id)
                        })
                        .map(|(n, _)| n.to_string())
                })
            })
        });
        async move { result }.boxed()
    }

    fn evaluation_metrics<'a>(
        &'a self,
        model: &'a ModelSource,
        _credentials: &'a RegistryCredentials,
        candidate: &'a str,
        champion: &'a str,
        metric: &'a str,
    ) -> BoxFuture<'a, Result<(Option<f64>, Option<f64>), RegistryError>> {
        let result = self.check(&model.name).and_then(|()| {
            let c = Self::version_number(&model.name, candidate)?;
            let b = Self::version_number(&model.name, champion)?;
            Ok(self.with(|s| {
                let get = |n: u64| {
                    s.models
                        .get(&model.name)
                        .and_then(|m| m.get(&n))
                        .and_then(|v| v.metrics.get(metric).copied())
                };
                (get(c), get(b))
            }))
        });
        async move { result }.boxed()
    }

    fn apply_write<'a>(
        &'a self,
        model: &'a ModelSource,
        _credentials: &'a RegistryCredentials,
        write: &'a RegistryWrite,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        let result = self.check(&model.name).and_then(|()| {
            let version = write
                .version
                .as_deref()
                .map(|v| Self::version_number(&model.name, v))
                .transpose()?;
            self.with(|s| {
                match (write.op, version) {
                    (RegistryOp::SetAlias, Some(v)) => {
                        s.aliases
                            .entry(model.name.clone())
                            .or_default()
                            .insert(write.key.clone(), v);
                    }
                    (RegistryOp::DeleteAlias, _) => {
                        if let Some(a) = s.aliases.get_mut(&model.name) {
                            a.remove(&write.key);
                        }
                    }
                    (RegistryOp::SetTag, Some(v)) => {
                        if let Some(entry) =
                            s.models.get_mut(&model.name).and_then(|m| m.get_mut(&v))
                        {
                            entry
                                .tags
                                .insert(write.key.clone(), write.value.clone().unwrap_or_default());
                        }
                    }
                    (RegistryOp::LogAttempt, _) => {}
                    _ => return Err(RegistryError::Other(format!("malformed write {write:?}"))),
                }
                s.writes.push(write.clone());
                Ok(())
            })
        });
        async move { result }.boxed()
    }
}
