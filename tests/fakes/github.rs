//! A stand-in for the GitHub REST API's workflow-run endpoints:
//! `POST /repos/{owner}/{repo}/actions/runs/{run_id}/rerun-failed-jobs`
//! answers `201 Created` with an empty JSON object, as GitHub does. Requests
//! without `Authorization` get `401`; unknown paths `404`; errors use
//! GitHub's body `{"message", "documentation_url"}`. Point `github.api_url`
//! at [`FakeGitHub::url`].
//!
//! ```ignore
//! let fake = FakeGitHub::start().await;
//! fake.fail_next(403, "Resource not accessible by integration");
//! fake.reply_next(429, &[("retry-after", "30")], json!({"message": "slow down"}));
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
pub struct GithubCall {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

#[derive(Default)]
struct FakeState {
    calls: Vec<GithubCall>,
    replies: VecDeque<Reply>,
}

/// The running fake; stops when dropped.
pub struct FakeGitHub {
    addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    stop: CancellationToken,
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeGitHub {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let (addr, stop) = pipemedic::standin::serve_on_loopback(app, "GitHub").await;
        Self { addr, state, stop }
    }

    /// The API base URL to configure (`github.api_url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next authenticated request to a known path gets this answer.
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

    /// The next request fails with GitHub's error body.
    pub fn fail_next(&self, status: u16, message: &str) {
        self.reply_next(
            status,
            &[],
            json!({
                "message": message,
                "documentation_url": "https://docs.github.com/rest/actions/workflow-runs#re-run-failed-jobs-from-a-workflow-run",
            }),
        );
    }

    /// Every request received, in order.
    pub fn calls(&self) -> Vec<GithubCall> {
        self.state().calls.clone()
    }
}

fn is_rerun_path(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!(
        parts.as_slice(),
        ["repos", owner, repo, "actions", "runs", run, "rerun-failed-jobs"]
            if !owner.is_empty() && !repo.is_empty() && !run.is_empty() && run.chars().all(|c| c.is_ascii_digit())
    )
}

fn answer(status: u16, headers: &[(String, String)], body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (
        status,
        [("content-type", "application/json; charset=utf-8")],
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

async fn handle(
    State(state): State<Arc<Mutex<FakeState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    state.calls.push(GithubCall {
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
    if !headers.contains_key("authorization") {
        return answer(401, &[], &json!({"message": "Requires authentication"}));
    }
    if method != Method::POST || !is_rerun_path(uri.path()) {
        return answer(404, &[], &json!({"message": "Not Found"}));
    }
    match state.replies.pop_front() {
        Some(reply) => answer(reply.status, &reply.headers, &reply.body),
        None => answer(201, &[], &json!({})),
    }
}
