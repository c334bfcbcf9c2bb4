//! Model registry endpoints: registered models, versions, aliases, version tags, search.

use serde::{Deserialize, Serialize};

use super::client::{Empty, MlflowClient};
use super::error::{MlflowError, is_alias_not_found};
use super::retry::retry_with_backoff;
use super::types::{ModelVersion, ModelVersionPage, RegisteredModel};
use super::uri::{ModelUri, validate_alias};

/// Page size used by [`MlflowClient::list_model_versions`].
pub const SEARCH_PAGE_SIZE: u32 = 200;

/// Parameters of `model-versions/search`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelVersionSearch {
    /// MLflow filter expression, e.g. `name = 'fraud'` (see [`name_filter`]).
    pub filter: String,
    /// e.g. `["version_number DESC"]`.
    pub order_by: Vec<String>,
    /// Page size; `None` uses the server's default.
    pub max_results: Option<u32>,
}

impl ModelVersionSearch {
    /// All versions of `name`, newest (highest version number) first.
    pub fn versions_of(name: &str) -> Result<Self, MlflowError> {
        Ok(ModelVersionSearch {
            filter: name_filter(name)?,
            order_by: vec!["version_number DESC".to_owned()],
            max_results: Some(SEARCH_PAGE_SIZE),
        })
    }
}

/// The filter `name = '<name>'`, quoted so MLflow's filter parser accepts it.
pub fn name_filter(name: &str) -> Result<String, MlflowError> {
    if !name.contains('\'') {
        Ok(format!("name = '{name}'"))
    } else if !name.contains('"') {
        Ok(format!("name = \"{name}\""))
    } else {
        Err(MlflowError::Config {
            detail: format!("model name {name:?} contains both quote characters"),
        })
    }
}

#[derive(Deserialize)]
struct RegisteredModelResponse {
    registered_model: RegisteredModel,
}

#[derive(Deserialize)]
struct ModelVersionResponse {
    model_version: ModelVersion,
}

#[derive(Serialize)]
struct AliasBody<'a> {
    name: &'a str,
    alias: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
}

#[derive(Serialize)]
struct VersionTagBody<'a> {
    name: &'a str,
    version: String,
    key: &'a str,
    value: &'a str,
}

impl MlflowClient {
    /// `GET registered-models/get`.
    pub async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel, MlflowError> {
        let r: RegisteredModelResponse = self
            .get_json(
                "registered-models/get",
                &[("name", name)],
                &format!("registered model '{name}'"),
            )
            .await?;
        Ok(r.registered_model)
    }

    /// `POST registered-models/create`. An existing name is [`MlflowError::InvalidRequest`]
    /// with `RESOURCE_ALREADY_EXISTS`. (Versions are created by training jobs, not here.)
    pub async fn create_registered_model(
        &self,
        name: &str,
        description: Option<&str>,
    ) -> Result<RegisteredModel, MlflowError> {
        #[derive(Serialize)]
        struct Body<'a> {
            name: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            description: Option<&'a str>,
        }
        let r: RegisteredModelResponse = self
            .post_json(
                "registered-models/create",
                &Body { name, description },
                &format!("registered model '{name}'"),
            )
            .await?;
        Ok(r.registered_model)
    }

    /// `GET model-versions/get`.
    pub async fn get_model_version(
        &self,
        name: &str,
        version: u64,
    ) -> Result<ModelVersion, MlflowError> {
        let v = version.to_string();
        let r: ModelVersionResponse = self
            .get_json(
                "model-versions/get",
                &[("name", name), ("version", &v)],
                &format!("model version {name}/{version}"),
            )
            .await?;
        Ok(r.model_version)
    }

    /// `GET registered-models/alias`. An unset alias on an existing model is
    /// [`MlflowError::AliasNotFound`]; a missing model is [`MlflowError::NotFound`].
    pub async fn get_model_version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<ModelVersion, MlflowError> {
        let r: ModelVersionResponse = self
            .get_json(
                "registered-models/alias",
                &[("name", name), ("alias", alias)],
                &format!("registered model '{name}'"),
            )
            .await
            .map_err(|e| alias_error(e, name, alias))?;
        Ok(r.model_version)
    }

    /// The version a `models:/` URI points at.
    pub async fn resolve_model_uri(&self, uri: &ModelUri) -> Result<ModelVersion, MlflowError> {
        match uri {
            ModelUri::Version { name, version } => self.get_model_version(name, *version).await,
            ModelUri::Alias { name, alias } => self.get_model_version_by_alias(name, alias).await,
        }
    }

    /// `POST registered-models/alias`: point `alias` at `version` (moving it if set elsewhere).
    /// Idempotent; retried on transient errors.
    pub async fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: u64,
    ) -> Result<(), MlflowError> {
        validate_alias(alias)?;
        let body = AliasBody {
            name,
            alias,
            version: Some(version.to_string()),
        };
        let what = format!("model version {name}/{version}");
        retry_with_backoff(self.retry_policy(), || async {
            self.post_json::<Empty, _>("registered-models/alias", &body, &what)
                .await
                .map(drop)
        })
        .await
    }

    /// `DELETE registered-models/alias` (JSON body). Deleting an alias that is not set counts
    /// as success; a missing model is still [`MlflowError::NotFound`]. Retried on transient
    /// errors.
    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<(), MlflowError> {
        let body = AliasBody {
            name,
            alias,
            version: None,
        };
        let what = format!("registered model '{name}'");
        let res = retry_with_backoff(self.retry_policy(), || async {
            self.delete_json::<Empty, _>("registered-models/alias", &body, &what)
                .await
                .map(drop)
        })
        .await;
        match res.map_err(|e| alias_error(e, name, alias)) {
            Err(MlflowError::AliasNotFound { .. }) => Ok(()),
            other => other,
        }
    }

    /// `POST model-versions/set-tag`. Idempotent; retried on transient errors.
    pub async fn set_model_version_tag(
        &self,
        name: &str,
        version: u64,
        key: &str,
        value: &str,
    ) -> Result<(), MlflowError> {
        let body = VersionTagBody {
            name,
            version: version.to_string(),
            key,
            value,
        };
        let what = format!("model version {name}/{version}");
        retry_with_backoff(self.retry_policy(), || async {
            self.post_json::<Empty, _>("model-versions/set-tag", &body, &what)
                .await
                .map(drop)
        })
        .await
    }

    /// One page of `GET model-versions/search`; pass the previous page's `next_page_token`
    /// to get the next one.
    pub async fn search_model_versions(
        &self,
        search: &ModelVersionSearch,
        page_token: Option<&str>,
    ) -> Result<ModelVersionPage, MlflowError> {
        let max = search.max_results.map(|m| m.to_string());
        let mut query: Vec<(&str, &str)> = Vec::new();
        if !search.filter.is_empty() {
            query.push(("filter", &search.filter));
        }
        for o in &search.order_by {
            query.push(("order_by", o));
        }
        if let Some(max) = &max {
            query.push(("max_results", max));
        }
        if let Some(token) = page_token.filter(|t| !t.is_empty()) {
            query.push(("page_token", token));
        }
        self.get_json("model-versions/search", &query, "model versions")
            .await
    }

    /// Every version of `name`, highest version number first (follows all pages).
    /// A model without versions, or that does not exist, gives an empty list.
    pub async fn list_model_versions(&self, name: &str) -> Result<Vec<ModelVersion>, MlflowError> {
        let search = ModelVersionSearch::versions_of(name)?;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .search_model_versions(&search, token.as_deref())
                .await?;
            out.extend(page.model_versions);
            if page.next_page_token.is_empty() || token.as_deref() == Some(&page.next_page_token) {
                break;
            }
            token = Some(page.next_page_token);
        }
        // The server sorts already; make the order a guarantee.
        out.sort_by_key(|v| std::cmp::Reverse(v.version));
        Ok(out)
    }

    /// The highest version of `name` whose tag `key` equals `value` (e.g. the candidate a
    /// retraining attempt registered, found by its lineage tag rather than by recency).
    pub async fn find_model_version_by_tag(
        &self,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<Option<ModelVersion>, MlflowError> {
        Ok(self
            .list_model_versions(name)
            .await?
            .into_iter()
            .find(|v| v.tag(key) == Some(value)))
    }
}

/// Turn MLflow's "alias not found" answer into [`MlflowError::AliasNotFound`].
fn alias_error(err: MlflowError, name: &str, alias: &str) -> MlflowError {
    if is_alias_not_found(&err) {
        MlflowError::AliasNotFound {
            model: name.to_owned(),
            alias: alias.to_owned(),
        }
    } else {
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_filter_quotes() {
        assert_eq!(name_filter("fraud").unwrap(), "name = 'fraud'");
        assert_eq!(name_filter("it's").unwrap(), "name = \"it's\"");
        assert!(name_filter("a'b\"c").is_err());
    }

    #[test]
    fn alias_error_maps_only_alias_case() {
        let e = alias_error(
            MlflowError::InvalidRequest {
                status: 400,
                error_code: "INVALID_PARAMETER_VALUE".into(),
                message: "Registered model alias champion not found.".into(),
            },
            "m",
            "champion",
        );
        assert!(
            matches!(&e, MlflowError::AliasNotFound { model, alias } if model == "m" && alias == "champion")
        );
        assert_eq!(e.category(), "mlflow_alias_not_found");
        let e = alias_error(
            MlflowError::NotFound {
                what: "registered model 'm'".into(),
                message: "Registered Model with name=m not found".into(),
            },
            "m",
            "champion",
        );
        assert!(matches!(e, MlflowError::NotFound { .. }));
    }
}
