//! Store operations of the durable chat outbox: every message pipemedic
//! sends to chat is queued here in the transaction that decides it, then
//! claimed, sent and marked by the delivery loop (`chat::outbox`). Only
//! persistence; what to queue and when is the services'.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::incidents::{corrupt, to_json};
use super::write::WriteTx;
use super::{from_ms, ms, Backend, Store, StoreError};
use crate::domain::MessageRef;

/// The kinds of chat delivery the outbox performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxKind {
    Post,
    Update,
    ThreadReply,
    Upload,
    React,
    Ephemeral,
}

impl OutboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "post",
            Self::Update => "update",
            Self::ThreadReply => "thread_reply",
            Self::Upload => "upload",
            Self::React => "react",
            Self::Ephemeral => "ephemeral",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Post,
            Self::Update,
            Self::ThreadReply,
            Self::Upload,
            Self::React,
            Self::Ephemeral,
        ]
        .into_iter()
        .find(|k| k.as_str() == raw)
    }
}

/// Delivery state of an outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    Pending,
    Sent,
    Dead,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Dead => "dead",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Dead]
            .into_iter()
            .find(|k| k.as_str() == raw)
    }
}

/// A chat delivery to make.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutbox {
    pub incident_id: Option<i64>,
    pub platform: String,
    pub channel: String,
    pub kind: OutboxKind,
    pub payload: serde_json::Value,
}

/// A queued chat delivery as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub incident_id: Option<i64>,
    pub platform: String,
    pub channel: String,
    pub kind: OutboxKind,
    pub payload: serde_json::Value,
    pub status: OutboxStatus,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub sent_ref: Option<MessageRef>,
    pub last_error: Option<String>,
}

const OUTBOX_COLUMNS: &str = "id, incident_id, platform, channel, kind, payload, status, \
     attempts, next_attempt_at_ms, created_at_ms, sent_ref, last_error";

fn outbox_from_row(r: &sqlx::any::AnyRow) -> Result<OutboxRow, StoreError> {
    let kind: String = r.get(4);
    let payload: String = r.get(5);
    let status: String = r.get(6);
    let sent: Option<String> = r.get(10);
    Ok(OutboxRow {
        id: r.get(0),
        incident_id: r.get(1),
        platform: r.get(2),
        channel: r.get(3),
        kind: OutboxKind::parse(&kind).ok_or_else(|| corrupt("chat_outbox.kind", &kind))?,
        payload: serde_json::from_str(&payload).map_err(|e| corrupt("chat_outbox.payload", e))?,
        status: OutboxStatus::parse(&status)
            .ok_or_else(|| corrupt("chat_outbox.status", &status))?,
        attempts: r.get(7),
        next_attempt_at: from_ms(r.get(8)),
        created_at: from_ms(r.get(9)),
        sent_ref: sent
            .map(|s| serde_json::from_str(&s).map_err(|e| corrupt("chat_outbox.sent_ref", e)))
            .transpose()?,
        last_error: r.get(11),
    })
}

impl Store {
    /// Outbox rows in id order: of one platform, or all.
    pub async fn outbox(&self, platform: Option<&str>) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM chat_outbox WHERE ($1 = '' OR platform = $1) ORDER BY id"
        ))
        .bind(platform.unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(outbox_from_row).collect()
    }

    /// The first pending row of every channel of `platform`, in id order:
    /// the only rows that may be sent next.
    pub async fn outbox_heads(&self, platform: &str) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM chat_outbox o WHERE platform = $1 AND status = 'pending' \
             AND id = (SELECT MIN(p.id) FROM chat_outbox p WHERE p.platform = o.platform \
             AND p.channel = o.channel AND p.status = 'pending') ORDER BY id"
        ))
        .bind(platform)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(outbox_from_row).collect()
    }

    /// The delivery state of an incident's alert post, if one was queued.
    pub async fn incident_post_status(
        &self,
        incident_id: i64,
    ) -> Result<Option<OutboxStatus>, StoreError> {
        let row = sqlx::query(
            "SELECT status FROM chat_outbox WHERE incident_id = $1 AND kind = 'post' ORDER BY id LIMIT 1",
        )
        .bind(incident_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.and_then(|r| OutboxStatus::parse(&r.get::<String, _>(0))))
    }
}

impl WriteTx {
    /// Queues a chat delivery, due at once. Returns its id.
    pub async fn enqueue(
        &mut self,
        new: &NewOutbox,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO chat_outbox (incident_id, platform, channel, kind, payload, status, attempts, \
             next_attempt_at_ms, created_at_ms) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6) RETURNING id",
        )
        .bind(new.incident_id)
        .bind(&new.platform)
        .bind(&new.channel)
        .bind(new.kind.as_str())
        .bind(new.payload.to_string())
        .bind(ms(now))
        .fetch_one(self.conn())
        .await?;
        Ok(row.get(0))
    }

    /// Claims a pending outbox row for delivery. On PostgreSQL the row stays
    /// locked (`FOR UPDATE SKIP LOCKED`) until this transaction ends, so
    /// another replica skips it; `None` when it is taken or no longer pending.
    pub async fn claim_outbox_row(
        &mut self,
        id: i64,
        backend: Backend,
    ) -> Result<Option<OutboxRow>, StoreError> {
        let lock = match backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let row = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM chat_outbox WHERE id = $1 AND status = 'pending'{lock}"
        ))
        .bind(id)
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(outbox_from_row).transpose()
    }

    /// Marks a row delivered, with the message it created or targeted.
    pub async fn outbox_sent(
        &mut self,
        id: i64,
        sent: Option<&MessageRef>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let json = sent.map(|r| to_json("sent_ref", r)).transpose()?;
        sqlx::query(
            "UPDATE chat_outbox SET status = 'sent', attempts = attempts + 1, sent_ref = $1, sent_ts = $2, \
             next_attempt_at_ms = $3, last_error = NULL WHERE id = $4",
        )
        .bind(json)
        .bind(sent.map(|r| r.ts_or_id.clone()))
        .bind(ms(now))
        .bind(id)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Records a failed attempt; the row is tried again at `next_attempt`.
    pub async fn outbox_retry(
        &mut self,
        id: i64,
        next_attempt: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE chat_outbox SET attempts = attempts + 1, next_attempt_at_ms = $1, last_error = $2 \
             WHERE id = $3",
        )
        .bind(ms(next_attempt))
        .bind(error)
        .bind(id)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Gives up on a row: it will never be sent.
    pub async fn outbox_dead(&mut self, id: i64, error: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE chat_outbox SET status = 'dead', attempts = attempts + 1, last_error = $1 WHERE id = $2",
        )
        .bind(error)
        .bind(id)
        .execute(self.conn())
        .await?;
        Ok(())
    }
}
