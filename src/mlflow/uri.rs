//! `models:/` URIs and alias names (pure helpers).

use std::fmt;
use std::str::FromStr;

use super::error::MlflowError;

/// A parsed `models:/` URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelUri {
    /// `models:/<name>/<version>`
    Version { name: String, version: u64 },
    /// `models:/<name>@<alias>`
    Alias { name: String, alias: String },
}

impl ModelUri {
    /// Parse `models:/<name>/<version>` or `models:/<name>@<alias>`.
    ///
    /// Stage URIs (`models:/<name>/Production`, `.../latest`) and MLflow 3 logged-model URIs
    /// (`models:/m-<id>`) are rejected: the operator always pins a version or an alias.
    pub fn parse(uri: &str) -> Result<Self, MlflowError> {
        let bad = |reason: &str| MlflowError::invalid_uri(uri, reason);
        let rest = uri
            .strip_prefix("models:/")
            .ok_or_else(|| bad("expected models:/<name>/<version> or models:/<name>@<alias>"))?;
        if rest.starts_with('/') {
            return Err(bad("models:// URIs with an authority are not supported"));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Err(bad("missing model name"));
        }
        // An alias: the last '@' splits name and alias, and there is no '/' after it.
        if let Some((name, alias)) = rest.rsplit_once('@')
            && !alias.contains('/')
        {
            validate_model_name(uri, name)?;
            validate_alias(alias).map_err(|e| match e {
                MlflowError::InvalidUri { reason, .. } => bad(&reason),
                other => other,
            })?;
            return Ok(ModelUri::Alias {
                name: name.to_owned(),
                alias: alias.to_owned(),
            });
        }
        let Some((name, version)) = rest.split_once('/') else {
            return Err(bad(
                "missing version or alias (logged-model URIs models:/m-<id> are not supported here)",
            ));
        };
        validate_model_name(uri, name)?;
        if version.contains('/') {
            return Err(bad("unexpected path after the version"));
        }
        let version = parse_version(version).ok_or_else(|| {
            bad("version must be a positive integer (stages and 'latest' are not supported)")
        })?;
        Ok(ModelUri::Version {
            name: name.to_owned(),
            version,
        })
    }

    pub fn name(&self) -> &str {
        match self {
            ModelUri::Version { name, .. } | ModelUri::Alias { name, .. } => name,
        }
    }
}

impl fmt::Display for ModelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelUri::Version { name, version } => write!(f, "models:/{name}/{version}"),
            ModelUri::Alias { name, alias } => write!(f, "models:/{name}@{alias}"),
        }
    }
}

impl FromStr for ModelUri {
    type Err = MlflowError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelUri::parse(s)
    }
}

/// `models:/<name>/<version>`.
pub fn model_version_uri(name: &str, version: u64) -> String {
    format!("models:/{name}/{version}")
}

/// `models:/<name>@<alias>`.
pub fn model_alias_uri(name: &str, alias: &str) -> String {
    format!("models:/{name}@{alias}")
}

/// A positive decimal version number.
pub fn parse_version(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|v| *v > 0)
}

fn validate_model_name(uri: &str, name: &str) -> Result<(), MlflowError> {
    if name.trim().is_empty() {
        return Err(MlflowError::invalid_uri(uri, "missing model name"));
    }
    Ok(())
}

/// Check an alias name the way MLflow does: non-empty, at most 255 characters of
/// alphanumerics, `_` and `-`, and not the reserved `latest` or `v<digits>`.
pub fn validate_alias(alias: &str) -> Result<(), MlflowError> {
    let bad = |reason: &str| MlflowError::invalid_uri(alias, reason);
    if alias.is_empty() {
        return Err(bad("alias is empty"));
    }
    if alias.len() > 255 {
        return Err(bad("alias is longer than 255 characters"));
    }
    if !alias
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(bad("alias may only contain letters, digits, '_' and '-'"));
    }
    let lower = alias.to_ascii_lowercase();
    if lower == "latest"
        || (lower.len() > 1
            && lower.starts_with('v')
            && lower[1..].bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad("'latest' and 'v<number>' are reserved by MLflow"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_version_uri() {
        let u = ModelUri::parse("models:/fraud-model/12").unwrap();
        assert_eq!(
            u,
            ModelUri::Version {
                name: "fraud-model".into(),
                version: 12
            }
        );
        assert_eq!(u.to_string(), "models:/fraud-model/12");
        assert_eq!(u.name(), "fraud-model");
        assert_eq!(
            "models:/a/1/".parse::<ModelUri>().unwrap(),
            ModelUri::Version {
                name: "a".into(),
                version: 1
            }
        );
    }

    #[test]
    fn parses_alias_uri() {
        let u = ModelUri::parse("models:/fraud.model_v2@champion").unwrap();
        assert_eq!(
            u,
            ModelUri::Alias {
                name: "fraud.model_v2".into(),
                alias: "champion".into()
            }
        );
        assert_eq!(u.to_string(), "models:/fraud.model_v2@champion");
        // name containing '@' is split at the last one
        let u = ModelUri::parse("models:/team@x@prev-1").unwrap();
        assert_eq!(u.name(), "team@x");
    }

    #[test]
    fn rejects_bad_uris() {
        for bad in [
            "",
            "runs:/abc/model",
            "models:/",
            "models:/name",
            "models:/m-0123abcd",
            "models:/name/latest",
            "models:/name/Production",
            "models:/name/0",
            "models:/name/-1",
            "models:/name/1/extra",
            "models:/name@",
            "models:/name@latest",
            "models:/name@v3",
            "models:/name@with space",
            "models:/@alias",
            "models:/ /1",
            "models:///name/1",
        ] {
            let err = ModelUri::parse(bad).expect_err(bad);
            assert_eq!(err.category(), "mlflow_invalid_uri", "{bad}");
        }
    }

    #[test]
    fn builds_uris() {
        assert_eq!(model_version_uri("m", 7), "models:/m/7");
        assert_eq!(model_alias_uri("m", "champion"), "models:/m@champion");
        assert_eq!(
            ModelUri::parse(&model_version_uri("m", 7)).unwrap(),
            ModelUri::Version {
                name: "m".into(),
                version: 7
            }
        );
    }

    #[test]
    fn alias_validation() {
        for ok in [
            "champion",
            "challenger",
            "previous",
            "v1a",
            "V",
            "a_b-c",
            "vx2",
        ] {
            validate_alias(ok).expect(ok);
        }
        for bad in ["latest", "LATEST", "v1", "V12", "a.b", "a/b", ""] {
            assert!(validate_alias(bad).is_err(), "{bad}");
        }
    }
}
