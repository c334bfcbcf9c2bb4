//! The in-memory Kubernetes API for controller tests: `kube-fake-client` plus a watch layer.
//!
//! `kube-fake-client` answers get/list/create/patch/delete (including server-side apply,
//! status subresources and cascading deletion by owner reference) but does not stream
//! watches. [`WatchLayer`] is a tower Service in front of it that:
//! - answers `?watch=true` with the current list replayed as ADDED events followed by every
//!   later write to that resource type (filtered by namespace and equality label selectors);
//! - forwards everything else and broadcasts each successful write as a watch event.
//!
//! That is enough for the real `kube::runtime::Controller` to run against it.
//!
//! It also restores two API-server behaviours the fake lacks, without which a controller
//! loops forever: a write that changes nothing emits no watch event, and `metadata.generation`
//! moves only when something outside `metadata` and `status` changes (the fake bumps it on
//! every write, so the layer rewrites it in every answer to a per-object virtual generation).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, stream};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::client::Body;
use kube_fake_client::ClientBuilder;
use mlrollout::api::ModelDeployment;
use tokio::sync::broadcast;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// One write, as a watch event.
#[derive(Debug, Clone)]
struct WriteEvent {
    /// `/apis/apps/v1/deployments` style collection key (no namespace).
    collection: String,
    namespace: Option<String>,
    labels: BTreeMap<String, String>,
    line: Bytes,
}

/// The in-memory API server.
#[derive(Clone)]
pub struct FakeApi {
    /// Client for the controller and the test (goes through the watch layer).
    pub client: kube::Client,
}

/// Builds an in-memory API server that knows ModelDeployments (with status subresource) and
/// the built-in kinds, with status subresources on Deployments and Jobs so a test can play
/// the kubelet.
pub async fn fake_api() -> FakeApi {
    let inner = ClientBuilder::new()
        .with_resource::<ModelDeployment>()
        .with_resource::<gateway_api::httproutes::HttpRoute>()
        .with_status_subresource::<ModelDeployment>()
        .with_status_subresource::<Deployment>()
        .with_status_subresource::<Job>()
        .build()
        .await
        .expect("fake client builds");
    let (tx, _) = broadcast::channel(4096);
    let layer = WatchLayer {
        inner,
        tx,
        objects: Default::default(),
    };
    FakeApi {
        client: kube::Client::new(layer, "default"),
    }
}

#[derive(Clone)]
struct WatchLayer {
    inner: kube::Client,
    tx: broadcast::Sender<Arc<WriteEvent>>,
    objects: Arc<std::sync::Mutex<BTreeMap<String, ObjectState>>>,
}

/// What the layer remembers of each object to emulate generation and no-op writes.
#[derive(Debug, Clone)]
struct ObjectState {
    generation: i64,
    /// Everything but `metadata` and `status`: a change here bumps the generation.
    spec_content: serde_json::Value,
    /// The object minus bookkeeping fields: a change here is worth a watch event.
    observable: serde_json::Value,
}

fn object_key(object: &serde_json::Value) -> String {
    let get = |p: &str| object.pointer(p).and_then(|v| v.as_str()).unwrap_or("");
    format!(
        "{}|{}|{}|{}",
        get("/apiVersion"),
        get("/kind"),
        get("/metadata/namespace"),
        get("/metadata/name")
    )
}

fn spec_content(object: &serde_json::Value) -> serde_json::Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

fn observable(object: &serde_json::Value) -> serde_json::Value {
    let mut copy = object.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        for field in ["resourceVersion", "generation", "managedFields"] {
            meta.remove(field);
        }
    }
    copy
}

impl tower::Service<Request<Body>> for WatchLayer {
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let this = self.clone();
        async move { this.handle(request).await }.boxed()
    }
}

/// A parsed API path.
#[derive(Debug, Clone)]
struct ApiPath {
    collection: String,
    namespace: Option<String>,
}

fn parse_path(path: &str) -> Option<ApiPath> {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let prefix_len = match parts.first() {
        Some(&"api") => 2,
        Some(&"apis") => 3,
        _ => return None,
    };
    let prefix = parts.get(..prefix_len)?.join("/");
    let rest = &parts[prefix_len..];
    let (namespace, plural) = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        (Some(rest[1].to_string()), rest[2])
    } else {
        (None, *rest.first()?)
    };
    Some(ApiPath {
        collection: format!("/{prefix}/{plural}"),
        namespace,
    })
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Equality-based label selector (`a=b,c=d`), all the controller uses.
fn selector_matches(selector: &Option<String>, labels: &BTreeMap<String, String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => {
                labels.get(k.trim_end_matches('=')).map(String::as_str)
                    == Some(v.trim_start_matches('='))
            }
            None => labels.contains_key(term),
        })
}

fn labels_of(object: &serde_json::Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default()
}

fn full(bytes: Bytes) -> ResponseBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

impl WatchLayer {
    async fn handle(self, request: Request<Body>) -> Result<Response<ResponseBody>, BoxError> {
        let method = request.method().clone();
        let uri = request.uri().clone();
        let query = uri.query().unwrap_or("").to_string();
        let path = parse_path(uri.path());
        let is_watch = matches!(query_param(&query, "watch").as_deref(), Some("true" | "1"));
        if method == Method::GET && is_watch {
            let path = path.ok_or("unparseable watch path")?;
            return self.watch(path, &query).await;
        }

        let response = self.inner.send(request).await?;
        let (parts, body) = response.into_parts();
        let bytes = body.collect_bytes().await?;
        let is_write = matches!(
            method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return Ok(Response::from_parts(parts, full(bytes)));
        };
        if !parts.status.is_success()
            || value.get("kind").and_then(|k| k.as_str()) == Some("Status")
        {
            return Ok(Response::from_parts(parts, full(bytes)));
        }
        if let Some(items) = value.get_mut("items").and_then(|i| i.as_array_mut()) {
            for item in items.iter_mut() {
                self.virtualize(item, false);
            }
        } else if value.get("metadata").is_some() {
            let deleted = method == Method::DELETE;
            let changed = self.virtualize(&mut value, is_write && !deleted);
            if is_write
                && let Some(path) = path
                && (changed || deleted)
            {
                let kind = match method {
                    Method::POST => "ADDED",
                    Method::DELETE => "DELETED",
                    _ => "MODIFIED",
                };
                if deleted {
                    self.forget(&value);
                }
                self.broadcast(&path, kind, &value);
            }
        }
        let bytes = Bytes::from(serde_json::to_vec(&value)?);
        Ok(Response::from_parts(parts, full(bytes)))
    }

    /// Rewrites `metadata.generation` to the virtual one; on a write, records the new state and
    /// returns whether anything observable changed.
    fn virtualize(&self, object: &mut serde_json::Value, is_write: bool) -> bool {
        let key = object_key(object);
        let mut objects = self.objects.lock().expect("layer state");
        let spec = spec_content(object);
        let seen = observable(object);
        let (generation, changed) = match objects.get_mut(&key) {
            Some(state) if is_write => {
                let changed = state.observable != seen;
                if state.spec_content != spec {
                    state.generation += 1;
                    state.spec_content = spec;
                }
                state.observable = seen;
                (state.generation, changed)
            }
            Some(state) => (state.generation, false),
            None => {
                objects.insert(
                    key,
                    ObjectState {
                        generation: 1,
                        spec_content: spec,
                        observable: seen,
                    },
                );
                (1, true)
            }
        };
        if let Some(meta) = object.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.insert("generation".into(), generation.into());
        }
        changed
    }

    fn forget(&self, object: &serde_json::Value) {
        let key = object_key(object);
        self.objects.lock().expect("layer state").remove(&key);
    }

    fn broadcast(&self, path: &ApiPath, kind: &str, object: &serde_json::Value) {
        let line = serde_json::to_vec(&serde_json::json!({"type": kind, "object": object}))
            .map(|mut v| {
                v.push(b'\n');
                Bytes::from(v)
            })
            .unwrap_or_default();
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(|n| n.as_str())
            .map(String::from)
            .or_else(|| path.namespace.clone());
        // No subscribers is fine: nobody watches that type yet.
        let _ = self.tx.send(Arc::new(WriteEvent {
            collection: path.collection.clone(),
            namespace,
            labels: labels_of(object),
            line,
        }));
    }

    async fn watch(&self, path: ApiPath, query: &str) -> Result<Response<ResponseBody>, BoxError> {
        // Subscribe before listing so no write between the two is lost (duplicates are harmless).
        let rx = self.tx.subscribe();
        let selector = query_param(query, "labelSelector");
        let list_uri = match &path.namespace {
            Some(ns) => {
                let (prefix, plural) = path.collection.rsplit_once('/').ok_or("bad collection")?;
                format!("{prefix}/namespaces/{ns}/{plural}")
            }
            None => path.collection.clone(),
        };
        let list_uri = match &selector {
            Some(s) => format!(
                "{list_uri}?labelSelector={}",
                s.replace('=', "%3D").replace(',', "%2C")
            ),
            None => list_uri,
        };
        let response = self
            .inner
            .send(Request::get(list_uri).body(Body::empty())?)
            .await?;
        let list: serde_json::Value =
            serde_json::from_slice(&response.into_body().collect_bytes().await?)?;
        let initial: Vec<Result<http_body::Frame<Bytes>, BoxError>> = list
            .get("items")
            .and_then(|i| i.as_array())
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|mut item| {
                self.virtualize(&mut item, false);
                let mut line =
                    serde_json::to_vec(&serde_json::json!({"type": "ADDED", "object": item}))?;
                line.push(b'\n');
                Ok(http_body::Frame::data(Bytes::from(line)))
            })
            .collect();

        let live = stream::unfold(rx, {
            let path = path.clone();
            let selector = selector.clone();
            move |mut rx| {
                let path = path.clone();
                let selector = selector.clone();
                async move {
                    loop {
                        match rx.recv().await {
                            Ok(event) => {
                                let ns_ok =
                                    path.namespace.is_none() || path.namespace == event.namespace;
                                if event.collection == path.collection
                                    && ns_ok
                                    && selector_matches(&selector, &event.labels)
                                {
                                    return Some((
                                        Ok(http_body::Frame::data(event.line.clone())),
                                        rx,
                                    ));
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                }
            }
        });
        let body = StreamBody::new(stream::iter(initial).chain(live));
        Ok(Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(body.boxed_unsync())?)
    }
}

// ------------------------------------------------------------------------ request log
//
// Optional, for tests about *which* calls the operator makes (RBAC, leader election): a
// client on the same in-memory API that records every request as RBAC sees it. `fake_api()`
// is unchanged; these wrap one of its clients.

/// One request, in RBAC terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or `deletecollection`.
    pub verb: String,
    /// API group (`""` for the core group).
    pub group: String,
    /// Plural resource, with `/subresource` when there is one (`modeldeployments/status`).
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// A server-side apply patch (`application/apply-patch+yaml`): on a missing object it
    /// creates it, which the API server authorizes as `create`.
    pub apply: bool,
    /// HTTP status of the answer; `None` when the request never reached the API (partitioned).
    pub status: Option<u16>,
    /// When it was sent (tokio time, so virtual in paused tests).
    pub at: tokio::time::Instant,
}

impl ApiRequest {
    /// Changes something (create, update, patch, delete).
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }

    /// Answered with a 2xx.
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// The requests a client made, in order.
pub type RequestLog = Arc<std::sync::Mutex<Vec<ApiRequest>>>;

/// A client on an in-memory API with its own request log and a switch that cuts it off from
/// the API (every request fails as if the network were down).
#[derive(Clone)]
pub struct LoggedClient {
    pub client: kube::Client,
    pub log: RequestLog,
    pub partitioned: Arc<std::sync::atomic::AtomicBool>,
}

impl LoggedClient {
    /// A snapshot of the log.
    pub fn requests(&self) -> Vec<ApiRequest> {
        self.log.lock().expect("request log").clone()
    }

    /// Cuts the client off from the API (or reconnects it).
    pub fn partition(&self, cut: bool) {
        self.partitioned
            .store(cut, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The in-memory API (its client for the test's own requests, not logged) plus a client on
/// the same API that logs every request (for the operator under test).
pub async fn fake_api_with_log() -> (FakeApi, LoggedClient) {
    let api = fake_api().await;
    let logged = logged_client(&api.client);
    (api, logged)
}

/// Another client on the same in-memory API as `base`, with its own request log.
pub fn logged_client(base: &kube::Client) -> LoggedClient {
    let log = RequestLog::default();
    let partitioned = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let layer = LogLayer {
        inner: base.clone(),
        log: log.clone(),
        partitioned: partitioned.clone(),
    };
    LoggedClient {
        client: kube::Client::new(layer, "default"),
        log,
        partitioned,
    }
}

#[derive(Clone)]
struct LogLayer {
    inner: kube::Client,
    log: RequestLog,
    partitioned: Arc<std::sync::atomic::AtomicBool>,
}

/// (group, resource with subresource, namespace, name) of an API path.
fn rbac_target(path: &str) -> Option<(String, String, Option<String>, Option<String>)> {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match parts.first() {
        Some(&"api") => (String::new(), parts.get(2..)?),
        Some(&"apis") => (parts.get(1)?.to_string(), parts.get(3..)?),
        _ => return None,
    };
    let (namespace, rest) = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let mut resource = rest.first()?.to_string();
    if let Some(sub) = rest.get(2) {
        resource = format!("{resource}/{sub}");
    }
    Some((
        group,
        resource,
        namespace,
        rest.get(1).map(|s| s.to_string()),
    ))
}

impl tower::Service<Request<Body>> for LogLayer {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let this = self.clone();
        async move {
            let method = request.method().clone();
            let uri = request.uri().clone();
            let is_watch = matches!(
                query_param(uri.query().unwrap_or(""), "watch").as_deref(),
                Some("true" | "1")
            );
            let (group, resource, namespace, name) = rbac_target(uri.path()).unwrap_or_default();
            let verb = match method {
                Method::GET if is_watch => "watch",
                Method::GET if name.is_some() => "get",
                Method::GET => "list",
                Method::POST => "create",
                Method::PUT => "update",
                Method::PATCH => "patch",
                Method::DELETE if name.is_some() => "delete",
                Method::DELETE => "deletecollection",
                _ => "unknown",
            };
            let apply = request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/apply-patch"));
            let mut entry = ApiRequest {
                verb: verb.to_string(),
                group,
                resource,
                namespace,
                name,
                apply,
                status: None,
                at: tokio::time::Instant::now(),
            };
            if this.partitioned.load(std::sync::atomic::Ordering::SeqCst) {
                this.log.lock().expect("request log").push(entry);
                return Err::<Response<Body>, BoxError>("partitioned from the API server".into());
            }
            let result = this.inner.send(request).await;
            entry.status = result.as_ref().ok().map(|r| r.status().as_u16());
            this.log.lock().expect("request log").push(entry);
            Ok(result?)
        }
        .boxed()
    }
}
