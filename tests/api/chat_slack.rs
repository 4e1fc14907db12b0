//! Slack: the real slack-morphism client against `FakeSlack`, and the
//! inbound routes with Slack's documented payloads, correctly and badly
//! signed.

use std::time::Duration;

use pipemedic::chat::slack::verify::sign;
use pipemedic::chat::slack::SlackChat;
use pipemedic::chat::{ChatError, ChatEvent, ChatMessage, ChatPlatform, ChatReply, Severity};
use pipemedic::config::{Secret, SlackConfig};
use pipemedic::domain::{Choice, MessageRef, Platform};
use reqwest::StatusCode;
use serde_json::Value;

use crate::chat_support::{fixture, RecordingSink};
use crate::fakes::slack::{FakeSlack, BOT_ID, BOT_USER_ID};
use crate::helpers::{spawn_app_with_chat_sink, Db, TestApp, SLACK_SIGNING_SECRET};

const BOT_TOKEN: &str = "xoxb-test-token";

fn client(fake: &FakeSlack) -> SlackChat {
    let config = SlackConfig {
        api_url: fake.api_url(),
        ..SlackConfig::default()
    };
    SlackChat::new(&config, &Secret::new(BOT_TOKEN)).expect("slack client")
}

fn alert() -> ChatMessage {
    ChatMessage::new(
        "checkout-service: test failures up",
        Severity::Critical,
        "**37** of 812 tests failed",
    )
    .field("Stage", "Test")
    .button(Choice::Approve, "plan-1")
    .button(Choice::Reject, "plan-1")
    .footer("pipemedic")
}

/// A tiny valid PNG (1×1).
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE,
    0x42, 0x60, 0x82,
];

#[tokio::test]
async fn posts_updates_reacts_uploads_and_knows_itself() {
    let fake = FakeSlack::start().await;
    let slack = client(&fake);

    let posted = slack.post("C1", None, &alert()).await.unwrap();
    assert_eq!(posted.platform, Platform::Slack);
    assert_eq!(posted.channel, "C1");
    assert_eq!(posted.thread, None);
    let reply = slack
        .post(
            "C1",
            Some(&posted),
            &ChatMessage::new("Plan", Severity::Info, "retry"),
        )
        .await
        .unwrap();
    assert_eq!(reply.thread.as_deref(), Some(posted.ts_or_id.as_str()));

    let messages = fake.messages("C1");
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].blocks[0]["type"], "header");
    assert_eq!(messages[0].blocks[3]["type"], "actions");
    assert_eq!(messages[0].blocks[3]["elements"][0]["value"], "plan-1");
    assert!(messages[0]
        .text
        .as_deref()
        .unwrap()
        .contains("test failures up"));
    assert_eq!(
        messages[1].thread_ts.as_deref(),
        Some(posted.ts_or_id.as_str())
    );

    let resolved = ChatMessage::new(
        "checkout-service: healed",
        Severity::Success,
        "back to normal",
    );
    slack.update(&posted, &resolved).await.unwrap();
    let updated = &fake.messages("C1")[0];
    assert_eq!(updated.updates, 1);
    assert!(updated.text.as_deref().unwrap().contains("healed"));

    slack.react(&posted, "✅").await.unwrap();
    slack.react(&posted, "white_check_mark").await.unwrap(); // already there: still fine
    let reactions = fake.reactions();
    assert_eq!(reactions.len(), 1);
    assert_eq!(reactions[0].name, "white_check_mark");

    slack
        .post_ephemeral("C1", "U123", "only **you** see this")
        .await
        .unwrap();
    assert_eq!(fake.ephemerals()[0].text, "only *you* see this");

    slack
        .upload_png(
            "C1",
            Some(&posted),
            "chart.png",
            PNG.to_vec(),
            "Test failure rate",
        )
        .await
        .unwrap();
    let uploads = fake.uploads();
    assert_eq!(uploads.len(), 1);
    assert!(uploads[0].completed);
    assert_eq!(uploads[0].bytes, PNG);
    assert_eq!(uploads[0].filename, "chart.png");
    assert_eq!(uploads[0].title.as_deref(), Some("Test failure rate"));
    assert_eq!(uploads[0].channel_id.as_deref(), Some("C1"));
    assert_eq!(
        uploads[0].thread_ts.as_deref(),
        Some(posted.ts_or_id.as_str())
    );
    let calls = fake.calls();
    let upload_calls: Vec<&str> = calls
        .iter()
        .map(String::as_str)
        .filter(|c| c.starts_with("files.") || *c == "upload")
        .collect();
    assert_eq!(
        upload_calls,
        [
            "files.getUploadURLExternal",
            "upload",
            "files.completeUploadExternal"
        ]
    );

    let me = slack.whoami().await.unwrap();
    assert_eq!(me.user_id, BOT_USER_ID);
    assert_eq!(me.bot_id.as_deref(), Some(BOT_ID));
    assert!(fake.tokens().iter().all(|t| t == BOT_TOKEN));
}

#[tokio::test]
async fn failures_are_classified_for_retry() {
    let fake = FakeSlack::start().await;
    let slack = client(&fake);

    fake.rate_limit_next(7);
    assert_eq!(
        slack.post("C1", None, &alert()).await.unwrap_err(),
        ChatError::RateLimited {
            retry_after: Duration::from_secs(7)
        }
    );
    fake.fail_next(1, 500);
    let err = slack.post("C1", None, &alert()).await.unwrap_err();
    assert!(matches!(err, ChatError::Unavailable { .. }), "{err:?}");
    assert!(err.is_retriable());
    fake.fail_next(1, 503);
    assert!(matches!(
        slack.whoami().await.unwrap_err(),
        ChatError::Unavailable { .. }
    ));
    fake.error_next("channel_not_found");
    assert_eq!(
        slack.post("C404", None, &alert()).await.unwrap_err(),
        ChatError::rejected("channel_not_found")
    );
    // Nothing was posted by the failed calls; the next one goes through.
    assert!(fake.messages("C1").is_empty());
    slack.post("C1", None, &alert()).await.unwrap();
    assert_eq!(fake.messages("C1").len(), 1);

    let unreachable = SlackChat::new(
        &SlackConfig {
            api_url: "http://127.0.0.1:9/api".into(),
            ..SlackConfig::default()
        },
        &Secret::new(BOT_TOKEN),
    )
    .unwrap();
    assert!(matches!(
        unreachable.whoami().await.unwrap_err(),
        ChatError::Unavailable { .. }
    ));
}

async fn signed_post(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
    timestamp: i64,
    secret: &str,
) -> reqwest::Response {
    let signature = sign(secret.as_bytes(), timestamp, &body);
    app.http
        .post(app.url(path))
        .header("content-type", content_type)
        .header("x-slack-request-timestamp", timestamp.to_string())
        .header("x-slack-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap()
}

fn now(app: &TestApp) -> i64 {
    use pipemedic::clock::Clock;
    app.clock.now().timestamp()
}

#[tokio::test]
async fn events_api_answers_the_challenge_and_hands_over_typed_events() {
    let sink = RecordingSink::replying(ChatReply::ephemeral("ok"));
    let app = spawn_app_with_chat_sink(Db::Sqlite, sink.clone())
        .await
        .unwrap();
    let ts = now(&app);
    let json = "application/json";

    let res = signed_post(
        &app,
        "/slack/events",
        json,
        fixture("slack/url_verification.json"),
        ts,
        SLACK_SIGNING_SECRET,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );

    for name in [
        "app_mention",
        "message_im",
        "reaction_added",
        "reaction_removed",
    ] {
        let res = signed_post(
            &app,
            "/slack/events",
            json,
            fixture(&format!("slack/{name}.json")),
            ts,
            SLACK_SIGNING_SECRET,
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK, "{name}");
    }
    let mut events = sink.wait_for(4).await;
    events.sort_by(|a, b| a.event_id().cmp(b.event_id()));
    assert_eq!(
        events,
        vec![
            ChatEvent::DirectMessage {
                platform: Platform::Slack,
                event_id: "Ev0PV52K21".into(),
                channel: "D024BE91L".into(),
                user: "U2147483697".into(),
                text: "why is checkout-service slow?".into(),
                thread: None,
            },
            ChatEvent::Reaction {
                platform: Platform::Slack,
                event_id: "Ev0PV52K22".into(),
                channel: "C123ABC456".into(),
                message_ts: "1360782400.498405".into(),
                user: "U123ABC456".into(),
                emoji: "white_check_mark".into(),
                added: true,
            },
            ChatEvent::Reaction {
                platform: Platform::Slack,
                event_id: "Ev0PV52K23".into(),
                channel: "C123ABC456".into(),
                message_ts: "1360782400.498405".into(),
                user: "U123ABC456".into(),
                emoji: "x".into(),
                added: false,
            },
            ChatEvent::Mention {
                platform: Platform::Slack,
                event_id: "Ev123ABC456".into(),
                channel: "C123ABC456".into(),
                user: "U123ABC456".into(),
                text: "health checkout-service".into(),
                thread: Some(MessageRef {
                    platform: Platform::Slack,
                    channel: "C123ABC456".into(),
                    ts_or_id: "1515449522.000016".into(),
                    thread: None,
                }),
            },
        ]
    );
    assert_eq!(events[1].decision(), Some(Choice::Approve));
    assert_eq!(events[2].decision(), Some(Choice::Reject));
}

#[tokio::test]
async fn bad_signatures_and_stale_timestamps_are_refused() {
    let sink = std::sync::Arc::new(RecordingSink::default());
    let app = spawn_app_with_chat_sink(Db::Sqlite, sink.clone())
        .await
        .unwrap();
    let ts = now(&app);
    let body = fixture("slack/app_mention.json");
    let json = "application/json";
    for (timestamp, secret) in [
        (ts, "not-the-secret"),
        (ts - 301, SLACK_SIGNING_SECRET),
        (ts + 301, SLACK_SIGNING_SECRET),
    ] {
        for path in ["/slack/events", "/slack/commands", "/slack/interactions"] {
            let res = signed_post(&app, path, json, body.clone(), timestamp, secret).await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
            let err: Value = res.json().await.unwrap();
            assert_eq!(err["code"], "bad_signature");
        }
    }
    let unsigned = app
        .http
        .post(app.url("/slack/events"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);

    let huge = vec![b' '; 70 * 1024];
    let res = signed_post(&app, "/slack/events", json, huge, ts, SLACK_SIGNING_SECRET).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["code"], "too_large");

    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(sink.events().is_empty());
}

#[tokio::test]
async fn slash_commands_get_the_sinks_reply() {
    let sink = RecordingSink::replying(ChatReply::ephemeral("**checkout-service** is healthy"));
    let app = spawn_app_with_chat_sink(Db::Sqlite, sink.clone())
        .await
        .unwrap();
    let res = signed_post(
        &app,
        "/slack/commands",
        "application/x-www-form-urlencoded",
        fixture("slack/slash_command.form"),
        now(&app),
        SLACK_SIGNING_SECRET,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["response_type"], "ephemeral");
    assert_eq!(body["text"], "*checkout-service* is healthy");
    assert_eq!(
        sink.events(),
        vec![ChatEvent::Command {
            platform: Platform::Slack,
            event_id: "13345224609.738474920.8088930838d88f008e0".into(),
            channel: "C2147483705".into(),
            user: "U2147483697".into(),
            command: "/medic".into(),
            text: "health checkout-service".into(),
            thread: None,
            response_url: Some("https://hooks.slack.com/commands/1234/5678".into()),
        }]
    );
}

#[tokio::test]
async fn block_actions_become_button_decisions() {
    let sink = std::sync::Arc::new(RecordingSink::default());
    let app = spawn_app_with_chat_sink(Db::Sqlite, sink.clone())
        .await
        .unwrap();
    let payload = String::from_utf8(fixture("slack/block_actions.json")).unwrap();
    let form = serde_urlencoded::to_string([("payload", payload)]).unwrap();
    let res = signed_post(
        &app,
        "/slack/interactions",
        "application/x-www-form-urlencoded",
        form.into_bytes(),
        now(&app),
        SLACK_SIGNING_SECRET,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let events = sink.wait_for(1).await;
    assert_eq!(
        events[0],
        ChatEvent::Button {
            platform: Platform::Slack,
            event_id: "12321423423.333649436676.d8c1bb837935619ccad0f624c448ffb3:1548426417.840180"
                .into(),
            channel: "CBR2V3XEX".into(),
            message: MessageRef {
                platform: Platform::Slack,
                channel: "CBR2V3XEX".into(),
                ts_or_id: "1548261231.000200".into(),
                thread: None,
            },
            user: "UA8RXUSPL".into(),
            action_id: "pipemedic_approve".into(),
            value: "plan-42".into(),
        }
    );
    assert_eq!(events[0].decision(), Some(Choice::Approve));

    // A signed body that is not a Slack payload is a 400/422, not a 500.
    let res = signed_post(
        &app,
        "/slack/events",
        "application/json",
        b"{\"type\": 5}".to_vec(),
        now(&app),
        SLACK_SIGNING_SECRET,
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
