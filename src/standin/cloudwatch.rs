//! Stand-ins for CloudWatch Logs and CloudWatch, each speaking the wire
//! format the SDK uses:
//!
//! - CloudWatch Logs, awsJson1_1: `POST /` with `X-Amz-Target:
//!   Logs_20140328.GetLogEvents` and `application/x-amz-json-1.1` bodies;
//!   errors are `{"__type", "message"}` with HTTP 400.
//! - CloudWatch, rpcv2Cbor: `POST /service/GraniteServiceVersion20100801/operation/GetMetricData`
//!   with `smithy-protocol: rpc-v2-cbor` and CBOR bodies (timestamps as
//!   tag 1 epoch seconds); errors are a CBOR map `{"__type", "message"}`.
//!
//! ```ignore
//! let logs = FakeCloudWatchLogs::start().await;
//! logs.put_log("/aws/codebuild/web", "uuid-1", &["line 1", "ERROR: boom"]);
//! logs.fail_next("GetLogEvents", 400, "AccessDeniedException");
//! let cw = FakeCloudWatch::start().await;
//! cw.put_usage("web:uuid-1", 91.0, 3900.0);
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// One call a stand-in received: the operation and its body as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub operation: String,
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    calls: Vec<Call>,
    /// Failures to answer with, by operation, in order: (status, error type).
    failures: HashMap<String, VecDeque<(u16, String)>>,
    /// Log events by (group, stream).
    logs: HashMap<(String, String), Vec<String>>,
    /// Peak CPU percent and memory MB by build id.
    usage: BTreeMap<String, (f64, f64)>,
}

impl Shared {
    fn failure(&mut self, operation: &str) -> Option<(u16, String)> {
        self.failures.get_mut(operation)?.pop_front()
    }
}

/// What both stand-ins share: the state, the address and the stop token.
struct Running {
    state: Arc<Mutex<Shared>>,
    url: String,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Running {
    async fn start(app: Router<Arc<Mutex<Shared>>>, what: &str) -> Self {
        let state = Arc::new(Mutex::new(Shared::default()));
        let (addr, stop) = super::serve_on_loopback(app.with_state(state.clone()), what).await;
        Self {
            state,
            url: format!("http://{addr}"),
            stop,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail_next_times(&self, operation: &str, times: usize, status: u16, error_type: &str) {
        let mut s = self.state();
        let queue = s.failures.entry(operation.to_string()).or_default();
        for _ in 0..times {
            queue.push_back((status, error_type.to_string()));
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }
}

fn lock(state: &Arc<Mutex<Shared>>) -> std::sync::MutexGuard<'_, Shared> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

// ---- CloudWatch Logs ---------------------------------------------------------

const LOGS_TARGET_PREFIX: &str = "Logs_20140328.";
const JSON_11: &str = "application/x-amz-json-1.1";

/// A stand-in for CloudWatch Logs (`GetLogEvents`). Point
/// `aws.endpoints.logs` at [`FakeCloudWatchLogs::url`].
pub struct FakeCloudWatchLogs {
    running: Running,
}

impl FakeCloudWatchLogs {
    pub async fn start() -> Self {
        let app = Router::new().route("/", post(logs_handle));
        Self {
            running: Running::start(app, "CloudWatch Logs").await,
        }
    }

    /// The endpoint URL to configure (`aws.endpoints.logs`).
    pub fn url(&self) -> String {
        self.running.url.clone()
    }

    /// Stores the events of one log stream (one event per line).
    pub fn put_log<S: AsRef<str>>(&self, group: &str, stream: &str, lines: &[S]) {
        self.running.state().logs.insert(
            (group.to_string(), stream.to_string()),
            lines.iter().map(|l| l.as_ref().to_string()).collect(),
        );
    }

    /// Answers the next call of `operation` with an error.
    pub fn fail_next(&self, operation: &str, status: u16, error_type: &str) {
        self.running
            .fail_next_times(operation, 1, status, error_type);
    }

    pub fn fail_next_times(&self, operation: &str, times: usize, status: u16, error_type: &str) {
        self.running
            .fail_next_times(operation, times, status, error_type);
    }

    /// Every call received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.running.calls()
    }
}

fn json_error(status: u16, error_type: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        [("content-type", JSON_11), ("x-amzn-errortype", error_type)],
        json!({"__type": error_type, "message": message}).to_string(),
    )
        .into_response()
}

async fn logs_handle(
    State(state): State<Arc<Mutex<Shared>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(LOGS_TARGET_PREFIX))
        .unwrap_or("")
        .to_string();
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return json_error(400, "SerializationException", "the body is not JSON");
    };
    let mut s = lock(&state);
    s.calls.push(Call {
        operation: operation.clone(),
        body: body.clone(),
    });
    if let Some((status, error_type)) = s.failure(&operation) {
        return json_error(status, &error_type, "injected by the stand-in");
    }
    if operation != "GetLogEvents" {
        return json_error(400, "UnknownOperationException", &operation);
    }
    let group = body["logGroupName"].as_str().unwrap_or("").to_string();
    let stream = body["logStreamName"].as_str().unwrap_or("").to_string();
    let Some(lines) = s.logs.get(&(group, stream)) else {
        return json_error(
            400,
            "ResourceNotFoundException",
            "The specified log stream does not exist.",
        );
    };
    let limit = body["limit"].as_u64().unwrap_or(10_000).min(10_000) as usize;
    let from_head = body["startFromHead"].as_bool().unwrap_or(false);
    // At most 1 MB of messages, like the service.
    let mut picked: Vec<&String> = Vec::new();
    let mut bytes = 0usize;
    let ordered: Box<dyn Iterator<Item = &String>> = if from_head {
        Box::new(lines.iter())
    } else {
        Box::new(lines.iter().rev())
    };
    for line in ordered {
        if picked.len() >= limit || bytes + line.len() + 26 > 1_048_576 {
            break;
        }
        bytes += line.len() + 26;
        picked.push(line);
    }
    if !from_head {
        picked.reverse();
    }
    let base = 1_764_000_000_000i64;
    let events: Vec<Value> = picked
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"timestamp": base + i as i64, "message": m, "ingestionTime": base + i as i64 + 5}))
        .collect();
    (
        [("content-type", JSON_11)],
        json!({"events": events, "nextForwardToken": "f/1", "nextBackwardToken": "b/1"})
            .to_string(),
    )
        .into_response()
}

// ---- CloudWatch (rpcv2Cbor) -----------------------------------------------------

const CBOR_PATH: &str = "/service/GraniteServiceVersion20100801/operation/{operation}";

/// A stand-in for CloudWatch (`GetMetricData` with the search expressions
/// of CodeBuild build metrics). Point `aws.endpoints.cloudwatch` at
/// [`FakeCloudWatch::url`].
pub struct FakeCloudWatch {
    running: Running,
}

impl FakeCloudWatch {
    pub async fn start() -> Self {
        let app = Router::new().route(CBOR_PATH, post(cbor_handle));
        Self {
            running: Running::start(app, "CloudWatch").await,
        }
    }

    /// The endpoint URL to configure (`aws.endpoints.cloudwatch`).
    pub fn url(&self) -> String {
        self.running.url.clone()
    }

    /// The peak `CPUUtilizedPercent` and `MemoryUtilized` of a build.
    pub fn put_usage(&self, build_id: &str, cpu_pct: f64, mem_mb: f64) {
        self.running
            .state()
            .usage
            .insert(build_id.to_string(), (cpu_pct, mem_mb));
    }

    pub fn fail_next(&self, operation: &str, status: u16, error_type: &str) {
        self.running
            .fail_next_times(operation, 1, status, error_type);
    }

    pub fn fail_next_times(&self, operation: &str, times: usize, status: u16, error_type: &str) {
        self.running
            .fail_next_times(operation, times, status, error_type);
    }

    /// Every call received, in order, the CBOR body shown as JSON.
    pub fn calls(&self) -> Vec<Call> {
        self.running.calls()
    }
}

fn cbor_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [
            ("content-type", "application/cbor"),
            ("smithy-protocol", "rpc-v2-cbor"),
        ],
        body,
    )
        .into_response()
}

fn cbor_error(status: u16, error_type: &str, message: &str) -> Response {
    let mut e = aws_smithy_cbor::Encoder::new(Vec::new());
    e.begin_map();
    e.str("__type")
        .str(&format!("com.amazonaws.cloudwatch#{error_type}"));
    e.str("message").str(message);
    e.end();
    cbor_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        e.into_writer(),
    )
}

/// One CBOR item as JSON (maps with text keys, arrays, text, numbers,
/// booleans, null, epoch timestamps as numbers).
fn cbor_value(d: &mut aws_smithy_cbor::Decoder<'_>, depth: u32) -> Result<Value, String> {
    use aws_smithy_cbor::data::Type;
    if depth > 32 {
        return Err("nested too deep".into());
    }
    let err = |e: aws_smithy_cbor::decode::DeserializeError| e.to_string();
    Ok(match d.datatype().map_err(err)? {
        Type::Bool => Value::Bool(d.boolean().map_err(err)?),
        Type::Null | Type::Undefined => {
            d.skip().map_err(err)?;
            Value::Null
        }
        Type::U8
        | Type::U16
        | Type::U32
        | Type::U64
        | Type::I8
        | Type::I16
        | Type::I32
        | Type::I64
        | Type::Int => json!(d.long().map_err(err)?),
        Type::F16 | Type::F32 | Type::F64 => json!(d.double().map_err(err)?),
        Type::String | Type::StringIndef => Value::String(d.string().map_err(err)?),
        Type::Tag => json!(d.timestamp().map_err(err)?.as_secs_f64()),
        Type::Array | Type::ArrayIndef => {
            let mut items = Vec::new();
            match d.list().map_err(err)? {
                Some(n) => {
                    for _ in 0..n {
                        items.push(cbor_value(d, depth + 1)?);
                    }
                }
                None => loop {
                    if d.datatype().map_err(err)? == Type::Break {
                        d.skip().map_err(err)?;
                        break;
                    }
                    items.push(cbor_value(d, depth + 1)?);
                },
            }
            Value::Array(items)
        }
        Type::Map | Type::MapIndef => {
            let mut map = serde_json::Map::new();
            match d.map().map_err(err)? {
                Some(n) => {
                    for _ in 0..n {
                        let key = d.string().map_err(err)?;
                        map.insert(key, cbor_value(d, depth + 1)?);
                    }
                }
                None => loop {
                    if d.datatype().map_err(err)? == Type::Break {
                        d.skip().map_err(err)?;
                        break;
                    }
                    let key = d.string().map_err(err)?;
                    map.insert(key, cbor_value(d, depth + 1)?);
                },
            }
            Value::Object(map)
        }
        other => return Err(format!("unexpected CBOR item {other:?}")),
    })
}

/// `name="value"` from a search expression.
fn quoted<'a>(expression: &'a str, name: &str) -> Option<&'a str> {
    let start = expression.find(&format!("{name}=\""))? + name.len() + 2;
    let len = expression[start..].find('"')?;
    Some(&expression[start..start + len])
}

async fn cbor_handle(
    State(state): State<Arc<Mutex<Shared>>>,
    axum::extract::Path(operation): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers.get("smithy-protocol").and_then(|v| v.to_str().ok()) != Some("rpc-v2-cbor") {
        return cbor_error(
            400,
            "SerializationException",
            "no smithy-protocol: rpc-v2-cbor",
        );
    }
    let mut decoder = aws_smithy_cbor::Decoder::new(&body);
    let input = match cbor_value(&mut decoder, 0) {
        Ok(v) => v,
        Err(e) => return cbor_error(400, "SerializationException", &e),
    };
    let mut s = lock(&state);
    s.calls.push(Call {
        operation: operation.clone(),
        body: input.clone(),
    });
    if let Some((status, error_type)) = s.failure(&operation) {
        return cbor_error(status, &error_type, "injected by the stand-in");
    }
    if operation != "GetMetricData" {
        return cbor_error(400, "UnknownOperationException", &operation);
    }
    let start = input["StartTime"].as_f64().unwrap_or(0.0) as i64;
    let queries = input["MetricDataQueries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut e = aws_smithy_cbor::Encoder::new(Vec::new());
    e.begin_map();
    e.str("MetricDataResults");
    e.array(queries.len());
    for q in &queries {
        let id = q["Id"].as_str().unwrap_or("");
        let expression = q["Expression"].as_str().unwrap_or("");
        let value = quoted(expression, "BuildId")
            .and_then(|b| s.usage.get(b))
            .and_then(|(cpu, mem)| match quoted(expression, "MetricName") {
                Some("CPUUtilizedPercent") => Some(*cpu),
                Some("MemoryUtilized") => Some(*mem),
                _ => None,
            });
        // Three one-minute points rising to the peak.
        let points: Vec<f64> = value.map_or_else(Vec::new, |v| vec![v * 0.5, v * 0.8, v]);
        e.begin_map();
        e.str("Id").str(id);
        e.str("Label").str(id);
        e.str("Timestamps").array(points.len());
        for i in 0..points.len() {
            e.timestamp(&aws_smithy_types::DateTime::from_secs(
                start + 60 * i as i64,
            ));
        }
        e.str("Values").array(points.len());
        for v in &points {
            e.double(*v);
        }
        e.str("StatusCode").str("Complete");
        e.end();
    }
    e.end();
    cbor_response(StatusCode::OK, e.into_writer())
}
