//! Write transactions: everything an ingest request, a poll or a decision
//! writes goes through one [`WriteTx`] and commits together or not at all.

use chrono::{DateTime, Utc};
use sqlx::{Any, Row, Transaction};
use tokio::sync::OwnedMutexGuard;

use super::{ms, Backend, StoreError};
use crate::domain::{Run, RunSource};

/// A nullable, non-negative double as a bind value: `-1.0` stands for
/// NULL and the SQL turns it back with `NULLIF(.., -1.0)`. sqlx's `Any`
/// driver declares a NULL double as a 4-byte float to PostgreSQL, which then
/// rejects 8-byte values bound to the same cached statement.
pub(super) fn nullable_f64(v: Option<f64>) -> f64 {
    v.unwrap_or(-1.0)
}

/// `count` bind placeholders from the `first` (1-based), comma-separated,
/// for a statement whose placeholders appear in the order their values are
/// bound. PostgreSQL gets `$N`; SQLite gets anonymous `?`, because sqlx
/// asks SQLite for each parameter's name and SQLite finds a named one by
/// a linear scan: a statement of thousands of `$N` binds cost the square
/// of its size (it was most of the time of a 100-run ingest).
pub(super) fn placeholders(backend: Backend, first: usize, count: usize) -> String {
    let mut out = String::with_capacity(count * 6);
    for i in 0..count {
        if i > 0 {
            out.push_str(", ");
        }
        match backend {
            Backend::Sqlite => out.push('?'),
            Backend::Postgres => {
                out.push('$');
                out.push_str(&(first + i).to_string());
            }
        }
    }
    out
}

/// Values named in one `IN (...)` or `VALUES` list of a batched statement.
pub(super) const IN_LIST_MAX: usize = 500;

/// Runs in one multi-row `INSERT` ([`RUN_COLUMNS`] bind values each;
/// SQLite allows 32,766 per statement, PostgreSQL 65,535).
const RUNS_PER_STATEMENT: usize = 500;

/// Bind values of one run in [`WriteTx::insert_new_runs`].
const RUN_COLUMNS: usize = 20;

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

/// Verdicts in one multi-row `UPDATE` (4 bind values each).
const VERDICTS_PER_STATEMENT: usize = 1_000;

/// What identifies a stored run: pipeline, run id, attempt.
fn run_key(run: &Run) -> (String, String, i64) {
    (
        run.pipeline.clone(),
        run.run_id.clone(),
        i64::from(run.attempt),
    )
}

/// The run as stored in `runs.body`.
fn run_body(run: &Run) -> Result<String, StoreError> {
    serde_json::to_string(run).map_err(|e| StoreError::Corrupt {
        what: "run".into(),
        detail: e.to_string(),
    })
}

/// What storing one run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// A run not seen before.
    Inserted,
    /// A known run that changed (finished, or gained stages).
    Updated,
    /// Exactly what was already stored; nothing written.
    Duplicate,
}

/// The result of [`WriteTx::upsert_run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upserted {
    pub pk: i64,
    pub outcome: RunOutcome,
    /// The run reached a final status with this write (it is ready to score).
    pub became_final: bool,
}

pub struct WriteTx {
    tx: Transaction<'static, Any>,
    backend: Backend,
    _gate: Option<OwnedMutexGuard<()>>,
    /// A bulk write's larger page cache goes back to the usual size at the
    /// commit (see [`super::Store::begin_bulk_write`]).
    restore_cache: bool,
}

impl WriteTx {
    pub(super) fn new(
        tx: Transaction<'static, Any>,
        backend: Backend,
        gate: Option<OwnedMutexGuard<()>>,
    ) -> Self {
        Self {
            tx,
            backend,
            _gate: gate,
            restore_cache: false,
        }
    }

    /// Brings the connection's page cache back to its usual size at the
    /// commit.
    pub(super) fn restore_cache_at_commit(&mut self) {
        self.restore_cache = true;
    }

    /// The database this transaction runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }

    pub async fn commit(mut self) -> Result<(), StoreError> {
        if self.restore_cache {
            // Before the commit, while the pages the transaction changed
            // are held: SQLite frees what is beyond the size once they
            // are written.
            sqlx::query(super::SQLITE_CACHE_PRAGMA)
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }

    /// Records that the event `(source, event_id)` is handled. Returns false
    /// when it already was (a redelivery), in which case the caller should
    /// write nothing else.
    pub async fn claim_event(
        &mut self,
        source: &str,
        event_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "INSERT INTO processed_events (source, event_id, received_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (source, event_id) DO NOTHING RETURNING event_id",
        )
        .bind(source)
        .bind(event_id)
        .bind(ms(now))
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(row.is_some())
    }

    /// Stores a run, identified by pipeline + run id + attempt. A run seen
    /// before is rewritten only when it changed; its metric samples follow.
    pub async fn upsert_run(
        &mut self,
        run: &Run,
        source: RunSource,
        now: DateTime<Utc>,
    ) -> Result<Upserted, StoreError> {
        // The common case, a run not seen before, costs one statement.
        let inserted = self
            .insert_new_runs(&[run], &[0], source, now)
            .await?
            .get(&run_key(run))
            .copied();
        let (pk, outcome, became_final) = match inserted {
            Some(pk) => (pk, RunOutcome::Inserted, run.status.is_final()),
            None => {
                let body = run_body(run)?;
                let event_time = run.event_time().unwrap_or(now);
                let row = sqlx::query(
                    "SELECT id, status, body FROM runs WHERE pipeline = $1 AND run_id = $2 AND attempt = $3",
                )
                .bind(&run.pipeline)
                .bind(&run.run_id)
                .bind(i64::from(run.attempt))
                .fetch_one(&mut *self.tx)
                .await?;
                let pk: i64 = row.get(0);
                let old_status: String = row.get(1);
                let old_body: String = row.get(2);
                if old_body == body {
                    return Ok(Upserted {
                        pk,
                        outcome: RunOutcome::Duplicate,
                        became_final: false,
                    });
                }
                let was_final = crate::domain::RunStatus::parse_loose(&old_status)
                    .is_some_and(|s| s.is_final());
                let mut query = sqlx::query(
                    "UPDATE runs SET status = $1, source = $2, started_at_ms = $3, finished_at_ms = $4, \
                     event_time_ms = $5, duration_s = NULLIF($6, -1.0), stage = $7, commit_sha = $8, body = $9, \
                     updated_at_ms = $10, sample_duration_s = NULLIF($11, -1.0), \
                     sample_test_failure_rate = NULLIF($12, -1.0), sample_cpu_peak_pct = NULLIF($13, -1.0), \
                     sample_mem_peak_mb = NULLIF($14, -1.0), sample_error_rate = NULLIF($15, -1.0), \
                     sample_latency_p95_ms = NULLIF($16, -1.0) WHERE id = $17",
                )
                .bind(run.status.as_str())
                .bind(source.as_str())
                .bind(run.started_at.map(ms))
                .bind(run.finished_at.map(ms))
                .bind(ms(event_time))
                .bind(nullable_f64(run.duration_s()))
                .bind(run.stage.as_deref())
                .bind(run.commit.as_deref())
                .bind(&body)
                .bind(ms(now));
                for value in run.builtin_samples() {
                    query = query.bind(nullable_f64(value));
                }
                query.bind(pk).execute(&mut *self.tx).await?;
                (pk, RunOutcome::Updated, !was_final && run.status.is_final())
            }
        };
        Ok(Upserted {
            pk,
            outcome,
            became_final,
        })
    }

    /// Stores many runs, in order, with as few statements as possible: the
    /// runs not seen before go in multi-row `INSERT`s (their metric samples
    /// too); a run whose key is already stored (or repeats an earlier run of
    /// the same call) goes through [`WriteTx::upsert_run`]. The outcome of
    /// `runs[i]` is `result[i]`, exactly as if each had been upserted alone
    /// in turn, and the runs new to the store get row ids in input order.
    pub async fn upsert_runs(
        &mut self,
        runs: &[&Run],
        source: RunSource,
        now: DateTime<Utc>,
    ) -> Result<Vec<Upserted>, StoreError> {
        let mut out: Vec<Option<Upserted>> = vec![None; runs.len()];
        // Only the first run of each key can be new; later ones are
        // compared with what is stored by then, in order.
        let mut first_of_key = std::collections::HashSet::with_capacity(runs.len());
        let candidates: Vec<usize> = (0..runs.len())
            .filter(|&i| first_of_key.insert(run_key(runs[i])))
            .collect();
        let mut inserted: Vec<(usize, i64)> = Vec::with_capacity(candidates.len());
        for chunk in candidates.chunks(RUNS_PER_STATEMENT) {
            let ids = self.insert_new_runs(runs, chunk, source, now).await?;
            for &i in chunk {
                if let Some(&pk) = ids.get(&run_key(runs[i])) {
                    inserted.push((i, pk));
                }
            }
        }
        for &(i, pk) in &inserted {
            out[i] = Some(Upserted {
                pk,
                outcome: RunOutcome::Inserted,
                became_final: runs[i].status.is_final(),
            });
        }
        for (i, slot) in out.iter_mut().enumerate() {
            if slot.is_none() {
                *slot = Some(self.upsert_run(runs[i], source, now).await?);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// One multi-row `INSERT .. ON CONFLICT DO NOTHING` of `runs[i]` for each
    /// `i` in `which`; returns the row ids of those inserted, by key.
    async fn insert_new_runs(
        &mut self,
        runs: &[&Run],
        which: &[usize],
        source: RunSource,
        now: DateTime<Utc>,
    ) -> Result<std::collections::HashMap<(String, String, i64), i64>, StoreError> {
        let mut sql = String::with_capacity(256 + which.len() * 160);
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
            sql.push_str(&placeholders(self.backend, at, 1));
            sql.push_str(", -1.0)");
        };
        for n in 0..which.len() {
            let b = n * RUN_COLUMNS;
            if n > 0 {
                sql.push_str(", ");
            }
            // Column 9, the duration, and the last six, the built-in
            // metrics, are stored as NULL when unknown.
            sql.push('(');
            sql.push_str(&placeholders(self.backend, b + 1, 8));
            sql.push_str(", ");
            nullable(&mut sql, b + 9);
            sql.push_str(", ");
            sql.push_str(&placeholders(self.backend, b + 10, 5));
            for k in 0..BUILTIN_SAMPLE_COLUMNS.len() {
                sql.push_str(", ");
                nullable(&mut sql, b + 15 + k);
            }
            sql.push(')');
        }
        sql.push_str(
            " ON CONFLICT (pipeline, run_id, attempt) DO NOTHING RETURNING id, pipeline, run_id, attempt",
        );
        let mut query = sqlx::query(&sql);
        for &i in which {
            let run = runs[i];
            let body = run_body(run)?;
            let event_time = run.event_time().unwrap_or(now);
            query = query
                .bind(run.pipeline.clone())
                .bind(run.run_id.clone())
                .bind(i64::from(run.attempt))
                .bind(run.status.as_str())
                .bind(source.as_str())
                .bind(run.started_at.map(ms))
                .bind(run.finished_at.map(ms))
                .bind(ms(event_time))
                .bind(nullable_f64(run.duration_s()))
                .bind(run.stage.clone())
                .bind(run.commit.clone())
                .bind(body)
                .bind(ms(now))
                .bind(ms(now));
            for value in run.builtin_samples() {
                query = query.bind(nullable_f64(value));
            }
        }
        let rows = query.fetch_all(&mut *self.tx).await?;
        Ok(rows
            .iter()
            .map(|r| ((r.get(1), r.get(2), r.get(3)), r.get(0)))
            .collect())
    }

    /// Stores the verdicts of scored runs (`(row id, verdict)`), in
    /// multi-row statements: what [`WriteTx::set_verdict`] does for one.
    pub async fn set_verdicts(
        &mut self,
        verdicts: &[(i64, &crate::domain::Verdict)],
    ) -> Result<(), StoreError> {
        for chunk in verdicts.chunks(VERDICTS_PER_STATEMENT) {
            let mut sql = String::from("WITH v (id, score, grade, verdict) AS (VALUES ");
            for n in 0..chunk.len() {
                let b = n * 4;
                if n > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                sql.push_str(&placeholders(self.backend, b + 1, 4));
                sql.push(')');
            }
            sql.push_str(
                ") UPDATE runs SET score = v.score, grade = v.grade, verdict = v.verdict, \
                 scored_times = scored_times + 1 FROM v WHERE runs.id = v.id",
            );
            let mut query = sqlx::query(&sql);
            for (pk, verdict) in chunk {
                let json = serde_json::to_string(verdict).map_err(|e| StoreError::Corrupt {
                    what: "verdict".into(),
                    detail: e.to_string(),
                })?;
                query = query
                    .bind(*pk)
                    .bind(verdict.score)
                    .bind(verdict.grade)
                    .bind(json);
            }
            query.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// A stored run, read inside this transaction.
    pub async fn get_run(
        &mut self,
        pipeline: &str,
        run_id: &str,
        attempt: u32,
    ) -> Result<Option<Run>, StoreError> {
        let row = sqlx::query(
            "SELECT body FROM runs WHERE pipeline = $1 AND run_id = $2 AND attempt = $3",
        )
        .bind(pipeline)
        .bind(run_id)
        .bind(i64::from(attempt))
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(|r| {
            let body: String = r.get(0);
            serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
                what: "runs.body".into(),
                detail: e.to_string(),
            })
        })
        .transpose()
    }

    /// Every piece of ingest state of `kind` whose key starts with `prefix`,
    /// with its last update time.
    pub async fn states_with_prefix(
        &mut self,
        kind: &str,
        prefix: &str,
    ) -> Result<Vec<(String, String, DateTime<Utc>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, value, updated_at_ms FROM ingest_state \
             WHERE kind = $1 AND substr(key, 1, length($2)) = $2 ORDER BY key",
        )
        .bind(kind)
        .bind(prefix)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), super::from_ms(r.get(2))))
            .collect())
    }

    /// Saves a piece of ingest state (an assembly in progress, a poll cursor).
    pub async fn put_state(
        &mut self,
        kind: &str,
        key: &str,
        value: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ingest_state (kind, key, value, updated_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(kind)
        .bind(key)
        .bind(value)
        .bind(ms(now))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Reads a piece of ingest state inside this transaction.
    pub async fn get_state(&mut self, kind: &str, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM ingest_state WHERE kind = $1 AND key = $2")
            .bind(kind)
            .bind(key)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(row.map(|r| r.get::<String, _>(0)))
    }

    pub async fn delete_state(&mut self, kind: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM ingest_state WHERE kind = $1 AND key = $2")
            .bind(kind)
            .bind(key)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Records one audit entry ([`WriteTx::audit`]) and commits: how every
    /// audited write ends, so that the entry and the change it describes
    /// are stored together or not at all.
    pub async fn commit_audited(
        mut self,
        at: DateTime<Utc>,
        kind: &str,
        subject: &str,
        actor: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.audit(at, kind, subject, actor, detail).await?;
        self.commit().await
    }

    /// Appends an audit record.
    pub async fn audit(
        &mut self,
        at: DateTime<Utc>,
        kind: &str,
        subject: &str,
        actor: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (at_ms, kind, subject, actor, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(ms(at))
        .bind(kind)
        .bind(subject)
        .bind(actor)
        .bind(detail.to_string())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres_and_anonymous_for_sqlite() {
        assert_eq!(placeholders(Backend::Postgres, 9, 3), "$9, $10, $11");
        assert_eq!(placeholders(Backend::Sqlite, 9, 3), "?, ?, ?");
        assert_eq!(placeholders(Backend::Sqlite, 1, 0), "");
    }
}
