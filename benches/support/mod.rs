//! What the HTTP benchmarks (`ingest`, `healing`) share: the ingest token,
//! the client count and measuring window, a sample run, the server's
//! configuration and the driver that keeps `CLIENTS` requests in flight.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipemedic::config::{self, Env, Loaded, Secret, Secrets};

pub const TOKEN: &str = "bench-token";
pub const CLIENTS: usize = 64;
pub const MEASURE: Duration = Duration::from_secs(5);

/// A normal finished run of pipeline `service-NNN`.
pub fn run_json(pipeline: usize, id: u64) -> serde_json::Value {
    serde_json::json!({
        "pipeline": format!("service-{pipeline:03}"), "run_id": format!("r{id}"), "status": "succeeded",
        "started_at": "2026-11-20T10:00:00Z", "finished_at": "2026-11-20T10:07:12Z",
        "stage": "Test", "commit": "a1b2c3d",
        "tests": {"total": 812, "failed": 3, "skipped": 4},
        "resources": {"cpu_peak_pct": 73.5, "mem_peak_mb": 2100},
        "metrics": {"bundle_kb": 512.0}
    })
}

/// The default configuration on a free loopback port, storing at `url`,
/// with 4 MiB bodies and [`TOKEN`] as the ingest token.
pub fn loaded(url: &str) -> Loaded {
    let mut cfg = config::from_sources(None, None, &Env::new()).expect("config");
    cfg.server.listen = "127.0.0.1:0".into();
    cfg.store.url = url.to_string();
    cfg.server.max_body_bytes = 4 * 1024 * 1024;
    Loaded {
        config: cfg,
        secrets: Secrets {
            ingest_token: Some(Secret::new(TOKEN)),
            ..Secrets::default()
        },
        source: None,
    }
}

/// Runs `CLIENTS` concurrent loops for `MEASURE`, each calling `make` with
/// the next number from `first` on; returns the items per second that
/// `make` reported done.
pub async fn drive<F, Fut>(first: u64, make: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = u64> + Send,
{
    let make = Arc::new(make);
    let counter = Arc::new(AtomicU64::new(first));
    let items = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + MEASURE;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (make, counter, items) = (make.clone(), counter.clone(), items.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                items.fetch_add(make(n).await, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    items.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}
