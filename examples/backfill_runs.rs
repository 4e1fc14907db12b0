//! Writes a JSON Lines backfill file of generated run history, for sizing
//! `pipemedic ingest` and `pipemedic train` at scale.
//!
//! ```text
//! cargo run --release --example backfill_runs -- [--runs N] [--pipelines P] [--seed S] > runs.jsonl
//! ```
//!
//! `N` runs (default 1,000,000) spread evenly over `P` pipelines (default
//! 10,000, named `service-00000` ...), each pipeline running every few hours
//! over the 90 days before now, oldest first and pipelines interleaved, as a
//! history export would list them. Each run is shaped like the demo's sample
//! pipelines (`pipemedic::demo::history`): four stages, tests, CPU, memory,
//! deploy error rate and latency, with noise and the odd ordinary failure.
//! Same arguments, same file (except for the end time, which is now).

use std::io::Write;
use std::process::ExitCode;

use chrono::{Duration, Utc};
use pipemedic::demo::history::{run, Shape, PIPELINES};
use pipemedic::detect::rcf::Rng;

const USAGE: &str = "usage: backfill_runs [--runs N] [--pipelines P] [--seed S] > runs.jsonl";

fn main() -> ExitCode {
    let mut runs: u64 = 1_000_000;
    let mut pipelines: u64 = 10_000;
    let mut seed: u64 = 1;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .and_then(|v| v.replace('_', "").parse::<u64>().ok());
        let slot = match arg.as_str() {
            "--runs" => &mut runs,
            "--pipelines" => &mut pipelines,
            "--seed" => &mut seed,
            _ => {
                eprintln!("unknown argument {arg:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        };
        match value {
            Some(v) if v > 0 => *slot = v,
            _ => {
                eprintln!("{arg} needs a positive whole number\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let per_pipeline = runs.div_ceil(pipelines);
    let end = Utc::now() - Duration::hours(1);
    let span = Duration::days(90);
    let every = span / i32::try_from(per_pipeline).unwrap_or(i32::MAX);
    let start = end - span;
    let mut rng = Rng::new(seed);
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let mut written = 0u64;
    'all: for n in 0..per_pipeline {
        for p in 0..pipelines {
            if written == runs {
                break 'all;
            }
            let sample = &PIPELINES[(p % PIPELINES.len() as u64) as usize];
            // Pipelines start a little apart, so their runs do not line up.
            let offset = Duration::seconds(((p * 7_919) % 3_600) as i64);
            let mut r = run(
                sample,
                n,
                start + every * n as i32 + offset,
                Shape::Normal,
                &mut rng,
            );
            r.pipeline = format!("service-{p:05}");
            r.run_id = format!("{n:06}");
            r.log_url = None;
            r.url = None;
            let line = serde_json::to_string(&r).expect("a run serialises");
            if writeln!(out, "{line}").is_err() {
                return ExitCode::FAILURE;
            }
            written += 1;
        }
    }
    if out.flush().is_err() {
        return ExitCode::FAILURE;
    }
    eprintln!("{written} runs of {pipelines} pipelines written");
    ExitCode::SUCCESS
}
