//! The HTTP client: configuration, authentication and the request/response plumbing shared by
//! the endpoint modules (`registry`, `runs`, `artifacts`).

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::header::{HOST, HeaderValue};
use reqwest::{Method, RequestBuilder, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{self, MlflowError};
use super::retry::RetryPolicy;

/// REST API base path, relative to the server URL.
pub(crate) const API_PREFIX: &str = "api/2.0/mlflow";
/// Artifact proxy base path (`mlflow server --serve-artifacts`).
pub(crate) const ARTIFACTS_PREFIX: &str = "api/2.0/mlflow-artifacts/artifacts";

/// How the client authenticates to MLflow.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum MlflowAuth {
    /// No `Authorization` header.
    #[default]
    None,
    /// `Authorization: Bearer <token>` (e.g. a proxy or Databricks-style token).
    Bearer(String),
    /// HTTP basic auth (MLflow's `--app-name basic-auth`).
    Basic { username: String, password: String },
}

impl fmt::Debug for MlflowAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MlflowAuth::None => f.write_str("None"),
            MlflowAuth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            MlflowAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

/// A client for one MLflow tracking server. Cheap to clone (the connection pool is shared).
///
/// Write operations that are idempotent (aliases, tags, params, metrics, ending a run) are
/// retried on transient errors with the client's [`RetryPolicy`]; reads and creations are not.
#[derive(Clone, Debug)]
pub struct MlflowClient {
    http: reqwest::Client,
    /// Server URL without trailing slash, e.g. `http://mlflow.ml.svc:5000` or `https://x/mlflow`.
    base: Url,
    /// `host[:port]` sent as the Host header (for error messages).
    host: String,
    host_override: Option<HeaderValue>,
    auth: MlflowAuth,
    retry: RetryPolicy,
    /// Most bytes read from one answer (artifacts can be datasets).
    max_body_bytes: u64,
}

/// Reads a response body chunk by chunk so an endless or huge body stops at `max` bytes
/// instead of filling memory: `None` when the body (or its declared length) is larger.
pub(crate) async fn read_capped(
    response: &mut reqwest::Response,
    max: u64,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response.content_length().is_some_and(|n| n > max) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if (body.len() + chunk.len()) as u64 > max {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

impl MlflowClient {
    /// A client for the server at `base_url` (`http(s)://host[:port][/prefix]`), with a timeout
    /// for each whole request (connect timeout: the same, at most 10 s).
    ///
    /// Needs a process-wide rustls crypto provider to be installed first (the binary installs
    /// `ring`); this client never picks one.
    pub fn new(base_url: &str, auth: MlflowAuth, timeout: Duration) -> Result<Self, MlflowError> {
        let config = |detail: String| MlflowError::Config { detail };
        let trimmed = base_url.trim().trim_end_matches('/');
        let base = Url::parse(trimmed)
            .map_err(|e| config(format!("MLflow URL '{base_url}' is not a valid URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(config(format!(
                "MLflow URL '{base_url}' must start with http:// or https://"
            )));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(config(format!(
                "MLflow URL '{base_url}' must not have a query or fragment"
            )));
        }
        let Some(host_str) = base.host_str() else {
            return Err(config(format!("MLflow URL '{base_url}' has no host")));
        };
        let host = match base.port() {
            Some(port) => format!("{host_str}:{port}"),
            None => host_str.to_owned(),
        };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("mlrollout/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| config(format!("cannot build the HTTP client: {e}")))?;
        Ok(MlflowClient {
            http,
            base,
            host,
            host_override: None,
            auth,
            retry: RetryPolicy::default(),
            max_body_bytes: u64::MAX,
        })
    }

    /// Send `host` as the Host header instead of the URL's host (e.g. to reach MLflow through a
    /// port-forward while presenting the Service name, or to test MLflow's Host check).
    pub fn with_host_header(mut self, host: &str) -> Result<Self, MlflowError> {
        let value = HeaderValue::from_str(host).map_err(|e| MlflowError::Config {
            detail: format!("invalid Host header '{host}': {e}"),
        })?;
        self.host_override = Some(value);
        self.host = host.to_owned();
        Ok(self)
    }

    /// Retry policy for idempotent writes (default: [`RetryPolicy::default`]).
    /// Refuse answers larger than `max` bytes (read chunk by chunk, so an endless body stops
    /// at the cap instead of filling memory).
    pub fn with_max_body_bytes(mut self, max: u64) -> Self {
        self.max_body_bytes = max;
        self
    }

    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// The server URL this client talks to.
    pub fn base_url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// URL of `<base>/<prefix>/<segments...>`, each segment percent-encoded.
    pub(crate) fn url<'a>(
        &self,
        prefix: &str,
        segments: impl IntoIterator<Item = &'a str>,
    ) -> Result<Url, MlflowError> {
        let mut url = self.base.clone();
        {
            let mut path = url.path_segments_mut().map_err(|_| MlflowError::Config {
                detail: format!("MLflow URL '{}' cannot be a base", self.base),
            })?;
            path.pop_if_empty();
            path.extend(prefix.split('/'));
            path.extend(segments);
        }
        Ok(url)
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let mut req = self.http.request(method, url);
        if let Some(host) = &self.host_override {
            req = req.header(HOST, host.clone());
        }
        match &self.auth {
            MlflowAuth::None => req,
            MlflowAuth::Bearer(token) => req.bearer_auth(token),
            MlflowAuth::Basic { username, password } => req.basic_auth(username, Some(password)),
        }
    }

    /// Send a request; return the body of a 2xx answer, or the mapped error.
    pub(crate) async fn send_raw(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        what: &str,
    ) -> Result<Vec<u8>, MlflowError> {
        let started = Instant::now();
        let path = url.path().to_owned();
        let mut req = self.request(method.clone(), url);
        if let Some(bytes) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes);
        }
        let mut resp = req.send().await.map_err(MlflowError::from_transport)?;
        let status = resp.status();
        let bytes = read_capped(&mut resp, self.max_body_bytes)
            .await
            .map_err(MlflowError::from_transport)?
            .ok_or_else(|| MlflowError::TooLarge {
                what: what.to_owned(),
                limit: self.max_body_bytes,
            })?;
        tracing::debug!(
            %method,
            path,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "MLflow request"
        );
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(error::from_status(
                status.as_u16(),
                &bytes,
                what,
                &self.host,
            ))
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
        what: &str,
    ) -> Result<T, MlflowError> {
        let mut url = self.url(API_PREFIX, endpoint.split('/'))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let bytes = self.send_raw(method, url, body, what).await?;
        decode(endpoint, &bytes)
    }

    /// `GET /api/2.0/mlflow/<endpoint>?<query>`.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        query: &[(&str, &str)],
        what: &str,
    ) -> Result<T, MlflowError> {
        self.call(Method::GET, endpoint, query, None, what).await
    }

    /// `POST /api/2.0/mlflow/<endpoint>` with a JSON body.
    pub(crate) async fn post_json<T: DeserializeOwned, B: Serialize>(
        &self,
        endpoint: &str,
        body: &B,
        what: &str,
    ) -> Result<T, MlflowError> {
        self.call(Method::POST, endpoint, &[], Some(encode(body)?), what)
            .await
    }

    /// `DELETE /api/2.0/mlflow/<endpoint>` with a JSON body (MLflow rejects query parameters on
    /// DELETE).
    pub(crate) async fn delete_json<T: DeserializeOwned, B: Serialize>(
        &self,
        endpoint: &str,
        body: &B,
        what: &str,
    ) -> Result<T, MlflowError> {
        self.call(Method::DELETE, endpoint, &[], Some(encode(body)?), what)
            .await
    }
}

fn encode<B: Serialize>(body: &B) -> Result<Vec<u8>, MlflowError> {
    serde_json::to_vec(body).map_err(|e| MlflowError::Config {
        detail: format!("cannot encode request body: {e}"),
    })
}

/// Parse a JSON answer, reporting the endpoint and the start of the body when it fails.
pub(crate) fn decode<T: DeserializeOwned>(endpoint: &str, bytes: &[u8]) -> Result<T, MlflowError> {
    serde_json::from_slice(bytes).map_err(|e| {
        MlflowError::malformed(format!(
            "{endpoint}: {e}; body: {:?}",
            error::snippet(bytes)
        ))
    })
}

/// An answer whose content we do not need (`{}`); it must still be a JSON object.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Empty {}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn install_provider() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }

    #[test]
    fn builds_urls_with_prefix_and_encoding() {
        install_provider();
        let c = MlflowClient::new(
            "http://mlflow.ml.svc:5000/",
            MlflowAuth::None,
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(c.base_url(), "http://mlflow.ml.svc:5000");
        assert_eq!(c.host, "mlflow.ml.svc:5000");
        let u = c
            .url(API_PREFIX, "registered-models/get".split('/'))
            .unwrap();
        assert_eq!(
            u.as_str(),
            "http://mlflow.ml.svc:5000/api/2.0/mlflow/registered-models/get"
        );
        let c = MlflowClient::new(
            "https://example.org/mlflow",
            MlflowAuth::None,
            Duration::from_secs(1),
        )
        .unwrap();
        let u = c.url(ARTIFACTS_PREFIX, ["1", "a b", "x#y?.txt"]).unwrap();
        assert_eq!(
            u.as_str(),
            "https://example.org/mlflow/api/2.0/mlflow-artifacts/artifacts/1/a%20b/x%23y%3F.txt"
        );
    }

    #[test]
    fn rejects_bad_base_urls() {
        install_provider();
        for bad in [
            "",
            "mlflow:5000",
            "ftp://x",
            "http://x/?a=b",
            "unix:/tmp/sock",
        ] {
            let err =
                MlflowClient::new(bad, MlflowAuth::None, Duration::from_secs(1)).expect_err(bad);
            assert_eq!(err.category(), "mlflow_config", "{bad}");
        }
        let c = MlflowClient::new("http://x", MlflowAuth::None, Duration::from_secs(1)).unwrap();
        assert!(c.with_host_header("bad\nhost").is_err());
    }

    #[test]
    fn auth_debug_redacts_secrets() {
        let s = format!(
            "{:?} {:?}",
            MlflowAuth::Bearer("tok123".into()),
            MlflowAuth::Basic {
                username: "u".into(),
                password: "pw456".into()
            }
        );
        assert!(!s.contains("tok123") && !s.contains("pw456"), "{s}");
        assert!(s.contains("\"u\""));
    }

    #[test]
    fn decode_reports_endpoint_and_body() {
        let err = decode::<Empty>("runs/get", b"<html>oops</html>").unwrap_err();
        let MlflowError::MalformedResponse { detail } = &err else {
            panic!("{err:?}")
        };
        assert!(
            detail.contains("runs/get") && detail.contains("oops"),
            "{detail}"
        );
        assert!(decode::<Empty>("x", b"{}").is_ok());
        assert!(decode::<Empty>("x", b"").is_err());
    }
}
