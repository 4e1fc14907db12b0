//! AWS EventBridge events from CodePipeline and CodeBuild, delivered to
//! `POST /v1/webhooks/aws` by an EventBridge API destination, following the
//! event shapes AWS documents ("CodePipeline Pipeline/Stage/Action Execution
//! State Change", "CodeBuild Build State Change").
//!
//! CodePipeline reports one execution as many separate events that may
//! arrive late, twice or out of order. [`ExecutionAssembly`] is the pure,
//! serialisable state that gathers them, keyed by pipeline + execution id,
//! and derives the same [`Run`] whatever the arrival order: every value is
//! computed from the events' own `time`, never from when they arrived.
//!
//! How the ingest service uses this module:
//! 1. [`parse_eventbridge`] the body; skip events whose [`AwsEvent::event_id`]
//!    was processed before.
//! 2. Pipeline, stage and action events: load the assembly for
//!    [`AwsEvent::execution_key`] (or [`ExecutionAssembly::new`]),
//!    [`ExecutionAssembly::apply`] the event, save it, and store
//!    [`ExecutionAssembly::to_run`] when it is `Some` (a final run; later
//!    events for the same execution yield an updated run).
//! 3. CodeBuild events whose initiator is `codepipeline/<pipeline>`
//!    ([`CodeBuildEvent::initiating_pipeline`]) belong to a pipeline
//!    execution, but carry no execution id. Apply them to the assemblies of
//!    that pipeline that are open or recently final: an assembly uses a
//!    build only when one of its actions names that build as its
//!    `external-execution-id`, so applying to the wrong execution is
//!    harmless ([`ExecutionAssembly::claims_build`] tells which one uses it).
//!    A build adds its phase durations as custom metrics
//!    `codebuild.<action>.<phase>_s` and, when it failed, its log link.
//! 4. Any other CodeBuild build is its own run: [`codebuild_run`], with
//!    the project name as the pipeline and one stage per build phase.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Run, RunStatus, StageTiming};

use super::payload::{parse_json, sort_stages, AdapterError, Obj};

/// `detail-type` of a pipeline execution event.
pub const PIPELINE_EXECUTION: &str = "CodePipeline Pipeline Execution State Change";
/// `detail-type` of a stage execution event.
pub const STAGE_EXECUTION: &str = "CodePipeline Stage Execution State Change";
/// `detail-type` of an action execution event.
pub const ACTION_EXECUTION: &str = "CodePipeline Action Execution State Change";
/// `detail-type` of a CodeBuild build state event.
pub const CODEBUILD_BUILD: &str = "CodeBuild Build State Change";

/// The states CodePipeline reports for executions, stages and actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PipelineState {
    /// Work began.
    Started,
    /// Work began again after a retry.
    Resumed,
    /// A stop was requested and is in progress.
    Stopping,
    /// Ended successfully.
    Succeeded,
    /// Ended in failure.
    Failed,
    /// Ended because someone stopped it.
    Stopped,
    /// Ended because the pipeline definition changed before it finished.
    Canceled,
    /// Ended because a newer execution overtook it.
    Superseded,
    /// An action ended because its execution moved on without it.
    Abandoned,
}

impl PipelineState {
    /// Parses the upper-case name AWS sends (`"FAILED"`).
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "STARTED" => Self::Started,
            "RESUMED" => Self::Resumed,
            "STOPPING" => Self::Stopping,
            "SUCCEEDED" => Self::Succeeded,
            "FAILED" => Self::Failed,
            "STOPPED" => Self::Stopped,
            "CANCELED" => Self::Canceled,
            "SUPERSEDED" => Self::Superseded,
            "ABANDONED" => Self::Abandoned,
            _ => return None,
        })
    }

    /// The state is an end state.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Started | Self::Resumed | Self::Stopping)
    }

    /// The state starts (or restarts) work.
    pub fn is_start(self) -> bool {
        matches!(self, Self::Started | Self::Resumed)
    }

    /// pipemedic's status for this state.
    pub fn status(self) -> RunStatus {
        match self {
            Self::Started | Self::Resumed | Self::Stopping => RunStatus::Running,
            Self::Succeeded => RunStatus::Succeeded,
            Self::Failed => RunStatus::Failed,
            Self::Stopped | Self::Canceled | Self::Superseded | Self::Abandoned => {
                RunStatus::Cancelled
            }
        }
    }
}

/// A "CodePipeline Pipeline Execution State Change" event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineExecutionEvent {
    /// EventBridge event id (for idempotency).
    pub event_id: String,
    /// When the change happened (the event's `time`).
    pub time: DateTime<Utc>,
    /// AWS region of the event.
    pub region: Option<String>,
    /// Pipeline name (`detail.pipeline`).
    pub pipeline: String,
    /// Pipeline execution id (`detail.execution-id`).
    pub execution_id: String,
    /// The new state (`detail.state`).
    pub state: PipelineState,
    /// `pipeline-execution-attempt`, when the event carries it.
    pub attempt: Option<u32>,
    /// `execution-trigger.trigger-type` (`Webhook`, `StartPipelineExecution` ...).
    pub trigger_type: Option<String>,
}

/// A "CodePipeline Stage Execution State Change" event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageEvent {
    /// EventBridge event id (`id`), for idempotency.
    pub event_id: String,
    /// When the change happened (the event's `time`).
    pub time: DateTime<Utc>,
    /// Pipeline name (`detail.pipeline`).
    pub pipeline: String,
    /// Pipeline execution id (`detail.execution-id`).
    pub execution_id: String,
    /// Stage name (`detail.stage`).
    pub stage: String,
    /// The new state (`detail.state`).
    pub state: PipelineState,
    /// `detail.pipeline-execution-attempt`, when the event carries it.
    pub attempt: Option<u32>,
}

/// A "CodePipeline Action Execution State Change" event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionEvent {
    /// EventBridge event id (`id`), for idempotency.
    pub event_id: String,
    /// When the change happened (the event's `time`).
    pub time: DateTime<Utc>,
    /// Pipeline name (`detail.pipeline`).
    pub pipeline: String,
    /// Pipeline execution id (`detail.execution-id`).
    pub execution_id: String,
    /// Stage name (`detail.stage`).
    pub stage: String,
    /// Action name (`detail.action`).
    pub action: String,
    /// The new state (`detail.state`).
    pub state: PipelineState,
    /// `detail.pipeline-execution-attempt`, when the event carries it.
    pub attempt: Option<u32>,
    /// `type.category`: `Source`, `Build`, `Test`, `Deploy`, `Approval`, `Invoke`.
    pub category: Option<String>,
    /// `type.provider`: `CodeBuild`, `CodeStarSourceConnection` ...
    pub provider: Option<String>,
    /// `execution-result.external-execution-id`: the commit of a source
    /// action, the build id (`project:uuid`) of a CodeBuild action ...
    pub external_execution_id: Option<String>,
    /// `execution-result.external-execution-url`: a link to the action's work.
    pub external_execution_url: Option<String>,
    /// `execution-result.external-execution-summary`: for source actions a
    /// JSON object with the commit message, for CodeBuild the outcome.
    pub external_execution_summary: Option<String>,
    /// `execution-result.error-code` of a failed action (`JobFailed` ...).
    pub error_code: Option<String>,
}

/// One phase of a CodeBuild build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildPhase {
    /// `phase-type`: `SUBMITTED`, `QUEUED`, `PROVISIONING`, `BUILD` ...
    pub phase: String,
    /// `phase-status`: `SUCCEEDED`, `FAILED`, `FAULT`, `TIMED_OUT` ...
    pub status: Option<String>,
    /// `start-time`.
    pub started_at: Option<DateTime<Utc>>,
    /// `end-time` (absent for the phase in progress and `COMPLETED`).
    pub finished_at: Option<DateTime<Utc>>,
    /// `duration-in-seconds`.
    pub duration_s: Option<f64>,
}

/// A "CodeBuild Build State Change" event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeBuildEvent {
    /// EventBridge event id (`id`), for idempotency.
    pub event_id: String,
    /// When the change happened (the event's `time`).
    pub time: DateTime<Utc>,
    /// AWS region of the event.
    pub region: Option<String>,
    /// CodeBuild project name (`detail.project-name`).
    pub project: String,
    /// The build id as CodePipeline names it: `project:uuid`.
    pub build_id: String,
    /// `build-status`: `IN_PROGRESS`, `SUCCEEDED`, `FAILED`, `FAULT`,
    /// `STOPPED`, `TIMED_OUT`.
    pub status: String,
    /// `additional-information.build-complete`.
    pub complete: bool,
    /// `additional-information.initiator`: `codepipeline/<pipeline>` for
    /// builds a pipeline started, a user or service name otherwise.
    pub initiator: Option<String>,
    /// `additional-information.build-start-time`.
    pub started_at: Option<DateTime<Utc>>,
    /// `additional-information.phases`, in the order CodeBuild lists them.
    pub phases: Vec<BuildPhase>,
    /// `additional-information.logs.deep-link`: the build's CloudWatch log.
    pub log_url: Option<String>,
    /// `additional-information.source-version`: a commit, branch or object version.
    pub source_version: Option<String>,
}

impl CodeBuildEvent {
    /// The pipeline that started this build, when a pipeline did.
    pub fn initiating_pipeline(&self) -> Option<&str> {
        self.initiator
            .as_deref()
            .and_then(|i| i.strip_prefix("codepipeline/"))
            .filter(|p| !p.is_empty())
    }

    /// pipemedic's status for the build.
    pub fn run_status(&self) -> RunStatus {
        codebuild_status(&self.status).unwrap_or(RunStatus::Running)
    }

    /// When the build ended: the end of its last phase, else the start of
    /// its `COMPLETED` phase, else the event time (final builds only).
    pub fn finished_at(&self) -> Option<DateTime<Utc>> {
        if !self.complete && !self.run_status().is_final() {
            return None;
        }
        let last_end = self.phases.iter().filter_map(|p| p.finished_at).max();
        let completed = self
            .phases
            .iter()
            .find(|p| p.phase == "COMPLETED")
            .and_then(|p| p.started_at);
        Some(last_end.max(completed).unwrap_or(self.time))
    }
}

/// One EventBridge event, as pipemedic reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AwsEvent {
    /// "CodePipeline Pipeline Execution State Change".
    PipelineExecution(PipelineExecutionEvent),
    /// "CodePipeline Stage Execution State Change".
    Stage(StageEvent),
    /// "CodePipeline Action Execution State Change".
    Action(ActionEvent),
    /// "CodeBuild Build State Change".
    CodeBuild(CodeBuildEvent),
    /// Any other `detail-type` (CodeBuild phase changes, other services);
    /// acknowledged and not stored.
    Ignored {
        /// EventBridge event id (`id`).
        event_id: String,
        /// The event's `detail-type`.
        detail_type: String,
    },
}

impl AwsEvent {
    /// The EventBridge event id (`id`), for idempotent processing.
    pub fn event_id(&self) -> &str {
        match self {
            Self::PipelineExecution(e) => &e.event_id,
            Self::Stage(e) => &e.event_id,
            Self::Action(e) => &e.event_id,
            Self::CodeBuild(e) => &e.event_id,
            Self::Ignored { event_id, .. } => event_id,
        }
    }

    /// Pipeline name and execution id of a CodePipeline event: the key of
    /// its [`ExecutionAssembly`]. `None` for CodeBuild and ignored events.
    pub fn execution_key(&self) -> Option<(&str, &str)> {
        match self {
            Self::PipelineExecution(e) => Some((&e.pipeline, &e.execution_id)),
            Self::Stage(e) => Some((&e.pipeline, &e.execution_id)),
            Self::Action(e) => Some((&e.pipeline, &e.execution_id)),
            Self::CodeBuild(_) | Self::Ignored { .. } => None,
        }
    }
}

/// Parses one EventBridge event as delivered by an API destination (the
/// whole event as the body).
pub fn parse_eventbridge(body: &[u8]) -> Result<AwsEvent, AdapterError> {
    let value = parse_json(body)?;
    let root = Obj::root(&value)?;
    let detail_type = root.str("detail-type")?;
    let event_id = root.id("id")?;
    let known = [
        PIPELINE_EXECUTION,
        STAGE_EXECUTION,
        ACTION_EXECUTION,
        CODEBUILD_BUILD,
    ];
    if !known.contains(&detail_type) {
        return Ok(AwsEvent::Ignored {
            event_id,
            detail_type: detail_type.to_string(),
        });
    }
    let time = root.time("time")?;
    let region = root.opt_str("region")?.map(str::to_string);
    let detail = root.obj("detail")?;
    let d = detail.obj();
    if detail_type == CODEBUILD_BUILD {
        return parse_codebuild(event_id, time, region, d).map(AwsEvent::CodeBuild);
    }
    let pipeline = d.str("pipeline")?.to_string();
    let execution_id = d.str("execution-id")?.to_string();
    let state = state_field(d, "state")?;
    let attempt = match d.opt_u64("pipeline-execution-attempt")? {
        Some(n) if n >= 1 && n <= u64::from(u32::MAX) => Some(n as u32),
        Some(n) => {
            return Err(AdapterError::shape(
                d.path_of("pipeline-execution-attempt"),
                format!("must be 1 or more, got {n}"),
            ))
        }
        None => None,
    };
    Ok(match detail_type {
        PIPELINE_EXECUTION => {
            let trigger_type = match d.opt_obj("execution-trigger")? {
                Some(t) => t.obj().opt_str("trigger-type")?.map(str::to_string),
                None => None,
            };
            AwsEvent::PipelineExecution(PipelineExecutionEvent {
                event_id,
                time,
                region,
                pipeline,
                execution_id,
                state,
                attempt,
                trigger_type,
            })
        }
        STAGE_EXECUTION => AwsEvent::Stage(StageEvent {
            event_id,
            time,
            pipeline,
            execution_id,
            stage: d.str("stage")?.to_string(),
            state,
            attempt,
        }),
        _ => {
            let (category, provider) = match d.opt_obj("type")? {
                Some(t) => {
                    let t = t.obj();
                    (
                        t.opt_str("category")?.map(str::to_string),
                        t.opt_str("provider")?.map(str::to_string),
                    )
                }
                None => (None, None),
            };
            let result = d.opt_obj("execution-result")?;
            let result_str = |key: &str| -> Result<Option<String>, AdapterError> {
                match &result {
                    Some(r) => Ok(r.obj().opt_str(key)?.map(str::to_string)),
                    None => Ok(None),
                }
            };
            AwsEvent::Action(ActionEvent {
                event_id,
                time,
                pipeline,
                execution_id,
                stage: d.str("stage")?.to_string(),
                action: d.str("action")?.to_string(),
                state,
                attempt,
                category,
                provider,
                external_execution_id: result_str("external-execution-id")?,
                external_execution_url: result_str("external-execution-url")?,
                external_execution_summary: result_str("external-execution-summary")?,
                error_code: result_str("error-code")?,
            })
        }
    })
}

fn state_field(d: Obj<'_>, key: &str) -> Result<PipelineState, AdapterError> {
    let raw = d.str(key)?;
    PipelineState::parse(raw).ok_or_else(|| {
        AdapterError::shape(
            d.path_of(key),
            format!(
                "unknown state {raw:?} (expected STARTED, SUCCEEDED, FAILED, RESUMED, \
                 STOPPING, STOPPED, CANCELED, SUPERSEDED or ABANDONED)"
            ),
        )
    })
}

fn codebuild_status(raw: &str) -> Option<RunStatus> {
    Some(match raw {
        "IN_PROGRESS" => RunStatus::Running,
        "SUCCEEDED" => RunStatus::Succeeded,
        "FAILED" | "FAULT" | "TIMED_OUT" => RunStatus::Failed,
        "STOPPED" => RunStatus::Cancelled,
        _ => return None,
    })
}

/// `arn:aws:codebuild:<region>:<account>:build/<project>:<uuid>` to
/// `<project>:<uuid>`, the form CodePipeline uses.
fn short_build_id(raw: &str) -> &str {
    raw.rsplit_once(":build/").map_or(raw, |(_, id)| id)
}

fn parse_codebuild(
    event_id: String,
    time: DateTime<Utc>,
    region: Option<String>,
    d: Obj<'_>,
) -> Result<CodeBuildEvent, AdapterError> {
    let status = d.str("build-status")?;
    if codebuild_status(status).is_none() {
        return Err(AdapterError::shape(
            d.path_of("build-status"),
            format!(
                "unknown build status {status:?} (expected IN_PROGRESS, SUCCEEDED, FAILED, \
                 FAULT, STOPPED or TIMED_OUT)"
            ),
        ));
    }
    let mut event = CodeBuildEvent {
        event_id,
        time,
        region,
        project: d.str("project-name")?.to_string(),
        build_id: short_build_id(d.str("build-id")?).to_string(),
        status: status.to_string(),
        complete: false,
        initiator: None,
        started_at: None,
        phases: Vec::new(),
        log_url: None,
        source_version: None,
    };
    if let Some(info) = d.opt_obj("additional-information")? {
        let info = info.obj();
        event.complete = info.opt_bool("build-complete")?.unwrap_or(false);
        event.initiator = info.opt_str("initiator")?.map(str::to_string);
        event.started_at = info.opt_time("build-start-time")?;
        event.source_version = info.opt_str("source-version")?.map(str::to_string);
        if let Some(logs) = info.opt_obj("logs")? {
            event.log_url = logs.obj().opt_str("deep-link")?.map(str::to_string);
        }
        for phase in info.array("phases")? {
            let p = phase.obj();
            event.phases.push(BuildPhase {
                phase: p.str("phase-type")?.to_string(),
                status: p.opt_str("phase-status")?.map(str::to_string),
                started_at: p.opt_time("start-time")?,
                finished_at: p.opt_time("end-time")?,
                duration_s: p.opt_f64("duration-in-seconds")?,
            });
        }
    }
    Ok(event)
}

fn looks_like_commit(s: &str) -> bool {
    (7..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn phase_failed(phase: &BuildPhase) -> bool {
    matches!(
        phase.status.as_deref(),
        Some("FAILED" | "FAULT" | "TIMED_OUT" | "CLIENT_ERROR")
    )
}

/// A standalone CodeBuild build (one no pipeline started) as a run: the
/// project is the pipeline, the build id (`project:uuid`) the run id, and
/// each phase that has a start a stage (`SUBMITTED`, `QUEUED`,
/// `PROVISIONING`, ..., `BUILD`, ...). The first failed phase is the run's
/// `stage`; a hexadecimal `source-version` is the commit.
pub fn codebuild_run(event: &CodeBuildEvent) -> Run {
    let mut run = Run::new(&event.project, &event.build_id, event.run_status());
    run.started_at = event
        .started_at
        .or_else(|| event.phases.iter().filter_map(|p| p.started_at).min());
    run.finished_at = event.finished_at();
    run.commit = event
        .source_version
        .as_deref()
        .filter(|v| looks_like_commit(v))
        .map(str::to_string);
    run.log_url = event.log_url.clone();
    run.stages = event
        .phases
        .iter()
        .filter(|p| p.phase != "COMPLETED" && p.started_at.is_some())
        .map(|p| StageTiming {
            name: p.phase.clone(),
            status: p
                .status
                .as_deref()
                .and_then(codebuild_status)
                .or_else(|| p.status.as_deref().and_then(RunStatus::parse_loose)),
            started_at: p.started_at,
            finished_at: p.finished_at,
        })
        .collect();
    if run.status == RunStatus::Failed {
        run.stage = event
            .phases
            .iter()
            .find(|p| phase_failed(p))
            .map(|p| p.phase.clone());
    }
    run
}

/// Why an event cannot be applied to an [`ExecutionAssembly`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssemblyError {
    /// The event belongs to another pipeline execution.
    #[error("event is for {pipeline}/{execution_id}, not this execution")]
    OtherExecution {
        /// The event's pipeline.
        pipeline: String,
        /// The event's execution id.
        execution_id: String,
    },
    /// The CodeBuild build was not started by this pipeline.
    #[error("build {build_id} was not started by this pipeline")]
    OtherBuild {
        /// The build's id (`project:uuid`).
        build_id: String,
    },
}

/// One state change at one time, as recorded by an assembly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Transition {
    state: PipelineState,
    time: DateTime<Utc>,
    event_id: String,
}

impl Transition {
    /// Chronological order; at the same second an end state comes after a
    /// start, so that timestamps of one-second resolution still order.
    fn order_key(&self) -> (DateTime<Utc>, bool, &str) {
        (self.time, self.state.is_final(), &self.event_id)
    }
}

/// What an assembly keeps of one action event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ActionRecord {
    stage: String,
    action: String,
    #[serde(flatten)]
    transition: Transition,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    external_execution_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    external_execution_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    external_execution_summary: Option<String>,
}

/// The events of one CodePipeline execution gathered so far, in any order,
/// and the [`Run`] they add up to.
///
/// Serialisable (JSON) so the store can keep it between events, keyed by
/// [`ExecutionAssembly::pipeline`] + [`ExecutionAssembly::execution_id`].
/// Applying the same events in any order, any number of times, gives the
/// same assembly output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionAssembly {
    /// The pipeline's name; the run's pipeline.
    pub pipeline: String,
    /// The execution id; the run's id.
    pub execution_id: String,
    #[serde(default)]
    attempt: Option<u32>,
    #[serde(default)]
    execution: Vec<Transition>,
    #[serde(default)]
    stages: BTreeMap<String, Vec<Transition>>,
    #[serde(default)]
    actions: Vec<ActionRecord>,
    /// Latest event of each CodeBuild build of this pipeline, by build id.
    #[serde(default)]
    builds: BTreeMap<String, CodeBuildEvent>,
    /// Event ids applied so far.
    #[serde(default)]
    seen: BTreeSet<String>,
}

impl ExecutionAssembly {
    /// An empty assembly for one execution.
    pub fn new(pipeline: impl Into<String>, execution_id: impl Into<String>) -> Self {
        Self {
            pipeline: pipeline.into(),
            execution_id: execution_id.into(),
            attempt: None,
            execution: Vec::new(),
            stages: BTreeMap::new(),
            actions: Vec::new(),
            builds: BTreeMap::new(),
            seen: BTreeSet::new(),
        }
    }

    /// An empty assembly for the execution a CodePipeline event belongs to.
    pub fn for_event(event: &AwsEvent) -> Option<Self> {
        event
            .execution_key()
            .map(|(pipeline, execution_id)| Self::new(pipeline, execution_id))
    }

    fn check(&self, pipeline: &str, execution_id: &str) -> Result<(), AssemblyError> {
        if pipeline == self.pipeline && execution_id == self.execution_id {
            Ok(())
        } else {
            Err(AssemblyError::OtherExecution {
                pipeline: pipeline.to_string(),
                execution_id: execution_id.to_string(),
            })
        }
    }

    fn note_attempt(&mut self, attempt: Option<u32>) {
        if let Some(a) = attempt {
            self.attempt = Some(self.attempt.map_or(a, |seen| seen.max(a)));
        }
    }

    /// Records one event. Returns `Ok(true)` when the event was new and
    /// `Ok(false)` when it was already applied or carries nothing for an
    /// assembly ([`AwsEvent::Ignored`]). Events of another execution, and
    /// builds another pipeline started, are refused.
    pub fn apply(&mut self, event: &AwsEvent) -> Result<bool, AssemblyError> {
        match event {
            AwsEvent::Ignored { .. } => return Ok(false),
            AwsEvent::PipelineExecution(e) => self.check(&e.pipeline, &e.execution_id)?,
            AwsEvent::Stage(e) => self.check(&e.pipeline, &e.execution_id)?,
            AwsEvent::Action(e) => self.check(&e.pipeline, &e.execution_id)?,
            AwsEvent::CodeBuild(e) => {
                if e.initiating_pipeline() != Some(self.pipeline.as_str()) {
                    return Err(AssemblyError::OtherBuild {
                        build_id: e.build_id.clone(),
                    });
                }
            }
        }
        if !self.seen.insert(event.event_id().to_string()) {
            return Ok(false);
        }
        match event {
            AwsEvent::PipelineExecution(e) => {
                self.note_attempt(e.attempt);
                self.execution.push(Transition {
                    state: e.state,
                    time: e.time,
                    event_id: e.event_id.clone(),
                });
            }
            AwsEvent::Stage(e) => {
                self.note_attempt(e.attempt);
                self.stages
                    .entry(e.stage.clone())
                    .or_default()
                    .push(Transition {
                        state: e.state,
                        time: e.time,
                        event_id: e.event_id.clone(),
                    });
            }
            AwsEvent::Action(e) => {
                self.note_attempt(e.attempt);
                self.actions.push(ActionRecord {
                    stage: e.stage.clone(),
                    action: e.action.clone(),
                    transition: Transition {
                        state: e.state,
                        time: e.time,
                        event_id: e.event_id.clone(),
                    },
                    category: e.category.clone(),
                    external_execution_id: e.external_execution_id.clone(),
                    external_execution_url: e.external_execution_url.clone(),
                    external_execution_summary: e.external_execution_summary.clone(),
                });
            }
            AwsEvent::CodeBuild(e) => {
                let newer = self.builds.get(&e.build_id).is_none_or(|old| {
                    (e.complete, e.time, &e.event_id) > (old.complete, old.time, &old.event_id)
                });
                if newer {
                    self.builds.insert(e.build_id.clone(), e.clone());
                }
            }
            AwsEvent::Ignored { .. } => {}
        }
        Ok(true)
    }

    /// One of this execution's actions ran the CodeBuild build `build_id`
    /// (`project:uuid` or the build ARN).
    pub fn claims_build(&self, build_id: &str) -> bool {
        let id = short_build_id(build_id);
        self.actions
            .iter()
            .any(|a| a.external_execution_id.as_deref() == Some(id))
    }

    /// The latest execution state, by event time.
    pub fn state(&self) -> Option<PipelineState> {
        latest(&self.execution).map(|t| t.state)
    }

    /// The execution reached an end state (SUCCEEDED, FAILED, STOPPED,
    /// CANCELED, SUPERSEDED).
    pub fn is_final(&self) -> bool {
        self.state().is_some_and(PipelineState::is_final)
    }

    /// The final run, once the execution has ended; `None` while it runs.
    pub fn to_run(&self) -> Option<Run> {
        self.is_final().then(|| self.snapshot())
    }

    /// The run as far as it is known: `running` until the execution's end
    /// event has arrived.
    pub fn snapshot(&self) -> Run {
        let state = self.state();
        let status = state.map_or(RunStatus::Running, PipelineState::status);
        let mut run = Run::new(&self.pipeline, &self.execution_id, status);
        run.attempt = self.attempt.unwrap_or(1);
        let end = latest(&self.execution).filter(|t| t.state.is_final());
        run.finished_at = end.map(|t| t.time);
        run.started_at = self.started_at(end.map(|t| t.time));

        let mut failed: Vec<(DateTime<Utc>, String)> = Vec::new();
        for (name, transitions) in &self.stages {
            let Some(timing) = stage_timing(name, transitions, run.finished_at.is_some()) else {
                continue;
            };
            let started_at = timing
                .started_at
                .or_else(|| self.first_action_time(name))
                .filter(|start| timing.finished_at.is_none_or(|end| *start <= end));
            let timing = StageTiming {
                started_at,
                ..timing
            };
            if run.attempt > 1 {
                // A retried execution counts only the stages this attempt ran.
                if let (Some(start), Some(run_start)) = (timing.started_at, run.started_at) {
                    if start < run_start {
                        continue;
                    }
                }
            }
            if timing.status == Some(RunStatus::Failed) {
                if let Some(at) = timing.finished_at {
                    failed.push((at, name.clone()));
                }
            }
            run.stages.push(timing);
        }
        sort_stages(&mut run.stages);
        if status == RunStatus::Failed {
            failed.sort();
            run.stage = failed.into_iter().next().map(|(_, name)| name).or_else(|| {
                self.latest_actions()
                    .into_iter()
                    .find(|a| a.transition.state == PipelineState::Failed)
                    .map(|a| a.stage.clone())
            });
        }

        let actions = self.latest_actions();
        if let Some(source) = actions.iter().find(|a| {
            a.category.as_deref() == Some("Source")
                && a.external_execution_id
                    .as_deref()
                    .is_some_and(looks_like_commit)
        }) {
            run.commit = source.external_execution_id.clone();
            run.commit_message = source
                .external_execution_summary
                .as_deref()
                .and_then(commit_message);
        }

        for action in &actions {
            let Some(build) = action
                .external_execution_id
                .as_deref()
                .and_then(|id| self.builds.get(id))
            else {
                continue;
            };
            for phase in &build.phases {
                let seconds = phase.duration_s.or_else(|| {
                    let (s, e) = (phase.started_at?, phase.finished_at?);
                    let ms = (e - s).num_milliseconds();
                    (ms >= 0).then(|| ms as f64 / 1000.0)
                });
                if let Some(seconds) = seconds.filter(|_| phase.phase != "COMPLETED") {
                    run.metrics.insert(
                        format!(
                            "codebuild.{}.{}_s",
                            action.action,
                            phase.phase.to_ascii_lowercase()
                        ),
                        seconds,
                    );
                }
            }
            if action.transition.state == PipelineState::Failed && run.log_url.is_none() {
                run.log_url = build.log_url.clone();
            }
        }
        if run.log_url.is_none() {
            run.log_url = actions
                .iter()
                .find(|a| a.transition.state == PipelineState::Failed)
                .and_then(|a| a.external_execution_url.clone());
        }
        run
    }

    fn started_at(&self, end: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        let mut ordered: Vec<&Transition> = self.execution.iter().collect();
        ordered.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        let resumed = ordered
            .iter()
            .rfind(|t| t.state == PipelineState::Resumed && end.is_none_or(|e| t.time <= e));
        let started = ordered.iter().find(|t| t.state == PipelineState::Started);
        let chosen = if self.attempt.unwrap_or(1) > 1 {
            resumed.or(started)
        } else {
            started
        };
        chosen.map(|t| t.time).or_else(|| {
            // No start event seen: the earliest thing that happened.
            self.stages
                .values()
                .flatten()
                .chain(self.actions.iter().map(|a| &a.transition))
                .map(|t| t.time)
                .min()
        })
    }

    fn first_action_time(&self, stage: &str) -> Option<DateTime<Utc>> {
        self.actions
            .iter()
            .filter(|a| a.stage == stage && a.transition.state.is_start())
            .map(|a| a.transition.time)
            .min()
    }

    /// The latest record of each action, ordered by stage start then time.
    fn latest_actions(&self) -> Vec<&ActionRecord> {
        let mut by_name: BTreeMap<(&str, &str), &ActionRecord> = BTreeMap::new();
        for a in &self.actions {
            let key = (a.stage.as_str(), a.action.as_str());
            let newer = by_name.get(&key).is_none_or(|old| {
                // A result-bearing record wins over a bare one at the same time.
                (a.transition.order_key(), a.external_execution_id.is_some())
                    > (
                        old.transition.order_key(),
                        old.external_execution_id.is_some(),
                    )
            });
            if newer {
                by_name.insert(key, a);
            }
        }
        let mut out: Vec<&ActionRecord> = by_name.into_values().collect();
        out.sort_by(|a, b| {
            a.transition
                .order_key()
                .cmp(&b.transition.order_key())
                .then_with(|| a.stage.cmp(&b.stage))
                .then_with(|| a.action.cmp(&b.action))
        });
        out
    }
}

fn latest(transitions: &[Transition]) -> Option<&Transition> {
    transitions
        .iter()
        .max_by(|a, b| a.order_key().cmp(&b.order_key()))
}

/// The timing of one stage from its transitions: it ends at its latest
/// end state and starts at the latest start before that (a retried stage
/// counts its last try). A stage with no end yet is running, or of unknown
/// outcome once the execution has ended.
fn stage_timing(name: &str, transitions: &[Transition], run_ended: bool) -> Option<StageTiming> {
    let last = latest(transitions)?;
    let mut timing = StageTiming {
        name: name.to_string(),
        status: None,
        started_at: None,
        finished_at: None,
    };
    let latest_start_before = |limit: Option<DateTime<Utc>>| {
        transitions
            .iter()
            .filter(|t| t.state.is_start() && limit.is_none_or(|l| t.time <= l))
            .max_by(|a, b| a.order_key().cmp(&b.order_key()))
            .map(|t| t.time)
    };
    if last.state.is_final() {
        timing.status = Some(last.state.status());
        timing.finished_at = Some(last.time);
        timing.started_at = latest_start_before(Some(last.time));
    } else {
        timing.status = (!run_ended).then_some(RunStatus::Running);
        timing.started_at = latest_start_before(None);
    }
    Some(timing)
}

/// The commit message in a source action's summary: CodeStar connections
/// send `{"ProviderType": ..., "CommitMessage": ...}`; other providers send
/// the message itself.
fn commit_message(summary: &str) -> Option<String> {
    let message = match serde_json::from_str::<serde_json::Value>(summary) {
        Ok(serde_json::Value::Object(map)) => map
            .get("CommitMessage")
            .and_then(|m| m.as_str())
            .map(str::to_string)?,
        _ => summary.to_string(),
    };
    let message = message.trim_end().to_string();
    (!message.is_empty()).then_some(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::payload::AdapterErrorKind;

    const FAILED_EXECUTION: &str =
        include_str!("../../tests/fixtures/aws/codepipeline-failed-execution.json");
    const PIPELINE_BUILD_FAILED: &str =
        include_str!("../../tests/fixtures/aws/codebuild-pipeline-test-failed.json");
    const STANDALONE_BUILD: &str =
        include_str!("../../tests/fixtures/aws/codebuild-standalone-succeeded.json");

    const EXECUTION: &str = "3137f7cb-7cf7-4f0f-8b0c-5e0a1c2d3e4f";

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// Each event of the failed execution, as the bytes an API destination posts.
    fn execution_bodies() -> Vec<Vec<u8>> {
        let events: Vec<serde_json::Value> = serde_json::from_str(FAILED_EXECUTION).unwrap();
        events
            .iter()
            .map(|e| serde_json::to_vec(e).unwrap())
            .collect()
    }

    fn execution_events() -> Vec<AwsEvent> {
        let mut events: Vec<AwsEvent> = execution_bodies()
            .iter()
            .map(|b| parse_eventbridge(b).unwrap())
            .collect();
        events.push(parse_eventbridge(PIPELINE_BUILD_FAILED.as_bytes()).unwrap());
        events
    }

    fn assemble(events: &[AwsEvent]) -> ExecutionAssembly {
        let mut assembly = ExecutionAssembly::new("checkout-service", EXECUTION);
        for event in events {
            assembly.apply(event).unwrap();
        }
        assembly
    }

    /// A deterministic shuffle (linear congruential generator).
    fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
        let mut out = items.to_vec();
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        for i in (1..out.len()).rev() {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let j = ((state >> 33) % (i as u64 + 1)) as usize;
            out.swap(i, j);
        }
        out
    }

    fn edited(fixture: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_str(fixture).unwrap();
        edit(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn each_detail_type_parses() {
        let events = execution_events();
        assert_eq!(events.len(), 15);
        match &events[0] {
            AwsEvent::PipelineExecution(e) => {
                assert_eq!(e.pipeline, "checkout-service");
                assert_eq!(e.execution_id, EXECUTION);
                assert_eq!(e.state, PipelineState::Started);
                assert_eq!(e.time, t("2026-11-20T10:00:00Z"));
                assert_eq!(e.attempt, Some(1));
                assert_eq!(e.trigger_type.as_deref(), Some("Webhook"));
                assert_eq!(e.event_id, "6f0c1a2b-0000-4000-8000-000000000001");
            }
            other => panic!("{other:?}"),
        }
        match &events[1] {
            AwsEvent::Stage(e) => {
                assert_eq!(
                    (e.stage.as_str(), e.state),
                    ("Source", PipelineState::Started)
                );
            }
            other => panic!("{other:?}"),
        }
        match &events[11] {
            AwsEvent::Action(e) => {
                assert_eq!(e.stage, "Test");
                assert_eq!(e.action, "UnitTests");
                assert_eq!(e.state, PipelineState::Failed);
                assert_eq!(e.provider.as_deref(), Some("CodeBuild"));
                assert_eq!(
                    e.external_execution_id.as_deref(),
                    Some("checkout-service-test:5f1e7b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b")
                );
                assert_eq!(e.error_code.as_deref(), Some("JobFailed"));
            }
            other => panic!("{other:?}"),
        }
        match &events[14] {
            AwsEvent::CodeBuild(e) => {
                assert_eq!(e.project, "checkout-service-test");
                assert_eq!(
                    e.build_id,
                    "checkout-service-test:5f1e7b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
                );
                assert_eq!(e.initiating_pipeline(), Some("checkout-service"));
                assert_eq!(e.run_status(), RunStatus::Failed);
                assert_eq!(e.started_at, Some(t("2026-11-20T10:03:39Z")));
                assert_eq!(e.phases.len(), 11);
            }
            other => panic!("{other:?}"),
        }
        let ids: BTreeSet<&str> = events.iter().map(AwsEvent::event_id).collect();
        assert_eq!(ids.len(), events.len(), "event ids are distinct");
    }

    fn assert_failed_run(run: &Run) {
        assert_eq!(run.pipeline, "checkout-service");
        assert_eq!(run.run_id, EXECUTION);
        assert_eq!(run.attempt, 1);
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!(run.started_at, Some(t("2026-11-20T10:00:00Z")));
        assert_eq!(run.finished_at, Some(t("2026-11-20T10:07:12Z")));
        assert_eq!(run.duration_s(), Some(432.0));
        assert_eq!(run.stage.as_deref(), Some("Test"));
        assert_eq!(
            run.commit.as_deref(),
            Some("a1b2c3d4e5f60718293a4b5c6d7e8f9012345678")
        );
        assert_eq!(
            run.commit_message.as_deref(),
            Some("Retry payments client on 503")
        );
        let stages: Vec<_> = run
            .stages
            .iter()
            .map(|s| (s.name.as_str(), s.status, s.duration_s()))
            .collect();
        assert_eq!(
            stages,
            [
                ("Source", Some(RunStatus::Succeeded), Some(4.0)),
                ("Build", Some(RunStatus::Succeeded), Some(211.0)),
                ("Test", Some(RunStatus::Failed), Some(213.0)),
            ]
        );
        assert_eq!(run.metrics.get("codebuild.UnitTests.build_s"), Some(&137.0));
        assert_eq!(
            run.metrics.get("codebuild.UnitTests.provisioning_s"),
            Some(&30.0)
        );
        assert_eq!(
            run.log_url.as_deref(),
            Some(
                "https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logEvent:\
                 group=/aws/codebuild/checkout-service-test;\
                 stream=5f1e7b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
            )
        );
        assert!(run.validate("").is_empty(), "{:?}", run.validate(""));
        let samples = run.metric_samples();
        assert!(samples
            .iter()
            .any(|s| s.metric == "stage.Test.duration_s" && s.value == 213.0));
    }

    #[test]
    fn failed_execution_in_order() {
        let assembly = assemble(&execution_events());
        assert!(assembly.is_final());
        assert!(assembly.claims_build(
            "arn:aws:codebuild:eu-west-1:123456789012:build/checkout-service-test:5f1e7b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
        ));
        assert_failed_run(&assembly.to_run().unwrap());
    }

    #[test]
    fn failed_execution_in_any_order_gives_the_same_run() {
        let events = execution_events();
        let expected = assemble(&events).to_run().unwrap();
        let mut reversed = events.clone();
        reversed.reverse();
        let mut orders = vec![reversed];
        orders.extend((1..=40).map(|seed| shuffled(&events, seed)));
        for order in orders {
            let run = assemble(&order).to_run().unwrap();
            assert_eq!(run, expected);
        }
        assert_failed_run(&expected);
    }

    #[test]
    fn assembly_survives_a_round_trip_through_the_store_between_events() {
        let events = shuffled(&execution_events(), 7);
        let mut stored =
            serde_json::to_string(&ExecutionAssembly::new("checkout-service", EXECUTION)).unwrap();
        for event in &events {
            let mut assembly: ExecutionAssembly = serde_json::from_str(&stored).unwrap();
            assembly.apply(event).unwrap();
            stored = serde_json::to_string(&assembly).unwrap();
        }
        let assembly: ExecutionAssembly = serde_json::from_str(&stored).unwrap();
        assert_failed_run(&assembly.to_run().unwrap());
    }

    #[test]
    fn no_final_run_before_the_execution_ends_and_redeliveries_change_nothing() {
        let events = execution_events();
        let mut assembly = ExecutionAssembly::for_event(&events[0]).unwrap();
        // Everything except the pipeline's FAILED event.
        for event in events.iter().filter(
            |e| !matches!(e, AwsEvent::PipelineExecution(p) if p.state == PipelineState::Failed),
        ) {
            assert!(assembly.apply(event).unwrap());
        }
        assert!(!assembly.is_final());
        assert_eq!(assembly.to_run(), None);
        let running = assembly.snapshot();
        assert_eq!(running.status, RunStatus::Running);
        assert_eq!(running.finished_at, None);
        assert!(running.metric_samples().is_empty());

        let before = assembly.clone();
        for event in &events[..5] {
            assert!(!assembly.apply(event).unwrap());
        }
        assert_eq!(assembly, before);
        let last = events.iter().find(
            |e| matches!(e, AwsEvent::PipelineExecution(p) if p.state == PipelineState::Failed),
        );
        assert!(assembly.apply(last.unwrap()).unwrap());
        assert_failed_run(&assembly.to_run().unwrap());
    }

    #[test]
    fn other_executions_and_builds_are_refused() {
        let mut assembly = ExecutionAssembly::new("checkout-service", "another-execution");
        let events = execution_events();
        assert!(matches!(
            assembly.apply(&events[0]),
            Err(AssemblyError::OtherExecution { .. })
        ));
        let standalone = parse_eventbridge(STANDALONE_BUILD.as_bytes()).unwrap();
        assert!(matches!(
            assembly.apply(&standalone),
            Err(AssemblyError::OtherBuild { .. })
        ));
        // A build of this pipeline that no action of this execution ran is
        // kept but does not show in the run.
        assert!(assembly.apply(&events[14]).unwrap());
        assert!(assembly.snapshot().metrics.is_empty());
        assert!(
            !assembly.claims_build("checkout-service-test:5f1e7b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b")
        );
    }

    #[test]
    fn end_states_map_to_statuses() {
        for (state, status) in [
            ("SUCCEEDED", RunStatus::Succeeded),
            ("FAILED", RunStatus::Failed),
            ("STOPPED", RunStatus::Cancelled),
            ("SUPERSEDED", RunStatus::Cancelled),
            ("CANCELED", RunStatus::Cancelled),
        ] {
            let body = edited(FAILED_EXECUTION, |v| {
                v[13]["detail"]["state"] = state.into();
            });
            let all: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
            let end = parse_eventbridge(&serde_json::to_vec(&all[13]).unwrap()).unwrap();
            let start = parse_eventbridge(&serde_json::to_vec(&all[0]).unwrap()).unwrap();
            let mut assembly = ExecutionAssembly::for_event(&end).unwrap();
            assembly.apply(&end).unwrap();
            assembly.apply(&start).unwrap();
            let run = assembly.to_run().unwrap();
            assert_eq!(run.status, status, "{state}");
            assert_eq!(run.duration_s(), Some(432.0));
        }
    }

    #[test]
    fn retried_stage_counts_its_last_try() {
        let mut events = execution_events();
        let extra = [
            (PIPELINE_EXECUTION, None, "RESUMED", "10:20:00", 2),
            (STAGE_EXECUTION, Some("Test"), "STARTED", "10:20:01", 2),
            (STAGE_EXECUTION, Some("Test"), "SUCCEEDED", "10:23:01", 2),
            (PIPELINE_EXECUTION, None, "SUCCEEDED", "10:23:02", 2),
        ];
        for (i, (kind, stage, state, time, attempt)) in extra.into_iter().enumerate() {
            let mut detail = serde_json::json!({
                "pipeline": "checkout-service",
                "execution-id": EXECUTION,
                "state": state,
                "pipeline-execution-attempt": attempt,
            });
            if let Some(stage) = stage {
                detail["stage"] = stage.into();
            }
            let body = serde_json::json!({
                "id": format!("retry-{i}"),
                "detail-type": kind,
                "source": "aws.codepipeline",
                "time": format!("2026-11-20T{time}Z"),
                "detail": detail,
            });
            events.push(parse_eventbridge(&serde_json::to_vec(&body).unwrap()).unwrap());
        }
        for seed in [1, 2, 3] {
            let run = assemble(&shuffled(&events, seed)).to_run().unwrap();
            assert_eq!(run.status, RunStatus::Succeeded);
            assert_eq!(run.attempt, 2);
            assert_eq!(run.started_at, Some(t("2026-11-20T10:20:00Z")));
            assert_eq!(run.duration_s(), Some(182.0));
            assert_eq!(run.stage, None);
            let stages: Vec<_> = run
                .stages
                .iter()
                .map(|s| (s.name.as_str(), s.status, s.duration_s()))
                .collect();
            assert_eq!(stages, [("Test", Some(RunStatus::Succeeded), Some(180.0))]);
        }
    }

    #[test]
    fn standalone_codebuild_build_is_its_own_run() {
        let AwsEvent::CodeBuild(build) = parse_eventbridge(STANDALONE_BUILD.as_bytes()).unwrap()
        else {
            panic!("expected a CodeBuild event");
        };
        assert_eq!(build.initiating_pipeline(), None);
        let run = codebuild_run(&build);
        assert_eq!(run.pipeline, "nightly-report");
        assert_eq!(
            run.run_id,
            "nightly-report:8745a7a9-c340-456a-9166-edf953571b2e"
        );
        assert_eq!(run.status, RunStatus::Succeeded);
        assert_eq!(run.started_at, Some(t("2026-11-24T23:58:59Z")));
        assert_eq!(run.finished_at, Some(t("2026-11-25T00:00:55Z")));
        assert_eq!(run.duration_s(), Some(116.0));
        assert_eq!(
            run.commit.as_deref(),
            Some("9c4e2b7d1f3a5c6e8b0d2f4a6c8e0b1d3f5a7c9e")
        );
        assert_eq!(run.stage, None);
        assert_eq!(run.stages.len(), 10);
        let build_phase = run.stages.iter().find(|s| s.name == "BUILD").unwrap();
        assert_eq!(build_phase.duration_s(), Some(70.0));
        assert_eq!(build_phase.status, Some(RunStatus::Succeeded));
        assert!(run.log_url.is_some());
        assert!(run.validate("").is_empty());

        let AwsEvent::CodeBuild(failed) =
            parse_eventbridge(PIPELINE_BUILD_FAILED.as_bytes()).unwrap()
        else {
            panic!("expected a CodeBuild event");
        };
        let run = codebuild_run(&failed);
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!(run.stage.as_deref(), Some("BUILD"));
        assert_eq!(run.commit, None, "an S3 object version is not a commit");

        let body = edited(STANDALONE_BUILD, |v| {
            v["detail"]["build-status"] = "IN_PROGRESS".into();
            v["detail"]["additional-information"]["build-complete"] = false.into();
        });
        let AwsEvent::CodeBuild(running) = parse_eventbridge(&body).unwrap() else {
            panic!("expected a CodeBuild event");
        };
        let run = codebuild_run(&running);
        assert_eq!(run.status, RunStatus::Running);
        assert_eq!(run.finished_at, None);
    }

    #[test]
    fn other_detail_types_are_ignored_with_their_id() {
        let body = br#"{"version":"0","id":"ab12","detail-type":"CodeBuild Build Phase Change",
            "source":"aws.codebuild","time":"2026-11-20T10:00:00Z","detail":{}}"#;
        let event = parse_eventbridge(body).unwrap();
        assert_eq!(
            event,
            AwsEvent::Ignored {
                event_id: "ab12".into(),
                detail_type: "CodeBuild Build Phase Change".into()
            }
        );
        assert_eq!(event.event_id(), "ab12");
        assert_eq!(event.execution_key(), None);
        let mut assembly = ExecutionAssembly::new("p", "x");
        assert_eq!(assembly.apply(&event), Ok(false));
    }

    #[test]
    fn wrong_shape_names_the_field() {
        let bodies = execution_bodies();
        let one = |i: usize| String::from_utf8(bodies[i].clone()).unwrap();
        let cases: [(Vec<u8>, &str); 8] = [
            (
                edited(&one(0), |v| {
                    v["detail"].as_object_mut().unwrap().remove("execution-id");
                }),
                "detail.execution-id",
            ),
            (
                edited(&one(0), |v| v["detail"]["state"] = "EXPLODED".into()),
                "detail.state",
            ),
            (
                edited(&one(1), |v| {
                    v["detail"].as_object_mut().unwrap().remove("stage");
                }),
                "detail.stage",
            ),
            (
                edited(&one(11), |v| v["detail"]["execution-result"] = 5.into()),
                "detail.execution-result",
            ),
            (edited(&one(0), |v| v["time"] = "noon".into()), "time"),
            (
                edited(&one(0), |v| {
                    v.as_object_mut().unwrap().remove("id");
                }),
                "id",
            ),
            (
                edited(STANDALONE_BUILD, |v| {
                    v["detail"]["additional-information"]["phases"][3]["start-time"] =
                        "whenever".into();
                }),
                "detail.additional-information.phases[3].start-time",
            ),
            (
                edited(STANDALONE_BUILD, |v| {
                    v["detail"]["build-status"] = "MAYBE".into();
                }),
                "detail.build-status",
            ),
        ];
        for (body, field) in cases {
            let err = parse_eventbridge(&body).unwrap_err();
            assert_eq!(err.kind(), AdapterErrorKind::Shape, "{err}");
            assert_eq!(err.field_error().unwrap().field, field, "{err}");
        }
        let err = parse_eventbridge(br#"{"id": "1"}"#).unwrap_err();
        assert_eq!(err.field_error().unwrap().field, "detail-type");
    }

    #[test]
    fn malformed_body_is_a_400_kind_error() {
        let err = parse_eventbridge(b"{\"detail-type\": \"CodeBuild Build State Change\"\n,,}")
            .unwrap_err();
        assert_eq!(err.kind(), AdapterErrorKind::Malformed);
        assert_eq!(err.line_column(), Some((2, 2)));
    }
}
