//! A stand-in for the SageMaker Runtime `InvokeEndpoint` REST API in front
//! of a built-in Random Cut Forest endpoint:
//! `POST /endpoints/{EndpointName}/invocations` with a `text/csv` body (one
//! row per line) answers `200` with `application/json`
//! `{"scores":[{"score":…}, …]}`, one score per row, computed by the test's
//! scoring function. Errors follow the restJson1 protocol: the error code in
//! `x-amzn-ErrorType` and `{"message": …}` in the body (`ThrottlingException`
//! 400 or 429, `ModelError` 424, `ValidationError` 400, `InternalFailure`
//! 500). Point `aws.endpoints.sagemaker` at [`FakeSagemaker::url`].
//!
//! ```ignore
//! let fake = FakeSagemaker::start().await;
//! fake.score_with(|row| 1.0 + row[row.len() - 6].abs());
//! fake.fail_next(1, 400, "ThrottlingException");
//! fake.reply_raw_next(r#"{"scores":[{"score": 9"#);
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct InvokeCall {
    pub endpoint: String,
    pub content_type: String,
    pub accept: String,
    /// The body as sent.
    pub body: String,
}

impl InvokeCall {
    /// The CSV rows of the body, parsed.
    pub fn rows(&self) -> Vec<Vec<f64>> {
        self.body
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split(',')
                    .map(|v| v.trim().parse().unwrap_or(f64::NAN))
                    .collect()
            })
            .collect()
    }
}

type ScoreFn = Arc<dyn Fn(&[f64]) -> f64 + Send + Sync>;

enum Planned {
    Fail { status: u16, code: String },
    Raw(String),
}

struct FakeState {
    calls: Vec<InvokeCall>,
    planned: VecDeque<Planned>,
    score: ScoreFn,
}

/// The running fake; stops when dropped.
pub struct FakeSagemaker {
    addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    stop: CancellationToken,
}

impl Drop for FakeSagemaker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeSagemaker {
    /// Starts on 127.0.0.1:0, scoring every row 1.0 until told otherwise.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(FakeState {
            calls: Vec::new(),
            planned: VecDeque::new(),
            score: Arc::new(|_| 1.0),
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let (addr, stop) = pipemedic::standin::serve_on_loopback(app, "SageMaker").await;
        Self { addr, state, stop }
    }

    /// The endpoint URL to configure (`aws.endpoints.sagemaker`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Scores each CSV row with `f`.
    pub fn score_with(&self, f: impl Fn(&[f64]) -> f64 + Send + Sync + 'static) {
        self.state().score = Arc::new(f);
    }

    /// The next `n` requests fail with `status` and error code `code`.
    pub fn fail_next(&self, n: usize, status: u16, code: &str) {
        let mut state = self.state();
        for _ in 0..n {
            state.planned.push_back(Planned::Fail {
                status,
                code: code.to_string(),
            });
        }
    }

    /// The next request gets `200` with this body as `application/json`.
    pub fn reply_raw_next(&self, body: &str) {
        self.state()
            .planned
            .push_back(Planned::Raw(body.to_string()));
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<InvokeCall> {
        self.state().calls.clone()
    }

    /// What the scoring function gives `row`.
    pub fn score_of(&self, row: &[f64]) -> f64 {
        let f = self.state().score.clone();
        f(row)
    }
}

fn error(status: u16, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [
            ("content-type", "application/json"),
            ("x-amzn-errortype", code),
            ("x-amzn-requestid", "fake-request"),
        ],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn handle(
    State(state): State<Arc<Mutex<FakeState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parts: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let endpoint = match parts.as_slice() {
        ["endpoints", name, "invocations"] if method == Method::POST => name.to_string(),
        _ => return error(404, "UnknownOperationException", "no such operation"),
    };
    if !header(&headers, "authorization").starts_with("AWS4-HMAC-SHA256") {
        return error(
            403,
            "MissingAuthenticationTokenException",
            "request not signed",
        );
    }
    let call = InvokeCall {
        endpoint,
        content_type: header(&headers, "content-type"),
        accept: header(&headers, "accept"),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let (planned, score) = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.calls.push(call.clone());
        (s.planned.pop_front(), s.score.clone())
    };
    match planned {
        Some(Planned::Fail { status, code }) => {
            return error(status, &code, &format!("{code} from the stand-in"));
        }
        Some(Planned::Raw(body)) => {
            return (StatusCode::OK, [("content-type", "application/json")], body).into_response();
        }
        None => {}
    }
    if call.content_type != "text/csv" {
        return error(
            415,
            "ValidationError",
            "the RCF container reads text/csv here",
        );
    }
    let rows = call.rows();
    if rows.is_empty() || rows.iter().flatten().any(|v| !v.is_finite()) {
        return error(400, "ModelError", "unparseable CSV rows");
    }
    let scores: Vec<_> = rows.iter().map(|r| json!({"score": score(r)})).collect();
    (
        StatusCode::OK,
        [
            ("content-type", "application/json"),
            ("x-amzn-invoked-production-variant", "AllTraffic"),
        ],
        json!({ "scores": scores }).to_string(),
    )
        .into_response()
}
