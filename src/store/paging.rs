//! Store operations of reminders and pages: the claim that makes a plan's
//! reminder go out once, and the durable queue of pages to the on-call
//! provider (one trigger and one resolve per incident at most, each claimed
//! before its call). Only persistence; when to remind or page, and what the
//! page says, is `healing` and `paging`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::approvals::StoredRequest;
use super::incidents::corrupt;
use super::write::WriteTx;
use super::{from_ms, ms, Store, StoreError};

/// What a page does at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageAction {
    /// Open (or, with the same dedup key, leave open) the on-call alert.
    Trigger,
    /// Resolve / close it.
    Resolve,
}

impl PageAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trigger => "trigger",
            Self::Resolve => "resolve",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        [Self::Trigger, Self::Resolve]
            .into_iter()
            .find(|a| a.as_str() == raw)
    }
}

/// Where a page stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageStatus {
    /// Waiting for its (next) attempt.
    Pending,
    /// Claimed by a process that is making the call.
    Sending,
    /// The provider accepted it.
    Sent,
    /// The provider refused it; it is never sent again.
    Dead,
    /// No longer needed (the incident closed before its trigger went out).
    Cancelled,
}

impl PageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Sending,
            Self::Sent,
            Self::Dead,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }
}

/// A page to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPage {
    pub incident_id: i64,
    pub action: PageAction,
    /// `pagerduty` or `opsgenie`.
    pub provider: String,
    /// The same for the trigger and the resolve of one incident.
    pub dedup_key: String,
    /// Why pipemedic pages (or resolves), in words for people.
    pub reason: String,
    /// What the provider is told (summary, severity, details), as built
    /// when the page was decided.
    pub event: serde_json::Value,
}

/// A page as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredPage {
    pub id: i64,
    pub incident_id: i64,
    pub action: PageAction,
    pub provider: String,
    pub dedup_key: String,
    pub reason: String,
    pub event: serde_json::Value,
    pub status: PageStatus,
    pub attempts: i64,
    pub claimed_by: Option<String>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

const PAGE_COLUMNS: &str = "id, incident_id, action, provider, dedup_key, reason, event, status, \
     attempts, claimed_by, claimed_at_ms, next_attempt_at_ms, created_at_ms, sent_at_ms, last_error";

fn page_from_row(r: &sqlx::any::AnyRow) -> Result<StoredPage, StoreError> {
    let action: String = r.get(2);
    let event: String = r.get(6);
    let status: String = r.get(7);
    Ok(StoredPage {
        id: r.get(0),
        incident_id: r.get(1),
        action: PageAction::parse(&action).ok_or_else(|| corrupt("pages.action", &action))?,
        provider: r.get(3),
        dedup_key: r.get(4),
        reason: r.get(5),
        event: serde_json::from_str(&event).map_err(|e| corrupt("pages.event", e))?,
        status: PageStatus::parse(&status).ok_or_else(|| corrupt("pages.status", &status))?,
        attempts: r.get(8),
        claimed_by: r.get(9),
        claimed_at: r.get::<Option<i64>, _>(10).map(from_ms),
        next_attempt_at: from_ms(r.get(11)),
        created_at: from_ms(r.get(12)),
        sent_at: r.get::<Option<i64>, _>(13).map(from_ms),
        last_error: r.get(14),
    })
}

impl Store {
    /// Pending requests past the middle of their approval window and not
    /// yet expired that have had no reminder, oldest first.
    pub async fn requests_due_for_reminder(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<StoredRequest>, StoreError> {
        let ids: Vec<i64> = sqlx::query(
            "SELECT r.id FROM approval_requests r WHERE r.status = 'pending' \
             AND (r.created_at_ms + r.expires_at_ms) / 2 <= $1 AND r.expires_at_ms > $1 \
             AND NOT EXISTS (SELECT 1 FROM approval_reminders m WHERE m.request_id = r.id) \
             ORDER BY r.id",
        )
        .bind(ms(now))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| r.get::<i64, _>(0))
        .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(request) = self.approval_request(id).await? {
                out.push(request);
            }
        }
        Ok(out)
    }

    /// When a request's reminder was sent, if it was.
    pub async fn reminder_sent_at(
        &self,
        request_id: i64,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query("SELECT sent_at_ms FROM approval_reminders WHERE request_id = $1")
            .bind(request_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| from_ms(r.get(0))))
    }

    /// Every page of an incident, in the order they were decided.
    pub async fn pages_for_incident(
        &self,
        incident_id: i64,
    ) -> Result<Vec<StoredPage>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {PAGE_COLUMNS} FROM pages WHERE incident_id = $1 ORDER BY id"
        ))
        .bind(incident_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(page_from_row).collect()
    }

    /// Pages that may be sent now, in id order: pending ones whose attempt
    /// is due, and ones claimed before `abandoned_before` whose process
    /// never settled them (it stopped mid-call; the dedup key makes the
    /// second call harmless).
    pub async fn pages_due(
        &self,
        now: DateTime<Utc>,
        abandoned_before: DateTime<Utc>,
    ) -> Result<Vec<StoredPage>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {PAGE_COLUMNS} FROM pages WHERE (status = 'pending' AND next_attempt_at_ms <= $1) \
             OR (status = 'sending' AND claimed_at_ms < $2) ORDER BY id"
        ))
        .bind(ms(now))
        .bind(ms(abandoned_before))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(page_from_row).collect()
    }

    /// Incidents whose trigger went out and that are now resolved or
    /// dismissed, without a resolve queued yet.
    pub async fn paged_incidents_closed(&self) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.incident_id FROM pages p JOIN incidents i ON i.id = p.incident_id \
             WHERE p.action = 'trigger' AND p.status IN ('pending', 'sending', 'sent') \
             AND i.status IN ('resolved', 'dismissed') \
             AND NOT EXISTS (SELECT 1 FROM pages q WHERE q.incident_id = p.incident_id AND q.action = 'resolve') \
             ORDER BY p.incident_id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(|r| r.get::<i64, _>(0)).collect())
    }
}

impl WriteTx {
    /// Claims the reminder of a request: true for exactly one caller, ever.
    pub async fn claim_reminder(
        &mut self,
        request_id: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "INSERT INTO approval_reminders (request_id, sent_at_ms) VALUES ($1, $2) \
             ON CONFLICT (request_id) DO NOTHING RETURNING request_id",
        )
        .bind(request_id)
        .bind(ms(now))
        .fetch_optional(self.conn())
        .await?;
        Ok(row.is_some())
    }

    /// Queues a page, due at once. Returns its id, or `None` when the
    /// incident already has a page of that action (deciding twice pages
    /// once).
    pub async fn queue_page(
        &mut self,
        page: &NewPage,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "INSERT INTO pages (incident_id, action, provider, dedup_key, reason, event, status, attempts, \
             next_attempt_at_ms, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7) \
             ON CONFLICT (incident_id, action) DO NOTHING RETURNING id",
        )
        .bind(page.incident_id)
        .bind(page.action.as_str())
        .bind(&page.provider)
        .bind(&page.dedup_key)
        .bind(&page.reason)
        .bind(page.event.to_string())
        .bind(ms(now))
        .fetch_optional(self.conn())
        .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// An incident's page of `action`, read inside this transaction.
    pub async fn page_of(
        &mut self,
        incident_id: i64,
        action: PageAction,
    ) -> Result<Option<StoredPage>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {PAGE_COLUMNS} FROM pages WHERE incident_id = $1 AND action = $2"
        ))
        .bind(incident_id)
        .bind(action.as_str())
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(page_from_row).transpose()
    }

    /// Claims a page for `claimed_by` (now `sending`, attempts + 1) if it is
    /// still due: pending and due at `now`, or claimed before
    /// `abandoned_before` and never settled. Exactly one caller gets it;
    /// commit before making the call.
    pub async fn claim_page(
        &mut self,
        id: i64,
        claimed_by: &str,
        now: DateTime<Utc>,
        abandoned_before: DateTime<Utc>,
    ) -> Result<Option<StoredPage>, StoreError> {
        let row = sqlx::query(
            "UPDATE pages SET status = 'sending', claimed_by = $2, claimed_at_ms = $3, attempts = attempts + 1 \
             WHERE id = $1 AND ((status = 'pending' AND next_attempt_at_ms <= $3) \
             OR (status = 'sending' AND claimed_at_ms < $4)) RETURNING id",
        )
        .bind(id)
        .bind(claimed_by)
        .bind(ms(now))
        .bind(ms(abandoned_before))
        .fetch_optional(self.conn())
        .await?;
        if row.is_none() {
            return Ok(None);
        }
        let row = sqlx::query(&format!("SELECT {PAGE_COLUMNS} FROM pages WHERE id = $1"))
            .bind(id)
            .fetch_one(self.conn())
            .await?;
        page_from_row(&row).map(Some)
    }

    /// Settles a page this claimant holds: `sent`, `dead` or `cancelled`.
    /// Returns false when the claim was lost (another process took the
    /// page over); the caller then says nothing.
    pub async fn settle_page(
        &mut self,
        id: i64,
        claimed_by: &str,
        status: PageStatus,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE pages SET status = $3, sent_at_ms = CASE WHEN $3 = 'sent' THEN $4 ELSE sent_at_ms END, \
             last_error = $5 WHERE id = $1 AND status = 'sending' AND claimed_by = $2",
        )
        .bind(id)
        .bind(claimed_by)
        .bind(status.as_str())
        .bind(ms(now))
        .bind(error)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// Gives a claimed page back for another attempt at `next_attempt`.
    pub async fn retry_page(
        &mut self,
        id: i64,
        claimed_by: &str,
        next_attempt: DateTime<Utc>,
        error: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE pages SET status = 'pending', next_attempt_at_ms = $3, last_error = $4 \
             WHERE id = $1 AND status = 'sending' AND claimed_by = $2",
        )
        .bind(id)
        .bind(claimed_by)
        .bind(ms(next_attempt))
        .bind(error)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// Cancels a page nobody has claimed yet; true when it was.
    pub async fn cancel_pending_page(&mut self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE pages SET status = 'cancelled' WHERE id = $1 AND status = 'pending'",
        )
        .bind(id)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(done == 1)
    }
}
