//! Scores pinned across changes to the forest's storage: pipeline models
//! replay a few histories of the CI corpus and every score and verdict must
//! be bit for bit what was recorded. Two records: models with the time
//! decay pipeline models had until it followed the sample size (0.1 / 256,
//! as a model saved then keeps it), recorded in
//! `testdata/verdicts_whole_points.txt` from the release whose point store
//! kept each shingled point whole; and default models (0.1 / 64), recorded
//! in `testdata/verdicts_decay_64.txt` when that decay became the default.
//! It lives with the corpus it replays.

use crate::config::PipelineRules;
use crate::scoring::pipeline::{pipeline_detector_config, seed_for, PIPELINE_TIME_DECAY};
use crate::scoring::PipelineModel;

use crate::scoring::pipeline::EARLIER_PIPELINE_TIME_DECAY as EARLIER_DECAY;

/// Scenarios of the CI corpus (seed 1) replayed by the tests below.
const RECORDED_SCENARIOS: [usize; 4] = [0, 2, 4, 7];

/// Runs of each recorded scenario.
const RECORDED_RUNS: usize = 400;

/// FNV-1a, 64 bits: a digest of verdicts' debug text.
fn fnv64(digest: u64, text: &str) -> u64 {
    text.bytes().fold(digest, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Per recorded scenario, replayed by pipeline models with time decay
/// `decay` (otherwise the product's settings): a line naming it with the
/// digest of every verdict's debug text (score, grade, deviations,
/// expected values, …), then one line per run with its score's bits.
fn verdict_record(decay: f64) -> String {
    let corpus = super::corpus::corpus(1);
    let mut out = String::new();
    for index in RECORDED_SCENARIOS {
        let h = &corpus[index];
        let mut cfg = pipeline_detector_config(1.0, seed_for(&h.pipeline));
        cfg.time_decay = decay;
        let mut model = PipelineModel::with_detector(cfg);
        let mut digest = 0xcbf2_9ce4_8422_2325u64;
        let mut scores = String::new();
        for r in &h.runs[..RECORDED_RUNS] {
            let v = model.observe(&r.run, &PipelineRules::default());
            digest = fnv64(digest, &format!("{v:?}"));
            scores.push_str(&format!("{:016x}\n", v.score.to_bits()));
        }
        out.push_str(&format!(
            "scenario {index} verdicts {digest:016x}\n{scores}"
        ));
    }
    out
}

/// Lines of `now` against those `recorded`, one by one.
fn assert_same_record(recorded: &str, now: &str) {
    let mut scenario = "";
    for (line, (want, got)) in recorded.lines().zip(now.lines()).enumerate() {
        if want.starts_with("scenario") {
            scenario = want;
        }
        assert_eq!(got, want, "line {} ({scenario})", line + 1);
    }
    assert_eq!(now.lines().count(), recorded.lines().count());
}

/// Every score and verdict of pipeline models with the earlier time decay
/// over a few hundred runs of several corpus histories is bit for bit what
/// the release whose point store kept each shingled point whole gave
/// (recorded in the fixture).
#[test]
fn verdicts_match_those_recorded_before_inputs_were_shared() {
    let recorded = include_str!("testdata/verdicts_whole_points.txt");
    assert_same_record(recorded, &verdict_record(EARLIER_DECAY));
}

/// Every score and verdict of default pipeline models over the same runs
/// is bit for bit what was recorded when 0.1 / 64 became their decay.
#[test]
fn verdicts_match_those_recorded_with_the_decay_of_the_sample_size() {
    assert_eq!(PIPELINE_TIME_DECAY, 0.1 / 64.0);
    let recorded = include_str!("testdata/verdicts_decay_64.txt");
    assert_same_record(recorded, &verdict_record(PIPELINE_TIME_DECAY));
}

/// Writes the record of default models to `testdata/verdicts_decay_64.txt`
/// (run by hand, with `--ignored`, only when scores are meant to change).
#[test]
#[ignore = "writes the fixture"]
fn record_verdicts_with_the_decay_of_the_sample_size() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/evaluate/testdata/verdicts_decay_64.txt"
    );
    std::fs::write(path, verdict_record(PIPELINE_TIME_DECAY)).unwrap();
}
