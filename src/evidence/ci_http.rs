//! The HTTP side shared by the GitHub Actions and GitLab log fetches:
//! answers classified into [`FetchError`]s, throttling and server errors
//! retried (at most [`RETRIES`] times, waiting what `Retry-After` asks
//! when it fits before the deadline), and bodies read with a cap (a log
//! keeps only its last [`CiLimits::tail_bytes`] and stops being read
//! after [`CiLimits::max_read_bytes`]; a JSON answer errs past its cap).
//!
//! This module never sees a token: callers put their credentials on the
//! request they build, and nothing here logs a request's headers.

use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::time::Instant;

use super::FetchError;

/// Retries of one request after a 429, a rate-limit 403 or a 5xx.
pub const RETRIES: u32 = 2;

/// Wait before a retry when the answer does not say how long.
const BACKOFF: Duration = Duration::from_millis(250);

/// Most bytes of an error answer quoted in a [`FetchError`].
const ERROR_BODY_CHARS: usize = 200;

/// How much of a job's log is read and kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CiLimits {
    /// The log's last bytes kept in memory (errors are near the end).
    pub tail_bytes: usize,
    /// Bytes read at most; a longer log is cut there, said in its last line.
    pub max_read_bytes: u64,
    /// Bytes of a JSON answer (the run's job list) read at most.
    pub max_json_bytes: usize,
}

impl Default for CiLimits {
    fn default() -> Self {
        Self {
            tail_bytes: 1024 * 1024,
            max_read_bytes: 64 * 1024 * 1024,
            max_json_bytes: 4 * 1024 * 1024,
        }
    }
}

/// The wait an answer asks for: `Retry-After` in seconds or as an HTTP
/// date, else GitHub's `x-ratelimit-reset` when `x-ratelimit-remaining` is 0.
pub fn retry_after(headers: &HeaderMap, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(raw) = header("retry-after").map(str::trim) {
        if let Ok(secs) = raw.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(at) = chrono::DateTime::parse_from_rfc2822(raw) {
            let wait = (at.with_timezone(&chrono::Utc) - now).num_milliseconds();
            return Some(Duration::from_millis(wait.max(0) as u64));
        }
    }
    if header("x-ratelimit-remaining") == Some("0") {
        let reset = header("x-ratelimit-reset")?.parse::<i64>().ok()?;
        return Some(Duration::from_secs((reset - now.timestamp()).max(0) as u64));
    }
    None
}

/// Whether an answer says the caller is being throttled: 429, or a 403
/// that carries rate-limit headers (GitHub's secondary and primary limits).
pub fn is_throttled(status: u16, headers: &HeaderMap) -> bool {
    status == 429
        || (status == 403
            && (headers.contains_key("retry-after")
                || headers
                    .get("x-ratelimit-remaining")
                    .and_then(|v| v.to_str().ok())
                    == Some("0")))
}

/// The error an unsuccessful answer stands for (pure): 401 and 403 are a
/// missing permission, 404 and 410 a deleted or expired log, 429 and
/// rate-limited 403s throttling, anything else a failure.
pub fn error_of(status: u16, headers: &HeaderMap, described: String) -> FetchError {
    if is_throttled(status, headers) {
        FetchError::Throttled(described)
    } else {
        match status {
            401 | 403 => FetchError::Denied(described),
            404 | 410 => FetchError::NotFound(described),
            _ => FetchError::Failed(described),
        }
    }
}

/// Whether a request answered with `status` is worth sending again.
fn is_retried(status: u16, headers: &HeaderMap) -> bool {
    is_throttled(status, headers) || (500..600).contains(&status)
}

/// Sends the request `build` makes, again after a throttled or 5xx answer
/// (at most [`RETRIES`] times, never past `deadline`), and returns the
/// first answer that is neither, whatever its status. `what` names the
/// request in errors (no credentials in it).
pub async fn send(
    what: &str,
    deadline: Instant,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, FetchError> {
    let mut attempt = 0;
    loop {
        let response = build()
            .send()
            .await
            .map_err(|e| FetchError::Failed(format!("{what}: {}", described(&e))))?;
        let status = response.status().as_u16();
        if !is_retried(status, response.headers()) {
            return Ok(response);
        }
        let wait =
            retry_after(response.headers(), chrono::Utc::now()).unwrap_or(BACKOFF * (1 << attempt));
        let fits = Instant::now() + wait < deadline;
        if attempt >= RETRIES || !fits {
            return Err(failure(what, response).await);
        }
        attempt += 1;
        tracing::debug!(
            what,
            status,
            wait_ms = wait.as_millis() as u64,
            attempt,
            "Retrying."
        );
        drop(response);
        tokio::time::sleep(wait).await;
    }
}

/// The error an unsuccessful answer stands for, quoting the start of its body.
pub async fn failure(what: &str, mut response: reqwest::Response) -> FetchError {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_CHARS * 4 {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&body);
    let words: Vec<&str> = text.split_whitespace().collect();
    let quoted = crate::domain::truncate(&words.join(" "), ERROR_BODY_CHARS);
    let described = if quoted.is_empty() {
        format!("{what}: HTTP {status}")
    } else {
        format!("{what}: HTTP {status}: {quoted}")
    };
    error_of(status, &headers, described)
}

/// A client error without the request's URL (a pre-signed download URL
/// carries a signature that must not reach the logs).
fn described(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".into();
    }
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}

/// At most `cap` bytes of the answer's body; more is an error.
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, FetchError> {
    let mut out = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError::Failed(format!("reading the answer: {}", described(&e))))?
    {
        if out.len() + chunk.len() > cap {
            return Err(FetchError::Failed(format!(
                "the answer is longer than {cap} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The last [`CiLimits::tail_bytes`] of a log answer, starting at a line,
/// reading at most [`CiLimits::max_read_bytes`] (a log cut there ends with
/// a line that says so). Memory stays within twice the tail.
pub async fn read_tail(
    mut response: reqwest::Response,
    limits: CiLimits,
) -> Result<String, FetchError> {
    let keep = limits.tail_bytes.max(1);
    let mut tail: Vec<u8> = Vec::with_capacity(keep.min(64 * 1024));
    let mut read: u64 = 0;
    let mut dropped = false;
    let mut cut = false;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError::Failed(format!("reading the log: {}", described(&e))))?
    {
        let room = limits.max_read_bytes.saturating_sub(read);
        let take = (chunk.len() as u64).min(room) as usize;
        tail.extend_from_slice(&chunk[..take]);
        read += take as u64;
        if tail.len() > 2 * keep {
            tail.drain(..tail.len() - keep);
            dropped = true;
        }
        if read >= limits.max_read_bytes {
            cut = true;
            break;
        }
    }
    drop(response);
    if tail.len() > keep {
        tail.drain(..tail.len() - keep);
        dropped = true;
    }
    let mut start = 0;
    if dropped {
        // The first line kept is probably partial.
        if let Some(nl) = tail.iter().position(|&b| b == b'\n') {
            start = nl + 1;
        }
    }
    let mut log = String::from_utf8_lossy(&tail[start..]).into_owned();
    if cut {
        if !log.ends_with('\n') {
            log.push('\n');
        }
        log.push_str(&format!(
            "[log cut after its first {} MiB; its end was not read]\n",
            limits.max_read_bytes / (1024 * 1024)
        ));
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn answers_are_classified() {
        let none = HeaderMap::new();
        assert_eq!(error_of(403, &none, String::new()).outcome(), "denied");
        assert_eq!(error_of(401, &none, String::new()).outcome(), "denied");
        assert_eq!(error_of(404, &none, String::new()).outcome(), "not_found");
        assert_eq!(error_of(410, &none, String::new()).outcome(), "not_found");
        assert_eq!(error_of(429, &none, String::new()).outcome(), "throttled");
        assert_eq!(error_of(502, &none, String::new()).outcome(), "failed");
        let limited = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1")]);
        assert_eq!(
            error_of(403, &limited, String::new()).outcome(),
            "throttled"
        );
        assert!(is_retried(503, &none) && is_retried(429, &none));
        assert!(!is_retried(403, &none) && !is_retried(404, &none));
    }

    #[test]
    fn retry_after_in_seconds_as_a_date_or_from_the_rate_limit_reset() {
        let now: chrono::DateTime<chrono::Utc> = "2026-11-20T10:00:00Z".parse().unwrap();
        assert_eq!(
            retry_after(&headers(&[("retry-after", "3")]), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Fri, 20 Nov 2026 10:00:05 GMT")]),
                now
            ),
            Some(Duration::from_secs(5))
        );
        let reset = (now.timestamp() + 7).to_string();
        assert_eq!(
            retry_after(
                &headers(&[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", &reset)
                ]),
                now
            ),
            Some(Duration::from_secs(7))
        );
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }
}
