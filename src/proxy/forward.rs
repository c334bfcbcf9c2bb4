//! The request path: read the body (bounded), forward to the model server (bounded in time),
//! answer, count, and hand the bodies to the recorder without waiting for it.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use jiff::Timestamp;
use tokio::sync::mpsc;

use super::capture::{Observation, Sampler};
use super::metrics::{DropReason, ProxyMetrics, SkipReason};

/// Header carrying the request id (kept when the client sent one).
pub const REQUEST_ID: &str = "x-request-id";

/// Hop-by-hop headers, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Limits of the request path.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body forwarded; larger ones are answered 413.
    pub max_request_bytes: usize,
    /// Largest response body relayed; larger ones are answered 502.
    pub max_response_bytes: usize,
    /// Time the model server has to answer; after it, 504.
    pub upstream_timeout: Duration,
}

/// Everything a request needs, shared by all connections.
pub struct Forwarder {
    pub client: Client<HttpConnector, Full<Bytes>>,
    /// `http://host:port` of the model server.
    pub upstream: Uri,
    pub limits: Limits,
    pub metrics: Arc<ProxyMetrics>,
    pub recorder: mpsc::Sender<Observation>,
    pub sampler: Sampler,
    /// Prefix of the ids this proxy makes (its pod name).
    pub id_prefix: String,
    pub ids: AtomicU64,
}

impl Forwarder {
    /// Answers one request; never fails (every error is a status code, counted).
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let started = Instant::now();
        let at = Timestamp::now();
        let (response, observation) = self.exchange(request, at).await;
        let code = response.status().as_u16();
        self.metrics.answered(code, started.elapsed().as_secs_f64());
        if let Some(observation) = observation {
            self.hand_over(observation);
        }
        Ok(response)
    }

    async fn exchange(
        &self,
        request: Request<Incoming>,
        at: Timestamp,
    ) -> (Response<Full<Bytes>>, Option<Observation>) {
        let (mut parts, body) = request.into_parts();
        let request_id = self.request_id(&parts.headers);
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.limits.max_request_bytes as u64) {
            return (status(StatusCode::PAYLOAD_TOO_LARGE, &request_id), None);
        }
        let request_body = match Limited::new(body, self.limits.max_request_bytes)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                return (status(StatusCode::PAYLOAD_TOO_LARGE, &request_id), None);
            }
            Err(_) => return (status(StatusCode::BAD_REQUEST, &request_id), None),
        };
        self.metrics.request_size.observe(request_body.len() as f64);
        let Some(uri) = upstream_uri(&self.upstream, &parts.uri) else {
            return (status(StatusCode::BAD_REQUEST, &request_id), None);
        };
        parts.uri = uri;
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(header::HOST);
        set_request_id(&mut parts.headers, &request_id);
        let upstream = Request::from_parts(parts, Full::new(request_body.clone()));
        let answer =
            tokio::time::timeout(self.limits.upstream_timeout, self.client.request(upstream)).await;
        let response = match answer {
            Err(_) => return (status(StatusCode::GATEWAY_TIMEOUT, &request_id), None),
            Ok(Err(_)) => return (status(StatusCode::BAD_GATEWAY, &request_id), None),
            Ok(Ok(response)) => response,
        };
        let (mut head, body) = response.into_parts();
        let body = match Limited::new(body, self.limits.max_response_bytes)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return (status(StatusCode::BAD_GATEWAY, &request_id), None),
        };
        strip_hop_by_hop(&mut head.headers);
        head.headers.remove(header::CONTENT_LENGTH);
        set_request_id(&mut head.headers, &request_id);
        let observation = if head.status.is_success() {
            Some(Observation {
                request_id,
                at,
                request: self.sampler.take().then_some(request_body),
                response: body.clone(),
            })
        } else {
            self.metrics.skip(SkipReason::failed);
            None
        };
        (Response::from_parts(head, Full::new(body)), observation)
    }

    fn hand_over(&self, observation: Observation) {
        let sampled = observation.request.is_some();
        if self.recorder.try_send(observation).is_err() {
            self.metrics.skip(SkipReason::queue_full);
            if sampled {
                self.metrics.drop_requests(DropReason::queue_full, 1);
            }
        }
    }

    fn request_id(&self, headers: &HeaderMap) -> String {
        headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map_or_else(
                || {
                    let n = self.ids.fetch_add(1, Ordering::Relaxed);
                    format!(
                        "{}-{:x}-{n:x}",
                        self.id_prefix,
                        Timestamp::now().as_millisecond()
                    )
                },
                str::to_owned,
            )
    }
}

/// The model server's URI for an incoming request: its path and query on the upstream's scheme
/// and authority (an absolute-form request cannot make the proxy dial another host).
fn upstream_uri(upstream: &Uri, incoming: &Uri) -> Option<Uri> {
    let mut parts = upstream.clone().into_parts();
    parts.path_and_query = incoming.path_and_query().cloned();
    Uri::from_parts(parts).ok()
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn set_request_id(headers: &mut HeaderMap, id: &str) {
    if let Ok(value) = HeaderValue::from_str(id) {
        headers.insert(REQUEST_ID, value);
    }
}

fn status(code: StatusCode, request_id: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    set_request_id(response.headers_mut(), request_id);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_dropped() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("x-private", "1"),
            ("content-type", "application/json"),
            ("x-request-id", "abc"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["content-type", "x-request-id"]);
    }

    #[test]
    fn requests_go_to_the_model_server_whatever_authority_they_name() {
        let upstream: Uri = "http://127.0.0.1:8080".parse().unwrap();
        let rewrite = |incoming: &str| {
            upstream_uri(&upstream, &incoming.parse().unwrap())
                .unwrap()
                .to_string()
        };
        assert_eq!(
            rewrite("/invocations?x=1"),
            "http://127.0.0.1:8080/invocations?x=1"
        );
        assert_eq!(
            rewrite("http://169.254.169.254/latest"),
            "http://127.0.0.1:8080/latest"
        );
    }
}
