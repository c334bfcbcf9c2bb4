//! Reference profiles: what a check needs from a reference, written once
//! (`mlrollout drift profile`) and read instead of the raw data (any reference URI ending in
//! `.json`), so a 100M-row reference costs one pass, once.
//!
//! A profile holds, per feature, what [`PreparedReference`] holds: for a numeric feature the
//! PSI edges and bin counts (exact) and its values — sorted, up to `exact_up_to` values, else
//! a KLL sketch (KS from it then carries its error bound) —; for a categorical or discrete one
//! the category counts. It also records the settings that shaped it (PSI bins and smoothing,
//! the discrete threshold, the feature selection, kinds, ignored and prediction columns): a
//! check with other settings refuses the profile rather than compare against the wrong bins.

use super::*;
use crate::drift::stats::{CategoricalCounts, Distribution, QuantileSketch};

/// The `kind` of a profile document.
pub const PROFILE_KIND: &str = "DriftProfile";
/// Numeric values kept exactly in a profile by default (beyond: a sketch, ~100 KB).
pub const DEFAULT_EXACT_UP_TO: usize = 100_000;

/// Whether a reference URI names a profile.
pub fn is_profile_uri(uri: &str) -> bool {
    uri.to_ascii_lowercase().ends_with(".json")
}

/// The profile document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftProfile {
    pub api_version: String,
    pub kind: String,
    /// The reference it was made from.
    pub source: String,
    pub rows: usize,
    /// The settings that shaped it ([`DriftConfig::fingerprint`]).
    pub settings: String,
    pub features: Vec<ProfileFeature>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<ProfileFeature>,
    /// Whether `features` was an explicit list.
    pub explicit: bool,
}

/// One feature of a profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProfileFeature {
    Numeric {
        name: String,
        /// The PSI edges between the bins (the outer ones are ∓∞).
        inner_edges: Vec<f64>,
        bin_counts: Vec<u64>,
        missing: u64,
        /// The finite values, sorted (at most the profile's `exact_up_to`)…
        #[serde(default, skip_serializing_if = "Option::is_none")]
        values: Option<Vec<f64>>,
        /// …or their sketch (DataSketches KLL, base64).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sketch: Option<QuantileSketch>,
    },
    Categorical {
        name: String,
        counts: CategoricalCounts,
    },
    Discrete {
        name: String,
        counts: CategoricalCounts,
        values: usize,
    },
}

impl DriftProfile {
    /// The profile of a prepared reference; numeric features with more than `exact_up_to`
    /// values keep a sketch instead of the values.
    pub fn new(
        prepared: &PreparedReference,
        config: &DriftConfig,
        source: &str,
        exact_up_to: usize,
    ) -> Self {
        let feature = |(name, r): (&str, &FeatureReference)| profile_feature(name, r, exact_up_to);
        Self {
            api_version: "mlrollout.io/v1alpha1".into(),
            kind: PROFILE_KIND.into(),
            source: source.to_owned(),
            rows: prepared.rows,
            settings: config.fingerprint(),
            features: prepared.features().map(feature).collect(),
            prediction: prepared.prediction().map(feature),
            explicit: prepared.explicit,
        }
    }

    /// The prepared reference this profile stands for, for a check with `config`.
    pub fn prepared(
        self,
        config: &DriftConfig,
        key: ReferenceKey,
    ) -> Result<PreparedReference, DriftError> {
        if self.kind != PROFILE_KIND {
            return Err(DriftError::InvalidConfig(format!(
                "the reference profile has kind '{}', not {PROFILE_KIND}",
                self.kind
            )));
        }
        let wanted = config.fingerprint();
        if self.settings != wanted {
            return Err(DriftError::InvalidConfig(format!(
                "the reference profile was made with other settings ({}) than this check's ({wanted}): make it again with the same --resource or column flags",
                self.settings
            )));
        }
        let reference = |f: ProfileFeature| feature_reference(f, config.psi);
        let mut features = Vec::with_capacity(self.features.len());
        for f in self.features {
            features.push(reference(f)?);
        }
        Ok(PreparedReference {
            key,
            rows: self.rows,
            features,
            prediction: self.prediction.map(reference).transpose()?,
            explicit: self.explicit,
        })
    }
}

fn profile_feature(name: &str, r: &FeatureReference, exact_up_to: usize) -> ProfileFeature {
    let name = name.to_owned();
    match r {
        FeatureReference::Numeric(n) => {
            let edges = n.edges();
            let inner_edges = edges
                .get(1..edges.len().saturating_sub(1))
                .unwrap_or_default()
                .to_vec();
            let (values, sketch) = match n.distribution() {
                Distribution::Exact(v) if v.len() <= exact_up_to => (Some(v.clone()), None),
                Distribution::Exact(v) => {
                    let mut s = QuantileSketch::new();
                    s.extend(v);
                    (None, Some(s))
                }
                Distribution::Sketch(s) => (None, Some(s.clone())),
            };
            ProfileFeature::Numeric {
                name,
                inner_edges,
                bin_counts: n.bin_counts().to_vec(),
                missing: n.missing(),
                values,
                sketch,
            }
        }
        FeatureReference::Categorical(c) => ProfileFeature::Categorical {
            name,
            counts: c.counts().clone(),
        },
        FeatureReference::Discrete { reference, values } => ProfileFeature::Discrete {
            name,
            counts: reference.counts().clone(),
            values: *values,
        },
    }
}

fn feature_reference(
    f: ProfileFeature,
    psi: PsiParams,
) -> Result<(String, FeatureReference), DriftError> {
    let invalid = |name: &str, why: String| {
        DriftError::InvalidConfig(format!("reference profile, feature '{name}': {why}"))
    };
    Ok(match f {
        ProfileFeature::Numeric {
            name,
            inner_edges,
            bin_counts,
            missing,
            values,
            sketch,
        } => {
            let dist = match (values, sketch) {
                (Some(v), None) => {
                    if !v.windows(2).all(|w| w[0] <= w[1]) || v.iter().any(|x| !x.is_finite()) {
                        return Err(invalid(&name, "values are not finite and sorted".into()));
                    }
                    Distribution::Exact(v)
                }
                (None, Some(s)) => Distribution::Sketch(s),
                _ => return Err(invalid(&name, "needs either values or a sketch".into())),
            };
            let mut edges = Vec::with_capacity(inner_edges.len() + 2);
            if !dist.is_empty() {
                edges.push(f64::NEG_INFINITY);
                edges.extend(inner_edges);
                edges.push(f64::INFINITY);
            }
            let total: u64 = bin_counts.iter().sum();
            if total != dist.n() {
                return Err(invalid(
                    &name,
                    format!("bin counts add up to {total}, the values are {}", dist.n()),
                ));
            }
            let r = NumericReference::from_parts(dist, edges, bin_counts, missing, psi)
                .map_err(|e| invalid(&name, e.to_string()))?;
            (name, FeatureReference::Numeric(r))
        }
        ProfileFeature::Categorical { name, counts } => {
            let r = CategoricalReference::new(counts, psi.smoothing)
                .map_err(|e| invalid(&name, e.to_string()))?;
            (name, FeatureReference::Categorical(r))
        }
        ProfileFeature::Discrete {
            name,
            counts,
            values,
        } => {
            let reference = CategoricalReference::new(counts, psi.smoothing)
                .map_err(|e| invalid(&name, e.to_string()))?;
            (name, FeatureReference::Discrete { reference, values })
        }
    })
}

/// Read a profile from a fetched reference payload.
pub(super) fn read_profile(
    payload: &Payload,
    config: &DriftConfig,
    key: ReferenceKey,
) -> Result<PreparedReference, DriftError> {
    let uri = payload.uri().to_owned();
    let bytes = match payload {
        Payload::File { path, .. } => std::fs::read(path).map_err(|e| {
            DataError::malformed(
                Side::Reference,
                &uri,
                format!("cannot read the profile: {e}"),
            )
        })?,
        Payload::Bytes { bytes, .. } => bytes.to_vec(),
        Payload::Many { .. } => {
            return Err(DataError::InvalidUri {
                side: Side::Reference,
                uri,
                reason: "a reference profile is one .json file".into(),
            }
            .into());
        }
    };
    let profile: DriftProfile = serde_json::from_slice(&bytes).map_err(|e| {
        DataError::malformed(
            Side::Reference,
            &uri,
            format!("not a reference profile: {e}"),
        )
    })?;
    profile.prepared(config, key)
}

/// The reference location, a profile's read as bytes (its format is not a dataset's).
pub(super) fn profile_location(request: &CheckRequest) -> DatasetLocation {
    let mut loc = request.reference.clone();
    if is_profile_uri(&loc.uri) {
        loc.format = Some(DataFormat::Csv);
    }
    loc
}

impl DriftEngine {
    /// The reference of `request` prepared alone (read whole, or streamed past the memory
    /// limit), for a profile.
    pub async fn prepare_reference(
        &self,
        request: &CheckRequest,
    ) -> Result<PreparedReference, DriftError> {
        request.config.validate()?;
        let fetch = self.fetch.clone().with_storage(request.storage.clone());
        let now = request.now.unwrap_or_else(SystemTime::now);
        let all = FileSelection::default();
        let reference = resolve(&request.reference, Side::Reference, &fetch, all, now)?;
        let payload = reference.fetch(&fetch, Side::Reference).await?;
        let job = CpuJob {
            now,
            config: request.config.clone(),
            key: request.reference_key(),
            cached: None,
            reference: Some((payload.clone(), reference.format)),
            current: (payload, reference.format),
            labelled: None,
            memory_limit: self.fetch.memory_limit,
        };
        match tokio::task::spawn_blocking(move || job.prepare_only()).await {
            Ok(r) => r,
            Err(e) => Err(DriftError::InvalidConfig(format!(
                "internal error: the preparation did not finish: {e}"
            ))),
        }
    }
}

impl CpuJob {
    /// The reference alone (its payload is also `current`), whole or streamed.
    pub(super) fn prepare_only(&self) -> Result<PreparedReference, DriftError> {
        let (payload, format) = &self.current;
        let names = column_names(payload, *format, Side::Reference)?;
        let requests = reference_requests(&names, &self.config)?;
        let estimate =
            super::stream::estimated_bytes(payload, *format, requests.len(), Side::Reference);
        if estimate > self.memory_limit {
            return super::stream::prepare_streamed(self, self.memory_limit);
        }
        let table = read_table(payload, *format, &requests, Side::Reference)?;
        prepare_reference(table, &self.config, self.key.clone())
    }
}
