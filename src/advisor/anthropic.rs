//! The Anthropic Messages API (`POST {endpoint}/v1/messages`).

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;

use super::{
    Advisor, AdvisorAnswer, AdvisorError, AdvisorInput, SYSTEM_PROMPT, parse_answer, user_prompt,
};
use crate::api::AdvisorSpec;

/// Client of the Messages API.
#[derive(Debug, Clone, Default)]
pub struct AnthropicAdvisor {
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct MessagesResponse {
    #[serde(default)]
    content: Vec<ContentBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct ContentBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

/// Retries of a call: an unreachable provider, a rate limit or a 5xx answer is asked again
/// (within the advisor's timeout).
pub const ADVISOR_RETRY: crate::retry::RetryPolicy = crate::retry::RetryPolicy {
    attempts: 3,
    base: Duration::from_millis(500),
    max: Duration::from_secs(4),
};

impl AnthropicAdvisor {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        spec: &AdvisorSpec,
        timeout: Duration,
        api_key: &str,
        input: &AdvisorInput,
    ) -> Result<AdvisorAnswer, AdvisorError> {
        let url = format!("{}/v1/messages", spec.endpoint.trim_end_matches('/'));
        let body = serde_json::json!({
            "model": spec.model,
            "max_tokens": 300,
            "temperature": 0,
            "system": SYSTEM_PROMPT,
            "messages": [{"role": "user", "content": user_prompt(input)}],
        });
        let request = self
            .http
            .post(url)
            .timeout(timeout)
            .header("x-api-key", api_key)
            .header("anthropic-version", "2023-06-01")
            .json(&body);
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                AdvisorError::Timeout
            } else {
                AdvisorError::Unreachable(e.to_string())
            }
        })?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| {
            if e.is_timeout() {
                AdvisorError::Timeout
            } else {
                AdvisorError::Unreachable(e.to_string())
            }
        })?;
        match status {
            200 => {}
            429 => return Err(AdvisorError::RateLimited),
            _ => {
                return Err(AdvisorError::Http {
                    status,
                    message: text.chars().take(200).collect(),
                });
            }
        }
        let parsed: MessagesResponse = serde_json::from_str(&text)
            .map_err(|e| AdvisorError::NotJson(format!("response envelope: {e}")))?;
        if parsed.stop_reason.as_deref() == Some("refusal") {
            return Err(AdvisorError::Refused("stop_reason refusal".into()));
        }
        let answer: String = parsed
            .content
            .iter()
            .filter(|b| b.kind == "text")
            .map(|b| b.text.as_str())
            .collect();
        parse_answer(&answer)
    }
}

impl Advisor for AnthropicAdvisor {
    fn advise<'a>(
        &'a self,
        spec: &'a AdvisorSpec,
        timeout: Duration,
        api_key: &'a str,
        input: &'a AdvisorInput,
    ) -> BoxFuture<'a, Result<AdvisorAnswer, AdvisorError>> {
        async move {
            // The whole exchange, retries included, is bounded by the timeout; a retry is
            // made only while there is time for it, so the last answer is reported, not a
            // timeout of our own making.
            let deadline = tokio::time::Instant::now() + timeout;
            let worth_retrying = |e: &AdvisorError| {
                e.is_transient()
                    && deadline.saturating_duration_since(tokio::time::Instant::now())
                        > ADVISOR_RETRY.max * 2
            };
            let exchange = crate::retry::retry_if(ADVISOR_RETRY, worth_retrying, || {
                self.call(spec, timeout, api_key, input)
            });
            match tokio::time::timeout(timeout, exchange).await {
                Ok(result) => result,
                Err(_) => Err(AdvisorError::Timeout),
            }
        }
        .boxed()
    }
}
