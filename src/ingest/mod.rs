//! Ingestion: every source of runs (generic API, GitHub, GitLab, AWS
//! EventBridge, CodePipeline polling, CLI backfill) ends in
//! [`IngestService::accept_runs`], which stores runs and their metric
//! samples in one transaction, idempotently on the delivery id and on
//! pipeline + run id + attempt.
//!
//! Source-specific parsing lives in one file per source and is pure
//! (payload in, [`Run`] out); this module and `routes` do the I/O.

pub mod backfill;
pub mod codepipeline_poll;
pub mod generic;
pub mod routes;
pub mod signature;

use std::sync::Arc;

use serde::Serialize;

use crate::clock::Clock;
use crate::domain::{Run, RunSource};
use crate::metrics::Metrics;
use crate::store::{RunOutcome, Store, StoreError, WriteTx};

/// What happened to one run of a request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Accepted {
    pub pipeline: String,
    pub run_id: String,
    pub attempt: u32,
    pub outcome: RunOutcome,
    /// Row id in the store.
    #[serde(skip)]
    pub pk: i64,
    /// The run reached a final status with this request (ready to score).
    #[serde(skip)]
    pub became_final: bool,
}

/// The result of one ingest call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IngestReport {
    /// The whole delivery was seen before; nothing was written.
    pub duplicate_delivery: bool,
    pub runs: Vec<Accepted>,
}

/// Stores runs for every source.
pub struct IngestService {
    store: Store,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
}

impl IngestService {
    pub fn new(store: Store, metrics: Arc<Metrics>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            metrics,
            clock,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stores `runs` atomically. With a `delivery_id` the delivery is
    /// recorded too, and a redelivery writes nothing and says so.
    #[tracing::instrument(skip_all, fields(source = source.as_str(), runs = runs.len()))]
    pub async fn accept_runs(
        &self,
        source: RunSource,
        delivery_id: Option<&str>,
        runs: &[Run],
    ) -> Result<IngestReport, StoreError> {
        let mut tx = self.store.begin_write().await?;
        let now = self.clock.now();
        if let Some(id) = delivery_id {
            if !tx.claim_event(source.as_str(), id, now).await? {
                drop(tx);
                for _ in runs {
                    self.metrics.run_ingested(source.as_str(), "duplicate");
                }
                tracing::info!(delivery = id, "Redelivery ignored.");
                return Ok(IngestReport {
                    duplicate_delivery: true,
                    runs: Vec::new(),
                });
            }
        }
        let accepted = store_runs(&mut tx, source, runs, now).await?;
        tx.commit().await?;
        self.count(source, &accepted);
        Ok(IngestReport {
            duplicate_delivery: false,
            runs: accepted,
        })
    }

    /// Counts stored runs in the metrics; for callers that wrote through
    /// their own transaction.
    pub fn count(&self, source: RunSource, accepted: &[Accepted]) {
        for a in accepted {
            let outcome = match a.outcome {
                RunOutcome::Inserted => "inserted",
                RunOutcome::Updated => "updated",
                RunOutcome::Duplicate => "duplicate",
            };
            self.metrics.run_ingested(source.as_str(), outcome);
            tracing::debug!(pipeline = %a.pipeline, run_id = %a.run_id, outcome, "Run stored.");
        }
    }
}

/// Upserts each run inside an open transaction.
pub async fn store_runs(
    tx: &mut WriteTx,
    source: RunSource,
    runs: &[Run],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Accepted>, StoreError> {
    let mut accepted = Vec::with_capacity(runs.len());
    for run in runs {
        let up = tx.upsert_run(run, source, now).await?;
        accepted.push(Accepted {
            pipeline: run.pipeline.clone(),
            run_id: run.run_id.clone(),
            attempt: run.attempt,
            outcome: up.outcome,
            pk: up.pk,
            became_final: up.became_final,
        });
    }
    Ok(accepted)
}

/// Starts the ingest sources that run in the background (CodePipeline
/// polling). They stop when `shutdown` is cancelled.
pub fn start_background(
    state: &crate::http::AppState,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: &tokio_util::sync::CancellationToken,
) {
    codepipeline_poll::start(state, tracker, shutdown);
}
