//! Store operations of detection: serialised models, verdicts on runs,
//! anomaly records and baseline resets.

use chrono::{DateTime, Utc};
use sqlx::Row;

use std::collections::{HashMap, HashSet};

use super::sql::{placeholders, IN_LIST_MAX};
use super::write::WriteTx;
use super::{from_ms, ms, Store, StoreError, StoredRun};
use crate::domain::{Anomaly, AnomalyStatus, Verdict};

/// A saved model: its format version, state and the last run it learned.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredModel {
    pub version: i64,
    pub state: String,
    pub last_run_pk: i64,
}

/// Saves a pipeline's model over the one before ($1 pipeline, $2 version,
/// $3 state, $4 last run, $5 time).
pub(super) const SAVE_MODEL_SQL: &str = "INSERT INTO models \
     (pipeline, version, state, last_run_pk, updated_at_ms) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (pipeline) DO UPDATE SET \
     version = excluded.version, state = excluded.state, last_run_pk = excluded.last_run_pk, \
     updated_at_ms = excluded.updated_at_ms";

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        detail: e.to_string(),
    }
}

const ANOMALY_COLUMNS: &str =
    "a.id, a.pipeline, a.status, f.run_id, l.run_id, a.run_count, a.max_grade, \
     a.detail, a.opened_at_ms, a.updated_at_ms, a.closed_at_ms";
const ANOMALY_FROM: &str =
    "FROM anomalies a JOIN runs f ON f.id = a.first_run_pk JOIN runs l ON l.id = a.last_run_pk";

fn anomaly_from_row(r: &sqlx::any::AnyRow) -> Result<Anomaly, StoreError> {
    let status: String = r.get(2);
    let detail: String = r.get(7);
    Ok(Anomaly {
        id: r.get(0),
        pipeline: r.get(1),
        status: if status == "open" {
            AnomalyStatus::Open
        } else {
            AnomalyStatus::Closed
        },
        first_run_id: r.get(3),
        last_run_id: r.get(4),
        run_count: r.get(5),
        max_grade: r.get(6),
        latest: serde_json::from_str(&detail).map_err(|e| corrupt("anomalies.detail", e))?,
        opened_at: from_ms(r.get(8)),
        updated_at: from_ms(r.get(9)),
        closed_at: r.get::<Option<i64>, _>(10).map(from_ms),
    })
}

impl Store {
    pub async fn load_model(&self, pipeline: &str) -> Result<Option<StoredModel>, StoreError> {
        let row = sqlx::query("SELECT version, state, last_run_pk FROM models WHERE pipeline = $1")
            .bind(pipeline)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| StoredModel {
            version: r.get(0),
            state: r.get(1),
            last_run_pk: r.get(2),
        }))
    }

    /// Final runs of a pipeline stored after row `after_pk`, in history
    /// order, at most `limit`.
    pub async fn final_runs_after(
        &self,
        pipeline: &str,
        after_pk: i64,
        limit: i64,
    ) -> Result<Vec<StoredRun>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, source, ingested_at_ms, body FROM runs \
             WHERE pipeline = $1 AND id > $2 AND status <> 'running' \
             ORDER BY event_time_ms, id LIMIT $3",
        )
        .bind(pipeline)
        .bind(after_pk)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(super::stored_from_row).collect()
    }

    /// Final runs without a verdict whose event time is at or after
    /// `since`, from `sources`, that are not in the scoring queue and that
    /// no later run of their pipeline was scored after, by row id, at most
    /// `limit`: the runs that were waiting to be scored when a process
    /// stopped.
    pub async fn unscored_final_runs(
        &self,
        since: DateTime<Utc>,
        sources: &[&str],
        limit: i64,
    ) -> Result<Vec<StoredRun>, StoreError> {
        let mut rows = Vec::new();
        for source in sources {
            rows.extend(
                sqlx::query(
                    "SELECT r.id, r.source, r.ingested_at_ms, r.body FROM runs r \
                     WHERE r.event_time_ms >= $1 AND r.source = $2 AND r.status <> 'running' \
                     AND r.verdict IS NULL \
                     AND NOT EXISTS (SELECT 1 FROM scoring_queue q WHERE q.run_pk = r.id) \
                     AND NOT EXISTS (SELECT 1 FROM runs l WHERE l.pipeline = r.pipeline \
                                     AND l.id > r.id AND l.verdict IS NOT NULL) \
                     ORDER BY r.id LIMIT $3",
                )
                .bind(ms(since))
                .bind(*source)
                .bind(limit)
                .fetch_all(self.pool())
                .await?,
            );
        }
        let mut runs: Vec<StoredRun> = rows
            .iter()
            .map(super::stored_from_row)
            .collect::<Result<_, _>>()?;
        runs.sort_by_key(|r| r.pk);
        runs.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(runs)
    }

    /// All final runs of a pipeline in history order, with their row ids and
    /// whether each lies inside a closed-and-confirmed anomaly (for training).
    pub async fn history(&self, pipeline: &str) -> Result<Vec<StoredRun>, StoreError> {
        self.final_runs_after(pipeline, 0, i64::MAX).await
    }

    /// The verdict stored on a run.
    pub async fn verdict_of(&self, run_pk: i64) -> Result<Option<Verdict>, StoreError> {
        let row = sqlx::query("SELECT verdict FROM runs WHERE id = $1")
            .bind(run_pk)
            .fetch_optional(self.pool())
            .await?;
        verdict_column(row)
    }

    /// The verdict of the pipeline's most recently scored run.
    pub async fn latest_verdict(&self, pipeline: &str) -> Result<Option<Verdict>, StoreError> {
        let row = sqlx::query(
            "SELECT verdict FROM runs WHERE pipeline = $1 AND verdict IS NOT NULL \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(pipeline)
        .fetch_optional(self.pool())
        .await?;
        verdict_column(row)
    }

    pub async fn anomaly(&self, id: i64) -> Result<Option<Anomaly>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ANOMALY_COLUMNS} {ANOMALY_FROM} WHERE a.id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(anomaly_from_row).transpose()
    }

    /// Anomalies opened at or after `since`, newest first; optionally only
    /// one pipeline's or only open ones.
    pub async fn anomalies(
        &self,
        since: DateTime<Utc>,
        pipeline: Option<&str>,
        only_open: bool,
    ) -> Result<Vec<Anomaly>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ANOMALY_COLUMNS} {ANOMALY_FROM} WHERE a.opened_at_ms >= $1 \
             AND ($2 = '' OR a.pipeline = $2) AND ($3 = 0 OR a.status = 'open') \
             ORDER BY a.opened_at_ms DESC, a.id DESC"
        ))
        .bind(ms(since))
        .bind(pipeline.unwrap_or(""))
        .bind(i64::from(only_open))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(anomaly_from_row).collect()
    }

    /// Baseline resets requested for a pipeline and not yet applied.
    pub async fn pending_baseline_resets(
        &self,
        pipeline: &str,
    ) -> Result<Vec<(i64, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, metric FROM baseline_resets WHERE pipeline = $1 AND applied = 0 ORDER BY id",
        )
        .bind(pipeline)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// [`Store::pending_baseline_resets`] of several pipelines in one query
    /// per few hundred, by pipeline; a pipeline without any is absent.
    pub async fn pending_baseline_resets_of(
        &self,
        pipelines: &[&str],
    ) -> Result<HashMap<String, Vec<(i64, Option<String>)>>, StoreError> {
        let mut out: HashMap<String, Vec<(i64, Option<String>)>> = HashMap::new();
        for chunk in pipelines.chunks(IN_LIST_MAX) {
            let list = placeholders(self.backend(), 1, chunk.len());
            let sql = format!(
                "SELECT pipeline, id, metric FROM baseline_resets \
                 WHERE applied = 0 AND pipeline IN ({list}) ORDER BY id"
            );
            let mut query = sqlx::query(&sql);
            for pipeline in chunk {
                query = query.bind(*pipeline);
            }
            for row in query.fetch_all(self.pool()).await? {
                out.entry(row.get(0))
                    .or_default()
                    .push((row.get(1), row.get(2)));
            }
        }
        Ok(out)
    }
}

impl WriteTx {
    /// Which of `pipelines` have an open anomaly, read inside this
    /// transaction (one query per few hundred pipelines).
    pub async fn pipelines_with_open_anomaly(
        &mut self,
        pipelines: &[&str],
    ) -> Result<HashSet<String>, StoreError> {
        let mut out = HashSet::new();
        for chunk in pipelines.chunks(IN_LIST_MAX) {
            let list = placeholders(self.backend(), 1, chunk.len());
            let sql = format!(
                "SELECT DISTINCT pipeline FROM anomalies WHERE status = 'open' AND pipeline IN ({list})"
            );
            let mut query = sqlx::query(&sql);
            for pipeline in chunk {
                query = query.bind(*pipeline);
            }
            for row in query.fetch_all(self.conn()).await? {
                out.insert(row.get(0));
            }
        }
        Ok(out)
    }

    pub async fn save_model(
        &mut self,
        pipeline: &str,
        model: &StoredModel,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(SAVE_MODEL_SQL)
            .bind(pipeline)
            .bind(model.version)
            .bind(&model.state)
            .bind(model.last_run_pk)
            .bind(ms(now))
            .execute(self.conn())
            .await?;
        Ok(())
    }

    pub async fn delete_model(&mut self, pipeline: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM models WHERE pipeline = $1")
            .bind(pipeline)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Stores the verdict on its run: [`WriteTx::set_verdicts`] of one.
    pub async fn set_verdict(&mut self, run_pk: i64, verdict: &Verdict) -> Result<(), StoreError> {
        self.set_verdicts(&[(run_pk, verdict)]).await
    }

    /// Opens an anomaly for an abnormal run, or extends the pipeline's open
    /// one. Returns the anomaly id.
    pub async fn open_or_extend_anomaly(
        &mut self,
        pipeline: &str,
        run_pk: i64,
        verdict: &Verdict,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let detail = serde_json::to_string(verdict).map_err(|e| corrupt("verdict", e))?;
        let open = sqlx::query(
            "SELECT id, max_grade FROM anomalies WHERE pipeline = $1 AND status = 'open' \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(pipeline)
        .fetch_optional(self.conn())
        .await?;
        if let Some(row) = open {
            let id: i64 = row.get(0);
            let max_grade: f64 = row.get(1);
            sqlx::query(
                "UPDATE anomalies SET last_run_pk = $1, run_count = run_count + 1, max_grade = $2, \
                 detail = $3, updated_at_ms = $4 WHERE id = $5",
            )
            .bind(run_pk)
            .bind(max_grade.max(verdict.grade))
            .bind(detail)
            .bind(ms(now))
            .bind(id)
            .execute(self.conn())
            .await?;
            return Ok(id);
        }
        let row = sqlx::query(
            "INSERT INTO anomalies (pipeline, status, first_run_pk, last_run_pk, run_count, max_grade, \
             detail, opened_at_ms, updated_at_ms) VALUES ($1, 'open', $2, $2, 1, $3, $4, $5, $5) RETURNING id",
        )
        .bind(pipeline)
        .bind(run_pk)
        .bind(verdict.grade)
        .bind(detail)
        .bind(ms(now))
        .fetch_one(self.conn())
        .await?;
        Ok(row.get(0))
    }

    /// Closes the pipeline's open anomaly (a normal run came). Returns its id.
    pub async fn close_anomaly(
        &mut self,
        pipeline: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "UPDATE anomalies SET status = 'closed', closed_at_ms = $1, updated_at_ms = $1 \
             WHERE pipeline = $2 AND status = 'open' RETURNING id",
        )
        .bind(ms(now))
        .bind(pipeline)
        .fetch_optional(self.conn())
        .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Records that a person declared the pipeline's new normal expected.
    pub async fn request_baseline_reset(
        &mut self,
        pipeline: &str,
        metric: Option<&str>,
        requested_by: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO baseline_resets (pipeline, metric, requested_by, at_ms) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(pipeline)
        .bind(metric)
        .bind(requested_by)
        .bind(ms(now))
        .fetch_one(self.conn())
        .await?;
        Ok(row.get(0))
    }

    pub async fn mark_baseline_reset_applied(&mut self, id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE baseline_resets SET applied = 1 WHERE id = $1")
            .bind(id)
            .execute(self.conn())
            .await?;
        Ok(())
    }
}

impl Store {
    /// Row ids of a pipeline's runs that detection graded abnormal.
    pub async fn abnormal_run_pks(
        &self,
        pipeline: &str,
    ) -> Result<std::collections::HashSet<i64>, StoreError> {
        let rows = sqlx::query("SELECT id FROM runs WHERE pipeline = $1 AND grade > 0")
            .bind(pipeline)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(|r| r.get::<i64, _>(0)).collect())
    }
}

/// The `verdict` column of a row (first column), decoded.
fn verdict_column(row: Option<sqlx::any::AnyRow>) -> Result<Option<Verdict>, StoreError> {
    verdict_from(row.and_then(|r| r.get::<Option<String>, _>(0)))
}

/// A stored `runs.verdict` (JSON, or NULL while unscored).
pub(super) fn verdict_from(stored: Option<String>) -> Result<Option<Verdict>, StoreError> {
    stored
        .map(|v| serde_json::from_str(&v).map_err(|e| corrupt("runs.verdict", e)))
        .transpose()
}
