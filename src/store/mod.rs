//! The store: runs, metric samples, processed event ids, ingest state,
//! approval requests, votes and executions, plan outcomes and autonomy
//! stops, and the audit log, on SQLite (embedded default: one file, WAL, durable commits) or
//! PostgreSQL (several replicas sharing one database), chosen by URL.
//!
//! One implementation serves both backends through sqlx's `Any` driver with
//! portable SQL (`$n` parameters, `ON CONFLICT`, `RETURNING`); each backend
//! has its own embedded migrations with the same tables. The contract test
//! suite (`tests/api/store.rs`) runs the same bodies against both.
//!
//! Writes go through [`Store::begin_write`], which returns a [`WriteTx`]:
//! everything done in it commits together or not at all. On SQLite writers
//! are serialised inside the process (SQLite has one writer anyway; this
//! avoids lock-upgrade failures), so one SQLite file belongs to one process.
//! A backfill on a SQLite file writes through [`BulkRunWriter`] instead
//! (rusqlite on a connection of its own, the same rows and SQL, holding the
//! same write gate), and so do the hot writes of a running server: groups
//! of ingest calls and verdicts that open or close no anomaly record
//! ([`Store::store_run_calls`], [`Store::store_quiet_verdicts`], on the
//! store's own rusqlite connection, taking the gate for each transaction).

mod approvals;
pub mod backup;
mod bulk;
mod console;
mod detection;
mod gauges;
mod incidents;
mod leases;
mod outbox;
mod outcomes;
mod paging;
mod plans;
mod run_row;
mod schema;
mod sql;
mod sqlite_writer;
mod write;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::ConnectOptions;
use sqlx::{AnyPool, Row};

use crate::domain::{Run, RunStatus};

pub use approvals::{
    ExecutionState, IncidentApproval, NewApprovalRequest, NewExecution, StoredExecution,
    StoredRequest, StoredVote,
};
pub use bulk::BulkRunWriter;
pub use console::{
    AuditFilter, GradedRun, GradedSummary, IncidentFilter, IncidentSelection, OverviewRuns,
};
pub use detection::StoredModel;
pub use gauges::{OutboxBacklog, WorkInFlight};
pub use incidents::{NewIncident, Silence, StoredDecision};
pub use leases::{
    parse_verdict_payload, LeaseGrant, QueuedRun, ScoringClaim, SCORING_CHANNEL, VERDICT_CHANNEL,
};
pub use outbox::{NewOutbox, OutboxKind, OutboxRow, OutboxStatus};
pub use outcomes::{fate_of_status, AutonomyStop, NewOutcome, OfferedPlan};
pub use paging::{NewPage, PageAction, PageStatus, StoredPage};
pub use plans::{NewPlan, PlanStatus, StoredPlan};
pub use run_row::RunRow;
pub use schema::SchemaStatus;
pub use sqlite_writer::{CallStored, RunCall, VerdictRow};
pub use write::{RunOutcome, Upserted, WriteTx};

/// How long one statement may take before the driver logs it as slow.
const SLOW_STATEMENT: Duration = Duration::from_secs(10);

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store URL {0:?} is neither sqlite: nor postgres://")]
    UnsupportedUrl(String),
    #[error("cannot open the store at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot apply store migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("stored data is corrupt ({what}): {detail}")]
    Corrupt { what: String, detail: String },
    #[error("store write failed: {0}")]
    Bulk(String),
    #[error("this replica no longer holds the lease of pipeline {0:?}; another one scores it")]
    LeaseLost(String),
}

/// A run as stored, with its row id and ingest metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRun {
    pub pk: i64,
    pub source: String,
    pub ingested_at: DateTime<Utc>,
    pub run: Run,
}

/// The columns health and listings need, without the JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub run_id: String,
    pub attempt: i64,
    pub status: RunStatus,
    pub event_time: DateTime<Utc>,
    pub duration_s: Option<f64>,
    pub stage: Option<String>,
    pub commit: Option<String>,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub subject: String,
    pub actor: String,
    pub detail: serde_json::Value,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Serialises writers on SQLite.
    write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
    /// The SQLite file, for [`Store::bulk_run_writer`] (none in memory or
    /// on PostgreSQL).
    sqlite_file: Option<std::path::PathBuf>,
    /// The connection the hot writes go through on a SQLite file (groups
    /// of ingest calls, verdicts that change no anomaly record).
    sqlite_writer: Option<Arc<sqlite_writer::SqliteWriter>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The page cache of each SQLite connection: 32 MiB (SQLite's default is
/// 2 MB). A transaction of thousands of runs dirties index pages all over
/// a big store; with a small cache SQLite writes them out and reads them
/// back within the transaction, which was most of a large backfill's time.
/// Pages are cached as they are used: idle connections hold little.
const SQLITE_CACHE_PRAGMA: &str = "PRAGMA cache_size = -32768";

/// What every connection to a SQLite file sets, besides the log mode (the
/// file's own, set by the pool's connections): durable commits, a wait for
/// the lock, foreign keys, and the page cache. A multi-row statement keeps
/// a statement journal (to undo itself alone): in memory, not in a temp
/// file.
const SQLITE_CONNECTION_PRAGMAS: [&str; 5] = [
    "PRAGMA synchronous = FULL",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA foreign_keys = ON",
    "PRAGMA temp_store = MEMORY",
    SQLITE_CACHE_PRAGMA,
];

/// The page cache of a SQLite connection during a bulk write
/// ([`Store::begin_bulk_write`]): 128 MiB, so that the index pages a
/// transaction of a hundred thousand runs dirties stay in memory until
/// its commit writes each once, rather than being spilled to the log and
/// read back in the middle of it.
const SQLITE_BULK_CACHE_PRAGMA: &str = "PRAGMA cache_size = -131072";

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates the store.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let shown = crate::config::redact_url(url);
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            // sqlx wants `mode=rwc` to create the file on first start.
            let mut u = format!("sqlite:{rest}");
            if !u.contains("mode=") && !rest.contains(":memory:") {
                u.push(if u.contains('?') { '&' } else { '?' });
                u.push_str("mode=rwc");
            }
            (Backend::Sqlite, u)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(StoreError::UnsupportedUrl(shown));
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|source| StoreError::Connect {
                url: shown.clone(),
                source,
            })?
            // A long backfill commits large transactions that take more than
            // the driver's default second: say so only when a statement is
            // slow enough to be a problem, never with the statement's text
            // logged at every busy moment.
            .log_slow_statements(log::LevelFilter::Warn, SLOW_STATEMENT);
        let mut pool_options = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            pool_options = pool_options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    use sqlx::Executor;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    for pragma in SQLITE_CONNECTION_PRAGMAS {
                        conn.execute(pragma).await?;
                    }
                    Ok(())
                })
            });
        }
        let pool = pool_options
            .connect_with(options.clone())
            .await
            .map_err(|source| StoreError::Connect {
                url: shown.clone(),
                source,
            })?;
        // On PostgreSQL, under the migration lock (see `schema`).
        schema::migrate(&pool, backend, &options, &shown).await?;
        // A database in memory is seen by no other connection, and one
        // opened read-only must stay so.
        let own_file =
            !(url.contains(":memory:") || url.contains("mode=memory") || url.contains("mode=ro"));
        let sqlite_file = if backend == Backend::Sqlite && own_file {
            sqlx::sqlite::SqliteConnectOptions::from_str(&url)
                .ok()
                .map(|o| o.get_filename().to_path_buf())
        } else {
            None
        };
        Ok(Self {
            pool,
            backend,
            write_gate: (backend == Backend::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(()))),
            sqlite_writer: sqlite_file.clone().map(sqlite_writer::SqliteWriter::new),
            sqlite_file,
        })
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection (waits for them to be returned).
    pub async fn close(&self) {
        self.close_sqlite_writer().await;
        self.pool.close().await;
    }

    /// Starts a write transaction; nothing in it is visible until
    /// [`WriteTx::commit`], and dropping it rolls everything back.
    pub async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        let gate = match &self.write_gate {
            Some(gate) => Some(gate.clone().lock_owned().await),
            None => None,
        };
        let tx = self.pool.begin().await?;
        Ok(WriteTx::new(tx, self.backend, gate))
    }

    /// [`Store::begin_write`] for a transaction of many thousands of rows
    /// (a backfill). On SQLite its connection caches more pages
    /// ([`SQLITE_BULK_CACHE_PRAGMA`]) until [`WriteTx::commit`] brings the
    /// cache back to its usual size; a bulk transaction dropped without a
    /// commit leaves its connection with the larger cache.
    pub async fn begin_bulk_write(&self) -> Result<WriteTx, StoreError> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Sqlite {
            sqlx::query(SQLITE_BULK_CACHE_PRAGMA)
                .execute(tx.conn())
                .await?;
            tx.restore_cache_at_commit();
        }
        Ok(tx)
    }

    /// A writer of many runs on a connection of its own
    /// ([`BulkRunWriter`]), when the store is a SQLite file; `None` on
    /// PostgreSQL or an in-memory SQLite database, where
    /// [`Store::begin_bulk_write`] is the way. It holds the write gate
    /// until it is dropped.
    pub async fn bulk_run_writer(&self) -> Result<Option<BulkRunWriter>, StoreError> {
        let (Some(file), Some(gate)) = (&self.sqlite_file, &self.write_gate) else {
            return Ok(None);
        };
        let gate = gate.clone().lock_owned().await;
        let file = file.clone();
        tokio::task::spawn_blocking(move || BulkRunWriter::open(&file, gate).map(Some))
            .await
            .map_err(|e| StoreError::Bulk(format!("the writer's thread failed: {e}")))?
    }

    /// Every pipeline with at least one stored run, sorted.
    pub async fn pipelines(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT pipeline FROM runs ORDER BY pipeline")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
    }

    /// Number of stored runs (all pipelines).
    pub async fn count_runs(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM runs")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.get::<i64, _>(0))
    }

    /// Summaries of a pipeline's runs whose event time is in `[from, to)`,
    /// oldest first.
    pub async fn run_summaries(
        &self,
        pipeline: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RunSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT run_id, attempt, status, event_time_ms, duration_s, stage, commit_sha \
             FROM runs WHERE pipeline = $1 AND event_time_ms >= $2 AND event_time_ms < $3 \
             ORDER BY event_time_ms, id",
        )
        .bind(pipeline)
        .bind(ms(from))
        .bind(ms(to))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(summary_from_row).collect()
    }

    /// The most recent run of a pipeline (by event time).
    pub async fn last_run(&self, pipeline: &str) -> Result<Option<RunSummary>, StoreError> {
        let row = sqlx::query(
            "SELECT run_id, attempt, status, event_time_ms, duration_s, stage, commit_sha \
             FROM runs WHERE pipeline = $1 ORDER BY event_time_ms DESC, id DESC LIMIT 1",
        )
        .bind(pipeline)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(summary_from_row).transpose()
    }

    /// One stored run by its identity.
    pub async fn get_run(
        &self,
        pipeline: &str,
        run_id: &str,
        attempt: u32,
    ) -> Result<Option<StoredRun>, StoreError> {
        let row = sqlx::query(
            "SELECT id, source, ingested_at_ms, body FROM runs \
             WHERE pipeline = $1 AND run_id = $2 AND attempt = $3",
        )
        .bind(pipeline)
        .bind(run_id)
        .bind(i64::from(attempt))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(stored_from_row).transpose()
    }

    /// The latest attempt of a run.
    pub async fn latest_attempt(
        &self,
        pipeline: &str,
        run_id: &str,
    ) -> Result<Option<StoredRun>, StoreError> {
        let row = sqlx::query(
            "SELECT id, source, ingested_at_ms, body FROM runs \
             WHERE pipeline = $1 AND run_id = $2 ORDER BY attempt DESC LIMIT 1",
        )
        .bind(pipeline)
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(stored_from_row).transpose()
    }

    /// One stored run by its row id.
    pub async fn run_by_pk(&self, pk: i64) -> Result<Option<StoredRun>, StoreError> {
        let row = sqlx::query("SELECT id, source, ingested_at_ms, body FROM runs WHERE id = $1")
            .bind(pk)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(stored_from_row).transpose()
    }

    /// Replaces the stored body of run `pk` with `run` (evidence added after
    /// the run was stored: its log excerpt, its resource usage) and its
    /// built-in metric values, so resource usage read later joins the
    /// run's series; the run's identity and other columns stay as they
    /// were. Idempotent.
    pub async fn replace_run_body(&self, pk: i64, run: &Run) -> Result<(), StoreError> {
        let body = serde_json::to_string(run).map_err(|e| StoreError::Corrupt {
            what: "run".into(),
            detail: e.to_string(),
        })?;
        let mut sql = String::from("UPDATE runs SET body = $1");
        for (i, column) in run_row::BUILTIN_SAMPLE_COLUMNS.iter().enumerate() {
            sql.push_str(&format!(", {column} = NULLIF(${}, -1.0)", i + 2));
        }
        sql.push_str(" WHERE id = $8");
        let mut query = sqlx::query(&sql).bind(body);
        for value in run.builtin_samples() {
            query = query.bind(sql::nullable_f64(value));
        }
        query.bind(pk).execute(&self.pool).await?;
        Ok(())
    }

    /// The metric samples of one series in `[from, to)`, oldest first. A
    /// built-in metric is read from its column of the runs; a per-stage
    /// duration or a custom metric from the bodies of the pipeline's runs
    /// in the window (rarely read, so not stored a second time).
    pub async fn samples(
        &self,
        pipeline: &str,
        metric: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, f64)>, StoreError> {
        let builtin = crate::domain::BUILTIN_METRICS
            .iter()
            .position(|m| *m == metric)
            .map(|i| run_row::BUILTIN_SAMPLE_COLUMNS[i]);
        // The column name comes from a fixed list, never from input.
        let sql = match builtin {
            Some(column) => format!(
                "SELECT event_time_ms, {column} FROM runs \
                 WHERE pipeline = $1 AND event_time_ms >= $2 AND event_time_ms < $3 \
                 AND {column} IS NOT NULL ORDER BY event_time_ms, id"
            ),
            None => "SELECT event_time_ms, body FROM runs \
                     WHERE pipeline = $1 AND event_time_ms >= $2 AND event_time_ms < $3 \
                     ORDER BY event_time_ms, id"
                .to_string(),
        };
        let rows = sqlx::query(&sql)
            .bind(pipeline)
            .bind(ms(from))
            .bind(ms(to))
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let at = from_ms(row.get::<i64, _>(0));
            if builtin.is_some() {
                out.push((at, row.get::<f64, _>(1)));
                continue;
            }
            let body: String = row.get(1);
            let run: Run = serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
                what: format!("run of {pipeline}"),
                detail: e.to_string(),
            })?;
            if let Some(sample) = run.other_samples().into_iter().find(|s| s.metric == metric) {
                out.push((at, sample.value));
            }
        }
        Ok(out)
    }

    /// A piece of ingest state (see [`WriteTx::put_state`]).
    pub async fn get_state(&self, kind: &str, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM ingest_state WHERE kind = $1 AND key = $2")
            .bind(kind)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get::<String, _>(0)))
    }

    /// Forgets the processed event ids (see [`WriteTx::claim_event`])
    /// received before `before`, so the table stays bounded; returns how
    /// many went. A delivery repeated after that is stored again. Idempotent,
    /// and safe to run on several replicas at once.
    pub async fn prune_processed_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let pruned = sqlx::query("DELETE FROM processed_events WHERE received_at_ms < $1")
            .bind(ms(before))
            .execute(tx.conn())
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(pruned)
    }

    /// Audit entries at or after `since`, oldest first.
    pub async fn audit_since(&self, since: DateTime<Utc>) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at_ms, kind, subject, actor, detail FROM audit_log \
             WHERE at_ms >= $1 ORDER BY id",
        )
        .bind(ms(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_from_row).collect()
    }
}

pub(crate) fn audit_from_row(r: &sqlx::any::AnyRow) -> Result<AuditEntry, StoreError> {
    let detail: String = r.get(5);
    Ok(AuditEntry {
        id: r.get(0),
        at: from_ms(r.get(1)),
        kind: r.get(2),
        subject: r.get(3),
        actor: r.get(4),
        detail: serde_json::from_str(&detail).map_err(|e| StoreError::Corrupt {
            what: "audit_log.detail".into(),
            detail: e.to_string(),
        })?,
    })
}

fn summary_from_row(r: &sqlx::any::AnyRow) -> Result<RunSummary, StoreError> {
    let status: String = r.get(2);
    Ok(RunSummary {
        run_id: r.get(0),
        attempt: r.get(1),
        status: RunStatus::parse_loose(&status).ok_or_else(|| StoreError::Corrupt {
            what: "runs.status".into(),
            detail: status.clone(),
        })?,
        event_time: from_ms(r.get(3)),
        duration_s: r.get(4),
        stage: r.get(5),
        commit: r.get(6),
    })
}

pub(crate) fn stored_from_row(r: &sqlx::any::AnyRow) -> Result<StoredRun, StoreError> {
    let body: String = r.get(3);
    Ok(StoredRun {
        pk: r.get(0),
        source: r.get(1),
        ingested_at: from_ms(r.get(2)),
        run: serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
            what: "runs.body".into(),
            detail: e.to_string(),
        })?,
    })
}

impl Store {
    /// Audit entries about any of `subjects` (e.g. `incident/7`), oldest first.
    pub async fn audit_for(&self, subjects: &[String]) -> Result<Vec<AuditEntry>, StoreError> {
        let mut entries = Vec::new();
        for subject in subjects {
            let rows = sqlx::query(
                "SELECT id, at_ms, kind, subject, actor, detail FROM audit_log WHERE subject = $1 ORDER BY id",
            )
            .bind(subject)
            .fetch_all(&self.pool)
            .await?;
            for r in &rows {
                entries.push(audit_from_row(r)?);
            }
        }
        entries.sort_by_key(|e| e.id);
        Ok(entries)
    }
}
