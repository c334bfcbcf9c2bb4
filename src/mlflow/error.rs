//! Typed errors of the MLflow client and the mapping from HTTP responses to them.

use serde::Deserialize;

/// Everything that can go wrong when talking to MLflow.
///
/// Each variant has a stable snake_case [`category`](MlflowError::category) for metrics
/// labels and Kubernetes Event reasons, and [`is_transient`](MlflowError::is_transient) tells
/// whether retrying the same request later may succeed.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// 404 `RESOURCE_DOES_NOT_EXIST` (or any 404): the model, version, run or experiment
    /// does not exist.
    #[error("MLflow: {what} not found: {message}")]
    NotFound { what: String, message: String },

    /// The registered model exists but has no such alias. MLflow answers this with
    /// 400 `INVALID_PARAMETER_VALUE`, not 404.
    #[error("MLflow: registered model '{model}' has no alias '{alias}'")]
    AliasNotFound { model: String, alias: String },

    /// Any other 4xx answer (MLflow's JSON `error_code` if the body had one, else `HTTP_<status>`).
    #[error("MLflow rejected the request ({status} {error_code}): {message}")]
    InvalidRequest {
        status: u16,
        error_code: String,
        message: String,
    },

    /// 403: MLflow's security middleware (Host-header or Origin check) or its auth plugin
    /// refused the request. The message carries a hint about `--allowed-hosts`.
    #[error("MLflow: forbidden (403): {message}")]
    Forbidden { message: String },

    /// 401: missing or wrong credentials.
    #[error("MLflow: unauthorized (401): check the configured credentials: {message}")]
    Unauthorized { message: String },

    /// The server could not be reached: connection refused, timeout, DNS failure, reset.
    /// The message includes the whole cause chain (e.g. "Connection refused").
    #[error("MLflow server unavailable: {}", error_chain(source))]
    Unavailable {
        #[source]
        source: reqwest::Error,
    },

    /// 5xx from MLflow (or a proxy in front of it).
    #[error("MLflow server error ({status}): {message}")]
    Server { status: u16, message: String },

    /// The answer could not be parsed (not JSON, or not the expected shape).
    #[error("MLflow returned a malformed response: {detail}")]
    MalformedResponse { detail: String },

    /// A `models:/`, `runs:/` or artifact URI (or an alias name) that this client cannot use.
    #[error("invalid MLflow URI '{uri}': {reason}")]
    InvalidUri { uri: String, reason: String },

    /// The client itself is misconfigured (bad base URL, bad header value, ...).
    #[error("invalid MLflow client configuration: {detail}")]
    Config { detail: String },
    /// The answer is larger than the client's byte cap (an endless or huge artifact).
    #[error("MLflow {what}: the answer is larger than {limit} bytes")]
    TooLarge { what: String, limit: u64 },
}

impl MlflowError {
    /// Stable snake_case label, usable as a metrics label value or an Event reason suffix.
    pub fn category(&self) -> &'static str {
        match self {
            MlflowError::NotFound { .. } => "mlflow_not_found",
            MlflowError::AliasNotFound { .. } => "mlflow_alias_not_found",
            MlflowError::InvalidRequest { .. } => "mlflow_invalid_request",
            MlflowError::Forbidden { .. } => "mlflow_forbidden",
            MlflowError::Unauthorized { .. } => "mlflow_unauthorized",
            MlflowError::Unavailable { .. } => "mlflow_unavailable",
            MlflowError::Server { .. } => "mlflow_server_error",
            MlflowError::MalformedResponse { .. } => "mlflow_malformed_response",
            MlflowError::InvalidUri { .. } => "mlflow_invalid_uri",
            MlflowError::Config { .. } => "mlflow_config",
            MlflowError::TooLarge { .. } => "mlflow_too_large",
        }
    }

    /// Whether the same request may succeed if retried later (server down or overloaded,
    /// rate limited). Not-found, invalid, forbidden and malformed answers are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            MlflowError::Unavailable { .. } | MlflowError::Server { .. } => true,
            MlflowError::InvalidRequest {
                status, error_code, ..
            } => {
                *status == 429
                    || *status == 408
                    || error_code == "REQUEST_LIMIT_EXCEEDED"
                    || error_code == "TEMPORARILY_UNAVAILABLE"
            }
            _ => false,
        }
    }

    /// True for [`MlflowError::NotFound`] and [`MlflowError::AliasNotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            MlflowError::NotFound { .. } | MlflowError::AliasNotFound { .. }
        )
    }

    /// MLflow's `error_code` for [`MlflowError::InvalidRequest`], if any.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            MlflowError::InvalidRequest { error_code, .. } => Some(error_code),
            _ => None,
        }
    }

    pub(crate) fn malformed(detail: impl Into<String>) -> Self {
        MlflowError::MalformedResponse {
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid_uri(uri: impl Into<String>, reason: impl Into<String>) -> Self {
        MlflowError::InvalidUri {
            uri: uri.into(),
            reason: reason.into(),
        }
    }

    /// Map a transport-level `reqwest` error.
    pub(crate) fn from_transport(err: reqwest::Error) -> Self {
        if err.is_builder() {
            MlflowError::Config {
                detail: err.to_string(),
            }
        } else {
            MlflowError::Unavailable { source: err }
        }
    }
}

/// `err: cause: root cause`, without repeating a cause already contained in its parent's text.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// MLflow's JSON error body: `{"error_code": "...", "message": "..."}`.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

const SNIPPET_LEN: usize = 300;

/// First `SNIPPET_LEN` characters of a body, for error messages.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out: String = text.chars().take(SNIPPET_LEN).collect();
    if text.chars().count() > SNIPPET_LEN {
        out.push('…');
    }
    out
}

/// Map a non-2xx HTTP answer to an error.
///
/// `what` describes the object the request was about ("registered model 'iris'"), and
/// `host` is the Host the client sent (for the 403 hint).
pub(crate) fn from_status(status: u16, body: &[u8], what: &str, host: &str) -> MlflowError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let (code, message) = match parsed {
        Some(ErrorBody {
            error_code,
            message,
        }) if error_code.is_some() || message.is_some() => {
            (error_code, message.unwrap_or_default())
        }
        _ => (None, snippet(body)),
    };
    match status {
        401 => MlflowError::Unauthorized { message },
        403 => MlflowError::Forbidden {
            message: forbidden_message(&message, host),
        },
        404 => MlflowError::NotFound {
            what: what.to_owned(),
            message,
        },
        400..=499 if code.as_deref() == Some("RESOURCE_DOES_NOT_EXIST") => MlflowError::NotFound {
            what: what.to_owned(),
            message,
        },
        400..=499 => MlflowError::InvalidRequest {
            status,
            error_code: code.unwrap_or_else(|| format!("HTTP_{status}")),
            message,
        },
        _ => MlflowError::Server {
            status,
            message: match code {
                Some(code) => format!("{code}: {message}"),
                None => message,
            },
        },
    }
}

fn forbidden_message(server_message: &str, host: &str) -> String {
    let lower = server_message.to_ascii_lowercase();
    if lower.contains("host header") {
        format!(
            "{server_message} — the MLflow server's --allowed-hosts (MLFLOW_SERVER_ALLOWED_HOSTS) \
             must include the host the operator uses ('{host}'); note that the flag replaces \
             MLflow's defaults"
        )
    } else if lower.contains("origin") || lower.contains("cors") {
        format!(
            "{server_message} — MLflow's cross-origin check refused the request; the operator \
             sends no Origin header, so check proxies in front of MLflow"
        )
    } else {
        format!(
            "{server_message} — permission denied by MLflow (auth plugin?) or its security \
             middleware; if it is the Host check, the server's --allowed-hosts must include \
             the host the operator uses ('{host}')"
        )
    }
}

/// The alias-not-found case: MLflow answers 400 `INVALID_PARAMETER_VALUE` with a message like
/// "Registered model alias champion not found." (some versions answer 404).
pub(crate) fn is_alias_not_found(err: &MlflowError) -> bool {
    match err {
        MlflowError::InvalidRequest {
            error_code,
            message,
            ..
        } => {
            let m = message.to_ascii_lowercase();
            error_code == "INVALID_PARAMETER_VALUE"
                && m.contains("alias")
                && m.contains("not found")
        }
        MlflowError::NotFound { message, .. } => message.to_ascii_lowercase().contains("alias"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_404_to_not_found() {
        let body = br#"{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"Registered Model with name=x not found"}"#;
        let err = from_status(404, body, "registered model 'x'", "h");
        assert!(matches!(&err, MlflowError::NotFound { what, message }
            if what == "registered model 'x'" && message.contains("not found")));
        assert_eq!(err.category(), "mlflow_not_found");
        assert!(!err.is_transient());
        assert!(err.is_not_found());
    }

    #[test]
    fn maps_alias_400_to_invalid_request_then_detects_alias_case() {
        let body = br#"{"error_code":"INVALID_PARAMETER_VALUE","message":"Registered model alias champion not found."}"#;
        let err = from_status(400, body, "alias", "h");
        assert_eq!(err.error_code(), Some("INVALID_PARAMETER_VALUE"));
        assert!(is_alias_not_found(&err));
        let other = from_status(
            400,
            br#"{"error_code":"INVALID_PARAMETER_VALUE","message":"Missing value for required parameter 'name'."}"#,
            "alias",
            "h",
        );
        assert!(!is_alias_not_found(&other));
        assert_eq!(other.category(), "mlflow_invalid_request");
    }

    #[test]
    fn maps_403_with_allowed_hosts_hint() {
        let err = from_status(
            403,
            b"Invalid Host header - possible DNS rebinding attack detected",
            "x",
            "mlflow.ml.svc:5000",
        );
        let MlflowError::Forbidden { message } = &err else {
            panic!("{err:?}")
        };
        assert!(message.contains("--allowed-hosts"), "{message}");
        assert!(message.contains("mlflow.ml.svc:5000"), "{message}");
        assert_eq!(err.category(), "mlflow_forbidden");
        assert!(!err.is_transient());
    }

    #[test]
    fn maps_401_5xx_and_429() {
        assert_eq!(
            from_status(401, b"", "x", "h").category(),
            "mlflow_unauthorized"
        );
        let err = from_status(503, b"<html>busy</html>", "x", "h");
        assert!(
            matches!(&err, MlflowError::Server { status: 503, message } if message.contains("busy"))
        );
        assert!(err.is_transient());
        assert_eq!(err.category(), "mlflow_server_error");
        let err = from_status(
            429,
            br#"{"error_code":"REQUEST_LIMIT_EXCEEDED","message":"slow down"}"#,
            "x",
            "h",
        );
        assert!(err.is_transient());
        let err = from_status(400, b"not json", "x", "h");
        assert_eq!(err.error_code(), Some("HTTP_400"));
        assert!(!err.is_transient());
    }

    #[test]
    fn snippet_truncates() {
        let long = "a".repeat(1000);
        let s = snippet(long.as_bytes());
        assert_eq!(s.chars().count(), SNIPPET_LEN + 1);
    }
}
