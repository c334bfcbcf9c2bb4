//! Where a dataset lives and how its bytes are fetched.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

use super::error::{DataError, Side, one_line};
use crate::api::DataFormat;
use crate::mlflow::{MlflowAuth, MlflowClient, MlflowError};

/// A dataset location, parsed from a URI.
///
/// Adding a scheme means adding a variant here, its arm in [`DataSource::parse`]
/// and in [`DataSource::fetch`]; the readers only see a [`Payload`]. A directory, a glob or an
/// object-store prefix (a [collection](DataSource::is_collection)) is read as one dataset by
/// [`super::collection`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// A local file: a plain path (relative to the working directory) or a `file://` URI.
    File(PathBuf),
    /// An `http://` or `https://` URL, downloaded whole.
    Http(String),
    /// An MLflow artifact: `runs:/<run_id>/<path>`, `mlflow-artifacts:/<path>` or
    /// `models:/<name>/<version>/<path>`, downloaded through the tracking server's artifact
    /// proxy.
    Mlflow(String),
    /// An object of a cloud store (`s3://`, `gs://`, `az://`, `abfs(s)://`), a prefix of
    /// objects (ending in `/`) or a glob of them, read through [`crate::storage`].
    Object(String),
}

/// The bytes of a dataset, ready for a reader: a local file (read lazily, Parquet reads
/// only the projected column chunks) or a downloaded body.
#[derive(Clone, Debug)]
pub enum Payload {
    File {
        path: PathBuf,
        uri: String,
    },
    Bytes {
        bytes: Bytes,
        uri: String,
    },
    /// The files of a collection, oldest first, read as one dataset; `last_rows` keeps only
    /// the newest rows of them.
    Many {
        uri: String,
        parts: Vec<Part>,
        last_rows: Option<usize>,
    },
}

/// One file of a [`Payload::Many`], with the format it is read in.
#[derive(Clone, Debug)]
pub struct Part {
    pub payload: Payload,
    pub format: DataFormat,
}

impl Payload {
    /// A payload of in-memory bytes (tests, caches).
    pub fn from_bytes(uri: impl Into<String>, bytes: impl Into<Bytes>) -> Self {
        Payload::Bytes {
            bytes: bytes.into(),
            uri: uri.into(),
        }
    }

    /// A local file payload (no existence check; the reader reports a missing file).
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Payload::File {
            uri: path.display().to_string(),
            path,
        }
    }

    /// The URI the payload came from (for messages).
    pub fn uri(&self) -> &str {
        match self {
            Payload::File { uri, .. } | Payload::Bytes { uri, .. } | Payload::Many { uri, .. } => {
                uri
            }
        }
    }
}

/// What fetching remote sources needs: an HTTP client and, for MLflow URIs, an MLflow client.
#[derive(Clone, Debug)]
pub struct FetchContext {
    /// Client for `runs:/`, `mlflow-artifacts:/` and `models:/` URIs.
    pub mlflow: Option<MlflowClient>,
    /// Whole-request timeout for `http(s)://` downloads.
    pub timeout: Duration,
    /// Most bytes read from one source: a bigger file, body or artifact is refused (an endless
    /// body or `/dev/zero` must not grow until the process is killed).
    pub max_bytes: u64,
    /// What may be read at all (checked before anything is fetched, and on every redirect and
    /// resolved address).
    pub policy: std::sync::Arc<super::policy::DataSourcePolicy>,
    /// Settings of the object stores behind `s3://`, `gs://` and `az://` URIs (credentials,
    /// endpoint, region).
    pub storage: crate::storage::StoreOptions,
    /// Most memory a check's datasets may take once read: past it they are streamed batch by
    /// batch, KS from quantile sketches (see `drift::engine::stream`).
    pub memory_limit: u64,
    http: Option<reqwest::Client>,
}

/// Default of [`FetchContext::max_bytes`]: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Default of [`FetchContext::memory_limit`]: sized for the operator's pod (512 MiB limit,
/// of which the rest serves the process).
pub const DEFAULT_MEMORY_LIMIT: u64 = 384 << 20;
/// Default of [`FetchContext::timeout`].
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(120);

impl Default for FetchContext {
    fn default() -> Self {
        Self {
            mlflow: None,
            timeout: DEFAULT_FETCH_TIMEOUT,
            max_bytes: DEFAULT_MAX_BYTES,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            policy: std::sync::Arc::default(),
            storage: crate::storage::StoreOptions::default(),
            http: None,
        }
    }
}

impl FetchContext {
    pub fn new() -> Self {
        Self::default()
    }

    /// Use this MLflow client for MLflow artifact URIs.
    /// The MLflow client downloads artifacts under this context's byte cap.
    pub fn with_mlflow(mut self, client: MlflowClient) -> Self {
        self.mlflow = Some(client.with_max_body_bytes(self.max_bytes));
        self
    }

    /// Build an unauthenticated MLflow client for `tracking_uri` (`http(s)://host[:port]`).
    pub fn with_tracking_uri(self, tracking_uri: &str) -> Result<Self, MlflowError> {
        let client = MlflowClient::new(tracking_uri, MlflowAuth::None, self.timeout)?;
        Ok(self.with_mlflow(client))
    }

    pub fn with_memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = bytes;
        self
    }

    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self.mlflow = self.mlflow.map(|c| c.with_max_body_bytes(max_bytes));
        self
    }

    /// Reads only what `policy` allows.
    pub fn with_policy(mut self, policy: super::policy::DataSourcePolicy) -> Self {
        self.policy = std::sync::Arc::new(policy);
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reads object stores with these settings.
    pub fn with_storage(mut self, storage: crate::storage::StoreOptions) -> Self {
        self.storage = storage;
        self
    }

    fn http_client(&self) -> Result<reqwest::Client, String> {
        if let Some(c) = &self.http {
            return Ok(c.clone());
        }
        // reqwest is built without a default TLS provider; make sure one is installed
        // (a no-op when the binary already did it).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("mlrollout/", env!("CARGO_PKG_VERSION")))
            .redirect(super::policy::redirect_policy(self.policy.clone()));
        if self.policy.block_internal {
            builder = builder.dns_resolver(std::sync::Arc::new(super::policy::FilteringResolver {
                policy: self.policy.clone(),
            }));
        }
        builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)))
    }
}

/// `scheme` of `scheme:rest` when it looks like a URI scheme (two characters or more, so that
/// Windows drive letters stay paths).
fn scheme_of(uri: &str) -> Option<&str> {
    let (scheme, _) = uri.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (scheme.len() >= 2
        && first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

impl DataSource {
    /// Parse a dataset URI. `side` only labels errors.
    pub fn parse(uri: &str, side: Side) -> Result<Self, DataError> {
        let trimmed = uri.trim();
        let invalid = |reason: &str| DataError::InvalidUri {
            side,
            uri: uri.to_owned(),
            reason: reason.to_owned(),
        };
        if trimmed.is_empty() {
            return Err(invalid("empty URI"));
        }
        let Some(scheme) = scheme_of(trimmed) else {
            return Ok(DataSource::File(PathBuf::from(trimmed)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                let rest = &trimmed[scheme.len() + 1..];
                let path = match rest.strip_prefix("//") {
                    // file:///abs, file://localhost/abs
                    Some(r) if r.starts_with('/') => r,
                    Some(r) => match r.strip_prefix("localhost") {
                        Some(p) if p.starts_with('/') => p,
                        _ => {
                            return Err(invalid(
                                "file URIs must be file:///absolute/path (remote hosts are not supported)",
                            ));
                        }
                    },
                    None => rest,
                };
                let path = percent_decode(path).ok_or_else(|| invalid("bad percent-encoding"))?;
                if path.is_empty() {
                    return Err(invalid("no path"));
                }
                Ok(DataSource::File(PathBuf::from(path)))
            }
            "http" | "https" => {
                let url = reqwest::Url::parse(trimmed)
                    .map_err(|e| invalid(&format!("not a valid URL: {e}")))?;
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(invalid("no host"));
                }
                Ok(DataSource::Http(trimmed.to_owned()))
            }
            "runs" | "mlflow-artifacts" | "models" => Ok(DataSource::Mlflow(trimmed.to_owned())),
            "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" => {
                let url = url::Url::parse(trimmed)
                    .map_err(|e| invalid(&format!("not a valid URI: {e}")))?;
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(invalid("no bucket or container"));
                }
                Ok(DataSource::Object(trimmed.to_owned()))
            }
            other => {
                if trimmed[scheme.len() + 1..].starts_with("//") {
                    Err(DataError::UnsupportedScheme {
                        side,
                        uri: uri.to_owned(),
                        scheme: other.to_owned(),
                    })
                } else {
                    // `name:with:colons.csv` is a relative path, not a URI
                    Ok(DataSource::File(PathBuf::from(trimmed)))
                }
            }
        }
    }

    /// Whether fetching needs the network.
    pub fn is_remote(&self) -> bool {
        !matches!(self, DataSource::File(_))
    }

    /// Whether this names several files read as one dataset: a local directory, a glob in the
    /// last path segment (`*`, `?`), or an object-store prefix (ending in `/`) or glob.
    pub fn is_collection(&self) -> bool {
        match self {
            DataSource::File(path) => {
                path.is_dir()
                    || path
                        .file_name()
                        .is_some_and(|n| super::collection::is_glob(&n.to_string_lossy()))
            }
            DataSource::Object(uri) => {
                uri.ends_with('/')
                    || super::collection::is_glob(uri.rsplit('/').next().unwrap_or_default())
            }
            DataSource::Http(_) | DataSource::Mlflow(_) => false,
        }
    }

    /// Whether fetching needs an MLflow client.
    pub fn needs_mlflow(&self) -> bool {
        matches!(self, DataSource::Mlflow(_))
    }

    /// The location as a string (the path for files).
    pub fn uri(&self) -> String {
        match self {
            DataSource::File(p) => p.display().to_string(),
            DataSource::Http(u) | DataSource::Mlflow(u) | DataSource::Object(u) => u.clone(),
        }
    }

    /// The path part used to guess the format (no query or fragment).
    fn path_for_extension(&self) -> String {
        match self {
            DataSource::File(p) => p.display().to_string(),
            DataSource::Http(u) => match reqwest::Url::parse(u) {
                Ok(url) => url.path().to_owned(),
                Err(_) => u.clone(),
            },
            DataSource::Mlflow(u) | DataSource::Object(u) => u.clone(),
        }
    }

    /// Check a local file (without reading it) or download a remote one.
    pub async fn fetch(&self, ctx: &FetchContext, side: Side) -> Result<Payload, DataError> {
        match self {
            DataSource::File(path) => {
                check_file(path, side, ctx.max_bytes).map(|()| Payload::File {
                    path: path.clone(),
                    uri: path.display().to_string(),
                })
            }
            DataSource::Http(url) => fetch_http(ctx, url, side).await,
            DataSource::Object(uri) => super::objects::fetch_one(ctx, uri, side).await,
            DataSource::Mlflow(uri) => {
                let Some(client) = &ctx.mlflow else {
                    return Err(DataError::InvalidUri {
                        side,
                        uri: uri.clone(),
                        reason: "an MLflow tracking URI is needed (spec.model.trackingUri, \
                                 --tracking-uri or MLFLOW_TRACKING_URI)"
                            .into(),
                    });
                };
                let bytes = client
                    .download_artifact(uri)
                    .await
                    .map_err(|e| mlflow_error(e, uri, side))?;
                Ok(Payload::Bytes {
                    bytes: Bytes::from(bytes),
                    uri: uri.clone(),
                })
            }
        }
    }

    /// A named pipe read whole (under the byte cap), or `None` for anything else: a pipe can be
    /// read once only.
    pub fn read_stream(&self, side: Side, max_bytes: u64) -> Result<Option<Payload>, DataError> {
        use std::io::Read;
        use std::os::unix::fs::FileTypeExt;
        let DataSource::File(path) = self else {
            return Ok(None);
        };
        let Ok(meta) = std::fs::metadata(path) else {
            return Ok(None);
        };
        // Devices never end (`/dev/zero`): `fetch` refuses them as not a file.
        if device_kind(&meta).is_some() {
            return Ok(None);
        }
        let is_pipe = meta.file_type().is_fifo();
        // `/dev/stdin` (or `/dev/fd/N`) redirected from a file is a regular file with no useful
        // name: read it as a stream too, so its content can say what it is.
        let is_std_stream = path.starts_with("/dev/") || path.starts_with("/proc/self/fd/");
        if !(is_pipe || is_std_stream) {
            return Ok(None);
        }
        let uri = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| DataError::Unreachable {
            side,
            uri: uri.clone(),
            detail: one_line(&e.to_string()),
        })?;
        let mut bytes = Vec::new();
        // One byte past the cap tells "exactly at the cap" from "over it".
        file.take(max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| DataError::Unreachable {
                side,
                uri: uri.clone(),
                detail: one_line(&e.to_string()),
            })?;
        if bytes.len() as u64 > max_bytes {
            return Err(DataError::TooLarge {
                side,
                uri,
                limit: max_bytes,
            });
        }
        Ok(Some(Payload::Bytes {
            bytes: Bytes::from(bytes),
            uri,
        }))
    }

    /// Blocking fetch for local files (no runtime needed); remote sources need
    /// [`fetch`](Self::fetch).
    pub fn fetch_local(&self, side: Side, max_bytes: u64) -> Option<Result<Payload, DataError>> {
        match self {
            DataSource::File(path) => {
                Some(check_file(path, side, max_bytes).map(|()| Payload::File {
                    path: path.clone(),
                    uri: path.display().to_string(),
                }))
            }
            _ => None,
        }
    }
}

/// What a path is when it is a device or a socket: something that never ends (`/dev/zero`,
/// `/dev/urandom`) or is not a dataset at all.
fn device_kind(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        None
    }
}

fn check_file(path: &Path, side: Side, max_bytes: u64) -> Result<(), DataError> {
    let uri = path.display().to_string();
    let not_a_file = |what: &str| DataError::InvalidUri {
        side,
        uri: uri.clone(),
        reason: format!("is {what}, not a file"),
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(not_a_file("a directory")),
        Ok(m) if let Some(device) = device_kind(&m) => Err(not_a_file(device)),
        Ok(m) if m.is_file() && m.len() > max_bytes => Err(DataError::TooLarge {
            side,
            uri,
            limit: max_bytes,
        }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DataError::NotFound {
            side,
            uri,
            detail: String::new(),
        }),
        Err(e) => Err(DataError::Unreachable {
            side,
            uri,
            detail: one_line(&e.to_string()),
        }),
    }
}

async fn fetch_http(ctx: &FetchContext, url: &str, side: Side) -> Result<Payload, DataError> {
    let unreachable = |detail: String| DataError::Unreachable {
        side,
        uri: url.to_owned(),
        detail: one_line(&detail),
    };
    let timed_out = || DataError::TimedOut {
        side,
        uri: url.to_owned(),
        after_seconds: ctx.timeout.as_secs(),
    };
    let too_large = || DataError::TooLarge {
        side,
        uri: url.to_owned(),
        limit: ctx.max_bytes,
    };
    let failed = |e: reqwest::Error| {
        if let Some(why) = super::policy::refusal_in(&e) {
            DataError::NotAllowed {
                side,
                uri: url.to_owned(),
                why,
            }
        } else if e.is_timeout() {
            timed_out()
        } else {
            unreachable(error_chain(&e))
        }
    };
    let client = ctx.http_client().map_err(unreachable)?;
    let mut response = client.get(url).send().await.map_err(failed)?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
        return Err(DataError::NotFound {
            side,
            uri: url.to_owned(),
            detail: format!("HTTP {}", status.as_u16()),
        });
    }
    if !status.is_success() {
        return Err(unreachable(format!("HTTP {status}")));
    }
    // A sign-in page or a web UI's link instead of the file: say so instead of a parse error.
    let html = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/html"));
    if html {
        return Err(DataError::malformed(
            side,
            url,
            "the server answered with an HTML page, not CSV or Parquet (a sign-in page, or a link to a web page instead of the file?)",
        ));
    }
    let body = crate::mlflow::read_capped(&mut response, ctx.max_bytes)
        .await
        .map_err(failed)?
        .ok_or_else(too_large)?;
    Ok(Payload::Bytes {
        bytes: Bytes::from(body),
        uri: url.to_owned(),
    })
}

fn mlflow_error(e: MlflowError, uri: &str, side: Side) -> DataError {
    let uri = uri.to_owned();
    match e {
        MlflowError::NotFound { .. } | MlflowError::AliasNotFound { .. } => DataError::NotFound {
            side,
            uri,
            detail: one_line(&e.to_string()),
        },
        MlflowError::InvalidUri { reason, .. } => DataError::InvalidUri {
            side,
            uri,
            reason: one_line(&reason),
        },
        MlflowError::TooLarge { limit, .. } => DataError::TooLarge { side, uri, limit },
        other => DataError::Unreachable {
            side,
            uri,
            detail: one_line(&other.to_string()),
        },
    }
}

/// An error and its causes, `: `-separated ("error sending request: ... Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The dataset format: `explicit` when given, else from the extension (`.csv`, `.parquet`,
/// `.pq`, case-insensitive; a query string or fragment is ignored).
/// The format of data whose name says nothing: Parquet starts with `PAR1`, anything else is
/// read as CSV (and a reader error says if it is not).
pub fn sniff_format(payload: &Payload) -> DataFormat {
    match payload {
        Payload::Bytes { bytes, .. } if bytes.starts_with(b"PAR1") => DataFormat::Parquet,
        _ => DataFormat::Csv,
    }
}

pub fn detect_format(
    source: &DataSource,
    explicit: Option<DataFormat>,
    side: Side,
) -> Result<DataFormat, DataError> {
    if let Some(f) = explicit {
        return Ok(f);
    }
    let path = source.path_for_extension();
    let name = path.rsplit('/').next().unwrap_or(&path);
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "csv" => Ok(DataFormat::Csv),
        "parquet" | "pq" => Ok(DataFormat::Parquet),
        _ => Err(DataError::UnknownFormat {
            side,
            uri: source.uri(),
        }),
    }
}

#[cfg(test)]
mod tests;
