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

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, Message, SpecificToolChoice, Tool, ToolChoice,
    ToolConfiguration, ToolInputSchema, ToolResultBlock, ToolResultContentBlock, ToolResultStatus,
    ToolSpecification,
};
use serde::Serialize;
use serde_json::Value;

use super::prompt::PlanPrompt;
use super::types::{IncidentFacts, Plan, ValidatedPlan};
use crate::bedrock::{
    converse, from_document, message, request_error, to_document, BedrockError, ConverseCall,
    TokenUsage,
};
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
    ) -> Result<ModelDraft, BedrockError> {
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
        Err(BedrockError::Request("no attempt was made".to_string()))
    }

    async fn converse(
        &self,
        system: &str,
        messages: &[Message],
        tool_config: &ToolConfiguration,
    ) -> Result<aws_sdk_bedrockruntime::operation::converse::ConverseOutput, BedrockError> {
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

/// The one tool, and the tool choice forced to it.
fn tool_config(prompt: &PlanPrompt) -> Result<ToolConfiguration, BedrockError> {
    let spec = ToolSpecification::builder()
        .name(prompt.tool_name)
        .description(
            "Submit the remediation plan. Every step must be an action that a listed playbook \
             declares, with only the parameters that action lets a plan choose.",
        )
        .input_schema(ToolInputSchema::Json(to_document(&prompt.tool_schema)))
        .build()
        .map_err(request_error)?;
    ToolConfiguration::builder()
        .tools(Tool::ToolSpec(spec))
        .tool_choice(ToolChoice::Tool(
            SpecificToolChoice::builder()
                .name(prompt.tool_name)
                .build()
                .map_err(request_error)?,
        ))
        .build()
        .map_err(request_error)
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
) -> Result<(Message, Message), BedrockError> {
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
                    .map_err(request_error)
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok((
        message(ConversationRole::Assistant, assistant_content)?,
        message(ConversationRole::User, reply)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
