//! `POST /v1/runs`, health, metrics and the JSON error shape, over HTTP.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Db, INGEST_TOKEN, READ_TOKEN};

fn design_run(run_id: &str) -> Value {
    json!({"pipeline": "checkout-service", "run_id": run_id, "status": "failed",
     "started_at": "2026-11-20T10:00:00Z", "finished_at": "2026-11-20T10:07:12Z",
     "stage": "Test", "commit": "a1b2c3d", "attempt": 1,
     "tests": {"total": 812, "failed": 37, "skipped": 4},
     "resources": {"cpu_peak_pct": 93.5, "mem_peak_mb": 3100},
     "deploy": {"error_rate": 0.002, "latency_p95_ms": 180},
     "metrics": {"any_custom_metric": 1.5},
     "log_excerpt": "...", "log_url": "https://ci.example.com/8f1c"})
}

async fn generic_runs_are_stored_once(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let res = app.post_runs(design_run("8f1c").to_string()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["runs"][0]["outcome"], "inserted");

    let res = app.post_runs(design_run("8f1c").to_string()).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["runs"][0]["outcome"], "duplicate");

    let batch = json!([design_run("a"), design_run("b")]);
    let res = app.post_runs(batch.to_string()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.store.count_runs().await.unwrap(), 3);
}

async fn idempotency_key_replay_is_answered_again(db: Db) {
    let app = spawn_app(db).await.unwrap();
    for expected_duplicate in [false, true] {
        let res = app
            .http
            .post(app.url("/v1/runs"))
            .bearer_auth(INGEST_TOKEN)
            .header("idempotency-key", "build-77")
            .body(design_run("77").to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["duplicate_delivery"], expected_duplicate);
    }
    assert_eq!(app.store.count_runs().await.unwrap(), 1);
}

async fn rejections_are_json_and_store_nothing(db: Db) {
    let app = spawn_app(db).await.unwrap();
    // bad token
    let res = app
        .http
        .post(app.url("/v1/runs"))
        .bearer_auth("wrong")
        .body(design_run("1").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "unauthorized");
    // no token at all
    let res = app
        .http
        .post(app.url("/v1/runs"))
        .body(design_run("1").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // malformed
    let res = app.post_runs("{\"pipeline\": ").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "malformed_json");
    // valid JSON, wrong shape: one good run, one bad: nothing stored
    let mut bad = design_run("2");
    bad["tests"]["failed"] = json!(9999);
    let res = app
        .post_runs(json!([design_run("1"), bad]).to_string())
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "invalid_shape");
    assert_eq!(body["details"][0]["field"], "[1].tests.failed");
    // too large
    let mut huge = design_run("3");
    huge["log_excerpt"] = json!("x".repeat(100 * 1024));
    let res = app.post_runs(huge.to_string()).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "too_large");

    assert_eq!(app.store.count_runs().await.unwrap(), 0);
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(
            "pipemedic_requests_rejected_total{route=\"/v1/runs\",reason=\"unauthorized\"} 2"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("reason=\"too_large\"} 1"), "{metrics}");
}

async fn health_route_matches_the_stored_runs(db: Db) {
    let app = spawn_app(db).await.unwrap();
    // clock is 2026-11-25T12:00Z; three runs within the week, one older.
    let mk = |id: &str, status: &str, day: u32, secs: i64| {
        let start = format!("2026-11-{day:02}T10:00:00Z");
        let end = (start.parse::<chrono::DateTime<chrono::Utc>>().unwrap()
            + chrono::Duration::seconds(secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        json!({"pipeline": "octo-org/octo-repo/test", "run_id": id, "status": status,
               "started_at": start, "finished_at": end})
    };
    let runs = json!([
        mk("1", "succeeded", 20, 400),
        mk("2", "failed", 21, 600),
        mk("3", "succeeded", 22, 500),
        mk("0", "succeeded", 5, 300),
    ]);
    assert_eq!(
        app.post_runs(runs.to_string()).await.status(),
        StatusCode::OK
    );
    let res = app
        .http
        .get(app.url("/v1/pipelines/octo-org%2Focto-repo%2Ftest/health"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h: Value = res.json().await.unwrap();
    assert_eq!(h["pipeline"], "octo-org/octo-repo/test");
    assert_eq!(h["runs_7d"], 3);
    assert_eq!(h["runs_30d"], 4);
    assert_eq!(h["success_rate_7d"], 0.6667);
    assert_eq!(h["success_rate_30d"], 0.75);
    assert_eq!(h["duration_p50_s_7d"], 500.0);
    assert_eq!(h["duration_p95_s_7d"], 590.0);
    assert_eq!(h["last_run"]["run_id"], "3");
    assert_eq!(h["last_run"]["status"], "succeeded");
    assert_eq!(h["open_incidents"], 0);

    // A week later the same runs have left the 7-day window.
    app.clock.advance(chrono::Duration::days(8));
    let h: Value = app
        .get_json("/v1/pipelines/octo-org%2Focto-repo%2Ftest/health")
        .await;
    assert_eq!(h["runs_7d"], 0);
    assert_eq!(h["runs_30d"], 4);
    assert_eq!(h["success_rate_7d"], Value::Null);

    let res = app
        .http
        .get(app.url("/v1/pipelines/nope/health"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .http
        .get(app.url("/v1/pipelines/nope/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

async fn liveness_metrics_and_unknown_routes(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let res = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    app.post_runs(design_run("1").to_string()).await;
    let metrics = app.metrics_text().await;
    assert!(metrics
        .contains("pipemedic_runs_ingested_total{source=\"generic\",outcome=\"inserted\"} 1"));
    assert!(metrics.contains(
        "pipemedic_http_request_duration_seconds_count{route=\"/v1/runs\",method=\"POST\",status=\"200\"} 1"
    ));
    let res = app.http.get(app.url("/nowhere")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
}

crate::on_both_databases!(
    generic_runs_are_stored_once,
    idempotency_key_replay_is_answered_again,
    rejections_are_json_and_store_nothing,
    health_route_matches_the_stored_runs,
    liveness_metrics_and_unknown_routes,
);
