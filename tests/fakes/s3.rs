//! A stand-in for the S3 REST API, enough for `PutObject` and `GetObject`
//! with path-style addressing (`PUT /{Bucket}/{Key}`, what the SDK sends
//! with `force_path_style`, which pipemedic sets for an endpoint override).
//! Requests must be SigV4-signed. Errors are S3's XML body
//! `<Error><Code>…</Code><Message>…</Message></Error>`: `NoSuchBucket` 404
//! for a bucket not created, `AccessDenied` 403 for a bucket told to deny.
//! A body sent `aws-chunked` (the SDK's streaming checksums) is decoded.
//! Point `aws.endpoints.s3` at [`FakeS3::url`].
//!
//! ```ignore
//! let s3 = FakeS3::start().await;
//! s3.create_bucket("ci-anomaly");
//! s3.deny("locked-bucket");
//! let csv = s3.object("ci-anomaly", "pipemedic/rows/checkout.csv");
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio_util::sync::CancellationToken;

/// One object as stored.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub body: Vec<u8>,
    pub content_type: String,
}

#[derive(Default)]
struct FakeState {
    buckets: BTreeSet<String>,
    denied: BTreeSet<String>,
    objects: BTreeMap<(String, String), StoredObject>,
    /// (method, bucket, key) of every request.
    calls: Vec<(String, String, String)>,
}

/// The running fake; stops when dropped.
pub struct FakeS3 {
    addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    stop: CancellationToken,
}

impl Drop for FakeS3 {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeS3 {
    /// Starts on 127.0.0.1:0 with no buckets.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let (addr, stop) = pipemedic::standin::serve_on_loopback(app, "S3").await;
        Self { addr, state, stop }
    }

    /// The endpoint URL to configure (`aws.endpoints.s3`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn create_bucket(&self, bucket: &str) {
        self.state().buckets.insert(bucket.to_string());
    }

    /// Every write to `bucket` is refused with `AccessDenied`.
    pub fn deny(&self, bucket: &str) {
        let mut s = self.state();
        s.buckets.insert(bucket.to_string());
        s.denied.insert(bucket.to_string());
    }

    pub fn object(&self, bucket: &str, key: &str) -> Option<StoredObject> {
        self.state()
            .objects
            .get(&(bucket.to_string(), key.to_string()))
            .cloned()
    }

    /// Keys stored in `bucket`, in order.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.state()
            .objects
            .keys()
            .filter(|(b, _)| b == bucket)
            .map(|(_, k)| k.clone())
            .collect()
    }

    /// (method, bucket, key) of every request, in order.
    pub fn calls(&self) -> Vec<(String, String, String)> {
        self.state().calls.clone()
    }
}

fn error(status: u16, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>fake-request</RequestId></Error>"
    );
    (
        status,
        [
            ("content-type", "application/xml"),
            ("x-amz-request-id", "fake-request"),
        ],
        body,
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

fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&raw[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes an `aws-chunked` body: `SIZE-HEX[;ext]\r\nDATA\r\n` … `0\r\n`
/// then trailers.
fn decode_chunked(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

async fn handle(
    State(state): State<Arc<Mutex<FakeState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_start_matches('/');
    let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
    let (bucket, key) = (percent_decode(bucket), percent_decode(key));
    if !header(&headers, "authorization").starts_with("AWS4-HMAC-SHA256") {
        return error(403, "AccessDenied", "Request not signed");
    }
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.calls
        .push((method.to_string(), bucket.clone(), key.clone()));
    if !s.buckets.contains(&bucket) {
        return error(404, "NoSuchBucket", "The specified bucket does not exist");
    }
    if key.is_empty() {
        return error(501, "NotImplemented", "only object operations are served");
    }
    match method {
        Method::PUT => {
            if s.denied.contains(&bucket) {
                return error(403, "AccessDenied", "Access Denied");
            }
            let body = if header(&headers, "content-encoding").contains("aws-chunked") {
                match decode_chunked(&body) {
                    Some(b) => b,
                    None => return error(400, "IncompleteBody", "bad aws-chunked body"),
                }
            } else {
                body.to_vec()
            };
            let declared = header(&headers, "x-amz-decoded-content-length");
            if !declared.is_empty() && declared != body.len().to_string() {
                return error(400, "IncompleteBody", "length does not match");
            }
            let etag = format!("\"{:032x}\"", s.objects.len() + 1);
            s.objects.insert(
                (bucket, key),
                StoredObject {
                    body,
                    content_type: header(&headers, "content-type"),
                },
            );
            (StatusCode::OK, [("etag", etag.as_str())], "").into_response()
        }
        Method::GET => match s.objects.get(&(bucket, key)) {
            Some(o) => (
                StatusCode::OK,
                [("content-type", o.content_type.clone())],
                o.body.clone(),
            )
                .into_response(),
            None => error(404, "NoSuchKey", "The specified key does not exist."),
        },
        _ => error(405, "MethodNotAllowed", "not served by the stand-in"),
    }
}
