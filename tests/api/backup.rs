//! `pipemedic backup FILE`: an online, consistent copy of the SQLite store
//! made by the real binary while a running server keeps storing runs; the
//! copy passes an integrity check and holds whole transactions only; an
//! existing file is kept unless `--force`; a PostgreSQL store is refused
//! with a pointer to pg_dump; and the restore the README describes (stop,
//! copy the file back, start) brings the data back.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use pipemedic::clock::ManualClock;
use pipemedic::startup::Application;
use sqlx::Row;

use crate::helpers::{
    loaded, spawn_app, t, test_aws_settings, test_secrets, Db, INGEST_TOKEN, READ_TOKEN,
};

const PIPELINE: &str = "backed-up";

fn run(i: usize) -> serde_json::Value {
    let start = t("2026-11-20T00:00:00Z") + chrono::Duration::seconds(i as i64);
    serde_json::json!({
        "pipeline": PIPELINE,
        "run_id": format!("r{i}"),
        "status": "succeeded",
        "started_at": start.to_rfc3339(),
        "finished_at": (start + chrono::Duration::seconds(30 + (i % 7) as i64)).to_rfc3339(),
        "tests": {"total": 100, "failed": i % 3, "skipped": 0},
        "resources": {"cpu_peak_pct": 40.0 + (i % 10) as f64},
    })
}

/// Runs `pipemedic --config CONFIG backup ARGS...`.
async fn pipemedic_backup(config: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_pipemedic"))
        .arg("--config")
        .arg(config)
        .arg("backup")
        .args(args)
        .env_remove("PIPEMEDIC_CONFIG")
        .env_remove("PIPEMEDIC_STORE__URL")
        .output()
        .await
        .expect("pipemedic runs")
}

/// Counts in a SQLite file opened on its own.
async fn counts(url: &str) -> (String, i64, i64) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("{url}?mode=ro"))
        .await
        .unwrap();
    let integrity: String = sqlx::query("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
    let one = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
                .get::<i64, _>(0)
        }
    };
    let runs = one("SELECT COUNT(*) FROM runs").await;
    // The built-in metrics are columns of the run.
    let samples = one(
        "SELECT COUNT(sample_duration_s) + COUNT(sample_test_failure_rate) \
         + COUNT(sample_cpu_peak_pct) + COUNT(sample_mem_peak_mb) + COUNT(sample_error_rate) \
         + COUNT(sample_latency_p95_ms) FROM runs",
    )
    .await;
    pool.close().await;
    (integrity, runs, samples)
}

/// The files of this process open on `db_file` or its `-wal` and `-shm`.
fn open_handles_on(db_file: &str) -> Vec<String> {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| target.trim_end_matches(" (deleted)").starts_with(db_file))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_runs_are_written_then_restore_it() {
    let mut app = spawn_app(Db::Sqlite).await.unwrap();
    let db_file = app._db.url.trim_start_matches("sqlite://").to_string();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipemedic.toml");
    std::fs::write(&config, format!("[store]\nurl = \"{}\"\n", app._db.url)).unwrap();
    let batch = |from: usize| -> String {
        serde_json::to_string(&(from..from + 10).map(run).collect::<Vec<_>>()).unwrap()
    };
    assert_eq!(app.post_runs(batch(0)).await.status(), 200);

    // A writer that keeps storing batches of ten runs until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let batches = Arc::new(AtomicUsize::new(1));
    let writer = {
        let (stop, batches) = (stop.clone(), batches.clone());
        let (http, url) = (app.http.clone(), app.url("/v1/runs"));
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let next = batches.load(Ordering::SeqCst) * 10;
                let body =
                    serde_json::to_string(&(next..next + 10).map(run).collect::<Vec<_>>()).unwrap();
                let response = http
                    .post(&url)
                    .bearer_auth(INGEST_TOKEN)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                batches.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    while batches.load(Ordering::SeqCst) < 5 {
        tokio::task::yield_now().await;
    }
    let stored_before = batches.load(Ordering::SeqCst) as i64 * 10;
    let copy = dir.path().join("copy.db");
    let out = pipemedic_backup(&config, &[copy.to_str().unwrap()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("integrity ok"), "{stdout}");
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    let stored_after = app.store.count_runs().await.unwrap();
    assert!(stored_after > stored_before, "the writer kept writing");

    let copy_url = format!("sqlite://{}", copy.display());
    let (integrity, runs, samples) = counts(&copy_url).await;
    assert_eq!(integrity, "ok");
    assert!(
        (stored_before..=stored_after).contains(&runs),
        "{stored_before} <= {runs} <= {stored_after}"
    );
    assert_eq!(runs % 10, 0, "whole batches only: {runs}");
    assert!(stdout.contains(&format!("{runs} runs")), "{stdout}");
    // Every run brings the same metric streams: the copy has them all.
    let live = app
        .store
        .samples(
            PIPELINE,
            "duration_s",
            t("2026-01-01T00:00:00Z"),
            t("2027-01-01T00:00:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(live.len() as i64, stored_after);
    assert_eq!(samples % runs, 0, "{samples} samples for {runs} runs");
    assert!(samples >= 3 * runs, "{samples} samples for {runs} runs");

    // An existing file is kept unless --force.
    let before = std::fs::read(&copy).unwrap();
    let refused = pipemedic_backup(&config, &[copy.to_str().unwrap()]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr).to_string();
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        before,
        "the old copy is untouched"
    );
    let forced = pipemedic_backup(&config, &["--force", copy.to_str().unwrap()]).await;
    assert_eq!(
        forced.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let (integrity, forced_runs, _) = counts(&copy_url).await;
    assert_eq!((integrity.as_str(), forced_runs), ("ok", stored_after));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Restore as the README says: stop, copy the file back, start. The
    // server must have stopped: a connection still open when the file is
    // replaced would write its old log into the restored file.
    app.stop().await;
    let still_open = open_handles_on(&db_file);
    assert!(
        still_open.is_empty(),
        "a stopped server keeps {still_open:?} open"
    );
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{db_file}{suffix}"));
    }
    std::fs::copy(&copy, &db_file).unwrap();
    let restored = Application::build_with(
        loaded(&app._db.url, "127.0.0.1:0", test_secrets()),
        Arc::new(ManualClock::new(t("2026-11-25T12:00:00Z"))),
        test_aws_settings(&Default::default()),
    )
    .await
    .expect("the restored store opens");
    let base = format!("http://127.0.0.1:{}", restored.port());
    let stop_restored = restored.shutdown_token();
    let server = tokio::spawn(restored.run_until_stopped());
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let health: serde_json::Value = http
        .get(format!("{base}/v1/pipelines/{PIPELINE}/health"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["runs_30d"], stored_after, "{health}");
    stop_restored.cancel();
    let _ = server.await;
}

#[tokio::test]
async fn backup_refuses_a_postgresql_store_and_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipemedic.toml");
    std::fs::write(
        &config,
        "[store]\nurl = \"postgres://pm:very-secret@127.0.0.1:1/pm\"\n",
    )
    .unwrap();
    let target = dir.path().join("copy.db");
    let out = pipemedic_backup(&config, &[target.to_str().unwrap()]).await;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("pg_dump"), "{stderr}");
    assert!(!stderr.contains("very-secret"), "{stderr}");
    assert!(!target.exists());

    let missing = dir.path().join("nothing-here.db");
    std::fs::write(
        &config,
        format!("[store]\nurl = \"sqlite://{}\"\n", missing.display()),
    )
    .unwrap();
    let out = pipemedic_backup(&config, &[target.to_str().unwrap()]).await;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no SQLite store at"), "{stderr}");
    assert!(!missing.exists(), "the source is never created");
    assert!(!target.exists());
}
