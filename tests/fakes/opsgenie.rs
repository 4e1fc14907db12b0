//! A stand-in for Opsgenie's Alert API: `POST /v2/alerts` creates an alert
//! and `POST /v2/alerts/{identifier}/close?identifierType=alias` closes
//! one, both answering `202 {"result": "Request will be processed",
//! "took", "requestId"}` as Opsgenie does (it processes them
//! asynchronously). Requests need `Authorization: GenieKey <key>` with the
//! key the fake was started with (else `401`); an alert without a
//! `message`, or with one over 130 characters, gets `422`. An open alert's
//! alias deduplicates a second create. Errors use Opsgenie's body
//! `{"message", "took", "requestId"}`. Point `paging.opsgenie.api_url` at
//! [`FakeOpsgenie::url`].

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub use crate::fakes::pagerduty::Call;

#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

/// An alert as Opsgenie keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// `open` or `closed`.
    pub status: String,
    /// Creates deduplicated into it.
    pub count: usize,
    pub message: String,
}

struct FakeState {
    key: String,
    calls: Vec<Call>,
    replies: VecDeque<Reply>,
    alerts: BTreeMap<String, Alert>,
}

/// The running fake; stops when dropped.
pub struct FakeOpsgenie {
    addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    stop: CancellationToken,
}

impl Drop for FakeOpsgenie {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

static REQUESTS: AtomicU64 = AtomicU64::new(1);

fn request_id() -> String {
    format!(
        "43a29c5c-3dbf-4fa4-9c26-{:012}",
        REQUESTS.fetch_add(1, Ordering::Relaxed)
    )
}

impl FakeOpsgenie {
    /// A fake accepting `GenieKey {key}`.
    pub async fn start(key: &str) -> Self {
        let state = Arc::new(Mutex::new(FakeState {
            key: key.to_string(),
            calls: Vec::new(),
            replies: VecDeque::new(),
            alerts: BTreeMap::new(),
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let (addr, stop) = pipemedic::standin::serve_on_loopback(app, "Opsgenie").await;
        Self { addr, state, stop }
    }

    /// The base URL to configure (`paging.opsgenie.api_url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next authenticated request gets this answer instead.
    pub fn reply_next(&self, status: u16, headers: &[(&str, &str)], body: Value) {
        self.state().replies.push_back(Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body,
        });
    }

    /// The next request is throttled (429), with `Retry-After` when given.
    pub fn throttle_next(&self, retry_after: Option<&str>) {
        let headers: Vec<(&str, &str)> = retry_after
            .map(|r| ("retry-after", r))
            .into_iter()
            .collect();
        self.reply_next(
            429,
            &headers,
            json!({"message": "Too many requests", "took": 0.001, "requestId": request_id()}),
        );
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// The alerts Opsgenie holds, by alias.
    pub fn alerts(&self) -> BTreeMap<String, Alert> {
        self.state().alerts.clone()
    }
}

fn answer(status: u16, headers: &[(String, String)], body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            axum::http::HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn error(status: u16, message: &str) -> Response {
    answer(
        status,
        &[],
        &json!({"message": message, "took": 0.002, "requestId": request_id()}),
    )
}

fn accepted() -> Response {
    answer(
        202,
        &[],
        &json!({"result": "Request will be processed", "took": 0.107, "requestId": request_id()}),
    )
}

async fn handle(
    State(state): State<Arc<Mutex<FakeState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    state.calls.push(Call {
        method: method.to_string(),
        path: match uri.query() {
            Some(q) => format!("{}?{q}", uri.path()),
            None => uri.path().to_string(),
        },
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let expected = format!("GenieKey {}", state.key);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return error(401, "Could not authenticate");
    }
    if let Some(reply) = state.replies.pop_front() {
        return answer(reply.status, &reply.headers, &reply.body);
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "Request body is not valid JSON");
    };
    let segments: Vec<String> = uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .map(|s| {
            urlencoding::decode(s)
                .map(|c| c.into_owned())
                .unwrap_or_default()
        })
        .collect();
    match (
        method,
        segments
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
    ) {
        (Method::POST, ["v2", "alerts"]) => {
            let message = json["message"].as_str().unwrap_or_default().to_string();
            if message.trim().is_empty() {
                return error(422, "Message can not be empty.");
            }
            if message.chars().count() > 130 {
                return error(422, "Message can not be longer than 130 characters.");
            }
            let alias = json["alias"].as_str().unwrap_or(&message).to_string();
            let alert = state.alerts.entry(alias).or_insert(Alert {
                status: "open".into(),
                count: 0,
                message: message.clone(),
            });
            if alert.status == "closed" {
                alert.status = "open".into();
            }
            alert.count += 1;
            accepted()
        }
        (Method::POST, ["v2", "alerts", identifier, "close"]) => {
            if !uri
                .query()
                .unwrap_or_default()
                .split('&')
                .any(|p| p == "identifierType=alias")
            {
                return error(422, "identifierType must be alias for an alias identifier");
            }
            match state.alerts.get_mut(*identifier) {
                Some(alert) => {
                    alert.status = "closed".into();
                    accepted()
                }
                None => error(404, "Alert does not exist"),
            }
        }
        _ => error(404, "Not found"),
    }
}
