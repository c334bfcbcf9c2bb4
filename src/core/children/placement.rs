//! `spec.rollout.antiAffinity`, `candidateMetadata` and `stableMetadata` on a variant's pod
//! template: added to what the user's pod template has, never replacing it, and never the
//! operator's own labels (the Deployment's selector must stay what it is).

use k8s_openapi::api::core::v1::{
    Affinity, PodAffinityTerm, PodAntiAffinity, PodTemplateSpec, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::api::RolloutSpec;
use crate::api::placement::{AntiAffinity, is_operator_label};
use crate::core::names::{Variant, selector_labels};

/// Nodes are told apart by their hostname label.
pub const TOPOLOGY_KEY: &str = "kubernetes.io/hostname";

/// Adds the variant's labels and annotations and the anti-affinity to the other variant.
pub fn apply(
    template: &mut PodTemplateSpec,
    rollout: &RolloutSpec,
    resource: &str,
    variant: Variant,
) {
    let metadata = match variant {
        Variant::Stable => rollout.stable_metadata.as_ref(),
        Variant::Candidate => rollout.candidate_metadata.as_ref(),
    };
    if let Some(extra) = metadata {
        let meta = template.metadata.get_or_insert_with(Default::default);
        let labels = meta.labels.get_or_insert_with(Default::default);
        for (key, value) in &extra.labels {
            if !is_operator_label(key) {
                labels.insert(key.clone(), value.clone());
            }
        }
        meta.annotations
            .get_or_insert_with(Default::default)
            .extend(extra.annotations.clone());
    }
    if let Some(anti) = &rollout.anti_affinity {
        let pod = template.spec.get_or_insert_with(Default::default);
        let affinity = pod.affinity.get_or_insert_with(Affinity::default);
        add_term(affinity, anti, resource, variant);
    }
}

/// The other variant of this resource, as a pod selector.
fn other_variant(resource: &str, variant: Variant) -> PodAffinityTerm {
    let other = match variant {
        Variant::Stable => Variant::Candidate,
        Variant::Candidate => Variant::Stable,
    };
    PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(selector_labels(resource, other)),
            match_expressions: None,
        }),
        topology_key: TOPOLOGY_KEY.into(),
        ..Default::default()
    }
}

fn add_term(affinity: &mut Affinity, anti: &AntiAffinity, resource: &str, variant: Variant) {
    let term = other_variant(resource, variant);
    let pod_anti = affinity
        .pod_anti_affinity
        .get_or_insert_with(PodAntiAffinity::default);
    if let Some(preferred) = &anti.preferred_during_scheduling_ignored_during_execution {
        let terms = pod_anti
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new);
        if !terms.iter().any(|t| t.pod_affinity_term == term) {
            terms.push(WeightedPodAffinityTerm {
                pod_affinity_term: term,
                weight: preferred.weight.clamp(1, 100),
            });
        }
    } else if anti
        .required_during_scheduling_ignored_during_execution
        .is_some()
    {
        let terms = pod_anti
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new);
        if !terms.contains(&term) {
            terms.push(term);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{NodeAffinity, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::api::placement::{PodMetadata, PreferredAntiAffinity, RequiredAntiAffinity};
    use crate::core::names::LABEL_VARIANT;

    fn rollout(anti: Option<AntiAffinity>) -> RolloutSpec {
        RolloutSpec {
            anti_affinity: anti,
            candidate_metadata: Some(PodMetadata {
                labels: BTreeMap::from([
                    ("track".into(), "canary".into()),
                    (LABEL_VARIANT.into(), "stable".into()),
                ]),
                annotations: BTreeMap::from([("team".into(), "fraud".into())]),
            }),
            stable_metadata: Some(PodMetadata {
                labels: BTreeMap::from([("track".into(), "stable".into())]),
                annotations: BTreeMap::new(),
            }),
            ..RolloutSpec::default()
        }
    }

    fn users_template() -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("app".into(), "mine".into())])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                affinity: Some(Affinity {
                    node_affinity: Some(NodeAffinity::default()),
                    pod_anti_affinity: Some(PodAntiAffinity {
                        required_during_scheduling_ignored_during_execution: Some(vec![
                            PodAffinityTerm {
                                topology_key: "zone".into(),
                                ..Default::default()
                            },
                        ]),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn labels_and_annotations_are_added_but_never_the_operators_own() {
        let mut template = users_template();
        apply(&mut template, &rollout(None), "fraud", Variant::Candidate);
        let meta = template.metadata.unwrap();
        let labels = meta.labels.unwrap();
        assert_eq!(labels["track"], "canary");
        assert_eq!(labels["app"], "mine", "the template's labels stay");
        assert!(!labels.contains_key(LABEL_VARIANT), "{labels:?}");
        assert_eq!(meta.annotations.unwrap()["team"], "fraud");

        let mut stable = PodTemplateSpec::default();
        apply(&mut stable, &rollout(None), "fraud", Variant::Stable);
        assert_eq!(stable.metadata.unwrap().labels.unwrap()["track"], "stable");
        assert!(stable.spec.is_none(), "no anti-affinity asked for");
    }

    #[test]
    fn preferred_anti_affinity_avoids_the_other_variant_and_keeps_the_users_affinity() {
        let anti = AntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(PreferredAntiAffinity {
                weight: 40,
            }),
            required_during_scheduling_ignored_during_execution: None,
        };
        let mut template = users_template();
        apply(
            &mut template,
            &rollout(Some(anti.clone())),
            "fraud",
            Variant::Candidate,
        );
        // Building twice (every reconcile) adds the term once.
        apply(
            &mut template,
            &rollout(Some(anti)),
            "fraud",
            Variant::Candidate,
        );
        let affinity = template.spec.unwrap().affinity.unwrap();
        assert!(
            affinity.node_affinity.is_some(),
            "the user's node affinity stays"
        );
        let pod_anti = affinity.pod_anti_affinity.unwrap();
        let required = pod_anti
            .required_during_scheduling_ignored_during_execution
            .unwrap();
        assert_eq!(required.len(), 1, "the user's own term stays, none added");
        let preferred = pod_anti
            .preferred_during_scheduling_ignored_during_execution
            .unwrap();
        assert_eq!(preferred.len(), 1);
        assert_eq!(preferred[0].weight, 40);
        let term = &preferred[0].pod_affinity_term;
        assert_eq!(term.topology_key, TOPOLOGY_KEY);
        let selector = term.label_selector.clone().unwrap().match_labels.unwrap();
        assert_eq!(selector, selector_labels("fraud", Variant::Stable));
    }

    #[test]
    fn required_anti_affinity_on_stable_avoids_the_candidate() {
        let anti = AntiAffinity {
            preferred_during_scheduling_ignored_during_execution: None,
            required_during_scheduling_ignored_during_execution: Some(RequiredAntiAffinity {}),
        };
        let mut template = PodTemplateSpec::default();
        apply(
            &mut template,
            &rollout(Some(anti)),
            "fraud",
            Variant::Stable,
        );
        let pod_anti = template
            .spec
            .unwrap()
            .affinity
            .unwrap()
            .pod_anti_affinity
            .unwrap();
        assert!(
            pod_anti
                .preferred_during_scheduling_ignored_during_execution
                .is_none()
        );
        let required = pod_anti
            .required_during_scheduling_ignored_during_execution
            .unwrap();
        let selector = required[0]
            .label_selector
            .clone()
            .unwrap()
            .match_labels
            .unwrap();
        assert_eq!(selector, selector_labels("fraud", Variant::Candidate));
        assert_eq!(required[0].topology_key, TOPOLOGY_KEY);
    }
}
