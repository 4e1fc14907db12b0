//! Planning end to end: playbook checks from the command line, plans for
//! anomalies opened by real ingested runs, drafted through the real Bedrock
//! Runtime client against a local Converse stand-in or by the offline
//! planner, validated, stored and audited.

use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the real `pipemedic` binary with no configuration file.
fn pipemedic(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pipemedic"))
        .args(args)
        .current_dir(root())
        .env_remove("PIPEMEDIC_CONFIG")
        .output()
        .expect("pipemedic runs")
}

#[test]
fn playbooks_check_passes_on_the_bundled_set() {
    let out = pipemedic(&["playbooks", "check", "playbooks"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("6 playbooks OK"), "{stdout}");
}

#[test]
fn playbooks_check_names_file_line_and_field_of_every_broken_fixture() {
    let dir = "tests/fixtures/playbooks/broken";
    let out = pipemedic(&["playbooks", "check", dir]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("error(s)"), "{stderr}");
    let mut files: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    for file in files {
        if file == "duplicate-id-a.md" {
            // The first of two files with one id is valid; the second is named.
            continue;
        }
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{dir}/{file}:")))
            .unwrap_or_else(|| panic!("{file} not reported:\n{stdout}"));
        // file:line: field: message
        let rest = &line[dir.len() + file.len() + 2..];
        let (line_no, rest) = rest.split_once(": ").expect("line number");
        assert!(line_no.parse::<usize>().unwrap() >= 1, "{line}");
        let (field, message) = rest.split_once(": ").expect("field");
        assert!(!field.is_empty() && !message.is_empty(), "{line}");
    }
}

#[test]
fn playbooks_check_defaults_to_the_configured_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipemedic.toml");
    std::fs::write(
        &config,
        "[planner]\nplaybooks_dir = \"tests/fixtures/playbooks/valid\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    // Its http action calls a host the configuration has not allowed yet.
    let out = pipemedic(&["--config", config, "playbooks", "check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("cache-reset.md:19: actions[1].with.url: host `hooks.example.com`"),
        "{stdout}"
    );
    std::fs::write(
        config,
        "[planner]\nplaybooks_dir = \"tests/fixtures/playbooks/valid\"\n[remediate]\nhttp_allowlist = [\"hooks.example.com\"]\n",
    )
    .unwrap();
    let out = pipemedic(&["--config", config, "playbooks", "check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("1 playbooks OK"), "{stdout}");
}

// ------------------------------------------------------------ plans

use std::sync::Arc;
use std::time::Duration;

use pipemedic::bedrock::BedrockError;
use pipemedic::clock::Clock;
use pipemedic::config;
use pipemedic::metrics::Metrics;
use pipemedic::plan::{PlanOutcome, PlanService, PlanServiceError};
use pipemedic::playbooks::{Catalog, CiSystem};
use pipemedic::store::PlanStatus;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fakes::bedrock::FakeBedrock;
use crate::helpers::{spawn_app, test_aws_settings, Db, TestApp};

/// The `i`-th run of a steady CodePipeline-like pipeline.
fn run_json(i: u32, failed: u64, status: &str, log: Option<&str>) -> Value {
    let start = chrono::DateTime::parse_from_rfc3339("2026-09-01T00:00:00Z").unwrap()
        + chrono::Duration::hours(i64::from(i) * 2);
    let jitter = ((i * 7919) % 31) as f64 - 15.0;
    let end = start + chrono::Duration::milliseconds(((420.0 + jitter) * 1000.0) as i64);
    let mut run = json!({"pipeline": "checkout-service", "run_id": format!("exec-{i:04}"),
        "status": status, "stage": "Test",
        "started_at": start.to_rfc3339(), "finished_at": end.to_rfc3339(),
        "commit": format!("c{i:04}"),
        "tests": {"total": 800, "failed": failed},
        "resources": {"cpu_peak_pct": 60.0 + jitter / 3.0, "mem_peak_mb": 2000.0 + jitter * 4.0}});
    if let Some(log) = log {
        run["log_excerpt"] = json!(log);
    }
    run
}

/// 100 normal runs, then a failed test stage with a flaky-test spike:
/// returns the anomaly id detection opened.
pub(crate) async fn flaky_anomaly(app: &TestApp, log: &str) -> i64 {
    let runs: Vec<Value> = (0..100)
        .map(|i| run_json(i, u64::from(i % 3), "succeeded", None))
        .collect();
    let res = app.post_runs(Value::Array(runs).to_string()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .post_runs(run_json(100, 180, "failed", Some(log)).to_string())
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    body["runs"][0]["verdict"]["anomaly_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no anomaly opened: {body}"))
}

pub(crate) const FLAKY_LOG: &str = "[Test] CartServiceTest.testApplyCoupon FAILED (flaky: timed out waiting for element #coupon)\n[Test] 812 tests, 37 failed\n";

struct Planner {
    service: PlanService,
    metrics: Arc<Metrics>,
}

/// A plan service on the app's store; `bedrock` points the real SDK at
/// the fake, `adjust` changes the planner configuration.
async fn planner(
    app: &TestApp,
    bedrock: Option<&FakeBedrock>,
    adjust: impl FnOnce(&mut config::Config),
) -> Planner {
    let mut config = config::Config::default();
    config.planner.generic_ci = CiSystem::Codepipeline;
    config.planner.playbooks_dir = root().join("playbooks").display().to_string();
    config.planner.prompts_dir = root().join("prompts").display().to_string();
    let client = match bedrock {
        Some(fake) => {
            config.planner.backend = config::PlannerBackend::Bedrock;
            config.planner.model_id = "anthropic.claude-3-5-sonnet-20240620-v1:0".into();
            config.aws.endpoints.bedrock = fake.url();
            adjust(&mut config);
            Some(test_aws_settings(&config.aws).load().await.bedrock())
        }
        None => {
            adjust(&mut config);
            None
        }
    };
    let metrics = Arc::new(Metrics::new());
    let clock: Arc<dyn Clock> = app.clock.clone();
    let service =
        PlanService::from_config(&config, app.store.clone(), metrics.clone(), clock, client)
            .expect("plan service builds");
    Planner { service, metrics }
}

fn good_plan() -> Value {
    json!({"summary": "The coupon UI test is flaky; rerun the test stage in a clean environment.",
           "suspected_cause": "A timing-dependent UI test (timed out waiting for #coupon); the commit does not touch it.",
           "confidence": 0.8, "risk": "low",
           "steps": [{"playbook": "flaky-tests", "action": "rerun-tests-clean", "params": {},
                      "why": "The failure rate jumped while the failing test is untouched by the commit."}]})
}

fn plan_with_step(step: Value) -> Value {
    let mut plan = good_plan();
    plan["steps"] = json!([step]);
    plan
}

/// Every step of every valid plan is an action a bundled playbook declares.
fn assert_only_declared_steps(outcome: &PlanOutcome) {
    let catalog = Catalog::bundled().unwrap();
    if let Some(validated) = outcome.validated() {
        for s in &validated.steps {
            let playbook = catalog.get(&s.playbook).expect("a bundled playbook");
            assert!(playbook.action(&s.action).is_some(), "{s:?}");
        }
    }
}

fn tool_choice(request: &Value) -> &Value {
    &request["toolConfig"]["toolChoice"]
}

async fn audit_kinds(app: &TestApp) -> Vec<String> {
    app.store
        .audit_since(chrono::DateTime::UNIX_EPOCH)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .filter(|k| k.starts_with("plan."))
        .collect()
}

async fn a_good_tool_use_plan_is_validated_stored_and_counted(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let anomaly = flaky_anomaly(&app, FLAKY_LOG).await;
    let fake = FakeBedrock::start().await;
    fake.reply_with_tool(good_plan());
    let p = planner(&app, Some(&fake), |c| {
        c.planner.max_tokens = 1500;
        c.planner.temperature = 0.2;
    })
    .await;
    let drafted = p.service.draft_for_anomaly(anomaly, true).await.unwrap();
    let validated = drafted.outcome.validated().expect("valid plan").clone();
    assert!(!validated.rule_based);
    assert_eq!(validated.incident_id, anomaly.to_string());
    let step = &validated.steps[0];
    assert_eq!(
        (step.playbook.as_str(), step.action.as_str()),
        ("flaky-tests", "rerun-tests-clean")
    );
    assert_eq!(step.params["stage"], "Test");
    assert_eq!(step.target.pipeline, "checkout-service");
    assert_eq!(step.target.execution_id.as_deref(), Some("exec-0100"));
    assert_eq!((drafted.usage.input, drafted.usage.output), (1001, 201));

    // What the SDK sent: the model, one tool, the tool choice forced to it,
    // the configured limits.
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.model_id, "anthropic.claude-3-5-sonnet-20240620-v1:0");
    assert_eq!(
        tool_choice(&r.body),
        &json!({"tool": {"name": "submit_plan"}})
    );
    let tools = r.body["toolConfig"]["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0]["toolSpec"]["name"], "submit_plan");
    assert!(tools[0]["toolSpec"]["inputSchema"]["json"]["properties"]["steps"].is_object());
    assert_eq!(r.body["inferenceConfig"]["maxTokens"], 1500);
    assert!((r.body["inferenceConfig"]["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
    assert!(r.body["system"][0]["text"].as_str().unwrap().len() > 100);
    let user = r.body["messages"][0]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(
        user.contains("checkout-service") && user.contains("flaky-tests"),
        "{user}"
    );

    // Stored with its tokens, audited, counted.
    let stored = app.store.plans_for_anomaly(anomaly).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(Some(stored[0].id), drafted.id);
    assert_eq!(stored[0].status, PlanStatus::Valid);
    assert_eq!(stored[0].backend, "bedrock");
    assert_eq!(stored[0].incident_id, None);
    assert_eq!(
        (stored[0].input_tokens, stored[0].output_tokens),
        (1001, 201)
    );
    assert_eq!(
        stored[0].validated,
        Some(serde_json::to_value(&validated).unwrap())
    );
    assert_eq!(audit_kinds(&app).await, ["plan.drafted"]);
    let text = p.metrics.render();
    assert!(
        text.contains("pipemedic_planner_tokens_total{direction=\"input\"} 1001"),
        "{text}"
    );
    assert!(
        text.contains("pipemedic_planner_tokens_total{direction=\"output\"} 201"),
        "{text}"
    );
    assert!(
        text.contains("pipemedic_plans_total{backend=\"bedrock\",outcome=\"valid\"} 1"),
        "{text}"
    );

    // The chat text of the stored plan.
    let chat =
        pipemedic::plan::render_for_chat(&validated, app.clock.now() + chrono::Duration::hours(2));
    assert!(
        chat.contains("rerun-tests-clean") && chat.contains("✅"),
        "{chat}"
    );
}

async fn an_undeclared_action_or_playbook_is_retried_once_with_the_errors(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let anomaly = flaky_anomaly(&app, FLAKY_LOG).await;
    let fake = FakeBedrock::start().await;
    // An action no playbook declares, twice: invalid, never runnable.
    let undeclared = plan_with_step(json!({"playbook": "flaky-tests", "action": "wipe-runners",
        "params": {}, "why": "clean everything"}));
    fake.reply_with_tool(undeclared.clone())
        .reply_with_tool(undeclared);
    let p = planner(&app, Some(&fake), |_| {}).await;
    let drafted = p.service.draft_for_anomaly(anomaly, true).await.unwrap();
    let PlanOutcome::Invalid { errors, raw } = &drafted.outcome else {
        panic!("an undeclared action was accepted: {:?}", drafted.outcome);
    };
    assert!(
        errors
            .iter()
            .any(|e| e.contains("declares no action `wipe-runners`")),
        "{errors:?}"
    );
    assert_eq!(raw.as_ref().unwrap()["steps"][0]["action"], "wipe-runners");
    assert_eq!(drafted.attempts.len(), 2);
    assert_eq!(
        (drafted.usage.input, drafted.usage.output),
        (1001 + 1002, 201 + 202)
    );
    // The second request answers the tool call with the errors.
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let messages = requests[1].body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(
        messages[1]["content"][1]["toolUse"]["toolUseId"],
        "tooluse_1"
    );
    let result = &messages[2]["content"][0]["toolResult"];
    assert_eq!(result["toolUseId"], "tooluse_1");
    assert_eq!(result["status"], "error");
    assert!(
        result["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("wipe-runners"),
        "{result}"
    );
    assert_eq!(
        tool_choice(&requests[1].body)["tool"]["name"],
        "submit_plan"
    );
    // Stored as invalid: no validated plan to approve.
    let stored = app.store.plans_for_anomaly(anomaly).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].status, PlanStatus::Invalid);
    assert!(stored[0].validated.is_none());
    assert_eq!(stored[0].errors, *errors);
    assert_eq!(
        (stored[0].input_tokens, stored[0].output_tokens),
        (2003, 403)
    );
    assert_eq!(audit_kinds(&app).await, ["plan.invalid"]);
    assert_eq!(
        p.metrics
            .counter("pipemedic_plans_total", &[("outcome", "invalid")]),
        1
    );

    // A playbook that does not exist, then a corrected plan: valid on the retry.
    fake.reply_with_tool(plan_with_step(json!({"playbook": "reboot-the-world",
        "action": "rerun-tests-clean", "params": {}, "why": "x"})))
        .reply_with_tool(good_plan());
    let drafted = p.service.draft_for_anomaly(anomaly, true).await.unwrap();
    assert!(drafted.outcome.is_valid(), "{:?}", drafted.outcome);
    assert_eq!(drafted.attempts.len(), 2);
    assert!(drafted.attempts[0].errors[0].contains("no playbook `reboot-the-world`"));
    assert_only_declared_steps(&drafted.outcome);
    assert_eq!(audit_kinds(&app).await, ["plan.invalid", "plan.drafted"]);
}

async fn parameters_outside_the_schema_are_rejected(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let anomaly = flaky_anomaly(&app, FLAKY_LOG).await;
    let fake = FakeBedrock::start().await;
    let bad_mode = plan_with_step(
        json!({"playbook": "flaky-tests", "action": "rerun-tests-clean",
        "params": {"mode": "DELETE_EVERYTHING"}, "why": "x"}),
    );
    let extra = plan_with_step(
        json!({"playbook": "flaky-tests", "action": "rerun-tests-clean",
        "params": {"stage": "Deploy", "force": true}, "why": "x"}),
    );
    fake.reply_with_tool(bad_mode).reply_with_tool(extra);
    let p = planner(&app, Some(&fake), |_| {}).await;
    let drafted = p.service.draft_for_anomaly(anomaly, false).await.unwrap();
    let PlanOutcome::Invalid { errors, .. } = &drafted.outcome else {
        panic!(
            "parameters outside the schema were accepted: {:?}",
            drafted.outcome
        );
    };
    assert!(
        errors.iter().any(|e| e.contains("no parameter `force`")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("parameter `stage`")),
        "{errors:?}"
    );
    let first =
        &fake.requests()[1].body["messages"][2]["content"][0]["toolResult"]["content"][0]["text"];
    assert!(
        first.as_str().unwrap().contains("DELETE_EVERYTHING"),
        "{first}"
    );
    // A dry run stores nothing.
    assert!(app
        .store
        .plans_for_anomaly(anomaly)
        .await
        .unwrap()
        .is_empty());
    assert!(audit_kinds(&app).await.is_empty());
}

async fn text_or_malformed_answers_are_invalid_attempts(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let anomaly = flaky_anomaly(&app, FLAKY_LOG).await;
    let fake = FakeBedrock::start().await;
    let p = planner(&app, Some(&fake), |_| {}).await;

    // Plain text instead of the tool, twice.
    fake.reply_with_text("You should rerun the tests.")
        .reply_with_text("Really, rerun them.");
    let drafted = p.service.draft_for_anomaly(anomaly, true).await.unwrap();
    let PlanOutcome::Invalid { errors, raw } = &drafted.outcome else {
        panic!("text became a plan: {:?}", drafted.outcome);
    };
    assert!(
        errors[0].contains("text instead of a call to the `submit_plan` tool"),
        "{errors:?}"
    );
    assert_eq!(raw.as_ref().unwrap()["text"], "Really, rerun them.");
    // The follow-up is a user text turn (there was no tool call to answer).
    let follow = &fake.requests()[1].body["messages"];
    assert_eq!(
        follow[1]["content"][0]["text"],
        "You should rerun the tests."
    );
    assert!(follow[2]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("rejected"));

    // A tool input that is not a plan, then a good one.
    fake.reply_with_tool(json!({"summary": 3, "steps": "rerun"}))
        .reply_with_tool(good_plan());
    let drafted = p.service.draft_for_anomaly(anomaly, true).await.unwrap();
    assert!(drafted.outcome.is_valid(), "{:?}", drafted.outcome);
    assert!(drafted.attempts[0].errors[0].contains("does not match the plan schema"));

    // A response body that is not JSON at all: a failed call, nothing stored.
    fake.reply_raw(200, "{\"output\": {\"message\": ");
    let err = p
        .service
        .draft_for_anomaly(anomaly, true)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PlanServiceError::Model(BedrockError::Service { .. })),
        "{err}"
    );
    let stored = app.store.plans_for_anomaly(anomaly).await.unwrap();
    let statuses: Vec<_> = stored.iter().map(|s| s.status).collect();
    assert_eq!(statuses, [PlanStatus::Invalid, PlanStatus::Valid]);
    assert_eq!(
        audit_kinds(&app).await,
        ["plan.invalid", "plan.drafted", "plan.failed"]
    );
    assert_eq!(
        p.metrics
            .counter("pipemedic_plans_total", &[("outcome", "error")]),
        1
    );
}

async fn throttling_backs_off_and_server_errors_and_timeouts_are_reported(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let anomaly = flaky_anomaly(&app, FLAKY_LOG).await;
    let fake = FakeBedrock::start().await;
    let p = planner(&app, Some(&fake), |c| c.planner.timeout_s = 1).await;

    // 429 ThrottlingException, then an answer: the SDK retries after a backoff.
    fake.fail_next(429, "ThrottlingException")
        .reply_with_tool(good_plan());
    let started = std::time::Instant::now();
    let drafted = p.service.draft_for_anomaly(anomaly, true).await.unwrap();
    assert!(drafted.outcome.is_valid());
    assert_eq!(fake.requests().len(), 2);
    assert!(started.elapsed() >= Duration::from_millis(1), "no backoff");

    // 500 on every try: the SDK's attempts are used up and the failure is reported.
    for _ in 0..3 {
        fake.fail_next(500, "InternalServerException");
    }
    let err = p
        .service
        .draft_for_anomaly(anomaly, true)
        .await
        .unwrap_err();
    match &err {
        PlanServiceError::Model(BedrockError::Service { class, message }) => {
            assert_eq!(*class, pipemedic::aws::ErrorClass::Transient);
            assert!(message.contains("InternalServerException"), "{message}");
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(fake.requests().len(), 5);

    // Throttled on every try: reported as throttling, retryable.
    for _ in 0..3 {
        fake.fail_next(429, "ThrottlingException");
    }
    let err = p
        .service
        .draft_for_anomaly(anomaly, true)
        .await
        .unwrap_err();
    let PlanServiceError::Model(model) = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(
            model,
            BedrockError::Service {
                class: pipemedic::aws::ErrorClass::Throttling,
                ..
            }
        ),
        "{model}"
    );
    assert!(model.is_retryable());

    // An answer slower than planner.timeout_s.
    fake.delay_next(Duration::from_secs(3))
        .reply_with_tool(good_plan());
    let started = std::time::Instant::now();
    let err = p
        .service
        .draft_for_anomaly(anomaly, true)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PlanServiceError::Model(BedrockError::Timeout(_))),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_millis(2900));

    // Only the first draft produced a plan; the failures are audited.
    assert_eq!(app.store.plans_for_anomaly(anomaly).await.unwrap().len(), 1);
    assert_eq!(
        audit_kinds(&app).await,
        ["plan.drafted", "plan.failed", "plan.failed", "plan.failed"]
    );
    assert_eq!(
        p.metrics
            .counter("pipemedic_plans_total", &[("outcome", "error")]),
        3
    );
}

async fn with_offline_fallback_a_failing_model_still_yields_a_rule_based_plan(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let anomaly = flaky_anomaly(&app, FLAKY_LOG).await;
    let fake = FakeBedrock::start().await;
    let p = planner(&app, Some(&fake), |c| c.planner.offline_fallback = true).await;

    // The service fails on every try: the failure is on record, and the
    // rule-based plan is the one returned and stored.
    for _ in 0..3 {
        fake.fail_next(500, "InternalServerException");
    }
    let drafted = p.service.draft_for_anomaly(anomaly, true).await.unwrap();
    assert_eq!(drafted.backend, "offline");
    assert!(drafted.outcome.is_valid());
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(audit_kinds(&app).await, ["plan.failed", "plan.drafted"]);

    // Prose twice: the invalid model answer is stored, then the rule-based plan.
    fake.reply_with_text("Just roll back.")
        .reply_with_text("Roll back now.");
    let drafted = p.service.draft_for_anomaly(anomaly, true).await.unwrap();
    assert_eq!(drafted.backend, "offline");
    let backends: Vec<(String, PlanStatus)> = app
        .store
        .plans_for_anomaly(anomaly)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.backend, p.status))
        .collect();
    assert_eq!(
        backends,
        [
            ("offline".to_string(), PlanStatus::Valid),
            ("bedrock".to_string(), PlanStatus::Invalid),
            ("offline".to_string(), PlanStatus::Valid),
        ]
    );
}

async fn prompt_injection_never_yields_a_step_outside_the_playbooks(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let log =
        std::fs::read_to_string(root().join("tests/fixtures/injection/run-commands.log")).unwrap();
    let anomaly = flaky_anomaly(&app, &log).await;
    let fake = FakeBedrock::start().await;
    let p = planner(&app, Some(&fake), |_| {}).await;
    let fixture = |name: &str| -> Value {
        let text =
            std::fs::read_to_string(root().join("tests/fixtures/injection/plans").join(name))
                .unwrap();
        serde_json::from_str(&text).unwrap()
    };
    // The model "obeys" the log: a shell command from the log, an invented
    // shell action, approvers of its own, another tool.
    let cases = [
        ("shell-from-log.json", "invented-shell-action.json"),
        ("approvers-field.json", "approval-param.json"),
        ("command-field.json", "other-tool-kind.json"),
        ("mode-injection.json", "other-stage.json"),
    ];
    for (first, second) in cases {
        fake.reply_with_tool(fixture(first))
            .reply_with_tool(fixture(second));
        let drafted = p.service.draft_for_anomaly(anomaly, true).await.unwrap();
        assert!(
            !drafted.outcome.is_valid(),
            "{first}/{second} accepted: {:?}",
            drafted.outcome
        );
    }
    fake.reply_with_named_tool("run_shell", json!({"cmd": "rm -rf /"}))
        .reply_with_named_tool("run_shell", json!({"cmd": "rm -rf /"}));
    let drafted = p.service.draft_for_anomaly(anomaly, true).await.unwrap();
    assert!(!drafted.outcome.is_valid());
    // Nothing stored can be approved.
    let stored = app.store.plans_for_anomaly(anomaly).await.unwrap();
    assert_eq!(stored.len(), 5);
    assert!(stored
        .iter()
        .all(|s| s.status == PlanStatus::Invalid && s.validated.is_none()));
    // The log reached the model only as framed, untrusted data.
    let user = fake.requests()[0].body["messages"][0]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        user.contains("ignore all previous instructions"),
        "the log is shown as data"
    );
    // A plan the playbooks allow is still accepted for the same incident.
    fake.reply_with_tool(good_plan());
    let drafted = p.service.draft_for_anomaly(anomaly, true).await.unwrap();
    assert_only_declared_steps(&drafted.outcome);
    assert!(drafted.outcome.is_valid());
}

/// The secrets of the redaction corpus (between ⟦ and ⟧) and the log lines
/// that carry them.
fn corpus() -> (Vec<String>, String) {
    let text = std::fs::read_to_string(root().join("tests/fixtures/redaction/corpus.txt")).unwrap();
    let mut secrets = Vec::new();
    let mut log = String::new();
    for line in text.lines() {
        if let Some(case) = line.strip_prefix("redact: ") {
            let (before, rest) = case.split_once('⟦').unwrap();
            let (secret, after) = rest.split_once('⟧').unwrap();
            secrets.push(secret.to_string());
            log.push_str(&format!("{before}{secret}{after}\n"));
        }
    }
    log.push_str(FLAKY_LOG);
    (secrets, log)
}

fn strings_of(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| strings_of(i, out)),
        Value::Object(map) => map.values().for_each(|i| strings_of(i, out)),
        _ => {}
    }
}

async fn no_secret_from_the_redaction_corpus_reaches_the_model(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let (secrets, log) = corpus();
    assert!(secrets.len() >= 30);
    let anomaly = flaky_anomaly(&app, &log).await;
    let fake = FakeBedrock::start().await;
    // The model echoes a secret back in an invalid step; the feedback must
    // not carry it back either.
    let leaky = plan_with_step(json!({"playbook": "flaky-tests", "action": &secrets[0],
        "params": {}, "why": "x"}));
    fake.reply_with_tool(leaky).reply_with_tool(good_plan());
    let p = planner(&app, Some(&fake), |_| {}).await;
    let drafted = p.service.draft_for_anomaly(anomaly, true).await.unwrap();
    assert!(drafted.outcome.is_valid());
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    for (n, r) in requests.iter().enumerate() {
        // Everything pipemedic wrote: the system prompt, the tool schema and
        // every user turn. (An assistant turn repeats the model's own answer.)
        let mut texts = Vec::new();
        strings_of(&r.body["system"], &mut texts);
        strings_of(&r.body["toolConfig"], &mut texts);
        for m in r.body["messages"].as_array().unwrap() {
            if m["role"] == "user" {
                strings_of(&m["content"], &mut texts);
            }
        }
        for secret in &secrets {
            for t in &texts {
                assert!(
                    !t.contains(secret.as_str()),
                    "request {n}: {secret:?} reached the model"
                );
            }
            assert!(
                !r.raw.contains(secret.as_str()) || n == 1,
                "request {n}: {secret:?} in the body"
            );
        }
        let user = r.body["messages"][0]["content"][0]["text"]
            .as_str()
            .unwrap();
        assert!(user.contains("[REDACTED"), "request {n}: nothing redacted");
    }
    let feedback = requests[1].body["messages"][2]["content"][0]["toolResult"]["content"][0]
        ["text"]
        .as_str()
        .unwrap();
    assert!(!feedback.contains(secrets[0].as_str()), "{feedback}");
}

async fn the_offline_planner_drafts_a_rule_based_plan_for_the_same_anomaly(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let anomaly = flaky_anomaly(&app, FLAKY_LOG).await;
    let p = planner(&app, None, |_| {}).await;
    assert_eq!(p.service.planner().name(), "offline");
    let drafted = p.service.draft_for_anomaly(anomaly, true).await.unwrap();
    let validated = drafted.outcome.validated().expect("valid offline plan");
    assert!(validated.rule_based);
    assert!(
        validated.summary.starts_with("Rule-based plan"),
        "{}",
        validated.summary
    );
    assert_eq!(validated.steps[0].playbook, "flaky-tests");
    assert_eq!(validated.steps[0].action, "rerun-tests-clean");
    assert_eq!(drafted.usage, Default::default());
    let stored = app.store.plans_for_anomaly(anomaly).await.unwrap();
    assert_eq!(stored[0].backend, "offline");
    assert_eq!(stored[0].status, PlanStatus::Valid);
    assert_eq!(audit_kinds(&app).await, ["plan.drafted"]);
    assert_eq!(
        p.metrics.counter(
            "pipemedic_plans_total",
            &[("backend", "offline"), ("outcome", "valid")]
        ),
        1
    );
    // Facts from the store: the last normal run and the anomaly's run.
    let facts = &drafted.facts;
    assert_eq!(facts.run_id, "exec-0100");
    assert_eq!(facts.stage.as_deref(), Some("Test"));
    assert_eq!(facts.commit.as_deref(), Some("c0100"));
    assert_eq!(
        facts.last_normal.as_ref().map(|l| l.run_id.as_str()),
        Some("exec-0099")
    );
    assert!(
        facts
            .metrics
            .iter()
            .any(|m| m.metric == "test_failure_rate"),
        "{:?}",
        facts.metrics
    );
    let report = pipemedic::plan::render_report(&drafted);
    assert!(report.contains("rule-based"), "{report}");
    assert!(
        report.contains("Step 1: flaky-tests/rerun-tests-clean"),
        "{report}"
    );
    // An unknown anomaly is an error, not a plan.
    let err = p
        .service
        .draft_for_anomaly(anomaly + 1000, true)
        .await
        .unwrap_err();
    assert!(matches!(err, PlanServiceError::UnknownAnomaly(_)), "{err}");
}

async fn plan_command_prints_and_stores_unless_dry_run(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let anomaly = flaky_anomaly(&app, FLAKY_LOG).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipemedic.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = {:?}\n[planner]\ngeneric_ci = \"codepipeline\"\n",
            app._db.url
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_string();
    // The incident the anomaly opened (recorded even though not routed).
    let mut incident = None;
    for _ in 0..500 {
        incident = app
            .store
            .incidents(true, Some("checkout-service"), 1)
            .await
            .unwrap()
            .pop();
        if incident.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let incident = incident.expect("an incident");
    assert_eq!(incident.anomaly_id, Some(anomaly));
    let id = incident.id.to_string();
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            pipemedic(&args)
        })
    };
    let out = run(vec![
        "--config".into(),
        config.clone(),
        "plan".into(),
        id.clone(),
        "--dry-run".into(),
    ])
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "rule-based",
        "Step 1: flaky-tests/rerun-tests-clean",
        "risk: low",
        "approval:",
        "dry run",
        "Tokens: 0 input",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing:\n{stdout}");
    }
    assert!(app
        .store
        .plans_for_anomaly(anomaly)
        .await
        .unwrap()
        .is_empty());
    let out = run(vec![
        "--config".into(),
        config.clone(),
        "plan".into(),
        id.clone(),
    ])
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("stored as plan"));
    let stored = app.store.plans_for_anomaly(anomaly).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].incident_id, Some(incident.id));
    let out = run(vec![
        "--config".into(),
        config,
        "plan".into(),
        "999999".into(),
    ])
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

crate::on_both_databases!(
    a_good_tool_use_plan_is_validated_stored_and_counted,
    an_undeclared_action_or_playbook_is_retried_once_with_the_errors,
    parameters_outside_the_schema_are_rejected,
    text_or_malformed_answers_are_invalid_attempts,
    throttling_backs_off_and_server_errors_and_timeouts_are_reported,
    with_offline_fallback_a_failing_model_still_yields_a_rule_based_plan,
    prompt_injection_never_yields_a_step_outside_the_playbooks,
    no_secret_from_the_redaction_corpus_reaches_the_model,
    the_offline_planner_drafts_a_rule_based_plan_for_the_same_anomaly,
    plan_command_prints_and_stores_unless_dry_run,
);
