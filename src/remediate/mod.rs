//! Remediation executors: what runs one approved action, and the dry run
//! that shows the exact call it would make.
//!
//! An [`ActionCall`] names an action kind (the playbook's `uses`), the
//! pipeline and run the incident is about, and parameters that were already
//! rendered and validated against the playbook. Each [`Executor`] turns a
//! call into exactly one outside call (a CodePipeline API operation, one
//! GitHub REST request, one allowlisted HTTP request, one process) and
//! reports an [`ExecutionOutcome`] or a classified [`ExecError`].
//!
//! This module must not decide whether an action runs: approval, exactly-once
//! claiming and the plan belong to other modules. Executors never build a
//! command or a request from model output, never retry on their own (the
//! AWS SDK's standard retries of throttling and 5xx aside) and never loop: a failure
//! is returned once, with [`ExecError::retryable`] telling the caller whether
//! a later, separately decided attempt may succeed. Secrets never appear in
//! a dry run, an outcome, an error or a log line.
//!
//! | kind | executor |
//! | --- | --- |
//! | `codepipeline.retry_stage`, `.rollback_stage`, `.start_execution`, `.stop_execution` | [`codepipeline::CodePipelineExecutor`] |
//! | `github.rerun_failed_jobs` | [`github::GithubRerunExecutor`] |
//! | `http` | [`http::HttpExecutor`] |
//! | `shell` | [`shell::ShellExecutor`] |

pub mod address;
pub mod codepipeline;
pub mod github;
pub mod http;
pub mod shell;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::aws::{AwsClients, AwsSettings, ErrorClass, LazyClient};
use crate::config::{Config, Env, Secrets};

/// Largest captured response or output kept with an outcome, per stream.
pub const RESPONSE_CAP_BYTES: usize = 64 * 1024;

/// The kinds of action a playbook may declare (`uses`): one enum for the
/// playbooks that declare them and the executors that run them.
pub use crate::playbooks::ActionKind;

/// One approved action to run, as the plan and the playbook fixed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionCall {
    pub kind: ActionKind,
    /// The pipeline's name (CodePipeline name, or `owner/repo/workflow`).
    pub pipeline: String,
    /// The CodePipeline execution id or GitHub run id the incident is about.
    pub run_id: String,
    /// Parameters already rendered and validated against the playbook.
    #[serde(default)]
    pub params: Map<String, Value>,
}

impl ActionCall {
    /// A call with `params` as its parameters (a value that is not a JSON
    /// object gives no parameters).
    pub fn new(kind: ActionKind, pipeline: &str, run_id: &str, params: Value) -> Self {
        let params = match params {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        Self {
            kind,
            pipeline: pipeline.to_string(),
            run_id: run_id.to_string(),
            params,
        }
    }

    /// The parameters as `T`; unknown and mistyped parameters are
    /// [`ExecError::BadParams`] naming the parameter.
    pub fn params_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, ExecError> {
        serde_path_to_error::deserialize(Value::Object(self.params.clone())).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            let field = if path == "." || path.is_empty() {
                "params".to_string()
            } else {
                path
            };
            ExecError::BadParams { field, message }
        })
    }
}

/// Whether the action did what it was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    Succeeded,
    /// The call was made and the action itself reported failure (for
    /// example a non-zero exit code).
    Failed,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// What running one action did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionOutcome {
    pub status: ExecutionStatus,
    /// One line for chat.
    pub summary: String,
    /// The exact call made (the same text as the dry run), secrets redacted.
    pub call: String,
    /// What came back, each text field capped at [`RESPONSE_CAP_BYTES`].
    pub response: Value,
    /// The execution or run that now carries the remediation (a new
    /// `pipelineExecutionId`, the re-run GitHub run), to verify later.
    pub external_id: Option<String>,
}

/// Why an action did not run, or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("no executor is registered for {0}")]
    Unsupported(ActionKind),
    #[error("invalid parameter {field}: {message}")]
    BadParams { field: String, message: String },
    /// Something the executor needs is not configured (a token, a client).
    #[error("not configured: {0}")]
    NotConfigured(String),
    /// The call breaks a rule of the configuration (a host not on the
    /// allowlist); nothing was sent.
    #[error("refused, nothing was sent: {0}")]
    Refused(String),
    /// The service answered with an error, or could not be reached.
    #[error("{operation} failed ({}): {message}", class.as_str())]
    Api {
        operation: String,
        class: ErrorClass,
        /// HTTP status, when a response came back.
        status: Option<u16>,
        /// The service's error code (`StageNotRetryableException` ...).
        code: Option<String>,
        message: String,
        /// How long the service asked to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// No answer in time; the call may or may not have taken effect.
    #[error("{operation} timed out after {}s", after.as_secs_f64())]
    Timeout { operation: String, after: Duration },
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

impl ExecError {
    pub(crate) fn bad(field: &str, message: impl Into<String>) -> Self {
        Self::BadParams {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// The failure class: throttling, transient (5xx, timeouts, connection
    /// failures) or permanent (bad parameters, 4xx, refused, not configured).
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Api { class, .. } => *class,
            Self::Timeout { .. } => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }

    /// Whether a later attempt of the same call may succeed. The caller
    /// reports the failure either way; it never retries into a loop.
    pub fn retryable(&self) -> bool {
        self.class().is_retryable()
    }

    /// How long the service asked to wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Runs one kind of action.
///
/// `describe` and `execute` read the same parameters the same way, so the
/// dry run shows exactly the call `execute` makes. Neither is retried by
/// pipemedic: `execute` is called at most once per approved action.
#[async_trait::async_trait]
pub trait Executor: Send + Sync {
    /// The action kind this executor runs.
    fn kind(&self) -> ActionKind;

    /// The dry run: the exact API call, request or argv `execute` would
    /// make for this call, secrets redacted. Pure: nothing is sent. Fails
    /// on the same bad parameters `execute` would refuse.
    fn describe(&self, call: &ActionCall) -> Result<String, ExecError>;

    /// Fills in what the call leaves to be looked up (a rollback's target
    /// execution), with read-only calls only, so that the dry run shown
    /// for approval is the call that will run. Idempotent; by default the
    /// call unchanged.
    async fn prepare(&self, call: &ActionCall) -> Result<ActionCall, ExecError> {
        Ok(call.clone())
    }

    /// Makes the call once. Not idempotent in general (it changes a
    /// pipeline); the caller guarantees it runs once per approval.
    async fn execute(&self, call: &ActionCall) -> Result<ExecutionOutcome, ExecError>;
}

/// The executors available in this process, one per action kind.
#[derive(Clone, Default)]
pub struct ExecutorRegistry {
    executors: BTreeMap<ActionKind, Arc<dyn Executor>>,
}

impl fmt::Debug for ExecutorRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.executors.keys()).finish()
    }
}

impl ExecutorRegistry {
    /// A registry with no executor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every executor, from `[remediate]`, `[github]`, the secrets, the AWS
    /// clients and a snapshot of pipemedic's environment (for the shell
    /// allowlist).
    pub fn from_config(
        config: &Config,
        secrets: &Secrets,
        aws: &AwsClients,
        env: &Env,
    ) -> Result<Self, ExecError> {
        let client = LazyClient::from_clients(aws, AwsClients::codepipeline);
        Self::with_codepipeline(config, secrets, client, env)
    }

    /// Like [`ExecutorRegistry::from_config`], with the CodePipeline client
    /// built from `aws` on the first CodePipeline action: a server whose
    /// fixes never touch CodePipeline never loads the AWS configuration.
    pub fn from_settings(
        config: &Config,
        secrets: &Secrets,
        aws: &AwsSettings,
        env: &Env,
    ) -> Result<Self, ExecError> {
        let client = LazyClient::new(aws, AwsClients::codepipeline);
        Self::with_codepipeline(config, secrets, client, env)
    }

    fn with_codepipeline(
        config: &Config,
        secrets: &Secrets,
        client: LazyClient<aws_sdk_codepipeline::Client>,
        env: &Env,
    ) -> Result<Self, ExecError> {
        let mut registry = Self::new();
        for executor in codepipeline::CodePipelineExecutor::all(&client) {
            registry.register(Arc::new(executor));
        }
        registry.register(Arc::new(github::GithubRerunExecutor::new(
            github::GithubSettings::from_config(config, secrets),
        )?));
        registry.register(Arc::new(http::HttpExecutor::new(
            http::HttpSettings::from_config(&config.remediate),
        )?));
        registry.register(Arc::new(shell::ShellExecutor::new(
            shell::ShellSettings::from_config(&config.remediate, env),
        )));
        Ok(registry)
    }

    /// Adds an executor, replacing any other for its kind.
    pub fn register(&mut self, executor: Arc<dyn Executor>) {
        self.executors.insert(executor.kind(), executor);
    }

    /// The kinds that have an executor.
    pub fn kinds(&self) -> Vec<ActionKind> {
        self.executors.keys().copied().collect()
    }

    pub fn get(&self, kind: ActionKind) -> Result<&Arc<dyn Executor>, ExecError> {
        self.executors
            .get(&kind)
            .ok_or(ExecError::Unsupported(kind))
    }

    /// The dry run of `call` by its kind's executor.
    pub fn describe(&self, call: &ActionCall) -> Result<String, ExecError> {
        self.get(call.kind)?.describe(call)
    }

    /// `call` with anything left to look up filled in (read-only); see
    /// [`Executor::prepare`].
    pub async fn prepare(&self, call: &ActionCall) -> Result<ActionCall, ExecError> {
        self.get(call.kind)?.prepare(call).await
    }

    /// Runs `call` once with its kind's executor and logs the result
    /// (kind, pipeline, run, status; never parameters or secrets).
    #[tracing::instrument(
        name = "remediate.execute",
        skip_all,
        fields(kind = %call.kind, pipeline = %call.pipeline, run_id = %call.run_id)
    )]
    pub async fn execute(&self, call: &ActionCall) -> Result<ExecutionOutcome, ExecError> {
        let result = self.get(call.kind)?.execute(call).await;
        match &result {
            Ok(outcome) => tracing::info!(
                status = outcome.status.as_str(),
                external_id = outcome.external_id.as_deref().unwrap_or(""),
                "Action executed."
            ),
            Err(e) => tracing::warn!(
                error = %e,
                retryable = e.retryable(),
                "Action failed."
            ),
        }
        result
    }
}

/// Renders ordered key/value pairs as one JSON object (the order given,
/// whatever `serde_json`'s map ordering is).
pub(crate) fn json_object(pairs: &[(&str, Value)]) -> String {
    let fields: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}:{}", Value::String((*k).to_string()), v))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// Cuts `bytes` to `cap` and turns them into text, with a marker saying how
/// much was left out; `total` is the full length seen.
pub(crate) fn capped_text(bytes: &[u8], total: usize, cap: usize) -> (String, bool) {
    let kept = &bytes[..bytes.len().min(cap)];
    let mut text = String::from_utf8_lossy(kept).into_owned();
    let truncated = total > kept.len();
    if truncated {
        text.push_str(&format!(
            "\n[... truncated: {} more bytes]",
            total - kept.len()
        ));
    }
    (text, truncated)
}

/// The wait a `Retry-After` header asks for: delay-seconds or an HTTP date
/// (relative to `now`).
pub(crate) fn parse_retry_after(
    value: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - now;
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// Classifies an HTTP error status: 429 throttling, 5xx transient (and 408),
/// anything else permanent.
pub(crate) fn classify_status(status: u16) -> ErrorClass {
    match status {
        429 => ErrorClass::Throttling,
        408 | 500..=599 => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_round_trip_through_their_playbook_names() {
        for kind in ActionKind::ALL {
            assert_eq!(ActionKind::parse(kind.as_str()), Some(kind));
            assert_eq!(kind.to_string(), kind.as_str());
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.as_str());
            assert_eq!(serde_json::from_value::<ActionKind>(json).unwrap(), kind);
        }
        assert_eq!(ActionKind::parse("codepipeline.retry"), None);
        assert_eq!(ActionKind::parse("Shell"), None);
        assert!(serde_json::from_value::<ActionKind>(json!("bash")).is_err());
    }

    #[test]
    fn errors_are_classified() {
        let api = |class, retry_after| ExecError::Api {
            operation: "op".into(),
            class,
            status: None,
            code: None,
            message: "m".into(),
            retry_after,
        };
        assert!(api(ErrorClass::Throttling, Some(Duration::from_secs(3))).retryable());
        assert_eq!(
            api(ErrorClass::Throttling, Some(Duration::from_secs(3))).retry_after(),
            Some(Duration::from_secs(3))
        );
        assert!(api(ErrorClass::Transient, None).retryable());
        assert!(!api(ErrorClass::Permanent, None).retryable());
        assert!(ExecError::Timeout {
            operation: "x".into(),
            after: Duration::from_secs(1)
        }
        .retryable());
        assert!(!ExecError::bad("stage", "missing").retryable());
        assert!(!ExecError::Refused("host".into()).retryable());
        assert!(!ExecError::NotConfigured("token".into()).retryable());
        assert!(!ExecError::Unsupported(ActionKind::Shell).retryable());
        assert_eq!(
            ExecError::bad("stage", "missing").to_string(),
            "invalid parameter stage: missing"
        );
    }

    #[test]
    fn params_errors_name_the_parameter() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct P {
            stage: String,
        }
        let call = ActionCall::new(ActionKind::Shell, "p", "r", json!({"stage": 3}));
        match call.params_as::<P>() {
            Err(ExecError::BadParams { field, .. }) => assert_eq!(field, "stage"),
            other => panic!("{other:?}"),
        }
        let call = ActionCall::new(ActionKind::Shell, "p", "r", json!({}));
        match call.params_as::<P>() {
            Err(ExecError::BadParams { field, message }) => {
                assert_eq!(field, "params");
                assert!(message.contains("missing field `stage`"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_objects_keep_the_given_order() {
        assert_eq!(
            json_object(&[("b", json!("x\"y")), ("a", json!(1)), ("c", json!(true))]),
            r#"{"b":"x\"y","a":1,"c":true}"#
        );
    }

    #[test]
    fn capped_text_marks_what_was_cut() {
        assert_eq!(capped_text(b"hello", 5, 10), ("hello".into(), false));
        assert_eq!(
            capped_text(b"hello world", 20, 5),
            ("hello\n[... truncated: 15 more bytes]".into(), true)
        );
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now: chrono::DateTime<chrono::Utc> = "2026-11-25T10:00:00Z".parse().unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn http_statuses_are_classified() {
        assert_eq!(classify_status(429), ErrorClass::Throttling);
        assert_eq!(classify_status(503), ErrorClass::Transient);
        assert_eq!(classify_status(404), ErrorClass::Permanent);
        assert_eq!(classify_status(422), ErrorClass::Permanent);
    }
}
