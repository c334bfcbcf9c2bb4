//! Which data sources may be read: the trust boundary between the author of a ModelDeployment
//! (who writes the data URIs) and the operator's pod (which reads them with its own network
//! position and file system).
//!
//! In the cluster ([`DataSourcePolicy::cluster`]) MLflow artifacts of the resource's tracking
//! server are allowed; object stores (`s3://`, `gs://`, `az://`) in every bucket or only the
//! listed ones; `http(s)` only for listed hosts; local files only under a configured data
//! directory; loopback, link-local and cloud-metadata addresses never — checked on the URL, on
//! every redirect, and on every address a host name resolves to (so DNS cannot smuggle one in),
//! and likewise on the endpoint of an S3-compatible store.
//! On a workstation (`mlrollout drift`) [`DataSourcePolicy::unrestricted`] reads anything.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::source::DataSource;

/// Where local files (plain paths, `file://`) may be read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalFiles {
    Anywhere,
    /// Only under this directory (symbolic links resolved first).
    Under(PathBuf),
    Never,
}

/// What data sources a drift check may read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataSourcePolicy {
    pub local: LocalFiles,
    /// `http(s)` hosts allowed: an exact name or IP, or `*.example.com` for its subdomains.
    /// `None`: any host.
    pub http_hosts: Option<Vec<String>>,
    /// MLflow artifact URIs (`runs:/`, `models:/`, `mlflow-artifacts:/`) through the
    /// resource's tracking server.
    pub mlflow: bool,
    /// Object-store buckets (S3 buckets, GCS buckets, Azure containers) allowed: a name, or
    /// `scheme://name` for one kind of store only. `None`: any bucket.
    pub buckets: Option<Vec<String>>,
    /// Refuse loopback, link-local, unspecified and metadata addresses.
    pub block_internal: bool,
    /// Internal addresses allowed all the same (a test's own loopback server; no flag sets it).
    pub exempt: Vec<IpAddr>,
}

impl Default for DataSourcePolicy {
    fn default() -> Self {
        Self::unrestricted()
    }
}

/// Why a source is refused (the message of `DataSourceNotAllowed`).
pub type Refusal = String;

impl DataSourcePolicy {
    /// Everything (a person's own workstation: `mlrollout drift`).
    pub fn unrestricted() -> Self {
        Self {
            local: LocalFiles::Anywhere,
            http_hosts: None,
            mlflow: true,
            buckets: None,
            block_internal: false,
            exempt: Vec::new(),
        }
    }

    /// The operator's default: MLflow artifacts, the listed `http(s)` hosts, local files under
    /// `data_dir` only, never an internal address.
    pub fn cluster(http_hosts: Vec<String>, data_dir: Option<PathBuf>) -> Self {
        Self {
            local: data_dir.map_or(LocalFiles::Never, LocalFiles::Under),
            http_hosts: Some(
                http_hosts
                    .into_iter()
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect(),
            ),
            mlflow: true,
            buckets: None,
            block_internal: true,
            exempt: Vec::new(),
        }
    }

    /// Object stores only in these buckets (`--data-allow-bucket`); empty: any bucket.
    pub fn with_buckets(mut self, buckets: Vec<String>) -> Self {
        let buckets: Vec<String> = buckets
            .into_iter()
            .map(|b| b.trim().trim_end_matches('/').to_owned())
            .filter(|b| !b.is_empty())
            .collect();
        self.buckets = (!buckets.is_empty()).then_some(buckets);
        self
    }

    /// Whether `source` may be read; nothing is fetched before this says yes.
    pub fn check(&self, source: &DataSource) -> Result<(), Refusal> {
        match source {
            DataSource::File(path) => self.check_file(path),
            DataSource::Http(url) => match reqwest::Url::parse(url) {
                Ok(url) => self.check_url(&url),
                Err(e) => Err(format!("not a valid URL: {e}")),
            },
            DataSource::Object(uri) => self.check_bucket(uri),
            DataSource::Mlflow(_) if self.mlflow => Ok(()),
            DataSource::Mlflow(_) => {
                Err("MLflow artifacts are not allowed by the operator's data-source policy".into())
            }
        }
    }

    fn check_file(&self, path: &Path) -> Result<(), Refusal> {
        match &self.local {
            LocalFiles::Anywhere => Ok(()),
            LocalFiles::Never => Err(
                "local files are not read in the cluster (the operator's --data-dir is not set); use an MLflow artifact or an allowed http(s) host".into(),
            ),
            LocalFiles::Under(root) => {
                if within(root, path) {
                    Ok(())
                } else {
                    Err(format!(
                        "local files are read only under {} (the operator's --data-dir)",
                        root.display()
                    ))
                }
            }
        }
    }

    /// The bucket of an object-store URI against [`DataSourcePolicy::buckets`].
    fn check_bucket(&self, uri: &str) -> Result<(), Refusal> {
        let Some(allowed) = &self.buckets else {
            return Ok(());
        };
        let url = url::Url::parse(uri).map_err(|e| format!("not a valid URI: {e}"))?;
        let (scheme, bucket) = (url.scheme(), url.host_str().unwrap_or_default());
        let listed = allowed.iter().any(|a| match a.split_once("://") {
            Some((s, b)) => s.eq_ignore_ascii_case(scheme) && b == bucket,
            None => a == bucket,
        });
        if listed {
            Ok(())
        } else {
            Err(format!(
                "bucket {bucket} is not in the operator's allowed data buckets (--data-allow-bucket)"
            ))
        }
    }

    /// The endpoint of an S3-compatible store (`spec.storage.endpoint`): `http(s)`, and never
    /// an internal address given literally (names are checked as they resolve, by
    /// [`StoreResolver`]).
    pub fn check_store(&self, options: &crate::storage::StoreOptions) -> Result<(), Refusal> {
        if !self.block_internal {
            return Ok(());
        }
        for (key, endpoint) in options.pairs() {
            if !matches!(
                key,
                "aws_endpoint" | "aws_endpoint_url" | "endpoint" | "endpoint_url"
            ) {
                continue;
            }
            let url = reqwest::Url::parse(endpoint)
                .map_err(|e| format!("the storage endpoint is not a valid URL: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!(
                    "the storage endpoint's scheme {} is not http or https",
                    url.scheme()
                ));
            }
            let host = url.host_str().unwrap_or_default();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = host.parse::<IpAddr>() {
                self.check_address(ip)
                    .map_err(|why| format!("the storage endpoint's {why}"))?;
            }
        }
        Ok(())
    }

    /// The scheme, the host list and (for an IP literal) the address of `url`: for the first
    /// request and for every redirect.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Refusal> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "scheme {} is not allowed for http data",
                url.scheme()
            ));
        }
        let Some(host) = url.host_str() else {
            return Err("no host".into());
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.check_address(ip)?;
        }
        match &self.http_hosts {
            None => Ok(()),
            Some(allowed) if allowed.iter().any(|a| host_matches(a, &host)) => Ok(()),
            Some(_) => Err(format!(
                "host {host} is not in the operator's allowed data hosts (--data-allow-host)"
            )),
        }
    }

    /// Whether the operator may connect to `ip`.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.block_internal && internal(ip) && !self.exempt.contains(&ip) {
            Err(format!(
                "address {ip} is loopback, link-local or a metadata endpoint, which data is never read from"
            ))
        } else {
            Ok(())
        }
    }
}

fn host_matches(allowed: &str, host: &str) -> bool {
    match allowed.strip_prefix("*.") {
        Some(suffix) => host.len() > suffix.len() && host.ends_with(&format!(".{suffix}")),
        None => allowed == host,
    }
}

/// Loopback, link-local (cloud metadata lives there: 169.254.169.254), unspecified, and the
/// IPv6 metadata address some clouds use; IPv4-mapped IPv6 addresses are judged as IPv4.
pub fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => internal_v4(v4),
            None => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || (v6.segments()[0] & 0xffc0) == 0xfe80
                    || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
            }
        },
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    ip.is_loopback() || ip.is_link_local() || ip.is_unspecified() || ip.is_broadcast()
}

/// Whether `path` lies under `root` once symbolic links are resolved. A path that does not
/// exist (yet) is judged by its components: absolute, no `..`, under the root.
fn within(root: &Path, path: &Path) -> bool {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    match path.canonicalize() {
        Ok(real) => real.starts_with(&root),
        Err(_) => {
            path.is_absolute()
                && !path.components().any(|c| matches!(c, Component::ParentDir))
                && path.starts_with(&root)
        }
    }
}

/// A refusal carried through the HTTP client's errors (a redirect or a resolution it stopped),
/// so that the fetch reports `DataSourceNotAllowed` rather than an unreachable server.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct PolicyRefusal(pub String);

/// The refusal inside `error`'s source chain, if the policy stopped the request.
pub fn refusal_in(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(refusal) = e.downcast_ref::<PolicyRefusal>() {
            return Some(refusal.0.clone());
        }
        current = e.source();
    }
    None
}

/// The redirect rule of the HTTP client: at most 5 hops, each one allowed by `policy`.
pub fn redirect_policy(policy: Arc<DataSourcePolicy>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            return attempt.error(PolicyRefusal("more than 5 redirects".into()));
        }
        match policy.check_url(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(why) => {
                let why = format!("redirected to {}: {why}", attempt.url());
                attempt.error(PolicyRefusal(why))
            }
        }
    })
}

/// A DNS resolver for the HTTP client that drops refused addresses: a name that resolves only
/// to internal addresses cannot be connected to, whatever the URL or a redirect said.
#[derive(Clone, Debug)]
pub struct FilteringResolver {
    pub policy: Arc<DataSourcePolicy>,
}

impl reqwest::dns::Resolve for FilteringResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| policy.check_address(a.ip()).is_ok())
                .collect();
            if allowed.is_empty() && !found.is_empty() {
                let error: Box<dyn std::error::Error + Send + Sync> = Box::new(PolicyRefusal(
                    format!(
                        "{host} resolves only to loopback, link-local or metadata addresses, which data is never read from"
                    ),
                ));
                return Err(error);
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// The object-store client's resolver under the policy: a name that resolves only to refused
/// addresses cannot be connected to (the endpoint of an S3-compatible store named by a
/// resource's author).
#[derive(Clone, Debug)]
pub struct StoreResolver {
    pub policy: Arc<DataSourcePolicy>,
}

impl object_store::client::DnsResolver for StoreResolver {
    fn resolve(&self, host: &str) -> object_store::client::DnsFuture {
        let policy = self.policy.clone();
        let host = host.to_owned();
        Box::pin(async move {
            let found: Vec<IpAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect();
            let allowed: Vec<IpAddr> = found
                .iter()
                .copied()
                .filter(|ip| policy.check_address(*ip).is_ok())
                .collect();
            if allowed.is_empty() && !found.is_empty() {
                let error: object_store::client::DnsError = Box::new(PolicyRefusal(format!(
                    "{host} resolves only to loopback, link-local or metadata addresses, which data is never read from"
                )));
                return Err(error);
            }
            Ok(allowed)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::drift::data::Side;

    fn parse(uri: &str) -> DataSource {
        DataSource::parse(uri, Side::Current).unwrap()
    }

    #[test]
    fn the_cluster_default_reads_mlflow_and_listed_hosts_only() {
        let policy = DataSourcePolicy::cluster(
            vec!["data.example.com".into(), "*.corp.example".into()],
            None,
        );
        assert!(policy.check(&parse("runs:/abc/data/current.csv")).is_ok());
        assert!(
            policy
                .check(&parse("https://data.example.com/x.csv"))
                .is_ok()
        );
        assert!(
            policy
                .check(&parse("https://lake.corp.example/x.csv"))
                .is_ok()
        );
        for refused in [
            "https://evil.example/x.csv",
            "https://corp.example/x.csv",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/latest/",
            "http://127.0.0.1:8080/x.csv",
            "http://[::1]/x.csv",
            "http://[::ffff:169.254.169.254]/x",
            "/etc/passwd",
            "file:///var/run/secrets/kubernetes.io/serviceaccount/token",
            "data/current.csv",
        ] {
            assert!(policy.check(&parse(refused)).is_err(), "{refused}");
        }
    }

    #[test]
    fn object_stores_in_allowed_buckets_behind_allowed_endpoints() {
        let open = DataSourcePolicy::cluster(vec![], None);
        assert!(open.check(&parse("s3://any-bucket/x/")).is_ok());
        let policy = open.with_buckets(vec!["captures".into(), "gs://ref-data/".into()]);
        assert!(policy.check(&parse("s3://captures/ns/m/stable/")).is_ok());
        assert!(policy.check(&parse("az://captures/x.parquet")).is_ok());
        assert!(policy.check(&parse("gs://ref-data/train.parquet")).is_ok());
        let refusal = policy
            .check(&parse("s3://ref-data/train.parquet"))
            .unwrap_err();
        assert!(refusal.contains("--data-allow-bucket"), "{refusal}");
        assert!(policy.check(&parse("s3://other/x.csv")).is_err());
        let endpoint = |e: &str| crate::storage::StoreOptions::from_parts([], Some(e), None);
        assert!(
            policy
                .check_store(&endpoint("https://minio.data.svc:9000"))
                .is_ok()
        );
        for refused in [
            "http://127.0.0.1:9000",
            "http://169.254.169.254",
            "http://[::1]:9000",
            "ftp://minio:21",
        ] {
            assert!(policy.check_store(&endpoint(refused)).is_err(), "{refused}");
        }
        let mut exempt = policy.clone();
        exempt.exempt = vec!["127.0.0.1".parse().unwrap()];
        assert!(
            exempt
                .check_store(&endpoint("http://127.0.0.1:9000"))
                .is_ok()
        );
        assert!(
            DataSourcePolicy::unrestricted()
                .check_store(&endpoint("http://127.0.0.1:9000"))
                .is_ok()
        );
    }

    #[tokio::test]
    async fn the_store_resolver_drops_internal_addresses() {
        use object_store::client::DnsResolver;
        let resolver = StoreResolver {
            policy: Arc::new(DataSourcePolicy::cluster(vec![], None)),
        };
        let e = resolver.resolve("localhost").await.unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
        let mut policy = DataSourcePolicy::cluster(vec![], None);
        policy.exempt = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let resolver = StoreResolver {
            policy: Arc::new(policy),
        };
        assert!(!resolver.resolve("localhost").await.unwrap().is_empty());
    }

    #[test]
    fn internal_addresses_are_refused_even_when_their_host_is_listed() {
        let policy =
            DataSourcePolicy::cluster(vec!["169.254.169.254".into(), "127.0.0.1".into()], None);
        let refusal = policy
            .check(&parse("http://169.254.169.254/latest"))
            .unwrap_err();
        assert!(refusal.contains("metadata"), "{refusal}");
        assert!(policy.check(&parse("http://127.0.0.1/x.csv")).is_err());
        assert!(internal("0.0.0.0".parse().unwrap()));
        assert!(internal("fe80::1".parse().unwrap()));
        assert!(
            !internal("10.0.0.7".parse().unwrap()),
            "cluster addresses are normal"
        );
    }

    #[test]
    fn local_files_only_under_the_data_dir_with_links_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("cur.csv"), "a\n1\n").unwrap();
        let outside = dir.path().join("secret.txt");
        std::fs::write(&outside, "x").unwrap();
        std::os::unix::fs::symlink(&outside, data.join("link.csv")).unwrap();
        let policy = DataSourcePolicy::cluster(vec![], Some(data.clone()));
        let at = |p: &Path| DataSource::File(p.to_path_buf());
        assert!(policy.check(&at(&data.join("cur.csv"))).is_ok());
        assert!(
            policy.check(&at(&data.join("later.csv"))).is_ok(),
            "not there yet"
        );
        assert!(
            policy.check(&at(&data.join("link.csv"))).is_err(),
            "a link out"
        );
        assert!(policy.check(&at(&data.join("../secret.txt"))).is_err());
        assert!(policy.check(&at(&outside)).is_err());
        assert!(
            DataSourcePolicy::unrestricted()
                .check(&at(&outside))
                .is_ok()
        );
    }
}
