//! Artifact downloads through MLflow's artifact proxy (`mlflow server --serve-artifacts`).

use reqwest::Method;
use serde::Deserialize;

use super::client::{ARTIFACTS_PREFIX, MlflowClient, decode};
use super::error::MlflowError;
use super::types::ArtifactFile;
use super::uri::ModelUri;

const PROXY_SCHEME: &str = "mlflow-artifacts:";
const RUNS_SCHEME: &str = "runs:/";
const MODELS_SCHEME: &str = "models:/";

/// The path under the artifact proxy of an `mlflow-artifacts:` URI:
/// `mlflow-artifacts:/1/abc/artifacts/x.json` → `1/abc/artifacts/x.json`.
/// The host-qualified form `mlflow-artifacts://host:port/1/...` is accepted (the host is
/// ignored: requests always go to the client's server).
pub fn artifact_proxy_path(uri: &str) -> Result<String, MlflowError> {
    let rest = uri.strip_prefix(PROXY_SCHEME).ok_or_else(|| {
        MlflowError::invalid_uri(
            uri,
            "only mlflow-artifacts:/ URIs can be downloaded through the MLflow server \
             (start it with --serve-artifacts)",
        )
    })?;
    let rest = match rest.strip_prefix("//") {
        Some(with_authority) => match with_authority.find('/') {
            Some(i) => &with_authority[i..],
            None => "",
        },
        None => rest,
    };
    clean_path(uri, rest)
}

/// Split `runs:/<run_id>/<path>` into the run id and the (possibly empty) relative path.
pub fn parse_runs_uri(uri: &str) -> Result<(String, String), MlflowError> {
    let rest = uri
        .strip_prefix(RUNS_SCHEME)
        .ok_or_else(|| MlflowError::invalid_uri(uri, "expected runs:/<run_id>/<path>"))?;
    let rest = rest.trim_start_matches('/');
    let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
    if run_id.is_empty()
        || !run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(MlflowError::invalid_uri(uri, "missing or invalid run id"));
    }
    Ok((run_id.to_owned(), clean_path(uri, path)?))
}

/// Split `models:/<name>/<version>[/<path>]` or `models:/<name>@<alias>[/<path>]` into the
/// model URI and the (possibly empty) path inside the model's artifacts.
pub fn parse_model_artifact_uri(uri: &str) -> Result<(ModelUri, String), MlflowError> {
    let rest = uri.strip_prefix(MODELS_SCHEME).ok_or_else(|| {
        MlflowError::invalid_uri(uri, "expected models:/<name>/<version>[/<path>]")
    })?;
    let (first, after) = rest.split_once('/').unwrap_or((rest, ""));
    let (model, path) = if first.contains('@') {
        (format!("{MODELS_SCHEME}{first}"), after)
    } else {
        let (version, path) = after.split_once('/').unwrap_or((after, ""));
        (format!("{MODELS_SCHEME}{first}/{version}"), path)
    };
    let model = ModelUri::parse(&model).map_err(|e| match e {
        MlflowError::InvalidUri { reason, .. } => MlflowError::invalid_uri(uri, reason),
        other => other,
    })?;
    Ok((model, clean_path(uri, path)?))
}

/// Join a base artifact URI and a relative path with exactly one '/'.
pub fn join_artifact_path(base: &str, path: &str) -> String {
    let path = path.trim_start_matches('/');
    if path.is_empty() {
        base.to_owned()
    } else {
        format!("{}/{}", base.trim_end_matches('/'), path)
    }
}

/// Normalise a relative artifact path: no empty, `.` or `..` segments, no leading/trailing '/'.
fn clean_path(uri: &str, path: &str) -> Result<String, MlflowError> {
    let mut parts = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                return Err(MlflowError::invalid_uri(
                    uri,
                    "'..' is not allowed in artifact paths",
                ));
            }
            s => parts.push(s),
        }
    }
    Ok(parts.join("/"))
}

#[derive(Deserialize)]
struct DownloadUriResponse {
    #[serde(default)]
    artifact_uri: String,
}

#[derive(Deserialize)]
struct ListResponse {
    #[serde(default)]
    files: Vec<ArtifactFile>,
}

impl MlflowClient {
    /// `GET model-versions/get-download-uri`: where a version's files are (in MLflow 3.x the
    /// logged model's directory, `mlflow-artifacts:/<exp>/models/m-<id>/artifacts`).
    pub async fn get_model_version_download_uri(
        &self,
        name: &str,
        version: u64,
    ) -> Result<String, MlflowError> {
        let v = version.to_string();
        let r: DownloadUriResponse = self
            .get_json(
                "model-versions/get-download-uri",
                &[("name", name), ("version", &v)],
                &format!("model version {name}/{version}"),
            )
            .await?;
        Ok(r.artifact_uri)
    }

    /// Resolve an artifact URI to its path under the artifact proxy:
    /// - `mlflow-artifacts:/<path>` directly;
    /// - `runs:/<run_id>/<path>` through the run's `artifact_uri`;
    /// - `models:/<name>/<version>/<path>` and `models:/<name>@<alias>/<path>` through the
    ///   version's download URI.
    ///
    /// The resolved location must be served by the proxy (an `mlflow-artifacts:` URI).
    pub async fn resolve_artifact_path(&self, uri: &str) -> Result<String, MlflowError> {
        if uri.starts_with(MODELS_SCHEME) {
            let (model, path) = parse_model_artifact_uri(uri)?;
            let version = match &model {
                ModelUri::Version { version, .. } => *version,
                ModelUri::Alias { name, alias } => {
                    self.get_model_version_by_alias(name, alias).await?.version
                }
            };
            let location = self
                .get_model_version_download_uri(model.name(), version)
                .await?;
            let base = artifact_proxy_path(&location).map_err(|_| {
                MlflowError::invalid_uri(
                    uri,
                    format!("{model} is stored at '{location}', which the MLflow artifact proxy does not serve"),
                )
            })?;
            Ok(join_artifact_path(&base, &path))
        } else if uri.starts_with(RUNS_SCHEME) {
            let (run_id, path) = parse_runs_uri(uri)?;
            let run = self.get_run(&run_id).await?;
            let base = artifact_proxy_path(&run.info.artifact_uri).map_err(|_| {
                MlflowError::invalid_uri(
                    uri,
                    format!(
                        "run {run_id} stores artifacts at '{}', which the MLflow artifact proxy \
                         does not serve",
                        run.info.artifact_uri
                    ),
                )
            })?;
            Ok(join_artifact_path(&base, &path))
        } else {
            artifact_proxy_path(uri)
        }
    }

    /// Download one artifact file (`mlflow-artifacts:/...`, `runs:/<run_id>/<path>`,
    /// `models:/<name>/<version>/<path>`, `models:/<name>@<alias>/<path>`) into memory.
    /// A missing file is [`MlflowError::NotFound`].
    pub async fn download_artifact(&self, uri: &str) -> Result<Vec<u8>, MlflowError> {
        let path = self.resolve_artifact_path(uri).await?;
        if path.is_empty() {
            return Err(MlflowError::invalid_uri(uri, "no file path"));
        }
        let url = self.url(ARTIFACTS_PREFIX, path.split('/'))?;
        self.send_raw(Method::GET, url, None, &format!("artifact '{uri}'"))
            .await
    }

    /// List a directory of artifacts (any URI form [`download_artifact`](Self::download_artifact)
    /// takes, pointing at a directory).
    /// Paths in the answer are relative to the artifact root of the listing.
    pub async fn list_artifacts(&self, uri: &str) -> Result<Vec<ArtifactFile>, MlflowError> {
        let path = self.resolve_artifact_path(uri).await?;
        let mut url = self.url(ARTIFACTS_PREFIX, std::iter::empty())?;
        url.query_pairs_mut().append_pair("path", &path);
        let bytes = self
            .send_raw(
                Method::GET,
                url,
                None,
                &format!("artifact directory '{uri}'"),
            )
            .await?;
        Ok(decode::<ListResponse>("mlflow-artifacts/artifacts", &bytes)?.files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_paths() {
        assert_eq!(
            artifact_proxy_path("mlflow-artifacts:/1/abc/artifacts/model/MLmodel").unwrap(),
            "1/abc/artifacts/model/MLmodel"
        );
        assert_eq!(
            artifact_proxy_path("mlflow-artifacts://mlflow:5000/1/abc/artifacts/").unwrap(),
            "1/abc/artifacts"
        );
        assert_eq!(
            artifact_proxy_path("mlflow-artifacts:///2/x").unwrap(),
            "2/x"
        );
        for bad in [
            "s3://bucket/1/abc",
            "file:///tmp/x",
            "mlflow-artifacts:/1/../../etc/passwd",
            "runs:/abc/x",
        ] {
            assert_eq!(
                artifact_proxy_path(bad).unwrap_err().category(),
                "mlflow_invalid_uri",
                "{bad}"
            );
        }
    }

    #[test]
    fn runs_uris() {
        assert_eq!(
            parse_runs_uri("runs:/0123abcd/model/MLmodel").unwrap(),
            ("0123abcd".to_owned(), "model/MLmodel".to_owned())
        );
        assert_eq!(
            parse_runs_uri("runs:/0123abcd").unwrap(),
            ("0123abcd".to_owned(), String::new())
        );
        for bad in ["runs:/", "runs://x y/a", "models:/m/1", "runs:/abc/../x"] {
            assert!(parse_runs_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn model_artifact_uris() {
        let (m, p) = parse_model_artifact_uri("models:/fraud/3/MLmodel").unwrap();
        assert_eq!(m.to_string(), "models:/fraud/3");
        assert_eq!(p, "MLmodel");
        let (m, p) = parse_model_artifact_uri("models:/fraud@champion/a/b.txt").unwrap();
        assert_eq!(m.to_string(), "models:/fraud@champion");
        assert_eq!(p, "a/b.txt");
        let (m, p) = parse_model_artifact_uri("models:/fraud@champion").unwrap();
        assert_eq!(m.to_string(), "models:/fraud@champion");
        assert_eq!(p, "");
        for bad in [
            "models:/fraud",
            "models:/fraud/x/MLmodel",
            "models:/f@latest/x",
            "models:/f/1/../x",
        ] {
            let err = parse_model_artifact_uri(bad).expect_err(bad);
            assert!(
                matches!(&err, MlflowError::InvalidUri { uri, .. } if uri == bad),
                "{err:?}"
            );
        }
    }

    #[test]
    fn joins() {
        assert_eq!(
            join_artifact_path("1/r/artifacts", "x.json"),
            "1/r/artifacts/x.json"
        );
        assert_eq!(
            join_artifact_path("1/r/artifacts/", "/x"),
            "1/r/artifacts/x"
        );
        assert_eq!(join_artifact_path("1/r/artifacts", ""), "1/r/artifacts");
    }
}
