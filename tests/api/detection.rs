//! Detection through the API: runs are scored as they are stored, abnormal
//! runs open anomaly records, and `pipemedic check` gates on the verdict.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Db, TestApp, INGEST_TOKEN};

/// The `i`-th run of a steady pipeline: about 420 s, a few flaky tests.
pub fn run_json(pipeline: &str, i: u32, duration_s: f64, failed: u64) -> Value {
    let start = chrono::DateTime::parse_from_rfc3339("2026-09-01T00:00:00Z").unwrap()
        + chrono::Duration::hours(i64::from(i) * 2);
    let jitter = ((i * 7919) % 31) as f64 - 15.0;
    let end = start + chrono::Duration::milliseconds(((duration_s + jitter) * 1000.0) as i64);
    json!({"pipeline": pipeline, "run_id": format!("r{i}"), "status": "succeeded",
           "started_at": start.to_rfc3339(), "finished_at": end.to_rfc3339(),
           "commit": format!("c{i:04}"),
           "tests": {"total": 800, "failed": failed},
           "resources": {"cpu_peak_pct": 60.0 + jitter / 3.0, "mem_peak_mb": 2000.0 + jitter * 4.0}})
}

async fn post(app: &TestApp, body: &Value) -> Value {
    let res = app.post_runs(body.to_string()).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn history(app: &TestApp, pipeline: &str, n: u32) {
    let runs: Vec<Value> = (0..n)
        .map(|i| run_json(pipeline, i, 420.0, u64::from(i % 3)))
        .collect();
    let body = post(app, &Value::Array(runs)).await;
    let flagged = body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verdict"]["grade"].as_f64().unwrap_or(0.0) > 0.0)
        .count();
    assert!(flagged <= 2, "{flagged} of {n} normal runs flagged");
}

async fn abnormal_runs_are_graded_and_open_one_anomaly(db: Db) {
    let app = spawn_app(db).await.unwrap();
    history(&app, "checkout-service", 100).await;
    let body = post(&app, &run_json("checkout-service", 100, 1300.0, 180)).await;
    let verdict = &body["runs"][0]["verdict"];
    assert!(verdict["grade"].as_f64().unwrap() > 0.0, "{body}");
    let anomaly_id = verdict["anomaly_id"].as_i64().expect("an anomaly record");
    let metrics: Vec<&str> = verdict["deviations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["metric"].as_str().unwrap())
        .collect();
    assert!(
        metrics.contains(&"duration_s") || metrics.contains(&"test_failure_rate"),
        "{metrics:?}"
    );
    // The verdict is stored with the run and the anomaly names the run.
    let anomaly = app.store.anomaly(anomaly_id).await.unwrap().unwrap();
    assert_eq!(anomaly.first_run_id, "r100");
    assert_eq!(anomaly.pipeline, "checkout-service");
    let stored = app
        .store
        .get_run("checkout-service", "r100", 1)
        .await
        .unwrap()
        .unwrap();
    let stored_verdict = app.store.verdict_of(stored.pk).await.unwrap().unwrap();
    assert_eq!(stored_verdict.anomaly_id, Some(anomaly_id));
    // Normal runs afterwards close it.
    for i in 101..106 {
        post(&app, &run_json("checkout-service", i, 420.0, 1)).await;
    }
    let anomaly = app.store.anomaly(anomaly_id).await.unwrap().unwrap();
    assert_eq!(anomaly.status, pipemedic::domain::AnomalyStatus::Closed);
    let audit = app
        .store
        .audit_since(chrono::DateTime::UNIX_EPOCH)
        .await
        .unwrap();
    assert!(audit.iter().any(|e| e.kind == "anomaly.detected"));
    // Another pipeline's normal is its own: nothing was learned across.
    let other = post(&app, &run_json("payments", 0, 1300.0, 180)).await;
    assert_eq!(other["runs"][0]["verdict"]["warming_up"], true);
}

/// Runs the real `pipemedic check` binary against the app.
async fn run_check(app: &TestApp, token: &str, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pipemedic"));
    command
        .args(["check", "--server", &app.base, "--pipeline", "web"])
        .args(args)
        .env("PIPEMEDIC_INGEST_TOKEN", token);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

async fn check_exits_3_for_an_abnormal_run_and_0_for_a_normal_one(db: Db) {
    let app = spawn_app(db).await.unwrap();
    history(&app, "web", 100).await;
    // The binary stamps its run with the machine's clock; the server bounds
    // future timestamps by its own, so the two must agree.
    app.clock.set(chrono::Utc::now());
    let metrics = [
        "--tests-total",
        "800",
        "--cpu-peak-pct",
        "60",
        "--mem-peak-mb",
        "2000",
    ];
    let mut normal_args = vec![
        "--run-id",
        "n1",
        "--duration-s",
        "425",
        "--tests-failed",
        "1",
    ];
    normal_args.extend(metrics);
    let normal = run_check(&app, INGEST_TOKEN, &normal_args).await;
    let out = String::from_utf8_lossy(&normal.stdout);
    assert_eq!(normal.status.code(), Some(0), "{out}");
    assert!(out.starts_with("normal"), "{out}");

    let mut abnormal_args = vec![
        "--run-id",
        "a1",
        "--duration-s",
        "1500",
        "--tests-failed",
        "200",
    ];
    abnormal_args.extend(metrics);
    let abnormal = run_check(&app, INGEST_TOKEN, &abnormal_args).await;
    let out = String::from_utf8_lossy(&abnormal.stdout);
    assert_eq!(abnormal.status.code(), Some(3), "{out}");
    assert!(out.starts_with("ANOMALOUS"), "{out}");

    // A wrong token is refused: bad input, exit 2, never a silent pass.
    let refused = run_check(&app, "wrong", &["--duration-s", "10"]).await;
    assert_eq!(refused.status.code(), Some(2));
}

crate::on_both_databases!(
    abnormal_runs_are_graded_and_open_one_anomaly,
    check_exits_3_for_an_abnormal_run_and_0_for_a_normal_one,
);
