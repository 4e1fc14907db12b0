//! The whole loop end to end, per chat platform and database: CodePipeline
//! EventBridge events make a run that detection finds abnormal → alert in
//! the fake Slack (or Discord) → a plan from the Bedrock stand-in through
//! the real SDK, offered in the alert's thread → an approval from someone
//! not allowed (no effect, explained to them only) → one from an
//! approver, redelivered and double-clicked → exactly one
//! `RetryStageExecution` at the CodePipeline stand-in → a normal next run →
//! the incident is resolved, and `GET /v1/incidents/{id}` tells all of it.

use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use pipemedic::clock::Clock;
use pipemedic::domain::IncidentStatus;
use pipemedic::standin::codepipeline::{ExecutionSpec, FakeCodePipeline};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fakes::bedrock::FakeBedrock;
use crate::helpers::{Db, TestApp, AWS_SECRET, DISCORD_KEY_SEED};
use crate::incidents::{
    chat_app_with, slack_post, top_level, wait_until, ChatHarness, DISCORD_CHANNEL, SLACK_CHANNEL,
};
use crate::on_both_databases;

const CP_FAILED: &str = include_str!("../fixtures/aws/codepipeline-failed-execution.json");
pub(crate) const EXECUTION: &str = "3137f7cb-7cf7-4f0f-8b0c-5e0a1c2d3e4f";
pub(crate) const APPROVER_SLACK: &str = "U0APPROVER";
pub(crate) const INTRUDER_SLACK: &str = "U0INTRUDER";
pub(crate) const APPROVER_DISCORD: &str = "222222222222222222";
pub(crate) const INTRUDER_DISCORD: &str = "333333333333333333";
/// The Slack user group and the Discord role of the SRE team.
const SRE_USERGROUP: &str = "S0SRE";
const SRE_ROLE: &str = "444444444444444444";

/// A team playbook: a failed test stage is retried (failed actions only),
/// with one approval from the SRE group.
pub(crate) const PLAYBOOK: &str = r#"---
id: failed-test-stage
title: Retry a failed test stage
when:
  - { status: failed, stage: "Test" }
actions:
  - id: retry-tests
    uses: codepipeline.retry_stage
    with: { stage: "{{stage}}", mode: FAILED_ACTIONS }
    risk: low
    approval: { required: 1, from: ["group:sre"] }
    description: Retry the failed actions of the test stage.
---
# Retry a failed test stage

Most failed test stages on this team's pipelines are infrastructure noise;
one retry of the failed actions settles it.
"#;

pub(crate) struct Loop {
    pub(crate) h: ChatHarness,
    pub(crate) bedrock: FakeBedrock,
    pub(crate) codepipeline: FakeCodePipeline,
    _playbooks: tempfile::TempDir,
}

pub(crate) async fn loop_app(db: Db) -> Option<Loop> {
    loop_app_with(db, PLAYBOOK, |_| {}).await
}

/// The app with `playbook` as the team's only playbook, Bedrock and
/// CodePipeline pointed at their stand-ins, planning on, and `slack:` /
/// `discord:` approvers in the `sre` group.
pub(crate) async fn loop_app_with(
    db: Db,
    playbook: &str,
    adjust: impl FnOnce(&mut pipemedic::config::Config),
) -> Option<Loop> {
    let bedrock = FakeBedrock::start().await;
    let codepipeline = FakeCodePipeline::start().await;
    let playbooks = tempfile::tempdir().unwrap();
    std::fs::write(playbooks.path().join("failed-test-stage.md"), playbook).unwrap();
    let (bedrock_url, cp_url) = (bedrock.url(), codepipeline.url());
    let dir = playbooks.path().display().to_string();
    let h = chat_app_with(db, |c| {
        c.planner.plan_incidents = true;
        c.planner.backend = pipemedic::config::PlannerBackend::Bedrock;
        c.planner.playbooks_dir = dir;
        c.planner.prompts_dir = format!("{}/prompts", env!("CARGO_MANIFEST_DIR"));
        c.aws.endpoints.bedrock = bedrock_url;
        c.aws.endpoints.codepipeline = cp_url;
        c.approvals.groups.insert(
            "sre".into(),
            vec![
                format!("slack:{APPROVER_SLACK}"),
                format!("discord:{APPROVER_DISCORD}"),
                format!("slack-group:{SRE_USERGROUP}"),
                format!("discord-role:{SRE_ROLE}"),
            ],
        );
        adjust(c);
    })
    .await?;
    Some(Loop {
        h,
        bedrock,
        codepipeline,
        _playbooks: playbooks,
    })
}

/// The `i`-th normal run of `pipeline` through the generic API, every two
/// hours up to 2026-11-20 08:00.
pub(crate) fn normal_run(
    pipeline: &str,
    run_id: &str,
    start: chrono::DateTime<chrono::Utc>,
) -> Value {
    let end = start + chrono::Duration::seconds(120 + (run_id.len() as i64 % 7));
    json!({"pipeline": pipeline, "run_id": run_id, "status": "succeeded",
           "started_at": start.to_rfc3339(), "finished_at": end.to_rfc3339(),
           "commit": format!("c-{run_id}")})
}

pub(crate) async fn history(app: &TestApp, pipeline: &str) {
    let last: chrono::DateTime<chrono::Utc> = "2026-11-20T08:00:00Z".parse().unwrap();
    let runs: Vec<Value> = (0..100)
        .map(|i| {
            let start = last - chrono::Duration::hours(2 * (100 - i));
            let mut run = normal_run(pipeline, &format!("h{i:03}"), start);
            let jitter = ((i * 7919) % 13) - 6;
            run["finished_at"] =
                json!((start + chrono::Duration::seconds(120 + jitter)).to_rfc3339());
            run
        })
        .collect();
    let res = app.post_runs(Value::Array(runs).to_string()).await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// The failed execution as CodePipeline reports it: 14 EventBridge events
/// (the Test stage fails after 7 minutes, far slower than usual).
async fn failed_execution(app: &TestApp, pipeline: &str) {
    failed_execution_at(app, pipeline, EXECUTION, 10).await;
}

/// The same failure as execution `id`, starting at `hour`:00 that day.
pub(crate) async fn failed_execution_at(app: &TestApp, pipeline: &str, id: &str, hour: u32) {
    let text = CP_FAILED
        .replace("checkout-service", pipeline)
        .replace(EXECUTION, id)
        .replace("2026-11-20T10:", &format!("2026-11-20T{hour:02}:"))
        .replace("6f0c1a2b-", &format!("{hour:02}0c1a2b-"));
    let events: Vec<Value> = serde_json::from_str(&text).unwrap();
    for event in &events {
        let res = app
            .http
            .post(app.url("/v1/webhooks/aws"))
            .header("x-pipemedic-secret", AWS_SECRET)
            .json(event)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }
}

pub(crate) fn model_plan() -> Value {
    json!({"summary": "The Test stage failed; retry its failed actions.",
           "suspected_cause": "The unit test action failed after an unusually long run.",
           "confidence": 0.7, "risk": "low",
           "steps": [{"playbook": "failed-test-stage", "action": "retry-tests", "params": {},
                      "why": "A retry of the failed actions usually clears this."}]})
}

pub(crate) async fn status_of(app: &TestApp, id: i64) -> IncidentStatus {
    app.store.incident(id).await.unwrap().unwrap().status
}

pub(crate) async fn wait_for_status(app: &TestApp, id: i64, want: IncidentStatus) {
    for _ in 0..1500 {
        if status_of(app, id).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "incident #{id} did not become {want:?}; it is {:?}",
        status_of(app, id).await
    );
}

/// Waits until the audit log has an entry of `kind`.
async fn wait_for_audit(app: &TestApp, kind: &str) {
    for _ in 0..1500 {
        let entries = app
            .store
            .audit_since(chrono::DateTime::<chrono::Utc>::MIN_UTC)
            .await
            .unwrap();
        if entries.iter().any(|e| e.kind == kind) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no {kind} in the audit log");
}

/// The id of `pipeline`'s incident, once there is one.
pub(crate) async fn incident_of(app: &TestApp, pipeline: &str) -> i64 {
    for _ in 0..750 {
        if let Some(i) = app
            .store
            .incidents(true, Some(pipeline), 1)
            .await
            .unwrap()
            .pop()
        {
            return i.id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no incident opened for {pipeline}");
}

/// The failed execution as the CodePipeline stand-in knows it (the Test
/// stage failed), so fixes can act on it.
pub(crate) fn known_failed_execution(l: &Loop, pipeline: &str) {
    l.codepipeline.add_execution(
        pipeline,
        ExecutionSpec::new(EXECUTION, "Failed", "2026-11-20T10:00:00Z".parse().unwrap())
            .action("Source", "Source", "Succeeded", 1, 5)
            .action("Build", "Build", "Succeeded", 6, 216)
            .action("Test", "UnitTests", "Failed", 218, 430),
    );
}

/// Up to the plan offered in the thread: returns the incident id.
pub(crate) async fn until_plan_offered(l: &Loop, pipeline: &str) -> i64 {
    let app = &l.h.app;
    known_failed_execution(l, pipeline);
    l.bedrock.reply_with_tool(model_plan());
    history(app, pipeline).await;
    failed_execution(app, pipeline).await;
    let id = incident_of(app, pipeline).await;
    wait_for_status(app, id, IncidentStatus::AwaitingApproval).await;
    // The model saw the incident, the team's playbook and only its action.
    let requests = l.bedrock.requests();
    assert_eq!(requests.len(), 1);
    let prompt = requests[0].body["messages"][0]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        prompt.contains(pipeline) && prompt.contains("failed-test-stage"),
        "{prompt}"
    );
    assert!(l.codepipeline.calls_of("RetryStageExecution").is_empty());
    id
}

/// Exactly one retry of the failed execution's Test stage.
pub(crate) fn assert_one_retry(l: &Loop, pipeline: &str) {
    let retries = l.codepipeline.calls_of("RetryStageExecution");
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert_eq!(retries[0]["pipelineName"], pipeline);
    assert_eq!(retries[0]["stageName"], "Test");
    assert_eq!(retries[0]["pipelineExecutionId"], EXECUTION);
    assert_eq!(retries[0]["retryMode"], "FAILED_ACTIONS");
}

/// A normal next run resolves the incident; the story is complete.
async fn heal_and_check_story(l: &Loop, pipeline: &str, id: i64, approver: &str, intruder: &str) {
    let app = &l.h.app;
    let next = normal_run(
        pipeline,
        "after-fix",
        "2026-11-20T11:00:00Z".parse().unwrap(),
    );
    let res = app.post_runs(next.to_string()).await;
    assert_eq!(res.status(), StatusCode::OK);
    wait_for_status(app, id, IncidentStatus::Resolved).await;
    assert_one_retry(l, pipeline);

    let res = app
        .http
        .get(app.url(&format!("/v1/incidents/{id}")))
        .bearer_auth(crate::helpers::READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let story: Value = res.json().await.unwrap();
    let kinds: Vec<&str> = story["story"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "incident.opened",
        "plan.drafted",
        "approval.requested",
        "chat.decision",
        "approval.decision",
        "approval.status",
        "execution.started",
        "execution.finished",
        "incident.status",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert_eq!(
        kinds.iter().filter(|k| **k == "execution.started").count(),
        1
    );
    let statuses: Vec<&str> = story["story"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "incident.status")
        .map(|e| e["detail"]["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "planning",
            "awaiting_approval",
            "remediating",
            "verifying",
            "resolved"
        ]
    );
    let approval = &story["approvals"][0];
    assert_eq!(approval["request"]["status"], "done");
    let votes: Vec<(&str, &str)> = approval["votes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["vote"]["approver"]["user"].as_str().unwrap(),
                v["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    // Later presses by the approver (a second click) change nothing.
    assert_eq!(
        votes[..2],
        [(intruder, "not_allowed"), (approver, "approved")]
    );
    assert!(
        votes[2..]
            .iter()
            .all(|(who, outcome)| *who == approver && *outcome != "approved"),
        "{votes:?}"
    );
    assert_eq!(approval["executions"][0]["status"], "succeeded");
    assert_eq!(story["plans"][0]["backend"], "bedrock");
    // The list carries each incident's plans and approvals too.
    let listed: Value = app
        .get_json(&format!("/v1/incidents?pipeline={pipeline}"))
        .await;
    let item = &listed["incidents"][0];
    assert_eq!(item["id"], id);
    assert_eq!(item["status"], "resolved");
    assert_eq!(item["plans"], story["plans"]);
    assert_eq!(item["approvals"], story["approvals"]);
    let resolved = story["story"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|e| e["kind"] == "incident.status")
        .unwrap();
    assert!(
        resolved["detail"]["note"]
            .as_str()
            .unwrap()
            .contains("recovered in"),
        "{resolved}"
    );
}

fn reaction(event_id: &str, user: &str, ts: &str) -> Vec<u8> {
    json!({"token": "x", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
           "event_id": event_id, "event_time": 1764064800,
           "event": {"type": "reaction_added", "user": user, "reaction": "white_check_mark",
                     "item_user": crate::fakes::slack::BOT_USER_ID,
                     "item": {"type": "message", "channel": SLACK_CHANNEL, "ts": ts},
                     "event_ts": "1764064800.000100"}})
    .to_string()
    .into_bytes()
}

async fn slack_approval_heals_a_codepipeline_failure(db: Db) {
    let Some(l) = loop_app(db).await else { return };
    let (app, slack) = (&l.h.app, &l.h.slack);
    let pipeline = "checkout-service";
    let id = until_plan_offered(&l, pipeline).await;

    // The alert, and in its thread the plan with its exact call and buttons.
    let plan_ts = slack_plan(&l, 1).await;
    let alert = top_level(&slack.messages(SLACK_CHANNEL))[0].ts.clone();
    assert_eq!(
        slack
            .messages(SLACK_CHANNEL)
            .iter()
            .find(|m| m.ts == plan_ts)
            .and_then(|m| m.thread_ts.clone()),
        Some(alert)
    );
    let plan = slack
        .messages(SLACK_CHANNEL)
        .into_iter()
        .find(|m| m.ts == plan_ts)
        .unwrap()
        .blocks
        .to_string();
    assert!(plan.contains("RetryStageExecution"), "{plan}");
    assert!(plan.contains("retry-tests"), "{plan}");

    // Someone outside the SRE group: no effect, told so privately.
    let res = slack_post(
        app,
        "/slack/events",
        "application/json",
        reaction("EvIntruder", INTRUDER_SLACK, &plan_ts),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    wait_until("the intruder's explanation", || {
        slack
            .ephemerals()
            .iter()
            .any(|e| e.user == INTRUDER_SLACK && e.text.contains("no effect"))
    })
    .await;
    assert_eq!(status_of(app, id).await, IncidentStatus::AwaitingApproval);
    assert!(l.codepipeline.calls_of("RetryStageExecution").is_empty());

    // The approver: the reaction is redelivered, and the Approve button is
    // pressed too; one call is made.
    for _ in 0..2 {
        let res = slack_post(
            app,
            "/slack/events",
            "application/json",
            reaction("EvApprover", APPROVER_SLACK, &plan_ts),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let mut payload: Value =
        serde_json::from_slice(&crate::chat_support::fixture("slack/block_actions.json")).unwrap();
    let request = app
        .store
        .approval_requests_for_incident(&id.to_string())
        .await
        .unwrap()[0]
        .id;
    payload["user"]["id"] = json!(APPROVER_SLACK);
    payload["container"]["channel_id"] = json!(SLACK_CHANNEL);
    payload["container"]["message_ts"] = json!(plan_ts);
    payload["channel"]["id"] = json!(SLACK_CHANNEL);
    payload["message"]["ts"] = json!(plan_ts);
    payload["actions"][0]["action_id"] = json!("pipemedic_approve");
    payload["actions"][0]["value"] = json!(format!("request:{request}"));
    let form = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let res = slack_post(
        app,
        "/slack/interactions",
        "application/x-www-form-urlencoded",
        form.into_bytes(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    wait_for_status(app, id, IncidentStatus::Verifying).await;
    assert_one_retry(&l, pipeline);
    wait_until("the step's result in the thread", || {
        slack
            .messages(SLACK_CHANNEL)
            .iter()
            .any(|m| m.blocks.to_string().contains("Remediation ran"))
    })
    .await;
    heal_and_check_story(&l, pipeline, id, APPROVER_SLACK, INTRUDER_SLACK).await;
}

/// A signed Discord button press under `message_id` by `user`.
pub(crate) async fn discord_button(
    app: &TestApp,
    interaction_id: &str,
    message_id: &str,
    user: &str,
    custom_id: &str,
) {
    let mut body: Value = serde_json::from_slice(&crate::chat_support::fixture(
        "discord/message_component.json",
    ))
    .unwrap();
    body["id"] = json!(interaction_id);
    body["channel_id"] = json!(DISCORD_CHANNEL);
    body["data"]["custom_id"] = json!(custom_id);
    body["member"]["user"]["id"] = json!(user);
    body["message"]["id"] = json!(message_id);
    body["message"]["channel_id"] = json!(DISCORD_CHANNEL);
    let body = body.to_string().into_bytes();
    let ts = app.clock.now().timestamp().to_string();
    let key = SigningKey::from_bytes(&DISCORD_KEY_SEED);
    let signature = hex::encode(key.sign(&[ts.as_bytes(), &body[..]].concat()).to_bytes());
    let res = app
        .http
        .post(app.url("/discord/interactions"))
        .header("content-type", "application/json")
        .header("x-signature-timestamp", ts)
        .header("x-signature-ed25519", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

async fn discord_approval_heals_a_codepipeline_failure(db: Db) {
    let Some(l) = loop_app(db).await else { return };
    let (app, discord) = (&l.h.app, &l.h.discord);
    let pipeline = "payments-api";
    let id = until_plan_offered(&l, pipeline).await;

    let mut plan_id = String::new();
    let mut custom_id = String::new();
    wait_until("the plan under the alert", || {
        for m in discord.messages(DISCORD_CHANNEL) {
            let payload = m.payload.to_string();
            if payload.contains("pipemedic_approve:request:") {
                plan_id = m.id.clone();
                custom_id = m.payload["components"][0]["components"][0]["custom_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                return payload.contains("RetryStageExecution");
            }
        }
        false
    })
    .await;
    assert!(
        custom_id.starts_with("pipemedic_approve:request:"),
        "{custom_id}"
    );

    // Not an approver: no effect, explained in a direct message.
    discord_button(
        app,
        "900000000000000001",
        &plan_id,
        INTRUDER_DISCORD,
        &custom_id,
    )
    .await;
    wait_until("the intruder's direct message", || {
        discord
            .paths()
            .iter()
            .any(|p| p == "POST /api/v10/users/@me/channels")
    })
    .await;
    assert_eq!(status_of(app, id).await, IncidentStatus::AwaitingApproval);
    assert!(l.codepipeline.calls_of("RetryStageExecution").is_empty());

    // The approver double-clicks (two interactions) and Discord redelivers
    // one of them: one call.
    discord_button(
        app,
        "900000000000000002",
        &plan_id,
        APPROVER_DISCORD,
        &custom_id,
    )
    .await;
    discord_button(
        app,
        "900000000000000002",
        &plan_id,
        APPROVER_DISCORD,
        &custom_id,
    )
    .await;
    discord_button(
        app,
        "900000000000000003",
        &plan_id,
        APPROVER_DISCORD,
        &custom_id,
    )
    .await;
    wait_for_status(app, id, IncidentStatus::Verifying).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_one_retry(&l, pipeline);
    heal_and_check_story(&l, pipeline, id, APPROVER_DISCORD, INTRUDER_DISCORD).await;
}

/// The `n`-th plan card (1-based) posted in Slack, once it is there.
pub(crate) async fn slack_plan(l: &Loop, n: usize) -> String {
    let mut ts = String::new();
    wait_until("a plan card in Slack", || {
        let plans: Vec<String> = l
            .h
            .slack
            .messages(SLACK_CHANNEL)
            .into_iter()
            .filter(|m| m.thread_ts.is_some() && m.blocks.to_string().contains("pipemedic_approve"))
            .map(|m| m.ts)
            .collect();
        match plans.get(n - 1) {
            Some(found) => {
                ts = found.clone();
                true
            }
            None => false,
        }
    })
    .await;
    recorded_as_sent(&l.h.app, "slack", SLACK_CHANNEL, &ts).await;
    ts
}

/// Waits until pipemedic has recorded `ts` as sent (the platform saw the
/// message a moment before pipemedic learned its id).
pub(crate) async fn recorded_as_sent(app: &TestApp, platform: &str, channel: &str, ts: &str) {
    for _ in 0..750 {
        if app
            .store
            .posted_payload(platform, channel, ts)
            .await
            .unwrap()
            .is_some()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("message {ts} never recorded as sent");
}

pub(crate) async fn react(app: &TestApp, event_id: &str, user: &str, ts: &str) {
    let res = slack_post(
        app,
        "/slack/events",
        "application/json",
        reaction(event_id, user, ts),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// Waits for a private explanation to `user` that contains `needle`.
async fn explained(l: &Loop, user: &str, needle: &str) {
    wait_until(
        &format!("an explanation to {user} saying {needle:?}"),
        || {
            l.h.slack
                .ephemerals()
                .iter()
                .any(|e| e.user == user && e.text.contains(needle))
        },
    )
    .await;
}

pub(crate) fn thread_says(l: &Loop, needle: &str) -> bool {
    l.h.slack
        .messages(SLACK_CHANNEL)
        .iter()
        .any(|m| m.thread_ts.is_some() && m.blocks.to_string().contains(needle))
}

async fn a_fix_that_does_not_heal_gets_the_next_plan(db: Db) {
    let Some(l) = loop_app(db).await else { return };
    let app = &l.h.app;
    let pipeline = "checkout-service";
    let id = until_plan_offered(&l, pipeline).await;
    let plan = slack_plan(&l, 1).await;
    react(app, "EvApprove", APPROVER_SLACK, &plan).await;
    wait_for_status(app, id, IncidentStatus::Verifying).await;

    // The next execution fails the same way: not healed, a new plan.
    let second = "4137f7cb-7cf7-4f0f-8b0c-5e0a1c2d3e4f";
    l.codepipeline.add_execution(
        pipeline,
        ExecutionSpec::new(second, "Failed", "2026-11-20T12:00:00Z".parse().unwrap()).action(
            "Test",
            "UnitTests",
            "Failed",
            218,
            430,
        ),
    );
    l.bedrock.reply_with_tool(model_plan());
    failed_execution_at(app, pipeline, second, 12).await;
    let next_plan = slack_plan(&l, 2).await;
    wait_for_status(app, id, IncidentStatus::AwaitingApproval).await;
    assert!(thread_says(&l, "did not heal"));
    let requests = app
        .store
        .approval_requests_for_incident(&id.to_string())
        .await
        .unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].run_id, second);
    assert_eq!(l.bedrock.requests().len(), 2);

    // Approving the new plan retries the new execution: one call each.
    react(app, "EvApprove2", APPROVER_SLACK, &next_plan).await;
    wait_for_status(app, id, IncidentStatus::Verifying).await;
    let retries = l.codepipeline.calls_of("RetryStageExecution");
    let executions: Vec<&str> = retries
        .iter()
        .map(|r| r["pipelineExecutionId"].as_str().unwrap())
        .collect();
    assert_eq!(executions, [EXECUTION, second]);
}

async fn a_decision_its_process_never_acted_on_is_picked_up(db: Db) {
    // A process stored the approver's reaction, then stopped before acting
    // on it: the next sweep acts on it, once.
    let Some(l) = loop_app(db).await else { return };
    let app = &l.h.app;
    let pipeline = "checkout-service";
    let id = until_plan_offered(&l, pipeline).await;
    let plan_ts = slack_plan(&l, 1).await;
    let mut tx = app.store.begin_write().await.unwrap();
    assert!(tx
        .record_decision(
            id,
            "slack",
            "EvStoredThenLost",
            APPROVER_SLACK,
            pipemedic::domain::Choice::Approve,
            pipemedic::domain::Via::Reaction,
            &pipemedic::domain::MessageRef {
                platform: pipemedic::domain::Platform::Slack,
                channel: SLACK_CHANNEL.into(),
                ts_or_id: plan_ts,
                thread: None,
            },
            true,
            app.clock.now(),
        )
        .await
        .unwrap());
    tx.commit().await.unwrap();

    // Too fresh to be called lost: it may still be in the queue.
    app.healing.sweep().await.unwrap();
    assert_eq!(status_of(app, id).await, IncidentStatus::AwaitingApproval);

    app.clock.advance(chrono::Duration::seconds(31));
    app.healing.sweep().await.unwrap();
    wait_for_status(app, id, IncidentStatus::Verifying).await;
    assert_one_retry(&l, pipeline);
    let later = app.clock.now();
    assert!(app
        .store
        .unhandled_decisions(later, 10)
        .await
        .unwrap()
        .is_empty());
    app.healing.sweep().await.unwrap();
    assert_one_retry(&l, pipeline);
}

/// Puts incident `id` back in `status`, as a process that stopped between
/// two steps of the loop would have left it.
async fn left_in(app: &TestApp, id: i64, status: IncidentStatus) {
    let mut tx = app.store.begin_write().await.unwrap();
    assert!(tx
        .set_incident_status(id, status, app.clock.now())
        .await
        .unwrap());
    tx.commit().await.unwrap();
}

async fn incidents_left_between_two_steps_are_moved_on(db: Db) {
    let Some(l) = loop_app(db).await else { return };
    let app = &l.h.app;
    let pipeline = "checkout-service";
    let id = until_plan_offered(&l, pipeline).await;

    // Stopped after offering the plan, before saying it awaits approval:
    // the plan already offered is the one awaited; nothing is drafted again.
    left_in(app, id, IncidentStatus::Planning).await;
    app.healing.sweep().await.unwrap();
    assert_eq!(
        status_of(app, id).await,
        IncidentStatus::Planning,
        "too soon"
    );
    app.clock_advance_minutes(16);
    app.healing.sweep().await.unwrap();
    assert_eq!(status_of(app, id).await, IncidentStatus::AwaitingApproval);
    assert_eq!(l.bedrock.requests().len(), 1);

    // Stopped after the fix ran, before saying so: the steps are reported
    // and the incident verifies.
    let plan = slack_plan(&l, 1).await;
    react(app, "EvApprove", APPROVER_SLACK, &plan).await;
    wait_for_status(app, id, IncidentStatus::Verifying).await;
    left_in(app, id, IncidentStatus::Remediating).await;
    app.clock.advance(chrono::Duration::seconds(61));
    app.healing.sweep().await.unwrap();
    assert_eq!(status_of(app, id).await, IncidentStatus::Verifying);
    assert_one_retry(&l, pipeline);
}

async fn an_incident_left_planning_is_planned_again(db: Db) {
    let Some(l) = loop_app(db).await else { return };
    let app = &l.h.app;
    let pipeline = "checkout-service";
    known_failed_execution(&l, pipeline);
    // Nothing scripted: Bedrock answers 500 and no plan is drafted.
    history(app, pipeline).await;
    failed_execution(app, pipeline).await;
    let id = incident_of(app, pipeline).await;
    // The incident is open before planning starts, too: wait for the
    // failed draft, after which it returns to open.
    wait_for_audit(app, "plan.failed").await;
    wait_for_status(app, id, IncidentStatus::Open).await;
    assert!(app
        .store
        .approval_requests_for_incident(&id.to_string())
        .await
        .unwrap()
        .is_empty());

    // As if the process had stopped while drafting.
    left_in(app, id, IncidentStatus::Planning).await;
    l.bedrock.reply_with_tool(model_plan());
    app.clock_advance_minutes(16);
    app.healing.sweep().await.unwrap();
    assert_eq!(status_of(app, id).await, IncidentStatus::AwaitingApproval);
    assert_eq!(
        app.store
            .approval_requests_for_incident(&id.to_string())
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn unapproved_plans_expire(db: Db) {
    let Some(l) = loop_app(db).await else { return };
    let app = &l.h.app;
    let id = until_plan_offered(&l, "checkout-service").await;
    let plan = slack_plan(&l, 1).await;
    app.clock_advance_minutes(31);
    app.healing.sweep().await.unwrap();
    wait_for_status(app, id, IncidentStatus::Open).await;
    react(app, "EvLate", APPROVER_SLACK, &plan).await;
    explained(&l, APPROVER_SLACK, "expired").await;
    assert!(l.codepipeline.calls_of("RetryStageExecution").is_empty());
    assert_eq!(status_of(app, id).await, IncidentStatus::Open);
}

async fn a_newer_run_makes_the_plan_stale(db: Db) {
    let Some(l) = loop_app(db).await else { return };
    let app = &l.h.app;
    let pipeline = "checkout-service";
    let id = until_plan_offered(&l, pipeline).await;
    let plan = slack_plan(&l, 1).await;
    // The pipeline ran again, normally, before anyone approved.
    let next = normal_run(pipeline, "newer", "2026-11-20T11:00:00Z".parse().unwrap());
    assert_eq!(
        app.post_runs(next.to_string()).await.status(),
        StatusCode::OK
    );
    wait_for_status(app, id, IncidentStatus::Resolved).await;
    wait_until("the stale notice", || {
        thread_says(&l, "can no longer be approved")
    })
    .await;
    react(app, "EvStale", APPROVER_SLACK, &plan).await;
    explained(&l, APPROVER_SLACK, "superseded").await;
    assert!(l.codepipeline.calls_of("RetryStageExecution").is_empty());
    let request = &app
        .store
        .approval_requests_for_incident(&id.to_string())
        .await
        .unwrap()[0];
    assert_eq!(request.status, pipemedic::approvals::RequestStatus::Stale);
}

async fn a_failing_fix_is_reported_not_retried(db: Db) {
    let Some(l) = loop_app(db).await else { return };
    let app = &l.h.app;
    let id = until_plan_offered(&l, "checkout-service").await;
    l.codepipeline
        .fail_next("RetryStageExecution", 400, "StageNotRetryableException");
    let plan = slack_plan(&l, 1).await;
    react(app, "EvApprove", APPROVER_SLACK, &plan).await;
    wait_until("the failure in the thread", || {
        thread_says(&l, "Remediation failed")
    })
    .await;
    wait_for_status(app, id, IncidentStatus::Open).await;
    app.healing.sweep().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(l.codepipeline.calls_of("RetryStageExecution").len(), 1);
    assert!(thread_says(&l, "StageNotRetryable"));
}

async fn automatic_remediation_runs_a_low_risk_fix_without_anyone(db: Db) {
    let playbook = PLAYBOOK.replace(
        r#"approval: { required: 1, from: ["group:sre"] }"#,
        "approval: none",
    );
    let Some(l) = loop_app_with(db, &playbook, |c| c.approvals.auto_remediation = true).await
    else {
        return;
    };
    let app = &l.h.app;
    let pipeline = "checkout-service";
    known_failed_execution(&l, pipeline);
    l.bedrock.reply_with_tool(model_plan());
    history(app, pipeline).await;
    failed_execution(app, pipeline).await;
    let id = incident_of(app, pipeline).await;
    wait_for_status(app, id, IncidentStatus::Verifying).await;
    assert_one_retry(&l, pipeline);
    assert!(app
        .store
        .approval_votes(
            app.store
                .approval_requests_for_incident(&id.to_string())
                .await
                .unwrap()[0]
                .id
        )
        .await
        .unwrap()
        .is_empty());
}

async fn slack_user_group_members_may_approve(db: Db) {
    let Some(l) = loop_app(db).await else { return };
    let app = &l.h.app;
    l.h.slack
        .set_usergroup(SRE_USERGROUP, &["U0ONCALL", "U0LEAD"]);
    l.h.slack.set_usergroup("S0OTHER", &[INTRUDER_SLACK]);
    let id = until_plan_offered(&l, "checkout-service").await;
    let plan = slack_plan(&l, 1).await;
    // In some other group: no effect.
    react(app, "EvOther", INTRUDER_SLACK, &plan).await;
    explained(&l, INTRUDER_SLACK, "no effect").await;
    assert_eq!(status_of(app, id).await, IncidentStatus::AwaitingApproval);
    // In the SRE user group, as Slack says: approved, and run once.
    react(app, "EvOncall", "U0ONCALL", &plan).await;
    wait_for_status(app, id, IncidentStatus::Verifying).await;
    assert_one_retry(&l, "checkout-service");
    assert!(l
        .h
        .slack
        .calls()
        .iter()
        .any(|c| c == "usergroups.users.list"));
}

async fn discord_role_holders_may_approve(db: Db) {
    let Some(l) = loop_app(db).await else { return };
    let (app, discord) = (&l.h.app, &l.h.discord);
    discord.set_roles("555555555555555555", &["1", SRE_ROLE]);
    discord.set_roles(INTRUDER_DISCORD, &["1"]);
    let pipeline = "payments-api";
    let id = until_plan_offered(&l, pipeline).await;
    let mut plan_id = String::new();
    let mut custom_id = String::new();
    wait_until("the plan under the alert", || {
        discord.messages(DISCORD_CHANNEL).into_iter().any(|m| {
            let id = m.payload["components"][0]["components"][0]["custom_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if id.starts_with("pipemedic_approve:request:") {
                plan_id = m.id.clone();
                custom_id = id;
                true
            } else {
                false
            }
        })
    })
    .await;
    recorded_as_sent(app, "discord", DISCORD_CHANNEL, &plan_id).await;
    discord_button(
        app,
        "900000000000000011",
        &plan_id,
        INTRUDER_DISCORD,
        &custom_id,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status_of(app, id).await, IncidentStatus::AwaitingApproval);
    discord_button(
        app,
        "900000000000000012",
        &plan_id,
        "555555555555555555",
        &custom_id,
    )
    .await;
    wait_for_status(app, id, IncidentStatus::Verifying).await;
    assert_one_retry(&l, pipeline);
}

on_both_databases!(
    slack_approval_heals_a_codepipeline_failure,
    discord_approval_heals_a_codepipeline_failure,
    a_fix_that_does_not_heal_gets_the_next_plan,
    a_decision_its_process_never_acted_on_is_picked_up,
    incidents_left_between_two_steps_are_moved_on,
    an_incident_left_planning_is_planned_again,
    unapproved_plans_expire,
    a_newer_run_makes_the_plan_stale,
    a_failing_fix_is_reported_not_retried,
    automatic_remediation_runs_a_low_risk_fix_without_anyone,
    slack_user_group_members_may_approve,
    discord_role_holders_may_approve,
);
