//! `spec.rollout.experiment`: an A/B phase between shadow and the first weighted step, in which
//! only requests that match (a header, a cookie) reach the candidate.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::duration::{DURATION_PATTERN, parse_duration};
use super::vocabulary::status_word;

/// Header names as Gateway API spells them (RFC 7230 tokens).
pub const HEADER_NAME_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$";
/// Cookie names and values the operator matches: letters, digits and `._~-` (no escaping
/// questions in a `Cookie` header, nor in the regular expression that matches it).
pub const COOKIE_TOKEN_PATTERN: &str = r"^[A-Za-z0-9._~-]+$";

/// An experiment: for `duration`, requests that match `match` are served by the candidate
/// (everything else by stable), and the candidate is judged by `rollout.analysis` as at a step.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentSpec {
    /// How long the experiment lasts (at least this long, and until the analysis has its
    /// measurements).
    #[schemars(pattern(DURATION_PATTERN))]
    pub duration: String,
    /// Requests sent to the candidate: those that match any entry; within an entry, every
    /// header and the cookie must match.
    #[serde(rename = "match")]
    #[schemars(length(min = 1, max = 8))]
    pub matches: Vec<ExperimentMatch>,
    /// Keep a client on the candidate once it was sent there: responses from the candidate
    /// carry `Set-Cookie: mlrollout-<name>=<candidate version>` (Max-Age: the experiment's
    /// duration) and requests with that cookie go to the candidate too, for this candidate's
    /// experiment only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sticky: bool,
}

/// One way a request can be sent to the candidate.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("(has(self.headers) && size(self.headers) > 0) || has(self.cookie)")
    .message("each rollout.experiment.match entry needs headers or a cookie"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.headers) || self.headers.all(h, self.headers.exists_one(g, g.name == h.name))")
    .message("rollout.experiment.match: a header name appears twice in one entry"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.cookie) || !has(self.headers) || self.headers.all(h, !h.name.matches('^[Cc][Oo][Oo][Kk][Ii][Ee]$'))")
    .message("rollout.experiment.match: an entry with a cookie cannot also match the Cookie header"))]
pub struct ExperimentMatch {
    /// Request headers that must all match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub headers: Vec<HeaderMatch>,
    /// A cookie the request must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<CookieMatch>,
}

/// A request header, matched exactly (`value`) or by a regular expression (`regex`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.value) != has(self.regex)")
    .message("rollout.experiment.match.headers: set exactly one of value or regex"))]
pub struct HeaderMatch {
    /// Header name (case-insensitive).
    #[schemars(length(min = 1, max = 256), pattern(HEADER_NAME_PATTERN))]
    pub name: String,
    /// Exact value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub value: Option<String>,
    /// Regular expression (RE2 syntax; how much of the value it must match is the router's
    /// rule: write `^...$` to be sure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub regex: Option<String>,
}

/// A cookie, matched by name and exact value in the `Cookie` header.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CookieMatch {
    /// Cookie name.
    #[schemars(length(min = 1, max = 128), pattern(COOKIE_TOKEN_PATTERN))]
    pub name: String,
    /// Cookie value.
    #[schemars(length(min = 1, max = 256), pattern(COOKIE_TOKEN_PATTERN))]
    pub value: String,
}

/// Name of the sticky-assignment cookie of a resource.
pub fn sticky_cookie_name(resource: &str) -> String {
    format!("mlrollout-{resource}")
}

/// What the reconciler checks beyond the schema (for resources that bypassed admission):
/// (field, problem) pairs, and the duration parsed.
pub fn check(
    experiment: &ExperimentSpec,
    provider: super::TrafficProvider,
) -> (Option<std::time::Duration>, Vec<(String, String)>) {
    let mut problems = Vec::new();
    let field = "spec.rollout.experiment";
    if provider == super::TrafficProvider::None {
        problems.push((
            field.to_string(),
            "needs a router (traffic.provider gatewayAPI or istio): replica counts cannot route by header or cookie".into(),
        ));
    }
    let duration = match parse_duration(&experiment.duration) {
        Ok(d) => Some(d),
        Err(e) => {
            problems.push((format!("{field}.duration"), e.to_string()));
            None
        }
    };
    if experiment.matches.is_empty() {
        problems.push((format!("{field}.match"), "needs at least one entry".into()));
    }
    let token = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-'))
    };
    for (i, entry) in experiment.matches.iter().enumerate() {
        let at = format!("{field}.match[{i}]");
        if entry.headers.is_empty() && entry.cookie.is_none() {
            problems.push((at.clone(), "needs headers or a cookie".into()));
        }
        for (j, header) in entry.headers.iter().enumerate() {
            if header.value.is_some() == header.regex.is_some() {
                problems.push((
                    format!("{at}.headers[{j}]"),
                    "set exactly one of value or regex".into(),
                ));
            }
            if entry.cookie.is_some() && header.name.eq_ignore_ascii_case("cookie") {
                problems.push((
                    format!("{at}.headers[{j}]"),
                    "an entry with a cookie cannot also match the Cookie header".into(),
                ));
            }
        }
        if let Some(cookie) = &entry.cookie
            && !(token(&cookie.name) && token(&cookie.value))
        {
            problems.push((
                format!("{at}.cookie"),
                "name and value may hold letters, digits and ._~- only".into(),
            ));
        }
    }
    (duration, problems)
}

/// The experiment of the current (or last) candidate: `status.experiment`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentStatus {
    /// The candidate version it judged.
    pub candidate_version: String,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// `Running`, `Passed`, `Failed` or `Interrupted` (ended by a person or without a verdict).
    pub outcome: ExperimentOutcome,
    /// Why it ended as it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Per-metric counts of its analysis and the last values measured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<ExperimentMetric>,
}

/// One analysis metric of an experiment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentMetric {
    /// Metric name.
    pub name: String,
    /// Passed measurements.
    #[serde(default)]
    pub passed: i32,
    /// Failed measurements.
    #[serde(default)]
    pub failed: i32,
    /// Measurements without data.
    #[serde(default)]
    pub inconclusive: i32,
    /// The candidate's last value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<f64>,
    /// Stable's last value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<f64>,
}

status_word! {
    /// How an experiment ended (or that it has not yet).
    #[derive(Default)]
    "PascalCase", pub enum ExperimentOutcome {
        #[default]
        Running,
        /// It lasted its duration and its analysis passed: the weighted steps follow.
        Passed,
        /// Its analysis failed (or errored, or stayed inconclusive with `onInconclusive:
        /// rollback`), or it made no progress until the deadline: rolled back.
        Failed,
        /// A person ended it (abort, promote) before it had a verdict.
        Interrupted,
    }
}
