//! Opsgenie's Alert API: a trigger is `POST {api_url}/v2/alerts` with
//! `Authorization: GenieKey <key>` and a JSON alert (`message` of at most
//! 130 characters, `alias` = the incident's dedup key, `description`,
//! `details`, `entity`, `source`, `priority` P1–P5, `tags`); a resolve is
//! `POST {api_url}/v2/alerts/{alias}/close?identifierType=alias` with
//! `{"source", "note"}`. Both are asynchronous at Opsgenie: `202` with
//! `{"result": "Request will be processed", "requestId"}` is success. An
//! open alert with the same alias stays one alert. `429` is retried after
//! `Retry-After` (else a backoff), `5xx` retried, other `4xx` refused with
//! Opsgenie's `message`.
//!
//! The API key is the credential: it goes only into the `Authorization`
//! header and is never logged or shown.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    clip, retry_after_of, scrub, send_error, PageError, PageEvent, PageSeverity, Pager,
    PagingSetupError, CALL_TIMEOUT,
};
use crate::config::Secret;

const PROVIDER: &str = "opsgenie";
const NAME: &str = "Opsgenie";

/// The Opsgenie Alert API client.
pub struct Opsgenie {
    api_url: url::Url,
    api_key: Secret,
    client: reqwest::Client,
}

impl std::fmt::Debug for Opsgenie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opsgenie")
            .field("api_url", &self.api_url.as_str())
            .field("api_key", &"***")
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
struct ErrorAnswer {
    #[serde(default)]
    message: String,
}

/// An Opsgenie priority for a page's severity.
fn priority(severity: PageSeverity) -> &'static str {
    match severity {
        PageSeverity::Critical => "P1",
        PageSeverity::Error => "P2",
        PageSeverity::Warning => "P3",
        PageSeverity::Info => "P5",
    }
}

impl Opsgenie {
    /// A client for the Alert API at `api_url` (`https://api.opsgenie.com`).
    pub fn new(api_url: &str, api_key: Secret) -> Result<Self, PagingSetupError> {
        let api_url = url::Url::parse(api_url).map_err(|e| PagingSetupError::Client {
            provider: PROVIDER,
            reason: format!("paging.opsgenie.api_url: {e}"),
        })?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("pipemedic")
            .timeout(CALL_TIMEOUT)
            .build()
            .map_err(|e| PagingSetupError::Client {
                provider: PROVIDER,
                reason: e.to_string(),
            })?;
        Ok(Self {
            api_url,
            api_key,
            client,
        })
    }

    /// `{api_url}/v2/alerts` followed by `segments`, each percent-encoded.
    fn url(&self, segments: &[&str]) -> url::Url {
        let mut url = self.api_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .extend(["v2", "alerts"])
                .extend(segments);
        }
        url
    }

    fn alert(dedup_key: &str, event: &PageEvent) -> Value {
        let mut description = event.summary.clone();
        for link in &event.links {
            description.push_str(&format!("\n{}: {}", link.text, link.href));
        }
        json!({
            "message": clip(&event.summary, 130),
            "alias": clip(dedup_key, 512),
            "description": clip(&description, 15000),
            "details": event.details,
            "entity": clip(&event.source, 512),
            "source": "pipemedic",
            "priority": priority(event.severity),
            "tags": ["pipemedic"],
        })
    }

    async fn send(&self, url: url::Url, body: &Value) -> Result<(), PageError> {
        let answer = self
            .client
            .post(url)
            .header(
                reqwest::header::AUTHORIZATION,
                format!("GenieKey {}", self.api_key.expose()),
            )
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| send_error(NAME, &e))?;
        let status = answer.status().as_u16();
        let retry_after = retry_after_of(answer.headers());
        if (200..300).contains(&status) {
            return Ok(());
        }
        let text = answer.text().await.unwrap_or_default();
        match status {
            429 => Err(PageError::RateLimited {
                provider: NAME,
                retry_after,
            }),
            500..=599 => Err(PageError::Unavailable {
                provider: NAME,
                reason: format!("HTTP {status}"),
            }),
            _ => {
                let parsed: ErrorAnswer = serde_json::from_str(&text).unwrap_or_default();
                let message = if parsed.message.is_empty() {
                    text
                } else {
                    parsed.message
                };
                Err(PageError::Rejected {
                    provider: NAME,
                    status,
                    message: scrub(&message, self.api_key.expose()),
                })
            }
        }
    }
}

#[async_trait]
impl Pager for Opsgenie {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn name(&self) -> &'static str {
        NAME
    }

    #[tracing::instrument(name = "paging.opsgenie.trigger", skip_all, fields(dedup_key))]
    async fn trigger(&self, dedup_key: &str, event: &PageEvent) -> Result<(), PageError> {
        self.send(self.url(&[]), &Self::alert(dedup_key, event))
            .await
    }

    #[tracing::instrument(name = "paging.opsgenie.resolve", skip_all, fields(dedup_key))]
    async fn resolve(&self, dedup_key: &str, note: &str) -> Result<(), PageError> {
        let mut url = self.url(&[&clip(dedup_key, 512), "close"]);
        url.query_pairs_mut().append_pair("identifierType", "alias");
        self.send(
            url,
            &json!({"source": "pipemedic", "note": clip(note, 25000)}),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_under_the_configured_base() {
        let og = Opsgenie::new("https://og.example/base/", Secret::new("K3Y")).unwrap();
        assert_eq!(og.url(&[]).as_str(), "https://og.example/base/v2/alerts");
        assert_eq!(
            og.url(&["a/b c", "close"]).as_str(),
            "https://og.example/base/v2/alerts/a%2Fb%20c/close"
        );
        assert!(!format!("{og:?}").contains("K3Y"));
    }

    #[test]
    fn the_message_is_cut_to_opsgenie_s_limit() {
        let event = PageEvent {
            summary: "x".repeat(200),
            source: "p".into(),
            severity: PageSeverity::Error,
            component: None,
            details: Default::default(),
            links: Vec::new(),
        };
        let alert = Opsgenie::alert("pipemedic-incident-1", &event);
        assert_eq!(alert["message"].as_str().unwrap().chars().count(), 130);
        assert_eq!(alert["alias"], "pipemedic-incident-1");
        assert_eq!(alert["priority"], "P2");
    }
}
