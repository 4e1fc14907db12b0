//! Start-up refusals and graceful shutdown.

use std::time::Duration;

use pipemedic::startup::{Application, StartupError};

use crate::helpers::{loaded, test_secrets, Db, TestDb, INGEST_TOKEN};

#[tokio::test]
async fn refuses_public_listen_while_a_route_is_unauthenticated() {
    let db = TestDb::new(Db::Sqlite).await.unwrap();
    let mut secrets = test_secrets();
    secrets.gitlab_token = None;
    let err = Application::build(loaded(&db.url, "0.0.0.0:0", secrets))
        .await
        .err()
        .expect("must refuse");
    match err {
        StartupError::UnauthenticatedPublic { routes, .. } => {
            assert!(routes.contains("/v1/webhooks/gitlab"), "{routes}");
            assert!(!routes.contains("/v1/runs"), "{routes}");
        }
        other => panic!("unexpected: {other}"),
    }
    // With every secret set, a public address is fine.
    let app = Application::build(loaded(&db.url, "0.0.0.0:0", test_secrets()))
        .await
        .expect("all routes authenticated");
    drop(app);
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_stops() {
    let db = TestDb::new(Db::Sqlite).await.unwrap();
    let app = Application::build(loaded(&db.url, "127.0.0.1:0", test_secrets()))
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let stop = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());

    // A large batch in flight while shutdown begins still completes.
    let runs: Vec<_> = (0..500)
        .map(|i| serde_json::json!({"pipeline": "p", "run_id": format!("{i}"), "status": "succeeded"}))
        .collect();
    let client = reqwest::Client::new();
    let request = client
        .post(format!("{base}/v1/runs"))
        .bearer_auth(INGEST_TOKEN)
        .json(&runs)
        .send();
    let in_flight = tokio::spawn(request);
    tokio::time::sleep(Duration::from_millis(5)).await;
    stop.cancel();
    let response = in_flight.await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops within the grace period")
        .unwrap()
        .unwrap();
    let stored = db.store().await.count_runs().await.unwrap();
    match response {
        // Accepted before shutdown: answered in full and stored in full.
        Ok(response) => {
            assert!(response.status().is_success());
            assert_eq!(stored, 500);
        }
        // Refused at the door: nothing half-written.
        Err(_) => assert!(stored == 0 || stored == 500, "{stored}"),
    }
    assert!(
        client.get(format!("{base}/healthz")).send().await.is_err(),
        "no longer listening"
    );
}
