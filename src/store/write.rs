//! Write transactions: everything an ingest request, a poll or a decision
//! writes goes through one [`WriteTx`] and commits together or not at all.

use chrono::{DateTime, Utc};
use sqlx::{Any, Row, Transaction};
use tokio::sync::OwnedMutexGuard;

use super::run_row::{change_over, insert_sql, RunRow, SELECT_STORED_SQL, UPDATE_SQL};
use super::sql::placeholders;
use super::{ms, Backend, StoreError};
use crate::domain::{Run, RunSource};

/// Runs in one multi-row `INSERT` (20 bind values each;
/// SQLite allows 32,766 per statement, PostgreSQL 65,535).
const RUNS_PER_STATEMENT: usize = 500;

/// Verdicts in one multi-row `UPDATE` (4 bind values each).
const VERDICTS_PER_STATEMENT: usize = 1_000;

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

/// Records a delivery or event id ($1 source, $2 id, $3 time); a row
/// comes back only when the id is new.
pub(super) const CLAIM_EVENT_SQL: &str = "INSERT INTO processed_events \
     (source, event_id, received_at_ms) VALUES ($1, $2, $3) \
     ON CONFLICT (source, event_id) DO NOTHING RETURNING event_id";

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
        let row = sqlx::query(CLAIM_EVENT_SQL)
            .bind(source)
            .bind(event_id)
            .bind(ms(now))
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(row.is_some())
    }

    /// Stores a run, identified by pipeline + run id + attempt. A run seen
    /// before is rewritten only when it changed.
    pub async fn upsert_run(
        &mut self,
        run: &Run,
        source: RunSource,
        now: DateTime<Utc>,
    ) -> Result<Upserted, StoreError> {
        self.upsert_row(&RunRow::new(run, source, now)?).await
    }

    /// [`WriteTx::upsert_run`] of a run's row.
    async fn upsert_row(&mut self, row: &RunRow) -> Result<Upserted, StoreError> {
        // The common case, a run not seen before, costs one statement.
        if let Some(&pk) = self.insert_new_rows(&[row]).await?.get(&key_of(row)) {
            return Ok(Upserted {
                pk,
                outcome: RunOutcome::Inserted,
                became_final: row.is_final,
            });
        }
        let stored = sqlx::query(SELECT_STORED_SQL)
            .bind(&row.pipeline)
            .bind(&row.run_id)
            .bind(row.attempt)
            .fetch_one(&mut *self.tx)
            .await?;
        let pk: i64 = stored.get(0);
        let (old_status, old_body): (String, String) = (stored.get(1), stored.get(2));
        let Some(became_final) = change_over(row, &old_status, &old_body) else {
            return Ok(Upserted {
                pk,
                outcome: RunOutcome::Duplicate,
                became_final: false,
            });
        };
        let mut query = bind_run_values(sqlx::query(UPDATE_SQL), row);
        for value in row.samples {
            query = query.bind(value);
        }
        query.bind(pk).execute(&mut *self.tx).await?;
        Ok(Upserted {
            pk,
            outcome: RunOutcome::Updated,
            became_final,
        })
    }

    /// Stores many runs, in order, with as few statements as possible: the
    /// runs not seen before go in multi-row `INSERT`s; a run whose key is
    /// already stored (or repeats an earlier run of the same call) goes
    /// through [`WriteTx::upsert_run`]. The outcome of `runs[i]` is
    /// `result[i]`, exactly as if each had been upserted alone in turn, and
    /// the runs new to the store get row ids in input order.
    pub async fn upsert_runs(
        &mut self,
        runs: &[&Run],
        source: RunSource,
        now: DateTime<Utc>,
    ) -> Result<Vec<Upserted>, StoreError> {
        let rows = runs
            .iter()
            .map(|run| RunRow::new(run, source, now))
            .collect::<Result<Vec<_>, _>>()?;
        self.upsert_rows(&rows).await
    }

    /// [`WriteTx::upsert_runs`] of the runs' rows.
    pub async fn upsert_rows(&mut self, rows: &[RunRow]) -> Result<Vec<Upserted>, StoreError> {
        let mut out: Vec<Option<Upserted>> = vec![None; rows.len()];
        // Only the first run of each key can be new; later ones are
        // compared with what is stored by then, in order.
        let mut seen = std::collections::HashSet::with_capacity(rows.len());
        let firsts: Vec<usize> = (0..rows.len())
            .filter(|&i| seen.insert(rows[i].key()))
            .collect();
        for chunk in firsts.chunks(RUNS_PER_STATEMENT) {
            let batch: Vec<&RunRow> = chunk.iter().map(|&i| &rows[i]).collect();
            let ids = self.insert_new_rows(&batch).await?;
            for &i in chunk {
                if let Some(&pk) = ids.get(&key_of(&rows[i])) {
                    out[i] = Some(Upserted {
                        pk,
                        outcome: RunOutcome::Inserted,
                        became_final: rows[i].is_final,
                    });
                }
            }
        }
        for (row, slot) in rows.iter().zip(out.iter_mut()) {
            if slot.is_none() {
                *slot = Some(self.upsert_row(row).await?);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// One multi-row `INSERT .. ON CONFLICT DO NOTHING` of `rows`; returns
    /// the row ids of those inserted, by key.
    async fn insert_new_rows(
        &mut self,
        rows: &[&RunRow],
    ) -> Result<std::collections::HashMap<(String, String, i64), i64>, StoreError> {
        let sql = insert_sql(self.backend, rows.len());
        let mut query = sqlx::query(&sql);
        for row in rows {
            query = query
                .bind(row.pipeline.as_str())
                .bind(row.run_id.as_str())
                .bind(row.attempt);
            query = bind_run_values(query, row).bind(row.now_ms);
            for value in row.samples {
                query = query.bind(value);
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
                let row = super::VerdictRow::new(*pk, verdict)?;
                query = query
                    .bind(row.run_pk)
                    .bind(row.score)
                    .bind(row.grade)
                    .bind(row.json);
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

/// Binds the values an insert and an update of `row` share, in the order
/// both statements list them: status, source, started, finished, event
/// time, duration, stage, commit, body, now.
fn bind_run_values<'q>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    row: &'q RunRow,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(row.status)
        .bind(row.source)
        .bind(row.started_at_ms)
        .bind(row.finished_at_ms)
        .bind(row.event_time_ms)
        .bind(row.duration_s)
        .bind(row.stage.as_deref())
        .bind(row.commit_sha.as_deref())
        .bind(row.body.as_str())
        .bind(row.now_ms)
}

/// A row's key as an owned map key.
fn key_of(row: &RunRow) -> (String, String, i64) {
    (row.pipeline.clone(), row.run_id.clone(), row.attempt)
}
