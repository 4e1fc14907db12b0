//! Healing never blocks ingest: runs/second accepted over loopback HTTP
//! into SQLite with no remediation step running, then with a 290 s
//! `shell` step (`/bin/sleep 290`) in progress, in the same process.
//!
//! `cargo bench --bench healing`. The step is a low-risk playbook action
//! with `approval: none` under `approvals.auto_remediation`, so it is
//! approved and started by the healing loop itself as soon as a slow,
//! failed run of `bench-heal` opens an incident; the second measurement
//! starts once the step is `running` in the store. Prints both rates (the
//! median of three 5 s rounds each) and their ratio (the aim: within 20%).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipemedic::config::{self, Env, Loaded, Secret, Secrets};
use pipemedic::startup::Application;
use pipemedic::store::{ExecutionState, Store};

const TOKEN: &str = "bench-token";
const CLIENTS: usize = 64;
const MEASURE: Duration = Duration::from_secs(5);
/// Measurements of each kind; the median is reported.
const ROUNDS: u64 = 3;
const PIPELINE: &str = "bench-heal";

const PLAYBOOK: &str = r#"---
id: slow-fix
title: A slow fix
when:
  - { status: failed }
actions:
  - id: wait
    uses: shell
    with: { argv: ["/bin/sleep", "290"], timeout_s: 300 }
    risk: low
    approval: none
    description: Wait a long time.
---
# Slow fix

Takes almost five minutes.
"#;

fn run_json(pipeline: usize, id: u64) -> serde_json::Value {
    serde_json::json!({
        "pipeline": format!("service-{pipeline:03}"), "run_id": format!("r{id}"), "status": "succeeded",
        "started_at": "2026-11-20T10:00:00Z", "finished_at": "2026-11-20T10:07:12Z",
        "stage": "Test", "commit": "a1b2c3d",
        "tests": {"total": 812, "failed": 3, "skipped": 4},
        "resources": {"cpu_peak_pct": 73.5, "mem_peak_mb": 2100},
        "metrics": {"bundle_kb": 512.0}
    })
}

/// Runs `CLIENTS` concurrent loops for `MEASURE`; returns runs per second.
async fn ingest_rate(http: &reqwest::Client, base: &str, offset: u64) -> f64 {
    let counter = Arc::new(AtomicU64::new(offset));
    let items = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + MEASURE;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (counter, items, http) = (counter.clone(), items.clone(), http.clone());
        let url = format!("{base}/v1/runs");
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let ok = http
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .json(&run_json(c, n))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    items.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    items.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn post(http: &reqwest::Client, base: &str, body: serde_json::Value) {
    let res = http
        .post(format!("{base}/v1/runs"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("post runs");
    assert!(res.status().is_success(), "{}", res.status());
}

/// A normal history of `PIPELINE`, then a failed run seven times slower.
async fn open_incident(http: &reqwest::Client, base: &str) {
    let last: chrono::DateTime<chrono::Utc> = "2026-11-20T08:00:00Z".parse().expect("time");
    let runs: Vec<serde_json::Value> = (0..100)
        .map(|i: i64| {
            let start = last - chrono::Duration::hours(2 * (100 - i));
            let end = start + chrono::Duration::seconds(120 + (i * 7919) % 13 - 6);
            serde_json::json!({"pipeline": PIPELINE, "run_id": format!("h{i:03}"),
                "status": "succeeded", "started_at": start.to_rfc3339(), "finished_at": end.to_rfc3339()})
        })
        .collect();
    post(http, base, serde_json::Value::Array(runs)).await;
    post(
        http,
        base,
        serde_json::json!({"pipeline": PIPELINE, "run_id": "slow", "status": "failed",
            "stage": "Test", "started_at": "2026-11-20T10:00:00Z", "finished_at": "2026-11-20T10:07:12Z"}),
    )
    .await;
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Waits until a remediation step is running; returns how long it took.
async fn step_running(store: &Store) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        for id in store.approved_request_ids().await.expect("requests") {
            let steps = store.executions(id).await.expect("executions");
            if steps.iter().any(|e| e.status == ExecutionState::Running) {
                return started.elapsed();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no remediation step started within 60 s");
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let playbooks = dir.path().join("playbooks");
    std::fs::create_dir_all(&playbooks).expect("playbooks dir");
    std::fs::write(playbooks.join("slow-fix.md"), PLAYBOOK).expect("playbook");
    let url = format!("sqlite://{}/bench.db", dir.path().display());

    let mut cfg = config::from_sources(None, None, &Env::new()).expect("config");
    cfg.server.listen = "127.0.0.1:0".into();
    cfg.store.url = url.clone();
    cfg.server.max_body_bytes = 4 * 1024 * 1024;
    cfg.planner.plan_incidents = true;
    cfg.planner.playbooks_dir = playbooks.display().to_string();
    cfg.planner.prompts_dir = format!("{}/prompts", env!("CARGO_MANIFEST_DIR"));
    cfg.approvals.auto_remediation = true;
    let loaded = Loaded {
        config: cfg,
        secrets: Secrets {
            ingest_token: Some(Secret::new(TOKEN)),
            ..Secrets::default()
        },
        source: None,
    };
    let app = Application::build(loaded).await.expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let store = app.state().store.clone();
    let stop = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .expect("client");

    // Warm up, then the rate with nothing running (median of ROUNDS).
    for round in 0..2 {
        ingest_rate(&http, &base, 100_000 * round).await;
    }
    let mut idle = Vec::new();
    for round in 0..ROUNDS {
        idle.push(ingest_rate(&http, &base, 1_000_000 * (1 + round)).await);
    }

    open_incident(&http, &base).await;
    let waited = step_running(&store).await;
    let mut busy = Vec::new();
    for round in 0..ROUNDS {
        busy.push(ingest_rate(&http, &base, 1_000_000 * (10 + round)).await);
    }
    let still = step_running(&store).await;
    println!("rounds, no step: {idle:.0?}; step running: {busy:.0?}");
    let (idle, busy) = (median(idle), median(busy));

    println!(
        "ingest (sqlite, {CLIENTS} clients, median of {ROUNDS} rounds of {}s):",
        MEASURE.as_secs()
    );
    println!("  no step running          {idle:>9.0} runs/s");
    println!(
        "  290 s shell step running {busy:>9.0} runs/s (step started {:.1}s after the failed run; still running after: {})",
        waited.as_secs_f64(),
        still < Duration::from_secs(1)
    );
    println!(
        "  ratio                    {:>9.2} (change {:+.1}%; aim: within 20%)",
        busy / idle,
        (busy / idle - 1.0) * 100.0
    );
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}
