//! The route of an experiment (`spec.rollout.experiment`): requests that match a header or a
//! cookie go to the candidate alone; everything else takes the weighted route (100 % stable
//! while the experiment runs).
//!
//! - HTTPRoute: a second rule with `matches` (one per `match` entry: its headers, and its cookie
//!   as a regular expression on the `Cookie` header) and the candidate as its only backend. A
//!   rule with header matches takes precedence over the default rule whatever the order
//!   (Gateway API's precedence is by specificity), so the weighted rule stays first.
//! - VirtualService: an `http` route with `match` placed before the weighted one (Istio takes
//!   the first route that matches).
//!
//! Sticky assignment (`sticky: true`): responses from the candidate rule carry
//! `Set-Cookie: mlrollout-<name>=<version>; Path=/; Max-Age=<duration>; HttpOnly` (HTTPRoute
//! `ResponseHeaderModifier`, Istio `headers.response.add`) and one more match sends requests
//! with that cookie to the candidate — for this candidate version only, and only while the
//! experiment runs (the rule goes with it).

use gateway_api::httproutes::{
    HttpRouteRules, HttpRouteRulesBackendRefs, HttpRouteRulesFilters,
    HttpRouteRulesFiltersResponseHeaderModifier, HttpRouteRulesFiltersResponseHeaderModifierAdd,
    HttpRouteRulesFiltersType, HttpRouteRulesMatches, HttpRouteRulesMatchesHeaders,
    HttpRouteRulesMatchesHeadersType,
};

use crate::api::ModelDeploymentSpec;
use crate::api::duration::parse_duration;
use crate::api::experiment::{CookieMatch, ExperimentSpec, HeaderMatch, sticky_cookie_name};

/// Name of the experiment's HTTPRoute rule and VirtualService route.
pub const RULE_NAME: &str = "mlrollout-experiment";

/// A regular expression that matches a `Cookie` header carrying `name=value`, wherever the
/// cookie stands in it (anchored, so it means the same to routers that match the whole value
/// and to those that search in it). Names and values are restricted to `[A-Za-z0-9._~-]`, so
/// only `.` needs escaping.
pub fn cookie_regex(name: &str, value: &str) -> String {
    let escape = |s: &str| s.replace('.', r"\.");
    format!(r"^(.*;\s*)?{}={}(;.*)?$", escape(name), escape(value))
}

/// The `Set-Cookie` value of sticky assignment to `version`.
pub fn sticky_set_cookie(resource: &str, version: &str, experiment: &ExperimentSpec) -> String {
    let max_age = parse_duration(&experiment.duration)
        .map(|d| format!("; Max-Age={}", d.as_secs().max(1)))
        .unwrap_or_default();
    format!(
        "{}={version}; Path=/{max_age}; HttpOnly",
        sticky_cookie_name(resource)
    )
}

/// The cookie match of sticky assignment to `version`.
fn sticky_cookie(resource: &str, version: &str) -> CookieMatch {
    CookieMatch {
        name: sticky_cookie_name(resource),
        value: version.to_string(),
    }
}

/// Every match entry of the experiment, the sticky cookie last: (headers, cookie).
fn entries<'a>(
    resource: &str,
    version: &str,
    experiment: &'a ExperimentSpec,
) -> Vec<(&'a [HeaderMatch], Option<CookieMatch>)> {
    let mut entries: Vec<_> = experiment
        .matches
        .iter()
        .map(|m| (m.headers.as_slice(), m.cookie.clone()))
        .collect();
    if experiment.sticky {
        entries.push((&[], Some(sticky_cookie(resource, version))));
    }
    entries
}

/// The HTTPRoute rule sending matching requests to the candidate (`backend` is its backendRef
/// with weight 1), when the spec has an experiment.
pub fn http_rule(
    resource: &str,
    spec: &ModelDeploymentSpec,
    version: &str,
    backend: HttpRouteRulesBackendRefs,
) -> Option<HttpRouteRules> {
    let experiment = spec.rollout.experiment.as_ref()?;
    let matches = entries(resource, version, experiment)
        .into_iter()
        .map(|(headers, cookie)| {
            let mut list: Vec<HttpRouteRulesMatchesHeaders> = headers
                .iter()
                .map(|h| HttpRouteRulesMatchesHeaders {
                    name: h.name.clone(),
                    r#type: Some(if h.regex.is_some() {
                        HttpRouteRulesMatchesHeadersType::RegularExpression
                    } else {
                        HttpRouteRulesMatchesHeadersType::Exact
                    }),
                    value: h
                        .value
                        .clone()
                        .or_else(|| h.regex.clone())
                        .unwrap_or_default(),
                })
                .collect();
            if let Some(cookie) = cookie {
                list.push(HttpRouteRulesMatchesHeaders {
                    name: "Cookie".into(),
                    r#type: Some(HttpRouteRulesMatchesHeadersType::RegularExpression),
                    value: cookie_regex(&cookie.name, &cookie.value),
                });
            }
            HttpRouteRulesMatches {
                headers: Some(list),
                ..Default::default()
            }
        })
        .collect();
    let filters = experiment.sticky.then(|| {
        vec![HttpRouteRulesFilters {
            r#type: HttpRouteRulesFiltersType::ResponseHeaderModifier,
            response_header_modifier: Some(HttpRouteRulesFiltersResponseHeaderModifier {
                add: Some(vec![HttpRouteRulesFiltersResponseHeaderModifierAdd {
                    name: "Set-Cookie".into(),
                    value: sticky_set_cookie(resource, version, experiment),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }]
    });
    Some(HttpRouteRules {
        name: Some(RULE_NAME.into()),
        matches: Some(matches),
        filters,
        backend_refs: Some(vec![backend]),
        ..Default::default()
    })
}

/// The VirtualService route sending matching requests to the candidate (`destination`), when
/// the spec has an experiment. Istio wants header names in lower case.
pub fn istio_route(
    resource: &str,
    spec: &ModelDeploymentSpec,
    version: &str,
    destination: serde_json::Value,
) -> Option<serde_json::Value> {
    let experiment = spec.rollout.experiment.as_ref()?;
    let matches: Vec<serde_json::Value> = entries(resource, version, experiment)
        .into_iter()
        .map(|(headers, cookie)| {
            let mut map = serde_json::Map::new();
            for h in headers {
                let matcher = match (&h.value, &h.regex) {
                    (Some(value), _) => serde_json::json!({"exact": value}),
                    (None, regex) => {
                        serde_json::json!({"regex": regex.clone().unwrap_or_default()})
                    }
                };
                map.insert(h.name.to_ascii_lowercase(), matcher);
            }
            if let Some(cookie) = cookie {
                map.insert(
                    "cookie".into(),
                    serde_json::json!({"regex": cookie_regex(&cookie.name, &cookie.value)}),
                );
            }
            serde_json::json!({ "headers": map })
        })
        .collect();
    let mut route = serde_json::json!({
        "name": RULE_NAME,
        "match": matches,
        "route": [{"destination": destination, "weight": 100}],
    });
    if experiment.sticky {
        route["headers"] = serde_json::json!({"response": {"add": {
            "set-cookie": sticky_set_cookie(resource, version, experiment)
        }}});
    }
    Some(route)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::children::fixtures::owner;
    use crate::core::children::route::{Split, http_route, virtual_service};

    fn spec(traffic: serde_json::Value) -> ModelDeploymentSpec {
        serde_json::from_value(serde_json::json!({
            "model": {"trackingUri": "http://m:5000", "name": "fraud"},
            "traffic": traffic,
            "rollout": {"experiment": {
                "duration": "30m",
                "match": [
                    {"headers": [{"name": "X-Canary", "value": "insider"},
                                 {"name": "User-Agent", "regex": "^.*Firefox.*$"}]},
                    {"cookie": {"name": "canary", "value": "always"}}
                ],
                "sticky": true
            }}
        }))
        .unwrap()
    }

    fn split(experiment: Option<&str>) -> Split {
        Split {
            candidate_weight: 0,
            mirror_percent: 0,
            candidate_exists: true,
            experiment: experiment.map(String::from),
        }
    }

    #[test]
    fn the_http_route_gets_a_matching_rule_to_the_candidate_beside_the_weighted_one() {
        let spec = spec(serde_json::json!({"parentRefs": [{"name": "gw"}]}));
        let route = http_route("fraud", "ml", &spec, &owner("fraud"), split(Some("4")));
        let value = serde_json::to_value(&route).unwrap();
        let rules = value["spec"]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 2);
        // The weighted rule: everything else stays on stable.
        assert_eq!(rules[0]["backendRefs"][0]["weight"], 100);
        assert_eq!(rules[0]["backendRefs"][1]["weight"], 0);
        let rule = &rules[1];
        assert_eq!(rule["name"], "mlrollout-experiment");
        assert_eq!(
            rule["backendRefs"],
            serde_json::json!([{"name": "fraud-candidate", "port": 8080, "weight": 100}])
        );
        assert_eq!(
            rule["matches"],
            serde_json::json!([
                {"headers": [
                    {"name": "X-Canary", "type": "Exact", "value": "insider"},
                    {"name": "User-Agent", "type": "RegularExpression", "value": "^.*Firefox.*$"}
                ]},
                {"headers": [{"name": "Cookie", "type": "RegularExpression",
                              "value": r"^(.*;\s*)?canary=always(;.*)?$"}]},
                {"headers": [{"name": "Cookie", "type": "RegularExpression",
                              "value": r"^(.*;\s*)?mlrollout-fraud=4(;.*)?$"}]}
            ])
        );
        assert_eq!(
            rule["filters"],
            serde_json::json!([{"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                "add": [{"name": "Set-Cookie",
                         "value": "mlrollout-fraud=4; Path=/; Max-Age=1800; HttpOnly"}]}}])
        );
        // Outside the experiment, and without a candidate, there is no such rule.
        for other in [
            split(None),
            Split {
                candidate_exists: false,
                ..split(Some("4"))
            },
        ] {
            let route = http_route("fraud", "ml", &spec, &owner("fraud"), other);
            assert_eq!(route.spec.rules.unwrap().len(), 1);
        }
    }

    #[test]
    fn an_inference_pool_candidate_gets_the_experiment_rule_too() {
        let spec = spec(
            serde_json::json!({"parentRefs": [{"name": "gw"}], "backend": {
            "kind": "InferencePool", "endpointPickers": {
                "stable": {"name": "e", "port": 9002}, "candidate": {"name": "e2", "port": 9002}}}}),
        );
        let value = serde_json::to_value(http_route(
            "fraud",
            "ml",
            &spec,
            &owner("fraud"),
            split(Some("4")),
        ))
        .unwrap();
        assert_eq!(
            value["spec"]["rules"][1]["backendRefs"],
            serde_json::json!([{"group": "inference.networking.k8s.io", "kind": "InferencePool",
                                "name": "fraud-candidate", "weight": 100}])
        );
    }

    #[test]
    fn the_virtual_service_matches_first_then_weights() {
        let spec =
            spec(serde_json::json!({"provider": "istio", "hostnames": ["fraud.example.com"]}));
        let vs = virtual_service("fraud", "ml", &spec, &owner("fraud"), split(Some("4")));
        let http = vs.data["spec"]["http"].as_array().unwrap();
        assert_eq!(http.len(), 2);
        let first = &http[0];
        assert_eq!(first["name"], "mlrollout-experiment");
        assert_eq!(
            first["match"],
            serde_json::json!([
                {"headers": {"x-canary": {"exact": "insider"}, "user-agent": {"regex": "^.*Firefox.*$"}}},
                {"headers": {"cookie": {"regex": r"^(.*;\s*)?canary=always(;.*)?$"}}},
                {"headers": {"cookie": {"regex": r"^(.*;\s*)?mlrollout-fraud=4(;.*)?$"}}}
            ])
        );
        assert_eq!(
            first["route"],
            serde_json::json!([{"destination": {"host": "fraud-candidate.ml.svc.cluster.local",
                                                "port": {"number": 8080}}, "weight": 100}])
        );
        assert_eq!(
            first["headers"]["response"]["add"]["set-cookie"],
            "mlrollout-fraud=4; Path=/; Max-Age=1800; HttpOnly"
        );
        assert_eq!(http[1]["name"], "mlrollout");
        assert_eq!(http[1]["route"][0]["weight"], 100);
        let plain = virtual_service("fraud", "ml", &spec, &owner("fraud"), split(None));
        assert_eq!(plain.data["spec"]["http"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn the_cookie_regex_finds_the_cookie_anywhere_and_nothing_else() {
        let re = cookie_regex("mlrollout-fraud", "4.1");
        assert_eq!(re, r"^(.*;\s*)?mlrollout-fraud=4\.1(;.*)?$");
        let re = regex_lite::Regex::new(&re).unwrap();
        for yes in [
            "mlrollout-fraud=4.1",
            "a=1; mlrollout-fraud=4.1",
            "mlrollout-fraud=4.1; b=2",
            "a=1;mlrollout-fraud=4.1;b=2",
        ] {
            assert!(re.is_match(yes), "{yes}");
        }
        for no in [
            "mlrollout-fraud=4x1",
            "mlrollout-fraud=4.10",
            "xmlrollout-fraud=4.1",
            "mlrollout-fraud=5",
            "",
        ] {
            assert!(!re.is_match(no), "{no}");
        }
    }
}
