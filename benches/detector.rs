//! Throughput and memory of the anomaly detector: score-then-update points
//! per second on one thread, for a 1-D stream with shingle 8 and a 6-D
//! stream with shingle 4 (50 trees × 256 points, time decay 0.1/256), and
//! the memory of one model and of 10,000 six-metric pipeline models; then
//! the same 6-D stream as pipeline runs through [`PipelineModel::observe`]
//! (forest, materiality rules, stand-in learning, weekly slots, new-normal
//! streaks), as a ratio to the bare detector in the same process.
//!
//! Last, a pipeline model at the product's settings after 500 and 5,000
//! runs: its memory and its saved size (binary, as saved now, and the JSON
//! earlier releases saved).
//!
//! Run with `cargo bench --bench detector`.

use std::hint::black_box;
use std::time::Instant;

use pipemedic::config::PipelineRules;
use pipemedic::detect::{Detector, DetectorConfig};
use pipemedic::domain::{DeployMetrics, ResourceMetrics, Run, RunStatus, TestCounts};
use pipemedic::scoring::pipeline::codec;
use pipemedic::scoring::PipelineModel;

/// Points fed before timing starts (samples full, trees at steady state).
const WARM_UP: usize = 5_000;
/// Points timed.
const MEASURED: usize = 50_000;

/// A deterministic noisy multi-seasonal stream with occasional spikes.
fn stream(dims: usize, n: usize) -> Vec<Vec<f64>> {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    (0..n)
        .map(|i| {
            (0..dims)
                .map(|k| {
                    let t = i as f64;
                    let base = 100.0 * (k + 1) as f64;
                    let season = 10.0 * (t / (24.0 + k as f64) * std::f64::consts::TAU).sin();
                    let spike = if i % 997 == 0 { 50.0 } else { 0.0 };
                    base + season + 2.0 * noise() + spike
                })
                .collect()
        })
        .collect()
}

/// CPU seconds this thread has used (Linux `/proc/thread-self/stat`), so
/// the figure does not suffer when other processes share the cores; None
/// elsewhere.
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which is in parentheses).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Clock ticks are 100 per second on every mainstream Linux.
    Some((utime + stime) / 100.0)
}

struct Row {
    name: &'static str,
    points_per_s: f64,
    points_per_cpu_s: Option<f64>,
    model_bytes: usize,
}

fn run(name: &'static str, dims: usize, shingle: usize) -> Row {
    let config = DetectorConfig {
        dimensions: dims,
        shingle_size: shingle,
        trees: 50,
        sample_size: 256,
        time_decay: 0.1 / 256.0,
        seed: 7,
        ..DetectorConfig::default()
    };
    let data = stream(dims, WARM_UP + MEASURED);
    let mut detector = Detector::new(config);
    for p in &data[..WARM_UP] {
        black_box(detector.process(p));
    }
    let cpu_start = thread_cpu_seconds();
    let start = Instant::now();
    let mut anomalies = 0usize;
    for p in &data[WARM_UP..] {
        let v = detector.process(black_box(p));
        anomalies += usize::from(v.grade > 0.0);
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = match (cpu_start, thread_cpu_seconds()) {
        (Some(a), Some(b)) if b > a => Some(MEASURED as f64 / (b - a)),
        _ => None,
    };
    black_box(anomalies);
    Row {
        name,
        points_per_s: MEASURED as f64 / secs,
        points_per_cpu_s: cpu,
        model_bytes: detector.memory_bytes(),
    }
}

/// The 6-D stream as pipeline runs: every value a metric of a run, one
/// run an hour.
fn runs(n: usize) -> Vec<Run> {
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-05T00:00:00Z")
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_default();
    stream(6, n)
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let at = start + chrono::Duration::hours(i as i64);
            let mut run = Run::new("bench", i.to_string(), RunStatus::Succeeded);
            run.started_at = Some(at);
            run.finished_at = Some(at + chrono::Duration::milliseconds((p[0] * 4_000.0) as i64));
            run.tests = Some(TestCounts {
                total: 1000,
                failed: (p[1] / 100.0).max(0.0) as u64,
                skipped: 0,
            });
            run.resources = Some(ResourceMetrics {
                cpu_peak_pct: Some(p[2] / 4.0),
                mem_peak_mb: Some(p[3] * 5.0),
            });
            run.deploy = Some(DeployMetrics {
                error_rate: Some(p[4] / 50_000.0),
                latency_p95_ms: Some(p[5] / 3.0),
            });
            run
        })
        .collect()
}

/// Runs per second through a pipeline model, after the same warm-up.
fn pipeline_runs_per_s() -> (f64, Option<f64>) {
    let data = runs(WARM_UP + MEASURED);
    let rules = PipelineRules::default();
    let mut model = PipelineModel::new("bench", 1.0);
    for r in &data[..WARM_UP] {
        black_box(model.observe(r, &rules));
    }
    let cpu_start = thread_cpu_seconds();
    let start = Instant::now();
    let mut abnormal = 0usize;
    for r in &data[WARM_UP..] {
        abnormal += usize::from(model.observe(black_box(r), &rules).is_anomalous());
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = match (cpu_start, thread_cpu_seconds()) {
        (Some(a), Some(b)) if b > a => Some(MEASURED as f64 / (b - a)),
        _ => None,
    };
    black_box(abnormal);
    (MEASURED as f64 / secs, cpu)
}

/// Memory of a model of this shape once its samples are full.
fn steady_memory(dims: usize, shingle: usize, trees: usize, sample_size: usize) -> usize {
    let mut detector = Detector::new(DetectorConfig {
        dimensions: dims,
        shingle_size: shingle,
        trees,
        sample_size,
        time_decay: 0.1 / sample_size as f64,
        seed: 7,
        ..DetectorConfig::default()
    });
    for p in stream(dims, WARM_UP) {
        detector.process(&p);
    }
    detector.memory_bytes()
}

fn main() {
    let rows = [run("1-D, shingle 8", 1, 8), run("6-D, shingle 4", 6, 4)];
    println!("detector: 50 trees x 256 samples, time decay 0.1/256, score then update, one thread");
    println!("{WARM_UP} warm-up points, {MEASURED} timed points per stream\n");
    println!("| stream | points/s (wall) | points/s (thread CPU) | target | model bytes |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let targets = [56_000.0, 40_000.0];
    for (row, target) in rows.iter().zip(targets) {
        println!(
            "| {} | {:.0} | {} | {:.0} | {} |",
            row.name,
            row.points_per_s,
            row.points_per_cpu_s
                .map_or_else(|| "n/a".to_string(), |v| format!("{v:.0}")),
            target,
            row.model_bytes
        );
    }
    let six_d = rows[1].model_bytes;
    let gib = |b: usize| b as f64 / f64::from(1u32 << 30);
    println!(
        "\n10,000 6-D pipeline models (shingle 4, 50 x 256): {} bytes ({:.1} GiB)",
        six_d * 10_000,
        gib(six_d * 10_000)
    );
    println!(
        "  method: Detector::memory_bytes() (allocated capacities of trees, boxes, samplers, point store)"
    );
    println!("  of one model after {WARM_UP} + {MEASURED} points (samples full), times 10,000");
    let compact = steady_memory(6, 4, 30, 128);
    println!(
        "  for comparison, 30 trees x 128 points: {compact} bytes per model, {:.1} GiB for 10,000",
        gib(compact * 10_000)
    );
    let model_config = PipelineModel::new("bench", 1.0);
    let c = model_config.detector().config();
    println!(
        "\npipeline model at the product's settings ({} trees x {} points, shingle {}, 6 metrics)",
        c.trees, c.sample_size, c.shingle_size
    );
    let data = runs(5_000);
    let rules = PipelineRules::default();
    let mut model = PipelineModel::new("bench", 1.0);
    for (i, r) in data.iter().enumerate() {
        model.observe(r, &rules);
        if i + 1 == 500 || i + 1 == 5_000 {
            let json = serde_json::to_string(&model).map_or(0, |j| j.len());
            let binary = codec::encode(&model).map_or(0, |b| b.len());
            println!(
                "  after {:>5} runs: {} bytes in memory ({:.1} GiB for 10,000); saved {} bytes binary, {} bytes JSON ({:.1}x smaller)",
                i + 1,
                model.memory_bytes(),
                gib(model.memory_bytes() * 10_000),
                binary,
                json,
                json as f64 / binary.max(1) as f64
            );
        }
    }
    let (runs_per_s, runs_per_cpu_s) = pipeline_runs_per_s();
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "n/a".to_string(),
    };
    println!(
        "\npipeline model (PipelineModel::observe: forest + rules + stand-in learning + weekly slots)"
    );
    println!(
        "  {runs_per_s:.0} runs/s wall, {} runs/s thread CPU: {:.2}x (wall), {}x (CPU) the bare 6-D detector above",
        runs_per_cpu_s.map_or_else(|| "n/a".to_string(), |v| format!("{v:.0}")),
        runs_per_s / rows[1].points_per_s,
        ratio(runs_per_cpu_s, rows[1].points_per_cpu_s)
    );
}
