//! The Bedrock planner: asks a model on Amazon Bedrock for a plan through
//! the Converse API with one tool (`submit_plan`, whose input schema is the
//! [`Plan`] narrowed to the incident's allowed actions) and the tool choice
//! forced, then validates what comes back.
//!
//! An answer that is not a valid plan (plain text, a malformed tool input,
//! a step outside the playbooks) is sent back once with the problems listed
//! (a `toolResult` with status `error`), up to `planner.max_attempts`
//! answers in all; then it is reported as [`PlanOutcome::Invalid`] and never
//! offered for approval. Throttling and transient failures are retried by
//! the SDK's standard retry mode with exponential backoff; every call has a
//! time limit. Tokens are counted per answer and exported as metrics.
//!
//! This module sends only what [`PromptSet::render_plan`] produced (already
//! redacted) and feedback redacted the same way; it never logs a prompt,
//! never stores anything and never runs a step.
//!
//! [`PromptSet::render_plan`]: super::PromptSet::render_plan

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message, SpecificToolChoice,
    SystemContentBlock, Tool, ToolChoice, ToolConfiguration, ToolInputSchema, ToolResultBlock,
    ToolResultContentBlock, ToolResultStatus, ToolSpecification,
};
use aws_smithy_types::{Document, Number};
use serde::Serialize;
use serde_json::Value;

use super::prompt::PlanPrompt;
use super::types::{IncidentFacts, Plan, ValidatedPlan};
use crate::aws::ErrorClass;
use crate::config::PlannerConfig;
use crate::metrics::Metrics;
use crate::playbooks::Catalog;
use crate::redact::Redactor;

/// How the Bedrock planner calls the model.
#[derive(Debug, Clone, PartialEq)]
pub struct BedrockSettings {
    pub model_id: String,
    pub max_tokens: u32,
    pub temperature: f32,
    /// Time allowed for one Converse call (SDK retries included).
    pub timeout: Duration,
    /// Answers per plan: the first plus retries with feedback.
    pub max_attempts: u32,
}

impl BedrockSettings {
    pub fn from_config(config: &PlannerConfig) -> Self {
        Self {
            model_id: config.model_id.clone(),
            max_tokens: config.max_tokens,
            temperature: config.temperature,
            timeout: Duration::from_secs(config.timeout_s.max(1)),
            max_attempts: config.max_attempts.max(1),
        }
    }
}

/// Tokens a model consumed and produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TokenUsage {
    pub input: u64,
    pub output: u64,
}

impl TokenUsage {
    pub fn add(&mut self, other: TokenUsage) {
        self.input += other.input;
        self.output += other.output;
    }
}

/// What drafting a plan ended with.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanOutcome {
    /// A plan that passed validation: the only kind offered for approval.
    Valid {
        plan: Plan,
        validated: ValidatedPlan,
    },
    /// No valid plan after every attempt: reported, never offered.
    Invalid {
        /// The problems of the last answer.
        errors: Vec<String>,
        /// The last answer as the model gave it (tool input, or
        /// `{"text": ...}` when it wrote text).
        raw: Option<Value>,
    },
}

impl PlanOutcome {
    pub fn is_valid(&self) -> bool {
        matches!(self, Self::Valid { .. })
    }

    /// The validated plan, only when there is one.
    pub fn validated(&self) -> Option<&ValidatedPlan> {
        match self {
            Self::Valid { validated, .. } => Some(validated),
            Self::Invalid { .. } => None,
        }
    }
}

/// One model answer and what validation said about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    pub usage: TokenUsage,
    /// Empty when the answer was a valid plan.
    pub errors: Vec<String>,
}

/// A plan drafted by a model, with what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDraft {
    pub outcome: PlanOutcome,
    /// Totals over every attempt.
    pub usage: TokenUsage,
    pub attempts: Vec<Attempt>,
}

/// Why no answer came back from the model at all.
#[derive(Debug, thiserror::Error)]
pub enum PlannerError {
    #[error("Bedrock did not answer within {}s", .0.as_secs())]
    Timeout(Duration),
    #[error("Bedrock call failed ({}): {message}", class.as_str())]
    Service { class: ErrorClass, message: String },
    #[error("cannot build the Bedrock request: {0}")]
    Request(String),
}

impl PlannerError {
    /// Whether asking again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout(_) => true,
            Self::Service { class, .. } => class.is_retryable(),
            Self::Request(_) => false,
        }
    }
}

/// Drafts plans with a model on Amazon Bedrock.
#[derive(Clone)]
pub struct BedrockPlanner {
    client: aws_sdk_bedrockruntime::Client,
    settings: BedrockSettings,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for BedrockPlanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BedrockPlanner")
            .field("settings", &self.settings)
            .finish()
    }
}

/// What one answer contained.
enum Answer {
    Plan(Plan),
    /// Not a plan: the problems, and the raw answer.
    Unusable(Vec<String>, Option<Value>),
}

impl BedrockPlanner {
    /// `client` comes from [`crate::aws::AwsClients::bedrock`], whose retry
    /// mode handles throttling.
    pub fn new(
        client: aws_sdk_bedrockruntime::Client,
        settings: BedrockSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            settings,
            metrics,
        }
    }

    pub fn settings(&self) -> &BedrockSettings {
        &self.settings
    }

    /// Asks the model for a plan for `facts` and validates every answer
    /// against `catalog`; an invalid answer is sent back with its problems
    /// until `max_attempts` answers were given. Not idempotent (each call
    /// asks the model again); the caller stores the result.
    #[tracing::instrument(
        name = "plan.bedrock",
        skip_all,
        fields(incident = %facts.incident_id, model = %self.settings.model_id)
    )]
    pub async fn draft(
        &self,
        prompt: &PlanPrompt,
        catalog: &Catalog,
        facts: &IncidentFacts,
        redactor: &Redactor,
    ) -> Result<ModelDraft, PlannerError> {
        let tool_config = tool_config(prompt)?;
        let mut messages = vec![message(
            ConversationRole::User,
            vec![ContentBlock::Text(prompt.user.clone())],
        )?];
        let mut usage = TokenUsage::default();
        let mut attempts = Vec::new();
        let max = self.settings.max_attempts.max(1);
        for number in 1..=max {
            let output = self
                .converse(&prompt.system, &messages, &tool_config)
                .await?;
            let used = output
                .usage()
                .map(|u| TokenUsage {
                    input: u64::try_from(u.input_tokens()).unwrap_or(0),
                    output: u64::try_from(u.output_tokens()).unwrap_or(0),
                })
                .unwrap_or_default();
            self.metrics.planner_tokens(used.input, used.output);
            usage.add(used);
            let content: Vec<ContentBlock> = output
                .output()
                .and_then(|o| o.as_message().ok())
                .map(|m| m.content().to_vec())
                .unwrap_or_default();
            let (errors, raw) = match read_answer(&content) {
                Answer::Plan(plan) => match plan.validate(catalog, facts) {
                    Ok(validated) => {
                        attempts.push(Attempt {
                            usage: used,
                            errors: Vec::new(),
                        });
                        tracing::info!(
                            attempt = number,
                            steps = validated.steps.len(),
                            input_tokens = usage.input,
                            output_tokens = usage.output,
                            "Model plan validated."
                        );
                        return Ok(ModelDraft {
                            outcome: PlanOutcome::Valid { plan, validated },
                            usage,
                            attempts,
                        });
                    }
                    Err(errors) => (
                        errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        serde_json::to_value(&plan).ok(),
                    ),
                },
                Answer::Unusable(errors, raw) => (errors, raw),
            };
            tracing::warn!(
                attempt = number,
                of = max,
                problems = errors.len(),
                "Model answer is not a valid plan."
            );
            attempts.push(Attempt {
                usage: used,
                errors: errors.clone(),
            });
            if number == max {
                return Ok(ModelDraft {
                    outcome: PlanOutcome::Invalid { errors, raw },
                    usage,
                    attempts,
                });
            }
            let feedback = redactor.redact(&feedback_text(&errors)).into_owned();
            let (assistant, reply) = follow_up(content, &feedback)?;
            messages.push(assistant);
            messages.push(reply);
        }
        // The loop always returns on its last attempt.
        Err(PlannerError::Request("no attempt was made".to_string()))
    }

    async fn converse(
        &self,
        system: &str,
        messages: &[Message],
        tool_config: &ToolConfiguration,
    ) -> Result<aws_sdk_bedrockruntime::operation::converse::ConverseOutput, PlannerError> {
        converse(
            &self.client,
            &ConverseCall {
                model_id: &self.settings.model_id,
                temperature: self.settings.temperature,
                timeout: self.settings.timeout,
                max_tokens: self.settings.max_tokens,
            },
            system,
            messages,
            tool_config,
        )
        .await
    }
}

/// The settings of one Converse call.
pub(crate) struct ConverseCall<'a> {
    pub model_id: &'a str,
    pub temperature: f32,
    /// Time allowed for the call, SDK retries included.
    pub timeout: Duration,
    pub max_tokens: u32,
}

/// One Converse call with a system prompt, the conversation so far and the
/// tools; a timeout or a service error comes back classified (and logged
/// without the request). Shared by the planner and by asking.
pub(crate) async fn converse(
    client: &aws_sdk_bedrockruntime::Client,
    call: &ConverseCall<'_>,
    system: &str,
    messages: &[Message],
    tool_config: &ToolConfiguration,
) -> Result<aws_sdk_bedrockruntime::operation::converse::ConverseOutput, PlannerError> {
    let request = client
        .converse()
        .model_id(call.model_id)
        .system(SystemContentBlock::Text(system.to_string()))
        .set_messages(Some(messages.to_vec()))
        .tool_config(tool_config.clone())
        .inference_config(
            InferenceConfiguration::builder()
                .max_tokens(i32::try_from(call.max_tokens.max(1)).unwrap_or(i32::MAX))
                .temperature(call.temperature)
                .build(),
        );
    // Boxed: the SDK's future is deep, and callers nest this under chat
    // and HTTP handlers.
    match tokio::time::timeout(call.timeout, Box::pin(request.send())).await {
        Err(_) => {
            tracing::warn!(
                timeout_s = call.timeout.as_secs(),
                "Bedrock call timed out."
            );
            Err(PlannerError::Timeout(call.timeout))
        }
        Ok(Ok(output)) => Ok(output),
        Ok(Err(e)) => {
            let class = crate::aws::classify(&e);
            let message = crate::aws::describe(&e);
            tracing::warn!(class = class.as_str(), error = %message, "Bedrock call failed.");
            Err(PlannerError::Service { class, message })
        }
    }
}

fn build_error(e: impl std::fmt::Display) -> PlannerError {
    PlannerError::Request(e.to_string())
}

fn message(role: ConversationRole, content: Vec<ContentBlock>) -> Result<Message, PlannerError> {
    Message::builder()
        .role(role)
        .set_content(Some(content))
        .build()
        .map_err(build_error)
}

/// The one tool, and the tool choice forced to it.
fn tool_config(prompt: &PlanPrompt) -> Result<ToolConfiguration, PlannerError> {
    let spec = ToolSpecification::builder()
        .name(prompt.tool_name)
        .description(
            "Submit the remediation plan. Every step must be an action that a listed playbook \
             declares, with only the parameters that action lets a plan choose.",
        )
        .input_schema(ToolInputSchema::Json(to_document(&prompt.tool_schema)))
        .build()
        .map_err(build_error)?;
    ToolConfiguration::builder()
        .tools(Tool::ToolSpec(spec))
        .tool_choice(ToolChoice::Tool(
            SpecificToolChoice::builder()
                .name(prompt.tool_name)
                .build()
                .map_err(build_error)?,
        ))
        .build()
        .map_err(build_error)
}

/// Reads the model's answer: the input of its `submit_plan` call as a Plan.
fn read_answer(content: &[ContentBlock]) -> Answer {
    let tool_uses: Vec<_> = content
        .iter()
        .filter_map(|c| c.as_tool_use().ok())
        .collect();
    let text: String = content
        .iter()
        .filter_map(|c| c.as_text().ok())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("\n");
    let Some(call) = tool_uses.first() else {
        let raw = (!text.is_empty()).then(|| serde_json::json!({ "text": text }));
        return Answer::Unusable(
            vec![format!(
                "the answer was {} instead of a call to the `{}` tool",
                if text.is_empty() { "empty" } else { "text" },
                super::PLAN_TOOL_NAME
            )],
            raw,
        );
    };
    let raw = from_document(call.input());
    if call.name() != super::PLAN_TOOL_NAME {
        return Answer::Unusable(
            vec![format!(
                "the answer called a tool `{}`; the only tool is `{}`",
                call.name(),
                super::PLAN_TOOL_NAME
            )],
            Some(raw),
        );
    }
    if tool_uses.len() > 1 {
        return Answer::Unusable(
            vec![format!(
                "the answer called `{}` {} times; submit exactly one plan",
                super::PLAN_TOOL_NAME,
                tool_uses.len()
            )],
            Some(raw),
        );
    }
    // A model sometimes sends the object as a JSON string.
    let value = match &raw {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| raw.clone()),
        other => other.clone(),
    };
    match serde_json::from_value::<Plan>(value) {
        Ok(plan) => Answer::Plan(plan),
        Err(e) => Answer::Unusable(
            vec![format!(
                "the `{}` input does not match the plan schema: {e}",
                super::PLAN_TOOL_NAME
            )],
            Some(raw),
        ),
    }
}

fn feedback_text(errors: &[String]) -> String {
    let mut text = String::from(
        "The plan was rejected and nothing will run. Fix these problems and call the tool \
         again with a corrected plan. Use only the listed playbooks and the actions they \
         declare, and only the parameters those actions let a plan choose; if no allowed \
         action fits, submit a plan with no steps.\n",
    );
    for e in errors {
        text.push_str("- ");
        text.push_str(e);
        text.push('\n');
    }
    text
}

/// The model's answer as the assistant turn, and the user turn that
/// answers it: a `toolResult` with status `error` for each tool call, or
/// plain text when it called none.
fn follow_up(
    content: Vec<ContentBlock>,
    feedback: &str,
) -> Result<(Message, Message), PlannerError> {
    let assistant_content: Vec<ContentBlock> = content
        .into_iter()
        .filter(|c| c.is_text() || c.is_tool_use())
        .collect();
    let tool_ids: Vec<String> = assistant_content
        .iter()
        .filter_map(|c| c.as_tool_use().ok())
        .map(|t| t.tool_use_id().to_string())
        .collect();
    let assistant_content = if assistant_content.is_empty() {
        vec![ContentBlock::Text("(no answer)".to_string())]
    } else {
        assistant_content
    };
    let reply = if tool_ids.is_empty() {
        vec![ContentBlock::Text(feedback.to_string())]
    } else {
        tool_ids
            .iter()
            .map(|id| {
                ToolResultBlock::builder()
                    .tool_use_id(id)
                    .content(ToolResultContentBlock::Text(feedback.to_string()))
                    .status(ToolResultStatus::Error)
                    .build()
                    .map(ContentBlock::ToolResult)
                    .map_err(build_error)
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok((
        message(ConversationRole::Assistant, assistant_content)?,
        message(ConversationRole::User, reply)?,
    ))
}

/// A JSON value as a Smithy document.
pub(crate) fn to_document(value: &Value) -> Document {
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => Document::Number(if let Some(u) = n.as_u64() {
            Number::PosInt(u)
        } else if let Some(i) = n.as_i64() {
            Number::NegInt(i)
        } else {
            Number::Float(n.as_f64().unwrap_or(0.0))
        }),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(items) => Document::Array(items.iter().map(to_document).collect()),
        Value::Object(map) => Document::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), to_document(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

/// A Smithy document as a JSON value (non-finite numbers become null).
pub(crate) fn from_document(doc: &Document) -> Value {
    match doc {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => Value::from(*u),
        Document::Number(Number::NegInt(i)) => Value::from(*i),
        Document::Number(Number::Float(f)) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Document::String(s) => Value::String(s.clone()),
        Document::Array(items) => Value::Array(items.iter().map(from_document).collect()),
        Document::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), from_document(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_round_trip() {
        let v = json!({"a": [1, -2, 0.5, "x", true, null, {"b": {}}]});
        assert_eq!(from_document(&to_document(&v)), v);
    }

    #[test]
    fn text_and_wrong_tools_are_unusable_answers() {
        let text = read_answer(&[ContentBlock::Text("I would rerun it.".into())]);
        assert!(matches!(text, Answer::Unusable(ref e, Some(_)) if e[0].contains("text instead")));
        let empty = read_answer(&[]);
        assert!(matches!(empty, Answer::Unusable(ref e, None) if e[0].contains("empty")));
        let other = aws_sdk_bedrockruntime::types::ToolUseBlock::builder()
            .tool_use_id("t1")
            .name("run_shell")
            .input(to_document(&json!({"cmd": "rm -rf /"})))
            .build()
            .unwrap();
        let answer = read_answer(&[ContentBlock::ToolUse(other)]);
        assert!(matches!(answer, Answer::Unusable(ref e, _) if e[0].contains("run_shell")));
    }

    #[test]
    fn a_follow_up_answers_every_tool_call_with_an_error_result() {
        let call = aws_sdk_bedrockruntime::types::ToolUseBlock::builder()
            .tool_use_id("t1")
            .name("submit_plan")
            .input(to_document(&json!({})))
            .build()
            .unwrap();
        let (assistant, reply) =
            follow_up(vec![ContentBlock::ToolUse(call)], "fix it").expect("builds");
        assert_eq!(assistant.role(), &ConversationRole::Assistant);
        let result = reply.content()[0].as_tool_result().expect("a tool result");
        assert_eq!(result.tool_use_id(), "t1");
        assert_eq!(result.status(), Some(&ToolResultStatus::Error));
    }
}
