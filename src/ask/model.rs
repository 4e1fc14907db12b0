//! The Bedrock tool loop: a model on Amazon Bedrock answers a question by
//! calling the read-only [`QueryTools`] through the Converse API (one tool
//! per entry of [`TOOLS`], each with a JSON input schema), until it answers
//! with text.
//!
//! The loop is bounded: at most `ask.max_tool_calls` tool calls and
//! `ask.max_tokens` tokens (input and output of every call together) per
//! question, and the planner's per-call timeout. Every number of the final
//! text must appear in a tool result (or in the arguments the model chose,
//! such as the 7 of "last 7 days"), checked by [`super::numbers`]; an
//! answer with unsupported numbers is sent back once naming them. Whatever
//! cannot be answered within these rules ends as a [`ModelFailure`], and the
//! caller gives the offline answer instead.
//!
//! The question arrives already redacted and framed as data
//! ([`crate::plan::PromptSet::render_ask`]); tool results are redacted here
//! before they are sent, because commit messages and log lines are
//! untrusted. The tools only read: a model that asks for anything else
//! (an unknown tool, bad arguments) gets an error result, and nothing runs.
//! Tokens are counted as metrics. Prompts and results are never logged.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, Message, Tool, ToolConfiguration, ToolInputSchema,
    ToolResultBlock, ToolResultContentBlock, ToolResultStatus, ToolSpecification,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use super::numbers::{unsupported, Support};
use super::tools::{QueryTools, ToolError};
use crate::bedrock::{
    converse, from_document, message, request_error, to_document, BedrockError, ConverseCall,
    TokenUsage,
};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::plan::{AskPrompt, Redactor};

/// Longest tool result sent to the model, in bytes (the rest is cut and
/// the model is told so).
pub const MAX_RESULT_BYTES: usize = 16 * 1024;

/// How the tool loop calls the model and where it stops.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSettings {
    pub model_id: String,
    /// Output tokens one call may produce (the planner's `max_tokens`).
    pub max_tokens_per_call: u32,
    pub temperature: f32,
    /// Time allowed for one Converse call (SDK retries included).
    pub timeout: Duration,
    pub max_tool_calls: u32,
    /// Tokens (input + output) allowed over the whole loop.
    pub token_budget: u64,
}

impl ModelSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            model_id: config.ask.effective_model_id(&config.planner).to_string(),
            max_tokens_per_call: config.planner.max_tokens.max(1),
            temperature: config.planner.temperature,
            timeout: Duration::from_secs(config.planner.timeout_s.max(1)),
            max_tool_calls: config.ask.max_tool_calls.max(1),
            token_budget: config.ask.max_tokens.max(1),
        }
    }
}

/// One tool call the model made and what it got back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    pub name: String,
    pub input: Value,
    /// The result (unredacted; for sources), or `null` on error.
    pub result: Value,
    /// The error message sent back, when the call failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why the model's answer cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelFailure {
    #[error("the model wanted more than {0} tool calls")]
    ToolCallLimit(u32),
    #[error("the model used more than {0} tokens")]
    TokenBudget(u64),
    #[error("the model's answer stated numbers no tool returned: {}", .0.join(", "))]
    UnsupportedNumbers(Vec<String>),
    #[error("the model gave no answer")]
    NoAnswer,
    #[error(transparent)]
    Model(#[from] BedrockError),
}

impl ModelFailure {
    /// What people are told in the answer (no rejected numbers, no
    /// service details: those are in [`crate::ask::Answer::fallback`]).
    pub fn note(&self) -> String {
        match self {
            Self::ToolCallLimit(n) => format!("the model needed more than {n} tool calls"),
            Self::TokenBudget(n) => format!("the model needed more than {n} tokens"),
            Self::UnsupportedNumbers(_) => {
                "the model's answer stated numbers that no stored data backs".to_string()
            }
            Self::NoAnswer => "the model gave no answer".to_string(),
            Self::Model(_) => "Bedrock could not be reached".to_string(),
        }
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ToolCallLimit(_) => "tool_call_limit",
            Self::TokenBudget(_) => "token_budget",
            Self::UnsupportedNumbers(_) => "unsupported_numbers",
            Self::NoAnswer => "no_answer",
            Self::Model(_) => "model_error",
        }
    }
}

/// What one question's tool loop ended with.
#[derive(Debug)]
pub struct ModelAnswer {
    /// The checked answer text, or why there is none.
    pub outcome: Result<String, ModelFailure>,
    pub calls: Vec<ToolCall>,
    pub usage: TokenUsage,
    /// The answer was sent back once for unsupported numbers.
    pub retried: bool,
}

/// Answers questions with a model on Amazon Bedrock and the query tools.
#[derive(Clone)]
pub struct BedrockAsker {
    client: aws_sdk_bedrockruntime::Client,
    settings: ModelSettings,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for BedrockAsker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BedrockAsker")
            .field("settings", &self.settings)
            .finish()
    }
}

/// The description and JSON input schema of each tool of [`TOOLS`].
pub fn tool_schemas() -> Vec<(&'static str, &'static str, Value)> {
    let window = json!({"type": "string", "description":
        "A time phrase: \"today\", \"yesterday\", \"this week\", \"last week\", \"since Monday\", \
         \"since 2026-11-01\", \"last 30 days\", \"past 2 weeks\", \"last 24h\". Default: the last 7 days."});
    let pipeline =
        json!({"type": "string", "description": "The pipeline's exact name (see list_pipelines)."});
    vec![
        (
            "list_pipelines",
            "The names of every pipeline with stored runs.",
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
        ),
        (
            "pipeline_health",
            "The health summary of one pipeline, as `pipemedic health` shows it: runs, success rate \
             and duration percentiles over the last 7 and 30 days, trends, the last run and open incidents.",
            json!({"type": "object", "properties": {"pipeline": pipeline},
                   "required": ["pipeline"], "additionalProperties": false}),
        ),
        (
            "window_stats",
            "Runs, successes, failures, success rate, duration p50/p95 (seconds), flaky failures and \
             commits of one pipeline over a window.",
            json!({"type": "object", "properties": {"pipeline": pipeline, "window": window},
                   "required": ["pipeline"], "additionalProperties": false}),
        ),
        (
            "rank_pipelines",
            "Every pipeline with runs in a window, ranked: slowest (median duration), flakiest \
             (failures that passed on retry), most_failing, or slowed_down (median against the window before).",
            json!({"type": "object", "properties": {
                      "by": {"type": "string", "enum": ["slowest", "flakiest", "most_failing", "slowed_down"]},
                      "window": window},
                   "required": ["by"], "additionalProperties": false}),
        ),
        (
            "list_runs",
            "The runs of one pipeline in a window, oldest first, optionally only those with one status.",
            json!({"type": "object", "properties": {
                      "pipeline": pipeline, "window": window,
                      "status": {"type": "string", "enum": ["succeeded", "failed", "cancelled", "running"]}},
                   "required": ["pipeline"], "additionalProperties": false}),
        ),
        (
            "list_incidents",
            "Incidents (what pipemedic alerted about, by the id chat shows), newest first: every one not yet resolved, or those opened in a window.",
            json!({"type": "object", "properties": {
                      "open_only": {"type": "boolean"}, "window": window, "pipeline": pipeline},
                   "additionalProperties": false}),
        ),
        (
            "get_incident",
            "One incident by id, with its plans, their approvals and votes, and the executions of their steps.",
            json!({"type": "object", "properties": {"id": {"type": "integer", "minimum": 1}},
                   "required": ["id"], "additionalProperties": false}),
        ),
        (
            "last_failure",
            "The latest failed run of one pipeline: run id, attempt, time, stage, commit and its \
             message, the likeliest cause, and whether a retry succeeded.",
            json!({"type": "object", "properties": {"pipeline": pipeline},
                   "required": ["pipeline"], "additionalProperties": false}),
        ),
    ]
}

/// Every query tool, model choice left to the model.
fn tool_config() -> Result<ToolConfiguration, BedrockError> {
    let mut builder = ToolConfiguration::builder();
    for (name, description, schema) in tool_schemas() {
        let spec = ToolSpecification::builder()
            .name(name)
            .description(description)
            .input_schema(ToolInputSchema::Json(to_document(&schema)))
            .build()
            .map_err(request_error)?;
        builder = builder.tools(Tool::ToolSpec(spec));
    }
    builder.build().map_err(request_error)
}

/// A tool result as the model sees it: JSON text, redacted, size-capped.
fn result_text(value: &Value, redactor: &Redactor) -> String {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "null".to_string());
    let mut text = redactor.redact(&text).into_owned();
    if text.len() > MAX_RESULT_BYTES {
        let mut cut = MAX_RESULT_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(" … [result cut: ask a narrower question, e.g. a shorter window]");
    }
    text
}

fn feedback(numbers: &[String]) -> String {
    format!(
        "Your answer was rejected and not shown: these numbers appear in no tool result: {}. \
         Answer again using only numbers copied from tool results (rounding is fine; call the \
         tools again if you need to). Do not compute or convert numbers.",
        numbers.join(", ")
    )
}

impl BedrockAsker {
    /// `client` comes from [`crate::aws::AwsClients::bedrock`].
    pub fn new(
        client: aws_sdk_bedrockruntime::Client,
        settings: ModelSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            settings,
            metrics,
        }
    }

    pub fn settings(&self) -> &ModelSettings {
        &self.settings
    }

    /// Runs the tool loop for one question. Read-only; not idempotent (each
    /// call asks the model again).
    #[tracing::instrument(name = "ask.bedrock", skip_all, fields(model = %self.settings.model_id))]
    pub async fn answer(
        &self,
        prompt: &AskPrompt,
        tools: &QueryTools,
        now: DateTime<Utc>,
        redactor: &Redactor,
    ) -> ModelAnswer {
        let mut calls = Vec::new();
        let mut usage = TokenUsage::default();
        let mut retried = false;
        let outcome = self
            .run(
                prompt,
                tools,
                now,
                redactor,
                &mut calls,
                &mut usage,
                &mut retried,
            )
            .await;
        match &outcome {
            Ok(_) => tracing::info!(
                tool_calls = calls.len(),
                input_tokens = usage.input,
                output_tokens = usage.output,
                retried,
                "Model answer checked."
            ),
            Err(e) => tracing::warn!(
                reason = e.label(),
                tool_calls = calls.len(),
                input_tokens = usage.input,
                output_tokens = usage.output,
                "Model answer not used; the offline answer is given."
            ),
        }
        ModelAnswer {
            outcome,
            calls,
            usage,
            retried,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        prompt: &AskPrompt,
        tools: &QueryTools,
        now: DateTime<Utc>,
        redactor: &Redactor,
        calls: &mut Vec<ToolCall>,
        usage: &mut TokenUsage,
        retried: &mut bool,
    ) -> Result<String, ModelFailure> {
        let config = tool_config()?;
        let mut messages = vec![message(
            ConversationRole::User,
            vec![ContentBlock::Text(prompt.user.clone())],
        )?];
        let mut support = Support::new();
        let budget = self.settings.token_budget;
        loop {
            let spent = usage.input + usage.output;
            if spent >= budget {
                return Err(ModelFailure::TokenBudget(budget));
            }
            let room = u32::try_from(budget - spent).unwrap_or(u32::MAX);
            let output = self
                .converse(
                    &prompt.system,
                    &messages,
                    &config,
                    self.settings.max_tokens_per_call.min(room),
                )
                .await?;
            let used = output
                .usage()
                .map(|u| TokenUsage {
                    input: u64::try_from(u.input_tokens()).unwrap_or(0),
                    output: u64::try_from(u.output_tokens()).unwrap_or(0),
                })
                .unwrap_or_default();
            self.metrics.ask_tokens(used.input, used.output);
            usage.add(used);
            if usage.input + usage.output > budget {
                return Err(ModelFailure::TokenBudget(budget));
            }
            let content: Vec<ContentBlock> = output
                .output()
                .and_then(|o| o.as_message().ok())
                .map(|m| m.content().to_vec())
                .unwrap_or_default();
            let uses: Vec<_> = content
                .iter()
                .filter_map(|c| c.as_tool_use().ok())
                .cloned()
                .collect();
            let text = content
                .iter()
                .filter_map(|c| c.as_text().ok())
                .map(|t| t.trim())
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join("\n");
            let assistant: Vec<ContentBlock> = content
                .into_iter()
                .filter(|c| c.is_text() || c.is_tool_use())
                .collect();
            if !uses.is_empty() {
                let max = self.settings.max_tool_calls;
                if calls.len() + uses.len() > max as usize {
                    return Err(ModelFailure::ToolCallLimit(max));
                }
                messages.push(message(ConversationRole::Assistant, assistant)?);
                let mut results = Vec::new();
                for call in uses {
                    let input = from_document(call.input());
                    support.add_json(&input);
                    let (status, text, record) = match tools.call(call.name(), &input, now).await {
                        Ok(value) => {
                            let text = result_text(&value, redactor);
                            support.add_json(&value);
                            support.add_text(&text);
                            (
                                ToolResultStatus::Success,
                                text,
                                ToolCall {
                                    name: call.name().to_string(),
                                    input,
                                    result: value,
                                    error: None,
                                },
                            )
                        }
                        Err(ToolError::Store(e)) => {
                            return Err(ModelFailure::Model(BedrockError::Request(format!(
                                "a tool could not read the store: {e}"
                            ))))
                        }
                        Err(e) => {
                            let text = redactor.redact(&e.to_string()).into_owned();
                            (
                                ToolResultStatus::Error,
                                text.clone(),
                                ToolCall {
                                    name: call.name().to_string(),
                                    input,
                                    result: Value::Null,
                                    error: Some(text),
                                },
                            )
                        }
                    };
                    calls.push(record);
                    results.push(ContentBlock::ToolResult(
                        ToolResultBlock::builder()
                            .tool_use_id(call.tool_use_id())
                            .content(ToolResultContentBlock::Text(text))
                            .status(status)
                            .build()
                            .map_err(request_error)?,
                    ));
                }
                messages.push(message(ConversationRole::User, results)?);
                continue;
            }
            if text.is_empty() {
                return Err(ModelFailure::NoAnswer);
            }
            let bad = unsupported(&text, &support);
            if bad.is_empty() {
                return Ok(text);
            }
            if *retried {
                return Err(ModelFailure::UnsupportedNumbers(bad));
            }
            *retried = true;
            tracing::info!(
                unsupported = bad.len(),
                "Model answer has numbers no tool returned; asking once more."
            );
            messages.push(message(ConversationRole::Assistant, assistant)?);
            messages.push(message(
                ConversationRole::User,
                vec![ContentBlock::Text(feedback(&bad))],
            )?);
        }
    }

    async fn converse(
        &self,
        system: &str,
        messages: &[Message],
        tool_config: &ToolConfiguration,
        max_tokens: u32,
    ) -> Result<aws_sdk_bedrockruntime::operation::converse::ConverseOutput, BedrockError> {
        converse(
            &self.client,
            &ConverseCall {
                model_id: &self.settings.model_id,
                temperature: self.settings.temperature,
                timeout: self.settings.timeout,
                max_tokens,
            },
            system,
            messages,
            tool_config,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::tools::TOOLS;
    use super::*;

    #[test]
    fn every_tool_has_a_schema_and_no_schema_lacks_a_tool() {
        let names: Vec<&str> = tool_schemas().iter().map(|(n, _, _)| *n).collect();
        let listed: Vec<&str> = TOOLS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, listed);
        for (name, _, schema) in tool_schemas() {
            assert_eq!(schema["type"], "object", "{name}");
            assert_eq!(schema["additionalProperties"], false, "{name}");
        }
        assert!(tool_config().is_ok());
    }

    #[test]
    fn results_are_redacted_and_capped() {
        let redactor = Redactor::builtin().unwrap();
        let v = json!({"log": "token=ghp_abcdefghijklmnopqrstuvwxyz0123456789AB"});
        let text = result_text(&v, &redactor);
        assert!(!text.contains("ghp_abc"), "{text}");
        let big = json!({"x": "a".repeat(MAX_RESULT_BYTES * 2)});
        let text = result_text(&big, &redactor);
        assert!(text.len() < MAX_RESULT_BYTES + 100);
        assert!(text.ends_with("shorter window]"));
    }

    #[test]
    fn feedback_names_the_numbers() {
        let text = feedback(&["93.1%".into(), "42".into()]);
        assert!(text.contains("93.1%, 42"));
    }
}
