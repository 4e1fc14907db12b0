//! Incidents end to end: scored runs handed to the incident service of a
//! running app, alerts delivered through the durable outbox by the real
//! Slack and Discord clients to their stand-ins, with charts, grouping,
//! silences and outages.

use std::time::Duration;

use pipemedic::chat::slack::verify::sign;
use pipemedic::clock::Clock;
use pipemedic::config::{ChatRoute, Secret};
use pipemedic::domain::{Direction, Expectation, MetricDeviation, ScoredRun, Verdict};
use pipemedic::store::OutboxStatus;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fakes::discord::FakeDiscord;
use crate::fakes::slack::{FakeSlack, SlackMessage};
use crate::helpers::{spawn_app_with_secrets, Db, TestApp, SLACK_SIGNING_SECRET};
use crate::on_both_databases;

pub const SLACK_CHANNEL: &str = "C0ALERTS";
pub const DISCORD_CHANNEL: &str = "772908445358620702";
pub const PIPELINE: &str = "checkout-service";

/// The app with Slack and Discord pointed at their stand-ins: `checkout-*`
/// and everything else to Slack, `payments-*` to Discord.
pub struct ChatHarness {
    pub app: TestApp,
    pub slack: FakeSlack,
    pub discord: FakeDiscord,
}

pub async fn chat_app(db: Db) -> Option<ChatHarness> {
    chat_app_with(db, |_| {}).await
}

/// [`chat_app`] with a chance to adjust the rest of the configuration.
pub async fn chat_app_with(
    db: Db,
    adjust: impl FnOnce(&mut pipemedic::config::Config),
) -> Option<ChatHarness> {
    let slack = FakeSlack::start().await;
    let discord = FakeDiscord::start().await;
    let (slack_url, discord_url) = (slack.api_url(), discord.api_url());
    let app = spawn_app_with_secrets(
        db,
        |c| {
            c.slack.api_url = slack_url;
            c.slack.mode = "events".into();
            c.discord.api_url = discord_url;
            c.discord.gateway = false;
            c.chat.outbox_poll_ms = 20;
            // The person the tests' slash commands come from may change alerting.
            c.chat.admins = vec!["slack:U0PERSON".into()];
            c.chat.routes = vec![
                ChatRoute {
                    pipelines: "payments-*".into(),
                    platform: "discord".into(),
                    channel: DISCORD_CHANNEL.into(),
                    links: Vec::new(),
                },
                ChatRoute {
                    pipelines: "*".into(),
                    platform: "slack".into(),
                    channel: SLACK_CHANNEL.into(),
                    links: Vec::new(),
                },
            ];
            adjust(c);
        },
        |s| {
            s.slack_bot_token = Some(Secret::new("xoxb-test-token"));
            s.discord_token = Some(Secret::new("discord-test-token"));
        },
        None,
    )
    .await?;
    let harness = ChatHarness {
        app,
        slack,
        discord,
    };
    // Both platforms were asked who the bot is before anything else.
    wait_until("bot identities", || {
        harness.slack.calls().iter().any(|c| c == "auth.test")
            && harness
                .discord
                .paths()
                .iter()
                .any(|p| p == "GET /api/v10/users/@me")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    Some(harness)
}

/// Polls `done` every 20 ms for up to 15 s.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    // A generous guard against a hang, not a speed check: loaded CI
    // machines are slow.
    for _ in 0..1500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Top-level messages (not thread replies) of a Slack channel.
pub fn top_level(messages: &[SlackMessage]) -> Vec<SlackMessage> {
    messages
        .iter()
        .filter(|m| m.thread_ts.is_none())
        .cloned()
        .collect()
}

fn run_json(
    pipeline: &str,
    run_id: &str,
    finished: chrono::DateTime<chrono::Utc>,
    secs: i64,
    ok: bool,
) -> Value {
    let started = finished - chrono::Duration::seconds(secs);
    json!({"pipeline": pipeline, "run_id": run_id, "status": if ok { "succeeded" } else { "failed" },
           "started_at": started.to_rfc3339(), "finished_at": finished.to_rfc3339(),
           "commit": format!("c0ffee{run_id}"), "attempt": 1,
           "log_url": format!("https://ci.example.com/{pipeline}/{run_id}/log"),
           "url": format!("https://ci.example.com/{pipeline}/{run_id}")})
}

/// Stores 20 normal runs of `pipeline` over the last days (about 420 s each,
/// one in ten failed).
pub async fn history(app: &TestApp, pipeline: &str) {
    let now = app.clock.now();
    let runs: Vec<Value> = (0..20)
        .map(|i| {
            run_json(
                pipeline,
                &format!("h{i}"),
                now - chrono::Duration::hours(6 * (20 - i) + 1),
                420 + (i % 5) * 4,
                i % 10 != 3,
            )
        })
        .collect();
    let res = app.post_runs(Value::Array(runs).to_string()).await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// Stores one slow run of `pipeline` and returns it scored as abnormal.
pub async fn abnormal(app: &TestApp, pipeline: &str, run_id: &str) -> ScoredRun {
    let now = app.clock.now();
    let body = run_json(
        pipeline,
        run_id,
        now - chrono::Duration::minutes(1),
        910,
        true,
    );
    let res = app.post_runs(body.to_string()).await;
    assert_eq!(res.status(), StatusCode::OK);
    abnormal_scored(app, pipeline, run_id).await
}

pub async fn send(app: &TestApp, scored: ScoredRun) {
    app.incidents
        .sender()
        .send(scored)
        .await
        .expect("incident service running");
}

/// A signed Slack request to one of the inbound routes.
pub async fn slack_post(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    let ts = app.clock.now().timestamp();
    let signature = sign(SLACK_SIGNING_SECRET.as_bytes(), ts, &body);
    app.http
        .post(app.url(path))
        .header("content-type", content_type)
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// A signed `/medic TEXT` slash command; returns Slack's JSON answer.
pub async fn slash(app: &TestApp, text: &str, trigger: &str) -> Value {
    slash_as(app, "U0PERSON", text, trigger).await
}

/// `/medic TEXT` from `user` in the Slack channel.
pub async fn slash_as(app: &TestApp, user: &str, text: &str, trigger: &str) -> Value {
    let form = serde_urlencoded::to_string([
        ("token", "x"),
        ("team_id", "T0001"),
        ("channel_id", SLACK_CHANNEL),
        ("user_id", user),
        ("command", "/medic"),
        ("text", text),
        ("response_url", "https://hooks.slack.com/commands/1/2"),
        ("trigger_id", trigger),
    ])
    .unwrap();
    let res = slack_post(
        app,
        "/slack/commands",
        "application/x-www-form-urlencoded",
        form.into_bytes(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn an_abnormal_run_is_alerted_with_a_chart_on_slack_and_discord(db: Db) {
    let Some(h) = chat_app(db).await else { return };
    history(&h.app, PIPELINE).await;
    history(&h.app, "payments-api").await;
    send(&h.app, abnormal(&h.app, PIPELINE, "r1").await).await;
    send(&h.app, abnormal(&h.app, "payments-api", "p1").await).await;

    wait_until("slack alert and chart", || {
        h.slack.uploads().iter().any(|u| u.completed)
    })
    .await;
    let messages = h.slack.messages(SLACK_CHANNEL);
    assert_eq!(messages.len(), 1, "{messages:?}");
    let alert = &messages[0];
    let text = alert.text.clone().unwrap_or_default();
    assert!(text.contains(PIPELINE) && text.contains("OPEN"), "{text}");
    let blocks = alert.blocks.to_string();
    for expected in [
        "r1",
        "910 vs 428 expected",
        "72%",
        "0.86",
        "c0ffeer1",
        // A URL on a host that is neither pipemedic's nor the CI system's
        // is shown as text, not as a link.
        "ci.example.com/checkout-service/r1/log",
    ] {
        assert!(
            blocks.contains(expected),
            "{expected} missing from {blocks}"
        );
    }
    assert!(!blocks.contains("<https://ci.example.com"), "{blocks}");
    let uploads = h.slack.uploads();
    assert_eq!(uploads.len(), 1);
    assert_eq!(&uploads[0].bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(uploads[0].channel_id.as_deref(), Some(SLACK_CHANNEL));
    assert_eq!(uploads[0].thread_ts.as_deref(), Some(alert.ts.as_str()));
    // The shaded band is what detection expected of the run, not a
    // percentile of the history, and the title says so.
    let title = uploads[0].title.clone().unwrap_or_default();
    assert!(
        title.contains("shaded: the range detection expected of this run"),
        "{title}"
    );

    wait_until("discord alert and chart", || {
        h.discord.messages(DISCORD_CHANNEL).len() >= 2
    })
    .await;
    let on_discord = h.discord.messages(DISCORD_CHANNEL);
    assert_eq!(on_discord.len(), 2);
    let embed = &on_discord[0].payload["embeds"][0];
    assert!(
        embed["title"].as_str().unwrap().contains("payments-api"),
        "{embed}"
    );
    assert_eq!(on_discord[1].files.len(), 1);
    assert_eq!(&on_discord[1].files[0].bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(
        on_discord[1].payload["message_reference"]["message_id"],
        on_discord[0].id
    );

    // The incidents and their alert references are stored; the outbox is drained.
    let incidents = h.app.store.incidents(true, None, 10).await.unwrap();
    assert_eq!(incidents.len(), 2);
    assert!(incidents.iter().all(|i| i.root_ref.is_some()));
    // (the platform may have the message a moment before the row is marked)
    let mut outbox = Vec::new();
    for _ in 0..100 {
        outbox = h.app.store.outbox(None).await.unwrap();
        if outbox.iter().all(|r| r.status == OutboxStatus::Sent) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        outbox.iter().all(|r| r.status == OutboxStatus::Sent),
        "{outbox:?}"
    );
    let audit = h
        .app
        .store
        .audit_since(h.app.clock.now() - chrono::Duration::days(1))
        .await
        .unwrap();
    assert_eq!(
        audit.iter().filter(|a| a.kind == "incident.opened").count(),
        2
    );
}

async fn ten_abnormal_runs_in_a_row_are_one_incident_and_one_alert(db: Db) {
    let Some(h) = chat_app(db).await else { return };
    history(&h.app, PIPELINE).await;
    for i in 0..10 {
        let mut scored = abnormal(&h.app, PIPELINE, &format!("r{i}")).await;
        // A verdict scored before expectations were kept: the chart falls
        // back to the history's percentiles.
        scored.verdict.expected.clear();
        send(&h.app, scored).await;
        h.app.clock_advance_minutes(10);
    }
    wait_until("nine updates", || {
        top_level(&h.slack.messages(SLACK_CHANNEL))
            .first()
            .is_some_and(|m| m.updates == 9)
    })
    .await;
    let messages = h.slack.messages(SLACK_CHANNEL);
    let top = top_level(&messages);
    assert_eq!(top.len(), 1, "one alert: {top:?}");
    let uploads = h.slack.uploads();
    assert_eq!(uploads.len(), 1, "one chart");
    let title = uploads[0].title.clone().unwrap_or_default();
    assert!(
        title.contains("shaded: 5th to 95th percentile of the earlier runs"),
        "{title}"
    );
    assert!(top[0].blocks.to_string().contains("10 abnormal runs"));
    assert!(messages
        .iter()
        .filter(|m| m.thread_ts.is_some())
        .all(|m| m.thread_ts.as_deref() == Some(top[0].ts.as_str())));
    let incidents = h.app.store.incidents(false, None, 10).await.unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].run_count, 10);

    // The same run handed over again changes nothing.
    let again = abnormal(&h.app, PIPELINE, "r9").await;
    assert_eq!(
        h.app.incidents.handle(again).await.unwrap(),
        pipemedic::incidents::Handled::Ignored
    );

    // Past the grouping window, a new abnormal run is a new incident.
    h.app.clock_advance_minutes(7 * 60);
    send(&h.app, abnormal(&h.app, PIPELINE, "later").await).await;
    wait_until("second alert", || {
        top_level(&h.slack.messages(SLACK_CHANNEL)).len() == 2
    })
    .await;
    assert_eq!(
        h.app.store.incidents(false, None, 10).await.unwrap().len(),
        2
    );
}

async fn status_changes_edit_the_alert_and_go_in_its_thread(db: Db) {
    let Some(h) = chat_app(db).await else { return };
    history(&h.app, PIPELINE).await;
    send(&h.app, abnormal(&h.app, PIPELINE, "r1").await).await;
    wait_until("alert", || !h.slack.messages(SLACK_CHANNEL).is_empty()).await;
    let id = h.app.store.incidents(true, None, 1).await.unwrap()[0].id;
    use pipemedic::domain::IncidentStatus;
    h.app
        .incidents
        .set_status(
            id,
            IncidentStatus::Planning,
            Some("drafting a plan"),
            "pipemedic",
        )
        .await
        .unwrap();
    h.app
        .incidents
        .set_status(
            id,
            IncidentStatus::Resolved,
            Some("the next run was normal"),
            "pipemedic",
        )
        .await
        .unwrap();
    wait_until("resolved line", || {
        h.slack
            .messages(SLACK_CHANNEL)
            .iter()
            .any(|m| m.blocks.to_string().contains("the next run was normal"))
    })
    .await;
    let root = &top_level(&h.slack.messages(SLACK_CHANNEL))[0];
    assert!(
        root.text.as_deref().unwrap_or("").contains("RESOLVED"),
        "{root:?}"
    );
    assert_eq!(root.updates, 2);
    let messages = h.slack.messages(SLACK_CHANNEL);
    let lines: Vec<String> = messages
        .iter()
        .filter(|m| m.thread_ts.is_some())
        .map(|m| m.blocks.to_string())
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("drafting a plan")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("the next run was normal")),
        "{lines:?}"
    );
    assert!(h
        .app
        .store
        .incidents(true, None, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn an_outage_loses_nothing_and_keeps_the_order(db: Db) {
    let Some(h) = chat_app(db).await else { return };
    let pipelines = ["alpha-svc", "beta-svc", "gamma-svc"];
    for p in pipelines {
        history(&h.app, p).await;
    }
    // Slack is down: two 500s, then a 429 asking for one second.
    h.slack.fail_next(2, 500);
    h.slack.rate_limit_next(1);
    for p in pipelines {
        send(&h.app, abnormal(&h.app, p, "bad").await).await;
    }
    // Ingestion goes on meanwhile.
    let started = std::time::Instant::now();
    history(&h.app, "delta-svc").await;
    assert!(started.elapsed() < Duration::from_secs(5));

    // Time passes (the outbox waits on the app's clock, not on a sleep).
    let mut rounds = 0;
    loop {
        let outbox = h.app.store.outbox(Some("slack")).await.unwrap();
        if outbox.len() == 6 && outbox.iter().all(|r| r.status == OutboxStatus::Sent) {
            break;
        }
        rounds += 1;
        assert!(
            rounds < 300,
            "not delivered: {:?}",
            h.app.store.outbox(None).await.unwrap()
        );
        h.app.clock.advance(chrono::Duration::seconds(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let top = top_level(&h.slack.messages(SLACK_CHANNEL));
    assert_eq!(top.len(), 3, "each alert exactly once: {top:?}");
    for (message, pipeline) in top.iter().zip(pipelines) {
        assert!(
            message.text.as_deref().unwrap().contains(pipeline),
            "order: {top:?}"
        );
    }
    let uploads: Vec<_> = h
        .slack
        .uploads()
        .into_iter()
        .filter(|u| u.completed)
        .collect();
    assert_eq!(uploads.len(), 3);
    for (upload, message) in uploads.iter().zip(&top) {
        assert_eq!(upload.thread_ts.as_deref(), Some(message.ts.as_str()));
    }
    let outbox = h.app.store.outbox(Some("slack")).await.unwrap();
    assert!(outbox.iter().all(|r| r.status == OutboxStatus::Sent));
    assert_eq!(
        outbox[0].attempts, 4,
        "two outages, one rate limit, one success"
    );
}

async fn discord_outages_and_rate_limits_are_waited_out_in_order(db: Db) {
    let Some(h) = chat_app(db).await else { return };
    let pipelines = ["payments-api", "payments-web"];
    for p in pipelines {
        history(&h.app, p).await;
    }
    h.discord.fail_next(1, 502);
    h.discord.rate_limit_next(1.5);
    for p in pipelines {
        send(&h.app, abnormal(&h.app, p, "bad").await).await;
    }
    let mut rounds = 0;
    loop {
        let outbox = h.app.store.outbox(Some("discord")).await.unwrap();
        if outbox.len() == 4 && outbox.iter().all(|r| r.status == OutboxStatus::Sent) {
            break;
        }
        rounds += 1;
        assert!(rounds < 300, "not delivered: {outbox:?}");
        h.app.clock.advance(chrono::Duration::seconds(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let messages = h.discord.messages(DISCORD_CHANNEL);
    assert_eq!(messages.len(), 4, "each message once: {messages:?}");
    for (i, pipeline) in pipelines.iter().enumerate() {
        let alert = &messages[2 * i];
        let chart = &messages[2 * i + 1];
        let title = alert.payload["embeds"][0]["title"].as_str().unwrap();
        assert!(title.contains(pipeline), "order: {title}");
        assert_eq!(chart.files.len(), 1);
        assert_eq!(chart.payload["message_reference"]["message_id"], alert.id);
    }
    let outbox = h.app.store.outbox(Some("discord")).await.unwrap();
    assert_eq!(outbox[0].attempts, 3, "an outage, a rate limit, a success");
}

async fn a_silenced_pipeline_records_but_does_not_post(db: Db) {
    let Some(h) = chat_app(db).await else { return };
    history(&h.app, PIPELINE).await;
    let answer = slash(&h.app, "silence checkout-* 2h", "trig-silence").await;
    assert!(
        answer["text"].as_str().unwrap().contains("Silenced"),
        "{answer}"
    );
    send(&h.app, abnormal(&h.app, PIPELINE, "r1").await).await;
    let mut incidents = Vec::new();
    for _ in 0..100 {
        incidents = h.app.store.incidents(true, None, 10).await.unwrap();
        if !incidents.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(incidents.len(), 1);
    assert!(incidents[0].silenced);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(h.slack.messages(SLACK_CHANNEL).is_empty());
    assert!(h.app.store.outbox(None).await.unwrap().is_empty());

    // Unsilenced, the next incident is posted again.
    let answer = slash(&h.app, "unsilence checkout-*", "trig-unsilence").await;
    assert!(
        answer["text"]
            .as_str()
            .unwrap()
            .contains("no longer silenced"),
        "{answer}"
    );
    h.app.clock_advance_minutes(7 * 60);
    send(&h.app, abnormal(&h.app, PIPELINE, "r2").await).await;
    wait_until("alert after unsilence", || {
        !h.slack.messages(SLACK_CHANNEL).is_empty()
    })
    .await;
    let audit = h
        .app
        .store
        .audit_since(h.app.clock.now() - chrono::Duration::days(1))
        .await
        .unwrap();
    assert!(audit.iter().any(|a| a.kind == "chat.silence"));
    assert!(audit.iter().any(|a| a.kind == "chat.unsilence"));
}

/// Every string inside a JSON value.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        Value::Object(o) => o.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// A run whose names, ids, commit and URLs try to mention everyone and to
/// plant links.
async fn hostile_abnormal(app: &TestApp, pipeline: &str) -> ScoredRun {
    let now = app.clock.now();
    let run_id = "r1 <@U123> [click](http://evil.example)";
    let body = json!({
        "pipeline": pipeline, "run_id": run_id, "status": "failed",
        "started_at": (now - chrono::Duration::minutes(16)).to_rfc3339(),
        "finished_at": (now - chrono::Duration::minutes(1)).to_rfc3339(),
        "stage": "<!here> *bold* `code` &lt;!channel&gt;",
        "commit": "<!channel>",
        "commit_message": "@everyone <@&42> <#C1> [x](http://evil.example)",
        "url": "http://evil.example/run",
        "log_url": "https://github.com/octo-org/octo-repo/actions/runs/1",
    });
    let res = app.post_runs(body.to_string()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut scored = abnormal_scored(app, pipeline, run_id).await;
    scored.verdict.deviations[0].metric = "@everyone_[x](http://evil.example)".into();
    scored
}

/// The stored run `run_id` of `pipeline`, scored as abnormal.
async fn abnormal_scored(app: &TestApp, pipeline: &str, run_id: &str) -> ScoredRun {
    let stored = app
        .store
        .get_run(pipeline, run_id, 1)
        .await
        .unwrap()
        .expect("run stored");
    ScoredRun {
        run_pk: stored.pk,
        run: stored.run,
        verdict: Verdict {
            score: 3.4,
            grade: 0.86,
            warming_up: false,
            deviations: vec![MetricDeviation {
                metric: "duration_s".into(),
                observed: 910.0,
                expected: 428.0,
                direction: Direction::Up,
                attribution: 0.72,
                dismissed: None,
            }],
            anomaly_id: None,
            expected: vec![Expectation {
                metric: "duration_s".into(),
                usual: 428.0,
                low: 380.0,
                high: 476.0,
            }],
            ..Default::default()
        },
    }
}

/// No live mention and no live link but the CI system's.
fn assert_inert(platform: &str, text: &str) {
    for bad in ["<!", "<@", "<#", "@everyone", "@here", "@channel"] {
        for (i, _) in text.match_indices(bad) {
            assert!(
                platform == "discord" && i > 0 && text.as_bytes()[i - 1] == b'\\',
                "{platform}: live {bad:?} in {text:?}"
            );
        }
    }
    for marker in ["<http", "](http"] {
        for (i, _) in text.match_indices(marker) {
            let url = text[i..].trim_start_matches(['<', ']', '(']);
            if url.starts_with("http://") || url.starts_with("https://") {
                assert!(
                    url.starts_with("https://github.com/"),
                    "{platform}: live link in {text:?}"
                );
            }
        }
    }
    assert!(
        !text.contains("http://evil"),
        "{platform}: auto-linkable URL in {text:?}"
    );
}

async fn hostile_run_fields_reach_chat_as_inert_text(db: Db) {
    let Some(h) = chat_app(db).await else { return };
    let to_slack = "checkout-<!channel> @everyone [click](http://evil.example)";
    let to_discord = "payments-<@U123> @here <@&42> <@!7> [click](http://evil.example)";
    send(&h.app, hostile_abnormal(&h.app, to_slack).await).await;
    send(&h.app, hostile_abnormal(&h.app, to_discord).await).await;
    wait_until("both alerts", || {
        !h.slack.messages(SLACK_CHANNEL).is_empty()
            && !h.discord.messages(DISCORD_CHANNEL).is_empty()
    })
    .await;

    let alert = &h.slack.messages(SLACK_CHANNEL)[0];
    let mut texts = vec![alert.text.clone().unwrap_or_default()];
    strings(&alert.blocks, &mut texts);
    for t in &texts {
        assert_inert("slack", t);
    }
    let blocks = alert.blocks.to_string();
    assert!(
        blocks.contains("<https://github.com/octo-org/octo-repo/actions/runs/1|logs>"),
        "the CI system's link stays live: {blocks}"
    );
    assert!(blocks.contains("&amp;lt;!channel&amp;gt;"), "{blocks}");

    let post = &h.discord.messages(DISCORD_CHANNEL)[0];
    let mut texts = Vec::new();
    strings(&post.payload["embeds"], &mut texts);
    strings(&post.payload["content"], &mut texts);
    for t in &texts {
        assert_inert("discord", t);
    }
    assert_eq!(
        post.payload["allowed_mentions"]["parse"],
        json!([]),
        "{}",
        post.payload
    );
    let embed = post.payload["embeds"][0].to_string();
    assert!(
        embed.contains("[logs](https://github.com/octo-org/octo-repo/actions/runs/1)"),
        "{embed}"
    );
}

on_both_databases!(
    hostile_run_fields_reach_chat_as_inert_text,
    an_abnormal_run_is_alerted_with_a_chart_on_slack_and_discord,
    ten_abnormal_runs_in_a_row_are_one_incident_and_one_alert,
    status_changes_edit_the_alert_and_go_in_its_thread,
    an_outage_loses_nothing_and_keeps_the_order,
    discord_outages_and_rate_limits_are_waited_out_in_order,
    a_silenced_pipeline_records_but_does_not_post,
    runs_posted_to_the_api_end_in_one_alert_per_platform,
);

/// The whole path: runs posted to the API are scored, the abnormal one opens
/// an incident, and one alert with its chart reaches each platform.
async fn runs_posted_to_the_api_end_in_one_alert_per_platform(db: Db) {
    let Some(h) = chat_app(db).await else { return };
    for pipeline in [PIPELINE, "payments-api"] {
        let runs: Vec<Value> = (0..100)
            .map(|i| crate::detection::run_json(pipeline, i, 420.0, u64::from(i % 3)))
            .collect();
        let res = h.app.post_runs(Value::Array(runs).to_string()).await;
        assert_eq!(res.status(), StatusCode::OK);
        let res = h
            .app
            .post_runs(crate::detection::run_json(pipeline, 100, 1400.0, 200).to_string())
            .await;
        let body: Value = res.json().await.unwrap();
        assert!(
            body["runs"][0]["verdict"]["grade"].as_f64().unwrap() > 0.0,
            "{body}"
        );
    }
    wait_until("slack alert with chart", || {
        h.slack.uploads().iter().any(|u| u.completed)
    })
    .await;
    wait_until("discord alert with chart", || {
        h.discord.messages(DISCORD_CHANNEL).len() >= 2
    })
    .await;
    let slack = h.slack.messages(SLACK_CHANNEL);
    assert_eq!(slack.len(), 1, "one alert: {slack:?}");
    assert!(slack[0].text.clone().unwrap_or_default().contains(PIPELINE));
    let discord = h.discord.messages(DISCORD_CHANNEL);
    assert!(
        discord[0].payload.to_string().contains("payments-api"),
        "{discord:?}"
    );
    assert_eq!(discord.iter().filter(|m| !m.files.is_empty()).count(), 1);
    let open = h.app.store.count_active_incidents(PIPELINE).await.unwrap();
    assert_eq!(open, 1);

    // The incident API tells the story.
    let list: Value = h
        .app
        .http
        .get(
            h.app
                .url("/v1/incidents?active=true&pipeline=checkout-service"),
        )
        .bearer_auth(crate::helpers::READ_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let incidents = list["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{list}");
    let id = incidents[0]["id"].as_i64().unwrap();
    let detail: Value = h
        .app
        .http
        .get(h.app.url(&format!("/v1/incidents/{id}")))
        .bearer_auth(crate::helpers::READ_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = detail["story"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"anomaly.detected") && kinds.contains(&"incident.opened"),
        "{kinds:?}"
    );
    assert_eq!(detail["anomaly"]["first_run_id"], "r100");
    let missing = h
        .app
        .http
        .get(h.app.url("/v1/incidents/999999"))
        .bearer_auth(crate::helpers::READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}
