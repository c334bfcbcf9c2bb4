//! Deterministic names and labels of everything the operator creates.
//!
//! Names are derived from the resource name only, so a restarted operator finds (and adopts)
//! what an earlier one created instead of duplicating it.

use std::collections::BTreeMap;

/// Field manager for every server-side apply: one manager owns all operator-written fields.
pub const FIELD_MANAGER: &str = "mlrollout";
/// Label carrying the owning ModelDeployment's name.
pub const LABEL_OWNER: &str = "mlrollout.io/model-deployment";
/// Label carrying the variant (`stable` / `candidate`).
pub const LABEL_VARIANT: &str = "mlrollout.io/variant";
/// Label carrying the served MLflow model version.
pub const LABEL_MODEL_VERSION: &str = "mlrollout.io/model-version";

/// A served variant of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    Stable,
    Candidate,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Stable => "stable",
            Variant::Candidate => "candidate",
        }
    }
}

/// Name of a variant's Deployment and Service: `<resource>-<variant>`.
pub fn variant_name(resource: &str, variant: Variant) -> String {
    format!("{resource}-{}", variant.as_str())
}

/// Selector labels of a variant (immutable on a Deployment, so nothing version-specific).
pub fn selector_labels(resource: &str, variant: Variant) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_OWNER.to_string(), resource.to_string()),
        (LABEL_VARIANT.to_string(), variant.as_str().to_string()),
    ])
}

/// Labels on every child object.
pub fn common_labels(resource: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), resource.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "mlrollout".to_string(),
        ),
        (
            "app.kubernetes.io/component".to_string(),
            "model-server".to_string(),
        ),
        (LABEL_OWNER.to_string(), resource.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_and_distinct() {
        assert_eq!(variant_name("fraud", Variant::Stable), "fraud-stable");
        assert_eq!(variant_name("fraud", Variant::Candidate), "fraud-candidate");
        assert_ne!(
            selector_labels("fraud", Variant::Stable),
            selector_labels("fraud", Variant::Candidate)
        );
    }
}
