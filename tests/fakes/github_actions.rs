//! A stand-in for the GitHub REST API's workflow job endpoints, as GitHub
//! documents them (API version 2022-11-28):
//!
//! - `GET /repos/{owner}/{repo}/actions/jobs/{job_id}/logs` answers
//!   `302 Found` with a `Location` on this stand-in (`/download/job-logs/
//!   {job_id}?sig=...`, a pre-signed URL that needs no token), which serves
//!   the log as `text/plain`, streamed in 64 KiB chunks and counted in
//!   [`FakeGithubActions::bytes_served`].
//! - `GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs` answers
//!   `{"total_count", "jobs": [{"id", "run_id", "name", "status", "conclusion"}]}`.
//!
//! API requests without `Authorization` get `401`; unknown jobs and runs
//! `404`; an expired log `410`; errors use GitHub's body `{"message",
//! "documentation_url"}`. Point `github.api_url` at [`FakeGithubActions::url`].

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

#[derive(Default)]
struct FakeState {
    calls: Vec<Call>,
    replies: VecDeque<Reply>,
    logs: HashMap<String, Arc<Vec<u8>>>,
    expired: HashSet<String>,
    runs: HashMap<String, Vec<Value>>,
}

struct Shared {
    state: Mutex<FakeState>,
    served: Arc<AtomicU64>,
    addr: Mutex<Option<SocketAddr>>,
}

/// The running stand-in; stops when dropped.
pub struct FakeGithubActions {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Drop for FakeGithubActions {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A `text/plain` body streamed in 64 KiB chunks, each counted in `served`
/// when the server takes it (so a client that hangs up stops the count).
pub fn counted_text(log: Arc<Vec<u8>>, served: Arc<AtomicU64>) -> Response {
    const CHUNK: usize = 64 * 1024;
    let stream = futures::stream::unfold(0usize, move |offset| {
        let log = log.clone();
        let served = served.clone();
        async move {
            if offset >= log.len() {
                return None;
            }
            let end = (offset + CHUNK).min(log.len());
            served.fetch_add((end - offset) as u64, Ordering::Relaxed);
            let chunk = bytes::Bytes::copy_from_slice(&log[offset..end]);
            Some((Ok::<_, std::io::Error>(chunk), end))
        }
    });
    (
        StatusCode::OK,
        [("content-type", "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Request headers by lower-case name.
pub fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// A JSON answer with extra headers.
pub fn json_answer(status: u16, headers: &[(String, String)], body: &Value) -> Response {
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

impl FakeGithubActions {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(FakeState::default()),
            served: Arc::new(AtomicU64::new(0)),
            addr: Mutex::new(None),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let (addr, stop) = pipemedic::standin::serve_on_loopback(app, "GitHub Actions").await;
        *shared.addr.lock().unwrap() = Some(addr);
        Self { addr, shared, stop }
    }

    /// The API base URL to configure (`github.api_url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Job `job_id`'s log, one line per entry.
    pub fn put_log(&self, job_id: &str, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        self.put_log_bytes(job_id, text.into_bytes());
    }

    pub fn put_log_bytes(&self, job_id: &str, log: Vec<u8>) {
        self.state().logs.insert(job_id.to_string(), Arc::new(log));
    }

    /// Job `job_id`'s log is past its retention: `410 Gone`.
    pub fn expire_log(&self, job_id: &str) {
        self.state().expired.insert(job_id.to_string());
    }

    /// The latest jobs of run `run_id`: `(id, name, conclusion)`.
    pub fn put_run_jobs(&self, run_id: &str, jobs: &[(u64, &str, &str)]) {
        let jobs = jobs
            .iter()
            .map(|(id, name, conclusion)| {
                json!({
                    "id": id, "run_id": run_id.parse::<u64>().unwrap_or(0),
                    "name": name, "status": "completed", "conclusion": conclusion,
                    "started_at": "2026-11-20T10:00:05Z", "completed_at": "2026-11-20T10:06:00Z",
                })
            })
            .collect();
        self.state().runs.insert(run_id.to_string(), jobs);
    }

    /// The next API request (not a download) gets this answer.
    pub fn reply_next(&self, status: u16, headers: &[(&str, &str)], message: &str) {
        self.state().replies.push_back(Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: json!({
                "message": message,
                "documentation_url": "https://docs.github.com/rest/actions/workflow-jobs#download-job-logs-for-a-workflow-run",
            }),
        });
    }

    /// Every request received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Bytes of log bodies handed to the server so far.
    pub fn bytes_served(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }
}

fn not_found() -> Response {
    json_answer(
        404,
        &[],
        &json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
    )
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    state.calls.push(Call {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        headers: header_map(&headers),
    });
    let parts: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    if method != Method::GET {
        return not_found();
    }
    // The pre-signed download: no token needed.
    if let ["download", "job-logs", job] = parts.as_slice() {
        let signed = uri.query().is_some_and(|q| q.contains("sig="));
        return match state.logs.get(*job) {
            Some(log) if signed => counted_text(log.clone(), shared.served.clone()),
            _ => (StatusCode::FORBIDDEN, "AuthenticationFailed").into_response(),
        };
    }
    if !headers.contains_key("authorization") {
        return json_answer(401, &[], &json!({"message": "Requires authentication"}));
    }
    if let Some(reply) = state.replies.pop_front() {
        return json_answer(reply.status, &reply.headers, &reply.body);
    }
    match parts.as_slice() {
        ["repos", _, _, "actions", "jobs", job, "logs"] => {
            if state.expired.contains(*job) {
                return json_answer(410, &[], &json!({"message": "Gone"}));
            }
            if !state.logs.contains_key(*job) {
                return not_found();
            }
            let addr = shared.addr.lock().unwrap().expect("started");
            let location = format!("http://{addr}/download/job-logs/{job}?sig=c2lnbmF0dXJl&se=60");
            (StatusCode::FOUND, [("location", location)]).into_response()
        }
        ["repos", _, _, "actions", "runs", run, "jobs"] => match state.runs.get(*run) {
            Some(jobs) => json_answer(200, &[], &json!({"total_count": jobs.len(), "jobs": jobs})),
            None => not_found(),
        },
        _ => not_found(),
    }
}
