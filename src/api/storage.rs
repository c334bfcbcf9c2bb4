//! Object storage shared by drift data and captured traffic: which server, which credentials.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::model::SecretReference;

/// Access to the object store behind `s3://`, `gs://` and `az://` URIs of this resource (drift
/// data and the proxy's capture). Credentials come from a Secret, by reference only.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Secret whose keys are object-store settings, named as in the `object_store` crate and the
    /// clouds' environment variables (case-insensitive): `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`; `GOOGLE_SERVICE_ACCOUNT_KEY`;
    /// `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`. Without it, anonymous access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
    /// Endpoint of an S3-compatible server (`http(s)://host:port`), instead of AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub endpoint: Option<String>,
    /// Region of the bucket (S3). Default `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub region: Option<String>,
}
