//! `GET /readyz`: ready when the store answers, every embedded migration
//! is applied and shutdown has not begun; otherwise 503 with the reason in
//! the JSON error shape. `/healthz` stays liveness throughout. Each body
//! runs on SQLite and PostgreSQL.

use crate::helpers::{spawn_app, spawn_app_with, Db, TestApp};
use crate::on_both_databases;

async fn readyz(app: &TestApp) -> (u16, serde_json::Value) {
    let response = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

async fn healthz(app: &TestApp) -> u16 {
    app.http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("request sent")
        .status()
        .as_u16()
}

/// A 503 in the error shape whose message contains `reason`.
fn assert_not_ready(answer: &(u16, serde_json::Value), reason: &str) {
    let (status, body) = answer;
    assert_eq!(*status, 503, "{body}");
    assert_eq!(body["code"], "unavailable", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("not ready: "), "{body}");
    assert!(message.contains(reason), "{body}");
}

async fn ready_when_the_store_answers_and_is_migrated(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    let (status, body) = readyz(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::json!({"status": "ready"}));
    let schema = app.store.schema_status().await.unwrap();
    assert!(schema.is_current(), "{schema:?}");
    assert!(schema.embedded >= 7, "{schema:?}");
    // No token is needed, and a wrong one does not matter either.
    let with_token = app
        .http
        .get(app.url("/readyz"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), 200);
}

async fn not_ready_once_shutdown_begins_while_still_serving(db: Db) {
    // A long drain keeps the listener open after the token is cancelled, so
    // the answer during the drain is observable without racing.
    let Some(app) = spawn_app_with(db, |c| c.server.drain_s = 600).await else {
        return;
    };
    assert_eq!(readyz(&app).await.0, 200);
    app.shutdown.cancel();
    assert_not_ready(&readyz(&app).await, "shutting down");
    assert_eq!(healthz(&app).await, 200, "liveness is unaffected");
}

async fn not_ready_when_the_store_is_gone(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    assert_eq!(readyz(&app).await.0, 200);
    // Closing the pool the server uses: every query fails from now on.
    app.store.close().await;
    let answer = readyz(&app).await;
    assert_not_ready(&answer, "the store does not answer");
    let message = answer.1["message"].as_str().unwrap_or_default().to_string();
    assert!(!message.contains("pool"), "no internals: {message}");
    assert_eq!(healthz(&app).await, 200, "liveness is unaffected");
}

async fn not_ready_while_a_migration_is_missing(db: Db) {
    let Some(app) = spawn_app(db).await else {
        return;
    };
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app._db.url).await.unwrap();
    let latest: i64 = sqlx::Row::get(
        &sqlx::query("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(&pool)
            .await
            .unwrap(),
        0,
    );
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(latest)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_not_ready(
        &readyz(&app).await,
        &format!("migrations not applied (versions {latest})"),
    );
}

on_both_databases!(
    ready_when_the_store_answers_and_is_migrated,
    not_ready_once_shutdown_begins_while_still_serving,
    not_ready_when_the_store_is_gone,
    not_ready_while_a_migration_is_missing,
);
