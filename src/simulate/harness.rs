//! The simulated shell: one cluster played around the real decision core.
//!
//! A [`Harness`] owns what the controller would read from and write to: the model registry
//! (versions, aliases, tags, outages), the stable and candidate Deployments with their
//! readiness, the annotations a person sets, the objects applied so far, the traffic of the
//! last decision and the resource's status. The caller scripts what the world outside the
//! cluster does (drift checks, the Job's fate, measurements) and moves the clock; each
//! reconcile runs [`decide`] once and applies the decision the way the controller does:
//! children first, then the registry writes, keeping the ones that failed.
//!
//! `mlrollout simulate`, the lifecycle's property tests and its example tests that run whole
//! decisions all drive the core through this one shell.
//!
//! ```text
//! harness.advance_to(now);            // the cluster catches up with the last decision
//! let wants = harness.wants();        // what the lifecycle asks to observe
//! let observations = /* scripted */;  // drift, Job, lookup, evaluation, measurements
//! let decision = harness.reconcile(observations);
//! ```

use std::collections::BTreeMap;

use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;

use crate::api::validation::{SpecProblem, ValidatedSpec, validate};
use crate::api::{ModelDeploymentSpec, ModelDeploymentStatus, RegistryWrite};
use crate::core::decide::{
    Child, DecideInput, Decision, DeploymentState, Observed, RegistryFailure, Removal,
    ResolvedModel, decide,
};
use crate::core::lifecycle::{
    self, CandidateLookup, DesiredTraffic, EvaluationObservation, Observations, Wants,
};
use crate::registry::memory::InMemoryRegistry;
use crate::registry::{ModelRegistry, RegistryCredentials, RegistryError};

/// Who the simulated resource is: what the API server would have given it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub generation: i64,
}

/// How the simulated Deployments become ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// A Deployment is ready this many seconds after its version was first desired.
    After { seconds: u64 },
    /// Each Deployment is ready or not as the caller says (before each reconcile).
    Scripted { stable: bool, candidate: bool },
}

/// A variant's Deployment in the simulated cluster: the version it runs and since when.
#[derive(Debug, Clone, Default)]
struct SimDeployment {
    version: Option<String>,
    since: i64,
    /// Replicas the last applied Deployment asks for (`None`: `serving.replicas`).
    replicas: Option<i32>,
    /// Ready replicas before the last scale-up, and when it came: the added pods become ready
    /// after the same delay as a restart.
    ready_before_scale: i32,
    scaled_since: i64,
}

impl SimDeployment {
    /// The Deployment follows the version the last decision wants (restarting on a change).
    fn desire(&mut self, version: Option<&str>, now: Timestamp) {
        if self.version.as_deref() != version {
            self.version = version.map(String::from);
            self.since = now.as_second();
        }
    }

    /// The Deployment follows the replica count the last decision applied.
    fn scale(&mut self, replicas: Option<i32>, now: Timestamp, ready: ReadyWhen, default: i32) {
        let (old, new) = (
            self.replicas.unwrap_or(default),
            replicas.unwrap_or(default),
        );
        if new > old {
            self.ready_before_scale = self
                .state(now, ready, default)
                .map_or(0, |s| s.ready_replicas);
            self.scaled_since = now.as_second();
        }
        self.replicas = replicas;
    }

    fn state(&self, now: Timestamp, ready: ReadyWhen, default: i32) -> Option<DeploymentState> {
        let version = self.version.clone()?;
        let replicas = self.replicas.unwrap_or(default);
        let after = |since: i64| match ready {
            ReadyWhen::After(seconds) => {
                now.as_second().saturating_sub(since) >= i64::try_from(seconds).unwrap_or(i64::MAX)
            }
            ReadyWhen::Now(ready) => ready,
        };
        let ready_replicas = if !after(self.since) {
            0
        } else if after(self.scaled_since) {
            replicas.max(1)
        } else {
            self.ready_before_scale.min(replicas).max(1)
        };
        Some(DeploymentState {
            desired_replicas: replicas,
            ready_replicas,
            updated: true,
            version: Some(version),
        })
    }
}

/// One Deployment's side of [`Readiness`].
#[derive(Debug, Clone, Copy)]
enum ReadyWhen {
    After(u64),
    Now(bool),
}

/// The simulated cluster and registry around the decision core (see the module doc).
#[derive(Debug)]
pub struct Harness {
    identity: Identity,
    spec: ModelDeploymentSpec,
    /// `spec`, validated once: an invalid spec is decided on (InvalidSpec) every reconcile.
    validated: Result<ValidatedSpec, Vec<SpecProblem>>,
    registry: InMemoryRegistry,
    credentials: RegistryCredentials,
    readiness: Readiness,
    stable: SimDeployment,
    candidate: SimDeployment,
    annotations: BTreeMap<String, String>,
    /// Objects applied so far and not removed, by (kind, name).
    objects: BTreeMap<(&'static str, String), Child>,
    /// The traffic of the last decision that applied children: what the cluster runs.
    traffic: DesiredTraffic,
    status: ModelDeploymentStatus,
    now: Timestamp,
}

impl Harness {
    /// A cluster where `spec` was just applied: nothing reconciled yet, an empty registry.
    pub fn new(identity: Identity, spec: ModelDeploymentSpec, readiness: Readiness) -> Self {
        Self {
            identity,
            validated: validate(&spec),
            spec,
            registry: InMemoryRegistry::new(),
            credentials: RegistryCredentials::None,
            readiness,
            stable: SimDeployment::default(),
            candidate: SimDeployment::default(),
            annotations: BTreeMap::new(),
            objects: BTreeMap::new(),
            traffic: DesiredTraffic::default(),
            status: ModelDeploymentStatus::default(),
            now: Timestamp::UNIX_EPOCH,
        }
    }

    /// The same cluster picked up at `status`: the Deployments run its stable and candidate
    /// versions and the traffic is what it records.
    pub fn resuming(mut self, status: ModelDeploymentStatus) -> Self {
        self.traffic = DesiredTraffic {
            candidate_version: status.candidate_version.clone(),
            canary_weight: status.canary_weight,
            mirror_percent: status.mirror_percent,
            stable_version: status
                .post_promotion
                .as_ref()
                .map(|p| p.previous_version.clone())
                .or_else(|| status.stable_version.clone()),
            experiment: status.phase == crate::api::Phase::Experimenting,
        };
        self.status = status;
        self.follow_last_decision();
        self
    }

    // -- The world the caller scripts ----------------------------------------------------------

    /// Registers `version` of the model with its training run's metrics and tags.
    pub fn register(&self, version: u64, metrics: &BTreeMap<String, f64>, tags: &[(&str, &str)]) {
        let metrics: Vec<(&str, f64)> = metrics.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        self.registry
            .register(&self.spec.model.name, version, &metrics, tags);
    }

    /// Points `alias` at `version` (what a person does in the MLflow UI).
    pub fn set_alias(&self, alias: &str, version: u64) {
        self.registry
            .set_alias(&self.spec.model.name, alias, version);
    }

    /// While on, every registry read and write fails as if MLflow were down.
    pub fn set_registry_outage(&self, outage: bool) {
        self.registry.set_unavailable(outage);
    }

    /// Sets (or, with `None`, removes) an annotation on the resource.
    pub fn annotate(&mut self, name: &str, value: Option<String>) {
        match value {
            Some(value) => self.annotations.insert(name.into(), value),
            None => self.annotations.remove(name),
        };
    }

    pub fn set_readiness(&mut self, readiness: Readiness) {
        self.readiness = readiness;
    }

    /// Moves the clock to `now`; the Deployments catch up with the last decision.
    pub fn advance_to(&mut self, now: Timestamp) {
        self.now = now;
        self.follow_last_decision();
    }

    // -- What the cluster looks like ----------------------------------------------------------

    pub fn spec(&self) -> &ModelDeploymentSpec {
        &self.spec
    }

    pub fn validated(&self) -> &Result<ValidatedSpec, Vec<SpecProblem>> {
        &self.validated
    }

    pub fn status(&self) -> &ModelDeploymentStatus {
        &self.status
    }

    /// The traffic the cluster runs (that of the last decision that applied children).
    pub fn traffic(&self) -> &DesiredTraffic {
        &self.traffic
    }

    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The objects applied so far and not removed.
    pub fn objects(&self) -> impl Iterator<Item = &Child> {
        self.objects.values()
    }

    /// What the lifecycle asks to observe before its next step (nothing for an invalid spec).
    pub fn wants(&self) -> Wants {
        match &self.validated {
            Ok(validated) => lifecycle::wants(validated, &self.status, self.now),
            Err(_) => Wants::default(),
        }
    }

    pub fn stable_deployment(&self) -> Option<DeploymentState> {
        let ready = match self.readiness {
            Readiness::After { seconds } => ReadyWhen::After(seconds),
            Readiness::Scripted { stable, .. } => ReadyWhen::Now(stable),
        };
        self.stable
            .state(self.now, ready, self.spec.serving.replicas)
    }

    pub fn candidate_deployment(&self) -> Option<DeploymentState> {
        let ready = match self.readiness {
            Readiness::After { seconds } => ReadyWhen::After(seconds),
            Readiness::Scripted { candidate, .. } => ReadyWhen::Now(candidate),
        };
        self.candidate
            .state(self.now, ready, self.spec.serving.replicas)
    }

    /// The candidate Deployment has ready pods running `status.candidateVersion` (a
    /// measurement is only taken then).
    pub fn candidate_ready(&self) -> bool {
        self.candidate_deployment().is_some_and(|d| {
            d.ready_replicas > 0 && d.version.as_deref() == self.status.candidate_version.as_deref()
        })
    }

    /// The version a succeeded Job registered, looked up in the registry by its lineage tag.
    pub fn find_candidate(&self, attempt_id: &str) -> CandidateLookup {
        match self
            .registry
            .find_candidate(&self.spec.model, &self.credentials, attempt_id)
            .now_or_never()
        {
            Some(Ok(Some(version))) => CandidateLookup::Found(version),
            Some(Ok(None)) => CandidateLookup::NotFound,
            Some(Err(e)) => CandidateLookup::Error(e.to_string()),
            None => CandidateLookup::Error("registry did not answer".into()),
        }
    }

    /// The evaluation metric of `candidate` and `champion`, read from the registry.
    pub fn evaluation(&self, candidate: &str, champion: &str) -> EvaluationObservation {
        match self
            .registry
            .evaluation_metrics(
                &self.spec.model,
                &self.credentials,
                candidate,
                champion,
                &self.spec.evaluation.metric,
            )
            .now_or_never()
        {
            Some(Ok((candidate, champion))) => EvaluationObservation::Metrics {
                candidate,
                champion,
            },
            Some(Err(e)) => EvaluationObservation::Error(e.to_string()),
            None => EvaluationObservation::Error("registry did not answer".into()),
        }
    }

    // -- One reconcile ------------------------------------------------------------------------

    /// Everything the controller would observe now, with the caller's lifecycle observations.
    pub fn observed(&self, lifecycle: Observations) -> Observed {
        Observed {
            served: self.served(),
            stable_deployment: self.stable_deployment(),
            candidate_deployment: self.candidate_deployment(),
            lifecycle,
            annotations: self.annotations.clone(),
        }
    }

    /// Runs [`decide`] once on `observed`; changes nothing.
    pub fn decide(&self, observed: Observed) -> Decision {
        let owner = OwnerReference {
            api_version: "mlrollout.io/v1alpha1".into(),
            kind: "ModelDeployment".into(),
            name: self.identity.name.clone(),
            uid: self.identity.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        decide(DecideInput {
            name: &self.identity.name,
            namespace: &self.identity.namespace,
            uid: &self.identity.uid,
            generation: Some(self.identity.generation),
            owner,
            spec: &self.validated,
            status: &self.status,
            observed,
            now: self.now,
        })
    }

    /// Applies `decision` as the controller does: the children (and the traffic they
    /// express), the new status, then the registry writes; the writes that fail stay pending.
    pub fn apply(&mut self, decision: &Decision) {
        if let Some(children) = &decision.apply {
            for child in children {
                self.apply_child(child);
            }
        }
        for removal in &decision.remove {
            self.objects.remove(&removal_key(removal));
        }
        if let Some(traffic) = &decision.traffic {
            self.traffic = traffic.clone();
        }
        self.status = decision.status.clone();
        let pending = std::mem::take(&mut self.status.pending_registry_writes);
        for write in pending {
            if !self.write(&write) {
                self.status.pending_registry_writes.push(write);
            }
        }
    }

    /// Observes, decides once and applies; returns the decision.
    pub fn reconcile(&mut self, lifecycle: Observations) -> Decision {
        let decision = self.decide(self.observed(lifecycle));
        self.apply(&decision);
        decision
    }

    // -- Inside the shell ---------------------------------------------------------------------

    fn follow_last_decision(&mut self) {
        self.stable
            .desire(self.traffic.stable_version.as_deref(), self.now);
        self.candidate
            .desire(self.traffic.candidate_version.as_deref(), self.now);
        let default = self.spec.serving.replicas;
        let (stable_ready, candidate_ready) = self.ready_when();
        let stable = self.applied_replicas(crate::core::names::Variant::Stable);
        self.stable.scale(stable, self.now, stable_ready, default);
        let candidate = self.applied_replicas(crate::core::names::Variant::Candidate);
        self.candidate
            .scale(candidate, self.now, candidate_ready, default);
    }

    /// The replicas of the variant's Deployment as last applied.
    fn applied_replicas(&self, variant: crate::core::names::Variant) -> Option<i32> {
        let name = crate::core::names::variant_name(&self.identity.name, variant);
        match self.objects.get(&("Deployment", name)) {
            Some(Child::Deployment(d)) => d.spec.as_ref().and_then(|s| s.replicas),
            _ => None,
        }
    }

    /// How each Deployment's pods become ready: (stable, candidate).
    fn ready_when(&self) -> (ReadyWhen, ReadyWhen) {
        match self.readiness {
            Readiness::After { seconds } => (ReadyWhen::After(seconds), ReadyWhen::After(seconds)),
            Readiness::Scripted { stable, candidate } => {
                (ReadyWhen::Now(stable), ReadyWhen::Now(candidate))
            }
        }
    }

    fn served(&self) -> Result<ResolvedModel, RegistryFailure> {
        self.registry
            .resolve(&self.spec.model, &self.credentials)
            .now_or_never()
            .unwrap_or_else(|| Err(RegistryError::Other("registry did not answer".into())))
            .map_err(Into::into)
    }

    fn write(&self, write: &RegistryWrite) -> bool {
        matches!(
            self.registry
                .apply_write(&self.spec.model, &self.credentials, write)
                .now_or_never(),
            Some(Ok(()))
        )
    }

    /// Server-side apply; a Job is created if absent and never updated.
    fn apply_child(&mut self, child: &Child) {
        let key = child_key(child);
        if matches!(child, Child::Job(_)) && self.objects.contains_key(&key) {
            return;
        }
        self.objects.insert(key, child.clone());
    }
}

fn child_key(child: &Child) -> (&'static str, String) {
    let (kind, name) = match child {
        Child::Deployment(d) => ("Deployment", &d.metadata.name),
        Child::Service(s) => ("Service", &s.metadata.name),
        Child::HttpRoute(r) => ("HTTPRoute", &r.metadata.name),
        Child::VirtualService(v) => ("VirtualService", &v.metadata.name),
        Child::InferencePool(p) => ("InferencePool", &p.metadata.name),
        Child::Job(j) => ("Job", &j.metadata.name),
    };
    (kind, name.clone().unwrap_or_default())
}

fn removal_key(removal: &Removal) -> (&'static str, String) {
    match removal {
        Removal::Deployment(name) => ("Deployment", name.clone()),
        Removal::Service(name) => ("Service", name.clone()),
        Removal::Job(name) => ("Job", name.clone()),
    }
}
