//! Chat commands and decisions end to end: signed Slack requests to the
//! running app, answered by pipemedic's own chat service with the same
//! numbers as the HTTP API; reactions on an alert stored once.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fakes::slack::BOT_USER_ID;
use crate::helpers::{Db, TestApp, READ_TOKEN};
use crate::incidents::{
    abnormal, chat_app, history, send, slack_post, slash, top_level, wait_until, PIPELINE,
    SLACK_CHANNEL,
};
use crate::on_both_databases;

async fn health_json(app: &TestApp, pipeline: &str) -> Value {
    let res = app
        .http
        .get(app.url(&format!("/v1/pipelines/{pipeline}/health")))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn medic_health_answers_with_the_apis_numbers(db: Db) {
    let Some(h) = chat_app(db).await else { return };
    history(&h.app, PIPELINE).await;
    let api = health_json(&h.app, PIPELINE).await;
    let answer = slash(&h.app, "health checkout-service", "trig-health").await;
    let text = answer["text"].as_str().unwrap();
    let success = format!("{:.1}%", api["success_rate_7d"].as_f64().unwrap() * 100.0);
    let p95 = format!("{:.1}s", api["duration_p95_s_7d"].as_f64().unwrap());
    assert!(text.contains(&success), "{success} not in {text}");
    assert!(text.contains(&p95), "{p95} not in {text}");
    assert!(
        text.contains(&format!("{} in 7d", api["runs_7d"])),
        "{text}"
    );
    // ... with a chart in the channel.
    wait_until("health chart", || {
        h.slack.uploads().iter().any(|u| u.completed)
    })
    .await;
    assert_eq!(
        h.slack.uploads()[0].channel_id.as_deref(),
        Some(SLACK_CHANNEL)
    );

    let unknown = slash(&h.app, "health nowhere", "trig-h2").await;
    assert!(unknown["text"].as_str().unwrap().contains("No runs stored"));
}

/// Sends the recorded Discord `/medic health checkout-service` interaction.
async fn discord_health(app: &TestApp) -> Value {
    use ed25519_dalek::{Signer, SigningKey};
    let body = crate::chat_support::fixture("discord/application_command.json");
    let ts = {
        use pipemedic::clock::Clock;
        app.clock.now().timestamp().to_string()
    };
    let key = SigningKey::from_bytes(&crate::helpers::DISCORD_KEY_SEED);
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
    res.json().await.unwrap()
}

async fn discord_medic_health_answers_with_the_apis_numbers(db: Db) {
    // The Discord channel gets payments-*; checkout-service is Slack's.
    let Some(h) = chat_app(db).await else { return };
    history(&h.app, PIPELINE).await;
    let refused = discord_health(&h.app).await.to_string();
    assert!(
        refused.contains("`checkout-service` is not visible here."),
        "{refused}"
    );
    drop(h);

    // Opened, the channel sees it with the API's numbers.
    let Some(h) = crate::incidents::chat_app_with(db, |c| {
        c.chat.open_channels = vec![crate::incidents::DISCORD_CHANNEL.into()];
    })
    .await
    else {
        return;
    };
    history(&h.app, PIPELINE).await;
    let api = health_json(&h.app, PIPELINE).await;
    let text = discord_health(&h.app).await.to_string();
    let success = format!("{:.1}%", api["success_rate_7d"].as_f64().unwrap() * 100.0);
    let p95 = format!("{:.1}s", api["duration_p95_s_7d"].as_f64().unwrap());
    assert!(text.contains(&success) && text.contains(&p95), "{text}");
    wait_until("health chart on discord", || {
        h.discord
            .messages(crate::incidents::DISCORD_CHANNEL)
            .iter()
            .any(|m| !m.files.is_empty())
    })
    .await;
}

async fn unknown_commands_get_help(db: Db) {
    let Some(h) = chat_app(db).await else { return };
    for (text, trigger) in [
        ("make coffee", "t1"),
        ("", "t2"),
        ("silence x soon", "t3"),
        ("help", "t4"),
    ] {
        let answer = slash(&h.app, text, trigger).await;
        assert!(
            answer["text"]
                .as_str()
                .unwrap()
                .contains("pipemedic commands"),
            "{text}: {answer}"
        );
        assert_eq!(answer["response_type"], "ephemeral");
    }
    let list = slash(&h.app, "incidents", "t5").await;
    assert_eq!(list["response_type"], "in_channel");
    assert_eq!(list["text"], "No open incidents.");
    let missing = slash(&h.app, "incident 999", "t6").await;
    assert_eq!(missing["text"], "No incident #999.");
    let reset = slash(&h.app, "accept-baseline checkout-service duration_s", "t7").await;
    assert!(reset["text"].as_str().unwrap().contains("new normal"));
    let pending = h.app.store.pending_baseline_resets(PIPELINE).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].1.as_deref(), Some("duration_s"));
}

async fn another_teams_pipeline_cannot_be_silenced_or_reset_here(db: Db) {
    // payments-* is routed to the Discord channel, not to this Slack one.
    let Some(h) = chat_app(db).await else { return };
    for (text, trigger) in [
        ("silence payments-api 2h", "v1"),
        ("unsilence payments-api", "v2"),
        ("accept-baseline payments-api", "v3"),
    ] {
        let answer = slash(&h.app, text, trigger).await;
        assert_eq!(
            answer["text"], "`payments-api` is not visible here.",
            "{text}"
        );
    }
    let now = pipemedic::clock::Clock::now(h.app.clock.as_ref());
    assert!(h.app.store.active_silences(now).await.unwrap().is_empty());
    assert!(h
        .app
        .store
        .pending_baseline_resets("payments-api")
        .await
        .unwrap()
        .is_empty());
    // Its own pipeline still can be.
    let own = slash(&h.app, "silence checkout-service 2h", "v4").await;
    assert!(
        own["text"].as_str().unwrap().starts_with("Silenced"),
        "{own}"
    );
    assert_eq!(h.app.store.active_silences(now).await.unwrap().len(), 1);
}

fn reaction(event_id: &str, user: &str, ts: &str, emoji: &str) -> Vec<u8> {
    json!({"token": "x", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
           "event_id": event_id, "event_time": 1764064800,
           "event": {"type": "reaction_added", "user": user, "reaction": emoji,
                     "item_user": BOT_USER_ID,
                     "item": {"type": "message", "channel": SLACK_CHANNEL, "ts": ts},
                     "event_ts": "1764064800.000100"}})
    .to_string()
    .into_bytes()
}

async fn a_reaction_on_the_alert_is_stored_once(db: Db) {
    let Some(h) = chat_app(db).await else { return };
    history(&h.app, PIPELINE).await;
    send(&h.app, abnormal(&h.app, PIPELINE, "r1").await).await;
    wait_until("alert", || {
        !top_level(&h.slack.messages(SLACK_CHANNEL)).is_empty()
    })
    .await;
    let alert_ts = top_level(&h.slack.messages(SLACK_CHANNEL))[0].ts.clone();
    let incident = h.app.store.incidents(true, None, 1).await.unwrap()[0].clone();
    for _ in 0..100 {
        if h.app
            .store
            .incident(incident.id)
            .await
            .unwrap()
            .unwrap()
            .root_ref
            .is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let json = "application/json";
    for _ in 0..2 {
        let res = slack_post(
            &h.app,
            "/slack/events",
            json,
            reaction("EvApprove1", "U0PERSON", &alert_ts, "white_check_mark"),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    // The bot's own reaction and a reaction on another message are ignored.
    let own = slack_post(
        &h.app,
        "/slack/events",
        json,
        reaction("EvBot1", BOT_USER_ID, &alert_ts, "white_check_mark"),
    )
    .await;
    assert_eq!(own.status(), StatusCode::OK);
    let elsewhere = slack_post(
        &h.app,
        "/slack/events",
        json,
        reaction("EvOther", "U0PERSON", "1.000001", "x"),
    )
    .await;
    assert_eq!(elsewhere.status(), StatusCode::OK);
    // A bad signature is refused and stores nothing.
    let forged = h
        .app
        .http
        .post(h.app.url("/slack/events"))
        .header("content-type", json)
        .header("x-slack-request-timestamp", "1764072000")
        .header("x-slack-signature", "v0=00")
        .body(reaction(
            "EvForged",
            "U0MALLORY",
            &alert_ts,
            "white_check_mark",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    // Give the background handling time to (not) store more than one.
    for _ in 0..100 {
        if !h.app.store.decisions(incident.id).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let decisions = h.app.store.decisions(incident.id).await.unwrap();
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert_eq!(decisions[0].event_id, "EvApprove1");
    assert_eq!(decisions[0].user, "U0PERSON");
    assert_eq!(decisions[0].decision, pipemedic::domain::Choice::Approve);
    assert_eq!(decisions[0].message.ts_or_id, alert_ts);
    // A Reject button under the alert is another decision, stored once.
    let mut payload: Value =
        serde_json::from_slice(&crate::chat_support::fixture("slack/block_actions.json")).unwrap();
    payload["container"]["channel_id"] = json!(SLACK_CHANNEL);
    payload["container"]["message_ts"] = json!(alert_ts);
    payload["channel"]["id"] = json!(SLACK_CHANNEL);
    payload["message"]["ts"] = json!(alert_ts);
    payload["actions"][0]["action_id"] = json!("pipemedic_reject");
    let form = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    for _ in 0..2 {
        let res = slack_post(
            &h.app,
            "/slack/interactions",
            "application/x-www-form-urlencoded",
            form.clone().into_bytes(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    for _ in 0..100 {
        if h.app.store.decisions(incident.id).await.unwrap().len() > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let decisions = h.app.store.decisions(incident.id).await.unwrap();
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    assert_eq!(decisions[1].decision, pipemedic::domain::Choice::Reject);
    assert_eq!(decisions[1].via, pipemedic::domain::Via::Button);
    let audit = h
        .app
        .store
        .audit_since(chrono::DateTime::<chrono::Utc>::MIN_UTC)
        .await
        .unwrap();
    assert_eq!(
        audit.iter().filter(|a| a.kind == "chat.decision").count(),
        2
    );
}

async fn a_mention_is_answered_in_its_thread(db: Db) {
    let Some(h) = chat_app(db).await else { return };
    history(&h.app, PIPELINE).await;
    let body = json!({"token": "x", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
        "event_id": "EvMention1", "event_time": 1764064800,
        "event": {"type": "app_mention", "user": "U0PERSON", "text": format!("<@{BOT_USER_ID}> incidents"),
                  "ts": "1764064000.000200", "channel": SLACK_CHANNEL, "event_ts": "1764064000.000200"}})
    .to_string()
    .into_bytes();
    for _ in 0..2 {
        let res = slack_post(&h.app, "/slack/events", "application/json", body.clone()).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    wait_until("answer", || !h.slack.messages(SLACK_CHANNEL).is_empty()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let messages = h.slack.messages(SLACK_CHANNEL);
    assert_eq!(messages.len(), 1, "answered once: {messages:?}");
    assert_eq!(messages[0].thread_ts.as_deref(), Some("1764064000.000200"));
    assert!(messages[0].blocks.to_string().contains("No open incidents"));
}

on_both_databases!(
    medic_health_answers_with_the_apis_numbers,
    discord_medic_health_answers_with_the_apis_numbers,
    unknown_commands_get_help,
    another_teams_pipeline_cannot_be_silenced_or_reset_here,
    a_reaction_on_the_alert_is_stored_once,
    a_mention_is_answered_in_its_thread,
);
