//! The store contract for incidents, the chat outbox, decisions and
//! silences: the same bodies on SQLite and PostgreSQL.

use pipemedic::domain::{Choice, MessageRef, Platform, Via};
use pipemedic::domain::{
    Direction, IncidentSeverity, IncidentStatus, MetricDeviation, Run, RunSource, RunStatus,
    Verdict,
};
use pipemedic::store::{NewIncident, NewOutbox, OutboxKind, OutboxStatus};
use serde_json::json;

use crate::helpers::{t, Db, TestDb};

fn verdict(grade: f64) -> Verdict {
    Verdict {
        score: 2.0,
        grade,
        warming_up: false,
        deviations: vec![MetricDeviation {
            metric: "duration_s".into(),
            observed: 900.0,
            expected: 420.0,
            direction: Direction::Up,
            attribution: 1.0,
            dismissed: None,
        }],
        anomaly_id: None,
        ..Default::default()
    }
}

fn message(ts: &str) -> MessageRef {
    MessageRef {
        platform: Platform::Slack,
        channel: "C1".into(),
        ts_or_id: ts.into(),
        thread: None,
    }
}

/// A failed run of `checkout` and the incident it opens: (id, run pk, run).
async fn checkout_incident(
    tx: &mut pipemedic::store::WriteTx,
    now: chrono::DateTime<chrono::Utc>,
    grade: f64,
    silenced: bool,
) -> (i64, i64, Run) {
    let mut run = Run::new("checkout", "1", RunStatus::Failed);
    run.finished_at = Some(now);
    let pk = tx
        .upsert_run(&run, RunSource::Generic, now)
        .await
        .unwrap()
        .pk;
    let id = tx
        .insert_incident(
            &NewIncident {
                pipeline: "checkout",
                run_pk: pk,
                run: &run,
                verdict: &verdict(grade),
                route: None,
                silenced,
            },
            now,
        )
        .await
        .unwrap();
    (id, pk, run)
}

async fn incidents_open_extend_and_close(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let now = t("2026-11-25T12:00:00Z");
    let mut tx = store.begin_write().await.unwrap();
    let (id, pk, run) = checkout_incident(&mut tx, now, 0.4, true).await;
    tx.extend_incident(id, pk + 1, &run, &verdict(0.9), now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let incident = store.incident(id).await.unwrap().unwrap();
    assert_eq!(incident.status, IncidentStatus::Open);
    assert_eq!(incident.run_count, 2);
    assert_eq!(incident.max_grade, 0.9);
    assert_eq!(incident.severity, IncidentSeverity::Critical);
    assert!(incident.silenced && incident.route.is_none() && incident.root_ref.is_none());
    assert_eq!(incident.anomaly_id, None);
    assert_eq!(store.count_active_incidents("checkout").await.unwrap(), 1);

    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(
        tx.latest_active_incident("checkout")
            .await
            .unwrap()
            .unwrap()
            .id,
        id
    );
    tx.set_incident_status(id, IncidentStatus::Resolved, now)
        .await
        .unwrap();
    assert!(tx
        .latest_active_incident("checkout")
        .await
        .unwrap()
        .is_none());
    tx.commit().await.unwrap();
    let resolved = store.incident(id).await.unwrap().unwrap();
    assert_eq!(resolved.resolved_at, Some(now));
    assert!(store.incidents(true, None, 10).await.unwrap().is_empty());
    assert_eq!(
        store
            .incidents(false, Some("checkout"), 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn outbox_heads_claims_and_outcomes(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let backend = store.backend();
    let now = t("2026-11-25T12:00:00Z");
    let row = |channel: &str, kind: OutboxKind, incident: Option<i64>| NewOutbox {
        incident_id: incident,
        platform: "slack".into(),
        channel: channel.into(),
        kind,
        payload: json!({"n": channel}),
    };
    let mut tx = store.begin_write().await.unwrap();
    let a1 = tx
        .enqueue(&row("A", OutboxKind::Post, Some(7)), now)
        .await
        .unwrap();
    let b1 = tx
        .enqueue(&row("B", OutboxKind::Post, None), now)
        .await
        .unwrap();
    let a2 = tx
        .enqueue(&row("A", OutboxKind::Update, Some(7)), now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let heads: Vec<i64> = store
        .outbox_heads("slack")
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(heads, [a1, b1]);
    assert_eq!(
        store.incident_post_status(7).await.unwrap(),
        Some(OutboxStatus::Pending)
    );

    let mut tx = store.begin_write().await.unwrap();
    let claimed = tx.claim_outbox_row(a1, backend).await.unwrap().unwrap();
    assert_eq!(claimed.kind, OutboxKind::Post);
    tx.outbox_sent(a1, Some(&message("111.1")), now)
        .await
        .unwrap();
    tx.outbox_retry(b1, now + chrono::Duration::seconds(5), "rate limited")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        store
            .incident_by_message("slack", "A", "111.1")
            .await
            .unwrap(),
        Some(7)
    );
    assert_eq!(
        store
            .incident_by_message("slack", "B", "111.1")
            .await
            .unwrap(),
        None
    );
    let heads = store.outbox_heads("slack").await.unwrap();
    assert_eq!(heads.iter().map(|r| r.id).collect::<Vec<_>>(), [b1, a2]);
    assert_eq!(heads[0].attempts, 1);
    assert_eq!(heads[0].next_attempt_at, now + chrono::Duration::seconds(5));
    assert_eq!(heads[0].last_error.as_deref(), Some("rate limited"));

    let mut tx = store.begin_write().await.unwrap();
    tx.outbox_dead(b1, "channel_not_found").await.unwrap();
    assert!(tx.claim_outbox_row(b1, backend).await.unwrap().is_none());
    tx.commit().await.unwrap();
    let all = store.outbox(None).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.status).collect::<Vec<_>>(),
        [
            OutboxStatus::Sent,
            OutboxStatus::Dead,
            OutboxStatus::Pending
        ]
    );
    assert_eq!(all[0].sent_ref, Some(message("111.1")));
    assert!(store.outbox(Some("discord")).await.unwrap().is_empty());
}

async fn decisions_once_per_event_and_silences(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let now = t("2026-11-25T12:00:00Z");
    let mut tx = store.begin_write().await.unwrap();
    for expected in [true, false] {
        let stored = tx
            .record_decision(
                3,
                "slack",
                "Ev1",
                "U1",
                Choice::Approve,
                Via::Reaction,
                &message("1.1"),
                true,
                now,
            )
            .await
            .unwrap();
        assert_eq!(stored, expected);
    }
    // The same event id on another platform is another event.
    assert!(tx
        .record_decision(
            3,
            "discord",
            "Ev1",
            "U2",
            Choice::Reject,
            Via::Button,
            &message("1.1"),
            true,
            now
        )
        .await
        .unwrap());
    tx.add_silence("payments-*", now + chrono::Duration::hours(2), "U1", now)
        .await
        .unwrap();
    tx.add_silence("old", now - chrono::Duration::hours(1), "U1", now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let decisions = store.decisions(3).await.unwrap();
    assert_eq!(decisions.len(), 2);
    assert_eq!(decisions[0].decision, Choice::Approve);
    assert_eq!(decisions[1].via, Via::Button);
    let active = store.active_silences(now).await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].pipeline, "payments-*");
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.end_silences("payments-*", now).await.unwrap(), 1);
    tx.commit().await.unwrap();
    assert!(store.active_silences(now).await.unwrap().is_empty());
}

async fn lost_decisions_and_stuck_incidents_are_taken_on_once(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let stored_at = t("2026-11-25T12:00:00Z");
    let mut tx = store.begin_write().await.unwrap();
    tx.record_decision(
        3,
        "slack",
        "EvLost",
        "U1",
        Choice::Approve,
        Via::Reaction,
        &message("1.1"),
        true,
        stored_at,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let grace = chrono::Duration::seconds(30);

    // Too fresh, then lost; two sweeps at the same moment: one takes it.
    assert!(store
        .unhandled_decisions(stored_at - grace, 10)
        .await
        .unwrap()
        .is_empty());
    let sweep = stored_at + chrono::Duration::seconds(45);
    let lost = store.unhandled_decisions(sweep - grace, 10).await.unwrap();
    assert_eq!(lost.len(), 1);
    let mut tx = store.begin_write().await.unwrap();
    assert!(tx
        .claim_decision_replay(lost[0].id, sweep - grace, sweep)
        .await
        .unwrap());
    assert!(!tx
        .claim_decision_replay(lost[0].id, sweep - grace, sweep)
        .await
        .unwrap());
    tx.commit().await.unwrap();
    // Its taker stopped too: after the grace it is lost again; once
    // handled, never.
    let later = sweep + chrono::Duration::seconds(31);
    assert_eq!(
        store
            .unhandled_decisions(later - grace, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let mut tx = store.begin_write().await.unwrap();
    assert!(tx
        .mark_decision_handled("slack", "EvLost", later)
        .await
        .unwrap());
    assert!(!tx
        .mark_decision_handled("slack", "EvLost", later)
        .await
        .unwrap());
    tx.commit().await.unwrap();
    assert!(store
        .unhandled_decisions(later, 10)
        .await
        .unwrap()
        .is_empty());

    // An incident is taken on by one caller while status and last update
    // are as read.
    let mut tx = store.begin_write().await.unwrap();
    let (id, _, _) = checkout_incident(&mut tx, stored_at, 0.9, false).await;
    tx.commit().await.unwrap();
    let read = store.incident(id).await.unwrap().unwrap();
    let mut tx = store.begin_write().await.unwrap();
    assert!(!tx
        .claim_incident(id, IncidentStatus::Planning, read.updated_at, later)
        .await
        .unwrap());
    assert!(tx
        .claim_incident(id, read.status, read.updated_at, later)
        .await
        .unwrap());
    assert!(!tx
        .claim_incident(id, read.status, read.updated_at, later)
        .await
        .unwrap());
    tx.commit().await.unwrap();
    assert_eq!(store.incident(id).await.unwrap().unwrap().updated_at, later);
}

crate::on_both_databases!(
    lost_decisions_and_stuck_incidents_are_taken_on_once,
    incidents_open_extend_and_close,
    outbox_heads_claims_and_outcomes,
    decisions_once_per_event_and_silences,
);
