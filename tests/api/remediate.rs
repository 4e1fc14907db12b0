//! Remediation executors against local stand-ins: the real
//! `aws-sdk-codepipeline` against the CodePipeline fake, reqwest against
//! the GitHub fake and a local hook server, and real processes for `shell`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use pipemedic::aws::ErrorClass;
use pipemedic::config::{self, Config, Env, RemediateConfig, Secret, Secrets};
use pipemedic::remediate::codepipeline::last_succeeded_execution;
use pipemedic::remediate::shell::{ShellExecutor, ShellSettings};
use pipemedic::remediate::{
    ActionCall, ActionKind, ExecError, ExecutionOutcome, ExecutionStatus, Executor,
    ExecutorRegistry, RESPONSE_CAP_BYTES,
};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::fakes::codepipeline::{ExecutionSpec, FakeCodePipeline};
use crate::fakes::github::FakeGitHub;
use crate::helpers::{t, test_aws_settings};

const PIPELINE: &str = "checkout-service";
const GH_PIPELINE: &str = "octo-org/octo-repo/CI tests";
const GH_RUN: &str = "289782451";
const GITHUB_TOKEN: &str = "ghp_test_token_never_shown";

/// The registry as `serve` builds it, pointed at the fakes.
struct Setup {
    registry: ExecutorRegistry,
    codepipeline: FakeCodePipeline,
    github: FakeGitHub,
}

fn host_env() -> Env {
    std::env::var("PATH")
        .map(|p| [("PATH".to_string(), p)].into_iter().collect())
        .unwrap_or_default()
}

async fn setup_with(token: Option<&str>, adjust: impl FnOnce(&mut Config)) -> Setup {
    let codepipeline = FakeCodePipeline::start().await;
    let github = FakeGitHub::start().await;
    let mut config = config::from_sources(None, None, &Env::new()).expect("default config");
    config.aws.endpoints.codepipeline = codepipeline.url();
    config.github.api_url = github.url();
    config.remediate.http_allowlist = vec!["127.0.0.1".into()];
    adjust(&mut config);
    let secrets = Secrets {
        github_token: token.map(Secret::new),
        ..Secrets::default()
    };
    let clients = test_aws_settings(&config.aws).load().await;
    let registry = ExecutorRegistry::from_config(&config, &secrets, &clients, &host_env())
        .expect("registry builds");
    Setup {
        registry,
        codepipeline,
        github,
    }
}

async fn setup() -> Setup {
    setup_with(Some(GITHUB_TOKEN), |_| {}).await
}

fn call(kind: ActionKind, pipeline: &str, run_id: &str, params: Value) -> ActionCall {
    ActionCall::new(kind, pipeline, run_id, params)
}

fn failed_in_test(id: &str, start: &str) -> ExecutionSpec {
    ExecutionSpec::new(id, "Failed", t(start))
        .action("Build", "Compile", "Succeeded", 0, 120)
        .action("Deploy", "Deploy", "Succeeded", 125, 200)
        .action("Test", "UnitTests", "Failed", 205, 400)
}

fn succeeded(id: &str, start: &str) -> ExecutionSpec {
    ExecutionSpec::new(id, "Succeeded", t(start))
        .action("Build", "Compile", "Succeeded", 0, 120)
        .action("Deploy", "Deploy", "Succeeded", 125, 200)
}

/// Runs `call` and checks that the outcome shows the same call as the dry run.
async fn run(setup: &Setup, call: &ActionCall) -> Result<ExecutionOutcome, ExecError> {
    let dry_run = setup.registry.describe(call);
    let result = setup.registry.execute(call).await;
    if let (Ok(shown), Ok(outcome)) = (&dry_run, &result) {
        if !shown.contains("<newest Succeeded execution") {
            assert_eq!(&outcome.call, shown, "the outcome shows the dry-run call");
        }
    }
    result
}

// --- CodePipeline ---------------------------------------------------------

#[tokio::test]
async fn retry_stage_sends_exactly_one_retry_stage_execution() {
    let s = setup().await;
    s.codepipeline
        .add_execution(PIPELINE, failed_in_test("e-1", "2026-11-25T10:00:00Z"));
    let c = call(
        ActionKind::CodepipelineRetryStage,
        PIPELINE,
        "e-1",
        json!({"stage": "Test", "mode": "FAILED_ACTIONS"}),
    );
    let outcome = run(&s, &c).await.unwrap();

    let sent = s.codepipeline.calls_of("RetryStageExecution");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0],
        json!({"pipelineName": PIPELINE, "stageName": "Test", "pipelineExecutionId": "e-1", "retryMode": "FAILED_ACTIONS"})
    );
    assert_eq!(s.codepipeline.calls().len(), 1, "nothing else was called");
    assert_eq!(outcome.status, ExecutionStatus::Succeeded);
    assert_eq!(outcome.external_id.as_deref(), Some("e-1"));
    assert_eq!(outcome.response, json!({"pipelineExecutionId": "e-1"}));
    assert_eq!(
        outcome.summary,
        "Retried stage Test of checkout-service (execution e-1, FAILED_ACTIONS)."
    );
    assert_eq!(
        outcome.call,
        r#"codepipeline:RetryStageExecution {"pipelineName":"checkout-service","stageName":"Test","pipelineExecutionId":"e-1","retryMode":"FAILED_ACTIONS"}"#
    );
}

#[tokio::test]
async fn stage_not_retryable_is_a_permanent_error_sent_once() {
    let s = setup().await;
    s.codepipeline
        .add_execution(PIPELINE, failed_in_test("e-1", "2026-11-25T10:00:00Z"));
    s.codepipeline
        .fail_next("RetryStageExecution", 400, "StageNotRetryableException");
    let c = call(
        ActionKind::CodepipelineRetryStage,
        PIPELINE,
        "e-1",
        json!({"stage": "Test"}),
    );
    let err = run(&s, &c).await.unwrap_err();
    assert!(!err.retryable(), "{err}");
    match &err {
        ExecError::Api {
            operation,
            class,
            status,
            code,
            ..
        } => {
            assert_eq!(operation, "RetryStageExecution");
            assert_eq!(*class, ErrorClass::Permanent);
            assert_eq!(*status, Some(400));
            assert_eq!(code.as_deref(), Some("StageNotRetryableException"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("StageNotRetryableException"),
        "{err}"
    );
    assert_eq!(s.codepipeline.calls_of("RetryStageExecution").len(), 1);
}

#[tokio::test]
async fn throttling_and_server_errors_are_retryable() {
    let s = setup().await;
    s.codepipeline
        .add_execution(PIPELINE, failed_in_test("e-1", "2026-11-25T10:00:00Z"));
    let c = call(
        ActionKind::CodepipelineRetryStage,
        PIPELINE,
        "e-1",
        json!({"stage": "Test"}),
    );
    // A lasting throttle outlasts the SDK's own three attempts.
    s.codepipeline
        .fail_next_times("RetryStageExecution", 3, 400, "ThrottlingException");
    let err = run(&s, &c).await.unwrap_err();
    assert!(err.retryable(), "{err}");
    assert_eq!(err.class(), ErrorClass::Throttling);
    assert_eq!(s.codepipeline.calls_of("RetryStageExecution").len(), 3);

    s.codepipeline.clear_calls();
    s.codepipeline
        .fail_next_times("RetryStageExecution", 3, 500, "InternalServerException");
    let err = run(&s, &c).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient);
    assert!(err.retryable());

    // One throttled attempt is absorbed by the SDK's standard retries.
    s.codepipeline.clear_calls();
    s.codepipeline
        .fail_next("RetryStageExecution", 400, "ThrottlingException");
    run(&s, &c).await.unwrap();
    assert_eq!(s.codepipeline.calls_of("RetryStageExecution").len(), 2);
}

#[tokio::test]
async fn unknown_pipeline_is_permanent() {
    let s = setup().await;
    let c = call(
        ActionKind::CodepipelineStartExecution,
        "nope",
        "e-1",
        json!({}),
    );
    let err = run(&s, &c).await.unwrap_err();
    assert!(!err.retryable());
    assert!(
        err.to_string().contains("PipelineNotFoundException"),
        "{err}"
    );
}

#[tokio::test]
async fn rollback_to_a_given_or_the_newest_succeeded_execution() {
    let s = setup().await;
    s.codepipeline
        .add_execution(PIPELINE, succeeded("e-old", "2026-11-24T08:00:00Z"));
    s.codepipeline
        .add_execution(PIPELINE, succeeded("e-good", "2026-11-25T08:00:00Z"));
    s.codepipeline
        .add_execution(PIPELINE, failed_in_test("e-1", "2026-11-25T10:00:00Z"));

    // Given target: exactly the one call.
    let c = call(
        ActionKind::CodepipelineRollbackStage,
        PIPELINE,
        "e-1",
        json!({"stage": "Deploy", "target_execution_id": "e-old"}),
    );
    let outcome = run(&s, &c).await.unwrap();
    assert_eq!(
        s.codepipeline.calls_of("RollbackStage"),
        [
            json!({"pipelineName": PIPELINE, "stageName": "Deploy", "targetPipelineExecutionId": "e-old"})
        ]
    );
    assert!(s.codepipeline.calls_of("ListPipelineExecutions").is_empty());
    let new_id = outcome.external_id.clone().unwrap();
    assert!(new_id.starts_with("rollback-"), "{new_id}");
    assert!(
        outcome.summary.contains("back to execution e-old"),
        "{}",
        outcome.summary
    );

    // No target: the newest Succeeded execution, looked up first.
    s.codepipeline.clear_calls();
    let c = call(
        ActionKind::CodepipelineRollbackStage,
        PIPELINE,
        "e-1",
        json!({"stage": "Deploy"}),
    );
    assert!(s
        .registry
        .describe(&c)
        .unwrap()
        .contains("<newest Succeeded execution"));
    let outcome = run(&s, &c).await.unwrap();
    let listed = s.codepipeline.calls_of("ListPipelineExecutions");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0]["filter"],
        json!({"succeededInStage": {"stageName": "Deploy"}})
    );
    assert_eq!(
        s.codepipeline.calls_of("RollbackStage")[0]["targetPipelineExecutionId"],
        "e-good"
    );
    assert!(outcome
        .call
        .contains(r#""targetPipelineExecutionId":"e-good""#));

    // Prepared for approval: the dry run names the target that will be used.
    s.codepipeline.clear_calls();
    let prepared = s.registry.prepare(&c).await.unwrap();
    assert_eq!(prepared.params["target_execution_id"], "e-good");
    assert_eq!(
        s.registry.describe(&prepared).unwrap(),
        r#"codepipeline:RollbackStage {"pipelineName":"checkout-service","stageName":"Deploy","targetPipelineExecutionId":"e-good"}"#
    );
    assert!(
        s.codepipeline.calls_of("RollbackStage").is_empty(),
        "prepare only reads"
    );
    assert_eq!(s.registry.prepare(&prepared).await.unwrap(), prepared);

    // The lookup on its own.
    let clients = test_aws_settings(&{
        let mut aws = config::AwsConfig::default();
        aws.endpoints.codepipeline = s.codepipeline.url();
        aws
    })
    .load()
    .await;
    let client = clients.codepipeline();
    assert_eq!(
        last_succeeded_execution(&client, PIPELINE, "Deploy", "e-1")
            .await
            .unwrap()
            .as_deref(),
        Some("e-good")
    );
    assert_eq!(
        last_succeeded_execution(&client, PIPELINE, "Deploy", "e-good")
            .await
            .unwrap()
            .as_deref(),
        Some("e-old")
    );
}

#[tokio::test]
async fn rollback_without_any_succeeded_execution_sends_nothing() {
    let s = setup().await;
    s.codepipeline
        .add_execution(PIPELINE, failed_in_test("e-1", "2026-11-25T10:00:00Z"));
    let c = call(
        ActionKind::CodepipelineRollbackStage,
        PIPELINE,
        "e-1",
        json!({"stage": "Deploy"}),
    );
    match run(&s, &c).await {
        Err(ExecError::BadParams { field, message }) => {
            assert_eq!(field, "target_execution_id");
            assert!(message.contains("no Succeeded execution"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(s.codepipeline.calls_of("RollbackStage").is_empty());
}

#[tokio::test]
async fn start_and_stop_send_the_documented_bodies() {
    let s = setup().await;
    s.codepipeline
        .add_execution(PIPELINE, failed_in_test("e-1", "2026-11-25T10:00:00Z"));

    let c = call(
        ActionKind::CodepipelineStartExecution,
        PIPELINE,
        "e-1",
        json!({"client_request_token": "incident-42-step-1"}),
    );
    let outcome = run(&s, &c).await.unwrap();
    assert_eq!(
        s.codepipeline.calls_of("StartPipelineExecution"),
        [json!({"name": PIPELINE, "clientRequestToken": "incident-42-step-1"})]
    );
    let started = outcome.external_id.clone().unwrap();
    assert!(started.starts_with("started-"), "{started}");
    assert_eq!(
        outcome.summary,
        format!("Started checkout-service; new execution {started}.")
    );

    let c = call(
        ActionKind::CodepipelineStopExecution,
        PIPELINE,
        "e-1",
        json!({"abandon": true, "reason": "Deploy is stuck; stopped after approval"}),
    );
    let outcome = run(&s, &c).await.unwrap();
    assert_eq!(
        s.codepipeline.calls_of("StopPipelineExecution"),
        [json!({
            "pipelineName": PIPELINE,
            "pipelineExecutionId": "e-1",
            "abandon": true,
            "reason": "Deploy is stuck; stopped after approval"
        })]
    );
    assert_eq!(outcome.external_id.as_deref(), Some("e-1"));
    assert!(
        outcome.summary.contains("abandoning"),
        "{}",
        outcome.summary
    );
}

#[tokio::test]
async fn bad_parameters_send_nothing() {
    let s = setup().await;
    s.codepipeline
        .add_execution(PIPELINE, failed_in_test("e-1", "2026-11-25T10:00:00Z"));
    let c = call(
        ActionKind::CodepipelineRetryStage,
        PIPELINE,
        "e-1",
        json!({"stage": "Test", "mode": "EVERYTHING"}),
    );
    assert!(matches!(
        s.registry.execute(&c).await,
        Err(ExecError::BadParams { field, .. }) if field == "mode"
    ));
    assert!(s.codepipeline.calls().is_empty());
}

// --- GitHub ---------------------------------------------------------------

fn rerun() -> ActionCall {
    call(
        ActionKind::GithubRerunFailedJobs,
        GH_PIPELINE,
        GH_RUN,
        json!({}),
    )
}

#[tokio::test]
async fn github_rerun_failed_jobs_posts_once_with_the_token() {
    let s = setup().await;
    let outcome = run(&s, &rerun()).await.unwrap();
    let calls = s.github.calls();
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c.method, "POST");
    assert_eq!(
        c.path,
        "/repos/octo-org/octo-repo/actions/runs/289782451/rerun-failed-jobs"
    );
    assert_eq!(c.headers["authorization"], format!("Bearer {GITHUB_TOKEN}"));
    assert_eq!(c.headers["accept"], "application/vnd.github+json");
    assert_eq!(c.headers["x-github-api-version"], "2022-11-28");
    assert_eq!(c.headers["user-agent"], "pipemedic");
    assert_eq!(c.body, "");
    assert_eq!(outcome.status, ExecutionStatus::Succeeded);
    assert_eq!(outcome.external_id.as_deref(), Some(GH_RUN));
    assert_eq!(outcome.response, json!({"status": 201}));
    assert_eq!(
        outcome.summary,
        "Re-ran the failed jobs of octo-org/octo-repo run 289782451."
    );
    let shown = serde_json::to_string(&outcome).unwrap();
    assert!(!shown.contains(GITHUB_TOKEN), "{shown}");
    assert!(outcome.call.contains("Authorization: ***"));

    let debug = call(
        ActionKind::GithubRerunFailedJobs,
        GH_PIPELINE,
        GH_RUN,
        json!({"debug_logging": true}),
    );
    run(&s, &debug).await.unwrap();
    let c = &s.github.calls()[1];
    assert_eq!(c.body, r#"{"enable_debug_logging":true}"#);
    assert_eq!(c.headers["content-type"], "application/json");
}

#[tokio::test]
async fn github_4xx_answers_are_permanent() {
    let s = setup().await;
    for (status, message) in [
        (403, "Resource not accessible by integration"),
        (404, "Not Found"),
        (422, "This workflow run is not completed"),
    ] {
        s.github.fail_next(status, message);
        let err = run(&s, &rerun()).await.unwrap_err();
        assert!(!err.retryable(), "{status}: {err}");
        assert!(err.to_string().contains(message), "{err}");
        assert!(
            matches!(&err, ExecError::Api { status: Some(s), .. } if *s == status),
            "{err:?}"
        );
        assert!(!err.to_string().contains(GITHUB_TOKEN));
    }
    assert_eq!(
        s.github.calls().len(),
        3,
        "each call sent once, never retried"
    );
}

#[tokio::test]
async fn github_rate_limits_and_5xx_are_retryable_with_retry_after() {
    let s = setup().await;
    s.github.reply_next(
        429,
        &[("retry-after", "30")],
        json!({"message": "You have exceeded a secondary rate limit."}),
    );
    let err = run(&s, &rerun()).await.unwrap_err();
    assert!(err.retryable());
    assert_eq!(err.class(), ErrorClass::Throttling);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));

    s.github.reply_next(
        403,
        &[("retry-after", "60")],
        json!({"message": "You have exceeded a secondary rate limit."}),
    );
    let err = run(&s, &rerun()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Throttling);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));

    s.github.fail_next(502, "Server Error");
    let err = run(&s, &rerun()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(s.github.calls().len(), 3);
}

#[tokio::test]
async fn github_without_a_token_sends_nothing() {
    let s = setup_with(None, |_| {}).await;
    assert!(matches!(
        s.registry.describe(&rerun()),
        Err(ExecError::NotConfigured(m)) if m.contains("GITHUB_TOKEN")
    ));
    let err = s.registry.execute(&rerun()).await.unwrap_err();
    assert!(!err.retryable());
    assert!(s.github.calls().is_empty());
}

// --- http -------------------------------------------------------------------

#[derive(Debug, Clone)]
struct HookCall {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
}

/// A local webhook receiver with a few canned behaviours by path.
struct HookServer {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<HookCall>>>,
    stop: CancellationToken,
}

impl Drop for HookServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl HookServer {
    async fn start() -> Self {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback(hook).with_state(calls.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await;
        });
        Self { addr, calls, stop }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.addr.port())
    }

    fn calls(&self) -> Vec<HookCall> {
        self.calls.lock().unwrap().clone()
    }
}

async fn hook(
    State(calls): State<Arc<Mutex<Vec<HookCall>>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    calls.lock().unwrap().push(HookCall {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    match uri.path() {
        "/hook" => (
            StatusCode::OK,
            [("content-type", "application/json")],
            r#"{"accepted":true,"ticket":"OPS-1"}"#,
        )
            .into_response(),
        "/big" => "x".repeat(100_000).into_response(),
        "/busy" => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "7")],
            "maintenance",
        )
            .into_response(),
        "/missing" => (StatusCode::NOT_FOUND, "no such hook").into_response(),
        "/moved" => (
            StatusCode::FOUND,
            [("location", "http://elsewhere.example/hook")],
        )
            .into_response(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            "late".into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn http_call(params: Value) -> ActionCall {
    call(ActionKind::Http, PIPELINE, "e-1", params)
}

#[tokio::test]
async fn http_action_sends_the_rendered_request_to_an_allowed_host() {
    let s = setup().await;
    let hooks = HookServer::start().await;
    let c = http_call(json!({
        "method": "POST",
        "url": hooks.url("127.0.0.1", "/hook"),
        "headers": {"X-Hook-Token": "hook-secret", "X-Incident": "42"},
        "body": {"service": PIPELINE, "action": "rollback"},
    }));
    let outcome = run(&s, &c).await.unwrap();
    let calls = hooks.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "POST");
    assert_eq!(calls[0].path, "/hook");
    assert_eq!(calls[0].headers["x-hook-token"], "hook-secret");
    assert_eq!(calls[0].headers["x-incident"], "42");
    assert_eq!(calls[0].headers["content-type"], "application/json");
    assert_eq!(
        serde_json::from_str::<Value>(&calls[0].body).unwrap(),
        json!({"service": PIPELINE, "action": "rollback"})
    );
    assert_eq!(outcome.status, ExecutionStatus::Succeeded);
    assert_eq!(
        outcome.response,
        json!({"status": 200, "body": {"accepted": true, "ticket": "OPS-1"}, "truncated": false})
    );
    assert!(
        outcome.call.contains("x-hook-token: ***"),
        "{}",
        outcome.call
    );
    assert!(!serde_json::to_string(&outcome)
        .unwrap()
        .contains("hook-secret"));
}

#[tokio::test]
async fn http_action_to_a_host_off_the_allowlist_sends_nothing() {
    let s = setup().await;
    let hooks = HookServer::start().await;
    for host in ["localhost", "127.0.0.2"] {
        let c = http_call(json!({"method": "POST", "url": hooks.url(host, "/hook")}));
        assert!(
            matches!(s.registry.describe(&c), Err(ExecError::Refused(_))),
            "{host}"
        );
        let err = s.registry.execute(&c).await.unwrap_err();
        assert!(matches!(err, ExecError::Refused(_)), "{err:?}");
        assert!(!err.retryable());
    }
    assert!(hooks.calls().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn http_actions_reach_only_permitted_addresses() {
    let hooks = HookServer::start().await;
    // Without an address entry: loopback and the metadata address are
    // refused, by address as well as by name.
    let named_only = setup_with(Some(GITHUB_TOKEN), |c| {
        c.remediate.http_allowlist = vec!["localhost".into()];
    })
    .await;
    let by_name = http_call(json!({"method": "POST", "url": hooks.url("localhost", "/hook")}));
    named_only
        .registry
        .describe(&by_name)
        .expect("the name itself is allowlisted");
    let err = named_only.registry.execute(&by_name).await.unwrap_err();
    match &err {
        ExecError::Refused(message) => assert!(message.contains("loopback"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!err.retryable());
    for url in [
        hooks.url("127.0.0.1", "/hook"),
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/".to_string(),
        "http://[::ffff:169.254.169.254]/latest/meta-data/".to_string(),
    ] {
        let c = http_call(json!({"method": "GET", "url": url}));
        let err = named_only.registry.execute(&c).await.unwrap_err();
        assert!(matches!(err, ExecError::Refused(_)), "{url}: {err:?}");
    }
    assert!(hooks.calls().is_empty(), "nothing was sent");

    // The metadata address is refused even when a name entry and a wide
    // public entry are present; only an entry naming it would allow it.
    let wide = setup_with(Some(GITHUB_TOKEN), |c| {
        c.remediate.http_allowlist = vec!["localhost".into(), "8.8.8.8".into()];
    })
    .await;
    let metadata = http_call(json!({"method": "GET", "url": "http://169.254.169.254/"}));
    assert!(matches!(
        wide.registry.describe(&metadata),
        Err(ExecError::Refused(_))
    ));

    // Naming the address allows it, through the host name too: the
    // resolver keeps 127.0.0.1 (and drops ::1, which is not named).
    let allowed = setup_with(Some(GITHUB_TOKEN), |c| {
        c.remediate.http_allowlist = vec!["localhost".into(), "127.0.0.1".into()];
    })
    .await;
    let outcome = run(&allowed, &by_name).await.unwrap();
    assert_eq!(outcome.status, ExecutionStatus::Succeeded);
    assert_eq!(hooks.calls().len(), 1);
}

#[tokio::test]
async fn http_responses_are_capped_and_errors_classified() {
    let s = setup().await;
    let hooks = HookServer::start().await;

    let outcome = run(
        &s,
        &http_call(json!({"method": "GET", "url": hooks.url("127.0.0.1", "/big")})),
    )
    .await
    .unwrap();
    assert_eq!(outcome.response["truncated"], true);
    let body = outcome.response["body"].as_str().unwrap();
    assert!(body.starts_with(&"x".repeat(RESPONSE_CAP_BYTES)));
    assert!(body.len() < RESPONSE_CAP_BYTES + 100, "{}", body.len());
    assert!(body.ends_with("truncated: response longer than 65536 bytes]"));

    let err = run(
        &s,
        &http_call(json!({"method": "POST", "url": hooks.url("127.0.0.1", "/busy")})),
    )
    .await
    .unwrap_err();
    assert!(err.retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(err.to_string().contains("maintenance"), "{err}");

    let err = run(
        &s,
        &http_call(json!({"method": "POST", "url": hooks.url("127.0.0.1", "/missing")})),
    )
    .await
    .unwrap_err();
    assert!(!err.retryable());
    assert!(matches!(
        err,
        ExecError::Api {
            status: Some(404),
            ..
        }
    ));

    // A redirect is not followed: it could leave the allowlist.
    let err = run(
        &s,
        &http_call(json!({"method": "POST", "url": hooks.url("127.0.0.1", "/moved")})),
    )
    .await
    .unwrap_err();
    assert!(!err.retryable());
    assert!(err.to_string().contains("not followed"), "{err}");
    assert_eq!(hooks.calls().len(), 4);
}

#[tokio::test]
async fn http_timeout_is_reported() {
    let s = setup().await;
    let hooks = HookServer::start().await;
    let started = Instant::now();
    let err = run(
        &s,
        &http_call(
            json!({"method": "POST", "url": hooks.url("127.0.0.1", "/slow"), "timeout_s": 1}),
        ),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ExecError::Timeout { .. }), "{err:?}");
    assert!(err.retryable());
    assert!(started.elapsed() < Duration::from_millis(2500));
}

// --- shell ------------------------------------------------------------------

fn shell(settings: impl FnOnce(&mut ShellSettings)) -> ShellExecutor {
    let mut s = ShellSettings::from_config(&RemediateConfig::default(), &host_env());
    settings(&mut s);
    ShellExecutor::new(s)
}

fn argv(args: &[&str]) -> ActionCall {
    call(ActionKind::Shell, PIPELINE, "e-1", json!({ "argv": args }))
}

#[tokio::test]
async fn shell_runs_the_argv_without_a_shell() {
    let s = setup().await;
    let c = argv(&["echo", "hello", "$HOME", "; rm -rf /"]);
    let outcome = run(&s, &c).await.unwrap();
    assert_eq!(outcome.status, ExecutionStatus::Succeeded);
    assert_eq!(outcome.response["exit_code"], 0);
    assert_eq!(outcome.response["stdout"], "hello $HOME ; rm -rf /\n");
    assert_eq!(outcome.response["stderr"], "");
    assert_eq!(outcome.summary, "echo exited with code 0.");
    assert_eq!(
        outcome.call,
        r#"exec ["echo","hello","$HOME","; rm -rf /"] (env: PATH; timeout: 300s)"#
    );
}

#[tokio::test]
async fn shell_non_zero_exit_is_a_failed_outcome() {
    let e = shell(|_| {});
    let outcome = e
        .execute(&argv(&[
            "sh",
            "-c",
            "echo partial; echo release not found >&2; exit 3",
        ]))
        .await
        .unwrap();
    assert_eq!(outcome.status, ExecutionStatus::Failed);
    assert_eq!(outcome.response["exit_code"], 3);
    assert_eq!(outcome.response["stdout"], "partial\n");
    assert_eq!(outcome.summary, "sh exited with code 3: release not found");
}

#[tokio::test]
async fn shell_timeout_kills_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("finished");
    let e = shell(|s| s.timeout = Duration::from_millis(300));
    let started = Instant::now();
    let script = format!("sleep 1; touch {}", marker.display());
    let err = e.execute(&argv(&["sh", "-c", &script])).await.unwrap_err();
    assert!(matches!(err, ExecError::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !marker.exists(),
        "the process was killed before it finished"
    );
}

#[tokio::test]
async fn shell_timeout_kills_what_the_process_started() {
    // The program starts a child in the background and waits for it:
    // killing the program alone would leave the child to finish its work.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("finished");
    let e = shell(|s| s.timeout = Duration::from_millis(300));
    let script = format!("(sleep 1; touch {}) & wait", marker.display());
    let err = e.execute(&argv(&["sh", "-c", &script])).await.unwrap_err();
    assert!(matches!(err, ExecError::Timeout { .. }), "{err:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!marker.exists(), "the background child was killed too");
}

#[tokio::test]
async fn shell_leaves_nothing_running_after_it_exits() {
    // The program exits at once but leaves a child behind that closed its
    // output: the child must not go on to do its work.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("finished");
    let e = shell(|_| {});
    let script = format!(
        "(sleep 1; touch {}) >/dev/null 2>&1 </dev/null & exit 0",
        marker.display()
    );
    let outcome = e.execute(&argv(&["sh", "-c", &script])).await.unwrap();
    assert_eq!(outcome.status, ExecutionStatus::Succeeded);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!marker.exists(), "the leftover child was killed");
}

#[tokio::test]
async fn shell_output_is_capped_with_a_marker() {
    let e = shell(|s| s.output_cap = 1024);
    let outcome = e.execute(&argv(&["seq", "1", "100000"])).await.unwrap();
    assert_eq!(outcome.status, ExecutionStatus::Succeeded);
    assert_eq!(outcome.response["stdout_truncated"], true);
    let stdout = outcome.response["stdout"].as_str().unwrap();
    assert!(stdout.starts_with("1\n2\n3\n"));
    // seq 1 100000 prints 588895 bytes.
    assert!(
        stdout.ends_with("[... truncated: 587871 more bytes]"),
        "{}",
        &stdout[stdout.len() - 60..]
    );
}

#[tokio::test]
async fn shell_sees_only_allowlisted_variables() {
    let config = RemediateConfig {
        shell_env_allowlist: vec!["PATH".into(), "DEPLOY_REGION".into()],
        ..RemediateConfig::default()
    };
    let mut env = host_env();
    env.insert("DEPLOY_REGION".into(), "eu-west-1".into());
    env.insert("AWS_SECRET_ACCESS_KEY".into(), "must-not-leak".into());
    env.insert("HOME".into(), "/home/pipemedic".into());
    let e = ShellExecutor::new(ShellSettings::from_config(&config, &env));
    let outcome = e.execute(&argv(&["env"])).await.unwrap();
    let seen = outcome.response["stdout"].as_str().unwrap();
    assert!(seen.contains("DEPLOY_REGION=eu-west-1"), "{seen}");
    assert!(seen.contains("PATH="), "{seen}");
    assert!(!seen.contains("must-not-leak"), "{seen}");
    assert!(!seen.contains("HOME="), "{seen}");
    // Not even the test process's own environment leaks through.
    assert_eq!(seen.lines().count(), 2, "{seen}");
}

#[tokio::test]
async fn shell_refuses_an_empty_argv_and_reports_a_missing_program() {
    let e = shell(|_| {});
    assert!(matches!(
        e.execute(&argv(&[])).await,
        Err(ExecError::BadParams { field, .. }) if field == "argv"
    ));
    let err = e
        .execute(&argv(&["pipemedic-no-such-program"]))
        .await
        .unwrap_err();
    assert!(matches!(err, ExecError::Spawn { .. }), "{err:?}");
    assert!(!err.retryable());
}

#[tokio::test]
async fn registry_has_every_kind() {
    let s = setup().await;
    assert_eq!(s.registry.kinds(), ActionKind::ALL.to_vec());
    let empty = ExecutorRegistry::new();
    assert!(matches!(
        empty.describe(&argv(&["true"])),
        Err(ExecError::Unsupported(ActionKind::Shell))
    ));
}
