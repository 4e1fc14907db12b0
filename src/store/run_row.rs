//! A run as the values of its `runs` row, and the statements that write
//! one: computed once per run ([`RunRow::new`] serialises the body), so
//! that a backfill can compute them on every core while one writer stores
//! them, and so that the sqlx writer ([`super::WriteTx`]) and SQLite's bulk
//! writer ([`super::bulk`]) write the same columns with the same SQL.

use chrono::{DateTime, Utc};

use super::sql::{nullable_f64, placeholders};
use super::{ms, Backend, StoreError};
use crate::domain::{Run, RunSource};

/// The columns that keep a run's built-in metrics, in
/// [`crate::domain::BUILTIN_METRICS`] order (see
/// [`Run::builtin_samples`]); NULL when the run has no value.
pub(super) const BUILTIN_SAMPLE_COLUMNS: [&str; 6] = [
    "sample_duration_s",
    "sample_test_failure_rate",
    "sample_cpu_peak_pct",
    "sample_mem_peak_mb",
    "sample_error_rate",
    "sample_latency_p95_ms",
];

/// Bind values of one row of [`insert_sql`].
pub(super) const RUN_COLUMNS: usize = 20;

/// One `runs` row: what identifies the run, its indexed columns, its body
/// as stored, and its built-in metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub(super) pipeline: String,
    pub(super) run_id: String,
    pub(super) attempt: i64,
    pub(super) status: &'static str,
    pub(super) is_final: bool,
    pub(super) source: &'static str,
    pub(super) started_at_ms: Option<i64>,
    pub(super) finished_at_ms: Option<i64>,
    pub(super) event_time_ms: i64,
    pub(super) duration_s: f64,
    pub(super) stage: Option<String>,
    pub(super) commit_sha: Option<String>,
    pub(super) body: String,
    /// `ingested_at_ms` of a new row, `updated_at_ms` of a changed one.
    pub(super) now_ms: i64,
    pub(super) samples: [f64; 6],
}

impl RunRow {
    /// The row of `run`, stored from `source` at `now` (also its event time
    /// when it has no time of its own).
    pub fn new(run: &Run, source: RunSource, now: DateTime<Utc>) -> Result<Self, StoreError> {
        let body = serde_json::to_string(run).map_err(|e| StoreError::Corrupt {
            what: "run".into(),
            detail: e.to_string(),
        })?;
        Ok(Self {
            pipeline: run.pipeline.clone(),
            run_id: run.run_id.clone(),
            attempt: i64::from(run.attempt),
            status: run.status.as_str(),
            is_final: run.status.is_final(),
            source: source.as_str(),
            started_at_ms: run.started_at.map(ms),
            finished_at_ms: run.finished_at.map(ms),
            event_time_ms: ms(run.event_time().unwrap_or(now)),
            duration_s: nullable_f64(run.duration_s()),
            stage: run.stage.clone(),
            commit_sha: run.commit.clone(),
            body,
            now_ms: ms(now),
            samples: run.builtin_samples().map(nullable_f64),
        })
    }

    /// What identifies the stored run: pipeline, run id, attempt.
    pub(super) fn key(&self) -> (&str, &str, i64) {
        (&self.pipeline, &self.run_id, self.attempt)
    }
}

/// `INSERT .. ON CONFLICT DO NOTHING RETURNING id, pipeline, run_id,
/// attempt` of `rows` rows, [`RUN_COLUMNS`] values each, bound in the order
/// [`RunRow`] lists them (see `WriteTx::insert_new_runs`): pipeline, run
/// id, attempt, status, source, started, finished, event time, duration,
/// stage, commit, body, now twice (ingested and updated), the six metrics.
pub(super) fn insert_sql(backend: Backend, rows: usize) -> String {
    let mut sql = String::with_capacity(256 + rows * 160);
    sql.push_str(
        "INSERT INTO runs (pipeline, run_id, attempt, status, source, started_at_ms, \
         finished_at_ms, event_time_ms, duration_s, stage, commit_sha, body, ingested_at_ms, \
         updated_at_ms, ",
    );
    sql.push_str(&BUILTIN_SAMPLE_COLUMNS.join(", "));
    sql.push_str(") VALUES ");
    // A nullable double (see `nullable_f64`) is bound as -1.0 for NULL.
    let nullable = |sql: &mut String, at: usize| {
        sql.push_str("NULLIF(");
        sql.push_str(&placeholders(backend, at, 1));
        sql.push_str(", -1.0)");
    };
    for n in 0..rows {
        let b = n * RUN_COLUMNS;
        if n > 0 {
            sql.push_str(", ");
        }
        // Column 9, the duration, and the last six, the built-in
        // metrics, are stored as NULL when unknown.
        sql.push('(');
        sql.push_str(&placeholders(backend, b + 1, 8));
        sql.push_str(", ");
        nullable(&mut sql, b + 9);
        sql.push_str(", ");
        sql.push_str(&placeholders(backend, b + 10, 5));
        for k in 0..BUILTIN_SAMPLE_COLUMNS.len() {
            sql.push_str(", ");
            nullable(&mut sql, b + 15 + k);
        }
        sql.push(')');
    }
    sql.push_str(
        " ON CONFLICT (pipeline, run_id, attempt) DO NOTHING RETURNING id, pipeline, run_id, attempt",
    );
    sql
}

/// The stored row of a run that is already known, by its key ($1–$3).
pub(super) const SELECT_STORED_SQL: &str =
    "SELECT id, status, body FROM runs WHERE pipeline = $1 AND run_id = $2 AND attempt = $3";

/// Rewrites a known run that changed: status, source, started, finished,
/// event time, duration, stage, commit, body, updated, the six metrics
/// ($1–$16), where the row id is $17.
pub(super) const UPDATE_SQL: &str = "UPDATE runs SET status = $1, source = $2, \
     started_at_ms = $3, finished_at_ms = $4, event_time_ms = $5, duration_s = NULLIF($6, -1.0), \
     stage = $7, commit_sha = $8, body = $9, updated_at_ms = $10, \
     sample_duration_s = NULLIF($11, -1.0), sample_test_failure_rate = NULLIF($12, -1.0), \
     sample_cpu_peak_pct = NULLIF($13, -1.0), sample_mem_peak_mb = NULLIF($14, -1.0), \
     sample_error_rate = NULLIF($15, -1.0), sample_latency_p95_ms = NULLIF($16, -1.0) \
     WHERE id = $17";

/// What a stored row's status and body say of `row` written over it:
/// `None` when the body is the same (a duplicate, nothing to write), else
/// whether the run became final with this write.
pub(super) fn change_over(row: &RunRow, old_status: &str, old_body: &str) -> Option<bool> {
    if old_body == row.body {
        return None;
    }
    let was_final = crate::domain::RunStatus::parse_loose(old_status).is_some_and(|s| s.is_final());
    Some(!was_final && row.is_final)
}
