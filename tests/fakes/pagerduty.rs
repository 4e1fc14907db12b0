//! A stand-in for PagerDuty's Events API v2: `POST /v2/enqueue` takes an
//! alert event and answers as PagerDuty documents it. A well-formed event
//! (a 32-character `routing_key`, `event_action` trigger / acknowledge /
//! resolve, a `dedup_key` of at most 255 characters — required for a
//! resolve — and, for a trigger, `payload.summary`, `payload.source` and a
//! valid `payload.severity`) gets `202 {"status": "success", "message":
//! "Event processed", "dedup_key"}`; anything else `400 {"status":
//! "invalid event", "message": "Event object is invalid", "errors"}`. The
//! fake keeps PagerDuty's alerts: one per dedup key, triggered or resolved.
//! Point `paging.pagerduty.events_url` at [`FakePagerDuty::url`].
//!
//! ```ignore
//! let pd = FakePagerDuty::start().await;
//! pd.throttle_next(Some("3"));             // 429 with Retry-After: 3
//! pd.reply_next(400, json!({"status": "invalid event", "message": "…", "errors": ["…"]}));
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Call {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

/// An alert as PagerDuty keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// `triggered` or `resolved`.
    pub status: String,
    /// Trigger events accepted for it (deduplicated into this one alert).
    pub triggers: usize,
}

#[derive(Default)]
struct FakeState {
    calls: Vec<Call>,
    replies: VecDeque<Reply>,
    alerts: BTreeMap<String, Alert>,
}

/// The running fake; stops when dropped.
pub struct FakePagerDuty {
    addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    stop: CancellationToken,
}

impl Drop for FakePagerDuty {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakePagerDuty {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let (addr, stop) = pipemedic::standin::serve_on_loopback(app, "PagerDuty").await;
        Self { addr, state, stop }
    }

    /// The base URL to configure (`paging.pagerduty.events_url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next request to `/v2/enqueue` gets this answer instead.
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
            json!({"status": "throttle event", "message": "Requests for this service are arriving too quickly. Please retry later."}),
        );
    }

    /// Every request received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// The alerts PagerDuty holds, by dedup key.
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

/// What is wrong with an event, as PagerDuty words it.
fn problems(event: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let text = |v: &Value| v.as_str().map(str::to_string);
    match text(&event["routing_key"]) {
        Some(k) if k.len() == 32 => {}
        Some(_) => {
            errors.push("Length of 'routing_key' is incorrect (should be 32 characters)".into())
        }
        None => errors.push("'routing_key' is missing or blank".into()),
    }
    let action = text(&event["event_action"]).unwrap_or_default();
    if !["trigger", "acknowledge", "resolve"].contains(&action.as_str()) {
        errors.push(
            "'event_action' is invalid (must be one of: trigger, acknowledge, resolve)".into(),
        );
    }
    match text(&event["dedup_key"]) {
        Some(k) if k.chars().count() > 255 => {
            errors.push("'dedup_key' is too long (maximum is 255 characters)".into())
        }
        None if action != "trigger" => errors.push("'dedup_key' is missing or blank".into()),
        _ => {}
    }
    if action == "trigger" {
        let payload = &event["payload"];
        for field in ["summary", "source"] {
            if text(&payload[field]).is_none_or(|v| v.is_empty()) {
                errors.push(format!("'payload.{field}' is missing or blank"));
            }
        }
        let severity = text(&payload["severity"]).unwrap_or_default();
        if !["critical", "error", "warning", "info"].contains(&severity.as_str()) {
            errors.push(
                "'payload.severity' is invalid (must be one of: critical, error, warning, info)"
                    .into(),
            );
        }
        if !payload["custom_details"].is_null() && !payload["custom_details"].is_object() {
            errors.push("'payload.custom_details' must be an object".into());
        }
    }
    errors
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
        path: uri.path().to_string(),
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
    if method != Method::POST || uri.path() != "/v2/enqueue" {
        return answer(404, &[], &json!({"status": "not found"}));
    }
    if let Some(reply) = state.replies.pop_front() {
        return answer(reply.status, &reply.headers, &reply.body);
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return answer(
            400,
            &[],
            &json!({"status": "invalid event", "message": "Event object is invalid", "errors": ["Request body is not valid JSON"]}),
        );
    };
    let errors = problems(&event);
    if !errors.is_empty() {
        return answer(
            400,
            &[],
            &json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
        );
    }
    let dedup_key = event["dedup_key"]
        .as_str()
        .unwrap_or("generated-key")
        .to_string();
    match event["event_action"].as_str() {
        Some("trigger") => {
            let alert = state.alerts.entry(dedup_key.clone()).or_insert(Alert {
                status: "triggered".into(),
                triggers: 0,
            });
            alert.status = "triggered".into();
            alert.triggers += 1;
        }
        Some("resolve") => {
            if let Some(alert) = state.alerts.get_mut(&dedup_key) {
                alert.status = "resolved".into();
            }
        }
        _ => {}
    }
    answer(
        202,
        &[],
        &json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
    )
}
