//! Store operations of outcomes: one `plan_outcomes` row per offered plan
//! step, moved forward by the writes that change its approval request (in
//! the caller's transaction), and the pipelines on which people stopped
//! automatic runs (`autonomy_stops`).
//!
//! A row only ever moves forward: each update names the fates it may leave
//! ([`WriteTx::advance_outcomes`]), so a repeated or late write changes
//! nothing. Reads build [`TrackRecord`]s with the pure aggregation in
//! [`crate::domain`].
//!
//! Why rows written at each transition rather than a query over plans,
//! approval requests, executions and the audit log: the facts a record
//! needs live in four places with different keys (a plan's playbook and
//! action are inside its JSON, the signature in the run's verdict, healed
//! only in an incident's status note), and a request's status is
//! overwritten as it moves (an executed request that later failed to heal
//! looks like any other `done` one). Writing the row in the same
//! transaction as the change it records means the record can never
//! disagree with the request, survives the pruning of other tables, and
//! reads in one indexed query per pipeline, which every plan draft does.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::write::WriteTx;
use super::{from_ms, ms, Store, StoreError};
use crate::domain::{Fate, OutcomeRow, RequestStatus, TrackRecord};

/// One step of a request being offered, for its outcome row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutcome {
    pub step_no: u32,
    pub playbook: String,
    pub action: String,
}

/// Where the outcome rows of a request being offered belong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedPlan {
    pub request_id: i64,
    pub incident_id: Option<i64>,
    pub plan_id: Option<i64>,
    pub pipeline: String,
    /// [`crate::domain::Signature::key`].
    pub signature: String,
    /// Approved without anyone (automatic remediation, earned autonomy).
    pub automatic: bool,
}

/// A pipeline on which people stopped automatic runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AutonomyStop {
    pub pipeline: String,
    pub stopped_by: String,
    pub via: String,
    pub stopped_at: DateTime<Utc>,
}

/// The fate a request's new status gives its steps, and the fates they may
/// leave for it; `None` for a status that decides nothing about them.
pub fn fate_of_status(status: RequestStatus) -> Option<(Fate, &'static [Fate])> {
    const OPEN: &[Fate] = &[Fate::Offered];
    const DECIDED: &[Fate] = &[Fate::Offered, Fate::Approved];
    match status {
        RequestStatus::Pending | RequestStatus::Executing => None,
        RequestStatus::Approved => Some((Fate::Approved, OPEN)),
        RequestStatus::Rejected => Some((Fate::Rejected, OPEN)),
        RequestStatus::Expired => Some((Fate::Expired, OPEN)),
        RequestStatus::Stale => Some((Fate::Superseded, OPEN)),
        RequestStatus::Done => Some((Fate::Executed, DECIDED)),
        RequestStatus::Failed => Some((Fate::Failed, DECIDED)),
    }
}

const COLUMNS: &str = "request_id, step_no, incident_id, pipeline, playbook, action, signature, \
     fate, approved, automatic, reason, minutes_to_heal, offered_at_ms, updated_at_ms";

fn outcome_from_row(r: &sqlx::any::AnyRow) -> Result<OutcomeRow, StoreError> {
    let fate: String = r.get(7);
    Ok(OutcomeRow {
        request_id: r.get(0),
        step_no: u32::try_from(r.get::<i64, _>(1)).unwrap_or(0),
        incident_id: r.get(2),
        pipeline: r.get(3),
        playbook: r.get(4),
        action: r.get(5),
        signature: r.get(6),
        fate: Fate::parse(&fate).ok_or_else(|| StoreError::Corrupt {
            what: "plan_outcomes.fate".into(),
            detail: fate.clone(),
        })?,
        approved: r.get::<i64, _>(8) != 0,
        automatic: r.get::<i64, _>(9) != 0,
        reason: r.get(10),
        minutes_to_heal: r.get(11),
        offered_at: from_ms(r.get(12)),
        updated_at: from_ms(r.get(13)),
    })
}

impl Store {
    /// Every outcome row, of one pipeline when given, oldest first.
    pub async fn outcome_rows(
        &self,
        pipeline: Option<&str>,
    ) -> Result<Vec<OutcomeRow>, StoreError> {
        let rows = match pipeline {
            Some(p) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM plan_outcomes WHERE pipeline = $1 ORDER BY id"
                ))
                .bind(p)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query(&format!("SELECT {COLUMNS} FROM plan_outcomes ORDER BY id"))
                    .fetch_all(self.pool())
                    .await?
            }
        };
        rows.iter().map(outcome_from_row).collect()
    }

    /// The outcome rows of one request, by step.
    pub async fn request_outcomes(&self, request_id: i64) -> Result<Vec<OutcomeRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM plan_outcomes WHERE request_id = $1 ORDER BY step_no"
        ))
        .bind(request_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(outcome_from_row).collect()
    }

    /// The track records of every fix, of one pipeline when given, sorted
    /// by pipeline, playbook and action.
    pub async fn track_records(
        &self,
        pipeline: Option<&str>,
    ) -> Result<Vec<TrackRecord>, StoreError> {
        Ok(TrackRecord::from_rows(&self.outcome_rows(pipeline).await?))
    }

    /// One fix's record on one pipeline (`None` before it was ever offered).
    pub async fn track_record(
        &self,
        pipeline: &str,
        playbook: &str,
        action: &str,
    ) -> Result<Option<TrackRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM plan_outcomes \
             WHERE pipeline = $1 AND playbook = $2 AND action = $3 ORDER BY id"
        ))
        .bind(pipeline)
        .bind(playbook)
        .bind(action)
        .fetch_all(self.pool())
        .await?;
        let rows = rows
            .iter()
            .map(outcome_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrackRecord::from_rows(&rows).pop())
    }

    /// Whether people stopped automatic runs on `pipeline`, and who.
    pub async fn autonomy_stop(&self, pipeline: &str) -> Result<Option<AutonomyStop>, StoreError> {
        let row = sqlx::query(
            "SELECT pipeline, stopped_by, via, stopped_at_ms FROM autonomy_stops WHERE pipeline = $1",
        )
        .bind(pipeline)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| AutonomyStop {
            pipeline: r.get(0),
            stopped_by: r.get(1),
            via: r.get(2),
            stopped_at: from_ms(r.get(3)),
        }))
    }
}

impl WriteTx {
    /// Writes the outcome rows of a request being offered: `offered`, or
    /// `approved` when it needs no one. Idempotent per request and step.
    pub async fn record_offered(
        &mut self,
        plan: &OfferedPlan,
        steps: &[NewOutcome],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let fate = if plan.automatic {
            Fate::Approved
        } else {
            Fate::Offered
        };
        for step in steps {
            sqlx::query(
                "INSERT INTO plan_outcomes (request_id, step_no, incident_id, plan_id, pipeline, \
                 playbook, action, signature, fate, approved, automatic, offered_at_ms, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $11) \
                 ON CONFLICT (request_id, step_no) DO NOTHING",
            )
            .bind(plan.request_id)
            .bind(i64::from(step.step_no))
            .bind(plan.incident_id)
            .bind(plan.plan_id)
            .bind(&plan.pipeline)
            .bind(&step.playbook)
            .bind(&step.action)
            .bind(&plan.signature)
            .bind(fate.as_str())
            .bind(i64::from(plan.automatic))
            .bind(ms(now))
            .execute(self.conn())
            .await?;
        }
        Ok(())
    }

    /// Moves the outcome rows of `request_id` that are in one of `from` to
    /// `to` (approved and executed fates also mark the row approved);
    /// returns how many moved. Rows in any other fate stay as they are.
    pub async fn advance_outcomes(
        &mut self,
        request_id: i64,
        from: &[Fate],
        to: Fate,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        if from.is_empty() {
            return Ok(0);
        }
        let placeholders: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 5)).collect();
        let sql = format!(
            "UPDATE plan_outcomes SET fate = $1, updated_at_ms = $2, \
             approved = CASE WHEN $3 = 1 THEN 1 ELSE approved END \
             WHERE request_id = $4 AND fate IN ({})",
            placeholders.join(", ")
        );
        let marks_approved = matches!(to, Fate::Approved | Fate::Executed);
        let mut query = sqlx::query(&sql)
            .bind(to.as_str())
            .bind(ms(now))
            .bind(i64::from(marks_approved))
            .bind(request_id);
        for f in from {
            query = query.bind(f.as_str());
        }
        Ok(query.execute(self.conn()).await?.rows_affected())
    }

    /// The outcome rows of a request whose status just became `status`
    /// follow it ([`fate_of_status`]).
    pub async fn outcomes_follow_status(
        &mut self,
        request_id: i64,
        status: RequestStatus,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        match fate_of_status(status) {
            Some((to, from)) => self.advance_outcomes(request_id, from, to, now).await,
            None => Ok(0),
        }
    }

    /// Keeps the reason typed with a rejection on the request's rejected
    /// steps (the first reason stays).
    pub async fn record_rejection_reason(
        &mut self,
        request_id: i64,
        reason: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE plan_outcomes SET reason = $1 \
             WHERE request_id = $2 AND fate = 'rejected' AND reason IS NULL",
        )
        .bind(reason)
        .bind(request_id)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// The next run judged the fix of `incident_id`: its executed steps
    /// become healed (with the minutes it took) or not healed. Returns the
    /// rows that moved (none when nothing of the incident was waiting).
    pub async fn record_verification(
        &mut self,
        incident_id: i64,
        healed: bool,
        minutes_to_heal: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutcomeRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM plan_outcomes WHERE incident_id = $1 AND fate = 'executed' ORDER BY id"
        ))
        .bind(incident_id)
        .fetch_all(self.conn())
        .await?;
        let mut moved = rows
            .iter()
            .map(outcome_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let fate = if healed {
            Fate::Healed
        } else {
            Fate::NotHealed
        };
        let minutes = if healed { minutes_to_heal } else { None };
        sqlx::query(
            "UPDATE plan_outcomes SET fate = $1, minutes_to_heal = $2, updated_at_ms = $3 \
             WHERE incident_id = $4 AND fate = 'executed'",
        )
        .bind(fate.as_str())
        .bind(minutes)
        .bind(ms(now))
        .bind(incident_id)
        .execute(self.conn())
        .await?;
        for row in &mut moved {
            row.fate = fate;
            row.minutes_to_heal = minutes;
            row.updated_at = now;
        }
        Ok(moved)
    }

    /// Stops automatic runs on `pipeline`; false when they already were.
    pub async fn stop_autonomy(
        &mut self,
        pipeline: &str,
        stopped_by: &str,
        via: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "INSERT INTO autonomy_stops (pipeline, stopped_by, via, stopped_at_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (pipeline) DO NOTHING RETURNING pipeline",
        )
        .bind(pipeline)
        .bind(stopped_by)
        .bind(via)
        .bind(ms(now))
        .fetch_optional(self.conn())
        .await?;
        Ok(row.is_some())
    }

    /// Allows automatic runs on `pipeline` again; false when they were not
    /// stopped.
    pub async fn resume_autonomy(&mut self, pipeline: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM autonomy_stops WHERE pipeline = $1")
            .bind(pipeline)
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
