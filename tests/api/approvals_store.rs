//! The approvals part of the store contract: the same bodies on SQLite and
//! PostgreSQL.

use pipemedic::approvals::{Approver, Choice, RequestStatus, StepPolicy, Via, Vote};
use pipemedic::playbooks::{ApprovalPolicy, Risk};
use pipemedic::store::{ExecutionState, NewApprovalRequest, NewExecution, Store};
use serde_json::json;

use crate::helpers::{t, Db, TestDb};

fn new_request(pipeline: &str, run_id: &str) -> NewApprovalRequest {
    NewApprovalRequest {
        plan_ref: Some("plan-1".into()),
        incident_ref: "42".into(),
        pipeline: pipeline.into(),
        run_id: run_id.into(),
        commit_author: None,
        steps: vec![StepPolicy {
            step_no: 1,
            kind: "codepipeline.retry_stage".into(),
            risk: Risk::High,
            approval: ApprovalPolicy::for_risk(Risk::High),
            delay_s: None,
        }],
        created_at: t("2026-11-25T10:00:00Z"),
        expires_at: t("2026-11-25T10:30:00Z"),
        status: RequestStatus::Pending,
    }
}

fn steps(n: u32) -> Vec<NewExecution> {
    (1..=n)
        .map(|i| NewExecution {
            step_no: i,
            kind: "codepipeline.retry_stage".into(),
            call: json!({"kind": "codepipeline.retry_stage", "pipeline": "p", "run_id": "e-1", "params": {"stage": "Test"}}),
            dry_run: format!("dry run {i}"),
        })
        .collect()
}

async fn create(store: &Store, pipeline: &str, run_id: &str, n: u32) -> i64 {
    let mut tx = store.begin_write().await.unwrap();
    let id = tx
        .create_approval_request(&new_request(pipeline, run_id), &steps(n))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

fn vote(user: &str, event_id: &str) -> Vote {
    Vote {
        approver: Approver::new("slack", user).with_groups(&["S0SRE"]),
        event_id: event_id.into(),
        choice: Choice::Approve,
        via: Via::Reaction,
        at: t("2026-11-25T10:05:00Z"),
    }
}

async fn requests_round_trip_and_change_status_conditionally(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let id = create(&store, "p", "e-1", 2).await;
    let stored = store.approval_request(id).await.unwrap().unwrap();
    let expected = new_request("p", "e-1");
    assert_eq!(stored.steps, expected.steps);
    assert_eq!(stored.expires_at, expected.expires_at);
    assert_eq!(stored.status, RequestStatus::Pending);
    assert_eq!(stored.plan_ref.as_deref(), Some("plan-1"));
    assert_eq!(stored.approved_at, None);
    assert_eq!(stored.commit_author, None);
    let execs = store.executions(id).await.unwrap();
    assert_eq!(execs.len(), 2);
    assert_eq!(execs[1].dry_run, "dry run 2");
    assert_eq!(execs[0].status, ExecutionState::Planned);
    assert_eq!(execs[0].call["params"]["stage"], "Test");
    assert!(store.approval_request(id + 100).await.unwrap().is_none());

    let now = t("2026-11-25T10:06:00Z");
    let mut tx = store.begin_write().await.unwrap();
    assert!(tx
        .set_request_status(id, &[RequestStatus::Pending], RequestStatus::Approved, now)
        .await
        .unwrap());
    assert!(!tx
        .set_request_status(id, &[RequestStatus::Pending], RequestStatus::Rejected, now)
        .await
        .unwrap());
    assert!(tx
        .set_request_status(
            id,
            &[RequestStatus::Approved, RequestStatus::Executing],
            RequestStatus::Executing,
            now
        )
        .await
        .unwrap());
    tx.commit().await.unwrap();
    let stored = store.approval_request(id).await.unwrap().unwrap();
    assert_eq!(stored.status, RequestStatus::Executing);
    assert_eq!(stored.approved_at, Some(now), "kept from the approval");
    assert_eq!(store.approved_request_ids().await.unwrap(), [id]);
}

async fn votes_are_stored_once_per_event_and_once_effective_per_person(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let id = create(&store, "p", "e-1", 1).await;
    let mut tx = store.begin_write().await.unwrap();
    assert!(tx
        .record_vote(id, &vote("U1", "ev-1"), true, "counted")
        .await
        .unwrap());
    assert!(tx.vote_seen("slack", "ev-1").await.unwrap());
    assert!(!tx.vote_seen("discord", "ev-1").await.unwrap());
    assert!(
        !tx.record_vote(id, &vote("U1", "ev-1"), true, "counted")
            .await
            .unwrap(),
        "a redelivery is a no-op"
    );
    // The same person again: the new vote replaces the old one.
    assert!(tx
        .record_vote(id, &vote("U1", "ev-2"), true, "counted")
        .await
        .unwrap());
    assert!(tx
        .record_vote(id, &vote("U9", "ev-3"), false, "not_allowed")
        .await
        .unwrap());
    assert!(tx
        .record_vote(id, &vote("U2", "ev-4"), true, "approved")
        .await
        .unwrap());
    let effective = tx.effective_votes(id).await.unwrap();
    tx.commit().await.unwrap();
    let who: Vec<(&str, &str)> = effective
        .iter()
        .map(|v| (v.approver.user.as_str(), v.event_id.as_str()))
        .collect();
    assert_eq!(who, [("U1", "ev-2"), ("U2", "ev-4")]);
    assert_eq!(effective[0].approver.groups, ["S0SRE"]);
    assert_eq!(effective[0], vote("U1", "ev-2"));

    let all = store.approval_votes(id).await.unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(
        all.iter().map(|v| v.effective).collect::<Vec<_>>(),
        [false, true, false, true]
    );
    assert_eq!(all[2].outcome, "not_allowed");
}

async fn newer_runs_supersede_and_time_expires_pending_requests(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let old = create(&store, "p", "e-1", 1).await;
    let same_run = create(&store, "p", "e-2", 1).await;
    let other_pipeline = create(&store, "q", "e-1", 1).await;
    let approved = create(&store, "p", "e-1", 1).await;
    let now = t("2026-11-25T10:10:00Z");
    let mut tx = store.begin_write().await.unwrap();
    tx.set_request_status(
        approved,
        &[RequestStatus::Pending],
        RequestStatus::Approved,
        now,
    )
    .await
    .unwrap();
    assert_eq!(tx.supersede("p", "e-2", now).await.unwrap(), [old]);
    assert!(tx.supersede("p", "e-2", now).await.unwrap().is_empty());
    assert!(tx
        .expire_due(t("2026-11-25T10:29:59Z"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        tx.expire_due(t("2026-11-25T10:30:00Z")).await.unwrap(),
        [same_run, other_pipeline]
    );
    assert_eq!(tx.skip_planned_executions(old, now).await.unwrap(), 1);
    tx.commit().await.unwrap();
    let status = |id| {
        let store = store.clone();
        async move { store.approval_request(id).await.unwrap().unwrap().status }
    };
    assert_eq!(status(old).await, RequestStatus::Stale);
    assert_eq!(status(same_run).await, RequestStatus::Expired);
    assert_eq!(status(approved).await, RequestStatus::Approved);
    assert_eq!(
        store.executions(old).await.unwrap()[0].status,
        ExecutionState::Skipped
    );
    assert_eq!(
        store
            .approval_requests_with_status("p", RequestStatus::Stale)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn a_step_is_claimed_exactly_once(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let id = create(&store, "p", "e-1", 2).await;
    let now = t("2026-11-25T10:10:00Z");

    // Eight claimants at once, on separate connections (and, on
    // PostgreSQL, a second pool as a second process would have).
    let other = match store.backend() {
        pipemedic::store::Backend::Postgres => db.store().await,
        // One SQLite file belongs to one process (and its single writer).
        pipemedic::store::Backend::Sqlite => store.clone(),
    };
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut tx = store.begin_write().await.unwrap();
            let got = tx
                .claim_execution(id, 1, &format!("proc-{i}"), now)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            got
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        if let Some(e) = task.await.unwrap() {
            winners.push(e);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let won = &winners[0];
    assert_eq!(won.status, ExecutionState::Running);
    assert_eq!(won.attempts, 1);
    assert_eq!(won.started_at, Some(now));
    let me = won.claimed_by.clone().unwrap();

    let mut tx = store.begin_write().await.unwrap();
    assert!(tx.claim_execution(id, 1, &me, now).await.unwrap().is_none());
    assert!(!tx
        .finish_execution(
            won.id,
            "someone-else",
            ExecutionState::Succeeded,
            None,
            None,
            now
        )
        .await
        .unwrap());
    let outcome = json!({"summary": "done", "call": "x"});
    assert!(tx
        .finish_execution(
            won.id,
            &me,
            ExecutionState::Succeeded,
            Some(&outcome),
            None,
            now
        )
        .await
        .unwrap());
    assert!(!tx
        .finish_execution(won.id, &me, ExecutionState::Failed, None, Some("late"), now)
        .await
        .unwrap());
    tx.commit().await.unwrap();
    let execs = store.executions(id).await.unwrap();
    assert_eq!(execs[0].status, ExecutionState::Succeeded);
    assert_eq!(execs[0].outcome, Some(outcome));
    assert_eq!(execs[0].finished_at, Some(now));
    assert_eq!(execs[1].status, ExecutionState::Planned);
}

async fn running_steps_of_other_processes_become_unknown(db: Db) {
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let a = create(&store, "p", "e-1", 1).await;
    let b = create(&store, "p", "e-1", 1).await;
    let c = create(&store, "p", "e-1", 1).await;
    let now = t("2026-11-25T10:10:00Z");
    let mut tx = store.begin_write().await.unwrap();
    let dead = tx.claim_execution(a, 1, "old", now).await.unwrap().unwrap();
    tx.claim_execution(b, 1, "me", now).await.unwrap().unwrap();
    let live = tx
        .claim_execution(c, 1, "live", now)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    // 90 s later: "live" refreshed its heartbeat 10 s ago, "old" never did.
    let later = now + chrono::Duration::seconds(90);
    let mut tx = store.begin_write().await.unwrap();
    assert!(tx
        .touch_execution(live.id, "live", later - chrono::Duration::seconds(10))
        .await
        .unwrap());
    assert!(
        !tx.touch_execution(live.id, "old", later).await.unwrap(),
        "only the claimant refreshes a step"
    );
    let found = tx
        .mark_in_flight_unknown("me", later - chrono::Duration::seconds(60), later)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, dead.id);
    assert_eq!(found[0].status, ExecutionState::Unknown);
    for kept in [b, c] {
        assert_eq!(
            store.executions(kept).await.unwrap()[0].status,
            ExecutionState::Running
        );
    }
    // The claimant's real result still lands if it was alive after all.
    let mut tx = store.begin_write().await.unwrap();
    assert!(tx
        .finish_execution(dead.id, "old", ExecutionState::Succeeded, None, None, now)
        .await
        .unwrap());
    tx.commit().await.unwrap();
    assert_eq!(
        store.executions(a).await.unwrap()[0].status,
        ExecutionState::Succeeded
    );
}

crate::on_both_databases!(
    requests_round_trip_and_change_status_conditionally,
    votes_are_stored_once_per_event_and_once_effective_per_person,
    newer_runs_supersede_and_time_expires_pending_requests,
    a_step_is_claimed_exactly_once,
    running_steps_of_other_processes_become_unknown,
);
