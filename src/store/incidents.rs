//! Store operations of incidents and what chat says back about them:
//! incidents, approval decisions from chat and pipeline silences (the chat
//! outbox is in `outbox`). Only persistence; what to record and when is the
//! incident and chat services'.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::write::WriteTx;
use super::{from_ms, ms, Store, StoreError};
use crate::domain::{Choice, MessageRef, Via};
use crate::domain::{Incident, IncidentSeverity, IncidentStatus, Run, Verdict};

pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        detail: e.to_string(),
    }
}

pub(super) fn to_json<T: Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| corrupt(what, e))
}

pub(super) const INCIDENT_COLUMNS: &str = "id, pipeline, status, severity, max_grade, anomaly_id, \
     first_run_pk, last_run_pk, run_count, opened_at_ms, updated_at_ms, resolved_at_ms, \
     route_platform, route_channel, root_ref, verdict, latest_run, silenced";

pub(super) fn incident_from_row(r: &sqlx::any::AnyRow) -> Result<Incident, StoreError> {
    let status: String = r.get(2);
    let severity: String = r.get(3);
    let platform: Option<String> = r.get(12);
    let channel: Option<String> = r.get(13);
    let root: Option<String> = r.get(14);
    let verdict: String = r.get(15);
    let run: String = r.get(16);
    Ok(Incident {
        id: r.get(0),
        pipeline: r.get(1),
        status: IncidentStatus::parse(&status)
            .ok_or_else(|| corrupt("incidents.status", &status))?,
        severity: IncidentSeverity::parse(&severity)
            .ok_or_else(|| corrupt("incidents.severity", &severity))?,
        max_grade: r.get(4),
        anomaly_id: r.get(5),
        first_run_pk: r.get(6),
        last_run_pk: r.get(7),
        run_count: r.get(8),
        opened_at: from_ms(r.get(9)),
        updated_at: from_ms(r.get(10)),
        resolved_at: r.get::<Option<i64>, _>(11).map(from_ms),
        route: platform.zip(channel),
        root_ref: root
            .map(|s| serde_json::from_str(&s).map_err(|e| corrupt("incidents.root_ref", e)))
            .transpose()?,
        verdict: serde_json::from_str(&verdict).map_err(|e| corrupt("incidents.verdict", e))?,
        latest_run: serde_json::from_str(&run).map_err(|e| corrupt("incidents.latest_run", e))?,
        silenced: r.get::<i64, _>(17) != 0,
    })
}

/// What opening an incident records.
#[derive(Debug, Clone)]
pub struct NewIncident<'a> {
    pub pipeline: &'a str,
    pub run_pk: i64,
    pub run: &'a Run,
    pub verdict: &'a Verdict,
    pub route: Option<(&'a str, &'a str)>,
    pub silenced: bool,
}

/// An approve / reject from chat, tied to an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDecision {
    pub id: i64,
    pub incident_id: i64,
    pub platform: String,
    pub event_id: String,
    pub user: String,
    pub decision: Choice,
    pub via: Via,
    pub message: MessageRef,
    /// False when the reaction was removed (the decision withdrawn).
    pub added: bool,
    pub at: DateTime<Utc>,
}

const DECISION_COLUMNS: &str =
    "id, incident_id, platform, event_id, user_id, decision, via, message_ref, added, at_ms";

fn decision_from_row(r: &sqlx::any::AnyRow) -> Result<StoredDecision, StoreError> {
    let decision: String = r.get(5);
    let via: String = r.get(6);
    let message: String = r.get(7);
    Ok(StoredDecision {
        id: r.get(0),
        incident_id: r.get(1),
        platform: r.get(2),
        event_id: r.get(3),
        user: r.get(4),
        decision: if decision == "approve" {
            Choice::Approve
        } else {
            Choice::Reject
        },
        via: if via == "button" {
            Via::Button
        } else {
            Via::Reaction
        },
        message: serde_json::from_str(&message)
            .map_err(|e| corrupt("chat_decisions.message_ref", e))?,
        added: r.get::<i64, _>(8) != 0,
        at: from_ms(r.get(9)),
    })
}

/// A silence: alerts of pipelines matching `pipeline` (a glob) are not
/// posted until `until`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Silence {
    pub id: i64,
    pub pipeline: String,
    pub until: DateTime<Utc>,
    pub by: String,
    pub at: DateTime<Utc>,
}

impl Store {
    pub async fn incident(&self, id: i64) -> Result<Option<Incident>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(incident_from_row).transpose()
    }

    /// Incidents newest first: only those not resolved or dismissed when
    /// `only_active`, optionally of one pipeline, at most `limit`.
    pub async fn incidents(
        &self,
        only_active: bool,
        pipeline: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Incident>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE ($1 = 0 OR status NOT IN ('resolved', 'dismissed')) \
             AND ($2 = '' OR pipeline = $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(i64::from(only_active))
        .bind(pipeline.unwrap_or(""))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(incident_from_row).collect()
    }

    /// Incidents opened from `from` to `to` (both included), newest first,
    /// optionally of one pipeline.
    pub async fn incidents_opened_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        pipeline: Option<&str>,
    ) -> Result<Vec<Incident>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE opened_at_ms >= $1 AND opened_at_ms <= $2 \
             AND ($3 = '' OR pipeline = $3) ORDER BY id DESC"
        ))
        .bind(ms(from))
        .bind(ms(to))
        .bind(pipeline.unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(incident_from_row).collect()
    }

    /// How many incidents of `pipeline` are not resolved or dismissed.
    pub async fn count_active_incidents(&self, pipeline: &str) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM incidents WHERE pipeline = $1 AND status NOT IN ('resolved', 'dismissed')",
        )
        .bind(pipeline)
        .fetch_one(self.pool())
        .await?;
        Ok(u64::try_from(row.get::<i64, _>(0)).unwrap_or(0))
    }

    /// The incident a posted message belongs to (its alert or any message
    /// queued for it), by platform, channel and message id.
    pub async fn incident_by_message(
        &self,
        platform: &str,
        channel: &str,
        ts_or_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT incident_id FROM chat_outbox WHERE platform = $1 AND channel = $2 AND sent_ts = $3 \
             AND incident_id IS NOT NULL ORDER BY id LIMIT 1",
        )
        .bind(platform)
        .bind(channel)
        .bind(ts_or_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.and_then(|r| r.get::<Option<i64>, _>(0)))
    }

    /// The payload of the message posted as `ts_or_id` (what pipemedic
    /// said there), if pipemedic posted it.
    pub async fn posted_payload(
        &self,
        platform: &str,
        channel: &str,
        ts_or_id: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let row = sqlx::query(
            "SELECT payload FROM chat_outbox WHERE platform = $1 AND channel = $2 AND sent_ts = $3 \
             ORDER BY id LIMIT 1",
        )
        .bind(platform)
        .bind(channel)
        .bind(ts_or_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            let raw: String = r.get(0);
            serde_json::from_str(&raw).map_err(|e| corrupt("chat_outbox.payload", e))
        })
        .transpose()
    }

    /// The pipeline's newest incident that is not resolved or dismissed.
    pub async fn active_incident(&self, pipeline: &str) -> Result<Option<Incident>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE pipeline = $1 \
             AND status NOT IN ('resolved', 'dismissed') ORDER BY id DESC LIMIT 1"
        ))
        .bind(pipeline)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(incident_from_row).transpose()
    }

    /// Decisions stored for an incident, oldest first.
    pub async fn decisions(&self, incident_id: i64) -> Result<Vec<StoredDecision>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DECISION_COLUMNS} FROM chat_decisions WHERE incident_id = $1 ORDER BY id"
        ))
        .bind(incident_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decision_from_row).collect()
    }

    /// Added decisions stored (or last taken on by a sweep) at or before
    /// `stored_before` that nothing has acted on yet (their process stopped
    /// first), oldest first, at most `limit`.
    pub async fn unhandled_decisions(
        &self,
        stored_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<StoredDecision>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DECISION_COLUMNS} FROM chat_decisions \
             WHERE handled_at_ms IS NULL AND added = 1 AND COALESCE(replayed_at_ms, at_ms) <= $1 \
             ORDER BY id LIMIT $2"
        ))
        .bind(ms(stored_before))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decision_from_row).collect()
    }

    /// Silences in force at `now`.
    pub async fn active_silences(&self, now: DateTime<Utc>) -> Result<Vec<Silence>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, pipeline, until_ms, by_user, at_ms FROM silences WHERE until_ms > $1 ORDER BY id",
        )
        .bind(ms(now))
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| Silence {
                id: r.get(0),
                pipeline: r.get(1),
                until: from_ms(r.get(2)),
                by: r.get(3),
                at: from_ms(r.get(4)),
            })
            .collect())
    }
}

impl WriteTx {
    /// The pipeline's newest incident that is not resolved or dismissed.
    pub async fn latest_active_incident(
        &mut self,
        pipeline: &str,
    ) -> Result<Option<Incident>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE pipeline = $1 \
             AND status NOT IN ('resolved', 'dismissed') ORDER BY id DESC LIMIT 1"
        ))
        .bind(pipeline)
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(incident_from_row).transpose()
    }

    /// An incident read inside this transaction.
    pub async fn incident(&mut self, id: i64) -> Result<Option<Incident>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(incident_from_row).transpose()
    }

    /// Opens an incident (status open). Returns its id.
    pub async fn insert_incident(
        &mut self,
        new: &NewIncident<'_>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO incidents (pipeline, status, severity, max_grade, anomaly_id, first_run_pk, \
             last_run_pk, run_count, opened_at_ms, updated_at_ms, route_platform, route_channel, \
             verdict, latest_run, silenced) VALUES ($1, 'open', $2, $3, $4, $5, $5, 1, $6, $6, $7, $8, $9, $10, $11) \
             RETURNING id",
        )
        .bind(new.pipeline)
        .bind(IncidentSeverity::from_grade(new.verdict.grade).as_str())
        .bind(new.verdict.grade)
        .bind(new.verdict.anomaly_id)
        .bind(new.run_pk)
        .bind(ms(now))
        .bind(new.route.map(|r| r.0))
        .bind(new.route.map(|r| r.1))
        .bind(to_json("verdict", new.verdict)?)
        .bind(to_json("run", new.run)?)
        .bind(i64::from(new.silenced))
        .fetch_one(self.conn())
        .await?;
        Ok(row.get(0))
    }

    /// Adds an abnormal run to an incident: last run, count, worst grade,
    /// severity and latest verdict.
    pub async fn extend_incident(
        &mut self,
        id: i64,
        run_pk: i64,
        run: &Run,
        verdict: &Verdict,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let current = self
            .incident(id)
            .await?
            .ok_or_else(|| corrupt("incidents", format!("incident {id} vanished")))?;
        let max_grade = current.max_grade.max(verdict.grade);
        sqlx::query(
            "UPDATE incidents SET last_run_pk = $1, run_count = run_count + 1, max_grade = $2, \
             severity = $3, verdict = $4, latest_run = $5, updated_at_ms = $6, \
             anomaly_id = COALESCE($7, anomaly_id) WHERE id = $8",
        )
        .bind(run_pk)
        .bind(max_grade)
        .bind(IncidentSeverity::from_grade(max_grade).as_str())
        .bind(to_json("verdict", verdict)?)
        .bind(to_json("run", run)?)
        .bind(ms(now))
        .bind(verdict.anomaly_id)
        .bind(id)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Moves an incident to `status` (resolved and dismissed record when).
    pub async fn set_incident_status(
        &mut self,
        id: i64,
        status: IncidentStatus,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let resolved = status.is_closed().then(|| ms(now));
        let done = sqlx::query(
            "UPDATE incidents SET status = $1, updated_at_ms = $2, resolved_at_ms = $3 WHERE id = $4",
        )
        .bind(status.as_str())
        .bind(ms(now))
        .bind(resolved)
        .bind(id)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records where an incident's alert was posted.
    pub async fn set_incident_root(
        &mut self,
        id: i64,
        root: &MessageRef,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE incidents SET root_ref = $1 WHERE id = $2")
            .bind(to_json("root_ref", root)?)
            .bind(id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Stores a decision once per platform event. Returns false when this
    /// event was already stored (a redelivery), and writes nothing then.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_decision(
        &mut self,
        incident_id: i64,
        platform: &str,
        event_id: &str,
        user: &str,
        decision: Choice,
        via: Via,
        message: &MessageRef,
        added: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "INSERT INTO chat_decisions (incident_id, platform, event_id, user_id, decision, via, \
             message_ref, added, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (platform, event_id) DO NOTHING RETURNING id",
        )
        .bind(incident_id)
        .bind(platform)
        .bind(event_id)
        .bind(user)
        .bind(match decision {
            Choice::Approve => "approve",
            Choice::Reject => "reject",
        })
        .bind(via.as_str())
        .bind(to_json("message_ref", message)?)
        .bind(i64::from(added))
        .bind(ms(now))
        .fetch_optional(self.conn())
        .await?;
        Ok(row.is_some())
    }

    /// A sweep takes on a lost decision: true for exactly one caller while
    /// it is unhandled and was stored (or last taken on) at or before
    /// `stored_before`. Should that caller stop too, the decision is lost
    /// again after the same grace.
    pub async fn claim_decision_replay(
        &mut self,
        id: i64,
        stored_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE chat_decisions SET replayed_at_ms = $1 WHERE id = $2 \
             AND handled_at_ms IS NULL AND COALESCE(replayed_at_ms, at_ms) <= $3",
        )
        .bind(ms(now))
        .bind(id)
        .bind(ms(stored_before))
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Takes on an incident whose status and last update are still as
    /// read (`status`, `updated_at`): true for exactly one caller, and its
    /// last update becomes `now`.
    pub async fn claim_incident(
        &mut self,
        id: i64,
        status: IncidentStatus,
        updated_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE incidents SET updated_at_ms = $1 WHERE id = $2 AND status = $3 \
             AND updated_at_ms = $4",
        )
        .bind(ms(now))
        .bind(id)
        .bind(status.as_str())
        .bind(ms(updated_at))
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Notes that a decision has been acted on (see
    /// [`Store::unhandled_decisions`]); false when it already was.
    pub async fn mark_decision_handled(
        &mut self,
        platform: &str,
        event_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE chat_decisions SET handled_at_ms = $1 \
             WHERE platform = $2 AND event_id = $3 AND handled_at_ms IS NULL",
        )
        .bind(ms(now))
        .bind(platform)
        .bind(event_id)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Silences pipelines matching `pipeline` (a glob) until `until`.
    pub async fn add_silence(
        &mut self,
        pipeline: &str,
        until: DateTime<Utc>,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO silences (pipeline, until_ms, by_user, at_ms) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(pipeline)
        .bind(ms(until))
        .bind(by)
        .bind(ms(now))
        .fetch_one(self.conn())
        .await?;
        Ok(row.get(0))
    }

    /// Ends the silences set for exactly `pipeline` now. Returns how many
    /// were in force.
    pub async fn end_silences(
        &mut self,
        pipeline: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done =
            sqlx::query("UPDATE silences SET until_ms = $1 WHERE pipeline = $2 AND until_ms > $1")
                .bind(ms(now))
                .bind(pipeline)
                .execute(self.conn())
                .await?;
        Ok(done.rows_affected())
    }
}
