//! Recall and false alarms of pipeline models with other forest sizes on
//! the CI corpus, observed in-process (no HTTP): for choosing the product's
//! pipeline forest. `cargo run --release --example forest_sweep -- 50x256 30x64 ...`
//!
//! Each argument is `TxS` (trees × points per tree, at the product's time
//! decay) or `TxS@DECAY`, with the time decay per point as a number or a
//! quotient (`30x64@0.1/64`). Prefixed `every:` (`every:30x64`), the
//! models store every metric, constant or not, as models of earlier
//! releases did: the layout to compare with.
//!
//! `--join K` (before the sizes) measures longer histories: each of the
//! three "seeds" is then K corpus seeds in a row (1 to K, K + 1 to 2K,
//! 2K + 1 to 3K), each scenario's histories joined one after the other,
//! shifted by whole weeks to follow on, with a declared new normal where each
//! joined history begins (its first 24 ordinary runs are not counted: the
//! join itself is a change of level the corpus does not label).
mod common;

use common::parse_decay;
use pipemedic::config::PipelineRules;
use pipemedic::evaluate::corpus::{corpus, History};
use pipemedic::evaluate::score::{score_history, total};
use pipemedic::scoring::pipeline::{pipeline_detector_config, seed_for};
use pipemedic::scoring::PipelineModel;

fn main() {
    let rules = PipelineRules::default();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut join = 1u64;
    if args.first().map(String::as_str) == Some("--join") {
        join = args
            .get(1)
            .and_then(|k| k.parse().ok())
            .filter(|&k| k > 0)
            .expect("--join K, K a whole number above 0");
        args.drain(..2);
    }
    let blocks: Vec<Vec<History>> = (0..3u64)
        .map(|b| joined((b * join + 1..=(b + 1) * join).collect()))
        .collect();
    for arg in args {
        let (every_value, spec) = match arg.strip_prefix("every:") {
            Some(spec) => (true, spec),
            None => (false, arg.as_str()),
        };
        let (size, decay) = match spec.split_once('@') {
            Some((size, d)) => (size, Some(parse_decay(d))),
            None => (spec, None),
        };
        let (t, s) = size.split_once('x').expect("TxS");
        let (t, s): (usize, usize) = (t.parse().unwrap(), s.parse().unwrap());
        let mut mem = Vec::new();
        let mut line = String::new();
        for (seed, histories) in (1u64..).zip(&blocks) {
            let mut results = Vec::new();
            for h in histories {
                let mut cfg = pipeline_detector_config(1.0, seed_for(&h.pipeline));
                cfg.trees = t;
                cfg.sample_size = s;
                if let Some(d) = decay {
                    cfg.time_decay = d;
                }
                let mut model = PipelineModel::with_detector(cfg);
                if every_value {
                    model.store_every_value();
                }
                let grades: Vec<f64> = h
                    .runs
                    .iter()
                    .map(|r| model.observe(&r.run, &rules).grade)
                    .collect();
                mem.push(model.memory_bytes());
                results.push(score_history(h, &grades));
            }
            let tot = total(&results);
            line.push_str(&format!(
                " seed {seed}: recall {:.3} ({}/{}) fa/1000 {:.2};",
                tot.recall().unwrap_or(0.0),
                tot.found,
                tot.problems,
                tot.false_alarms_per_1000().unwrap_or(0.0)
            ));
        }
        mem.sort_unstable();
        println!(
            "{arg}:{line} model bytes p50 {} max {}",
            mem[mem.len() / 2],
            mem[mem.len() - 1]
        );
    }
}

/// Each scenario's histories of `seeds`, joined in that order: every later
/// one shifted by whole weeks to start after the run before it, and marked as a
/// declared new normal at its first run. One seed gives its corpus as is.
fn joined(seeds: Vec<u64>) -> Vec<History> {
    let mut out = corpus(seeds[0]);
    for &seed in &seeds[1..] {
        for (h, next) in out.iter_mut().zip(corpus(seed)) {
            let end = h.runs.last().and_then(|r| r.run.started_at);
            let start = next.runs.first().and_then(|r| r.run.started_at);
            // Whole weeks, so that each run keeps its weekday and hour.
            let week = chrono::Duration::weeks(1);
            let shift = match (end, start) {
                (Some(e), Some(s)) => {
                    week * ((e - s).num_seconds() / week.num_seconds() + 1) as i32
                }
                _ => chrono::Duration::zero(),
            };
            for (i, mut r) in next.runs.into_iter().enumerate() {
                r.run.started_at = r.run.started_at.map(|t| t + shift);
                r.run.finished_at = r.run.finished_at.map(|t| t + shift);
                r.new_normal |= i == 0;
                h.runs.push(r);
            }
        }
    }
    out
}
