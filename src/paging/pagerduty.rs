//! PagerDuty's Events API v2: `POST {events_url}/v2/enqueue` with a JSON
//! event. A trigger carries the integration's `routing_key`,
//! `event_action: "trigger"`, the incident's `dedup_key` and a `payload`
//! (`summary`, `source`, `severity`, `component`, `custom_details`), plus
//! `links` and `client`; a resolve carries the routing key, `event_action:
//! "resolve"` and the same dedup key. PagerDuty answers `202` with
//! `{"status": "success", "dedup_key": …}`; `400` with
//! `{"status": "invalid event", "message", "errors": [...]}` (refused, not
//! retried); `429` when throttled (retried after `Retry-After`, else a
//! backoff); `5xx` when it cannot take the event (retried).
//!
//! The routing key is the credential: it goes only into the event's
//! `routing_key` field and is never logged or shown (an error answer that
//! quoted it is scrubbed).

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    clip, retry_after_of, scrub, send_error, PageError, PageEvent, Pager, PagingSetupError,
    CALL_TIMEOUT,
};
use crate::config::Secret;

const PROVIDER: &str = "pagerduty";
const NAME: &str = "PagerDuty";
/// Longest dedup key PagerDuty takes.
const DEDUP_KEY_MAX: usize = 255;

/// The PagerDuty Events API v2 client.
pub struct PagerDuty {
    enqueue_url: String,
    routing_key: Secret,
    client: reqwest::Client,
}

impl std::fmt::Debug for PagerDuty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagerDuty")
            .field("enqueue_url", &self.enqueue_url)
            .field("routing_key", &"***")
            .finish()
    }
}

/// The body of an error answer.
#[derive(Debug, Default, Deserialize)]
struct ErrorAnswer {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<String>,
}

impl PagerDuty {
    /// A client sending to `{events_url}/v2/enqueue`.
    pub fn new(events_url: &str, routing_key: Secret) -> Result<Self, PagingSetupError> {
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
            enqueue_url: format!("{}/v2/enqueue", events_url.trim_end_matches('/')),
            routing_key,
            client,
        })
    }

    /// The trigger event for `dedup_key`.
    fn trigger_event(&self, dedup_key: &str, event: &PageEvent) -> Value {
        let mut payload = json!({
            "summary": clip(&event.summary, 1024),
            "source": clip(&event.source, 255),
            "severity": event.severity.as_str(),
            "class": "ci/cd pipeline incident",
            "group": clip(&event.source, 255),
            "custom_details": event.details,
        });
        if let Some(component) = &event.component {
            payload["component"] = json!(clip(component, 255));
        }
        json!({
            "routing_key": self.routing_key.expose(),
            "event_action": "trigger",
            "dedup_key": clip(dedup_key, DEDUP_KEY_MAX),
            "payload": payload,
            "client": "pipemedic",
            "links": event.links.iter().map(|l| json!({"href": l.href, "text": l.text})).collect::<Vec<_>>(),
        })
    }

    async fn send(&self, body: &Value) -> Result<(), PageError> {
        let answer = self
            .client
            .post(&self.enqueue_url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| send_error(PROVIDER, &e))?;
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
                let mut message = if parsed.message.is_empty() {
                    text.clone()
                } else {
                    parsed.message
                };
                if !parsed.errors.is_empty() {
                    message = format!("{message}: {}", parsed.errors.join("; "));
                }
                Err(PageError::Rejected {
                    provider: NAME,
                    status,
                    message: scrub(&message, self.routing_key.expose()),
                })
            }
        }
    }
}

#[async_trait]
impl Pager for PagerDuty {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn name(&self) -> &'static str {
        NAME
    }

    #[tracing::instrument(name = "paging.pagerduty.trigger", skip_all, fields(dedup_key))]
    async fn trigger(&self, dedup_key: &str, event: &PageEvent) -> Result<(), PageError> {
        self.send(&self.trigger_event(dedup_key, event)).await
    }

    #[tracing::instrument(name = "paging.pagerduty.resolve", skip_all, fields(dedup_key))]
    async fn resolve(&self, dedup_key: &str, _note: &str) -> Result<(), PageError> {
        self.send(&json!({
            "routing_key": self.routing_key.expose(),
            "event_action": "resolve",
            "dedup_key": clip(dedup_key, DEDUP_KEY_MAX),
        }))
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paging::{PageLink, PageSeverity};

    #[test]
    fn a_trigger_has_the_documented_shape_and_debug_hides_the_key() {
        let pd = PagerDuty::new("https://events.example/", Secret::new("R0UT1NG")).unwrap();
        assert_eq!(pd.enqueue_url, "https://events.example/v2/enqueue");
        let event = PageEvent {
            summary: "s".into(),
            source: "checkout".into(),
            severity: PageSeverity::Critical,
            component: Some("Test".into()),
            details: [("incident".to_string(), "7".to_string())].into(),
            links: vec![PageLink {
                text: "Run".into(),
                href: "https://ci.example/run/1".into(),
            }],
        };
        let body = pd.trigger_event("pipemedic-incident-7", &event);
        assert_eq!(body["event_action"], "trigger");
        assert_eq!(body["dedup_key"], "pipemedic-incident-7");
        assert_eq!(body["payload"]["severity"], "critical");
        assert_eq!(body["payload"]["component"], "Test");
        assert_eq!(body["payload"]["custom_details"]["incident"], "7");
        assert_eq!(body["links"][0]["href"], "https://ci.example/run/1");
        assert!(!format!("{pd:?}").contains("R0UT1NG"));
    }
}
