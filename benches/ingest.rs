//! Ingest benchmark: runs/second accepted over loopback HTTP into SQLite and
//! PostgreSQL, with durable commits, and the process's peak RSS.
//!
//! `cargo bench --bench ingest` (PostgreSQL too when
//! `PIPEMEDIC_TEST_POSTGRES_URL` is set). Each figure is also given as a
//! ratio to a baseline measured in the same run: `GET /healthz` requests per
//! second through the same server and client (the HTTP ceiling).
//!
//! After each backend's figures, the ceiling: the same rows stored durably
//! through the same write path as ingest, 100 per transaction, without
//! HTTP or scoring.
//!
//! First, the cost of the run limits check ([`pipemedic::domain::Run::validate`])
//! on a run with the most stages accepted, as a ratio to a one-stage run.

use std::time::Instant;

use pipemedic::startup::Application;

mod support;
use support::{drive, loaded, run_json, CLIENTS, MEASURE, TOKEN};

async fn start(url: &str) -> (String, tokio_util::sync::CancellationToken) {
    let app = Application::build(loaded(url)).await.expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let stop = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    (base, stop)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

async fn bench_backend(name: &str, url: &str) {
    let (base, stop) = start(url).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .expect("client");

    let (c, b) = (client.clone(), base.clone());
    let healthz = drive(0, move |_| {
        let (c, b) = (c.clone(), b.clone());
        async move {
            let ok = c
                .get(format!("{b}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            u64::from(ok)
        }
    })
    .await;

    let (c, b) = (client.clone(), base.clone());
    let single = drive(0, move |n| {
        let (c, b) = (c.clone(), b.clone());
        async move {
            let body = run_json((n % 50) as usize, n).to_string();
            let res = c
                .post(format!("{b}/v1/runs"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            u64::from(res.is_ok_and(|r| r.status().is_success()))
        }
    })
    .await;

    const BATCH: u64 = 100;
    let (c, b) = (client.clone(), base.clone());
    let batched = drive(0, move |n| {
        let (c, b) = (c.clone(), b.clone());
        async move {
            let runs: Vec<_> = (0..BATCH)
                .map(|i| run_json(((n + i) % 50) as usize, 10_000_000 + n * BATCH + i))
                .collect();
            let res = c
                .post(format!("{b}/v1/runs"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(serde_json::Value::Array(runs).to_string())
                .send()
                .await;
            if res.is_ok_and(|r| r.status().is_success()) {
                BATCH
            } else {
                0
            }
        }
    })
    .await;
    stop.cancel();
    let ceiling = ceiling(url).await;

    println!(
        "{name:<10} healthz {healthz:>9.0} req/s | one run per request {single:>8.0} runs/s ({:.2}x healthz) | {BATCH} runs per request {batched:>8.0} runs/s ({:.2}x healthz)",
        single / healthz,
        batched / healthz
    );
    println!(
        "{name:<10} ceiling: durable inserts of the same rows, {BATCH} per transaction, no HTTP or scoring {ceiling:>8.0} runs/s ({:.2}x healthz)",
        ceiling / healthz
    );
}

/// Runs per second stored durably through the write path of ingest
/// ([`pipemedic::store::Store::store_run_calls`]: on a SQLite file the
/// store's rusqlite connection, on PostgreSQL a sqlx transaction), 100
/// per transaction, one transaction after another: the ceiling of what
/// ingest can reach.
async fn ceiling(url: &str) -> f64 {
    let store = pipemedic::store::Store::connect(url, 4)
        .await
        .expect("store opens");
    let now = chrono::Utc::now();
    let template: Vec<_> = (0..100)
        .map(|i| {
            pipemedic::ingest::generic::parse_one(run_json(i % 50, 0), "", now).expect("valid run")
        })
        .collect();
    let started = Instant::now();
    let mut stored = 0u64;
    let mut n = 0u64;
    while started.elapsed() < MEASURE {
        let mut runs = template.clone();
        for (i, run) in runs.iter_mut().enumerate() {
            run.run_id = format!("r{}", 50_000_000 + n * 100 + i as u64);
        }
        let source = pipemedic::domain::RunSource::Generic;
        let call = pipemedic::store::RunCall {
            source,
            delivery_id: None,
            rows: runs
                .iter()
                .map(|run| pipemedic::store::RunRow::new(run, source, now).expect("row"))
                .collect(),
        };
        store
            .store_run_calls(vec![call], now, None)
            .await
            .expect("stored");
        stored += 100;
        n += 1;
    }
    let rate = stored as f64 / started.elapsed().as_secs_f64();
    store.close().await;
    rate
}

/// Microseconds per [`pipemedic::domain::Run::validate`] call on a run with
/// `stages` stages.
fn validate_us(stages: usize) -> f64 {
    use pipemedic::domain::{Run, RunStatus, StageTiming};
    let now = chrono::Utc::now();
    let mut run = Run::new("checkout-service", "r1", RunStatus::Succeeded);
    run.started_at = Some(now - chrono::Duration::minutes(10));
    run.finished_at = Some(now);
    run.stages = (0..stages)
        .map(|i| StageTiming {
            job_id: None,
            name: format!("stage-{i:05}"),
            status: Some(RunStatus::Succeeded),
            started_at: run.started_at,
            finished_at: run.finished_at,
        })
        .collect();
    let calls = 2_000;
    let started = Instant::now();
    let mut problems = 0;
    for _ in 0..calls {
        problems += std::hint::black_box(&run).validate("", now).len();
    }
    std::hint::black_box(problems);
    started.elapsed().as_secs_f64() * 1e6 / f64::from(calls)
}

fn bench_validation() {
    let one = validate_us(1);
    let capped = validate_us(pipemedic::domain::MAX_STAGES);
    let over = validate_us(55_000);
    println!(
        "validate   1 stage {one:.2} us; {} stages {capped:.1} us ({:.0}x); 55,000 stages (refused by the cap) {over:.1} us",
        pipemedic::domain::MAX_STAGES,
        capped / one
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    bench_validation();
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "pipemedic ingest benchmark: {CLIENTS} concurrent clients, {}s per figure, durable commits",
        MEASURE.as_secs()
    );
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    bench_backend("sqlite", &sqlite).await;
    if let Ok(pg) = std::env::var("PIPEMEDIC_TEST_POSTGRES_URL") {
        sqlx::any::install_default_drivers();
        let schema = format!("pm_bench_{}", std::process::id());
        if let Ok(mut conn) = <sqlx::AnyConnection as sqlx::Connection>::connect(&pg).await {
            let _ = sqlx::Executor::execute(&mut conn, format!("CREATE SCHEMA {schema}").as_str())
                .await;
            let sep = if pg.contains('?') { '&' } else { '?' };
            bench_backend(
                "postgres",
                &format!("{pg}{sep}options=-c%20search_path%3D{schema}"),
            )
            .await;
            let _ = sqlx::Executor::execute(
                &mut conn,
                format!("DROP SCHEMA {schema} CASCADE").as_str(),
            )
            .await;
        } else {
            println!("postgres   unreachable at PIPEMEDIC_TEST_POSTGRES_URL; skipped");
        }
    }
    println!("peak RSS {:.1} MiB", peak_rss_mb());
}
