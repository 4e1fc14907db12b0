//! Approvers are real identities, end to end: a failed GitHub workflow run
//! or GitLab pipeline (the recorded payloads) becomes an incident with a
//! plan in chat; votes are matched against the commit author's email and
//! CI login through the Slack profile email (`users.info` at the Slack
//! stand-in) and `approvals.identities` (the only source on Discord). The
//! author is refused with the reason in the thread; so is a voter nobody
//! can identify, unless `approvals.unknown_identity = "allow"`.

use pipemedic::domain::IncidentStatus;
use pipemedic::ingest::signature::sign_github;
use serde_json::{json, Value};

use crate::healing::{
    discord_button, history, incident_of, loop_app_with, react, slack_plan, status_of, thread_says,
    wait_for_status, Loop, APPROVER_DISCORD, APPROVER_SLACK, INTRUDER_DISCORD,
};
use crate::helpers::{Db, TestApp, GITHUB_SECRET, GITLAB_TOKEN};
use crate::incidents::{wait_until, DISCORD_CHANNEL};
use crate::on_both_databases;

const GH_RUN: &str = include_str!("../fixtures/github/workflow_run-completed-failure.json");
const GL_PIPELINE: &str = include_str!("../fixtures/gitlab/pipeline-failed.json");

/// Any failed run: run `true` once, with one approval from anyone.
const SHELL_PLAYBOOK: &str = r#"---
id: failed-run
title: Run the team's check after a failed run
when:
  - { status: failed }
actions:
  - id: check
    uses: shell
    with: { argv: ["/bin/true"] }
    risk: low
    approval: { required: 1 }
    description: Run the check.
---
# Failed run

Run the check.
"#;

fn shell_plan() -> Value {
    json!({"summary": "The run failed; run the check.",
           "suspected_cause": "A slow test job.",
           "confidence": 0.6, "risk": "low",
           "steps": [{"playbook": "failed-run", "action": "check", "params": {},
                      "why": "The check settles it."}]})
}

async fn shell_loop(db: Db, adjust: impl FnOnce(&mut pipemedic::config::Config)) -> Option<Loop> {
    let l = loop_app_with(db, SHELL_PLAYBOOK, adjust).await?;
    l.bedrock.reply_with_tool(shell_plan());
    Some(l)
}

/// The recorded GitHub `workflow_run` failure (author "Mona Lisa"
/// <mona@example.com>, started by `octocat`) after a normal history:
/// returns the incident, once its plan awaits approval.
async fn github_failure(app: &TestApp) -> i64 {
    let pipeline = "octo-org/octo-repo/test";
    history(app, pipeline).await;
    let res = app
        .http
        .post(app.url("/v1/webhooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "workflow_run")
        .header("x-github-delivery", "delivery-identities-1")
        .header(
            "x-hub-signature-256",
            sign_github(GITHUB_SECRET.as_bytes(), GH_RUN.as_bytes()),
        )
        .body(GH_RUN)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let id = incident_of(app, pipeline).await;
    wait_for_status(app, id, IncidentStatus::AwaitingApproval).await;
    id
}

/// The recorded GitLab pipeline failure (commit by "User"
/// <user@gitlab.com>, started by `root`) as project `project` after a
/// normal history: returns the incident, once its plan awaits approval.
async fn gitlab_failure(app: &TestApp, project: &str) -> i64 {
    history(app, project).await;
    let body = GL_PIPELINE.replace("gitlab-org/gitlab-test", project);
    let res = app
        .http
        .post(app.url("/v1/webhooks/gitlab"))
        .header("x-gitlab-token", GITLAB_TOKEN)
        .header("x-gitlab-event", "Pipeline Hook")
        .header("x-gitlab-event-uuid", "uuid-identities-1")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let id = incident_of(app, project).await;
    wait_for_status(app, id, IncidentStatus::AwaitingApproval).await;
    id
}

async fn thread_said(l: &Loop, needle: &str) {
    wait_until(&format!("the thread saying {needle:?}"), || {
        thread_says(l, needle)
    })
    .await;
}

async fn github_author_cannot_approve_their_own_fix_through_slack(db: Db) {
    let Some(l) = shell_loop(db, |_| {}).await else {
        return;
    };
    let (app, slack) = (&l.h.app, &l.h.slack);
    // The approver's Slack profile has the author's email (other case).
    slack.set_email(APPROVER_SLACK, "Mona@Example.com");
    slack.set_email("U0DANA", "dana@example.com");
    let id = github_failure(app).await;
    let plan = slack_plan(&l, 1).await;

    react(app, "EvMona", APPROVER_SLACK, &plan).await;
    thread_said(
        &l,
        "the author of the commit cannot approve or reject its remediation",
    )
    .await;
    assert!(slack.calls().iter().any(|c| c == "users.info"));
    assert_eq!(status_of(app, id).await, IncidentStatus::AwaitingApproval);

    // Someone else, known by their profile email: counted, and it runs.
    react(app, "EvDana", "U0DANA", &plan).await;
    wait_for_status(app, id, IncidentStatus::Verifying).await;
    let votes = app
        .store
        .approval_votes(
            app.store
                .approval_requests_for_incident(&id.to_string())
                .await
                .unwrap()[0]
                .id,
        )
        .await
        .unwrap();
    let effective: Vec<(String, bool)> = votes
        .iter()
        .map(|v| (v.vote.approver.user.clone(), v.effective))
        .collect();
    assert_eq!(
        effective,
        [
            (APPROVER_SLACK.to_string(), false),
            ("U0DANA".to_string(), true)
        ]
    );
}

async fn gitlab_login_and_unknown_voters_are_refused_in_the_thread(db: Db) {
    let Some(l) = shell_loop(db, |c| {
        c.approvals
            .identities
            .insert("slack:U0ROOT".into(), vec!["root".into()]);
    })
    .await
    else {
        return;
    };
    let app = &l.h.app;
    let id = gitlab_failure(app, "gitlab-org/gitlab-test").await;
    let plan = slack_plan(&l, 1).await;

    // `root` started the pipeline: the configured login matches.
    react(app, "EvRoot", "U0ROOT", &plan).await;
    thread_said(&l, "the author of the commit cannot approve").await;

    // No profile email, no configured identity: refused, said in the thread.
    react(app, "EvNobody", "U0NOBODY", &plan).await;
    thread_said(&l, "could not tell who slack:U0NOBODY is").await;
    assert_eq!(status_of(app, id).await, IncidentStatus::AwaitingApproval);
}

async fn unknown_voters_count_when_the_switch_allows_them(db: Db) {
    let Some(l) = shell_loop(db, |c| {
        c.approvals.unknown_identity = pipemedic::config::UnknownIdentity::Allow;
    })
    .await
    else {
        return;
    };
    let app = &l.h.app;
    let id = gitlab_failure(app, "gitlab-org/gitlab-test").await;
    let plan = slack_plan(&l, 1).await;
    react(app, "EvNobody", "U0NOBODY", &plan).await;
    wait_for_status(app, id, IncidentStatus::Verifying).await;
    assert!(!thread_says(&l, "could not tell who"));
}

async fn discord_voters_are_known_through_configured_identities(db: Db) {
    let Some(l) = shell_loop(db, |c| {
        c.approvals.identities.insert(
            format!("discord:{APPROVER_DISCORD}"),
            vec!["USER@gitlab.com".into()],
        );
        c.approvals.identities.insert(
            format!("discord:{INTRUDER_DISCORD}"),
            vec!["sam@example.com".into(), "sam".into()],
        );
    })
    .await
    else {
        return;
    };
    let (app, discord) = (&l.h.app, &l.h.discord);
    // `payments-*` pipelines are routed to Discord.
    let id = gitlab_failure(app, "payments-org/gitlab-test").await;
    let mut plan_id = String::new();
    let mut custom_id = String::new();
    wait_until("the plan in Discord", || {
        for m in discord.messages(DISCORD_CHANNEL) {
            if m.payload.to_string().contains("pipemedic_approve:request:") {
                plan_id = m.id.clone();
                custom_id = m.payload["components"][0]["components"][0]["custom_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                return true;
            }
        }
        false
    })
    .await;

    // Mapped to the commit's email: the author, refused in the thread.
    discord_button(
        app,
        "910000000000000001",
        &plan_id,
        APPROVER_DISCORD,
        &custom_id,
    )
    .await;
    wait_until("the refusal in Discord", || {
        discord.messages(DISCORD_CHANNEL).iter().any(|m| {
            m.payload
                .to_string()
                .contains("the author of the commit cannot approve")
        })
    })
    .await;
    assert_eq!(status_of(app, id).await, IncidentStatus::AwaitingApproval);

    // Mapped to someone else: counted.
    discord_button(
        app,
        "910000000000000002",
        &plan_id,
        INTRUDER_DISCORD,
        &custom_id,
    )
    .await;
    wait_for_status(app, id, IncidentStatus::Verifying).await;
}

on_both_databases!(
    github_author_cannot_approve_their_own_fix_through_slack,
    gitlab_login_and_unknown_voters_are_refused_in_the_thread,
    unknown_voters_count_when_the_switch_allows_them,
    discord_voters_are_known_through_configured_identities,
);
