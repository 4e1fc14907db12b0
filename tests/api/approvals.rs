//! Approvals end to end: the ApprovalService on a real database (SQLite,
//! and PostgreSQL when configured), the real CodePipeline SDK against the
//! CodePipeline stand-in, and a manual clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as Minutes;
use pipemedic::approvals::{
    ApprovalService, ApprovalSettings, Approver, Choice, RequestContext, RequestStatus, Ruling,
    Via, Vote,
};
use pipemedic::clock::ManualClock;
use pipemedic::config::{self, Env, Secrets};
use pipemedic::domain::{Direction, MetricDeviation, RunSource, RunStatus};
use pipemedic::plan::{offline_plan, IncidentFacts, ValidatedPlan};
use pipemedic::playbooks::{ApprovalPolicy, Catalog, CiSystem, Risk};
use pipemedic::remediate::ExecutorRegistry;
use pipemedic::store::{ExecutionState, Store};
use serde_json::json;

use crate::fakes::codepipeline::{ExecutionSpec, FakeCodePipeline};
use crate::helpers::{t, test_aws_settings, Db, TestDb};

const PIPELINE: &str = "checkout-service";
const EXECUTION: &str = "3137f7cb-8d49-4c12-a8e6-5d3f2a1b0c9e";

struct Setup {
    db: TestDb,
    store: Store,
    clock: Arc<ManualClock>,
    fake: FakeCodePipeline,
    registry: Arc<ExecutorRegistry>,
    settings: ApprovalSettings,
    service: ApprovalService,
}

impl Setup {
    /// Another process: its own pool on the same database, its own id.
    async fn second_process(&self) -> ApprovalService {
        let store = self.db.store().await;
        ApprovalService::new(
            store,
            self.clock.clone(),
            self.settings.clone(),
            self.registry.clone(),
        )
        .with_process_id("process-b")
    }

    fn retry_calls(&self) -> usize {
        self.fake.calls_of("RetryStageExecution").len()
    }
}

fn approval_settings() -> ApprovalSettings {
    let mut groups = BTreeMap::new();
    groups.insert(
        "sre".to_string(),
        vec![
            "slack:U1".to_string(),
            "slack:U2".to_string(),
            "slack:dana".to_string(),
            "discord:456".to_string(),
            "slack-group:S0SRE".to_string(),
        ],
    );
    ApprovalSettings {
        groups,
        ..ApprovalSettings::default()
    }
}

async fn setup_with(db: Db, adjust: impl FnOnce(&mut ApprovalSettings)) -> Setup {
    let db = TestDb::new(db).await.expect("database");
    let store = db.store().await;
    let fake = FakeCodePipeline::start().await;
    fake.add_execution(
        PIPELINE,
        ExecutionSpec::new(EXECUTION, "Failed", t("2026-11-25T09:00:00Z"))
            .action("Build", "Compile", "Succeeded", 0, 120)
            .action("Test", "UnitTests", "Failed", 125, 400),
    );
    let mut config = config::from_sources(None, None, &Env::new()).expect("default config");
    config.aws.endpoints.codepipeline = fake.url();
    let clients = test_aws_settings(&config.aws).load().await;
    let registry = Arc::new(
        ExecutorRegistry::from_config(&config, &Secrets::default(), &clients, &Env::new())
            .expect("registry builds"),
    );
    let clock = Arc::new(ManualClock::new(t("2026-11-25T10:00:00Z")));
    let mut settings = approval_settings();
    adjust(&mut settings);
    let service = ApprovalService::new(
        store.clone(),
        clock.clone(),
        settings.clone(),
        registry.clone(),
    )
    .with_process_id("process-a");
    Setup {
        db,
        store,
        clock,
        fake,
        registry,
        settings,
        service,
    }
}

async fn setup(db: Db) -> Setup {
    setup_with(db, |_| {}).await
}

/// A failed CodePipeline run, stage Test, with the test failure rate up.
fn facts() -> IncidentFacts {
    IncidentFacts {
        incident_id: "42".to_string(),
        pipeline: PIPELINE.to_string(),
        run_id: EXECUTION.to_string(),
        status: RunStatus::Failed,
        stage: Some("Test".to_string()),
        commit: Some("a1b2c3d".to_string()),
        commit_author: Some("dana".to_string()),
        attempt: 1,
        execution_id: Some(EXECUTION.to_string()),
        ci: CiSystem::Codepipeline,
        source: RunSource::Aws,
        metrics: vec![MetricDeviation {
            metric: "test_failure_rate".to_string(),
            observed: 0.0456,
            expected: 0.004,
            direction: Direction::Up,
            attribution: 0.9,
            dismissed: None,
        }],
        grade: 0.7,
        log_excerpt: Some("[Test] 812 tests, 37 failed (timed out waiting for element)".into()),
        log_url: None,
        run_url: None,
        last_normal: None,
        track_record: Vec::new(),
    }
}

/// The offline planner's plan for [`facts`], reduced to its
/// `codepipeline.retry_stage` step, with the given risk and policy.
fn plan(risk: Risk, approval: ApprovalPolicy) -> ValidatedPlan {
    let catalog = Catalog::bundled().expect("bundled playbooks");
    let mut plan = offline_plan(&catalog, &facts())
        .expect("offline plan")
        .validated;
    plan.steps
        .retain(|s| s.kind.as_str() == "codepipeline.retry_stage");
    assert_eq!(plan.steps.len(), 1, "{plan:?}");
    plan.steps[0].risk = risk;
    plan.steps[0].approval = approval;
    plan.risk = risk;
    plan
}

fn sre(required: u32) -> ApprovalPolicy {
    ApprovalPolicy::Required {
        required,
        from: vec!["group:sre".to_string()],
    }
}

fn ctx() -> RequestContext {
    RequestContext {
        plan_ref: Some("plan-7".to_string()),
        incident_ref: "42".to_string(),
        pipeline: PIPELINE.to_string(),
        run_id: EXECUTION.to_string(),
        commit_author: Some("dana".to_string()),
        signature: String::new(),
    }
}

fn vote(user: &str, event_id: &str, choice: Choice, via: Via) -> Vote {
    Vote {
        approver: Approver::new("slack", user),
        event_id: event_id.to_string(),
        choice,
        via,
        at: t("2026-11-25T10:01:00Z"),
    }
}

fn approve(user: &str, event_id: &str) -> Vote {
    vote(user, event_id, Choice::Approve, Via::Reaction)
}

async fn status(s: &Setup, id: i64) -> RequestStatus {
    s.store
        .approval_request(id)
        .await
        .unwrap()
        .expect("request")
        .status
}

async fn unauthorised_vote_has_no_effect_and_an_authorised_one_runs_once(db: Db) {
    let s = setup(db).await;
    let opened = s
        .service
        .open_request(&plan(Risk::Low, sre(1)), &ctx())
        .await
        .unwrap();
    assert!(!opened.automatic);
    assert_eq!(opened.steps.len(), 1);
    assert_eq!(opened.steps[0].status, ExecutionState::Planned);
    assert!(
        opened.steps[0]
            .call
            .starts_with("codepipeline:RetryStageExecution"),
        "{:?}",
        opened.steps[0]
    );
    assert_eq!(s.fake.calls().len(), 0, "a dry run sends nothing");

    let out = s
        .service
        .record_vote(opened.id, &approve("U99", "ev-1"))
        .await
        .unwrap();
    match &out.decision {
        Ruling::NotAllowed { reason } => assert!(reason.contains("group:sre"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(out.decision.explain().contains("no effect"));
    assert_eq!(s.retry_calls(), 0);
    assert_eq!(status(&s, opened.id).await, RequestStatus::Pending);

    let out = s
        .service
        .record_vote(opened.id, &vote("U1", "ev-2", Choice::Approve, Via::Button))
        .await
        .unwrap();
    assert_eq!(out.decision, Ruling::Approved);
    assert_eq!(out.steps[0].status, ExecutionState::Succeeded);
    assert!(
        out.steps[0].summary.contains("Retried stage Test"),
        "{:?}",
        out.steps[0]
    );
    let sent = s.fake.calls_of("RetryStageExecution");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0],
        json!({"pipelineName": PIPELINE, "stageName": "Test", "pipelineExecutionId": EXECUTION, "retryMode": "ALL_ACTIONS"})
    );
    assert_eq!(status(&s, opened.id).await, RequestStatus::Done);

    // Every decision, execution and state change is in the audit log.
    let audit = s
        .store
        .audit_since(t("2026-11-01T00:00:00Z"))
        .await
        .unwrap();
    let kinds: Vec<&str> = audit.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "approval.requested",
            "approval.decision",
            "approval.decision",
            "approval.status",
            "approval.status",
            "execution.started",
            "execution.finished",
            "approval.status",
        ]
    );
    assert_eq!(audit[1].actor, "slack:U99");
    assert_eq!(audit[1].detail["result"]["decision"], "not_allowed");
    assert_eq!(audit[2].actor, "slack:U1");
    assert_eq!(audit[2].detail["via"], "button");
    assert_eq!(audit[6].detail["status"], "succeeded");
    let votes = s.store.approval_votes(opened.id).await.unwrap();
    assert_eq!(votes.len(), 2);
    assert!(!votes[0].effective && votes[1].effective);
}

async fn a_redelivered_approval_event_is_one_vote_and_one_call(db: Db) {
    let s = setup(db).await;
    let id = s
        .service
        .open_request(&plan(Risk::High, sre(2)), &ctx())
        .await
        .unwrap()
        .id;
    let first = s
        .service
        .record_vote(id, &approve("U1", "ev-1"))
        .await
        .unwrap();
    assert_eq!(
        first.decision,
        Ruling::Counted {
            approved_so_far: 1,
            required: 2
        }
    );
    let again = s
        .service
        .record_vote(id, &approve("U1", "ev-1"))
        .await
        .unwrap();
    assert_eq!(again.decision, Ruling::Duplicate);
    assert_eq!(s.store.approval_votes(id).await.unwrap().len(), 1);

    let done = s
        .service
        .record_vote(id, &approve("U2", "ev-2"))
        .await
        .unwrap();
    assert_eq!(done.decision, Ruling::Approved);
    // The approving event delivered again, and at the same moment.
    let vote_0 = approve("U2", "ev-2");
    let vote_1 = approve("U2", "ev-2");
    let (a, b) = tokio::join!(
        s.service.record_vote(id, &vote_0),
        s.service.record_vote(id, &vote_1),
    );
    assert_eq!(a.unwrap().decision, Ruling::Duplicate);
    assert_eq!(b.unwrap().decision, Ruling::Duplicate);
    assert_eq!(s.retry_calls(), 1);
    assert_eq!(s.store.approval_votes(id).await.unwrap().len(), 2);
}

async fn a_double_click_makes_one_call(db: Db) {
    let s = setup(db).await;
    let id = s
        .service
        .open_request(&plan(Risk::Low, sre(1)), &ctx())
        .await
        .unwrap()
        .id;
    s.fake
        .delay_next("RetryStageExecution", Duration::from_millis(300));
    let click = |event: &str| vote("U1", event, Choice::Approve, Via::Button);
    let vote_0 = click("click-1");
    let vote_1 = click("click-2");
    let (a, b) = tokio::join!(
        s.service.record_vote(id, &vote_0),
        s.service.record_vote(id, &vote_1),
    );
    let decisions = [a.unwrap().decision, b.unwrap().decision];
    assert_eq!(
        decisions.iter().filter(|d| **d == Ruling::Approved).count(),
        1,
        "{decisions:?}"
    );
    assert!(
        decisions.contains(&Ruling::AlreadyDecided {
            status: RequestStatus::Approved
        }) || decisions.contains(&Ruling::AlreadyDecided {
            status: RequestStatus::Executing
        }) || decisions.contains(&Ruling::AlreadyDecided {
            status: RequestStatus::Done
        }),
        "{decisions:?}"
    );
    // A third click after the run.
    let late = s.service.record_vote(id, &click("click-3")).await.unwrap();
    assert!(matches!(late.decision, Ruling::AlreadyDecided { .. }));
    assert_eq!(s.retry_calls(), 1);
}

async fn two_approvals_at_the_same_moment_make_one_call(db: Db) {
    let s = setup(db).await;
    let id = s
        .service
        .open_request(&plan(Risk::Low, sre(1)), &ctx())
        .await
        .unwrap()
        .id;
    s.fake
        .delay_next("RetryStageExecution", Duration::from_millis(300));
    let vote_0 = approve("U1", "ev-1");
    let vote_1 = approve("U2", "ev-2");
    let (a, b) = tokio::join!(
        s.service.record_vote(id, &vote_0),
        s.service.record_vote(id, &vote_1),
    );
    let decisions = [a.unwrap().decision, b.unwrap().decision];
    assert_eq!(
        decisions.iter().filter(|d| **d == Ruling::Approved).count(),
        1,
        "{decisions:?}"
    );
    // Executing again (a retried handler, a second worker) runs nothing.
    let (x, y) = tokio::join!(s.service.execute(id), s.service.execute(id));
    x.unwrap();
    y.unwrap();
    assert_eq!(s.retry_calls(), 1);
    assert_eq!(status(&s, id).await, RequestStatus::Done);
    let steps = s.store.executions(id).await.unwrap();
    assert_eq!(steps[0].attempts, 1);
    assert_eq!(steps[0].claimed_by.as_deref(), Some("process-a"));
}

async fn two_processes_on_one_postgres_make_one_call(db: Db) {
    if db == Db::Sqlite {
        // One SQLite file belongs to one process.
        return;
    }
    let s = setup(db).await;
    let other = s.second_process().await;
    let id = s
        .service
        .open_request(&plan(Risk::Low, sre(1)), &ctx())
        .await
        .unwrap()
        .id;
    s.fake
        .delay_next("RetryStageExecution", Duration::from_millis(300));
    let vote_0 = approve("U1", "ev-1");
    let vote_1 = approve("U2", "ev-2");
    let (a, b) = tokio::join!(
        s.service.record_vote(id, &vote_0),
        other.record_vote(id, &vote_1),
    );
    let decisions = [a.unwrap().decision, b.unwrap().decision];
    assert_eq!(
        decisions.iter().filter(|d| **d == Ruling::Approved).count(),
        1,
        "{decisions:?}"
    );
    let (x, y) = tokio::join!(s.service.execute(id), other.execute(id));
    x.unwrap();
    y.unwrap();
    assert_eq!(s.retry_calls(), 1);

    // Both processes executing a freshly approved request at once.
    let id = s
        .service
        .open_request(&plan(Risk::Low, sre(1)), &ctx())
        .await
        .unwrap()
        .id;
    let mut tx = s.store.begin_write().await.unwrap();
    assert!(tx
        .set_request_status(
            id,
            &[RequestStatus::Pending],
            RequestStatus::Approved,
            pipemedic::clock::Clock::now(s.clock.as_ref())
        )
        .await
        .unwrap());
    tx.commit().await.unwrap();
    s.fake
        .delay_next("RetryStageExecution", Duration::from_millis(300));
    let (x, y) = tokio::join!(s.service.execute(id), other.execute(id));
    x.unwrap();
    y.unwrap();
    assert_eq!(s.retry_calls(), 2, "one call per request");
    let steps = s.store.executions(id).await.unwrap();
    assert_eq!(steps[0].status, ExecutionState::Succeeded);
    assert_eq!(steps[0].attempts, 1);
}

async fn an_expired_plan_runs_nothing(db: Db) {
    let s = setup(db).await;
    let id = s
        .service
        .open_request(&plan(Risk::Low, sre(1)), &ctx())
        .await
        .unwrap()
        .id;
    s.clock.advance(Minutes::minutes(29));
    assert!(s.service.expire_due().await.unwrap().is_empty());
    s.clock.advance(Minutes::minutes(1));
    let out = s
        .service
        .record_vote(id, &approve("U1", "ev-1"))
        .await
        .unwrap();
    assert_eq!(out.decision, Ruling::Expired);
    assert_eq!(status(&s, id).await, RequestStatus::Expired);
    assert_eq!(out.steps[0].status, ExecutionState::Skipped);
    assert_eq!(
        s.service.execute(id).await.unwrap()[0].status,
        ExecutionState::Skipped
    );
    assert_eq!(s.retry_calls(), 0);

    // The sweep expires requests nobody voted on.
    let other = s
        .service
        .open_request(&plan(Risk::Low, sre(1)), &ctx())
        .await
        .unwrap()
        .id;
    s.clock.advance(Minutes::minutes(31));
    assert_eq!(s.service.expire_due().await.unwrap(), [other]);
    assert_eq!(status(&s, other).await, RequestStatus::Expired);
    assert!(s.service.expire_due().await.unwrap().is_empty());
}

async fn a_newer_run_makes_the_plan_stale(db: Db) {
    let s = setup(db).await;
    let id = s
        .service
        .open_request(&plan(Risk::Low, sre(1)), &ctx())
        .await
        .unwrap()
        .id;
    // The same run again changes nothing; a newer one supersedes.
    assert!(s
        .service
        .supersede(PIPELINE, EXECUTION)
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .service
        .supersede("other-pipeline", "e-9")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.service.supersede(PIPELINE, "e-2").await.unwrap(), [id]);
    let out = s
        .service
        .record_vote(id, &approve("U1", "ev-1"))
        .await
        .unwrap();
    assert_eq!(out.decision, Ruling::Stale);
    assert!(out.decision.explain().contains("newer run"));
    assert_eq!(status(&s, id).await, RequestStatus::Stale);
    s.service.execute(id).await.unwrap();
    assert_eq!(s.retry_calls(), 0);
}

async fn high_risk_needs_two_distinct_people(db: Db) {
    let s = setup(db).await;
    let id = s
        .service
        .open_request(
            &plan(Risk::High, ApprovalPolicy::for_risk(Risk::High)),
            &ctx(),
        )
        .await
        .unwrap()
        .id;
    let counted = Ruling::Counted {
        approved_so_far: 1,
        required: 2,
    };
    let r = s
        .service
        .record_vote(id, &approve("U1", "ev-1"))
        .await
        .unwrap();
    assert_eq!(r.decision, counted);
    // The same person by button, and on the other reaction: still one.
    let r = s
        .service
        .record_vote(id, &vote("U1", "ev-2", Choice::Approve, Via::Button))
        .await
        .unwrap();
    assert_eq!(r.decision, counted);
    assert_eq!(s.retry_calls(), 0);
    let r = s
        .service
        .record_vote(id, &approve("U2", "ev-3"))
        .await
        .unwrap();
    assert_eq!(r.decision, Ruling::Approved);
    assert_eq!(s.retry_calls(), 1);
}

async fn the_commit_author_cannot_approve(db: Db) {
    let s = setup(db).await;
    let id = s
        .service
        .open_request(&plan(Risk::Low, sre(1)), &ctx())
        .await
        .unwrap()
        .id;
    let r = s
        .service
        .record_vote(id, &approve("dana", "ev-1"))
        .await
        .unwrap();
    match &r.decision {
        Ruling::NotAllowed { reason } => assert!(reason.contains("author"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Nor reject.
    let r = s
        .service
        .record_vote(id, &vote("dana", "ev-2", Choice::Reject, Via::Reaction))
        .await
        .unwrap();
    assert!(matches!(r.decision, Ruling::NotAllowed { .. }));
    assert_eq!(status(&s, id).await, RequestStatus::Pending);
    assert_eq!(s.retry_calls(), 0);

    // When the configuration allows it, the author may.
    let s = setup_with(db, |c| c.commit_author_may_approve = true).await;
    let id = s
        .service
        .open_request(&plan(Risk::Low, sre(1)), &ctx())
        .await
        .unwrap()
        .id;
    let r = s
        .service
        .record_vote(id, &approve("dana", "ev-1"))
        .await
        .unwrap();
    assert_eq!(r.decision, Ruling::Approved);
    assert_eq!(s.retry_calls(), 1);
}

async fn a_reject_from_an_allowed_person_stops_the_plan(db: Db) {
    let s = setup(db).await;
    let id = s
        .service
        .open_request(&plan(Risk::High, sre(2)), &ctx())
        .await
        .unwrap()
        .id;
    s.service
        .record_vote(id, &approve("U1", "ev-1"))
        .await
        .unwrap();
    let r = s
        .service
        .record_vote(id, &vote("U2", "ev-2", Choice::Reject, Via::Button))
        .await
        .unwrap();
    assert_eq!(r.decision, Ruling::Rejected);
    assert_eq!(status(&s, id).await, RequestStatus::Rejected);
    let r = s
        .service
        .record_vote(id, &approve("U2", "ev-3"))
        .await
        .unwrap();
    assert_eq!(
        r.decision,
        Ruling::AlreadyDecided {
            status: RequestStatus::Rejected
        }
    );
    assert_eq!(s.retry_calls(), 0);
}

async fn an_executor_failure_is_reported_and_not_retried(db: Db) {
    let s = setup(db).await;
    s.fake
        .fail_next("RetryStageExecution", 400, "StageNotRetryableException");
    let id = s
        .service
        .open_request(&plan(Risk::Low, sre(1)), &ctx())
        .await
        .unwrap()
        .id;
    let r = s
        .service
        .record_vote(id, &approve("U1", "ev-1"))
        .await
        .unwrap();
    assert_eq!(r.decision, Ruling::Approved);
    let step = &r.steps[0];
    assert_eq!(step.status, ExecutionState::Failed);
    assert!(
        step.summary.contains("StageNotRetryableException"),
        "{step:?}"
    );
    assert!(step.summary.contains("Not retried"), "{step:?}");
    assert_eq!(status(&s, id).await, RequestStatus::Failed);
    // Executing again, or another approval, makes no second call.
    s.service.execute(id).await.unwrap();
    s.service
        .record_vote(id, &approve("U2", "ev-2"))
        .await
        .unwrap();
    assert_eq!(s.retry_calls(), 1);
    let stored = s.store.executions(id).await.unwrap();
    assert_eq!(stored[0].attempts, 1);
    assert_eq!(
        stored[0].outcome.as_ref().unwrap()["code"],
        "StageNotRetryableException"
    );
    assert_eq!(stored[0].outcome.as_ref().unwrap()["retryable"], false);

    // Throttling that outlasts the SDK's own attempts: retryable, reported
    // with its class, and still not retried by pipemedic.
    let s = setup(db).await;
    s.fake
        .fail_next_times("RetryStageExecution", 3, 400, "ThrottlingException");
    let id = s
        .service
        .open_request(&plan(Risk::Low, sre(1)), &ctx())
        .await
        .unwrap()
        .id;
    let r = s
        .service
        .record_vote(id, &approve("U1", "ev-1"))
        .await
        .unwrap();
    assert_eq!(r.steps[0].status, ExecutionState::Failed);
    assert!(
        r.steps[0].summary.contains("throttling"),
        "{:?}",
        r.steps[0]
    );
    assert!(r.steps[0].summary.contains("not retried automatically"));
    let sdk_attempts = s.retry_calls();
    s.service.execute(id).await.unwrap();
    assert_eq!(s.retry_calls(), sdk_attempts, "no attempt after the report");
}

async fn a_step_left_running_by_another_process_becomes_unknown(db: Db) {
    let s = setup(db).await;
    let id = s
        .service
        .open_request(&plan(Risk::Low, sre(1)), &ctx())
        .await
        .unwrap()
        .id;
    // A process approved and claimed the step, then died before finishing.
    let now = t("2026-11-25T10:02:00Z");
    let mut tx = s.store.begin_write().await.unwrap();
    tx.set_request_status(id, &[RequestStatus::Pending], RequestStatus::Executing, now)
        .await
        .unwrap();
    assert!(tx
        .claim_execution(id, 1, "process-dead", now)
        .await
        .unwrap()
        .is_some());
    tx.commit().await.unwrap();

    // Within the lease the claimant may still be at it: left alone.
    s.clock.set(now + Minutes::seconds(59));
    assert!(s.service.recover_in_flight().await.unwrap().is_empty());
    assert_eq!(status(&s, id).await, RequestStatus::Executing);

    s.clock.set(now + Minutes::seconds(61));
    let found = s.service.recover_in_flight().await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].status, ExecutionState::Unknown);
    assert!(found[0].summary.contains("not re-run"), "{:?}", found[0]);
    assert_eq!(status(&s, id).await, RequestStatus::Failed);
    s.service.execute(id).await.unwrap();
    s.service
        .record_vote(id, &approve("U1", "ev-1"))
        .await
        .unwrap();
    assert_eq!(s.retry_calls(), 0, "an unknown step is never re-run");
    assert_eq!(
        s.store.executions(id).await.unwrap()[0].status,
        ExecutionState::Unknown
    );
    // Its own running steps are not this process's to give up on.
    assert!(s.service.recover_in_flight().await.unwrap().is_empty());
}

async fn a_live_replica_keeps_its_long_step(db: Db) {
    // Process A runs a slow call and keeps its heartbeat fresh; process B
    // starts (or sweeps) long after the claim and must not give it up.
    let s = setup(db).await;
    let a = ApprovalService::new(
        s.store.clone(),
        s.clock.clone(),
        s.settings.clone(),
        s.registry.clone(),
    )
    .with_process_id("process-a")
    .with_heartbeat_every(std::time::Duration::from_millis(50));
    let b = s.second_process().await;
    let id = a
        .open_request(&plan(Risk::Low, sre(1)), &ctx())
        .await
        .unwrap()
        .id;
    s.fake.delay_next(
        "RetryStageExecution",
        std::time::Duration::from_millis(1500),
    );
    let voting = tokio::spawn(async move { a.record_vote(id, &approve("U1", "ev-1")).await });
    // Wait until A holds the step, then let two minutes pass on the clock.
    let mut running = false;
    for _ in 0..100 {
        let steps = s.store.executions(id).await.unwrap();
        if steps[0].status == ExecutionState::Running {
            running = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(running, "the step was never seen in flight");
    s.clock.advance(Minutes::minutes(2));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        b.recover_in_flight().await.unwrap().is_empty(),
        "a step whose claimant is alive is not unknown"
    );
    let outcome = voting.await.unwrap().unwrap();
    assert_eq!(outcome.steps[0].status, ExecutionState::Succeeded);
    assert_eq!(s.retry_calls(), 1);
    assert_eq!(status(&s, id).await, RequestStatus::Done);
}

async fn automatic_remediation_runs_low_risk_approval_none(db: Db) {
    let s = setup(db).await;
    let opened = s
        .service
        .open_request(&plan(Risk::Low, ApprovalPolicy::None), &ctx())
        .await
        .unwrap();
    assert!(!opened.automatic, "off by default: needs one approver");
    let r = s
        .service
        .record_vote(opened.id, &approve("U42", "ev-1"))
        .await
        .unwrap();
    assert_eq!(r.decision, Ruling::Approved);

    let s = setup_with(db, |c| c.auto_remediation = true).await;
    let opened = s
        .service
        .open_request(&plan(Risk::Low, ApprovalPolicy::None), &ctx())
        .await
        .unwrap();
    assert!(opened.automatic);
    assert_eq!(status(&s, opened.id).await, RequestStatus::Approved);
    let steps = s.service.execute(opened.id).await.unwrap();
    assert_eq!(steps[0].status, ExecutionState::Succeeded);
    assert_eq!(s.retry_calls(), 1);
}

async fn a_delayed_step_runs_when_due_and_approved_work_resumes(db: Db) {
    let s = setup(db).await;
    let mut delayed = plan(Risk::Low, sre(1));
    delayed.steps[0].delay_s = Some(600);
    let id = s.service.open_request(&delayed, &ctx()).await.unwrap().id;
    let r = s
        .service
        .record_vote(id, &approve("U1", "ev-1"))
        .await
        .unwrap();
    assert_eq!(r.decision, Ruling::Approved);
    assert_eq!(r.steps[0].status, ExecutionState::Planned);
    assert_eq!(status(&s, id).await, RequestStatus::Executing);
    s.clock.advance(Minutes::minutes(5));
    assert_eq!(s.service.resume_due().await.unwrap(), [id]);
    assert_eq!(s.retry_calls(), 0, "not before its delay");
    s.clock.advance(Minutes::minutes(5));
    s.service.resume_due().await.unwrap();
    assert_eq!(s.retry_calls(), 1);
    assert_eq!(status(&s, id).await, RequestStatus::Done);
    assert!(s.service.resume_due().await.unwrap().is_empty());

    // Approved, then the process stopped before starting: the next sweep
    // runs it, once.
    let id = s
        .service
        .open_request(&plan(Risk::Low, sre(1)), &ctx())
        .await
        .unwrap()
        .id;
    let mut tx = s.store.begin_write().await.unwrap();
    tx.set_request_status(
        id,
        &[RequestStatus::Pending],
        RequestStatus::Approved,
        t("2026-11-25T10:20:00Z"),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    if db == Db::Postgres {
        let other = s.second_process().await;
        let (a, b) = tokio::join!(s.service.resume_due(), other.resume_due());
        a.unwrap();
        b.unwrap();
    } else {
        // One SQLite file belongs to one process: two sweeps in it.
        let (a, b) = tokio::join!(s.service.resume_due(), s.service.resume_due());
        a.unwrap();
        b.unwrap();
    }
    assert_eq!(s.retry_calls(), 2);
    assert_eq!(status(&s, id).await, RequestStatus::Done);
}

crate::on_both_databases!(
    a_delayed_step_runs_when_due_and_approved_work_resumes,
    unauthorised_vote_has_no_effect_and_an_authorised_one_runs_once,
    a_redelivered_approval_event_is_one_vote_and_one_call,
    a_double_click_makes_one_call,
    two_approvals_at_the_same_moment_make_one_call,
    two_processes_on_one_postgres_make_one_call,
    an_expired_plan_runs_nothing,
    a_newer_run_makes_the_plan_stale,
    high_risk_needs_two_distinct_people,
    the_commit_author_cannot_approve,
    a_reject_from_an_allowed_person_stops_the_plan,
    an_executor_failure_is_reported_and_not_retried,
    a_step_left_running_by_another_process_becomes_unknown,
    a_live_replica_keeps_its_long_step,
    automatic_remediation_runs_low_risk_approval_none,
);
