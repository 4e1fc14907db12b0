//! Backfill writes on SQLite through a connection of their own: rusqlite
//! on the store's file, each run one step of one prepared `INSERT`. sqlx's
//! `Any` driver hands every statement, with its thousands of bind values
//! converted one by one, to its connection's worker thread; that hand-off,
//! not SQLite, limited a backfill to about the rate of the ingest bench's
//! raw insert ceiling. Same rows, same SQL ([`super::run_row`]) and the
//! same outcomes as [`super::WriteTx::upsert_rows`].
//!
//! Its connection leaves checkpoints (copying the write-ahead log into the
//! database file, and syncing it) to a thread of their own with its own
//! connection, woken after each commit: SQLite otherwise checkpoints in
//! the committing connection, so the writer stood still for each copy.
//! A passive checkpoint runs beside the writer's next transaction. The log
//! starts over only when it was wholly copied as a transaction begins,
//! which a checkpoint beside the writer never achieves: once the log is
//! past [`WAL_LIMIT`] the writer checkpoints it to the end itself (little
//! is left to copy by then) and truncates it, and [`BulkRunWriter::finish`]
//! does so at the end.
//!
//! The writer holds the store's SQLite write gate while it lives, so no
//! other writer of the process waits on SQLite's lock behind it; another
//! process waits up to the usual busy timeout. Its methods block (a commit
//! waits for the disk): call them off the async runtime.

use rusqlite::{OptionalExtension, ToSql};
use tokio::sync::OwnedMutexGuard;

use super::run_row::{change_over, insert_sql, RunRow, SELECT_STORED_SQL, UPDATE_SQL};
use super::{Backend, RunOutcome, StoreError, Upserted};

/// The page cache of the bulk writer's connection, as a bulk write's on
/// sqlx's (see `SQLITE_BULK_CACHE_PRAGMA` in the store): the index pages
/// a large transaction dirties stay in memory until its commit.
/// Checkpoints are the checkpointer's ([`Checkpointer`]).
const BULK_PRAGMAS: &str = "PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; \
     PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -131072; \
     PRAGMA wal_autocheckpoint = 0;";

/// The write-ahead log's size past which the writer checkpoints it whole
/// after a commit (a few of a backfill's transactions).
const WAL_LIMIT: u64 = 512 << 20;

/// Stores runs' rows on a SQLite file in transactions it commits when told;
/// see the module header. Dropped with a transaction open, it rolls it back.
#[derive(Debug)]
pub struct BulkRunWriter {
    conn: rusqlite::Connection,
    /// Whether a transaction is open (begun by the first write after a
    /// commit).
    open: bool,
    checkpointer: Checkpointer,
    /// The write-ahead log (`<file>-wal`).
    wal: std::path::PathBuf,
    _gate: OwnedMutexGuard<()>,
}

impl BulkRunWriter {
    /// Opens the writer on `file`, a migrated store, holding `gate`.
    pub(super) fn open(
        file: &std::path::Path,
        gate: OwnedMutexGuard<()>,
    ) -> Result<Self, StoreError> {
        let conn = connect(file)?;
        conn.execute_batch(BULK_PRAGMAS)
            .map_err(|e| bulk_error("cannot set up the connection", e))?;
        Ok(Self {
            conn,
            open: false,
            checkpointer: Checkpointer::start(connect(file)?)?,
            wal: {
                let mut wal = file.as_os_str().to_owned();
                wal.push("-wal");
                wal.into()
            },
            _gate: gate,
        })
    }

    /// [`super::WriteTx::upsert_rows`] on this writer's transaction (begun
    /// here if none is open): the outcome of `rows[i]` is `result[i]`,
    /// exactly as if each had been stored alone in turn.
    pub fn upsert_rows(&mut self, rows: &[RunRow]) -> Result<Vec<Upserted>, StoreError> {
        if !self.open {
            self.conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| bulk_error("cannot begin a transaction", e))?;
            self.open = true;
        }
        upsert_rows_on(&self.conn, rows).map_err(|e| bulk_error("cannot store runs", e))
    }

    /// Commits what was written since the last commit, durably; nothing to
    /// do when nothing was.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        if self.open {
            self.conn
                .execute_batch("COMMIT")
                .map_err(|e| bulk_error("cannot commit", e))?;
            self.open = false;
            let wal_bytes = std::fs::metadata(&self.wal).map_or(0, |m| m.len());
            if wal_bytes > WAL_LIMIT {
                self.checkpoint_whole();
            } else {
                self.checkpointer.wake();
            }
        }
        Ok(())
    }

    /// Commits, waits for the checkpoint thread's last checkpoint, and
    /// checkpoints and truncates the log: the store is left as small as
    /// its rows. The writer is done with then: drop it.
    pub fn finish(&mut self) -> Result<(), StoreError> {
        self.commit()?;
        self.checkpointer.stop();
        self.checkpoint_whole();
        Ok(())
    }

    /// Copies the whole log into the database and empties it, waiting (up
    /// to the busy timeout) for a checkpoint under way; a log it could not
    /// copy stays for the next.
    fn checkpoint_whole(&self) {
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            tracing::debug!(error = %e, "A checkpoint of the store failed; the next one retries.");
        }
    }
}

/// [`super::WriteTx::upsert_rows`] on `conn`, inside a transaction the
/// caller opened: each row is inserted, or compared with the stored run of
/// its key and rewritten if it changed, in turn (what both rusqlite writers
/// of runs do).
pub(super) fn upsert_rows_on(
    conn: &rusqlite::Connection,
    rows: &[RunRow],
) -> Result<Vec<Upserted>, rusqlite::Error> {
    let mut insert = conn.prepare_cached(&insert_sql(Backend::Sqlite, 1))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let inserted: Option<i64> = insert
            .query_row(insert_params(row).as_slice(), |r| r.get(0))
            .optional()?;
        let upserted = match inserted {
            Some(pk) => Upserted {
                pk,
                outcome: RunOutcome::Inserted,
                became_final: row.is_final,
            },
            None => update_known(conn, row)?,
        };
        out.push(upserted);
    }
    Ok(out)
}

/// Rewrites the stored run of `row`'s key if it changed.
fn update_known(conn: &rusqlite::Connection, row: &RunRow) -> Result<Upserted, rusqlite::Error> {
    let (pk, old_status, old_body): (i64, String, String) =
        conn.prepare_cached(SELECT_STORED_SQL)?.query_row(
            rusqlite::params![row.pipeline, row.run_id, row.attempt],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
    let Some(became_final) = change_over(row, &old_status, &old_body) else {
        return Ok(Upserted {
            pk,
            outcome: RunOutcome::Duplicate,
            became_final: false,
        });
    };
    let params: Vec<&dyn ToSql> = run_values(row)
        .into_iter()
        .chain(samples(row))
        .chain([&pk as &dyn ToSql])
        .collect();
    conn.prepare_cached(UPDATE_SQL)?
        .execute(params.as_slice())?;
    Ok(Upserted {
        pk,
        outcome: RunOutcome::Updated,
        became_final,
    })
}

/// A read-write connection to the store's file.
pub(super) fn connect(file: &std::path::Path) -> Result<rusqlite::Connection, StoreError> {
    rusqlite::Connection::open_with_flags(
        file,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| bulk_error(&format!("cannot open {}", file.display()), e))
}

/// The thread that checkpoints the write-ahead log while the writer goes
/// on (see the module header). A wake-up while it is busy is kept (one);
/// it ends, after a last checkpoint, once stopped or dropped.
#[derive(Debug)]
struct Checkpointer {
    wake: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(conn: rusqlite::Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| bulk_error("cannot set up the checkpoint connection", e))?;
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("pm-checkpoint".into())
            .spawn(move || {
                let checkpoint = || {
                    // Passive: never waits for the writer or readers; what
                    // it cannot copy yet, the next one will.
                    if let Err(e) =
                        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::debug!(error = %e, "A checkpoint of the store failed; the next one retries.");
                    }
                };
                while woken.recv().is_ok() {
                    checkpoint();
                }
                checkpoint();
            })
            .map_err(|e| StoreError::Bulk(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Self {
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// Asks for a checkpoint (one is already asked for if this is full).
    fn wake(&self) {
        if let Some(wake) = &self.wake {
            let _ = wake.try_send(());
        }
    }

    /// Ends the thread and waits for its last checkpoint.
    fn stop(&mut self) {
        self.wake = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The bind values of one row of [`insert_sql`], in its order: the key,
/// the run's values, the time again (updated), the metrics.
fn insert_params(row: &RunRow) -> [&dyn ToSql; 20] {
    let key: [&dyn ToSql; 3] = [&row.pipeline, &row.run_id, &row.attempt];
    let mut values = key
        .into_iter()
        .chain(run_values(row))
        .chain([&row.now_ms as &dyn ToSql])
        .chain(samples(row));
    std::array::from_fn(|_| values.next().expect("an insert binds 20 values"))
}

/// The values an insert and an update of `row` share, in the order both
/// statements list them (as the sqlx writer's `bind_run_values`): status,
/// source, started, finished, event time, duration, stage, commit, body,
/// now.
fn run_values(row: &RunRow) -> [&dyn ToSql; 10] {
    [
        &row.status,
        &row.source,
        &row.started_at_ms,
        &row.finished_at_ms,
        &row.event_time_ms,
        &row.duration_s,
        &row.stage,
        &row.commit_sha,
        &row.body,
        &row.now_ms,
    ]
}

/// The six built-in metrics of `row`, in column order.
fn samples(row: &RunRow) -> impl Iterator<Item = &dyn ToSql> {
    row.samples.iter().map(|s| s as &dyn ToSql)
}

pub(super) fn bulk_error(what: &str, e: rusqlite::Error) -> StoreError {
    StoreError::Bulk(format!("{what}: {e}"))
}

/// Also the runs and stores of the SQLite writer's tests.
#[cfg(test)]
pub(super) mod tests {
    use chrono::{DateTime, Duration, Utc};

    use super::*;
    use crate::domain::{ResourceMetrics, Run, RunSource, RunStatus, TestCounts};
    use crate::store::Store;

    pub(in crate::store) fn t0() -> DateTime<Utc> {
        "2026-11-02T08:00:00Z".parse().unwrap()
    }

    /// Run `id` of `pipeline`, half an hour after run `id - 1`.
    pub(in crate::store) fn run(pipeline: &str, id: u32, status: RunStatus) -> Run {
        let mut run = Run::new(pipeline, id.to_string(), status);
        let start = t0() + Duration::minutes(i64::from(id) * 30);
        run.started_at = Some(start);
        if status.is_final() {
            run.finished_at = Some(start + Duration::seconds(200 + i64::from(id % 9)));
            run.tests = Some(TestCounts {
                total: 40,
                failed: u64::from(id % 4 == 0),
                skipped: 1,
            });
        }
        if id % 3 == 0 {
            run.resources = Some(ResourceMetrics {
                cpu_peak_pct: Some(40.0 + f64::from(id)),
                mem_peak_mb: None,
            });
        }
        run.stage = (id % 2 == 0).then(|| "build".to_string());
        run
    }

    /// Runs new and known, a repeat within the call, a run that finishes
    /// later, one that comes back unchanged, and one without any time.
    fn history() -> (Vec<Run>, Vec<Run>) {
        let mut first: Vec<Run> = (1..=12)
            .map(|i| {
                let status = if i == 5 {
                    RunStatus::Running
                } else {
                    RunStatus::Succeeded
                };
                run(if i % 2 == 0 { "web" } else { "api" }, i, status)
            })
            .collect();
        first.push(run("web", 2, RunStatus::Succeeded));
        let mut timeless = Run::new("api", "no-time", RunStatus::Failed);
        timeless.commit = Some("abc123".into());
        first.push(timeless);
        let second = vec![
            run("api", 5, RunStatus::Failed),
            run("web", 4, RunStatus::Succeeded),
            run("api", 13, RunStatus::Succeeded),
            run("web", 4, RunStatus::Failed),
        ];
        (first, second)
    }

    fn rows(runs: &[Run], now: DateTime<Utc>) -> Vec<RunRow> {
        runs.iter()
            .map(|r| RunRow::new(r, RunSource::Backfill, now).unwrap())
            .collect()
    }

    /// Every column of every stored run, as SQLite literals.
    async fn stored(store: &Store) -> Vec<String> {
        let sql = "SELECT quote(pipeline) || ',' || quote(run_id) || ',' || \
                   quote(attempt) || ',' || quote(status) || ',' || quote(source) || ',' || \
                   quote(started_at_ms) || ',' || quote(finished_at_ms) || ',' || \
                   quote(event_time_ms) || ',' || quote(duration_s) || ',' || quote(stage) || ',' || \
                   quote(commit_sha) || ',' || quote(body) || ',' || quote(ingested_at_ms) || ',' || \
                   quote(updated_at_ms) || ',' || quote(sample_duration_s) || ',' || \
                   quote(sample_test_failure_rate) || ',' || quote(sample_cpu_peak_pct) || ',' || \
                   quote(sample_mem_peak_mb) || ',' || quote(sample_error_rate) || ',' || \
                   quote(sample_latency_p95_ms) FROM runs ORDER BY id";
        sqlx::query_scalar(sql)
            .fetch_all(store.pool())
            .await
            .unwrap()
    }

    /// Runs `work` with the store's bulk writer on a blocking thread.
    async fn with_writer<R: Send + 'static>(
        store: &Store,
        work: impl FnOnce(BulkRunWriter) -> R + Send + 'static,
    ) -> R {
        let writer = store.bulk_run_writer().await.unwrap().unwrap();
        tokio::task::spawn_blocking(move || work(writer))
            .await
            .unwrap()
    }

    pub(in crate::store) async fn file_store(dir: &tempfile::TempDir, name: &str) -> Store {
        let url = format!("sqlite:{}", dir.path().join(name).display());
        Store::connect(&url, 2).await.unwrap()
    }

    #[tokio::test]
    async fn the_bulk_writer_stores_what_sqlx_transactions_store() {
        let dir = tempfile::tempdir().unwrap();
        let (bulk_store, sqlx_store) = (
            file_store(&dir, "bulk.db").await,
            file_store(&dir, "sqlx.db").await,
        );
        let (first, second) = history();
        let (now1, now2) = (t0() + Duration::days(3), t0() + Duration::days(4));

        let bulk_outcomes = with_writer(&bulk_store, move |mut writer| {
            let a = writer.upsert_rows(&rows(&first, now1)).unwrap();
            writer.commit().unwrap();
            let b = writer.upsert_rows(&rows(&second, now2)).unwrap();
            writer.commit().unwrap();
            (a, b)
        })
        .await;

        let (first, second) = history();
        let mut tx = sqlx_store.begin_bulk_write().await.unwrap();
        let a = tx.upsert_rows(&rows(&first, now1)).await.unwrap();
        tx.commit().await.unwrap();
        let mut tx = sqlx_store.begin_bulk_write().await.unwrap();
        let b = tx.upsert_rows(&rows(&second, now2)).await.unwrap();
        tx.commit().await.unwrap();

        // The same outcomes; row ids differ only in the gaps a run already
        // stored leaves (each attempt to insert it takes an id).
        let kinds = |u: &[Upserted]| -> Vec<(RunOutcome, bool)> {
            u.iter().map(|u| (u.outcome, u.became_final)).collect()
        };
        assert_eq!(kinds(&bulk_outcomes.0), kinds(&a));
        assert_eq!(kinds(&bulk_outcomes.1), kinds(&b));
        let outcomes: Vec<RunOutcome> = a.iter().chain(&b).map(|u| u.outcome).collect();
        use RunOutcome::{Duplicate, Inserted, Updated};
        let mut expected = vec![Inserted; 12];
        expected.extend([Duplicate, Inserted, Updated, Duplicate, Inserted, Updated]);
        assert_eq!(outcomes, expected);
        // The running run became final with the second call; the finished
        // run that changed again did not.
        assert!(b[0].became_final && !b[1].became_final && !b[3].became_final);
        let (bulk_rows, sqlx_rows) = (stored(&bulk_store).await, stored(&sqlx_store).await);
        assert_eq!(bulk_rows.len(), 14);
        assert_eq!(bulk_rows, sqlx_rows);
    }

    #[tokio::test]
    async fn a_writer_dropped_before_its_commit_leaves_only_what_it_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir, "pm.db").await;
        let (first, second) = history();
        with_writer(&store, move |mut writer| {
            writer.upsert_rows(&rows(&first, t0())).unwrap();
            writer.commit().unwrap();
            writer.upsert_rows(&rows(&second, t0())).unwrap();
        })
        .await;
        let rows = stored(&store).await;
        assert_eq!(rows.len(), 13);
        assert!(
            rows.iter().any(|r| r.contains("'running'")),
            "the update was rolled back"
        );
    }

    #[tokio::test]
    async fn a_finished_writer_leaves_its_rows_in_the_database_file_and_the_log_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir, "pm.db").await;
        let (first, _) = history();
        with_writer(&store, move |mut writer| {
            writer.upsert_rows(&rows(&first, t0())).unwrap();
            writer.finish().unwrap();
        })
        .await;
        let wal = std::fs::metadata(dir.path().join("pm.db-wal")).map_or(0, |m| m.len());
        assert_eq!(wal, 0, "the log was checkpointed and truncated");
        assert_eq!(stored(&store).await.len(), 13);
    }

    #[tokio::test]
    async fn the_writer_holds_the_write_gate_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir, "pm.db").await;
        let gate = store.write_gate.clone().unwrap();
        let writer = store.bulk_run_writer().await.unwrap().unwrap();
        assert!(gate.try_lock().is_err(), "another writer would wait");
        drop(writer);
        assert!(gate.try_lock().is_ok());
    }

    #[tokio::test]
    async fn in_memory_sqlite_has_no_bulk_writer() {
        let store = Store::connect("sqlite::memory:", 1).await.unwrap();
        assert!(store.bulk_run_writer().await.unwrap().is_none());
    }
}
