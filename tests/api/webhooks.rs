//! Provider webhooks over HTTP with recorded payloads: signatures, replays,
//! shapes, unknown events and out-of-order CodePipeline events.

use pipemedic::domain::RunStatus;
use pipemedic::ingest::signature::sign_github;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn_app, Db, TestApp, AWS_SECRET, GITHUB_SECRET, GITLAB_TOKEN};

const RUN_COMPLETED: &str = include_str!("../fixtures/github/workflow_run-completed-failure.json");
const JOB_COMPLETED: &str = include_str!("../fixtures/github/workflow_job-completed-failure.json");
const PING: &str = include_str!("../fixtures/github/ping.json");
const CP_FAILED: &str = include_str!("../fixtures/aws/codepipeline-failed-execution.json");
const CB_STANDALONE: &str = include_str!("../fixtures/aws/codebuild-standalone-succeeded.json");
const GL_PIPELINE: &str = include_str!("../fixtures/gitlab/pipeline-failed.json");

pub(crate) async fn github(
    app: &TestApp,
    event: &str,
    delivery: &str,
    body: &str,
    signature: Option<String>,
) -> reqwest::Response {
    let mut req = app
        .http
        .post(app.url("/v1/webhooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .body(body.to_string());
    if let Some(sig) = signature {
        req = req.header("x-hub-signature-256", sig);
    }
    req.send().await.unwrap()
}

pub(crate) fn signed(body: &str) -> Option<String> {
    Some(sign_github(GITHUB_SECRET.as_bytes(), body.as_bytes()))
}

async fn github_workflow_run_is_stored_once_and_shows_in_health(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let res = github(
        &app,
        "workflow_run",
        "d-1",
        RUN_COMPLETED,
        signed(RUN_COMPLETED),
    )
    .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "stored");
    assert_eq!(body["runs"][0]["pipeline"], "octo-org/octo-repo/test");

    // The same delivery again: answered, stored once.
    let res = github(
        &app,
        "workflow_run",
        "d-1",
        RUN_COMPLETED,
        signed(RUN_COMPLETED),
    )
    .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "duplicate");
    assert_eq!(app.store.count_runs().await.unwrap(), 1);

    let stored = app
        .store
        .get_run("octo-org/octo-repo/test", "289782451", 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.run.status, RunStatus::Failed);
    assert_eq!(stored.source, "github");

    // A job event of the same run adds its stage.
    let res = github(
        &app,
        "workflow_job",
        "d-2",
        JOB_COMPLETED,
        signed(JOB_COMPLETED),
    )
    .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let stored = app
        .store
        .get_run("octo-org/octo-repo/test", "289782451", 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.run.status,
        RunStatus::Failed,
        "a job event never reopens a finished run"
    );
    assert!(
        stored
            .run
            .stages
            .iter()
            .any(|s| s.name == "integration-tests" && s.job_id.as_deref() == Some("7512098341")),
        "the job's id is kept for its log: {:?}",
        stored.run.stages
    );

    let health: Value = app
        .get_json("/v1/pipelines/octo-org%2Focto-repo%2Ftest/health")
        .await;
    assert_eq!(health["last_run"]["run_id"], "289782451");
    assert_eq!(health["last_run"]["status"], "failed");
}

async fn github_bad_signatures_store_nothing(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let wrong = Some(sign_github(b"not-the-secret", RUN_COMPLETED.as_bytes()));
    for (delivery, sig) in [
        ("a", wrong),
        ("b", None),
        ("c", Some("sha256=zz".to_string())),
    ] {
        let res = github(&app, "workflow_run", delivery, RUN_COMPLETED, sig).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "bad_signature");
    }
    // A body changed after signing.
    let tampered = RUN_COMPLETED.replace("failure", "success");
    let res = github(&app, "workflow_run", "d", &tampered, signed(RUN_COMPLETED)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.store.count_runs().await.unwrap(), 0);
    // The failed deliveries were not recorded: a good one with the same id is stored.
    let res = github(
        &app,
        "workflow_run",
        "a",
        RUN_COMPLETED,
        signed(RUN_COMPLETED),
    )
    .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(app.store.count_runs().await.unwrap(), 1);
}

async fn github_ping_unknown_and_malformed(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let res = github(&app, "ping", "p-1", PING, signed(PING)).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ignored");
    let push = r#"{"ref":"refs/heads/main"}"#;
    let res = github(&app, "push", "p-2", push, signed(push)).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let bad = "{\"action\": ";
    let res = github(&app, "workflow_run", "p-3", bad, signed(bad)).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "malformed_json");
    let shape = r#"{"action":"completed","workflow_run":{"id":"not-a-number"}}"#;
    let res = github(&app, "workflow_run", "p-4", shape, signed(shape)).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "invalid_shape");
    assert_eq!(body["details"][0]["field"], "repository", "{body}");
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(100 * 1024));
    let res = github(&app, "workflow_run", "p-5", &huge, signed(&huge)).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.store.count_runs().await.unwrap(), 0);
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("pipemedic_events_ignored_total{source=\"github\",event=\"ping\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pipemedic_events_ignored_total{source=\"github\",event=\"push\"} 1"),
        "{metrics}"
    );
}

pub(crate) async fn aws(app: &TestApp, event: &Value, secret: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/webhooks/aws"))
        .header("x-pipemedic-secret", secret)
        .json(event)
        .send()
        .await
        .unwrap()
}

async fn codepipeline_events_out_of_order_make_one_failed_run(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let events: Vec<Value> = serde_json::from_str(CP_FAILED).unwrap();
    // A fixed shuffle: the pipeline's end first, starts last.
    let order = [13, 12, 4, 0, 11, 7, 2, 9, 5, 1, 10, 3, 8, 6];
    for i in order {
        let res = aws(&app, &events[i], AWS_SECRET).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED, "event {i}");
    }
    // A redelivered event changes nothing.
    let res = aws(&app, &events[13], AWS_SECRET).await;
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "duplicate");
    assert_eq!(app.store.count_runs().await.unwrap(), 1);
    let pipeline = events[0]["detail"]["pipeline"].as_str().unwrap();
    let execution = events[0]["detail"]["execution-id"].as_str().unwrap();
    let run = app
        .store
        .get_run(pipeline, execution, 1)
        .await
        .unwrap()
        .unwrap()
        .run;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.stage.as_deref(), Some("Test"));
    assert_eq!(run.duration_s(), Some(432.0));
    let durations: Vec<(String, Option<f64>)> = run
        .stages
        .iter()
        .map(|s| (s.name.clone(), s.duration_s()))
        .collect();
    assert_eq!(
        durations,
        [
            ("Source".to_string(), Some(4.0)),
            ("Build".to_string(), Some(211.0)),
            ("Test".to_string(), Some(213.0))
        ]
    );
}

async fn aws_secret_and_standalone_builds(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let build: Value = serde_json::from_str(CB_STANDALONE).unwrap();
    let res = aws(&app, &build, "wrong").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .http
        .post(app.url("/v1/webhooks/aws"))
        .json(&build)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.store.count_runs().await.unwrap(), 0);
    let res = aws(&app, &build, AWS_SECRET).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(app.store.pipelines().await.unwrap(), ["nightly-report"]);
    let other = serde_json::json!({"id": "x-1", "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2", "time": "2026-11-20T10:00:00Z", "detail": {}});
    let res = aws(&app, &other, AWS_SECRET).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ignored");
}

async fn gitlab_pipeline_hook(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let post = |token: &'static str| {
        app.http
            .post(app.url("/v1/webhooks/gitlab"))
            .header("x-gitlab-token", token)
            .header("x-gitlab-event", "Pipeline Hook")
            .header("x-gitlab-event-uuid", "uuid-1")
            .header("content-type", "application/json")
            .body(GL_PIPELINE)
            .send()
    };
    assert_eq!(
        post("wrong").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.store.count_runs().await.unwrap(), 0);
    let res = post(GITLAB_TOKEN).await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let res = post(GITLAB_TOKEN).await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "duplicate");
    assert_eq!(
        app.store.pipelines().await.unwrap(),
        ["gitlab-org/gitlab-test"]
    );
    assert_eq!(app.store.count_runs().await.unwrap(), 1);
    // The failed job's id is kept with the run, for its trace.
    let run = app
        .store
        .get_run("gitlab-org/gitlab-test", "31", 1)
        .await
        .unwrap()
        .unwrap()
        .run;
    let failed = run.stages.iter().find(|s| s.name == "test-build").unwrap();
    assert_eq!(failed.job_id.as_deref(), Some("378"));
}

crate::on_both_databases!(
    github_workflow_run_is_stored_once_and_shows_in_health,
    github_bad_signatures_store_nothing,
    github_ping_unknown_and_malformed,
    codepipeline_events_out_of_order_make_one_failed_run,
    aws_secret_and_standalone_builds,
    gitlab_pipeline_hook,
);
