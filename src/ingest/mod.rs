//! Ingestion: every live source of runs (generic API, GitHub, GitLab, AWS
//! EventBridge, CodePipeline polling) is stored through [`store_runs`],
//! most through [`IngestService::accept_runs`], which stores runs and
//! their metric samples in one transaction, idempotently on the delivery
//! id and on pipeline + run id + attempt; a CLI backfill stores through a
//! writer of its own ([`backfill`]). Every run passes [`rows_to_store`] (inside
//! [`store_runs`], or ahead of the backfill's writer), which hides the
//! secrets in its free text first ([`redaction`]).
//!
//! Every run passes [`crate::domain::Run::validate`] (names, ranges,
//! timestamps against the service's clock, caps on stages and metrics) on
//! its way into the store, whatever its route; a run that fails it is
//! refused with [`IngestError::Invalid`] and nothing of the call is stored.
//!
//! Source-specific parsing lives in one file per source and is pure
//! (payload in, [`Run`] out); this module does the I/O (the HTTP handlers are in `http::routes`).

pub mod aws;
pub mod backfill;
pub mod codepipeline_poll;
pub mod generic;
pub mod github;
pub mod gitlab;
pub mod payload;
pub mod redaction;
pub mod signature;

pub use payload::{
    delivery_id, merge_stage, merge_update, parse_time, stage_update, AdapterError,
    AdapterErrorKind, MAX_DELIVERY_ID_CHARS,
};

use std::sync::Arc;

use serde::Serialize;

use crate::clock::Clock;
use crate::domain::{FieldError, Run, RunSource};
use crate::evidence::resources::ResourceHold;
use crate::metrics::Metrics;
use crate::redact::Redactor;
use crate::scoring::DetectionService;
use crate::store::{RunCall, RunOutcome, RunRow, Store, StoreError, WriteTx};

/// Why an ingest call stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A run breaks the run limits; each problem names its field and limit.
    #[error("{} problem(s) in the runs; nothing was stored", .0.len())]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Applies [`Run::validate`] to each run, reporting every problem, with the
/// run's index when there are several.
pub fn check_runs(runs: &[Run], now: chrono::DateTime<chrono::Utc>) -> Result<(), IngestError> {
    let mut errors = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let prefix = if runs.len() == 1 {
            String::new()
        } else {
            format!("[{i}].")
        };
        errors.extend(run.validate(&prefix, now));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(IngestError::Invalid(errors))
    }
}

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
    /// What detection said, when the caller waited for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<crate::domain::Verdict>,
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
    reply: tokio::sync::oneshot::Sender<Result<(IngestReport, Vec<PendingVerdict>), IngestError>>,
}

/// A verdict on its way: the index of the run in the report and the
/// receiver detection answers on.
type PendingVerdict = (
    usize,
    tokio::sync::oneshot::Receiver<Result<crate::domain::Verdict, String>>,
);

/// How long `POST /v1/runs` waits for the verdicts of the runs it stored.
const VERDICT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

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
    detection: Option<DetectionService>,
    /// Holds CodePipeline runs of CodeBuild until their CPU and memory
    /// arrive from CloudWatch, before they are scored.
    hold: Option<ResourceHold>,
    redaction: redaction::RunRedaction,
}

impl IngestService {
    /// Creates the service and starts its writer task (needs a Tokio runtime).
    /// The writer stops when the service is dropped.
    pub fn new(store: Store, metrics: Arc<Metrics>, clock: Arc<dyn Clock>) -> Self {
        Self::with_detection(store, metrics, clock, None)
    }

    /// Like [`IngestService::new`]; every run that reaches a final status is
    /// handed to `detection`, in commit order.
    pub fn with_detection(
        store: Store,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        detection: Option<DetectionService>,
    ) -> Self {
        Self::with_redactor(
            store,
            metrics,
            clock,
            detection,
            Arc::new(Redactor::builtin_or_hide_all()),
        )
    }

    /// Like [`IngestService::with_detection`], redacting with `redactor`
    /// (the built-in patterns plus the configured ones).
    pub fn with_redactor(
        store: Store,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        detection: Option<DetectionService>,
        redactor: Arc<Redactor>,
    ) -> Self {
        Self::with_hold(store, metrics, clock, detection, redactor, None)
    }

    /// Like [`IngestService::with_redactor`]; the CodePipeline runs that
    /// `hold` takes wait there for their CodeBuild figures before they are
    /// handed to `detection` (see [`crate::evidence::resources`]).
    pub fn with_hold(
        store: Store,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        detection: Option<DetectionService>,
        redactor: Arc<Redactor>,
        hold: Option<ResourceHold>,
    ) -> Self {
        let redaction = redaction::RunRedaction::new(redactor, metrics.clone());
        let (jobs, rx) = tokio::sync::mpsc::channel(4 * GROUP_COMMIT_MAX);
        tokio::spawn(writer(
            store.clone(),
            clock.clone(),
            detection.clone(),
            redaction.clone(),
            rx,
        ));
        Self {
            store,
            metrics,
            clock,
            jobs,
            detection,
            hold,
            redaction,
        }
    }

    /// What every stored run passes through (for callers of [`store_runs`]).
    pub fn redaction(&self) -> &redaction::RunRedaction {
        &self.redaction
    }

    pub fn detection(&self) -> Option<&DetectionService> {
        self.detection.as_ref()
    }

    /// Hands runs of `source` committed through the caller's own
    /// transaction to detection (`accepted[i]` is the outcome of
    /// `runs[i]`), or to the hold for their CodeBuild figures; does not
    /// wait.
    pub async fn score_committed(&self, source: RunSource, accepted: &[Accepted], runs: &[Run]) {
        let report = IngestReport {
            duplicate_delivery: false,
            runs: accepted.to_vec(),
        };
        let hold = self.hold.as_ref().map(|h| (h, source));
        submit_held(self.detection.as_ref(), hold, &report, runs).await;
    }

    /// The hold of CodePipeline runs for their CodeBuild figures, when on.
    pub fn hold(&self) -> Option<&ResourceHold> {
        self.hold.as_ref()
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
    /// Runs that became final are scored; with `wait_for_verdicts` the
    /// report carries their verdicts.
    #[tracing::instrument(skip_all, fields(source = source.as_str(), runs = runs.len()))]
    pub async fn accept_runs(
        &self,
        source: RunSource,
        delivery_id: Option<&str>,
        runs: &[Run],
        wait_for_verdicts: bool,
    ) -> Result<IngestReport, IngestError> {
        self.accept_owned_runs(source, delivery_id, runs.to_vec(), wait_for_verdicts)
            .await
    }

    /// [`IngestService::accept_runs`] for runs the caller hands over (no
    /// copy: what backfills use).
    pub async fn accept_owned_runs(
        &self,
        source: RunSource,
        delivery_id: Option<&str>,
        runs: Vec<Run>,
        wait_for_verdicts: bool,
    ) -> Result<IngestReport, IngestError> {
        // Checked here too so one bad call never fails a group commit.
        check_runs(&runs, self.clock.now())?;
        let n = runs.len();
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            source,
            delivery_id: delivery_id.map(str::to_string),
            runs,
            reply,
        };
        let closed = || StoreError::Corrupt {
            what: "ingest writer".into(),
            detail: "the writer task has stopped".into(),
        };
        self.jobs.send(job).await.map_err(|_| closed())?;
        let (mut report, pending) = answer.await.map_err(|_| closed())??;
        if report.duplicate_delivery {
            return Ok(self.duplicate(source, delivery_id, n));
        }
        self.count(source, &report.runs);
        if wait_for_verdicts {
            collect_verdicts(&mut report, pending).await;
        }
        Ok(report)
    }

    /// Counts stored runs by outcome, without naming each (a backfill's).
    pub fn count_outcomes(&self, source: RunSource, outcomes: impl Iterator<Item = RunOutcome>) {
        for outcome in outcomes {
            self.metrics
                .run_ingested(source.as_str(), outcome_label(outcome));
        }
    }

    /// Counts stored runs in the metrics; for callers that wrote through
    /// their own transaction.
    pub fn count(&self, source: RunSource, accepted: &[Accepted]) {
        for a in accepted {
            let outcome = outcome_label(a.outcome);
            self.metrics.run_ingested(source.as_str(), outcome);
            tracing::debug!(pipeline = %a.pipeline, run_id = %a.run_id, outcome, "Run stored.");
        }
    }
}

/// The `outcome` label of `pipemedic_runs_ingested_total`.
fn outcome_label(outcome: RunOutcome) -> &'static str {
    match outcome {
        RunOutcome::Inserted => "inserted",
        RunOutcome::Updated => "updated",
        RunOutcome::Duplicate => "duplicate",
    }
}

/// Waits (a bounded time) for the verdicts of stored runs.
async fn collect_verdicts(report: &mut IngestReport, pending: Vec<PendingVerdict>) {
    let deadline = tokio::time::Instant::now() + VERDICT_WAIT;
    for (i, rx) in pending {
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Ok(verdict))) => report.runs[i].verdict = Some(verdict),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "Run stored but not scored."),
            Ok(Err(_)) | Err(_) => tracing::warn!("Run stored; its verdict did not come in time."),
        }
    }
}

/// Hands the runs that became final to detection, in order.
async fn submit_for_scoring(
    detection: Option<&DetectionService>,
    report: &IngestReport,
    runs: &[Run],
) -> Vec<PendingVerdict> {
    submit(detection, report, runs, false).await
}

/// [`submit_for_scoring`] for runs of a CodePipeline source: those the
/// hold takes (a CodeBuild build without CPU or memory, or behind one of
/// their pipeline) are scored when it lets them go; nobody waits here for
/// their verdicts.
async fn submit_held(
    detection: Option<&DetectionService>,
    hold: Option<(&ResourceHold, RunSource)>,
    report: &IngestReport,
    runs: &[Run],
) {
    let Some((hold, source)) = hold.filter(|_| detection.is_some()) else {
        submit_for_scoring(detection, report, runs).await;
        return;
    };
    let mut now = IngestReport {
        duplicate_delivery: report.duplicate_delivery,
        runs: Vec::with_capacity(report.runs.len()),
    };
    let mut now_runs = Vec::with_capacity(runs.len());
    for (accepted, run) in report.runs.iter().zip(runs) {
        if accepted.became_final && hold.offer(source, accepted.pk, run).await {
            continue;
        }
        now.runs.push(accepted.clone());
        now_runs.push(run.clone());
    }
    submit_for_scoring(detection, &now, &now_runs).await;
}

/// The verdicts of the runs the writer stored and, across replicas, queued
/// in the same transaction ([`write_group`]).
async fn submit_committed(
    detection: Option<&DetectionService>,
    report: &IngestReport,
    runs: &[Run],
) -> Vec<PendingVerdict> {
    submit(detection, report, runs, true).await
}

async fn submit(
    detection: Option<&DetectionService>,
    report: &IngestReport,
    runs: &[Run],
    already_queued: bool,
) -> Vec<PendingVerdict> {
    let Some(detection) = detection else {
        return Vec::new();
    };
    let mut pending = Vec::new();
    for (i, (accepted, run)) in report.runs.iter().zip(runs).enumerate() {
        if !accepted.became_final {
            continue;
        }
        let handed = if already_queued {
            detection.submit_queued(accepted.pk, run.clone()).await
        } else {
            detection.submit(accepted.pk, run.clone()).await
        };
        match handed {
            Ok(rx) => pending.push((i, rx)),
            Err(e) => tracing::error!(error = %e, "Run stored but not handed to detection."),
        }
    }
    pending
}

async fn writer(
    store: Store,
    clock: Arc<dyn Clock>,
    detection: Option<DetectionService>,
    redaction: redaction::RunRedaction,
    mut rx: tokio::sync::mpsc::Receiver<Job>,
) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP_COMMIT_MAX {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let now = clock.now();
        for job in &mut group {
            redaction.apply(&mut job.runs);
        }
        let queue_as = detection.as_ref().and_then(DetectionService::queues_as);
        match write_group(&store, &group, now, queue_as).await {
            Ok(reports) => {
                for (job, report) in group.into_iter().zip(reports) {
                    let pending = submit_committed(detection.as_ref(), &report, &job.runs).await;
                    let _ = job.reply.send(Ok((report, pending)));
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
                    let result = write_group(&store, std::slice::from_ref(&job), now, queue_as)
                        .await
                        .map(|mut r| r.remove(0));
                    let result = match result {
                        Ok(report) => {
                            let pending =
                                submit_committed(detection.as_ref(), &report, &job.runs).await;
                            Ok((report, pending))
                        }
                        Err(e) => Err(e),
                    };
                    let _ = job.reply.send(result);
                }
            }
        }
    }
}

/// Commits a group of calls whose runs are already checked
/// ([`IngestService::accept_runs`]) and redacted, in one transaction
/// ([`Store::store_run_calls`]). With `queue_as` (the replica's name when
/// pipelines are owned across replicas), the runs that became final are
/// queued for their owners in the same transaction.
async fn write_group(
    store: &Store,
    group: &[Job],
    now: chrono::DateTime<chrono::Utc>,
    queue_as: Option<&str>,
) -> Result<Vec<IngestReport>, IngestError> {
    // Rows are made before the write gate is taken.
    let calls = group
        .iter()
        .map(|job| {
            Ok(RunCall {
                source: job.source,
                delivery_id: job.delivery_id.clone(),
                rows: job
                    .runs
                    .iter()
                    .map(|run| RunRow::new(run, job.source, now))
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let stored = store.store_run_calls(calls, now, queue_as).await?;
    Ok(group
        .iter()
        .zip(stored)
        .map(|(job, stored)| IngestReport {
            duplicate_delivery: !stored.fresh,
            runs: accepted(job.runs.iter(), stored.upserted),
        })
        .collect())
}

/// Validates the runs (see [`check_runs`]), hides the secrets in their
/// free text (in place, so that what is scored afterwards is what was
/// stored), then upserts each inside an open transaction. The one door
/// every run of every source goes through; on [`IngestError::Invalid`]
/// nothing is written and the caller drops the transaction.
pub async fn store_runs(
    tx: &mut WriteTx,
    source: RunSource,
    runs: &mut [Run],
    now: chrono::DateTime<chrono::Utc>,
    redaction: &redaction::RunRedaction,
) -> Result<Vec<Accepted>, IngestError> {
    let rows = rows_to_store(runs, source, now, redaction)?;
    let upserted = tx.upsert_rows(&rows).await?;
    Ok(accepted(runs.iter(), upserted))
}

/// What [`store_runs`] does before the store, for a writer of rows (a
/// backfill, which does it on every core while its writer stores the rows
/// before): validates the runs ([`check_runs`]), hides the secrets in their
/// free text, in place, and makes their rows.
pub fn rows_to_store(
    runs: &mut [Run],
    source: RunSource,
    now: chrono::DateTime<chrono::Utc>,
    redaction: &redaction::RunRedaction,
) -> Result<Vec<RunRow>, IngestError> {
    check_runs(runs, now)?;
    redaction.apply(runs);
    Ok(runs
        .iter()
        .map(|run| RunRow::new(run, source, now))
        .collect::<Result<_, _>>()?)
}

/// What storing `runs` did, run by run.
fn accepted<'a>(
    runs: impl Iterator<Item = &'a Run>,
    upserted: Vec<crate::store::Upserted>,
) -> Vec<Accepted> {
    runs.zip(upserted)
        .map(|(run, up)| Accepted {
            pipeline: run.pipeline.clone(),
            run_id: run.run_id.clone(),
            attempt: run.attempt,
            outcome: up.outcome,
            pk: up.pk,
            became_final: up.became_final,
            verdict: None,
        })
        .collect()
}

/// Starts the ingest work that runs in the background: CodePipeline
/// polling, and pruning of processed event ids older than
/// `ingest.processed_event_retention_days` (at start, then every hour).
/// Both stop when `shutdown` is cancelled.
pub fn start_background(
    config: &crate::config::Config,
    aws: &crate::aws::AwsSettings,
    ingest: Arc<IngestService>,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: &tokio_util::sync::CancellationToken,
) {
    let retention_days = config.ingest.processed_event_retention_days;
    let pruner = ingest.clone();
    let stop = shutdown.clone();
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(PRUNE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = pruner.prune_processed_events(retention_days).await {
                        tracing::warn!(error = %e, "Pruning processed event ids failed; retrying at the next tick.");
                        pruner.metrics.background_error("prune_events");
                    }
                }
            }
        }
    });
    codepipeline_poll::start(&config.codepipeline, aws, ingest, tracker, shutdown);
}

/// How often processed event ids are pruned.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Kind of the ingest state that holds CodePipeline executions being
/// assembled from EventBridge events (key: `pipeline/execution id`).
pub const AWS_ASSEMBLY_STATE: &str = "aws_execution";

/// How long a finished execution's assembly is kept for late CodeBuild
/// events before it is dropped.
const AWS_ASSEMBLY_KEEP_HOURS: i64 = 24;

impl IngestService {
    /// Stores partial updates of runs (webhook events): each is merged into
    /// what is stored (a finished run never goes back to running; stages
    /// accumulate). With a `delivery_id` a redelivery writes nothing.
    pub async fn accept_updates(
        &self,
        source: RunSource,
        delivery_id: Option<&str>,
        updates: Vec<Run>,
    ) -> Result<IngestReport, IngestError> {
        let mut tx = self.store.begin_write().await?;
        let now = self.clock.now();
        if let Some(id) = delivery_id {
            if !tx.claim_event(source.as_str(), id, now).await? {
                return Ok(self.duplicate(source, delivery_id, updates.len()));
            }
        }
        let mut merged = Vec::with_capacity(updates.len());
        for update in updates {
            let stored = tx
                .get_run(&update.pipeline, &update.run_id, update.attempt)
                .await?;
            merged.push(merge_update(stored.as_ref(), update));
        }
        let accepted = store_runs(&mut tx, source, &mut merged, now, &self.redaction).await?;
        tx.commit().await?;
        self.count(source, &accepted);
        let report = IngestReport {
            duplicate_delivery: false,
            runs: accepted,
        };
        submit_for_scoring(self.detection.as_ref(), &report, &merged).await;
        Ok(report)
    }

    /// Applies one EventBridge event: CodePipeline events update their
    /// execution's assembly (stored between events) and store its run once
    /// the execution has ended; CodeBuild builds started by a pipeline join
    /// the execution that names them; other builds are runs of their own.
    pub async fn accept_aws_event(
        &self,
        event: &aws::AwsEvent,
    ) -> Result<IngestReport, IngestError> {
        let mut tx = self.store.begin_write().await?;
        let now = self.clock.now();
        let source = RunSource::Aws;
        if !tx
            .claim_event(source.as_str(), event.event_id(), now)
            .await?
        {
            return Ok(self.duplicate(source, Some(event.event_id()), 1));
        }
        let mut runs = Vec::new();
        match event {
            aws::AwsEvent::Ignored { detail_type, .. } => {
                self.metrics.event_ignored("aws", detail_type);
            }
            aws::AwsEvent::CodeBuild(build) if build.initiating_pipeline().is_none() => {
                runs.push(aws::codebuild_run(build));
            }
            aws::AwsEvent::CodeBuild(build) => {
                let pipeline = build.initiating_pipeline().unwrap_or_default();
                let prefix = format!("{pipeline}/");
                for (key, value, updated) in
                    tx.states_with_prefix(AWS_ASSEMBLY_STATE, &prefix).await?
                {
                    let mut assembly = read_assembly(&value)?;
                    if assembly.is_final()
                        && now - updated > chrono::Duration::hours(AWS_ASSEMBLY_KEEP_HOURS)
                    {
                        tx.delete_state(AWS_ASSEMBLY_STATE, &key).await?;
                        continue;
                    }
                    if matches!(assembly.apply(event), Ok(true))
                        && assembly.claims_build(&build.build_id)
                    {
                        self.redaction.apply_to_assembly(&mut assembly);
                        tx.put_state(AWS_ASSEMBLY_STATE, &key, &write_assembly(&assembly)?, now)
                            .await?;
                        runs.extend(assembly.to_run());
                    }
                }
            }
            _ => {
                if let Some((pipeline, execution)) = event.execution_key() {
                    let key = format!("{pipeline}/{execution}");
                    let mut assembly = match tx.get_state(AWS_ASSEMBLY_STATE, &key).await? {
                        Some(value) => read_assembly(&value)?,
                        None => aws::ExecutionAssembly::new(pipeline, execution),
                    };
                    if matches!(assembly.apply(event), Ok(true)) {
                        self.redaction.apply_to_assembly(&mut assembly);
                        tx.put_state(AWS_ASSEMBLY_STATE, &key, &write_assembly(&assembly)?, now)
                            .await?;
                        runs.extend(assembly.to_run());
                    }
                }
            }
        }
        for run in &mut runs {
            run.normalise();
        }
        let accepted = store_runs(&mut tx, source, &mut runs, now, &self.redaction).await?;
        tx.commit().await?;
        self.count(source, &accepted);
        let report = IngestReport {
            duplicate_delivery: false,
            runs: accepted,
        };
        let hold = self.hold.as_ref().map(|h| (h, source));
        submit_held(self.detection.as_ref(), hold, &report, &runs).await;
        Ok(report)
    }

    /// Forgets processed delivery and event ids received more than
    /// `retention_days` ago by the service's clock; returns how many went.
    pub async fn prune_processed_events(&self, retention_days: u32) -> Result<u64, StoreError> {
        let before = self.clock.now() - chrono::Duration::days(i64::from(retention_days));
        let pruned = self.store.prune_processed_events(before).await?;
        if pruned > 0 {
            tracing::info!(pruned, retention_days, "Old processed event ids pruned.");
        }
        Ok(pruned)
    }

    fn duplicate(&self, source: RunSource, delivery_id: Option<&str>, n: usize) -> IngestReport {
        for _ in 0..n {
            self.metrics.run_ingested(source.as_str(), "duplicate");
        }
        tracing::info!(
            source = source.as_str(),
            delivery = delivery_id,
            "Redelivery ignored."
        );
        IngestReport {
            duplicate_delivery: true,
            runs: Vec::new(),
        }
    }
}

fn read_assembly(value: &str) -> Result<aws::ExecutionAssembly, StoreError> {
    serde_json::from_str(value).map_err(|e| StoreError::Corrupt {
        what: "ingest_state.aws_execution".into(),
        detail: e.to_string(),
    })
}

fn write_assembly(assembly: &aws::ExecutionAssembly) -> Result<String, StoreError> {
    serde_json::to_string(assembly).map_err(|e| StoreError::Corrupt {
        what: "aws execution assembly".into(),
        detail: e.to_string(),
    })
}
