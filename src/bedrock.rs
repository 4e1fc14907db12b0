//! Amazon Bedrock, shared by the planner and by asking: one Converse call
//! with its timeout and classified errors ([`converse`], [`BedrockError`]),
//! token counts ([`TokenUsage`]) and the JSON ↔ Smithy document
//! conversion tool inputs need. It knows nothing of plans or questions:
//! prompts, tools and reading answers stay with their callers.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message, SystemContentBlock,
    ToolConfiguration,
};
use aws_smithy_types::{Document, Number};
use serde::Serialize;
use serde_json::Value;

use crate::aws::iam::{ArnForm, IamGrant};
use crate::aws::ErrorClass;

/// What [`converse`] needs from IAM: Converse is allowed by
/// `bedrock:InvokeModel` on the model it names (the planner's and, when it
/// differs, the one `ask` uses).
pub const IAM: &[IamGrant] = &[IamGrant::new(
    "bedrock:InvokeModel",
    ArnForm::BedrockFoundationModel,
)];

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

/// Why no answer came back from the model at all.
#[derive(Debug, thiserror::Error)]
pub enum BedrockError {
    #[error("Bedrock did not answer within {}s", .0.as_secs())]
    Timeout(Duration),
    #[error("Bedrock call failed ({}): {message}", class.as_str())]
    Service { class: ErrorClass, message: String },
    #[error("cannot build the Bedrock request: {0}")]
    Request(String),
}

impl BedrockError {
    /// Whether asking again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout(_) => true,
            Self::Service { class, .. } => class.is_retryable(),
            Self::Request(_) => false,
        }
    }
}

/// The settings of one Converse call.
pub struct ConverseCall<'a> {
    pub model_id: &'a str,
    pub temperature: f32,
    /// Time allowed for the call, SDK retries included.
    pub timeout: Duration,
    pub max_tokens: u32,
}

/// One Converse call with a system prompt, the conversation so far and the
/// tools; a timeout or a service error comes back classified (and logged
/// without the request). Shared by the planner and by asking.
pub async fn converse(
    client: &aws_sdk_bedrockruntime::Client,
    call: &ConverseCall<'_>,
    system: &str,
    messages: &[Message],
    tool_config: &ToolConfiguration,
) -> Result<aws_sdk_bedrockruntime::operation::converse::ConverseOutput, BedrockError> {
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
            Err(BedrockError::Timeout(call.timeout))
        }
        Ok(Ok(output)) => Ok(output),
        Ok(Err(e)) => {
            let class = crate::aws::classify(&e);
            let message = crate::aws::describe(&e);
            tracing::warn!(class = class.as_str(), error = %message, "Bedrock call failed.");
            Err(BedrockError::Service { class, message })
        }
    }
}

/// A request that could not be built.
pub fn request_error(e: impl std::fmt::Display) -> BedrockError {
    BedrockError::Request(e.to_string())
}

/// One message of a conversation.
pub fn message(
    role: ConversationRole,
    content: Vec<ContentBlock>,
) -> Result<Message, BedrockError> {
    Message::builder()
        .role(role)
        .set_content(Some(content))
        .build()
        .map_err(request_error)
}

/// A JSON value as a Smithy document.
pub fn to_document(value: &Value) -> Document {
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
pub fn from_document(doc: &Document) -> Value {
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
}
