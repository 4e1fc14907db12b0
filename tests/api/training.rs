//! `train`, `backtest` and `accept-baseline` through the real binary on a
//! store filled over the API.

use serde_json::Value;

use crate::helpers::{spawn_app, Db, TestApp};

fn write_config(app: &TestApp, dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("pipemedic.toml");
    std::fs::write(&path, format!("[store]\nurl = \"{}\"\n", app_db_url(app))).unwrap();
    path
}

fn app_db_url(app: &TestApp) -> String {
    app._db.url.clone()
}

async fn cli(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pipemedic"));
    command.arg("--config").arg(config).args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

async fn train_backtest_and_accept_baseline(db: Db) {
    let app = spawn_app(db).await.unwrap();
    let mut runs: Vec<Value> = (0..100)
        .map(|i| crate::detection::run_json("svc", i, 420.0, u64::from(i % 3)))
        .collect();
    runs.push(crate::detection::run_json("svc", 100, 1400.0, 200));
    let res = app.post_runs(Value::Array(runs).to_string()).await;
    assert!(res.status().is_success());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&app, dir.path());

    let out = cli(&config, &["train", "--pipeline", "svc"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("svc: learned 100 runs, skipped 1 graded abnormal"),
        "{stdout}"
    );
    assert!(app.store.load_model("svc").await.unwrap().is_some());

    let out = cli(
        &config,
        &["backtest", "--since", "2026-09-05T00:00:00Z", "--json"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["pipeline"], "svc");
    assert_eq!(
        rows[0]["trained_on"].as_u64().unwrap() + rows[0]["replayed"].as_u64().unwrap(),
        101
    );
    assert!(rows[0]["alerts"].as_u64().unwrap() >= 1, "{rows}");

    let out = cli(
        &config,
        &["accept-baseline", "svc", "duration_s", "--by", "alice"],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        app.store
            .pending_baseline_resets("svc")
            .await
            .unwrap()
            .len(),
        1
    );
    let out = cli(&config, &["accept-baseline", "svc", "colour"]).await;
    assert_eq!(out.status.code(), Some(2));
    let out = cli(&config, &["accept-baseline", "nope"]).await;
    assert_eq!(out.status.code(), Some(2));
    // The next run applies it.
    let res = app
        .post_runs(crate::detection::run_json("svc", 101, 1400.0, 1).to_string())
        .await;
    assert!(res.status().is_success());
    assert!(app
        .store
        .pending_baseline_resets("svc")
        .await
        .unwrap()
        .is_empty());
}

crate::on_both_databases!(train_backtest_and_accept_baseline);
