//! Traffic objects: a Gateway API `HTTPRoute` (weights on two backendRefs, shadow as a
//! `RequestMirror` filter with `percent`) or an Istio `VirtualService` (weights, `mirror` +
//! `mirrorPercentage`).

use gateway_api::httproutes::{
    HttpRoute, HttpRouteParentRefs, HttpRouteRules, HttpRouteRulesBackendRefs,
    HttpRouteRulesFilters, HttpRouteRulesFiltersRequestMirror,
    HttpRouteRulesFiltersRequestMirrorBackendRef, HttpRouteRulesFiltersType, HttpRouteSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};

use super::inference_pool;
use crate::api::ModelDeploymentSpec;
use crate::core::names::{Variant, common_labels, variant_name};

/// Traffic split decided by the lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Split {
    /// Percent of requests served by the candidate (the stable variant gets the rest).
    pub candidate_weight: i32,
    /// Percent of requests mirrored to the candidate (responses discarded).
    pub mirror_percent: i32,
    /// Whether a candidate Service exists to point at.
    pub candidate_exists: bool,
    /// While an experiment runs: the candidate version (requests that match
    /// `spec.rollout.experiment` go to the candidate; see [`super::experiment_route`]).
    pub experiment: Option<String>,
}

impl Split {
    /// (stable, candidate) weights; they always sum to 100.
    pub fn weights(&self) -> (i32, i32) {
        let candidate = if self.candidate_exists {
            self.candidate_weight.clamp(0, 100)
        } else {
            0
        };
        (100 - candidate, candidate)
    }
}

/// Name of the route object.
pub fn route_name(resource: &str, spec: &ModelDeploymentSpec) -> String {
    spec.traffic
        .route_name
        .clone()
        .unwrap_or_else(|| resource.to_string())
}

fn metadata(
    resource: &str,
    namespace: &str,
    spec: &ModelDeploymentSpec,
    owner: &OwnerReference,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(route_name(resource, spec)),
        namespace: Some(namespace.to_string()),
        labels: Some(common_labels(resource)),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    }
}

/// The HTTPRoute of a resource.
pub fn http_route(
    resource: &str,
    namespace: &str,
    spec: &ModelDeploymentSpec,
    owner: &OwnerReference,
    split: Split,
) -> HttpRoute {
    let port = Some(spec.serving.port);
    let (stable_weight, candidate_weight) = split.weights();
    let mut backends = vec![backend_ref(resource, spec, Variant::Stable, stable_weight)];
    if split.candidate_exists {
        backends.push(backend_ref(
            resource,
            spec,
            Variant::Candidate,
            candidate_weight,
        ));
    }
    // Mirrored requests go to the candidate's Service even with InferencePool backends: a
    // Service in `RequestMirror` is Extended support in Gateway API, any other kind only
    // implementation-specific (so shadow works on every gateway; the mirror bypasses the EPP).
    let filters = (split.candidate_exists && split.mirror_percent > 0).then(|| {
        vec![HttpRouteRulesFilters {
            r#type: HttpRouteRulesFiltersType::RequestMirror,
            request_mirror: Some(HttpRouteRulesFiltersRequestMirror {
                backend_ref: HttpRouteRulesFiltersRequestMirrorBackendRef {
                    name: variant_name(resource, Variant::Candidate),
                    port,
                    ..Default::default()
                },
                fraction: None,
                percent: Some(split.mirror_percent.clamp(0, 100)),
            }),
            ..Default::default()
        }]
    });
    let mut rules = vec![HttpRouteRules {
        backend_refs: Some(backends),
        filters,
        ..Default::default()
    }];
    if let Some(version) = split
        .experiment
        .as_deref()
        .filter(|_| split.candidate_exists)
    {
        let candidate = backend_ref(resource, spec, Variant::Candidate, 100);
        rules.extend(super::experiment_route::http_rule(
            resource, spec, version, candidate,
        ));
    }
    HttpRoute {
        metadata: metadata(resource, namespace, spec, owner),
        spec: HttpRouteSpec {
            parent_refs: Some(
                spec.traffic
                    .parent_refs
                    .iter()
                    .map(|p| HttpRouteParentRefs {
                        name: p.name.clone(),
                        namespace: p.namespace.clone(),
                        section_name: p.section_name.clone(),
                        port: p.port,
                        ..Default::default()
                    })
                    .collect(),
            ),
            hostnames: (!spec.traffic.hostnames.is_empty()).then(|| spec.traffic.hostnames.clone()),
            rules: Some(rules),
        },
        status: None,
    }
}

/// One variant's backendRef: its Service (with the serving port), or its InferencePool
/// (group and kind set, no port: the pool's `targetPorts` say where requests go).
fn backend_ref(
    resource: &str,
    spec: &ModelDeploymentSpec,
    variant: Variant,
    weight: i32,
) -> HttpRouteRulesBackendRefs {
    let name = variant_name(resource, variant);
    if spec.traffic.inference_pools().is_some() {
        return HttpRouteRulesBackendRefs {
            group: Some(inference_pool::GROUP.into()),
            kind: Some(inference_pool::KIND.into()),
            name,
            weight: Some(weight),
            ..Default::default()
        };
    }
    HttpRouteRulesBackendRefs {
        name,
        port: Some(spec.serving.port),
        weight: Some(weight),
        ..Default::default()
    }
}

/// API resource of Istio's VirtualService.
pub fn virtual_service_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "networking.istio.io",
        "v1",
        "VirtualService",
    ))
}

/// The Istio VirtualService of a resource.
pub fn virtual_service(
    resource: &str,
    namespace: &str,
    spec: &ModelDeploymentSpec,
    owner: &OwnerReference,
    split: Split,
) -> DynamicObject {
    let host = |variant| {
        format!(
            "{}.{namespace}.svc.cluster.local",
            variant_name(resource, variant)
        )
    };
    let port = serde_json::json!({"number": spec.serving.port});
    let (stable_weight, candidate_weight) = split.weights();
    let mut routes = vec![serde_json::json!({
        "destination": {"host": host(Variant::Stable), "port": port},
        "weight": stable_weight,
    })];
    if split.candidate_exists {
        routes.push(serde_json::json!({
            "destination": {"host": host(Variant::Candidate), "port": port},
            "weight": candidate_weight,
        }));
    }
    let mut http = serde_json::json!({"name": "mlrollout", "route": routes});
    if split.candidate_exists && split.mirror_percent > 0 {
        http["mirror"] = serde_json::json!({"host": host(Variant::Candidate), "port": port});
        http["mirrorPercentage"] = serde_json::json!({"value": f64::from(split.mirror_percent)});
    }
    let mut http_routes = Vec::new();
    if let Some(version) = split
        .experiment
        .as_deref()
        .filter(|_| split.candidate_exists)
    {
        let destination = serde_json::json!({"host": host(Variant::Candidate), "port": port});
        http_routes.extend(super::experiment_route::istio_route(
            resource,
            spec,
            version,
            destination,
        ));
    }
    // The weighted route last: Istio takes the first route that matches.
    http_routes.push(http);
    let mut object = DynamicObject::new(&route_name(resource, spec), &virtual_service_resource());
    object.metadata = metadata(resource, namespace, spec, owner);
    object.data =
        serde_json::json!({"spec": {"hosts": spec.traffic.hostnames, "http": http_routes}});
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::children::fixtures::owner;

    fn spec() -> ModelDeploymentSpec {
        serde_json::from_value(serde_json::json!({
            "model": {"trackingUri": "http://m:5000", "name": "fraud"},
            "traffic": {"parentRefs": [{"name": "gw", "namespace": "infra"}], "hostnames": ["fraud.example.com"]}
        }))
        .unwrap()
    }

    #[test]
    fn http_route_carries_weights_and_mirror() {
        let split = Split {
            candidate_weight: 10,
            mirror_percent: 0,
            candidate_exists: true,
            experiment: None,
        };
        let route = http_route("fraud", "ml", &spec(), &owner("fraud"), split);
        let rule = &route.spec.rules.as_ref().unwrap()[0];
        let weights: Vec<_> = rule
            .backend_refs
            .as_ref()
            .unwrap()
            .iter()
            .map(|b| (b.name.as_str(), b.weight))
            .collect();
        assert_eq!(
            weights,
            vec![("fraud-stable", Some(90)), ("fraud-candidate", Some(10))]
        );
        assert!(rule.filters.is_none());
        assert_eq!(
            route.spec.parent_refs.as_ref().unwrap()[0]
                .namespace
                .as_deref(),
            Some("infra")
        );

        let shadow = Split {
            candidate_weight: 0,
            mirror_percent: 50,
            candidate_exists: true,
            experiment: None,
        };
        let route = http_route("fraud", "ml", &spec(), &owner("fraud"), shadow);
        let value = serde_json::to_value(&route).unwrap();
        let filter = &value["spec"]["rules"][0]["filters"][0];
        assert_eq!(filter["type"], "RequestMirror");
        assert_eq!(filter["requestMirror"]["percent"], 50);
        assert_eq!(
            filter["requestMirror"]["backendRef"]["name"],
            "fraud-candidate"
        );
    }

    #[test]
    fn inference_pool_backends_are_weighted_like_services() {
        let mut spec = spec();
        spec.traffic = serde_json::from_value(serde_json::json!({
            "parentRefs": [{"name": "gw"}],
            "backend": {"kind": "InferencePool", "endpointPickers": {
                "stable": {"name": "epp-s", "port": 9002}, "candidate": {"name": "epp-c", "port": 9002}}}
        }))
        .unwrap();
        let split = Split {
            candidate_weight: 50,
            mirror_percent: 0,
            candidate_exists: true,
            experiment: None,
        };
        let value =
            serde_json::to_value(http_route("fraud", "ml", &spec, &owner("fraud"), split)).unwrap();
        assert_eq!(
            value["spec"]["rules"][0]["backendRefs"],
            serde_json::json!([
                {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "fraud-stable", "weight": 50},
                {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "fraud-candidate", "weight": 50},
            ])
        );
        // Shadow mirrors to the candidate's Service (Extended support), not to its pool.
        let shadow = Split {
            candidate_weight: 0,
            mirror_percent: 30,
            candidate_exists: true,
            experiment: None,
        };
        let value = serde_json::to_value(http_route("fraud", "ml", &spec, &owner("fraud"), shadow))
            .unwrap();
        let rule = &value["spec"]["rules"][0];
        assert_eq!(rule["backendRefs"][1]["weight"], 0);
        assert_eq!(
            rule["filters"][0]["requestMirror"]["backendRef"],
            serde_json::json!({"name": "fraud-candidate", "port": 8080})
        );
    }

    #[test]
    fn without_candidate_all_traffic_is_stable() {
        let split = Split {
            candidate_weight: 50,
            mirror_percent: 100,
            candidate_exists: false,
            experiment: None,
        };
        let route = http_route("fraud", "ml", &spec(), &owner("fraud"), split);
        let rule = &route.spec.rules.as_ref().unwrap()[0];
        assert_eq!(rule.backend_refs.as_ref().unwrap().len(), 1);
        assert_eq!(rule.backend_refs.as_ref().unwrap()[0].weight, Some(100));
        assert!(rule.filters.is_none());
    }

    #[test]
    fn virtual_service_weights_and_mirror() {
        let split = Split {
            candidate_weight: 0,
            mirror_percent: 20,
            candidate_exists: true,
            experiment: None,
        };
        let vs = virtual_service("fraud", "ml", &spec(), &owner("fraud"), split);
        let http = &vs.data["spec"]["http"][0];
        assert_eq!(http["route"][0]["weight"], 100);
        assert_eq!(http["route"][1]["weight"], 0);
        assert_eq!(
            http["mirror"]["host"],
            "fraud-candidate.ml.svc.cluster.local"
        );
        assert_eq!(http["mirrorPercentage"]["value"], 20.0);
    }
}
