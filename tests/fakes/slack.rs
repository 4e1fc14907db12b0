//! A stateful stand-in for the Slack Web API on 127.0.0.1, speaking the
//! documented wire format: `POST/GET /api/{method}` with JSON or form
//! bodies and `{"ok": ...}` answers, plus the external upload URL that
//! `files.getUploadURLExternal` hands out.
//!
//! ```ignore
//! let slack = FakeSlack::start().await;
//! slack.rate_limit_next(7);
//! // point slack-morphism at slack.api_url()
//! assert_eq!(slack.messages("C1").len(), 1);
//! ```

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

/// The bot identity the fake answers `auth.test` with.
pub const BOT_USER_ID: &str = "U0FAKEBOT";
pub const BOT_ID: &str = "B0FAKEBOT";

/// A message as the fake holds it (updated in place by `chat.update`).
#[derive(Debug, Clone, PartialEq)]
pub struct SlackMessage {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub text: Option<String>,
    pub blocks: Value,
    pub updates: u32,
}

/// A file upload through the external upload flow.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackUpload {
    pub file_id: String,
    pub filename: String,
    pub length: usize,
    pub bytes: Vec<u8>,
    pub title: Option<String>,
    pub channel_id: Option<String>,
    pub thread_ts: Option<String>,
    /// `files.completeUploadExternal` was called for it.
    pub completed: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlackReaction {
    pub channel: String,
    pub ts: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlackEphemeral {
    pub channel: String,
    pub user: String,
    pub text: String,
}

#[derive(Debug, Clone)]
enum Failure {
    Status(u16),
    RateLimit(u64),
    Error(String),
}

#[derive(Default)]
struct SlackState {
    base: String,
    messages: Vec<SlackMessage>,
    uploads: Vec<SlackUpload>,
    reactions: Vec<SlackReaction>,
    ephemerals: Vec<SlackEphemeral>,
    failures: VecDeque<Failure>,
    calls: Vec<String>,
    counter: u64,
    tokens: Vec<String>,
    /// User group id → member user ids (`usergroups.users.list`).
    usergroups: std::collections::BTreeMap<String, Vec<String>>,
    /// User id → profile email (`users.info`); users not here exist
    /// without an email.
    emails: std::collections::BTreeMap<String, String>,
}

/// The running fake; stops when dropped.
pub struct FakeSlack {
    base: String,
    state: Arc<Mutex<SlackState>>,
    stop: tokio_util::sync::CancellationToken,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

type Shared = Arc<Mutex<SlackState>>;

impl FakeSlack {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(SlackState::default()));
        let app = Router::new()
            .route("/api/{method}", any(api))
            .route("/upload/{file_id}", post(upload))
            .with_state(state.clone());
        let (addr, stop) = pipemedic::standin::serve_on_loopback(app, "Slack").await;
        // Known before anyone has the address, so before any request.
        let base = format!("http://{addr}");
        state.lock().expect("state").base = base.clone();
        Self { base, state, stop }
    }

    /// Makes `users` the members of user group `group`.
    pub fn set_usergroup(&self, group: &str, users: &[&str]) {
        self.state.lock().expect("state").usergroups.insert(
            group.to_string(),
            users.iter().map(|u| (*u).to_string()).collect(),
        );
    }

    /// Gives `user` a profile email (`users.info` answers with it).
    pub fn set_email(&self, user: &str, email: &str) {
        self.state
            .lock()
            .expect("state")
            .emails
            .insert(user.to_string(), email.to_string());
    }

    /// The value for `slack.api_url`.
    pub fn api_url(&self) -> String {
        format!("{}/api", self.base)
    }

    fn with<T>(&self, f: impl FnOnce(&mut SlackState) -> T) -> T {
        f(&mut self.state.lock().expect("fake slack state"))
    }

    /// Messages in `channel`, oldest first (with their latest content).
    pub fn messages(&self, channel: &str) -> Vec<SlackMessage> {
        self.with(|s| {
            s.messages
                .iter()
                .filter(|m| m.channel == channel)
                .cloned()
                .collect()
        })
    }

    pub fn uploads(&self) -> Vec<SlackUpload> {
        self.with(|s| s.uploads.clone())
    }

    pub fn reactions(&self) -> Vec<SlackReaction> {
        self.with(|s| s.reactions.clone())
    }

    pub fn ephemerals(&self) -> Vec<SlackEphemeral> {
        self.with(|s| s.ephemerals.clone())
    }

    /// Every Web API method called, in order (the upload URL shows as `upload`).
    pub fn calls(&self) -> Vec<String> {
        self.with(|s| s.calls.clone())
    }

    /// Bearer tokens seen, in order.
    pub fn tokens(&self) -> Vec<String> {
        self.with(|s| s.tokens.clone())
    }

    /// The next `n` requests fail with HTTP `status`.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.with(|s| {
            s.failures
                .extend(std::iter::repeat_n(Failure::Status(status), n))
        });
    }

    /// The next request gets HTTP 429 with `Retry-After: secs`.
    pub fn rate_limit_next(&self, retry_after_secs: u64) {
        self.with(|s| s.failures.push_back(Failure::RateLimit(retry_after_secs)));
    }

    /// The next request gets `{"ok": false, "error": code}`.
    pub fn error_next(&self, code: &str) {
        self.with(|s| s.failures.push_back(Failure::Error(code.to_string())));
    }
}

fn ok(mut body: Value) -> Response {
    body["ok"] = json!(true);
    Json(body).into_response()
}

fn slack_error(code: &str) -> Response {
    Json(json!({"ok": false, "error": code})).into_response()
}

fn injected(state: &Shared) -> Option<Response> {
    let failure = state.lock().ok()?.failures.pop_front()?;
    Some(match failure {
        Failure::Status(status) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            Json(json!({"ok": false, "error": "fake_failure"})),
        )
            .into_response(),
        Failure::RateLimit(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
            Json(json!({"ok": false, "error": "ratelimited"})),
        )
            .into_response(),
        Failure::Error(code) => slack_error(&code),
    })
}

/// Request parameters from a JSON body, a form body or the query string.
fn params(headers: &HeaderMap, query: Option<String>, body: &Bytes) -> Map<String, Value> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut map = Map::new();
    if let Some(q) = query {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&q).unwrap_or_default();
        for (k, v) in pairs {
            map.insert(k, Value::String(v));
        }
    }
    if content_type.starts_with("application/json") {
        if let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) {
            map.extend(obj);
        }
    } else if !body.is_empty() {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
        for (k, v) in pairs {
            // Form-encoded structured arguments are JSON strings.
            let value = match v.trim_start().chars().next() {
                Some('[') | Some('{') => serde_json::from_str(&v).unwrap_or(Value::String(v)),
                _ => Value::String(v),
            };
            map.insert(k, value);
        }
    }
    map
}

fn text(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key).and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

async fn api(
    State(state): State<Shared>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    {
        let mut s = state.lock().expect("state");
        s.calls.push(method.clone());
        if let Some(t) = &token {
            s.tokens.push(t.clone());
        }
    }
    if let Some(response) = injected(&state) {
        return response;
    }
    if token.is_none() {
        return slack_error("not_authed");
    }
    let p = params(&headers, query, &body);
    let mut s = state.lock().expect("state");
    match method.as_str() {
        "usergroups.users.list" => match text(&p, "usergroup").and_then(|g| s.usergroups.get(&g)) {
            Some(users) => ok(json!({ "users": users })),
            None => slack_error("no_such_subteam"),
        },
        "users.info" => match text(&p, "user") {
            Some(user) => {
                let mut profile =
                    json!({"real_name": format!("Person {user}"), "display_name": user});
                if let Some(email) = s.emails.get(&user) {
                    profile["email"] = json!(email);
                }
                ok(
                    json!({"user": {"id": user, "team_id": "T0FAKE", "name": user.to_lowercase(),
                                   "deleted": false, "profile": profile}}),
                )
            }
            None => slack_error("user_not_found"),
        },
        "auth.test" => ok(json!({
            "url": "https://pipemedic-test.slack.com/", "team": "pipemedic test",
            "user": "pipemedic", "team_id": "T0FAKE", "user_id": BOT_USER_ID, "bot_id": BOT_ID
        })),
        "chat.postMessage" => {
            let Some(channel) = text(&p, "channel") else {
                return slack_error("channel_not_found");
            };
            if text(&p, "text").is_none() && p.get("blocks").is_none() {
                return slack_error("no_text");
            }
            s.counter += 1;
            let ts = format!("{}.{:06}", 1_764_064_800 + s.counter, s.counter);
            let message = SlackMessage {
                channel: channel.clone(),
                ts: ts.clone(),
                thread_ts: text(&p, "thread_ts"),
                text: text(&p, "text"),
                blocks: p.get("blocks").cloned().unwrap_or(Value::Null),
                updates: 0,
            };
            s.messages.push(message.clone());
            ok(json!({"channel": channel, "ts": ts, "message": {
                "type": "message", "text": message.text, "ts": ts, "user": BOT_USER_ID, "bot_id": BOT_ID,
                "thread_ts": message.thread_ts, "blocks": message.blocks
            }}))
        }
        "chat.update" => {
            let (Some(channel), Some(ts)) = (text(&p, "channel"), text(&p, "ts")) else {
                return slack_error("invalid_arguments");
            };
            let Some(message) = s
                .messages
                .iter_mut()
                .find(|m| m.channel == channel && m.ts == ts)
            else {
                return slack_error("message_not_found");
            };
            message.text = text(&p, "text");
            message.blocks = p.get("blocks").cloned().unwrap_or(Value::Null);
            message.updates += 1;
            ok(json!({"channel": channel, "ts": ts, "text": message.text,
                "message": {"text": message.text, "user": BOT_USER_ID, "bot_id": BOT_ID}}))
        }
        "reactions.add" => {
            let (Some(channel), Some(ts), Some(name)) =
                (text(&p, "channel"), text(&p, "timestamp"), text(&p, "name"))
            else {
                return slack_error("invalid_arguments");
            };
            if !s
                .messages
                .iter()
                .any(|m| m.channel == channel && m.ts == ts)
            {
                return slack_error("message_not_found");
            }
            let reaction = SlackReaction { channel, ts, name };
            if s.reactions.contains(&reaction) {
                return slack_error("already_reacted");
            }
            s.reactions.push(reaction);
            ok(json!({}))
        }
        "chat.postEphemeral" => {
            let (Some(channel), Some(user)) = (text(&p, "channel"), text(&p, "user")) else {
                return slack_error("invalid_arguments");
            };
            s.counter += 1;
            let ts = format!("{}.{:06}", 1_764_064_800 + s.counter, s.counter);
            s.ephemerals.push(SlackEphemeral {
                channel,
                user,
                text: text(&p, "text").unwrap_or_default(),
            });
            ok(json!({"message_ts": ts}))
        }
        "files.getUploadURLExternal" => {
            let (Some(filename), Some(length)) = (text(&p, "filename"), text(&p, "length")) else {
                return slack_error("invalid_arguments");
            };
            let Ok(length) = length.parse::<usize>() else {
                return slack_error("invalid_arguments");
            };
            s.counter += 1;
            let file_id = format!("F{:08}", s.counter);
            s.uploads.push(SlackUpload {
                file_id: file_id.clone(),
                filename,
                length,
                bytes: Vec::new(),
                title: None,
                channel_id: None,
                thread_ts: None,
                completed: false,
            });
            let upload_url = format!("{}/upload/{file_id}", s.base);
            ok(json!({"upload_url": upload_url, "file_id": file_id}))
        }
        "files.completeUploadExternal" => {
            let Some(Value::Array(files)) = p.get("files").cloned() else {
                return slack_error("invalid_arguments");
            };
            let channel_id = text(&p, "channel_id");
            let thread_ts = text(&p, "thread_ts");
            let mut done = Vec::new();
            for file in files {
                let Some(id) = file.get("id").and_then(Value::as_str) else {
                    return slack_error("invalid_arguments");
                };
                let Some(upload) = s.uploads.iter_mut().find(|u| u.file_id == id) else {
                    return slack_error("file_not_found");
                };
                if upload.bytes.len() != upload.length {
                    return slack_error("file_upload_size_mismatch");
                }
                upload.title = file
                    .get("title")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                upload.channel_id = channel_id.clone();
                upload.thread_ts = thread_ts.clone();
                upload.completed = true;
                done.push(json!({"id": id, "title": upload.title, "name": upload.filename}));
            }
            ok(json!({"files": done}))
        }
        _ => slack_error("unknown_method"),
    }
}

async fn upload(State(state): State<Shared>, Path(file_id): Path<String>, body: Bytes) -> Response {
    state.lock().expect("state").calls.push("upload".into());
    if let Some(response) = injected(&state) {
        return response;
    }
    let mut s = state.lock().expect("state");
    let Some(upload) = s.uploads.iter_mut().find(|u| u.file_id == file_id) else {
        return (StatusCode::NOT_FOUND, "unknown upload").into_response();
    };
    upload.bytes = body.to_vec();
    (
        [("content-type", "text/plain")],
        format!("OK - {}", body.len()),
    )
        .into_response()
}
