//! Cost of `pipemedic export`'s replay: the rows of a pipeline's history
//! ([`export::pipeline_rows`]: each run's shingled row, then
//! [`PipelineModel::observe`], then the CSV), as a ratio to replaying the
//! same runs through `PipelineModel::observe` alone (what `pipemedic
//! backtest` does) in the same process, and the CSV bytes per row.
//!
//! Run with `cargo bench --bench export`.

use std::hint::black_box;
use std::time::Instant;

use pipemedic::config::DetectorConfig;
use pipemedic::domain::{ResourceMetrics, Run, RunStatus, TestCounts};
use pipemedic::scoring::export;
use pipemedic::scoring::PipelineModel;
use pipemedic::store::StoredRun;

/// Runs in the replayed history (a busy pipeline's year).
const RUNS: usize = 20_000;
/// Timed repetitions of each replay; the fastest is kept.
const REPEATS: usize = 3;

fn history(n: usize) -> Vec<StoredRun> {
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-05T00:00:00Z")
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_default();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    (0..n)
        .map(|i| {
            let at = start + chrono::Duration::minutes(30 * i as i64);
            let spike = if i % 997 == 500 { 3.0 } else { 1.0 };
            let mut run = Run::new("bench", i.to_string(), RunStatus::Succeeded);
            run.started_at = Some(at);
            let ms = (420_000.0 * spike + 20_000.0 * noise()) as i64;
            run.finished_at = Some(at + chrono::Duration::milliseconds(ms));
            run.tests = Some(TestCounts {
                total: 800,
                failed: (noise() * 4.0).max(0.0) as u64,
                skipped: 0,
            });
            run.resources = Some(ResourceMetrics {
                cpu_peak_pct: Some(60.0 + 5.0 * noise()),
                mem_peak_mb: Some(2000.0 + 60.0 * noise()),
            });
            StoredRun {
                pk: i as i64 + 1,
                source: "bench".into(),
                ingested_at: at,
                run,
            }
        })
        .collect()
}

/// CPU seconds this thread has used (Linux `/proc/thread-self/stat`), so
/// the figures do not suffer when other processes share the cores.
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Seconds one call of `f` takes: thread CPU time where Linux reports it,
/// else wall time.
fn timed(f: &mut impl FnMut()) -> f64 {
    let (cpu, wall) = (thread_cpu_seconds(), Instant::now());
    f();
    match (cpu, thread_cpu_seconds()) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => wall.elapsed().as_secs_f64(),
    }
}

fn main() {
    let data = history(RUNS);
    let config = DetectorConfig::default();
    let rules = config.rules_for("bench");
    let mut observe = || {
        let mut model = PipelineModel::new("bench", config.sensitivity);
        for s in &data {
            black_box(model.observe(&s.run, &rules));
        }
    };
    let mut rows = None;
    let mut replay = || {
        rows = Some(black_box(export::pipeline_rows(
            "bench",
            &data,
            &config,
            None,
            |_| {},
        )));
    };
    // Alternated, so both see the same machine; the fastest of each kept.
    let (mut baseline, mut exported) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..REPEATS {
        baseline = baseline.min(timed(&mut observe));
        exported = exported.min(timed(&mut replay));
    }
    let rows = rows.expect("one replay ran");
    println!("export replay of {RUNS} runs of one pipeline, fastest of {REPEATS}");
    println!("| replay | runs per CPU second | time as a ratio to observe alone |");
    println!("| --- | ---: | ---: |");
    println!(
        "| PipelineModel::observe (baseline, = backtest) | {:.0} | 1.00 |",
        RUNS as f64 / baseline
    );
    println!(
        "| export::pipeline_rows (row + observe + CSV) | {:.0} | {:.2} |",
        RUNS as f64 / exported,
        exported / baseline
    );
    println!(
        "\n{} rows ({} skipped abnormal, {} in warm-up), {} CSV bytes, {:.0} bytes per row",
        rows.rows,
        rows.skipped_abnormal,
        rows.skipped_warm_up,
        rows.csv.len(),
        rows.csv.len() as f64 / rows.rows.max(1) as f64
    );
}
