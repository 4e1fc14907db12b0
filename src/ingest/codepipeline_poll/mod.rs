//! CodePipeline polling: for accounts without an EventBridge rule, the
//! pipelines named in `codepipeline.poll_pipelines` are read through the
//! CodePipeline API (`ListPipelineExecutions`, `GetPipelineExecution`,
//! `ListActionExecutions`) and each finished execution becomes one [`Run`]
//! with per-stage durations, the failed stage and the source commit. Its
//! `log_url` is the failed action's `externalExecutionUrl`, else that of
//! the last action whose link is a CodeBuild build in the console, so that
//! `evidence` finds the build (its CPU, memory and log) as for a run from
//! events.
//!
//! Each pipeline has a cursor in the store's `ingest_state` table (kind
//! `codepipeline_poll`, key = pipeline name), written in the same
//! transaction as the runs it covers, so a restart resumes where the last
//! committed poll ended and nothing is lost or stored twice:
//!
//! - `horizon_ms`: every execution that started before it is final and
//!   stored (it stays at the oldest execution still in progress, so that
//!   one is revisited until it finishes);
//! - `seen`: the final executions already stored that started within
//!   [`REVISIT_WINDOW`] before the horizon or later, with the
//!   `lastUpdateTime` stored. Listing stops at `horizon - REVISIT_WINDOW`;
//!   an execution found in `seen` unchanged is skipped, and one whose
//!   `lastUpdateTime` moved (a retried stage) is stored again as the next
//!   attempt.
//!
//! The first poll of a pipeline reaches back [`INITIAL_LOOKBACK`]; older
//! history comes from `pipemedic ingest`. When a call fails half-way, the
//! executions already read are committed with the cursor and the rest is
//! retried at the next poll. The mapping from the SDK's output structures
//! to a [`Run`] ([`execution_to_run`]) is pure; this module never changes
//! a pipeline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_codepipeline::types::{
    ActionExecutionDetail, ActionExecutionFilter, ActionExecutionStatus, PipelineExecution,
    PipelineExecutionStatus, PipelineExecutionSummary,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{store_runs, Accepted, IngestError, IngestService};
use crate::aws::iam::{ArnForm, IamGrant};
use crate::aws::{AwsClients, AwsSettings, ErrorClass};
use crate::domain::{Run, RunSource, RunStatus, StageTiming};
use crate::evidence::codebuild::build_of_console_link;
use crate::store::StoreError;

/// `ingest_state.kind` of the poll cursors.
pub const STATE_KIND: &str = "codepipeline_poll";
/// How far before the horizon executions are listed again, so that a
/// retried stage of a recent execution is noticed.
pub const REVISIT_WINDOW: chrono::Duration = chrono::Duration::hours(24);
/// How far back the first poll of a pipeline reaches.
pub const INITIAL_LOOKBACK: chrono::Duration = chrono::Duration::days(7);
/// An execution still in progress after this long no longer holds the
/// horizon back (CodePipeline's longest action timeout is 7 days).
pub const MAX_PENDING_AGE: chrono::Duration = chrono::Duration::days(8);
/// What polling needs from IAM: the three read calls, on each polled
/// pipeline.
pub const IAM: &[IamGrant] = &[
    IamGrant::new(
        "codepipeline:ListPipelineExecutions",
        ArnForm::CodePipelinePipeline,
    ),
    IamGrant::new(
        "codepipeline:GetPipelineExecution",
        ArnForm::CodePipelinePipeline,
    ),
    IamGrant::new(
        "codepipeline:ListActionExecutions",
        ArnForm::CodePipelinePipeline,
    ),
];
/// Page size of the list calls (the API's maximum).
const PAGE_SIZE: i32 = 100;
/// Longest commit message kept with a run.
const MAX_COMMIT_MESSAGE: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("{operation} for pipeline {pipeline} failed ({}): {message}", class.as_str())]
    Api {
        pipeline: String,
        operation: &'static str,
        class: ErrorClass,
        message: String,
    },
    #[error("storing the poll of pipeline {pipeline} failed: {source}")]
    Store {
        pipeline: String,
        #[source]
        source: StoreError,
    },
    #[error("{} of {} pipelines failed to poll; first: {}", failures.len(), failures.len() + report.pipelines.len(), failures.first().map(ToString::to_string).unwrap_or_default())]
    Incomplete {
        /// The pipelines that were polled.
        report: PollReport,
        failures: Vec<PollError>,
    },
}

impl PollError {
    /// Whether the next poll may succeed where this one failed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { class, .. } => class.is_retryable(),
            Self::Store { .. } => true,
            Self::Incomplete { failures, .. } => failures.iter().all(Self::is_retryable),
        }
    }
}

/// What one poll of one pipeline did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PipelinePoll {
    pub pipeline: String,
    /// Executions listed back to the cursor.
    pub listed: usize,
    /// Runs written (each with its outcome).
    pub stored: Vec<Accepted>,
    /// Executions still in progress, revisited at the next poll.
    pub in_progress: Vec<String>,
}

/// What one poll of every configured pipeline did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PollReport {
    pub pipelines: Vec<PipelinePoll>,
}

impl PollReport {
    /// Runs written in this poll, all pipelines together.
    pub fn stored(&self) -> usize {
        self.pipelines.iter().map(|p| p.stored.len()).sum()
    }
}

/// What the cursor remembers of a stored final execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Seen {
    start_ms: i64,
    updated_ms: i64,
    attempt: u32,
}

/// A pipeline's poll cursor, as stored in `ingest_state` (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cursor {
    /// Executions that started before this are final and stored.
    horizon_ms: i64,
    /// Executions that started before this are never considered (the reach
    /// of the first poll).
    floor_ms: i64,
    seen: BTreeMap<String, Seen>,
}

impl Cursor {
    fn first(now: DateTime<Utc>) -> Self {
        let floor_ms = (now - INITIAL_LOOKBACK).timestamp_millis();
        Self {
            horizon_ms: floor_ms,
            floor_ms,
            seen: BTreeMap::new(),
        }
    }

    /// Executions that started before this need not be listed.
    fn list_until_ms(&self) -> i64 {
        self.floor_ms
            .max(self.horizon_ms - REVISIT_WINDOW.num_milliseconds())
    }
}

/// One listed execution with the times the cursor works with.
#[derive(Debug, Clone)]
struct Listed {
    id: String,
    status: RunStatus,
    start_ms: i64,
    updated_ms: i64,
    summary: PipelineExecutionSummary,
}

/// What to do with the listed executions, given the cursor (pure).
#[derive(Debug, Default)]
struct Plan {
    /// Final executions to read and store, oldest first, with their attempt.
    fetch: Vec<(Listed, u32)>,
    in_progress: Vec<Listed>,
}

fn plan(cursor: &Cursor, listed: &[Listed]) -> Plan {
    let mut out = Plan::default();
    let mut oldest_first: Vec<&Listed> = listed.iter().collect();
    oldest_first.sort_by(|a, b| a.start_ms.cmp(&b.start_ms).then(a.id.cmp(&b.id)));
    for l in oldest_first {
        if !l.status.is_final() {
            out.in_progress.push(l.clone());
            continue;
        }
        match cursor.seen.get(&l.id) {
            Some(seen) if seen.updated_ms == l.updated_ms => {}
            Some(seen) => out.fetch.push((l.clone(), seen.attempt + 1)),
            None => out.fetch.push((l.clone(), 1)),
        }
    }
    out
}

/// The cursor after a poll that stored `done` (and, when `complete`, read
/// everything it listed).
fn advance(
    cursor: &Cursor,
    listed: &[Listed],
    done: &[(Listed, u32)],
    complete: bool,
    now: DateTime<Utc>,
) -> Cursor {
    let mut next = cursor.clone();
    for (l, attempt) in done {
        next.seen.insert(
            l.id.clone(),
            Seen {
                start_ms: l.start_ms,
                updated_ms: l.updated_ms,
                attempt: *attempt,
            },
        );
    }
    if complete {
        let stale_before = (now - MAX_PENDING_AGE).timestamp_millis();
        let oldest_pending = listed
            .iter()
            .filter(|l| !l.status.is_final() && l.start_ms >= stale_before)
            .map(|l| l.start_ms)
            .min();
        let newest = listed.iter().map(|l| l.start_ms).max();
        next.horizon_ms = match oldest_pending {
            Some(start) => start,
            None => newest.map_or(cursor.horizon_ms, |n| n.max(cursor.horizon_ms)),
        };
        let keep_from = next.list_until_ms();
        next.seen.retain(|_, s| s.start_ms >= keep_from);
    }
    next
}

/// Our status for a CodePipeline execution status.
pub fn execution_status(status: &PipelineExecutionStatus) -> RunStatus {
    match status.as_str() {
        "Succeeded" => RunStatus::Succeeded,
        "Failed" => RunStatus::Failed,
        "Stopped" | "Superseded" | "Cancelled" => RunStatus::Cancelled,
        // InProgress, Stopping, and statuses newer than this build.
        _ => RunStatus::Running,
    }
}

fn action_status(status: &ActionExecutionStatus) -> RunStatus {
    match status.as_str() {
        "Succeeded" => RunStatus::Succeeded,
        "Failed" => RunStatus::Failed,
        "Abandoned" => RunStatus::Cancelled,
        _ => RunStatus::Running,
    }
}

fn to_chrono(t: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(t?.to_millis().ok()?)
}

/// The commit message in a revision summary: source actions backed by a
/// connection (GitHub, Bitbucket, GitLab) send a JSON object with
/// `CommitMessage`; others send the message itself.
fn commit_message(summary: &str) -> String {
    let message =
        super::payload::revision_commit_message(summary).unwrap_or_else(|| summary.to_string());
    crate::domain::truncate(message.trim(), MAX_COMMIT_MESSAGE)
}

/// Builds the run of one execution from its listing summary, its details
/// (when read) and its action executions. `None` when the summary has no
/// execution id.
pub fn execution_to_run(
    pipeline: &str,
    summary: &PipelineExecutionSummary,
    execution: Option<&PipelineExecution>,
    actions: &[ActionExecutionDetail],
    region: Option<&str>,
) -> Option<Run> {
    let id = summary
        .pipeline_execution_id()
        .or_else(|| execution?.pipeline_execution_id())?;
    let status = execution
        .and_then(PipelineExecution::status)
        .or_else(|| summary.status())
        .map_or(RunStatus::Running, execution_status);
    let mut run = Run::new(pipeline, id, status);
    run.started_at = to_chrono(summary.start_time());

    // Stages in the order they started: min start, max last update.
    let mut stages: Vec<StageTiming> = Vec::new();
    // The latest attempt of each action decides its stage's status.
    let mut stage_actions: BTreeMap<String, BTreeMap<String, RunStatus>> = BTreeMap::new();
    let mut sorted: Vec<&ActionExecutionDetail> = actions
        .iter()
        .filter(|a| a.pipeline_execution_id().is_none_or(|e| e == id))
        .collect();
    sorted.sort_by_key(|a| a.start_time().and_then(|t| t.to_millis().ok()));
    for action in &sorted {
        let Some(name) = action.stage_name() else {
            continue;
        };
        let start = to_chrono(action.start_time());
        let end = to_chrono(action.last_update_time());
        let a_status = action.status().map_or(RunStatus::Running, action_status);
        stage_actions
            .entry(name.to_string())
            .or_default()
            .insert(action.action_name().unwrap_or("").to_string(), a_status);
        match stages.iter_mut().find(|s| s.name == name) {
            Some(stage) => {
                stage.started_at = match (stage.started_at, start) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                stage.finished_at = match (stage.finished_at, end) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
            None => stages.push(StageTiming {
                job_id: None,
                name: name.to_string(),
                status: None,
                started_at: start,
                finished_at: end,
            }),
        }
    }
    for stage in &mut stages {
        let statuses: Vec<RunStatus> = stage_actions
            .get(&stage.name)
            .map(|a| a.values().copied().collect())
            .unwrap_or_default();
        let stage_status = if statuses.contains(&RunStatus::Failed) {
            RunStatus::Failed
        } else if statuses.contains(&RunStatus::Running) {
            RunStatus::Running
        } else if statuses.contains(&RunStatus::Cancelled) {
            RunStatus::Cancelled
        } else {
            RunStatus::Succeeded
        };
        stage.status = Some(stage_status);
        if !stage_status.is_final() {
            stage.finished_at = None;
        }
    }
    run.stages = stages;

    if status.is_final() {
        let last_action = sorted
            .iter()
            .filter_map(|a| to_chrono(a.last_update_time()))
            .max();
        run.finished_at = match (to_chrono(summary.last_update_time()), last_action) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    // The failed action that ended the run (the latest to fail).
    let failed = sorted
        .iter()
        .filter(|a| {
            a.status()
                .is_some_and(|s| action_status(s) == RunStatus::Failed)
        })
        .max_by_key(|a| a.last_update_time().and_then(|t| t.to_millis().ok()));
    if status == RunStatus::Failed {
        run.stage = failed.and_then(|a| a.stage_name()).map(str::to_string);
        let mut log = Vec::new();
        if let Some(text) = execution
            .and_then(PipelineExecution::status_summary)
            .or_else(|| summary.status_summary())
        {
            log.push(text.to_string());
        }
        if let Some(action) = failed {
            let result = action.output().and_then(|o| o.execution_result());
            let name = format!(
                "{}/{}",
                action.stage_name().unwrap_or("?"),
                action.action_name().unwrap_or("?")
            );
            if let Some(text) = result.and_then(|r| r.external_execution_summary()) {
                log.push(format!("{name}: {text}"));
            }
            if let Some(err) = result.and_then(|r| r.error_details()) {
                log.push(format!(
                    "{name}: {} {}",
                    err.code().unwrap_or(""),
                    err.message().unwrap_or("")
                ));
            }
            run.log_url = result
                .and_then(|r| r.external_execution_url())
                .map(str::to_string);
        }
        if !log.is_empty() {
            run.log_excerpt = Some(log.join("\n"));
        }
    }
    if status.is_final() && run.log_url.is_none() {
        // No failed action's link: the last CodeBuild build's, whose CPU
        // and memory stand for the run's (`evidence::resources`), as for
        // runs assembled from events.
        run.log_url = sorted
            .iter()
            .rev()
            .filter_map(|a| a.output()?.execution_result()?.external_execution_url())
            .find(|url| build_of_console_link(url).is_some())
            .map(str::to_string);
    }

    let source = summary.source_revisions().first();
    let artifact = execution.and_then(|e| e.artifact_revisions().first());
    run.commit = source
        .and_then(|s| s.revision_id())
        .or_else(|| artifact.and_then(|a| a.revision_id()))
        .map(str::to_string);
    run.commit_message = source
        .and_then(|s| s.revision_summary())
        .or_else(|| artifact.and_then(|a| a.revision_summary()))
        .map(commit_message)
        .filter(|m| !m.is_empty());
    run.url = region.map(|region| {
        format!(
            "https://{region}.console.aws.amazon.com/codesuite/codepipeline/pipelines/{}/executions/{}/timeline?region={region}",
            urlencoding::encode(pipeline),
            urlencoding::encode(id)
        )
    });
    run.normalise();
    Some(run)
}

fn api_error<E>(
    pipeline: &str,
    operation: &'static str,
    error: &SdkError<E, HttpResponse>,
) -> PollError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    PollError::Api {
        pipeline: pipeline.to_string(),
        operation,
        class: crate::aws::classify(error),
        message: crate::aws::describe(error),
    }
}

/// Polls the configured pipelines through the CodePipeline API.
pub struct CodePipelinePoller {
    client: aws_sdk_codepipeline::Client,
    ingest: Arc<IngestService>,
    pipelines: Vec<String>,
    region: Option<String>,
}

impl CodePipelinePoller {
    pub fn new(clients: &AwsClients, ingest: Arc<IngestService>, pipelines: Vec<String>) -> Self {
        Self {
            client: clients.codepipeline(),
            ingest,
            pipelines,
            region: clients.region().map(str::to_string),
        }
    }

    pub fn pipelines(&self) -> &[String] {
        &self.pipelines
    }

    /// Polls every configured pipeline once. A pipeline that fails is
    /// counted (`pipemedic_poll_errors_total`), logged and retried at the
    /// next poll; the others are polled regardless, and then
    /// [`PollError::Incomplete`] says which failed. Idempotent: polling
    /// again without new executions stores nothing.
    pub async fn poll_once(&self) -> Result<PollReport, PollError> {
        let mut report = PollReport::default();
        let mut failures = Vec::new();
        for pipeline in &self.pipelines {
            match self.poll_pipeline(pipeline).await {
                Ok(done) => report.pipelines.push(done),
                Err(e) => failures.push(e),
            }
        }
        if failures.is_empty() {
            Ok(report)
        } else {
            Err(PollError::Incomplete { report, failures })
        }
    }

    /// Polls one pipeline: lists executions back to its cursor, reads and
    /// stores the new final ones, and moves the cursor in the same
    /// transaction. Failures are counted and logged here.
    #[tracing::instrument(skip_all, fields(pipeline = %pipeline))]
    pub async fn poll_pipeline(&self, pipeline: &str) -> Result<PipelinePoll, PollError> {
        let result = self.poll_pipeline_inner(pipeline).await;
        if let Err(e) = &result {
            self.ingest.metrics().poll_error(pipeline);
            tracing::warn!(
                pipeline = %pipeline,
                error = %e,
                retryable = e.is_retryable(),
                "CodePipeline poll failed; retrying at the next poll."
            );
        }
        result
    }

    async fn poll_pipeline_inner(&self, pipeline: &str) -> Result<PipelinePoll, PollError> {
        let store_err = |source| PollError::Store {
            pipeline: pipeline.to_string(),
            source,
        };
        let now = self.ingest.clock().now();
        let raw_cursor = self
            .ingest
            .store()
            .get_state(STATE_KIND, pipeline)
            .await
            .map_err(store_err)?;
        let cursor = match &raw_cursor {
            None => Cursor::first(now),
            Some(raw) => serde_json::from_str(raw).unwrap_or_else(|e| {
                tracing::warn!(pipeline = %pipeline, error = %e, "Poll cursor unreadable; starting over.");
                Cursor::first(now)
            }),
        };

        let listed = self.list_since(pipeline, cursor.list_until_ms()).await?;
        let plan = plan(&cursor, &listed);

        let mut runs = Vec::with_capacity(plan.fetch.len());
        let mut done = Vec::with_capacity(plan.fetch.len());
        let mut failure = None;
        let mut in_progress: Vec<String> = plan.in_progress.iter().map(|l| l.id.clone()).collect();
        for (l, attempt) in &plan.fetch {
            match self.read_execution(pipeline, l).await {
                Ok(Some(mut run)) => {
                    run.attempt = *attempt;
                    runs.push(run);
                    done.push((l.clone(), *attempt));
                }
                // Running again by the time its details were read (a
                // retried stage): revisited at the next poll.
                Ok(None) => in_progress.push(l.id.clone()),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        // An execution that breaks the run limits is left out, and the
        // cursor still moves past it, so one odd execution cannot stall
        // the pipeline's polling.
        runs.retain(|run| {
            let problems = run.validate("", now);
            if let Some(first) = problems.first() {
                tracing::warn!(pipeline = %pipeline, run_id = %run.run_id, problem = %first, problems = problems.len(), "Polled execution refused by the run limits; not stored.");
            }
            problems.is_empty()
        });
        let complete = failure.is_none() && done.len() == plan.fetch.len();
        let next = advance(&cursor, &listed, &done, complete, now);

        let mut stored = Vec::new();
        if next != cursor || !runs.is_empty() {
            let value = serde_json::to_string(&next).map_err(|e| PollError::Store {
                pipeline: pipeline.to_string(),
                source: StoreError::Corrupt {
                    what: "poll cursor".into(),
                    detail: e.to_string(),
                },
            })?;
            let mut tx = self.ingest.store().begin_write().await.map_err(store_err)?;
            // Another replica that polled meanwhile has stored the same
            // executions; keep its cursor rather than moving it back.
            if tx
                .get_state(STATE_KIND, pipeline)
                .await
                .map_err(store_err)?
                != raw_cursor
            {
                drop(tx);
                tracing::info!(pipeline = %pipeline, "Cursor moved by another poller; this poll is dropped.");
                return Ok(PipelinePoll {
                    pipeline: pipeline.to_string(),
                    listed: listed.len(),
                    stored: Vec::new(),
                    in_progress: Vec::new(),
                });
            }
            stored = store_runs(
                &mut tx,
                RunSource::CodepipelinePoll,
                &mut runs,
                now,
                self.ingest.redaction(),
            )
            .await
            .map_err(|e| match e {
                IngestError::Store(e) => store_err(e),
                // Not reached: invalid runs were left out above.
                IngestError::Invalid(problems) => store_err(StoreError::Corrupt {
                    what: "polled run".into(),
                    detail: format!("{} problem(s) with the run limits", problems.len()),
                }),
            })?;
            tx.put_state(STATE_KIND, pipeline, &value, now)
                .await
                .map_err(store_err)?;
            tx.commit().await.map_err(store_err)?;
            self.ingest.count(RunSource::CodepipelinePoll, &stored);
            self.ingest
                .score_committed(RunSource::CodepipelinePoll, &stored, &runs)
                .await;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if stored.is_empty() {
            tracing::debug!(pipeline = %pipeline, listed = listed.len(), in_progress = in_progress.len(), "Polled; nothing new.");
        } else {
            tracing::info!(
                pipeline = %pipeline,
                listed = listed.len(),
                stored = stored.len(),
                in_progress = in_progress.len(),
                "Polled."
            );
        }
        Ok(PipelinePoll {
            pipeline: pipeline.to_string(),
            listed: listed.len(),
            stored,
            in_progress,
        })
    }

    /// Lists executions, newest first, until one started before `until_ms`.
    async fn list_since(&self, pipeline: &str, until_ms: i64) -> Result<Vec<Listed>, PollError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_pipeline_executions()
                .pipeline_name(pipeline)
                .max_results(PAGE_SIZE)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| api_error(pipeline, "ListPipelineExecutions", &e))?;
            let mut reached = false;
            for s in page.pipeline_execution_summaries() {
                let Some(id) = s.pipeline_execution_id() else {
                    continue;
                };
                let start_ms = s
                    .start_time()
                    .or(s.last_update_time())
                    .and_then(|t| t.to_millis().ok());
                let Some(start_ms) = start_ms else { continue };
                if start_ms < until_ms {
                    reached = true;
                    break;
                }
                out.push(Listed {
                    id: id.to_string(),
                    status: s.status().map_or(RunStatus::Running, execution_status),
                    start_ms,
                    updated_ms: s
                        .last_update_time()
                        .and_then(|t| t.to_millis().ok())
                        .unwrap_or(start_ms),
                    summary: s.clone(),
                });
            }
            token = page.next_token().map(str::to_string);
            if reached || token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Reads one execution and its actions; `None` when it is not final.
    async fn read_execution(&self, pipeline: &str, l: &Listed) -> Result<Option<Run>, PollError> {
        let execution = self
            .client
            .get_pipeline_execution()
            .pipeline_name(pipeline)
            .pipeline_execution_id(&l.id)
            .send()
            .await
            .map_err(|e| api_error(pipeline, "GetPipelineExecution", &e))?;
        let mut actions = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_action_executions()
                .pipeline_name(pipeline)
                .filter(
                    ActionExecutionFilter::builder()
                        .pipeline_execution_id(&l.id)
                        .build(),
                )
                .max_results(PAGE_SIZE)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| api_error(pipeline, "ListActionExecutions", &e))?;
            actions.extend_from_slice(page.action_execution_details());
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let run = execution_to_run(
            pipeline,
            &l.summary,
            execution.pipeline_execution(),
            &actions,
            self.region.as_deref(),
        );
        Ok(run.filter(|r| r.status.is_final()))
    }
}

/// Starts the polling loop when `codepipeline.poll_pipelines` names any
/// pipeline: one poll right away, then one every `poll_interval_s`. It
/// never stops the server: failures are counted and retried at the next
/// interval. Stops when `shutdown` is cancelled.
pub fn start(
    config: &crate::config::CodePipelineConfig,
    settings: &AwsSettings,
    ingest: Arc<IngestService>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let pipelines = config.poll_pipelines.clone();
    if pipelines.is_empty() {
        return;
    }
    let interval = Duration::from_secs(config.poll_interval_s.max(1));
    let settings = settings.clone();
    let shutdown = shutdown.clone();
    tracker.spawn(async move {
        let clients = tokio::select! {
            _ = shutdown.cancelled() => return,
            clients = settings.clients() => clients,
        };
        let poller = CodePipelinePoller::new(&clients, ingest, pipelines);
        tracing::info!(
            pipelines = ?poller.pipelines(),
            interval_s = interval.as_secs(),
            "CodePipeline polling started."
        );
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                // Failures are counted and logged per pipeline inside.
                _ = poller.poll_once() => {}
            }
        }
        tracing::info!("CodePipeline polling stopped.");
    });
}

#[cfg(test)]
mod tests;
