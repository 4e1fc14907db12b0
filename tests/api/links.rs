//! Links on alert cards end to end: a chat route's link templates (a
//! Grafana dashboard with the incident's time window) on the alert, and a
//! playbook's (its runbook) on the plan that uses it, with the incident's
//! facts filled in and encoded, as Slack URL buttons and Discord link
//! buttons.

use pipemedic::domain::LinkTemplate;

use crate::healing::{loop_app_with, until_plan_offered, Loop, PLAYBOOK};
use crate::helpers::Db;
use crate::incidents::{wait_until, DISCORD_CHANNEL, SLACK_CHANNEL};
use crate::on_both_databases;

const DASHBOARD: &str = "https://grafana.example/d/ci-runs?var-pipeline={{pipeline}}&var-incident={{incident}}&from={{from_ms}}&to={{to_ms}}";
const RUNBOOK: &str =
    "https://wiki.example/runbooks/failed-test-stage?pipeline={{pipeline}}&stage={{stage}}";

/// The loop with a dashboard link on every route and a runbook link in the
/// team's playbook.
async fn linked_app(db: Db) -> Option<Loop> {
    let playbook = PLAYBOOK.replace(
        "actions:\n",
        &format!("links:\n  - {{ label: Runbook, url: \"{RUNBOOK}\" }}\nactions:\n"),
    );
    loop_app_with(db, &playbook, |c| {
        for route in &mut c.chat.routes {
            route.links = vec![LinkTemplate {
                label: "Dashboard".into(),
                url: DASHBOARD.into(),
            }];
        }
    })
    .await
}

/// The dashboard URL pipemedic should have made for incident `id`.
async fn expected_dashboard(l: &Loop, id: i64) -> String {
    let incident = l.h.app.store.incident(id).await.unwrap().unwrap();
    let run = &incident.latest_run;
    let from = run.started_at.unwrap() - chrono::Duration::hours(1);
    let to = run.finished_at.unwrap() + chrono::Duration::minutes(15);
    format!(
        "https://grafana.example/d/ci-runs?var-pipeline={}&var-incident={id}&from={}&to={}",
        urlencoding::encode(&incident.pipeline),
        from.timestamp_millis(),
        to.timestamp_millis()
    )
}

async fn slack_alerts_and_plans_carry_their_links(db: Db) {
    let Some(l) = linked_app(db).await else {
        return;
    };
    let id = until_plan_offered(&l, "checkout-service").await;
    let dashboard = expected_dashboard(&l, id).await;
    let url_buttons = |m: &crate::fakes::slack::SlackMessage| -> Vec<(String, String)> {
        m.blocks
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["block_id"] == "pipemedic_links")
            .flat_map(|b| b["elements"].as_array().cloned().unwrap_or_default())
            .map(|e| {
                (
                    e["text"]["text"].as_str().unwrap_or_default().to_string(),
                    e["url"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    wait_until("the plan with its runbook link", || {
        l.h.slack
            .messages(SLACK_CHANNEL)
            .iter()
            .any(|m| m.thread_ts.is_some() && !url_buttons(m).is_empty())
    })
    .await;
    let messages = l.h.slack.messages(SLACK_CHANNEL);
    let alert = messages.iter().find(|m| m.thread_ts.is_none()).unwrap();
    assert_eq!(url_buttons(alert), [("Dashboard".to_string(), dashboard)]);
    let plan = messages
        .iter()
        .find(|m| m.thread_ts.is_some() && m.blocks.to_string().contains("pipemedic_approve"))
        .unwrap();
    assert_eq!(
        url_buttons(plan),
        [(
            "Runbook".to_string(),
            "https://wiki.example/runbooks/failed-test-stage?pipeline=checkout-service&stage=Test"
                .to_string()
        )]
    );
}

async fn discord_alerts_carry_link_buttons(db: Db) {
    let Some(l) = linked_app(db).await else {
        return;
    };
    let id = until_plan_offered(&l, "payments-api").await;
    let dashboard = expected_dashboard(&l, id).await;
    let mut found = None;
    wait_until("the alert's link button", || {
        found =
            l.h.discord
                .messages(DISCORD_CHANNEL)
                .into_iter()
                .flat_map(|m| {
                    m.payload["components"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                })
                .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
                .find(|c| c["style"] == 5 && c["label"] == "Dashboard");
        found.is_some()
    })
    .await;
    let button = found.unwrap();
    assert_eq!(button["url"], dashboard.as_str());
    assert!(button.get("custom_id").is_none());
}

on_both_databases!(
    slack_alerts_and_plans_carry_their_links,
    discord_alerts_carry_link_buttons,
);
