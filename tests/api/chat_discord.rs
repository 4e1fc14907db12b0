//! Discord: the real serenity HTTP machinery against `FakeDiscord`, and the
//! interactions route with Discord's documented payloads, signed with a
//! test Ed25519 key.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use pipemedic::chat::discord::DiscordChat;
use pipemedic::chat::{ChatError, ChatEvent, ChatMessage, ChatPlatform, ChatReply, Severity};
use pipemedic::clock::Clock;
use pipemedic::config::{DiscordConfig, Secret};
use pipemedic::domain::{Choice, MessageRef, Platform};
use reqwest::StatusCode;
use serde_json::Value;

use crate::chat_support::{fixture, RecordingSink};
use crate::fakes::discord::{FakeDiscord, BOT_USER_ID};
use crate::helpers::{spawn_app_with_chat_sink, Db, TestApp, DISCORD_KEY_SEED};

const TOKEN: &str = "discord-test-token";
const CHANNEL: &str = "772908445358620702";

fn client(fake: &FakeDiscord) -> DiscordChat {
    let config = DiscordConfig {
        api_url: fake.api_url(),
        ..DiscordConfig::default()
    };
    DiscordChat::new(&config, &Secret::new(TOKEN)).expect("discord client")
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

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR-not-a-real-image";

#[tokio::test]
async fn posts_edits_reacts_and_attaches() {
    let fake = FakeDiscord::start().await;
    let discord = client(&fake);

    let posted = discord.post(CHANNEL, None, &alert()).await.unwrap();
    assert_eq!(posted.platform, Platform::Discord);
    assert_eq!(posted.channel, CHANNEL);
    let messages = fake.messages(CHANNEL);
    assert_eq!(messages.len(), 1);
    let embed = &messages[0].payload["embeds"][0];
    assert_eq!(embed["title"], "🚨 checkout-service: test failures up");
    assert_eq!(embed["color"], Severity::Critical.colour());
    assert_eq!(embed["fields"][0]["name"], "Stage");
    let buttons = &messages[0].payload["components"][0]["components"];
    assert_eq!(buttons[0]["custom_id"], "pipemedic_approve:plan-1");
    assert_eq!(buttons[1]["label"], "Reject");

    let reply = discord
        .post(
            CHANNEL,
            Some(&posted),
            &ChatMessage::new("Plan", Severity::Info, "retry"),
        )
        .await
        .unwrap();
    assert_eq!(reply.thread.as_deref(), Some(posted.ts_or_id.as_str()));
    assert_eq!(
        fake.messages(CHANNEL)[1].payload["message_reference"]["message_id"],
        posted.ts_or_id
    );

    discord
        .update(
            &posted,
            &ChatMessage::new(
                "checkout-service: healed",
                Severity::Success,
                "back to normal",
            ),
        )
        .await
        .unwrap();
    let edited = &fake.messages(CHANNEL)[0];
    assert_eq!(edited.edits, 1);
    assert_eq!(edited.payload["embeds"][0]["description"], "back to normal");

    discord.react(&posted, "white_check_mark").await.unwrap();
    discord.react(&posted, "✅").await.unwrap();
    let reactions = fake.reactions();
    assert_eq!(reactions.len(), 1);
    assert_eq!(reactions[0].emoji, "✅");
    assert_eq!(reactions[0].message_id, posted.ts_or_id);

    discord
        .upload_png(
            CHANNEL,
            Some(&posted),
            "chart.png",
            PNG.to_vec(),
            "Test failure rate",
        )
        .await
        .unwrap();
    let with_file = fake.messages(CHANNEL).pop().unwrap();
    assert_eq!(with_file.files.len(), 1);
    assert_eq!(with_file.files[0].field, "files[0]");
    assert_eq!(with_file.files[0].filename, "chart.png");
    assert_eq!(with_file.files[0].bytes, PNG);
    assert_eq!(
        with_file.files[0].content_type.as_deref(),
        Some("image/png")
    );
    assert_eq!(
        with_file.payload["embeds"][0]["image"]["url"],
        "attachment://chart.png"
    );
    assert_eq!(with_file.payload["attachments"][0]["filename"], "chart.png");

    discord
        .post_ephemeral(CHANNEL, "53908232506183680", "only you")
        .await
        .unwrap();
    let me = discord.whoami().await.unwrap();
    assert_eq!(me.user_id, BOT_USER_ID);

    let paths = fake.paths();
    assert!(paths.contains(&format!("POST /api/v10/channels/{CHANNEL}/messages")));
    assert!(paths.contains(&format!(
        "PATCH /api/v10/channels/{CHANNEL}/messages/{}",
        posted.ts_or_id
    )));
    assert!(paths.contains(&"POST /api/v10/users/@me/channels".to_string()));
    assert!(fake.tokens().iter().all(|t| t == &format!("Bot {TOKEN}")));
}

#[tokio::test]
async fn failures_are_classified_for_retry() {
    let fake = FakeDiscord::start().await;
    let discord = client(&fake);

    fake.rate_limit_next(2.5);
    assert_eq!(
        discord.post(CHANNEL, None, &alert()).await.unwrap_err(),
        ChatError::RateLimited {
            retry_after: Duration::from_millis(2500)
        }
    );
    fake.fail_next(1, 502);
    assert!(matches!(
        discord.post(CHANNEL, None, &alert()).await.unwrap_err(),
        ChatError::Unavailable { .. }
    ));
    let missing = MessageRef {
        platform: Platform::Discord,
        channel: CHANNEL.into(),
        ts_or_id: "1".into(),
        thread: None,
    };
    assert_eq!(
        discord.update(&missing, &alert()).await.unwrap_err(),
        ChatError::rejected("discord_10008")
    );
    assert_eq!(
        discord
            .post("not-a-channel", None, &alert())
            .await
            .unwrap_err(),
        ChatError::rejected("invalid_channel_id")
    );
    assert!(fake.messages(CHANNEL).is_empty());
}

fn sign(body: &[u8], timestamp: i64) -> (String, String) {
    let key = SigningKey::from_bytes(&DISCORD_KEY_SEED);
    let ts = timestamp.to_string();
    let signature = key.sign(&[ts.as_bytes(), body].concat());
    (ts, hex::encode(signature.to_bytes()))
}

async fn interaction(app: &TestApp, body: Vec<u8>, ts: &str, signature: &str) -> reqwest::Response {
    app.http
        .post(app.url("/discord/interactions"))
        .header("content-type", "application/json")
        .header("x-signature-timestamp", ts)
        .header("x-signature-ed25519", signature)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn ping_gets_pong_and_bad_signatures_get_401() {
    let sink = Arc::new(RecordingSink::default());
    let app = spawn_app_with_chat_sink(Db::Sqlite, sink.clone())
        .await
        .unwrap();
    let now = app.clock.now().timestamp();
    let body = fixture("discord/ping.json");

    let (ts, sig) = sign(&body, now);
    let res = interaction(&app, body.clone(), &ts, &sig).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        serde_json::json!({"type": 1})
    );

    let mut tampered = body.clone();
    tampered.push(b' ');
    let res = interaction(&app, tampered, &ts, &sig).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "bad_signature");

    let other_key = SigningKey::from_bytes(&[9; 32]);
    let forged = hex::encode(
        other_key
            .sign(&[ts.as_bytes(), &body[..]].concat())
            .to_bytes(),
    );
    let res = interaction(&app, body.clone(), &ts, &forged).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let (old_ts, old_sig) = sign(&body, now - 3600);
    let res = interaction(&app, body.clone(), &old_ts, &old_sig).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let res = interaction(&app, body.clone(), &ts, "").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(sink.events().is_empty());
}

#[tokio::test]
async fn commands_and_buttons_become_typed_events() {
    let sink = RecordingSink::replying(ChatReply::ephemeral("checkout-service is healthy"));
    let app = spawn_app_with_chat_sink(Db::Sqlite, sink.clone())
        .await
        .unwrap();
    let now = app.clock.now().timestamp();

    let body = fixture("discord/application_command.json");
    let (ts, sig) = sign(&body, now);
    let res = interaction(&app, body, &ts, &sig).await;
    assert_eq!(res.status(), StatusCode::OK);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["type"], 4);
    assert_eq!(answer["data"]["content"], "checkout-service is healthy");
    assert_eq!(answer["data"]["flags"], 64);

    let body = fixture("discord/message_component.json");
    let (ts, sig) = sign(&body, now);
    let res = interaction(&app, body, &ts, &sig).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["type"], 6);

    let events = sink.wait_for(2).await;
    assert_eq!(
        events[0],
        ChatEvent::Command {
            platform: Platform::Discord,
            event_id: "786008729715212338".into(),
            channel: CHANNEL.into(),
            user: "53908232506183680".into(),
            command: "/medic".into(),
            text: "health checkout-service".into(),
            thread: None,
            response_url: Some(
                "https://discord.com/api/v10/webhooks/775799577604522054/A_UNIQUE_TOKEN".into()
            ),
        }
    );
    assert_eq!(
        events[1],
        ChatEvent::Button {
            platform: Platform::Discord,
            event_id: "846462639134605312".into(),
            channel: CHANNEL.into(),
            message: MessageRef {
                platform: Platform::Discord,
                channel: CHANNEL.into(),
                ts_or_id: "844397162624450620".into(),
                thread: None,
            },
            user: "53908232506183680".into(),
            action_id: "pipemedic_approve".into(),
            value: "plan-42".into(),
        }
    );
    assert_eq!(events[1].decision(), Some(Choice::Approve));

    let body = br#"{"type": 2, "id": "nope"}"#.to_vec();
    let (ts, sig) = sign(&body, now);
    let res = interaction(&app, body, &ts, &sig).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
