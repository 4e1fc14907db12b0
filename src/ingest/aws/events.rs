//! The EventBridge events of CodePipeline and CodeBuild, parsed: the
//! event types ([`AwsEvent`] and its parts), [`parse_eventbridge`] and the
//! run of a standalone CodeBuild build ([`codebuild_run`]). Pure; the
//! assembly of one execution's events is in `assembly`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Run, RunStatus, StageTiming};
use crate::ingest::payload::{parse_json, AdapterError, Obj};

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
pub(super) fn short_build_id(raw: &str) -> &str {
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

pub(super) fn looks_like_commit(s: &str) -> bool {
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
            job_id: None,
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
