//! A stand-in for the Amazon Bedrock Runtime Converse API
//! (`POST /model/{modelId}/converse`, restJson1): requests are recorded,
//! answers come from a script. A successful answer is
//! `{"output": {"message": {"role": "assistant", "content": [...]}},
//! "stopReason", "usage": {"inputTokens", "outputTokens", "totalTokens"},
//! "metrics": {"latencyMs"}}`; errors carry the `x-amzn-ErrorType` header
//! and `{"message"}`. Point `aws.endpoints.bedrock` at [`FakeBedrock::url`].
//!
//! ```ignore
//! let fake = FakeBedrock::start().await;
//! fake.fail_next(429, "ThrottlingException");
//! fake.reply_with_tool(json!({"summary": "...", ...}));
//! // ... draft a plan ...
//! assert!(fake.requests()[0]["toolConfig"]["toolChoice"]["tool"]["name"] == "submit_plan");
//! ```
//!
//! Tool loops are scripted as sequences: `reply_with_tools(&[...])` answers
//! with several `toolUse` blocks at once, `reply_with_text` ends the loop,
//! and `keep_replying_with_tool` answers every request left unscripted with
//! the same tool call (a model that never stops). Requests are recorded
//! with their messages, so tests can see what reached the model and where
//! (`texts_sent`, `tool_results_sent`).
//!
//! With nothing scripted it answers 500 `InternalServerException`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// One scripted answer.
#[derive(Debug, Clone)]
enum Reply {
    /// A `toolUse` block calling `name` with `input`.
    Tool {
        name: String,
        input: Value,
    },
    /// Several `toolUse` blocks in one answer.
    Tools(Vec<(String, Value)>),
    Text(String),
    Raw {
        status: u16,
        body: String,
    },
    Error {
        status: u16,
        error_type: String,
    },
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Request {
    /// The model id from the path (decoded).
    pub model_id: String,
    /// The body as sent.
    pub raw: String,
    /// The body parsed (Null when it was not JSON).
    pub body: Value,
}

#[derive(Default)]
struct FakeState {
    replies: VecDeque<Reply>,
    /// Used whenever `replies` is empty.
    sticky: Option<Reply>,
    delays: VecDeque<Duration>,
    requests: Vec<Request>,
    answered: u64,
}

/// The running fake; stops when dropped.
pub struct FakeBedrock {
    addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    stop: CancellationToken,
}

impl Drop for FakeBedrock {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeBedrock {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let app = Router::new()
            .route("/model/{model_id}/converse", post(converse))
            .with_state(state.clone());
        let (addr, stop) = pipemedic::standin::serve_on_loopback(app, "Bedrock").await;
        Self { addr, state, stop }
    }

    /// The endpoint URL to configure (`aws.endpoints.bedrock`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Next answer: a call of the `submit_plan` tool with `input`.
    pub fn reply_with_tool(&self, input: Value) -> &Self {
        self.reply_with_named_tool("submit_plan", input)
    }

    /// Next answer: a call of the tool `name` with `input`.
    pub fn reply_with_named_tool(&self, name: &str, input: Value) -> &Self {
        self.state().replies.push_back(Reply::Tool {
            name: name.into(),
            input,
        });
        self
    }

    /// Next answer: one `toolUse` block per `(name, input)`, in order.
    pub fn reply_with_tools(&self, calls: &[(&str, Value)]) -> &Self {
        self.state().replies.push_back(Reply::Tools(
            calls
                .iter()
                .map(|(n, i)| (n.to_string(), i.clone()))
                .collect(),
        ));
        self
    }

    /// Every request left unscripted is answered with a call of `name`.
    pub fn keep_replying_with_tool(&self, name: &str, input: Value) -> &Self {
        self.state().sticky = Some(Reply::Tool {
            name: name.into(),
            input,
        });
        self
    }

    /// Next answer: plain text, no tool call (`stopReason: end_turn`).
    pub fn reply_with_text(&self, text: &str) -> &Self {
        self.state().replies.push_back(Reply::Text(text.into()));
        self
    }

    /// Next answer: exactly this status and body.
    pub fn reply_raw(&self, status: u16, body: &str) -> &Self {
        self.state().replies.push_back(Reply::Raw {
            status,
            body: body.into(),
        });
        self
    }

    /// Next answer: an AWS error (`ThrottlingException` with 429,
    /// `InternalServerException` with 500 ...).
    pub fn fail_next(&self, status: u16, error_type: &str) -> &Self {
        self.state().replies.push_back(Reply::Error {
            status,
            error_type: error_type.into(),
        });
        self
    }

    /// The next request is answered only after `delay`.
    pub fn delay_next(&self, delay: Duration) -> &Self {
        self.state().delays.push_back(delay);
        self
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.state().requests.clone()
    }

    /// Every text block of request `n`, with the role of its message and
    /// where it sat: `system`, `text`, or `tool_result` (a tool result's
    /// text content).
    pub fn texts_sent(&self, n: usize) -> Vec<(String, String, String)> {
        let body = &self.requests()[n].body;
        let mut out = Vec::new();
        for s in body["system"].as_array().into_iter().flatten() {
            if let Some(t) = s["text"].as_str() {
                out.push(("system".into(), "system".into(), t.to_string()));
            }
        }
        for m in body["messages"].as_array().into_iter().flatten() {
            let role = m["role"].as_str().unwrap_or("").to_string();
            for c in m["content"].as_array().into_iter().flatten() {
                if let Some(t) = c["text"].as_str() {
                    out.push((role.clone(), "text".into(), t.to_string()));
                }
                for r in c["toolResult"]["content"].as_array().into_iter().flatten() {
                    if let Some(t) = r["text"].as_str() {
                        out.push((role.clone(), "tool_result".into(), t.to_string()));
                    }
                    if !r["json"].is_null() {
                        out.push((role.clone(), "tool_result".into(), r["json"].to_string()));
                    }
                }
            }
        }
        out
    }

    /// The tool results of request `n`: `(toolUseId, status, text)`.
    pub fn tool_results_sent(&self, n: usize) -> Vec<(String, String, String)> {
        let body = &self.requests()[n].body;
        let mut out = Vec::new();
        for m in body["messages"].as_array().into_iter().flatten() {
            for c in m["content"].as_array().into_iter().flatten() {
                let r = &c["toolResult"];
                if r.is_null() {
                    continue;
                }
                let text = r["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|b| b["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n");
                out.push((
                    r["toolUseId"].as_str().unwrap_or("").to_string(),
                    r["status"].as_str().unwrap_or("success").to_string(),
                    text,
                ));
            }
        }
        out
    }

    /// Scripted answers not used yet.
    pub fn pending(&self) -> usize {
        self.state().replies.len()
    }
}

fn error(status: u16, error_type: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [
            ("content-type", "application/json"),
            ("x-amzn-errortype", error_type),
            ("x-amzn-requestid", "fake-request"),
        ],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

fn answer(content: Value, stop_reason: &str, n: u64) -> Response {
    let input_tokens = 1000 + n;
    let output_tokens = 200 + n;
    let body = json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": input_tokens, "outputTokens": output_tokens,
                  "totalTokens": input_tokens + output_tokens},
        "metrics": {"latencyMs": 420}
    });
    (
        StatusCode::OK,
        [
            ("content-type", "application/json"),
            ("x-amzn-requestid", "fake-request"),
        ],
        body.to_string(),
    )
        .into_response()
}

async fn converse(
    State(state): State<Arc<Mutex<FakeState>>>,
    Path(model_id): Path<String>,
    body: Bytes,
) -> Response {
    let raw = String::from_utf8_lossy(&body).into_owned();
    let (reply, delay, n) = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.requests.push(Request {
            model_id,
            body: serde_json::from_str(&raw).unwrap_or(Value::Null),
            raw,
        });
        s.answered += 1;
        let reply = s.replies.pop_front().or_else(|| s.sticky.clone());
        (reply, s.delays.pop_front(), s.answered)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    match reply {
        None => error(500, "InternalServerException", "no answer scripted"),
        Some(Reply::Tool { name, input }) => answer(
            json!([
                {"text": "I will submit the plan."},
                {"toolUse": {"toolUseId": format!("tooluse_{n}"), "name": name, "input": input}}
            ]),
            "tool_use",
            n,
        ),
        Some(Reply::Tools(calls)) => answer(
            Value::Array(
                calls
                    .into_iter()
                    .enumerate()
                    .map(|(i, (name, input))| {
                        json!({"toolUse": {"toolUseId": format!("tooluse_{n}_{i}"),
                                           "name": name, "input": input}})
                    })
                    .collect(),
            ),
            "tool_use",
            n,
        ),
        Some(Reply::Text(text)) => answer(json!([{ "text": text }]), "end_turn", n),
        Some(Reply::Raw { status, body }) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [("content-type", "application/json")],
            body,
        )
            .into_response(),
        Some(Reply::Error { status, error_type }) => error(status, &error_type, "scripted failure"),
    }
}
