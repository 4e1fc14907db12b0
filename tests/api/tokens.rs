//! Scoped tokens and roles: every API route against every token (ingest,
//! read, admin, none, a stranger's), the admin API and `pipemedic
//! approve|reject|incidents` against a running server, chat admins for
//! `silence` and `accept-baseline`, and `ask` in the Slack manifest and the
//! Discord command registration.

use pipemedic::approvals::Via;
use pipemedic::domain::IncidentStatus;
use pipemedic::startup::{Application, StartupError};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::healing::{
    assert_one_retry, loop_app_with, react, slack_plan, status_of, until_plan_offered,
    wait_for_status, Loop, APPROVER_SLACK, PLAYBOOK,
};
use crate::helpers::{
    loaded, spawn_app, spawn_app_with_secrets, test_secrets, Db, TestApp, TestDb, ADMIN_TOKEN,
    INGEST_TOKEN, READ_TOKEN,
};
use crate::incidents::{chat_app_with, slash_as};
use crate::on_both_databases;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Ingest,
    Read,
    Admin,
}

/// Every bearer-authenticated route, with a body it accepts.
fn routes() -> Vec<(Method, &'static str, Value, Needs)> {
    let run = json!({"pipeline": "tok", "run_id": "1", "status": "succeeded",
                     "started_at": "2026-11-25T11:00:00Z", "finished_at": "2026-11-25T11:02:00Z"});
    vec![
        (Method::POST, "/v1/runs", run, Needs::Ingest),
        (Method::GET, "/v1/incidents", Value::Null, Needs::Read),
        (Method::GET, "/v1/incidents/1", Value::Null, Needs::Read),
        (
            Method::GET,
            "/v1/pipelines/tok/health",
            Value::Null,
            Needs::Read,
        ),
        (
            Method::POST,
            "/v1/ask",
            json!({"question": "how is tok doing?"}),
            Needs::Read,
        ),
        (
            Method::POST,
            "/v1/plans/1/approve",
            json!({"as": "alice"}),
            Needs::Admin,
        ),
        (
            Method::POST,
            "/v1/plans/1/reject",
            json!({"as": "alice", "reason": "no"}),
            Needs::Admin,
        ),
        (
            Method::POST,
            "/v1/pipelines/tok/silence",
            json!({"as": "alice", "for": "2h"}),
            Needs::Admin,
        ),
        (
            Method::POST,
            "/v1/pipelines/tok/unsilence",
            json!({"as": "alice"}),
            Needs::Admin,
        ),
        (
            Method::POST,
            "/v1/pipelines/tok/accept-baseline",
            json!({"as": "alice"}),
            Needs::Admin,
        ),
    ]
}

async fn call(
    app: &TestApp,
    method: &Method,
    path: &str,
    body: &Value,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = app.http.request(method.clone(), app.url(path));
    if !body.is_null() {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let res = request.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn every_route_takes_only_its_own_token(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let tokens = [
        ("ingest", Some(INGEST_TOKEN)),
        ("read", Some(READ_TOKEN)),
        ("admin", Some(ADMIN_TOKEN)),
        ("none", None),
        ("stranger", Some("not-a-token-of-ours")),
    ];
    for (method, path, body, needs) in routes() {
        for (name, token) in tokens {
            let (status, answer) = call(&app, &method, path, &body, token).await;
            let allowed = match (needs, name) {
                (Needs::Ingest, "ingest") => true,
                // The admin token satisfies the read routes too.
                (Needs::Read, "read" | "admin") => true,
                (Needs::Admin, "admin") => true,
                _ => false,
            };
            let what = format!("{method} {path} with the {name} token: {status} {answer}");
            if allowed {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{what}"
                );
            } else if matches!(name, "none" | "stranger") {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
                assert_eq!(answer["code"], "unauthorized", "{what}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{what}");
                assert_eq!(answer["code"], "forbidden", "{what}");
                let variable = match needs {
                    Needs::Ingest => "PIPEMEDIC_INGEST_TOKEN",
                    Needs::Read => "PIPEMEDIC_READ_TOKEN",
                    Needs::Admin => "PIPEMEDIC_ADMIN_TOKEN",
                };
                assert!(
                    answer["message"].as_str().unwrap().contains(variable),
                    "{what}"
                );
            }
        }
    }
    // The admin calls above that were allowed did what they say, audited.
    let audit = app
        .store
        .audit_since(crate::helpers::t("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    let silence = audit
        .iter()
        .find(|e| e.kind == "api.silence")
        .expect("api.silence audited");
    assert_eq!(silence.actor, "api:alice");
    assert!(audit
        .iter()
        .any(|e| e.kind == "api.accept_baseline" && e.actor == "api:alice"));
    // Refused calls changed nothing: one silence, from the admin token.
    let now = pipemedic::clock::Clock::now(app.clock.as_ref());
    assert_eq!(
        app.store.active_silences(now).await.unwrap().len(),
        0,
        "unsilenced after"
    );
    assert_eq!(
        audit.iter().filter(|e| e.kind == "api.silence").count(),
        1,
        "only the admin token silenced"
    );
}

async fn admin_routes_are_off_without_the_admin_token(db: Db) {
    let Some(app) = spawn_app_with_secrets(db, |_| {}, |s| s.admin_token = None, None).await else {
        return;
    };
    for (method, path, body, needs) in routes() {
        if needs != Needs::Admin {
            continue;
        }
        for token in [None, Some(READ_TOKEN), Some(INGEST_TOKEN)] {
            let (status, answer) = call(&app, &method, path, &body, token).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {answer}");
            assert!(
                answer["message"]
                    .as_str()
                    .unwrap()
                    .contains("PIPEMEDIC_ADMIN_TOKEN"),
                "{answer}"
            );
        }
    }
    let now = pipemedic::clock::Clock::now(app.clock.as_ref());
    assert!(app.store.active_silences(now).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unset_read_token_keeps_reads_on_loopback() {
    let db = TestDb::new(Db::Sqlite).await.unwrap();
    let mut secrets = test_secrets();
    secrets.read_token = None;
    let err = Application::build(loaded(&db.url, "0.0.0.0:0", secrets))
        .await
        .err()
        .expect("a public address with open reads is refused");
    match err {
        StartupError::UnauthenticatedPublic { routes, .. } => {
            assert!(routes.contains("PIPEMEDIC_READ_TOKEN"), "{routes}");
            assert!(!routes.contains("PIPEMEDIC_INGEST_TOKEN"), "{routes}");
        }
        other => panic!("unexpected: {other}"),
    }
    // Without an admin token a public address is fine: admin routes are off.
    let mut secrets = test_secrets();
    secrets.admin_token = None;
    let app = Application::build(loaded(&db.url, "0.0.0.0:0", secrets))
        .await
        .expect("admin routes are never open");
    drop(app);
}

/// The team playbook, needing two approvers from `sre`.
fn two_person_playbook() -> String {
    PLAYBOOK.replace("approval: { required: 1,", "approval: { required: 2,")
}

/// The loop with a two-approver playbook and CLI operators alice and bob
/// in the `sre` group.
async fn quorum_loop(db: Db) -> Option<Loop> {
    loop_app_with(db, &two_person_playbook(), |c| {
        let sre = c.approvals.groups.get_mut("sre").unwrap();
        sre.push("cli:alice".into());
        sre.push("cli:bob".into());
    })
    .await
}

/// Runs the real `pipemedic` binary with the admin token and the app's store.
async fn pipemedic(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    // No configuration file: built-in defaults plus the environment.
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pipemedic"));
    command
        .current_dir(dir.path())
        .args(args)
        .env("PIPEMEDIC_SERVER", &app.base)
        .env("PIPEMEDIC_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("PIPEMEDIC_STORE__URL", &app._db.url)
        .env_remove("PIPEMEDIC_CONFIG")
        .env_remove("PIPEMEDIC_INGEST_TOKEN")
        .env("USER", "from-user-env");
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The id of the plan offered for incident `id`, from `pipemedic incidents`.
async fn offered_plan(app: &TestApp, incident: i64) -> String {
    let (code, out, err) = pipemedic(
        app,
        &["incidents", "--status", "awaiting_approval", "--json"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let item = listed["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == incident)
        .unwrap_or_else(|| panic!("incident {incident} not listed: {listed}"));
    let plan = item["plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["state"] == "pending")
        .unwrap_or_else(|| panic!("no pending plan: {item}"));
    plan["id"].as_i64().unwrap().to_string()
}

async fn cli_approval_is_one_vote_and_never_runs_twice(db: Db) {
    let Some(l) = quorum_loop(db).await else {
        return;
    };
    let app = &l.h.app;
    let pipeline = "checkout-service";
    let id = until_plan_offered(&l, pipeline).await;
    let plan = offered_plan(app, id).await;

    // The first approval through the CLI counts: 1 of 2, nothing runs.
    let (code, out, err) = pipemedic(app, &["approve", &plan, "--as", "alice"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 of 2"), "{out}");
    assert_eq!(status_of(app, id).await, IncidentStatus::AwaitingApproval);
    // Another name with the same token is still the same token: no effect.
    let (code, out, err) = pipemedic(app, &["approve", &plan, "--as", "bob"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("admin token already approved"), "{err}");
    assert_eq!(status_of(app, id).await, IncidentStatus::AwaitingApproval);
    assert!(l.codepipeline.calls_of("RetryStageExecution").is_empty());

    // The second person approves in chat: approved, run once.
    let card = slack_plan(&l, 1).await;
    react(app, "EvQuorum", APPROVER_SLACK, &card).await;
    wait_for_status(app, id, IncidentStatus::Verifying).await;
    assert_one_retry(&l, pipeline);

    // A decided plan takes no more votes and never runs twice.
    let (code, out, err) = pipemedic(app, &["approve", &plan, "--as", "alice"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("already"), "{out}");
    assert_one_retry(&l, pipeline);

    // The approval record and the audit log say via cli, by the operator.
    let request = app
        .store
        .approval_requests_for_incident(&id.to_string())
        .await
        .unwrap()
        .pop()
        .unwrap();
    let votes = app.store.approval_votes(request.id).await.unwrap();
    let alice = votes
        .iter()
        .find(|v| v.vote.approver.user == "alice" && v.effective)
        .expect("alice's vote counted");
    assert_eq!(alice.vote.via, Via::Cli);
    assert_eq!(alice.vote.approver.platform, "cli");
    assert!(votes
        .iter()
        .any(|v| v.vote.approver.user == "bob" && !v.effective && v.outcome == "not_allowed"));
    let audit = app
        .store
        .audit_since(crate::helpers::t("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    assert!(audit.iter().any(|e| e.kind == "approval.decision"
        && e.actor == "cli:alice"
        && e.detail["via"] == "cli"));
}

async fn cli_rejection_obeys_who_may_decide(db: Db) {
    let Some(l) = quorum_loop(db).await else {
        return;
    };
    let app = &l.h.app;
    let id = until_plan_offered(&l, "checkout-service").await;
    let plan = offered_plan(app, id).await;
    // $USER is nobody in `sre`: the rejection has no effect.
    let (code, out, err) = pipemedic(app, &["reject", &plan]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("cli:from-user-env") && out.contains("only group:sre"),
        "{out}"
    );
    assert_eq!(status_of(app, id).await, IncidentStatus::AwaitingApproval);
    // A wrong token is refused before anything is recorded.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pipemedic"));
    command.args([
        "reject", &plan, "--server", &app.base, "--token", READ_TOKEN, "--as", "alice",
    ]);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PIPEMEDIC_ADMIN_TOKEN"));
    // alice may: rejected, with her reason in the audit log.
    let (code, out, err) = pipemedic(
        app,
        &["reject", &plan, "--as", "alice", "--reason", "wrong stage"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    wait_for_status(app, id, IncidentStatus::Open).await;
    assert!(l.codepipeline.calls_of("RetryStageExecution").is_empty());
    let audit = app
        .store
        .audit_since(crate::helpers::t("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    assert!(audit.iter().any(|e| e.kind == "approval.reason"
        && e.actor == "cli:alice"
        && e.detail["reason"] == "wrong stage"
        && e.detail["via"] == "cli"));
}

async fn chat_silence_needs_an_admin(db: Db) {
    let Some(h) = chat_app_with(db, |c| {
        c.chat.admins = vec!["slack-group:S0OPS".into()];
    })
    .await
    else {
        return;
    };
    h.slack.set_usergroup("S0OPS", &["U0OPS"]);
    let app = &h.app;
    let now = pipemedic::clock::Clock::now(app.clock.as_ref());
    for (text, trigger) in [
        ("silence checkout-service 2h", "a1"),
        ("accept-baseline checkout-service", "a2"),
        ("unsilence checkout-service", "a3"),
    ] {
        let answer = slash_as(app, "U0SOMEONE", text, trigger).await;
        let said = answer["text"].as_str().unwrap();
        assert!(said.starts_with("Sorry, only pipemedic admins"), "{said}");
        assert!(said.contains("slack-group:S0OPS"), "{said}");
    }
    assert!(app.store.active_silences(now).await.unwrap().is_empty());
    assert!(app
        .store
        .pending_baseline_resets("checkout-service")
        .await
        .unwrap()
        .is_empty());
    let audit = app
        .store
        .audit_since(crate::helpers::t("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    let refused: Vec<_> = audit.iter().filter(|e| e.kind == "chat.refused").collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert_eq!(refused[0].actor, "slack:U0SOMEONE");

    // A member of the ops user group, as Slack says: done.
    let answer = slash_as(app, "U0OPS", "silence checkout-service 2h", "a4").await;
    assert!(
        answer["text"].as_str().unwrap().starts_with("Silenced"),
        "{answer}"
    );
    assert_eq!(app.store.active_silences(now).await.unwrap().len(), 1);
    let answer = slash_as(app, "U0OPS", "accept-baseline checkout-service", "a5").await;
    assert!(
        answer["text"].as_str().unwrap().contains("new normal"),
        "{answer}"
    );
    // Reading stays open to everyone in the channel.
    let answer = slash_as(app, "U0SOMEONE", "incidents", "a6").await;
    assert_eq!(answer["text"], "No open incidents.");
}

/// The fenced block of the README that follows `marker`.
fn readme_block(marker: &str) -> String {
    let readme = include_str!("../../README.md");
    let from = readme
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in README"));
    let rest = &readme[from..];
    let start = rest.find("```").unwrap();
    let body = &rest[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_string()
}

#[test]
fn discord_registration_and_slack_manifest_include_ask() {
    // Discord: the JSON of the registration call has an `ask` subcommand
    // with a required question, and every subcommand is one pipemedic knows.
    let curl = readme_block("Register the `/medic` command");
    let json_text = &curl[curl.find("-d '").unwrap() + 4..curl.rfind('\'').unwrap()];
    let registration: Value = serde_json::from_str(json_text).unwrap();
    let options = registration["options"].as_array().unwrap();
    let ask = options
        .iter()
        .find(|o| o["name"] == "ask")
        .expect("ask is registered");
    assert_eq!(ask["type"], 1);
    assert_eq!(ask["options"][0]["name"], "question");
    assert_eq!(ask["options"][0]["required"], true);
    for option in options {
        let name = option["name"].as_str().unwrap();
        let sample = match name {
            "health" | "incidents" | "help" => name.to_string(),
            "incident" => "incident 1".into(),
            "silence" => "silence p 2h".into(),
            "unsilence" => "unsilence p".into(),
            "accept-baseline" => "accept-baseline p".into(),
            "ask" => "ask how is p?".into(),
            other => panic!("{other} is registered but unknown"),
        };
        assert!(
            !matches!(
                pipemedic::chatops::commands::parse(&sample),
                pipemedic::chatops::commands::Command::Unknown(_)
            ),
            "{sample}"
        );
    }
    // Slack: the manifest's usage hint offers `ask`.
    let manifest = readme_block("Create an app from this manifest");
    let hint = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("usage_hint:"))
        .unwrap();
    assert!(hint.contains("ask QUESTION"), "{hint}");
}

/// A CLI approval that completes the approvals answers before the fix has
/// run: the step runs in a task of the healing loop's own (here its
/// CodePipeline call is held), once, and its outcome goes to the thread.
async fn cli_approval_starts_the_fix_without_waiting_for_it(db: Db) {
    let Some(l) = loop_app_with(db, PLAYBOOK, |c| {
        let sre = c.approvals.groups.get_mut("sre").unwrap();
        sre.push("cli:alice".into());
    })
    .await
    else {
        return;
    };
    let app = &l.h.app;
    let pipeline = "checkout-service";
    let id = until_plan_offered(&l, pipeline).await;
    let plan = offered_plan(app, id).await;
    let gate = l.codepipeline.hold_next("RetryStageExecution");
    let (code, out, err) = pipemedic(app, &["approve", &plan, "--as", "alice"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("step 1"), "{out}");
    // The answer came while the call is still held: the fix is under way.
    assert_eq!(status_of(app, id).await, IncidentStatus::Remediating);
    assert!(l.codepipeline.calls_of("RetryStageExecution").is_empty());
    gate.notify_one();
    wait_for_status(app, id, IncidentStatus::Verifying).await;
    assert_one_retry(&l, pipeline);
}

on_both_databases!(
    every_route_takes_only_its_own_token,
    admin_routes_are_off_without_the_admin_token,
    cli_approval_is_one_vote_and_never_runs_twice,
    cli_approval_starts_the_fix_without_waiting_for_it,
    cli_rejection_obeys_who_may_decide,
    chat_silence_needs_an_admin,
);
