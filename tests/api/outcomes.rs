//! Outcomes and earned autonomy, on SQLite and PostgreSQL: every fate of
//! an offered plan recorded by the approval service (with the real
//! CodePipeline SDK against the stand-in); autonomy granted at the
//! threshold and not before, revoked by a not-healed outcome, stopped per
//! pipeline; `GET /v1/outcomes` and `pipemedic outcomes --json` with the
//! same shape; the whole loop running an earned fix once, saying so with a
//! stop button, revoking it when it did not heal and stopping on the
//! button; and `demo --store` keeping its data.

use std::sync::Arc;

use chrono::Duration as Minutes;
use pipemedic::approvals::{
    ApprovalService, ApprovalSettings, Approver, Choice, RequestContext, RequestStatus, Ruling,
    Via, Vote,
};
use pipemedic::clock::ManualClock;
use pipemedic::config::{self, Env, Secrets};
use pipemedic::domain::{AutoAfter, Fate, IncidentStatus, Signature};
use pipemedic::plan::{offline_plan, IncidentFacts, ValidatedPlan};
use pipemedic::playbooks::{ApprovalPolicy, Catalog};
use pipemedic::remediate::ExecutorRegistry;
use pipemedic::store::{NewOutcome, OfferedPlan, Store};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fakes::codepipeline::{ExecutionSpec, FakeCodePipeline};
use crate::healing::{
    failed_execution_at, history, incident_of, known_failed_execution, loop_app_with, model_plan,
    wait_for_status, EXECUTION, PLAYBOOK,
};
use crate::helpers::{t, test_aws_settings, Db, TestDb, READ_TOKEN};
use crate::incidents::{slack_post, wait_until, SLACK_CHANNEL};
use crate::on_both_databases;

const PIPELINE: &str = "checkout-service";
const RUN: &str = "3137f7cb-8d49-4c12-a8e6-5d3f2a1b0c9e";

struct Setup {
    _db: TestDb,
    store: Store,
    clock: Arc<ManualClock>,
    fake: FakeCodePipeline,
    registry: Arc<ExecutorRegistry>,
    service: ApprovalService,
}

async fn setup(db: Db, adjust: impl FnOnce(&mut ApprovalSettings)) -> Setup {
    let db = TestDb::new(db).await.expect("database");
    let store = db.store().await;
    let fake = FakeCodePipeline::start().await;
    fake.add_execution(
        PIPELINE,
        ExecutionSpec::new(RUN, "Failed", t("2026-11-25T09:00:00Z"))
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
    let mut settings = ApprovalSettings::default();
    adjust(&mut settings);
    let service = ApprovalService::new(store.clone(), clock.clone(), settings, registry.clone())
        .with_process_id("process-a");
    Setup {
        _db: db,
        store,
        clock,
        fake,
        registry,
        service,
    }
}

/// A failed test stage of checkout-service with the failure rate up.
fn facts() -> IncidentFacts {
    serde_json::from_value(json!({
        "incident_id": "42", "pipeline": PIPELINE, "run_id": RUN, "status": "failed",
        "stage": "Test", "attempt": 1, "execution_id": RUN, "ci": "codepipeline",
        "source": "aws", "grade": 0.7,
        "metrics": [{"metric": "test_failure_rate", "observed": 0.05, "expected": 0.004,
                     "direction": "up", "attribution": 0.9}],
        "log_excerpt": "[Test] 812 tests, 37 failed (timed out waiting for element)",
    }))
    .expect("facts")
}

/// The offline plan for [`facts`], reduced to its retry step: low risk,
/// one approval from anyone, and `auto_after` when given.
fn plan(auto_after: Option<AutoAfter>) -> ValidatedPlan {
    let catalog = Catalog::bundled().expect("bundled playbooks");
    let mut plan = offline_plan(&catalog, &facts()).expect("plan").validated;
    plan.steps
        .retain(|s| s.kind.as_str() == "codepipeline.retry_stage");
    assert_eq!(plan.steps.len(), 1, "{plan:?}");
    plan.steps[0].approval = ApprovalPolicy::Required {
        required: 1,
        from: Vec::new(),
    };
    plan.steps[0].auto_after = auto_after;
    plan
}

fn ctx(incident: i64) -> RequestContext {
    RequestContext {
        plan_ref: Some(format!("{}", 100 + incident)),
        incident_ref: incident.to_string(),
        pipeline: PIPELINE.to_string(),
        run_id: RUN.to_string(),
        commit_author: None,
        signature: facts().signature().key(),
    }
}

fn vote(user: &str, event_id: &str, choice: Choice) -> Vote {
    Vote {
        approver: Approver::new("slack", user),
        event_id: event_id.to_string(),
        choice,
        via: Via::Button,
        at: t("2026-11-25T10:01:00Z"),
    }
}

/// The next run's verdict on `incident`'s fix, as healing records it.
async fn verify(store: &Store, incident: i64, healed: bool, minutes: i64) -> usize {
    let mut tx = store.begin_write().await.unwrap();
    let moved = tx
        .record_verification(incident, healed, Some(minutes), t("2026-11-25T11:00:00Z"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    moved.len()
}

async fn fate(store: &Store, request: i64) -> Fate {
    store.request_outcomes(request).await.unwrap()[0].fate
}

async fn each_fate_is_recorded(db: Db) {
    let s = setup(db, |_| {}).await;
    let p = plan(None);
    let open = |incident: i64| {
        let (service, p) = (&s.service, &p);
        async move { service.open_request(p, &ctx(incident)).await }
    };

    // Offered, approved, executed, healed.
    let healed = open(1).await.unwrap();
    assert_eq!(fate(&s.store, healed.id).await, Fate::Offered);
    let rows = s.store.request_outcomes(healed.id).await.unwrap();
    assert_eq!(
        (
            rows[0].playbook.as_str(),
            rows[0].action.as_str(),
            rows[0].signature.as_str()
        ),
        (
            "flaky-tests",
            "rerun-tests-clean",
            "Test|test_failure_rate:up"
        )
    );
    let ruling = s
        .service
        .decide_vote(healed.id, &vote("U1", "Ev1", Choice::Approve))
        .await
        .unwrap();
    assert_eq!(ruling.decision, Ruling::Approved);
    assert_eq!(fate(&s.store, healed.id).await, Fate::Approved);
    s.service.execute(healed.id).await.unwrap();
    assert_eq!(fate(&s.store, healed.id).await, Fate::Executed);
    assert_eq!(verify(&s.store, 1, true, 25).await, 1);
    assert_eq!(fate(&s.store, healed.id).await, Fate::Healed);
    assert_eq!(verify(&s.store, 1, false, 0).await, 0, "a fate moves once");

    // Rejected, with the reason typed.
    let rejected = open(2).await.unwrap();
    s.service
        .decide_vote(rejected.id, &vote("U2", "Ev2", Choice::Reject))
        .await
        .unwrap();
    let mut tx = s.store.begin_write().await.unwrap();
    tx.record_rejection_reason(rejected.id, "not flaky")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(fate(&s.store, rejected.id).await, Fate::Rejected);

    // Superseded by a newer run.
    let stale = open(3).await.unwrap();
    assert_eq!(
        s.service.supersede(PIPELINE, "newer-run").await.unwrap(),
        vec![stale.id]
    );
    assert_eq!(fate(&s.store, stale.id).await, Fate::Superseded);

    // Approved, but the call fails.
    let failed = open(4).await.unwrap();
    s.fake
        .fail_next("RetryStageExecution", 400, "StageNotRetryableException");
    s.service
        .decide_vote(failed.id, &vote("U1", "Ev4", Choice::Approve))
        .await
        .unwrap();
    s.service.execute(failed.id).await.unwrap();
    assert_eq!(fate(&s.store, failed.id).await, Fate::Failed);

    // Executed, and the next run was still abnormal.
    let not_healed = open(5).await.unwrap();
    s.service
        .decide_vote(not_healed.id, &vote("U1", "Ev5", Choice::Approve))
        .await
        .unwrap();
    s.service.execute(not_healed.id).await.unwrap();
    assert_eq!(verify(&s.store, 5, false, 0).await, 1);
    assert_eq!(fate(&s.store, not_healed.id).await, Fate::NotHealed);

    // Nobody approved in time.
    let expired = open(6).await.unwrap();
    s.clock.advance(Minutes::hours(3));
    assert_eq!(s.service.expire_due().await.unwrap(), vec![expired.id]);
    assert_eq!(fate(&s.store, expired.id).await, Fate::Expired);

    let records = s.store.track_records(Some(PIPELINE)).await.unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(
        (
            r.offered,
            r.approved,
            r.rejected,
            r.expired,
            r.superseded,
            r.failed,
            r.executed,
            r.healed,
            r.not_healed
        ),
        (6, 3, 1, 1, 1, 1, 2, 1, 1),
        "{r:?}"
    );
    assert_eq!(r.median_minutes_to_heal, Some(25.0));
    assert_eq!(r.rejection_reasons, ["not flaky"]);
    assert_eq!(
        r.sentence(),
        "healed 1 of 2 times on checkout-service, median 25 min; rejected once: 'not flaky'; expired unapproved once; failed to run once"
    );
    assert!(s
        .store
        .track_records(Some("other"))
        .await
        .unwrap()
        .is_empty());
    // Exactly one call per approved request that ran.
    assert_eq!(s.fake.calls_of("RetryStageExecution").len(), 3);
}

async fn autonomy_is_earned_at_the_threshold_revoked_and_stopped(db: Db) {
    let s = setup(db, |settings| settings.auto_remediation = true).await;
    let p = plan(Some(AutoAfter {
        healed: 2,
        rate: 0.75,
    }));
    let retries = || s.fake.calls_of("RetryStageExecution").len();
    let mut incident = 0;
    // Offers the plan; approves it when it waits for people; runs it; the
    // next run says `healed`. Returns whether it ran on its own.
    let mut cycle = |healed: bool| {
        incident += 1;
        let (service, store, p) = (&s.service, &s.store, &p);
        let incident = incident;
        async move {
            let opened = service.open_request(p, &ctx(incident)).await.unwrap();
            if !opened.automatic {
                assert!(opened.earned.is_none());
                service
                    .decide_vote(
                        opened.id,
                        &vote("U1", &format!("Ev{incident}"), Choice::Approve),
                    )
                    .await
                    .unwrap();
            }
            service.execute(opened.id).await.unwrap();
            // Executing again never calls again.
            service.execute(opened.id).await.unwrap();
            assert_eq!(verify(store, incident, healed, 20).await, 1);
            (opened.automatic, opened.earned, opened.id)
        }
    };
    // Not before the threshold.
    assert!(!cycle(true).await.0, "no record yet");
    assert!(!cycle(true).await.0, "one heal of two");
    assert_eq!(retries(), 2);
    // At it: the fix runs without a vote, once, and the audit log says why.
    let (automatic, earned, request) = cycle(false).await;
    assert!(automatic);
    let why = earned.expect("earned autonomy");
    assert!(
        why.contains("flaky-tests/rerun-tests-clean healed 2 of 2 runs on checkout-service"),
        "{why}"
    );
    assert_eq!(retries(), 3);
    assert!(s.store.approval_votes(request).await.unwrap().is_empty());
    let audit = s
        .store
        .audit_for(&[format!("approval_request:{request}")])
        .await
        .unwrap();
    let decision = audit
        .iter()
        .find(|e| e.kind == "approval.decision")
        .expect("decision audited");
    assert_eq!(decision.actor, "pipemedic");
    assert_eq!(decision.detail["via"], "earned_autonomy");
    assert!(decision.detail["why"]
        .as_str()
        .unwrap()
        .contains("healed 2 of 2 runs"));
    let rows = s.store.request_outcomes(request).await.unwrap();
    assert!(rows[0].automatic && rows[0].approved);

    // That run did not heal: autonomy is revoked until it is earned again.
    assert!(!cycle(true).await.0, "revoked by the not-healed outcome");
    // Two heals in a row since, 4 of 5 healed (80% >= 75%): earned again.
    let (automatic, _, _) = cycle(true).await;
    assert!(!automatic, "only one heal since the failure");
    let (automatic, _, _) = cycle(true).await;
    assert!(automatic, "two heals since the failure, 5 of 6 healed");

    // Without automatic remediation in the configuration, never.
    let off = ApprovalService::new(
        s.store.clone(),
        s.clock.clone(),
        ApprovalSettings::default(),
        s.registry.clone(),
    );
    let opened = off.open_request(&p, &ctx(90)).await.unwrap();
    assert!(!opened.automatic);
    assert_eq!(
        s.store
            .approval_request(opened.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        RequestStatus::Pending
    );

    // Stopped on the pipeline: it waits for people again.
    let mut tx = s.store.begin_write().await.unwrap();
    assert!(tx
        .stop_autonomy(
            PIPELINE,
            "slack:U9",
            "slack button",
            t("2026-11-25T12:00:00Z")
        )
        .await
        .unwrap());
    assert!(!tx
        .stop_autonomy(
            PIPELINE,
            "slack:U9",
            "slack button",
            t("2026-11-25T12:00:00Z")
        )
        .await
        .unwrap());
    tx.commit().await.unwrap();
    let opened = s.service.open_request(&p, &ctx(91)).await.unwrap();
    assert!(!opened.automatic, "stopped");

    // A fix that did not heal this failure twice never runs on its own.
    let mut tx = s.store.begin_write().await.unwrap();
    assert!(tx.resume_autonomy(PIPELINE).await.unwrap());
    tx.commit().await.unwrap();
    assert!(
        s.service
            .open_request(&p, &ctx(92))
            .await
            .unwrap()
            .automatic
    );
    let twice = plan(Some(AutoAfter {
        healed: 1,
        rate: 0.1,
    }));
    let sig = facts().signature();
    seed(
        &s.store,
        PIPELINE,
        "flaky-tests",
        "rerun-tests-clean",
        &sig,
        false,
        2,
        500,
    )
    .await;
    seed(
        &s.store,
        PIPELINE,
        "flaky-tests",
        "rerun-tests-clean",
        &sig,
        true,
        3,
        600,
    )
    .await;
    assert!(
        !s.service
            .open_request(&twice, &ctx(93))
            .await
            .unwrap()
            .automatic
    );
}

/// `n` earlier outcomes of a fix (healed or not), as if healing had
/// recorded them, on requests and incidents `from..from + n`.
#[allow(clippy::too_many_arguments)]
async fn seed(
    store: &Store,
    pipeline: &str,
    playbook: &str,
    action: &str,
    signature: &Signature,
    healed: bool,
    n: i64,
    from: i64,
) {
    let now = t("2026-11-01T00:00:00Z");
    for i in from..from + n {
        let mut tx = store.begin_write().await.unwrap();
        tx.record_offered(
            &OfferedPlan {
                request_id: i,
                incident_id: Some(i),
                plan_id: None,
                pipeline: pipeline.to_string(),
                signature: signature.key(),
                automatic: false,
            },
            &[NewOutcome {
                step_no: 1,
                playbook: playbook.to_string(),
                action: action.to_string(),
            }],
            now,
        )
        .await
        .unwrap();
        tx.advance_outcomes(i, &[Fate::Offered], Fate::Approved, now)
            .await
            .unwrap();
        tx.advance_outcomes(i, &[Fate::Approved], Fate::Executed, now)
            .await
            .unwrap();
        tx.record_verification(i, healed, Some(20 + i % 7), now)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
}

async fn the_api_and_the_cli_give_the_same_shape(db: Db) {
    let Some(app) = crate::helpers::spawn_app(db).await else {
        return;
    };
    let sig = Signature::parse("Test|test_failure_rate:up");
    seed(
        &app.store,
        PIPELINE,
        "flaky-tests",
        "rerun-tests-clean",
        &sig,
        true,
        3,
        1,
    )
    .await;
    seed(
        &app.store,
        "payments-api",
        "deploy-regression",
        "rollback-stage",
        &sig,
        false,
        1,
        10,
    )
    .await;

    let res = app.http.get(app.url("/v1/outcomes")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .http
        .get(app.url("/v1/outcomes"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let all: Value = res.json().await.unwrap();
    let outcomes = all["outcomes"].as_array().expect("outcomes");
    assert_eq!(outcomes.len(), 2);
    for key in [
        "pipeline",
        "playbook",
        "action",
        "offered",
        "approved",
        "rejected",
        "expired",
        "healed",
        "not_healed",
        "median_minutes_to_heal",
    ] {
        assert!(outcomes[0].get(key).is_some(), "{key} missing: {all}");
    }
    assert_eq!(outcomes[0]["pipeline"], PIPELINE);
    assert_eq!(outcomes[0]["healed"], 3);
    assert_eq!(outcomes[0]["median_minutes_to_heal"], 22.0);
    assert_eq!(outcomes[1]["not_healed"], 1);
    assert_eq!(outcomes[1]["median_minutes_to_heal"], Value::Null);

    let res = app
        .http
        .get(app.url("/v1/outcomes?pipeline=payments-api"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    let one: Value = res.json().await.unwrap();
    assert_eq!(one["outcomes"].as_array().unwrap().len(), 1);
    assert_eq!(one["outcomes"][0]["pipeline"], "payments-api");
    let res = app
        .http
        .get(app.url("/v1/outcomes?pipline=x"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "unknown query keys");

    // The command line reads the same store and prints the same body.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pipemedic"))
        .args(["outcomes", "--json"])
        .env("PIPEMEDIC_STORE__URL", &app._db.url)
        .env_remove("PIPEMEDIC_CONFIG")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("pipemedic runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(cli, all);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pipemedic"))
        .args(["outcomes", "--pipeline", PIPELINE])
        .env("PIPEMEDIC_STORE__URL", &app._db.url)
        .env_remove("PIPEMEDIC_CONFIG")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("pipemedic runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("healed 3 of 3 times on checkout-service, median 22 min"),
        "{text}"
    );
    assert!(!text.contains("payments-api"), "{text}");
}

/// The team playbook with `auto_after: {healed: 2, rate: 0.9}` on its
/// low-risk retry.
fn earning_playbook() -> String {
    PLAYBOOK.replace(
        "    approval: { required: 1, from: [\"group:sre\"] }\n",
        "    approval: { required: 1, from: [\"group:sre\"] }\n    auto_after: { healed: 2, rate: 0.9 }\n",
    )
}

async fn an_earned_fix_runs_once_is_revoked_and_stopped_from_chat(db: Db) {
    let playbook = earning_playbook();
    assert!(playbook.contains("auto_after"));
    let Some(l) = loop_app_with(db, &playbook, |c| c.approvals.auto_remediation = true).await
    else {
        return;
    };
    let app = &l.h.app;
    let sig = Signature::parse("Test|");
    seed(
        &app.store,
        PIPELINE,
        "failed-test-stage",
        "retry-tests",
        &sig,
        true,
        2,
        9001,
    )
    .await;

    // The failure: planned, and run at once on the record.
    known_failed_execution(&l, PIPELINE);
    l.bedrock.reply_with_tool(model_plan());
    history(app, PIPELINE).await;
    failed_execution_at(app, PIPELINE, EXECUTION, 10).await;
    let id = incident_of(app, PIPELINE).await;
    wait_for_status(app, id, IncidentStatus::Verifying).await;
    assert_eq!(l.codepipeline.calls_of("RetryStageExecution").len(), 1);
    let mut card_ts = String::new();
    wait_until("the automatic plan card with its stop button", || {
        match l
            .h
            .slack
            .messages(SLACK_CHANNEL)
            .into_iter()
            .find(|m| m.thread_ts.is_some() && m.blocks.to_string().contains("pipemedic_stop_auto"))
        {
            Some(m) => {
                card_ts = m.ts;
                true
            }
            None => false,
        }
    })
    .await;
    let card =
        l.h.slack
            .messages(SLACK_CHANNEL)
            .into_iter()
            .find(|m| m.ts == card_ts)
            .unwrap()
            .blocks
            .to_string();
    assert!(
        card.contains("Running without waiting for approval"),
        "{card}"
    );
    assert!(card.contains("Stop automatic runs"), "{card}");
    assert!(
        card.contains("healed 2 of 2 times on checkout-service"),
        "{card}"
    );
    assert!(!card.contains("pipemedic_approve"), "{card}");
    let request = app
        .store
        .approval_requests_for_incident(&id.to_string())
        .await
        .unwrap()[0]
        .id;
    let audit = app
        .store
        .audit_for(&[format!("approval_request:{request}")])
        .await
        .unwrap();
    assert!(audit.iter().any(|e| e.kind == "approval.decision"
        && e.detail["via"] == "earned_autonomy"
        && e.detail["why"].as_str().unwrap().contains("healed 2 of 2")));

    // The next execution fails the same way: not healed, autonomy revoked,
    // and the next plan waits for people.
    let second = "4137f7cb-7cf7-4f0f-8b0c-5e0a1c2d3e4f";
    l.codepipeline.add_execution(
        PIPELINE,
        ExecutionSpec::new(second, "Failed", "2026-11-20T12:00:00Z".parse().unwrap()).action(
            "Test",
            "UnitTests",
            "Failed",
            218,
            430,
        ),
    );
    l.bedrock.reply_with_tool(model_plan());
    failed_execution_at(app, PIPELINE, second, 12).await;
    wait_for_status(app, id, IncidentStatus::AwaitingApproval).await;
    assert_eq!(l.codepipeline.calls_of("RetryStageExecution").len(), 1);
    let revoked: Vec<_> = app
        .store
        .audit_for(&[format!("pipeline/{PIPELINE}")])
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "autonomy.revoked")
        .collect();
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0].detail["action"], "retry-tests");
    wait_until("the revocation in the thread", || {
        crate::healing::thread_says(&l, "Autonomy revoked")
    })
    .await;
    let record = app
        .store
        .track_record(PIPELINE, "failed-test-stage", "retry-tests")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (record.healed, record.not_healed, record.automatic),
        (2, 1, 1)
    );

    // Someone presses Stop automatic runs on the first card.
    let mut payload: Value =
        serde_json::from_slice(&crate::chat_support::fixture("slack/block_actions.json")).unwrap();
    payload["user"]["id"] = json!("U0SOMEONE");
    payload["container"]["channel_id"] = json!(SLACK_CHANNEL);
    payload["container"]["message_ts"] = json!(card_ts);
    payload["channel"]["id"] = json!(SLACK_CHANNEL);
    payload["message"]["ts"] = json!(card_ts);
    payload["actions"][0]["action_id"] = json!("pipemedic_stop_auto");
    payload["actions"][0]["value"] = json!(format!("request:{request}"));
    let form = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let res = slack_post(
        app,
        "/slack/interactions",
        "application/x-www-form-urlencoded",
        form.into_bytes(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut stop = None;
    for _ in 0..500 {
        stop = app.store.autonomy_stop(PIPELINE).await.unwrap();
        if stop.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let stop = stop.expect("stopped");
    assert_eq!(stop.stopped_by, "slack:U0SOMEONE");
    assert_eq!(stop.via, "slack button");
    let stopped = app
        .store
        .audit_for(&[format!("pipeline/{PIPELINE}")])
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "autonomy.stopped")
        .expect("audited");
    assert_eq!(stopped.actor, "slack:U0SOMEONE");
    wait_until("the stop in the thread", || {
        crate::healing::thread_says(&l, "stopped automatic runs on checkout-service")
    })
    .await;
    // No vote was recorded by the stop button.
    assert!(app.store.approval_votes(request).await.unwrap().is_empty());
}

async fn the_demo_keeps_its_store(db: Db) {
    // A fresh database of its own: a SQLite file, or a PostgreSQL schema.
    let Some(test_db) = TestDb::new(db).await else {
        return;
    };
    let url = test_db.url.clone();
    let summary = pipemedic::demo::run(pipemedic::demo::DemoOptions {
        yes: true,
        planner: pipemedic::demo::DemoPlanner::Offline,
        store: Some(url.clone()),
    })
    .await
    .expect("demo runs");
    assert_eq!(
        summary.incidents[0].track_record,
        [format!(
            "flaky-tests/rerun-tests-clean: healed 1 of 1 time on checkout-service, median {} min",
            summary.incidents[0].recovered_after_min.unwrap()
        )]
    );
    let store = Store::connect(&url, 2).await.unwrap();
    let records = store.track_records(Some(PIPELINE)).await.unwrap();
    store.close().await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (records[0].playbook.as_str(), records[0].healed),
        ("flaky-tests", 1)
    );
    // A second demo on the kept store is refused, not mixed in.
    let again = pipemedic::demo::run(pipemedic::demo::DemoOptions {
        yes: true,
        planner: pipemedic::demo::DemoPlanner::Offline,
        store: Some(url),
    })
    .await
    .expect_err("refused");
    assert!(again.to_string().contains("already holds"), "{again}");
}

async fn stop_auto_and_resume_auto_from_a_slash_command(db: Db) {
    let Some(h) = crate::incidents::chat_app(db).await else {
        return;
    };
    let app = &h.app;
    let answer = crate::incidents::slash(app, "stop-auto checkout-service", "trig-stop").await;
    let text = answer["text"].as_str().unwrap();
    assert!(
        text.contains("stopped automatic runs on checkout-service"),
        "{text}"
    );
    let stop = app
        .store
        .autonomy_stop(PIPELINE)
        .await
        .unwrap()
        .expect("stopped");
    assert_eq!(stop.via, "slack command");
    let again = crate::incidents::slash(app, "stop-auto checkout-service", "trig-stop2").await;
    assert!(again["text"]
        .as_str()
        .unwrap()
        .contains("were already stopped"));
    let audit = app
        .store
        .audit_for(&[format!("pipeline/{PIPELINE}")])
        .await
        .unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.kind == "autonomy.stopped")
            .count(),
        1,
        "{audit:?}"
    );
    // Lifting the stop is for chat.admins only.
    let refused = crate::incidents::slash_as(
        app,
        "U0OTHER",
        "resume-auto checkout-service",
        "trig-resume",
    )
    .await;
    let text = refused["text"].as_str().unwrap();
    assert!(text.contains("only pipemedic admins may"), "{text}");
    assert!(app.store.autonomy_stop(PIPELINE).await.unwrap().is_some());
    let resumed =
        crate::incidents::slash(app, "resume-auto checkout-service", "trig-resume2").await;
    let text = resumed["text"].as_str().unwrap();
    assert!(text.contains("on their own again"), "{text}");
    assert!(app.store.autonomy_stop(PIPELINE).await.unwrap().is_none());
    let audit = app
        .store
        .audit_for(&[format!("pipeline/{PIPELINE}")])
        .await
        .unwrap();
    assert!(audit
        .iter()
        .any(|e| e.kind == "autonomy.resumed" && e.actor == "slack:U0PERSON"));
}

async fn a_rejection_through_the_admin_api_keeps_its_reason(db: Db) {
    // The operator is in the SRE group the playbook asks approvals from.
    let Some(l) = loop_app_with(db, PLAYBOOK, |c| {
        if let Some(sre) = c.approvals.groups.get_mut("sre") {
            sre.push("cli:alice".into());
        }
    })
    .await
    else {
        return;
    };
    let app = &l.h.app;
    let id = crate::healing::until_plan_offered(&l, PIPELINE).await;
    let incident = app.store.incident(id).await.unwrap().unwrap();
    let plan = app.store.plans_for_incident(&incident).await.unwrap()[0].id;
    let res = app
        .http
        .post(app.url(&format!("/v1/plans/{plan}/reject")))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .json(&json!({"as": "alice", "reason": "not flaky: the commit broke it"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["ruling"]["decision"], "rejected", "{body}");
    let request = app
        .store
        .approval_requests_for_incident(&id.to_string())
        .await
        .unwrap()[0]
        .id;
    let rows = app.store.request_outcomes(request).await.unwrap();
    assert_eq!(rows[0].fate, Fate::Rejected);
    assert_eq!(
        rows[0].reason.as_deref(),
        Some("not flaky: the commit broke it")
    );
    let record = app
        .store
        .track_record(PIPELINE, "failed-test-stage", "retry-tests")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        record.sentence(),
        "offered once on checkout-service, never verified yet; rejected once: 'not flaky: the commit broke it'"
    );
}

on_both_databases!(
    a_rejection_through_the_admin_api_keeps_its_reason,
    stop_auto_and_resume_auto_from_a_slash_command,
    each_fate_is_recorded,
    autonomy_is_earned_at_the_threshold_revoked_and_stopped,
    the_api_and_the_cli_give_the_same_shape,
    an_earned_fix_runs_once_is_revoked_and_stopped_from_chat,
    the_demo_keeps_its_store,
);
