//! Objects of cloud stores (`s3://`, `gs://`, `az://`) as drift data, through
//! [`crate::storage`]: one object, or the objects under a prefix. The data-source policy is
//! asked first (the bucket, the endpoint's address; every name the client resolves goes
//! through it as well), every read is bounded by the byte cap and the fetch timeout, and the
//! store's errors become named [`DataError`]s with short messages.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::error::{DataError, Side, excerpt, one_line};
use super::source::{FetchContext, Payload};

/// Longest detail of a store's error kept in a message.
const MAX_DETAIL_CHARS: usize = 200;

/// An opened store and the path a URI names in it.
pub(super) struct Opened {
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) path: Path,
    /// `scheme://bucket/` of the URI, to name listed objects.
    pub(super) root: String,
    /// The client's timeout (a request that takes longer is `DataTimedOut`).
    pub(super) timeout: Duration,
}

/// Opens the store of `uri` with the context's settings, after the policy allowed its bucket
/// and endpoint.
pub(super) fn open(ctx: &FetchContext, uri: &str, side: Side) -> Result<Opened, DataError> {
    let not_allowed = |why: String| DataError::NotAllowed {
        side,
        uri: uri.to_owned(),
        why,
    };
    ctx.policy
        .check(&super::source::DataSource::Object(uri.to_owned()))
        .map_err(not_allowed)?;
    ctx.policy.check_store(&ctx.storage).map_err(not_allowed)?;
    let connection = crate::storage::Connection {
        timeout: ctx.timeout,
        retry: object_store::RetryConfig {
            backoff: object_store::BackoffConfig::default(),
            max_retries: 2,
            retry_timeout: ctx.timeout.min(Duration::from_secs(30)),
        },
        resolver: ctx.policy.block_internal.then(|| {
            Arc::new(super::policy::StoreResolver {
                policy: ctx.policy.clone(),
            }) as Arc<dyn object_store::client::DnsResolver>
        }),
    };
    // The store's path of a prefix has no trailing `/`; a glob's last segment is the caller's.
    let (store, path) = crate::storage::open_with(uri, &ctx.storage, &connection).map_err(|e| {
        DataError::InvalidUri {
            side,
            uri: uri.to_owned(),
            reason: detail(&e),
        }
    })?;
    let root = match url::Url::parse(uri) {
        Ok(url) => format!("{}://{}/", url.scheme(), url.host_str().unwrap_or_default()),
        Err(_) => uri.to_owned(),
    };
    Ok(Opened {
        store,
        path,
        root,
        timeout: ctx.timeout,
    })
}

/// Reads one object whole, under the byte cap and within the timeout.
pub(super) async fn fetch_one(
    ctx: &FetchContext,
    uri: &str,
    side: Side,
) -> Result<Payload, DataError> {
    let opened = open(ctx, uri, side)?;
    within(ctx, uri, side, async {
        let bytes = read_capped(&opened, &opened.path, uri, side, ctx.max_bytes).await?;
        Ok(Payload::Bytes {
            bytes,
            uri: uri.to_owned(),
        })
    })
    .await
}

/// `work`, or [`DataError::TimedOut`] after the context's timeout.
pub(super) async fn within<T>(
    ctx: &FetchContext,
    uri: &str,
    side: Side,
    work: impl Future<Output = Result<T, DataError>>,
) -> Result<T, DataError> {
    tokio::time::timeout(ctx.timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(DataError::TimedOut {
                side,
                uri: uri.to_owned(),
                after_seconds: ctx.timeout.as_secs(),
            })
        })
}

/// The bytes of the object at `path`, refused past `max_bytes` (the declared size first, then
/// what actually arrives).
pub(super) async fn read_capped(
    opened: &Opened,
    path: &Path,
    uri: &str,
    side: Side,
    max_bytes: u64,
) -> Result<Bytes, DataError> {
    let too_large = || DataError::TooLarge {
        side,
        uri: uri.to_owned(),
        limit: max_bytes,
    };
    let result = opened
        .store
        .get_opts(path, object_store::GetOptions::default())
        .await
        .map_err(|e| store_error(&e, uri, side, opened.timeout))?;
    if result.meta.size > max_bytes {
        return Err(too_large());
    }
    let capacity = usize::try_from(result.meta.size).unwrap_or(0);
    let mut body = BytesMut::with_capacity(capacity);
    let mut stream = result.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| store_error(&e, uri, side, opened.timeout))?;
        if (body.len() + chunk.len()) as u64 > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// An object listed under a prefix.
#[derive(Clone, Debug)]
pub(super) struct ListedObject {
    pub(super) path: Path,
    pub(super) size: u64,
    /// Milliseconds since the epoch.
    pub(super) modified_ms: i64,
}

/// The objects directly under `prefix` (no deeper), or the one object at `prefix` when it
/// names an object.
pub(super) async fn list(
    opened: &Opened,
    prefix: &Path,
    single: bool,
    uri: &str,
    side: Side,
) -> Result<Vec<ListedObject>, DataError> {
    let listed = |m: object_store::ObjectMeta| ListedObject {
        size: m.size,
        modified_ms: m.last_modified.timestamp_millis(),
        path: m.location,
    };
    if single {
        let meta = opened
            .store
            .head(prefix)
            .await
            .map_err(|e| store_error(&e, uri, side, opened.timeout))?;
        return Ok(vec![listed(meta)]);
    }
    let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
    let result = opened
        .store
        .list_with_delimiter(prefix)
        .await
        .map_err(|e| store_error(&e, uri, side, opened.timeout))?;
    Ok(result.objects.into_iter().map(listed).collect())
}

/// A store's error as a [`DataError`] about `uri`: a missing object or bucket is
/// `DataNotFound`, a refused signature or key `DataAccessDenied`, a refused address (the
/// policy's resolver) `DataSourceNotAllowed`, the client's timeout (`timeout`) `DataTimedOut`,
/// anything else (no connection, a server error) `DataUnreachable`. The detail is one short line: the S3 error code and message when the
/// server sent them, never its whole XML body.
pub(super) fn store_error(
    e: &object_store::Error,
    uri: &str,
    side: Side,
    timeout: Duration,
) -> DataError {
    let uri = uri.to_owned();
    if let Some(why) = super::policy::refusal_in(e) {
        return DataError::NotAllowed { side, uri, why };
    }
    if timed_out(e) {
        return DataError::TimedOut {
            side,
            uri,
            after_seconds: timeout.as_secs(),
        };
    }
    match e {
        object_store::Error::NotFound { .. } => DataError::NotFound {
            side,
            uri,
            detail: detail(e),
        },
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => DataError::AccessDenied {
            side,
            uri,
            detail: detail(e),
        },
        object_store::Error::InvalidPath { .. } => DataError::InvalidUri {
            side,
            uri,
            reason: detail(e),
        },
        _ => DataError::Unreachable {
            side,
            uri,
            detail: detail(e),
        },
    }
}

/// Whether the client gave up waiting (its own timeout, the same as the fetch's).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<object_store::client::HttpError>()
            .is_some_and(|h| h.kind() == object_store::client::HttpErrorKind::Timeout)
            || c.downcast_ref::<reqwest::Error>()
                .is_some_and(reqwest::Error::is_timeout)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// One short line about an error: the S3 `<Code>` and `<Message>` of an error body when there
/// is one, else the error and its causes; escaped and cut.
fn detail(e: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !chain.contains(&text) {
            chain.push_str(": ");
            chain.push_str(&text);
        }
        cause = c.source();
    }
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = chain.find(&open)? + open.len();
        let end = chain[start..].find(&format!("</{name}>"))? + start;
        Some(chain[start..end].to_owned())
    };
    let text = match (tag("Code"), tag("Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => match chain.find("<?xml") {
            Some(at) => chain[..at].trim_end_matches([' ', ':']).to_owned(),
            None => chain,
        },
    };
    excerpt(&one_line(&text), MAX_DETAIL_CHARS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const T: Duration = Duration::from_secs(120);

    fn generic(text: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: text.to_owned().into(),
        }
    }

    #[test]
    fn errors_are_named_short_and_escaped() {
        let denied = object_store::Error::PermissionDenied {
            path: "k".into(),
            source: "Client error with status 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error>".to_owned().into(),
        };
        let e = store_error(&denied, "s3://b/k.parquet", Side::Current, T);
        assert_eq!(e.reason(), crate::api::Reason::DataAccessDenied);
        assert_eq!(
            e.to_string(),
            "current data 's3://b/k.parquet' could not be read: access denied (SignatureDoesNotMatch: The request signature we calculated does not match; check the object-store credentials: spec.storage.secretRef, or the AWS_*, GOOGLE_* or AZURE_* variables of mlrollout drift)"
        );
        let missing = object_store::Error::NotFound {
            path: "k".into(),
            source: "<Error><Code>NoSuchKey</Code></Error>".to_owned().into(),
        };
        let e = store_error(&missing, "s3://b/k.parquet", Side::Reference, T);
        assert_eq!(e.reason(), crate::api::Reason::DataNotFound);
        assert!(e.to_string().ends_with("not found: NoSuchKey"), "{e}");
        let hostile = generic(&format!("boom\u{1b}[2J\n{}", "x".repeat(5000)));
        let e = store_error(&hostile, "s3://b/k", Side::Current, T);
        assert_eq!(e.reason(), crate::api::Reason::DataUnreachable);
        let text = e.to_string();
        assert!(!text.chars().any(char::is_control), "{text}");
        assert!(text.len() < 400, "{}", text.len());
    }
}
