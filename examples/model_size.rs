//! Memory and saved size of pipeline models at the product's defaults, and
//! the time a run takes to judge and learn: every history of the CI corpus
//! (seed 1) is fed its first N runs (default 300) into a default model.
//! A history shorter than N runs goes on with the same scenario's history
//! of the next seeds, shifted in time to follow it, so that any N can be
//! measured. Prints the median and largest `memory_bytes()` and saved
//! (binary codec) size, the mean time per run, and the median model's
//! memory part by part (bytes in use and allocated).
//!
//! `cargo run --example model_size -- [--every-value] [RUNS] [DECAY]`:
//! DECAY, if given, replaces the pipeline models' time decay per point, as
//! a number or a quotient (`0.1/64`); `--every-value` makes the models
//! store every metric, constant or not, as models of earlier releases did
//! (the layout to compare with).
mod common;

use std::time::Instant;

use common::parse_decay;

use pipemedic::config::PipelineRules;
use pipemedic::domain::Run;
use pipemedic::evaluate::corpus::corpus;
use pipemedic::scoring::pipeline::{codec, pipeline_detector_config, seed_for};
use pipemedic::scoring::PipelineModel;

/// `runs` runs of the scenario at `index` in the corpus: seed 1's history,
/// then seed 2's, …, each later one shifted to start an hour after the
/// last run before it.
fn long_history(index: usize, runs: usize) -> (String, Vec<Run>) {
    let first = corpus(1).swap_remove(index);
    let mut out: Vec<Run> = first.runs.into_iter().map(|r| r.run).collect();
    let mut seed = 2;
    while out.len() < runs {
        let next = corpus(seed).swap_remove(index);
        seed += 1;
        let end = out.last().and_then(|r| r.started_at);
        let start = next.runs.first().and_then(|r| r.run.started_at);
        let shift = match (end, start) {
            (Some(e), Some(s)) => e - s + chrono::Duration::hours(1),
            _ => chrono::Duration::zero(),
        };
        out.extend(next.runs.into_iter().map(|r| {
            let mut run = r.run;
            run.pipeline.clone_from(&first.pipeline);
            run.started_at = run.started_at.map(|t| t + shift);
            run.finished_at = run.finished_at.map(|t| t + shift);
            run
        }));
    }
    out.truncate(runs);
    (first.pipeline, out)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let every_value = args.iter().any(|a| a == "--every-value");
    let mut args = args.iter().filter(|a| *a != "--every-value");
    let runs: usize = args
        .next()
        .map(|a| a.parse().expect("RUNS is a whole number"))
        .unwrap_or(300);
    let decay: Option<f64> = args.next().map(|d| parse_decay(d));
    let rules = PipelineRules::default();
    let mut models = Vec::new();
    let mut observed = 0usize;
    let mut elapsed = std::time::Duration::ZERO;
    for index in 0..corpus(1).len() {
        let (pipeline, history) = long_history(index, runs);
        let mut cfg = pipeline_detector_config(1.0, seed_for(&pipeline));
        if let Some(d) = decay {
            cfg.time_decay = d;
        }
        let mut model = PipelineModel::with_detector(cfg);
        if every_value {
            model.store_every_value();
        }
        let start = Instant::now();
        for r in &history {
            model.observe(r, &rules);
        }
        elapsed += start.elapsed();
        observed += runs;
        let saved = codec::encode(&model).expect("model encodes").len();
        models.push((model.memory_bytes(), saved, model));
    }
    let mut memory: Vec<usize> = models.iter().map(|m| m.0).collect();
    let mut saved: Vec<usize> = models.iter().map(|m| m.1).collect();
    memory.sort_unstable();
    saved.sort_unstable();
    println!(
        "{} models after {runs} runs: memory p50 {} max {} bytes; saved p50 {} max {} bytes; {:.1} µs per run",
        memory.len(),
        memory[memory.len() / 2],
        memory[memory.len() - 1],
        saved[saved.len() / 2],
        saved[saved.len() - 1],
        elapsed.as_secs_f64() * 1e6 / observed as f64
    );
    models.sort_by_key(|m| m.0);
    let median = &models[models.len() / 2].2;
    let parts = median.memory_parts();
    println!(
        "median model, {} points held, part by part (bytes used / allocated):",
        median.detector().forest().points_held()
    );
    for p in parts.parts() {
        println!("  {:<28} {:>8} / {:>8}", p.name, p.used, p.held);
    }
    println!(
        "  {:<28} {:>8} / {:>8}",
        "total",
        parts.used(),
        parts.held()
    );
}
