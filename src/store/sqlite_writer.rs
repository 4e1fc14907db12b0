//! The hot writes of a running server on a SQLite file, through a
//! rusqlite connection the store keeps for them ([`SqliteWriter`]): groups
//! of ingest calls ([`Store::store_run_calls`]: each call's delivery id,
//! if any, and its runs' rows) and verdicts that open, extend or close no
//! anomaly record ([`Store::store_quiet_verdicts`]), and saved models
//! ([`Store::save_models`]).
//!
//! Each transaction runs whole on a blocking thread under the store's
//! write gate, without going back to the async runtime between
//! statements. Through sqlx every statement is a hand-off to the
//! connection's worker thread and back, each waiting for a busy runtime to
//! poll it, and the transaction held the write gate for all of them while
//! the other writers waited: under load, ingest and verdict transactions
//! held the gate nearly all the time. Same rows, same SQL
//! ([`super::run_row`]) and the same outcomes as the sqlx path, which
//! PostgreSQL and in-memory SQLite databases take (ingest in one
//! [`WriteTx`], with the runs that became final queued for their owners
//! when pipelines are owned across replicas).

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;

use super::bulk::{bulk_error, connect, upsert_rows_on};
use super::detection::SAVE_MODEL_SQL;
use super::sql::IN_LIST_MAX;
use super::write::CLAIM_EVENT_SQL;
use super::{
    ms, RunRow, Store, StoreError, StoredModel, Upserted, WriteTx, SQLITE_CONNECTION_PRAGMAS,
};
use crate::domain::RunSource;

/// One ingest call of a group: where it came from, its delivery id (a
/// redelivery stores nothing) and its runs' rows, checked and redacted.
#[derive(Debug, Clone)]
pub struct RunCall {
    pub source: RunSource,
    pub delivery_id: Option<String>,
    pub rows: Vec<RunRow>,
}

/// What storing one [`RunCall`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct CallStored {
    /// `false`: the delivery id was seen before and nothing was written.
    pub fresh: bool,
    /// The outcome of each row, in order (empty when not fresh).
    pub upserted: Vec<Upserted>,
}

/// A verdict as its run's row keeps it: the run's row id, score, grade
/// and the verdict as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct VerdictRow {
    pub run_pk: i64,
    pub score: f64,
    pub grade: f64,
    pub json: String,
}

impl VerdictRow {
    pub fn new(run_pk: i64, verdict: &crate::domain::Verdict) -> Result<Self, StoreError> {
        Ok(Self {
            run_pk,
            score: verdict.score,
            grade: verdict.grade,
            json: serde_json::to_string(verdict).map_err(|e| StoreError::Corrupt {
                what: "verdict".into(),
                detail: e.to_string(),
            })?,
        })
    }
}

/// As `WriteTx::set_verdicts`, one run at a time.
const SET_VERDICT_SQL: &str = "UPDATE runs SET score = $1, grade = $2, verdict = $3, \
     scored_times = scored_times + 1 WHERE id = $4";

/// The store's rusqlite connection for its hot writes on a SQLite file,
/// opened at the first and closed with the store.
#[derive(Debug)]
pub(super) struct SqliteWriter {
    file: std::path::PathBuf,
    conn: Mutex<WriterState>,
}

#[derive(Debug)]
enum WriterState {
    NotOpen,
    Open(rusqlite::Connection),
    Closed,
}

impl SqliteWriter {
    pub(super) fn new(file: std::path::PathBuf) -> Arc<Self> {
        Arc::new(Self {
            file,
            conn: Mutex::new(WriterState::NotOpen),
        })
    }

    /// Runs `work` in a transaction it commits when `work` gives
    /// `Some`, and rolls back on `None` or an error. Blocks: call it off
    /// the async runtime, holding the write gate.
    fn transact<T>(
        &self,
        what: &str,
        work: impl FnOnce(&rusqlite::Connection) -> Result<Option<T>, rusqlite::Error>,
    ) -> Result<Option<T>, StoreError> {
        let mut state = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*state, WriterState::NotOpen) {
            let conn = connect(&self.file)?;
            // The log mode is the file's own, set when the store opened.
            for pragma in SQLITE_CONNECTION_PRAGMAS {
                conn.execute_batch(pragma)
                    .map_err(|e| bulk_error("cannot set up the writer's connection", e))?;
            }
            *state = WriterState::Open(conn);
        }
        let WriterState::Open(conn) = &*state else {
            return Err(StoreError::Bulk("the store is closed".into()));
        };
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| bulk_error("cannot begin a transaction", e))?;
        let done = work(conn).and_then(|done| {
            if done.is_some() {
                conn.execute_batch("COMMIT")?;
            }
            Ok(done)
        });
        // Nothing to keep, or a failed statement or commit: the
        // transaction is still open.
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        done.map_err(|e| bulk_error(what, e))
    }

    /// Closes the connection (after a transaction under way); later
    /// writes fail.
    fn close(&self) {
        let mut state = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        *state = WriterState::Closed;
    }
}

/// Claims each call's delivery id, then stores the rows of the fresh ones,
/// in order, inside the open transaction.
fn store_calls_on(
    conn: &rusqlite::Connection,
    calls: &[RunCall],
    now: DateTime<Utc>,
) -> Result<Vec<CallStored>, rusqlite::Error> {
    let mut fresh = Vec::with_capacity(calls.len());
    for call in calls {
        fresh.push(match &call.delivery_id {
            Some(id) => conn
                .prepare_cached(CLAIM_EVENT_SQL)?
                .query_row(rusqlite::params![call.source.as_str(), id, ms(now)], |_| {
                    Ok(())
                })
                .optional()?
                .is_some(),
            None => true,
        });
    }
    calls
        .iter()
        .zip(fresh)
        .map(|(call, fresh)| {
            Ok(CallStored {
                fresh,
                upserted: if fresh {
                    upsert_rows_on(conn, &call.rows)?
                } else {
                    Vec::new()
                },
            })
        })
        .collect()
}

/// Whether any of `pipelines` has an open anomaly record.
fn any_open_anomaly(
    conn: &rusqlite::Connection,
    pipelines: &[String],
) -> Result<bool, rusqlite::Error> {
    for chunk in pipelines.chunks(IN_LIST_MAX) {
        let list = vec!["?"; chunk.len()].join(", ");
        let sql = format!(
            "SELECT 1 FROM anomalies WHERE status = 'open' AND pipeline IN ({list}) LIMIT 1"
        );
        let found = conn
            .prepare_cached(&sql)?
            .query_row(rusqlite::params_from_iter(chunk), |_| Ok(()))
            .optional()?;
        if found.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

impl Store {
    /// Whether the store has a SQLite writer's connection (a SQLite file;
    /// not PostgreSQL or a database in memory).
    fn has_sqlite_writer(&self) -> bool {
        self.sqlite_writer.is_some() && self.write_gate.is_some()
    }

    /// Runs `work` on the SQLite writer's connection in a transaction,
    /// under the write gate (see [`SqliteWriter::transact`]); only when
    /// [`Store::has_sqlite_writer`].
    async fn on_sqlite_writer<T: Send + 'static>(
        &self,
        what: &'static str,
        work: impl FnOnce(&rusqlite::Connection) -> Result<Option<T>, rusqlite::Error> + Send + 'static,
    ) -> Result<Option<T>, StoreError> {
        let (Some(writer), Some(gate)) = (&self.sqlite_writer, &self.write_gate) else {
            return Err(StoreError::Bulk("the store has no SQLite writer".into()));
        };
        let gate = gate.clone().lock_owned().await;
        let writer = writer.clone();
        // The transaction ends on its thread (commit or rollback), with
        // the gate held, even if the caller stops waiting.
        let done = tokio::task::spawn_blocking(move || {
            let _gate = gate;
            writer.transact(what, work)
        })
        .await
        .map_err(|e| StoreError::Bulk(format!("the writer's thread failed: {e}")))?;
        done
    }

    /// Stores a group of ingest calls in one transaction, durably: each
    /// call's delivery id is claimed first (a redelivered call stores
    /// nothing), then the rows of the fresh calls, in order. With
    /// `queue_as` (pipelines owned across replicas), the runs that became
    /// final are queued for their owners in the same transaction.
    pub async fn store_run_calls(
        &self,
        calls: Vec<RunCall>,
        now: DateTime<Utc>,
        queue_as: Option<&str>,
    ) -> Result<Vec<CallStored>, StoreError> {
        if queue_as.is_none() && self.has_sqlite_writer() {
            let stored = self
                .on_sqlite_writer("cannot store runs", move |conn| {
                    store_calls_on(conn, &calls, now).map(Some)
                })
                .await?;
            return Ok(stored.unwrap_or_default());
        }
        let mut tx = self.begin_write().await?;
        let stored = store_calls_in(&mut tx, calls, now, queue_as).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Stores verdicts of runs of `pipelines` that open, extend or close
    /// no anomaly record, in one transaction, durably: on a SQLite file,
    /// through its writer's connection, when none of `pipelines` has an
    /// open anomaly (a normal run would close it). `false` when nothing
    /// was written because that does not hold or the store has no such
    /// connection: then the caller stores them in a [`WriteTx`].
    pub async fn store_quiet_verdicts(
        &self,
        pipelines: Vec<String>,
        verdicts: Vec<VerdictRow>,
    ) -> Result<bool, StoreError> {
        if !self.has_sqlite_writer() {
            return Ok(false);
        }
        let stored = self
            .on_sqlite_writer("cannot store verdicts", move |conn| {
                if any_open_anomaly(conn, &pipelines)? {
                    return Ok(None);
                }
                let mut update = conn.prepare_cached(SET_VERDICT_SQL)?;
                for v in &verdicts {
                    update.execute(rusqlite::params![v.score, v.grade, v.json, v.run_pk])?;
                }
                Ok(Some(()))
            })
            .await?;
        Ok(stored.is_some())
    }

    /// Saves pipelines' models in one transaction, durably (on a SQLite
    /// file through its writer's connection).
    pub async fn save_models(
        &self,
        models: Vec<(String, StoredModel)>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if self.has_sqlite_writer() {
            self.on_sqlite_writer("cannot save models", move |conn| {
                let mut save = conn.prepare_cached(SAVE_MODEL_SQL)?;
                for (pipeline, model) in &models {
                    save.execute(rusqlite::params![
                        pipeline,
                        model.version,
                        model.state,
                        model.last_run_pk,
                        ms(now)
                    ])?;
                }
                Ok(Some(()))
            })
            .await?;
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (pipeline, model) in &models {
            tx.save_model(pipeline, model, now).await?;
        }
        tx.commit().await
    }

    /// Closes the SQLite writer's connection, if open.
    pub(super) async fn close_sqlite_writer(&self) {
        if let Some(writer) = self.sqlite_writer.clone() {
            let _ = tokio::task::spawn_blocking(move || writer.close()).await;
        }
    }
}

/// [`Store::store_run_calls`] through sqlx, inside `tx`.
async fn store_calls_in(
    tx: &mut WriteTx,
    calls: Vec<RunCall>,
    now: DateTime<Utc>,
    queue_as: Option<&str>,
) -> Result<Vec<CallStored>, StoreError> {
    // How many rows each call stores: `None` when its delivery was seen.
    let mut stores = Vec::with_capacity(calls.len());
    for call in &calls {
        let fresh = match &call.delivery_id {
            Some(id) => tx.claim_event(call.source.as_str(), id, now).await?,
            None => true,
        };
        stores.push(fresh.then_some(call.rows.len()));
    }
    // Every row of every fresh call in multi-row statements.
    let rows: Vec<RunRow> = calls
        .into_iter()
        .zip(&stores)
        .filter(|(_, n)| n.is_some())
        .flat_map(|(call, _)| call.rows)
        .collect();
    let upserted = tx.upsert_rows(&rows).await?;
    if let Some(replica) = queue_as {
        let finals: Vec<(i64, &str)> = rows
            .iter()
            .zip(&upserted)
            .filter(|(_, up)| up.became_final)
            .map(|(row, up)| (up.pk, row.pipeline.as_str()))
            .collect();
        if !finals.is_empty() {
            tx.enqueue_scoring(&finals, replica).await?;
        }
    }
    let mut upserted = upserted.into_iter();
    Ok(stores
        .into_iter()
        .map(|n| CallStored {
            fresh: n.is_some(),
            upserted: upserted.by_ref().take(n.unwrap_or(0)).collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Run, RunStatus};
    use crate::store::bulk::tests::{file_store, run, t0};
    use crate::store::RunOutcome;

    fn call(delivery: Option<&str>, runs: &[Run]) -> RunCall {
        RunCall {
            source: RunSource::Generic,
            delivery_id: delivery.map(str::to_string),
            rows: runs
                .iter()
                .map(|r| RunRow::new(r, RunSource::Generic, t0()).unwrap())
                .collect(),
        }
    }

    /// Two groups: new runs, a repeat within a call, a delivery id used
    /// twice in one group and again in the next, a running run that
    /// finishes, a finished one that comes back unchanged and one that
    /// changes.
    fn groups() -> [Vec<RunCall>; 2] {
        use RunStatus::{Failed, Running, Succeeded};
        [
            vec![
                call(
                    Some("d1"),
                    &[run("api", 1, Succeeded), run("api", 2, Running)],
                ),
                call(None, &[run("web", 3, Succeeded), run("web", 3, Succeeded)]),
                call(Some("d1"), &[run("api", 9, Succeeded)]),
            ],
            vec![
                call(Some("d1"), &[run("api", 8, Succeeded)]),
                call(
                    Some("d2"),
                    &[
                        run("api", 2, Failed),
                        run("web", 3, Succeeded),
                        run("api", 1, Failed),
                    ],
                ),
            ],
        ]
    }

    /// Every stored run (key, status, body) and claimed delivery id.
    async fn contents(store: &Store) -> (Vec<(String, String, String, String)>, Vec<String>) {
        let runs = sqlx::query_as(
            "SELECT pipeline, run_id, status, body FROM runs ORDER BY pipeline, run_id",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        let events = sqlx::query_scalar("SELECT event_id FROM processed_events ORDER BY event_id")
            .fetch_all(store.pool())
            .await
            .unwrap();
        (runs, events)
    }

    fn kinds(stored: &[CallStored]) -> Vec<(bool, Vec<(RunOutcome, bool)>)> {
        stored
            .iter()
            .map(|c| {
                let ups = c.upserted.iter().map(|u| (u.outcome, u.became_final));
                (c.fresh, ups.collect())
            })
            .collect()
    }

    #[tokio::test]
    async fn a_sqlite_file_stores_groups_as_the_sqlx_path_does() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_store(&dir, "pm.db").await;
        assert!(file.has_sqlite_writer());
        let memory = Store::connect("sqlite::memory:", 1).await.unwrap();
        assert!(!memory.has_sqlite_writer(), "in memory: the sqlx path");
        let mut outcomes = Vec::new();
        for store in [&file, &memory] {
            let mut both = Vec::new();
            for group in groups() {
                both.push(kinds(
                    &store.store_run_calls(group, t0(), None).await.unwrap(),
                ));
            }
            outcomes.push(both);
        }
        assert_eq!(outcomes[0], outcomes[1]);
        use RunOutcome::{Duplicate, Inserted, Updated};
        assert_eq!(
            outcomes[0][0],
            vec![
                (true, vec![(Inserted, true), (Inserted, false)]),
                (true, vec![(Inserted, true), (Duplicate, false)]),
                (false, vec![]),
            ]
        );
        assert_eq!(
            outcomes[0][1],
            vec![
                (false, vec![]),
                (
                    true,
                    vec![(Updated, true), (Duplicate, false), (Updated, false)]
                ),
            ]
        );
        let (runs, events) = contents(&file).await;
        assert_eq!((runs.clone(), events.clone()), contents(&memory).await);
        assert_eq!(runs.len(), 3);
        assert_eq!(events, ["d1", "d2"]);
    }

    /// Score, grade, verdict and times scored of every run, by run id.
    async fn scores(store: &Store) -> Vec<(String, Option<f64>, Option<f64>, Option<String>, i64)> {
        sqlx::query_as(
            "SELECT run_id, score, grade, verdict, scored_times FROM runs ORDER BY run_id",
        )
        .fetch_all(store.pool())
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn quiet_verdicts_are_stored_as_a_write_transaction_stores_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_store(&dir, "pm.db").await;
        let memory = Store::connect("sqlite::memory:", 1).await.unwrap();
        let verdict = |i: u32| crate::domain::Verdict {
            score: 0.5 + f64::from(i),
            warming_up: i == 2,
            ..Default::default()
        };
        for store in [&file, &memory] {
            let runs: Vec<Run> = (1..=3)
                .map(|i| run(if i == 3 { "web" } else { "api" }, i, RunStatus::Succeeded))
                .collect();
            let stored = store
                .store_run_calls(vec![call(None, &runs)], t0(), None)
                .await
                .unwrap();
            let pks: Vec<i64> = stored[0].upserted.iter().map(|u| u.pk).collect();
            let rows: Vec<VerdictRow> = (1..=3)
                .map(|i| VerdictRow::new(pks[i as usize - 1], &verdict(i)).unwrap())
                .collect();
            let pipelines = vec!["api".to_string(), "web".to_string()];
            if store.has_sqlite_writer() {
                assert!(store.store_quiet_verdicts(pipelines, rows).await.unwrap());
            } else {
                assert!(!store.store_quiet_verdicts(pipelines, rows).await.unwrap());
                assert!(
                    scores(store).await.iter().all(|r| r.4 == 0),
                    "nothing written"
                );
                let mut tx = store.begin_write().await.unwrap();
                let verdicts: Vec<_> = (1..=3).map(verdict).collect();
                let rows: Vec<(i64, &crate::domain::Verdict)> =
                    pks.iter().copied().zip(&verdicts).collect();
                tx.set_verdicts(&rows).await.unwrap();
                tx.commit().await.unwrap();
            }
        }
        let stored = scores(&file).await;
        assert_eq!(stored, scores(&memory).await);
        assert_eq!(stored[1].1, Some(2.5));
        assert!(stored.iter().all(|r| r.4 == 1), "{stored:?}");
        let json: crate::domain::Verdict =
            serde_json::from_str(stored[1].3.as_deref().unwrap()).unwrap();
        assert_eq!(json, verdict(2));
    }

    #[tokio::test]
    async fn quiet_verdicts_are_refused_for_a_pipeline_with_an_open_anomaly() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir, "pm.db").await;
        let runs = [
            run("api", 1, RunStatus::Failed),
            run("web", 2, RunStatus::Succeeded),
        ];
        let stored = store
            .store_run_calls(vec![call(None, &runs)], t0(), None)
            .await
            .unwrap();
        let (api, web) = (stored[0].upserted[0].pk, stored[0].upserted[1].pk);
        let abnormal = crate::domain::Verdict {
            grade: 0.8,
            ..Default::default()
        };
        let mut tx = store.begin_write().await.unwrap();
        tx.open_or_extend_anomaly("api", api, &abnormal, t0())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let normal = crate::domain::Verdict::default();
        let rows = |pk| vec![VerdictRow::new(pk, &normal).unwrap()];
        let refused = store
            .store_quiet_verdicts(vec!["api".into(), "web".into()], rows(web))
            .await
            .unwrap();
        assert!(!refused, "a normal run of api would close its anomaly");
        assert!(
            scores(&store).await.iter().all(|r| r.4 == 0),
            "nothing written"
        );
        assert!(store
            .store_quiet_verdicts(vec!["web".into()], rows(web))
            .await
            .unwrap());
        assert_eq!(scores(&store).await[1].4, 1);
    }

    #[tokio::test]
    async fn models_are_saved_and_replaced_as_a_write_transaction_saves_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_store(&dir, "pm.db").await;
        let memory = Store::connect("sqlite::memory:", 1).await.unwrap();
        let model = |n: i64| StoredModel {
            version: 4,
            state: format!("state-{n}"),
            last_run_pk: n,
        };
        for store in [&file, &memory] {
            let first = vec![("api".to_string(), model(1)), ("web".to_string(), model(2))];
            store.save_models(first, t0()).await.unwrap();
            store
                .save_models(vec![("api".to_string(), model(7))], t0())
                .await
                .unwrap();
        }
        for store in [&file, &memory] {
            assert_eq!(store.load_model("api").await.unwrap(), Some(model(7)));
            assert_eq!(store.load_model("web").await.unwrap(), Some(model(2)));
        }
    }

    #[tokio::test]
    async fn a_group_that_fails_keeps_nothing_and_the_next_one_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir, "pm.db").await;
        sqlx::query(
            "CREATE TRIGGER refuse BEFORE INSERT ON runs WHEN NEW.run_id = '7' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        )
        .execute(store.pool())
        .await
        .unwrap();
        let ok = run("api", 1, RunStatus::Succeeded);
        let refused = run("api", 7, RunStatus::Succeeded);
        let error = store
            .store_run_calls(
                vec![
                    call(Some("d1"), std::slice::from_ref(&ok)),
                    call(None, &[refused]),
                ],
                t0(),
                None,
            )
            .await
            .unwrap_err();
        assert!(error.to_string().contains("refused by the test"), "{error}");
        assert_eq!(contents(&store).await, (vec![], vec![]));
        let stored = store
            .store_run_calls(vec![call(Some("d1"), &[ok])], t0(), None)
            .await
            .unwrap();
        assert_eq!(
            kinds(&stored),
            vec![(true, vec![(RunOutcome::Inserted, true)])]
        );
        assert_eq!(contents(&store).await.0.len(), 1);
    }

    #[tokio::test]
    async fn a_group_waits_for_the_write_gate_and_a_closed_store_refuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir, "pm.db").await;
        let tx = store.begin_write().await.unwrap();
        let writing = {
            let store = store.clone();
            tokio::spawn(async move {
                let group = vec![call(None, &[run("api", 1, RunStatus::Succeeded)])];
                store.store_run_calls(group, t0(), None).await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!writing.is_finished(), "another transaction holds the gate");
        drop(tx);
        assert!(writing.await.unwrap().is_ok());

        store.close().await;
        let group = vec![call(None, &[run("api", 2, RunStatus::Succeeded)])];
        let error = store.store_run_calls(group, t0(), None).await.unwrap_err();
        assert!(error.to_string().contains("closed"), "{error}");
    }
}
