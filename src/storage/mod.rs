//! Object stores behind `s3://`, `gs://`, `az://` and local URIs, through the `object_store`
//! crate, and the layout of captured traffic (written by the proxy, read by the drift check).

pub mod layout;

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path;
use url::Url;

/// Why an object-store URI cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URI does not parse or names no supported store.
    #[error("object-store URI {uri:?} is not valid: {reason}")]
    InvalidUri { uri: String, reason: String },
    /// The store rejected the settings (unknown key, bad endpoint, missing credentials).
    #[error("object store for {uri:?} cannot be configured: {source}")]
    Config {
        uri: String,
        #[source]
        source: object_store::Error,
    },
}

/// Settings for one store: `(key, value)` pairs in `object_store`'s vocabulary
/// (`aws_access_key_id`, `aws_endpoint`, `google_service_account_key`, ...). Values are
/// secrets: never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StoreOptions(Vec<(String, String)>);

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.0.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("StoreOptions").field("keys", &keys).finish()
    }
}

impl StoreOptions {
    /// Adds one setting; the key is lower-cased (Secrets usually hold `AWS_ACCESS_KEY_ID`).
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        let key = key.to_ascii_lowercase();
        self.0.retain(|(k, _)| *k != key);
        self.0.push((key, value.into()));
    }

    /// Settings from a Secret's data, the endpoint and the region of a `StorageSpec`.
    pub fn from_parts<'a>(
        secret: impl IntoIterator<Item = (&'a str, String)>,
        endpoint: Option<&str>,
        region: Option<&str>,
    ) -> Self {
        let mut options = Self::default();
        for (key, value) in secret {
            options.set(key, value);
        }
        if let Some(endpoint) = endpoint {
            options.set("aws_endpoint", endpoint);
            // S3-compatible servers are addressed by path, and may speak plain HTTP.
            options.set("aws_virtual_hosted_style_request", "false");
            if endpoint.starts_with("http://") {
                options.set("aws_allow_http", "true");
            }
        }
        if let Some(region) = region {
            options.set("aws_region", region);
        }
        options
    }

    /// The settings as pairs.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Whether `uri` names an object store (rather than a plain path or an HTTP/MLflow source).
pub fn is_object_store_uri(uri: &str) -> bool {
    ["s3://", "s3a://", "gs://", "az://", "abfs://", "abfss://"]
        .iter()
        .any(|scheme| uri.starts_with(scheme))
}

/// Opens the store behind `uri` (`s3://bucket/prefix`, `gs://…`, `az://…`, `file:///path`, or
/// a plain absolute path) and returns it with the path inside it.
pub fn open(
    uri: &str,
    options: &StoreOptions,
) -> Result<(Arc<dyn ObjectStore>, Path), StorageError> {
    let url = to_url(uri)?;
    // The cloud stores build a reqwest client, which needs the process's TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (store, path) = object_store::parse_url_opts(&url, options.pairs()).map_err(|source| {
        StorageError::Config {
            uri: uri.to_owned(),
            source,
        }
    })?;
    Ok((Arc::from(store), path))
}

fn to_url(uri: &str) -> Result<Url, StorageError> {
    let invalid = |reason: String| StorageError::InvalidUri {
        uri: uri.to_owned(),
        reason,
    };
    if uri.starts_with('/') {
        return Url::from_directory_path(uri)
            .or_else(|()| Url::from_file_path(uri))
            .map_err(|()| invalid("not an absolute path".into()));
    }
    let url = Url::parse(uri).map_err(|e| invalid(e.to_string()))?;
    match url.scheme() {
        "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" | "file" => Ok(url),
        other => Err(invalid(format!(
            "scheme {other:?} is not an object store (s3, gs, az, file)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_never_print_values() {
        let options = StoreOptions::from_parts(
            [("AWS_SECRET_ACCESS_KEY", "hunter2".to_owned())],
            Some("http://127.0.0.1:8333"),
            None,
        );
        let printed = format!("{options:?}");
        assert!(printed.contains("aws_secret_access_key"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            options
                .pairs()
                .any(|(k, v)| k == "aws_allow_http" && v == "true")
        );
    }

    #[test]
    fn opens_local_and_s3_and_refuses_other_schemes() {
        let dir = tempfile::tempdir().unwrap();
        let (_, path) = open(dir.path().to_str().unwrap(), &StoreOptions::default()).unwrap();
        assert!(!path.as_ref().is_empty());
        let options = StoreOptions::from_parts(
            [
                ("AWS_ACCESS_KEY_ID", "a".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", "b".to_owned()),
            ],
            Some("http://127.0.0.1:1"),
            Some("us-east-1"),
        );
        let (_, path) = open("s3://bucket/captures/ns", &options).unwrap();
        assert_eq!(path.as_ref(), "captures/ns");
        assert!(matches!(
            open("http://example.com/x", &options),
            Err(StorageError::InvalidUri { .. })
        ));
        assert!(is_object_store_uri("gs://b/p") && !is_object_store_uri("/data/x.parquet"));
    }
}
