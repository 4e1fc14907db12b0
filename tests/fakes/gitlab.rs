//! A stand-in for the GitLab REST API's job trace and pipeline job list,
//! as GitLab documents them, both with `PRIVATE-TOKEN`:
//!
//! - `GET /api/v4/projects/{id}/jobs/{job_id}/trace` answers the job's log
//!   as `text/plain` (streamed in 64 KiB chunks and counted in
//!   [`FakeGitlab::bytes_served`]);
//! - `GET /api/v4/projects/{id}/pipelines/{pipeline_id}/jobs` answers the
//!   pipeline's jobs as a JSON array, newest (highest id) first, only those
//!   whose `status` is one of the `scope[]` (or `scope`) values when given,
//!   and without retried tries unless `include_retried=true`.
//!
//! The project is its numeric id or its URL-encoded path
//! (`group%2Fproject`). Without a token: `401 {"message": "401
//! Unauthorized"}`; an unknown project, job or pipeline: `404 {"message":
//! "404 Not found"}`. Point `gitlab.api_url` at [`FakeGitlab::url`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::Router;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::github_actions::{counted_text, header_map, json_answer};

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// As sent (the project path stays URL-encoded).
    pub path: String,
    /// The query string as sent (empty when none).
    pub query: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
}

/// A queued answer: status, extra headers, GitLab's error message.
type Reply = (u16, Vec<(String, String)>, String);

#[derive(Default)]
struct FakeState {
    calls: Vec<Call>,
    replies: VecDeque<Reply>,
    /// By (decoded project path, job id).
    traces: HashMap<(String, String), Arc<Vec<u8>>>,
    /// By (decoded project path, pipeline id): each job and whether it is
    /// a retried (superseded) try.
    pipeline_jobs: HashMap<(String, String), Vec<(serde_json::Value, bool)>>,
}

struct Shared {
    state: Mutex<FakeState>,
    served: Arc<AtomicU64>,
}

/// The running stand-in; stops when dropped.
pub struct FakeGitlab {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Drop for FakeGitlab {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeGitlab {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(FakeState::default()),
            served: Arc::new(AtomicU64::new(0)),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let (addr, stop) = pipemedic::standin::serve_on_loopback(app, "GitLab").await;
        Self { addr, shared, stop }
    }

    /// The base URL to configure (`gitlab.api_url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The trace of job `job_id` of project `project` (`group/project`).
    pub fn put_trace(&self, project: &str, job_id: &str, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        self.put_trace_bytes(project, job_id, text.into_bytes());
    }

    pub fn put_trace_bytes(&self, project: &str, job_id: &str, trace: Vec<u8>) {
        self.state()
            .traces
            .insert((project.to_string(), job_id.to_string()), Arc::new(trace));
    }

    /// The jobs of pipeline `pipeline_id` of project `project`, each as
    /// GitLab's job JSON (`id`, `name`, `stage`, `status`, `allow_failure`,
    /// `finished_at` ...) and whether a later try superseded it.
    pub fn put_pipeline_jobs(
        &self,
        project: &str,
        pipeline_id: &str,
        jobs: Vec<(serde_json::Value, bool)>,
    ) {
        self.state()
            .pipeline_jobs
            .insert((project.to_string(), pipeline_id.to_string()), jobs);
    }

    /// The next request gets this answer with GitLab's error body.
    pub fn reply_next(&self, status: u16, headers: &[(&str, &str)], message: &str) {
        self.state().replies.push_back((
            status,
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            message.to_string(),
        ));
    }

    /// Every request received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Bytes of trace bodies handed to the server so far.
    pub fn bytes_served(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }
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
        query: uri.query().unwrap_or("").to_string(),
        headers: header_map(&headers),
    });
    if !headers.contains_key("private-token") {
        return json_answer(401, &[], &json!({"message": "401 Unauthorized"}));
    }
    if let Some((status, extra, message)) = state.replies.pop_front() {
        return json_answer(status, &extra, &json!({ "message": message }));
    }
    let parts: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let not_found = || json_answer(404, &[], &json!({"message": "404 Not found"}));
    match (method, parts.as_slice()) {
        (Method::GET, ["api", "v4", "projects", project, "jobs", job, "trace"]) => {
            let project = urlencoding::decode(project)
                .map(|p| p.into_owned())
                .unwrap_or_default();
            match state.traces.get(&(project, job.to_string())) {
                Some(trace) => counted_text(trace.clone(), shared.served.clone()),
                None => not_found(),
            }
        }
        (Method::GET, ["api", "v4", "projects", project, "pipelines", pipeline, "jobs"]) => {
            let project = urlencoding::decode(project)
                .map(|p| p.into_owned())
                .unwrap_or_default();
            match state.pipeline_jobs.get(&(project, pipeline.to_string())) {
                Some(jobs) => json_answer(200, &[], &listed_jobs(jobs, uri.query())),
                None => not_found(),
            }
        }
        _ => not_found(),
    }
}

/// The answer of the pipeline job list to `query`.
fn listed_jobs(jobs: &[(serde_json::Value, bool)], query: Option<&str>) -> serde_json::Value {
    let mut scopes = Vec::new();
    let mut include_retried = false;
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = urlencoding::decode(key)
            .map(|k| k.into_owned())
            .unwrap_or_default();
        match key.as_str() {
            "scope[]" | "scope" => scopes.push(value.to_string()),
            "include_retried" => include_retried = value == "true",
            _ => {}
        }
    }
    let mut listed: Vec<&serde_json::Value> = jobs
        .iter()
        .filter(|(_, retried)| include_retried || !retried)
        .map(|(job, _)| job)
        .filter(|job| scopes.is_empty() || scopes.iter().any(|s| job["status"].as_str() == Some(s)))
        .collect();
    listed.sort_by_key(|job| std::cmp::Reverse(job["id"].as_u64()));
    json!(listed)
}
