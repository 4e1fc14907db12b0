//! Store operations of approvals: requests, the votes cast on them, and the
//! execution of each approved step.
//!
//! This module owns the durable half of "exactly once": a vote is stored
//! once per `(platform, event_id)`, a request's row is locked while a vote
//! is decided, and a step moves from `planned` to `running` for exactly
//! one caller. On PostgreSQL the claim is `SELECT ... FOR UPDATE SKIP
//! LOCKED` then an update, inside one transaction; on SQLite the
//! in-process single writer ([`Store::begin_write`]) makes the conditional
//! update atomic. It must not decide anything: the policy and the service
//! say what to write.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;

use super::write::WriteTx;
use super::{from_ms, ms, Backend, Store, StoreError};
use crate::domain::{Approver, Choice, RequestStatus, StepPolicy, Via, Vote};

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        detail: e.to_string(),
    }
}

/// Where one step's execution is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionState {
    /// Waiting for approval, or for its turn.
    Planned,
    /// Claimed by a process, which is making (or made) the call.
    Running,
    Succeeded,
    Failed,
    /// Was running when its process stopped: the call may or may not have
    /// taken effect. Never re-run automatically.
    Unknown,
    /// Not run because an earlier step failed or the request ended.
    Skipped,
}

impl ExecutionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
            Self::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Planned,
            Self::Running,
            Self::Succeeded,
            Self::Failed,
            Self::Unknown,
            Self::Skipped,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A request to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewApprovalRequest {
    /// The stored plan's id, when plans are stored.
    pub plan_ref: Option<String>,
    pub incident_ref: String,
    pub pipeline: String,
    /// The run the plan is about.
    pub run_id: String,
    pub commit_author: Option<String>,
    pub steps: Vec<StepPolicy>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub status: RequestStatus,
}

/// One step to store with its request.
#[derive(Debug, Clone, PartialEq)]
pub struct NewExecution {
    pub step_no: u32,
    pub kind: String,
    /// The exact call (a serialised `ActionCall`).
    pub call: Value,
    /// The dry run shown for approval.
    pub dry_run: String,
}

/// A stored request.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoredRequest {
    pub id: i64,
    pub plan_ref: Option<String>,
    pub incident_ref: String,
    pub pipeline: String,
    pub run_id: String,
    pub commit_author: Option<String>,
    pub steps: Vec<StepPolicy>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub status: RequestStatus,
    /// When it was approved (automatically or by the last vote needed).
    pub approved_at: Option<DateTime<Utc>>,
}

/// A stored vote.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoredVote {
    pub id: i64,
    pub request_id: i64,
    pub vote: Vote,
    /// Counts toward the request (the person's latest allowed vote).
    pub effective: bool,
    /// What the vote did (`counted`, `approved`, `not_allowed` ...).
    pub outcome: String,
}

/// A stored step execution.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoredExecution {
    pub id: i64,
    pub request_id: i64,
    pub step_no: u32,
    pub kind: String,
    pub call: Value,
    pub status: ExecutionState,
    pub dry_run: String,
    pub outcome: Option<Value>,
    pub error: Option<String>,
    pub attempts: i64,
    pub claimed_by: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

const REQUEST_COLUMNS: &str = "id, plan_ref, incident_ref, pipeline, run_id, commit_author, \
     policy, created_at_ms, expires_at_ms, status, approved_at_ms";

fn request_from_row(r: &sqlx::any::AnyRow) -> Result<StoredRequest, StoreError> {
    let policy: String = r.get(6);
    let status: String = r.get(9);
    Ok(StoredRequest {
        id: r.get(0),
        plan_ref: r.get(1),
        incident_ref: r.get(2),
        pipeline: r.get(3),
        run_id: r.get(4),
        commit_author: r.get(5),
        steps: serde_json::from_str(&policy).map_err(|e| corrupt("approval_requests.policy", e))?,
        created_at: from_ms(r.get(7)),
        expires_at: from_ms(r.get(8)),
        status: RequestStatus::parse(&status)
            .ok_or_else(|| corrupt("approval_requests.status", &status))?,
        approved_at: r.get::<Option<i64>, _>(10).map(from_ms),
    })
}

const VOTE_COLUMNS: &str = "id, request_id, platform, event_id, user_id, user_groups, decision, \
     via, at_ms, effective, outcome";

fn vote_from_row(r: &sqlx::any::AnyRow) -> Result<StoredVote, StoreError> {
    let groups: String = r.get(5);
    let decision: String = r.get(6);
    let via: String = r.get(7);
    Ok(StoredVote {
        id: r.get(0),
        request_id: r.get(1),
        vote: Vote {
            approver: Approver {
                platform: r.get(2),
                user: r.get(4),
                groups: serde_json::from_str(&groups)
                    .map_err(|e| corrupt("approval_votes.user_groups", e))?,
                aliases: Vec::new(),
            },
            event_id: r.get(3),
            choice: Choice::parse(&decision)
                .ok_or_else(|| corrupt("approval_votes.decision", &decision))?,
            via: Via::parse(&via).ok_or_else(|| corrupt("approval_votes.via", &via))?,
            at: from_ms(r.get(8)),
        },
        effective: r.get::<i64, _>(9) != 0,
        outcome: r.get(10),
    })
}

const EXECUTION_COLUMNS: &str = "id, request_id, step_no, kind, call, status, dry_run, outcome, \
     error, attempts, claimed_by, started_at_ms, finished_at_ms";

fn execution_from_row(r: &sqlx::any::AnyRow) -> Result<StoredExecution, StoreError> {
    let call: String = r.get(4);
    let status: String = r.get(5);
    let outcome: Option<String> = r.get(7);
    Ok(StoredExecution {
        id: r.get(0),
        request_id: r.get(1),
        step_no: u32::try_from(r.get::<i64, _>(2)).map_err(|e| corrupt("executions.step_no", e))?,
        kind: r.get(3),
        call: serde_json::from_str(&call).map_err(|e| corrupt("executions.call", e))?,
        status: ExecutionState::parse(&status)
            .ok_or_else(|| corrupt("executions.status", &status))?,
        dry_run: r.get(6),
        outcome: outcome
            .map(|o| serde_json::from_str(&o))
            .transpose()
            .map_err(|e| corrupt("executions.outcome", e))?,
        error: r.get(8),
        attempts: r.get(9),
        claimed_by: r.get(10),
        started_at: r.get::<Option<i64>, _>(11).map(from_ms),
        finished_at: r.get::<Option<i64>, _>(12).map(from_ms),
    })
}

fn ids(rows: &[sqlx::any::AnyRow]) -> Vec<i64> {
    rows.iter().map(|r| r.get::<i64, _>(0)).collect()
}

/// An approval request of an incident with its votes and the executions
/// of its steps.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IncidentApproval {
    pub request: StoredRequest,
    pub votes: Vec<StoredVote>,
    pub executions: Vec<StoredExecution>,
}

impl Store {
    /// Every approval request of an incident, oldest first, with its votes
    /// and step executions.
    pub async fn incident_approvals(
        &self,
        incident_id: i64,
    ) -> Result<Vec<IncidentApproval>, StoreError> {
        let mut out = Vec::new();
        for request in self
            .approval_requests_for_incident(&incident_id.to_string())
            .await?
        {
            let votes = self.approval_votes(request.id).await?;
            let executions = self.executions(request.id).await?;
            out.push(IncidentApproval {
                request,
                votes,
                executions,
            });
        }
        Ok(out)
    }

    /// One request by id.
    pub async fn approval_request(&self, id: i64) -> Result<Option<StoredRequest>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM approval_requests WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    /// Every vote cast on a request (allowed or not), in arrival order.
    pub async fn approval_votes(&self, request_id: i64) -> Result<Vec<StoredVote>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {VOTE_COLUMNS} FROM approval_votes WHERE request_id = $1 ORDER BY id"
        ))
        .bind(request_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(vote_from_row).collect()
    }

    /// The steps of a request, in order.
    pub async fn executions(&self, request_id: i64) -> Result<Vec<StoredExecution>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions WHERE request_id = $1 ORDER BY step_no"
        ))
        .bind(request_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(execution_from_row).collect()
    }

    /// Ids of the requests that are approved or executing (work that may
    /// still have steps to run), oldest first.
    pub async fn approved_request_ids(&self) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM approval_requests WHERE status IN ('approved', 'executing') ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(ids(&rows))
    }

    /// The requests opened for an incident, oldest first.
    pub async fn approval_requests_for_incident(
        &self,
        incident_ref: &str,
    ) -> Result<Vec<StoredRequest>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM approval_requests WHERE incident_ref = $1 ORDER BY id"
        ))
        .bind(incident_ref)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(request_from_row).collect()
    }

    /// Requests of a pipeline in a status, oldest first.
    pub async fn approval_requests_with_status(
        &self,
        pipeline: &str,
        status: RequestStatus,
    ) -> Result<Vec<StoredRequest>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM approval_requests \
             WHERE pipeline = $1 AND status = $2 ORDER BY id"
        ))
        .bind(pipeline)
        .bind(status.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(request_from_row).collect()
    }
}

impl WriteTx {
    /// Stores a request and its steps (each `planned`); returns its id.
    pub async fn create_approval_request(
        &mut self,
        request: &NewApprovalRequest,
        steps: &[NewExecution],
    ) -> Result<i64, StoreError> {
        let policy =
            serde_json::to_string(&request.steps).map_err(|e| corrupt("approval policy", e))?;
        let row = sqlx::query(
            "INSERT INTO approval_requests (plan_ref, incident_ref, pipeline, run_id, commit_author, \
             policy, created_at_ms, expires_at_ms, status, updated_at_ms, approved_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $7, $10) RETURNING id",
        )
        .bind(request.plan_ref.as_deref())
        .bind(&request.incident_ref)
        .bind(&request.pipeline)
        .bind(&request.run_id)
        .bind(request.commit_author.as_deref())
        .bind(&policy)
        .bind(ms(request.created_at))
        .bind(ms(request.expires_at))
        .bind(request.status.as_str())
        .bind((request.status == RequestStatus::Approved).then(|| ms(request.created_at)))
        .fetch_one(self.conn())
        .await?;
        let id: i64 = row.get(0);
        for step in steps {
            sqlx::query(
                "INSERT INTO executions (request_id, step_no, kind, call, status, dry_run, attempts) \
                 VALUES ($1, $2, $3, $4, 'planned', $5, 0)",
            )
            .bind(id)
            .bind(i64::from(step.step_no))
            .bind(&step.kind)
            .bind(step.call.to_string())
            .bind(&step.dry_run)
            .execute(self.conn())
            .await?;
        }
        Ok(id)
    }

    /// A request, locked against concurrent deciders until this
    /// transaction ends (`FOR UPDATE` on PostgreSQL; the single writer on
    /// SQLite).
    pub async fn lock_approval_request(
        &mut self,
        id: i64,
    ) -> Result<Option<StoredRequest>, StoreError> {
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let row = sqlx::query(&format!(
            "SELECT {REQUEST_COLUMNS} FROM approval_requests WHERE id = $1{lock}"
        ))
        .bind(id)
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    /// Whether the event `(platform, event_id)` was already recorded.
    pub async fn vote_seen(&mut self, platform: &str, event_id: &str) -> Result<bool, StoreError> {
        let row =
            sqlx::query("SELECT id FROM approval_votes WHERE platform = $1 AND event_id = $2")
                .bind(platform)
                .bind(event_id)
                .fetch_optional(self.conn())
                .await?;
        Ok(row.is_some())
    }

    /// The effective votes of a request: one per person, their latest.
    pub async fn effective_votes(&mut self, request_id: i64) -> Result<Vec<Vote>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {VOTE_COLUMNS} FROM approval_votes \
             WHERE request_id = $1 AND effective = 1 ORDER BY id"
        ))
        .bind(request_id)
        .fetch_all(self.conn())
        .await?;
        rows.iter()
            .map(|r| vote_from_row(r).map(|v| v.vote))
            .collect()
    }

    /// Records a vote. A redelivery (the same platform and event id) is a
    /// no-op and returns `false`. An effective vote replaces the person's
    /// earlier effective vote on the request.
    pub async fn record_vote(
        &mut self,
        request_id: i64,
        vote: &Vote,
        effective: bool,
        outcome: &str,
    ) -> Result<bool, StoreError> {
        let groups = serde_json::to_string(&vote.approver.groups)
            .map_err(|e| corrupt("approval_votes.user_groups", e))?;
        let inserted = sqlx::query(
            "INSERT INTO approval_votes (request_id, platform, event_id, user_id, user_groups, \
             decision, via, at_ms, effective, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9) \
             ON CONFLICT (platform, event_id) DO NOTHING RETURNING id",
        )
        .bind(request_id)
        .bind(&vote.approver.platform)
        .bind(&vote.event_id)
        .bind(&vote.approver.user)
        .bind(&groups)
        .bind(vote.choice.as_str())
        .bind(vote.via.as_str())
        .bind(ms(vote.at))
        .bind(outcome)
        .fetch_optional(self.conn())
        .await?;
        let Some(row) = inserted else {
            return Ok(false);
        };
        let id: i64 = row.get(0);
        if effective {
            sqlx::query(
                "UPDATE approval_votes SET effective = 0 \
                 WHERE request_id = $1 AND platform = $2 AND user_id = $3 AND effective = 1",
            )
            .bind(request_id)
            .bind(&vote.approver.platform)
            .bind(&vote.approver.user)
            .execute(self.conn())
            .await?;
            sqlx::query("UPDATE approval_votes SET effective = 1 WHERE id = $1")
                .bind(id)
                .execute(self.conn())
                .await?;
        }
        Ok(true)
    }

    /// Moves a request to `to` if its status is one of `from` (moving to
    /// `approved` records when); returns whether it moved.
    pub async fn set_request_status(
        &mut self,
        id: i64,
        from: &[RequestStatus],
        to: RequestStatus,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        if from.is_empty() {
            return Ok(false);
        }
        let placeholders: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 4)).collect();
        let sql = format!(
            "UPDATE approval_requests SET status = $1, updated_at_ms = $2, \
             approved_at_ms = CASE WHEN $1 = 'approved' THEN $2 ELSE approved_at_ms END \
             WHERE id = $3 AND status IN ({}) RETURNING id",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(to.as_str()).bind(ms(now)).bind(id);
        for s in from {
            query = query.bind(s.as_str());
        }
        Ok(query.fetch_optional(self.conn()).await?.is_some())
    }

    /// Marks stale every pending request of `pipeline` about a run other
    /// than `newer_run_id` (the caller knows that run is newer); returns
    /// their ids.
    pub async fn supersede(
        &mut self,
        pipeline: &str,
        newer_run_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(
            "UPDATE approval_requests SET status = 'stale', updated_at_ms = $3 \
             WHERE pipeline = $1 AND run_id <> $2 AND status = 'pending' RETURNING id",
        )
        .bind(pipeline)
        .bind(newer_run_id)
        .bind(ms(now))
        .fetch_all(self.conn())
        .await?;
        let mut ids = ids(&rows);
        ids.sort_unstable();
        Ok(ids)
    }

    /// Marks expired every pending request whose time is up; returns their ids.
    pub async fn expire_due(&mut self, now: DateTime<Utc>) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(
            "UPDATE approval_requests SET status = 'expired', updated_at_ms = $1 \
             WHERE status = 'pending' AND expires_at_ms <= $1 RETURNING id",
        )
        .bind(ms(now))
        .fetch_all(self.conn())
        .await?;
        let mut ids = ids(&rows);
        ids.sort_unstable();
        Ok(ids)
    }

    /// Claims a `planned` step for `claimed_by`: exactly one caller gets
    /// the row (now `running`, attempts + 1); everyone else gets `None`.
    /// Commit before making the call, so the claim survives a crash.
    pub async fn claim_execution(
        &mut self,
        request_id: i64,
        step_no: u32,
        claimed_by: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredExecution>, StoreError> {
        let row = match self.backend() {
            Backend::Postgres => {
                let locked = sqlx::query(
                    "SELECT id FROM executions WHERE request_id = $1 AND step_no = $2 \
                     AND status = 'planned' FOR UPDATE SKIP LOCKED",
                )
                .bind(request_id)
                .bind(i64::from(step_no))
                .fetch_optional(self.conn())
                .await?;
                let Some(locked) = locked else {
                    return Ok(None);
                };
                sqlx::query(&format!(
                    "UPDATE executions SET status = 'running', claimed_by = $1, started_at_ms = $2, \
                     heartbeat_at_ms = $2, attempts = attempts + 1 WHERE id = $3 AND status = 'planned' \
                     RETURNING {EXECUTION_COLUMNS}"
                ))
                .bind(claimed_by)
                .bind(ms(now))
                .bind(locked.get::<i64, _>(0))
                .fetch_optional(self.conn())
                .await?
            }
            Backend::Sqlite => {
                sqlx::query(&format!(
                "UPDATE executions SET status = 'running', claimed_by = $1, started_at_ms = $2, \
                     heartbeat_at_ms = $2, attempts = attempts + 1 WHERE request_id = $3 AND step_no = $4 \
                     AND status = 'planned' RETURNING {EXECUTION_COLUMNS}"
            ))
                .bind(claimed_by)
                .bind(ms(now))
                .bind(request_id)
                .bind(i64::from(step_no))
                .fetch_optional(self.conn())
                .await?
            }
        };
        row.as_ref().map(execution_from_row).transpose()
    }

    /// Records what running a claimed step did. Only the claimant can
    /// finish it, from `running`, or from `unknown` when another process
    /// gave up on it too early (the real result replaces the guess).
    pub async fn finish_execution(
        &mut self,
        execution_id: i64,
        claimed_by: &str,
        status: ExecutionState,
        outcome: Option<&Value>,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "UPDATE executions SET status = $1, outcome = $2, error = $3, finished_at_ms = $4 \
             WHERE id = $5 AND claimed_by = $6 AND status IN ('running', 'unknown') RETURNING id",
        )
        .bind(status.as_str())
        .bind(outcome.map(Value::to_string))
        .bind(error)
        .bind(ms(now))
        .bind(execution_id)
        .bind(claimed_by)
        .fetch_optional(self.conn())
        .await?;
        Ok(row.is_some())
    }

    /// Marks `skipped` the still `planned` steps of a request; returns how many.
    pub async fn skip_planned_executions(
        &mut self,
        request_id: i64,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE executions SET status = 'skipped', finished_at_ms = $2 \
             WHERE request_id = $1 AND status = 'planned'",
        )
        .bind(request_id)
        .bind(ms(now))
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected())
    }

    /// The claimant of a running step says it is still at it (while its
    /// call is in flight); false when the step is no longer its own.
    pub async fn touch_execution(
        &mut self,
        execution_id: i64,
        claimed_by: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE executions SET heartbeat_at_ms = $1 \
             WHERE id = $2 AND claimed_by = $3 AND status = 'running'",
        )
        .bind(ms(now))
        .bind(execution_id)
        .bind(claimed_by)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Turns into `unknown` every `running` step claimed by a process other
    /// than `me` whose last heartbeat is older than `quiet_since` (its
    /// process stopped while the call was in flight); returns them. A step
    /// of a live process keeps its heartbeat fresh and is left alone.
    pub async fn mark_in_flight_unknown(
        &mut self,
        me: &str,
        quiet_since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<StoredExecution>, StoreError> {
        let rows = sqlx::query(&format!(
            "UPDATE executions SET status = 'unknown', finished_at_ms = $2 \
             WHERE status = 'running' AND (claimed_by IS NULL OR claimed_by <> $1) \
             AND COALESCE(heartbeat_at_ms, started_at_ms, 0) < $3 \
             RETURNING {EXECUTION_COLUMNS}"
        ))
        .bind(me)
        .bind(ms(now))
        .bind(ms(quiet_since))
        .fetch_all(self.conn())
        .await?;
        let mut found: Vec<StoredExecution> = rows
            .iter()
            .map(execution_from_row)
            .collect::<Result<_, _>>()?;
        found.sort_by_key(|e| (e.request_id, e.step_no));
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_states_round_trip() {
        for s in [
            "planned",
            "running",
            "succeeded",
            "failed",
            "unknown",
            "skipped",
        ] {
            assert_eq!(
                ExecutionState::parse(s).map(ExecutionState::as_str),
                Some(s)
            );
        }
        assert_eq!(ExecutionState::parse("claimed"), None);
    }
}
