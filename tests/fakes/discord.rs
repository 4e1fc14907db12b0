//! A stateful stand-in for Discord REST on 127.0.0.1, speaking the
//! documented v10 wire format: `POST/PATCH /api/v10/channels/{id}/messages`
//! (JSON or `multipart/form-data` with `payload_json` and `files[n]`),
//! `PUT …/reactions/{emoji}/@me`, `POST /api/v10/users/@me/channels` and
//! `GET /api/v10/users/@me`, answering with full message objects.
//!
//! ```ignore
//! let discord = FakeDiscord::start().await;
//! discord.rate_limit_next(2.5);
//! // point serenity at discord.api_url()
//! assert_eq!(discord.messages("111").len(), 1);
//! ```

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};

/// The server every fake channel belongs to.
pub const GUILD_ID: &str = "290926798626357250";

pub const BOT_USER_ID: &str = "1100000000000000001";

/// A message as the fake holds it (edited in place by PATCH).
#[derive(Debug, Clone, PartialEq)]
pub struct DiscordMessage {
    pub id: String,
    pub channel_id: String,
    /// The JSON payload as sent (`payload_json` for multipart requests).
    pub payload: Value,
    pub files: Vec<DiscordFile>,
    pub edits: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DiscordFile {
    pub field: String,
    pub filename: String,
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DiscordReaction {
    pub channel_id: String,
    pub message_id: String,
    pub emoji: String,
}

#[derive(Debug, Clone)]
enum Failure {
    Status(u16),
    RateLimit(f64),
}

#[derive(Default)]
struct DiscordState {
    messages: Vec<DiscordMessage>,
    reactions: Vec<DiscordReaction>,
    failures: VecDeque<Failure>,
    paths: Vec<String>,
    tokens: Vec<String>,
    counter: u64,
    /// User id → role ids in the one server every channel belongs to.
    roles: std::collections::BTreeMap<String, Vec<String>>,
}

type Shared = Arc<Mutex<DiscordState>>;

/// The running fake; stops when dropped.
pub struct FakeDiscord {
    base: String,
    state: Shared,
    stop: tokio_util::sync::CancellationToken,
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeDiscord {
    pub async fn start() -> Self {
        let state: Shared = Arc::default();
        let app = Router::new()
            .route("/api/v10/channels/{channel}/messages", post(create_message))
            .route(
                "/api/v10/channels/{channel}/messages/{message}",
                patch(edit_message),
            )
            .route(
                "/api/v10/channels/{channel}/messages/{message}/reactions/{emoji}/@me",
                put(add_reaction),
            )
            .route("/api/v10/users/@me/channels", post(create_dm))
            .route("/api/v10/users/@me", get(current_user))
            .route("/api/v10/channels/{channel}", get(get_channel))
            .route("/api/v10/guilds/{guild}/members/{user}", get(get_member))
            .fallback(unknown)
            .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
            .with_state(state.clone());
        let (addr, stop) = pipemedic::standin::serve_on_loopback(app, "Discord").await;
        Self {
            base: format!("http://{addr}"),
            state,
            stop,
        }
    }

    /// Gives `user` these roles in the server.
    pub fn set_roles(&self, user: &str, roles: &[&str]) {
        self.with(|s| {
            s.roles.insert(
                user.to_string(),
                roles.iter().map(|r| (*r).to_string()).collect(),
            )
        });
    }

    /// The value for `discord.api_url`.
    pub fn api_url(&self) -> String {
        format!("{}/api/v10", self.base)
    }

    fn with<T>(&self, f: impl FnOnce(&mut DiscordState) -> T) -> T {
        f(&mut self.state.lock().expect("fake discord state"))
    }

    pub fn messages(&self, channel_id: &str) -> Vec<DiscordMessage> {
        self.with(|s| {
            s.messages
                .iter()
                .filter(|m| m.channel_id == channel_id)
                .cloned()
                .collect()
        })
    }

    pub fn reactions(&self) -> Vec<DiscordReaction> {
        self.with(|s| s.reactions.clone())
    }

    /// Every request as `METHOD /path`, in order.
    pub fn paths(&self) -> Vec<String> {
        self.with(|s| s.paths.clone())
    }

    /// `Authorization` headers seen, in order.
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

    /// The next request gets 429 with `retry_after` seconds (body and header).
    pub fn rate_limit_next(&self, retry_after_secs: f64) {
        self.with(|s| s.failures.push_back(Failure::RateLimit(retry_after_secs)));
    }
}

fn discord_error(status: StatusCode, code: u64, message: &str) -> Response {
    (status, Json(json!({"message": message, "code": code}))).into_response()
}

/// Records the request, checks the bot token and injects failures.
async fn gate(
    State(state): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let token = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let failure = {
        let mut s = state.lock().expect("state");
        s.paths
            .push(format!("{} {}", request.method(), request.uri().path()));
        if let Some(t) = &token {
            s.tokens.push(t.clone());
        }
        s.failures.pop_front()
    };
    match failure {
        Some(Failure::Status(status)) => {
            return discord_error(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                0,
                "fake failure",
            )
        }
        Some(Failure::RateLimit(secs)) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    ("retry-after", format!("{}", secs.ceil() as u64)),
                    ("x-ratelimit-scope", "user".to_string()),
                ],
                Json(json!({"message": "You are being rate limited.", "retry_after": secs, "global": false})),
            )
                .into_response()
        }
        None => {}
    }
    if !token.is_some_and(|t| t.starts_with("Bot ")) {
        return discord_error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    next.run(request).await
}

fn invalid_json() -> Response {
    discord_error(
        StatusCode::BAD_REQUEST,
        50109,
        "The request body contains invalid JSON.",
    )
}

async fn unknown() -> Response {
    discord_error(StatusCode::NOT_FOUND, 0, "404: Not Found")
}

fn is_snowflake(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
}

fn user(id: &str, name: &str, bot: bool) -> Value {
    json!({"id": id, "username": name, "discriminator": "0", "global_name": null,
           "avatar": null, "bot": bot})
}

fn message_json(m: &DiscordMessage) -> Value {
    let attachments: Vec<Value> = m
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            json!({"id": format!("13000000000000000{:02}", i), "filename": f.filename, "size": f.bytes.len(),
                   "url": format!("https://cdn.discordapp.com/attachments/{}/{}", m.channel_id, f.filename),
                   "proxy_url": format!("https://media.discordapp.net/attachments/{}/{}", m.channel_id, f.filename),
                   "content_type": f.content_type})
        })
        .collect();
    json!({
        "id": m.id, "channel_id": m.channel_id, "type": 0,
        "author": user(BOT_USER_ID, "pipemedic", true),
        "content": m.payload.get("content").cloned().unwrap_or(json!("")),
        "timestamp": "2026-11-25T12:00:00.000000+00:00",
        "edited_timestamp": if m.edits > 0 { json!("2026-11-25T12:01:00.000000+00:00") } else { Value::Null },
        "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [],
        "attachments": attachments,
        "embeds": m.payload.get("embeds").cloned().unwrap_or(json!([])),
        "components": [],
        "pinned": false, "flags": 0,
        "message_reference": m.payload.get("message_reference").cloned().unwrap_or(Value::Null),
    })
}

/// One part of a `multipart/form-data` body.
struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
}

/// Splits a `multipart/form-data` body into its parts.
fn multipart(content_type: &str, body: &[u8]) -> Option<Vec<Part>> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts = Vec::new();
    let mut rest = body;
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let start = find(rest, &delimiter)?;
    rest = &rest[start + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            break;
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let header_end = find(rest, b"\r\n\r\n")?;
        let headers = String::from_utf8_lossy(&rest[..header_end]).to_string();
        rest = &rest[header_end + 4..];
        let end = find(rest, &[b"\r\n".as_slice(), &delimiter].concat())?;
        let data = rest[..end].to_vec();
        rest = &rest[end + 2 + delimiter.len()..];
        let mut name = String::new();
        let mut filename = None;
        let mut part_type = None;
        for line in headers.lines() {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-disposition:") {
                for attr in line.split(';').map(str::trim) {
                    if let Some(v) = attr.strip_prefix("name=") {
                        name = v.trim_matches('"').to_string();
                    } else if let Some(v) = attr.strip_prefix("filename=") {
                        filename = Some(v.trim_matches('"').to_string());
                    }
                }
            } else if lower.starts_with("content-type:") {
                part_type = Some(line["content-type:".len()..].trim().to_string());
            }
        }
        parts.push(Part {
            name,
            filename,
            content_type: part_type,
            data,
        });
    }
    Some(parts)
}

/// The JSON payload and files of a create/edit request.
fn payload(headers: &HeaderMap, body: &Bytes) -> Option<(Value, Vec<DiscordFile>)> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("multipart/form-data") {
        let parts = multipart(content_type, body)?;
        let mut json_payload = Value::Null;
        let mut files = Vec::new();
        for part in parts {
            if part.name == "payload_json" {
                json_payload = serde_json::from_slice(&part.data).ok()?;
            } else if let Some(filename) = part.filename {
                files.push(DiscordFile {
                    field: part.name,
                    filename,
                    content_type: part.content_type,
                    bytes: part.data,
                });
            }
        }
        Some((json_payload, files))
    } else {
        Some((serde_json::from_slice(body).ok()?, Vec::new()))
    }
}

async fn create_message(
    State(state): State<Shared>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !is_snowflake(&channel) {
        return discord_error(StatusCode::NOT_FOUND, 10003, "Unknown Channel");
    }
    let Some((payload, files)) = payload(&headers, &body) else {
        return invalid_json();
    };
    let empty = |key: &str| {
        payload
            .get(key)
            .is_none_or(|v| v.as_array().is_some_and(Vec::is_empty) || v.is_null())
    };
    if empty("content") && empty("embeds") && files.is_empty() {
        return discord_error(
            StatusCode::BAD_REQUEST,
            50006,
            "Cannot send an empty message",
        );
    }
    let mut s = state.lock().expect("state");
    s.counter += 1;
    let message = DiscordMessage {
        id: format!("{}", 1_200_000_000_000_000_000u64 + s.counter),
        channel_id: channel,
        payload,
        files,
        edits: 0,
    };
    s.messages.push(message.clone());
    Json(message_json(&message)).into_response()
}

async fn edit_message(
    State(state): State<Shared>,
    Path((channel, message_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((payload, files)) = payload(&headers, &body) else {
        return invalid_json();
    };
    let mut s = state.lock().expect("state");
    let Some(message) = s
        .messages
        .iter_mut()
        .find(|m| m.channel_id == channel && m.id == message_id)
    else {
        return discord_error(StatusCode::NOT_FOUND, 10008, "Unknown Message");
    };
    if let (Value::Object(current), Value::Object(update)) = (&mut message.payload, payload) {
        current.extend(update);
    }
    message.files.extend(files);
    message.edits += 1;
    Json(message_json(message)).into_response()
}

async fn add_reaction(
    State(state): State<Shared>,
    Path((channel, message_id, emoji)): Path<(String, String, String)>,
) -> Response {
    let mut s = state.lock().expect("state");
    if !s
        .messages
        .iter()
        .any(|m| m.channel_id == channel && m.id == message_id)
    {
        return discord_error(StatusCode::NOT_FOUND, 10008, "Unknown Message");
    }
    let reaction = DiscordReaction {
        channel_id: channel,
        message_id,
        emoji,
    };
    if !s.reactions.contains(&reaction) {
        s.reactions.push(reaction);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn create_dm(Json(body): Json<Value>) -> Response {
    let Some(recipient) = body.get("recipient_id").and_then(Value::as_str) else {
        return discord_error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
    };
    let id = format!("9{}", &recipient[recipient.len().saturating_sub(17)..]);
    Json(
        json!({"id": id, "type": 1, "last_message_id": null, "flags": 0,
                "recipients": [user(recipient, "someone", false)]}),
    )
    .into_response()
}

/// Every channel belongs to server [`GUILD_ID`].
async fn get_channel(Path(channel): Path<String>) -> Response {
    Json(json!({"id": channel, "type": 0, "guild_id": GUILD_ID, "name": "alerts"})).into_response()
}

async fn get_member(
    State(state): State<Shared>,
    Path((guild, user)): Path<(String, String)>,
) -> Response {
    if guild != GUILD_ID {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "Unknown Guild", "code": 10004})),
        )
            .into_response();
    }
    let roles = state
        .lock()
        .expect("fake discord state")
        .roles
        .get(&user)
        .cloned()
        .unwrap_or_default();
    Json(
        json!({"user": {"id": user, "username": "someone", "discriminator": "0"},
                "roles": roles, "joined_at": "2024-01-01T00:00:00+00:00",
                "deaf": false, "mute": false, "flags": 0}),
    )
    .into_response()
}

async fn current_user() -> Response {
    Json(
        json!({"id": BOT_USER_ID, "username": "pipemedic", "discriminator": "0",
                "global_name": null, "avatar": null, "bot": true, "verified": true,
                "mfa_enabled": false, "flags": 0}),
    )
    .into_response()
}
