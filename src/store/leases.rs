//! Store operations of pipeline ownership across replicas (PostgreSQL
//! only): the lease that makes one replica the scorer of a pipeline, the
//! queue through which other replicas hand it their runs, and the fence
//! that keeps a replica whose lease has lapsed from writing verdicts.
//!
//! Every expiry is measured by the database's clock, so replicas whose
//! clocks disagree still agree on who holds a lease. Wake-ups go through
//! `NOTIFY` on [`SCORING_CHANNEL`] (a run was queued; payload: pipeline)
//! and [`VERDICT_CHANNEL`] (queued runs were scored; payload: their row ids,
//! comma-separated),
//! both sent by the transaction that made the change, so they arrive after
//! it committed. Policy (when to renew, what to do on a lost lease) belongs
//! to `scoring::ownership`, not here.

use sqlx::{Any, Row, Transaction};

use super::sql::{placeholders, IN_LIST_MAX};
use super::{Backend, Store, StoreError, WriteTx};

/// `NOTIFY` channel: a run was queued for scoring (payload: the pipeline).
pub const SCORING_CHANNEL: &str = "pipemedic_scoring";
/// `NOTIFY` channel: queued runs were scored (payload: their row ids, comma-separated).
pub const VERDICT_CHANNEL: &str = "pipemedic_verdicts";

/// The database's clock in milliseconds since the epoch (PostgreSQL).
const NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// The outcome of [`Store::acquire_lease`] when the lease was granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseGrant {
    /// Who held the lease before (it had lapsed, or it was this holder's
    /// own); `None` when nobody ever held it.
    pub previous: Option<String>,
}

/// Queued runs claimed by their pipelines' owner: the rows stay locked
/// (other replicas skip them) until [`ScoringClaim::finish`] or until the
/// claim is dropped, which rolls back and leaves them queued.
pub struct ScoringClaim {
    tx: Transaction<'static, Any>,
    /// `(run row id, replica that queued it)`, in run order.
    pub runs: Vec<(i64, String)>,
}

impl ScoringClaim {
    /// Removes the scored runs from the queue, tells the replicas waiting
    /// for them, and releases the claim (the others stay queued).
    pub async fn finish(mut self, scored: &[i64]) -> Result<(), StoreError> {
        // Need not wait for the disk: should this commit be lost, the rows
        // come back queued and are dequeued unscored (their verdicts are
        // stored, durably, by then).
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *self.tx)
            .await?;
        // One statement and one notification per few hundred runs (a
        // payload stays far below PostgreSQL's 8,000 bytes).
        for chunk in scored.chunks(VERDICTS_PER_NOTIFICATION) {
            let list = placeholders(Backend::Postgres, 1, chunk.len());
            let sql = format!("DELETE FROM scoring_queue WHERE run_pk IN ({list})");
            let mut delete = sqlx::query(&sql);
            for run_pk in chunk {
                delete = delete.bind(*run_pk);
            }
            delete.execute(&mut *self.tx).await?;
            sqlx::query("SELECT 1 FROM (SELECT pg_notify($1, $2)) AS notified")
                .bind(VERDICT_CHANNEL)
                .bind(verdict_payload(chunk))
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }
}

/// Scored runs named in one [`VERDICT_CHANNEL`] notification.
const VERDICTS_PER_NOTIFICATION: usize = 256;

/// A [`VERDICT_CHANNEL`] payload: the scored runs' row ids, comma-separated.
fn verdict_payload(run_pks: &[i64]) -> String {
    run_pks
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The row ids a [`VERDICT_CHANNEL`] payload names; what is not a row id
/// is skipped.
pub fn parse_verdict_payload(payload: &str) -> Vec<i64> {
    payload
        .split(',')
        .filter_map(|id| id.trim().parse().ok())
        .collect()
}

/// A queued run as its owner reads it to score it.
pub struct QueuedRun {
    pub stored: super::StoredRun,
    /// Its verdict, when it was scored before its owner could dequeue it.
    pub verdict: Option<crate::domain::Verdict>,
}

fn postgres_only(backend: Backend, what: &str) -> Result<(), StoreError> {
    match backend {
        Backend::Postgres => Ok(()),
        Backend::Sqlite => Err(StoreError::Corrupt {
            what: what.into(),
            detail: "pipeline leases need PostgreSQL; one SQLite process owns every pipeline"
                .into(),
        }),
    }
}

impl Store {
    /// Queues a stored run for its pipeline's owner and wakes the replicas
    /// listening on [`SCORING_CHANNEL`]. Idempotent on the run.
    pub async fn enqueue_scoring(
        &self,
        run_pk: i64,
        pipeline: &str,
        enqueued_by: &str,
    ) -> Result<(), StoreError> {
        postgres_only(self.backend(), "scoring_queue")?;
        let mut tx = self.begin_write().await?;
        tx.enqueue_scoring(&[(run_pk, pipeline)], enqueued_by)
            .await?;
        tx.commit().await
    }

    /// Grants `holder` the lease of `pipeline` for `lease_ms` when nobody
    /// holds it, its holder let it lapse, or `holder` already has it;
    /// `None` while another replica holds it.
    pub async fn acquire_lease(
        &self,
        pipeline: &str,
        holder: &str,
        lease_ms: i64,
    ) -> Result<Option<LeaseGrant>, StoreError> {
        postgres_only(self.backend(), "pipeline_leases")?;
        let row = sqlx::query(&format!(
            "WITH prev AS (SELECT holder FROM pipeline_leases WHERE pipeline = $1) \
             INSERT INTO pipeline_leases (pipeline, holder, expires_at_ms, acquired_at_ms) \
             VALUES ($1, $2, {NOW_MS} + $3, {NOW_MS}) \
             ON CONFLICT (pipeline) DO UPDATE SET holder = excluded.holder, \
             expires_at_ms = excluded.expires_at_ms, acquired_at_ms = excluded.acquired_at_ms \
             WHERE pipeline_leases.expires_at_ms <= {NOW_MS} OR pipeline_leases.holder = excluded.holder \
             RETURNING (SELECT holder FROM prev)"
        ))
        .bind(pipeline)
        .bind(holder)
        .bind(lease_ms)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| LeaseGrant {
            previous: r.get::<Option<String>, _>(0),
        }))
    }

    /// Extends every lease `holder` still has by `lease_ms`; returns those
    /// pipelines. A lease another replica took over is not among them.
    pub async fn renew_leases(
        &self,
        holder: &str,
        lease_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        postgres_only(self.backend(), "pipeline_leases")?;
        let rows = sqlx::query(&format!(
            "UPDATE pipeline_leases SET expires_at_ms = {NOW_MS} + $2 WHERE holder = $1 RETURNING pipeline"
        ))
        .bind(holder)
        .bind(lease_ms)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
    }

    /// Gives up every lease of `holder` (at shutdown, after its models were
    /// saved), so another replica takes its pipelines at once.
    pub async fn release_leases(&self, holder: &str) -> Result<u64, StoreError> {
        postgres_only(self.backend(), "pipeline_leases")?;
        Ok(sqlx::query("DELETE FROM pipeline_leases WHERE holder = $1")
            .bind(holder)
            .execute(self.pool())
            .await?
            .rows_affected())
    }

    /// Pipelines with queued runs whose lease is free or lapsed, at most
    /// `limit`.
    pub async fn orphaned_pipelines(&self, limit: i64) -> Result<Vec<String>, StoreError> {
        postgres_only(self.backend(), "scoring_queue")?;
        let rows = sqlx::query(&format!(
            "SELECT DISTINCT q.pipeline FROM scoring_queue q \
             LEFT JOIN pipeline_leases l ON l.pipeline = q.pipeline \
             WHERE l.pipeline IS NULL OR l.expires_at_ms <= {NOW_MS} \
             ORDER BY q.pipeline LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
    }

    /// Claims up to `limit` queued runs of the pipelines `holder` holds, in
    /// run order; rows another claim holds are skipped.
    pub async fn claim_scoring(
        &self,
        holder: &str,
        limit: i64,
    ) -> Result<ScoringClaim, StoreError> {
        postgres_only(self.backend(), "scoring_queue")?;
        let mut tx = self.pool().begin().await?;
        let rows = sqlx::query(
            "SELECT q.run_pk, q.enqueued_by FROM scoring_queue q \
             JOIN pipeline_leases l ON l.pipeline = q.pipeline AND l.holder = $1 \
             ORDER BY q.run_pk LIMIT $2 FOR UPDATE OF q SKIP LOCKED",
        )
        .bind(holder)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let runs = rows
            .iter()
            .map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1)))
            .collect();
        Ok(ScoringClaim { tx, runs })
    }

    /// The stored runs `run_pks` with their verdicts, by row id, in one
    /// query (a run no longer stored is absent).
    pub async fn queued_runs(
        &self,
        run_pks: &[i64],
    ) -> Result<std::collections::HashMap<i64, QueuedRun>, StoreError> {
        let mut out = std::collections::HashMap::with_capacity(run_pks.len());
        for chunk in run_pks.chunks(VERDICTS_PER_NOTIFICATION) {
            let list = placeholders(Backend::Postgres, 1, chunk.len());
            let sql = format!(
                "SELECT id, source, ingested_at_ms, body, verdict FROM runs WHERE id IN ({list})"
            );
            let mut query = sqlx::query(&sql);
            for run_pk in chunk {
                query = query.bind(*run_pk);
            }
            for row in query.fetch_all(self.pool()).await? {
                let stored = super::stored_from_row(&row)?;
                let verdict = super::detection::verdict_from(row.get(4))?;
                out.insert(stored.pk, QueuedRun { stored, verdict });
            }
        }
        Ok(out)
    }

    /// Runs waiting in the scoring queue (all pipelines).
    pub async fn scoring_queue_len(&self) -> Result<i64, StoreError> {
        postgres_only(self.backend(), "scoring_queue")?;
        let row = sqlx::query("SELECT COUNT(*) FROM scoring_queue")
            .fetch_one(self.pool())
            .await?;
        Ok(row.get::<i64, _>(0))
    }
}

impl WriteTx {
    /// Queues stored runs `(row id, pipeline)` for their pipelines' owners
    /// in this transaction, so a run is queued if and only if it is
    /// stored: a replica that dies after the commit leaves no run without
    /// a verdict. Wakes the replicas listening on [`SCORING_CHANNEL`] once
    /// per pipeline when the transaction commits. Idempotent on each run.
    pub async fn enqueue_scoring(
        &mut self,
        runs: &[(i64, &str)],
        enqueued_by: &str,
    ) -> Result<(), StoreError> {
        postgres_only(self.backend(), "scoring_queue")?;
        // At most 3 binds a row, well under PostgreSQL's 65,535 a statement.
        for chunk in runs.chunks(1_000) {
            let rows = (0..chunk.len())
                .map(|i| {
                    format!(
                        "({}, {NOW_MS})",
                        placeholders(Backend::Postgres, 3 * i + 1, 3)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO scoring_queue (run_pk, pipeline, enqueued_by, enqueued_at_ms) \
                 VALUES {rows} ON CONFLICT (run_pk) DO NOTHING"
            );
            let mut query = sqlx::query(&sql);
            for (run_pk, pipeline) in chunk {
                query = query.bind(*run_pk).bind(*pipeline).bind(enqueued_by);
            }
            query.execute(self.conn()).await?;
        }
        let mut pipelines: Vec<&str> = runs.iter().map(|(_, p)| *p).collect();
        pipelines.sort_unstable();
        pipelines.dedup();
        // One statement for all of them (PostgreSQL sends each distinct
        // notification of a transaction once, at its commit).
        for chunk in pipelines.chunks(IN_LIST_MAX) {
            let rows = (0..chunk.len())
                .map(|i| format!("(${})", i + 2))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT COUNT(*) FROM (SELECT pg_notify($1, v.pipeline) \
                 FROM (VALUES {rows}) AS v (pipeline)) AS notified"
            );
            let mut query = sqlx::query(&sql).bind(SCORING_CHANNEL);
            for pipeline in chunk {
                query = query.bind(*pipeline);
            }
            query.execute(self.conn()).await?;
        }
        Ok(())
    }

    /// The fence of a scoring transaction: `None` when `holder` holds a
    /// live lease on each of `pipelines`, which then cannot be taken over
    /// before this transaction ends (the lease rows are locked `FOR
    /// SHARE`); otherwise a pipeline whose lease it does not hold.
    pub async fn hold_leases(
        &mut self,
        pipelines: &[&str],
        holder: &str,
    ) -> Result<Option<String>, StoreError> {
        postgres_only(self.backend(), "pipeline_leases")?;
        let mut held = std::collections::HashSet::with_capacity(pipelines.len());
        for chunk in pipelines.chunks(IN_LIST_MAX) {
            let list = placeholders(Backend::Postgres, 2, chunk.len());
            let sql = format!(
                "SELECT pipeline FROM pipeline_leases WHERE holder = $1 \
                 AND expires_at_ms > {NOW_MS} AND pipeline IN ({list}) FOR SHARE"
            );
            let mut query = sqlx::query(&sql).bind(holder);
            for pipeline in chunk {
                query = query.bind(*pipeline);
            }
            for row in query.fetch_all(self.conn()).await? {
                held.insert(row.get::<String, _>(0));
            }
        }
        Ok(pipelines
            .iter()
            .find(|p| !held.contains(**p))
            .map(|p| (*p).to_string()))
    }

    /// Records which replica wrote the verdicts of `run_pks`.
    pub async fn mark_scored_by(
        &mut self,
        run_pks: &[i64],
        holder: &str,
    ) -> Result<(), StoreError> {
        let holder_at = placeholders(self.backend(), 1, 1);
        for chunk in run_pks.chunks(IN_LIST_MAX) {
            let list = placeholders(self.backend(), 2, chunk.len());
            let sql = format!("UPDATE runs SET scored_by = {holder_at} WHERE id IN ({list})");
            let mut query = sqlx::query(&sql).bind(holder);
            for run_pk in chunk {
                query = query.bind(*run_pk);
            }
            query.execute(self.conn()).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_payload_names_every_scored_run_and_skips_what_is_not_an_id() {
        let payload = verdict_payload(&[7, 42, 9_000_000_001]);
        assert_eq!(payload, "7,42,9000000001");
        assert_eq!(parse_verdict_payload(&payload), vec![7, 42, 9_000_000_001]);
        // A single id, as a replica of an earlier release sends it.
        assert_eq!(parse_verdict_payload("13"), vec![13]);
        assert_eq!(parse_verdict_payload("x,5,"), vec![5]);
        // A full notification stays below PostgreSQL's 8,000-byte payload.
        let most = verdict_payload(&[i64::MAX; VERDICTS_PER_NOTIFICATION]);
        assert!(most.len() < 8_000, "{}", most.len());
    }
}
