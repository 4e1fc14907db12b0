//! Recall and false alarms of pipeline models with other forest sizes on
//! the CI corpus, observed in-process (no HTTP): for choosing the product's
//! pipeline forest. `cargo run --release --example forest_sweep -- 50x256 30x64 ...`
use pipemedic::config::PipelineRules;
use pipemedic::evaluate::corpus::corpus;
use pipemedic::evaluate::score::{score_history, total};
use pipemedic::scoring::pipeline::{pipeline_detector_config, seed_for};
use pipemedic::scoring::PipelineModel;

fn main() {
    let rules = PipelineRules::default();
    for arg in std::env::args().skip(1) {
        let (t, s) = arg.split_once('x').expect("TxS");
        let (t, s): (usize, usize) = (t.parse().unwrap(), s.parse().unwrap());
        let mut mem = Vec::new();
        let mut line = String::new();
        for seed in [1u64, 2, 3] {
            let mut results = Vec::new();
            for h in corpus(seed) {
                let mut cfg = pipeline_detector_config(1.0, seed_for(&h.pipeline));
                cfg.trees = t;
                cfg.sample_size = s;
                let mut model = PipelineModel::with_detector(cfg);
                let grades: Vec<f64> = h
                    .runs
                    .iter()
                    .map(|r| model.observe(&r.run, &rules).grade)
                    .collect();
                mem.push(model.memory_bytes());
                results.push(score_history(&h, &grades));
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
            "{t}x{s}:{line} model bytes p50 {} max {}",
            mem[mem.len() / 2],
            mem[mem.len() - 1]
        );
    }
}
