//! The `github.rerun_failed_jobs` action: `POST {github.api_url}/repos/
//! {owner}/{repo}/actions/runs/{run_id}/rerun-failed-jobs` with the
//! `GITHUB_TOKEN` secret (a token with `actions: write` on the repository).
//!
//! The owner and repository come from the pipeline's name
//! (`owner/repo/workflow`), the run from the call's `run_id`. Optional
//! parameter: `debug_logging` (bool) asks GitHub for debug logs. 201 is
//! success; 429, 5xx and rate-limit 403s are retryable (with the wait from
//! `Retry-After`); other 4xx (403, 404, 422 ...) are permanent.
//!
//! This module must never log, show or return the token, and makes only the
//! one request it is given.

use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{body_text, excerpt, read_capped, render_request, retry_after_of, send_error};
use super::{
    classify_status, ActionCall, ActionKind, ExecError, ExecutionOutcome, ExecutionStatus,
};
use crate::aws::ErrorClass;
use crate::config::{Config, Secret, Secrets};

/// The REST API version pipemedic speaks.
pub const API_VERSION: &str = "2022-11-28";
const ACCEPT_VALUE: &str = "application/vnd.github+json";
const USER_AGENT: &str = "pipemedic";
/// Most bytes of an error answer read.
const ERROR_BODY_CAP: usize = 4096;

/// Where and how the GitHub executor calls the API.
#[derive(Clone)]
pub struct GithubSettings {
    /// REST API base, e.g. `https://api.github.com` or `https://HOST/api/v3`.
    pub api_url: String,
    pub token: Option<Secret>,
    pub timeout: Duration,
}

impl std::fmt::Debug for GithubSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubSettings")
            .field("api_url", &self.api_url)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl GithubSettings {
    pub fn from_config(config: &Config, secrets: &Secrets) -> Self {
        Self {
            api_url: config.github.api_url.clone(),
            token: secrets.github_token.clone(),
            timeout: Duration::from_secs(config.remediate.http_timeout_s),
        }
    }
}

/// Runs `github.rerun_failed_jobs`.
#[derive(Debug, Clone)]
pub struct GithubRerunExecutor {
    settings: GithubSettings,
    client: reqwest::Client,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RerunParams {
    #[serde(default)]
    debug_logging: bool,
}

/// The request, checked and ready to send.
struct Request {
    owner: String,
    repo: String,
    run_id: String,
    url: String,
    body: Option<String>,
}

fn is_github_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s != "."
        && s != ".."
}

/// `owner` and `repo` of a GitHub Actions pipeline name
/// (`owner/repo/workflow`; the workflow part is optional and free-form).
pub fn owner_repo(pipeline: &str) -> Result<(String, String), ExecError> {
    let mut parts = pipeline.splitn(3, '/');
    match (parts.next(), parts.next()) {
        (Some(owner), Some(repo)) if is_github_name(owner) && is_github_name(repo) => {
            Ok((owner.to_string(), repo.to_string()))
        }
        _ => Err(ExecError::bad(
            "pipeline",
            format!("{pipeline:?} is not a GitHub Actions pipeline (owner/repo/workflow)"),
        )),
    }
}

impl GithubRerunExecutor {
    pub fn new(settings: GithubSettings) -> Result<Self, ExecError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| ExecError::NotConfigured(format!("HTTP client: {e}")))?;
        Ok(Self { settings, client })
    }

    fn token(&self) -> Result<&Secret, ExecError> {
        self.settings.token.as_ref().ok_or_else(|| {
            ExecError::NotConfigured(
                "GITHUB_TOKEN is not set; github.rerun_failed_jobs needs a token with actions: write"
                    .into(),
            )
        })
    }

    fn request(&self, call: &ActionCall) -> Result<Request, ExecError> {
        let (owner, repo) = owner_repo(&call.pipeline)?;
        if call.run_id.is_empty() || !call.run_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(ExecError::bad(
                "run_id",
                format!("{:?} is not a GitHub Actions run id", call.run_id),
            ));
        }
        let p: RerunParams = call.params_as()?;
        let base = self.settings.api_url.trim_end_matches('/');
        let url = format!(
            "{base}/repos/{owner}/{repo}/actions/runs/{}/rerun-failed-jobs",
            call.run_id
        );
        Ok(Request {
            owner,
            repo,
            run_id: call.run_id.clone(),
            url,
            body: p
                .debug_logging
                .then(|| json!({"enable_debug_logging": true}).to_string()),
        })
    }

    fn render(request: &Request) -> String {
        let mut headers = vec![
            ("Accept", ACCEPT_VALUE),
            ("Authorization", "Bearer"),
            ("X-GitHub-Api-Version", API_VERSION),
            ("User-Agent", USER_AGENT),
        ];
        if request.body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        render_request("POST", &request.url, &headers, request.body.as_deref())
    }
}

/// Classifies a GitHub error answer. A 403 or 429 that says the rate limit
/// is spent (`Retry-After`, or `x-ratelimit-remaining: 0`) is throttling;
/// any other 403 is permanent.
fn classify_answer(status: u16, headers: &HeaderMap) -> (ErrorClass, Option<Duration>) {
    let retry_after = retry_after_of(headers).or_else(|| {
        let spent = headers
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            == Some("0");
        let reset = headers
            .get("x-ratelimit-reset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok());
        match (spent, reset) {
            (true, Some(reset)) => {
                let wait = reset - chrono::Utc::now().timestamp();
                Some(Duration::from_secs(wait.max(0) as u64))
            }
            _ => None,
        }
    });
    let rate_limited = headers.contains_key(reqwest::header::RETRY_AFTER)
        || headers
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            == Some("0");
    let class = match status {
        403 | 429 if rate_limited => ErrorClass::Throttling,
        other => classify_status(other),
    };
    (class, retry_after)
}

#[async_trait::async_trait]
impl super::Executor for GithubRerunExecutor {
    fn kind(&self) -> ActionKind {
        ActionKind::GithubRerunFailedJobs
    }

    fn describe(&self, call: &ActionCall) -> Result<String, ExecError> {
        let request = self.request(call)?;
        self.token()?;
        Ok(Self::render(&request))
    }

    async fn execute(&self, call: &ActionCall) -> Result<ExecutionOutcome, ExecError> {
        let request = self.request(call)?;
        let token = self.token()?;
        let operation = "GitHub rerun-failed-jobs";
        let mut builder = self
            .client
            .post(&request.url)
            .header(ACCEPT, ACCEPT_VALUE)
            .header("X-GitHub-Api-Version", API_VERSION)
            .bearer_auth(token.expose());
        if let Some(body) = &request.body {
            builder = builder
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        tracing::debug!(owner = %request.owner, repo = %request.repo, run_id = %request.run_id, "Asking GitHub to re-run failed jobs.");
        let mut response = builder
            .send()
            .await
            .map_err(|e| send_error(operation, &e.without_url(), self.settings.timeout))?;
        let status = response.status();
        if status.is_success() {
            return Ok(ExecutionOutcome {
                status: ExecutionStatus::Succeeded,
                summary: format!(
                    "Re-ran the failed jobs of {}/{} run {}.",
                    request.owner, request.repo, request.run_id
                ),
                call: Self::render(&request),
                response: json!({"status": status.as_u16()}),
                external_id: Some(request.run_id),
            });
        }
        let (class, retry_after) = classify_answer(status.as_u16(), response.headers());
        let (bytes, truncated) = read_capped(&mut response, ERROR_BODY_CAP)
            .await
            .unwrap_or_default();
        let text = body_text(&bytes, truncated);
        let detail = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        let mut message = format!("HTTP {status}");
        if !detail.trim().is_empty() {
            message.push_str(&format!(": {}", excerpt(&detail)));
        }
        Err(ExecError::Api {
            operation: operation.to_string(),
            class,
            status: Some(status.as_u16()),
            code: None,
            message,
            retry_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remediate::Executor;

    fn executor(token: Option<&str>) -> GithubRerunExecutor {
        GithubRerunExecutor::new(GithubSettings {
            api_url: "https://github.example.com/api/v3/".into(),
            token: token.map(Secret::new),
            timeout: Duration::from_secs(30),
        })
        .unwrap()
    }

    fn call(pipeline: &str, run_id: &str, params: Value) -> ActionCall {
        ActionCall::new(ActionKind::GithubRerunFailedJobs, pipeline, run_id, params)
    }

    #[test]
    fn dry_run_is_the_request_without_the_token() {
        let e = executor(Some("ghp_secret"));
        let shown = e
            .describe(&call("octo-org/octo-repo/CI tests", "289782451", json!({})))
            .unwrap();
        assert_eq!(
            shown,
            "POST https://github.example.com/api/v3/repos/octo-org/octo-repo/actions/runs/289782451/rerun-failed-jobs\n\
             Accept: application/vnd.github+json\n\
             Authorization: ***\n\
             X-GitHub-Api-Version: 2022-11-28\n\
             User-Agent: pipemedic"
        );
        let shown = e
            .describe(&call(
                "octo-org/octo-repo/test",
                "7",
                json!({"debug_logging": true}),
            ))
            .unwrap();
        assert!(
            shown.ends_with("Content-Type: application/json\n\n{\"enable_debug_logging\":true}"),
            "{shown}"
        );
        assert!(!format!("{e:?}").contains("ghp_secret"));
    }

    #[test]
    fn bad_calls_are_refused() {
        let e = executor(Some("t"));
        let field = |r: Result<String, ExecError>| match r {
            Err(ExecError::BadParams { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(e.describe(&call("checkout-service", "1", json!({})))),
            "pipeline"
        );
        assert_eq!(
            field(e.describe(&call("octo//ci", "1", json!({})))),
            "pipeline"
        );
        assert_eq!(
            field(e.describe(&call("../x/ci", "1", json!({})))),
            "pipeline"
        );
        assert_eq!(
            field(e.describe(&call("o/r/ci", "e-1", json!({})))),
            "run_id"
        );
        assert_eq!(
            field(e.describe(&call("o/r/ci", "1", json!({"jobs": [1]})))),
            "jobs"
        );
        assert!(matches!(
            executor(None).describe(&call("o/r/ci", "1", json!({}))),
            Err(ExecError::NotConfigured(m)) if m.contains("GITHUB_TOKEN")
        ));
        assert_eq!(
            owner_repo("octo-org/octo-repo/deploy/prod").unwrap(),
            ("octo-org".to_string(), "octo-repo".to_string())
        );
    }

    #[test]
    fn rate_limit_403s_are_throttling() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            classify_answer(403, &headers),
            (ErrorClass::Permanent, None)
        );
        assert_eq!(classify_answer(404, &headers).0, ErrorClass::Permanent);
        assert_eq!(classify_answer(422, &headers).0, ErrorClass::Permanent);
        assert_eq!(classify_answer(502, &headers).0, ErrorClass::Transient);
        assert_eq!(classify_answer(429, &headers).0, ErrorClass::Throttling);
        headers.insert("retry-after", "60".parse().unwrap());
        assert_eq!(
            classify_answer(403, &headers),
            (ErrorClass::Throttling, Some(Duration::from_secs(60)))
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-remaining", "0".parse().unwrap());
        headers.insert("x-ratelimit-reset", "1".parse().unwrap());
        assert_eq!(
            classify_answer(403, &headers),
            (ErrorClass::Throttling, Some(Duration::ZERO))
        );
    }
}
