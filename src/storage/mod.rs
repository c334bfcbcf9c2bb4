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

    /// Settings for the operator from the keys of a `spec.storage.secretRef` Secret (none:
    /// no Secret), the endpoint and the region of the spec. Only credential keys
    /// ([`SECRET_KEYS`], any case) are taken: where the store is and how the operator connects
    /// (endpoints, proxies, metadata addresses, key files on its disk) are never a Secret's to
    /// say. Without a credential the store is read anonymously, never with the identity of
    /// the operator's node.
    pub fn from_secret<'a>(
        secret: impl IntoIterator<Item = (&'a str, String)>,
        endpoint: Option<&str>,
        region: Option<&str>,
    ) -> Self {
        let taken: Vec<(&str, String)> = secret
            .into_iter()
            .filter(|(key, _)| SECRET_KEYS.contains(&key.to_ascii_lowercase().as_str()))
            .collect();
        let anonymous = taken
            .iter()
            .all(|(key, _)| key.to_ascii_lowercase().ends_with("region"));
        let mut options = Self::from_parts(taken, endpoint, region);
        if anonymous {
            options.set("skip_signature", "true");
        }
        options
    }

    /// The settings as pairs.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Keys of a storage Secret that are used (any case): credentials of S3, GCS and Azure, and
/// the region.
pub const SECRET_KEYS: [&str; 12] = [
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_region",
    "aws_default_region",
    "google_service_account_key",
    "azure_storage_account_name",
    "azure_storage_account_key",
    "azure_storage_sas_token",
    "azure_client_id",
    "azure_client_secret",
    "azure_tenant_id",
];

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

/// How the client of a cloud store connects: a whole-request timeout, the retry policy and
/// (for the operator's data-source policy) a resolver that drops refused addresses.
#[derive(Clone, Debug)]
pub struct Connection {
    pub timeout: std::time::Duration,
    pub retry: object_store::RetryConfig,
    pub resolver: Option<Arc<dyn object_store::client::DnsResolver>>,
}

/// [`open`] with the client settings of `connection` (local paths ignore them).
pub fn open_with(
    uri: &str,
    options: &StoreOptions,
    connection: &Connection,
) -> Result<(Arc<dyn ObjectStore>, Path), StorageError> {
    use object_store::ObjectStoreScheme;
    let url = to_url(uri)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = |source: object_store::Error| StorageError::Config {
        uri: uri.to_owned(),
        source,
    };
    let (scheme, path) = ObjectStoreScheme::parse(&url).map_err(|e| config(e.into()))?;
    let mut client = object_store::ClientOptions::new()
        .with_timeout(connection.timeout)
        .with_connect_timeout(connection.timeout.min(std::time::Duration::from_secs(10)));
    if let Some(resolver) = &connection.resolver {
        client = client.with_dns_resolver(resolver.clone());
    }
    // Unknown keys are skipped, as `object_store::parse_url_opts` does.
    macro_rules! build {
        ($builder:ty) => {{
            let builder = options.pairs().fold(
                <$builder>::new()
                    .with_client_options(client)
                    .with_retry(connection.retry.clone())
                    .with_url(url.to_string()),
                |builder, (key, value)| match key.parse() {
                    Ok(key) => builder.with_config(key, value),
                    Err(_) => builder,
                },
            );
            Arc::new(builder.build().map_err(config)?) as Arc<dyn ObjectStore>
        }};
    }
    let store = match scheme {
        ObjectStoreScheme::AmazonS3 => build!(object_store::aws::AmazonS3Builder),
        ObjectStoreScheme::GoogleCloudStorage => {
            build!(object_store::gcp::GoogleCloudStorageBuilder)
        }
        ObjectStoreScheme::MicrosoftAzure => build!(object_store::azure::MicrosoftAzureBuilder),
        _ => return open(uri, options),
    };
    Ok((store, path))
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
    fn a_secret_gives_credentials_only_and_none_means_anonymous() {
        let options = StoreOptions::from_secret(
            [
                ("AWS_ACCESS_KEY_ID", "a".to_owned()),
                ("aws_secret_access_key", "b".to_owned()),
                ("AWS_ENDPOINT", "http://169.254.169.254".to_owned()),
                ("aws_metadata_endpoint", "http://10.0.0.1".to_owned()),
                ("proxy_url", "http://attacker:3128".to_owned()),
                ("google_application_credentials", "/etc/shadow".to_owned()),
            ],
            Some("https://minio.data:9000"),
            Some("eu-west-1"),
        );
        let pairs: Vec<(&str, &str)> = options.pairs().collect();
        assert!(pairs.contains(&("aws_access_key_id", "a")));
        assert!(pairs.contains(&("aws_secret_access_key", "b")));
        assert!(pairs.contains(&("aws_endpoint", "https://minio.data:9000")));
        assert!(pairs.contains(&("aws_region", "eu-west-1")));
        for (key, value) in &pairs {
            assert!(
                ![
                    "aws_metadata_endpoint",
                    "proxy_url",
                    "google_application_credentials",
                    "skip_signature"
                ]
                .contains(key),
                "{key}"
            );
            assert!(
                !value.contains("169.254") && !value.contains("attacker"),
                "{key}"
            );
        }
        let anonymous = StoreOptions::from_secret([("AWS_REGION", "x".to_owned())], None, None);
        assert!(anonymous.pairs().any(|p| p == ("skip_signature", "true")));
    }

    #[tokio::test]
    async fn open_with_bounds_the_client() {
        let connection = Connection {
            timeout: std::time::Duration::from_secs(2),
            retry: object_store::RetryConfig {
                max_retries: 0,
                ..object_store::RetryConfig::default()
            },
            resolver: None,
        };
        // Nothing listens there: one quick failure, no retries for minutes.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = StoreOptions::from_parts(
            [
                ("AWS_ACCESS_KEY_ID", "a".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", "b".to_owned()),
            ],
            Some(&format!("http://127.0.0.1:{port}")),
            Some("us-east-1"),
        );
        let (store, path) = open_with("s3://bucket/x.csv", &options, &connection).unwrap();
        assert_eq!(path.as_ref(), "x.csv");
        let started = std::time::Instant::now();
        assert!(
            object_store::ObjectStoreExt::head(&store, &path)
                .await
                .is_err()
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let dir = tempfile::tempdir().unwrap();
        assert!(open_with(dir.path().to_str().unwrap(), &options, &connection).is_ok());
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
