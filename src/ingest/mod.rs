//! Ingestion: every source of runs (generic API, GitHub, GitLab, AWS
//! EventBridge, CodePipeline polling, CLI backfill) ends in
//! [`IngestService::accept_runs`], which stores runs and their metric
//! samples in one transaction, idempotently on the delivery id and on
//! pipeline + run id + attempt.
//!
//! Source-specific parsing lives in one file per source and is pure
//! (payload in, [`Run`] out); this module and `routes` do the I/O.

pub mod backfill;
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

/// Most ingest jobs committed together in one transaction.
const GROUP_COMMIT_MAX: usize = 256;

/// One `accept_runs` call waiting for the writer.
struct Job {
    source: RunSource,
    delivery_id: Option<String>,
    runs: Vec<Run>,
    reply: tokio::sync::oneshot::Sender<Result<IngestReport, StoreError>>,
}

/// Stores runs for every source.
///
/// Writes go through one writer task that commits whatever calls arrived
/// together in a single transaction (group commit): each commit is durable
/// (`synchronous=FULL` on SQLite), and concurrent requests share its cost.
/// If a group fails, each call in it is retried alone so one bad call
/// cannot fail the others.
pub struct IngestService {
    store: Store,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    jobs: tokio::sync::mpsc::Sender<Job>,
}

impl IngestService {
    /// Creates the service and starts its writer task (needs a Tokio runtime).
    /// The writer stops when the service is dropped.
    pub fn new(store: Store, metrics: Arc<Metrics>, clock: Arc<dyn Clock>) -> Self {
        let (jobs, rx) = tokio::sync::mpsc::channel(4 * GROUP_COMMIT_MAX);
        tokio::spawn(writer(store.clone(), clock.clone(), rx));
        Self {
            store,
            metrics,
            clock,
            jobs,
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

    /// Stores `runs` atomically and durably. With a `delivery_id` the
    /// delivery is recorded too, and a redelivery writes nothing and says so.
    #[tracing::instrument(skip_all, fields(source = source.as_str(), runs = runs.len()))]
    pub async fn accept_runs(
        &self,
        source: RunSource,
        delivery_id: Option<&str>,
        runs: &[Run],
    ) -> Result<IngestReport, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            source,
            delivery_id: delivery_id.map(str::to_string),
            runs: runs.to_vec(),
            reply,
        };
        let closed = || StoreError::Corrupt {
            what: "ingest writer".into(),
            detail: "the writer task has stopped".into(),
        };
        self.jobs.send(job).await.map_err(|_| closed())?;
        let report = answer.await.map_err(|_| closed())??;
        if report.duplicate_delivery {
            for _ in runs {
                self.metrics.run_ingested(source.as_str(), "duplicate");
            }
            tracing::info!(delivery = delivery_id, "Redelivery ignored.");
        }
        self.count(source, &report.runs);
        Ok(report)
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

async fn writer(store: Store, clock: Arc<dyn Clock>, mut rx: tokio::sync::mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP_COMMIT_MAX {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let now = clock.now();
        match write_group(&store, &group, now).await {
            Ok(reports) => {
                for (job, report) in group.into_iter().zip(reports) {
                    let _ = job.reply.send(Ok(report));
                }
            }
            Err(e) if group.len() == 1 => {
                if let Some(job) = group.pop() {
                    let _ = job.reply.send(Err(e));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, jobs = group.len(), "Group commit failed; retrying each call alone.");
                for job in group {
                    let result = write_group(&store, std::slice::from_ref(&job), now)
                        .await
                        .map(|mut r| r.remove(0));
                    let _ = job.reply.send(result);
                }
            }
        }
    }
}

async fn write_group(
    store: &Store,
    group: &[Job],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<IngestReport>, StoreError> {
    let mut tx = store.begin_write().await?;
    let mut reports = Vec::with_capacity(group.len());
    for job in group {
        if let Some(id) = &job.delivery_id {
            if !tx.claim_event(job.source.as_str(), id, now).await? {
                reports.push(IngestReport {
                    duplicate_delivery: true,
                    runs: Vec::new(),
                });
                continue;
            }
        }
        let runs = store_runs(&mut tx, job.source, &job.runs, now).await?;
        reports.push(IngestReport {
            duplicate_delivery: false,
            runs,
        });
    }
    tx.commit().await?;
    Ok(reports)
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
    _state: &crate::http::AppState,
    _tracker: &tokio_util::task::TaskTracker,
    _shutdown: &tokio_util::sync::CancellationToken,
) {
}
