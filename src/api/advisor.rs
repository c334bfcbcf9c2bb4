//! `spec.advisor`: an optional language-model second opinion. It can recommend, never bypass a gate.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::duration::DURATION_PATTERN;
use super::model::SecretKeyReference;

/// Optional LLM advisor that reads each drift report. Off by default; the rules alone decide
/// everything it cannot: cooldown, budget, evaluation, shadow and analysis always apply.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.enabled) || !self.enabled || has(self.apiKeySecret)")
    .message("advisor.apiKeySecret is required when advisor.enabled is true"))]
pub struct AdvisorSpec {
    /// Turn the advisor on.
    #[serde(default)]
    pub enabled: bool,
    /// API flavour of the provider.
    #[serde(default)]
    pub provider: AdvisorProvider,
    /// Model name, e.g. `claude-haiku-4-5`.
    #[serde(default = "default_model")]
    #[schemars(length(min = 1, max = 128))]
    pub model: String,
    /// Endpoint override (for a proxy or a gateway).
    #[serde(default = "default_endpoint")]
    #[schemars(pattern(r"^https?://[^\s]+$"))]
    pub endpoint: String,
    /// Secret key holding the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret: Option<SecretKeyReference>,
    /// Give up on an answer after this long; the rule-based decision stands.
    #[serde(default = "default_timeout")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub timeout: String,
}

impl Default for AdvisorSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            provider: AdvisorProvider::Anthropic,
            model: default_model(),
            endpoint: default_endpoint(),
            api_key_secret: None,
            timeout: default_timeout(),
        }
    }
}

/// Supported advisor APIs.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum AdvisorProvider {
    /// Anthropic Messages API.
    #[default]
    Anthropic,
}

fn default_model() -> String {
    "claude-haiku-4-5".into()
}
fn default_endpoint() -> String {
    "https://api.anthropic.com".into()
}
fn default_timeout() -> String {
    "20s".into()
}
