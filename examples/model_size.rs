//! Memory and saved size of pipeline models at the product's defaults, and
//! the time a run takes to judge and learn: every history of the CI corpus
//! (seed 1) that has enough runs is fed its first N runs (default 300) into
//! a default model. Prints the median and largest `memory_bytes()` and
//! saved (binary codec) size, and the mean time per run.
//!
//! `cargo run --example model_size -- [RUNS]`
use std::time::Instant;

use pipemedic::config::PipelineRules;
use pipemedic::evaluate::corpus::corpus;
use pipemedic::scoring::pipeline::codec;
use pipemedic::scoring::PipelineModel;

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("RUNS is a whole number"))
        .unwrap_or(300);
    let rules = PipelineRules::default();
    let mut memory = Vec::new();
    let mut saved = Vec::new();
    let mut observed = 0usize;
    let mut elapsed = std::time::Duration::ZERO;
    for h in corpus(1).into_iter().filter(|h| h.runs.len() >= runs) {
        let mut model = PipelineModel::new(&h.pipeline, 1.0);
        let start = Instant::now();
        for r in &h.runs[..runs] {
            model.observe(&r.run, &rules);
        }
        elapsed += start.elapsed();
        observed += runs;
        memory.push(model.memory_bytes());
        saved.push(codec::encode(&model).expect("model encodes").len());
    }
    assert!(!memory.is_empty(), "no history has {runs} runs");
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
}
