//! The outbox worker on its own: the real Slack client against FakeSlack,
//! a store on both databases and a clock that moves only when told.

use std::sync::Arc;

use pipemedic::chat::outbox::{queue, OutboxPayload, OutboxSignal, OutboxWorker};
use pipemedic::chat::slack::SlackChat;
use pipemedic::chat::{ChatMessage, ChatPlatform, Severity};
use pipemedic::clock::ManualClock;
use pipemedic::config::{Secret, SlackConfig};
use pipemedic::metrics::Metrics;
use pipemedic::store::{OutboxKind, OutboxStatus, Store};

use crate::fakes::slack::FakeSlack;
use crate::helpers::{t, Db, TestDb};

async fn enqueue(
    store: &Store,
    clock: &ManualClock,
    incident: Option<i64>,
    channel: &str,
    kind: OutboxKind,
    text: &str,
) {
    use pipemedic::clock::Clock;
    let mut tx = store.begin_write().await.unwrap();
    let payload = OutboxPayload::message(ChatMessage::new(text, Severity::Info, text), None);
    queue(
        &mut tx,
        incident,
        "slack",
        channel,
        kind,
        &payload,
        clock.now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

fn titles(fake: &FakeSlack, channel: &str) -> Vec<String> {
    fake.messages(channel)
        .iter()
        .map(|m| m.text.clone().unwrap_or_default())
        .collect()
}

async fn a_failing_channel_waits_while_others_flow(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let fake = FakeSlack::start().await;
    let slack: Arc<dyn ChatPlatform> = Arc::new(
        SlackChat::new(
            &SlackConfig {
                api_url: fake.api_url(),
                ..SlackConfig::default()
            },
            &Secret::new("xoxb-test"),
        )
        .unwrap(),
    );
    let clock = Arc::new(ManualClock::new(t("2026-11-25T12:00:00Z")));
    let worker = OutboxWorker::new(
        store.clone(),
        slack,
        clock.clone(),
        Arc::new(Metrics::new()),
        std::time::Duration::from_millis(10),
        OutboxSignal::default(),
    );
    enqueue(&store, &clock, None, "CA", OutboxKind::Post, "a1").await;
    enqueue(&store, &clock, None, "CB", OutboxKind::Post, "b1").await;
    enqueue(&store, &clock, None, "CA", OutboxKind::Post, "a2").await;

    fake.fail_next(1, 500);
    assert_eq!(worker.deliver_due().await.unwrap(), 1, "only CB moves");
    assert!(titles(&fake, "CA").is_empty());
    assert_eq!(titles(&fake, "CB").len(), 1);
    // Nothing is due before the backoff ends.
    assert_eq!(worker.deliver_due().await.unwrap(), 0);
    clock.advance(chrono::Duration::seconds(1));
    assert_eq!(worker.deliver_due().await.unwrap(), 2);
    let a = titles(&fake, "CA");
    assert_eq!(a.len(), 2);
    assert!(a[0].contains("a1") && a[1].contains("a2"), "{a:?}");

    // A refused alert is dead, and so is what hangs from it; other channels go on.
    fake.error_next("channel_not_found");
    enqueue(&store, &clock, Some(99), "C404", OutboxKind::Post, "lost").await;
    enqueue(
        &store,
        &clock,
        Some(99),
        "C404",
        OutboxKind::Update,
        "lost update",
    )
    .await;
    enqueue(&store, &clock, None, "CB", OutboxKind::Post, "b2").await;
    worker.deliver_due().await.unwrap();
    let rows = store.outbox(Some("slack")).await.unwrap();
    let statuses: Vec<_> = rows
        .iter()
        .map(|r| (r.channel.as_str(), r.status))
        .collect();
    assert_eq!(
        &statuses[3..],
        [
            ("C404", OutboxStatus::Dead),
            ("C404", OutboxStatus::Dead),
            ("CB", OutboxStatus::Sent)
        ]
    );
    assert_eq!(rows[3].last_error.as_deref(), Some("channel_not_found"));
    assert_eq!(titles(&fake, "CB").len(), 2);
}

crate::on_both_databases!(a_failing_channel_waits_while_others_flow);
