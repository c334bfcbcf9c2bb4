//! `spec.serving.proxy`: the data-plane sidecar in front of each variant's model server, and
//! the capture of live traffic it writes for the drift check.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::duration::DURATION_PATTERN;

/// Image of the proxy when neither the spec nor the operator (`--proxy-image`) names one.
pub const DEFAULT_PROXY_IMAGE: &str =
    concat!("ghcr.io/mlrollout/mlrollout:v", env!("CARGO_PKG_VERSION"));

/// The sidecar (`mlrollout proxy`) injected into each variant's pod as a native sidecar: it
/// listens on the port the variant's Service targets, forwards to the model server, exports
/// `http_requests_total`, `http_request_duration_seconds` and `model_prediction_score` (what
/// the built-in analysis queries read) and, with `capture`, writes a sample of live traffic.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.port != self.metricsPort")
    .message("serving.proxy.port and serving.proxy.metricsPort must differ"))]
pub struct ProxySpec {
    /// Inject the proxy. Without it the built-in metrics need a service mesh, and nothing is
    /// captured.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Image of the proxy (the operator's own image holds `mlrollout proxy`). Default: the
    /// image the operator was told (`--proxy-image`, set by the Helm chart to its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Port the proxy listens on; the variant's Service targets it.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Port of the proxy's `/metrics` (also a port of the variant's Service, named `metrics`).
    #[serde(default = "default_metrics_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub metrics_port: i32,
    /// Time the model server has to answer one request; then the client gets 504.
    #[serde(default = "default_timeout")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub timeout: String,
    /// Largest request body in bytes; larger ones get 413 and never reach the model server.
    #[serde(default = "default_max_request_bytes")]
    #[schemars(range(min = 1, max = 1_073_741_824))]
    pub max_request_bytes: i64,
    /// Where the score is in each prediction (the `model_prediction_score` histogram).
    #[serde(default)]
    pub scores: ScoreSpec,
    /// Compute resources of the proxy container (default: 50m CPU and 32Mi requested, 128Mi
    /// limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Capture of live traffic (features, prediction, request id) as Parquet windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureSpec>,
}

impl Default for ProxySpec {
    fn default() -> Self {
        Self {
            enabled: true,
            image: None,
            port: default_port(),
            metrics_port: default_metrics_port(),
            timeout: default_timeout(),
            max_request_bytes: default_max_request_bytes(),
            scores: ScoreSpec::default(),
            resources: None,
            capture: None,
        }
    }
}

/// Where the score is in each prediction. Understood without settings: a number, a list of
/// two class probabilities (the second), a list (the largest), an object with `score`,
/// `probability` or `prediction`, an object of class probabilities (the largest).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScoreSpec {
    /// Field of each prediction object holding the score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub field: Option<String>,
    /// Index into each prediction list holding the score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1_000_000))]
    pub output_index: Option<i32>,
    /// Upper bounds of the histogram's buckets, increasing (default 0.05, 0.10, …, 1.0).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub buckets: Vec<f64>,
}

/// A sample of live traffic written by each variant's proxy under
/// `<uri>/<namespace>/<name>/<variant>/`, one Parquet file per window, with columns
/// `request_id`, `timestamp`, `model_version`, `prediction` and one per feature. The drift
/// check reads it with `drift.current.capture`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CaptureSpec {
    /// Base URI: `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` (settings
    /// and credentials from `spec.storage`), or an absolute path on `volumeClaim`.
    #[schemars(length(min = 1, max = 2048))]
    pub uri: String,
    /// Fraction of requests captured.
    #[serde(default = "default_fraction")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub fraction: f64,
    /// A window is written when it is this old…
    #[serde(default = "default_window")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub window: String,
    /// …or holds this many rows.
    #[serde(default = "default_max_rows")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub max_rows: i32,
    /// Names of positional input columns, for requests that send rows without names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10_000))]
    pub columns: Vec<String>,
    /// PersistentVolumeClaim mounted at `uri` when `uri` is a path (shared with the operator's
    /// drift-data volume to be read back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub volume_claim: Option<String>,
}

fn enabled() -> bool {
    true
}
fn default_port() -> i32 {
    8000
}
fn default_metrics_port() -> i32 {
    9464
}
fn default_timeout() -> String {
    "30s".into()
}
fn default_max_request_bytes() -> i64 {
    10 << 20
}
fn default_fraction() -> f64 {
    0.1
}
fn default_window() -> String {
    "5m".into()
}
fn default_max_rows() -> i32 {
    10_000
}

/// What validation makes of a `ProxySpec`, or the problems, as `(field, message)`.
pub fn check(proxy: &ProxySpec, model_port: i32) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut add = |field: &str, message: String| {
        problems.push((format!("spec.serving.proxy.{field}"), message))
    };
    if !proxy.enabled {
        return problems;
    }
    if proxy.port == model_port || proxy.metrics_port == model_port {
        add(
            "port",
            format!(
                "the proxy's ports must differ from serving.port ({model_port}), where the model server listens"
            ),
        );
    }
    if super::duration::parse_duration(&proxy.timeout).map_or(true, |d| d.is_zero()) {
        add(
            "timeout",
            format!("{:?} is not a duration above 0 (e.g. 30s)", proxy.timeout),
        );
    }
    if proxy.scores.buckets.windows(2).any(|w| w[0] >= w[1])
        || proxy.scores.buckets.iter().any(|b| !b.is_finite())
    {
        add(
            "scores.buckets",
            "bucket bounds must be finite and increasing".into(),
        );
    }
    if let Some(capture) = &proxy.capture {
        check_capture(capture, &mut add);
    }
    problems
}

fn check_capture(capture: &CaptureSpec, add: &mut impl FnMut(&str, String)) {
    let object_store = crate::storage::is_object_store_uri(&capture.uri);
    let path = capture.uri.starts_with('/');
    if !object_store && !path {
        add(
            "capture.uri",
            format!(
                "{:?} is neither an object-store URI (s3://, gs://, az://) nor an absolute path",
                capture.uri
            ),
        );
    }
    if path && capture.volume_claim.is_none() {
        add(
            "capture.volumeClaim",
            "a capture path needs the PersistentVolumeClaim it lives on (capture.volumeClaim)"
                .into(),
        );
    }
    if super::duration::parse_duration(&capture.window).map_or(true, |d| d.is_zero()) {
        add(
            "capture.window",
            format!("{:?} is not a duration above 0 (e.g. 5m)", capture.window),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(uri: &str) -> CaptureSpec {
        CaptureSpec {
            uri: uri.into(),
            fraction: 0.1,
            window: "5m".into(),
            max_rows: 100,
            columns: vec![],
            volume_claim: None,
        }
    }

    #[test]
    fn the_default_is_valid_and_problems_name_their_field() {
        assert!(check(&ProxySpec::default(), 8080).is_empty());
        let clash = check(&ProxySpec::default(), 8000);
        assert_eq!(clash[0].0, "spec.serving.proxy.port");
        let mut proxy = ProxySpec {
            timeout: "0s".into(),
            capture: Some(capture("/data/capture")),
            ..ProxySpec::default()
        };
        proxy.scores.buckets = vec![0.5, 0.2];
        let fields: Vec<String> = check(&proxy, 8080).into_iter().map(|p| p.0).collect();
        assert_eq!(
            fields,
            [
                "spec.serving.proxy.timeout",
                "spec.serving.proxy.scores.buckets",
                "spec.serving.proxy.capture.volumeClaim"
            ]
        );
        assert_eq!(
            check(
                &ProxySpec {
                    capture: Some(capture("http://x/y")),
                    ..ProxySpec::default()
                },
                8080
            )
            .len(),
            1
        );
        assert!(
            check(
                &ProxySpec {
                    capture: Some(capture("s3://b/p")),
                    ..ProxySpec::default()
                },
                8080
            )
            .is_empty()
        );
        let off = ProxySpec {
            enabled: false,
            port: 8080,
            ..ProxySpec::default()
        };
        assert!(
            check(&off, 8080).is_empty(),
            "a disabled proxy is not checked"
        );
    }
}

#[cfg(test)]
mod resolution {
    use crate::api::ModelDeploymentSpec;
    use crate::api::validation::validate;

    fn spec(proxy: serde_json::Value) -> ModelDeploymentSpec {
        serde_json::from_value(serde_json::json!({
            "model": {"trackingUri": "http://mlflow:5000", "name": "m"},
            "traffic": {"provider": "none"},
            "serving": {"proxy": proxy},
            "drift": {"reference": {"uri": "s3://b/ref.parquet"}, "current": {"capture": {"variant": "stable"}}}
        }))
        .unwrap()
    }

    #[test]
    fn drift_reads_the_prefix_the_proxy_writes() {
        let with = spec(serde_json::json!({"capture": {"uri": "s3://b/captures/"}}));
        assert_eq!(
            with.current_data_uri("ns", "fraud").as_deref(),
            Some("s3://b/captures/ns/fraud/stable/")
        );
        assert!(validate(&with).is_ok());
        for without in [
            spec(serde_json::json!({})),
            spec(serde_json::json!({"enabled": false, "capture": {"uri": "s3://b/c"}})),
        ] {
            assert_eq!(without.current_data_uri("ns", "fraud"), None);
            let problems = validate(&without).unwrap_err();
            assert_eq!(
                problems[0].field, "spec.drift.current.capture",
                "{problems:?}"
            );
        }
    }
}
