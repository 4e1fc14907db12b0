//! Scale benchmark: many pipelines through the product's real path, with
//! runs arriving round-robin (every run finds a different pipeline's model,
//! the worst case for the model cache).
//!
//! `cargo bench --bench scale` starts the application on a fresh SQLite
//! store in a temp dir, with the default configuration, and posts
//! `PIPEMEDIC_SCALE_RUNS` runs (default: 60,000, or 30 per pipeline when
//! that is more, so that 10,000 pipelines get past a few runs each) to
//! `POST /v1/runs` in requests of 100 from 8 clients; every run is stored
//! and scored (the
//! route answers with the verdicts). It prints, first for 100 pipelines
//! (the baseline: every model stays cached) and then for 10,000:
//!
//! ```text
//! scale: pipelines=P runs=N runs_per_s=R rss_mib=M model_bytes_p50=B load_ms_p99=L
//! ```
//!
//! `rss_mib` is the process's resident set after the runs; `model_bytes_p50`
//! the median in-memory size of a pipeline model and `load_ms_p99` the 99th
//! percentile time to bring a model into a cold bank (read, checksum,
//! decode, catch up on runs stored after its last save), both over up to
//! 500 pipelines after the application stopped and saved its models.
//!
//! Then, on the 100-pipeline store (warm models), runs are posted one per
//! request at a paced 1,000 runs/s for 10 s; every other pipeline gets one
//! abnormal run (a 6× slower build with failed tests) somewhere in the
//! phase, which opens an incident. It prints the event → verdict
//! latency (request sent → stored and scored, answered) and the event →
//! alert-queued latency (request sent → the incident opened, with its card
//! queued), p50 and p99.
//!
//! `PIPEMEDIC_SCALE_PIPELINES` (default `100,10000`) and
//! `PIPEMEDIC_SCALE_RUNS` change the sizes; `PIPEMEDIC_SCALE_RATE_S=0`
//! skips the latency phase.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipemedic::config::DetectorConfig;
use pipemedic::metrics::Metrics;
use pipemedic::scoring::bank::ModelBank;
use pipemedic::startup::Application;
use pipemedic::store::Store;
use serde_json::json;
use sqlx::Row;

// The HTTP driver and run shapes of the other benches are not used here.
#[allow(dead_code)]
mod support;
use support::{loaded, TOKEN};

/// Concurrent clients posting batches.
const CLIENTS: usize = 8;
/// Runs per request in the throughput phase.
const BATCH: usize = 100;
/// Pipelines whose models are loaded cold for the size and load figures.
const SAMPLED: usize = 500;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn vm_kib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Run `round` of pipeline `p`: a deterministic ordinary run, or an
/// abnormal one (6× slower, 40 failed tests).
fn run(p: usize, round: usize, abnormal: bool) -> serde_json::Value {
    let start = chrono::DateTime::parse_from_rfc3339("2026-09-01T08:00:00Z")
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_default()
        + chrono::Duration::minutes(37 * round as i64);
    let h = (p as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (round as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let jitter = (h % 41) as f64 - 20.0;
    let base = 300.0 + (p % 17) as f64 * 20.0;
    let duration = if abnormal { base * 6.0 } else { base + jitter };
    let finished = start + chrono::Duration::milliseconds((duration * 1000.0) as i64);
    json!({
        "pipeline": format!("pipe-{p:05}"), "run_id": format!("r{round}"), "status": "succeeded",
        "started_at": start.to_rfc3339(), "finished_at": finished.to_rfc3339(),
        "tests": {"total": 800, "failed": if abnormal { 40 } else { h % 2 }, "skipped": 0},
        "resources": {"cpu_peak_pct": 55.0 + jitter / 2.0, "mem_peak_mb": 1800.0 + jitter * 3.0}
    })
}

struct App {
    base: String,
    url: String,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(url: &str) -> App {
    let mut cfg = loaded(url);
    cfg.config.server.drain_s = 0;
    let app = Application::build(cfg).await.expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let stop = app.shutdown_token();
    let task = tokio::spawn(app.run_until_stopped());
    App {
        base,
        url: url.to_string(),
        stop,
        task,
    }
}

struct Line {
    pipelines: usize,
    runs: usize,
    runs_per_s: f64,
    rss_mib: f64,
    model_bytes_p50: f64,
    load_ms_p99: f64,
    saved_bytes_p50: f64,
}

/// Posts `runs` runs round-robin over `pipelines` pipelines, `BATCH` per
/// request; returns runs/s accepted with verdicts.
async fn post_round_robin(
    app: &App,
    client: &reqwest::Client,
    pipelines: usize,
    runs: usize,
) -> f64 {
    let batches = runs.div_ceil(BATCH);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (next, done, client, base) =
            (next.clone(), done.clone(), client.clone(), app.base.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    break;
                }
                let body: Vec<serde_json::Value> = (b * BATCH..((b + 1) * BATCH).min(runs))
                    .map(|i| run(i % pipelines, i / pipelines, false))
                    .collect();
                let n = body.len();
                let res = client
                    .post(format!("{base}/v1/runs"))
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => {
                        done.fetch_add(n, Ordering::Relaxed);
                    }
                    Ok(r) => eprintln!("batch {b}: HTTP {}", r.status()),
                    Err(e) => eprintln!("batch {b}: {e}"),
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Loads up to `SAMPLED` models cold from the stopped application's store:
/// (model bytes p50, load ms p99, saved bytes p50).
async fn cold_loads(url: &str, pipelines: usize) -> (f64, f64, f64) {
    let store = Store::connect(url, 2).await.expect("store");
    let mut bank = ModelBank::new(
        store.clone(),
        SAMPLED,
        Arc::new(DetectorConfig::default()),
        Arc::new(Metrics::new()),
    );
    let step = (pipelines / SAMPLED).max(1);
    let (mut bytes, mut ms, mut saved) = (Vec::new(), Vec::new(), Vec::new());
    for p in (0..pipelines).step_by(step).take(SAMPLED) {
        let name = format!("pipe-{p:05}");
        if let Some(m) = store.load_model(&name).await.expect("model row") {
            saved.push(m.state.len() as f64);
        }
        let t = Instant::now();
        let entry = bank.get(&name, i64::MAX).await.expect("model loads");
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        bytes.push(entry.model.memory_bytes() as f64);
    }
    for v in [&mut bytes, &mut ms, &mut saved] {
        v.sort_by(f64::total_cmp);
    }
    (
        percentile(&bytes, 0.5),
        percentile(&ms, 0.99),
        percentile(&saved, 0.5),
    )
}

/// Paced one-run requests at `rate` per second for `secs`; prints the
/// event → verdict and event → alert-queued latencies.
async fn latency(
    app: &App,
    client: &reqwest::Client,
    pipelines: usize,
    first_round: usize,
    rate: usize,
    secs: usize,
) {
    let total = rate * secs;
    let verdict_ms = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let sent_abnormal = Arc::new(Mutex::new(Vec::new()));
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        ticker.tick().await;
        let p = i % pipelines;
        let round = first_round + i / pipelines;
        // Half the pipelines get one abnormal run each, spread over the
        // phase, so each opens its own incident.
        let local_round = i / pipelines;
        let abnormal = p % 2 == 0 && local_round == 10 + (p * 37) % 80;
        let body = run(p, round, abnormal).to_string();
        let (client, base, verdict_ms, sent_abnormal) = (
            client.clone(),
            app.base.clone(),
            verdict_ms.clone(),
            sent_abnormal.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let sent_ms = chrono::Utc::now().timestamp_millis();
            let t = Instant::now();
            let res = client
                .post(format!("{base}/v1/runs"))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            if res.is_ok_and(|r| r.status().is_success()) {
                verdict_ms
                    .lock()
                    .unwrap()
                    .push(t.elapsed().as_secs_f64() * 1000.0);
                if abnormal {
                    sent_abnormal
                        .lock()
                        .unwrap()
                        .push((format!("pipe-{p:05}"), sent_ms));
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    // Let the incident flow finish what is queued.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut v = verdict_ms.lock().unwrap().clone();
    v.sort_by(f64::total_cmp);
    println!(
        "latency: rate={rate}/s requests={} event_to_verdict_ms_p50={:.1} p99={:.1}",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.99)
    );
    let db = sqlx::sqlite::SqlitePool::connect(&app.url)
        .await
        .expect("the store's SQLite file");
    let mut alert = Vec::new();
    let sent_abnormal = sent_abnormal.lock().unwrap().clone();
    for (pipeline, sent) in &sent_abnormal {
        let row = sqlx::query(
            "SELECT MIN(opened_at_ms) FROM incidents WHERE pipeline = $1 AND opened_at_ms >= $2",
        )
        .bind(pipeline)
        .bind(*sent)
        .fetch_one(&db)
        .await
        .expect("incidents");
        if let Some(opened) = row.get::<Option<i64>, _>(0) {
            alert.push((opened - sent) as f64);
        }
    }
    alert.sort_by(f64::total_cmp);
    println!(
        "latency: abnormal_runs={} alerts_queued={} event_to_alert_queued_ms_p50={:.0} p99={:.0} (ms resolution)",
        sent_abnormal.len(),
        alert.len(),
        percentile(&alert, 0.5),
        percentile(&alert, 0.99)
    );
}

async fn scale(pipelines: usize, runs: usize, latency_secs: usize) -> Line {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("scale.db").display());
    let app = start(&url).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let runs_per_s = post_round_robin(&app, &client, pipelines, runs).await;
    let rss_mib = vm_kib("VmRSS:") / 1024.0;
    if latency_secs > 0 {
        latency(
            &app,
            &client,
            pipelines,
            runs.div_ceil(pipelines) + 1,
            1000,
            latency_secs,
        )
        .await;
    }
    app.stop.cancel();
    let _ = app.task.await;
    let (model_bytes_p50, load_ms_p99, saved_bytes_p50) = cold_loads(&url, pipelines).await;
    Line {
        pipelines,
        runs,
        runs_per_s,
        rss_mib,
        model_bytes_p50,
        load_ms_p99,
        saved_bytes_p50,
    }
}

fn main() {
    let fixed_runs = std::env::var("PIPEMEDIC_SCALE_RUNS")
        .is_ok()
        .then(|| env_usize("PIPEMEDIC_SCALE_RUNS", 60_000));
    let latency_secs = env_usize("PIPEMEDIC_SCALE_RATE_S", 10);
    let sizes: Vec<usize> = std::env::var("PIPEMEDIC_SCALE_PIPELINES")
        .unwrap_or_else(|_| "100,10000".into())
        .split(',')
        .filter_map(|v| v.trim().replace('_', "").parse().ok())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut first: Option<f64> = None;
    for (i, pipelines) in sizes.into_iter().enumerate() {
        let runs = fixed_runs.unwrap_or((30 * pipelines).max(60_000));
        let line = rt.block_on(scale(
            pipelines,
            runs,
            if i == 0 { latency_secs } else { 0 },
        ));
        println!(
            "scale: pipelines={} runs={} runs_per_s={:.0} rss_mib={:.0} model_bytes_p50={:.0} load_ms_p99={:.2}",
            line.pipelines, line.runs, line.runs_per_s, line.rss_mib, line.model_bytes_p50, line.load_ms_p99
        );
        println!(
            "  saved model p50 {:.0} bytes; runs/s {:.2}x the first line",
            line.saved_bytes_p50,
            line.runs_per_s / *first.get_or_insert(line.runs_per_s)
        );
    }
}
