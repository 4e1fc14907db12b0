//! The durable chat outbox: every message pipemedic sends is first queued
//! in the store (`chat_outbox`), then delivered by one worker per platform,
//! so an outage or a rate limit delays alerts but never loses them, and
//! ingestion never waits for a chat platform.
//!
//! Delivery is strictly in order per channel: only the oldest pending row
//! of a channel may be sent, so a failing head holds back its channel and
//! no other. A rate limit waits the `Retry-After` the platform named; an
//! outage backs off 1 s, 2 s, 4 s … up to 5 minutes; a rejection is final
//! (the row is marked dead, logged and counted). Rows that concern an
//! incident's alert (updates, thread lines, charts) find the alert's
//! message at send time.
//!
//! Replicas: on PostgreSQL a row is claimed with `FOR UPDATE SKIP LOCKED`
//! and held while it is sent; on SQLite (one process) the worker is the
//! only sender and sends outside any write transaction, so a slow platform
//! never holds the store's writer.
//!
//! This module decides nothing about content: services queue rows
//! ([`queue`]), adapters speak to the platforms.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::chat::{ChatError, ChatMessage, ChatPlatform};

use crate::clock::Clock;
use crate::domain::MessageRef;
use crate::metrics::Metrics;
use crate::store::{
    Backend, NewOutbox, OutboxKind, OutboxRow, OutboxStatus, Store, StoreError, WriteTx,
};

/// First wait after a platform outage; doubled per failed attempt.
const BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest wait between attempts during an outage.
const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// What one outbox row carries. `target` is an explicit message (the thread
/// to post in, the message to update or react to); without it, rows of an
/// incident aim at the incident's alert.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutboxPayload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<ChatMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<MessageRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// PNG bytes, hex-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub png_hex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl OutboxPayload {
    pub fn message(message: ChatMessage, target: Option<MessageRef>) -> Self {
        Self {
            message: Some(message),
            target,
            ..Self::default()
        }
    }

    pub fn png(filename: &str, title: &str, png: &[u8], target: Option<MessageRef>) -> Self {
        Self {
            filename: Some(filename.into()),
            title: Some(title.into()),
            png_hex: Some(hex::encode(png)),
            target,
            ..Self::default()
        }
    }

    pub fn ephemeral(user: &str, text: &str) -> Self {
        Self {
            user: Some(user.into()),
            text: Some(text.into()),
            ..Self::default()
        }
    }

    pub fn reaction(emoji: &str, target: Option<MessageRef>) -> Self {
        Self {
            emoji: Some(emoji.into()),
            target,
            ..Self::default()
        }
    }
}

/// Queues one delivery inside `tx` (it is sent once `tx` commits).
pub async fn queue(
    tx: &mut WriteTx,
    incident_id: Option<i64>,
    platform: &str,
    channel: &str,
    kind: OutboxKind,
    payload: &OutboxPayload,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<i64, StoreError> {
    let payload = serde_json::to_value(payload).map_err(|e| StoreError::Corrupt {
        what: "outbox payload".into(),
        detail: e.to_string(),
    })?;
    tx.enqueue(
        &NewOutbox {
            incident_id,
            platform: platform.to_string(),
            channel: channel.to_string(),
            kind,
            payload,
        },
        now,
    )
    .await
}

/// Wakes the workers when something was queued, so they need not wait for
/// their next poll. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct OutboxSignal(Arc<Notify>);

impl OutboxSignal {
    pub fn notify(&self) {
        self.0.notify_waiters();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The wait after the `attempts`-th consecutive outage failure.
pub fn backoff(attempts: i64) -> Duration {
    let exp = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
    BACKOFF_START
        .saturating_mul(2u32.saturating_pow(exp))
        .min(BACKOFF_CAP)
}

enum Target {
    Ready(Option<MessageRef>),
    Wait,
    Dead(String),
}

/// Delivers one platform's queued rows.
pub struct OutboxWorker {
    store: Store,
    platform: Arc<dyn ChatPlatform>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    poll: Duration,
    signal: OutboxSignal,
}

impl OutboxWorker {
    pub fn new(
        store: Store,
        platform: Arc<dyn ChatPlatform>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        poll: Duration,
        signal: OutboxSignal,
    ) -> Self {
        Self {
            store,
            platform,
            clock,
            metrics,
            poll,
            signal,
        }
    }

    /// Delivers until `shutdown` is cancelled, looking again every poll
    /// interval or when signalled.
    pub async fn run(self, shutdown: CancellationToken) {
        let platform = self.platform.platform();
        tracing::info!(%platform, poll_ms = self.poll.as_millis() as u64, "Chat outbox worker started.");
        loop {
            let notified = self.signal.0.notified();
            if let Err(e) = self.deliver_due().await {
                self.metrics.background_error("chat_outbox");
                tracing::warn!(%platform, error = %e, "Chat outbox pass failed; retrying.");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.poll) => {}
                _ = notified => {}
            }
        }
    }

    /// Sends every row that is due and at the head of its channel, again
    /// and again while that makes progress. Returns how many rows were
    /// settled (sent or dead).
    pub async fn deliver_due(&self) -> Result<usize, OutboxError> {
        let platform = self.platform.platform().as_str();
        let mut settled = 0;
        loop {
            let now = self.clock.now();
            let heads = self.store.outbox_heads(platform).await?;
            let mut progress = false;
            for head in heads.into_iter().filter(|h| h.next_attempt_at <= now) {
                if self.deliver(head).await? {
                    settled += 1;
                    progress = true;
                }
            }
            if !progress {
                return Ok(settled);
            }
        }
    }

    /// Tries one row; true when it was settled.
    async fn deliver(&self, head: OutboxRow) -> Result<bool, OutboxError> {
        let backend = self.store.backend();
        let (held, row) = if backend == Backend::Postgres {
            let mut tx = self.store.begin_write().await?;
            match tx.claim_outbox_row(head.id, backend).await? {
                Some(row) => (Some(tx), row),
                None => return Ok(false),
            }
        } else {
            (None, head)
        };
        let target = self.target(&row).await?;
        let target = match target {
            Target::Ready(t) => t,
            Target::Wait => return Ok(false),
            Target::Dead(reason) => {
                let mut tx = match held {
                    Some(tx) => tx,
                    None => self.store.begin_write().await?,
                };
                self.dead(&mut tx, &row, &reason).await?;
                tx.commit().await?;
                return Ok(true);
            }
        };
        let result = self.send(&row, target).await;
        let mut tx = match held {
            Some(tx) => tx,
            None => self.store.begin_write().await?,
        };
        let now = self.clock.now();
        let platform = row.platform.as_str();
        let settled = match result {
            Ok(sent) => {
                tx.outbox_sent(row.id, sent.as_ref(), now).await?;
                if let (OutboxKind::Post, Some(incident), Some(sent)) =
                    (row.kind, row.incident_id, sent.as_ref())
                {
                    let is_root = tx
                        .incident(incident)
                        .await?
                        .is_some_and(|i| i.root_ref.is_none());
                    if is_root {
                        tx.set_incident_root(incident, sent).await?;
                    }
                }
                self.metrics.chat_delivery(platform, "sent");
                tracing::debug!(platform, outbox_id = row.id, kind = row.kind.as_str(), channel = %row.channel, "Chat message delivered.");
                true
            }
            Err(ChatError::RateLimited { retry_after }) => {
                let wait = chrono::Duration::from_std(retry_after)
                    .unwrap_or_else(|_| chrono::Duration::seconds(1));
                tx.outbox_retry(row.id, now + wait, "rate limited").await?;
                self.metrics.chat_delivery(platform, "rate_limited");
                tracing::info!(
                    platform,
                    outbox_id = row.id,
                    retry_after_ms = retry_after.as_millis() as u64,
                    "Chat platform rate limit; waiting as asked."
                );
                false
            }
            Err(ChatError::Unavailable { reason }) => {
                let wait = backoff(row.attempts);
                let next = now + chrono::Duration::from_std(wait).unwrap_or_default();
                tx.outbox_retry(row.id, next, &reason).await?;
                self.metrics.chat_delivery(platform, "retry");
                tracing::warn!(platform, outbox_id = row.id, attempts = row.attempts + 1, backoff_ms = wait.as_millis() as u64, reason = %reason, "Chat platform unavailable; will retry.");
                false
            }
            Err(ChatError::Rejected { code }) => {
                self.dead(&mut tx, &row, &code).await?;
                true
            }
        };
        tx.commit().await?;
        Ok(settled)
    }

    async fn dead(
        &self,
        tx: &mut WriteTx,
        row: &OutboxRow,
        reason: &str,
    ) -> Result<(), StoreError> {
        tx.outbox_dead(row.id, reason).await?;
        self.metrics.chat_delivery(&row.platform, "dead");
        tracing::error!(platform = %row.platform, outbox_id = row.id, kind = row.kind.as_str(), channel = %row.channel, incident_id = row.incident_id, reason, "Chat message refused by the platform; given up.");
        Ok(())
    }

    /// The message a row aims at: explicit, the incident's alert, or none.
    async fn target(&self, row: &OutboxRow) -> Result<Target, StoreError> {
        let payload: OutboxPayload = match serde_json::from_value(row.payload.clone()) {
            Ok(p) => p,
            Err(e) => return Ok(Target::Dead(format!("unreadable payload: {e}"))),
        };
        if payload.target.is_some() {
            return Ok(Target::Ready(payload.target));
        }
        let needs_root = !matches!(row.kind, OutboxKind::Post | OutboxKind::Ephemeral);
        let Some(incident_id) = row.incident_id.filter(|_| needs_root) else {
            return Ok(Target::Ready(None));
        };
        if let Some(root) = self
            .store
            .incident(incident_id)
            .await?
            .and_then(|i| i.root_ref)
        {
            return Ok(Target::Ready(Some(root)));
        }
        Ok(match self.store.incident_post_status(incident_id).await? {
            Some(OutboxStatus::Pending) => Target::Wait,
            _ => Target::Dead("the incident's alert was never posted".into()),
        })
    }

    async fn send(
        &self,
        row: &OutboxRow,
        target: Option<MessageRef>,
    ) -> Result<Option<MessageRef>, ChatError> {
        let payload: OutboxPayload = serde_json::from_value(row.payload.clone())
            .map_err(|e| ChatError::rejected(format!("unreadable payload: {e}")))?;
        let message = || {
            payload
                .message
                .clone()
                .ok_or_else(|| ChatError::rejected("payload has no message"))
        };
        let p = &self.platform;
        match row.kind {
            OutboxKind::Post | OutboxKind::ThreadReply => p
                .post(&row.channel, target.as_ref(), &message()?)
                .await
                .map(Some),
            OutboxKind::Update => {
                let target = target.ok_or_else(|| ChatError::rejected("nothing to update"))?;
                p.update(&target, &message()?).await?;
                Ok(Some(target))
            }
            OutboxKind::Upload => {
                let bytes = payload
                    .png_hex
                    .as_deref()
                    .and_then(|h| hex::decode(h).ok())
                    .ok_or_else(|| ChatError::rejected("payload has no PNG"))?;
                p.upload_png(
                    &row.channel,
                    target.as_ref(),
                    payload.filename.as_deref().unwrap_or("chart.png"),
                    bytes,
                    payload.title.as_deref().unwrap_or("chart"),
                )
                .await?;
                Ok(None)
            }
            OutboxKind::React => {
                let target = target.ok_or_else(|| ChatError::rejected("nothing to react to"))?;
                p.react(&target, payload.emoji.as_deref().unwrap_or("eyes"))
                    .await?;
                Ok(Some(target))
            }
            OutboxKind::Ephemeral => {
                p.post_ephemeral(
                    &row.channel,
                    payload.user.as_deref().unwrap_or_default(),
                    payload.text.as_deref().unwrap_or_default(),
                )
                .await?;
                Ok(None)
            }
        }
    }
}

/// What every outbox worker shares.
#[derive(Clone)]
pub struct Workers {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// How often each worker looks for due rows.
    pub poll: Duration,
    pub signal: OutboxSignal,
}

/// Starts one worker per platform.
pub fn start(
    workers: &Workers,
    platforms: &[Arc<dyn ChatPlatform>],
    tracker: &tokio_util::task::TaskTracker,
    shutdown: &CancellationToken,
) {
    for platform in platforms {
        let worker = OutboxWorker::new(
            workers.store.clone(),
            platform.clone(),
            workers.clock.clone(),
            workers.metrics.clone(),
            workers.poll,
            workers.signal.clone(),
        );
        tracker.spawn(worker.run(shutdown.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(8), Duration::from_secs(256));
        assert_eq!(backoff(9), Duration::from_secs(300));
        assert_eq!(backoff(1000), Duration::from_secs(300));
    }
}
