//! A stateful stand-in for AWS CodePipeline speaking its JSON protocol
//! (awsJson1_1): `POST /` with `X-Amz-Target: CodePipeline_20150709.<Operation>`
//! and `Content-Type: application/x-amz-json-1.1`; timestamps are epoch
//! seconds; errors are `{"__type", "message"}` with the `x-amzn-ErrorType`
//! header. Point `aws.endpoints.codepipeline` at [`FakeCodePipeline::url`].
//!
//! ```ignore
//! let fake = FakeCodePipeline::start().await;
//! fake.add_execution("checkout", ExecutionSpec::new("e-1", "Failed", t("2026-11-25T10:00:00Z"))
//!     .action("Build", "Compile", "Succeeded", 0, 120)
//!     .action("Test", "UnitTests", "Failed", 130, 400));
//! fake.fail_next("RetryStageExecution", 400, "StageNotRetryableException");
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const TARGET_PREFIX: &str = "CodePipeline_20150709.";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// One action execution of an [`ExecutionSpec`]; times are seconds after
/// the execution's start.
#[derive(Debug, Clone)]
pub struct ActionSpec {
    pub stage: String,
    pub action: String,
    /// `InProgress`, `Succeeded`, `Failed` or `Abandoned`.
    pub status: String,
    pub start_s: i64,
    pub end_s: i64,
    pub summary: Option<String>,
    pub url: Option<String>,
}

/// A pipeline execution the fake knows.
#[derive(Debug, Clone)]
pub struct ExecutionSpec {
    pub id: String,
    /// `InProgress`, `Succeeded`, `Failed`, `Stopped`, `Superseded` ...
    pub status: String,
    pub start: DateTime<Utc>,
    /// Defaults to the end of the last action (or the start).
    pub last_update: Option<DateTime<Utc>>,
    pub revision_id: Option<String>,
    pub revision_summary: Option<String>,
    pub status_summary: Option<String>,
    pub actions: Vec<ActionSpec>,
}

impl ExecutionSpec {
    pub fn new(id: &str, status: &str, start: DateTime<Utc>) -> Self {
        Self {
            id: id.into(),
            status: status.into(),
            start,
            last_update: None,
            revision_id: None,
            revision_summary: None,
            status_summary: None,
            actions: Vec::new(),
        }
    }

    pub fn commit(mut self, revision_id: &str, summary: &str) -> Self {
        self.revision_id = Some(revision_id.into());
        self.revision_summary = Some(summary.into());
        self
    }

    pub fn action(
        mut self,
        stage: &str,
        action: &str,
        status: &str,
        start_s: i64,
        end_s: i64,
    ) -> Self {
        self.actions.push(ActionSpec {
            stage: stage.into(),
            action: action.into(),
            status: status.into(),
            start_s,
            end_s,
            summary: None,
            url: None,
        });
        self
    }

    /// Sets what the last added action reports (`externalExecutionSummary`, URL).
    pub fn result(mut self, summary: &str, url: &str) -> Self {
        if let Some(a) = self.actions.last_mut() {
            a.summary = Some(summary.into());
            a.url = Some(url.into());
        }
        self
    }

    pub fn last_update(&self) -> DateTime<Utc> {
        self.last_update.unwrap_or_else(|| {
            self.start + Duration::seconds(self.actions.iter().map(|a| a.end_s).max().unwrap_or(0))
        })
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    pub operation: String,
    pub body: Value,
}

#[derive(Debug, Clone)]
struct Failure {
    operation: String,
    /// Only requests whose body contains this fail.
    matching: Option<String>,
    times: usize,
    status: u16,
    error_type: String,
}

#[derive(Default)]
struct FakeState {
    pipelines: BTreeMap<String, Vec<ExecutionSpec>>,
    failures: Vec<Failure>,
    calls: Vec<Call>,
    page_size: Option<usize>,
    next_id: u64,
    /// Operations whose next call is answered late.
    delays: Vec<(String, std::time::Duration)>,
    /// Operations whose next call waits until its gate is opened.
    holds: Vec<(String, Arc<tokio::sync::Notify>)>,
}

/// The running fake; stops when dropped.
pub struct FakeCodePipeline {
    addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    stop: CancellationToken,
}

impl Drop for FakeCodePipeline {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeCodePipeline {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let app = Router::new()
            .route("/", post(handle))
            .with_state(state.clone());
        let (addr, stop) = crate::standin::serve_on_loopback(app, "CodePipeline").await;
        Self { addr, state, stop }
    }

    /// The endpoint URL to configure (`aws.endpoints.codepipeline`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates the pipeline if needed and adds an execution to its history.
    pub fn add_execution(&self, pipeline: &str, execution: ExecutionSpec) {
        self.state()
            .pipelines
            .entry(pipeline.into())
            .or_default()
            .push(execution);
    }

    /// Creates an empty pipeline.
    pub fn add_pipeline(&self, pipeline: &str) {
        self.state().pipelines.entry(pipeline.into()).or_default();
    }

    /// Changes a known execution (finish it, retry it ...).
    pub fn update_execution(
        &self,
        pipeline: &str,
        id: &str,
        change: impl FnOnce(&mut ExecutionSpec),
    ) {
        let mut state = self.state();
        let execution = state
            .pipelines
            .get_mut(pipeline)
            .and_then(|h| h.iter_mut().find(|e| e.id == id))
            .expect("known execution");
        change(execution);
    }

    /// Most items per list page (below the request's `maxResults`).
    pub fn set_page_size(&self, size: usize) {
        self.state().page_size = Some(size.max(1));
    }

    /// The next call of `operation` answers with this error.
    pub fn fail_next(&self, operation: &str, status: u16, error_type: &str) {
        self.fail_next_times(operation, 1, status, error_type);
    }

    /// The next `times` calls of `operation` answer with this error (the
    /// SDK retries, so a lasting outage needs as many as its attempts).
    pub fn fail_next_times(&self, operation: &str, times: usize, status: u16, error_type: &str) {
        self.push_failure(operation, None, times, status, error_type);
    }

    /// Like [`Self::fail_next_times`], only for requests whose JSON body
    /// contains `needle` (an execution id, a stage name).
    pub fn fail_matching(
        &self,
        operation: &str,
        needle: &str,
        times: usize,
        status: u16,
        error_type: &str,
    ) {
        self.push_failure(operation, Some(needle.into()), times, status, error_type);
    }

    fn push_failure(
        &self,
        operation: &str,
        matching: Option<String>,
        times: usize,
        status: u16,
        error_type: &str,
    ) {
        self.state().failures.push(Failure {
            operation: operation.into(),
            matching,
            times,
            status,
            error_type: error_type.into(),
        });
    }

    /// The next call of `operation` is answered after `delay` (to overlap
    /// two pollers, or to test timeouts).
    pub fn delay_next(&self, operation: &str, delay: std::time::Duration) {
        self.state().delays.push((operation.into(), delay));
    }

    /// The next call of `operation` waits until the returned gate is
    /// opened (`notify_one`), so a test controls when it ends.
    pub fn hold_next(&self, operation: &str) -> Arc<tokio::sync::Notify> {
        let gate = Arc::new(tokio::sync::Notify::new());
        self.state().holds.push((operation.into(), gate.clone()));
        gate
    }

    /// Every request received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// The bodies of the requests of one operation, in order.
    pub fn calls_of(&self, operation: &str) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c.operation == operation)
            .map(|c| c.body)
            .collect()
    }

    pub fn clear_calls(&self) {
        self.state().calls.clear();
    }
}

fn epoch(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

fn error(status: u16, error_type: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        [
            ("content-type", CONTENT_TYPE),
            ("x-amzn-errortype", error_type),
            ("x-amzn-requestid", "fake-request"),
        ],
        json!({"__type": error_type, "message": message}).to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [
            ("content-type", CONTENT_TYPE),
            ("x-amzn-requestid", "fake-request"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// One page of `items` from the offset in `nextToken`.
fn page(items: Vec<Value>, body: &Value, page_size: Option<usize>) -> (Vec<Value>, Option<String>) {
    let start: usize = body["nextToken"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let max = body["maxResults"].as_u64().map_or(100, |m| m as usize);
    let size = page_size.map_or(max, |p| p.min(max)).max(1);
    let end = (start + size).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    (
        items
            .get(start..end)
            .map(<[Value]>::to_vec)
            .unwrap_or_default(),
        next,
    )
}

fn summary_json(e: &ExecutionSpec) -> Value {
    let mut v = json!({
        "pipelineExecutionId": e.id,
        "status": e.status,
        "startTime": epoch(e.start),
        "lastUpdateTime": epoch(e.last_update()),
        "trigger": {"triggerType": "Webhook", "triggerDetail": "fake"},
        "executionMode": "SUPERSEDED",
        "executionType": "STANDARD",
    });
    if let Some(id) = &e.revision_id {
        v["sourceRevisions"] = json!([{
            "actionName": "Source",
            "revisionId": id,
            "revisionSummary": e.revision_summary,
            "revisionUrl": format!("https://git.example.com/commit/{id}"),
        }]);
    }
    if let Some(s) = &e.status_summary {
        v["statusSummary"] = json!(s);
    }
    v
}

fn execution_json(pipeline: &str, e: &ExecutionSpec) -> Value {
    let mut v = json!({
        "pipelineName": pipeline,
        "pipelineVersion": 1,
        "pipelineExecutionId": e.id,
        "status": e.status,
        "artifactRevisions": [],
        "trigger": {"triggerType": "Webhook", "triggerDetail": "fake"},
        "executionMode": "SUPERSEDED",
        "executionType": "STANDARD",
    });
    if let Some(id) = &e.revision_id {
        v["artifactRevisions"] = json!([{
            "name": "SourceArtifact",
            "revisionId": id,
            "revisionSummary": e.revision_summary,
            "created": epoch(e.start),
            "revisionUrl": format!("https://git.example.com/commit/{id}"),
        }]);
    }
    if let Some(s) = &e.status_summary {
        v["statusSummary"] = json!(s);
    }
    v
}

fn action_json(e: &ExecutionSpec, index: usize, a: &ActionSpec) -> Value {
    let mut result = json!({"externalExecutionId": format!("{}-{index}", e.id)});
    if let Some(s) = &a.summary {
        result["externalExecutionSummary"] = json!(s);
    }
    if let Some(u) = &a.url {
        result["externalExecutionUrl"] = json!(u);
    }
    json!({
        "pipelineExecutionId": e.id,
        "actionExecutionId": format!("{}-action-{index}", e.id),
        "pipelineVersion": 1,
        "stageName": a.stage,
        "actionName": a.action,
        "startTime": epoch(e.start + Duration::seconds(a.start_s)),
        "lastUpdateTime": epoch(e.start + Duration::seconds(a.end_s)),
        "updatedBy": "fake",
        "status": a.status,
        "input": {
            "actionTypeId": {"category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1"},
            "configuration": {"ProjectName": a.action},
            "resolvedConfiguration": {"ProjectName": a.action},
            "region": "us-east-1",
            "inputArtifacts": [],
        },
        "output": {"outputArtifacts": [], "executionResult": result, "outputVariables": {}},
    })
}

async fn handle(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let Some(operation) = header("x-amz-target")
        .strip_prefix(TARGET_PREFIX)
        .map(str::to_string)
    else {
        return error(
            400,
            "UnknownOperationException",
            "missing or foreign X-Amz-Target",
        );
    };
    if header("content-type") != CONTENT_TYPE {
        return error(
            400,
            "SerializationException",
            "expected application/x-amz-json-1.1",
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "SerializationException", "body is not JSON");
    };
    let delay = {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        let i = state.delays.iter().position(|(op, _)| *op == operation);
        i.map(|i| state.delays.remove(i).1)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let gate = {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        let i = state.holds.iter().position(|(op, _)| *op == operation);
        i.map(|i| state.holds.remove(i).1)
    };
    if let Some(gate) = gate {
        gate.notified().await;
    }
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    state.calls.push(Call {
        operation: operation.clone(),
        body: body.clone(),
    });
    let text = body.to_string();
    if let Some(i) = state.failures.iter().position(|f| {
        f.operation == operation
            && f.times > 0
            && f.matching
                .as_ref()
                .is_none_or(|n| text.contains(n.as_str()))
    }) {
        let f = &mut state.failures[i];
        f.times -= 1;
        let (status, error_type) = (f.status, f.error_type.clone());
        if f.times == 0 {
            state.failures.remove(i);
        }
        return error(status, &error_type, "injected failure");
    }
    let page_size = state.page_size;
    let pipeline = body["pipelineName"]
        .as_str()
        .or_else(|| body["name"].as_str())
        .unwrap_or("")
        .to_string();
    let Some(history) = state.pipelines.get(&pipeline).cloned() else {
        return error(
            400,
            "PipelineNotFoundException",
            &format!("pipeline {pipeline} not found"),
        );
    };
    let find = |id: &str| history.iter().find(|e| e.id == id).cloned();
    match operation.as_str() {
        "ListPipelineExecutions" => {
            let mut newest_first = history.clone();
            newest_first.sort_by_key(|e| std::cmp::Reverse(e.start));
            let items = newest_first.iter().map(summary_json).collect();
            let (items, next) = page(items, &body, page_size);
            let mut out = json!({"pipelineExecutionSummaries": items});
            if let Some(n) = next {
                out["nextToken"] = json!(n);
            }
            ok(out)
        }
        "GetPipelineExecution" => {
            let id = body["pipelineExecutionId"].as_str().unwrap_or("");
            match find(id) {
                Some(e) => ok(json!({"pipelineExecution": execution_json(&pipeline, &e)})),
                None => error(
                    400,
                    "PipelineExecutionNotFoundException",
                    "no such execution",
                ),
            }
        }
        "ListActionExecutions" => {
            let wanted = body["filter"]["pipelineExecutionId"].as_str();
            let mut items = Vec::new();
            for e in history.iter().filter(|e| wanted.is_none_or(|w| w == e.id)) {
                for (i, a) in e.actions.iter().enumerate() {
                    items.push((e.start + Duration::seconds(a.start_s), action_json(e, i, a)));
                }
            }
            // Newest first, as the service lists them.
            items.sort_by_key(|i| std::cmp::Reverse(i.0));
            let (items, next) = page(
                items.into_iter().map(|(_, v)| v).collect(),
                &body,
                page_size,
            );
            let mut out = json!({"actionExecutionDetails": items});
            if let Some(n) = next {
                out["nextToken"] = json!(n);
            }
            ok(out)
        }
        "RetryStageExecution" | "StopPipelineExecution" => {
            let id = body["pipelineExecutionId"].as_str().unwrap_or("");
            match find(id) {
                Some(e) => ok(json!({"pipelineExecutionId": e.id})),
                None => error(
                    400,
                    "PipelineExecutionNotFoundException",
                    "no such execution",
                ),
            }
        }
        "RollbackStage" => {
            let target = body["targetPipelineExecutionId"].as_str().unwrap_or("");
            if find(target).is_none() {
                return error(
                    400,
                    "PipelineExecutionNotFoundException",
                    "no such target execution",
                );
            }
            state.next_id += 1;
            ok(json!({"pipelineExecutionId": format!("rollback-{}", state.next_id)}))
        }
        "StartPipelineExecution" => {
            state.next_id += 1;
            ok(json!({"pipelineExecutionId": format!("started-{}", state.next_id)}))
        }
        other => error(
            400,
            "UnknownOperationException",
            &format!("{other} is not faked"),
        ),
    }
}
