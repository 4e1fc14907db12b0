//! Paging: tells the on-call person when the loop needs a human who is not
//! watching chat, through PagerDuty's Events API v2 ([`pagerduty`]) or
//! Opsgenie's Alert API ([`opsgenie`]), and resolves the page when the
//! incident closes.
//!
//! [`PagingService`] owns the durable queue of pages (`pages` in the
//! store): healing decides *that* an incident is paged ([`PagingService::trigger`],
//! [`PagingService::resolve`]); this module decides nothing about *when*.
//! Each incident gets at most one trigger and one resolve, both under one
//! dedup key (`pipemedic-incident-ID`), so the provider keeps one alert per
//! incident whatever happens here.
//!
//! Delivery is exactly-once in the store: a page is claimed (`sending`) in
//! its own committed transaction before the call, and settled (`sent`,
//! `dead`) after it; a settled page is never sent again. A claim whose
//! process stopped mid-call is taken over after [`CLAIM_LEASE`]; the dedup
//! key makes that second call harmless. A rate limit (429) waits the
//! provider's `Retry-After` (else a backoff), an outage backs off 1 s, 2 s,
//! 4 s … up to 5 minutes, and a refusal (400 and other 4xx) is final,
//! logged, audited and said in the incident's thread. When a page goes
//! out, the thread says so ("Paged on-call (PagerDuty)") in the same
//! transaction that marks it sent.
//!
//! Credentials (the PagerDuty routing key, the Opsgenie API key) live only
//! in the adapters, are sent only in the provider's auth field and never
//! logged, stored or shown.

pub mod opsgenie;
pub mod pagerduty;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::chat::outbox::{self, OutboxSignal};
use crate::chat::routing::Routes;
use crate::chat::{ChatMessage, Severity};
use crate::clock::Clock;
use crate::config::{Config, Secrets};
use crate::domain::{Incident, IncidentSeverity};
use crate::metrics::Metrics;
use crate::store::{
    NewPage, OutboxKind, PageAction, PageStatus, Store, StoreError, StoredPage, WriteTx,
};

/// How long a claimed page may stay unsettled before another process
/// takes it over (its claimant stopped mid-call).
pub const CLAIM_LEASE: Duration = Duration::from_secs(120);

/// How often the delivery loop looks for due pages when nothing wakes it.
pub const POLL: Duration = Duration::from_secs(1);

/// How long one call to the provider may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// First wait after an outage; doubled per failed attempt.
const BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest wait between attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// Longest `Retry-After` honoured as asked.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

/// Who pipemedic's own audit entries are by.
const ACTOR: &str = "pipemedic";

/// Why a call to the provider failed, classified so the queue retries
/// right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    /// The provider throttled us (HTTP 429); try again after `retry_after`
    /// (its `Retry-After`, when it sent one).
    #[error("rate limited by {provider}")]
    RateLimited {
        provider: &'static str,
        retry_after: Option<Duration>,
    },
    /// Not reached, or it failed (5xx, network, timeout); try again later.
    #[error("{provider} unavailable: {reason}")]
    Unavailable {
        provider: &'static str,
        reason: String,
    },
    /// The provider refused the request (400 and other 4xx); never retried.
    #[error("{provider} refused the page (HTTP {status}): {message}")]
    Rejected {
        provider: &'static str,
        status: u16,
        message: String,
    },
}

/// Why paging cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum PagingSetupError {
    #[error("paging.provider is {provider:?} but {secret} is not set (nor {secret}_FILE)")]
    MissingSecret {
        provider: &'static str,
        secret: &'static str,
    },
    #[error("paging.provider {0:?} is not pagerduty or opsgenie")]
    UnknownProvider(String),
    #[error("cannot build the HTTP client for {provider}: {reason}")]
    Client {
        provider: &'static str,
        reason: String,
    },
}

/// How urgent a page is, in PagerDuty's words (Opsgenie maps them to
/// priorities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageSeverity {
    Critical,
    Error,
    Warning,
    Info,
}

impl PageSeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Info => "info",
        }
    }

    /// An incident's severity as a page's.
    pub fn of(severity: IncidentSeverity) -> Self {
        match severity {
            IncidentSeverity::Critical => Self::Critical,
            IncidentSeverity::Major => Self::Error,
            IncidentSeverity::Minor => Self::Warning,
        }
    }
}

/// A link shown with the page (the incident in the web console, the run,
/// a dashboard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageLink {
    pub text: String,
    pub href: String,
}

/// What the provider is told about an incident. Built when the page is
/// decided and stored with it, so a retry sends the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageEvent {
    /// One line: what is wrong and why a person is needed.
    pub summary: String,
    /// The pipeline.
    pub source: String,
    pub severity: PageSeverity,
    /// The stage, when the run named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// Incident facts as name → text (both providers take this shape).
    pub details: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<PageLink>,
}

impl PageEvent {
    /// The event for paging about `incident` because of `reason`, with
    /// `extra` links (the route's dashboards and runbooks) after the
    /// incident's own.
    pub fn for_incident(
        incident: &Incident,
        reason: &str,
        public_url: &str,
        extra: Vec<PageLink>,
    ) -> Self {
        let run = &incident.latest_run;
        let summary = format!(
            "pipemedic: {} incident #{} needs a person: {reason}",
            incident.pipeline, incident.id
        );
        let mut details = BTreeMap::new();
        details.insert("incident".to_string(), incident.id.to_string());
        details.insert("pipeline".to_string(), incident.pipeline.clone());
        details.insert("reason".to_string(), reason.to_string());
        details.insert("status".to_string(), incident.status.as_str().to_string());
        details.insert(
            "severity".to_string(),
            incident.severity.as_str().to_string(),
        );
        details.insert("run_id".to_string(), run.run_id.clone());
        details.insert("runs".to_string(), incident.run_count.to_string());
        details.insert(
            "opened_at".to_string(),
            incident
                .opened_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        if let Some(stage) = &run.stage {
            details.insert("stage".to_string(), stage.clone());
        }
        if let Some(commit) = &run.commit {
            details.insert("commit".to_string(), commit.clone());
        }
        if let Some(top) = incident.verdict.deviations.first() {
            details.insert("off".to_string(), top.describe());
        }
        let mut links = Vec::new();
        let base = public_url.trim_end_matches('/');
        if !base.is_empty() {
            links.push(PageLink {
                text: format!("Incident #{} in pipemedic", incident.id),
                href: format!("{base}/ui/incidents/{}", incident.id),
            });
        }
        for (text, url) in [("Run", &run.url), ("Logs", &run.log_url)] {
            if let Some(href) = url.as_ref().filter(|u| u.starts_with("https://")) {
                links.push(PageLink {
                    text: text.to_string(),
                    href: href.clone(),
                });
            }
        }
        links.extend(extra);
        Self {
            summary: clip(&summary, 1000),
            source: incident.pipeline.clone(),
            severity: PageSeverity::of(incident.severity),
            component: run.stage.clone(),
            details,
            links,
        }
    }
}

/// `text` cut to at most `max` characters (with an ellipsis when cut).
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The dedup key of an incident's page: the trigger and the resolve carry
/// the same, so the provider keeps one alert per incident.
pub fn dedup_key(incident_id: i64) -> String {
    format!("pipemedic-incident-{incident_id}")
}

/// One paging provider. Both calls are idempotent at the provider under
/// one dedup key; neither retries by itself (the queue does, by the
/// [`PageError`] class). Implementations never log or return their
/// credential.
#[async_trait]
pub trait Pager: Send + Sync {
    /// The value of `paging.provider` (`pagerduty`).
    fn provider(&self) -> &'static str;
    /// The provider's name for people (`PagerDuty`).
    fn name(&self) -> &'static str;
    /// Opens the on-call alert for `dedup_key` (an open alert with the same
    /// key stays one alert).
    async fn trigger(&self, dedup_key: &str, event: &PageEvent) -> Result<(), PageError>;
    /// Resolves / closes the alert of `dedup_key`, with `note` for people.
    async fn resolve(&self, dedup_key: &str, note: &str) -> Result<(), PageError>;
}

/// The pager `config` asks for, with its credential from `secrets`; `None`
/// when `paging.provider` is empty.
pub fn pager_from_config(
    config: &Config,
    secrets: &Secrets,
) -> Result<Option<Arc<dyn Pager>>, PagingSetupError> {
    match config.paging.provider.as_str() {
        "" => Ok(None),
        "pagerduty" => {
            let key =
                secrets
                    .pagerduty_routing_key
                    .clone()
                    .ok_or(PagingSetupError::MissingSecret {
                        provider: "pagerduty",
                        secret: "PIPEMEDIC_PAGERDUTY_ROUTING_KEY",
                    })?;
            Ok(Some(Arc::new(pagerduty::PagerDuty::new(
                &config.paging.pagerduty.events_url,
                key,
            )?)))
        }
        "opsgenie" => {
            let key = secrets
                .opsgenie_api_key
                .clone()
                .ok_or(PagingSetupError::MissingSecret {
                    provider: "opsgenie",
                    secret: "PIPEMEDIC_OPSGENIE_API_KEY",
                })?;
            Ok(Some(Arc::new(opsgenie::Opsgenie::new(
                &config.paging.opsgenie.api_url,
                key,
            )?)))
        }
        other => Err(PagingSetupError::UnknownProvider(other.to_string())),
    }
}

/// The wait after the `attempts`-th consecutive outage.
pub fn backoff(attempts: i64) -> Duration {
    let exp = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
    BACKOFF_START
        .saturating_mul(2u32.saturating_pow(exp))
        .min(BACKOFF_CAP)
}

/// A `Retry-After` value: seconds, or an HTTP date (relative to `now`).
pub(crate) fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(RETRY_AFTER_CAP));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    let wait = (at.with_timezone(&Utc) - now).num_milliseconds().max(0);
    Some(Duration::from_millis(u64::try_from(wait).unwrap_or(0)).min(RETRY_AFTER_CAP))
}

/// The `Retry-After` of an answer, if any.
pub(crate) fn retry_after_of(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, Utc::now()))
}

/// `text` without any occurrence of `secret`, on one line and short:
/// what a provider's error answer may be shown as.
pub(crate) fn scrub(text: &str, secret: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let scrubbed = if secret.is_empty() {
        one_line
    } else {
        one_line.replace(secret, "***")
    };
    clip(&scrubbed, 300)
}

/// A reqwest failure as a [`PageError`] (never with the URL's query,
/// which carries nothing secret here, but stays out of messages anyway).
pub(crate) fn send_error(provider: &'static str, e: &reqwest::Error) -> PageError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    PageError::Unavailable {
        provider,
        reason: what.to_string(),
    }
}

/// When and how hard to page, from `[paging]`.
#[derive(Debug, Clone)]
pub struct PagingSettings {
    pub on_expiry: bool,
    /// Page once this many fixes did not heal one incident (0: never).
    pub not_healed_times: u32,
    /// pipemedic's public URL, for the incident link in pages.
    pub public_url: String,
    /// The chat routes, whose links (dashboards, runbooks) go with a page.
    pub routes: Routes,
}

impl PagingSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            on_expiry: config.paging.on_expiry,
            not_healed_times: config.paging.not_healed_times,
            public_url: config.server.public_url.clone(),
            routes: Routes::from_config(&config.chat),
        }
    }
}

struct Inner {
    store: Store,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    pager: Option<Arc<dyn Pager>>,
    settings: PagingSettings,
    outbox: OutboxSignal,
    wake: Notify,
}

/// The paging queue and its delivery; cheap to clone. Without a provider
/// configured every call is a no-op.
#[derive(Clone)]
pub struct PagingService {
    inner: Arc<Inner>,
    /// What this process claims pages as.
    process_id: Arc<str>,
}

impl std::fmt::Debug for PagingService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagingService")
            .field("provider", &self.provider())
            .field("process_id", &self.process_id)
            .finish_non_exhaustive()
    }
}

/// What one page did, as the thread tells it.
fn thread_line(page: &StoredPage, name: &str, outcome: Result<(), &PageError>) -> ChatMessage {
    let reason = crate::chat::cards::inert(&page.reason);
    match (page.action, outcome) {
        (PageAction::Trigger, Ok(())) => ChatMessage::new(
            format!("Paged on-call ({name})"),
            Severity::Warning,
            format!("Paged on-call ({name}): {reason}."),
        ),
        (PageAction::Resolve, Ok(())) => ChatMessage::new(
            format!("Page resolved ({name})"),
            Severity::Info,
            format!("Resolved the on-call page ({name}): {reason}."),
        ),
        (action, Err(e)) => ChatMessage::new(
            format!("Paging failed ({name})"),
            Severity::Warning,
            format!(
                "Could not {} the on-call page ({name}); {}. {}",
                match action {
                    PageAction::Trigger => "send",
                    PageAction::Resolve => "resolve",
                },
                crate::chat::cards::inert(&e.to_string()),
                match action {
                    PageAction::Trigger => "Nobody was paged: page the on-call person yourself, and check `[paging]` and its key.",
                    PageAction::Resolve => "Resolve the alert by hand.",
                }
            ),
        ),
    }
}

impl PagingService {
    /// A service paging through `pager` (`None`: paging is off).
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        pager: Option<Arc<dyn Pager>>,
        settings: PagingSettings,
        outbox: OutboxSignal,
    ) -> Self {
        let now = clock.now();
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".to_string());
        let process_id = format!(
            "{host}-{}-{}",
            std::process::id(),
            now.timestamp_nanos_opt()
                .unwrap_or_else(|| now.timestamp_millis())
        );
        Self {
            inner: Arc::new(Inner {
                store,
                clock,
                metrics,
                pager,
                settings,
                outbox,
                wake: Notify::new(),
            }),
            process_id: Arc::from(process_id),
        }
    }

    /// The same service claiming pages as `process_id` (tests run two
    /// "processes" on one store).
    pub fn with_process_id(mut self, process_id: impl Into<String>) -> Self {
        self.process_id = Arc::from(process_id.into());
        self
    }

    /// `paging.provider`, or `None` when paging is off.
    pub fn provider(&self) -> Option<&'static str> {
        self.inner.pager.as_ref().map(|p| p.provider())
    }

    pub fn settings(&self) -> &PagingSettings {
        &self.inner.settings
    }

    /// Queues the trigger of `incident`'s page because of `reason`, once
    /// per incident (a second call changes nothing and returns false), and
    /// wakes the delivery loop. Audited as `page.requested`.
    pub async fn trigger(&self, incident: &Incident, reason: &str) -> Result<bool, StoreError> {
        let Some(pager) = &self.inner.pager else {
            return Ok(false);
        };
        let now = self.inner.clock.now();
        let settings = &self.inner.settings;
        let links = crate::chat::links::render(settings.routes.links(&incident.pipeline), incident)
            .into_iter()
            .map(|l| PageLink {
                text: l.label,
                href: l.url,
            })
            .collect();
        let event = PageEvent::for_incident(incident, reason, &settings.public_url, links);
        let page = NewPage {
            incident_id: incident.id,
            action: PageAction::Trigger,
            provider: pager.provider().to_string(),
            dedup_key: dedup_key(incident.id),
            reason: reason.to_string(),
            event: serde_json::to_value(&event).map_err(|e| StoreError::Corrupt {
                what: "page event".into(),
                detail: e.to_string(),
            })?,
        };
        let mut tx = self.inner.store.begin_write().await?;
        let Some(id) = tx.queue_page(&page, now).await? else {
            return Ok(false);
        };
        tx.commit_audited(
            now,
            "page.requested",
            &format!("incident/{}", incident.id),
            ACTOR,
            &json!({"page": id, "action": "trigger", "provider": page.provider,
                    "dedup_key": page.dedup_key, "reason": reason}),
        )
        .await?;
        tracing::info!(
            incident_id = incident.id,
            provider = pager.provider(),
            reason,
            "Page queued."
        );
        self.inner.wake.notify_one();
        Ok(true)
    }

    /// The incident closed: queues the resolve of its page, if it was
    /// paged. A trigger nobody has sent yet is cancelled instead (nobody
    /// is woken for an incident that is over). Idempotent.
    pub async fn resolve(&self, incident_id: i64, reason: &str) -> Result<bool, StoreError> {
        let Some(pager) = &self.inner.pager else {
            return Ok(false);
        };
        let now = self.inner.clock.now();
        let mut tx = self.inner.store.begin_write().await?;
        let Some(trigger) = tx.page_of(incident_id, PageAction::Trigger).await? else {
            return Ok(false);
        };
        let subject = format!("incident/{incident_id}");
        if trigger.status == PageStatus::Pending && tx.cancel_pending_page(trigger.id).await? {
            tx.commit_audited(
                now,
                "page.cancelled",
                &subject,
                ACTOR,
                &json!({"page": trigger.id, "why": reason}),
            )
            .await?;
            return Ok(false);
        }
        if matches!(trigger.status, PageStatus::Dead | PageStatus::Cancelled) {
            return Ok(false);
        }
        let page = NewPage {
            incident_id,
            action: PageAction::Resolve,
            provider: trigger.provider.clone(),
            dedup_key: trigger.dedup_key.clone(),
            reason: reason.to_string(),
            event: json!({}),
        };
        let Some(id) = tx.queue_page(&page, now).await? else {
            return Ok(false);
        };
        tx.commit_audited(
            now,
            "page.requested",
            &subject,
            ACTOR,
            &json!({"page": id, "action": "resolve", "provider": page.provider,
                    "dedup_key": page.dedup_key, "reason": reason}),
        )
        .await?;
        tracing::info!(
            incident_id,
            provider = pager.provider(),
            "Page resolve queued."
        );
        self.inner.wake.notify_one();
        Ok(true)
    }

    /// Queues the resolve of every paged incident that has closed since
    /// (by a person in chat or the API as well as by healing). Returns how
    /// many were queued.
    pub async fn resolve_closed(&self) -> Result<usize, StoreError> {
        if self.inner.pager.is_none() {
            return Ok(0);
        }
        let mut queued = 0;
        for incident_id in self.inner.store.paged_incidents_closed().await? {
            if self.resolve(incident_id, "the incident is closed").await? {
                queued += 1;
            }
        }
        Ok(queued)
    }

    /// Sends every page that is due, each claimed first; returns how many
    /// were settled (sent or refused). A resolve waits for its trigger to
    /// be settled. Safe to run in several processes at once.
    pub async fn deliver_due(&self) -> Result<usize, StoreError> {
        let Some(pager) = self.inner.pager.clone() else {
            return Ok(0);
        };
        let now = self.inner.clock.now();
        let lease = chrono::Duration::from_std(CLAIM_LEASE).unwrap_or_default();
        let mut settled = 0;
        for page in self.inner.store.pages_due(now, now - lease).await? {
            if page.action == PageAction::Resolve {
                let trigger = self
                    .inner
                    .store
                    .pages_for_incident(page.incident_id)
                    .await?
                    .into_iter()
                    .find(|p| p.action == PageAction::Trigger);
                match trigger.map(|t| t.status) {
                    Some(PageStatus::Sent) => {}
                    Some(PageStatus::Pending | PageStatus::Sending) => continue,
                    _ => {
                        let mut tx = self.inner.store.begin_write().await?;
                        tx.cancel_pending_page(page.id).await?;
                        tx.commit().await?;
                        continue;
                    }
                }
            }
            if self.deliver(pager.as_ref(), &page, now - lease).await? {
                settled += 1;
            }
        }
        Ok(settled)
    }

    /// Claims and sends one page; true when it was settled.
    async fn deliver(
        &self,
        pager: &dyn Pager,
        page: &StoredPage,
        abandoned_before: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let me = &*self.process_id;
        let now = self.inner.clock.now();
        let mut tx = self.inner.store.begin_write().await?;
        let Some(page) = tx.claim_page(page.id, me, now, abandoned_before).await? else {
            return Ok(false);
        };
        tx.commit().await?;

        let result = match page.action {
            PageAction::Trigger => match serde_json::from_value::<PageEvent>(page.event.clone()) {
                Ok(event) => pager.trigger(&page.dedup_key, &event).await,
                Err(e) => Err(PageError::Rejected {
                    provider: pager.provider(),
                    status: 0,
                    message: format!("the stored page is unreadable: {e}"),
                }),
            },
            PageAction::Resolve => pager.resolve(&page.dedup_key, &page.reason).await,
        };

        let now = self.inner.clock.now();
        let subject = format!("incident/{}", page.incident_id);
        let mut tx = self.inner.store.begin_write().await?;
        let settled = match &result {
            Ok(()) => {
                if !tx
                    .settle_page(page.id, me, PageStatus::Sent, None, now)
                    .await?
                {
                    return Ok(false);
                }
                self.say(
                    &mut tx,
                    &page,
                    thread_line(&page, pager.name(), Ok(())),
                    now,
                )
                .await?;
                tx.audit(
                    now,
                    "page.sent",
                    &subject,
                    ACTOR,
                    &json!({"page": page.id, "action": page.action.as_str(), "provider": page.provider,
                            "dedup_key": page.dedup_key, "attempts": page.attempts}),
                )
                .await?;
                self.inner.metrics.healing(match page.action {
                    PageAction::Trigger => "paged",
                    PageAction::Resolve => "page_resolved",
                });
                tracing::info!(
                    incident_id = page.incident_id,
                    provider = pager.provider(),
                    action = page.action.as_str(),
                    "Page delivered."
                );
                true
            }
            Err(PageError::RateLimited { retry_after, .. }) => {
                let wait = retry_after.unwrap_or_else(|| backoff(page.attempts - 1));
                let next = now + chrono::Duration::from_std(wait).unwrap_or_default();
                tx.retry_page(page.id, me, next, "rate limited").await?;
                tracing::info!(
                    incident_id = page.incident_id,
                    provider = pager.provider(),
                    retry_after_ms = wait.as_millis() as u64,
                    "Paging provider rate limit; waiting as asked."
                );
                false
            }
            Err(e @ PageError::Unavailable { .. }) => {
                let wait = backoff(page.attempts - 1);
                let next = now + chrono::Duration::from_std(wait).unwrap_or_default();
                tx.retry_page(page.id, me, next, &e.to_string()).await?;
                tracing::warn!(incident_id = page.incident_id, attempts = page.attempts, backoff_ms = wait.as_millis() as u64, error = %e, "Paging provider unavailable; will retry.");
                false
            }
            Err(e @ PageError::Rejected { .. }) => {
                let message = e.to_string();
                if !tx
                    .settle_page(page.id, me, PageStatus::Dead, Some(&message), now)
                    .await?
                {
                    return Ok(false);
                }
                self.say(
                    &mut tx,
                    &page,
                    thread_line(&page, pager.name(), Err(e)),
                    now,
                )
                .await?;
                tx.audit(
                    now,
                    "page.failed",
                    &subject,
                    ACTOR,
                    &json!({"page": page.id, "action": page.action.as_str(), "provider": page.provider,
                            "dedup_key": page.dedup_key, "error": message}),
                )
                .await?;
                self.inner.metrics.background_error("paging");
                tracing::error!(incident_id = page.incident_id, provider = pager.provider(), action = page.action.as_str(), error = %e, "Page refused by the provider; given up.");
                true
            }
        };
        tx.commit().await?;
        if settled {
            self.inner.outbox.notify();
        }
        Ok(settled)
    }

    /// Queues `message` in the incident's thread inside `tx` (nothing when
    /// the incident is silenced or not routed).
    async fn say(
        &self,
        tx: &mut WriteTx,
        page: &StoredPage,
        message: ChatMessage,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some(incident) = tx.incident(page.incident_id).await? else {
            return Ok(());
        };
        let Some((platform, channel)) = incident.route.as_ref().filter(|_| !incident.silenced)
        else {
            return Ok(());
        };
        outbox::queue(
            tx,
            Some(incident.id),
            platform,
            channel,
            OutboxKind::ThreadReply,
            &outbox::OutboxPayload::message(message, None),
            now,
        )
        .await?;
        Ok(())
    }

    /// Delivers pages until `shutdown`: at once when one is queued, and
    /// every [`POLL`] for retries that come due. Does nothing without a
    /// provider.
    pub fn start(&self, tracker: &TaskTracker, shutdown: &CancellationToken) {
        if self.inner.pager.is_none() {
            return;
        }
        let service = self.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            loop {
                let woken = service.inner.wake.notified();
                if let Err(e) = service.deliver_due().await {
                    service.inner.metrics.background_error("paging");
                    tracing::warn!(error = %e, "Paging pass failed; retrying.");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(POLL) => {}
                    _ = woken => {}
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(40), Duration::from_secs(300));
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now: DateTime<Utc> = "2026-11-25T12:00:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 12:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("999999", now), Some(RETRY_AFTER_CAP));
    }

    #[test]
    fn provider_answers_never_show_the_secret() {
        let shown = scrub("bad key\n  R0UT1NGKEY is wrong", "R0UT1NGKEY");
        assert_eq!(shown, "bad key *** is wrong");
        assert_eq!(clip("abcdef", 4), "abc…");
    }

    #[test]
    fn one_dedup_key_per_incident() {
        assert_eq!(dedup_key(42), "pipemedic-incident-42");
        assert_ne!(dedup_key(4), dedup_key(42));
    }
}
