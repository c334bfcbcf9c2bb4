//! A real S3-compatible server for the object-storage tests: s3s-fs (crates.io, built by
//! `tests/harness/s3server/build.sh`, or `MLROLLOUT_S3_SERVER_BIN` from
//! `tests/harness/install.sh`), on a free loopback port, with one access key and secret
//! (SigV4 is checked on every request). Buckets are made through the S3 API
//! (`CreateBucket`, signed here), objects are written through `object_store` — both over
//! HTTP to the server. Stopped on drop (with its data directory).
//!
//! ```ignore
//! let s3 = S3Server::start();
//! s3.create_bucket("data").await;
//! s3.put("s3://data/ref.parquet", bytes).await;
//! let options = s3.options(); // credentials, endpoint, region for storage::open
//! ```
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mlrollout::storage::{self, StoreOptions};
use object_store::ObjectStoreExt;

use super::http;
use super::process::{GuardedChild, scratch_dir};

/// The region the tests sign with (s3s-fs accepts any).
pub const REGION: &str = "us-east-1";

/// A running s3s-fs; stopped (and its directory removed) on drop.
pub struct S3Server {
    port: u16,
    dir: PathBuf,
    pub access_key: String,
    pub secret_key: String,
    process: GuardedChild,
}

/// The server binary: `MLROLLOUT_S3_SERVER_BIN`, else what the build script prints (it builds
/// when the cache is empty).
pub fn server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MLROLLOUT_S3_SERVER_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/harness/s3server/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

impl S3Server {
    /// Starts a server with a fresh data directory and a random key pair.
    pub fn start() -> S3Server {
        let bin = server_bin();
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(&bin) {
                Ok(server) => return server,
                Err(e) => last = e,
            }
        }
        panic!("{last}");
    }

    fn try_start(bin: &Path) -> Result<S3Server, String> {
        let dir = scratch_dir("s3");
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        let port = http::free_port();
        let nonce = dir
            .file_name()
            .map(|n| n.to_string_lossy().replace(['-', '.'], ""))
            .unwrap_or_default();
        let access_key = format!("AKTEST{}", &nonce[nonce.len().saturating_sub(12)..]);
        let secret_key = format!("secret-{nonce}");
        let mut cmd = Command::new(bin);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &access_key, "--secret-key", &secret_key])
            .arg(&data)
            .env("RUST_LOG", "s3s=warn");
        let log = dir.join("server.log");
        let mut process = GuardedChild::spawn(&cmd, &log, Some(&dir))
            .map_err(|e| format!("cannot spawn {}: {e}", bin.display()))?;
        let started = Instant::now();
        loop {
            if let Some(status) = process.try_exited() {
                return Err(format!(
                    "s3s-fs exited during start-up ({status}):\n{}",
                    process.log_tail(30)
                ));
            }
            // Any HTTP answer (403 without a signature) means it listens.
            if http::get(&format!("127.0.0.1:{port}"), "/", Duration::from_secs(2)).is_ok() {
                return Ok(S3Server {
                    port,
                    dir,
                    access_key,
                    secret_key,
                    process,
                });
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!(
                    "s3s-fs on 127.0.0.1:{port} did not answer in 30 s:\n{}",
                    process.log_tail(30)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log_tail(&self, max_lines: usize) -> String {
        self.process.log_tail(max_lines)
    }

    /// The data of a Secret holding this server's key pair, as `spec.storage.secretRef`
    /// names it.
    pub fn secret_data(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
        ]
    }

    /// Credentials, endpoint and region for `mlrollout::storage::open`.
    pub fn options(&self) -> StoreOptions {
        StoreOptions::from_parts(self.secret_data(), Some(&self.endpoint()), Some(REGION))
    }

    /// The environment `mlrollout drift` reads the credentials from.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = self.secret_data();
        env.push(("AWS_REGION", REGION.to_owned()));
        env
    }

    /// `CreateBucket` (`PUT /<bucket>`), signed with SigV4 like any client's.
    pub async fn create_bucket(&self, bucket: &str) {
        let credential = object_store::aws::AwsCredential {
            key_id: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            token: None,
        };
        let url = format!("{}/{bucket}", self.endpoint());
        let mut request = ::http::Request::builder()
            .method("PUT")
            .uri(&url)
            .header("host", format!("127.0.0.1:{}", self.port))
            .body(object_store::client::HttpRequestBody::empty())
            .unwrap();
        object_store::aws::AwsAuthorizer::new(&credential, "s3", REGION)
            .try_authorize(&mut request, None)
            .unwrap();
        let client = reqwest::Client::new();
        let mut put = client.put(&url);
        for (name, value) in request.headers() {
            put = put.header(name.as_str(), value.as_bytes());
        }
        let response = put.send().await.unwrap();
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "CreateBucket {bucket}: {status} {body}"
        );
    }

    /// Writes `bytes` at an `s3://bucket/key` URI through the server.
    pub async fn put(&self, uri: &str, bytes: impl Into<bytes::Bytes>) {
        let (store, path) = storage::open(uri, &self.options()).unwrap();
        store
            .put(&path, object_store::PutPayload::from(bytes.into()))
            .await
            .unwrap_or_else(|e| panic!("PUT {uri}: {e}\n{}", self.log_tail(20)));
    }

    /// The keys under `s3://bucket/prefix` (as the server lists them).
    pub async fn list(&self, uri: &str) -> Vec<String> {
        use futures::TryStreamExt;
        let (store, path) = storage::open(uri, &self.options()).unwrap();
        let listed: Vec<object_store::ObjectMeta> =
            store.list(Some(&path)).try_collect().await.unwrap();
        listed.into_iter().map(|m| m.location.to_string()).collect()
    }
}
