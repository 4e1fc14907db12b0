//! Reminders and paging end to end: a plan unapproved at half its expiry is
//! reminded once in its thread; at expiry (or after fixes that did not
//! heal) the on-call is paged through the real PagerDuty or Opsgenie
//! client at their stand-ins, exactly once, with the incident's dedup key,
//! and the page is resolved when the incident heals. Rate limits are
//! waited out, refusals said in the thread, and no secret leaves its auth
//! field. Time moves only by the app's clock.

use std::sync::{Arc, Mutex};

use chrono::Duration;
use pipemedic::clock::Clock;
use pipemedic::domain::IncidentStatus;
use pipemedic::store::{PageAction, PageStatus};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fakes::opsgenie::FakeOpsgenie;
use crate::fakes::pagerduty::FakePagerDuty;
use crate::healing::{
    failed_execution_at, loop_app, loop_app_with, model_plan, normal_run, react, slack_plan,
    status_of, until_plan_offered, wait_for_status, Loop, APPROVER_SLACK, PLAYBOOK,
};
use crate::helpers::{Db, TestApp, OPSGENIE_API_KEY, PAGERDUTY_ROUTING_KEY};
use crate::incidents::{wait_until, SLACK_CHANNEL};
use crate::on_both_databases;
use pipemedic::standin::codepipeline::ExecutionSpec;

const PIPELINE: &str = "checkout-service";

/// Thread lines in the Slack channel whose blocks contain `needle`.
fn thread_lines(l: &Loop, needle: &str) -> usize {
    l.h.slack
        .messages(SLACK_CHANNEL)
        .iter()
        .filter(|m| m.thread_ts.is_some() && m.blocks.to_string().contains(needle))
        .count()
}

async fn audit_kinds(app: &TestApp, kind: &str) -> Vec<Value> {
    app.store
        .audit_since(chrono::DateTime::<chrono::Utc>::MIN_UTC)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.detail)
        .collect()
}

async fn request_of(app: &TestApp, incident: i64) -> i64 {
    app.store
        .approval_requests_for_incident(&incident.to_string())
        .await
        .unwrap()[0]
        .id
}

async fn a_plan_unapproved_at_half_its_expiry_is_reminded_once(db: Db) {
    let Some(l) = loop_app(db).await else { return };
    let app = &l.h.app;
    let id = until_plan_offered(&l, PIPELINE).await;
    let request = request_of(app, id).await;

    // Before the middle of the 30-minute window: nothing.
    app.clock_advance_minutes(14);
    app.healing.sweep().await.unwrap();
    assert_eq!(app.store.reminder_sent_at(request).await.unwrap(), None);

    // At the middle: one reminder, saying who, how many and when.
    app.clock_advance_minutes(1);
    app.healing.sweep().await.unwrap();
    assert_eq!(
        app.store.reminder_sent_at(request).await.unwrap(),
        Some(app.clock.now())
    );
    wait_until("the reminder in the thread", || {
        thread_lines(&l, "awaits approval") == 1
    })
    .await;
    let reminder =
        l.h.slack
            .messages(SLACK_CHANNEL)
            .into_iter()
            .find(|m| m.blocks.to_string().contains("awaits approval"))
            .unwrap();
    let text = reminder.blocks.to_string();
    assert!(text.contains("more approval from"), "{text}");
    assert!(text.contains("group:sre"), "{text}");
    assert!(text.contains("2026-11-25 12:30 UTC (in 15 min)"), "{text}");
    assert!(text.contains("pipemedic_approve"), "{text}");

    // Later sweeps, and another replica's claim, send nothing more.
    app.clock_advance_minutes(5);
    app.healing.sweep().await.unwrap();
    app.healing.sweep().await.unwrap();
    let mut tx = app.store.begin_write().await.unwrap();
    assert!(!tx.claim_reminder(request, app.clock.now()).await.unwrap());
    drop(tx);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(thread_lines(&l, "awaits approval"), 1);
    let audited = audit_kinds(app, "approval.reminder").await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0]["missing"][0]["approvals"], 1);
    assert_eq!(audited[0]["missing"][0]["from"], json!(["group:sre"]));
    assert_eq!(status_of(app, id).await, IncidentStatus::AwaitingApproval);
}

/// The loop with paging through PagerDuty at `pd`.
async fn pagerduty_app(db: Db, pd: &FakePagerDuty) -> Option<Loop> {
    let url = pd.url();
    loop_app_with(db, PLAYBOOK, move |c| {
        c.paging.provider = "pagerduty".into();
        c.paging.pagerduty.events_url = url;
        for route in &mut c.chat.routes {
            route.links = vec![pipemedic::domain::LinkTemplate {
                label: "Dashboard".into(),
                url: "https://grafana.example/d/ci?var-pipeline={{pipeline}}".into(),
            }];
        }
    })
    .await
}

/// Lets the plan of incident `id` expire.
async fn expire(l: &Loop, id: i64) {
    let app = &l.h.app;
    app.clock_advance_minutes(31);
    app.healing.sweep().await.unwrap();
    wait_for_status(app, id, IncidentStatus::Open).await;
}

/// A normal, successful next run: the pipeline recovered.
async fn recover(app: &TestApp) {
    let next = normal_run(PIPELINE, "healthy", "2026-11-20T11:00:00Z".parse().unwrap());
    assert_eq!(
        app.post_runs(next.to_string()).await.status(),
        StatusCode::OK
    );
}

async fn an_expired_plan_pages_pagerduty_once_and_the_heal_resolves_it(db: Db) {
    let pd = FakePagerDuty::start().await;
    let Some(l) = pagerduty_app(db, &pd).await else {
        return;
    };
    let app = &l.h.app;
    let id = until_plan_offered(&l, PIPELINE).await;
    expire(&l, id).await;
    wait_until("the trigger at PagerDuty", || pd.calls().len() == 1).await;

    let call = &pd.calls()[0];
    assert_eq!(
        (call.method.as_str(), call.path.as_str()),
        ("POST", "/v2/enqueue")
    );
    assert_eq!(call.headers["content-type"], "application/json");
    let event = call.json();
    let key = format!("pipemedic-incident-{id}");
    assert_eq!(event["routing_key"], PAGERDUTY_ROUTING_KEY);
    assert_eq!(event["event_action"], "trigger");
    assert_eq!(event["dedup_key"], key.as_str());
    let payload = &event["payload"];
    assert!(payload["summary"].as_str().unwrap().contains(PIPELINE));
    assert!(payload["summary"]
        .as_str()
        .unwrap()
        .contains("expired without enough approvals"));
    assert_eq!(payload["source"], PIPELINE);
    assert!(["critical", "error", "warning"].contains(&payload["severity"].as_str().unwrap()));
    assert_eq!(payload["component"], "Test");
    assert_eq!(payload["custom_details"]["incident"], id.to_string());
    assert_eq!(payload["custom_details"]["pipeline"], PIPELINE);
    // The run's logs and the route's dashboard go with the page.
    let links = event["links"].as_array().unwrap();
    assert_eq!(links[0]["text"], "Logs");
    assert_eq!(
        links.last().unwrap(),
        &json!({"href": "https://grafana.example/d/ci?var-pipeline=checkout-service", "text": "Dashboard"})
    );
    // The routing key is in its field and nowhere else.
    let mut rest = event.clone();
    rest.as_object_mut().unwrap().remove("routing_key");
    assert!(!rest.to_string().contains(PAGERDUTY_ROUTING_KEY));
    assert_eq!(pd.alerts()[&key].status, "triggered");
    wait_until("the page in the thread", || {
        thread_lines(&l, "Paged on-call (PagerDuty)") == 1
    })
    .await;

    // Sweeps and passes after it send nothing more.
    app.healing.sweep().await.unwrap();
    assert_eq!(app.healing.paging().deliver_due().await.unwrap(), 0);
    assert_eq!(pd.calls().len(), 1);
    let pages = app.store.pages_for_incident(id).await.unwrap();
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].status, PageStatus::Sent);
    assert_eq!(pages[0].attempts, 1);
    assert_eq!(audit_kinds(app, "page.sent").await.len(), 1);

    // The pipeline recovers: the incident resolves and so does the page.
    recover(app).await;
    wait_for_status(app, id, IncidentStatus::Resolved).await;
    wait_until("the resolve at PagerDuty", || pd.calls().len() == 2).await;
    let resolve = pd.calls()[1].json();
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], key.as_str());
    assert_eq!(resolve["routing_key"], PAGERDUTY_ROUTING_KEY);
    assert_eq!(pd.alerts()[&key].status, "resolved");
    assert_eq!(pd.alerts()[&key].triggers, 1);
    wait_until("the resolve in the thread", || {
        thread_lines(&l, "Resolved the on-call page (PagerDuty)") == 1
    })
    .await;
    app.healing.sweep().await.unwrap();
    assert_eq!(pd.calls().len(), 2);
}

async fn a_refused_page_is_reported_once_and_never_retried(db: Db) {
    let pd = FakePagerDuty::start().await;
    let Some(l) = pagerduty_app(db, &pd).await else {
        return;
    };
    let app = &l.h.app;
    let id = until_plan_offered(&l, PIPELINE).await;
    // PagerDuty refuses the event (and quotes the key back, as a careless
    // proxy might): said in the thread, without the key.
    pd.reply_next(
        400,
        &[],
        json!({"status": "invalid event", "message": "Event object is invalid",
               "errors": [format!("Routing key {PAGERDUTY_ROUTING_KEY} is not assigned to a service")]}),
    );
    expire(&l, id).await;
    wait_until("the refusal in the thread", || {
        thread_lines(&l, "Paging failed (PagerDuty)") == 1
    })
    .await;
    let line =
        l.h.slack
            .messages(SLACK_CHANNEL)
            .into_iter()
            .find(|m| m.blocks.to_string().contains("Paging failed"))
            .unwrap()
            .blocks
            .to_string();
    assert!(line.contains("HTTP 400"), "{line}");
    assert!(line.contains("Event object is invalid"), "{line}");
    assert!(line.contains("Nobody was paged"), "{line}");
    assert!(!line.contains(PAGERDUTY_ROUTING_KEY), "{line}");
    let pages = app.store.pages_for_incident(id).await.unwrap();
    assert_eq!(pages[0].status, PageStatus::Dead);
    assert!(!pages[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains(PAGERDUTY_ROUTING_KEY));
    let failed = audit_kinds(app, "page.failed").await;
    assert_eq!(failed.len(), 1);
    assert!(!failed[0].to_string().contains(PAGERDUTY_ROUTING_KEY));

    // Never retried, and healing does not resolve a page nobody got.
    app.clock_advance_minutes(10);
    app.healing.sweep().await.unwrap();
    app.healing.paging().deliver_due().await.unwrap();
    recover(app).await;
    wait_for_status(app, id, IncidentStatus::Resolved).await;
    app.healing.sweep().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(pd.calls().len(), 1);
    let pages = app.store.pages_for_incident(id).await.unwrap();
    assert_eq!(pages.len(), 1, "{pages:?}");
}

async fn opsgenie_is_paged_with_the_alias_after_a_rate_limit_and_closed_when_healed(db: Db) {
    let og = FakeOpsgenie::start(OPSGENIE_API_KEY).await;
    let url = og.url();
    let Some(l) = loop_app_with(db, PLAYBOOK, move |c| {
        c.paging.provider = "opsgenie".into();
        c.paging.opsgenie.api_url = url;
    })
    .await
    else {
        return;
    };
    let app = &l.h.app;
    let id = until_plan_offered(&l, PIPELINE).await;
    og.throttle_next(Some("20"));
    expire(&l, id).await;
    wait_until("the throttled attempt", || og.calls().len() == 1).await;
    let pages = loop {
        let pages = app.store.pages_for_incident(id).await.unwrap();
        if pages[0].status == PageStatus::Pending && pages[0].attempts == 1 {
            break pages;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // Retried when Opsgenie said, not before.
    assert_eq!(
        pages[0].next_attempt_at,
        app.clock.now() + Duration::seconds(20)
    );
    assert_eq!(app.healing.paging().deliver_due().await.unwrap(), 0);
    assert_eq!(og.calls().len(), 1);
    app.clock.advance(Duration::seconds(20));
    app.healing.paging().deliver_due().await.unwrap();
    wait_until("the retried alert", || og.calls().len() == 2).await;

    let call = &og.calls()[1];
    assert_eq!(
        (call.method.as_str(), call.path.as_str()),
        ("POST", "/v2/alerts")
    );
    assert_eq!(
        call.headers["authorization"],
        format!("GenieKey {OPSGENIE_API_KEY}")
    );
    assert_eq!(call.headers["content-type"], "application/json");
    let alert = call.json();
    let key = format!("pipemedic-incident-{id}");
    assert_eq!(alert["alias"], key.as_str());
    assert!(alert["message"].as_str().unwrap().chars().count() <= 130);
    assert!(alert["message"].as_str().unwrap().contains(PIPELINE));
    assert!(["P1", "P2", "P3"].contains(&alert["priority"].as_str().unwrap()));
    assert_eq!(alert["details"]["incident"], id.to_string());
    assert_eq!(alert["entity"], PIPELINE);
    assert!(!call.body.contains(OPSGENIE_API_KEY));
    assert_eq!(og.alerts()[&key].status, "open");
    wait_until("the page in the thread", || {
        thread_lines(&l, "Paged on-call (Opsgenie)") == 1
    })
    .await;
    let pages = app.store.pages_for_incident(id).await.unwrap();
    assert_eq!((pages[0].status, pages[0].attempts), (PageStatus::Sent, 2));

    recover(app).await;
    wait_for_status(app, id, IncidentStatus::Resolved).await;
    wait_until("the close at Opsgenie", || og.calls().len() == 3).await;
    let close = &og.calls()[2];
    assert_eq!(
        close.path,
        format!("/v2/alerts/{key}/close?identifierType=alias")
    );
    assert_eq!(
        close.headers["authorization"],
        format!("GenieKey {OPSGENIE_API_KEY}")
    );
    assert_eq!(close.json()["source"], "pipemedic");
    assert_eq!(og.alerts()[&key].status, "closed");
    assert_eq!(og.alerts()[&key].count, 1);
    // Settled in the transaction that says so in the thread.
    wait_until("the close in the thread", || {
        thread_lines(&l, "Resolved the on-call page (Opsgenie)") == 1
    })
    .await;
    let resolve = app
        .store
        .pages_for_incident(id)
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.action == PageAction::Resolve)
        .unwrap();
    assert_eq!(resolve.status, PageStatus::Sent);
}

/// The `n`-th failed execution of the Test stage (after the first), at
/// `hour`:00, as CodePipeline reports it and knows it.
async fn fails_again(l: &Loop, n: u32, hour: u32) {
    let execution = format!("{n}137f7cb-7cf7-4f0f-8b0c-5e0a1c2d3e4f");
    l.codepipeline.add_execution(
        PIPELINE,
        ExecutionSpec::new(
            &execution,
            "Failed",
            format!("2026-11-20T{hour:02}:00:00Z").parse().unwrap(),
        )
        .action("Test", "UnitTests", "Failed", 218, 430),
    );
    l.bedrock.reply_with_tool(model_plan());
    failed_execution_at(&l.h.app, PIPELINE, &execution, hour).await;
}

async fn two_fixes_that_did_not_heal_page_the_on_call(db: Db) {
    let pd = FakePagerDuty::start().await;
    let Some(l) = pagerduty_app(db, &pd).await else {
        return;
    };
    let app = &l.h.app;
    let id = until_plan_offered(&l, PIPELINE).await;
    // The first fix runs and does not heal: a new plan, nobody paged.
    let plan = slack_plan(&l, 1).await;
    react(app, "EvFix1", APPROVER_SLACK, &plan).await;
    wait_for_status(app, id, IncidentStatus::Verifying).await;
    fails_again(&l, 4, 12).await;
    let plan = slack_plan(&l, 2).await;
    wait_for_status(app, id, IncidentStatus::AwaitingApproval).await;
    assert!(app.store.pages_for_incident(id).await.unwrap().is_empty());
    assert!(pd.calls().is_empty());
    // The second does not heal either: the on-call is paged.
    react(app, "EvFix2", APPROVER_SLACK, &plan).await;
    wait_for_status(app, id, IncidentStatus::Verifying).await;
    fails_again(&l, 5, 14).await;
    wait_until("the trigger at PagerDuty", || pd.calls().len() == 1).await;
    let event = pd.calls()[0].json();
    assert_eq!(event["dedup_key"], format!("pipemedic-incident-{id}"));
    assert!(
        event["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("fixes did not heal the pipeline 2 times"),
        "{event}"
    );
    assert_eq!(audit_kinds(app, "healing.not_healed").await.len(), 2);
    wait_until("the page in the thread", || {
        thread_lines(&l, "Paged on-call (PagerDuty)") == 1
    })
    .await;
}

async fn a_page_its_process_left_mid_call_is_sent_once_by_another(db: Db) {
    let pd = FakePagerDuty::start().await;
    let Some(l) = pagerduty_app(db, &pd).await else {
        return;
    };
    let app = &l.h.app;
    let id = until_plan_offered(&l, PIPELINE).await;
    // The first attempt is throttled for a minute.
    pd.throttle_next(Some("60"));
    expire(&l, id).await;
    wait_until("the throttled attempt", || pd.calls().len() == 1).await;
    let page = loop {
        let pages = app.store.pages_for_incident(id).await.unwrap();
        if pages[0].status == PageStatus::Pending && pages[0].attempts == 1 {
            break pages[0].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // A process claims it when it is due and stops before settling it.
    let due = page.next_attempt_at;
    let mut tx = app.store.begin_write().await.unwrap();
    let claimed = tx
        .claim_page(page.id, "crashed-replica", due, due - Duration::minutes(2))
        .await
        .unwrap();
    assert!(claimed.is_some());
    tx.commit().await.unwrap();
    // While its claim is fresh nobody else sends it.
    app.clock.set(due + Duration::seconds(30));
    assert_eq!(app.healing.paging().deliver_due().await.unwrap(), 0);
    assert_eq!(pd.calls().len(), 1);
    // Once the claim is abandoned, two replicas at once send it once.
    app.clock.set(due + Duration::minutes(3));
    let other = app.healing.paging().clone().with_process_id("replica-b");
    let (a, b) = tokio::join!(app.healing.paging().deliver_due(), other.deliver_due());
    a.unwrap();
    b.unwrap();
    wait_until("the page in the thread", || {
        thread_lines(&l, "Paged on-call (PagerDuty)") == 1
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(pd.calls().len(), 2);
    let key = format!("pipemedic-incident-{id}");
    assert_eq!(pd.alerts()[&key].triggers, 1);
    let pages = app.store.pages_for_incident(id).await.unwrap();
    assert_eq!(pages[0].status, PageStatus::Sent);
    assert_ne!(pages[0].claimed_by.as_deref(), Some("crashed-replica"));
    // The stopped process's late report changes nothing.
    let mut tx = app.store.begin_write().await.unwrap();
    assert!(!tx
        .settle_page(
            page.id,
            "crashed-replica",
            PageStatus::Dead,
            Some("late"),
            app.clock.now()
        )
        .await
        .unwrap());
    drop(tx);
    assert_eq!(audit_kinds(app, "page.sent").await.len(), 1);
}

on_both_databases!(
    a_page_its_process_left_mid_call_is_sent_once_by_another,
    a_plan_unapproved_at_half_its_expiry_is_reminded_once,
    an_expired_plan_pages_pagerduty_once_and_the_heal_resolves_it,
    a_refused_page_is_reported_once_and_never_retried,
    opsgenie_is_paged_with_the_alias_after_a_rate_limit_and_closed_when_healed,
    two_fixes_that_did_not_heal_page_the_on_call,
);

/// A writer that keeps everything logged, for the secret check.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of a page's life (queued, throttled, refused, sent,
/// resolved) at the most verbose level: neither key appears.
#[tokio::test]
async fn no_paging_secret_is_ever_logged() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let pd = FakePagerDuty::start().await;
    let Some(l) = pagerduty_app(Db::Sqlite, &pd).await else {
        return;
    };
    let app = &l.h.app;
    let id = until_plan_offered(&l, PIPELINE).await;
    pd.throttle_next(None);
    pd.reply_next(
        500,
        &[],
        json!({"status": "error", "message": format!("key {PAGERDUTY_ROUTING_KEY}")}),
    );
    expire(&l, id).await;
    for _ in 0..3 {
        app.clock.advance(Duration::minutes(6));
        app.healing.paging().deliver_due().await.unwrap();
    }
    wait_until("the trigger accepted", || {
        pd.alerts()
            .contains_key(&format!("pipemedic-incident-{id}"))
    })
    .await;
    recover(app).await;
    wait_for_status(app, id, IncidentStatus::Resolved).await;
    wait_until("the resolve", || pd.calls().len() == 4).await;
    // The debug form of what holds the key hides it too.
    let loaded = format!("{:?}", crate::helpers::test_secrets());
    assert!(!loaded.contains(PAGERDUTY_ROUTING_KEY) && !loaded.contains(OPSGENIE_API_KEY));
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(logs.contains("Page delivered."), "the capture saw paging");
    assert!(!logs.contains(PAGERDUTY_ROUTING_KEY));
    assert!(!logs.contains(OPSGENIE_API_KEY));
    // Nor does anything stored (pages, audit, chat outbox).
    let stored = format!(
        "{:?}{:?}{:?}",
        app.store.pages_for_incident(id).await.unwrap(),
        app.store
            .audit_since(chrono::DateTime::<chrono::Utc>::MIN_UTC)
            .await
            .unwrap(),
        app.store.outbox(None).await.unwrap()
    );
    assert!(!stored.contains(PAGERDUTY_ROUTING_KEY));
}
