//! CodePipeline actions through the real `aws-sdk-codepipeline` client:
//! `RetryStageExecution`, `RollbackStage`, `StartPipelineExecution` and
//! `StopPipelineExecution`, plus the lookup of a rollback target
//! (`ListPipelineExecutions`).
//!
//! | kind | operation | parameters |
//! | --- | --- | --- |
//! | `codepipeline.retry_stage` | `RetryStageExecution` on the incident's execution | `stage`, `mode` (`FAILED_ACTIONS` default, or `ALL_ACTIONS`) |
//! | `codepipeline.rollback_stage` | `RollbackStage` | `stage`, `target_execution_id` (else the newest `Succeeded` execution) |
//! | `codepipeline.start_execution` | `StartPipelineExecution` | `client_request_token` (optional idempotency token) |
//! | `codepipeline.stop_execution` | `StopPipelineExecution` on the incident's execution | `abandon` (false), `reason` |
//!
//! Timeouts and the SDK's standard retries (throttling, 5xx) come from the
//! AWS settings the client was built with; errors are classified with
//! [`crate::aws::classify`]. This module only makes the one call it is
//! given: it never decides whether to run it.

use aws_sdk_codepipeline::types::{
    PipelineExecutionFilter, PipelineExecutionStatus, StageRetryMode, SucceededInStageFilter,
};
use aws_sdk_codepipeline::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Deserialize;

use crate::aws::LazyClient;
use serde_json::{json, Value};

use super::{json_object, ActionCall, ActionKind, ExecError, ExecutionOutcome, ExecutionStatus};
use crate::aws::iam::{ArnForm, IamGrant};

/// What each action kind's calls need from IAM, by kind. The stage
/// operations are allowed on the stage (`PIPELINE/STAGE`), the others on
/// the pipeline. A test runs every kind against the CodePipeline
/// stand-in and compares the operations it sees with this list.
pub const IAM: &[(ActionKind, IamGrant)] = &[
    (
        ActionKind::CodepipelineRetryStage,
        IamGrant::new(
            "codepipeline:RetryStageExecution",
            ArnForm::CodePipelineStage,
        ),
    ),
    (
        ActionKind::CodepipelineRollbackStage,
        IamGrant::new("codepipeline:RollbackStage", ArnForm::CodePipelineStage),
    ),
    // The rollback target, when the step names none.
    (
        ActionKind::CodepipelineRollbackStage,
        IamGrant::new(
            "codepipeline:ListPipelineExecutions",
            ArnForm::CodePipelinePipeline,
        ),
    ),
    (
        ActionKind::CodepipelineStartExecution,
        IamGrant::new(
            "codepipeline:StartPipelineExecution",
            ArnForm::CodePipelinePipeline,
        ),
    ),
    (
        ActionKind::CodepipelineStopExecution,
        IamGrant::new(
            "codepipeline:StopPipelineExecution",
            ArnForm::CodePipelinePipeline,
        ),
    ),
];

/// The default `reason` of a stop.
pub const DEFAULT_STOP_REASON: &str = "Stopped by pipemedic after approval";
/// What the dry run of a rollback shows while its target is still to be
/// looked up.
pub const TARGET_PLACEHOLDER: &str = "<newest Succeeded execution, looked up at run time>";
/// Pages of `ListPipelineExecutions` read to find a rollback target.
const TARGET_LOOKUP_PAGES: usize = 5;

/// Runs one CodePipeline action kind.
#[derive(Debug, Clone)]
pub struct CodePipelineExecutor {
    kind: ActionKind,
    /// Built on the first call: AWS is loaded only when a fix runs.
    client: LazyClient<Client>,
}

impl CodePipelineExecutor {
    /// The executor of `kind`; `None` when `kind` is not a CodePipeline action.
    pub fn new(kind: ActionKind, client: LazyClient<Client>) -> Option<Self> {
        matches!(
            kind,
            ActionKind::CodepipelineRetryStage
                | ActionKind::CodepipelineRollbackStage
                | ActionKind::CodepipelineStartExecution
                | ActionKind::CodepipelineStopExecution
        )
        .then_some(Self { kind, client })
    }

    /// The IAM grants this executor's calls need (from [`IAM`]).
    pub fn iam(&self) -> Vec<IamGrant> {
        IAM.iter()
            .filter(|(kind, _)| *kind == self.kind)
            .map(|(_, grant)| *grant)
            .collect()
    }

    /// One executor for each CodePipeline action kind, sharing `client`.
    pub fn all(client: &LazyClient<Client>) -> Vec<Self> {
        ActionKind::ALL
            .into_iter()
            .filter_map(|kind| Self::new(kind, client.clone()))
            .collect()
    }

    /// `call` with the rollback target filled in: unchanged when it names
    /// `target_execution_id` (or is not a rollback), else the newest
    /// `Succeeded` execution that succeeded in the stage.
    pub async fn resolve_rollback_target(
        &self,
        call: &ActionCall,
    ) -> Result<ActionCall, ExecError> {
        let Request::Rollback {
            pipeline,
            stage,
            target: None,
        } = Request::from_call(self.kind, call)?
        else {
            return Ok(call.clone());
        };
        let target = last_succeeded_execution(&self.client.get().await, &pipeline, &stage, &call.run_id)
            .await?
            .ok_or_else(|| {
                ExecError::bad(
                    "target_execution_id",
                    format!(
                        "not given, and pipeline {pipeline} has no Succeeded execution to roll stage {stage} back to"
                    ),
                )
            })?;
        let mut resolved = call.clone();
        resolved
            .params
            .insert("target_execution_id".into(), Value::String(target));
        Ok(resolved)
    }
}

/// The newest execution of `pipeline` with status `Succeeded` that
/// succeeded in `stage`, other than `excluding` (the incident's own run);
/// reads at most a few pages of `ListPipelineExecutions`.
pub async fn last_succeeded_execution(
    client: &Client,
    pipeline: &str,
    stage: &str,
    excluding: &str,
) -> Result<Option<String>, ExecError> {
    let filter = PipelineExecutionFilter::builder()
        .succeeded_in_stage(SucceededInStageFilter::builder().stage_name(stage).build())
        .build();
    let mut next_token: Option<String> = None;
    for _ in 0..TARGET_LOOKUP_PAGES {
        let page = client
            .list_pipeline_executions()
            .pipeline_name(pipeline)
            .filter(filter.clone())
            .max_results(100)
            .set_next_token(next_token.take())
            .send()
            .await
            .map_err(|e| api_error("ListPipelineExecutions", &e))?;
        // Newest first, as the service lists them.
        let found = page.pipeline_execution_summaries().iter().find(|s| {
            s.status() == Some(&PipelineExecutionStatus::Succeeded)
                && s.pipeline_execution_id().is_some_and(|id| id != excluding)
        });
        if let Some(id) = found.and_then(|s| s.pipeline_execution_id()) {
            return Ok(Some(id.to_string()));
        }
        match page.next_token() {
            Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
            _ => break,
        }
    }
    Ok(None)
}

/// One CodePipeline request, checked and ready to send.
#[derive(Debug, Clone, PartialEq)]
enum Request {
    Retry {
        pipeline: String,
        stage: String,
        execution_id: String,
        mode: &'static str,
    },
    Rollback {
        pipeline: String,
        stage: String,
        target: Option<String>,
    },
    Start {
        pipeline: String,
        token: Option<String>,
    },
    Stop {
        pipeline: String,
        execution_id: String,
        abandon: bool,
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryParams {
    stage: String,
    #[serde(default)]
    mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackParams {
    stage: String,
    #[serde(default)]
    target_execution_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartParams {
    #[serde(default)]
    client_request_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StopParams {
    #[serde(default)]
    abandon: bool,
    #[serde(default)]
    reason: Option<String>,
}

/// CodePipeline's pattern for pipeline and stage names.
fn check_name(field: &str, value: &str) -> Result<String, ExecError> {
    let valid = (1..=100).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '-' | '_'));
    if valid {
        Ok(value.to_string())
    } else {
        Err(ExecError::bad(
            field,
            format!("{value:?} is not a CodePipeline name (1-100 of A-Z a-z 0-9 . @ - _)"),
        ))
    }
}

fn check_execution_id(field: &str, value: &str) -> Result<String, ExecError> {
    let valid = (1..=200).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(value.to_string())
    } else {
        Err(ExecError::bad(
            field,
            format!("{value:?} is not a pipeline execution id"),
        ))
    }
}

impl Request {
    fn from_call(kind: ActionKind, call: &ActionCall) -> Result<Self, ExecError> {
        let pipeline = check_name("pipeline", &call.pipeline)?;
        match kind {
            ActionKind::CodepipelineRetryStage => {
                let p: RetryParams = call.params_as()?;
                let mode = match p.mode.as_deref().unwrap_or("FAILED_ACTIONS") {
                    "FAILED_ACTIONS" => "FAILED_ACTIONS",
                    "ALL_ACTIONS" => "ALL_ACTIONS",
                    other => {
                        return Err(ExecError::bad(
                            "mode",
                            format!("{other:?} must be FAILED_ACTIONS or ALL_ACTIONS"),
                        ))
                    }
                };
                Ok(Self::Retry {
                    pipeline,
                    stage: check_name("stage", &p.stage)?,
                    execution_id: check_execution_id("run_id", &call.run_id)?,
                    mode,
                })
            }
            ActionKind::CodepipelineRollbackStage => {
                let p: RollbackParams = call.params_as()?;
                Ok(Self::Rollback {
                    pipeline,
                    stage: check_name("stage", &p.stage)?,
                    target: p
                        .target_execution_id
                        .filter(|t| !t.is_empty())
                        .map(|t| check_execution_id("target_execution_id", &t))
                        .transpose()?,
                })
            }
            ActionKind::CodepipelineStartExecution => {
                let p: StartParams = call.params_as()?;
                let token = p.client_request_token.filter(|t| !t.is_empty());
                if let Some(t) = &token {
                    let valid =
                        t.len() <= 128 && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                    if !valid {
                        return Err(ExecError::bad(
                            "client_request_token",
                            "must be 1-128 of A-Z a-z 0-9 -",
                        ));
                    }
                }
                Ok(Self::Start { pipeline, token })
            }
            ActionKind::CodepipelineStopExecution => {
                let p: StopParams = call.params_as()?;
                let reason = p
                    .reason
                    .filter(|r| !r.trim().is_empty())
                    .unwrap_or_else(|| DEFAULT_STOP_REASON.to_string());
                if reason.chars().count() > 200 {
                    return Err(ExecError::bad("reason", "must be at most 200 characters"));
                }
                Ok(Self::Stop {
                    pipeline,
                    execution_id: check_execution_id("run_id", &call.run_id)?,
                    abandon: p.abandon,
                    reason,
                })
            }
            other => Err(ExecError::Unsupported(other)),
        }
    }

    fn operation(&self) -> &'static str {
        match self {
            Self::Retry { .. } => "RetryStageExecution",
            Self::Rollback { .. } => "RollbackStage",
            Self::Start { .. } => "StartPipelineExecution",
            Self::Stop { .. } => "StopPipelineExecution",
        }
    }

    /// `codepipeline:<Operation> <request body as sent>`.
    fn render(&self) -> String {
        let body = match self {
            Self::Retry {
                pipeline,
                stage,
                execution_id,
                mode,
            } => json_object(&[
                ("pipelineName", json!(pipeline)),
                ("stageName", json!(stage)),
                ("pipelineExecutionId", json!(execution_id)),
                ("retryMode", json!(mode)),
            ]),
            Self::Rollback {
                pipeline,
                stage,
                target,
            } => json_object(&[
                ("pipelineName", json!(pipeline)),
                ("stageName", json!(stage)),
                (
                    "targetPipelineExecutionId",
                    json!(target.as_deref().unwrap_or(TARGET_PLACEHOLDER)),
                ),
            ]),
            Self::Start { pipeline, token } => {
                let mut pairs = vec![("name", json!(pipeline))];
                if let Some(t) = token {
                    pairs.push(("clientRequestToken", json!(t)));
                }
                json_object(&pairs)
            }
            Self::Stop {
                pipeline,
                execution_id,
                abandon,
                reason,
            } => json_object(&[
                ("pipelineName", json!(pipeline)),
                ("pipelineExecutionId", json!(execution_id)),
                ("abandon", json!(abandon)),
                ("reason", json!(reason)),
            ]),
        };
        format!("codepipeline:{} {body}", self.operation())
    }
}

/// An SDK error as an [`ExecError`], classified by [`crate::aws::classify`].
pub fn api_error<E>(operation: &str, error: &SdkError<E, HttpResponse>) -> ExecError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (status, code) = match error {
        SdkError::ServiceError(e) => (
            Some(e.raw().status().as_u16()),
            e.err().code().map(str::to_string),
        ),
        SdkError::ResponseError(e) => (Some(e.raw().status().as_u16()), None),
        _ => (None, None),
    };
    ExecError::Api {
        operation: operation.to_string(),
        class: crate::aws::classify(error),
        status,
        code,
        message: crate::aws::describe(error),
        retry_after: None,
    }
}

fn outcome(call: String, summary: String, execution_id: Option<&str>) -> ExecutionOutcome {
    ExecutionOutcome {
        status: ExecutionStatus::Succeeded,
        summary,
        call,
        response: json!({ "pipelineExecutionId": execution_id }),
        external_id: execution_id.map(str::to_string),
    }
}

#[async_trait::async_trait]
impl super::Executor for CodePipelineExecutor {
    fn kind(&self) -> ActionKind {
        self.kind
    }

    fn describe(&self, call: &ActionCall) -> Result<String, ExecError> {
        Ok(Request::from_call(self.kind, call)?.render())
    }

    async fn prepare(&self, call: &ActionCall) -> Result<ActionCall, ExecError> {
        self.resolve_rollback_target(call).await
    }

    async fn execute(&self, call: &ActionCall) -> Result<ExecutionOutcome, ExecError> {
        let call = self.resolve_rollback_target(call).await?;
        let request = Request::from_call(self.kind, &call)?;
        let rendered = request.render();
        let operation = request.operation();
        tracing::debug!(operation, pipeline = %call.pipeline, "Calling CodePipeline.");
        match request {
            Request::Retry {
                pipeline,
                stage,
                execution_id,
                mode,
            } => {
                let out = self
                    .client
                    .get()
                    .await
                    .retry_stage_execution()
                    .pipeline_name(&pipeline)
                    .stage_name(&stage)
                    .pipeline_execution_id(&execution_id)
                    .retry_mode(StageRetryMode::from(mode))
                    .send()
                    .await
                    .map_err(|e| api_error(operation, &e))?;
                let id = out.pipeline_execution_id().unwrap_or(&execution_id);
                Ok(outcome(
                    rendered,
                    format!("Retried stage {stage} of {pipeline} (execution {id}, {mode})."),
                    Some(id),
                ))
            }
            Request::Rollback {
                pipeline,
                stage,
                target,
            } => {
                let target = target.unwrap_or_default();
                let out = self
                    .client
                    .get()
                    .await
                    .rollback_stage()
                    .pipeline_name(&pipeline)
                    .stage_name(&stage)
                    .target_pipeline_execution_id(&target)
                    .send()
                    .await
                    .map_err(|e| api_error(operation, &e))?;
                let id = out.pipeline_execution_id();
                Ok(outcome(
                    rendered,
                    format!(
                        "Rolled stage {stage} of {pipeline} back to execution {target}; rollback execution {id}."
                    ),
                    Some(id),
                ))
            }
            Request::Start { pipeline, token } => {
                let out = self
                    .client
                    .get()
                    .await
                    .start_pipeline_execution()
                    .name(&pipeline)
                    .set_client_request_token(token)
                    .send()
                    .await
                    .map_err(|e| api_error(operation, &e))?;
                let id = out.pipeline_execution_id();
                Ok(outcome(
                    rendered,
                    format!(
                        "Started {pipeline}; new execution {}.",
                        id.unwrap_or("(no id returned)")
                    ),
                    id,
                ))
            }
            Request::Stop {
                pipeline,
                execution_id,
                abandon,
                reason,
            } => {
                let out = self
                    .client
                    .get()
                    .await
                    .stop_pipeline_execution()
                    .pipeline_name(&pipeline)
                    .pipeline_execution_id(&execution_id)
                    .abandon(abandon)
                    .reason(&reason)
                    .send()
                    .await
                    .map_err(|e| api_error(operation, &e))?;
                let id = out.pipeline_execution_id().unwrap_or(&execution_id);
                let how = if abandon {
                    "abandoning its in-progress actions"
                } else {
                    "letting in-progress actions finish"
                };
                Ok(outcome(
                    rendered,
                    format!("Stopped execution {id} of {pipeline}, {how}."),
                    Some(id),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::AwsClients;
    use crate::remediate::Executor;

    async fn executor(kind: ActionKind) -> CodePipelineExecutor {
        let mut settings = crate::aws::AwsSettings::default().with_static_credentials(
            aws_credential_types::Credentials::new("AKIDTEST", "test-secret", None, None, "t"),
            "us-east-1",
        );
        settings.endpoints.codepipeline = "http://127.0.0.1:9".into();
        CodePipelineExecutor::new(kind, LazyClient::new(&settings, AwsClients::codepipeline))
            .unwrap()
    }

    fn call(kind: ActionKind, params: Value) -> ActionCall {
        ActionCall::new(kind, "checkout-service", "e-1", params)
    }

    #[tokio::test]
    async fn dry_runs_show_the_exact_request() {
        let e = executor(ActionKind::CodepipelineRetryStage).await;
        assert_eq!(
            e.describe(&call(e.kind(), json!({"stage": "Test"})))
                .unwrap(),
            r#"codepipeline:RetryStageExecution {"pipelineName":"checkout-service","stageName":"Test","pipelineExecutionId":"e-1","retryMode":"FAILED_ACTIONS"}"#
        );
        assert_eq!(
            e.describe(&call(
                e.kind(),
                json!({"stage": "Test", "mode": "ALL_ACTIONS"})
            ))
            .unwrap(),
            r#"codepipeline:RetryStageExecution {"pipelineName":"checkout-service","stageName":"Test","pipelineExecutionId":"e-1","retryMode":"ALL_ACTIONS"}"#
        );

        let e = executor(ActionKind::CodepipelineRollbackStage).await;
        assert_eq!(
            e.describe(&call(
                e.kind(),
                json!({"stage": "Deploy", "target_execution_id": "e-0"})
            ))
            .unwrap(),
            r#"codepipeline:RollbackStage {"pipelineName":"checkout-service","stageName":"Deploy","targetPipelineExecutionId":"e-0"}"#
        );
        assert_eq!(
            e.describe(&call(e.kind(), json!({"stage": "Deploy"})))
                .unwrap(),
            format!(
                r#"codepipeline:RollbackStage {{"pipelineName":"checkout-service","stageName":"Deploy","targetPipelineExecutionId":"{TARGET_PLACEHOLDER}"}}"#
            )
        );

        let e = executor(ActionKind::CodepipelineStartExecution).await;
        assert_eq!(
            e.describe(&call(e.kind(), json!({}))).unwrap(),
            r#"codepipeline:StartPipelineExecution {"name":"checkout-service"}"#
        );
        assert_eq!(
            e.describe(&call(
                e.kind(),
                json!({"client_request_token": "inc-42-step-1"})
            ))
            .unwrap(),
            r#"codepipeline:StartPipelineExecution {"name":"checkout-service","clientRequestToken":"inc-42-step-1"}"#
        );

        let e = executor(ActionKind::CodepipelineStopExecution).await;
        assert_eq!(
            e.describe(&call(
                e.kind(),
                json!({"abandon": true, "reason": "runaway deploy"})
            ))
            .unwrap(),
            r#"codepipeline:StopPipelineExecution {"pipelineName":"checkout-service","pipelineExecutionId":"e-1","abandon":true,"reason":"runaway deploy"}"#
        );
        assert_eq!(
            e.describe(&call(e.kind(), json!({}))).unwrap(),
            format!(
                r#"codepipeline:StopPipelineExecution {{"pipelineName":"checkout-service","pipelineExecutionId":"e-1","abandon":false,"reason":"{DEFAULT_STOP_REASON}"}}"#
            )
        );
    }

    fn bad_field(result: Result<String, ExecError>) -> String {
        match result {
            Err(ExecError::BadParams { field, .. }) => field,
            other => panic!("expected bad params, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn bad_parameters_are_refused_before_any_call() {
        let e = executor(ActionKind::CodepipelineRetryStage).await;
        assert_eq!(bad_field(e.describe(&call(e.kind(), json!({})))), "params");
        assert_eq!(
            bad_field(e.describe(&call(e.kind(), json!({"stage": "Test", "mode": "SOME"})))),
            "mode"
        );
        assert_eq!(
            bad_field(e.describe(&call(e.kind(), json!({"stage": "Te st"})))),
            "stage"
        );
        assert_eq!(
            bad_field(e.describe(&call(e.kind(), json!({"stage": "Test", "stgae": "x"})))),
            "stgae"
        );
        let mut no_run = call(e.kind(), json!({"stage": "Test"}));
        no_run.run_id.clear();
        assert_eq!(bad_field(e.describe(&no_run)), "run_id");
        let mut bad_pipeline = call(e.kind(), json!({"stage": "Test"}));
        bad_pipeline.pipeline = "octo/repo/ci".into();
        assert_eq!(bad_field(e.describe(&bad_pipeline)), "pipeline");

        let e = executor(ActionKind::CodepipelineStopExecution).await;
        assert_eq!(
            bad_field(e.describe(&call(e.kind(), json!({"reason": "x".repeat(201)})))),
            "reason"
        );
        assert_eq!(
            bad_field(e.describe(&call(e.kind(), json!({"abandon": "yes"})))),
            "abandon"
        );
        let e = executor(ActionKind::CodepipelineStartExecution).await;
        assert_eq!(
            bad_field(e.describe(&call(e.kind(), json!({"client_request_token": "a b"})))),
            "client_request_token"
        );
        assert!(CodePipelineExecutor::new(ActionKind::Shell, e.client.clone()).is_none());
        assert_eq!(CodePipelineExecutor::all(&e.client).len(), 4);
    }
}
