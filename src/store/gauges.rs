//! Read-only counts of the work in flight, for the operational gauges that
//! `/metrics` serves: incidents not yet closed by status, pending chat
//! outbox rows per platform with the age of the oldest, and approval
//! requests waiting for votes. Only counting; what the numbers mean and
//! when they are read is `metrics`'.
//!
//! Each query is small and answered from an index where the schema has
//! one (outbox rows by platform and status, approval requests by status).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{from_ms, Store, StoreError};
use crate::domain::{IncidentStatus, Platform};

/// Pending chat deliveries of one platform.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxBacklog {
    pub platform: Platform,
    /// Rows waiting to be sent (not yet sent, not dead).
    pub pending: i64,
    /// When the oldest of them was queued; `None` when there are none.
    pub oldest_queued_at: Option<DateTime<Utc>>,
}

/// The counts behind the store gauges, read together.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkInFlight {
    /// Every status that is not closed, with its number of incidents
    /// (zero included).
    pub incidents: Vec<(IncidentStatus, i64)>,
    /// Every platform, with its pending outbox rows (zero included).
    pub outbox: Vec<OutboxBacklog>,
    /// Approval requests waiting for votes.
    pub approvals_pending: i64,
}

/// The platforms an outbox row can be queued for.
const PLATFORMS: [Platform; 3] = [Platform::Slack, Platform::Discord, Platform::Console];

impl Store {
    /// Counts the work in flight. Read-only; three short queries.
    pub async fn work_in_flight(&self) -> Result<WorkInFlight, StoreError> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) FROM incidents \
             WHERE status NOT IN ('resolved', 'dismissed') GROUP BY status",
        )
        .fetch_all(self.pool())
        .await?;
        let mut incidents: Vec<(IncidentStatus, i64)> = IncidentStatus::ALL
            .into_iter()
            .filter(|s| !s.is_closed())
            .map(|s| (s, 0))
            .collect();
        for row in &rows {
            let status: String = row.get(0);
            let n: i64 = row.get(1);
            let parsed = IncidentStatus::parse(&status).ok_or_else(|| StoreError::Corrupt {
                what: "incidents.status".into(),
                detail: status.clone(),
            })?;
            if let Some(slot) = incidents.iter_mut().find(|(s, _)| *s == parsed) {
                slot.1 += n;
            }
        }

        let rows = sqlx::query(
            "SELECT platform, COUNT(*), MIN(created_at_ms) FROM chat_outbox \
             WHERE platform IN ($1, $2, $3) AND status = 'pending' GROUP BY platform",
        )
        .bind(PLATFORMS[0].as_str())
        .bind(PLATFORMS[1].as_str())
        .bind(PLATFORMS[2].as_str())
        .fetch_all(self.pool())
        .await?;
        let mut outbox: Vec<OutboxBacklog> = PLATFORMS
            .into_iter()
            .map(|platform| OutboxBacklog {
                platform,
                pending: 0,
                oldest_queued_at: None,
            })
            .collect();
        for row in &rows {
            let platform: String = row.get(0);
            if let Some(slot) = outbox.iter_mut().find(|b| b.platform.as_str() == platform) {
                slot.pending = row.get(1);
                slot.oldest_queued_at = row.get::<Option<i64>, _>(2).map(from_ms);
            }
        }

        let row = sqlx::query("SELECT COUNT(*) FROM approval_requests WHERE status = 'pending'")
            .fetch_one(self.pool())
            .await?;
        Ok(WorkInFlight {
            incidents,
            outbox,
            approvals_pending: row.get(0),
        })
    }
}
