//! Bounded inputs over HTTP: every ingest route applies the same run limits
//! (422 naming the field and the limit, nothing stored), delivery ids are
//! capped, and request-named event types cannot grow `/metrics`.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    spawn_app_with, t, Db, TestApp, TestDb, AWS_SECRET, GITLAB_TOKEN, INGEST_TOKEN,
};

const RUN_COMPLETED: &str = include_str!("../fixtures/github/workflow_run-completed-failure.json");
const PING: &str = include_str!("../fixtures/github/ping.json");
const CB_STANDALONE: &str = include_str!("../fixtures/aws/codebuild-standalone-succeeded.json");
const GL_PIPELINE: &str = include_str!("../fixtures/gitlab/pipeline-failed.json");

/// 340 characters with an ESC and a channel mention, as a hostile CI job
/// might name its pipeline.
fn hostile_name() -> String {
    format!("\u{1b}[2J<!channel> {}", "x".repeat(327))
}

/// An app that takes bodies large enough to carry oversized runs.
async fn app(db: Db) -> TestApp {
    spawn_app_with(db, |c| c.server.max_body_bytes = 4 * 1024 * 1024)
        .await
        .unwrap()
}

fn small_run(run_id: &str) -> Value {
    json!({"pipeline": "checkout-service", "run_id": run_id, "status": "failed",
           "started_at": "2026-11-20T10:00:00Z", "finished_at": "2026-11-20T10:07:12Z"})
}

/// The 422 answer's details as `field: message` lines.
async fn refused(res: reqwest::Response) -> Vec<String> {
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "invalid_shape", "{body}");
    body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{}: {}",
                d["field"].as_str().unwrap(),
                d["message"].as_str().unwrap()
            )
        })
        .collect()
}

async fn generic_runs_over_the_caps_are_422_naming_the_limit(db: Db) {
    let app = app(db).await;
    // 11,000 custom metrics used to overflow the SQL variable limit (503).
    let mut run = small_run("metrics");
    run["metrics"] = (0..11_000)
        .map(|i| (format!("m{i}"), json!(1.0)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let details = refused(app.post_runs(run.to_string()).await).await;
    assert_eq!(
        details,
        ["metrics: 11000 custom metrics; at most 64 are accepted per run"]
    );

    // 55,000 stages used to take seconds in a quadratic duplicate check.
    let mut run = small_run("stages");
    run["stages"] = (0..55_000)
        .map(|i| json!({"name": format!("s{i}")}))
        .collect::<Vec<_>>()
        .into();
    let details = refused(app.post_runs(run.to_string()).await).await;
    assert_eq!(
        details,
        ["stages: 55000 stages; at most 256 are accepted per run"]
    );
    assert_eq!(app.store.count_runs().await.unwrap(), 0);
}

async fn absurd_values_names_and_timestamps_are_refused(db: Db) {
    let app = app(db).await;
    let mut run = small_run("1");
    run["pipeline"] = hostile_name().into();
    run["resources"] = json!({"cpu_peak_pct": 1.7e308});
    run["metrics"] = json!({"bundle_kb": 1.7e308});
    run["started_at"] = "0000-01-01T00:00:00Z".into();
    run["finished_at"] = "2026-11-28T00:00:00Z".into();
    let res = app.post_runs(run.to_string()).await;
    let details = refused(res).await;
    let fields: Vec<_> = details
        .iter()
        .map(|d| d.split(':').next().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "pipeline",
            "started_at",
            "finished_at",
            "resources.cpu_peak_pct",
            "metrics.bundle_kb"
        ],
        "{details:?}"
    );
    assert_eq!(details[0], "pipeline: longer than 200 characters");
    assert!(details[1].contains("before 2000-01-01"), "{details:?}");
    assert!(details[2].contains("in the future"), "{details:?}");
    // The future is measured by the app's clock (2026-11-25T12:00Z), not
    // the machine's.
    let mut run = small_run("2");
    run["finished_at"] = "2026-11-26T11:00:00Z".into();
    assert_eq!(
        app.post_runs(run.to_string()).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.store.count_runs().await.unwrap(), 1);
}

async fn github(app: &TestApp, event: &str, delivery: &str, body: &str) -> reqwest::Response {
    crate::webhooks::github(app, event, delivery, body, crate::webhooks::signed(body)).await
}

async fn gitlab(app: &TestApp, uuid: &str, body: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/webhooks/gitlab"))
        .header("x-gitlab-token", GITLAB_TOKEN)
        .header("x-gitlab-event", "Pipeline Hook")
        .header("x-gitlab-event-uuid", uuid)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn aws(app: &TestApp, event: &Value) -> reqwest::Response {
    crate::webhooks::aws(app, event, AWS_SECRET).await
}

async fn webhooks_apply_the_run_validation(db: Db) {
    let app = app(db).await;
    // GitHub: a hostile workflow name.
    let mut run: Value = serde_json::from_str(RUN_COMPLETED).unwrap();
    run["workflow_run"]["name"] = hostile_name().into();
    let details = refused(github(&app, "workflow_run", "d-1", &run.to_string()).await).await;
    assert_eq!(details, ["pipeline: longer than 200 characters"]);
    // GitHub: a run that started in year 0.
    let mut run: Value = serde_json::from_str(RUN_COMPLETED).unwrap();
    run["workflow_run"]["run_started_at"] = "0000-01-01T00:00:00Z".into();
    let details = refused(github(&app, "workflow_run", "d-2", &run.to_string()).await).await;
    assert!(details[0].starts_with("started_at: "), "{details:?}");
    // GitLab: a hostile project path with an escape character.
    let mut hook: Value = serde_json::from_str(GL_PIPELINE).unwrap();
    hook["project"]["path_with_namespace"] = "group/\u{1b}]8;;evil\u{7}".into();
    let details = refused(gitlab(&app, "u-1", &hook.to_string()).await).await;
    assert!(
        details[0].starts_with("pipeline: contains the non-printable character U+001B"),
        "{details:?}"
    );
    // AWS: a CodeBuild project name over the limit.
    let mut build: Value = serde_json::from_str(CB_STANDALONE).unwrap();
    build["detail"]["project-name"] = hostile_name().into();
    let details = refused(aws(&app, &build).await).await;
    assert_eq!(details, ["pipeline: longer than 200 characters"]);
    assert_eq!(app.store.count_runs().await.unwrap(), 0);

    // A refused delivery claimed nothing: the same ids with valid bodies
    // are stored.
    let res = github(&app, "workflow_run", "d-1", RUN_COMPLETED).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "stored");
    let res = gitlab(&app, "u-1", GL_PIPELINE).await;
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "stored");
    let build: Value = serde_json::from_str(CB_STANDALONE).unwrap();
    let res = aws(&app, &build).await;
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "stored");
    assert_eq!(app.store.count_runs().await.unwrap(), 3);
}

async fn overlong_delivery_ids_are_refused(db: Db) {
    let app = app(db).await;
    let long = "d".repeat(200 * 1024);
    let res = github(&app, "workflow_run", &long, RUN_COMPLETED).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["message"], "X-GitHub-Delivery: longer than 256 characters",
        "{body}"
    );
    let details = refused(gitlab(&app, &"u".repeat(257), GL_PIPELINE).await).await;
    assert_eq!(details, ["X-Gitlab-Event-UUID: longer than 256 characters"]);
    let mut build: Value = serde_json::from_str(CB_STANDALONE).unwrap();
    build["id"] = "e".repeat(300).into();
    let details = refused(aws(&app, &build).await).await;
    assert_eq!(details, ["id: longer than 256 characters"]);
    let res = app
        .http
        .post(app.url("/v1/runs"))
        .bearer_auth(INGEST_TOKEN)
        .header("content-type", "application/json")
        .header("idempotency-key", "k".repeat(257))
        .body(small_run("1").to_string())
        .send()
        .await
        .unwrap();
    let details = refused(res).await;
    assert_eq!(details, ["Idempotency-Key: longer than 256 characters"]);
    assert_eq!(app.store.count_runs().await.unwrap(), 0);
    // 256 characters are fine.
    let res = github(&app, "workflow_run", &"d".repeat(256), RUN_COMPLETED).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(app.store.count_runs().await.unwrap(), 1);
}

async fn unknown_event_headers_do_not_grow_metrics(db: Db) {
    let app = app(db).await;
    github(&app, "ping", "p-0", PING).await;
    github(&app, "random-event-first", "p-first", PING).await;
    // The first scrape adds the histogram of `/metrics` itself.
    app.metrics_text().await;
    let before = app.metrics_text().await.len();
    for i in 0..200 {
        let res = github(&app, &format!("random-event-{i}"), &format!("p-{i}"), PING).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }
    let after = app.metrics_text().await;
    assert!(!after.contains("random-event"), "{after}");
    assert!(
        after.contains("pipemedic_events_ignored_total{source=\"github\",event=\"other\"} 201"),
        "{after}"
    );
    assert!(
        after.len() < before + 100,
        "/metrics grew from {before} to {} bytes",
        after.len()
    );
}

async fn delivery_ids_are_forgotten_after_the_retention(db: Db) {
    use std::sync::Arc;

    use pipemedic::clock::ManualClock;
    use pipemedic::domain::{Run, RunSource, RunStatus};
    use pipemedic::ingest::IngestService;

    let retention = pipemedic::config::from_sources(None, None, &pipemedic::config::Env::new())
        .unwrap()
        .ingest
        .processed_event_retention_days;
    assert_eq!(retention, 30, "the documented default");
    let db = TestDb::new(db).await.unwrap();
    let store = db.store().await;
    let clock = Arc::new(ManualClock::new(t("2026-11-25T12:00:00Z")));
    let ingest = IngestService::new(
        store.clone(),
        Arc::new(pipemedic::metrics::Metrics::new()),
        clock.clone(),
    );
    let run = Run::new("p", "1", RunStatus::Succeeded);
    let send = || {
        ingest.accept_runs(
            RunSource::Generic,
            Some("key-1"),
            std::slice::from_ref(&run),
            false,
        )
    };
    assert!(!send().await.unwrap().duplicate_delivery);
    clock.advance(chrono::Duration::days(29));
    assert_eq!(ingest.prune_processed_events(retention).await.unwrap(), 0);
    assert!(send().await.unwrap().duplicate_delivery, "still remembered");
    clock.advance(chrono::Duration::days(2));
    assert_eq!(ingest.prune_processed_events(retention).await.unwrap(), 1);
    assert!(
        !send().await.unwrap().duplicate_delivery,
        "forgotten after the retention"
    );
}

crate::on_both_databases!(
    delivery_ids_are_forgotten_after_the_retention,
    generic_runs_over_the_caps_are_422_naming_the_limit,
    absurd_values_names_and_timestamps_are_refused,
    webhooks_apply_the_run_validation,
    overlong_delivery_ids_are_refused,
    unknown_event_headers_do_not_grow_metrics,
);
