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

use std::time::{Duration, Instant};

use pipemedic::startup::Application;
use pipemedic::store::{ExecutionState, Store};

mod support;
use support::{drive, loaded, run_json, CLIENTS, MEASURE, TOKEN};

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

/// Runs `CLIENTS` concurrent posters for `MEASURE`, run ids from `offset`
/// on; returns runs per second.
async fn ingest_rate(http: &reqwest::Client, base: &str, offset: u64) -> f64 {
    let (http, url) = (http.clone(), format!("{base}/v1/runs"));
    drive(offset, move |n| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let ok = http
                .post(&url)
                .bearer_auth(TOKEN)
                .json(&run_json((n % CLIENTS as u64) as usize, n))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            u64::from(ok)
        }
    })
    .await
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

    let mut config = loaded(&url);
    config.config.planner.plan_incidents = true;
    config.config.planner.playbooks_dir = playbooks.display().to_string();
    config.config.planner.prompts_dir = format!("{}/prompts", env!("CARGO_MANIFEST_DIR"));
    config.config.approvals.auto_remediation = true;
    let app = Application::build(config).await.expect("app builds");
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
