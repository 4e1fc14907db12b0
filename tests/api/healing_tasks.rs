//! Healing never blocks: while an approved step is in progress (its
//! CodePipeline call held at the stand-in until the test lets it go),
//! runs are still ingested and scored, and another plan's approval is
//! decided and run; the held step then finishes, once.

use pipemedic::domain::IncidentStatus;
use pipemedic::store::ExecutionState;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::healing::{
    failed_execution_at, history, incident_of, known_failed_execution, loop_app, model_plan,
    normal_run, react, slack_plan, status_of, wait_for_status, APPROVER_SLACK, EXECUTION,
};
use crate::helpers::Db;
use crate::on_both_databases;

async fn request_of(app: &crate::helpers::TestApp, incident: i64) -> i64 {
    app.store
        .approval_requests_for_incident(&incident.to_string())
        .await
        .unwrap()[0]
        .id
}

async fn a_step_in_progress_holds_up_neither_ingest_nor_other_decisions(db: Db) {
    let Some(l) = loop_app(db).await else { return };
    let app = &l.h.app;
    let (first_p, second_p) = ("checkout-service", "billing-service");
    for (pipeline, hour) in [(first_p, 10), (second_p, 11)] {
        known_failed_execution(&l, pipeline);
        l.bedrock.reply_with_tool(model_plan());
        history(app, pipeline).await;
        failed_execution_at(app, pipeline, EXECUTION, hour).await;
        let id = incident_of(app, pipeline).await;
        wait_for_status(app, id, IncidentStatus::AwaitingApproval).await;
    }
    let (first, second) = (
        incident_of(app, first_p).await,
        incident_of(app, second_p).await,
    );
    let (plan1, plan2) = (slack_plan(&l, 1).await, slack_plan(&l, 2).await);

    // The first fix's call is held at CodePipeline until the test says.
    let gate = l.codepipeline.hold_next("RetryStageExecution");
    react(app, "EvFirst", APPROVER_SLACK, &plan1).await;
    let request1 = request_of(app, first).await;
    let mut running = false;
    for _ in 0..750 {
        let steps = app.store.executions(request1).await.unwrap();
        running = steps.iter().any(|e| e.status == ExecutionState::Running);
        if running {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(running, "the first step never started");

    // Ingest and scoring go on: a new pipeline's runs are stored and scored.
    history(app, "inventory-service").await;
    let next = normal_run(
        "inventory-service",
        "later",
        "2026-11-20T09:00:00Z".parse().unwrap(),
    );
    let res = app.post_runs(next.to_string()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["runs"][0]["verdict"].is_object(),
        "no verdict while a step runs: {body}"
    );

    // Another plan's approval is decided and its fix runs meanwhile.
    react(app, "EvSecond", APPROVER_SLACK, &plan2).await;
    wait_for_status(app, second, IncidentStatus::Verifying).await;
    assert_eq!(status_of(app, first).await, IncidentStatus::Remediating);

    // Let the first call finish: it ran once, and the loop moves on.
    gate.notify_one();
    wait_for_status(app, first, IncidentStatus::Verifying).await;
    let retries = l.codepipeline.calls_of("RetryStageExecution");
    let per = |p: &str| {
        retries
            .iter()
            .filter(|c| c["pipelineName"] == json!(p))
            .count()
    };
    assert_eq!((per(first_p), per(second_p)), (1, 1), "{retries:?}");
}

on_both_databases!(a_step_in_progress_holds_up_neither_ingest_nor_other_decisions);
