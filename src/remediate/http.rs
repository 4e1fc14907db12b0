//! The `http` action: one templated request, already rendered into its
//! parameters, sent to a host on `remediate.http_allowlist`, at an address
//! the allowlist permits (see [`super::address`]).
//!
//! Parameters: `method` (GET, POST, PUT, PATCH, DELETE), `url` (http or
//! https), `headers` (name → value), `body` (a string is sent as is, any
//! other JSON value as `application/json`), `timeout_s` (at most
//! `remediate.http_timeout_s`, its default). A URL whose host is not on the
//! allowlist is refused before anything is sent, and so is a host whose
//! addresses are all loopback, link-local, private or unique-local unless
//! an entry names them; the connection goes to the checked address (no
//! proxy, no second lookup). Redirects are never
//! followed (a redirect could leave the allowlist). The status and a
//! size-capped body are captured; 429 and 5xx are retryable failures, other
//! non-2xx answers permanent ones.
//!
//! This module sends exactly the request it is given: it never builds a URL,
//! header or body itself, and never shows a credential-like header's value
//! in a dry run or an outcome.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{json, Value};

use super::address::{refusal_in, CheckedResolver};
use super::{
    capped_text, classify_status, parse_retry_after, ActionCall, ActionKind, ExecError,
    ExecutionOutcome, ExecutionStatus, RESPONSE_CAP_BYTES,
};
use crate::aws::ErrorClass;
use crate::config::{HttpAllowlist, RemediateConfig};

/// Methods an `http` action may use.
pub const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
/// Headers an `http` action may not set (they would change where or how
/// the request goes).
const FORBIDDEN_HEADERS: [&str; 4] = ["host", "content-length", "transfer-encoding", "connection"];
/// Longest request body shown in a dry run.
const SHOWN_BODY_CAP: usize = 4096;
/// Longest excerpt of an error answer kept in the error message.
const ERROR_EXCERPT: usize = 300;

/// What the `http` executor may do.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Hosts it may name and addresses it may reach
    /// (`remediate.http_allowlist`).
    pub allowlist: Arc<HttpAllowlist>,
    /// Default and upper bound of a request's timeout.
    pub timeout: Duration,
    /// Most response bytes kept.
    pub response_cap: usize,
}

impl HttpSettings {
    /// Settings from the configuration (validated before, so bad allowlist
    /// entries are left out here rather than reported twice).
    pub fn from_config(config: &RemediateConfig) -> Self {
        Self {
            allowlist: Arc::new(HttpAllowlist::lenient(&config.http_allowlist)),
            timeout: Duration::from_secs(config.http_timeout_s),
            response_cap: RESPONSE_CAP_BYTES,
        }
    }

    /// Whether `host` may be named (case-insensitive; `*.domain` matches
    /// every subdomain of `domain`, not `domain` itself; an address must
    /// be inside an address or network entry).
    pub fn allows(&self, host: &str) -> bool {
        self.allowlist.allows_host(host)
    }
}

/// Runs `http` actions.
#[derive(Debug, Clone)]
pub struct HttpExecutor {
    settings: HttpSettings,
    client: reqwest::Client,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpParams {
    method: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    timeout_s: Option<u64>,
}

/// One request, checked and ready to send.
#[derive(Debug)]
struct Request {
    method: Method,
    url: Url,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<String>,
    timeout: Duration,
}

impl HttpExecutor {
    pub fn new(settings: HttpSettings) -> Result<Self, ExecError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(CheckedResolver::new(settings.allowlist.clone())))
            .user_agent("pipemedic")
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| ExecError::NotConfigured(format!("HTTP client: {e}")))?;
        Ok(Self { settings, client })
    }

    fn request(&self, call: &ActionCall) -> Result<Request, ExecError> {
        let p: HttpParams = call.params_as()?;
        let method_name = p.method.to_ascii_uppercase();
        if !METHODS.contains(&method_name.as_str()) {
            return Err(ExecError::bad(
                "method",
                format!("{:?} must be one of {}", p.method, METHODS.join(", ")),
            ));
        }
        let method = Method::from_bytes(method_name.as_bytes())
            .map_err(|e| ExecError::bad("method", e.to_string()))?;
        let url = Url::parse(&p.url)
            .map_err(|e| ExecError::bad("url", format!("{:?} is not a URL: {e}", p.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ExecError::bad("url", "must be an http:// or https:// URL"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ExecError::bad(
                "url",
                "must not carry credentials; send them in a header",
            ));
        }
        let host = url.host_str().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if !self.settings.allows(host) {
            return Err(ExecError::Refused(format!(
                "host {host:?} is not on remediate.http_allowlist"
            )));
        }
        // An address in the URL is never resolved, so it is checked here.
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.settings
                .allowlist
                .check_address(ip)
                .map_err(ExecError::Refused)?;
        }
        let mut headers = Vec::new();
        for (name, value) in &p.headers {
            let field = format!("headers.{name}");
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ExecError::bad(&field, "not a valid header name"))?;
            if FORBIDDEN_HEADERS.contains(&header.as_str()) {
                return Err(ExecError::bad(&field, "may not be set by an action"));
            }
            let value = HeaderValue::from_str(value)
                .map_err(|_| ExecError::bad(&field, "not a valid header value"))?;
            headers.push((header, value));
        }
        let body = match p.body {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                if !headers.iter().any(|(n, _)| n == CONTENT_TYPE) {
                    headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
                }
                Some(other.to_string())
            }
        };
        let timeout = match p.timeout_s {
            None => self.settings.timeout,
            Some(s) if s >= 1 && Duration::from_secs(s) <= self.settings.timeout => {
                Duration::from_secs(s)
            }
            Some(_) => {
                return Err(ExecError::bad(
                    "timeout_s",
                    format!(
                        "must be between 1 and {} (remediate.http_timeout_s)",
                        self.settings.timeout.as_secs()
                    ),
                ))
            }
        };
        Ok(Request {
            method,
            url,
            headers,
            body,
            timeout,
        })
    }
}

/// Whether a header's value is a credential and must not be shown.
pub(crate) fn is_sensitive_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie"
    ) || [
        "token",
        "secret",
        "key",
        "password",
        "signature",
        "auth",
        "session",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// A request as its HTTP message: request line, headers (credential-like
/// values as `***`), a blank line and the body (long bodies cut).
pub(crate) fn render_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> String {
    let mut out = format!("{method} {url}");
    for (name, value) in headers {
        let shown = if is_sensitive_header(name) {
            "***"
        } else {
            value
        };
        out.push_str(&format!("\n{name}: {shown}"));
    }
    if let Some(body) = body {
        let (shown, _) = capped_text(body.as_bytes(), body.len(), SHOWN_BODY_CAP);
        out.push_str("\n\n");
        out.push_str(&shown);
    }
    out
}

/// A failed send as an [`ExecError`]: timeouts and connection failures are
/// retryable, anything else (an invalid request) is not.
pub(crate) fn send_error(operation: &str, error: &reqwest::Error, after: Duration) -> ExecError {
    if error.is_timeout() {
        return ExecError::Timeout {
            operation: operation.to_string(),
            after,
        };
    }
    let class = if error.is_builder() || error.is_redirect() {
        ErrorClass::Permanent
    } else {
        ErrorClass::Transient
    };
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        message.push_str(&format!(": {e}"));
        source = e.source();
    }
    ExecError::Api {
        operation: operation.to_string(),
        class,
        status: None,
        code: None,
        message,
        retry_after: None,
    }
}

/// Reads at most `cap` bytes of a response body; the flag says whether
/// more was there (the rest is not read).
pub(crate) async fn read_capped(
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut kept = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap.saturating_sub(kept.len());
        if chunk.len() > room {
            kept.extend_from_slice(&chunk[..room]);
            return Ok((kept, true));
        }
        kept.extend_from_slice(&chunk);
    }
    Ok((kept, false))
}

/// The body as text, with a marker when it was cut.
pub(crate) fn body_text(bytes: &[u8], truncated: bool) -> String {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if truncated {
        text.push_str(&format!(
            "\n[... truncated: response longer than {} bytes]",
            bytes.len()
        ));
    }
    text
}

/// The `Retry-After` wait of a response, if it sent one.
pub(crate) fn retry_after_of(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, chrono::Utc::now()))
}

/// The first characters of an error answer, on one line.
pub(crate) fn excerpt(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > ERROR_EXCERPT {
        let cut: String = one_line.chars().take(ERROR_EXCERPT).collect();
        format!("{cut}...")
    } else {
        one_line
    }
}

/// The URL with the values of credential-like query parameters
/// (`token`, `key`, `signature` ...) as `***`.
pub(crate) fn redacted_url(url: &Url) -> String {
    if !url.query_pairs().any(|(k, _)| is_sensitive_header(&k)) {
        return url.to_string();
    }
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if is_sensitive_header(&k) {
                "***".to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    let mut shown = url.clone();
    shown.query_pairs_mut().clear().extend_pairs(pairs);
    shown.to_string()
}

fn render(request: &Request) -> String {
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap_or("<binary>")))
        .collect();
    render_request(
        request.method.as_str(),
        &redacted_url(&request.url),
        &headers,
        request.body.as_deref(),
    )
}

#[async_trait::async_trait]
impl super::Executor for HttpExecutor {
    fn kind(&self) -> ActionKind {
        ActionKind::Http
    }

    fn describe(&self, call: &ActionCall) -> Result<String, ExecError> {
        Ok(render(&self.request(call)?))
    }

    async fn execute(&self, call: &ActionCall) -> Result<ExecutionOutcome, ExecError> {
        let request = self.request(call)?;
        let rendered = render(&request);
        let operation = format!(
            "{} {}",
            request.method,
            request.url.host_str().unwrap_or_default()
        );
        let mut builder = self
            .client
            .request(request.method.clone(), request.url.clone())
            .timeout(request.timeout);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        tracing::debug!(operation = %operation, "Sending the http action.");
        let mut response = builder.send().await.map_err(|e| match refusal_in(&e) {
            Some(reason) => ExecError::Refused(reason),
            None => send_error(&operation, &e.without_url(), request.timeout),
        })?;
        let status = response.status();
        let retry_after = retry_after_of(response.headers());
        let (bytes, truncated) = read_capped(&mut response, self.settings.response_cap)
            .await
            .map_err(|e| send_error(&operation, &e.without_url(), request.timeout))?;
        let text = body_text(&bytes, truncated);
        if !status.is_success() {
            let mut message = format!("HTTP {status}");
            if status.is_redirection() {
                if let Some(to) = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                {
                    message.push_str(&format!(", redirect to {to} not followed"));
                }
            } else if !text.trim().is_empty() {
                message.push_str(&format!(": {}", excerpt(&text)));
            }
            return Err(ExecError::Api {
                operation,
                class: classify_status(status.as_u16()),
                status: Some(status.as_u16()),
                code: None,
                message,
                retry_after,
            });
        }
        let body = if truncated {
            Value::String(text)
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::String(text))
        };
        Ok(ExecutionOutcome {
            status: ExecutionStatus::Succeeded,
            summary: format!(
                "{} {} answered {status}.",
                request.method,
                redacted_url(&request.url)
            ),
            call: rendered,
            response: json!({"status": status.as_u16(), "body": body, "truncated": truncated}),
            external_id: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remediate::Executor;

    fn executor(allowlist: &[&str]) -> HttpExecutor {
        HttpExecutor::new(HttpSettings {
            allowlist: Arc::new(
                HttpAllowlist::parse(&allowlist.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .unwrap(),
            ),
            timeout: Duration::from_secs(30),
            response_cap: 1024,
        })
        .unwrap()
    }

    fn call(params: Value) -> ActionCall {
        ActionCall::new(ActionKind::Http, "checkout-service", "e-1", params)
    }

    #[test]
    fn dry_run_is_the_http_message_with_credentials_hidden() {
        let e = executor(&["hooks.internal.example"]);
        let shown = e
            .describe(&call(json!({
                "method": "post",
                "url": "https://hooks.internal.example/deploy/rollback?service=checkout",
                "headers": {"Authorization": "Bearer s3cr3t", "X-Api-Key": "k-123", "X-Request-Source": "pipemedic"},
                "body": {"service": "checkout-service", "to": "v41"}
            })))
            .unwrap();
        assert_eq!(
            shown,
            "POST https://hooks.internal.example/deploy/rollback?service=checkout\n\
             authorization: ***\n\
             x-api-key: ***\n\
             x-request-source: pipemedic\n\
             content-type: application/json\n\
             \n\
             {\"service\":\"checkout-service\",\"to\":\"v41\"}"
        );
        assert!(!shown.contains("s3cr3t") && !shown.contains("k-123"));
        assert_eq!(
            e.describe(&call(
                json!({"method": "GET", "url": "http://hooks.internal.example/status"})
            ))
            .unwrap(),
            "GET http://hooks.internal.example/status"
        );
        assert_eq!(
            e.describe(&call(json!({"method": "PUT", "url": "http://hooks.internal.example/x", "body": "plain text"})))
                .unwrap(),
            "PUT http://hooks.internal.example/x\n\nplain text"
        );
    }

    #[test]
    fn hosts_off_the_allowlist_are_refused() {
        let e = executor(&["hooks.internal.example", "*.ops.example"]);
        for url in [
            "https://evil.example/x",
            "https://hooks.internal.example.evil.example/x",
            "https://ops.example/x",
            "https://xops.example/x",
            "http://127.0.0.1/x",
        ] {
            match e.describe(&call(json!({"method": "POST", "url": url}))) {
                Err(ExecError::Refused(message)) => {
                    assert!(message.contains("allowlist"), "{message}")
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        for url in [
            "https://HOOKS.internal.example/x",
            "https://a.ops.example/x",
            "https://a.b.ops.example:8443/x",
        ] {
            e.describe(&call(json!({"method": "POST", "url": url})))
                .unwrap_or_else(|err| panic!("{url}: {err}"));
        }
        assert!(!executor(&[]).settings.allows("hooks.internal.example"));
    }

    #[test]
    fn addresses_in_urls_follow_the_address_rules() {
        // An address or network entry is what lets a URL reach a private
        // or link-local address.
        let e = executor(&["169.254.0.0/16", "10.0.0.0/8"]);
        e.describe(&call(json!({"method": "GET", "url": "http://10.1.2.3/x"})))
            .unwrap();
        e.describe(&call(
            json!({"method": "GET", "url": "http://169.254.169.254/latest/meta-data/"}),
        ))
        .unwrap();
        let none = executor(&["hooks.internal.example"]);
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:127.0.0.1]/x",
            "http://[::1]/x",
        ] {
            match none.describe(&call(json!({"method": "GET", "url": url}))) {
                Err(ExecError::Refused(_)) => {}
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    fn bad_field(result: Result<String, ExecError>) -> String {
        match result {
            Err(ExecError::BadParams { field, .. }) => field,
            other => panic!("expected bad params, got {other:?}"),
        }
    }

    #[test]
    fn bad_parameters_are_refused() {
        let e = executor(&["hooks.internal.example"]);
        let ok_url = "https://hooks.internal.example/x";
        assert_eq!(
            bad_field(e.describe(&call(json!({"method": "TRACE", "url": ok_url})))),
            "method"
        );
        assert_eq!(
            bad_field(e.describe(&call(
                json!({"method": "GET", "url": "hooks.internal.example/x"})
            ))),
            "url"
        );
        assert_eq!(
            bad_field(e.describe(&call(
                json!({"method": "GET", "url": "ftp://hooks.internal.example/x"})
            ))),
            "url"
        );
        assert_eq!(
            bad_field(e.describe(&call(
                json!({"method": "GET", "url": "https://u:p@hooks.internal.example/x"})
            ))),
            "url"
        );
        assert_eq!(
            bad_field(e.describe(&call(
                json!({"method": "GET", "url": ok_url, "headers": {"Host": "evil.example"}})
            ))),
            "headers.Host"
        );
        assert_eq!(
            bad_field(e.describe(&call(
                json!({"method": "GET", "url": ok_url, "headers": {"X-A": "a\nb"}})
            ))),
            "headers.X-A"
        );
        assert_eq!(
            bad_field(e.describe(&call(
                json!({"method": "GET", "url": ok_url, "timeout_s": 31})
            ))),
            "timeout_s"
        );
        assert_eq!(
            bad_field(e.describe(&call(
                json!({"method": "GET", "url": ok_url, "timeout_s": 0})
            ))),
            "timeout_s"
        );
        assert_eq!(
            bad_field(e.describe(&call(json!({"method": "GET", "url": ok_url, "extra": 1})))),
            "extra"
        );
        assert_eq!(
            bad_field(e.describe(&call(json!({"url": ok_url})))),
            "params"
        );
    }

    #[test]
    fn credential_like_query_values_are_hidden() {
        let e = executor(&["hooks.internal.example"]);
        assert_eq!(
            e.describe(&call(json!({"method": "POST", "url": "https://hooks.internal.example/x?service=checkout&api_key=k-1&sig=2"})))
                .unwrap(),
            "POST https://hooks.internal.example/x?service=checkout&api_key=***&sig=2"
        );
    }

    #[test]
    fn credential_like_headers_are_recognised() {
        for name in [
            "Authorization",
            "X-Hook-Token",
            "x-api-key",
            "Cookie",
            "X-Signature",
        ] {
            assert!(is_sensitive_header(name), "{name}");
        }
        for name in [
            "Content-Type",
            "Accept",
            "X-GitHub-Api-Version",
            "User-Agent",
        ] {
            assert!(!is_sensitive_header(name), "{name}");
        }
    }
}
